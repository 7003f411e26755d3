//! The Laplacian by collapsed Taylor propagation ("Collapsing Taylor mode automatic
//! differentiation", 2025).
//!
//! Along the path `x + t·e_d` the second Taylor coefficient of `f` is `½ e_dᵀ H e_d`, so the
//! Laplacian is twice the sum of the second coefficients over the `n` unit directions. Plain
//! Taylor mode would propagate `n` second-order coefficients. For every op, the second
//! coefficient is `y₂ = J·x₂ + Q(x₁)`: linear in the operand's second coefficient, plus a
//! quadratic form of the first coefficients. Summing over the directions commutes with the
//! linear part, so one *collapsed* value `Σ_d y₂` is propagated: `J·(Σ_d x₂) + Σ_d Q(x₁ᵈ)`.
//! Only the first coefficients stay batched over the directions.
//!
//! Each op's pieces come from the existing rules, without new per-op code: the batched first
//! coefficients are the op's JVP batched by the vmap rules, `J·x₂` is its JVP applied to the
//! collapsed value, and `Σ_d Q(x₁ᵈ)` is its second-order jet rule with a zero second
//! coefficient, batched over the directions and summed. This holds for control flow too.

use super::{constant_series, jet_into, Series};
use crate::batch::{BatchCtx, Batched};
use crate::emit::{add_opt, build_graph, finish, or_zeros, push, reduce_sum, scale};
use crate::jvp::jvp_into;
use crate::vmap::batch_into;
use ferrax_ir::ops::{CompareOp, LiteralOp};
use ferrax_ir::{Builder, Dims, Error, ErrorKind, Graph, Op, Result, Shape, Type, Value};

/// A graph holding one instruction: parameters of the operand types, outputs its results.
fn single(op: &Op, tys: &[Type]) -> Result<Graph> {
    build_graph(tys, |b, ps| Ok(b.push(op.clone(), ps)?.to_vec()))
}

/// The JVP of the one-instruction graph `g1` with tangents for the operands flagged in `nz`:
/// parameters `[operands.., flagged tangents..]`, outputs the tangents of the results that are
/// not symbolically zero; returns the graph and which results those are.
fn jvp_single(g1: &Graph, nz: &[bool]) -> Result<(Graph, Vec<bool>)> {
    let tys = g1.param_types();
    let mut ptys = tys.clone();
    ptys.extend(
        tys.iter()
            .zip(nz)
            .filter(|(_, &z)| z)
            .map(|(t, _)| t.clone()),
    );
    let mut out_nz = Vec::new();
    let g = build_graph(&ptys, |b, ps| {
        let n = tys.len();
        let mut it = ps[n..].iter();
        let ts: Vec<Option<Value>> = nz
            .iter()
            .map(|&z| if z { it.next().copied() } else { None })
            .collect();
        let (_, touts) = jvp_into(b, g1, &ps[..n], &ts)?;
        out_nz = touts.iter().map(Option::is_some).collect();
        Ok(touts.into_iter().flatten().collect())
    })?;
    Ok((g, out_nz))
}

/// The second Taylor coefficient of the results of `g1` when the operands flagged in `nz` have
/// the first coefficients given as parameters and every second coefficient is zero:
/// parameters `[operands.., flagged first coefficients..]`, outputs the nonzero second
/// coefficients; returns the graph and which results have one.
fn quadratic_single(g1: &Graph, nz: &[bool]) -> Result<(Graph, Vec<bool>)> {
    let tys = g1.param_types();
    let mut ptys = tys.clone();
    ptys.extend(
        tys.iter()
            .zip(nz)
            .filter(|(_, &z)| z)
            .map(|(t, _)| t.clone()),
    );
    let mut out_nz = Vec::new();
    let g = build_graph(&ptys, |b, ps| {
        let n = tys.len();
        let mut it = ps[n..].iter();
        let inputs: Vec<Series> = nz
            .iter()
            .enumerate()
            .map(|(i, &z)| {
                let mut s = constant_series(ps[i], 2);
                if z {
                    s[1] = it.next().copied();
                }
                s
            })
            .collect();
        let outs = jet_into(b, g1, &inputs, 2)?;
        out_nz = outs.iter().map(|s| s[2].is_some()).collect();
        Ok(outs.iter().filter_map(|s| s[2]).collect())
    })?;
    Ok((g, out_nz))
}

/// The graph of the Laplacian of `g` with respect to its first parameter (see the module
/// docs): parameters `[x, captures..]`, one output per output of `g`, of its type.
pub(crate) fn laplacian_graph(g: &Graph, n_explicit: usize) -> Result<Graph> {
    let tys = g.param_types();
    if n_explicit != 1
        || !tys[0].dtype.is_float()
        || g.output_types().iter().any(|t| !t.dtype.is_float())
    {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "laplacian needs a function of one float argument with float outputs, got {} \
                 explicit arguments of types {:?} and outputs {:?}",
                n_explicit,
                tys.iter().map(Type::to_string).collect::<Vec<_>>(),
                g.output_types()
                    .iter()
                    .map(Type::to_string)
                    .collect::<Vec<_>>()
            ),
        ));
    }
    let xt = tys[0].clone();
    let d = xt.size();
    let out = build_graph(&tys, |b, ps| {
        // The unit directions, stacked: an identity of type [d] ++ x's type.
        let sq = Shape::new(&[d, d]);
        let iota = |b: &mut Builder, axis| {
            push(
                b,
                Op::Literal(LiteralOp::Iota {
                    dtype: ferrax_ir::DType::I32,
                    shape: sq.clone(),
                    axis,
                }),
                &[],
            )
            .map(|r| r[0])
        };
        let (r, c) = (iota(b, 0)?, iota(b, 1)?);
        let eye = push(b, Op::Compare(CompareOp::Eq), &[r, c])?[0];
        let eye = crate::emit::convert(b, eye, xt.dtype)?;
        let mut dims: Vec<usize> = vec![d];
        dims.extend_from_slice(xt.dims());
        let eye = crate::emit::reshape(b, eye, Shape::new(&dims))?;

        let nv = g.num_values();
        let mut p: Vec<Option<Value>> = vec![None; nv];
        let mut o1: Vec<Option<Value>> = vec![None; nv];
        let mut o2: Vec<Option<Value>> = vec![None; nv];
        for (i, &q) in g.params().iter().enumerate() {
            p[q.index()] = Some(ps[i]);
        }
        o1[g.params()[0].index()] = Some(eye);
        for (_, inst) in g.insts() {
            let xs: Vec<Value> = inst
                .args
                .iter()
                .map(|a| p[a.index()].expect("verified graph"))
                .collect();
            let t1: Vec<Option<Value>> = inst.args.iter().map(|a| o1[a.index()]).collect();
            let t2: Vec<Option<Value>> = inst.args.iter().map(|a| o2[a.index()]).collect();
            let nz1: Vec<bool> = t1.iter().map(Option::is_some).collect();
            // The primal results and the linear part J·x₂ of the second coefficients.
            let (ys, lin) = jvp_into(b, &single(&inst.op, &types(b, &xs))?, &xs, &t2)?;
            for (k, &r) in inst.results.iter().enumerate() {
                p[r.index()] = Some(ys[k]);
                o2[r.index()] = lin[k];
            }
            if !nz1.iter().any(|&z| z) {
                continue;
            }
            let g1 = single(&inst.op, &types(b, &xs))?;
            let mut args: Vec<Batched> = xs.iter().map(|&x| Batched::unbatched(x)).collect();
            args.extend(t1.iter().flatten().map(|&t| Batched::at(t, 0)));
            // The first coefficients, batched over the directions.
            let (jg, jnz) = jvp_single(&g1, &nz1)?;
            let (qg, qnz) = quadratic_single(&g1, &nz1)?;
            let mut ctx = BatchCtx::new(b, d);
            let firsts = batch_into(&mut ctx, &jg, &args)?;
            let firsts: Vec<Value> = firsts
                .into_iter()
                .map(|v| ctx.move_bdim(v, 0))
                .collect::<Result<_>>()?;
            // Σ_d Q(x₁ᵈ): the second coefficients with x₂ = 0, batched, then summed.
            let quads = batch_into(&mut ctx, &qg, &args)?;
            let quads: Vec<Value> = quads
                .into_iter()
                .map(|v| ctx.move_bdim(v, 0))
                .collect::<Result<_>>()?;
            let mut fi = firsts.into_iter();
            let mut qi = quads.into_iter();
            for (k, &r) in inst.results.iter().enumerate() {
                if jnz[k] {
                    o1[r.index()] = fi.next();
                }
                if qnz[k] {
                    let q = qi.next().expect("one value per flagged result");
                    let s = reduce_sum(b, q, Dims::from_slice(&[0]))?;
                    o2[r.index()] = add_opt(b, o2[r.index()], Some(s))?;
                }
            }
        }
        let mut res = Vec::new();
        for &o in g.outputs() {
            let y = p[o.index()].expect("verified graph");
            let ty = b.ty(y).clone();
            let s = or_zeros(b, o2[o.index()], &ty)?;
            res.push(scale(b, s, 2.0)?);
        }
        Ok(res)
    })?;
    finish(out)
}

/// The types of values of the graph being built.
fn types(b: &Builder, vs: &[Value]) -> Vec<Type> {
    vs.iter().map(|&v| b.ty(v).clone()).collect()
}
