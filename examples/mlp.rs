//! A two-layer MLP classifies two interleaved spirals. The parameters are a derived tree
//! (`Params<T>`), and one jitted train step `(params, opt_state, x, y) -> (params, opt_state,
//! loss)` holds the softmax cross-entropy, its gradient by `value_and_grad` and the Adam update
//! of `ferrax::optim`, so the whole step runs as native code. It prints `train_accuracy`, the
//! median time of one step (`step_us`) and of the first (`first_step_ms`: trace, transforms,
//! compile and run), and draws the decision boundary (`mlp_boundary.svg`) and the loss curve
//! (`mlp_loss.svg`).

#[path = "common/mod.rs"]
mod common;

use common::{num, AnyResult, Progress, Rng};
use ferrax::optim::{self, GradientTransformation};
use ferrax::prelude::*;
use ferrax::tree::{self, Donate, Tree};
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

/// The network's parameters: the same struct holds arrays between steps, tensors while
/// tracing, and gradients.
#[derive(Tree, Clone, Debug)]
pub struct Params<T> {
    /// Input to hidden weights, `[2, hidden]`.
    pub w1: T,
    /// Hidden biases.
    pub b1: T,
    /// Hidden to output weights, `[hidden, 2]`.
    pub w2: T,
    /// Output biases.
    pub b2: T,
}

/// Adam's state for these parameters (moments of the parameters' structure, the step count
/// and the learning rate).
pub type OptState<L> = optim::AdamState<L, Params<L>>;

/// The network's logits for inputs `x` (`[n, 2]`): tanh(x·W1 + b1)·W2 + b2.
fn logits(p: &Params<Tensor>, x: &Tensor) -> Tensor {
    let h = (x.matmul(&p.w1) + &p.b1).tanh();
    h.matmul(&p.w2) + &p.b2
}

/// The mean softmax cross-entropy of the network on `x` with i32 classes `y`.
fn loss(p: Params<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let z = logits(&p, &x);
    let picked = (&z * y.one_hot(2, DType::F64)).sum(&[1]);
    (z.logsumexp(&[1]) - picked).mean_all()
}

/// The train step, compiled on its first call: the loss and its gradient, Adam's update, the
/// new parameters.
pub fn train_step(opt: &optim::Adam) -> tree::TreeJit {
    let opt = opt.clone();
    tree::jit(
        move |p: Params<Tensor>, s: OptState<Tensor>, x: Tensor, y: Tensor| {
            let (l, g): (Tensor, Params<Tensor>) = tree::value_and_grad(loss)
                .apply((&p, &x, &y))
                .expect("the loss is traced on the step's own tensors");
            let (updates, s) = opt.update(g, s, &p);
            (optim::apply_updates(p, &updates), s, l)
        },
    )
}

/// The predicted class of each row of `x`.
pub fn predict() -> tree::TreeFn {
    tree::function(|p: Params<Tensor>, x: Tensor| logits(&p, &x).argmax(1))
}

/// The probability of class 1 for each row of `x`.
pub fn probability() -> tree::TreeFn {
    tree::function(|p: Params<Tensor>, x: Tensor| logits(&p, &x).softmax(1).slice_axis(1, 1, 2))
}

/// The outcome of a run.
pub struct Trained {
    /// The trained parameters.
    pub params: Params<Array>,
    /// Adam's state after the last step.
    pub state: OptState<Array>,
    /// The loss before each step.
    pub losses: Vec<f64>,
    /// The fraction of training points classified correctly after training.
    pub accuracy: f64,
    /// The training points (`[2n, 2]`) and classes.
    pub data: (Array, Array),
    /// The median time of one train step after the first ten, in microseconds.
    pub step_us: f64,
    /// The time of the first step (trace, transforms, compile, run), in milliseconds.
    pub first_step_ms: f64,
}

/// A `shape` array of normal samples times `scale`.
fn normal(shape: &[usize], scale: f64, rng: &mut Rng) -> AnyResult<Array> {
    let n = shape.iter().product::<usize>();
    Ok(Array::from_f64(
        shape,
        (0..n).map(|_| scale * rng.normal()).collect(),
    )?)
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
    let mut params = Params {
        w1: normal(&[2, h], 2.0, &mut rng)?,
        b1: normal(&[h], 0.0, &mut rng)?,
        w2: normal(&[h, 2], 1.0 / (h as f64).sqrt(), &mut rng)?,
        b2: normal(&[2], 0.0, &mut rng)?,
    };
    let opt = optim::adam(cfg.rate);
    let mut state: OptState<Array> = opt.init(&params)?;
    let step = train_step(&opt);

    let mut losses = Vec::with_capacity(cfg.steps);
    let mut times = Vec::with_capacity(cfg.steps);
    for t in 1..=cfg.steps {
        let start = std::time::Instant::now();
        // The old parameters and state are given up: their buffers become the outputs of the
        // next step, so the loop allocates nothing once it runs.
        let (p, s, l): (Params<Array>, OptState<Array>, Array) =
            step.call_donating((Donate(params), Donate(state), &x, &y))?;
        times.push(start.elapsed().as_secs_f64());
        (params, state) = (p, s);
        let l = l.to_scalar()?;
        losses.push(l);
        on_step(t, l);
    }
    let first_step_ms = 1e3 * times[0];
    let mut steady = times[times.len().min(10)..].to_vec();
    steady.sort_by(f64::total_cmp);
    let step_us = 1e6 * steady.get(steady.len() / 2).copied().unwrap_or(f64::NAN);

    let predicted: Array = predict().call((&params, &x))?;
    let correct = predicted
        .to_f64_vec()
        .iter()
        .zip(&labels)
        .filter(|(p, &l)| **p as i32 == l)
        .count();
    let accuracy = correct as f64 / n as f64;
    Ok(Trained {
        params,
        state,
        losses,
        accuracy,
        data: (x, y),
        step_us,
        first_step_ms,
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
    let grid_x = Array::from_f64([px.len(), 2], grid_xy)?;
    let z: Array = probability().call((&trained.params, &grid_x))?;
    let z = z.to_f64_vec();
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
    common::loss_figure(
        "mlp_loss.svg",
        "MLP on two spirals: cross-entropy loss, full-batch Adam",
        losses,
        RGBColor(148, 103, 189),
    )
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
    println!("step_us = {:.1}", trained.step_us);
    println!("first_step_ms = {:.1}", trained.first_step_ms);
    println!("wrote {}", plot_boundary(&trained)?.display());
    println!("wrote {}", plot_loss(&trained.losses)?.display());
    Ok(())
}
