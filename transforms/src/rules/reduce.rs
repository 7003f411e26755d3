//! Rules for reductions. `reduce_sum` is linear (its transpose broadcasts back). `reduce_max`
//! and `reduce_min` spread the tangent evenly over the positions attaining the extremum (as
//! JAX does); `reduce_prod` uses y / x (so it is NaN where an element is zero); arg-reductions
//! have zero derivatives.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{broadcast, compare, convert, div, mul, reduce_sum};
use ferrax_ir::ops::{CompareOp, ReduceOp};
use ferrax_ir::{Builder, Dims, Result, Value};

/// `y` (reduced over `axes`) broadcast back to the shape of `x`.
fn expand(b: &mut Builder, y: Value, x: Value, axes: &[usize]) -> Result<Value> {
    let shape = b.ty(x).shape.clone();
    let dims: Dims = (0..shape.rank()).filter(|d| !axes.contains(d)).collect();
    broadcast(b, y, shape, dims)
}

/// The tangent of a reduction.
pub fn jvp(
    b: &mut Builder,
    op: &ReduceOp,
    x: Value,
    t: Option<Value>,
    y: Value,
) -> Result<Option<Value>> {
    let Some(t) = t else { return Ok(None) };
    match op {
        ReduceOp::Sum { axes } => reduce_sum(b, t, axes.clone()).map(Some),
        ReduceOp::Max { axes } | ReduceOp::Min { axes } => {
            let yb = expand(b, y, x, axes)?;
            let hit = compare(b, CompareOp::Eq, x, yb)?;
            let mask = convert(b, hit, b.ty(x).dtype)?;
            let count = reduce_sum(b, mask, axes.clone())?;
            let w = expand(b, count, x, axes)?;
            let coef = div(b, mask, w)?;
            let m = mul(b, t, coef)?;
            reduce_sum(b, m, axes.clone()).map(Some)
        }
        ReduceOp::Prod { axes } => {
            let yb = expand(b, y, x, axes)?;
            let coef = div(b, yb, x)?;
            let m = mul(b, t, coef)?;
            reduce_sum(b, m, axes.clone()).map(Some)
        }
        ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. } => Ok(None),
    }
}

/// Transposes `reduce_sum`: the cotangent is broadcast back over the summed axes.
pub fn transpose(
    b: &mut Builder,
    op: &ReduceOp,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    match op {
        ReduceOp::Sum { axes } => for_linear(args, |_, ty| {
            let dims: Dims = (0..ty.rank()).filter(|d| !axes.contains(d)).collect();
            broadcast(b, ct, ty.shape.clone(), dims).map(Some)
        }),
        ReduceOp::Max { .. }
        | ReduceOp::Min { .. }
        | ReduceOp::Prod { .. }
        | ReduceOp::ArgMax { .. }
        | ReduceOp::ArgMin { .. } => Err(not_linear(op.name())),
    }
}
