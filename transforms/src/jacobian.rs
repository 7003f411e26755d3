//! Jacobians and Hessians at graph level. `jacfwd` pushes the standard basis of the inputs
//! through the JVP, `jacrev` pulls the standard basis of the outputs back through the VJP;
//! the Jacobian of output `o` with respect to argument `a` has shape `o.shape ++ a.shape`, as
//! in JAX. Outputs are listed output-major: `J(o0, a0), J(o0, a1), .., J(o1, a0), ..`.
//!
//! The basis is pushed by [`push_basis`], currently one inlined copy of the JVP/VJP graph per
//! basis vector (CSE shares the primal part between copies); it is the one place to swap for a
//! single `vmap`-batched graph.

use crate::emit::{build_graph, concatenate, finish, inline, reshape, zeros};
use crate::grad::{argnums_first, check_argnums, restrict};
use crate::jvp::jvp_graph;
use crate::vjp::vjp_graph;
use ferrax_ir::{Array, Builder, Dims, Graph, Result, Shape, Type, Value};

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

/// A one-hot constant of type `ty` with a 1 at flat position `i`.
fn one_hot(b: &mut Builder, ty: &Type, i: usize) -> Value {
    let mut a = Array::zeros(ty);
    let mut v = a.to_f64_vec();
    v[i] = 1.0;
    a = Array::from_f64(ty.shape.clone(), v).expect("same shape").cast(ty.dtype);
    b.constant(a)
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
                seeds.push(if t == s { one_hot(b, other, i) } else { zeros(b, other)? });
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
    Type { dtype: o.dtype, shape: Shape(dims) }
}

/// Forward-mode Jacobians of every output of `g` with respect to the explicit arguments in
/// `argnums`; parameters are `g`'s.
pub fn jacfwd_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    check_argnums(g, n_explicit, argnums, "jacfwd")?;
    check_outputs(g, "jacfwd")?;
    let (na, k) = (argnums.len(), g.outputs().len());
    let order = argnums_first(g, argnums);
    let h = restrict(g, &order, &(0..k).collect::<Vec<_>>())?;
    let j = jvp_graph(&h, na)?;
    let arg_tys: Vec<Type> = argnums.iter().map(|&a| g.ty(g.params()[a]).clone()).collect();
    let out_tys = g.output_types();
    let out = build_graph(&g.param_types(), |b, ps| {
        let prim: Vec<Value> = argnums.iter().map(|&a| ps[a]).collect();
        let rest: Vec<Value> = order[na..].iter().map(|&i| ps[i]).collect();
        let cols = push_basis(b, &arg_tys, |b, seeds| {
            let mut args = prim.clone();
            args.extend_from_slice(seeds);
            args.extend_from_slice(&rest);
            Ok(inline(b, &j, &args)?[k..].to_vec())
        })?;
        let mut outs = Vec::with_capacity(k * na);
        for (o, oty) in out_tys.iter().enumerate() {
            for (a, aty) in arg_tys.iter().enumerate() {
                let items: Vec<Value> = cols[a].iter().map(|c| c[o]).collect();
                outs.push(stack(b, &items, oty, false, &block_type(oty, aty))?);
            }
        }
        Ok(outs)
    })?;
    finish(out)
}

/// Reverse-mode Jacobians of every output of `g` with respect to the explicit arguments in
/// `argnums`; parameters are `g`'s.
pub fn jacrev_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    check_argnums(g, n_explicit, argnums, "jacrev")?;
    check_outputs(g, "jacrev")?;
    let (na, k) = (argnums.len(), g.outputs().len());
    let order = argnums_first(g, argnums);
    let h = restrict(g, &order, &(0..k).collect::<Vec<_>>())?;
    let v = vjp_graph(&h, na)?;
    let arg_tys: Vec<Type> = argnums.iter().map(|&a| g.ty(g.params()[a]).clone()).collect();
    let out_tys = g.output_types();
    let out = build_graph(&g.param_types(), |b, ps| {
        let prim: Vec<Value> = argnums.iter().map(|&a| ps[a]).collect();
        let rest: Vec<Value> = order[na..].iter().map(|&i| ps[i]).collect();
        let rows = push_basis(b, &out_tys, |b, seeds| {
            let mut args = prim.clone();
            args.extend_from_slice(seeds);
            args.extend_from_slice(&rest);
            Ok(inline(b, &v, &args)?[k..].to_vec())
        })?;
        let mut outs = Vec::with_capacity(k * na);
        for (o, oty) in out_tys.iter().enumerate() {
            for (a, aty) in arg_tys.iter().enumerate() {
                let items: Vec<Value> = rows[o].iter().map(|r| r[a]).collect();
                outs.push(stack(b, &items, aty, true, &block_type(oty, aty))?);
            }
        }
        Ok(outs)
    })?;
    finish(out)
}

/// The Hessian: `jacfwd` of `jacrev`. For output `o` and arguments `a`, `c` the block has
/// shape `o.shape ++ a.shape ++ c.shape`; blocks are listed as `H(o, a, c)` with `c` fastest.
pub fn hessian_graph(g: &Graph, n_explicit: usize, argnums: &[usize]) -> Result<Graph> {
    let j = jacrev_graph(g, n_explicit, argnums)?;
    jacfwd_graph(&j, n_explicit, argnums)
}
