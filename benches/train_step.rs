//! One jitted train step `(params, opt_state, x, y) -> (params, opt_state, loss)`: a tanh MLP,
//! its softmax cross-entropy, the gradient by `tree::value_and_grad` and `optim::adam`, for the
//! 2-32-2 spirals network (200 points, f64, Adam 0.02) and a 784-256-10 network (batch 128,
//! f32, random data, Adam 1e-3). Shapes, activations and initial scales are those of
//! bench/compare/peers/models_jax.py (JAX + optax's side of the comparison); the random numbers
//! come from a small generator here, which does not change the work. Group `train-step` times a
//! step in the steady state, as a training loop calls it (`donating`: the old parameters and
//! state given up with `Donate`, their buffers recycled for the outputs) and by reference
//! (arguments copied, outputs allocated); group `first-call` times building the step, tracing,
//! transforming, compiling and running it once, with the compile cache emptied each time.
//!
//! Group `optimizer` times the 784-256-10 network's Adam update alone.
//!
//! Group `cnn-step` times the digits CNN's step (models_jax.py's `digits_cnn`: batch 128 of 8×8
//! images, conv 3×3 1→16 SAME, relu, 2×2 max-pool, conv 3×3 16→32 SAME, relu, dense 512→10,
//! softmax cross-entropy, Adam 1e-3, f32), donating, as the `cnn` example runs it.
//!
//! `cargo bench --bench train_step -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrax::optim::{self, AdamState, GradientTransformation};
use ferrax::prelude::*;
use ferrax::tree::{self, Donate, Tree};
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
    /// A `shape` array of normal samples times `scale`, in `dtype`.
    fn normal_array(&mut self, shape: &[usize], scale: f64, dtype: DType) -> Array {
        let n = shape.iter().product::<usize>();
        let v = (0..n).map(|_| scale * self.normal()).collect();
        Array::from_f64(shape, v).unwrap().cast(dtype)
    }
}

/// The two-layer network's parameters (JAX's dict `{"w1", "b1", "w2", "b2"}`).
#[derive(Tree, Clone, Debug)]
struct Mlp<T> {
    w1: T,
    b1: T,
    w2: T,
    b2: T,
}

type State<L> = AdamState<L, Mlp<L>>;

/// Mean softmax cross-entropy of tanh(x·W1 + b1)·W2 + b2 against i32 classes `y`.
fn loss(p: Mlp<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let z = (x.matmul(&p.w1) + &p.b1).tanh().matmul(&p.w2) + &p.b2;
    let classes = z.shape()[1];
    let picked = (&z * y.one_hot(classes, z.dtype())).sum(&[1]);
    (z.logsumexp(&[1]) - picked).mean_all()
}

fn train_step(opt: &optim::Adam) -> tree::TreeJit {
    let opt = opt.clone();
    tree::jit(
        move |p: Mlp<Tensor>, s: State<Tensor>, x: Tensor, y: Tensor| {
            let (l, g): (Tensor, Mlp<Tensor>) = tree::value_and_grad(loss)
                .apply((&p, &x, &y))
                .expect("the loss traces");
            let (u, s) = opt.update(g, s, &p);
            (optim::apply_updates(p, &u), s, l)
        },
    )
}

/// One workload: parameters, data and the optimizer.
struct Workload {
    name: &'static str,
    params: Mlp<Array>,
    x: Array,
    y: Array,
    opt: optim::Adam,
}

/// Two spirals of 100 points each (models_jax.py's `spirals_mlp`), f64, w1 ~ N(0, 1),
/// w2 ~ N(0, 1/32), Adam(0.02).
fn spirals() -> Workload {
    let mut rng = Rng(7);
    let n = 100;
    let (mut xy, mut labels) = (Vec::new(), Vec::new());
    for c in 0..2 {
        for i in 0..n {
            let t = i as f64 / n as f64;
            let r = 0.15 + 0.85 * t;
            let a = 2.5 * std::f64::consts::PI * t + std::f64::consts::PI * c as f64;
            xy.push(r * a.cos() + 0.03 * rng.normal());
            xy.push(r * a.sin() + 0.03 * rng.normal());
            labels.push(c);
        }
    }
    let f = DType::F64;
    Workload {
        name: "spirals-2-32-2-f64",
        params: Mlp {
            w1: rng.normal_array(&[2, 32], 1.0, f),
            b1: rng.normal_array(&[32], 0.0, f),
            w2: rng.normal_array(&[32, 2], 1.0 / 32f64.sqrt(), f),
            b2: rng.normal_array(&[2], 0.0, f),
        },
        x: Array::from_f64([2 * n, 2], xy).unwrap(),
        y: Array::from_i32([2 * n], labels).unwrap(),
        opt: optim::adam(0.02),
    }
}

/// models_jax.py's `mnist_mlp`: batch 128 of N(0, 1) inputs, random classes, f32,
/// w1 ~ N(0, 1/784), w2 ~ N(0, 1/256), Adam(1e-3).
fn mnist() -> Workload {
    let mut rng = Rng(0);
    let f = DType::F32;
    let labels = (0..128).map(|_| (rng.next_u64() % 10) as i32).collect();
    Workload {
        name: "mlp-784-256-10-f32",
        x: rng.normal_array(&[128, 784], 1.0, f),
        y: Array::from_i32([128], labels).unwrap(),
        params: Mlp {
            w1: rng.normal_array(&[784, 256], 1.0 / 784f64.sqrt(), f),
            b1: rng.normal_array(&[256], 0.0, f),
            w2: rng.normal_array(&[256, 10], 1.0 / 256f64.sqrt(), f),
            b2: rng.normal_array(&[10], 0.0, f),
        },
        opt: optim::adam(1e-3),
    }
}

/// Checks the compiled step against the interpreter on the first step, and that 20 steps
/// lower the loss, so that a fast wrong step cannot pass.
fn check(w: &Workload) {
    let step = train_step(&w.opt);
    let s0: State<Array> = w.opt.init(&w.params).unwrap();
    let args = (&w.params, &s0, &w.x, &w.y);
    let (pj, _, lj): (Mlp<Array>, State<Array>, Array) = step.call(args).unwrap();
    let (pi, _, li): (Mlp<Array>, State<Array>, Array) =
        step.tree_fn().call((&w.params, &s0, &w.x, &w.y)).unwrap();
    let (lj, li) = (lj.to_scalar().unwrap(), li.to_scalar().unwrap());
    let tol = if w.params.w1.dtype() == DType::F64 {
        1e-9
    } else {
        1e-4
    };
    assert!(
        (lj - li).abs() <= tol * li.abs(),
        "{}: loss {lj} vs {li}",
        w.name
    );
    for (a, b) in pj.leaves().into_iter().zip(pi.leaves()) {
        for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{}: {x} vs {y}",
                w.name
            );
        }
    }
    let (mut p, mut s) = (w.params.clone(), s0);
    let mut last = lj;
    for _ in 0..20 {
        let (p2, s2, l): (Mlp<Array>, State<Array>, Array) =
            step.call((&p, &s, &w.x, &w.y)).unwrap();
        (p, s, last) = (p2, s2, l.to_scalar().unwrap());
    }
    assert!(last < lj, "{}: loss went from {lj} to {last}", w.name);
}

fn steady(c: &mut Criterion) {
    let mut g = c.benchmark_group("train-step");
    for w in [spirals(), mnist()] {
        check(&w);
        let step = train_step(&w.opt);
        // The step as a training loop runs it: the old parameters and state donated, so their
        // buffers are the next outputs.
        let mut p = Some(w.params.clone());
        let mut s: Option<State<Array>> = Some(w.opt.init(&w.params).unwrap());
        g.bench_function(format!("{}/donating", w.name), |b| {
            b.iter(|| {
                let args = (
                    Donate(p.take().unwrap()),
                    Donate(s.take().unwrap()),
                    &w.x,
                    &w.y,
                );
                let (p2, s2, l): (Mlp<Array>, State<Array>, Array) =
                    step.call_donating(args).unwrap();
                (p, s) = (Some(p2), Some(s2));
                black_box(l)
            })
        });
        // By reference: every call copies the arguments' leaves and allocates its outputs.
        let mut p = w.params.clone();
        let mut s: State<Array> = w.opt.init(&p).unwrap();
        g.bench_function(format!("{}/by-reference", w.name), |b| {
            b.iter(|| {
                let (p2, s2, l): (Mlp<Array>, State<Array>, Array) =
                    step.call((&p, &s, &w.x, &w.y)).unwrap();
                (p, s) = (p2, s2);
                black_box(l)
            })
        });
    }
    g.finish();
}

fn first_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("first-call");
    g.sample_size(10);
    for w in [spirals(), mnist()] {
        let s: State<Array> = w.opt.init(&w.params).unwrap();
        g.bench_function(w.name, |b| {
            b.iter(|| {
                ferrax::jit_backend::clear_cache();
                let step = train_step(&w.opt);
                let out: (Mlp<Array>, State<Array>, Array) =
                    step.call((&w.params, &s, &w.x, &w.y)).unwrap();
                black_box(out)
            })
        });
    }
    g.finish();
}

/// The digits CNN's parameters (models_jax.py's dict `{"k1", "c1", "k2", "c2", "w", "b"}`).
#[derive(Tree, Clone, Debug)]
struct Cnn<T> {
    k1: T,
    c1: T,
    k2: T,
    c2: T,
    w: T,
    b: T,
}

type CnnState<L> = AdamState<L, Cnn<L>>;

/// The CNN's mean cross-entropy on `[n, 1, 8, 8]` images with i32 classes.
fn cnn_loss(p: Cnn<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let bias = |h: Tensor, c: &Tensor| {
        let k = c.shape()[0];
        h + c.reshape(&[1, k, 1, 1])
    };
    let h = bias(x.conv2d(&p.k1, (1, 1), "SAME"), &p.c1).relu();
    let h = h.max_pool(&[2, 2], &[2, 2], Padding::Valid);
    let h = bias(h.conv2d(&p.k2, (1, 1), "SAME"), &p.c2).relu();
    let n = h.shape()[0];
    let z = h.reshape(&[n, 512]).matmul(&p.w) + &p.b;
    -z.log_softmax(1)
        .take_along_axis(&y.expand_dims(1), 1)
        .mean_all()
}

fn cnn_step(c: &mut Criterion) {
    let mut rng = Rng(0);
    let f = DType::F32;
    let x = {
        let v = (0..128 * 64).map(|_| rng.uniform()).collect();
        Array::from_f64([128, 1, 8, 8], v).unwrap().cast(f)
    };
    let y = Array::from_i32(
        [128],
        (0..128).map(|_| (rng.next_u64() % 10) as i32).collect(),
    )
    .unwrap();
    let params = Cnn {
        k1: rng.normal_array(&[16, 1, 3, 3], 1.0 / 3.0, f),
        c1: rng.normal_array(&[16], 0.0, f),
        k2: rng.normal_array(&[32, 16, 3, 3], 1.0 / 12.0, f),
        c2: rng.normal_array(&[32], 0.0, f),
        w: rng.normal_array(&[512, 10], 1.0 / 512f64.sqrt(), f),
        b: rng.normal_array(&[10], 0.0, f),
    };
    let opt = optim::adam(1e-3);
    let step = {
        let opt = opt.clone();
        tree::jit(
            move |p: Cnn<Tensor>, s: CnnState<Tensor>, x: Tensor, y: Tensor| {
                let (l, g): (Tensor, Cnn<Tensor>) = tree::value_and_grad(cnn_loss)
                    .apply((&p, &x, &y))
                    .expect("the loss traces");
                let (u, s) = opt.update(g, s, &p);
                (optim::apply_updates(p, &u), s, l)
            },
        )
    };
    // The compiled step against the interpreter on the first step.
    let s0: CnnState<Array> = opt.init(&params).unwrap();
    let (_, _, lj): (Cnn<Array>, CnnState<Array>, Array) =
        step.call((&params, &s0, &x, &y)).unwrap();
    let (_, _, li): (Cnn<Array>, CnnState<Array>, Array) =
        step.tree_fn().call((&params, &s0, &x, &y)).unwrap();
    let (lj, li) = (lj.to_scalar().unwrap(), li.to_scalar().unwrap());
    assert!((lj - li).abs() <= 1e-4 * li.abs(), "cnn loss {lj} vs {li}");
    let mut g = c.benchmark_group("cnn-step");
    let (mut p, mut s) = (Some(params), Some(s0));
    g.bench_function("digits-cnn-f32/donating", |b| {
        b.iter(|| {
            let args = (Donate(p.take().unwrap()), Donate(s.take().unwrap()), &x, &y);
            let (p2, s2, l): (Cnn<Array>, CnnState<Array>, Array) =
                step.call_donating(args).unwrap();
            (p, s) = (Some(p2), Some(s2));
            black_box(l)
        })
    });
    g.finish();
}

/// The optimizer's pass alone: `optim::adam`'s update and `apply_updates` over the
/// 784-256-10 network's parameters (about 200k), jitted, donating, with a fixed gradient
/// tree. Each parameter tensor's new moments and values come from one fused loop (the moments
/// are stored members of the update's loop), so this times that pass.
fn optimizer(c: &mut Criterion) {
    let w = mnist();
    let opt = w.opt.clone();
    let update = tree::jit(move |p: Mlp<Tensor>, s: State<Tensor>, g: Mlp<Tensor>| {
        let (u, s) = opt.update(g, s, &p);
        (optim::apply_updates(p, &u), s)
    });
    let grads = w.params.clone();
    let mut p = Some(w.params.clone());
    let mut s: Option<State<Array>> = Some(w.opt.init(&w.params).unwrap());
    let mut g = c.benchmark_group("optimizer");
    g.bench_function("adam-784-256-10-f32/donating", |b| {
        b.iter(|| {
            let args = (Donate(p.take().unwrap()), Donate(s.take().unwrap()), &grads);
            let (p2, s2): (Mlp<Array>, State<Array>) = update.call_donating(args).unwrap();
            (p, s) = (Some(p2), Some(s2));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = steady, first_call, cnn_step, optimizer
}
criterion_main!(benches);
