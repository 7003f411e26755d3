//! Taylor rules for comparisons, logic and `select`. Comparisons and logic produce bools, which
//! carry no series; `select` picks each coefficient where the primal predicate picks its branch.

use super::{coefficientwise, constant_series, Series};
use ferrax_ir::ops::CompareOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of a comparison (none) or of `select(p, a, b)`.
pub(crate) fn jet(b: &mut Builder, op: CompareOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge
        | CompareOp::And
        | CompareOp::Or
        | CompareOp::Not => Ok(constant_series(y0, xs[0].len() - 1)),
        CompareOp::Select => coefficientwise(b, &Op::Compare(op), xs, y0),
    }
}
