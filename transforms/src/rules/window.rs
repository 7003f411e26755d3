//! Rules for windowed ops.
//!
//! `reduce_window_sum` is linear: its tangent is the same op on the tangent, and its transpose
//! spreads each window's cotangent back over the window's operand elements. That transpose is
//! written without a convolution: the cotangent is padded (interior padding `stride − 1`
//! re-spaces the windows onto the dilated operand's grid, and the edges line each operand
//! element up with every window that covers it; edges that come out negative are sliced off),
//! then a `reduce_window_sum` with the same window, window dilation and a stride equal to the
//! base dilation sums, for every operand element, the cotangents of the windows covering it.
//!
//! `reduce_window_max` (`min`) takes the tangent at each window's selected element (the first
//! maximum in window order, see `ferrax_ir::ops::window`): `select_and_gather_add(t, x)`.
//! That op and `select_and_scatter_add` are linear in their first operand, each the other's
//! transpose, and piecewise constant in the selecting operand `x`, whose tangent is dropped.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{push1, slice};
use ferrax_ir::ops::{Monoid, Select, ShapeOp, Window, WindowOp};
use ferrax_ir::{Array, Builder, Dims, Op, Result, Type, Value};

/// The tangent of a windowed op.
pub fn jvp(
    b: &mut Builder,
    op: &WindowOp,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    let Some(t0) = t[0] else {
        // The select ops are constant in the selecting operand; reductions have one operand.
        return Ok(None);
    };
    let (op, args) = match op {
        WindowOp::Reduce { monoid, window } => match monoid {
            Monoid::Sum => (op.clone(), vec![t0]),
            Monoid::Max | Monoid::Min => {
                let select = if *monoid == Monoid::Max {
                    Select::Max
                } else {
                    Select::Min
                };
                let op = WindowOp::SelectAndGatherAdd {
                    select,
                    window: window.clone(),
                };
                (op, vec![t0, x[0]])
            }
        },
        WindowOp::SelectAndGatherAdd { .. } | WindowOp::SelectAndScatterAdd { .. } => {
            (op.clone(), vec![t0, x[1]])
        }
    };
    push1(b, Op::Window(Box::new(op)), &args).map(Some)
}

/// The transpose of a windowed op with respect to its linear operand.
pub fn transpose(
    b: &mut Builder,
    op: &WindowOp,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    match op {
        WindowOp::Reduce { monoid, window } => match monoid {
            Monoid::Sum => for_linear(args, |_, ty| sum_transpose(b, window, ty, ct).map(Some)),
            Monoid::Max | Monoid::Min => Err(not_linear(op.name())),
        },
        WindowOp::SelectAndGatherAdd { select, window } => {
            let other = WindowOp::SelectAndScatterAdd {
                select: *select,
                window: window.clone(),
            };
            select_transpose(b, op, other, args, ct)
        }
        WindowOp::SelectAndScatterAdd { select, window } => {
            let other = WindowOp::SelectAndGatherAdd {
                select: *select,
                window: window.clone(),
            };
            select_transpose(b, op, other, args, ct)
        }
    }
}

/// The transpose of a select op `op` (linear in its first operand, with a primal selecting
/// operand): the other select op, `other`, applied to the cotangent.
fn select_transpose(
    b: &mut Builder,
    op: &WindowOp,
    other: WindowOp,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    let Some(x) = args[1].primal() else {
        return Err(not_linear(op.name()));
    };
    for_linear(args, |_, _| {
        push1(b, Op::Window(Box::new(other.clone())), &[ct, x]).map(Some)
    })
}

/// The cotangent of the operand (type `ty`) of `reduce_window_sum` with `w`, given the
/// result's cotangent `ct` (see the module documentation).
fn sum_transpose(b: &mut Builder, w: &Window, ty: &Type, ct: Value) -> Result<Value> {
    let out = b.ty(ct).dims().to_vec();
    let rank = ty.rank();
    let (mut lo, mut hi, mut interior) = (Dims::new(), Dims::new(), Dims::new());
    let (mut start, mut trim_hi) = (Dims::new(), Dims::new());
    for (d, &o) in out.iter().enumerate() {
        // Every size here is bounded by the padded operand size, which the type rule checked
        // to be below isize::MAX.
        let n = ty.dims()[d] as i128;
        let dilated_in = if n == 0 {
            0
        } else {
            (n - 1) * w.base_dilation[d] as i128 + 1
        };
        let span = (w.dims[d] as i128 - 1) * w.window_dilation[d] as i128 + 1;
        let o = o as i128;
        let dilated_out = if o == 0 {
            0
        } else {
            (o - 1) * w.strides[d] as i128 + 1
        };
        let before = span - 1 - w.lo[d] as i128;
        let after = dilated_in + span - 1 - dilated_out - before;
        lo.push(before.max(0) as usize);
        hi.push(after.max(0) as usize);
        interior.push(w.strides[d] - 1);
        start.push((-before).max(0) as usize);
        trim_hi.push((-after).max(0) as usize);
    }
    let zero = b.constant(Array::scalar(ty.dtype, 0.0));
    let padded = push1(
        b,
        Op::Shape(ShapeOp::Pad {
            lo: lo.into_boxed_slice(),
            hi: hi.into_boxed_slice(),
            interior: interior.into_boxed_slice(),
        }),
        &[ct, zero],
    )?;
    let pdims = b.ty(padded).dims().to_vec();
    let cropped = if start.iter().chain(&trim_hi).any(|&v| v > 0) {
        let limit: Dims = (0..rank).map(|d| pdims[d] - trim_hi[d]).collect();
        slice(b, padded, start, limit, Dims::from_elem(1, rank))?
    } else {
        padded
    };
    let back = Window {
        dims: w.dims.clone(),
        strides: w.base_dilation.clone(),
        lo: Dims::from_elem(0, rank),
        hi: Dims::from_elem(0, rank),
        base_dilation: Dims::from_elem(1, rank),
        window_dilation: w.window_dilation.clone(),
    };
    let op = WindowOp::Reduce {
        monoid: Monoid::Sum,
        window: back,
    };
    push1(b, Op::Window(Box::new(op)), &[cropped])
}
