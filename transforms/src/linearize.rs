//! Partial evaluation: splits the JVP graph into its primal part (everything that does not
//! depend on a tangent) and its linear part (everything that does, which the JVP rules keep
//! linear in the tangents). Primal values the linear part uses become residuals: outputs of
//! the primal graph and parameters of the linear graph. Constants are re-emitted instead.

use crate::emit::{build_graph, build_graph_sized, is_nullary, push, Finish};
use crate::jvp::{check_explicit, jvp_graph_with};
use ferrax_ir::timings::timed;
use ferrax_ir::{Builder, Graph, Result, Type, Value};
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

/// What partial evaluation knows of a JVP-like graph: which values are linear, which
/// primal values the linear part reads (the residuals, in order of first use), the indices
/// of the primal and tangent parameters, and how many equations the linear part copies
/// (the linear ones and the constants).
struct Split {
    linear: Vec<bool>,
    n_linear_insts: usize,
    residuals: Vec<Value>,
    primal_idx: Vec<usize>,
    lin_idx: Vec<usize>,
}

/// Partial evaluation's analysis of `j` (see [`split_general`] for the arguments), in one
/// forward walk that propagates linearity as [`linear_values`] does: an equation's operands
/// are classified before the equation is, so whether each is linear, a constant or a
/// residual is known when the equation is reached.
fn analyse(j: &Graph, is_lin: &[bool], k: usize) -> Result<Split> {
    let mut linear = vec![false; j.num_values()];
    for (i, &p) in j.params().iter().enumerate() {
        linear[p.index()] = is_lin[i];
    }
    let mut nullary = vec![false; j.num_values()];
    let mut residuals: Vec<Value> = Vec::new();
    let mut is_residual = vec![false; j.num_values()];
    let mut n_linear_insts = 0;
    for (_, inst) in j.insts() {
        if is_nullary(&inst.op) {
            n_linear_insts += 1;
            for r in &inst.results {
                nullary[r.index()] = true;
            }
        } else if inst.args.iter().any(|a| linear[a.index()]) {
            for r in &inst.results {
                linear[r.index()] = true;
            }
            if inst.results.is_empty() {
                continue;
            }
            n_linear_insts += 1;
            for &a in &inst.args {
                if !linear[a.index()] && !nullary[a.index()] && !is_residual[a.index()] {
                    is_residual[a.index()] = true;
                    residuals.push(a);
                }
            }
        }
    }
    if let Some(o) = j.outputs()[..k].iter().find(|o| linear[o.index()]) {
        ferrax_ir::bail!(
            Transform,
            "linearize: primal output {o} depends on a tangent; this nesting of transforms is \
             not supported"
        );
    }
    for &o in &j.outputs()[k..] {
        if !linear[o.index()] && !nullary[o.index()] && !is_residual[o.index()] {
            is_residual[o.index()] = true;
            residuals.push(o);
        }
    }
    let n_params = j.params().len();
    Ok(Split {
        linear,
        n_linear_insts,
        residuals,
        primal_idx: (0..n_params).filter(|&i| !is_lin[i]).collect(),
        lin_idx: (0..n_params).filter(|&i| is_lin[i]).collect(),
    })
}

/// Emits the primal part of `j` into `b`, its primal parameters bound to `args`; returns the
/// values of its first `k` outputs, then of the residuals.
fn emit_primal(
    b: &mut Builder,
    j: &Graph,
    s: &Split,
    k: usize,
    args: &[Value],
    prune: bool,
) -> Result<Vec<Value>> {
    // The primal equations the outputs and residuals need (a primal graph would drop the
    // others as dead code before it is inlined).
    let mut live = vec![false; j.num_values()];
    for &o in j.outputs()[..k].iter().chain(&s.residuals) {
        live[o.index()] = true;
    }
    let mut keep = vec![!prune; j.num_insts()];
    for (i, inst) in j.insts().rev().filter(|_| prune) {
        let primal = !inst.results.iter().any(|r| s.linear[r.index()]);
        if primal && inst.results.iter().any(|r| live[r.index()]) {
            keep[i.index()] = true;
            for &a in &inst.args {
                live[a.index()] = true;
            }
        }
    }
    drop(live);
    let mut map: Vec<Option<Value>> = vec![None; j.num_values()];
    for (&i, &p) in s.primal_idx.iter().zip(args) {
        map[j.params()[i].index()] = Some(p);
    }
    for (i, inst) in j.insts() {
        if !keep[i.index()] || inst.results.iter().any(|r| s.linear[r.index()]) {
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
    let outs = j.outputs()[..k].iter().chain(&s.residuals);
    Ok(outs
        .map(|&o| map[o.index()].expect("primal output"))
        .collect())
}

/// The linear part of `j` as a graph: parameters `[residuals.., tangents in order..]`,
/// outputs the outputs of `j` from `k` on.
fn linear_graph(j: &Graph, s: &Split, k: usize) -> Result<Graph> {
    let mut linear_tys: Vec<Type> = s.residuals.iter().map(|&r| j.ty(r).clone()).collect();
    linear_tys.extend(s.lin_idx.iter().map(|&i| j.ty(j.params()[i]).clone()));
    timed("partial_eval.linear", || {
        // Sized from the start: grown by doubling, the builder would copy its instructions
        // and rehash its table several times.
        build_graph_sized(&linear_tys, s.n_linear_insts, |b, ps| {
            let mut map: Vec<Option<Value>> = vec![None; j.num_values()];
            for (&r, &p) in s.residuals.iter().zip(ps) {
                map[r.index()] = Some(p);
            }
            for (k, &i) in s.lin_idx.iter().enumerate() {
                map[j.params()[i].index()] = Some(ps[s.residuals.len() + k]);
            }
            for (_, inst) in j.insts() {
                let is_linear = inst.results.iter().any(|r| s.linear[r.index()]);
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
    })
}

/// [`split_general`] with both graphs finished as `fin` says.
fn split_with(j: &Graph, is_lin: &[bool], k: usize, fin: Finish) -> Result<(Graph, Graph)> {
    let s = analyse(j, is_lin, k)?;
    let primal_tys: Vec<Type> = s
        .primal_idx
        .iter()
        .map(|&i| j.ty(j.params()[i]).clone())
        .collect();
    let primal = timed("partial_eval.primal", || {
        build_graph(&primal_tys, |b, ps| emit_primal(b, j, &s, k, ps, false))
    })?;
    let primal = fin.apply(primal)?;
    let lin = linear_graph(j, &s, k)?;
    Ok((primal, fin.apply(lin)?))
}

/// Linearizes `g` with its primal part emitted straight into `b` at `args` (the
/// `n_explicit` primals, then the captures, as the primal graph of [`linearize_graph`] would
/// take them): returns the values of `g`'s outputs followed by the residuals, and the linear
/// graph (finished lean). Emitting the primal part where it is used, instead of building it
/// as a graph and inlining that, builds every primal equation once.
pub(crate) fn linearize_into(
    b: &mut Builder,
    g: &Graph,
    n_explicit: usize,
    args: &[Value],
) -> Result<(Vec<Value>, Graph)> {
    check_explicit(g, n_explicit, "linearize")?;
    let j = jvp_graph_with(g, n_explicit, Finish::Lean)?;
    let k = g.outputs().len();
    timed("partial_eval", || {
        let is_lin: Vec<bool> = (0..j.params().len())
            .map(|i| i >= n_explicit && i < 2 * n_explicit)
            .collect();
        let s = analyse(&j, &is_lin, k)?;
        if args.len() != s.primal_idx.len() {
            ferrax_ir::bail!(
                Arity,
                "inline: the graph takes {} parameters but {} arguments were given",
                s.primal_idx.len(),
                args.len()
            );
        }
        for (&i, &a) in s.primal_idx.iter().zip(args) {
            let p = j.params()[i];
            if b.ty(a) != j.ty(p) {
                ferrax_ir::bail!(
                    DType,
                    "inline: argument of type {} bound to a parameter of type {}",
                    b.ty(a),
                    j.ty(p)
                );
            }
        }
        let po = timed("partial_eval.primal", || {
            emit_primal(b, &j, &s, k, args, true)
        })?;
        let lin = linear_graph(&j, &s, k)?;
        // The JVP graph is as large as the VJP's result: its storage serves the next builder
        // of that size (the final simplification).
        j.recycle();
        Ok((po, crate::emit::finish_lean(lin)?))
    })
}
