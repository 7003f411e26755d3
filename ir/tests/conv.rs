//! Tests of `conv_general_dilated` in the IR: the interpreter against an independent naive
//! convolution on random configurations (1-D to 3-D, random layouts, strides, paddings,
//! dilations, feature, depthwise and batch groups, f32 and f64), the type rule's errors, the
//! tracer methods and their `SAME`/`VALID` padding.

#[path = "../../tests/support/conv.rs"]
mod support;

use ferrax_ir::ops::{ConvDimensionNumbers, ConvGeneral};
use ferrax_ir::{function, Array, ConvParams, DType, ErrorKind, Op, Tensor, Type};
use support::{max_diff, naive, random_conv, Rng};

#[test]
fn interpreter_matches_a_naive_convolution() {
    let mut rng = Rng(11);
    for case in 0..240 {
        let ns = 1 + case % 3;
        let dtype = if case % 2 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        let (op, a, b) = random_conv(&mut rng, ns, dtype, false);
        let (x, w) = (rng.array(&a), rng.array(&b));
        let got = &Op::Conv(Box::new(op.clone())).eval(&[&x, &w]).unwrap()[0];
        assert_eq!(got.dtype(), dtype);
        let want = naive(&op, &x, &w);
        let (d, m) = max_diff(got, &want);
        let tol = if dtype == DType::F64 { 1e-13 } else { 1e-5 } * m.max(1.0);
        assert!(d <= tol, "case {case}: {op:?} on {a} {b}: off by {d}");
    }
}

#[test]
fn padding_and_dilation_zeros_take_part_in_the_sum() {
    // A 1-D convolution whose kernel holds an infinity facing a padding zero gives NaN, as
    // convolving an explicitly padded input does.
    let mut op = ConvGeneral::new(1);
    op.padding[0] = (1, 0);
    let x = Array::from_f64([1, 1, 2], vec![1.0, 2.0]).unwrap();
    let w = Array::from_f64([1, 1, 2], vec![f64::INFINITY, 1.0]).unwrap();
    let y = Op::Conv(Box::new(op)).eval(&[&x, &w]).unwrap()[0].to_f64_vec();
    assert!(y[0].is_nan(), "{y:?}");
    assert_eq!(y[1], f64::INFINITY);
}

fn err_kind(op: &ConvGeneral, a: &[usize], b: &[usize]) -> (ErrorKind, String) {
    let e = op
        .infer(&Type::new(DType::F32, a), &Type::new(DType::F32, b))
        .expect_err("an ill-typed convolution");
    (e.kind, e.message)
}

#[test]
fn type_rule_errors_name_the_problem() {
    let op = ConvGeneral::new(2);
    // Ranks differ.
    let (k, m) = err_kind(&op, &[1, 3, 5, 5], &[2, 3, 3]);
    assert_eq!(k, ErrorKind::Shape, "{m}");
    assert!(
        m.contains("conv_general_dilated") && m.contains("rank"),
        "{m}"
    );
    // Features not matching.
    let (_, m) = err_kind(&op, &[1, 3, 5, 5], &[2, 2, 3, 3]);
    assert!(m.contains("features"), "{m}");
    // Feature groups not dividing the features.
    let mut g = op.clone();
    g.feature_group_count = 2;
    let (_, m) = err_kind(&g, &[1, 3, 5, 5], &[2, 1, 3, 3]);
    assert!(m.contains("feature_group_count 2"), "{m}");
    // Output features not a multiple of the groups.
    let (_, m) = err_kind(&g, &[1, 4, 5, 5], &[3, 2, 3, 3]);
    assert!(m.contains("multiple"), "{m}");
    // Batch groups not dividing the batch.
    let mut bg = op.clone();
    bg.batch_group_count = 2;
    let (_, m) = err_kind(&bg, &[3, 1, 5, 5], &[2, 1, 3, 3]);
    assert!(m.contains("batch_group_count 2"), "{m}");
    // Both kinds of groups.
    let mut both = g.clone();
    both.batch_group_count = 2;
    let (_, m) = err_kind(&both, &[2, 4, 5, 5], &[4, 2, 3, 3]);
    assert!(m.contains("at most one"), "{m}");
    // Kernel larger than the padded input.
    let (k, m) = err_kind(&op, &[1, 1, 2, 5], &[1, 1, 3, 3]);
    assert_eq!(k, ErrorKind::Shape);
    assert!(m.contains("larger than the dilated padded input"), "{m}");
    // Zero strides and dilations.
    for f in [
        |o: &mut ConvGeneral| o.window_strides[1] = 0,
        |o: &mut ConvGeneral| o.lhs_dilation[0] = 0,
        |o: &mut ConvGeneral| o.rhs_dilation[1] = 0,
    ] {
        let mut z = op.clone();
        f(&mut z);
        let (_, m) = err_kind(&z, &[1, 1, 5, 5], &[1, 1, 3, 3]);
        assert!(m.contains("must be at least 1"), "{m}");
    }
    // Zero group counts.
    let mut z = op.clone();
    z.feature_group_count = 0;
    let (_, m) = err_kind(&z, &[1, 1, 5, 5], &[1, 1, 3, 3]);
    assert!(m.contains("at least 1"), "{m}");
    // Wrong list lengths and bad dimension numbers.
    let mut l = op.clone();
    l.padding.pop();
    let (_, m) = err_kind(&l, &[1, 1, 5, 5], &[1, 1, 3, 3]);
    assert!(m.contains("padding needs 2 entries"), "{m}");
    let mut d = op.clone();
    d.dimension_numbers.rhs[0] = 1;
    let (k, m) = err_kind(&d, &[1, 1, 5, 5], &[1, 1, 3, 3]);
    assert_eq!(k, ErrorKind::Axis, "{m}");
    // Integer operands.
    let e = op
        .infer(
            &Type::new(DType::I32, &[1, 1, 3, 3]),
            &Type::new(DType::I32, &[1, 1, 3, 3]),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
}

#[test]
fn huge_pads_and_dilations_are_size_errors_not_overflows() {
    let mut op = ConvGeneral::new(1);
    op.padding[0] = (i64::MAX, i64::MAX);
    op.lhs_dilation[0] = usize::MAX;
    let e = op
        .infer(
            &Type::new(DType::F32, &[1, 1, 3]),
            &Type::new(DType::F32, &[1, 1, 1]),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size, "{}", e.message);
    // Huge padding with a huge stride gives a small, valid result.
    let mut op = ConvGeneral::new(1);
    op.padding[0] = (0, i64::MAX);
    op.window_strides[0] = usize::MAX;
    let t = op
        .infer(
            &Type::new(DType::F32, &[1, 1, 3]),
            &Type::new(DType::F32, &[1, 1, 1]),
        )
        .unwrap();
    assert_eq!(t.dims(), &[1, 1, 1]);
    let x = Array::from_f64([1, 1, 3], vec![5.0, 6.0, 7.0]).unwrap();
    let w = Array::from_f64([1, 1, 1], vec![2.0]).unwrap();
    let y = Op::Conv(Box::new(op)).eval(&[&x, &w]).unwrap()[0].to_f64_vec();
    assert_eq!(y, vec![10.0]);
    // A huge kernel dilation: the kernel no longer fits.
    let mut op = ConvGeneral::new(1);
    op.rhs_dilation[0] = usize::MAX;
    let e = op
        .infer(
            &Type::new(DType::F32, &[1, 1, 3]),
            &Type::new(DType::F32, &[1, 1, 2]),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{}", e.message);
}

#[test]
fn layouts_name_the_axes() {
    let dn = ConvDimensionNumbers::from_layouts("NHWC", "HWIO", "NHWC").unwrap();
    assert_eq!(dn.lhs.as_slice(), &[0, 3, 1, 2]);
    assert_eq!(dn.rhs.as_slice(), &[3, 2, 0, 1]);
    assert_eq!(dn.out.as_slice(), &[0, 3, 1, 2]);
    // Spatial order follows the kernel's letters.
    let dn = ConvDimensionNumbers::from_layouts("NCWH", "OIHW", "NCHW").unwrap();
    assert_eq!(dn.lhs.as_slice(), &[0, 1, 3, 2]);
    assert!(ConvDimensionNumbers::from_layouts("NCH", "OIHW", "NCHW").is_err());
    assert!(ConvDimensionNumbers::from_layouts("NCHH", "OIHW", "NCHW").is_err());
    assert!(ConvDimensionNumbers::from_layouts("NCHX", "OIHW", "NCHW").is_err());
    assert!(ConvDimensionNumbers::from_layouts("NCHW", "OXHW", "NCHW").is_err());
}

#[test]
fn same_and_valid_padding_resolve_as_in_jax() {
    let x = Type::new(DType::F64, &[1, 1, 7, 8]);
    let w = Type::new(DType::F64, &[1, 1, 3, 4]);
    let same = ConvParams::new().strides(&[2, 3]).padding("SAME");
    let op = same.resolve(&x, &w).unwrap();
    // H: out 4, total (4-1)·2 + 3 − 7 = 2 → (1, 1); W: out 3, total 2·3 + 4 − 8 = 2 → (1, 1).
    assert_eq!(op.padding.as_slice(), &[(1, 1), (1, 1)]);
    assert_eq!(op.infer(&x, &w).unwrap().dims(), &[1, 1, 4, 3]);
    let op = ConvParams::new().padding("SAME").resolve(&x, &w).unwrap();
    // Stride 1: totals 2 and 3; the odd zero goes after, or before for SAME_LOWER.
    assert_eq!(op.padding.as_slice(), &[(1, 1), (1, 2)]);
    let op = ConvParams::new()
        .padding("SAME_LOWER")
        .resolve(&x, &w)
        .unwrap();
    assert_eq!(op.padding.as_slice(), &[(1, 1), (2, 1)]);
    // Dilated kernel: the effective size is 5 along H.
    let op = ConvParams::new()
        .padding("SAME")
        .rhs_dilation(&[2, 1])
        .resolve(&x, &w)
        .unwrap();
    assert_eq!(op.padding[0], (2, 2));
    let op = ConvParams::new().padding("VALID").resolve(&x, &w).unwrap();
    assert_eq!(op.padding.as_slice(), &[(0, 0), (0, 0)]);
    assert!(ConvParams::new().padding("FULL").resolve(&x, &w).is_err());
}

#[test]
fn tracer_methods_build_the_op_and_report_errors_at_the_callers_line() {
    let f = function(|x: Tensor, w: Tensor| x.conv2d(&w, (1, 1), "SAME").sum_all());
    let x = Array::from_f64([1, 1, 3, 3], (0..9).map(f64::from).collect()).unwrap();
    let w = Array::from_f64([1, 1, 3, 3], vec![1.0; 9]).unwrap();
    let s: f64 = f.call((x.clone(), w.clone())).unwrap();
    // Each input element is counted once per output window covering it: corners 4, edges 6,
    // the centre 9.
    let counts = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0];
    let want: f64 = counts.iter().enumerate().map(|(i, c)| c * i as f64).sum();
    assert_eq!(s, want);
    // NHWC with HWIO through the general method.
    let g = function(|x: Tensor, w: Tensor| {
        let p = ConvParams::new()
            .layouts("NHWC", "HWIO", "NHWC")
            .padding([(1, 1), (1, 1)]);
        x.conv_general_dilated(&w, &p)
    });
    let xt = Array::from_f64([1, 3, 3, 1], (0..9).map(f64::from).collect()).unwrap();
    let w_hwio = Array::from_f64([3, 3, 1, 1], vec![1.0; 9]).unwrap();
    let y: Array = g.call((xt, w_hwio)).unwrap();
    assert_eq!(y.dims(), &[1, 3, 3, 1]);
    assert_eq!(y.to_f64_vec().iter().sum::<f64>(), want);
    // conv1d.
    let h = function(|x: Tensor, w: Tensor| x.conv1d(&w, 2, "VALID"));
    let x1 = Array::from_f64([1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let w1 = Array::from_f64([1, 1, 2], vec![1.0, -1.0]).unwrap();
    let y: Array = h.call((x1, w1)).unwrap();
    assert_eq!(y.to_f64_vec(), vec![-1.0, -1.0]);
    // Errors name the op and this file.
    let bad = function(|x: Tensor, w: Tensor| x.conv2d(&w, (1, 1), "FULL"));
    let e = bad.call::<_, Array>((x.clone(), w.clone())).unwrap_err();
    assert!(e.message.contains("unknown padding"), "{}", e.message);
    assert!(e.to_string().contains("conv.rs"), "{e}");
    let bad = function(|x: Tensor, w: Tensor| x.conv2d(&w, (0, 1), "VALID"));
    let e = bad.call::<_, Array>((x, w)).unwrap_err();
    assert!(
        e.message.contains("window_strides must be at least 1"),
        "{}",
        e.message
    );
    assert!(e.to_string().contains("conv.rs"), "{e}");
}
