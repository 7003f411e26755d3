//! Ahead-of-time export: the gradient of the seed function sin(x)·exp(y)/log(z) and the dense
//! Hessian of the chained Rosenbrock function (n = 8) written into one object file with a C
//! header and a Rust binding, then linked into a C program (examples/aot/driver.c) and a Rust
//! program (examples/aot/rust_link, through its build script), whose results are printed
//! beside the JIT's: equal bit for bit, both compiled in `Precise` math.
//!
//! Run with `cargo run --release --example aot`; the files go to `target/aot-demo/`. Exporting
//! needs no C compiler; linking the demo programs needs `cc` (the C part is skipped with a
//! message without one).

use ferrax::aot::{Exporter, Target};
#[path = "common/mod.rs"]
mod common;

use common::time_ns;
use ferrax::prelude::*;
use ferrax::MathMode;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The number of Rosenbrock variables.
const N: usize = 8;

/// The chained Rosenbrock function Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)².
fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

/// The Rosenbrock point, computed as the C driver computes it (the same bits).
fn rosen_point() -> Vec<f64> {
    (0..N)
        .map(|i| -1.2 + 2.4 * i as f64 / (N - 1) as f64)
        .collect()
}

/// Σ (k + 1)·h_k in order: one number that changes with any element.
fn checksum(h: &[f64]) -> f64 {
    h.iter()
        .enumerate()
        .fold(0.0, |acc, (k, v)| acc + (k + 1) as f64 * v)
}

/// The numbers after `tag` on the line of `out` starting with it.
fn numbers(out: &str, tag: &str) -> AnyResult<Vec<f64>> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tag))
        .ok_or_else(|| format!("no `{tag}` line in the program's output:\n{out}"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?)
}

/// Whether two vectors hold the same bits.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Runs `cmd`, returning its standard output, or an error with its standard error.
fn run(cmd: &mut Command) -> AnyResult<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Whether a program can be started (`cc --version` succeeds).
fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() -> AnyResult<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join("aot-demo");

    // The functions, as the JIT runs them.
    let seed = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
    let seed_grad = grad(seed).wrt((0, 1, 2));
    let rosen_hessian = hessian(rosenbrock);
    let scalar = Type::scalar(DType::F64);
    let vector = Type::new(DType::F64, &[N]);

    // Export: one object, both functions, Precise math (the exporter's default).
    let t = Instant::now();
    let mut ex = Exporter::new("demo", Target::Host)?;
    ex.add(
        "seed_grad",
        &seed_grad,
        &[scalar.clone(), scalar.clone(), scalar],
    )?;
    ex.add("rosen_hessian", &rosen_hessian, &[vector])?;
    let export = ex.finish()?;
    let written = export.write_to(&dir)?;
    println!(
        "exported {} ({} bytes, {}) in {:.1} ms: {}",
        written.object.display(),
        export.object().len(),
        export.triple(),
        t.elapsed().as_secs_f64() * 1e3,
        export
            .entries()
            .iter()
            .map(|e| format!("{} ({} bytes of code)", e.name, e.code_bytes))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("header {}", written.header.display());
    println!("binding {}", written.binding.display());
    println!("link: {}", export.link_line("driver.c", "driver"));

    // The same functions through the JIT, in Precise math.
    let precise = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let jit_grad = jit_with(&seed_grad, precise)?.compiled()?;
    let native = jit_grad.as_fn3_n::<f64, 3>()?;
    let jg = native.call_multi(1.0, 2.0, 3.0).to_vec();
    let jit_hess = jit_with(&rosen_hessian, precise)?;
    let jh: Array = jit_hess.call(Array::from(rosen_point()))?;
    let jh = jh.as_f64().ok_or("the Hessian is not f64")?.to_vec();

    if !available("cc") {
        println!("cc not found: skipping the C and Rust programs that link the object");
        println!("jit grad = {:?}", jg);
        println!("jit hessian_checksum = {:?}", checksum(&jh));
        return Ok(());
    }

    // The C program.
    let exe = dir.join("driver");
    let driver = root.join("examples").join("aot").join("driver.c");
    run(Command::new("cc")
        .args(["-O2", "-std=c11", "-D_POSIX_C_SOURCE=200112L", "-I"])
        .arg(&dir)
        .arg("-o")
        .arg(&exe)
        .arg(&driver)
        .arg(&written.object)
        .arg("-lm"))?;
    let out = run(&mut Command::new(&exe))?;
    let ag = numbers(&out, "grad")?;
    let ah = numbers(&out, "hessian")?;
    let aot_ns = numbers(&out, "call_ns")?[0];
    let jit_ns = time_ns(|| {
        let r = native.call_multi(black_box(1.0), black_box(2.0), black_box(3.0));
        r[0] + r[1] + r[2]
    });
    println!("aot grad = {ag:?}");
    println!("jit grad = {jg:?}");
    println!("aot hessian_checksum = {:?}", checksum(&ah));
    println!("jit hessian_checksum = {:?}", checksum(&jh));
    println!(
        "bit-identical: grad {}, hessian {} (all {} elements)",
        same_bits(&ag, &jg),
        same_bits(&ah, &jh),
        jh.len()
    );
    println!("aot_call_ns = {aot_ns:.1}");
    println!("jit_call_ns = {jit_ns:.1}");

    // The Rust program, linking the same object through its build script.
    let rust = rust_link(&root, &dir)?;
    let rg = numbers(&rust, "grad")?;
    let rh = numbers(&rust, "hessian")?;
    println!("rust grad = {rg:?}");
    println!(
        "rust bit-identical: grad {}, hessian {}",
        same_bits(&rg, &jg),
        same_bits(&rh, &jh)
    );
    if let Some(line) = rust.lines().find(|l| l.starts_with("short input")) {
        println!("rust {line}");
    }
    Ok(())
}

/// Builds examples/aot/rust_link offline (its own target directory inside `dir`) against the
/// exported files, runs it and returns its output.
fn rust_link(root: &Path, dir: &Path) -> AnyResult<String> {
    let manifest = root
        .join("examples")
        .join("aot")
        .join("rust_link")
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run(Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(dir.join("rust_link_target"))
        .env("FERRAX_AOT_DIR", dir))?;
    let exe = dir
        .join("rust_link_target")
        .join("debug")
        .join("ferrax-aot-rust-link");
    run(&mut Command::new(exe))
}
