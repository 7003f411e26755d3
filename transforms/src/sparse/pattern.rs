//! Sparsity detection: the global Jacobian pattern of a graph, found by propagating, for every
//! element of every value, the sorted set of input elements it depends on.
//!
//! The analysis is an abstract interpretation of the graph. Each value carries
//! - `deps`: one sorted index set per element (`None` for values whose derivative is zero by
//!   type: integers, bools, constants, `stop_gradient`), and
//! - `konst`: its concrete value when every operand it comes from is a known constant (small
//!   constants and `iota` expressions), which makes gathers, scatters and dynamic slices with
//!   constant indices exact, lets `dot_general` skip the zeros of a constant matrix, and lets
//!   loops with constant trip conditions (every `fori_loop`) be followed iteration by iteration.
//!
//! Every rule over-approximates: a set may hold an input the element does not actually depend
//! on at some point, never miss one it depends on at any point, so the pattern is valid for
//! every input. Ops without an exact rule (convolutions, the reverse-mode loop forms,
//! gathers with computed indices) use the conservative rule: each result element depends on
//! every input its operands depend on. Ops that only move elements (the shape family, gathers,
//! dynamic slices and updates, `set` scatters) are not described one by one: the op itself is
//! evaluated on arrays holding the positions of the operand elements, and the result tells
//! which element each output element was copied from.

use ferrax_ir::ops::{ControlOp, IndexOp, ReduceOp, ShapeOp};
use ferrax_ir::{Array, DType, Error, ErrorKind, Graph, Op, Result, Shape, Type};
use smallvec::SmallVec;
use std::sync::Arc;

/// A sorted set of input element indices (inline up to four, the common size in sparse
/// derivatives, so most elements cost no allocation of their own).
pub type Set = SmallVec<[u32; 4]>;

/// Constants larger than this many elements are not tracked.
const KONST_LIMIT: usize = 1 << 20;

/// Float constants computed by ops (not literals) larger than this many elements are not
/// tracked either: only `dot_general` reads float constants (to skip the zeros of a known
/// matrix), while large ones are mostly broadcasts of scalars in vectorised graphs, whose
/// evaluation would cost as much as the rest of the analysis.
const FLOAT_KONST_LIMIT: usize = 1 << 16;

/// Loops are followed iteration by iteration for at most this many iterations, then by a fixed
/// point over the carry.
const UNROLL_LIMIT: usize = 4096;

/// The most index entries (plus one per element) a single value's sets may hold.
const VALUE_LIMIT: usize = 1 << 26;

/// The most index entries (plus one per element) an analysis may build in total, counting
/// every iteration of the loops it follows: a bound on its work.
const WORK_LIMIT: usize = 1 << 33;

/// A sparsity pattern in compressed sparse row form. Every pattern is well formed: its
/// constructors check the CSR invariants (`nrows + 1` nondecreasing row pointers from 0 to
/// `nnz`, column indices below `ncols` and strictly increasing within each row), and its fields
/// are read through accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub(crate) nrows: usize,
    pub(crate) ncols: usize,
    pub(crate) row_ptr: Vec<usize>,
    pub(crate) col_idx: Vec<usize>,
}

impl Pattern {
    /// A pattern from its CSR arrays: row `r`'s columns are `col_idx[row_ptr[r]..row_ptr[r + 1]]`.
    /// Errors naming the first broken invariant.
    pub fn from_csr(
        nrows: usize,
        ncols: usize,
        row_ptr: Vec<usize>,
        col_idx: Vec<usize>,
    ) -> Result<Pattern> {
        let bad = |what: String| {
            Err(ferrax_ir::Error::new(
                ErrorKind::Shape,
                format!("Pattern: {what}"),
            ))
        };
        if row_ptr.len() != nrows.saturating_add(1) {
            return bad(format!(
                "expected {} row pointers (nrows + 1), found {}",
                nrows.saturating_add(1),
                row_ptr.len()
            ));
        }
        if row_ptr[0] != 0 || row_ptr[nrows] != col_idx.len() {
            return bad(format!(
                "expected row pointers from 0 to nnz = {}, found {} to {}",
                col_idx.len(),
                row_ptr[0],
                row_ptr[nrows]
            ));
        }
        for r in 0..nrows {
            let (a, b) = (row_ptr[r], row_ptr[r + 1]);
            if a > b {
                return bad(format!("row pointers decrease at row {r} ({a} > {b})"));
            }
            let row = &col_idx[a..b];
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "the column indices of row {r} are not strictly increasing"
                ));
            }
            if let Some(&c) = row.last().filter(|&&c| c >= ncols) {
                return bad(format!("column {c} in row {r}, expected below {ncols}"));
            }
        }
        Ok(Pattern {
            nrows,
            ncols,
            row_ptr,
            col_idx,
        })
    }

    /// A pattern from one strictly increasing column set per row, each column below `ncols`.
    pub fn from_rows(ncols: usize, rows: &[Vec<usize>]) -> Result<Pattern> {
        let p = Pattern::from_sorted_rows(ncols, rows);
        Pattern::from_csr(p.nrows, p.ncols, p.row_ptr, p.col_idx)
    }

    /// [`Pattern::from_rows`] for rows known to be well formed.
    pub(crate) fn from_sorted_rows(ncols: usize, rows: &[Vec<usize>]) -> Pattern {
        let mut row_ptr = Vec::with_capacity(rows.len() + 1);
        let mut col_idx = Vec::new();
        row_ptr.push(0);
        for r in rows {
            col_idx.extend_from_slice(r);
            row_ptr.push(col_idx.len());
        }
        Pattern {
            nrows: rows.len(),
            ncols,
            row_ptr,
            col_idx,
        }
    }

    /// The number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// The number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// The row pointers: `nrows + 1` offsets into [`Pattern::col_idx`].
    pub fn row_ptr(&self) -> &[usize] {
        &self.row_ptr
    }

    /// The column index of every entry, row by row, increasing within a row.
    pub fn col_idx(&self) -> &[usize] {
        &self.col_idx
    }

    /// The number of structural nonzeros.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }

    /// The columns of row `r` (empty for a row past the last).
    pub fn row(&self, r: usize) -> &[usize] {
        match (self.row_ptr.get(r), self.row_ptr.get(r.wrapping_add(1))) {
            (Some(&a), Some(&b)) => self.col_idx.get(a..b).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The transposed pattern (columns become rows).
    pub fn transpose(&self) -> Pattern {
        let mut rows = vec![Vec::new(); self.ncols];
        for r in 0..self.nrows {
            for &c in self.row(r) {
                rows[c].push(r);
            }
        }
        Pattern::from_sorted_rows(self.nrows, &rows)
    }
}

/// The empty set in [`Sets::Single`].
const EMPTY: u32 = u32::MAX;

/// One value's sets, one per element, in the smaller of two forms. Every set is built through
/// [`Ctx::build`] or [`Sets::from_sets`], which pick `Single` whenever it fits, so each value has
/// one form; comparisons go element by element all the same. Both forms are flat arrays, so a
/// value of a million elements is two allocations, not a million.
#[derive(Debug)]
enum Sets {
    /// At most one index per element ([`EMPTY`] for none): four bytes an element, the common
    /// case (inputs, their moves, elementwise ops of one operand).
    Single(Vec<u32>),
    /// Any sets, compressed: element `i`'s set is `idx[ptr[i]..ptr[i + 1]]` (`n + 1` pointers;
    /// a value holds at most [`VALUE_LIMIT`] entries, so they fit in `u32`).
    Many { ptr: Vec<u32>, idx: Vec<u32> },
}

impl Sets {
    /// The sets as one value, `Single` when every set has at most one index.
    fn from_sets(v: Vec<Set>) -> Sets {
        if v.iter().all(|s| s.len() <= 1) {
            return Sets::Single(
                v.iter()
                    .map(|s| s.first().copied().unwrap_or(EMPTY))
                    .collect(),
            );
        }
        let mut ptr = Vec::with_capacity(v.len() + 1);
        let mut idx = Vec::new();
        ptr.push(0);
        for s in &v {
            idx.extend_from_slice(s);
            ptr.push(idx.len() as u32);
        }
        Sets::Many { ptr, idx }
    }

    fn len(&self) -> usize {
        match self {
            Sets::Single(v) => v.len(),
            Sets::Many { ptr, .. } => ptr.len() - 1,
        }
    }

    #[inline]
    fn get(&self, i: usize) -> &[u32] {
        match self {
            Sets::Single(v) if v[i] == EMPTY => &[],
            Sets::Single(v) => std::slice::from_ref(&v[i]),
            Sets::Many { ptr, idx } => &idx[ptr[i] as usize..ptr[i + 1] as usize],
        }
    }

    fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Elements `a..b`.
    fn slice(&self, a: usize, b: usize) -> Sets {
        match self {
            Sets::Single(v) => Sets::Single(v[a..b].to_vec()),
            Sets::Many { .. } => {
                Sets::from_sets((a..b).map(|i| Set::from_slice(self.get(i))).collect())
            }
        }
    }

    /// The `Single` form's indices, if this is one.
    fn single(&self) -> Option<&[u32]> {
        match self {
            Sets::Single(v) => Some(v),
            Sets::Many { .. } => None,
        }
    }
}

impl PartialEq for Sets {
    fn eq(&self, other: &Sets) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// What the analysis knows about one value.
#[derive(Clone, Debug, Default)]
struct State {
    deps: Option<Arc<Sets>>,
    konst: Option<Arc<Array>>,
    /// With [`Ctx::linear`]: per element, the inputs of `deps` it may depend on nonlinearly
    /// (through an op whose derivative with respect to them is not a constant); `None` when
    /// it depends on every input in `deps` affinely, or when the analysis does not track it.
    nl: Option<Arc<Sets>>,
    /// With [`Ctx::linear`]: whether the value may differ between calls (it is computed from
    /// a parameter of any type, or by a control op), as opposed to one computed from literals
    /// alone. A product with a value that does not vary is linear in the other operand.
    varies: bool,
}

impl State {
    #[inline]
    fn set(&self, i: usize) -> &[u32] {
        match &self.deps {
            Some(d) if d.len() == 1 => d.get(0),
            Some(d) => d.get(i),
            None => &[],
        }
    }

    /// Joins two states of one value (a loop's carry before and after an iteration).
    fn join(&self, other: &State) -> State {
        let deps = match (&self.deps, &other.deps) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(Arc::new(Sets::from_sets(
                a.iter().zip(b.iter()).map(|(x, y)| union2(x, y)).collect(),
            ))),
        };
        let konst = match (&self.konst, &other.konst) {
            (Some(a), Some(b)) if a.bits_eq(b) => Some(a.clone()),
            _ => None,
        };
        State {
            deps,
            konst,
            nl: None,
            varies: self.varies || other.varies,
        }
    }

    fn same_deps(&self, other: &State) -> bool {
        match (&self.deps, &other.deps) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

fn union2(a: &[u32], b: &[u32]) -> Set {
    if let ([x], [y]) = (a, b) {
        return match x.cmp(y) {
            std::cmp::Ordering::Less => smallvec::smallvec![*x, *y],
            std::cmp::Ordering::Greater => smallvec::smallvec![*y, *x],
            std::cmp::Ordering::Equal => smallvec::smallvec![*x],
        };
    }
    if b.is_empty() || a == b {
        return Set::from_slice(a);
    }
    if a.is_empty() {
        return Set::from_slice(b);
    }
    let mut out = Set::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The union of several sets.
fn union_all<'a>(sets: impl IntoIterator<Item = &'a [u32]>) -> Set {
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return Set::new();
    };
    let Some(second) = it.next() else {
        return Set::from_slice(first);
    };
    let mut out = union2(first, second);
    let rest: Vec<&[u32]> = it.collect();
    if rest.is_empty() {
        return out;
    }
    for s in rest {
        out.extend_from_slice(s);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The analysis context: the entry budget, and the most indices one element's set may hold.
struct Ctx {
    entries: usize,
    max_set: usize,
    /// Whether to track the nonlinear dependences ([`State::nl`]) as well.
    linear: bool,
    /// Index arrays of values no longer used, kept for the next values (see [`Ctx::take`]).
    spare: Vec<Vec<u32>>,
}

/// The most arrays [`Ctx::spare`] keeps.
const SPARE_ARRAYS: usize = 6;

/// Arrays with room for fewer entries than this are freed, not kept.
const SPARE_MIN: usize = 1 << 12;

impl Ctx {
    /// A new analysis context with the given set width limit (see [`jacobian_pattern_narrow`]).
    fn new(max_set: usize, linear: bool) -> Ctx {
        Ctx {
            entries: 0,
            max_set,
            linear,
            spare: Vec::new(),
        }
    }

    /// An empty array with room for `cap` entries: the kept array of least room that has
    /// enough, else the largest kept one, grown, else a new one with room for one more (so
    /// that the array of a `Single` value can serve later as the `n + 1` pointers of a
    /// compressed one). Values are built and dropped one after another, so reusing the
    /// arrays of dead values reuses memory whose pages are already mapped: a fresh array of a
    /// million entries costs a thousand page faults, more than filling it (and growing a
    /// large array remaps its pages rather than copying them).
    fn take(&mut self, cap: usize) -> Result<Vec<u32>> {
        let room = |i: usize| self.spare[i].capacity();
        let pick = (0..self.spare.len())
            .filter(|&i| room(i) >= cap)
            .min_by_key(|&i| room(i))
            .or_else(|| (0..self.spare.len()).max_by_key(|&i| room(i)));
        let mut v = match pick {
            Some(i) => self.spare.swap_remove(i),
            None => Vec::new(),
        };
        v.clear();
        let want = cap.saturating_add(1);
        if v.capacity() < cap {
            v.try_reserve_exact(want).map_err(|_| too_large(cap))?;
        }
        Ok(v)
    }

    /// Keeps `v` for [`Ctx::take`] if it is large, dropping the smallest kept array when
    /// more than [`SPARE_ARRAYS`] are kept.
    fn give(&mut self, v: Vec<u32>) {
        if v.capacity() < SPARE_MIN {
            return;
        }
        self.spare.push(v);
        if self.spare.len() > SPARE_ARRAYS {
            let smallest = (0..self.spare.len()).min_by_key(|&i| self.spare[i].capacity());
            if let Some(i) = smallest {
                self.spare.swap_remove(i);
            }
        }
    }

    /// Keeps the arrays of a value's state that no other value shares.
    fn recycle(&mut self, s: State) {
        for sets in [s.deps, s.nl].into_iter().flatten() {
            match Arc::try_unwrap(sets) {
                Ok(Sets::Single(v)) => self.give(v),
                Ok(Sets::Many { ptr, idx }) => {
                    self.give(ptr);
                    self.give(idx);
                }
                Err(_) => {}
            }
        }
    }

    /// Builds one set per element with `f`, charging the entries to the budget.
    fn build(&mut self, n: usize, mut f: impl FnMut(usize) -> Set) -> Result<Option<Arc<Sets>>> {
        self.build_into(n, |i, out| out.extend_from_slice(&f(i)))
    }

    /// Builds one set per element with `f`, which appends element `i`'s sorted set to the
    /// vector it is given, charging the entries to the budget. The sets are stored compressed,
    /// then in the `Single` form if none has two indices or more.
    fn build_into(
        &mut self,
        n: usize,
        f: impl FnMut(usize, &mut Vec<u32>),
    ) -> Result<Option<Arc<Sets>>> {
        self.build_with(n, n, f)
    }

    /// [`Ctx::build_into`] with room for `cap` entries reserved first: a bound on the entries
    /// (when the caller knows one) spares the index array its regrowth copies. The reservation
    /// is capped at the value's limit; memory that is reserved but never written is not touched.
    fn build_with(
        &mut self,
        n: usize,
        cap: usize,
        mut f: impl FnMut(usize, &mut Vec<u32>),
    ) -> Result<Option<Arc<Sets>>> {
        let mut ptr = self.take(n + 1)?;
        let mut idx = self.take(cap.min(VALUE_LIMIT))?;
        ptr.push(0);
        let mut widest = 0;
        for i in 0..n {
            let before = idx.len();
            f(i, &mut idx);
            widest = widest.max(idx.len() - before);
            if widest > self.max_set {
                return Err(too_wide(self.max_set));
            }
            // Entries plus one per element so far: within the value's limit, so `u32` holds it.
            let here = idx.len() + i + 1;
            if here > VALUE_LIMIT || self.entries.saturating_add(here) > WORK_LIMIT {
                return Err(too_large(here));
            }
            ptr.push(idx.len() as u32);
        }
        self.entries = self.entries.saturating_add(idx.len() + n);
        if widest <= 1 {
            let mut single = self.take(n)?;
            single.extend((0..n).map(|i| {
                if ptr[i] == ptr[i + 1] {
                    EMPTY
                } else {
                    idx[ptr[i] as usize]
                }
            }));
            self.give(ptr);
            self.give(idx);
            return Ok(Some(Arc::new(Sets::Single(single))));
        }
        Ok(Some(Arc::new(Sets::Many { ptr, idx })))
    }
}

/// Appends the union of `sets` (each sorted) to `out`, sorted and without repeats.
fn append_union<'a>(out: &mut Vec<u32>, sets: impl IntoIterator<Item = &'a [u32]>) {
    let start = out.len();
    let mut it = sets.into_iter();
    let (Some(a), b) = (it.next(), it.next()) else {
        return;
    };
    let Some(b) = b else {
        out.extend_from_slice(a);
        return;
    };
    // Two sorted sets merge in one pass; a third or more are appended, sorted and deduplicated.
    merge_into(out, a, b);
    let mut more = false;
    for s in it {
        out.extend_from_slice(s);
        more = true;
    }
    if more {
        out[start..].sort_unstable();
        let mut w = start;
        for r in start..out.len() {
            if w == start || out[r] != out[w - 1] {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
    }
}

/// Element-by-element read access to one value's sets in one storage form, so that loops
/// over the elements are compiled once per form instead of matching on it per element.
trait ReadSets: Copy {
    /// The sorted set of element `i`.
    fn get(&self, i: usize) -> &[u32];
    /// The number of index entries in all.
    fn entries(&self) -> usize;
}

/// The [`Sets::Single`] form.
#[derive(Clone, Copy)]
struct ReadSingle<'a>(&'a [u32]);

impl ReadSets for ReadSingle<'_> {
    #[inline]
    fn get(&self, i: usize) -> &[u32] {
        let v = &self.0[i];
        if *v == EMPTY {
            &[]
        } else {
            std::slice::from_ref(v)
        }
    }

    fn entries(&self) -> usize {
        self.0.len()
    }
}

/// The [`Sets::Many`] form.
#[derive(Clone, Copy)]
struct ReadMany<'a> {
    ptr: &'a [u32],
    idx: &'a [u32],
}

impl ReadSets for ReadMany<'_> {
    #[inline]
    fn get(&self, i: usize) -> &[u32] {
        &self.idx[self.ptr[i] as usize..self.ptr[i + 1] as usize]
    }

    fn entries(&self) -> usize {
        self.idx.len()
    }
}

/// Appends the union of the sorted sets `a` and `b` to `out`, sorted and without repeats.
#[inline]
fn merge_into(out: &mut Vec<u32>, a: &[u32], b: &[u32]) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    // The tails are a few entries: pushed one by one, not copied by a call to `memcpy`.
    push_all(out, &a[i..]);
    push_all(out, &b[j..]);
}

/// Appends the entries of `s`, expected few, one by one.
#[inline]
fn push_all(out: &mut Vec<u32>, s: &[u32]) {
    for &x in s {
        out.push(x);
    }
}

impl Ctx {
    /// The sets of a parameter of `n` elements whose first element is input `base`: element
    /// `k` depends on input `base + k` alone.
    fn inputs(&mut self, base: u32, n: usize) -> Result<Option<Arc<Sets>>> {
        if n > 0 && self.max_set < 1 {
            return Err(too_wide(self.max_set));
        }
        self.charge(n, n)?;
        let mut v = self.take(n)?;
        // The caller checked that `base + n` fits in `u32`.
        v.extend((0..n as u32).map(|k| base + k));
        Ok(Some(Arc::new(Sets::Single(v))))
    }

    /// The elementwise union of two values of `n` elements each (neither broadcast), by a
    /// loop specialised to the two storage forms.
    fn union_two(&mut self, x: &Sets, y: &Sets, n: usize) -> Result<Option<Arc<Sets>>> {
        match (x, y) {
            (Sets::Single(a), Sets::Single(b)) => self.union_singles(a, b),
            (Sets::Single(a), Sets::Many { ptr, idx })
            | (Sets::Many { ptr, idx }, Sets::Single(a)) => {
                self.union_read(n, ReadSingle(a), ReadMany { ptr, idx })
            }
            (Sets::Many { ptr, idx }, Sets::Many { ptr: p2, idx: i2 }) => {
                self.union_read(n, ReadMany { ptr, idx }, ReadMany { ptr: p2, idx: i2 })
            }
        }
    }

    /// The elementwise union of two readers of `n` elements each.
    fn union_read(
        &mut self,
        n: usize,
        x: impl ReadSets,
        y: impl ReadSets,
    ) -> Result<Option<Arc<Sets>>> {
        let cap = x.entries().saturating_add(y.entries());
        self.build_with(n, cap, |i, out| merge_into(out, x.get(i), y.get(i)))
    }

    /// Each result element's set copied from element `pos[i] - first` of `src`, which has
    /// `len` elements (none where the position falls outside them, as [`moved`]'s positions
    /// of other operands and its 0 do): the index array is sized exactly by a first pass over
    /// the lengths.
    fn gather(
        &mut self,
        pos: &[u32],
        first: usize,
        len: usize,
        src: impl ReadSets,
    ) -> Result<Option<Arc<Sets>>> {
        let at = |i: usize| (pos[i] as usize).checked_sub(first).filter(|&p| p < len);
        let n = pos.len();
        let cap = (0..n)
            .filter_map(at)
            .fold(0usize, |acc, p| acc.saturating_add(src.get(p).len()));
        self.build_with(n, cap, |i, out| {
            if let Some(p) = at(i) {
                push_all(out, src.get(p));
            }
        })
    }

    /// Charges a value of `n` elements holding `entries` indices, built by a fast path.
    fn charge(&mut self, n: usize, entries: usize) -> Result<()> {
        let here = n.saturating_add(entries);
        self.entries = self.entries.saturating_add(here);
        if here > VALUE_LIMIT || self.entries > WORK_LIMIT {
            return Err(too_large(here));
        }
        Ok(())
    }

    /// The elementwise union of two `Single` values of one length.
    fn union_singles(&mut self, x: &[u32], y: &[u32]) -> Result<Option<Arc<Sets>>> {
        let n = x.len();
        let clash = x
            .iter()
            .zip(y)
            .any(|(&a, &b)| a != b && a != EMPTY && b != EMPTY);
        if clash && self.max_set < 2 {
            return Err(too_wide(self.max_set));
        }
        if !clash {
            self.charge(n, n)?;
            let mut v = self.take(n)?;
            v.extend(x.iter().zip(y).map(|(&a, &b)| a.min(b)));
            return Ok(Some(Arc::new(Sets::Single(v))));
        }
        let mut ptr = self.take(n + 1)?;
        let mut idx = self.take(2 * n)?;
        ptr.push(0u32);
        for (&a, &b) in x.iter().zip(y) {
            // EMPTY is the largest u32, so it sorts last.
            let (lo, hi) = (a.min(b), a.max(b));
            if lo != EMPTY {
                idx.push(lo);
            }
            if hi != EMPTY && hi != lo {
                idx.push(hi);
            }
            ptr.push(idx.len() as u32);
        }
        self.charge(n, idx.len())?;
        Ok(Some(Arc::new(Sets::Many { ptr, idx })))
    }
}

fn too_large(entries: usize) -> Error {
    Error::new(
        ErrorKind::Resource,
        format!(
            "sparsity: the pattern analysis stopped at {entries} index entries for one value \
             (at most {VALUE_LIMIT} per value and {WORK_LIMIT} in all): the derivative is too \
             dense, or the loops too long, for a sparse form"
        ),
    )
}

/// The error of an analysis stopped by [`jacobian_pattern_narrow`].
fn too_wide(max_set: usize) -> Error {
    Error::new(
        ErrorKind::Resource,
        format!("sparsity: an element depends on more than {max_set} input elements"),
    )
}

/// The Jacobian pattern of `g`: one row per element of its outputs (concatenated, each in
/// row-major order), one column per element of its first `n_explicit` parameters
/// (concatenated likewise). Row `r` holds the columns output element `r` may depend on at some
/// input. Errors (`Resource`) when one value's sets would hold more than 2^26 entries or the
/// whole analysis, loop iterations included, would build more than 2^33.
pub fn jacobian_pattern(g: &Graph, n_explicit: usize) -> Result<Pattern> {
    jacobian_pattern_narrow(g, n_explicit, usize::MAX)
}

/// [`jacobian_pattern`] for callers that want the pattern only if every element of every
/// value depends on at most `max_set` input elements: it stops with a `Resource` error at the
/// first that depends on more, so the analysis costs at most about `max_set` entries per
/// element analysed. (An output element depends on everything the elements it is computed
/// from depend on, so a wide intermediate element means a wide row, except where a known
/// constant cuts the dependence: the test is conservative.)
pub fn jacobian_pattern_narrow(g: &Graph, n_explicit: usize, max_set: usize) -> Result<Pattern> {
    let mut ctx = Ctx::new(max_set, false);
    Ok(analyse(&mut ctx, g, n_explicit)?.0)
}

/// [`jacobian_pattern`] with, for every nonzero in CSR order, whether its value may vary
/// with the arguments (`true`) or is the same at every input (`false`, a *constant entry*).
///
/// An entry `(i, j)` is constant when every way output element `i` depends on input `j` goes
/// through ops whose derivative with respect to that operand is a constant: additions,
/// subtractions, negations, float conversions, products with (and quotients by) a value
/// computed from literals alone, sums and cumulative sums, `dot_general` with such a
/// value, and moves of elements at indices that are likewise fixed (the shape family,
/// gathers, slices and `set`/`add` scatters; a `select` whose predicate is fixed). Every
/// other op (and every control op, convolution and windowed op, conservatively) makes all
/// of its result's dependences nonlinear, so the entries through it vary. A value computed
/// from any parameter (of any type, differentiated or not) is not fixed: `a · x` with a
/// parameter `a` varies with `a`. The analysis tracks a second set per element (the inputs
/// it depends on nonlinearly) next to the dependence set, with the same rules; it says
/// nothing about values: a constant entry is the derivative the chain rule gives, the same
/// at every input, which a dense evaluation reproduces wherever no other term of its row
/// overflows (a `0 · ∞` elsewhere in the row can make a JVP's sum NaN).
pub fn jacobian_pattern_varying(g: &Graph, n_explicit: usize) -> Result<(Pattern, Vec<bool>)> {
    let mut ctx = Ctx::new(usize::MAX, true);
    let (pattern, outs) = analyse(&mut ctx, g, n_explicit)?;
    let mut varying = Vec::with_capacity(pattern.nnz());
    for s in &outs {
        for k in 0..s.1 {
            let nl: &[u32] = match &s.0.nl {
                Some(d) if d.len() == 1 => d.get(0),
                Some(d) => d.get(k),
                None => &[],
            };
            // Both sets are sorted and `nl` is within the row's: one merge pass.
            let mut at = 0;
            for &c in s.0.set(k) {
                while at < nl.len() && nl[at] < c {
                    at += 1;
                }
                varying.push(at < nl.len() && nl[at] == c);
            }
        }
    }
    Ok((pattern, varying))
}

/// The analysis of `g`'s outputs with respect to its first `n_explicit` parameters: the
/// Jacobian pattern, and every output's state with its number of elements.
fn analyse(ctx: &mut Ctx, g: &Graph, n_explicit: usize) -> Result<(Pattern, Vec<(State, usize)>)> {
    let mut offset = 0usize;
    let mut params = Vec::with_capacity(g.params().len());
    for (i, &p) in g.params().iter().enumerate() {
        let ty = g.ty(p);
        if i < n_explicit && ty.dtype.is_float() {
            let n = ty.size();
            if offset.saturating_add(n) > u32::MAX as usize {
                ferrax_ir::bail!(Resource, "sparsity: more than {} input elements", u32::MAX);
            }
            let base = offset as u32;
            params.push(State {
                deps: ctx.inputs(base, n)?,
                varies: true,
                ..State::default()
            });
        } else {
            params.push(State {
                varies: true,
                ..State::default()
            });
        }
        if i < n_explicit {
            offset += ty.size();
        }
    }
    let outs = propagate(ctx, g, &params)?;
    let nrows: usize = g.outputs().iter().map(|&o| g.ty(o).size()).sum();
    let mut row_ptr = Vec::with_capacity(nrows + 1);
    let mut col_idx = Vec::new();
    row_ptr.push(0);
    for (o, s) in g.outputs().iter().zip(&outs) {
        let size = g.ty(*o).size();
        match s.deps.as_deref() {
            // Compressed sets of the output's size are its rows already.
            Some(Sets::Many { ptr, idx }) if ptr.len() == size + 1 => {
                let base = col_idx.len();
                col_idx.reserve(idx.len());
                col_idx.extend(idx.iter().map(|&c| c as usize));
                row_ptr.extend(ptr[1..].iter().map(|&p| base + p as usize));
            }
            _ => {
                for k in 0..size {
                    col_idx.extend(s.set(k).iter().map(|&c| c as usize));
                    row_ptr.push(col_idx.len());
                }
            }
        }
    }
    let pattern = Pattern {
        nrows,
        ncols: offset,
        row_ptr,
        col_idx,
    };
    let sizes = g.outputs().iter().map(|&o| g.ty(o).size());
    Ok((pattern, outs.into_iter().zip(sizes).collect()))
}

/// The Hessian pattern of the scalar function `g` with respect to its explicit parameters
/// (concatenated): the Jacobian pattern of its gradient graph. This is the simplest route
/// that is correct by construction: every second-order interaction appears as a dependence
/// of some gradient element on an input, and the gradient graph is an ordinary graph, so every
/// rule above applies. It may be looser than a dedicated second-order analysis where the
/// reverse pass mixes cotangents conservatively (loops analysed by a fixed point, for example).
pub fn hessian_pattern(g: &Graph, n_explicit: usize) -> Result<Pattern> {
    let argnums: Vec<usize> = (0..n_explicit).collect();
    let gg = crate::grad_graph(g, n_explicit, &argnums, false)?;
    jacobian_pattern(&gg, n_explicit)
}

/// Propagates the parameter states through `g`, returning the output states.
fn propagate(ctx: &mut Ctx, g: &Graph, params: &[State]) -> Result<Vec<State>> {
    let mut states: Vec<State> = vec![State::default(); g.num_values()];
    for (&p, s) in g.params().iter().zip(params) {
        states[p.index()] = s.clone();
    }
    // Each value's state is dropped after its last use, so memory follows the live values.
    let mut last_use = vec![usize::MAX; g.num_values()];
    for (i, inst) in g.insts().map(|(_, d)| d).enumerate() {
        for a in &inst.args {
            last_use[a.index()] = i;
        }
    }
    for o in g.outputs() {
        last_use[o.index()] = usize::MAX;
    }
    for (at, (_, inst)) in g.insts().enumerate() {
        let args: Vec<&State> = inst.args.iter().map(|a| &states[a.index()]).collect();
        let arg_tys: Vec<Type> = inst.args.iter().map(|a| g.ty(*a).clone()).collect();
        let out_tys: Vec<Type> = inst.results.iter().map(|r| g.ty(*r).clone()).collect();
        let control = matches!(inst.op, Op::Control(_));
        // Control ops make every dependence nonlinear: their bodies are analysed without the
        // second sets.
        let linear = ctx.linear;
        ctx.linear = linear && !control;
        let outs = rule(ctx, &inst.op, &args, &arg_tys, &out_tys);
        ctx.linear = linear;
        let mut outs = outs?;
        if linear {
            nonlinear(ctx, &inst.op, &args, &arg_tys, &out_tys, &mut outs)?;
        }
        // Known constants: evaluated when every operand is known and the result is small.
        let literal = matches!(inst.op, Op::Literal(_));
        let small = out_tys.iter().all(|t| {
            let limit = if t.dtype.is_float() && !literal {
                FLOAT_KONST_LIMIT
            } else {
                KONST_LIMIT
            };
            t.size() <= limit
        });
        let all_known = args.iter().all(|a| a.konst.is_some());
        if small && all_known && !matches!(inst.op, Op::Control(_)) {
            let arrays: Vec<&Array> = args.iter().map(|a| &**a.konst.as_ref().unwrap()).collect();
            if let Ok(vals) = inst.op.eval(&arrays) {
                for (o, v) in outs.iter_mut().zip(vals) {
                    o.konst = Some(Arc::new(v));
                }
            }
        }
        for (s, ty) in outs.iter_mut().zip(&out_tys) {
            if !ty.dtype.is_float() {
                s.deps = None;
                s.nl = None;
            }
        }
        for (&r, s) in inst.results.iter().zip(outs) {
            states[r.index()] = s;
        }
        for a in &inst.args {
            if last_use[a.index()] == at {
                ctx.recycle(std::mem::take(&mut states[a.index()]));
            }
        }
    }
    Ok(g.outputs()
        .iter()
        .map(|o| states[o.index()].clone())
        .collect())
}

/// Fills in the results' nonlinear sets and whether they vary (see [`State::nl`]): for an
/// op that is linear in its varying operands ([`is_linear`]), the op's own rule applied to
/// the operands' nonlinear sets (a move moves them, a sum joins them); otherwise each
/// result's whole dependence set.
fn nonlinear(
    ctx: &mut Ctx,
    op: &Op,
    args: &[&State],
    tys: &[Type],
    outs: &[Type],
    res: &mut [State],
) -> Result<()> {
    let varies = matches!(op, Op::Control(_)) || args.iter().any(|a| a.varies);
    let nl = if res.len() == 1 && is_linear(op, args) {
        let swapped: Vec<State> = args
            .iter()
            .map(|a| State {
                deps: a.nl.clone(),
                konst: a.konst.clone(),
                nl: None,
                varies: a.varies,
            })
            .collect();
        let refs: Vec<&State> = swapped.iter().collect();
        ctx.linear = false;
        let r = rule(ctx, op, &refs, tys, outs);
        ctx.linear = true;
        vec![r?.pop().and_then(|s| s.deps)]
    } else {
        res.iter().map(|s| s.deps.clone()).collect()
    };
    for (s, nl) in res.iter_mut().zip(nl) {
        s.nl = nl;
        s.varies = varies;
    }
    Ok(())
}

/// Whether `op`'s derivative with respect to each operand that varies is a constant, given
/// which operands vary: the linear ops, products by fixed values, and moves at fixed indices
/// (see [`jacobian_pattern_varying`]).
fn is_linear(op: &Op, args: &[&State]) -> bool {
    use ferrax_ir::ops::{BinaryOp, Combine, CompareOp, ConvertOp, UnaryOp};
    let fixed = |k: usize| args.get(k).is_some_and(|a| !a.varies);
    let fixed_from = |k: usize| args.iter().skip(k).all(|a| !a.varies);
    match op {
        Op::Unary(u) => *u == UnaryOp::Neg,
        Op::Binary(BinaryOp::Add | BinaryOp::Sub) => true,
        Op::Binary(BinaryOp::Mul) => fixed(0) || fixed(1),
        Op::Binary(BinaryOp::Div) => fixed(1),
        Op::Binary(_) => false,
        Op::Convert(ConvertOp::Convert(_) | ConvertOp::StopGradient) | Op::Literal(_) => true,
        Op::Compare(CompareOp::Select) => fixed(0),
        Op::Compare(_) | Op::Shape(_) => true,
        Op::Reduce(r) => matches!(r, ReduceOp::Sum { .. }),
        Op::Dot(_) => fixed(0) || fixed(1),
        Op::Index(ix) => match ix {
            IndexOp::Cumsum { .. } => true,
            IndexOp::DynamicSlice { .. } | IndexOp::Gather(_) => fixed_from(1),
            IndexOp::DynamicUpdateSlice => fixed_from(2),
            IndexOp::Scatter { combine, .. } => {
                matches!(combine, Combine::Set | Combine::Add) && fixed(1)
            }
        },
        Op::Conv(_) | Op::Window(_) | Op::Control(_) => false,
    }
}

/// The states of one instruction's results (their `konst` is filled in by the caller).
fn rule(
    ctx: &mut Ctx,
    op: &Op,
    args: &[&State],
    tys: &[Type],
    outs: &[Type],
) -> Result<Vec<State>> {
    let one = |deps| {
        Ok(vec![State {
            deps,
            ..State::default()
        }])
    };
    let n = outs[0].size();
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Convert(ferrax_ir::ops::ConvertOp::Convert(_)) => {
            one(elementwise(ctx, n, args)?)
        }
        Op::Convert(ferrax_ir::ops::ConvertOp::StopGradient) | Op::Literal(_) => one(None),
        Op::Compare(ferrax_ir::ops::CompareOp::Select) => {
            match args[0]
                .konst
                .as_ref()
                .and_then(|p| p.as_bool().map(|b| b.to_vec()))
            {
                // A known predicate picks one branch per element.
                Some(p) => one(ctx.build(n, |i| {
                    let pick = if p.len() == 1 { p[0] } else { p[i] };
                    Set::from_slice(args[if pick { 1 } else { 2 }].set(i))
                })?),
                None => one(elementwise(ctx, n, &args[1..])?),
            }
        }
        Op::Compare(_) => one(None),
        // A reshape keeps the row-major order: the sets are shared, not copied.
        Op::Shape(ShapeOp::Reshape { .. }) => one(args[0].deps.clone()),
        Op::Shape(_) => one(moved(ctx, op, args, tys, &all(args.len()), n)?),
        Op::Reduce(r) => match r {
            ReduceOp::Sum { axes }
            | ReduceOp::Max { axes }
            | ReduceOp::Min { axes }
            | ReduceOp::Prod { axes } => one(reduce(ctx, args[0], tys[0].dims(), axes)?),
            ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. } => one(None),
        },
        Op::Dot(d) => one(dot(ctx, d, args, tys)?),
        Op::Index(ix) => match ix {
            IndexOp::Cumsum { axis, reverse } => {
                one(cumsum(ctx, args[0], tys[0].dims(), *axis, *reverse)?)
            }
            IndexOp::DynamicSlice { .. } | IndexOp::Gather(_) => {
                one(moved(ctx, op, args, tys, &[0], n)?)
            }
            IndexOp::DynamicUpdateSlice => one(moved(ctx, op, args, tys, &[0, 1], n)?),
            IndexOp::Scatter { at, combine } => one(scatter(ctx, op, *at, *combine, args, tys, n)?),
        },
        Op::Conv(_) => full(ctx, args, outs),
        Op::Window(w) => one(window(ctx, w, args, tys, &outs[0])?),
        Op::Control(c) => control(ctx, c, args, tys, outs),
    }
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// Elementwise: each element depends on the same element of each operand (or on the single
/// element of a one-element operand).
fn elementwise(ctx: &mut Ctx, n: usize, args: &[&State]) -> Result<Option<Arc<Sets>>> {
    let mut live: Vec<&&State> = args.iter().filter(|a| a.deps.is_some()).collect();
    // Operands sharing one set array (`x * x`, `a + neg(a)`) contribute it once.
    live.dedup_by(|a, b| match (&a.deps, &b.deps) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    });
    // Two operands of `n` elements: merged pairwise by a loop for their storage forms.
    if let [a, b] = live.as_slice() {
        if let (Some(x), Some(y)) = (a.deps.as_deref(), b.deps.as_deref()) {
            if x.len() == n && y.len() == n {
                return ctx.union_two(x, y, n);
            }
        }
    }
    match live.as_slice() {
        [] => Ok(None),
        [a] if a.deps.as_ref().is_some_and(|d| d.len() == n) => Ok(a.deps.clone()),
        _ => ctx.build_into(n, |i, out| append_union(out, live.iter().map(|a| a.set(i)))),
    }
}

/// The conservative rule: every float result element depends on everything the operands
/// depend on.
fn full(ctx: &mut Ctx, args: &[&State], outs: &[Type]) -> Result<Vec<State>> {
    let every = union_all(
        args.iter()
            .filter_map(|a| a.deps.as_ref())
            .flat_map(|d| d.iter()),
    );
    let mut res = Vec::with_capacity(outs.len());
    for t in outs {
        let deps = if every.is_empty() || !t.dtype.is_float() {
            None
        } else {
            ctx.build(t.size(), |_| every.clone())?
        };
        res.push(State {
            deps,
            ..State::default()
        });
    }
    Ok(res)
}

/// Ops that copy elements: each result element takes the set of the operand element it was
/// copied from. The shape family's sources are computed from its parameters ([`shape_sources`]);
/// the other moving ops are evaluated with the operands at `data` replaced by arrays of their
/// element positions (1-based, offset per operand, 0 for "no element") and the others by their
/// known constants. Falls back to [`full`] when an index operand is unknown.
fn moved(
    ctx: &mut Ctx,
    op: &Op,
    args: &[&State],
    tys: &[Type],
    data: &[usize],
    n: usize,
) -> Result<Option<Arc<Sets>>> {
    if data.iter().all(|&d| args[d].deps.is_none()) {
        return Ok(None);
    }
    let direct = match op {
        Op::Shape(s) => shape_sources(s, tys, n, ctx.take(n)?),
        _ => None,
    };
    let pos = match direct {
        Some(p) => p,
        None => match positions(op, args, tys, data)? {
            Some(p) => p,
            None => {
                let t = Type::new(DType::F64, &[n]);
                return Ok(full(ctx, args, &[t])?.pop().and_then(|s| s.deps));
            }
        },
    };
    let sets = moved_from(ctx, args, tys, data, n, &pos);
    ctx.give(pos);
    sets
}

/// [`moved`] once the source positions `pos` are known.
fn moved_from(
    ctx: &mut Ctx,
    args: &[&State],
    tys: &[Type],
    data: &[usize],
    n: usize,
    pos: &[u32],
) -> Result<Option<Arc<Sets>>> {
    // `starts[j]` is the first position of data operand `j`.
    let mut starts = Vec::with_capacity(data.len());
    let mut off = 1usize;
    for &d in data {
        starts.push(off);
        off += tys[d].size();
    }
    // Operands with at most one index per element: the result is one too, read off directly.
    let singles: Option<Vec<&[u32]>> = data
        .iter()
        .map(|&d| match args[d].deps.as_deref() {
            None => Some(&[][..]),
            Some(s) => s.single().filter(|v| v.len() == tys[d].size()),
        })
        .collect();
    if let Some(src) = singles {
        let mut out = ctx.take(n)?;
        if let [only] = src.as_slice() {
            // One operand: its position is the element's, less one.
            out.extend(pos[..n].iter().map(|&p| {
                (p as usize)
                    .checked_sub(1)
                    .and_then(|p| only.get(p).copied())
                    .unwrap_or(EMPTY)
            }));
        } else {
            for &p in &pos[..n] {
                let p = p as usize;
                out.push(if p == 0 {
                    EMPTY
                } else {
                    let j = starts.partition_point(|&s| s <= p) - 1;
                    src[j].get(p - starts[j]).copied().unwrap_or(EMPTY)
                });
            }
        }
        ctx.charge(n, n)?;
        return Ok(Some(Arc::new(Sets::Single(out))));
    }
    // One data operand with sets (a pad's padding value has none): a gather from it alone.
    let mut live = data
        .iter()
        .enumerate()
        .filter(|(_, &d)| args[d].deps.is_some());
    if let (Some((j, &d)), None) = (live.next(), live.next()) {
        if let Some(Sets::Many { ptr, idx }) = args[d].deps.as_deref() {
            let len = tys[d].size();
            if ptr.len() == len + 1 {
                return ctx.gather(&pos[..n], starts[j], len, ReadMany { ptr, idx });
            }
        }
    }
    if let [only] = data {
        let a = args[*only];
        return ctx.build_into(n, |i, out| {
            if pos[i] != 0 {
                out.extend_from_slice(a.set(pos[i] as usize - 1));
            }
        });
    }
    ctx.build_into(n, |i, out| {
        let p = pos[i] as usize;
        if p != 0 {
            let j = starts.partition_point(|&s| s <= p) - 1;
            out.extend_from_slice(args[data[j]].set(p - starts[j]));
        }
    })
}

/// The marker of "no operand element" in a line of [`shape_sources`].
const NO_SOURCE: u32 = u32::MAX;

/// The source positions (as in [`moved`]: 1-based over the operands in order, 0 for none) of
/// every result element of a shape op, computed from its parameters without evaluating it:
/// every shape op is separable, result index `o` along dimension `d` coming from one operand
/// offset (or none), so a result element's source is the sum of its dimensions' offsets.
/// `None` when the positions do not fit in `u32` or the types do not match the op (the caller
/// then evaluates it). The positions are written into `out` (emptied first).
fn shape_sources(op: &ShapeOp, tys: &[Type], n: usize, mut out: Vec<u32>) -> Option<Vec<u32>> {
    let total: usize = tys.iter().map(|t| t.size()).sum();
    if total >= NO_SOURCE as usize || n >= NO_SOURCE as usize {
        return None;
    }
    let ad = tys.first()?.dims();
    let st = Shape::new(ad).strides();
    out.clear();
    out.resize(n, 0);
    // Result dims are recovered from the op (the caller knows only the element count).
    let lines: Vec<Vec<u32>> = match op {
        ShapeOp::Reshape { .. } => {
            out.clear();
            out.extend(1..=n as u32);
            return Some(out);
        }
        ShapeOp::BroadcastInDim { shape, dims } => (0..shape.rank())
            .map(|d| {
                let len = shape.dims()[d];
                match dims.iter().position(|&x| x == d) {
                    Some(i) if ad[i] != 1 => (0..len).map(|o| (o * st[i]) as u32).collect(),
                    _ => vec![0; len],
                }
            })
            .collect(),
        ShapeOp::Transpose { perm } => perm
            .iter()
            .map(|&p| (0..ad[p]).map(|o| (o * st[p]) as u32).collect())
            .collect(),
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => (0..ad.len())
            .map(|d| {
                (start[d]..limit[d].max(start[d]))
                    .step_by(stride[d].max(1))
                    .map(|i| (i * st[d]) as u32)
                    .collect()
            })
            .collect(),
        ShapeOp::Pad { lo, hi, interior } => (0..ad.len())
            .map(|d| {
                let step = interior[d] + 1;
                let len = (lo[d] + hi[d] + ad[d] + ad[d].saturating_sub(1) * interior[d]) as i64;
                (0..len)
                    .map(|o| {
                        let p = o - lo[d] as i64;
                        if p >= 0 && p % step as i64 == 0 && ((p / step as i64) as usize) < ad[d] {
                            ((p / step as i64) as usize * st[d]) as u32
                        } else {
                            NO_SOURCE
                        }
                    })
                    .collect()
            })
            .collect(),
        ShapeOp::Rev { axes } => (0..ad.len())
            .map(|d| {
                (0..ad[d])
                    .map(|o| {
                        let i = if axes.contains(&d) { ad[d] - 1 - o } else { o };
                        (i * st[d]) as u32
                    })
                    .collect()
            })
            .collect(),
        ShapeOp::Concatenate { axis } => {
            // One pass per operand, each filling the result elements it covers.
            let (mut at, mut base) = (0usize, 1usize);
            let len: usize = tys
                .iter()
                .map(|t| t.dims().get(*axis).copied().unwrap_or(0))
                .sum();
            for t in tys {
                let (td, ts) = (t.dims(), t.shape.strides());
                let lines: Vec<Vec<u32>> = (0..td.len())
                    .map(|d| {
                        if d == *axis {
                            (0..len)
                                .map(|o| {
                                    if o >= at && o < at + td[d] {
                                        ((o - at) * ts[d]) as u32
                                    } else {
                                        NO_SOURCE
                                    }
                                })
                                .collect()
                        } else {
                            (0..td[d]).map(|o| (o * ts[d]) as u32).collect()
                        }
                    })
                    .collect();
                spread(&lines, base as u32, None, &mut out)?;
                at += td.get(*axis).copied().unwrap_or(0);
                base += t.size();
            }
            return Some(out);
        }
    };
    // A pad's uncovered elements come from its padding value, the element after the operand's.
    let fill = matches!(op, ShapeOp::Pad { .. }).then_some(1 + tys[0].size() as u32);
    spread(&lines, 1, fill, &mut out)?;
    Some(out)
}

/// Writes `base + Σ_d lines[d][o_d]` at every result element `(o_0, o_1, ..)` (row-major)
/// whose offsets all exist, and `fill` (when given) at the others. `None` if the lines do not
/// cover `out` exactly.
fn spread(lines: &[Vec<u32>], base: u32, fill: Option<u32>, out: &mut [u32]) -> Option<()> {
    // The offsets of every dimension but the last, then the last one's written into `out`
    // directly, one run of the last line per combination of the others.
    let Some((last, outer)) = lines.split_last() else {
        let [o] = out else { return None };
        *o = base;
        return Some(());
    };
    let mut acc = vec![0u32];
    for line in outer {
        let mut next = Vec::with_capacity(acc.len() * line.len());
        for &a in &acc {
            for &l in line {
                next.push(if a == NO_SOURCE || l == NO_SOURCE {
                    NO_SOURCE
                } else {
                    a + l
                });
            }
        }
        acc = next;
    }
    if acc.len().checked_mul(last.len()) != Some(out.len()) {
        return None;
    }
    if out.is_empty() {
        return Some(());
    }
    for (run, &a) in out.chunks_exact_mut(last.len()).zip(&acc) {
        for (o, &l) in run.iter_mut().zip(last) {
            if a != NO_SOURCE && l != NO_SOURCE {
                *o = base + a + l;
            } else if let Some(f) = fill {
                *o = f;
            }
        }
    }
    Some(())
}

/// The source position of each result element of a moving op, or `None` when an index operand
/// is not a known constant.
fn positions(op: &Op, args: &[&State], tys: &[Type], data: &[usize]) -> Result<Option<Vec<u32>>> {
    let mut arrays = Vec::with_capacity(args.len());
    let mut off = 1usize;
    for (i, (a, t)) in args.iter().zip(tys).enumerate() {
        if data.contains(&i) {
            let n = t.size();
            if off + n >= u32::MAX as usize {
                return Ok(None);
            }
            let v: Vec<f64> = (off..off + n).map(|k| k as f64).collect();
            off += n;
            arrays.push(Array::from_f64(t.shape.clone(), v)?);
        } else {
            match &a.konst {
                Some(k) => arrays.push((**k).clone()),
                None => return Ok(None),
            }
        }
    }
    let refs: Vec<&Array> = arrays.iter().collect();
    let out = op.eval(&refs)?;
    Ok(Some(
        out[0].to_f64_vec().into_iter().map(|p| p as u32).collect(),
    ))
}

/// Scatters: `set` with known indices moves elements exactly; the combining scatters add to
/// each operand element the updates that land on it.
fn scatter(
    ctx: &mut Ctx,
    op: &Op,
    at: ferrax_ir::ops::Indexing,
    combine: ferrax_ir::ops::Combine,
    args: &[&State],
    tys: &[Type],
    n: usize,
) -> Result<Option<Arc<Sets>>> {
    if combine == ferrax_ir::ops::Combine::Set {
        return moved(ctx, op, args, tys, &[0, 2], n);
    }
    if args[0].deps.is_none() && args[2].deps.is_none() {
        return Ok(None);
    }
    // Where each update lands: the matching gather of the operand's positions.
    let gather = Op::Index(IndexOp::Gather(at));
    let land = match positions(&gather, &args[..2], &tys[..2], &[0])? {
        Some(p) => p,
        None => {
            let t = Type::new(DType::F64, &[n]);
            return Ok(full(ctx, args, &[t])?.pop().and_then(|s| s.deps));
        }
    };
    let mut extra: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (u, &p) in land.iter().enumerate() {
        if p >= 1 {
            extra[p as usize - 1].extend_from_slice(args[2].set(u));
        }
    }
    ctx.build(n, |i| union_all([args[0].set(i), extra[i].as_slice()]))
}

/// For each dimension and each window position along it (one per result index), the operand
/// indices the window covers: positions `o·stride + w·window_dilation − lo` that fall on an
/// element of the base-dilated operand.
fn window_lines(
    w: &ferrax_ir::ops::Window,
    in_dims: &[usize],
    out_dims: &[usize],
) -> Vec<Vec<Vec<usize>>> {
    (0..in_dims.len())
        .map(|d| {
            (0..out_dims[d])
                .map(|o| {
                    (0..w.dims[d])
                        .filter_map(|k| {
                            let pos = (o * w.strides[d] + k * w.window_dilation[d]) as i64
                                - w.lo[d] as i64;
                            let b = w.base_dilation[d] as i64;
                            (pos >= 0 && pos % b == 0 && ((pos / b) as usize) < in_dims[d])
                                .then_some((pos / b) as usize)
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The flat operand offsets covered by the window of result element `i` (row-major).
fn window_cover(
    lines: &[Vec<Vec<usize>>],
    in_dims: &[usize],
    out_dims: &[usize],
    i: usize,
) -> Vec<usize> {
    let strides = Shape::new(in_dims).strides();
    let mut rest = i;
    let mut idx = vec![0usize; out_dims.len()];
    for d in (0..out_dims.len()).rev() {
        idx[d] = rest % out_dims[d].max(1);
        rest /= out_dims[d].max(1);
    }
    let mut out = vec![0usize];
    for d in 0..in_dims.len() {
        let line = &lines[d][idx[d]];
        let mut next = Vec::with_capacity(out.len() * line.len());
        for &o in &out {
            for &k in line {
                next.push(o + k * strides[d]);
            }
        }
        out = next;
    }
    out
}

/// Windowed ops from their geometry: a reduction depends on the elements of its window;
/// `select_and_gather_add(t, x)` on the elements of both operands in its window;
/// `select_and_scatter_add(c, x)` element `p` on every window element of `c` whose window
/// covers `p`, and on `x[p]` (the operand `x` only selects, so both are over-approximations).
fn window(
    ctx: &mut Ctx,
    w: &ferrax_ir::ops::WindowOp,
    args: &[&State],
    tys: &[Type],
    out: &Type,
) -> Result<Option<Arc<Sets>>> {
    use ferrax_ir::ops::WindowOp;
    if args.iter().all(|a| a.deps.is_none()) {
        return Ok(None);
    }
    let win = w.window();
    match w {
        WindowOp::Reduce { .. } | WindowOp::SelectAndGatherAdd { .. } => {
            let (ind, outd) = (tys[0].dims(), out.dims());
            let lines = window_lines(win, ind, outd);
            ctx.build(out.size(), |i| {
                let cover = window_cover(&lines, ind, outd, i);
                union_all(
                    args.iter()
                        .flat_map(|a| cover.iter().map(move |&k| a.set(k))),
                )
            })
        }
        WindowOp::SelectAndScatterAdd { .. } => {
            // The windows are those of `x` (operand 1); `c` (operand 0) has one element each.
            let (ind, outd) = (tys[1].dims(), tys[0].dims());
            let lines = window_lines(win, ind, outd);
            let mut acc: Vec<Vec<u32>> = vec![Vec::new(); out.size()];
            for i in 0..tys[0].size() {
                for k in window_cover(&lines, ind, outd, i) {
                    acc[k].extend_from_slice(args[0].set(i));
                }
            }
            ctx.build(out.size(), |p| {
                union_all([acc[p].as_slice(), args[1].set(p)])
            })
        }
    }
}

/// Row-major offsets of every multi-index over `dims`, with the given strides.
fn offsets(dims: &[usize], strides: &[usize]) -> Vec<usize> {
    let mut out = vec![0usize];
    for (&d, &s) in dims.iter().zip(strides) {
        let mut next = Vec::with_capacity(out.len() * d);
        for &o in &out {
            for k in 0..d {
                next.push(o + k * s);
            }
        }
        out = next;
    }
    out
}

fn reduce(ctx: &mut Ctx, a: &State, dims: &[usize], axes: &[usize]) -> Result<Option<Arc<Sets>>> {
    if a.deps.is_none() {
        return Ok(None);
    }
    let strides = Shape::new(dims).strides();
    let kept: Vec<usize> = (0..dims.len()).filter(|d| !axes.contains(d)).collect();
    let pick = |ds: &[usize]| -> (Vec<usize>, Vec<usize>) {
        (
            ds.iter().map(|&d| dims[d]).collect(),
            ds.iter().map(|&d| strides[d]).collect(),
        )
    };
    let (kd, ks) = pick(&kept);
    let (rd, rs) = pick(axes);
    let outer = offsets(&kd, &ks);
    let inner = offsets(&rd, &rs);
    ctx.build_into(outer.len(), |i, out| {
        append_union(out, inner.iter().map(|&r| a.set(outer[i] + r)))
    })
}

fn cumsum(
    ctx: &mut Ctx,
    a: &State,
    dims: &[usize],
    axis: usize,
    reverse: bool,
) -> Result<Option<Arc<Sets>>> {
    if a.deps.is_none() {
        return Ok(None);
    }
    let len = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let n: usize = dims.iter().product();
    let mut out: Vec<Set> = vec![Set::new(); n];
    for line in 0..n / len.max(1) {
        let (o, r) = (line / inner.max(1), line % inner.max(1));
        let mut run = Set::new();
        for step in 0..len {
            let k = if reverse { len - 1 - step } else { step };
            let idx = (o * len + k) * inner + r;
            run = union2(&run, a.set(idx));
            out[idx] = run.clone();
        }
    }
    ctx.build(n, |i| std::mem::take(&mut out[i]))
}

fn dot(
    ctx: &mut Ctx,
    d: &ferrax_ir::ops::DotGeneral,
    args: &[&State],
    tys: &[Type],
) -> Result<Option<Arc<Sets>>> {
    let (l, r) = (args[0], args[1]);
    if l.deps.is_none() && r.deps.is_none() {
        return Ok(None);
    }
    let (ld, rd) = (tys[0].dims(), tys[1].dims());
    let (lst, rst) = (Shape::new(ld).strides(), Shape::new(rd).strides());
    let part = |dims: &[usize], st: &[usize], ds: &[usize]| -> Vec<usize> {
        let sz: Vec<usize> = ds.iter().map(|&x| dims[x]).collect();
        let s: Vec<usize> = ds.iter().map(|&x| st[x]).collect();
        offsets(&sz, &s)
    };
    let lb = part(ld, &lst, &d.lhs_batch);
    let rb = part(rd, &rst, &d.rhs_batch);
    let lf = part(ld, &lst, &d.lhs_free(ld.len()));
    let rf = part(rd, &rst, &d.rhs_free(rd.len()));
    let lc = part(ld, &lst, &d.lhs_contract);
    let rc = part(rd, &rst, &d.rhs_contract);
    // A known operand's zeros contribute no dependence on the other operand.
    let nonzero = |s: &State, i: usize| match &s.konst {
        Some(k) => k.data().get_f64(i) != 0.0,
        None => true,
    };
    let n = lb.len() * lf.len() * rf.len();
    ctx.build(n, |i| {
        let g = i % rf.len();
        let f = (i / rf.len()) % lf.len();
        let b = i / (rf.len() * lf.len());
        let mut sets: Vec<&[u32]> = Vec::new();
        for (&cl, &cr) in lc.iter().zip(&rc) {
            let li = lb[b] + lf[f] + cl;
            let ri = rb[b] + rf[g] + cr;
            if nonzero(r, ri) {
                sets.push(l.set(li));
            }
            if nonzero(l, li) {
                sets.push(r.set(ri));
            }
        }
        union_all(sets)
    })
}

fn control(
    ctx: &mut Ctx,
    c: &ControlOp,
    args: &[&State],
    tys: &[Type],
    outs: &[Type],
) -> Result<Vec<State>> {
    let owned: Vec<State> = args.iter().map(|s| (*s).clone()).collect();
    match c {
        ControlOp::Switch { branches } => {
            let known = args[0]
                .konst
                .as_ref()
                .and_then(|k| k.to_scalar().ok())
                .map(|i| (i.max(0.0) as usize).min(branches.len() - 1));
            let mut acc: Option<Vec<State>> = None;
            for (b, body) in branches.iter().enumerate() {
                if known.is_some_and(|k| k != b) {
                    continue;
                }
                let r = propagate(ctx, body.graph(), &owned[1..])?;
                acc = Some(match acc {
                    None => r,
                    Some(a) => a.iter().zip(&r).map(|(x, y)| x.join(y)).collect(),
                });
            }
            Ok(acc.unwrap_or_default())
        }
        ControlOp::While {
            cond,
            body,
            n_consts,
        } => {
            let (consts, mut carry) = (owned[..*n_consts].to_vec(), owned[*n_consts..].to_vec());
            let with = |carry: &[State]| [consts.as_slice(), carry].concat();
            for _ in 0..UNROLL_LIMIT {
                let p = propagate(ctx, cond.graph(), &with(&carry))?;
                match p[0].konst.as_ref().and_then(|k| k.to_scalar().ok()) {
                    Some(0.0) => return Ok(carry),
                    Some(_) => carry = propagate(ctx, body.graph(), &with(&carry))?,
                    None => break,
                }
            }
            fixed_point(
                ctx,
                body.graph(),
                &consts,
                carry,
                &[],
                carry_len(&owned, *n_consts),
            )
            .map(|(c, _)| c)
        }
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => scan(
            ctx,
            body.graph(),
            &owned,
            tys,
            outs,
            *length,
            *n_consts,
            *n_carry,
            *reverse,
        ),
        ControlOp::Call { body, .. } => propagate(ctx, body.graph(), &owned),
        ControlOp::TapedWhile { .. } | ControlOp::CustomLinear { .. } => full(ctx, args, outs),
    }
}

fn carry_len(owned: &[State], n_consts: usize) -> usize {
    owned.len() - n_consts
}

/// Iterates `carry ← carry ⊔ body(consts, carry, xs)` until nothing changes; returns the carry
/// and the body's other outputs at the fixed point. Terminates because sets only grow and
/// known constants only become unknown.
fn fixed_point(
    ctx: &mut Ctx,
    body: &Graph,
    consts: &[State],
    mut carry: Vec<State>,
    xs: &[State],
    n_carry: usize,
) -> Result<(Vec<State>, Vec<State>)> {
    loop {
        let args = [consts, &carry, xs].concat();
        let out = propagate(ctx, body, &args)?;
        let next: Vec<State> = carry.iter().zip(&out).map(|(a, b)| a.join(b)).collect();
        let same = next
            .iter()
            .zip(&carry)
            .all(|(a, b)| a.same_deps(b) && a.konst.is_some() == b.konst.is_some());
        if same {
            return Ok((next, out[n_carry..].to_vec()));
        }
        carry = next;
    }
}

#[allow(clippy::too_many_arguments)]
fn scan(
    ctx: &mut Ctx,
    body: &Graph,
    owned: &[State],
    tys: &[Type],
    outs: &[Type],
    length: usize,
    n_consts: usize,
    n_carry: usize,
    reverse: bool,
) -> Result<Vec<State>> {
    let consts = &owned[..n_consts];
    let mut carry = owned[n_consts..n_consts + n_carry].to_vec();
    let xs = &owned[n_consts + n_carry..];
    let x_tys = &tys[n_consts + n_carry..];
    let y_tys = &outs[n_carry..];
    // The state of slice `i` of each x.
    let slice = |i: usize| -> Result<Vec<State>> {
        let mut v = Vec::with_capacity(xs.len());
        for (x, t) in xs.iter().zip(x_tys) {
            let m = t.size() / length.max(1);
            let deps = x
                .deps
                .as_ref()
                .map(|d| Arc::new(d.slice(i * m, (i + 1) * m)));
            let konst = match &x.konst {
                Some(k) => Some(Arc::new(Array::new(
                    Shape::new(&t.dims()[1..]),
                    k.data().take(i * m..(i + 1) * m),
                )?)),
                None => None,
            };
            v.push(State {
                deps,
                konst,
                ..State::default()
            });
        }
        Ok(v)
    };
    if length <= UNROLL_LIMIT {
        let mut ys: Vec<Vec<Set>> = vec![Vec::new(); y_tys.len()];
        let mut any = vec![false; y_tys.len()];
        let order: Vec<usize> = if reverse {
            (0..length).rev().collect()
        } else {
            (0..length).collect()
        };
        let mut per_iter: Vec<Vec<State>> = Vec::with_capacity(length);
        for &i in &order {
            let args = [consts, &carry, &slice(i)?].concat();
            let out = propagate(ctx, body, &args)?;
            carry = out[..n_carry].to_vec();
            per_iter.push(out[n_carry..].to_vec());
        }
        // Stack the y slices in index order.
        for i in 0..length {
            let k = if reverse { length - 1 - i } else { i };
            for (j, (y, t)) in per_iter[k].iter().zip(y_tys).enumerate() {
                any[j] |= y.deps.is_some();
                ys[j].extend((0..t.size() / length.max(1)).map(|e| Set::from_slice(y.set(e))));
            }
        }
        let mut res = carry;
        for (j, y) in ys.into_iter().enumerate() {
            let deps = if any[j] {
                Some(Arc::new(Sets::from_sets(y)))
            } else {
                None
            };
            res.push(State {
                deps,
                ..State::default()
            });
        }
        return Ok(res);
    }
    // Too long to follow: every slice is joined into one state and the carry is a fixed point.
    let mut joined = slice(0)?;
    for i in 1..length {
        joined = joined
            .iter()
            .zip(&slice(i)?)
            .map(|(a, b)| a.join(b))
            .collect();
    }
    let (mut res, ys) = fixed_point(ctx, body, consts, carry, &joined, n_carry)?;
    for (y, t) in ys.iter().zip(y_tys) {
        let m = t.size() / length.max(1);
        let deps = match &y.deps {
            Some(_) => ctx.build(t.size(), |e| Set::from_slice(y.set(e % m.max(1))))?,
            None => None,
        };
        res.push(State {
            deps,
            ..State::default()
        });
    }
    Ok(res)
}
