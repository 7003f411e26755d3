//! Graph colouring for compressed derivatives: greedy column (distance-2) colouring of a
//! Jacobian pattern for forward mode, and greedy star colouring of a symmetric Hessian pattern,
//! each with a choice of vertex ordering, plus the decompression maps that read every
//! structural nonzero out of the compressed matrix.
//!
//! Colours are `0..num_colours`. For a column colouring, the compressed matrix is
//! `B = J · S` with `S[j, c] = 1` when column `j` has colour `c`; because no two columns sharing
//! a row share a colour, `J[i, j] = B[i, colour(j)]`. A star colouring (Gebremedhin, Manne and
//! Pothen, "What color is your Jacobian?", 2005) is a distance-1 colouring of the adjacency
//! graph in which every path on four vertices uses at least three colours; for each
//! off-diagonal nonzero `(i, j)`, then, `j` is the only vertex of its colour in row `i` or `i`
//! the only one of its colour in row `j`, so `H[i, j]` is read directly from `B = H · S`.

use super::pattern::Pattern;
use ferrax_ir::{Error, ErrorKind, Result};
use std::cmp::Reverse;

/// The order in which greedy colouring visits the vertices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Index order.
    Natural,
    /// Decreasing degree in the conflict graph.
    LargestFirst,
    /// Reverse of repeatedly removing a vertex of smallest remaining degree (Matula and Beck);
    /// usually the fewest colours of the three.
    #[default]
    SmallestLast,
}

/// A colouring: one colour per vertex (column), and the number of colours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colouring {
    /// The colour of each vertex, in `0..num_colours`.
    pub colours: Vec<usize>,
    /// The number of colours used.
    pub num_colours: usize,
}

/// The conflict graph: sorted adjacency lists without self loops or repeats, stored flat
/// (vertex `v`'s neighbours are `nbrs[start[v]..start[v + 1]]`), so that a graph of a million
/// vertices is three allocations rather than a million.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adjacency {
    start: Vec<usize>,
    nbrs: Vec<usize>,
}

impl Adjacency {
    /// The graph on `n` vertices whose edges `emit` produces (as ordered pairs `(a, b)`: `b`
    /// joins `a`'s list; self loops are dropped). `emit` runs twice, once to count and once
    /// to fill.
    fn build(n: usize, emit: impl Fn(&mut dyn FnMut(usize, usize))) -> Adjacency {
        let mut start = vec![0usize; n + 1];
        emit(&mut |a, b| {
            if a != b {
                start[a + 1] += 1;
            }
        });
        for v in 0..n {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut nbrs = vec![0usize; start[n]];
        emit(&mut |a, b| {
            if a != b {
                nbrs[fill[a]] = b;
                fill[a] += 1;
            }
        });
        // Sort each list and drop repeats, compacting in place.
        let mut out = 0;
        let mut from = 0;
        for v in 0..n {
            let end = start[v + 1];
            nbrs[from..end].sort_unstable();
            start[v] = out;
            let mut last = None;
            for k in from..end {
                if last != Some(nbrs[k]) {
                    last = Some(nbrs[k]);
                    nbrs[out] = nbrs[k];
                    out += 1;
                }
            }
            from = end;
        }
        start[n] = out;
        nbrs.truncate(out);
        Adjacency { start, nbrs }
    }

    /// The number of vertices.
    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Whether the graph has no vertex.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The neighbours of `v`, sorted.
    pub fn nbrs(&self, v: usize) -> &[usize] {
        &self.nbrs[self.start[v]..self.start[v + 1]]
    }

    /// The number of directed edges (each edge counted from both ends).
    pub fn num_arcs(&self) -> usize {
        self.nbrs.len()
    }

    /// The position of the directed edge `v → w` among all of them (`v`'s come first from
    /// `v`'s offset, in neighbour order), or `None` when `w` is not a neighbour of `v`.
    pub fn arc(&self, v: usize, w: usize) -> Option<usize> {
        self.nbrs(v)
            .binary_search(&w)
            .ok()
            .map(|k| self.start[v] + k)
    }
}

/// Columns conflict when they share a row: the column intersection graph of `p`.
pub fn column_conflicts(p: &Pattern) -> Adjacency {
    Adjacency::build(p.ncols, |edge| {
        for r in 0..p.nrows {
            let row = p.row(r);
            for &a in row {
                for &b in row {
                    edge(a, b);
                }
            }
        }
    })
}

/// The adjacency graph of a square, symmetric pattern (diagonal entries dropped; an entry
/// `(i, j)` makes `i` and `j` adjacent even if `(j, i)` is missing).
pub fn symmetric_adjacency(p: &Pattern) -> Adjacency {
    if p.nrows == p.ncols {
        // The rows are the adjacency lists already (sorted, without repeats): one copy
        // without the diagonal, made while the symmetry is checked.
        let mut start = Vec::with_capacity(p.nrows + 1);
        let mut nbrs = Vec::with_capacity(p.nnz());
        start.push(0);
        let symmetric = walk_symmetric(p, |r, row| {
            nbrs.extend(row.iter().copied().filter(|&c| c != r));
            start.push(nbrs.len());
        });
        if symmetric {
            return Adjacency { start, nbrs };
        }
    }
    Adjacency::build(p.ncols.max(p.nrows), |edge| {
        for r in 0..p.nrows {
            for &c in p.row(r) {
                edge(r, c);
                edge(c, r);
            }
        }
    })
}

/// Whether the square pattern `p` is structurally symmetric, with sorted rows without
/// repeats.
pub(crate) fn is_symmetric(p: &Pattern) -> bool {
    walk_symmetric(p, |_, _| {})
}

/// Whether the square pattern `p` is structurally symmetric, with sorted rows without
/// repeats, handing `row` each row (its index and columns) once that row is checked; it stops
/// at the first row that fails. Only the entries above the diagonal look for their mirror
/// (by binary search in its row): mirroring is one-to-one, so when every upper entry has
/// its mirror below and there are as many entries below the diagonal as above, every lower
/// entry has its mirror too.
fn walk_symmetric(p: &Pattern, mut row: impl FnMut(usize, &[usize])) -> bool {
    let (mut upper, mut lower) = (0usize, 0usize);
    for r in 0..p.nrows {
        let cols = p.row(r);
        if !cols.windows(2).all(|w| w[0] < w[1]) {
            return false;
        }
        // The row is sorted: the entries below the diagonal come first.
        let below = cols.partition_point(|&c| c < r);
        let above = cols.partition_point(|&c| c <= r);
        lower += below;
        upper += cols.len() - above;
        let mirrored = cols[above..]
            .iter()
            .all(|&c| c < p.nrows && p.row(c).binary_search(&r).is_ok());
        if !mirrored {
            return false;
        }
        row(r, cols);
    }
    upper == lower
}

/// The visiting order of the vertices of `adj`.
pub fn order(adj: &Adjacency, ordering: Ordering) -> Vec<usize> {
    let n = adj.len();
    match ordering {
        Ordering::Natural => (0..n).collect(),
        Ordering::LargestFirst => {
            let mut v: Vec<usize> = (0..n).collect();
            v.sort_by_key(|&i| (Reverse(adj.nbrs(i).len()), i));
            v
        }
        Ordering::SmallestLast => {
            if n < u32::MAX as usize {
                smallest_last::<u32>(adj)
            } else {
                smallest_last::<usize>(adj)
            }
        }
    }
}

/// An index type for the flat arrays of [`smallest_last`]: `u32` halves their memory (and the
/// pages touched) whenever the vertices fit.
trait Slot: Copy + Eq {
    /// The "no vertex" (or "removed") marker, larger than every vertex and degree.
    const NIL: Self;
    fn of(v: usize) -> Self;
    fn at(self) -> usize;
}

impl Slot for u32 {
    const NIL: u32 = u32::MAX;
    #[inline]
    fn of(v: usize) -> u32 {
        v as u32
    }
    #[inline]
    fn at(self) -> usize {
        self as usize
    }
}

impl Slot for usize {
    const NIL: usize = usize::MAX;
    #[inline]
    fn of(v: usize) -> usize {
        v
    }
    #[inline]
    fn at(self) -> usize {
        self
    }
}

/// The smallest-last order of `adj`'s vertices (Matula and Beck's bucket queue, as doubly
/// linked lists in flat arrays of `S`, which must hold every vertex and degree below
/// `S::NIL`): bucket `d` holds the remaining vertices of degree `d`, each list a stack.
/// Removing a vertex moves each remaining neighbour down one bucket, so the smallest degree
/// drops by at most one per removal and the scan pointer moves back by at most one: linear
/// time. A removed vertex's degree is `S::NIL`.
fn smallest_last<S: Slot>(adj: &Adjacency) -> Vec<usize> {
    let n = adj.len();
    let nil = S::NIL;
    let mut degree: Vec<S> = (0..n).map(|v| S::of(adj.nbrs(v).len())).collect();
    let maxd = (0..n).map(|v| adj.nbrs(v).len()).max().unwrap_or(0);
    let mut head = vec![nil; maxd + 1];
    let (mut next, mut prev) = (vec![nil; n], vec![nil; n]);
    let link = |v: usize, d: usize, head: &mut [S], next: &mut [S], prev: &mut [S]| {
        next[v] = head[d];
        prev[v] = nil;
        if head[d] != nil {
            prev[head[d].at()] = S::of(v);
        }
        head[d] = S::of(v);
    };
    let unlink = |v: usize, d: usize, head: &mut [S], next: &mut [S], prev: &mut [S]| {
        if prev[v] != nil {
            next[prev[v].at()] = next[v];
        } else {
            head[d] = next[v];
        }
        if next[v] != nil {
            prev[next[v].at()] = prev[v];
        }
    };
    for v in (0..n).rev() {
        link(v, degree[v].at(), &mut head, &mut next, &mut prev);
    }
    let mut out = Vec::with_capacity(n);
    let mut d = 0;
    while out.len() < n {
        let v = head[d];
        if v == nil {
            d += 1;
            continue;
        }
        let v = v.at();
        unlink(v, d, &mut head, &mut next, &mut prev);
        degree[v] = nil;
        out.push(v);
        for &w in adj.nbrs(v) {
            if degree[w] != nil {
                let dw = degree[w].at();
                unlink(w, dw, &mut head, &mut next, &mut prev);
                degree[w] = S::of(dw - 1);
                link(w, dw - 1, &mut head, &mut next, &mut prev);
            }
        }
        d = d.saturating_sub(1);
    }
    out.reverse();
    out
}

/// The smallest colour not marked with `stamp` in `forbidden`.
fn first_free(forbidden: &[usize], stamp: usize) -> usize {
    forbidden
        .iter()
        .position(|&f| f != stamp)
        .unwrap_or(forbidden.len())
}

fn finish(colours: Vec<usize>) -> Colouring {
    let num_colours = colours.iter().map(|&c| c + 1).max().unwrap_or(0);
    Colouring {
        colours,
        num_colours,
    }
}

/// Greedy column colouring of a Jacobian pattern: columns sharing a row get different colours.
/// The greedy colouring in the chosen order is then improved by [`recolour`], then by
/// [`drop_colour`] one colour at a time, until it meets the lower bound (the longest row,
/// whose columns all conflict) or a search fails.
pub fn colour_columns(p: &Pattern, ordering: Ordering) -> Colouring {
    let widest = (0..p.nrows).map(|r| p.row(r).len()).max().unwrap_or(0);
    colour_conflicts(&column_conflicts(p), ordering, widest)
}

/// A column colouring of `p` by one greedy pass in `ordering`, without the searches of
/// [`colour_columns`] (more colours, found in linear time): for evaluations made once.
pub fn colour_columns_greedy(p: &Pattern, ordering: Ordering) -> Colouring {
    let adj = column_conflicts(p);
    finish(greedy(&adj, order(&adj, ordering)))
}

/// Greedy column colouring in which only the entries marked `varying` (one flag per nonzero,
/// in CSR order) must be recoverable: a varying entry's column gets a colour no other column
/// of its row has, while columns that share rows only through entries that are not varying
/// may share a colour. In `B = J · S` each varying entry is then alone in its element of the
/// compressed matrix (the others of that element are the constant entries of its row, known
/// in advance and not read from `B`). Improved like [`colour_columns`], down to the lower
/// bound of the rows (their varying entries, plus one colour for the rest of the row).
/// Errors when `varying` does not hold one flag per nonzero.
pub fn colour_columns_varying(
    p: &Pattern,
    varying: &[bool],
    ordering: Ordering,
) -> Result<Colouring> {
    if varying.len() != p.nnz() {
        ferrax_ir::bail!(
            Transform,
            "colour_columns_varying: {} flags for {} nonzeros",
            varying.len(),
            p.nnz()
        );
    }
    let adj = Adjacency::build(p.ncols, |edge| {
        for r in 0..p.nrows {
            let row = p.row(r);
            let flags = &varying[p.row_ptr[r]..p.row_ptr[r + 1]];
            for (&a, &v) in row.iter().zip(flags) {
                if v {
                    for &b in row {
                        edge(a, b);
                        edge(b, a);
                    }
                }
            }
        }
    });
    let widest = (0..p.nrows)
        .map(|r| {
            let flags = &varying[p.row_ptr[r]..p.row_ptr[r + 1]];
            let v = flags.iter().filter(|&&f| f).count();
            if v == 0 {
                0
            } else {
                v + usize::from(v < flags.len())
            }
        })
        .max()
        .unwrap_or(0);
    Ok(colour_conflicts(&adj, ordering, widest))
}

/// Whether `c` is a valid colouring for [`colour_columns_varying`]: no varying entry's column
/// shares its colour with another column of its row.
pub fn is_valid_varying_colouring(p: &Pattern, varying: &[bool], c: &Colouring) -> bool {
    if c.colours.len() < p.ncols || varying.len() != p.nnz() {
        return false;
    }
    (0..p.nrows).all(|r| {
        let row = p.row(r);
        let flags = &varying[p.row_ptr[r]..p.row_ptr[r + 1]];
        row.iter()
            .zip(flags)
            .all(|(&a, &v)| !v || row.iter().all(|&b| b == a || c.colours[b] != c.colours[a]))
    })
}

/// Neighbours scanned per vertex by [`clique_bound`].
const CLIQUE_SCAN: usize = 64;

/// A lower bound on the colours of `adj`: the largest clique found by growing one greedily
/// from every vertex, through (at most [`CLIQUE_SCAN`] of) its neighbours in order, each
/// joining when it is adjacent to every member so far (a binary search per member). About
/// `n · CLIQUE_SCAN` searches at most. With it, the colour searches stop at a colouring that
/// cannot be improved instead of spending their whole budget on one that cannot exist: the
/// varying entries of the Brusselator's Jacobian (a u–v pair and its neighbours along the
/// grid form cliques of four) need the four colours its greedy colouring finds.
fn clique_bound(adj: &Adjacency) -> usize {
    let mut best = usize::from(!adj.is_empty());
    let mut clique = Vec::new();
    for v in 0..adj.len() {
        if adj.nbrs(v).len() < best {
            continue;
        }
        clique.clear();
        clique.push(v);
        for &w in adj.nbrs(v).iter().take(CLIQUE_SCAN) {
            if clique[1..]
                .iter()
                .all(|&u| adj.nbrs(u).binary_search(&w).is_ok())
            {
                clique.push(w);
            }
        }
        best = best.max(clique.len());
    }
    best
}

/// Greedy colouring of the conflict graph `adj` in `ordering`, improved by [`recolour`] and
/// then by [`drop_colour`] one colour at a time, until it meets the lower bound `widest` or a
/// search fails.
fn colour_conflicts(adj: &Adjacency, ordering: Ordering, widest: usize) -> Colouring {
    let first = greedy(adj, order(adj, ordering));
    let widest = widest.max(clique_bound(adj));
    let mut colours = recolour(adj, first, widest);
    // Fewer colours by local search, one at a time, while it succeeds within its budget.
    // Each search after the first may take twice the steps of the previous one (plus
    // the minimum): the colour after a hard-won one is rarely found, and a failed search
    // costs its whole budget.
    let mut cap = usize::MAX;
    while count(&colours) > widest.max(1) {
        match drop_colour(adj, &colours, cap) {
            Some((fewer, steps)) => {
                colours = fewer;
                cap = TABU_STEPS_MIN.saturating_add(steps.saturating_mul(2));
            }
            None => break,
        }
    }
    finish(colours)
}

/// The number of colours of a colouring (one more than the largest).
fn count(colours: &[usize]) -> usize {
    colours.iter().map(|&x| x + 1).max().unwrap_or(0)
}

/// The steps [`drop_colour`] may take: this many, plus [`TABU_STEPS_PER_CONFLICT`] per
/// vertex in conflict once the dropped class is placed.
const TABU_STEPS_MIN: usize = 10_000;

/// See [`TABU_STEPS_MIN`]: on the coupled stencils of the tests, the searches that succeed
/// take 5 to 13 steps per vertex first in conflict.
const TABU_STEPS_PER_CONFLICT: usize = 16;

/// One colour fewer than the colouring `colours` of `adj` (`k ≥ 2` colours), found by tabu
/// search (Hertz and de Werra's TabuCol, with a random conflicted vertex per step): the last
/// class's vertices take the colour of fewest neighbours among the others, then, while some
/// edge joins two vertices of one colour, one endpoint of such an edge moves to the colour it
/// has fewest neighbours of, and may not return to the colour it left for a few steps (unless
/// the move leaves it without conflict). Returns the colouring and the steps taken, or `None`
/// if conflicts remain after the budget of steps ([`TABU_STEPS_MIN`], at most `cap`).
/// A step costs the vertex's degree plus the colours; the random choices come from a fixed
/// seed, so a pattern always gets the same colouring. On the Brusselator's Jacobian
/// (periodic five-point stencils coupled pointwise, 128 × 128 and 256 × 256 grids) the
/// greedy colourings' 10 colours become 9 within about 5,000 steps; 8 exist (a lattice
/// colouring) but were not found within two million.
fn drop_colour(adj: &Adjacency, colours: &[usize], cap: usize) -> Option<(Vec<usize>, usize)> {
    const FREE: usize = usize::MAX;
    let n = adj.len();
    let k = count(colours).checked_sub(1).filter(|&k| k >= 1)?;
    // `conflicts[v * k + c]`: the neighbours of `v` with colour `c`.
    let cells = n.checked_mul(k)?;
    let mut conflicts = vec![0u32; cells];
    let mut c: Vec<usize> = colours
        .iter()
        .map(|&x| if x == k { FREE } else { x })
        .collect();
    for v in 0..n {
        for &w in adj.nbrs(v) {
            if c[w] != FREE {
                conflicts[v * k + c[w]] += 1;
            }
        }
    }
    for v in 0..n {
        if c[v] == FREE {
            let best = (0..k).min_by_key(|&x| conflicts[v * k + x]).unwrap_or(0);
            c[v] = best;
            for &w in adj.nbrs(v) {
                conflicts[w * k + best] += 1;
            }
        }
    }
    // The vertices in conflict, as a list with each one's place in it.
    let mut place = vec![FREE; n];
    let mut bad: Vec<usize> = Vec::new();
    let update =
        |u: usize, c: &[usize], conflicts: &[u32], bad: &mut Vec<usize>, place: &mut [usize]| {
            let clash = conflicts[u * k + c[u]] > 0;
            if clash && place[u] == FREE {
                place[u] = bad.len();
                bad.push(u);
            } else if !clash && place[u] != FREE {
                let at = place[u];
                bad.swap_remove(at);
                if let Some(&moved) = bad.get(at) {
                    place[moved] = at;
                }
                place[u] = FREE;
            }
        };
    for v in 0..n {
        update(v, &c, &conflicts, &mut bad, &mut place);
    }
    let mut tabu = vec![0usize; cells];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let budget = TABU_STEPS_MIN
        .saturating_add(bad.len().saturating_mul(TABU_STEPS_PER_CONFLICT))
        .min(cap);
    for step in 1..=budget {
        if bad.is_empty() {
            return Some((c, step));
        }
        let v = bad[random() % bad.len()];
        let old = c[v];
        // The allowed colour with fewest conflicts, ties broken at random.
        let (mut best, mut fewest, mut ties) = (FREE, u32::MAX, 0usize);
        for x in (0..k).filter(|&x| x != old) {
            let g = conflicts[v * k + x];
            if tabu[v * k + x] > step && g > 0 {
                continue;
            }
            if g < fewest {
                (best, fewest, ties) = (x, g, 1);
            } else if g == fewest {
                ties += 1;
                if random() % ties == 0 {
                    best = x;
                }
            }
        }
        if best == FREE {
            continue;
        }
        c[v] = best;
        tabu[v * k + old] = step + 7 + random() % 10;
        for &w in adj.nbrs(v) {
            conflicts[w * k + old] -= 1;
            conflicts[w * k + best] += 1;
            update(w, &c, &conflicts, &mut bad, &mut place);
        }
        update(v, &c, &conflicts, &mut bad, &mut place);
    }
    bad.is_empty().then_some((c, budget))
}

/// Greedy distance-1 colouring of `adj`, visiting the vertices in `order` (a permutation):
/// each takes the smallest colour none of its coloured neighbours has.
fn greedy(adj: &Adjacency, order: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut colour = vec![NONE; n];
    // `forbidden[c] == v + 1` while colouring `v` means colour `c` is taken by a neighbour.
    let mut forbidden = vec![0usize; n + 1];
    for v in order {
        for &w in adj.nbrs(v) {
            if colour[w] != NONE {
                forbidden[colour[w]] = v + 1;
            }
        }
        colour[v] = first_free(&forbidden, v + 1);
    }
    colour
}

/// Rounds of [`recolour`], at most.
const RECOLOUR_ROUNDS: usize = 16;

/// Rounds of [`recolour`] without fewer colours after which it stops.
const RECOLOUR_PATIENCE: usize = 4;

/// Culberson's iterated greedy recolouring: greedy colouring again in an order that lists
/// the vertices class by class (all of one colour, then all of another) never needs more
/// colours than the classes it was given, since a vertex's class-mates are not its neighbours
/// and each class can at worst keep one colour; the order of the classes decides whether it
/// needs fewer. Each round takes the previous round's classes in one of four orders (reverse,
/// largest first, smallest first, and an order scrambled by a fixed multiplier), keeping the
/// best colouring seen; it stops at `bound` colours (a lower bound), after
/// [`RECOLOUR_PATIENCE`] rounds without progress, or after [`RECOLOUR_ROUNDS`]. The rounds
/// are deterministic, so a pattern always gets the same colouring. On the Brusselator's
/// Jacobian (five-point stencil with coupling, periodic 256 × 256 grid) smallest-last greedy
/// gives 12 colours.
fn recolour(adj: &Adjacency, first: Vec<usize>, bound: usize) -> Vec<usize> {
    let mut best_k = count(&first);
    let mut best = first.clone();
    let mut cur = first;
    let mut stale = 0;
    for round in 0..RECOLOUR_ROUNDS {
        let k = count(&cur);
        if best_k <= bound || stale >= RECOLOUR_PATIENCE {
            break;
        }
        // The classes' sizes, then their visiting order for this round.
        let mut size = vec![0usize; k];
        for &c in &cur {
            size[c] += 1;
        }
        let mut classes: Vec<usize> = (0..k).collect();
        match round % 4 {
            0 => classes.reverse(),
            1 => classes.sort_by_key(|&c| (Reverse(size[c]), c)),
            2 => classes.sort_by_key(|&c| (size[c], c)),
            _ => classes.sort_by_key(|&c| (c.wrapping_mul(2_654_435_761) ^ round) % (k + 1)),
        }
        // Counting sort of the vertices by their class's place in that order.
        let mut place = vec![0usize; k];
        for (at, &c) in classes.iter().enumerate() {
            place[c] = at;
        }
        let mut start = vec![0usize; k + 1];
        for &c in &cur {
            start[place[c] + 1] += 1;
        }
        for i in 0..k {
            start[i + 1] += start[i];
        }
        let mut order = vec![0usize; cur.len()];
        for (v, &c) in cur.iter().enumerate() {
            let at = &mut start[place[c]];
            order[*at] = v;
            *at += 1;
        }
        cur = greedy(adj, order);
        let now = count(&cur);
        if now < best_k {
            best_k = now;
            best.clone_from(&cur);
            stale = 0;
        } else {
            stale += 1;
        }
    }
    best
}

/// Greedy star colouring of a symmetric pattern (Gebremedhin, Manne and Pothen's algorithm 4.1):
/// a distance-1 colouring where every path on four vertices has at least three colours.
pub fn colour_star(p: &Pattern, ordering: Ordering) -> Colouring {
    let adj = symmetric_adjacency(p);
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut colour = vec![NONE; n];
    let mut forbidden = vec![0usize; n + 1];
    for v in order(&adj, ordering) {
        let stamp = v + 1;
        for &w in adj.nbrs(v) {
            if colour[w] != NONE {
                forbidden[colour[w]] = stamp;
            }
            for &x in adj.nbrs(w) {
                if x == v || colour[x] == NONE {
                    continue;
                }
                if colour[w] == NONE {
                    // v and x would be at distance two through an uncoloured w.
                    forbidden[colour[x]] = stamp;
                } else if adj
                    .nbrs(x)
                    .iter()
                    .any(|&y| y != w && colour[y] != NONE && colour[y] == colour[w])
                {
                    // x−w is already part of a two-coloured path through another neighbour
                    // of x; giving v x's colour would make a two-coloured path on four vertices.
                    forbidden[colour[x]] = stamp;
                }
            }
        }
        colour[v] = first_free(&forbidden, stamp);
    }
    finish(colour)
}

/// Whether `c` is a valid column colouring of `p` (no two columns of one row share a colour).
pub fn is_valid_column_colouring(p: &Pattern, c: &Colouring) -> bool {
    if c.colours.len() < p.ncols {
        return false;
    }
    (0..p.nrows).all(|r| {
        let mut seen: Vec<usize> = p.row(r).iter().map(|&j| c.colours[j]).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == n
    })
}

/// Whether `c` is a valid star colouring of the symmetric pattern `p`: adjacent vertices differ,
/// and no path on four vertices alternates between two colours.
pub fn is_valid_star_colouring(p: &Pattern, c: &Colouring) -> bool {
    let adj = symmetric_adjacency(p);
    let col = &c.colours;
    if col.len() < adj.len() {
        return false;
    }
    for a in 0..adj.len() {
        for &b in adj.nbrs(a) {
            if col[a] == col[b] {
                return false;
            }
            for &cc in adj.nbrs(b) {
                if cc == a || col[cc] != col[a] {
                    continue;
                }
                for &d in adj.nbrs(cc) {
                    if d != b && d != a && col[d] == col[b] {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// For a column colouring: the flat index `colour(j) · nrows + i` into the compressed matrix
/// `B = J · S`, stored colour-major (`num_colours × nrows`, the layout the compressed graph
/// computes), of every nonzero `(i, j)`, in CSR order.
pub fn column_decompression(p: &Pattern, c: &Colouring) -> Result<Vec<usize>> {
    check_colours("jacobian_sparse", "column", p.ncols, c)?;
    let mut out = Vec::with_capacity(p.nnz());
    for r in 0..p.nrows {
        for &j in p.row(r) {
            out.push(flat_index(c.colours[j], p.nrows, r)?);
        }
    }
    Ok(out)
}

/// For a row colouring (a column colouring of the transposed pattern): the flat index
/// `colour(i) · ncols + j` into the compressed matrix `B = Sᵀ · J` (`num_colours × ncols`,
/// row-major) of every nonzero `(i, j)`, in CSR order.
pub fn row_decompression(p: &Pattern, rows: &Colouring) -> Result<Vec<usize>> {
    check_colours("jacobian_sparse", "row", p.nrows, rows)?;
    let mut out = Vec::with_capacity(p.nnz());
    for r in 0..p.nrows {
        for &j in p.row(r) {
            out.push(flat_index(rows.colours[r], p.ncols, j)?);
        }
    }
    Ok(out)
}

/// Checks that `c` gives each of `n` rows or columns (`what`) a colour below its number of
/// colours.
fn check_colours(op: &str, what: &str, n: usize, c: &Colouring) -> Result<()> {
    if c.colours.len() < n {
        return Err(Error::new(
            ErrorKind::Transform,
            format!(
                "{op}: expected a colour for each of {n} {what}s, found {}",
                c.colours.len()
            ),
        ));
    }
    if let Some(&bad) = c.colours[..n].iter().find(|&&x| x >= c.num_colours) {
        return Err(Error::new(
            ErrorKind::Transform,
            format!(
                "{op}: colour {bad} is not below the colouring's {} colours",
                c.num_colours
            ),
        ));
    }
    Ok(())
}

/// `colour · stride + at`, or an error if it overflows.
fn flat_index(colour: usize, stride: usize, at: usize) -> Result<usize> {
    colour
        .checked_mul(stride)
        .and_then(|x| x.checked_add(at))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Size,
                "jacobian_sparse: the compressed matrix's flat index overflows",
            )
        })
}

/// For a star colouring of the symmetric pattern `p`: the flat index into `B = H · S`, stored
/// colour-major (`num_colours × n`: `B[c, i]` at `c · n + i`), holding each nonzero `(i, j)`,
/// in CSR order. Errors if the colouring does not allow direct recovery (it is not a star
/// colouring of `p`).
pub fn star_decompression(p: &Pattern, c: &Colouring) -> Result<Vec<usize>> {
    check_colouring("hessian_sparse", p, c)?;
    let k = c.num_colours;
    // `count[i * k + col]`: how many entries of colour `col` row `i` holds (its compressed
    // element is their sum). Flat, one pass over the pattern.
    let cells = p.nrows.checked_mul(k).ok_or_else(|| {
        Error::new(
            ErrorKind::Size,
            "hessian_sparse: the compressed Hessian's size overflows",
        )
    })?;
    // Only 0, 1 and "more" matter: one byte a cell.
    let mut count = vec![0u8; cells];
    for i in 0..p.nrows {
        for &j in p.row(i) {
            let at = &mut count[i * k + c.colours[j]];
            *at = at.saturating_add(1);
        }
    }
    let mut out = Vec::with_capacity(p.nnz());
    for i in 0..p.nrows {
        for &j in p.row(i) {
            if count[i * k + c.colours[j]] == 1 {
                out.push(c.colours[j] * p.nrows + i);
            } else if j < p.nrows
                && p.row(j).binary_search(&i).is_ok()
                && count[j * k + c.colours[i]] == 1
            {
                out.push(c.colours[i] * p.nrows + j);
            } else {
                return Err(Error::new(
                    ErrorKind::Transform,
                    format!(
                        "hessian_sparse: entry ({i}, {j}) cannot be recovered from the \
                         compressed Hessian (the colouring is not a star colouring of a \
                         symmetric pattern)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Checks that `c` gives every row and column of the square pattern `p` a colour below
/// `num_colours` (its fields are public, so it may come from anywhere).
pub(crate) fn check_colouring(what: &str, p: &Pattern, c: &Colouring) -> Result<()> {
    let n = p.nrows.max(p.ncols);
    if c.colours.len() < n {
        return Err(Error::new(
            ErrorKind::Transform,
            format!(
                "{what}: expected a colour for each of {n} rows and columns, found {}",
                c.colours.len()
            ),
        ));
    }
    if let Some(&bad) = c.colours.iter().find(|&&x| x >= c.num_colours) {
        return Err(Error::new(
            ErrorKind::Transform,
            format!(
                "{what}: colour {bad} is not below the colouring's {} colours",
                c.num_colours
            ),
        ));
    }
    Ok(())
}
