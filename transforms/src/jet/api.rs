//! The user-facing Taylor-mode functions: [`jet`], [`derivatives`], [`taylor_coefficients`],
//! [`laplacian`], and the conversions between derivative-scaled and Taylor coefficients.
//!
//! Series passed to and returned by [`jet`] are *derivative-scaled*, as in
//! `jax.experimental.jet`: an argument `x` of type `T` comes with an array of type `[k] ++ T`
//! whose row `j − 1` is the j-th derivative of the input path `x(t)` at t = 0; the output
//! series hold the derivatives of the output path. With the path `x + t·v` (first row `v`, the
//! other rows zero) the output rows are the directional derivatives of order 1 to k.

use super::{constant_series, from_derivatives, jet_into, primal, to_derivatives, Series};
use crate::emit::{build_graph, concatenate, finish, full, reshape, slice, zeros};
use ferrax_ir::function::Specialized;
use ferrax_ir::ops::control::stacked;
use ferrax_ir::{
    Array, Builder, Dims, Error, ErrorKind, Function, Graph, IntoFunction, Result, Shape, Type,
    Value,
};
use std::sync::Arc;

/// Row `j` of a value of type `[k] ++ T`, as a value of type `T`.
fn row(b: &mut Builder, v: Value, j: usize) -> Result<Value> {
    let ty = b.ty(v).clone();
    let r = ty.rank();
    let mut start = Dims::from_elem(0, r);
    start[0] = j;
    let mut limit = Dims::from_slice(ty.dims());
    limit[0] = j + 1;
    let s = slice(b, v, start, limit, Dims::from_elem(1, r))?;
    reshape(b, s, Shape::new(&ty.dims()[1..]))
}

/// Stacks values of one type `T` into a value of type `[n] ++ T` (zeros of that type for none).
fn stack_rows(b: &mut Builder, vs: &[Value], ty: &Type) -> Result<Value> {
    if vs.is_empty() {
        return zeros(b, &stacked(ty, 0));
    }
    let one = stacked(ty, 1);
    let rows: Vec<Value> = vs
        .iter()
        .map(|&v| reshape(b, v, one.shape.clone()))
        .collect::<Result<_>>()?;
    if rows.len() == 1 {
        return Ok(rows[0]);
    }
    concatenate(b, &rows, 0)
}

fn fmt_types(tys: &[Type]) -> String {
    let parts: Vec<String> = tys.iter().map(Type::to_string).collect();
    format!("({})", parts.join(", "))
}

/// Taylor mode: a Function of `(primals.., series..)` returning `(outputs.., output series..)`,
/// where each series stacks `k` derivative-scaled coefficients along a new leading axis (see
/// the module docs). Costs O(k²) per op, against the O(2ᵏ) growth of nested `jvp` or `grad`.
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::jet;
/// // The path x(t) = 0.5 + t through tanh: the first three derivatives of tanh at 0.5.
/// let f = jet(|x: Tensor| x.tanh(), 3);
/// let series = Array::from_f64(vec![3], vec![1.0, 0.0, 0.0]).unwrap();
/// let (y, ys): (f64, Vec<f64>) = f.call((0.5, series)).unwrap();
/// assert!((y - 0.5f64.tanh()).abs() < 1e-15);
/// assert!((ys[0] - (1.0 - y * y)).abs() < 1e-15);
/// ```
pub fn jet<M>(f: impl IntoFunction<M>, k: usize) -> Function {
    let base = f.into_function();
    let arity = base.arity().map(|n| 2 * n);
    let defaults = base.default_types().map(|d| {
        let s: Vec<Type> = d.iter().map(|t| stacked(t, k)).collect();
        [d, s].concat()
    });
    Function::derived("jet", arity, defaults, move |types| {
        if types.len() % 2 != 0 {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "jet takes primals and series in equal numbers, got {} arguments",
                    types.len()
                ),
            ));
        }
        let n = types.len() / 2;
        let (primals, series) = types.split_at(n);
        super::check_order(k, "jet")?;
        let want: Vec<Type> = primals.iter().map(|t| stacked(t, k)).collect();
        if series != want.as_slice() {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "jet of order {k}: the series have types {} but must be {} (each primal's \
                     type with a leading axis of the {k} coefficients)",
                    fmt_types(series),
                    fmt_types(&want)
                ),
            ));
        }
        let s = base.specialize_untracked(primals)?;
        let g = stacked_jet_graph(&s.graph, s.n_explicit, k)?;
        Ok(Specialized {
            graph: Arc::new(g),
            n_explicit: 2 * s.n_explicit,
            captures: s.captures,
        })
    })
}

/// The graph of [`jet`]: parameters `[primals.., stacked series.., captures..]`, outputs
/// `[outputs.., stacked output series..]`.
fn stacked_jet_graph(g: &Graph, n: usize, k: usize) -> Result<Graph> {
    crate::jvp::check_explicit(g, n, "jet")?;
    super::check_order(k, "jet")?;
    let tys = g.param_types();
    let mut param_tys: Vec<Type> = tys[..n].to_vec();
    param_tys.extend(tys[..n].iter().map(|t| stacked(t, k)));
    param_tys.extend_from_slice(&tys[n..]);
    let out = build_graph(&param_tys, |b, ps| {
        let mut inputs: Vec<Series> = Vec::with_capacity(tys.len());
        for i in 0..n {
            let ds: Vec<Option<Value>> = (0..k)
                .map(|j| row(b, ps[n + i], j).map(Some))
                .collect::<Result<_>>()?;
            inputs.push(from_derivatives(b, ps[i], &ds)?);
        }
        for &c in &ps[2 * n..] {
            inputs.push(constant_series(c, k));
        }
        let outs = jet_into(b, g, &inputs, k)?;
        let mut res: Vec<Value> = outs.iter().map(|s| primal(s)).collect();
        for s in &outs {
            let ty = b.ty(primal(s)).clone();
            let ds = to_derivatives(b, s)?;
            res.push(stack_rows(b, &ds, &ty)?);
        }
        Ok(res)
    })?;
    finish(out)
}

/// The series of a function of one argument along the path `x + t·1` (every element moving
/// at unit speed), stacked `[y₀, y₁, …, y_k]`, as derivatives (`scaled`) or Taylor coefficients.
fn along_ones<M>(f: impl IntoFunction<M>, k: usize, scaled: bool, name: &'static str) -> Function {
    let base = f.into_function();
    let defaults = base.default_types();
    Function::derived(name, Some(1), defaults, move |types| {
        super::check_order(k, name)?;
        let s = base.specialize_untracked(types)?;
        let g = &s.graph;
        let n = s.n_explicit;
        if n != 1 || g.outputs().len() != 1 || !g.param_types()[0].dtype.is_float() {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "{name} needs a function of one float argument with one output, got \
                     arguments {} and outputs {}",
                    fmt_types(&g.param_types()[..n]),
                    fmt_types(&g.output_types())
                ),
            ));
        }
        let tys = g.param_types();
        let out = build_graph(&tys, |b, ps| {
            let ones = full(b, &tys[0], 1.0)?;
            let mut x = constant_series(ps[0], k);
            if k > 0 {
                x[1] = Some(ones);
            }
            let mut inputs = vec![x];
            inputs.extend(ps[1..].iter().map(|&c| constant_series(c, k)));
            let ys = jet_into(b, g, &inputs, k)?;
            let y = &ys[0];
            let ty = b.ty(primal(y)).clone();
            let mut rows = vec![primal(y)];
            if scaled {
                rows.extend(to_derivatives(b, y)?);
            } else {
                for t in &y[1..] {
                    rows.push(crate::emit::or_zeros(b, *t, &ty)?);
                }
            }
            Ok(vec![stack_rows(b, &rows, &ty)?])
        })?;
        Ok(Specialized {
            graph: Arc::new(finish(out)?),
            n_explicit: 1,
            captures: s.captures,
        })
    })
}

/// All derivatives of `f` up to order `k` in one graph: a Function of `x` returning
/// `[f(x), f'(x), …, f⁽ᵏ⁾(x)]` stacked along a new leading axis. `f` takes one float argument
/// and returns one value; for a non-scalar `x` these are the derivatives along the direction
/// of all ones (for an elementwise `f`, each element's own derivatives).
///
/// ```
/// use ferrax_ir::Tensor;
/// use ferrax_transforms::api::derivatives;
/// let d: Vec<f64> = derivatives(|x: Tensor| x.exp(), 4).call(0.0).unwrap();
/// assert_eq!(d, vec![1.0; 5]);
/// ```
pub fn derivatives<M>(f: impl IntoFunction<M>, k: usize) -> Function {
    along_ones(f, k, true, "derivatives")
}

/// The Taylor coefficients of `f` around `x` up to order `k`: `[f(x), f'(x), f''(x)/2!, …,
/// f⁽ᵏ⁾(x)/k!]`, stacked as in [`derivatives`].
pub fn taylor_coefficients<M>(f: impl IntoFunction<M>, k: usize) -> Function {
    along_ones(f, k, false, "taylor_coefficients")
}

/// The Laplacian `Σᵢ ∂²f/∂xᵢ²` of a function of one float argument, for each element of its
/// output, by collapsed Taylor propagation: the first-order coefficients of all `n` input
/// directions are propagated together (batched), while the second-order coefficient is a single
/// value holding the sum over the directions, so the linear part of every op's second-order
/// rule runs once instead of `n` times (the module `jet/laplace.rs` explains the construction).
pub fn laplacian<M>(f: impl IntoFunction<M>) -> Function {
    let base = f.into_function();
    let defaults = base.default_types();
    Function::derived("laplacian", Some(1), defaults, move |types| {
        let s = base.specialize_untracked(types)?;
        let g = super::laplace::laplacian_graph(&s.graph, s.n_explicit)?;
        Ok(Specialized {
            graph: Arc::new(g),
            n_explicit: 1,
            captures: s.captures,
        })
    })
}

/// Rescales the rows of a stacked series (leading axis; row `i` has order `first_order + i`)
/// by `c(order)`.
fn rescale(series: &Array, first_order: usize, c: impl Fn(f64) -> f64) -> Result<Array> {
    if series.rank() == 0 || !series.dtype().is_float() {
        return Err(Error::new(
            ErrorKind::Shape,
            format!(
                "series conversion needs a float array with a leading axis of orders, got {}",
                series.ty()
            ),
        ));
    }
    let rows = series.dims()[0];
    let per = series.size().checked_div(rows).unwrap_or(0);
    let mut out = series.try_clone("a converted series")?;
    let fact = |i: usize| c(super::factorial(first_order + i));
    if let Some(v) = out.as_f64_mut() {
        for (e, x) in v.iter_mut().enumerate() {
            *x *= fact(e / per.max(1));
        }
    } else if let Some(v) = out.as_f32_mut() {
        for (e, x) in v.iter_mut().enumerate() {
            *x = (*x as f64 * fact(e / per.max(1))) as f32;
        }
    }
    Ok(out)
}

/// Derivative-scaled coefficients (as [`jet`] takes and returns them) to Taylor coefficients:
/// row `i`, of order `first_order + i` (1 for jet's series, 0 for [`derivatives`]' result), is
/// divided by its order's factorial.
pub fn series_to_taylor(series: &Array, first_order: usize) -> Result<Array> {
    rescale(series, first_order, |f| 1.0 / f)
}

/// Taylor coefficients to derivative-scaled coefficients: the inverse of
/// [`series_to_taylor`] (row `i` multiplied by `(first_order + i)!`).
pub fn taylor_to_series(coefficients: &Array, first_order: usize) -> Result<Array> {
    rescale(coefficients, first_order, |f| f)
}

/// The Taylor coefficients of the solution of the autonomous ODE `x' = f(x)` through
/// `x(0) = x₀`, up to order `k`: a Function of `x₀` returning `[x₀, x₁, …, x_k]` stacked along
/// a new leading axis, so that `x(h) ≈ Σ_j x_j·h^j` (Taylor coefficients, not derivatives).
/// Since the coefficient `j − 1` of `f(x(t))` needs only `x₀ … x_{j−1}`, `x_j = f_{j−1}/j` is
/// found by a jet of `f` of order `j − 1`, for `j = 1 … k`, all in one graph: the builder's
/// hash-consing merges the orders each jet shares with the previous one, so the graph grows as
/// O(k²) (for `f` without control flow, whose ops are re-emitted per jet).
///
/// ```
/// use ferrax_ir::Tensor;
/// use ferrax_transforms::api::ode_series;
/// // x' = x through x(0) = 2: x(t) = 2eᵗ, whose coefficients are 2/j!.
/// let c: Vec<f64> = ode_series(|x: Tensor| x, 4).call(2.0).unwrap();
/// assert_eq!(c, vec![2.0, 2.0, 1.0, 1.0 / 3.0, 1.0 / 12.0]);
/// ```
pub fn ode_series<M>(f: impl IntoFunction<M>, k: usize) -> Function {
    let base = f.into_function();
    let defaults = base.default_types();
    Function::derived("ode_series", Some(1), defaults, move |types| {
        super::check_order(k, "ode_series")?;
        let s = base.specialize_untracked(types)?;
        let g = &s.graph;
        let tys = g.param_types();
        if s.n_explicit != 1 || g.output_types() != tys[..1] || !tys[0].dtype.is_float() {
            return Err(Error::new(
                ErrorKind::DType,
                format!(
                    "ode_series needs f(x) of one float argument returning x's type, got \
                     arguments {} and outputs {}",
                    fmt_types(&tys[..s.n_explicit.min(tys.len())]),
                    fmt_types(&g.output_types())
                ),
            ));
        }
        let out = build_graph(&tys, |b, ps| {
            let mut x: Series = vec![Some(ps[0])];
            for j in 1..=k {
                let mut inputs = vec![x.clone()];
                inputs.extend(ps[1..].iter().map(|&c| constant_series(c, j - 1)));
                let fx = jet_into(b, g, &inputs, j - 1)?;
                x.push(super::scale_opt(b, fx[0][j - 1], 1.0 / j as f64)?);
            }
            let ty = tys[0].clone();
            let rows: Vec<Value> = x
                .iter()
                .map(|t| crate::emit::or_zeros(b, *t, &ty))
                .collect::<Result<_>>()?;
            Ok(vec![stack_rows(b, &rows, &ty)?])
        })?;
        Ok(Specialized {
            graph: Arc::new(finish(out)?),
            n_explicit: 1,
            captures: s.captures,
        })
    })
}
