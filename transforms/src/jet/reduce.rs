//! Taylor rules for reductions. `reduce_sum` is linear and `reduce_max`/`reduce_min` spread
//! each coefficient over the positions attaining the primal extremum (as their JVP does), so
//! both apply their JVP to each coefficient; arg-reductions have zero series. `reduce_prod`
//! integrates `y'/y = Σ x'/x`: the sum over the axes of the coefficients of `log x` (which need
//! only divisions by x₀, so negative elements are fine; a zero element gives what IEEE
//! division gives, as the JVP's `y/x` does).

use super::{coefficientwise, integrate, log_series, map_terms, primal, Series};
use crate::emit::reduce_sum;
use ferrax_ir::ops::ReduceOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of a reduction given its primal result `y0`.
pub(crate) fn jet(b: &mut Builder, op: &ReduceOp, xs: &[Series], y0: Value) -> Result<Series> {
    match op {
        ReduceOp::Sum { .. }
        | ReduceOp::Max { .. }
        | ReduceOp::Min { .. }
        | ReduceOp::ArgMax { .. }
        | ReduceOp::ArgMin { .. } => coefficientwise(b, &Op::Reduce(op.clone()), xs, y0),
        ReduceOp::Prod { axes } => {
            let x = &xs[0];
            // Only the coefficients of log x are used, so its primal entry is x₀ itself.
            let l = log_series(b, x, primal(x))?;
            let mut w = map_terms(b, &l, |b, v| reduce_sum(b, v, axes.clone()))?;
            w[0] = Some(y0);
            integrate(b, &w, y0, |_, y, m| Ok(y[m]))
        }
    }
}
