//! Nested derivatives: the k-th derivative (grad applied k times) of elementary functions
//! against closed forms, and the size of the simplified graphs (no expression swell).

mod common;

use common::*;
use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::{Builder, Graph, Value};
use ferrax_transforms::grad_graph;

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
        println!("size d{} tanh = {s} (JAX optimized HLO: {})", k + 1, jax_hlo[k]);
    }
    for (k, s) in sizes.iter().enumerate() {
        assert!(*s <= jax_hlo[k], "d{} tanh has {s} equations, more than {}", k + 1, jax_hlo[k]);
    }
}
