//! The soundness guarantees end to end, through the facade: every example of misuse that used
//! to crash, abort or return a wrong value is an `Err` with a clear message (or the right
//! value), under the interpreter and under the JIT, and the process goes on.

use ferrax::ir::interp::{eval_with, EvalOptions};
use ferrax::prelude::*;
use ferrax::{ErrorKind, MathMode};

/// Asserts that `r` failed with `kind` and a message holding every one of `words`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, words: &[&str]) -> Error {
    let e = r.expect_err("an error");
    assert_eq!(e.kind, kind, "{e}");
    for w in words {
        assert!(e.message.contains(w), "`{w}` missing from: {e}");
    }
    e
}

fn f64s(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

/// Whether the kernel grants every allocation (`vm.overcommit_memory = 1`): then an 8 TiB
/// request succeeds and only touching the pages fails, which no process can catch, so the
/// tests ask for more than the 128 TiB of address space instead.
fn overcommit_always() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|s| s.trim() == "1")
}

/// The element count of a huge f64 test buffer and how its size prints: 8 TiB (a request far
/// beyond any machine), or 1 PiB where the kernel overcommits always.
fn huge() -> (usize, &'static str, &'static str) {
    if overcommit_always() {
        (1 << 47, "1 PiB", "f64[140737488355328]")
    } else {
        (1 << 40, "8 TiB", "f64[1099511627776]")
    }
}

/// The function of the first example: a slice of a matrix, summed.
fn slice_sum(x: Tensor) -> Tensor {
    x.slice(&[0, 0], &[1, 1], &[1, 1]).sum_all()
}

#[test]
fn an_array_whose_element_count_wraps_cannot_be_made_or_compiled_for() {
    assert_err(
        Array::from_f64([1 << 32, 1 << 32], vec![]),
        ErrorKind::Size,
        &["[4294967296,4294967296]", "overflows usize"],
    );
    // Nor can a function be specialised or compiled for that type.
    let f = function(slice_sum);
    assert_err(
        f.specialize(&[f64s(&[1 << 32, 1 << 32])]),
        ErrorKind::Size,
        &["overflows usize"],
    );
    let jf = jit(slice_sum).unwrap();
    assert_err(
        jf.compiled_for(&[f64s(&[1 << 32, 1 << 32])]),
        ErrorKind::Size,
        &["overflows usize"],
    );
    // The same function on a sane array still runs, in both.
    let x = Array::from_f64([2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let a: f64 = f.call(x.clone()).unwrap();
    let b: f64 = jf.call(x).unwrap();
    assert_eq!((a, b), (1.0, 1.0));
}

#[test]
fn terabyte_buffers_are_resource_errors_in_the_interpreter_and_the_jit() {
    let (n, size, ty) = huge();
    assert_err(
        Array::full(DType::F64, [n], 0.0),
        ErrorKind::Resource,
        &["cannot allocate", size],
    );
    let big = move |x: Tensor| x.broadcast_to(&[n]).sin();
    assert_err(
        function(big).call_arrays(&[Array::from(1.0)]),
        ErrorKind::Resource,
        &["cannot allocate", size, ty],
    );
    assert_err(
        jit(big).unwrap().call_arrays(&[Array::from(1.0)]),
        ErrorKind::Resource,
        &[size],
    );
    // A memory budget refuses a call before anything runs.
    let opts = JitOptions {
        max_call_bytes: Some(1 << 20),
        ..JitOptions::default()
    };
    let mid = |x: Tensor| x.broadcast_to(&[1 << 18]).sin();
    assert_err(
        jit_with(mid, opts)
            .unwrap()
            .call_arrays(&[Array::from(1.0)]),
        ErrorKind::Resource,
        &["budget"],
    );
    // Within the budget the same call runs.
    let small = |x: Tensor| x.broadcast_to(&[1 << 10]).sin();
    let out = jit_with(small, opts)
        .unwrap()
        .call_arrays(&[Array::from(1.0)])
        .unwrap();
    assert_eq!(out[0].size(), 1 << 10);
}

#[test]
fn shapes_that_overflow_are_errors_when_traced() {
    let iota = |x: Tensor| Tensor::iota(DType::F64, &[1 << 32, 1 << 32], 0).sum_all() + x;
    let pad = |x: Tensor| x.pad(&[usize::MAX / 2], &[usize::MAX / 2], &[0], 0.0);
    for f in [function(iota), function(pad)] {
        let e = assert_err(
            f.specialize(&[f64s(&[3])]),
            ErrorKind::Size,
            &["overflows usize"],
        );
        assert!(e.location.unwrap().file().ends_with("soundness.rs"), "{e}");
    }
    assert_err(
        jit(pad)
            .unwrap()
            .call_arrays(&[Array::from(vec![1.0, 2.0, 3.0])]),
        ErrorKind::Size,
        &["pad"],
    );
    assert_err(
        function(|x: Tensor| x.sin()).specialize(&[f64s(&[1 << 62, 4])]),
        ErrorKind::Size,
        &["f64[4611686018427387904,4]"],
    );
}

#[test]
fn array_buffers_cannot_change_length() {
    let mut x = Array::from(vec![1.0, 2.0, 3.0]);
    // `data_mut` hands out a slice: values change, the length cannot.
    if let ferrax::ir::DataMut::F64(v) = x.data_mut() {
        v[0] = 4.0;
        assert_eq!(v.len(), 3);
    }
    let f = jit(|x: Tensor| x.sum_all()).unwrap();
    let s: f64 = f.call(x).unwrap();
    assert_eq!(s, 9.0);
}

#[test]
fn loops_that_never_end_can_be_bounded() {
    let forever =
        |x: Tensor| while_loop(|c| c[0].gt(-1.0), |c| vec![c[0].clone() + 1.0], &[x]).remove(0);
    let graph = function(forever).specialize(&[f64s(&[])]).unwrap().graph;
    let opts = EvalOptions {
        max_while_iterations: Some(1000),
    };
    assert_err(
        eval_with(&graph, &[Array::from(0.0)], &opts),
        ErrorKind::Resource,
        &["1000"],
    );
    // The same limit through the function-level interpreter call.
    let e = assert_err(
        function(forever).call_arrays_with(&[Array::from(0.0)], &opts),
        ErrorKind::Resource,
        &["1000"],
    );
    assert!(e.location.unwrap().file().ends_with("soundness.rs"), "{e}");
    let jopts = JitOptions {
        max_while_iterations: Some(1000),
        ..JitOptions::default()
    };
    let jf = jit_with(forever, jopts).unwrap();
    assert_err(
        jf.call_arrays(&[Array::from(0.0)]),
        ErrorKind::Resource,
        &["1000"],
    );
    // A loop that ends within the limit gives its value.
    let counted =
        |x: Tensor| while_loop(|c| c[0].lt(10.0), |c| vec![c[0].clone() + 1.0], &[x]).remove(0);
    let v: f64 = jit_with(counted, jopts).unwrap().call(0.0).unwrap();
    assert_eq!(v, 10.0);
}

#[test]
fn fast_math_is_right_far_outside_the_usual_range() {
    let n = 2048;
    let specials = [
        0.0,
        -0.0,
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        710.0,
        -745.5,
        1e22,
        3.0e5,
        -1e15,
        700.0,
    ];
    let xs: Vec<f64> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                specials[(i / 3) % specials.len()]
            } else {
                ((i as f64) * 0.37).sin() * 10f64.powi((i % 40) as i32 - 10)
            }
        })
        .collect();
    let x = Array::from(xs.clone());
    type Case = (&'static str, fn(Tensor) -> Tensor);
    let fs: [Case; 4] = [
        ("sin", |x| x.sin()),
        ("cos", |x| x.cos()),
        ("logistic(sin(cosh))", |x| x.cosh().sin().logistic()),
        ("tanh(exp(sin))", |x| x.sin().exp().tanh()),
    ];
    for (name, f) in fs {
        let want = function(f)
            .call_arrays(std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        for math in [MathMode::Fast, MathMode::Auto] {
            let opts = JitOptions {
                math,
                ..JitOptions::default()
            };
            let got = jit_with(f, opts)
                .unwrap()
                .call_arrays(std::slice::from_ref(&x))
                .unwrap()
                .remove(0);
            let (w, g) = (want.as_f64().unwrap(), got.as_f64().unwrap());
            for i in 0..n {
                let same_class = (w[i].is_nan() && g[i].is_nan())
                    || (w[i].is_infinite() && g[i] == w[i])
                    || (w[i] == 0.0
                        && g[i] == 0.0
                        && w[i].is_sign_negative() == g[i].is_sign_negative())
                    || (w[i].is_finite() && w[i] != 0.0 && g[i].is_finite() && g[i] != 0.0);
                let close =
                    !w[i].is_finite() || (w[i] - g[i]).abs() <= 1e-12 * w[i].abs().max(1e-300);
                assert!(
                    same_class && close,
                    "{name} under {math:?} at x = {:e}: interpreter {:e}, JIT {:e}",
                    xs[i],
                    w[i],
                    g[i]
                );
            }
        }
    }
}

#[test]
fn derivatives_stay_right_at_extreme_magnitudes() {
    // d/dx atan2(x, y) = y/(x² + y²) and d/dy = −x/(x² + y²), whose unscaled denominators
    // overflow above ~1e154 and underflow below ~1e-162.
    let df = grad(|x: Tensor, y: Tensor| x.atan2(&y)).wrt((0, 1));
    for (x, y) in [
        (1e200f64, 2e200f64),
        (3e-200, 1e-200),
        (-1e300, 1e-300),
        (2.0, -3.0),
    ] {
        let (dx, dy): (f64, f64) = df.call((x, y)).unwrap();
        // The closed form, scaled by hand.
        let s = f64::max(x.abs(), y.abs());
        let (u, v) = (x / s, y / s);
        let d = u * u + v * v;
        let (wx, wy) = (v / d / s, -(u / d) / s);
        for (got, want) in [(dx, wx), (dy, wy)] {
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "atan2 at ({x:e}, {y:e}): {got:e}, want {want:e}"
            );
        }
        let jdf = jit(grad(|x: Tensor, y: Tensor| x.atan2(&y)).wrt((0, 1))).unwrap();
        let (jx, jy): (f64, f64) = jdf.call((x, y)).unwrap();
        assert_eq!((jx.to_bits(), jy.to_bits()), (dx.to_bits(), dy.to_bits()));
    }
}
