//! Comparisons (to bool), logic on bools, and `select`.

use super::op_error;
use crate::array::{map_vec, zip_vec, Array, Data};
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
            return Err(op_error(
                ErrorKind::Shape,
                name,
                args,
                "operand shapes differ",
            ));
        }
        match self {
            CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge => {
                if args[0].dtype != args[1].dtype {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "operand dtypes differ",
                    ));
                }
                Ok(args[0].with_dtype(DType::Bool))
            }
            CompareOp::And | CompareOp::Or | CompareOp::Not => {
                if args.iter().any(|t| t.dtype != DType::Bool) {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "operands must be bool",
                    ));
                }
                Ok(args[0].clone())
            }
            CompareOp::Select => {
                if args[0].dtype != DType::Bool {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "the predicate must be bool",
                    ));
                }
                if args[1].dtype != args[2].dtype {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "branch dtypes differ",
                    ));
                }
                Ok(args[1].clone())
            }
        }
    }

    /// The reference semantics.
    ///
    /// Comparisons follow IEEE 754 on floats (every comparison with a NaN is false except `ne`;
    /// −0 equals +0), the usual order on i32, and `false < true` on bools. `select(p, a, b)`
    /// takes each element from `a` where `p` holds and from `b` elsewhere.
    pub fn eval(self, args: &[&Array]) -> Array {
        let shape = args[0].shape().clone();
        let data = match self {
            CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge => self.compare(args[0], args[1]),
            CompareOp::And => zip_vec(bools(args[0]), bools(args[1]), |p, q| p && q),
            CompareOp::Or => zip_vec(bools(args[0]), bools(args[1]), |p, q| p || q),
            CompareOp::Not => map_vec(bools(args[0]), |p| !p),
            CompareOp::Select => {
                // Position `n + i` of the joined data is element `i` of the false branch.
                let pred = bools(args[0]);
                let n = pred.len();
                let both = Data::concat(&[args[1].data(), args[2].data()]);
                both.take(
                    pred.iter()
                        .enumerate()
                        .map(|(i, &p)| if p { i } else { n + i }),
                )
            }
        };
        Array::from_parts(shape, data)
    }

    /// An ordering comparison of the same-position elements of two arrays of one dtype.
    fn compare(self, a: &Array, b: &Array) -> Data {
        match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => zip_vec(x, y, |p, q| self.holds(p, q)),
            (Data::F64(x), Data::F64(y)) => zip_vec(x, y, |p, q| self.holds(p, q)),
            (Data::I32(x), Data::I32(y)) => zip_vec(x, y, |p, q| self.holds(p, q)),
            (Data::Bool(x), Data::Bool(y)) => zip_vec(x, y, |p, q| self.holds(p, q)),
            _ => unreachable!(
                "{}: operands of different dtypes are rejected by infer",
                self.name()
            ),
        }
    }

    /// Whether the comparison holds for one pair of elements.
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            CompareOp::Lt => a < b,
            CompareOp::Le => a <= b,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a >= b,
            CompareOp::And | CompareOp::Or | CompareOp::Not | CompareOp::Select => {
                unreachable!("{} is not a comparison", self.name())
            }
        }
    }
}

/// The elements of a bool array (empty for other dtypes, which infer rejects).
fn bools(a: &Array) -> &[bool] {
    a.data().as_slice::<bool>()
}
