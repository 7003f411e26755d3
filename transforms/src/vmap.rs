//! vmap: batching as an IR-to-IR rewrite.
//!
//! [`vmap_graph`] turns a graph computing `f(x₀, .., xₖ₋₁, captured..)` for one example into a
//! graph computing it for a whole batch at once, with no loop and no copies: every instruction
//! is visited once and replaced by its batched counterpart.
//!
//! # Conventions of the batching rules
//!
//! - Every value of the original graph maps to a [`Batched`] value of the new graph: either
//!   *unbatched* (the same for every member of the batch, e.g. constants, `iota`, captured
//!   values and anything computed only from them), or batched with its batch dimension at some
//!   position `bdim`. A batched value has the original shape with the batch size inserted at
//!   `bdim`.
//! - An instruction whose operands are all unbatched is copied unchanged; its result is
//!   unbatched. Otherwise the rule of the op's family (in `batch/<family>.rs`) is called; a
//!   rule may assume at least one operand is batched. Rules are exhaustive matches over the
//!   family's enum.
//! - A rule leaves the batch dimension where it landed whenever it can, and moves it (with a
//!   `transpose`) only when it must: elementwise ops bring all operands to the batch position
//!   of the first batched operand and broadcast unbatched operands with `broadcast_in_dim`;
//!   reductions, `slice`, `pad`, `rev`, `cumsum`, `concatenate`, `transpose` and
//!   `broadcast_in_dim` shift their static axes past the batch dimension; `reshape` moves the
//!   batch to the front first; `dot_general` adds a batch dimension when both sides are batched
//!   and otherwise treats the batch as one more free dimension (one big GEMM); indexing ops with
//!   batched indices fold the batch into the indexed dimension (see `batch/index.rs`).
//! - Control ops (`batch/control.rs`) batch their sub-graphs on their own, with every batched
//!   parameter and result of a sub-graph carrying its batch dimension at 0 (scanned operands
//!   of `scan` and its stacked results at 1), and find which carries are batched by a fixed
//!   point. A batched `switch` index becomes `select`s over every branch's results; a batched
//!   `while` predicate runs the loop while any member's holds and freezes finished members.
//!   [`batch_into`] is the walk both [`vmap_graph`] and those rules use.
//! - Inputs: `g` is the per-member function. Argument `i` (one of the first `n_explicit`
//!   parameters) gets a batch dimension inserted at `in_axes[i]` (`None`: not batched, its type
//!   is unchanged). Captured values (the parameters after the first `n_explicit`) are never
//!   batched and stay the last parameters, in order.
//! - The batch size is given ([`vmap_graph_sized`]) or read from the batched argument types
//!   ([`vmap_graph`]), which must all agree.
//! - Outputs: output `k` gets its batch dimension at `out_axes[k]`; an output that does not
//!   depend on a batched argument is broadcast along the batch.
//! - Bad input (axis out of range, batch sizes that disagree, wrong lengths) is an `Err`, never
//!   a panic. The result passes `verify()`, and each rule's result type is checked against the
//!   original type with the batch inserted.

use crate::batch::{batch_op, insert_dim, BatchCtx, Batched};
use ferrax_ir::{Builder, Error, ErrorKind, Graph, Result, Shape, Type, Value};

/// Batches the per-member graph `g` over its first `n_explicit` parameters for a batch of
/// `batch` members: argument `i` gets a batch dimension inserted at `in_axes[i]` (`None`: not
/// batched), the remaining parameters are captured values passed through unbatched as the last
/// parameters, and output `k` carries the batch dimension at `out_axes[k]` (outputs that do not
/// depend on a batched argument are broadcast).
pub fn vmap_graph_sized(
    g: &Graph,
    n_explicit: usize,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    batch: usize,
) -> Result<Graph> {
    check_counts(g, n_explicit, in_axes, out_axes)?;
    for (i, (&p, &axis)) in g.params().iter().zip(in_axes).enumerate() {
        if let Some(axis) = axis {
            let ty = g.ty(p);
            if axis > ty.rank() {
                return Err(Error::new(
                    ErrorKind::Axis,
                    format!(
                        "vmap: in_axes[{i}] = {axis} is out of range for argument {i} of type \
                         {ty} (at most {})",
                        ty.rank()
                    ),
                ));
            }
        }
    }
    batch_graph(g, n_explicit, in_axes, out_axes, batch)
}

/// Like [`vmap_graph_sized`], with the batch size read from the batched argument types
/// `arg_types` (one per explicit argument, with the batch dimension at `in_axes[i]`). The
/// batched arguments must agree on the size, at least one must be batched, and each type with
/// its batch dimension removed must be the type of the corresponding parameter of `g`.
pub fn vmap_graph(
    g: &Graph,
    n_explicit: usize,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    arg_types: &[Type],
) -> Result<Graph> {
    check_counts(g, n_explicit, in_axes, out_axes)?;
    if arg_types.len() != n_explicit {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: {} argument types given for {n_explicit} arguments",
                arg_types.len()
            ),
        ));
    }
    let mut size: Option<(usize, usize)> = None;
    for (i, ((&p, &axis), ty)) in g.params().iter().zip(in_axes).zip(arg_types).enumerate() {
        let per_member = match axis {
            None => ty.clone(),
            Some(axis) => {
                if axis >= ty.rank() {
                    return Err(Error::new(
                        ErrorKind::Axis,
                        format!(
                            "vmap: in_axes[{i}] = {axis} is out of range for argument {i} of \
                             type {ty}"
                        ),
                    ));
                }
                let n = ty.dims()[axis];
                if let Some((s, j)) = size {
                    if s != n {
                        return Err(Error::new(
                            ErrorKind::Shape,
                            format!(
                                "vmap: batch sizes disagree: argument {j} has {s} members but \
                                 argument {i} of type {ty} has {n} along axis {axis}"
                            ),
                        ));
                    }
                }
                size = Some((n, i));
                let mut t = ty.clone();
                t.shape.0.remove(axis);
                t
            }
        };
        if &per_member != g.ty(p) {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "vmap: argument {i} of type {ty} (batched along {axis:?}) does not match \
                     the function's parameter type {}",
                    g.ty(p)
                ),
            ));
        }
    }
    let Some((size, _)) = size else {
        return Err(Error::new(
            ErrorKind::Transform,
            format!(
                "vmap: in_axes is {in_axes:?}, with no entry Some(axis), so no argument is \
                 batched and the batch size is unknown; give at least one argument a batch axis \
                 in in_axes (or use vmap_graph_sized)"
            ),
        ));
    };
    batch_graph(g, n_explicit, in_axes, out_axes, size)
}

fn check_counts(
    g: &Graph,
    n_explicit: usize,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
) -> Result<()> {
    let n_params = g.params().len();
    if n_explicit > n_params {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: {n_explicit} arguments requested but the graph has {n_params} parameters"
            ),
        ));
    }
    if in_axes.len() != n_explicit {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: {} in_axes given for {n_explicit} arguments",
                in_axes.len()
            ),
        ));
    }
    if out_axes.len() != g.outputs().len() {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: {} out_axes given for {} outputs",
                out_axes.len(),
                g.outputs().len()
            ),
        ));
    }
    for (k, (&o, &axis)) in g.outputs().iter().zip(out_axes).enumerate() {
        let ty = g.ty(o);
        if axis > ty.rank() {
            return Err(Error::new(
                ErrorKind::Axis,
                format!(
                    "vmap: out_axes[{k}] = {axis} is out of range for output {k} of type {ty} \
                     (at most {})",
                    ty.rank()
                ),
            ));
        }
    }
    Ok(())
}

/// Emits the batched counterpart of every instruction of `g` into `ctx`'s builder, with `g`'s
/// parameters bound to `args`, and returns `g`'s outputs as batched values of that builder
/// (each with its batch dimension wherever it landed). This is the walk of [`vmap_graph`]; the
/// batching rules of control ops also use it to inline a sub-graph (a branch, a loop's
/// condition) into the graph being built.
pub fn batch_into(ctx: &mut BatchCtx<'_>, g: &Graph, args: &[Batched]) -> Result<Vec<Batched>> {
    if args.len() != g.params().len() {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: a graph with {} parameters is given {} arguments",
                g.params().len(),
                args.len()
            ),
        ));
    }
    let size = ctx.size();
    let mut env: Vec<Option<Batched>> = vec![None; g.num_values()];
    for (&p, &a) in g.params().iter().zip(args) {
        env[p.index()] = Some(a);
    }
    let lookup = |env: &[Option<Batched>], v: Value| {
        env.get(v.index()).copied().flatten().ok_or_else(|| {
            Error::new(
                ErrorKind::Verify,
                format!("vmap: {v} is used before its definition"),
            )
        })
    };
    for (inst, data) in g.insts() {
        let args: Vec<Batched> = data
            .args
            .iter()
            .map(|&a| lookup(&env, a))
            .collect::<Result<_>>()?;
        let context = |e: Error| {
            Error::new(
                e.kind,
                format!(
                    "vmap: while batching {inst} ({}): {}",
                    data.op.name(),
                    e.message
                ),
            )
        };
        let results = batch_op(ctx, &data.op, &args).map_err(context)?;
        if results.len() != data.results.len() {
            return Err(context(Error::new(
                ErrorKind::Transform,
                "the batching rule returned the wrong number of results",
            )));
        }
        for (&r, &bv) in data.results.iter().zip(&results) {
            let ty = g.ty(r);
            let want = match bv.bdim {
                Some(d) if d <= ty.rank() => Some(Type {
                    dtype: ty.dtype,
                    shape: Shape(insert_dim(ty.dims(), d, size)),
                }),
                Some(_) => None,
                None => Some(ty.clone()),
            };
            let got = ctx.ty(bv.value);
            if want.as_ref() != Some(&got) {
                return Err(context(Error::new(
                    ErrorKind::Transform,
                    format!(
                        "internal error: the batching rule gave {got} with batch axis {:?} \
                         for a result of type {ty}",
                        bv.bdim
                    ),
                )));
            }
            env[r.index()] = Some(bv);
        }
    }
    g.outputs().iter().map(|&o| lookup(&env, o)).collect()
}

/// The walk itself; the parameters are checked.
fn batch_graph(
    g: &Graph,
    n_explicit: usize,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    size: usize,
) -> Result<Graph> {
    let mut b = Builder::new();
    let mut args = Vec::with_capacity(g.params().len());
    for (i, &p) in g.params().iter().enumerate() {
        let ty = g.ty(p);
        let axis = if i < n_explicit { in_axes[i] } else { None };
        args.push(match axis {
            Some(axis) => {
                let t = Type {
                    dtype: ty.dtype,
                    shape: Shape(insert_dim(ty.dims(), axis, size)),
                };
                Batched::at(b.param(t), axis)
            }
            None => Batched::unbatched(b.param(ty.clone())),
        });
    }
    let mut ctx = BatchCtx::new(&mut b, size);
    let results = batch_into(&mut ctx, g, &args)?;
    let mut outs = Vec::with_capacity(out_axes.len());
    for (&bv, &axis) in results.iter().zip(out_axes) {
        outs.push(ctx.move_bdim(bv, axis)?);
    }
    let graph = b.finish(&outs);
    debug_assert!(
        graph.verify().is_ok(),
        "vmap produced a graph that does not verify"
    );
    Ok(graph)
}
