//! Criterion benches of the JIT, kept separate by phase: trace + transform, compile, and the
//! per-call time of compiled scalar and tensor gradients, of the generic call path, and of
//! shape ops lowered on their own (a function returning a transpose, a slice or a reversal).

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

/// The generic call `Jit::call((x, y, z))` against the typed entry on the same 3-scalar
/// function, in one group so that both run in the same process.
fn bench_generic_call(c: &mut Criterion) {
    let f = jit(seed).unwrap();
    let typed = f.compiled().unwrap().as_fn3::<f64>().unwrap();
    let mut g = c.benchmark_group("generic call");
    g.bench_function("typed as_fn3", |b| {
        b.iter(|| typed.call(black_box(0.7), black_box(-1.3), black_box(2.5)))
    });
    g.bench_function("Jit::call f64 tuple", |b| {
        b.iter(|| -> f64 {
            f.call((black_box(0.7), black_box(-1.3), black_box(2.5)))
                .unwrap()
        })
    });
    g.bench_function("Jit::call_into_outs f64 tuple", |b| {
        let mut out = 0.0f64;
        b.iter(|| {
            f.call_into_outs((black_box(0.7), black_box(-1.3), black_box(2.5)), &mut out)
                .unwrap();
            black_box(out)
        })
    });
    let arrays = [Array::from(0.7), Array::from(-1.3), Array::from(2.5)];
    g.bench_function("Jit::call borrowed rank-0 arrays", |b| {
        b.iter(|| -> f64 {
            f.call((
                black_box(&arrays[0]),
                black_box(&arrays[1]),
                black_box(&arrays[2]),
            ))
            .unwrap()
        })
    });
    g.bench_function("Jit::call_arrays (checked path)", |b| {
        b.iter(|| f.call_arrays(black_box(&arrays)).unwrap())
    });
    g.finish();
}

/// A named case of [`bench_shape_ops`]: its input and the function of it.
type ShapeCase = (&'static str, Array, fn(Tensor) -> Tensor);

/// Shape ops that no loop absorbs, each the whole function: f32 transposes of a matrix that
/// fits the second-level cache and of one that does not, and a slice and a reversal.
fn bench_shape_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("shape ops");
    let matrix = |r: usize, c: usize| {
        let v: Vec<f64> = (0..r * c).map(|i| (i % 1000) as f64).collect();
        Array::from_f64([r, c], v).unwrap().cast(DType::F32)
    };
    let cases: [ShapeCase; 4] = [
        ("transpose f32 256x784", matrix(256, 784), |x| {
            x.transpose(&[1, 0])
        }),
        ("transpose f32 2048x2048", matrix(2048, 2048), |x| {
            x.transpose(&[1, 0])
        }),
        ("slice f32 256x784", matrix(256, 784), |x| {
            x.slice(&[1, 1], &[255, 783], &[1, 1])
        }),
        ("rev f32 256x784", matrix(256, 784), |x| x.rev(&[1])),
    ];
    for (name, x, f) in cases {
        let comp = jit(f).unwrap().compiled_for(&[x.ty()]).unwrap();
        let mut out = vec![Array::zeros(&comp.output_types()[0]).unwrap()];
        g.bench_function(name, |b| {
            b.iter(|| comp.call_into(&[black_box(&x)], &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_phases,
    bench_calls,
    bench_generic_call,
    bench_shape_ops
);
criterion_main!(benches);
