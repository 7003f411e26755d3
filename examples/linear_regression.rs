//! Linear regression as in the tutorial: 100 points of y = 2x + 1 + noise (NumPy's
//! `seed(42)`, stored in `examples/data/linreg_seed42.csv`), the model x·w + b, mean squared
//! error, and full-batch gradient descent in f32 with rate 0.01 from w = b = 0, where one
//! epoch is one gradient step on all the points. After the tutorial's 100 epochs it goes on to
//! convergence, then plots the fit (`linreg_fit.svg`) and the loss (`linreg_loss.svg`).

#[path = "common/mod.rs"]
mod common;

use common::{num, num32, AnyResult, Progress};
use ferrax::prelude::*;
use plotters::prelude::*;

/// The data, compiled in so the example does not depend on where it runs.
const DATA: &str = include_str!("data/linreg_seed42.csv");

/// The learning rate of the tutorial.
pub const RATE: f32 = 0.01;

/// The points `(x, y)` in f32, from the CSV text (comment lines start with `#`).
pub fn data() -> AnyResult<(Vec<f32>, Vec<f32>)> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for line in DATA.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('x') {
            continue;
        }
        let (x, y) = line
            .split_once(',')
            .ok_or_else(|| format!("bad CSV line {line:?}"))?;
        xs.push(x.parse()?);
        ys.push(y.parse()?);
    }
    Ok((xs, ys))
}

/// The mean squared error of the model x·w + b; the arguments are w, b, the inputs and the
/// targets.
pub fn loss() -> Function {
    function(|w: Tensor, b: Tensor, x: Tensor, y: Tensor| (x * w + b - y).square().mean_all())
}

/// Full-batch gradient descent, one step per epoch.
pub struct Trainer {
    step: Function,
    x: Array,
    y: Array,
    /// The slope.
    pub w: f32,
    /// The intercept.
    pub b: f32,
}

impl Trainer {
    /// A trainer at w = b = 0 on the tutorial's data.
    pub fn new() -> AnyResult<Trainer> {
        let (xs, ys) = data()?;
        let step = value_and_grad(loss()).wrt((0, 1)).function();
        Ok(Trainer {
            step,
            x: Array::from(xs),
            y: Array::from(ys),
            w: 0.0,
            b: 0.0,
        })
    }

    /// One epoch: the loss before the step and the gradient's norm; updates w and b.
    pub fn epoch(&mut self) -> AnyResult<(f32, f32)> {
        let args = [
            Array::from(self.w),
            Array::from(self.b),
            self.x.clone(),
            self.y.clone(),
        ];
        let (l, dw, db): (f32, f32, f32) = self.step.call(&args[..])?;
        self.w -= RATE * dw;
        self.b -= RATE * db;
        Ok((l, dw.hypot(db)))
    }

    /// The loss at the current w and b.
    pub fn loss(&self) -> AnyResult<f32> {
        let args = [
            Array::from(self.w),
            Array::from(self.b),
            self.x.clone(),
            self.y.clone(),
        ];
        Ok(loss().call(&args[..])?)
    }
}

/// The least-squares line in f64, for comparison with where gradient descent converges.
pub fn least_squares(xs: &[f32], ys: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mx = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let my = ys.iter().map(|&y| y as f64).sum::<f64>() / n;
    let sxy: f64 = xs
        .iter()
        .zip(ys)
        .map(|(&x, &y)| (x as f64 - mx) * (y as f64 - my))
        .sum();
    let sxx: f64 = xs.iter().map(|&x| (x as f64 - mx).powi(2)).sum();
    let w = sxy / sxx;
    (w, my - w * mx)
}

fn plot_fit(
    xs: &[f32],
    ys: &[f32],
    lines: &[(String, f32, f32, RGBColor)],
) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("linreg_fit.svg")?;
    {
        let root = SVGBackend::new(&path, (860, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Linear regression: data and fitted lines",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0f64..10.0, 0.0f64..25.0)?;
        chart
            .configure_mesh()
            .x_desc("x")
            .y_desc("y")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(
                xs.iter()
                    .zip(ys)
                    .map(|(&x, &y)| Circle::new((x as f64, y as f64), 3, blue.filled())),
            )?
            .label("data: y = 2x + 1 + noise")
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, blue.filled()));
        for (label, w, b, colour) in lines {
            let (w, b, colour) = (*w as f64, *b as f64, *colour);
            let style = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new([(0.0, b), (10.0, 10.0 * w + b)], style))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(path)
}

fn plot_loss(losses: &[f32], tutorial_epochs: usize, best: f64) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("linreg_loss.svg")?;
    {
        let root = SVGBackend::new(&path, (1100, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Training loss (MSE), full-batch gradient descent, rate 0.01",
            ("sans-serif", 22),
        )?;
        let panels = root.split_evenly((1, 2));
        let orange = RGBColor(255, 127, 14);

        // Left: the tutorial's 100 epochs, on a log scale.
        let first: Vec<(f64, f64)> = losses
            .iter()
            .take(tutorial_epochs)
            .enumerate()
            .map(|(k, &l)| (k as f64, l as f64))
            .collect();
        let hi = first.iter().map(|p| p.1).fold(0.0, f64::max);
        let lo = first.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let mut left = ChartBuilder::on(&panels[0])
            .caption(
                format!("the tutorial's {tutorial_epochs} epochs"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0.0..tutorial_epochs as f64,
                (lo * 0.8..hi * 1.5).log_scale(),
            )?;
        left.configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (log scale)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        left.draw_series(LineSeries::new(first, orange.stroke_width(2)))?;

        // Right: how far the loss is above the least-squares minimum, on a log scale, over
        // the whole run; gradient descent converges linearly until f32 rounding stops it.
        let excess: Vec<(f64, f64)> = losses
            .iter()
            .enumerate()
            .map(|(k, &l)| (k as f64, (l as f64 - best).max(1e-9)))
            .collect();
        let top = excess.iter().map(|p| p.1).fold(0.0, f64::max);
        let mut right = ChartBuilder::on(&panels[1])
            .caption("loss above the least-squares minimum", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..losses.len() as f64, (1e-9..top * 2.0).log_scale())?;
        right
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss − min (log scale)")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        right
            .draw_series(LineSeries::new(excess, orange.stroke_width(2)))?
            .label("loss − least-squares loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2))
            });
        let t = tutorial_epochs as f64;
        let red = RGBColor(214, 39, 40);
        right
            .draw_series(LineSeries::new(
                [(t, 1e-9), (t, top * 2.0)],
                red.stroke_width(2),
            ))?
            .label("end of the tutorial's 100 epochs")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        right
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(path)
}

fn main() -> AnyResult<()> {
    const EPOCHS: usize = 100;
    const MAX_EPOCHS: usize = 20_000;
    let mut t = Trainer::new()?;
    let mut losses = Vec::new();
    for epoch in 0..EPOCHS {
        let (l, _) = t.epoch()?;
        losses.push(l);
        if epoch % 10 == 0 {
            println!("epoch {epoch} loss = {}", num32(l));
        }
    }
    println!("epochs = {EPOCHS}");
    println!("w = {}", num32(t.w));
    println!("b = {}", num32(t.b));
    println!("loss = {}", num32(t.loss()?));
    let after_tutorial = (t.w, t.b);

    // Convergence: the same steps until the gradient is tiny (f32 cannot go much further).
    let mut bar = Progress::new("converging", MAX_EPOCHS);
    let mut epochs = EPOCHS;
    while epochs < MAX_EPOCHS {
        let (l, norm) = t.epoch()?;
        losses.push(l);
        epochs += 1;
        bar.set(epochs, &format!("loss {l:.6}"));
        if norm < 1e-5 {
            break;
        }
    }
    bar.finish(&format!("loss {:.6}", t.loss()?));
    println!("converged_epochs = {epochs}");
    println!("w_converged = {}", num32(t.w));
    println!("b_converged = {}", num32(t.b));
    println!("loss_converged = {}", num32(t.loss()?));
    let (xs, ys) = data()?;
    let (w_ls, b_ls) = least_squares(&xs, &ys);
    println!("w_least_squares = {}", num(w_ls));
    println!("b_least_squares = {}", num(b_ls));
    let best = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| (w_ls * x as f64 + b_ls - y as f64).powi(2))
        .sum::<f64>()
        / xs.len() as f64;
    println!("loss_least_squares = {}", num(best));

    let lines = [
        (
            format!(
                "after {EPOCHS} epochs: w = {:.4}, b = {:.4}",
                after_tutorial.0, after_tutorial.1
            ),
            after_tutorial.0,
            after_tutorial.1,
            RGBColor(214, 39, 40),
        ),
        (
            format!(
                "converged ({epochs} epochs): w = {:.4}, b = {:.4}",
                t.w, t.b
            ),
            t.w,
            t.b,
            RGBColor(44, 160, 44),
        ),
    ];
    println!("wrote {}", plot_fit(&xs, &ys, &lines)?.display());
    println!("wrote {}", plot_loss(&losses, EPOCHS, best)?.display());
    Ok(())
}
