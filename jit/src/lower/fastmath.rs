//! Inline polynomial transcendentals for [`crate::MathMode::Fast`].
//!
//! Every function here is Cranelift IR over a float type that may be a scalar (`f32`, `f64`)
//! or a 128-bit vector (`f32x4`, `f64x2`), so the same emitter serves scalar graphs and
//! vectorised fused loops. The common path is straight-line code: range reduction uses only
//! bit operations and the "magic number" rounding trick (adding `1.5·2^p` rounds to an integer
//! whose bits can be read back), which Cranelift lowers for vectors on every target it
//! supports. Special values (±0, ±∞, NaN, subnormals) follow IEEE/std semantics, patched in
//! with selects where the polynomial path would not produce them. Two functions have inputs
//! no cheap inline path handles: `sin` and `cos` of arguments beyond their reduction's range,
//! and `pow` within a hair of a class boundary (overflow, rounding to zero); there one test
//! per vector branches to a cold block that calls the interpreter's scalar function for each
//! lane ([`Fm::branch`]), so those results are the precise ones. The long polynomials (the
//! `exp` family's and the sine and cosine kernels) are evaluated by Estrin's scheme rather than
//! Horner's rule: the same number of multiply-adds with a dependency chain of about log₂ of
//! the degree, so that the independent transcendentals of a fused loop (P3's gradient needs
//! `sin`, `cos` and `exp` of each element) overlap instead of queueing behind one long chain.
//! `sin` and `cos` of one argument share one reduction and one pair of kernels (cached per
//! block in `Ctx::fast_sincos`), so a group needing both pays for them once, also in graphs
//! compiled without optimisation, where Cranelift's GVN does not run.
//!
//! Every function returns the IEEE class of the precise result (NaN, ±∞ and ±0 exactly where
//! the interpreter's function has them) for every input, and stays within the bound below, in
//! ulps of the result, on every finite input (subnormal results in subnormal ulps). The
//! bounds are against Rust's std in f64 (for f32 against the f64 std value, so the f32 bound
//! includes the final rounding); `jit/tests/fastmath.rs` asserts both on the special values,
//! around each function's overflow, underflow and saturation thresholds, at the nearest values
//! to every multiple of π/2 in the inline range of `sin` and `cos`, on every 1024th f32 bit
//! pattern, on 2^20 random f64 bit patterns, on every pair of special values for `pow` and on
//! random compositions:
//!
//! | function | domain | bound |
//! |---|---|---|
//! | `exp` | all | 2 |
//! | `expm1` | all | 3 |
//! | `log` | all | 2 |
//! | `log1p` | all | 3 |
//! | `sin`, `cos` | all | 3 |
//! | `tanh` | all | 3 |
//! | `logistic` | all | 3 |
//! | `erf` | all | 3 |
//! | `pow` | all (f64 with FMA only) | 3 (f64), 1 (f32) |
//!
//! `sin` and `cos` reduce inline for `|x| ≤ 2^17` (f64), `2^16` (f32 with FMA) or `2^10` (f32
//! without), see [`Fm::half_pi_parts`]; beyond, the precise functions are called. Subnormal
//! results of `exp` and `logistic` are computed with two exact scalings and one rounding.
//! `pow`'s f64 ulp bound is against glibc's `pow`, and `erf`'s and `tanh`'s f64 bounds against
//! values computed with mpmath (`tests/data/erf_f64.txt`, `tests/data/tanh_f64.txt`): the
//! interpreter's own f64 `erf` is not accurate to an ulp, and glibc's `tanh` is up to about
//! 1.7 ulps off near |x| ≈ 0.2, where the fast `tanh` (within 2.5 ulps of the exact value) can
//! be 4 ulps from it.

// The polynomial and reduction constants are the published values, digits as published.
#![allow(clippy::excessive_precision)]

use super::vpool::splat_bits;
use super::Ctx;
use cranelift_codegen::ir::{
    self, condcodes::FloatCC, condcodes::IntCC, types, BlockArg, Endianness, InstBuilder,
    MemFlagsData,
};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::Result;

/// `ln 2` split for Cody–Waite reduction in f64 lanes: a head with trailing zero bits, so
/// that `k·head` is exact for every exponent `k` the functions reach, and the tail.
pub(crate) const LN2_PARTS_64: (f64, f64) = (
    6.931_471_803_691_238_164_9e-1,
    1.908_214_929_270_587_700_02e-10,
);

/// [`LN2_PARTS_64`] for f32 lanes (each part rounded to f32 where it is used).
pub(crate) const LN2_PARTS_32: (f64, f64) = (0.693_145_751_953_125, 1.428_606_765_330_187_045e-6);

/// The coefficients of `q` in `expm1(r) = r + r²·q(r)` for f64 lanes: SLEEF's minimax
/// polynomial of degree 10 on `|r| ≤ ln2/2` (one term shorter than the Taylor series).
pub(crate) const EXPM1_Q64: [f64; 11] = [
    0.5,
    0.166666666666666851703837,
    0.0416666666666665047591422,
    0.00833333333331652721664984,
    0.00138888888889774492207962,
    0.000198412698960509205564975,
    2.4801587159235472998791e-05,
    2.75572362911928827629423e-06,
    2.75573911234900471893338e-07,
    2.51112930892876518610661e-08,
    2.08860621107283687536341e-09,
];

/// The coefficients of `q` for f32 lanes: the Taylor series to `r^7/7!` (each rounded to
/// f32 where it is used).
pub(crate) const EXPM1_Q32: [f64; 6] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// The bound `|x|` is clamped to before [`Fm::tanh`] doubles it (f64, f32): beyond it
/// `tanh` rounds to ±1 in either precision.
pub(crate) const TANH_LIMIT: (f64, f64) = (20.0, 10.0);

/// The largest `|x|` (f64, f32) for which `e^x` and `e^−x` are normal numbers with some
/// room (`e^−708 ≈ 3.3·10^−308`, `e^−87 ≈ 1.6·10^−38`): the range of [`Fm::exp_op`]'s
/// short path, where the reduction's `2^k` is normal too (`|k| ≤ 1022`, `126`).
pub(crate) const EXP_NORMAL: (f64, f64) = (708.0, 87.0);

/// The magic constants `1.5·2^52` and `1.5·2^23` whose addition rounds an f64 or an f32 to
/// an integer.
pub(crate) const ROUND_MAGIC: (f64, f64) = (6755399441055744.0, 12582912.0);

/// The type context of one fast-math expression: its float type and matching integer type.
#[derive(Clone, Copy)]
pub(crate) struct Fm {
    /// The float type (scalar or vector).
    ty: ir::Type,
    /// The integer type with the same lane width and count.
    ity: ir::Type,
    /// Whether lanes are f64.
    wide: bool,
    /// Whether fused multiply-add may be used.
    fma: bool,
}

impl Fm {
    /// The context for values of type `ty` (f32, f64, f32x4 or f64x2).
    pub fn new(cx: &Ctx, ty: ir::Type) -> Fm {
        let wide = ty.lane_type() == types::F64;
        let lane_int = if wide { types::I64 } else { types::I32 };
        let ity = if ty.is_vector() {
            lane_int.by(ty.lane_count()).expect("a 128-bit vector type")
        } else {
            lane_int
        };
        Fm {
            ty,
            ity,
            wide,
            fma: cx.has_fma,
        }
    }

    fn flags() -> MemFlagsData {
        MemFlagsData::new().with_endianness(Endianness::Little)
    }

    /// A float constant (splatted for vectors; in a kernel, read from its pool).
    fn c(&self, cx: &mut Ctx, v: f64) -> ir::Value {
        if self.ty.is_vector() {
            let bits = if self.wide {
                splat_bits(v.to_bits(), 8)
            } else {
                splat_bits((v as f32).to_bits() as u64, 4)
            };
            if let Some(p) = cx.pooled_vector(self.ty, bits) {
                return p;
            }
        }
        let s = if self.wide {
            cx.fb.ins().f64const(v)
        } else {
            cx.fb.ins().f32const(v as f32)
        };
        if self.ty.is_vector() {
            cx.fb.ins().splat(self.ty, s)
        } else {
            s
        }
    }

    /// `|x|`: for vectors one `and` with a sign mask ([`super::unary::sign_bit`]), which
    /// Cranelift's `fabs` of a vector would build in two more instructions at each use.
    fn abs(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        if self.ty.is_vector() && cx.fb.func.dfg.value_type(x) == self.ty {
            return super::unary::sign_bit(cx, UnaryOp::Abs, x);
        }
        cx.fb.ins().fabs(x)
    }

    /// An integer constant (splatted for vectors; in a kernel, read from its pool).
    fn ci(&self, cx: &mut Ctx, v: i64) -> ir::Value {
        if self.ty.is_vector() {
            let bits = splat_bits(v as u64, self.ity.lane_type().bytes());
            if let Some(p) = cx.pooled_vector(self.ity, bits) {
                return p;
            }
        }
        let s = cx.fb.ins().iconst(self.ity.lane_type(), v);
        if self.ty.is_vector() {
            cx.fb.ins().splat(self.ity, s)
        } else {
            s
        }
    }

    fn bits_of(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        cx.fb.ins().bitcast(self.ity, Fm::flags(), x)
    }

    fn float_of(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        cx.fb.ins().bitcast(self.ty, Fm::flags(), x)
    }

    /// `a·b + c`, fused when the target has FMA.
    fn mla(&self, cx: &mut Ctx, a: ir::Value, b: ir::Value, c: ir::Value) -> ir::Value {
        if self.fma {
            cx.fb.ins().fma(a, b, c)
        } else {
            let p = cx.fb.ins().fmul(a, b);
            cx.fb.ins().fadd(p, c)
        }
    }

    /// `Σ coeffs[i]·x^i` by Horner's rule.
    fn poly(&self, cx: &mut Ctx, x: ir::Value, coeffs: &[f64]) -> ir::Value {
        let mut acc = self.c(cx, coeffs[coeffs.len() - 1]);
        for &k in coeffs[..coeffs.len() - 1].iter().rev() {
            let kc = self.c(cx, k);
            acc = self.mla(cx, acc, x, kc);
        }
        acc
    }

    /// A lane mask of a float comparison.
    fn fcmp(&self, cx: &mut Ctx, cc: FloatCC, a: ir::Value, b: ir::Value) -> ir::Value {
        cx.fb.ins().fcmp(cc, a, b)
    }

    /// `m ? a : b` lane by lane, `m` a float-comparison mask.
    fn sel(&self, cx: &mut Ctx, m: ir::Value, a: ir::Value, b: ir::Value) -> ir::Value {
        if self.ty.is_vector() {
            let mf = self.float_of(cx, m);
            cx.fb.ins().bitselect(mf, a, b)
        } else {
            cx.fb.ins().select(m, a, b)
        }
    }

    /// `m ? a : b` lane by lane, `m` an integer all-ones/all-zeros mask of type `ity`.
    ///
    /// The select runs on the integer view of the lanes: Cranelift lowers a `bitselect`
    /// whose mask is an integer comparison to one blend, but a bit-cast comparison (other
    /// than a float one) to three logic instructions.
    fn sel_int_mask(&self, cx: &mut Ctx, m: ir::Value, a: ir::Value, b: ir::Value) -> ir::Value {
        let ab = self.bits_of(cx, a);
        let bb = self.bits_of(cx, b);
        let r = cx.fb.ins().bitselect(m, ab, bb);
        self.float_of(cx, r)
    }

    /// `x` clamped to `[lo, hi]` by compare and select (cheaper than IEEE min/max on x86);
    /// NaN compares false and passes through.
    fn clamp(&self, cx: &mut Ctx, x: ir::Value, lo: f64, hi: f64) -> ir::Value {
        let h = self.c(cx, hi);
        let l = self.c(cx, lo);
        let above = self.fcmp(cx, FloatCC::GreaterThan, x, h);
        let t = self.sel(cx, above, h, x);
        let below = self.fcmp(cx, FloatCC::LessThan, t, l);
        self.sel(cx, below, l, t)
    }

    /// Mantissa bits and exponent bias of the lane type.
    fn layout(&self) -> (i64, i64) {
        if self.wide {
            (52, 1023)
        } else {
            (23, 127)
        }
    }

    /// The magic constant `1.5·2^p` whose addition rounds to an integer.
    fn magic(&self) -> f64 {
        if self.wide {
            ROUND_MAGIC.0
        } else {
            ROUND_MAGIC.1
        }
    }

    /// Rounds `t` to the nearest integer: returns it as a float and as an integer lane.
    fn round_int(&self, cx: &mut Ctx, t: ir::Value) -> (ir::Value, ir::Value) {
        let m = self.c(cx, self.magic());
        let tm = cx.fb.ins().fadd(t, m);
        let kf = cx.fb.ins().fsub(tm, m);
        let bits = self.bits_of(cx, tm);
        let mbits = if self.wide {
            self.magic().to_bits() as i64
        } else {
            (self.magic() as f32).to_bits() as i64
        };
        let mb = self.ci(cx, mbits);
        let k = cx.fb.ins().isub(bits, mb);
        (kf, k)
    }

    /// `2^k` for integer lanes `k` within the normal exponent range.
    fn pow2(&self, cx: &mut Ctx, k: ir::Value) -> ir::Value {
        let (mant, bias) = self.layout();
        let b = self.ci(cx, bias);
        let e = cx.fb.ins().iadd(k, b);
        let sh = cx.fb.ins().ishl_imm_u(e, mant);
        self.float_of(cx, sh)
    }

    /// `y·2^k` for `|k|` up to twice the exponent range, in two exact steps.
    fn scale(&self, cx: &mut Ctx, y: ir::Value, k: ir::Value) -> ir::Value {
        let k1 = cx.fb.ins().sshr_imm_u(k, 1);
        let k2 = cx.fb.ins().isub(k, k1);
        let s1 = self.pow2(cx, k1);
        let s2 = self.pow2(cx, k2);
        let t = cx.fb.ins().fmul(y, s1);
        cx.fb.ins().fmul(t, s2)
    }

    /// Cody–Waite reduction `x = k·ln2 + r`, `|r| ≤ ln2/2`; returns `(r, k)`.
    fn reduce_ln2(&self, cx: &mut Ctx, x: ir::Value) -> (ir::Value, ir::Value) {
        let (hi, lo) = if self.wide {
            LN2_PARTS_64
        } else {
            LN2_PARTS_32
        };
        let l2e = self.c(cx, std::f64::consts::LOG2_E);
        let t = cx.fb.ins().fmul(x, l2e);
        let (kf, k) = self.round_int(cx, t);
        let nk = cx.fb.ins().fneg(kf);
        let h = self.c(cx, hi);
        let l = self.c(cx, lo);
        let r = self.mla(cx, nk, h, x);
        let r = self.mla(cx, nk, l, r);
        (r, k)
    }

    /// `Σ coeffs[i]·x^i` by Estrin's scheme (`x2 = x·x`): adjacent terms pair up with `x`,
    /// then pairs of those with `x²`, `x⁴`, ...; the same work as Horner's rule with a
    /// dependency chain of about log₂(n) multiply-adds instead of n, so that the long
    /// polynomials of a fused loop overlap.
    fn estrin(&self, cx: &mut Ctx, x: ir::Value, x2: ir::Value, coeffs: &[f64]) -> ir::Value {
        let mut terms: Vec<ir::Value> = coeffs
            .chunks(2)
            .map(|p| {
                let lo = self.c(cx, p[0]);
                match p.get(1) {
                    Some(&hi) => {
                        let hi = self.c(cx, hi);
                        self.mla(cx, hi, x, lo)
                    }
                    None => lo,
                }
            })
            .collect();
        let mut pw = x2;
        while terms.len() > 1 {
            let next: Vec<ir::Value> = terms
                .chunks(2)
                .map(|p| match p {
                    [lo, hi] => self.mla(cx, *hi, pw, *lo),
                    [lo] => *lo,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            terms = next;
            if terms.len() > 1 {
                pw = cx.fb.ins().fmul(pw, pw);
            }
        }
        terms[0]
    }

    /// `expm1(r)` for `|r| ≤ ln2/2` as `r + r²·q(r)`: for f64 `q` is SLEEF's minimax
    /// polynomial of degree 10 (one term shorter than the Taylor series it replaces), for
    /// f32 the Taylor series to `r^7/7!`; both evaluated by Estrin's scheme.
    fn expm1_poly(&self, cx: &mut Ctx, r: ir::Value) -> ir::Value {
        let r2 = cx.fb.ins().fmul(r, r);
        let q = self.estrin(cx, r, r2, if self.wide { &EXPM1_Q64 } else { &EXPM1_Q32 });
        self.mla(cx, r2, q, r)
    }

    /// `e^x`.
    pub fn exp(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let lim = if self.wide { 1000.0 } else { 150.0 };
        let x = self.clamp(cx, x, -lim, lim);
        let (r, k) = self.reduce_ln2(cx, x);
        let p = self.expm1_poly(cx, r);
        let one = self.c(cx, 1.0);
        let y = cx.fb.ins().fadd(one, p);
        self.scale(cx, y, k)
    }

    /// `e^x` for the exp op: as [`Fm::exp`], but a vector whose lanes are all within
    /// `±EXP_NORMAL` (f64, f32) takes a shorter path, and the others a cold block with
    /// [`Fm::exp`]'s code. There `e^x` and every `2^k` of the reduction are normal numbers,
    /// so the clamp changes nothing and one scaling by `2^k` rounds once, as the two exact
    /// steps of [`Fm::scale`] and their one rounding do: the result is bit-identical.
    pub fn exp_op(&self, cx: &mut Ctx, x: ir::Value) -> Result<ir::Value> {
        if !self.ty.is_vector() {
            return Ok(self.exp(cx, x));
        }
        let ax = self.abs(cx, x);
        let (lim64, lim32) = EXP_NORMAL;
        let lim = self.c(cx, if self.wide { lim64 } else { lim32 });
        // NaN lanes take the cold block too (unordered compares true).
        let far = self.fcmp(cx, FloatCC::UnorderedOrGreaterThan, ax, lim);
        let v = self.branch(
            cx,
            far,
            |fm, cx| {
                let (r, k) = fm.reduce_ln2(cx, x);
                let p = fm.expm1_poly(cx, r);
                let one = fm.c(cx, 1.0);
                let y = cx.fb.ins().fadd(one, p);
                let s = fm.pow2(cx, k);
                Ok(vec![cx.fb.ins().fmul(y, s)])
            },
            |fm, cx| Ok(vec![fm.exp(cx, x)]),
        )?;
        Ok(v[0])
    }

    /// `e^x − 1`.
    pub fn expm1(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let (lo, hi) = if self.wide {
            (-40.0, 1000.0)
        } else {
            (-20.0, 150.0)
        };
        let xc = self.clamp(cx, x, lo, hi);
        let (r, k) = self.reduce_ln2(cx, xc);
        let p = self.expm1_poly(cx, r);
        let one = self.c(cx, 1.0);
        // Small k: p·2^k + (2^k − 1), both parts exact but the final rounding.
        let k60 = self.ci(cx, 60);
        let ks = cx.fb.ins().smin(k, k60);
        let s = self.pow2(cx, ks);
        let sm1 = cx.fb.ins().fsub(s, one);
        let small = self.mla(cx, p, s, sm1);
        // Large k: e^x − 1 through the split scaling (no cancellation left).
        let y = cx.fb.ins().fadd(one, p);
        let e = self.scale(cx, y, k);
        let large = cx.fb.ins().fsub(e, one);
        let is_large = cx.fb.ins().icmp(IntCC::SignedGreaterThan, k, k60);
        let res = if self.ty.is_vector() {
            self.sel_int_mask(cx, is_large, large, small)
        } else {
            cx.fb.ins().select(is_large, large, small)
        };
        // Keep −0 and tiny arguments exact.
        let zero = self.c(cx, 0.0);
        let z = self.fcmp(cx, FloatCC::Equal, x, zero);
        self.sel(cx, z, x, res)
    }

    /// `ln x`.
    pub fn log(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let (m, kf) = self.log_parts(cx, x);
        // log(m) = f − f²/2 + s·(f²/2 + R(s²)), s = f/(2+f).
        let one = self.c(cx, 1.0);
        let two = self.c(cx, 2.0);
        let half = self.c(cx, 0.5);
        let f = cx.fb.ins().fsub(m, one);
        let d = cx.fb.ins().fadd(two, f);
        let s = cx.fb.ins().fdiv(f, d);
        let z = cx.fb.ins().fmul(s, s);
        let w = cx.fb.ins().fmul(z, z);
        let (t1, t2) = if self.wide {
            let a = self.poly(
                cx,
                w,
                &[
                    3.999_999_999_940_941_908e-1,
                    2.222_219_843_214_978_396e-1,
                    1.531_383_769_920_937_332e-1,
                ],
            );
            let b = self.poly(
                cx,
                w,
                &[
                    6.666_666_666_666_735_130e-1,
                    2.857_142_874_366_239_149e-1,
                    1.818_357_216_161_805_012e-1,
                    1.479_819_860_511_658_591e-1,
                ],
            );
            (cx.fb.ins().fmul(w, a), cx.fb.ins().fmul(z, b))
        } else {
            let a = self.poly(cx, w, &[0.400_009_721_52, 0.242_790_788_41]);
            let b = self.poly(cx, w, &[0.666_666_626_93, 0.284_987_866_88]);
            (cx.fb.ins().fmul(w, a), cx.fb.ins().fmul(z, b))
        };
        let rr = cx.fb.ins().fadd(t2, t1);
        let hf = cx.fb.ins().fmul(half, f);
        let hfsq = cx.fb.ins().fmul(hf, f);
        let (l2h, l2l) = if self.wide {
            (
                6.931_471_803_691_238_164_9e-1,
                1.908_214_929_270_587_700_02e-10,
            )
        } else {
            (6.931_381_225_6e-1, 9.058_000_614_5e-6)
        };
        let l2h = self.c(cx, l2h);
        let l2l = self.c(cx, l2l);
        let hr = cx.fb.ins().fadd(hfsq, rr);
        let sr = cx.fb.ins().fmul(s, hr);
        let lo = self.mla(cx, kf, l2l, sr);
        let t = cx.fb.ins().fsub(lo, hfsq);
        let t = cx.fb.ins().fadd(t, f);
        let res = self.mla(cx, kf, l2h, t);
        self.log_specials(cx, x, res)
    }

    /// `x = 2^k·m` with `m` in `[√½, √2)` (subnormals scaled into the normal range first):
    /// `(m, k)`, `k` as a float.
    fn log_parts(&self, cx: &mut Ctx, x: ir::Value) -> (ir::Value, ir::Value) {
        let (mant, bias) = self.layout();
        let (min_normal, up, up_k, sqrt_half_bits) = if self.wide {
            (
                f64::MIN_POSITIVE,
                18014398509481984.0,
                54.0,
                0x3fe6_a09e_667f_3bcd_i64,
            )
        } else {
            (f32::MIN_POSITIVE as f64, 33554432.0, 25.0, 0x3f35_04f3_i64)
        };
        // Scale subnormals into the normal range.
        let mn = self.c(cx, min_normal);
        let tiny = self.fcmp(cx, FloatCC::LessThan, x, mn);
        let upc = self.c(cx, up);
        let xs = cx.fb.ins().fmul(x, upc);
        let xn = self.sel(cx, tiny, xs, x);
        let zero = self.c(cx, 0.0);
        let upk = self.c(cx, up_k);
        let kadj = self.sel(cx, tiny, upk, zero);
        // x = 2^k·m with m in [√½, √2).
        let ix = self.bits_of(cx, xn);
        let one_bits = bias << mant;
        let shift = self.ci(cx, one_bits - sqrt_half_bits);
        let ix = cx.fb.ins().iadd(ix, shift);
        let e = cx.fb.ins().ushr_imm_u(ix, mant);
        let mmask = self.ci(cx, (1i64 << mant) - 1);
        let mb = cx.fb.ins().band(ix, mmask);
        let sh = self.ci(cx, sqrt_half_bits);
        let mb = cx.fb.ins().iadd(mb, sh);
        let m = self.float_of(cx, mb);
        // k as a float: the exponent field read through a float with a 2^p exponent.
        let two_p: f64 = if self.wide {
            4503599627370496.0
        } else {
            8388608.0
        };
        let tpb = self.ci(
            cx,
            if self.wide {
                two_p.to_bits() as i64
            } else {
                (two_p as f32).to_bits() as i64
            },
        );
        let ef = cx.fb.ins().bor(e, tpb);
        let ef = self.float_of(cx, ef);
        let tp = self.c(cx, two_p + bias as f64);
        let kf = cx.fb.ins().fsub(ef, tp);
        let kf = cx.fb.ins().fsub(kf, kadj);
        (m, kf)
    }

    /// `res` (a logarithm of `x` computed for finite `x > 0`) with log's special values:
    /// `log(±0) = −∞`, `log(x < 0) = NaN`, `log(∞) = ∞`, NaN stays NaN.
    fn log_specials(&self, cx: &mut Ctx, x: ir::Value, res: ir::Value) -> ir::Value {
        let zero = self.c(cx, 0.0);
        let inf = self.c(cx, f64::INFINITY);
        let ninf = self.c(cx, f64::NEG_INFINITY);
        let nan = self.c(cx, f64::NAN);
        let neg = self.fcmp(cx, FloatCC::LessThan, x, zero);
        let res = self.sel(cx, neg, nan, res);
        let isz = self.fcmp(cx, FloatCC::Equal, x, zero);
        let res = self.sel(cx, isz, ninf, res);
        let isinf = self.fcmp(cx, FloatCC::Equal, x, inf);
        let res = self.sel(cx, isinf, inf, res);
        let isnan = self.fcmp(cx, FloatCC::Unordered, x, x);
        self.sel(cx, isnan, x, res)
    }

    /// `ln(1 + x)` by Goldberg's correction `log(u)·x/(u − 1)`, `u = 1 + x`.
    pub fn log1p(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let one = self.c(cx, 1.0);
        let u = cx.fb.ins().fadd(one, x);
        let d = cx.fb.ins().fsub(u, one);
        let l = self.log(cx, u);
        let q = cx.fb.ins().fdiv(x, d);
        let r = cx.fb.ins().fmul(l, q);
        let zero = self.c(cx, 0.0);
        let dz = self.fcmp(cx, FloatCC::Equal, d, zero);
        let r = self.sel(cx, dz, x, r);
        let inf = self.c(cx, f64::INFINITY);
        let xi = self.fcmp(cx, FloatCC::Equal, x, inf);
        self.sel(cx, xi, x, r)
    }

    /// `sin x` (`cos` with `quarter = 1`): reduction by π/2, then the sine or cosine kernel
    /// per quadrant.
    pub fn sincos(&self, cx: &mut Ctx, x: ir::Value, quarter: i64) -> Result<ir::Value> {
        let block = cx.fb.current_block().expect("emitting in a block");
        let (s, c, k) = match cx.fast_sincos.get(&(block, x)) {
            Some(&parts) => parts,
            None => {
                let parts = self.sincos_kernels(cx, x)?;
                // The kernels' branch (if any) left us in a new block.
                let block = cx.fb.current_block().expect("emitting in a block");
                cx.fast_sincos.insert((block, x), parts);
                parts
            }
        };
        Ok(self.sincos_quadrant(cx, x, quarter, s, c, k))
    }

    /// The largest `|x|` whose reduction by π/2 [`Fm::sincos_kernels`] does inline, and the
    /// parts of π/2 it subtracts.
    ///
    /// k·π/2 is subtracted as `k·p₁ + k·p₂ + ...`, each step exact or rounded only where the
    /// remainder is already far larger than what is left to subtract, so the error is the
    /// final rounding plus `k` times the parts' distance from π/2. With FMA the f32 parts are
    /// three full f32 values, the first two rounded down so that all three are positive
    /// (distance 2⁻⁷³; positive parts keep `x − k·p` at −0 for `x = −0`, `k = 0`, so `sin`
    /// needs no zero test); without, products must be exact, so the first three have 14 bits
    /// (`k < 2^10`) and a fourth is needed. The f64 parts have 33, 33 and 53 bits (distance
    /// 2⁻¹²², all positive). `jit/tests/fastmath.rs` checks the nearest values to every
    /// multiple of π/2 within these limits, where the remainder is smallest against that
    /// error.
    fn half_pi_parts(&self) -> (f64, &'static [f64]) {
        if self.wide {
            (
                131072.0,
                &[
                    1.570_796_326_734_125_614_17,
                    6.077_100_506_303_965_976_60e-11,
                    2.022_266_248_795_950_631_54e-21,
                ],
            )
        } else if self.fma {
            (
                65536.0,
                &[
                    1.570_796_251_296_997,
                    7.549_789_415_861_596e-8,
                    5.390_302_953_474_238e-15,
                ],
            )
        } else {
            (
                1024.0,
                &[
                    1.570_800_781_25,
                    -4.454_515_874_385_834e-6,
                    6.077_272_018_956_137e-11,
                    -1.715_124_510_005_881_9e-15,
                ],
            )
        }
    }

    /// The reduction of `x` by π/2 and both kernels: (sine kernel, cosine kernel, quadrant).
    ///
    /// When some lane is beyond the reduction's limit (or infinite), the whole vector takes a
    /// cold block that calls the precise scalar `sin` and `cos` for each lane instead and sets
    /// the quadrants to 0, so that [`Fm::sincos_quadrant`] returns those values unchanged.
    fn sincos_kernels(
        &self,
        cx: &mut Ctx,
        x: ir::Value,
    ) -> Result<(ir::Value, ir::Value, ir::Value)> {
        let ax = self.abs(cx, x);
        let lim = self.c(cx, self.half_pi_parts().0);
        let far = self.fcmp(cx, FloatCC::GreaterThan, ax, lim);
        let v = self.branch(
            cx,
            far,
            |fm, cx| Ok(fm.sincos_fast(cx, x)),
            |fm, cx| {
                let sin = fm.call_lanes(cx, "sin", x)?;
                let cos = fm.call_lanes(cx, "cos", x)?;
                Ok(vec![sin, cos, fm.ci(cx, 0)])
            },
        )?;
        Ok((v[0], v[1], v[2]))
    }

    /// The inline part of [`Fm::sincos_kernels`]: `[sine kernel, cosine kernel, quadrant]`.
    fn sincos_fast(&self, cx: &mut Ctx, x: ir::Value) -> Vec<ir::Value> {
        let tpi = self.c(cx, std::f64::consts::FRAC_2_PI);
        let t = cx.fb.ins().fmul(x, tpi);
        let (kf, k) = self.round_int(cx, t);
        let parts = self.half_pi_parts().1;
        let nk = cx.fb.ins().fneg(kf);
        let mut r = x;
        for &p in parts {
            let pc = self.c(cx, p);
            r = self.mla(cx, nk, pc, r);
        }
        let z = cx.fb.ins().fmul(r, r);
        // Sine kernel: r + r·z·S(z).
        let (sc, cc): (&[f64], &[f64]) = if self.wide {
            (
                &[
                    -1.666_666_666_666_663_243_48e-1,
                    8.333_333_333_322_489_461_24e-3,
                    -1.984_126_982_985_794_931_34e-4,
                    2.755_731_370_707_006_767_89e-6,
                    -2.505_076_025_340_686_341_95e-8,
                    1.589_690_995_211_550_102_21e-10,
                ],
                &[
                    4.166_666_666_666_660_190_37e-2,
                    -1.388_888_888_887_410_957_49e-3,
                    2.480_158_728_947_672_941_78e-5,
                    -2.755_731_435_139_066_330_35e-7,
                    2.087_572_321_298_174_827_90e-9,
                    -1.135_964_755_778_819_482_65e-11,
                ],
            )
        } else {
            (
                &[
                    -0.166_666_666_416_265_235_595,
                    0.008_333_329_385_889_463_175_6,
                    -0.000_198_393_348_360_966_317_347,
                    0.000_002_718_311_493_989_821_906_4,
                ],
                &[
                    0.041_666_623_323_739_063_189_4,
                    -0.001_388_676_377_460_992_946_92,
                    0.000_024_390_448_796_277_409_065_4,
                ],
            )
        };
        let z2 = cx.fb.ins().fmul(z, z);
        let sp = self.estrin(cx, z, z2, sc);
        // `t = z·S(z) + 0` is `+0` (not `−0`, as `z·S(z)` would be) when `z` is zero, so
        // that `r·t + r` keeps the sign of a zero `r`: sin(±0) = ±0 without a compare and
        // select after the kernels.
        let zero = self.c(cx, 0.0);
        let t = self.mla(cx, z, sp, zero);
        let s = self.mla(cx, r, t, r);
        // Cosine kernel: w + (((1 − w) − z/2) + z²·C(z)), w = 1 − z/2.
        let cp = self.estrin(cx, z, z2, cc);
        let half = self.c(cx, 0.5);
        let one = self.c(cx, 1.0);
        let hz = cx.fb.ins().fmul(half, z);
        let w = cx.fb.ins().fsub(one, hz);
        let t1 = cx.fb.ins().fsub(one, w);
        let t1 = cx.fb.ins().fsub(t1, hz);
        let t2 = self.mla(cx, z2, cp, t1);
        let c = cx.fb.ins().fadd(w, t2);
        vec![s, c, k]
    }

    /// The values `fast` computes, or where some lane of `mask` (a comparison of this type)
    /// is set, those `slow` computes for the whole vector, in a cold block: a rare fallback
    /// (the precise functions, called lane by lane) that costs the common case one test and
    /// a branch not taken, and keeps the calls (which clobber the vector registers) off its
    /// path. The code after continues in a new block, which the current one dominates, so the
    /// `sin` and `cos` kernels cached for the current block stay valid there.
    fn branch(
        &self,
        cx: &mut Ctx,
        mask: ir::Value,
        fast: impl FnOnce(&Fm, &mut Ctx) -> Result<Vec<ir::Value>>,
        slow: impl FnOnce(&Fm, &mut Ctx) -> Result<Vec<ir::Value>>,
    ) -> Result<Vec<ir::Value>> {
        let any = if self.ty.is_vector() {
            cx.fb.ins().vany_true(mask)
        } else {
            mask
        };
        let from = cx.fb.current_block().expect("emitting in a block");
        let inline = cx.fb.create_block();
        let cold = cx.fb.create_block();
        let join = cx.fb.create_block();
        cx.fb.set_cold_block(cold);
        cx.fb.ins().brif(any, cold, &[], inline, &[]);
        let args = |vals: Vec<ir::Value>| -> Vec<BlockArg> {
            vals.into_iter().map(BlockArg::Value).collect()
        };
        cx.fb.switch_to_block(inline);
        let vals = fast(self, cx)?;
        for &v in &vals {
            let t = cx.fb.func.dfg.value_type(v);
            cx.fb.append_block_param(join, t);
        }
        cx.fb.ins().jump(join, &args(vals));
        cx.fb.switch_to_block(cold);
        let vals = slow(self, cx)?;
        cx.fb.ins().jump(join, &args(vals));
        cx.fb.switch_to_block(join);
        let moved: Vec<_> = cx
            .fast_sincos
            .iter()
            .filter(|((b, _), _)| *b == from)
            .map(|(&(_, v), &parts)| (v, parts))
            .collect();
        for (v, parts) in moved {
            cx.fast_sincos.insert((join, v), parts);
        }
        Ok(cx.fb.block_params(join).to_vec())
    }

    /// The interpreter's scalar function `name` (`ferrax_{name}_{lane type}`, see
    /// `crate::symbols`) applied to every lane of `x`, one call per lane.
    fn call_lanes(&self, cx: &mut Ctx, name: &str, x: ir::Value) -> Result<ir::Value> {
        let lt = self.ty.lane_type();
        let sym = format!("ferrax_{name}_{}", if self.wide { "f64" } else { "f32" });
        if !self.ty.is_vector() {
            return Ok(cx.call(&sym, &[lt], &[lt], &[x])?[0]);
        }
        let mut out = x;
        for i in 0..self.ty.lane_count() as u8 {
            let xi = cx.fb.ins().extractlane(x, i);
            let yi = cx.call(&sym, &[lt], &[lt], &[xi])?[0];
            out = cx.fb.ins().insertlane(out, yi, i);
        }
        Ok(out)
    }

    /// `sin x` (`quarter = 0`) or `cos x` (`quarter = 1`) from the kernels of
    /// [`Fm::sincos_kernels`].
    fn sincos_quadrant(
        &self,
        cx: &mut Ctx,
        x: ir::Value,
        quarter: i64,
        s: ir::Value,
        c: ir::Value,
        k: ir::Value,
    ) -> ir::Value {
        // Quadrant q = k + quarter: odd quadrants take the cosine kernel, quadrants 2 and 3
        // negate. Both functions test k's parity (one compare, so a vector select is one
        // blend, and `sin` and `cos` of one argument share it): `cos` swaps the kernels.
        debug_assert!(quarter == 0 || quarter == 1, "sin or cos");
        let lane_bits = if self.wide { 64 } else { 32 };
        let one_i = self.ci(cx, 1);
        let low = cx.fb.ins().band(k, one_i);
        let odd_k = cx.fb.ins().icmp(IntCC::Equal, low, one_i);
        let (on_odd, on_even) = if quarter == 0 { (c, s) } else { (s, c) };
        let v = if self.ty.is_vector() {
            self.sel_int_mask(cx, odd_k, on_odd, on_even)
        } else {
            cx.fb.ins().select(odd_k, on_odd, on_even)
        };
        let q = if quarter != 0 {
            let qc = self.ci(cx, quarter);
            cx.fb.ins().iadd(k, qc)
        } else {
            k
        };
        let sign = cx.fb.ins().ushr_imm_u(q, 1);
        let sign = cx.fb.ins().ishl_imm_u(sign, lane_bits - 1);
        let vb = self.bits_of(cx, v);
        let vb = cx.fb.ins().bxor(vb, sign);
        let res = self.float_of(cx, vb);
        if quarter == 0 && self.half_pi_parts().1.iter().any(|&p| p < 0.0) {
            // sin(±0) = ±0: the kernels keep the sign of a zero argument, but subtracting
            // `k·p` for a negative part `p` and `k = 0` turns −0 into +0.
            let zero = self.c(cx, 0.0);
            let z = self.fcmp(cx, FloatCC::Equal, x, zero);
            self.sel(cx, z, x, res)
        } else {
            res
        }
    }

    /// `e^x − 1` for `x` in `[0, 2·lim]` of [`Fm::tanh`] (or NaN): there the reduction's
    /// exponent stays below 60, so only [`Fm::expm1`]'s small-exponent path is taken, and
    /// its clamp and zero test change nothing (`expm1(+0)` is `+0` on that path); the result
    /// is bit-identical to [`Fm::expm1`] on this domain, in fewer instructions.
    fn expm1_tanh_domain(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let (r, k) = self.reduce_ln2(cx, x);
        let p = self.expm1_poly(cx, r);
        let one = self.c(cx, 1.0);
        let s = self.pow2(cx, k);
        let sm1 = cx.fb.ins().fsub(s, one);
        self.mla(cx, p, s, sm1)
    }

    /// `tanh x = sign(x)·e/(e + 2)`, `e = expm1(2|x|)`.
    pub fn tanh(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let a = self.abs(cx, x);
        let lim = if self.wide {
            TANH_LIMIT.0
        } else {
            TANH_LIMIT.1
        };
        let a2 = self.clamp(cx, a, 0.0, lim);
        let a2 = cx.fb.ins().fadd(a2, a2);
        let e = self.expm1_tanh_domain(cx, a2);
        let two = self.c(cx, 2.0);
        let d = cx.fb.ins().fadd(e, two);
        let t = cx.fb.ins().fdiv(e, d);
        // Put back the sign of x (−0 stays −0; NaN propagated by fmin and expm1).
        self.with_sign_of(cx, t, x)
    }

    /// `1 / (1 + e^−x)` for `x ≥ 0` and `e^x / (1 + e^x)` below, both from `e = e^−|x| ≤ 1`:
    /// for negative `x` the result is about `e^x`, so it keeps `exp`'s subnormal range instead
    /// of flushing to zero where `e^−x` overflows.
    pub fn logistic(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        let a = self.abs(cx, x);
        let na = cx.fb.ins().fneg(a);
        let e = self.exp(cx, na);
        let one = self.c(cx, 1.0);
        let d = cx.fb.ins().fadd(one, e);
        let zero = self.c(cx, 0.0);
        let neg = self.fcmp(cx, FloatCC::LessThan, x, zero);
        let n = self.sel(cx, neg, e, one);
        cx.fb.ins().fdiv(n, d)
    }

    /// `ln x` for finite `x > 0` in f64 lanes as a double word `(hi, lo)` with a relative
    /// error near 2^-64, for [`Fm::pow`]: with `u = (m − 1)/(m + 1)`,
    /// `log m = 2u + (2/3)u³ + 2u⁵·Q(u²)` where `u` and `(2/3)u³` are carried as double words
    /// (FMA-exact products and two-sums) and the rest, below 2⁻¹² of the total, in plain f64
    /// (the series of `atanh` to `u²⁵`, so the truncation stays below 2⁻⁶⁴); `k·ln 2` uses a
    /// 32-bit `ln 2` head, exact for every `k`. Zero, infinite and NaN `x` give meaningless
    /// words that the caller replaces.
    fn log_dw(&self, cx: &mut Ctx, x: ir::Value) -> (ir::Value, ir::Value) {
        debug_assert!(self.wide, "the double-word log is for f64 lanes");
        let (m, kf) = self.log_parts(cx, x);
        let one = self.c(cx, 1.0);
        let two = self.c(cx, 2.0);
        // u = num/den as a double word; num = m − 1 is exact, den = m + 1 is a two-sum.
        let num = cx.fb.ins().fsub(m, one);
        let (den, den_lo) = self.two_sum(cx, m, one);
        let u = cx.fb.ins().fdiv(num, den);
        let nu = cx.fb.ins().fneg(u);
        let r = cx.fb.ins().fma(nu, den, num);
        let ud = cx.fb.ins().fmul(u, den_lo);
        let r = cx.fb.ins().fsub(r, ud);
        let u_lo = cx.fb.ins().fdiv(r, den);
        // w = u² and c = u³ as double words.
        let (w, w_lo) = self.two_prod(cx, u, u);
        let uul = cx.fb.ins().fmul(u, u_lo);
        let w_lo = self.mla(cx, two, uul, w_lo);
        let (c, c_lo) = self.two_prod(cx, w, u);
        let t = cx.fb.ins().fmul(w, u_lo);
        let c_lo = cx.fb.ins().fadd(c_lo, t);
        let c_lo = self.mla(cx, w_lo, u, c_lo);
        // d = (2/3)·c, with 2/3 as a double word.
        let (t_hi, t_lo) = (0.666_666_666_666_666_6, 3.700_743_415_417_188e-17);
        let th = self.c(cx, t_hi);
        let tl = self.c(cx, t_lo);
        let (d, d_lo) = self.two_prod(cx, th, c);
        let d_lo = self.mla(cx, th, c_lo, d_lo);
        let d_lo = self.mla(cx, tl, c, d_lo);
        // The rest: 2u⁵·Q(u²), Q = Σ u^(2n)/(2n + 5).
        let q: Vec<f64> = (0..11).map(|n| 1.0 / (2 * n + 5) as f64).collect();
        let w2 = cx.fb.ins().fmul(w, w);
        let qv = self.estrin(cx, w, w2, &q);
        let u5 = cx.fb.ins().fmul(c, w);
        let u5 = cx.fb.ins().fmul(u5, two);
        let rest = cx.fb.ins().fmul(u5, qv);
        // k·ln 2 + 2u + d + (lower parts).
        let l2h = self.c(cx, 6.931_471_803_691_238e-1);
        let l2l = self.c(cx, 1.908_214_929_270_587_7e-10);
        let a = cx.fb.ins().fmul(kf, l2h);
        let u2 = cx.fb.ins().fmul(u, two);
        let (s1, e1) = self.two_sum(cx, a, u2);
        let (s2, e2) = self.two_sum(cx, s1, d);
        let lo = cx.fb.ins().fadd(e1, e2);
        let lo = self.mla(cx, kf, l2l, lo);
        let lo = self.mla(cx, two, u_lo, lo);
        let lo = cx.fb.ins().fadd(lo, d_lo);
        let lo = cx.fb.ins().fadd(lo, rest);
        // Renormalise (|lo| is far below |s2|).
        let hi = cx.fb.ins().fadd(s2, lo);
        let back = cx.fb.ins().fsub(hi, s2);
        let lo = cx.fb.ins().fsub(lo, back);
        (hi, lo)
    }

    /// `a·b` as a double word: the rounded product and its exact error, by one FMA.
    fn two_prod(&self, cx: &mut Ctx, a: ir::Value, b: ir::Value) -> (ir::Value, ir::Value) {
        let p = cx.fb.ins().fmul(a, b);
        let np = cx.fb.ins().fneg(p);
        let e = cx.fb.ins().fma(a, b, np);
        (p, e)
    }

    /// `a + b` as a double word (Knuth's two-sum: exact for any order of magnitudes).
    fn two_sum(&self, cx: &mut Ctx, a: ir::Value, b: ir::Value) -> (ir::Value, ir::Value) {
        let s = cx.fb.ins().fadd(a, b);
        let bb = cx.fb.ins().fsub(s, a);
        let ab = cx.fb.ins().fsub(s, bb);
        let da = cx.fb.ins().fsub(a, ab);
        let db = cx.fb.ins().fsub(b, bb);
        let e = cx.fb.ins().fadd(da, db);
        (s, e)
    }

    /// `x^y` as `|x|^y = exp(y·log|x|)` with IEEE's special cases (`None` for f64 lanes on a
    /// target without FMA, which keep the precise function).
    ///
    /// f32 lanes are widened to f64 and computed with the f64 [`Fm::log`] and [`Fm::exp`]:
    /// their 2-ulp f64 errors, amplified by at most `|y·log|x|| ≤ 104` before the f32 result
    /// overflows or underflows, stay far below an f32 ulp, so after narrowing the result is
    /// within one f32 ulp. f64 lanes need more: an error ε in `log|x|` becomes an error
    /// `|y·log|x||·ε` (up to 745·ε) in the result, so `log|x|` is computed as a double word
    /// ([`Fm::log_dw`], about 2⁻⁶⁴), multiplied by `y` exactly with an FMA, and the low word
    /// applied as `e^t_hi·(1 + t_lo)`: the 2-ulp `exp` dominates (the tests measure at most
    /// one ulp from glibc's `pow`, bases near 1 with exponents in the tens of thousands
    /// included, and assert three). IEEE's special cases are selected in: the sign for negative `x`
    /// and odd integer `y`, NaN for finite negative `x` and non-integer `y`, and 1 for
    /// `y = ±0`, `x = 1` and `|x| = 1` with infinite `y`.
    pub fn pow(&self, cx: &mut Ctx, x: ir::Value, y: ir::Value) -> Result<Option<ir::Value>> {
        if self.wide {
            if !self.fma {
                return Ok(None);
            }
            return Ok(Some(self.pow_wide(cx, x, y, false)?));
        }
        if !self.ty.is_vector() {
            let (xd, yd) = (
                cx.fb.ins().fpromote(types::F64, x),
                cx.fb.ins().fpromote(types::F64, y),
            );
            let r = Fm::new(cx, types::F64).pow_wide(cx, xd, yd, true)?;
            return Ok(Some(cx.fb.ins().fdemote(types::F32, r)));
        }
        // f32x4: lanes 0–1 and 2–3 in two f64x2 halves, narrowed and joined again.
        let flags = Fm::flags();
        let bytes = |cx: &mut Ctx, v: ir::Value| cx.fb.ins().bitcast(types::I8X16, flags, v);
        let shuffle = |cx: &mut Ctx, a: ir::Value, b: ir::Value, mask: [u8; 16]| {
            let imm = cx
                .fb
                .func
                .dfg
                .immediates
                .push(ir::ConstantData::from(mask.to_vec()));
            cx.fb.ins().shuffle(a, b, imm)
        };
        // Bytes 8–15 (lanes 2–3) moved to the front.
        let high_first: [u8; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
        let wide = Fm::new(cx, types::F64X2);
        let mut halves = [x, x];
        for (k, h) in halves.iter_mut().enumerate() {
            let (xs, ys) = if k == 0 {
                (x, y)
            } else {
                let xb = bytes(cx, x);
                let yb = bytes(cx, y);
                let xh = shuffle(cx, xb, xb, high_first);
                let yh = shuffle(cx, yb, yb, high_first);
                (
                    cx.fb.ins().bitcast(types::F32X4, flags, xh),
                    cx.fb.ins().bitcast(types::F32X4, flags, yh),
                )
            };
            let xd = cx.fb.ins().fvpromote_low(xs);
            let yd = cx.fb.ins().fvpromote_low(ys);
            let r = wide.pow_wide(cx, xd, yd, true)?;
            *h = cx.fb.ins().fvdemote(r);
        }
        // Lanes 0–1 of each narrowed half (bytes 0–7 of the first, then of the second).
        let lo = bytes(cx, halves[0]);
        let hi = bytes(cx, halves[1]);
        let joined = shuffle(
            cx,
            lo,
            hi,
            [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
        );
        Ok(Some(cx.fb.ins().bitcast(types::F32X4, flags, joined)))
    }

    /// `x^y` on f64 lanes for [`Fm::pow`]: `exp(y·log|x|)` with IEEE's special cases; for f64
    /// results `log|x|` and the product with `y` as double words, for f32 results (`narrow`,
    /// the lanes f32 values) in plain f64.
    ///
    /// Where `t = y·log|x|` lies within 10⁻¹² (f64 results) or 10⁻⁹ (f32 results) of the
    /// logarithm of a class boundary, the overflow threshold or half the smallest subnormal
    /// (the point below which results round to zero), the approximation cannot tell on which
    /// side the exact power lies (and at exact ties such as `2^−1075` it must not guess): a
    /// vector with such a lane calls the precise scalar `pow` of the result type for each of
    /// its lanes instead ([`Fm::branch`]). The window is far
    /// wider than `t`'s error (its rounding, at most 6·10⁻¹⁴ there, and the error of `log`),
    /// so that everywhere else the class is decided correctly.
    fn pow_wide(
        &self,
        cx: &mut Ctx,
        x: ir::Value,
        y: ir::Value,
        narrow: bool,
    ) -> Result<ir::Value> {
        let ax = self.abs(cx, x);
        // t = y·log|x|: for f64 results a double word t + t_lo, y·(l + l_lo) (the double word
        // is only meaningful for finite x > 0).
        let (t, t_lo) = if narrow {
            let l = self.log(cx, ax);
            (cx.fb.ins().fmul(y, l), None)
        } else {
            let (l, l_lo) = self.log_dw(cx, ax);
            let l = self.log_specials(cx, ax, l);
            let (t, t_lo) = self.two_prod(cx, y, l);
            (t, Some(self.mla(cx, y, l_lo, t_lo)))
        };
        // ln((2 − 2^−p)·2^emax) and ln(2^(emin − p)), p the result's precision.
        let (over, zero, window) = if narrow {
            (88.722_839_081_870_68, -103.972_077_083_991_80, 1e-9)
        } else {
            (709.782_712_893_384_00, -745.133_219_101_941_21, 1e-12)
        };
        let mut near = None;
        for b in [over, zero] {
            let bc = self.c(cx, b);
            let d = cx.fb.ins().fsub(t, bc);
            let d = self.abs(cx, d);
            let w = self.c(cx, window);
            let n = self.fcmp(cx, FloatCC::LessThan, d, w);
            near = Some(match near {
                None => n,
                Some(m) => cx.fb.ins().bor(m, n),
            });
        }
        let near = near.expect("two boundaries");
        let r = self.branch(
            cx,
            near,
            |fm, cx| Ok(vec![fm.pow_from_log(cx, x, y, t, t_lo)]),
            |fm, cx| Ok(vec![fm.call_pow_lanes(cx, x, y, narrow)?]),
        )?;
        Ok(r[0])
    }

    /// The inline part of [`Fm::pow_wide`]: `x^y` from `t = y·log|x|` (with its low word
    /// `t_lo` for f64 results).
    fn pow_from_log(
        &self,
        cx: &mut Ctx,
        x: ir::Value,
        y: ir::Value,
        t: ir::Value,
        t_lo: Option<ir::Value>,
    ) -> ir::Value {
        let ax = self.abs(cx, x);
        let m = if let Some(t_lo) = t_lo {
            // e^(t + t_lo) = e^t·(1 + t_lo).
            let e = self.exp(cx, t);
            // Where t or e is not finite (x = 0 or ∞, overflow) the correction is dropped.
            let inf = self.c(cx, f64::INFINITY);
            let ae = self.abs(cx, e);
            let at = self.abs(cx, t);
            let e_inf = self.fcmp(cx, FloatCC::Equal, ae, inf);
            let t_inf = self.fcmp(cx, FloatCC::Equal, at, inf);
            let skip = cx.fb.ins().bor(e_inf, t_inf);
            let corrected = cx.fb.ins().fma(e, t_lo, e);
            self.sel(cx, skip, e, corrected)
        } else {
            self.exp(cx, t)
        };
        // y's parity: an integer when floor(y) = y, even when y/2 is one too (±∞ counts as
        // an even integer, NaN as neither).
        let fy = cx.fb.ins().floor(y);
        let is_int = self.fcmp(cx, FloatCC::Equal, fy, y);
        let half = self.c(cx, 0.5);
        let hy = cx.fb.ins().fmul(y, half);
        let fhy = cx.fb.ins().floor(hy);
        let even = self.fcmp(cx, FloatCC::Equal, fhy, hy);
        let not_even = cx.fb.ins().bnot(even);
        let odd = cx.fb.ins().band(is_int, not_even);
        // x's sign bit (so −0 and −∞ count as negative).
        let xb = self.bits_of(cx, x);
        let sm = self.ci(cx, i64::MIN);
        let sign = cx.fb.ins().band(xb, sm);
        let zero_i = self.ci(cx, 0);
        let xneg = cx.fb.ins().icmp(IntCC::NotEqual, sign, zero_i);
        let flip = cx.fb.ins().band(odd, xneg);
        let nm = cx.fb.ins().fneg(m);
        let r = self.sel(cx, flip, nm, m);
        // Finite negative x with non-integer y: NaN.
        let zero = self.c(cx, 0.0);
        let ninf = self.c(cx, f64::NEG_INFINITY);
        let below = self.fcmp(cx, FloatCC::LessThan, x, zero);
        let finite = self.fcmp(cx, FloatCC::GreaterThan, x, ninf);
        let not_int = cx.fb.ins().bnot(is_int);
        let bad = cx.fb.ins().band(below, finite);
        let bad = cx.fb.ins().band(bad, not_int);
        let nan = self.c(cx, f64::NAN);
        let r = self.sel(cx, bad, nan, r);
        // Exactly 1: y = ±0 (any x), x = 1 (any y), |x| = 1 with y = ±∞.
        let one = self.c(cx, 1.0);
        let inf = self.c(cx, f64::INFINITY);
        let y0 = self.fcmp(cx, FloatCC::Equal, y, zero);
        let x1 = self.fcmp(cx, FloatCC::Equal, x, one);
        let ax1 = self.fcmp(cx, FloatCC::Equal, ax, one);
        let ay = self.abs(cx, y);
        let yinf = self.fcmp(cx, FloatCC::Equal, ay, inf);
        let unit = cx.fb.ins().band(ax1, yinf);
        let ones = cx.fb.ins().bor(y0, x1);
        let ones = cx.fb.ins().bor(ones, unit);
        self.sel(cx, ones, one, r)
    }

    /// The interpreter's scalar `pow` of every lane pair of the f64 lanes `x` and `y`: of f32
    /// (the lanes converted exactly, the result widened back) when `narrow`.
    fn call_pow_lanes(
        &self,
        cx: &mut Ctx,
        x: ir::Value,
        y: ir::Value,
        narrow: bool,
    ) -> Result<ir::Value> {
        debug_assert!(self.wide, "pow's lanes are f64");
        let one = |cx: &mut Ctx, a: ir::Value, b: ir::Value| -> Result<ir::Value> {
            if narrow {
                let a = cx.fb.ins().fdemote(types::F32, a);
                let b = cx.fb.ins().fdemote(types::F32, b);
                let t = [types::F32, types::F32];
                let p = cx.call("ferrax_pow_f32", &t, &t[..1], &[a, b])?[0];
                Ok(cx.fb.ins().fpromote(types::F64, p))
            } else {
                let t = [types::F64, types::F64];
                Ok(cx.call("ferrax_pow_f64", &t, &t[..1], &[a, b])?[0])
            }
        };
        if !self.ty.is_vector() {
            return one(cx, x, y);
        }
        let mut out = x;
        for i in 0..self.ty.lane_count() as u8 {
            let xi = cx.fb.ins().extractlane(x, i);
            let yi = cx.fb.ins().extractlane(y, i);
            let p = one(cx, xi, yi)?;
            out = cx.fb.ins().insertlane(out, p, i);
        }
        Ok(out)
    }

    /// `erf x`: odd, so computed on `a = |x|` with the sign of `x` put back last (`erf(−0) =
    /// −0`, `erf(±∞) = ±1`, NaN stays NaN). Every piece is evaluated and the right one
    /// selected. The polynomials are Chebyshev fits made with mpmath.
    ///
    /// f32 lanes: `a·A(a²)` on `[0, 1]` (fit error 1.2e-9), then erf itself as `B₁(a − 1.5)`
    /// on `[1, 2]` and `B₂(a − 3)` on `[2, 4]` (coefficients rounded to f32); from 3.92 on,
    /// erf rounds to 1.
    ///
    /// f64 lanes: `a·A(a²)` on `[0, 1]` (fit error 1.3e-19), then `1 − e^(−a²)·G(a)` with
    /// `G = erfc·e^(a²)` fitted on `[1, 2]`, `[2, 3.5]` and `[3.5, 6]` (relative errors 2e-18,
    /// 3e-15 and 2e-11, each below 1e-17 of erf); the 2-ulp `exp` enters scaled by
    /// `erfc(a) ≤ 0.16`; from 6 on, erf rounds to 1.
    pub fn erf(&self, cx: &mut Ctx, x: ir::Value) -> Option<ir::Value> {
        if self.wide {
            return Some(self.erf_wide(cx, x));
        }
        const A: [f64; 7] = [
            1.128_379_106_521_606_4,
            -0.376_126_259_565_353_4,
            0.112_835_943_698_883_06,
            -0.026_854_211_464_524_27,
            0.005_189_087_241_888_046,
            -0.000_801_686_430_349_946,
            7.875_874_871_388_078e-5,
        ];
        const B1: [f64; 10] = [
            0.966_105_163_097_381_6,
            0.118_930_287_659_168_24,
            -0.178_395_420_312_881_47,
            0.138_752_102_851_867_68,
            -0.044_599_469_751_119_614,
            -0.014_869_260_601_699_352,
            0.019_333_558_157_086_372,
            -0.004_709_593_951_702_118,
            -0.002_402_188_256_382_942,
            0.001_555_390_772_409_737_1,
        ];
        const B2: [f64; 10] = [
            0.999_977_946_281_433_1,
            0.000_139_233_728_987_164_8,
            -0.000_419_839_401_729_404_9,
            0.000_790_067_890_193_313_4,
            -0.001_027_911_785_058_677_2,
            0.001_008_770_428_597_927,
            -0.000_783_200_026_489_794_3,
            0.000_412_576_686_358_079_3,
            -8.591_964_433_435_35e-5,
            -1.177_074_227_598_495_8e-5,
        ];
        let a = self.abs(cx, x);
        let t = cx.fb.ins().fmul(a, a);
        let pa = self.poly(cx, t, &A);
        let ra = cx.fb.ins().fmul(a, pa);
        let c1 = self.c(cx, 1.5);
        let s1 = cx.fb.ins().fsub(a, c1);
        let rb1 = self.poly(cx, s1, &B1);
        let c2 = self.c(cx, 3.0);
        let s2 = cx.fb.ins().fsub(a, c2);
        let rb2 = self.poly(cx, s2, &B2);
        let one = self.c(cx, 1.0);
        let two = self.c(cx, 2.0);
        let sat = self.c(cx, 3.92);
        let below2 = self.fcmp(cx, FloatCC::LessThan, a, two);
        let r = self.sel(cx, below2, rb1, rb2);
        let upto1 = self.fcmp(cx, FloatCC::LessThanOrEqual, a, one);
        let r = self.sel(cx, upto1, ra, r);
        let big = self.fcmp(cx, FloatCC::GreaterThanOrEqual, a, sat);
        let r = self.sel(cx, big, one, r);
        Some(self.with_sign_of(cx, r, x))
    }

    /// `r` (non-negative or NaN) with the sign bit of `x` or-ed in.
    fn with_sign_of(&self, cx: &mut Ctx, r: ir::Value, x: ir::Value) -> ir::Value {
        let xb = self.bits_of(cx, x);
        let sm = self.ci(cx, if self.wide { i64::MIN } else { i32::MIN as i64 });
        let sign = cx.fb.ins().band(xb, sm);
        let rb = self.bits_of(cx, r);
        let r = cx.fb.ins().bor(rb, sign);
        self.float_of(cx, r)
    }

    /// The f64 form of [`Fm::erf`].
    fn erf_wide(&self, cx: &mut Ctx, x: ir::Value) -> ir::Value {
        const A: [f64; 13] = [
            std::f64::consts::FRAC_2_SQRT_PI,
            -0.3761263890318375,
            0.11283791670954879,
            -0.026866170645076792,
            0.0052239776248180145,
            -0.000854832698083379,
            0.0001205533111164271,
            -1.4925595266831182e-05,
            1.6461000484121368e-06,
            -1.6350312701054695e-07,
            1.4659775274047436e-08,
            -1.1372848856791674e-09,
            5.957176147748911e-11,
        ];
        const G1: [f64; 17] = [
            0.3215854164543175,
            -0.16362291773256005,
            0.0761510398554774,
            -0.03293090529956527,
            0.013377340953067394,
            -0.0051459575478377826,
            0.0018861348769919975,
            -0.0006619300701084315,
            0.0002233099453004411,
            -7.265887301589559e-05,
            2.2864299608127746e-05,
            -6.97536222785843e-06,
            2.0670657912156654e-06,
            -5.944961119917664e-07,
            1.6714292901928126e-07,
            -4.9545807838901603e-08,
            1.3242541506849586e-08,
        ];
        const G2: [f64; 15] = [
            0.1936620962790687,
            -0.06323763756064137,
            0.019758592987324287,
            -0.005934337896564839,
            0.001719581885194874,
            -0.0004821950932829294,
            0.00013118180233874277,
            -3.469853951374473e-05,
            8.940140785092413e-06,
            -2.247676321583971e-06,
            5.520418140550562e-07,
            -1.3192706697647487e-07,
            3.105710607611476e-08,
            -8.01181001890603e-09,
            1.8069520510416326e-09,
        ];
        const G3: [f64; 12] = [
            0.11630270720874594,
            -0.023503448597910273,
            0.004661326438113046,
            -0.000908098908675339,
            0.00017392778941474965,
            -3.277569444797808e-05,
            6.082510682228709e-06,
            -1.1118029273174716e-06,
            1.9859009944209772e-07,
            -3.5308951693218504e-08,
            7.185117567525625e-09,
            -1.2397154955686125e-09,
        ];
        let a = self.abs(cx, x);
        let t = cx.fb.ins().fmul(a, a);
        let pa = self.poly(cx, t, &A);
        let ra = cx.fb.ins().fmul(a, pa);
        let mut g = Vec::new();
        for (cen, coeffs) in [(1.5, &G1[..]), (2.75, &G2[..]), (4.75, &G3[..])] {
            let c = self.c(cx, cen);
            let s = cx.fb.ins().fsub(a, c);
            g.push(self.poly(cx, s, coeffs));
        }
        let two = self.c(cx, 2.0);
        let b2 = self.c(cx, 3.5);
        let below2 = self.fcmp(cx, FloatCC::LessThan, a, two);
        let below35 = self.fcmp(cx, FloatCC::LessThan, a, b2);
        let gg = self.sel(cx, below35, g[1], g[2]);
        let gg = self.sel(cx, below2, g[0], gg);
        let nt = cx.fb.ins().fneg(t);
        let e = self.exp(cx, nt);
        let one = self.c(cx, 1.0);
        let ne = cx.fb.ins().fneg(e);
        let rb = self.mla(cx, ne, gg, one);
        let upto1 = self.fcmp(cx, FloatCC::LessThanOrEqual, a, one);
        let r = self.sel(cx, upto1, ra, rb);
        let six = self.c(cx, 6.0);
        let big = self.fcmp(cx, FloatCC::GreaterThanOrEqual, a, six);
        let r = self.sel(cx, big, one, r);
        self.with_sign_of(cx, r, x)
    }
}
