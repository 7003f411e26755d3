//! Nested derivatives: the k-th derivative (grad applied k times) of elementary functions
//! against closed forms, and the size of the simplified graphs (no expression swell).

mod common;

use common::*;
use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::{Builder, Graph, Value};
use ferrax_transforms::grad_graph;
use std::f64::consts::{FRAC_PI_2, FRAC_PI_4};

/// grad applied `k` times, each result verified.
fn nth_grads(g: &Graph, k: usize) -> Vec<Graph> {
    let mut out = vec![g.clone()];
    for _ in 0..k {
        let next = grad_graph(out.last().unwrap(), 1, &[0], false).unwrap();
        next.verify().unwrap();
        out.push(next);
    }
    out
}

fn unary_fn(op: UnaryOp) -> Graph {
    scalar_fn(|b: &mut Builder, x: Value| un(b, op, x))
}

#[test]
fn tanh_sizes_stay_below_jax() {
    let jax_hlo = [8, 12, 20, 40, 81, 171, 395, 971];
    let gs = nth_grads(&unary_fn(UnaryOp::Tanh), 8);
    let sizes: Vec<usize> = gs[1..].iter().map(|g| g.num_insts()).collect();
    for (k, s) in sizes.iter().enumerate() {
        println!(
            "size d{} tanh = {s} (JAX optimized HLO: {})",
            k + 1,
            jax_hlo[k]
        );
    }
    for (k, s) in sizes.iter().enumerate() {
        assert!(
            *s <= jax_hlo[k],
            "d{} tanh has {s} equations, more than {}",
            k + 1,
            jax_hlo[k]
        );
    }
}

/// Coefficients (ascending powers of y) of the k-th derivative of y(x) as a polynomial in y,
/// for a function whose derivative is the polynomial `dy` in y (tanh: 1 − y², logistic:
/// y − y²). Integer arithmetic in f64 is exact at these sizes.
fn derivative_polys(dy: &[f64], k: usize) -> Vec<Vec<f64>> {
    let mut polys = vec![vec![0.0, 1.0]];
    for _ in 0..k {
        let p = polys.last().unwrap();
        let dp: Vec<f64> = (1..p.len()).map(|i| i as f64 * p[i]).collect();
        let mut next = vec![0.0; dp.len() + dy.len()];
        for (i, a) in dp.iter().enumerate() {
            for (j, c) in dy.iter().enumerate() {
                next[i + j] += a * c;
            }
        }
        polys.push(next);
    }
    polys
}

fn horner(p: &[f64], y: f64) -> f64 {
    p.iter().rev().fold(0.0, |acc, c| acc * y + c)
}

fn check_derivatives(name: &str, g: &Graph, points: &[f64], exact: impl Fn(usize, f64) -> f64) {
    let gs = nth_grads(g, 8);
    for (k, gk) in gs.iter().enumerate().skip(1) {
        for &x in points {
            let got = run_scalars(gk, &[x])[0];
            close(got, exact(k, x), 1e-9, &format!("d{k} {name}({x})"));
        }
    }
}

const POINTS: [f64; 3] = [0.5, -1.3, 2.1];

#[test]
fn derivatives_of_sin_cos_exp_log() {
    check_derivatives("sin", &unary_fn(UnaryOp::Sin), &POINTS, |k, x| {
        (x + k as f64 * FRAC_PI_2).sin()
    });
    check_derivatives("cos", &unary_fn(UnaryOp::Cos), &POINTS, |k, x| {
        (x + k as f64 * FRAC_PI_2).cos()
    });
    check_derivatives("exp", &unary_fn(UnaryOp::Exp), &POINTS, |_, x| x.exp());
    check_derivatives("log", &unary_fn(UnaryOp::Log), &[0.5, 1.3, 2.1], |k, x| {
        let fact: f64 = (1..k).map(|i| i as f64).product();
        let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
        sign * fact / x.powi(k as i32)
    });
}

#[test]
fn derivatives_of_tanh_and_logistic() {
    let t = derivative_polys(&[1.0, 0.0, -1.0], 8);
    check_derivatives("tanh", &unary_fn(UnaryOp::Tanh), &POINTS, |k, x| {
        horner(&t[k], x.tanh())
    });
    let d4 = run_scalars(&nth_grads(&unary_fn(UnaryOp::Tanh), 4)[4], &[0.5])[0];
    close(d4, 3.952219563724583, 1e-12, "d4 tanh(0.5)");
    let s = derivative_polys(&[0.0, 1.0, -1.0], 8);
    check_derivatives("logistic", &unary_fn(UnaryOp::Logistic), &POINTS, |k, x| {
        horner(&s[k], 1.0 / (1.0 + (-x).exp()))
    });
}

#[test]
fn derivatives_of_sin_times_exp() {
    let g = scalar_fn(|b, x| {
        let s = un(b, UnaryOp::Sin, x);
        let e = un(b, UnaryOp::Exp, x);
        bin(b, BinaryOp::Mul, s, e)
    });
    check_derivatives("sin·exp", &g, &POINTS, |k, x| {
        2f64.powf(k as f64 / 2.0) * x.exp() * (x + k as f64 * FRAC_PI_4).sin()
    });
    let sizes: Vec<usize> = nth_grads(&g, 8)[1..]
        .iter()
        .map(|g| g.num_insts())
        .collect();
    println!("sizes of d1..d8 sin(x)·exp(x): {sizes:?}");
}
