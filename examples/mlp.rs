//! A two-layer MLP classifies two interleaved spirals: softmax cross-entropy written with
//! `logsumexp` and `one_hot`, gradients by `value_and_grad`, and Adam in a few lines. It
//! prints `train_accuracy` and draws the decision boundary (`mlp_boundary.svg`) and the loss
//! curve (`mlp_loss.svg`).

#[path = "common/mod.rs"]
mod common;

use common::{num, AnyResult, Progress, Rng};
use ferrax::prelude::*;
use plotters::prelude::*;
use std::f64::consts::PI;

/// The sizes and the schedule of one training run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Points per spiral (there are two spirals, one per class).
    pub points_per_class: usize,
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Full-batch Adam steps.
    pub steps: usize,
    /// Adam's learning rate.
    pub rate: f64,
    /// Seed of the data's noise and of the initial weights.
    pub seed: u64,
}

impl Config {
    /// The example's run: 2 × 100 points, 32 hidden units.
    pub fn example() -> Config {
        Config {
            points_per_class: 100,
            hidden: 32,
            steps: 1500,
            rate: 0.02,
            seed: 7,
        }
    }

    /// A smaller, faster run for the test suite.
    pub fn quick() -> Config {
        Config {
            points_per_class: 50,
            hidden: 24,
            steps: 600,
            rate: 0.03,
            seed: 7,
        }
    }
}

/// Two spirals of `n` points each, turning 1.25 times, with a little Gaussian noise: the
/// points as an `[2n, 2]` row-major list and their classes (0 or 1).
pub fn spirals(n: usize, rng: &mut Rng) -> (Vec<f64>, Vec<i32>) {
    let mut xy = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(2 * n);
    for class in 0..2 {
        for i in 0..n {
            let t = i as f64 / n as f64;
            let radius = 0.15 + 0.85 * t;
            let angle = 2.5 * PI * t + PI * class as f64;
            xy.push(radius * angle.cos() + 0.03 * rng.normal());
            xy.push(radius * angle.sin() + 0.03 * rng.normal());
            labels.push(class);
        }
    }
    (xy, labels)
}

/// The network's logits for inputs `x` (`[n, 2]`): tanh(x·W1 + b1)·W2 + b2.
fn logits(w1: &Tensor, b1: &Tensor, w2: &Tensor, b2: &Tensor, x: &Tensor) -> Tensor {
    let h = (x.matmul(w1) + b1).tanh();
    h.matmul(w2) + b2
}

/// The mean softmax cross-entropy of the network on `x` with i32 classes `y`.
pub fn loss() -> Function {
    function(
        |w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor| {
            let z = logits(&w1, &b1, &w2, &b2, &x);
            let picked = (&z * y.one_hot(2, DType::F64)).sum(&[1]);
            (z.logsumexp(&[1]) - picked).mean_all()
        },
    )
}

/// The predicted class of each row of `x`.
pub fn predict() -> Function {
    function(
        |w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor| {
            logits(&w1, &b1, &w2, &b2, &x).argmax(1)
        },
    )
}

/// The probability of class 1 for each row of `x`.
pub fn probability() -> Function {
    function(
        |w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor| {
            logits(&w1, &b1, &w2, &b2, &x)
                .softmax(1)
                .slice_axis(1, 1, 2)
        },
    )
}

/// The outcome of a run.
pub struct Trained {
    /// W1, b1, W2, b2.
    pub params: Vec<Array>,
    /// The loss before each step.
    pub losses: Vec<f64>,
    /// The fraction of training points classified correctly after training.
    pub accuracy: f64,
    /// The training points (`[2n, 2]`) and classes.
    pub data: (Array, Array),
}

/// Adam's state for one parameter: the running moments of its gradient.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// Step `t` (from 1) on `param` with gradient `grad`.
    fn update(&mut self, param: &mut [f64], grad: &[f64], rate: f64, t: usize) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        let (c1, c2) = (1.0 - B1.powi(t as i32), 1.0 - B2.powi(t as i32));
        for (k, p) in param.iter_mut().enumerate() {
            self.m[k] = B1 * self.m[k] + (1.0 - B1) * grad[k];
            self.v[k] = B2 * self.v[k] + (1.0 - B2) * grad[k] * grad[k];
            *p -= rate * (self.m[k] / c1) / ((self.v[k] / c2).sqrt() + EPS);
        }
    }
}

/// Trains the network of `cfg` on its spirals; `on_step(step, loss)` follows the progress.
pub fn train(cfg: Config, on_step: &mut dyn FnMut(usize, f64)) -> AnyResult<Trained> {
    let mut rng = Rng::new(cfg.seed);
    let (xy, labels) = spirals(cfg.points_per_class, &mut rng);
    let n = labels.len();
    let x = Array::from_f64([n, 2], xy)?;
    let y = Array::from_i32([n], labels.clone())?;

    // Weights: N(0, 2²) for the first layer, so that the tanh units can bend along the
    // spirals, and N(0, 1/hidden) for the second; biases start at zero.
    let h = cfg.hidden;
    let scale2 = 1.0 / (h as f64).sqrt();
    let shapes = [vec![2, h], vec![h], vec![h, 2], vec![2]];
    let scales = [2.0, 0.0, scale2, 0.0];
    let mut params: Vec<Vec<f64>> = shapes
        .iter()
        .zip(scales)
        .map(|(s, sc)| {
            (0..s.iter().product::<usize>())
                .map(|_| sc * rng.normal())
                .collect()
        })
        .collect();
    let mut adam: Vec<Adam> = params.iter().map(|p| Adam::new(p.len())).collect();

    // The training step runs as native code: `jit` compiles the value-and-gradient graph once,
    // on the first call, for the argument types it sees.
    let step = ferrax::jit(value_and_grad(loss()).wrt((0, 1, 2, 3)))?;

    let as_arrays = |params: &[Vec<f64>]| -> AnyResult<Vec<Array>> {
        let mut arrays = Vec::with_capacity(6);
        for (p, s) in params.iter().zip(&shapes) {
            arrays.push(Array::from_f64(s.as_slice(), p.clone())?);
        }
        Ok(arrays)
    };
    let mut losses = Vec::with_capacity(cfg.steps);
    for t in 1..=cfg.steps {
        let mut args = as_arrays(&params)?;
        args.push(x.clone());
        args.push(y.clone());
        let outs = step.call_arrays(&args)?;
        let l = outs[0].to_scalar()?;
        losses.push(l);
        for ((p, state), g) in params.iter_mut().zip(&mut adam).zip(&outs[1..]) {
            state.update(p, &g.to_f64_vec(), cfg.rate, t);
        }
        on_step(t, l);
    }

    let params = as_arrays(&params)?;
    let mut args = params.clone();
    args.push(x.clone());
    let predicted = predict().call_arrays(&args)?[0].to_f64_vec();
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, &l)| **p as i32 == l)
        .count();
    let accuracy = correct as f64 / n as f64;
    Ok(Trained {
        params,
        losses,
        accuracy,
        data: (x, y),
    })
}

fn plot_boundary(trained: &Trained) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("mlp_boundary.svg")?;
    // The class-1 probability on a grid, in one call of the network.
    let coords = common::linspace(-1.3, 1.3, 90);
    let (px, py) = common::Grid::points(&coords, &coords);
    let mut grid_xy = Vec::with_capacity(2 * px.len());
    for (a, b) in px.iter().zip(&py) {
        grid_xy.push(*a);
        grid_xy.push(*b);
    }
    let mut args = trained.params.clone();
    args.push(Array::from_f64([px.len(), 2], grid_xy)?);
    let z = probability().call_arrays(&args)?[0].to_f64_vec();
    let grid = common::Grid {
        xs: coords.clone(),
        ys: coords,
        z,
    };
    let (c0, c1) = (RGBColor(31, 119, 180), RGBColor(214, 39, 40));
    {
        let root = SVGBackend::new(&path, (720, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "Two spirals: MLP decision boundary, accuracy {:.3}",
            trained.accuracy
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(50)
            .build_cartesian_2d(-1.3..1.3, -1.3..1.3)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x₁")
            .y_desc("x₂")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        // Background: light tints of the class colours by the predicted probability.
        let step = 2.6 / 89.0;
        let cells = (0..grid.ys.len()).flat_map(|j| (0..grid.xs.len()).map(move |i| (i, j)));
        chart.draw_series(cells.map(|(i, j)| {
            let (x, y) = (grid.xs[i], grid.ys[j]);
            let p = grid.at(i, j);
            let tint = common::blend(common::blend(c0, c1, p), WHITE, 0.65);
            Rectangle::new(
                [
                    (x - step / 2.0, y - step / 2.0),
                    (x + step / 2.0, y + step / 2.0),
                ],
                tint.filled(),
            )
        }))?;
        grid.draw_contours(&mut chart, &[0.5], BLACK.stroke_width(2))?;
        let (x, y) = &trained.data;
        let (xy, labels) = (x.to_f64_vec(), y.to_f64_vec());
        for (class, colour) in [(0.0, c0), (1.0, c1)] {
            let points: Vec<(f64, f64)> = xy
                .chunks(2)
                .zip(&labels)
                .filter(|(_, &l)| l == class)
                .map(|(p, _)| (p[0], p[1]))
                .collect();
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(move |p| Circle::new(p, 4, colour.filled())),
                )?
                .label(format!("class {class}"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            .label("decision boundary (p = 0.5)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
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

fn plot_loss(losses: &[f64]) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("mlp_loss.svg")?;
    {
        let root = SVGBackend::new(&path, (860, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let lo = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = losses.iter().copied().fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "MLP on two spirals: cross-entropy loss, full-batch Adam",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..losses.len() as f64, (lo * 0.8..hi * 1.2).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (log scale)")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        let colour = RGBColor(148, 103, 189);
        let points = losses.iter().enumerate().map(|(k, &l)| (k as f64, l));
        chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
        root.present()?;
    }
    Ok(path)
}

fn main() -> AnyResult<()> {
    let cfg = Config::example();
    println!(
        "config = {} points, hidden {}, {} Adam steps at rate {}",
        2 * cfg.points_per_class,
        cfg.hidden,
        cfg.steps,
        cfg.rate
    );
    let start = std::time::Instant::now();
    let mut bar = Progress::new("training", cfg.steps);
    let trained = train(cfg, &mut |t, l| bar.set(t, &format!("loss {l:.4}")))?;
    bar.finish(&format!(
        "loss {:.4}",
        trained.losses[trained.losses.len() - 1]
    ));
    println!("train_seconds = {:.2}", start.elapsed().as_secs_f64());
    println!(
        "final_loss = {}",
        num(trained.losses[trained.losses.len() - 1])
    );
    println!("train_accuracy = {}", num(trained.accuracy));
    println!("wrote {}", plot_boundary(&trained)?.display());
    println!("wrote {}", plot_loss(&trained.losses)?.display());
    Ok(())
}
