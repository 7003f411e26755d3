//! Batching rule of `conv_general_dilated`: the vmap dimension is folded into the batch or
//! feature dimensions of one convolution, which stays one op (no loop over the batch).
//!
//! - Only the input batched: the vmap dimension joins the input's batch (major), and the
//!   result's batch is split again. With batch groups the input batch is `[group, n]`, so the
//!   vmap dimension goes between the two, keeping each batch group contiguous.
//! - Only the kernel batched: the vmap dimension joins the kernel's output features, inside the
//!   group factor (`[group, vmap, features]`) so that every group keeps its features together,
//!   and the result's features are split and reordered to `[vmap, group·features]`.
//! - Both batched: each member is its own feature group (the vmap dimension joins the input's
//!   features and the kernel's output features, major, multiplying `feature_group_count`); with
//!   batch groups it joins the input's batch instead and multiplies `batch_group_count`.
//!
//! An empty vmap dimension gives zeros (groups of size 0 do not exist).

use super::{BatchCtx, Batched};
use crate::rules::conv::reshape;
use ferrax_ir::ops::ConvGeneral;
use ferrax_ir::{Dims, Op, Result, Value};

/// Splits axis `axis` of `v` (of size `outer · inner`) into `[outer, inner]`.
fn split(ctx: &mut BatchCtx<'_>, v: Value, axis: usize, outer: usize) -> Result<Value> {
    let mut dims = Dims::from_slice(ctx.ty(v).dims());
    let inner = dims[axis] / outer.max(1);
    dims[axis] = inner;
    dims.insert(axis, outer);
    reshape(ctx.builder(), v, &dims)
}

/// Merges axes `axis` and `axis + 1` of `v` into one (the first major).
fn merge(ctx: &mut BatchCtx<'_>, v: Value, axis: usize) -> Result<Value> {
    let mut dims = Dims::from_slice(ctx.ty(v).dims());
    let inner = dims.remove(axis + 1);
    dims[axis] *= inner;
    reshape(ctx.builder(), v, &dims)
}

/// Moves the vmap dimension of `x` right before its axis `axis` (an unbatched position), then
/// folds it in: `[v, a] → [v·a]`, or with `groups > 1`, `[v, g·a'] → [g·v·a']`.
fn fold(ctx: &mut BatchCtx<'_>, x: Batched, axis: usize, groups: usize) -> Result<Value> {
    let v = ctx.move_bdim(x, axis)?;
    if groups > 1 {
        // [v, g, a'] → [g, v, a'] → [g·v·a'].
        let s = split(ctx, v, axis + 1, groups)?;
        let mut perm: Dims = (0..ctx.ty(s).rank()).collect();
        perm.swap(axis, axis + 1);
        let t = ctx.transpose(s, &perm)?;
        let m = merge(ctx, t, axis + 1)?;
        merge(ctx, m, axis)
    } else {
        merge(ctx, v, axis)
    }
}

/// Batches a `conv_general_dilated`.
pub fn batch(op: &ConvGeneral, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let (l, r) = (args[0], args[1]);
    let size = ctx.size();
    let dn = &op.dimension_numbers;
    if size == 0 {
        let ty = op.infer(&ctx.unbatched_ty(l), &ctx.unbatched_ty(r))?;
        let mut dims = Dims::from_slice(ty.dims());
        dims.insert(0, 0);
        let z = ctx.full(ty.dtype, &dims, 0.0)?;
        return Ok(Batched::at(z, 0));
    }
    let (g, bg) = (op.feature_group_count, op.batch_group_count);
    let mut c = op.clone();
    let (lv, rv, feature_split) = match (l.bdim, r.bdim) {
        (Some(_), None) => {
            let lv = fold(ctx, l, dn.lhs[0], bg)?;
            let out = ctx.push1(Op::Conv(Box::new(c)), &[lv, r.value])?;
            // The result's batch is [v, n].
            let s = split(ctx, out, dn.out[0], size)?;
            return Ok(Batched::at(s, dn.out[0]));
        }
        (None, Some(_)) => {
            let rv = fold(ctx, r, dn.rhs[0], g.max(bg))?;
            (l.value, rv, true)
        }
        (Some(_), Some(_)) => {
            let rv = fold(ctx, r, dn.rhs[0], 1)?;
            let lv = if bg > 1 {
                c.batch_group_count = bg * size;
                fold(ctx, l, dn.lhs[0], 1)?
            } else {
                c.feature_group_count = g * size;
                fold(ctx, l, dn.lhs[1], 1)?
            };
            (lv, rv, false)
        }
        (None, None) => {
            return Ok(Batched::unbatched(
                ctx.push1(Op::Conv(Box::new(op.clone())), &[l.value, r.value])?,
            ))
        }
    };
    let out = ctx.push1(Op::Conv(Box::new(c)), &[lv, rv])?;
    let f = dn.out[1];
    let groups = g.max(bg);
    if feature_split && groups > 1 {
        // The result's features are [group, v, o']: bring v out in front, [v, group·o'].
        let s = split(ctx, out, f, groups)?;
        let s = split(ctx, s, f + 1, size)?;
        let mut perm: Dims = (0..ctx.ty(s).rank()).collect();
        perm.swap(f, f + 1);
        let t = ctx.transpose(s, &perm)?;
        let m = merge(ctx, t, f + 1)?;
        return Ok(Batched::at(m, f));
    }
    let s = split(ctx, out, f, size)?;
    Ok(Batched::at(s, f))
}
