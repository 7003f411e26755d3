//! Compressed evaluation: one graph that computes the compressed Jacobian `B = J · S` as the
//! JVP batched over the colours (the seed matrix `S` built from `iota` comparisons against a
//! constant colour vector, never as a dense constant), then reads every structural nonzero out
//! of `B` with a gather at constant indices, so the graph returns only the `nnz` values of a
//! fixed CSR pattern. The compressed Hessian is the same construction applied to the gradient
//! graph: a batch of Hessian-vector products (`jvp` of `grad`).

use super::colour::{
    colour_columns, colour_star, column_decompression, star_decompression, Colouring, Ordering,
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
    /// The colouring of its columns.
    pub colouring: Colouring,
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
/// detected on `g`, a greedy column colouring in `ordering`, and the values graph.
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
    let colouring = colour_columns(&pattern, ordering);
    let idx = column_decompression(&pattern, &colouring);
    let graph = compressed_graph(g, n_explicit, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
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
    let graph = compressed_graph(&grad, n_explicit, &colouring, &idx)?;
    Ok(SparsePlan {
        pattern,
        colouring,
        graph,
    })
}

/// `g`'s compressed Jacobian with respect to parameter 0, `B[i, c] = Σ_{colour(j) = c}
/// ∂out_i/∂x_j`, flattened row-major and gathered at `idx`.
fn compressed_graph(g: &Graph, n_explicit: usize, c: &Colouring, idx: &[usize]) -> Result<Graph> {
    let x_ty = g.ty(g.params()[0]).clone();
    let out_ty = g.ty(g.outputs()[0]).clone();
    let (n, m, k) = (x_ty.size(), out_ty.size(), c.num_colours.max(1));
    let flat_len = m.checked_mul(k).filter(|&s| s <= i32::MAX as usize);
    if flat_len.is_none() || n > i32::MAX as usize || k > i32::MAX as usize {
        ferrax_ir::bail!(
            Size,
            "sparse derivative: the compressed matrix ({m} × {k}) has more elements than an \
             i32 index reaches"
        );
    }
    // The JVP restricted to its tangent output, batched over the colours.
    let j = jvp_graph(g, n_explicit)?;
    let np = j.params().len();
    let jt = restrict(&j, &(0..np).collect::<Vec<_>>(), &[1])?;
    let mut in_axes = vec![None, Some(0)];
    in_axes.extend(std::iter::repeat_n(None, np - 2));
    let bj = vmap_graph_sized(&jt, 2, &in_axes[..2], &[out_ty.rank()], k)?;
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
        let seeds = convert(b, hit, x_ty.dtype)?;
        let mut dims = Dims::from_slice(&[k]);
        dims.extend_from_slice(x_ty.dims());
        let seeds = reshape(b, seeds, Shape(dims))?;
        let mut args = vec![ps[0], seeds];
        args.extend_from_slice(&ps[1..]);
        let touts = inline(b, &bj, &args)?;
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
