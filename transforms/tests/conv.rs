//! Derivatives and batching of `conv_general_dilated` on random configurations (1-D to 3-D,
//! random layouts, strides, paddings, dilations, feature, depthwise and batch groups, f64):
//! the JVP against central differences in random directions, each operand's transpose
//! through <ct, J t> = <Jᵀ ct, t>, the same for the VJP graph itself (whose convolutions have
//! input dilation and shifted padding, so their transposes are exercised too), vmap against a
//! loop over the batch for every batched-operand combination, and the gradient of a small
//! convolutional net against central differences.

#[path = "../../tests/support/conv.rs"]
mod support;

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{BinaryOp, ConvGeneral, ReduceOp};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Type, Value};
use ferrax_transforms::vmap::vmap_graph_sized;
use ferrax_transforms::{grad_graph, jvp_graph, vjp_graph};
use support::{random_conv, Rng};

fn conv_graph(op: &ConvGeneral, a: &Type, b: &Type) -> Graph {
    let mut bd = Builder::new();
    let x = bd.param(a.clone());
    let w = bd.param(b.clone());
    let y = bd.push1(Op::Conv(Box::new(op.clone())), &[x, w]).unwrap();
    let g = bd.finish(&[y]);
    g.verify().unwrap();
    g
}

fn dot(a: &Array, b: &Array) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

fn axpy(x: &Array, h: f64, t: &Array) -> Array {
    let v: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .zip(t.to_f64_vec())
        .map(|(a, b)| a + h * b)
        .collect();
    Array::from_f64(x.shape().clone(), v).unwrap()
}

fn zeros_like(x: &Array) -> Array {
    Array::zeros(&x.ty()).unwrap()
}

#[track_caller]
fn close(a: f64, b: f64, rtol: f64, what: &str) {
    assert!(
        (a - b).abs() <= rtol * (1.0 + a.abs().max(b.abs())),
        "{what}: {a} vs {b}"
    );
}

#[track_caller]
fn close_arrays(a: &Array, b: &Array, rtol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    for (i, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
        close(*x, y, rtol, &format!("{what}[{i}]"));
    }
}

/// Checks a graph's VJP against its JVP, one input at a time, at random points.
fn check_transposes(g: &Graph, rng: &mut Rng, what: &str) {
    let n = g.params().len();
    let jvp = jvp_graph(g, n).unwrap();
    let vjp = vjp_graph(g, n).unwrap();
    jvp.verify().unwrap();
    vjp.verify().unwrap();
    let tys = g.param_types();
    let x: Vec<Array> = tys.iter().map(|t| rng.array(t)).collect();
    let outs = g.output_types();
    let ct: Vec<Array> = outs.iter().map(|t| rng.array(t)).collect();
    let mut vargs = x.clone();
    vargs.extend(ct.iter().cloned());
    let vo = eval(&vjp, &vargs).unwrap();
    let k = outs.len();
    for i in 0..n {
        let t: Vec<Array> = x
            .iter()
            .enumerate()
            .map(|(j, a)| {
                if j == i {
                    rng.array(&a.ty())
                } else {
                    zeros_like(a)
                }
            })
            .collect();
        let mut jargs = x.clone();
        jargs.extend(t.iter().cloned());
        let jo = eval(&jvp, &jargs).unwrap();
        let lhs: f64 = (0..k).map(|o| dot(&ct[o], &jo[k + o])).sum();
        let rhs = dot(&vo[k + i], &t[i]);
        close(
            lhs,
            rhs,
            1e-11,
            &format!("{what}: <ct, J t> vs <J^T ct, t> for input {i}"),
        );
    }
}

#[test]
fn jvp_matches_central_differences() {
    let mut rng = Rng(3);
    for case in 0..60 {
        let (op, a, b) = random_conv(&mut rng, 1 + case % 3, DType::F64, false);
        let g = conv_graph(&op, &a, &b);
        let jvp = jvp_graph(&g, 2).unwrap();
        let (x, w) = (rng.array(&a), rng.array(&b));
        let (tx, tw) = (rng.array(&a), rng.array(&b));
        let jo = eval(&jvp, &[x.clone(), w.clone(), tx.clone(), tw.clone()]).unwrap();
        let h = 1e-3;
        let fp = eval(&g, &[axpy(&x, h, &tx), axpy(&w, h, &tw)]).unwrap();
        let fm = eval(&g, &[axpy(&x, -h, &tx), axpy(&w, -h, &tw)]).unwrap();
        let fd: Vec<f64> = fp[0]
            .to_f64_vec()
            .iter()
            .zip(fm[0].to_f64_vec())
            .map(|(p, m)| (p - m) / (2.0 * h))
            .collect();
        let fd = Array::from_f64(jo[1].shape().clone(), fd).unwrap();
        // Bilinear: the central difference is exact up to rounding.
        close_arrays(&jo[1], &fd, 1e-9, &format!("case {case}: {op:?} {a} {b}"));
    }
}

#[test]
fn transposes_match_the_jvp() {
    let mut rng = Rng(5);
    for case in 0..90 {
        let (op, a, b) = random_conv(&mut rng, 1 + case % 3, DType::F64, false);
        let g = conv_graph(&op, &a, &b);
        let what = format!("case {case}: {op:?} {a} {b}");
        check_transposes(&g, &mut rng, &what);
        // Reverse over reverse: the VJP graph's own convolutions (dilated by the strides,
        // with shifted padding and swapped roles) transpose correctly too.
        if case % 3 == 0 {
            let vjp = vjp_graph(&g, 2).unwrap();
            check_transposes(&vjp, &mut rng, &format!("{what}, its VJP"));
        }
    }
}

#[test]
fn empty_operands_give_zero_cotangents() {
    let mut rng = Rng(8);
    // An empty batch, no output features, and an empty spatial input with padding.
    for (a, b, pad) in [
        (vec![0, 2, 5], vec![3, 2, 2], (0, 0)),
        (vec![2, 2, 5], vec![0, 2, 2], (0, 0)),
        (vec![1, 1, 0], vec![2, 1, 2], (1, 1)),
        (vec![1, 1, 3], vec![2, 1, 0], (0, 0)),
    ] {
        let mut op = ConvGeneral::new(1);
        op.padding[0] = pad;
        let (a, b) = (Type::new(DType::F64, &a), Type::new(DType::F64, &b));
        let g = conv_graph(&op, &a, &b);
        let vjp = vjp_graph(&g, 2).unwrap();
        let x = rng.array(&a);
        let w = rng.array(&b);
        let ct = rng.array(&g.output_types()[0]);
        let vo = eval(&vjp, &[x, w, ct]).unwrap();
        assert!(vo[1].to_f64_vec().iter().all(|&v| v == 0.0) || a.size() > 0);
        assert_eq!(vo[1].dims(), a.dims());
        assert_eq!(vo[2].dims(), b.dims());
        check_transposes(&g, &mut rng, &format!("{a} {b}"));
    }
}

/// Member `i` of `a` along `axis`.
fn take(a: &Array, axis: usize, i: usize) -> Array {
    let dims = a.dims();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let n = dims[axis];
    let v = a.to_f64_vec();
    let data: Vec<f64> = (0..outer)
        .flat_map(|o| (0..inner).map(move |k| (o * n + i) * inner + k))
        .map(|j| v[j])
        .collect();
    let mut out = dims.to_vec();
    out.remove(axis);
    Array::from_f64(out, data).unwrap()
}

#[test]
fn vmap_matches_a_loop() {
    const B: usize = 3;
    let mut rng = Rng(13);
    for case in 0..90 {
        let (op, a, b) = random_conv(&mut rng, 1 + case % 3, DType::F64, false);
        let g = conv_graph(&op, &a, &b);
        let rank = a.rank();
        let la = rng.int(0, rank as i64) as usize;
        let ra = rng.int(0, rank as i64) as usize;
        let oa = rng.int(0, rank as i64) as usize;
        let in_axes = match case % 3 {
            0 => [Some(la), None],
            1 => [None, Some(ra)],
            _ => [Some(la), Some(ra)],
        };
        let what = format!("case {case}: {op:?} {a} {b} in_axes {in_axes:?} out {oa}");
        let vg =
            vmap_graph_sized(&g, 2, &in_axes, &[oa], B).unwrap_or_else(|e| panic!("{what}: {e}"));
        vg.verify().unwrap();
        let args: Vec<Array> = vg.param_types().iter().map(|t| rng.array(t)).collect();
        let got = &eval(&vg, &args).unwrap()[0];
        for m in 0..B {
            let margs: Vec<Array> = args
                .iter()
                .zip(&in_axes)
                .map(|(x, ax)| match ax {
                    Some(ax) => take(x, *ax, m),
                    None => x.clone(),
                })
                .collect();
            let want = &eval(&g, &margs).unwrap()[0];
            close_arrays(
                &take(got, oa, m),
                want,
                1e-13,
                &format!("{what}, member {m}"),
            );
        }
    }
}

#[test]
fn vmap_of_an_empty_batch() {
    let op = ConvGeneral::new(1);
    let (a, b) = (
        Type::new(DType::F64, &[1, 2, 4]),
        Type::new(DType::F64, &[3, 2, 2]),
    );
    let g = conv_graph(&op, &a, &b);
    for in_axes in [[Some(0), None], [None, Some(1)], [Some(2), Some(0)]] {
        let vg = vmap_graph_sized(&g, 2, &in_axes, &[0], 0).unwrap();
        let args: Vec<Array> = vg
            .param_types()
            .iter()
            .map(|t| Array::zeros(t).unwrap())
            .collect();
        assert_eq!(eval(&vg, &args).unwrap()[0].dims(), &[0, 1, 3, 3]);
    }
}

/// `sum(conv(relu(conv(x, w1)), w2))`.
fn small_net(op1: &ConvGeneral, op2: &ConvGeneral, tys: &[Type]) -> Graph {
    let mut bd = Builder::new();
    let ps: Vec<Value> = tys.iter().map(|t| bd.param(t.clone())).collect();
    let h = bd
        .push1(Op::Conv(Box::new(op1.clone())), &[ps[0], ps[1]])
        .unwrap();
    let zero = bd.constant(Array::scalar(DType::F64, 0.0));
    let hty = bd.ty(h).clone();
    let z = bd
        .push1(
            Op::Shape(ferrax_ir::ops::ShapeOp::BroadcastInDim {
                shape: hty.shape.clone(),
                dims: Box::default(),
            }),
            &[zero],
        )
        .unwrap();
    let r = bd.push1(Op::Binary(BinaryOp::Max), &[h, z]).unwrap();
    let y = bd
        .push1(Op::Conv(Box::new(op2.clone())), &[r, ps[2]])
        .unwrap();
    let axes: Dims = (0..bd.ty(y).rank()).collect();
    let s = bd.push1(Op::Reduce(ReduceOp::Sum { axes }), &[y]).unwrap();
    let g = bd.finish(&[s]);
    g.verify().unwrap();
    g
}

#[test]
fn grad_of_a_small_conv_net_matches_central_differences() {
    let mut rng = Rng(21);
    // 2-D, NCHW: 3 → 4 channels with stride 2 and SAME-like padding, then a depthwise 3×3.
    let mut op1 = ConvGeneral::new(2);
    op1.window_strides = Dims::from_slice(&[2, 1]);
    op1.padding = smallvec::smallvec![(1, 1), (1, 1)];
    let mut op2 = ConvGeneral::new(2);
    op2.feature_group_count = 4;
    op2.rhs_dilation = Dims::from_slice(&[1, 2]);
    let tys = [
        Type::new(DType::F64, &[2, 3, 7, 8]),
        Type::new(DType::F64, &[4, 3, 3, 3]),
        Type::new(DType::F64, &[4, 1, 2, 2]),
    ];
    let g = small_net(&op1, &op2, &tys);
    let grad = grad_graph(&g, 3, &[0, 1, 2], false).unwrap();
    grad.verify().unwrap();
    for point in 0..3 {
        let x: Vec<Array> = tys.iter().map(|t| rng.array(t)).collect();
        let t: Vec<Array> = tys.iter().map(|t| rng.array(t)).collect();
        let gs = eval(&grad, &x).unwrap();
        let gdot: f64 = gs.iter().zip(&t).map(|(a, b)| dot(a, b)).sum();
        let h = 1e-6;
        let f = |s: f64| {
            let args: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, s, d)).collect();
            eval(&g, &args).unwrap()[0].to_scalar().unwrap()
        };
        let fd = (f(h) - f(-h)) / (2.0 * h);
        close(gdot, fd, 1e-6, &format!("point {point}"));
    }
}
