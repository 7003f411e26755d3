//! Forward mode: `jvp_graph` pushes tangents through a graph alongside the primal values,
//! with one JVP rule per primitive (see [`crate::rules`]). Tangents are symbolic: `None` is a
//! zero that costs nothing until an output needs it.

use crate::emit::{build_graph_sized, or_zeros, push, Finish};
use crate::rules;
use ferrax_ir::ops::ControlOp;
use ferrax_ir::timings::timed;
use ferrax_ir::{Builder, Graph, Op, Result, Type, Value};
use smallvec::SmallVec;

/// Checks that `n_explicit` does not exceed the number of parameters of `g`.
pub(crate) fn check_explicit(g: &Graph, n_explicit: usize, name: &str) -> Result<()> {
    if n_explicit > g.params().len() {
        ferrax_ir::bail!(
            Transform,
            "{name}: the function has {} parameters but n_explicit is {n_explicit}",
            g.params().len()
        );
    }
    Ok(())
}

/// Emits `g` into `b` at `primals` (one per parameter of `g`) with `tangents` (one per
/// parameter, `None` for zero) and returns the outputs and their tangents.
pub(crate) fn jvp_into(
    b: &mut Builder,
    g: &Graph,
    primals: &[Value],
    tangents: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let mut primal: Vec<Option<Value>> = vec![None; g.num_values()];
    let mut tangent: Vec<Option<Value>> = vec![None; g.num_values()];
    for ((&p, &x), &t) in g.params().iter().zip(primals).zip(tangents) {
        primal[p.index()] = Some(x);
        tangent[p.index()] = t.filter(|_| g.ty(p).dtype.is_float());
    }
    for (_, inst) in g.insts() {
        let xs: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| primal[a.index()].expect("verified graph"))
            .collect();
        let ts: SmallVec<[Option<Value>; 4]> =
            inst.args.iter().map(|&a| tangent[a.index()]).collect();
        if let Op::Control(c) = &inst.op {
            let (ys, tys) = rules::control::jvp(b, c, &xs, &ts)?;
            for ((&r, y), t) in inst.results.iter().zip(ys).zip(tys) {
                primal[r.index()] = Some(y);
                tangent[r.index()] = t;
            }
            continue;
        }
        let ys = push(b, inst.op.clone(), &xs)?;
        for (k, (&r, &y)) in inst.results.iter().zip(&ys).enumerate() {
            primal[r.index()] = Some(y);
            if k == 0 {
                tangent[r.index()] = rules::jvp(b, &inst.op, &xs, &ts, y)?;
            }
        }
    }
    let outs = g
        .outputs()
        .iter()
        .map(|&o| primal[o.index()].expect("verified graph"))
        .collect();
    let touts = g.outputs().iter().map(|&o| tangent[o.index()]).collect();
    Ok((outs, touts))
}

/// The JVP of `g`: parameters `[primals.., tangents.., captures..]` (tangents have the primals'
/// types; those of integer or bool primals are ignored), outputs `[outputs.., output
/// tangents..]` (zeros for integer or bool outputs). Parameters from `n_explicit` on are
/// captures: passed through, never differentiated.
/// Errors for a function that calls a `custom_vjp` function, whose forward mode is undefined.
pub fn jvp_graph(g: &Graph, n_explicit: usize) -> Result<Graph> {
    let out = jvp_graph_unchecked(g, n_explicit)?;
    if contains_custom_linear(&out) {
        ferrax_ir::bail!(
            Transform,
            "jvp: the function calls a custom_vjp function, which has no forward-mode rule; \
             use reverse mode (grad, vjp, jacrev) or define it with custom_jvp"
        );
    }
    Ok(out)
}

/// Whether `g` or any sub-graph of its control ops holds a `custom_lin` op.
fn contains_custom_linear(g: &Graph) -> bool {
    g.insts().any(|(_, inst)| match &inst.op {
        Op::Control(ControlOp::CustomLinear { .. }) => true,
        Op::Control(c) => crate::rules::control::bodies(c)
            .iter()
            .any(|b| contains_custom_linear(b)),
        _ => false,
    })
}

/// [`jvp_graph`] without the check for `custom_vjp` calls (reverse mode linearizes through
/// it and transposes the `custom_lin` ops away).
pub(crate) fn jvp_graph_unchecked(g: &Graph, n_explicit: usize) -> Result<Graph> {
    jvp_graph_with(g, n_explicit, Finish::Full)
}

/// [`jvp_graph_unchecked`], finished as `fin` says.
pub(crate) fn jvp_graph_with(g: &Graph, n_explicit: usize, fin: Finish) -> Result<Graph> {
    check_explicit(g, n_explicit, "jvp")?;
    let n = n_explicit;
    let tys = g.param_types();
    let mut param_tys: Vec<Type> = tys[..n].to_vec();
    param_tys.extend_from_slice(&tys[..n]);
    param_tys.extend_from_slice(&tys[n..]);
    let out = timed("jvp", || {
        build_graph_sized(&param_tys, 2 * g.num_insts(), |b, ps| {
            let mut primals: Vec<Value> = ps[..n].to_vec();
            primals.extend_from_slice(&ps[2 * n..]);
            let mut tangents: Vec<Option<Value>> = ps[n..2 * n].iter().map(|&t| Some(t)).collect();
            tangents.resize(primals.len(), None);
            let (outs, touts) = jvp_into(b, g, &primals, &tangents)?;
            let mut res = outs.clone();
            for (&o, t) in outs.iter().zip(touts) {
                let ty = b.ty(o).clone();
                res.push(or_zeros(b, t, &ty)?);
            }
            Ok(res)
        })
    })?;
    fin.apply(out)
}
