//! Fused loops on large inputs: the parallel kernel path (at least 65,536 elements), row
//! broadcasts (stride-0 reads), vector loops with scalar tails, and in-place reuse, against the
//! interpreter: bit for bit in Precise mode, within a tolerance in Fast mode.

mod common;

use common::{array, check_with, close, Rng};
use ferrax_ir::ops::{BinaryOp, ShapeOp, UnaryOp};
use ferrax_ir::{interp, Builder, DType, Dims, Graph, Op, Shape, Type};
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
                dims: Dims::from_slice(&[1]),
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
