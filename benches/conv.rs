//! 2-D convolution forward and backward, jitted, in f32: batch 32 of 28×28 NCHW images, 3×3
//! kernels, 1 → 16 and 16 → 32 channels, `SAME` padding. `forward` is the convolution alone;
//! `value_and_grad` is the value and the gradients (input and kernel) of the sum of the
//! convolution, whose backward convolutions are the transposes of the forward one.
//! `conv-fwd-bwd` is JAX's workload of that name: the gradients of both kernels of two layers.
//! Each group first checks the compiled result against the interpreter.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrax::prelude::*;
use std::time::Duration;

/// A small deterministic generator (SplitMix64) for inputs.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn array(&mut self, dims: &[usize]) -> Array {
        let v: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| (2.0 * self.uniform() - 1.0) as f32)
            .collect();
        Array::from_f64(dims, v.iter().map(|&x| f64::from(x)).collect())
            .expect("a valid shape")
            .cast(DType::F32)
    }
}

fn conv(x: Tensor, w: Tensor) -> Tensor {
    x.conv2d(&w, (1, 1), "SAME")
}

fn loss(x: Tensor, w: Tensor) -> Tensor {
    conv(x, w).sum_all()
}

/// The largest difference between two arrays relative to the second's largest magnitude.
fn rel_diff(a: &Array, b: &Array) -> f64 {
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let m = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    x.iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
        / m
}

fn bench_shape(c: &mut Criterion, name: &str, cin: usize, cout: usize) {
    let mut rng = Rng(7);
    let x = rng.array(&[32, cin, 28, 28]);
    let w = rng.array(&[cout, cin, 3, 3]);
    let args = [x, w];

    let fwd = jit(conv).unwrap();
    let vg = jit(value_and_grad(loss).wrt((0, 1))).unwrap();
    // Check against the interpreter before timing.
    let want = function(conv).call_arrays(&args).unwrap();
    let got = fwd.call_arrays(&args).unwrap();
    assert!(rel_diff(&got[0], &want[0]) < 1e-5, "{name}: forward");
    // The reference runs in f64. The value is a sum of 32·cout·784 terms of size about 1
    // that cancel to a small number, so its f32 rounding is judged against the term count;
    // the gradients against their own magnitude.
    let wide: Vec<Array> = args.iter().map(|a| a.cast(DType::F64)).collect();
    let want = value_and_grad(loss).wrt((0, 1)).call_arrays(&wide).unwrap();
    let got = vg.call_arrays(&args).unwrap();
    let terms = (32 * cout * 28 * 28) as f64;
    let (v, v64) = (got[0].to_f64_vec()[0], want[0].to_f64_vec()[0]);
    assert!(
        (v - v64).abs() <= 1e-6 * terms,
        "{name}: value {v} vs {v64}"
    );
    for (k, (g, w)) in got.iter().zip(&want).enumerate().skip(1) {
        assert!(rel_diff(g, w) < 1e-4, "{name}: gradient {k}");
    }

    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("forward", |b| {
        b.iter(|| fwd.call_arrays(black_box(&args)).unwrap())
    });
    g.bench_function("value_and_grad", |b| {
        b.iter(|| vg.call_arrays(black_box(&args)).unwrap())
    });
    g.finish();
}

/// JAX's `conv-fwd-bwd` (bench/compare/peers/models_jax.py): the value and the gradients with
/// respect to both kernels of `sum(conv(relu(conv(x, k1)), k2))`, 1 → 16 → 32 channels.
fn two_layers(k1: Tensor, k2: Tensor, x: Tensor) -> Tensor {
    conv(conv(x, k1).relu(), k2).sum_all()
}

fn conv_fwd_bwd(c: &mut Criterion) {
    let mut rng = Rng(11);
    let x = rng.array(&[32, 1, 28, 28]);
    let k1 = rng.array(&[16, 1, 3, 3]);
    let k2 = rng.array(&[32, 16, 3, 3]);
    let args = [k1, k2, x];
    let vg = jit(value_and_grad(two_layers).wrt((0, 1))).unwrap();
    let wide: Vec<Array> = args.iter().map(|a| a.cast(DType::F64)).collect();
    let want = value_and_grad(two_layers)
        .wrt((0, 1))
        .call_arrays(&wide)
        .unwrap();
    let got = vg.call_arrays(&args).unwrap();
    for (k, (g, w)) in got.iter().zip(&want).enumerate().skip(1) {
        assert!(rel_diff(g, w) < 1e-4, "conv-fwd-bwd: gradient {k}");
    }
    let mut g = c.benchmark_group("conv-fwd-bwd");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("value_and_grad_kernels", |b| {
        b.iter(|| vg.call_arrays(black_box(&args)).unwrap())
    });
    g.finish();
}

fn conv_1_16(c: &mut Criterion) {
    bench_shape(c, "conv2d-b32-28x28-1to16-3x3", 1, 16);
}

fn conv_16_32(c: &mut Criterion) {
    bench_shape(c, "conv2d-b32-28x28-16to32-3x3", 16, 32);
}

criterion_group!(benches, conv_1_16, conv_16_32, conv_fwd_bwd);
criterion_main!(benches);
