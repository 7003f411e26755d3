//! `jit(f)`: a [`Function`] compiled to native code, specialised and compiled once per list of
//! input types (through the graph-keyed compile cache, so equal graphs share machine code).

use crate::compiled::{arity, check, data_ptr};
use crate::{compile_cached, Compiled, JitOptions};
use ferrax_ir::function::FromOutputs;
use ferrax_ir::{
    ArgRef, ArgRefs, Array, DType, Error, ErrorKind, Function, IntoArgs, IntoFunction, Result, Type,
};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

/// One compiled specialisation: its input types, the code, and what a generic call needs to
/// check and dispatch without looking anything up.
struct Entry {
    compiled: Compiled,
    /// Whether the code's parameter types are exactly the key's types, which is what lets a
    /// call that matches the key skip the code's own argument checks. (Always so for a
    /// function without captures; checked rather than assumed.)
    exact: bool,
    /// The code's parameters, held here so that a call reads them without going through
    /// the code's handle.
    params: Vec<Param>,
    /// Whether the call exceeds `JitOptions::max_call_bytes` (the code's own flag, copied).
    over_budget: bool,
    /// The scalar entry (arguments and one result in registers) when every parameter and
    /// the single output are scalars of one float dtype and there are at most 4 parameters.
    abi: Option<(*const u8, DType)>,
}

// SAFETY: `abi` points to immutable machine code kept alive by `compiled` (which is
// `Send + Sync`); everything else is plain data, never mutated after creation.
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

impl Entry {
    fn new(compiled: Compiled, types: &[Type]) -> Entry {
        let params = compiled.param_types();
        let exact = params == types;
        let outs = compiled.output_types();
        let abi = match (compiled.inner.scalar, params.first().or(outs.first())) {
            (Some(f), Some(t0))
                if params.len() <= 4
                    && outs.len() == 1
                    && matches!(t0.dtype, DType::F64 | DType::F32)
                    && params
                        .iter()
                        .chain(outs)
                        .all(|t| t.is_scalar() && t.dtype == t0.dtype) =>
            {
                Some((f, t0.dtype))
            }
            _ => None,
        };
        Entry {
            exact,
            params: params
                .iter()
                .map(|t| Param {
                    ty: t.clone(),
                    scalar: t.is_scalar().then_some(t.dtype),
                    size: t.shape.size(),
                })
                .collect(),
            over_budget: compiled.over_budget(),
            abi,
            compiled,
        }
    }

    /// Whether `args` have exactly the types (and buffer lengths) the code was compiled for.
    #[inline(always)]
    fn fits(&self, args: &[ArgRef<'_>]) -> bool {
        if !self.exact || self.params.len() != args.len() {
            return false;
        }
        for (p, a) in self.params.iter().zip(args) {
            if !p.fits(a) {
                return false;
            }
        }
        true
    }

    /// Calls the code on arguments that [`Entry::fits`] accepted.
    #[inline(always)]
    fn call_fitting<R: FromOutputs>(&self, args: &[ArgRef<'_>]) -> Result<R> {
        if self.over_budget {
            return Err(self.compiled.budget_error());
        }
        if let Some((f, dtype)) = self.abi {
            let y = match dtype {
                DType::F32 => {
                    let mut x = [0f32; 4];
                    for (slot, a) in x.iter_mut().zip(args) {
                        *slot = scalar_f32(a);
                    }
                    // SAFETY: `abi` is set only for a scalar entry over f32 parameters and
                    // one f32 result, with as many parameters as `args` (checked by `fits`).
                    ferrax_ir::ScalarValue::F32(unsafe { call_abi(f, &x, args.len()) })
                }
                _ => {
                    let mut x = [0f64; 4];
                    for (slot, a) in x.iter_mut().zip(args) {
                        *slot = scalar_f64(a);
                    }
                    // SAFETY: as above, for f64.
                    ferrax_ir::ScalarValue::F64(unsafe { call_abi(f, &x, args.len()) })
                }
            };
            return R::from_scalars(&[y]);
        }
        let ins: SmallVec<[*const u8; 8]> = args.iter().map(arg_ptr).collect();
        // SAFETY: `fits` checked one argument per parameter with its dtype, shape and element
        // count; scalar arguments live in `args`, borrowed for the whole call.
        unsafe { self.compiled.call_checked(&ins) }
    }
}

/// One parameter as a generic call checks it.
struct Param {
    ty: Type,
    /// The dtype when the parameter is a scalar (the common case, checked without the shape).
    scalar: Option<DType>,
    /// The element count, for the buffer-length check.
    size: usize,
}

impl Param {
    /// Whether one argument has this parameter's type and element count.
    #[inline(always)]
    fn fits(&self, a: &ArgRef<'_>) -> bool {
        match a {
            ArgRef::F64(_) => self.scalar == Some(DType::F64),
            ArgRef::F32(_) => self.scalar == Some(DType::F32),
            ArgRef::I32(_) => self.scalar == Some(DType::I32),
            ArgRef::Bool(_) => self.scalar == Some(DType::Bool),
            ArgRef::Array(a) => self.fits_array(a),
        }
    }

    /// Whether an array has this parameter's type and element count.
    #[inline(never)]
    fn fits_array(&self, a: &Array) -> bool {
        a.dtype() == self.ty.dtype && a.shape() == &self.ty.shape && a.data().len() == self.size
    }
}

/// A pointer to an argument's elements (a scalar's own storage inside the argument list).
fn arg_ptr(a: &ArgRef<'_>) -> *const u8 {
    match a {
        ArgRef::F64(x) => x as *const f64 as *const u8,
        ArgRef::F32(x) => x as *const f32 as *const u8,
        ArgRef::I32(x) => x as *const i32 as *const u8,
        ArgRef::Bool(x) => x as *const bool as *const u8,
        ArgRef::Array(a) => data_ptr(a.data()),
    }
}

/// The value of an argument that `fits` accepted for an f64 scalar parameter.
#[inline(always)]
fn scalar_f64(a: &ArgRef<'_>) -> f64 {
    match a {
        ArgRef::F64(x) => *x,
        ArgRef::Array(a) => a.data().get_f64(0),
        // Unreachable after `fits`; a harmless value keeps this total.
        _ => 0.0,
    }
}

/// The value of an argument that `fits` accepted for an f32 scalar parameter.
#[inline(always)]
fn scalar_f32(a: &ArgRef<'_>) -> f32 {
    match a {
        ArgRef::F32(x) => *x,
        ArgRef::Array(a) => match a.data() {
            ferrax_ir::Data::F32(v) => v.first().copied().unwrap_or(0.0),
            _ => 0.0,
        },
        // Unreachable after `fits`; a harmless value keeps this total.
        _ => 0.0,
    }
}

/// Calls a scalar entry of `n` (at most 4) parameters of type `T` and one result.
///
/// # Safety
/// `f` must be a scalar entry taking exactly `n` values of `T` and returning one.
#[inline(always)]
unsafe fn call_abi<T: Copy>(f: *const u8, x: &[T; 4], n: usize) -> T {
    // SAFETY: forwarded from the caller: the entry's ABI matches the arity chosen here.
    unsafe {
        match n {
            0 => std::mem::transmute::<*const u8, extern "C" fn() -> T>(f)(),
            1 => std::mem::transmute::<*const u8, extern "C" fn(T) -> T>(f)(x[0]),
            2 => std::mem::transmute::<*const u8, extern "C" fn(T, T) -> T>(f)(x[0], x[1]),
            3 => std::mem::transmute::<*const u8, extern "C" fn(T, T, T) -> T>(f)(x[0], x[1], x[2]),
            _ => std::mem::transmute::<*const u8, extern "C" fn(T, T, T, T) -> T>(f)(
                x[0], x[1], x[2], x[3],
            ),
        }
    }
}

struct Inner {
    func: Function,
    opts: JitOptions,
    /// Every specialisation, by input types. Entries are boxed (stable addresses) and never
    /// removed or replaced while the `Jit` lives, which is what makes `last` safe to read
    /// without a lock.
    compiled: Mutex<hashbrown::HashMap<Vec<Type>, Box<Entry>>>,
    /// The entry the latest generic call used (null before the first): a call whose
    /// arguments fit it reaches the code without the map or its lock.
    last: AtomicPtr<Entry>,
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
        Ok(self.entry_for(types)?.compiled.clone())
    }

    /// The entry for `types`, compiling it on first use. The reference lives as long as
    /// `self` (entries are never removed).
    #[track_caller]
    fn entry_for(&self, types: &[Type]) -> Result<&Entry> {
        let loc = std::panic::Location::caller();
        // A lock poisoned by a panic elsewhere still holds a consistent map (entries are
        // only ever inserted whole), so it is used rather than passed on as a panic.
        let lock = || {
            self.inner
                .compiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(e) = lock().get(types) {
            let p: *const Entry = &**e;
            // SAFETY: boxed entries are never removed or replaced while `self.inner` lives,
            // so the box outlives the borrow of `self`.
            return Ok(unsafe { &*p });
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
        let mut map = lock();
        // A concurrent caller may have compiled the same types first; its entry is kept so
        // that no entry is ever replaced.
        let e = map
            .entry(types.to_vec())
            .or_insert_with(|| Box::new(Entry::new(c, types)));
        let p: *const Entry = &**e;
        // SAFETY: as above.
        Ok(unsafe { &*p })
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
    ///
    /// A call whose arguments have the same types as the previous call's goes straight to
    /// the code: no arrays are built for scalar or borrowed arguments, no lock is taken, and
    /// an all-f64 (or all-f32) scalar function of up to 4 parameters and one result is
    /// called through its register entry. Every check of counts, dtypes, shapes and buffer
    /// lengths still happens; a call with other types takes the general path.
    #[track_caller]
    #[inline]
    pub fn call<A: IntoArgs, R: FromOutputs>(&self, args: A) -> Result<R> {
        let loc = std::panic::Location::caller();
        if let Some(refs) = args.arg_refs() {
            let last = self.inner.last.load(Ordering::Acquire);
            if !last.is_null() {
                // SAFETY: `last` is null or points to a boxed entry of `self.inner.compiled`,
                // which are never removed or replaced while `self.inner` lives.
                let e = unsafe { &*last };
                if e.fits(refs.as_slice()) {
                    return e.call_fitting(refs.as_slice()).map_err(|e| e.at(loc));
                }
            }
            return self.call_refs_slow(&refs, loc);
        }
        R::from_outputs(self.call_arrays(&args.into_args())?).map_err(|e| e.at(loc))
    }

    /// The general path of [`Jit::call`] for borrowed arguments: looks up (or compiles) the
    /// entry for their types and makes it the latest.
    #[track_caller]
    #[inline(never)]
    fn call_refs_slow<R: FromOutputs>(
        &self,
        refs: &ArgRefs<'_>,
        loc: &'static std::panic::Location<'static>,
    ) -> Result<R> {
        let types = refs.types();
        let e = self.entry_for(&types).map_err(|e| e.at(loc))?;
        if e.fits(refs.as_slice()) {
            self.inner
                .last
                .store(e as *const Entry as *mut Entry, Ordering::Release);
            return e.call_fitting(refs.as_slice()).map_err(|e| e.at(loc));
        }
        // Arguments that do not fit their own types' code (a buffer whose length disagrees
        // with its shape) get the checked call and its error.
        let outs = e.compiled.call(&refs.to_arrays()).map_err(|e| e.at(loc))?;
        R::from_outputs(outs).map_err(|e| e.at(loc))
    }

    /// Calls the native code writing into preallocated outputs given as a tuple (or one)
    /// of `&mut f64`, `&mut f32`, `&mut i32` (scalar outputs) and `&mut Array`, or as a
    /// `&mut [Array]`. Arguments are as for [`Jit::call`], with the same fast path; no
    /// output is allocated. Every output is checked against the code's output types.
    #[track_caller]
    pub fn call_into_outs<'o, A: IntoArgs, O: IntoOutRefs<'o>>(
        &self,
        args: A,
        outs: O,
    ) -> Result<()> {
        let loc = std::panic::Location::caller();
        let mut outs = outs.out_refs();
        let owned;
        let refs = match args.arg_refs() {
            Some(r) => r,
            None => {
                owned = args.into_args();
                match ArgRefs::of_arrays(&owned) {
                    Some(r) => r,
                    None => {
                        // More arguments than a borrowed list holds: the checked slice call.
                        let ins: Vec<&Array> = owned.iter().collect();
                        let e = self.entry_for(&ins.iter().map(|a| a.ty()).collect::<Vec<_>>())?;
                        return write_outs(&e.compiled, &mut outs, |c, outp| {
                            check_args(c, &ins)?;
                            let inp: SmallVec<[*const u8; 8]> =
                                ins.iter().map(|a| data_ptr(a.data())).collect();
                            // SAFETY: arguments checked just above, outputs by `write_outs`.
                            unsafe { c.run_checked(&inp, outp) }
                        })
                        .map_err(|e| e.at(loc));
                    }
                }
            }
        };
        let args = refs.as_slice();
        let last = self.inner.last.load(Ordering::Acquire);
        // SAFETY: as in `call`.
        let e = match unsafe { last.as_ref() } {
            Some(e) if e.fits(args) => e,
            _ => {
                let e = self.entry_for(&refs.types())?;
                if !e.fits(args) {
                    let arrays = refs.to_arrays();
                    let ins: Vec<&Array> = arrays.iter().collect();
                    check_args(&e.compiled, &ins).map_err(|e| e.at(loc))?;
                }
                self.inner
                    .last
                    .store(e as *const Entry as *mut Entry, Ordering::Release);
                e
            }
        };
        // One f64 (or f32) place for the one result of a register entry: no pointers.
        match (e.abi, outs.as_mut_slice()) {
            (Some((_, DType::F64)), [OutRef::F64(o)]) if e.fits(args) => {
                **o = e.call_fitting::<f64>(args).map_err(|e| e.at(loc))?;
                return Ok(());
            }
            (Some((_, DType::F32)), [OutRef::F32(o)]) if e.fits(args) => {
                **o = e.call_fitting::<f32>(args).map_err(|e| e.at(loc))?;
                return Ok(());
            }
            _ => {}
        }
        let inp: SmallVec<[*const u8; 8]> = args.iter().map(arg_ptr).collect();
        write_outs(&e.compiled, &mut outs, |c, outp| {
            // SAFETY: `fits` (or, for arguments that do not fit the entry, `check_args`)
            // checked the arguments against the code's parameters, `write_outs` the outputs.
            unsafe { c.run_checked(&inp, outp) }
        })
        .map_err(|e| e.at(loc))
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
            compiled: Mutex::new(hashbrown::HashMap::new()),
            last: AtomicPtr::new(std::ptr::null_mut()),
        }),
    })
}

/// Checks arguments against the code's parameter types (the errors of [`Compiled::call`]).
fn check_args(c: &Compiled, args: &[&Array]) -> Result<()> {
    arity("argument", c.param_types().len(), args.len())?;
    for (k, (want, a)) in c.param_types().iter().zip(args).enumerate() {
        check("argument", k, want, a)?;
    }
    Ok(())
}

/// Checks `outs` against the code's output types and hands their pointers to `run`.
fn write_outs(
    c: &Compiled,
    outs: &mut [OutRef<'_>],
    run: impl FnOnce(&Compiled, &[*mut u8]) -> Result<()>,
) -> Result<()> {
    arity("output", c.output_types().len(), outs.len())?;
    let mut ptrs: SmallVec<[*mut u8; 8]> = SmallVec::new();
    for (k, (want, o)) in c.output_types().iter().zip(outs.iter_mut()).enumerate() {
        let scalar = |d: DType, what: &str| -> Result<()> {
            if want.dtype == d && want.shape.rank() == 0 {
                Ok(())
            } else {
                Err(Error::new(
                    if want.dtype == d {
                        ErrorKind::Shape
                    } else {
                        ErrorKind::DType
                    },
                    format!("output {k}: expected {want} but got a {what} scalar"),
                ))
            }
        };
        let p = match o {
            OutRef::F64(x) => {
                scalar(DType::F64, "f64")?;
                *x as *mut f64 as *mut u8
            }
            OutRef::F32(x) => {
                scalar(DType::F32, "f32")?;
                *x as *mut f32 as *mut u8
            }
            OutRef::I32(x) => {
                scalar(DType::I32, "i32")?;
                *x as *mut i32 as *mut u8
            }
            OutRef::Array(a) => {
                check("output", k, want, a)?;
                a.data_mut().as_mut_ptr()
            }
        };
        ptrs.push(p);
    }
    run(c, &ptrs)
}

/// One preallocated output of [`Jit::call_into_outs`].
#[derive(Debug)]
pub enum OutRef<'a> {
    /// An f64 scalar output.
    F64(&'a mut f64),
    /// An f32 scalar output.
    F32(&'a mut f32),
    /// An i32 scalar output.
    I32(&'a mut i32),
    /// An array output of any type.
    Array(&'a mut Array),
}

/// One output place: `&mut f64`, `&mut f32`, `&mut i32` or `&mut Array`.
pub trait IntoOutRef<'a> {
    /// The place as an [`OutRef`].
    fn out_ref(self) -> OutRef<'a>;
}

impl<'a> IntoOutRef<'a> for &'a mut f64 {
    fn out_ref(self) -> OutRef<'a> {
        OutRef::F64(self)
    }
}
impl<'a> IntoOutRef<'a> for &'a mut f32 {
    fn out_ref(self) -> OutRef<'a> {
        OutRef::F32(self)
    }
}
impl<'a> IntoOutRef<'a> for &'a mut i32 {
    fn out_ref(self) -> OutRef<'a> {
        OutRef::I32(self)
    }
}
impl<'a> IntoOutRef<'a> for &'a mut Array {
    fn out_ref(self) -> OutRef<'a> {
        OutRef::Array(self)
    }
}

/// The outputs of [`Jit::call_into_outs`]: one place, a tuple of up to 6, or `&mut [Array]`.
pub trait IntoOutRefs<'a> {
    /// The places, in output order.
    fn out_refs(self) -> SmallVec<[OutRef<'a>; 8]>;
}

impl<'a, T: IntoOutRef<'a>> IntoOutRefs<'a> for T {
    fn out_refs(self) -> SmallVec<[OutRef<'a>; 8]> {
        smallvec::smallvec![self.out_ref()]
    }
}

impl<'a> IntoOutRefs<'a> for &'a mut [Array] {
    fn out_refs(self) -> SmallVec<[OutRef<'a>; 8]> {
        self.iter_mut().map(OutRef::Array).collect()
    }
}

macro_rules! tuple_outs {
    ($($name:ident),+) => {
        impl<'a, $($name: IntoOutRef<'a>),+> IntoOutRefs<'a> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn out_refs(self) -> SmallVec<[OutRef<'a>; 8]> {
                let ($($name,)+) = self;
                smallvec::smallvec![$($name.out_ref()),+]
            }
        }
    };
}
tuple_outs!(A);
tuple_outs!(A, B);
tuple_outs!(A, B, C);
tuple_outs!(A, B, C, D);
tuple_outs!(A, B, C, D, E);
tuple_outs!(A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrax_ir::Tensor;

    /// The slot the fast path reads, as the entry for `types` or `None`.
    fn last_is(f: &Jit, types: &[Type]) -> bool {
        let p = f.inner.last.load(Ordering::Acquire);
        let map = f.inner.compiled.lock().unwrap();
        map.get(types).is_some_and(|e| std::ptr::eq(&**e, p))
    }

    #[test]
    fn the_slot_follows_the_latest_types() {
        let f = jit(|x: Tensor, y: Tensor| x * y).unwrap();
        assert!(f.inner.last.load(Ordering::Acquire).is_null());
        let s64 = vec![Type::scalar(DType::F64); 2];
        let s32 = vec![Type::scalar(DType::F32); 2];
        let _: f64 = f.call((1.0, 2.0)).unwrap();
        assert!(last_is(&f, &s64));
        // The entry takes the register path.
        let e = f.entry_for(&s64).unwrap();
        assert!(e.exact && e.abi.is_some_and(|(_, d)| d == DType::F64));
        let _: f32 = f.call((1.0f32, 2.0f32)).unwrap();
        assert!(last_is(&f, &s32));
        // A failed call leaves the slot alone.
        assert!(f.call::<_, f64>((1.0, 2.0, 3.0)).is_err());
        assert!(last_is(&f, &s32));
        let x = Array::from(vec![1.0, 2.0]);
        let _: Vec<f64> = f.call((&x, &x)).unwrap();
        let v2 = vec![Type::new(DType::F64, &[2]); 2];
        assert!(last_is(&f, &v2));
        assert!(f.entry_for(&v2).unwrap().abi.is_none());
        // A fitting call does not touch the map: holding its lock does not block it.
        let guard = f.inner.compiled.lock().unwrap();
        let y: Vec<f64> = f.call((&x, &x)).unwrap();
        drop(guard);
        assert_eq!(y, vec![1.0, 4.0]);
    }
}
