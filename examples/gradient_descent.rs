//! Gradient descent on f(x, y) = (x − 2)² + 2(y − 1)² from (0, 0) with rate 0.1 for 50 steps,
//! the gradient from `value_and_grad`; the path is drawn over a contour plot in
//! `target/ferrax-examples/gradient_descent.svg`.

#[path = "common/mod.rs"]
mod common;

use common::{num, vec_text, AnyResult, Grid};
use ferrax::prelude::*;
use plotters::prelude::*;

/// The function to minimise; its minimum is 0 at (2, 1).
pub fn objective() -> Function {
    function(|x: Tensor, y: Tensor| (x - 2.0).square() + 2.0 * (y - 1.0).square())
}

/// The points `[x, y, f(x, y)]` visited by `steps` steps of gradient descent with rate `rate`
/// from `(x0, y0)`; entry `k` is the point after `k` steps (with `f` at that point).
pub fn descend(x0: f64, y0: f64, rate: f64, steps: usize) -> AnyResult<Vec<[f64; 3]>> {
    let f = objective();
    let value_and_gradient = value_and_grad(&f).wrt((0, 1));
    let (mut x, mut y) = (x0, y0);
    let mut path = Vec::with_capacity(steps + 1);
    for _ in 0..steps {
        let (v, dx, dy): (f64, f64, f64) = value_and_gradient.call((x, y))?;
        path.push([x, y, v]);
        x -= rate * dx;
        y -= rate * dy;
    }
    let v: f64 = f.call((x, y))?;
    path.push([x, y, v]);
    Ok(path)
}

fn plot(path: &[[f64; 3]]) -> AnyResult<std::path::PathBuf> {
    let xs = common::linspace(-0.5, 3.5, 81);
    let ys = common::linspace(-0.5, 2.5, 61);
    let (px, py) = Grid::points(&xs, &ys);
    let z: Vec<f64> = objective().call((Array::from(px), Array::from(py)))?;
    let grid = Grid { xs, ys, z };
    let (_, hi) = grid.range();
    let levels: Vec<f64> = (1..16).map(|k| (k as f64 * 0.35).powi(2)).collect();
    let file = common::out_path("gradient_descent.svg")?;
    let title = "Gradient descent on (x − 2)² + 2(y − 1)², rate 0.1, 50 steps";
    common::contour_figure(
        &file,
        title,
        &grid,
        &levels,
        &|v| (v / hi).sqrt(),
        |chart| {
            let points: Vec<(f64, f64)> = path.iter().map(|p| (p[0], p[1])).collect();
            let style = RED.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label("path from (0, 0)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
            chart
                .draw_series([Cross::new((2.0, 1.0), 7, WHITE.stroke_width(3))])?
                .label("minimum (2, 1)")
                .legend(|(x, y)| Cross::new((x + 10, y), 5, BLACK.stroke_width(2)));
            Ok(())
        },
    )?;
    Ok(file)
}

fn main() -> AnyResult<()> {
    let path = descend(0.0, 0.0, 0.1, 50)?;
    for (k, p) in path.iter().enumerate().step_by(10).skip(1) {
        println!("step {k} = {}", vec_text(p));
    }
    let last = path[path.len() - 1];
    println!("final = {}", vec_text(&last));
    println!(
        "distance_to_minimum = {}",
        num((last[0] - 2.0).hypot(last[1] - 1.0))
    );
    println!("wrote {}", plot(&path)?.display());
    Ok(())
}
