//! Rules for comparisons, logic and `select`. Comparisons and logic produce bools, which carry
//! no derivative. `select` passes each branch's tangent where that branch is taken; its
//! transpose gives the untaken branch a zero cotangent, so a NaN in the untaken branch's
//! derivative is multiplied by that zero and yields NaN, exactly as in JAX (use the
//! double-`select` idiom to keep a NaN-producing branch's operand safe).

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{or_zeros, select, zeros};
use ferrax_ir::ops::CompareOp;
use ferrax_ir::{Builder, Result, Value};

/// The tangent of a comparison (none) or of `select(p, a, b)`.
pub fn jvp(
    b: &mut Builder,
    op: CompareOp,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    match op {
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge
        | CompareOp::And
        | CompareOp::Or
        | CompareOp::Not => Ok(None),
        CompareOp::Select => {
            if t[1].is_none() && t[2].is_none() {
                return Ok(None);
            }
            let ty = b.ty(x[1]).clone();
            let ta = or_zeros(b, t[1], &ty)?;
            let tb = or_zeros(b, t[2], &ty)?;
            select(b, x[0], ta, tb).map(Some)
        }
    }
}

/// Transposes `select` with a primal predicate.
pub fn transpose(
    b: &mut Builder,
    op: CompareOp,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    match op {
        CompareOp::Select => {
            let Some(p) = args[0].primal() else {
                return Err(not_linear("select"));
            };
            for_linear(args, |k, ty| {
                let z = zeros(b, ty)?;
                let v = if k == 1 {
                    select(b, p, ct, z)?
                } else {
                    select(b, p, z, ct)?
                };
                Ok(Some(v))
            })
        }
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge
        | CompareOp::And
        | CompareOp::Or
        | CompareOp::Not => Err(not_linear(op.name())),
    }
}
