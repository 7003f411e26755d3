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
//! forbidden for `v`.

use super::colour::{order, symmetric_adjacency, Adjacency, Colouring, Ordering};
use super::pattern::Pattern;
use ferrax_ir::{Error, ErrorKind, Result};
use hashbrown::HashMap;

/// A union-find over (vertex, colour) nodes, created on first use.
#[derive(Default)]
struct Forests {
    id: HashMap<(usize, usize), usize>,
    parent: Vec<usize>,
}

impl Forests {
    fn node(&mut self, v: usize, c: usize) -> usize {
        let next = self.parent.len();
        let id = *self.id.entry((v, c)).or_insert(next);
        if id == next {
            self.parent.push(next);
        }
        id
    }

    /// The root of `(v, c)`'s component, or `None` when the node does not exist yet (a vertex
    /// without an edge to colour `c` is a component of its own).
    fn find_existing(&mut self, v: usize, c: usize) -> Option<usize> {
        let id = *self.id.get(&(v, c))?;
        Some(self.root(id))
    }

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

/// Greedy acyclic colouring of a symmetric pattern, visiting the vertices in `ordering`.
pub fn colour_acyclic(p: &Pattern, ordering: Ordering) -> Colouring {
    let adj = symmetric_adjacency(p);
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut colour = vec![NONE; n];
    let mut forests = Forests::default();
    // `forbidden[c] == stamp` marks colour `c` as taken while colouring one vertex.
    let mut forbidden: Vec<usize> = vec![0; n + 1];
    let mut seen: HashMap<usize, usize> = HashMap::new();
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
            // For each colour c' among the neighbours: do two of them already share a
            // {c, c'} component?
            seen.clear();
            let mut cycle = false;
            for &w in adj.nbrs(v) {
                if colour[w] == NONE {
                    continue;
                }
                let Some(r) = forests.find_existing(w, c) else {
                    continue;
                };
                if seen.insert(r, w).is_some() {
                    cycle = true;
                    break;
                }
            }
            if !cycle {
                break;
            }
            forbidden[c] = stamp;
        }
        colour[v] = c;
        for &w in adj.nbrs(v) {
            if colour[w] != NONE {
                let (a, b) = (forests.node(v, colour[w]), forests.node(w, c));
                forests.union(a, b);
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
    for i in 0..n {
        if let Some(k) = pos(i, i) {
            target.push(k);
            mirror.push(k);
            source.push(col[i] * n + i);
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
    let mut unknown: HashMap<(usize, usize), usize> = HashMap::new();
    for u in 0..n {
        for &w in adj.nbrs(u) {
            *unknown.entry((u, col[w])).or_insert(0) += 1;
        }
    }
    let mut solved = vec![false; p.nnz()];
    let mut stack: Vec<(usize, usize)> = unknown
        .iter()
        .filter(|&(_, &k)| k == 1)
        .map(|(&key, _)| key)
        .collect();
    stack.sort_unstable();
    while let Some((u, b)) = stack.pop() {
        if unknown.get(&(u, b)) != Some(&1) {
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
        unknown.insert((u, b), 0);
        let e = unknown.entry((w, col[u])).or_insert(0);
        *e = e.saturating_sub(1);
        if *e == 1 {
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
