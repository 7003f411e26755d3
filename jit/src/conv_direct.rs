//! The direct convolution path of `crate::conv_kernel`: an implicit GEMM that reads the
//! input in place of a patch matrix, for the convolutions of small networks (few features,
//! small images), where building and packing the patch matrix cost more than the products.
//!
//! For one result batch element, the input features are first copied into a zero-padded
//! buffer laid out row-major over the span the windows reach (padding and input dilation
//! materialised, so every window reads plain offsets). The result is then, per group, a
//! product `R[p, o] = Σ_{c, tap} X[base(p) + c·plane + off(tap)] · W[c, tap, o]`: each kernel
//! tap is a single input element read at a position's base plus the tap's offset and
//! broadcast to a vector, multiplied by a row of the kernel packed with the output features
//! along the vector lanes. A micro kernel keeps a block of `MB` positions times `NV` vectors of
//! output features in registers over the whole contraction (with `avx2` and `fma`, or
//! `avx512f`, detected at run time), so the input is read once per tap and position block and
//! nothing but the result is written. Window strides and kernel dilation only change the
//! position and tap offsets, so every geometry without batch groups fits; the shape class
//! where this path beats the GEMM (see [`choose`]) was measured. Out-batch elements are shared
//! among the rayon pool's threads when the work is large. Like the GEMM, the summation order
//! (and fused rounding) differs from the interpreter's loop.

use super::{recycle, scratch, Float, Geometry, Shared, PARALLEL_WORK};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The most elements the padded copy of one result batch element's input features may take.
const PAD_ELEMENTS: usize = 1 << 16;

/// The most elements of the packed kernel.
const PACKED_ELEMENTS: usize = 1 << 20;

/// Convolutions whose output features per group, rounded up to whole vectors, waste more than
/// this fraction of the lanes take the GEMM.
const MAX_WASTE: f64 = 0.5;

/// Accumulator vectors one micro kernel keeps (positions times output feature vectors), per
/// instruction set: 12 of the 16 `avx2` registers; of the 32 `avx512f` ones, 24 with one
/// vector of output features and 18 with more (measured: 12 positions of 2 vectors, 24
/// accumulators, ran at half the speed of 8 positions on a 28×28 layer, as the compiler spills;
/// 9 positions of 2 vectors ran as fast as 8 per multiply-add).
const ACC_AVX2: usize = 12;
const ACC_AVX512: usize = 24;
const ACC_AVX512_WIDE: usize = 18;

/// The position block sizes the micro kernels are compiled for.
const BLOCKS: [usize; 10] = [1, 2, 3, 4, 6, 8, 9, 12, 16, 24];

/// The vector instruction set a micro kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// 256-bit vectors with fused multiply-add.
    Avx2,
    /// 512-bit vectors.
    Avx512,
}

impl Isa {
    /// The widest set this CPU has, `None` without `avx2` and `fma`.
    pub(super) fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(Isa::Avx2);
            }
        }
        None
    }

    /// Whether this CPU has the set.
    #[cfg(test)]
    pub(super) fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Bytes per vector.
    fn bytes(self) -> usize {
        match self {
            Isa::Avx2 => 32,
            Isa::Avx512 => 64,
        }
    }

    /// Accumulator vectors per micro kernel.
    /// The most positions per block with `nv` output feature vectors.
    fn block_cap(self, nv: usize) -> usize {
        match self {
            Isa::Avx2 => ACC_AVX2 / nv,
            Isa::Avx512 if nv == 1 => ACC_AVX512,
            Isa::Avx512 => ACC_AVX512_WIDE / nv,
        }
    }
}

/// The operands of one micro kernel call.
pub(super) struct Block<T> {
    /// The first element of the group's first input feature in the padded copy.
    src: *const T,
    /// Elements between input features in the padded copy.
    plane: usize,
    /// Input features of the group.
    feats: usize,
    /// The padded-copy offset of each kernel tap.
    taps: *const usize,
    /// The number of taps.
    ntaps: usize,
    /// The padded-copy offset of the first position of each of the block's `R` segments (see
    /// [`Shape`]).
    bases: *const usize,
    /// The first packed kernel row of this chunk of output features.
    w: *const T,
    /// Elements between packed kernel rows.
    ws: usize,
    /// `R · C × NV` vectors of results, position major.
    tile: *mut T,
}

/// A micro kernel: `tile[r·C + j, :] = Σ_{c, tap} src[bases[r] + j + c·plane + taps[tap]] ·
/// w[c·ntaps + tap, :]` for the block's `R` segments of `C` consecutive positions.
type Micro<T> = unsafe fn(&Block<T>);

/// The positions one micro kernel call covers: `rows` segments of `cols` positions, the
/// positions of a segment at consecutive offsets of the padded copy (a run along the last
/// spatial axis with window stride 1). With one column every position is its own segment, and
/// any positions fit; with more, each input read is one register holding the segment's offset
/// plus the tap's and a constant displacement, where a block of 16 or 24 separate offsets
/// keeps most of them on the stack and reloads them for every tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    rows: usize,
    cols: usize,
}

impl Shape {
    /// Positions per block.
    fn positions(self) -> usize {
        self.rows * self.cols
    }
}

macro_rules! micro {
    ($name:ident, $t:ty, $feat:literal, $lanes:literal, $zero:ident, $set1:ident, $load:ident,
     $fma:ident, $store:ident) => {
        /// The micro kernel of one instruction set and float type (see [`Micro`]).
        ///
        /// # Safety
        /// The CPU must have the features; every element the block addresses must be valid
        /// (`tile` for `R · C · NV` vectors of writes, overlapping nothing read).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name<const NV: usize, const R: usize, const C: usize>(k: &Block<$t>) {
            use std::arch::x86_64::*;
            let mut acc = [[[$zero(); NV]; C]; R];
            // SAFETY: `bases` holds `R` offsets (the caller's contract).
            let bases: [usize; R] = std::array::from_fn(|r| unsafe { *k.bases.add(r) });
            // SAFETY: `taps` holds `ntaps` offsets.
            let taps = unsafe { std::slice::from_raw_parts(k.taps, k.ntaps) };
            let mut wrow = k.w;
            for c in 0..k.feats {
                // SAFETY: feature `c` of the group lies in the padded copy.
                let s = unsafe { k.src.add(c * k.plane) };
                for &t in taps {
                    // SAFETY: kernel row `c · ntaps + tap` holds `NV` vectors.
                    let wv: [_; NV] =
                        std::array::from_fn(|v| unsafe { $load(wrow.add(v * $lanes)) });
                    // SAFETY: the tap's offset stays in the plane.
                    let st = unsafe { s.add(t) };
                    for r in 0..R {
                        for j in 0..C {
                            // SAFETY: a segment's offset plus a column stays in the plane.
                            let x = $set1(unsafe { *st.add(bases[r] + j) });
                            for v in 0..NV {
                                acc[r][j][v] = $fma(x, wv[v], acc[r][j][v]);
                            }
                        }
                    }
                    // SAFETY: at most one past the last row.
                    wrow = unsafe { wrow.add(k.ws) };
                }
            }
            for r in 0..R {
                for j in 0..C {
                    for v in 0..NV {
                        // SAFETY: the tile holds `R · C · NV` vectors.
                        let at = ((r * C + j) * NV + v) * $lanes;
                        unsafe { $store(k.tile.add(at), acc[r][j][v]) };
                    }
                }
            }
        }
    };
}

micro!(
    avx2_f32,
    f32,
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);
micro!(
    avx2_f64,
    f64,
    "avx2,fma",
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_fmadd_pd,
    _mm256_storeu_pd
);
micro!(
    avx512_f32,
    f32,
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);
micro!(
    avx512_f64,
    f64,
    "avx512f",
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_fmadd_pd,
    _mm512_storeu_pd
);

/// The micro kernel for `NV` vectors and a block of `R` segments of `C` positions among the
/// compiled ones: single positions (`C = 1`) in the sizes of [`BLOCKS`], and the segments of
/// [`ROW_SHAPES`].
macro_rules! pick {
    ($f:ident, $nv:expr, $r:expr, $c:expr) => {
        match ($nv, $r, $c) {
            (1, 1, 1) => Some($f::<1, 1, 1> as Micro<_>),
            (1, 2, 1) => Some($f::<1, 2, 1> as Micro<_>),
            (1, 3, 1) => Some($f::<1, 3, 1> as Micro<_>),
            (1, 4, 1) => Some($f::<1, 4, 1> as Micro<_>),
            (1, 6, 1) => Some($f::<1, 6, 1> as Micro<_>),
            (1, 8, 1) => Some($f::<1, 8, 1> as Micro<_>),
            (1, 9, 1) => Some($f::<1, 9, 1> as Micro<_>),
            (1, 12, 1) => Some($f::<1, 12, 1> as Micro<_>),
            (1, 16, 1) => Some($f::<1, 16, 1> as Micro<_>),
            (1, 24, 1) => Some($f::<1, 24, 1> as Micro<_>),
            (1, 1, 3) => Some($f::<1, 1, 3> as Micro<_>),
            (1, 2, 3) => Some($f::<1, 2, 3> as Micro<_>),
            (1, 3, 3) => Some($f::<1, 3, 3> as Micro<_>),
            (1, 4, 3) => Some($f::<1, 4, 3> as Micro<_>),
            (1, 6, 3) => Some($f::<1, 6, 3> as Micro<_>),
            (1, 8, 3) => Some($f::<1, 8, 3> as Micro<_>),
            (1, 1, 4) => Some($f::<1, 1, 4> as Micro<_>),
            (1, 2, 4) => Some($f::<1, 2, 4> as Micro<_>),
            (1, 3, 4) => Some($f::<1, 3, 4> as Micro<_>),
            (1, 4, 4) => Some($f::<1, 4, 4> as Micro<_>),
            (1, 6, 4) => Some($f::<1, 6, 4> as Micro<_>),
            (1, 1, 7) => Some($f::<1, 1, 7> as Micro<_>),
            (1, 2, 7) => Some($f::<1, 2, 7> as Micro<_>),
            (1, 3, 7) => Some($f::<1, 3, 7> as Micro<_>),
            (1, 1, 8) => Some($f::<1, 1, 8> as Micro<_>),
            (1, 2, 8) => Some($f::<1, 2, 8> as Micro<_>),
            (1, 3, 8) => Some($f::<1, 3, 8> as Micro<_>),
            (2, 1, 1) => Some($f::<2, 1, 1> as Micro<_>),
            (2, 2, 1) => Some($f::<2, 2, 1> as Micro<_>),
            (2, 3, 1) => Some($f::<2, 3, 1> as Micro<_>),
            (2, 4, 1) => Some($f::<2, 4, 1> as Micro<_>),
            (2, 6, 1) => Some($f::<2, 6, 1> as Micro<_>),
            (2, 8, 1) => Some($f::<2, 8, 1> as Micro<_>),
            (2, 9, 1) => Some($f::<2, 9, 1> as Micro<_>),
            (2, 12, 1) => Some($f::<2, 12, 1> as Micro<_>),
            (2, 1, 3) => Some($f::<2, 1, 3> as Micro<_>),
            (2, 2, 3) => Some($f::<2, 2, 3> as Micro<_>),
            (2, 3, 3) => Some($f::<2, 3, 3> as Micro<_>),
            (2, 1, 4) => Some($f::<2, 1, 4> as Micro<_>),
            (2, 2, 4) => Some($f::<2, 2, 4> as Micro<_>),
            (2, 1, 7) => Some($f::<2, 1, 7> as Micro<_>),
            (2, 1, 8) => Some($f::<2, 1, 8> as Micro<_>),
            (3, 1, 1) => Some($f::<3, 1, 1> as Micro<_>),
            (3, 2, 1) => Some($f::<3, 2, 1> as Micro<_>),
            (3, 3, 1) => Some($f::<3, 3, 1> as Micro<_>),
            (3, 4, 1) => Some($f::<3, 4, 1> as Micro<_>),
            (3, 6, 1) => Some($f::<3, 6, 1> as Micro<_>),
            (3, 8, 1) => Some($f::<3, 8, 1> as Micro<_>),
            (3, 1, 3) => Some($f::<3, 1, 3> as Micro<_>),
            (3, 2, 3) => Some($f::<3, 2, 3> as Micro<_>),
            (3, 1, 4) => Some($f::<3, 1, 4> as Micro<_>),
            (4, 1, 1) => Some($f::<4, 1, 1> as Micro<_>),
            (4, 2, 1) => Some($f::<4, 2, 1> as Micro<_>),
            (4, 3, 1) => Some($f::<4, 3, 1> as Micro<_>),
            (4, 4, 1) => Some($f::<4, 4, 1> as Micro<_>),
            (4, 6, 1) => Some($f::<4, 6, 1> as Micro<_>),
            (4, 1, 3) => Some($f::<4, 1, 3> as Micro<_>),
            (4, 1, 4) => Some($f::<4, 1, 4> as Micro<_>),
            _ => None,
        }
    };
}

/// The compiled blocks of segments longer than one position, as `(NV, R, C)`: runs of 3, 4, 7
/// and 8 positions (rows of the 3×3, 4×4, 8×8 and 28×28 planes of small networks) within
/// each instruction set's accumulator budget.
const ROW_SHAPES: [(usize, usize, usize); 29] = [
    (1, 1, 3),
    (1, 2, 3),
    (1, 3, 3),
    (1, 4, 3),
    (1, 6, 3),
    (1, 8, 3),
    (1, 1, 4),
    (1, 2, 4),
    (1, 3, 4),
    (1, 4, 4),
    (1, 6, 4),
    (1, 1, 7),
    (1, 2, 7),
    (1, 3, 7),
    (1, 1, 8),
    (1, 2, 8),
    (1, 3, 8),
    (2, 1, 3),
    (2, 2, 3),
    (2, 3, 3),
    (2, 1, 4),
    (2, 2, 4),
    (2, 1, 7),
    (2, 1, 8),
    (3, 1, 3),
    (3, 2, 3),
    (3, 1, 4),
    (4, 1, 3),
    (4, 1, 4),
];

/// The float types with micro kernels.
pub(super) trait Lanes: Float {
    /// The side of the square tile [`Lanes::transpose_tile`] transposes: one 256-bit vector.
    const TILE: usize;
    /// The micro kernel for `nv` vectors of output features and a block of `shape`.
    fn micro(isa: Isa, nv: usize, shape: Shape) -> Option<Micro<Self>>;
    /// Transposes one `TILE × TILE` tile: `dst[j·dr + i] = src[i·sr + j]`.
    ///
    /// # Safety
    /// The CPU must have `avx` (every [`Isa`] has); both tiles must be valid, and not overlap.
    unsafe fn transpose_tile(src: *const Self, sr: usize, dst: *mut Self, dr: usize);
}

/// Transposes an 8 × 8 tile of `f32` with eight loads, 24 shuffles and eight stores.
///
/// # Safety
/// As for [`Lanes::transpose_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8_f32(src: *const f32, sr: usize, dst: *mut f32, dr: usize) {
    use std::arch::x86_64::*;
    // SAFETY: eight rows of eight elements (the caller's contract).
    let r: [__m256; 8] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(src.add(k * sr)) });
    // Pairs of rows interleaved, then pairs of pairs: each 128-bit half then holds four
    // elements of one column (columns 0–3 in the low halves, 4–7 in the high ones).
    let t: [__m256; 8] = std::array::from_fn(|k| {
        let (a, b) = (r[k / 2 * 2], r[k / 2 * 2 + 1]);
        if k % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    let q: [__m256; 8] = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    for k in 0..4 {
        // SAFETY: eight rows of eight elements.
        unsafe {
            _mm256_storeu_ps(
                dst.add(k * dr),
                _mm256_permute2f128_ps::<0x20>(q[k], q[k + 4]),
            );
            _mm256_storeu_ps(
                dst.add((k + 4) * dr),
                _mm256_permute2f128_ps::<0x31>(q[k], q[k + 4]),
            );
        }
    }
}

/// Transposes a 4 × 4 tile of `f64` with four loads, eight shuffles and four stores.
///
/// # Safety
/// As for [`Lanes::transpose_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose4_f64(src: *const f64, sr: usize, dst: *mut f64, dr: usize) {
    use std::arch::x86_64::*;
    // SAFETY: four rows of four elements (the caller's contract).
    let r: [__m256d; 4] = std::array::from_fn(|k| unsafe { _mm256_loadu_pd(src.add(k * sr)) });
    let t = [
        _mm256_unpacklo_pd(r[0], r[1]),
        _mm256_unpackhi_pd(r[0], r[1]),
        _mm256_unpacklo_pd(r[2], r[3]),
        _mm256_unpackhi_pd(r[2], r[3]),
    ];
    // SAFETY: four rows of four elements.
    unsafe {
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd::<0x20>(t[0], t[2]));
        _mm256_storeu_pd(dst.add(dr), _mm256_permute2f128_pd::<0x20>(t[1], t[3]));
        _mm256_storeu_pd(dst.add(2 * dr), _mm256_permute2f128_pd::<0x31>(t[0], t[2]));
        _mm256_storeu_pd(dst.add(3 * dr), _mm256_permute2f128_pd::<0x31>(t[1], t[3]));
    }
}

/// The scalar transpose of a `b × b` tile, for targets without the vector one.
///
/// # Safety
/// As for [`Lanes::transpose_tile`].
#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose_scalar<T: Copy>(b: usize, src: *const T, sr: usize, dst: *mut T, dr: usize) {
    for i in 0..b {
        for j in 0..b {
            // SAFETY: the caller's contract.
            unsafe { *dst.add(j * dr + i) = *src.add(i * sr + j) };
        }
    }
}

/// Transposes a `rows × cols` matrix: `dst[j·dr + i] = src[i·sr + j]`, whole tiles with
/// [`Lanes::transpose_tile`] and the edges element by element.
///
/// # Safety
/// The CPU must have `avx`; both matrices must be valid, and not overlap.
unsafe fn transpose<T: Lanes>(
    src: *const T,
    sr: usize,
    dst: *mut T,
    dr: usize,
    rows: usize,
    cols: usize,
) {
    let b = T::TILE;
    let (fr, fc) = (rows - rows % b, cols - cols % b);
    for i in (0..fr).step_by(b) {
        for j in (0..fc).step_by(b) {
            // SAFETY: a whole tile inside both matrices.
            unsafe { T::transpose_tile(src.add(i * sr + j), sr, dst.add(j * dr + i), dr) };
        }
        for j in fc..cols {
            for k in i..i + b {
                // SAFETY: an element of both matrices.
                unsafe { *dst.add(j * dr + k) = *src.add(k * sr + j) };
            }
        }
    }
    for i in fr..rows {
        for j in 0..cols {
            // SAFETY: an element of both matrices.
            unsafe { *dst.add(j * dr + i) = *src.add(i * sr + j) };
        }
    }
}

/// The `Lanes` facts of one element type: its tile side and transpose, and its AVX2 and AVX-512
/// micro kernels. The two types differ only in these names.
macro_rules! lanes {
    ($t:ty, $tile:expr, $transpose:ident, $avx2:ident, $avx512:ident) => {
        impl Lanes for $t {
            const TILE: usize = $tile;

            unsafe fn transpose_tile(src: *const $t, sr: usize, dst: *mut $t, dr: usize) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller's contract.
                unsafe {
                    $transpose(src, sr, dst, dr)
                }
                #[cfg(not(target_arch = "x86_64"))]
                // SAFETY: the caller's contract.
                unsafe {
                    transpose_scalar($tile, src, sr, dst, dr)
                }
            }

            fn micro(isa: Isa, nv: usize, shape: Shape) -> Option<Micro<$t>> {
                #[cfg(target_arch = "x86_64")]
                {
                    let (r, c) = (shape.rows, shape.cols);
                    match isa {
                        Isa::Avx2 => pick!($avx2, nv, r, c),
                        Isa::Avx512 => pick!($avx512, nv, r, c),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (isa, nv, shape);
                    None
                }
            }
        }
    };
}

lanes!(f32, 8, transpose8_f32, avx2_f32, avx512_f32);
lanes!(f64, 4, transpose4_f64, avx2_f64, avx512_f64);

/// The fixed quantities of one convolution on this path.
struct Plan {
    isa: Isa,
    /// Elements per vector.
    lanes: usize,
    /// Output features per group, and rounded up to whole vectors.
    og: usize,
    npad: usize,
    /// The padded span per spatial axis and the copy's row-major strides over it.
    span: SmallVec<[usize; 4]>,
    pstride: SmallVec<[usize; 4]>,
    /// Elements of one input feature's padded copy.
    plane: usize,
    /// Spatial result positions per batch element.
    positions: usize,
}

/// Whether the direct path can take this convolution, and its plan: no batch groups, a padded
/// copy and a packed kernel within their budgets, and output features that fill at least half
/// the vector lanes. Whether it should is [`choose`]'s measured rule.
fn plan<T: Float>(geo: &Geometry, isa: Isa) -> Option<Plan> {
    if geo.bg != 1 || geo.g == 0 || geo.o == 0 || geo.i == 0 || !geo.o.is_multiple_of(geo.g) {
        return None;
    }
    let lanes = isa.bytes() / std::mem::size_of::<T>();
    let og = geo.o / geo.g;
    let npad = og.div_ceil(lanes) * lanes;
    if (npad - og) as f64 > MAX_WASTE * npad as f64 {
        return None;
    }
    if geo.axes.is_empty() {
        return None;
    }
    let mut span = SmallVec::new();
    for a in &geo.axes {
        if a.y == 0 || a.k == 0 {
            return None;
        }
        // The windows reach `(y − 1)·stride + (k − 1)·rd + 1` padded elements.
        let reach = ((a.y - 1) as u128)
            .checked_mul(a.stride as u128)?
            .checked_add(((a.k - 1) as u128).checked_mul(a.rd as u128)?)?
            .checked_add(1)?;
        span.push(usize::try_from(reach).ok()?);
    }
    let mut pstride: SmallVec<[usize; 4]> = SmallVec::from_elem(1, span.len());
    let mut plane = 1usize;
    for j in (0..span.len()).rev() {
        pstride[j] = plane;
        plane = plane.checked_mul(span[j])?;
    }
    let feats = geo.g.checked_mul(geo.i)?;
    if feats.checked_mul(plane)? > PAD_ELEMENTS {
        return None;
    }
    let packed = geo
        .g
        .checked_mul(geo.i)?
        .checked_mul(geo.taps())?
        .checked_mul(npad)?;
    if packed > PACKED_ELEMENTS {
        return None;
    }
    let positions = geo.axes.iter().map(|a| a.y).product();
    Some(Plan {
        isa,
        lanes,
        og,
        npad,
        span,
        pstride,
        plane,
        positions,
    })
}

/// Contractions (input features per group times taps) longer than this take the GEMM
/// (measured: the kernel gradient of a 28×28 layer, 25,088 long, ran at the GEMM's speed or
/// slower on this path).
pub(super) const DIRECT_MAX_CONTRACTION: usize = 1 << 14;

/// Contractions shorter than [`SHORT_CONTRACTION`] over images of at least this many positions
/// take the GEMM: there each result element costs the direct path a scalar store for a few
/// multiply-adds (measured: a 1 → 16 layer on 28×28 images, 784 positions, ran 10% slower than
/// the GEMM; on 8×8 images, 64 positions, twice as fast as the GEMM, whose tiles are then
/// small).
const MANY_POSITIONS: usize = 256;

/// See [`MANY_POSITIONS`].
const SHORT_CONTRACTION: usize = 32;

/// Whether the direct path should run this convolution, by shape class (see
/// [`DIRECT_MAX_CONTRACTION`] and [`MANY_POSITIONS`]).
pub(super) fn choose(geo: &Geometry) -> bool {
    let contraction = geo.i.saturating_mul(geo.taps());
    let positions = geo.axes.iter().fold(1usize, |n, a| n.saturating_mul(a.y));
    contraction <= DIRECT_MAX_CONTRACTION
        && (contraction >= SHORT_CONTRACTION || positions < MANY_POSITIONS)
}

/// The single-position block size for `nv` output feature vectors of one chunk and
/// `positions` positions: blocks as even as the compiled sizes allow.
fn block_size(isa: Isa, nv: usize, positions: usize) -> usize {
    let cap = isa.block_cap(nv);
    let blocks = positions.div_ceil(cap).max(1);
    let per = positions.div_ceil(blocks);
    BLOCKS
        .iter()
        .copied()
        .find(|&b| b >= per && b <= cap)
        .unwrap_or(cap)
}

/// The block shape for `nv` output feature vectors over positions whose padded-copy offsets
/// are `pos_pad` (row-major over the result's spatial axes, `last` positions along the last
/// one): the compiled segment shape of [`ROW_SHAPES`] within the register budget that pads
/// the positions least (then the largest, then the one with fewest segments), when every segment is a run of consecutive offsets
/// and it pads no more than single positions in blocks of [`block_size`] would; otherwise
/// single positions.
fn block_shape(isa: Isa, nv: usize, pos_pad: &[usize], last: usize) -> Shape {
    let positions = pos_pad.len();
    let mb = block_size(isa, nv, positions);
    let single = Shape { rows: mb, cols: 1 };
    let padded = |s: Shape| positions.div_ceil(s.positions()) * s.positions();
    let consecutive = |cols: usize| {
        pos_pad
            .chunks_exact(cols)
            .all(|seg| seg.iter().enumerate().all(|(j, &o)| o == seg[0] + j))
    };
    ROW_SHAPES
        .iter()
        .filter(|&&(n, r, c)| {
            n == nv && r * c <= isa.block_cap(nv) && last > 0 && last.is_multiple_of(c)
        })
        .map(|&(_, rows, cols)| Shape { rows, cols })
        .filter(|&s| padded(s) <= padded(single))
        .min_by_key(|&s| (padded(s), usize::MAX - s.positions(), s.rows))
        .filter(|s| positions.is_multiple_of(s.cols) && consecutive(s.cols))
        .unwrap_or(single)
}

/// The segment offsets of `shape`'s blocks over `pos_pad`: every `cols`-th offset, padded to
/// whole blocks with the first position's (whose results are dropped); `None` when the
/// memory cannot be had.
fn segment_bases(shape: Shape, pos_pad: &[usize]) -> Option<Vec<usize>> {
    let segments = pos_pad.len().div_ceil(shape.cols);
    let padded = segments.div_ceil(shape.rows).max(1) * shape.rows;
    let mut v = Vec::new();
    v.try_reserve_exact(padded).ok()?;
    v.extend(pos_pad.iter().step_by(shape.cols));
    v.resize(padded, pos_pad.first().copied().unwrap_or(0));
    Some(v)
}

/// Runs the convolution on the direct path with the CPU's instruction set; false (having
/// written nothing) when the path does not take it or its buffers cannot be had.
///
/// # Safety
/// The buffers must match the geometry.
pub(super) unsafe fn run<T: Lanes>(
    geo: &Geometry,
    lhs: *const T,
    rhs: *const T,
    out: *mut T,
) -> bool {
    match Isa::detect() {
        // SAFETY: the CPU has the set; the rest is the caller's contract.
        Some(isa) => unsafe { run_with(geo, isa, lhs, rhs, out) },
        None => false,
    }
}

/// [`run`] with a given instruction set.
///
/// # Safety
/// As for [`run`], and the CPU must have `isa`.
pub(super) unsafe fn run_with<T: Lanes>(
    geo: &Geometry,
    isa: Isa,
    lhs: *const T,
    rhs: *const T,
    out: *mut T,
) -> bool {
    let Some(p) = plan::<T>(geo, isa) else {
        return false;
    };
    let ns = geo.axes.len();
    let taps = geo.taps();
    // Per tap: its offset in the padded copy and in the kernel.
    let mut tap_pad = Vec::new();
    let mut tap_rhs = Vec::new();
    if tap_pad.try_reserve_exact(taps).is_err() || tap_rhs.try_reserve_exact(taps).is_err() {
        return false;
    }
    let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    for _ in 0..taps {
        tap_pad.push(
            (0..ns)
                .map(|j| w[j] * geo.axes[j].rd as usize * p.pstride[j])
                .sum(),
        );
        tap_rhs.push((0..ns).map(|j| w[j] * geo.axes[j].sr).sum::<usize>());
        super::advance(&mut w, |d| geo.axes[d].k);
    }
    // Per position: its offset in the padded copy and in the result.
    let mut pos_pad = Vec::new();
    let mut pos_out = Vec::new();
    if pos_pad.try_reserve_exact(p.positions).is_err()
        || pos_out.try_reserve_exact(p.positions).is_err()
    {
        return false;
    }
    let mut y: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    for _ in 0..p.positions {
        pos_pad.push(
            (0..ns)
                .map(|j| y[j] * geo.axes[j].stride as usize * p.pstride[j])
                .sum(),
        );
        pos_out.push((0..ns).map(|j| y[j] * geo.axes[j].so).sum::<usize>());
        super::advance(&mut y, |d| geo.axes[d].y);
    }
    // Per chunk width (at most two, as the chunks are even): the block shape and its segment
    // offsets.
    let chunks = chunks(p.npad / p.lanes);
    let mut blocks: SmallVec<[(usize, Shape, Vec<usize>); 2]> = SmallVec::new();
    for &(_, nv) in &chunks {
        if blocks.iter().any(|b| b.0 == nv) {
            continue;
        }
        let shape = block_shape(isa, nv, &pos_pad, geo.axes[ns - 1].y);
        let Some(bases) = segment_bases(shape, &pos_pad) else {
            return false;
        };
        blocks.push((nv, shape, bases));
    }
    let mut col_out = Vec::new();
    if col_out.try_reserve_exact(geo.o).is_err() {
        return false;
    }
    col_out.extend((0..geo.o).map(|o| o * geo.s_oc));
    // Per axis and padded coordinate: the input offset it copies, or `usize::MAX` for a zero
    // of padding or input dilation.
    let mut sources: SmallVec<[Vec<usize>; 4]> = SmallVec::new();
    for (j, a) in geo.axes.iter().enumerate() {
        let mut v = Vec::new();
        if v.try_reserve_exact(p.span[j]).is_err() {
            return false;
        }
        for r in 0..p.span[j] {
            let q = r as i128 - a.pad as i128;
            let ld = a.ld as i128;
            let x = if q < 0 || q % ld != 0 {
                None
            } else {
                Some(q / ld)
            };
            v.push(match x {
                Some(x) if x < a.l as i128 => x as usize * a.sl,
                _ => usize::MAX,
            });
        }
        sources.push(v);
    }
    // Without input dilation along the last axis, each padded row copies one run of input
    // elements: the rows' `(copy offset, input offset)` pairs, the same for every feature and
    // batch element, make the copy a loop over runs.
    let runs = match row_runs(geo, &p, &sources) {
        Some(r) => r,
        None => return false,
    };
    // The kernel packed per group as rows `[c · taps + tap]` of `npad` output features.
    let rows = geo.i * taps;
    let Some(mut packed) = scratch::<T>(geo.g * rows * p.npad, false) else {
        return false;
    };
    if p.npad > p.og {
        packed.fill(T::ZERO);
    }
    // Feature by feature, so that the rows written (`taps · npad` elements) stay in the
    // first-level cache while the kernel is read along its taps.
    // With the taps at consecutive kernel elements, each feature's `[og, taps]` block is a
    // matrix transposed into its rows, tile by tile.
    let taps_contiguous = tap_rhs.iter().enumerate().all(|(k, &r)| r == k);
    for t in 0..geo.g {
        for c in 0..geo.i {
            let rows = &mut packed[(t * geo.i + c) * taps * p.npad..][..taps * p.npad];
            if taps_contiguous {
                let rb = t * p.og * geo.s_ro + c * geo.s_ri;
                // SAFETY: the CPU has `avx` (every `Isa` has); the source is the kernel's
                // `og × taps` block of this feature (indices below its dimensions), the
                // destination these rows (`taps` rows of `npad ≥ og` elements).
                unsafe { transpose(rhs.add(rb), geo.s_ro, rows.as_mut_ptr(), p.npad, p.og, taps) };
                continue;
            }
            for o in 0..p.og {
                let rb = (t * p.og + o) * geo.s_ro + c * geo.s_ri;
                for (row, &tr) in rows.chunks_exact_mut(p.npad).zip(&tap_rhs) {
                    // SAFETY: an element of the kernel (indices below its dimensions).
                    row[o] = unsafe { *rhs.add(rb + tr) };
                }
            }
        }
    }
    let work = geo.positions().saturating_mul(rows).saturating_mul(geo.o);
    let threads = if work >= PARALLEL_WORK {
        crate::symbols::pool_threads().clamp(1, geo.n_out)
    } else {
        1
    };
    let out = Shared(out);
    let lhs = Shared(lhs as *mut T);
    let pos_step = match pos_out.get(1) {
        None => Some(0),
        Some(&s) => pos_out
            .iter()
            .enumerate()
            .all(|(k, &o)| k.checked_mul(s) == Some(o))
            .then_some(s),
    };
    let ctx = Ctx {
        geo,
        p: &p,
        pos_step,
        tap_pad: &tap_pad,
        blocks: &blocks,
        pos_out: &pos_out,
        col_out: &col_out,
        sources: &sources,
        runs: runs.as_ref(),
        packed: &packed,
        chunks: &chunks,
    };
    let ok = if threads <= 1 {
        // SAFETY: the caller's contract.
        unsafe { ctx.batch_items(0..geo.n_out, lhs, out) }
    } else {
        // Batch elements are claimed one at a time from a shared counter, so that a thread
        // on a busy core (a neighbour's work on a shared machine) takes fewer of them instead
        // of holding back the others with an even share; pool threads that start after the
        // calling thread has claimed the last element are not waited for (see `share`).
        let next = AtomicUsize::new(0);
        let claim = || {
            let n = next.fetch_add(1, Ordering::Relaxed);
            (n < geo.n_out).then_some(n)
        };
        let done = AtomicBool::new(true);
        let work = || {
            // SAFETY: as above; each batch element is claimed by one thread, and threads
            // write the results of disjoint batch elements.
            if !unsafe { ctx.batch_items(std::iter::from_fn(claim), lhs, out) } {
                done.store(false, Ordering::Relaxed);
            }
        };
        crate::share::share_work(threads - 1, &work);
        done.into_inner()
    };
    recycle(packed);
    // A thread without its padded buffer leaves its range unwritten: the caller then runs
    // another path over the whole result.
    ok
}

/// Splits `vectors` output feature vectors into chunks of at most four, as even as possible:
/// `(first vector, vectors)` each.
fn chunks(vectors: usize) -> SmallVec<[(usize, usize); 4]> {
    let n = vectors.div_ceil(4).max(1);
    let mut v = SmallVec::new();
    let mut first = 0;
    for k in 0..n {
        let len = (vectors - first) / (n - k);
        v.push((first, len));
        first += len;
    }
    v
}

/// The runs one feature's padded copy takes from the input when the last axis has no input
/// dilation: the run length, the input stride along it, and per padded row holding input
/// elements the copy offset of its run and the input offset of the run's first element.
struct Runs {
    len: usize,
    step: usize,
    rows: Vec<(usize, usize)>,
}

/// The [`Runs`] of a geometry: `Some(None)` with input dilation along the last axis (the copy
/// then goes element by element), `None` when the memory cannot be had.
fn row_runs(geo: &Geometry, p: &Plan, sources: &[Vec<usize>]) -> Option<Option<Runs>> {
    let last = geo.axes.len() - 1;
    if geo.axes[last].ld != 1 {
        return Some(None);
    }
    let src = &sources[last];
    let lo = src.iter().position(|&s| s != usize::MAX).unwrap_or(0);
    let hi = src
        .iter()
        .rposition(|&s| s != usize::MAX)
        .map_or(lo, |k| k + 1);
    let mut rows = Vec::new();
    let count: usize = p.span[..last].iter().product();
    rows.try_reserve_exact(count).ok()?;
    if lo < hi {
        let mut r: SmallVec<[usize; 4]> = SmallVec::from_elem(0, last);
        for row in 0..count {
            let off = (0..last).try_fold(0usize, |acc, j| {
                let s = sources[j][r[j]];
                (s != usize::MAX).then(|| acc + s)
            });
            if let Some(off) = off {
                rows.push((row * p.span[last] + lo, off + src[lo]));
            }
            super::advance(&mut r, |d| p.span[d]);
        }
    }
    Some(Some(Runs {
        len: hi - lo,
        step: geo.axes[last].sl,
        rows,
    }))
}

/// Writes a block's results: `tile` holds `rows` positions of `width` elements, of which the
/// first `nf` are results; position `m`'s feature `f` goes to `out[m·ps + f·fs]`. The loop
/// runs along whichever stride is shorter, so that the writes are as close as they can be
/// (consecutive for positions in NCHW and for features in NHWC results); with consecutive
/// positions the tile is transposed by vector tiles.
///
/// # Safety
/// The CPU must have `avx`; every element written must be valid for writes and not read or
/// written by another thread.
unsafe fn store<T: Lanes>(
    out: *mut T,
    ps: usize,
    fs: usize,
    tile: &[T],
    width: usize,
    rows: usize,
    nf: usize,
) {
    if ps == 1 && fs > 1 {
        // SAFETY: the CPU has `avx` (every `Isa` has); the caller's contract.
        unsafe { transpose(tile.as_ptr(), width, out, fs, rows, nf) };
    } else if fs <= ps {
        for (m, row) in tile.chunks_exact(width).take(rows).enumerate() {
            for (f, &v) in row[..nf].iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { *out.add(m * ps + f * fs) = v };
            }
        }
    } else {
        for f in 0..nf {
            for (m, row) in tile.chunks_exact(width).take(rows).enumerate() {
                // SAFETY: the caller's contract.
                unsafe { *out.add(m * ps + f * fs) = row[f] };
            }
        }
    }
}

/// Copies `dst.len()` consecutive elements from `src` in blocks of eight and four (vector
/// moves), then one by one: the padded copy's rows are a few elements long, where a call to
/// `memcpy` (what `copy_from_slice` becomes) costs more than the copy.
///
/// # Safety
/// `src` must be valid for `dst.len()` reads and not overlap `dst`.
#[inline]
unsafe fn copy_short<T: Copy>(src: *const T, dst: &mut [T]) {
    let mut k = 0;
    let n = dst.len();
    while k + 8 <= n {
        // SAFETY: eight elements of both (the caller's contract).
        let v = unsafe { std::ptr::read_unaligned(src.add(k) as *const [T; 8]) };
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(dst.as_mut_ptr().add(k) as *mut [T; 8], v) };
        k += 8;
    }
    if k + 4 <= n {
        // SAFETY: four elements of both.
        let v = unsafe { std::ptr::read_unaligned(src.add(k) as *const [T; 4]) };
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(dst.as_mut_ptr().add(k) as *mut [T; 4], v) };
        k += 4;
    }
    for (j, d) in dst[k..].iter_mut().enumerate() {
        // SAFETY: an element of `src`.
        *d = unsafe { *src.add(k + j) };
    }
}

/// The shared, read-only state of one call.
struct Ctx<'a, T> {
    geo: &'a Geometry,
    p: &'a Plan,
    tap_pad: &'a [usize],
    /// Per chunk width: its block shape and the blocks' segment offsets (see [`Shape`]).
    blocks: &'a [(usize, Shape, Vec<usize>)],
    pos_out: &'a [usize],
    /// The result offset of each output feature.
    col_out: &'a [usize],
    /// The step between consecutive positions' result offsets when it is one step (a single
    /// spatial axis, or the result's spatial axes laid out row-major together).
    pos_step: Option<usize>,
    sources: &'a [Vec<usize>],
    /// The copied runs of the padded rows (see [`row_runs`]), `None` with input dilation
    /// along the last axis.
    runs: Option<&'a Runs>,
    packed: &'a [T],
    chunks: &'a [(usize, usize)],
}

impl<T: Lanes> Ctx<'_, T> {
    /// Computes the results of the batch elements `items` yields; false when the padded
    /// buffer cannot be had (nothing written then).
    ///
    /// # Safety
    /// The buffers must match the geometry, and no other thread may write these results.
    unsafe fn batch_items(
        &self,
        items: impl Iterator<Item = usize>,
        lhs: Shared<T>,
        out: Shared<T>,
    ) -> bool {
        let (geo, p) = (self.geo, self.p);
        let feats = geo.g * geo.i;
        // Zeros once: every batch element has its zeros of padding and dilation at the same
        // places, and `fill` writes only the others.
        let Some(mut buf) = scratch::<T>(feats * p.plane, true) else {
            return false;
        };
        // At most 24 vectors of at most 16 lanes.
        let mut tile = [T::ZERO; 24 * 16];
        for n in items {
            // SAFETY: the caller's contract.
            unsafe { self.fill(&mut buf, n, lhs.0) };
            for t in 0..geo.g {
                for &(v0, nv) in self.chunks {
                    let Some((_, shape, bases)) = self.blocks.iter().find(|b| b.0 == nv) else {
                        recycle(buf);
                        return false;
                    };
                    // Every shape `block_shape` picks is compiled (see the tests); were one
                    // missing, the caller would run another path over the whole result.
                    let Some(micro) = T::micro(p.isa, nv, *shape) else {
                        recycle(buf);
                        return false;
                    };
                    let mb = shape.positions();
                    let mut q = 0;
                    let mut segment = 0;
                    while q < p.positions {
                        let block = Block {
                            src: buf[t * geo.i * p.plane..].as_ptr(),
                            plane: p.plane,
                            feats: geo.i,
                            taps: self.tap_pad.as_ptr(),
                            ntaps: self.tap_pad.len(),
                            bases: bases[segment..segment + shape.rows].as_ptr(),
                            w: self.packed
                                [t * geo.i * self.tap_pad.len() * p.npad + v0 * p.lanes..]
                                .as_ptr(),
                            ws: p.npad,
                            tile: tile.as_mut_ptr(),
                        };
                        // SAFETY: the CPU has the set (checked by the caller); the padded
                        // copy holds the group's features, `bases` holds `shape.rows` segment
                        // offsets whose `shape.cols` consecutive positions (checked by
                        // `block_shape`) plus a tap offset lie in a plane, the packed rows hold
                        // `nv` vectors past `v0`, and the tile holds `mb · nv · lanes ≤ 24 · 16`
                        // elements.
                        unsafe { micro(&block) };
                        let width = nv * p.lanes;
                        let f0 = t * p.og + v0 * p.lanes;
                        let nf = (p.og - v0 * p.lanes).min(width);
                        let rows = mb.min(p.positions - q);
                        if let Some(ps) = self.pos_step {
                            let at = n * geo.s_on + q * ps + f0 * geo.s_oc;
                            // SAFETY: the block's results lie in this thread's batch element.
                            unsafe { store(out.0.add(at), ps, geo.s_oc, &tile, width, rows, nf) };
                        } else {
                            let cols = &self.col_out[f0..f0 + nf];
                            for m in 0..rows {
                                let ob = n * geo.s_on + self.pos_out[q + m];
                                for (&co, &v) in cols.iter().zip(&tile[m * width..]) {
                                    // SAFETY: an element of the result; this thread's batch.
                                    unsafe { *out.0.add(ob + co) = v };
                                }
                            }
                        }
                        q += mb;
                        segment += shape.rows;
                    }
                }
            }
        }
        recycle(buf);
        true
    }

    /// Writes batch element `n`'s input features into their places in `buf`, a padded copy
    /// whose zeros of padding and dilation are already in place.
    ///
    /// # Safety
    /// `lhs` must match the geometry.
    unsafe fn fill(&self, buf: &mut [T], n: usize, lhs: *const T) {
        let (geo, p) = (self.geo, self.p);
        if let Some(runs) = self.runs {
            for c in 0..geo.g * geo.i {
                let base = n * geo.s_ln + c * geo.s_lc;
                let plane = &mut buf[c * p.plane..(c + 1) * p.plane];
                for &(d, s) in &runs.rows {
                    if runs.step == 1 {
                        // SAFETY: as below, a run of consecutive input elements.
                        unsafe { copy_short(lhs.add(base + s), &mut plane[d..d + runs.len]) };
                        continue;
                    }
                    for (k, v) in plane[d..d + runs.len].iter_mut().enumerate() {
                        // SAFETY: an element of the input (coordinates below its dimensions,
                        // checked when the tables were built).
                        *v = unsafe { *lhs.add(base + s + k * runs.step) };
                    }
                }
            }
            return;
        }
        let ns = geo.axes.len();
        let last = ns - 1;
        let rows: usize = p.span[..last].iter().product();
        let row_len = p.span[last];
        let src = &self.sources[last];
        let mut r: SmallVec<[usize; 4]> = SmallVec::from_elem(0, last);
        for c in 0..geo.g * geo.i {
            let base = n * geo.s_ln + c * geo.s_lc;
            let plane = &mut buf[c * p.plane..(c + 1) * p.plane];
            r.iter_mut().for_each(|x| *x = 0);
            for row in 0..rows {
                let off = (0..last).try_fold(0usize, |acc, j| {
                    let s = self.sources[j][r[j]];
                    (s != usize::MAX).then(|| acc + s)
                });
                super::advance(&mut r, |d| p.span[d]);
                let Some(off) = off else {
                    continue;
                };
                let dst = &mut plane[row * row_len..(row + 1) * row_len];
                for (d, &s) in dst.iter_mut().zip(src) {
                    if s != usize::MAX {
                        // SAFETY: as above.
                        *d = unsafe { *lhs.add(base + off + s) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{params, Geometry};
    use super::*;
    use ferrax_ir::ops::ConvGeneral;
    use ferrax_ir::{Array, DType, Op, Type};

    use crate::conv_kernel::tests::Rng;

    /// A random permutation of `0..n`.
    fn permutation(rng: &mut Rng, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for k in (1..n).rev() {
            p.swap(k, rng.below(k as u64 + 1) as usize);
        }
        p
    }

    /// Runs `op` on the direct path with `isa` in `T` (returning `None` when the path does not
    /// take it) on eighths `x` and `w`.
    fn direct_result<T: Lanes + Into<f64> + From<f32>>(
        op: &ConvGeneral,
        isa: Isa,
        (ad, x): (&[usize], &[f64]),
        (bd, w): (&[usize], &[f64]),
        od: &[usize],
    ) -> Option<Vec<f64>> {
        let (at, bt) = (Type::new(DType::F64, ad), Type::new(DType::F64, bd));
        let s = op.geometry(&at, &bt).unwrap();
        let st = |d: &[usize]| crate::lower::strides(d);
        let block = params(op, &s, &st(ad), &st(bd), &st(od));
        // SAFETY: the block describes these buffers.
        let geo = unsafe { Geometry::read(block.as_ptr()) };
        let conv = |v: &[f64]| -> Vec<T> { v.iter().map(|&v| T::from(v as f32)).collect() };
        let (x, w) = (conv(x), conv(w));
        let mut out = vec![T::from(f32::NAN); od.iter().product()];
        // SAFETY: the buffers match the geometry, and the CPU has `isa` (checked by the
        // caller).
        let ran = unsafe { run_with(&geo, isa, x.as_ptr(), w.as_ptr(), out.as_mut_ptr()) };
        ran.then(|| out.into_iter().map(Into::into).collect())
    }

    /// The direct path against the interpreter's loop on random geometries: one to three
    /// spatial axes, window strides, low and high padding of either sign, input and kernel
    /// dilation, feature groups, permuted layouts of all three operands, feature counts on
    /// both sides of the vector width (and of the lane waste that sends a convolution to the
    /// GEMM), in f32 and f64, with both instruction sets this CPU has.
    #[test]
    fn direct_path_equals_the_interpreter() {
        let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.available())
            .collect();
        if isas.is_empty() {
            return;
        }
        let mut rng = Rng(11);
        let (mut ran, mut refused) = (0, 0);
        let mut tries = 0;
        while ran < 300 && tries < 5000 {
            tries += 1;
            let ns = rng.int(1, 3) as usize;
            let mut op = ConvGeneral::new(ns);
            let g = if rng.below(4) == 0 {
                rng.int(2, 3) as usize
            } else {
                1
            };
            op.feature_group_count = g;
            let batch = rng.int(1, 4) as usize;
            let fin = rng.int(1, 5) as usize * g;
            let fout = [1, 3, 4, 5, 8, 9, 16, 17, 24, 33, 40][rng.below(11) as usize] * g;
            let mut ad = vec![batch, fin];
            let mut bd = vec![fout, fin / g];
            for j in 0..ns {
                ad.push(rng.int(1, if ns == 3 { 4 } else { 9 }) as usize);
                bd.push(rng.int(1, 3) as usize);
                op.window_strides[j] = rng.int(1, 3) as usize;
                op.padding[j] = (rng.int(-1, 3), rng.int(-1, 3));
                op.lhs_dilation[j] = rng.int(1, 2) as usize;
                op.rhs_dilation[j] = rng.int(1, 2) as usize;
            }
            // Permuted layouts: the dimension numbers name where each role lives.
            let (pl, pr, po) = (
                permutation(&mut rng, ns + 2),
                permutation(&mut rng, ns + 2),
                permutation(&mut rng, ns + 2),
            );
            let place = |dims: &[usize], perm: &[usize]| -> Vec<usize> {
                let mut v = vec![0; dims.len()];
                for (role, &at) in perm.iter().enumerate() {
                    v[at] = dims[role];
                }
                v
            };
            let (adp, bdp) = (place(&ad, &pl), place(&bd, &pr));
            op.dimension_numbers.lhs = pl.iter().copied().collect();
            op.dimension_numbers.rhs = pr.iter().copied().collect();
            op.dimension_numbers.out = po.iter().copied().collect();
            let (at, bt) = (Type::new(DType::F64, &adp), Type::new(DType::F64, &bdp));
            let Ok(ot) = op.infer(&at, &bt) else {
                continue;
            };
            if ot.size() == 0 {
                continue;
            }
            let x: Vec<f64> = (0..at.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let w: Vec<f64> = (0..bt.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let xa = Array::from_f64(adp.as_slice(), x.clone()).unwrap();
            let wa = Array::from_f64(bdp.as_slice(), w.clone()).unwrap();
            let want = Op::Conv(Box::new(op.clone())).eval(&[&xa, &wa]).unwrap()[0].to_f64_vec();
            for &isa in &isas {
                for dtype in [DType::F32, DType::F64] {
                    let args = ((&adp[..], &x[..]), (&bdp[..], &w[..]), ot.dims());
                    let got = match dtype {
                        DType::F32 => direct_result::<f32>(&op, isa, args.0, args.1, args.2),
                        _ => direct_result::<f64>(&op, isa, args.0, args.1, args.2),
                    };
                    let lanes = isa.bytes() / dtype.size_bytes();
                    let og = fout / g;
                    let waste = og.div_ceil(lanes) * lanes - og;
                    let Some(got) = got else {
                        // Only lane waste refuses these small geometries.
                        assert!(waste * 2 > og.div_ceil(lanes) * lanes, "{op:?} refused");
                        refused += 1;
                        continue;
                    };
                    assert!(waste * 2 <= og.div_ceil(lanes) * lanes, "{op:?} taken");
                    for (k, (p, q)) in got.iter().zip(&want).enumerate() {
                        // Eighths times eighths, summed: exact in f64, close in f32.
                        let tol = if dtype == DType::F64 {
                            0.0
                        } else {
                            1e-5 * (1.0 + q.abs())
                        };
                        assert!(
                            (p - q).abs() <= tol,
                            "{op:?} {at} {bt} {isa:?} {dtype}: element {k}: {p} vs {q}"
                        );
                    }
                    ran += 1;
                }
            }
        }
        assert!(ran >= 300 && refused > 0, "ran {ran}, refused {refused}");
    }

    /// The digits CNN's 3×3 "same" convolution as the step uses it: forward, kernel gradient
    /// (batch and feature axes swapped) and input gradient (kernel axes swapped).
    pub(super) fn step_ops() -> (ConvGeneral, ConvGeneral, ConvGeneral) {
        let mut fwd = ConvGeneral::new(2);
        fwd.padding = smallvec::smallvec![(1, 1), (1, 1)];
        let mut kgrad = fwd.clone();
        kgrad.dimension_numbers.lhs = smallvec::smallvec![1, 0, 2, 3];
        kgrad.dimension_numbers.rhs = smallvec::smallvec![1, 0, 2, 3];
        kgrad.dimension_numbers.out = smallvec::smallvec![1, 0, 2, 3];
        let mut igrad = fwd.clone();
        igrad.dimension_numbers.rhs = smallvec::smallvec![1, 0, 2, 3];
        (fwd, kgrad, igrad)
    }

    /// Convolutions large enough to share their batch among threads (the digits CNN's second
    /// layer, forward and both transposes, with an odd batch so that the threads' ranges
    /// differ in length), and its first layer's forward and kernel gradient (one result batch
    /// element, a long contraction), against the interpreter.
    /// With every instruction set this CPU has, so that both sets' segment blocks (rows of
    /// the 8×8 and 4×4 planes, whole 3×3 results) run.
    #[test]
    fn threaded_and_long_contractions_equal_the_interpreter() {
        let mut rng = Rng(5);
        let (fwd, kgrad, igrad) = step_ops();
        let cases = [
            (fwd.clone(), vec![67, 1, 8, 8], vec![16, 1, 3, 3]),
            (fwd, vec![67, 16, 8, 8], vec![32, 16, 3, 3]),
            (kgrad.clone(), vec![67, 16, 8, 8], vec![67, 32, 8, 8]),
            (igrad, vec![67, 32, 8, 8], vec![32, 16, 3, 3]),
            (kgrad, vec![128, 1, 8, 8], vec![128, 16, 8, 8]),
        ];
        let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|isa| isa.available())
            .collect();
        for (op, ad, bd) in cases {
            let (at, bt) = (Type::new(DType::F64, &ad), Type::new(DType::F64, &bd));
            let ot = op.infer(&at, &bt).unwrap();
            let x: Vec<f64> = (0..at.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let w: Vec<f64> = (0..bt.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let xa = Array::from_f64(ad.as_slice(), x.clone()).unwrap();
            let wa = Array::from_f64(bd.as_slice(), w.clone()).unwrap();
            // The interpreter's result is computed once and compared with every set's.
            let want = Op::Conv(Box::new(op.clone())).eval(&[&xa, &wa]).unwrap()[0].to_f64_vec();
            for &isa in &isas {
                let got = direct_result::<f64>(&op, isa, (&ad, &x), (&bd, &w), ot.dims()).unwrap();
                assert_eq!(got, want, "{op:?} {at} {bt} {isa:?}");
                let got = direct_result::<f32>(&op, isa, (&ad, &x), (&bd, &w), ot.dims()).unwrap();
                for (p, q) in got.iter().zip(&want) {
                    assert!(
                        (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                        "{op:?} {isa:?}: {p} vs {q}"
                    );
                }
            }
        }
    }

    /// The shape-class rule at its boundaries (contraction lengths either side of
    /// [`DIRECT_MAX_CONTRACTION`] and [`SHORT_CONTRACTION`], positions either side of
    /// [`MANY_POSITIONS`]), and the kernel's result on each side (direct path or GEMM, as
    /// chosen) against the interpreter.
    #[test]
    fn the_choice_switches_where_measured() {
        let mut rng = Rng(9);
        // (input features, kernel length, input length, chosen)
        let cases = [
            (1024, 16, 16, true),
            (1025, 16, 16, false),
            (1, 31, 256 + 30, false),
            (1, 32, 256 + 31, true),
            (1, 31, 255 + 30, true),
        ];
        for (feats, k, len, direct) in cases {
            let op = ConvGeneral::new(1);
            let (ad, bd) = (vec![2, feats, len], vec![8, feats, k]);
            let (at, bt) = (Type::new(DType::F64, &ad), Type::new(DType::F64, &bd));
            let ot = op.infer(&at, &bt).unwrap();
            let s = op.geometry(&at, &bt).unwrap();
            let st = |d: &[usize]| crate::lower::strides(d);
            let block = params(&op, &s, &st(&ad), &st(&bd), &st(ot.dims()));
            // SAFETY: the block describes these buffers.
            let geo = unsafe { Geometry::read(block.as_ptr()) };
            assert_eq!(choose(&geo), direct, "{feats} {k} {len}");
            let x: Vec<f64> = (0..at.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let w: Vec<f64> = (0..bt.size())
                .map(|_| rng.int(-8, 8) as f64 / 8.0)
                .collect();
            let xa = Array::from_f64(ad.as_slice(), x.clone()).unwrap();
            let wa = Array::from_f64(bd.as_slice(), w.clone()).unwrap();
            let want = Op::Conv(Box::new(op.clone())).eval(&[&xa, &wa]).unwrap()[0].to_f64_vec();
            let mut out = vec![f64::NAN; want.len()];
            // SAFETY: the block and buffers match.
            unsafe { super::super::run(block.as_ptr(), x.as_ptr(), w.as_ptr(), out.as_mut_ptr()) };
            assert_eq!(out, want, "{feats} {k} {len}");
        }
    }

    /// The tiled transpose equals the element-by-element one for sizes on both sides of the
    /// tile (whole tiles, edges, and matrices smaller than a tile) and strides wider than the
    /// matrices, in both float types; elements outside the destination matrix stay unwritten.
    #[test]
    fn transpose_equals_the_definition() {
        if Isa::detect().is_none() {
            return;
        }
        fn check<T: Lanes + From<f32> + PartialEq + std::fmt::Debug>() {
            for rows in [1, 3, 4, 7, 8, 9, 16, 17] {
                for cols in [1, 2, 5, 8, 12, 16, 23] {
                    let (sr, dr) = (cols + 3, rows + 2);
                    let src: Vec<T> = (0..rows * sr).map(|k| T::from(k as f32)).collect();
                    let mut dst = vec![T::from(-1.0); cols * dr];
                    // SAFETY: the CPU has `avx`; both matrices lie in their buffers.
                    unsafe { transpose(src.as_ptr(), sr, dst.as_mut_ptr(), dr, rows, cols) };
                    for j in 0..cols {
                        for i in 0..dr {
                            let want = if i < rows {
                                src[i * sr + j]
                            } else {
                                T::from(-1.0)
                            };
                            assert_eq!(dst[j * dr + i], want, "{rows}x{cols} at ({i}, {j})");
                        }
                    }
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }

    /// Block sizes cover the positions evenly within the register budget, and every block
    /// shape the selection picks (single positions or segments) is compiled and fits it.
    #[test]
    fn blocks_fit_the_registers() {
        for isa in [Isa::Avx2, Isa::Avx512] {
            for nv in 1..=4 {
                for positions in 1..100 {
                    let mb = block_size(isa, nv, positions);
                    assert!(mb <= isa.block_cap(nv), "{isa:?} {nv} {positions}");
                    let single = Shape { rows: mb, cols: 1 };
                    assert!(
                        <f32 as Lanes>::micro(isa, nv, single).is_some()
                            || !cfg!(target_arch = "x86_64")
                    );
                    let blocks = positions.div_ceil(mb);
                    // No more blocks than the largest block size would take.
                    assert_eq!(blocks, positions.div_ceil(isa.block_cap(nv)).max(1));
                }
                // Planes of `h × w` positions with unit window strides, and with every other
                // column (not consecutive: single positions).
                for h in 1..10 {
                    for w in 1..30 {
                        for step in 1..=2 {
                            let pos: Vec<usize> = (0..h * w)
                                .map(|k| k / w * (step * w + 2) + k % w * step)
                                .collect();
                            let shape = block_shape(isa, nv, &pos, w);
                            assert!(shape.positions() <= isa.block_cap(nv), "{shape:?}");
                            assert!(
                                <f64 as Lanes>::micro(isa, nv, shape).is_some()
                                    || !cfg!(target_arch = "x86_64"),
                                "{isa:?} {nv} {shape:?}"
                            );
                            if step == 2 && w > 1 {
                                assert_eq!(shape.cols, 1);
                            }
                            let bases = segment_bases(shape, &pos).unwrap();
                            assert_eq!(bases.len() % shape.rows, 0);
                            assert!(bases.len() * shape.cols >= pos.len());
                        }
                    }
                }
            }
        }
        // The digits CNN's planes take segments: 8×8 and 4×4 by rows, 3×3 whole.
        let plane = |h: usize, w: usize| -> Vec<usize> {
            (0..h * w).map(|k| k / w * (w + 2) + k % w).collect()
        };
        let shape = |nv, h, w| block_shape(Isa::Avx512, nv, &plane(h, w), w);
        assert_eq!(shape(1, 8, 8), Shape { rows: 2, cols: 8 });
        assert_eq!(shape(2, 4, 4), Shape { rows: 2, cols: 4 });
        assert_eq!(shape(1, 4, 4), Shape { rows: 4, cols: 4 });
        assert_eq!(shape(2, 3, 3), Shape { rows: 3, cols: 3 });
        assert_eq!(chunks(5).as_slice(), &[(0, 2), (2, 3)]);
        assert_eq!(chunks(8).as_slice(), &[(0, 4), (4, 4)]);
        assert_eq!(chunks(1).as_slice(), &[(0, 1)]);
    }
}

#[cfg(test)]
mod timing {
    use super::super::{params, run, Geometry};
    use super::tests::step_ops;
    use ferrax_ir::{DType, Type};

    /// Prints the time per call of the digits CNN step's five convolutions (not an
    /// assertion: `cargo test --release -p ferrax-jit --lib timing -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn step_convolutions() {
        let (fwd, kgrad, igrad) = step_ops();
        let cases = [
            (
                "conv1 fwd",
                fwd.clone(),
                vec![128, 1, 8, 8],
                vec![16, 1, 3, 3],
            ),
            ("conv2 fwd", fwd, vec![128, 16, 4, 4], vec![32, 16, 3, 3]),
            (
                "conv2 igrad",
                igrad,
                vec![128, 32, 4, 4],
                vec![32, 16, 3, 3],
            ),
            (
                "conv2 kgrad",
                kgrad.clone(),
                vec![128, 16, 4, 4],
                vec![128, 32, 4, 4],
            ),
            (
                "conv1 kgrad",
                kgrad,
                vec![128, 1, 8, 8],
                vec![128, 16, 8, 8],
            ),
        ];
        for (name, op, ad, bd) in cases {
            let (at, bt) = (Type::new(DType::F32, &ad), Type::new(DType::F32, &bd));
            let ot = op.infer(&at, &bt).unwrap();
            let s = op.geometry(&at, &bt).unwrap();
            let st = |d: &[usize]| crate::lower::strides(d);
            let block = params(&op, &s, &st(&ad), &st(&bd), &st(ot.dims()));
            // SAFETY: the block describes these buffers.
            let geo = unsafe { Geometry::read(block.as_ptr()) };
            let x = vec![0.5f32; at.size()];
            let w = vec![0.25f32; bt.size()];
            let mut out = vec![0f32; ot.size()];
            let reps = 100;
            let mut best = f64::MAX;
            for _ in 0..60 {
                let t0 = std::time::Instant::now();
                for _ in 0..reps {
                    // SAFETY: the block and buffers match.
                    unsafe { run(block.as_ptr(), x.as_ptr(), w.as_ptr(), out.as_mut_ptr()) };
                }
                best = best.min(t0.elapsed().as_secs_f64() / reps as f64 * 1e6);
            }
            println!(
                "{name}: {best:.1} us (n_out {}, o {}, i {}, direct {})",
                geo.n_out,
                geo.o,
                geo.i,
                super::choose(&geo)
            );
        }
    }
}
