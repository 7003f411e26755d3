//! Rules for control flow and calls: `switch`, `while`, `scan`, `taped_while`, `custom_lin`
//! and `call` (checkpointed or with a custom rule).
//!
//! The JVP rules emit their result *already split* into a primal op and a tangent op, so that
//! partial evaluation ([`crate::linearize_graph`]) needs no rule of its own: the primal op
//! depends on no tangent and the tangent op is linear in the tangents, taking the primal values
//! it needs (the residuals) as extra operands.
//!
//! - `switch`: every branch is linearized; the primal switch returns the outputs and the
//!   residuals of every branch (zeros in the slots of the branches not taken), the tangent
//!   switch runs the linear part of the taken branch. Its transpose switches over the
//!   transposed branches.
//! - `scan`: the primal scan also returns each iteration's residuals, stacked (a residual that
//!   is a loop-invariant operand is passed as is); the tangent scan scans the linear body over
//!   them. Its transpose is a scan in the opposite direction over the transposed body, with
//!   the cotangents of the loop-invariant operands accumulated in the carry.
//! - `while`: the trip count is only known at run time, so residuals cannot be stacked into a
//!   static shape. The tangent op is a `taped_while` that reruns the primal loop and applies
//!   the linear body as it goes; its residuals are the loop's inputs. Its transpose is a
//!   reverse `taped_while`: it reruns the primal loop storing every iteration's residuals on a
//!   tape (a buffer that grows with the trip count: `n · bytes(residuals)`), then runs the
//!   transposed linear body from the last iteration to the first. Reverse mode through a
//!   `while` therefore costs two primal loops and one tape.
//! - `taped_while`: a forward fold is differentiated as a `while` over both carries. The JVP of
//!   a reverse fold is a reverse `taped_while` over primal and tangent values together: its
//!   state holds the primal state and its tangents, its step carry the primal step carry and
//!   its tangents. Its transpose (reverse-over-reverse through a `while`) is a forward fold of
//!   the transposed step for the step carry's cotangents, and a reverse `taped_while` for the
//!   state's cotangents whose forward pass carries the step carry's cotangents next to the
//!   primal state; see `mixed_taped_while_transpose`.
//! - `call` with a checkpoint: the tangent call recomputes the body's primal part from the
//!   call's inputs (and the saved `dot_general` results under [`RematPolicy::DotsOnly`]), so
//!   only those are residuals; its transpose is a checkpointed call of the transposed body.
//! - `call` with a custom JVP rule: the rule's graph is inlined (its tangent outputs must be
//!   linear in the tangents, so reverse mode transposes them).
//! - `call` with a custom VJP rule: `fwd` is inlined and the tangents go through a
//!   `custom_lin` op, whose transpose inlines `bwd`. Forward mode is an error.

use super::{Cotangents, Operand};
use crate::emit::{add, build_graph, finish, inline, or_zeros, push, zeros};
use crate::grad::restrict;
use crate::jvp::{jvp_graph_unchecked, jvp_into};
use crate::linearize::{linear_values, split_general};
use crate::transpose::transpose_into;
use ferrax_ir::ops::control::unstacked;
use ferrax_ir::ops::{Body, CallKind, ControlOp, RematPolicy};
use ferrax_ir::{Builder, Error, ErrorKind, Graph, Op, Result, Type, Value, ValueDef};
use smallvec::SmallVec;

/// The sub-graphs an op holds.
pub fn bodies(op: &ControlOp) -> Vec<&Graph> {
    match op {
        ControlOp::Switch { branches } => branches.iter().map(Body::graph).collect(),
        ControlOp::While { cond, body, .. } => vec![cond.graph(), body.graph()],
        ControlOp::Scan { body, .. } => vec![body.graph()],
        ControlOp::TapedWhile {
            cond, fwd, step, ..
        } => vec![cond.graph(), fwd.graph(), step.graph()],
        ControlOp::CustomLinear { bwd, .. } => vec![bwd.graph()],
        ControlOp::Call { body, kind } => {
            let mut v = vec![body.graph()];
            match kind {
                CallKind::Checkpoint(_) => {}
                CallKind::CustomJvp { rule, .. } => v.push(rule.graph()),
                CallKind::CustomVjp { fwd, bwd, .. } => {
                    v.push(fwd.graph());
                    v.push(bwd.graph());
                }
            }
            v
        }
    }
}

/// A graph linearized with respect to some of its parameters.
pub(crate) struct LinParts {
    /// Parameters: those of the graph; outputs: its outputs, then the residuals.
    pub primal: Graph,
    /// Parameters: the residuals, then one tangent per differentiated parameter; outputs: one
    /// tangent per output (zeros where symbolically zero).
    pub linear: Graph,
    /// The number of residuals.
    pub n_res: usize,
    /// Which output tangents are not symbolically zero.
    pub out_nz: Vec<bool>,
}

/// Linearizes `g` with respect to the float parameters flagged in `nz`.
pub(crate) fn linearize_parts(g: &Graph, nz: &[bool]) -> Result<LinParts> {
    let tys = g.param_types();
    let n = tys.len();
    let nz: Vec<bool> = nz
        .iter()
        .zip(&tys)
        .map(|(&z, t)| z && t.dtype.is_float())
        .collect();
    let mut jt = tys.clone();
    jt.extend(
        tys.iter()
            .zip(&nz)
            .filter(|(_, &z)| z)
            .map(|(t, _)| t.clone()),
    );
    let mut out_nz = Vec::new();
    let j = build_graph(&jt, |b, ps| {
        let mut it = ps[n..].iter();
        let tangents: Vec<Option<Value>> = nz
            .iter()
            .map(|&z| if z { it.next().copied() } else { None })
            .collect();
        let (outs, touts) = jvp_into(b, g, &ps[..n], &tangents)?;
        out_nz = touts.iter().map(Option::is_some).collect();
        let mut res = outs.clone();
        for (&o, t) in outs.iter().zip(touts) {
            let ty = b.ty(o).clone();
            res.push(or_zeros(b, t, &ty)?);
        }
        Ok(res)
    })?;
    let k = g.outputs().len();
    let is_lin: Vec<bool> = (0..jt.len()).map(|i| i >= n).collect();
    let (primal, linear) = split_general(&j, &is_lin, k)?;
    Ok(LinParts {
        n_res: primal.outputs().len() - k,
        primal,
        linear,
        out_nz,
    })
}

/// A sub-graph built by a rule, simplified (dead recomputation dropped) and verified.
fn simplified(g: Graph) -> Result<Body> {
    Ok(Body::new(finish(g)?))
}

fn control(op: ControlOp) -> Op {
    Op::Control(op)
}

fn is_float(b: &Builder, v: Value) -> bool {
    b.ty(v).dtype.is_float()
}

fn types(b: &Builder, vs: &[Value]) -> Vec<Type> {
    vs.iter().map(|&v| b.ty(v).clone()).collect()
}

fn transform_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Transform, msg)
}

/// The primal results of `op(xs)` and their tangents given the operand tangents `ts`.
pub fn jvp(
    b: &mut Builder,
    op: &ControlOp,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let ts: Vec<Option<Value>> = xs
        .iter()
        .zip(ts)
        .map(|(&x, &t)| t.filter(|_| is_float(b, x)))
        .collect();
    if ts.iter().all(Option::is_none) {
        let ys = push(b, control(op.clone()), xs)?.to_vec();
        let n = ys.len();
        return Ok((ys, vec![None; n]));
    }
    match op {
        ControlOp::Switch { branches } => switch_jvp(b, branches, xs, &ts),
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => scan_jvp(
            b,
            body.graph(),
            ScanDims {
                length: *length,
                n_consts: *n_consts,
                n_carry: *n_carry,
                reverse: *reverse,
            },
            xs,
            &ts,
        ),
        ControlOp::While {
            cond,
            body,
            n_consts,
        } => while_jvp(b, op, cond, body.graph(), *n_consts, xs, &ts),
        ControlOp::TapedWhile { .. } => taped_while_jvp(b, op, xs, &ts),
        ControlOp::CustomLinear { n_res, .. } => {
            if ts[..*n_res].iter().any(Option::is_some) {
                return Err(transform_error(
                    "jvp: differentiating the linear map of a custom_vjp function with respect \
                     to its residuals (forward mode over reverse mode through custom_vjp) is not \
                     supported",
                ));
            }
            let ys = push(b, control(op.clone()), xs)?.to_vec();
            let mut args = xs[..*n_res].to_vec();
            for (&x, &t) in xs[*n_res..].iter().zip(&ts[*n_res..]) {
                let ty = b.ty(x).clone();
                args.push(or_zeros(b, t, &ty)?);
            }
            let tys = push(b, control(op.clone()), &args)?;
            Ok((ys, tys.into_iter().map(Some).collect()))
        }
        ControlOp::Call { body, kind } => match kind {
            CallKind::Checkpoint(policy) => checkpoint_jvp(b, op, body.graph(), *policy, xs, &ts),
            CallKind::CustomJvp { rule, n_diff } => {
                custom_jvp_jvp(b, body.graph(), rule.graph(), *n_diff, xs, &ts)
            }
            CallKind::CustomVjp { fwd, bwd, n_diff } => {
                custom_vjp_jvp(b, body.graph(), fwd.graph(), bwd, *n_diff, xs, &ts)
            }
        },
    }
}

/// The static sizes of a scan.
#[derive(Clone, Copy)]
struct ScanDims {
    length: usize,
    n_consts: usize,
    n_carry: usize,
    reverse: bool,
}

fn switch_jvp(
    b: &mut Builder,
    branches: &[Body],
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let nz: Vec<bool> = ts[1..].iter().map(Option::is_some).collect();
    let parts: Vec<LinParts> = branches
        .iter()
        .map(|br| linearize_parts(br.graph(), &nz))
        .collect::<Result<_>>()?;
    let out_tys = branches[0].graph().output_types();
    let k = out_tys.len();
    let out_nz: Vec<bool> = (0..k)
        .map(|j| out_tys[j].dtype.is_float() && parts.iter().any(|p| p.out_nz[j]))
        .collect();
    let res_tys: Vec<Vec<Type>> = parts
        .iter()
        .map(|p| p.primal.output_types()[k..].to_vec())
        .collect();
    let op_tys = types(b, &xs[1..]);
    let mut primal_branches: SmallVec<[Body; 2]> = SmallVec::new();
    for (i, p) in parts.iter().enumerate() {
        let g = build_graph(&op_tys, |bb, ps| {
            let outs = inline(bb, &p.primal, ps)?;
            let mut res = outs[..k].to_vec();
            for (j, tys) in res_tys.iter().enumerate() {
                if j == i {
                    res.extend_from_slice(&outs[k..]);
                } else {
                    for t in tys {
                        res.push(zeros(bb, t)?);
                    }
                }
            }
            Ok(res)
        })?;
        primal_branches.push(simplified(g)?);
    }
    let pres = push(
        b,
        control(ControlOp::Switch {
            branches: primal_branches,
        }),
        xs,
    )?;
    let ys = pres[..k].to_vec();
    if !out_nz.iter().any(|&z| z) {
        return Ok((ys, vec![None; k]));
    }
    let res = &pres[k..];
    let tvals: Vec<Value> = ts[1..].iter().flatten().copied().collect();
    let mut tparams = types(b, res);
    tparams.extend(types(b, &tvals));
    let mut tbranches: SmallVec<[Body; 2]> = SmallVec::new();
    let mut off = 0;
    for (p, tys) in parts.iter().zip(&res_tys) {
        let g = build_graph(&tparams, |bb, ps| {
            let mut args = ps[off..off + tys.len()].to_vec();
            args.extend_from_slice(&ps[res.len()..]);
            let touts = inline(bb, &p.linear, &args)?;
            Ok(touts
                .into_iter()
                .zip(&out_nz)
                .filter(|(_, &z)| z)
                .map(|(t, _)| t)
                .collect())
        })?;
        off += tys.len();
        tbranches.push(simplified(g)?);
    }
    let mut targs = vec![xs[0]];
    targs.extend_from_slice(res);
    targs.extend_from_slice(&tvals);
    let tres = push(
        b,
        control(ControlOp::Switch {
            branches: tbranches,
        }),
        &targs,
    )?;
    let mut it = tres.into_iter();
    let touts = out_nz
        .iter()
        .map(|&z| if z { it.next() } else { None })
        .collect();
    Ok((ys, touts))
}

/// Linearizes a loop body with respect to the flagged operands, growing the set of carries
/// with nonzero tangents until it is closed under the body (carry `c` has a nonzero tangent
/// when its initial tangent or its tangent after any iteration may be nonzero).
fn loop_fixpoint(
    body: &Graph,
    nz: &mut [bool],
    n_consts: usize,
    n_carry: usize,
) -> Result<LinParts> {
    loop {
        let parts = linearize_parts(body, nz)?;
        let mut changed = false;
        for c in 0..n_carry {
            if parts.out_nz[c] && !nz[n_consts + c] {
                nz[n_consts + c] = true;
                changed = true;
            }
        }
        if !changed {
            return Ok(parts);
        }
    }
}

fn scan_jvp(
    b: &mut Builder,
    body: &Graph,
    d: ScanDims,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let (nc, nk) = (d.n_consts, d.n_carry);
    let tys = body.param_types();
    let mut nz: Vec<bool> = ts
        .iter()
        .zip(&tys)
        .map(|(t, ty)| t.is_some() && ty.dtype.is_float())
        .collect();
    let parts = loop_fixpoint(body, &mut nz, nc, nk)?;
    let n_out = body.outputs().len();
    let ny = n_out - nk;
    let ys_nz: Vec<bool> = parts.out_nz[nk..].to_vec();
    let carry_nz: Vec<bool> = nz[nc..nc + nk].to_vec();
    // A residual that is a loop-invariant operand is passed to the tangent scan as is; every
    // other residual is stacked, one slice per iteration.
    let const_res: Vec<Option<usize>> = parts.primal.outputs()[n_out..]
        .iter()
        .map(|&o| match parts.primal.def(o) {
            ValueDef::Param(i) if (i as usize) < nc => Some(i as usize),
            _ => None,
        })
        .collect();
    let stacked_idx: Vec<usize> = (0..parts.n_res)
        .filter(|&r| const_res[r].is_none())
        .collect();
    let primal_body = build_graph(&tys, |bb, ps| {
        let outs = inline(bb, &parts.primal, ps)?;
        let mut res = outs[..n_out].to_vec();
        res.extend(stacked_idx.iter().map(|&r| outs[n_out + r]));
        Ok(res)
    })?;
    let pres = push(
        b,
        control(ControlOp::Scan {
            body: simplified(primal_body)?,
            length: d.length,
            n_consts: nc,
            n_carry: nk,
            reverse: d.reverse,
        }),
        xs,
    )?;
    let ys = pres[..n_out].to_vec();
    if !carry_nz.iter().chain(&ys_nz).any(|&z| z) {
        return Ok((ys, vec![None; n_out]));
    }
    let res_stacked = &pres[n_out..];
    let res_tys = parts.primal.output_types()[n_out..].to_vec();
    // Operands of the tangent scan: consts [const residuals.., const tangents..], carry
    // [carry tangents..], xs [stacked residuals.., x tangents..].
    let cres: Vec<usize> = const_res.iter().flatten().copied().collect();
    let mut consts: Vec<Value> = cres.iter().map(|&i| xs[i]).collect();
    let mut tconst = Vec::new();
    for i in 0..nc {
        if nz[i] {
            tconst.push(ts[i].expect("nonzero const tangent"));
        }
    }
    consts.extend_from_slice(&tconst);
    let mut carry = Vec::new();
    for c in 0..nk {
        if carry_nz[c] {
            carry.push(or_zeros(b, ts[nc + c], &tys[nc + c])?);
        }
    }
    let mut txs: Vec<Value> = res_stacked.to_vec();
    let n_tx_res = txs.len();
    for i in nc + nk..xs.len() {
        if nz[i] {
            txs.push(ts[i].expect("nonzero x tangent"));
        }
    }
    let mut bparams = types(b, &consts);
    bparams.extend(types(b, &carry));
    for t in types(b, &txs) {
        bparams.push(unstacked(&t, d.length).expect("scanned operand"));
    }
    let (n_cres, n_tc, n_tk) = (cres.len(), tconst.len(), carry.len());
    let tbody = build_graph(&bparams, |bb, ps| {
        let xs_at = n_cres + n_tc + n_tk;
        let mut args = Vec::with_capacity(parts.linear.params().len());
        let (mut ci, mut si) = (0, 0);
        for cr in &const_res {
            if cr.is_some() {
                args.push(ps[ci]);
                ci += 1;
            } else {
                args.push(ps[xs_at + si]);
                si += 1;
            }
        }
        args.extend_from_slice(&ps[n_cres..n_cres + n_tc]);
        args.extend_from_slice(&ps[n_cres + n_tc..xs_at]);
        args.extend_from_slice(&ps[xs_at + n_tx_res..]);
        let touts = inline(bb, &parts.linear, &args)?;
        let mut outs: Vec<Value> = (0..nk).filter(|&c| carry_nz[c]).map(|c| touts[c]).collect();
        outs.extend((0..ny).filter(|&j| ys_nz[j]).map(|j| touts[nk + j]));
        Ok(outs)
    })?;
    debug_assert_eq!(res_tys.len(), parts.n_res);
    let mut targs = consts.clone();
    targs.extend_from_slice(&carry);
    targs.extend_from_slice(&txs);
    let tres = push(
        b,
        control(ControlOp::Scan {
            body: simplified(tbody)?,
            length: d.length,
            n_consts: n_cres + n_tc,
            n_carry: n_tk,
            reverse: d.reverse,
        }),
        &targs,
    )?;
    let mut it = tres.into_iter();
    let touts = carry_nz
        .iter()
        .chain(&ys_nz)
        .map(|&z| if z { it.next() } else { None })
        .collect();
    Ok((ys, touts))
}

fn while_jvp(
    b: &mut Builder,
    op: &ControlOp,
    cond: &Body,
    body: &Graph,
    nc: usize,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let nk = xs.len() - nc;
    let tys = body.param_types();
    let mut nz: Vec<bool> = ts
        .iter()
        .zip(&tys)
        .map(|(t, ty)| t.is_some() && ty.dtype.is_float())
        .collect();
    let parts = loop_fixpoint(body, &mut nz, nc, nk)?;
    let ys = push(b, control(op.clone()), xs)?.to_vec();
    let carry_nz: Vec<bool> = nz[nc..].to_vec();
    if !carry_nz.iter().any(|&z| z) {
        return Ok((ys, vec![None; nk]));
    }
    let res_tys = parts.primal.output_types()[nk..].to_vec();
    let tconst_tys: Vec<Type> = (0..nc).filter(|&i| nz[i]).map(|i| tys[i].clone()).collect();
    let tcarry_tys: Vec<Type> = (0..nk)
        .filter(|&c| carry_nz[c])
        .map(|c| tys[nc + c].clone())
        .collect();
    // The step: (residuals.., const tangents.., carry tangents..) -> (const tangents..,
    // next carry tangents..).
    let mut sparams = res_tys.clone();
    sparams.extend(tconst_tys.iter().cloned());
    sparams.extend(tcarry_tys.iter().cloned());
    let n_res = res_tys.len();
    let n_tc = tconst_tys.len();
    let step = build_graph(&sparams, |bb, ps| {
        let touts = inline(bb, &parts.linear, ps)?;
        let mut outs = ps[n_res..n_res + n_tc].to_vec();
        outs.extend((0..nk).filter(|&c| carry_nz[c]).map(|c| touts[c]));
        Ok(outs)
    })?;
    let mut args = xs.to_vec();
    for i in 0..nc {
        if nz[i] {
            args.push(ts[i].expect("nonzero const tangent"));
        }
    }
    for c in 0..nk {
        if carry_nz[c] {
            args.push(or_zeros(b, ts[nc + c], &tys[nc + c])?);
        }
    }
    let tres = push(
        b,
        control(ControlOp::TapedWhile {
            cond: cond.clone(),
            fwd: Body::new(parts.primal),
            step: simplified(step)?,
            n_consts: nc,
            reverse: false,
        }),
        &args,
    )?;
    let mut it = tres[n_tc..].iter().copied();
    let touts = carry_nz
        .iter()
        .map(|&z| if z { it.next() } else { None })
        .collect();
    Ok((ys, touts))
}

/// Forward mode through a `taped_while`. A forward fold is rewritten as a `while` over both
/// carries and differentiated like one (so reverse mode through a JVP works). A reverse fold
/// becomes a reverse `taped_while` over primal and tangent values together (tangents
/// instantiated), next to the primal op: it serves forward-over-reverse derivatives (the JVP of
/// a gradient through a `while`), and its tangent results are linear in the tangents, with the
/// tangents in its loop state, which `mixed_taped_while_transpose` transposes
/// (reverse-over-reverse).
fn taped_while_jvp(
    b: &mut Builder,
    op: &ControlOp,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let ControlOp::TapedWhile {
        cond,
        fwd,
        step,
        n_consts,
        reverse,
    } = op
    else {
        unreachable!("called for taped_while");
    };
    let nc = *n_consts;
    let ns = cond.graph().params().len();
    let nk = ns - nc;
    let nl = xs.len() - ns;
    let nr = fwd.graph().outputs().len() - nk;
    if !*reverse {
        // A forward fold is a `while` over the carry and the step carry together, whose JVP
        // is split into primal and linear parts, so reverse mode can follow.
        let mut state_tys = cond.graph().param_types();
        state_tys.extend(step.graph().output_types());
        let wcond = build_graph(&state_tys, |bb, ps| inline(bb, cond.graph(), &ps[..ns]))?;
        let wbody = build_graph(&state_tys, |bb, ps| {
            let outs = inline(bb, fwd.graph(), &ps[..ns])?;
            let mut sargs = outs[nk..].to_vec();
            sargs.extend_from_slice(&ps[ns..]);
            let mut next = outs[..nk].to_vec();
            next.extend(inline(bb, step.graph(), &sargs)?);
            Ok(next)
        })?;
        let wcond = simplified(wcond)?;
        let wbody = finish(wbody)?;
        let wop = ControlOp::While {
            cond: wcond.clone(),
            body: Body::new(wbody.clone()),
            n_consts: nc,
        };
        let (ys, touts) = while_jvp(b, &wop, &wcond, &wbody, nc, xs, ts)?;
        return Ok((ys[nk..].to_vec(), touts[nk..].to_vec()));
    }
    let ys = push(b, control(op.clone()), xs)?.to_vec();
    // fwd': (consts, t_consts, carry, t_carry) -> (carry', t_carry', res, t_res).
    let fj = jvp_graph_unchecked(fwd.graph(), ns)?;
    let order: Vec<usize> = (0..nc)
        .chain(ns..ns + nc)
        .chain(nc..ns)
        .chain(ns + nc..2 * ns)
        .collect();
    let outs: Vec<usize> = (0..nk)
        .chain(nk + nr..2 * nk + nr)
        .chain(nk..nk + nr)
        .chain(2 * nk + nr..2 * (nk + nr))
        .collect();
    let fwd2 = restrict(&fj, &order, &outs)?;
    let state_tys = cond.graph().param_types();
    let mut cparams: Vec<Type> = state_tys[..nc].to_vec();
    cparams.extend_from_slice(&state_tys[..nc]);
    cparams.extend_from_slice(&state_tys[nc..]);
    cparams.extend_from_slice(&state_tys[nc..]);
    let cond2 = build_graph(&cparams, |bb, ps| {
        let mut args = ps[..nc].to_vec();
        args.extend_from_slice(&ps[2 * nc..2 * nc + nk]);
        inline(bb, cond.graph(), &args)
    })?;
    // step': (res, t_res, lcarry, t_lcarry) -> (lcarry', t_lcarry').
    let sj = jvp_graph_unchecked(step.graph(), nr + nl)?;
    let sorder: Vec<usize> = (0..nr)
        .chain(nr + nl..2 * nr + nl)
        .chain(nr..nr + nl)
        .chain(2 * nr + nl..2 * (nr + nl))
        .collect();
    let step2 = restrict(&sj, &sorder, &(0..2 * nl).collect::<Vec<_>>())?;
    let tan = |b: &mut Builder, i: usize| -> Result<Value> {
        let ty = b.ty(xs[i]).clone();
        or_zeros(b, ts[i], &ty)
    };
    let mut args: Vec<Value> = xs[..nc].to_vec();
    for i in 0..nc {
        args.push(tan(b, i)?);
    }
    args.extend_from_slice(&xs[nc..ns]);
    for i in nc..ns {
        args.push(tan(b, i)?);
    }
    args.extend_from_slice(&xs[ns..]);
    for i in ns..xs.len() {
        args.push(tan(b, i)?);
    }
    let res = push(
        b,
        control(ControlOp::TapedWhile {
            cond: simplified(cond2)?,
            fwd: simplified(fwd2)?,
            step: simplified(step2)?,
            n_consts: 2 * nc,
            reverse: *reverse,
        }),
        &args,
    )?;
    let touts = res[nl..].iter().map(|&t| Some(t)).collect();
    Ok((ys, touts))
}

/// Copies `g` into `b` at `args`, except that the results of instruction number `k` for which
/// `subst(k)` gives values take those values instead; returns the value of every value of `g`
/// in `b`.
fn copy_env(
    b: &mut Builder,
    g: &Graph,
    args: &[Value],
    mut subst: impl FnMut(usize) -> Option<Vec<Value>>,
) -> Result<Vec<Option<Value>>> {
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (&p, &a) in g.params().iter().zip(args) {
        map[p.index()] = Some(a);
    }
    for (k, (_, inst)) in g.insts().enumerate() {
        let outs = match subst(k) {
            Some(vs) => vs,
            None => {
                let ins: Vec<Value> = inst
                    .args
                    .iter()
                    .map(|a| map[a.index()].expect("verified graph"))
                    .collect();
                push(b, inst.op.clone(), &ins)?.to_vec()
            }
        };
        for (&r, o) in inst.results.iter().zip(outs) {
            map[r.index()] = Some(o);
        }
    }
    Ok(map)
}

/// The values of `vs` (values of the copied graph) in a copy's map.
fn lookup(map: &[Option<Value>], vs: &[Value]) -> Vec<Value> {
    vs.iter()
        .map(|v| map[v.index()].expect("copied value"))
        .collect()
}

fn checkpoint_jvp(
    b: &mut Builder,
    op: &ControlOp,
    body: &Graph,
    policy: RematPolicy,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let nz: Vec<bool> = ts.iter().map(Option::is_some).collect();
    let parts = linearize_parts(body, &nz)?;
    let k = body.outputs().len();
    let out_nz: Vec<bool> = parts.out_nz.clone();
    if !out_nz.iter().any(|&z| z) {
        let ys = push(b, control(op.clone()), xs)?.to_vec();
        return Ok((ys, vec![None; k]));
    }
    let tvals: Vec<Value> = ts.iter().flatten().copied().collect();
    let in_tys = types(b, xs);
    // The instructions of the primal part whose results are saved (dot products under the
    // DotsOnly policy).
    let saved: Vec<usize> = match policy {
        RematPolicy::Nothing => Vec::new(),
        RematPolicy::DotsOnly => parts
            .primal
            .insts()
            .enumerate()
            .filter(|(_, (_, inst))| matches!(inst.op, Op::Dot(_)))
            .map(|(k, _)| k)
            .collect(),
    };
    let saved_vals: Vec<Value> = saved
        .iter()
        .map(|&k| parts.primal.inst(ferrax_ir::Inst::from_index(k)).results[0])
        .collect();
    let (ys, saved_args) = if saved.is_empty() {
        (push(b, control(op.clone()), xs)?.to_vec(), Vec::new())
    } else {
        let pbody = build_graph(&in_tys, |bb, ps| {
            let map = copy_env(bb, &parts.primal, ps, |_| None)?;
            let mut res = lookup(&map, &parts.primal.outputs()[..k]);
            res.extend(lookup(&map, &saved_vals));
            Ok(res)
        })?;
        let r = push(
            b,
            control(ControlOp::Call {
                body: simplified(pbody)?,
                kind: CallKind::Checkpoint(policy),
            }),
            xs,
        )?;
        (r[..k].to_vec(), r[k..].to_vec())
    };
    // The tangent call: (inputs.., saved.., tangents..) -> tangents; it recomputes the primal
    // part (but the saved results) and applies the linear part.
    let mut lparams = in_tys.clone();
    lparams.extend(types(b, &saved_args));
    lparams.extend(types(b, &tvals));
    let n_in = xs.len();
    let n_saved = saved.len();
    let lbody = build_graph(&lparams, |bb, ps| {
        let map = copy_env(bb, &parts.primal, &ps[..n_in], |i| {
            saved
                .iter()
                .position(|&s| s == i)
                .map(|j| vec![ps[n_in + j]])
        })?;
        let mut args = lookup(&map, &parts.primal.outputs()[k..]);
        args.extend_from_slice(&ps[n_in + n_saved..]);
        let touts = inline(bb, &parts.linear, &args)?;
        Ok(touts
            .into_iter()
            .zip(&out_nz)
            .filter(|(_, &z)| z)
            .map(|(t, _)| t)
            .collect())
    })?;
    let mut targs = xs.to_vec();
    targs.extend_from_slice(&saved_args);
    targs.extend_from_slice(&tvals);
    let tres = push(
        b,
        control(ControlOp::Call {
            body: simplified(lbody)?,
            kind: CallKind::Checkpoint(policy),
        }),
        &targs,
    )?;
    let mut it = tres.into_iter();
    let touts = out_nz
        .iter()
        .map(|&z| if z { it.next() } else { None })
        .collect();
    Ok((ys, touts))
}

fn closure_tangent_error(kind: &str) -> Error {
    transform_error(format!(
        "{kind}: differentiating with respect to a value the function closes over is not \
         supported; pass it as an explicit argument"
    ))
}

fn custom_jvp_jvp(
    b: &mut Builder,
    body: &Graph,
    rule: &Graph,
    n_diff: usize,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    if ts[n_diff..].iter().any(Option::is_some) {
        return Err(closure_tangent_error("custom_jvp"));
    }
    let k = body.outputs().len();
    let mut args = xs.to_vec();
    for (&x, &t) in xs[..n_diff].iter().zip(ts) {
        let ty = b.ty(x).clone();
        args.push(or_zeros(b, t, &ty)?);
    }
    let outs = inline(b, rule, &args)?;
    let ys = outs[..k].to_vec();
    let touts = outs[k..]
        .iter()
        .zip(&ys)
        .map(|(&t, &y)| is_float(b, y).then_some(t))
        .collect();
    Ok((ys, touts))
}

fn custom_vjp_jvp(
    b: &mut Builder,
    body: &Graph,
    fwd: &Graph,
    bwd: &Body,
    n_diff: usize,
    xs: &[Value],
    ts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    if ts[n_diff..].iter().any(Option::is_some) {
        return Err(closure_tangent_error("custom_vjp"));
    }
    let k = body.outputs().len();
    let outs = inline(b, fwd, xs)?;
    let ys = outs[..k].to_vec();
    let mut args = outs[k..].to_vec();
    let n_res = args.len();
    for (&x, &t) in xs[..n_diff].iter().zip(ts) {
        let ty = b.ty(x).clone();
        args.push(or_zeros(b, t, &ty)?);
    }
    let tres = push(
        b,
        control(ControlOp::CustomLinear {
            bwd: bwd.clone(),
            n_res,
        }),
        &args,
    )?;
    let touts = tres
        .iter()
        .zip(&ys)
        .map(|(&t, &y)| is_float(b, y).then_some(t))
        .collect();
    Ok((ys, touts))
}

/// A copy of `g` whose parameters are ordered non-linear first (`linear[i]` false), then
/// linear; returns it with the two index lists.
fn linear_last(g: &Graph, linear: &[bool]) -> Result<(Graph, Vec<usize>, Vec<usize>)> {
    let nl: Vec<usize> = (0..linear.len()).filter(|&i| !linear[i]).collect();
    let li: Vec<usize> = (0..linear.len()).filter(|&i| linear[i]).collect();
    let order: Vec<usize> = nl.iter().chain(&li).copied().collect();
    let all: Vec<usize> = (0..g.outputs().len()).collect();
    Ok((restrict(g, &order, &all)?, nl, li))
}

/// The transpose of `g` with respect to its parameters flagged `linear`: a graph of
/// `[non-linear params.., cotangents of the outputs flagged in has_ct..]` returning one
/// cotangent per linear parameter (zeros where symbolically zero).
fn transpose_body(g: &Graph, linear: &[bool], has_ct: &[bool]) -> Result<Graph> {
    let (perm, nl, li) = linear_last(g, linear)?;
    let tys = g.param_types();
    let out_tys = g.output_types();
    let mut params: Vec<Type> = nl.iter().map(|&i| tys[i].clone()).collect();
    params.extend(
        out_tys
            .iter()
            .zip(has_ct)
            .filter(|(_, &h)| h)
            .map(|(t, _)| t.clone()),
    );
    build_graph(&params, |bb, ps| {
        let mut it = ps[nl.len()..].iter().copied();
        let cts: Vec<Option<Value>> = has_ct
            .iter()
            .map(|&h| if h { it.next() } else { None })
            .collect();
        let cin = transpose_into(bb, &perm, nl.len(), &ps[..nl.len()], &cts)?;
        cin.into_iter()
            .zip(&li)
            .map(|(c, &i)| or_zeros(bb, c, &tys[i]))
            .collect()
    })
}

/// The cotangents of the linear operands of `op(args)` given the cotangents `cts` of its
/// results (`None` for symbolic zeros).
pub fn transpose(
    b: &mut Builder,
    op: &ControlOp,
    args: &[Operand],
    cts: &[Option<Value>],
) -> Result<Cotangents> {
    let linear: Vec<bool> = args.iter().map(Operand::is_linear).collect();
    let primal_vals = |idx: &[usize]| -> Vec<Value> {
        idx.iter()
            .map(|&i| args[i].primal().expect("non-linear operand"))
            .collect()
    };
    match op {
        ControlOp::Switch { branches } => {
            if linear[0] {
                return Err(super::not_linear("switch (its index)"));
            }
            let has_ct: Vec<bool> = cts.iter().map(Option::is_some).collect();
            let mut tb: SmallVec<[Body; 2]> = SmallVec::new();
            for br in branches {
                tb.push(simplified(transpose_body(
                    br.graph(),
                    &linear[1..],
                    &has_ct,
                )?)?);
            }
            let nl: Vec<usize> = (1..args.len()).filter(|&i| !linear[i]).collect();
            let mut targs = vec![args[0].primal().expect("primal index")];
            targs.extend(primal_vals(&nl));
            targs.extend(cts.iter().flatten().copied());
            let res = push(b, control(ControlOp::Switch { branches: tb }), &targs)?;
            let mut it = res.into_iter();
            Ok(linear
                .iter()
                .map(|&l| if l { it.next() } else { None })
                .collect())
        }
        ControlOp::Call { body, kind } => {
            let has_ct: Vec<bool> = cts.iter().map(Option::is_some).collect();
            let tb = transpose_body(body.graph(), &linear, &has_ct)?;
            let nl: Vec<usize> = (0..args.len()).filter(|&i| !linear[i]).collect();
            let mut targs = primal_vals(&nl);
            targs.extend(cts.iter().flatten().copied());
            let res = match kind {
                CallKind::Checkpoint(policy) => push(
                    b,
                    control(ControlOp::Call {
                        body: simplified(tb)?,
                        kind: CallKind::Checkpoint(*policy),
                    }),
                    &targs,
                )?
                .to_vec(),
                CallKind::CustomJvp { .. } | CallKind::CustomVjp { .. } => inline(b, &tb, &targs)?,
            };
            let mut it = res.into_iter();
            Ok(linear
                .iter()
                .map(|&l| if l { it.next() } else { None })
                .collect())
        }
        ControlOp::CustomLinear { bwd, n_res } => {
            if linear[..*n_res].iter().any(|&l| l) {
                return Err(super::not_linear("custom_lin (its residuals)"));
            }
            let mut bargs = primal_vals(&(0..*n_res).collect::<Vec<_>>());
            let out_tys = bwd.graph().param_types()[*n_res..].to_vec();
            for (c, ty) in cts.iter().zip(&out_tys) {
                bargs.push(or_zeros(b, *c, ty)?);
            }
            let res = inline(b, bwd.graph(), &bargs)?;
            let mut out: Cotangents = (0..*n_res).map(|_| None).collect();
            out.extend(
                res.into_iter()
                    .zip(&linear[*n_res..])
                    .map(|(c, &l)| l.then_some(c)),
            );
            Ok(out)
        }
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => scan_transpose(
            b,
            body.graph(),
            ScanDims {
                length: *length,
                n_consts: *n_consts,
                n_carry: *n_carry,
                reverse: *reverse,
            },
            args,
            cts,
        ),
        ControlOp::TapedWhile { .. } => taped_while_transpose(b, op, args, cts),
        ControlOp::While { .. } => Err(transform_error(
            "transpose: a `while` loop is not linear in its operands; reverse mode goes \
             through its JVP (a taped_while)",
        )),
    }
}

/// A copy of `g` whose parameters are those of `g` listed in `keep` (in that order), the others
/// bound to zeros, and whose outputs are the listed outputs of `g`. Used to drop parameters that
/// the listed outputs do not depend on.
fn keep_params(g: &Graph, keep: &[usize], outs: &[usize]) -> Result<Graph> {
    let tys = g.param_types();
    let ptys: Vec<Type> = keep.iter().map(|&i| tys[i].clone()).collect();
    let kept = build_graph(&ptys, |bb, ps| {
        let mut args = Vec::with_capacity(tys.len());
        for (i, t) in tys.iter().enumerate() {
            args.push(match keep.iter().position(|&k| k == i) {
                Some(j) => ps[j],
                None => zeros(bb, t)?,
            });
        }
        let o = inline(bb, g, &args)?;
        Ok(outs.iter().map(|&k| o[k]).collect())
    })?;
    finish(kept)
}

/// Which outputs of `g` depend on the parameters flagged in `flags`.
fn output_deps(g: &Graph, flags: &[bool]) -> Vec<bool> {
    let dep = linear_values(g, |i| flags[i]);
    g.outputs().iter().map(|o| dep[o.index()]).collect()
}

/// Grows `flags` (over the parameters of `g`, whose outputs `0..n_out` update parameters
/// `at..at + n_out`) until no updated parameter that is unflagged depends on a flagged one.
fn close_deps(g: &Graph, flags: &mut [bool], at: usize, n_out: usize) {
    loop {
        let dep = output_deps(g, flags);
        let mut changed = false;
        for k in 0..n_out {
            if dep[k] && !flags[at + k] {
                flags[at + k] = true;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn indices(flags: &[bool], want: bool) -> Vec<usize> {
    (0..flags.len()).filter(|&i| flags[i] == want).collect()
}

fn pick<T: Clone>(xs: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| xs[i].clone()).collect()
}

/// The transpose of a `taped_while`.
///
/// When no state operand (loop-invariant or carried) is linear, the op is a fold of a linear
/// step over a tape of primal residuals, and its transpose folds the transposed step over the
/// same tape in the other direction.
///
/// Otherwise (the JVP of a reverse fold, on the way to reverse-over-reverse) see
/// [`mixed_taped_while_transpose`].
fn taped_while_transpose(
    b: &mut Builder,
    op: &ControlOp,
    args: &[Operand],
    cts: &[Option<Value>],
) -> Result<Cotangents> {
    let ControlOp::TapedWhile {
        cond,
        fwd,
        step,
        n_consts,
        reverse,
    } = op
    else {
        unreachable!("called for taped_while");
    };
    let linear: Vec<bool> = args.iter().map(Operand::is_linear).collect();
    let ns = cond.graph().params().len();
    let nc = *n_consts;
    // The state values that are linear: the linear operands, and the carries the forward body
    // makes depend on them.
    let mut lin_s = linear[..ns].to_vec();
    close_deps(fwd.graph(), &mut lin_s, nc, ns - nc);
    if lin_s.iter().any(|&l| l) {
        return mixed_taped_while_transpose(b, op, args, &lin_s, cts);
    }
    let nl = args.len() - ns;
    let nr = step.graph().params().len() - nl;
    let mut lin_step = vec![false; nr];
    lin_step.extend(std::iter::repeat_n(true, nl));
    let tstep = transpose_body(step.graph(), &lin_step, &vec![true; nl])?;
    let mut targs: Vec<Value> = args[..ns]
        .iter()
        .map(|a| a.primal().expect("non-linear operand"))
        .collect();
    let step_tys = step.graph().output_types();
    for (c, ty) in cts.iter().zip(&step_tys) {
        targs.push(or_zeros(b, *c, ty)?);
    }
    let res = push(
        b,
        control(ControlOp::TapedWhile {
            cond: cond.clone(),
            fwd: fwd.clone(),
            step: simplified(tstep)?,
            n_consts: nc,
            reverse: !*reverse,
        }),
        &targs,
    )?;
    let mut out: Cotangents = (0..ns).map(|_| None).collect();
    out.extend(
        res.into_iter()
            .zip(&linear[ns..])
            .map(|(c, &l)| l.then_some(c)),
    );
    Ok(out)
}

/// The transpose of a reverse `taped_while` whose state is partly linear, as the JVP of a
/// reverse fold produces (its state holds primal values `P` and tangents `T`, its step carry
/// primal values `Λ` and tangents `Θ`). Writing iteration `i`'s tape entry as primal `r_i` and
/// linear `t_i = C_i T_{i-1}` (with `T_i = A_i T_{i-1}`), and the step as
/// `Λ ← g(r_i, Λ)`, `Θ ← D(r_i) Θ + E(r_i, Λ) t_i` applied from the last iteration to the
/// first, the cotangent `w` of the final `Θ` gives:
///
/// - for the initial `Θ`: `λ_n`, where `λ_0 = w` and `λ_i = D(r_i)ᵀ λ_{i-1}` — a forward fold
///   of the transposed step over the primal tape;
/// - for the initial `T`: the reverse fold `τ ← A_iᵀ τ + C_iᵀ E(r_i, Λ_i)ᵀ λ_{i-1}` from
///   `τ = 0`, where `Λ_i` is the primal step carry at iteration `i`. `Λ_i` is only known going
///   backwards and `λ_{i-1}` going forwards, so this is a reverse `taped_while` whose forward
///   pass carries `λ` next to the primal state and records `λ_{i-1}` with the residuals, and
///   whose step carries `Λ` and `τ` (and the cotangents of the linear loop invariants). It has
///   the same form (linear state, mixed step carry), so it can be transposed again.
///
/// This needs `D` not to depend on `Λ`, which holds when the original step is linear in its
/// carry (as every reverse fold that transposition produces is); otherwise it is an error.
fn mixed_taped_while_transpose(
    b: &mut Builder,
    op: &ControlOp,
    args: &[Operand],
    lin_s: &[bool],
    cts: &[Option<Value>],
) -> Result<Cotangents> {
    let ControlOp::TapedWhile {
        cond,
        fwd,
        step,
        n_consts,
        reverse,
    } = op
    else {
        unreachable!("called for taped_while");
    };
    let unsupported = |what: &str| {
        transform_error(format!(
            "transpose: taped_while with linear loop state (reverse mode through the derivative \
             of a while_loop): {what}"
        ))
    };
    if !*reverse {
        return Err(unsupported("a forward fold is not supported"));
    }
    let linear: Vec<bool> = args.iter().map(Operand::is_linear).collect();
    let (cond, fwd, step) = (cond.graph(), fwd.graph(), step.graph());
    let nc = *n_consts;
    let ns = lin_s.len();
    let nk = ns - nc;
    let nl = args.len() - ns;
    let nr = fwd.outputs().len() - nk;
    if output_deps(cond, lin_s)[0] {
        return Err(unsupported("the loop condition depends on a tangent"));
    }
    let lin_r = output_deps(fwd, lin_s)[nk..].to_vec();
    let mut lin_sp = lin_r.clone();
    lin_sp.extend_from_slice(&linear[ns..]);
    close_deps(step, &mut lin_sp, nr, nl);
    // A result that depends on no linear operand (a primal value, or a tangent that stays
    // zero) is a constant of the linear graph: its cotangent is dropped.
    let lin_l = lin_sp[nr..].to_vec();
    let state_tys = cond.param_types();
    let tape_tys = fwd.output_types()[nk..].to_vec();
    let l_tys = step.output_types();
    // State: primal consts `pc`, linear consts `tc`, primal carries `pk`, linear carries `tk`
    // (operand indices). Tape: primal `rp`, linear `rt`. Step carry: primal `lam`, linear `th`.
    let pc = indices(&lin_s[..nc], false);
    let tc = indices(&lin_s[..nc], true);
    let pk: Vec<usize> = (nc..ns).filter(|&i| !lin_s[i]).collect();
    let tk: Vec<usize> = (nc..ns).filter(|&i| lin_s[i]).collect();
    let (rp, rt) = (indices(&lin_r, false), indices(&lin_r, true));
    let (lam, th) = (indices(&lin_l, false), indices(&lin_l, true));
    let p_idx: Vec<usize> = pc.iter().chain(&pk).copied().collect();
    let pk_out: Vec<usize> = pk.iter().map(|&i| i - nc).collect();

    // The primal loop: cond and fwd on the primal state only.
    let cond_p = keep_params(cond, &p_idx, &[0])?;
    let mut fp_outs = pk_out.clone();
    fp_outs.extend(rp.iter().map(|&r| nk + r));
    let fwd_p = keep_params(fwd, &p_idx, &fp_outs)?;
    // The step transposed in its linear parameters: (r.., Λ.., Θ cotangents..) -> (t
    // cotangents.., Θ cotangents..); `d_t` is its Θ part, which must not depend on Λ.
    let all_sp: Vec<usize> = (0..nr + nl).collect();
    let step_th = restrict(step, &all_sp, &th)?;
    let tstep = finish(transpose_body(&step_th, &lin_sp, &vec![true; th.len()])?)?;
    let mut lam_flags = vec![false; tstep.params().len()];
    for f in &mut lam_flags[rp.len()..rp.len() + lam.len()] {
        *f = true;
    }
    if output_deps(&tstep, &lam_flags)[rt.len()..]
        .iter()
        .any(|&d| d)
    {
        return Err(unsupported(
            "the step's linear part depends on its primal carry (the step is not linear in its \
             carry)",
        ));
    }
    let mut dt_keep: Vec<usize> = (0..rp.len()).collect();
    dt_keep.extend(rp.len() + lam.len()..tstep.params().len());
    let dt_outs: Vec<usize> = (rt.len()..rt.len() + th.len()).collect();
    let d_t = keep_params(&tstep, &dt_keep, &dt_outs)?;
    let th_tys = pick(&l_tys, &th);
    let rp_tys = pick(&tape_tys, &rp);
    let p_vals: Vec<Value> = p_idx
        .iter()
        .map(|&i| args[i].primal().expect("primal state operand"))
        .collect();
    let mut w = Vec::with_capacity(th.len());
    for (&j, ty) in th.iter().zip(&th_tys) {
        w.push(or_zeros(b, cts[j], ty)?);
    }
    let mut out: Cotangents = (0..args.len()).map(|_| None).collect();

    // The cotangents of the initial Θ: a forward fold of the transposed step.
    if th.iter().any(|&j| linear[ns + j]) {
        let mut sparams = rp_tys.clone();
        sparams.extend(th_tys.iter().cloned());
        let step_a = build_graph(&sparams, |bb, ps| inline(bb, &d_t, ps))?;
        let mut targs = p_vals.clone();
        targs.extend_from_slice(&w);
        let res = push(
            b,
            control(ControlOp::TapedWhile {
                cond: Body::new(cond_p.clone()),
                fwd: Body::new(fwd_p.clone()),
                step: simplified(step_a)?,
                n_consts: pc.len(),
                reverse: false,
            }),
            &targs,
        )?;
        for (&j, c) in th.iter().zip(res) {
            if linear[ns + j] {
                out[ns + j] = Some(c);
            }
        }
    }

    // The cotangents of the initial T: a reverse fold with λ in the forward state.
    if (0..ns).any(|i| linear[i]) {
        // The linear part of fwd, split into its residuals `P.. -> res..` (recorded on the
        // tape) and its transpose `(res.., T' cotangents.., t cotangents..) -> (cotangents of
        // the linear consts.., of the linear carries..)`.
        let mut fl_outs: Vec<usize> = tk.iter().map(|&i| i - nc).collect();
        fl_outs.extend(rt.iter().map(|&r| nk + r));
        let fwd_l = restrict(fwd, &(0..ns).collect::<Vec<_>>(), &fl_outs)?;
        let (fwd_res, fwd_lin) = split_general(&fwd_l, lin_s, 0)?;
        let nfr = fwd_res.outputs().len();
        let mut lin_fl = vec![false; nfr];
        lin_fl.extend(std::iter::repeat_n(true, tc.len() + tk.len()));
        let tfwd = finish(transpose_body(
            &fwd_lin,
            &lin_fl,
            &vec![true; fl_outs.len()],
        )?)?;
        let fres_tys = fwd_res.output_types();
        let mut lam_keep = rp.clone();
        lam_keep.extend(lam.iter().map(|&j| nr + j));
        let step_p = keep_params(step, &lam_keep, &lam)?;
        let pc_tys = pick(&state_tys, &pc);
        let pk_tys = pick(&state_tys, &pk);
        let tc_tys = pick(&state_tys, &tc);
        let tk_tys = pick(&state_tys, &tk);
        let lam_tys = pick(&l_tys, &lam);
        let (npc, npk, nth, nrp) = (pc.len(), pk.len(), th.len(), rp.len());
        // State (P consts.., P carries.., λ..).
        let mut bstate = pc_tys.clone();
        bstate.extend(pk_tys.iter().cloned());
        bstate.extend(th_tys.iter().cloned());
        let cond_b = build_graph(&bstate, |bb, ps| inline(bb, &cond_p, &ps[..npc + npk]))?;
        // fwd: -> (P carries'.., λ'.., tape: res.., r.., λ..).
        let fwd_b = build_graph(&bstate, |bb, ps| {
            let o = inline(bb, &fwd_p, &ps[..npc + npk])?;
            let mut dargs = o[npk..].to_vec();
            dargs.extend_from_slice(&ps[npc + npk..]);
            let lam_next = inline(bb, &d_t, &dargs)?;
            let mut outs = o[..npk].to_vec();
            outs.extend(lam_next);
            outs.extend(inline(bb, &fwd_res, &ps[..npc + npk])?);
            outs.extend_from_slice(&o[npk..]);
            outs.extend_from_slice(&ps[npc + npk..]);
            Ok(outs)
        })?;
        // step: (res.., r.., λ.., Λ.., τ consts.., τ carries..) -> (Λ'.., τ consts'.., τ
        // carries'..), linear in its carry (Λ.., τ..) when the original step is.
        let mut sparams = fres_tys.clone();
        sparams.extend(rp_tys.iter().cloned());
        sparams.extend(th_tys.iter().cloned());
        sparams.extend(lam_tys.iter().cloned());
        sparams.extend(tc_tys.iter().cloned());
        sparams.extend(tk_tys.iter().cloned());
        let step_b = build_graph(&sparams, |bb, ps| {
            let (res_v, rest) = ps.split_at(nfr);
            let (r_v, rest) = rest.split_at(nrp);
            let (lam_pre, rest) = rest.split_at(nth);
            let (lam_v, rest) = rest.split_at(lam.len());
            let (tauc, tauk) = rest.split_at(tc.len());
            let mut sargs = r_v.to_vec();
            sargs.extend_from_slice(lam_v);
            let lam_next = inline(bb, &step_p, &sargs)?;
            sargs.extend_from_slice(lam_pre);
            let rho = inline(bb, &tstep, &sargs)?;
            let mut targs = res_v.to_vec();
            targs.extend_from_slice(tauk);
            targs.extend_from_slice(&rho[..rt.len()]);
            let c = inline(bb, &tfwd, &targs)?;
            let mut outs = lam_next;
            for (&acc, &ci) in tauc.iter().zip(&c[..tc.len()]) {
                outs.push(add(bb, acc, ci)?);
            }
            outs.extend_from_slice(&c[tc.len()..]);
            Ok(outs)
        })?;
        let mut targs = p_vals.clone();
        targs.extend_from_slice(&w);
        targs.extend(
            lam.iter()
                .map(|&j| args[ns + j].primal().expect("primal step carry")),
        );
        for ty in tc_tys.iter().chain(&tk_tys) {
            targs.push(zeros(b, ty)?);
        }
        let res = push(
            b,
            control(ControlOp::TapedWhile {
                cond: simplified(cond_b)?,
                fwd: simplified(fwd_b)?,
                step: simplified(step_b)?,
                n_consts: npc,
                reverse: true,
            }),
            &targs,
        )?;
        let taus = &res[lam.len()..];
        for (&i, &c) in tc.iter().chain(&tk).zip(taus) {
            if linear[i] {
                out[i] = Some(c);
            }
        }
    }
    Ok(out)
}

fn scan_transpose(
    b: &mut Builder,
    body: &Graph,
    d: ScanDims,
    args: &[Operand],
    cts: &[Option<Value>],
) -> Result<Cotangents> {
    let (nc, nk) = (d.n_consts, d.n_carry);
    let nx = args.len() - nc - nk;
    let is_lin = |i: usize| args[i].is_linear();
    // Every carry is treated as linear (a carry that is not, such as a zero initial tangent,
    // gets a cotangent that is dropped).
    let nl_c: Vec<usize> = (0..nc).filter(|&i| !is_lin(i)).collect();
    let l_c: Vec<usize> = (0..nc).filter(|&i| is_lin(i)).collect();
    let nl_x: Vec<usize> = (nc + nk..nc + nk + nx).filter(|&i| !is_lin(i)).collect();
    let l_x: Vec<usize> = (nc + nk..nc + nk + nx).filter(|&i| is_lin(i)).collect();
    let order: Vec<usize> = nl_c
        .iter()
        .chain(&nl_x)
        .chain(&l_c)
        .copied()
        .chain(nc..nc + nk)
        .chain(l_x.iter().copied())
        .collect();
    let all_outs: Vec<usize> = (0..body.outputs().len()).collect();
    let perm = restrict(body, &order, &all_outs)?;
    let btys = body.param_types();
    let out_tys = body.output_types();
    let ny = out_tys.len() - nk;
    let y_ct: Vec<bool> = cts[nk..].iter().map(Option::is_some).collect();
    // Transposed body: consts [nl consts..], carry [const cotangent sums.., carry
    // cotangents..], xs [nl x slices.., y cotangent slices..].
    let mut params: Vec<Type> = nl_c.iter().map(|&i| btys[i].clone()).collect();
    params.extend(l_c.iter().map(|&i| btys[i].clone()));
    params.extend(out_tys[..nk].iter().cloned());
    params.extend(nl_x.iter().map(|&i| btys[i].clone()));
    params.extend(
        (0..ny)
            .filter(|&j| y_ct[j])
            .map(|j| out_tys[nk + j].clone()),
    );
    let (n_nc, n_lc, n_nx) = (nl_c.len(), l_c.len(), nl_x.len());
    let tb = build_graph(&params, |bb, ps| {
        let carry_at = n_nc;
        let xs_at = n_nc + n_lc + nk;
        let mut nl_vals = ps[..n_nc].to_vec();
        nl_vals.extend_from_slice(&ps[xs_at..xs_at + n_nx]);
        let mut cts_in: Vec<Option<Value>> = ps[carry_at + n_lc..xs_at]
            .iter()
            .map(|&p| Some(p))
            .collect();
        let mut it = ps[xs_at + n_nx..].iter().copied();
        cts_in.extend(y_ct.iter().map(|&h| if h { it.next() } else { None }));
        let cin = transpose_into(bb, &perm, n_nc + n_nx, &nl_vals, &cts_in)?;
        let mut outs = Vec::with_capacity(n_lc + nk + l_x.len());
        for j in 0..n_lc {
            let acc = ps[carry_at + j];
            outs.push(match cin[j] {
                Some(c) => add(bb, acc, c)?,
                None => acc,
            });
        }
        for c in 0..nk {
            outs.push(or_zeros(bb, cin[n_lc + c], &btys[nc + c])?);
        }
        for (j, &i) in l_x.iter().enumerate() {
            outs.push(or_zeros(bb, cin[n_lc + nk + j], &btys[i])?);
        }
        Ok(outs)
    })?;
    let prim = |i: usize| args[i].primal().expect("non-linear operand");
    let mut targs: Vec<Value> = nl_c.iter().map(|&i| prim(i)).collect();
    for &i in &l_c {
        targs.push(zeros(b, &btys[i])?);
    }
    for c in 0..nk {
        targs.push(or_zeros(b, cts[c], &out_tys[c])?);
    }
    targs.extend(nl_x.iter().map(|&i| prim(i)));
    targs.extend(cts[nk..].iter().flatten().copied());
    let res = push(
        b,
        control(ControlOp::Scan {
            body: simplified(tb)?,
            length: d.length,
            n_consts: n_nc,
            n_carry: n_lc + nk,
            reverse: !d.reverse,
        }),
        &targs,
    )?;
    let mut out: Cotangents = (0..args.len()).map(|_| None).collect();
    for (j, &i) in l_c.iter().enumerate() {
        out[i] = Some(res[j]);
    }
    for c in 0..nk {
        if is_lin(nc + c) {
            out[nc + c] = Some(res[n_lc + c]);
        }
    }
    for (j, &i) in l_x.iter().enumerate() {
        out[i] = Some(res[n_lc + nk + j]);
    }
    Ok(out)
}
