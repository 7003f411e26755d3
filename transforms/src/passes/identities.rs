//! Algebraic identities that are exact in IEEE arithmetic, applied while an equation is
//! emitted. Each rewrite returns a value equal bit for bit to what the original equation would
//! compute, for every input including NaN, ±∞ and −0.0.
//!
//! Applied:
//! - `x * 1`, `1 * x`, `x / 1` → `x`; `x * -1`, `x / -1` → `-x` (negation is exact);
//! - `x + (-0.0)` → `x`, and `x - (+0.0)` → `x`. Not `x + (+0.0)`: for `x = -0.0` it gives
//!   `+0.0`. Integer zeros have no sign, so `x + 0` and `x - 0` fold for i32;
//! - `x + (-y)` → `x - y`, `x - (-y)` → `x + y` (IEEE defines `x - y` as `x + (-y)`);
//! - `(-x) * y` → `-(x * y)`, `(-x) / y` and `x / (-y)` → `-(x / y)`, `(-x) * (-y)` → `x * y`
//!   (rounding is symmetric in the sign), so negations meet and cancel;
//! - `-(-x)` → `x`; `select(p, x, x)` → `x`; `select` with a constant predicate; `not(not p)`;
//! - `and(p, p)`, `or(p, p)`, `and(p, true)`, `or(p, false)` → `p`; `and(p, false)` → false,
//!   `or(p, true)` → true (bool logic has no rounding or special values);
//! - conversion to the same dtype, `stop_gradient` of `stop_gradient`;
//! - reshape to the same shape and reshape of a reshape; identity broadcasts, transposes,
//!   slices, pads, reversals and one-operand concatenations; broadcast of a broadcast and
//!   transpose of a transpose merged; max, min and product over no axes, and integer sums over
//!   no axes (a float sum over no axes is `+0.0 + x`, which maps −0.0 to +0.0).
//!
//! Deliberately not applied: `x * 0` → `0` (wrong for NaN and ±∞), `x - x` → `0` (NaN),
//! reassociation of constants (`2 * (3 * x)` rounds differently from `6 * x`).

use crate::emit::{self, producer, splat};
use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::{Builder, Dims, Graph, InstData, Op, Result, Value};

/// If `op(args)` simplifies exactly, the simplified value (possibly built from new equations).
pub(crate) fn rewrite(b: &mut Builder, op: &Op, args: &[Value]) -> Result<Option<Value>> {
    match op {
        Op::Unary(UnaryOp::Neg) => Ok(negated(b, args[0])),
        Op::Binary(bin) => binary(b, *bin, args[0], args[1]),
        Op::Compare(CompareOp::Select) => {
            if args[1] == args[2] {
                return Ok(Some(args[1]));
            }
            let p = splat(b, args[0]);
            Ok(match p {
                Some(p) if p != 0.0 => Some(args[1]),
                Some(_) => Some(args[2]),
                None => None,
            })
        }
        Op::Compare(op @ (CompareOp::And | CompareOp::Or)) => Ok(logic(b, *op, args[0], args[1])),
        Op::Compare(CompareOp::Not) => Ok(match producer(b, args[0]) {
            Some(InstData {
                op: Op::Compare(CompareOp::Not),
                args: inner,
                ..
            }) => Some(inner[0]),
            _ => None,
        }),
        Op::Convert(ConvertOp::Convert(d)) => Ok((b.ty(args[0]).dtype == *d).then_some(args[0])),
        Op::Convert(ConvertOp::StopGradient) => Ok(match producer(b, args[0]) {
            Some(InstData {
                op: Op::Convert(ConvertOp::StopGradient),
                ..
            }) => Some(args[0]),
            _ => None,
        }),
        Op::Shape(s) => shape(b, s, args),
        // A float sum starts from +0.0, so over no axes it maps -0.0 to +0.0: not an identity.
        Op::Reduce(ReduceOp::Sum { axes }) => {
            Ok((axes.is_empty() && !b.ty(args[0]).dtype.is_float()).then_some(args[0]))
        }
        Op::Reduce(ReduceOp::Max { axes } | ReduceOp::Min { axes } | ReduceOp::Prod { axes }) => {
            Ok(axes.is_empty().then_some(args[0]))
        }
        _ => Ok(None),
    }
}

/// `and(p, p)`, `or(p, p)` → `p`; `and(p, true)`, `or(p, false)` → `p`; `and(p, false)`,
/// `or(p, true)` → the constant operand (both operands have the result's shape).
fn logic(b: &Builder, op: CompareOp, p: Value, q: Value) -> Option<Value> {
    if p == q {
        return Some(p);
    }
    // The operand value that decides the result on its own: false for `and`, true for `or`.
    let absorb = op == CompareOp::Or;
    for (x, c) in [(p, q), (q, p)] {
        match splat(b, c) {
            Some(s) if (s != 0.0) == absorb => return Some(c),
            Some(_) => return Some(x),
            None => {}
        }
    }
    None
}

/// The operand of a negation, if `v` is one.
fn neg_operand(b: &Builder, v: Value) -> Option<Value> {
    match producer(b, v) {
        Some(InstData {
            op: Op::Unary(UnaryOp::Neg),
            args,
            ..
        }) => Some(args[0]),
        _ => None,
    }
}

/// `-(-x)` → `x`.
fn negated(b: &Builder, x: Value) -> Option<Value> {
    neg_operand(b, x)
}

fn binary(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Result<Option<Value>> {
    if matches!(
        op,
        BinaryOp::Pow | BinaryOp::Max | BinaryOp::Min | BinaryOp::Atan2 | BinaryOp::Rem
    ) {
        return Ok(None);
    }
    // The splat values of both operands, looked up once (every test below is made before
    // anything is emitted).
    let (sx, sy) = (splat(b, x), splat(b, y));
    let is = |b: &Builder, v: Value, c: f64| emit::splat_is(b, v, if v == x { sx } else { sy }, c);
    let int = !b.ty(x).dtype.is_float();
    match op {
        BinaryOp::Add => {
            if is(b, y, -0.0) || (int && is(b, y, 0.0)) {
                return Ok(Some(x));
            }
            if is(b, x, -0.0) || (int && is(b, x, 0.0)) {
                return Ok(Some(y));
            }
            if let Some(ny) = neg_operand(b, y) {
                return emit::sub(b, x, ny).map(Some);
            }
            if let Some(nx) = neg_operand(b, x) {
                return emit::sub(b, y, nx).map(Some);
            }
            Ok(None)
        }
        BinaryOp::Sub => {
            if is(b, y, 0.0) {
                return Ok(Some(x));
            }
            if let Some(ny) = neg_operand(b, y) {
                return emit::add(b, x, ny).map(Some);
            }
            Ok(None)
        }
        BinaryOp::Mul => {
            for (a, c) in [(x, y), (y, x)] {
                if is(b, c, 1.0) {
                    return Ok(Some(a));
                }
                if is(b, c, -1.0) && !int {
                    return emit::neg(b, a).map(Some);
                }
            }
            if int {
                return Ok(None);
            }
            match (neg_operand(b, x), neg_operand(b, y)) {
                (Some(nx), Some(ny)) => emit::mul(b, nx, ny).map(Some),
                (Some(nx), None) if sy.is_none() => {
                    let m = emit::mul(b, nx, y)?;
                    emit::neg(b, m).map(Some)
                }
                (None, Some(ny)) if sx.is_none() => {
                    let m = emit::mul(b, x, ny)?;
                    emit::neg(b, m).map(Some)
                }
                _ => Ok(None),
            }
        }
        BinaryOp::Div => {
            if is(b, y, 1.0) {
                return Ok(Some(x));
            }
            if int {
                return Ok(None);
            }
            if is(b, y, -1.0) {
                return emit::neg(b, x).map(Some);
            }
            match (neg_operand(b, x), neg_operand(b, y)) {
                (Some(nx), Some(ny)) => emit::div(b, nx, ny).map(Some),
                (Some(nx), None) => {
                    let d = emit::div(b, nx, y)?;
                    emit::neg(b, d).map(Some)
                }
                (None, Some(ny)) => {
                    let d = emit::div(b, x, ny)?;
                    emit::neg(b, d).map(Some)
                }
                _ => Ok(None),
            }
        }
        BinaryOp::Pow | BinaryOp::Max | BinaryOp::Min | BinaryOp::Atan2 | BinaryOp::Rem => Ok(None),
    }
}

fn shape(b: &mut Builder, op: &ShapeOp, args: &[Value]) -> Result<Option<Value>> {
    let x = args[0];
    let ty = b.ty(x).clone();
    let identity = |dims: &[usize]| dims.iter().enumerate().all(|(i, &d)| i == d);
    match op {
        ShapeOp::BroadcastInDim { shape, dims } => {
            if *shape == ty.shape && identity(dims) {
                return Ok(Some(x));
            }
            if let Some(InstData {
                op: Op::Shape(ShapeOp::BroadcastInDim { dims: inner, .. }),
                args: ia,
                ..
            }) = producer(b, x)
            {
                let merged: Dims = inner.iter().map(|&d| dims[d]).collect();
                let src = ia[0];
                return emit::broadcast(b, src, shape.clone(), merged).map(Some);
            }
            Ok(None)
        }
        ShapeOp::Reshape { shape } => {
            if *shape == ty.shape {
                return Ok(Some(x));
            }
            if let Some(InstData {
                op: Op::Shape(ShapeOp::Reshape { .. }),
                args: ia,
                ..
            }) = producer(b, x)
            {
                let src = ia[0];
                return emit::reshape(b, src, shape.clone()).map(Some);
            }
            Ok(None)
        }
        ShapeOp::Transpose { perm } => {
            if identity(perm) {
                return Ok(Some(x));
            }
            if let Some(InstData {
                op: Op::Shape(ShapeOp::Transpose { perm: inner }),
                args: ia,
                ..
            }) = producer(b, x)
            {
                let merged: Dims = perm.iter().map(|&p| inner[p]).collect();
                let src = ia[0];
                return emit::transpose(b, src, merged).map(Some);
            }
            Ok(None)
        }
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => {
            let full = start.iter().all(|&s| s == 0)
                && limit[..] == *ty.dims()
                && stride.iter().all(|&s| s == 1);
            Ok(full.then_some(x))
        }
        ShapeOp::Pad { lo, hi, interior } => {
            let none = lo.iter().chain(hi).chain(interior).all(|&p| p == 0);
            Ok(none.then_some(x))
        }
        ShapeOp::Concatenate { .. } => Ok((args.len() == 1).then_some(x)),
        ShapeOp::Rev { axes } => Ok(axes.is_empty().then_some(x)),
    }
}

/// The identities pass: rebuilds `g` through the simplifying emitter.
pub fn identities(g: &Graph) -> Result<Graph> {
    super::rebuild(g, true, true)
}
