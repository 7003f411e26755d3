//! Batching rules of the shape ops.
//!
//! Most shape ops keep the batch dimension where it is and shift their static parameters past
//! it (`slice`, `pad`, `rev`, `concatenate`, `transpose`, `broadcast_in_dim`). `reshape` is
//! the exception: it first moves the batch dimension to the front, because the row-major
//! element order only survives a reshape when the batch is the outermost dimension.

use super::{insert_dim, shift_axis, BatchCtx, Batched};
use ferrax_ir::ops::{CompareOp, ShapeOp};
use ferrax_ir::{Array, DType, Dims, Op, Result, Shape};

fn with_zero_at(dims: &[usize], at: usize) -> Dims {
    let mut d = Dims::from_slice(dims);
    d.insert(at, 0);
    d
}

/// Batches a shape op.
pub fn batch(op: &ShapeOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let size = ctx.size();
    match op {
        ShapeOp::BroadcastInDim { shape, dims } => {
            let x = args[0];
            let bd = x.bdim.unwrap_or(0);
            let v = ctx.move_bdim(x, bd)?;
            // The batch lands right after the result dimension of the operand dimension
            // before it, which keeps the dimension map increasing without a transpose.
            let p = if bd == 0 { 0 } else { dims[bd - 1] + 1 };
            let mut new_dims: Dims = dims.iter().map(|&d| shift_axis(d, p)).collect();
            new_dims.insert(bd, p);
            let out = insert_dim(shape.dims(), p, size);
            let op = ShapeOp::BroadcastInDim {
                shape: Shape(out),
                dims: new_dims.into_boxed_slice(),
            };
            Ok(Batched::at(ctx.push1(Op::Shape(op), &[v])?, p))
        }
        ShapeOp::Reshape { shape } => {
            let v = ctx.move_bdim(args[0], 0)?;
            let out = insert_dim(shape.dims(), 0, size);
            Ok(Batched::at(ctx.reshape(v, &out)?, 0))
        }
        ShapeOp::Transpose { perm } => {
            let x = args[0];
            let bd = x.bdim.unwrap_or(0);
            let v = ctx.move_bdim(x, bd)?;
            let mut new_perm: Vec<usize> = perm.iter().map(|&p| shift_axis(p, bd)).collect();
            new_perm.insert(bd, bd);
            Ok(Batched::at(ctx.transpose(v, &new_perm)?, bd))
        }
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => {
            let x = args[0];
            let bd = x.bdim.unwrap_or(0);
            let v = ctx.move_bdim(x, bd)?;
            let mut start = start.to_vec();
            let mut limit = limit.to_vec();
            let mut stride = stride.to_vec();
            start.insert(bd, 0);
            limit.insert(bd, size);
            stride.insert(bd, 1);
            let op = ShapeOp::Slice {
                start: start.into(),
                limit: limit.into(),
                stride: stride.into(),
            };
            Ok(Batched::at(ctx.push1(Op::Shape(op), &[v])?, bd))
        }
        ShapeOp::Pad { lo, hi, interior } => {
            let (x, pv) = (args[0], args[1]);
            let bd = x.bdim.unwrap_or(0);
            let xv = ctx.move_bdim(x, bd)?;
            let op_b = ShapeOp::Pad {
                lo: with_zero_at(lo, bd).into_boxed_slice(),
                hi: with_zero_at(hi, bd).into_boxed_slice(),
                interior: with_zero_at(interior, bd).into_boxed_slice(),
            };
            if pv.bdim.is_none() {
                return Ok(Batched::at(
                    ctx.push1(Op::Shape(op_b), &[xv, pv.value])?,
                    bd,
                ));
            }
            // A per-member padding value: pad with a placeholder, then select the padding
            // value wherever a mask (the padding of an all-true array with false) is false.
            let xty = ctx.unbatched_ty(x);
            let zero = ctx.builder().constant(Array::scalar(xty.dtype, 0.0));
            let padded = ctx.push1(Op::Shape(op_b), &[xv, zero])?;
            let out_dims = ctx.ty(padded).dims().to_vec();
            let t = ctx.full(DType::Bool, xty.dims(), 1.0)?;
            let f = ctx.builder().constant(Array::scalar(DType::Bool, 0.0));
            let mask = ctx.push1(Op::Shape(op.clone()), &[t, f])?;
            let mask = ctx.move_bdim(Batched::unbatched(mask), bd)?;
            let pvv = ctx.move_bdim(pv, 0)?;
            let fill = ctx.broadcast_in_dim(pvv, &out_dims, &[bd])?;
            Ok(Batched::at(
                ctx.compare(CompareOp::Select, &[mask, padded, fill])?,
                bd,
            ))
        }
        ShapeOp::Concatenate { axis } => {
            let (vals, bd) = ctx.align(args)?;
            let op = ShapeOp::Concatenate {
                axis: shift_axis(*axis, bd),
            };
            Ok(Batched::at(ctx.push1(Op::Shape(op), &vals)?, bd))
        }
        ShapeOp::Rev { axes } => {
            let x = args[0];
            let bd = x.bdim.unwrap_or(0);
            let v = ctx.move_bdim(x, bd)?;
            let op = ShapeOp::Rev {
                axes: axes.iter().map(|&a| shift_axis(a, bd)).collect(),
            };
            Ok(Batched::at(ctx.push1(Op::Shape(op), &[v])?, bd))
        }
    }
}
