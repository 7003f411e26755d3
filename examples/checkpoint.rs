//! Checkpointing (rematerialization) of a 50-layer tanh MLP: the bytes of residuals reverse
//! mode keeps between its forward and backward pass, without checkpoints, with a checkpoint
//! around each layer, and with checkpoints around blocks of five layers (each layer inside
//! checkpointed too), and the gradients, which are the same in all three.
//!
//! A checkpointed part keeps only its inputs; the rest is recomputed in the backward pass.
//! Around each layer this halves the activations kept (the layer input stays, tanh's
//! derivative goes); around blocks only every fifth activation is kept.

#[path = "common/mod.rs"]
mod common;

use common::AnyResult;
use ferrax::prelude::*;

/// The number of layers.
pub const LAYERS: usize = 50;
/// The width of every layer.
pub const WIDTH: usize = 8;
/// The batch size.
pub const BATCH: usize = 128;
/// Layers per checkpointed block.
pub const BLOCK: usize = 5;

/// Where the MLP places checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remat {
    /// No checkpoints.
    None,
    /// One checkpoint around each layer.
    Layers,
    /// One checkpoint around each block of [`BLOCK`] layers, and each layer inside.
    Blocks,
}

fn layer(w: &Tensor, h: &Tensor) -> Tensor {
    h.matmul(w).tanh()
}

/// `loss(ws, x) = mean(h_50²)` for the MLP with weights `ws: f64[50, 8, 8]` on `x: f64[128, 8]`.
pub fn mlp(remat: Remat) -> Function {
    let one = checkpoint(|w: Tensor, h: Tensor| layer(&w, &h));
    let apply_layer = move |w: &Tensor, h: &Tensor, remat: bool| {
        if remat {
            one.apply1(&[w.clone(), h.clone()])
        } else {
            layer(w, h)
        }
    };
    let inner = apply_layer.clone();
    let block = checkpoint(move |ws: Tensor, h: Tensor| {
        let mut h = h;
        for i in 0..BLOCK {
            let w = ws.slice_axis(0, i, i + 1).reshape(&[WIDTH, WIDTH]);
            h = inner(&w, &h, true);
        }
        h
    });
    function(move |ws: Tensor, x: Tensor| {
        let mut h = x;
        if remat == Remat::Blocks {
            for k in 0..LAYERS / BLOCK {
                let seg = ws.slice_axis(0, k * BLOCK, (k + 1) * BLOCK);
                h = block.apply1(&[seg, h]);
            }
        } else {
            for i in 0..LAYERS {
                let w = ws.slice_axis(0, i, i + 1).reshape(&[WIDTH, WIDTH]);
                h = apply_layer(&w, &h, remat == Remat::Layers);
            }
        }
        h.square().mean_all()
    })
}

/// The input types of the MLP's loss.
pub fn types() -> [Type; 2] {
    [
        Type::new(DType::F64, &[LAYERS, WIDTH, WIDTH]),
        Type::new(DType::F64, &[BATCH, WIDTH]),
    ]
}

/// Deterministic weights and inputs.
pub fn inputs() -> AnyResult<Vec<Array>> {
    let mut rng = common::Rng::new(11);
    let ws: Vec<f64> = (0..LAYERS * WIDTH * WIDTH)
        .map(|_| 0.6 * (2.0 * rng.uniform() - 1.0))
        .collect();
    let x: Vec<f64> = (0..BATCH * WIDTH).map(|_| rng.normal()).collect();
    let [tw, tx] = types();
    Ok(vec![
        Array::from_f64(tw.shape, ws)?,
        Array::from_f64(tx.shape, x)?,
    ])
}

/// The residual bytes and the gradient with respect to the weights, for one placement.
pub fn measure(remat: Remat) -> AnyResult<(usize, Vec<f64>)> {
    let f = mlp(remat);
    let bytes = residual_bytes(&f, &types())?;
    let g = grad(&f).call_arrays(&inputs()?)?[0].to_f64_vec();
    Ok((bytes, g))
}

fn main() -> AnyResult<()> {
    let (plain, g0) = measure(Remat::None)?;
    let (layers, g1) = measure(Remat::Layers)?;
    let (blocks, g2) = measure(Remat::Blocks)?;
    println!("residual_bytes_without = {plain}");
    println!("residual_bytes_per_layer = {layers}");
    println!("residual_bytes_with = {blocks}");
    println!("ratio_per_layer = {:.2}", plain as f64 / layers as f64);
    println!("ratio_blocks = {:.2}", plain as f64 / blocks as f64);
    println!("grads_equal = {}", g0 == g1 && g0 == g2);
    Ok(())
}
