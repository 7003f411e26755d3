//! Comparisons (to bool), logic on bools, and `select`.

use super::op_error;
use crate::array::Array;
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Type};

/// A comparison, a logical op, or `select(pred, on_true, on_false)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// a == b (IEEE: NaN is unequal to everything).
    Eq,
    /// a != b.
    Ne,
    /// a < b.
    Lt,
    /// a <= b.
    Le,
    /// a > b.
    Gt,
    /// a >= b.
    Ge,
    /// Logical and of two bool operands.
    And,
    /// Logical or of two bool operands.
    Or,
    /// Logical not of one bool operand.
    Not,
    /// `select(pred, a, b)`: a where pred holds, else b.
    Select,
}

impl CompareOp {
    /// Every op of the family, for tests and tables.
    pub const ALL: [CompareOp; 10] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::And,
        CompareOp::Or,
        CompareOp::Not,
        CompareOp::Select,
    ];

    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::And => "and",
            CompareOp::Or => "or",
            CompareOp::Not => "not",
            CompareOp::Select => "select",
        }
    }

    /// The number of operands.
    pub fn arity(self) -> usize {
        match self {
            CompareOp::Not => 1,
            CompareOp::Select => 3,
            _ => 2,
        }
    }

    /// The type rule.
    pub fn infer(self, args: &[Type]) -> Result<Type> {
        let name = self.name();
        let same_shape = args.iter().all(|t| t.shape == args[0].shape);
        if !same_shape {
            return Err(op_error(ErrorKind::Shape, name, args, "operand shapes differ"));
        }
        match self {
            CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge => {
                if args[0].dtype != args[1].dtype {
                    return Err(op_error(ErrorKind::DType, name, args, "operand dtypes differ"));
                }
                Ok(args[0].with_dtype(DType::Bool))
            }
            CompareOp::And | CompareOp::Or | CompareOp::Not => {
                if args.iter().any(|t| t.dtype != DType::Bool) {
                    return Err(op_error(ErrorKind::DType, name, args, "operands must be bool"));
                }
                Ok(args[0].clone())
            }
            CompareOp::Select => {
                if args[0].dtype != DType::Bool {
                    return Err(op_error(ErrorKind::DType, name, args, "the predicate must be bool"));
                }
                if args[1].dtype != args[2].dtype {
                    return Err(op_error(ErrorKind::DType, name, args, "branch dtypes differ"));
                }
                Ok(args[1].clone())
            }
        }
    }

    /// The reference semantics.
    pub fn eval(self, args: &[&Array]) -> Array {
        let _ = args;
        todo!("compare eval")
    }
}
