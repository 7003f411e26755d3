//! Jacobians and Hessians: the Jacobian of [x² + y, x·y] at (1, 2) by forward and by reverse
//! mode, the Hessian of x² + 2xy + y² at (1, 2), and a contour plot of that function in
//! `target/ferrax-examples/hessian_contour.svg`.

#[path = "common/mod.rs"]
mod common;

use common::{matrix_text, AnyResult, Grid};
use ferrax::prelude::*;
use plotters::prelude::*;

/// The vector function [x² + y, x·y].
pub fn vector_fn() -> Function {
    function(|x: Tensor, y: Tensor| (x.square() + &y, x * y))
}

/// The scalar function x² + 2xy + y² = (x + y)².
pub fn scalar_fn() -> Function {
    function(|x: Tensor, y: Tensor| x.square() + 2.0 * &x * &y + y.square())
}

/// Flattens the outputs of a Jacobian-like Function of scalars, which come one per
/// (output, argument) pair, output-major, into a row-major matrix.
fn matrix(outs: Vec<Array>) -> AnyResult<Vec<f64>> {
    Ok(outs
        .iter()
        .map(|a| a.to_scalar())
        .collect::<Result<Vec<_>>>()?)
}

/// The Jacobian of [`vector_fn`] at (1, 2) by `jacfwd` and by `jacrev`, row-major.
pub fn jacobians() -> AnyResult<(Vec<f64>, Vec<f64>)> {
    let point = [Array::from(1.0), Array::from(2.0)];
    let fwd = matrix(jacfwd(vector_fn()).wrt((0, 1)).call_arrays(&point)?)?;
    let rev = matrix(jacrev(vector_fn()).wrt((0, 1)).call_arrays(&point)?)?;
    Ok((fwd, rev))
}

/// The Hessian of [`scalar_fn`] at (1, 2), row-major.
pub fn hessian_at() -> AnyResult<Vec<f64>> {
    let point = [Array::from(1.0), Array::from(2.0)];
    matrix(hessian(scalar_fn()).wrt((0, 1)).call_arrays(&point)?)
}

fn plot() -> AnyResult<std::path::PathBuf> {
    // The function is evaluated on the whole grid in one call: its ops are elementwise.
    let xs = common::linspace(-3.0, 3.0, 81);
    let ys = common::linspace(-3.0, 3.0, 81);
    let (px, py) = Grid::points(&xs, &ys);
    let z: Vec<f64> = scalar_fn().call((Array::from(px), Array::from(py)))?;
    let grid = Grid { xs, ys, z };
    let (_, hi) = grid.range();
    let levels: Vec<f64> = (1..12).map(|k| (k as f64 * 0.5).powi(2)).collect();
    let path = common::out_path("hessian_contour.svg")?;
    let title = "f(x, y) = x² + 2xy + y², Hessian [[2, 2], [2, 2]] at (1, 2)";
    common::contour_figure(
        &path,
        title,
        &grid,
        &levels,
        &|v| (v / hi).sqrt(),
        |chart| {
            chart
                .draw_series([Circle::new((1.0, 2.0), 6, RED.filled())])?
                .label("(1, 2)")
                .legend(|(x, y)| Circle::new((x + 8, y), 5, RED.filled()));
            Ok(())
        },
    )?;
    Ok(path)
}

fn main() -> AnyResult<()> {
    let (fwd, rev) = jacobians()?;
    println!("jacobian = {}", matrix_text(&fwd, 2));
    println!("jacobian_rev = {}", matrix_text(&rev, 2));
    println!("hessian = {}", matrix_text(&hessian_at()?, 2));
    println!("wrote {}", plot()?.display());
    Ok(())
}
