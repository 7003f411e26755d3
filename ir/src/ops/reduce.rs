//! Reductions over any set of axes, and arg-reductions along one axis.

use super::op_error;
use crate::array::{signed_strides, strided_offsets, Array, Data, Num};
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Dims, Shape, Type};

/// A reduction; reduced axes are removed from the shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum over `axes` (0 for an empty set of elements).
    Sum {
        /// Distinct axes, ascending.
        axes: Dims,
    },
    /// Maximum over `axes` (−∞ for floats, i32::MIN for ints, when empty; NaN propagates).
    Max {
        /// Distinct axes, ascending.
        axes: Dims,
    },
    /// Minimum over `axes` (+∞ / i32::MAX when empty; NaN propagates).
    Min {
        /// Distinct axes, ascending.
        axes: Dims,
    },
    /// Product over `axes` (1 when empty).
    Prod {
        /// Distinct axes, ascending.
        axes: Dims,
    },
    /// Index (i32) of the first maximum along `axis`; a NaN counts as the maximum.
    ArgMax {
        /// The searched axis (must not have size 0).
        axis: usize,
    },
    /// Index (i32) of the first minimum along `axis`; a NaN counts as the minimum.
    ArgMin {
        /// The searched axis (must not have size 0).
        axis: usize,
    },
}

impl ReduceOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum { .. } => "reduce_sum",
            ReduceOp::Max { .. } => "reduce_max",
            ReduceOp::Min { .. } => "reduce_min",
            ReduceOp::Prod { .. } => "reduce_prod",
            ReduceOp::ArgMax { .. } => "argmax",
            ReduceOp::ArgMin { .. } => "argmin",
        }
    }

    /// The reduced axes (one for the arg-reductions).
    pub fn axes(&self) -> Dims {
        match self {
            ReduceOp::Sum { axes }
            | ReduceOp::Max { axes }
            | ReduceOp::Min { axes }
            | ReduceOp::Prod { axes } => axes.clone(),
            ReduceOp::ArgMax { axis } | ReduceOp::ArgMin { axis } => Dims::from_slice(&[*axis]),
        }
    }

    /// The type rule.
    pub fn infer(&self, x: &Type) -> Result<Type> {
        let name = self.name();
        let tys = std::slice::from_ref(x);
        if !x.dtype.is_numeric() {
            return Err(op_error(
                ErrorKind::DType,
                name,
                tys,
                "bool operands cannot be reduced",
            ));
        }
        let axes = self.axes();
        for (i, &a) in axes.iter().enumerate() {
            if a >= x.rank() || (i > 0 && a <= axes[i - 1]) {
                return Err(op_error(
                    ErrorKind::Axis,
                    name,
                    tys,
                    format!(
                        "axes {axes:?} must be ascending, distinct and below rank {}",
                        x.rank()
                    ),
                ));
            }
        }
        let dims: Dims = (0..x.rank())
            .filter(|d| !axes.contains(d))
            .map(|d| x.dims()[d])
            .collect();
        match self {
            ReduceOp::ArgMax { axis } | ReduceOp::ArgMin { axis } => {
                if x.dims()[*axis] == 0 {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        tys,
                        format!("axis {axis} has size 0"),
                    ));
                }
                Ok(Type {
                    dtype: DType::I32,
                    shape: Shape(dims),
                })
            }
            _ => Ok(Type {
                dtype: x.dtype,
                shape: Shape(dims),
            }),
        }
    }

    /// The reference semantics.
    ///
    /// Each result element folds its reduced elements in row-major order, starting from the
    /// identity (0, −∞ or `i32::MIN`, +∞ or `i32::MAX`, 1), which is also the result of an empty
    /// reduction. Sums and products of i32 wrap. `reduce_max`/`reduce_min` propagate NaN and
    /// order −0 below +0. `argmax`/`argmin` return the index of the first extreme element,
    /// where a NaN counts as the extreme (the first NaN wins), as NumPy does.
    pub fn eval(&self, x: &Array) -> Array {
        let axes = self.axes();
        let kept: Vec<usize> = (0..x.rank()).filter(|d| !axes.contains(d)).collect();
        let xs = signed_strides(x.dims());
        // Walk the operand with the reduced axes innermost, so that each result element's
        // inputs are one contiguous run of the offsets.
        let order: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
        let dims: Vec<usize> = order.iter().map(|&d| x.dims()[d]).collect();
        let strides: Vec<isize> = order.iter().map(|&d| xs[d]).collect();
        let offsets = strided_offsets(&dims, &strides, 0);
        let run: usize = axes.iter().map(|&d| x.dims()[d]).product();
        let out = Shape(kept.iter().map(|&d| x.dims()[d]).collect());
        let n = out.size();
        let data = match x.data() {
            Data::F32(v) => self.reduce(v, &offsets, run, n),
            Data::F64(v) => self.reduce(v, &offsets, run, n),
            Data::I32(v) => self.reduce(v, &offsets, run, n),
            Data::Bool(_) => unreachable!("{}: bool operands are rejected by infer", self.name()),
        };
        Array::from_parts(out, data)
    }

    /// Reduces each run of `run` elements of `v` named by `offsets` into one of `n` results.
    fn reduce<T: Num>(&self, v: &[T], offsets: &[usize], run: usize, n: usize) -> Data {
        let fold = |init: T, f: fn(T, T) -> T| -> Data {
            if run == 0 {
                return T::wrap(vec![init; n]);
            }
            T::wrap(
                offsets
                    .chunks(run)
                    .map(|c| c.iter().fold(init, |acc, &o| f(acc, v[o])))
                    .collect(),
            )
        };
        // The position of the first element of each run that `better` prefers to all earlier
        // ones, or of the first NaN.
        let arg = |better: fn(T, T) -> bool| -> Data {
            let pick = |c: &[usize]| {
                let mut best = 0;
                for (k, &o) in c.iter().enumerate().skip(1) {
                    let (b, e) = (v[c[best]], v[o]);
                    if b.is_nan() {
                        break;
                    }
                    if e.is_nan() || better(e, b) {
                        best = k;
                    }
                }
                best as i32
            };
            Data::I32(offsets.chunks(run.max(1)).map(pick).collect())
        };
        match self {
            ReduceOp::Sum { .. } => fold(T::ZERO, T::add),
            ReduceOp::Max { .. } => fold(T::LOWEST, T::max_nan),
            ReduceOp::Min { .. } => fold(T::HIGHEST, T::min_nan),
            ReduceOp::Prod { .. } => fold(T::ONE, T::mul),
            ReduceOp::ArgMax { .. } => arg(|e, b| e > b),
            ReduceOp::ArgMin { .. } => arg(|e, b| e < b),
        }
    }
}
