//! Loop rerolling, measured: the gradient of a chain of N steps `x = sin(x)·1.0001 + 0.1`
//! (scalar and f64[16]) compiled with and without rerolling, interleaved in one run.
//!
//! For each N and input type it prints the graph's size (unrolled and rerolled), the machine
//! code size and compile time of both, checks that both give the interpreter's bits, and
//! times a call (per step) in alternating rounds. Run with
//! `cargo run --release --example reroll -- [N ...]` (default 1000 10000 50000).

use ferrax::jit_backend::{compile, reroll, Compiled, JitOptions};
use ferrax::prelude::*;
use std::time::Instant;

/// Nanoseconds per call of `c` on `x`: the fastest of 15 batches of about 5 ms each (on a
/// machine shared with other work, the fastest batch is the one least disturbed).
fn time_call(c: &Compiled, x: &Array, outs: &mut [Array]) -> ferrax::Result<f64> {
    let t = Instant::now();
    c.call_into(&[x], outs)?;
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.005 / once) as usize).clamp(1, 1_000_000);
    let mut samples = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..reps {
            c.call_into(&[x], outs)?;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e9 / reps as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[0])
}

/// The scalar chain's gradient written by hand: the forward pass keeps `cos` of every step,
/// the backward pass multiplies them in reverse.
fn hand_grad(x0: f64, n: usize, res: &mut Vec<f64>) -> f64 {
    res.clear();
    let mut x = x0;
    for _ in 0..n {
        let (s, c) = x.sin_cos();
        res.push(c);
        x = s * 1.0001 + 0.1;
    }
    let mut ct = 1.0;
    for &c in res.iter().rev() {
        ct = ct * 1.0001 * c;
    }
    ct
}

/// Nanoseconds per call of `f`: the fastest of 15 batches of about 5 ms each.
fn time_fn(mut f: impl FnMut() -> f64) -> f64 {
    let t = Instant::now();
    let mut sink = f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.005 / once) as usize).clamp(1, 1_000_000);
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..reps {
            sink += f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / reps as f64);
    }
    std::hint::black_box(sink);
    best
}

fn main() -> ferrax::Result<()> {
    let mut ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    if ns.is_empty() {
        ns = vec![1000, 10_000, 50_000];
    }
    for &n in &ns {
        for vec in [false, true] {
            let f = move |x: Tensor| {
                let mut x = x;
                for _ in 0..n {
                    x = x.sin() * 1.0001 + 0.1;
                }
                if vec {
                    x.sum(&[0])
                } else {
                    x
                }
            };
            let ty = if vec {
                Type::new(DType::F64, &[16])
            } else {
                Type::scalar(DType::F64)
            };
            let graph = grad(f).specialize(std::slice::from_ref(&ty))?.graph;
            let t = Instant::now();
            let rolled = reroll(&graph)?;
            let reroll_ms = t.elapsed().as_secs_f64() * 1e3;
            if std::env::var_os("REROLL_PRINT").is_some() {
                if let Some(g) = &rolled {
                    println!("{}", g.to_text());
                }
            }
            let rolled_insts = rolled.as_ref().map_or(graph.num_insts(), |g| g.num_insts());
            let on = JitOptions::default();
            let off = JitOptions {
                reroll: false,
                ..JitOptions::default()
            };
            let t = Instant::now();
            let c_on = compile(&graph, &on)?;
            let ms_on = t.elapsed().as_secs_f64() * 1e3;
            // `REROLL_ONLY=1` compiles and times the rerolled code only (for profiling).
            let only = std::env::var_os("REROLL_ONLY").is_some();
            let t = Instant::now();
            let c_off = compile(&graph, if only { &on } else { &off })?;
            let ms_off = t.elapsed().as_secs_f64() * 1e3;
            let x = if vec {
                Array::from_f64([16], (0..16).map(|i| 0.1 * i as f64 - 0.7).collect())?
            } else {
                Array::scalar(DType::F64, 0.7)
            };
            let want = ferrax::ir::interp::eval(&graph, std::slice::from_ref(&x))?;
            let mut outs = vec![Array::zeros(&want[0].ty())?];
            for c in [&c_on, &c_off] {
                c.call_into(&[&x], &mut outs)?;
                assert!(
                    outs[0].bits_eq(&want[0]),
                    "the JIT disagrees with the interpreter"
                );
            }
            let kind = if vec { "f64[16]" } else { "scalar " };
            println!(
                "N = {n} {kind} insts = {} -> {rolled_insts}  code_kib: off = {:.0} on = {:.1}  \
                 compile_ms: off = {ms_off:.0} on = {ms_on:.1} (reroll {reroll_ms:.1})",
                graph.num_insts(),
                c_off.code_bytes() as f64 / 1024.0,
                c_on.code_bytes() as f64 / 1024.0,
            );
            let (mut t_on, mut t_off) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                t_off.push(time_call(&c_off, &x, &mut outs)? / n as f64);
                t_on.push(time_call(&c_on, &x, &mut outs)? / n as f64);
            }
            if !vec {
                let mut res = Vec::with_capacity(n);
                let hand = time_fn(|| hand_grad(std::hint::black_box(0.7), n, &mut res));
                println!(
                    "    hand-written gradient: {:.1} ns per step",
                    hand / n as f64
                );
            }
            let show = |v: &[f64]| {
                v.iter()
                    .map(|t| format!("{t:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "    ns per step: off = [{}] on = [{}]",
                show(&t_off),
                show(&t_on)
            );
        }
    }
    Ok(())
}
