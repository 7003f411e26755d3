//! Taylor rules for shape ops: all are linear, so each coefficient goes through the same op
//! (pad and concatenate fill zeros in for operands without a series).

use super::{coefficientwise, Series};
use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of a shape op.
pub(crate) fn jet(b: &mut Builder, op: &ShapeOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        ShapeOp::BroadcastInDim { .. }
        | ShapeOp::Reshape { .. }
        | ShapeOp::Transpose { .. }
        | ShapeOp::Slice { .. }
        | ShapeOp::Pad { .. }
        | ShapeOp::Concatenate { .. }
        | ShapeOp::Rev { .. } => coefficientwise(b, &Op::Shape(op.clone()), xs, y0),
    }
}
