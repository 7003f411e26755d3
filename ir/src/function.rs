//! `Function`: a traceable function — a Rust closure, a fixed graph, or the result of a
//! transform — specialised (traced) once per list of input types and cached.
//!
//! A Function can be called on concrete values (the reference interpreter runs it), applied to
//! tensors inside another trace (its graph is inlined), printed (`ir`, `to_dot`), and handed to
//! transforms, which return new Functions, so they compose to any order.

use crate::array::Array;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;
use crate::tracer::{inline, trace_with, Tensor};
use crate::types::{DType, Type};
use hashbrown::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Mutex};

/// A function specialised to input types: its graph, the number of explicit parameters, and the
/// tensors of enclosing traces that the remaining parameters capture.
#[derive(Clone, Debug)]
pub struct Specialized {
    /// The graph; parameters `[0, n_explicit)` are the function's arguments, the rest captures.
    pub graph: Arc<Graph>,
    /// The number of explicit parameters.
    pub n_explicit: usize,
    /// The captured tensors of enclosing traces (empty outside nested traces).
    pub captures: Vec<Tensor>,
}

impl Specialized {
    /// The output types.
    pub fn output_types(&self) -> Vec<Type> {
        self.graph.output_types()
    }
}

type ClosureFn = dyn Fn(&[Tensor]) -> Vec<Tensor> + Send + Sync;
type LazyTypes = dyn Fn() -> Option<Vec<Type>> + Send + Sync;

/// Default input types: known, or computed on first request (a transform whose defaults depend
/// on its base's output types must not trace user code before it is asked to).
enum Defaults {
    Known(Option<Vec<Type>>),
    Lazy(Arc<LazyTypes>, std::sync::OnceLock<Option<Vec<Type>>>),
}
type DeriveFn = dyn Fn(&[Type]) -> Result<Specialized> + Send + Sync;

enum Kind {
    Closure(Arc<ClosureFn>),
    Graph(Arc<Graph>),
    Derived(Arc<DeriveFn>),
}

struct Inner {
    name: String,
    arity: Option<usize>,
    default_types: Defaults,
    kind: Kind,
    cache: Mutex<HashMap<Vec<Type>, Specialized>>,
}

/// A traceable function; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Function({}, arity {:?})",
            self.inner.name, self.inner.arity
        )
    }
}

impl Function {
    fn make(name: &str, arity: Option<usize>, default_types: Defaults, kind: Kind) -> Function {
        Function {
            inner: Arc::new(Inner {
                name: name.to_string(),
                arity,
                default_types,
                kind,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A function from a closure over a slice of tensors (any arity). `arity`, when given, is
    /// checked at every call and used for the default types of [`Function::ir`].
    pub fn from_slice_fn<F>(arity: Option<usize>, f: F) -> Function
    where
        F: Fn(&[Tensor]) -> Vec<Tensor> + Send + Sync + 'static,
    {
        let defaults = arity.map(|n| vec![Type::scalar(DType::F64); n]);
        Function::make(
            "closure",
            arity,
            Defaults::Known(defaults),
            Kind::Closure(Arc::new(f)),
        )
    }

    /// A function that is a fixed graph (its parameter types are the only accepted ones).
    pub fn from_graph(graph: Graph) -> Function {
        let tys = graph.param_types();
        Function::make(
            "graph",
            Some(tys.len()),
            Defaults::Known(Some(tys)),
            Kind::Graph(Arc::new(graph)),
        )
    }

    /// A function defined by how it specialises to input types; transforms build their results
    /// this way. `default_types` are used by [`Function::ir`] when no types are given. `f`
    /// should specialise other functions with [`Function::specialize_untracked`], so that its
    /// errors get the line of the user's call.
    pub fn derived<F>(
        name: &str,
        arity: Option<usize>,
        default_types: Option<Vec<Type>>,
        f: F,
    ) -> Function
    where
        F: Fn(&[Type]) -> Result<Specialized> + Send + Sync + 'static,
    {
        Function::make(
            name,
            arity,
            Defaults::Known(default_types),
            Kind::Derived(Arc::new(f)),
        )
    }

    /// Like [`Function::derived`], with default input types computed on first request by
    /// `defaults` (which may trace other functions; a panic there counts as "no defaults").
    pub fn derived_lazy<F, D>(name: &str, arity: Option<usize>, defaults: D, f: F) -> Function
    where
        F: Fn(&[Type]) -> Result<Specialized> + Send + Sync + 'static,
        D: Fn() -> Option<Vec<Type>> + Send + Sync + 'static,
    {
        let lazy = Defaults::Lazy(Arc::new(defaults), std::sync::OnceLock::new());
        Function::make(name, arity, lazy, Kind::Derived(Arc::new(f)))
    }

    /// The function's name (e.g. `closure`, `grad`, `jvp`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of arguments, when fixed.
    pub fn arity(&self) -> Option<usize> {
        self.inner.arity
    }

    /// The input types used when none are given (f64 scalars for closures of known arity).
    pub fn default_types(&self) -> Option<Vec<Type>> {
        match &self.inner.default_types {
            Defaults::Known(t) => t.clone(),
            Defaults::Lazy(f, cell) => cell
                .get_or_init(|| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f()))
                        .ok()
                        .flatten()
                })
                .clone(),
        }
    }

    /// The same function with other default input types (for [`Function::ir`] and friends).
    pub fn with_default_types(&self, types: &[Type]) -> Function {
        let this = self.clone();
        Function::derived(self.name(), self.arity(), Some(types.to_vec()), move |t| {
            this.specialize_untracked(t)
        })
    }

    fn check_arity(&self, n: usize) -> Result<()> {
        if let Some(a) = self.inner.arity {
            if a != n {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "{} takes {}, got {n}",
                        self.inner.name,
                        crate::error::count_of(a, "argument")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Traces (or fetches from the cache) the graph of this function for `types`. Errors
    /// carry the caller's source line unless they already name one (a line of the traced
    /// closure).
    #[track_caller]
    pub fn specialize(&self, types: &[Type]) -> Result<Specialized> {
        let loc = Location::caller();
        self.specialize_untracked(types).map_err(|e| e.at(loc))
    }

    /// [`Function::specialize`] without attaching the caller's source line to errors: for the
    /// specialisation of a derived function (see [`Function::derived`]), which runs inside an
    /// outer `specialize` that attaches its caller's line, so that errors name the user's line
    /// rather than a line of the transform.
    pub fn specialize_untracked(&self, types: &[Type]) -> Result<Specialized> {
        self.check_arity(types.len())?;
        for (k, t) in types.iter().enumerate() {
            t.check_size(&format!("{}: argument {k}", self.inner.name))?;
        }
        if let Some(s) = self.inner.cache.lock().expect("cache lock").get(types) {
            return Ok(s.clone());
        }
        let s = match &self.inner.kind {
            Kind::Graph(g) => {
                let want = g.param_types();
                if want != types {
                    return Err(Error::new(
                        ErrorKind::DType,
                        format!(
                            "{} expects argument types {} but got {}",
                            self.inner.name,
                            crate::ops::fmt_types(&want),
                            crate::ops::fmt_types(types)
                        ),
                    ));
                }
                Specialized {
                    graph: g.clone(),
                    n_explicit: types.len(),
                    captures: Vec::new(),
                }
            }
            Kind::Closure(f) => {
                let t = crate::timings::timed("trace", || trace_with(types, |xs| f(xs)))?;
                debug_assert!(t.graph.verify().is_ok(), "traced graph verifies");
                Specialized {
                    graph: Arc::new(t.graph),
                    n_explicit: t.n_explicit,
                    captures: t.captures,
                }
            }
            Kind::Derived(f) => crate::timings::timed(&self.inner.name, || f(types))?,
        };
        // Graphs that capture tracers belong to one enclosing trace; they are not reused.
        if s.captures.is_empty() {
            self.inner
                .cache
                .lock()
                .expect("cache lock")
                .insert(types.to_vec(), s.clone());
        }
        Ok(s)
    }

    /// The graph for the default types (see [`Function::default_types`]).
    #[track_caller]
    pub fn default_specialization(&self) -> Result<Specialized> {
        let Some(tys) = self.default_types() else {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "{} has no default input types; use a *_for method with types",
                    self.name()
                ),
            )
            .here());
        };
        self.specialize(&tys)
    }

    /// The graph for the default input types.
    #[track_caller]
    pub fn graph(&self) -> Result<Arc<Graph>> {
        Ok(self.default_specialization()?.graph)
    }

    /// The jaxpr-like text of the graph for the default input types (f64 scalars for closures).
    #[track_caller]
    pub fn ir(&self) -> String {
        match self.default_specialization() {
            Ok(s) => s.graph.to_text(),
            Err(e) => format!("<error: {e}>"),
        }
    }

    /// The text of the graph specialised to `types`.
    #[track_caller]
    pub fn ir_for(&self, types: &[Type]) -> Result<String> {
        Ok(self.specialize(types)?.graph.to_text())
    }

    /// Graphviz DOT of the graph for the default input types.
    #[track_caller]
    pub fn to_dot(&self) -> String {
        match self.default_specialization() {
            Ok(s) => s.graph.to_dot(),
            Err(e) => format!("// error: {e}\ndigraph ferrax {{}}\n"),
        }
    }

    /// The number of equations of the graph for the default input types.
    #[track_caller]
    pub fn num_eqns(&self) -> Result<usize> {
        Ok(self.default_specialization()?.graph.num_insts())
    }

    /// Applies the function to tensors: inside a trace its graph is inlined; on concrete
    /// tensors it is evaluated by the interpreter.
    #[track_caller]
    pub fn apply(&self, args: &[Tensor]) -> Vec<Tensor> {
        let loc = Location::caller();
        if let Some(e) = args.iter().find_map(|a| a.error()) {
            return vec![Tensor::from_error(e.clone())];
        }
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let s = match self.specialize(&types) {
            Ok(s) => s,
            Err(e) => return vec![crate::tracer::fail(e.at(loc))],
        };
        let mut all = args.to_vec();
        all.extend(s.captures.iter().cloned());
        inline(&s.graph, &all, loc)
    }

    /// Applies a one-output function to tensors and returns its single output.
    #[track_caller]
    pub fn apply1(&self, args: &[Tensor]) -> Tensor {
        self.apply(args).swap_remove(0)
    }

    /// Calls the function on concrete arrays with the reference interpreter.
    #[track_caller]
    pub fn call_arrays(&self, args: &[Array]) -> Result<Vec<Array>> {
        self.call_arrays_at(args, None, Location::caller())
    }

    /// [`Function::call_arrays`] under the interpreter's limits `opts` (e.g. an iteration
    /// limit for `while_loop`s that might not end).
    #[track_caller]
    pub fn call_arrays_with(
        &self,
        args: &[Array],
        opts: &crate::interp::EvalOptions,
    ) -> Result<Vec<Array>> {
        self.call_arrays_at(args, Some(opts), Location::caller())
    }

    fn call_arrays_at(
        &self,
        args: &[Array],
        opts: Option<&crate::interp::EvalOptions>,
        loc: &'static Location<'static>,
    ) -> Result<Vec<Array>> {
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let s = self.specialize_untracked(&types).map_err(|e| e.at(loc))?;
        let mut captured = Vec::with_capacity(s.captures.len());
        for c in &s.captures {
            captured.push(c.to_array().map_err(|_| {
                Error::new(
                    ErrorKind::Trace,
                    format!(
                        "{} closes over a tracer of an enclosing trace; use `apply` with tensors \
                         inside that trace",
                        self.name()
                    ),
                )
                .at(loc)
            })?);
        }
        let all: Vec<&Array> = args.iter().chain(&captured).collect();
        match opts {
            Some(o) => crate::interp::eval_refs_with(&s.graph, &all, o),
            None => crate::interp::eval_refs(&s.graph, &all),
        }
        .map_err(|e| e.at(loc))
    }

    /// Calls the function on concrete values, e.g. `f.call((1.0, 2.0))` or `f.call(x_array)`,
    /// converting the outputs to `R` (an `Array`, `f64`, `Vec<f64>`, a tuple, or `Vec<Array>`).
    #[track_caller]
    pub fn call<A: IntoArgs, R: FromOutputs>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let outs = self.call_arrays(&args.into_args())?;
        R::from_outputs(outs).map_err(|e| e.at(loc))
    }
}

/// Values accepted as the argument list of [`Function::call`].
pub trait IntoArgs {
    /// The arguments as arrays.
    fn into_args(self) -> Vec<Array>;

    /// Borrowed views of the arguments, built without allocating, when every argument offers
    /// one and there are at most [`MAX_ARG_REFS`] of them; `None` otherwise (callers then
    /// use [`IntoArgs::into_args`]). A JIT's generic call uses this to reach compiled code
    /// without building intermediate arrays.
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        None
    }
}

/// The most arguments [`IntoArgs::arg_refs`] can describe.
pub const MAX_ARG_REFS: usize = 8;

/// A borrowed view of one argument: a Rust scalar (a rank-0 value of its dtype) or an array.
#[derive(Clone, Copy, Debug)]
pub enum ArgRef<'a> {
    /// An f64 scalar.
    F64(f64),
    /// An f32 scalar.
    F32(f32),
    /// An i32 scalar.
    I32(i32),
    /// A bool scalar.
    Bool(bool),
    /// An array, borrowed.
    Array(&'a Array),
}

impl ArgRef<'_> {
    /// The argument's type.
    pub fn ty(&self) -> Type {
        match self {
            ArgRef::F64(_) => Type::scalar(DType::F64),
            ArgRef::F32(_) => Type::scalar(DType::F32),
            ArgRef::I32(_) => Type::scalar(DType::I32),
            ArgRef::Bool(_) => Type::scalar(DType::Bool),
            ArgRef::Array(a) => a.ty(),
        }
    }

    /// The argument as an owned array.
    pub fn to_array(&self) -> Array {
        match self {
            ArgRef::F64(x) => Array::from(*x),
            ArgRef::F32(x) => Array::from(*x),
            ArgRef::I32(x) => Array::from(*x),
            ArgRef::Bool(x) => Array::from(*x),
            ArgRef::Array(a) => (*a).clone(),
        }
    }
}

/// Up to [`MAX_ARG_REFS`] borrowed arguments, held inline (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct ArgRefs<'a> {
    refs: [ArgRef<'a>; MAX_ARG_REFS],
    len: usize,
}

impl<'a> ArgRefs<'a> {
    /// The list of `refs`, or `None` when it holds more than [`MAX_ARG_REFS`].
    #[inline(always)]
    pub fn new<const N: usize>(refs: [ArgRef<'a>; N]) -> Option<ArgRefs<'a>> {
        if N > MAX_ARG_REFS {
            return None;
        }
        let mut out = ArgRefs {
            refs: [ArgRef::Bool(false); MAX_ARG_REFS],
            len: N,
        };
        // A copy of constant length, so that it compiles to a few moves.
        for (slot, r) in out.refs.iter_mut().zip(refs) {
            *slot = r;
        }
        Some(out)
    }

    /// Borrowed views of a slice of arrays, or `None` when it holds more than
    /// [`MAX_ARG_REFS`].
    pub fn of_arrays(arrays: &'a [Array]) -> Option<ArgRefs<'a>> {
        if arrays.len() > MAX_ARG_REFS {
            return None;
        }
        let mut out = ArgRefs {
            refs: [ArgRef::Bool(false); MAX_ARG_REFS],
            len: arrays.len(),
        };
        for (slot, a) in out.refs.iter_mut().zip(arrays) {
            *slot = ArgRef::Array(a);
        }
        Some(out)
    }

    /// The arguments, in order.
    #[inline(always)]
    pub fn as_slice(&self) -> &[ArgRef<'a>] {
        &self.refs[..self.len.min(MAX_ARG_REFS)]
    }

    /// The argument types, in order.
    pub fn types(&self) -> Vec<Type> {
        self.as_slice().iter().map(ArgRef::ty).collect()
    }

    /// The arguments as owned arrays.
    pub fn to_arrays(&self) -> Vec<Array> {
        self.as_slice().iter().map(ArgRef::to_array).collect()
    }
}

/// One argument of [`Function::call`].
pub trait IntoArg {
    /// The argument as an array.
    fn into_arg(self) -> Array;

    /// A borrowed view of the argument, when it has one without building an array.
    fn arg_ref(&self) -> Option<ArgRef<'_>> {
        None
    }
}

macro_rules! element_args {
    ($t:ty, $variant:ident) => {
        impl IntoArg for $t {
            fn into_arg(self) -> Array {
                self.into()
            }
            #[inline(always)]
            fn arg_ref(&self) -> Option<ArgRef<'_>> {
                Some(ArgRef::$variant(*self))
            }
        }
        impl IntoArg for Vec<$t> {
            fn into_arg(self) -> Array {
                self.into()
            }
        }
        impl IntoArg for &[$t] {
            fn into_arg(self) -> Array {
                self.into()
            }
        }
        impl<const N: usize> IntoArg for [$t; N] {
            fn into_arg(self) -> Array {
                self.into()
            }
        }
        impl<const N: usize, const M: usize> IntoArg for [[$t; M]; N] {
            fn into_arg(self) -> Array {
                self.into()
            }
        }
        #[cfg(feature = "ndarray")]
        impl IntoArg for ndarray::ArrayD<$t> {
            fn into_arg(self) -> Array {
                self.into()
            }
        }
    };
}
element_args!(f64, F64);
element_args!(f32, F32);
element_args!(i32, I32);
element_args!(bool, Bool);

impl IntoArg for Array {
    fn into_arg(self) -> Array {
        self
    }
    #[inline(always)]
    fn arg_ref(&self) -> Option<ArgRef<'_>> {
        Some(ArgRef::Array(self))
    }
}

impl IntoArg for &Array {
    fn into_arg(self) -> Array {
        self.clone()
    }
    #[inline(always)]
    fn arg_ref(&self) -> Option<ArgRef<'_>> {
        Some(ArgRef::Array(self))
    }
}

impl IntoArgs for Vec<Array> {
    fn into_args(self) -> Vec<Array> {
        self
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::of_arrays(self)
    }
}

impl IntoArgs for &[Array] {
    fn into_args(self) -> Vec<Array> {
        self.to_vec()
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::of_arrays(self)
    }
}

impl IntoArgs for Array {
    fn into_args(self) -> Vec<Array> {
        vec![self]
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::new([ArgRef::Array(self)])
    }
}

impl IntoArgs for &Array {
    fn into_args(self) -> Vec<Array> {
        vec![self.clone()]
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::new([ArgRef::Array(self)])
    }
}

impl IntoArgs for f64 {
    fn into_args(self) -> Vec<Array> {
        vec![Array::from(self)]
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::new([ArgRef::F64(*self)])
    }
}

impl IntoArgs for f32 {
    fn into_args(self) -> Vec<Array> {
        vec![Array::from(self)]
    }
    fn arg_refs(&self) -> Option<ArgRefs<'_>> {
        ArgRefs::new([ArgRef::F32(*self)])
    }
}

macro_rules! tuple_args {
    ($($name:ident),+) => {
        impl<$($name: IntoArg),+> IntoArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Vec<Array> {
                let ($($name,)+) = self;
                vec![$($name.into_arg()),+]
            }
            #[allow(non_snake_case)]
            #[inline(always)]
            fn arg_refs(&self) -> Option<ArgRefs<'_>> {
                let ($($name,)+) = self;
                ArgRefs::new([$($name.arg_ref()?),+])
            }
        }
    };
}
tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);

/// One scalar result of a compiled call, read without building an array.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarValue {
    /// An f64 value.
    F64(f64),
    /// An f32 value.
    F32(f32),
    /// An i32 value.
    I32(i32),
    /// A bool value.
    Bool(bool),
}

impl ScalarValue {
    /// The value as a rank-0 array.
    pub fn to_array(self) -> Array {
        match self {
            ScalarValue::F64(x) => Array::from(x),
            ScalarValue::F32(x) => Array::from(x),
            ScalarValue::I32(x) => Array::from(x),
            ScalarValue::Bool(x) => Array::from(x),
        }
    }

    /// The value widened to f64 (bools as 0 or 1), as [`Array::to_scalar`] does.
    #[inline(always)]
    pub fn to_f64(self) -> f64 {
        match self {
            ScalarValue::F64(x) => x,
            ScalarValue::F32(x) => x as f64,
            ScalarValue::I32(x) => x as f64,
            ScalarValue::Bool(x) => x as u8 as f64,
        }
    }
}

/// One output of [`Function::call`], converted from an array.
pub trait FromArray: Sized {
    /// Converts the array.
    fn from_array(a: Array) -> Result<Self>;

    /// Converts a scalar result; the same as converting it as a rank-0 array (which is what
    /// the default does), but types that can skip the array do.
    fn from_scalar(x: ScalarValue) -> Result<Self> {
        Self::from_array(x.to_array())
    }

    /// Converts one output as a compiled call gives it (see [`Output`]).
    #[inline(always)]
    fn from_output(o: Output) -> Result<Self> {
        match o {
            Output::Scalar(x) => Self::from_scalar(x),
            Output::Array(a) => Self::from_array(a),
        }
    }
}

/// One output of a compiled call as [`FromOutputs::from_mixed`] receives it: a rank-0 output
/// as the value the code wrote, any other as an array.
#[derive(Clone, Debug)]
pub enum Output {
    /// A rank-0 output.
    Scalar(ScalarValue),
    /// Any other output.
    Array(Array),
}

impl Output {
    /// The output as an array (a scalar as a rank-0 array).
    pub fn into_array(self) -> Array {
        match self {
            Output::Scalar(x) => x.to_array(),
            Output::Array(a) => a,
        }
    }
}

/// The outputs of a compiled call, in order, held inline when there are few.
pub type Outputs = smallvec::SmallVec<[Output; 4]>;

impl FromArray for Array {
    fn from_array(a: Array) -> Result<Array> {
        Ok(a)
    }
}

impl FromArray for f64 {
    /// Any one-element array converts (f32, i32 and bool values widen).
    fn from_array(a: Array) -> Result<f64> {
        a.to_scalar()
    }
    #[inline(always)]
    fn from_scalar(x: ScalarValue) -> Result<f64> {
        Ok(x.to_f64())
    }
}

impl FromArray for f32 {
    fn from_array(a: Array) -> Result<f32> {
        f32::try_from(&a)
    }
    #[inline(always)]
    fn from_scalar(x: ScalarValue) -> Result<f32> {
        match x {
            ScalarValue::F32(v) => Ok(v),
            _ => Self::from_array(x.to_array()),
        }
    }
}

impl FromArray for i32 {
    fn from_array(a: Array) -> Result<i32> {
        i32::try_from(&a)
    }
    #[inline(always)]
    fn from_scalar(x: ScalarValue) -> Result<i32> {
        match x {
            ScalarValue::I32(v) => Ok(v),
            _ => Self::from_array(x.to_array()),
        }
    }
}

impl FromArray for Vec<f64> {
    /// Elements of any dtype, widened to f64; f64 elements are moved out, not copied.
    fn from_array(a: Array) -> Result<Vec<f64>> {
        match a.into_parts().1 {
            crate::Data::F64(v) => Ok(v),
            d => Ok((0..d.len()).map(|i| d.get_f64(i)).collect()),
        }
    }
}

impl FromArray for Vec<f32> {
    fn from_array(a: Array) -> Result<Vec<f32>> {
        Vec::<f32>::try_from(a)
    }
}

/// The outputs of [`Function::call`] converted to a Rust type.
pub trait FromOutputs: Sized {
    /// Converts the outputs; the count must match.
    fn from_outputs(outs: Vec<Array>) -> Result<Self>;

    /// Converts outputs that are all scalars; the same as converting them as rank-0 arrays
    /// (which is what the default does), without building the arrays where the target
    /// types allow.
    fn from_scalars(outs: &[ScalarValue]) -> Result<Self> {
        Self::from_outputs(outs.iter().map(|x| x.to_array()).collect())
    }

    /// Converts outputs of which the rank-0 ones are given as values, taking them out of
    /// `outs` (a list the caller keeps, so that it is not moved); the same as converting them
    /// all as arrays (which is what the default does), without building the scalars' arrays
    /// or a list of arrays where the target types allow.
    fn from_mixed(outs: &mut Outputs) -> Result<Self> {
        Self::from_outputs(outs.drain(..).map(Output::into_array).collect())
    }
}

impl FromOutputs for Vec<Array> {
    fn from_outputs(outs: Vec<Array>) -> Result<Vec<Array>> {
        Ok(outs)
    }
}

fn count_error(want: usize, got: usize) -> Error {
    Error::new(
        ErrorKind::Arity,
        format!("expected {want} outputs, the function returned {got}"),
    )
}

impl<T: FromArray> FromOutputs for T {
    fn from_outputs(mut outs: Vec<Array>) -> Result<T> {
        if outs.len() != 1 {
            return Err(count_error(1, outs.len()));
        }
        T::from_array(outs.pop().expect("one output"))
    }
    #[inline(always)]
    fn from_scalars(outs: &[ScalarValue]) -> Result<T> {
        match outs {
            [x] => T::from_scalar(*x),
            _ => Err(count_error(1, outs.len())),
        }
    }
    fn from_mixed(outs: &mut Outputs) -> Result<T> {
        if outs.len() != 1 {
            return Err(count_error(1, outs.len()));
        }
        match outs.pop() {
            Some(o) => T::from_output(o),
            None => Err(count_error(1, 0)),
        }
    }
}

macro_rules! tuple_outputs {
    ($n:literal; $($name:ident),+) => {
        impl<$($name: FromArray),+> FromOutputs for ($($name,)+) {
            fn from_outputs(outs: Vec<Array>) -> Result<Self> {
                if outs.len() != $n {
                    return Err(count_error($n, outs.len()));
                }
                let mut it = outs.into_iter();
                Ok(($($name::from_array(it.next().expect("counted"))?,)+))
            }
            #[inline(always)]
            fn from_scalars(outs: &[ScalarValue]) -> Result<Self> {
                if outs.len() != $n {
                    return Err(count_error($n, outs.len()));
                }
                let mut it = outs.iter();
                Ok(($($name::from_scalar(*it.next().expect("counted"))?,)+))
            }
            fn from_mixed(outs: &mut Outputs) -> Result<Self> {
                if outs.len() != $n {
                    return Err(count_error($n, outs.len()));
                }
                let mut it = outs.drain(..);
                Ok(($($name::from_output(it.next().expect("counted"))?,)+))
            }
        }
    };
}
tuple_outputs!(2; A, B);
tuple_outputs!(3; A, B, C);
tuple_outputs!(4; A, B, C, D);
tuple_outputs!(5; A, B, C, D, E);
tuple_outputs!(6; A, B, C, D, E, F);

/// What a traced closure may return: one tensor, a tuple of tensors, or a `Vec`.
pub trait IntoOutputs {
    /// The outputs as a list.
    fn into_outputs(self) -> Vec<Tensor>;
}

impl IntoOutputs for Tensor {
    fn into_outputs(self) -> Vec<Tensor> {
        vec![self]
    }
}

impl IntoOutputs for Vec<Tensor> {
    fn into_outputs(self) -> Vec<Tensor> {
        self
    }
}

macro_rules! tuple_into_outputs {
    ($($name:ident),+) => {
        impl IntoOutputs for ($(tuple_into_outputs!(@t $name),)+) {
            #[allow(non_snake_case)]
            fn into_outputs(self) -> Vec<Tensor> {
                let ($($name,)+) = self;
                vec![$($name),+]
            }
        }
    };
    (@t $name:ident) => { Tensor };
}
tuple_into_outputs!(A, B);
tuple_into_outputs!(A, B, C);
tuple_into_outputs!(A, B, C, D);
tuple_into_outputs!(A, B, C, D, E);
tuple_into_outputs!(A, B, C, D, E, F);

/// Anything that can become a [`Function`]: closures of 1 to 6 tensors, `Function`s, and
/// `&Function`s. `M` is a marker that tells the closure kinds apart.
pub trait IntoFunction<M> {
    /// The function.
    fn into_function(self) -> Function;
}

/// Marker for [`IntoFunction`] on `Function` values.
pub struct FunctionMarker;

impl IntoFunction<FunctionMarker> for Function {
    fn into_function(self) -> Function {
        self
    }
}

impl IntoFunction<FunctionMarker> for &Function {
    fn into_function(self) -> Function {
        self.clone()
    }
}

/// Marker for [`IntoFunction`] on slice closures `Fn(&[Tensor]) -> Vec<Tensor>`.
pub struct SliceMarker;

impl<F> IntoFunction<SliceMarker> for F
where
    F: Fn(&[Tensor]) -> Vec<Tensor> + Send + Sync + 'static,
{
    fn into_function(self) -> Function {
        Function::from_slice_fn(None, self)
    }
}

macro_rules! closure_into_function {
    ($marker:ident, $n:literal; $($arg:ident),+) => {
        /// Marker for [`IntoFunction`] on closures of this many tensor arguments.
        pub struct $marker<R>(std::marker::PhantomData<R>);

        impl<F, R> IntoFunction<$marker<R>> for F
        where
            F: Fn($(closure_into_function!(@t $arg)),+) -> R + Send + Sync + 'static,
            R: IntoOutputs,
        {
            fn into_function(self) -> Function {
                Function::from_slice_fn(Some($n), move |xs: &[Tensor]| {
                    let [$($arg),+]: [Tensor; $n] = xs.to_vec().try_into().expect("arity checked");
                    self($($arg),+).into_outputs()
                })
            }
        }
    };
    (@t $arg:ident) => { Tensor };
}
closure_into_function!(Arity1, 1; a);
closure_into_function!(Arity2, 2; a, b);
closure_into_function!(Arity3, 3; a, b, c);
closure_into_function!(Arity4, 4; a, b, c, d);
closure_into_function!(Arity5, 5; a, b, c, d, e);
closure_into_function!(Arity6, 6; a, b, c, d, e, f);

/// Traces a closure (or takes a Function) into a [`Function`].
pub fn function<M>(f: impl IntoFunction<M>) -> Function {
    f.into_function()
}

/// Traces `f` for the given input types and returns a Function fixed to its graph.
#[track_caller]
pub fn trace<M>(f: impl IntoFunction<M>, types: &[Type]) -> Result<Function> {
    let f = f.into_function();
    let s = f.specialize(types)?;
    if !s.captures.is_empty() {
        return Err(Error::new(
            ErrorKind::Trace,
            "trace: the function closes over tracers of an enclosing trace",
        )
        .here());
    }
    Ok(Function::from_graph((*s.graph).clone()))
}
