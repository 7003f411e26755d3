//! The shapes of the graphs behind the anchor workloads (bench/compare/WORKLOADS.md): the
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
    // The uncompressed path, whose shape the index-mask rewrites decide (by default this
    // Hessian is compressed; see `dense_compressed.rs`).
    let g = graph_of(&hessian(rosenbrock).uncompressed(), &[f64t(&[n])]);
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
        work.iter().all(|w| matches!(w.as_str(), "eq" | "select")),
        "{work:?}"
    );
    // Three diagonal masks (i = j, i = j ± 1) and one select for each: the diagonal, the two
    // off-diagonals and the (±0, or NaN for non-finite x) entries elsewhere are vectors.
    assert_eq!(work.len(), 6, "{work:?}\n{}", g.to_text());
    assert!(
        g.num_insts() <= 85,
        "{} equations:\n{}",
        g.num_insts(),
        g.to_text()
    );

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
        dims: dims.into(),
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
        start: Box::new([0, 1]),
        limit: Box::new([n, n]),
        stride: Box::new([1, 1]),
    });
    let s = raw(&mut b, sl, &[d3]);
    let zero = b.constant(Array::scalar(DType::F64, -0.0));
    let pad = Op::Shape(ShapeOp::Pad {
        lo: Box::new([0, 1]),
        hi: Box::new([0, 0]),
        interior: Box::new([0, 0]),
    });
    let p = raw(&mut b, pad, &[s, zero]);
    let sum = raw(&mut b, Op::Binary(BinaryOp::Add), &[p, d]);
    let t = raw(
        &mut b,
        Op::Shape(ShapeOp::Transpose {
            perm: Box::new([1, 0]),
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
    let p = raw(&mut b, Op::Dot(Box::new(d)), &[x, w]);
    let t = raw(
        &mut b,
        Op::Shape(ShapeOp::Transpose {
            perm: Box::new([1, 0]),
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

/// Random elementwise expressions over index masks, built raw (no simplification) the way
/// batched derivatives build them: diagonal masks `eq(col + k1, row + k2)`, row and column
/// ranges, their `and`/`or`/`not`, selects and arithmetic between broadcast vectors and
/// splats, and shifts (`pad` of a `slice`) of the results.
fn random_mask_graph(rng: &mut Rng, n: usize) -> Graph {
    let mut pick = |k: u64| (rng.next_u64() % k) as i64;
    let mut b = Builder::new();
    b.fold_constants = false;
    let x = b.param(f64t(&[n]));
    let y = b.param(f64t(&[n]));
    let line = raw(
        &mut b,
        Op::Literal(LiteralOp::Iota {
            dtype: DType::I32,
            shape: Shape::new(&[n]),
            axis: 0,
        }),
        &[],
    );
    let index = |b: &mut Builder, k: i64, axis: usize| {
        let c = b.constant(Array::scalar(DType::I32, k as f64));
        let cv = bcast(b, c, &[n], &[]);
        let shifted = raw(b, Op::Binary(BinaryOp::Add), &[line, cv]);
        bcast(b, shifted, &[n, n], &[axis])
    };
    let splat = |b: &mut Builder, v: f64, dtype: DType| {
        let c = b.constant(Array::scalar(dtype, v));
        bcast(b, c, &[n, n], &[])
    };
    let mut masks = Vec::new();
    let mut vals = vec![
        bcast(&mut b, x, &[n, n], &[0]),
        bcast(&mut b, y, &[n, n], &[1]),
        bcast(&mut b, x, &[n, n], &[1]),
    ];
    for v in [0.0, -0.0, 1.0, f64::NAN] {
        vals.push(splat(&mut b, v, DType::F64));
    }
    let cmps = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ];
    for _ in 0..6 {
        let m = match pick(4) {
            0 | 1 => {
                let (i, j) = (index(&mut b, pick(5) - 2, 0), index(&mut b, pick(5) - 2, 1));
                let op = if pick(4) == 0 {
                    CompareOp::Ne
                } else {
                    CompareOp::Eq
                };
                raw(&mut b, Op::Compare(op), &[j, i])
            }
            2 => {
                let i = index(&mut b, pick(3) - 1, pick(2) as usize);
                let c = splat(&mut b, (pick(n as u64 + 3) - 1) as f64, DType::I32);
                let op = cmps[pick(6) as usize];
                raw(&mut b, Op::Compare(op), &[i, c])
            }
            _ if !masks.is_empty() => {
                let p = masks[pick(masks.len() as u64) as usize];
                let q = masks[pick(masks.len() as u64) as usize];
                match pick(3) {
                    0 => raw(&mut b, Op::Compare(CompareOp::And), &[p, q]),
                    1 => raw(&mut b, Op::Compare(CompareOp::Or), &[p, q]),
                    _ => raw(&mut b, Op::Compare(CompareOp::Not), &[p]),
                }
            }
            _ => continue,
        };
        masks.push(m);
    }
    for _ in 0..14 {
        let v = |pick: &mut dyn FnMut(u64) -> i64, vals: &Vec<_>| {
            vals[pick(vals.len() as u64) as usize]
        };
        let (a, c) = (v(&mut pick, &vals), v(&mut pick, &vals));
        let r = match pick(7) {
            0..=2 => {
                let m = masks[pick(masks.len() as u64) as usize];
                raw(&mut b, Op::Compare(CompareOp::Select), &[m, a, c])
            }
            3 => raw(&mut b, Op::Binary(BinaryOp::Add), &[a, c]),
            4 => raw(&mut b, Op::Binary(BinaryOp::Mul), &[a, c]),
            5 => {
                let m = masks[pick(masks.len() as u64) as usize];
                raw(&mut b, Op::Convert(ConvertOp::Convert(DType::F64)), &[m])
            }
            _ => {
                // Shift by one along an axis: slice off one end, pad the other.
                let axis = pick(2) as usize;
                let front = pick(2) == 0;
                let mut start = Dims::from_slice(&[0, 0]);
                let mut limit = Dims::from_slice(&[n, n]);
                let (mut lo, mut hi) = (Dims::from_slice(&[0, 0]), Dims::from_slice(&[0, 0]));
                if front {
                    start[axis] = 1;
                    hi[axis] = 1;
                } else {
                    limit[axis] = n - 1;
                    lo[axis] = 1;
                }
                let sl = Op::Shape(ShapeOp::Slice {
                    start: start.into_boxed_slice(),
                    limit: limit.into_boxed_slice(),
                    stride: Box::new([1, 1]),
                });
                let s = raw(&mut b, sl, &[a]);
                let pv = [0.0, -0.0, 2.0][pick(3) as usize];
                let pv = b.constant(Array::scalar(DType::F64, pv));
                let pad = Op::Shape(ShapeOp::Pad {
                    lo: lo.into_boxed_slice(),
                    hi: hi.into_boxed_slice(),
                    interior: Box::new([0, 0]),
                });
                raw(&mut b, pad, &[s, pv])
            }
        };
        vals.push(r);
    }
    let k = vals.len();
    b.finish(&[vals[k - 1], vals[k - 2], vals[k - 3]])
}

/// Like [`same_bits`], but any NaN matches any NaN: where two NaNs meet in an add or a
/// multiplication, which one propagates depends on operand order (IEEE 754 leaves it open),
/// and the emitter orders the operands of commutative ops canonically. Every other value,
/// −0.0 and ±∞ included, must match bit for bit.
fn same_bits_but_nan_payloads(g: &Graph, args: &[Array]) -> Graph {
    let s = try_simplify(g).unwrap();
    s.verify().unwrap();
    let (a, b) = (run(g, args), run(&s, args));
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
        let same = x.dims() == y.dims()
            && xv
                .iter()
                .zip(&yv)
                .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()));
        assert!(
            same,
            "output {k}: {x:?} vs {y:?}\n{}\n{}",
            g.to_text(),
            s.to_text()
        );
    }
    s
}

#[test]
fn index_mask_rewrites_are_bit_exact() {
    let special = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        1.5,
        -2.0,
        3.0,
    ];
    let mut rng = Rng(11);
    // n = 6: everything small is folded; n = 12: 1-D iotas are folded into constants;
    // n = 70: iotas stay iotas.
    for n in [6, 12, 70] {
        for _ in 0..60 {
            let g = random_mask_graph(&mut rng, n);
            g.verify().unwrap();
            let mut arg = || {
                let v: Vec<f64> = (0..n)
                    .map(|_| special[(rng.next_u64() % special.len() as u64) as usize])
                    .collect();
                Array::from(v)
            };
            let args = [arg(), arg()];
            same_bits_but_nan_payloads(&g, &args);
        }
    }
}

/// The P4 Hessian (n = 100) as ferrax built it before the index-mask rewrites: two banded
/// halves, each a tree of selects on masks built from zero-padded shifted iotas, summed.
const P4_BEFORE: &str = include_str!("data/p4_hessian_before.ir");

#[test]
fn p4_hessian_matches_the_one_built_before_the_index_mask_rewrites() {
    let old = Graph::parse(P4_BEFORE).unwrap();
    let n = 100;
    let new = graph_of(&hessian(rosenbrock).uncompressed(), &[f64t(&[n])]);
    assert!(new.num_insts() < old.num_insts());
    let special = [
        f64::NAN,
        f64::INFINITY,
        -0.0,
        0.0,
        f64::NEG_INFINITY,
        1.5,
        -1.0,
    ];
    let lin: Vec<f64> = (0..n)
        .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
        .collect();
    let mut inputs = vec![lin];
    for shift in 0..3 {
        inputs.push(
            (0..n)
                .map(|i| special[(i * 3 + i / 7 + shift) % 7])
                .collect(),
        );
    }
    // Every number matches bit for bit (−0.0 and ±∞ included) and NaN sits at the same
    // entries; the sign of a NaN may differ where two NaNs meet in an add, whose operands the
    // emitter orders canonically (IEEE 754 does not say which NaN propagates).
    for xs in inputs {
        let args = [Array::from(xs)];
        // Re-simplifying the old graph is exact too.
        same_bits(&old, &args);
        let (a, b) = (run(&old, &args), run(&new, &args));
        let (av, bv) = (a[0].to_f64_vec(), b[0].to_f64_vec());
        let diff: Vec<String> = (0..n * n)
            .filter(|&k| av[k].to_bits() != bv[k].to_bits() && !(av[k].is_nan() && bv[k].is_nan()))
            .map(|k| {
                format!(
                    "[{},{}] {:x} {:x}",
                    k / n,
                    k % n,
                    av[k].to_bits(),
                    bv[k].to_bits()
                )
            })
            .collect();
        assert!(
            diff.is_empty(),
            "{} differ: {:?}",
            diff.len(),
            &diff[..diff.len().min(20)]
        );
    }
}
