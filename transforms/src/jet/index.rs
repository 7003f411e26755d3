//! Taylor rules for indexing ops. The indices are primal integers, so gathers, cumulative
//! sums, dynamic slices and the scatters that set or add are linear in their data operands and
//! each coefficient goes through the same op; `scatter_min`/`scatter_max` follow the primal's
//! choice (as their JVP does), which is again coefficient by coefficient. `scatter_mul`
//! multiplies the operand by products of updates, a nonlinear op with no rule yet.

use super::{coefficientwise, unsupported, Series};
use ferrax_ir::ops::{Combine, IndexOp};
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of an indexing op.
pub(crate) fn jet(b: &mut Builder, op: &IndexOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        IndexOp::Scatter {
            combine: Combine::Mul,
            ..
        } => Err(unsupported(
            "scatter_mul",
            "its series is a product of update series (no rule yet); use `x.at(i).set(x.get() * v)`-style \
             updates or nested jvp",
        )),
        IndexOp::Cumsum { .. }
        | IndexOp::DynamicSlice { .. }
        | IndexOp::DynamicUpdateSlice
        | IndexOp::Gather(_)
        | IndexOp::Scatter { .. } => coefficientwise(b, &Op::Index(op.clone()), xs, y0),
    }
}
