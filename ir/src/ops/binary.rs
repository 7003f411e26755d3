//! Elementwise binary ops on two operands of the same type.

use super::op_error;
use crate::array::{zip_vec, Array, Data, Float, Num};
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
            return Err(op_error(
                ErrorKind::Shape,
                self.name(),
                &tys,
                "operand shapes differ",
            ));
        }
        if a.dtype != b.dtype {
            return Err(op_error(
                ErrorKind::DType,
                self.name(),
                &tys,
                "operand dtypes differ",
            ));
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
    ///
    /// Floats: IEEE `+ − · /`, `pow` is std's `powf`, `atan2` std's `atan2(a, b)`, `rem` is
    /// Rust's `%` (truncated, sign of a). `max`/`min` return a NaN operand when there is one
    /// (unlike std's `f64::max`) and order −0 below +0. i32: `add`, `sub`, `mul` wrap; `div`
    /// truncates and `rem` has the sign of a, both give 0 for a zero divisor, and
    /// `i32::MIN / −1` wraps to `i32::MIN` (its remainder is 0).
    pub fn eval(self, a: &Array, b: &Array) -> Array {
        let data = match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => zip_vec(x, y, |p, q| self.apply_float(p, q)),
            (Data::F64(x), Data::F64(y)) => zip_vec(x, y, |p, q| self.apply_float(p, q)),
            (Data::I32(x), Data::I32(y)) => zip_vec(x, y, |p, q| self.apply_num(p, q)),
            _ => unreachable!(
                "{}: mixed or bool operands are rejected by infer",
                self.name()
            ),
        };
        Array::from_parts(a.shape().clone(), data)
    }

    /// The op on two f64 elements: exactly what [`BinaryOp::eval`] computes.
    pub fn scalar_f64(self, a: f64, b: f64) -> f64 {
        self.apply_float(a, b)
    }

    /// The op on two f32 elements, as [`BinaryOp::eval`] computes it.
    pub fn scalar_f32(self, a: f32, b: f32) -> f32 {
        self.apply_float(a, b)
    }

    /// The op on two i32 elements, as [`BinaryOp::eval`] computes it (for ops accepting i32).
    pub fn scalar_i32(self, a: i32, b: i32) -> i32 {
        self.apply_num(a, b)
    }

    /// The op on two float elements.
    fn apply_float<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Atan2 => a.atan2(b),
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Max
            | BinaryOp::Min
            | BinaryOp::Rem => self.apply_num(a, b),
        }
    }

    /// The op on two numeric elements (`pow` and `atan2` are float-only and never reach here).
    fn apply_num<T: Num>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a.add(b),
            BinaryOp::Sub => a.sub(b),
            BinaryOp::Mul => a.mul(b),
            BinaryOp::Div => a.div(b),
            BinaryOp::Max => a.max_nan(b),
            BinaryOp::Min => a.min_nan(b),
            BinaryOp::Rem => a.rem(b),
            BinaryOp::Pow | BinaryOp::Atan2 => {
                unreachable!("{}: integer operands are rejected by infer", self.name())
            }
        }
    }
}
