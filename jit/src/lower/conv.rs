//! Lowering of `ferrax_ir::ops::ConvGeneral`: one call of the runtime kernel
//! (`crate::conv_kernel`, imported as `ferrax_conv_f32` / `ferrax_conv_f64`) with the operand
//! and result buffers and a parameter block written to a stack slot. The block holds every
//! size and element stride the kernel uses, taken from the operand and result types that the
//! type rule checked, so any layout runs without transposes.

use super::{jit_err, strides, Ctx, Slot};
use cranelift_codegen::ir::{types, InstBuilder, StackSlotData, StackSlotKind};
use ferrax_ir::ops::ConvGeneral;
use ferrax_ir::{DType, InstData, Result};

/// Lowers the convolution `inst`.
pub(crate) fn lower(cx: &mut Ctx, op: &ConvGeneral, inst: &InstData) -> Result<()> {
    if cx.dest == crate::Destination::Object {
        // An exported object has no kernel to call: the direct loop nest instead.
        return super::portable::lower_conv(cx, op, inst);
    }
    let (a, b, r) = (inst.args[0], inst.args[1], inst.results[0]);
    let (aty, bty) = (cx.graph.ty(a).clone(), cx.graph.ty(b).clone());
    let rty = cx.graph.ty(r).clone();
    let shape = op.geometry(&aty, &bty)?;
    cx.alloc_result(r)?;
    let (Slot::Mem(pa), Slot::Mem(pb), Slot::Mem(pc)) = (cx.slot(a)?, cx.slot(b)?, cx.slot(r)?)
    else {
        return Err(jit_err("conv_general_dilated operands must be buffers"));
    };
    let block = crate::conv_kernel::params(
        op,
        &shape,
        &strides(aty.dims()),
        &strides(bty.dims()),
        &strides(rty.dims()),
    );
    let bytes = u32::try_from(block.len() * 8)
        .map_err(|_| jit_err("a convolution's parameter block is too large"))?;
    let slot =
        cx.fb
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 3));
    for (k, &v) in block.iter().enumerate() {
        let c = cx.iconst(v as i64);
        cx.fb.ins().stack_store(types::I64, c, slot, (8 * k) as i32);
    }
    let p = cx.fb.ins().stack_addr(types::I64, slot, 0);
    let name = match aty.dtype {
        DType::F64 => "ferrax_conv_f64",
        DType::F32 => "ferrax_conv_f32",
        DType::I32 | DType::Bool => {
            return Err(jit_err("conv_general_dilated takes float operands"))
        }
    };
    cx.call(name, &[types::I64; 4], &[], &[p, pa, pb, pc])?;
    Ok(())
}
