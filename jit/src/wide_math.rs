//! Fast transcendentals over whole buffers at the CPU's full vector width.
//!
//! Cranelift's x64 backend has 128-bit vectors only, so a fused loop whose root is a long
//! polynomial (the fast `tanh` of a network's hidden layer) runs two f64 or four f32 lanes at
//! a time with its constants reloaded on every pass. When such a group's root is `tanh`, the
//! fused loop stores the root's operand instead, and then calls a helper here that applies
//! `tanh` in place over the whole result, compiled for AVX-512 or AVX2 (chosen at run time
//! with `is_x86_feature_detected!`, the compiler vectorising the loops). The helpers perform
//! [`crate::lower::fastmath`]'s operations in its order, with its constants and with fused
//! multiply-adds where it uses them, so their results are the fused loop's bits; the lowering
//! calls them only when the target has FMA (without it the inline form multiplies and adds
//! separately). Large buffers are cut into blocks that run on the thread pool, as large fused
//! loops do; an element's result does not depend on the cut.

use crate::lower::fastmath::{
    EXPM1_Q32, EXPM1_Q64, LN2_PARTS_32, LN2_PARTS_64, ROUND_MAGIC, TANH_LIMIT,
};

/// Buffers of at least this many elements are cut into blocks for the thread pool.
const PAR_MIN: usize = crate::lower::fused::PAR_MIN;

/// The elements of one block given to a thread.
const BLOCK: usize = 1 << 14;

/// Fast `tanh` of one f64, [`crate::lower::fastmath`]'s `Fm::tanh` with FMA, operation for
/// operation: `sign(x)·e/(e + 2)` with `e = expm1(2·min(|x|, 20))`, the `expm1` reduced by
/// `ln 2` (Cody–Waite) with the exponent rounded by the magic-constant addition and the
/// polynomial evaluated by Estrin's scheme.
#[inline(always)]
fn tanh_f64(x: f64) -> f64 {
    let magic = ROUND_MAGIC.0;
    let (hi, lo) = LN2_PARTS_64;
    let q = EXPM1_Q64;
    let a = x.abs();
    // The clamp of `Fm::clamp`: comparisons that let NaN through.
    let a = if a > TANH_LIMIT.0 { TANH_LIMIT.0 } else { a };
    let a = if a < 0.0 { 0.0 } else { a };
    let a2 = a + a;
    let t = a2 * std::f64::consts::LOG2_E;
    let tm = t + magic;
    let kf = tm - magic;
    let k = (tm.to_bits() as i64).wrapping_sub(magic.to_bits() as i64);
    let nk = -kf;
    let r = nk.mul_add(hi, a2);
    let r = nk.mul_add(lo, r);
    // `q(r)` by Estrin's scheme over eleven coefficients, paired as `Fm::estrin` pairs them.
    let r2 = r * r;
    let t0 = q[1].mul_add(r, q[0]);
    let t1 = q[3].mul_add(r, q[2]);
    let t2 = q[5].mul_add(r, q[4]);
    let t3 = q[7].mul_add(r, q[6]);
    let t4 = q[9].mul_add(r, q[8]);
    let t5 = q[10];
    let u0 = t1.mul_add(r2, t0);
    let u1 = t3.mul_add(r2, t2);
    let u2 = t5.mul_add(r2, t4);
    let r4 = r2 * r2;
    let v0 = u1.mul_add(r4, u0);
    let r8 = r4 * r4;
    let qr = u2.mul_add(r8, v0);
    let p = r2.mul_add(qr, r);
    // `e = expm1(a2) = p·2^k + (2^k − 1)`.
    let s = f64::from_bits((k.wrapping_add(1023) << 52) as u64);
    let e = p.mul_add(s, s - 1.0);
    let y = e / (e + 2.0);
    f64::from_bits(y.to_bits() | (x.to_bits() & (1 << 63)))
}

/// Fast `tanh` of one f32, as [`tanh_f64`] with `Fm::tanh`'s f32 constants (each the f64
/// constant rounded to f32, as the inline form rounds them) and the six-term Taylor `q`.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let magic = ROUND_MAGIC.1 as f32;
    let (hi, lo) = (LN2_PARTS_32.0 as f32, LN2_PARTS_32.1 as f32);
    let q = EXPM1_Q32.map(|c| c as f32);
    let lim = TANH_LIMIT.1 as f32;
    let a = x.abs();
    let a = if a > lim { lim } else { a };
    let a = if a < 0.0 { 0.0 } else { a };
    let a2 = a + a;
    let t = a2 * std::f64::consts::LOG2_E as f32;
    let tm = t + magic;
    let kf = tm - magic;
    let k = (tm.to_bits() as i32).wrapping_sub(magic.to_bits() as i32);
    let nk = -kf;
    let r = nk.mul_add(hi, a2);
    let r = nk.mul_add(lo, r);
    let r2 = r * r;
    let t0 = q[1].mul_add(r, q[0]);
    let t1 = q[3].mul_add(r, q[2]);
    let t2 = q[5].mul_add(r, q[4]);
    let u0 = t1.mul_add(r2, t0);
    let r4 = r2 * r2;
    let qr = t2.mul_add(r4, u0);
    let p = r2.mul_add(qr, r);
    let s = f32::from_bits((k.wrapping_add(127) << 23) as u32);
    let e = p.mul_add(s, s - 1.0);
    let y = e / (e + 2.0);
    f32::from_bits(y.to_bits() | (x.to_bits() & (1 << 31)))
}

/// Defines the in-place loop of one element function for each instruction set, and the
/// dispatcher that picks the widest the CPU has.
macro_rules! wide_loop {
    ($name:ident, $t:ty, $f:ident) => {
        /// Applies the element function in place to every element of `xs`, with the widest
        /// vectors the CPU has (the plain loop, with library FMAs, without AVX2 and FMA).
        fn $name(xs: &mut [$t]) {
            #[cfg(target_arch = "x86_64")]
            {
                /// The loop compiled for AVX-512.
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                fn wide512(xs: &mut [$t]) {
                    xs.iter_mut().for_each(|x| *x = $f(*x));
                }
                /// The loop compiled for AVX2.
                #[target_feature(enable = "avx2,fma")]
                fn wide256(xs: &mut [$t]) {
                    xs.iter_mut().for_each(|x| *x = $f(*x));
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature the function is compiled for.
                    return unsafe { wide512(xs) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { wide256(xs) };
                }
            }
            xs.iter_mut().for_each(|x| *x = $f(*x));
        }
    };
}

wide_loop!(tanh_slice_f64, f64, tanh_f64);
wide_loop!(tanh_slice_f32, f32, tanh_f32);

/// Defines the loop `out[i, j] = f(src[i, j] + bias[j])` over rows of `bias.len()` elements
/// for each instruction set, and the dispatcher that picks the widest the CPU has; `src`
/// `None` reads `out` itself (the result written over the operand).
macro_rules! bias_loop {
    ($name:ident, $t:ty, $f:ident) => {
        /// Applies the element function to every element of `out` plus its column's bias,
        /// with the widest vectors the CPU has (see [`wide_loop`]).
        fn $name(out: &mut [$t], src: Option<&[$t]>, bias: &[$t]) {
            /// Blocks of whole rows of about [`BIAS_BLOCK`] elements get their sums first,
            /// then `tanh` over the block as one flat vector loop (a row at a time, the loop's
            /// remainder handling ran for every row of 32 elements); the block stays in the
            /// first-level cache between the two passes.
            #[inline(always)]
            fn each(out: &mut [$t], src: Option<&[$t]>, bias: &[$t]) {
                let cols = bias.len();
                if cols == 0 {
                    return;
                }
                let block = (BIAS_BLOCK / cols).max(1) * cols;
                for (b, o) in out.chunks_mut(block).enumerate() {
                    match src {
                        Some(src) => {
                            let s = &src[b * block..b * block + o.len()];
                            for (o, s) in o.chunks_exact_mut(cols).zip(s.chunks_exact(cols)) {
                                for ((o, &x), &c) in o.iter_mut().zip(s).zip(bias) {
                                    *o = x + c;
                                }
                            }
                        }
                        None => {
                            for o in o.chunks_exact_mut(cols) {
                                for (o, &c) in o.iter_mut().zip(bias) {
                                    *o += c;
                                }
                            }
                        }
                    }
                    o.iter_mut().for_each(|x| *x = $f(*x));
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                /// The loop compiled for AVX-512.
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                fn wide512(out: &mut [$t], src: Option<&[$t]>, bias: &[$t]) {
                    each(out, src, bias)
                }
                /// The loop compiled for AVX2.
                #[target_feature(enable = "avx2,fma")]
                fn wide256(out: &mut [$t], src: Option<&[$t]>, bias: &[$t]) {
                    each(out, src, bias)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature the function is compiled for.
                    return unsafe { wide512(out, src, bias) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { wide256(out, src, bias) };
                }
            }
            each(out, src, bias)
        }
    };
}

/// The elements of a block of rows in [`bias_loop`]'s two passes.
const BIAS_BLOCK: usize = 1024;

bias_loop!(bias_tanh_f64, f64, tanh_f64);
bias_loop!(bias_tanh_f32, f32, tanh_f32);

/// Defines the helper `$name(src, bias, out, rows, cols)`: the fast `tanh` of a product's
/// rows plus a bias row, `out[i, j] = tanh(src[i, j] + bias[j])`, in one pass (a dense
/// layer's `tanh(x·W + b)`, whose fused loop would otherwise store the sum and this module
/// then apply `tanh` over it). The sum is one IEEE addition, as the loop's, and `tanh` is
/// [`tanh_f64`]/[`tanh_f32`], so the results are the loop's bits.
macro_rules! bias_helper {
    ($name:ident, $t:ty, $kernel:ident) => {
        /// See [`bias_helper`].
        ///
        /// # Safety
        /// `out` must hold `rows·cols` writable elements, `src` as many readable ones (or be
        /// `out` itself) and `bias` `cols`; `out` overlaps neither `bias` nor, unless equal,
        /// `src`, and nothing else accesses them during the call.
        pub(crate) unsafe extern "C" fn $name(
            src: *const $t,
            bias: *const $t,
            out: *mut $t,
            rows: usize,
            cols: usize,
        ) {
            let Some(n) = rows.checked_mul(cols).filter(|&n| n > 0) else {
                return;
            };
            // SAFETY: the caller's contract.
            let (o, b) = unsafe {
                (
                    std::slice::from_raw_parts_mut(out, n),
                    std::slice::from_raw_parts(bias, cols),
                )
            };
            if std::ptr::eq(src, out) {
                $kernel(o, None, b);
            } else {
                // SAFETY: the caller's contract (`src` does not overlap `out`).
                let s = unsafe { std::slice::from_raw_parts(src, n) };
                $kernel(o, Some(s), b);
            }
        }
    };
}

bias_helper!(ferrax_bias_tanh_f64, f64, bias_tanh_f64);
bias_helper!(ferrax_bias_tanh_f32, f32, bias_tanh_f32);

/// The rows [`back_columns`] runs down a block of columns before moving to the next block,
/// as the fused loop's column lowering does: the rows' operands then stay in the first-level
/// cache between blocks.
const BACK_ROWS: usize = 64;

/// One pass of a `tanh` layer's backward product, `out[i] = (1 − t[i]·t[i])·g[i]`: the
/// subtraction, the multiplications and their order are the fused loop's (`square` is the
/// product of `t` with itself, the constant one is broadcast), each one IEEE operation without
/// contraction, so the results are the loop's bits. `None` for `t` or `g` reads `out` itself
/// (the result written over that operand; both `None` when the two are one buffer).
#[inline(always)]
fn back_pass<T>(out: &mut [T], t: Option<&[T]>, g: Option<&[T]>, one: T)
where
    T: Copy + std::ops::Mul<Output = T> + std::ops::Sub<Output = T>,
{
    let f = |t: T, g: T| (one - t * t) * g;
    match (t, g) {
        (Some(t), Some(g)) => {
            for ((o, &t), &g) in out.iter_mut().zip(t).zip(g) {
                *o = f(t, g);
            }
        }
        (None, Some(g)) => out.iter_mut().zip(g).for_each(|(o, &g)| *o = f(*o, g)),
        (Some(t), None) => out.iter_mut().zip(t).for_each(|(o, &t)| *o = f(t, *o)),
        (None, None) => out.iter_mut().for_each(|o| *o = f(*o, *o)),
    }
}

/// [`back_pass`] over rows of `sums.len()` elements, adding each row into `sums` (started
/// from zero) in row order, as the fused loop adds them: every column's sum combines its rows
/// in row order, whether the loop keeps it in a register or in the output. Blocks of `W`
/// columns keep their sums in registers down blocks of [`BACK_ROWS`] rows (a sum loaded and
/// stored on every row would make a chain of store-to-load forwarding per row); the columns
/// after the last whole block are done row by row.
#[inline(always)]
fn back_columns<T, const W: usize>(
    out: &mut [T],
    t: Option<&[T]>,
    g: Option<&[T]>,
    sums: &mut [T],
    one: T,
    zero: T,
) where
    T: Copy + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + std::ops::Sub<Output = T>,
{
    let cols = sums.len();
    if cols == 0 {
        return;
    }
    sums.fill(zero);
    let rows = out.len() / cols;
    let wide = cols - cols % W;
    for r0 in (0..rows).step_by(BACK_ROWS) {
        let r1 = (r0 + BACK_ROWS).min(rows);
        for c0 in (0..wide).step_by(W) {
            let mut acc = [zero; W];
            acc.copy_from_slice(&sums[c0..c0 + W]);
            for r in r0..r1 {
                let at = r * cols + c0;
                let o = &mut out[at..at + W];
                let (mut tv, mut gv) = ([zero; W], [zero; W]);
                tv.copy_from_slice(t.map_or(&*o, |t| &t[at..at + W]));
                gv.copy_from_slice(g.map_or(&*o, |g| &g[at..at + W]));
                for j in 0..W {
                    let y = (one - tv[j] * tv[j]) * gv[j];
                    o[j] = y;
                    acc[j] = acc[j] + y;
                }
            }
            sums[c0..c0 + W].copy_from_slice(&acc);
        }
        if wide < cols {
            for r in r0..r1 {
                let at = r * cols + wide..(r + 1) * cols;
                let o = &mut out[at.clone()];
                back_pass(o, t.map(|x| &x[at.clone()]), g.map(|x| &x[at.clone()]), one);
                for (s, &y) in sums[wide..].iter_mut().zip(&*o) {
                    *s = *s + y;
                }
            }
        }
    }
}

/// Defines the loop of a `tanh` layer's backward group for each instruction set, and the
/// dispatcher that picks the widest the CPU has: [`back_pass`] over `out`, or with `sums`
/// [`back_columns`] over blocks of `$w` columns (four 512-bit vectors).
macro_rules! back_loop {
    ($name:ident, $t:ty, $w:literal) => {
        /// See [`back_loop`].
        fn $name(out: &mut [$t], t: Option<&[$t]>, g: Option<&[$t]>, sums: Option<&mut [$t]>) {
            /// The loop for one instruction set.
            #[inline(always)]
            fn each(out: &mut [$t], t: Option<&[$t]>, g: Option<&[$t]>, sums: Option<&mut [$t]>) {
                match sums {
                    Some(sums) => back_columns::<$t, $w>(out, t, g, sums, 1.0, 0.0),
                    None => back_pass(out, t, g, 1.0),
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                /// The loop compiled for AVX-512.
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                fn wide512(
                    out: &mut [$t],
                    t: Option<&[$t]>,
                    g: Option<&[$t]>,
                    sums: Option<&mut [$t]>,
                ) {
                    each(out, t, g, sums)
                }
                /// The loop compiled for AVX2.
                #[target_feature(enable = "avx2,fma")]
                fn wide256(
                    out: &mut [$t],
                    t: Option<&[$t]>,
                    g: Option<&[$t]>,
                    sums: Option<&mut [$t]>,
                ) {
                    each(out, t, g, sums)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature the function is compiled for.
                    return unsafe { wide512(out, t, g, sums) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { wide256(out, t, g, sums) };
                }
            }
            each(out, t, g, sums)
        }
    };
}

back_loop!(tanh_back_f64, f64, 32);
back_loop!(tanh_back_f32, f32, 64);

/// Defines the helper `$name(t, g, out, sums, rows, cols)` of a `tanh` layer's backward
/// group: `out[i, j] = (1 − t[i, j]²)·g[i, j]` over `rows` rows of `cols` elements and, unless
/// `sums` is null, `sums[j] = Σ_i out[i, j]` (the bias gradient), with [`back_loop`]'s
/// operations in the fused loop's order, so the results are the loop's bits.
macro_rules! back_helper {
    ($name:ident, $t:ty, $kernel:ident) => {
        /// See [`back_helper`].
        ///
        /// # Safety
        /// `out` must hold `rows·cols` writable elements, `t` and `g` as many readable ones
        /// (each either `out` itself or not overlapping it), and `sums` be null or hold
        /// `cols` writable elements overlapping none of the others; nothing else accesses
        /// them during the call.
        pub(crate) unsafe extern "C" fn $name(
            t: *const $t,
            g: *const $t,
            out: *mut $t,
            sums: *mut $t,
            rows: usize,
            cols: usize,
        ) {
            let Some(n) = rows.checked_mul(cols).filter(|&n| n > 0) else {
                return;
            };
            // SAFETY: the caller's contract; an operand equal to `out` is read through it.
            unsafe {
                let o = std::slice::from_raw_parts_mut(out, n);
                let read = |x: *const $t| {
                    (!std::ptr::eq(x, out)).then(|| std::slice::from_raw_parts(x, n))
                };
                let s = (!sums.is_null()).then(|| std::slice::from_raw_parts_mut(sums, cols));
                $kernel(o, read(t), read(g), s);
            }
        }
    };
}

back_helper!(ferrax_tanh_back_f64, f64, tanh_back_f64);
back_helper!(ferrax_tanh_back_f32, f32, tanh_back_f32);

/// Runs `f` over `xs`, in blocks on the thread pool when `xs` is long.
fn over_blocks<T: Send>(xs: &mut [T], f: fn(&mut [T])) {
    if xs.len() < PAR_MIN || crate::symbols::pool_threads() < 2 {
        return f(xs);
    }
    use rayon::prelude::*;
    // A panic cannot come out of `f` (arithmetic on floats); should the pool fail to run,
    // the work is done here, where unwinding would abort the process.
    // Blocks on pool threads compute in the caller's floating-point mode (`crate::fp_env`).
    let fp = crate::fp_env::FpControl::current();
    let blocks = |xs: &mut [T]| xs.par_chunks_mut(BLOCK).for_each(|b| fp.run(|| f(b)));
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| blocks(xs))).is_err() {
        f(xs);
    }
}

/// Fast `tanh` in place over `n` f64 values at `x` (see the module documentation).
///
/// # Safety
/// `x` must point to `n` valid, writable, aligned f64 values that nothing else accesses
/// during the call.
pub(crate) unsafe extern "C" fn ferrax_tanh_inplace_f64(x: *mut f64, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: the caller's contract.
    let xs = unsafe { std::slice::from_raw_parts_mut(x, n) };
    over_blocks(xs, tanh_slice_f64);
}

/// Fast `tanh` in place over `n` f32 values at `x`; see [`ferrax_tanh_inplace_f64`].
///
/// # Safety
/// As for [`ferrax_tanh_inplace_f64`].
pub(crate) unsafe extern "C" fn ferrax_tanh_inplace_f32(x: *mut f32, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: the caller's contract.
    let xs = unsafe { std::slice::from_raw_parts_mut(x, n) };
    over_blocks(xs, tanh_slice_f32);
}

/// The helper that applies the fast `tanh` of `dtype` in place, by symbol name.
pub(crate) fn tanh_symbol(dtype: ferrax_ir::DType) -> Option<&'static str> {
    match dtype {
        ferrax_ir::DType::F64 => Some("ferrax_tanh_inplace_f64"),
        ferrax_ir::DType::F32 => Some("ferrax_tanh_inplace_f32"),
        ferrax_ir::DType::I32 | ferrax_ir::DType::Bool => None,
    }
}

/// The helper that applies the fast `tanh` of `dtype` to a product plus a bias row (see
/// [`bias_helper`]), by symbol name.
pub(crate) fn bias_tanh_symbol(dtype: ferrax_ir::DType) -> Option<&'static str> {
    match dtype {
        ferrax_ir::DType::F64 => Some("ferrax_bias_tanh_f64"),
        ferrax_ir::DType::F32 => Some("ferrax_bias_tanh_f32"),
        ferrax_ir::DType::I32 | ferrax_ir::DType::Bool => None,
    }
}

/// The helper of a `tanh` layer's backward group `(1 − t²)·g` of `dtype` (see
/// [`back_helper`]), by symbol name.
pub(crate) fn tanh_back_symbol(dtype: ferrax_ir::DType) -> Option<&'static str> {
    match dtype {
        ferrax_ir::DType::F64 => Some("ferrax_tanh_back_f64"),
        ferrax_ir::DType::F32 => Some("ferrax_tanh_back_f32"),
        ferrax_ir::DType::I32 | ferrax_ir::DType::Bool => None,
    }
}

/// The address of a helper of this module, for the JIT's symbol lookup.
pub(crate) fn symbol(name: &str) -> Option<*const u8> {
    match name {
        "ferrax_bias_tanh_f64" => Some(ferrax_bias_tanh_f64 as *const u8),
        "ferrax_bias_tanh_f32" => Some(ferrax_bias_tanh_f32 as *const u8),
        "ferrax_tanh_inplace_f64" => Some(ferrax_tanh_inplace_f64 as *const u8),
        "ferrax_tanh_inplace_f32" => Some(ferrax_tanh_inplace_f32 as *const u8),
        "ferrax_tanh_back_f64" => Some(ferrax_tanh_back_f64 as *const u8),
        "ferrax_tanh_back_f32" => Some(ferrax_tanh_back_f32 as *const u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every special value and both ends of the clamp and the reduction come out in the
    /// class and sign `tanh` has there, on every dispatch path.
    #[test]
    fn tanh_keeps_special_values() {
        let xs = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            20.0,
            -20.0,
            1e-300,
            0.5,
            -0.5,
        ];
        let mut v = xs.to_vec();
        tanh_slice_f64(&mut v);
        let mut w: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        tanh_slice_f32(&mut w);
        for ((&x, &y), &z) in xs.iter().zip(&v).zip(&w) {
            let want = x.tanh();
            assert_eq!(y.is_nan(), want.is_nan(), "tanh({x:e}) = {y:e}");
            assert_eq!(
                z.is_nan(),
                (x as f32).tanh().is_nan(),
                "f32 tanh({x:e}) = {z:e}"
            );
            if !want.is_nan() {
                assert_eq!(
                    y.to_bits() >> 63,
                    want.to_bits() >> 63,
                    "sign of tanh({x:e})"
                );
                assert!((y - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-300));
                let want32 = (x as f32).tanh();
                assert_eq!(z.is_sign_negative(), want32.is_sign_negative());
                assert!((z - want32).abs() <= 4.0 * f32::EPSILON * want32.abs());
            }
        }
    }

    /// The one-pass helper gives `tanh(x + b)` element by element, the same bits whether it
    /// reads a separate operand or writes over it, for any row width (one column, odd widths)
    /// and with special values; no rows or no columns write nothing.
    #[test]
    fn bias_helper_equals_the_elementwise_sum_and_tanh() {
        for (rows, cols) in [(200, 32), (7, 1), (3, 37), (2, 5)] {
            let xs: Vec<f64> = (0..rows * cols)
                .map(|i| match i % 17 {
                    3 => f64::NAN,
                    5 => f64::INFINITY,
                    7 => -0.0,
                    r => (r as f64 - 8.0) * 0.7,
                })
                .collect();
            let bias: Vec<f64> = (0..cols).map(|j| j as f64 * 0.3 - 1.0).collect();
            let want: Vec<u64> = xs
                .iter()
                .enumerate()
                .map(|(i, &x)| tanh_f64(x + bias[i % cols]).to_bits())
                .collect();
            let mut out = vec![0.0; rows * cols];
            // SAFETY: `xs` and `out` hold `rows·cols` elements, `bias` `cols`; distinct.
            unsafe {
                ferrax_bias_tanh_f64(xs.as_ptr(), bias.as_ptr(), out.as_mut_ptr(), rows, cols)
            };
            assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
            let mut inplace = xs.clone();
            let p = inplace.as_mut_ptr();
            // SAFETY: as above, the operand being the result.
            unsafe { ferrax_bias_tanh_f64(p, bias.as_ptr(), p, rows, cols) };
            assert_eq!(
                inplace.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want
            );
            let xf: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            let bf: Vec<f32> = bias.iter().map(|&x| x as f32).collect();
            let mut of = vec![0.0f32; rows * cols];
            // SAFETY: as above.
            unsafe { ferrax_bias_tanh_f32(xf.as_ptr(), bf.as_ptr(), of.as_mut_ptr(), rows, cols) };
            for (i, (&o, &x)) in of.iter().zip(&xf).enumerate() {
                assert_eq!(o.to_bits(), tanh_f32(x + bf[i % cols]).to_bits());
            }
        }
        let mut out = [1.5f64; 4];
        // SAFETY: nothing is addressed when there are no elements.
        unsafe { ferrax_bias_tanh_f64(out.as_ptr(), out.as_ptr(), out.as_mut_ptr(), 0, 4) };
        unsafe { ferrax_bias_tanh_f64(out.as_ptr(), out.as_ptr(), out.as_mut_ptr(), 4, 0) };
        assert_eq!(out, [1.5; 4]);
    }

    /// A long buffer (cut into blocks on the pool) gets the same bits as one element at a
    /// time.
    #[test]
    fn blocks_change_no_bit() {
        let n = PAR_MIN + 1234;
        let xs: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 1e-3).collect();
        let mut v = xs.clone();
        over_blocks(&mut v, tanh_slice_f64);
        for (&x, &y) in xs.iter().zip(&v) {
            assert_eq!(y.to_bits(), tanh_f64(x).to_bits(), "tanh({x:e})");
        }
    }
}
