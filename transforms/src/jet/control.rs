//! Taylor rules for control flow and calls. Sub-graphs are jetted into sub-graphs of the same
//! op ([`jet_body`]): each takes its operands and then, for the operands that carry a series,
//! `k` Taylor coefficients each, and returns its results followed by the coefficients of the
//! results that carry one.
//!
//! - `switch`: every branch is jetted; the taken branch computes the series (branches whose
//!   result has no series return zeros in its slots).
//! - `scan` and `while`: the coefficients of the loop-invariant operands are loop-invariant,
//!   those of the carries are carried, those of the scanned slices are scanned (and those of
//!   the stacked outputs stacked). The set of carries with a series grows to a fixed point, as
//!   for the JVP.
//! - `call` with a checkpoint: a checkpointed call of the jetted body, so reverse mode through
//!   the jet still recomputes it.
//! - `call` with a custom JVP rule: the rule gives `y' = T(x, x')`, so the derivative series of
//!   `y` is the jet of `T` at order k − 1 with inputs `x` and the derivative series of `x`
//!   (`x'_m = (m + 1)·x_{m+1}`); then `y_j = y'_{j−1}/j`. The rule is composed order by order,
//!   never bypassed by differentiating the primal. Every coefficient of the result, hence of
//!   everything downstream, comes from the rule. Nested `jvp` agrees whenever the rule's
//!   tangent is the derivative of the rule's own primal output (the usual case: a more stable
//!   formula for the same derivative). For a rule that deliberately returns another
//!   derivative, nested `jvp` differs from order 2 on when the result feeds a nonlinear op:
//!   its outer derivative differentiates the rule's primal output (say `sin x`) with that
//!   output's own derivative, while the jet keeps using the rule.
//! - `call` with a custom VJP rule, `taped_while` and `custom_lin` have no forward-mode rule:
//!   errors naming the op.

use super::{
    constant_series, is_constant, jet_into, primal, scale_opt, truncate, unsupported, Series,
};
use crate::emit::{build_graph, finish, inline, or_zeros, push, zeros};
use ferrax_ir::ops::{Body, CallKind, ControlOp};
use ferrax_ir::{Builder, Graph, Op, Result, Type, Value};
use smallvec::SmallVec;

/// `g` jetted at order `k` with respect to the parameters flagged in `nz`. Parameters: `g`'s,
/// then `k` Taylor coefficients for each flagged parameter, in order. Outputs: `g`'s, then `k`
/// coefficients for each output that carries a series or is flagged in `force` (zeros where
/// it has none). Returns the graph and which outputs got coefficients.
pub(crate) fn jet_body(
    g: &Graph,
    k: usize,
    nz: &[bool],
    force: &[bool],
) -> Result<(Graph, Vec<bool>)> {
    let tys = g.param_types();
    let mut param_tys = tys.clone();
    for (t, &z) in tys.iter().zip(nz) {
        if z {
            param_tys.extend(std::iter::repeat_n(t.clone(), k));
        }
    }
    let mut out_nz = Vec::new();
    let out = build_graph(&param_tys, |b, ps| {
        let n = tys.len();
        let mut at = n;
        let mut inputs = Vec::with_capacity(n);
        for (i, &z) in nz.iter().enumerate() {
            let mut s = constant_series(ps[i], k);
            if z {
                for j in 1..=k {
                    s[j] = Some(ps[at + j - 1]);
                }
                at += k;
            }
            inputs.push(s);
        }
        let outs = jet_into(b, g, &inputs, k)?;
        out_nz = outs
            .iter()
            .zip(force)
            .map(|(s, &f)| b.ty(primal(s)).dtype.is_float() && (f || !is_constant(s)))
            .collect();
        let mut res: Vec<Value> = outs.iter().map(|s| primal(s)).collect();
        for (s, &z) in outs.iter().zip(&out_nz) {
            if z {
                let ty = b.ty(primal(s)).clone();
                for t in &s[1..] {
                    res.push(or_zeros(b, *t, &ty)?);
                }
            }
        }
        Ok(res)
    })?;
    Ok((finish(out)?, out_nz))
}

/// The coefficients (orders 1..=k, zeros filled in) of the series flagged in `nz`, in order.
fn coefficients(b: &mut Builder, xs: &[Series], nz: &[bool]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (s, &z) in xs.iter().zip(nz) {
        if z {
            let ty = b.ty(primal(s)).clone();
            for t in &s[1..] {
                out.push(or_zeros(b, *t, &ty)?);
            }
        }
    }
    Ok(out)
}

/// Series from primal results and the coefficients that follow them for the flagged results.
fn series_of(ys: &[Value], coefs: &[Value], nz: &[bool], k: usize) -> Vec<Series> {
    let mut it = coefs.iter();
    ys.iter()
        .zip(nz)
        .map(|(&y, &z)| {
            let mut s = constant_series(y, k);
            if z {
                for t in s.iter_mut().skip(1) {
                    *t = it.next().copied();
                }
            }
            s
        })
        .collect()
}

/// Whether each series carries coefficients (and its value is a float).
fn flags(b: &Builder, xs: &[Series]) -> Vec<bool> {
    xs.iter()
        .map(|s| !is_constant(s) && b.ty(primal(s)).dtype.is_float())
        .collect()
}

/// A graph with parameters `new_tys` that calls `g` with parameter `i` of `g` bound to the new
/// parameter `arg_of[i]` and returns the outputs of `g` that `out_of` picks, in that order.
fn rewired(g: &Graph, new_tys: &[Type], arg_of: &[usize], out_of: &[usize]) -> Result<Body> {
    let out = build_graph(new_tys, |b, ps| {
        let args: Vec<Value> = arg_of.iter().map(|&i| ps[i]).collect();
        let outs = inline(b, g, &args)?;
        Ok(out_of.iter().map(|&i| outs[i]).collect())
    })?;
    Ok(Body::new(finish(out)?))
}

/// The inverse of a permutation given as "new position ↦ old position".
fn inverse(new_to_old: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; new_to_old.len()];
    for (new, &old) in new_to_old.iter().enumerate() {
        inv[old] = new;
    }
    inv
}

/// Positions, in a jetted body's parameter (or output) list of `n` plain entries followed by
/// `k` coefficients per flagged entry, of the entries in `range` and then of their coefficients.
fn block(
    range: std::ops::Range<usize>,
    n: usize,
    nz: &[bool],
    k: usize,
) -> (Vec<usize>, Vec<usize>) {
    let plain: Vec<usize> = range.clone().collect();
    let mut coef = Vec::new();
    let mut at = n;
    for (i, &z) in nz.iter().enumerate() {
        if z {
            if range.contains(&i) {
                coef.extend(at..at + k);
            }
            at += k;
        }
    }
    (plain, coef)
}

/// The series of the results of control op `op` applied to operands with series `xs`.
pub(crate) fn jet(b: &mut Builder, op: &ControlOp, xs: &[Series], k: usize) -> Result<Vec<Series>> {
    let prim: Vec<Value> = xs.iter().map(|s| primal(s)).collect();
    let nz = flags(b, xs);
    if !nz.iter().any(|&z| z) {
        let ys = push(b, Op::Control(op.clone()), &prim)?;
        return Ok(ys.iter().map(|&y| constant_series(y, k)).collect());
    }
    match op {
        ControlOp::Switch { branches } => {
            let nz = &nz[1..];
            let n_out = branches[0].graph().outputs().len();
            let mut force = vec![false; n_out];
            for br in branches {
                let (_, onz) = jet_body(br.graph(), k, nz, &force)?;
                for (f, z) in force.iter_mut().zip(onz) {
                    *f |= z;
                }
            }
            let mut new_branches: SmallVec<[Body; 2]> = SmallVec::new();
            for br in branches {
                let (g, _) = jet_body(br.graph(), k, nz, &force)?;
                new_branches.push(Body::new(g));
            }
            let mut args = prim.clone();
            args.extend(coefficients(b, &xs[1..], nz)?);
            let res = push(
                b,
                Op::Control(ControlOp::Switch {
                    branches: new_branches,
                }),
                &args,
            )?;
            Ok(series_of(&res[..n_out], &res[n_out..], &force, k))
        }
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => {
            let g = body.graph();
            let (nc, nk) = (*n_consts, *n_carry);
            let n = g.params().len();
            let n_out = g.outputs().len();
            let mut nz = nz.clone();
            let (jg, onz) = loop {
                let mut force = vec![false; n_out];
                force[..nk].copy_from_slice(&nz[nc..nc + nk]);
                let (jg, onz) = jet_body(g, k, &nz, &force)?;
                let mut changed = false;
                for c in 0..nk {
                    if onz[c] && !nz[nc + c] {
                        nz[nc + c] = true;
                        changed = true;
                    }
                }
                if !changed {
                    break (jg, onz);
                }
            };
            // Operands of the jetted scan: [consts, const coefficients, carry, carry
            // coefficients, xs, xs coefficients]; results [carry, carry coefficients, ys, ys
            // coefficients].
            let mut arg_of = Vec::new();
            let mut counts = Vec::new();
            for r in [0..nc, nc..nc + nk, nc + nk..n] {
                let (p, c) = block(r, n, &nz, k);
                counts.push((p.len(), c.len()));
                arg_of.extend(p);
                arg_of.extend(c);
            }
            let jtys = jg.param_types();
            let new_tys: Vec<Type> = arg_of.iter().map(|&i| jtys[i].clone()).collect();
            let mut out_of = Vec::new();
            for r in [0..nk, nk..n_out] {
                let (p, c) = block(r, n_out, &onz, k);
                out_of.extend(p);
                out_of.extend(c);
            }
            let new_body = rewired(&jg, &new_tys, &inverse(&arg_of), &out_of)?;
            let mut args = Vec::new();
            for r in [0..nc, nc..nc + nk, nc + nk..n] {
                args.extend_from_slice(&prim[r.clone()]);
                args.extend(coefficients(b, &xs[r.clone()], &nz[r])?);
            }
            let n_consts2 = counts[0].0 + counts[0].1;
            let n_carry2 = counts[1].0 + counts[1].1;
            let res = push(
                b,
                Op::Control(ControlOp::Scan {
                    body: new_body,
                    length: *length,
                    n_consts: n_consts2,
                    n_carry: n_carry2,
                    reverse: *reverse,
                }),
                &args,
            )?;
            // Unpack [carry, carry coefficients, ys, ys coefficients].
            let carry_coefs = onz[..nk].iter().filter(|&&z| z).count() * k;
            let mut out = series_of(&res[..nk], &res[nk..nk + carry_coefs], &onz[..nk], k);
            let ys_at = nk + carry_coefs;
            let ny = n_out - nk;
            out.extend(series_of(
                &res[ys_at..ys_at + ny],
                &res[ys_at + ny..],
                &onz[nk..],
                k,
            ));
            Ok(out)
        }
        ControlOp::While {
            cond,
            body,
            n_consts,
        } => {
            let g = body.graph();
            let nc = *n_consts;
            let n = g.params().len();
            let nk = n - nc;
            let mut nz = nz.clone();
            let (jg, _) = loop {
                let force: Vec<bool> = nz[nc..].to_vec();
                let (jg, onz) = jet_body(g, k, &nz, &force)?;
                let mut changed = false;
                for c in 0..nk {
                    if onz[c] && !nz[nc + c] {
                        nz[nc + c] = true;
                        changed = true;
                    }
                }
                if !changed {
                    break (jg, onz);
                }
            };
            let mut arg_of = Vec::new();
            let mut counts = Vec::new();
            for r in [0..nc, nc..n] {
                let (p, c) = block(r, n, &nz, k);
                counts.push((p.len(), c.len()));
                arg_of.extend(p);
                arg_of.extend(c);
            }
            let jtys = jg.param_types();
            let new_tys: Vec<Type> = arg_of.iter().map(|&i| jtys[i].clone()).collect();
            let n_out2 = jg.outputs().len();
            let all: Vec<usize> = (0..n_out2).collect();
            let new_body = rewired(&jg, &new_tys, &inverse(&arg_of), &all)?;
            // The condition sees the primal consts and carry only.
            let (nc2, _) = (counts[0].0 + counts[0].1, counts[1].0 + counts[1].1);
            let mut cond_args: Vec<usize> = (0..nc).collect();
            cond_args.extend(nc2..nc2 + nk);
            let new_cond = rewired(cond.graph(), &new_tys, &cond_args, &[0])?;
            let mut args = Vec::new();
            for r in [0..nc, nc..n] {
                args.extend_from_slice(&prim[r.clone()]);
                args.extend(coefficients(b, &xs[r.clone()], &nz[r])?);
            }
            let res = push(
                b,
                Op::Control(ControlOp::While {
                    cond: new_cond,
                    body: new_body,
                    n_consts: nc2,
                }),
                &args,
            )?;
            Ok(series_of(&res[..nk], &res[nk..], &nz[nc..], k))
        }
        ControlOp::Call { body, kind } => match kind {
            CallKind::Checkpoint(policy) => {
                let g = body.graph();
                let n_out = g.outputs().len();
                let (jg, onz) = jet_body(g, k, &nz, &vec![false; n_out])?;
                let mut args = prim.clone();
                args.extend(coefficients(b, xs, &nz)?);
                let res = push(
                    b,
                    Op::Control(ControlOp::Call {
                        body: Body::new(jg),
                        kind: CallKind::Checkpoint(*policy),
                    }),
                    &args,
                )?;
                Ok(series_of(&res[..n_out], &res[n_out..], &onz, k))
            }
            CallKind::CustomJvp { rule, n_diff } => {
                custom_jvp(b, body.graph(), rule.graph(), *n_diff, xs, k)
            }
            CallKind::CustomVjp { .. } => Err(unsupported(
                "call",
                "a custom_vjp function has no forward-mode rule; define it with custom_jvp",
            )),
        },
        ControlOp::TapedWhile { .. } => Err(unsupported(
            "taped_while",
            "reverse mode through a while loop has no Taylor rule; take the jet before grad, \
             or use fori_loop or scan",
        )),
        ControlOp::CustomLinear { .. } => Err(unsupported(
            "custom_lin",
            "the linear map of a custom_vjp function has no forward-mode rule",
        )),
    }
}

/// The series of a `custom_jvp` call through its rule (see the module docs).
fn custom_jvp(
    b: &mut Builder,
    body: &Graph,
    rule: &Graph,
    n_diff: usize,
    xs: &[Series],
    k: usize,
) -> Result<Vec<Series>> {
    if xs[n_diff..].iter().any(|s| !is_constant(s)) {
        return Err(unsupported(
            "call",
            "a custom_jvp function's captured (non-differentiable) operands carry a series; \
             pass them as arguments instead",
        ));
    }
    let n_out = body.outputs().len();
    let km = k - 1;
    let mut inputs: Vec<Series> = xs.iter().map(|s| truncate(s, km)).collect();
    for s in &xs[..n_diff] {
        let ty = b.ty(primal(s)).clone();
        let mut d: Series = Vec::with_capacity(k);
        for m in 0..k {
            d.push(scale_opt(b, s[m + 1], (m + 1) as f64)?);
        }
        d[0] = Some(match d[0] {
            Some(v) => v,
            None => zeros(b, &ty)?,
        });
        inputs.push(d);
    }
    let outs = jet_into(b, rule, &inputs, km)?;
    let mut res = Vec::with_capacity(n_out);
    for i in 0..n_out {
        let y0 = primal(&outs[i]);
        let mut s = constant_series(y0, k);
        if b.ty(y0).dtype.is_float() {
            let t = &outs[n_out + i];
            for j in 1..=k {
                s[j] = scale_opt(b, t[j - 1], 1.0 / j as f64)?;
            }
        }
        res.push(s);
    }
    Ok(res)
}
