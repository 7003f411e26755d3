//! Ops without operands: constants (scalar and array literals) and `iota`.

use super::op_error;
use crate::array::Array;
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Shape, Type};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A constant array, shared; equality and hashing are by type and element bits.
#[derive(Clone, Debug)]
pub struct Literal(pub Arc<Array>);

impl Literal {
    /// A literal holding `a`.
    pub fn new(a: Array) -> Literal {
        Literal(Arc::new(a))
    }

    /// The constant's value.
    pub fn array(&self) -> &Array {
        &self.0
    }

    /// When every element equals one number, that number as f64.
    pub fn splat_value(&self) -> Option<f64> {
        let a = &*self.0;
        let n = a.size();
        if n == 0 {
            return None;
        }
        let first = a.data().get_f64(0);
        let all = (1..n).all(|i| {
            let x = a.data().get_f64(i);
            x == first || (x.is_nan() && first.is_nan())
        });
        all.then_some(first)
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.bits_eq(&other.0)
    }
}

impl Eq for Literal {}

impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash_bits(state)
    }
}

/// An op with no operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LiteralOp {
    /// A constant.
    Const(Literal),
    /// `iota`: the index along `axis` at every position of a `dtype` array of `shape`.
    Iota {
        /// Element type (numeric).
        dtype: DType,
        /// Result shape.
        shape: Shape,
        /// The axis whose index is written.
        axis: usize,
    },
}

impl LiteralOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            LiteralOp::Const(_) => "const",
            LiteralOp::Iota { .. } => "iota",
        }
    }

    /// The type rule.
    pub fn infer(&self) -> Result<Type> {
        match self {
            LiteralOp::Const(l) => Ok(l.array().ty()),
            LiteralOp::Iota { dtype, shape, axis } => {
                let ty = Type {
                    dtype: *dtype,
                    shape: shape.clone(),
                };
                if *axis >= shape.rank() {
                    return Err(op_error(
                        ErrorKind::Axis,
                        "iota",
                        &[],
                        format!("axis {axis} is out of range for shape {shape}"),
                    ));
                }
                if *dtype == DType::Bool {
                    return Err(op_error(
                        ErrorKind::DType,
                        "iota",
                        &[],
                        "iota needs a numeric dtype",
                    ));
                }
                Ok(ty)
            }
        }
    }

    /// The reference semantics.
    pub fn eval(&self) -> Array {
        match self {
            LiteralOp::Const(l) => l.array().clone(),
            LiteralOp::Iota { dtype, shape, axis } => {
                let strides = shape.strides();
                let n = shape.size();
                let vals: Vec<f64> = (0..n)
                    .map(|i| ((i / strides[*axis]) % shape.dims()[*axis]) as f64)
                    .collect();
                Array::from_parts(shape.clone(), crate::array::Data::F64(vals)).cast(*dtype)
            }
        }
    }
}
