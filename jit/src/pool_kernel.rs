//! A runtime kernel for the common case of the window ops (pooling): windows along at most two
//! neighbouring dimensions, no padding below, no dilation, every window inside the operand.
//! Such an op is a loop over `[B, H, W, C]` (the dimensions before the windowed ones merged
//! into `B`, those after into `C`), which covers NCHW and NHWC pooling in one and two
//! dimensions with any strides. Compiled code calls it as `ferrax_pool_f64` / `_f32` / `_i32`
//! with the same arguments as the generic window kernel (`crate::lower::window`), the block
//! being the one [`plan`] lays out at compile time; other window ops keep the generic loop.
//!
//! The kernel computes what the interpreter's loop (`ferrax_ir::ops::window`) computes, bit for
//! bit: each window is visited in row-major order of its index, sums start at `+0` and add in
//! that order, max and min fold with the interpreter's NaN-propagating `max`/`min`, the
//! selected element is the first extremum by the interpreter's rule (a NaN wins, `+0` beats an
//! earlier `−0` for max), and `select_and_scatter_add` adds into zeros in row-major order of the
//! windows. What it saves is the generic loop's per-element bookkeeping (multi-indices,
//! dynamic calls, padding checks): every offset here is a product of loop counters.

use ferrax_ir::ops::{Monoid, Select, WindowOp};

/// Entries of the parameter block: `[kind, B, H, W, C, H out, W out, window H, window W,
/// stride H, stride W]`.
const BLOCK: usize = 11;

/// What the kernel computes (the block's first entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `reduce_window_*`.
    Reduce(Monoid),
    /// `select_and_gather_add`.
    Gather(Select),
    /// `select_and_scatter_add`.
    Scatter(Select),
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Reduce(Monoid::Sum),
        Kind::Reduce(Monoid::Max),
        Kind::Reduce(Monoid::Min),
        Kind::Gather(Select::Max),
        Kind::Gather(Select::Min),
        Kind::Scatter(Select::Max),
        Kind::Scatter(Select::Min),
    ];

    fn of(op: &WindowOp) -> Kind {
        match op {
            WindowOp::Reduce { monoid, .. } => Kind::Reduce(*monoid),
            WindowOp::SelectAndGatherAdd { select, .. } => Kind::Gather(*select),
            WindowOp::SelectAndScatterAdd { select, .. } => Kind::Scatter(*select),
        }
    }

    fn code(self) -> i64 {
        Kind::ALL.iter().position(|&k| k == self).unwrap_or(0) as i64
    }

    fn from_code(v: i64) -> Option<Kind> {
        Kind::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

/// The parameter block of `op` on an operand of `dims` when the op takes this kernel (see the
/// module documentation), `None` when it needs the generic loop.
pub(crate) fn plan(op: &WindowOp, dims: &[usize]) -> Option<Vec<i64>> {
    let w = op.window();
    let out = w.out_dims(dims).ok()?;
    let rank = dims.len();
    if dims.contains(&0) || out.contains(&0) {
        return None;
    }
    for d in 0..rank {
        if w.base_dilation[d] != 1 || w.window_dilation[d] != 1 || w.lo[d] != 0 {
            return None;
        }
        // The last window ends inside the operand (high padding, if any, is never reached).
        let end = (out[d] - 1)
            .checked_mul(w.strides[d])?
            .checked_add(w.dims[d])?;
        if end > dims[d] {
            return None;
        }
    }
    // Windowed dimensions: the others have window 1 and stride 1 (so they keep their size).
    let windowed: Vec<usize> = (0..rank)
        .filter(|&d| w.dims[d] != 1 || w.strides[d] != 1)
        .collect();
    let (d0, d1) = match windowed.as_slice() {
        [] => (rank, rank),
        [d] => (*d, d + 1),
        [d, e] if e == &(d + 1) => (*d, e + 1),
        _ => return None,
    };
    let product = |r: std::ops::Range<usize>| {
        dims[r]
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
    };
    let (b, c) = (product(0..d0)?, product(d1..rank)?);
    // Per windowed axis: size, result size, window, stride; a missing axis is a unit one.
    let axis = |d: Option<usize>| match d {
        Some(d) => [dims[d], out[d], w.dims[d], w.strides[d]],
        None => [1, 1, 1, 1],
    };
    let (h, v) = match d1 - d0 {
        2 => (axis(Some(d0)), axis(Some(d0 + 1))),
        1 => (axis(None), axis(Some(d0))),
        _ => (axis(None), axis(None)),
    };
    let block = [
        Kind::of(op).code() as usize,
        b,
        h[0],
        v[0],
        c,
        h[1],
        v[1],
        h[2],
        v[2],
        h[3],
        v[3],
    ];
    block.iter().map(|&x| i64::try_from(x).ok()).collect()
}

/// A decoded and checked parameter block.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    kind: Kind,
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
}

impl Geometry {
    /// Decodes `p`; `None` when it is malformed, a size overflows or a window leaves the
    /// operand.
    fn decode(p: &[i64]) -> Option<Geometry> {
        if p.len() != BLOCK {
            return None;
        }
        let kind = Kind::from_code(p[0])?;
        let v: Vec<usize> = p[1..]
            .iter()
            .map(|&x| usize::try_from(x).ok())
            .collect::<Option<_>>()?;
        let g = Geometry {
            kind,
            b: v[0],
            h: v[1],
            w: v[2],
            c: v[3],
            ho: v[4],
            wo: v[5],
            kh: v[6],
            kw: v[7],
            sh: v[8],
            sw: v[9],
        };
        // Every window, and so every offset the loops form, lies inside the operand.
        let fits = |o: usize, s: usize, k: usize, n: usize| -> bool {
            o >= 1
                && k >= 1
                && (o - 1)
                    .checked_mul(s)
                    .and_then(|x| x.checked_add(k))
                    .is_some_and(|end| end <= n)
        };
        if !fits(g.ho, g.sh, g.kh, g.h) || !fits(g.wo, g.sw, g.kw, g.w) || g.c == 0 || g.b == 0 {
            return None;
        }
        g.in_size()?;
        g.out_size()?;
        Some(g)
    }

    fn in_size(&self) -> Option<usize> {
        self.b
            .checked_mul(self.h)?
            .checked_mul(self.w)?
            .checked_mul(self.c)
    }

    fn out_size(&self) -> Option<usize> {
        self.b
            .checked_mul(self.ho)?
            .checked_mul(self.wo)?
            .checked_mul(self.c)
    }

    /// Calls `f(o, base)` for every result position `(b, oh, ow)` in row-major order, with
    /// `o` the offset of its first result element and `base` that of its window's first
    /// operand element (both in elements; a position's `C` elements follow each).
    fn for_each_position(&self, mut f: impl FnMut(usize, usize)) {
        let mut o = 0;
        for b in 0..self.b {
            for oh in 0..self.ho {
                let row = (b * self.h + oh * self.sh) * self.w;
                for ow in 0..self.wo {
                    f(o, (row + ow * self.sw) * self.c);
                    o += self.c;
                }
            }
        }
    }

    /// Whether the windows tile the operand with one feature: each element lies in exactly
    /// one window.
    fn tiles(&self) -> bool {
        self.c == 1
            && self.kh == self.sh
            && self.kw == self.sw
            && self.ho * self.sh == self.h
            && self.wo * self.sw == self.w
    }

    /// The offsets of a window's elements relative to its first, in window order.
    fn window_offsets(&self) -> Vec<usize> {
        (0..self.kh)
            .flat_map(|i| (0..self.kw).map(move |j| (i * self.w + j) * self.c))
            .collect()
    }
}

/// The element types of the kernel, with the interpreter's arithmetic for the window ops.
trait Elem: Copy + PartialOrd + Send + Sync {
    /// Zero, the identity of sums.
    const ZERO: Self;
    /// The identity of `max`.
    const LOWEST: Self;
    /// The identity of `min`.
    const HIGHEST: Self;
    /// `a + b` (wrapping for integers).
    fn add(self, b: Self) -> Self;
    /// Whether the value is a NaN.
    fn is_nan(self) -> bool;
    /// Whether the value is `−0`.
    fn is_neg_zero(self) -> bool;
    /// An integer that orders non-NaN values as the interpreter's `max` and `min` do: by
    /// value, with `−0` below `+0` (one-to-one, so [`Elem::from_key`] undoes it).
    type Key: Copy + Ord;
    /// The key of a non-NaN value.
    fn key(self) -> Self::Key;
    /// The value of a key.
    fn from_key(k: Self::Key) -> Self;
    /// `self` when `keep`, else `+0`, without a branch.
    fn or_zero(self, keep: bool) -> Self;
}

/// `a` when `take_a`, else `b`, without a branch.
#[inline(always)]
fn pick<T>(take_a: bool, a: T, b: T) -> T {
    std::hint::select_unpredictable(take_a, a, b)
}

macro_rules! float_elem {
    ($t:ty, $i:ty) => {
        impl Elem for $t {
            type Key = $i;
            fn key(self) -> $i {
                // Negative values (sign bit set) have their other bits flipped, so that they
                // order below `−0` by magnitude; the rest order as their bits.
                let b = self.to_bits() as $i;
                b ^ ((b >> (<$i>::BITS - 1)) & <$i>::MAX)
            }
            fn from_key(k: $i) -> $t {
                <$t>::from_bits((k ^ ((k >> (<$i>::BITS - 1)) & <$i>::MAX)) as _)
            }
            fn or_zero(self, keep: bool) -> $t {
                // `+0` is the value whose bits are all zero.
                <$t>::from_bits(((self.to_bits() as $i) & (keep as $i).wrapping_neg()) as _)
            }
            const ZERO: $t = 0.0;
            const LOWEST: $t = <$t>::NEG_INFINITY;
            const HIGHEST: $t = <$t>::INFINITY;
            fn add(self, b: $t) -> $t {
                self + b
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn is_neg_zero(self) -> bool {
                self.to_bits() == (-0.0 as $t).to_bits()
            }
        }
    };
}

float_elem!(f32, i32);
float_elem!(f64, i64);

impl Elem for i32 {
    type Key = i32;
    fn key(self) -> i32 {
        self
    }
    fn from_key(k: i32) -> i32 {
        k
    }
    fn or_zero(self, keep: bool) -> i32 {
        self & (keep as i32).wrapping_neg()
    }
    const ZERO: i32 = 0;
    const LOWEST: i32 = i32::MIN;
    const HIGHEST: i32 = i32::MAX;
    fn add(self, b: i32) -> i32 {
        self.wrapping_add(b)
    }
    fn is_nan(self) -> bool {
        false
    }
    fn is_neg_zero(self) -> bool {
        false
    }
}

// The comparisons below use the non-short-circuit `&` and `|` on purpose: on random data the
// outcome of a comparison is unpredictable, and as one flag selecting between two values the
// selection is `select_unpredictable`, so the compiler emits conditional moves instead of branches that mispredict half the time
// (measured: the max-pool of the digits CNN ran about four times slower with branches).

/// The interpreter's `max`: a NaN operand is returned as is, and `+0` beats `−0`.
#[inline(always)]
fn max_nan<T: Elem>(a: T, b: T) -> T {
    let take_b = !a.is_nan() & (b.is_nan() | (b > a) | ((b == a) & a.is_neg_zero()));
    pick(take_b, b, a)
}

/// The interpreter's `min`: a NaN operand is returned as is, and `−0` beats `+0`.
#[inline(always)]
fn min_nan<T: Elem>(a: T, b: T) -> T {
    let take_b = !a.is_nan() & (b.is_nan() | (b < a) | ((b == a) & b.is_neg_zero()));
    pick(take_b, b, a)
}

/// Whether `c` replaces `best` as a window's selected element (the interpreter's rule: a NaN
/// is never replaced and replaces anything else; among equal values `+0` replaces `−0` for
/// max and `−0` replaces `+0` for min).
#[inline(always)]
fn better<T: Elem>(select: Select, c: T, best: T) -> bool {
    let wins = match select {
        Select::Max => (c > best) | ((c == best) & best.is_neg_zero() & !c.is_neg_zero()),
        Select::Min => (c < best) | ((c == best) & c.is_neg_zero() & !best.is_neg_zero()),
    };
    !best.is_nan() & (c.is_nan() | wins)
}

/// Folds every window of `a` with `f` from `init` into `out`.
fn reduce<T: Elem>(g: &Geometry, a: &[T], out: &mut [T], init: T, f: impl Fn(T, T) -> T) {
    let offsets = g.window_offsets();
    let c = g.c;
    if c == 1 {
        // One feature (NCHW): the accumulator stays in a register.
        g.for_each_position(|o, base| {
            out[o] = offsets.iter().fold(init, |acc, &k| f(acc, a[base + k]));
        });
        return;
    }
    g.for_each_position(|o, base| {
        let dst = &mut out[o..o + c];
        dst.fill(init);
        for &k in &offsets {
            let src = &a[base + k..base + k + c];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f(*d, s);
            }
        }
    });
}

/// `reduce_window_max` (`max`) or `_min` of an operand without NaNs and with one feature: the
/// extremum of the windows' keys (see [`Elem::key`]), which is the value the interpreter's
/// fold returns (the keys order `−0` below `+0` as its `max` and `min` do, and equal keys are
/// equal bits), in a few integer instructions per element.
fn reduce_keys<T: Elem>(g: &Geometry, a: &[T], out: &mut [T], max: bool) {
    let offsets = g.window_offsets();
    g.for_each_position(|o, base| {
        let mut best = a[base].key();
        for &k in &offsets[1..] {
            let v = a[base + k].key();
            best = pick(beats(max, v, best), v, best);
        }
        out[o] = T::from_key(best);
    });
}

/// The operand offset of the selected element of each window and feature: calls
/// `f(o, start, i)` for result element `o`, the operand offset `start` of its window's first
/// element and its selected operand element `i`, in row-major order of the result.
fn select_each<T: Elem>(
    g: &Geometry,
    select: Select,
    x: &[T],
    mut f: impl FnMut(usize, usize, usize),
) {
    let offsets = g.window_offsets();
    if g.c == 1 && !has_nan(x) {
        // One feature and no NaN: the first element with the extreme key wins, which is the
        // interpreter's rule on such operands (`+0` beats `−0` for max and loses for min, as
        // the keys order them), with the selected key carried in a register.
        let max = select == Select::Max;
        g.for_each_position(|o, base| {
            let (mut best, mut at) = (x[base].key(), base);
            for &k in &offsets[1..] {
                let i = base + k;
                let v = x[i].key();
                let wins = beats(max, v, best);
                best = pick(wins, v, best);
                at = pick(wins, i, at);
            }
            f(o, base, at);
        });
        return;
    }
    g.for_each_position(|o, base| {
        for e in 0..g.c {
            let mut best = base + e;
            for &k in &offsets[1..] {
                let i = base + k + e;
                // The selected value is read again rather than carried: a float carried
                // through the selection makes the compiler branch on it.
                best = pick(better(select, x[i], x[best]), i, best);
            }
            f(o + e, base + e, best);
        }
    });
}

/// Whether key `v` replaces `best`: strictly above it for max, below for min.
#[inline(always)]
fn beats<K: Ord>(max: bool, v: K, best: K) -> bool {
    if max {
        v > best
    } else {
        v < best
    }
}

/// Whether any element is a NaN.
fn has_nan<T: Elem>(x: &[T]) -> bool {
    // Folded without an early exit, so that the loop vectorises.
    x.iter().fold(false, |any, v| any | v.is_nan())
}

/// `select_and_scatter_add` when the windows tile the operand ([`Geometry::tiles`]): each
/// window's elements are written once, the selected one with `0 + value` (the interpreter
/// adds into zeros, so `−0` becomes `+0`), the others with zeros, with no zero fill first.
fn scatter_tiles<T: Elem>(g: &Geometry, select: Select, a: &[T], x: &[T], out: &mut [T]) {
    let offsets = g.window_offsets();
    select_each(g, select, x, |o, start, i| {
        for &k in &offsets {
            out[start + k] = T::ZERO;
        }
        out[i] = T::ZERO.add(a[o]);
    });
}

/// Whether the windows are 2×2 with stride 2 over one feature (the common max pool of NCHW
/// images), which [`reduce_pairs`] and [`scatter_pairs`] compute row pair by row pair.
fn pairs(g: &Geometry) -> bool {
    g.c == 1 && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2
}

/// Calls `f(r0, r1, dst)` for each pair of operand rows `2·oh`, `2·oh + 1` (their first
/// `2·wo` elements) of each batch element and the result row `oh` (`wo` elements); the
/// geometry is one of [`pairs`].
#[inline(always)]
fn row_pairs<T, U>(g: &Geometry, a: &[T], out: &mut [U], mut f: impl FnMut(&[T], &[T], &mut [U])) {
    let (w, wo) = (g.w, g.wo);
    for (b, rows) in out.chunks_exact_mut(g.ho * wo).enumerate() {
        for (oh, dst) in rows.chunks_exact_mut(wo).enumerate() {
            let r0 = (b * g.h + 2 * oh) * w;
            f(&a[r0..r0 + 2 * wo], &a[r0 + w..r0 + w + 2 * wo], dst);
        }
    }
}

/// [`reduce_keys`] on 2×2 windows of stride 2 ([`pairs`]): the extremum of four keys,
/// written so that the compiler vectorises it (the keys' integer max or min is the
/// interpreter's fold, as in [`reduce_keys`], on windows without NaNs). Returns whether a
/// window held a NaN, in which case the caller computes the result again by the
/// interpreter's rule: the check rides along the one pass over the operand instead of a pass
/// of its own before it (measured: that pass was about a third of the pooling pair's time in
/// the digits CNN's step, as the operand comes from memory each time).
fn reduce_pairs<T: Elem, const MAX: bool>(g: &Geometry, a: &[T], out: &mut [T]) -> bool {
    // The keys of NaNs lie above the key of `+∞` (positive NaNs) or below that of `−∞`
    // (negative ones), so the largest and smallest keys read tell whether a window held one;
    // kept as integer extrema, the loop stays vectorised (a flag per element did not).
    let (mut hi, mut lo) = (T::LOWEST.key(), T::HIGHEST.key());
    row_pairs(g, a, out, |r0, r1, dst| {
        let (mut h, mut l) = (hi, lo);
        for ((d, p), q) in dst
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            let k = [p[0].key(), p[1].key(), q[0].key(), q[1].key()];
            let mx = k[0].max(k[1]).max(k[2].max(k[3]));
            let mn = k[0].min(k[1]).min(k[2].min(k[3]));
            h = h.max(mx);
            l = l.min(mn);
            *d = T::from_key(if MAX { mx } else { mn });
        }
        (hi, lo) = (h, l);
    });
    hi > T::HIGHEST.key() || lo < T::LOWEST.key()
}

/// `select_and_scatter_add` on 2×2 windows of stride 2 ([`pairs`]): each window's first
/// element with the extreme key (row-major order, as [`select_each`] picks) receives
/// `0 + value`, the other three zeros; the windows tile the rows they cover, and rows or
/// columns no window covers are zeroed. The selection is four comparisons with the window's
/// extremum and masks, no branches (on random data a branch per comparison mispredicts often;
/// measured, it made this the step's slowest loop). That is the interpreter's selection on
/// windows of `x` without NaNs; the result says whether a window held one, in which case the
/// caller computes the whole result again (as in [`reduce_pairs`]).
fn scatter_pairs<T: Elem, const MAX: bool>(g: &Geometry, a: &[T], x: &[T], out: &mut [T]) -> bool {
    let ext = |p: T::Key, q: T::Key| if MAX { p.max(q) } else { p.min(q) };
    let mut nan = false;
    let (w, wo) = (g.w, g.wo);
    if 2 * g.ho != g.h || 2 * wo != w {
        out.fill(T::ZERO);
    }
    for b in 0..g.b {
        for oh in 0..g.ho {
            let r0 = (b * g.h + 2 * oh) * w;
            let src = &a[(b * g.ho + oh) * wo..][..wo];
            let (x0, x1) = (&x[r0..r0 + 2 * wo], &x[r0 + w..r0 + w + 2 * wo]);
            let (o0, o1) = out[r0..r0 + w + 2 * wo].split_at_mut(w);
            let (o0, o1) = (&mut o0[..2 * wo], &mut o1[..2 * wo]);
            let src = &src[..wo];
            for j in 0..wo {
                let e = [x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]];
                nan |= e[0].is_nan() | e[1].is_nan() | e[2].is_nan() | e[3].is_nan();
                let k = e.map(Elem::key);
                let m = ext(ext(k[0], k[1]), ext(k[2], k[3]));
                let s0 = k[0] == m;
                let s1 = !s0 & (k[1] == m);
                let s2 = !(s0 | s1) & (k[2] == m);
                let s3 = !(s0 | s1 | s2);
                let v = T::ZERO.add(src[j]);
                o0[2 * j] = v.or_zero(s0);
                o0[2 * j + 1] = v.or_zero(s1);
                o1[2 * j] = v.or_zero(s2);
                o1[2 * j + 1] = v.or_zero(s3);
            }
        }
    }
    nan
}

/// The keys of four f32 lanes (see `Elem::key`); the map is its own inverse, so it also
/// turns four keys back into values.
///
/// # Safety
/// The CPU must have `sse4.1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
#[inline]
unsafe fn key4(b: std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    _mm_xor_si128(
        b,
        _mm_and_si128(_mm_srai_epi32(b, 31), _mm_set1_epi32(i32::MAX)),
    )
}

/// Four 2×2 windows of f32 side by side, from the eight values at `p0` (their top row) and
/// at `p1` (their bottom row): the keys of the windows' four elements in row-major order
/// (even and odd columns of each row) and the keys' maximum (or minimum, `MAX` false). Lanes
/// holding a NaN are or-ed into `nans` (unordered comparisons of the values with themselves).
///
/// # Safety
/// The CPU must have `sse4.1`, and `p0` and `p1` must each point to eight readable values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
#[inline]
unsafe fn windows4<const MAX: bool>(
    p0: *const f32,
    p1: *const f32,
    nans: &mut std::arch::x86_64::__m128,
) -> ([std::arch::x86_64::__m128i; 4], std::arch::x86_64::__m128i) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees eight values at each pointer.
    let (a0, a1, b0, b1) = unsafe {
        (
            _mm_loadu_ps(p0),
            _mm_loadu_ps(p0.add(4)),
            _mm_loadu_ps(p1),
            _mm_loadu_ps(p1.add(4)),
        )
    };
    let un = |v: __m128| _mm_cmpunord_ps(v, v);
    *nans = _mm_or_ps(
        *nans,
        _mm_or_ps(_mm_or_ps(un(a0), un(a1)), _mm_or_ps(un(b0), un(b1))),
    );
    // SAFETY: the CPU has `sse4.1` (this function's own requirement).
    let k = |v: __m128| unsafe { key4(_mm_castps_si128(v)) };
    let keys = [
        k(_mm_shuffle_ps::<0b10_00_10_00>(a0, a1)),
        k(_mm_shuffle_ps::<0b11_01_11_01>(a0, a1)),
        k(_mm_shuffle_ps::<0b10_00_10_00>(b0, b1)),
        k(_mm_shuffle_ps::<0b11_01_11_01>(b0, b1)),
    ];
    let ext = |p: __m128i, q: __m128i| {
        if MAX {
            _mm_max_epi32(p, q)
        } else {
            _mm_min_epi32(p, q)
        }
    };
    let m = ext(ext(keys[0], keys[1]), ext(keys[2], keys[3]));
    (keys, m)
}

/// [`scatter_pairs`] on f32 with `sse4.1` vectors of four windows: the two rows of four
/// windows are split into their even and odd columns, the keys' maximum (or minimum) is the
/// windows' extremum, and comparisons with it give the first extremum's mask; windows past
/// the last whole group of four take the scalar loop. Bit for bit the same as
/// [`scatter_pairs`] (the same keys, extremum and first-match rule), and the same answer to
/// whether a window held a NaN.
///
/// # Safety
/// The CPU must have `sse4.1`; the geometry is one of [`pairs`] and the slices' lengths were
/// checked against it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn scatter_pairs_f32<const MAX: bool>(
    g: &Geometry,
    a: &[f32],
    x: &[f32],
    out: &mut [f32],
) -> bool {
    use std::arch::x86_64::*;
    let (w, wo) = (g.w, g.wo);
    // Lanes that met a NaN: unordered comparisons of the windows' values with themselves.
    let mut nans = _mm_setzero_ps();
    let mut nan = false;
    if 2 * g.ho != g.h || 2 * wo != w {
        out.fill(0.0);
    }
    let whole = wo / 4 * 4;
    for b in 0..g.b {
        for oh in 0..g.ho {
            let r0 = (b * g.h + 2 * oh) * w;
            let src = &a[(b * g.ho + oh) * wo..][..wo];
            let (x0, x1) = (&x[r0..r0 + 2 * wo], &x[r0 + w..r0 + w + 2 * wo]);
            let (o0, o1) = out[r0..r0 + w + 2 * wo].split_at_mut(w);
            let (o0, o1) = (&mut o0[..2 * wo], &mut o1[..2 * wo]);
            let mut j = 0;
            while j < whole {
                // SAFETY: windows `j..j + 4` lie in the rows (`j + 4 ≤ wo`), so their eight
                // columns `2j..2j + 8` of each row and their four values are in the slices.
                unsafe {
                    let p = (x0.as_ptr().add(2 * j), x1.as_ptr().add(2 * j));
                    let ([k0, k1, k2, _], m) = windows4::<MAX>(p.0, p.1, &mut nans);
                    let s0 = _mm_cmpeq_epi32(k0, m);
                    let s1 = _mm_andnot_si128(s0, _mm_cmpeq_epi32(k1, m));
                    let taken = _mm_or_si128(s0, s1);
                    let s2 = _mm_andnot_si128(taken, _mm_cmpeq_epi32(k2, m));
                    let s3 = _mm_andnot_si128(_mm_or_si128(taken, s2), _mm_set1_epi32(-1));
                    // `0 + value`, so that `−0` becomes `+0` as in the interpreter.
                    let v = _mm_add_ps(_mm_setzero_ps(), _mm_loadu_ps(src.as_ptr().add(j)));
                    let sel = |s: __m128i| _mm_and_ps(v, _mm_castsi128_ps(s));
                    let (e0, d0, e1, d1) = (sel(s0), sel(s1), sel(s2), sel(s3));
                    let q0 = o0.as_mut_ptr().add(2 * j);
                    _mm_storeu_ps(q0, _mm_unpacklo_ps(e0, d0));
                    _mm_storeu_ps(q0.add(4), _mm_unpackhi_ps(e0, d0));
                    let q1 = o1.as_mut_ptr().add(2 * j);
                    _mm_storeu_ps(q1, _mm_unpacklo_ps(e1, d1));
                    _mm_storeu_ps(q1.add(4), _mm_unpackhi_ps(e1, d1));
                }
                j += 4;
            }
            for j in whole..wo {
                let e = [x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]];
                nan |= e.iter().any(|v| v.is_nan());
                let k = e.map(Elem::key);
                let ext = |p: i32, q: i32| if MAX { p.max(q) } else { p.min(q) };
                let m = ext(ext(k[0], k[1]), ext(k[2], k[3]));
                let s0 = k[0] == m;
                let s1 = !s0 & (k[1] == m);
                let s2 = !(s0 | s1) & (k[2] == m);
                let v = 0.0 + src[j];
                o0[2 * j] = v.or_zero(s0);
                o0[2 * j + 1] = v.or_zero(s1);
                o1[2 * j] = v.or_zero(s2);
                o1[2 * j + 1] = v.or_zero(!(s0 | s1 | s2));
            }
        }
    }
    nan | (_mm_movemask_ps(nans) != 0)
}

/// [`reduce_pairs`] on f32 with `sse4.1` vectors of four windows, as in
/// [`scatter_pairs_f32`]: the two rows of four windows split into their even and odd columns,
/// the windows' extremum the keys' maximum (or minimum), the NaN check unordered comparisons
/// of the values with themselves; windows past the last whole group of four take the scalar
/// loop. Bit for bit the same as [`reduce_pairs`] (the keys' extremum), and the same answer to
/// whether a window held a NaN. (Compiled for `avx2`, the generic loop did not vectorise
/// across the CNN's four windows to a row.)
///
/// # Safety
/// The CPU must have `sse4.1`; the geometry is one of [`pairs`] and the slices' lengths were
/// checked against it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn reduce_pairs_f32<const MAX: bool>(g: &Geometry, a: &[f32], out: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    let mut nans = _mm_setzero_ps();
    let mut nan = false;
    let whole = g.wo / 4 * 4;
    row_pairs(g, a, out, |r0, r1, dst| {
        let mut j = 0;
        while j < whole {
            // SAFETY: windows `j..j + 4` lie in the rows (`j + 4 ≤ wo`), so their eight
            // columns `2j..2j + 8` of each row and their four results are in the slices.
            unsafe {
                let (_, m) =
                    windows4::<MAX>(r0.as_ptr().add(2 * j), r1.as_ptr().add(2 * j), &mut nans);
                _mm_storeu_ps(dst.as_mut_ptr().add(j), _mm_castsi128_ps(key4(m)));
            }
            j += 4;
        }
        for j in whole..dst.len() {
            let e = [r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]];
            nan |= e.iter().any(|v| v.is_nan());
            let k = e.map(Elem::key);
            let m = if MAX {
                k[0].max(k[1]).max(k[2].max(k[3]))
            } else {
                k[0].min(k[1]).min(k[2].min(k[3]))
            };
            dst[j] = f32::from_key(m);
        }
    });
    nan | (_mm_movemask_ps(nans) != 0)
}

/// The element types whose 2×2 pooling and scatter have vector loops.
trait Pairs: Elem {
    /// [`reduce_pairs`], with the vector loop when the CPU has it; true when a window held a
    /// NaN (the result must then be computed again).
    fn reduce_pairs_fast<const MAX: bool>(g: &Geometry, a: &[Self], out: &mut [Self]) -> bool {
        reduce_pairs::<Self, MAX>(g, a, out)
    }

    /// [`scatter_pairs`], with the vector loop when the CPU has it; true when a window held a
    /// NaN (the result must then be computed again).
    fn scatter_pairs_fast<const MAX: bool>(
        g: &Geometry,
        a: &[Self],
        x: &[Self],
        out: &mut [Self],
    ) -> bool {
        scatter_pairs::<Self, MAX>(g, a, x, out)
    }
}

impl Pairs for f32 {
    fn reduce_pairs_fast<const MAX: bool>(g: &Geometry, a: &[f32], out: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.1") {
            // SAFETY: the CPU has `sse4.1`; the geometry and lengths are the caller's.
            return unsafe { reduce_pairs_f32::<MAX>(g, a, out) };
        }
        reduce_pairs::<f32, MAX>(g, a, out)
    }
    fn scatter_pairs_fast<const MAX: bool>(
        g: &Geometry,
        a: &[f32],
        x: &[f32],
        out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.1") {
            // SAFETY: the CPU has `sse4.1`; the geometry and lengths are the caller's.
            return unsafe { scatter_pairs_f32::<MAX>(g, a, x, out) };
        }
        scatter_pairs::<f32, MAX>(g, a, x, out)
    }
}
impl Pairs for f64 {}
impl Pairs for i32 {}

/// Runs the op of `g` (see the module documentation): `a` is the reduced, gathered or
/// scattered operand, `x` the one the windows select on. The slices' lengths were checked.
fn run<T: Pairs>(g: &Geometry, a: &[T], x: &[T], out: &mut [T]) {
    // The 2×2 paths check for NaNs as they go and leave the windows that had one to the
    // general paths below, which then rewrite the whole result.
    let done = match g.kind {
        Kind::Reduce(Monoid::Max) if pairs(g) => !T::reduce_pairs_fast::<true>(g, a, out),
        Kind::Reduce(Monoid::Min) if pairs(g) => !T::reduce_pairs_fast::<false>(g, a, out),
        Kind::Scatter(Select::Max) if pairs(g) => !T::scatter_pairs_fast::<true>(g, a, x, out),
        Kind::Scatter(Select::Min) if pairs(g) => !T::scatter_pairs_fast::<false>(g, a, x, out),
        Kind::Reduce(_) | Kind::Gather(_) | Kind::Scatter(_) => false,
    };
    if done {
        return;
    }
    let keyed = || g.c == 1 && !has_nan(a);
    match g.kind {
        Kind::Reduce(Monoid::Sum) => reduce(g, a, out, T::ZERO, T::add),
        Kind::Reduce(Monoid::Max) if keyed() => reduce_keys(g, a, out, true),
        Kind::Reduce(Monoid::Min) if keyed() => reduce_keys(g, a, out, false),
        Kind::Reduce(Monoid::Max) => reduce(g, a, out, T::LOWEST, max_nan),
        Kind::Reduce(Monoid::Min) => reduce(g, a, out, T::HIGHEST, min_nan),
        Kind::Gather(s) => select_each(g, s, x, |o, _, i| out[o] = a[i]),
        Kind::Scatter(s) if g.tiles() => scatter_tiles(g, s, a, x, out),
        Kind::Scatter(s) => {
            out.fill(T::ZERO);
            select_each(g, s, x, |o, _, i| out[i] = out[i].add(a[o]));
        }
    }
}

/// Checks the block `p` against the buffers' lengths and runs it; false (doing nothing) when
/// they disagree.
fn kernel<T: Pairs>(p: &[i64], a: &[T], x: &[T], out: &mut [T]) -> bool {
    let Some(g) = Geometry::decode(p) else {
        return false;
    };
    let (Some(ni), Some(no)) = (g.in_size(), g.out_size()) else {
        return false;
    };
    let ok = match g.kind {
        Kind::Reduce(_) => a.len() == ni && out.len() == no,
        Kind::Gather(_) => a.len() == ni && x.len() == ni && out.len() == no,
        Kind::Scatter(_) => a.len() == no && x.len() == ni && out.len() == ni,
    };
    if ok {
        run(&g, a, x, out);
    }
    ok
}

/// A slice of `n` elements at `p`, empty (without reading `p`) when `n` is 0.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` initialised elements valid for the slice's lifetime.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `n` elements at `p`.
        unsafe { std::slice::from_raw_parts(p, n) }
    }
}

macro_rules! pool_kernels {
    ($($name:ident: $t:ty;)*) => {$(
        /// Runs a pooling op on buffers of one dtype (see the module documentation).
        ///
        /// # Safety
        /// `p` points to `np` i64 parameters, `a` and `x` to `na` and `nx` readable elements,
        /// `out` to `nout` writable elements that overlap neither input (null pointers are
        /// allowed for empty buffers).
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            p: *const i64,
            np: usize,
            a: *const $t,
            na: usize,
            x: *const $t,
            nx: usize,
            out: *mut $t,
            nout: usize,
        ) {
            // SAFETY: the generated code passes buffers of exactly these sizes.
            let (p, a, x) = unsafe { (slice(p, np), slice(a, na), slice(x, nx)) };
            let out: &mut [$t] = if nout == 0 {
                &mut []
            } else {
                // SAFETY: as above; a window op's result shares memory with no operand.
                unsafe { std::slice::from_raw_parts_mut(out, nout) }
            };
            // The block and the sizes come from the same checked types, so they agree.
            let ran = kernel(p, a, x, out);
            debug_assert!(ran, "pooling kernel parameters disagree with the buffers");
        }
    )*

        /// The kernel symbols of this file and their addresses.
        pub(crate) fn symbol(name: &str) -> Option<*const u8> {
            match name {
                $(stringify!($name) => Some($name as *const u8),)*
                _ => None,
            }
        }
    };
}

pool_kernels! {
    ferrax_pool_f64: f64;
    ferrax_pool_f32: f32;
    ferrax_pool_i32: i32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrax_ir::ops::Window;

    fn op(window: Window) -> WindowOp {
        WindowOp::Reduce {
            monoid: Monoid::Max,
            window,
        }
    }

    /// Which windows take this kernel, and how their dimensions merge.
    #[test]
    fn plans_merge_the_unwindowed_dimensions() {
        let nchw = op(Window::new(&[1, 1, 2, 2]).with_strides(&[1, 1, 2, 2]));
        assert_eq!(
            plan(&nchw, &[3, 4, 8, 9]).unwrap(),
            vec![1, 12, 8, 9, 1, 4, 4, 2, 2, 2, 2]
        );
        let nhwc = op(Window::new(&[1, 3, 3, 1]).with_strides(&[1, 2, 2, 1]));
        assert_eq!(
            plan(&nhwc, &[2, 7, 7, 5]).unwrap(),
            vec![1, 2, 7, 7, 5, 3, 3, 3, 3, 2, 2]
        );
        let one_d = op(Window::new(&[1, 3, 1]).with_strides(&[1, 3, 1]));
        assert_eq!(
            plan(&one_d, &[2, 10, 4]).unwrap(),
            vec![1, 2, 1, 10, 4, 1, 3, 1, 3, 1, 3]
        );
        // Padding below, dilations, windows apart or in three dimensions keep the generic loop.
        let padded = op(Window::new(&[2, 2]).with_padding(&[(1, 0), (0, 0)]));
        assert!(plan(&padded, &[4, 4]).is_none());
        let dilated = op(Window::new(&[2, 2]).with_window_dilation(&[1, 2]));
        assert!(plan(&dilated, &[4, 4]).is_none());
        let apart = op(Window::new(&[2, 1, 2]));
        assert!(plan(&apart, &[4, 4, 4]).is_none());
        let three = op(Window::new(&[2, 2, 2]));
        assert!(plan(&three, &[4, 4, 4]).is_none());
        // High padding that a window would reach keeps the generic loop; unreached, it is
        // ignored.
        let reached = op(Window::new(&[2]).with_strides(&[2]).with_padding(&[(0, 1)]));
        assert!(plan(&reached, &[5]).is_none());
        assert!(plan(&reached, &[4]).is_some());
    }

    /// A block whose sizes disagree with the buffers leaves the output untouched.
    #[test]
    fn mismatched_buffers_are_refused() {
        let p = plan(&op(Window::new(&[2]).with_strides(&[2])), &[4]).unwrap();
        let a = [1.0f32, 2.0, 3.0];
        let mut out = [7.0f32; 2];
        assert!(!kernel(&p, &a, &a, &mut out));
        assert_eq!(out, [7.0; 2]);
        let a = [1.0f32, 2.0, 3.0, -1.0];
        assert!(kernel(&p, &a, &a, &mut out));
        assert_eq!(out, [2.0, 3.0]);
        let mut bad = p.clone();
        bad[5] = 3;
        assert!(!kernel(&bad, &a, &a, &mut out));
    }
}
