//! Fused loops on large inputs: the parallel kernel path (at least 65,536 elements), row
//! broadcasts (stride-0 reads), vector loops with scalar tails, and in-place reuse, against the
//! interpreter: bit for bit in Precise mode, within a tolerance in Fast mode.

mod common;

use common::{array, check_with, close, Rng};
use ferrax_ir::ops::{BinaryOp, ShapeOp, UnaryOp};
use ferrax_ir::{interp, Builder, DType, Graph, Op, Shape, Tensor, Type};
use ferrax_jit::{compile, JitOptions, MathMode};

/// `tanh(x · w + b) + exp(−x²)` with `b` broadcast along rows, over `[rows, cols]`.
fn chain(dtype: DType, rows: usize, cols: usize) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::new(dtype, &[rows, cols]));
    let w = b.param(Type::new(dtype, &[rows, cols]));
    let bias = b.param(Type::new(dtype, &[cols]));
    let bb = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[rows, cols]),
                dims: Box::new([1]),
            }),
            &[bias],
        )
        .expect("broadcast");
    let xw = b.push1(Op::Binary(BinaryOp::Mul), &[x, w]).expect("mul");
    let z = b.push1(Op::Binary(BinaryOp::Add), &[xw, bb]).expect("add");
    let t = b.push1(Op::Unary(UnaryOp::Tanh), &[z]).expect("tanh");
    let sq = b.push1(Op::Unary(UnaryOp::Square), &[x]).expect("square");
    let n = b.push1(Op::Unary(UnaryOp::Neg), &[sq]).expect("neg");
    let e = b.push1(Op::Unary(UnaryOp::Exp), &[n]).expect("exp");
    let r = b.push1(Op::Binary(BinaryOp::Add), &[t, e]).expect("add");
    let r2 = b.push1(Op::Binary(BinaryOp::Mul), &[r, xw]).expect("mul");
    b.finish(&[r2, t])
}

#[test]
fn large_fused_groups_match_the_interpreter() {
    let mut rng = Rng(3);
    for dtype in [DType::F64, DType::F32] {
        // Parallel (rows split), odd row length (vector tail), and a small inline case.
        for (rows, cols) in [(300, 257), (1, 70_001), (3, 5)] {
            let g = chain(dtype, rows, cols);
            let args = vec![
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, false),
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, false),
                array(&mut rng, dtype, &[cols], -1.0, 1.0, false),
            ];
            let precise = JitOptions {
                math: MathMode::Precise,
                ..JitOptions::default()
            };
            let want = interp::eval(&g, &args).expect("interpreter");
            let got = compile(&g, &precise)
                .expect("compile")
                .call(&args)
                .expect("call");
            for (w, o) in want.iter().zip(&got) {
                assert!(common::same_bits(w, o), "{dtype} [{rows},{cols}] precise");
            }
            let fast = JitOptions {
                math: MathMode::Fast,
                ..JitOptions::default()
            };
            let got = compile(&g, &fast)
                .expect("compile")
                .call(&args)
                .expect("call");
            let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
            for (w, o) in want.iter().zip(&got) {
                assert!(close(w, o, tol), "{dtype} [{rows},{cols}] fast");
            }
            // The default mode, through the shared checker.
            check_with(&g, &args, Some(tol));
        }
    }
}

/// Cheap values shared by several groups are recomputed in each (duplicated), and broadcasts
/// that only add unit dims pass a fused value through: members then have shapes that differ
/// from the loop's by unit dims, and broadcasts inside such groups must read through the
/// loop's dims. Checked bit for bit, with specials, for row and column broadcasts.
#[test]
fn duplicated_members_and_unit_dim_broadcasts_match_the_interpreter() {
    let f = |xs: &[Tensor]| {
        let (x, v) = (&xs[0], &xs[1]);
        let (r, c) = (x.shape()[0], x.shape()[1]);
        // `m` is cheap and used by three groups (a 2-D and a 3-D loop, and a reduction).
        let m = x * v.broadcast_in_dim(&[r, c], &[1]) + 1.0;
        let t = m.broadcast_in_dim(&[r, 1, c], &[0, 2]);
        let cols = v.broadcast_in_dim(&[r, 1, c], &[2]);
        let rows = x
            .slice_axis(1, 0, 1)
            .reshape(&[r])
            .broadcast_in_dim(&[r, 1, c], &[0]);
        let w = (t * cols - rows).exp();
        let s = (&m * &m).sum(&[1]);
        vec![w, s, m.neg()]
    };
    let mut rng = Rng(11);
    for (dtype, r, c) in [(DType::F64, 4, 4), (DType::F64, 3, 9), (DType::F32, 5, 13)] {
        let types = [Type::new(dtype, &[r, c]), Type::new(dtype, &[c])];
        let g = (*ferrax_ir::trace(f, &types)
            .expect("trace")
            .graph()
            .expect("graph"))
        .clone();
        for specials in [false, true] {
            let args = vec![
                array(&mut rng, dtype, &[r, c], -2.0, 2.0, specials),
                array(&mut rng, dtype, &[c], -2.0, 2.0, specials),
            ];
            common::check(&g, &args);
        }
    }
}

/// Short bodies of groups of at least 4,096 elements run four vectors per iteration, then
/// single vectors, then scalars: an elementwise `(1 − t²)·g + b` and a column sum of `t·g` over
/// 200 rows, for every row length from 0 to 41 (from 21 on, every split of the three loops;
/// below, groups too small to repeat the body), with special values, equal the interpreter
/// bit for bit (no transcendental, and the sum runs along a kept dimension, so nothing is
/// reassociated).
#[test]
fn unrolled_short_bodies_match_the_interpreter_bit_for_bit() {
    for dtype in [DType::F64, DType::F32] {
        for cols in 0..42 {
            let rows = 200;
            let f = move |xs: &[Tensor]| {
                let (t, g, b) = (&xs[0], &xs[1], &xs[2]);
                let ew = (1.0 - t * t) * g + b.broadcast_in_dim(&[rows, cols], &[1]);
                vec![ew, (t * g).sum(&[0])]
            };
            let types = [
                Type::new(dtype, &[rows, cols]),
                Type::new(dtype, &[rows, cols]),
                Type::new(dtype, &[cols]),
            ];
            let g = ferrax_ir::trace(f, &types).expect("trace");
            let g = (*g.graph().expect("graph")).clone();
            let mut rng = Rng(cols as u64 + 1);
            let args = [
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                array(&mut rng, dtype, &[cols], -2.0, 2.0, true),
            ];
            check_with(&g, &args, None);
        }
    }
}

/// Pool kernels (at least 65,536 elements) whose body has up to 32 computations and no inline
/// polynomial run two vectors per iteration, then single vectors, then scalars: a body of
/// about twenty operations on `[3, n]` (few rows, so the rows are cut into blocks) and on a
/// flat `[n]`, plus the sparse Hessian's shape of body (neighbours at `i ± 1` read through
/// pads, so each row has segments), for lengths giving every split of the three loops, with
/// special values, equal the interpreter bit for bit.
#[test]
fn pool_kernels_repeat_moderate_bodies_bit_for_bit() {
    for dtype in [DType::F64, DType::F32] {
        for n in [21_846, 21_847, 21_849, 21_851, 30_001] {
            let f = move |xs: &[Tensor]| {
                let (x, y, z) = (&xs[0], &xs[1], &xs[2]);
                let yb = y.broadcast_in_dim(&[3, n], &[1]);
                let a = (x * &yb + 2.0) * x - &yb * &yb * 3.0;
                let b = (&a - x) * (&yb + 0.5) + a.clone() * a.clone();
                let c = (b.clone() - &yb) * (x - 1.5) + b * 0.25 - x.abs();
                let left = x
                    .slice_axis(1, 0, n - 1)
                    .pad(&[0, 1], &[0, 0], &[0, 0], 0.0);
                let right = c.slice_axis(1, 1, n).pad(&[0, 0], &[0, 1], &[0, 0], 0.0);
                let flat = (z * z - z * 2.0 + 1.0) * (z + 3.0) - z.abs() * 0.5;
                vec![c + left * right, flat.clone() * flat - z]
            };
            let types = [
                Type::new(dtype, &[3, n]),
                Type::new(dtype, &[n]),
                Type::new(dtype, &[3 * n]),
            ];
            let g = ferrax_ir::trace(f, &types).expect("trace");
            let g = (*g.graph().expect("graph")).clone();
            let mut rng = Rng(n as u64);
            let args = [
                array(&mut rng, dtype, &[3, n], -2.0, 2.0, true),
                array(&mut rng, dtype, &[n], -2.0, 2.0, true),
                array(&mut rng, dtype, &[3 * n], -2.0, 2.0, true),
            ];
            check_with(&g, &args, None);
        }
    }
}
