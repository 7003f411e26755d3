//! Rules for constants and `iota`: they have no operands, hence no tangent and nothing to
//! transpose.

use super::{not_linear, Cotangents};
use ferrax_ir::ops::LiteralOp;
use ferrax_ir::{Result, Value};

/// A constant's tangent is zero.
pub fn jvp(op: &LiteralOp) -> Result<Option<Value>> {
    match op {
        LiteralOp::Const(_) | LiteralOp::Iota { .. } => Ok(None),
    }
}

/// Literals are never linear in a tangent.
pub fn transpose(op: &LiteralOp) -> Result<Cotangents> {
    match op {
        LiteralOp::Const(_) | LiteralOp::Iota { .. } => Err(not_linear(op.name())),
    }
}
