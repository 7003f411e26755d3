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
use super::pattern::{jacobian_pattern, Pattern};
use crate::emit::{build_graph, finish, inline, push1, reshape};
use crate::grad::{argnums_first, restrict};
use crate::jvp::jvp_graph;
use crate::vmap::vmap_graph_sized;
use ferrax_ir::ops::{IndexOp, Indexing, Literal, LiteralOp};
use ferrax_ir::{Array, Dims, Graph, Op, Result, Shape, Type};

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

/// Checks that argument `wrt` exists and is float and that `g` has `outputs` outputs; returns
/// `g` with that argument moved first and every other parameter after it as a non-explicit
/// one (a parameter the derivative is not taken with respect to), with the permutation that
/// moves them back.
fn wrt_first(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    what: &str,
    outputs: usize,
) -> Result<(Graph, Vec<usize>)> {
    if wrt >= n_explicit || !g.ty(g.params()[wrt]).dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "{what}: needs a float argument at position {wrt} (the one the derivative is              taken with respect to), got {n_explicit} argument(s) of types {}",
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
    let order = argnums_first(g, &[wrt]);
    let mut back = vec![0; order.len()];
    for (k, &i) in order.iter().enumerate() {
        back[i] = k;
    }
    let moved = if wrt == 0 {
        g.clone()
    } else {
        restrict(g, &order, &(0..outputs).collect::<Vec<_>>())?
    };
    Ok((moved, back))
}

/// The plan's graph with its parameters back in the original function's order.
fn restore(graph: Graph, wrt: usize, back: &[usize]) -> Result<Graph> {
    if wrt == 0 {
        return Ok(graph);
    }
    restrict(&graph, back, &[0])
}

/// The plan for the sparse Jacobian of `g` (one float output) with respect to its explicit
/// float argument `wrt` (the others, and any captures, are parameters of the values graph
/// that the derivative is not taken with respect to): the pattern detected on `g`, greedy
/// column and row colourings in `ordering`, the one with fewer colours (forward mode on a
/// tie), and the values graph, whose parameters are `g`'s.
pub fn jacobian_plan(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    ordering: Ordering,
) -> Result<SparsePlan> {
    let (g, back) = wrt_first(g, n_explicit, wrt, "jacobian_sparse", 1)?;
    if !g.ty(g.outputs()[0]).dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "jacobian_sparse: the output must be float, got {}",
            g.ty(g.outputs()[0])
        );
    }
    let pattern = jacobian_pattern(&g, 1)?;
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
    let graph = compressed_graph(&g, 1, mode, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode,
        graph: restore(graph, wrt, &back)?,
    })
}

/// The plan for the sparse Hessian of the scalar function `g` with respect to its explicit
/// float argument `wrt` (the others are parameters, as in [`jacobian_plan`]): the pattern of
/// its gradient's Jacobian, a greedy star colouring in `ordering`, and the values graph
/// (Hessian-vector products batched over the colours).
pub fn hessian_plan(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    ordering: Ordering,
) -> Result<SparsePlan> {
    let (g, back) = wrt_first(g, n_explicit, wrt, "hessian_sparse", 1)?;
    let grad = crate::grad_graph(&g, 1, &[0], false)?;
    // The Hessian pattern is the Jacobian pattern of the gradient (see `hessian_pattern`).
    let pattern = jacobian_pattern(&grad, 1)?;
    let colouring = colour_star(&pattern, ordering);
    let idx = star_decompression(&pattern, &colouring)?;
    let graph = compressed_graph(&grad, 1, Mode::Forward, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode: Mode::Forward,
        graph: restore(graph, wrt, &back)?,
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
/// `idx` (indices into the `m × k` or `k × n` matrix of the colouring's decompression map).
/// The graph computes it colour-major: forward, `B[c, i] = Σ_{colour(j) = c} ∂out_i/∂x_j`,
/// shape `[k, out..]`; reverse, `B[c, j] = Σ_{colour(i) = c} ∂out_i/∂x_j`, shape `[k, x..]`.
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
    // The colours are the leading axis either way (no transpose of the compressed matrix);
    // the forward decompression indices `i · k + c` are renumbered to `c · m + i`.
    let lin = match mode {
        Mode::Forward => jvp_graph(g, n_explicit)?,
        Mode::Reverse => crate::vjp_graph(g, n_explicit)?,
    };
    let idx: Vec<usize> = match mode {
        Mode::Forward => idx.iter().map(|&v| (v % k) * m + v / k).collect(),
        Mode::Reverse => idx.to_vec(),
    };
    let np = lin.params().len();
    let lt = restrict(&lin, &(0..np).collect::<Vec<_>>(), &[1])?;
    let bl = vmap_graph_sized(&lt, 2, &[None, Some(0)], &[0], k)?;
    let out = build_graph(&g.param_types(), |b, ps| {
        // Seeds: S[c, j] = (colour(j) == c), the columns of the k × k identity picked by the
        // constant colour vector. A gather keeps the structural rewrites from treating the
        // seeds as a select mask to lift through the graph (which would multiply the tangent
        // work by the number of cases), and it stays one cheap pass over `n` indices.
        let eye: Vec<f64> = (0..k * k)
            .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
            .collect();
        let eye = Array::from_f64(Shape::new(&[k, k]), eye)?.cast(seed_ty.dtype);
        let eye = push1(b, Op::Literal(LiteralOp::Const(Literal::new(eye))), &[])?;
        let cols = Array::from_i32(
            Shape::new(&[n]),
            c.colours.iter().map(|&x| x as i32).collect(),
        )?;
        let cols = push1(b, Op::Literal(LiteralOp::Const(Literal::new(cols))), &[])?;
        let along_columns = Indexing {
            axis: 1,
            ..Indexing::default()
        };
        let seeds = push1(b, Op::Index(IndexOp::Gather(along_columns)), &[eye, cols])?;
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
