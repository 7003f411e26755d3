//! Hessian-vector products, forward over reverse: the JVP of the gradient graph, restricted
//! to its tangent outputs. The compressed Hessians of [`super::compress`] are batches of
//! these; on its own it gives `H · v` for the cost of a few gradients, without forming `H`.

use crate::grad::restrict;
use crate::jvp::jvp_graph;
use ferrax_ir::{Graph, Result};

/// The Hessian-vector product of the scalar function `g` with respect to all its explicit
/// arguments: parameters `[primals.., tangents.., captures..]` (one tangent of the primal's
/// type per explicit argument), outputs one block of `H · v` per explicit argument (block
/// `i` is `Σ_j ∂²f/∂x_i∂x_j · v_j`). Errors like [`crate::grad_graph`] for a non-scalar or
/// non-float output or an integer argument.
pub fn hvp_graph(g: &Graph, n_explicit: usize) -> Result<Graph> {
    let argnums: Vec<usize> = (0..n_explicit).collect();
    let grad = crate::grad_graph(g, n_explicit, &argnums, false)?;
    let lin = jvp_graph(&grad, n_explicit)?;
    let np = lin.params().len();
    let tangents: Vec<usize> = (n_explicit..2 * n_explicit).collect();
    let out = restrict(&lin, &(0..np).collect::<Vec<_>>(), &tangents)?;
    crate::emit::finish(out)
}
