//! Batching rules of the indexing ops.
//!
//! `cumsum` shifts its axis. The other ops are easy while their indices are unbatched: the
//! batch becomes one more dimension the op carries along (a full window for `dynamic_slice`,
//! a leading dimension for gathers and scatters, whose axis shifts by one). Gathers and
//! scatters along an axis (`along=true`) pair indices with the operand's other dimensions, so
//! the batch is simply one more such dimension. With batched indices of a `take`-style gather
//! or scatter each member indexes its own operand, so the batch is moved just before the
//! indexed axis and folded into it: the operand's axis becomes `batch * n` long and every
//! index is resolved (clamped, or sent out of range, as the op itself would) and offset by
//! `member * n`, computed from an `iota`. The dynamic ops with batched starts become one flat
//! element `gather` over the window (`dynamic_slice`), or a position mask and a `select`
//! (`dynamic_update_slice`).

use super::{insert_dim, rule_error, shift_axis, BatchCtx, Batched};
use ferrax_ir::ops::{BinaryOp, Bounds, Combine, CompareOp, IndexOp, Indexing};
use ferrax_ir::{Array, DType, Dims, Op, Result, Value};

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Fails when flat indices up to `n` do not fit in i32.
fn check_i32(op: &str, n: usize) -> Result<()> {
    if n > i32::MAX as usize {
        return Err(rule_error(
            op,
            format!("{n} elements are too many for i32 flat indices"),
        ));
    }
    Ok(())
}

/// Per-member indices into an axis of `batch * n` elements: `idx` is moved to batch position 0
/// (shape `[batch, I..]`), resolved as `bounds` says (clamped into `0..n`, or, for `Fill`,
/// sent to −1 when out of range so they stay out of range) and offset by `member * n`.
fn member_indices(ctx: &mut BatchCtx<'_>, idx: Batched, n: usize, bounds: Bounds) -> Result<Value> {
    check_i32("gather", ctx.size().saturating_mul(n))?;
    let iv = ctx.move_bdim(idx, 0)?;
    let dims = ctx.ty(iv).dims().to_vec();
    let offset = member_offset(ctx, &dims, n)?;
    match bounds {
        Bounds::Clip => {
            let clamped = ctx.clamp(iv, 0.0, n.saturating_sub(1) as f64)?;
            ctx.binary(BinaryOp::Add, clamped, offset)
        }
        Bounds::Fill => {
            let zero = ctx.full(DType::I32, &dims, 0.0)?;
            let len = ctx.full(DType::I32, &dims, n as f64)?;
            let ge = ctx.compare(CompareOp::Ge, &[iv, zero])?;
            let lt = ctx.compare(CompareOp::Lt, &[iv, len])?;
            let inside = ctx.compare(CompareOp::And, &[ge, lt])?;
            let shifted = ctx.binary(BinaryOp::Add, iv, offset)?;
            let out = ctx.full(DType::I32, &dims, -1.0)?;
            ctx.compare(CompareOp::Select, &[inside, shifted, out])
        }
    }
}

/// The operand `x` with the batch folded into its axis `axis` (batch just before the axis):
/// `pre ++ [batch * n] ++ post`; also returns `n`.
fn fold_into_axis(ctx: &mut BatchCtx<'_>, x: Batched, axis: usize) -> Result<(Value, usize)> {
    let xty = ctx.unbatched_ty(x);
    let n = xty.dims()[axis];
    let xv = ctx.move_bdim(x, axis)?;
    let mut fdims: Dims = xty.shape.0.clone();
    fdims[axis] = ctx.size() * n;
    Ok((ctx.reshape(xv, &fdims)?, n))
}

/// `ix` for an operand with one more leading dimension.
fn shifted(ix: Indexing) -> Indexing {
    Indexing {
        axis: ix.axis + 1,
        ..ix
    }
}

/// Batches a gather.
fn gather(ctx: &mut BatchCtx<'_>, ix: Indexing, x: Batched, idx: Batched) -> Result<Batched> {
    if ix.along {
        let xv = ctx.move_bdim(x, 0)?;
        let iv = ctx.move_bdim(idx, 0)?;
        let v = ctx.push1(Op::Index(IndexOp::Gather(shifted(ix))), &[xv, iv])?;
        return Ok(Batched::at(v, 0));
    }
    match (x.bdim, idx.bdim) {
        (None, Some(bi)) => {
            let v = ctx.push1(Op::Index(IndexOp::Gather(ix)), &[x.value, idx.value])?;
            Ok(Batched::at(v, ix.axis + bi))
        }
        (Some(_), None) | (None, None) => {
            let xv = ctx.move_bdim(x, 0)?;
            let v = ctx.push1(Op::Index(IndexOp::Gather(shifted(ix))), &[xv, idx.value])?;
            Ok(Batched::at(v, 0))
        }
        (Some(_), Some(_)) => {
            let (flat_x, n) = fold_into_axis(ctx, x, ix.axis)?;
            let flat = member_indices(ctx, idx, n, ix.bounds)?;
            let v = ctx.push1(Op::Index(IndexOp::Gather(ix)), &[flat_x, flat])?;
            Ok(Batched::at(v, ix.axis))
        }
    }
}

/// Batches a scatter.
fn scatter(
    ctx: &mut BatchCtx<'_>,
    at: Indexing,
    combine: Combine,
    args: &[Batched],
) -> Result<Batched> {
    let (x, idx, upd) = (args[0], args[1], args[2]);
    if at.along || idx.bdim.is_none() {
        let xv = ctx.move_bdim(x, 0)?;
        let iv = if at.along {
            ctx.move_bdim(idx, 0)?
        } else {
            idx.value
        };
        let uv = ctx.move_bdim(upd, 0)?;
        let op = IndexOp::Scatter {
            at: shifted(at),
            combine,
        };
        return Ok(Batched::at(ctx.push1(Op::Index(op), &[xv, iv, uv])?, 0));
    }
    let xty = ctx.unbatched_ty(x);
    let (flat_x, n) = fold_into_axis(ctx, x, at.axis)?;
    let flat = member_indices(ctx, idx, n, at.bounds)?;
    let uv = ctx.move_bdim(upd, at.axis)?;
    let v = ctx.push1(
        Op::Index(IndexOp::Scatter { at, combine }),
        &[flat_x, flat, uv],
    )?;
    let out = insert_dim(xty.dims(), at.axis, ctx.size());
    Ok(Batched::at(ctx.reshape(v, &out)?, at.axis))
}

/// `member * n` over the batched shape `dims` (batch dimension 0): where member `member`'s
/// elements start in a flattened operand of `n` elements per member.
fn member_offset(ctx: &mut BatchCtx<'_>, dims: &[usize], n: usize) -> Result<Value> {
    let member = ctx.iota(dims, 0)?;
    ctx.binary_scalar(BinaryOp::Mul, member, n as f64)
}

/// Adds `term` to a running sum that may not have started yet.
fn accumulate(ctx: &mut BatchCtx<'_>, acc: Option<Value>, term: Value) -> Result<Value> {
    match acc {
        Some(a) => ctx.binary(BinaryOp::Add, a, term),
        None => Ok(term),
    }
}

/// The clamped start of dimension `k` (`clamp(start, 0, hi)`), broadcast to the batched
/// shape `dims` whose batch dimension is 0.
fn start_at(ctx: &mut BatchCtx<'_>, start: Batched, hi: usize, dims: &[usize]) -> Result<Value> {
    let s = ctx.clamp(start.value, 0.0, hi as f64)?;
    ctx.spread_scalar(
        Batched {
            value: s,
            bdim: start.bdim,
        },
        dims,
    )
}

/// Batches an indexing op.
pub fn batch(op: &IndexOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let size = ctx.size();
    match op {
        IndexOp::Cumsum { axis, reverse } => {
            let x = args[0];
            let bd = x.bdim.unwrap_or(0);
            let v = ctx.move_bdim(x, bd)?;
            let op = IndexOp::Cumsum {
                axis: shift_axis(*axis, bd),
                reverse: *reverse,
            };
            Ok(Batched::at(ctx.push1(Op::Index(op), &[v])?, bd))
        }
        IndexOp::DynamicSlice { sizes } => {
            let x = args[0];
            let starts = &args[1..];
            if starts.iter().all(|s| s.bdim.is_none()) {
                // The batch is one more dimension, sliced whole.
                let bd = x.bdim.unwrap_or(0);
                let v = ctx.move_bdim(x, bd)?;
                let zero = ctx.builder().constant(Array::scalar(DType::I32, 0.0));
                let mut vals: Vec<Value> = vec![v];
                vals.extend(starts.iter().map(|s| s.value));
                vals.insert(1 + bd, zero);
                let op = IndexOp::DynamicSlice {
                    sizes: insert_dim(sizes, bd, size),
                };
                return Ok(Batched::at(ctx.push1(Op::Index(op), &vals)?, bd));
            }
            // Per-member starts: gather the window's elements from the flattened operand.
            let xty = ctx.unbatched_ty(x);
            let xdims = xty.dims().to_vec();
            let total = size.saturating_mul(xty.size());
            check_i32("dynamic_slice", total)?;
            let out = insert_dim(sizes, 0, size);
            // An unbatched operand is shared by all members: no per-member offset.
            let (flat_x, mut flat) = match x.bdim {
                Some(_) => {
                    let xv = ctx.move_bdim(x, 0)?;
                    (
                        ctx.reshape(xv, &[total])?,
                        Some(member_offset(ctx, &out, xty.size())?),
                    )
                }
                None => (ctx.reshape(x.value, &[xty.size()])?, None),
            };
            for (k, (&st, &stride)) in starts.iter().zip(&strides(&xdims)).enumerate() {
                let s = start_at(ctx, st, xdims[k] - sizes[k], &out)?;
                let j = ctx.iota(&out, k + 1)?;
                let pos = ctx.binary(BinaryOp::Add, s, j)?;
                let term = ctx.binary_scalar(BinaryOp::Mul, pos, stride as f64)?;
                flat = Some(accumulate(ctx, flat, term)?);
            }
            let flat =
                flat.ok_or_else(|| rule_error(op.name(), "a batched start needs rank >= 1"))?;
            Ok(Batched::at(
                ctx.push1(
                    Op::Index(IndexOp::Gather(Indexing::default())),
                    &[flat_x, flat],
                )?,
                0,
            ))
        }
        IndexOp::DynamicUpdateSlice => {
            let (x, u) = (args[0], args[1]);
            let starts = &args[2..];
            if starts.iter().all(|s| s.bdim.is_none()) {
                let (vals, bd) = ctx.align(&args[..2])?;
                let zero = ctx.builder().constant(Array::scalar(DType::I32, 0.0));
                let mut vals: Vec<Value> = vals.to_vec();
                vals.extend(starts.iter().map(|s| s.value));
                vals.insert(2 + bd, zero);
                return Ok(Batched::at(ctx.push1(Op::Index(op.clone()), &vals)?, bd));
            }
            // Per-member starts: for every element of the result, test whether it lies in the
            // member's window; if so gather the update's element, else keep the operand's.
            let xdims = ctx.unbatched_ty(x).dims().to_vec();
            let uty = ctx.unbatched_ty(u);
            let udims = uty.dims().to_vec();
            let xv = ctx.move_bdim(x, 0)?;
            if uty.size() == 0 {
                return Ok(Batched::at(xv, 0));
            }
            check_i32("dynamic_update_slice", size.saturating_mul(uty.size()))?;
            let out = insert_dim(&xdims, 0, size);
            let (flat_u, mut flat) = match u.bdim {
                Some(_) => {
                    let uv = ctx.move_bdim(u, 0)?;
                    let flat_u = ctx.reshape(uv, &[size * uty.size()])?;
                    (flat_u, Some(member_offset(ctx, &out, uty.size())?))
                }
                None => (ctx.reshape(u.value, &[uty.size()])?, None),
            };
            let mut mask: Option<Value> = None;
            for (k, (&st, &stride)) in starts.iter().zip(&strides(&udims)).enumerate() {
                let s = start_at(ctx, st, xdims[k] - udims[k], &out)?;
                let pos = ctx.iota(&out, k + 1)?;
                let rel = ctx.binary(BinaryOp::Sub, pos, s)?;
                let zero = ctx.full(DType::I32, &out, 0.0)?;
                let ext = ctx.full(DType::I32, &out, udims[k] as f64)?;
                let ge = ctx.compare(CompareOp::Ge, &[rel, zero])?;
                let lt = ctx.compare(CompareOp::Lt, &[rel, ext])?;
                let inside = ctx.compare(CompareOp::And, &[ge, lt])?;
                mask = Some(match mask {
                    Some(m) => ctx.compare(CompareOp::And, &[m, inside])?,
                    None => inside,
                });
                let relc = ctx.clamp(rel, 0.0, (udims[k] - 1) as f64)?;
                let term = ctx.binary_scalar(BinaryOp::Mul, relc, stride as f64)?;
                flat = Some(accumulate(ctx, flat, term)?);
            }
            let flat =
                flat.ok_or_else(|| rule_error(op.name(), "a batched start needs rank >= 1"))?;
            let taken = ctx.push1(
                Op::Index(IndexOp::Gather(Indexing::default())),
                &[flat_u, flat],
            )?;
            let mask = mask.ok_or_else(|| rule_error(op.name(), "needs rank >= 1"))?;
            Ok(Batched::at(
                ctx.compare(CompareOp::Select, &[mask, taken, xv])?,
                0,
            ))
        }
        IndexOp::Gather(ix) => gather(ctx, *ix, args[0], args[1]),
        IndexOp::Scatter { at, combine } => scatter(ctx, *at, *combine, args),
    }
}
