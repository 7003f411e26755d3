//! Taylor rule for `dot_general`: bilinear, so the series of the result is the Cauchy product
//! of the operands' series with `dot_general` as the product of two coefficients.

use super::{cauchy_term, constant_series, Series};
use crate::emit::push1;
use ferrax_ir::ops::DotGeneral;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of `dot_general(a, b)` given its primal `y0`.
pub(crate) fn jet(b: &mut Builder, d: &DotGeneral, xs: &[Series], y0: Value) -> Result<Series> {
    let k = xs[0].len() - 1;
    let op = Op::Dot(d.clone());
    let mut y = constant_series(y0, k);
    for (n, yn) in y.iter_mut().enumerate().skip(1) {
        *yn = cauchy_term(b, &xs[0], &xs[1], n, &mut |b, l, r| {
            push1(b, op.clone(), &[l, r])
        })?;
    }
    Ok(y)
}
