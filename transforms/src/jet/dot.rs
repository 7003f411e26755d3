//! Taylor rules for bilinear ops (`dot_general`, `conv_general_dilated`): the series of the
//! result is the Cauchy product of the operands' series, with the op itself as the product of
//! two coefficients.

use super::{cauchy_term, constant_series, Series};
use crate::emit::push1;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of a bilinear `op(a, b)` given its primal `y0`.
pub(crate) fn bilinear(b: &mut Builder, op: &Op, xs: &[Series], y0: Value) -> Result<Series> {
    let k = xs[0].len() - 1;
    let mut y = constant_series(y0, k);
    for (n, yn) in y.iter_mut().enumerate().skip(1) {
        *yn = cauchy_term(b, &xs[0], &xs[1], n, &mut |b, l, r| {
            push1(b, op.clone(), &[l, r])
        })?;
    }
    Ok(y)
}
