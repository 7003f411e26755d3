//! Lowering of `ferrax_ir::ops::ShapeOp`. Broadcast, transpose, slice and rev are one loop
//! nest over the result with an affine read of the operand; reshape is a copy of the row-major
//! elements; pad fills the result then writes the operand through a strided map; concatenate
//! writes each operand into its window of the result.

use super::{clty, jit_err, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{self, InstBuilder, MemFlagsData};
use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{InstData, Result, Value};
use smallvec::SmallVec;

/// Elements copied per iteration of a row's unrolled loop, and rows per tile of a transpose
/// (see [`strided_copy`]).
const ROW_UNROLL: usize = 8;

/// The smallest read stride (in elements) along the innermost dimension from which a
/// transpose is copied in tiles: below it the rows being read share pages and cache lines.
const TILE_STRIDE_MIN: i64 = 64;

/// Copies through a nest over `dims`: element `src` of `x` read through `read` is written to
/// result `r` through `write`.
///
/// A row (the innermost dimension) of at least [`ROW_UNROLL`] elements of a buffer is copied
/// [`ROW_UNROLL`] elements an iteration, each load and store at an immediate offset from two
/// running addresses, and the rest likewise after the loop; the generic nest spends two
/// multiplications and two additions of offsets per element (a `[256, 784]` transpose took
/// 0.8 ns an element). A transpose (rows read with a large stride, the next dimension
/// contiguous in the source) goes [`ROW_UNROLL`] rows of the result at a time, so that each
/// step reads one run of contiguous source elements and each source page is visited once per
/// tile rather than once per row. The same elements are read and written, so results do not
/// change.
fn strided_copy(
    cx: &mut Ctx,
    x: Value,
    r: Value,
    dims: &[usize],
    read: Access,
    write: Access,
) -> Result<()> {
    if let Some((inner, src, dst)) = unrolled_row(cx, x, r, dims, &read, &write)? {
        let size = cx.graph.ty(x).dtype.size_bytes() as i64;
        let tiled = inner >= 1
            && read.strides[inner - 1] == 1
            && read.strides[inner].abs() >= TILE_STRIDE_MIN
            && dims[inner - 1] >= ROW_UNROLL
            && write.strides[inner - 1]
                .checked_mul(size * ROW_UNROLL as i64)
                .is_some_and(|b| i32::try_from(b).is_ok());
        let outer = if tiled { inner - 1 } else { inner };
        let accesses = [
            Access {
                base: read.base,
                strides: read.strides[..outer].into(),
            },
            Access {
                base: write.base,
                strides: write.strides[..outer].into(),
            },
        ];
        let (dtype, along) = (cx.graph.ty(x).dtype, (src, dst));
        return cx.nest(&dims[..outer], &accesses, &mut |cx, _, offs| {
            let (src0, dst0) = row_addresses(cx, x, r, offs)?;
            if !tiled {
                return copy_row(cx, dtype, dims[inner], along, src0, dst0);
            }
            let across = (size, write.strides[inner - 1] * size);
            copy_tiles(
                cx,
                dtype,
                (dims[inner - 1], dims[inner]),
                across,
                along,
                src0,
                dst0,
            )
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

/// The addresses of the elements at offsets `offs[0]` of `x` and `offs[1]` of `r`.
fn row_addresses(
    cx: &mut Ctx,
    x: Value,
    r: Value,
    offs: &[ir::Value],
) -> Result<(ir::Value, ir::Value)> {
    let dtype = cx.graph.ty(x).dtype;
    let (Slot::Mem(xb), Slot::Mem(rb)) = (cx.slot(x)?, cx.slot(r)?) else {
        return Err(jit_err("a row copy between values that are not buffers"));
    };
    Ok((
        cx.elem_addr(xb, offs[0], dtype),
        cx.elem_addr(rb, offs[1], dtype),
    ))
}

/// Copies `count` elements from `src` to `dst`, element `k` at byte offsets `k·steps.0` and
/// `k·steps.1` (which the callers checked fit an immediate).
fn copy_run(
    cx: &mut Ctx,
    dtype: ferrax_ir::DType,
    count: usize,
    steps: (i64, i64),
    src: ir::Value,
    dst: ir::Value,
) {
    let ty = clty(dtype);
    for k in 0..count as i64 {
        let (a, b) = ((k * steps.0) as i32, (k * steps.1) as i32);
        let v = cx.fb.ins().load(ty, MemFlagsData::trusted(), src, a);
        cx.fb.ins().store(MemFlagsData::trusted(), v, dst, b);
    }
}

/// The addresses `at` (source, destination) moved `i` steps of `step` bytes each.
fn advance(
    cx: &mut Ctx,
    at: (ir::Value, ir::Value),
    i: ir::Value,
    step: (i64, i64),
) -> (ir::Value, ir::Value) {
    let s = cx.fb.ins().imul_imm_s(i, step.0);
    let d = cx.fb.ins().imul_imm_s(i, step.1);
    (cx.fb.ins().iadd(at.0, s), cx.fb.ins().iadd(at.1, d))
}

/// Copies one row of `n` elements from `src0` to `dst0`, the addresses advancing by `steps`
/// bytes an element: [`ROW_UNROLL`] elements an iteration, then the rest.
fn copy_row(
    cx: &mut Ctx,
    dtype: ferrax_ir::DType,
    n: usize,
    steps: (i64, i64),
    src0: ir::Value,
    dst0: ir::Value,
) -> Result<()> {
    let block = ROW_UNROLL as i64;
    let blocks = n / ROW_UNROLL;
    cx.for_range(blocks, &mut |cx, i| {
        let (src, dst) = advance(cx, (src0, dst0), i, (block * steps.0, block * steps.1));
        copy_run(cx, dtype, ROW_UNROLL, steps, src, dst);
        Ok(())
    })?;
    let done = (blocks * ROW_UNROLL) as i64;
    let src = cx.fb.ins().iadd_imm_s(src0, done * steps.0);
    let dst = cx.fb.ins().iadd_imm_s(dst0, done * steps.1);
    copy_run(cx, dtype, n % ROW_UNROLL, steps, src, dst);
    Ok(())
}

/// Copies `rows × cols` elements (`shape`) from `src0` to `dst0` in tiles of [`ROW_UNROLL`]
/// rows: for each tile and column, the tile's elements of that column, at byte strides
/// `across` from row to row (contiguous in the source) and `along` from column to column;
/// the rows left over after the last whole tile are copied as rows.
fn copy_tiles(
    cx: &mut Ctx,
    dtype: ferrax_ir::DType,
    shape: (usize, usize),
    across: (i64, i64),
    along: (i64, i64),
    src0: ir::Value,
    dst0: ir::Value,
) -> Result<()> {
    let (rows, cols) = shape;
    let tile = ROW_UNROLL as i64;
    let tiles = rows / ROW_UNROLL;
    cx.for_range(tiles, &mut |cx, t| {
        let at = advance(cx, (src0, dst0), t, (tile * across.0, tile * across.1));
        cx.for_range(cols, &mut |cx, j| {
            let (s, d) = advance(cx, at, j, along);
            copy_run(cx, dtype, ROW_UNROLL, across, s, d);
            Ok(())
        })
    })?;
    for k in (tiles * ROW_UNROLL) as i64..rows as i64 {
        let src = cx.fb.ins().iadd_imm_s(src0, k * across.0);
        let dst = cx.fb.ins().iadd_imm_s(dst0, k * across.1);
        copy_row(cx, dtype, cols, along, src, dst)?;
    }
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
