//! The GEMM path's input materialised once per call with its padding and input dilation (a
//! child module of `crate::conv_kernel`). In this dense copy, laid out `[batch, feature,
//! spatial..]`, every kernel tap of every result position lands on an element (a zero where
//! the convolution sees padding or a dilation hole), so the offset of a patch element splits
//! into a part that depends only on the result position and a part that depends only on the
//! column (input feature and tap). Filling a patch is then a gather of `dense[p + c]` over two
//! small offset tables, with no per-element test for padding: for the small images of a CNN,
//! whose rows are a few elements long, the table-driven fill spent more time per row segment
//! than the GEMM spent on the whole product.
//!
//! The copy is made only when it stays within [`DENSE_FACTOR`] times the input (plus a small
//! allowance); otherwise, or when it cannot be allocated, the kernel fills its patches from
//! the input as before.

use super::{advance, position_dims, scratch, Float, Geometry, Walker};
use smallvec::SmallVec;

/// The dense copy may hold at most this many times the input's elements (plus
/// [`DENSE_SLACK`]).
const DENSE_FACTOR: usize = 8;

/// Elements the dense copy may hold beyond [`DENSE_FACTOR`] times the input.
const DENSE_SLACK: usize = 1 << 16;

/// The shortest average run of consecutive offsets that the gather copies run by run
/// (measured: the 4- and 8-element rows of the digits CNN's planes gathered faster element by
/// element, the 28-element rows of the convolution benchmark's kernel gradients faster whole).
const MIN_RUN: usize = 16;

/// The dense copy of a convolution's input and its strides.
pub(super) struct Dense<T> {
    /// The elements, `[batch, feature, spatial..]` row-major.
    pub(super) buf: super::Scratch<T>,
    /// Element stride of the batch.
    sn: usize,
    /// Element stride of a feature.
    sc: usize,
    /// Element stride of each spatial axis.
    sp: SmallVec<[usize; 4]>,
    /// Per spatial axis, the dense index of tap 0 of result position 0 (`max(0, −low pad)`).
    shift: SmallVec<[usize; 4]>,
}

impl<T: Float> Dense<T> {
    /// Copies the input at `lhs` (as `geo` describes it) into a dense buffer; `None` when the
    /// copy would be too large, cannot be allocated, or a coordinate would not fit.
    ///
    /// # Safety
    /// `lhs` must hold the convolution's input as `geo` describes it.
    pub(super) unsafe fn new(geo: &Geometry, lhs: *const T) -> Option<Dense<T>> {
        let ns = geo.axes.len();
        let nin = geo.n_out.checked_mul(geo.bg)?;
        let cin = geo.i.checked_mul(geo.g)?;
        let mut dims: SmallVec<[usize; 4]> = SmallVec::new();
        let mut shift: SmallVec<[usize; 4]> = SmallVec::new();
        let mut lowpad: SmallVec<[usize; 4]> = SmallVec::new();
        let mut input = nin.checked_mul(cin)?;
        for a in &geo.axes {
            if !a.fits || a.y == 0 || a.k == 0 {
                return None;
            }
            // Every coordinate below fits in i64 (`fits`), so these sums do too.
            let (s, rd, pad) = (a.stride as i64, a.rd as i64, a.pad);
            let sh = (-pad).max(0);
            let extent = (a.y as i64 - 1) * s + (a.k as i64 - 1) * rd + sh + 1;
            dims.push(usize::try_from(extent).ok()?);
            shift.push(sh as usize);
            lowpad.push(pad.max(0) as usize);
            input = input.checked_mul(a.l)?;
        }
        let total = dims
            .iter()
            .try_fold(nin.checked_mul(cin)?, |acc, &d| acc.checked_mul(d))?;
        if total
            > input
                .saturating_mul(DENSE_FACTOR)
                .saturating_add(DENSE_SLACK)
        {
            return None;
        }
        // Not zeroed: every element is written below, the copied ones and the zeros of
        // padding and holes alike (a buffer from the cache holds an earlier call's values).
        let mut buf = scratch::<T>(total, false)?;
        let mut sp: SmallVec<[usize; 4]> = SmallVec::from_elem(1, ns);
        for j in (0..ns.saturating_sub(1)).rev() {
            sp[j] = sp[j + 1] * dims[j + 1];
        }
        let sc = dims.iter().product::<usize>();
        let sn = sc * cin;
        // The input index at dense index `u` of axis `j`: dense index `low pad + x · input
        // dilation` holds input index `x`; the others hold zeros.
        let source = |j: usize, u: usize| -> Option<usize> {
            let q = u.checked_sub(lowpad[j])?;
            let ld = geo.axes[j].ld as usize;
            let x = q / ld;
            (q % ld == 0 && x < geo.axes[j].l).then_some(x)
        };
        let lead = ns.saturating_sub(1);
        let rows: usize = dims[..lead].iter().product();
        // Per dense line (row-major over the leading axes, `d` elements each), the offset of
        // the input line under it from its plane's first input element, or `None` when it
        // lies in padding or a dilation hole: the same in every (batch, feature) plane, so it
        // is worked out once.
        let mut lines: Vec<Option<usize>> = Vec::new();
        lines.try_reserve_exact(rows).ok()?;
        let mut u: SmallVec<[usize; 4]> = SmallVec::from_elem(0, lead);
        for _ in 0..rows {
            let mut src = Some(0usize);
            for (j, &uj) in u.iter().enumerate() {
                src = match (src, source(j, uj)) {
                    (Some(s), Some(x)) => Some(s + x * geo.axes[j].sl),
                    _ => None,
                };
            }
            lines.push(src);
            advance(&mut u, |d| dims[d]);
        }
        // Along the last axis: the dense line's length, and where its `n` input elements go
        // (dense index `low pad + x · dilation` holds input element `x`).
        let (d, lp, ld, n, sl) = match geo.axes.last() {
            None => (1, 0, 1, 1, 1),
            Some(a) => {
                let (lp, ld, d) = (lowpad[ns - 1], a.ld as usize, dims[ns - 1]);
                let n = if lp >= d {
                    0
                } else {
                    ((d - 1 - lp) / ld + 1).min(a.l)
                };
                (d, lp, ld, n, a.sl)
            }
        };
        for nb in 0..nin {
            for c in 0..cin {
                let src0 = nb * geo.s_ln + c * geo.s_lc;
                let plane = &mut buf[nb * sn + c * sc..][..sc];
                for (line, src) in plane.chunks_exact_mut(d).zip(&lines) {
                    let Some(src) = src.map(|s| src0 + s) else {
                        line.fill(T::ZERO);
                        continue;
                    };
                    if ld == 1 && n > 0 {
                        line[..lp].fill(T::ZERO);
                        line[lp + n..].fill(T::ZERO);
                        let to = &mut line[lp..lp + n];
                        if sl == 1 {
                            // SAFETY: `n` consecutive input elements (the caller's contract).
                            let from = unsafe { std::slice::from_raw_parts(lhs.add(src), n) };
                            to.copy_from_slice(from);
                        } else {
                            for (xl, v) in to.iter_mut().enumerate() {
                                // SAFETY: an input element (the caller's contract).
                                *v = unsafe { *lhs.add(src + xl * sl) };
                            }
                        }
                    } else {
                        line.fill(T::ZERO);
                        for xl in 0..n {
                            // SAFETY: as above.
                            line[lp + xl * ld] = unsafe { *lhs.add(src + xl * sl) };
                        }
                    }
                }
            }
        }
        Some(Dense {
            buf,
            sn,
            sc,
            sp,
            shift,
        })
    }

    /// The column offsets of group `t`: one per (input feature, tap) in the patch's column
    /// order, appended to `out`.
    pub(super) fn columns(&self, geo: &Geometry, t: usize, out: &mut Vec<usize>) {
        let ns = geo.axes.len();
        let batch = if geo.bg > 1 {
            t * geo.n_out * self.sn
        } else {
            0
        };
        let base: usize = (0..ns).map(|j| self.shift[j] * self.sp[j]).sum::<usize>() + batch;
        let mut w: SmallVec<[usize; 4]> = SmallVec::from_elem(0, ns);
        for i in 0..geo.i {
            let fbase = base + (geo.feature0(t) + i) * self.sc;
            w.iter_mut().for_each(|v| *v = 0);
            for _ in 0..geo.taps() {
                let tap: usize = (0..ns)
                    .map(|j| w[j] * geo.axes[j].rd as usize * self.sp[j])
                    .sum();
                out.push(fbase + tap);
                advance(&mut w, |d| geo.axes[d].k);
            }
        }
    }

    /// The offsets of `out.len()` consecutive result positions from `pos` (`[batch,
    /// spatial..]`), written to `out`.
    pub(super) fn positions(&self, geo: &Geometry, pos: &[usize], out: &mut [usize]) {
        let steps = std::iter::once(self.sn)
            .chain((0..geo.axes.len()).map(|j| geo.axes[j].stride as usize * self.sp[j]))
            .collect();
        let mut walk = Walker::new(pos, position_dims(geo), steps);
        for o in out.iter_mut() {
            *o = walk.next_offset();
        }
    }
}

/// Runs `(start, length)` of `offsets` whose values climb by one, in order, written to
/// `runs`; `None` when they are too short to be worth copying whole (under [`MIN_RUN`]
/// elements on average) or the list cannot be allocated, and then elements are gathered one
/// by one.
pub(super) fn unit_runs<'r>(
    offsets: &[usize],
    runs: &'r mut Vec<(usize, usize)>,
) -> Option<&'r [(usize, usize)]> {
    runs.clear();
    let mut start = 0;
    for k in 1..=offsets.len() {
        if k == offsets.len() || offsets[k] != offsets[k - 1].wrapping_add(1) {
            if runs.len() * MIN_RUN >= offsets.len() || runs.try_reserve(1).is_err() {
                return None;
            }
            runs.push((start, k - start));
            start = k;
        }
    }
    Some(runs)
}

/// `dst[q] = src[base + offsets[q]]` for every `q`, a run of consecutive offsets at a time
/// when `runs` lists them.
#[inline]
pub(super) fn gather<T: Copy>(
    dst: &mut [T],
    src: &[T],
    base: usize,
    offsets: &[usize],
    runs: Option<&[(usize, usize)]>,
) {
    match runs {
        Some(runs) => {
            for &(start, len) in runs {
                let from = base + offsets[start];
                dst[start..start + len].copy_from_slice(&src[from..from + len]);
            }
        }
        None => {
            for (v, &o) in dst.iter_mut().zip(offsets) {
                *v = src[base + o];
            }
        }
    }
}
