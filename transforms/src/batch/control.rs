//! Batching rules of control flow and calls: `switch`, `while`, `scan` and `call`.
//!
//! # Conventions
//!
//! - A sub-graph (branch, loop condition or body, called body, custom rule) is batched on its
//!   own with [`batch_body`]: each of its parameters is either batched with the batch
//!   dimension at 0 or unbatched, and each of its outputs is batched at 0 or unbatched. So the
//!   operands of a rebuilt control op carry their batch dimension at 0 (moved there with a
//!   `transpose` when needed), except the scanned operands of `scan`, whose batch dimension is
//!   moved to 1 so that the scanned axis stays leading.
//! - Which carried values are batched is a fixed point, as in JAX: a carry is batched when its
//!   initial value is, or when the body makes it batched from batched inputs; such carries are
//!   broadcast on entry. The same holds for the outputs of `switch` branches (batched when any
//!   branch's is) and of calls whose custom rules must agree with the body.
//! - `switch` with an unbatched index batches every branch and stays a `switch`. With a batched
//!   index every branch runs inline on the whole batch and each result is picked per member
//!   with `select` (the index is clamped first, as the op does), as JAX does; every branch is
//!   evaluated, so a branch that would fail or loop for some member should be avoided.
//! - `while` with an unbatched predicate batches the condition and the body and stays a
//!   `while`. With a batched predicate every carry becomes batched; the loop runs while any
//!   member's predicate holds, and the body updates only members whose predicate still holds
//!   (`select(pred, body(carry), carry)`), so finished members are frozen.
//! - `taped_while` (reverse mode through `while`) follows `while`. With a batched predicate
//!   the forward body also records each member's predicate as one more tape entry, and the
//!   step keeps the step carry of members whose predicate did not hold at that iteration, so
//!   the fold over the tape skips their frozen iterations in either direction.
//! - `custom_lin` (the linear map of a `custom_vjp` call, known by its backward rule) returns
//!   batched tangents; its backward rule is batched with batched cotangents, and a tangent
//!   operand whose cotangent comes out batched is broadcast.
//! - `scan` batches its body; its stacked outputs carry the batch dimension at 1.
//! - `call` batches its body and keeps its kind. A custom JVP rule is batched with the same
//!   batching for its tangent parameters as for the primals they belong to; custom VJP rules
//!   are batched so that the residuals flow from the batched forward rule to the batched
//!   backward rule, and a differentiable operand whose cotangent comes out batched is
//!   broadcast so that the types agree. Derivatives of the batched call therefore still use
//!   the user's rules.

use super::{BatchCtx, Batched};
use crate::passes::dce::dce;
use crate::vmap::batch_into;
use ferrax_ir::ops::{Body, CallKind, CompareOp, ControlOp, ConvertOp, ReduceOp};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Result, Shape, Type, Value};
use smallvec::SmallVec;

/// Batches a control op; at least one operand is batched. Returns one value per result.
pub fn batch(
    op: &ControlOp,
    ctx: &mut BatchCtx<'_>,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    match op {
        ControlOp::Switch { branches } => switch(ctx, branches, args),
        ControlOp::While {
            cond,
            body,
            n_consts,
        } => while_loop(ctx, cond.graph(), body.graph(), *n_consts, args),
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => scan(
            ctx,
            body.graph(),
            *length,
            *n_consts,
            *n_carry,
            *reverse,
            args,
        ),
        ControlOp::TapedWhile {
            cond,
            fwd,
            step,
            n_consts,
            reverse,
        } => taped_while(
            ctx,
            [cond.graph(), fwd.graph(), step.graph()],
            *n_consts,
            *reverse,
            args,
        ),
        ControlOp::CustomLinear { bwd, n_res } => custom_linear(ctx, bwd.graph(), *n_res, args),
        ControlOp::Call { body, kind } => call(ctx, body.graph(), kind, args),
    }
}

/// Batches the sub-graph `g` on its own for a batch of `size`: parameter `i` is batched at 0
/// when `in_batched[i]` holds and unbatched otherwise; a batched output is moved to 0 and an
/// unbatched output `k` is broadcast when `force_out[k]` holds. Returns the new graph and which
/// of its outputs are batched.
pub fn batch_body(
    g: &Graph,
    in_batched: &[bool],
    force_out: &[bool],
    size: usize,
) -> Result<(Graph, Vec<bool>)> {
    let mut b = Builder::new();
    let params: Vec<Batched> = g
        .params()
        .iter()
        .zip(in_batched)
        .map(|(&p, &batched)| {
            let ty = g.ty(p);
            if batched {
                Batched::at(b.param(with_batch(ty, size)), 0)
            } else {
                Batched::unbatched(b.param(ty.clone()))
            }
        })
        .collect();
    let mut ctx = BatchCtx::new(&mut b, size);
    let outs = batch_into(&mut ctx, g, &params)?;
    let mut values = Vec::with_capacity(outs.len());
    let mut batched = Vec::with_capacity(outs.len());
    for (k, &o) in outs.iter().enumerate() {
        let force = force_out.get(k).copied().unwrap_or(false);
        if o.bdim.is_some() || force {
            values.push(ctx.move_bdim(o, 0)?);
            batched.push(true);
        } else {
            values.push(o.value);
            batched.push(false);
        }
    }
    Ok((finish(b, &values)?, batched))
}

/// Finishes a batched sub-graph, dropping the equations batching left unused (such as the
/// unbatched constants an operand was broadcast from).
fn finish(b: Builder, outs: &[Value]) -> Result<Graph> {
    dce(&b.finish(outs))
}

/// `ty` with a batch dimension of `size` in front.
fn with_batch(ty: &Type, size: usize) -> Type {
    let mut dims = Dims::from_slice(&[size]);
    dims.extend_from_slice(ty.dims());
    Type {
        dtype: ty.dtype,
        shape: Shape(dims),
    }
}

/// Which operands are batched.
fn flags(args: &[Batched]) -> Vec<bool> {
    args.iter().map(|a| a.bdim.is_some()).collect()
}

/// `a[i] || b[i]` for every `i`.
fn or(a: &[bool], b: &[bool]) -> Vec<bool> {
    a.iter().zip(b).map(|(&x, &y)| x || y).collect()
}

/// An operand of a rebuilt control op: batched at 0 (broadcast if needed) when `batched`,
/// otherwise the unbatched value itself.
fn operand(ctx: &mut BatchCtx<'_>, x: Batched, batched: bool) -> Result<Value> {
    if batched {
        ctx.move_bdim(x, 0)
    } else {
        Ok(x.value)
    }
}

/// The results of a rebuilt control op: result `k` is batched at `bdim` when `batched[k]`.
fn results(values: &[Value], batched: &[bool], bdim: usize) -> SmallVec<[Batched; 1]> {
    values
        .iter()
        .zip(batched)
        .map(|(&v, &b)| {
            if b {
                Batched::at(v, bdim)
            } else {
                Batched::unbatched(v)
            }
        })
        .collect()
}

/// `select(pred, on_true, on_false)` where `pred` is a per-member bool (shape `[size]`) and
/// both branches are batched at 0.
fn select_members(
    ctx: &mut BatchCtx<'_>,
    pred: Value,
    on_true: Value,
    on_false: Value,
) -> Result<Value> {
    let dims = ctx.ty(on_true).dims().to_vec();
    let p = ctx.broadcast_in_dim(pred, &dims, &[0])?;
    ctx.compare(CompareOp::Select, &[p, on_true, on_false])
}

fn switch(
    ctx: &mut BatchCtx<'_>,
    branches: &[Body],
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let ops = &args[1..];
    let in_b = flags(ops);
    let n_out = branches[0].graph().outputs().len();
    if args[0].bdim.is_some() {
        // A batched index: run every branch on the batch and pick per member.
        let last = (branches.len() - 1) as f64;
        let index = ctx.clamp(args[0].value, 0.0, last)?;
        let mut outs: Vec<Vec<Value>> = Vec::with_capacity(branches.len());
        for br in branches {
            let res = batch_into(ctx, br.graph(), ops)?;
            outs.push(
                res.into_iter()
                    .map(|r| ctx.move_bdim(r, 0))
                    .collect::<Result<_>>()?,
            );
        }
        let mut acc = outs.pop().expect("a switch has at least one branch");
        for (k, branch_outs) in outs.iter().enumerate().rev() {
            let kth = ctx.full(DType::I32, &[size], k as f64)?;
            let pred = ctx.compare(CompareOp::Eq, &[index, kth])?;
            for (slot, &v) in acc.iter_mut().zip(branch_outs) {
                *slot = select_members(ctx, pred, v, *slot)?;
            }
        }
        return Ok(acc.into_iter().map(|v| Batched::at(v, 0)).collect());
    }
    // An unbatched index: batch the branches; an output is batched when any branch's is.
    let mut out_b = vec![false; n_out];
    let bodies = loop {
        let mut next = out_b.clone();
        let mut bodies = SmallVec::<[Body; 2]>::new();
        for br in branches {
            let (g, o) = batch_body(br.graph(), &in_b, &out_b, size)?;
            next = or(&next, &o);
            bodies.push(Body::new(g));
        }
        if next == out_b {
            break bodies;
        }
        out_b = next;
    };
    let mut vals = vec![args[0].value];
    for (&a, &b) in ops.iter().zip(&in_b) {
        vals.push(operand(ctx, a, b)?);
    }
    let res = ctx
        .builder()
        .push(Op::Control(ControlOp::Switch { branches: bodies }), &vals)?;
    Ok(results(&res, &out_b, 0))
}

fn while_loop(
    ctx: &mut BatchCtx<'_>,
    cond: &Graph,
    body: &Graph,
    n_consts: usize,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let consts_b = flags(&args[..n_consts]);
    let mut carry_b = flags(&args[n_consts..]);
    let joined = |carry: &[bool]| [consts_b.as_slice(), carry].concat();
    // A carry is batched when it enters batched or the body makes it batched.
    loop {
        let (_, out) = batch_body(body, &joined(&carry_b), &carry_b, size)?;
        let next = or(&carry_b, &out);
        if next == carry_b {
            break;
        }
        carry_b = next;
    }
    let (cond_g, pred_b) = batch_body(cond, &joined(&carry_b), &[false], size)?;
    if pred_b[0] {
        // Members finish at different iterations, so every carry is per member.
        carry_b = vec![true; carry_b.len()];
    }
    let in_b = joined(&carry_b);
    let vals: Vec<Value> = args
        .iter()
        .zip(&in_b)
        .map(|(&a, &b)| operand(ctx, a, b))
        .collect::<Result<_>>()?;
    let (cond_g, body_g) = if pred_b[0] {
        let tys: Vec<Type> = vals.iter().map(|&v| ctx.ty(v)).collect();
        (
            any_cond(cond, &tys, &in_b, size)?,
            frozen_body(cond, body, &tys, &in_b, n_consts, size)?,
        )
    } else {
        let (body_g, _) = batch_body(body, &in_b, &carry_b, size)?;
        (cond_g, body_g)
    };
    let op = ControlOp::While {
        cond: Body::new(cond_g),
        body: Body::new(body_g),
        n_consts,
    };
    let res = ctx.builder().push(Op::Control(op), &vals)?;
    Ok(results(&res, &carry_b, 0))
}

/// Parameters of the given types, batched at 0 where `in_b` says so.
fn batched_params(b: &mut Builder, tys: &[Type], in_b: &[bool]) -> Vec<Batched> {
    tys.iter()
        .zip(in_b)
        .map(|(t, &batched)| {
            let v = b.param(t.clone());
            if batched {
                Batched::at(v, 0)
            } else {
                Batched::unbatched(v)
            }
        })
        .collect()
}

/// The per-member predicate of `cond` on batched parameters, as a bool of shape `[size]`.
fn member_pred(ctx: &mut BatchCtx<'_>, cond: &Graph, params: &[Batched]) -> Result<Value> {
    let pred = batch_into(ctx, cond, params)?;
    ctx.move_bdim(pred[0], 0)
}

/// The condition of a loop with a batched predicate: whether any member's predicate holds.
fn any_cond(cond: &Graph, tys: &[Type], in_b: &[bool], size: usize) -> Result<Graph> {
    let mut b = Builder::new();
    let params = batched_params(&mut b, tys, in_b);
    let mut ctx = BatchCtx::new(&mut b, size);
    let pred = member_pred(&mut ctx, cond, &params)?;
    let as_int = ctx.push1(Op::Convert(ConvertOp::Convert(DType::I32)), &[pred])?;
    let most = ctx.push1(
        Op::Reduce(ReduceOp::Max {
            axes: Dims::from_slice(&[0]),
        }),
        &[as_int],
    )?;
    let zero = ctx.builder().constant(Array::scalar(DType::I32, 0.0));
    let any = ctx.compare(CompareOp::Gt, &[most, zero])?;
    finish(b, &[any])
}

/// The body of a loop with a batched predicate: members whose predicate still holds take the
/// body's new carry, the others keep theirs.
fn frozen_body(
    cond: &Graph,
    body: &Graph,
    tys: &[Type],
    in_b: &[bool],
    n_consts: usize,
    size: usize,
) -> Result<Graph> {
    let mut b = Builder::new();
    let params = batched_params(&mut b, tys, in_b);
    let mut ctx = BatchCtx::new(&mut b, size);
    let pred = member_pred(&mut ctx, cond, &params)?;
    let next = batch_into(&mut ctx, body, &params)?;
    let mut outs = Vec::with_capacity(next.len());
    for (&n, &old) in next.iter().zip(&params[n_consts..]) {
        let n = ctx.move_bdim(n, 0)?;
        outs.push(select_members(&mut ctx, pred, n, old.value)?);
    }
    finish(b, &outs)
}

fn taped_while(
    ctx: &mut BatchCtx<'_>,
    [cond, fwd, step]: [&Graph; 3],
    n_consts: usize,
    reverse: bool,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let n_state = cond.params().len();
    let n_carry = n_state - n_consts;
    let n_tape = fwd.outputs().len() - n_carry;
    let consts_b = flags(&args[..n_consts]);
    let mut carry_b = flags(&args[n_consts..n_state]);
    let mut l_b = flags(&args[n_state..]);
    let joined = |carry: &[bool]| [consts_b.as_slice(), carry].concat();
    let force_fwd = |carry: &[bool]| [carry, &vec![false; n_tape]].concat();
    // A carry is batched when it enters batched or the forward body makes it batched.
    loop {
        let (_, out) = batch_body(fwd, &joined(&carry_b), &force_fwd(&carry_b), size)?;
        let next = or(&carry_b, &out[..n_carry]);
        if next == carry_b {
            break;
        }
        carry_b = next;
    }
    let (cond_g, pred_b) = batch_body(cond, &joined(&carry_b), &[false], size)?;
    let pred_b = pred_b[0];
    if pred_b {
        carry_b = vec![true; n_carry];
        l_b = vec![true; l_b.len()];
    }
    let state_b = joined(&carry_b);
    let in_b = [state_b.as_slice(), &l_b].concat();
    let vals: Vec<Value> = args
        .iter()
        .zip(&in_b)
        .map(|(&a, &b)| operand(ctx, a, b))
        .collect::<Result<_>>()?;
    let state_tys: Vec<Type> = vals[..n_state].iter().map(|&v| ctx.ty(v)).collect();
    let (cond_g, fwd_g, tape_b) = if pred_b {
        let (fwd_g, mut tape_b) = frozen_fwd(cond, fwd, &state_tys, &state_b, n_consts, size)?;
        // The member predicates are the last tape entry.
        tape_b.push(true);
        let cond_g = any_cond(cond, &state_tys, &state_b, size)?;
        (cond_g, fwd_g, tape_b)
    } else {
        let (fwd_g, out) = batch_body(fwd, &state_b, &force_fwd(&carry_b), size)?;
        (cond_g, fwd_g, out[n_carry..].to_vec())
    };
    let step_g = if pred_b {
        let mut tys: Vec<Type> = fwd_g.output_types()[n_carry..].to_vec();
        tys.extend(vals[n_state..].iter().map(|&v| ctx.ty(v)));
        masked_step(step, &tys, &[tape_b.as_slice(), &l_b].concat(), size)?
    } else {
        // A step carry is batched when it enters batched or the step makes it batched.
        loop {
            let (g, out) = batch_body(step, &[tape_b.as_slice(), &l_b].concat(), &l_b, size)?;
            let next = or(&l_b, &out);
            if next == l_b {
                break g;
            }
            l_b = next;
        }
    };
    let mut vals = vals;
    for (k, &b) in l_b.iter().enumerate() {
        vals[n_state + k] = operand(ctx, args[n_state + k], b)?;
    }
    let op = ControlOp::TapedWhile {
        cond: Body::new(cond_g),
        fwd: Body::new(fwd_g),
        step: Body::new(step_g),
        n_consts,
        reverse,
    };
    let res = ctx.builder().push(Op::Control(op), &vals)?;
    Ok(results(&res, &l_b, 0))
}

/// The forward body of a taped loop with a batched predicate: members whose predicate holds
/// take the new carry, the others keep theirs; the tape entries are followed by the member
/// predicates. Returns the graph and which of the original tape entries are batched.
fn frozen_fwd(
    cond: &Graph,
    fwd: &Graph,
    tys: &[Type],
    in_b: &[bool],
    n_consts: usize,
    size: usize,
) -> Result<(Graph, Vec<bool>)> {
    let mut b = Builder::new();
    let params = batched_params(&mut b, tys, in_b);
    let mut ctx = BatchCtx::new(&mut b, size);
    let pred = member_pred(&mut ctx, cond, &params)?;
    let next = batch_into(&mut ctx, fwd, &params)?;
    let n_carry = params.len() - n_consts;
    let mut outs = Vec::with_capacity(next.len() + 1);
    for (&n, &old) in next[..n_carry].iter().zip(&params[n_consts..]) {
        let n = ctx.move_bdim(n, 0)?;
        outs.push(select_members(&mut ctx, pred, n, old.value)?);
    }
    let mut tape_b = Vec::with_capacity(next.len() - n_carry);
    for &t in &next[n_carry..] {
        tape_b.push(t.bdim.is_some());
        outs.push(match t.bdim {
            Some(_) => ctx.move_bdim(t, 0)?,
            None => t.value,
        });
    }
    outs.push(pred);
    Ok((finish(b, &outs)?, tape_b))
}

/// The step of a taped loop with a batched predicate: parameters `(tape.., pred, lcarry..)`;
/// members whose recorded predicate did not hold keep their step carry.
fn masked_step(step: &Graph, tys: &[Type], in_b: &[bool], size: usize) -> Result<Graph> {
    let mut b = Builder::new();
    let params = batched_params(&mut b, tys, in_b);
    let n_tape = step.params().len() - step.outputs().len();
    let pred = params[n_tape].value;
    let mut ins: Vec<Batched> = params[..n_tape].to_vec();
    ins.extend_from_slice(&params[n_tape + 1..]);
    let mut ctx = BatchCtx::new(&mut b, size);
    let next = batch_into(&mut ctx, step, &ins)?;
    let mut outs = Vec::with_capacity(next.len());
    for (&n, &old) in next.iter().zip(&params[n_tape + 1..]) {
        let n = ctx.move_bdim(n, 0)?;
        outs.push(select_members(&mut ctx, pred, n, old.value)?);
    }
    finish(b, &outs)
}

fn custom_linear(
    ctx: &mut BatchCtx<'_>,
    bwd: &Graph,
    n_res: usize,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let res_b = flags(&args[..n_res]);
    let mut t_b = flags(&args[n_res..]);
    // Every output tangent is batched: it depends on a batched residual or tangent. A tangent
    // whose cotangent comes out batched is batched too.
    let n_out = bwd.params().len() - n_res;
    let bwd_in = [res_b.as_slice(), &vec![true; n_out]].concat();
    let bwd_g = loop {
        let (g, out) = batch_body(bwd, &bwd_in, &t_b, size)?;
        let next = or(&t_b, &out);
        if next == t_b {
            break g;
        }
        t_b = next;
    };
    let in_b = [res_b.as_slice(), &t_b].concat();
    let vals: Vec<Value> = args
        .iter()
        .zip(&in_b)
        .map(|(&a, &b)| operand(ctx, a, b))
        .collect::<Result<_>>()?;
    let op = ControlOp::CustomLinear {
        bwd: Body::new(bwd_g),
        n_res,
    };
    let res = ctx.builder().push(Op::Control(op), &vals)?;
    Ok(results(&res, &vec![true; n_out], 0))
}

fn scan(
    ctx: &mut BatchCtx<'_>,
    body: &Graph,
    length: usize,
    n_consts: usize,
    n_carry: usize,
    reverse: bool,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let fixed = n_consts + n_carry;
    let consts_b = flags(&args[..n_consts]);
    let mut carry_b = flags(&args[n_consts..fixed]);
    let xs_b = flags(&args[fixed..]);
    let joined = |carry: &[bool]| [consts_b.as_slice(), carry, xs_b.as_slice()].concat();
    // A carry is batched when it enters batched or the body makes it batched.
    let (body_g, out_b) = loop {
        let (g, out) = batch_body(body, &joined(&carry_b), &carry_b, size)?;
        let next = or(&carry_b, &out[..n_carry]);
        if next == carry_b {
            break (g, out);
        }
        carry_b = next;
    };
    let in_b = joined(&carry_b);
    let mut vals = Vec::with_capacity(args.len());
    for (k, (&a, &b)) in args.iter().zip(&in_b).enumerate() {
        // Scanned operands keep the scanned axis leading: their batch dimension goes to 1.
        let v = match (k >= fixed, b) {
            (true, true) => ctx.move_bdim(a, 1)?,
            (false, _) | (true, false) => operand(ctx, a, b)?,
        };
        vals.push(v);
    }
    let op = ControlOp::Scan {
        body: Body::new(body_g),
        length,
        n_consts,
        n_carry,
        reverse,
    };
    let res = ctx.builder().push(Op::Control(op), &vals)?;
    let mut out = results(&res[..n_carry], &carry_b, 0);
    out.extend(results(&res[n_carry..], &out_b[n_carry..], 1));
    Ok(out)
}

fn call(
    ctx: &mut BatchCtx<'_>,
    body: &Graph,
    kind: &CallKind,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    let size = ctx.size();
    let n_out = body.outputs().len();
    let mut in_b = flags(args);
    let mut out_b = vec![false; n_out];
    // The body and the rules must agree on which outputs (and tangents, residuals and
    // cotangents) are batched; iterate until they do.
    let (body_g, kind) = loop {
        let (body_g, body_out) = batch_body(body, &in_b, &out_b, size)?;
        let mut next_out = or(&out_b, &body_out);
        let mut next_in = in_b.clone();
        let kind = match kind {
            CallKind::Checkpoint(policy) => CallKind::Checkpoint(*policy),
            CallKind::CustomJvp { rule, n_diff } => {
                let rule_in = [in_b.as_slice(), &in_b[..*n_diff]].concat();
                let rule_force = [out_b.as_slice(), &out_b].concat();
                let (rule_g, rule_out) = batch_body(rule.graph(), &rule_in, &rule_force, size)?;
                next_out = or(&next_out, &rule_out[..n_out]);
                next_out = or(&next_out, &rule_out[n_out..]);
                CallKind::CustomJvp {
                    rule: Body::new(rule_g),
                    n_diff: *n_diff,
                }
            }
            CallKind::CustomVjp { fwd, bwd, n_diff } => {
                let n_res = fwd.graph().outputs().len() - n_out;
                let fwd_force = [out_b.as_slice(), &vec![false; n_res]].concat();
                let (fwd_g, fwd_out) = batch_body(fwd.graph(), &in_b, &fwd_force, size)?;
                next_out = or(&next_out, &fwd_out[..n_out]);
                let bwd_in = [&fwd_out[n_out..], out_b.as_slice()].concat();
                let (bwd_g, bwd_out) = batch_body(bwd.graph(), &bwd_in, &in_b[..*n_diff], size)?;
                let diff = or(&in_b[..*n_diff], &bwd_out);
                next_in[..*n_diff].copy_from_slice(&diff);
                CallKind::CustomVjp {
                    fwd: Body::new(fwd_g),
                    bwd: Body::new(bwd_g),
                    n_diff: *n_diff,
                }
            }
        };
        if next_out == out_b && next_in == in_b {
            break (body_g, kind);
        }
        out_b = next_out;
        in_b = next_in;
    };
    let vals: Vec<Value> = args
        .iter()
        .zip(&in_b)
        .map(|(&a, &b)| operand(ctx, a, b))
        .collect::<Result<_>>()?;
    let op = ControlOp::Call {
        body: Body::new(body_g),
        kind,
    };
    let res = ctx.builder().push(Op::Control(op), &vals)?;
    Ok(results(&res, &out_b, 0))
}
