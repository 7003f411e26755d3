//! Reverse mode, JAX's route: linearize (JVP + partial evaluation), then transpose the linear
//! part. The primal part runs forward once; its residuals feed the transposed linear part.

use crate::emit::{build_graph, inline, or_zeros, Finish};
use crate::jvp::check_explicit;
use crate::linearize::linearize_with;
use crate::transpose::transpose_into;
use ferrax_ir::timings::timed;
use ferrax_ir::{Graph, Result, Type, Value};

/// The VJP of `g`: parameters `[primals.., output cotangents.., captures..]` (cotangents have
/// the outputs' types; those of integer or bool outputs are ignored), outputs `[outputs..,
/// input cotangents..]` (zeros for integer or bool primals).
pub fn vjp_graph(g: &Graph, n_explicit: usize) -> Result<Graph> {
    vjp_graph_with(g, n_explicit, Finish::Full)
}

/// [`vjp_graph`] finished as `fin` says; its intermediate graphs (the JVP, the primal and
/// linear parts) are always finished lean, since they are inlined into the result.
pub(crate) fn vjp_graph_with(g: &Graph, n_explicit: usize, fin: Finish) -> Result<Graph> {
    check_explicit(g, n_explicit, "vjp")?;
    let (n, k) = (n_explicit, g.outputs().len());
    let (primal, lin) = linearize_with(g, n, Finish::Lean)?;
    let n_res = primal.outputs().len() - k;
    let tys = g.param_types();
    let mut param_tys: Vec<Type> = tys[..n].to_vec();
    param_tys.extend(g.output_types());
    param_tys.extend_from_slice(&tys[n..]);
    let out = timed("transpose", || build_graph(&param_tys, |b, ps| {
        let mut args: Vec<Value> = ps[..n].to_vec();
        args.extend_from_slice(&ps[n + k..]);
        let po = inline(b, &primal, &args)?;
        let cts: Vec<Option<Value>> = ps[n..n + k].iter().map(|&c| Some(c)).collect();
        let cin = transpose_into(b, &lin, n_res, &po[k..], &cts)?;
        let mut outs = po[..k].to_vec();
        for (c, ty) in cin.into_iter().zip(&tys[..n]) {
            outs.push(or_zeros(b, c, ty)?);
        }
        Ok(outs)
    }))?;
    drop((primal, lin));
    fin.apply(out)
}
