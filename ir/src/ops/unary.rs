//! Elementwise unary ops: type rule, reference semantics and text names.

use super::op_error;
use crate::array::Array;
use crate::error::{ErrorKind, Result};
use crate::types::Type;

/// An elementwise function of one operand; the result has the operand's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// −x.
    Neg,
    /// |x|.
    Abs,
    /// −1, 0 or 1 (NaN stays NaN).
    Sign,
    /// Round toward −∞.
    Floor,
    /// Round toward +∞.
    Ceil,
    /// Round half away from zero (as Rust's `round`).
    Round,
    /// Square root.
    Sqrt,
    /// 1/√x.
    Rsqrt,
    /// eˣ.
    Exp,
    /// 2ˣ.
    Exp2,
    /// eˣ − 1, accurate near 0.
    Expm1,
    /// Natural logarithm.
    Log,
    /// ln(1 + x), accurate near 0.
    Log1p,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Tangent.
    Tan,
    /// Arcsine.
    Asin,
    /// Arccosine.
    Acos,
    /// Arctangent.
    Atan,
    /// Hyperbolic sine.
    Sinh,
    /// Hyperbolic cosine.
    Cosh,
    /// Hyperbolic tangent.
    Tanh,
    /// Inverse hyperbolic sine.
    Asinh,
    /// Inverse hyperbolic cosine.
    Acosh,
    /// Inverse hyperbolic tangent.
    Atanh,
    /// The logistic sigmoid 1/(1 + e⁻ˣ).
    Logistic,
    /// The error function.
    Erf,
    /// xⁿ for a fixed integer n (negative n allowed).
    IntegerPow(i32),
    /// x².
    Square,
    /// 1/x.
    Reciprocal,
}

impl UnaryOp {
    /// Every unary op (with `IntegerPow(3)` standing for its family), for tests and tables.
    pub const ALL: [UnaryOp; 30] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Exp,
        UnaryOp::Exp2,
        UnaryOp::Expm1,
        UnaryOp::Log,
        UnaryOp::Log1p,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tan,
        UnaryOp::Asin,
        UnaryOp::Acos,
        UnaryOp::Atan,
        UnaryOp::Sinh,
        UnaryOp::Cosh,
        UnaryOp::Tanh,
        UnaryOp::Asinh,
        UnaryOp::Acosh,
        UnaryOp::Atanh,
        UnaryOp::Logistic,
        UnaryOp::Erf,
        UnaryOp::IntegerPow(3),
        UnaryOp::Square,
        UnaryOp::Reciprocal,
    ];

    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Exp => "exp",
            UnaryOp::Exp2 => "exp2",
            UnaryOp::Expm1 => "expm1",
            UnaryOp::Log => "log",
            UnaryOp::Log1p => "log1p",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tan => "tan",
            UnaryOp::Asin => "asin",
            UnaryOp::Acos => "acos",
            UnaryOp::Atan => "atan",
            UnaryOp::Sinh => "sinh",
            UnaryOp::Cosh => "cosh",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Asinh => "asinh",
            UnaryOp::Acosh => "acosh",
            UnaryOp::Atanh => "atanh",
            UnaryOp::Logistic => "logistic",
            UnaryOp::Erf => "erf",
            UnaryOp::IntegerPow(_) => "integer_pow",
            UnaryOp::Square => "square",
            UnaryOp::Reciprocal => "reciprocal",
        }
    }

    /// Whether the op also accepts i32 operands (the others need floats).
    pub fn accepts_int(self) -> bool {
        matches!(
            self,
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Square | UnaryOp::IntegerPow(_)
        )
    }

    /// The type rule: floats (and i32 for `accepts_int` ops) map to the same type.
    pub fn infer(self, x: &Type) -> Result<Type> {
        let ok = x.dtype.is_float() || (self.accepts_int() && x.dtype == crate::DType::I32);
        if !ok {
            return Err(op_error(
                ErrorKind::DType,
                self.name(),
                std::slice::from_ref(x),
                format!("dtype {} is not supported", x.dtype),
            ));
        }
        if let UnaryOp::IntegerPow(n) = self {
            if n < 0 && !x.dtype.is_float() {
                return Err(op_error(
                    ErrorKind::DType,
                    self.name(),
                    std::slice::from_ref(x),
                    "a negative exponent needs a float operand",
                ));
            }
        }
        Ok(x.clone())
    }

    /// The reference semantics, element by element, in the operand's dtype.
    pub fn eval(self, x: &Array) -> Array {
        let _ = x;
        todo!("unary eval")
    }
}
