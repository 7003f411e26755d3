//! Jacobians and Hessians at graph level. `jacfwd` pushes the standard basis of the inputs
//! through the JVP, `jacrev` pulls the standard basis of the outputs back through the VJP;
//! the Jacobian of output `o` with respect to argument `a` has shape `o.shape ++ a.shape`, as
//! in JAX. Outputs are listed output-major: `J(o0, a0), J(o0, a1), .., J(o1, a0), ..`.
//!
//! The whole basis goes through the linear map as ONE batched graph: the JVP (or VJP) graph is
//! restricted to its tangent (cotangent) outputs and vmapped over the seeds, which are built
//! from `iota` comparisons (no identity-matrix constant). Should batching fail, the basis is
//! pushed with one inlined copy of the graph per basis vector instead ([`push_basis`]; CSE
//! shares the primal part between copies), so a missing batching rule costs speed, not
//! correctness.
//!
//! **Products with the basis.** A linear op applied to the identity basis is the op's own
//! matrix: `dot_general(W, I)` is `W`, `dot_general(diag(d), W)` is `d ⊙ W`. [`basis_dots`]
//! rewrites such products (the identity being `eq(iota, iota)` seen through `convert` or a
//! `select` whose diagonal branch is a broadcast vector or a splat) into a transpose and an
//! elementwise product, turning an O(n³) matrix product into O(n²) work. For finite inputs the
//! result is the same number: the product adds only exact zeros (up to the sign of a zero
//! result). With a non-finite input it differs on purpose: the product would spread
//! `0 · ∞ = NaN` from one entry over its whole row, while the rewritten Jacobian keeps each
//! partial derivative `∂f_i/∂x_j` independent of the other entries (as differentiating entry by
//! entry would). This is the one rewrite ferrax applies that is not bit-exact for every input,
//! and it is applied only inside Jacobians, only to the basis the transform itself built.

use crate::emit::{
    add_const, build_graph, compare, concatenate, convert, finish, inline, producer, push, push1,
    reshape, slice, zeros,
};
use crate::grad::{argnums_first, check_argnums, restrict};
use crate::jvp::jvp_graph;
use crate::vjp::vjp_graph;
use crate::vmap::vmap_graph_sized;
use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, DotGeneral, LiteralOp, ShapeOp};
use ferrax_ir::{
    Array, Builder, DType, DataMut, Dims, Graph, InstData, Op, Result, Shape, Type, Value,
};
use smallvec::SmallVec;

/// The seeds `[total, ty.shape..]` whose row `i` is the `(i - off)`-th standard basis vector of
/// `ty` when `off <= i < off + ty.size()`, and zero otherwise.
fn basis_block(b: &mut Builder, total: usize, off: usize, ty: &Type) -> Result<Value> {
    let shape = Shape::new(&[total, ty.size()]);
    let iota = |axis| {
        Op::Literal(LiteralOp::Iota {
            dtype: DType::I32,
            shape: shape.clone(),
            axis,
        })
    };
    let rows = push1(b, iota(0), &[])?;
    let cols = push1(b, iota(1), &[])?;
    let cols = add_const(b, cols, off as f64)?;
    let hit = compare(b, CompareOp::Eq, rows, cols)?;
    let seeds = convert(b, hit, ty.dtype)?;
    let mut dims = Dims::from_slice(&[total]);
    dims.extend_from_slice(ty.dims());
    reshape(b, seeds, Shape(dims))
}

/// Elements `[off, off + n)` of `x` along `axis`.
fn take(b: &mut Builder, x: Value, axis: usize, off: usize, n: usize) -> Result<Value> {
    let ty = b.ty(x).clone();
    let start: Dims = (0..ty.rank())
        .map(|d| if d == axis { off } else { 0 })
        .collect();
    let mut limit = Dims::from_slice(ty.dims());
    limit[axis] = off + n;
    slice(b, x, start, limit, Dims::from_elem(1, ty.rank()))
}

/// Offsets of consecutive blocks of the given sizes.
fn offsets(tys: &[Type]) -> (Vec<usize>, usize) {
    let mut offs = Vec::with_capacity(tys.len());
    let mut total = 0;
    for t in tys {
        offs.push(total);
        total += t.size();
    }
    (offs, total)
}

/// Forward-mode Jacobian blocks through one vmapped JVP graph.
fn jacfwd_batched(g: &Graph, argnums: &[usize], h: &Graph, order: &[usize]) -> Result<Graph> {
    let (na, k) = (argnums.len(), g.outputs().len());
    let j = jvp_graph(h, na)?;
    let all: Vec<usize> = (0..j.params().len()).collect();
    let jt = restrict(&j, &all, &(k..2 * k).collect::<Vec<_>>())?;
    let arg_tys: Vec<Type> = argnums
        .iter()
        .map(|&a| g.ty(g.params()[a]).clone())
        .collect();
    let out_tys = g.output_types();
    let (offs, total) = offsets(&arg_tys);
    let mut in_axes = vec![None; na];
    in_axes.extend(std::iter::repeat_n(Some(0), na));
    let out_axes: Vec<usize> = out_tys.iter().map(Type::rank).collect();
    let bj = vmap_graph_sized(&jt, 2 * na, &in_axes, &out_axes, total)?;
    let out = build_graph(&g.param_types(), |b, ps| {
        let mut args: Vec<Value> = argnums.iter().map(|&a| ps[a]).collect();
        for (aty, &off) in arg_tys.iter().zip(&offs) {
            args.push(basis_block(b, total, off, aty)?);
        }
        args.extend(order[na..].iter().map(|&i| ps[i]));
        let touts = inline(b, &bj, &args)?;
        let mut outs = Vec::with_capacity(k * na);
        for (o, oty) in out_tys.iter().enumerate() {
            for (aty, &off) in arg_tys.iter().zip(&offs) {
                let blk = take(b, touts[o], oty.rank(), off, aty.size())?;
                outs.push(reshape(b, blk, block_type(oty, aty).shape)?);
            }
        }
        Ok(outs)
    })?;
    finish(basis_dots(&finish(out)?)?)
}

/// Reverse-mode Jacobian blocks through one vmapped VJP graph.
fn jacrev_batched(g: &Graph, argnums: &[usize], h: &Graph, order: &[usize]) -> Result<Graph> {
    let (na, k) = (argnums.len(), g.outputs().len());
    let v = vjp_graph(h, na)?;
    let all: Vec<usize> = (0..v.params().len()).collect();
    let vt = restrict(&v, &all, &(k..k + na).collect::<Vec<_>>())?;
    let arg_tys: Vec<Type> = argnums
        .iter()
        .map(|&a| g.ty(g.params()[a]).clone())
        .collect();
    let out_tys = g.output_types();
    let (offs, total) = offsets(&out_tys);
    let mut in_axes = vec![None; na];
    in_axes.extend(std::iter::repeat_n(Some(0), k));
    let bv = vmap_graph_sized(&vt, na + k, &in_axes, &vec![0; na], total)?;
    let out = build_graph(&g.param_types(), |b, ps| {
        let mut args: Vec<Value> = argnums.iter().map(|&a| ps[a]).collect();
        for (oty, &off) in out_tys.iter().zip(&offs) {
            args.push(basis_block(b, total, off, oty)?);
        }
        args.extend(order[na..].iter().map(|&i| ps[i]));
        let grads = inline(b, &bv, &args)?;
        let mut outs = Vec::with_capacity(k * na);
        for (oty, &off) in out_tys.iter().zip(&offs) {
            for (aty, &gr) in arg_tys.iter().zip(&grads) {
                let blk = take(b, gr, 0, off, oty.size())?;
                outs.push(reshape(b, blk, block_type(oty, aty).shape)?);
            }
        }
        Ok(outs)
    })?;
    finish(basis_dots(&finish(out)?)?)
}

fn check_outputs(g: &Graph, name: &str) -> Result<()> {
    for (k, &o) in g.outputs().iter().enumerate() {
        let ty = g.ty(o);
        if !ty.dtype.is_float() {
            ferrax_ir::bail!(
                Transform,
                "{name}: the function's output {k} has type {ty}; Jacobians need float outputs"
            );
        }
    }
    Ok(())
}

/// A one-hot constant of type `ty` with a 1 at flat position `i` (its memory reserved
/// fallibly).
fn one_hot(b: &mut Builder, ty: &Type, i: usize) -> Result<Value> {
    let mut a = Array::zeros(ty)?;
    match a.data_mut() {
        DataMut::F32(v) => v[i] = 1.0,
        DataMut::F64(v) => v[i] = 1.0,
        DataMut::I32(v) => v[i] = 1,
        DataMut::Bool(v) => v[i] = true,
    }
    Ok(b.constant(a))
}

/// Evaluates the linear map `lin` (a JVP or VJP graph inlined at fixed other arguments) at
/// every standard basis vector of the spaces with types `basis`, and returns, per basis
/// vector, the results. `lin(b, seeds)` receives one seed per basis type.
fn push_basis(
    b: &mut Builder,
    basis: &[Type],
    mut lin: impl FnMut(&mut Builder, &[Value]) -> Result<Vec<Value>>,
) -> Result<Vec<Vec<Vec<Value>>>> {
    let mut per_space = Vec::with_capacity(basis.len());
    for (s, ty) in basis.iter().enumerate() {
        let mut rows = Vec::with_capacity(ty.size());
        for i in 0..ty.size() {
            let mut seeds = Vec::with_capacity(basis.len());
            for (t, other) in basis.iter().enumerate() {
                seeds.push(if t == s {
                    one_hot(b, other, i)?
                } else {
                    zeros(b, other)?
                });
            }
            rows.push(lin(b, &seeds)?);
        }
        per_space.push(rows);
    }
    Ok(per_space)
}

/// Stacks values of type `item` along a new axis at `axis` (0 or last) and reshapes the result
/// to `out`.
fn stack(b: &mut Builder, items: &[Value], item: &Type, front: bool, out: &Type) -> Result<Value> {
    if items.is_empty() {
        return zeros(b, out);
    }
    let mut dims: Dims = Dims::from_slice(item.dims());
    let axis = if front { 0 } else { dims.len() };
    dims.insert(axis, 1);
    let mut parts = Vec::with_capacity(items.len());
    for &v in items {
        parts.push(reshape(b, v, Shape(dims.clone()))?);
    }
    let s = concatenate(b, &parts, axis)?;
    reshape(b, s, out.shape.clone())
}

/// The type `o.shape ++ a.shape` of the Jacobian block of output `o` and argument `a`.
fn block_type(o: &Type, a: &Type) -> Type {
    let mut dims: Dims = Dims::from_slice(o.dims());
    dims.extend_from_slice(a.dims());
    Type {
        dtype: o.dtype,
        shape: Shape(dims),
    }
}

/// Whether a dense Jacobian may be computed by compressed evaluation when its structural
/// pattern allows it (see [`crate::sparse::dense`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Compressed when the pattern needs at most a quarter as many products as the dense
    /// path (the default).
    #[default]
    Auto,
    /// Always one product per basis vector.
    Off,
}

/// Forward-mode Jacobians of every output of `g` with respect to the explicit arguments in
/// `argnums`; parameters are `g`'s.
pub fn jacfwd_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    jacfwd_graph_with(g, n_explicit, argnums, Compression::Auto)
}

/// Reverse-mode Jacobians of every output of `g` with respect to the explicit arguments in
/// `argnums`; parameters are `g`'s.
pub fn jacrev_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    jacrev_graph_with(g, n_explicit, argnums, Compression::Auto)
}

/// [`jacfwd_graph`] with the choice of [`Compression`].
pub fn jacfwd_graph_with(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    compression: Compression,
) -> Result<Graph> {
    jac_graph(g, n_explicit, argnums, compression, false)
}

/// [`jacrev_graph`] with the choice of [`Compression`].
pub fn jacrev_graph_with(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    compression: Compression,
) -> Result<Graph> {
    jac_graph(g, n_explicit, argnums, compression, true)
}

/// The Jacobian blocks in forward or `reverse` mode: compressed when allowed and worthwhile,
/// else through one batched graph, else one inlined copy per basis vector.
fn jac_graph(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    compression: Compression,
    reverse: bool,
) -> Result<Graph> {
    let name = if reverse { "jacrev" } else { "jacfwd" };
    check_argnums(g, n_explicit, argnums, name)?;
    check_outputs(g, name)?;
    let order = argnums_first(g, argnums);
    let h = restrict(g, &order, &(0..g.outputs().len()).collect::<Vec<_>>())?;
    if compression == Compression::Auto {
        let na = argnums.len();
        let params = g.param_types();
        if let Some(c) = crate::sparse::dense::compressed_jacobian(&h, na, &params, &order, reverse)
        {
            return Ok(c);
        }
    }
    let batched = if reverse {
        jacrev_batched(g, argnums, &h, &order)
    } else {
        jacfwd_batched(g, argnums, &h, &order)
    };
    batched.or_else(|_| jac_looped(g, argnums, &h, &order, reverse))
}

/// Jacobian blocks with one inlined copy per basis vector: of the JVP over the argument basis
/// (forward), or of the VJP over the output basis (`reverse`).
fn jac_looped(
    g: &Graph,
    argnums: &[usize],
    h: &Graph,
    order: &[usize],
    reverse: bool,
) -> Result<Graph> {
    let (na, k) = (argnums.len(), g.outputs().len());
    let lin = if reverse {
        vjp_graph(h, na)?
    } else {
        jvp_graph(h, na)?
    };
    let arg_tys: Vec<Type> = argnums
        .iter()
        .map(|&a| g.ty(g.params()[a]).clone())
        .collect();
    let out_tys = g.output_types();
    let basis_tys = if reverse { &out_tys } else { &arg_tys };
    let out = build_graph(&g.param_types(), |b, ps| {
        let prim: Vec<Value> = argnums.iter().map(|&a| ps[a]).collect();
        let rest: Vec<Value> = order[na..].iter().map(|&i| ps[i]).collect();
        // One list of results per basis vector: output tangents (forward) or argument
        // cotangents (reverse).
        let per_seed = push_basis(b, basis_tys, |b, seeds| {
            let mut args = prim.clone();
            args.extend_from_slice(seeds);
            args.extend_from_slice(&rest);
            Ok(inline(b, &lin, &args)?[k..].to_vec())
        })?;
        let mut outs = Vec::with_capacity(k * na);
        for (o, oty) in out_tys.iter().enumerate() {
            for (a, aty) in arg_tys.iter().enumerate() {
                let (items, item_ty): (Vec<Value>, &Type) = if reverse {
                    (per_seed[o].iter().map(|r| r[a]).collect(), aty)
                } else {
                    (per_seed[a].iter().map(|c| c[o]).collect(), oty)
                };
                outs.push(stack(b, &items, item_ty, reverse, &block_type(oty, aty))?);
            }
        }
        Ok(outs)
    })?;
    finish(out)
}

/// The Hessian: `jacfwd` of `jacrev`. For output `o` and arguments `a`, `c` the block has
/// shape `o.shape ++ a.shape ++ c.shape`; blocks are listed as `H(o, a, c)` with `c` fastest.
/// Structural zeros of a compressed Hessian (see [`Compression`]) are exact `+0.0` for every
/// input, where the uncompressed one may hold `-0.0` or, for non-finite inputs, NaN (`0 · ∞`);
/// its structural nonzeros are the same numbers.
pub fn hessian_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    hessian_graph_with(g, n_explicit, argnums, Compression::Auto)
}

/// [`hessian_graph`] with the choice of [`Compression`] (for both of its Jacobians).
pub fn hessian_graph_with(
    g: &Graph,
    n_explicit: usize,
    argnums: &[usize],
    compression: Compression,
) -> Result<Graph> {
    let j = jacrev_graph_with(g, n_explicit, argnums, compression)?;
    jacfwd_graph_with(&j, n_explicit, argnums, compression)
}

/// Whether `v` is `broadcast_in_dim(iota_n, [n, n], (axis))` of a 1-D `iota`.
fn is_iota_along(b: &Builder, v: Value, n: usize, axis: usize) -> bool {
    let Some(InstData {
        op: Op::Shape(ShapeOp::BroadcastInDim { shape, dims }),
        args,
        ..
    }) = producer(b, v)
    else {
        return false;
    };
    let line = matches!(
        producer(b, args[0]),
        Some(InstData { op: Op::Literal(LiteralOp::Iota { shape: s, .. }), .. }) if s.dims() == [n]
    );
    line && shape.dims() == [n, n] && dims[..] == [axis]
}

/// Whether `v` is a constant n×n identity matrix (small bases are folded into constants).
fn is_identity_literal(b: &Builder, v: Value) -> bool {
    let Some(l) = b.literal(v) else {
        return false;
    };
    let a = l.array();
    let n = a.dims()[0];
    a.rank() == 2
        && a.dims()[1] == n
        && (0..n * n).all(|k| {
            let x = a.data().get_f64(k);
            let want: f64 = if k / n == k % n { 1.0 } else { 0.0 };
            x.to_bits() == want.to_bits()
        })
}

/// When `v` is the n×n identity scaled on its diagonal, `Some(diag)`: `None` inside for a unit
/// diagonal, or a value whose broadcast along either axis gives the diagonal entries (a vector
/// `[n]` or a scalar).
fn identity_view(b: &Builder, v: Value) -> Option<Option<Value>> {
    let ty = b.ty(v);
    if ty.rank() != 2 || ty.dims()[0] != ty.dims()[1] {
        return None;
    }
    let n = ty.dims()[0];
    if is_identity_literal(b, v) {
        return Some(None);
    }
    let inst = producer(b, v)?;
    let (mask, diag) = match &inst.op {
        Op::Binary(BinaryOp::Mul) => {
            let (i, d) = (inst.args[0], inst.args[1]);
            let (i, d) = if is_identity_literal(b, i) {
                (i, d)
            } else {
                (d, i)
            };
            if !is_identity_literal(b, i) {
                return None;
            }
            return match producer(b, d) {
                Some(InstData {
                    op: Op::Shape(ShapeOp::BroadcastInDim { dims, .. }),
                    args,
                    ..
                }) if dims.len() <= 1 && b.ty(args[0]).size() <= n => Some(Some(args[0])),
                _ => None,
            };
        }
        Op::Convert(ConvertOp::Convert(_)) => (inst.args[0], None),
        Op::Compare(CompareOp::Select) => {
            let t = inst.args[1];
            let d = match producer(b, t) {
                _ if crate::emit::is_splat(b, t, 1.0) => None,
                Some(InstData {
                    op: Op::Shape(ShapeOp::BroadcastInDim { dims, .. }),
                    args,
                    ..
                }) if dims.len() <= 1 && b.ty(args[0]).size() <= n => Some(args[0]),
                _ => return None,
            };
            (inst.args[0], d)
        }
        _ => return None,
    };
    match producer(b, mask) {
        Some(InstData {
            op: Op::Compare(CompareOp::Eq),
            args,
            ..
        }) => {
            let (p, q) = (args[0], args[1]);
            let square = (is_iota_along(b, p, n, 0) && is_iota_along(b, q, n, 1))
                || (is_iota_along(b, p, n, 1) && is_iota_along(b, q, n, 0));
            square.then_some(diag)
        }
        _ => None,
    }
}

/// `dot_general(x, D)` or `dot_general(D, x)` with `D` an identity scaled on its diagonal (see
/// the module docs), as a transpose of `x` times the diagonal.
fn basis_dot(b: &mut Builder, d: &DotGeneral, args: &[Value]) -> Result<Option<Value>> {
    if !d.lhs_batch.is_empty() || d.lhs_contract.len() != 1 {
        return Ok(None);
    }
    for (side, (x, id)) in [(args[0], args[1]), (args[1], args[0])]
        .into_iter()
        .enumerate()
    {
        let Some(diag) = identity_view(b, id) else {
            continue;
        };
        let rank = b.ty(x).rank();
        let (k, id_left) = if side == 0 {
            (d.lhs_contract[0], false)
        } else {
            (d.rhs_contract[0], true)
        };
        let free: Vec<usize> = (0..rank).filter(|&a| a != k).collect();
        let perm: Dims = if id_left {
            std::iter::once(k).chain(free).collect()
        } else {
            free.into_iter().chain(std::iter::once(k)).collect()
        };
        let xt = crate::emit::transpose(b, x, perm)?;
        let Some(diag) = diag else {
            return Ok(Some(xt));
        };
        let shape = b.ty(xt).shape.clone();
        let axis = if id_left { 0 } else { rank - 1 };
        let dims: Dims = if b.ty(diag).rank() == 0 {
            Dims::new()
        } else {
            Dims::from_slice(&[axis])
        };
        let dv = crate::emit::broadcast(b, diag, shape, dims)?;
        let r = if id_left {
            crate::emit::mul(b, dv, xt)?
        } else {
            crate::emit::mul(b, xt, dv)?
        };
        return Ok(Some(r));
    }
    Ok(None)
}

/// Rewrites every product of a Jacobian with its identity basis (see the module docs).
pub(crate) fn basis_dots(g: &Graph) -> Result<Graph> {
    let mut b = Builder::new();
    let params: Vec<Value> = g
        .params()
        .iter()
        .map(|&p| b.param(g.ty(p).clone()))
        .collect();
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (&p, &q) in g.params().iter().zip(&params) {
        map[p.index()] = Some(q);
    }
    for (_, inst) in g.insts() {
        let args: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("verified graph"))
            .collect();
        let rewritten = match &inst.op {
            Op::Dot(d) => basis_dot(&mut b, d, &args)?,
            _ => None,
        };
        let outs = match rewritten {
            Some(v) => SmallVec::from_slice(&[v]),
            None => push(&mut b, inst.op.clone(), &args)?,
        };
        for (&r, &o) in inst.results.iter().zip(&outs) {
            map[r.index()] = Some(o);
        }
    }
    let outs: Vec<Value> = g
        .outputs()
        .iter()
        .map(|&o| map[o.index()].expect("verified graph"))
        .collect();
    Ok(b.finish(&outs))
}

#[cfg(test)]
mod tests {
    //! The batched and the looped Jacobians agree, and batching succeeds on every op family
    //! the tests exercise (so the fallback is not silently taken).

    use super::*;
    use ferrax_ir::ops::{BinaryOp, DotGeneral, ReduceOp, ShapeOp, UnaryOp};

    fn sample() -> Graph {
        let mut b = Builder::new();
        let x = b.param(Type::new(DType::F64, &[2, 3]));
        let w = b.param(Type::new(DType::F64, &[3]));
        let c = b.param(Type::new(DType::F64, &[]));
        let t = b.push1(Op::Unary(UnaryOp::Tanh), &[x]).unwrap();
        let d = DotGeneral {
            lhs_contract: Dims::from_slice(&[1]),
            rhs_contract: Dims::from_slice(&[0]),
            ..Default::default()
        };
        let m = b.push1(Op::Dot(Box::new(d)), &[t, w]).unwrap();
        let cb = b
            .push1(
                Op::Shape(ShapeOp::BroadcastInDim {
                    shape: Shape::new(&[2]),
                    dims: Box::default(),
                }),
                &[c],
            )
            .unwrap();
        let y = b.push1(Op::Binary(BinaryOp::Mul), &[m, cb]).unwrap();
        let s = b
            .push1(
                Op::Reduce(ReduceOp::Max {
                    axes: Dims::from_slice(&[0, 1]),
                }),
                &[x],
            )
            .unwrap();
        b.finish(&[y, s])
    }

    #[test]
    fn batched_equals_looped() {
        let g = sample();
        let argnums = [0, 1];
        let order = argnums_first(&g, &argnums);
        let h = restrict(&g, &order, &[0, 1]).unwrap();
        let args = [
            Array::from_f64([2, 3], vec![0.1, -0.4, 0.7, 1.2, -0.3, 0.5]).unwrap(),
            Array::from(vec![0.3, -1.1, 0.8]),
            Array::from(1.7),
        ];
        type Jac = fn(&Graph, &[usize], &Graph, &[usize]) -> Result<Graph>;
        let pairs: [(Jac, bool); 2] = [(jacfwd_batched, false), (jacrev_batched, true)];
        for (batched, reverse) in pairs {
            let a = batched(&g, &argnums, &h, &order).unwrap();
            let l = jac_looped(&g, &argnums, &h, &order, reverse).unwrap();
            let (ra, rl) = (
                ferrax_ir::interp::eval(&a, &args).unwrap(),
                ferrax_ir::interp::eval(&l, &args).unwrap(),
            );
            assert_eq!(ra.len(), 4);
            for (x, y) in ra.iter().zip(&rl) {
                assert_eq!(x.dims(), y.dims());
                for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
                    assert!((p - q).abs() < 1e-14, "{p} vs {q}");
                }
            }
        }
        let hess = jacrev_graph(&g, 2, &argnums).unwrap();
        let order2 = argnums_first(&hess, &argnums);
        let h2 = restrict(&hess, &order2, &(0..4).collect::<Vec<_>>()).unwrap();
        jacfwd_batched(&hess, &argnums, &h2, &order2).unwrap();
    }
}
