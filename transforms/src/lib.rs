//! ferrax-transforms: jvp, linearize, vjp, grad, jacobians, vmap and simplification passes, all
//! as IR-to-IR rewrites: each takes a `&Graph` and returns a new `Graph`.
//!
//! Automatic differentiation follows JAX: every primitive has a JVP rule ([`rules`]);
//! [`linearize_graph`] partially evaluates the JVP into a primal graph and a linear graph;
//! [`vjp_graph`] transposes the linear graph. `grad`, Jacobians and Hessians are built from
//! those. Parameters from `n_explicit` on are captures of enclosing traces: passed through as
//! the last parameters, never differentiated. Every result is simplified
//! ([`passes::simplify`]) and verified.
#![deny(missing_docs)]

pub mod api;
pub mod batch;
pub mod jet;
pub mod passes;
pub mod rules;
pub mod sparse;
pub mod vmap;

mod emit;
mod grad;
mod jacobian;
mod jvp;
mod linearize;
mod transpose;
mod vjp;

pub use emit::inline;
pub use grad::{grad_graph, value_and_grad_graph};
pub use jacobian::{
    hessian_graph, hessian_graph_with, jacfwd_graph, jacfwd_graph_with, jacrev_graph,
    jacrev_graph_with, Compression,
};
pub use jet::jet_graph;
pub use jvp::jvp_graph;
pub use linearize::linearize_graph;
pub use passes::{simplify, simplify_report, try_simplify, PassReport};
pub use transpose::transpose_graph;
pub use vjp::vjp_graph;
