//! The sparse Jacobian of a 2-D Brusselator reaction–diffusion right-hand side on an N × N
//! periodic grid, in the form of the DifferentialEquations.jl benchmark:
//! `u' = 1 + u²v − 4.4u + α∇²u`, `v' = 3.4u − u²v + α∇²v`, α = 10, the five-point Laplacian
//! with grid spacing 1/(N − 1) (the benchmark's forcing term only adds a function of time and
//! place, so it is left out: the Jacobian is the same).
//!
//! For each N it prints `N = <N> n = <2N²> nnz = <nnz> colors = <c> first_ms = <t> call_ms =
//! <t>` (first: detection, colouring, transforms, compilation and the first call of a fresh
//! derivative object; call: the median of later calls), checks the values against the dense
//! `jacfwd` Jacobian where that fits (N ≤ 16), draws the pattern for N = 8 as a spy plot
//! (`sparse_jacobian_pattern.svg`), and takes a few implicit-Euler steps at N = 64, each
//! solved by Newton's method with the sparse Jacobian and faer's sparse LU, printing the
//! residual of each Newton iteration. Pass grid sizes as arguments to time others.

#[path = "common/mod.rs"]
mod common;

use common::AnyResult;
use faer::linalg::solvers::Solve;
use faer::sparse::{SparseRowMat, SymbolicSparseRowMat};
use ferrax::sparse::SparseDerivative;
use ferrax::{jacfwd, jacobian_sparse, Array, Jit, Sparse, Tensor};
use plotters::prelude::*;
use std::time::Instant;

/// `w` shifted by `s` places along `axis`, wrapping around (`out[i] = w[i − s mod n]`).
fn roll(w: &Tensor, axis: usize, s: usize) -> Tensor {
    let n = w.shape()[axis];
    let s = s % n;
    if s == 0 {
        return w.clone();
    }
    ferrax::concatenate(
        &[w.slice_axis(axis, n - s, n), w.slice_axis(axis, 0, n - s)],
        axis,
    )
}

/// The periodic five-point Laplacian of an N × N field, without the 1/dx² factor.
fn laplacian(w: &Tensor) -> Tensor {
    let n = w.shape()[0];
    roll(w, 0, 1) + roll(w, 0, n - 1) + roll(w, 1, 1) + roll(w, 1, n - 1) - 4.0 * w.clone()
}

/// The Brusselator right-hand side of the state `x` of shape `[2, N, N]` (u then v).
pub fn brusselator(x: Tensor) -> Tensor {
    let n = x.shape()[1];
    let dx = 1.0 / (n.max(2) - 1) as f64;
    let alpha = 10.0 / (dx * dx);
    let u = x.slice_axis(0, 0, 1).reshape(&[n, n]);
    let v = x.slice_axis(0, 1, 2).reshape(&[n, n]);
    let uuv = u.clone() * u.clone() * v.clone();
    let du = 1.0 + uuv.clone() - 4.4 * u.clone() + alpha * laplacian(&u);
    let dv = 3.4 * u - uuv + alpha * laplacian(&v);
    ferrax::stack(&[du, dv])
}

/// The benchmark's initial state: `u = 22 (y(1 − y))^{3/2}`, `v = 27 (x(1 − x))^{3/2}` on the
/// grid `x_i = i/(N − 1)`.
pub fn initial(n: usize) -> Vec<f64> {
    let at = |i: usize| i as f64 / (n.max(2) - 1) as f64;
    let mut s = Vec::with_capacity(2 * n * n);
    for _ in 0..n {
        for j in 0..n {
            let y = at(j);
            s.push(22.0 * (y * (1.0 - y)).powf(1.5));
        }
    }
    for i in 0..n {
        let x = at(i);
        for _ in 0..n {
            s.push(27.0 * (x * (1.0 - x)).powf(1.5));
        }
    }
    s
}

/// The state as a `[2, N, N]` array.
fn state(n: usize, s: &[f64]) -> AnyResult<Array> {
    Ok(Array::from_f64(vec![2, n, n], s.to_vec())?)
}

/// The largest difference between the sparse Jacobian and the dense `jacfwd` at `x`.
pub fn dense_error(s: &Sparse, x: &Array) -> AnyResult<f64> {
    let d = jacfwd(brusselator).call_arrays(std::slice::from_ref(x))?[0].to_f64_vec();
    let sd = s.to_dense()?;
    Ok(sd
        .iter()
        .zip(&d)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max))
}

/// Times the sparse Jacobian on an N × N grid and prints its line.
fn time_grid(n: usize) -> AnyResult<()> {
    let x = state(n, &initial(n))?;
    let t0 = Instant::now();
    let j = jacobian_sparse(brusselator)?;
    let s = j.call(x.clone())?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::new();
    for _ in 0..if n >= 256 { 15 } else { 40 } {
        let t = Instant::now();
        std::hint::black_box(j.values(&x)?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if s.nnz() != 12 * n * n {
        return Err(format!("N = {n}: nnz {} is not 12 N² = {}", s.nnz(), 12 * n * n).into());
    }
    if n <= 16 {
        let e = dense_error(&s, &x)?;
        if e > 1e-9 * (n * n) as f64 {
            return Err(format!("N = {n}: differs from the dense Jacobian by {e:e}").into());
        }
    }
    println!(
        "N = {n} n = {} nnz = {} colors = {} first_ms = {first_ms:.1} call_ms = {:.3}",
        2 * n * n,
        s.nnz(),
        s.colours,
        common::median(&mut times)
    );
    Ok(())
}

/// `I − h J` for the sparse Jacobian `j` (whose pattern holds the diagonal), as faer's CSR
/// matrix (rows are this matrix's rows).
fn newton_matrix(j: &Sparse, h: f64) -> AnyResult<SparseRowMat<usize, f64>> {
    j.check()?;
    let mut values = Vec::with_capacity(j.nnz());
    let mut has_diagonal = vec![false; j.nrows];
    for (r, c, v) in j.triplets() {
        let one = if r == c { 1.0 } else { 0.0 };
        has_diagonal[r] |= r == c;
        values.push(one - h * v);
    }
    if has_diagonal.iter().any(|&d| !d) {
        return Err("the pattern misses a diagonal entry".into());
    }
    let sym = SymbolicSparseRowMat::new_checked(
        j.nrows,
        j.ncols,
        j.row_ptr.clone(),
        None,
        j.col_idx.clone(),
    );
    Ok(SparseRowMat::new(sym, values))
}

/// One implicit-Euler step `y = x + h F(y)` by Newton's method from `y = x`, with `f` the
/// compiled right-hand side and `j` its sparse Jacobian; returns `y` and the residual norm
/// `|y − x − h F(y)|∞` after each iteration.
pub fn implicit_euler_step(
    f: &Jit,
    j: &SparseDerivative,
    n: usize,
    x: &[f64],
    h: f64,
) -> AnyResult<(Vec<f64>, Vec<f64>)> {
    let residual = |y: &[f64]| -> AnyResult<Vec<f64>> {
        let fy = f.call_arrays(&[state(n, y)?])?[0].to_f64_vec();
        Ok((0..y.len()).map(|i| y[i] - x[i] - h * fy[i]).collect())
    };
    let norm = |r: &[f64]| r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut y = x.to_vec();
    let mut history = Vec::new();
    let mut r = residual(&y)?;
    for _ in 0..8 {
        let jac = j.call(state(n, &y)?)?;
        let lu = newton_matrix(&jac, h)?
            .sp_lu()
            .map_err(|e| format!("sparse LU: {e:?}"))?;
        let mut rhs = faer::Mat::from_fn(r.len(), 1, |i, _| -r[i]);
        lu.solve_in_place(rhs.as_mut());
        for (i, yi) in y.iter_mut().enumerate() {
            *yi += rhs[(i, 0)];
        }
        r = residual(&y)?;
        history.push(norm(&r));
        if norm(&r) <= 1e-10 * norm(&y).max(1.0) {
            break;
        }
    }
    Ok((y, history))
}

/// Draws the pattern of `s` as a spy plot.
fn spy(s: &Sparse, title: &str, file: &str) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path(file)?;
    {
        let root = SVGBackend::new(&path, (640, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let (r, c) = (s.nrows as f64, s.ncols as f64);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..c, r..0.0)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("column (input element)")
            .y_desc("row (output element)")
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(s.triplets().map(|(i, j, _)| {
            let (x, y) = (j as f64, i as f64);
            Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                RGBColor(31, 119, 180).filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(path)
}

fn main() -> AnyResult<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let grids = if args.is_empty() {
        vec![8, 16, 32, 64, 128, 256]
    } else {
        args
    };
    for &n in &grids {
        time_grid(n)?;
    }
    // The pattern for N = 8: u rows then v rows, each a five-point periodic stencil on its own
    // species plus the diagonal of the other.
    let small = jacobian_sparse(brusselator)?.call(state(8, &initial(8))?)?;
    let path = spy(
        &small,
        &format!("Brusselator Jacobian, N = 8: {} nonzeros", small.nnz()),
        "sparse_jacobian_pattern.svg",
    )?;
    println!("pattern = {}", path.display());
    let (n, h) = (64, 1e-3);
    let mut x = initial(n);
    let (f, j) = (ferrax::jit(brusselator)?, jacobian_sparse(brusselator)?);
    for step in 1..=3 {
        let t = Instant::now();
        let (y, history) = implicit_euler_step(&f, &j, n, &x, h)?;
        let hist: Vec<String> = history.iter().map(|r| format!("{r:.2e}")).collect();
        println!(
            "step = {step} N = {n} h = {h} newton_residuals = [{}] step_ms = {:.1}",
            hist.join(", "),
            t.elapsed().as_secs_f64() * 1e3
        );
        x = y;
    }
    Ok(())
}
