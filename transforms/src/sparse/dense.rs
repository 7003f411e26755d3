//! Dense Jacobians by compressed evaluation: when the structural pattern of a Jacobian that
//! `jacfwd` or `jacrev` (and so `hessian`, their composition) is asked for compresses well,
//! the graph computes the compressed matrix (one JVP or VJP per colour instead of one per
//! basis vector) and scatters its values into the dense blocks, zeros elsewhere, in the same
//! graph. For the chained Rosenbrock Hessian at n = 100 that is three Hessian-vector products
//! instead of a hundred directions.
//!
//! **The rule.** The basis (the arguments' elements for forward mode, the outputs' for reverse
//! mode) must have at least [`MIN_BASIS`] elements and the colouring at most a quarter as many
//! colours ([`MAX_SHARE`]): a fourfold cut of the linear-map work pays for the gather and
//! scatter of the values, which the dense path does not have, while a smaller cut is within
//! what the JIT's index-mask rewrites already recover on banded functions. Detection is
//! bounded accordingly: it stops as soon as one element depends on more than a quarter of the
//! basis (such a row would need that many colours anyway), so on a dense function it costs
//! about a quarter of one dense evaluation, and colouring runs only when the conflict graph is
//! small ([`COLOUR_WORK`]). Every argument and output must share one float dtype (they are
//! joined into one vector); otherwise, or when any step fails, the dense path runs.
//!
//! **Why the values are the same.** The colouring is a column (or row) colouring: no two
//! columns of one colour share a row. The analysis is transitive (an element depends on
//! everything the elements it is computed from depend on), so every element `e` feeding an
//! output element depends on at most one column of each colour, and the seeds of colour `c`,
//! restricted to the columns `e` depends on, are exactly the basis vector of that column. The
//! tangent (cotangent) of `e` is computed from those seeds only, by the same operations, so it
//! is the same number the dense path computes for that basis vector, and each structural
//! nonzero is read from its own element of the compressed matrix: for every input, finite or
//! not, the structural nonzeros are those of the dense path. The one exception is a product
//! with a known constant matrix, whose zeros the analysis skips: the compressed path multiplies
//! them by another column's tangent, which changes nothing but the sign of a zero sum (or gives
//! NaN where that tangent is infinite or NaN). Structural zeros are exact `+0.0` for every
//! input, where the dense path computes `0 · t` terms: `-0.0` for some finite inputs and NaN
//! (`0 · ∞`) for some non-finite ones.

use super::colour::{colour_columns, Colouring, Ordering};
use super::compress::{compressed_graph, Mode};
use super::flat::concat_params;
use super::pattern::{jacobian_pattern_narrow, Pattern};
use crate::emit::{build_graph, concatenate, finish, inline, push1, reshape, zeros};
use ferrax_ir::ops::{Bounds, Combine, IndexOp, Indexing, Literal, LiteralOp};
use ferrax_ir::{Array, Builder, Graph, Op, Result, Shape, Type, Value};

/// The smallest basis (number of linear-map evaluations of the dense path) compressed.
pub const MIN_BASIS: usize = 16;

/// The colouring must need at most `basis / MAX_SHARE` colours.
pub const MAX_SHARE: usize = 4;

/// The most conflict-graph work (the sum over rows of the squared row length) colouring may
/// take; beyond, the dense path runs.
const COLOUR_WORK: usize = 1 << 24;

/// The dense Jacobian blocks of `h` (explicit arguments first, `na` of them, then its other
/// parameters) by compressed evaluation, in the layout of `jacfwd_graph`/`jacrev_graph`
/// (output-major, block `(o, a)` of shape `o.shape ++ a.shape`), as a graph whose parameters
/// have the types `params` and which passes `h` the parameters at `order`. `None` when the
/// pattern does not compress well enough (see the module docs) or any step fails.
pub(crate) fn compressed_jacobian(
    h: &Graph,
    na: usize,
    params: &[Type],
    order: &[usize],
    reverse: bool,
) -> Option<Graph> {
    let arg_tys: Vec<Type> = h.param_types()[..na].to_vec();
    let out_tys = h.output_types();
    let dtype = arg_tys.first()?.dtype;
    if !dtype.is_float() || arg_tys.iter().chain(&out_tys).any(|t| t.dtype != dtype) {
        return None;
    }
    let total = |tys: &[Type]| tys.iter().try_fold(0usize, |a, t| a.checked_add(t.size()));
    let (n, m) = (total(&arg_tys)?, total(&out_tys)?);
    let basis = if reverse { m } else { n };
    if basis < MIN_BASIS || n == 0 || m == 0 {
        return None;
    }
    let flat = concat_params(h, na, &(0..na).collect::<Vec<_>>(), true).ok()?;
    let pattern = jacobian_pattern_narrow(&flat, 1, basis / MAX_SHARE).ok()?;
    let seeded = if reverse {
        pattern.transpose()
    } else {
        pattern.clone()
    };
    let work = (0..seeded.nrows()).try_fold(0usize, |acc, r| {
        acc.checked_add(seeded.row(r).len().checked_mul(seeded.row(r).len())?)
    });
    if work.is_none_or(|w| w > COLOUR_WORK) {
        return None;
    }
    let colouring = colour_columns(&seeded, Ordering::SmallestLast);
    if colouring.num_colours > basis / MAX_SHARE {
        return None;
    }
    let mode = if reverse {
        Mode::Reverse
    } else {
        Mode::Forward
    };
    let values = if pattern.nnz() == 0 {
        None
    } else {
        Some(compressed_graph(&flat, 1, mode, &colouring, None).ok()?)
    };
    let layout = Layout {
        pattern: &pattern,
        colouring: &colouring,
        reverse,
        arg_tys: &arg_tys,
        out_tys: &out_tys,
    };
    let g = build_graph(params, |b, ps| {
        let Some(values) = &values else {
            return layout.blocks(b, None);
        };
        // The explicit arguments joined into one vector, as the flattened graph takes them.
        let mut parts = Vec::with_capacity(na);
        for (&i, t) in order[..na].iter().zip(&arg_tys) {
            parts.push(reshape(b, ps[i], Shape::new(&[t.size()]))?);
        }
        let joined = match parts[..] {
            [one] => one,
            _ => concatenate(b, &parts, 0)?,
        };
        let mut args = vec![joined];
        args.extend(order[na..].iter().map(|&i| ps[i]));
        let compressed = inline(b, values, &args)?;
        layout.blocks(b, Some(compressed[0]))
    })
    .ok()?;
    finish(g).ok()
}

/// Where the structural nonzeros of the Jacobian sit in its blocks and in the compressed
/// matrix.
struct Layout<'a> {
    pattern: &'a Pattern,
    colouring: &'a Colouring,
    reverse: bool,
    arg_tys: &'a [Type],
    out_tys: &'a [Type],
}

impl Layout<'_> {
    /// The blocks, output-major: zeros with each block's nonzeros scattered in from the flat
    /// compressed matrix `compressed` (colour-major: `[k, m]` forward, `[k, n]` reverse).
    fn blocks(&self, b: &mut Builder, compressed: Option<Value>) -> Result<Vec<Value>> {
        let offsets = |tys: &[Type]| -> Vec<usize> {
            tys.iter()
                .scan(0, |at, t| {
                    let here = *at;
                    *at += t.size();
                    Some(here)
                })
                .collect()
        };
        let (ooff, aoff) = (offsets(self.out_tys), offsets(self.arg_tys));
        let (m, n) = (self.pattern.nrows(), self.pattern.ncols());
        let mut outs = Vec::with_capacity(self.out_tys.len() * self.arg_tys.len());
        for (oty, &o0) in self.out_tys.iter().zip(&ooff) {
            for (aty, &a0) in self.arg_tys.iter().zip(&aoff) {
                // The block's nonzeros: their flat positions in the block and in the
                // compressed matrix.
                let (mut to, mut from) = (Vec::new(), Vec::new());
                for i in o0..o0 + oty.size() {
                    let row = self.pattern.row(i);
                    let lo = row.partition_point(|&j| j < a0);
                    let hi = row.partition_point(|&j| j < a0 + aty.size());
                    for &j in &row[lo..hi] {
                        to.push((i - o0) * aty.size() + (j - a0));
                        from.push(if self.reverse {
                            self.colouring.colours[i] * n + j
                        } else {
                            self.colouring.colours[j] * m + i
                        });
                    }
                }
                let mut dims = Vec::from(oty.dims());
                dims.extend_from_slice(aty.dims());
                let ty = Type::new(oty.dtype, &dims);
                let block = match compressed {
                    Some(c) if !to.is_empty() => {
                        scatter_into_zeros(b, c, &from, &to, aty.size(), &ty)?
                    }
                    _ => zeros(b, &ty)?,
                };
                outs.push(block);
            }
        }
        Ok(outs)
    }
}

/// An i32 constant of shape `dims` holding `idx`.
fn index_constant(b: &mut Builder, dims: &[usize], idx: Vec<i32>) -> Result<Value> {
    let at = Array::from_i32(Shape::new(dims), idx)?;
    push1(b, Op::Literal(LiteralOp::Const(Literal::new(at))), &[])
}

/// A value of type `ty` that is zero except at the positions `to` (flat positions in `ty`
/// seen as a `[rows, cols]` matrix, `cols` the size of the argument block), which hold the
/// elements of the rank-1 `src` at `from`. The values are scattered along the rows of the
/// matrix, each row padded to the longest with dropped (out-of-range) positions, so a rank-2
/// block is written in place with no reshape after it.
fn scatter_into_zeros(
    b: &mut Builder,
    src: Value,
    from: &[usize],
    to: &[usize],
    cols: usize,
    ty: &Type,
) -> Result<Value> {
    let rows = ty.size() / cols.max(1);
    if i32::try_from(ty.size()).is_err() {
        ferrax_ir::bail!(
            Size,
            "jacobian: a block has more elements than an i32 index reaches"
        );
    }
    let mut per_row = vec![0usize; rows];
    for &t in to {
        per_row[t / cols] += 1;
    }
    let width = per_row.iter().copied().max().unwrap_or(0);
    let (mut at, mut pick) = (vec![-1i32; rows * width], vec![0i32; rows * width]);
    let mut used = vec![0usize; rows];
    for (&t, &f) in to.iter().zip(from) {
        let r = t / cols;
        let k = r * width + used[r];
        used[r] += 1;
        at[k] = (t % cols) as i32;
        pick[k] = f as i32;
    }
    let pick = index_constant(b, &[rows, width], pick)?;
    let vals = push1(
        b,
        Op::Index(IndexOp::Gather(Indexing::default())),
        &[src, pick],
    )?;
    let at = index_constant(b, &[rows, width], at)?;
    let matrix = zeros(b, &Type::new(ty.dtype, &[rows, cols]))?;
    let along_rows = Indexing {
        axis: 1,
        along: true,
        bounds: Bounds::Fill,
    };
    let scatter = Op::Index(IndexOp::Scatter {
        at: along_rows,
        combine: Combine::Set,
    });
    let out = push1(b, scatter, &[matrix, at, vals])?;
    if ty.dims() == [rows, cols] {
        return Ok(out);
    }
    reshape(b, out, ty.shape.clone())
}
