//! Rules for elementwise unary ops. Derivatives are written through the result where that is
//! cheaper (`exp`: y, `tanh`: 1 − y², `logistic`: y(1 − y)), so nested derivatives reuse the
//! primal values and CSE merges them.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{self, add_const, div, like, mul, neg, rsub, scale, unary};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{Builder, Result, Value};

/// The tangent of `y = op(x)` for the tangent `t` of `x`.
pub fn jvp(
    b: &mut Builder,
    op: UnaryOp,
    x: Value,
    t: Option<Value>,
    y: Value,
) -> Result<Option<Value>> {
    let Some(t) = t else { return Ok(None) };
    let sq = |b: &mut Builder, v: Value| unary(b, UnaryOp::Square, v);
    let coef = match op {
        UnaryOp::Neg => return neg(b, t).map(Some),
        UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => return Ok(None),
        UnaryOp::Abs => unary(b, UnaryOp::Sign, x)?,
        UnaryOp::Sqrt => {
            let half = like(b, y, 0.5)?;
            div(b, half, y)?
        }
        UnaryOp::Rsqrt => {
            let q = div(b, y, x)?;
            scale(b, q, -0.5)?
        }
        UnaryOp::Exp => y,
        UnaryOp::Exp2 => scale(b, y, std::f64::consts::LN_2)?,
        UnaryOp::Expm1 => add_const(b, y, 1.0)?,
        UnaryOp::Log => return div(b, t, x).map(Some),
        UnaryOp::Log1p => {
            let d = add_const(b, x, 1.0)?;
            return div(b, t, d).map(Some);
        }
        UnaryOp::Sin => unary(b, UnaryOp::Cos, x)?,
        UnaryOp::Cos => {
            let s = unary(b, UnaryOp::Sin, x)?;
            neg(b, s)?
        }
        UnaryOp::Tan => {
            let s = sq(b, y)?;
            add_const(b, s, 1.0)?
        }
        UnaryOp::Asin | UnaryOp::Acos => {
            let s = sq(b, x)?;
            let d = rsub(b, 1.0, s)?;
            let r = unary(b, UnaryOp::Rsqrt, d)?;
            if op == UnaryOp::Acos {
                neg(b, r)?
            } else {
                r
            }
        }
        UnaryOp::Atan => {
            let s = sq(b, x)?;
            let d = add_const(b, s, 1.0)?;
            return div(b, t, d).map(Some);
        }
        UnaryOp::Sinh => unary(b, UnaryOp::Cosh, x)?,
        UnaryOp::Cosh => unary(b, UnaryOp::Sinh, x)?,
        UnaryOp::Tanh => {
            let s = sq(b, y)?;
            rsub(b, 1.0, s)?
        }
        UnaryOp::Asinh => {
            let s = sq(b, x)?;
            let d = add_const(b, s, 1.0)?;
            unary(b, UnaryOp::Rsqrt, d)?
        }
        UnaryOp::Acosh => {
            let s = sq(b, x)?;
            let one = like(b, x, 1.0)?;
            let d = emit::sub(b, s, one)?;
            unary(b, UnaryOp::Rsqrt, d)?
        }
        UnaryOp::Atanh => {
            let s = sq(b, x)?;
            let d = rsub(b, 1.0, s)?;
            return div(b, t, d).map(Some);
        }
        UnaryOp::Logistic => {
            let c = rsub(b, 1.0, y)?;
            mul(b, y, c)?
        }
        UnaryOp::Erf => {
            let s = sq(b, x)?;
            let n = neg(b, s)?;
            let e = unary(b, UnaryOp::Exp, n)?;
            scale(b, e, 2.0 / std::f64::consts::PI.sqrt())?
        }
        UnaryOp::IntegerPow(n) => match n {
            0 => return Ok(None),
            1 => return Ok(Some(t)),
            2 => scale(b, x, 2.0)?,
            _ => {
                let p = unary(b, UnaryOp::IntegerPow(n - 1), x)?;
                scale(b, p, n as f64)?
            }
        },
        UnaryOp::Square => scale(b, x, 2.0)?,
        UnaryOp::Reciprocal => {
            let s = sq(b, y)?;
            neg(b, s)?
        }
    };
    mul(b, t, coef).map(Some)
}

/// Only `neg` is linear: its transpose is itself.
pub fn transpose(b: &mut Builder, op: UnaryOp, args: &[Operand], ct: Value) -> Result<Cotangents> {
    match op {
        UnaryOp::Neg => for_linear(args, |_, _| neg(b, ct).map(Some)),
        UnaryOp::Abs
        | UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Exp
        | UnaryOp::Exp2
        | UnaryOp::Expm1
        | UnaryOp::Log
        | UnaryOp::Log1p
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Tanh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh
        | UnaryOp::Logistic
        | UnaryOp::Erf
        | UnaryOp::IntegerPow(_)
        | UnaryOp::Square
        | UnaryOp::Reciprocal => Err(not_linear(op.name())),
    }
}
