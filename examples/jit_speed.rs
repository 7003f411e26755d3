//! JIT speed: the gradient of sin(x)·exp(y)/log(z) compiled to native code, its compile time,
//! and its per-call time beside the same gradient written by hand in Rust, in one run.

#[path = "common/mod.rs"]
mod common;

use common::time_ns;
use ferrax::prelude::*;
use std::hint::black_box;
use std::time::Instant;

/// The gradient written by hand.
#[inline(never)]
fn hand_grad(x: f64, y: f64, z: f64) -> [f64; 3] {
    let (s, c) = x.sin_cos();
    let e = y.exp();
    let l = z.ln();
    [c * e / l, s * e / l, -s * e / (l * l * z)]
}

fn main() -> ferrax::Result<()> {
    // Trace, differentiate and compile: `jit` is lazy, so the work happens in `compiled()`.
    let t0 = Instant::now();
    let f = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
    let df = grad(f).wrt((0, 1, 2));
    let compiled = jit(&df)?.compiled()?;
    let compile_us = t0.elapsed().as_secs_f64() * 1e6;

    let native = compiled.as_fn3_n::<f64, 3>()?;
    let g = native.call_multi(1.0, 2.0, 3.0);
    println!("grad = [{}, {}, {}]", g[0], g[1], g[2]);
    println!("compile_us = {compile_us:.0}");

    // Inputs pass through black_box so neither version is constant-folded.
    let call_ns = time_ns(|| {
        let r = native.call_multi(black_box(1.0), black_box(2.0), black_box(3.0));
        r[0] + r[1] + r[2]
    });
    let hand_ns = time_ns(|| {
        let r = hand_grad(black_box(1.0), black_box(2.0), black_box(3.0));
        r[0] + r[1] + r[2]
    });
    println!("call_ns = {call_ns:.1}");
    println!("hand_ns = {hand_ns:.1}");
    println!("ratio = {:.2}", call_ns / hand_ns);
    Ok(())
}
