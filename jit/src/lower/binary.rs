//! Per-element emitters for `ferrax_ir::ops::BinaryOp`: IEEE arithmetic and NaN-propagating
//! min/max inline, `pow`, `atan2` and float `rem` through imported helpers (f32 `pow` inline
//! in fast math), and the i32 ops
//! with the interpreter's wrapping and divide-by-zero rules (never a trapping instruction).

use super::fastmath::Fm;
use super::{clty, Ctx};
use cranelift_codegen::ir::{self, condcodes::IntCC, InstBuilder};
use ferrax_ir::ops::BinaryOp;
use ferrax_ir::{DType, Result};

/// Emits `op(a, b)` for one element pair of `dtype`.
///
/// `elements` is the size of the op's operands: with the math mode, it decides whether f32
/// `pow` uses the inline form of [`Fm::pow`].
pub(crate) fn emit(
    cx: &mut Ctx,
    op: BinaryOp,
    dtype: DType,
    a: ir::Value,
    b: ir::Value,
    elements: usize,
) -> Result<ir::Value> {
    if dtype == DType::I32 {
        return Ok(emit_int(cx, op, a, b));
    }
    if op == BinaryOp::Pow && cx.opts.math.fast_for(elements) {
        let fm = Fm::new(cx, cx.fb.func.dfg.value_type(a));
        if let Some(r) = fm.pow(cx, a, b)? {
            return Ok(r);
        }
    }
    let helper = |cx: &mut Ctx, name: &str| -> Result<ir::Value> {
        let t = clty(dtype);
        let sym = format!("ferrax_{name}_{dtype}");
        Ok(cx.call(&sym, &[t, t], &[t], &[a, b])?[0])
    };
    Ok(match op {
        BinaryOp::Add => cx.fb.ins().fadd(a, b),
        BinaryOp::Sub => cx.fb.ins().fsub(a, b),
        BinaryOp::Mul => cx.fb.ins().fmul(a, b),
        BinaryOp::Div => cx.fb.ins().fdiv(a, b),
        // Cranelift's fmax/fmin return NaN when either operand is NaN and order −0 below +0,
        // as the interpreter's max/min.
        BinaryOp::Max => cx.fb.ins().fmax(a, b),
        BinaryOp::Min => cx.fb.ins().fmin(a, b),
        BinaryOp::Pow => helper(cx, "pow")?,
        BinaryOp::Atan2 => helper(cx, "atan2")?,
        BinaryOp::Rem => helper(cx, "rem")?,
    })
}

/// The i32 forms: wrapping arithmetic; `div`/`rem` by zero give 0 and `MIN / −1` wraps.
fn emit_int(cx: &mut Ctx, op: BinaryOp, a: ir::Value, b: ir::Value) -> ir::Value {
    match op {
        BinaryOp::Add => cx.fb.ins().iadd(a, b),
        BinaryOp::Sub => cx.fb.ins().isub(a, b),
        BinaryOp::Mul => cx.fb.ins().imul(a, b),
        BinaryOp::Max => cx.fb.ins().smax(a, b),
        BinaryOp::Min => cx.fb.ins().smin(a, b),
        BinaryOp::Div | BinaryOp::Rem => {
            let zero = cx.fb.ins().iconst(ir::types::I32, 0);
            let one = cx.fb.ins().iconst(ir::types::I32, 1);
            let is_zero = cx.fb.ins().icmp_imm_s(IntCC::Equal, b, 0);
            let is_m1 = cx.fb.ins().icmp_imm_s(IntCC::Equal, b, -1);
            let unsafe_div = cx.fb.ins().bor(is_zero, is_m1);
            let d = cx.fb.ins().select(unsafe_div, one, b);
            if op == BinaryOp::Div {
                let q = cx.fb.ins().sdiv(a, d);
                let neg = cx.fb.ins().ineg(a);
                let q = cx.fb.ins().select(is_m1, neg, q);
                cx.fb.ins().select(is_zero, zero, q)
            } else {
                let r = cx.fb.ins().srem(a, d);
                cx.fb.ins().select(unsafe_div, zero, r)
            }
        }
        // Rejected for i32 by the type rule; never reached for a verified graph.
        BinaryOp::Pow | BinaryOp::Atan2 => cx.fb.ins().iconst(ir::types::I32, 0),
    }
}
