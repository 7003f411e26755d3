//! A small convolutional network learns scikit-learn's 8 × 8 handwritten digits: conv 3×3
//! (1 → 16) → relu → 2×2 max-pool → conv 3×3 (16 → 32) → relu → dense (512 → 10) → softmax
//! cross-entropy. The parameters are a derived tree and one jitted train step holds the loss,
//! its gradient and the Adam update of `ferrax::optim`. A fixed split keeps 360 images for
//! testing. It prints `test_accuracy` and `epoch_ms` (the median time of one epoch over the
//! training set) and draws the loss curve (`cnn_loss.svg`), the confusion matrix on the test
//! set (`cnn_confusion.svg`) and a grid of test images with their predicted labels
//! (`cnn_predictions.svg`).

#[path = "common/mod.rs"]
mod common;

use common::digits::{self, Digits, CLASSES, PIXELS, SIDE};
use common::{num, AnyResult, Progress, Rng};
use ferrax::optim::{self, GradientTransformation};
use ferrax::prelude::*;
use ferrax::tree::{self, Donate, Tree};
use plotters::prelude::*;

/// The sizes and the schedule of one training run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Images per train step (an epoch drops the last partial batch).
    pub batch: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Adam's learning rate.
    pub rate: f64,
    /// Images held out for testing.
    pub test: usize,
    /// Seed of the split, the batches' order and the initial weights.
    pub seed: u64,
}

impl Config {
    /// The example's run.
    pub fn example() -> Config {
        Config {
            batch: 128,
            epochs: 40,
            rate: 3e-3,
            test: 360,
            seed: 1,
        }
    }

    /// A shorter run for the test suite.
    pub fn quick() -> Config {
        Config {
            epochs: 12,
            ..Config::example()
        }
    }
}

/// The network's parameters (NCHW images, OIHW kernels).
#[derive(Tree, Clone, Debug)]
pub struct Cnn<T> {
    /// First convolution's kernel, `[16, 1, 3, 3]`.
    pub k1: T,
    /// Its per-channel bias, `[16]`.
    pub c1: T,
    /// Second convolution's kernel, `[32, 16, 3, 3]`.
    pub k2: T,
    /// Its per-channel bias, `[32]`.
    pub c2: T,
    /// Dense weights, `[512, 10]`.
    pub w: T,
    /// Dense biases, `[10]`.
    pub b: T,
}

/// Adam's state for these parameters.
pub type OptState<L> = optim::AdamState<L, Cnn<L>>;

/// Adds a per-channel bias `[C]` to an NCHW tensor.
fn channel_bias(x: &Tensor, c: &Tensor) -> Tensor {
    let channels = c.shape()[0];
    x + c.reshape(&[1, channels, 1, 1])
}

/// The logits of a batch `x` of `[n, 1, 8, 8]` images.
pub fn logits(p: &Cnn<Tensor>, x: &Tensor) -> Tensor {
    let h = channel_bias(&x.conv2d(&p.k1, (1, 1), "SAME"), &p.c1).relu();
    let h = h.max_pool(&[2, 2], &[2, 2], Padding::Valid);
    let h = channel_bias(&h.conv2d(&p.k2, (1, 1), "SAME"), &p.c2).relu();
    let n = h.shape()[0];
    let flat = h.reshape(&[n, 32 * (SIDE / 2) * (SIDE / 2)]);
    flat.matmul(&p.w) + &p.b
}

/// The mean softmax cross-entropy on images `x` with i32 labels `y`.
pub fn loss(p: Cnn<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let logp = logits(&p, &x).log_softmax(1);
    -logp.take_along_axis(&y.expand_dims(1), 1).mean_all()
}

/// The train step: the loss and its gradient, Adam's update, the new parameters.
pub fn train_step(opt: &optim::Adam) -> tree::TreeJit {
    let opt = opt.clone();
    tree::jit(
        move |p: Cnn<Tensor>, s: OptState<Tensor>, x: Tensor, y: Tensor| {
            let (l, g): (Tensor, Cnn<Tensor>) = tree::value_and_grad(loss)
                .apply((&p, &x, &y))
                .expect("the loss is traced on the step's own tensors");
            let (updates, s) = opt.update(g, s, &p);
            (optim::apply_updates(p, &updates), s, l)
        },
    )
}

/// The predicted digit of each image.
pub fn predict() -> tree::TreeJit {
    tree::jit(|p: Cnn<Tensor>, x: Tensor| logits(&p, &x).argmax(1))
}

/// A `shape` f32 array of normal samples times `scale`.
fn normal(shape: &[usize], scale: f64, rng: &mut Rng) -> AnyResult<Array> {
    let n = shape.iter().product::<usize>();
    let v = (0..n).map(|_| (scale * rng.normal()) as f32).collect();
    Ok(Array::from_f32(shape, v)?)
}

/// He-style initial weights (scale √(2 / fan-in)), zero biases.
pub fn init(rng: &mut Rng) -> AnyResult<Cnn<Array>> {
    let he = |fan_in: usize| (2.0 / fan_in as f64).sqrt();
    Ok(Cnn {
        k1: normal(&[16, 1, 3, 3], he(9), rng)?,
        c1: normal(&[16], 0.0, rng)?,
        k2: normal(&[32, 16, 3, 3], he(144), rng)?,
        c2: normal(&[32], 0.0, rng)?,
        w: normal(&[512, CLASSES], (1.0 / 512f64).sqrt(), rng)?,
        b: normal(&[CLASSES], 0.0, rng)?,
    })
}

/// Images as an `[n, 1, 8, 8]` array and their labels.
fn arrays(d: &Digits) -> AnyResult<(Array, Array)> {
    let n = d.len();
    let x = Array::from_f32([n, 1, SIDE, SIDE], d.images.clone())?;
    let y = Array::from_i32([n], d.labels.clone())?;
    Ok((x, y))
}

/// The outcome of a run.
pub struct Trained {
    /// The trained parameters.
    pub params: Cnn<Array>,
    /// The loss of every train step.
    pub losses: Vec<f64>,
    /// The fraction of test images classified correctly.
    pub test_accuracy: f64,
    /// Rows: true digit, columns: predicted digit, over the test set.
    pub confusion: [[usize; CLASSES]; CLASSES],
    /// The test images and their predictions.
    pub test: Digits,
    /// The predicted digit of each test image.
    pub predicted: Vec<i32>,
    /// The median time of one epoch, in milliseconds (the first epoch, which compiles, left
    /// out when there are others).
    pub epoch_ms: f64,
    /// The time of the first train step (trace, transforms, compile, run), in milliseconds.
    pub first_step_ms: f64,
}

/// Trains on the fixed split of `cfg`; `on_epoch(epoch, mean loss)` follows the progress.
pub fn train(cfg: Config, on_epoch: &mut dyn FnMut(usize, f64)) -> AnyResult<Trained> {
    let data = digits::load()?;
    let (train_set, test_set) = data.split(cfg.test, cfg.seed);
    let mut rng = Rng::new(cfg.seed);
    let mut params = init(&mut rng)?;
    let opt = optim::adam(cfg.rate);
    let mut state: OptState<Array> = opt.init(&params)?;
    let step = train_step(&opt);

    let batches = train_set.len() / cfg.batch;
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let mut losses = Vec::with_capacity(cfg.epochs * batches);
    let mut epoch_times = Vec::with_capacity(cfg.epochs);
    let mut first_step_ms = f64::NAN;
    for epoch in 1..=cfg.epochs {
        // Fisher–Yates: a new order of the training images every epoch.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        // The batches are cut before the clock starts, as a data loader would prefetch them.
        let cut: Vec<(Array, Array)> = order
            .chunks_exact(cfg.batch)
            .map(|rows| arrays(&train_set.select(rows)))
            .collect::<AnyResult<_>>()?;
        let start = std::time::Instant::now();
        let mut sum = 0.0;
        for (x, y) in &cut {
            let t = std::time::Instant::now();
            let (p, s, l): (Cnn<Array>, OptState<Array>, Array) =
                step.call_donating((Donate(params), Donate(state), x, y))?;
            if first_step_ms.is_nan() {
                first_step_ms = 1e3 * t.elapsed().as_secs_f64();
            }
            (params, state) = (p, s);
            let l = l.to_scalar()?;
            losses.push(l);
            sum += l;
        }
        epoch_times.push(1e3 * start.elapsed().as_secs_f64());
        on_epoch(epoch, sum / batches.max(1) as f64);
    }
    let mut steady = epoch_times[epoch_times.len().min(1)..].to_vec();
    if steady.is_empty() {
        steady = epoch_times.clone();
    }
    steady.sort_by(f64::total_cmp);
    let epoch_ms = steady.get(steady.len() / 2).copied().unwrap_or(f64::NAN);

    let (tx, ty) = arrays(&test_set)?;
    let predicted: Array = predict().call((&params, &tx))?;
    let predicted: Vec<i32> = predicted.to_f64_vec().iter().map(|&v| v as i32).collect();
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    for (&t, &p) in test_set.labels.iter().zip(&predicted) {
        confusion[t as usize][p.clamp(0, CLASSES as i32 - 1) as usize] += 1;
    }
    let correct = (0..CLASSES).map(|k| confusion[k][k]).sum::<usize>();
    drop(ty);
    Ok(Trained {
        params,
        losses,
        test_accuracy: correct as f64 / test_set.len().max(1) as f64,
        confusion,
        test: test_set,
        predicted,
        epoch_ms,
        first_step_ms,
    })
}

fn plot_loss(losses: &[f64]) -> AnyResult<std::path::PathBuf> {
    common::loss_figure(
        "cnn_loss.svg",
        "CNN on the 8×8 digits: cross-entropy of each Adam step",
        losses,
        RGBColor(31, 119, 180),
    )
}

fn plot_confusion(c: &[[usize; CLASSES]; CLASSES]) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("cnn_confusion.svg")?;
    {
        let root = SVGBackend::new(&path, (620, 620)).into_drawing_area();
        root.fill(&WHITE)?;
        let most = c.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("confusion matrix on the test set", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..CLASSES as f64, CLASSES as f64..0.0)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted digit")
            .y_desc("true digit")
            .x_labels(CLASSES)
            .y_labels(CLASSES)
            .x_label_formatter(&|v| format!("{}", *v as usize))
            .y_label_formatter(&|v| format!("{}", *v as usize))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        for (t, row) in c.iter().enumerate() {
            for (p, &n) in row.iter().enumerate() {
                let shade = common::blend(WHITE, RGBColor(31, 119, 180), (n as f64 / most).sqrt());
                let (x, y) = (p as f64, t as f64);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    shade.filled(),
                )))?;
                if n > 0 {
                    let ink = if n as f64 > 0.5 * most { WHITE } else { BLACK };
                    chart.draw_series(std::iter::once(Text::new(
                        n.to_string(),
                        (x + 0.35, y + 0.35),
                        ("sans-serif", 14).into_font().color(&ink),
                    )))?;
                }
            }
        }
        root.present()?;
    }
    Ok(path)
}

fn plot_predictions(test: &Digits, predicted: &[i32]) -> AnyResult<std::path::PathBuf> {
    let path = common::out_path("cnn_predictions.svg")?;
    const COLS: usize = 10;
    const ROWS: usize = 6;
    const CELL: i32 = 72;
    {
        let root = SVGBackend::new(
            &path,
            (COLS as u32 * CELL as u32, ROWS as u32 * CELL as u32 + 40),
        )
        .into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            "test images, predicted digit (red: wrong)",
            (10, 10),
            ("sans-serif", 18),
        ))?;
        let px = 7;
        for (k, (&pred, &label)) in predicted
            .iter()
            .zip(&test.labels)
            .enumerate()
            .take(ROWS * COLS)
        {
            let (r, c) = ((k / COLS) as i32, (k % COLS) as i32);
            let (x0, y0) = (c * CELL + 4, r * CELL + 40);
            for (i, &v) in test.image(k).iter().enumerate() {
                let (iy, ix) = ((i / SIDE) as i32, (i % SIDE) as i32);
                let g = (255.0 * (1.0 - v)) as u8;
                root.draw(&Rectangle::new(
                    [
                        (x0 + ix * px, y0 + iy * px),
                        (x0 + (ix + 1) * px, y0 + (iy + 1) * px),
                    ],
                    RGBColor(g, g, g).filled(),
                ))?;
            }
            let right = pred == label;
            let colour = if right { BLACK } else { RED };
            root.draw(&Text::new(
                pred.to_string(),
                (x0 + 8 * px + 3, y0 + 20),
                ("sans-serif", 18).into_font().color(&colour),
            ))?;
        }
        root.present()?;
    }
    debug_assert_eq!(PIXELS, SIDE * SIDE);
    Ok(path)
}

fn main() -> AnyResult<()> {
    let cfg = Config::example();
    println!(
        "config = batch {}, {} epochs, Adam at rate {}, {} test images",
        cfg.batch, cfg.epochs, cfg.rate, cfg.test
    );
    let mut bar = Progress::new("training", cfg.epochs);
    let trained = train(cfg, &mut |e, l| bar.set(e, &format!("loss {l:.4}")))?;
    bar.finish("done");
    println!(
        "final_loss = {}",
        num(trained.losses.last().copied().unwrap_or(f64::NAN))
    );
    println!("test_accuracy = {}", num(trained.test_accuracy));
    println!("epoch_ms = {:.1}", trained.epoch_ms);
    println!("first_step_ms = {:.1}", trained.first_step_ms);
    println!("wrote {}", plot_loss(&trained.losses)?.display());
    println!("wrote {}", plot_confusion(&trained.confusion)?.display());
    println!(
        "wrote {}",
        plot_predictions(&trained.test, &trained.predicted)?.display()
    );
    Ok(())
}
