//! Rules for `dot_general`: bilinear, so the tangent is `ta·b + a·tb` and the transpose with
//! respect to one operand contracts the cotangent with the other operand, then permutes the
//! result's dimensions back into the operand's order.

use super::{transpose_bilinear, Cotangents, Operand};
use crate::emit::{self, add_opt, push1};
use ferrax_ir::ops::DotGeneral;
use ferrax_ir::{Builder, Dims, Op, Result, Type, Value};

/// The tangent of `dot_general(a, b)`.
pub fn jvp(
    b: &mut Builder,
    d: &DotGeneral,
    x: &[Value],
    t: &[Option<Value>],
) -> Result<Option<Value>> {
    let op = Op::Dot(Box::new(d.clone()));
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

/// The permutation that puts result dimension `k`, which stands for operand dimension `src[k]`,
/// back at position `src[k]`.
fn inverse(src: &[usize]) -> Dims {
    let mut perm = Dims::from_elem(0, src.len());
    for (k, &s) in src.iter().enumerate() {
        perm[s] = k;
    }
    perm
}

/// The operand dimensions contracted against `other_contract` listed in the order the other
/// operand's contracted dimensions appear (ascending), as `dot_general` emits them.
fn contracted_in_other_order(own: &[usize], other: &[usize]) -> Dims {
    let mut sorted: Dims = Dims::from_slice(other);
    sorted.sort_unstable();
    sorted
        .iter()
        .map(|o| own[other.iter().position(|x| x == o).expect("paired dims")])
        .collect()
}

/// The cotangent of the left operand (of type `a_ty`) given the right operand `rhs`.
fn transpose_lhs(
    b: &mut Builder,
    d: &DotGeneral,
    ct: Value,
    a_ty: &Type,
    rhs: Value,
) -> Result<Value> {
    let nb = d.lhs_batch.len();
    let a_free = d.lhs_free(a_ty.rank());
    let b_free = d.rhs_free(b.ty(rhs).rank());
    let dn = DotGeneral {
        lhs_contract: (0..b_free.len()).map(|j| nb + a_free.len() + j).collect(),
        rhs_contract: b_free,
        lhs_batch: (0..nb).collect(),
        rhs_batch: d.rhs_batch.clone(),
    };
    let r = push1(b, Op::Dot(Box::new(dn)), &[ct, rhs])?;
    let mut src: Dims = d.lhs_batch.clone();
    src.extend_from_slice(&a_free);
    src.extend(contracted_in_other_order(&d.lhs_contract, &d.rhs_contract));
    emit::transpose(b, r, inverse(&src))
}

/// The cotangent of the right operand (of type `b_ty`) given the left operand `lhs`.
fn transpose_rhs(
    b: &mut Builder,
    d: &DotGeneral,
    ct: Value,
    b_ty: &Type,
    lhs: Value,
) -> Result<Value> {
    let nb = d.lhs_batch.len();
    let a_free = d.lhs_free(b.ty(lhs).rank());
    let b_free = d.rhs_free(b_ty.rank());
    let dn = DotGeneral {
        lhs_contract: (0..a_free.len()).map(|j| nb + j).collect(),
        rhs_contract: a_free,
        lhs_batch: (0..nb).collect(),
        rhs_batch: d.lhs_batch.clone(),
    };
    let r = push1(b, Op::Dot(Box::new(dn)), &[ct, lhs])?;
    let mut src: Dims = d.rhs_batch.clone();
    src.extend_from_slice(&b_free);
    src.extend(contracted_in_other_order(&d.rhs_contract, &d.lhs_contract));
    emit::transpose(b, r, inverse(&src))
}

/// Transposes `dot_general` with respect to its one linear operand.
pub fn transpose(
    b: &mut Builder,
    d: &DotGeneral,
    args: &[Operand],
    ct: Value,
) -> Result<Cotangents> {
    transpose_bilinear(
        b,
        "dot_general",
        args,
        |b, ty, other| transpose_lhs(b, d, ct, ty, other),
        |b, ty, other| transpose_rhs(b, d, ct, ty, other),
    )
}
