//! Every autodiff result through the JIT: for a table of functions (the seed, tanh, logistic,
//! an MLP loss, Rosenbrock, softmax cross-entropy, and functions touching every op family),
//! `grad`, `value_and_grad`, `grad` nested to order 4, `jvp`, `vjp`, `jacfwd`, `jacrev`,
//! `hessian` and `vmap(grad)` are compiled with `jit` and compared with the interpreter on
//! random inputs: bit for bit, except for functions with matrix products, whose summation
//! order may differ (a tight relative tolerance).

use ferrax::ir::{cond, fori_loop, scan, while_loop};
use ferrax::prelude::*;

/// Deterministic pseudo-random numbers (a 64-bit LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An f64 array of `dims` with elements in `[lo, hi)`.
    fn array(&mut self, dims: &[usize], lo: f64, hi: f64) -> Array {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * self.next()).collect();
        Array::from_f64(dims, v).unwrap()
    }
}

/// Equal bit for bit (any NaN equals any NaN).
fn same_bits(a: &Array, b: &Array) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
}

/// Equal within a relative tolerance.
fn close(a: &Array, b: &Array, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(&p, q)| {
            (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (1.0 + p.abs().max(q.abs()))
        })
}

/// One row of the table: a scalar-valued function of f64 arguments.
struct Case {
    name: &'static str,
    f: Function,
    /// Argument shapes, with the range of their random elements.
    args: Vec<(Vec<usize>, f64, f64)>,
    /// Whether it has matrix products (compared within a tolerance).
    dots: bool,
}

impl Case {
    fn types(&self) -> Vec<Type> {
        self.args
            .iter()
            .map(|(d, _, _)| Type::new(DType::F64, d))
            .collect()
    }

    fn inputs(&self, rng: &mut Rng) -> Vec<Array> {
        self.args
            .iter()
            .map(|(d, lo, hi)| rng.array(d, *lo, *hi))
            .collect()
    }

    /// The same inputs with a leading batch axis of `b`.
    fn batched(&self, rng: &mut Rng, b: usize) -> Vec<Array> {
        self.args
            .iter()
            .map(|(d, lo, hi)| {
                let mut bd = vec![b];
                bd.extend(d);
                rng.array(&bd, *lo, *hi)
            })
            .collect()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.args.len()).collect()
    }
}

/// Compiles `f` for the types of `args`, runs it, and compares with the interpreter.
fn check(case: &Case, what: &str, f: &Function, args: &[Array]) {
    let label = format!("{} / {what}", case.name);
    let want = f
        .call_arrays(args)
        .unwrap_or_else(|e| panic!("{label}: interpreter: {e}"));
    let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
    let j = jit(f.with_default_types(&types)).unwrap_or_else(|e| panic!("{label}: jit: {e}"));
    let got = j
        .call_arrays(args)
        .unwrap_or_else(|e| panic!("{label}: jit call: {e}"));
    assert_eq!(want.len(), got.len(), "{label}: output count");
    for (k, (w, g)) in want.iter().zip(&got).enumerate() {
        let ok = if case.dots {
            close(w, g, 1e-12)
        } else {
            same_bits(w, g)
        };
        assert!(
            ok,
            "{label}: output {k} differs\n interp: {w}\n jit:    {g}"
        );
    }
    // The preallocated-output entry agrees too.
    let refs: Vec<&Array> = args.iter().collect();
    let mut outs: Vec<Array> = want
        .iter()
        .map(|w| Array::full(w.dtype(), w.shape().clone(), 7.0).unwrap())
        .collect();
    j.call_into(&refs, &mut outs)
        .unwrap_or_else(|e| panic!("{label}: call_into: {e}"));
    for (w, g) in want.iter().zip(&outs) {
        assert!(
            if case.dots {
                close(w, g, 1e-12)
            } else {
                same_bits(w, g)
            },
            "{label}: call_into differs"
        );
    }
}

/// Runs every transform of `case` through the JIT on a few random points.
fn check_all_transforms(case: &Case, seed: u64) {
    let mut rng = Rng(seed);
    let all = case.all();
    // Default types matter: `vjp` specialises the function for them up front.
    let f = &case.f.with_default_types(&case.types());
    let out_ty = f.specialize(&case.types()).unwrap().output_types();
    for _ in 0..3 {
        let xs = case.inputs(&mut rng);
        check(case, "f", f, &xs);
        check(case, "grad", &grad(f).wrt(all.clone()), &xs);
        check(
            case,
            "value_and_grad",
            &value_and_grad(f).wrt(all.clone()),
            &xs,
        );
        // Higher orders with respect to the first argument (a scalar for the scalar cases).
        if case.args[0].0.is_empty() {
            let g2 = grad(grad(f));
            let g3 = grad(&g2);
            let g4 = grad(&g3);
            check(case, "grad^2", &g2, &xs);
            check(case, "grad^3", &g3, &xs);
            check(case, "grad^4", &g4, &xs);
        }
        let mut jargs = xs.clone();
        jargs.extend(case.inputs(&mut rng));
        check(case, "jvp", &jvp(f), &jargs);
        let mut vargs = xs.clone();
        for t in &out_ty {
            vargs.push(rng.array(t.dims(), -1.0, 1.0));
        }
        check(case, "vjp", &vjp(f), &vargs);
        check(case, "jacfwd", &jacfwd(f).wrt(all.clone()), &xs);
        check(case, "jacrev", &jacrev(f).wrt(all.clone()), &xs);
        check(case, "hessian", &hessian(f).wrt(all.clone()), &xs);
        let bx = case.batched(&mut rng, 3);
        check(
            case,
            "vmap(grad)",
            &vmap(grad(f).wrt(all.clone())).function(),
            &bx,
        );
    }
}

fn seed() -> Case {
    Case {
        name: "seed",
        f: function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln()),
        args: vec![(vec![], -2.0, 2.0), (vec![], -1.0, 1.0), (vec![], 1.5, 3.0)],
        dots: false,
    }
}

fn tanh() -> Case {
    Case {
        name: "tanh",
        f: function(|x: Tensor| x.tanh()),
        args: vec![(vec![], -2.0, 2.0)],
        dots: false,
    }
}

fn logistic() -> Case {
    Case {
        name: "logistic",
        f: function(|x: Tensor| x.logistic()),
        args: vec![(vec![], -4.0, 4.0)],
        dots: false,
    }
}

fn mlp() -> Case {
    let mut rng = Rng(99);
    let x = rng.array(&[5, 3], -1.0, 1.0);
    let y = rng.array(&[5, 2], -1.0, 1.0);
    Case {
        name: "mlp",
        f: function(move |w1: Tensor, b1: Tensor, w2: Tensor| {
            let x = Tensor::constant(x.clone());
            let y = Tensor::constant(y.clone());
            let h = (x.matmul(&w1) + b1).tanh();
            let e = h.matmul(&w2) - y;
            (e.clone() * e).mean_all()
        }),
        args: vec![
            (vec![3, 4], -1.0, 1.0),
            (vec![4], -0.5, 0.5),
            (vec![4, 2], -1.0, 1.0),
        ],
        dots: true,
    }
}

fn rosenbrock() -> Case {
    Case {
        name: "rosenbrock",
        f: function(|x: Tensor| {
            let a = x.slice_axis(0, 0, 9);
            let b = x.slice_axis(0, 1, 10);
            let d = b - a.clone() * a.clone();
            let o = 1.0 - a;
            (100.0 * d.clone() * d + o.clone() * o).sum_all()
        }),
        args: vec![(vec![10], -1.5, 1.5)],
        dots: false,
    }
}

fn softmax_xent() -> Case {
    let labels = Array::from(vec![2i32, 0, 5]);
    Case {
        name: "softmax_xent",
        f: function(move |logits: Tensor| {
            let y = Tensor::constant(labels.clone()).one_hot(6, DType::F64);
            let lse = logits.logsumexp(&[1]).expand_dims(1);
            let logp = logits - lse;
            -(y * logp).sum(&[1]).mean_all()
        }),
        args: vec![(vec![3, 6], -3.0, 3.0)],
        dots: false,
    }
}

/// Unary, binary, compare/select and convert ops.
fn elementwise_ops() -> Case {
    Case {
        name: "elementwise_ops",
        f: function(|x: Tensor, y: Tensor| {
            let u = x.sin() * y.cos() + x.exp() * 0.1 + (x.clone() * x.clone() + 1.0).ln();
            let v = y.atan() + x.tanh() * y.logistic() + (y.clone() * y.clone() + 1.0).sqrt();
            let w = x.abs().pow(1.5) + x.atan2(&y) + x.maximum(&y) - x.minimum(&(&y * 0.5));
            let s = x.gt(&y).select(&x * &y, &x + &y);
            let c = x.astype(DType::F32).astype(DType::F64) * y.erf();
            let p = x.powi(3) - y.log1p();
            (u + v + w + s + c + p).sum_all()
        }),
        args: vec![(vec![4], -1.0, 1.0), (vec![4], 0.1, 0.9)],
        dots: false,
    }
}

/// Shape ops (broadcast, reshape, transpose, slice, pad, rev, concatenate), reductions,
/// iota and the index family (cumsum, dynamic_slice, gather, scatter_add).
fn structural_ops() -> Case {
    Case {
        name: "structural_ops",
        f: function(|x: Tensor| {
            let m = x.reshape(&[2, 3]);
            let t = m.t();
            let b = x.broadcast_in_dim(&[2, 6], &[1]);
            let s = m.slice(&[0, 1], &[2, 3], &[1, 1]);
            let p = s.pad(&[1, 0], &[0, 1], &[0, 1], 0.0);
            let r = t.rev(&[0]);
            let c = concatenate(&[x.clone(), x.rev(&[0]) * 2.0], 0);
            let i = Tensor::iota(DType::F64, &[6], 0);
            let cs = (x.clone() * i).cumsum(0);
            let idx = Tensor::full_dtype(DType::I32, &[], 2.0);
            let ds = x.dynamic_slice(&[idx], &[3]);
            let g = x.gather(&Tensor::constant(Array::from(vec![4i32, 0, 4, 1])));
            let sa = x.scatter_add(&Tensor::constant(Array::from(vec![1i32, 1, 3])), &ds);
            b.sum_all()
                + p.max(&[0, 1]) * 0.5
                + r.min(&[1]).sum_all()
                + c.prod(&[0]) * 0.01
                + cs.sum_all()
                + g.sum_all()
                + (sa.clone() * sa).mean(&[0])
                + m.sum(&[1]).max(&[0])
                + x.softmax(0).sum_all()
        }),
        args: vec![(vec![6], -1.0, 1.0)],
        dots: false,
    }
}

/// Matrix products in several layouts (dot_general through loops and GEMM).
fn dot_ops() -> Case {
    Case {
        name: "dot_ops",
        f: function(|a: Tensor, b: Tensor| {
            let m = a.matmul(&b);
            let v = a.t().matmul(&a);
            let d = b.dot(&b.t());
            m.sum_all() + v.sum_all() * 0.5 + d.tanh().sum_all()
        }),
        args: vec![(vec![4, 3], -1.0, 1.0), (vec![3, 4], -1.0, 1.0)],
        dots: true,
    }
}

/// Control flow: cond, fori_loop, scan and while_loop.
fn control_ops() -> Case {
    Case {
        name: "control_ops",
        f: function(|x: Tensor, y: Tensor| {
            let c = cond(
                &x.sum_all().gt(0.0),
                |o| vec![o[0].sin() * &o[1]],
                |o| vec![o[0].cos() + &o[1]],
                &[x.clone(), y.clone()],
            );
            let f = fori_loop(
                0,
                5,
                |_i, carry| vec![carry[0].tanh() * 1.1 + &carry[1], carry[1].clone()],
                &[c[0].clone(), y.clone()],
            );
            let (sc, ys) = scan(
                |carry, xi| {
                    let n = &carry[0] * &xi[0] + xi[0].sin();
                    (vec![n.clone()], vec![n * 2.0])
                },
                &[Tensor::scalar(1.0)],
                std::slice::from_ref(&x),
            );
            let w = while_loop(
                |c| c[0].lt(4.0),
                |c| vec![&c[0] + 1.0, c[1].clone() * 0.9 + c[1].sin()],
                &[Tensor::scalar(0.0), f[0].sum_all()],
            );
            sc[0].clone() + ys[0].sum_all() + w[1].clone()
        }),
        args: vec![(vec![3], -1.0, 1.0), (vec![3], -1.0, 1.0)],
        dots: false,
    }
}

fn window_ops() -> Case {
    Case {
        name: "window",
        f: function(|x: Tensor| {
            let p = x.maximum(0.0).max_pool(&[2, 2], &[1, 2], Padding::Same);
            let a = x.avg_pool(&[2, 3], &[1, 1], Padding::Valid);
            let w = Window::new(&[1, 1, 2, 2])
                .with_padding(&[(0, 0), (0, 0), (1, 0), (0, 1)])
                .with_base_dilation(&[1, 1, 2, 1])
                .with_window_dilation(&[1, 1, 1, 2]);
            let m = x.sin().reduce_window_min(&w);
            (&p * &p).sum_all() + a.sum_all() + m.sum_all()
        }),
        args: vec![(vec![1, 2, 4, 5], -1.0, 1.0)],
        dots: false,
    }
}

#[test]
fn window_ops_through_the_jit() {
    check_all_transforms(&window_ops(), 11);
}

#[test]
fn seed_through_the_jit() {
    check_all_transforms(&seed(), 1);
}

#[test]
fn tanh_through_the_jit() {
    check_all_transforms(&tanh(), 2);
}

#[test]
fn logistic_through_the_jit() {
    check_all_transforms(&logistic(), 3);
}

#[test]
fn mlp_loss_through_the_jit() {
    check_all_transforms(&mlp(), 4);
}

#[test]
fn rosenbrock_through_the_jit() {
    check_all_transforms(&rosenbrock(), 5);
}

#[test]
fn softmax_cross_entropy_through_the_jit() {
    check_all_transforms(&softmax_xent(), 6);
}

#[test]
fn elementwise_ops_through_the_jit() {
    check_all_transforms(&elementwise_ops(), 7);
}

#[test]
fn structural_ops_through_the_jit() {
    check_all_transforms(&structural_ops(), 8);
}

#[test]
fn dot_ops_through_the_jit() {
    check_all_transforms(&dot_ops(), 9);
}

#[test]
fn control_flow_through_the_jit() {
    check_all_transforms(&control_ops(), 10);
}

/// Orders 1 to 4 of tanh and of the seed (w.r.t. x) also through the scalar entry, whose
/// typed callable must agree with the interpreter bit for bit.
#[test]
fn nested_gradients_use_the_scalar_entry() {
    let t = function(|x: Tensor| x.tanh());
    let mut g = grad(&t).function();
    for order in 1..=4 {
        let j = jit(&g).unwrap();
        let fast = j.compiled().unwrap().as_fn1::<f64>().unwrap();
        for &x in &[-1.5, -0.3, 0.0, 0.7, 2.0] {
            let want: f64 = g.call(x).unwrap();
            assert_eq!(
                fast.call(x).to_bits(),
                want.to_bits(),
                "order {order} at {x}"
            );
        }
        g = grad(&g).function();
    }
    let seed = seed().f;
    let d = grad(&seed).wrt((0, 1, 2));
    let j = jit(&d).unwrap();
    let want: (f64, f64, f64) = d.call((1.0, 2.0, 3.0)).unwrap();
    let got: (f64, f64, f64) = j.call((1.0, 2.0, 3.0)).unwrap();
    assert_eq!(
        (got.0.to_bits(), got.1.to_bits(), got.2.to_bits()),
        (want.0.to_bits(), want.1.to_bits(), want.2.to_bits())
    );
    assert!((got.0 - 3.6339699542969074).abs() <= 1e-15 * 3.7);
}

/// Reverse mode through a 1000-iteration `while_loop` (Newton's method for √x, run for a
/// fixed count), compiled: the tape grows on the heap and the result matches the interpreter
/// and 1/(2√2) at x = 2.
#[test]
fn reverse_mode_through_a_thousand_iteration_while_loop() {
    let sqrt = function(|x: Tensor| {
        let r = while_loop(
            |c| c[0].lt(1000.0),
            |c| {
                let y = &c[1];
                vec![&c[0] + 1.0, (y.clone() + &c[2] / y) * 0.5, c[2].clone()]
            },
            &[Tensor::scalar(0.0), x.clone(), x],
        );
        r[1].clone()
    });
    let d = grad(&sqrt);
    let j = jit(&d).unwrap();
    for x in [0.5, 2.0, 9.0] {
        let want: f64 = d.call(x).unwrap();
        let got: f64 = j.call(x).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "at {x}");
    }
    let got: f64 = j.call(2.0).unwrap();
    assert!((got - 0.35355339059327373).abs() < 1e-15, "{got}");
}
