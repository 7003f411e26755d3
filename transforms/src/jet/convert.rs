//! Taylor rules for `convert` and `stop_gradient`. A conversion between float dtypes converts
//! each coefficient; conversions to or from integers and `stop_gradient` have zero series.

use super::{coefficientwise, Series};
use ferrax_ir::ops::ConvertOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of a conversion.
pub(crate) fn jet(b: &mut Builder, op: ConvertOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        ConvertOp::Convert(_) | ConvertOp::StopGradient => {
            coefficientwise(b, &Op::Convert(op), xs, y0)
        }
    }
}
