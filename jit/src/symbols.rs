//! Runtime helpers that generated code calls through imported symbols: scalar math functions
//! (the same ones the interpreter uses, so results match bit for bit) and GEMM wrappers around
//! `matrixmultiply`. The JIT resolves every `ferrax_*` import through [`lookup`].

// TODO(lead): switch these wrappers to `UnaryOp::scalar_f64` / `scalar_f32` and
// `BinaryOp::scalar_f64` / `scalar_f32` once they exist, so the interpreter and the JIT share
// one definition per op.

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

fn erf64(x: f64) -> f64 {
    ferrax_ir::ops::unary::erf(x)
}

unary_helpers! {
    ferrax_round_f64: f64 => |x| x.round();
    ferrax_round_f32: f32 => |x| x.round();
    ferrax_exp_f64: f64 => |x| x.exp();
    ferrax_exp_f32: f32 => |x| x.exp();
    ferrax_exp2_f64: f64 => |x| x.exp2();
    ferrax_exp2_f32: f32 => |x| x.exp2();
    ferrax_expm1_f64: f64 => |x| x.exp_m1();
    ferrax_expm1_f32: f32 => |x| x.exp_m1();
    ferrax_log_f64: f64 => |x| x.ln();
    ferrax_log_f32: f32 => |x| x.ln();
    ferrax_log1p_f64: f64 => |x| x.ln_1p();
    ferrax_log1p_f32: f32 => |x| x.ln_1p();
    ferrax_sin_f64: f64 => |x| x.sin();
    ferrax_sin_f32: f32 => |x| x.sin();
    ferrax_cos_f64: f64 => |x| x.cos();
    ferrax_cos_f32: f32 => |x| x.cos();
    ferrax_tan_f64: f64 => |x| x.tan();
    ferrax_tan_f32: f32 => |x| x.tan();
    ferrax_asin_f64: f64 => |x| x.asin();
    ferrax_asin_f32: f32 => |x| x.asin();
    ferrax_acos_f64: f64 => |x| x.acos();
    ferrax_acos_f32: f32 => |x| x.acos();
    ferrax_atan_f64: f64 => |x| x.atan();
    ferrax_atan_f32: f32 => |x| x.atan();
    ferrax_sinh_f64: f64 => |x| x.sinh();
    ferrax_sinh_f32: f32 => |x| x.sinh();
    ferrax_cosh_f64: f64 => |x| x.cosh();
    ferrax_cosh_f32: f32 => |x| x.cosh();
    ferrax_tanh_f64: f64 => |x| x.tanh();
    ferrax_tanh_f32: f32 => |x| x.tanh();
    ferrax_asinh_f64: f64 => |x| x.asinh();
    ferrax_asinh_f32: f32 => |x| x.asinh();
    ferrax_acosh_f64: f64 => |x| x.acosh();
    ferrax_acosh_f32: f32 => |x| x.acosh();
    ferrax_atanh_f64: f64 => |x| x.atanh();
    ferrax_atanh_f32: f32 => |x| x.atanh();
    ferrax_logistic_f64: f64 => |x| if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { let e = x.exp(); e / (1.0 + e) };
    ferrax_logistic_f32: f32 => |x| if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { let e = x.exp(); e / (1.0 + e) };
    ferrax_erf_f64: f64 => |x| erf64(x);
    ferrax_erf_f32: f32 => |x| erf64(x as f64) as f32;
}

binary_helpers! {
    ferrax_pow_f64: f64 => |a, b| a.powf(b);
    ferrax_pow_f32: f32 => |a, b| a.powf(b);
    ferrax_atan2_f64: f64 => |a, b| a.atan2(b);
    ferrax_atan2_f32: f32 => |a, b| a.atan2(b);
    ferrax_rem_f64: f64 => |a, b| a % b;
    ferrax_rem_f32: f32 => |a, b| a % b;
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

/// The address of a `ferrax_*` helper symbol, for `JITBuilder::symbol_lookup_fn`.
pub(crate) fn lookup(name: &str) -> Option<*const u8> {
    match name {
        "ferrax_dgemm" => return Some(ferrax_dgemm as *const u8),
        "ferrax_sgemm" => return Some(ferrax_sgemm as *const u8),
        _ => {}
    }
    UNARY
        .iter()
        .chain(BINARY)
        .find(|(n, _)| *n == name)
        .map(|&(_, p)| p)
}
