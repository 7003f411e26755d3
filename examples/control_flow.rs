//! Differentiable control flow: per-example gradients of a loss with a branch (a Huber loss
//! written with `cond`) by `vmap(grad(loss))` over a batch of 32 with 10 parameters; reverse
//! mode through a 1000-iteration `while_loop` (Newton's method for sqrt, differentiated with
//! respect to its input, which JAX cannot do); and the residual bytes that checkpointing saves
//! in a 50-layer MLP.

// The checkpoint example is compiled in as a module and includes the shared helpers too.
#![allow(clippy::duplicate_mod)]

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "checkpoint.rs"]
mod checkpoint_example;

use common::{num, AnyResult};
use ferrax::prelude::*;

/// The batch size.
pub const BATCH: usize = 32;
/// The number of parameters.
pub const PARAMS: usize = 10;

/// The Huber loss of a linear model on one example: the residual r = w·x − y costs r²/2 when
/// |r| < 1 and |r| − 1/2 otherwise, chosen by `cond`.
pub fn loss(w: Tensor, x: Tensor, y: Tensor) -> Tensor {
    let r = w.dot(&x) - &y;
    let out = cond(
        &r.abs().lt(1.0),
        |o| vec![o[0].square() * 0.5],
        |o| vec![o[0].abs() - 0.5],
        std::slice::from_ref(&r),
    );
    out[0].clone()
}

/// Per-example gradients `[BATCH, PARAMS]` of [`loss`] with respect to the weights.
pub fn per_example_grads() -> AnyResult<Array> {
    let mut rng = common::Rng::new(5);
    let w: Vec<f64> = (0..PARAMS).map(|_| rng.normal()).collect();
    let xs: Vec<f64> = (0..BATCH * PARAMS).map(|_| rng.normal()).collect();
    let ys: Vec<f64> = (0..BATCH).map(|_| rng.normal()).collect();
    let per_example = vmap(grad(loss)).in_axes(&[None, Some(0), Some(0)]);
    let out = per_example.call_arrays(&[
        Array::from(w),
        Array::from_f64(Shape::new(&[BATCH, PARAMS]), xs)?,
        Array::from(ys),
    ])?;
    Ok(out.into_iter().next().expect("one output"))
}

/// sqrt(a) by 1000 iterations of Newton's method x ← (x + a/x)/2 from x = a, in a
/// `while_loop` whose trip count the differentiation does not know in advance.
pub fn newton_sqrt(a: Tensor) -> Tensor {
    let init = [Tensor::full_dtype(DType::I32, &[], 0.0), a.clone()];
    let out = while_loop(
        |c| c[0].lt(1000.0),
        |c| vec![&c[0] + 1.0, (&c[1] + &a / &c[1]) * 0.5],
        &init,
    );
    out[1].clone()
}

/// d/da of the Newton iteration at a = 2 by reverse mode (expected 1/(2√2)).
pub fn while_grad() -> AnyResult<f64> {
    Ok(grad(newton_sqrt).call(2.0)?)
}

/// The residual bytes of the 50-layer MLP without checkpoints over those with a checkpoint
/// around every block of five layers.
pub fn checkpoint_ratio() -> AnyResult<f64> {
    use checkpoint_example::{mlp, types, Remat};
    let without = residual_bytes(&mlp(Remat::None), &types())?;
    let with = residual_bytes(&mlp(Remat::Blocks), &types())?;
    Ok(without as f64 / with as f64)
}

fn main() -> AnyResult<()> {
    let g = per_example_grads()?;
    println!("per_example_grads_shape = {:?}", g.dims());
    println!("while_grad = {}", num(while_grad()?));
    println!("checkpoint_residual_ratio = {:.2}", checkpoint_ratio()?);
    Ok(())
}
