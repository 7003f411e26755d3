//! Rules for indexing ops. Most are linear in their data operands (indices are primal i32
//! values): cumsum transposes to a cumsum in the other direction, dynamic_slice to
//! dynamic_update_slice into zeros, gather to scatter_add and back. `scatter` (set) is linear
//! in the operand and the updates jointly; its transpose needs to know which update won where
//! an index repeats, which it finds by scattering the updates' positions. `scatter_mul`,
//! `scatter_min` and `scatter_max` are not linear: their JVPs are built from linear ops (the
//! product rule; ties share the tangent equally, as JAX's rule and `reduce_max` do).

use super::{for_linear, not_linear, Cotangents, Operand};
use crate::emit::{add, add_opt, compare, div, full, mul, or_zeros, push1, reshape, select, zeros};
use ferrax_ir::ops::{Combine, CompareOp, IndexOp, Indexing, LiteralOp};
use ferrax_ir::{Builder, DType, Error, ErrorKind, Op, Result, Shape, Type, Value};
use smallvec::SmallVec;

/// A gather of `x` by `idx` under `ix`.
fn gather(b: &mut Builder, ix: Indexing, x: Value, idx: Value) -> Result<Value> {
    push1(b, Op::Index(IndexOp::Gather(ix)), &[x, idx])
}

/// A scatter of `u` into `x` at `idx` under `at`, combining as `combine` says.
fn scatter(
    b: &mut Builder,
    at: Indexing,
    combine: Combine,
    x: Value,
    idx: Value,
    u: Value,
) -> Result<Value> {
    push1(b, Op::Index(IndexOp::Scatter { at, combine }), &[x, idx, u])
}

/// The tangent of an indexing op: the same op on the tangents of the data operands for the
/// linear ones; `y` is the primal result.
pub fn jvp(
    b: &mut Builder,
    op: &IndexOp,
    x: &[Value],
    t: &[Option<Value>],
    y: Value,
) -> Result<Option<Value>> {
    let mut args: SmallVec<[Value; 4]> = SmallVec::new();
    let data: &[usize] = match op {
        IndexOp::Cumsum { .. } | IndexOp::DynamicSlice { .. } | IndexOp::Gather(_) => &[0],
        IndexOp::DynamicUpdateSlice => &[0, 1],
        IndexOp::Scatter { at, combine } => match combine {
            Combine::Set | Combine::Add => &[0, 2],
            Combine::Mul => return scatter_mul_jvp(b, *at, x, t),
            Combine::Min | Combine::Max => return scatter_extremal_jvp(b, *at, x, t, y),
        },
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
        IndexOp::Gather(ix) => {
            let idx = indices(args, 1)?[0];
            for_linear(args, |_, ty| {
                let z = zeros(b, ty)?;
                scatter(b, *ix, Combine::Add, z, idx, ct).map(Some)
            })
        }
        IndexOp::Scatter { at, combine } => {
            let Some(idx) = args[1].primal() else {
                return Err(not_linear(op.name()));
            };
            match combine {
                Combine::Add => for_linear(args, |k, _| {
                    if k == 0 {
                        Ok(Some(ct))
                    } else {
                        gather(b, *at, ct, idx).map(Some)
                    }
                }),
                Combine::Set => {
                    let ty_of = |b: &Builder, a: &Operand| match a {
                        Operand::Linear(ty) => ty.clone(),
                        Operand::Primal(v) => b.ty(*v).clone(),
                    };
                    let (x_shape, u_ty) = (ty_of(b, &args[0]).shape, ty_of(b, &args[2]));
                    for_linear(args, |k, ty| {
                        if k == 0 {
                            // Updated positions pass nothing back to the operand.
                            let z = zeros(b, &u_ty)?;
                            scatter(b, *at, Combine::Set, ct, idx, z).map(Some)
                        } else {
                            let wins = winners(b, *at, idx, x_shape.clone(), ty)?;
                            let g = gather(b, *at, ct, idx)?;
                            let z = zeros(b, ty)?;
                            select(b, wins, g, z).map(Some)
                        }
                    })
                }
                Combine::Mul | Combine::Min | Combine::Max => Err(not_linear(op.name())),
            }
        }
    }
}

/// Whether each update of a `scatter` (set) at `idx` under `at` into an operand of shape
/// `x_shape` is the one that lands (the last of those naming its position), as a bool array
/// of the updates' shape (`u_ty`): every update scatters its own position number, and an
/// update won where its number came back.
fn winners(
    b: &mut Builder,
    at: Indexing,
    idx: Value,
    x_shape: Shape,
    u_ty: &Type,
) -> Result<Value> {
    let k = u_ty.size();
    if k > i32::MAX as usize {
        return Err(Error::new(
            ErrorKind::Transform,
            format!("transpose of scatter: {k} updates are too many to number with i32"),
        ));
    }
    let flat = push1(
        b,
        Op::Literal(LiteralOp::Iota {
            dtype: DType::I32,
            shape: Shape::new(&[k]),
            axis: 0,
        }),
        &[],
    )?;
    let ids = reshape(b, flat, u_ty.shape.clone())?;
    let x_ty = Type {
        dtype: DType::I32,
        shape: x_shape,
    };
    let none = full(b, &x_ty, -1.0)?;
    let landed = scatter(b, at, Combine::Set, none, idx, ids)?;
    let back = gather(b, at, landed, idx)?;
    compare(b, CompareOp::Eq, back, ids)
}

/// The JVP of `scatter_mul`: `out = x · P` with `P` the product of the updates landing at each
/// position, so `dout = dx · P + x · Σ du_k · Π_{l≠k} u_l`. The products of the other updates
/// are found without dividing by a zero update: per position, the product of its nonzero
/// updates and the count of its zero updates.
fn scatter_mul_jvp(
    b: &mut Builder,
    at: Indexing,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    let (xv, idx, u) = (x[0], x[1], x[2]);
    let x_ty = b.ty(xv).clone();
    let u_ty = b.ty(u).clone();
    let ones_x = full(b, &x_ty, 1.0)?;
    let mut out = None;
    if let Some(tx) = t[0] {
        let p = scatter(b, at, Combine::Mul, ones_x, idx, u)?;
        out = Some(mul(b, tx, p)?);
    }
    if let Some(tu) = t[2] {
        let zero_u = zeros(b, &u_ty)?;
        let one_u = full(b, &u_ty, 1.0)?;
        let zeros_x = zeros(b, &x_ty)?;
        let nz = compare(b, CompareOp::Ne, u, zero_u)?;
        let u1 = select(b, nz, u, one_u)?;
        let is_zero = select(b, nz, zero_u, one_u)?;
        let p1 = scatter(b, at, Combine::Mul, ones_x, idx, u1)?;
        let zc = scatter(b, at, Combine::Add, zeros_x, idx, is_zero)?;
        let bp = gather(b, at, p1, idx)?;
        let bz = gather(b, at, zc, idx)?;
        // A nonzero update: the others' product is P₁ / u when no update there is zero.
        let none_zero = compare(b, CompareOp::Eq, bz, zero_u)?;
        let q = div(b, bp, u1)?;
        let g_nz = select(b, none_zero, q, zero_u)?;
        // A zero update: the others' product is P₁ when it is the only zero there.
        let one_zero = compare(b, CompareOp::Eq, bz, one_u)?;
        let g_z = select(b, one_zero, bp, zero_u)?;
        let g = select(b, nz, g_nz, g_z)?;
        let tg = mul(b, tu, g)?;
        let s = scatter(b, at, Combine::Add, zeros_x, idx, tg)?;
        let term = mul(b, xv, s)?;
        out = add_opt(b, out, Some(term))?;
    }
    Ok(out)
}

/// The JVP of `scatter_min`/`scatter_max` with primal result `y`: at each position, the mean
/// of the tangents of the values equal to the result (the operand's element and the updates
/// landing there), so ties share the tangent equally.
fn scatter_extremal_jvp(
    b: &mut Builder,
    at: Indexing,
    x: &[Value],
    t: &[Option<Value>],
    y: Value,
) -> Result<Option<Value>> {
    let (xv, idx, u) = (x[0], x[1], x[2]);
    let x_ty = b.ty(xv).clone();
    let u_ty = b.ty(u).clone();
    let zero_x = zeros(b, &x_ty)?;
    let one_x = full(b, &x_ty, 1.0)?;
    let zero_u = zeros(b, &u_ty)?;
    let one_u = full(b, &u_ty, 1.0)?;
    let hit_x = compare(b, CompareOp::Eq, xv, y)?;
    let back = gather(b, at, y, idx)?;
    let hit_u = compare(b, CompareOp::Eq, u, back)?;
    let wx = select(b, hit_x, one_x, zero_x)?;
    let wu = select(b, hit_u, one_u, zero_u)?;
    let wus = scatter(b, at, Combine::Add, zero_x, idx, wu)?;
    let count = add(b, wx, wus)?;
    let mut num = None;
    if let Some(tx) = t[0] {
        num = Some(select(b, hit_x, tx, zero_x)?);
    }
    if let Some(tu) = t[2] {
        let sel = select(b, hit_u, tu, zero_u)?;
        let s = scatter(b, at, Combine::Add, zero_x, idx, sel)?;
        num = add_opt(b, num, Some(s))?;
    }
    match num {
        Some(n) => div(b, n, count).map(Some),
        None => Ok(None),
    }
}
