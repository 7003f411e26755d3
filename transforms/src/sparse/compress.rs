//! Compressed evaluation: one graph that computes the compressed Jacobian `B = J · S` as the
//! JVP batched over the colours (the seed matrix `S` built from `iota` comparisons against a
//! constant colour vector, never as a dense constant), then reads every structural nonzero out
//! of `B` with a gather at constant indices, so the graph returns only the `nnz` values of a
//! fixed CSR pattern. The compressed Hessian is the same construction applied to the gradient
//! graph: a batch of Hessian-vector products (`jvp` of `grad`). A Jacobian whose rows need
//! fewer colours than its columns is compressed in reverse mode instead: the VJP batched over
//! row seeds.

use super::colour::{
    colour_columns, colour_star, column_decompression, row_decompression, star_decompression,
    Colouring, Ordering,
};
use super::pattern::{hessian_pattern, jacobian_pattern, Pattern};
use crate::emit::{build_graph, compare, convert, finish, inline, push1, reshape};
use crate::grad::restrict;
use crate::jvp::jvp_graph;
use crate::vmap::vmap_graph_sized;
use ferrax_ir::ops::{CompareOp, IndexOp, Indexing, Literal, LiteralOp, ShapeOp};
use ferrax_ir::{Array, DType, Dims, Graph, Op, Result, Shape, Type};

/// A sparse derivative plan: the pattern, its colouring and the graph computing the values.
#[derive(Clone, Debug)]
pub struct SparsePlan {
    /// The pattern of the derivative (CSR).
    pub pattern: Pattern,
    /// The colouring of its columns (forward mode) or rows (reverse mode).
    pub colouring: Colouring,
    /// How the compressed matrix is computed.
    pub mode: Mode,
    /// Parameters are the original graph's; one output, the `nnz` values in CSR order.
    pub graph: Graph,
}

fn types_list(tys: &[Type]) -> String {
    let parts: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
    format!("({})", parts.join(", "))
}

fn check_single(g: &Graph, n_explicit: usize, what: &str, outputs: usize) -> Result<()> {
    if n_explicit != 1 || !g.ty(g.params()[0]).dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "{what}: needs a function of exactly one float argument, got {n_explicit} \
             argument(s) of types {}",
            types_list(&g.param_types()[..n_explicit.min(g.params().len())])
        );
    }
    if g.outputs().len() != outputs {
        ferrax_ir::bail!(
            Transform,
            "{what}: needs a function with {outputs} output, got {}",
            g.outputs().len()
        );
    }
    Ok(())
}

/// The plan for the sparse Jacobian of `g` (one float argument, one float output): the pattern
/// detected on `g`, greedy column and row colourings in `ordering`, the one with fewer colours
/// (forward mode on a tie), and the values graph.
pub fn jacobian_plan(g: &Graph, n_explicit: usize, ordering: Ordering) -> Result<SparsePlan> {
    check_single(g, n_explicit, "jacobian_sparse", 1)?;
    if !g.ty(g.outputs()[0]).dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "jacobian_sparse: the output must be float, got {}",
            g.ty(g.outputs()[0])
        );
    }
    let pattern = jacobian_pattern(g, n_explicit)?;
    let by_columns = colour_columns(&pattern, ordering);
    let by_rows = colour_columns(&pattern.transpose(), ordering);
    // One product per colour either way; ties go to forward mode, whose products are cheaper.
    let (mode, colouring, idx) = if by_rows.num_colours < by_columns.num_colours {
        let idx = row_decompression(&pattern, &by_rows);
        (Mode::Reverse, by_rows, idx)
    } else {
        let idx = column_decompression(&pattern, &by_columns);
        (Mode::Forward, by_columns, idx)
    };
    let graph = compressed_graph(g, n_explicit, mode, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode,
        graph,
    })
}

/// The plan for the sparse Hessian of the scalar function `g` (one float argument): the
/// pattern of its gradient's Jacobian, a greedy star colouring in `ordering`, and the values
/// graph (Hessian-vector products batched over the colours).
pub fn hessian_plan(g: &Graph, n_explicit: usize, ordering: Ordering) -> Result<SparsePlan> {
    check_single(g, n_explicit, "hessian_sparse", 1)?;
    let pattern = hessian_pattern(g, n_explicit)?;
    let colouring = colour_star(&pattern, ordering);
    let idx = star_decompression(&pattern, &colouring)?;
    let grad = crate::grad_graph(g, n_explicit, &[0], false)?;
    let graph = compressed_graph(&grad, n_explicit, Mode::Forward, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode: Mode::Forward,
        graph,
    })
}

/// How the compressed matrix is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward mode over a column colouring: `B = J · S`, one JVP per colour.
    Forward,
    /// Reverse mode over a row colouring: `B = Sᵀ · J`, one VJP per colour.
    Reverse,
}

/// `g`'s compressed Jacobian with respect to parameter 0, flattened row-major and gathered at
/// `idx`. Forward: `B[i, c] = Σ_{colour(j) = c} ∂out_i/∂x_j`, shape `[out.., k]`; reverse:
/// `B[c, j] = Σ_{colour(i) = c} ∂out_i/∂x_j`, shape `[k, x..]`.
fn compressed_graph(
    g: &Graph,
    n_explicit: usize,
    mode: Mode,
    c: &Colouring,
    idx: &[usize],
) -> Result<Graph> {
    let x_ty = g.ty(g.params()[0]).clone();
    let out_ty = g.ty(g.outputs()[0]).clone();
    let k = c.num_colours.max(1);
    // The seeded side: the argument in forward mode, the output in reverse mode.
    let (seed_ty, other_ty) = match mode {
        Mode::Forward => (&x_ty, &out_ty),
        Mode::Reverse => (&out_ty, &x_ty),
    };
    let (n, m) = (seed_ty.size(), other_ty.size());
    let flat_len = m.checked_mul(k).filter(|&s| s <= i32::MAX as usize);
    if flat_len.is_none() || n > i32::MAX as usize || k > i32::MAX as usize {
        ferrax_ir::bail!(
            Size,
            "sparse derivative: the compressed matrix ({m} × {k}) has more elements than an \
             i32 index reaches"
        );
    }
    // The linear map restricted to its tangent (cotangent) output, batched over the colours.
    let (lin, out_axis) = match mode {
        Mode::Forward => (jvp_graph(g, n_explicit)?, out_ty.rank()),
        Mode::Reverse => (crate::vjp_graph(g, n_explicit)?, 0),
    };
    let np = lin.params().len();
    let lt = restrict(&lin, &(0..np).collect::<Vec<_>>(), &[1])?;
    let bl = vmap_graph_sized(&lt, 2, &[None, Some(0)], &[out_axis], k)?;
    let out = build_graph(&g.param_types(), |b, ps| {
        // Seeds: S[c, j] = (colour(j) == c), from an iota and the constant colour vector.
        let shape = Shape::new(&[k, n]);
        let cols = Array::from_i32(
            Shape::new(&[n]),
            c.colours.iter().map(|&x| x as i32).collect(),
        )?;
        let cols = push1(b, Op::Literal(LiteralOp::Const(Literal::new(cols))), &[])?;
        let cols = push1(
            b,
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: shape.clone(),
                dims: Dims::from_slice(&[1]),
            }),
            &[cols],
        )?;
        let rows = push1(
            b,
            Op::Literal(LiteralOp::Iota {
                dtype: DType::I32,
                shape: shape.clone(),
                axis: 0,
            }),
            &[],
        )?;
        let hit = compare(b, CompareOp::Eq, rows, cols)?;
        let seeds = convert(b, hit, seed_ty.dtype)?;
        let mut dims = Dims::from_slice(&[k]);
        dims.extend_from_slice(seed_ty.dims());
        let seeds = reshape(b, seeds, Shape(dims))?;
        let mut args = vec![ps[0], seeds];
        args.extend_from_slice(&ps[1..]);
        let touts = inline(b, &bl, &args)?;
        let flat = reshape(b, touts[0], Shape::new(&[m * k]))?;
        let at = Array::from_i32(
            Shape::new(&[idx.len()]),
            idx.iter().map(|&i| i as i32).collect(),
        )?;
        let at = push1(b, Op::Literal(LiteralOp::Const(Literal::new(at))), &[])?;
        let vals = push1(
            b,
            Op::Index(IndexOp::Gather(Indexing::default())),
            &[flat, at],
        )?;
        Ok(vec![vals])
    })?;
    finish(out)
}
