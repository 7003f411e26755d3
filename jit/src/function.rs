//! `jit(f)`: a [`Function`] compiled to native code, specialised and compiled once per list of
//! input types (through the graph-keyed compile cache, so equal graphs share machine code).

use crate::{compile_cached, Compiled, JitOptions};
use ferrax_ir::{Array, Error, ErrorKind, Function, IntoFunction, Result, Type};
use hashbrown::HashMap;
use std::sync::{Arc, Mutex};

struct Inner {
    func: Function,
    opts: JitOptions,
    compiled: Mutex<HashMap<Vec<Type>, Compiled>>,
}

/// A jitted function: cheap to clone, `Send + Sync`. Calls compile on first use of each list
/// of input types and reuse the native code afterwards.
#[derive(Clone)]
pub struct Jit {
    inner: Arc<Inner>,
}

impl Jit {
    /// The function being compiled.
    pub fn function(&self) -> &Function {
        &self.inner.func
    }

    /// The compiled code for `types`, compiling it on first use.
    #[track_caller]
    pub fn compiled_for(&self, types: &[Type]) -> Result<Compiled> {
        let loc = std::panic::Location::caller();
        // A lock poisoned by a panic elsewhere still holds a consistent map (entries are
        // only ever inserted whole), so it is used rather than passed on as a panic.
        let lock = || {
            self.inner
                .compiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(c) = lock().get(types) {
            return Ok(c.clone());
        }
        let t = std::time::Instant::now();
        let s = self.inner.func.specialize(types)?;
        crate::stats::add(&crate::stats::SPECIALIZE_NANOS, t.elapsed());
        if !s.captures.is_empty() {
            return Err(Error::new(
                ErrorKind::Jit,
                "jit: the function closes over tracers of an enclosing trace; jit the enclosing \
                 function instead",
            )
            .at(loc));
        }
        let c = compile_cached(&s.graph, &self.inner.opts).map_err(|e| e.at(loc))?;
        lock().insert(types.to_vec(), c.clone());
        Ok(c)
    }

    /// The compiled code for the function's default input types (f64 scalars for closures).
    #[track_caller]
    pub fn compiled(&self) -> Result<Compiled> {
        let Some(types) = self.inner.func.default_types() else {
            return Err(Error::new(
                ErrorKind::Arity,
                "jit: the function has no default input types; use compiled_for(&types)",
            )
            .here());
        };
        self.compiled_for(&types)
    }

    /// Calls the native code on arrays (compiling for their types on first use).
    #[track_caller]
    pub fn call_arrays(&self, args: &[Array]) -> Result<Vec<Array>> {
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        self.compiled_for(&types)?.call(args)
    }

    /// Calls the native code on concrete values, converting outputs like [`Function::call`].
    #[track_caller]
    pub fn call<A: ferrax_ir::IntoArgs, R: ferrax_ir::function::FromOutputs>(
        &self,
        args: A,
    ) -> Result<R> {
        let loc = std::panic::Location::caller();
        R::from_outputs(self.call_arrays(&args.into_args())?).map_err(|e| e.at(loc))
    }

    /// Calls the native code writing into preallocated outputs (no allocation in steady state).
    #[track_caller]
    pub fn call_into(&self, args: &[&Array], outs: &mut [Array]) -> Result<()> {
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        self.compiled_for(&types)?.call_into(args, outs)
    }
}

/// Prepares `f` for compilation with default options. Nothing is traced or compiled until the
/// first call (or [`Jit::compiled_for`]), because only then are the input types known; each
/// new list of input types compiles once.
///
/// ```
/// use ferrax_ir::Tensor;
/// let f = ferrax_jit::jit(|x: Tensor| x.sin() * 2.0).unwrap();
/// let y: f64 = f.call(0.5).unwrap();
/// assert_eq!(y, 0.5f64.sin() * 2.0);
/// let fast = f.compiled().unwrap().as_fn1::<f64>().unwrap();
/// assert_eq!(fast.call(0.5), y);
/// ```
#[track_caller]
pub fn jit<M>(f: impl IntoFunction<M>) -> Result<Jit> {
    jit_with(f, JitOptions::default())
}

/// Prepares `f` for compilation with the given options (see [`jit`]).
#[track_caller]
pub fn jit_with<M>(f: impl IntoFunction<M>, opts: JitOptions) -> Result<Jit> {
    Ok(Jit {
        inner: Arc::new(Inner {
            func: f.into_function(),
            opts,
            compiled: Mutex::new(HashMap::new()),
        }),
    })
}
