//! Lowering of `ferrax_ir::ops::ReduceOp`: a nest over the kept dimensions around a nest over
//! the reduced ones (row-major, the interpreter's order), accumulating in a variable.

use super::{clty, strides, Access, Ctx};
use cranelift_codegen::ir::{self, condcodes::FloatCC, condcodes::IntCC, types, InstBuilder};
use ferrax_ir::ops::ReduceOp;
use ferrax_ir::{DType, InstData, Result};
use smallvec::SmallVec;

/// Lowers a reduction.
pub(crate) fn lower(cx: &mut Ctx, op: &ReduceOp, inst: &InstData) -> Result<()> {
    let r = inst.results[0];
    let x = inst.args[0];
    let xty = cx.graph.ty(x).clone();
    let dtype = xty.dtype;
    let xs = strides(xty.dims());
    let axes = op.axes();
    let keep: SmallVec<[usize; 4]> = (0..xty.rank()).filter(|d| !axes.contains(d)).collect();
    let kdims: SmallVec<[usize; 4]> = keep.iter().map(|&d| xty.dims()[d]).collect();
    let rdims: SmallVec<[usize; 4]> = axes.iter().map(|&d| xty.dims()[d]).collect();
    cx.alloc_result(r)?;
    let zero = cx.iconst(0);
    let outer = [
        Access {
            base: zero,
            strides: keep.iter().map(|&d| xs[d]).collect(),
        },
        Access {
            base: zero,
            strides: strides(&kdims),
        },
    ];
    let inner_strides: SmallVec<[i64; 4]> = axes.iter().map(|&d| xs[d]).collect();
    let is_float = dtype.is_float();
    cx.nest(&kdims, &outer, &mut |cx, _, offs| {
        let (xoff, roff) = (offs[0], offs[1]);
        let inner = [Access {
            base: xoff,
            strides: inner_strides.clone(),
        }];
        match op {
            ReduceOp::Sum { .. }
            | ReduceOp::Max { .. }
            | ReduceOp::Min { .. }
            | ReduceOp::Prod { .. } => {
                let init = init_value(cx, op, dtype);
                let acc = cx.fb.declare_var(clty(dtype));
                cx.fb.def_var(acc, init);
                cx.nest(&rdims, &inner, &mut |cx, _, o| {
                    let v = cx.load(x, o[0])?;
                    let a = cx.fb.use_var(acc);
                    let n = combine(cx, op, is_float, a, v);
                    cx.fb.def_var(acc, n);
                    Ok(())
                })?;
                let a = cx.fb.use_var(acc);
                cx.store_out(r, roff, a)
            }
            ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. } => {
                let max = matches!(op, ReduceOp::ArgMax { .. });
                let first = cx.load(x, xoff)?;
                let best = cx.fb.declare_var(clty(dtype));
                let besti = cx.fb.declare_var(types::I32);
                cx.fb.def_var(best, first);
                let z = cx.fb.ins().iconst(types::I32, 0);
                cx.fb.def_var(besti, z);
                cx.nest(&rdims, &inner, &mut |cx, idx, o| {
                    let v = cx.load(x, o[0])?;
                    let b = cx.fb.use_var(best);
                    let better = arg_better(cx, max, dtype, v, b);
                    let nb = cx.fb.ins().select(better, v, b);
                    cx.fb.def_var(best, nb);
                    let bi = cx.fb.use_var(besti);
                    let i = cx.fb.ins().ireduce(types::I32, idx[0]);
                    let ni = cx.fb.ins().select(better, i, bi);
                    cx.fb.def_var(besti, ni);
                    Ok(())
                })?;
                let bi = cx.fb.use_var(besti);
                cx.store_out(r, roff, bi)
            }
        }
    })
}

/// The initial accumulator of sum/prod/max/min (the result over no elements).
pub(crate) fn init_value(cx: &mut Ctx, op: &ReduceOp, dtype: DType) -> ir::Value {
    match (op, dtype.is_float()) {
        (ReduceOp::Sum { .. }, _) => cx.constant(dtype, 0.0),
        (ReduceOp::Prod { .. }, _) => cx.constant(dtype, 1.0),
        (ReduceOp::Max { .. }, true) => cx.constant(dtype, f64::NEG_INFINITY),
        (ReduceOp::Min { .. }, true) => cx.constant(dtype, f64::INFINITY),
        (ReduceOp::Max { .. }, false) => cx.fb.ins().iconst(types::I32, i32::MIN as i64),
        (_, false) => cx.fb.ins().iconst(types::I32, i32::MAX as i64),
        (_, true) => cx.constant(dtype, f64::INFINITY),
    }
}

/// One accumulation step of sum/prod/max/min (scalars or vectors alike).
pub(crate) fn combine(
    cx: &mut Ctx,
    op: &ReduceOp,
    is_float: bool,
    a: ir::Value,
    v: ir::Value,
) -> ir::Value {
    let ins = cx.fb.ins();
    match (op, is_float) {
        (ReduceOp::Sum { .. }, true) => ins.fadd(a, v),
        (ReduceOp::Sum { .. }, false) => ins.iadd(a, v),
        (ReduceOp::Prod { .. }, true) => ins.fmul(a, v),
        (ReduceOp::Prod { .. }, false) => ins.imul(a, v),
        (ReduceOp::Max { .. }, true) => ins.fmax(a, v),
        (ReduceOp::Max { .. }, false) => ins.smax(a, v),
        (ReduceOp::Min { .. }, true) => ins.fmin(a, v),
        (ReduceOp::Min { .. }, false) => ins.smin(a, v),
        (ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. }, _) => a,
    }
}

/// Whether `v` replaces the current best `b` of an arg-reduction: strictly better, or the
/// first NaN (a NaN counts as the extreme; the first one wins).
fn arg_better(cx: &mut Ctx, max: bool, dtype: DType, v: ir::Value, b: ir::Value) -> ir::Value {
    if dtype.is_float() {
        let cc = if max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let strictly = cx.fb.ins().fcmp(cc, v, b);
        let v_nan = cx.fb.ins().fcmp(FloatCC::Unordered, v, v);
        let b_ok = cx.fb.ins().fcmp(FloatCC::Ordered, b, b);
        let cand = cx.fb.ins().bor(strictly, v_nan);
        cx.fb.ins().band(cand, b_ok)
    } else {
        let cc = if max {
            IntCC::SignedGreaterThan
        } else {
            IntCC::SignedLessThan
        };
        cx.fb.ins().icmp(cc, v, b)
    }
}
