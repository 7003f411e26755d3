//! Reverse mode, JAX's route: linearize (JVP + partial evaluation), then transpose the linear
//! part. The primal part runs forward once; its residuals feed the transposed linear part.

use crate::emit::{build_graph, or_zeros, Finish};
use crate::jvp::check_explicit;
use crate::linearize::linearize_into;
use crate::transpose::transpose_into;
use ferrax_ir::timings::timed;
use ferrax_ir::{Builder, Graph, Result, Type, Value};

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
    let tys = g.param_types();
    let mut param_tys: Vec<Type> = tys[..n].to_vec();
    param_tys.extend(g.output_types());
    param_tys.extend_from_slice(&tys[n..]);
    let out = build_graph(&param_tys, |b, ps| {
        let mut args: Vec<Value> = ps[..n].to_vec();
        args.extend_from_slice(&ps[n + k..]);
        let cts: Vec<Option<Value>> = ps[n..n + k].iter().map(|&c| Some(c)).collect();
        let (mut outs, cin) = vjp_into(b, g, n, &args, &cts)?;
        for (c, ty) in cin.into_iter().zip(&tys[..n]) {
            outs.push(or_zeros(b, c, ty)?);
        }
        Ok(outs)
    })?;
    let out = fin.apply(out);
    // Storage kept for reuse and not reused is not held beyond the transform.
    ferrax_ir::graph::release_spare_storage();
    out
}

/// Emits the VJP of `g` into `b`: linearizes `g` (its intermediate graphs finished lean)
/// with the primal part emitted straight into `b` at `args` (the `n_explicit` primals, then
/// the captures; only the equations the outputs and residuals need, as inlining the primal
/// graph after its dead code was dropped would give) and
/// transposes the linear part with the output cotangents `cts` (`None` for zero). Returns
/// `g`'s outputs and one cotangent per explicit parameter (`None` for zero). A caller that
/// knows its cotangents (`grad`'s unit seed) passes them as constants, so that the
/// transpose is simplified with them as it is built, and no graph of the VJP is inlined
/// again.
pub(crate) fn vjp_into(
    b: &mut Builder,
    g: &Graph,
    n_explicit: usize,
    args: &[Value],
    cts: &[Option<Value>],
) -> Result<(Vec<Value>, Vec<Option<Value>>)> {
    let k = g.outputs().len();
    let (po, lin) = linearize_into(b, g, n_explicit, args)?;
    timed("transpose", || {
        let cin = transpose_into(b, &lin, po.len() - k, &po[k..], cts)?;
        Ok((po[..k].to_vec(), cin))
    })
}
