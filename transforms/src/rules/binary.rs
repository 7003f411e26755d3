//! Rules for elementwise binary ops. `add` and `sub` are linear in both operands; `mul` and
//! `div` (numerator) are linear in one operand when the other is primal.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{self, add_opt, compare, div, like, mul, neg, select, unary};
use ferrax_ir::ops::{BinaryOp, CompareOp, UnaryOp};
use ferrax_ir::{Builder, DType, Result, Value};

/// `t * c` when the tangent is nonzero.
fn times(
    b: &mut Builder,
    t: Option<Value>,
    c: impl FnOnce(&mut Builder) -> Result<Value>,
) -> Result<Option<Value>> {
    match t {
        Some(t) => {
            let c = c(b)?;
            mul(b, t, c).map(Some)
        }
        None => Ok(None),
    }
}

/// JAX's balanced tie-breaking weight of `x` in `z = max(x, y)` or `min(x, y)`: 1 where `x`
/// alone attains `z`, ½ on ties, 0 elsewhere.
fn balanced(b: &mut Builder, x: Value, y: Value, z: Value) -> Result<Value> {
    let xz = compare(b, CompareOp::Eq, x, z)?;
    let yz = compare(b, CompareOp::Eq, y, z)?;
    let (half, one, zero) = (like(b, z, 0.5)?, like(b, z, 1.0)?, like(b, z, 0.0)?);
    let w = select(b, yz, half, one)?;
    select(b, xz, w, zero)
}

/// The pieces of atan2's derivatives, `(s, u, v, d)`: the operands scaled by
/// s = max(|x|, |y|), u = x/s and v = y/s, and d = u² + v², which lies in [1, 2]. Then
/// y/(x² + y²) = (v/d)/s and x/(x² + y²) = (u/d)/s, with no overflow of x² + y² (|x| above
/// ~1e154 in f64) and no underflow. s is capped at the dtype's largest finite value, so
/// infinite operands give what the unscaled formula gives (0 or NaN), and zeros and NaNs give
/// NaN as it does.
fn atan2_parts(b: &mut Builder, x: Value, y: Value) -> Result<(Value, Value, Value, Value)> {
    let (ax, ay) = (unary(b, UnaryOp::Abs, x)?, unary(b, UnaryOp::Abs, y)?);
    let m = emit::binary(b, BinaryOp::Max, ax, ay)?;
    let top = match b.ty(x).dtype {
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    };
    let top = like(b, x, top)?;
    let s = emit::binary(b, BinaryOp::Min, m, top)?;
    let (u, v) = (div(b, x, s)?, div(b, y, s)?);
    let (uu, vv) = (unary(b, UnaryOp::Square, u)?, unary(b, UnaryOp::Square, v)?);
    let d = emit::add(b, uu, vv)?;
    Ok((s, u, v, d))
}

/// The tangent of `z = op(x, y)`.
pub fn jvp(
    b: &mut Builder,
    op: BinaryOp,
    xs: &[Value],
    ts: &[Option<Value>],
    z: Value,
) -> Result<Option<Value>> {
    let (x, y, tx, ty) = (xs[0], xs[1], ts[0], ts[1]);
    match op {
        BinaryOp::Add => add_opt(b, tx, ty),
        BinaryOp::Sub => match (tx, ty) {
            (Some(a), Some(c)) => emit::sub(b, a, c).map(Some),
            (a, None) => Ok(a),
            (None, Some(c)) => neg(b, c).map(Some),
        },
        BinaryOp::Mul => {
            let a = times(b, tx, |_| Ok(y))?;
            let c = times(b, ty, |_| Ok(x))?;
            add_opt(b, a, c)
        }
        BinaryOp::Div => {
            let a = match tx {
                Some(t) => Some(div(b, t, y)?),
                None => None,
            };
            // ∂z/∂y = −z/y, formed as −z·(1/y): the reciprocal does not wait for z, so the
            // primal chain is one division deep instead of two (z/y waits for z = x/y). When
            // the numerator's cotangent is 1, its 1/y is the same value and is shared.
            let c = times(b, ty, |b| {
                let one = like(b, y, 1.0)?;
                let r = div(b, one, y)?;
                let q = mul(b, z, r)?;
                neg(b, q)
            })?;
            add_opt(b, a, c)
        }
        BinaryOp::Pow => {
            let a = times(b, tx, |b| {
                let one = like(b, y, 1.0)?;
                let e = emit::sub(b, y, one)?;
                let p = emit::binary(b, BinaryOp::Pow, x, e)?;
                mul(b, y, p)
            })?;
            let c = times(b, ty, |b| {
                // log(x) with x = 0 replaced by 1, so 0^y contributes 0 rather than NaN (JAX).
                let zero = like(b, x, 0.0)?;
                let one = like(b, x, 1.0)?;
                let is0 = compare(b, CompareOp::Eq, x, zero)?;
                let safe = select(b, is0, one, x)?;
                let l = unary(b, UnaryOp::Log, safe)?;
                mul(b, z, l)
            })?;
            add_opt(b, a, c)
        }
        BinaryOp::Max | BinaryOp::Min => {
            let a = times(b, tx, |b| balanced(b, x, y, z))?;
            let c = times(b, ty, |b| balanced(b, y, x, z))?;
            add_opt(b, a, c)
        }
        BinaryOp::Atan2 => {
            // ∂z/∂x = y/(x² + y²) and ∂z/∂y = −x/(x² + y²), scaled (see `atan2_parts`); the
            // builder's hash-consing shares the parts between the two tangents.
            let a = times(b, tx, |b| {
                let (s, _, v, d) = atan2_parts(b, x, y)?;
                let q = div(b, v, d)?;
                div(b, q, s)
            })?;
            let c = times(b, ty, |b| {
                let (s, u, _, d) = atan2_parts(b, x, y)?;
                let q = div(b, u, d)?;
                let r = div(b, q, s)?;
                neg(b, r)
            })?;
            add_opt(b, a, c)
        }
        BinaryOp::Rem => {
            // rem(x, y) = x − y·trunc(x / y); trunc(x / y) = round((x − z) / y) exactly.
            let c = times(b, ty, |b| {
                let d = emit::sub(b, x, z)?;
                let q = div(b, d, y)?;
                let r = unary(b, UnaryOp::Round, q)?;
                neg(b, r)
            })?;
            add_opt(b, tx, c)
        }
    }
}

/// Transposes `add`, `sub`, `mul` by a primal and `div` by a primal.
pub fn transpose(b: &mut Builder, op: BinaryOp, args: &[Operand], ct: Value) -> Result<Cotangents> {
    match op {
        BinaryOp::Add => for_linear(args, |_, _| Ok(Some(ct))),
        BinaryOp::Sub => for_linear(args, |k, _| {
            if k == 0 {
                Ok(Some(ct))
            } else {
                neg(b, ct).map(Some)
            }
        }),
        BinaryOp::Mul => {
            let (x, y) = (args[0].primal(), args[1].primal());
            match (x, y) {
                (None, Some(y)) => Ok([mul(b, ct, y).map(Some)?, None].into_iter().collect()),
                (Some(x), None) => Ok([None, mul(b, x, ct).map(Some)?].into_iter().collect()),
                _ => Err(not_linear("mul")),
            }
        }
        BinaryOp::Div => match (&args[0], args[1].primal()) {
            (Operand::Linear(_), Some(y)) => {
                Ok([div(b, ct, y).map(Some)?, None].into_iter().collect())
            }
            _ => Err(not_linear("div")),
        },
        BinaryOp::Pow | BinaryOp::Max | BinaryOp::Min | BinaryOp::Atan2 | BinaryOp::Rem => {
            Err(not_linear(op.name()))
        }
    }
}
