//! Reductions over any set of axes, and arg-reductions along one axis.

use super::op_error;
use crate::array::Array;
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
            return Err(op_error(ErrorKind::DType, name, tys, "bool operands cannot be reduced"));
        }
        let axes = self.axes();
        for (i, &a) in axes.iter().enumerate() {
            if a >= x.rank() || (i > 0 && a <= axes[i - 1]) {
                return Err(op_error(
                    ErrorKind::Axis,
                    name,
                    tys,
                    format!("axes {axes:?} must be ascending, distinct and below rank {}", x.rank()),
                ));
            }
        }
        let dims: Dims =
            (0..x.rank()).filter(|d| !axes.contains(d)).map(|d| x.dims()[d]).collect();
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
                Ok(Type { dtype: DType::I32, shape: Shape(dims) })
            }
            _ => Ok(Type { dtype: x.dtype, shape: Shape(dims) }),
        }
    }

    /// The reference semantics.
    pub fn eval(&self, x: &Array) -> Array {
        let _ = x;
        todo!("reduce eval")
    }
}
