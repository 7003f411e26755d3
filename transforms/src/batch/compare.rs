//! Batching rule of comparisons, logic ops and `select`: all are elementwise over operands of
//! one shape, so operands are aligned on one batch position.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::CompareOp;
use ferrax_ir::{Op, Result};

/// Batches a comparison, logical op or `select`. For `select` an unbatched predicate (or
/// branch) is broadcast along the batch like any other operand.
pub fn batch(op: CompareOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    ctx.elementwise(Op::Compare(op), args)
}
