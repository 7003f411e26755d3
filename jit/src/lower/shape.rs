//! Lowering of `ferrax_ir::ops::ShapeOp`. Broadcast, transpose, slice and rev are one loop
//! nest over the result with an affine read of the operand; reshape is a copy of the row-major
//! elements; pad fills the result then writes the operand through a strided map; concatenate
//! writes each operand into its window of the result.

use super::{clty, jit_err, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{self, InstBuilder, MemFlagsData};
use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{InstData, Result, Value};
use smallvec::SmallVec;

/// Elements copied per iteration of a row's unrolled loop (see [`strided_copy`]).
const ROW_UNROLL: usize = 8;

/// Copies through a nest over `dims`: element `src` of `x` read through `read` is written to
/// result `r` through `write`.
///
/// A row (the innermost dimension) of at least [`ROW_UNROLL`] elements of a buffer is copied
/// [`ROW_UNROLL`] elements an iteration, each load and store at an immediate offset from two
/// running addresses, and the rest likewise after the loop; the generic nest spends two
/// multiplications and two additions of offsets per element (a `[256, 784]` transpose took
/// 0.8 ns an element). The same elements are read and written, so results do not change.
fn strided_copy(
    cx: &mut Ctx,
    x: Value,
    r: Value,
    dims: &[usize],
    read: Access,
    write: Access,
) -> Result<()> {
    if let Some((inner, src, dst)) = unrolled_row(cx, x, r, dims, &read, &write)? {
        let outer = &dims[..inner];
        let accesses = [
            Access {
                base: read.base,
                strides: read.strides[..inner].into(),
            },
            Access {
                base: write.base,
                strides: write.strides[..inner].into(),
            },
        ];
        return cx.nest(outer, &accesses, &mut |cx, _, offs| {
            copy_row(cx, x, r, dims[inner], (src, dst), offs)
        });
    }
    cx.nest(dims, &[read, write], &mut |cx, _, offs| {
        let v = cx.load(x, offs[0])?;
        cx.store_out(r, offs[1], v)
    })
}

/// The innermost dimension and the byte strides of reading and writing along it, when rows
/// are copied by [`copy_row`]: both values are buffers, the rows hold at least [`ROW_UNROLL`]
/// elements, and every offset inside an unrolled iteration fits an immediate.
fn unrolled_row(
    cx: &Ctx,
    x: Value,
    r: Value,
    dims: &[usize],
    read: &Access,
    write: &Access,
) -> Result<Option<(usize, i64, i64)>> {
    let Some(inner) = dims.len().checked_sub(1) else {
        return Ok(None);
    };
    let in_memory = |v: Value| -> Result<bool> { Ok(matches!(cx.slot(v)?, Slot::Mem(_))) };
    if dims[inner] < ROW_UNROLL || dims.contains(&0) || !in_memory(x)? || !in_memory(r)? {
        return Ok(None);
    }
    let size = cx.graph.ty(x).dtype.size_bytes() as i64;
    let step = |stride: i64| {
        stride.checked_mul(size).filter(|b| {
            b.checked_mul(ROW_UNROLL as i64)
                .is_some_and(|t| i32::try_from(t).is_ok())
        })
    };
    Ok(
        match (step(read.strides[inner]), step(write.strides[inner])) {
            (Some(src), Some(dst)) => Some((inner, src, dst)),
            _ => None,
        },
    )
}

/// Copies one row of `n` elements from `x` at element offset `offs[0]` to `r` at `offs[1]`,
/// the addresses advancing by `steps` bytes an element (see [`strided_copy`]).
fn copy_row(
    cx: &mut Ctx,
    x: Value,
    r: Value,
    n: usize,
    steps: (i64, i64),
    offs: &[ir::Value],
) -> Result<()> {
    let dtype = cx.graph.ty(x).dtype;
    let (Slot::Mem(xb), Slot::Mem(rb)) = (cx.slot(x)?, cx.slot(r)?) else {
        return Err(jit_err("a row copy between values that are not buffers"));
    };
    let src0 = cx.elem_addr(xb, offs[0], dtype);
    let dst0 = cx.elem_addr(rb, offs[1], dtype);
    let ty = clty(dtype);
    let block = ROW_UNROLL as i64;
    // Elements `from..from + count` of the row, at immediate offsets from `src` and `dst`.
    let copy = |cx: &mut Ctx, src: ir::Value, dst: ir::Value, count: usize| {
        for k in 0..count as i64 {
            // The offsets fit: `unrolled_row` checked `ROW_UNROLL` steps of each.
            let (a, b) = ((k * steps.0) as i32, (k * steps.1) as i32);
            let v = cx.fb.ins().load(ty, MemFlagsData::trusted(), src, a);
            cx.fb.ins().store(MemFlagsData::trusted(), v, dst, b);
        }
    };
    let blocks = n / ROW_UNROLL;
    cx.for_range(blocks, &mut |cx, i| {
        let src = cx.fb.ins().imul_imm_s(i, block * steps.0);
        let src = cx.fb.ins().iadd(src0, src);
        let dst = cx.fb.ins().imul_imm_s(i, block * steps.1);
        let dst = cx.fb.ins().iadd(dst0, dst);
        copy(cx, src, dst, ROW_UNROLL);
        Ok(())
    })?;
    let done = (blocks * ROW_UNROLL) as i64;
    let src = cx.fb.ins().iadd_imm_s(src0, done * steps.0);
    let dst = cx.fb.ins().iadd_imm_s(dst0, done * steps.1);
    copy(cx, src, dst, n % ROW_UNROLL);
    Ok(())
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
