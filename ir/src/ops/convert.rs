//! Dtype conversion and `stop_gradient` (the identity that blocks derivatives).

use super::op_error;
use crate::array::Array;
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Type};

/// A conversion op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvertOp {
    /// Converts to a dtype with Rust's `as` semantics (floats to i32 saturate, NaN to 0;
    /// numbers to bool are `x != 0`).
    Convert(DType),
    /// The identity on values; its derivative is zero at every nesting level.
    StopGradient,
}

impl ConvertOp {
    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            ConvertOp::Convert(_) => "convert",
            ConvertOp::StopGradient => "stop_gradient",
        }
    }

    /// The type rule: the shape is kept; `convert` changes the dtype.
    pub fn infer(self, x: &Type) -> Result<Type> {
        match self {
            ConvertOp::Convert(d) => Ok(x.with_dtype(d)),
            ConvertOp::StopGradient => {
                if x.dtype == DType::Bool {
                    return Err(op_error(
                        ErrorKind::DType,
                        self.name(),
                        std::slice::from_ref(x),
                        "bool values carry no derivative",
                    ));
                }
                Ok(x.clone())
            }
        }
    }

    /// The reference semantics.
    pub fn eval(self, x: &Array) -> Array {
        match self {
            ConvertOp::Convert(d) => x.cast(d),
            ConvertOp::StopGradient => x.clone(),
        }
    }
}
