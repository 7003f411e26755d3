//! Custom derivative rules: the seed's ReLU with the rule "1 where x > 0, else 0" through
//! `custom_jvp`, and a numerically stable softplus `log(1 + exp(x))` whose `custom_vjp`
//! gradient stays finite at x = 1000 where the naive one is NaN. The ReLU and its derivative
//! are plotted on [−2, 2] to `target/ferrax-examples/custom_relu.svg`.

#[path = "common/mod.rs"]
mod common;

use common::{num, vec_text, AnyResult};
use ferrax::prelude::*;
use plotters::prelude::*;

/// The ReLU with the seed's derivative rule: the tangent is `t` where x > 0 and 0 elsewhere.
pub fn relu() -> Function {
    custom_jvp(
        |x: Tensor| x.relu(),
        |p, t| {
            let x = &p[0];
            (vec![x.relu()], vec![&t[0] * x.gt(0.0).select(1.0, 0.0)])
        },
    )
}

/// The elementwise derivative of the ReLU at `xs`, through the custom rule (the gradient of
/// the sum).
pub fn relu_grad(xs: &[f64]) -> AnyResult<Vec<f64>> {
    let r = relu();
    let total = move |x: Tensor| r.apply1(&[x]).sum_all();
    Ok(grad(total).call(Array::from(xs.to_vec()))?)
}

/// softplus(x) = log(1 + exp(x)), computed as max(x, 0) + log1p(exp(−|x|)), with the gradient
/// sigmoid(x) computed from the residual x by `custom_vjp`.
pub fn softplus() -> Function {
    let value = |x: &Tensor| x.maximum(0.0) + (-x.abs()).exp().log1p();
    custom_vjp(
        move |x: Tensor| value(&x),
        move |p| (vec![value(&p[0])], vec![p[0].clone()]),
        |r, ct| vec![&ct[0] * r[0].sigmoid()],
    )
}

/// The gradients of the stable softplus and of the naive `log(1 + exp(x))` at `x`.
pub fn softplus_grads(x: f64) -> AnyResult<(f64, f64)> {
    let stable: f64 = grad(softplus()).call(x)?;
    let naive: f64 = grad(|x: Tensor| (x.exp() + 1.0).ln()).call(x)?;
    Ok((stable, naive))
}

fn plot() -> AnyResult<std::path::PathBuf> {
    let xs = common::linspace(-2.0, 2.0, 401);
    let r = relu();
    let d = grad(&r);
    let mut value = Vec::with_capacity(xs.len());
    let mut deriv = Vec::with_capacity(xs.len());
    for &x in &xs {
        value.push(r.call::<_, f64>(x)?);
        deriv.push(d.call::<_, f64>(x)?);
    }
    let path = common::out_path("custom_relu.svg")?;
    let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ReLU and its derivative by a custom_jvp rule",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-2.0..2.0, -0.25..2.15)?;
    chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("value")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let series = [
        ("relu(x)", &value, RGBColor(31, 119, 180)),
        ("d/dx relu(x) (custom rule)", &deriv, RGBColor(255, 127, 14)),
    ];
    let lines = series
        .map(|(label, ys, colour)| (label, xs.iter().copied().zip(ys.iter().copied()), colour));
    common::labelled_lines(&mut chart, lines, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}

fn main() -> AnyResult<()> {
    println!(
        "relu_grad = {}",
        vec_text(&relu_grad(&[-1.0, -0.5, 0.5, 1.0])?)
    );
    let (stable, naive) = softplus_grads(1000.0)?;
    println!("softplus_grad_at_1000 = {}", num(stable));
    println!("naive_softplus_grad_at_1000 = {}", num(naive));
    let dd: f64 = grad(grad(softplus())).call(0.0)?;
    println!("softplus_second_derivative_at_0 = {}", num(dd));
    println!("wrote {}", plot()?.display());
    Ok(())
}
