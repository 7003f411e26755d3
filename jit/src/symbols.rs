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
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};

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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn sincos(x: f64, s: *mut f64, c: *mut f64);
    fn sincosf(x: f32, s: *mut f32, c: *mut f32);
    fn sin(x: f64) -> f64;
    fn cos(x: f64) -> f64;
    fn exp(x: f64) -> f64;
    fn log(x: f64) -> f64;
    fn pow(x: f64, y: f64) -> f64;
    fn tanh(x: f64) -> f64;
    fn sinf(x: f32) -> f32;
    fn cosf(x: f32) -> f32;
    fn expf(x: f32) -> f32;
    fn logf(x: f32) -> f32;
    fn tanhf(x: f32) -> f32;
}

/// glibc's f64 `exp`, `log` and `pow` entry points (symbol version GLIBC_2.29) are wrappers:
/// they call the computing function through the PLT and then test the result to set `errno`,
/// which ferrax never reads. The computing functions stay exported under their old names
/// (`__exp_finite` and friends, version GLIBC_2.15, kept for binary compatibility) and return
/// the same bits, so generated code calls them directly. `None` when this libc lacks them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_core(which: usize) -> Option<*const u8> {
    use std::ffi::{c_char, c_void};
    use std::sync::OnceLock;
    extern "C" {
        fn dlvsym(
            handle: *mut c_void,
            symbol: *const c_char,
            version: *const c_char,
        ) -> *mut c_void;
    }
    const NAMES: [&std::ffi::CStr; 3] = [c"__exp_finite", c"__log_finite", c"__pow_finite"];
    static CORE: OnceLock<[usize; 3]> = OnceLock::new();
    let addrs = CORE.get_or_init(|| {
        NAMES.map(|n| {
            // SAFETY: both strings are NUL-terminated; a null handle is RTLD_DEFAULT, the
            // global scope, which holds libm (std links it). glibc resolves IFUNC symbols to
            // the variant for this CPU, as it does for `exp` itself.
            unsafe { dlvsym(std::ptr::null_mut(), n.as_ptr(), c"GLIBC_2.15".as_ptr()) as usize }
        })
    });
    (addrs[which] != 0).then(|| addrs[which] as *const u8)
}

/// The libm function a `ferrax_*` helper forwards to, when the interpreter's scalar function
/// is exactly that libm call (Rust's `f64::sin` and friends lower to these symbols on glibc),
/// or when the helper is a plain forward with the same signature (`sincos`): generated code
/// then calls libm directly, skipping the wrapper's jump.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn libm_direct(name: &str) -> Option<*const u8> {
    Some(match name {
        "ferrax_sincos_f64" => sincos as *const u8,
        "ferrax_sincos_f32" => sincosf as *const u8,
        "ferrax_sin_f64" => sin as *const u8,
        "ferrax_cos_f64" => cos as *const u8,
        "ferrax_exp_f64" => glibc_core(0).unwrap_or(exp as *const u8),
        "ferrax_log_f64" => glibc_core(1).unwrap_or(log as *const u8),
        "ferrax_pow_f64" => glibc_core(2).unwrap_or(pow as *const u8),
        "ferrax_tanh_f64" => tanh as *const u8,
        "ferrax_sin_f32" => sinf as *const u8,
        "ferrax_cos_f32" => cosf as *const u8,
        "ferrax_exp_f32" => expf as *const u8,
        "ferrax_log_f32" => logf as *const u8,
        "ferrax_tanh_f32" => tanhf as *const u8,
        _ => return None,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn libm_direct(_: &str) -> Option<*const u8> {
    None
}

/// `sin x` and `cos x` in one call, bit-identical to the interpreter's separate `sin` and
/// `cos`: glibc's `sincos` shares its kernels with `sin` and `cos` (checked against them on
/// 30 million f64 inputs, every f32 for `sincosf`, and in `tests/primitives.rs`); elsewhere the
/// two functions are called separately.
///
/// # Safety
/// `s` and `c` must be valid for writes.
unsafe extern "C" fn ferrax_sincos_f64(x: f64, s: *mut f64, c: *mut f64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: the caller passes writable pointers.
    unsafe {
        sincos(x, s, c)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    // SAFETY: the caller passes writable pointers.
    unsafe {
        *s = UnaryOp::Sin.scalar_f64(x);
        *c = UnaryOp::Cos.scalar_f64(x);
    }
}

/// The f32 form of [`ferrax_sincos_f64`].
///
/// # Safety
/// `s` and `c` must be valid for writes.
unsafe extern "C" fn ferrax_sincos_f32(x: f32, s: *mut f32, c: *mut f32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: the caller passes writable pointers.
    unsafe {
        sincosf(x, s, c)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    // SAFETY: the caller passes writable pointers.
    unsafe {
        *s = UnaryOp::Sin.scalar_f32(x);
        *c = UnaryOp::Cos.scalar_f32(x);
    }
}

/// `C = A·B` for strided f64 matrices (`m×k` times `k×n`), overwriting `C`: skinny small
/// products in `crate::small_gemm`, the others with `matrixmultiply`.
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
    // SAFETY: the caller's contract (as below).
    if unsafe { crate::small_gemm::dgemm(m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc) } {
        return;
    }
    let (a, b, c) = (a as usize, b as usize, c as usize);
    gemm_parts(m, k, n, |r0, rows, c0, cols| {
        let a = (a as *const f64).wrapping_offset(r0 as isize * rsa);
        let b = (b as *const f64).wrapping_offset(c0 as isize * csb);
        let c = (c as *mut f64).wrapping_offset(r0 as isize * rsc + c0 as isize * csc);
        // SAFETY: the caller (generated code) guarantees the pointers and strides are in
        // bounds; the blocks of `C` are disjoint.
        unsafe {
            matrixmultiply::dgemm(
                rows, k, cols, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc,
            )
        }
    })
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
    // SAFETY: the caller's contract (as below).
    if unsafe { crate::small_gemm::sgemm(m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc) } {
        return;
    }
    let (a, b, c) = (a as usize, b as usize, c as usize);
    gemm_parts(m, k, n, |r0, rows, c0, cols| {
        let a = (a as *const f32).wrapping_offset(r0 as isize * rsa);
        let b = (b as *const f32).wrapping_offset(c0 as isize * csb);
        let c = (c as *mut f32).wrapping_offset(r0 as isize * rsc + c0 as isize * csc);
        // SAFETY: as in `ferrax_dgemm`.
        unsafe {
            matrixmultiply::sgemm(
                rows, k, cols, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc,
            )
        }
    })
}

/// The number of threads of the rayon pool (at least 1). Creating the global pool on first
/// use panics when its threads cannot be spawned; this runs inside `extern "C"` helpers,
/// where a panic would abort the process, so that case counts as one thread and the work
/// runs on the calling thread.
pub(crate) fn pool_threads() -> usize {
    std::panic::catch_unwind(rayon::current_num_threads)
        .unwrap_or(1)
        .max(1)
}

/// A fused-loop kernel: runs indices `start..end` of its outermost dimension.
type Kernel = unsafe extern "C" fn(*const u8, i64, i64);

/// Runs `kernel(ctx, ·, ·)` over `0..n` split across the calling thread and the rayon pool's
/// threads, with split points at multiples of `align`. The range is cut into four parts per
/// thread, claimed from a shared counter, so a core that runs slower (a busy neighbour on a
/// shared machine) takes fewer of them: with one part per thread the faster core would wait
/// for the slower one.
/// Kernels only split along dimensions whose results are disjoint, so the cut changes no
/// result bit.
///
/// # Safety
/// `kernel` must be a kernel compiled for `ctx`, safe to run on disjoint ranges concurrently
/// (fused loops write disjoint output elements).
unsafe extern "C" fn ferrax_parallel_for(kernel: *const u8, ctx: *const u8, n: i64, align: i64) {
    // SAFETY: the generated code passes the address of a kernel with this signature.
    let k: Kernel = unsafe { std::mem::transmute::<*const u8, Kernel>(kernel) };
    let ctx = ctx as usize;
    let threads = pool_threads() as i64;
    let parts = threads * 4;
    let align = align.max(1);
    // Rounded down, so that a range of a few rows more than the parts (ten rows on eight
    // parts) is cut into single rows, which the threads share evenly, rather than into pairs
    // (five pairs: three for one thread, two for the other).
    let chunk = ((n / parts).max(1) + align - 1) / align * align;
    let run = |lo: i64, hi: i64| {
        if lo < hi {
            // SAFETY: disjoint ranges of one kernel (the caller's contract).
            unsafe { k(ctx as *const u8, lo, hi) }
        }
    };
    if threads <= 1 || chunk >= n {
        run(0, n);
        return;
    }
    // The caller starts on the parts at once and the pool's threads join as they wake (see
    // `crate::share`): a scope would hand the loop to the pool and put the caller to sleep.
    let next = AtomicI64::new(0);
    let work = || loop {
        let lo = next.fetch_add(chunk, Ordering::Relaxed);
        if lo >= n {
            break;
        }
        run(lo, (lo + chunk).min(n));
    };
    crate::share::share_work(threads as usize - 1, &work);
}

/// GEMMs with at least this many multiply-adds are split across threads.
const GEMM_PAR_MIN: usize = 1 << 21;

/// Each pool thread's measured GEMM rate (multiply-adds per nanosecond, as `f32` bits; 0 until
/// first measured), indexed by rayon thread index. Threads beyond the table, and threads not
/// yet measured, count at the mean of the measured ones.
static GEMM_RATE: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

/// Runs `f(row0, rows, col0, cols)` over the `m×n` result of a GEMM, split across threads
/// when the product is large (each part an independent GEMM on a block of `C`).
///
/// Every part packs the whole of one operand again (`matrixmultiply` packs `A` in row panels
/// and `B` in column panels): a split by rows repacks `B` (`k×n`) in every part, a split by
/// columns repacks `A` (`m×k`). So the product is split along the result dimension of the
/// larger operand, rows when `m ≥ n` and columns otherwise: a batch of 128 times a 784×256
/// layer is cut into column blocks, each thread packing only its half of the weights.
///
/// The blocks are shared in proportion to each thread's measured rate: on a shared machine
/// one core can run GEMMs at half the speed of the other for minutes, and an even split then
/// waits for the slow half. Each part is one job; the thread that runs it claims a block sized
/// by its own rate from a shared cursor (the last job takes what remains), times the GEMM and
/// updates its rate. An element's result does not depend on the split, so neither do the output
/// bits.
fn gemm_parts(m: usize, k: usize, n: usize, f: impl Fn(usize, usize, usize, usize) + Sync) {
    let parts = pool_threads();
    // Saturating: this runs inside an `extern "C"` helper, where an overflow panic would
    // abort the process.
    let work = m.saturating_mul(k).saturating_mul(n);
    // Rows are claimed in multiples of 8, columns of 16 (the kernels' panel widths).
    let rows = m >= n;
    let (len, unit) = if rows { (m, 8) } else { (n, 16) };
    if parts <= 1 || work < GEMM_PAR_MIN || len < 2 * parts {
        f(0, m, 0, n);
        return;
    }
    let measured = |i: Option<usize>| -> Option<f32> {
        let r = f32::from_bits(GEMM_RATE.get(i?)?.load(Ordering::Relaxed));
        (r > 0.0).then_some(r)
    };
    let (sum, count) = (0..parts)
        .filter_map(|i| measured(Some(i)))
        .fold((0.0f32, 0u32), |(s, c), r| (s + r, c + 1));
    let mean = if count == 0 { 1.0 } else { sum / count as f32 };
    let rate = |i: Option<usize>| measured(i).unwrap_or(mean);
    // The pool's total rate; a thread's share is its rate over this.
    let total: f32 = (0..parts).map(|i| rate(Some(i))).sum();
    let cursor = AtomicUsize::new(0);
    let claimed = AtomicUsize::new(0);
    let job = || {
        let me = rayon::current_thread_index();
        // At least a quarter of an even share, so a slow thread keeps being measured.
        let share = (rate(me) / total).max(0.25 / parts as f32);
        let want = ((len as f32 * share) as usize).div_ceil(unit) * unit;
        let last = claimed.fetch_add(1, Ordering::AcqRel) + 1 == parts;
        let (lo, hi) = claim_rows(&cursor, len, want, last);
        if lo >= hi {
            return;
        }
        let t = std::time::Instant::now();
        if rows {
            f(lo, hi - lo, 0, n);
        } else {
            f(0, m, lo, hi - lo);
        }
        let ns = t.elapsed().as_nanos().max(1) as f32;
        if let Some(slot) = me.and_then(|i| GEMM_RATE.get(i)) {
            let now = (hi - lo) as f32 * (work / len) as f32 / ns;
            let old = f32::from_bits(slot.load(Ordering::Relaxed));
            let new = if old > 0.0 { 0.5 * (old + now) } else { now };
            slot.store(new.to_bits(), Ordering::Relaxed);
        }
    };
    // Parts compute in the caller's floating-point mode (`crate::fp_env`).
    let fp = crate::fp_env::FpControl::current();
    rayon::scope(|s| {
        let job = &job;
        for _ in 1..parts {
            s.spawn(move |_| fp.run(job));
        }
        // Called from outside the pool, the scope's own body runs on a pool thread too.
        fp.run(job);
    });
}

/// Claims the next `want` of `m` rows from `cursor` (all the remaining ones when `last`), as
/// a half-open range; empty once the rows are used up.
fn claim_rows(cursor: &AtomicUsize, m: usize, want: usize, last: bool) -> (usize, usize) {
    let lo = if last {
        cursor.swap(m, Ordering::AcqRel)
    } else {
        cursor.fetch_add(want, Ordering::AcqRel)
    };
    let lo = lo.min(m);
    let hi = if last { m } else { (lo + want).min(m) };
    (lo, hi)
}

/// The alignment of a `taped_while` tape.
const TAPE_ALIGN: usize = 16;

std::thread_local! {
    /// The size of the last tape allocation that failed on this thread, for the error
    /// message of [`crate::compiled::Status::TapeAlloc`].
    static TAPE_FAILURE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The size in bytes of the last tape allocation that failed on this thread (0 if none).
pub(crate) fn tape_failure() -> usize {
    TAPE_FAILURE.try_with(|c| c.get()).unwrap_or(0)
}

/// Grows the tape of a reverse `taped_while` from `old` to `new` bytes (`new > old`), keeping
/// its contents; a null or empty tape is allocated afresh. Returns null when the memory cannot
/// be had, leaving the old tape allocated (the generated code then frees it and returns
/// [`crate::compiled::Status::TapeAlloc`]); it never aborts or unwinds.
///
/// # Safety
/// `ptr` and `old` must describe the tape returned by the previous call (or be null and 0).
unsafe extern "C" fn ferrax_tape_grow(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    use std::alloc::{alloc, realloc, Layout};
    let failed = || {
        // `try_with`: during thread teardown the slot may be gone, and `with` would panic.
        let _ = TAPE_FAILURE.try_with(|c| c.set(new));
        std::ptr::null_mut()
    };
    let Ok(layout) = Layout::from_size_align(new.max(1), TAPE_ALIGN) else {
        // A size beyond `isize::MAX` cannot be allocated (generated code never asks for one).
        return failed();
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
        return failed();
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

/// The C library function an exported object calls for the helper `name`: the one the
/// interpreter's scalar function is (Rust's `f64::sin` and friends call these very symbols on
/// Linux with glibc, `%` on floats calls `fmod`), so the object's results equal the
/// interpreter's bit for bit and it needs nothing but `-lm` at link time. The helpers with no
/// such equivalent are emitted into the object by `crate::lower::portable` before this is
/// asked; of the others, GEMM and the thread pool are never called by exported code (the
/// exporter compiles matrix products as loops and runs loops on the calling thread), so the
/// `Err` naming the helper and the op that needs it guards against a lowering change only.
pub(crate) fn object_symbol(name: &str) -> ferrax_ir::Result<&str> {
    Ok(match name {
        "ferrax_round_f64" => "round",
        "ferrax_round_f32" => "roundf",
        "ferrax_exp_f64" => "exp",
        "ferrax_exp_f32" => "expf",
        "ferrax_exp2_f64" => "exp2",
        "ferrax_exp2_f32" => "exp2f",
        "ferrax_expm1_f64" => "expm1",
        "ferrax_expm1_f32" => "expm1f",
        "ferrax_log_f64" => "log",
        "ferrax_log_f32" => "logf",
        "ferrax_log1p_f64" => "log1p",
        "ferrax_log1p_f32" => "log1pf",
        "ferrax_sin_f64" => "sin",
        "ferrax_sin_f32" => "sinf",
        "ferrax_cos_f64" => "cos",
        "ferrax_cos_f32" => "cosf",
        "ferrax_sincos_f64" => "sincos",
        "ferrax_sincos_f32" => "sincosf",
        "ferrax_tan_f64" => "tan",
        "ferrax_tan_f32" => "tanf",
        "ferrax_asin_f64" => "asin",
        "ferrax_asin_f32" => "asinf",
        "ferrax_acos_f64" => "acos",
        "ferrax_acos_f32" => "acosf",
        "ferrax_atan_f64" => "atan",
        "ferrax_atan_f32" => "atanf",
        "ferrax_sinh_f64" => "sinh",
        "ferrax_sinh_f32" => "sinhf",
        "ferrax_cosh_f64" => "cosh",
        "ferrax_cosh_f32" => "coshf",
        "ferrax_tanh_f64" => "tanh",
        "ferrax_tanh_f32" => "tanhf",
        "ferrax_pow_f64" => "pow",
        "ferrax_pow_f32" => "powf",
        "ferrax_atan2_f64" => "atan2",
        "ferrax_atan2_f32" => "atan2f",
        "ferrax_rem_f64" => "fmod",
        "ferrax_rem_f32" => "fmodf",
        // A C library function called by its own name.
        libc if !libc.starts_with("ferrax_") => libc,
        helper => {
            let what = match helper {
                "ferrax_dgemm" | "ferrax_sgemm" => "a GEMM-sized dot_general",
                "ferrax_parallel_for" => "a multi-threaded loop",
                _ => "an op",
            };
            return Err(ferrax_ir::Error::new(
                ferrax_ir::ErrorKind::Jit,
                format!(
                    "aot export: {what} calls the runtime helper `{helper}`, which ferrax \
                     implements in Rust and an exported object cannot call"
                ),
            ));
        }
    })
}

/// The address of a `ferrax_*` helper symbol, for `JITBuilder::symbol_lookup_fn`.
pub(crate) fn lookup(name: &str) -> Option<*const u8> {
    match name {
        "ferrax_dgemm" => return Some(ferrax_dgemm as *const u8),
        "ferrax_sgemm" => return Some(ferrax_sgemm as *const u8),
        "ferrax_tape_grow" => return Some(ferrax_tape_grow as *const u8),
        "ferrax_tape_free" => return Some(ferrax_tape_free as *const u8),
        "ferrax_parallel_for" => return Some(ferrax_parallel_for as *const u8),
        "ferrax_conv_f32" => return Some(crate::conv_kernel::ferrax_conv_f32 as *const u8),
        "ferrax_conv_f64" => return Some(crate::conv_kernel::ferrax_conv_f64 as *const u8),
        _ => {}
    }
    if let Some(p) = libm_direct(name) {
        return Some(p);
    }
    if let Some(p) = crate::lower::window::symbol(name) {
        return Some(p);
    }
    if let Some(p) = crate::wide_math::symbol(name) {
        return Some(p);
    }
    if let Some(p) = crate::fp_env::symbol(name) {
        return Some(p);
    }
    match name {
        "ferrax_sincos_f64" => return Some(ferrax_sincos_f64 as *const u8),
        "ferrax_sincos_f32" => return Some(ferrax_sincos_f32 as *const u8),
        _ => {}
    }
    UNARY
        .iter()
        .chain(BINARY)
        .find(|(n, _)| *n == name)
        .map(|&(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs for the direct-call checks: a pseudo-random sweep over many binades plus the
    /// values where glibc's wrappers would set `errno` (overflow, underflow, poles, domain).
    fn inputs() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            709.78,
            709.79,
            -745.2,
            -745.1,
            1e-310,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let mantissa = (s >> 12) as f64 / (1u64 << 52) as f64;
            let exponent = ((s >> 4) % 80) as i32 - 40;
            let sign = if s & 1 == 0 { 1.0 } else { -1.0 };
            v.push(sign * (1.0 + mantissa) * 2f64.powi(exponent));
        }
        v
    }

    /// The address generated code calls for the helper `name`.
    fn resolved(name: &str) -> *const u8 {
        lookup(name).unwrap_or_else(|| panic!("{name} is not resolved"))
    }

    #[test]
    fn direct_exp_log_pow_equal_the_interpreter_bit_for_bit() {
        // SAFETY: each symbol has the signature of the helper it stands for.
        let exp: extern "C" fn(f64) -> f64 =
            unsafe { std::mem::transmute(resolved("ferrax_exp_f64")) };
        let log: extern "C" fn(f64) -> f64 =
            unsafe { std::mem::transmute(resolved("ferrax_log_f64")) };
        let pow: extern "C" fn(f64, f64) -> f64 =
            unsafe { std::mem::transmute(resolved("ferrax_pow_f64")) };
        let xs = inputs();
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for (i, &x) in xs.iter().enumerate() {
            let want = UnaryOp::Exp.scalar_f64(x);
            assert!(
                same(exp(x), want),
                "exp({x:e}) = {:e}, want {want:e}",
                exp(x)
            );
            let want = UnaryOp::Log.scalar_f64(x);
            assert!(
                same(log(x), want),
                "log({x:e}) = {:e}, want {want:e}",
                log(x)
            );
            let y = xs[(i * 7919 + 13) % xs.len()] / 16.0;
            let want = BinaryOp::Pow.scalar_f64(x, y);
            assert!(
                same(pow(x, y), want),
                "pow({x:e}, {y:e}) = {:e}, want {want:e}",
                pow(x, y)
            );
        }
    }

    #[test]
    fn claimed_rows_tile_the_matrix() {
        // Wants that fall short (rounding), overshoot, or are zero: the claims still tile
        // 0..m exactly, the last taking the remainder.
        for (m, wants) in [
            (17, &[8, 8][..]),
            (17, &[24, 8]),
            (131, &[72, 72]),
            (100, &[0, 0, 0]),
            (100, &[40, 8, 8, 8]),
        ] {
            let cursor = AtomicUsize::new(0);
            let mut next = 0;
            for (i, &w) in wants.iter().enumerate() {
                let (lo, hi) = claim_rows(&cursor, m, w, i + 1 == wants.len());
                if lo < hi {
                    assert_eq!(
                        lo, next,
                        "m = {m}, wants {wants:?}: claim {i} starts at {lo}"
                    );
                    next = hi;
                }
            }
            assert_eq!(next, m, "m = {m}, wants {wants:?}: rows {next}.. unclaimed");
        }
    }

    #[test]
    fn gemm_parts_cover_every_row_or_column_once_whatever_the_rates() {
        use std::sync::Mutex;
        let threads = rayon::current_num_threads();
        // Skewed, equal and unmeasured rates; the runs themselves update them too.
        let states: [&[f32]; 5] = [
            &[1000.0, 0.001],
            &[0.001, 1000.0],
            &[1.0, 1.0],
            &[0.0, 0.0],
            &[50.0, 0.0],
        ];
        for rates in states {
            set_rates(rates);
            for m in [2 * threads, 17, 131, 256, 1000] {
                let (k, n) = (GEMM_PAR_MIN / m + 1, 1);
                let seen = Mutex::new(vec![0u32; m]);
                gemm_parts(m, k, n, |r0, rows, c0, cols| {
                    assert!(rows > 0 && r0 + rows <= m, "rows {r0}+{rows} of {m}");
                    assert_eq!((c0, cols), (0, n));
                    let mut seen = seen.lock().unwrap();
                    for r in &mut seen[r0..r0 + rows] {
                        *r += 1;
                    }
                });
                let seen = seen.into_inner().unwrap();
                assert!(
                    seen.iter().all(|&c| c == 1),
                    "m = {m}, rates {rates:?}: {seen:?}"
                );
                // The same number of columns of a product with fewer rows: split by columns.
                let (m2, n2) = ((m / 4).max(1), m);
                let k2 = GEMM_PAR_MIN / (m2 * n2) + 1;
                let seen = Mutex::new(vec![0u32; n2]);
                gemm_parts(m2, k2, n2, |r0, rows, c0, cols| {
                    assert_eq!((r0, rows), (0, m2));
                    assert!(cols > 0 && c0 + cols <= n2, "cols {c0}+{cols} of {n2}");
                    let mut seen = seen.lock().unwrap();
                    for c in &mut seen[c0..c0 + cols] {
                        *c += 1;
                    }
                });
                let seen = seen.into_inner().unwrap();
                assert!(
                    seen.iter().all(|&c| c == 1),
                    "n = {n2}, rates {rates:?}: {seen:?}"
                );
            }
        }
    }

    /// Sets the rate slots of the pool's threads, in order, to `rates`.
    fn set_rates(rates: &[f32]) {
        for (slot, &r) in GEMM_RATE.iter().zip(rates) {
            slot.store(r.to_bits(), Ordering::Relaxed);
        }
    }

    /// Split products above `GEMM_PAR_MIN` equal one unsplit `matrixmultiply` call bit for bit,
    /// whatever the rates make of the split: by rows and by columns, with row- and
    /// column-major operands, in f32 and f64.
    #[test]
    fn split_gemms_equal_the_unsplit_product_bit_for_bit() {
        let states: [&[f32]; 5] = [
            &[1.0, 1.0],
            &[1000.0, 0.001],
            &[0.001, 1000.0],
            &[0.0, 0.0],
            &[50.0, 0.0],
        ];
        // (m, k, n, B column-major): a row split with a row count that is no multiple of 8,
        // column splits with a column count that is no multiple of 16.
        let shapes = [
            (131, 150, 120, false),
            (60, 150, 301, false),
            (60, 150, 301, true),
            (300, 70, 140, true),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
        };
        for rates in states {
            for &(m, k, n, b_cols) in &shapes {
                assert!(m * k * n >= GEMM_PAR_MIN);
                let a: Vec<f64> = (0..m * k).map(|_| next()).collect();
                let b: Vec<f64> = (0..k * n).map(|_| next()).collect();
                let (rsb, csb) = if b_cols {
                    (1, k as isize)
                } else {
                    (n as isize, 1)
                };
                let (a32, b32): (Vec<f32>, Vec<f32>) = (
                    a.iter().map(|&v| v as f32).collect(),
                    b.iter().map(|&v| v as f32).collect(),
                );
                let (mut c, mut want) = (vec![0.0f64; m * n], vec![0.0f64; m * n]);
                let (mut c32, mut want32) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
                let (ka, nc) = (k as isize, n as isize);
                set_rates(rates);
                // SAFETY: every buffer holds the elements its strides address.
                unsafe {
                    ferrax_dgemm(
                        m,
                        k,
                        n,
                        a.as_ptr(),
                        ka,
                        1,
                        b.as_ptr(),
                        rsb,
                        csb,
                        c.as_mut_ptr(),
                        nc,
                        1,
                    );
                    matrixmultiply::dgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        ka,
                        1,
                        b.as_ptr(),
                        rsb,
                        csb,
                        0.0,
                        want.as_mut_ptr(),
                        nc,
                        1,
                    );
                }
                set_rates(rates);
                // SAFETY: as above.
                unsafe {
                    ferrax_sgemm(
                        m,
                        k,
                        n,
                        a32.as_ptr(),
                        ka,
                        1,
                        b32.as_ptr(),
                        rsb,
                        csb,
                        c32.as_mut_ptr(),
                        nc,
                        1,
                    );
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a32.as_ptr(),
                        ka,
                        1,
                        b32.as_ptr(),
                        rsb,
                        csb,
                        0.0,
                        want32.as_mut_ptr(),
                        nc,
                        1,
                    );
                }
                let same = c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                let same32 = c32
                    .iter()
                    .zip(&want32)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "f64 {m}×{k}×{n}, rates {rates:?}");
                assert!(same32, "f32 {m}×{k}×{n}, rates {rates:?}");
            }
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_computing_functions_are_found() {
        // This machine's glibc exports them; if a future one did not, the wrappers would be
        // called instead and the test above would still hold.
        for which in 0..3 {
            assert!(glibc_core(which).is_some(), "core function {which} missing");
        }
        assert_ne!(resolved("ferrax_exp_f64"), exp as *const u8);
    }
}
