//! Rules for `convert` and `stop_gradient`. A conversion between float dtypes is linear (its
//! transpose converts back); any conversion to or from integers or bools has a zero
//! derivative, and `stop_gradient` always has a zero derivative.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::convert;
use ferrax_ir::ops::ConvertOp;
use ferrax_ir::{Builder, Result, Value};

/// The tangent of a conversion.
pub fn jvp(b: &mut Builder, op: ConvertOp, x: Value, t: Option<Value>) -> Result<Option<Value>> {
    match (op, t) {
        (ConvertOp::Convert(d), Some(t)) if d.is_float() && b.ty(x).dtype.is_float() => {
            convert(b, t, d).map(Some)
        }
        (ConvertOp::Convert(_), _) | (ConvertOp::StopGradient, _) => Ok(None),
    }
}

/// Transposes a float-to-float conversion.
pub fn transpose(
    b: &mut Builder,
    op: ConvertOp,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    match op {
        ConvertOp::Convert(_) => for_linear(args, |_, ty| convert(b, ct, ty.dtype).map(Some)),
        ConvertOp::StopGradient => Err(not_linear(op.name())),
    }
}
