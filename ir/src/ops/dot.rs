//! `dot_general`: contraction with batch dimensions (dot, matvec, matmul, batched matmul).

use super::op_error;
use crate::array::{signed_strides, strided_offsets, Array, Data, Num};
use crate::error::{ErrorKind, Result};
use crate::types::{Dims, Shape, Type};

/// Dimension numbers of a generalized dot product. The result's dimensions are the batch
/// dimensions, then the lhs free dimensions, then the rhs free dimensions, each in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct DotGeneral {
    /// Contracted dimensions of the left operand.
    pub lhs_contract: Dims,
    /// Contracted dimensions of the right operand (paired with `lhs_contract`).
    pub rhs_contract: Dims,
    /// Batch dimensions of the left operand.
    pub lhs_batch: Dims,
    /// Batch dimensions of the right operand (paired with `lhs_batch`).
    pub rhs_batch: Dims,
}

impl DotGeneral {
    /// The lhs dimensions that are neither batch nor contracted, in order.
    pub fn lhs_free(&self, rank: usize) -> Dims {
        (0..rank)
            .filter(|d| !self.lhs_contract.contains(d) && !self.lhs_batch.contains(d))
            .collect()
    }

    /// The rhs dimensions that are neither batch nor contracted, in order.
    pub fn rhs_free(&self, rank: usize) -> Dims {
        (0..rank)
            .filter(|d| !self.rhs_contract.contains(d) && !self.rhs_batch.contains(d))
            .collect()
    }

    /// The type rule.
    pub fn infer(&self, a: &Type, b: &Type) -> Result<Type> {
        let tys = [a.clone(), b.clone()];
        let name = "dot_general";
        if a.dtype != b.dtype || !a.dtype.is_numeric() {
            return Err(op_error(
                ErrorKind::DType,
                name,
                &tys,
                "operands need one numeric dtype",
            ));
        }
        if self.lhs_contract.len() != self.rhs_contract.len()
            || self.lhs_batch.len() != self.rhs_batch.len()
        {
            return Err(op_error(
                ErrorKind::Axis,
                name,
                &tys,
                "contracting and batch dimensions must pair up",
            ));
        }
        let check = |dims: &[usize], other: &[usize], rank: usize| {
            let mut seen = vec![false; rank];
            dims.iter()
                .chain(other)
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true))
        };
        if !check(&self.lhs_contract, &self.lhs_batch, a.rank())
            || !check(&self.rhs_contract, &self.rhs_batch, b.rank())
        {
            return Err(op_error(
                ErrorKind::Axis,
                name,
                &tys,
                format!("bad dimension numbers {self:?}"),
            ));
        }
        for (&l, &r) in self.lhs_contract.iter().zip(&self.rhs_contract) {
            if a.dims()[l] != b.dims()[r] {
                return Err(op_error(
                    ErrorKind::Shape,
                    name,
                    &tys,
                    format!("contracted dimensions {l} and {r} differ in size"),
                ));
            }
        }
        for (&l, &r) in self.lhs_batch.iter().zip(&self.rhs_batch) {
            if a.dims()[l] != b.dims()[r] {
                return Err(op_error(
                    ErrorKind::Shape,
                    name,
                    &tys,
                    format!("batch dimensions {l} and {r} differ in size"),
                ));
            }
        }
        let mut dims: Dims = self.lhs_batch.iter().map(|&d| a.dims()[d]).collect();
        dims.extend(self.lhs_free(a.rank()).iter().map(|&d| a.dims()[d]));
        dims.extend(self.rhs_free(b.rank()).iter().map(|&d| b.dims()[d]));
        Ok(Type {
            dtype: a.dtype,
            shape: Shape(dims),
        })
    }

    /// The reference semantics (accumulating in the operands' dtype, in contraction order).
    ///
    /// Each result element is `Σ lhs[..] · rhs[..]` over the contracted index tuples in
    /// row-major order of `lhs_contract` (its first dimension slowest), starting from 0; i32
    /// products and sums wrap. An empty contraction gives 0.
    pub fn eval(&self, a: &Array, b: &Array) -> Array {
        let (lhs_free, rhs_free) = (self.lhs_free(a.rank()), self.rhs_free(b.rank()));
        let size =
            |x: &Array, dims: &[usize]| -> usize { dims.iter().map(|&d| x.dims()[d]).product() };
        let (batch, m, n, k) = (
            size(a, &self.lhs_batch),
            size(a, &lhs_free),
            size(b, &rhs_free),
            size(a, &self.lhs_contract),
        );
        // View each operand as a [batch, free, contract] array through element offsets.
        let walk = |x: &Array, groups: [&[usize]; 3]| -> Vec<usize> {
            let xs = signed_strides(x.dims());
            let order: Vec<usize> = groups.iter().flat_map(|g| g.iter().copied()).collect();
            let dims: Vec<usize> = order.iter().map(|&d| x.dims()[d]).collect();
            let strides: Vec<isize> = order.iter().map(|&d| xs[d]).collect();
            strided_offsets(&dims, &strides, 0)
        };
        let lo = walk(a, [&self.lhs_batch, &lhs_free, &self.lhs_contract]);
        let ro = walk(b, [&self.rhs_batch, &rhs_free, &self.rhs_contract]);
        let sizes = [batch, m, n, k];
        let data = match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => contract(x, y, &lo, &ro, sizes),
            (Data::F64(x), Data::F64(y)) => contract(x, y, &lo, &ro, sizes),
            (Data::I32(x), Data::I32(y)) => contract(x, y, &lo, &ro, sizes),
            _ => unreachable!("dot_general: mixed or bool operands are rejected by infer"),
        };
        let mut dims: Dims = self.lhs_batch.iter().map(|&d| a.dims()[d]).collect();
        dims.extend(lhs_free.iter().map(|&d| a.dims()[d]));
        dims.extend(rhs_free.iter().map(|&d| b.dims()[d]));
        Array::from_parts(Shape(dims), data)
    }
}

/// The batched product `out[b, i, j] = Σ_t x[lo[b, i, t]] · y[ro[b, j, t]]`, where `lo` and
/// `ro` hold element offsets laid out as `[batch, m, k]` and `[batch, n, k]`.
fn contract<T: Num>(x: &[T], y: &[T], lo: &[usize], ro: &[usize], sizes: [usize; 4]) -> Data {
    let [batch, m, n, k] = sizes;
    let mut out = Vec::with_capacity(batch * m * n);
    for b in 0..batch {
        for i in 0..m {
            let l = &lo[(b * m + i) * k..][..k];
            for j in 0..n {
                let r = &ro[(b * n + j) * k..][..k];
                let acc = l
                    .iter()
                    .zip(r)
                    .fold(T::ZERO, |acc, (&p, &q)| acc.add(x[p].mul(y[q])));
                out.push(acc);
            }
        }
    }
    T::wrap(out)
}
