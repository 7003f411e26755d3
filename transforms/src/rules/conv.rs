//! Rules for `conv_general_dilated`: bilinear, so the tangent is `conv(ta, w) + conv(x, tw)`,
//! and each transpose is again a convolution.
//!
//! - Input cotangent: the output cotangent convolved with the kernel flipped along its spatial
//!   axes and with its feature roles swapped. The forward strides become the input dilation,
//!   the forward input dilation becomes the window stride, and the padding is what puts every
//!   (input position, kernel tap) pair of the forward sum back in line:
//!   `lo' = Kd − lo − 1`, `hi' = Ld + Kd − 1 − Od − lo'` with `Kd`, `Ld`, `Od` the dilated
//!   kernel, input and (stride-dilated) output sizes. Feature groups move from the kernel's
//!   output features to its input features; batch groups become feature groups whose result
//!   features are folded back into the batch.
//! - Kernel cotangent: the input convolved with the output cotangent, batch and feature swapped
//!   on both (the input's features act as its batch, the cotangent's batch as its input
//!   features). The forward kernel dilation becomes the window stride and the forward stride
//!   the kernel dilation; the high padding shrinks or grows so the result has the kernel's
//!   size. Feature groups become batch groups and batch groups feature groups.
//!
//! Cotangents of empty operands, or from empty cotangents, are zeros (the convolutions above
//! would need windows larger than their inputs).

use super::{transpose_bilinear, Cotangents, Operand};
use crate::emit::{self, add_opt, push1};
use ferrax_ir::ops::{ConvDimensionNumbers, ConvGeneral, ShapeOp};
use ferrax_ir::{Builder, Dims, Op, Result, Shape, Type, Value};

/// The tangent of `conv_general_dilated(x, w)`.
pub fn jvp(
    b: &mut Builder,
    c: &ConvGeneral,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    let op = Op::Conv(Box::new(c.clone()));
    let l = match t[0] {
        Some(t) => Some(push1(b, op.clone(), &[t, x[1]])?),
        None => None,
    };
    let r = match t[1] {
        Some(t) => Some(push1(b, op, &[x[0], t])?),
        None => None,
    };
    add_opt(b, l, r)
}

/// Reshapes `v` to `dims`; nothing is emitted when the shape already matches.
pub(crate) fn reshape(b: &mut Builder, v: Value, dims: &[usize]) -> Result<Value> {
    if b.ty(v).dims() == dims {
        return Ok(v);
    }
    emit::reshape(b, v, Shape::new(dims))
}

/// Moves axis `from` of `v` to position `to` (of the result), keeping the others in order.
pub(crate) fn move_axis(b: &mut Builder, v: Value, from: usize, to: usize) -> Result<Value> {
    if from == to {
        return Ok(v);
    }
    let rank = b.ty(v).rank();
    let mut perm: Dims = (0..rank).filter(|&d| d != from).collect();
    perm.insert(to, from);
    emit::transpose(b, v, perm)
}

/// Regroups axis `axis` of `v`, of size `outer · inner` read as `[outer, inner]`, into the
/// axis `into` (a position among the remaining axes, whose size becomes `outer · size`, the
/// moved part major), leaving `inner` at `axis`. The rank is unchanged.
pub(crate) fn regroup(
    b: &mut Builder,
    v: Value,
    axis: usize,
    outer: usize,
    into: usize,
) -> Result<Value> {
    let dims: Dims = Dims::from_slice(b.ty(v).dims());
    let inner = dims[axis] / outer.max(1);
    // Split: [.., outer, inner, ..] with `outer` at `axis`.
    let mut split = dims.clone();
    split[axis] = inner;
    split.insert(axis, outer);
    let s = reshape(b, v, &split)?;
    // Move `outer` right before the target axis (whose position among the rank axes left
    // once `outer` is removed is `into`), then merge the two.
    let m = move_axis(b, s, axis, into)?;
    let mut merged = split.clone();
    merged.remove(axis);
    merged[into] *= outer;
    reshape(b, m, &merged)
}

/// The size of `x` dilated by `d` (0 for an empty axis).
fn dilated(x: usize, d: usize) -> i64 {
    if x == 0 {
        0
    } else {
        ((x - 1) * d + 1) as i64
    }
}

/// Swaps the first two entries of a spec (batch ↔ feature, or output ↔ input feature).
fn swapped(spec: &Dims) -> Dims {
    let mut s = spec.clone();
    s.swap(0, 1);
    s
}

/// The cotangent of the input (of type `x_ty`) given the kernel `w`.
fn transpose_lhs(
    b: &mut Builder,
    c: &ConvGeneral,
    ct: Value,
    x_ty: &Type,
    w: Value,
) -> Result<Value> {
    let w_ty = b.ty(w).clone();
    let ct_ty = b.ty(ct).clone();
    if x_ty.size() == 0 || ct_ty.size() == 0 {
        return emit::zeros(b, x_ty);
    }
    let s = c.geometry(x_ty, &w_ty)?;
    let dn = &c.dimension_numbers;
    let ns = c.spatial();
    let (g, bg) = (c.feature_group_count, c.batch_group_count);
    let groups = g.max(bg);
    // Move the group factor of the kernel's output features into its input features.
    let mut wk = if groups > 1 {
        regroup(b, w, dn.rhs[0], groups, dn.rhs[1])?
    } else {
        w
    };
    let spatial: Dims = dn.rhs[2..].iter().copied().collect();
    wk = push1(
        b,
        Op::Shape(ShapeOp::Rev {
            axes: sorted(&spatial).into_boxed_slice(),
        }),
        &[wk],
    )?;
    let mut padding = smallvec::SmallVec::new();
    for j in 0..ns {
        let kd = dilated(s.rhs_spatial[j], c.rhs_dilation[j]);
        let ld = dilated(s.lhs_spatial[j], c.lhs_dilation[j]);
        let od = dilated(s.out_spatial[j], c.window_strides[j]);
        let lo = kd - c.padding[j].0 - 1;
        padding.push((lo, ld + kd - 1 - od - lo));
    }
    let t = ConvGeneral {
        window_strides: c.lhs_dilation.clone(),
        padding,
        lhs_dilation: c.window_strides.clone(),
        rhs_dilation: c.rhs_dilation.clone(),
        dimension_numbers: ConvDimensionNumbers {
            lhs: dn.out.clone(),
            rhs: swapped(&dn.rhs),
            out: dn.lhs.clone(),
        },
        feature_group_count: groups,
        batch_group_count: 1,
    };
    let r = push1(b, Op::Conv(Box::new(t)), &[ct, wk])?;
    if bg > 1 {
        // The result's features are [batch group, feature]: fold the groups into the batch.
        regroup(b, r, dn.lhs[1], bg, dn.lhs[0])
    } else {
        Ok(r)
    }
}

/// The ascending copy of a list of axes.
fn sorted(axes: &Dims) -> Dims {
    let mut a = axes.clone();
    a.sort_unstable();
    a
}

/// The cotangent of the kernel (of type `w_ty`) given the input `x`.
fn transpose_rhs(
    b: &mut Builder,
    c: &ConvGeneral,
    ct: Value,
    w_ty: &Type,
    x: Value,
) -> Result<Value> {
    let x_ty = b.ty(x).clone();
    let ct_ty = b.ty(ct).clone();
    if w_ty.size() == 0 || ct_ty.size() == 0 {
        return emit::zeros(b, w_ty);
    }
    let s = c.geometry(&x_ty, w_ty)?;
    let dn = &c.dimension_numbers;
    let ns = c.spatial();
    let mut padding = smallvec::SmallVec::new();
    for j in 0..ns {
        let kd = dilated(s.rhs_spatial[j], c.rhs_dilation[j]);
        let ld = dilated(s.lhs_spatial[j], c.lhs_dilation[j]);
        let od = dilated(s.out_spatial[j], c.window_strides[j]);
        let lo = c.padding[j].0;
        padding.push((lo, od - ld + kd - lo - 1));
    }
    let t = ConvGeneral {
        window_strides: c.rhs_dilation.clone(),
        padding,
        lhs_dilation: c.lhs_dilation.clone(),
        rhs_dilation: c.window_strides.clone(),
        dimension_numbers: ConvDimensionNumbers {
            lhs: swapped(&dn.lhs),
            rhs: swapped(&dn.out),
            out: swapped(&dn.rhs),
        },
        feature_group_count: c.batch_group_count,
        batch_group_count: c.feature_group_count,
    };
    push1(b, Op::Conv(Box::new(t)), &[x, ct])
}

/// Transposes `conv_general_dilated` with respect to its one linear operand.
pub fn transpose(
    b: &mut Builder,
    c: &ConvGeneral,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    transpose_bilinear(
        b,
        "conv_general_dilated",
        args,
        |b, ty, other| transpose_lhs(b, c, ct, ty, other),
        |b, ty, other| transpose_rhs(b, c, ct, ty, other),
    )
}
