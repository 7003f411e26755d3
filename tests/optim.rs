//! `ferrax::optim` against its textbook updates written in plain Rust f64, and against optax's
//! numbers on a fixed problem; interpreter against JIT; f32 and f64 parameters; the state's
//! structure and hyperparameter leaves (a changed learning rate does not recompile); structure
//! errors naming the key path.

use ferrax::optim::{self, GradientTransformation};
use ferrax::prelude::*;
use ferrax::tree::{self, Tree};
use std::sync::Mutex;

/// The fixed problem: two leaves, as optax's `{"a": f64[3], "b": f64[2,2]}`.
#[derive(Tree, Clone, Debug, PartialEq)]
struct Params<T> {
    a: T,
    b: T,
}

/// Tests that count compiles hold this lock, and so do all tests that compile.
static JIT: Mutex<()> = Mutex::new(());

fn jit_lock() -> std::sync::MutexGuard<'static, ()> {
    JIT.lock().unwrap_or_else(|e| e.into_inner())
}

const P0: [f64; 7] = [0.5, -1.5, 2.0, 1.0, -0.25, 0.75, 3.0];

/// The gradient at step `t` (from 0), flattened as `a` then `b` (the optax script's).
fn grads_at(t: usize) -> [f64; 7] {
    let t = t as f64;
    let a = [0.3, -0.8, 1.1].map(|x| x * (1.0 - 0.2 * t) + 0.05 * t);
    let b = [-0.6, 0.4, 0.9, -1.3].map(|x| x * (1.0 + 0.3 * t) - 0.02 * t);
    [a[0], a[1], a[2], b[0], b[1], b[2], b[3]]
}

fn tree_of(v: &[f64], dtype: DType) -> Params<Array> {
    Params {
        a: Array::from_f64([3], v[..3].to_vec()).unwrap().cast(dtype),
        b: Array::from_f64([2, 2], v[3..].to_vec())
            .unwrap()
            .cast(dtype),
    }
}

fn flat(p: &Params<Array>) -> Vec<f64> {
    let mut v = p.a.to_f64_vec();
    v.extend(p.b.to_f64_vec());
    v
}

/// The train step of an optimizer on given gradients: `(params, state, grads) -> (params,
/// state)`.
fn step_fn<O: GradientTransformation>(opt: &O) -> tree::TreeFn {
    let opt = opt.clone();
    tree::function(
        move |p: Params<Tensor>, s: O::State<Tensor, Params<Tensor>>, g: Params<Tensor>| {
            let (u, s) = opt.update(g, s, &p);
            (optim::apply_updates(p, &u), s)
        },
    )
}

type State<O> = <O as GradientTransformation>::State<Array, Params<Array>>;

/// Runs `steps` steps of `opt` from `P0` in `dtype`, through the interpreter and through the
/// JIT; checks that they agree and returns the JIT's parameters and state.
fn run<O: GradientTransformation>(opt: &O, dtype: DType, steps: usize) -> (Vec<f64>, State<O>) {
    let f = step_fn(opt);
    let _guard = jit_lock();
    let j = tree::jit(f.clone());
    let p0 = tree_of(&P0, dtype);
    let (mut p, mut s): (_, State<O>) = (p0.clone(), opt.init(&p0).unwrap());
    let (mut pj, mut sj): (_, State<O>) = (p0.clone(), opt.init(&p0).unwrap());
    // The same steps with the parameters and state donated (updated in place where the JIT
    // allows it), which must give the same bits.
    let (mut pd, mut sd): (_, State<O>) = (p0.clone(), opt.init(&p0).unwrap());
    for t in 0..steps {
        let g = tree_of(&grads_at(t), dtype);
        (p, s) = f.call((&p, &s, &g)).unwrap();
        (pj, sj) = j.call((&pj, &sj, &g)).unwrap();
        (pd, sd) = j
            .call_donating((tree::Donate(pd), tree::Donate(sd), &g))
            .unwrap();
        assert_eq!(flat(&pd), flat(&pj), "donated against by reference");
        let (ld, lj) = (sd.leaves(), sj.leaves());
        assert_eq!(ld.len(), lj.len());
        for (x, y) in ld.iter().zip(&lj) {
            assert_eq!(
                x.to_f64_vec(),
                y.to_f64_vec(),
                "donated state against by reference"
            );
        }
        assert_eq!(p.a.dtype(), dtype);
        let tol = if dtype == DType::F64 { 1e-13 } else { 1e-5 };
        assert_close(&flat(&pj), &flat(&p), tol, "JIT against interpreter");
    }
    (flat(&pj), sj)
}

#[track_caller]
fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {k}: got {g}, want {w} (tolerance {tol:e})\n got {got:?}\nwant {want:?}"
        );
    }
}

// ----- textbook updates, plain f64 -----

/// Adam (AdamW with `wd`, clipping the gradients' global norm to `clip` first) with the rate
/// `lr(t)` at step `t` from 0.
fn textbook_adam(
    lr: &dyn Fn(usize) -> f64,
    (b1, b2, eps): (f64, f64, f64),
    wd: f64,
    clip: Option<f64>,
    steps: usize,
) -> Vec<f64> {
    let mut p = P0.to_vec();
    let (mut m, mut v) = (vec![0.0; 7], vec![0.0; 7]);
    for t in 0..steps {
        let mut g = grads_at(t).to_vec();
        if let Some(c) = clip {
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm >= c {
                g.iter_mut().for_each(|x| *x *= c / norm);
            }
        }
        let n = (t + 1) as i32;
        for k in 0..7 {
            m[k] = b1 * m[k] + (1.0 - b1) * g[k];
            v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
            let m_hat = m[k] / (1.0 - b1.powi(n));
            let v_hat = v[k] / (1.0 - b2.powi(n));
            p[k] -= lr(t) * (m_hat / (v_hat.sqrt() + eps) + wd * p[k]);
        }
    }
    p
}

/// SGD with optional heavy-ball or Nesterov momentum.
fn textbook_sgd(lr: f64, momentum: Option<f64>, nesterov: bool, steps: usize) -> Vec<f64> {
    let mut p = P0.to_vec();
    let mut trace = [0.0; 7];
    for t in 0..steps {
        let g = grads_at(t);
        for k in 0..7 {
            let d = match momentum {
                None => g[k],
                Some(mu) => {
                    trace[k] = g[k] + mu * trace[k];
                    if nesterov {
                        g[k] + mu * trace[k]
                    } else {
                        trace[k]
                    }
                }
            };
            p[k] -= lr * d;
        }
    }
    p
}

/// RMSprop, `eps` inside the root or outside.
fn textbook_rmsprop(lr: f64, decay: f64, eps: f64, inside: bool, steps: usize) -> Vec<f64> {
    let mut p = P0.to_vec();
    let mut nu = [0.0; 7];
    for t in 0..steps {
        let g = grads_at(t);
        for k in 0..7 {
            nu[k] = decay * nu[k] + (1.0 - decay) * g[k] * g[k];
            let denom = if inside {
                (nu[k] + eps).sqrt()
            } else {
                nu[k].sqrt() + eps
            };
            p[k] -= lr * g[k] / denom;
        }
    }
    p
}

/// optax's warm-up cosine schedule (0 → 0.1 over 2 steps, → 0.01 at step 5), by hand.
fn warmup_cosine(t: usize) -> f64 {
    let t = t as f64;
    if t < 2.0 {
        0.1 * t / 2.0
    } else {
        let u = (t - 2.0).min(3.0) / 3.0;
        0.01 + (0.1 - 0.01) * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
    }
}

// ----- optax's numbers -----
// From optax 0.2.8 (jax 0.10.2, x64 enabled): 5 steps from P0 with the gradients of
// `grads_at`, by a script that is not part of the repository (`optax.adam(0.1)`,
// `optax.adamw(0.1, weight_decay=0.05)`, `optax.sgd(0.1, momentum=0.9, nesterov=True)`,
// `optax.sgd(0.1, momentum=0.9)`, `optax.rmsprop(0.1)`, and
// `optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))` with
// `sched = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.01)`).

const OPTAX_ADAM: [f64; 7] = [
    0.0017827818664089001,
    -1.053613517543829,
    1.517219357805239,
    1.499491922648982,
    -0.7510438817983618,
    0.24943199260859616,
    3.499854423647804,
];
const OPTAX_ADAMW: [f64; 7] = [
    -0.005624759128322096,
    -1.0212946498960922,
    1.4726318122048492,
    1.4697735172181654,
    -0.7398793432269948,
    0.2358423981916479,
    3.420631249423408,
];
const OPTAX_SGD_NESTEROV: [f64; 7] = [
    0.0218123999999999,
    -0.7143898999999998,
    0.6026867999999999,
    2.5438434,
    -1.1902186000000001,
    -1.4322496000000007,
    6.282686800000001,
];
const OPTAX_SGD_MOMENTUM: [f64; 7] = [
    0.1242359999999999,
    -0.8382109999999997,
    0.8696519999999996,
    2.1598260000000002,
    -0.9613540000000002,
    -0.8969440000000002,
    5.469652000000001,
];
const OPTAX_RMSPROP: [f64; 7] = [
    -0.535955727480162,
    -0.8256054762932918,
    1.1108976151342618,
    2.222826562886373,
    -1.4468853256000078,
    -0.45617962582485694,
    4.217708338311048,
];
const OPTAX_CLIP_ADAM_WARMUP_COSINE: [f64; 7] = [
    0.24773591398247424,
    -1.2782598506015523,
    1.7595245777909108,
    1.2611403261198382,
    -0.5108528120855008,
    0.4889897161310889,
    3.2611223929783835,
];
/// The same two runs in f32 (x64 disabled).
const OPTAX_ADAM_F32: [f64; 7] = [
    0.0017866715788841248,
    -1.053617000579834,
    1.5172232389450073,
    1.499488115310669,
    -0.7510399222373962,
    0.2494359314441681,
    3.4998507499694824,
];
const OPTAX_CLIP_ADAM_WARMUP_COSINE_F32: [f64; 7] = [
    0.24773776531219482,
    -1.2782615423202515,
    1.759526252746582,
    1.2611384391784668,
    -0.5108508467674255,
    0.4889916181564331,
    3.261120319366455,
];

#[test]
fn adam_matches_textbook_and_optax() {
    let (p, s) = run(&optim::adam(0.1), DType::F64, 5);
    let want = textbook_adam(&|_| 0.1, (0.9, 0.999, 1e-8), 0.0, None, 5);
    assert_close(&p, &want, 1e-13, "adam against the textbook");
    assert_close(&p, &OPTAX_ADAM, 1e-13, "adam against optax");
    // The state: named fields, a step count, the moments in the parameters' structure.
    assert_eq!(s.count.to_scalar().unwrap(), 5.0);
    assert_eq!(s.count.dtype(), DType::I32);
    assert_eq!(s.learning_rate.to_scalar().unwrap(), 0.1);
    assert_eq!(s.mu.b.shape().dims(), [2, 2]);
    assert!(s.weight_decay.is_none());
    let paths: Vec<String> = tree::tree_paths(&s).iter().map(|k| k.to_string()).collect();
    assert_eq!(
        paths,
        [
            "count",
            "learning_rate",
            "b1",
            "b2",
            "eps",
            "mu.a",
            "mu.b",
            "nu.a",
            "nu.b"
        ]
    );
}

#[test]
fn adam_in_f32_follows_the_params_dtype() {
    // Both runs round differently in f32 (the bias correction 1 − 0.999 loses about 5 digits
    // of 0.999's precision), by about 4e-6 each from the f64 result here.
    let (p, s) = run(&optim::adam(0.1), DType::F32, 5);
    assert_close(&p, &OPTAX_ADAM_F32, 1e-5, "adam f32 against optax f32");
    assert_close(&p, &OPTAX_ADAM, 1e-5, "adam f32 against optax f64");
    assert_eq!(s.mu.a.dtype(), DType::F32);
    assert_eq!(s.learning_rate.dtype(), DType::F32);
    assert_eq!(s.count.dtype(), DType::I32);
    let (p, _) = run(
        &optim::chain((
            optim::clip_by_global_norm(1.0),
            optim::adam(optim::warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.01)),
        )),
        DType::F32,
        5,
    );
    assert_close(
        &p,
        &OPTAX_CLIP_ADAM_WARMUP_COSINE_F32,
        1e-5,
        "clip∘adam f32 against optax f32",
    );
}

#[test]
fn adamw_matches_textbook_and_optax() {
    let (p, s) = run(&optim::adamw(0.1, 0.05), DType::F64, 5);
    let want = textbook_adam(&|_| 0.1, (0.9, 0.999, 1e-8), 0.05, None, 5);
    assert_close(&p, &want, 1e-13, "adamw against the textbook");
    assert_close(&p, &OPTAX_ADAMW, 1e-13, "adamw against optax");
    assert_eq!(s.weight_decay.unwrap().to_scalar().unwrap(), 0.05);
    // Other betas and eps reach the update.
    let opt = optim::adam(0.05).b1(0.5).b2(0.9).eps(1e-3);
    let (p, _) = run(&opt, DType::F64, 4);
    let want = textbook_adam(&|_| 0.05, (0.5, 0.9, 1e-3), 0.0, None, 4);
    assert_close(&p, &want, 1e-13, "adam(b1 0.5, b2 0.9, eps 1e-3)");
}

#[test]
fn sgd_with_and_without_momentum_matches_textbook_and_optax() {
    let (p, s) = run(&optim::sgd(0.1), DType::F64, 5);
    assert_close(&p, &textbook_sgd(0.1, None, false, 5), 1e-14, "sgd");
    assert!(s.trace.is_none() && s.momentum.is_none());
    let (p, s) = run(&optim::sgd(0.1).momentum(0.9), DType::F64, 5);
    let want = textbook_sgd(0.1, Some(0.9), false, 5);
    assert_close(&p, &want, 1e-14, "sgd momentum against the textbook");
    assert_close(&p, &OPTAX_SGD_MOMENTUM, 1e-14, "sgd momentum against optax");
    assert_eq!(s.trace.unwrap().a.shape().dims(), [3]);
    let (p, _) = run(&optim::sgd(0.1).momentum(0.9).nesterov(true), DType::F64, 5);
    let want = textbook_sgd(0.1, Some(0.9), true, 5);
    assert_close(&p, &want, 1e-14, "sgd nesterov against the textbook");
    assert_close(&p, &OPTAX_SGD_NESTEROV, 1e-14, "sgd nesterov against optax");
}

#[test]
fn rmsprop_matches_textbook_and_optax() {
    let (p, _) = run(&optim::rmsprop(0.1), DType::F64, 5);
    let want = textbook_rmsprop(0.1, 0.9, 1e-8, true, 5);
    assert_close(&p, &want, 1e-13, "rmsprop against the textbook");
    assert_close(&p, &OPTAX_RMSPROP, 1e-13, "rmsprop against optax");
    let opt = optim::rmsprop(0.02).decay(0.5).eps(1e-2).eps_in_sqrt(false);
    let (p, _) = run(&opt, DType::F64, 4);
    let want = textbook_rmsprop(0.02, 0.5, 1e-2, false, 4);
    assert_close(&p, &want, 1e-13, "rmsprop, eps outside the root");
}

#[test]
fn clip_then_adam_with_warmup_cosine_matches_textbook_and_optax() {
    let sched = optim::warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.01);
    let opt = optim::chain((optim::clip_by_global_norm(1.0), optim::adam(sched)));
    let (p, s) = run(&opt, DType::F64, 5);
    let want = textbook_adam(&warmup_cosine, (0.9, 0.999, 1e-8), 0.0, Some(1.0), 5);
    assert_close(&p, &want, 1e-13, "clip∘adam against the textbook");
    // optax evaluates a schedule at its i32 count in f32 even with x64 enabled, so its rates
    // are the f32 roundings of ours: the same textbook run with those rates gives its numbers.
    let rounded = textbook_adam(
        &|t| warmup_cosine(t) as f32 as f64,
        (0.9, 0.999, 1e-8),
        0.0,
        Some(1.0),
        5,
    );
    assert_close(
        &rounded,
        &OPTAX_CLIP_ADAM_WARMUP_COSINE,
        1e-13,
        "clip∘adam with f32 rates against optax",
    );
    assert_close(
        &p,
        &OPTAX_CLIP_ADAM_WARMUP_COSINE,
        1e-8,
        "clip∘adam against optax",
    );
    // The state of a chain is the tuple of its links' states; the rate of the latest step
    // (step 4 from 0) is in the Adam link's state.
    assert_eq!(s.0.max_norm.to_scalar().unwrap(), 1.0);
    let lr = s.1.learning_rate.to_scalar().unwrap();
    assert!((lr - warmup_cosine(4)).abs() < 1e-15, "{lr}");
    // Clipping alone: the first gradient (norm < 3) passes at max_norm 3, is scaled at 0.5.
    for max_norm in [3.0, 0.5] {
        let (p, _) = run(
            &optim::chain((optim::clip_by_global_norm(max_norm), optim::sgd(1.0))),
            DType::F64,
            1,
        );
        let g = grads_at(0);
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = if norm < max_norm {
            1.0
        } else {
            max_norm / norm
        };
        let want: Vec<f64> = P0.iter().zip(g).map(|(p, g)| p - scale * g).collect();
        assert_close(&p, &want, 1e-14, "clip_by_global_norm");
    }
}

#[test]
fn schedules_match_optax_on_the_host_and_in_the_state() {
    // From optax 0.2.8 (steps 0, 1, ...).
    let cases: [(optim::Schedule, &[f64]); 4] = [
        (
            optim::warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.01),
            &[
                0.0,
                0.05,
                0.1,
                0.07750000000000001,
                0.032500000000000015,
                0.01,
                0.01,
                0.01,
            ],
        ),
        (
            optim::exponential_decay(0.1, 2, 0.5),
            &[
                0.1,
                0.07071067811865477,
                0.05,
                0.03535533905932738,
                0.025,
                0.01767766952966369,
            ],
        ),
        (
            optim::Schedule::ExponentialDecay {
                init_value: 0.1,
                transition_steps: 2,
                decay_rate: 0.5,
                transition_begin: 1,
                staircase: true,
                end_value: Some(0.03),
            },
            &[0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03],
        ),
        (
            optim::cosine_decay_schedule(0.1, 4, 0.1),
            &[
                0.1,
                0.08681980515339464,
                0.05500000000000001,
                0.023180194846605367,
                0.010000000000000002,
                0.010000000000000002,
            ],
        ),
    ];
    for (sched, want) in cases {
        let host: Vec<f64> = (0..want.len() as u64).map(|t| sched.value(t)).collect();
        assert_close(&host, want, 1e-15, &format!("{sched:?} on the host"));
        // In the trace: the rate used at step t is the state's learning_rate after it.
        let opt = optim::sgd(sched.clone());
        let f = step_fn(&opt);
        let mut p = tree_of(&P0, DType::F64);
        let mut s: State<optim::Sgd> = opt.init(&p).unwrap();
        assert_eq!(s.learning_rate.to_scalar().unwrap(), want[0]);
        let mut traced = Vec::new();
        for t in 0..want.len() {
            (p, s) = f
                .call((&p, &s, &tree_of(&grads_at(t), DType::F64)))
                .unwrap();
            traced.push(s.learning_rate.to_scalar().unwrap());
        }
        assert_close(&traced, want, 1e-15, &format!("{sched:?} in the trace"));
    }
    // A constant schedule is the state's leaf.
    assert!(optim::constant_schedule(0.3).is_constant());
    assert_eq!(optim::constant_schedule(0.3).value(1000), 0.3);
    // Degenerate lengths are constants, not divisions by zero.
    assert_eq!(optim::exponential_decay(0.1, 0, 0.5).value(7), 0.1);
    assert_eq!(optim::cosine_decay_schedule(0.1, 0, 0.25).value(3), 0.025);
    let s = optim::warmup_cosine_decay_schedule(0.0, 0.1, 0, 0, 0.01);
    assert!((s.value(0) - 0.01).abs() < 1e-17 && (s.value(9) - 0.01).abs() < 1e-17);
}

#[test]
fn changing_the_learning_rate_between_calls_does_not_recompile() {
    #[derive(Tree, Clone, Debug)]
    struct Net<T> {
        w: T,
        b: T,
    }
    let opt = optim::adam(0.1);
    let o = opt.clone();
    let step = tree::jit(
        move |p: Net<Tensor>, s: optim::AdamState<Tensor, Net<Tensor>>, x: Tensor| {
            let loss = |p: Net<Tensor>, x: Tensor| (&p.w * &x + &p.b).square().sum_all();
            let g: Net<Tensor> = tree::grad(loss).apply((&p, &x)).unwrap();
            let (u, s) = o.update(g, s, &p);
            (optim::apply_updates(p, &u), s)
        },
    );
    type S = optim::AdamState<Array, Net<Array>>;
    let p = Net {
        w: Array::from(vec![1.0, 2.0]),
        b: Array::from(vec![0.5, -0.5]),
    };
    let x = Array::from(vec![0.3, -0.7]);
    let s: S = opt.init(&p).unwrap();
    let _guard = jit_lock();
    // The first call compiles.
    let (p1, s1): (Net<Array>, S) = step.call((&p, &s, &x)).unwrap();
    let before = ferrax::jit_backend::stats();
    // Another learning rate in the state: the same code, a step ten times as long (Adam's
    // first step is -lr · sign(g), up to eps).
    let mut s_fast = s.clone();
    s_fast.learning_rate = Array::scalar(DType::F64, 1.0);
    let (p2, s2): (Net<Array>, S) = step.call((&p, &s_fast, &x)).unwrap();
    // And on from there with a third rate.
    let mut s3 = s1.clone();
    s3.learning_rate = Array::scalar(DType::F64, 0.01);
    let (_p3, s3): (Net<Array>, S) = step.call((&p1, &s3, &x)).unwrap();
    let after = ferrax::jit_backend::stats();
    assert_eq!(after.compiles, before.compiles, "a changed rate recompiled");
    assert_eq!(
        after.cache_hits, before.cache_hits,
        "a changed rate re-traced"
    );
    for (k, (w0, (w1, w2))) in
        p.w.to_f64_vec()
            .iter()
            .zip(p1.w.to_f64_vec().iter().zip(p2.w.to_f64_vec()))
            .enumerate()
    {
        let (d1, d2) = (w1 - w0, w2 - w0);
        assert!((d1.abs() - 0.1).abs() < 1e-6, "w[{k}] moved {d1}");
        assert!((d2 - 10.0 * d1).abs() < 1e-6, "w[{k}] moved {d2} at rate 1");
    }
    assert_eq!(s2.learning_rate.to_scalar().unwrap(), 1.0);
    assert_eq!(s3.learning_rate.to_scalar().unwrap(), 0.01);
    assert_eq!(s3.count.to_scalar().unwrap(), 2.0);
}

#[test]
fn init_inside_a_trace_agrees_with_init_on_arrays() {
    let opt = optim::adamw(0.1, 0.05);
    let o = opt.clone();
    // One step from a state made inside the trace ...
    let fresh = tree::function(move |p: Params<Tensor>, g: Params<Tensor>| {
        let s = o.init(&p).unwrap();
        let (u, s) = o.update(g, s, &p);
        (optim::apply_updates(p, &u), s)
    });
    let p0 = tree_of(&P0, DType::F64);
    let g = tree_of(&grads_at(0), DType::F64);
    let (p1, s1): (Params<Array>, State<optim::Adam>) = fresh.call((&p0, &g)).unwrap();
    // ... equals one step from a state made from arrays.
    let s0: State<optim::Adam> = opt.init(&p0).unwrap();
    let (p1b, s1b): (Params<Array>, State<optim::Adam>) =
        step_fn(&opt).call((&p0, &s0, &g)).unwrap();
    assert_eq!(p1, p1b);
    assert_eq!(s1, s1b);
}

#[test]
fn structure_mismatches_are_errors_naming_the_path() {
    let opt = optim::adam(0.1);
    let o = opt.clone();
    let f = tree::function(
        move |p: Vec<Tensor>, s: optim::AdamState<Tensor, Vec<Tensor>>, g: Vec<Tensor>| {
            let (u, s) = o.update(g, s, &p);
            (optim::apply_updates(p, &u), s)
        },
    );
    let p = vec![Array::from(1.0), Array::from(2.0)];
    let s = opt.init(&p).unwrap();
    let g = vec![Array::from(1.0), Array::from(2.0), Array::from(3.0)];
    type S = optim::AdamState<Array, Vec<Array>>;
    let e = f.call::<_, (Vec<Array>, S)>((&p, &s, &g)).unwrap_err();
    assert!(
        e.message.contains("adam: params[2]: missing"),
        "{}",
        e.message
    );
    // apply_updates on its own.
    let a = tree::function(|p: Vec<Tensor>, u: Vec<Tensor>| optim::apply_updates(p, &u));
    let e = a.call::<_, Vec<Array>>((&p, &g)).unwrap_err();
    assert!(
        e.message.contains("apply_updates: updates[2]: unexpected"),
        "{}",
        e.message
    );
}

#[test]
fn hyperparameters_edited_in_the_state_are_used() {
    // AdamW made with one set of hyperparameters, run with another set written into its
    // state: the result is the textbook run with the state's values, so none of them is a
    // constant of the step.
    let opt = optim::adamw(0.1, 0.05);
    let f = step_fn(&opt);
    let mut p = tree_of(&P0, DType::F64);
    let mut s: State<optim::Adam> = opt.init(&p).unwrap();
    let hyper = |v: f64| Array::scalar(DType::F64, v);
    s.learning_rate = hyper(0.05);
    (s.b1, s.b2, s.eps) = (hyper(0.5), hyper(0.9), hyper(1e-3));
    s.weight_decay = Some(hyper(0.2));
    for t in 0..4 {
        (p, s) = f
            .call((&p, &s, &tree_of(&grads_at(t), DType::F64)))
            .unwrap();
    }
    let want = textbook_adam(&|_| 0.05, (0.5, 0.9, 1e-3), 0.2, None, 4);
    assert_close(&flat(&p), &want, 1e-13, "adamw with edited hyperparameters");
    // The same for SGD's momentum and RMSprop's decay.
    let opt = optim::sgd(0.1).momentum(0.9).nesterov(true);
    let f = step_fn(&opt);
    let mut p = tree_of(&P0, DType::F64);
    let mut s: State<optim::Sgd> = opt.init(&p).unwrap();
    s.momentum = Some(hyper(0.5));
    for t in 0..4 {
        (p, s) = f
            .call((&p, &s, &tree_of(&grads_at(t), DType::F64)))
            .unwrap();
    }
    let want = textbook_sgd(0.1, Some(0.5), true, 4);
    assert_close(&flat(&p), &want, 1e-14, "sgd with an edited momentum");
    let opt = optim::rmsprop(0.1);
    let f = step_fn(&opt);
    let mut p = tree_of(&P0, DType::F64);
    let mut s: State<optim::Rmsprop> = opt.init(&p).unwrap();
    (s.decay, s.eps) = (hyper(0.5), hyper(1e-2));
    for t in 0..4 {
        (p, s) = f
            .call((&p, &s, &tree_of(&grads_at(t), DType::F64)))
            .unwrap();
    }
    let want = textbook_rmsprop(0.1, 0.5, 1e-2, true, 4);
    assert_close(&flat(&p), &want, 1e-13, "rmsprop with an edited decay");
}
