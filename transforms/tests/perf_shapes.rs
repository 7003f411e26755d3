//! The shapes of the graphs behind the anchor workloads (../shared/bench/WORKLOADS.md): the
//! simplified Hessian, Jacobians and training loop must not do work a hand-written version
//! would not (no products with identity matrices, no n×n×n matrix products, little n×n
//! arithmetic), and the structural rewrites that get them there must be exact, checked bit for
//! bit against the unsimplified graph on inputs with NaN, ±∞ and −0.0.

mod common;

use common::*;
use ferrax_ir::control_api::fori_loop;
use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, DotGeneral, LiteralOp, ShapeOp};
use ferrax_ir::{function, Array, Builder, DType, Dims, Graph, Op, Shape, Tensor, Type};
use ferrax_transforms::api::{grad, hessian, jacfwd, jacrev};
use ferrax_transforms::try_simplify;

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

fn p7_f(x: Tensor, w: Tensor, b: Tensor) -> Tensor {
    w.matmul(&x).add(&b).tanh()
}

fn graph_of(f: &ferrax_ir::Function, tys: &[Type]) -> Graph {
    (*f.specialize(tys).unwrap().graph).clone()
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.insts().filter(|(_, i)| pred(&i.op)).count()
}

/// Equations that compute (not just broadcast) an array of at least `size` elements.
fn big_work(g: &Graph, size: usize) -> Vec<String> {
    g.insts()
        .filter(|(_, i)| {
            let big = i.results.iter().any(|&r| g.ty(r).size() >= size);
            big && !matches!(i.op, Op::Shape(ShapeOp::BroadcastInDim { .. }))
        })
        .map(|(_, i)| i.op.name().to_string())
        .collect()
}

#[test]
fn rosenbrock_hessian_is_selects_of_vectors() {
    let n = 100;
    let g = graph_of(&hessian(rosenbrock), &[f64t(&[n])]);
    assert_eq!(
        count(&g, |op| matches!(op, Op::Dot(_))),
        0,
        "{}",
        g.to_text()
    );
    let work = big_work(&g, n * n);
    // What is left at n×n: index comparisons, selects between broadcast vectors, and the
    // final sum of the two banded halves; no n×n multiplication or subtraction.
    assert!(
        work.iter()
            .all(|w| matches!(w.as_str(), "eq" | "select" | "add" | "and")),
        "{work:?}"
    );
    assert!(work.len() <= 24, "{} n×n equations: {work:?}", work.len());

    let xs: Vec<f64> = (0..n)
        .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
        .collect();
    let h = run(&g, &[Array::from(xs.clone())])[0].to_f64_vec();
    for i in 0..n {
        for j in 0..n {
            let want = if i == j {
                let mut d = if i > 0 { 200.0 } else { 0.0 };
                if i + 1 < n {
                    d += 1200.0 * xs[i] * xs[i] - 400.0 * xs[i + 1] + 2.0;
                }
                d
            } else if j == i + 1 {
                -400.0 * xs[i]
            } else if i == j + 1 {
                -400.0 * xs[j]
            } else {
                0.0
            };
            close(h[i * n + j], want, 1e-12, &format!("H[{i},{j}]"));
        }
    }
}

#[test]
fn jacobians_of_dense_layer_are_scaled_weights() {
    let n = 100;
    let tys = [f64t(&[n]), f64t(&[n, n]), f64t(&[n])];
    let mut rng = Rng(3);
    let args: Vec<Array> = tys.iter().map(|t| rng.array(t, -1.0, 1.0)).collect();
    let (x, w, b) = (
        args[0].to_f64_vec(),
        args[1].to_f64_vec(),
        args[2].to_f64_vec(),
    );
    for (name, f) in [("jacfwd", jacfwd(p7_f)), ("jacrev", jacrev(p7_f))] {
        let g = graph_of(&f, &tys);
        // One matrix-vector product (the primal W·x), no product with the identity basis.
        assert_eq!(
            count(&g, |op| matches!(op, Op::Dot(_))),
            1,
            "{name}:\n{}",
            g.to_text()
        );
        assert!(g.num_insts() <= 10, "{name}:\n{}", g.to_text());
        assert_eq!(big_work(&g, n * n), vec!["mul"], "{name}");
        let j = run(&g, &args)[0].to_f64_vec();
        for i in 0..n {
            let z: f64 = (0..n).map(|k| w[i * n + k] * x[k]).sum::<f64>() + b[i];
            let d = 1.0 - z.tanh() * z.tanh();
            for k in 0..n {
                close(
                    j[i * n + k],
                    d * w[i * n + k],
                    1e-12,
                    &format!("{name}[{i},{k}]"),
                );
            }
        }
    }
}

#[test]
fn jacobian_entries_stay_independent_with_non_finite_weights() {
    // With W[0][1] = ∞ the product with the identity basis would give NaN in all of row 0;
    // the Jacobian keeps each partial derivative: ∂(Wx)_0/∂x_0 = W[0][0].
    let f = |x: Tensor, w: Tensor| w.matmul(&x);
    let tys = [f64t(&[2]), f64t(&[2, 2])];
    let args = [
        Array::from(vec![1.0, 2.0]),
        Array::from_f64([2, 2], vec![3.0, f64::INFINITY, 5.0, 7.0]).unwrap(),
    ];
    for jac in [jacfwd(f), jacrev(f)] {
        let j = run(&graph_of(&jac, &tys), &args)[0].to_f64_vec();
        assert_eq!(j, vec![3.0, f64::INFINITY, 5.0, 7.0]);
    }
}

#[test]
fn training_loop_body_has_no_matrix_products() {
    let mse =
        |w: Tensor, b: Tensor, x: Tensor, y: Tensor| (x.matmul(&w).add(&b) - y).square().mean_all();
    let train = function(move |w: Tensor, b: Tensor, x: Tensor, y: Tensor| {
        let step = |_i: &Tensor, c: &[Tensor]| {
            let (w, b) = (c[0].clone(), c[1].clone());
            let g = grad(mse)
                .wrt((0, 1))
                .apply(&[w.clone(), b.clone(), x.clone(), y.clone()]);
            vec![w - 0.01 * g[0].clone(), b - 0.01 * g[1].clone()]
        };
        let out = fori_loop(0, 100, step, &[w, b]);
        (out[0].clone(), out[1].clone())
    });
    let f32t = |d: &[usize]| Type::new(DType::F32, d);
    let tys = [f32t(&[1, 1]), f32t(&[1]), f32t(&[100, 1]), f32t(&[100, 1])];
    let text = train.ir_for(&tys).unwrap();
    assert!(text.contains("scan[length=100"), "{text}");
    assert!(!text.contains("dot_general"), "{text}");
    assert!(!text.contains("transpose"), "{text}");
}

/// Evaluates `g` before and after simplification and requires bit-equal results.
fn same_bits(g: &Graph, args: &[Array]) -> Graph {
    let s = try_simplify(g).unwrap();
    s.verify().unwrap();
    let (a, b) = (run(g, args), run(&s, args));
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.bits_eq(y), "output {k}: {x:?} vs {y:?}\n{}", s.to_text());
    }
    s
}

fn raw(b: &mut Builder, op: Op, args: &[ferrax_ir::Value]) -> ferrax_ir::Value {
    b.push1(op, args).unwrap()
}

fn bcast(
    b: &mut Builder,
    x: ferrax_ir::Value,
    shape: &[usize],
    dims: &[usize],
) -> ferrax_ir::Value {
    let op = ShapeOp::BroadcastInDim {
        shape: Shape::new(shape),
        dims: Dims::from_slice(dims),
    };
    raw(b, Op::Shape(op), &[x])
}

#[test]
fn structural_rewrites_are_bit_exact() {
    // A banded "Jacobian" built the way batched JVPs build them: an identity mask from iotas,
    // scaled by broadcast vectors, shifted by slices and pads, transposed.
    // n×n above the constant-folding limit, so the identity stays an iota comparison.
    let n = 9;
    let mut b = Builder::new();
    b.fold_constants = false;
    let x = b.param(f64t(&[n]));
    let y = b.param(f64t(&[n]));
    let iota = |axis| {
        Op::Literal(LiteralOp::Iota {
            dtype: DType::I32,
            shape: Shape::new(&[n, n]),
            axis,
        })
    };
    let r = raw(&mut b, iota(0), &[]);
    let c = raw(&mut b, iota(1), &[]);
    let m = raw(&mut b, Op::Compare(CompareOp::Eq), &[r, c]);
    let e = raw(&mut b, Op::Convert(ConvertOp::Convert(DType::F64)), &[m]);
    let xb = bcast(&mut b, x, &[n, n], &[1]);
    let yb = bcast(&mut b, y, &[n, n], &[0]);
    let d = raw(&mut b, Op::Binary(BinaryOp::Mul), &[e, xb]);
    let d2 = raw(&mut b, Op::Binary(BinaryOp::Sub), &[d, yb]);
    let d3 = raw(&mut b, Op::Binary(BinaryOp::Div), &[d2, xb]);
    let sl = Op::Shape(ShapeOp::Slice {
        start: Dims::from_slice(&[0, 1]),
        limit: Dims::from_slice(&[n, n]),
        stride: Dims::from_slice(&[1, 1]),
    });
    let s = raw(&mut b, sl, &[d3]);
    let zero = b.constant(Array::scalar(DType::F64, -0.0));
    let pad = Op::Shape(ShapeOp::Pad {
        lo: Dims::from_slice(&[0, 1]),
        hi: Dims::from_slice(&[0, 0]),
        interior: Dims::from_slice(&[0, 0]),
    });
    let p = raw(&mut b, pad, &[s, zero]);
    let sum = raw(&mut b, Op::Binary(BinaryOp::Add), &[p, d]);
    let t = raw(
        &mut b,
        Op::Shape(ShapeOp::Transpose {
            perm: Dims::from_slice(&[1, 0]),
        }),
        &[sum],
    );
    let g = b.finish(&[t, d3]);
    let special = [
        f64::NAN,
        f64::INFINITY,
        -0.0,
        0.0,
        -2.5,
        f64::NEG_INFINITY,
        1.0,
        2.0,
        -0.0,
    ];
    let xs = Array::from(special.to_vec());
    let ys = Array::from(vec![
        1.0,
        -0.0,
        f64::NAN,
        3.0,
        f64::INFINITY,
        0.0,
        -0.0,
        4.0,
        -1.0,
    ]);
    let s = same_bits(&g, &[xs.clone(), ys.clone()]);
    // The products with the mask became selects; no n×n multiplication or conversion is left
    // (the subtraction of a row and a column broadcast is genuine n×n work).
    let nn_mul = s
        .insts()
        .filter(|(_, i)| {
            matches!(
                i.op,
                Op::Binary(BinaryOp::Mul) | Op::Convert(ConvertOp::Convert(_))
            ) && i.results.iter().any(|&r| s.ty(r).size() == n * n)
        })
        .count();
    assert_eq!(nn_mul, 0, "{}", s.to_text());
    same_bits(&g, &[ys, xs]);
}

#[test]
fn unit_contractions_and_unit_transposes_are_exact() {
    let mut b = Builder::new();
    b.fold_constants = false;
    let x = b.param(f64t(&[3, 1]));
    let w = b.param(f64t(&[1, 2]));
    let d = DotGeneral {
        lhs_contract: Dims::from_slice(&[1]),
        rhs_contract: Dims::from_slice(&[0]),
        ..Default::default()
    };
    let p = raw(&mut b, Op::Dot(d), &[x, w]);
    let t = raw(
        &mut b,
        Op::Shape(ShapeOp::Transpose {
            perm: Dims::from_slice(&[1, 0]),
        }),
        &[w],
    );
    let g = b.finish(&[p, t]);
    let args = [
        Array::from_f64([3, 1], vec![-0.0, f64::INFINITY, 2.0]).unwrap(),
        Array::from_f64([1, 2], vec![3.0, -0.0]).unwrap(),
    ];
    let s = same_bits(&g, &args);
    assert!(!s.to_text().contains("dot_general"), "{}", s.to_text());
    assert!(!s.to_text().contains("transpose"), "{}", s.to_text());
}
