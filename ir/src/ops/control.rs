//! Control flow and calls of sub-graphs: `switch` (and `cond`), `while`, `scan` (and
//! `fori_loop`), and `call` (plain, checkpointed, or with a custom JVP or VJP rule).
//!
//! Sub-graphs are held in the op itself (`Body`, a shared `Graph`), so the type rule, the
//! evaluation, hashing and CSE of an op need no enclosing context.
//!
//! Two variants exist for reverse-mode differentiation and are produced by transforms rather
//! than by users: `taped_while` (a `while` loop that records one tape entry per iteration and
//! then folds a step function over the tape, forwards or backwards; the transpose of a loop
//! whose trip count is only known at run time) and `custom_lin` (the linear map of a
//! `custom_vjp` call, known only through its transpose `bwd`).
//!
//! Memory cost of `taped_while` with `reverse = true`: the tape holds every iteration's
//! outputs of `fwd` after the carry (the residuals), so a loop of `n` iterations keeps
//! `n · bytes(residuals)` alive while the op runs, in a buffer that grows with the trip
//! count (a `Vec` here). With `reverse = false` each entry is consumed as soon as it is made
//! and the tape is never stored.

use super::op_error;
use crate::array::{Array, Data};
use crate::error::{counted_types, type_difference, Error, ErrorKind, Result};
use crate::graph::Graph;
use crate::types::{DType, Dims, Shape, Type};
use smallvec::SmallVec;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A sub-graph held by an op; equality is structural, hashing uses the structural hash.
#[derive(Clone, Debug)]
pub struct Body(pub Arc<Graph>);

impl Body {
    /// A body from a graph.
    pub fn new(g: Graph) -> Body {
        Body(Arc::new(g))
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.0
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for Body {}

impl Hash for Body {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.structural_hash().hash(state)
    }
}

/// What to keep from a checkpointed call's forward pass for the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RematPolicy {
    /// Save nothing: recompute every intermediate in the backward pass.
    Nothing,
    /// Save only the results of matrix products (`dot_general`); recompute the rest.
    DotsOnly,
}

impl RematPolicy {
    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            RematPolicy::Nothing => "nothing",
            RematPolicy::DotsOnly => "dots",
        }
    }
}

/// How a `call` is treated by transforms; its value is always the body's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// Recompute the body's intermediates in reverse mode instead of storing them.
    Checkpoint(RematPolicy),
    /// Differentiate with a user rule: `rule(primals.., tangents..) -> (outputs.., tangents..)`
    /// where the tangents are those of the first `n_diff` operands (the remaining operands are
    /// captured values, not differentiated).
    CustomJvp {
        /// The rule.
        rule: Body,
        /// How many leading operands are differentiable primals.
        n_diff: usize,
    },
    /// Differentiate in reverse mode with user rules: `fwd(operands..) -> (outputs..,
    /// residuals..)` and `bwd(residuals.., output cotangents..) -> cotangents of the first
    /// `n_diff` operands`.
    CustomVjp {
        /// The forward rule.
        fwd: Body,
        /// The backward rule.
        bwd: Body,
        /// How many leading operands are differentiable primals.
        n_diff: usize,
    },
}

/// A control-flow op or a call of a sub-graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ControlOp {
    /// Runs `branches[index]` on the remaining operands; the first operand is an i32 scalar
    /// index, clamped into range. Every branch takes the operand types and returns the same
    /// types.
    Switch {
        /// The branches (at least one).
        branches: SmallVec<[Body; 2]>,
    },
    /// Operands `[consts.., carry..]`: while `cond(consts, carry)` holds, `carry =
    /// body(consts, carry)`; the results are the final carry.
    While {
        /// `(consts.., carry..) -> bool[]`.
        cond: Body,
        /// `(consts.., carry..) -> carry`.
        body: Body,
        /// How many leading operands are loop-invariant.
        n_consts: usize,
    },
    /// Operands `[consts.., carry.., xs..]`, each x with leading dimension `length`: for
    /// `i` in `0..length` (backwards when `reverse`), `(carry, y_i) = body(consts, carry,
    /// x_i)`; the results are the final carry and the ys stacked along a new leading axis.
    Scan {
        /// `(consts.., carry.., x slices..) -> (carry.., y slices..)`.
        body: Body,
        /// The number of iterations (static).
        length: usize,
        /// How many leading operands are loop-invariant.
        n_consts: usize,
        /// How many operands after the consts are carried.
        n_carry: usize,
        /// Iterate from the last slice to the first.
        reverse: bool,
    },
    /// Operands `[consts.., carry.., lcarry..]`: runs the loop `while cond(consts, carry) {
    /// (carry, tape_i) = fwd(consts, carry) }`, recording one tape entry per iteration, then
    /// folds `lcarry = step(tape_i, lcarry)` over the tape, in iteration order, or from the last
    /// iteration to the first when `reverse` (which stores the tape; see the module docs for
    /// its memory cost). The results are the final `lcarry`. Reverse mode through `while`
    /// produces it: the JVP of a `while` is a forward `taped_while` whose step is the linear
    /// body, and its transpose is the reverse `taped_while` with the transposed step.
    TapedWhile {
        /// `(consts.., carry..) -> bool[]`.
        cond: Body,
        /// `(consts.., carry..) -> (carry.., tape entry..)`.
        fwd: Body,
        /// `(tape entry.., lcarry..) -> lcarry`.
        step: Body,
        /// How many leading operands are loop-invariant.
        n_consts: usize,
        /// Fold the step over the tape from the last iteration to the first.
        reverse: bool,
    },
    /// The linear map (JVP) of a `custom_vjp` call, known only through its transpose:
    /// operands `[residuals (n_res).., tangents..]`, results one tangent per output of the
    /// call, with `bwd(residuals.., output cotangents..) -> cotangents of the tangents`.
    /// Transposing it calls `bwd`; evaluating it (forward mode) is an error.
    CustomLinear {
        /// The backward rule.
        bwd: Body,
        /// How many leading operands are residuals.
        n_res: usize,
    },
    /// Calls `body` on the operands; `kind` tells transforms how to treat it.
    Call {
        /// The called graph.
        body: Body,
        /// How transforms treat the call.
        kind: CallKind,
    },
}

fn check_params(name: &str, what: &str, g: &Graph, want: &[Type], args: &[Type]) -> Result<()> {
    let have = g.param_types();
    if have != want {
        return Err(op_error(
            ErrorKind::DType,
            name,
            args,
            format!(
                "{what} takes {} but is given {}",
                super::fmt_types(&have),
                super::fmt_types(want)
            ),
        ));
    }
    Ok(())
}

/// The error for a sub-graph `what` whose results `found` are not `expected`: the message names
/// both lists (`expected_is` introduces the second, e.g. "the carry is") and where they first
/// differ; different counts are an arity error.
fn results_error(
    name: &str,
    args: &[Type],
    what: &str,
    found: &[Type],
    expected_is: &str,
    expected: &[Type],
) -> Error {
    prefix_error(name, args, what, found, found, expected_is, expected)
}

/// Like [`results_error`] for results whose first ones, `found_prefix`, must be `expected`
/// (further results are allowed); the message shows every result.
fn prefix_error(
    name: &str,
    args: &[Type],
    what: &str,
    found: &[Type],
    found_prefix: &[Type],
    expected_is: &str,
    expected: &[Type],
) -> Error {
    let (kind, diff) = type_difference("result", found_prefix, expected);
    op_error(
        kind,
        name,
        args,
        format!(
            "{what} returns {} but {expected_is} {} ({diff})",
            counted_types(found, "value"),
            counted_types(expected, "value")
        ),
    )
}

/// The type with a leading dimension `n` added.
pub fn stacked(t: &Type, n: usize) -> Type {
    let mut d: Dims = Dims::from_slice(&[n]);
    d.extend_from_slice(t.dims());
    Type {
        dtype: t.dtype,
        shape: Shape(d),
    }
}

/// The type with its leading dimension removed, if it has one of size `n`.
pub fn unstacked(t: &Type, n: usize) -> Option<Type> {
    (t.rank() >= 1 && t.dims()[0] == n).then(|| Type {
        dtype: t.dtype,
        shape: Shape::new(&t.dims()[1..]),
    })
}

impl ControlOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            ControlOp::Switch { .. } => "switch",
            ControlOp::While { .. } => "while",
            ControlOp::Scan { .. } => "scan",
            ControlOp::TapedWhile { .. } => "taped_while",
            ControlOp::CustomLinear { .. } => "custom_lin",
            ControlOp::Call { .. } => "call",
        }
    }

    /// The type rule; it returns one type per result.
    pub fn infer(&self, args: &[Type]) -> Result<SmallVec<[Type; 1]>> {
        let name = self.name();
        match self {
            ControlOp::Switch { branches } => {
                if branches.is_empty() {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        "needs at least one branch",
                    ));
                }
                if args.is_empty() || args[0] != Type::scalar(DType::I32) {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "the first operand must be an i32[] branch index",
                    ));
                }
                let outs = branches[0].graph().output_types();
                for (k, b) in branches.iter().enumerate() {
                    check_params(name, &format!("branch {k}"), b.graph(), &args[1..], args)?;
                    let found = b.graph().output_types();
                    if found != outs {
                        return Err(results_error(
                            name,
                            args,
                            &format!("branch {k}"),
                            &found,
                            "branch 0 returns",
                            &outs,
                        ));
                    }
                }
                Ok(outs.into_iter().collect())
            }
            ControlOp::While {
                cond,
                body,
                n_consts,
            } => {
                if *n_consts > args.len() {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        format!("n_consts = {n_consts} exceeds the {} operands", args.len()),
                    ));
                }
                check_params(name, "the condition", cond.graph(), args, args)?;
                check_params(name, "the body", body.graph(), args, args)?;
                let bool_scalar = [Type::scalar(DType::Bool)];
                let found = cond.graph().output_types();
                if found != bool_scalar {
                    return Err(results_error(
                        name,
                        args,
                        "the condition",
                        &found,
                        "it must return",
                        &bool_scalar,
                    ));
                }
                let carry = &args[*n_consts..];
                let found = body.graph().output_types();
                if found != carry {
                    return Err(results_error(
                        name,
                        args,
                        "the body",
                        &found,
                        "the carry is",
                        carry,
                    ));
                }
                Ok(carry.iter().cloned().collect())
            }
            ControlOp::Scan {
                body,
                length,
                n_consts,
                n_carry,
                ..
            } => {
                if n_consts + n_carry > args.len() {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        format!(
                            "n_consts + n_carry = {n_consts} + {n_carry} exceeds the {} operands",
                            args.len()
                        ),
                    ));
                }
                let mut want: Vec<Type> = args[..n_consts + n_carry].to_vec();
                for t in &args[n_consts + n_carry..] {
                    match unstacked(t, *length) {
                        Some(u) => want.push(u),
                        None => {
                            return Err(op_error(
                                ErrorKind::Shape,
                                name,
                                args,
                                format!(
                                    "scanned operand {t} needs a leading dimension of {length}"
                                ),
                            ))
                        }
                    }
                }
                check_params(name, "the body", body.graph(), &want, args)?;
                let outs = body.graph().output_types();
                let carry = &args[*n_consts..n_consts + n_carry];
                if outs.len() < *n_carry || outs[..*n_carry] != *carry {
                    return Err(prefix_error(
                        name,
                        args,
                        "the body",
                        &outs,
                        &outs[..outs.len().min(*n_carry)],
                        "it must return the carry types first, then the y slices; the carry is",
                        carry,
                    ));
                }
                let mut res: SmallVec<[Type; 1]> = carry.iter().cloned().collect();
                res.extend(outs[*n_carry..].iter().map(|t| stacked(t, *length)));
                Ok(res)
            }
            ControlOp::TapedWhile {
                cond,
                fwd,
                step,
                n_consts,
                ..
            } => {
                let state = cond.graph().param_types();
                if *n_consts > state.len() || state.len() > args.len() {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        format!(
                            "n_consts = {n_consts} and the condition's {} parameters do not fit \
                             the {} operands",
                            state.len(),
                            args.len()
                        ),
                    ));
                }
                let n_carry = state.len() - n_consts;
                check_params(
                    name,
                    "the condition",
                    cond.graph(),
                    &args[..state.len()],
                    args,
                )?;
                check_params(
                    name,
                    "the forward body",
                    fwd.graph(),
                    &args[..state.len()],
                    args,
                )?;
                let bool_scalar = [Type::scalar(DType::Bool)];
                let found = cond.graph().output_types();
                if found != bool_scalar {
                    return Err(results_error(
                        name,
                        args,
                        "the condition",
                        &found,
                        "it must return",
                        &bool_scalar,
                    ));
                }
                let fo = fwd.graph().output_types();
                let carry = &args[*n_consts..state.len()];
                if fo.len() < n_carry || fo[..n_carry] != *carry {
                    return Err(prefix_error(
                        name,
                        args,
                        "the forward body",
                        &fo,
                        &fo[..fo.len().min(n_carry)],
                        "it must return the carry types first, then the tape entry; the carry is",
                        carry,
                    ));
                }
                let lcarry = &args[state.len()..];
                let mut want: Vec<Type> = fo[n_carry..].to_vec();
                want.extend_from_slice(lcarry);
                check_params(name, "the step", step.graph(), &want, args)?;
                let found = step.graph().output_types();
                if found != lcarry {
                    return Err(results_error(
                        name,
                        args,
                        "the step",
                        &found,
                        "the step carry is",
                        lcarry,
                    ));
                }
                Ok(lcarry.iter().cloned().collect())
            }
            ControlOp::CustomLinear { bwd, n_res } => {
                let p = bwd.graph().param_types();
                if *n_res > args.len() || *n_res > p.len() {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        format!(
                            "n_res = {n_res} exceeds the {} operands or the backward rule's {} \
                             parameters",
                            args.len(),
                            p.len()
                        ),
                    ));
                }
                if p[..*n_res] != args[..*n_res] {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        format!(
                            "the backward rule takes residuals {} but the residual operands \
                             are {}",
                            super::fmt_types(&p[..*n_res]),
                            super::fmt_types(&args[..*n_res])
                        ),
                    ));
                }
                let found = bwd.graph().output_types();
                if found != args[*n_res..] {
                    return Err(results_error(
                        name,
                        args,
                        "the backward rule",
                        &found,
                        "the tangents are",
                        &args[*n_res..],
                    ));
                }
                Ok(p[*n_res..].iter().cloned().collect())
            }
            ControlOp::Call { body, kind } => {
                check_params(name, "the body", body.graph(), args, args)?;
                let outs = body.graph().output_types();
                match kind {
                    CallKind::Checkpoint(_) => {}
                    CallKind::CustomJvp { rule, n_diff } => {
                        if *n_diff > args.len() {
                            return Err(op_error(
                                ErrorKind::Arity,
                                name,
                                args,
                                format!("n_diff = {n_diff} exceeds the {} operands", args.len()),
                            ));
                        }
                        let mut want = args.to_vec();
                        want.extend_from_slice(&args[..*n_diff]);
                        check_params(name, "the JVP rule", rule.graph(), &want, args)?;
                        let mut rule_outs = outs.clone();
                        rule_outs.extend(outs.iter().cloned());
                        let found = rule.graph().output_types();
                        if found != rule_outs {
                            return Err(results_error(
                                name,
                                args,
                                "the JVP rule",
                                &found,
                                "it must return the outputs and one tangent per output,",
                                &rule_outs,
                            ));
                        }
                    }
                    CallKind::CustomVjp { fwd, bwd, n_diff } => {
                        if *n_diff > args.len() {
                            return Err(op_error(
                                ErrorKind::Arity,
                                name,
                                args,
                                format!("n_diff = {n_diff} exceeds the {} operands", args.len()),
                            ));
                        }
                        check_params(name, "the forward rule", fwd.graph(), args, args)?;
                        let fo = fwd.graph().output_types();
                        if fo.len() < outs.len() || fo[..outs.len()] != outs[..] {
                            return Err(prefix_error(
                                name,
                                args,
                                "the forward rule",
                                &fo,
                                &fo[..fo.len().min(outs.len())],
                                "it must return the outputs first, then residuals; the outputs \
                                 are",
                                &outs,
                            ));
                        }
                        let mut want: Vec<Type> = fo[outs.len()..].to_vec();
                        want.extend(outs.iter().cloned());
                        check_params(name, "the backward rule", bwd.graph(), &want, args)?;
                        let found = bwd.graph().output_types();
                        if found != args[..*n_diff] {
                            return Err(results_error(
                                name,
                                args,
                                "the backward rule",
                                &found,
                                "it must return one cotangent per differentiable operand,",
                                &args[..*n_diff],
                            ));
                        }
                    }
                }
                Ok(outs.into_iter().collect())
            }
        }
    }

    /// The reference semantics: runs the sub-graphs with the interpreter.
    pub fn eval(&self, args: &[&Array]) -> Result<SmallVec<[Array; 1]>> {
        let owned = |xs: &[&Array]| xs.iter().map(|a| (*a).clone()).collect::<Vec<Array>>();
        match self {
            ControlOp::Switch { branches } => {
                let i = args[0].as_i32().map(|v| v[0]).unwrap_or(0);
                let k = (i.max(0) as usize).min(branches.len() - 1);
                Ok(
                    crate::interp::eval(branches[k].graph(), &owned(&args[1..]))?
                        .into_iter()
                        .collect(),
                )
            }
            ControlOp::While {
                cond,
                body,
                n_consts,
            } => {
                let mut state = owned(args);
                let mut iterations = 0u64;
                loop {
                    let c = crate::interp::eval(cond.graph(), &state)?;
                    if c[0].as_bool().map(|v| v[0]) != Some(true) {
                        break;
                    }
                    iterations += 1;
                    crate::interp::count_while_iteration(iterations)?;
                    let next = crate::interp::eval(body.graph(), &state)?;
                    for (slot, v) in state[*n_consts..].iter_mut().zip(next) {
                        *slot = v;
                    }
                }
                Ok(state.split_off(*n_consts).into_iter().collect())
            }
            ControlOp::Scan {
                body,
                length,
                n_consts,
                n_carry,
                reverse,
            } => {
                let fixed = n_consts + n_carry;
                let mut state = owned(&args[..fixed]);
                let xs = &args[fixed..];
                let n_ys = body.graph().outputs().len() - n_carry;
                let mut ys: Vec<Vec<Array>> = vec![Vec::with_capacity(*length); n_ys];
                for step in 0..*length {
                    let i = if *reverse { length - 1 - step } else { step };
                    let mut ins = state.clone();
                    ins.extend(xs.iter().map(|x| slice_leading(x, i)));
                    let mut outs = crate::interp::eval(body.graph(), &ins)?;
                    let y = outs.split_off(*n_carry);
                    for (slot, v) in state[*n_consts..].iter_mut().zip(outs) {
                        *slot = v;
                    }
                    for (acc, v) in ys.iter_mut().zip(y) {
                        acc.push(v);
                    }
                }
                let out_tys = body.graph().output_types();
                let mut res: SmallVec<[Array; 1]> =
                    state.split_off(*n_consts).into_iter().collect();
                for (k, mut acc) in ys.into_iter().enumerate() {
                    if *reverse {
                        acc.reverse();
                    }
                    res.push(stack_leading(&out_tys[n_carry + k], &acc, *length));
                }
                Ok(res)
            }
            ControlOp::TapedWhile {
                cond,
                fwd,
                step,
                n_consts,
                reverse,
            } => {
                let n_state = cond.graph().params().len();
                let n_carry = n_state - n_consts;
                let mut state = owned(&args[..n_state]);
                let mut lcarry = owned(&args[n_state..]);
                let mut tape: Vec<Vec<Array>> = Vec::new();
                let apply_step = |entry: Vec<Array>, lcarry: &mut Vec<Array>| -> Result<()> {
                    let mut ins = entry;
                    ins.append(lcarry);
                    *lcarry = crate::interp::eval(step.graph(), &ins)?;
                    Ok(())
                };
                let mut iterations = 0u64;
                loop {
                    let c = crate::interp::eval(cond.graph(), &state)?;
                    if c[0].as_bool().map(|v| v[0]) != Some(true) {
                        break;
                    }
                    iterations += 1;
                    crate::interp::count_while_iteration(iterations)?;
                    let mut out = crate::interp::eval(fwd.graph(), &state)?;
                    let entry = out.split_off(n_carry);
                    for (slot, v) in state[*n_consts..].iter_mut().zip(out) {
                        *slot = v;
                    }
                    if *reverse {
                        tape.push(entry);
                    } else {
                        apply_step(entry, &mut lcarry)?;
                    }
                }
                while let Some(entry) = tape.pop() {
                    apply_step(entry, &mut lcarry)?;
                }
                Ok(lcarry.into_iter().collect())
            }
            ControlOp::CustomLinear { .. } => Err(Error::new(
                ErrorKind::Transform,
                "custom_lin: the linear map of a custom_vjp function cannot be evaluated; \
                 custom_vjp supports reverse mode (grad, vjp, jacrev, and hessian, which \
                 differentiates bwd), not forward mode (jvp, jacfwd, linearize)",
            )),
            ControlOp::Call { body, .. } => Ok(crate::interp::eval(body.graph(), &owned(args))?
                .into_iter()
                .collect()),
        }
    }
}

/// Slice `i` along the leading dimension.
pub fn slice_leading(x: &Array, i: usize) -> Array {
    let inner: usize = x.dims()[1..].iter().product();
    let data = x.data().take(i * inner..(i + 1) * inner);
    Array::new(Shape::new(&x.dims()[1..]), data).expect("sizes agree")
}

/// Stacks `n` arrays of type `t` along a new leading dimension.
pub fn stack_leading(t: &Type, parts: &[Array], n: usize) -> Array {
    let data = if parts.is_empty() {
        Data::filled(t.dtype, 0, 0.0)
    } else {
        Data::concat(&parts.iter().map(|p| p.data()).collect::<Vec<_>>())
    };
    Array::new(stacked(t, n).shape, data).expect("sizes agree")
}

/// An error for ops whose operands do not fit (used by callers building control ops).
pub fn control_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Transform, msg)
}
