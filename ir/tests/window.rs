//! The window family's reference semantics against an independent naive formulation written
//! here: the operand is materialised dilated and padded with the identity (with a mask of the
//! positions that hold operand elements), and every window reads that array directly. Random
//! ranks, shapes (with zero and unit dimensions), windows, strides, paddings and both
//! dilations, in f32, f64 and i32; ties and signed zeros are frequent because the elements are
//! drawn from a few values. Also: type errors, pooling conveniences and their errors.

use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
use ferrax_ir::{Array, DType, ErrorKind, Op, Padding, Tensor, Type};

/// A SplitMix64 generator: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random window for rank `rank`, and an operand shape.
fn random_case(rng: &mut Rng, rank: usize) -> (Vec<usize>, Window) {
    let dims: Vec<usize> = (0..rank)
        .map(|_| {
            if rng.below(8) == 0 {
                0
            } else {
                rng.below(5) + 1
            }
        })
        .collect();
    let w: Vec<usize> = (0..rank).map(|_| rng.below(3) + 1).collect();
    let s: Vec<usize> = (0..rank).map(|_| rng.below(3) + 1).collect();
    let pad: Vec<(usize, usize)> = (0..rank).map(|_| (rng.below(3), rng.below(3))).collect();
    let bd: Vec<usize> = (0..rank).map(|_| rng.below(3) + 1).collect();
    let wd: Vec<usize> = (0..rank).map(|_| rng.below(3) + 1).collect();
    let win = Window::new(&w)
        .with_strides(&s)
        .with_padding(&pad)
        .with_base_dilation(&bd)
        .with_window_dilation(&wd);
    (dims, win)
}

/// Row-major multi-indices of `dims`.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = dims.iter().product();
    (0..n)
        .map(|mut f| {
            let mut idx = vec![0; dims.len()];
            for d in (0..dims.len()).rev() {
                idx[d] = f % dims[d];
                f /= dims[d];
            }
            idx
        })
        .collect()
}

/// The flat row-major offset of `idx` in `dims`.
fn flat(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The naive formulation: for every window, the list of (padded value, operand offset or
/// `None` for padding and holes) in window order.
struct Naive {
    out: Vec<usize>,
    windows: Vec<Vec<Option<usize>>>,
}

fn naive(dims: &[usize], w: &Window) -> Naive {
    let rank = dims.len();
    let padded: Vec<usize> = (0..rank)
        .map(|d| {
            let dil = if dims[d] == 0 {
                0
            } else {
                (dims[d] - 1) * w.base_dilation[d] + 1
            };
            w.lo[d] + dil + w.hi[d]
        })
        .collect();
    // Which operand element sits at each padded position.
    let mut source: Vec<Option<usize>> = vec![None; padded.iter().product()];
    for idx in indices(dims) {
        let p: Vec<usize> = (0..rank)
            .map(|d| w.lo[d] + idx[d] * w.base_dilation[d])
            .collect();
        source[flat(&p, &padded)] = Some(flat(&idx, dims));
    }
    let span: Vec<usize> = (0..rank)
        .map(|d| (w.dims[d] - 1) * w.window_dilation[d] + 1)
        .collect();
    let out: Vec<usize> = (0..rank)
        .map(|d| {
            // Count the window starts that fit, one by one.
            (0..)
                .take_while(|&o| o * w.strides[d] + span[d] <= padded[d])
                .count()
        })
        .collect();
    let windows = indices(&out)
        .into_iter()
        .map(|o| {
            indices(&w.dims)
                .into_iter()
                .map(|k| {
                    let p: Vec<usize> = (0..rank)
                        .map(|d| o[d] * w.strides[d] + k[d] * w.window_dilation[d])
                        .collect();
                    source[flat(&p, &padded)]
                })
                .collect()
        })
        .collect();
    Naive { out, windows }
}

/// Evaluates one window op.
fn run(op: WindowOp, args: &[&Array]) -> Array {
    Op::Window(Box::new(op))
        .eval(args)
        .unwrap_or_else(|e| panic!("eval failed: {e}"))
        .remove(0)
}

/// Random elements drawn from a few values (ties, signed zeros, an occasional NaN and ±∞).
fn values(rng: &mut Rng, n: usize, dtype: DType, specials: bool) -> Array {
    const POOL: [f64; 9] = [0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 0.5, 7.0, -7.0];
    let v: Vec<f64> = (0..n)
        .map(|_| {
            if specials && rng.below(20) == 0 {
                [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3)]
            } else if rng.below(2) == 0 {
                POOL[rng.below(POOL.len())]
            } else {
                (rng.below(1000) as f64 - 500.0) / 37.0
            }
        })
        .collect();
    Array::from_f64(vec![n], v).unwrap().cast(dtype)
}

/// The naive reduction of one window, in window order from the identity.
fn fold(m: Monoid, dtype: DType, x: &[f64], win: &[Option<usize>]) -> f64 {
    let lowest = if dtype == DType::I32 {
        i32::MIN as f64
    } else {
        f64::NEG_INFINITY
    };
    let highest = if dtype == DType::I32 {
        i32::MAX as f64
    } else {
        f64::INFINITY
    };
    let mut acc = match m {
        Monoid::Sum => 0.0,
        Monoid::Max => lowest,
        Monoid::Min => highest,
    };
    for &i in win.iter().flatten() {
        let v = x[i];
        acc = match m {
            // In the element type's precision: f32 sums round after every addition.
            Monoid::Sum => match dtype {
                DType::F32 => (acc as f32 + v as f32) as f64,
                DType::I32 => (acc as i32).wrapping_add(v as i32) as f64,
                _ => acc + v,
            },
            Monoid::Max => {
                if acc.is_nan() || v.is_nan() {
                    if acc.is_nan() {
                        acc
                    } else {
                        v
                    }
                } else if v > acc || (v == acc && acc.is_sign_negative()) {
                    v
                } else {
                    acc
                }
            }
            Monoid::Min => {
                if acc.is_nan() || v.is_nan() {
                    if acc.is_nan() {
                        acc
                    } else {
                        v
                    }
                } else if v < acc || (v == acc && v.is_sign_negative()) {
                    v
                } else {
                    acc
                }
            }
        };
    }
    acc
}

/// Whether two numbers are the same value (equal bits, or both NaN).
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The operand offset a window selects: the first one holding the window's extremum (same
/// bits; any NaN when the extremum is NaN).
fn selected(m: Monoid, dtype: DType, x: &[f64], win: &[Option<usize>]) -> Option<usize> {
    let y = fold(m, dtype, x, win);
    win.iter().flatten().copied().find(|&i| same(x[i], y))
}

#[test]
fn reduce_window_matches_the_naive_formulation() {
    let mut rng = Rng(7);
    for case in 0..600 {
        let rank = rng.below(4);
        let (dims, w) = random_case(&mut rng, rank);
        let n: usize = dims.iter().product();
        let nv = naive(&dims, &w);
        for dtype in [DType::F64, DType::F32, DType::I32] {
            let x = values(&mut rng, n, dtype, dtype.is_float())
                .reshaped(dims.clone())
                .unwrap();
            let xv = x.to_f64_vec();
            for m in [Monoid::Sum, Monoid::Max, Monoid::Min] {
                let op = WindowOp::Reduce {
                    monoid: m,
                    window: w.clone(),
                };
                let y = run(op, &[&x]);
                assert_eq!(y.dims(), &nv.out[..], "case {case}: result shape");
                assert_eq!(y.dtype(), dtype);
                for (o, win) in nv.windows.iter().enumerate() {
                    let want = fold(m, dtype, &xv, win);
                    let got = y.to_f64_vec()[o];
                    assert!(
                        same(got, want),
                        "case {case} {dtype} {m:?} dims {dims:?} {w:?}: element {o} is {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn select_ops_match_the_naive_selection() {
    let mut rng = Rng(11);
    for case in 0..600 {
        let rank = rng.below(4);
        let (dims, w) = random_case(&mut rng, rank);
        let n: usize = dims.iter().product();
        let nv = naive(&dims, &w);
        let m_out: usize = nv.out.iter().product();
        for dtype in [DType::F64, DType::F32] {
            let x = values(&mut rng, n, dtype, true)
                .reshaped(dims.clone())
                .unwrap();
            let xv = x.to_f64_vec();
            let t = values(&mut rng, n, dtype, false)
                .reshaped(dims.clone())
                .unwrap();
            let tv = t.to_f64_vec();
            let c = values(&mut rng, m_out, dtype, false)
                .reshaped(nv.out.clone())
                .unwrap();
            let cv = c.to_f64_vec();
            for (select, m) in [(Select::Max, Monoid::Max), (Select::Min, Monoid::Min)] {
                let g = run(
                    WindowOp::SelectAndGatherAdd {
                        select,
                        window: w.clone(),
                    },
                    &[&t, &x],
                );
                let s = run(
                    WindowOp::SelectAndScatterAdd {
                        select,
                        window: w.clone(),
                    },
                    &[&c, &x],
                );
                assert_eq!(g.dims(), &nv.out[..]);
                assert_eq!(s.dims(), &dims[..]);
                let mut scattered = vec![0.0f64; n];
                for (o, win) in nv.windows.iter().enumerate() {
                    let sel = selected(m, dtype, &xv, win);
                    let want = sel.map_or(0.0, |i| tv[i]);
                    assert!(
                        same(g.to_f64_vec()[o], want),
                        "case {case} {dtype} {select:?}: gathered element {o}"
                    );
                    if let Some(i) = sel {
                        scattered[i] = match dtype {
                            DType::F32 => (scattered[i] as f32 + cv[o] as f32) as f64,
                            _ => scattered[i] + cv[o],
                        };
                    }
                }
                for (i, (&got, &want)) in s.to_f64_vec().iter().zip(&scattered).enumerate() {
                    assert!(
                        same(got, want),
                        "case {case} {dtype} {select:?}: scattered element {i} is {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn ties_go_to_the_first_element_in_window_order() {
    // One window over [3, 5, 5, 1, 5]: the first 5 (index 1) is selected.
    let x = Array::from(vec![3.0, 5.0, 5.0, 1.0, 5.0]);
    let t = Array::from(vec![10.0, 20.0, 30.0, 40.0, 50.0]);
    let w = Window::new(&[5]);
    let g = run(
        WindowOp::SelectAndGatherAdd {
            select: Select::Max,
            window: w.clone(),
        },
        &[&t, &x],
    );
    assert_eq!(g.to_f64_vec(), vec![20.0]);
    let c = Array::from(vec![1.0]);
    let s = run(
        WindowOp::SelectAndScatterAdd {
            select: Select::Max,
            window: w,
        },
        &[&c, &x],
    );
    assert_eq!(s.to_f64_vec(), vec![0.0, 1.0, 0.0, 0.0, 0.0]);
    // A window of padding only selects nothing.
    let w = Window::new(&[2]).with_padding(&[(2, 0)]);
    let x = Array::from(vec![4.0]);
    let y = run(
        WindowOp::Reduce {
            monoid: Monoid::Max,
            window: w.clone(),
        },
        &[&x],
    );
    assert_eq!(y.to_f64_vec(), vec![f64::NEG_INFINITY, 4.0]);
    let g = run(
        WindowOp::SelectAndGatherAdd {
            select: Select::Max,
            window: w,
        },
        &[&x, &x],
    );
    assert_eq!(g.to_f64_vec(), vec![0.0, 4.0]);
}

#[test]
fn type_errors_name_the_op_and_the_problem() {
    let f = |dims: &[usize]| Type::new(DType::F64, dims);
    let cases: Vec<(WindowOp, Vec<Type>, ErrorKind, &str)> = vec![
        (
            WindowOp::Reduce {
                monoid: Monoid::Sum,
                window: Window::new(&[2]),
            },
            vec![f(&[3, 3])],
            ErrorKind::Shape,
            "rank 2",
        ),
        (
            WindowOp::Reduce {
                monoid: Monoid::Max,
                window: Window::new(&[0]),
            },
            vec![f(&[3])],
            ErrorKind::Shape,
            "at least 1",
        ),
        (
            WindowOp::Reduce {
                monoid: Monoid::Max,
                window: Window::new(&[2]).with_strides(&[0]),
            },
            vec![f(&[3])],
            ErrorKind::Shape,
            "at least 1",
        ),
        (
            WindowOp::Reduce {
                monoid: Monoid::Min,
                window: Window::new(&[2])
                    .with_padding(&[(isize::MAX as usize, isize::MAX as usize)]),
            },
            vec![f(&[3])],
            ErrorKind::Shape,
            "overflows",
        ),
        (
            WindowOp::Reduce {
                monoid: Monoid::Min,
                window: Window::new(&[2]).with_base_dilation(&[usize::MAX / 2]),
            },
            vec![f(&[3])],
            ErrorKind::Shape,
            "overflows",
        ),
        (
            WindowOp::Reduce {
                monoid: Monoid::Sum,
                window: Window::new(&[1]),
            },
            vec![Type::new(DType::Bool, &[3])],
            ErrorKind::DType,
            "f32, f64 or i32",
        ),
        (
            WindowOp::SelectAndGatherAdd {
                select: Select::Max,
                window: Window::new(&[2]),
            },
            vec![f(&[4]), f(&[3])],
            ErrorKind::Shape,
            "gathered operand",
        ),
        (
            WindowOp::SelectAndScatterAdd {
                select: Select::Min,
                window: Window::new(&[2]),
            },
            vec![f(&[3]), f(&[3])],
            ErrorKind::Shape,
            "f64[2]",
        ),
        (
            WindowOp::SelectAndScatterAdd {
                select: Select::Min,
                window: Window::new(&[2]),
            },
            vec![f(&[3])],
            ErrorKind::Arity,
            "takes 2 operands",
        ),
    ];
    for (op, tys, kind, needle) in cases {
        let name = op.name();
        let e = Op::Window(Box::new(op))
            .infer(&tys)
            .expect_err("an ill-typed window op");
        assert_eq!(e.kind, kind, "{}", e.message);
        assert!(
            e.message.contains(name) && e.message.contains(needle),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_result_too_large_is_an_error() {
    // A tiny operand with huge padding: every result element is a window.
    let w = Window::new(&[1, 1]).with_padding(&[(1 << 30, 0), (1 << 30, 0)]);
    let e = Op::Window(Box::new(WindowOp::Reduce {
        monoid: Monoid::Sum,
        window: w,
    }))
    .infer(&[Type::new(DType::F64, &[1, 1])])
    .expect_err("too large");
    assert_eq!(e.kind, ErrorKind::Size, "{}", e.message);
}

#[test]
fn pooling_conveniences() {
    // 1×1×4×4 NCHW, values 0..16.
    let x = Tensor::constant(
        Array::from_f64(vec![1, 1, 4, 4], (0..16).map(f64::from).collect()).unwrap(),
    );
    let m = x
        .max_pool(&[2, 2], &[2, 2], Padding::Valid)
        .to_array()
        .unwrap();
    assert_eq!(m.dims(), &[1, 1, 2, 2]);
    assert_eq!(m.to_f64_vec(), vec![5.0, 7.0, 13.0, 15.0]);
    let a = x
        .avg_pool(&[2, 2], &[2, 2], Padding::Valid)
        .to_array()
        .unwrap();
    assert_eq!(a.to_f64_vec(), vec![2.5, 4.5, 10.5, 12.5]);
    // SAME with stride 1 and a 3×3 window pads one on each side; padding counts as zeros.
    let a = x
        .avg_pool(&[3, 3], &[1, 1], Padding::Same)
        .to_array()
        .unwrap();
    assert_eq!(a.dims(), &[1, 1, 4, 4]);
    assert_eq!(a.to_f64_vec()[0], (0.0 + 1.0 + 4.0 + 5.0) / 9.0);
    // SAME with stride 2 on 5 elements: 3 results, total padding 1, put after.
    let y = Tensor::constant(Array::from(vec![1.0, 9.0, 2.0, 8.0, 3.0]));
    let m = y
        .max_pool_axes(&[0], &[2], &[2], Padding::Same)
        .to_array()
        .unwrap();
    assert_eq!(m.to_f64_vec(), vec![9.0, 8.0, 3.0]);
    let m = y
        .max_pool_axes(&[0], &[3], &[1], Padding::Explicit(vec![(1, 1)]))
        .to_array()
        .unwrap();
    assert_eq!(m.to_f64_vec(), vec![9.0, 9.0, 9.0, 8.0, 8.0]);
    // Misuse gives errors naming the call.
    for bad in [
        x.max_pool(&[2], &[2, 2], Padding::Valid),
        x.max_pool(&[2, 0], &[2, 2], Padding::Valid),
        y.max_pool(&[2], &[2], Padding::Valid),
        x.avg_pool_axes(&[2, 2], &[2, 2], &[1, 1], Padding::Valid),
        x.max_pool(&[2, 2], &[1, 1], Padding::Explicit(vec![(0, 0)])),
    ] {
        let e = bad.to_array().expect_err("misuse");
        assert!(e.message.contains("_pool"), "{}", e.message);
        let at = e.location.expect("a location");
        assert!(at.file().ends_with("window.rs"), "{at}");
    }
    let i = Tensor::constant(Array::from_i32(vec![1, 1, 2], vec![1, 2]).unwrap());
    let e = i
        .avg_pool(&[2], &[1], Padding::Valid)
        .to_array()
        .expect_err("ints");
    assert!(e.message.contains("float"), "{}", e.message);
}

#[test]
fn extreme_geometries_give_errors_or_results_never_panics() {
    // A zero-size operand whose other dimensions' product overflows, with strides that leave
    // one window of padding only.
    let big = 1usize << 40;
    let w = Window::new(&[1, 1, 1])
        .with_strides(&[1, big, big])
        .with_padding(&[(1, 0), (0, 0), (0, 0)]);
    let x = Array::full(DType::F64, vec![0, big, big], 0.0).unwrap();
    for (m, want) in [
        (Monoid::Sum, 0.0),
        (Monoid::Max, f64::NEG_INFINITY),
        (Monoid::Min, f64::INFINITY),
    ] {
        let y = run(
            WindowOp::Reduce {
                monoid: m,
                window: w.clone(),
            },
            &[&x],
        );
        assert_eq!(y.dims(), &[1, 1, 1]);
        assert_eq!(y.to_f64_vec(), vec![want]);
    }
    // Parameters beyond isize::MAX are refused even where they would not change the sizes
    // (a dilation of a window of one position, of an operand of one element).
    for w in [
        Window::new(&[1]).with_window_dilation(&[usize::MAX]),
        Window::new(&[1]).with_base_dilation(&[usize::MAX]),
        Window::new(&[1]).with_strides(&[usize::MAX]),
    ] {
        let e = Op::Window(Box::new(WindowOp::Reduce {
            monoid: Monoid::Sum,
            window: w,
        }))
        .infer(&[Type::new(DType::F64, &[1])])
        .expect_err("a parameter beyond isize::MAX");
        assert!(e.message.contains("at most"), "{}", e.message);
    }
}
