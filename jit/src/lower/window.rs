//! Lowering of `ferrax_ir::ops::WindowOp`: one call of a runtime kernel per op. The kernel is
//! the interpreter's own loop (`ferrax_ir::ops::window::kernel_f64` and friends), so compiled
//! results equal the interpreter's bit for bit, sums included (same order). The op's geometry
//! is computed and checked at compile time from the operand types and passed as a block of
//! i64 parameters in a stack slot, with every buffer's element count; the kernel checks the
//! block and the counts against each other before touching memory. Rank-0 operands held in
//! registers are spilled to a stack slot, and a rank-0 result is read back from one.
//!
//! Pooling-shaped ops (windows along at most two neighbouring dimensions, no padding below, no
//! dilation, every window inside the operand) call the dedicated kernel of
//! `crate::pool_kernel` instead, with the same arguments and its own block; it computes the
//! same bits without the generic loop's per-element bookkeeping.

use super::{clty, Ctx, Slot};
use cranelift_codegen::ir::{self, types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind};
use ferrax_ir::ops::window::{kernel_f32, kernel_f64, kernel_i32};
use ferrax_ir::ops::WindowOp;
use ferrax_ir::{DType, InstData, Result, Value};

/// A slice of `n` elements at `p`, empty (without reading `p`) when `n` is 0.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` initialised elements valid for the slice's lifetime.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `n` elements at `p`.
        unsafe { std::slice::from_raw_parts(p, n) }
    }
}

macro_rules! window_kernels {
    ($($name:ident: $t:ty => $kernel:ident;)*) => {$(
        /// Runs a window op on buffers of one dtype (see the module documentation).
        ///
        /// # Safety
        /// `p` points to `np` i64 parameters, `a` and `x` to `na` and `nx` readable elements,
        /// `out` to `nout` writable elements that overlap neither input (null pointers are
        /// allowed for empty buffers).
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            p: *const i64,
            np: usize,
            a: *const $t,
            na: usize,
            x: *const $t,
            nx: usize,
            out: *mut $t,
            nout: usize,
        ) {
            // SAFETY: the generated code passes buffers of exactly these sizes.
            let (p, a, x) = unsafe { (slice(p, np), slice(a, na), slice(x, nx)) };
            let out: &mut [$t] = if nout == 0 {
                &mut []
            } else {
                // SAFETY: as above; the plan never lets a window op's result share memory
                // with its operands.
                unsafe { std::slice::from_raw_parts_mut(out, nout) }
            };
            // A block that disagrees with the buffers leaves `out` untouched; it cannot
            // happen, as the block and the sizes come from the same checked types.
            let ran = $kernel(p, a, x, out);
            debug_assert!(ran, "window kernel parameters disagree with the buffers");
        }
    )*

        /// The kernel symbols of this file and of `crate::pool_kernel`, and their addresses.
        pub(crate) fn symbol(name: &str) -> Option<*const u8> {
            match name {
                $(stringify!($name) => Some($name as *const u8),)*
                _ => crate::pool_kernel::symbol(name),
            }
        }
    };
}

window_kernels! {
    ferrax_window_f64: f64 => kernel_f64;
    ferrax_window_f32: f32 => kernel_f32;
    ferrax_window_i32: i32 => kernel_i32;
}

/// The address of `v`'s buffer, spilling a register value to a new stack slot.
fn address(cx: &mut Ctx, v: Value) -> Result<ir::Value> {
    match cx.slot(v)? {
        Slot::Mem(base) => Ok(base),
        Slot::Reg(x) => {
            let dtype = cx.graph.ty(v).dtype;
            let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                dtype.size_bytes() as u32,
                3,
            ));
            cx.fb.ins().stack_store(types::I64, x, slot, 0);
            Ok(cx.fb.ins().stack_addr(types::I64, slot, 0))
        }
    }
}

/// Lowers a windowed op.
pub(crate) fn lower(cx: &mut Ctx, op: &WindowOp, inst: &InstData) -> Result<()> {
    if cx.dest == crate::Destination::Object {
        // An exported object has no kernels to call: loop nests instead.
        return super::portable::lower_window(cx, op, inst);
    }
    let r = inst.results[0];
    let a = inst.args[0];
    let x = inst.args[inst.args.len() - 1];
    let xty = cx.graph.ty(x).clone();
    let rty = cx.graph.ty(r).clone();
    let dtype = xty.dtype;
    let pool = crate::pool_kernel::plan(op, xty.dims());
    let name = match (dtype, pool.is_some()) {
        (DType::F64, false) => "ferrax_window_f64",
        (DType::F32, false) => "ferrax_window_f32",
        (DType::I32, false) => "ferrax_window_i32",
        (DType::F64, true) => "ferrax_pool_f64",
        (DType::F32, true) => "ferrax_pool_f32",
        (DType::I32, true) => "ferrax_pool_i32",
        (DType::Bool, _) => return Err(super::jit_err("window ops take no bool operands")),
    };
    let params = match pool {
        Some(block) => block,
        None => op.params(xty.dims())?,
    };
    let bytes = u32::try_from(params.len() * 8)
        .map_err(|_| super::jit_err("a window op's parameter block is too large"))?;
    let pslot =
        cx.fb
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 3));
    for (k, &v) in params.iter().enumerate() {
        let c = cx.iconst(v);
        cx.fb
            .ins()
            .stack_store(types::I64, c, pslot, (k * 8) as i32);
    }
    let pp = cx.fb.ins().stack_addr(types::I64, pslot, 0);
    let pa = address(cx, a)?;
    let px = address(cx, x)?;
    // The result: its buffer, or for a rank-0 result a stack slot read back after the call.
    let (pout, scalar_slot) = match cx.alloc_result(r)? {
        Some(base) => (base, None),
        None => {
            let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                dtype.size_bytes() as u32,
                3,
            ));
            (cx.fb.ins().stack_addr(types::I64, slot, 0), Some(slot))
        }
    };
    let sizes =
        [params.len(), cx.graph.ty(a).size(), xty.size(), rty.size()].map(|n| cx.iconst(n as i64));
    let args = [pp, sizes[0], pa, sizes[1], px, sizes[2], pout, sizes[3]];
    cx.call(name, &[types::I64; 8], &[], &args)?;
    if let Some(slot) = scalar_slot {
        let addr = cx.fb.ins().stack_addr(types::I64, slot, 0);
        let y = cx
            .fb
            .ins()
            .load(clty(dtype), MemFlagsData::trusted(), addr, 0);
        let z = cx.iconst(0);
        cx.store_out(r, z, y)?;
    }
    Ok(())
}
