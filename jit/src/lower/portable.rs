//! Code that runs without ferrax's runtime, for exported objects
//! ([`crate::Destination::Object`]): what the in-process JIT gets from a Rust helper, an
//! object gets from Cranelift code of its own or from the C library.
//!
//! - **Scalar helpers** whose interpreter definition is not one libm call (`erf`,
//!   `logistic`, `asinh`, `acosh`, `atanh`) become local functions of the object, defined once
//!   per object and called like the imported helpers. Each performs exactly the operations of
//!   the interpreter's definition (`ferrax_ir::ops::UnaryOp::scalar_f64`), in its order, with
//!   libm for the transcendental parts (`exp`, `hypot`, `log1p`, `log` and their f32 forms), so
//!   its results equal the interpreter's and the JIT's bit for bit.
//! - **Tapes** of reverse-mode `while_loop`s grow with the C library's `realloc` and are freed
//!   with `free` (both keep the 16-byte alignment the tape needs on the supported targets); a
//!   failed `realloc` is the entry's non-zero status, as in the JIT.
//! - **Window ops and convolutions** are loop nests here instead of calls of the Rust kernels:
//!   the interpreter's loops, in its order, so window results and convolutions equal the
//!   interpreter bit for bit (the JIT's GEMM path for large convolutions sums in another order,
//!   within rounding of these).

use super::{clty, jit_err, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{
    self, condcodes::FloatCC, condcodes::IntCC, types, AbiParam, Function, InstBuilder,
    MemFlagsData, Signature, StackSlotData, StackSlotKind, UserFuncName,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncOrDataId, Linkage, Module};
use ferrax_ir::ops::unary::{
    ERF_FRACTION_TERMS, ERF_SERIES_TOLERANCE, ERF_SPLITS, HYPERBOLIC_HUGE as HUGE,
};
use ferrax_ir::ops::{window::Monoid, window::Select, ConvGeneral, WindowOp};
use ferrax_ir::{DType, InstData, Result, Value};
use smallvec::SmallVec;

/// Calls the helper `name` the way an object can: `Some` with the results for the helpers
/// this module provides, `None` for the others (which must have a libm equivalent).
pub(crate) fn call(
    cx: &mut Ctx,
    name: &str,
    args: &[ir::Value],
) -> Result<Option<SmallVec<[ir::Value; 1]>>> {
    let ptr = types::I64;
    let (callee, params, rets): (String, Vec<ir::Type>, Vec<ir::Type>) = match name {
        // `realloc(NULL, n)` allocates; the old size is not needed.
        "ferrax_tape_grow" => ("realloc".into(), vec![ptr, ptr], vec![ptr]),
        "ferrax_tape_free" => ("free".into(), vec![ptr], vec![]),
        _ => match scalar_helper(name) {
            Some((op, t)) => {
                let f = local_helper(cx, op, t)?;
                let fref = cx.module.declare_func_in_func(f, cx.fb.func);
                let call = cx.fb.ins().call(fref, args);
                return Ok(Some(SmallVec::from_slice(cx.fb.inst_results(call))));
            }
            None => return Ok(None),
        },
    };
    let args: SmallVec<[ir::Value; 2]> = match name {
        "ferrax_tape_grow" => SmallVec::from_slice(&[args[0], args[2]]),
        _ => SmallVec::from_slice(&args[..1]),
    };
    let fref = import(cx.module, cx.fb.func, &callee, &params, &rets)?;
    let call = cx.fb.ins().call(fref, &args);
    Ok(Some(SmallVec::from_slice(cx.fb.inst_results(call))))
}

/// The scalar helpers emitted into objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Helper {
    Erf,
    Logistic,
    Asinh,
    Acosh,
    Atanh,
}

/// The helper and element type of a `ferrax_*_f64` / `_f32` scalar helper name, for the
/// helpers this module defines.
fn scalar_helper(name: &str) -> Option<(Helper, ir::Type)> {
    let rest = name.strip_prefix("ferrax_")?;
    let (op, t) = if let Some(op) = rest.strip_suffix("_f64") {
        (op, types::F64)
    } else {
        (rest.strip_suffix("_f32")?, types::F32)
    };
    let h = match op {
        "erf" => Helper::Erf,
        "logistic" => Helper::Logistic,
        "asinh" => Helper::Asinh,
        "acosh" => Helper::Acosh,
        "atanh" => Helper::Atanh,
        _ => return None,
    };
    Some((h, t))
}

/// Declares the C library function `name` in `module` and in `func`.
fn import(
    module: &mut dyn Module,
    func: &mut Function,
    name: &str,
    params: &[ir::Type],
    rets: &[ir::Type],
) -> Result<ir::FuncRef> {
    let mut sig = Signature::new(module.isa().default_call_conv());
    sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    sig.returns.extend(rets.iter().map(|&t| AbiParam::new(t)));
    let id = module
        .declare_function(name, Linkage::Import, &sig)
        .map_err(|e| jit_err(format!("cannot import {name}: {e}")))?;
    Ok(module.declare_func_in_func(id, func))
}

/// The local function computing `h` on `t`, defined in the module on first use.
fn local_helper(cx: &mut Ctx, h: Helper, t: ir::Type) -> Result<cranelift_module::FuncId> {
    let suffix = if t == types::F64 { "f64" } else { "f32" };
    let name = format!("__ferrax_rt_{h:?}_{suffix}").to_lowercase();
    if let Some(FuncOrDataId::Func(id)) = cx.module.get_name(&name) {
        return Ok(id);
    }
    let mut sig = Signature::new(cx.module.isa().default_call_conv());
    sig.params.push(AbiParam::new(t));
    sig.returns.push(AbiParam::new(t));
    let id = cx
        .module
        .declare_function(&name, Linkage::Local, &sig)
        .map_err(|e| jit_err(format!("cannot declare {name}: {e}")))?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fbc = FunctionBuilderContext::new();
    let cfg = cx.module.isa().frontend_config();
    {
        let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let x = fb.block_params(entry)[0];
        let y = if h == Helper::Erf && t == types::F32 {
            // erf in f32 is the f64 erf of the widened argument, rounded.
            let f = local_helper(cx, Helper::Erf, types::F64)?;
            let fref = cx.module.declare_func_in_func(f, fb.func);
            let wide = fb.ins().fpromote(types::F64, x);
            let call = fb.ins().call(fref, &[wide]);
            let r = fb.inst_results(call)[0];
            fb.ins().fdemote(types::F32, r)
        } else {
            let mut e = Emit {
                fb: &mut fb,
                module: &mut *cx.module,
                t,
            };
            match h {
                Helper::Erf => e.erf(x)?,
                Helper::Logistic => e.logistic(x)?,
                Helper::Asinh => e.asinh(x)?,
                Helper::Acosh => e.acosh(x)?,
                Helper::Atanh => e.atanh(x)?,
            }
        };
        fb.ins().return_(&[y]);
        fb.seal_all_blocks();
        fb.finalize(cfg);
    }
    let mut ctx = cranelift_codegen::Context::for_function(func);
    crate::compile::define_function(cx.module, id, &mut ctx, &format!(" of {name}"))?;
    Ok(id)
}

/// Emits the body of one scalar helper on the float type `t`.
struct Emit<'e, 'f> {
    fb: &'e mut FunctionBuilder<'f>,
    module: &'e mut dyn Module,
    t: ir::Type,
}

impl Emit<'_, '_> {
    /// A constant of the helper's type.
    fn c(&mut self, v: f64) -> ir::Value {
        if self.t == types::F64 {
            self.fb.ins().f64const(v)
        } else {
            self.fb.ins().f32const(v as f32)
        }
    }

    /// Calls the libm function `name` (the f32 form gets the `f` suffix) on `args`.
    fn libm(&mut self, name: &str, args: &[ir::Value]) -> Result<ir::Value> {
        let name = if self.t == types::F64 {
            name.to_string()
        } else {
            format!("{name}f")
        };
        let params = vec![self.t; args.len()];
        let fref = import(self.module, self.fb.func, &name, &params, &[self.t])?;
        let call = self.fb.ins().call(fref, args);
        Ok(self.fb.inst_results(call)[0])
    }

    /// `1/(1 + e⁻ˣ)` for `x ≥ 0`, `eˣ/(1 + eˣ)` below (and for NaN), as the interpreter.
    fn logistic(&mut self, x: ir::Value) -> Result<ir::Value> {
        let zero = self.c(0.0);
        let one = self.c(1.0);
        let nonneg = self.fb.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
        let nx = self.fb.ins().fneg(x);
        let arg = self.fb.ins().select(nonneg, nx, x);
        let e = self.libm("exp", &[arg])?;
        let num = self.fb.ins().select(nonneg, one, e);
        let den = self.fb.ins().fadd(one, e);
        Ok(self.fb.ins().fdiv(num, den))
    }

    /// `yes()` when `cond` holds, else `no()`, each in a block of its own.
    fn choose(
        &mut self,
        cond: ir::Value,
        yes: &mut dyn FnMut(&mut Self) -> Result<ir::Value>,
        no: &mut dyn FnMut(&mut Self) -> Result<ir::Value>,
    ) -> Result<ir::Value> {
        let (a, b, join) = (
            self.fb.create_block(),
            self.fb.create_block(),
            self.fb.create_block(),
        );
        self.fb.append_block_param(join, self.t);
        self.fb.ins().brif(cond, a, &[], b, &[]);
        self.fb.switch_to_block(a);
        let y = yes(self)?;
        self.fb.ins().jump(join, &[y.into()]);
        self.fb.switch_to_block(b);
        let n = no(self)?;
        self.fb.ins().jump(join, &[n.into()]);
        self.fb.switch_to_block(join);
        Ok(self.fb.block_params(join)[0])
    }

    /// `log v + log 2`, the inverse hyperbolic functions' form for huge arguments.
    fn log_twice(&mut self, v: ir::Value) -> Result<ir::Value> {
        let l = self.libm("log", &[v])?;
        let ln2 = self.c(std::f64::consts::LN_2);
        Ok(self.fb.ins().fadd(l, ln2))
    }

    /// `ferrax_ir::ops::unary::asinh`'s operations.
    fn asinh(&mut self, x: ir::Value) -> Result<ir::Value> {
        let ax = self.fb.ins().fabs(x);
        let huge = self.c(HUGE);
        let big = self.fb.ins().fcmp(FloatCC::GreaterThanOrEqual, ax, huge);
        let r = self.choose(big, &mut |e| e.log_twice(ax), &mut |e| {
            let one = e.c(1.0);
            let ix = e.fb.ins().fdiv(one, ax);
            let h = e.libm("hypot", &[one, ix])?;
            let d = e.fb.ins().fadd(h, ix);
            let q = e.fb.ins().fdiv(ax, d);
            let s = e.fb.ins().fadd(ax, q);
            e.libm("log1p", &[s])
        })?;
        Ok(self.fb.ins().fcopysign(r, x))
    }

    /// `ferrax_ir::ops::unary::acosh`'s operations (NaN below 1 and for NaN).
    fn acosh(&mut self, x: ir::Value) -> Result<ir::Value> {
        let one = self.c(1.0);
        let below = self.fb.ins().fcmp(FloatCC::UnorderedOrLessThan, x, one);
        self.choose(below, &mut |e| Ok(e.c(f64::NAN)), &mut |e| {
            let huge = e.c(HUGE);
            let big = e.fb.ins().fcmp(FloatCC::GreaterThanOrEqual, x, huge);
            e.choose(big, &mut |e| e.log_twice(x), &mut |e| {
                let two = e.c(2.0);
                let above = e.fb.ins().fcmp(FloatCC::GreaterThan, x, two);
                e.choose(
                    above,
                    &mut |e| {
                        let (one, two) = (e.c(1.0), e.c(2.0));
                        let xx = e.fb.ins().fmul(x, x);
                        let m = e.fb.ins().fsub(xx, one);
                        let r = e.fb.ins().sqrt(m);
                        let xr = e.fb.ins().fadd(x, r);
                        let inv = e.fb.ins().fdiv(one, xr);
                        let tx = e.fb.ins().fmul(two, x);
                        let d = e.fb.ins().fsub(tx, inv);
                        e.libm("log", &[d])
                    },
                    &mut |e| {
                        let (one, two) = (e.c(1.0), e.c(2.0));
                        let t = e.fb.ins().fsub(x, one);
                        let tt = e.fb.ins().fmul(two, t);
                        let t2 = e.fb.ins().fmul(t, t);
                        let u = e.fb.ins().fadd(tt, t2);
                        let r = e.fb.ins().sqrt(u);
                        let s = e.fb.ins().fadd(t, r);
                        e.libm("log1p", &[s])
                    },
                )
            })
        })
    }

    /// `ferrax_ir::ops::unary::atanh`'s operations.
    fn atanh(&mut self, x: ir::Value) -> Result<ir::Value> {
        let (half, one, two) = (self.c(0.5), self.c(1.0), self.c(2.0));
        let a = self.fb.ins().fabs(x);
        let ta = self.fb.ins().fmul(two, a);
        let d = self.fb.ins().fsub(one, a);
        let y = self.fb.ins().fdiv(ta, d);
        let l = self.libm("log1p", &[y])?;
        let r = self.fb.ins().fmul(half, l);
        Ok(self.fb.ins().fcopysign(r, x))
    }

    /// `ferrax_ir::ops::unary::erf` in f64: its series below 2.5, its continued fraction
    /// below 6, 1 beyond, the sign copied from `x`, NaN kept.
    fn erf(&mut self, x: ir::Value) -> Result<ir::Value> {
        let f = types::F64;
        let fb = &mut *self.fb;
        let done = fb.create_block();
        fb.append_block_param(done, f);
        let num = fb.create_block();
        let series = fb.create_block();
        let not_series = fb.create_block();
        let fraction = fb.create_block();
        let is_nan = fb.ins().fcmp(FloatCC::Unordered, x, x);
        fb.ins().brif(is_nan, done, &[x.into()], num, &[]);

        fb.switch_to_block(num);
        let a = fb.ins().fabs(x);
        let neg_a = fb.ins().fneg(a);
        let sq = fb.ins().fmul(neg_a, a);
        let limit = fb.ins().f64const(ERF_SPLITS.0);
        let small = fb.ins().fcmp(FloatCC::LessThan, a, limit);
        fb.ins().brif(small, series, &[], not_series, &[]);

        // The series: term, sum and k loop-carried, tested before each step.
        fb.switch_to_block(series);
        let two = fb.ins().f64const(2.0);
        let ta = fb.ins().fmul(two, a);
        let two_a2 = fb.ins().fmul(ta, a);
        let head = fb.create_block();
        let step = fb.create_block();
        let summed = fb.create_block();
        for _ in 0..3 {
            fb.append_block_param(head, f);
        }
        let k1 = fb.ins().f64const(1.0);
        fb.ins().jump(head, &[a.into(), a.into(), k1.into()]);
        fb.switch_to_block(head);
        let hp = fb.block_params(head).to_vec();
        let (term, sum, k) = (hp[0], hp[1], hp[2]);
        let tiny = fb.ins().f64const(ERF_SERIES_TOLERANCE);
        let bound = fb.ins().fmul(sum, tiny);
        let more = fb.ins().fcmp(FloatCC::GreaterThan, term, bound);
        fb.ins().brif(more, step, &[], summed, &[]);
        fb.switch_to_block(step);
        let two = fb.ins().f64const(2.0);
        let one = fb.ins().f64const(1.0);
        let tk = fb.ins().fmul(two, k);
        let den = fb.ins().fadd(tk, one);
        let ratio = fb.ins().fdiv(two_a2, den);
        let term2 = fb.ins().fmul(term, ratio);
        let sum2 = fb.ins().fadd(sum, term2);
        let k2 = fb.ins().fadd(k, one);
        fb.ins().jump(head, &[term2.into(), sum2.into(), k2.into()]);
        fb.switch_to_block(summed);
        let e = import(self.module, fb.func, "exp", &[f], &[f])?;
        let call = fb.ins().call(e, &[sq]);
        let ex = fb.inst_results(call)[0];
        let c = fb.ins().f64const(std::f64::consts::FRAC_2_SQRT_PI);
        let ce = fb.ins().fmul(c, ex);
        let r = fb.ins().fmul(ce, sum);
        fb.ins().jump(done, &[r.into()]);

        // The continued fraction from its tail (unrolled: k is a constant).
        fb.switch_to_block(not_series);
        let six = fb.ins().f64const(ERF_SPLITS.1);
        let mid = fb.ins().fcmp(FloatCC::LessThan, a, six);
        let one = fb.ins().f64const(1.0);
        fb.ins().brif(mid, fraction, &[], done, &[one.into()]);
        fb.switch_to_block(fraction);
        let mut t = a;
        for k in (1..=ERF_FRACTION_TERMS).rev() {
            let kh = fb.ins().f64const(k as f64 * 0.5);
            let q = fb.ins().fdiv(kh, t);
            t = fb.ins().fadd(a, q);
        }
        let call = fb.ins().call(e, &[sq]);
        let ex = fb.inst_results(call)[0];
        let sp = fb.ins().f64const(std::f64::consts::PI.sqrt());
        let den = fb.ins().fmul(sp, t);
        let erfc = fb.ins().fdiv(ex, den);
        let one = fb.ins().f64const(1.0);
        let r = fb.ins().fsub(one, erfc);
        fb.ins().jump(done, &[r.into()]);

        fb.switch_to_block(done);
        let r = fb.block_params(done)[0];
        // NaN passes through copysign unchanged in value (a NaN stays a NaN).
        Ok(fb.ins().fcopysign(r, x))
    }
}

/// The element offset along one axis of the operand a window (or convolution tap) reads:
/// position `p = out·stride + tap·dilation − lo` of the padded, dilated line, which holds an
/// operand element when `0 ≤ p < len·base` and `base` divides `p`.
struct Axis {
    stride: i64,
    dilation: i64,
    lo: i64,
    base: i64,
    len: i64,
    /// The operand's element stride along the axis.
    step: i64,
    /// Whether every position the loops reach is an operand element (no test emitted).
    always: bool,
}

impl Axis {
    /// The axis for `outs` results and `taps` taps; `Err` when a position the loops reach
    /// does not fit in an i64 (it cannot, for types the op's type rule accepted).
    #[allow(clippy::too_many_arguments)]
    fn new(
        outs: usize,
        taps: usize,
        stride: usize,
        dilation: usize,
        lo: i128,
        base: usize,
        len: usize,
        step: i64,
    ) -> Result<Axis> {
        let far = (outs.max(1) as i128 - 1) * stride as i128
            + (taps.max(1) as i128 - 1) * dilation as i128
            - lo;
        let near = -lo;
        let fits = |v: i128| i64::try_from(v).is_ok();
        let span = len as i128 * base as i128;
        if !fits(far) || !fits(near) || !fits(span) || !fits(stride as i128) {
            return Err(jit_err(
                "a window or convolution reaches positions beyond the i64 range",
            ));
        }
        Ok(Axis {
            stride: stride as i64,
            dilation: dilation as i64,
            lo: lo as i64,
            base: base as i64,
            len: len as i64,
            step,
            always: base == 1 && near >= 0 && far < len as i128,
        })
    }

    /// Emits `(inside, offset)` for result index `o` and tap `k`: `inside` an i8 (or `None`
    /// when always inside), `offset` the operand element offset along the axis (only
    /// meaningful when inside).
    fn emit(&self, cx: &mut Ctx, o: ir::Value, k: ir::Value) -> (Option<ir::Value>, ir::Value) {
        let ins = cx.fb.ins();
        let a = ins.imul_imm_s(o, self.stride);
        let b = cx.fb.ins().imul_imm_s(k, self.dilation);
        let p = cx.fb.ins().iadd(a, b);
        let q = cx.fb.ins().iadd_imm_s(p, -self.lo);
        if self.always {
            let off = cx.fb.ins().imul_imm_s(q, self.step);
            return (None, off);
        }
        // Unsigned: a negative position compares above any length.
        let inside = cx
            .fb
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, q, self.len * self.base);
        let (inside, src) = if self.base == 1 {
            (inside, q)
        } else {
            let r = cx.fb.ins().urem_imm_s(q, self.base);
            let whole = cx.fb.ins().icmp_imm_s(IntCC::Equal, r, 0);
            let both = cx.fb.ins().band(inside, whole);
            (both, cx.fb.ins().udiv_imm_s(q, self.base))
        };
        let off = cx.fb.ins().imul_imm_s(src, self.step);
        (Some(inside), off)
    }
}

/// `(inside, offset)` of one tap over several axes: the offsets summed onto `base`, the
/// tests combined (`None` when every axis is always inside).
fn taps(
    cx: &mut Ctx,
    axes: &[Axis],
    outs: &[ir::Value],
    ks: &[ir::Value],
    base: ir::Value,
) -> (Option<ir::Value>, ir::Value) {
    let mut inside: Option<ir::Value> = None;
    let mut off = base;
    for (j, axis) in axes.iter().enumerate() {
        let (i, o) = axis.emit(cx, outs[j], ks[j]);
        off = cx.fb.ins().iadd(off, o);
        inside = match (inside, i) {
            (Some(a), Some(b)) => Some(cx.fb.ins().band(a, b)),
            (a, b) => a.or(b),
        };
    }
    (inside, off)
}

/// Runs `body` when `inside` holds (always for `None`).
fn when<'a, 'b>(
    cx: &mut Ctx<'a, 'b>,
    inside: Option<ir::Value>,
    body: &mut dyn FnMut(&mut Ctx<'a, 'b>) -> Result<()>,
) -> Result<()> {
    let Some(inside) = inside else {
        return body(cx);
    };
    let then = cx.fb.create_block();
    let join = cx.fb.create_block();
    cx.fb.ins().brif(inside, then, &[], join, &[]);
    cx.fb.switch_to_block(then);
    body(cx)?;
    cx.fb.ins().jump(join, &[]);
    cx.fb.switch_to_block(join);
    Ok(())
}

/// The buffer address of `v`, spilled to a stack slot when it is held in a register.
fn buffer(cx: &mut Ctx, v: Value) -> Result<ir::Value> {
    match cx.slot(v)? {
        Slot::Mem(base) => Ok(base),
        Slot::Reg(x) => {
            let dtype = cx.graph.ty(v).dtype;
            let slot = stack_slot(cx, dtype);
            let z = cx.iconst(0);
            let addr = cx.fb.ins().stack_addr(types::I64, slot, 0);
            cx.store_at(addr, z, x, dtype);
            Ok(addr)
        }
    }
}

/// A stack slot holding one element of `dtype`.
fn stack_slot(cx: &mut Ctx, dtype: DType) -> ir::StackSlot {
    cx.fb.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        dtype.size_bytes() as u32,
        3,
    ))
}

/// The result buffer of `r`, or for a rank-0 result a stack slot (returned too, to be read
/// back into the result's register once written).
fn result_buffer(cx: &mut Ctx, r: Value) -> Result<(ir::Value, Option<ir::StackSlot>)> {
    match cx.alloc_result(r)? {
        Some(base) => Ok((base, None)),
        None => {
            let slot = stack_slot(cx, cx.graph.ty(r).dtype);
            Ok((cx.fb.ins().stack_addr(types::I64, slot, 0), Some(slot)))
        }
    }
}

/// Makes the element in `slot` the register value of the rank-0 result `r`.
fn read_back(cx: &mut Ctx, r: Value, slot: Option<ir::StackSlot>) -> Result<()> {
    if let Some(slot) = slot {
        let dtype = cx.graph.ty(r).dtype;
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

/// Stores zeros into the `n` elements of the buffer at `base`.
fn zero_fill(cx: &mut Ctx, base: ir::Value, n: usize, dtype: DType) -> Result<()> {
    let zero = cx.constant(dtype, 0.0);
    cx.for_range(n, &mut |cx, i| {
        cx.store_at(base, i, zero, dtype);
        Ok(())
    })
}

/// Whether the bits of the float `v` are those of −0.
fn is_neg_zero(cx: &mut Ctx, v: ir::Value, dtype: DType) -> ir::Value {
    let (it, bits) = match dtype {
        DType::F32 => (types::I32, (1i64 << 31) as i32 as i64),
        _ => (types::I64, i64::MIN),
    };
    let b = cx.fb.ins().bitcast(it, MemFlagsData::new(), v);
    cx.fb.ins().icmp_imm_s(IntCC::Equal, b, bits)
}

/// Whether `c` replaces `best` as a window's selected element: `ferrax_ir`'s rule (a NaN
/// best is kept, a NaN candidate wins, ties keep the earlier element except +0 over −0 for
/// max and −0 over +0 for min).
fn better(cx: &mut Ctx, select: Select, dtype: DType, c: ir::Value, best: ir::Value) -> ir::Value {
    if !dtype.is_float() {
        let cc = match select {
            Select::Max => IntCC::SignedGreaterThan,
            Select::Min => IntCC::SignedLessThan,
        };
        return cx.fb.ins().icmp(cc, c, best);
    }
    let best_ok = cx.fb.ins().fcmp(FloatCC::Ordered, best, best);
    let c_nan = cx.fb.ins().fcmp(FloatCC::Unordered, c, c);
    let cc = match select {
        Select::Max => FloatCC::GreaterThan,
        Select::Min => FloatCC::LessThan,
    };
    let strictly = cx.fb.ins().fcmp(cc, c, best);
    let equal = cx.fb.ins().fcmp(FloatCC::Equal, c, best);
    let c_nz = is_neg_zero(cx, c, dtype);
    let b_nz = is_neg_zero(cx, best, dtype);
    let zero_rule = match select {
        Select::Max => {
            let c_pos = cx.fb.ins().bnot(c_nz);
            cx.fb.ins().band(b_nz, c_pos)
        }
        Select::Min => {
            let b_pos = cx.fb.ins().bnot(b_nz);
            cx.fb.ins().band(c_nz, b_pos)
        }
    };
    let tie = cx.fb.ins().band(equal, zero_rule);
    let wins = cx.fb.ins().bor(strictly, tie);
    let wins = cx.fb.ins().bor(wins, c_nan);
    cx.fb.ins().band(wins, best_ok)
}

/// Lowers a window op as loop nests (see the module documentation).
pub(crate) fn lower_window(cx: &mut Ctx, op: &WindowOp, inst: &InstData) -> Result<()> {
    let r = inst.results[0];
    let a = inst.args[0];
    let x = inst.args[inst.args.len() - 1];
    let xty = cx.graph.ty(x).clone();
    let dtype = xty.dtype;
    if dtype == DType::Bool {
        return Err(jit_err("window ops take no bool operands"));
    }
    let w = op.window();
    let out_dims = w
        .out_dims(xty.dims())
        .map_err(|e| jit_err(format!("{}: {e}", op.name())))?;
    let xs = strides(xty.dims());
    let rank = xty.rank();
    let axes = (0..rank)
        .map(|d| {
            Axis::new(
                out_dims[d],
                w.dims[d],
                w.strides[d],
                w.window_dilation[d],
                w.lo[d] as i128,
                w.base_dilation[d],
                xty.dims()[d],
                xs[d],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let pa = buffer(cx, a)?;
    let px = buffer(cx, x)?;
    let (pout, slot) = result_buffer(cx, r)?;
    let windows = [Access {
        base: cx.iconst(0),
        strides: strides(&out_dims),
    }];
    let wdims: SmallVec<[usize; 4]> = w.dims.iter().copied().collect();
    let t = clty(dtype);
    match op {
        WindowOp::Reduce { monoid, .. } => {
            let m = *monoid;
            cx.nest(&out_dims, &windows, &mut |cx, o, offs| {
                let init = match (m, dtype.is_float()) {
                    (Monoid::Sum, _) => cx.constant(dtype, 0.0),
                    (Monoid::Max, true) => cx.constant(dtype, f64::NEG_INFINITY),
                    (Monoid::Min, true) => cx.constant(dtype, f64::INFINITY),
                    (Monoid::Max, false) => cx.fb.ins().iconst(types::I32, i32::MIN as i64),
                    (Monoid::Min, false) => cx.fb.ins().iconst(types::I32, i32::MAX as i64),
                };
                let acc = cx.fb.declare_var(t);
                cx.fb.def_var(acc, init);
                let o = o.to_vec();
                let zero = cx.iconst(0);
                cx.nest(&wdims, &[], &mut |cx, k, _| {
                    let (inside, off) = taps(cx, &axes, &o, k, zero);
                    when(cx, inside, &mut |cx| {
                        let v = cx.load_at(pa, off, dtype);
                        let s = cx.fb.use_var(acc);
                        let ins = cx.fb.ins();
                        // Cranelift's fmax/fmin propagate NaN and order −0 below +0, as the
                        // interpreter's max/min; integer sums wrap.
                        let n = match (m, dtype.is_float()) {
                            (Monoid::Sum, true) => ins.fadd(s, v),
                            (Monoid::Sum, false) => ins.iadd(s, v),
                            (Monoid::Max, true) => ins.fmax(s, v),
                            (Monoid::Max, false) => ins.smax(s, v),
                            (Monoid::Min, true) => ins.fmin(s, v),
                            (Monoid::Min, false) => ins.smin(s, v),
                        };
                        cx.fb.def_var(acc, n);
                        Ok(())
                    })
                })?;
                let s = cx.fb.use_var(acc);
                cx.store_at(pout, offs[0], s, dtype);
                Ok(())
            })?;
        }
        WindowOp::SelectAndGatherAdd { select, .. }
        | WindowOp::SelectAndScatterAdd { select, .. } => {
            let s = *select;
            let scatter = matches!(op, WindowOp::SelectAndScatterAdd { .. });
            let n_out = if scatter {
                xty.size()
            } else {
                cx.graph.ty(r).size()
            };
            zero_fill(cx, pout, n_out, dtype)?;
            cx.nest(&out_dims, &windows, &mut |cx, o, offs| {
                let found = cx.fb.declare_var(types::I8);
                let best = cx.fb.declare_var(types::I64);
                let bestv = cx.fb.declare_var(t);
                let no = cx.fb.ins().iconst(types::I8, 0);
                cx.fb.def_var(found, no);
                let z = cx.iconst(0);
                cx.fb.def_var(best, z);
                let zv = cx.constant(dtype, 0.0);
                cx.fb.def_var(bestv, zv);
                let o = o.to_vec();
                cx.nest(&wdims, &[], &mut |cx, k, _| {
                    let (inside, off) = taps(cx, &axes, &o, k, z);
                    when(cx, inside, &mut |cx| {
                        let c = cx.load_at(px, off, dtype);
                        let f = cx.fb.use_var(found);
                        let b = cx.fb.use_var(bestv);
                        let bi = cx.fb.use_var(best);
                        let wins = better(cx, s, dtype, c, b);
                        let first = cx.fb.ins().icmp_imm_s(IntCC::Equal, f, 0);
                        let take = cx.fb.ins().bor(first, wins);
                        let nb = cx.fb.ins().select(take, c, b);
                        let ni = cx.fb.ins().select(take, off, bi);
                        let yes = cx.fb.ins().iconst(types::I8, 1);
                        cx.fb.def_var(found, yes);
                        cx.fb.def_var(bestv, nb);
                        cx.fb.def_var(best, ni);
                        Ok(())
                    })
                })?;
                let f = cx.fb.use_var(found);
                let at = cx.fb.use_var(best);
                let wo = offs[0];
                when(cx, Some(f), &mut |cx| {
                    if scatter {
                        let c = cx.load_at(pa, wo, dtype);
                        let old = cx.load_at(pout, at, dtype);
                        let n = if dtype.is_float() {
                            cx.fb.ins().fadd(old, c)
                        } else {
                            cx.fb.ins().iadd(old, c)
                        };
                        cx.store_at(pout, at, n, dtype);
                    } else {
                        let v = cx.load_at(pa, at, dtype);
                        cx.store_at(pout, wo, v, dtype);
                    }
                    Ok(())
                })
            })?;
        }
    }
    read_back(cx, r, slot)
}

/// Lowers a convolution as the interpreter's direct loop (see the module documentation).
pub(crate) fn lower_conv(cx: &mut Ctx, op: &ConvGeneral, inst: &InstData) -> Result<()> {
    let (a, b, r) = (inst.args[0], inst.args[1], inst.results[0]);
    let (aty, bty) = (cx.graph.ty(a).clone(), cx.graph.ty(b).clone());
    let rty = cx.graph.ty(r).clone();
    let dtype = aty.dtype;
    if !dtype.is_float() {
        return Err(jit_err("conv_general_dilated takes float operands"));
    }
    let s = op.geometry(&aty, &bty)?;
    let dn = &op.dimension_numbers;
    let ns = op.spatial();
    let (xs, ys, zs) = (
        strides(aty.dims()),
        strides(bty.dims()),
        strides(rty.dims()),
    );
    cx.alloc_result(r)?;
    let (Slot::Mem(pa), Slot::Mem(pb), Slot::Mem(pc)) = (cx.slot(a)?, cx.slot(b)?, cx.slot(r)?)
    else {
        return Err(jit_err("conv_general_dilated operands must be buffers"));
    };
    let axes = (0..ns)
        .map(|j| {
            Axis::new(
                s.out_spatial[j],
                s.rhs_spatial[j],
                op.window_strides[j],
                op.rhs_dilation[j],
                op.padding[j].0 as i128,
                op.lhs_dilation[j],
                s.lhs_spatial[j],
                xs[dn.lhs[2 + j]],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let g_out = (s.out_features / op.feature_group_count.max(1)).max(1);
    let b_out = (s.out_features / op.batch_group_count.max(1)).max(1);
    let (fgc, bgc) = (op.feature_group_count, op.batch_group_count);
    let lhs_empty = aty.size() == 0;
    // The result nest: batch, feature, then the spatial axes.
    let mut odims: SmallVec<[usize; 6]> = SmallVec::from_slice(&[s.out_batch, s.out_features]);
    odims.extend(s.out_spatial.iter().copied());
    let mut ostr: SmallVec<[i64; 4]> = SmallVec::from_slice(&[zs[dn.out[0]], zs[dn.out[1]]]);
    ostr.extend((0..ns).map(|j| zs[dn.out[2 + j]]));
    // The sum's nest: input features (slowest), then the taps in row-major order.
    let mut tdims: SmallVec<[usize; 6]> = SmallVec::from_slice(&[s.group_in]);
    tdims.extend(s.rhs_spatial.iter().copied());
    let mut rstr: SmallVec<[i64; 4]> = SmallVec::from_slice(&[ys[dn.rhs[1]]]);
    rstr.extend((0..ns).map(|j| ys[dn.rhs[2 + j]]));
    let out_access = [Access {
        base: cx.iconst(0),
        strides: ostr,
    }];
    let t = clty(dtype);
    let (lhs_n, lhs_c) = (xs[dn.lhs[0]], xs[dn.lhs[1]]);
    let rhs_o = ys[dn.rhs[0]];
    let group_in = s.group_in as i64;
    let out_batch = s.out_batch as i64;
    cx.nest(&odims, &out_access, &mut |cx, idx, offs| {
        let (n, o) = (idx[0], idx[1]);
        let ys_pos = idx[2..].to_vec();
        let g = if fgc > 1 {
            cx.fb.ins().udiv_imm_s(o, g_out as i64)
        } else {
            cx.iconst(0)
        };
        let n_in = if bgc > 1 {
            let q = cx.fb.ins().udiv_imm_s(o, b_out as i64);
            let qb = cx.fb.ins().imul_imm_s(q, out_batch);
            cx.fb.ins().iadd(qb, n)
        } else {
            n
        };
        let ln = cx.fb.ins().imul_imm_s(n_in, lhs_n);
        let gc = cx.fb.ins().imul_imm_s(g, group_in * lhs_c);
        let lbase = cx.fb.ins().iadd(ln, gc);
        let rbase = cx.fb.ins().imul_imm_s(o, rhs_o);
        let acc = cx.fb.declare_var(t);
        let zero = cx.constant(dtype, 0.0);
        cx.fb.def_var(acc, zero);
        let taps_access = [Access {
            base: rbase,
            strides: rstr.clone(),
        }];
        cx.nest(&tdims, &taps_access, &mut |cx, tk, toffs| {
            let ic = cx.fb.ins().imul_imm_s(tk[0], lhs_c);
            let base = cx.fb.ins().iadd(lbase, ic);
            let (inside, off) = taps(cx, &axes, &ys_pos, &tk[1..], base);
            // Padding and dilation holes are zeros in the sum (`0 · w`), as the interpreter.
            let v = if lhs_empty {
                cx.constant(dtype, 0.0)
            } else {
                match inside {
                    None => cx.load_at(pa, off, dtype),
                    Some(inside) => {
                        let z = cx.iconst(0);
                        let safe = cx.fb.ins().select(inside, off, z);
                        let v = cx.load_at(pa, safe, dtype);
                        let zero = cx.constant(dtype, 0.0);
                        cx.fb.ins().select(inside, v, zero)
                    }
                }
            };
            let wv = cx.load_at(pb, toffs[0], dtype);
            let p = cx.fb.ins().fmul(v, wv);
            let s = cx.fb.use_var(acc);
            let n = cx.fb.ins().fadd(s, p);
            cx.fb.def_var(acc, n);
            Ok(())
        })?;
        let s = cx.fb.use_var(acc);
        cx.store_at(pc, offs[0], s, dtype);
        Ok(())
    })
}
