//! ferrax: JAX-style composable transformations for Rust.
//!
//! Write a plain closure over [`Tensor`]s; ferrax traces it once per input types into a typed
//! SSA IR. `grad`, `value_and_grad`, `jvp`, `vjp`, `linearize`, `jacfwd`, `jacrev`, `hessian` and
//! `vmap` rewrite that IR into new IR, so they compose to any order, and `jit` compiles any graph
//! to native code with Cranelift.
//!
//! ```
//! use ferrax::prelude::*;
//! let f = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
//! let df = grad(f).wrt((0, 1, 2));
//! let (dx, dy, dz): (f64, f64, f64) = df.call((1.0, 2.0, 3.0)).unwrap();
//! assert!((dy - 5.659572877985825).abs() < 1e-12);
//! # let _ = (dx, dz);
//! ```
//!
//! Functions may also take and return parameter trees — nested structs with
//! `#[derive(Tree)]`, tuples, `Vec`s, maps — through the tree versions of the transforms in
//! [`tree`].
#![deny(missing_docs)]

// `#[derive(Tree)]` names `::ferrax`, which lets it work inside this crate too.
extern crate self as ferrax;

#[cfg(feature = "argmin")]
pub mod argmin;
pub mod optim;
pub mod sparse;
pub mod tree;
pub use sparse::{hessian_sparse, hvp, jacobian_sparse, sparsity, Sparse};
pub use tree::Tree;

/// Ahead-of-time export of compiled functions as object files (crate `ferrax-aot`).
pub use ferrax_aot as aot;
pub use ferrax_ir as ir;
pub use ferrax_ir::control_api::{
    cond, fori_loop, scan, scan_with, switch, while_loop, ScanConfig,
};
pub use ferrax_ir::interp::EvalOptions;
pub use ferrax_ir::ops::ConvDimensionNumbers;
pub use ferrax_ir::ops::RematPolicy;
pub use ferrax_ir::ops::Window;
pub use ferrax_ir::Padding;
pub use ferrax_ir::{
    concatenate, function, select, stack, trace, Array, DType, Error, ErrorKind, Function, Graph,
    Result, Shape, Tensor, Type,
};
pub use ferrax_ir::{where_, At, ConvParams, Norm};
pub use ferrax_jit as jit_backend;
pub use ferrax_jit::{jit, jit_with, Compiled, Jit, JitOptions, MathMode};
pub use ferrax_transforms as transforms;
pub use ferrax_transforms::api::{
    checkpoint, checkpoint_with, custom_jvp, custom_vjp, residual_bytes,
};
pub use ferrax_transforms::api::{
    derivatives, jet, laplacian, ode_series, series_to_taylor, taylor_coefficients,
    taylor_to_series,
};
pub use ferrax_transforms::api::{
    grad, hessian, jacfwd, jacrev, jvp, linearize, value_and_grad, vjp, vjp_at, vmap, Grad,
    Jacobian, Vmap,
};

/// Everything a typical user needs, in one import.
pub mod prelude {
    pub use crate::Tree;
    pub use crate::{
        checkpoint, checkpoint_with, cond, custom_jvp, custom_vjp, fori_loop, residual_bytes, scan,
        scan_with, switch, while_loop, RematPolicy, ScanConfig,
    };
    pub use crate::{
        concatenate, function, grad, hessian, jacfwd, jacrev, jit, jit_with, jvp, linearize,
        select, stack, trace, value_and_grad, vjp, vjp_at, vmap, Array, DType, Error, Function,
        Jit, JitOptions, Result, Shape, Tensor, Type,
    };
    pub use crate::{derivatives, jet, laplacian, ode_series, taylor_coefficients};
    pub use crate::{where_, ConvParams, Norm, Padding, Window};
}

/// The README's code blocks, compiled and run as doctests so the quick start stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
