//! Taylor rules for elementwise binary ops. `add`, `sub` and the kinks `max`, `min` (JAX's
//! balanced weights on ties) and `rem` apply their JVP to each coefficient; `mul` is a Cauchy
//! product and `div` its inverse recurrence; `pow` is `exp(y·log x)` through the series of
//! `log x` (whose coefficients need no logarithm, only divisions by x₀); `atan2` integrates the
//! series of its derivative `(x·y' − y·x')/(x² + y²)` with both operands first scaled by
//! `max(|x₀|, |y₀|)`, as its JVP rule does, so that the squares neither overflow nor underflow.

use super::{
    coefficientwise, constant_series, div_series, integrate, log_series, map_terms, mul_series,
    primal, recip_series, scale_opt, times, truncate, Series,
};
use crate::emit::{self, like, mul, unary};
use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::{Builder, DType, Op, Result, Value};

/// The series of `z = op(x, y)` given the primal result `z0`.
pub(crate) fn jet(b: &mut Builder, op: BinaryOp, xs: &[Series], z0: Value) -> Result<Series> {
    let (x, y) = (&xs[0], &xs[1]);
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Max | BinaryOp::Min | BinaryOp::Rem => {
            coefficientwise(b, &Op::Binary(op), xs, z0)
        }
        BinaryOp::Mul => mul_series(b, x, y, z0),
        BinaryOp::Div => div_series(b, x, y, z0),
        BinaryOp::Pow => {
            // z = exp(w) with w = y·log x; only w's coefficients of order ≥ 1 are needed.
            let l0 = unary(b, UnaryOp::Log, primal(x))?;
            let l = log_series(b, x, l0)?;
            let w = if super::is_constant(y) {
                // w_i = y₀·L_i: scale the sum once per order instead of every term.
                let y0 = primal(y);
                map_terms(b, &l, |b, v| mul(b, v, y0))?
            } else {
                let w0 = mul(b, primal(y), l0)?;
                mul_series(b, y, &l, w0)?
            };
            integrate(b, &w, z0, |_, z, m| Ok(z[m]))
        }
        BinaryOp::Atan2 => atan2(b, x, y, z0),
    }
}

/// The series of `atan2(x, y)`: the integral of `(y·x' − x·y')/(x² + y²)`.
fn atan2(b: &mut Builder, x: &[Option<Value>], y: &[Option<Value>], z0: Value) -> Result<Series> {
    let k = x.len() - 1;
    let (x0, y0) = (primal(x), primal(y));
    let (ax, ay) = (unary(b, UnaryOp::Abs, x0)?, unary(b, UnaryOp::Abs, y0)?);
    let m = emit::binary(b, BinaryOp::Max, ax, ay)?;
    let top = match b.ty(x0).dtype {
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    };
    let top = like(b, x0, top)?;
    let s = emit::binary(b, BinaryOp::Min, m, top)?;
    let u = map_terms(b, &truncate(x, k), |b, v| emit::div(b, v, s))?;
    let v = map_terms(b, &truncate(y, k), |b, w| emit::div(b, w, s))?;
    // With z' = N/D: D = u² + v² and N's derivative series built from u, v and their
    // derivative series (order m of u' is (m+1)·u_{m+1}).
    let (uk, vk) = (truncate(&u, k - 1), truncate(&v, k - 1));
    let uu0 = unary(b, UnaryOp::Square, primal(&uk))?;
    let vv0 = unary(b, UnaryOp::Square, primal(&vk))?;
    let uu = mul_series(b, &uk, &uk, uu0)?;
    let vv = mul_series(b, &vk, &vk, vv0)?;
    let d0 = emit::add(b, uu0, vv0)?;
    let d = super::add_terms(b, &uu, &vv, d0)?;
    let r0 = unary(b, UnaryOp::Reciprocal, d0)?;
    let r = recip_series(b, &d, r0)?;
    // g = r·(v·u' − u·v')/x' is not a series in general, so integrate z' directly: z_j =
    // (1/j)·z'_{j−1} with z' = r·(v·u' − u·v').
    let du: Series = (0..k)
        .map(|m| scale_opt(b, u[m + 1], (m + 1) as f64))
        .collect::<Result<_>>()?;
    let dv: Series = (0..k)
        .map(|m| scale_opt(b, v[m + 1], (m + 1) as f64))
        .collect::<Result<_>>()?;
    let mut z = constant_series(z0, k);
    let mut num: Series = Vec::with_capacity(k);
    for n in 0..k {
        let mut acc = None;
        for i in 0..=n {
            let p = times(b, vk[i], du[n - i])?;
            acc = emit::add_opt(b, acc, p)?;
            let q = times(b, uk[i], dv[n - i])?;
            acc = super::sub_opt(b, acc, q)?;
        }
        num.push(acc);
        let mut dz = None;
        for i in 0..=n {
            let p = times(b, num[i], r[n - i])?;
            dz = emit::add_opt(b, dz, p)?;
        }
        z[n + 1] = scale_opt(b, dz, 1.0 / (n + 1) as f64)?;
    }
    Ok(z)
}
