//! Rules for shape ops. All are linear: the tangent is the same op applied to the tangent, and
//! each transpose undoes the data movement (broadcast ↔ sum, slice ↔ pad, concatenate ↔
//! slices, transpose ↔ inverse permutation).

use super::{for_linear, Cotangents, Operand};
use crate::emit::{self, or_zeros, push1, reduce_sum, reshape, slice, sum_all};
use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{Array, Builder, Dims, Op, Result, Type, Value};

/// The tangent of a shape op: the same op on the tangents (zeros filled in where needed).
pub fn jvp(
    b: &mut Builder,
    op: &ShapeOp,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    match op {
        ShapeOp::BroadcastInDim { .. }
        | ShapeOp::Reshape { .. }
        | ShapeOp::Transpose { .. }
        | ShapeOp::Slice { .. }
        | ShapeOp::Rev { .. } => match t[0] {
            Some(t) => push1(b, Op::Shape(op.clone()), &[t]).map(Some),
            None => Ok(None),
        },
        ShapeOp::Pad { .. } | ShapeOp::Concatenate { .. } => {
            let mut ts = Vec::with_capacity(x.len());
            for (&xv, &tv) in x.iter().zip(t) {
                let ty = b.ty(xv).clone();
                ts.push(or_zeros(b, tv, &ty)?);
            }
            push1(b, Op::Shape(op.clone()), &ts).map(Some)
        }
    }
}

/// The transpose of a shape op with respect to its linear operands.
pub fn transpose(b: &mut Builder, op: &ShapeOp, args: &[Operand], ct: Value) -> Result<Cotangents> {
    match op {
        ShapeOp::BroadcastInDim { shape, dims } => for_linear(args, |_, ty| {
            let summed: Dims = (0..shape.rank())
                .filter(|d| match dims.iter().position(|x| x == d) {
                    None => true,
                    Some(i) => ty.dims()[i] == 1 && shape.dims()[*d] != 1,
                })
                .collect();
            let s = reduce_sum(b, ct, summed)?;
            reshape(b, s, ty.shape.clone()).map(Some)
        }),
        ShapeOp::Reshape { .. } => {
            for_linear(args, |_, ty| reshape(b, ct, ty.shape.clone()).map(Some))
        }
        ShapeOp::Transpose { perm } => for_linear(args, |_, _| {
            let mut inv = Dims::from_elem(0, perm.len());
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            emit::transpose(b, ct, inv).map(Some)
        }),
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => for_linear(args, |_, ty| {
            let out = b.ty(ct).clone();
            let mut hi = Dims::new();
            for i in 0..ty.rank() {
                let m = out.dims()[i];
                let covered = if m == 0 { 0 } else { (m - 1) * stride[i] + 1 };
                hi.push(ty.dims()[i] - start[i] - covered);
            }
            let _ = limit;
            let interior: Dims = stride.iter().map(|s| s - 1).collect();
            let zero = b.constant(Array::scalar(ty.dtype, 0.0));
            push1(
                b,
                Op::Shape(ShapeOp::Pad {
                    lo: start.clone(),
                    hi: hi.into_boxed_slice(),
                    interior: interior.into_boxed_slice(),
                }),
                &[ct, zero],
            )
            .map(Some)
        }),
        ShapeOp::Pad {
            lo,
            hi: _,
            interior,
        } => {
            let x_ty = match &args[0] {
                Operand::Linear(ty) => ty.clone(),
                Operand::Primal(v) => b.ty(*v).clone(),
            };
            let mut limit = Dims::new();
            for i in 0..x_ty.rank() {
                let n = x_ty.dims()[i];
                limit.push(if n == 0 {
                    lo[i]
                } else {
                    lo[i] + (n - 1) * (interior[i] + 1) + 1
                });
            }
            let stride: Dims = interior.iter().map(|s| s + 1).collect();
            let inner = slice(b, ct, Dims::from_slice(lo), limit, stride)?;
            let ct_x = args[0].is_linear().then_some(inner);
            let ct_v = if args[1].is_linear() {
                let total = sum_all(b, ct)?;
                let kept = sum_all(b, inner)?;
                Some(emit::sub(b, total, kept)?)
            } else {
                None
            };
            Ok([ct_x, ct_v].into_iter().collect())
        }
        ShapeOp::Concatenate { axis } => {
            let out = b.ty(ct).clone();
            let mut offset = 0;
            let mut cts = Cotangents::new();
            for a in args {
                let ty: Type = match a {
                    Operand::Linear(ty) => ty.clone(),
                    Operand::Primal(v) => b.ty(*v).clone(),
                };
                let n = ty.dims()[*axis];
                if a.is_linear() {
                    let start: Dims = (0..out.rank())
                        .map(|d| if d == *axis { offset } else { 0 })
                        .collect();
                    let mut limit: Dims = Dims::from_slice(out.dims());
                    limit[*axis] = offset + n;
                    let stride = Dims::from_elem(1, out.rank());
                    cts.push(Some(slice(b, ct, start, limit, stride)?));
                } else {
                    cts.push(None);
                }
                offset += n;
            }
            Ok(cts)
        }
        ShapeOp::Rev { .. } => for_linear(args, |_, _| {
            push1(b, Op::Shape(op.clone()), &[ct]).map(Some)
        }),
    }
}
