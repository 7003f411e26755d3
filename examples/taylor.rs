//! Taylor mode: the derivatives of tanh at 0.5 up to order 20 by `jet` (one graph, O(k²)
//! equations) against nested `grad` up to order 10 (a graph that doubles with every order),
//! both against the closed form; then exp(sin x) and a small MLP by both routes, and the
//! compile and call times of the jitted order-20 jet.

use ferrax::prelude::*;
use std::time::Instant;

/// The k-th derivative of tanh at `x` from the polynomial recurrence of its derivatives,
/// `P₀(y) = y`, `P_{k+1}(y) = (1 − y²)·P_k'(y)`, with exact integer coefficients, evaluated at
/// `y = tanh(x)` in double-double arithmetic (so the cancellation between the large alternating
/// coefficients costs nothing).
pub fn tanh_closed_form(k: usize, x: f64) -> f64 {
    let mut p: Vec<i128> = vec![0, 1];
    for _ in 0..k {
        let dp: Vec<i128> = (1..p.len()).map(|i| i as i128 * p[i]).collect();
        let mut q = vec![0i128; dp.len() + 2];
        for (i, c) in dp.iter().enumerate() {
            q[i] += c;
            q[i + 2] -= c;
        }
        p = q;
    }
    let y = x.tanh();
    // Horner's rule in double-double: (hi, lo) pairs with error-free products and sums.
    let two_sum = |a: f64, b: f64| {
        let s = a + b;
        let bb = s - a;
        (s, (a - (s - bb)) + (b - bb))
    };
    let mut acc = (0.0f64, 0.0f64);
    for &c in p.iter().rev() {
        let hi = acc.0 * y;
        let lo = acc.0.mul_add(y, -hi) + acc.1 * y;
        let ch = c as f64;
        let cl = (c - ch as i128) as f64;
        let (s, e) = two_sum(hi, ch);
        acc = two_sum(s, e + lo + cl);
    }
    acc.0 + acc.1
}

/// The k-th derivative of tanh at 0.5 by `derivatives` (jet), and the size of the graph that
/// computes every order up to k.
pub fn jet_tanh(k: usize) -> ferrax::Result<(f64, usize)> {
    let d = derivatives(|x: Tensor| x.tanh(), k);
    let v: Vec<f64> = d.call(0.5)?;
    Ok((v[k], d.num_eqns()?))
}

/// The k-th derivative of tanh at 0.5 by k nested `grad`s, and the size of its graph.
pub fn nested_tanh(k: usize) -> ferrax::Result<(f64, usize)> {
    let mut d = function(|x: Tensor| x.tanh());
    for _ in 0..k {
        d = grad(&d).function();
    }
    Ok((d.call(0.5)?, d.num_eqns()?))
}

/// exp(sin x).
pub fn exp_sin(x: Tensor) -> Tensor {
    x.sin().exp()
}

/// A small MLP from one input to one output: 1 → 8 (tanh) → 8 (logistic) → 1, fixed weights.
pub fn mlp(x: Tensor) -> Tensor {
    let w = |n: usize, m: usize, s: f64| {
        let v: Vec<f64> = (0..n * m).map(|i| ((i as f64 + 1.0) * s).sin()).collect();
        Tensor::from(Array::from_f64(vec![n, m], v).expect("weights"))
    };
    let h = x.reshape(&[1, 1]).matmul(&w(1, 8, 0.7)).tanh();
    let h = h.matmul(&w(8, 8, 1.3)).logistic();
    h.matmul(&w(8, 1, 2.1)).reshape(&[])
}

/// Derivatives of `f` at `x` up to order `k` by jet and by nested grad; the largest relative
/// difference over the orders, and the two graph sizes at order k.
pub fn compare(f: fn(Tensor) -> Tensor, x: f64, k: usize) -> ferrax::Result<(f64, usize, usize)> {
    let dj = derivatives(f, k);
    let by_jet: Vec<f64> = dj.call(x)?;
    let mut d = function(f);
    let mut worst = 0.0f64;
    for &want in &by_jet[1..] {
        d = grad(&d).function();
        let got: f64 = d.call(x)?;
        worst = worst.max((got - want).abs() / want.abs().max(1e-300));
    }
    Ok((worst, dj.num_eqns()?, d.num_eqns()?))
}

fn main() -> ferrax::Result<()> {
    for k in 1..=20 {
        let (v, n) = jet_tanh(k)?;
        let exact = tanh_closed_form(k, 0.5);
        let rel = (v - exact).abs() / exact.abs().max(1e-300);
        println!("jet d{k} tanh(0.5) = {v:.17e} ({n} equations)   closed form {exact:.17e}, rel. error {rel:.1e}");
    }
    println!();
    for k in 1..=10 {
        let (v, n) = nested_tanh(k)?;
        println!("nested d{k} tanh(0.5) = {v:.17e} ({n} equations)");
    }
    println!();
    for (name, f, x) in [
        ("exp_sin", exp_sin as fn(Tensor) -> Tensor, 0.3),
        ("mlp", mlp, 0.4),
    ] {
        let (worst, nj, nn) = compare(f, x, 8)?;
        let d: Vec<f64> = derivatives(f, 20).call(x)?;
        println!(
            "{name}: d8 at {x} by jet = {:.15e}, d20 = {:.15e}",
            d[8], d[20]
        );
        println!("{name}_jet_vs_nested_max_rel_diff = {worst:.1e}   (orders 1..8; graphs at order 8: jet {nj}, nested grad {nn})");
    }
    println!();
    // A fresh function, so nothing is cached: trace + jet + simplify + compile + one call.
    let t0 = Instant::now();
    let f = jit(derivatives(|x: Tensor| x.tanh(), 20))?;
    let d: Vec<f64> = f.call(0.5)?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    let st = ferrax::jit_backend::stats();
    let t0 = Instant::now();
    let g = jit(jet(|x: Tensor| x.tanh(), 20))?;
    let mut series = vec![0.0; 20];
    series[0] = 1.0;
    let series = Array::from_f64(vec![20], series)?;
    let (_, s): (f64, Vec<f64>) = g.call((0.5, series.clone()))?;
    let first_jet_ms = t0.elapsed().as_secs_f64() * 1e3;
    let st2 = ferrax::jit_backend::stats();
    let jet_eqns = jet(|x: Tensor| x.tanh(), 20).num_eqns()?;
    assert!((s[19] - d[20]).abs() <= 1e-12 * d[20].abs());
    let n = 20_000;
    let t0 = Instant::now();
    for _ in 0..n {
        let _: Vec<f64> = f.call(0.5)?;
    }
    let per_call_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t0 = Instant::now();
    for _ in 0..n {
        let _: (f64, Vec<f64>) = g.call((0.5, series.clone()))?;
    }
    let per_call_jet_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "jit_derivatives_k20_first_call_ms = {first_ms:.2}   (specialise {:.2} ms, lower {:.2} ms, codegen {:.2} ms)",
        st.specialize_time.as_secs_f64() * 1e3,
        st.lower_time.as_secs_f64() * 1e3,
        st.codegen_time.as_secs_f64() * 1e3
    );
    println!("jit_derivatives_k20_per_call_us = {per_call_us:.2}");
    println!(
        "jit_jet_k20_first_call_ms = {first_jet_ms:.2}   (general series argument, {jet_eqns} equations; specialise {:.2} ms, lower {:.2} ms, codegen {:.2} ms)",
        (st2.specialize_time - st.specialize_time).as_secs_f64() * 1e3,
        (st2.lower_time - st.lower_time).as_secs_f64() * 1e3,
        (st2.codegen_time - st.codegen_time).as_secs_f64() * 1e3
    );
    println!("jit_jet_k20_per_call_us = {per_call_jet_us:.2}");
    Ok(())
}
