//! The sparse Hessian of the chained Rosenbrock function for n = 10³ … 10⁶: the pattern is
//! detected on the graph, star-coloured (three colours for the tridiagonal Hessian) and
//! evaluated as three Hessian-vector products in one compiled graph that returns only the
//! nonzeros.
//!
//! For each n it prints `n = <n> nnz = <nnz> colors = <c> first_ms = <t> call_ms = <t>
//! peak_mb = <m>`: `first_ms` is everything a fresh derivative object does on its first call
//! (detection, colouring, transforms, compilation and the call), `call_ms` the median of later
//! calls, `peak_mb` the peak resident memory (VmHWM) of a fresh process computing that n, less its
//! resident memory before the work began (each n runs in a child process of its own, so one
//! size's freed memory does not hide the next one's). Values are checked against the dense
//! `hessian` for n ≤ 3,000 and against the closed form elsewhere. Pass sizes as arguments to
//! run others (`cargo run --release --example sparse_hessian -- 1000 100000`; sizes given this
//! way run in this process, one after another).

#[path = "common/mod.rs"]
mod common;

use common::AnyResult;
use ferrax::{hessian, hessian_sparse, Array, Sparse, Tensor};
use std::time::Instant;

/// The chained Rosenbrock function Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)².
pub fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a = x.slice_axis(0, 0, n - 1);
    let b = x.slice_axis(0, 1, n);
    let d = b - a.clone() * a.clone();
    let e = 1.0 - a;
    (100.0 * d.clone() * d + e.clone() * e).sum_all()
}

/// The point the Hessian is taken at: x_i = 1 + 0.5 sin(i).
pub fn point(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 + 0.5 * (i as f64).sin()).collect()
}

/// The Hessian's entry (i, j) in closed form (tridiagonal).
pub fn closed_form(x: &[f64], i: usize, j: usize) -> f64 {
    let n = x.len();
    if i == j {
        let mut h = 0.0;
        if i + 1 < n {
            h += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
        }
        if i > 0 {
            h += 200.0;
        }
        h
    } else if i.abs_diff(j) == 1 {
        -400.0 * x[i.min(j)]
    } else {
        0.0
    }
}

/// The largest relative difference between `s` and the closed form, over every stored entry,
/// after checking the pattern is exactly the tridiagonal one.
pub fn closed_form_error(s: &Sparse, x: &[f64]) -> AnyResult<f64> {
    let n = x.len();
    if s.nnz() != 3 * n - 2 {
        return Err(format!("nnz {} is not 3n − 2 = {}", s.nnz(), 3 * n - 2).into());
    }
    let mut worst = 0.0f64;
    for i in 0..n {
        for k in s.row_ptr[i]..s.row_ptr[i + 1] {
            let j = s.col_idx[k];
            if i.abs_diff(j) > 1 {
                return Err(format!("entry ({i}, {j}) is outside the tridiagonal").into());
            }
            let want = closed_form(x, i, j);
            worst = worst.max((s.values[k] - want).abs() / want.abs().max(1.0));
        }
    }
    Ok(worst)
}

/// The largest absolute difference between `s` and the dense `hessian` at `x`.
pub fn dense_error(s: &Sparse, x: &[f64]) -> AnyResult<f64> {
    let d = hessian(rosenbrock).call_arrays(&[Array::from(x.to_vec())])?[0].to_f64_vec();
    let sd = s.to_dense()?;
    Ok(sd
        .iter()
        .zip(&d)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max))
}

/// A line of /proc/self/status (`VmHWM`, the peak resident memory, or `VmRSS`, the current
/// one) in MB, if /proc says.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak resident memory to the current one (Linux's `clear_refs` value 5), where
/// the kernel allows it.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run(n: usize) -> AnyResult<()> {
    // The peak is measured from the resident memory at the start of this n.
    reset_peak();
    let before = status_mb("VmRSS:").unwrap_or(0.0);
    let x = point(n);
    let xa = Array::from(x.clone());
    let t0 = Instant::now();
    let h = hessian_sparse(rosenbrock)?;
    let s = h.call(xa.clone())?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    let reps = if n >= 1_000_000 { 15 } else { 40 };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let v = h.values(&xa)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(v);
    }
    let call_ms = common::median(&mut times);
    let peak_mb = (status_mb("VmHWM:").unwrap_or(0.0) - before).max(0.0);
    let err = closed_form_error(&s, &x)?;
    if err > 1e-12 {
        return Err(format!("n = {n}: closed-form error {err:e}").into());
    }
    if n <= 3000 {
        let e = dense_error(&s, &x)?;
        if e > 1e-9 {
            return Err(format!("n = {n}: dense error {e:e}").into());
        }
    }
    println!(
        "n = {n} nnz = {} colors = {} first_ms = {first_ms:.1} call_ms = {call_ms:.3} peak_mb = {:.1}",
        s.nnz(),
        s.colours,
        peak_mb,
    );
    Ok(())
}

fn main() -> AnyResult<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if !args.is_empty() {
        for n in args {
            run(n)?;
        }
        return Ok(());
    }
    // Each size in a child process of its own (this program with the size as its argument).
    let exe = std::env::current_exe()?;
    for n in [1_000, 10_000, 100_000, 1_000_000] {
        let out = std::process::Command::new(&exe)
            .arg(n.to_string())
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(format!(
                "n = {n} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
    }
    Ok(())
}
