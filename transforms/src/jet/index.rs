//! Taylor rules for indexing ops: all are linear in their data operands (the indices are
//! primal integers), so each coefficient goes through the same op.

use super::{coefficientwise, Series};
use ferrax_ir::ops::IndexOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of an indexing op.
pub(crate) fn jet(b: &mut Builder, op: &IndexOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        IndexOp::Cumsum { .. }
        | IndexOp::DynamicSlice { .. }
        | IndexOp::DynamicUpdateSlice
        | IndexOp::Gather
        | IndexOp::ScatterAdd => coefficientwise(b, &Op::Index(op.clone()), xs, y0),
    }
}
