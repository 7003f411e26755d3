//! Batching rule of the elementwise unary ops: the batch dimension stays where it is.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{Op, Result};

/// Batches a unary op: it applies elementwise, so the result keeps the operand's batch
/// dimension.
pub fn batch(op: UnaryOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    match op {
        UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Exp
        | UnaryOp::Exp2
        | UnaryOp::Expm1
        | UnaryOp::Log
        | UnaryOp::Log1p
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Tanh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh
        | UnaryOp::Logistic
        | UnaryOp::Erf
        | UnaryOp::IntegerPow(_)
        | UnaryOp::Square
        | UnaryOp::Reciprocal => ctx.elementwise(Op::Unary(op), args),
    }
}
