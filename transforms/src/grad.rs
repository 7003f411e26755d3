//! `grad` and `value_and_grad` at graph level: the VJP of the first output with a unit
//! cotangent, restricted to the differentiated arguments (`argnums`); the other arguments are
//! treated like captures.

use crate::emit::{build_graph, build_graph_sized, inline, or_zeros, Finish};
use crate::jvp::check_explicit;
use crate::vjp::vjp_into;
use ferrax_ir::timings::timed;
use ferrax_ir::{Array, Graph, Result, Type, Value};

/// Checks `argnums` against `g`: in range of the explicit parameters, distinct, and of a float
/// dtype. `name` names the transform in messages.
pub(crate) fn check_argnums(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    name: &str,
) -> Result<()> {
    check_explicit(g, n_explicit, name)?;
    if argnums.is_empty() {
        ferrax_ir::bail!(
            Transform,
            "{name}: argnums is empty; there is nothing to differentiate"
        );
    }
    for (i, &a) in argnums.iter().enumerate() {
        if a >= n_explicit {
            ferrax_ir::bail!(
                Transform,
                "{name}: argnum {a} (of argnums {argnums:?}) is out of range for a function of {}",
                ferrax_ir::error::count_of(n_explicit, "argument")
            );
        }
        if argnums[..i].contains(&a) {
            ferrax_ir::bail!(
                Transform,
                "{name}: argnum {a} appears twice in argnums {argnums:?}"
            );
        }
        let ty = g.ty(g.params()[a]);
        if !ty.dtype.is_float() {
            ferrax_ir::bail!(
                Transform,
                "{name}: argument {a} has type {ty}; only float arguments can be differentiated"
            );
        }
    }
    Ok(())
}

/// The parameter order `argnums` first, then every other parameter in order.
pub(crate) fn argnums_first(g: &Graph, argnums: &[usize]) -> Vec<usize> {
    let mut order = argnums.to_vec();
    order.extend((0..g.params().len()).filter(|i| !argnums.contains(i)));
    order
}

/// A copy of `g` whose parameters are `g`'s in the given `order` and whose outputs are the
/// listed outputs of `g`.
pub(crate) fn restrict(g: &Graph, order: &[usize], outputs: &[usize]) -> Result<Graph> {
    restrict_with(g, order, outputs, Finish::Full)
}

/// [`restrict`] finished as `fin` says.
fn restrict_with(g: &Graph, order: &[usize], outputs: &[usize], fin: Finish) -> Result<Graph> {
    let tys: Vec<Type> = order.iter().map(|&i| g.ty(g.params()[i]).clone()).collect();
    let out = build_graph(&tys, |b, ps| {
        let mut args = vec![ps[0]; g.params().len()];
        for (&i, &p) in order.iter().zip(ps) {
            args[i] = p;
        }
        let outs = inline(b, g, &args)?;
        Ok(outputs.iter().map(|&o| outs[o]).collect())
    })?;
    fin.apply(out)
}

fn grad_impl(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    has_aux: bool,
    with_value: bool,
) -> Result<Graph> {
    let name = if with_value { "value_and_grad" } else { "grad" };
    check_argnums(g, n_explicit, argnums, name)?;
    let k = g.outputs().len();
    if has_aux && k < 2 {
        ferrax_ir::bail!(
            Transform,
            "{name}: has_aux needs a function with at least 2 outputs (value, aux..), got {k}"
        );
    }
    if !has_aux && k != 1 {
        ferrax_ir::bail!(
            Transform,
            "{name}: the function must have exactly one (scalar) output, got {k}; use has_aux \
             to return auxiliary outputs"
        );
    }
    let ty = g.ty(g.outputs()[0]);
    if !ty.is_scalar() || !ty.dtype.is_float() {
        ferrax_ir::bail!(
            Transform,
            "{name}: the function's output 0 has type {ty}; {name} needs a scalar float output"
        );
    }
    let dtype = ty.dtype;
    let order = argnums_first(g, argnums);
    // With the differentiated arguments already first and one output, the restriction would
    // only copy `g`: the JVP reads `g` itself.
    let identity = order.iter().enumerate().all(|(k, &i)| k == i) && k == 1;
    let h = if identity {
        None
    } else {
        Some(timed("grad.restrict", || {
            restrict_with(g, &order, &[0], Finish::Lean)
        })?)
    };
    // The VJP is emitted straight into the result with the unit cotangent as a constant, so
    // the transpose is simplified with it as it is built and no VJP graph is inlined again.
    let out = timed("vjp", || {
        build_graph_sized(&g.param_types(), 2 * g.num_insts(), |b, ps| {
            let one = b.constant(Array::scalar(dtype, 1.0));
            let args: Vec<Value> = order.iter().map(|&i| ps[i]).collect();
            let base = h.as_ref().unwrap_or(g);
            let (vo, cin) = vjp_into(b, base, argnums.len(), &args, &[Some(one)])?;
            let mut outs = if with_value { vo } else { Vec::new() };
            for (c, &a) in cin.into_iter().zip(argnums) {
                let ty = g.ty(g.params()[a]).clone();
                outs.push(or_zeros(b, c, &ty)?);
            }
            if has_aux {
                let go = inline(b, g, ps)?;
                outs.extend_from_slice(&go[1..]);
            }
            Ok(outs)
        })
    })?;
    drop(h);
    let out = crate::passes::try_simplify_reassociating(out);
    // Storage kept for reuse and not reused is not held beyond the transform.
    ferrax_ir::graph::release_spare_storage();
    out
}

/// The gradient of `g`'s scalar float output 0 with respect to the explicit parameters listed
/// in `argnums`: outputs `[grads for argnums..]`, then `g`'s outputs 1.. when `has_aux`.
/// Parameters are `g`'s. Errors for a non-scalar or non-float output, an integer or bool
/// argument, an argnum out of range, or `has_aux` with fewer than 2 outputs.
pub fn grad_graph(g: &Graph, n_explicit: usize, argnums: &[usize], has_aux: bool) -> Result<Graph> {
    grad_impl(g, n_explicit, argnums, has_aux, false)
}

/// Like [`grad_graph`] but the outputs are `[value, grads for argnums.., aux..]`.
pub fn value_and_grad_graph(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    has_aux: bool,
) -> Result<Graph> {
    grad_impl(g, n_explicit, argnums, has_aux, true)
}
