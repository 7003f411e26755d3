//! Runtime helpers that generated code calls through imported symbols: scalar math functions
//! (the same ones the interpreter uses, so results match bit for bit) and GEMM wrappers around
//! `matrixmultiply`. The JIT resolves every `ferrax_*` import through [`lookup`].

// The wrappers call the interpreter's own per-element functions (`UnaryOp::scalar_f64` and
// friends), so the interpreter and the JIT share one definition per op and agree bit for bit.

macro_rules! unary_helpers {
    ($( $name:ident : $t:ty => |$x:ident| $body:expr ;)*) => {
        $(
            extern "C" fn $name($x: $t) -> $t {
                $body
            }
        )*
        /// Unary helper symbols and their addresses.
        const UNARY: &[(&str, *const u8)] = &[$((stringify!($name), $name as *const u8)),*];
    };
}

macro_rules! binary_helpers {
    ($( $name:ident : $t:ty => |$a:ident, $b:ident| $body:expr ;)*) => {
        $(
            extern "C" fn $name($a: $t, $b: $t) -> $t {
                $body
            }
        )*
        /// Binary helper symbols and their addresses.
        const BINARY: &[(&str, *const u8)] = &[$((stringify!($name), $name as *const u8)),*];
    };
}

use ferrax_ir::ops::{BinaryOp, UnaryOp};

unary_helpers! {
    ferrax_round_f64: f64 => |x| UnaryOp::Round.scalar_f64(x);
    ferrax_round_f32: f32 => |x| UnaryOp::Round.scalar_f32(x);
    ferrax_exp_f64: f64 => |x| UnaryOp::Exp.scalar_f64(x);
    ferrax_exp_f32: f32 => |x| UnaryOp::Exp.scalar_f32(x);
    ferrax_exp2_f64: f64 => |x| UnaryOp::Exp2.scalar_f64(x);
    ferrax_exp2_f32: f32 => |x| UnaryOp::Exp2.scalar_f32(x);
    ferrax_expm1_f64: f64 => |x| UnaryOp::Expm1.scalar_f64(x);
    ferrax_expm1_f32: f32 => |x| UnaryOp::Expm1.scalar_f32(x);
    ferrax_log_f64: f64 => |x| UnaryOp::Log.scalar_f64(x);
    ferrax_log_f32: f32 => |x| UnaryOp::Log.scalar_f32(x);
    ferrax_log1p_f64: f64 => |x| UnaryOp::Log1p.scalar_f64(x);
    ferrax_log1p_f32: f32 => |x| UnaryOp::Log1p.scalar_f32(x);
    ferrax_sin_f64: f64 => |x| UnaryOp::Sin.scalar_f64(x);
    ferrax_sin_f32: f32 => |x| UnaryOp::Sin.scalar_f32(x);
    ferrax_cos_f64: f64 => |x| UnaryOp::Cos.scalar_f64(x);
    ferrax_cos_f32: f32 => |x| UnaryOp::Cos.scalar_f32(x);
    ferrax_tan_f64: f64 => |x| UnaryOp::Tan.scalar_f64(x);
    ferrax_tan_f32: f32 => |x| UnaryOp::Tan.scalar_f32(x);
    ferrax_asin_f64: f64 => |x| UnaryOp::Asin.scalar_f64(x);
    ferrax_asin_f32: f32 => |x| UnaryOp::Asin.scalar_f32(x);
    ferrax_acos_f64: f64 => |x| UnaryOp::Acos.scalar_f64(x);
    ferrax_acos_f32: f32 => |x| UnaryOp::Acos.scalar_f32(x);
    ferrax_atan_f64: f64 => |x| UnaryOp::Atan.scalar_f64(x);
    ferrax_atan_f32: f32 => |x| UnaryOp::Atan.scalar_f32(x);
    ferrax_sinh_f64: f64 => |x| UnaryOp::Sinh.scalar_f64(x);
    ferrax_sinh_f32: f32 => |x| UnaryOp::Sinh.scalar_f32(x);
    ferrax_cosh_f64: f64 => |x| UnaryOp::Cosh.scalar_f64(x);
    ferrax_cosh_f32: f32 => |x| UnaryOp::Cosh.scalar_f32(x);
    ferrax_tanh_f64: f64 => |x| UnaryOp::Tanh.scalar_f64(x);
    ferrax_tanh_f32: f32 => |x| UnaryOp::Tanh.scalar_f32(x);
    ferrax_asinh_f64: f64 => |x| UnaryOp::Asinh.scalar_f64(x);
    ferrax_asinh_f32: f32 => |x| UnaryOp::Asinh.scalar_f32(x);
    ferrax_acosh_f64: f64 => |x| UnaryOp::Acosh.scalar_f64(x);
    ferrax_acosh_f32: f32 => |x| UnaryOp::Acosh.scalar_f32(x);
    ferrax_atanh_f64: f64 => |x| UnaryOp::Atanh.scalar_f64(x);
    ferrax_atanh_f32: f32 => |x| UnaryOp::Atanh.scalar_f32(x);
    ferrax_logistic_f64: f64 => |x| UnaryOp::Logistic.scalar_f64(x);
    ferrax_logistic_f32: f32 => |x| UnaryOp::Logistic.scalar_f32(x);
    ferrax_erf_f64: f64 => |x| UnaryOp::Erf.scalar_f64(x);
    ferrax_erf_f32: f32 => |x| UnaryOp::Erf.scalar_f32(x);
}

binary_helpers! {
    ferrax_pow_f64: f64 => |a, b| BinaryOp::Pow.scalar_f64(a, b);
    ferrax_pow_f32: f32 => |a, b| BinaryOp::Pow.scalar_f32(a, b);
    ferrax_atan2_f64: f64 => |a, b| BinaryOp::Atan2.scalar_f64(a, b);
    ferrax_atan2_f32: f32 => |a, b| BinaryOp::Atan2.scalar_f32(a, b);
    ferrax_rem_f64: f64 => |a, b| BinaryOp::Rem.scalar_f64(a, b);
    ferrax_rem_f32: f32 => |a, b| BinaryOp::Rem.scalar_f32(a, b);
}

/// `C = A·B` for strided f64 matrices (`m×k` times `k×n`), overwriting `C`.
///
/// # Safety
/// The generated code passes pointers and strides of buffers that hold every addressed element.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ferrax_dgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f64,
    rsa: isize,
    csa: isize,
    b: *const f64,
    rsb: isize,
    csb: isize,
    c: *mut f64,
    rsc: isize,
    csc: isize,
) {
    // SAFETY: the caller (generated code) guarantees the pointers and strides are in bounds.
    unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
}

/// `C = A·B` for strided f32 matrices; see [`ferrax_dgemm`].
///
/// # Safety
/// As for [`ferrax_dgemm`].
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ferrax_sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    // SAFETY: as above.
    unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
}

/// The alignment of a `taped_while` tape.
const TAPE_ALIGN: usize = 16;

/// Grows the tape of a reverse `taped_while` from `old` to `new` bytes (`new > old`), keeping
/// its contents; a null or empty tape is allocated afresh. Aborts the process when memory is
/// exhausted, as Rust's collections do.
///
/// # Safety
/// `ptr` and `old` must describe the tape returned by the previous call (or be null and 0).
unsafe extern "C" fn ferrax_tape_grow(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    use std::alloc::{alloc, handle_alloc_error, realloc, Layout};
    let Ok(layout) = Layout::from_size_align(new.max(1), TAPE_ALIGN) else {
        // A size beyond `isize::MAX` cannot be allocated.
        std::process::abort()
    };
    let p = if ptr.is_null() || old == 0 {
        // SAFETY: the layout has a non-zero size.
        unsafe { alloc(layout) }
    } else {
        // SAFETY: `ptr` was allocated with this alignment and size `old` (the caller's
        // contract), and the new size was validated by `Layout::from_size_align`.
        unsafe {
            realloc(
                ptr,
                Layout::from_size_align_unchecked(old, TAPE_ALIGN),
                layout.size(),
            )
        }
    };
    if p.is_null() {
        handle_alloc_error(layout)
    }
    p
}

/// Frees the tape of a reverse `taped_while` (nothing for a null or empty tape).
///
/// # Safety
/// `ptr` and `cap` must describe the tape returned by the last [`ferrax_tape_grow`].
unsafe extern "C" fn ferrax_tape_free(ptr: *mut u8, cap: usize) {
    if !ptr.is_null() && cap > 0 {
        // SAFETY: allocated by `ferrax_tape_grow` with this size and alignment.
        unsafe {
            std::alloc::dealloc(
                ptr,
                std::alloc::Layout::from_size_align_unchecked(cap, TAPE_ALIGN),
            )
        }
    }
}

/// The address of a `ferrax_*` helper symbol, for `JITBuilder::symbol_lookup_fn`.
pub(crate) fn lookup(name: &str) -> Option<*const u8> {
    match name {
        "ferrax_dgemm" => return Some(ferrax_dgemm as *const u8),
        "ferrax_sgemm" => return Some(ferrax_sgemm as *const u8),
        "ferrax_tape_grow" => return Some(ferrax_tape_grow as *const u8),
        "ferrax_tape_free" => return Some(ferrax_tape_free as *const u8),
        _ => {}
    }
    UNARY
        .iter()
        .chain(BINARY)
        .find(|(n, _)| *n == name)
        .map(|&(_, p)| p)
}
