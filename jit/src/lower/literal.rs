//! Lowering of `ferrax_ir::ops::LiteralOp`: scalar constants become immediates, array
//! constants are read in place from the literal (kept alive by the compiled function; an
//! exported object carries them as data objects instead), and
//! `iota` is a loop nest writing its index.

use super::{clty, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{immediates::Ieee32, immediates::Ieee64, types, InstBuilder};
use ferrax_ir::ops::LiteralOp;
use ferrax_ir::{DType, Data, InstData, Result};

/// Lowers a literal op.
pub(crate) fn lower(cx: &mut Ctx, op: &LiteralOp, inst: &InstData) -> Result<()> {
    let r = inst.results[0];
    match op {
        LiteralOp::Const(lit) => {
            let a = lit.array();
            let slot = if a.dims().is_empty() {
                Slot::Reg(match a.data() {
                    Data::F32(v) => cx.fb.ins().f32const(Ieee32::with_bits(v[0].to_bits())),
                    Data::F64(v) => cx.fb.ins().f64const(Ieee64::with_bits(v[0].to_bits())),
                    Data::I32(v) => cx.fb.ins().iconst(types::I32, v[0] as i64),
                    Data::Bool(v) => cx.fb.ins().iconst(types::I8, v[0] as i64),
                })
            } else if cx.dest == crate::Destination::Object {
                // The element bytes in little-endian order, that of every exported target.
                let bytes: Vec<u8> = match a.data() {
                    Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
                };
                Slot::Mem(cx.data_addr(bytes)?)
            } else {
                let addr = match a.data() {
                    Data::F32(v) => v.as_ptr() as usize,
                    Data::F64(v) => v.as_ptr() as usize,
                    Data::I32(v) => v.as_ptr() as usize,
                    Data::Bool(v) => v.as_ptr() as usize,
                };
                cx.consts.push(lit.clone());
                Slot::Mem(cx.iconst(addr as i64))
            };
            cx.slots[r.index()] = Some(slot);
            Ok(())
        }
        LiteralOp::Iota { dtype, shape, axis } => {
            let dtype = *dtype;
            let axis = *axis;
            cx.alloc_result(r)?;
            let base = cx.iconst(0);
            let acc = Access {
                base,
                strides: strides(shape.dims()),
            };
            cx.nest(shape.dims(), &[acc], &mut |cx, idx, offs| {
                let i = idx[axis];
                let x = match dtype {
                    DType::F32 | DType::F64 => cx.fb.ins().fcvt_from_sint(clty(dtype), i),
                    DType::I32 => cx.fb.ins().ireduce(types::I32, i),
                    DType::Bool => cx.fb.ins().icmp_imm_s(
                        cranelift_codegen::ir::condcodes::IntCC::NotEqual,
                        i,
                        0,
                    ),
                };
                cx.store_out(r, offs[0], x)
            })
        }
    }
}
