//! The compiled `conv_general_dilated` against the interpreter: random configurations (1-D to
//! 3-D, random layouts, strides, paddings, dilations, feature, depthwise and batch groups,
//! f32 and f64) small enough for the direct loop (bit for bit) and large enough for the
//! im2col + GEMM path (to rounding), long contractions cut into chunks, thread-shared tiles,
//! non-finite inputs, and a compiled gradient of a convolution.

#[path = "../../tests/support/conv.rs"]
mod support;

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{ConvGeneral, ReduceOp};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Type};
use ferrax_jit::{compile, JitOptions};
use ferrax_transforms::vjp_graph;
use support::{random_conv, Rng};

fn conv_graph(op: &ConvGeneral, a: &Type, b: &Type) -> Graph {
    let mut bd = Builder::new();
    let x = bd.param(a.clone());
    let w = bd.param(b.clone());
    let y = bd.push1(Op::Conv(Box::new(op.clone())), &[x, w]).unwrap();
    let g = bd.finish(&[y]);
    g.verify().unwrap();
    g
}

/// Compiles `g`, runs it on `args` and compares each output with the interpreter: bit for bit
/// when `tol` is `None`, otherwise within `tol` relative to the output's largest magnitude.
#[track_caller]
fn check(g: &Graph, args: &[Array], tol: Option<f64>, what: &str) {
    let want = eval(g, args).unwrap();
    let f = compile(g, &JitOptions::default()).unwrap();
    let got = f.call(args).unwrap();
    for (w, o) in want.iter().zip(&got) {
        assert_eq!(w.dims(), o.dims(), "{what}");
        let (wv, ov) = (w.to_f64_vec(), o.to_f64_vec());
        let scale = wv
            .iter()
            .map(|x| x.abs())
            .filter(|x| x.is_finite())
            .fold(1.0, f64::max);
        for (k, (p, q)) in wv.iter().zip(&ov).enumerate() {
            let ok = match tol {
                None => p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                Some(t) => (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= t * scale,
            };
            assert!(ok, "{what}: element {k}: interpreter {p}, jit {q}");
        }
    }
}

#[test]
fn small_convolutions_equal_the_interpreter_bit_for_bit() {
    let mut rng = Rng(17);
    let mut direct = 0;
    for case in 0..150 {
        let dt = if case % 2 == 0 {
            DType::F32
        } else {
            DType::F64
        };
        let (op, a, b) = random_conv(&mut rng, 1 + case % 3, dt, false);
        let g = conv_graph(&op, &a, &b);
        let out = &g.output_types()[0];
        // The kernel's count: positions × output features × (input features × taps).
        let o = b.dims()[op.dimension_numbers.rhs[0]];
        let work = out.size() * b.size().checked_div(o).unwrap_or(0);
        let args = [rng.array(&a), rng.array(&b)];
        let what = format!("case {case}: {op:?} {a} {b}");
        if work < 2048 {
            // The direct loop sums in the interpreter's order.
            direct += 1;
            check(&g, &args, None, &what);
        } else {
            let tol = if dt == DType::F32 { 1e-5 } else { 1e-13 };
            check(&g, &args, Some(tol), &what);
        }
    }
    assert!(direct > 20, "only {direct} cases took the direct loop");
}

#[test]
fn larger_convolutions_match_the_interpreter() {
    let mut rng = Rng(19);
    for case in 0..60 {
        let dt = if case % 2 == 0 {
            DType::F32
        } else {
            DType::F64
        };
        let (op, a, b) = random_conv(&mut rng, 1 + case % 3, dt, true);
        let g = conv_graph(&op, &a, &b);
        let args = [rng.array(&a), rng.array(&b)];
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-13 };
        check(
            &g,
            &args,
            Some(tol),
            &format!("case {case}: {op:?} {a} {b}"),
        );
    }
}

#[test]
fn gemm_path_shapes() {
    let mut rng = Rng(23);
    for dt in [DType::F32, DType::F64] {
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-13 };
        let nchw = ConvGeneral::new(2);
        let mut nhwc = ConvGeneral::new(2);
        nhwc.dimension_numbers =
            ferrax_ir::ops::ConvDimensionNumbers::from_layouts("NHWC", "HWIO", "NHWC").unwrap();
        let mut strided = ConvGeneral::new(2);
        strided.window_strides = Dims::from_slice(&[2, 2]);
        strided.padding = smallvec::smallvec![(1, 1), (0, 1)];
        let cases: Vec<(ConvGeneral, Vec<usize>, Vec<usize>)> = vec![
            // Threads share the tiles (over 2^21 multiply-adds).
            (nchw.clone(), vec![4, 16, 20, 20], vec![32, 16, 3, 3]),
            (nhwc, vec![4, 12, 12, 16], vec![3, 3, 16, 32]),
            (strided, vec![2, 8, 15, 16], vec![8, 8, 3, 3]),
            // A contraction longer than one chunk (512 · 9 = 4608 columns).
            (nchw, vec![1, 512, 5, 5], vec![4, 512, 3, 3]),
        ];
        for (op, a, b) in cases {
            let (a, b) = (Type::new(dt, &a), Type::new(dt, &b));
            let g = conv_graph(&op, &a, &b);
            let args = [rng.array(&a), rng.array(&b)];
            check(&g, &args, Some(tol), &format!("{op:?} {a} {b}"));
        }
    }
}

#[test]
fn non_finite_inputs_propagate_as_in_the_interpreter() {
    // Padding zeros take part in the sums on both paths, so an infinite weight facing the
    // padding gives NaN in both.
    let mut rng = Rng(29);
    for big in [false, true] {
        let mut op = ConvGeneral::new(2);
        op.padding = smallvec::smallvec![(1, 1), (1, 1)];
        let (a, b) = if big {
            (vec![2, 8, 16, 16], vec![8, 8, 3, 3])
        } else {
            (vec![1, 1, 4, 4], vec![1, 1, 3, 3])
        };
        let (a, b) = (Type::new(DType::F64, &a), Type::new(DType::F64, &b));
        let g = conv_graph(&op, &a, &b);
        let x = rng.array(&a);
        let mut w = rng.array(&b).to_f64_vec();
        w[0] = f64::INFINITY;
        let w = Array::from_f64(b.shape.clone(), w).unwrap();
        let want = eval(&g, &[x.clone(), w.clone()]).unwrap();
        assert!(want[0].to_f64_vec().iter().any(|v| v.is_nan()));
        check(&g, &[x, w], Some(1e-13), &format!("big {big}"));
    }
}

#[test]
fn compiled_conv_gradient_matches_the_interpreter() {
    let mut rng = Rng(31);
    let mut op = ConvGeneral::new(2);
    op.window_strides = Dims::from_slice(&[2, 1]);
    op.padding = smallvec::smallvec![(1, 1), (1, 1)];
    let (a, b) = (
        Type::new(DType::F32, &[4, 3, 12, 12]),
        Type::new(DType::F32, &[8, 3, 3, 3]),
    );
    let mut bd = Builder::new();
    let x = bd.param(a.clone());
    let w = bd.param(b.clone());
    let y = bd.push1(Op::Conv(Box::new(op)), &[x, w]).unwrap();
    let axes: Dims = (0..4).collect();
    let s = bd.push1(Op::Reduce(ReduceOp::Sum { axes }), &[y]).unwrap();
    let g = bd.finish(&[s]);
    let vjp = vjp_graph(&g, 2).unwrap();
    let args = [rng.array(&a), rng.array(&b), Array::from(1.0f32)];
    check(&vjp, &args, Some(1e-5), "vjp of sum(conv)");
}

#[test]
fn huge_padding_and_strides_compile_and_run() {
    // Window coordinates beyond i64: the kernel's i128 path.
    let mut op = ConvGeneral::new(1);
    op.padding[0] = (i64::MAX - 1, i64::MAX);
    op.window_strides[0] = usize::MAX;
    let (a, b) = (
        Type::new(DType::F64, &[1, 1, 3]),
        Type::new(DType::F64, &[2, 1, 2]),
    );
    let g = conv_graph(&op, &a, &b);
    let args = [
        Array::from_f64([1, 1, 3], vec![1.0, 2.0, 3.0]).unwrap(),
        Array::from_f64([2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    ];
    check(&g, &args, None, "huge padding");
    let mut op = ConvGeneral::new(1);
    op.padding[0] = (-1, i64::MAX);
    op.window_strides[0] = 1 << 62;
    op.lhs_dilation[0] = 3;
    let g = conv_graph(&op, &a, &b);
    check(&g, &args, None, "huge padding with dilation");
}

/// Kernel-gradient convolutions (a small result summed over batch and positions), through the
/// transpose rule: the contraction is split among threads with private partial results, and
/// the cotangent serves as the kernel in place (NCHW: one image per input feature; NHWC: all
/// of it at one stride), with feature groups and strides.
#[test]
fn kernel_gradient_convolutions_match_the_interpreter() {
    let mut rng = Rng(37);
    let nchw = ConvGeneral::new(2);
    let mut nhwc = ConvGeneral::new(2);
    nhwc.dimension_numbers =
        ferrax_ir::ops::ConvDimensionNumbers::from_layouts("NHWC", "HWIO", "NHWC").unwrap();
    let mut grouped = ConvGeneral::new(2);
    grouped.feature_group_count = 2;
    grouped.window_strides = Dims::from_slice(&[2, 1]);
    let cases: Vec<(ConvGeneral, Vec<usize>, Vec<usize>)> = vec![
        (nchw.clone(), vec![16, 4, 24, 24], vec![16, 4, 3, 3]),
        (nchw, vec![32, 1, 28, 28], vec![16, 1, 3, 3]),
        (nhwc, vec![16, 24, 24, 4], vec![3, 3, 4, 16]),
        (grouped, vec![16, 4, 24, 24], vec![16, 2, 3, 3]),
    ];
    for dt in [DType::F32, DType::F64] {
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-13 };
        for (mut op, a, b) in cases.clone() {
            op.padding = smallvec::smallvec![(1, 1), (1, 1)];
            let (a, b) = (Type::new(dt, &a), Type::new(dt, &b));
            let mut bd = Builder::new();
            let x = bd.param(a.clone());
            let w = bd.param(b.clone());
            let y = bd.push1(Op::Conv(Box::new(op.clone())), &[x, w]).unwrap();
            let g = bd.finish(&[y]);
            let out = g.output_types()[0].clone();
            let vjp = vjp_graph(&g, 2).unwrap();
            let args = [rng.array(&a), rng.array(&b), rng.array(&out)];
            check(&vjp, &args, Some(tol), &format!("vjp of {op:?} {a} {b}"));
        }
    }
}
