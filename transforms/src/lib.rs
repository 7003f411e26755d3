//! ferrax-transforms: jvp, linearize, vjp, grad, jacobians, vmap and simplification passes, all
//! as IR-to-IR rewrites: each takes a `&Graph` and returns a new `Graph`.
#![deny(missing_docs)]

pub mod batch;
pub mod passes;
pub mod vmap;
