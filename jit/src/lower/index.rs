//! Lowering of `ferrax_ir::ops::IndexOp`: cumsum as a running sum per line, dynamic slices and
//! updates as strided copies at clamped runtime offsets, gather and scatter-add as row copies
//! at clamped indices. Every runtime index is clamped before use, so no access leaves its
//! buffer.

use super::{clty, strides, Access, Ctx};
use cranelift_codegen::ir::{self, types, InstBuilder};
use ferrax_ir::ops::IndexOp;
use ferrax_ir::{InstData, Result, Value};
use smallvec::SmallVec;

/// `clamp(i, 0, hi)` for an i32 index, widened to i64. A bound beyond `i32::MAX` (a
/// dimension longer than any i32 index reaches) is lowered as `i32::MAX`, not truncated.
fn clamp(cx: &mut Ctx, i: ir::Value, hi: i64) -> ir::Value {
    let hi = cx.fb.ins().iconst(types::I32, hi.min(i32::MAX as i64));
    let z = cx.fb.ins().iconst(types::I32, 0);
    let c = cx.fb.ins().smin(i, hi);
    let c = cx.fb.ins().smax(c, z);
    cx.fb.ins().sextend(types::I64, c)
}

/// The clamped element offset of a window of `sizes` at the dynamic starts `starts`.
fn window_base(
    cx: &mut Ctx,
    starts: &[Value],
    dims: &[usize],
    sizes: &[usize],
) -> Result<ir::Value> {
    let st = strides(dims);
    let mut base = cx.iconst(0);
    for (d, &s) in starts.iter().enumerate() {
        let z = cx.iconst(0);
        let i = cx.load(s, z)?;
        let i = clamp(cx, i, dims[d] as i64 - sizes[d] as i64);
        let t = cx.fb.ins().imul_imm_s(i, st[d]);
        base = cx.fb.ins().iadd(base, t);
    }
    Ok(base)
}

/// Lowers an indexing op.
pub(crate) fn lower(cx: &mut Ctx, op: &IndexOp, inst: &InstData) -> Result<()> {
    let r = inst.results[0];
    let x = inst.args[0];
    let xty = cx.graph.ty(x).clone();
    let dtype = xty.dtype;
    let xdims: SmallVec<[usize; 4]> = SmallVec::from_slice(xty.dims());
    let xs = strides(&xdims);
    cx.alloc_result(r)?;
    let zero = cx.iconst(0);
    match op {
        IndexOp::Cumsum { axis, reverse } => {
            let (axis, reverse) = (*axis, *reverse);
            let mut odims = xdims.clone();
            odims[axis] = 1;
            let len = xdims[axis];
            let step = xs[axis];
            let is_float = dtype.is_float();
            cx.nest(
                &odims,
                &[Access {
                    base: zero,
                    strides: xs.clone(),
                }],
                &mut |cx, _, offs| {
                    let acc = cx.fb.declare_var(clty(dtype));
                    let init = cx.constant(dtype, 0.0);
                    cx.fb.def_var(acc, init);
                    let base = offs[0];
                    cx.for_range(len, &mut |cx, k| {
                        let pos = if reverse {
                            let last = cx.iconst(len as i64 - 1);
                            cx.fb.ins().isub(last, k)
                        } else {
                            k
                        };
                        let t = cx.fb.ins().imul_imm_s(pos, step);
                        let off = cx.fb.ins().iadd(base, t);
                        let v = cx.load(x, off)?;
                        let s = cx.fb.use_var(acc);
                        let s = if is_float {
                            cx.fb.ins().fadd(s, v)
                        } else {
                            cx.fb.ins().iadd(s, v)
                        };
                        cx.fb.def_var(acc, s);
                        cx.store_out(r, off, s)
                    })
                },
            )
        }
        IndexOp::DynamicSlice { sizes } => {
            let base = window_base(cx, &inst.args[1..], &xdims, sizes)?;
            let read = Access { base, strides: xs };
            let write = Access {
                base: zero,
                strides: strides(sizes),
            };
            cx.nest(sizes, &[read, write], &mut |cx, _, o| {
                let v = cx.load(x, o[0])?;
                cx.store_out(r, o[1], v)
            })
        }
        IndexOp::DynamicUpdateSlice => {
            let u = inst.args[1];
            let udims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(u).dims());
            copy_all(cx, x, r)?;
            let base = window_base(cx, &inst.args[2..], &xdims, &udims)?;
            let read = Access {
                base: zero,
                strides: strides(&udims),
            };
            let write = Access { base, strides: xs };
            cx.nest(&udims, &[read, write], &mut |cx, _, o| {
                let v = cx.load(u, o[0])?;
                cx.store_out(r, o[1], v)
            })
        }
        IndexOp::Gather => {
            let idx = inst.args[1];
            let idims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(idx).dims());
            let rows = xdims[0];
            let row = xs[0];
            let rest: usize = xdims[1..].iter().product();
            let ist = strides(&idims);
            let ost: SmallVec<[i64; 4]> = ist.iter().map(|&s| s * rest as i64).collect();
            let acc = [
                Access {
                    base: zero,
                    strides: ist,
                },
                Access {
                    base: zero,
                    strides: ost,
                },
            ];
            cx.nest(&idims, &acc, &mut |cx, _, o| {
                let out = o[1];
                if rows == 0 {
                    let z = cx.constant(dtype, 0.0);
                    return cx.for_range(rest, &mut |cx, j| {
                        let off = cx.fb.ins().iadd(out, j);
                        cx.store_out(r, off, z)
                    });
                }
                let i = cx.load(idx, o[0])?;
                let i = clamp(cx, i, rows as i64 - 1);
                let src = cx.fb.ins().imul_imm_s(i, row);
                cx.for_range(rest, &mut |cx, j| {
                    let s = cx.fb.ins().iadd(src, j);
                    let v = cx.load(x, s)?;
                    let off = cx.fb.ins().iadd(out, j);
                    cx.store_out(r, off, v)
                })
            })
        }
        IndexOp::ScatterAdd => {
            let (idx, upd) = (inst.args[1], inst.args[2]);
            let idims: SmallVec<[usize; 4]> = SmallVec::from_slice(cx.graph.ty(idx).dims());
            let rows = xdims[0];
            let row = xs[0];
            let rest: usize = xdims[1..].iter().product();
            copy_all(cx, x, r)?;
            if rows == 0 {
                return Ok(());
            }
            let ist = strides(&idims);
            let ust: SmallVec<[i64; 4]> = ist.iter().map(|&s| s * rest as i64).collect();
            let acc = [
                Access {
                    base: zero,
                    strides: ist,
                },
                Access {
                    base: zero,
                    strides: ust,
                },
            ];
            let is_float = dtype.is_float();
            cx.nest(&idims, &acc, &mut |cx, _, o| {
                let i = cx.load(idx, o[0])?;
                let i = clamp(cx, i, rows as i64 - 1);
                let dst = cx.fb.ins().imul_imm_s(i, row);
                let src = o[1];
                cx.for_range(rest, &mut |cx, j| {
                    let d = cx.fb.ins().iadd(dst, j);
                    let s = cx.fb.ins().iadd(src, j);
                    let cur = cx.load(r, d)?;
                    let v = cx.load(upd, s)?;
                    let t = if is_float {
                        cx.fb.ins().fadd(cur, v)
                    } else {
                        cx.fb.ins().iadd(cur, v)
                    };
                    cx.store_out(r, d, t)
                })
            })
        }
    }
}

/// Copies every element of `x` into result `r` (same type).
fn copy_all(cx: &mut Ctx, x: Value, r: Value) -> Result<()> {
    let n = cx.graph.ty(r).size();
    cx.for_range(n, &mut |cx, i| {
        let v = cx.load(x, i)?;
        cx.store_out(r, i, v)
    })
}
