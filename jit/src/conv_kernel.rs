//! The runtime kernel of `conv_general_dilated`, called from compiled code as
//! `ferrax_conv_f32` / `ferrax_conv_f64 (params, lhs, rhs, out)` where `params` points to the
//! parameter block that [`params`] lays out at compile time (sizes, element strides of every
//! role of every operand, and the static parameters), so any layout runs without transposes.
//!
//! Three paths compute the same sums. First, for the shape classes where it measured faster
//! (a small network's layers), the direct path of `conv_direct.rs`: an implicit GEMM reading a
//! zero-padded copy of the input with register-blocked vector micro kernels (no patch matrix).
//! Otherwise:
//! - **GEMM** (im2col): per group, the kernel is packed once per call into a `[I·K, O/groups]`
//!   matrix; the output positions are cut into tiles of rows lying on one uniform-stride run of
//!   the output, each tile's patches (input values under each kernel tap, zeros for padding
//!   and dilation holes) are gathered into a patch buffer of at most [`PATCH_BYTES`], and
//!   `matrixmultiply` multiplies it by the packed kernel straight into the output (long
//!   contractions are cut into column chunks, accumulated with `beta = 1`). Tiles are shared
//!   among the rayon pool's threads through a counter, each thread with its own patch buffer.
//!   When one input feature's taps lie at one stride of the kernel and either all features
//!   continue that stride or the taps are many (a whole image: the kernel gradient, whose
//!   "kernel" is the output cotangent), the GEMM reads the kernel in place instead of packing
//!   it. When there are too few tiles for the threads (again the kernel gradient: a small
//!   result summed over batch and positions), the contraction's chunks become the shared work
//!   items, each thread accumulating into a private copy of the result; the copies are summed
//!   at the end. When a dense copy of the input (padding and input dilation materialised, see
//!   `conv_dense.rs`) fits its budget, patches are gathered from it through a position and a
//!   column offset table instead of the per-axis tables (the same patches). When the output's
//!   runs are shorter than a tile (small NCHW planes), tiles span runs and the GEMM writes a
//!   transposed staging block `[O/groups, rows]`, copied to the result along positions. The
//!   buffers come from a per-thread cache kept between calls ([`scratch`]).
//! - **Direct**: the interpreter's loop, in its order (bit for bit equal), for convolutions
//!   with less than [`DIRECT_WORK`] multiply-adds (measured: 4.5 against 6.7 µs per call at
//!   1,296 multiply-adds, 28 against 13 µs at 6,912, so the crossover is near 2,000), for
//!   an empty contraction, and as the fallback when the buffers above cannot be allocated (so
//!   the kernel itself never fails).
//!
//! Every size the kernel reads is one of the operand and result types, which the type rule
//! checked; window arithmetic (stride, dilation, padding) runs in `i128`, so huge paddings or
//! dilations cannot overflow.

use smallvec::SmallVec;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "conv_dense.rs"]
mod dense;

#[path = "conv_direct.rs"]
mod implicit;

/// The most bytes one thread's patch buffer takes.
pub(crate) const PATCH_BYTES: usize = 1 << 20;

/// Convolutions with fewer multiply-adds than this run the direct loop.
pub(crate) const DIRECT_WORK: usize = 2048;

/// The dense copy is used when the result's last axis has at most this many positions.
const SHORT_ROWS: usize = 16;

/// Tiles span runs of the output shorter than this (see the staging block).
const SHORT_RUN: usize = 256;

/// Convolutions with at least this many multiply-adds share their tiles among threads.
const PARALLEL_WORK: usize = 1 << 21;

/// The largest result (in elements) whose contraction may be split among threads, each
/// accumulating into a private copy of it.
const SPLIT_RESULT: usize = 1 << 16;

/// Entries of the parameter block before the per-axis ones.
const HEADER: usize = 12;

/// Entries of the parameter block per spatial axis.
const PER_AXIS: usize = 10;

/// The parameter block of a convolution: `[spatial axes, result batch, output features, kernel
/// input features, feature groups, batch groups, then the element strides of the input's batch
/// and feature, the kernel's output and input feature, the result's batch and feature]`, then
/// per spatial axis `[input size, kernel size, result size, input stride, kernel stride, result
/// stride, window stride, low padding (as i64 bits), input dilation, kernel dilation]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn params(
    op: &ferrax_ir::ops::ConvGeneral,
    s: &ferrax_ir::ops::ConvShape,
    lhs_strides: &[i64],
    rhs_strides: &[i64],
    out_strides: &[i64],
) -> Vec<u64> {
    let dn = &op.dimension_numbers;
    let mut p = vec![
        op.spatial() as u64,
        s.out_batch as u64,
        s.out_features as u64,
        s.group_in as u64,
        op.feature_group_count as u64,
        op.batch_group_count as u64,
        lhs_strides[dn.lhs[0]] as u64,
        lhs_strides[dn.lhs[1]] as u64,
        rhs_strides[dn.rhs[0]] as u64,
        rhs_strides[dn.rhs[1]] as u64,
        out_strides[dn.out[0]] as u64,
        out_strides[dn.out[1]] as u64,
    ];
    for j in 0..op.spatial() {
        p.extend([
            s.lhs_spatial[j] as u64,
            s.rhs_spatial[j] as u64,
            s.out_spatial[j] as u64,
            lhs_strides[dn.lhs[2 + j]] as u64,
            rhs_strides[dn.rhs[2 + j]] as u64,
            out_strides[dn.out[2 + j]] as u64,
            op.window_strides[j] as u64,
            op.padding[j].0 as u64,
            op.lhs_dilation[j] as u64,
            op.rhs_dilation[j] as u64,
        ]);
    }
    p
}

/// One spatial axis of a decoded parameter block.
#[derive(Clone, Copy, Debug)]
struct Axis {
    l: usize,
    k: usize,
    y: usize,
    sl: usize,
    sr: usize,
    so: usize,
    stride: u64,
    pad: i64,
    ld: u64,
    rd: u64,
    /// Whether every window coordinate of this axis fits in `i64` with room to spare, so
    /// [`fill_line`] may compute in `i64` (divisions in `i128` are slow).
    fits: bool,
}

impl Axis {
    /// The input index under kernel tap `k` of result position `y`, or `None` for a zero of
    /// padding or dilation.
    fn source(&self, y: usize, k: usize) -> Option<usize> {
        if self.fits {
            // Every coordinate fits in i64 (checked when the block was read).
            let q = y as i64 * self.stride as i64 + k as i64 * self.rd as i64 - self.pad;
            if q < 0 {
                return None;
            }
            let x = if self.ld == 1 {
                q
            } else {
                let ld = self.ld as i64;
                if q % ld != 0 {
                    return None;
                }
                q / ld
            };
            return (x < self.l as i64).then_some(x as usize);
        }
        let q = y as i128 * self.stride as i128 + k as i128 * self.rd as i128 - self.pad as i128;
        let ld = self.ld as i128;
        if q < 0 || q % ld != 0 {
            return None;
        }
        let x = q / ld;
        (x < self.l as i128).then_some(x as usize)
    }
}

/// A decoded parameter block.
#[derive(Clone, Debug)]
struct Geometry {
    n_out: usize,
    o: usize,
    i: usize,
    g: usize,
    bg: usize,
    s_ln: usize,
    s_lc: usize,
    s_ro: usize,
    s_ri: usize,
    s_on: usize,
    s_oc: usize,
    axes: SmallVec<[Axis; 4]>,
}

impl Geometry {
    /// Decodes the block at `p`.
    ///
    /// # Safety
    /// `p` must point to a block laid out by [`params`].
    unsafe fn read(p: *const u64) -> Geometry {
        // SAFETY: the block holds the header and `ns` axes (the caller's contract).
        let at = |k: usize| unsafe { *p.add(k) };
        let ns = at(0) as usize;
        let axes = (0..ns)
            .map(|j| {
                let b = HEADER + PER_AXIS * j;
                Axis {
                    l: at(b) as usize,
                    k: at(b + 1) as usize,
                    y: at(b + 2) as usize,
                    sl: at(b + 3) as usize,
                    sr: at(b + 4) as usize,
                    so: at(b + 5) as usize,
                    stride: at(b + 6),
                    pad: at(b + 7) as i64,
                    ld: at(b + 8),
                    rd: at(b + 9),
                    fits: false,
                }
            })
            .map(|mut a: Axis| {
                let most = a.y as i128 * a.stride as i128
                    + a.k as i128 * a.rd as i128
                    + (a.pad as i128).abs()
                    + a.l as i128;
                a.fits = most < (1i128 << 60);
                a
            })
            .collect();
        Geometry {
            n_out: at(1) as usize,
            o: at(2) as usize,
            i: at(3) as usize,
            g: at(4) as usize,
            bg: at(5) as usize,
            s_ln: at(6) as usize,
            s_lc: at(7) as usize,
            s_ro: at(8) as usize,
            s_ri: at(9) as usize,
            s_on: at(10) as usize,
            s_oc: at(11) as usize,
            axes,
        }
    }

    /// The number of groups (feature or batch; at most one exceeds 1).
    fn groups(&self) -> usize {
        self.g.max(self.bg)
    }

    /// Kernel taps per input feature.
    fn taps(&self) -> usize {
        self.axes.iter().map(|a| a.k).product()
    }

    /// Result positions per output feature (batch times spatial positions).
    fn positions(&self) -> usize {
        self.axes.iter().map(|a| a.y).product::<usize>() * self.n_out
    }

    /// The input batch index of result batch `n` in group `t`.
    fn batch_in(&self, t: usize, n: usize) -> usize {
        if self.bg > 1 {
            t * self.n_out + n
        } else {
            n
        }
    }

    /// The first input feature of group `t`.
    fn feature0(&self, t: usize) -> usize {
        if self.g > 1 {
            t * self.i
        } else {
            0
        }
    }
}

/// Advances the row-major multi-index `idx` below `dims` (wrapping to zeros at the end).
fn advance(idx: &mut [usize], dims: impl Fn(usize) -> usize) {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims(d) {
            return;
        }
        idx[d] = 0;
    }
}

/// The float types the kernel runs on.
pub(crate) trait Float: Copy + Send + Sync + 'static {
    /// Zero.
    const ZERO: Self;
    /// `acc + a·b`, rounded as the interpreter does (a product, then a sum).
    fn mul_add(acc: Self, a: Self, b: Self) -> Self;
    /// `a + b`.
    fn add(a: Self, b: Self) -> Self;
    /// Runs `f` on this thread's cache of buffers (see [`scratch`]); `None` when the cache
    /// is not available (during thread exit, or in use).
    fn with_cache<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
    /// `C = A·B + beta·C` for strided matrices (`beta` 0 or 1; with 0, `C` is not read).
    ///
    /// # Safety
    /// The pointers and strides must address valid elements.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        accumulate: bool,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! float {
    ($t:ty, $gemm:path) => {
        impl Float for $t {
            const ZERO: $t = 0.0;
            fn mul_add(acc: $t, a: $t, b: $t) -> $t {
                acc + a * b
            }
            fn add(a: $t, b: $t) -> $t {
                a + b
            }
            fn with_cache<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> Option<R> {
                thread_local! {
                    static CACHE: std::cell::RefCell<Vec<Vec<$t>>> =
                        const { std::cell::RefCell::new(Vec::new()) };
                }
                CACHE
                    .try_with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
                    .ok()
                    .flatten()
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                accumulate: bool,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                let beta = if accumulate { 1.0 } else { 0.0 };
                // SAFETY: the caller's contract.
                unsafe { $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

float!(f32, matrixmultiply::sgemm);
float!(f64, matrixmultiply::dgemm);

/// A pointer that may cross threads (every thread writes disjoint result elements).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the kernel's threads read shared inputs and write disjoint parts of the output and
// of the patch buffers.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

/// The direct loop: every result element summed over input features and kernel taps in the
/// interpreter's order.
///
/// # Safety
/// The buffers must match the geometry.
unsafe fn direct<T: Float>(geo: &Geometry, lhs: *const T, rhs: *const T, out: *mut T) {
    let ns = geo.axes.len();
    let og = geo.o / geo.groups().max(1);
    let taps = geo.taps();
    let mut y: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    let spatial: usize = geo.axes.iter().map(|a| a.y).product();
    // Per tap, the kernel offset, and per result position the input offset (`usize::MAX`
    // for a zero of padding or dilation): with them the innermost loop is two loads and a
    // multiply-add. Without the memory for them, the loop below computes each offset in place.
    let (mut lofs, mut rofs) = (Vec::new(), Vec::new());
    if lofs.try_reserve_exact(taps).is_ok() && rofs.try_reserve_exact(taps).is_ok() {
        for _ in 0..taps {
            rofs.push((0..ns).map(|j| w[j] * geo.axes[j].sr).sum::<usize>());
            advance(&mut w, |d| geo.axes[d].k);
        }
        lofs.resize(taps, 0usize);
        for _ in 0..spatial {
            for l in lofs.iter_mut() {
                let mut off = Some(0usize);
                for j in 0..ns {
                    let a = &geo.axes[j];
                    off = match (off, a.source(y[j], w[j])) {
                        (Some(b), Some(x)) => Some(b + x * a.sl),
                        _ => None,
                    };
                }
                *l = off.unwrap_or(usize::MAX);
                advance(&mut w, |d| geo.axes[d].k);
            }
            let ybase: usize = (0..ns).map(|j| y[j] * geo.axes[j].so).sum();
            for n in 0..geo.n_out {
                for o in 0..geo.o {
                    let t = o.checked_div(og).unwrap_or(0);
                    let nb = geo.batch_in(t, n) * geo.s_ln;
                    let c0 = geo.feature0(t);
                    let mut acc = T::ZERO;
                    for i in 0..geo.i {
                        let lb = nb + (c0 + i) * geo.s_lc;
                        let rb = o * geo.s_ro + i * geo.s_ri;
                        for (&lo, &ro) in lofs.iter().zip(&rofs) {
                            // SAFETY: indices below the operands' sizes.
                            let v = if lo == usize::MAX {
                                T::ZERO
                            } else {
                                unsafe { *lhs.add(lb + lo) }
                            };
                            acc = T::mul_add(acc, v, unsafe { *rhs.add(rb + ro) });
                        }
                    }
                    // SAFETY: an index below the result's size.
                    unsafe { *out.add(ybase + n * geo.s_on + o * geo.s_oc) = acc };
                }
            }
            advance(&mut y, |d| geo.axes[d].y);
        }
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { direct_in_place(geo, lhs, rhs, out) }
}

/// The direct loop computing every offset in place (no memory needed).
///
/// # Safety
/// The buffers must match the geometry.
unsafe fn direct_in_place<T: Float>(geo: &Geometry, lhs: *const T, rhs: *const T, out: *mut T) {
    let ns = geo.axes.len();
    let og = geo.o / geo.groups().max(1);
    let taps = geo.taps();
    let mut y: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    let spatial: usize = geo.axes.iter().map(|a| a.y).product();
    for _ in 0..spatial {
        let ybase: usize = (0..ns).map(|j| y[j] * geo.axes[j].so).sum();
        for n in 0..geo.n_out {
            for o in 0..geo.o {
                let t = o.checked_div(og).unwrap_or(0);
                let nb = geo.batch_in(t, n) * geo.s_ln;
                let c0 = geo.feature0(t);
                let mut acc = T::ZERO;
                for i in 0..geo.i {
                    let lb = nb + (c0 + i) * geo.s_lc;
                    let rb = o * geo.s_ro + i * geo.s_ri;
                    w.iter_mut().for_each(|x| *x = 0);
                    for _ in 0..taps {
                        let mut off = Some(lb);
                        let mut roff = rb;
                        for j in 0..ns {
                            let a = &geo.axes[j];
                            roff += w[j] * a.sr;
                            off = match (off, a.source(y[j], w[j])) {
                                (Some(b), Some(x)) => Some(b + x * a.sl),
                                _ => None,
                            };
                        }
                        // SAFETY: indices below the operands' sizes, row-major strides.
                        let v = match off {
                            Some(off) => unsafe { *lhs.add(off) },
                            None => T::ZERO,
                        };
                        acc = T::mul_add(acc, v, unsafe { *rhs.add(roff) });
                        advance(&mut w, |d| geo.axes[d].k);
                    }
                }
                // SAFETY: an index below the result's size.
                unsafe { *out.add(ybase + n * geo.s_on + o * geo.s_oc) = acc };
            }
        }
        advance(&mut y, |d| geo.axes[d].y);
    }
}

/// The valid part `lo..hi` of a line of `len` entries `x_q = first + q · step` (`step ≥ 1`)
/// over an input axis of size `l`.
fn fill_bounds(first: i64, step: i64, len: i64, l: usize) -> (i64, i64) {
    let lo = if first >= 0 {
        0
    } else {
        (-first + step - 1) / step
    }
    .min(len);
    let hi = if first >= l as i64 {
        0
    } else {
        ((l as i64 - 1 - first) / step + 1).min(len)
    }
    .max(lo);
    (lo, hi)
}

/// Fills `seg[q]` with the input element at `base + x_q · sl` where `x_q = first + q · step`,
/// or zero where `x_q` falls outside `0..l`: one line of a patch along an axis without input
/// dilation (`step ≥ 1`), with the valid part copied in one run.
///
/// # Safety
/// Every valid `base + x_q · sl` must address an input element.
#[inline]
unsafe fn fill_line<T: Float>(
    seg: &mut [T],
    src: *const T,
    base: usize,
    first: i64,
    step: i64,
    l: usize,
    sl: usize,
) {
    let len = seg.len() as i64;
    let (lo, hi) = if step == 1 {
        // Without divisions (the common case of a unit stride or dilation).
        let lo = (-first).clamp(0, len);
        (lo, (l as i64 - first).clamp(lo, len))
    } else {
        fill_bounds(first, step, len, l)
    };
    let (lo, hi) = (lo as usize, hi as usize);
    // Most lines have no zeros at all: skip the calls then.
    if lo > 0 {
        seg[..lo].fill(T::ZERO);
    }
    if hi < seg.len() {
        seg[hi..].fill(T::ZERO);
    }
    if hi > lo {
        let start = base + (first + lo as i64 * step) as usize * sl;
        let stride = step as usize * sl;
        if stride == 1 {
            // SAFETY: `hi − lo` consecutive valid elements (the caller's contract).
            let from = unsafe { std::slice::from_raw_parts(src.add(start), hi - lo) };
            seg[lo..hi].copy_from_slice(from);
        } else {
            for (q, v) in seg[lo..hi].iter_mut().enumerate() {
                // SAFETY: a valid element (the caller's contract).
                *v = unsafe { *src.add(start + q * stride) };
            }
        }
    }
}

/// A vector of `n` zeros, or `None` when the memory cannot be had.
fn try_zeros<T: Float>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, T::ZERO);
    Some(v)
}

/// Buffers of at most this many elements are kept for the next call (see [`scratch`]).
const KEEP: usize = 1 << 21;

/// Buffers kept per thread: enough for every buffer of every convolution of a small CNN's
/// train step (each takes up to five), so that each finds its own size again next step.
const KEPT: usize = 32;

/// The most elements the buffers kept by one thread may hold together.
const KEPT_ELEMENTS: usize = 1 << 23;

/// A buffer of this thread's cache (see [`scratch`]): the slice of its first `n` elements.
pub(crate) struct Scratch<T> {
    v: Vec<T>,
    n: usize,
}

impl<T: Float> Scratch<T> {
    /// An empty buffer.
    fn empty() -> Scratch<T> {
        Scratch {
            v: Vec::new(),
            n: 0,
        }
    }
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[..self.n]
    }
}

impl<T> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[..self.n]
    }
}

/// `n` elements, zeros when `zeroed` (otherwise whatever an earlier call left there), from
/// this thread's cache of buffers when one holds enough elements (the smallest such), or
/// newly allocated; `None` when the memory cannot be had. A CNN's train step calls the kernel
/// a few times per step with the same sizes; without the cache every call allocated, zeroed
/// and faulted in its buffers anew (measured: `memset` took a sixth of a small convolution's
/// time). A buffer keeps its whole length in the cache, so taking it again writes nothing
/// unless zeros are asked for.
fn scratch<T: Float>(n: usize, zeroed: bool) -> Option<Scratch<T>> {
    let cached = T::with_cache(|c| {
        let k = (0..c.len())
            .filter(|&k| c[k].len() >= n)
            .min_by_key(|&k| c[k].len())?;
        Some(c.swap_remove(k))
    })
    .flatten();
    let mut v = match cached {
        Some(v) => v,
        None => try_zeros(n)?,
    };
    if zeroed {
        v[..n].fill(T::ZERO);
    }
    Some(Scratch { v, n })
}

/// Gives a buffer back to this thread's cache when it is small enough (beyond [`KEPT`]
/// buffers the smallest is dropped, beyond [`KEPT_ELEMENTS`] the largest).
fn recycle<T: Float>(s: Scratch<T>) {
    let v = s.v;
    if v.is_empty() || v.len() > KEEP {
        return;
    }
    T::with_cache(|c| {
        c.push(v);
        while c.len() > KEPT || c.iter().map(|b| b.len()).sum::<usize>() > KEPT_ELEMENTS {
            let by_size = (0..c.len()).map(|k| (c[k].len(), k));
            let pick = if c.len() > KEPT {
                by_size.min()
            } else {
                by_size.max()
            };
            match pick {
                Some((_, k)) => drop(c.swap_remove(k)),
                None => break,
            }
        }
    });
}

/// Walks consecutive result positions `[batch, spatial..]` from a start, giving for each the
/// sum of its coordinates times per-axis steps (an element offset), without divisions.
struct Walker {
    idx: SmallVec<[usize; 5]>,
    dims: SmallVec<[usize; 5]>,
    steps: SmallVec<[usize; 5]>,
    off: usize,
}

impl Walker {
    /// A walk from `pos` over positions of sizes `dims` with `steps` (all the same length).
    fn new(pos: &[usize], dims: SmallVec<[usize; 5]>, steps: SmallVec<[usize; 5]>) -> Walker {
        let off = pos.iter().zip(&steps).map(|(p, s)| p * s).sum();
        Walker {
            idx: SmallVec::from_slice(pos),
            dims,
            steps,
            off,
        }
    }

    /// The current offset; then moves to the next position.
    #[inline]
    fn next_offset(&mut self) -> usize {
        let here = self.off;
        // The common case first: a step along the last axis.
        if let (Some(i), Some(&n), Some(&st)) =
            (self.idx.last_mut(), self.dims.last(), self.steps.last())
        {
            if *i + 1 < n {
                *i += 1;
                self.off += st;
                return here;
            }
        }
        self.carry();
        here
    }

    /// Moves to the next position when the last axis wraps.
    #[cold]
    fn carry(&mut self) {
        for d in (0..self.idx.len()).rev() {
            self.idx[d] += 1;
            self.off += self.steps[d];
            if self.idx[d] < self.dims[d] {
                break;
            }
            self.off -= self.dims[d] * self.steps[d];
            self.idx[d] = 0;
        }
    }
}

/// The kernel stride between consecutive taps (row-major over the kernel's spatial axes) of
/// one input and output feature, when it is uniform (`None` otherwise).
fn tap_stride(geo: &Geometry) -> Option<usize> {
    let mut st: Option<usize> = None;
    let mut span = 1usize;
    for a in geo.axes.iter().rev() {
        if a.k == 1 {
            continue;
        }
        match st {
            None => st = Some(a.sr),
            Some(s) if s.checked_mul(span)? == a.sr => {}
            Some(_) => return None,
        }
        span = span.checked_mul(a.k)?;
    }
    Some(st.unwrap_or(1))
}

/// The result positions `(batch, spatial..)` cut into runs of one uniform result stride.
struct Runs {
    /// Positions per run (a suffix of the position axes merged).
    len: usize,
    /// The result stride between neighbouring positions of a run.
    stride: usize,
}

impl Runs {
    fn new(geo: &Geometry) -> Runs {
        let ns = geo.axes.len();
        // Position axes in order: batch, then spatial; merge a suffix while each axis's stride
        // is the next one's stride times its size (unit axes merge freely).
        let size = |d: usize| if d == 0 { geo.n_out } else { geo.axes[d - 1].y };
        let stride = |d: usize| if d == 0 { geo.s_on } else { geo.axes[d - 1].so };
        let mut len = 1usize;
        let mut st = 0usize;
        for d in (0..=ns).rev() {
            let n = size(d);
            if n == 1 {
                continue;
            }
            if len == 1 {
                st = stride(d);
            } else if st.checked_mul(len) != Some(stride(d)) {
                break;
            }
            len *= n;
        }
        Runs { len, stride: st }
    }
}

/// Which index a line of a patch walks: the result positions (a column of a column-major
/// patch) or the columns, (input feature, tap) pairs (a row of a row-major patch).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Along {
    Positions,
    Taps,
}

/// A patch element's coordinates: the result position `[batch, spatial..]`, the tap's
/// multi-index and flat index, and the input feature within the group.
#[derive(Clone)]
struct Cursor {
    p: SmallVec<[usize; 5]>,
    w: SmallVec<[usize; 4]>,
    tap: usize,
    i: usize,
}

impl Cursor {
    /// The element of position `pos` and column `col`.
    fn new(geo: &Geometry, pos: &[usize], col: usize) -> Cursor {
        let taps = geo.taps();
        let ns = geo.axes.len();
        let (i, tap) = (col / taps, col % taps);
        let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
        let mut rest = tap;
        for j in (0..ns).rev() {
            w[j] = rest % geo.axes[j].k;
            rest /= geo.axes[j].k;
        }
        Cursor {
            p: SmallVec::from_slice(pos),
            w,
            tap,
            i,
        }
    }

    /// Moves `n` columns on, the `n` taps all along the last kernel axis (`n = 1` when there
    /// is no spatial axis).
    fn next_columns(&mut self, geo: &Geometry, n: usize) {
        let ns = geo.axes.len();
        self.tap += n;
        if self.tap == geo.taps() {
            self.tap = 0;
            self.i += 1;
        }
        if ns > 0 {
            self.w[ns - 1] += n - 1;
            advance(&mut self.w, |d| geo.axes[d].k);
        }
    }

    /// Moves `n` positions on, all along the last spatial axis (`n = 1` when there is none).
    fn next_positions(&mut self, geo: &Geometry, n: usize) {
        let ns = geo.axes.len();
        self.p[ns] += n - 1;
        advance(&mut self.p, |d| {
            if d == 0 {
                geo.n_out
            } else {
                geo.axes[d - 1].y
            }
        });
    }

    /// Moves to the next line of a patch walking `along`: the next column, or the next
    /// position.
    fn step_across(&mut self, geo: &Geometry, along: Along) {
        match along {
            Along::Positions => self.next_columns(geo, 1),
            Along::Taps => self.next_positions(geo, 1),
        }
    }
}

/// The lines of one tile's patch, filled through the per-axis tables of input offsets
/// (`tables[j]` holds, per result position and tap of axis `j`, the input index times its
/// stride, or `None` for padding and dilation holes).
struct PatchLine<'a> {
    geo: &'a Geometry,
    tables: &'a [Vec<Option<usize>>],
    /// The group.
    t: usize,
    /// The group's first input feature.
    c0: usize,
    along: Along,
}

impl PatchLine<'_> {
    /// Fills `dst`, the patch line starting at `at`, in segments along the last spatial axis:
    /// within one, only the last axis's position (walking positions) or tap (walking taps)
    /// moves, so the leading axes' offset is looked up once and the segment is one strided
    /// line of the input ([`fill_line`]) or consecutive entries of the last axis's table.
    ///
    /// # Safety
    /// `lhs` must hold the input the geometry describes, and the line must lie within the
    /// result positions and columns.
    unsafe fn fill<T: Float>(&self, lhs: *const T, mut at: Cursor, dst: &mut [T]) {
        let geo = self.geo;
        let ns = geo.axes.len();
        let last = geo.axes.last();
        let mut r = 0;
        while r < dst.len() {
            // The last axis's position and tap, and how far the walked one may go.
            let (y, k) = match last {
                Some(_) => (at.p[ns], at.w[ns - 1]),
                None => (0, 0),
            };
            let room = match (last, self.along) {
                (None, _) => 1,
                (Some(a), Along::Positions) => a.y - y,
                (Some(a), Along::Taps) => a.k - k,
            };
            let len = room.min(dst.len() - r);
            let feature = (self.c0 + at.i) * geo.s_lc;
            let mut off = Some(geo.batch_in(self.t, at.p[0]) * geo.s_ln + feature);
            for j in 0..ns.saturating_sub(1) {
                let e = self.tables[j][at.p[j + 1] * geo.axes[j].k + at.w[j]];
                off = match (off, e) {
                    (Some(b), Some(x)) => Some(b + x),
                    _ => None,
                };
            }
            let seg = &mut dst[r..r + len];
            match (off, last) {
                (None, _) => seg.fill(T::ZERO),
                // SAFETY: an input element (the caller's contract).
                (Some(b), None) => seg[0] = unsafe { *lhs.add(b) },
                (Some(b), Some(a)) if a.ld == 1 && a.fits => {
                    let first = y as i64 * a.stride as i64 + k as i64 * a.rd as i64 - a.pad;
                    let step = match self.along {
                        Along::Positions => a.stride,
                        Along::Taps => a.rd,
                    };
                    // SAFETY: valid positions address input elements.
                    unsafe { fill_line(seg, lhs, b, first, step as i64, a.l, a.sl) };
                }
                (Some(b), Some(a)) => {
                    let table = &self.tables[ns - 1];
                    let (dy, dk) = match self.along {
                        Along::Positions => (1, 0),
                        Along::Taps => (0, 1),
                    };
                    for (q, v) in seg.iter_mut().enumerate() {
                        // SAFETY: indices below the input's sizes.
                        *v = match table[(y + q * dy) * a.k + k + q * dk] {
                            Some(x) => unsafe { *lhs.add(b + x) },
                            None => T::ZERO,
                        };
                    }
                }
            }
            r += len;
            match self.along {
                Along::Positions => at.next_positions(geo, len),
                Along::Taps => at.next_columns(geo, len),
            }
        }
    }
}

/// The GEMM path; false (having written nothing) when its buffers cannot be allocated. With
/// `use_dense`, patches come from a dense copy of the input when one can be made.
///
/// # Safety
/// The buffers must match the geometry.
unsafe fn gemm_path<T: Float>(
    geo: &Geometry,
    lhs: *const T,
    rhs: *const T,
    out: *mut T,
    use_dense: bool,
) -> bool {
    let ns = geo.axes.len();
    let groups = geo.groups();
    let og = geo.o / groups;
    let taps = geo.taps();
    let kk = geo.i * taps;
    let elem = std::mem::size_of::<T>();
    // Per axis, the input offset under each (result position, tap) pair, or None.
    let mut tables: SmallVec<[Vec<Option<usize>>; 4]> = SmallVec::new();
    for a in &geo.axes {
        let mut t = Vec::new();
        if t.try_reserve_exact(a.y * a.k).is_err() {
            return false;
        }
        for y in 0..a.y {
            for k in 0..a.k {
                t.push(a.source(y, k).map(|x| x * a.sl));
            }
        }
        tables.push(t);
    }
    // The input with its padding and dilation materialised, when small enough: patches are
    // then gathered through per-position and per-column offsets (see `dense`).
    // SAFETY: the caller's contract.
    // Only for short rows along the last axis: on long rows the table-driven fill copies
    // whole segments (measured: with the dense gather and staging, the 28×28 planes of the
    // convolution benchmark ran about 15% slower; the 4×4 and 8×8 planes of the digits CNN
    // several times faster).
    let short_rows = geo.axes.last().is_none_or(|a| a.y <= SHORT_ROWS);
    let dense = if use_dense && short_rows {
        unsafe { dense::Dense::new(geo, lhs) }
    } else {
        None
    };
    let mut columns = Vec::new();
    if let Some(d) = &dense {
        if columns.try_reserve_exact(groups * kk).is_err() {
            return false;
        }
        for t in 0..groups {
            d.columns(geo, t, &mut columns);
        }
    }
    // The kernel as the GEMM's right matrix, per group `[kk, og]` (rows: input feature, then
    // taps). When the taps of one input feature lie at one uniform stride of the kernel, it is
    // read in place (`direct`: that stride and whether whole rows of features continue it);
    // otherwise it is packed row-major, once per call. Read in place feature by feature, the
    // GEMMs are only as long as the taps: worth it for whole images as kernels (the kernel
    // gradient), not for small windows.
    let direct = tap_stride(geo)
        .map(|st| (st, geo.i == 1 || geo.s_ri == st * taps))
        .filter(|&(_, whole)| whole || taps >= 256);
    let mut packed = Scratch::empty();
    if direct.is_none() {
        match scratch::<T>(groups * kk * og, false) {
            Some(v) => packed = v,
            None => return false,
        }
    }
    let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
    for t in (0..groups).filter(|_| direct.is_none()) {
        for i in 0..geo.i {
            w.iter_mut().for_each(|x| *x = 0);
            for tap in 0..taps {
                let roff: usize = (0..ns).map(|j| w[j] * geo.axes[j].sr).sum();
                let row = (t * kk + i * taps + tap) * og;
                let first = t * og * geo.s_ro + i * geo.s_ri + roff;
                for (oo, v) in packed[row..row + og].iter_mut().enumerate() {
                    // SAFETY: the kernel element of output feature `t · og + oo`, input feature
                    // `i` and this tap (indices below the kernel's sizes).
                    *v = unsafe { *rhs.add(first + oo * geo.s_ro) };
                }
                advance(&mut w, |d| geo.axes[d].k);
            }
        }
    }
    // Tiles: rows on one run, columns cut so that a tile's patch fits the budget.
    let runs = Runs::new(geo);
    let chunk = kk.min((PATCH_BYTES / elem / 64).max(1));
    let rows = (PATCH_BYTES / elem / chunk)
        .clamp(1, 4096)
        .min(runs.len.max(1));
    let tiles_per_run = runs.len.div_ceil(rows);
    let n_runs = geo.positions() / runs.len.max(1);
    let tiles = groups * n_runs * tiles_per_run;
    let work = geo.positions().saturating_mul(kk).saturating_mul(geo.o);
    let pool = if work >= PARALLEL_WORK {
        crate::symbols::pool_threads()
    } else {
        1
    };
    // Split the contraction when there are too few tiles to keep the threads busy (the
    // kernel-gradient convolutions: a small result summed over batch and positions). Each
    // thread then accumulates its column chunks into a private copy of the result, and the
    // copies are summed at the end.
    let result = geo.positions().saturating_mul(geo.o);
    let split = pool > 1 && tiles < 4 * pool && kk > chunk.min(256) && result <= SPLIT_RESULT;
    let (chunk, parts) = if split {
        // Enough chunks for four per thread, but not shorter than 256 columns.
        let want = (4 * pool).div_ceil(tiles);
        let c = kk.div_ceil(want).max(256).min(chunk);
        (c, kk.div_ceil(c))
    } else {
        (chunk, 1)
    };
    let rows = if split {
        (PATCH_BYTES / elem / chunk)
            .clamp(1, 4096)
            .min(runs.len.max(1))
    } else {
        rows
    };
    // Short runs (the small images of a CNN in NCHW, where a run is one feature plane of one
    // image) would make GEMMs of a few rows each, dominated by packing the kernel. Tiles then
    // span runs: each GEMM writes a staging block, copied into the result at the
    // tile's end (measured on the digits CNN's second convolution, 16-row GEMMs against
    // 1,820-row ones). The staged product is computed transposed, `[og, m]`, so that the
    // copy runs along positions, which a result in NCHW holds contiguously.
    let staged_rows = (PATCH_BYTES / elem / chunk)
        .clamp(1, 4096)
        .min((PATCH_BYTES / elem / og.max(1)).max(1))
        .min(geo.positions());
    let staged = !split && runs.len < staged_rows && runs.len < SHORT_RUN;
    let (runs, rows) = if staged {
        let all = Runs {
            len: geo.positions(),
            stride: 0,
        };
        (all, staged_rows)
    } else {
        (runs, rows)
    };
    let n_runs = geo.positions() / runs.len.max(1);
    let tiles_per_run = runs.len.div_ceil(rows);
    let items = groups * n_runs * tiles_per_run * parts;
    let threads = pool.min(items).max(1);
    let Some(mut patches) = scratch::<T>(threads * rows * chunk, false) else {
        return false;
    };
    let mut stages = Scratch::empty();
    if staged {
        match scratch::<T>(threads * rows * og, false) {
            Some(v) => stages = v,
            None => return false,
        }
    }
    let mut offsets = Vec::new();
    if dense.is_some() || staged {
        if offsets.try_reserve_exact(threads * rows).is_err() {
            return false;
        }
        offsets.resize(threads * rows, 0usize);
    }
    let mut partials = if split {
        match scratch::<T>(threads * result, true) {
            Some(v) => v,
            None => return false,
        }
    } else {
        Scratch::empty()
    };
    let next = AtomicUsize::new(0);
    let (lhs, rhs, out) = (Shared(lhs as *mut T), Shared(rhs as *mut T), Shared(out));
    let packed_owned = packed;
    let packed = &packed_owned;
    let tables = &tables;
    let runs = &runs;
    // Column-major patches when runs along the last spatial axis are at least as long as the
    // kernel along it; row-major otherwise (the kernel-gradient convolutions, whose results
    // are small and whose kernels are whole images).
    let by_columns = match geo.axes.last() {
        Some(a) => a.y.min(rows) >= a.k,
        None => true,
    };
    let dense_owned = dense;
    let dense = &dense_owned;
    let columns = &columns;
    // Each thread's buffers: its patch, the dense path's position offsets of the current tile
    // (`rows` entries) and the staging block (`rows × og`), and its copy of the result when
    // the contraction is split.
    let job =
        |patch: &mut [T], offsets: &mut [usize], stage: &mut [T], partial: Option<&mut [T]>| {
            let (lhs, rhs) = (lhs, rhs);
            // Without a split, every tile's product goes straight into the result.
            let (out, accumulate_all) = match partial {
                Some(p) => (Shared(p.as_mut_ptr()), true),
                None => (out, false),
            };
            // The dense gather's runs of consecutive offsets (see `dense::unit_runs`), reused
            // from tile to tile.
            let mut spans = Vec::new();
            loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= items {
                    return;
                }
                let (item, part) = (item / parts, item % parts);
                let t = item / (n_runs * tiles_per_run);
                let rest = item % (n_runs * tiles_per_run);
                let (run, tile) = (rest / tiles_per_run, rest % tiles_per_run);
                let p0 = tile * rows;
                let m = rows.min(runs.len - p0);
                // The first position of the tile: (batch, spatial..) from the run and offset.
                let mut pos: SmallVec<[usize; 5]> = SmallVec::from_elem(0, ns + 1);
                let mut flat = run * runs.len + p0;
                for d in (0..=ns).rev() {
                    let n = if d == 0 { geo.n_out } else { geo.axes[d - 1].y };
                    pos[d] = flat % n;
                    flat /= n;
                }
                let obase = pos[0] * geo.s_on
                    + (0..ns).map(|j| pos[j + 1] * geo.axes[j].so).sum::<usize>()
                    + t * og * geo.s_oc;
                let c0 = geo.feature0(t);
                let (mut col0, col_end) = if parts > 1 {
                    (part * chunk, ((part + 1) * chunk).min(kk))
                } else {
                    (0, kk)
                };
                while col0 < col_end {
                    let mut cols = chunk.min(col_end - col0);
                    if let Some((_, false)) = direct {
                        // The kernel is read in place one input feature at a time.
                        cols = cols.min(taps - col0 % taps);
                    }
                    if let Some(d) = dense {
                        // Gathered from the dense copy: element (row, column) sits at the sum of
                        // the row's and the column's offsets. Along a patch line the offsets
                        // that vary usually climb by one for a while (positions or taps along
                        // the last axis), and such runs are copied whole.
                        let offsets = &mut offsets[..m];
                        d.positions(geo, &pos, offsets);
                        let offsets = &*offsets;
                        let cols_at = &columns[t * kk + col0..t * kk + col0 + cols];
                        let src = &d.buf[..];
                        if by_columns {
                            let spans = dense::unit_runs(offsets, &mut spans);
                            for (dst, &co) in patch.chunks_exact_mut(m).zip(cols_at) {
                                dense::gather(dst, src, co, offsets, spans);
                            }
                        } else {
                            let spans = dense::unit_runs(cols_at, &mut spans);
                            for (dst, &po) in patch.chunks_exact_mut(cols).zip(offsets.iter()) {
                                dense::gather(dst, src, po, cols_at, spans);
                            }
                        }
                    } else {
                        // Filled through the per-axis tables: a column-major patch (`m` rows per
                        // column) one column per (input feature, tap), each walking the tile's
                        // positions; a row-major one (`cols` per row) one row per position, each
                        // walking its columns (see `PatchLine`).
                        let (along, lines, len) = if by_columns {
                            (Along::Positions, cols, m)
                        } else {
                            (Along::Taps, m, cols)
                        };
                        let mut at = Cursor::new(geo, &pos, col0);
                        let line = PatchLine {
                            geo,
                            tables,
                            t,
                            c0,
                            along,
                        };
                        for dst in patch[..lines * len].chunks_exact_mut(len) {
                            // SAFETY: the tile's positions and columns lie within the geometry.
                            unsafe { line.fill(lhs.0, at.clone(), dst) };
                            at.step_across(geo, along);
                        }
                    }
                    let (rsa, csa) = if by_columns {
                        (1, m as isize)
                    } else {
                        (cols as isize, 1)
                    };
                    let (b_ptr, rsb, csb) = match direct {
                        Some((st, _)) => {
                            let (i, tap) = (col0 / taps, col0 % taps);
                            // SAFETY: the offset of an element of the kernel (output feature
                            // `t · og`, input feature `i`, tap `tap`, which lies at `tap · st`).
                            let b =
                                unsafe { rhs.0.add(t * og * geo.s_ro + i * geo.s_ri + tap * st) };
                            (b as *const T, st as isize, geo.s_ro as isize)
                        }
                        // SAFETY: within the packed kernel of `groups · kk · og` elements.
                        None => (
                            unsafe { packed.as_ptr().add((t * kk + col0) * og) },
                            og as isize,
                            1,
                        ),
                    };
                    let accumulate = accumulate_all || col0 > 0;
                    if staged {
                        // The transposed product `stageᵀ = kernelᵀ · patchᵀ` into the staging
                        // block `[og, m]`, so that its copy to the result reads and writes along
                        // positions.
                        // SAFETY: as below, with the staging block of `og × rows` elements.
                        unsafe {
                            T::gemm(
                                og,
                                cols,
                                m,
                                b_ptr,
                                csb,
                                rsb,
                                patch.as_ptr(),
                                csa,
                                rsa,
                                accumulate,
                                stage.as_mut_ptr(),
                                m as isize,
                                1,
                            )
                        };
                    } else {
                        // SAFETY: the patch holds `m × cols`, the kernel's rows `col0..col0 + cols`
                        // of group `t` lie where `b_ptr`, `rsb` and `csb` say (packed: `kk × og`
                        // per group), and the tile's result rows lie on one run of the output.
                        unsafe {
                            T::gemm(
                                m,
                                cols,
                                og,
                                patch.as_ptr(),
                                rsa,
                                csa,
                                b_ptr,
                                rsb,
                                csb,
                                accumulate,
                                out.0.add(obase),
                                runs.stride as isize,
                                geo.s_oc as isize,
                            )
                        };
                    }
                    col0 += cols;
                }
                if staged {
                    // Copy the staging block to the tile's result positions.
                    let mut walk = Walker::new(&pos, position_dims(geo), result_steps(geo));
                    let base = t * og * geo.s_oc;
                    let at = &mut offsets[..m];
                    at.iter_mut().for_each(|o| *o = base + walk.next_offset());
                    for (oo, line) in stage[..og * m].chunks_exact(m).enumerate() {
                        let fo = oo * geo.s_oc;
                        for (&v, &ob) in line.iter().zip(at.iter()) {
                            // SAFETY: a result element of this tile (no other tile writes it).
                            unsafe { *out.0.add(ob + fo) = v };
                        }
                    }
                }
            }
        };
    let per = rows * chunk;
    // Each thread's share of the offsets and staging blocks (none when unused).
    let mut offs = offsets
        .chunks_mut(rows.max(1))
        .chain(std::iter::repeat_with(|| -> &mut [usize] { &mut [] }));
    let mut stage = stages
        .chunks_mut((rows * og).max(1))
        .chain(std::iter::repeat_with(|| -> &mut [T] { &mut [] }));
    if threads <= 1 && !split {
        job(
            &mut patches[..per],
            offs.next().unwrap_or_default(),
            stage.next().unwrap_or_default(),
            None,
        );
    } else {
        // Jobs compute in the caller's floating-point mode (`crate::fp_env`).
        let fp = crate::fp_env::FpControl::current();
        rayon::scope(|s| {
            let mut bufs = patches.chunks_mut(per).zip(offs).zip(stage).zip(
                partials
                    .chunks_mut(result.max(1))
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            );
            let mine = bufs.next();
            for (((patch, offsets), stage), partial) in bufs {
                let job = &job;
                s.spawn(move |_| fp.run(|| job(patch, offsets, stage, partial)));
            }
            // Called from outside the pool, the scope's own body runs on a pool thread too.
            if let Some((((patch, offsets), stage), partial)) = mine {
                fp.run(|| job(patch, offsets, stage, partial));
            }
        });
    }
    recycle(patches);
    recycle(stages);
    recycle(packed_owned);
    if let Some(d) = dense_owned {
        recycle(d.buf);
    }
    if split {
        // Sum the threads' copies into the result (whose positions and features cover
        // exactly its `result` elements, laid out as in the copies).
        let (first, rest) = partials.split_at(result);
        for (k, &v) in first.iter().enumerate() {
            let acc = rest
                .chunks(result)
                .fold(v, |acc, part| T::add(acc, part[k]));
            // SAFETY: an index below the result's size.
            unsafe { *out.0.add(k) = acc };
        }
    }
    recycle(partials);
    true
}

/// The sizes of the result positions `[batch, spatial..]`.
fn position_dims(geo: &Geometry) -> SmallVec<[usize; 5]> {
    std::iter::once(geo.n_out)
        .chain(geo.axes.iter().map(|a| a.y))
        .collect()
}

/// The result's element strides along the result positions `[batch, spatial..]`.
fn result_steps(geo: &Geometry) -> SmallVec<[usize; 5]> {
    std::iter::once(geo.s_on)
        .chain(geo.axes.iter().map(|a| a.so))
        .collect()
}

/// Runs the convolution described by `params` (see the module documentation).
///
/// # Safety
/// `params` must be a block from [`params`] for operands and a result whose buffers are
/// `lhs`, `rhs` and `out`.
unsafe fn run<T: implicit::Lanes>(params: *const u64, lhs: *const T, rhs: *const T, out: *mut T) {
    // SAFETY: the caller's contract.
    let geo = unsafe { Geometry::read(params) };
    let kk = geo.i * geo.taps();
    let work = geo.positions().saturating_mul(kk).saturating_mul(geo.o);
    if geo.positions() == 0 || geo.o == 0 {
        return;
    }
    // SAFETY: the caller's contract.
    if work >= DIRECT_WORK
        && kk > 0
        && implicit::choose(&geo)
        && unsafe { implicit::run(&geo, lhs, rhs, out) }
    {
        return;
    }
    // SAFETY: the caller's contract.
    if work < DIRECT_WORK || kk == 0 || !unsafe { gemm_path(&geo, lhs, rhs, out, true) } {
        // SAFETY: the caller's contract.
        unsafe { direct(&geo, lhs, rhs, out) }
    }
}

/// The f32 convolution kernel.
///
/// # Safety
/// As for [`run`].
pub(crate) unsafe extern "C" fn ferrax_conv_f32(
    params: *const u64,
    lhs: *const f32,
    rhs: *const f32,
    out: *mut f32,
) {
    // SAFETY: the caller's contract.
    unsafe { run(params, lhs, rhs, out) }
}

/// The f64 convolution kernel.
///
/// # Safety
/// As for [`run`].
pub(crate) unsafe extern "C" fn ferrax_conv_f64(
    params: *const u64,
    lhs: *const f64,
    rhs: *const f64,
    out: *mut f64,
) {
    // SAFETY: the caller's contract.
    unsafe { run(params, lhs, rhs, out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrax_ir::ops::ConvGeneral;
    use ferrax_ir::{Array, DType, Op, Type};

    /// The four ways of the kernel (direct with tables, direct in place, GEMM with patches
    /// from the input and from its dense copy) against the
    /// interpreter, on convolutions with strides, padding, both dilations, groups and a
    /// non-canonical layout.
    #[test]
    fn every_path_equals_the_interpreter() {
        let mut cases = Vec::new();
        let mut a = ConvGeneral::new(2);
        a.window_strides = smallvec::smallvec![2, 1];
        a.padding = smallvec::smallvec![(1, 2), (-1, 1)];
        a.lhs_dilation = smallvec::smallvec![2, 1];
        a.rhs_dilation = smallvec::smallvec![1, 2];
        cases.push((a, vec![2, 4, 5, 7], vec![3, 4, 2, 3]));
        let mut b = ConvGeneral::new(1);
        b.feature_group_count = 2;
        b.dimension_numbers.lhs = smallvec::smallvec![2, 0, 1];
        b.dimension_numbers.out = smallvec::smallvec![1, 2, 0];
        cases.push((b, vec![4, 9, 2], vec![4, 2, 3]));
        let mut c = ConvGeneral::new(1);
        c.batch_group_count = 3;
        cases.push((c, vec![6, 2, 8], vec![3, 2, 2]));
        for (op, ad, bd) in cases {
            let (at, bt) = (Type::new(DType::F64, &ad), Type::new(DType::F64, &bd));
            let n = |t: &Type| t.size();
            let x: Vec<f64> = (0..n(&at)).map(|k| ((k * 7 % 13) as f64) - 6.0).collect();
            let w: Vec<f64> = (0..n(&bt))
                .map(|k| ((k * 5 % 11) as f64) / 4.0 - 1.0)
                .collect();
            let xa = Array::from_f64(ad.as_slice(), x.clone()).unwrap();
            let wa = Array::from_f64(bd.as_slice(), w.clone()).unwrap();
            let want = Op::Conv(Box::new(op.clone())).eval(&[&xa, &wa]).unwrap()[0].to_f64_vec();
            let s = op.geometry(&at, &bt).unwrap();
            let ot = op.infer(&at, &bt).unwrap();
            let st = |d: &[usize]| crate::lower::strides(d);
            let block = params(&op, &s, &st(&ad), &st(&bd), &st(ot.dims()));
            // SAFETY: the block describes these buffers.
            let geo = unsafe { Geometry::read(block.as_ptr()) };
            for way in 0..4 {
                let mut out = vec![f64::NAN; want.len()];
                // SAFETY: the buffers match the geometry.
                unsafe {
                    match way {
                        0 => direct(&geo, x.as_ptr(), w.as_ptr(), out.as_mut_ptr()),
                        1 => direct_in_place(&geo, x.as_ptr(), w.as_ptr(), out.as_mut_ptr()),
                        2 => assert!(gemm_path(
                            &geo,
                            x.as_ptr(),
                            w.as_ptr(),
                            out.as_mut_ptr(),
                            false
                        )),
                        _ => assert!(gemm_path(
                            &geo,
                            x.as_ptr(),
                            w.as_ptr(),
                            out.as_mut_ptr(),
                            true
                        )),
                    }
                }
                for (k, (p, q)) in out.iter().zip(&want).enumerate() {
                    // Small integers and quarters: every path is exact.
                    assert_eq!(p, q, "{op:?}: way {way}, element {k}");
                }
            }
        }
    }

    /// A small generator (SplitMix64) for the random geometries below and in the direct
    /// path's tests.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
        pub(super) fn int(&mut self, lo: i64, hi: i64) -> i64 {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }

    /// Runs the GEMM path with and without the dense copy of the input on random geometries
    /// (1 to 3 spatial axes, strides, low and high padding of either sign (some beyond every
    /// window), both dilations,
    /// feature and batch groups, batches of small images whose runs the tiles span), in f32
    /// and f64: the two fills build the same patches, so the results agree bit for bit, and
    /// both agree with the interpreter to rounding.
    #[test]
    fn dense_patches_equal_the_table_driven_ones() {
        let mut rng = Rng(3);
        let mut done = 0;
        while done < 150 {
            let ns = rng.int(1, 3) as usize;
            let mut op = ConvGeneral::new(ns);
            let (g, bg) = match rng.int(0, 3) {
                0 => (rng.int(2, 3) as usize, 1),
                1 => (1, rng.int(2, 3) as usize),
                _ => (1, 1),
            };
            op.feature_group_count = g;
            op.batch_group_count = bg;
            let batch = rng.int(1, 3) as usize * bg;
            let fin = rng.int(1, 3) as usize * g;
            let fout = rng.int(1, 3) as usize * g * bg;
            let mut ad = vec![batch, fin];
            let mut bd = vec![fout, fin / g];
            for j in 0..ns {
                ad.push(rng.int(1, 7) as usize);
                bd.push(rng.int(1, 3) as usize);
                op.window_strides[j] = rng.int(1, 2) as usize;
                op.padding[j] = (rng.int(-1, 4), rng.int(-1, 4));
                op.lhs_dilation[j] = rng.int(1, 2) as usize;
                op.rhs_dilation[j] = rng.int(1, 2) as usize;
            }
            for dtype in [DType::F32, DType::F64] {
                let (at, bt) = (Type::new(dtype, &ad), Type::new(dtype, &bd));
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
                let xa = Array::from_f64(ad.as_slice(), x.clone())
                    .unwrap()
                    .cast(dtype);
                let wa = Array::from_f64(bd.as_slice(), w.clone())
                    .unwrap()
                    .cast(dtype);
                let want =
                    Op::Conv(Box::new(op.clone())).eval(&[&xa, &wa]).unwrap()[0].to_f64_vec();
                let s = op.geometry(&at, &bt).unwrap();
                let st = |d: &[usize]| crate::lower::strides(d);
                let block = params(&op, &s, &st(&ad), &st(&bd), &st(ot.dims()));
                // SAFETY: the block describes these buffers.
                let geo = unsafe { Geometry::read(block.as_ptr()) };
                let ways: Vec<Vec<f64>> = [false, true]
                    .iter()
                    .map(|&dense| match dtype {
                        DType::F32 => {
                            let (x, w): (Vec<f32>, Vec<f32>) = (
                                x.iter().map(|&v| v as f32).collect(),
                                w.iter().map(|&v| v as f32).collect(),
                            );
                            let mut out = vec![f32::NAN; want.len()];
                            // SAFETY: the buffers match the geometry.
                            let ran = unsafe {
                                gemm_path(&geo, x.as_ptr(), w.as_ptr(), out.as_mut_ptr(), dense)
                            };
                            assert!(ran);
                            out.iter().map(|&v| v as f64).collect()
                        }
                        _ => {
                            let mut out = vec![f64::NAN; want.len()];
                            // SAFETY: the buffers match the geometry.
                            let ran = unsafe {
                                gemm_path(&geo, x.as_ptr(), w.as_ptr(), out.as_mut_ptr(), dense)
                            };
                            assert!(ran);
                            out
                        }
                    })
                    .collect();
                for (k, ((p, q), r)) in ways[0].iter().zip(&ways[1]).zip(&want).enumerate() {
                    assert_eq!(p.to_bits(), q.to_bits(), "{op:?} {at} {bt}: element {k}");
                    // Eighths times eighths, summed: exact in f64, close in f32.
                    assert!(
                        (q - r).abs() <= 1e-5 * (1.0 + r.abs()),
                        "{op:?}: {q} vs {r}"
                    );
                }
                done += 1;
            }
        }
    }
}
