//! Batching rule of reductions: the reduced axes shift past the batch dimension, which stays
//! in place (moving left by the number of reduced axes before it).

use super::{shift_axis, BatchCtx, Batched};
use ferrax_ir::ops::ReduceOp;
use ferrax_ir::{Dims, Op, Result};

/// Batches a reduction or arg-reduction over a batched operand.
pub fn batch(op: &ReduceOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let x = args[0];
    let bd = x.bdim.unwrap_or(0);
    let shift = |axes: &Dims| -> Dims { axes.iter().map(|&a| shift_axis(a, bd)).collect() };
    let new_op = match op {
        ReduceOp::Sum { axes } => ReduceOp::Sum { axes: shift(axes) },
        ReduceOp::Max { axes } => ReduceOp::Max { axes: shift(axes) },
        ReduceOp::Min { axes } => ReduceOp::Min { axes: shift(axes) },
        ReduceOp::Prod { axes } => ReduceOp::Prod { axes: shift(axes) },
        ReduceOp::ArgMax { axis } => ReduceOp::ArgMax {
            axis: shift_axis(*axis, bd),
        },
        ReduceOp::ArgMin { axis } => ReduceOp::ArgMin {
            axis: shift_axis(*axis, bd),
        },
    };
    let before = op.axes().iter().filter(|&&a| a < bd).count();
    let v = ctx.move_bdim(x, bd)?;
    Ok(Batched::at(
        ctx.push1(Op::Reduce(new_op), &[v])?,
        bd - before,
    ))
}
