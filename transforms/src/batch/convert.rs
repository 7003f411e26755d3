//! Batching rule of `convert` and `stop_gradient`: elementwise, the batch dimension stays put.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::ConvertOp;
use ferrax_ir::{Op, Result};

/// Batches a conversion: the result keeps the operand's batch dimension.
pub fn batch(op: ConvertOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    match op {
        ConvertOp::Convert(_) | ConvertOp::StopGradient => ctx.elementwise(Op::Convert(op), args),
    }
}
