//! Lowering of `ferrax_ir::ops::ShapeOp`. Broadcast, transpose, slice and rev are one loop
//! nest over the result with an affine read of the operand; reshape is a copy of the row-major
//! elements; pad fills the result then writes the operand through a strided map; concatenate
//! writes each operand into its window of the result.

use super::{strides, Access, Ctx};
use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{InstData, Result, Value};
use smallvec::SmallVec;

/// Copies through a nest over `dims`: element `src` of `x` read through `read` is written to
/// result `r` through `write`.
fn strided_copy(
    cx: &mut Ctx,
    x: Value,
    r: Value,
    dims: &[usize],
    read: Access,
    write: Access,
) -> Result<()> {
    cx.nest(dims, &[read, write], &mut |cx, _, offs| {
        let v = cx.load(x, offs[0])?;
        cx.store_out(r, offs[1], v)
    })
}

/// Lowers a shape op.
pub(crate) fn lower(cx: &mut Ctx, op: &ShapeOp, inst: &InstData) -> Result<()> {
    let r = inst.results[0];
    let x = inst.args[0];
    let xdims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(x).dims());
    let rdims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(r).dims());
    let xs = strides(&xdims);
    let rs = strides(&rdims);
    cx.alloc_result(r)?;
    let zero = cx.iconst(0);
    let out = Access {
        base: zero,
        strides: rs.clone(),
    };
    match op {
        ShapeOp::BroadcastInDim { dims, .. } => {
            let mut s: SmallVec<[i64; 4]> = SmallVec::from_elem(0, rdims.len());
            for (i, &d) in dims.iter().enumerate() {
                if xdims[i] != 1 {
                    s[d] = xs[i];
                }
            }
            strided_copy(
                cx,
                x,
                r,
                &rdims,
                Access {
                    base: zero,
                    strides: s,
                },
                out,
            )
        }
        ShapeOp::Reshape { .. } => {
            let n = cx.graph.ty(r).size();
            cx.for_range(n, &mut |cx, i| {
                let v = cx.load(x, i)?;
                cx.store_out(r, i, v)
            })
        }
        ShapeOp::Transpose { perm } => {
            let s: SmallVec<[i64; 4]> = perm.iter().map(|&p| xs[p]).collect();
            strided_copy(
                cx,
                x,
                r,
                &rdims,
                Access {
                    base: zero,
                    strides: s,
                },
                out,
            )
        }
        ShapeOp::Slice { start, stride, .. } => {
            let base: i64 = start.iter().zip(&xs).map(|(&a, &s)| a as i64 * s).sum();
            let s: SmallVec<[i64; 4]> = stride
                .iter()
                .zip(&xs)
                .map(|(&t, &s)| t as i64 * s)
                .collect();
            let base = cx.iconst(base);
            strided_copy(cx, x, r, &rdims, Access { base, strides: s }, out)
        }
        ShapeOp::Rev { axes } => {
            let mut base = 0i64;
            let mut s = xs.clone();
            for &a in axes.iter() {
                base += (xdims[a] as i64 - 1).max(0) * xs[a];
                s[a] = -xs[a];
            }
            let base = cx.iconst(base);
            strided_copy(cx, x, r, &rdims, Access { base, strides: s }, out)
        }
        ShapeOp::Pad { lo, interior, .. } => {
            let pad = cx.load(inst.args[1], zero)?;
            let n = cx.graph.ty(r).size();
            cx.for_range(n, &mut |cx, i| cx.store_out(r, i, pad))?;
            let base: i64 = lo.iter().zip(&rs).map(|(&l, &s)| l as i64 * s).sum();
            let s: SmallVec<[i64; 4]> = interior
                .iter()
                .zip(&rs)
                .map(|(&t, &s)| (t as i64 + 1) * s)
                .collect();
            let base = cx.iconst(base);
            let read = Access {
                base: zero,
                strides: xs,
            };
            strided_copy(cx, x, r, &xdims, read, Access { base, strides: s })
        }
        ShapeOp::Concatenate { axis } => {
            let mut at = 0usize;
            for &a in inst.args.iter() {
                let adims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(a).dims());
                let base = cx.iconst(at as i64 * rs[*axis]);
                let read = Access {
                    base: zero,
                    strides: strides(&adims),
                };
                strided_copy(
                    cx,
                    a,
                    r,
                    &adims,
                    read,
                    Access {
                        base,
                        strides: rs.clone(),
                    },
                )?;
                at += adims[*axis];
            }
            Ok(())
        }
    }
}
