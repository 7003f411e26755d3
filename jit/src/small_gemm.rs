//! Skinny matrix products computed without `matrixmultiply`: products of at most
//! [`SMALL_WORK`] multiply-adds whose result rows (or, transposed, columns) are at least
//! [`MIN_WIDTH`] long, such as a small network's `x·W1` with two inputs or its weight gradients
//! with two classes. For them `matrixmultiply` spends most of its time packing both operands
//! and running masked edge tiles; here each result row is one AXPY per contracted index,
//! `C[i, :] += A[i, p] · B[p, :]`, accumulated in registers for blocks of four 256-bit FMA
//! vectors (the compiler vectorises the loops under `avx2` and `fma`, detected at run time;
//! without them the products keep the GEMM). As with the GEMM, the summation order (and the
//! fused rounding) differs from the interpreter's loop.
//!
//! A product qualifies directly when its rows are wide (`n ≥ MIN_WIDTH`), with `B` copied
//! row-major first when its rows are strided; or transposed (`Cᵀ = Bᵀ·Aᵀ`, written to a small
//! buffer and copied into `C`) when its columns are long and `A`'s columns contiguous; or,
//! when its results are narrow but the contraction is long (`k ≥ MIN_WIDTH`, such as a hidden
//! layer of 32 times a 32×2 output layer) and `A`'s rows are contiguous, as one dot product per
//! result element over `A`'s row and a contiguous copy of `B`'s column.
//!
//! The kernels are compiled twice, for AVX2 and for AVX-512 (chosen at run time). Their
//! operations are defined element by element (`mul_add` is one fused rounding whatever the
//! width), so both give the same bits; with AVX-512's 32 registers the rows' kernel also runs
//! two result rows side by side, sharing each load of `B`. The f64 dot products have a third
//! form for AVX-512, written with intrinsics ([`dgemm_dots_avx512`]): the same operations per
//! lane, with the final folds of eight results done together in registers.

/// An element type with a per-thread scratch buffer for the operand copies below.
trait Scratch: Copy + Default + 'static {
    /// The calling thread's buffer (taken out while in use).
    fn key() -> &'static std::thread::LocalKey<std::cell::Cell<Vec<Self>>>;
}

macro_rules! scratch {
    ($($t:ty => $key:ident),*) => {$(
        thread_local! {
            static $key: std::cell::Cell<Vec<$t>> = const { std::cell::Cell::new(Vec::new()) };
        }
        impl Scratch for $t {
            fn key() -> &'static std::thread::LocalKey<std::cell::Cell<Vec<$t>>> {
                &$key
            }
        }
    )*};
}
scratch!(f32 => SCRATCH_F32, f64 => SCRATCH_F64);

/// Runs `f` on `len` elements of the calling thread's scratch buffer, kept between calls
/// so that a product's copy of an operand (made on every call of a train step) neither
/// allocates nor zero-fills in the steady state; the elements hold earlier values, which `f`
/// overwrites before reading. The buffer is taken out while `f` runs (a nested call gets a
/// buffer of its own) and is at most `SMALL_WORK` elements long. False, with nothing run,
/// when the buffer cannot grow.
fn with_scratch<T: Scratch>(len: usize, f: impl FnOnce(&mut [T])) -> bool {
    let mut buf = T::key().try_with(std::cell::Cell::take).unwrap_or_default();
    if buf.len() < len {
        if buf.try_reserve_exact(len - buf.len()).is_err() {
            return false;
        }
        buf.resize(len, T::default());
    }
    f(&mut buf[..len]);
    // A thread being torn down keeps no buffer.
    let _ = T::key().try_with(|c| c.set(buf));
    true
}

/// Products with more multiply-adds than this go to the GEMM (whose packing then pays).
const SMALL_WORK: usize = 1 << 16;

/// The longest contraction whose rows of `B` the rows' kernel holds in registers.
const SHORT_K: usize = 4;

/// The shortest result row (or column, transposed) an AXPY runs along.
const MIN_WIDTH: usize = 8;

/// Whether the kernels run compiled for AVX-512 (F and VL): 32 vector registers of twice the
/// width, so a result row of 32 f64 is four accumulators instead of eight, and the rows' loop
/// keeps more of `B` in registers.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// A dot-product kernel with the arguments of the `$dots_body` functions of [`small_gemm`].
#[cfg(target_arch = "x86_64")]
type DotsKernel<T> = unsafe fn(usize, usize, usize, *const T, isize, &[T], *mut T, isize);

/// Adds the two halves of each of `x` and `y` (lanes `l` and `l + 4`): lanes `0..4` of the
/// result hold `x`'s sums, lanes `4..8` `y`'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_halves(
    x: std::arch::x86_64::__m512d,
    y: std::arch::x86_64::__m512d,
) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let lo = _mm512_shuffle_f64x2::<0b01_00_01_00>(x, y);
    let hi = _mm512_shuffle_f64x2::<0b11_10_11_10>(x, y);
    _mm512_add_pd(lo, hi)
}

/// Adds the two quarters of each half of `x` and `y` (pairs of lanes `2q, 2q + 1` and
/// `2q + 2, 2q + 3` within a half): lanes `0..2` of the result hold the sums of `x`'s first
/// half, `2..4` of `x`'s second, `4..6` and `6..8` those of `y`'s halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_quarters(
    x: std::arch::x86_64::__m512d,
    y: std::arch::x86_64::__m512d,
) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let lo = _mm512_shuffle_f64x2::<0b10_00_10_00>(x, y);
    let hi = _mm512_shuffle_f64x2::<0b11_01_11_01>(x, y);
    _mm512_add_pd(lo, hi)
}

/// `dgemm_dots_body` compiled for AVX-512 with intrinsics, giving its bits: each result's
/// sixteen lanes accumulate `A[i, p]·Bt[j, p]` for `p ≡ lane (mod 16)` with fused
/// multiply-adds in order of `p` (as two vectors of eight lanes), fold pairwise (halves,
/// quarters, ...) and then take the tail of the contraction in order. The compiler
/// vectorised the generic body's folds into a chain of shuffles per result; here eight
/// results fold together, each addition combining the same two partial sums as the generic
/// body (the lane pairs of eight results share the shuffles), so about a seventh of the
/// shuffles and additions remain per result.
///
/// # Safety
/// The contract of `dgemm_dots_body`, and a CPU with AVX-512 F and VL and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dgemm_dots_avx512(
    m: usize,
    k: usize,
    n: usize,
    a: *const f64,
    rsa: isize,
    bt: &[f64],
    c: *mut f64,
    rsc: isize,
) {
    use std::arch::x86_64::*;
    // The caller bounds `m·n·k`, so the count of results cannot overflow.
    let Some(total) = m.checked_mul(n) else {
        return;
    };
    // Narrow results (a row's `n` results a divisor of eight) go by whole rows first.
    // SAFETY: the contract, passed on.
    let rows = unsafe {
        match n {
            1 => dots_by_rows::<1>(m, k, a, rsa, bt, c, rsc),
            2 => dots_by_rows::<2>(m, k, a, rsa, bt, c, rsc),
            4 => dots_by_rows::<4>(m, k, a, rsa, bt, c, rsc),
            8 => dots_by_rows::<8>(m, k, a, rsa, bt, c, rsc),
            _ => 0,
        }
    };
    let full = k - k % 16;
    let mut first = rows * n;
    // The row and column of result `first`, advanced without dividing.
    let (mut i0, mut j0) = (rows, 0);
    while first < total {
        let count = (total - first).min(8);
        // Result `first + q` is `C[i, j]` with `i = (first + q) / n`, `j = (first + q) % n`.
        let mut ij = [(0, 0); 8];
        for slot in ij.iter_mut().take(count) {
            *slot = (i0, j0);
            j0 += 1;
            if j0 == n {
                (i0, j0) = (i0 + 1, 0);
            }
        }
        let mut sums = [_mm512_setzero_pd(); 8];
        for (q, sum) in sums.iter_mut().enumerate().take(count) {
            let (i, j) = ij[q];
            // SAFETY: row `i` of `A` and row `j` of `Bt` hold `k` elements (the contract).
            let (row, col) = unsafe { (a.offset(i as isize * rsa), bt.as_ptr().add(j * k)) };
            let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
            for p in (0..full).step_by(16) {
                // SAFETY: `p + 16 ≤ k`, within both rows.
                unsafe {
                    let (x, y) = (row.add(p), col.add(p));
                    lo = _mm512_fmadd_pd(_mm512_loadu_pd(x), _mm512_loadu_pd(y), lo);
                    hi = _mm512_fmadd_pd(_mm512_loadu_pd(x.add(8)), _mm512_loadu_pd(y.add(8)), hi);
                }
            }
            // The first fold, `acc[l] += acc[l + 8]`.
            *sum = _mm512_add_pd(lo, hi);
        }
        // SAFETY: the contract, passed on.
        unsafe { fold_and_store(sums, &ij[..count], k, a, rsa, bt, c, rsc) };
        first += count;
    }
}

/// [`dgemm_dots_avx512`] for the rows of `A` taken `8 / N` at a time when each row has `N`
/// results (`N` divides eight): each sixteen elements of a row are loaded once for its `N`
/// results, and `Bt`'s rows are read from the first-level cache. Every result gets the same
/// operations as in the general loop (its two accumulators, the folds, the tail), so the bits
/// are the same. Returns the number of rows done (the rest are left to the caller).
///
/// # Safety
/// As for [`dgemm_dots_avx512`] with `n = N`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_by_rows<const N: usize>(
    m: usize,
    k: usize,
    a: *const f64,
    rsa: isize,
    bt: &[f64],
    c: *mut f64,
    rsc: isize,
) -> usize {
    use std::arch::x86_64::*;
    let per = 8 / N;
    let full = k - k % 16;
    let mut i0 = 0;
    while i0 + per <= m {
        let mut sums = [_mm512_setzero_pd(); 8];
        let mut ij = [(0, 0); 8];
        for r in 0..per {
            let i = i0 + r;
            // SAFETY: row `i < m` of `A` holds `k` elements (the contract).
            let row = unsafe { a.offset(i as isize * rsa) };
            let mut lo = [_mm512_setzero_pd(); N];
            let mut hi = [_mm512_setzero_pd(); N];
            for p in (0..full).step_by(16) {
                // SAFETY: `p + 16 ≤ k`, within row `i` of `A` and each row `j < N` of `Bt`.
                unsafe {
                    let (x0, x1) = (_mm512_loadu_pd(row.add(p)), _mm512_loadu_pd(row.add(p + 8)));
                    for j in 0..N {
                        let y = bt.as_ptr().add(j * k + p);
                        lo[j] = _mm512_fmadd_pd(x0, _mm512_loadu_pd(y), lo[j]);
                        hi[j] = _mm512_fmadd_pd(x1, _mm512_loadu_pd(y.add(8)), hi[j]);
                    }
                }
            }
            for j in 0..N {
                sums[r * N + j] = _mm512_add_pd(lo[j], hi[j]);
                ij[r * N + j] = (i, j);
            }
        }
        // SAFETY: the contract, passed on.
        unsafe { fold_and_store(sums, &ij, k, a, rsa, bt, c, rsc) };
        i0 += per;
    }
    i0
}

/// Folds the eight accumulators of [`dgemm_dots_avx512`] (one per result `ij[q]`, missing
/// results zeros), adds each result's tail of the contraction in order and stores it.
///
/// # Safety
/// As for [`dgemm_dots_avx512`]; every `ij` is a result of `C`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fold_and_store(
    s: [std::arch::x86_64::__m512d; 8],
    ij: &[(usize, usize)],
    k: usize,
    a: *const f64,
    rsa: isize,
    bt: &[f64],
    c: *mut f64,
    rsc: isize,
) {
    use std::arch::x86_64::*;
    let full = k - k % 16;
    // The other folds of eight results at once.
    let u0 = fold_quarters(fold_halves(s[0], s[1]), fold_halves(s[2], s[3]));
    let u1 = fold_quarters(fold_halves(s[4], s[5]), fold_halves(s[6], s[7]));
    let r = _mm512_add_pd(_mm512_unpacklo_pd(u0, u1), _mm512_unpackhi_pd(u0, u1));
    let mut folded = [0.0f64; 8];
    // SAFETY: eight f64 fit `folded`.
    unsafe { _mm512_storeu_pd(folded.as_mut_ptr(), r) };
    // Lane `2q` holds result `q` and lane `2q + 1` result `q + 4` (for `q < 4`).
    const LANE: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
    for (&(i, j), &lane) in ij.iter().zip(&LANE) {
        let mut sum = folded[lane];
        for p in full..k {
            // SAFETY: as above, `p < k`.
            sum = unsafe { (*a.offset(i as isize * rsa + p as isize)).mul_add(bt[j * k + p], sum) };
        }
        // SAFETY: an element of `C` (the contract).
        unsafe { *c.offset(i as isize * rsc + j as isize) = sum };
    }
}

/// Defines `$name`, which runs the `#[inline(always)]` kernel `$body` inside a function
/// compiled for AVX-512 when the CPU has it (see [`avx512`]) and for AVX2 and FMA otherwise.
/// The kernels are plain Rust whose every operation (`mul_add` included) is defined
/// element by element, so both compilations give the same bits.
///
/// # Safety
/// The defined function requires AVX2 and FMA, and the kernel's own contract.
macro_rules! dispatched {
    ($name:ident => $body:ident($($p:ident: $ty:ty),* $(,)?)) => {
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name($($p: $ty),*) {
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn wide512($($p: $ty),*) {
                // SAFETY: the caller's contract.
                unsafe { $body($($p,)* true) }
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn wide256($($p: $ty),*) {
                // SAFETY: the caller's contract.
                unsafe { $body($($p,)* false) }
            }
            if avx512() {
                // SAFETY: the CPU has the features; the rest is the caller's contract.
                unsafe { wide512($($p),*) }
            } else {
                // SAFETY: as above (the caller checked AVX2 and FMA).
                unsafe { wide256($($p),*) }
            }
        }
    };
}

macro_rules! small_gemm {
    (
        $name:ident,
        $rows:ident,
        $rows_body:ident,
        $dots:ident,
        $dots_body:ident,
        $dots512:expr,
        $t:ty,
        $w:literal
    ) => {
        dispatched!($rows => $rows_body(
            m: usize, k: usize, n: usize, a: *const $t, rsa: isize, csa: isize,
            b: *const $t, rsb: isize, c: *mut $t, rsc: isize
        ));
        dispatched!($dots => $dots_body(
            m: usize, k: usize, n: usize, a: *const $t, rsa: isize, bt: &[$t], c: *mut $t,
            rsc: isize
        ));

        /// `C[i, j] = Σ_p A[i, p] · Bt[j, p]` for `i < m`, `j < n`, with row `i` of `A` at
        /// `a + i·rsa` and row `j` of `Bt` at `bt + j·k` (`k` contiguous elements each), and
        /// `C[i, j]` at `c + i·rsc + j`: one dot product per result element, accumulated in
        /// `$w` lanes (four 256-bit vectors) that are added up pairwise at the end. With
        /// `wide` (the compilation for AVX-512), a type with an AVX-512 kernel of its own
        /// (`$dots512`) runs that kernel, which gives the same bits.
        ///
        /// # Safety
        /// Every addressed element must be valid (`C`'s for writes, not overlapping the
        /// operands); `wide` only on a CPU with AVX-512 F and VL and FMA.
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $dots_body(
            m: usize,
            k: usize,
            n: usize,
            a: *const $t,
            rsa: isize,
            bt: &[$t],
            c: *mut $t,
            rsc: isize,
            wide: bool,
        ) {
            let wide_kernel: Option<DotsKernel<$t>> = $dots512;
            if let (true, Some(kernel)) = (wide, wide_kernel) {
                // SAFETY: the caller's contract (with `wide`, the CPU has the features).
                return unsafe { kernel(m, k, n, a, rsa, bt, c, rsc) };
            }
            for i in 0..m as isize {
                // SAFETY: row `i` of `A` holds `k` valid elements (the caller's contract).
                let row = unsafe { std::slice::from_raw_parts(a.offset(i * rsa), k) };
                for (j, col) in bt.chunks_exact(k).take(n).enumerate() {
                    let mut acc = [0.0 as $t; $w];
                    let (rc, rt) = row.split_at(k - k % $w);
                    let (cc, ct) = col.split_at(k - k % $w);
                    for (x, y) in rc.chunks_exact($w).zip(cc.chunks_exact($w)) {
                        for l in 0..$w {
                            acc[l] = x[l].mul_add(y[l], acc[l]);
                        }
                    }
                    // The lanes add up pairwise (halves, quarters, ...), in vectors.
                    let mut w = $w;
                    while w > 1 {
                        w /= 2;
                        for l in 0..w {
                            acc[l] += acc[l + w];
                        }
                    }
                    let mut sum = acc[0];
                    for (x, y) in rt.iter().zip(ct) {
                        sum = x.mul_add(*y, sum);
                    }
                    // SAFETY: an element of `C` (the caller's contract).
                    unsafe { *c.offset(i * rsc + j as isize) = sum };
                }
            }
        }

        /// `C[i, :] = Σ_p A[i, p] · B[p, :]` for `i < m`, with row `p` of `B` at
        /// `b + p·rsb` (`n` contiguous elements) and row `i` of `C` at `c + i·rsc`.
        ///
        /// # Safety
        /// Every addressed element must be valid (`C`'s rows for writes, not overlapping the
        /// operands), and `k ≥ 1`.
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $rows_body(
            m: usize,
            k: usize,
            n: usize,
            a: *const $t,
            rsa: isize,
            csa: isize,
            b: *const $t,
            rsb: isize,
            c: *mut $t,
            rsc: isize,
            wide: bool,
        ) {
            // Columns `j0..` of row `i`: blocks of `2·$w` columns (eight 256-bit vectors,
            // enough independent chains to keep both FMA units busy through a long
            // contraction), then of `$w` (four), accumulate over every `p` in registers and
            // are stored once; the remaining columns take one pass over the row per `p`. Each
            // element sums over `p` in order either way.
            macro_rules! row_from {
                ($i:expr, $j0:expr) => {{
                    let i: isize = $i;
                    let mut j0: usize = $j0;
                    // SAFETY: row `i` of `C` and rows `p` of `B` hold `n` valid elements, and
                    // `A[i, p]` is valid (the caller's contract).
                    let row = unsafe { std::slice::from_raw_parts_mut(c.offset(i * rsc), n) };
                    macro_rules! blocks {
                        ($bw:expr) => {
                            while j0 + $bw <= n {
                                let mut acc = [0.0 as $t; $bw];
                                for p in 0..k as isize {
                                    // SAFETY: as above.
                                    let ap = unsafe { *a.offset(i * rsa + p * csa) };
                                    let bp = unsafe {
                                        std::slice::from_raw_parts(b.offset(p * rsb), n)
                                    };
                                    for (v, &x) in acc.iter_mut().zip(&bp[j0..j0 + $bw]) {
                                        *v = ap.mul_add(x, *v);
                                    }
                                }
                                row[j0..j0 + $bw].copy_from_slice(&acc);
                                j0 += $bw;
                            }
                        };
                    }
                    blocks!(2 * $w);
                    blocks!($w);
                    if j0 < n {
                        let row = &mut row[j0..];
                        // SAFETY: as above.
                        let a0 = unsafe { *a.offset(i * rsa) };
                        let b0 = unsafe { std::slice::from_raw_parts(b, n) };
                        for (v, &x) in row.iter_mut().zip(&b0[j0..]) {
                            *v = a0 * x;
                        }
                        for p in 1..k as isize {
                            // SAFETY: as above.
                            let ap = unsafe { *a.offset(i * rsa + p * csa) };
                            let bp = unsafe { std::slice::from_raw_parts(b.offset(p * rsb), n) };
                            for (v, &x) in row.iter_mut().zip(&bp[j0..]) {
                                *v = ap.mul_add(x, *v);
                            }
                        }
                    }
                }};
            }
            /// `C[i, j0..j0 + BW] = Σ_p A[i, p] · B[p, j0..j0 + BW]` for every row `i` and
            /// every whole block of `BW` columns, with the `K` rows of a block of `B` loaded
            /// once and held in registers while the rows of `A` go by: the general loop below
            /// reloads them, with its loop state, for every pair of rows, which for a
            /// contraction of one to four (a two-input layer's `x·W1`, or the gradient of its
            /// hidden layer) cost several times the multiply-adds. Each element sums from zero
            /// over `p` in order with fused multiply-adds, as the general blocks do, so the
            /// bits are theirs. Returns the first column it did not write.
            ///
            /// # Safety
            /// As for the enclosing kernel, with `k = K`.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn short_rows<const K: usize, const BW: usize>(
                m: usize,
                n: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                c: *mut $t,
                rsc: isize,
            ) -> usize {
                let mut j0 = 0;
                while j0 + BW <= n {
                    let mut bk = [[0.0 as $t; BW]; K];
                    for (p, row) in bk.iter_mut().enumerate() {
                        // SAFETY: row `p < K = k` of `B` holds `n ≥ j0 + BW` elements.
                        let bp = unsafe { std::slice::from_raw_parts(b.offset(p as isize * rsb), n) };
                        row.copy_from_slice(&bp[j0..j0 + BW]);
                    }
                    for i in 0..m as isize {
                        let mut acc = [0.0 as $t; BW];
                        for (p, bp) in bk.iter().enumerate() {
                            // SAFETY: `A[i, p]` is valid (the caller's contract).
                            let ap = unsafe { *a.offset(i * rsa + p as isize * csa) };
                            for (v, &x) in acc.iter_mut().zip(bp) {
                                *v = ap.mul_add(x, *v);
                            }
                        }
                        // SAFETY: columns `j0..j0 + BW` of row `i` of `C`.
                        unsafe {
                            let ci = c.offset(i * rsc + j0 as isize);
                            std::ptr::copy_nonoverlapping(acc.as_ptr(), ci, BW);
                        }
                    }
                    j0 += BW;
                }
                j0
            }
            // A short contraction keeps `B`'s rows of a column block in registers for every
            // row of `A` (see `short_rows`); the columns after the last block take the
            // general path below, which gives them the same bits either way.
            let mut first_col = 0;
            if k <= SHORT_K {
                // SAFETY: the caller's contract, with `k ≤ SHORT_K` as each arm requires.
                first_col = unsafe {
                    match k {
                        1 => short_rows::<1, { 2 * $w }>(m, n, a, rsa, csa, b, rsb, c, rsc),
                        2 => short_rows::<2, { 2 * $w }>(m, n, a, rsa, csa, b, rsb, c, rsc),
                        3 => short_rows::<3, { 2 * $w }>(m, n, a, rsa, csa, b, rsb, c, rsc),
                        _ => short_rows::<4, { 2 * $w }>(m, n, a, rsa, csa, b, rsb, c, rsc),
                    }
                };
                if first_col == n {
                    return;
                }
            }
            let mut i = 0isize;
            // With 32 registers (`wide`), two rows share each load of `B` and run their
            // blocks of `2·$w` columns side by side: eight chains of 512-bit vectors, which a
            // long contraction over two rows (a weight gradient `xᵀ·dh` of a two-input
            // layer) otherwise runs as four.
            while wide && i + 2 <= m as isize {
                let mut j0 = first_col;
                while j0 + 2 * $w <= n {
                    let mut acc0 = [0.0 as $t; 2 * $w];
                    let mut acc1 = [0.0 as $t; 2 * $w];
                    for p in 0..k as isize {
                        // SAFETY: `A[i, p]`, `A[i + 1, p]` and row `p` of `B` are valid (the
                        // caller's contract).
                        let (a0, a1, bp) = unsafe {
                            (
                                *a.offset(i * rsa + p * csa),
                                *a.offset((i + 1) * rsa + p * csa),
                                std::slice::from_raw_parts(b.offset(p * rsb), n),
                            )
                        };
                        for ((v0, v1), &x) in acc0
                            .iter_mut()
                            .zip(acc1.iter_mut())
                            .zip(&bp[j0..j0 + 2 * $w])
                        {
                            *v0 = a0.mul_add(x, *v0);
                            *v1 = a1.mul_add(x, *v1);
                        }
                    }
                    // SAFETY: columns `j0..j0 + 2·$w` of rows `i` and `i + 1` of `C`.
                    unsafe {
                        let c0 = c.offset(i * rsc + j0 as isize);
                        let c1 = c.offset((i + 1) * rsc + j0 as isize);
                        std::ptr::copy_nonoverlapping(acc0.as_ptr(), c0, 2 * $w);
                        std::ptr::copy_nonoverlapping(acc1.as_ptr(), c1, 2 * $w);
                    }
                    j0 += 2 * $w;
                }
                row_from!(i, j0);
                row_from!(i + 1, j0);
                i += 2;
            }
            while i < m as isize {
                row_from!(i, first_col);
                i += 1;
            }
        }

        /// `C = A·B` (`m×k` times `k×n`, strided, `C`'s rows contiguous) when the product is
        /// one this module computes; false, having written nothing, otherwise.
        ///
        /// # Safety
        /// Every element the pointers and strides address must be valid, `C` for writes and
        /// not overlapping the operands.
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(
            m: usize,
            k: usize,
            n: usize,
            a: *const $t,
            rsa: isize,
            csa: isize,
            b: *const $t,
            rsb: isize,
            csb: isize,
            c: *mut $t,
            rsc: isize,
            csc: isize,
        ) -> bool {
            #[cfg(target_arch = "x86_64")]
            {
                let work = m.checked_mul(n).and_then(|x| x.checked_mul(k));
                if csc != 1
                    || m == 0
                    || n == 0
                    || k == 0
                    || work.is_none_or(|w| w > SMALL_WORK)
                    || !std::arch::is_x86_feature_detected!("avx2")
                    || !std::arch::is_x86_feature_detected!("fma")
                {
                    return false;
                }
                if n >= MIN_WIDTH {
                    if csb == 1 {
                        // SAFETY: the CPU has the features; the rest is the caller's contract.
                        unsafe { $rows(m, k, n, a, rsa, csa, b, rsb, c, rsc) };
                        return true;
                    }
                    // `B` row-major first (at most `SMALL_WORK` elements).
                    return with_scratch(k * n, |packed: &mut [$t]| {
                        for (p, row) in packed.chunks_exact_mut(n).enumerate() {
                            for (j, v) in row.iter_mut().enumerate() {
                                // SAFETY: an element of `B` (the caller's contract).
                                *v = unsafe { *b.offset(p as isize * rsb + j as isize * csb) };
                            }
                        }
                        // SAFETY: as above, `B` now row-major with rows `n` apart.
                        unsafe {
                            $rows(m, k, n, a, rsa, csa, packed.as_ptr(), n as isize, c, rsc)
                        };
                    });
                }
                if m >= MIN_WIDTH && rsa == 1 {
                    // `Cᵀ = Bᵀ·Aᵀ`: row `j` of `Cᵀ` sums columns of `A` (contiguous), scaled
                    // by `B[p, j]`; then copied into `C`.
                    return with_scratch(n * m, |t: &mut [$t]| {
                        // SAFETY: `Aᵀ`'s rows are `A`'s columns (`m` contiguous elements
                        // each), `Bᵀ[j, p] = B[p, j]`, and `t` holds `n` rows of `m`, every
                        // element of which the kernel writes.
                        unsafe { $rows(n, k, m, b, csb, rsb, a, csa, t.as_mut_ptr(), m as isize) };
                        for (j, col) in t.chunks_exact(m).enumerate() {
                            for (i, &v) in col.iter().enumerate() {
                                // SAFETY: an element of `C` (the caller's contract).
                                unsafe { *c.offset(i as isize * rsc + j as isize) = v };
                            }
                        }
                    });
                }
                if k >= MIN_WIDTH && csa == 1 {
                    // Narrow results from long rows of `A`: one dot product per element, with
                    // `B`'s columns copied contiguous (at most `SMALL_WORK` elements).
                    return with_scratch(n * k, |bt: &mut [$t]| {
                        for (j, col) in bt.chunks_exact_mut(k).enumerate() {
                            for (p, v) in col.iter_mut().enumerate() {
                                // SAFETY: an element of `B` (the caller's contract).
                                *v = unsafe { *b.offset(p as isize * rsb + j as isize * csb) };
                            }
                        }
                        // SAFETY: the CPU has the features; rows of `A` are contiguous.
                        unsafe { $dots(m, k, n, a, rsa, bt, c, rsc) };
                    });
                }
                false
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc);
                false
            }
        }
    };
}

small_gemm!(
    dgemm,
    dgemm_rows,
    dgemm_rows_body,
    dgemm_dots,
    dgemm_dots_body,
    Some(dgemm_dots_avx512),
    f64,
    16
);
small_gemm!(
    sgemm,
    sgemm_rows,
    sgemm_rows_body,
    sgemm_dots,
    sgemm_dots_body,
    None,
    f32,
    32
);

#[cfg(test)]
mod tests {
    /// The signature of the rows' kernel bodies (`dgemm_rows_body`, `sgemm_rows_body`).
    #[cfg(target_arch = "x86_64")]
    type RowsBody<T> = unsafe fn(
        usize,
        usize,
        usize,
        *const T,
        isize,
        isize,
        *const T,
        isize,
        *mut T,
        isize,
        bool,
    );

    /// The rows' kernel `body`'s `C = A·B` for row-major `A` (`m×k`) and `B` (`k×n`), `C`
    /// filled with `fill` first, with `wide` choosing the AVX-512 compilation's paired rows
    /// (the body is plain Rust, so either path runs on any CPU).
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn rows_out<T: Copy>(
        body: RowsBody<T>,
        fill: T,
        m: usize,
        k: usize,
        n: usize,
        av: &[T],
        bv: &[T],
        wide: bool,
    ) -> Vec<T> {
        assert!(av.len() >= m * k && bv.len() >= k * n);
        let mut c = vec![fill; m * n];
        // SAFETY: `A` holds `m×k` and `B` `k×n` elements, both row-major (checked above), and
        // `C` holds `m×n`.
        unsafe {
            body(
                m,
                k,
                n,
                av.as_ptr(),
                k as isize,
                1,
                bv.as_ptr(),
                n as isize,
                c.as_mut_ptr(),
                n as isize,
                wide,
            )
        };
        c
    }

    /// The bits of the f64 rows' kernel's `C = A·B` (see [`rows_out`]).
    #[cfg(target_arch = "x86_64")]
    fn rows_bits(m: usize, k: usize, n: usize, av: &[f64], bv: &[f64], wide: bool) -> Vec<u64> {
        let c = rows_out(super::dgemm_rows_body, f64::NAN, m, k, n, av, bv, wide);
        c.iter().map(|v| v.to_bits()).collect()
    }

    /// Short contractions (held in registers by `short_rows`) give, element by element, what
    /// the general rows' loop gives: a sum from zero by fused multiply-adds in order of `p`
    /// for the columns in whole blocks of sixteen, and a product then multiply-adds for the
    /// columns after them, on both compilations. Zeros of either sign and non-finite values
    /// in `A` tell the two first steps apart.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn short_contractions_sum_in_the_general_order() {
        let specials = [-0.0, f64::NAN, 0.0, f64::INFINITY, -0.0, 1e300];
        for k in 1..=5 {
            for (m, n) in [(1, 16), (3, 32), (200, 32), (5, 37), (4, 64), (6, 70)] {
                let av: Vec<f64> = (0..m * k)
                    .map(|x| match x % 7 {
                        3 => specials[x % specials.len()],
                        r => r as f64 * 0.37 - 1.1,
                    })
                    .collect();
                let bv: Vec<f64> = (0..k * n)
                    .map(|x| ((x * 5 % 17) as f64) / 3.0 - 2.0)
                    .collect();
                let blocked = n - n % 16;
                let want: Vec<u64> = (0..m * n)
                    .map(|e| {
                        let (i, j) = (e / n, e % n);
                        let mut sum = if j < blocked {
                            av[i * k].mul_add(bv[j], 0.0)
                        } else {
                            av[i * k] * bv[j]
                        };
                        for p in 1..k {
                            sum = av[i * k + p].mul_add(bv[p * n + j], sum);
                        }
                        sum.to_bits()
                    })
                    .collect();
                for wide in [false, true] {
                    let got = rows_bits(m, k, n, &av, &bv, wide);
                    assert_eq!(got, want, "{m}×{k}×{n}, wide {wide}");
                }
            }
        }
    }

    /// The rows kernel with paired rows (the AVX-512 compilation's path) gives the same bits
    /// as row by row, for every parity of `m`, block and tail widths of `n`, short and long
    /// contractions, and NaN, infinite and signed-zero entries.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn paired_rows_equal_single_rows_bit_for_bit() {
        let specials = [f64::NAN, f64::INFINITY, -f64::INFINITY, -0.0, 0.0, 1e300];
        for (m, k, n) in [
            (200, 2, 32),
            (2, 200, 32),
            (7, 3, 37),
            (5, 9, 64),
            (3, 1, 16),
        ] {
            let av: Vec<f64> = (0..m * k)
                .map(|x| match x % 23 {
                    5 => specials[x % specials.len()],
                    r => r as f64 * 0.37 - 4.1,
                })
                .collect();
            let bv: Vec<f64> = (0..k * n)
                .map(|x| ((x * 5 % 17) as f64) / 3.0 - 2.0)
                .collect();
            assert_eq!(
                rows_bits(m, k, n, &av, &bv, true),
                rows_bits(m, k, n, &av, &bv, false),
                "{m}×{k}×{n}"
            );
            let af: Vec<f32> = av.iter().map(|&x| x as f32).collect();
            let bf: Vec<f32> = bv.iter().map(|&x| x as f32).collect();
            let run = |wide: bool| {
                let c = rows_out(super::sgemm_rows_body, f32::NAN, m, k, n, &af, &bf, wide);
                c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            assert_eq!(run(true), run(false), "f32 {m}×{k}×{n}");
        }
    }

    /// Test operands: `A` (`m×k`) and `B` (`k×n`) entries, small multiples of a quarter.
    fn operands(m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let a = (0..m * k).map(|x| ((x * 7 % 13) as f64) - 6.5).collect();
        let b = (0..k * n).map(|x| ((x * 5 % 11) as f64) / 4.0).collect();
        (a, b)
    }

    /// [`super::dgemm`] on slices: `A[i, p]` at `i·rsa + p·csa`, `B[p, j]` at `p·rsb + j·csb`,
    /// `C[i, j]` at `i·rsc + j`, the last element each addresses checked against its slice.
    fn dgemm_on(
        (m, k, n): (usize, usize, usize),
        a: &[f64],
        (rsa, csa): (usize, usize),
        b: &[f64],
        (rsb, csb): (usize, usize),
        c: &mut [f64],
        rsc: usize,
    ) -> bool {
        let last =
            |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
        assert!(m > 0 && k > 0 && n > 0);
        assert!(last(rsa, csa, m, k) < a.len());
        assert!(last(rsb, csb, k, n) < b.len());
        assert!(last(rsc, 1, m, n) < c.len());
        // SAFETY: every element the strides address lies in its slice (checked above).
        unsafe {
            super::dgemm(
                m,
                k,
                n,
                a.as_ptr(),
                rsa as isize,
                csa as isize,
                b.as_ptr(),
                rsb as isize,
                csb as isize,
                c.as_mut_ptr(),
                rsc as isize,
                1,
            )
        }
    }

    /// The operand copies kept in the per-thread scratch buffer (a column-major `B` packed
    /// row-major, the transposed result, `B`'s columns for the dot products) do not depend on
    /// what the buffer held before: on each path a product is computed, a larger one run, and
    /// the first repeated with the same bits; each also equals a plain triple loop (the
    /// entries are small multiples of a quarter, so every order of summation is exact).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn scratch_copies_do_not_depend_on_earlier_products() {
        if !std::arch::is_x86_feature_detected!("avx2")
            || !std::arch::is_x86_feature_detected!("fma")
        {
            return;
        }
        // `(m, k, n, A column-major, B column-major)`, in pairs of one path: packed `B`,
        // transposed result, dot products.
        let cases = [
            (20, 3, 16, false, true),
            (33, 5, 40, false, true),
            (40, 6, 3, true, false),
            (64, 9, 5, true, false),
            (3, 40, 3, false, false),
            (6, 64, 6, false, false),
        ];
        let run = |&(m, k, n, a_cols, b_cols): &(usize, usize, usize, bool, bool)| {
            let (a, b) = operands(m, k, n);
            let (rsa, csa) = if a_cols { (1, m) } else { (k, 1) };
            let (rsb, csb) = if b_cols { (1, k) } else { (n, 1) };
            let mut c = vec![f64::NAN; m * n];
            let done = dgemm_on((m, k, n), &a, (rsa, csa), &b, (rsb, csb), &mut c, n);
            assert!(done, "{m}×{k}×{n}");
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| a[i * rsa + p * csa] * b[p * rsb + j * csb])
                        .sum();
                    assert_eq!(c[i * n + j], want, "{m}×{k}×{n} at ({i}, {j})");
                }
            }
            c.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()
        };
        for pair in cases.chunks(2) {
            let first = run(&pair[0]);
            run(&pair[1]);
            assert_eq!(run(&pair[0]), first, "{:?} after {:?}", pair[0], pair[1]);
        }
    }

    /// The AVX-512 dot products give the generic body's bits for every number of results
    /// (groups of eight and a partial group), contractions shorter than, equal to and longer
    /// than sixteen with and without a tail, padded rows of `A` and `C`, and NaN, infinite,
    /// signed-zero and huge entries (a NaN result only has to be a NaN).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_dots_equal_the_generic_dots_bit_for_bit() {
        if !super::avx512() || !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        let specials = [
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            -0.0,
            0.0,
            1e300,
            -1e-300,
        ];
        let shapes = [
            (200, 32, 2),
            (7, 37, 3),
            (5, 16, 1),
            (3, 9, 5),
            (13, 50, 7),
            (1, 8, 1),
            (4, 48, 2),
            (9, 33, 7),
            (7, 37, 4),
            (10, 20, 8),
            (9, 35, 2),
            (17, 70, 1),
        ];
        for (m, k, n) in shapes {
            for with_specials in [false, true] {
                let (rsa, rsc) = (k + 3, n + 2);
                let av: Vec<f64> = (0..m * rsa)
                    .map(|x| match x % 29 {
                        7 if with_specials => specials[x % specials.len()],
                        r => (r as f64 * 0.37 - 4.1) * (1.0 + x as f64 * 1e-3),
                    })
                    .collect();
                let bt: Vec<f64> = (0..n * k)
                    .map(|x| match x % 31 {
                        11 if with_specials => specials[(x / 31) % specials.len()],
                        r => (r as f64) / 7.0 - 2.0,
                    })
                    .collect();
                let run = |wide: bool| {
                    let mut c = vec![-7.0f64; m * rsc];
                    // SAFETY: `A` has `m` rows `rsa` apart with `k` elements each, `Bt` holds
                    // `n` rows of `k`, `C` `m` rows `rsc` apart; the CPU has the features.
                    unsafe {
                        super::dgemm_dots_body(
                            m,
                            k,
                            n,
                            av.as_ptr(),
                            rsa as isize,
                            &bt,
                            c.as_mut_ptr(),
                            rsc as isize,
                            wide,
                        )
                    };
                    c
                };
                let (fast, plain) = (run(true), run(false));
                for (idx, (x, y)) in fast.iter().zip(&plain).enumerate() {
                    assert!(
                        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        "{m}×{k}×{n} element {idx}: {x:e} vs {y:e}"
                    );
                }
            }
        }
    }

    /// Every layout of `A` and `B` (row- and column-major) and `C` row-major with a padded row
    /// stride, for wide rows, long columns and shapes the module leaves to the GEMM, against a
    /// plain loop in f64 (within rounding: the FMAs and order differ).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn skinny_products_equal_a_plain_loop() {
        let shapes = [
            (200, 2, 32),
            (2, 200, 32),
            (32, 200, 2),
            (200, 32, 2),
            (9, 5, 8),
            (7, 37, 3),
            (5, 3, 2),
            (3, 11, 53),
            (4, 9, 100),
        ];
        for (m, k, n) in shapes {
            for (a_rows, b_rows) in [(true, true), (false, true), (true, false), (false, false)] {
                let (av, bv) = operands(m, k, n);
                // A[i, p] at i·rsa + p·csa, B[p, j] at p·rsb + j·csb.
                let (rsa, csa) = if a_rows { (k, 1) } else { (1, m) };
                let (rsb, csb) = if b_rows { (n, 1) } else { (1, k) };
                let rsc = n + 3;
                let mut want = vec![0.0; m * rsc];
                for i in 0..m {
                    for j in 0..n {
                        want[i * rsc + j] = (0..k)
                            .map(|p| av[i * rsa + p * csa] * bv[p * rsb + j * csb])
                            .sum();
                    }
                }
                let mut c = vec![f64::NAN; m * rsc];
                let ran = dgemm_on((m, k, n), &av, (rsa, csa), &bv, (rsb, csb), &mut c, rsc);
                let cf: Vec<f32> = vec![f32::NAN; m * rsc];
                let (af, bf): (Vec<f32>, Vec<f32>) = (
                    av.iter().map(|&x| x as f32).collect(),
                    bv.iter().map(|&x| x as f32).collect(),
                );
                let mut cf = cf;
                // SAFETY: as above.
                let ran_f = unsafe {
                    super::sgemm(
                        m,
                        k,
                        n,
                        af.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        bf.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        cf.as_mut_ptr(),
                        rsc as isize,
                        1,
                    )
                };
                // Wide rows always qualify (given the CPU features); long columns only with
                // `A`'s columns contiguous; narrow results of long contractions with `A`'s rows
                // contiguous.
                let features = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma");
                let expected = features && (n >= 8 || (m >= 8 && !a_rows) || (k >= 8 && a_rows));
                assert_eq!(ran, expected, "{m}×{k}×{n} {a_rows} {b_rows}");
                assert_eq!(ran_f, expected, "{m}×{k}×{n} {a_rows} {b_rows}");
                if !ran {
                    continue;
                }
                for i in 0..m {
                    for j in 0..n {
                        let (w, g, gf) = (want[i * rsc + j], c[i * rsc + j], cf[i * rsc + j]);
                        let tol = 1e-12 * (1.0 + w.abs()) * k as f64;
                        assert!((g - w).abs() <= tol, "{m}×{k}×{n} [{i},{j}]: {g} vs {w}");
                        let tolf = 1e-5 * (1.0 + w.abs()) * k as f64;
                        assert!((gf as f64 - w).abs() <= tolf, "f32 [{i},{j}]: {gf} vs {w}");
                    }
                    // The padding between rows is left alone.
                    assert!(c[i * rsc + n..(i + 1) * rsc].iter().all(|v| v.is_nan()));
                }
            }
        }
    }
}
