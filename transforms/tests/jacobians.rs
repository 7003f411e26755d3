//! Jacobians and Hessians: known closed forms, the Rosenbrock Hessian, symmetry, and
//! forward against reverse mode.

mod common;

use common::*;
use ferrax_ir::ops::{BinaryOp, ShapeOp, UnaryOp};
use ferrax_ir::{Array, Builder, Dims, Op, Shape, Value};
use ferrax_transforms::{hessian_graph, jacfwd_graph, jacrev_graph};

fn slice1(b: &mut Builder, x: Value, start: usize, limit: usize) -> Value {
    let op = ShapeOp::Slice {
        start: Box::new([start]),
        limit: Box::new([limit]),
        stride: Box::new([1]),
    };
    b.push1(Op::Shape(op), &[x]).unwrap()
}

#[test]
fn hessian_of_a_quadratic() {
    let g = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let (x, y) = (p[0], p[1]);
        let xx = bin(b, BinaryOp::Mul, x, x);
        let xy = bin(b, BinaryOp::Mul, x, y);
        let two = cst(b, 2.0);
        let xy2 = bin(b, BinaryOp::Mul, two, xy);
        let yy = bin(b, BinaryOp::Mul, y, y);
        let s = bin(b, BinaryOp::Add, xx, xy2);
        vec![bin(b, BinaryOp::Add, s, yy)]
    });
    let h = hessian_graph(&g, 2, &[0, 1]).unwrap();
    assert_eq!(h.outputs().len(), 4);
    for (x, y) in [(0.3, -1.2), (2.0, 5.0)] {
        let v = run_scalars(&h, &[x, y]);
        assert_eq!(v, vec![2.0, 2.0, 2.0, 2.0]);
    }
}

/// [x² + y, x·y] as a function of v = [x, y].
fn two_by_two() -> ferrax_ir::Graph {
    build(&[f64t(&[2])], |b, p| {
        let x = slice1(b, p[0], 0, 1);
        let y = slice1(b, p[0], 1, 2);
        let xx = bin(b, BinaryOp::Mul, x, x);
        let a = bin(b, BinaryOp::Add, xx, y);
        let c = bin(b, BinaryOp::Mul, x, y);
        vec![b
            .push1(Op::Shape(ShapeOp::Concatenate { axis: 0 }), &[a, c])
            .unwrap()]
    })
}

#[test]
fn jacobian_of_a_small_map() {
    let g = two_by_two();
    let x = Array::from(vec![1.0, 2.0]);
    for j in [
        jacfwd_graph(&g, 1, &[0]).unwrap(),
        jacrev_graph(&g, 1, &[0]).unwrap(),
    ] {
        let out = run(&j, std::slice::from_ref(&x));
        assert_eq!(out[0].dims(), &[2, 2]);
        assert_eq!(out[0].to_f64_vec(), vec![2.0, 1.0, 2.0, 1.0]);
    }
}

fn rosenbrock(n: usize) -> ferrax_ir::Graph {
    build(&[f64t(&[n])], |b, p| {
        let a = slice1(b, p[0], 0, n - 1);
        let c = slice1(b, p[0], 1, n);
        let aa = un(b, UnaryOp::Square, a);
        let d = bin(b, BinaryOp::Sub, c, aa);
        let dd = un(b, UnaryOp::Square, d);
        let hundred = b.constant(Array::full(ferrax_ir::DType::F64, [n - 1], 100.0).unwrap());
        let t1 = bin(b, BinaryOp::Mul, hundred, dd);
        let one = b.constant(Array::full(ferrax_ir::DType::F64, [n - 1], 1.0).unwrap());
        let e = bin(b, BinaryOp::Sub, one, a);
        let t2 = un(b, UnaryOp::Square, e);
        let s = bin(b, BinaryOp::Add, t1, t2);
        vec![sum_all(b, s)]
    })
}

#[test]
fn rosenbrock_hessian_is_the_analytic_tridiagonal_one() {
    let n = 100;
    let h = hessian_graph(&rosenbrock(n), 1, &[0]).unwrap();
    println!(
        "Rosenbrock n={n} Hessian graph: {} equations",
        h.num_insts()
    );
    let mut rng = Rng(7);
    let x = rng.array(&f64t(&[n]), -1.0, 1.0);
    let out = run(&h, std::slice::from_ref(&x));
    assert_eq!(out[0].dims(), &[n, n]);
    let xv = x.to_f64_vec();
    let hv = out[0].to_f64_vec();
    for i in 0..n {
        for j in 0..n {
            let mut want = 0.0;
            if i == j {
                if i < n - 1 {
                    want += 1200.0 * xv[i] * xv[i] - 400.0 * xv[i + 1] + 2.0;
                }
                if i > 0 {
                    want += 200.0;
                }
            } else if j == i + 1 {
                want = -400.0 * xv[i];
            } else if i == j + 1 {
                want = -400.0 * xv[j];
            }
            close(hv[i * n + j], want, 1e-12, &format!("H[{i}][{j}]"));
            assert_eq!(
                hv[i * n + j],
                hv[j * n + i],
                "H is not symmetric at ({i}, {j})"
            );
        }
    }
}

#[test]
fn forward_and_reverse_jacobians_agree_for_matrix_inputs() {
    // f(A, w) = [tanh(A) · w, sum(A · A)] with A: [2, 3], w: [3].
    let g = build(&[f64t(&[2, 3]), f64t(&[3])], |b, p| {
        let t = un(b, UnaryOp::Tanh, p[0]);
        let d = ferrax_ir::ops::DotGeneral {
            lhs_contract: Dims::from_slice(&[1]),
            rhs_contract: Dims::from_slice(&[0]),
            ..Default::default()
        };
        let m = b.push1(Op::Dot(Box::new(d)), &[t, p[1]]).unwrap();
        let sq = bin(b, BinaryOp::Mul, p[0], p[0]);
        vec![m, sum_all(b, sq)]
    });
    let f = jacfwd_graph(&g, 2, &[0, 1]).unwrap();
    let r = jacrev_graph(&g, 2, &[0, 1]).unwrap();
    let mut rng = Rng(3);
    let args = vec![
        rng.array(&f64t(&[2, 3]), -1.0, 1.0),
        rng.array(&f64t(&[3]), -1.0, 1.0),
    ];
    let (fo, ro) = (run(&f, &args), run(&r, &args));
    let shapes: Vec<Vec<usize>> = fo.iter().map(|a| a.dims().to_vec()).collect();
    assert_eq!(shapes, vec![vec![2, 2, 3], vec![2, 3], vec![2, 3], vec![3]]);
    for (k, (a, c)) in fo.iter().zip(&ro).enumerate() {
        close_arrays(a, c, 1e-12, &format!("jacobian block {k}"));
    }
    // d sum(A²) / dA = 2A.
    let two_a: Vec<f64> = args[0].to_f64_vec().iter().map(|v| 2.0 * v).collect();
    close_arrays(
        &fo[2],
        &Array::from_f64(Shape::new(&[2, 3]), two_a).unwrap(),
        1e-12,
        "2A",
    );
}

#[test]
fn mixed_partials_of_sin_exp_over_log() {
    // f(x, y, z) = sin(x)·exp(y)/log(z).
    let g = build(&[f64t(&[]), f64t(&[]), f64t(&[])], |b, p| {
        let s = un(b, UnaryOp::Sin, p[0]);
        let e = un(b, UnaryOp::Exp, p[1]);
        let l = un(b, UnaryOp::Log, p[2]);
        let m = bin(b, BinaryOp::Mul, s, e);
        vec![bin(b, BinaryOp::Div, m, l)]
    });
    let h = hessian_graph(&g, 3, &[0, 1, 2]).unwrap();
    let (x, y, z): (f64, f64, f64) = (0.7, -0.4, 2.5);
    let v = run_scalars(&h, &[x, y, z]);
    let (s, c, e, l) = (x.sin(), x.cos(), y.exp(), z.ln());
    let want = [
        [-s * e / l, c * e / l, -c * e / (z * l * l)],
        [c * e / l, s * e / l, -s * e / (z * l * l)],
        [
            -c * e / (z * l * l),
            -s * e / (z * l * l),
            s * e * (l + 2.0) / (z * z * l * l * l),
        ],
    ];
    for i in 0..3 {
        for j in 0..3 {
            close(v[i * 3 + j], want[i][j], 1e-12, &format!("H[{i}][{j}]"));
            close(v[i * 3 + j], v[j * 3 + i], 1e-14, "symmetry");
        }
    }
}
