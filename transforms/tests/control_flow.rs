//! Derivatives of the control-flow constructs (`cond`, `switch`, `scan`, `fori_loop`,
//! `while_loop`) in forward and reverse mode, checked against finite differences and against
//! the same computation written as straight-line code.

mod common;

use common::close;
use ferrax_ir::control_api::{cond, fori_loop, scan, scan_with, switch, while_loop, ScanConfig};
use ferrax_ir::{function, Array, DType, Function, Tensor, Type};
use ferrax_transforms::api::{grad, hessian, jvp, vjp};

/// Central finite differences of output 0 (summed) of `f` with respect to argument `argnum`.
fn fd_grad(f: &Function, args: &[Array], argnum: usize) -> Vec<f64> {
    let h = 1e-6;
    let x = args[argnum].to_f64_vec();
    (0..x.len())
        .map(|i| {
            let at = |d: f64| {
                let mut v = x.clone();
                v[i] += d;
                let mut a = args.to_vec();
                a[argnum] = Array::from_f64(args[argnum].shape().clone(), v).unwrap();
                f.call_arrays(&a).unwrap()[0]
                    .to_f64_vec()
                    .iter()
                    .sum::<f64>()
            };
            (at(h) - at(-h)) / (2.0 * h)
        })
        .collect()
}

/// The gradient of `f` with respect to argument `argnum`, flattened.
fn grad_of(f: &Function, args: &[Array], argnum: usize) -> Vec<f64> {
    grad(f).wrt(argnum).call_arrays(args).unwrap()[0].to_f64_vec()
}

#[track_caller]
fn close_vecs(a: &[f64], b: &[f64], rtol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        close(*x, *y, rtol, &format!("{what}[{i}]"));
    }
}

/// Checks the gradient of `f` for every float argument against finite differences and, when
/// given, against the gradient of the straight-line version `g`.
#[track_caller]
fn check_grads(f: &Function, g: Option<&Function>, args: &[Array]) {
    for k in 0..args.len() {
        if !args[k].dtype().is_float() {
            continue;
        }
        let d = grad_of(f, args, k);
        close_vecs(&d, &fd_grad(f, args, k), 1e-6, &format!("fd, argument {k}"));
        if let Some(g) = g {
            close_vecs(
                &d,
                &grad_of(g, args, k),
                1e-12,
                &format!("straight-line, argument {k}"),
            );
        }
    }
}

fn cond_f(x: Tensor, y: Tensor) -> Tensor {
    let out = cond(
        &x.gt(0.0),
        |o| vec![o[0].sin() * &y],
        |o| vec![o[0].cos() + &y * &y],
        std::slice::from_ref(&x),
    );
    out[0].clone()
}

fn cond_straight(x: Tensor, y: Tensor) -> Tensor {
    x.gt(0.0).select(x.sin() * &y, x.cos() + &y * &y)
}

#[test]
fn cond_matches_select_in_both_modes() {
    let (f, g) = (function(cond_f), function(cond_straight));
    for x in [0.7, -0.3] {
        let args = [Array::from(x), Array::from(1.3)];
        check_grads(&f, Some(&g), &args);
        let (v, t): (f64, f64) = jvp(cond_f).call((x, 1.3, 1.0, 0.5)).unwrap();
        let (v2, t2): (f64, f64) = jvp(cond_straight).call((x, 1.3, 1.0, 0.5)).unwrap();
        assert_eq!((v, t), (v2, t2));
    }
}

fn switch_f(x: Tensor, i: Tensor) -> Tensor {
    let b0 = |o: &[Tensor]| vec![o[0].sin()];
    let b1 = |o: &[Tensor]| vec![o[0].exp() * &o[0]];
    let b2 = |o: &[Tensor]| vec![o[0].powi(3)];
    switch(&i, &[&b0, &b1, &b2], &[x])[0].clone()
}

#[test]
fn switch_takes_the_indexed_branch_and_clamps() {
    let f = function(switch_f);
    let x = 0.4f64;
    let want = [
        x.cos(),
        x.exp() * (1.0 + x),
        3.0 * x * x,
        3.0 * x * x,
        x.cos(),
    ];
    for (i, w) in [0, 1, 2, 7, -1].into_iter().zip(want) {
        let args = [Array::from(x), Array::scalar(DType::I32, i as f64)];
        let d = grad_of(&f, &args, 0);
        close(d[0], w, 1e-14, &format!("branch {i}"));
        check_grads(&f, None, &args);
    }
}

fn rnn_step(w: &Tensor, h: &Tensor, x: &Tensor) -> Tensor {
    (w.matmul(&h.expand_dims(1)).reshape(&[3]) + x).tanh()
}

/// An RNN over 4 steps: the weight matrix is captured by the body (a loop-invariant operand).
fn rnn_scan(w: Tensor, h0: Tensor, xs: Tensor) -> Tensor {
    let (h, ys) = scan(
        |c, x| {
            let h = rnn_step(&w, &c[0], &x[0]);
            (vec![h.clone()], vec![h.sin()])
        },
        &[h0],
        &[xs],
    );
    ys[0].sum_all() + h[0].square().sum_all()
}

fn rnn_straight(w: Tensor, h0: Tensor, xs: Tensor) -> Tensor {
    let mut h = h0;
    let mut total = Tensor::scalar(0.0);
    for i in 0..4 {
        let x = xs.slice_axis(0, i, i + 1).reshape(&[3]);
        h = rnn_step(&w, &h, &x);
        total = total + h.sin().sum_all();
    }
    total + h.square().sum_all()
}

fn rnn_args() -> Vec<Array> {
    let mut rng = common::Rng(7);
    vec![
        rng.array(&Type::new(DType::F64, &[3, 3]), -0.8, 0.8),
        rng.array(&Type::new(DType::F64, &[3]), -1.0, 1.0),
        rng.array(&Type::new(DType::F64, &[4, 3]), -1.0, 1.0),
    ]
}

#[test]
fn scan_rnn_matches_unrolled_loop() {
    let args = rnn_args();
    let (f, g) = (function(rnn_scan), function(rnn_straight));
    close(
        f.call_arrays(&args).unwrap()[0].to_scalar().unwrap(),
        g.call_arrays(&args).unwrap()[0].to_scalar().unwrap(),
        1e-14,
        "value",
    );
    check_grads(&f, Some(&g), &args);
    // Second order through the scan: the Hessian-vector product by forward over reverse
    // equals the one of the unrolled loop.
    let hv = |f: &Function| {
        let mut a = args.clone();
        a.push(Array::from_f64(args[1].shape().clone(), vec![0.3, -0.2, 0.5]).unwrap());
        let gx = grad(f).wrt(1);
        jvp(&gx)
            .call_arrays(&[
                a[0].clone(),
                a[1].clone(),
                a[2].clone(),
                Array::zeros(&args[0].ty()).unwrap(),
                a[3].clone(),
                Array::zeros(&args[2].ty()).unwrap(),
            ])
            .unwrap()[1]
            .to_f64_vec()
    };
    close_vecs(&hv(&f), &hv(&g), 1e-12, "hvp");
    // Reverse over reverse: the gradient of the squared gradient norm.
    let gg = |f: &Function| {
        let f = f.clone();
        let norm = move |w: Tensor, h: Tensor, xs: Tensor| {
            let d = grad(&f).wrt(1).apply(&[w, h, xs]);
            d[0].square().sum_all()
        };
        grad(norm).wrt(0).call_arrays(&args).unwrap()[0].to_f64_vec()
    };
    close_vecs(&gg(&f), &gg(&g), 1e-12, "grad of grad");
}

fn rev_scan(c0: Tensor, xs: Tensor) -> Tensor {
    let (c, ys) = scan_with(
        |c, x| {
            let n = &c[0] * x[0].sin() + &x[0];
            (vec![n.clone()], vec![n.square()])
        },
        &[c0],
        &[xs],
        ScanConfig {
            length: None,
            reverse: true,
        },
    );
    (ys[0].clone() * Tensor::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])).sum_all() + &c[0]
}

fn rev_straight(c0: Tensor, xs: Tensor) -> Tensor {
    let mut c = c0;
    let mut ys = vec![Tensor::scalar(0.0); 5];
    for i in (0..5).rev() {
        let x = xs.slice_axis(0, i, i + 1).reshape(&[]);
        c = &c * x.sin() + &x;
        ys[i] = c.square();
    }
    let w = [1.0, 2.0, 3.0, 4.0, 5.0];
    let mut total = c;
    for (y, w) in ys.into_iter().zip(w) {
        total = total + y * w;
    }
    total
}

#[test]
fn reverse_scan_matches_unrolled_loop() {
    let args = [
        Array::from(0.3),
        Array::from(vec![0.5, -1.0, 0.25, 2.0, -0.75]),
    ];
    let (f, g) = (function(rev_scan), function(rev_straight));
    close(
        f.call_arrays(&args).unwrap()[0].to_scalar().unwrap(),
        g.call_arrays(&args).unwrap()[0].to_scalar().unwrap(),
        1e-14,
        "value",
    );
    check_grads(&f, Some(&g), &args);
    // Forward mode agrees with reverse mode: <grad, t> = jvp(t).
    let d = grad_of(&f, &args, 1);
    let t = [0.1, 0.2, -0.3, 0.4, 0.5];
    let out = jvp(rev_scan)
        .call_arrays(&[
            args[0].clone(),
            args[1].clone(),
            Array::from(0.0),
            Array::from(t.to_vec()),
        ])
        .unwrap();
    let dot: f64 = d.iter().zip(t).map(|(a, b)| a * b).sum();
    close(out[1].to_scalar().unwrap(), dot, 1e-12, "jvp vs grad");
}

fn fori_f(x: Tensor) -> Tensor {
    fori_loop(
        0,
        5,
        |i, c| vec![&c[0] + (&c[0] * i.astype(DType::F64)).sin() * 0.5],
        &[x],
    )[0]
    .clone()
}

fn fori_straight(x: Tensor) -> Tensor {
    let mut c = x;
    for i in 0..5 {
        c = &c + (&c * i as f64).sin() * 0.5;
    }
    c
}

#[test]
fn fori_loop_is_reverse_differentiable() {
    let args = [Array::from(0.8)];
    check_grads(&function(fori_f), Some(&function(fori_straight)), &args);
    let second = grad(grad(fori_f)).call_arrays(&args).unwrap()[0]
        .to_scalar()
        .unwrap();
    let second2 = grad(grad(fori_straight)).call_arrays(&args).unwrap()[0]
        .to_scalar()
        .unwrap();
    close(second, second2, 1e-12, "second derivative");
}

/// Newton's method for sqrt(a), 1000 iterations, as a while loop that captures `a`.
fn newton_sqrt(a: Tensor) -> Tensor {
    let init = [Tensor::full_dtype(DType::I32, &[], 0.0), a.clone()];
    let out = while_loop(
        |c| c[0].lt(1000.0),
        |c| vec![&c[0] + 1.0, (&c[1] + &a / &c[1]) * 0.5],
        &init,
    );
    out[1].clone()
}

#[test]
fn reverse_mode_through_a_1000_iteration_while_loop() {
    let d: f64 = grad(newton_sqrt).call(2.0).unwrap();
    close(d, 0.35355339059327373, 1e-14, "d sqrt(x)/dx at 2");
    let (v, t): (f64, f64) = jvp(newton_sqrt).call((2.0, 1.0)).unwrap();
    close(v, 2f64.sqrt(), 1e-15, "value");
    close(t, 0.35355339059327373, 1e-14, "jvp");
    let (v, ct): (f64, f64) = vjp(newton_sqrt).call((2.0, 3.0)).unwrap();
    close(v, 2f64.sqrt(), 1e-15, "vjp value");
    close(ct, 3.0 * 0.35355339059327373, 1e-14, "vjp");
}

#[test]
fn forward_over_reverse_through_a_while_loop() {
    let h: f64 = hessian(newton_sqrt).call(2.0).unwrap();
    close(
        h,
        -0.25 * 2f64.powf(-1.5),
        1e-12,
        "second derivative of sqrt at 2",
    );
}

/// A loop whose trip count depends on the input: x grows until it exceeds 10.
fn grow(x: Tensor, s: Tensor) -> Tensor {
    let out = while_loop(|c| c[0].lt(10.0), |c| vec![&c[0] * &s + 0.1], &[x]);
    out[0].clone()
}

#[test]
fn data_dependent_trip_count() {
    let args = [Array::from(1.0), Array::from(1.5)];
    let f = function(grow);
    check_grads(&f, None, &args);
    // Straight-line: 1 -> 1.6 -> 2.5 -> 3.85 -> 5.875 -> 8.9125 -> 13.46875 (six steps).
    let straight = |x: Tensor, s: Tensor| {
        let mut c = x;
        for _ in 0..6 {
            c = &c * &s + 0.1;
        }
        c
    };
    let g = function(straight);
    for k in 0..2 {
        close_vecs(
            &grad_of(&f, &args, k),
            &grad_of(&g, &args, k),
            1e-12,
            "straight-line",
        );
    }
    // The loop does not run at all: the derivative is the identity.
    let none = [Array::from(20.0), Array::from(1.5)];
    assert_eq!(grad_of(&f, &none, 0), vec![1.0]);
    assert_eq!(grad_of(&f, &none, 1), vec![0.0]);
}

#[test]
fn eager_evaluation_outside_traces() {
    let x = Tensor::scalar(2.0);
    let r = newton_sqrt(x);
    close(r.to_f64().unwrap(), 2f64.sqrt(), 1e-15, "eager while");
    let (c, ys) = scan(
        |c, x| (vec![&c[0] + &x[0]], vec![&c[0] * &x[0]]),
        &[Tensor::scalar(1.0)],
        &[Tensor::from(vec![1.0, 2.0, 3.0])],
    );
    assert_eq!(c[0].to_f64().unwrap(), 7.0);
    assert_eq!(ys[0].to_array().unwrap().to_f64_vec(), vec![1.0, 4.0, 12.0]);
}

#[test]
fn errors_are_recorded_not_panics() {
    // Branches returning different types.
    let f = function(|x: Tensor| {
        cond(
            &x.gt(0.0),
            |o| vec![o[0].clone()],
            |o| vec![o[0].broadcast_to(&[2])],
            std::slice::from_ref(&x),
        )[0]
        .clone()
    });
    let e = f.call_arrays(&[Array::from(1.0)]).unwrap_err();
    assert!(e.message.contains("branch"), "{}", e.message);
    // A while body returning the wrong carry type.
    let f = function(|x: Tensor| {
        while_loop(|c| c[0].lt(1.0), |c| vec![c[0].broadcast_to(&[3])], &[x])[0].clone()
    });
    let e = f.call_arrays(&[Array::from(0.0)]).unwrap_err();
    assert!(e.message.contains("carry"), "{}", e.message);
    // A non-scalar predicate.
    let f = function(|x: Tensor| {
        cond(
            &x.gt(0.0),
            |o| vec![o[0].clone()],
            |o| vec![o[0].clone()],
            std::slice::from_ref(&x),
        )[0]
        .clone()
    });
    let e = f.call_arrays(&[Array::from(vec![1.0, 2.0])]).unwrap_err();
    assert!(e.message.contains("predicate"), "{}", e.message);
}

#[test]
fn second_order_reverse_through_cond_and_empty_loops() {
    let dd: f64 = grad(grad(|x: Tensor| cond_f(x, Tensor::scalar(1.3))))
        .call(0.7)
        .unwrap();
    close(dd, -(0.7f64.sin()) * 1.3, 1e-14, "d²/dx² sin(x)·y");
    let empty = |x: Tensor| fori_loop(3, 3, |_, c| vec![c[0].sin()], &[x])[0].clone();
    let d: f64 = grad(empty).call(0.5).unwrap();
    assert_eq!(d, 1.0);
}

/// Checks `grad(grad(f).wrt(i)).wrt(j)` for every pair of (scalar) arguments against central
/// differences of the first derivative and against forward-over-reverse (`hessian`), and that
/// its graph verifies and evaluates under the interpreter; returns the second derivatives,
/// row-major.
#[track_caller]
fn check_reverse_over_reverse(f: &Function, args: &[Array]) -> Vec<f64> {
    let n = args.len();
    let tys: Vec<Type> = args.iter().map(Array::ty).collect();
    let all: Vec<usize> = (0..n).collect();
    let h = hessian(f).wrt(all).call_arrays(args).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let gi = grad(f).wrt(i).function();
        for j in 0..n {
            let gg = grad(&gi).wrt(j);
            let g = gg.specialize(&tys).unwrap().graph;
            g.verify().unwrap();
            let v = ferrax_ir::interp::eval(&g, args).unwrap()[0]
                .to_scalar()
                .unwrap();
            let what = format!("d/dx{j} d/dx{i}");
            close(v, fd_grad(&gi, args, j)[0], 1e-6, &format!("fd, {what}"));
            let hv = h[i * n + j].to_scalar().unwrap();
            close(v, hv, 1e-12, &format!("hessian, {what}"));
            out.push(v);
        }
    }
    out
}

#[test]
fn reverse_over_reverse_through_a_1000_iteration_while_loop() {
    let dd: f64 = grad(grad(newton_sqrt)).call(2.0).unwrap();
    close(
        dd,
        -0.25 * 2f64.powf(-1.5),
        1e-12,
        "second derivative of sqrt at 2",
    );
    let h: f64 = hessian(newton_sqrt).call(2.0).unwrap();
    close(dd, h, 1e-14, "reverse over reverse vs forward over reverse");
    // The transpose is again a reverse fold that can be differentiated and transposed.
    let ddd: f64 = grad(grad(grad(newton_sqrt))).call(2.0).unwrap();
    close(ddd, 0.375 * 2f64.powf(-2.5), 1e-12, "third derivative");
    check_reverse_over_reverse(&function(newton_sqrt), &[Array::from(2.0)]);
    // d/dy d/dx: only the cotangent entering the reverse fold depends on y.
    let scaled = |x: Tensor, y: Tensor| (newton_sqrt(x) * y).sin();
    check_reverse_over_reverse(&function(scaled), &[Array::from(2.0), Array::from(0.7)]);
}
/// `grow` (six iterations at x = 1, s = 1.5) unrolled.
fn grow_straight(x: Tensor, s: Tensor) -> Tensor {
    let mut c = x;
    for _ in 0..6 {
        c = &c * &s + 0.1;
    }
    c
}

/// A data-dependent trip count with a non-linear body and a second carry that accumulates.
fn wobble(x: Tensor, s: Tensor) -> Tensor {
    let out = while_loop(
        |c| c[0].lt(10.0),
        |c| {
            vec![
                &c[0] * &s + c[0].sin() * 0.3,
                &c[1] + &c[0] * &c[0] * &s * 0.01,
            ]
        },
        &[x, Tensor::scalar(0.0)],
    );
    &out[0] + out[1].tanh()
}

#[test]
fn reverse_over_reverse_with_a_data_dependent_trip_count() {
    let args = [Array::from(1.0), Array::from(1.5)];
    let dd = check_reverse_over_reverse(&function(grow), &args);
    let want = check_reverse_over_reverse(&function(grow_straight), &args);
    close_vecs(&dd, &want, 1e-12, "straight-line");
    // c_n = s^n x + 0.1 (s^(n-1) + .. + 1) is linear in x.
    assert_eq!(dd[0], 0.0);
    // An output that is not linear in the loop's result: the cotangent entering the reverse
    // fold depends on the inputs.
    let sin_grow = |x: Tensor, s: Tensor| (grow(x.clone(), s) * x).sin();
    let sin_straight = |x: Tensor, s: Tensor| (grow_straight(x.clone(), s) * x).sin();
    close_vecs(
        &check_reverse_over_reverse(&function(sin_grow), &args),
        &check_reverse_over_reverse(&function(sin_straight), &args),
        1e-12,
        "straight-line, sin",
    );
    check_reverse_over_reverse(&function(wobble), &[Array::from(0.7), Array::from(1.3)]);
    // The loop does not run: the second derivatives are zero.
    let none = [Array::from(20.0), Array::from(1.5)];
    assert_eq!(
        check_reverse_over_reverse(&function(grow), &none),
        vec![0.0; 4]
    );
}

#[test]
fn reverse_over_forward_through_a_while_loop() {
    let tangent = |a: Tensor| jvp(newton_sqrt).apply(&[a, Tensor::scalar(1.0)])[1].clone();
    let d: f64 = grad(tangent).call(2.0).unwrap();
    close(
        d,
        -0.25 * 2f64.powf(-1.5),
        1e-12,
        "second derivative of sqrt at 2",
    );
}
