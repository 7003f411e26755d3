//! Scale: the cost of tracing, differentiating and compiling a long straight-line chain, and of
//! calling the result, as the chain grows.
//!
//! The chain is `x = sin(x) * 1.0001 + 0.1` repeated N times (3 equations per step), on a
//! scalar and on an f64[16] input (summed at the end, so that `grad` applies). For every N and
//! shape the example runs itself again in a fresh process (`scale <n> <scalar|f64[16]>`), so
//! that the peak resident memory it reports (`VmHWM` of `/proc/self/status`) belongs to that
//! size alone, and prints one line per run:
//!
//! ```text
//! N = 50000 shape = scalar trace_ms = .. grad_ms = .. compile_ms = .. call_us = .. peak_mb = ..
//! ```
//!
//! with the equations of the gradient graph, the bytes of peak memory per equation, the time
//! per chain step of one call and the machine code size. Run it with
//! `cargo run --release --example scale` (optionally followed by the sizes to run, e.g.
//! `-- 1000 10000`); `FERRAX_TIMINGS=1` adds the time of every transform phase on stderr, and
//! `SCALE_GRAD_ONLY=<k>` (with `scale <n> <shape>`) stops after `grad`, repeating it k more
//! times, for a profiler.

use ferrax::prelude::*;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

/// The sizes run when none are given.
const SIZES: [usize; 3] = [1_000, 10_000, 50_000];

/// The two input shapes: a scalar and a vector of 16 elements.
const SHAPES: [&str; 2] = ["scalar", "f64[16]"];

/// The chain of `n` steps on `x`, summed to a scalar when `x` is not one.
fn chain(n: usize, x: Tensor) -> Tensor {
    let mut x = x;
    for _ in 0..n {
        x = x.sin() * 1.0001 + 0.1;
    }
    if !x.shape().is_empty() {
        x.sum_all()
    } else {
        x
    }
}

/// A field of `/proc/self/status` in kibibytes (0 where the file does not exist).
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The CPU time this thread has run so far (the first field of `/proc/thread-self/schedstat`,
/// in nanoseconds; 0 where the file does not exist). On a shared machine it is steadier than
/// wall-clock time, which also counts the time spent waiting for a core.
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// The peak resident memory since the last call, in MiB, and a new start for the peak: writing
/// `5` to `/proc/self/clear_refs` resets `VmHWM` to the current resident size.
fn phase_peak_mb() -> f64 {
    let peak = status_kib("VmHWM:") as f64 / 1024.0;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    peak
}

/// The median time of one call of `f` over batches, each as long as about `budget / 7`.
fn median_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    let one = t.elapsed().max(Duration::from_nanos(20));
    let per_batch = ((budget.as_secs_f64() / 7.0) / one.as_secs_f64()).clamp(1.0, 1e7) as u32;
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed() / per_batch
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// The scalar chain's gradient written by hand: a forward loop that keeps each step's
/// derivative `cos(x)·1.0001` in `tape`, then the reverse product. Returns the gradient and the
/// number of reverse steps whose running product is subnormal (nonzero and below
/// `f64::MIN_POSITIVE`): the product shrinks by about 0.66 per step, reaches the subnormal range
/// after about 1,700 steps and then stays at the smallest subnormal (0.66 of it rounds up), so a
/// long chain's reverse pass is almost all subnormal arithmetic, which is slow on some CPUs
/// whatever code computes it.
fn hand_grad(n: usize, x0: f64, tape: &mut Vec<f64>) -> (f64, usize) {
    tape.clear();
    let mut x = x0;
    for _ in 0..n {
        let (s, c) = x.sin_cos();
        tape.push(c * 1.0001);
        x = s * 1.0001 + 0.1;
    }
    let (mut ct, mut subnormal) = (1.0f64, 0);
    for &d in tape.iter().rev() {
        ct *= d;
        subnormal += usize::from(ct != 0.0 && ct.abs() < f64::MIN_POSITIVE);
    }
    (ct, subnormal)
}

/// One size in this process: trace, grad, compile and call, then print the line.
fn run_one(n: usize, shape: &str) -> Result<()> {
    let ty = match shape {
        "scalar" => Type::scalar(DType::F64),
        _ => Type::new(DType::F64, &[16]),
    };
    let f = function(move |x: Tensor| chain(n, x));

    let t = Instant::now();
    let traced = f.specialize(std::slice::from_ref(&ty))?;
    let trace = t.elapsed();
    drop(traced);
    let peak_total = status_kib("VmHWM:") as f64 / 1024.0;
    let trace_peak = phase_peak_mb();

    // The base function's trace is cached, so this times the transform alone.
    let (t, c) = (Instant::now(), cpu_time());
    let df = grad(&f);
    let graph = df.specialize(std::slice::from_ref(&ty))?.graph;
    let grad_time = t.elapsed();
    let grad_cpu = cpu_time().saturating_sub(c);
    let eqs = graph.num_insts();
    let grad_peak = phase_peak_mb();
    // `SCALE_GRAD_ONLY=<k>` repeats the transform k more times and stops there, so that a
    // profiler sees the transform alone; the base function's trace stays cached.
    if let Some(k) = std::env::var("SCALE_GRAD_ONLY")
        .ok()
        .and_then(|k| k.parse::<u32>().ok())
    {
        drop(graph);
        let c = cpu_time();
        for _ in 0..k {
            let df = grad(&f);
            black_box(df.specialize(std::slice::from_ref(&ty))?.graph.num_insts());
        }
        let per = cpu_time().saturating_sub(c).as_secs_f64() * 1e3 / f64::from(k.max(1));
        println!(
            "N = {n} shape = {shape} grad_ms = {:.1} grad_cpu_ms = {:.1} repeated_grad_cpu_ms = \
             {per:.1} eqs = {eqs}",
            grad_time.as_secs_f64() * 1e3,
            grad_cpu.as_secs_f64() * 1e3,
        );
        return Ok(());
    }

    let (t, c) = (Instant::now(), cpu_time());
    let compiled = ferrax::jit_backend::compile(&graph, &JitOptions::default())?;
    let compile = t.elapsed();
    let compile_cpu = cpu_time().saturating_sub(c);
    let compile_peak = phase_peak_mb();
    let peak_mb = peak_total.max(grad_peak).max(compile_peak);

    let call = match shape {
        "scalar" => {
            let mut out = [0.0];
            median_call(Duration::from_millis(700), || {
                compiled
                    .call_scalar(&[black_box(0.3)], &mut out)
                    .expect("call");
                black_box(out[0]);
            })
        }
        _ => {
            let x = Array::from_f64([16], (0..16).map(|i| i as f64 / 16.0).collect())?;
            let args = [x];
            median_call(Duration::from_millis(700), || {
                black_box(compiled.call(black_box(&args)).expect("call"));
            })
        }
    };
    // The scalar chain beside its hand-written gradient, so that a slowdown per step shared by
    // both (subnormal arithmetic) can be told from one of ferrax's code.
    let hand = if shape == "scalar" {
        let mut tape = Vec::with_capacity(n);
        let (g, subnormal) = hand_grad(n, 0.3, &mut tape);
        let mut out = [0.0];
        compiled.call_scalar(&[0.3], &mut out)?;
        if out[0] != g && (out[0] - g).abs() > 1e-12 * g.abs().max(f64::MIN_POSITIVE) {
            eprintln!(
                "scale: N = {n}: the hand-written gradient {g} differs from ferrax's {}",
                out[0]
            );
        }
        let t = median_call(Duration::from_millis(300), || {
            black_box(hand_grad(n, black_box(0.3), &mut tape));
        });
        // The same gradient compiled with subnormals flushed to zero (as XLA runs JAX's CPU
        // code): the time per step without the subnormal assists.
        let flushing = JitOptions {
            flush_subnormals: true,
            ..JitOptions::default()
        };
        let flushed = ferrax::jit_backend::compile(&graph, &flushing)?;
        let f = median_call(Duration::from_millis(300), || {
            flushed
                .call_scalar(&[black_box(0.3)], &mut out)
                .expect("call");
            black_box(out[0]);
        });
        format!(
            " hand_step_ns = {:.2} subnormal_steps = {subnormal} flush_step_ns = {:.2}",
            t.as_secs_f64() * 1e9 / n as f64,
            f.as_secs_f64() * 1e9 / n as f64
        )
    } else {
        String::new()
    };
    println!(
        "N = {n} shape = {shape} trace_ms = {:.1} grad_ms = {:.1} compile_ms = {:.1} \
         call_us = {:.2} peak_mb = {:.1} code_kib = {:.0} eqs = {eqs} bytes_per_eq = {:.0} \
         step_ns = {:.2} grad_cpu_ms = {:.1} compile_cpu_ms = {:.1} \
         peak_trace_mb = {trace_peak:.1} peak_grad_mb = {grad_peak:.1} \
         peak_compile_mb = {compile_peak:.1}{hand}",
        trace.as_secs_f64() * 1e3,
        grad_time.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        call.as_secs_f64() * 1e6,
        peak_mb,
        compiled.code_bytes() as f64 / 1024.0,
        peak_mb * 1024.0 * 1024.0 / eqs.max(1) as f64,
        call.as_secs_f64() * 1e9 / n as f64,
        grad_cpu.as_secs_f64() * 1e3,
        compile_cpu.as_secs_f64() * 1e3,
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [n, shape] = args.as_slice() {
        if let Ok(n) = n.parse::<usize>() {
            if SHAPES.contains(&shape.as_str()) {
                return run_one(n, shape);
            }
        }
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        SIZES.to_vec()
    } else {
        sizes
    };
    let exe = std::env::current_exe().map_err(|e| {
        Error::new(
            ferrax::ErrorKind::Resource,
            format!("scale: cannot find the example's own executable: {e}"),
        )
    })?;
    for shape in SHAPES {
        for &n in &sizes {
            // A fresh process per size, so that the peak memory is this size's alone.
            let status = Command::new(&exe)
                .arg(n.to_string())
                .arg(shape)
                .status()
                .map_err(|e| {
                    Error::new(
                        ferrax::ErrorKind::Resource,
                        format!("scale: cannot run {}: {e}", exe.display()),
                    )
                })?;
            if !status.success() {
                eprintln!("scale: N = {n} shape = {shape} failed ({status})");
            }
        }
    }
    Ok(())
}
