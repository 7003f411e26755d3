//! Taylor mode: every jet rule against nested `jvp` along a random polynomial path to order 6
//! (f64, 1e-10 relative to the size of each order's coefficients), through control flow and
//! custom_jvp; the conveniences (`derivatives`, `taylor_coefficients`, the collapsed
//! Laplacian against the trace of the Hessian); composition with jit-free transforms (vmap
//! against a loop, grad of a function calling jet against finite differences, jet of grad);
//! and the error paths.

mod common;

use common::{build, f64t, Rng};
use ferrax_ir::control_api::{cond, fori_loop, scan, switch, while_loop};
use ferrax_ir::interp::eval;
use ferrax_ir::ops::{
    BinaryOp, CompareOp, ConvertOp, DotGeneral, IndexOp, ReduceOp, ShapeOp, UnaryOp,
};
use ferrax_ir::{function, Array, Builder, DType, Dims, Function, Graph, Op, Shape, Tensor, Type};
use ferrax_transforms::api::{
    checkpoint, custom_jvp, custom_vjp, derivatives, grad, hessian, jet, laplacian,
    series_to_taylor, taylor_coefficients, taylor_to_series, vmap,
};
use ferrax_transforms::{inline, jet_graph, jvp_graph};

const K: usize = 6;

fn factorial(n: usize) -> f64 {
    (1..=n).map(|i| i as f64).product()
}

/// The graph `t ↦ f(x0 + Σ_j c_j t^j / j!)` (integer arguments stay fixed).
fn path_graph(f: &Graph, x0: &[Array], coefs: &[Vec<Array>]) -> Graph {
    let mut b = Builder::new();
    let t = b.param(f64t(&[]));
    let mut args = Vec::new();
    for (i, x) in x0.iter().enumerate() {
        let mut v = b.constant(x.clone());
        if x.dtype().is_float() {
            for (j, c) in coefs[i].iter().enumerate() {
                let p = b
                    .push1(Op::Unary(UnaryOp::IntegerPow(j as i32 + 1)), &[t])
                    .unwrap();
                let p = b
                    .push1(
                        Op::Shape(ShapeOp::BroadcastInDim {
                            shape: x.shape().clone(),
                            dims: Box::default(),
                        }),
                        &[p],
                    )
                    .unwrap();
                let scaled: Vec<f64> = c
                    .to_f64_vec()
                    .iter()
                    .map(|e| e / factorial(j + 1))
                    .collect();
                let cv = b.constant(Array::from_f64(x.shape().clone(), scaled).unwrap());
                let term = b.push1(Op::Binary(BinaryOp::Mul), &[cv, p]).unwrap();
                v = b.push1(Op::Binary(BinaryOp::Add), &[v, term]).unwrap();
            }
        }
        args.push(v);
    }
    let outs = inline(&mut b, f, &args).unwrap();
    b.finish(&outs)
}

/// The derivative of a graph of one scalar `t` (all outputs) by `jvp` with tangent 1.
fn derivative(g: &Graph) -> Graph {
    let j = jvp_graph(g, 1).unwrap();
    let m = g.outputs().len();
    let mut b = Builder::new();
    let t = b.param(f64t(&[]));
    let one = b.constant(Array::scalar(DType::F64, 1.0));
    let outs = inline(&mut b, &j, &[t, one]).unwrap();
    ferrax_transforms::simplify(&b.finish(&outs[m..]))
}

/// Checks `jet_graph(f)` against nested jvp along a random path with the given argument values.
fn check_path(f: &Graph, x0: &[Array], rng: &mut Rng, what: &str) {
    let n = x0.len();
    let coefs: Vec<Vec<Array>> = x0
        .iter()
        .map(|x| {
            (0..K)
                .map(|_| {
                    rng.array(&x.ty().with_dtype(DType::F64), -1.0, 1.0)
                        .cast(x.dtype())
                })
                .collect()
        })
        .collect();
    let jg = jet_graph(f, n, K).unwrap();
    let mut args: Vec<Array> = x0.to_vec();
    for c in &coefs {
        args.extend(c.iter().cloned());
    }
    let got = eval(&jg, &args).unwrap();
    let m = f.outputs().len();
    let mut g = path_graph(f, x0, &coefs);
    let t0 = [Array::scalar(DType::F64, 0.0)];
    let y0 = eval(&g, &t0).unwrap();
    for o in 0..m {
        assert!(
            got[o].bits_eq(&y0[o]) || close_all(&got[o], &y0[o], 1e-12),
            "{what}: primal {o}: {:?} vs {:?}",
            got[o].to_f64_vec(),
            y0[o].to_f64_vec()
        );
    }
    for j in 1..=K {
        g = derivative(&g);
        let want = eval(&g, &t0).unwrap();
        for o in 0..m {
            if !f.ty(f.outputs()[o]).dtype.is_float() {
                continue;
            }
            let have = &got[m + o * K + j - 1];
            assert!(
                close_all(have, &want[o], 1e-10),
                "{what}: output {o}, order {j}: jet {:?} vs nested jvp {:?}",
                have.to_f64_vec(),
                want[o].to_f64_vec()
            );
        }
    }
}

/// Whether two arrays agree within `rtol` relative to the largest magnitude among them.
fn close_all(a: &Array, b: &Array, rtol: f64) -> bool {
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = b.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| (x - y).abs() <= rtol * scale || (x.is_nan() && y.is_nan()))
}

fn un_graph(op: UnaryOp, dims: &[usize]) -> Graph {
    build(&[f64t(dims)], |b, ps| {
        vec![b.push1(Op::Unary(op), &[ps[0]]).unwrap()]
    })
}

fn bin_graph(op: BinaryOp) -> Graph {
    build(&[f64t(&[3]), f64t(&[3])], |b, ps| {
        vec![b.push1(Op::Binary(op), &[ps[0], ps[1]]).unwrap()]
    })
}

/// A domain where every function of the family is smooth and defined.
fn unary_domain(op: UnaryOp) -> (f64, f64) {
    match op {
        UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Log | UnaryOp::Reciprocal => (0.5, 2.0),
        UnaryOp::Log1p => (-0.4, 2.0),
        UnaryOp::Acosh => (1.3, 3.0),
        UnaryOp::Asin | UnaryOp::Acos | UnaryOp::Atanh => (-0.6, 0.6),
        UnaryOp::IntegerPow(n) if n < 0 => (0.5, 2.0),
        _ => (-1.2, 1.2),
    }
}

#[test]
fn unary_rules_match_nested_jvp() {
    let mut rng = Rng(11);
    let mut ops: Vec<UnaryOp> = UnaryOp::ALL.to_vec();
    ops.extend([
        UnaryOp::IntegerPow(0),
        UnaryOp::IntegerPow(1),
        UnaryOp::IntegerPow(2),
        UnaryOp::IntegerPow(5),
        UnaryOp::IntegerPow(-1),
        UnaryOp::IntegerPow(-3),
    ]);
    for op in ops {
        let (lo, hi) = unary_domain(op);
        for _ in 0..2 {
            let x = rng.array(&f64t(&[3]), lo, hi);
            check_path(&un_graph(op, &[3]), &[x], &mut rng, op.name());
        }
    }
}

#[test]
fn binary_rules_match_nested_jvp() {
    let mut rng = Rng(12);
    for op in BinaryOp::ALL {
        let (xd, yd) = match op {
            BinaryOp::Pow => ((0.5, 2.0), (-1.5, 1.5)),
            BinaryOp::Div | BinaryOp::Rem => ((-2.0, 2.0), (0.5, 2.0)),
            _ => ((-2.0, 2.0), (-2.0, 2.0)),
        };
        for _ in 0..2 {
            let x = rng.array(&f64t(&[3]), xd.0, xd.1);
            let y = rng.array(&f64t(&[3]), yd.0, yd.1);
            check_path(&bin_graph(op), &[x, y], &mut rng, op.name());
        }
    }
    // A product of a value with itself takes the symmetric (squaring) path.
    let g = build(&[f64t(&[2])], |b, ps| {
        let s = b.push1(Op::Unary(UnaryOp::Sin), &[ps[0]]).unwrap();
        vec![b.push1(Op::Binary(BinaryOp::Mul), &[s, s]).unwrap()]
    });
    let x = rng.array(&f64t(&[2]), -1.0, 1.0);
    check_path(&g, &[x], &mut rng, "sin² as a product");
}

#[test]
fn pow_with_a_constant_exponent() {
    let mut rng = Rng(13);
    let g = build(&[f64t(&[3])], |b, ps| {
        let e = b.constant(Array::from_f64(vec![3], vec![2.5, -0.5, 3.0]).unwrap());
        vec![b.push1(Op::Binary(BinaryOp::Pow), &[ps[0], e]).unwrap()]
    });
    let x = rng.array(&f64t(&[3]), 0.5, 2.0);
    check_path(&g, &[x], &mut rng, "pow by a constant");
}

#[test]
fn kinks_follow_the_primal_branch() {
    let mut rng = Rng(14);
    // abs, max, min, select and a relu, away from their kinks.
    let g = build(&[f64t(&[4]), f64t(&[4])], |b, ps| {
        let (x, y) = (ps[0], ps[1]);
        let a = b.push1(Op::Unary(UnaryOp::Abs), &[x]).unwrap();
        let m = b.push1(Op::Binary(BinaryOp::Max), &[x, y]).unwrap();
        let n = b.push1(Op::Binary(BinaryOp::Min), &[a, y]).unwrap();
        let p = b.push1(Op::Compare(CompareOp::Gt), &[x, y]).unwrap();
        let e = b.push1(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
        let s = b.push1(Op::Compare(CompareOp::Select), &[p, e, n]).unwrap();
        let mm = b.push1(Op::Binary(BinaryOp::Mul), &[m, s]).unwrap();
        vec![mm]
    });
    let x = Array::from_f64(vec![4], vec![-0.7, 0.3, 1.1, -1.4]).unwrap();
    let y = Array::from_f64(vec![4], vec![0.2, -0.5, 1.5, -0.9]).unwrap();
    check_path(&g, &[x, y], &mut rng, "kinks");
}

#[test]
fn shape_reduce_dot_and_index_rules() {
    let mut rng = Rng(15);
    let g = build(&[f64t(&[2, 3]), f64t(&[3, 2])], |b, ps| {
        let (x, w) = (ps[0], ps[1]);
        let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
        let d = b
            .push1(
                Op::Dot(Box::new(DotGeneral {
                    lhs_contract: Dims::from_slice(&[1]),
                    rhs_contract: Dims::from_slice(&[0]),
                    lhs_batch: Dims::new(),
                    rhs_batch: Dims::new(),
                })),
                &[s, w],
            )
            .unwrap();
        let t = b
            .push1(
                Op::Shape(ShapeOp::Transpose {
                    perm: Box::new([1, 0]),
                }),
                &[d],
            )
            .unwrap();
        let r = b
            .push1(
                Op::Shape(ShapeOp::Reshape {
                    shape: Shape::new(&[4]),
                }),
                &[t],
            )
            .unwrap();
        let c = b
            .push1(
                Op::Index(IndexOp::Cumsum {
                    axis: 0,
                    reverse: false,
                }),
                &[r],
            )
            .unwrap();
        let e = b.push1(Op::Unary(UnaryOp::Tanh), &[c]).unwrap();
        let p = b
            .push1(
                Op::Reduce(ReduceOp::Prod {
                    axes: Dims::from_slice(&[0]),
                }),
                &[e],
            )
            .unwrap();
        let mx = b
            .push1(
                Op::Reduce(ReduceOp::Max {
                    axes: Dims::from_slice(&[1]),
                }),
                &[x],
            )
            .unwrap();
        let sm = b
            .push1(
                Op::Reduce(ReduceOp::Sum {
                    axes: Dims::from_slice(&[0]),
                }),
                &[mx],
            )
            .unwrap();
        let z = b.constant(Array::scalar(DType::F64, 0.0));
        let pd = b
            .push1(
                Op::Shape(ShapeOp::Pad {
                    lo: Box::new([1]),
                    hi: Box::new([0]),
                    interior: Box::new([1]),
                }),
                &[r, z],
            )
            .unwrap();
        let i = b.constant(Array::from_i32(vec![2], vec![3, 1]).unwrap());
        let gth = b
            .push1(Op::Index(IndexOp::Gather(Default::default())), &[pd, i])
            .unwrap();
        let cv = b
            .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[gth])
            .unwrap();
        let sg = b
            .push1(Op::Convert(ConvertOp::StopGradient), &[sm])
            .unwrap();
        let q = b.push1(Op::Binary(BinaryOp::Mul), &[p, sg]).unwrap();
        let rq = b.push1(Op::Binary(BinaryOp::Add), &[q, sm]).unwrap();
        vec![rq, cv]
    });
    let x = rng.array(&f64t(&[2, 3]), -1.0, 1.0);
    let w = rng.array(&f64t(&[3, 2]), -1.0, 1.0);
    check_path(&g, &[x, w], &mut rng, "shape/reduce/dot/index");
}

/// The graph of a closure of tensors at the given argument types.
fn graph_of(f: &Function, tys: &[Type]) -> Graph {
    let s = f.specialize(tys).unwrap();
    (*s.graph).clone()
}

#[test]
fn control_flow_carries_series() {
    let mut rng = Rng(16);
    let s = f64t(&[]);
    // cond: the taken branch's series (both branches taken across the two points).
    let f = function(|x: Tensor, y: Tensor| {
        let p = x.gt(0.0);
        cond(
            &p,
            |o| vec![o[0].sin() * &o[1]],
            |o| vec![o[0].exp() + &o[1]],
            &[x, y],
        )
        .remove(0)
    });
    let g = graph_of(&f, &[s.clone(), s.clone()]);
    for x in [0.7, -0.4] {
        let args = [Array::scalar(DType::F64, x), rng.array(&s, -1.0, 1.0)];
        check_path(&g, &args, &mut rng, "cond");
    }
    // switch with three branches, one of which has no series.
    let f = function(|i: Tensor, x: Tensor| {
        switch(
            &i,
            &[
                &|o: &[Tensor]| vec![o[0].tanh()],
                &|o: &[Tensor]| vec![o[0].cos() * 2.0],
                &|o: &[Tensor]| vec![o[0].stop_gradient()],
            ],
            &[x],
        )
        .remove(0)
    });
    let gi = graph_of(&f, &[Type::scalar(DType::I32), s.clone()]);
    for i in 0..3 {
        let args = [
            Array::scalar(DType::I32, i as f64),
            rng.array(&s, -1.0, 1.0),
        ];
        check_path(&gi, &args, &mut rng, "switch");
    }
    // fori_loop: a series carried through iterations.
    let f = function(|x: Tensor| {
        fori_loop(
            0,
            4,
            |_, c| vec![(&c[0] * 0.8).sin() + &c[0] * &c[0] * 0.1],
            &[x],
        )
        .remove(0)
    });
    let g = graph_of(&f, std::slice::from_ref(&s));
    check_path(&g, &[rng.array(&s, -1.0, 1.0)], &mut rng, "fori_loop");
    // scan over slices with a series, and a carry that only gets one inside the loop.
    let f = function(|x: Tensor, xs: Tensor| {
        let (c, ys) = scan(
            |c, e| {
                let n = (&c[0] + &e[0]).tanh() * &c[1];
                (vec![n.clone(), &c[1] + 0.5], vec![n.exp()])
            },
            &[x, Tensor::scalar(1.0)],
            &[xs],
        );
        c[0].clone() + ys[0].sum_all()
    });
    let g = graph_of(&f, &[s.clone(), f64t(&[3])]);
    check_path(
        &g,
        &[rng.array(&s, -1.0, 1.0), rng.array(&f64t(&[3]), -1.0, 1.0)],
        &mut rng,
        "scan",
    );
    // while_loop whose trip count depends on the primal only.
    let f = function(|x: Tensor| {
        let r = while_loop(
            |c| c[1].lt(5.0),
            |c| vec![(&c[0] * 1.1).sin() + 0.3, &c[1] + 1.0],
            &[x, Tensor::scalar(0.0)],
        );
        r[0].clone()
    });
    let g = graph_of(&f, std::slice::from_ref(&s));
    check_path(&g, &[rng.array(&s, -1.0, 1.0)], &mut rng, "while_loop");
    // checkpoint passes through.
    let inner = checkpoint(|x: Tensor| x.sin().exp() * x.cos());
    let f = function(move |x: Tensor| inner.apply1(&[x]).tanh());
    let g = graph_of(&f, std::slice::from_ref(&s));
    check_path(&g, &[rng.array(&s, -1.0, 1.0)], &mut rng, "checkpoint");
}

/// sin with a deliberately different derivative, 3·cos, so that tests see which rule ran.
fn odd_sin() -> Function {
    custom_jvp(
        |x: Tensor| x.sin(),
        |p, t| (vec![p[0].sin()], vec![&t[0] * p[0].cos() * 3.0]),
    )
}

#[test]
fn custom_jvp_uses_its_rule_at_every_order() {
    let mut rng = Rng(17);
    let s = f64t(&[]);
    let os = odd_sin();
    let f = function(move |x: Tensor| os.apply1(&[x.clone() * x.exp()]) * 2.0);
    let g = graph_of(&f, std::slice::from_ref(&s));
    check_path(&g, &[rng.array(&s, -1.0, 1.0)], &mut rng, "custom_jvp");
    // The rule's derivative, not the primal's: along x + t, the first derivative is 3 cos x.
    let d: Vec<f64> = derivatives(odd_sin(), 3).call(0.4).unwrap();
    assert!((d[1] - 3.0 * 0.4f64.cos()).abs() < 1e-14);
    assert!((d[2] + 3.0 * 0.4f64.sin()).abs() < 1e-14);
    assert!((d[3] + 3.0 * 0.4f64.cos()).abs() < 1e-14);
    // Composed, the rule is the derivative at every order of every use: for h = s(a) + 0.3a
    // with a = s(x) + 0.3x and s' = 3 cos, h'' = −3 sin(a)·a'² + (3 cos(a) + 0.3)·a''. (Nested
    // jvp differentiates the rule's primal output sin(x) with its own derivative instead, so
    // for a rule that is not the derivative of its primal the two differ; see jet/control.rs.)
    let os = odd_sin();
    let h = move |x: Tensor| {
        let a = os.apply1(std::slice::from_ref(&x)) + &x * 0.3;
        os.apply1(std::slice::from_ref(&a)) + a * 0.3
    };
    let x = 0.3f64;
    let a = x.sin() + 0.3 * x;
    let (a1, a2) = (3.0 * x.cos() + 0.3, -3.0 * x.sin());
    let want = -3.0 * a.sin() * a1 * a1 + (3.0 * a.cos() + 0.3) * a2;
    let d: Vec<f64> = derivatives(h, 2).call(x).unwrap();
    assert!((d[2] - want).abs() < 1e-13, "{} vs {want}", d[2]);
}

#[test]
fn derivatives_of_tanh_and_conversions() {
    let d: Vec<f64> = derivatives(|x: Tensor| x.tanh(), 8).call(0.5).unwrap();
    // Reference: the polynomial recurrence P_{k+1}(y) = (1 − y²) P_k'(y), P_0 = y.
    let y = 0.5f64.tanh();
    let mut p = vec![0.0, 1.0];
    for (k, dk) in d.iter().enumerate() {
        let v: f64 = p
            .iter()
            .enumerate()
            .map(|(i, c)| c * y.powi(i as i32))
            .sum();
        assert!(
            (dk - v).abs() <= 1e-12 * v.abs().max(1.0),
            "order {k}: {dk} vs {v}"
        );
        let dp: Vec<f64> = (1..p.len()).map(|i| i as f64 * p[i]).collect();
        let mut q = vec![0.0; dp.len() + 2];
        for (i, c) in dp.iter().enumerate() {
            q[i] += c;
            q[i + 2] -= c;
        }
        p = q;
    }
    let t: Vec<f64> = taylor_coefficients(|x: Tensor| x.tanh(), 8)
        .call(0.5)
        .unwrap();
    let arr = Array::from_f64(vec![9], d.clone()).unwrap();
    let conv = series_to_taylor(&arr, 0).unwrap().to_f64_vec();
    for (a, b) in conv.iter().zip(&t) {
        assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0));
    }
    let back = taylor_to_series(&Array::from_f64(vec![9], t).unwrap(), 0)
        .unwrap()
        .to_f64_vec();
    for (a, b) in back.iter().zip(&d) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
    }
}

#[test]
fn user_jet_matches_jet_graph_and_takes_stacked_series() {
    let f = jet(|x: Tensor, y: Tensor| (x.clone() * y).sin(), 3);
    let xs = Array::from_f64(vec![3], vec![1.0, 0.5, -0.2]).unwrap();
    let ys = Array::from_f64(vec![3], vec![0.0, 1.0, 0.3]).unwrap();
    let (z, zs): (f64, Vec<f64>) = f.call((0.7, 1.3, xs, ys)).unwrap();
    let g = graph_of(
        &function(|x: Tensor, y: Tensor| (x * y).sin()),
        &[f64t(&[]), f64t(&[])],
    );
    let jg = jet_graph(&g, 2, 3).unwrap();
    let sc = |v: f64| Array::scalar(DType::F64, v);
    let want = eval(
        &jg,
        &[
            sc(0.7),
            sc(1.3),
            sc(1.0),
            sc(0.5),
            sc(-0.2),
            sc(0.0),
            sc(1.0),
            sc(0.3),
        ],
    )
    .unwrap();
    assert_eq!(z, want[0].to_scalar().unwrap());
    for j in 0..3 {
        assert!((zs[j] - want[1 + j].to_scalar().unwrap()).abs() < 1e-15);
    }
}

#[test]
fn vmap_of_jet_matches_a_loop() {
    let f = jet(|x: Tensor| x.sin() * x.exp(), 4);
    let xs = Array::from_f64(vec![3], vec![0.1, -0.5, 0.9]).unwrap();
    let ss = Array::from_f64(
        vec![3, 4],
        (0..12).map(|i| (i as f64 * 0.37).sin()).collect(),
    )
    .unwrap();
    let outs = vmap(&f).call_arrays(&[xs.clone(), ss.clone()]).unwrap();
    for i in 0..3 {
        let row: Vec<f64> = ss.to_f64_vec()[4 * i..4 * i + 4].to_vec();
        let one = f
            .call_arrays(&[
                Array::scalar(DType::F64, xs.to_f64_vec()[i]),
                Array::from_f64(vec![4], row).unwrap(),
            ])
            .unwrap();
        assert_eq!(outs[0].to_f64_vec()[i], one[0].to_scalar().unwrap());
        for j in 0..4 {
            let (a, b) = (outs[1].to_f64_vec()[4 * i + j], one[1].to_f64_vec()[j]);
            assert!(
                (a - b).abs() <= 1e-14 * b.abs().max(1.0),
                "member {i} order {j}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn grad_of_a_function_calling_jet_and_jet_of_grad() {
    // A physics-informed style loss: (u''(x) + u(x))² with u(x) = tanh(w·x), u'' by jet.
    let loss = |w: Tensor| {
        let u = {
            let w = w.clone();
            move |x: Tensor| (x * &w).tanh()
        };
        let j = jet(function(u), 2);
        let series = Tensor::from(vec![1.0, 0.0]);
        let outs = j.apply(&[Tensor::scalar(0.3), series]);
        let u2 = outs[1].slice(&[1], &[2], &[1]).reshape(&[]);
        (u2 + &outs[0]).square()
    };
    let g: f64 = grad(loss).call(0.8).unwrap();
    let lf = function(loss);
    let h = 1e-5;
    let (a, b): (f64, f64) = (lf.call(0.8 + h).unwrap(), lf.call(0.8 - h).unwrap());
    let fd = (a - b) / (2.0 * h);
    assert!(
        (g - fd).abs() <= 1e-7 * fd.abs().max(1.0),
        "grad {g} vs finite differences {fd}"
    );
    // jet of grad: the derivatives of d/dx sin(x)·x are those of sin + x cos.
    let d: Vec<f64> = derivatives(grad(|x: Tensor| x.sin() * &x), 4)
        .call(0.6)
        .unwrap();
    let want: Vec<f64> = derivatives(|x: Tensor| x.sin() + &x * x.cos(), 4)
        .call(0.6)
        .unwrap();
    for (a, b) in d.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-13 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn laplacian_matches_the_trace_of_the_hessian() {
    let f = |x: Tensor| {
        let w = Tensor::from(
            Array::from_f64(vec![3, 2], vec![0.3, -0.8, 1.1, 0.4, -0.5, 0.9]).unwrap(),
        );
        let h = x.matmul(&w).tanh();
        (h.clone() * h.exp()).sum_all() + x.sin().prod(&[0, 1])
    };
    let x = Array::from_f64(vec![2, 3], vec![0.2, -0.4, 0.7, 1.1, -0.3, 0.5]).unwrap();
    let lap: f64 = laplacian(f).call(x.clone()).unwrap();
    let h: Array = hessian(f).call(x).unwrap();
    let hv = h.to_f64_vec();
    let tr: f64 = (0..6).map(|i| hv[i * 6 + i]).sum();
    assert!(
        (lap - tr).abs() <= 1e-12 * tr.abs().max(1.0),
        "laplacian {lap} vs trace {tr}"
    );
    // Through control flow too.
    let g = |x: Tensor| {
        fori_loop(0, 3, |_, c| vec![c[0].sin() * 1.3], &[x])
            .remove(0)
            .sum_all()
    };
    let x = Array::from_f64(vec![3], vec![0.2, -0.4, 0.7]).unwrap();
    let lap: f64 = laplacian(g).call(x.clone()).unwrap();
    let hv = hessian(g).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    let tr: f64 = (0..3).map(|i| hv[i * 3 + i]).sum();
    assert!(
        (lap - tr).abs() <= 1e-12 * tr.abs().max(1.0),
        "laplacian {lap} vs trace {tr}"
    );
}

#[test]
fn error_paths() {
    // custom_vjp has no forward-mode rule.
    let cv = custom_vjp(
        |x: Tensor| x.sin(),
        |p| (vec![p[0].sin()], vec![p[0].cos()]),
        |r, ct| vec![&ct[0] * &r[0]],
    );
    let f = function(move |x: Tensor| cv.apply1(&[x]));
    let e = derivatives(f, 2).call::<_, Vec<f64>>(0.3).unwrap_err();
    assert!(
        e.to_string().contains("jet") && e.to_string().contains("custom_vjp"),
        "{e}"
    );
    // Reverse mode through a while loop gives a taped_while, which has no Taylor rule.
    let w = grad(|x: Tensor| {
        while_loop(
            |c| c[1].lt(3.0),
            |c| vec![c[0].sin(), &c[1] + 1.0],
            &[x, Tensor::scalar(0.0)],
        )
        .remove(0)
    });
    let e = derivatives(w, 2).call::<_, Vec<f64>>(0.3).unwrap_err();
    assert!(e.to_string().contains("taped_while"), "{e}");
    // Series of the wrong type.
    let e = jet(|x: Tensor| x.sin(), 3)
        .call::<_, (f64, Vec<f64>)>((0.3, Array::from_f64(vec![2], vec![1.0, 0.0]).unwrap()))
        .unwrap_err();
    assert!(e.to_string().contains("series"), "{e}");
    // An odd number of arguments.
    let e = jet(|x: Tensor| x.sin(), 1)
        .call_arrays(&[Array::scalar(DType::F64, 1.0)])
        .unwrap_err();
    assert!(e.to_string().contains("arguments"), "{e}");
    // derivatives needs one argument.
    let e = derivatives(|x: Tensor, y: Tensor| x * y, 2)
        .call::<_, Vec<f64>>((1.0, 2.0))
        .unwrap_err();
    assert!(!e.to_string().is_empty());
    // Conversions need a leading axis.
    assert!(series_to_taylor(&Array::scalar(DType::F64, 1.0), 1).is_err());
    // Order 0 is just the primal.
    let (y, s): (f64, Array) = jet(|x: Tensor| x.exp(), 0)
        .call((0.0, Array::zeros(&f64t(&[0])).unwrap()))
        .unwrap();
    assert_eq!((y, s.dims().to_vec()), (1.0, vec![0]));
}

#[test]
fn orders_above_the_limit_are_errors() {
    let e = derivatives(|x: Tensor| x.sin(), usize::MAX)
        .call::<_, Vec<f64>>(0.3)
        .unwrap_err();
    assert!(e.to_string().contains("order"), "{e}");
    let g = graph_of(&function(|x: Tensor| x.sin()), &[f64t(&[])]);
    assert!(jet_graph(&g, 1, 1 << 40).is_err());
}

#[test]
fn remaining_linear_and_piecewise_constant_rules() {
    let mut rng = Rng(18);
    // broadcast, slice, concatenate, rev, dynamic_slice, dynamic_update_slice, scatter_add,
    // reduce_min, argmax, iota, comparisons and logic, float-to-int conversion, an integer
    // argument, and an integer output.
    let g = build(
        &[f64t(&[4]), f64t(&[2]), Type::scalar(DType::I32)],
        |b, ps| {
            let (x, u, i) = (ps[0], ps[1], ps[2]);
            let e = b.push1(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
            let bc = b
                .push1(
                    Op::Shape(ShapeOp::BroadcastInDim {
                        shape: Shape::new(&[3, 4]),
                        dims: Box::new([1]),
                    }),
                    &[e],
                )
                .unwrap();
            let mn = b
                .push1(
                    Op::Reduce(ReduceOp::Min {
                        axes: Dims::from_slice(&[0]),
                    }),
                    &[bc],
                )
                .unwrap();
            let sl = b
                .push1(
                    Op::Shape(ShapeOp::Slice {
                        start: Box::new([1]),
                        limit: Box::new([4]),
                        stride: Box::new([2]),
                    }),
                    &[mn],
                )
                .unwrap();
            let su = b.push1(Op::Unary(UnaryOp::Sin), &[u]).unwrap();
            let cc = b
                .push1(Op::Shape(ShapeOp::Concatenate { axis: 0 }), &[sl, su])
                .unwrap();
            let rv = b
                .push1(
                    Op::Shape(ShapeOp::Rev {
                        axes: Box::new([0]),
                    }),
                    &[cc],
                )
                .unwrap();
            let ds = b
                .push1(
                    Op::Index(IndexOp::DynamicSlice {
                        sizes: Dims::from_slice(&[2]),
                    }),
                    &[x, i],
                )
                .unwrap();
            let dus = b
                .push1(Op::Index(IndexOp::DynamicUpdateSlice), &[rv, ds, i])
                .unwrap();
            let idx = b.constant(Array::from_i32(vec![3], vec![0, 3, 0]).unwrap());
            let upd = b.push1(Op::Unary(UnaryOp::Tanh), &[x]).unwrap();
            let upd = b
                .push1(
                    Op::Shape(ShapeOp::Slice {
                        start: Box::new([0]),
                        limit: Box::new([3]),
                        stride: Box::new([1]),
                    }),
                    &[upd],
                )
                .unwrap();
            let sa = b
                .push1(
                    Op::Index(IndexOp::Scatter {
                        at: Default::default(),
                        combine: ferrax_ir::ops::Combine::Add,
                    }),
                    &[dus, idx, upd],
                )
                .unwrap();
            let am = b
                .push1(Op::Reduce(ReduceOp::ArgMax { axis: 0 }), &[sa])
                .unwrap();
            let io = b
                .push1(
                    Op::Literal(ferrax_ir::ops::LiteralOp::Iota {
                        dtype: DType::F64,
                        shape: Shape::new(&[4]),
                        axis: 0,
                    }),
                    &[],
                )
                .unwrap();
            let gt = b.push1(Op::Compare(CompareOp::Gt), &[sa, io]).unwrap();
            let nt = b.push1(Op::Compare(CompareOp::Not), &[gt]).unwrap();
            let zero = b.constant(Array::from_f64(vec![4], vec![0.0; 4]).unwrap());
            let sel = b
                .push1(Op::Compare(CompareOp::Select), &[nt, sa, zero])
                .unwrap();
            let ci = b
                .push1(Op::Convert(ConvertOp::Convert(DType::I32)), &[sel])
                .unwrap();
            let ri = b.push1(Op::Unary(UnaryOp::Floor), &[sel]).unwrap();
            let tot = b.push1(Op::Binary(BinaryOp::Add), &[sel, ri]).unwrap();
            vec![tot, am, ci]
        },
    );
    for i in [0, 1, 5] {
        let x = rng.array(&f64t(&[4]), -1.0, 1.0);
        let u = rng.array(&f64t(&[2]), -1.0, 1.0);
        check_path(
            &g,
            &[x, u, Array::scalar(DType::I32, i as f64)],
            &mut rng,
            "linear and piecewise-constant ops",
        );
    }
}

/// A numerically stable softplus whose rule gives the derivative of its primal (logistic).
fn softplus() -> Function {
    custom_jvp(
        |x: Tensor| x.relu() + (-x.abs()).exp().log1p(),
        |p, t| {
            let x = &p[0];
            (
                vec![x.relu() + (-x.abs()).exp().log1p()],
                vec![&t[0] * x.logistic()],
            )
        },
    )
}

#[test]
fn custom_jvp_inside_a_loop_and_f32() {
    let mut rng = Rng(19);
    let s = f64t(&[]);
    let sp = softplus();
    let f = function(move |x: Tensor| {
        let sp = sp.clone();
        fori_loop(
            0,
            3,
            move |_, c| vec![sp.apply1(&[c[0].clone()]).sin() + &c[0] * 0.3],
            &[x],
        )
        .remove(0)
    });
    let g = graph_of(&f, std::slice::from_ref(&s));
    check_path(
        &g,
        &[rng.array(&s, -1.0, 1.0)],
        &mut rng,
        "custom_jvp in fori_loop",
    );
    // f32: the same series as f64 up to f32 rounding.
    let d32 = derivatives(|x: Tensor| x.tanh() * x.exp(), 5)
        .call_arrays(&[Array::scalar(DType::F32, 0.5)])
        .unwrap();
    assert_eq!(d32[0].dtype(), DType::F32);
    let d64: Vec<f64> = derivatives(|x: Tensor| x.tanh() * x.exp(), 5)
        .call(0.5)
        .unwrap();
    for (a, b) in d32[0].to_f64_vec().iter().zip(&d64) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Zero-size arguments give zero-size series.
    let f = jet(|x: Tensor| x.sin().exp(), 3);
    let outs = f
        .call_arrays(&[
            Array::zeros(&f64t(&[0, 2])).unwrap(),
            Array::zeros(&f64t(&[3, 0, 2])).unwrap(),
        ])
        .unwrap();
    assert_eq!(outs[1].dims(), &[3, 0, 2]);
}

#[test]
fn ode_series_solves_autonomous_equations() {
    // x' = x² through x(0) = 0.5: x(t) = 0.5/(1 − 0.5t), coefficients 0.5^{j+1}.
    let c: Vec<f64> = ferrax_transforms::api::ode_series(|x: Tensor| x.square(), 12)
        .call(0.5)
        .unwrap();
    for (j, v) in c.iter().enumerate() {
        let want = 0.5f64.powi(j as i32 + 1);
        assert!((v - want).abs() <= 1e-15 * want, "order {j}: {v} vs {want}");
    }
    // The harmonic oscillator (q, p)' = (p, −q) through (1, 0): q = cos t, p = −sin t.
    let f = |x: Tensor| {
        let q = x.slice(&[0], &[1], &[1]);
        let p = x.slice(&[1], &[2], &[1]);
        ferrax_ir::concatenate(&[p, -q], 0)
    };
    let c = ferrax_transforms::api::ode_series(f, 10)
        .call_arrays(&[Array::from_f64(vec![2], vec![1.0, 0.0]).unwrap()])
        .unwrap()[0]
        .to_f64_vec();
    for j in 0..=10 {
        let (q, p) = (c[2 * j], c[2 * j + 1]);
        let (wq, wp) = match j % 4 {
            0 => (1.0, 0.0),
            1 => (0.0, -1.0),
            2 => (-1.0, 0.0),
            _ => (0.0, 1.0),
        };
        let fj = factorial(j);
        assert!(
            (q - wq / fj).abs() < 1e-16 && (p - wp / fj).abs() < 1e-16,
            "order {j}: {q} {p}"
        );
    }
    // One graph whose size grows as k², not k³: the jets of increasing order share their
    // lower orders through hash-consing.
    let n10 = ferrax_transforms::api::ode_series(|x: Tensor| x.sin(), 10)
        .num_eqns()
        .unwrap();
    let n20 = ferrax_transforms::api::ode_series(|x: Tensor| x.sin(), 20)
        .num_eqns()
        .unwrap();
    assert!(n20 < 5 * n10, "sizes {n10} and {n20}");
    // f must map x's type to itself.
    assert!(
        ferrax_transforms::api::ode_series(|x: Tensor| x.sum_all(), 3)
            .call_arrays(&[Array::from_f64(vec![2], vec![1.0, 0.0]).unwrap()])
            .is_err()
    );
}

#[test]
fn integer_and_bool_arguments_pass_through() {
    // A bool argument returned as is, and an integer one used as an exponent: their series are
    // ignored and their outputs' series are zeros (found by the fuzzer: the bool's series was
    // scaled by 1/j!).
    let g = build(
        &[
            Type::new(DType::Bool, &[0]),
            Type::scalar(DType::I32),
            f64t(&[]),
        ],
        |b, ps| {
            let c = b
                .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[ps[1]])
                .unwrap();
            let p = b.push1(Op::Binary(BinaryOp::Pow), &[ps[2], c]).unwrap();
            vec![ps[0], ps[1], p]
        },
    );
    let jg = jet_graph(&g, 3, 2).unwrap();
    let bools = Array::from_bool(vec![0], vec![]).unwrap();
    let i = Array::scalar(DType::I32, 3.0);
    let x = Array::scalar(DType::F64, 1.5);
    let one = Array::scalar(DType::F64, 1.0);
    let zero = Array::scalar(DType::F64, 0.0);
    let outs = eval(
        &jg,
        &[
            bools.clone(),
            i.clone(),
            x,
            bools.clone(),
            bools,
            i.clone(),
            i,
            one,
            zero,
        ],
    )
    .unwrap();
    assert_eq!(outs[1].to_f64_vec(), vec![3.0]);
    assert_eq!(outs[5].to_f64_vec(), vec![0.0]);
    assert!((outs[7].to_scalar().unwrap() - 3.0 * 1.5f64.powi(2)).abs() < 1e-14);
    assert!((outs[8].to_scalar().unwrap() - 6.0 * 1.5).abs() < 1e-14);
}

/// Elements computed by the top-level equations of a graph (a proxy for its work).
fn work(g: &Graph) -> usize {
    g.insts()
        .map(|(_, i)| i.results.iter().map(|&r| g.ty(r).size()).sum::<usize>())
        .sum()
}

#[test]
fn collapsed_laplacian_does_less_work_than_one_jet_per_direction() {
    let n = 8;
    let mlp = move |x: Tensor| {
        let w1: Vec<f64> = (0..n * 16).map(|i| (i as f64 * 0.37).sin() * 0.5).collect();
        let w2: Vec<f64> = (0..16 * 16)
            .map(|i| (i as f64 * 0.61).cos() * 0.3)
            .collect();
        let w1 = Tensor::from(Array::from_f64(vec![n, 16], w1).unwrap());
        let w2 = Tensor::from(Array::from_f64(vec![16, 16], w2).unwrap());
        x.reshape(&[1, n])
            .matmul(&w1)
            .tanh()
            .matmul(&w2)
            .tanh()
            .sum_all()
    };
    // Standard Taylor mode: one order-2 jet per unit direction (vmapped), then the sum of the
    // second derivatives.
    let naive = move |x: Tensor| {
        let mut s = vec![0.0; n * 2 * n];
        for d in 0..n {
            s[d * 2 * n + d] = 1.0;
        }
        let series = Tensor::from(Array::from_f64(vec![n, 2, n], s).unwrap());
        let outs = vmap(jet(mlp, 2))
            .in_axes(&[None, Some(0)])
            .apply(&[x, series]);
        outs[1].slice(&[0, 1], &[n, 2], &[1, 1]).sum_all()
    };
    let x = Array::from_f64(vec![n], (0..n).map(|i| (i as f64 * 0.9).sin()).collect()).unwrap();
    let lap: f64 = laplacian(mlp).call(x.clone()).unwrap();
    let want: f64 = function(naive).call(x.clone()).unwrap();
    assert!(
        (lap - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{lap} vs {want}"
    );
    let h = hessian(mlp).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    let tr: f64 = (0..n).map(|i| h[i * n + i]).sum();
    assert!(
        (lap - tr).abs() <= 1e-12 * tr.abs().max(1.0),
        "{lap} vs {tr}"
    );
    let collapsed = work(&graph_of(&laplacian(mlp), &[f64t(&[n])]));
    let standard = work(&graph_of(&function(naive), &[f64t(&[n])]));
    assert!(
        collapsed < standard,
        "collapsed {collapsed} elements, standard {standard}"
    );
    eprintln!("laplacian work: collapsed {collapsed} elements, one jet per direction {standard}");
}

#[test]
fn convolution_window_and_axis_index_rules() {
    use ferrax_ir::Padding;
    let mut rng = Rng(31);
    // Convolutions are bilinear: a Cauchy product in both operands.
    let f = function(|x: Tensor, k: Tensor| {
        let y = x.conv2d(&k, (1, 2), "SAME");
        (&y * &y).tanh()
    });
    let g = graph_of(&f, &[f64t(&[2, 2, 5, 4]), f64t(&[3, 2, 3, 2])]);
    let x = rng.array(&f64t(&[2, 2, 5, 4]), -1.0, 1.0);
    let k = rng.array(&f64t(&[3, 2, 3, 2]), -0.5, 0.5);
    check_path(&g, &[x.clone(), k], &mut rng, "conv");
    // Windowed reductions and pooling: sums are linear, max/min follow the primal's choice.
    let f = function(|x: Tensor| {
        let m = x.sin().max_pool(&[2, 2], &[1, 2], Padding::Same);
        let a = x.avg_pool(&[3, 2], &[1, 1], Padding::Valid);
        let n = (-&x).max_pool(&[2, 1], &[2, 1], Padding::Valid);
        (&m * &m).sum_all() + (a.exp()).sum_all() + n.cos().sum_all()
    });
    let g = graph_of(&f, &[f64t(&[2, 2, 5, 4])]);
    check_path(&g, &[x], &mut rng, "window");
    // Gathers and scatters along an axis, with repeated, negative and out-of-range indices.
    let f = function(|x: Tensor, u: Tensor| {
        let idx = Tensor::from(Array::from_i32(vec![3, 2], vec![1, 0, 2, -1, 0, 7]).unwrap());
        let t = x.take_along_axis(&idx, 1).sin();
        let s = x.at(&idx).along_axis(1).set(&u * &u);
        let a = x.at(&idx).along_axis(1).add(u.exp());
        let m = x.at(&idx).along_axis(1).max(&u);
        let col = Tensor::from(Array::from_i32(vec![2], vec![2, 0]).unwrap());
        let tk = x.take(&col, 1);
        t.sum_all() * s.sum_all() + (&a * &m).sum_all() + tk.tanh().sum_all()
    });
    let g = graph_of(&f, &[f64t(&[3, 4]), f64t(&[3, 2])]);
    let x = rng.array(&f64t(&[3, 4]), -1.0, 1.0);
    let u = rng.array(&f64t(&[3, 2]), -1.0, 1.0);
    check_path(&g, &[x, u], &mut rng, "axis index");
    // scatter_mul has no rule yet: an error naming it, never a silent answer.
    let f = function(|x: Tensor, u: Tensor| {
        let idx = Tensor::from(Array::from_i32(vec![2], vec![0, 2]).unwrap());
        x.at(&idx).mul(&u).sum_all()
    });
    let g = graph_of(&f, &[f64t(&[3]), f64t(&[2])]);
    let e = jet_graph(&g, 2, 3).unwrap_err();
    assert!(e.to_string().contains("scatter_mul"), "{e}");
}
