//! Batching rule of the elementwise unary ops: the batch dimension stays where it is.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{Op, Result};

/// Batches a unary op: it applies elementwise, so the result keeps the operand's batch
/// dimension.
pub fn batch(op: UnaryOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    ctx.elementwise(Op::Unary(op), args)
}
