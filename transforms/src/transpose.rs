//! Transposition of linear graphs: walks the linear equations backwards, accumulating
//! cotangents (symbolic zeros stay `None`) and applying each op's transpose rule.

use crate::emit::{add_opt, build_graph, finish, or_zeros, push};
use crate::linearize::linear_values;
use crate::rules::{self, Operand};
use ferrax_ir::{Builder, Graph, Op, Result, Type, Value};
use smallvec::SmallVec;

/// Emits the transpose of the linear graph `l` into `b`. Parameters `[0, n_nonlinear)` of `l`
/// are non-linear (bound to `nonlinear`); the rest are linear. `cts` holds one cotangent per
/// output of `l`. Returns one cotangent per linear parameter (`None` for zero).
pub(crate) fn transpose_into(
    b: &mut Builder,
    l: &Graph,
    n_nonlinear: usize,
    nonlinear: &[Value],
    cts: &[Option<Value>],
) -> Result<Vec<Option<Value>>> {
    let linear = linear_values(l, |i| i >= n_nonlinear);
    let mut map: Vec<Option<Value>> = vec![None; l.num_values()];
    for (&p, &v) in l.params().iter().zip(nonlinear) {
        map[p.index()] = Some(v);
    }
    for (_, inst) in l.insts() {
        if inst.results.iter().any(|r| linear[r.index()]) {
            continue;
        }
        let args: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("non-linear operand"))
            .collect();
        for (&r, &o) in inst.results.iter().zip(&push(b, inst.op.clone(), &args)?) {
            map[r.index()] = Some(o);
        }
    }
    let mut ct: Vec<Option<Value>> = vec![None; l.num_values()];
    for (&o, &c) in l.outputs().iter().zip(cts) {
        if linear[o.index()] {
            ct[o.index()] = add_opt(b, ct[o.index()], c)?;
        }
    }
    for (_, inst) in l.insts().rev() {
        if !inst.results.iter().any(|r| linear[r.index()]) {
            continue;
        }
        let cts: SmallVec<[Option<Value>; 1]> =
            inst.results.iter().map(|r| ct[r.index()].take()).collect();
        if cts.iter().all(Option::is_none) {
            continue;
        }
        let operands: SmallVec<[Operand; 4]> = inst
            .args
            .iter()
            .map(|&a| {
                if linear[a.index()] {
                    Operand::Linear(l.ty(a).clone())
                } else {
                    Operand::Primal(map[a.index()].expect("non-linear operand"))
                }
            })
            .collect();
        let arg_cts = match (&inst.op, cts[0]) {
            (Op::Control(c), _) => rules::control::transpose(b, c, &operands, &cts)?,
            (op, Some(c)) => rules::transpose(b, op, &operands, c)?,
            (op, None) => ferrax_ir::bail!(
                Transform,
                "transpose: `{}` has several results but no transpose rule for them",
                op.name()
            ),
        };
        for (&a, ac) in inst.args.iter().zip(arg_cts) {
            if linear[a.index()] && ac.is_some() {
                ct[a.index()] = add_opt(b, ct[a.index()], ac)?;
            }
        }
    }
    Ok(l.params()[n_nonlinear..]
        .iter()
        .map(|&p| ct[p.index()])
        .collect())
}

/// The transpose of a linear graph `l` whose first `n_nonlinear` parameters are non-linear:
/// parameters `[non-linear.., output cotangents..]`, outputs the cotangents of the linear
/// parameters.
pub fn transpose_graph(l: &Graph, n_nonlinear: usize) -> Result<Graph> {
    if n_nonlinear > l.params().len() {
        ferrax_ir::bail!(
            Transform,
            "transpose: the graph has {} parameters but n_nonlinear is {n_nonlinear}",
            l.params().len()
        );
    }
    let tys = l.param_types();
    let mut param_tys: Vec<Type> = tys[..n_nonlinear].to_vec();
    param_tys.extend(l.output_types());
    let out = build_graph(&param_tys, |b, ps| {
        let cts: Vec<Option<Value>> = ps[n_nonlinear..].iter().map(|&c| Some(c)).collect();
        let res = transpose_into(b, l, n_nonlinear, &ps[..n_nonlinear], &cts)?;
        res.into_iter()
            .zip(&tys[n_nonlinear..])
            .map(|(c, ty)| or_zeros(b, c, ty))
            .collect()
    })?;
    finish(out)
}
