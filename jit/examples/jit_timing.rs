//! Measures compile time and per-call time of sin(x)·exp(y)/log(z) through the JIT.
//! Run with `cargo run --release -p ferrax-jit --example jit_timing`.

use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::{Builder, DType, Op, Type};
use ferrax_jit::{compile, JitOptions};
use std::hint::black_box;
use std::time::Instant;

fn main() -> ferrax_ir::Result<()> {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b.param(Type::scalar(DType::F64));
    let z = b.param(Type::scalar(DType::F64));
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x])?;
    let e = b.push1(Op::Unary(UnaryOp::Exp), &[y])?;
    let l = b.push1(Op::Unary(UnaryOp::Log), &[z])?;
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[s, e])?;
    let r = b.push1(Op::Binary(BinaryOp::Div), &[m, l])?;
    let g = b.finish(&[r]);
    let opts = JitOptions::default();
    for _ in 0..20 {
        drop(compile(&g, &opts)?);
    }
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        drop(black_box(compile(&g, &opts)?));
    }
    println!(
        "compile_us = {:.1}",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let f = compile(&g, &opts)?;
    let h = f.as_fn3::<f64>()?;
    let iters = 10_000_000;
    let t = Instant::now();
    let mut acc = 0.0;
    for i in 0..iters {
        acc += h.call(black_box(1.0 + i as f64 * 1e-9), 2.0, 3.0);
    }
    println!(
        "as_fn3_ns = {:.2}",
        t.elapsed().as_secs_f64() * 1e9 / iters as f64
    );
    let t = Instant::now();
    let mut out = [0.0];
    for i in 0..iters {
        f.call_scalar(&[black_box(1.0 + i as f64 * 1e-9), 2.0, 3.0], &mut out)?;
        acc += out[0];
    }
    println!(
        "call_scalar_ns = {:.2}",
        t.elapsed().as_secs_f64() * 1e9 / iters as f64
    );
    let t = Instant::now();
    for i in 0..iters {
        let (x, y, z) = (black_box(1.0 + i as f64 * 1e-9), 2.0f64, 3.0f64);
        acc += x.sin() * y.exp() / z.ln();
    }
    println!(
        "hand_ns = {:.2}",
        t.elapsed().as_secs_f64() * 1e9 / iters as f64
    );
    let args = [1.0.into(), 2.0.into(), 3.0.into()];
    let t = Instant::now();
    for _ in 0..100_000 {
        black_box(f.call(&args)?);
    }
    println!(
        "call_ns (allocating) = {:.1}",
        t.elapsed().as_secs_f64() * 1e9 / 100_000.0
    );
    println!("checksum = {acc}");
    Ok(())
}
