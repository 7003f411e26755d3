//! Rules for indexing ops. All are linear in their data operands (indices are primal i32
//! values): cumsum transposes to a cumsum in the other direction, dynamic_slice to
//! dynamic_update_slice into zeros, gather to scatter_add and back.

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{or_zeros, push1, zeros};
use ferrax_ir::ops::IndexOp;
use ferrax_ir::{Builder, Op, Result, Value};
use smallvec::SmallVec;

/// The tangent of an indexing op: the same op on the tangents of the data operands.
pub fn jvp(
    b: &mut Builder,
    op: &IndexOp,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    let mut args: SmallVec<[Value; 4]> = SmallVec::new();
    let data: &[usize] = match op {
        IndexOp::Cumsum { .. } | IndexOp::DynamicSlice { .. } | IndexOp::Gather => &[0],
        IndexOp::DynamicUpdateSlice => &[0, 1],
        IndexOp::ScatterAdd => &[0, 2],
    };
    if data.iter().all(|&k| t[k].is_none()) {
        return Ok(None);
    }
    for (k, &xv) in x.iter().enumerate() {
        if data.contains(&k) {
            let ty = b.ty(xv).clone();
            args.push(or_zeros(b, t[k], &ty)?);
        } else {
            args.push(xv);
        }
    }
    push1(b, Op::Index(op.clone()), &args).map(Some)
}

/// The primal values of operands `from..` (the indices).
fn indices(args: &[Operand], from: usize) -> Result<SmallVec<[Value; 4]>> {
    args[from..]
        .iter()
        .map(|a| a.primal().ok_or_else(|| not_linear("an index operand")))
        .collect()
}

/// The transpose of an indexing op with respect to its linear data operands.
pub fn transpose(b: &mut Builder, op: &IndexOp, args: &[Operand], ct: Value) -> Result<Cotangents> {
    match op {
        IndexOp::Cumsum { axis, reverse } => for_linear(args, |_, _| {
            let op = IndexOp::Cumsum {
                axis: *axis,
                reverse: !*reverse,
            };
            push1(b, Op::Index(op), &[ct]).map(Some)
        }),
        IndexOp::DynamicSlice { .. } => {
            let idx = indices(args, 1)?;
            for_linear(args, |_, ty| {
                let z = zeros(b, ty)?;
                let mut a: SmallVec<[Value; 4]> = SmallVec::from_slice(&[z, ct]);
                a.extend_from_slice(&idx);
                push1(b, Op::Index(IndexOp::DynamicUpdateSlice), &a).map(Some)
            })
        }
        IndexOp::DynamicUpdateSlice => {
            let idx = indices(args, 2)?;
            let u_ty = match &args[1] {
                Operand::Linear(ty) => ty.clone(),
                Operand::Primal(v) => b.ty(*v).clone(),
            };
            for_linear(args, |k, _| {
                if k == 0 {
                    let z = zeros(b, &u_ty)?;
                    let mut a: SmallVec<[Value; 4]> = SmallVec::from_slice(&[ct, z]);
                    a.extend_from_slice(&idx);
                    push1(b, Op::Index(IndexOp::DynamicUpdateSlice), &a).map(Some)
                } else {
                    let mut a: SmallVec<[Value; 4]> = SmallVec::from_slice(&[ct]);
                    a.extend_from_slice(&idx);
                    let sizes = u_ty.shape.0.clone();
                    push1(b, Op::Index(IndexOp::DynamicSlice { sizes }), &a).map(Some)
                }
            })
        }
        IndexOp::Gather => {
            let idx = indices(args, 1)?[0];
            for_linear(args, |_, ty| {
                let z = zeros(b, ty)?;
                push1(b, Op::Index(IndexOp::ScatterAdd), &[z, idx, ct]).map(Some)
            })
        }
        IndexOp::ScatterAdd => {
            let Some(idx) = args[1].primal() else {
                return Err(not_linear("scatter_add"));
            };
            for_linear(args, |k, _| {
                if k == 0 {
                    Ok(Some(ct))
                } else {
                    push1(b, Op::Index(IndexOp::Gather), &[ct, idx]).map(Some)
                }
            })
        }
    }
}
