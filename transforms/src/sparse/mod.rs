//! Sparse derivatives: sparsity detection on the IR ([`pattern`]), colouring of the patterns
//! ([`colour`]), and the compressed evaluation graphs that compute only the structural
//! nonzeros of a Jacobian or Hessian ([`compress`]).

pub mod colour;
pub mod compress;
pub mod pattern;

pub use colour::{colour_columns, colour_star, Colouring, Ordering};
pub use pattern::{hessian_pattern, jacobian_pattern, Pattern};
