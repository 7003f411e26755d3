//! Compressed evaluation: one graph that computes the compressed Jacobian `B = J · S` as the
//! JVP batched over the colours (the seed matrix `S` built from `iota` comparisons against a
//! constant colour vector, never as a dense constant), then reads every structural nonzero out
//! of `B` with a gather at constant indices, so the graph returns only the `nnz` values of a
//! fixed CSR pattern. The compressed Hessian is the same construction applied to the gradient
//! graph: a batch of Hessian-vector products (`jvp` of `grad`). A Jacobian whose rows need
//! fewer colours than its columns is compressed in reverse mode instead: the VJP batched over
//! row seeds.

use super::acyclic::{acyclic_substitution, colour_acyclic, Substitution};
use super::colour::{
    colour_columns, colour_columns_greedy, colour_columns_varying, colour_star,
    column_decompression, row_decompression, star_decompression, Colouring, Ordering,
};
use super::pattern::{jacobian_pattern, jacobian_pattern_varying, Pattern};
use crate::emit::{build_graph, finish, inline, push1, reshape};
use crate::grad::{argnums_first, restrict};
use crate::jvp::jvp_graph;
use crate::vmap::vmap_graph_sized;
use ferrax_ir::ops::{
    BinaryOp, CompareOp, IndexOp, Indexing, Literal, LiteralOp, ShapeOp, UnaryOp,
};
use ferrax_ir::timings::{timed, PhaseOutput};
use ferrax_ir::{Array, Builder, Dims, Graph, Op, Result, Shape, Type, Value};

/// A sparse derivative plan: the pattern, its colouring and the graph computing the values.
#[derive(Clone, Debug)]
pub struct SparsePlan {
    /// The pattern of the derivative (CSR).
    pub pattern: Pattern,
    /// The colouring of its columns (forward mode) or rows (reverse mode).
    pub colouring: Colouring,
    /// How the compressed matrix is computed.
    pub mode: Mode,
    /// Parameters are the original graph's; one output, the `nnz` values in CSR order, or,
    /// with a substitution, the compressed matrix it reads.
    pub graph: Graph,
    /// For an acyclic colouring: the recovery of the values from the graph's output, which is
    /// then the whole compressed Hessian (colour-major); `None` when the graph returns the
    /// values.
    pub substitution: Option<Substitution>,
    /// How many of the values are constant entries, computed once when the plan was made
    /// and held by the values graph as a constant (Jacobians whose varying entries need
    /// fewer colours than the whole pattern; see `jacobian_pattern_varying`). The colouring
    /// then separates only the varying entries.
    pub constant_entries: usize,
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
    jacobian_plan_with(g, n_explicit, wrt, ordering, &interpret)
}

/// Evaluates a graph on arguments, under a limit of [`CONSTANT_EVAL_ITERATIONS`] iterations
/// per run of a `while` loop: how a plan computes its constant entries, once.
pub type Evaluator<'a> = &'a dyn Fn(&Graph, &[Array]) -> Result<Vec<Array>>;

/// The interpreter as an [`Evaluator`].
fn interpret(g: &Graph, args: &[Array]) -> Result<Vec<Array>> {
    let opts = ferrax_ir::interp::EvalOptions {
        max_while_iterations: Some(CONSTANT_EVAL_ITERATIONS),
    };
    ferrax_ir::interp::eval_with(g, args, &opts)
}

/// [`jacobian_plan`] with the constant entries (see [`jacobian_pattern_varying`]) evaluated
/// by `eval` (the facade passes the JIT, which runs the compressed evaluation far faster
/// than the interpreter).
pub fn jacobian_plan_with(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    ordering: Ordering,
    eval: Evaluator,
) -> Result<SparsePlan> {
    let (g, back) = wrt_first(g, n_explicit, wrt, "jacobian_sparse", 1)?;
    if !g.ty(g.outputs()[0]).dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "jacobian_sparse: the output must be float, got {}",
            g.ty(g.outputs()[0])
        );
    }
    let (pattern, varying) = phase("sparse.pattern", || jacobian_pattern_varying(&g, 1))?;
    // Constant entries computed once, when that saves colours: decided before the full
    // pattern is coloured when the varying entries need fewer colours than its longest row
    // (a bound on every colouring of it).
    let widest = (0..pattern.nrows)
        .map(|r| pattern.row(r).len())
        .max()
        .unwrap_or(0);
    let partial = if varying.iter().any(|&v| !v) {
        Some(phase("sparse.colour", || {
            colour_columns_varying(&pattern, &varying, ordering)
        })?)
    } else {
        None
    };
    let split = |full: Option<&Colouring>, fewest: usize| -> Result<Option<SparsePlan>> {
        match &partial {
            Some(c) if c.num_colours < fewest => {
                split_plan(&g, &pattern, &varying, c, full, fewest, ordering, eval)
            }
            _ => Ok(None),
        }
    };
    if let Some(plan) = split(None, widest)? {
        return Ok(SparsePlan {
            graph: restore(plan.graph, wrt, &back)?,
            ..plan
        });
    }
    let (by_columns, by_rows) = phase("sparse.colour", || {
        let by_columns = colour_columns(&pattern, ordering);
        // A structurally symmetric pattern is its own transpose: its rows colour like its
        // columns, so reverse mode cannot need fewer colours.
        let by_rows = if pattern.nrows == pattern.ncols && super::colour::is_symmetric(&pattern) {
            by_columns.clone()
        } else {
            colour_columns(&pattern.transpose(), ordering)
        };
        (by_columns, by_rows)
    });
    let fewest = by_columns.num_colours.min(by_rows.num_colours);
    if let Some(plan) = split(Some(&by_columns), fewest)? {
        return Ok(SparsePlan {
            graph: restore(plan.graph, wrt, &back)?,
            ..plan
        });
    }
    // One product per colour either way; ties go to forward mode, whose products are cheaper.
    let (mode, colouring, idx) = if by_rows.num_colours < by_columns.num_colours {
        let idx = row_decompression(&pattern, &by_rows)?;
        (Mode::Reverse, by_rows, idx)
    } else {
        let idx = column_decompression(&pattern, &by_columns)?;
        (Mode::Forward, by_columns, idx)
    };
    let graph = phase("sparse.graph", || {
        compressed_graph(&g, 1, mode, &colouring, Some(&idx))
    })?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode,
        graph: restore(graph, wrt, &back)?,
        substitution: None,
        constant_entries: 0,
    })
}

/// The most iterations a `while` loop may take when the constant entries are evaluated at
/// zero (a loop whose trip depends on the input could run forever there); beyond, the
/// entries are left to every call.
pub const CONSTANT_EVAL_ITERATIONS: u64 = 1 << 16;

/// The plan that computes the constant entries of the Jacobian once (see
/// [`jacobian_pattern_varying`]) and only the varying ones per call, when that needs fewer
/// colours than `fewest` (the full pattern's best): the varying entries are coloured so that
/// each is alone in its element of the compressed matrix (`partial`, from
/// [`colour_columns_varying`]), and
/// the values graph gathers them and scatters them into a constant array of the `nnz`
/// values holding the constant entries. Those are evaluated here, with the interpreter, by
/// the full column colouring `full` at the input zero (every argument zero): an entry that is
/// not finite there (a `0 · ∞` of another term of its row) is treated as varying. `None` when
/// the split then saves no colour, or the evaluation fails.
#[allow(clippy::too_many_arguments)]
fn split_plan(
    g: &Graph,
    pattern: &Pattern,
    varying: &[bool],
    partial: &Colouring,
    full: Option<&Colouring>,
    fewest: usize,
    ordering: Ordering,
    eval: Evaluator,
) -> Result<Option<SparsePlan>> {
    let mut varying = varying.to_vec();
    // Any valid column colouring separates the constant entries: without the full
    // pattern's best, one greedy pass (the evaluation runs once).
    let greedy;
    let full = match full {
        Some(c) => c,
        None => {
            greedy = phase("sparse.colour", || colour_columns_greedy(pattern, ordering));
            &greedy
        }
    };
    let Some(values) = phase("sparse.constants", || {
        constant_entries(g, pattern, &varying, full, eval)
    })?
    else {
        return Ok(None);
    };
    let found = values.len();
    if found != varying.iter().filter(|&&v| !v).count() {
        return Ok(None);
    }
    let mut constant = Vec::with_capacity(found);
    // The values are those of the entries not varying, in order.
    for (v, keep) in varying.iter_mut().filter(|v| !**v).zip(values) {
        match keep {
            Some(c) => constant.push(c),
            None => *v = true,
        }
    }
    // An entry found not finite joins the varying ones: colour again for it.
    let colouring = if constant.len() < found {
        let c = colour_columns_varying(pattern, &varying, ordering)?;
        if c.num_colours >= fewest || constant.is_empty() {
            return Ok(None);
        }
        c
    } else {
        partial.clone()
    };
    let graph = phase("sparse.graph", || -> Result<Graph> {
        // Every entry is gathered from the compressed matrix at its column's colour: the
        // varying ones are alone there, and the constant ones read an element of their own
        // row (in range, and from the same piece of a concatenated matrix as the row's
        // other entries), which the select below replaces by the constant.
        let idx = column_decompression(pattern, &colouring)?;
        if varying.iter().all(|&v| !v) {
            // An affine function: its Jacobian is the constant, no product per call.
            return constant_graph(g, constant.clone());
        }
        // The template holds the constants (all finite) and a NaN at every varying entry,
        // which marks the entries the select takes from the compressed matrix.
        let mut next = constant.iter();
        let template: Vec<f64> = varying
            .iter()
            .map(|&v| {
                if v {
                    f64::NAN
                } else {
                    next.next().copied().unwrap_or(f64::NAN)
                }
            })
            .collect();
        let vals = compressed_graph(g, 1, Mode::Forward, &colouring, Some(&idx))?;
        fill_constants(g, &vals, template)
    })?;
    Ok(Some(SparsePlan {
        pattern: pattern.clone(),
        colouring,
        mode: Mode::Forward,
        graph,
        substitution: None,
        constant_entries: constant.len(),
    }))
}

/// The constant entries (those not `varying`, in CSR order) evaluated by the compressed
/// evaluation with the full column colouring `full` at the input zero, each `None` where it
/// is not finite; `None` when the evaluation fails.
fn constant_entries(
    g: &Graph,
    pattern: &Pattern,
    varying: &[bool],
    full: &Colouring,
    eval: Evaluator,
) -> Result<Option<Vec<Option<f64>>>> {
    let all = column_decompression(pattern, full)?;
    let idx: Vec<usize> = all
        .iter()
        .zip(varying)
        .filter(|(_, &v)| !v)
        .map(|(&i, _)| i)
        .collect();
    let graph = compressed_graph(g, 1, Mode::Forward, full, Some(&idx))?;
    let zeros = g
        .param_types()
        .iter()
        .map(Array::zeros)
        .collect::<Result<Vec<Array>>>()?;
    let Ok(out) = eval(&graph, &zeros) else {
        return Ok(None);
    };
    let Some(first) = out.first() else {
        return Ok(None);
    };
    Ok(Some(
        first
            .to_f64_vec()
            .into_iter()
            .map(|v| v.is_finite().then_some(v))
            .collect(),
    ))
}

/// The graph of `g`'s parameters returning `values` (in `g`'s output dtype), a constant.
fn constant_graph(g: &Graph, values: Vec<f64>) -> Result<Graph> {
    let dtype = g.ty(g.outputs()[0]).dtype;
    let t = Array::from_f64(Shape::new(&[values.len()]), values)?.cast(dtype);
    finish(build_graph(&g.param_types(), |b, _| {
        Ok(vec![push1(
            b,
            Op::Literal(LiteralOp::Const(Literal::new(t.clone()))),
            &[],
        )?])
    })?)
}

/// The graph returning the `nnz` values: `vals`'s output (every entry read from the
/// compressed matrix) where the constant `template` is NaN (the varying entries; the
/// constants are finite), the template elsewhere. One loop: a select on the template's
/// comparison with itself, with the gather it reads. The mask is the template's own NaNs
/// rather than a bool constant, so the loop streams no mask and runs in vectors (a scatter
/// of the varying values into a copy of the template was a serial pass over all of them).
fn fill_constants(g: &Graph, vals: &Graph, template: Vec<f64>) -> Result<Graph> {
    let dtype = vals.ty(vals.outputs()[0]).dtype;
    let nnz = template.len();
    let t = Array::from_f64(Shape::new(&[nnz]), template)?.cast(dtype);
    let out = build_graph(&g.param_types(), |b, ps| {
        let v = inline(b, vals, ps)?;
        let t = push1(
            b,
            Op::Literal(LiteralOp::Const(Literal::new(t.clone()))),
            &[],
        )?;
        let keep = push1(b, Op::Compare(CompareOp::Eq), &[t, t])?;
        let select = Op::Compare(CompareOp::Select);
        Ok(vec![push1(b, select, &[keep, t, v[0]])?])
    })?;
    finish(out)
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
    hessian_plan_by(g, n_explicit, wrt, ordering, false)
}

/// Like [`hessian_plan`] with an acyclic colouring (often fewer colours than a star colouring,
/// so fewer Hessian-vector products per call): the values graph returns the whole compressed
/// Hessian, and the plan's [`Substitution`] recovers the values from it after the call.
pub fn hessian_plan_acyclic(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    ordering: Ordering,
) -> Result<SparsePlan> {
    hessian_plan_by(g, n_explicit, wrt, ordering, true)
}

/// The Hessian plan with a star colouring and direct decompression inside the graph, or with
/// an acyclic colouring and substitution after the call.
fn hessian_plan_by(
    g: &Graph,
    n_explicit: usize,
    wrt: usize,
    ordering: Ordering,
    acyclic: bool,
) -> Result<SparsePlan> {
    let (g, back) = wrt_first(g, n_explicit, wrt, "hessian_sparse", 1)?;
    let grad = crate::grad_graph(&g, 1, &[0], false)?;
    // The Hessian pattern is the Jacobian pattern of the gradient (see `hessian_pattern`).
    let pattern = phase("sparse.pattern", || jacobian_pattern(&grad, 1))?;
    let colouring = phase("sparse.colour", || {
        if acyclic {
            colour_acyclic(&pattern, ordering)
        } else {
            colour_star(&pattern, ordering)
        }
    });
    let (idx, substitution) = phase("sparse.decompression", || -> Result<_> {
        Ok(if acyclic {
            (None, Some(acyclic_substitution(&pattern, &colouring)?))
        } else {
            (Some(star_decompression(&pattern, &colouring)?), None)
        })
    })?;
    let graph = phase("sparse.graph", || {
        compressed_graph(&grad, 1, Mode::Forward, &colouring, idx.as_deref())
    })?;
    Ok(SparsePlan {
        pattern,
        colouring,
        mode: Mode::Forward,
        graph: restore(graph, wrt, &back)?,
        substitution,
        constant_entries: 0,
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

/// `g`'s compressed Jacobian with respect to parameter 0, flattened and gathered at `idx`
/// (the colour-major indices of the colouring's decompression map). The graph computes it
/// colour-major: forward, `B[c, i] = Σ_{colour(j) = c} ∂out_i/∂x_j`,
/// shape `[k, out..]`; reverse, `B[c, j] = Σ_{colour(i) = c} ∂out_i/∂x_j`, shape `[k, x..]`.
pub(crate) fn compressed_graph(
    g: &Graph,
    n_explicit: usize,
    mode: Mode,
    c: &Colouring,
    idx: Option<&[usize]>,
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
    // The colours are the leading axis either way (no transpose of the compressed matrix),
    // the layout the decompression indices address.
    let lin = match mode {
        Mode::Forward => jvp_graph(g, n_explicit)?,
        Mode::Reverse => crate::vjp_graph(g, n_explicit)?,
    };
    let np = lin.params().len();
    let lt = restrict(&lin, &(0..np).collect::<Vec<_>>(), &[1])?;
    let bl = vmap_graph_sized(&lt, 2, &[None, Some(0)], &[0], k)?;
    let out = build_graph(&g.param_types(), |b, ps| {
        // Seeds: S[c, j] = (colour(j) == c). Up to SEED_CONST_LIMIT elements they are a
        // constant, and the moves of it inside the linear map are evaluated below, so at run
        // time the tangents are constant reads of the fused loops; beyond, the columns of the
        // k × k identity gathered by the constant colour vector, which the JIT reads inside
        // its fused loops (an i32 colour per column instead of k floats, and no full-size
        // constants to build and hash). Neither is an `iota` comparison, which the
        // structural rewrites would lift through the graph as a mask, case by case,
        // multiplying the tangent work.
        let seeds = if k.saturating_mul(n) <= SEED_CONST_LIMIT {
            let mut s = ferrax_ir::alloc::try_filled(k * n, 0.0, "sparse derivative seeds")?;
            for (j, &col) in c.colours.iter().enumerate() {
                s[col * n + j] = 1.0;
            }
            let s = Array::from_f64(Shape::new(&[k, n]), s)?.cast(seed_ty.dtype);
            push1(b, Op::Literal(LiteralOp::Const(Literal::new(s))), &[])?
        } else {
            let eye: Vec<f64> = (0..k * k)
                .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
                .collect();
            let eye = Array::from_f64(Shape::new(&[k, k]), eye)?.cast(seed_ty.dtype);
            let eye = push1(b, Op::Literal(LiteralOp::Const(Literal::new(eye))), &[])?;
            // The colours in the seeded value's own shape, so the gather yields the seeds
            // as `[k, dims..]` with no reshape after it: a reshape that splits a dimension
            // is no remapping a fused loop reads through, so the seeds would be
            // materialised (a `[k, 2, N, N]` pass for the Brusselator) instead of read in
            // place by every loop that uses them.
            let cols = Array::from_i32(
                seed_ty.shape.clone(),
                c.colours.iter().map(|&x| x as i32).collect(),
            )?;
            let cols = push1(b, Op::Literal(LiteralOp::Const(Literal::new(cols))), &[])?;
            let along_columns = Indexing {
                axis: 1,
                ..Indexing::default()
            };
            push1(b, Op::Index(IndexOp::Gather(along_columns)), &[eye, cols])?
        };
        let mut dims = Dims::from_slice(&[k]);
        dims.extend_from_slice(seed_ty.dims());
        let seeds = if b.ty(seeds).dims() == &dims[..] {
            seeds
        } else {
            reshape(b, seeds, Shape(dims))?
        };
        let mut args = vec![ps[0], seeds];
        args.extend_from_slice(&ps[1..]);
        let touts = inline(b, &bl, &args)?;
        let Some(idx) = idx else {
            return Ok(vec![reshape(b, touts[0], Shape::new(&[m * k]))?]);
        };
        if let Some(vals) = gather_from_pieces(b, touts[0], idx)? {
            return Ok(vec![vals]);
        }
        let flat = reshape(b, touts[0], Shape::new(&[m * k]))?;
        Ok(vec![gather_flat(b, flat, idx)?])
    })?;
    finish(fold_constant_moves(&out)?)
}

/// `flat[idx]` for the rank-1 value `flat`, by a gather at constant indices.
fn gather_flat(b: &mut Builder, flat: Value, idx: &[usize]) -> Result<Value> {
    let at = Array::from_i32(
        Shape::new(&[idx.len()]),
        idx.iter().map(|&i| i as i32).collect(),
    )?;
    let at = push1(b, Op::Literal(LiteralOp::Const(Literal::new(at))), &[])?;
    push1(
        b,
        Op::Index(IndexOp::Gather(Indexing::default())),
        &[flat, at],
    )
}

/// At most this many runs of values taken from one piece of a concatenated compressed
/// matrix are gathered piece by piece (see [`gather_from_pieces`]); beyond, the pieces are
/// joined and gathered once. The JIT reads a concatenation of up to 16 pieces in place.
const PIECE_RUNS_MAX: usize = 16;

/// The values `flatten(t)[idx]` read from the pieces of `t` when `t` is a concatenation and
/// the values each piece provides form at most [`PIECE_RUNS_MAX`] runs of consecutive
/// positions: one gather per run, from that piece alone, joined by a concatenation of the
/// (much smaller) gathered runs. The compressed matrix of a function whose output is a
/// concatenation (`stack` of fields, say) is then never joined: each piece is read where it
/// was computed. `None` when `t` is not a concatenation or the runs are too many.
fn gather_from_pieces(b: &mut Builder, t: Value, idx: &[usize]) -> Result<Option<Value>> {
    let g = b.graph();
    let (axis, pieces) = match g.producer(t) {
        Some((_, inst)) => match &inst.op {
            Op::Shape(ShapeOp::Concatenate { axis }) => (*axis, inst.args.to_vec()),
            _ => return Ok(None),
        },
        None => return Ok(None),
    };
    let dims = g.ty(t).dims().to_vec();
    if idx.is_empty() || axis >= dims.len() {
        return Ok(None);
    }
    // An element's flat index is `(outer · along + a) · inner + rest` for its index `a` along
    // the axis; in piece `p` (which holds `a` in `starts[p]..starts[p] + len[p]`) it is
    // `(outer · len[p] + a − starts[p]) · inner + rest`.
    let inner: usize = dims[axis + 1..].iter().product();
    let along = dims[axis];
    let lens: Vec<usize> = pieces.iter().map(|&p| g.ty(p).dims()[axis]).collect();
    let mut starts = Vec::with_capacity(lens.len());
    let mut at = 0usize;
    for &l in &lens {
        starts.push(at);
        at += l;
    }
    if inner == 0 || along == 0 || at != along {
        return Ok(None);
    }
    // Runs of positions reading one piece: (piece, the indices inside it).
    let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
    for &f in idx {
        let (outer, a, rest) = (f / inner / along, f / inner % along, f % inner);
        let p = starts.partition_point(|&s| s <= a) - 1;
        let local = (outer * lens[p] + a - starts[p]) * inner + rest;
        match runs.last_mut() {
            Some((q, v)) if *q == p => v.push(local),
            _ => {
                if runs.len() == PIECE_RUNS_MAX {
                    return Ok(None);
                }
                runs.push((p, vec![local]));
            }
        }
    }
    let mut parts = Vec::with_capacity(runs.len());
    for (p, local) in &runs {
        let piece = pieces[*p];
        let size = b.ty(piece).size();
        let flat = reshape(b, piece, Shape::new(&[size]))?;
        parts.push(gather_flat(b, flat, local)?);
    }
    Ok(Some(match parts[..] {
        [one] => one,
        _ => push1(b, Op::Shape(ShapeOp::Concatenate { axis: 0 }), &parts)?,
    }))
}

/// Seed matrices of at most this many elements are constants (see `compressed_graph`).
/// Measured on the chained Rosenbrock Hessian (three colours, interleaved runs of both
/// builds): constant seeds call in 5 against 8 µs at n = 10³ and 50 against 80 µs at 10⁴;
/// gathered seeds win from 10⁵ (1.1 against 1.4 ms per call, 36 against 47 ms first call)
/// and at 10⁶ (12.8 against 14.6 ms, 0.44 against 0.63 s first call, 190 against 227 MB).
const SEED_CONST_LIMIT: usize = 1 << 17;

/// `g` with every slice, reshape, transpose and concatenation of constants replaced by its
/// value, at any size (the builder folds only small constants), and every exact arithmetic op
/// (see [`folds_arithmetic`]) whose operands are constants of its result's type used nowhere
/// else: the sum of a stencil's moved seeds (the Brusselator's Laplacian of its seeds, four
/// full-size constants that every call streamed and added) becomes one constant. An operand
/// used elsewhere stays, so folding never adds a constant stream: `seeds · 4` next to
/// another use of the seeds is computed, not read. None of these makes more elements than
/// its operands hold, so the constants of the result are at most as large as those of `g`
/// times the number of moves.
fn fold_constant_moves(g: &Graph) -> Result<Graph> {
    let mut b = Builder::new();
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for &p in g.params() {
        map[p.index()] = Some(b.param(g.ty(p).clone()));
    }
    let get = |map: &[Option<Value>], v: Value| {
        map[v.index()].ok_or_else(|| {
            ferrax_ir::Error::new(
                ferrax_ir::ErrorKind::Transform,
                "sparse derivative: a value used before its definition",
            )
        })
    };
    // Uses of every value (an output counts as one more), for the arithmetic folds.
    let mut uses = vec![0usize; g.num_values()];
    for (_, inst) in g.insts() {
        for &a in inst.args.iter() {
            uses[a.index()] += 1;
        }
    }
    for &o in g.outputs() {
        uses[o.index()] += 1;
    }
    for (_, inst) in g.insts() {
        let args = inst
            .args
            .iter()
            .map(|&a| get(&map, a))
            .collect::<Result<Vec<Value>>>()?;
        let moves = matches!(
            inst.op,
            Op::Shape(
                ShapeOp::Slice { .. }
                    | ShapeOp::Reshape { .. }
                    | ShapeOp::Transpose { .. }
                    | ShapeOp::Concatenate { .. }
            )
        );
        // An arithmetic op folds when each operand is a full-size constant that only it uses
        // (a value used twice by it, as in `c · c`, counts its uses there).
        let arithmetic = folds_arithmetic(&inst.op)
            && inst.results.len() == 1
            && g.ty(inst.results[0]).dtype.is_float()
            && inst.args.iter().zip(&args).all(|(&a, &na)| {
                let here = inst.args.iter().filter(|&&x| x == a).count();
                uses[a.index()] == here && b.ty(na) == g.ty(inst.results[0])
            });
        let lits: Option<Vec<&Array>> = if moves || arithmetic {
            args.iter()
                .map(|&a| b.literal(a).map(|l| l.array()))
                .collect()
        } else {
            None
        };
        let folded = match lits {
            Some(l) if !l.is_empty() => Some(inst.op.eval(&l)?),
            _ => None,
        };
        let outs: Vec<Value> = match folded {
            Some(vals) => vals.into_iter().map(|v| b.constant(v)).collect(),
            None => b.push(inst.op.clone(), &args)?.to_vec(),
        };
        for (&r, o) in inst.results.iter().zip(outs) {
            map[r.index()] = Some(o);
        }
    }
    let outs = g
        .outputs()
        .iter()
        .map(|&o| get(&map, o))
        .collect::<Result<Vec<Value>>>()?;
    Ok(b.finish(&outs))
}

/// Whether `fold_constant_moves` may evaluate `op` on float constants: negation and the four
/// arithmetic operations, which the interpreter and the JIT compute alike (correctly rounded,
/// bit for bit), so a folded value equals the one a call would compute.
fn folds_arithmetic(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(UnaryOp::Neg)
            | Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div)
    )
}

/// A phase's result that reports no graph size to the timings.
struct Untallied<T>(T);

impl<T> PhaseOutput for Untallied<T> {
    fn equations(&self) -> Option<usize> {
        None
    }
}

/// Runs `f` as the timed phase `name` (see `ferrax_ir::timings`).
fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    timed(name, || Untallied(f())).0
}
