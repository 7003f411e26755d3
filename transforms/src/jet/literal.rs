//! Taylor rules for constants and `iota`: their series are constant.

use super::{constant_series, Series};
use ferrax_ir::ops::LiteralOp;
use ferrax_ir::Value;

/// A literal's series: its value and zero coefficients.
pub(crate) fn jet(op: &LiteralOp, y0: Value, k: usize) -> Series {
    match op {
        LiteralOp::Const(_) | LiteralOp::Iota { .. } => constant_series(y0, k),
    }
}
