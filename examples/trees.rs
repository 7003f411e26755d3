//! Parameter trees: a model is a nested struct (`Mlp { layers: Vec<Layer>, .. }` of any
//! depth) with `#[derive(Tree)]`, holding arrays outside a trace and tensors inside one.
//! `value_and_grad` returns the gradient as the same struct, a jitted SGD step fits a curve,
//! `vmap(grad)` with the axis prefix `(None, 0, 0)` gives per-example gradients (whose mean is
//! the batch gradient), and `jvp` over trees gives a directional derivative that matches the
//! gradient's inner product with the direction. It prints those numbers as `name = value`.

#[path = "common/mod.rs"]
mod common;

use common::{num, AnyResult, Rng};
use ferrax::prelude::*;
use ferrax::tree::{self, global_norm, tree_map, tree_zip_map, Tree};

/// One dense layer: `x·w + b`.
#[derive(Tree, Clone, Debug)]
pub struct Layer<T> {
    /// Weights `[in, out]`.
    pub w: T,
    /// Bias `[out]`.
    pub b: T,
}

/// A stack of dense layers with tanh between them; the name is static data.
#[derive(Tree, Clone, Debug)]
pub struct Mlp<T> {
    /// The layers, first to last.
    pub layers: Vec<Layer<T>>,
    /// A label, part of the structure, not of the computation.
    #[tree(skip)]
    pub name: &'static str,
}

/// A model of `widths` (input width first, 1 output last) with small random weights.
pub fn init(widths: &[usize], rng: &mut Rng) -> AnyResult<Mlp<Array>> {
    let mut layers = Vec::new();
    for pair in widths.windows(2) {
        let (i, o) = (pair[0], pair[1]);
        let scale = 1.0 / (i as f64).sqrt();
        let w: Vec<f64> = (0..i * o).map(|_| scale * rng.normal()).collect();
        layers.push(Layer {
            w: Array::from_f64(Shape::new(&[i, o]), w)?,
            b: Array::from_f64(Shape::new(&[o]), vec![0.0; o])?,
        });
    }
    Ok(Mlp {
        layers,
        name: "mlp",
    })
}

/// The network's outputs for a batch `x` `[n, in]`: `[n, 1]`.
pub fn forward(p: &Mlp<Tensor>, x: &Tensor) -> Tensor {
    let last = p.layers.len() - 1;
    let mut h = x.clone();
    for (k, l) in p.layers.iter().enumerate() {
        h = h.matmul(&l.w) + &l.b;
        if k < last {
            h = h.tanh();
        }
    }
    h
}

/// The mean squared error on a batch.
pub fn loss(p: Mlp<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let d = forward(&p, &x) - y;
    (&d * &d).mean_all()
}

/// The squared error of one example (`x` `[in]`, `y` `[1]`).
pub fn example_loss(p: Mlp<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let n = x.size();
    let d = forward(&p, &x.reshape(&[1, n])) - y.reshape(&[1, 1]);
    (&d * &d).sum_all()
}

/// `n` points of y = sin(3x) on [-1, 1] as `[n, 1]` arrays.
pub fn data(n: usize) -> AnyResult<(Array, Array)> {
    let xs: Vec<f64> = (0..n)
        .map(|k| -1.0 + 2.0 * k as f64 / (n - 1) as f64)
        .collect();
    let ys: Vec<f64> = xs.iter().map(|x| (3.0 * x).sin()).collect();
    Ok((
        Array::from_f64(Shape::new(&[n, 1]), xs)?,
        Array::from_f64(Shape::new(&[n, 1]), ys)?,
    ))
}

/// The outcome of [`train`].
pub struct Trained {
    /// The loss before the first step.
    pub first_loss: f64,
    /// The loss after the last step.
    pub last_loss: f64,
    /// The trained parameters.
    pub params: Mlp<Array>,
}

/// `steps` steps of gradient descent on the tree, with a jitted `value_and_grad`.
pub fn train(widths: &[usize], steps: usize, rate: f64) -> AnyResult<Trained> {
    let mut rng = Rng::new(3);
    let mut params = init(widths, &mut rng)?;
    let (x, y) = data(64)?;
    let step = tree::jit(tree::value_and_grad(loss));
    let mut first_loss = f64::NAN;
    for k in 0..steps {
        let (l, g): (Array, Mlp<Array>) = step.call((&params, &x, &y))?;
        if k == 0 {
            first_loss = l.to_scalar()?;
        }
        params = tree_zip_map(&params, &g, |p, g| {
            let v: Vec<f64> = p
                .to_f64_vec()
                .iter()
                .zip(g.to_f64_vec())
                .map(|(p, g)| p - rate * g)
                .collect();
            Array::from_f64(p.shape().clone(), v).expect("the parameter's own shape")
        })?;
    }
    let l: f64 = tree::function(loss).call((&params, &x, &y))?;
    Ok(Trained {
        first_loss,
        last_loss: l,
        params,
    })
}

/// The largest difference between the mean of the per-example gradients (by `vmap(grad)`
/// with in_axes `(None, 0, 0)`) and the batch gradient, and the per-example gradient's shape
/// for the first layer's weights.
pub fn per_example_check(params: &Mlp<Array>) -> AnyResult<(f64, Vec<usize>)> {
    let (x, y) = data(16)?;
    let per_example = tree::vmap(tree::grad(example_loss)).in_axes((None, 0, 0));
    let g: Mlp<Array> = per_example.call((params, &x, &y))?;
    let batch: Mlp<Array> = tree::grad(loss).call((params, &x, &y))?;
    let mut worst: f64 = 0.0;
    for (pe, b) in g.leaves().into_iter().zip(batch.leaves()) {
        let m = b.size();
        let v = pe.to_f64_vec();
        for (k, want) in b.to_f64_vec().iter().enumerate() {
            // The batch loss is a mean, so its gradient is the mean of the examples'.
            let mean = (0..16).map(|e| v[e * m + k]).sum::<f64>() / 16.0;
            worst = worst.max((mean - want).abs());
        }
    }
    Ok((worst, g.layers[0].w.dims().to_vec()))
}

/// The directional derivative of the loss along a direction tree by `jvp`, and the same by
/// the gradient's inner product with the direction.
pub fn jvp_check(params: &Mlp<Array>) -> AnyResult<(f64, f64)> {
    let (x, y) = data(32)?;
    let mut rng = Rng::new(11);
    let dir: Mlp<Array> = tree_map(params, |a| {
        let v: Vec<f64> = (0..a.size()).map(|_| rng.normal()).collect();
        Array::from_f64(a.shape().clone(), v).expect("the parameter's own shape")
    });
    let zx = Array::zeros(&x.ty())?;
    let zy = Array::zeros(&y.ty())?;
    let (_, t): (Array, Array) = tree::jvp(loss).call((params, &x, &y), (&dir, &zx, &zy))?;
    let g: Mlp<Array> = tree::grad(loss).call((params, &x, &y))?;
    let dot: f64 = g
        .leaves()
        .into_iter()
        .zip(dir.leaves())
        .map(|(a, b)| {
            a.to_f64_vec()
                .iter()
                .zip(b.to_f64_vec())
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .sum();
    Ok((t.to_scalar()?, dot))
}

fn main() -> AnyResult<()> {
    let widths = [1, 16, 16, 1];
    let trained = train(&widths, 400, 0.1)?;
    println!("layers = {}", trained.params.layers.len());
    println!("leaves = {}", trained.params.num_leaves());
    println!("first_loss = {}", num(trained.first_loss));
    println!("last_loss = {}", num(trained.last_loss));
    println!("param_norm = {}", num(global_norm(&trained.params)));
    let (worst, shape) = per_example_check(&trained.params)?;
    println!("per_example_w0_shape = {shape:?}");
    println!("per_example_mean_error = {worst:e}");
    let (t, dot) = jvp_check(&trained.params)?;
    println!("jvp = {}", num(t));
    println!("grad_dot_direction = {}", num(dot));
    Ok(())
}
