//! checkpoint (rematerialization): the residuals a vjp keeps shrink, the gradients stay the
//! same, for both policies, nested checkpoints, and to second order.

mod common;

use common::{close, Rng};
use ferrax_ir::ops::RematPolicy;
use ferrax_ir::{function, Array, DType, Function, Tensor, Type};
use ferrax_transforms::api::{checkpoint, checkpoint_with, grad, hessian, residual_bytes};

const LAYERS: usize = 50;
const WIDTH: usize = 8;
const BATCH: usize = 128;
const BLOCK: usize = 5;

/// How the layers of the MLP are wrapped.
#[derive(Clone, Copy)]
enum Remat {
    None,
    Layers(RematPolicy),
    Blocks(RematPolicy),
}

fn layer(w: &Tensor, h: &Tensor) -> Tensor {
    h.matmul(w).tanh()
}

/// A 50-layer tanh MLP `loss(ws, x) = mean(h_50²)`; `ws` holds the 50 weight matrices.
fn mlp(remat: Remat) -> Function {
    let one = checkpoint_with_policy(|w: Tensor, h: Tensor| layer(&w, &h), remat);
    let block = match remat {
        Remat::Blocks(p) => Some(checkpoint_with(
            move |ws: Tensor, h: Tensor| {
                let mut h = h;
                for i in 0..BLOCK {
                    let w = ws.slice_axis(0, i, i + 1).reshape(&[WIDTH, WIDTH]);
                    h = layer(&w, &h);
                }
                h
            },
            p,
        )),
        _ => None,
    };
    function(move |ws: Tensor, x: Tensor| {
        let mut h = x;
        match &block {
            Some(block) => {
                for k in 0..LAYERS / BLOCK {
                    let seg = ws.slice_axis(0, k * BLOCK, (k + 1) * BLOCK);
                    h = block.apply1(&[seg, h]);
                }
            }
            None => {
                for i in 0..LAYERS {
                    let w = ws.slice_axis(0, i, i + 1).reshape(&[WIDTH, WIDTH]);
                    h = match &one {
                        Some(f) => f.apply1(&[w, h]),
                        None => layer(&w, &h),
                    };
                }
            }
        }
        h.square().mean_all()
    })
}

fn checkpoint_with_policy(f: fn(Tensor, Tensor) -> Tensor, remat: Remat) -> Option<Function> {
    match remat {
        Remat::Layers(p) => Some(checkpoint_with(f, p)),
        Remat::None | Remat::Blocks(_) => None,
    }
}

fn types() -> [Type; 2] {
    [
        Type::new(DType::F64, &[LAYERS, WIDTH, WIDTH]),
        Type::new(DType::F64, &[BATCH, WIDTH]),
    ]
}

fn args() -> Vec<Array> {
    let mut rng = Rng(3);
    let [tw, tx] = types();
    vec![rng.array(&tw, -0.6, 0.6), rng.array(&tx, -1.0, 1.0)]
}

fn grads(f: &Function) -> Vec<f64> {
    grad(f).wrt(0).call_arrays(&args()).unwrap()[0].to_f64_vec()
}

#[test]
fn checkpointing_the_mlp_keeps_at_least_5x_fewer_residual_bytes() {
    let plain = mlp(Remat::None);
    let blocks = mlp(Remat::Blocks(RematPolicy::Nothing));
    let b_plain = residual_bytes(&plain, &types()).unwrap();
    let b_blocks = residual_bytes(&blocks, &types()).unwrap();
    assert!(
        b_plain >= 5 * b_blocks,
        "residual bytes: {b_plain} without checkpoints, {b_blocks} with"
    );
    assert_eq!(grads(&plain), grads(&blocks));
}

#[test]
fn per_layer_checkpoints_keep_only_layer_inputs() {
    let plain = mlp(Remat::None);
    let layers = mlp(Remat::Layers(RematPolicy::Nothing));
    let b_plain = residual_bytes(&plain, &types()).unwrap();
    let b_layers = residual_bytes(&layers, &types()).unwrap();
    // Each layer keeps its input and weights instead of input, weights and tanh's derivative;
    // the loss keeps the last activations.
    let per_layer = (BATCH * WIDTH + WIDTH * WIDTH) * 8;
    let last = BATCH * WIDTH * 8;
    assert_eq!(
        b_layers,
        LAYERS * per_layer + last,
        "{b_plain} vs {b_layers}"
    );
    assert_eq!(b_plain, b_layers + LAYERS * BATCH * WIDTH * 8);
    assert!(b_plain > b_layers);
    assert_eq!(grads(&plain), grads(&layers));
}

#[test]
fn dots_only_policy_saves_matrix_products() {
    let plain = mlp(Remat::None);
    let nothing = mlp(Remat::Blocks(RematPolicy::Nothing));
    let dots = mlp(Remat::Blocks(RematPolicy::DotsOnly));
    let (bp, bn, bd) = (
        residual_bytes(&plain, &types()).unwrap(),
        residual_bytes(&nothing, &types()).unwrap(),
        residual_bytes(&dots, &types()).unwrap(),
    );
    // Every block saves its five products (BATCH × WIDTH each) on top of its inputs.
    assert_eq!(bd, bn + LAYERS * BATCH * WIDTH * 8, "{bp} {bn} {bd}");
    assert!(bd < bp);
    let (gp, gd) = (grads(&plain), grads(&dots));
    for (i, (a, b)) in gp.iter().zip(&gd).enumerate() {
        close(*a, *b, 1e-14, &format!("grad[{i}]"));
    }
}

#[test]
fn checkpoint_composes_to_second_order() {
    let f = |x: Tensor| x.sin().exp() * &x;
    let c = checkpoint(f);
    let x = 0.7f64;
    let d1: f64 = grad(&c).call(x).unwrap();
    let d2: f64 = grad(f).call(x).unwrap();
    assert_eq!(d1, d2);
    let h1: f64 = grad(grad(&c)).call(x).unwrap();
    let h2: f64 = grad(grad(f)).call(x).unwrap();
    close(h1, h2, 1e-14, "grad of grad");
    let h3: f64 = hessian(&c).call(x).unwrap();
    close(h3, h2, 1e-14, "hessian");
    // The checkpointed function evaluates like the original.
    let v: f64 = c.call(x).unwrap();
    assert_eq!(v, (x.sin().exp()) * x);
}
