//! Helpers shared by the examples: where pictures go, how numbers are printed, a
//! progress bar, Graphviz rendering, and the grid, colour map and contour lines behind the
//! contour plots. Each example includes this file with `#[path = "common/mod.rs"] mod common;`,
//! and so does `tests/examples.rs` through the examples, so not every example uses every helper.
#![allow(dead_code)]

pub mod digits;

use indicatif::{ProgressBar, ProgressStyle};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use std::error::Error;
use std::path::{Path, PathBuf};

/// What the examples' fallible functions return.
pub type AnyResult<T> = Result<T, Box<dyn Error>>;

/// A plotters chart with `f64` axes drawn to SVG.
pub type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The folder for pictures, `<target>/ferrax-examples/`, created if missing.
///
/// The target folder is found from the running executable, which Cargo places in
/// `<target>/<profile>/examples/` (or `deps/` for tests); `CARGO_TARGET_DIR` and the
/// workspace's `target/` are the fall-backs.
pub fn out_dir() -> AnyResult<PathBuf> {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let target = exe.parent()?.parent()?.parent()?.to_path_buf();
        target.is_dir().then_some(target)
    });
    let target = from_exe
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ferrax-examples");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The path of a picture called `name` in [`out_dir`].
pub fn out_path(name: &str) -> AnyResult<PathBuf> {
    Ok(out_dir()?.join(name))
}

/// Prints `x` in Rust's shortest round-trip form, without a trailing `.0` on whole numbers
/// and with an exponent for very small or large magnitudes: `9`, `-4`, `8.1e-10`.
pub fn num(x: f64) -> String {
    trim_zero(format!("{x:?}"))
}

/// Like [`num`] for `f32`, so that an `f32` prints its own shortest form (`2.0327768`).
pub fn num32(x: f32) -> String {
    trim_zero(format!("{x:?}"))
}

fn trim_zero(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// A list of numbers as `[a, b, c]`, each printed by [`num`].
pub fn vec_text(xs: &[f64]) -> String {
    let parts: Vec<String> = xs.iter().map(|&x| num(x)).collect();
    format!("[{}]", parts.join(", "))
}

/// A row-major matrix of `cols` columns as `[[a, b], [c, d]]`.
pub fn matrix_text(xs: &[f64], cols: usize) -> String {
    let rows: Vec<String> = xs.chunks(cols).map(vec_text).collect();
    format!("[{}]", rows.join(", "))
}

/// Writes `dot` to `<name>.dot` and, when Graphviz's `dot` program is on the `PATH`, renders
/// `<name>.svg` too. Returns the files written.
pub fn write_dot(name: &str, dot: &str) -> AnyResult<Vec<PathBuf>> {
    let dot_path = out_path(&format!("{name}.dot"))?;
    std::fs::write(&dot_path, dot)?;
    let mut written = vec![dot_path.clone()];
    let svg_path = out_path(&format!("{name}.svg"))?;
    // A missing Graphviz is not an error: the DOT file alone is the drawing then.
    let rendered = std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg(&dot_path)
        .arg("-o")
        .arg(&svg_path)
        .output();
    if matches!(rendered, Ok(ref out) if out.status.success()) {
        written.push(svg_path);
    }
    Ok(written)
}

/// A one-line progress bar on standard error (indicatif's), drawn only when standard error is
/// a terminal, so test runs and redirected output stay clean.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(label: &str, total: usize) -> Progress {
        let bar = ProgressBar::new(total.max(1) as u64);
        // The template is fixed and known to parse; the default style is the fall-back.
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
        {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar.set_prefix(label.to_string());
        Progress { bar }
    }

    /// Shows that `done` steps are finished, with a short message such as the loss.
    pub fn set(&mut self, done: usize, message: &str) {
        self.bar.set_position(done as u64);
        self.bar.set_message(message.to_string());
    }

    /// Draws the full bar and ends its line.
    pub fn finish(&mut self, message: &str) {
        self.bar.finish_with_message(message.to_string());
    }
}

/// The median of `xs` (sorted in place); `xs` must not be empty.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median nanoseconds per call of `f` over 25 timed batches of 200,000 calls; the results are
/// summed into a sink the optimiser cannot drop.
pub fn time_ns(mut f: impl FnMut() -> f64) -> f64 {
    let mut samples = Vec::new();
    let mut sink = 0.0;
    for _ in 0..25 {
        let n = 200_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            sink += f();
        }
        samples.push(t.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    std::hint::black_box(sink);
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Draws each `(label, points, colour)` as a line two pixels wide with a legend entry, then the
/// legend in a framed box at `position`; for any chart coordinates (linear or log axes).
pub fn labelled_lines<'a, DB, CT, P>(
    chart: &mut ChartContext<'a, DB, CT>,
    lines: impl IntoIterator<Item = (&'a str, P, RGBColor)>,
    position: SeriesLabelPosition,
) -> AnyResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
    CT::From: Clone + 'static,
    P: IntoIterator<Item = CT::From>,
{
    for (label, points, colour) in lines {
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A loss curve on a log scale, one point per step, written to `<out_dir>/<name>`.
pub fn loss_figure(
    name: &str,
    title: &str,
    losses: &[f64],
    colour: RGBColor,
) -> AnyResult<PathBuf> {
    let path = out_path(name)?;
    {
        let root = SVGBackend::new(&path, (860, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let lo = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = losses.iter().copied().fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
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
        let points = losses.iter().enumerate().map(|(k, &l)| (k as f64, l));
        chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
        root.present()?;
    }
    Ok(path)
}

/// Values of a function of two variables on a regular grid: `z[j * nx + i]` at `(xs[i], ys[j])`.
pub struct Grid {
    /// The grid's x coordinates, increasing.
    pub xs: Vec<f64>,
    /// The grid's y coordinates, increasing.
    pub ys: Vec<f64>,
    /// The values, row by row (one row per y).
    pub z: Vec<f64>,
}

/// `n` evenly spaced points from `lo` to `hi`, both included (NumPy's `linspace`).
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let step = (hi - lo) / (n.max(2) - 1) as f64;
    (0..n).map(|i| lo + step * i as f64).collect()
}

impl Grid {
    /// The grid's points, flattened in the order of `z`: the arguments to evaluate a
    /// function of `(x, y)` on the whole grid at once.
    pub fn points(xs: &[f64], ys: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut px = Vec::with_capacity(xs.len() * ys.len());
        let mut py = Vec::with_capacity(xs.len() * ys.len());
        for &y in ys {
            for &x in xs {
                px.push(x);
                py.push(y);
            }
        }
        (px, py)
    }

    /// The value at grid point `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.z[j * self.xs.len() + i]
    }

    /// The smallest and the largest value.
    pub fn range(&self) -> (f64, f64) {
        let lo = self.z.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    /// Contour lines of `level` by marching squares, as line segments. A saddle cell (four
    /// crossings) is split into two segments in edge order, which is enough for a picture.
    pub fn contour(&self, level: f64) -> Vec<[(f64, f64); 2]> {
        let mut segments = Vec::new();
        for j in 0..self.ys.len().saturating_sub(1) {
            for i in 0..self.xs.len().saturating_sub(1) {
                let corners = [
                    (self.xs[i], self.ys[j], self.at(i, j)),
                    (self.xs[i + 1], self.ys[j], self.at(i + 1, j)),
                    (self.xs[i + 1], self.ys[j + 1], self.at(i + 1, j + 1)),
                    (self.xs[i], self.ys[j + 1], self.at(i, j + 1)),
                ];
                let mut hits = Vec::with_capacity(4);
                for k in 0..4 {
                    let (xa, ya, va) = corners[k];
                    let (xb, yb, vb) = corners[(k + 1) % 4];
                    if (va < level) != (vb < level) {
                        let t = (level - va) / (vb - va);
                        hits.push((xa + t * (xb - xa), ya + t * (yb - ya)));
                    }
                }
                for pair in hits.chunks_exact(2) {
                    segments.push([pair[0], pair[1]]);
                }
            }
        }
        segments
    }

    /// Draws the grid as a heat map of small rectangles coloured by [`colormap`] on `t`
    /// in `[0, 1]`, where `scale` maps a value to `t`.
    pub fn draw_heat(&self, chart: &mut Chart, scale: &dyn Fn(f64) -> f64) -> AnyResult<()> {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let half = |v: &[f64], k: usize| -> (f64, f64) {
            let lo = if k == 0 {
                v[0]
            } else {
                0.5 * (v[k - 1] + v[k])
            };
            let hi = if k + 1 == v.len() {
                v[k]
            } else {
                0.5 * (v[k] + v[k + 1])
            };
            (lo, hi)
        };
        let mut cells = Vec::with_capacity(nx * ny);
        for j in 0..ny {
            let (y0, y1) = half(&self.ys, j);
            for i in 0..nx {
                let (x0, x1) = half(&self.xs, i);
                let colour = colormap(scale(self.at(i, j)));
                cells.push(Rectangle::new([(x0, y0), (x1, y1)], colour.filled()));
            }
        }
        chart.draw_series(cells)?;
        Ok(())
    }

    /// Draws the contour lines of `levels` in `style`, labelling the series once.
    pub fn draw_contours(
        &self,
        chart: &mut Chart,
        levels: &[f64],
        style: ShapeStyle,
    ) -> AnyResult<()> {
        let mut segments = Vec::new();
        for &level in levels {
            segments.extend(self.contour(level));
        }
        chart.draw_series(
            segments
                .into_iter()
                .map(|[a, b]| PathElement::new(vec![a, b], style)),
        )?;
        Ok(())
    }
}

/// Draws a contour figure of `grid` to `path`: a heat map, contour lines at `levels` and
/// whatever `extra` adds on top (a path, points), with a legend of the series it labels. `scale` maps a value to `[0, 1]` for the
/// colours, e.g. a square root to spread out the low values near a minimum.
pub fn contour_figure(
    path: &Path,
    title: &str,
    grid: &Grid,
    levels: &[f64],
    scale: &dyn Fn(f64) -> f64,
    extra: impl FnOnce(&mut Chart) -> AnyResult<()>,
) -> AnyResult<()> {
    let (x0, x1) = (grid.xs[0], grid.xs[grid.xs.len() - 1]);
    let (y0, y1) = (grid.ys[0], grid.ys[grid.ys.len() - 1]);
    // The picture's height follows the plot's aspect ratio, so circles look round.
    let height = (690.0 * (y1 - y0) / (x1 - x0)).clamp(300.0, 1000.0) as u32 + 115;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("x")
        .y_desc("y")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    grid.draw_heat(&mut chart, scale)?;
    grid.draw_contours(&mut chart, levels, WHITE.mix(0.8).stroke_width(1))?;
    extra(&mut chart)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A perceptually ordered colour map (close to viridis) from dark blue at 0 to yellow at 1.
pub fn colormap(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f64;
    let k = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - k as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A colour between `a` and `b`, `t` in `[0, 1]`; the examples use it for lighter tints.
pub fn blend(a: RGBColor, b: RGBColor, t: f64) -> RGBColor {
    let mix = |x: u8, y: u8| (x as f64 + t * (y as f64 - x as f64)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A simple deterministic random number generator (SplitMix64), so the examples' data is the
/// same on every machine without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal number (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
