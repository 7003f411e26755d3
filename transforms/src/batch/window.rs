//! Batching rule for windowed ops: the operands are brought to one batch position and the
//! window gets a dimension of size 1 there (unit stride, no padding, no dilation), so every
//! member of the batch is reduced on its own.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::WindowOp;
use ferrax_ir::{Op, Result};

/// Batches a windowed op.
pub fn batch(op: &WindowOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let (vals, bdim) = ctx.align(args)?;
    let mut w = op.window().clone();
    w.dims.insert(bdim, 1);
    w.strides.insert(bdim, 1);
    w.lo.insert(bdim, 0);
    w.hi.insert(bdim, 0);
    w.base_dilation.insert(bdim, 1);
    w.window_dilation.insert(bdim, 1);
    let op = op.clone().with_window(w);
    Ok(Batched::at(
        ctx.push1(Op::Window(Box::new(op)), &vals)?,
        bdim,
    ))
}
