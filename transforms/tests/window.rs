//! Derivatives of the window family over random geometries (ranks 1 to 3, strides, padding,
//! base and window dilation): JVPs against central finite differences in f64 in random
//! directions (inputs drawn from a continuum, so no ties), reverse mode against forward mode
//! through <ct, J·t> = <Jᵀ·ct, t>, second derivatives (forward over reverse) against finite
//! differences of the gradient, the tie rule of the max-pool gradient, and the gradient of
//! `max_pool(relu(x))` summed against finite differences.

mod common;

use common::*;
use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
use ferrax_ir::{Array, Builder, DType, Op, Padding, Tensor, Type, Value};
use ferrax_transforms::api::grad;
use ferrax_transforms::{grad_graph, jvp_graph, vjp_graph};

/// A random operand shape (no zero dims: finite differences need elements) and window.
fn random_case(rng: &mut Rng) -> (Vec<usize>, Window) {
    let below = |rng: &mut Rng, n: usize| (rng.uniform(0.0, n as f64) as usize).min(n - 1);
    let rank = below(rng, 3) + 1;
    let dims: Vec<usize> = (0..rank).map(|_| below(rng, 5) + 1).collect();
    let w: Vec<usize> = (0..rank).map(|_| below(rng, 3) + 1).collect();
    let s: Vec<usize> = (0..rank).map(|_| below(rng, 3) + 1).collect();
    let pad: Vec<(usize, usize)> = (0..rank).map(|_| (below(rng, 3), below(rng, 3))).collect();
    let bd: Vec<usize> = (0..rank).map(|_| below(rng, 3) + 1).collect();
    let wd: Vec<usize> = (0..rank).map(|_| below(rng, 3) + 1).collect();
    let win = Window::new(&w)
        .with_strides(&s)
        .with_padding(&pad)
        .with_base_dilation(&bd)
        .with_window_dilation(&wd);
    (dims, win)
}

fn window_op(b: &mut Builder, op: &WindowOp, args: &[Value]) -> Value {
    b.push1(Op::Window(Box::new(op.clone())), args).unwrap()
}

/// Checks the JVP of the single-output graph `g` (of `n` f64 parameters) against central
/// differences and the VJP against the JVP, at a random point and direction.
fn check_first_order(g: &ferrax_ir::Graph, tys: &[Type], rng: &mut Rng, what: &str) {
    let n = tys.len();
    let jvp = jvp_graph(g, n).unwrap();
    let vjp = vjp_graph(g, n).unwrap();
    let x: Vec<Array> = tys.iter().map(|t| rng.array(t, -1.0, 1.0)).collect();
    let t: Vec<Array> = tys.iter().map(|t| rng.array(t, -1.0, 1.0)).collect();
    let mut args = x.clone();
    args.extend(t.iter().cloned());
    let jo = run(&jvp, &args);
    let h = 1e-6;
    let plus: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, h, d)).collect();
    let minus: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, -h, d)).collect();
    let (fp, fm) = (run(g, &plus)[0].clone(), run(g, &minus)[0].clone());
    let fd: Vec<f64> = fp
        .to_f64_vec()
        .iter()
        .zip(fm.to_f64_vec())
        // Windows of padding only are −∞ (or +∞) on both sides: derivative 0.
        .map(|(&p, m)| if p == m { 0.0 } else { (p - m) / (2.0 * h) })
        .collect();
    let fd = Array::from_f64(fp.shape().clone(), fd).unwrap();
    close_arrays(&jo[1], &fd, 1e-6, &format!("{what}: jvp vs fd"));
    let ct = rng.array(&g.output_types()[0], -1.0, 1.0);
    let mut vargs = x.clone();
    vargs.push(ct.clone());
    let vo = run(&vjp, &vargs);
    let lhs = dot(&ct, &jo[1]);
    let rhs: f64 = (0..n).map(|i| dot(&vo[1 + i], &t[i])).sum();
    close(
        lhs,
        rhs,
        1e-12,
        &format!("{what}: <ct, J t> vs <J^T ct, t>"),
    );
}

#[test]
fn reductions_over_random_geometries() {
    let mut rng = Rng(2024);
    for case in 0..60 {
        let (dims, w) = random_case(&mut rng);
        let ty = f64t(&dims);
        for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
            let op = WindowOp::Reduce {
                monoid,
                window: w.clone(),
            };
            let g = build(std::slice::from_ref(&ty), |b, p| {
                vec![window_op(b, &op, &[p[0]])]
            });
            let what = format!("case {case} {} {dims:?} {w:?}", op.name());
            check_first_order(&g, std::slice::from_ref(&ty), &mut rng, &what);
        }
    }
}

#[test]
fn select_ops_over_random_geometries() {
    let mut rng = Rng(77);
    for case in 0..60 {
        let (dims, w) = random_case(&mut rng);
        let ty = f64t(&dims);
        let out = w.out_dims(&dims).unwrap();
        for select in [Select::Max, Select::Min] {
            let gather = WindowOp::SelectAndGatherAdd {
                select,
                window: w.clone(),
            };
            let scatter = WindowOp::SelectAndScatterAdd {
                select,
                window: w.clone(),
            };
            let tys = [ty.clone(), ty.clone()];
            let g = build(&tys, |b, p| vec![window_op(b, &gather, &[p[0], p[1]])]);
            check_first_order(
                &g,
                &tys,
                &mut rng,
                &format!("case {case} gather {select:?}"),
            );
            let tys = [f64t(&out), ty.clone()];
            let g = build(&tys, |b, p| vec![window_op(b, &scatter, &[p[0], p[1]])]);
            check_first_order(
                &g,
                &tys,
                &mut rng,
                &format!("case {case} scatter {select:?}"),
            );
        }
    }
}

#[test]
fn second_derivatives_against_differences_of_the_gradient() {
    // f(x) = Σ reduce_window(x)² · sin(x) terms: the Hessian-vector product (forward over
    // reverse) against central differences of the gradient.
    let mut rng = Rng(5);
    let mut checked = 0;
    for case in 0..50 {
        let (dims, w) = random_case(&mut rng);
        let ty = f64t(&dims);
        for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
            let op = WindowOp::Reduce {
                monoid,
                window: w.clone(),
            };
            let f = build(std::slice::from_ref(&ty), |b, p| {
                let s = un(b, ferrax_ir::ops::UnaryOp::Sin, p[0]);
                let y = window_op(b, &op, &[s]);
                let y2 = bin(b, ferrax_ir::ops::BinaryOp::Mul, y, y);
                vec![sum_all(b, y2)]
            });
            let g = grad_graph(&f, 1, &[0], false).unwrap();
            let hvp = jvp_graph(&g, 1).unwrap();
            let x = rng.array(&ty, -1.0, 1.0);
            let t = rng.array(&ty, -1.0, 1.0);
            // Windows of padding only make f infinite (and its derivatives NaN): skip those.
            if !run(&f, std::slice::from_ref(&x))[0]
                .to_scalar()
                .unwrap()
                .is_finite()
            {
                continue;
            }
            checked += 1;
            let got = run(&hvp, &[x.clone(), t.clone()])[1].clone();
            let h = 1e-6;
            let gp = run(&g, &[axpy(&x, h, &t)])[0].to_f64_vec();
            let gm = run(&g, &[axpy(&x, -h, &t)])[0].to_f64_vec();
            let fd: Vec<f64> = gp
                .iter()
                .zip(&gm)
                .map(|(p, m)| (p - m) / (2.0 * h))
                .collect();
            let fd = Array::from_f64(dims.clone(), fd).unwrap();
            close_arrays(
                &got,
                &fd,
                1e-6,
                &format!("case {case} {}: hvp vs fd", op.name()),
            );
            assert!(got.to_f64_vec().iter().all(|v| v.is_finite()));
        }
    }
    assert!(checked >= 60, "only {checked} finite cases");
}

#[test]
fn max_pool_gradient_sends_ties_to_the_first_maximum() {
    // 1×1×3×4 with ties; 2×2 windows, stride 1 (overlapping), VALID.
    #[rustfmt::skip]
    let x = vec![
        1.0, 5.0, 5.0, 0.0,
        5.0, 2.0, 5.0, 3.0,
        0.0, 1.0, 1.0, 3.0,
    ];
    let xa = Array::from_f64(vec![1, 1, 3, 4], x).unwrap();
    let f = |x: Tensor| x.max_pool(&[2, 2], &[1, 1], Padding::Valid).sum_all();
    let g: Array = grad(f).call(xa.clone()).unwrap();
    // Windows (row-major, first maximum in window order):
    // (0,0): {1,5,5,2} → (0,1);  (0,1): {5,5,2,5} → (0,1);  (0,2): {5,0,5,3} → (0,2);
    // (1,0): {5,2,0,1} → (1,0);  (1,1): {2,5,1,1} → (1,2);  (1,2): {5,3,1,3} → (1,2).
    #[rustfmt::skip]
    let want = vec![
        0.0, 2.0, 1.0, 0.0,
        1.0, 0.0, 2.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(g.to_f64_vec(), want);
    // min windows send ties to the first minimum the same way.
    let f = |x: Tensor| x.reduce_window_min(&Window::new(&[1, 1, 2, 2])).sum_all();
    let g: Array = grad(f).call(xa).unwrap();
    // (0,0): {1,5,5,2} → (0,0); (0,1): {5,5,2,5} → (1,1); (0,2): {5,0,5,3} → (0,3);
    // (1,0): {5,2,0,1} → (2,0); (1,1): {2,5,1,1} → (2,1); (1,2): {5,3,1,3} → (2,2).
    #[rustfmt::skip]
    let want = vec![
        1.0, 0.0, 0.0, 1.0,
        0.0, 1.0, 0.0, 0.0,
        1.0, 1.0, 1.0, 0.0,
    ];
    assert_eq!(g.to_f64_vec(), want);
}

#[test]
fn grad_of_max_pool_of_relu_matches_finite_differences() {
    let mut rng = Rng(99);
    let ty = Type::new(DType::F64, &[2, 3, 6, 5]);
    let f = |x: Tensor| {
        let r = x.maximum(0.0);
        let p = r.max_pool(&[3, 3], &[2, 2], Padding::Same);
        (&p * &p).sum_all() + p.avg_pool(&[2, 2], &[1, 1], Padding::Valid).sum_all()
    };
    let df = grad(f);
    for point in 0..3 {
        let x = rng.array(&ty, -1.0, 1.0);
        let g: Array = df.call(x.clone()).unwrap();
        let t = rng.array(&ty, -1.0, 1.0);
        let h = 1e-6;
        let val = |a: Array| -> f64 { ferrax_ir::function(f).call(a).unwrap() };
        let fd = (val(axpy(&x, h, &t)) - val(axpy(&x, -h, &t))) / (2.0 * h);
        close(dot(&g, &t), fd, 1e-6, &format!("point {point}"));
        // Elements whose relu is zero get no gradient; all-negative windows give zeros.
        let xs = x.to_f64_vec();
        for (i, &gi) in g.to_f64_vec().iter().enumerate() {
            if xs[i] < 0.0 {
                assert_eq!(gi, 0.0, "negative input {i} has gradient {gi}");
            }
        }
    }
}
