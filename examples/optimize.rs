//! ferrax derivatives inside argmin's solvers (`--features argmin`): the 100-dimensional
//! chained Rosenbrock function by L-BFGS (More–Thuente line search) and Newton-CG (dense,
//! sparse and matrix-free Hessians), and a Michaelis–Menten fit to noisy synthetic data by
//! Gauss–Newton, each beside the same solver on hand-written derivatives.
//!
//! For each solver it prints `<solver> converged = <bool> iters = <n> cost = <c>` and the
//! time per iteration (the median of several solves after a first one that compiles), and a
//! `hand <solver>` line for the hand-written version. `converged` is true only when argmin
//! ended the run because the solver's own convergence test held (not at the iteration limit).
//! argmin's Gauss–Newton reports the residual norm ‖r‖ as its cost.
//!
//! argmin 0.11's Newton-CG needs thousands of iterations here, with ferrax's derivatives and
//! hand-written ones alike: its inner conjugate-gradient loop stops when the *squared*
//! residual norm falls below the forcing term `min(1/2, √‖g‖)·‖g‖`, which near the minimum
//! holds after one CG step, so most of its steps are steepest-descent steps. The iteration
//! counts below are what the solver does, not a property of the derivatives.
//!
//! Run with `cargo run --release --example optimize --features argmin`.

#[path = "common/mod.rs"]
mod common;

use argmin::core::{
    CostFunction, Error, Executor, Gradient, Hessian, Jacobian, Operator, State, TerminationReason,
};
use argmin::solver::gaussnewton::GaussNewton;
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::newton::NewtonCG;
use argmin::solver::quasinewton::LBFGS;
use argmin_math::ArgminDot;
use common::{num, vec_text, AnyResult, Progress, Rng};
use ferrax::argmin::{LeastSquares, Matrix, Minimize};
use ferrax::Tensor;
use std::time::Instant;

/// The dimension of the Rosenbrock problem.
pub const N: usize = 100;
/// How many timed solves each solver gets after its first (compiling) one.
const REPEATS: usize = 3;

/// The chained Rosenbrock function Σᵢ 100(x[i+1] − x[i]²)² + (1 − x[i])², written once for
/// ferrax.
pub fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    let a = tail - &head * &head;
    let b = 1.0 - head;
    (&a * &a * 100.0 + &b * &b).sum_all()
}

/// The classic start (−1.2, 1, −1.2, 1, ...).
pub fn classic_start(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect()
}

/// The chained Rosenbrock function with hand-written derivatives.
#[derive(Clone)]
pub struct HandRosenbrock;

impl CostFunction for HandRosenbrock {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        Ok(x.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum())
    }
}

impl Gradient for HandRosenbrock {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        let mut g = vec![0.0; x.len()];
        for i in 0..x.len().saturating_sub(1) {
            let a = x[i + 1] - x[i] * x[i];
            g[i] += -400.0 * a * x[i] - 2.0 * (1.0 - x[i]);
            g[i + 1] += 200.0 * a;
        }
        Ok(g)
    }
}

/// The Rosenbrock Hessian, tridiagonal: its diagonal and its off-diagonal.
#[derive(Clone)]
pub struct Tridiagonal {
    diag: Vec<f64>,
    off: Vec<f64>,
}

impl ArgminDot<Vec<f64>, Vec<f64>> for Tridiagonal {
    fn dot(&self, v: &Vec<f64>) -> Vec<f64> {
        let n = self.diag.len();
        (0..n)
            .map(|i| {
                let mut s = self.diag[i] * v[i];
                if i > 0 {
                    s += self.off[i - 1] * v[i - 1];
                }
                if i + 1 < n {
                    s += self.off[i] * v[i + 1];
                }
                s
            })
            .collect()
    }
}

impl Hessian for HandRosenbrock {
    type Param = Vec<f64>;
    type Hessian = Tridiagonal;

    fn hessian(&self, x: &Vec<f64>) -> Result<Tridiagonal, Error> {
        let n = x.len();
        let mut diag = vec![0.0; n];
        let mut off = vec![0.0; n.saturating_sub(1)];
        for i in 0..n.saturating_sub(1) {
            diag[i] += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
            diag[i + 1] += 200.0;
            off[i] = -400.0 * x[i];
        }
        Ok(Tridiagonal { diag, off })
    }
}

/// Substrate concentrations and measured rates: `v = vmax s / (km + s)` plus Gaussian noise
/// of standard deviation 0.02, from a fixed seed.
pub fn michaelis_menten_data() -> (Vec<f64>, Vec<f64>) {
    let (vmax, km) = (2.5, 0.8);
    let mut rng = Rng::new(42);
    let s: Vec<f64> = (0..30).map(|k| 0.1 + 0.2 * k as f64).collect();
    let v = s
        .iter()
        .map(|&s| vmax * s / (km + s) + 0.02 * rng.normal())
        .collect();
    (s, v)
}

/// The fit's residuals `vmax s / (km + s) − v` as a ferrax function of `[vmax, km]`.
pub fn mm_residuals(s: Vec<f64>, v: Vec<f64>) -> impl Fn(Tensor) -> Tensor + Clone + 'static {
    move |p: Tensor| {
        let s = Tensor::from(s.clone());
        let vmax = p.slice_axis(0, 0, 1);
        let km = p.slice_axis(0, 1, 2);
        vmax * &s / (km + &s) - Tensor::from(v.clone())
    }
}

/// The same residuals with a hand-written Jacobian.
#[derive(Clone)]
pub struct HandMichaelisMenten {
    s: Vec<f64>,
    v: Vec<f64>,
}

impl Operator for HandMichaelisMenten {
    type Param = Vec<f64>;
    type Output = Vec<f64>;

    fn apply(&self, p: &Vec<f64>) -> Result<Vec<f64>, Error> {
        let (vmax, km) = (p[0], p[1]);
        Ok(self
            .s
            .iter()
            .zip(&self.v)
            .map(|(&s, &v)| vmax * s / (km + s) - v)
            .collect())
    }
}

impl Jacobian for HandMichaelisMenten {
    type Param = Vec<f64>;
    type Jacobian = Matrix;

    fn jacobian(&self, p: &Vec<f64>) -> Result<Matrix, Error> {
        let (vmax, km) = (p[0], p[1]);
        let mut j = Vec::with_capacity(2 * self.s.len());
        for &s in &self.s {
            let d = km + s;
            j.push(s / d);
            j.push(-vmax * s / (d * d));
        }
        Ok(Matrix::new(self.s.len(), 2, j)?)
    }
}

/// What one solver run reports.
pub struct Outcome {
    /// True when the solver's own convergence test ended the run.
    pub converged: bool,
    /// Iterations done.
    pub iters: u64,
    /// The best cost found.
    pub cost: f64,
    /// The best parameters found.
    pub param: Vec<f64>,
    /// Median seconds per iteration over the timed solves.
    pub time_per_iter: f64,
}

/// Runs `solve` once to compile, then [`REPEATS`] more times, timing each; the outcome is
/// the last run's with the median time per iteration.
fn timed<S: State<Param = Vec<f64>, Float = f64>>(
    mut solve: impl FnMut() -> Result<S, Error>,
) -> AnyResult<Outcome> {
    let mut state = solve()?;
    let mut per_iter = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let t = Instant::now();
        state = solve()?;
        per_iter.push(t.elapsed().as_secs_f64() / state.get_iter().max(1) as f64);
    }
    per_iter.sort_by(f64::total_cmp);
    Ok(Outcome {
        converged: state.get_termination_reason() == Some(&TerminationReason::SolverConverged),
        iters: state.get_iter(),
        cost: state.get_best_cost(),
        param: state.get_best_param().cloned().unwrap_or_default(),
        time_per_iter: per_iter[per_iter.len() / 2],
    })
}

/// L-BFGS with memory 7 and the More–Thuente line search on `problem`.
fn lbfgs<P>(problem: P) -> AnyResult<Outcome>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + Clone,
{
    timed(|| {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7);
        let r = Executor::new(problem.clone(), solver)
            .configure(|s| s.param(classic_start(N)).max_iters(1000))
            .run()?;
        Ok(r.state)
    })
}

/// Newton-CG with the More–Thuente line search on `problem`, whose Hessian type `H` only
/// needs products with vectors.
fn newton_cg<P, H>(problem: P) -> AnyResult<Outcome>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + Hessian<Param = Vec<f64>, Hessian = H>
        + Clone,
    H: Clone + ArgminDot<Vec<f64>, Vec<f64>>,
{
    timed(|| {
        // Curvature at or below zero along a CG direction ends the inner loop (argmin's
        // default threshold).
        let solver = NewtonCG::new(MoreThuenteLineSearch::new()).with_tolerance(1e-14)?;
        let r = Executor::new(problem.clone(), solver)
            .configure(|s| s.param(classic_start(N)).max_iters(100_000))
            .run()?;
        Ok(r.state)
    })
}

/// Gauss–Newton on a least-squares problem from `(vmax, km) = (1, 1)`.
fn gauss_newton<P>(problem: P) -> AnyResult<Outcome>
where
    P: Operator<Param = Vec<f64>, Output = Vec<f64>>
        + Jacobian<Param = Vec<f64>, Jacobian = Matrix>
        + Clone,
{
    timed(|| {
        let r = Executor::new(problem.clone(), GaussNewton::new())
            .configure(|s| s.param(vec![1.0, 1.0]).max_iters(100))
            .run()?;
        Ok(r.state)
    })
}

/// Prints one solver's line.
fn report(name: &str, o: &Outcome, with_params: bool) {
    let params = if with_params {
        format!(" params = {}", vec_text(&o.param))
    } else {
        String::new()
    };
    println!(
        "{name} converged = {} iters = {} cost = {}{params} time_per_iter_us = {:.1}",
        o.converged,
        o.iters,
        num(o.cost),
        o.time_per_iter * 1e6
    );
}

/// Every solver, ferrax's derivatives then hand-written ones, in the printed order, with a
/// progress bar over the solvers (each runs `1 + REPEATS` times).
pub fn run_all() -> AnyResult<Vec<(String, Outcome, bool)>> {
    let (s, v) = michaelis_menten_data();
    let ferrax_fit = LeastSquares::new(mm_residuals(s.clone(), v.clone()))?;
    let hand_fit = HandMichaelisMenten { s, v };
    type Run = Box<dyn FnOnce() -> AnyResult<Outcome>>;
    let runs: Vec<(&str, bool, Run)> = vec![
        (
            "lbfgs",
            false,
            Box::new(|| lbfgs(Minimize::new(rosenbrock)?)),
        ),
        ("hand lbfgs", false, Box::new(|| lbfgs(HandRosenbrock))),
        (
            "newton_cg",
            false,
            Box::new(|| newton_cg(Minimize::new(rosenbrock)?)),
        ),
        (
            "newton_cg_sparse",
            false,
            Box::new(|| newton_cg(Minimize::new(rosenbrock)?.sparse_hessian()?)),
        ),
        (
            "newton_cg_hvp",
            false,
            Box::new(|| newton_cg(Minimize::new(rosenbrock)?.hessian_products()?)),
        ),
        (
            "hand newton_cg",
            false,
            Box::new(|| newton_cg(HandRosenbrock)),
        ),
        (
            "gauss_newton",
            true,
            Box::new(move || gauss_newton(ferrax_fit)),
        ),
        (
            "hand gauss_newton",
            true,
            Box::new(move || gauss_newton(hand_fit)),
        ),
    ];
    let mut bar = Progress::new("solving", runs.len());
    let mut out = Vec::with_capacity(runs.len());
    for (k, (name, with_params, run)) in runs.into_iter().enumerate() {
        bar.set(k, name);
        out.push((name.to_string(), run()?, with_params));
    }
    bar.finish("done");
    Ok(out)
}

fn main() -> AnyResult<()> {
    println!("chained Rosenbrock, n = {N}, from (-1.2, 1, -1.2, 1, ...)");
    println!("Michaelis-Menten fit: 30 points, vmax = 2.5, km = 0.8, noise 0.02 (seed 42)");
    for (name, outcome, with_params) in run_all()? {
        report(&name, &outcome, with_params);
    }
    Ok(())
}
