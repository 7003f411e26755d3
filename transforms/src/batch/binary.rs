//! Batching rule of the elementwise binary ops: operands are aligned on one batch position and
//! an unbatched operand is broadcast along the batch.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::BinaryOp;
use ferrax_ir::{Op, Result};

/// Batches a binary op: both operands are brought to the batch position of the first batched
/// one (an unbatched operand is broadcast with `broadcast_in_dim`), then the op applies once.
pub fn batch(op: BinaryOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    ctx.elementwise(Op::Binary(op), args)
}
