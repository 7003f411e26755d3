//! The compiled window ops on pooling-shaped windows (the JIT's dedicated pooling kernel)
//! against the interpreter, bit for bit: random ranks 1 to 5, windows along one or two
//! neighbouring dimensions (NCHW- and NHWC-like, 1-D and 2-D), strides below, equal to and
//! above the window, unreached high padding, odd sizes, every monoid and selector, f32, f64 and
//! i32, with ties, signed zeros, infinities and NaNs in the operand (and without NaNs, where
//! max and min compare integer keys); and the near misses that
//! keep the generic loop (low padding, dilations, reached high padding, windows apart).

mod common;

use common::{array, check, Rng};
use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
use ferrax_ir::{Array, Builder, DType, Graph, Op, Type};

fn graph(op: WindowOp, tys: &[Type]) -> Graph {
    let mut b = Builder::new();
    let ps: Vec<_> = tys.iter().map(|t| b.param(t.clone())).collect();
    let r = b
        .push(Op::Window(Box::new(op)), &ps)
        .expect("well-typed test op");
    b.finish(&r)
}

/// Every window op with window `w` on an operand of `dims`, in every dtype, JIT against the
/// interpreter.
fn check_all(rng: &mut Rng, w: &Window, dims: &[usize], ties: bool) {
    let out = w.out_dims(dims).expect("a valid window");
    for dt in [DType::F32, DType::F64, DType::I32] {
        let xt = Type::new(dt, dims);
        let ot = Type::new(dt, &out);
        let x = array(rng, dt, dims, -3.0, 3.0, true);
        // Few distinct values, so windows hold ties (the first extremum is selected).
        let x = if ties {
            let v: Vec<f64> = x.to_f64_vec().iter().map(|v| v.round()).collect();
            Array::from_f64(dims.to_vec(), v).unwrap().cast(dt)
        } else {
            x
        };
        for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
            let op = WindowOp::Reduce {
                monoid,
                window: w.clone(),
            };
            check(
                &graph(op, std::slice::from_ref(&xt)),
                std::slice::from_ref(&x),
            );
        }
        for select in [Select::Max, Select::Min] {
            let t = array(rng, dt, dims, -3.0, 3.0, false);
            let gather = WindowOp::SelectAndGatherAdd {
                select,
                window: w.clone(),
            };
            check(&graph(gather, &[xt.clone(), xt.clone()]), &[t, x.clone()]);
            // Signed zeros in the scattered values: `0 + (−0)` is `+0`, as in the interpreter.
            let c = array(rng, dt, &out, -3.0, 3.0, true);
            let scatter = WindowOp::SelectAndScatterAdd {
                select,
                window: w.clone(),
            };
            check(&graph(scatter, &[ot.clone(), xt.clone()]), &[c, x.clone()]);
        }
    }
}

#[test]
fn pooling_windows_equal_the_interpreter() {
    let mut rng = Rng(23);
    let pick =
        |rng: &mut Rng, lo: usize, hi: usize| lo + (rng.next() * (hi - lo + 1) as f64) as usize;
    for case in 0..120 {
        let rank = pick(&mut rng, 1, 5);
        let dims: Vec<usize> = (0..rank).map(|_| pick(&mut rng, 1, 9)).collect();
        // One or two neighbouring windowed dimensions.
        let count = pick(&mut rng, 1, 2.min(rank));
        let d0 = pick(&mut rng, 0, rank - count);
        let (mut wd, mut st, mut hi) = (vec![1; rank], vec![1; rank], vec![0; rank]);
        for d in d0..d0 + count {
            wd[d] = pick(&mut rng, 1, 3.min(dims[d]));
            st[d] = pick(&mut rng, 1, 3);
            // High padding that no window reaches: below what the next stride would need.
            let used = (dims[d] - wd[d]) / st[d] * st[d] + wd[d];
            let spare = dims[d] - used;
            hi[d] = pick(&mut rng, 0, (st[d] - 1).saturating_sub(spare));
        }
        let w = Window::new(&wd)
            .with_strides(&st)
            .with_padding(&hi.iter().map(|&h| (0, h)).collect::<Vec<_>>());
        check_all(&mut rng, &w, &dims, case % 2 == 0);
    }
}

/// `x` with its NaNs replaced by `−0`: the kernel takes its integer-key path for max and min
/// only on operands without NaNs, so these keep signed zeros, infinities and ties on it.
fn without_nans(x: &Array) -> Array {
    let v: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .map(|&v| if v.is_nan() { -0.0 } else { v })
        .collect();
    Array::from_f64(x.dims().to_vec(), v)
        .unwrap()
        .cast(x.dtype())
}

/// Checks max and min pooling of `x` by `w`, and for both selections the cotangent scatter of
/// `cotangent` (and, when given, the tangent gather of `tangent`), against the interpreter.
fn check_extrema(w: &Window, x: &Array, cotangent: &Array, tangent: Option<&Array>) {
    let xt = Type::new(x.dtype(), x.dims());
    let ot = Type::new(cotangent.dtype(), cotangent.dims());
    for monoid in [Monoid::Max, Monoid::Min] {
        let op = WindowOp::Reduce {
            monoid,
            window: w.clone(),
        };
        check(
            &graph(op, std::slice::from_ref(&xt)),
            std::slice::from_ref(x),
        );
    }
    for select in [Select::Max, Select::Min] {
        if let Some(t) = tangent {
            let gather = WindowOp::SelectAndGatherAdd {
                select,
                window: w.clone(),
            };
            check(
                &graph(gather, &[xt.clone(), xt.clone()]),
                &[t.clone(), x.clone()],
            );
        }
        let scatter = WindowOp::SelectAndScatterAdd {
            select,
            window: w.clone(),
        };
        check(
            &graph(scatter, &[ot.clone(), xt.clone()]),
            &[cotangent.clone(), x.clone()],
        );
    }
}

#[test]
fn nan_free_pooling_equals_the_interpreter() {
    let mut rng = Rng(31);
    // 2×2 windows of stride 2 over one feature (the kernel's row-pair path) tile the operand,
    // or leave its last row and column (odd sizes) to zeros.
    let cases: [(&[usize], &[usize], &[usize]); 6] = [
        (&[3, 4, 8, 8], &[1, 1, 2, 2], &[1, 1, 2, 2]),
        (&[2, 3, 7, 9], &[1, 1, 2, 2], &[1, 1, 2, 2]),
        (&[5, 4, 10], &[1, 2, 2], &[1, 2, 2]),
        (&[2, 3, 7, 9], &[1, 1, 3, 2], &[1, 1, 2, 2]),
        (&[2, 5, 6], &[1, 3, 3], &[1, 3, 3]),
        (&[4, 9], &[1, 3], &[1, 1]),
    ];
    for (dims, wd, st) in cases {
        let w = Window::new(wd).with_strides(st);
        let out = w.out_dims(dims).unwrap();
        for dt in [DType::F32, DType::F64, DType::I32] {
            for ties in [false, true] {
                let x = without_nans(&array(&mut rng, dt, dims, -3.0, 3.0, true));
                let x = if ties {
                    let v: Vec<f64> = x.to_f64_vec().iter().map(|v| v.round()).collect();
                    Array::from_f64(dims.to_vec(), v).unwrap().cast(dt)
                } else {
                    x
                };
                let t = array(&mut rng, dt, dims, -3.0, 3.0, false);
                let c = without_nans(&array(&mut rng, dt, &out, -3.0, 3.0, true));
                check_extrema(&w, &x, &c, Some(&t));
            }
        }
    }
}

#[test]
fn common_pooling_shapes_equal_the_interpreter() {
    let mut rng = Rng(5);
    // 2×2 stride 2 over NCHW (odd sizes drop the last row and column), 3×3 stride 2 over NHWC
    // (overlapping windows), 1-D pooling over NCL, and an identity window.
    let cases: [(&[usize], &[usize], &[usize]); 5] = [
        (&[3, 4, 8, 8], &[1, 1, 2, 2], &[1, 1, 2, 2]),
        (&[2, 3, 7, 9], &[1, 1, 2, 2], &[1, 1, 2, 2]),
        (&[2, 7, 7, 5], &[1, 3, 3, 1], &[1, 2, 2, 1]),
        (&[3, 2, 11], &[1, 1, 3], &[1, 1, 2]),
        (&[4, 5], &[1, 1], &[1, 1]),
    ];
    for (dims, wd, st) in cases {
        let w = Window::new(wd).with_strides(st);
        check_all(&mut rng, &w, dims, true);
        check_all(&mut rng, &w, dims, false);
    }
}

#[test]
fn near_misses_keep_the_generic_loop_and_agree() {
    let mut rng = Rng(8);
    let base = || Window::new(&[1, 2, 2]).with_strides(&[1, 2, 2]);
    let cases = [
        base().with_padding(&[(0, 0), (1, 0), (0, 0)]),
        base().with_padding(&[(0, 0), (0, 1), (0, 0)]),
        base().with_base_dilation(&[1, 2, 1]),
        base().with_window_dilation(&[1, 1, 2]),
        Window::new(&[2, 1, 2]),
        Window::new(&[2, 2, 2]),
    ];
    for w in cases {
        check_all(&mut rng, &w, &[3, 5, 6], true);
    }
}

/// The 2×2 stride-2 paths check for NaNs while they pool: a single NaN at every place of an
/// NCHW operand (even sizes, and odd ones whose last row and column no window covers, where a
/// NaN changes nothing), with the other values distinct so that the NaN alone decides which
/// path must give the interpreter's answer; f32 (whose scatter has a vector loop over groups of
/// four windows, here 4 and 5 windows to a row) and f64, max and min, pooling and its
/// cotangent's scatter.
#[test]
fn a_single_nan_anywhere_in_two_by_two_pooling() {
    let w = Window::new(&[1, 1, 2, 2]).with_strides(&[1, 1, 2, 2]);
    for dims in [[1usize, 2, 4, 8], [1, 1, 5, 11]] {
        let out = w.out_dims(&dims).expect("a valid window");
        let n: usize = dims.iter().product();
        let no: usize = out.iter().product();
        for dt in [DType::F32, DType::F64] {
            let c: Vec<f64> = (0..no).map(|k| k as f64 + 0.5).collect();
            let c = Array::from_f64(out.to_vec(), c).unwrap().cast(dt);
            for at in 0..n {
                let v: Vec<f64> = (0..n)
                    .map(|k| {
                        if k == at {
                            f64::NAN
                        } else {
                            ((k * 37) % n) as f64 - 9.0
                        }
                    })
                    .collect();
                let x = Array::from_f64(dims.to_vec(), v).unwrap().cast(dt);
                check_extrema(&w, &x, &c, None);
            }
        }
    }
}
