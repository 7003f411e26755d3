//! The argmin adapters (`ferrax::argmin`): what they hand argmin equals ferrax's own
//! transforms and finite differences, errors keep ferrax's message, the dense matrix's
//! algebra is right, and small problems solve with L-BFGS, Newton, Newton-CG (dense, sparse
//! and matrix-free Hessians) and Gauss–Newton.
#![cfg(feature = "argmin")]

use argmin::core::{
    CostFunction, Executor, Gradient, Hessian, Jacobian, Operator, State, TerminationReason,
};
use argmin::solver::gaussnewton::GaussNewton;
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::newton::{Newton, NewtonCG};
use argmin::solver::quasinewton::LBFGS;
use argmin_math::{ArgminDot, ArgminInv, ArgminTranspose};
use ferrax::argmin::{Matrix, Minimize};
use ferrax::prelude::*;

/// A deterministic generator of test numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` numbers uniform in `[-1, 1)`.
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| 2.0 * self.uniform() - 1.0).collect()
    }
}

/// The chained Rosenbrock function: Σ 100(x[i+1] − x[i]²)² + (1 − x[i])².
fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    let a = tail - head.clone() * head.clone();
    let b = 1.0 - head;
    (a.clone() * a * 100.0 + b.clone() * b).sum_all()
}

/// The same function on plain numbers.
fn rosenbrock_f64(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `x + h d`.
fn step(x: &[f64], d: &[f64], h: f64) -> Vec<f64> {
    x.iter().zip(d).map(|(a, b)| a + h * b).collect()
}

#[track_caller]
fn assert_close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "got {got}, want {want} (tolerance {tol:e})"
    );
}

#[track_caller]
fn assert_all_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_close(*g, *w, tol);
    }
}

/// A smooth cost with a dense Hessian: Σ sin(x)·x + (Σ x)² / 4 + Σ exp(x / 3).
fn dense_cost(x: Tensor) -> Tensor {
    let s = x.sum_all();
    (x.sin() * x.clone()).sum_all() + s.clone() * s * 0.25 + (x / 3.0).exp().sum_all()
}

#[test]
fn cost_and_gradient_equal_ferrax_and_finite_differences() {
    let p = Minimize::new(dense_cost).unwrap();
    let direct = grad(dense_cost);
    let mut rng = Rng(1);
    for n in [1, 3, 7] {
        let x = rng.vec(n);
        let c = p.cost(&x).unwrap();
        let want: f64 = function(dense_cost).call(Array::from(x.clone())).unwrap();
        assert_close(c, want, 1e-14);
        let g = p.gradient(&x).unwrap();
        let g_direct: Vec<f64> = direct.call(Array::from(x.clone())).unwrap();
        assert_eq!(g, g_direct);
        // Central differences along random directions: <g, d> against (f(x+hd) − f(x−hd)) / 2h.
        for _ in 0..3 {
            let d = rng.vec(n);
            let h = 1e-5;
            let fd = (p.cost(&step(&x, &d, h)).unwrap() - p.cost(&step(&x, &d, -h)).unwrap())
                / (2.0 * h);
            assert_close(dot(&g, &d), fd, 1e-7);
        }
    }
}

#[test]
fn hessians_in_every_form_equal_ferrax_and_finite_differences() {
    let dense = Minimize::new(rosenbrock).unwrap();
    let sparse = Minimize::new(rosenbrock).unwrap().sparse_hessian().unwrap();
    let products = Minimize::new(rosenbrock)
        .unwrap()
        .hessian_products()
        .unwrap();
    let mut rng = Rng(2);
    let n = 6;
    let x = rng.vec(n);
    let h = dense.hessian(&x).unwrap();
    assert_eq!((h.rows(), h.cols()), (n, n));
    let direct: Array = hessian(rosenbrock).call(Array::from(x.clone())).unwrap();
    assert_eq!(h.data(), direct.to_f64_vec().as_slice());
    // The sparse form holds the same matrix (tridiagonal: 3n − 2 entries).
    let s = sparse.hessian(&x).unwrap();
    assert_eq!(s.nnz(), 3 * n - 2);
    assert_all_close(
        &s.to_dense().expect("a well-formed CSR matrix"),
        h.data(),
        1e-13,
    );
    let op = products.hessian(&x).unwrap();
    assert_eq!(op.point(), x);
    for _ in 0..3 {
        let v = rng.vec(n);
        let hv = h.dot(&v);
        // Every form's product with v, and finite differences of the gradient.
        assert_all_close(&s.dot(&v), &hv, 1e-13);
        assert_all_close(&op.dot(&v), &hv, 1e-13);
        assert_all_close(&op.apply(&v).unwrap(), &hv, 1e-13);
        let eps = 1e-6;
        let gp = dense.gradient(&step(&x, &v, eps)).unwrap();
        let gm = dense.gradient(&step(&x, &v, -eps)).unwrap();
        let fd: Vec<f64> = gp
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * eps))
            .collect();
        assert_all_close(&hv, &fd, 1e-6);
    }
}

#[test]
fn least_squares_jacobian_equals_jacfwd_and_finite_differences() {
    let t: Vec<f64> = (0..8).map(|k| k as f64 * 0.5).collect();
    let y: Vec<f64> = t.iter().map(|&t| 2.0 * (-0.7 * t).exp() + 0.3).collect();
    let (tc, yc) = (t.clone(), y.clone());
    let residuals = move |p: Tensor| {
        let tt = Tensor::from(tc.clone());
        let a = p.slice_axis(0, 0, 1);
        let k = p.slice_axis(0, 1, 2);
        let c = p.slice_axis(0, 2, 3);
        a * (-(k * tt)).exp() + c - Tensor::from(yc.clone())
    };
    let p = ferrax::argmin::LeastSquares::new(residuals.clone()).unwrap();
    let x = vec![1.5, 0.4, 0.1];
    let r = p.apply(&x).unwrap();
    assert_eq!(r.len(), t.len());
    let j = p.jacobian(&x).unwrap();
    assert_eq!((j.rows(), j.cols()), (t.len(), 3));
    let direct: Array = jacfwd(residuals).call(Array::from(x.clone())).unwrap();
    assert_eq!(j.data(), direct.to_f64_vec().as_slice());
    let mut rng = Rng(3);
    for _ in 0..3 {
        let d = rng.vec(3);
        let eps = 1e-6;
        let rp = p.apply(&step(&x, &d, eps)).unwrap();
        let rm = p.apply(&step(&x, &d, -eps)).unwrap();
        let fd: Vec<f64> = rp
            .iter()
            .zip(&rm)
            .map(|(a, b)| (a - b) / (2.0 * eps))
            .collect();
        assert_all_close(&j.dot(&d), &fd, 1e-7);
    }
    // The cost is ½‖r‖² and its gradient Jᵀr.
    assert_close(p.cost(&x).unwrap(), 0.5 * dot(&r, &r), 1e-14);
    let jt_r = j.clone().t().dot(&r);
    assert_all_close(&p.gradient(&x).unwrap(), &jt_r, 1e-12);
    // At the true parameters the residuals vanish.
    assert!(p
        .apply(&vec![2.0, 0.7, 0.3])
        .unwrap()
        .iter()
        .all(|r| r.abs() < 1e-15));
}

#[test]
fn ferrax_errors_become_argmin_errors_with_their_message() {
    // A cost that is not a scalar: grad refuses it.
    let p = Minimize::new(|x: Tensor| x.sin()).unwrap();
    let e = p.gradient(&vec![1.0, 2.0]).unwrap_err();
    let inner = e
        .downcast_ref::<ferrax::Error>()
        .expect("a ferrax error inside");
    assert_eq!(e.to_string(), inner.to_string());
    assert!(e.to_string().contains("grad"), "{e}");
    // A shape error inside the cost, reported with the op.
    let p = Minimize::new(|x: Tensor| (x.clone() + x.reshape(&[1, 2])).sum_all()).unwrap();
    let e = p.cost(&vec![1.0, 2.0, 3.0]).unwrap_err();
    assert!(e.downcast_ref::<ferrax::Error>().is_some());
    assert!(e.to_string().contains("reshape"), "{e}");
    // A Hessian-vector product of the wrong length: the operator says so, and argmin's dot
    // (which cannot fail) gives NaNs and makes the problem's next call fail with the message.
    let p = Minimize::new(rosenbrock)
        .unwrap()
        .hessian_products()
        .unwrap();
    let x = vec![0.5, 0.5, 0.5];
    let op = p.hessian(&x).unwrap();
    let e = op.apply(&vec![1.0]).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a vector of 3 values, found 1"),
        "{e}"
    );
    let hv = op.dot(&vec![1.0]);
    assert!(hv.len() == 1 && hv[0].is_nan());
    let e = p.gradient(&x).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a vector of 3 values, found 1"),
        "{e}"
    );
    // The error was reported once; the problem works again.
    assert!(p.gradient(&x).is_ok());
}

#[test]
fn matrix_algebra() {
    let mut rng = Rng(4);
    let n = 5;
    // A diagonally dominant matrix is invertible.
    let mut data = rng.vec(n * n);
    for i in 0..n {
        data[i * n + i] += 4.0;
    }
    let a = Matrix::new(n, n, data).unwrap();
    let inv = a.inv().unwrap();
    let eye = a.dot(&inv);
    for i in 0..n {
        for j in 0..n {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((eye.get(i, j).unwrap() - want).abs() < 1e-13);
        }
    }
    // The transpose of a product is the product of the transposes, reversed.
    let b = Matrix::new(n, 2, rng.vec(2 * n)).unwrap();
    let ab_t = a.dot(&b).t();
    let bt_at = b.clone().t().dot(&a.clone().t());
    assert_all_close(ab_t.data(), bt_at.data(), 1e-14);
    assert_eq!((ab_t.rows(), ab_t.cols()), (2, n));
    // A row of a matrix times a vector.
    let v = rng.vec(2);
    let bv = b.dot(&v);
    assert_close(
        bv[3],
        b.get(3, 0).unwrap() * v[0] + b.get(3, 1).unwrap() * v[1],
        1e-15,
    );
    // Singular and non-square matrices have no inverse; sizes that do not fit give NaNs.
    let singular = Matrix::new(2, 2, vec![1.0, 2.0, 2.0, 4.0]).unwrap();
    assert!(singular.inv().unwrap_err().to_string().contains("singular"));
    assert!(b.inv().unwrap_err().to_string().contains("square"));
    assert!(Matrix::new(2, 3, vec![0.0; 5]).is_err());
    let bad = b.dot(&vec![1.0; 3]);
    assert!(bad.len() == n && bad.iter().all(|x| x.is_nan()));
    let bad = b.dot(&b);
    assert_eq!((bad.rows(), bad.cols()), (n, 2));
    assert!(bad.data().iter().all(|x| x.is_nan()));
    assert_eq!(
        Vec::<Vec<f64>>::from(b.clone())[4],
        vec![b.get(4, 0).unwrap(), b.get(4, 1).unwrap()]
    );
}

/// The classic start (−1.2, 1, −1.2, 1, ...).
fn classic_start(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect()
}

#[test]
fn lbfgs_solves_chained_rosenbrock() {
    let n = 10;
    let problem = Minimize::new(rosenbrock).unwrap();
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
        .with_tolerance_cost(0.0)
        .unwrap();
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(classic_start(n)).max_iters(500))
        .run()
        .unwrap();
    assert_eq!(
        res.state.get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    let x = res.state.get_best_param().unwrap();
    assert!(rosenbrock_f64(x) < 1e-10, "{}", rosenbrock_f64(x));
    assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-4));
}

/// A strictly convex cost with a dense Hessian and a unique minimum:
/// Σ exp(x) − 2x + (Σ x)²/10.
fn convex(x: Tensor) -> Tensor {
    let s = x.sum_all();
    (x.exp() - x * 2.0).sum_all() + s.clone() * s * 0.1
}

/// Asserts that a run stopped by its own convergence test at a point where the gradient of
/// [`convex`] vanishes.
#[track_caller]
fn assert_converged_on_convex(reason: Option<&TerminationReason>, x: &Vec<f64>) {
    assert_eq!(reason, Some(&TerminationReason::SolverConverged));
    let g = Minimize::new(convex).unwrap().gradient(x).unwrap();
    assert!(g.iter().all(|v| v.abs() < 1e-6), "{g:?}");
}

#[test]
fn newton_cg_solves_with_every_hessian_form() {
    let n = 6;
    let ncg = || {
        NewtonCG::new(MoreThuenteLineSearch::new())
            .with_tolerance(1e-14)
            .unwrap()
    };
    let start = || vec![0.5; n];
    let r = Executor::new(Minimize::new(convex).unwrap(), ncg())
        .configure(|s| s.param(start()).max_iters(200))
        .run()
        .unwrap();
    assert_converged_on_convex(
        r.state.get_termination_reason(),
        r.state.get_best_param().unwrap(),
    );
    let p = Minimize::new(convex).unwrap().sparse_hessian().unwrap();
    let r = Executor::new(p, ncg())
        .configure(|s| s.param(start()).max_iters(200))
        .run()
        .unwrap();
    assert_converged_on_convex(
        r.state.get_termination_reason(),
        r.state.get_best_param().unwrap(),
    );
    let p = Minimize::new(convex).unwrap().hessian_products().unwrap();
    let r = Executor::new(p, ncg())
        .configure(|s| s.param(start()).max_iters(200))
        .run()
        .unwrap();
    assert_converged_on_convex(
        r.state.get_termination_reason(),
        r.state.get_best_param().unwrap(),
    );
}

#[test]
fn newton_solves_a_convex_problem() {
    // Newton's full steps converge on the convex cost from a nearby point.
    let p = Minimize::new(convex).unwrap();
    let r = Executor::new(p.clone(), Newton::<f64>::new())
        .configure(|s| s.param(vec![0.5; 4]).max_iters(30))
        .run()
        .unwrap();
    let x = r.state.get_best_param().unwrap();
    let g = p.gradient(x).unwrap();
    assert!(g.iter().all(|v| v.abs() < 1e-12), "{g:?}");
}

#[test]
fn gauss_newton_recovers_the_parameters_of_a_fit() {
    let t: Vec<f64> = (0..20).map(|k| k as f64 * 0.25).collect();
    let y: Vec<f64> = t.iter().map(|&t| 2.0 * (-0.7 * t).exp() + 0.3).collect();
    let residuals = move |p: Tensor| {
        let tt = Tensor::from(t.clone());
        let a = p.slice_axis(0, 0, 1);
        let k = p.slice_axis(0, 1, 2);
        let c = p.slice_axis(0, 2, 3);
        a * (-(k * tt)).exp() + c - Tensor::from(y.clone())
    };
    let p = ferrax::argmin::LeastSquares::new(residuals).unwrap();
    let r = Executor::new(p, GaussNewton::new())
        .configure(|s| s.param(vec![1.0, 0.3, 0.0]).max_iters(50))
        .run()
        .unwrap();
    assert_eq!(
        r.state.get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    let x = r.state.get_best_param().unwrap();
    assert_all_close(x, &[2.0, 0.7, 0.3], 1e-8);
}

#[test]
fn misuse_gives_errors_or_nans_never_panics() {
    // A residual function with two outputs: the least-squares cost says so.
    let p = ferrax::argmin::LeastSquares::new(|x: Tensor| (x.clone(), x)).unwrap();
    let e = p.cost(&vec![1.0]).unwrap_err();
    assert!(e.to_string().contains("with 1 output, found 2"), "{e}");
    // A hand-made CSR matrix whose fields disagree: NaNs of its row count.
    let bad = ferrax::Sparse {
        nrows: 2,
        ncols: 2,
        row_ptr: vec![0, 5],
        col_idx: vec![0],
        values: vec![1.0],
        colours: 1,
    };
    let out = bad.dot(&vec![1.0, 1.0]);
    assert!(out.len() == 2 && out.iter().all(|x| x.is_nan()));
    let huge = ferrax::Sparse {
        nrows: usize::MAX,
        ..bad
    };
    assert!(huge.dot(&vec![1.0, 1.0]).is_empty());
    // A matrix without columns: empty sums.
    let m = Matrix::new(3, 0, vec![]).unwrap();
    assert_eq!(m.dot(&vec![]), vec![0.0; 3]);
    assert_eq!((m.clone().t().rows(), m.t().cols()), (0, 3));
}
