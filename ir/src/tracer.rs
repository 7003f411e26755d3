//! The tracer: `Tensor` values that record every op applied to them into the innermost active
//! trace, or compute eagerly when all operands are concrete.
//!
//! Traces nest. Each active trace owns a [`Builder`]; a tensor belongs to exactly one trace.
//! When an op inside an inner trace uses a tensor of an enclosing trace, the inner trace
//! *captures* it: the tensor becomes an extra parameter of the inner graph, and the enclosing
//! tensor is remembered so the caller can pass it in (closure conversion). Transforms therefore
//! see every dependency as an explicit input and can never confuse perturbations of different
//! nesting levels.
//!
//! Operators cannot return `Result`, so an ill-typed op records its error in the trace and
//! returns an error tensor; every later op on it yields the same error, and finishing the
//! trace returns it.

use crate::array::Array;
use crate::builder::Builder;
use crate::entities::Value;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;
use crate::ops::Op;
use crate::types::Type;
use hashbrown::HashMap;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_TRACE_ID: AtomicU64 = AtomicU64::new(1);

/// One active trace: the graph under construction and what it captured from enclosing traces.
struct TraceState {
    id: u64,
    builder: Builder,
    /// The enclosing tensors captured so far, in parameter order after the explicit ones.
    captures: Vec<Tensor>,
    capture_map: HashMap<(u64, Value), Value>,
    error: Option<Error>,
}

thread_local! {
    static TRACES: RefCell<Vec<TraceState>> = const { RefCell::new(Vec::new()) };
}

/// A value seen by user code: a tracer of an active trace, a concrete array, or an error.
#[derive(Clone, Debug)]
pub struct Tensor(pub(crate) Repr);

#[derive(Clone, Debug)]
pub(crate) enum Repr {
    Traced { trace: u64, value: Value, ty: Type },
    Concrete(Arc<Array>),
    Error(Arc<Error>),
}

/// The result of tracing a function: its graph, how many parameters are the function's own,
/// and the enclosing tensors that its trailing parameters stand for.
#[derive(Clone, Debug)]
pub struct Traced {
    /// The traced graph; parameters `[0, n_explicit)` are the arguments, the rest captures.
    pub graph: Graph,
    /// The number of explicit parameters.
    pub n_explicit: usize,
    /// The tensors of enclosing traces that the trailing parameters were captured from.
    pub captures: Vec<Tensor>,
}

/// Pops the trace it guards when dropped, so a panicking closure leaves the stack consistent.
struct TraceGuard {
    id: u64,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        TRACES.with(|t| {
            let mut t = t.borrow_mut();
            if t.last().map(|s| s.id) == Some(self.id) {
                t.pop();
            }
        });
    }
}

/// Traces `f` on fresh tracers of the given types and returns the graph it built.
pub fn trace_with<F>(types: &[Type], f: F) -> Result<Traced>
where
    F: FnOnce(&[Tensor]) -> Vec<Tensor>,
{
    for (k, t) in types.iter().enumerate() {
        t.check_size(&format!("trace: argument {k}"))?;
    }
    let id = NEXT_TRACE_ID.fetch_add(1, Ordering::Relaxed);
    let mut builder = Builder::new();
    let params: Vec<Tensor> = types
        .iter()
        .map(|ty| {
            let value = builder.param(ty.clone());
            Tensor(Repr::Traced {
                trace: id,
                value,
                ty: ty.clone(),
            })
        })
        .collect();
    TRACES.with(|t| {
        t.borrow_mut().push(TraceState {
            id,
            builder,
            captures: Vec::new(),
            capture_map: HashMap::new(),
            error: None,
        })
    });
    let guard = TraceGuard { id };
    let outs = f(&params);
    // Lift the outputs into this trace while it is still active.
    let lifted: Vec<Result<Value>> = outs.iter().map(|o| with_top(|s| lift(s, o))).collect();
    let state = TRACES.with(|t| t.borrow_mut().pop()).expect("trace stack");
    std::mem::forget(guard);
    debug_assert_eq!(state.id, id);
    if let Some(e) = state.error {
        return Err(e);
    }
    let mut outputs = Vec::with_capacity(lifted.len());
    for v in lifted {
        outputs.push(v?);
    }
    Ok(Traced {
        graph: state.builder.finish(&outputs),
        n_explicit: types.len(),
        captures: state.captures,
    })
}

fn with_top<R>(f: impl FnOnce(&mut TraceState) -> R) -> R {
    TRACES.with(|t| {
        let mut t = t.borrow_mut();
        let top = t.last_mut().expect("with_top needs an active trace");
        f(top)
    })
}

/// Whether any trace is active on this thread.
pub fn is_tracing() -> bool {
    TRACES.with(|t| !t.borrow().is_empty())
}

fn trace_is_active(id: u64) -> bool {
    TRACES.with(|t| t.borrow().iter().any(|s| s.id == id))
}

/// The value of `t` inside trace `s`: constants are embedded, tensors of enclosing traces
/// captured as extra parameters.
fn lift(s: &mut TraceState, t: &Tensor) -> Result<Value> {
    match &t.0 {
        Repr::Error(e) => Err((**e).clone()),
        Repr::Concrete(a) => Ok(s.builder.constant((**a).clone())),
        Repr::Traced { trace, value, ty } => {
            if *trace == s.id {
                return Ok(*value);
            }
            if let Some(&v) = s.capture_map.get(&(*trace, *value)) {
                return Ok(v);
            }
            let v = s.builder.param(ty.clone());
            s.capture_map.insert((*trace, *value), v);
            s.captures.push(t.clone());
            Ok(v)
        }
    }
}

impl Tensor {
    /// A concrete tensor holding `a`.
    pub fn from_array(a: Array) -> Tensor {
        Tensor(Repr::Concrete(Arc::new(a)))
    }

    /// A tensor that carries an error (every op on it yields the same error).
    pub fn from_error(e: Error) -> Tensor {
        Tensor(Repr::Error(Arc::new(e)))
    }

    /// Whether this tensor is a tracer of an active or finished trace.
    pub fn is_traced(&self) -> bool {
        matches!(self.0, Repr::Traced { .. })
    }

    /// The error this tensor carries, if any.
    pub fn error(&self) -> Option<&Error> {
        match &self.0 {
            Repr::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The type (dtype and shape), or the carried error.
    pub fn try_ty(&self) -> Result<Type> {
        match &self.0 {
            Repr::Traced { ty, .. } => Ok(ty.clone()),
            Repr::Concrete(a) => Ok(a.ty()),
            Repr::Error(e) => Err((**e).clone()),
        }
    }

    /// The concrete value, or an error for tracers (whose values are not known while tracing)
    /// and error tensors.
    #[track_caller]
    pub fn to_array(&self) -> Result<Array> {
        match &self.0 {
            Repr::Concrete(a) => Ok((**a).clone()),
            Repr::Error(e) => Err((**e).clone()),
            Repr::Traced { ty, .. } => Err(Error::new(
                ErrorKind::Trace,
                format!("the value of a tracer ({ty}) is not known while tracing"),
            )
            .here()),
        }
    }

    /// The value of a one-element concrete tensor as f64.
    #[track_caller]
    pub fn to_f64(&self) -> Result<f64> {
        self.to_array()?.to_scalar()
    }
}

/// Applies `op` to `args`: eagerly when all are concrete, otherwise by recording it in the
/// innermost active trace. Errors are attached to `loc` and recorded in the trace.
pub(crate) fn apply(op: Op, args: &[&Tensor], loc: &'static Location<'static>) -> Tensor {
    for a in args {
        if let Repr::Error(_) = a.0 {
            return (*a).clone();
        }
    }
    let all_concrete = args.iter().all(|a| matches!(a.0, Repr::Concrete(_)));
    // Inside a trace, ops on constants whose result is large are recorded rather than
    // evaluated, so `x * 2.0` on a big tensor broadcasts a scalar instead of embedding a big
    // constant array.
    let large = all_concrete && is_tracing() && {
        let tys: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        op.infer(&tys)
            .map(|out| out.iter().any(|t| t.size() > crate::builder::FOLD_LIMIT))
            .unwrap_or(false)
    };
    if all_concrete && !large {
        let arrays: Vec<&Array> = args
            .iter()
            .map(|a| match &a.0 {
                Repr::Concrete(x) => &**x,
                _ => unreachable!("checked concrete"),
            })
            .collect();
        return match op.eval(&arrays) {
            Ok(mut outs) => Tensor::from_array(outs.swap_remove(0)),
            Err(e) => Tensor::from_error(e.at(loc)),
        };
    }
    for a in args {
        if let Repr::Traced { trace, ty, .. } = &a.0 {
            if !trace_is_active(*trace) {
                return Tensor::from_error(
                    Error::new(
                        ErrorKind::Trace,
                        format!(
                            "{}: a tracer ({ty}) was used after its trace ended (it escaped the \
                             traced function)",
                            op.name()
                        ),
                    )
                    .at(loc),
                );
            }
        }
    }
    with_top(|s| {
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            match lift(s, a) {
                Ok(v) => vals.push(v),
                Err(e) => return record(s, e.at(loc)),
            }
        }
        match s.builder.push1(op, &vals) {
            Ok(v) => {
                let ty = s.builder.ty(v).clone();
                Tensor(Repr::Traced {
                    trace: s.id,
                    value: v,
                    ty,
                })
            }
            Err(e) => record(s, e.at(loc)),
        }
    })
}

/// Applies an op with any number of results (control flow): eagerly when every operand is
/// concrete and no active trace would have to record a large result, otherwise by recording
/// it in the innermost trace. Errors are attached to `loc`, recorded, and returned as one
/// error tensor per expected result (`n_results`).
pub(crate) fn apply_n(
    op: Op,
    args: &[&Tensor],
    n_results: usize,
    loc: &'static Location<'static>,
) -> Vec<Tensor> {
    let fail_all = |e: Error| vec![fail(e.at(loc)); n_results.max(1)];
    if let Some(e) = args.iter().find_map(|a| a.error()) {
        return vec![Tensor::from_error(e.clone()); n_results.max(1)];
    }
    let all_concrete = args.iter().all(|a| matches!(a.0, Repr::Concrete(_)));
    if all_concrete {
        let arrays: Vec<&Array> = args
            .iter()
            .filter_map(|a| match &a.0 {
                Repr::Concrete(x) => Some(&**x),
                _ => None,
            })
            .collect();
        return match op.eval(&arrays) {
            Ok(outs) => outs.into_iter().map(Tensor::from_array).collect(),
            Err(e) => fail_all(e),
        };
    }
    for a in args {
        if let Repr::Traced { trace, ty, .. } = &a.0 {
            if !trace_is_active(*trace) {
                return fail_all(Error::new(
                    ErrorKind::Trace,
                    format!(
                        "{}: a tracer ({ty}) was used after its trace ended (it escaped the \
                         traced function)",
                        op.name()
                    ),
                ));
            }
        }
    }
    with_top(|s| {
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            match lift(s, a) {
                Ok(v) => vals.push(v),
                Err(e) => return vec![record(s, e.at(loc)); n_results.max(1)],
            }
        }
        match s.builder.push(op, &vals) {
            Ok(vs) => vs
                .into_iter()
                .map(|v| {
                    let ty = s.builder.ty(v).clone();
                    Tensor(Repr::Traced {
                        trace: s.id,
                        value: v,
                        ty,
                    })
                })
                .collect(),
            Err(e) => vec![record(s, e.at(loc)); n_results.max(1)],
        }
    })
}

/// Whether two tensors are the same tracer (same trace and value).
pub(crate) fn same_tracer(a: &Tensor, b: &Tensor) -> bool {
    match (&a.0, &b.0) {
        (
            Repr::Traced {
                trace: t1,
                value: v1,
                ..
            },
            Repr::Traced {
                trace: t2,
                value: v2,
                ..
            },
        ) => t1 == t2 && v1 == v2,
        _ => false,
    }
}

fn record(s: &mut TraceState, e: Error) -> Tensor {
    if s.error.is_none() {
        s.error = Some(e.clone());
    }
    Tensor::from_error(e)
}

/// Records an error (e.g. from a helper that validates its own arguments) in the innermost
/// trace, if any, and returns an error tensor.
pub(crate) fn fail(e: Error) -> Tensor {
    if is_tracing() {
        with_top(|s| record(s, e))
    } else {
        Tensor::from_error(e)
    }
}

/// Inlines `graph` into the innermost trace, or evaluates it when every argument is concrete.
/// `args` must match the graph's parameters (explicit ones followed by captures).
pub(crate) fn inline(
    graph: &Graph,
    args: &[Tensor],
    loc: &'static Location<'static>,
) -> Vec<Tensor> {
    if let Some(e) = args.iter().find_map(|a| a.error()) {
        return vec![Tensor::from_error(e.clone()); graph.outputs().len()];
    }
    let all_concrete = args.iter().all(|a| matches!(a.0, Repr::Concrete(_)));
    if all_concrete || !is_tracing() {
        let arrays: Result<Vec<Array>> = args.iter().map(|a| a.to_array()).collect();
        let out = arrays.and_then(|a| crate::interp::eval(graph, &a));
        return match out {
            Ok(outs) => outs.into_iter().map(Tensor::from_array).collect(),
            Err(e) => vec![fail(e.at(loc)); graph.outputs().len()],
        };
    }
    with_top(|s| {
        let mut env: Vec<Option<Value>> = vec![None; graph.num_values()];
        for (&p, a) in graph.params().iter().zip(args) {
            match lift(s, a) {
                Ok(v) => env[p.index()] = Some(v),
                Err(e) => {
                    let t = record(s, e.at(loc));
                    return vec![t; graph.outputs().len()];
                }
            }
        }
        for (_, inst) in graph.insts() {
            let vals: Vec<Value> = inst
                .args
                .iter()
                .map(|a| env[a.index()].expect("verified"))
                .collect();
            match s.builder.push(inst.op.clone(), &vals) {
                Ok(res) => {
                    for (&r, v) in inst.results.iter().zip(res) {
                        env[r.index()] = Some(v);
                    }
                }
                Err(e) => {
                    let t = record(s, e.at(loc));
                    return vec![t; graph.outputs().len()];
                }
            }
        }
        graph
            .outputs()
            .iter()
            .map(|o| {
                let v = env[o.index()].expect("verified");
                Tensor(Repr::Traced {
                    trace: s.id,
                    value: v,
                    ty: s.builder.ty(v).clone(),
                })
            })
            .collect()
    })
}
