//! `dot_general`: contraction with batch dimensions (dot, matvec, matmul, batched matmul).

use super::op_error;
use crate::array::Array;
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
            return Err(op_error(ErrorKind::DType, name, &tys, "operands need one numeric dtype"));
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
            dims.iter().chain(other).all(|&d| d < rank && !std::mem::replace(&mut seen[d], true))
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
        Ok(Type { dtype: a.dtype, shape: Shape(dims) })
    }

    /// The reference semantics (accumulating in the operands' dtype, in contraction order).
    pub fn eval(&self, a: &Array, b: &Array) -> Array {
        let _ = (a, b);
        todo!("dot eval")
    }
}
