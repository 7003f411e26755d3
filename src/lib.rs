//! ferrax: JAX-style composable transformations for Rust — trace a closure into a typed SSA IR,
//! differentiate it to any order with IR-to-IR rewrites, and compile it with Cranelift.
#![deny(missing_docs)]

pub use ferrax_ir as ir;
pub use ferrax_ir::{Array, DType, Error, ErrorKind, Result, Shape, Type};

/// Everything a typical user needs, in one import.
pub mod prelude {
    pub use ferrax_ir::{Array, DType, Error, Result, Shape, Type};
}
