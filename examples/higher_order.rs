//! Higher-order derivatives: sin on 1000 points of [−2π, 2π] with its first and second
//! derivatives from `vmap(grad(sin))` and `vmap(grad(grad(sin)))`, checked against cos and
//! −sin and plotted to `target/ferrax-examples/higher_order.svg`.

#[path = "common/mod.rs"]
mod common;

use common::{num, AnyResult};
use ferrax::prelude::*;
use plotters::prelude::*;
use std::f64::consts::PI;

/// The curves on the grid: the points, sin, its first and its second derivative.
pub struct Curves {
    /// The 1000 points.
    pub xs: Vec<f64>,
    /// sin at each point.
    pub f: Vec<f64>,
    /// The first derivative by `vmap(grad(sin))`.
    pub d1: Vec<f64>,
    /// The second derivative by `vmap(grad(grad(sin)))`.
    pub d2: Vec<f64>,
}

/// Computes the three curves with ferrax; every point is one lane of a `vmap`.
pub fn curves() -> AnyResult<Curves> {
    let sin = function(|x: Tensor| x.sin());
    let xs = common::linspace(-2.0 * PI, 2.0 * PI, 1000);
    let x = Array::from(xs.clone());
    let f: Vec<f64> = vmap(&sin).call(&x)?;
    let d1: Vec<f64> = vmap(grad(&sin)).call(&x)?;
    let d2: Vec<f64> = vmap(grad(grad(&sin))).call(&x)?;
    Ok(Curves { xs, f, d1, d2 })
}

/// The largest absolute difference of `got` from `want` applied to each point.
pub fn max_err(xs: &[f64], got: &[f64], want: impl Fn(f64) -> f64) -> f64 {
    xs.iter()
        .zip(got)
        .map(|(&x, &g)| (g - want(x)).abs())
        .fold(0.0, f64::max)
}

fn plot(c: &Curves) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("higher_order.svg")?;
    let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sin and its derivatives by vmap(grad) and vmap(grad(grad))",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-2.0 * PI..2.0 * PI, -1.25..1.65)?;
    chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("value")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let series = [
        ("sin x", &c.f, RGBColor(31, 119, 180)),
        ("d/dx sin x (grad)", &c.d1, RGBColor(255, 127, 14)),
        ("d²/dx² sin x (grad of grad)", &c.d2, RGBColor(44, 160, 44)),
    ];
    let lines = series
        .map(|(label, ys, colour)| (label, c.xs.iter().copied().zip(ys.iter().copied()), colour));
    common::labelled_lines(&mut chart, lines, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}

fn main() -> AnyResult<()> {
    let c = curves()?;
    println!("points = {}", c.xs.len());
    println!("max_err_d1 = {}", num(max_err(&c.xs, &c.d1, f64::cos)));
    println!("max_err_d2 = {}", num(max_err(&c.xs, &c.d2, |x| -x.sin())));
    println!("wrote {}", plot(&c)?.display());
    Ok(())
}
