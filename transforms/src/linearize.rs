//! Partial evaluation: splits the JVP graph into its primal part (everything that does not
//! depend on a tangent) and its linear part (everything that does, which the JVP rules keep
//! linear in the tangents). Primal values the linear part uses become residuals: outputs of
//! the primal graph and parameters of the linear graph. Constants are re-emitted instead.

use crate::emit::{build_graph, is_nullary, push, Finish};
use crate::jvp::{check_explicit, jvp_graph_with};
use ferrax_ir::timings::timed;
use ferrax_ir::{Graph, Result, Type, Value};
use smallvec::SmallVec;

/// Which values of `g` depend on the parameters whose indices satisfy `is_linear_param`.
pub(crate) fn linear_values(g: &Graph, is_linear_param: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut linear = vec![false; g.num_values()];
    for (k, &p) in g.params().iter().enumerate() {
        linear[p.index()] = is_linear_param(k);
    }
    for (_, inst) in g.insts() {
        if inst.args.iter().any(|a| linear[a.index()]) {
            for r in &inst.results {
                linear[r.index()] = true;
            }
        }
    }
    linear
}

/// Linearizes `g` at its primals: returns the primal graph (parameters `[primals..,
/// captures..]`, outputs `[outputs.., residuals..]`) and the linear graph (parameters
/// `[residuals.., tangents..]`, outputs the output tangents).
pub fn linearize_graph(g: &Graph, n_explicit: usize) -> Result<(Graph, Graph)> {
    linearize_with(g, n_explicit, Finish::Full)
}

/// [`linearize_graph`] with every graph it builds finished as `fin` says.
pub(crate) fn linearize_with(g: &Graph, n_explicit: usize, fin: Finish) -> Result<(Graph, Graph)> {
    check_explicit(g, n_explicit, "linearize")?;
    let j = jvp_graph_with(g, n_explicit, fin)?;
    timed("partial_eval", || {
        split(&j, n_explicit, g.outputs().len(), fin)
    })
}

/// Splits the JVP graph `j` of a function with `n` explicit parameters and `k` outputs.
fn split(j: &Graph, n: usize, k: usize, fin: Finish) -> Result<(Graph, Graph)> {
    let is_lin: Vec<bool> = (0..j.params().len()).map(|i| i >= n && i < 2 * n).collect();
    split_with(j, &is_lin, k, fin)
}

/// Splits a JVP-like graph `j` whose parameters flagged in `is_lin` are tangents and whose
/// first `k` outputs are primal: returns the primal graph (parameters the non-tangent ones of
/// `j` in order, outputs `[first k outputs.., residuals..]`) and the linear graph (parameters
/// `[residuals.., tangents in order..]`, outputs the outputs of `j` from `k` on). Errors when
/// one of the first `k` outputs depends on a tangent.
pub(crate) fn split_general(j: &Graph, is_lin: &[bool], k: usize) -> Result<(Graph, Graph)> {
    split_with(j, is_lin, k, Finish::Full)
}

/// [`split_general`] with both graphs finished as `fin` says.
fn split_with(j: &Graph, is_lin: &[bool], k: usize, fin: Finish) -> Result<(Graph, Graph)> {
    let linear = linear_values(j, |i| is_lin[i]);
    if let Some(o) = j.outputs()[..k].iter().find(|o| linear[o.index()]) {
        ferrax_ir::bail!(
            Transform,
            "linearize: primal output {o} depends on a tangent; this nesting of transforms is \
             not supported"
        );
    }
    let mut nullary = vec![false; j.num_values()];
    for (_, inst) in j.insts() {
        if is_nullary(&inst.op) {
            for r in &inst.results {
                nullary[r.index()] = true;
            }
        }
    }
    let mut residuals: Vec<Value> = Vec::new();
    let mut is_residual = vec![false; j.num_values()];
    let mut need = |v: Value, residuals: &mut Vec<Value>| {
        if !linear[v.index()] && !nullary[v.index()] && !is_residual[v.index()] {
            is_residual[v.index()] = true;
            residuals.push(v);
        }
    };
    for (_, inst) in j.insts() {
        if inst.results.iter().any(|r| linear[r.index()]) {
            for &a in &inst.args {
                need(a, &mut residuals);
            }
        }
    }
    for &o in &j.outputs()[k..] {
        need(o, &mut residuals);
    }

    let tys = j.param_types();
    let primal_idx: Vec<usize> = (0..tys.len()).filter(|&i| !is_lin[i]).collect();
    let lin_idx: Vec<usize> = (0..tys.len()).filter(|&i| is_lin[i]).collect();
    let primal_tys: Vec<Type> = primal_idx.iter().map(|&i| tys[i].clone()).collect();
    let primal = timed("partial_eval.primal", || {
        build_graph(&primal_tys, |b, ps| {
            let mut map: Vec<Option<Value>> = vec![None; j.num_values()];
            for (&i, &p) in primal_idx.iter().zip(ps) {
                map[j.params()[i].index()] = Some(p);
            }
            for (_, inst) in j.insts() {
                if inst.results.iter().any(|r| linear[r.index()]) {
                    continue;
                }
                let args: SmallVec<[Value; 4]> = inst
                    .args
                    .iter()
                    .map(|&a| map[a.index()].expect("primal operand"))
                    .collect();
                for (&r, &o) in inst.results.iter().zip(&push(b, inst.op.clone(), &args)?) {
                    map[r.index()] = Some(o);
                }
            }
            let outs = j.outputs()[..k].iter().chain(&residuals);
            Ok(outs
                .map(|&o| map[o.index()].expect("primal output"))
                .collect())
        })
    })?;
    let primal = fin.apply(primal)?;

    let mut linear_tys: Vec<Type> = residuals.iter().map(|&r| j.ty(r).clone()).collect();
    linear_tys.extend(lin_idx.iter().map(|&i| tys[i].clone()));
    let lin = timed("partial_eval.linear", || {
        build_graph(&linear_tys, |b, ps| {
            let mut map: Vec<Option<Value>> = vec![None; j.num_values()];
            for (&r, &p) in residuals.iter().zip(ps) {
                map[r.index()] = Some(p);
            }
            for (k, &i) in lin_idx.iter().enumerate() {
                map[j.params()[i].index()] = Some(ps[residuals.len() + k]);
            }
            for (_, inst) in j.insts() {
                let is_linear = inst.results.iter().any(|r| linear[r.index()]);
                if !is_linear && !is_nullary(&inst.op) {
                    continue;
                }
                let args: SmallVec<[Value; 4]> = inst
                    .args
                    .iter()
                    .map(|&a| map[a.index()].expect("linear operand"))
                    .collect();
                for (&r, &o) in inst.results.iter().zip(&push(b, inst.op.clone(), &args)?) {
                    map[r.index()] = Some(o);
                }
            }
            Ok(j.outputs()[k..]
                .iter()
                .map(|&o| map[o.index()].expect("linear output"))
                .collect())
        })
    })?;
    Ok((primal, fin.apply(lin)?))
}
