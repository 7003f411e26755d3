//! Index remappings read inside fused loops (slices, pads, concatenations, transposes, revs,
//! broadcasts and uniform constants, see the JIT's `lower/remap.rs`): random graphs mixing them
//! with elementwise ops and reductions, JIT against the interpreter bit for bit in f32 and f64;
//! edge cases (empty slices, pads of empty operands, strides, revs, pads on every side, the
//! parallel path with guards on outer and inner dimensions); and plan checks that a
//! `pad(slice(x)) · y + z` chain is one loop with no intermediate buffer.

mod common;

use common::{array, check, Rng};
use ferrax_ir::ops::{BinaryOp, Literal, LiteralOp, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Shape, Type, Value};
use ferrax_jit::{compile, JitOptions};
use proptest::prelude::*;

/// `pad` of `x` with `lo`, `hi` (no interior) and the scalar `v`.
fn pad(b: &mut Builder, x: Value, v: Value, lo: &[usize], hi: &[usize]) -> Option<Value> {
    let op = Op::Shape(ShapeOp::Pad {
        lo: lo.into(),
        hi: hi.into(),
        interior: vec![0; lo.len()].into_boxed_slice(),
    });
    b.push1(op, &[x, v]).ok()
}

/// A slice of `x` from `start` to `limit` with `stride`.
fn slice(b: &mut Builder, x: Value, start: &[usize], limit: &[usize], stride: &[usize]) -> Value {
    let op = Op::Shape(ShapeOp::Slice {
        start: start.into(),
        limit: limit.into(),
        stride: stride.into(),
    });
    b.push1(op, &[x]).expect("slice")
}

/// A scalar constant of `dtype`.
fn scalar(b: &mut Builder, dtype: DType, v: f64) -> Value {
    let lit = Literal::new(Array::scalar(dtype, v));
    b.push1(Op::Literal(LiteralOp::Const(lit)), &[])
        .expect("const")
}

/// `x` made into `y`'s shape (same rank): a window of `x` of at most `y`'s extent, at an
/// offset chosen from `c`, padded (with `fill`) on both sides up to `y`'s extent.
fn fit(b: &mut Builder, x: Value, y: Value, fill: Value, c: usize) -> Option<Value> {
    let (xd, yd) = (b.ty(x).dims().to_vec(), b.ty(y).dims().to_vec());
    if xd.len() != yd.len() {
        return None;
    }
    let (mut start, mut limit, mut lo, mut hi) = (vec![], vec![], vec![], vec![]);
    for d in 0..xd.len() {
        let w = xd[d].min(yd[d]);
        let s = if xd[d] > w {
            (c >> d) % (xd[d] - w + 1)
        } else {
            0
        };
        start.push(s);
        limit.push(s + w);
        let l = if yd[d] > w {
            (c >> (d + 2)) % (yd[d] - w + 1)
        } else {
            0
        };
        lo.push(l);
        hi.push(yd[d] - w - l);
    }
    let ones = vec![1; xd.len()];
    let s = slice(b, x, &start, &limit, &ones);
    pad(b, s, fill, &lo, &hi)
}

/// `x` rolled by `s` places along `axis`: the concatenation of its last `s % n` and first
/// `n − s % n` slices along that axis (`x` itself when that is a whole turn).
fn roll(b: &mut Builder, x: Value, axis: usize, s: usize) -> Option<Value> {
    let xd = b.ty(x).dims().to_vec();
    let n = xd[axis];
    if n == 0 || s.is_multiple_of(n) {
        return Some(x);
    }
    let s = s % n;
    let ones = vec![1; xd.len()];
    let (mut start, mut limit) = (vec![0; xd.len()], xd.clone());
    start[axis] = n - s;
    let last = slice(b, x, &start, &limit, &ones);
    start[axis] = 0;
    limit[axis] = n - s;
    let first = slice(b, x, &start, &limit, &ones);
    b.push1(Op::Shape(ShapeOp::Concatenate { axis }), &[last, first])
        .ok()
}

/// Applies op number `code` with choices `a`, `c` to the value pool; ill-typed picks are
/// skipped.
fn step(b: &mut Builder, pool: &mut Vec<Value>, code: u8, a: usize, c: usize) {
    let x = pool[a % pool.len()];
    let y = pool[c % pool.len()];
    let xt = b.ty(x).clone();
    let dt = xt.dtype;
    let rank = xt.rank();
    let xd = xt.dims().to_vec();
    let v = match code % 13 {
        0 => {
            let u = [UnaryOp::Neg, UnaryOp::Sin, UnaryOp::Square, UnaryOp::Exp][c % 4];
            b.push1(Op::Unary(u), &[x]).ok()
        }
        1 => {
            let op = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub, BinaryOp::Max][c % 4];
            let args = if b.ty(y) == &xt { [x, y] } else { [x, x] };
            b.push1(Op::Binary(op), &args).ok()
        }
        2 => {
            // A strided window (possibly empty).
            let start: Vec<usize> = (0..rank).map(|d| (c >> d) % (xd[d] + 1)).collect();
            let limit: Vec<usize> = (0..rank)
                .map(|d| start[d] + (c >> (d + 1)) % (xd[d] - start[d] + 1))
                .collect();
            let stride: Vec<usize> = (0..rank).map(|d| 1 + (c >> (2 * d)) % 3).collect();
            Some(slice(b, x, &start, &limit, &stride))
        }
        3 => {
            let lo: Vec<usize> = (0..rank).map(|d| (c >> d) % 3).collect();
            let hi: Vec<usize> = (0..rank).map(|d| (c >> (d + 3)) % 3).collect();
            let v = scalar(b, dt, -1.5 + (c % 4) as f64);
            if c.is_multiple_of(7) {
                // Interior padding: not a remap, lowered on its own.
                let op = Op::Shape(ShapeOp::Pad {
                    lo: lo[..].into(),
                    hi: hi[..].into(),
                    interior: vec![1; rank].into_boxed_slice(),
                });
                b.push1(op, &[x, v]).ok()
            } else {
                pad(b, x, v, &lo, &hi)
            }
        }
        4 => {
            if rank == 0 {
                return;
            }
            let axis = c % rank;
            let other = if b.ty(y).rank() == rank
                && (0..rank).all(|d| d == axis || b.ty(y).dims()[d] == xd[d])
            {
                y
            } else {
                b.push1(Op::Unary(UnaryOp::Neg), &[x]).expect("neg")
            };
            let parts = if c.is_multiple_of(2) {
                vec![x, other]
            } else {
                vec![other, x, other]
            };
            b.push1(Op::Shape(ShapeOp::Concatenate { axis }), &parts)
                .ok()
        }
        5 => {
            let perm: Dims = (0..rank).map(|d| (d + 1 + c) % rank.max(1)).collect();
            b.push1(
                Op::Shape(ShapeOp::Transpose {
                    perm: perm.into_boxed_slice(),
                }),
                &[x],
            )
            .ok()
        }
        6 => {
            let axes: Dims = (0..rank).filter(|d| (c >> d) & 1 == 1).collect();
            b.push1(
                Op::Shape(ShapeOp::Rev {
                    axes: axes.into_boxed_slice(),
                }),
                &[x],
            )
            .ok()
        }
        7 => {
            if rank >= 3 {
                return;
            }
            let mut shape = vec![1 + c % 3];
            shape.extend_from_slice(&xd);
            let op = Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&shape),
                dims: (1..=rank).collect(),
            });
            b.push1(op, &[x]).ok()
        }
        8 => {
            let axes: Dims = (0..rank).filter(|d| (c >> d) & 1 == 1).collect();
            b.push1(Op::Reduce(ReduceOp::Sum { axes }), &[x]).ok()
        }
        9 => {
            // A pad(slice) chain of a value computed here (so the loop computes it at the
            // remapped indices) into an elementwise op with a value of the target shape.
            let fill = scalar(b, dt, 0.25);
            let sq = b.push1(Op::Unary(UnaryOp::Square), &[x]).expect("square");
            let f = fit(b, sq, y, fill, c);
            f.and_then(|f| b.push1(Op::Binary(BinaryOp::Mul), &[f, y]).ok())
        }
        10 => {
            // A roll along an axis (the last pieces first): guards that pick a piece per
            // row on outer axes and per segment on the inner one.
            if rank == 0 {
                return;
            }
            roll(b, x, c % rank, c / rank)
        }
        11 => {
            // A reshape adding a unit dimension, or dropping every one.
            let mut dims: Vec<usize> = xd.iter().copied().filter(|&n| n != 1).collect();
            if dims.len() == rank && rank < 4 {
                dims.insert(c % (rank + 1), 1);
            }
            let op = Op::Shape(ShapeOp::Reshape {
                shape: Shape::new(&dims),
            });
            b.push1(op, &[x]).ok()
        }
        _ => {
            // A uniform constant of x's shape.
            let k = Array::full(dt, Shape::new(&xd), 1.5).expect("full");
            let k = b
                .push1(Op::Literal(LiteralOp::Const(Literal::new(k))), &[])
                .expect("const");
            b.push1(Op::Binary(BinaryOp::Mul), &[x, k]).ok()
        }
    };
    if let Some(v) = v {
        pool.push(v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn random_remap_graphs_match_interpreter(
        f32_dtype in any::<bool>(),
        dims in prop::collection::vec(0usize..6, 0..4),
        dims2 in prop::collection::vec(0usize..6, 0..4),
        ops in prop::collection::vec((any::<u8>(), 0usize..16, 0usize..256), 1..12),
        seed in any::<u64>(),
    ) {
        let dt = if f32_dtype { DType::F32 } else { DType::F64 };
        let mut b = Builder::new();
        let p0 = b.param(Type::new(dt, &dims));
        let p1 = b.param(Type::new(dt, &dims2));
        let mut pool = vec![p0, p1];
        for (code, a, c) in ops {
            step(&mut b, &mut pool, code, a, c);
        }
        let outs: Vec<Value> = pool.iter().rev().take(3).copied().collect();
        let g = b.finish(&outs);
        let mut rng = Rng(seed);
        let args = [
            array(&mut rng, dt, &dims, -2.0, 2.0, false),
            array(&mut rng, dt, &dims2, -2.0, 2.0, false),
        ];
        check(&g, &args);
    }
}

/// `pad(slice(x)) · y + z`: `x` is `[rows, cols + 2]`, sliced to `[rows, cols]` from column
/// `s` and padded back to `[rows, cols + 2]` with `lo` columns before.
fn pad_slice_chain(dtype: DType, rows: usize, cols: usize, s: usize, lo: usize) -> Graph {
    let mut b = Builder::new();
    let w = cols + 2;
    let x = b.param(Type::new(dtype, &[rows, w]));
    let y = b.param(Type::new(dtype, &[rows, w]));
    let z = b.param(Type::new(dtype, &[rows, w]));
    let sl = slice(&mut b, x, &[0, s], &[rows, s + cols], &[1, 1]);
    let fill = scalar(&mut b, dtype, -3.0);
    let p = pad(&mut b, sl, fill, &[0, lo], &[0, 2 - lo]).expect("pad");
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[p, y]).expect("mul");
    let r = b.push1(Op::Binary(BinaryOp::Add), &[m, z]).expect("add");
    b.finish(&[r])
}

#[test]
fn pad_slice_chain_is_one_loop_without_buffers() {
    let mut rng = Rng(11);
    for dtype in [DType::F64, DType::F32] {
        // Small (inline), odd widths (vector tails), and the parallel path.
        for (rows, cols) in [(3, 5), (2, 1), (4, 37), (3, 70_001)] {
            for (s, lo) in [(0, 0), (1, 1), (2, 2), (0, 2)] {
                let g = pad_slice_chain(dtype, rows, cols, s, lo);
                let f = compile(&g, &JitOptions::default()).expect("compile");
                // Before remap fusion the slice and the pad each had a buffer.
                assert_eq!(
                    f.workspace_bytes(),
                    0,
                    "{dtype} [{rows},{cols}] s={s} lo={lo}"
                );
                let dims = [rows, cols + 2];
                let args: Vec<Array> = (0..3)
                    .map(|_| array(&mut rng, dtype, &dims, -2.0, 2.0, true))
                    .collect();
                check(&g, &args);
            }
        }
    }
}

/// The sparse Hessian's decompression shape: two `[k, n]` products, each padded by one
/// column on opposite sides, added: one loop computing both products at shifted indices.
#[test]
fn shifted_pads_added_need_no_pad_buffers() {
    let mut rng = Rng(5);
    for dtype in [DType::F64, DType::F32] {
        for n in [1, 2, 9, 100_001] {
            let mut b = Builder::new();
            let a = b.param(Type::new(dtype, &[3, n]));
            let c = b.param(Type::new(dtype, &[3, n]));
            let u = b.param(Type::new(dtype, &[3, n]));
            let p = b.push1(Op::Binary(BinaryOp::Mul), &[a, u]).expect("mul");
            let q = b.push1(Op::Binary(BinaryOp::Sub), &[c, u]).expect("sub");
            let zero = scalar(&mut b, dtype, 0.0);
            let pp = pad(&mut b, p, zero, &[0, 1], &[0, 0]).expect("pad");
            let qq = pad(&mut b, q, zero, &[0, 0], &[0, 1]).expect("pad");
            let r = b.push1(Op::Binary(BinaryOp::Add), &[pp, qq]).expect("add");
            let g = b.finish(&[r]);
            let f = compile(&g, &JitOptions::default()).expect("compile");
            // The products are computed in the sum's loop at the padded indices: neither
            // they nor the pads have a buffer.
            assert_eq!(f.workspace_bytes(), 0, "{dtype} n={n}");
            let args: Vec<Array> = (0..3)
                .map(|_| array(&mut rng, dtype, &[3, n], -2.0, 2.0, true))
                .collect();
            check(&g, &args);
        }
    }
}

/// Guards on an outer dimension (a pad of rows, a concatenation of rows), reductions over
/// padded and concatenated values, transposed and reversed reads, and a uniform constant,
/// at sizes that take the parallel path.
#[test]
fn outer_guards_reductions_and_uniform_constants_match_the_interpreter() {
    let mut rng = Rng(7);
    for dtype in [DType::F64, DType::F32] {
        for (rows, cols) in [(1, 1), (5, 3), (300, 257), (2, 0), (0, 4)] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dtype, &[rows, cols]));
            let y = b.param(Type::new(dtype, &[rows + 3, cols]));
            let v = scalar(&mut b, dtype, 2.5);
            let px = pad(&mut b, x, v, &[2, 0], &[1, 0]).expect("pad");
            let nx = b.push1(Op::Unary(UnaryOp::Neg), &[x]).expect("neg");
            let top = slice(&mut b, y, &[0, 0], &[3, cols], &[1, 1]);
            let cat = b
                .push1(Op::Shape(ShapeOp::Concatenate { axis: 0 }), &[top, nx])
                .expect("concat");
            let k = Array::full(dtype, Shape::new(&[rows + 3, cols]), 0.5).expect("full");
            let k = b
                .push1(Op::Literal(LiteralOp::Const(Literal::new(k))), &[])
                .expect("const");
            let rv = b
                .push1(
                    Op::Shape(ShapeOp::Rev {
                        axes: Box::new([0, 1]),
                    }),
                    &[y],
                )
                .expect("rev");
            let m = b.push1(Op::Binary(BinaryOp::Mul), &[px, cat]).expect("mul");
            let m = b.push1(Op::Binary(BinaryOp::Mul), &[m, k]).expect("mul");
            let s = b.push1(Op::Binary(BinaryOp::Add), &[m, rv]).expect("add");
            let t = b
                .push1(
                    Op::Shape(ShapeOp::Transpose {
                        perm: Box::new([1, 0]),
                    }),
                    &[s],
                )
                .expect("transpose");
            let e = b.push1(Op::Unary(UnaryOp::Square), &[t]).expect("square");
            let sum_rows = b
                .push1(
                    Op::Reduce(ReduceOp::Sum {
                        axes: Dims::from_slice(&[0]),
                    }),
                    &[cat],
                )
                .expect("sum");
            let sum_all = b
                .push1(
                    Op::Reduce(ReduceOp::Max {
                        axes: Dims::from_slice(&[0, 1]),
                    }),
                    &[px],
                )
                .expect("max");
            let g = b.finish(&[e, sum_rows, sum_all]);
            let args = [
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                array(&mut rng, dtype, &[rows + 3, cols], -2.0, 2.0, true),
            ];
            check(&g, &args);
        }
    }
}

/// Edge cases of single remaps into an elementwise op: empty slices, pads of empty operands
/// (every element is the pad value), strided slices, and pads wider than the operand.
#[test]
fn remap_edge_cases_match_the_interpreter() {
    let mut rng = Rng(13);
    for dtype in [DType::F64, DType::F32] {
        for n in [0usize, 1, 4, 7] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dtype, &[n]));
            let y = b.param(Type::new(dtype, &[n + 5]));
            let v = scalar(&mut b, dtype, 9.0);
            // Empty slice padded to n + 5: all pad values.
            let e = slice(&mut b, x, &[n], &[n], &[1]);
            let pe = pad(&mut b, e, v, &[2], &[3 + n]).expect("pad");
            let a = b.push1(Op::Binary(BinaryOp::Add), &[pe, y]).expect("add");
            // Strided slice of y (every other element), padded up to n + 5.
            let st = slice(&mut b, y, &[1], &[n + 5], &[2]);
            let w = b.ty(st).dims()[0];
            let ps = pad(&mut b, st, v, &[n + 5 - w], &[0]).expect("pad");
            let m = b.push1(Op::Binary(BinaryOp::Mul), &[a, ps]).expect("mul");
            // A pad wider than the operand on both sides, of a strided reversed window.
            let rv = b
                .push1(
                    Op::Shape(ShapeOp::Rev {
                        axes: Box::new([0]),
                    }),
                    &[x],
                )
                .expect("rev");
            let pw = pad(&mut b, rv, v, &[3], &[2]).expect("pad");
            let o = b.push1(Op::Binary(BinaryOp::Sub), &[m, pw]).expect("sub");
            let g = b.finish(&[o]);
            let args = [
                array(&mut rng, dtype, &[n], -2.0, 2.0, true),
                array(&mut rng, dtype, &[n + 5], -2.0, 2.0, true),
            ];
            check(&g, &args);
        }
    }
}

/// Values computed in the loop at remapped indices: `pad(slice(x²·w + 1))` with a nonzero pad
/// value, a transposed and a reversed product, and a pad on the outer dimension, added to a
/// parameter; checked on small shapes and on the parallel path, with no buffer at all.
#[test]
fn computed_values_under_remaps_match_the_interpreter() {
    let mut rng = Rng(17);
    for dtype in [DType::F64, DType::F32] {
        for (rows, cols) in [(1, 1), (2, 3), (4, 9), (5, 0), (260, 263)] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dtype, &[rows, cols]));
            let w = b.param(Type::new(dtype, &[rows, cols]));
            let y = b.param(Type::new(dtype, &[rows + 2, cols + 1]));
            let xt = b.param(Type::new(dtype, &[cols, rows]));
            let one = scalar(&mut b, dtype, 1.0);
            let fill = scalar(&mut b, dtype, 0.75);
            let sq = b.push1(Op::Unary(UnaryOp::Square), &[x]).expect("square");
            let m = b.push1(Op::Binary(BinaryOp::Mul), &[sq, w]).expect("mul");
            let ones = b
                .push1(
                    Op::Shape(ShapeOp::BroadcastInDim {
                        shape: Shape::new(&[rows, cols]),
                        dims: Box::default(),
                    }),
                    &[one],
                )
                .expect("broadcast");
            let e = b.push1(Op::Binary(BinaryOp::Add), &[m, ones]).expect("add");
            let c1 = cols.saturating_sub(1);
            let s = slice(&mut b, e, &[0, 0], &[rows, c1], &[1, 1]);
            let p = pad(&mut b, s, fill, &[1, 1], &[1, cols - c1]).expect("pad");
            let xtw = b
                .push1(
                    Op::Shape(ShapeOp::Transpose {
                        perm: Box::new([1, 0]),
                    }),
                    &[xt],
                )
                .expect("transpose");
            let q = b.push1(Op::Binary(BinaryOp::Sub), &[xtw, w]).expect("sub");
            let qt = b
                .push1(
                    Op::Shape(ShapeOp::Rev {
                        axes: Box::new([0, 1]),
                    }),
                    &[q],
                )
                .expect("rev");
            let qp = pad(&mut b, qt, fill, &[2, 0], &[0, 1]).expect("pad");
            let r = b.push1(Op::Binary(BinaryOp::Add), &[p, y]).expect("add");
            let r = b.push1(Op::Binary(BinaryOp::Mul), &[r, qp]).expect("mul");
            let g = b.finish(&[r]);
            let f = compile(&g, &JitOptions::default()).expect("compile");
            assert_eq!(f.workspace_bytes(), 0, "{dtype} [{rows},{cols}]");
            let args = [
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                array(&mut rng, dtype, &[rows + 2, cols + 1], -2.0, 2.0, true),
                array(&mut rng, dtype, &[cols, rows], -2.0, 2.0, true),
            ];
            check(&g, &args);
        }
    }
}

/// A gather (`take`) by a constant of `idx` along `axis`, with the default clipping.
fn gather(b: &mut Builder, x: Value, idx: &[i32], idx_dims: &[usize], axis: usize) -> Value {
    let ix = ferrax_ir::ops::Indexing {
        axis,
        ..Default::default()
    };
    gather_with(b, x, idx, idx_dims, ix)
}

/// A gather by a constant of `idx` with the indexing `ix`.
fn gather_with(
    b: &mut Builder,
    x: Value,
    idx: &[i32],
    idx_dims: &[usize],
    ix: ferrax_ir::ops::Indexing,
) -> Value {
    let at = Array::from_i32(Shape::new(idx_dims), idx.to_vec()).expect("indices");
    let at = b
        .push1(Op::Literal(LiteralOp::Const(Literal::new(at))), &[])
        .expect("const");
    b.push1(Op::Index(ferrax_ir::ops::IndexOp::Gather(ix)), &[x, at])
        .expect("gather")
}

/// Indices in the shape of the chained Rosenbrock Hessian's decompression from a flattened
/// `[3, n]` compressed matrix: two odd positions, then twelve values per four rows, shifted
/// by four from one period to the next, then a short tail.
fn rosenbrock_like(n: usize) -> Vec<i32> {
    let n = n as i32;
    let mut idx = vec![2 * n, 0];
    let mut r = 1;
    while r + 4 < n {
        for (c, d) in [(2, 0), (0, 0), (1, 0), (1, 0), (1, 1), (1, 2)] {
            idx.push(c * n + r + d);
        }
        for (c, d) in [(1, 2), (0, 2), (2, 2), (2, 2), (2, 3), (2, 4)] {
            idx.push(c * n + r + d);
        }
        r += 4;
    }
    idx.extend([n + r, r, 2 * n - 1]);
    idx
}

/// Gathers of a rank-1 operand by constant indices that repeat with a shift (see the JIT's
/// `lower/periodic.rs`), JIT against the interpreter bit for bit: a periodic run with a head
/// and a tail, the same with one index changed in the middle (almost periodic: the longer
/// half is the run), with an index outside the operand in the middle (clipped or filled as
/// before), with negative and too large indices in the head and tail, and a broken period
/// (no run: the general gather); in f64, f32 and i32, with both bounds modes, on operands
/// computed in a fused loop (the sparse Hessian's case) and on parameters.
#[test]
fn periodic_constant_gathers_match_the_interpreter() {
    use ferrax_ir::ops::{Bounds, Indexing};
    let mut rng = Rng(23);
    for n in [9usize, 41, 4_001, 30_000] {
        let base = rosenbrock_like(n);
        let len = base.len();
        let mut almost = base.clone();
        almost[len / 4] += 1;
        let mut outside = base.clone();
        outside[len / 3] = 3 * n as i32 + 5;
        let mut ends = base.clone();
        ends[0] = -7;
        ends[len - 1] = 3 * n as i32;
        let broken: Vec<i32> = (0..len)
            .map(|q| ((q * q * 7 + q / 3) % (3 * n)) as i32)
            .collect();
        for dtype in [DType::F64, DType::F32, DType::I32] {
            for bounds in [Bounds::Clip, Bounds::Fill] {
                let ix = Indexing {
                    axis: 0,
                    along: false,
                    bounds,
                };
                let mut b = Builder::new();
                let a = b.param(Type::new(dtype, &[3, n]));
                let c = b.param(Type::new(dtype, &[3 * n]));
                let m = b.push1(Op::Binary(BinaryOp::Add), &[a, a]).expect("add");
                let flat = reshape(&mut b, m, &[3 * n]);
                let mut outs = Vec::new();
                for idx in [&base, &almost, &outside, &ends, &broken] {
                    outs.push(gather_with(&mut b, flat, idx, &[len], ix));
                    outs.push(gather_with(&mut b, c, idx, &[len], ix));
                }
                let g = b.finish(&outs);
                let before = ferrax_jit::stats().periodic_gathers;
                let args = [
                    array(&mut rng, dtype, &[3, n], -2.0, 2.0, true),
                    array(&mut rng, dtype, &[3 * n], -2.0, 2.0, true),
                ];
                check(&g, &args);
                if n >= 41 {
                    // The first four index vectors have a run, on both operands.
                    assert!(ferrax_jit::stats().periodic_gathers >= before + 8);
                }
            }
        }
    }
}

/// Gathers by constant indices read inside fused loops: of a flattened `[3, n]` product (the
/// sparse derivatives' decompression), along the second axis of a matrix into an elementwise
/// op, and (not fused) with indices outside the axis, which clip as before; on small sizes
/// and on the parallel path.
#[test]
fn constant_gathers_match_the_interpreter() {
    let mut rng = Rng(19);
    for dtype in [DType::F64, DType::F32] {
        for n in [1usize, 2, 7, 40_000] {
            let mut b = Builder::new();
            let a = b.param(Type::new(dtype, &[3, n]));
            let c = b.param(Type::new(dtype, &[3, n]));
            let m = b.push1(Op::Binary(BinaryOp::Mul), &[a, c]).expect("mul");
            let flat = b
                .push1(
                    Op::Shape(ShapeOp::Reshape {
                        shape: Shape::new(&[3 * n]),
                    }),
                    &[m],
                )
                .expect("reshape");
            // A tridiagonal-like pick: (c·n + j) for neighbouring colours, in CSR-like order.
            let idx: Vec<i32> = (0..3 * n)
                .map(|q| (((q % 3) * n + q / 3 + (q * 7) % 3) % (3 * n)) as i32)
                .collect();
            let g1 = gather(&mut b, flat, &idx, &[3 * n], 0);
            // Along axis 1 of a [3, n] matrix by a [2, n] index table, into an add.
            let idx2: Vec<i32> = (0..2 * n).map(|q| ((q * 5 + 1) % n) as i32).collect();
            let g2 = gather(&mut b, c, &idx2, &[2, n], 1);
            let y = b.param(Type::new(dtype, &[3, 2, n]));
            let s = b.push1(Op::Binary(BinaryOp::Add), &[g2, y]).expect("add");
            // Out of range: clipped, lowered on its own.
            let bad: Vec<i32> = (0..4).map(|q| q * 2 * n as i32 - 3).collect();
            let g3 = gather(&mut b, flat, &bad, &[4], 0);
            let g = b.finish(&[g1, s, g3]);
            let args = [
                array(&mut rng, dtype, &[3, n], -2.0, 2.0, true),
                array(&mut rng, dtype, &[3, n], -2.0, 2.0, true),
                array(&mut rng, dtype, &[3, 2, n], -2.0, 2.0, true),
            ];
            check(&g, &args);
        }
    }
}

/// A reshape of `x` to `dims`.
fn reshape(b: &mut Builder, x: Value, dims: &[usize]) -> Value {
    let op = Op::Shape(ShapeOp::Reshape {
        shape: Shape::new(dims),
    });
    b.push1(op, &[x]).expect("reshape")
}

/// The sparse Brusselator Jacobian's shape on `x: [2, k, n, n]`: the two planes sliced out and
/// reshaped to drop the unit axis, a periodic five-point stencil of each by rolls along both
/// axes, combined; returns both results, or with `picks`, the values constant gathers pick
/// out of each, joined by a concatenation.
fn rolled_planes(dtype: DType, k: usize, n: usize, picks: bool) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::new(dtype, &[2, k, n, n]));
    let mut plane = |s: usize| {
        let p = slice(&mut b, x, &[s, 0, 0, 0], &[s + 1, k, n, n], &[1, 1, 1, 1]);
        reshape(&mut b, p, &[k, n, n])
    };
    let (u, v) = (plane(0), plane(1));
    let four = scalar(&mut b, dtype, 4.0);
    let op = Op::Shape(ShapeOp::BroadcastInDim {
        shape: Shape::new(&[k, n, n]),
        dims: Box::default(),
    });
    let four = b.push1(op, &[four]).expect("broadcast");
    let mut stencil = |w: Value| {
        let mut acc = b.push1(Op::Binary(BinaryOp::Mul), &[w, four]).expect("mul");
        for (axis, s) in [(1, 1), (1, n.max(1) - 1), (2, 1), (2, n + 1)] {
            let r = roll(&mut b, w, axis, s).expect("roll");
            acc = b.push1(Op::Binary(BinaryOp::Sub), &[acc, r]).expect("sub");
        }
        acc
    };
    let (lu, lv) = (stencil(u), stencil(v));
    let uv = b.push1(Op::Binary(BinaryOp::Mul), &[u, v]).expect("mul");
    let du = b.push1(Op::Binary(BinaryOp::Add), &[uv, lu]).expect("add");
    let dv = b.push1(Op::Binary(BinaryOp::Sub), &[lv, uv]).expect("sub");
    if !picks {
        return b.finish(&[du, dv]);
    }
    let size = k * n * n;
    let mut parts = Vec::new();
    for (o, r) in [du, dv].into_iter().enumerate() {
        let flat = reshape(&mut b, r, &[size]);
        let idx: Vec<i32> = (0..size + 3).map(|q| ((q * 7 + o) % size) as i32).collect();
        parts.push(gather(&mut b, flat, &idx, &[size + 3], 0));
    }
    let cat = b
        .push1(Op::Shape(ShapeOp::Concatenate { axis: 0 }), &parts)
        .expect("concat");
    b.finish(&[cat])
}

/// The sparse Brusselator Jacobian's shape (see [`rolled_planes`]): the planes are read in
/// place (no copy of the slices), the rolls are concatenations whose pieces are chosen per
/// row on the outer axis and per segment of the row on the inner one, and the gathered
/// values are one loop reading both results in place. JIT against the interpreter bit for
/// bit, on small sizes and on the parallel path.
#[test]
fn rolled_planes_and_joined_gathers_match_the_interpreter() {
    let mut rng = Rng(29);
    for dtype in [DType::F64, DType::F32] {
        for (k, n) in [(1usize, 1usize), (2, 2), (3, 5), (2, 9), (3, 160)] {
            let args = [array(&mut rng, dtype, &[2, k, n, n], -2.0, 2.0, true)];
            let g = rolled_planes(dtype, k, n, false);
            let f = compile(&g, &JitOptions::default()).expect("compile");
            // Nothing but the outputs needs memory: each plane was a copy before unit
            // reshapes were read through.
            assert_eq!(f.workspace_bytes(), 0, "{dtype} k={k} n={n}");
            check(&g, &args);
            check(&rolled_planes(dtype, k, n, true), &args);
        }
    }
}

/// Deep graphs compile without deep recursion: a chain of 5,000 elementwise ops under one pad
/// (computed in the pad's loop), and 60 nested pads and slices of computed values (cut into
/// several loops past the nesting bound).
#[test]
fn deep_chains_under_remaps_compile_and_match() {
    let mut rng = Rng(23);
    let dtype = DType::F64;
    let mut b = Builder::new();
    let x = b.param(Type::new(dtype, &[6]));
    let mut v = x;
    for k in 0..5000 {
        let op = if k % 2 == 0 {
            UnaryOp::Neg
        } else {
            UnaryOp::Abs
        };
        v = b.push1(Op::Unary(op), &[v]).expect("unary");
    }
    let fill = scalar(&mut b, dtype, 0.5);
    let p = pad(&mut b, v, fill, &[1], &[1]).expect("pad");
    let y = b.param(Type::new(dtype, &[8]));
    let mut w = b.push1(Op::Binary(BinaryOp::Add), &[p, y]).expect("add");
    for _ in 0..60 {
        let e = b.push1(Op::Unary(UnaryOp::Square), &[w]).expect("square");
        let s = slice(&mut b, e, &[1], &[8], &[1]);
        w = pad(&mut b, s, fill, &[0], &[1]).expect("pad");
    }
    let g = b.finish(&[w]);
    let args = [
        array(&mut rng, dtype, &[6], -1.0, 1.0, false),
        array(&mut rng, dtype, &[8], -1.0, 1.0, false),
    ];
    // Run on a thread with a small stack, as the test harness does.
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || check(&g, &args))
        .expect("thread")
        .join()
        .expect("no overflow");
}

/// The seeds of the sparse derivatives beyond their constant size: the `k × k` identity
/// gathered by a constant colour table of the input's shape `[2, n, n]`, picking columns
/// (`[k, 2, n, n]` directly) or rows (then transposed to that layout), read through the
/// planes' slices and the stencil's rolls along both axes, times the planes of a parameter,
/// in two loops (the gather is read in place by both, so the call needs no workspace).
fn gathered_seeds(dtype: DType, k: usize, n: usize, colours: &[i32], rows: bool) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::new(dtype, &[2, n, n]));
    let eye: Vec<f64> = (0..k * k)
        .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
        .collect();
    let eye = Array::from_f64(Shape::new(&[k, k]), eye)
        .expect("identity")
        .cast(dtype);
    let eye = b
        .push1(Op::Literal(LiteralOp::Const(Literal::new(eye))), &[])
        .expect("const");
    let seeds = if rows {
        let g = gather(&mut b, eye, colours, &[2, n, n], 0);
        let perm = [3, 0, 1, 2].into();
        b.push1(Op::Shape(ShapeOp::Transpose { perm }), &[g])
            .expect("transpose")
    } else {
        gather(&mut b, eye, colours, &[2, n, n], 1)
    };
    let plane = |b: &mut Builder, v: Value, lead: usize, s: usize| {
        let mut start = vec![0; 4];
        let mut limit = vec![lead, 2, n, n];
        start[1] = s;
        limit[1] = s + 1;
        let p = slice(b, v, &start, &limit, &[1, 1, 1, 1]);
        reshape(b, p, &[lead, n, n])
    };
    let (su, sv) = (plane(&mut b, seeds, k, 0), plane(&mut b, seeds, k, 1));
    let x4 = reshape(&mut b, x, &[1, 2, n, n]);
    let (u, v) = (plane(&mut b, x4, 1, 0), plane(&mut b, x4, 1, 1));
    let wide = |b: &mut Builder, w: Value| {
        let op = Op::Shape(ShapeOp::BroadcastInDim {
            shape: Shape::new(&[k, n, n]),
            dims: [0, 1, 2].into(),
        });
        b.push1(op, &[w]).expect("broadcast")
    };
    let (u, v) = (wide(&mut b, u), wide(&mut b, v));
    let stencil = |b: &mut Builder, w: Value, by: Value| {
        let mut acc = b.push1(Op::Binary(BinaryOp::Mul), &[w, by]).expect("mul");
        for (axis, s) in [(1, 1), (1, n.max(1) - 1), (2, 1), (2, n + 1)] {
            let r = roll(b, w, axis, s).expect("roll");
            acc = b.push1(Op::Binary(BinaryOp::Sub), &[acc, r]).expect("sub");
        }
        acc
    };
    let du = stencil(&mut b, su, u);
    let dv = stencil(&mut b, sv, v);
    let dv = b.push1(Op::Binary(BinaryOp::Mul), &[dv, su]).expect("mul");
    b.finish(&[du, dv])
}

/// Gathered identity seeds (see [`gathered_seeds`]) match the interpreter bit for bit in f32
/// and f64, picking columns or rows, on small sizes, odd lengths (vector tails) and the
/// parallel path; both loops read the gather in place, with rows that choose between the
/// pieces of a roll choosing between their colour reads too.
#[test]
fn gathered_identity_seeds_match_the_interpreter() {
    let mut rng = Rng(31);
    for dtype in [DType::F64, DType::F32] {
        for (k, n) in [(2usize, 1usize), (3, 2), (3, 5), (5, 9), (12, 131)] {
            let colours: Vec<i32> = (0..2 * n * n)
                .map(|_| (rng.next() * k as f64) as i32)
                .collect();
            let args = [array(&mut rng, dtype, &[2, n, n], -2.0, 2.0, true)];
            for rows in [false, true] {
                let g = gathered_seeds(dtype, k, n, &colours, rows);
                let f = compile(&g, &JitOptions::default()).expect("compile");
                assert_eq!(
                    f.workspace_bytes(),
                    0,
                    "{dtype} k={k} n={n} rows={rows}: the seeds were materialised"
                );
                check(&g, &args);
            }
        }
    }
}

/// Loops of a few long rows (the sparse Hessian's `[3, n]` compressed matrix) are shared
/// across threads by blocks of a row rather than by whole rows: `pad(a·u) + pad(c − u)` over
/// shifted slices times one-hot seeds (a gathered identity), for 2 to 7 rows on the parallel
/// path (odd lengths, so blocks end inside a vector), and a gather of the sum before the
/// seeds by constant indices as a second output, which the code writes whole and a call
/// therefore does not zero-fill. Each graph is called twice on different
/// arguments: an element the code failed to write would keep the first call's value.
#[test]
fn few_long_rows_and_whole_outputs_match_the_interpreter() {
    let mut rng = Rng(43);
    for dtype in [DType::F64, DType::F32] {
        for (rows, n) in [(2usize, 40_001usize), (3, 33_335), (5, 13_109), (7, 9_999)] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dtype, &[rows, n + 1]));
            let u = b.param(Type::new(dtype, &[rows, n]));
            let a = slice(&mut b, x, &[0, 0], &[rows, n], &[1, 1]);
            let c = slice(&mut b, x, &[0, 1], &[rows, n + 1], &[1, 1]);
            let p = b.push1(Op::Binary(BinaryOp::Mul), &[a, u]).expect("mul");
            let q = b.push1(Op::Binary(BinaryOp::Sub), &[c, u]).expect("sub");
            let zero = scalar(&mut b, dtype, 0.0);
            let pp = pad(&mut b, p, zero, &[0, 1], &[0, 0]).expect("pad");
            let qq = pad(&mut b, q, zero, &[0, 0], &[0, 1]).expect("pad");
            let sum = b.push1(Op::Binary(BinaryOp::Add), &[pp, qq]).expect("add");
            // Times the seeds: the `rows × rows` identity's columns gathered by colours.
            let eye: Vec<f64> = (0..rows * rows)
                .map(|i| if i / rows == i % rows { 1.0 } else { 0.0 })
                .collect();
            let eye = Array::from_f64(Shape::new(&[rows, rows]), eye)
                .expect("identity")
                .cast(dtype);
            let eye = b
                .push1(Op::Literal(LiteralOp::Const(Literal::new(eye))), &[])
                .expect("const");
            let colours: Vec<i32> = (0..n + 1)
                .map(|j| ((j * 7 + j / 3) % rows) as i32)
                .collect();
            let seeds = gather(&mut b, eye, &colours, &[n + 1], 1);
            let r = b
                .push1(Op::Binary(BinaryOp::Mul), &[sum, seeds])
                .expect("mul");
            let len = rows * (n + 1);
            let flat = reshape(&mut b, sum, &[len]);
            let idx: Vec<i32> = (0..len)
                .map(|q| ((q % rows) * (n + 1) + (q / rows + q % 2) % (n + 1)) as i32)
                .collect();
            let picked = gather(&mut b, flat, &idx, &[len], 0);
            let g = b.finish(&[r, picked]);
            for _ in 0..2 {
                let args = [
                    array(&mut rng, dtype, &[rows, n + 1], -2.0, 2.0, true),
                    array(&mut rng, dtype, &[rows, n], -2.0, 2.0, true),
                ];
                check(&g, &args);
            }
        }
    }
}

/// Row invariants shared between reads, and float vectors negated or made absolute: the
/// sparse Hessian's compressed loop, `pad(−s₀·c + |x₀|·c) + pad(s₁·(x₁ − c))` with the seeds
/// `s` a `k × k` identity gathered by colours and read at two shifted places (one-hot reads
/// that compare with one position per row), one scalar constant broadcast to two shapes
/// (one splat for both), one vector read at two row offsets (two splats), and pads whose segments leave some reads unused (they are then not
/// loaded). JIT against the interpreter bit for bit, in f32 and f64, with NaNs, infinities
/// and signed zeros in `x` (a negation or absolute value changes only the sign bit), on
/// small sizes, odd lengths and the parallel path.
#[test]
fn shared_row_invariants_match_the_interpreter() {
    let mut rng = Rng(59);
    for dtype in [DType::F64, DType::F32] {
        for (k, n) in [(2usize, 1usize), (3, 2), (3, 9), (4, 37), (3, 70_001)] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dtype, &[n + 1]));
            let eye: Vec<f64> = (0..k * k)
                .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
                .collect();
            let eye = Array::from_f64(Shape::new(&[k, k]), eye)
                .expect("identity")
                .cast(dtype);
            let eye = b
                .push1(Op::Literal(LiteralOp::Const(Literal::new(eye))), &[])
                .expect("const");
            let colours: Vec<i32> = (0..n + 1).map(|i| ((i * 7 + 3) % k) as i32).collect();
            let seeds = gather(&mut b, eye, &colours, &[n + 1], 1);
            let s0 = slice(&mut b, seeds, &[0, 0], &[k, n], &[1, 1]);
            let s1 = slice(&mut b, seeds, &[0, 1], &[k, n + 1], &[1, 1]);
            let x0 = slice(&mut b, x, &[0], &[n], &[1]);
            let x1 = slice(&mut b, x, &[1], &[n + 1], &[1]);
            let wide = |b: &mut Builder, v: Value, dims: &[usize]| {
                let op = Op::Shape(ShapeOp::BroadcastInDim {
                    shape: Shape::new(&[k, n]),
                    dims: dims.into(),
                });
                b.push1(op, &[v]).expect("broadcast")
            };
            // Per-row values from one vector at two offsets: one leaf, two invariants.
            let w = b.param(Type::new(dtype, &[k + 1]));
            let w0 = slice(&mut b, w, &[0], &[k], &[1]);
            let w1 = slice(&mut b, w, &[1], &[k + 1], &[1]);
            let (w0, w1) = (wide(&mut b, w0, &[0]), wide(&mut b, w1, &[0]));
            let c = scalar(&mut b, dtype, -400.0);
            let (c1, c2) = (wide(&mut b, c, &[]), wide(&mut b, c, &[]));
            let (x0, x1) = (wide(&mut b, x0, &[1]), wide(&mut b, x1, &[1]));
            let neg = b.push1(Op::Unary(UnaryOp::Neg), &[s0]).expect("neg");
            let t = b.push1(Op::Binary(BinaryOp::Mul), &[neg, c1]).expect("mul");
            let ax = b.push1(Op::Unary(UnaryOp::Abs), &[x0]).expect("abs");
            let u = b.push1(Op::Binary(BinaryOp::Mul), &[ax, c2]).expect("mul");
            let u = b.push1(Op::Binary(BinaryOp::Mul), &[u, w0]).expect("mul");
            let left = b.push1(Op::Binary(BinaryOp::Add), &[t, u]).expect("add");
            let d = b.push1(Op::Binary(BinaryOp::Sub), &[x1, c2]).expect("sub");
            let d = b.push1(Op::Binary(BinaryOp::Sub), &[d, w1]).expect("sub");
            let right = b.push1(Op::Binary(BinaryOp::Mul), &[s1, d]).expect("mul");
            let zero = scalar(&mut b, dtype, 0.0);
            let pl = pad(&mut b, left, zero, &[0, 1], &[0, 0]).expect("pad");
            let pr = pad(&mut b, right, zero, &[0, 0], &[0, 1]).expect("pad");
            let sum = b.push1(Op::Binary(BinaryOp::Add), &[pl, pr]).expect("add");
            let g = b.finish(&[sum]);
            let f = compile(&g, &JitOptions::default()).expect("compile");
            assert_eq!(f.workspace_bytes(), 0, "{dtype} k={k} n={n}");
            let args = [
                array(&mut rng, dtype, &[n + 1], -2.0, 2.0, true),
                array(&mut rng, dtype, &[k + 1], -2.0, 2.0, false),
            ];
            check(&g, &args);
        }
    }
}
