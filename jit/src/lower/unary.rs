//! Per-element emitters for `ferrax_ir::ops::UnaryOp`. Ops that are single IEEE instructions
//! (or exact compositions of them) are inline; transcendentals call the imported helpers of
//! `crate::symbols`, which use the same scalar functions as the interpreter.

use super::fastmath::Fm;
use super::{clty, Ctx};
use cranelift_codegen::ir::{self, condcodes::FloatCC, condcodes::IntCC, InstBuilder};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{DType, Result};

/// `neg` or `abs` of a float vector as one bitwise operation with a constant mask (flipping
/// or clearing each lane's sign bit, which is all `fneg` and `fabs` do): the x64 lowering of
/// `fneg` and `fabs` builds its mask anew with three instructions at every use, while the mask
/// is read from the kernel's constant pool (in a parallel kernel) or splatted once (elsewhere,
/// where Cranelift hoists it out of the loop).
pub(crate) fn sign_bit(cx: &mut Ctx, op: UnaryOp, x: ir::Value) -> ir::Value {
    let ty = cx.fb.func.dfg.value_type(x);
    let neg = op == UnaryOp::Neg;
    let (lane, bytes) = match (ty.lane_type() == ir::types::F32, neg) {
        (true, true) => (1u64 << 31, 4),
        (true, false) => (!(1u64 << 31) & 0xffff_ffff, 4),
        (false, true) => (1u64 << 63, 8),
        (false, false) => (!(1u64 << 63), 8),
    };
    let mask = match cx.pooled_vector(ty, super::vpool::splat_bits(lane, bytes)) {
        Some(m) => m,
        None => {
            let s = if bytes == 4 {
                cx.fb.ins().f32const(f32::from_bits(lane as u32))
            } else {
                cx.fb.ins().f64const(f64::from_bits(lane))
            };
            cx.fb.ins().splat(ty, s)
        }
    };
    if neg {
        cx.fb.ins().bxor(x, mask)
    } else {
        cx.fb.ins().band(x, mask)
    }
}

/// Emits `op(x)` for one element `x` of `dtype`.
///
/// `elements` is the size of the op's operand: it decides, with the math mode, whether
/// transcendentals use the inline approximations.
pub(crate) fn emit(
    cx: &mut Ctx,
    op: UnaryOp,
    dtype: DType,
    x: ir::Value,
    elements: usize,
) -> Result<ir::Value> {
    if dtype == DType::I32 {
        return emit_int(cx, op, x);
    }
    let one = cx.const_like(x, 1.0);
    if cx.opts.math.fast_for(elements) {
        if let Some(y) = fast(cx, op, x)? {
            return Ok(y);
        }
    }
    let helper = |cx: &mut Ctx, name: &str| -> Result<ir::Value> {
        let t = clty(dtype);
        let sym = format!("ferrax_{name}_{dtype}");
        Ok(cx.call(&sym, &[t], &[t], &[x])?[0])
    };
    Ok(match op {
        UnaryOp::Neg | UnaryOp::Abs if cx.fb.func.dfg.value_type(x).is_vector() => {
            sign_bit(cx, op, x)
        }
        UnaryOp::Neg => cx.fb.ins().fneg(x),
        UnaryOp::Abs => cx.fb.ins().fabs(x),
        UnaryOp::Sign => {
            // +1 above zero, −1 below, x itself for ±0 and NaN.
            let zero = cx.const_like(x, 0.0);
            let m1 = cx.const_like(x, -1.0);
            let gt = cx.fb.ins().fcmp(FloatCC::GreaterThan, x, zero);
            let lt = cx.fb.ins().fcmp(FloatCC::LessThan, x, zero);
            let neg = cx.fb.ins().select(lt, m1, x);
            cx.fb.ins().select(gt, one, neg)
        }
        UnaryOp::Floor => cx.fb.ins().floor(x),
        UnaryOp::Ceil => cx.fb.ins().ceil(x),
        UnaryOp::Round => helper(cx, "round")?,
        UnaryOp::Sqrt => cx.fb.ins().sqrt(x),
        UnaryOp::Rsqrt => {
            let s = cx.fb.ins().sqrt(x);
            cx.fb.ins().fdiv(one, s)
        }
        UnaryOp::Exp => helper(cx, "exp")?,
        UnaryOp::Exp2 => helper(cx, "exp2")?,
        UnaryOp::Expm1 => helper(cx, "expm1")?,
        UnaryOp::Log => helper(cx, "log")?,
        UnaryOp::Log1p => helper(cx, "log1p")?,
        UnaryOp::Sin => helper(cx, "sin")?,
        UnaryOp::Cos => helper(cx, "cos")?,
        UnaryOp::Tan => helper(cx, "tan")?,
        UnaryOp::Asin => helper(cx, "asin")?,
        UnaryOp::Acos => helper(cx, "acos")?,
        UnaryOp::Atan => helper(cx, "atan")?,
        UnaryOp::Sinh => helper(cx, "sinh")?,
        UnaryOp::Cosh => helper(cx, "cosh")?,
        UnaryOp::Tanh => helper(cx, "tanh")?,
        UnaryOp::Asinh => helper(cx, "asinh")?,
        UnaryOp::Acosh => helper(cx, "acosh")?,
        UnaryOp::Atanh => helper(cx, "atanh")?,
        UnaryOp::Logistic => helper(cx, "logistic")?,
        UnaryOp::Erf => helper(cx, "erf")?,
        UnaryOp::IntegerPow(n) => {
            let p = integer_pow(cx, x, n.unsigned_abs(), |cx, a, b| cx.fb.ins().fmul(a, b))
                .unwrap_or(one);
            if n < 0 {
                cx.fb.ins().fdiv(one, p)
            } else {
                p
            }
        }
        UnaryOp::Square => cx.fb.ins().fmul(x, x),
        UnaryOp::Reciprocal => cx.fb.ins().fdiv(one, x),
    })
}

/// The inline polynomial form of `op` in [`crate::MathMode::Fast`], when it has one.
fn fast(cx: &mut Ctx, op: UnaryOp, x: ir::Value) -> Result<Option<ir::Value>> {
    let fm = Fm::new(cx, cx.fb.func.dfg.value_type(x));
    Ok(Some(match op {
        UnaryOp::Exp => fm.exp_op(cx, x)?,
        UnaryOp::Expm1 => fm.expm1(cx, x),
        UnaryOp::Log => fm.log(cx, x),
        UnaryOp::Log1p => fm.log1p(cx, x),
        UnaryOp::Sin => fm.sincos(cx, x, 0)?,
        UnaryOp::Cos => fm.sincos(cx, x, 1)?,
        UnaryOp::Tanh => fm.tanh(cx, x),
        UnaryOp::Logistic => fm.logistic(cx, x),
        UnaryOp::Erf => return Ok(fm.erf(cx, x)),
        UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Exp2
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh
        | UnaryOp::IntegerPow(_)
        | UnaryOp::Square
        | UnaryOp::Reciprocal => return Ok(None),
    }))
}

/// `x^e` by square and multiply, the product starting from the lowest set bit of `e` (the
/// interpreter's exact multiplication order); `None` for `e = 0`.
fn integer_pow(
    cx: &mut Ctx,
    x: ir::Value,
    mut e: u32,
    mul: impl Fn(&mut Ctx, ir::Value, ir::Value) -> ir::Value,
) -> Option<ir::Value> {
    let mut base = x;
    let mut acc = None;
    while e > 0 {
        if e & 1 == 1 {
            acc = Some(match acc {
                None => base,
                Some(a) => mul(cx, a, base),
            });
        }
        e >>= 1;
        if e > 0 {
            base = mul(cx, base, base);
        }
    }
    acc
}

/// The i32 ops (wrapping, as the interpreter).
fn emit_int(cx: &mut Ctx, op: UnaryOp, x: ir::Value) -> Result<ir::Value> {
    Ok(match op {
        UnaryOp::Neg => cx.fb.ins().ineg(x),
        UnaryOp::Abs => cx.fb.ins().iabs(x),
        UnaryOp::Sign => {
            let gt = cx.fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
            let lt = cx.fb.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
            let gt = cx.fb.ins().uextend(ir::types::I32, gt);
            let lt = cx.fb.ins().uextend(ir::types::I32, lt);
            cx.fb.ins().isub(gt, lt)
        }
        UnaryOp::Square => cx.fb.ins().imul(x, x),
        UnaryOp::IntegerPow(n) => {
            let p = integer_pow(cx, x, n.unsigned_abs(), |cx, a, b| cx.fb.ins().imul(a, b));
            match p {
                Some(p) => p,
                None => cx.fb.ins().iconst(ir::types::I32, 1),
            }
        }
        UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Exp
        | UnaryOp::Exp2
        | UnaryOp::Expm1
        | UnaryOp::Log
        | UnaryOp::Log1p
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Tanh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh
        | UnaryOp::Logistic
        | UnaryOp::Erf
        | UnaryOp::Reciprocal => {
            return Err(super::jit_err(format!("{} has no i32 form", op.name())))
        }
    })
}
