//! custom_jvp and custom_vjp: the user's rule is used (a deliberately different derivative is
//! returned), forward and reverse mode, composition to second order, the forward-mode error
//! of custom_vjp, and rules inside control flow.

mod common;

use common::close;
use ferrax_ir::control_api::scan;
use ferrax_ir::{function, Array, Function, Tensor};
use ferrax_transforms::api::{custom_jvp, custom_vjp, grad, hessian, jacfwd, jvp, vjp};

/// A ReLU whose derivative is the seed's: 1 where x > 0, else 0.
fn relu() -> Function {
    custom_jvp(
        |x: Tensor| x.relu(),
        |p, t| {
            let x = &p[0];
            (vec![x.relu()], vec![&t[0] * x.gt(0.0).select(1.0, 0.0)])
        },
    )
}

#[test]
fn custom_relu_gradient() {
    let r = relu();
    let f = move |x: Tensor| r.apply1(&[x]).sum_all();
    let d: Vec<f64> = grad(f)
        .call(Array::from(vec![-1.0, -0.5, 0.5, 1.0]))
        .unwrap();
    assert_eq!(d, vec![0.0, 0.0, 1.0, 1.0]);
    let d0: f64 = grad(relu()).call(0.0).unwrap();
    assert_eq!(d0, 0.0);
}

/// sin with a deliberately wrong derivative, 3·cos, so that tests see which rule ran.
fn odd_sin() -> Function {
    custom_jvp(
        |x: Tensor| x.sin(),
        |p, t| (vec![p[0].sin()], vec![&t[0] * p[0].cos() * 3.0]),
    )
}

#[test]
fn custom_jvp_rule_is_used_in_both_modes_and_to_second_order() {
    let x = 0.4f64;
    let d: f64 = grad(odd_sin()).call(x).unwrap();
    close(d, 3.0 * x.cos(), 1e-15, "reverse");
    let (v, t): (f64, f64) = jvp(odd_sin()).call((x, 2.0)).unwrap();
    assert_eq!(v, x.sin());
    close(t, 6.0 * x.cos(), 1e-15, "forward");
    // Higher derivatives differentiate the rule: d/dx 3cos(x) = -3 sin(x).
    let dd: f64 = grad(grad(odd_sin())).call(x).unwrap();
    close(dd, -3.0 * x.sin(), 1e-15, "reverse over reverse");
    let h: f64 = hessian(odd_sin()).call(x).unwrap();
    close(h, -3.0 * x.sin(), 1e-15, "forward over reverse");
    let s = odd_sin();
    let inner = move |y: Tensor| s.apply1(&[y.clone() * y]);
    let d: f64 = grad(inner).call(x).unwrap();
    close(
        d,
        3.0 * (x * x).cos() * 2.0 * x,
        1e-15,
        "chain rule around the rule",
    );
}

/// log(1 + exp(x)) written stably, with the gradient sigmoid(x) from the residual x.
fn softplus() -> Function {
    let value = |x: &Tensor| x.maximum(0.0) + (-x.abs()).exp().log1p();
    custom_vjp(
        move |x: Tensor| value(&x),
        move |p| (vec![value(&p[0])], vec![p[0].clone()]),
        |r, ct| vec![&ct[0] * r[0].logistic()],
    )
}

#[test]
fn custom_vjp_softplus_stays_finite() {
    let d: f64 = grad(softplus()).call(1000.0).unwrap();
    assert_eq!(d, 1.0);
    let naive: f64 = grad(|x: Tensor| (x.exp() + 1.0).ln()).call(1000.0).unwrap();
    assert!(naive.is_nan(), "the naive gradient is {naive}");
    // Second order differentiates bwd: sigmoid'(0) = 1/4.
    let dd: f64 = grad(grad(softplus())).call(0.0).unwrap();
    close(dd, 0.25, 1e-15, "second derivative");
    let h: f64 = hessian(softplus()).call(0.0).unwrap();
    close(h, 0.25, 1e-15, "hessian (forward over reverse)");
    let (v, c): (f64, f64) = vjp(softplus()).call((0.0, 2.0)).unwrap();
    close(v, 2f64.ln(), 1e-15, "value");
    close(c, 1.0, 1e-15, "vjp");
}

#[test]
fn custom_vjp_rule_is_used_and_forward_mode_is_an_error() {
    let f = custom_vjp(
        |x: Tensor| x.square(),
        |p| (vec![p[0].square()], vec![p[0].clone()]),
        |r, ct| vec![&ct[0] * &r[0] * 7.0],
    );
    let d: f64 = grad(&f).call(2.0).unwrap();
    assert_eq!(d, 14.0);
    let e = jvp(&f).call::<_, (f64, f64)>((2.0, 1.0)).unwrap_err();
    assert!(e.message.contains("custom_vjp"), "{}", e.message);
    let e = jacfwd(&f).call::<_, f64>(2.0).unwrap_err();
    assert!(e.message.contains("custom_vjp"), "{}", e.message);
}

#[test]
fn custom_vjp_with_a_nonlinear_bwd_clips_gradients() {
    let clip = custom_vjp(
        |x: Tensor| x,
        |p| (vec![p[0].clone()], vec![]),
        |_, ct| vec![ct[0].maximum(-1.0).minimum(1.0)],
    );
    let f = move |x: Tensor| clip.apply1(std::slice::from_ref(&x)) * 10.0;
    let d: f64 = grad(f).call(3.0).unwrap();
    assert_eq!(d, 1.0);
}

#[test]
fn custom_rules_inside_scan_and_with_captures() {
    let s = odd_sin();
    let f = move |c0: Tensor, xs: Tensor| {
        let (c, _) = scan(
            |c, x| (vec![s.apply1(&[&c[0] + &x[0]])], vec![]),
            &[c0],
            &[xs],
        );
        c[0].clone()
    };
    let f = function(f);
    let args = [Array::from(0.2), Array::from(vec![0.1, -0.3])];
    // Chain rule with the rule's derivative 3·cos at each step.
    let c1 = (0.2f64 + 0.1).sin();
    let want = 3.0 * (c1 - 0.3).cos() * 3.0 * (0.2f64 + 0.1).cos();
    let d = grad(&f).call_arrays(&args).unwrap()[0].to_scalar().unwrap();
    close(d, want, 1e-14, "through scan");
    // A rule that closes over a tracer of the enclosing function.
    let g = |x: Tensor, k: Tensor| {
        let kk = k.clone();
        let scaled = custom_jvp(
            move |y: Tensor| &y * &kk,
            |p, t| (vec![p[0].clone()], vec![t[0].clone()]),
        );
        scaled.apply1(&[x]) + k
    };
    let e = grad(g).wrt(1).call::<_, f64>((1.0, 2.0)).unwrap_err();
    assert!(e.message.contains("custom_jvp"), "{}", e.message);
}
