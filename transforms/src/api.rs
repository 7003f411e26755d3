//! The user-facing transforms: each takes anything that becomes a [`Function`] (a closure of
//! tensors or another Function) and returns a new Function, so they nest to any order. A
//! Function is specialised per input types; the graph-level rewrite runs once per types and
//! is cached by the Function.

use crate::emit::{build_graph, inline};
pub use crate::jet::api::{
    derivatives, jet, laplacian, ode_series, series_to_taylor, taylor_coefficients,
    taylor_to_series,
};
use crate::{
    grad_graph, hessian_graph_with, jacfwd_graph_with, jacrev_graph_with, jvp_graph,
    linearize_graph, value_and_grad_graph, vjp_graph, Compression,
};
use ferrax_ir::error::{count_of, counted_types, type_difference};
use ferrax_ir::function::Specialized;
use ferrax_ir::ops::{Body, CallKind, ControlOp, RematPolicy};
use ferrax_ir::tracer::trace_with;
use ferrax_ir::{Array, Error, ErrorKind, Function, Graph, IntoFunction, Op, Result, Tensor, Type};
use std::cell::Cell;
use std::panic::Location;
use std::sync::Arc;

/// Argument indices to differentiate with respect to: `0`, `(0, 2)`, `[0, 1, 2]`, `vec![1]`.
pub trait Argnums {
    /// The indices, in order.
    fn argnums(&self) -> Vec<usize>;
}

impl Argnums for usize {
    fn argnums(&self) -> Vec<usize> {
        vec![*self]
    }
}

impl Argnums for (usize, usize) {
    fn argnums(&self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

impl Argnums for (usize, usize, usize) {
    fn argnums(&self) -> Vec<usize> {
        vec![self.0, self.1, self.2]
    }
}

impl Argnums for (usize, usize, usize, usize) {
    fn argnums(&self) -> Vec<usize> {
        vec![self.0, self.1, self.2, self.3]
    }
}

impl<const N: usize> Argnums for [usize; N] {
    fn argnums(&self) -> Vec<usize> {
        self.to_vec()
    }
}

impl Argnums for Vec<usize> {
    fn argnums(&self) -> Vec<usize> {
        self.clone()
    }
}

impl Argnums for &[usize] {
    fn argnums(&self) -> Vec<usize> {
        self.to_vec()
    }
}

/// Builds a derived Function whose specialisation applies `rewrite` to the base's graph with
/// the same input types; captures pass through.
fn same_inputs(
    name: &str,
    base: Function,
    rewrite: impl Fn(&Graph, usize) -> Result<Graph> + Send + Sync + 'static,
) -> Function {
    let arity = base.arity();
    let defaults = base.default_types();
    Function::derived(name, arity, defaults, move |types| {
        let s = base.specialize_untracked(types)?;
        let g = rewrite(&s.graph, s.n_explicit)?;
        Ok(Specialized {
            graph: Arc::new(g),
            n_explicit: s.n_explicit,
            captures: s.captures,
        })
    })
}

/// How a gradient-like transform is configured; shared by [`Grad`] and [`Jacobian`].
#[derive(Clone)]
struct Config {
    base: Function,
    argnums: Vec<usize>,
    has_aux: bool,
}

/// `grad(f)` or `value_and_grad(f)`: a Function (through `Deref`) with builder methods
/// [`Grad::wrt`] and [`Grad::has_aux`].
#[derive(Clone)]
pub struct Grad {
    cfg: Config,
    with_value: bool,
    func: Function,
}

impl Grad {
    fn build(cfg: Config, with_value: bool) -> Grad {
        let (argnums, has_aux) = (cfg.argnums.clone(), cfg.has_aux);
        let func = if with_value {
            same_inputs("value_and_grad", cfg.base.clone(), move |g, n| {
                value_and_grad_graph(g, n, &argnums, has_aux)
            })
        } else {
            same_inputs("grad", cfg.base.clone(), move |g, n| {
                grad_graph(g, n, &argnums, has_aux)
            })
        };
        Grad {
            cfg,
            with_value,
            func,
        }
    }

    /// Differentiates with respect to these arguments (default: argument 0). The outputs are
    /// one gradient per index, in order.
    pub fn wrt(&self, argnums: impl Argnums) -> Grad {
        let mut cfg = self.cfg.clone();
        cfg.argnums = argnums.argnums();
        Grad::build(cfg, self.with_value)
    }

    /// Treats every output after the first as auxiliary data, returned after the gradients
    /// (or after value and gradients) without being differentiated.
    pub fn has_aux(&self) -> Grad {
        let mut cfg = self.cfg.clone();
        cfg.has_aux = true;
        Grad::build(cfg, self.with_value)
    }

    /// The Function this transform stands for.
    pub fn function(&self) -> Function {
        self.func.clone()
    }
}

/// Marker for [`IntoFunction`] on transform builders.
pub struct TransformMarker;

/// Implements, for a transform handle whose field `func` holds the function it stands for,
/// `Deref` to that function and its conversion into one (by value, and by reference through a
/// clone). The facade's tree handles use it too, with their own trait and marker.
#[doc(hidden)]
#[macro_export]
macro_rules! wrapping_handle {
    ($handle:ty => $target:ty, $convert:ident::$method:ident, $marker:ty) => {
        impl ::std::ops::Deref for $handle {
            type Target = $target;
            fn deref(&self) -> &$target {
                &self.func
            }
        }

        impl $convert<$marker> for $handle {
            fn $method(self) -> $target {
                self.func
            }
        }

        impl $convert<$marker> for &$handle {
            fn $method(self) -> $target {
                self.func.clone()
            }
        }
    };
}

crate::wrapping_handle!(Grad => Function, IntoFunction::into_function, TransformMarker);

/// The gradient of a function with a scalar float output, with respect to argument 0 (see
/// [`Grad::wrt`]). Errors (non-scalar output, integer argument) surface when it is called.
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let df = grad(|x: Tensor| x.clone() * x);
/// let d: f64 = df.call(3.0).unwrap();
/// assert_eq!(d, 6.0);
/// ```
pub fn grad<M>(f: impl IntoFunction<M>) -> Grad {
    let cfg = Config {
        base: f.into_function(),
        argnums: vec![0],
        has_aux: false,
    };
    Grad::build(cfg, false)
}

/// The value and the gradient: outputs `[value, gradients.., aux..]`.
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let vg = value_and_grad(|x: Tensor| x.sin());
/// let (v, d): (f64, f64) = vg.call(0.0).unwrap();
/// assert_eq!((v, d), (0.0, 1.0));
/// ```
pub fn value_and_grad<M>(f: impl IntoFunction<M>) -> Grad {
    let cfg = Config {
        base: f.into_function(),
        argnums: vec![0],
        has_aux: false,
    };
    Grad::build(cfg, true)
}

/// Which Jacobian a [`Jacobian`] builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JacKind {
    Forward,
    Reverse,
    Hessian,
}

/// `jacfwd(f)`, `jacrev(f)` or `hessian(f)`: a Function (through `Deref`) with [`Jacobian::wrt`].
/// One output per (output, argument) pair, output-major; each has shape
/// `out.shape ++ arg.shape` (`out.shape ++ arg.shape ++ arg.shape` for Hessians).
#[derive(Clone)]
pub struct Jacobian {
    cfg: Config,
    kind: JacKind,
    compression: Compression,
    func: Function,
}

crate::wrapping_handle!(Jacobian => Function, IntoFunction::into_function, TransformMarker);

impl Jacobian {
    fn build(cfg: Config, kind: JacKind, compression: Compression) -> Jacobian {
        let argnums = cfg.argnums.clone();
        let c = compression;
        let func = match kind {
            JacKind::Forward => same_inputs("jacfwd", cfg.base.clone(), move |g, n| {
                jacfwd_graph_with(g, n, &argnums, c)
            }),
            JacKind::Reverse => same_inputs("jacrev", cfg.base.clone(), move |g, n| {
                jacrev_graph_with(g, n, &argnums, c)
            }),
            JacKind::Hessian => same_inputs("hessian", cfg.base.clone(), move |g, n| {
                hessian_graph_with(g, n, &argnums, c)
            }),
        };
        Jacobian {
            cfg,
            kind,
            compression,
            func,
        }
    }

    /// Differentiates with respect to these arguments (default: argument 0).
    pub fn wrt(&self, argnums: impl Argnums) -> Jacobian {
        let mut cfg = self.cfg.clone();
        cfg.argnums = argnums.argnums();
        Jacobian::build(cfg, self.kind, self.compression)
    }

    /// Computes the Jacobian with one product per basis vector even when its structural
    /// pattern would allow compressed evaluation (see [`Compression`]): structural zeros are
    /// then computed, not written, so a non-finite input can make them NaN.
    pub fn uncompressed(&self) -> Jacobian {
        Jacobian::build(self.cfg.clone(), self.kind, Compression::Off)
    }

    /// The Function this transform stands for.
    pub fn function(&self) -> Function {
        self.func.clone()
    }
}

/// The Jacobian by forward mode (one batched JVP over the input basis).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let j = jacfwd(|x: Tensor| x.clone() * x);
/// let d: Vec<f64> = j.call(Array::from(vec![1.0, 2.0])).unwrap();
/// assert_eq!(d, vec![2.0, 0.0, 0.0, 4.0]);
/// ```
pub fn jacfwd<M>(f: impl IntoFunction<M>) -> Jacobian {
    let cfg = Config {
        base: f.into_function(),
        argnums: vec![0],
        has_aux: false,
    };
    Jacobian::build(cfg, JacKind::Forward, Compression::Auto)
}

/// The Jacobian by reverse mode (one batched VJP over the output basis).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let j = jacrev(|x: Tensor| x.sin());
/// let d: Vec<f64> = j.call(Array::from(vec![0.0, 0.0])).unwrap();
/// assert_eq!(d, vec![1.0, 0.0, 0.0, 1.0]);
/// ```
pub fn jacrev<M>(f: impl IntoFunction<M>) -> Jacobian {
    let cfg = Config {
        base: f.into_function(),
        argnums: vec![0],
        has_aux: false,
    };
    Jacobian::build(cfg, JacKind::Reverse, Compression::Auto)
}

/// The Hessian, `jacfwd(jacrev(f))`, of a scalar function.
///
/// When the Hessian's structural pattern compresses well (at least 16 arguments' elements
/// and a column colouring with at most a quarter as many colours, as for banded or otherwise
/// sparse Hessians), it is computed from one Hessian-vector product per colour and its values
/// are scattered into the dense result (see `sparse::dense`). Its structural nonzeros are the
/// numbers the uncompressed computation gives; its structural zeros are exact `+0.0` for
/// every input, where the uncompressed computation evaluates `0 · t` terms (NaN when an input
/// is infinite or NaN, `-0.0` for some finite ones). [`Jacobian::uncompressed`] forces the
/// uncompressed computation. The same holds for `jacfwd` (column colouring) and `jacrev`
/// (row colouring, at least 16 output elements).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let h = hessian(|x: Tensor, y: Tensor| x.clone() * x.clone() + 2.0 * x * y.clone() + y.clone() * y)
///     .wrt((0, 1));
/// let hs: Vec<f64> = h.call_arrays(&[Array::from(1.0), Array::from(2.0)]).unwrap()
///     .iter().map(|a| a.to_scalar().unwrap()).collect();
/// assert_eq!(hs, vec![2.0, 2.0, 2.0, 2.0]);
/// ```
pub fn hessian<M>(f: impl IntoFunction<M>) -> Jacobian {
    let cfg = Config {
        base: f.into_function(),
        argnums: vec![0],
        has_aux: false,
    };
    Jacobian::build(cfg, JacKind::Hessian, Compression::Auto)
}

/// Forward mode: a Function of `(primals.., tangents..)` returning `(outputs.., output
/// tangents..)`.
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let f = jvp(|x: Tensor| x.exp());
/// let (y, t): (f64, f64) = f.call((0.0, 3.0)).unwrap();
/// assert_eq!((y, t), (1.0, 3.0));
/// ```
pub fn jvp<M>(f: impl IntoFunction<M>) -> Function {
    let base = f.into_function();
    let arity = base.arity().map(|n| 2 * n);
    let defaults = base.default_types().map(|d| [d.clone(), d].concat());
    Function::derived("jvp", arity, defaults, move |types| {
        if types.len() % 2 != 0 {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "jvp takes primals and tangents in equal numbers, got {} arguments",
                    types.len()
                ),
            ));
        }
        let n = types.len() / 2;
        let (primals, tangents) = types.split_at(n);
        if primals != tangents {
            let (kind, diff) = type_difference("tangent", tangents, primals);
            return Err(Error::new(
                kind,
                format!(
                    "jvp: the tangents have types {} but the primals {}; each tangent must have \
                     its primal's type ({diff})",
                    fmt_types(tangents),
                    fmt_types(primals)
                ),
            ));
        }
        let s = base.specialize_untracked(primals)?;
        let g = jvp_graph(&s.graph, s.n_explicit)?;
        Ok(Specialized {
            graph: Arc::new(g),
            n_explicit: 2 * n,
            captures: s.captures,
        })
    })
}

/// Reverse mode: a Function of `(primals.., output cotangents..)` returning `(outputs.., input
/// cotangents..)`. The function's arity must be known (a closure of 1 to 6 tensors).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let f = vjp(|x: Tensor, y: Tensor| x * y);
/// let (z, cx, cy): (f64, f64, f64) = f.call((2.0, 3.0, 1.0)).unwrap();
/// assert_eq!((z, cx, cy), (6.0, 3.0, 2.0));
/// ```
pub fn vjp<M>(f: impl IntoFunction<M>) -> Function {
    let base = f.into_function();
    let b2 = base.clone();
    let defaults = move || {
        let d = b2.default_types()?;
        let outs = b2.specialize_untracked(&d).ok()?.output_types();
        Some([d, outs].concat())
    };
    Function::derived_lazy("vjp", None, defaults, move |types| {
        let Some(n) = base.arity() else {
            return Err(Error::new(
                ErrorKind::Arity,
                "vjp needs a function of known arity; use vjp_at for slice closures",
            ));
        };
        if types.len() < n {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "vjp takes {n} primals and the output cotangents, got {} arguments",
                    types.len()
                ),
            ));
        }
        let s = base.specialize_untracked(&types[..n])?;
        let outs = s.output_types();
        if types[n..] != outs[..] {
            let (kind, diff) = type_difference("cotangent", &types[n..], &outs);
            return Err(Error::new(
                kind,
                format!(
                    "vjp: the output cotangents have types {} but the outputs {}; each \
                     cotangent must have its output's type ({diff})",
                    fmt_types(&types[n..]),
                    fmt_types(&outs)
                ),
            ));
        }
        let g = vjp_graph(&s.graph, s.n_explicit)?;
        Ok(Specialized {
            graph: Arc::new(g),
            n_explicit: types.len(),
            captures: s.captures,
        })
    })
}

fn concrete_types(primals: &[Array]) -> Vec<Type> {
    primals.iter().map(|a| a.ty()).collect()
}

fn no_captures(s: &Specialized, what: &str) -> Result<()> {
    if s.captures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Trace,
            format!("{what}: the function closes over tracers of an enclosing trace"),
        ))
    }
}

/// Reverse mode at a point: the outputs and the pullback, a Function from output cotangents
/// to input cotangents (the forward pass is not repeated when the pullback is called).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let (outs, pullback) =
///     vjp_at(|x: Tensor, y: Tensor| x * y, &[Array::from(2.0), Array::from(3.0)]).unwrap();
/// assert_eq!(outs[0].to_scalar().unwrap(), 6.0);
/// let (cx, cy): (f64, f64) = pullback.call(1.0).unwrap();
/// assert_eq!((cx, cy), (3.0, 2.0));
/// ```
#[track_caller]
pub fn vjp_at<M>(f: impl IntoFunction<M>, primals: &[Array]) -> Result<(Vec<Array>, Function)> {
    let loc = std::panic::Location::caller();
    vjp_at_impl(f.into_function(), primals).map_err(|e| e.at(loc))
}

fn vjp_at_impl(f: Function, primals: &[Array]) -> Result<(Vec<Array>, Function)> {
    let (outs, lin) = linearize_impl(f, primals)?;
    let lin_graph = lin.graph()?;
    let n_in = primals.len();
    let n_out = outs.len();
    // The VJP of a linear map at any point is its transpose; evaluate it at zero tangents.
    let v = vjp_graph(&lin_graph, n_in)?;
    let zeros: Vec<Array> = lin_graph
        .param_types()
        .iter()
        .map(Array::zeros)
        .collect::<Result<_>>()?;
    let bound = bind_params(&v, &zeros)?;
    let pullback = select_outputs(&bound, n_out..n_out + n_in)?;
    Ok((
        outs,
        Function::from_graph(crate::passes::simplify(&pullback)),
    ))
}

/// Linearizes `f` at `primals`: the outputs and the linear map of tangents (a Function from
/// input tangents to output tangents) whose residuals are constants computed once.
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let (outs, lin) = linearize(|x: Tensor| x.sin(), &[Array::from(0.0)]).unwrap();
/// assert_eq!(outs[0].to_scalar().unwrap(), 0.0);
/// let t: f64 = lin.call(2.0).unwrap(); // cos(0) · 2
/// assert_eq!(t, 2.0);
/// ```
#[track_caller]
pub fn linearize<M>(f: impl IntoFunction<M>, primals: &[Array]) -> Result<(Vec<Array>, Function)> {
    let loc = std::panic::Location::caller();
    linearize_impl(f.into_function(), primals).map_err(|e| e.at(loc))
}

fn linearize_impl(base: Function, primals: &[Array]) -> Result<(Vec<Array>, Function)> {
    let s = base.specialize_untracked(&concrete_types(primals))?;
    no_captures(&s, "linearize")?;
    let (primal_graph, linear_graph) = linearize_graph(&s.graph, s.n_explicit)?;
    let mut vals = ferrax_ir::interp::eval(&primal_graph, primals)?;
    let n_out = s.graph.outputs().len();
    let residuals = vals.split_off(n_out);
    let lin = bind_params(&linear_graph, &residuals)?;
    Ok((vals, Function::from_graph(crate::passes::simplify(&lin))))
}

/// Copies `g` with its first `values.len()` parameters replaced by constants.
pub fn bind_params(g: &Graph, values: &[Array]) -> Result<Graph> {
    let mut b = ferrax_ir::Builder::new();
    let mut args = Vec::with_capacity(g.params().len());
    for (k, &p) in g.params().iter().enumerate() {
        args.push(match values.get(k) {
            Some(a) => {
                if &a.ty() != g.ty(p) {
                    return Err(Error::new(
                        ErrorKind::DType,
                        format!(
                            "bind_params: value {k} has type {} but the parameter {}",
                            a.ty(),
                            g.ty(p)
                        ),
                    ));
                }
                b.constant(a.clone())
            }
            None => b.param(g.ty(p).clone()),
        });
    }
    let outs = copy_body(&mut b, g, &args)?;
    Ok(b.finish(&outs))
}

/// Copies `g` keeping only the outputs in `keep`.
pub fn select_outputs(g: &Graph, keep: std::ops::Range<usize>) -> Result<Graph> {
    let mut b = ferrax_ir::Builder::new();
    let args: Vec<_> = g
        .params()
        .iter()
        .map(|&p| b.param(g.ty(p).clone()))
        .collect();
    let outs = copy_body(&mut b, g, &args)?;
    Ok(crate::passes::simplify(&b.finish(&outs[keep])))
}

/// Replays the body of `g` into `b` with `args` for its parameters; returns its outputs.
fn copy_body(
    b: &mut ferrax_ir::Builder,
    g: &Graph,
    args: &[ferrax_ir::Value],
) -> Result<Vec<ferrax_ir::Value>> {
    let mut env = vec![None; g.num_values()];
    for (&p, &a) in g.params().iter().zip(args) {
        env[p.index()] = Some(a);
    }
    for (_, inst) in g.insts() {
        let vals: Vec<_> = inst
            .args
            .iter()
            .map(|a| env[a.index()].expect("verified graph"))
            .collect();
        let res = b.push(inst.op.clone(), &vals)?;
        for (&r, v) in inst.results.iter().zip(res) {
            env[r.index()] = Some(v);
        }
    }
    Ok(g.outputs()
        .iter()
        .map(|o| env[o.index()].expect("verified graph"))
        .collect())
}

/// `vmap(f)`: `f` mapped over a batch axis of its arguments, as one batched graph (no loop). A
/// Function (through `Deref`) with [`Vmap::in_axes`] and [`Vmap::out_axes`].
#[derive(Clone)]
pub struct Vmap {
    base: Function,
    in_axes: Option<Vec<Option<usize>>>,
    out_axes: Option<Vec<usize>>,
    func: Function,
}

crate::wrapping_handle!(Vmap => Function, IntoFunction::into_function, TransformMarker);

impl Vmap {
    fn build(
        base: Function,
        in_axes: Option<Vec<Option<usize>>>,
        out_axes: Option<Vec<usize>>,
    ) -> Vmap {
        let (b, ia, oa) = (base.clone(), in_axes.clone(), out_axes.clone());
        let func = Function::derived("vmap", base.arity(), None, move |types| {
            let ia = ia.clone().unwrap_or_else(|| vec![Some(0); types.len()]);
            if ia.len() != types.len() {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "vmap: in_axes {ia:?} has length {} but the call has {}",
                        ia.len(),
                        count_of(types.len(), "argument")
                    ),
                ));
            }
            let mut member = Vec::with_capacity(types.len());
            for (i, (t, a)) in types.iter().zip(&ia).enumerate() {
                member.push(match a {
                    None => t.clone(),
                    Some(a) if let Some(m) = t.without_axis(*a) => m,
                    Some(a) => {
                        return Err(Error::new(
                            ErrorKind::Axis,
                            format!(
                                "vmap: in_axes[{i}] = {a} is out of range for argument type {t}"
                            ),
                        ))
                    }
                });
            }
            let s = b.specialize_untracked(&member)?;
            let n_out = s.graph.outputs().len();
            let oa = oa.clone().unwrap_or_else(|| vec![0; n_out]);
            let g = crate::vmap::vmap_graph(&s.graph, s.n_explicit, &ia, &oa, types)?;
            let g = crate::passes::simplify(&g);
            Ok(Specialized {
                graph: Arc::new(g),
                n_explicit: s.n_explicit,
                captures: s.captures,
            })
        });
        Vmap {
            base,
            in_axes,
            out_axes,
            func,
        }
    }

    /// The batch axis of each argument (`None`: not batched, shared by every member).
    pub fn in_axes(&self, axes: &[Option<usize>]) -> Vmap {
        Vmap::build(
            self.base.clone(),
            Some(axes.to_vec()),
            self.out_axes.clone(),
        )
    }

    /// Where each output carries the batch axis (default 0).
    pub fn out_axes(&self, axes: &[usize]) -> Vmap {
        Vmap::build(self.base.clone(), self.in_axes.clone(), Some(axes.to_vec()))
    }

    /// The Function this transform stands for.
    pub fn function(&self) -> Function {
        self.func.clone()
    }
}

/// Vectorizes `f` over axis 0 of every argument (see [`Vmap::in_axes`] and [`Vmap::out_axes`]).
///
/// ```
/// use ferrax_ir::{Array, Tensor};
/// use ferrax_transforms::api::*;
/// let per_example = vmap(grad(|x: Tensor| x.sin()));
/// let d: Vec<f64> = per_example.call(Array::from(vec![0.0, 0.0])).unwrap();
/// assert_eq!(d, vec![1.0, 1.0]);
/// ```
pub fn vmap<M>(f: impl IntoFunction<M>) -> Vmap {
    Vmap::build(f.into_function(), None, None)
}

/// The types of a graph's parameters from `from` on.
fn param_types_from(g: &Graph, from: usize) -> Vec<Type> {
    g.param_types()[from..].to_vec()
}

/// The error for a user rule of `name` whose results (`what` are `found`) are not `expected`
/// (introduced by `expected_is`), naming both lists and the first `item` that differs, at the
/// line `def` where the rule was defined.
fn rule_error(
    name: &str,
    what: &str,
    found: &[Type],
    expected_is: &str,
    expected: &[Type],
    item: &str,
    def: &'static Location<'static>,
) -> Error {
    let (kind, diff) = type_difference(item, found, expected);
    Error::new(
        kind,
        format!(
            "{name}: {what} {} but {expected_is} {} ({diff})",
            fmt_types(found),
            fmt_types(expected)
        ),
    )
    .at(def)
}

/// Types as text, for error messages: `(f64[3], f32[])`.
fn fmt_types(tys: &[Type]) -> String {
    let parts: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// A rule of [`custom_jvp`]: `(primals, tangents) -> (outputs, output tangents)`.
pub type JvpRule = dyn Fn(&[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) + Send + Sync;

/// `f` with a custom forward-mode rule: `rule(primals, tangents)` returns the outputs and
/// their tangents. The rule is traced too (it may use any tensor op) and replaces the
/// derivative of `f` in every transform: forward mode uses it directly and reverse mode
/// transposes its tangent part, so the output tangents must be linear in the tangents (sums,
/// and products with primal values). Higher derivatives differentiate the rule itself. The
/// result is a plain `call` of `f`'s graph, so it evaluates and compiles like `f`.
///
/// ```
/// use ferrax_ir::Tensor;
/// use ferrax_transforms::api::*;
/// // A ReLU whose derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0).
/// let relu = custom_jvp(|x: Tensor| x.relu(), |p, t| {
///     let x = &p[0];
///     (vec![x.relu()], vec![&t[0] * x.gt(0.0).select(1.0, 0.0)])
/// });
/// let d: f64 = grad(&relu).call(2.0).unwrap();
/// assert_eq!(d, 1.0);
/// ```
///
/// A rule that returns other counts or types than `f`'s outputs is an error when the function
/// is used, naming the line of this call.
#[track_caller]
pub fn custom_jvp<M>(
    f: impl IntoFunction<M>,
    rule: impl Fn(&[Tensor], &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) + Send + Sync + 'static,
) -> Function {
    let def = Location::caller();
    let base = f.into_function();
    let rule: Arc<JvpRule> = Arc::new(rule);
    Function::derived(
        "custom_jvp",
        base.arity(),
        base.default_types(),
        move |types| {
            let name = "custom_jvp";
            let s = base.specialize_untracked(types)?;
            let n = s.n_explicit;
            let out_tys = s.output_types();
            let mut rt = types.to_vec();
            rt.extend_from_slice(types);
            let counts = Cell::new((0, 0));
            let r = trace_with(&rt, |xs| {
                let (o, t) = rule(&xs[..n], &xs[n..]);
                counts.set((o.len(), t.len()));
                o.into_iter().chain(t).collect()
            })?;
            let (n_o, n_t) = counts.get();
            let k = out_tys.len();
            let rule_tys = r.graph.output_types();
            if (n_o, n_t) != (k, k) {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "{name}: the rule returns {} and {} {} but f has {}; the rule must \
                         return f's outputs and one tangent per output",
                        count_of(n_o, "output"),
                        count_of(n_t, "tangent"),
                        fmt_types(&rule_tys),
                        counted_types(&out_tys, "output")
                    ),
                )
                .at(def));
            }
            let (outs_found, tans_found) = rule_tys.split_at(k);
            if outs_found != out_tys {
                return Err(rule_error(
                    name,
                    "the rule's outputs are",
                    outs_found,
                    "f's outputs are",
                    &out_tys,
                    "output",
                    def,
                ));
            }
            if tans_found != out_tys {
                return Err(rule_error(
                    name,
                    "the rule's tangents are",
                    tans_found,
                    "they must have the types of f's outputs,",
                    &out_tys,
                    "tangent",
                    def,
                ));
            }
            let f_caps = param_types_from(&s.graph, n);
            let r_caps = param_types_from(&r.graph, 2 * n);
            let (nf, nr) = (f_caps.len(), r_caps.len());
            let mut p = types.to_vec();
            p.extend(f_caps);
            p.extend(r_caps);
            let body = build_graph(&p, |b, ps| inline(b, &s.graph, &ps[..n + nf]))?;
            let mut rp = p.clone();
            rp.extend_from_slice(types);
            let np = p.len();
            let rule_g = build_graph(&rp, |b, ps| {
                let mut args = ps[..n].to_vec();
                args.extend_from_slice(&ps[np..]);
                args.extend_from_slice(&ps[n + nf..n + nf + nr]);
                inline(b, &r.graph, &args)
            })?;
            let op = Op::Control(ControlOp::Call {
                body: Body::new(body),
                kind: CallKind::CustomJvp {
                    rule: Body::new(rule_g),
                    n_diff: n,
                },
            });
            let g = build_graph(&p, |b, ps| Ok(b.push(op, ps)?.to_vec()))?;
            g.verify()?;
            let mut captures = s.captures.clone();
            captures.extend(r.captures);
            Ok(Specialized {
                graph: Arc::new(g),
                n_explicit: n,
                captures,
            })
        },
    )
}

/// The forward rule of [`custom_vjp`]: `primals -> (outputs, residuals)`.
pub type VjpFwd = dyn Fn(&[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) + Send + Sync;

/// The backward rule of [`custom_vjp`]: `(residuals, output cotangents) -> input cotangents`.
pub type VjpBwd = dyn Fn(&[Tensor], &[Tensor]) -> Vec<Tensor> + Send + Sync;

/// `f` with a custom reverse-mode rule: `fwd(primals)` returns the outputs and residuals,
/// `bwd(residuals, output cotangents)` one cotangent per argument. Both are traced. Reverse
/// mode (`grad`, `vjp`, `jacrev`) uses them; forward mode of the function itself (`jvp`,
/// `jacfwd`) is an error. Higher derivatives differentiate the traced `fwd` and `bwd`, so
/// `grad(grad(f))` and `hessian(f)` (forward over reverse) work when `bwd` is
/// differentiable. `bwd` need not be linear in the cotangents (gradient clipping is fine). The result is a plain
/// `call` of `f`'s graph, so it evaluates and compiles like `f`.
///
/// ```
/// use ferrax_ir::Tensor;
/// use ferrax_transforms::api::*;
/// // log(1 + exp(x)) with a gradient that stays finite for large x.
/// let softplus = custom_vjp(
///     |x: Tensor| x.maximum(0.0) + (-x.abs()).exp().log1p(),
///     |p| (vec![p[0].maximum(0.0) + (-p[0].abs()).exp().log1p()], vec![p[0].clone()]),
///     |r, ct| vec![&ct[0] * r[0].logistic()],
/// );
/// let d: f64 = grad(&softplus).call(1000.0).unwrap();
/// assert_eq!(d, 1.0);
/// ```
///
/// Rules that return other counts or types than `f`'s outputs (for `fwd`) or arguments (for
/// `bwd`) are an error when the function is used, naming the line of this call.
#[track_caller]
pub fn custom_vjp<M>(
    f: impl IntoFunction<M>,
    fwd: impl Fn(&[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) + Send + Sync + 'static,
    bwd: impl Fn(&[Tensor], &[Tensor]) -> Vec<Tensor> + Send + Sync + 'static,
) -> Function {
    let def = Location::caller();
    let base = f.into_function();
    let fwd: Arc<VjpFwd> = Arc::new(fwd);
    let bwd: Arc<VjpBwd> = Arc::new(bwd);
    Function::derived(
        "custom_vjp",
        base.arity(),
        base.default_types(),
        move |types| {
            let name = "custom_vjp";
            let s = base.specialize_untracked(types)?;
            let n = s.n_explicit;
            let out_tys = s.output_types();
            let k = out_tys.len();
            let n_fwd_outs = Cell::new(0);
            let fw = trace_with(types, |xs| {
                let (o, r) = fwd(xs);
                n_fwd_outs.set(o.len());
                o.into_iter().chain(r).collect()
            })?;
            let fo = fw.graph.output_types();
            let n_o = n_fwd_outs.get();
            if n_o != k {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "{name}: fwd returns {} {} but f has {}; fwd must return f's outputs, \
                         then residuals",
                        count_of(n_o, "output"),
                        fmt_types(&fo[..n_o.min(fo.len())]),
                        counted_types(&out_tys, "output")
                    ),
                )
                .at(def));
            }
            if fo[..k] != out_tys[..] {
                return Err(rule_error(
                    name,
                    "fwd returns outputs",
                    &fo[..k],
                    "f's outputs are",
                    &out_tys,
                    "output",
                    def,
                ));
            }
            let res_tys = fo[k..].to_vec();
            let nres = res_tys.len();
            let mut bt = res_tys.clone();
            bt.extend(out_tys.iter().cloned());
            let bw = trace_with(&bt, |xs| bwd(&xs[..nres], &xs[nres..]))?;
            let cts = bw.graph.output_types();
            if cts.len() != types.len() {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "{name}: bwd returns {} but f takes {}; bwd must return one cotangent \
                         per argument",
                        counted_types(&cts, "cotangent"),
                        counted_types(types, "argument")
                    ),
                )
                .at(def));
            }
            if cts != types {
                return Err(rule_error(
                    name,
                    "bwd returns cotangents",
                    &cts,
                    "f's arguments are",
                    types,
                    "cotangent",
                    def,
                ));
            }
            let f_caps = param_types_from(&s.graph, n);
            let fw_caps = param_types_from(&fw.graph, n);
            let bw_caps = param_types_from(&bw.graph, nres + k);
            let (nf, nfw, nbw) = (f_caps.len(), fw_caps.len(), bw_caps.len());
            let mut p = types.to_vec();
            p.extend(f_caps);
            p.extend(fw_caps);
            p.extend(bw_caps.iter().cloned());
            let body = build_graph(&p, |b, ps| inline(b, &s.graph, &ps[..n + nf]))?;
            // fwd passes bwd's captures on as extra residuals.
            let fwd_g = build_graph(&p, |b, ps| {
                let mut args = ps[..n].to_vec();
                args.extend_from_slice(&ps[n + nf..n + nf + nfw]);
                let mut outs = inline(b, &fw.graph, &args)?;
                outs.extend_from_slice(&ps[n + nf + nfw..]);
                Ok(outs)
            })?;
            let mut bp = res_tys.clone();
            bp.extend(bw_caps);
            bp.extend(out_tys.iter().cloned());
            let bwd_g = build_graph(&bp, |b, ps| {
                let mut args = ps[..nres].to_vec();
                args.extend_from_slice(&ps[nres + nbw..]);
                args.extend_from_slice(&ps[nres..nres + nbw]);
                inline(b, &bw.graph, &args)
            })?;
            let op = Op::Control(ControlOp::Call {
                body: Body::new(body),
                kind: CallKind::CustomVjp {
                    fwd: Body::new(fwd_g),
                    bwd: Body::new(bwd_g),
                    n_diff: n,
                },
            });
            let g = build_graph(&p, |b, ps| Ok(b.push(op, ps)?.to_vec()))?;
            g.verify()?;
            let mut captures = s.captures.clone();
            captures.extend(fw.captures);
            captures.extend(bw.captures);
            Ok(Specialized {
                graph: Arc::new(g),
                n_explicit: n,
                captures,
            })
        },
    )
}

/// `f` checkpointed (rematerialized): in reverse mode its intermediates are recomputed in the
/// backward pass from its inputs instead of being stored. Same as
/// `checkpoint_with(f, RematPolicy::Nothing)`.
///
/// ```
/// use ferrax_ir::Tensor;
/// use ferrax_transforms::api::*;
/// let layer = checkpoint(|x: Tensor| x.sin().exp());
/// let d: f64 = grad(&layer).call(0.0).unwrap();
/// assert_eq!(d, 1.0);
/// ```
pub fn checkpoint<M>(f: impl IntoFunction<M>) -> Function {
    checkpoint_with(f, RematPolicy::Nothing)
}

/// `f` checkpointed with a policy: [`RematPolicy::Nothing`] saves only the inputs,
/// [`RematPolicy::DotsOnly`] also saves the results of matrix products (`dot_general`) and
/// recomputes the rest.
pub fn checkpoint_with<M>(f: impl IntoFunction<M>, policy: RematPolicy) -> Function {
    let base = f.into_function();
    Function::derived(
        "checkpoint",
        base.arity(),
        base.default_types(),
        move |types| {
            let s = base.specialize_untracked(types)?;
            let op = Op::Control(ControlOp::Call {
                body: Body::new((*s.graph).clone()),
                kind: CallKind::Checkpoint(policy),
            });
            let g = build_graph(&s.graph.param_types(), |b, ps| Ok(b.push(op, ps)?.to_vec()))?;
            Ok(Specialized {
                graph: Arc::new(g),
                n_explicit: s.n_explicit,
                captures: s.captures,
            })
        },
    )
}

/// The bytes of residuals that reverse mode keeps for `f` at the given input types: the sum of
/// the sizes of the values the primal graph of [`linearize_graph`] passes to the linear graph
/// (every intermediate the backward pass reads, including inputs it reads).
///
/// ```
/// use ferrax_ir::{function, DType, Tensor, Type};
/// use ferrax_transforms::api::*;
/// let f = |x: Tensor| x.sin().sin();
/// let t = [Type::new(DType::F64, &[100])];
/// let plain = residual_bytes(&function(f), &t).unwrap();
/// let remat = residual_bytes(&checkpoint(f), &t).unwrap();
/// assert_eq!((plain, remat), (1600, 800));
/// ```
#[track_caller]
pub fn residual_bytes(f: &Function, types: &[Type]) -> Result<usize> {
    let loc = std::panic::Location::caller();
    let s = f.specialize(types)?;
    let (primal, _) = linearize_graph(&s.graph, s.n_explicit).map_err(|e| e.at(loc))?;
    let k = s.graph.outputs().len();
    Ok(primal.output_types()[k..]
        .iter()
        .map(|t| t.size() * t.dtype.size_bytes())
        .fold(0usize, usize::saturating_add))
}
