//! The anchor workloads of bench/compare/WORKLOADS.md, one criterion group per workload ID,
//! with function id `ferrax` for ferrax's jitted transform and `hand` for the hand-written
//! Rust baseline. Every group first checks ferrax's result against a reference, so a fast wrong
//! answer cannot pass. Inputs have the workloads' shapes and distributions; the random ones
//! come from a small deterministic generator here (NumPy's generators are not reproduced),
//! which does not change the work done.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrax::prelude::*;
use ferrax::Type;
use std::time::Duration;

/// A small deterministic generator (SplitMix64) for inputs.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn close(a: &[f64], b: &[f64], rtol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rtol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

// ----- P1: gradient of sin(x)·exp(y)/log(z) at (1, 2, 3) -----

fn seed(x: Tensor, y: Tensor, z: Tensor) -> Tensor {
    x.sin() * y.exp() / z.ln()
}

#[inline(never)]
fn p1_hand(x: f64, y: f64, z: f64) -> [f64; 3] {
    let (s, c) = x.sin_cos();
    let e = y.exp();
    let l = z.ln();
    [c * e / l, s * e / l, -s * e / (l * l * z)]
}

fn p1(c: &mut Criterion) {
    let df = jit(grad(seed).wrt((0, 1, 2))).unwrap();
    let f = df.compiled().unwrap().as_fn3_n::<f64, 3>().unwrap();
    close(
        &f.call_multi(1.0, 2.0, 3.0),
        &p1_hand(1.0, 2.0, 3.0),
        1e-15,
        "P1",
    );
    let mut g = c.benchmark_group("P1");
    g.bench_function("ferrax", |b| {
        b.iter(|| f.call_multi(black_box(1.0), black_box(2.0), black_box(3.0)))
    });
    g.bench_function("hand", |b| {
        b.iter(|| p1_hand(black_box(1.0), black_box(2.0), black_box(3.0)))
    });
    g.finish();
}

// ----- P2: d⁴/dx⁴ tanh at 0.5 -----

#[inline(never)]
fn p2_hand(x: f64) -> f64 {
    let t = x.tanh();
    let s = 1.0 - t * t;
    s * t * (16.0 - 24.0 * t * t)
}

fn p2(c: &mut Criterion) {
    let d4 = jit(grad(grad(grad(grad(|x: Tensor| x.tanh()))))).unwrap();
    let f = d4.compiled().unwrap().as_fn1::<f64>().unwrap();
    close(&[f.call(0.5)], &[p2_hand(0.5)], 1e-13, "P2");
    let mut g = c.benchmark_group("P2");
    g.bench_function("ferrax", |b| b.iter(|| f.call(black_box(0.5))));
    g.bench_function("hand", |b| b.iter(|| p2_hand(black_box(0.5))));
    g.finish();
}

// ----- P3: gradient of sum(sin(x)²·exp(−x²) + log1p(x²)), 1M elements -----

fn p3_loss(x: Tensor) -> Tensor {
    (x.sin().square() * (-(x.square())).exp() + x.square().log1p()).sum_all()
}

macro_rules! p3_hand {
    ($name:ident, $t:ty) => {
        #[inline(never)]
        fn $name(x: &[$t], out: &mut [$t]) {
            for (o, &x) in out.iter_mut().zip(x) {
                let (s, c) = x.sin_cos();
                let e = (-x * x).exp();
                *o = 2.0 * s * c * e - 2.0 * x * s * s * e + 2.0 * x / (1.0 + x * x);
            }
        }
    };
}
p3_hand!(p3_hand_f32, f32);
p3_hand!(p3_hand_f64, f64);

fn p3(c: &mut Criterion) {
    let n = 1_000_000;
    let mut rng = Rng(0);
    let xs: Vec<f64> = (0..n).map(|_| -3.0 + 6.0 * rng.uniform()).collect();
    let dl = jit(grad(p3_loss)).unwrap();

    let x64 = Array::from(xs.clone());
    let c64 = dl.compiled_for(&[x64.ty()]).unwrap();
    let mut out64 = vec![Array::zeros(&x64.ty()).unwrap()];
    c64.call_into(&[&x64], &mut out64).unwrap();
    let mut hand64 = vec![0.0f64; n];
    p3_hand_f64(&xs, &mut hand64);
    close(out64[0].as_f64().unwrap(), &hand64, 1e-12, "P3-f64");

    let xs32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
    let x32 = Array::from(xs32.clone());
    let c32 = dl.compiled_for(&[x32.ty()]).unwrap();
    let mut out32 = vec![Array::zeros(&x32.ty()).unwrap()];
    c32.call_into(&[&x32], &mut out32).unwrap();
    let mut hand32 = vec![0.0f32; n];
    p3_hand_f32(&xs32, &mut hand32);
    let got: Vec<f64> = out32[0].to_f64_vec();
    let want: Vec<f64> = hand32.iter().map(|&v| v as f64).collect();
    close(&got, &want, 1e-5, "P3-f32");

    let mut g = c.benchmark_group("P3-f32");
    g.bench_function("ferrax", |b| {
        b.iter(|| c32.call_into(&[&x32], &mut out32).unwrap())
    });
    g.bench_function("hand", |b| {
        b.iter(|| p3_hand_f32(black_box(&xs32), &mut hand32))
    });
    g.finish();
    let mut g = c.benchmark_group("P3-f64");
    g.bench_function("ferrax", |b| {
        b.iter(|| c64.call_into(&[&x64], &mut out64).unwrap())
    });
    g.bench_function("hand", |b| {
        b.iter(|| p3_hand_f64(black_box(&xs), &mut hand64))
    });
    g.finish();
}

// ----- P4: dense Hessian of Rosenbrock, n = 100 -----

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

#[inline(never)]
fn p4_hand(x: &[f64], h: &mut [f64]) {
    let n = x.len();
    h.iter_mut().for_each(|v| *v = 0.0);
    for i in 0..n {
        let mut d = 0.0;
        if i + 1 < n {
            d += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
            h[i * n + i + 1] = -400.0 * x[i];
            h[(i + 1) * n + i] = -400.0 * x[i];
        }
        if i > 0 {
            d += 200.0;
        }
        h[i * n + i] = d;
    }
}

fn p4_input() -> Array {
    let n = 100;
    Array::from(
        (0..n)
            .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
            .collect::<Vec<f64>>(),
    )
}

fn p4(c: &mut Criterion) {
    let x = p4_input();
    let h = jit(hessian(rosenbrock)).unwrap();
    let comp = h.compiled_for(&[x.ty()]).unwrap();
    let mut out = vec![Array::zeros(&Type::new(DType::F64, &[100, 100])).unwrap()];
    comp.call_into(&[&x], &mut out).unwrap();
    let xs = x.to_f64_vec();
    let mut hand = vec![0.0; 100 * 100];
    p4_hand(&xs, &mut hand);
    close(out[0].as_f64().unwrap(), &hand, 1e-12, "P4");
    let mut g = c.benchmark_group("P4");
    g.bench_function("ferrax", |b| {
        b.iter(|| comp.call_into(&[&x], &mut out).unwrap())
    });
    g.bench_function("hand", |b| b.iter(|| p4_hand(black_box(&xs), &mut hand)));
    g.finish();
}

// ----- P5: value and gradient of a 784-256-10 MLP's MSE, batch 256, f32 -----

fn mlp_loss(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor) -> Tensor {
    let h = x.matmul(&w1).add(&b1).tanh();
    (h.matmul(&w2).add(&b2) - y).square().mean_all()
}

fn p5_data() -> Vec<Array> {
    let mut rng = Rng(5);
    let mut normal = |shape: &[usize], scale: f64| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Array::from_f32(shape, v).unwrap()
    };
    let w1 = normal(&[784, 256], 0.05);
    let w2 = normal(&[256, 10], 0.05);
    let x = normal(&[256, 784], 1.0);
    let y = normal(&[256, 10], 1.0);
    let b1 = Array::full(DType::F32, [256], 0.0).unwrap();
    let b2 = Array::full(DType::F32, [10], 0.0).unwrap();
    vec![w1, b1, w2, b2, x, y]
}

fn p5(c: &mut Criterion) {
    let args = p5_data();
    let vg = value_and_grad(mlp_loss).wrt((0, 1, 2, 3));
    let tys: Vec<Type> = args.iter().map(|a| a.ty()).collect();
    let jitted = jit(&vg).unwrap();
    let comp = jitted.compiled_for(&tys).unwrap();
    let refs: Vec<&Array> = args.iter().collect();
    let mut outs: Vec<Array> = comp
        .output_types()
        .iter()
        .map(|t| Array::zeros(t).unwrap())
        .collect();
    comp.call_into(&refs, &mut outs).unwrap();
    let want = vg.call_arrays(&args).unwrap();
    for (k, (o, w)) in outs.iter().zip(&want).enumerate() {
        close(
            &o.to_f64_vec(),
            &w.to_f64_vec(),
            1e-4,
            &format!("P5 output {k}"),
        );
    }
    let mut g = c.benchmark_group("P5");
    g.bench_function("ferrax", |b| {
        b.iter(|| comp.call_into(&refs, &mut outs).unwrap())
    });
    g.finish();
}

// ----- P6: the whole 100-epoch SGD loop of linear regression, f32 -----

fn p6_data() -> (Array, Array) {
    let csv = include_str!("../examples/data/linreg_seed42.csv");
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for line in csv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('x'))
    {
        let mut it = line.split(',');
        xs.push(it.next().unwrap().trim().parse::<f32>().unwrap());
        ys.push(it.next().unwrap().trim().parse::<f32>().unwrap());
    }
    let n = xs.len();
    (
        Array::from_f32([n, 1], xs).unwrap(),
        Array::from_f32([n, 1], ys).unwrap(),
    )
}

fn mse(w: Tensor, b: Tensor, x: Tensor, y: Tensor) -> Tensor {
    (x.matmul(&w).add(&b) - y).square().mean_all()
}

fn p6(c: &mut Criterion) {
    let (x, y) = p6_data();
    // The whole 100-epoch loop is one compiled function: `fori_loop` inside the trace, each
    // step the gradient of the MSE, as JAX's `jit` of a `fori_loop` does.
    let train = jit(function(|w: Tensor, b: Tensor, x: Tensor, y: Tensor| {
        let step = |_i: &Tensor, c: &[Tensor]| {
            let (w, b) = (c[0].clone(), c[1].clone());
            let g = grad(mse)
                .wrt((0, 1))
                .apply(&[w.clone(), b.clone(), x.clone(), y.clone()]);
            vec![w - 0.01 * g[0].clone(), b - 0.01 * g[1].clone()]
        };
        let out = fori_loop(0, 100, step, &[w, b]);
        (out[0].clone(), out[1].clone())
    }))
    .unwrap();
    let (w0, b0) = (
        Array::full(DType::F32, [1, 1], 0.0).unwrap(),
        Array::full(DType::F32, [1], 0.0).unwrap(),
    );
    let comp = train
        .compiled_for(&[w0.ty(), b0.ty(), x.ty(), y.ty()])
        .unwrap();
    let mut outs = vec![w0.clone(), b0.clone()];
    comp.call_into(&[&w0, &b0, &x, &y], &mut outs).unwrap();
    let (w, b) = (outs[0].to_f64_vec()[0], outs[1].to_f64_vec()[0]);
    close(&[w, b], &[2.0327768, 0.7027012], 1e-4, "P6");
    let mut g = c.benchmark_group("P6");
    g.bench_function("ferrax", |bch| {
        bch.iter(|| comp.call_into(&[&w0, &b0, &x, &y], &mut outs).unwrap())
    });
    g.finish();
}

// ----- P7: 100×100 Jacobian of tanh(W·x + b) w.r.t. x -----

fn p7_data() -> (Array, Array, Array) {
    let n = 100;
    let mut rng = Rng(7);
    let w: Vec<f64> = (0..n * n)
        .map(|_| rng.normal() / (n as f64).sqrt())
        .collect();
    let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let b: Vec<f64> = (0..n).map(|_| rng.normal() * 0.1).collect();
    (
        Array::from(x),
        Array::from_f64([n, n], w).unwrap(),
        Array::from(b),
    )
}

fn p7_f(x: Tensor, w: Tensor, b: Tensor) -> Tensor {
    w.matmul(&x).add(&b).tanh()
}

#[inline(never)]
fn p7_hand(x: &[f64], w: &[f64], b: &[f64], jac: &mut [f64]) {
    let n = x.len();
    for i in 0..n {
        let row = &w[i * n..(i + 1) * n];
        let z: f64 = row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + b[i];
        let t = z.tanh();
        let d = 1.0 - t * t;
        for (j, v) in jac[i * n..(i + 1) * n].iter_mut().zip(row) {
            *j = d * v;
        }
    }
}

fn p7(c: &mut Criterion) {
    let (x, w, b) = p7_data();
    let (xs, ws, bs) = (x.to_f64_vec(), w.to_f64_vec(), b.to_f64_vec());
    let mut hand = vec![0.0; 100 * 100];
    p7_hand(&xs, &ws, &bs, &mut hand);
    let tys = [x.ty(), w.ty(), b.ty()];
    for (id, j) in [
        ("P7-jacfwd", jit(jacfwd(p7_f)).unwrap()),
        ("P7-jacrev", jit(jacrev(p7_f)).unwrap()),
    ] {
        let comp = j.compiled_for(&tys).unwrap();
        let mut out = vec![Array::zeros(&Type::new(DType::F64, &[100, 100])).unwrap()];
        comp.call_into(&[&x, &w, &b], &mut out).unwrap();
        close(out[0].as_f64().unwrap(), &hand, 1e-12, id);
        let mut g = c.benchmark_group(id);
        g.bench_function("ferrax", |bch| {
            bch.iter(|| comp.call_into(&[&x, &w, &b], &mut out).unwrap())
        });
        g.bench_function("hand", |bch| {
            bch.iter(|| p7_hand(black_box(&xs), &ws, &bs, &mut hand))
        });
        g.finish();
    }
}

// ----- C-P1, C-P4, C-P5: first call (trace + transform + compile + run), caches cleared -----

fn first_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("C-P1");
    g.sample_size(20);
    g.bench_function("ferrax", |b| {
        b.iter(|| {
            ferrax::jit_backend::clear_cache();
            let df = jit(grad(seed).wrt((0, 1, 2))).unwrap();
            let r: (f64, f64, f64) = df.call((1.0, 2.0, 3.0)).unwrap();
            black_box(r)
        })
    });
    g.finish();
    let x = p4_input();
    let mut g = c.benchmark_group("C-P4");
    g.sample_size(10);
    g.bench_function("ferrax", |b| {
        b.iter(|| {
            ferrax::jit_backend::clear_cache();
            let h = jit(hessian(rosenbrock)).unwrap();
            black_box(h.call_arrays(std::slice::from_ref(&x)).unwrap())
        })
    });
    g.finish();
    let args = p5_data();
    let mut g = c.benchmark_group("C-P5");
    g.sample_size(10);
    g.bench_function("ferrax", |b| {
        b.iter(|| {
            ferrax::jit_backend::clear_cache();
            let vg = jit(value_and_grad(mlp_loss).wrt((0, 1, 2, 3))).unwrap();
            black_box(vg.call_arrays(&args).unwrap())
        })
    });
    g.finish();
}

criterion_group! {
    name = anchors;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = p1, p2, p3, p4, p5, p6, p7, first_calls
}
criterion_main!(anchors);
