//! Elementwise binary ops on two operands of the same type.

use super::op_error;
use crate::array::Array;
use crate::error::{ErrorKind, Result};
use crate::types::Type;

/// An elementwise function of two operands of the same dtype and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a · b.
    Mul,
    /// a / b (i32: truncating, division by zero gives 0).
    Div,
    /// aᵇ (floats).
    Pow,
    /// The larger operand (NaN propagates).
    Max,
    /// The smaller operand (NaN propagates).
    Min,
    /// atan2(a, b) (floats).
    Atan2,
    /// The remainder with the sign of a, as Rust's `%` (i32: by zero gives 0).
    Rem,
}

impl BinaryOp {
    /// Every binary op, for tests and tables.
    pub const ALL: [BinaryOp; 9] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Atan2,
        BinaryOp::Rem,
    ];

    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Atan2 => "atan2",
            BinaryOp::Rem => "rem",
        }
    }

    /// Whether the op accepts i32 operands.
    pub fn accepts_int(self) -> bool {
        !matches!(self, BinaryOp::Pow | BinaryOp::Atan2)
    }

    /// The type rule: both operands of one numeric type, which the result keeps.
    pub fn infer(self, a: &Type, b: &Type) -> Result<Type> {
        let tys = [a.clone(), b.clone()];
        if a.shape != b.shape {
            return Err(op_error(ErrorKind::Shape, self.name(), &tys, "operand shapes differ"));
        }
        if a.dtype != b.dtype {
            return Err(op_error(ErrorKind::DType, self.name(), &tys, "operand dtypes differ"));
        }
        let ok = a.dtype.is_float() || (self.accepts_int() && a.dtype == crate::DType::I32);
        if !ok {
            return Err(op_error(
                ErrorKind::DType,
                self.name(),
                &tys,
                format!("dtype {} is not supported", a.dtype),
            ));
        }
        Ok(a.clone())
    }

    /// The reference semantics, element by element.
    pub fn eval(self, a: &Array, b: &Array) -> Array {
        let _ = (a, b);
        todo!("binary eval")
    }
}
