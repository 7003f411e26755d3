//! Per-element emitters for `ferrax_ir::ops::CompareOp`: IEEE comparisons on floats, signed
//! on i32, `false < true` on bools, logic on 0/1 bytes, and branch-free `select`.
//!
//! In vectorised fused loops ([`emit_vector`]) bools are lane masks (all ones for true) of
//! the integer type with the loop's lanes, i32 operands are widened to that lane width, and
//! `select` is a bit select.

use super::Ctx;
use cranelift_codegen::ir::{
    self, condcodes::FloatCC, condcodes::IntCC, Endianness, InstBuilder, MemFlagsData,
};
use ferrax_ir::ops::CompareOp;
use ferrax_ir::{DType, Result};

/// Emits `op(xs)`; `dtype` is the dtype of the compared operands (the branches for `select`).
pub(crate) fn emit(
    cx: &mut Ctx,
    op: CompareOp,
    dtype: DType,
    xs: &[ir::Value],
) -> Result<ir::Value> {
    Ok(match op {
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge => compare(cx, op, dtype, xs),
        CompareOp::And => cx.fb.ins().band(xs[0], xs[1]),
        CompareOp::Or => cx.fb.ins().bor(xs[0], xs[1]),
        CompareOp::Not => cx.fb.ins().bxor_imm_s(xs[0], 1),
        CompareOp::Select => cx.fb.ins().select(xs[0], xs[1], xs[2]),
    })
}

/// Emits `op(xs)` on vectors of a fused loop whose float vector type is `vty`: comparisons
/// give lane masks (`dtype` is the dtype of the compared operands, or of the branches for
/// `select`), logic combines masks, and `select` picks float lanes by a mask. Bool masks
/// compare as unsigned (true = all ones is the largest), matching `false < true`.
pub(crate) fn emit_vector(
    cx: &mut Ctx,
    op: CompareOp,
    dtype: DType,
    xs: &[ir::Value],
    vty: ir::Type,
) -> ir::Value {
    match op {
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge => compare(cx, op, dtype, xs),
        CompareOp::And => cx.fb.ins().band(xs[0], xs[1]),
        CompareOp::Or => cx.fb.ins().bor(xs[0], xs[1]),
        CompareOp::Not => cx.fb.ins().bnot(xs[0]),
        CompareOp::Select => {
            let flags = MemFlagsData::new().with_endianness(Endianness::Little);
            let m = cx.fb.ins().bitcast(vty, flags, xs[0]);
            cx.fb.ins().bitselect(m, xs[1], xs[2])
        }
    }
}

/// The float, signed-integer and unsigned (bool) condition codes of a comparison; `None` for
/// the logic ops and `select`.
fn condition_codes(op: CompareOp) -> Option<(FloatCC, IntCC, IntCC)> {
    Some(match op {
        CompareOp::Eq => (FloatCC::Equal, IntCC::Equal, IntCC::Equal),
        CompareOp::Ne => (FloatCC::NotEqual, IntCC::NotEqual, IntCC::NotEqual),
        CompareOp::Lt => (
            FloatCC::LessThan,
            IntCC::SignedLessThan,
            IntCC::UnsignedLessThan,
        ),
        CompareOp::Le => (
            FloatCC::LessThanOrEqual,
            IntCC::SignedLessThanOrEqual,
            IntCC::UnsignedLessThanOrEqual,
        ),
        CompareOp::Gt => (
            FloatCC::GreaterThan,
            IntCC::SignedGreaterThan,
            IntCC::UnsignedGreaterThan,
        ),
        CompareOp::Ge => (
            FloatCC::GreaterThanOrEqual,
            IntCC::SignedGreaterThanOrEqual,
            IntCC::UnsignedGreaterThanOrEqual,
        ),
        CompareOp::And | CompareOp::Or | CompareOp::Not | CompareOp::Select => return None,
    })
}

/// Emits a comparison of `xs[0]` and `xs[1]` (scalars or vectors) of `dtype`: floats compare
/// ordered as IEEE says, i32 signed, bools unsigned (`false < true`).
fn compare(cx: &mut Ctx, op: CompareOp, dtype: DType, xs: &[ir::Value]) -> ir::Value {
    let (f, s, u) = condition_codes(op).expect("called for comparisons only");
    match dtype {
        DType::F32 | DType::F64 => cx.fb.ins().fcmp(f, xs[0], xs[1]),
        DType::I32 => cx.fb.ins().icmp(s, xs[0], xs[1]),
        DType::Bool => cx.fb.ins().icmp(u, xs[0], xs[1]),
    }
}
