//! Per-element emitters for `ferrax_ir::ops::ConvertOp`, with Rust's `as` semantics (floats to
//! i32 saturate and NaN becomes 0; numbers to bool are `x != 0`, so NaN is true).

use super::{clty, Ctx};
use cranelift_codegen::ir::{self, condcodes::FloatCC, condcodes::IntCC, types, InstBuilder};
use ferrax_ir::ops::ConvertOp;
use ferrax_ir::{DType, Result};

/// Emits the conversion of one element `x` of dtype `from`.
pub(crate) fn emit(cx: &mut Ctx, op: ConvertOp, from: DType, x: ir::Value) -> Result<ir::Value> {
    let to = match op {
        ConvertOp::Convert(d) => d,
        ConvertOp::StopGradient => return Ok(x),
    };
    Ok(match (from, to) {
        (DType::F32, DType::F32)
        | (DType::F64, DType::F64)
        | (DType::I32, DType::I32)
        | (DType::Bool, DType::Bool) => x,
        (DType::F32, DType::F64) => cx.fb.ins().fpromote(types::F64, x),
        (DType::F64, DType::F32) => cx.fb.ins().fdemote(types::F32, x),
        (DType::F32 | DType::F64, DType::I32) => cx.fb.ins().fcvt_to_sint_sat(types::I32, x),
        (DType::I32, DType::F32 | DType::F64) => cx.fb.ins().fcvt_from_sint(clty(to), x),
        (DType::Bool, DType::F32 | DType::F64) => {
            let w = cx.fb.ins().uextend(types::I32, x);
            cx.fb.ins().fcvt_from_sint(clty(to), w)
        }
        (DType::Bool, DType::I32) => cx.fb.ins().uextend(types::I32, x),
        (DType::F32 | DType::F64, DType::Bool) => {
            let zero = cx.constant(from, 0.0);
            cx.fb.ins().fcmp(FloatCC::NotEqual, x, zero)
        }
        (DType::I32, DType::Bool) => cx.fb.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
    })
}
