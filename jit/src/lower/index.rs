//! Lowering of `ferrax_ir::ops::IndexOp`: cumsum as a running sum per line, dynamic slices and
//! updates as strided copies at clamped runtime offsets, gathers and scatters as loop nests
//! over their iteration space ([`ferrax_ir::ops::Walk`], shared with the interpreter) with one
//! indirect access each. Every runtime index is clamped before use, so no access leaves its
//! buffer; under `Bounds::Fill` an out-of-range index still reads a clamped element, and a
//! `select` then gives zero (gather) or keeps the old element (scatter).

use super::{clty, jit_err, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{self, condcodes::IntCC, types, InstBuilder};
use ferrax_ir::ops::{BinaryOp, Bounds, Combine, IndexOp, LiteralOp, ShapeOp, Walk};
use ferrax_ir::{Graph, InstData, Op, Result, Value};
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
        IndexOp::Gather(ix) => {
            let idx = inst.args[1];
            let w = ix.walk(&xdims, cx.graph.ty(idx).dims());
            let out = strides(&w.dims);
            if w.n == 0 {
                // No element to read: every position is unnamed and reads zero.
                let z = cx.constant(dtype, 0.0);
                let n = cx.graph.ty(r).size();
                return cx.for_range(n, &mut |cx, i| cx.store_out(r, i, z));
            }
            if super::periodic::lower(cx, inst)? {
                return Ok(());
            }
            let acc = walk_accesses(cx, &w, out);
            cx.nest(&w.dims, &acc, &mut |cx, _, o| {
                let i = cx.load(idx, o[0])?;
                let v = gathered(cx, x, o[1], i, w.n, w.axis_stride as i64, ix.bounds)?;
                cx.store_out(r, o[2], v)
            })
        }
        IndexOp::Scatter { at, combine } => {
            let (idx, upd) = (inst.args[1], inst.args[2]);
            let w = at.walk(&xdims, cx.graph.ty(idx).dims());
            match splat_constant(cx, x) {
                Some(v) => fill(cx, r, v)?,
                _ => copy_all(cx, x, r)?,
            }
            if w.n == 0 {
                return Ok(());
            }
            let ust = strides(&w.dims);
            let acc = walk_accesses(cx, &w, ust);
            let (combine, bounds) = (*combine, at.bounds);
            cx.nest(&w.dims, &acc, &mut |cx, _, o| {
                let i = cx.load(idx, o[0])?;
                let (p, inside) = resolve(cx, i, w.n, bounds);
                let dst = cx.fb.ins().imul_imm_s(p, w.axis_stride as i64);
                let dst = cx.fb.ins().iadd(o[1], dst);
                let cur = cx.load(r, dst)?;
                let u = cx.load(upd, o[2])?;
                let op = match combine {
                    Combine::Set => None,
                    Combine::Add => Some(BinaryOp::Add),
                    Combine::Mul => Some(BinaryOp::Mul),
                    Combine::Min => Some(BinaryOp::Min),
                    Combine::Max => Some(BinaryOp::Max),
                };
                let mut v = match op {
                    Some(op) => super::binary::emit(cx, op, dtype, cur, u, 1)?,
                    None => u,
                };
                if let Some(inside) = inside {
                    v = cx.fb.ins().select(inside, v, cur);
                }
                cx.store_out(r, dst, v)
            })
        }
    }
}

/// The three accesses of a gather or scatter over the walk `w`: the indices, the operand
/// (without the indexed axis) and the dense side (the gather's result or the scatter's
/// updates) with strides `dense`.
fn walk_accesses(cx: &mut Ctx, w: &Walk, dense: SmallVec<[i64; 4]>) -> [Access; 3] {
    let zero = cx.iconst(0);
    let conv = |s: &[usize]| -> SmallVec<[i64; 4]> { s.iter().map(|&v| v as i64).collect() };
    [
        Access {
            base: zero,
            strides: conv(&w.idx_strides),
        },
        Access {
            base: zero,
            strides: conv(&w.x_strides),
        },
        Access {
            base: zero,
            strides: dense,
        },
    ]
}

/// The element of `x` a gather reads for the i32 index `i` along an axis of `n ≥ 1` elements
/// with element stride `stride`, the rest of the position at offset `base`: clamped into the
/// axis, and under `Bounds::Fill` zero for an index outside it.
pub(crate) fn gathered(
    cx: &mut Ctx,
    x: Value,
    base: ir::Value,
    i: ir::Value,
    n: usize,
    stride: i64,
    bounds: Bounds,
) -> Result<ir::Value> {
    let (p, inside) = resolve(cx, i, n, bounds);
    let src = cx.fb.ins().imul_imm_s(p, stride);
    let src = cx.fb.ins().iadd(base, src);
    let mut v = cx.load(x, src)?;
    if let Some(inside) = inside {
        let z = cx.constant(cx.graph.ty(x).dtype, 0.0);
        v = cx.fb.ins().select(inside, v, z);
    }
    Ok(v)
}

/// The position an i32 index names along an axis of `n ≥ 1` elements, clamped into `0..n`
/// (widened to i64), and under `Bounds::Fill` whether the index was in range.
fn resolve(cx: &mut Ctx, i: ir::Value, n: usize, bounds: Bounds) -> (ir::Value, Option<ir::Value>) {
    let p = clamp(cx, i, n as i64 - 1);
    match bounds {
        Bounds::Clip => (p, None),
        Bounds::Fill => {
            // One unsigned comparison: negative indices are huge as unsigned numbers.
            let wide = cx.fb.ins().sextend(types::I64, i);
            let inside = cx
                .fb
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, wide, n as i64);
            (p, Some(inside))
        }
    }
}

/// The value of `x` when it is a float broadcast of a one-element constant (a splat), which a
/// scatter into it fills its result with instead of reading it.
fn splat_constant(cx: &Ctx, x: Value) -> Option<f64> {
    splat_of(cx.graph, x)
}

/// [`splat_constant`] on a graph.
fn splat_of(graph: &Graph, x: Value) -> Option<f64> {
    if !graph.ty(x).dtype.is_float() {
        return None;
    }
    let (_, inst) = graph.producer(x)?;
    if !matches!(inst.op, Op::Shape(ShapeOp::BroadcastInDim { .. })) {
        return None;
    }
    let (_, src) = graph.producer(inst.args[0])?;
    match &src.op {
        Op::Literal(LiteralOp::Const(l)) if l.array().size() == 1 => {
            Some(l.array().data().get_f64(0))
        }
        _ => None,
    }
}

/// For every instruction position, whether it computes a splat (see [`splat_constant`]) that
/// nothing reads: not an output, and used only as the operand of scatters, which fill their
/// results with its value instead. Such a broadcast need not be computed at all (for a dense
/// Jacobian block, the zero matrix its values are scattered into).
pub(crate) fn unread_splats(graph: &Graph) -> Vec<bool> {
    let mut read = vec![false; graph.num_values()];
    for o in graph.outputs() {
        read[o.index()] = true;
    }
    for (_, inst) in graph.insts() {
        let scatter = matches!(inst.op, Op::Index(IndexOp::Scatter { .. }));
        for (k, a) in inst.args.iter().enumerate() {
            if !(scatter && k == 0) || inst.args[1..].contains(a) {
                read[a.index()] = true;
            }
        }
    }
    graph
        .insts()
        .map(|(_, inst)| match inst.results[..] {
            [r] => !read[r.index()] && splat_of(graph, r).is_some(),
            _ => false,
        })
        .collect()
}

/// Writes the float `v` into every element of result `r`, two or four lanes a store (a
/// scatter into zeros then neither reads its operand nor copies it).
fn fill(cx: &mut Ctx, r: Value, v: f64) -> Result<()> {
    let ty = cx.graph.ty(r).clone();
    let Slot::Mem(base) = cx.slot(r)? else {
        return Err(jit_err("a scatter's result held in a register"));
    };
    let lanes = 16 / ty.dtype.size_bytes();
    let c = cx.constant(ty.dtype, v);
    let vector = clty(ty.dtype)
        .by(lanes as u32)
        .ok_or_else(|| jit_err("a scatter fill without a 128-bit vector type"))?;
    let splat = cx.fb.ins().splat(vector, c);
    let n = ty.size();
    cx.for_range(n / lanes, &mut |cx, i| {
        let off = cx.fb.ins().imul_imm_s(i, lanes as i64);
        cx.store_at(base, off, splat, ty.dtype);
        Ok(())
    })?;
    for k in n / lanes * lanes..n {
        let off = cx.iconst(k as i64);
        cx.store_at(base, off, c, ty.dtype);
    }
    Ok(())
}

/// Copies every element of `x` into result `r` (same type).
fn copy_all(cx: &mut Ctx, x: Value, r: Value) -> Result<()> {
    let n = cx.graph.ty(r).size();
    cx.for_range(n, &mut |cx, i| {
        let v = cx.load(x, i)?;
        cx.store_out(r, i, v)
    })
}
