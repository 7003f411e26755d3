//! Nested derivatives: grad applied k times to tanh, k = 1..8, with the value at 0.5, the size
//! of each simplified graph beside JAX's, and the time to trace and transform the 8th.

use ferrax::prelude::*;
use std::time::Instant;

/// JAX's optimised-HLO op counts for grad^k(tanh), k = 1..8 (bench/compare/WORKLOADS.md).
const JAX_HLO: [usize; 8] = [8, 12, 20, 40, 81, 171, 395, 971];
/// JAX's jaxpr equation counts for the same.
const JAX_JAXPR: [usize; 8] = [5, 15, 34, 75, 172, 417, 1066, 2847];

fn main() -> ferrax::Result<()> {
    let mut d = function(|x: Tensor| x.tanh());
    for k in 1..=8 {
        d = grad(&d).function();
        let v: f64 = d.call(0.5)?;
        println!("d{k} tanh(0.5) = {v}");
    }
    println!();
    let mut d = function(|x: Tensor| x.tanh());
    for k in 1..=8 {
        d = grad(&d).function();
        let n = d.num_eqns()?;
        println!(
            "size d{k} tanh = {n}   (JAX: optimised HLO {}, jaxpr {})",
            JAX_HLO[k - 1],
            JAX_JAXPR[k - 1]
        );
    }
    // Fresh functions, so nothing is cached: trace + 8 nested transforms + simplification.
    let t0 = Instant::now();
    let mut d = function(|x: Tensor| x.tanh());
    for _ in 0..8 {
        d = grad(&d).function();
    }
    let n = d.num_eqns()?;
    let us = t0.elapsed().as_secs_f64() * 1e6;
    println!();
    println!(
        "trace_transform_us d8 = {us:.0}   ({n} equations; JAX needs about 0.6 s to trace it)"
    );
    Ok(())
}
