//! ferrax-ir: the typed SSA IR every transform rewrites and the JIT lowers, the tracer users
//! write functions with, the reference interpreter, and the text format.
#![deny(missing_docs)]

pub mod alloc;
pub mod array;
pub mod builder;
pub mod control_api;
pub mod conv_api;
pub mod entities;
pub mod error;
pub mod graph;
pub mod interp;
pub mod ops;
pub mod padding;
pub mod placement;
pub mod text;
pub mod timings;
pub mod types;
mod verify;
pub mod window_api;

pub use array::{Array, Data, DataMut};
pub use builder::Builder;
pub use control_api::{cond, fori_loop, scan, scan_with, switch, while_loop, ScanConfig};
pub use conv_api::ConvParams;
pub use entities::{GraphId, Inst, Value};
pub use error::{Error, ErrorKind, Result};
pub use graph::{Graph, InstData, ValueData, ValueDef};
pub use ops::Op;
pub use padding::Padding;
pub use types::{DType, Dims, Shape, Type, MAX_BYTES};
pub mod function;
pub mod indexing;
pub mod nn;
pub mod tensor;
pub mod tracer;

pub use function::{
    function, trace, ArgRef, ArgRefs, Function, IntoArgs, IntoFunction, IntoOutputs, ScalarValue,
    Specialized,
};
pub use indexing::At;
pub use nn::{where_, Norm};
pub use tensor::{concatenate, select, stack, Operand};
pub use tracer::Tensor;
