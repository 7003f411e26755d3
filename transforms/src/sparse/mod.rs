//! Sparse derivatives: sparsity detection on the IR ([`pattern`]), colouring of the patterns
//! ([`colour`]; acyclic colouring with recovery by substitution in [`acyclic`]), and the
//! compressed evaluation graphs that compute only the structural nonzeros of a Jacobian or
//! Hessian ([`compress`]), and the dense Jacobians and Hessians computed through them when
//! their pattern compresses well ([`dense`]); also Hessian-vector products on their
//! own ([`hvp`]), and the flattening of several arrays into one for them ([`flat`]).

pub mod acyclic;
pub mod colour;
pub mod compress;
pub mod dense;
pub mod flat;
pub mod hvp;
pub mod pattern;

pub use acyclic::{colour_acyclic, Substitution};
pub use colour::{colour_columns, colour_star, Colouring, Ordering};
pub use hvp::hvp_graph;
pub use pattern::{hessian_pattern, jacobian_pattern, Pattern};
