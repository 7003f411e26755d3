//! Criterion benches of the JIT, kept separate by phase: trace + transform, compile, and the
//! per-call time of compiled scalar and tensor gradients.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrax::prelude::*;
use ferrax::{jit_backend, Type};

fn seed(x: Tensor, y: Tensor, z: Tensor) -> Tensor {
    x.sin() * y.exp() / z.ln()
}

fn bench_phases(c: &mut Criterion) {
    let scalars = vec![Type::scalar(DType::F64); 3];
    c.bench_function("trace+grad seed", |b| {
        b.iter(|| {
            let df = grad(seed).wrt((0, 1, 2));
            black_box(df.specialize(&scalars).unwrap());
        })
    });
    let g = grad(seed)
        .wrt((0, 1, 2))
        .specialize(&scalars)
        .unwrap()
        .graph;
    let opts = JitOptions::default();
    c.bench_function("compile grad seed", |b| {
        b.iter(|| black_box(jit_backend::compile(&g, &opts).unwrap()))
    });
    let d4 = grad(grad(grad(grad(|x: Tensor| x.tanh()))));
    let g4 = d4.specialize(&[Type::scalar(DType::F64)]).unwrap().graph;
    c.bench_function("compile grad^4 tanh", |b| {
        b.iter(|| black_box(jit_backend::compile(&g4, &opts).unwrap()))
    });
}

fn bench_calls(c: &mut Criterion) {
    let df = jit(grad(seed).wrt((0, 1, 2))).unwrap();
    let native = df.compiled().unwrap().as_fn3_n::<f64, 3>().unwrap();
    c.bench_function("call grad seed (as_fn3)", |b| {
        b.iter(|| native.call_multi(black_box(1.0), black_box(2.0), black_box(3.0)))
    });
    let d4 = jit(grad(grad(grad(grad(|x: Tensor| x.tanh()))))).unwrap();
    let native4 = d4.compiled().unwrap().as_fn1::<f64>().unwrap();
    c.bench_function("call grad^4 tanh (as_fn1)", |b| {
        b.iter(|| native4.call(black_box(0.5)))
    });

    let n = 10_000;
    let loss =
        |x: Tensor| (x.sin().square() * (-(x.square())).exp() + x.square().log1p()).sum_all();
    let dl = jit(grad(loss)).unwrap();
    let x = Array::from(
        (0..n)
            .map(|i| -3.0 + 6.0 * i as f64 / n as f64)
            .collect::<Vec<f64>>(),
    );
    let compiled = dl.compiled_for(&[x.ty()]).unwrap();
    let mut out = vec![Array::zeros(&x.ty()).unwrap()];
    c.bench_function("call grad sum(sin²·exp(-x²)+log1p(x²)) n=10k", |b| {
        b.iter(|| compiled.call_into(&[&x], &mut out).unwrap())
    });
}

criterion_group!(benches, bench_phases, bench_calls);
criterion_main!(benches);
