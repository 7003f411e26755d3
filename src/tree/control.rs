//! Control flow over trees: `fori_loop`, `while_loop` and `scan` with carries, `xs` and `ys`
//! that are `Tensor` trees, and `cond` over operand and result trees; and `custom_jvp` /
//! `custom_vjp` whose rules take and return trees. Each flattens to the positional construct of
//! `ferrax_ir::control_api` or `ferrax::transforms::api` and rebuilds the trees around it.
//!
//! A body that returns a carry of another structure than its input (a missing field, a `Vec`
//! of another length) makes the enclosing trace fail with an error naming the key path; the
//! construct then returns a tree of error tensors of the expected structure.

use super::transforms::{Flat, IntoTreeFn, TreeFn};
use super::{tree_unflatten, Tree, TreeDef};
use crate::{Error, ErrorKind, Tensor};
use std::sync::{Arc, Mutex};

/// A tree of structure `def` (taken from a `C`) whose every leaf is the error tensor of `e`.
fn error_tree<C: Tree<Tensor>>(def: &TreeDef, e: &Error) -> C {
    let t = Tensor::from_error(e.clone());
    C::unflatten(def, &mut std::iter::repeat(t))
        .unwrap_or_else(|_| unreachable!("a structure taken from a `C` rebuilds a `C`"))
}

/// Rebuilds a `C` from positional results, or a tree of errors when they carry an error or do
/// not fit `def`.
fn rebuild<C: Tree<Tensor>>(what: &str, def: &TreeDef, outs: Vec<Tensor>) -> C {
    if let Some(e) = outs.iter().find_map(|t| t.error()) {
        return error_tree(def, e);
    }
    match tree_unflatten(def, outs) {
        Ok(c) => c,
        Err(e) => error_tree(def, &e.into_error(what, "result")),
    }
}

/// The leaves of a body's result, or an error tensor when its structure is not `want`.
fn body_leaves<C: Tree<Tensor>>(what: &str, root: &str, want: &TreeDef, c: C) -> Vec<Tensor> {
    match want.difference(&c.def()) {
        None => c.into_leaves(),
        Some(d) => vec![Tensor::from_error(d.into_error(what, root))],
    }
}

/// Runs `body(i, carry) -> carry` for `i` in `lower..upper` over a carry tree (see
/// [`crate::fori_loop`]).
///
/// ```
/// use ferrax::prelude::*;
/// use ferrax::tree;
/// let f = grad(|x: Tensor| {
///     let (a, b) = tree::fori_loop(0, 3, |_, (a, b): (Tensor, Tensor)| (&a * &b, b), (x.clone(), x));
///     a + b
/// });
/// let d: f64 = f.call(2.0).unwrap(); // a = x^4, b = x: 4x^3 + 1
/// assert_eq!(d, 33.0);
/// ```
#[track_caller]
pub fn fori_loop<C: Tree<Tensor>>(
    lower: i32,
    upper: i32,
    body: impl Fn(&Tensor, C) -> C,
    init: C,
) -> C {
    let def = init.def();
    let outs = crate::fori_loop(
        lower,
        upper,
        |i, xs| {
            let c = rebuild::<C>("fori_loop", &def, xs.to_vec());
            body_leaves("fori_loop: the body's carry", "carry", &def, body(i, c))
        },
        &init.into_leaves(),
    );
    rebuild("fori_loop", &def, outs)
}

/// Runs `carry = body(carry)` while `cond(&carry)` (a bool scalar) holds, over a carry tree
/// (see [`crate::while_loop`]).
#[track_caller]
pub fn while_loop<C: Tree<Tensor>>(
    cond: impl Fn(&C) -> Tensor,
    body: impl Fn(C) -> C,
    init: C,
) -> C {
    let def = init.def();
    let outs = crate::while_loop(
        |xs| cond(&rebuild::<C>("while_loop", &def, xs.to_vec())),
        |xs| {
            let c = rebuild::<C>("while_loop", &def, xs.to_vec());
            body_leaves("while_loop: the body's carry", "carry", &def, body(c))
        },
        &init.into_leaves(),
    );
    rebuild("while_loop", &def, outs)
}

/// Scans `f(carry, x) -> (carry, y)` over the leading axis of every leaf of `xs`, returning the
/// final carry and the `y` trees stacked along a new leading axis (see [`crate::scan`]).
#[track_caller]
pub fn scan<C, X, Y>(f: impl Fn(C, X) -> (C, Y), init: C, xs: X) -> (C, Y)
where
    C: Tree<Tensor>,
    X: Tree<Tensor>,
    Y: Tree<Tensor>,
{
    let (cdef, xdef) = (init.def(), xs.def());
    let ydef: Mutex<Option<TreeDef>> = Mutex::new(None);
    let (couts, youts) = crate::scan(
        |c, x| {
            let c = rebuild::<C>("scan", &cdef, c.to_vec());
            let x = rebuild::<X>("scan", &xdef, x.to_vec());
            let (c2, y) = f(c, x);
            *ydef.lock().unwrap_or_else(|e| e.into_inner()) = Some(y.def());
            (
                body_leaves("scan: the body's carry", "carry", &cdef, c2),
                y.into_leaves(),
            )
        },
        &init.into_leaves(),
        &xs.into_leaves(),
    );
    let c: C = rebuild("scan", &cdef, couts);
    let ydef = ydef.into_inner().unwrap_or_else(|e| e.into_inner());
    let y = match ydef {
        Some(d) => rebuild("scan", &d, youts),
        // The body never ran (the scan failed before tracing it, and the failure is recorded
        // in the trace): run it on error tensors, which only carry the error, to get a `Y`.
        None => {
            let e = youts
                .iter()
                .chain(&c.leaves().into_iter().cloned().collect::<Vec<_>>())
                .find_map(|t| t.error().cloned())
                .unwrap_or_else(|| Error::new(ErrorKind::Trace, "scan: the body did not run"));
            f(error_tree(&cdef, &e), error_tree(&xdef, &e)).1
        }
    };
    (c, y)
}

/// `true_fn(operands)` when the bool scalar `pred` holds, else `false_fn(operands)`; both
/// must return trees of one structure (see [`crate::cond`]).
#[track_caller]
pub fn cond<X, O>(
    pred: &Tensor,
    true_fn: impl Fn(X) -> O,
    false_fn: impl Fn(X) -> O,
    operands: X,
) -> O
where
    X: Tree<Tensor>,
    O: Tree<Tensor>,
{
    let xdef = operands.def();
    let odef: Mutex<Option<TreeDef>> = Mutex::new(None);
    let branch = |f: &dyn Fn(X) -> O, name: &str, xs: &[Tensor]| -> Vec<Tensor> {
        let x = rebuild::<X>("cond", &xdef, xs.to_vec());
        let o = f(x);
        let mut seen = odef.lock().unwrap_or_else(|e| e.into_inner());
        match &*seen {
            None => {
                *seen = Some(o.def());
                o.into_leaves()
            }
            Some(want) => body_leaves(
                &format!("cond: {name} returns another structure than the other branch"),
                "result",
                want,
                o,
            ),
        }
    };
    let outs = crate::cond(
        pred,
        |xs| branch(&true_fn, "true_fn", xs),
        |xs| branch(&false_fn, "false_fn", xs),
        &operands.into_leaves(),
    );
    let odef = odef.into_inner().unwrap_or_else(|e| e.into_inner());
    match odef {
        Some(d) => rebuild("cond", &d, outs),
        // No branch ran (the predicate was wrong, and the error is recorded in the trace): run
        // one on error tensors, which only carry the error, to get an `O`.
        None => {
            let e = outs
                .iter()
                .find_map(|t| t.error().cloned())
                .unwrap_or_else(|| Error::new(ErrorKind::Trace, "cond: no branch ran"));
            true_fn(error_tree(&xdef, &e))
        }
    }
}

/// A function of trees with a custom forward-mode rule over trees: `rule(primals, tangents)`
/// takes the arguments as one tuple tree and their tangents as another, and returns the
/// output tree and its tangent tree (see [`crate::custom_jvp`]). For a function of one
/// argument the tuples have one element: `|(x,): (Layer<Tensor>,), (t,): (Layer<Tensor>,)|`.
#[track_caller]
pub fn custom_jvp<M, A, R>(
    f: impl IntoTreeFn<M>,
    rule: impl Fn(A, A) -> (R, R) + Send + Sync + 'static,
) -> TreeFn
where
    A: Tree<Tensor>,
    R: Tree<Tensor>,
{
    let base = f.into_tree_fn();
    let rule = Arc::new(rule);
    TreeFn::new("custom_jvp", base.arity(), move |defs| {
        let flat = base.flat(defs)?;
        let adef = tuple_of(defs)?;
        check_tuple::<A>("custom_jvp: the rule's arguments", &adef)?;
        let seen: Arc<Mutex<Option<(TreeDef, TreeDef)>>> = Arc::default();
        let (r, ad, sn) = (Arc::clone(&rule), adef.clone(), Arc::clone(&seen));
        let positional = crate::custom_jvp(&flat.func, move |ps, ts| {
            let p = rebuild::<A>("custom_jvp", &ad, ps.to_vec());
            let t = rebuild::<A>("custom_jvp", &ad, ts.to_vec());
            let (o, ot) = r(p, t);
            *sn.lock().unwrap_or_else(|e| e.into_inner()) = Some((o.def(), ot.def()));
            (o.into_leaves(), ot.into_leaves())
        });
        let base_out = flat.out.clone();
        let arity = flat.func.arity();
        let func = crate::Function::derived("custom_jvp", arity, None, move |types| {
            let want = base_out(types)?;
            let s = positional.specialize_untracked(types)?;
            if let Some((o, t)) = seen.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                for (what, d) in [("outputs", o), ("tangents", t)] {
                    if let Some(e) = want.difference(&d) {
                        return Err(e.into_error(
                            &format!("custom_jvp: the rule's {what} do not have f's structure"),
                            "result",
                        ));
                    }
                }
            }
            Ok(s)
        });
        Ok(Flat::new(func, flat.out))
    })
}

/// A function of trees with a custom reverse-mode rule over trees: `fwd(primals)` takes the
/// arguments as one tuple tree and returns the output tree and any residual tree;
/// `bwd(residuals, output cotangent)` returns the arguments' cotangents as a tuple tree (see
/// [`crate::custom_vjp`]).
#[track_caller]
pub fn custom_vjp<M, A, R, S>(
    f: impl IntoTreeFn<M>,
    fwd: impl Fn(A) -> (R, S) + Send + Sync + 'static,
    bwd: impl Fn(S, R) -> A + Send + Sync + 'static,
) -> TreeFn
where
    A: Tree<Tensor>,
    R: Tree<Tensor>,
    S: Tree<Tensor>,
{
    let base = f.into_tree_fn();
    let (fwd, bwd) = (Arc::new(fwd), Arc::new(bwd));
    TreeFn::new("custom_vjp", base.arity(), move |defs| {
        let flat = base.flat(defs)?;
        let adef = tuple_of(defs)?;
        check_tuple::<A>("custom_vjp: the rules' arguments", &adef)?;
        // The structures fwd produced: its outputs and its residuals.
        let seen: Arc<Mutex<Option<(TreeDef, TreeDef)>>> = Arc::default();
        let (fw, ad, sn) = (Arc::clone(&fwd), adef.clone(), Arc::clone(&seen));
        let fwd_flat = move |ps: &[Tensor]| {
            let p = rebuild::<A>("custom_vjp", &ad, ps.to_vec());
            let (o, s) = fw(p);
            *sn.lock().unwrap_or_else(|e| e.into_inner()) = Some((o.def(), s.def()));
            (o.into_leaves(), s.into_leaves())
        };
        let (bw, ad, sn) = (Arc::clone(&bwd), adef.clone(), Arc::clone(&seen));
        let bwd_flat = move |res: &[Tensor], cts: &[Tensor]| {
            let Some((odef, sdef)) = sn.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
                let e = Error::new(ErrorKind::Trace, "custom_vjp: bwd traced before fwd");
                return vec![Tensor::from_error(e)];
            };
            let s = rebuild::<S>("custom_vjp", &sdef, res.to_vec());
            let c = rebuild::<R>("custom_vjp", &odef, cts.to_vec());
            body_leaves(
                "custom_vjp: bwd's cotangents do not have the arguments' structure",
                "cotangents",
                &ad,
                bw(s, c),
            )
        };
        let positional = crate::custom_vjp(&flat.func, fwd_flat, bwd_flat);
        let base_out = flat.out.clone();
        let arity = flat.func.arity();
        let func = crate::Function::derived("custom_vjp", arity, None, move |types| {
            let want = base_out(types)?;
            let s = positional.specialize_untracked(types)?;
            if let Some((o, _)) = seen.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                if let Some(e) = want.difference(&o) {
                    return Err(e.into_error(
                        "custom_vjp: fwd's outputs do not have f's structure",
                        "result",
                    ));
                }
            }
            Ok(s)
        });
        Ok(Flat::new(func, flat.out))
    })
}

/// The arguments' structures as one tuple (the rules' view of them).
fn tuple_of(defs: &[TreeDef]) -> crate::Result<TreeDef> {
    super::transforms::tuple_def(defs.to_vec())
}

/// Checks that the rules' argument type `A` can be rebuilt from the arguments' tuple
/// structure, before anything is traced.
fn check_tuple<A: Tree<Tensor>>(what: &str, adef: &TreeDef) -> crate::Result<()> {
    let mut placeholders = std::iter::repeat_with(|| Tensor::from(0.0));
    A::unflatten(adef, &mut placeholders)
        .map(|_| ())
        .map_err(|e| e.into_error(what, "args"))
}
