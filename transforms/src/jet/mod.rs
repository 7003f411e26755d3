//! Taylor mode (`jet`): pushes a truncated power series through a graph, one rule per op
//! family (mirroring [`crate::rules`]), at O(k²) cost for k orders.
//!
//! **Convention.** Inside this module a series is held as *Taylor coefficients*: a value
//! `x(t) = x₀ + x₁t + x₂t² + … + x_k t^k`, where `x_j = x⁽ʲ⁾/j!`. The graph-level entry point
//! [`jet_graph`] and the user-facing [`api::jet`] take and return *derivative-scaled*
//! coefficients, as `jax.experimental.jet` does: the j-th input coefficient is the j-th
//! derivative of the input path at t = 0, and the j-th output coefficient the j-th derivative of
//! the output path, so that a path `x(t) = x₀ + t·v` (first coefficient `v`, the rest zero)
//! yields the directional derivatives of every order. [`api::series_to_taylor`] and
//! [`api::taylor_to_series`] convert between the two scalings.
//!
//! **Rules.** Piecewise-constant ops have zero series; ops whose JVP is linear in the tangents
//! with coefficients that are piecewise constant in the primal (linear ops, and the kinks abs,
//! max/min, select, reduce_max, rem) apply their JVP rule to each coefficient, so kinks follow
//! the primal's branch; bilinear ops (mul, dot_general) use Cauchy products; the remaining
//! elementwise functions use the recurrences of their differential equations
//! (`y' = g(x, y)·x'` gives `j·y_j = Σ i·x_i·g_{j−i}`), with sin/cos and sinh/cosh computed
//! jointly. A division by a zero leading coefficient gives what IEEE arithmetic gives, like
//! the primal. Control flow carries series through the taken branch or the loop carries;
//! `custom_jvp` functions compose the jet of their rule order by order (`control.rs`).
//!
//! A series is a `Vec<Option<Value>>` of length k + 1: entry 0 is the primal (always `Some`),
//! entry j the coefficient of `t^j`, `None` for a symbolic zero. Values that are not floats
//! carry no coefficients.

pub mod api;
mod binary;
mod compare;
mod control;
mod convert;
mod dot;
mod index;
pub(crate) mod laplace;
mod literal;
mod reduce;
mod shape;
mod unary;

use crate::emit::{self, build_graph, finish, like, mul, or_zeros, push, scale};
use crate::jvp::check_explicit;
use ferrax_ir::{Builder, Graph, Op, Result, Type, Value};
use smallvec::SmallVec;

/// Taylor coefficients of one value: entry 0 is the primal, entry j the coefficient of t^j
/// (`None`: zero).
pub(crate) type Series = Vec<Option<Value>>;

/// The primal of a series.
pub(crate) fn primal(s: &[Option<Value>]) -> Value {
    s[0].expect("a series always holds its primal")
}

/// A series with primal `p` and zero coefficients up to order `k`.
pub(crate) fn constant_series(p: Value, k: usize) -> Series {
    let mut s = vec![None; k + 1];
    s[0] = Some(p);
    s
}

/// Whether every coefficient (order ≥ 1) of `s` is zero.
pub(crate) fn is_constant(s: &[Option<Value>]) -> bool {
    s[1..].iter().all(Option::is_none)
}

/// `a · c` when both are nonzero.
pub(crate) fn times(b: &mut Builder, a: Option<Value>, c: Option<Value>) -> Result<Option<Value>> {
    match (a, c) {
        (Some(a), Some(c)) => mul(b, a, c).map(Some),
        _ => Ok(None),
    }
}

/// `v · c` for a number `c`, zero staying zero.
pub(crate) fn scale_opt(b: &mut Builder, v: Option<Value>, c: f64) -> Result<Option<Value>> {
    match v {
        Some(v) if c == 1.0 => Ok(Some(v)),
        Some(v) => scale(b, v, c).map(Some),
        None => Ok(None),
    }
}

/// `v / d`, zero staying zero.
pub(crate) fn div_opt(b: &mut Builder, v: Option<Value>, d: Value) -> Result<Option<Value>> {
    match v {
        Some(v) => emit::div(b, v, d).map(Some),
        None => Ok(None),
    }
}

/// `a − c` of optional values.
pub(crate) fn sub_opt(
    b: &mut Builder,
    a: Option<Value>,
    c: Option<Value>,
) -> Result<Option<Value>> {
    match (a, c) {
        (Some(a), Some(c)) => emit::sub(b, a, c).map(Some),
        (a, None) => Ok(a),
        (None, Some(c)) => emit::neg(b, c).map(Some),
    }
}

/// The coefficient of `t^n` in the product `a · c`, with `op` as the product of two
/// coefficients.
pub(crate) fn cauchy_term(
    b: &mut Builder,
    a: &[Option<Value>],
    c: &[Option<Value>],
    n: usize,
    op: &mut dyn FnMut(&mut Builder, Value, Value) -> Result<Value>,
) -> Result<Option<Value>> {
    let mut acc = None;
    for i in 0..=n {
        if let (Some(x), Some(y)) = (a[i], c[n - i]) {
            let p = op(b, x, y)?;
            acc = emit::add_opt(b, acc, Some(p))?;
        }
    }
    Ok(acc)
}

/// The coefficient of `t^n` in `a²`, using the symmetry of the Cauchy product (half the
/// products, then one doubling, plus the middle square when `n` is even).
pub(crate) fn square_term(b: &mut Builder, a: &[Option<Value>], n: usize) -> Result<Option<Value>> {
    let mut pairs = None;
    let mut i = 0;
    while 2 * i < n {
        let p = times(b, a[i], a[n - i])?;
        pairs = emit::add_opt(b, pairs, p)?;
        i += 1;
    }
    let pairs = scale_opt(b, pairs, 2.0)?;
    let mid = match n.is_multiple_of(2).then(|| a[n / 2]).flatten() {
        Some(m) => Some(emit::unary(b, ferrax_ir::ops::UnaryOp::Square, m)?),
        None => None,
    };
    emit::add_opt(b, pairs, mid)
}

/// The product of two series (elementwise `mul`); `y0` is the primal product.
pub(crate) fn mul_series(
    b: &mut Builder,
    a: &[Option<Value>],
    c: &[Option<Value>],
    y0: Value,
) -> Result<Series> {
    let k = a.len() - 1;
    let mut y = constant_series(y0, k);
    let same = a == c;
    for (n, yn) in y.iter_mut().enumerate().skip(1) {
        *yn = if same {
            square_term(b, a, n)?
        } else {
            cauchy_term(b, a, c, n, &mut |b, x, z| mul(b, x, z))?
        };
    }
    Ok(y)
}

/// The quotient series `q = a / c`; `q0` is the primal quotient:
/// `q_n = (a_n − Σ_{i<n} q_i·c_{n−i}) / c_0`.
pub(crate) fn div_series(
    b: &mut Builder,
    a: &[Option<Value>],
    c: &[Option<Value>],
    q0: Value,
) -> Result<Series> {
    let k = a.len() - 1;
    let c0 = primal(c);
    let mut q = constant_series(q0, k);
    for n in 1..=k {
        let mut acc = None;
        for i in 0..n {
            let p = times(b, q[i], c[n - i])?;
            acc = emit::add_opt(b, acc, p)?;
        }
        let num = sub_opt(b, a[n], acc)?;
        q[n] = div_opt(b, num, c0)?;
    }
    Ok(q)
}

/// The series of `y` with `y' = g·x'`, given `y0` and a function producing `g_m` from
/// `y_0..=y_m` (and the builder): `y_j = (1/j) Σ_{i=1..j} i·x_i·g_{j−i}`. The coefficients of
/// `g` are computed lazily, order by order, so `g` may depend on `y` (as `1 − y²` for tanh).
pub(crate) fn integrate(
    b: &mut Builder,
    x: &[Option<Value>],
    y0: Value,
    mut g: impl FnMut(&mut Builder, &[Option<Value>], usize) -> Result<Option<Value>>,
) -> Result<Series> {
    let k = x.len() - 1;
    let mut y = constant_series(y0, k);
    let mut gs: Vec<Option<Value>> = Vec::with_capacity(k);
    for j in 1..=k {
        gs.push(g(b, &y[..j], j - 1)?);
        let mut acc = None;
        for i in 1..=j {
            let xi = scale_opt(b, x[i], i as f64)?;
            let p = times(b, xi, gs[j - i])?;
            acc = emit::add_opt(b, acc, p)?;
        }
        y[j] = scale_opt(b, acc, 1.0 / j as f64)?;
    }
    Ok(y)
}

/// `integrate` with a `g` series known in advance (orders `0..k`).
pub(crate) fn integrate_known(
    b: &mut Builder,
    x: &[Option<Value>],
    y0: Value,
    g: &[Option<Value>],
) -> Result<Series> {
    integrate(b, x, y0, |_, _, m| Ok(g[m]))
}

/// The series of `exp(x)` given its primal `y0`.
pub(crate) fn exp_series(b: &mut Builder, x: &[Option<Value>], y0: Value) -> Result<Series> {
    integrate(b, x, y0, |_, y, m| Ok(y[m]))
}

/// The coefficients of `log(x)` (order ≥ 1; the primal entry is `y0`):
/// `y_j = (x_j − (1/j) Σ_{0<i<j} i·y_i·x_{j−i}) / x_0`.
pub(crate) fn log_series(b: &mut Builder, x: &[Option<Value>], y0: Value) -> Result<Series> {
    let k = x.len() - 1;
    let x0 = primal(x);
    let mut y = constant_series(y0, k);
    for j in 1..=k {
        let mut acc = None;
        for i in 1..j {
            let yi = scale_opt(b, y[i], i as f64 / j as f64)?;
            let p = times(b, yi, x[j - i])?;
            acc = emit::add_opt(b, acc, p)?;
        }
        let num = sub_opt(b, x[j], acc)?;
        y[j] = div_opt(b, num, x0)?;
    }
    Ok(y)
}

/// The series of `x^r` for a number `r`, given its primal `y0`:
/// `y_j = (1/(j·x_0)) Σ_{i<j} (r(j−i) − i)·x_{j−i}·y_i`.
pub(crate) fn powf_series(
    b: &mut Builder,
    x: &[Option<Value>],
    r: f64,
    y0: Value,
) -> Result<Series> {
    let k = x.len() - 1;
    let x0 = primal(x);
    let mut y = constant_series(y0, k);
    for j in 1..=k {
        let mut acc = None;
        for i in 0..j {
            let c = (r * (j - i) as f64 - i as f64) / j as f64;
            if c == 0.0 {
                continue;
            }
            let xi = scale_opt(b, x[j - i], c)?;
            let p = times(b, xi, y[i])?;
            acc = emit::add_opt(b, acc, p)?;
        }
        y[j] = div_opt(b, acc, x0)?;
    }
    Ok(y)
}

/// The series of `1/c` given its primal `q0`.
pub(crate) fn recip_series(b: &mut Builder, c: &[Option<Value>], q0: Value) -> Result<Series> {
    let one = like(b, q0, 1.0)?;
    let a = constant_series(one, c.len() - 1);
    div_series(b, &a, c, q0)
}

/// The series truncated to order `k`.
pub(crate) fn truncate(s: &[Option<Value>], k: usize) -> Series {
    s[..=k].to_vec()
}

/// The series with every term (primal included) passed through `f`.
pub(crate) fn map_terms(
    b: &mut Builder,
    s: &[Option<Value>],
    mut f: impl FnMut(&mut Builder, Value) -> Result<Value>,
) -> Result<Series> {
    s.iter().map(|t| t.map(|v| f(b, v)).transpose()).collect()
}

/// Applies the JVP rule of a single-result `op` to each order of coefficients: exact for ops
/// whose JVP is linear in the tangents with coefficients that are piecewise constant in the
/// primals (linear ops, kinks, selects), which therefore follow the primal's branch.
pub(crate) fn coefficientwise(
    b: &mut Builder,
    op: &Op,
    xs: &[Series],
    y0: Value,
) -> Result<Series> {
    let k = xs[0].len() - 1;
    let prim: SmallVec<[Value; 4]> = xs.iter().map(|s| primal(s)).collect();
    let mut y = constant_series(y0, k);
    for (j, yj) in y.iter_mut().enumerate().skip(1) {
        let ts: SmallVec<[Option<Value>; 4]> = xs.iter().map(|s| s[j]).collect();
        *yj = crate::rules::jvp(b, op, &prim, &ts, y0)?;
    }
    Ok(y)
}

/// The error for an op that has no Taylor rule.
pub(crate) fn unsupported(name: &str, why: &str) -> ferrax_ir::Error {
    ferrax_ir::Error::new(
        ferrax_ir::ErrorKind::Transform,
        format!("jet: `{name}` is not supported: {why}"),
    )
}

/// Emits `g` into `b` with each parameter bound to a series of order `k` (Taylor coefficients)
/// and returns the series of its outputs.
pub(crate) fn jet_into(
    b: &mut Builder,
    g: &Graph,
    inputs: &[Series],
    k: usize,
) -> Result<Vec<Series>> {
    let mut env: Vec<Option<Series>> = vec![None; g.num_values()];
    for (&p, s) in g.params().iter().zip(inputs) {
        let mut s = s.clone();
        s.resize(k + 1, None);
        if !g.ty(p).dtype.is_float() {
            s[1..].iter_mut().for_each(|t| *t = None);
        }
        env[p.index()] = Some(s);
    }
    for (_, inst) in g.insts() {
        let xs: Vec<Series> = inst
            .args
            .iter()
            .map(|&a| env[a.index()].clone().expect("verified graph"))
            .collect();
        if let Op::Control(c) = &inst.op {
            let ys = control::jet(b, c, &xs, k)?;
            for (&r, s) in inst.results.iter().zip(ys) {
                env[r.index()] = Some(s);
            }
            continue;
        }
        let prim: SmallVec<[Value; 4]> = xs.iter().map(|s| primal(s)).collect();
        let ys = push(b, inst.op.clone(), &prim)?;
        let y0 = ys[0];
        let s = if xs.iter().all(|s| is_constant(s)) || !b.ty(y0).dtype.is_float() {
            constant_series(y0, k)
        } else {
            match &inst.op {
                Op::Unary(u) => unary::jet(b, *u, &xs[0], y0)?,
                Op::Binary(o) => binary::jet(b, *o, &xs, y0)?,
                Op::Compare(c) => compare::jet(b, *c, &xs, y0)?,
                Op::Convert(c) => convert::jet(b, *c, &xs, y0)?,
                Op::Literal(l) => literal::jet(l, y0, k),
                Op::Shape(s) => shape::jet(b, s, &xs, y0)?,
                Op::Reduce(r) => reduce::jet(b, r, &xs, y0)?,
                Op::Dot(_) | Op::Conv(_) => dot::bilinear(b, &inst.op, &xs, y0)?,
                Op::Index(i) => index::jet(b, i, &xs, y0)?,
                // Windowed sums are linear; max/min and the select ops follow the primal's
                // choice of element, as their JVPs do.
                Op::Window(_) => coefficientwise(b, &inst.op, &xs, y0)?,
                Op::Control(_) => unreachable!("control ops are handled above"),
            }
        };
        env[inst.results[0].index()] = Some(s);
    }
    Ok(g.outputs()
        .iter()
        .map(|&o| env[o.index()].clone().expect("verified graph"))
        .collect())
}

/// The highest order the transforms accept: 170! is the largest factorial an f64 holds, and
/// the derivative-scaled interfaces multiply by j! (for f32 values, j! overflows beyond order
/// 34, so their derivative-scaled coefficients of higher orders are infinite or NaN).
pub const MAX_ORDER: usize = 170;

/// Checks that an order `k` is at most [`MAX_ORDER`].
pub(crate) fn check_order(k: usize, name: &str) -> Result<()> {
    if k > MAX_ORDER {
        ferrax_ir::bail!(
            Transform,
            "{name}: order {k} is above the highest supported order {MAX_ORDER}"
        );
    }
    Ok(())
}

/// `n!` as a float.
pub(crate) fn factorial(n: usize) -> f64 {
    (1..=n).map(|i| i as f64).product()
}

/// Taylor-coefficient series of an input from derivative-scaled coefficients (ignored for an
/// integer or bool input, whose series is constant).
pub(crate) fn from_derivatives(b: &mut Builder, p: Value, ds: &[Option<Value>]) -> Result<Series> {
    if !b.ty(p).dtype.is_float() {
        return Ok(constant_series(p, ds.len()));
    }
    let mut s = vec![Some(p)];
    for (j, d) in ds.iter().enumerate() {
        s.push(scale_opt(b, *d, 1.0 / factorial(j + 1))?);
    }
    Ok(s)
}

/// Derivative-scaled coefficients (orders 1..=k, zeros filled in) of a Taylor series.
pub(crate) fn to_derivatives(b: &mut Builder, s: &[Option<Value>]) -> Result<Vec<Value>> {
    let ty = b.ty(primal(s)).clone();
    let mut out = Vec::with_capacity(s.len() - 1);
    for (j, t) in s.iter().enumerate().skip(1) {
        let d = scale_opt(b, *t, factorial(j))?;
        out.push(or_zeros(b, d, &ty)?);
    }
    Ok(out)
}

/// The jet of `g` at order `k` as a graph. Parameters: `[primals.., coefficients..,
/// captures..]`, where the coefficients are, argument by argument, the `k` derivative-scaled
/// coefficients of each of the first `n_explicit` parameters (with that parameter's type;
/// ignored for integer or bool parameters). Outputs: `[outputs.., coefficients..]`, output by
/// output, `k` derivative-scaled coefficients each (zeros for integer or bool outputs).
/// Parameters from `n_explicit` on are captures: passed through with zero series.
///
/// Errors name the op for ops without a Taylor rule (`taped_while`, `custom_lin` and
/// `custom_vjp` calls, which come from reverse mode or have no forward-mode rule).
pub fn jet_graph(g: &Graph, n_explicit: usize, k: usize) -> Result<Graph> {
    check_explicit(g, n_explicit, "jet")?;
    check_order(k, "jet")?;
    let n = n_explicit;
    let tys = g.param_types();
    let mut param_tys: Vec<Type> = tys[..n].to_vec();
    for t in &tys[..n] {
        param_tys.extend(std::iter::repeat_n(t.clone(), k));
    }
    param_tys.extend_from_slice(&tys[n..]);
    let out = build_graph(&param_tys, |b, ps| {
        let mut inputs = Vec::with_capacity(tys.len());
        for i in 0..n {
            let ds: Vec<Option<Value>> = ps[n + i * k..n + (i + 1) * k]
                .iter()
                .map(|&v| Some(v))
                .collect();
            inputs.push(from_derivatives(b, ps[i], &ds)?);
        }
        for &c in &ps[n + n * k..] {
            inputs.push(constant_series(c, k));
        }
        let outs = jet_into(b, g, &inputs, k)?;
        let mut res: Vec<Value> = outs.iter().map(|s| primal(s)).collect();
        for s in &outs {
            res.extend(to_derivatives(b, s)?);
        }
        Ok(res)
    })?;
    finish(out)
}

/// The sum of two series of the same order, with primal `z0`.
pub(crate) fn add_terms(
    b: &mut Builder,
    x: &[Option<Value>],
    y: &[Option<Value>],
    z0: Value,
) -> Result<Series> {
    let mut z = constant_series(z0, x.len() - 1);
    for j in 1..x.len() {
        z[j] = emit::add_opt(b, x[j], y[j])?;
    }
    Ok(z)
}
