//! `Compiled`: a handle to native code for one graph, its argument checks and its calls.

use crate::stats;
use crate::JitOptions;
use cranelift_jit::JITModule;
use ferrax_ir::function::{FromOutputs, Output, Outputs};
use ferrax_ir::ops::Literal;
use ferrax_ir::{Array, DType, Data, Error, ErrorKind, Graph, Result, ScalarValue, Type};
use smallvec::SmallVec;

/// A call's buffer pointers, inline for up to 32 (a train step passes 20 to 30 arguments and
/// as many outputs, which spilled lists of 8 to the heap on every call).
type Ptrs<T> = SmallVec<[T; 32]>;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Owns the JIT module; its memory is freed when the last handle to the code goes away.
pub(crate) struct ModuleHandle(pub JITModule);

// SAFETY: the module is never used after compilation except to free its memory in `Drop`,
// which runs once, on whichever thread drops the last handle.
unsafe impl Send for ModuleHandle {}
// SAFETY: no shared access to the module happens after compilation.
unsafe impl Sync for ModuleHandle {}

/// A chunk of workspace memory, aligned to a cache line (`plan::LINE`) so that the plan's
/// line-aligned regions are line-aligned in memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Chunk([u8; crate::plan::LINE]);

/// One call's workspace.
struct Workspace(Vec<Chunk>);

impl Workspace {
    /// A zeroed workspace of at least `bytes` bytes, or a resource error when the memory
    /// cannot be had.
    fn try_new(bytes: usize) -> Result<Workspace> {
        let chunks = bytes.div_ceil(std::mem::size_of::<Chunk>());
        Ok(Workspace(ferrax_ir::alloc::try_filled(
            chunks,
            Chunk([0; crate::plan::LINE]),
            "the workspace of a compiled call (its intermediates)",
        )?))
    }
}

/// The signature of the tensor entry point (see the crate documentation): it returns a
/// [`Status`] code, 0 when the call completed.
type TensorFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8) -> i32;

/// Why a tensor entry returned early: the codes generated code returns through the entry
/// point. Every early exit frees what the call allocated before returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Status {
    /// The call completed.
    Ok = 0,
    /// A `while_loop` exceeded `JitOptions::max_while_iterations`.
    WhileLimit = 1,
    /// A reverse-mode `while_loop`'s tape could not be allocated (the size asked for is in
    /// [`crate::symbols::tape_failure`]).
    TapeAlloc = 2,
    /// A reverse-mode `while_loop`'s tape would outgrow what the memory budget (or the
    /// allocator's limit) leaves it.
    TapeLimit = 3,
}

/// The shared state of a compiled function.
pub(crate) struct Inner {
    module: Option<ModuleHandle>,
    tensor: *const u8,
    pub(crate) scalar: Option<*const u8>,
    pub(crate) graph: Graph,
    pub(crate) opts: JitOptions,
    pub(crate) params: Vec<Type>,
    pub(crate) outputs: Vec<Type>,
    /// The element count of each parameter's type, for the checks every call makes.
    param_sizes: Vec<usize>,
    workspace: usize,
    /// The bytes one call needs: its workspace plus its outputs (`None` when the sum
    /// overflows).
    need: Option<usize>,
    /// Whether `need` exceeds `opts.max_call_bytes`, decided once at compile time so that a
    /// call pays a single test.
    over_budget: bool,
    /// Whether every output is a scalar, so that a generic call can read them from stack
    /// slots.
    pub(crate) scalar_outputs: bool,
    /// A one-workspace cache taken and returned with atomic swaps: the common single-caller
    /// case never touches the mutex.
    fast_ws: AtomicPtr<Workspace>,
    /// Further workspaces, for concurrent callers. Boxed so that a workspace moves between
    /// the pool and the atomic slot without a new allocation.
    #[allow(clippy::vec_box)]
    pool: Mutex<Vec<Box<Workspace>>>,
    _consts: Vec<Literal>,
    compile_time: Duration,
    code_bytes: usize,
    /// How a call that allocates its outputs makes each buffer (see [`Fresh`]), decided
    /// once here so that a call neither recomputes sizes nor looks anything up.
    fresh: Vec<Fresh>,
    /// For each output, the parameter whose buffer it may be written into (see
    /// `crate::in_place`).
    in_place: Vec<Option<usize>>,
    /// For each parameter, the first output of `in_place` that names it, so that a call
    /// finds it without a search per given-up argument.
    taken_by: Vec<Option<usize>>,
}

// SAFETY: the code pointers refer to immutable finalized machine code owned by `module`; the
// workspace cache is taken and returned by atomic swaps (each pointer owned by one party at a
// time) and the pool is behind a mutex; everything else is plain data.
unsafe impl Send for Inner {}
// SAFETY: as above; generated code only touches the buffers and workspace passed to it.
unsafe impl Sync for Inner {}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        module: ModuleHandle,
        tensor: *const u8,
        scalar: Option<*const u8>,
        graph: Graph,
        opts: JitOptions,
        workspace: usize,
        consts: Vec<Literal>,
        compile_time: Duration,
        code_bytes: usize,
        written: Vec<bool>,
        in_place: Vec<Option<usize>>,
    ) -> Inner {
        stats::LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outputs = graph.output_types();
        let need = call_bytes(workspace, &outputs);
        let over_budget = match (opts.max_call_bytes, need) {
            (None, _) => false,
            (Some(budget), Some(need)) => need > budget,
            (Some(_), None) => true,
        };
        let scalar_outputs = outputs.iter().all(|t| t.is_scalar());
        let params = graph.param_types();
        let mut taken_by = vec![None; params.len()];
        for (k, &j) in in_place.iter().enumerate().rev() {
            if let Some(slot) = j.and_then(|j| taken_by.get_mut(j)) {
                *slot = Some(k);
            }
        }
        let fresh = outputs
            .iter()
            .zip(written.iter().copied().chain(std::iter::repeat(false)))
            .map(|(t, whole)| Fresh {
                dtype: t.dtype,
                len: t.shape.size(),
                whole: whole && t.dtype != DType::Bool,
                scalar: t.is_scalar(),
            })
            .collect();
        let param_sizes = params.iter().map(|t| t.shape.size()).collect();
        Inner {
            module: Some(module),
            param_sizes,
            tensor,
            scalar,
            params,
            outputs,
            graph,
            opts,
            workspace,
            need,
            over_budget,
            scalar_outputs,
            fast_ws: AtomicPtr::new(std::ptr::null_mut()),
            pool: Mutex::new(Vec::new()),
            _consts: consts,
            compile_time,
            code_bytes,
            fresh,
            in_place,
            taken_by,
        }
    }
}

/// The bytes a call needs for its workspace and its outputs, `None` when the sum overflows.
pub(crate) fn call_bytes(workspace: usize, outputs: &[Type]) -> Option<usize> {
    outputs
        .iter()
        .try_fold(workspace, |acc, t| acc.checked_add(t.checked_bytes()?))
}

impl Inner {
    /// The error for a call whose workspace and outputs exceed the memory budget.
    #[cold]
    fn budget_error(&self) -> Error {
        let budget = self.opts.max_call_bytes.unwrap_or(usize::MAX);
        let outs = self
            .outputs
            .iter()
            .map(|t| t.checked_bytes().unwrap_or(usize::MAX))
            .fold(0usize, usize::saturating_add);
        let need = match self.need {
            Some(n) => ferrax_ir::alloc::fmt_bytes(n),
            None => "more than 16 EiB".to_string(),
        };
        Error::new(
            ErrorKind::Resource,
            format!(
                "the compiled call needs {need} ({} of workspace and {} of outputs), over its \
                 memory budget of {} (JitOptions::max_call_bytes)",
                ferrax_ir::alloc::fmt_bytes(self.workspace),
                ferrax_ir::alloc::fmt_bytes(outs),
                ferrax_ir::alloc::fmt_bytes(budget),
            ),
        )
    }

    /// The bytes a reverse-mode `while_loop`'s tape may grow to: what the budget leaves after
    /// the workspace and outputs, and never more than [`ferrax_ir::MAX_BYTES`].
    pub(crate) fn tape_limit(opts: &JitOptions, workspace: usize, outputs: &[Type]) -> usize {
        let left = match opts.max_call_bytes {
            None => usize::MAX,
            Some(b) => call_bytes(workspace, outputs).map_or(0, |n| b.saturating_sub(n)),
        };
        left.min(ferrax_ir::MAX_BYTES)
    }

    /// The error for a tensor entry that returned `status`.
    #[cold]
    fn status_error(&self, status: i32) -> Error {
        let limit = Inner::tape_limit(&self.opts, self.workspace, &self.outputs);
        match status {
            s if s == Status::WhileLimit as i32 => Error::new(
                ErrorKind::Resource,
                format!(
                    "a while_loop exceeded its iteration limit of {} \
                     (JitOptions::max_while_iterations); the call was abandoned",
                    self.opts.max_while_iterations.unwrap_or(u64::MAX)
                ),
            ),
            s if s == Status::TapeAlloc as i32 => ferrax_ir::alloc::cannot_allocate(
                crate::symbols::tape_failure(),
                "the tape of a reverse-mode while_loop (taped_while)",
            ),
            s if s == Status::TapeLimit as i32 => Error::new(
                ErrorKind::Resource,
                match self.opts.max_call_bytes {
                    Some(b) => format!(
                        "the tape of a reverse-mode while_loop (taped_while) would outgrow {}, \
                         what the memory budget of {} (JitOptions::max_call_bytes) leaves \
                         after the call's workspace and outputs",
                        ferrax_ir::alloc::fmt_bytes(limit),
                        ferrax_ir::alloc::fmt_bytes(b)
                    ),
                    None => format!(
                        "the tape of a reverse-mode while_loop (taped_while) would outgrow {}, \
                         the largest possible allocation",
                        ferrax_ir::alloc::fmt_bytes(limit)
                    ),
                },
            ),
            s => Error::new(
                ErrorKind::Jit,
                format!("the compiled code returned the unknown status {s}"),
            ),
        }
    }
}

/// How a call that allocates its outputs makes the buffer of one output.
#[derive(Clone, Copy, Debug)]
struct Fresh {
    dtype: DType,
    /// The element count (checked against `ferrax_ir::MAX_BYTES` when the graph compiled).
    len: usize,
    /// Whether the code writes every element (see `compile::written_outputs`) and the dtype
    /// is not `bool` (whose bytes must be 0 or 1): the buffer is then reserved empty and given
    /// its length once the call completes, otherwise it is zero-filled.
    whole: bool,
    /// Whether the output is rank 0, written to a stack slot rather than a buffer.
    scalar: bool,
}

impl Fresh {
    /// The buffer: reserved empty when the code writes it whole, zero-filled otherwise; a
    /// resource error when its memory cannot be had.
    fn buffer(&self) -> Result<Data> {
        const WHAT: &str = "an output of the compiled call";
        if self.whole {
            Data::try_with_capacity(self.dtype, self.len, WHAT)
        } else {
            Data::try_filled(self.dtype, self.len, 0.0, WHAT)
        }
    }
}

/// The address of a buffer's allocation (taken from the vector, so that it covers the
/// reserved capacity, not only the elements it holds).
fn vec_ptr(d: &mut Data) -> *mut u8 {
    match d {
        Data::F32(v) => v.as_mut_ptr() as *mut u8,
        Data::F64(v) => v.as_mut_ptr() as *mut u8,
        Data::I32(v) => v.as_mut_ptr() as *mut u8,
        Data::Bool(v) => v.as_mut_ptr() as *mut u8,
    }
}

/// Sets the length of a reserved output buffer.
///
/// # Safety
/// `len` must not exceed the buffer's capacity, and its first `len` elements must have been
/// written.
unsafe fn set_len(d: &mut Data, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match d {
            Data::F32(v) => v.set_len(len),
            Data::F64(v) => v.set_len(len),
            Data::I32(v) => v.set_len(len),
            Data::Bool(v) => v.set_len(len),
        }
    }
}

/// What produces output `k` of `graph`, for error messages: `the result of sin f64[8]`.
fn output_origin(graph: &Graph, k: usize) -> String {
    let Some(&o) = graph.outputs().get(k) else {
        return String::new();
    };
    let ty = graph.ty(o);
    for (_, inst) in graph.insts() {
        if inst.results.contains(&o) {
            return format!("the result of {} {ty}", inst.op.name());
        }
    }
    format!("a parameter passed through, {ty}")
}

impl Drop for Inner {
    fn drop(&mut self) {
        stats::LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let ws = self.fast_ws.swap(std::ptr::null_mut(), Ordering::Acquire);
        if !ws.is_null() {
            // SAFETY: the pointer came from `Box::into_raw` in `run` and was owned by the slot.
            drop(unsafe { Box::from_raw(ws) });
        }
        if let Some(m) = self.module.take() {
            // SAFETY: this is the last handle (every `Compiled` and scalar callable holds an
            // `Arc<Inner>`), so no code of this module runs now or later.
            unsafe { m.0.free_memory() }
        }
    }
}

/// Native code for one graph: cheap to clone, callable from many threads at once.
///
/// Dropping the last clone (and every callable made by `as_fn*`) frees the machine code.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("params", &self.inner.params)
            .field("outputs", &self.inner.outputs)
            .field("workspace_bytes", &self.inner.workspace)
            .field("scalar_entry", &self.inner.scalar.is_some())
            .finish()
    }
}

pub(crate) fn data_ptr(d: &Data) -> *const u8 {
    match d {
        Data::F32(v) => v.as_ptr() as *const u8,
        Data::F64(v) => v.as_ptr() as *const u8,
        Data::I32(v) => v.as_ptr() as *const u8,
        Data::Bool(v) => v.as_ptr() as *const u8,
    }
}

/// Checks one array against the type the graph expects for it.
#[inline]
pub(crate) fn check(what: &str, k: usize, want: &Type, a: &Array) -> Result<()> {
    check_sized(what, k, want, want.size(), a)
}

/// [`check`] with the type's element count `size` already known (every call checks each
/// argument and output, so the counts are computed once, when the code is compiled).
#[inline]
pub(crate) fn check_sized(what: &str, k: usize, want: &Type, size: usize, a: &Array) -> Result<()> {
    if a.has_type(want) && a.data().len() == size {
        return Ok(());
    }
    Err(mismatch(what, k, want, size, a))
}

/// The error for an array that [`check_sized`] refused.
#[cold]
#[inline(never)]
fn mismatch(what: &str, k: usize, want: &Type, size: usize, a: &Array) -> Error {
    if a.dtype() != want.dtype {
        return Error::new(
            ErrorKind::DType,
            format!("{what} {k}: expected {want} but got {}", a.ty()),
        );
    }
    if a.shape() != &want.shape {
        return Error::new(
            ErrorKind::Shape,
            format!("{what} {k}: expected {want} but got {}", a.ty()),
        );
    }
    Error::new(
        ErrorKind::Jit,
        format!(
            "{what} {k}: type {want} needs {size} elements but its buffer holds {}",
            a.data().len()
        ),
    )
}

/// Checks a count of arguments or outputs.
pub(crate) fn arity(what: &str, want: usize, got: usize) -> Result<()> {
    if want != got {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "the compiled function takes {}, got {got}",
                ferrax_ir::error::count_of(want, what)
            ),
        ));
    }
    Ok(())
}

impl Compiled {
    pub(crate) fn from_inner(inner: Inner) -> Compiled {
        Compiled {
            inner: Arc::new(inner),
        }
    }

    /// Whether two handles share the same machine code (e.g. a compile-cache hit).
    pub fn same_code(&self, other: &Compiled) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The parameter types, in order.
    pub fn param_types(&self) -> &[Type] {
        &self.inner.params
    }

    /// The output types, in order.
    pub fn output_types(&self) -> &[Type] {
        &self.inner.outputs
    }

    /// The options it was compiled with.
    pub fn options(&self) -> &JitOptions {
        &self.inner.opts
    }

    /// How long compilation took (planning, lowering, Cranelift, finalization).
    pub fn compile_time(&self) -> Duration {
        self.inner.compile_time
    }

    /// The size of the generated machine code in bytes (all entry points).
    pub fn code_bytes(&self) -> usize {
        self.inner.code_bytes
    }

    /// The workspace size in bytes that each concurrent call uses.
    pub fn workspace_bytes(&self) -> usize {
        self.inner.workspace
    }

    /// Whether the graph has a scalar entry (arguments and results in registers), which
    /// [`Compiled::call_scalar`] and the `as_fn*` callables use. All-scalar graphs whose code
    /// can fail at run time (a reverse-mode `while_loop`, or any `while_loop` under
    /// `JitOptions::max_while_iterations`) have none: a typed callable could not report the
    /// failure.
    pub fn has_scalar_entry(&self) -> bool {
        self.inner.scalar.is_some()
    }

    /// Calls the function on `args`, returning newly allocated outputs. Errors (wrong count,
    /// dtype or shape of an argument) carry the caller's source line.
    ///
    /// Outputs that cannot be allocated, a workspace that cannot be allocated, a call over
    /// `JitOptions::max_call_bytes`, and run-time limits (`max_while_iterations`, a
    /// reverse-mode loop's tape) are errors of kind [`ErrorKind::Resource`].
    #[track_caller]
    pub fn call(&self, args: &[Array]) -> Result<Vec<Array>> {
        let refs: SmallVec<[&Array; 8]> = args.iter().collect();
        self.call_refs(&refs)
    }

    /// [`Compiled::call`] on borrowed arguments.
    #[track_caller]
    pub fn call_refs(&self, args: &[&Array]) -> Result<Vec<Array>> {
        let loc = std::panic::Location::caller();
        if self.inner.over_budget {
            return Err(self.inner.budget_error().at(loc));
        }
        self.check_args(args).map_err(|e| e.at(loc))?;
        let ins: Ptrs<*const u8> = args.iter().map(|a| data_ptr(a.data())).collect();
        // SAFETY: every argument was checked to have the type and element count the code was
        // compiled for.
        unsafe { self.run_fresh(&ins) }.map_err(|e| e.at(loc))
    }

    /// Runs the tensor entry into newly allocated outputs (see [`Compiled::run_outputs`]),
    /// rank-0 ones made into arrays too.
    ///
    /// # Safety
    /// As for [`Compiled::run_outputs`].
    unsafe fn run_fresh(&self, ins: &[*const u8]) -> Result<Vec<Array>> {
        let mut outs = Outputs::new();
        // SAFETY: forwarded from the caller.
        unsafe { self.run_outputs(ins, &mut outs)? };
        Ok(outs.drain(..).map(Output::into_array).collect())
    }

    /// Runs the tensor entry into new outputs, pushed onto `outs` (kept by the caller, so
    /// that the list is not moved): each rank-0 output into a stack slot, read back as a
    /// value; each other output into a new buffer, zero-filled unless the code writes it
    /// whole, in which case it is reserved and given its length only once the call has
    /// completed (a failed call drops it empty, so no unwritten element is ever read).
    ///
    /// # Safety
    /// `ins` must hold one pointer per parameter, each to a live buffer of the parameter's
    /// type and element count.
    unsafe fn run_outputs(&self, ins: &[*const u8], outs: &mut Outputs) -> Result<()> {
        let inner = &*self.inner;
        let mut bufs: SmallVec<[Data; 4]> = SmallVec::new();
        for (k, f) in inner.fresh.iter().enumerate() {
            if !f.scalar {
                match f.buffer() {
                    Ok(d) => bufs.push(d),
                    // Naming the output scans the graph, so it is done for the error only.
                    Err(_) => return Err(self.output_alloc_error(k)),
                }
            }
        }
        let mut slots: SmallVec<[u64; 8]> = SmallVec::from_elem(0, inner.fresh.len());
        let mut outp: Ptrs<*mut u8> = SmallVec::with_capacity(inner.fresh.len());
        let mut next = bufs.iter_mut();
        for (f, slot) in inner.fresh.iter().zip(slots.iter_mut()) {
            let p = if f.scalar {
                slot as *mut u64 as *mut u8
            } else {
                match next.next() {
                    Some(d) => vec_ptr(d),
                    None => return Err(Error::new(ErrorKind::Jit, "an output has no buffer")),
                }
            };
            outp.push(p);
        }
        // SAFETY: the caller guarantees the arguments; each output has room for its type's
        // element count (an 8-byte, 8-aligned slot for a scalar, a buffer filled or reserved
        // for any other), and they are distinct.
        unsafe { self.run(ins, &outp)? };
        let mut bufs = bufs.into_iter();
        for ((f, t), slot) in inner.fresh.iter().zip(&inner.outputs).zip(&slots) {
            if f.scalar {
                outs.push(Output::Scalar(scalar_value(slot, f.dtype)));
                continue;
            }
            let Some(mut d) = bufs.next() else { break };
            if f.whole {
                // SAFETY: the call completed, and the code writes every element of this
                // output (`Fresh::whole`), so the `f.len` reserved elements are initialised.
                unsafe { set_len(&mut d, f.len) };
            }
            // SAFETY: the buffer holds `f.len` elements, the element count of the output's
            // type, whose size `compile` checked against `MAX_BYTES`.
            outs.push(Output::Array(unsafe {
                Array::from_parts_unchecked(t.shape.clone(), d)
            }));
        }
        Ok(())
    }

    /// The error for an output buffer that cannot be allocated, naming the output.
    #[cold]
    #[inline(never)]
    fn output_alloc_error(&self, k: usize) -> Error {
        let inner = &*self.inner;
        let bytes = inner
            .outputs
            .get(k)
            .map_or(usize::MAX, |t| t.checked_bytes().unwrap_or(usize::MAX));
        ferrax_ir::alloc::cannot_allocate(
            bytes,
            format_args!(
                "output {k} of the compiled call ({})",
                output_origin(&inner.graph, k)
            ),
        )
    }

    /// Whether every call exceeds `JitOptions::max_call_bytes` (decided at compile time).
    pub(crate) fn over_budget(&self) -> bool {
        self.inner.over_budget
    }

    /// The error of a call over `JitOptions::max_call_bytes`.
    #[cold]
    pub(crate) fn budget_error(&self) -> Error {
        self.inner.budget_error()
    }

    /// The budget check every call makes first: an error when the call's workspace and
    /// outputs exceed `JitOptions::max_call_bytes`.
    #[inline(always)]
    pub(crate) fn check_budget(&self) -> Result<()> {
        if self.inner.over_budget {
            return Err(self.inner.budget_error());
        }
        Ok(())
    }

    /// Runs the tensor entry on argument pointers and converts the outputs to `R`: scalar
    /// outputs are read from stack slots without building arrays, other outputs are
    /// allocated as in [`Compiled::call`].
    ///
    /// # Safety
    /// `ins` must hold one pointer per parameter, each to a live buffer of the parameter's
    /// type and element count (checked by the caller).
    pub(crate) unsafe fn call_checked<R: FromOutputs>(&self, ins: &[*const u8]) -> Result<R> {
        self.check_budget()?;
        let inner = &*self.inner;
        if inner.scalar_outputs {
            let mut slots: SmallVec<[u64; 8]> = SmallVec::from_elem(0, inner.outputs.len());
            let outp: SmallVec<[*mut u8; 8]> =
                slots.iter_mut().map(|s| s as *mut u64 as *mut u8).collect();
            // SAFETY: the caller guarantees the arguments; each output slot is 8 bytes and
            // 8-aligned, enough for one scalar of any dtype.
            unsafe { self.run(ins, &outp)? };
            let vals: SmallVec<[ScalarValue; 8]> = slots
                .iter()
                .zip(&inner.outputs)
                .map(|(s, t)| scalar_value(s, t.dtype))
                .collect();
            return R::from_scalars(&vals);
        }
        let mut outs = Outputs::new();
        // SAFETY: the caller guarantees the arguments.
        unsafe { self.run_outputs(ins, &mut outs)? };
        R::from_mixed(&mut outs)
    }

    /// Runs the tensor entry on argument and output pointers.
    ///
    /// # Safety
    /// `ins` and `outs` must hold one pointer per parameter and per output, each to a live
    /// buffer of its type and element count, outputs not overlapping anything else.
    pub(crate) unsafe fn run_checked(&self, ins: &[*const u8], outs: &[*mut u8]) -> Result<()> {
        self.check_budget()?;
        // SAFETY: forwarded from the caller.
        unsafe { self.run(ins, outs) }
    }

    /// Calls the function on `args`, writing into the preallocated `outs` (which must have
    /// the output types). Allocates nothing in the steady state.
    ///
    /// Every argument and output is checked (count, dtype, shape, buffer length) before
    /// native code runs; errors are as for [`Compiled::call`] and carry the caller's source
    /// line. When a call fails after it started (an iteration limit, a tape that cannot
    /// grow), the outputs hold whatever was written before the failure.
    #[track_caller]
    pub fn call_into(&self, args: &[&Array], outs: &mut [Array]) -> Result<()> {
        let loc = std::panic::Location::caller();
        if self.inner.over_budget {
            return Err(self.inner.budget_error().at(loc));
        }
        self.check_buffers(args, outs).map_err(|e| e.at(loc))?;
        let ins: Ptrs<*const u8> = args.iter().map(|a| data_ptr(a.data())).collect();
        let outp: Ptrs<*mut u8> = outs.iter_mut().map(|a| a.data_mut().as_mut_ptr()).collect();
        // SAFETY: every buffer was checked to have the type and element count the code was
        // compiled for, and outputs are distinct `&mut` borrows.
        unsafe { self.run(&ins, &outp) }.map_err(|e| e.at(loc))
    }

    /// For each output, the argument whose buffer [`Compiled::call_in_place`] may write it
    /// into, or `None`: the output is computed by an elementwise loop that reads that
    /// argument only at the index it writes, after every other read of the argument.
    pub fn in_place_outputs(&self) -> &[Option<usize>] {
        &self.inner.in_place
    }

    /// Calls the function like [`Compiled::call_into`], with arguments given up to the
    /// outputs that may take their buffers (JAX's donation, in place): `args[j] == None`
    /// says that argument `j` is the current contents of output `k`, for the `k` with
    /// `in_place_outputs()[k] == Some(j)`. The call reads argument `j` from there and
    /// leaves output `k` in the same buffer, so an update such as an optimizer step streams
    /// through half the memory.
    ///
    /// An argument given as `None` that no output can take is an error, as are the checks
    /// of [`Compiled::call_into`] (for such an argument, its output's buffer is checked
    /// against the argument's type). When a call fails after it started, the outputs, and
    /// so the arguments given up, hold whatever was written before the failure.
    #[track_caller]
    pub fn call_in_place(&self, args: &[Option<&Array>], outs: &mut [Array]) -> Result<()> {
        let loc = std::panic::Location::caller();
        if self.inner.over_budget {
            return Err(self.inner.budget_error().at(loc));
        }
        let inner = &*self.inner;
        let checked = || -> Result<()> {
            arity("argument", inner.params.len(), args.len())?;
            self.check_outs(outs)?;
            for (j, ((want, &n), a)) in inner
                .params
                .iter()
                .zip(&inner.param_sizes)
                .zip(args)
                .enumerate()
            {
                match a {
                    Some(a) => check_sized("argument", j, want, n, a)?,
                    None => {
                        let k = self.in_place_output(j).ok_or_else(|| {
                            Error::new(
                                ErrorKind::Jit,
                                format!(
                                    "call_in_place: argument {j} is given up to an output, \
                                     but no output of the compiled function can take its \
                                     buffer"
                                ),
                            )
                        })?;
                        check_sized("argument", j, want, n, &outs[k])?;
                    }
                }
            }
            Ok(())
        };
        checked().map_err(|e| e.at(loc))?;
        let outp: Ptrs<*mut u8> = outs.iter_mut().map(|a| a.data_mut().as_mut_ptr()).collect();
        let ins: Ptrs<*const u8> = args
            .iter()
            .enumerate()
            .map(|(j, a)| match a {
                Some(a) => data_ptr(a.data()),
                // Checked above: some output takes argument `j`.
                None => self
                    .in_place_output(j)
                    .map_or(std::ptr::null(), |k| outp[k] as *const u8),
            })
            .collect();
        // SAFETY: every buffer was checked to have the type and element count the code was
        // compiled for; outputs are distinct `&mut` borrows, and an argument shares a buffer
        // only with the output the compiled code allows to overwrite it (`crate::in_place`).
        unsafe { self.run(&ins, &outp) }.map_err(|e| e.at(loc))
    }

    /// The output that may take argument `j`'s buffer.
    fn in_place_output(&self, j: usize) -> Option<usize> {
        self.inner.taken_by.get(j).copied().flatten()
    }

    /// Checks the count and types of a call's arguments against the element counts computed
    /// once per signature.
    fn check_args(&self, args: &[&Array]) -> Result<()> {
        let inner = &*self.inner;
        arity("argument", inner.params.len(), args.len())?;
        for (k, ((want, &n), a)) in inner
            .params
            .iter()
            .zip(&inner.param_sizes)
            .zip(args)
            .enumerate()
        {
            check_sized("argument", k, want, n, a)?;
        }
        Ok(())
    }

    /// Checks the counts and types of a call's arguments and outputs.
    fn check_buffers(&self, args: &[&Array], outs: &[Array]) -> Result<()> {
        self.check_args(args)?;
        self.check_outs(outs)
    }

    /// Checks the count and types of a call's outputs.
    fn check_outs(&self, outs: &[Array]) -> Result<()> {
        let inner = &*self.inner;
        arity("output", inner.outputs.len(), outs.len())?;
        for (k, ((want, f), a)) in inner.outputs.iter().zip(&inner.fresh).zip(outs).enumerate() {
            check_sized("output", k, want, f.len, a)?;
        }
        Ok(())
    }

    /// Runs the tensor entry with a workspace from the pool, turning a non-zero status into
    /// its error.
    ///
    /// # Safety
    /// `ins` and `outs` must point to buffers of the compiled types and sizes.
    unsafe fn run(&self, ins: &[*const u8], outs: &[*mut u8]) -> Result<()> {
        // SAFETY: `tensor` is the finalized tensor entry, whose ABI is `TensorFn`.
        let f: TensorFn = unsafe { std::mem::transmute::<*const u8, TensorFn>(self.inner.tensor) };
        if self.inner.workspace == 0 {
            // SAFETY: the caller guarantees the buffers; no workspace is used.
            let status = unsafe { f(ins.as_ptr(), outs.as_ptr(), std::ptr::null_mut()) };
            return self.status(status);
        }
        let lock = || self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        let cached = self
            .inner
            .fast_ws
            .swap(std::ptr::null_mut(), Ordering::Acquire);
        let mut ws = if cached.is_null() {
            let popped = lock().pop();
            match popped {
                Some(ws) => ws,
                None => Box::new(Workspace::try_new(self.inner.workspace)?),
            }
        } else {
            // SAFETY: a non-null slot holds a `Box::into_raw` pointer that this swap now owns.
            unsafe { Box::from_raw(cached) }
        };
        // SAFETY: the workspace has the planned size and is used by this call only.
        let status = unsafe { f(ins.as_ptr(), outs.as_ptr(), ws.0.as_mut_ptr() as *mut u8) };
        let raw = Box::into_raw(ws);
        if self
            .inner
            .fast_ws
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            // SAFETY: the exchange failed, so `raw` is still exclusively ours.
            lock().push(unsafe { Box::from_raw(raw) });
        }
        self.status(status)
    }

    /// `Ok` for the status of a completed call, otherwise its error.
    #[inline(always)]
    fn status(&self, status: i32) -> Result<()> {
        if status == Status::Ok as i32 {
            Ok(())
        } else {
            Err(self.inner.status_error(status))
        }
    }

    /// Calls an all-scalar function with f64 values (converted to and from the parameter and
    /// output dtypes with `as`). Allocates nothing. Errors carry the caller's source line.
    #[track_caller]
    pub fn call_scalar(&self, args: &[f64], out: &mut [f64]) -> Result<()> {
        let loc = std::panic::Location::caller();
        let inner = &*self.inner;
        if let Some((k, t)) = inner
            .params
            .iter()
            .chain(&inner.outputs)
            .enumerate()
            .find(|(_, t)| !t.is_scalar())
        {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "call_scalar needs scalar parameters and outputs; value {k} (parameters, \
                     then outputs) has type {t}"
                ),
            )
            .at(loc));
        }
        arity("argument", inner.params.len(), args.len()).map_err(|e| e.at(loc))?;
        arity("output", inner.outputs.len(), out.len()).map_err(|e| e.at(loc))?;
        if inner.over_budget {
            return Err(inner.budget_error().at(loc));
        }
        let all_f64 = inner
            .params
            .iter()
            .chain(&inner.outputs)
            .all(|t| t.dtype == DType::F64);
        if let (Some(f), true, 1) = (inner.scalar, all_f64, out.len()) {
            // SAFETY: the scalar entry takes one f64 per parameter and returns one f64.
            unsafe {
                match args.len() {
                    0 => {
                        out[0] = std::mem::transmute::<*const u8, extern "C" fn() -> f64>(f)();
                        return Ok(());
                    }
                    1 => {
                        let g = std::mem::transmute::<*const u8, extern "C" fn(f64) -> f64>(f);
                        out[0] = g(args[0]);
                        return Ok(());
                    }
                    2 => {
                        let g = std::mem::transmute::<*const u8, extern "C" fn(f64, f64) -> f64>(f);
                        out[0] = g(args[0], args[1]);
                        return Ok(());
                    }
                    3 => {
                        let g = std::mem::transmute::<*const u8, extern "C" fn(f64, f64, f64) -> f64>(
                            f,
                        );
                        out[0] = g(args[0], args[1], args[2]);
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
        let mut inb: SmallVec<[u64; 8]> = SmallVec::from_elem(0, args.len());
        for ((slot, &x), t) in inb.iter_mut().zip(args).zip(&inner.params) {
            write_scalar(slot, t.dtype, x);
        }
        let mut outb: SmallVec<[u64; 8]> = SmallVec::from_elem(0, out.len());
        let ins: SmallVec<[*const u8; 8]> =
            inb.iter().map(|s| s as *const u64 as *const u8).collect();
        let outs: SmallVec<[*mut u8; 8]> =
            outb.iter_mut().map(|s| s as *mut u64 as *mut u8).collect();
        // SAFETY: each slot is 8 bytes, enough for one scalar of any dtype.
        unsafe { self.run(&ins, &outs)? };
        for ((o, s), t) in out.iter_mut().zip(&outb).zip(&inner.outputs) {
            *o = read_scalar(s, t.dtype);
        }
        Ok(())
    }

    /// The scalar entry point when the graph has `n` parameters and `m` outputs, all of
    /// `dtype`.
    pub(crate) fn scalar_entry(&self, dtype: DType, n: usize, m: usize) -> Result<*const u8> {
        let inner = &*self.inner;
        let f = inner.scalar.ok_or_else(|| {
            if crate::compile::may_fail(&inner.graph, &inner.opts) {
                Error::new(
                    ErrorKind::Jit,
                    "as_fn: this graph can fail at run time (a reverse-mode while_loop's tape \
                     may not fit in memory, or a while_loop may exceed \
                     JitOptions::max_while_iterations), and a typed callable cannot report \
                     errors; use call, call_into or call_scalar",
                )
            } else {
                Error::new(
                    ErrorKind::Shape,
                    "as_fn needs a graph whose parameters and outputs are all scalars",
                )
            }
        })?;
        arity("argument", inner.params.len(), n)?;
        arity("output", inner.outputs.len(), m)?;
        if let Some((k, t)) = inner
            .params
            .iter()
            .chain(&inner.outputs)
            .enumerate()
            .find(|(_, t)| t.dtype != dtype)
        {
            return Err(Error::new(
                ErrorKind::DType,
                format!("as_fn::<{dtype}>: value {k} (parameters, then outputs) has type {t}"),
            ));
        }
        if inner.over_budget {
            return Err(inner.budget_error());
        }
        Ok(f)
    }
}

fn write_scalar(slot: &mut u64, dtype: DType, x: f64) {
    let p = slot as *mut u64;
    // SAFETY: `p` is valid for 8 bytes and 8-aligned, enough for any scalar dtype.
    unsafe {
        match dtype {
            DType::F64 => (p as *mut f64).write(x),
            DType::F32 => (p as *mut f32).write(x as f32),
            DType::I32 => (p as *mut i32).write(x as i32),
            DType::Bool => (p as *mut u8).write((x != 0.0) as u8),
        }
    }
}

/// The scalar of `dtype` that generated code wrote to `slot`.
fn scalar_value(slot: &u64, dtype: DType) -> ScalarValue {
    let p = slot as *const u64;
    // SAFETY: as in `write_scalar`; generated code wrote a value of `dtype` (bools as 0/1).
    unsafe {
        match dtype {
            DType::F64 => ScalarValue::F64((p as *const f64).read()),
            DType::F32 => ScalarValue::F32((p as *const f32).read()),
            DType::I32 => ScalarValue::I32((p as *const i32).read()),
            DType::Bool => ScalarValue::Bool((p as *const u8).read() != 0),
        }
    }
}

fn read_scalar(slot: &u64, dtype: DType) -> f64 {
    let p = slot as *const u64;
    // SAFETY: as in `write_scalar`; generated code wrote a value of `dtype` (bools as 0/1).
    unsafe {
        match dtype {
            DType::F64 => (p as *const f64).read(),
            DType::F32 => (p as *const f32).read() as f64,
            DType::I32 => (p as *const i32).read() as f64,
            DType::Bool => ((p as *const u8).read() != 0) as u8 as f64,
        }
    }
}
