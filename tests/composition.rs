//! Compositions of transforms that users combine: vjp of jvp, grad of
//! value_and_grad, grad through a Jacobian, jvp of grad (Hessian-vector products), and
//! Jacobians of Jacobians — each checked against closed forms.

use ferrax::prelude::*;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
}

#[test]
fn jvp_of_grad_is_a_hessian_vector_product() {
    // f(x, y) = x²y + y³; H = [[2y, 2x], [2x, 6y]].
    let g = grad(|x: Tensor, y: Tensor| x.clone() * x * y.clone() + y.powi(3)).wrt((0, 1));
    let hvp = jvp(&g);
    let (gx, gy, hx, hy): (f64, f64, f64, f64) = hvp.call((1.5, 2.0, 1.0, -1.0)).unwrap();
    close(gx, 2.0 * 1.5 * 2.0);
    close(gy, 1.5 * 1.5 + 3.0 * 4.0);
    // H · (1, -1) with H = [[2y, 2x], [2x, 6y]] at (x, y) = (1.5, 2).
    let (tx, ty) = (1.0, -1.0);
    close(hx, 2.0 * 2.0 * tx + 2.0 * 1.5 * ty);
    close(hy, 2.0 * 1.5 * tx + 6.0 * 2.0 * ty);
}

#[test]
fn vjp_of_jvp() {
    // jvp(sin) at (x, t) = (sin x, cos(x)·t); its vjp with cotangents (a, b) gives
    // d/dx = a·cos x − b·sin(x)·t and d/dt = b·cos x.
    let v = vjp(jvp(|x: Tensor| x.sin()));
    let (x, t, a, b) = (0.7f64, 2.0, 0.5, -1.5);
    let (y, ty, cx, ct): (f64, f64, f64, f64) = v.call((x, t, a, b)).unwrap();
    close(y, x.sin());
    close(ty, x.cos() * t);
    close(cx, a * x.cos() - b * x.sin() * t);
    close(ct, b * x.cos());
}

#[test]
fn grad_of_value_and_grad() {
    // value_and_grad(x³) = (x³, 3x²); grad of its second output through a wrapper is 6x.
    let vg = value_and_grad(|x: Tensor| x.powi(3));
    let second = function(move |x: Tensor| vg.apply(&[x])[1].clone());
    let d: f64 = grad(second).call(2.0).unwrap();
    close(d, 12.0);
}

#[test]
fn grad_through_a_jacobian() {
    // J of [x², x·y] w.r.t. (x, y) is ([2x, y], [0, x]); the sum of its entries is 3x + y.
    let j = jacfwd(|x: Tensor, y: Tensor| stack(&[x.clone() * x.clone(), x * y])).wrt((0, 1));
    let total = function(move |x: Tensor, y: Tensor| {
        let parts = j.apply(&[x, y]);
        parts[0].sum_all() + parts[1].sum_all()
    });
    let (dx, dy): (f64, f64) = grad(total).wrt((0, 1)).call((1.0, 2.0)).unwrap();
    close(dx, 3.0);
    close(dy, 1.0);
}

#[test]
fn jacobian_of_jacobian_equals_hessian() {
    let f = |x: Tensor| (x.sin() * x.clone()).sum_all();
    let x = Array::from(vec![0.3, -1.2, 2.0]);
    let h1: Vec<f64> = hessian(f).call(x.clone()).unwrap();
    let h2: Vec<f64> = jacrev(jacrev(f)).call(x.clone()).unwrap();
    let h3: Vec<f64> = jacfwd(jacfwd(f)).call(x).unwrap();
    for ((a, b), c) in h1.iter().zip(&h2).zip(&h3) {
        close(*a, *b);
        close(*a, *c);
    }
    // d²/dx² (x sin x) = 2 cos x − x sin x on the diagonal, 0 elsewhere.
    for (i, xi) in [0.3f64, -1.2, 2.0].iter().enumerate() {
        close(h1[i * 3 + i], 2.0 * xi.cos() - xi * xi.sin());
    }
    assert_eq!(h1[1], 0.0);
}

#[test]
fn eighth_derivative_of_sin_times_exp() {
    // (sin x · eˣ)⁽ᵏ⁾ = 2^{k/2} eˣ sin(x + kπ/4); for k = 8 that is 16 eˣ sin x.
    let mut d = function(|x: Tensor| x.sin() * x.exp());
    for _ in 0..8 {
        d = grad(&d).function();
    }
    let x = 0.4f64;
    let v: f64 = d.call(x).unwrap();
    assert!((v - 16.0 * x.exp() * x.sin()).abs() < 1e-9 * 16.0, "{v}");
}
