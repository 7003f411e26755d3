//! Acyclic colouring of a symmetric pattern and the recovery of the Hessian from its compressed
//! form by substitution.
//!
//! An acyclic colouring is a distance-1 colouring in which every cycle uses at least three
//! colours: the subgraph of any two colours is a forest. It needs no more colours than a star
//! colouring (every star colouring is acyclic) and often fewer: a path (a tridiagonal
//! Hessian) takes two colours instead of three, a band of half-width `w` about `w + 1`
//! instead of about `2w + 1`. The price is the recovery: an entry is no longer alone in its
//! compressed element, and is found by peeling the two-coloured trees leaf by leaf. With
//! `B = H · S` (column `c` of `S` the indicator of colour `c`), for a vertex `u` of colour `a`
//! and a colour `b ≠ a`, `B[u, b]` is the sum of `H[u, x]` over the neighbours `x` of `u` of
//! colour `b`, which are exactly `u`'s neighbours in the `{a, b}` tree; when `u` is a leaf of
//! that tree with neighbour `w`, `H[u, w] = B[u, b]`, and removing the leaf subtracts
//! `H[w, u]` from `B[w, a]`. Each tree is peeled to its last edge, so every off-diagonal entry
//! is recovered, the diagonal being `B[i, colour(i)]` (no neighbour shares `i`'s colour).
//!
//! The greedy colouring (after Gebremedhin, Tarafdar, Manne and Pothen, "New acyclic and star
//! coloring algorithms with application to computing Hessians", 2007, in a simpler form)
//! keeps, for each colour pair, the components of the two-coloured forest with a union-find
//! over (vertex, other colour) nodes: the edge `(v, w)` of colours `(a, b)` joins node `(v, b)`
//! with node `(w, a)`. Giving `v` colour `c` closes a two-coloured cycle exactly when two of its
//! neighbours of one colour `c'` are already in one `{c, c'}` component, so such colours are
//! forbidden for `v`. The node `(v, b)` is stored as the directed edges from `v` to its
//! neighbours of colour `b`, kept in one component, so the union-find is one flat array over
//! the edges, and the recovery's bookkeeping likewise has one slot per vertex and neighbour
//! colour: both linear in the number of nonzeros.

use super::colour::{order, symmetric_adjacency, Adjacency, Colouring, Ordering};
use super::pattern::Pattern;
use ferrax_ir::{Error, ErrorKind, Result};
use hashbrown::HashMap;

/// A union-find over the directed edges of the adjacency graph, flat. The node "(v, colour
/// c)" of the module's description is the set of edges `v → x` with `colour(x) = c`, all kept
/// in one component.
struct Arcs {
    parent: Vec<usize>,
}

impl Arcs {
    fn root(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.parent[ra] = rb;
        }
    }
}

/// The arc `v → x` to some neighbour `x` of colour `c`, if `v` has one.
fn arc_to_colour(adj: &Adjacency, colour: &[usize], v: usize, c: usize) -> Option<usize> {
    adj.nbrs(v)
        .iter()
        .position(|&x| colour[x] == c)
        .and_then(|k| adj.arc(v, adj.nbrs(v)[k]))
}

/// Greedy acyclic colouring of a symmetric pattern, visiting the vertices in `ordering`.
pub fn colour_acyclic(p: &Pattern, ordering: Ordering) -> Colouring {
    let adj = symmetric_adjacency(p);
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut colour = vec![NONE; n];
    let mut arcs = Arcs {
        parent: (0..adj.num_arcs()).collect(),
    };
    // `forbidden[c] == stamp` marks colour `c` as taken while colouring one vertex;
    // `mark[root] == trial` marks a forest component met while trying one colour.
    let mut forbidden: Vec<usize> = vec![0; n + 1];
    let mut mark: Vec<usize> = vec![0; adj.num_arcs()];
    let mut trial = 0;
    for (step, v) in order(&adj, ordering).into_iter().enumerate() {
        let stamp = step + 1;
        for &w in adj.nbrs(v) {
            if colour[w] != NONE {
                forbidden[colour[w]] = stamp;
            }
        }
        let mut c = 0;
        loop {
            while forbidden[c] == stamp {
                c += 1;
            }
            // Do two coloured neighbours (of one colour c') share a {c, c'} component?
            trial += 1;
            let mut cycle = false;
            for &w in adj.nbrs(v) {
                if colour[w] == NONE {
                    continue;
                }
                let Some(a) = arc_to_colour(&adj, &colour, w, c) else {
                    continue;
                };
                let r = arcs.root(a);
                if mark[r] == trial {
                    cycle = true;
                    break;
                }
                mark[r] = trial;
            }
            if !cycle {
                break;
            }
            forbidden[c] = stamp;
        }
        colour[v] = c;
        for &w in adj.nbrs(v) {
            if colour[w] == NONE || w == v {
                continue;
            }
            let (Some(vw), Some(wv)) = (adj.arc(v, w), adj.arc(w, v)) else {
                continue;
            };
            // The edge joins (v, colour(w)) with (w, c); each of those is one component of
            // all its arcs.
            arcs.union(vw, wv);
            if let Some(other) = adj
                .nbrs(v)
                .iter()
                .find(|&&x| x != w && colour[x] == colour[w])
                .and_then(|&x| adj.arc(v, x))
            {
                arcs.union(vw, other);
            }
            if let Some(other) = adj
                .nbrs(w)
                .iter()
                .find(|&&x| x != v && colour[x] == c)
                .and_then(|&x| adj.arc(w, x))
            {
                arcs.union(wv, other);
            }
        }
    }
    let num_colours = colour.iter().map(|&c| c + 1).max().unwrap_or(0);
    Colouring {
        colours: colour,
        num_colours,
    }
}

/// Whether `c` is an acyclic colouring of the symmetric pattern `p`: adjacent vertices differ,
/// and the subgraph of every pair of colours has no cycle.
pub fn is_valid_acyclic_colouring(p: &Pattern, c: &Colouring) -> bool {
    let adj = symmetric_adjacency(p);
    let col = &c.colours;
    if col.len() < adj.len() {
        return false;
    }
    // A plain union-find per colour pair over vertices: an edge inside one component closes
    // a cycle.
    let mut parent: HashMap<(usize, usize, usize), (usize, usize, usize)> = HashMap::new();
    fn root(
        parent: &mut HashMap<(usize, usize, usize), (usize, usize, usize)>,
        mut x: (usize, usize, usize),
    ) -> (usize, usize, usize) {
        while let Some(&p) = parent.get(&x) {
            if p == x {
                break;
            }
            x = p;
        }
        x
    }
    for a in 0..adj.len() {
        for &b in adj.nbrs(a) {
            if col[a] == col[b] {
                return false;
            }
            if b < a {
                continue;
            }
            let pair = (col[a].min(col[b]), col[a].max(col[b]));
            let (ra, rb) = (
                root(&mut parent, (pair.0, pair.1, a)),
                root(&mut parent, (pair.0, pair.1, b)),
            );
            if ra == rb {
                return false;
            }
            parent.insert(ra, rb);
            parent.entry(rb).or_insert(rb);
        }
    }
    true
}

/// The recovery of a Hessian's entries from its compressed form `B` (colour-major,
/// `num_colours × n`) under an acyclic colouring: one step per stored entry, in an order where
/// each step only needs earlier ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Substitution {
    /// Steps in solving order: step `s` sets entry `target[s]` (a CSR position of the pattern)
    /// and its mirror `mirror[s]` (the same position on the diagonal) to `B[source[s]]` minus
    /// the entries at `minus[minus_ptr[s]..minus_ptr[s + 1]]`.
    target: Vec<usize>,
    mirror: Vec<usize>,
    source: Vec<usize>,
    minus_ptr: Vec<usize>,
    minus: Vec<usize>,
    /// The number of entries of `B` the steps read.
    b_len: usize,
    /// The number of entries recovered.
    nnz: usize,
}

impl Substitution {
    /// The number of elements of `B` the recovery reads.
    pub fn compressed_len(&self) -> usize {
        self.b_len
    }

    /// The entries, in the pattern's CSR order, from the compressed matrix `b`. Errors if `b`
    /// has another length than [`Substitution::compressed_len`].
    pub fn apply(&self, b: &[f64]) -> Result<Vec<f64>> {
        if b.len() != self.b_len {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "hessian_sparse: expected a compressed Hessian of {} elements, found {}",
                    self.b_len,
                    b.len()
                ),
            ));
        }
        let mut out = vec![0.0; self.nnz];
        for s in 0..self.target.len() {
            let mut v = b[self.source[s]];
            for &m in &self.minus[self.minus_ptr[s]..self.minus_ptr[s + 1]] {
                v -= out[m];
            }
            out[self.target[s]] = v;
            out[self.mirror[s]] = v;
        }
        Ok(out)
    }
}

/// The substitution plan for the symmetric pattern `p` (square, rows sorted) under the acyclic
/// colouring `c`. Errors if `p` is not symmetric with sorted rows or `c` is not an acyclic
/// colouring of it (then some entry cannot be recovered).
pub fn acyclic_substitution(p: &Pattern, c: &Colouring) -> Result<Substitution> {
    let bad = |what: String| {
        Err(Error::new(
            ErrorKind::Transform,
            format!("hessian_sparse: {what}"),
        ))
    };
    let n = p.nrows;
    if p.ncols != n || c.colours.len() != n {
        return bad(format!(
            "substitution needs a square pattern and one colour per row, got {} × {} and {} \
             colours",
            p.nrows,
            p.ncols,
            c.colours.len()
        ));
    }
    super::colour::check_colouring("hessian_sparse", p, c)?;
    let col = &c.colours;
    let pos = |i: usize, j: usize| -> Option<usize> {
        p.row(i).binary_search(&j).ok().map(|k| p.row_ptr[i] + k)
    };
    let mut target = Vec::with_capacity(p.nnz());
    let mut mirror = Vec::with_capacity(p.nnz());
    let mut source = Vec::with_capacity(p.nnz());
    let mut minus_ptr = vec![0];
    let mut minus = Vec::new();
    // Diagonal entries: read directly.
    for (i, &ci) in col.iter().enumerate() {
        if let Some(k) = pos(i, i) {
            target.push(k);
            mirror.push(k);
            source.push(ci * n + i);
            minus_ptr.push(minus.len());
        }
    }
    // For each vertex and each colour among its neighbours, the entries not yet solved: the
    // sum B[u, b] still has that many unknowns. A vertex with one unknown toward colour b is a
    // leaf of its {colour(u), b} tree.
    let adj: Adjacency = symmetric_adjacency(p);
    for u in 0..n {
        for &w in adj.nbrs(u) {
            if col[u] == col[w] {
                return bad(format!(
                    "entries ({u}, {w}) share a colour: the colouring is not acyclic"
                ));
            }
            if pos(u, w).is_none() || pos(w, u).is_none() {
                return bad(format!(
                    "substitution needs a symmetric pattern; ({u}, {w}) has no mirror"
                ));
            }
        }
    }
    // `slots`: for each vertex, the distinct colours of its neighbours (sorted), each with
    // the number of entries of that colour not solved yet; flat, at most one per entry.
    let mut slot_start = Vec::with_capacity(n + 1);
    let mut slot_colour: Vec<usize> = Vec::with_capacity(adj.num_arcs());
    let mut unknown: Vec<usize> = Vec::with_capacity(adj.num_arcs());
    slot_start.push(0);
    let mut cols: Vec<usize> = Vec::new();
    for u in 0..n {
        cols.clear();
        cols.extend(adj.nbrs(u).iter().map(|&w| col[w]));
        cols.sort_unstable();
        for (k, &c) in cols.iter().enumerate() {
            if k > 0 && cols[k - 1] == c {
                if let Some(last) = unknown.last_mut() {
                    *last += 1;
                }
            } else {
                slot_colour.push(c);
                unknown.push(1);
            }
        }
        slot_start.push(slot_colour.len());
    }
    let slot = |u: usize, b: usize| -> usize {
        let r = slot_start[u]..slot_start[u + 1];
        r.start
            + slot_colour[r]
                .binary_search(&b)
                .unwrap_or_else(|k| k.min(slot_start[u + 1] - slot_start[u]))
    };
    let mut solved = vec![false; p.nnz()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for u in (0..n).rev() {
        for s in (slot_start[u]..slot_start[u + 1]).rev() {
            if unknown[s] == 1 {
                stack.push((u, slot_colour[s]));
            }
        }
    }
    while let Some((u, b)) = stack.pop() {
        if unknown[slot(u, b)] != 1 {
            continue;
        }
        // The one unsolved neighbour w of colour b, and the solved ones to subtract.
        let mut w_at = None;
        let start = minus.len();
        for &x in adj.nbrs(u) {
            if col[x] != b {
                continue;
            }
            let k = pos(u, x).unwrap_or(usize::MAX);
            if solved[k] {
                minus.push(k);
            } else {
                w_at = Some((x, k));
            }
        }
        let Some((w, k)) = w_at else {
            minus.truncate(start);
            continue;
        };
        target.push(k);
        source.push(b * n + u);
        minus_ptr.push(minus.len());
        solved[k] = true;
        let m = pos(w, u).unwrap_or(usize::MAX);
        solved[m] = true;
        mirror.push(m);
        let su = slot(u, b);
        unknown[su] = 0;
        let sw = slot(w, col[u]);
        unknown[sw] = unknown[sw].saturating_sub(1);
        if unknown[sw] == 1 {
            stack.push((w, col[u]));
        }
    }
    if let Some(k) = (0..p.nnz()).find(|&k| !solved[k] && !is_diagonal(p, k)) {
        let r = p.row_ptr.partition_point(|&s| s <= k) - 1;
        return bad(format!(
            "entry ({r}, {}) cannot be recovered by substitution (the colouring is not acyclic)",
            p.col_idx[k]
        ));
    }
    Ok(Substitution {
        target,
        source,
        minus_ptr,
        minus,
        mirror,
        b_len: c.num_colours * n,
        nnz: p.nnz(),
    })
}

fn is_diagonal(p: &Pattern, k: usize) -> bool {
    let r = p.row_ptr.partition_point(|&s| s <= k) - 1;
    p.col_idx[k] == r
}
