//! Taylor mode through the JIT: `jit(jet(f))`, `jit(derivatives(f, k))`, `jit(laplacian(f))`
//! and `jit(vmap(jet(f)))` compiled in precise math and compared with the interpreter bit for
//! bit (for graphs without matrix products) on functions with control flow; and `grad` of a
//! function that calls a jitted-shape jet, compiled.

use ferrax::ir::{cond, fori_loop, scan};
use ferrax::prelude::*;
use ferrax::MathMode;

fn precise<M>(f: impl ferrax::ir::IntoFunction<M>) -> Jit {
    jit_with(
        f,
        JitOptions {
            math: MathMode::Precise,
            ..JitOptions::default()
        },
    )
    .unwrap()
}

/// Compiles `f` and checks every output against the interpreter, bit for bit.
fn same_as_interpreter(f: &Function, args: &[Array]) {
    let want = f.call_arrays(args).unwrap();
    let got = precise(f).call_arrays(args).unwrap();
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        assert!(
            w.bits_eq(g),
            "jit {:?} vs interpreter {:?}",
            g.to_f64_vec(),
            w.to_f64_vec()
        );
    }
}

/// A function touching control flow: a cond, a fori_loop and a scan.
fn wiggly(x: Tensor) -> Tensor {
    let p = x.gt(0.0);
    let c = cond(
        &p,
        |o| vec![o[0].sin() * 1.5],
        |o| vec![o[0].exp()],
        std::slice::from_ref(&x),
    )
    .remove(0);
    let l = fori_loop(0, 3, |_, c| vec![c[0].tanh() + &c[0] * 0.5], &[c]).remove(0);
    let (c, ys) = scan(
        |c, e| (vec![&c[0] * &e[0]], vec![c[0].cos()]),
        &[l],
        &[Tensor::from(vec![0.5, -1.0, 2.0])],
    );
    c[0].clone() + ys[0].sum_all()
}

#[test]
fn jit_of_jet_matches_the_interpreter() {
    let j = jet(wiggly, 5);
    let series = Array::from_f64(vec![5], vec![1.0, -0.5, 0.25, 0.1, 2.0]).unwrap();
    for x in [0.4, -0.3] {
        same_as_interpreter(&j, &[Array::from(x), series.clone()]);
    }
    same_as_interpreter(&derivatives(wiggly, 12), &[Array::from(0.4)]);
    same_as_interpreter(&derivatives(|x: Tensor| x.tanh(), 20), &[Array::from(0.5)]);
    same_as_interpreter(
        &taylor_coefficients(|x: Tensor| x.atan() * x.erf(), 9),
        &[Array::from(0.3)],
    );
}

#[test]
fn jit_of_vmap_of_jet_matches_the_interpreter() {
    let v = vmap(jet(|x: Tensor| x.sin().exp() / (x.clone() * x + 1.0), 4)).function();
    let xs = Array::from_f64(vec![3], vec![0.1, -0.7, 1.3]).unwrap();
    let ss = Array::from_f64(vec![3, 4], (0..12).map(|i| (i as f64).cos()).collect()).unwrap();
    same_as_interpreter(&v, &[xs, ss]);
}

#[test]
fn jit_of_laplacian_matches_the_interpreter_and_the_hessian() {
    let f = |x: Tensor| (x.sin() * x.exp()).sum_all() + x.tanh().prod(&[0]);
    let x = Array::from_f64(vec![4], vec![0.3, -0.2, 0.9, 0.5]).unwrap();
    let l = laplacian(f);
    same_as_interpreter(&l, std::slice::from_ref(&x));
    let lap: f64 = precise(&l).call(x.clone()).unwrap();
    let h = hessian(f).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    let tr: f64 = (0..4).map(|i| h[i * 4 + i]).sum();
    assert!(
        (lap - tr).abs() <= 1e-12 * tr.abs().max(1.0),
        "{lap} vs {tr}"
    );
}

#[test]
fn grad_of_a_loss_through_jet_compiles() {
    // (u'' − u)² for u(x) = sin(w·x) at x = 0.2, with u'' from a jet of order 2.
    let loss = |w: Tensor| {
        let u = {
            let w = w.clone();
            move |x: Tensor| (x * &w).sin()
        };
        let outs = jet(function(u), 2).apply(&[Tensor::scalar(0.2), Tensor::from(vec![1.0, 0.0])]);
        let u2 = outs[1].slice(&[1], &[2], &[1]).reshape(&[]);
        (u2 - &outs[0]).square()
    };
    let g = grad(loss).function();
    same_as_interpreter(&g, &[Array::from(0.9)]);
    // d/dw of (−(w²+1) sin(0.2 w))² = 2 s·ds with s = −(w²+1) sin(0.2w).
    let w = 0.9f64;
    let s = -(w * w + 1.0) * (0.2 * w).sin();
    let ds = -2.0 * w * (0.2 * w).sin() - (w * w + 1.0) * 0.2 * (0.2 * w).cos();
    let got: f64 = precise(&g).call(w).unwrap();
    assert!(
        (got - 2.0 * s * ds).abs() < 1e-13,
        "{got} vs {}",
        2.0 * s * ds
    );
}
