//! Taylor rules for elementwise unary ops. Piecewise-constant ops have zero series and `neg`
//! and `abs` (a kink: it follows the sign of the primal) apply their JVP to each coefficient.
//! Every other function uses the recurrence of its differential equation `y' = g·x'`
//! ([`integrate`]), with `g` written through the result where the JVP rule does (`exp`: y,
//! `tanh`: 1 − y², `logistic`: y − y²) so that each order costs O(k) products; functions
//! whose derivative has no such form (`asin`, `atan`, `erf`, ...) first build the series of
//! their derivative from the operand's series.

use super::{
    coefficientwise, constant_series, exp_series, integrate, integrate_known, log_series,
    map_terms, mul_series, powf_series, primal, recip_series, scale_opt, square_term, sub_opt,
    truncate, Series,
};
use crate::emit::{add_const, neg, rsub, scale, unary};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{Builder, Op, Result, Value};

/// The series of `x²` (primal included).
fn square(b: &mut Builder, x: &[Option<Value>]) -> Result<Series> {
    let p = unary(b, UnaryOp::Square, primal(x))?;
    mul_series(b, x, x, p)
}

/// The series `c + sign·s` for a number `c` (primal included).
fn affine(b: &mut Builder, s: &[Option<Value>], c: f64, sign: f64) -> Result<Series> {
    let mut out = map_terms(b, s, |b, v| if sign < 0.0 { neg(b, v) } else { Ok(v) })?;
    out[0] = Some(add_const(b, primal(&out), c)?);
    Ok(out)
}

/// The series of `x^n` for an integer `n ≥ 1` by binary powering with Cauchy products (exact,
/// and defined at x₀ = 0, unlike the general power recurrence).
fn powi(b: &mut Builder, x: &[Option<Value>], n: u32) -> Result<Series> {
    let mut result: Option<Series> = None;
    let mut base = x.to_vec();
    let mut e = n;
    loop {
        if e & 1 == 1 {
            result = Some(match result {
                None => base.clone(),
                Some(r) => {
                    let p = crate::emit::mul(b, primal(&r), primal(&base))?;
                    mul_series(b, &r, &base, p)?
                }
            });
        }
        e >>= 1;
        if e == 0 {
            break;
        }
        base = square(b, &base)?;
    }
    Ok(result.expect("n ≥ 1"))
}

/// The series of `y = op(x)` given the primal result `y0`.
pub(crate) fn jet(b: &mut Builder, op: UnaryOp, x: &Series, y0: Value) -> Result<Series> {
    let k = x.len() - 1;
    let x0 = primal(x);
    // The Taylor series of g = 1/√(c + σx²), the derivative of asin, acosh and asinh.
    let rsqrt_of = |b: &mut Builder, c: f64, sign: f64| -> Result<Series> {
        let s = square(b, &truncate(x, k - 1))?;
        let u = affine(b, &s, c, sign)?;
        let r0 = unary(b, UnaryOp::Rsqrt, primal(&u))?;
        powf_series(b, &u, -0.5, r0)
    };
    // The Taylor series of g = 1/(c + σx²), the derivative of atan and atanh.
    let recip_of = |b: &mut Builder, c: f64, sign: f64| -> Result<Series> {
        let s = square(b, &truncate(x, k - 1))?;
        let u = affine(b, &s, c, sign)?;
        let r0 = unary(b, UnaryOp::Reciprocal, primal(&u))?;
        recip_series(b, &u, r0)
    };
    match op {
        UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round => coefficientwise(b, &Op::Unary(op), std::slice::from_ref(x), y0),
        UnaryOp::Sqrt => {
            // y² = x: y_j = (x_j − Σ_{0<i<j} y_i·y_{j−i}) / (2 y_0).
            let two_y0 = scale(b, y0, 2.0)?;
            let mut y = constant_series(y0, k);
            for j in 1..=k {
                let mut inner = y.clone();
                inner[0] = None;
                let s = square_term(b, &inner[..=j], j)?;
                let num = sub_opt(b, x[j], s)?;
                y[j] = super::div_opt(b, num, two_y0)?;
            }
            Ok(y)
        }
        UnaryOp::Rsqrt => powf_series(b, x, -0.5, y0),
        UnaryOp::Exp => exp_series(b, x, y0),
        UnaryOp::Exp2 => {
            let u = map_terms(b, x, |b, v| scale(b, v, std::f64::consts::LN_2))?;
            exp_series(b, &u, y0)
        }
        UnaryOp::Expm1 => integrate(b, x, y0, |b, y, m| {
            if m == 0 {
                add_const(b, y[0].expect("primal"), 1.0).map(Some)
            } else {
                Ok(y[m])
            }
        }),
        UnaryOp::Log => log_series(b, x, y0),
        UnaryOp::Log1p => {
            let mut u = x.clone();
            u[0] = Some(add_const(b, x0, 1.0)?);
            log_series(b, &u, y0)
        }
        UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Sinh | UnaryOp::Cosh => {
            let (s0, c0, sign) = match op {
                UnaryOp::Sin => (y0, unary(b, UnaryOp::Cos, x0)?, -1.0),
                UnaryOp::Cos => (unary(b, UnaryOp::Sin, x0)?, y0, -1.0),
                UnaryOp::Sinh => (y0, unary(b, UnaryOp::Cosh, x0)?, 1.0),
                _ => (unary(b, UnaryOp::Sinh, x0)?, y0, 1.0),
            };
            let (s, c) = sin_cos(b, x, s0, c0, sign)?;
            Ok(if matches!(op, UnaryOp::Sin | UnaryOp::Sinh) {
                s
            } else {
                c
            })
        }
        UnaryOp::Tan | UnaryOp::Tanh => {
            // y' = (1 ± y²)·x'.
            let sign = if op == UnaryOp::Tan { 1.0 } else { -1.0 };
            integrate(b, x, y0, |b, y, m| {
                if m == 0 {
                    let s = unary(b, UnaryOp::Square, y[0].expect("primal"))?;
                    let s = if sign < 0.0 {
                        rsub(b, 1.0, s)?
                    } else {
                        add_const(b, s, 1.0)?
                    };
                    return Ok(Some(s));
                }
                let s = square_term(b, y, m)?;
                scale_opt(b, s, sign)
            })
        }
        UnaryOp::Logistic => integrate(b, x, y0, |b, y, m| {
            // y' = (y − y²)·x'.
            if m == 0 {
                let c = rsub(b, 1.0, y[0].expect("primal"))?;
                return crate::emit::mul(b, y[0].expect("primal"), c).map(Some);
            }
            let s = square_term(b, y, m)?;
            sub_opt(b, y[m], s)
        }),
        UnaryOp::Asin | UnaryOp::Acos => {
            let mut g = rsqrt_of(b, 1.0, -1.0)?;
            if op == UnaryOp::Acos {
                g = map_terms(b, &g, neg)?;
            }
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::Atan => {
            let g = recip_of(b, 1.0, 1.0)?;
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::Asinh => {
            let g = rsqrt_of(b, 1.0, 1.0)?;
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::Acosh => {
            let g = rsqrt_of(b, -1.0, 1.0)?;
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::Atanh => {
            let g = recip_of(b, 1.0, -1.0)?;
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::Erf => {
            // erf' = (2/√π)·exp(−x²).
            let s = square(b, &truncate(x, k - 1))?;
            let u = map_terms(b, &s, neg)?;
            let e0 = unary(b, UnaryOp::Exp, primal(&u))?;
            let e = exp_series(b, &u, e0)?;
            let c = 2.0 / std::f64::consts::PI.sqrt();
            let g = map_terms(b, &e, |b, v| scale(b, v, c))?;
            integrate_known(b, x, y0, &g)
        }
        UnaryOp::IntegerPow(n) => {
            if n == 0 {
                return Ok(constant_series(y0, k));
            }
            let mut p = powi(b, x, n.unsigned_abs())?;
            if n < 0 {
                p = recip_series(b, &p, y0)?;
            }
            p[0] = Some(y0);
            Ok(p)
        }
        UnaryOp::Square => {
            let mut y = square(b, x)?;
            y[0] = Some(y0);
            Ok(y)
        }
        UnaryOp::Reciprocal => recip_series(b, x, y0),
    }
}

/// The series of sin and cos (`sign` = −1) or sinh and cosh (`sign` = +1) of `x`, given both
/// primals: `s' = c·x'`, `c' = sign·s·x'`.
fn sin_cos(
    b: &mut Builder,
    x: &[Option<Value>],
    s0: Value,
    c0: Value,
    sign: f64,
) -> Result<(Series, Series)> {
    let k = x.len() - 1;
    let mut s = constant_series(s0, k);
    let mut c = constant_series(c0, k);
    for j in 1..=k {
        let (mut sa, mut ca) = (None, None);
        for i in 1..=j {
            let xi = scale_opt(b, x[i], i as f64 / j as f64)?;
            let ps = super::times(b, xi, c[j - i])?;
            sa = crate::emit::add_opt(b, sa, ps)?;
            let pc = super::times(b, xi, s[j - i])?;
            ca = crate::emit::add_opt(b, ca, pc)?;
        }
        s[j] = sa;
        c[j] = scale_opt(b, ca, sign)?;
    }
    Ok((s, c))
}
