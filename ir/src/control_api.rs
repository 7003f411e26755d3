//! Control flow for traced code: `cond`, `switch`, `fori_loop`, `scan` and `while_loop`.
//!
//! Each construct traces its Rust closures into sub-graphs (with [`trace_with`]) on the types
//! of the operands or the carry, and applies one control op (`switch`, `scan` or `while`) to
//! the operands. Tensors of enclosing traces that a closure uses are converted to explicit
//! operands: the captures of every sub-graph of one construct are merged into one list of
//! loop-invariant `consts` operands (for `switch`, trailing operands), so transforms see every
//! dependency. When every operand is concrete and no trace is active, the op is evaluated at
//! once by the interpreter.
//!
//! Errors (a branch returning other types than another, a body returning the wrong carry
//! types, a non-scalar predicate) are recorded like other tracer errors: the results are error
//! tensors and finishing the enclosing trace returns the error with the caller's source line.
//!
//! ```
//! use ferrax_ir::control_api::{cond, fori_loop};
//! use ferrax_ir::Tensor;
//! let x = Tensor::scalar(3.0);
//! let y = cond(&x.gt(0.0), |o| vec![o[0].sqrt()], |o| vec![-&o[0]], &[x.clone()]);
//! assert_eq!(y[0].to_f64().unwrap(), 3f64.sqrt());
//! let s = fori_loop(0, 4, |i, c| vec![&c[0] + i.astype(ferrax_ir::DType::F64)], &[Tensor::scalar(0.0)]);
//! assert_eq!(s[0].to_f64().unwrap(), 6.0);
//! ```

use crate::builder::Builder;
use crate::error::{counted_types, type_difference, Error, ErrorKind, Result};
use crate::graph::Graph;
use crate::ops::control::{unstacked, Body, ControlOp};
use crate::ops::Op;
use crate::tracer::{apply_n, fail, same_tracer, trace_with, Tensor, Traced};
use crate::types::{DType, Type};
use smallvec::SmallVec;
use std::panic::Location;

/// A branch or body closure over a slice of tensors.
pub type BranchFn<'a> = &'a dyn Fn(&[Tensor]) -> Vec<Tensor>;

/// Options of [`scan_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanConfig {
    /// The number of iterations; needed when there are no scanned inputs, otherwise it must
    /// equal their leading dimension.
    pub length: Option<usize>,
    /// Iterate from the last slice to the first (the stacked outputs keep the slices' order).
    pub reverse: bool,
}

/// The tracers a set of traced sub-graphs captured, merged without duplicates, and for each
/// sub-graph the position of each of its captures in the merged list.
struct Captures {
    all: Vec<Tensor>,
    positions: Vec<Vec<usize>>,
}

fn merge_captures(traced: &[&Traced]) -> Captures {
    let mut all: Vec<Tensor> = Vec::new();
    let mut positions = Vec::with_capacity(traced.len());
    for t in traced {
        let mut pos = Vec::with_capacity(t.captures.len());
        for c in &t.captures {
            let k = match all.iter().position(|a| same_tracer(a, c)) {
                Some(k) => k,
                None => {
                    all.push(c.clone());
                    all.len() - 1
                }
            };
            pos.push(k);
        }
        positions.push(pos);
    }
    Captures { all, positions }
}

/// Copies `g` into a new graph whose parameters have the types `params`; parameter `k` of `g`
/// becomes parameter `bind[k]` of the new graph. The outputs are `g`'s.
pub(crate) fn rewire(g: &Graph, params: &[Type], bind: &[usize]) -> Result<Graph> {
    let mut b = Builder::new();
    let ps: Vec<_> = params.iter().map(|t| b.param(t.clone())).collect();
    let mut env = vec![None; g.num_values()];
    for (&p, &k) in g.params().iter().zip(bind) {
        env[p.index()] = Some(ps[k]);
    }
    for (_, inst) in g.insts() {
        let args: Vec<_> = inst
            .args
            .iter()
            .map(|a| env[a.index()].expect("verified graph"))
            .collect();
        let res = b.push(inst.op.clone(), &args)?;
        for (&r, v) in inst.results.iter().zip(res) {
            env[r.index()] = Some(v);
        }
    }
    let outs: Vec<_> = g
        .outputs()
        .iter()
        .map(|o| env[o.index()].expect("verified graph"))
        .collect();
    Ok(b.finish(&outs))
}

/// The types of tensors, or the first error they carry.
fn types_of(xs: &[Tensor]) -> Result<Vec<Type>> {
    xs.iter().map(|x| x.try_ty()).collect()
}

/// Records `e` (at `loc`) and returns `n` error tensors.
fn failed(e: Error, n: usize, loc: &'static Location<'static>) -> Vec<Tensor> {
    vec![fail(e.at(loc)); n.max(1)]
}

/// The error for a closure `what` (e.g. "while_loop: the body") that returned `found` where
/// `expected` was needed: the message names both lists (`expected_is` introduces the second,
/// e.g. "the carry is") and the first `item` that differs; different counts are an arity
/// error.
fn results_error(
    what: &str,
    found: &[Type],
    expected_is: &str,
    expected: &[Type],
    item: &str,
) -> Error {
    let (kind, diff) = type_difference(item, found, expected);
    Error::new(
        kind,
        format!(
            "{what} returns {} but {expected_is} {} ({diff})",
            counted_types(found, "value"),
            counted_types(expected, "value")
        ),
    )
}

/// [`results_error`] when `found` is not `expected`.
fn check_results(
    what: &str,
    found: &[Type],
    expected_is: &str,
    expected: &[Type],
    item: &str,
) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(results_error(what, found, expected_is, expected, item))
    }
}

/// Runs `branches[index]` on `operands`; `index` is an integer scalar, clamped into range.
/// Every branch must return the same number and types of tensors.
///
/// ```
/// use ferrax_ir::control_api::switch;
/// use ferrax_ir::{DType, Tensor};
/// let i = Tensor::full_dtype(DType::I32, &[], 1.0);
/// let x = Tensor::scalar(2.0);
/// let y = switch(&i, &[&|o: &[Tensor]| vec![&o[0] + 1.0], &|o: &[Tensor]| vec![&o[0] * 10.0]], &[x]);
/// assert_eq!(y[0].to_f64().unwrap(), 20.0);
/// ```
#[track_caller]
pub fn switch(index: &Tensor, branches: &[BranchFn<'_>], operands: &[Tensor]) -> Vec<Tensor> {
    switch_at(
        "switch",
        &|k| format!("branch {k}"),
        index,
        branches,
        operands,
        Location::caller(),
    )
}

/// A `switch` built for the construct `name` (`switch` or `cond`), whose branch `k` is called
/// `branch_name(k)` in messages.
fn switch_at(
    name: &str,
    branch_name: &dyn Fn(usize) -> String,
    index: &Tensor,
    branches: &[BranchFn<'_>],
    operands: &[Tensor],
    loc: &'static Location<'static>,
) -> Vec<Tensor> {
    match build_switch(name, branch_name, index, branches, operands) {
        Ok((op, args, n)) => {
            let refs: Vec<&Tensor> = args.iter().collect();
            apply_n(op, &refs, n, loc)
        }
        Err((e, n)) => failed(e, n, loc),
    }
}

type Built = std::result::Result<(Op, Vec<Tensor>, usize), (Error, usize)>;

fn build_switch(
    name: &str,
    branch_name: &dyn Fn(usize) -> String,
    index: &Tensor,
    branches: &[BranchFn<'_>],
    operands: &[Tensor],
) -> Built {
    let err1 = |e: Error| (e, 1);
    if branches.is_empty() {
        return Err(err1(Error::new(
            ErrorKind::Arity,
            format!("{name}: needs at least one branch, got 0"),
        )));
    }
    let ity = index.try_ty().map_err(err1)?;
    if !ity.is_scalar() || ity.dtype.is_float() {
        return Err(err1(Error::new(
            ErrorKind::DType,
            format!("{name}: the index must be an integer or bool scalar, got {ity}"),
        )));
    }
    let index = if ity.dtype == DType::I32 {
        index.clone()
    } else {
        index.astype(DType::I32)
    };
    let tys = types_of(operands).map_err(err1)?;
    let mut traced = Vec::with_capacity(branches.len());
    for f in branches {
        traced.push(trace_with(&tys, |xs| f(xs)).map_err(err1)?);
    }
    let n_out = traced[0].graph.outputs().len();
    let first = traced[0].graph.output_types();
    for (k, t) in traced.iter().enumerate().skip(1) {
        let found = t.graph.output_types();
        if found != first {
            let e = results_error(
                &format!("{name}: {}", branch_name(k)),
                &found,
                &format!("{} returns", branch_name(0)),
                &first,
                "result",
            );
            let e = Error::new(
                e.kind,
                format!("{}; every branch must return the same types", e.message),
            );
            return Err((e, n_out));
        }
    }
    let caps = merge_captures(&traced.iter().collect::<Vec<_>>());
    let mut params = tys.clone();
    for c in &caps.all {
        params.push(c.try_ty().map_err(err1)?);
    }
    let mut bodies: SmallVec<[Body; 2]> = SmallVec::new();
    for (t, pos) in traced.iter().zip(&caps.positions) {
        let mut bind: Vec<usize> = (0..tys.len()).collect();
        bind.extend(pos.iter().map(|&p| tys.len() + p));
        bodies.push(Body::new(
            rewire(&t.graph, &params, &bind).map_err(|e| (e, n_out))?,
        ));
    }
    let mut args = vec![index];
    args.extend(operands.iter().cloned());
    args.extend(caps.all);
    Ok((
        Op::Control(ControlOp::Switch { branches: bodies }),
        args,
        n_out,
    ))
}

/// `true_fn(operands)` when the scalar `pred` holds, else `false_fn(operands)`; both branches
/// must return the same types. Lowered to a two-branch `switch`.
#[track_caller]
pub fn cond(
    pred: &Tensor,
    true_fn: impl Fn(&[Tensor]) -> Vec<Tensor>,
    false_fn: impl Fn(&[Tensor]) -> Vec<Tensor>,
    operands: &[Tensor],
) -> Vec<Tensor> {
    let loc = Location::caller();
    match pred.try_ty() {
        Ok(t) if t.is_scalar() && !t.dtype.is_float() => switch_at(
            "cond",
            &|k| ["false_fn (branch 0)", "true_fn (branch 1)"][k].to_string(),
            pred,
            &[&false_fn, &true_fn],
            operands,
            loc,
        ),
        Ok(t) => failed(
            Error::new(
                ErrorKind::DType,
                format!("cond: the predicate must be a bool scalar, got {t}"),
            ),
            1,
            loc,
        ),
        Err(e) => vec![Tensor::from_error(e)],
    }
}

/// Scans `f(carry, x) -> (carry, y)` over the leading axis of `xs`, returning the final carry
/// and the `y`s stacked along a new leading axis (see [`scan_with`] for the length and
/// direction).
///
/// ```
/// use ferrax_ir::control_api::scan;
/// use ferrax_ir::Tensor;
/// let xs = Tensor::from(vec![1.0, 2.0, 3.0]);
/// let (c, ys) = scan(|c, x| { let s = &c[0] + &x[0]; (vec![s.clone()], vec![s]) }, &[Tensor::scalar(0.0)], &[xs]);
/// assert_eq!(c[0].to_f64().unwrap(), 6.0);
/// assert_eq!(ys[0].to_array().unwrap().to_f64_vec(), vec![1.0, 3.0, 6.0]);
/// ```
#[track_caller]
pub fn scan(
    f: impl Fn(&[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    init: &[Tensor],
    xs: &[Tensor],
) -> (Vec<Tensor>, Vec<Tensor>) {
    scan_at(f, init, xs, ScanConfig::default(), Location::caller())
}

/// [`scan`] with an explicit length (needed when `xs` is empty) or in reverse order.
#[track_caller]
pub fn scan_with(
    f: impl Fn(&[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    init: &[Tensor],
    xs: &[Tensor],
    config: ScanConfig,
) -> (Vec<Tensor>, Vec<Tensor>) {
    scan_at(f, init, xs, config, Location::caller())
}

fn scan_at(
    f: impl Fn(&[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>),
    init: &[Tensor],
    xs: &[Tensor],
    config: ScanConfig,
    loc: &'static Location<'static>,
) -> (Vec<Tensor>, Vec<Tensor>) {
    let n_carry = init.len();
    let mut n_ys = 0;
    let built = (|| -> Result<(Op, Vec<Tensor>)> {
        let carry_tys = types_of(init)?;
        let x_tys = types_of(xs)?;
        let length = match (config.length, x_tys.first()) {
            (Some(n), _) => n,
            (None, Some(t)) if t.rank() >= 1 => t.dims()[0],
            (None, Some(t)) => {
                return Err(Error::new(
                    ErrorKind::Shape,
                    format!("scan: scanned input of type {t} has no leading axis"),
                ))
            }
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::Arity,
                    "scan: without scanned inputs the length must be given (scan_with)",
                ))
            }
        };
        let mut slice_tys = carry_tys.clone();
        for t in &x_tys {
            slice_tys.push(unstacked(t, length).ok_or_else(|| {
                Error::new(
                    ErrorKind::Shape,
                    format!(
                        "scan: scanned input of type {t} needs a leading dimension of {length}"
                    ),
                )
            })?);
        }
        let t = trace_with(&slice_tys, |a| {
            let (c, y) = f(&a[..n_carry], &a[n_carry..]);
            if c.len() != n_carry {
                let e = match types_of(&c) {
                    Ok(found) => results_error(
                        "scan: the body",
                        &found,
                        "the carry is",
                        &carry_tys,
                        "carry",
                    ),
                    Err(e) => e,
                };
                return vec![fail(e)];
            }
            n_ys = y.len();
            c.into_iter().chain(y).collect()
        })?;
        check_results(
            "scan: the body",
            &t.graph.output_types()[..n_carry],
            "the carry is",
            &carry_tys,
            "carry",
        )?;
        let caps = merge_captures(&[&t]);
        let mut params: Vec<Type> = Vec::new();
        for c in &caps.all {
            params.push(c.try_ty()?);
        }
        let n_consts = params.len();
        params.extend(carry_tys.iter().cloned());
        params.extend(x_tys.iter().map(|t| unstacked(t, length).expect("checked")));
        let mut bind: Vec<usize> = (n_consts..n_consts + n_carry + xs.len()).collect();
        bind.extend(caps.positions[0].iter().copied());
        let body = rewire(&t.graph, &params, &bind)?;
        let op = ControlOp::Scan {
            body: Body::new(body),
            length,
            n_consts,
            n_carry,
            reverse: config.reverse,
        };
        let mut args = caps.all;
        args.extend(init.iter().cloned());
        args.extend(xs.iter().cloned());
        Ok((Op::Control(op), args))
    })();
    let mut outs = match built {
        Ok((op, args)) => {
            let refs: Vec<&Tensor> = args.iter().collect();
            apply_n(op, &refs, n_carry + n_ys, loc)
        }
        Err(e) => failed(e, n_carry + n_ys, loc),
    };
    if outs.len() < n_carry + n_ys {
        let e = outs[0].clone();
        outs.resize(n_carry + n_ys, e);
    }
    let mut ys = outs.split_off(n_carry);
    // After an error the number of outputs may be unknown: both lists hold at least one error
    // tensor, so indexing them does not panic.
    if let Some(e) = outs
        .iter()
        .chain(&ys)
        .find(|t| t.error().is_some())
        .cloned()
    {
        if ys.is_empty() {
            ys.push(e.clone());
        }
        if outs.is_empty() {
            outs.push(e);
        }
    }
    (outs, ys)
}

/// Runs `body(i, carry) -> carry` for `i` in `lower..upper` (an i32 scalar) and returns the
/// final carry. The bounds are static, so the loop is a `scan` with a counter in its carry and
/// is differentiable in both modes.
#[track_caller]
pub fn fori_loop(
    lower: i32,
    upper: i32,
    body: impl Fn(&Tensor, &[Tensor]) -> Vec<Tensor>,
    init: &[Tensor],
) -> Vec<Tensor> {
    let loc = Location::caller();
    let length = (upper as i64 - lower as i64).max(0) as usize;
    let mut carry = vec![Tensor::full_dtype(DType::I32, &[], lower as f64)];
    carry.extend(init.iter().cloned());
    let init_tys = types_of(init).ok();
    let step = |c: &[Tensor], _x: &[Tensor]| {
        let mut next = vec![&c[0] + 1.0];
        let out = body(&c[0], &c[1..]);
        // The body's carry is checked here, so that the message shows the user's carry
        // without the loop counter.
        if let (Some(want), Ok(found)) = (&init_tys, types_of(&out)) {
            if let Err(e) =
                check_results("fori_loop: the body", &found, "the carry is", want, "carry")
            {
                next.extend(vec![fail(e); want.len()]);
                return (next, Vec::new());
            }
        }
        next.extend(out);
        (next, Vec::new())
    };
    let (mut out, _) = scan_at(
        step,
        &carry,
        &[],
        ScanConfig {
            length: Some(length),
            reverse: false,
        },
        loc,
    );
    out.remove(0);
    out
}

/// Runs `carry = body_fn(carry)` while `cond_fn(carry)` (a bool scalar) holds and returns the
/// final carry. The trip count is only known at run time: forward mode works as for any op,
/// and reverse mode records each iteration's residuals on a tape that grows with the trip
/// count (see `ControlOp::TapedWhile`).
///
/// ```
/// use ferrax_ir::control_api::while_loop;
/// use ferrax_ir::Tensor;
/// let r = while_loop(|c| c[0].lt(100.0), |c| vec![&c[0] * 2.0], &[Tensor::scalar(1.0)]);
/// assert_eq!(r[0].to_f64().unwrap(), 128.0);
/// ```
#[track_caller]
pub fn while_loop(
    cond_fn: impl Fn(&[Tensor]) -> Tensor,
    body_fn: impl Fn(&[Tensor]) -> Vec<Tensor>,
    init: &[Tensor],
) -> Vec<Tensor> {
    let loc = Location::caller();
    let n = init.len();
    let built = (|| -> Result<(Op, Vec<Tensor>)> {
        let tys = types_of(init)?;
        let c = trace_with(&tys, |xs| vec![cond_fn(xs)])?;
        check_results(
            "while_loop: the condition",
            &c.graph.output_types(),
            "it must return a bool scalar,",
            &[Type::scalar(DType::Bool)],
            "result",
        )?;
        let b = trace_with(&tys, |xs| body_fn(xs))?;
        check_results(
            "while_loop: the body",
            &b.graph.output_types(),
            "the carry is",
            &tys,
            "carry",
        )?;
        let caps = merge_captures(&[&c, &b]);
        let mut params: Vec<Type> = Vec::new();
        for t in &caps.all {
            params.push(t.try_ty()?);
        }
        let n_consts = params.len();
        params.extend(tys.iter().cloned());
        let wire = |t: &Traced, pos: &[usize]| {
            let mut bind: Vec<usize> = (n_consts..n_consts + n).collect();
            bind.extend(pos.iter().copied());
            rewire(&t.graph, &params, &bind)
        };
        let cond = wire(&c, &caps.positions[0])?;
        let body = wire(&b, &caps.positions[1])?;
        let op = ControlOp::While {
            cond: Body::new(cond),
            body: Body::new(body),
            n_consts,
        };
        let mut args = caps.all;
        args.extend(init.iter().cloned());
        Ok((Op::Control(op), args))
    })();
    match built {
        Ok((op, args)) => {
            let refs: Vec<&Tensor> = args.iter().collect();
            apply_n(op, &refs, n, loc)
        }
        Err(e) => failed(e, n, loc),
    }
}
