//! The compile driver: plans buffers, builds the Cranelift functions of one graph
//! ([`define_graph`], into any `cranelift_module::Module`), and for the JIT does so in a
//! fresh `JITModule` (one module per compiled graph, so its memory is freed independently),
//! finalized into a [`Compiled`].

use crate::compiled::{Compiled, Inner, ModuleHandle, Status};
use crate::lower::{clty, jit_err, Ctx, Slot};
use crate::plan::{plan, Home, Plan};
use crate::JitOptions;
use cranelift_codegen::ir::{
    types, AbiParam, Function, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use ferrax_ir::ops::{ControlOp, Literal};
use ferrax_ir::{DType, Graph, Result};
use std::sync::OnceLock;
use std::time::Instant;

/// The largest workspace a scalar-ABI function keeps on its stack, in bytes.
const MAX_STACK_WORKSPACE: usize = 64 * 1024;

/// Graphs with more instructions than this (counting control-flow bodies) compile with the
/// fast settings (see [`Tier`]).
pub(crate) const HUGE_GRAPH: usize = 3000;

/// Straight-line graphs (see [`straight_line`]) with more instructions than this compile with
/// the fast settings too.
const LONG_STRAIGHT_LINE: usize = 512;

/// The Cranelift settings a graph compiles with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    /// `opt_level = "speed"`, backtracking register allocation: the default.
    Speed,
    /// `opt_level = "none"`, backtracking register allocation: `JitOptions::optimize` off.
    NoOpt,
    /// `opt_level = "none"` and the single-pass register allocator: huge (unrolled) graphs and
    /// long straight-line ones, where compile time grows fastest and code that runs once per
    /// call gains little from optimisation.
    Huge,
}

/// The number of instructions of `graph`, bodies of control flow included.
fn graph_size(graph: &Graph) -> usize {
    graph
        .insts()
        .map(|(_, inst)| {
            1 + match &inst.op {
                ferrax_ir::Op::Control(op) => crate::plan::bodies(op)
                    .into_iter()
                    .map(graph_size)
                    .sum::<usize>(),
                _ => 0,
            }
        })
        .sum()
}

/// Whether `graph` is straight-line code: no control flow, and no more elements computed in
/// all than twice its number of instructions (scalar code, with perhaps a few small arrays
/// gathered from or scattered to scalars). Such code runs each instruction about once per
/// call, so a better register assignment saves a few cycles per instruction and call, while
/// the backtracking allocator costs microseconds per instruction to compile (a Taylor series
/// of order 20, 849 scalar equations: 2.9 ms of code generation against 0.7 ms with the
/// single-pass allocator, at the same time per call within noise).
fn straight_line(graph: &Graph) -> bool {
    let mut elements = 0usize;
    let mut insts = 0usize;
    for (_, inst) in graph.insts() {
        if matches!(inst.op, ferrax_ir::Op::Control(_)) {
            return false;
        }
        insts += 1;
        for &r in &inst.results {
            elements = elements.saturating_add(graph.ty(r).size());
        }
    }
    elements <= insts.saturating_mul(2)
}

/// The tier of `graph` under `opts`.
fn tier(graph: &Graph, opts: &JitOptions) -> Tier {
    let size = graph_size(graph);
    if !opts.optimize {
        Tier::NoOpt
    } else if size > HUGE_GRAPH || (size > LONG_STRAIGHT_LINE && straight_line(graph)) {
        Tier::Huge
    } else {
        Tier::Speed
    }
}

/// The Cranelift settings of a tier; `pic` asks for position-independent code (exported
/// objects, which may be linked into position-independent executables).
fn tier_flags(tier: Tier, pic: bool) -> std::result::Result<settings::Flags, String> {
    let (level, regalloc) = match tier {
        Tier::Speed => ("speed", "backtracking"),
        Tier::NoOpt => ("none", "backtracking"),
        Tier::Huge => ("none", "single_pass"),
    };
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| format!("cranelift setting {k}={v}: {e}"))
    };
    set(&mut flags, "opt_level", level)?;
    set(&mut flags, "regalloc_algorithm", regalloc)?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    // Scalar entries keep their workspace on the stack: probe frames larger than a page.
    set(&mut flags, "enable_probestack", "true")?;
    set(&mut flags, "probestack_strategy", "inline")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    Ok(settings::Flags::new(flags))
}

/// The Cranelift settings `graph` compiles with under `opts` (its tier), for code that
/// runs elsewhere: position-independent when `pic`.
pub fn code_flags(graph: &Graph, opts: &JitOptions, pic: bool) -> Result<settings::Flags> {
    tier_flags(tier(graph, opts), pic).map_err(jit_err)
}

/// The host ISA for a tier, built once per process.
fn isa(tier: Tier) -> Result<OwnedTargetIsa> {
    static SPEED: OnceLock<std::result::Result<OwnedTargetIsa, String>> = OnceLock::new();
    static NONE: OnceLock<std::result::Result<OwnedTargetIsa, String>> = OnceLock::new();
    static HUGE: OnceLock<std::result::Result<OwnedTargetIsa, String>> = OnceLock::new();
    let cell = match tier {
        Tier::Speed => &SPEED,
        Tier::NoOpt => &NONE,
        Tier::Huge => &HUGE,
    };
    let isa = cell.get_or_init(|| {
        let flags = tier_flags(tier, false)?;
        let builder = cranelift_native::builder().map_err(|e| format!("unsupported host: {e}"))?;
        builder
            .finish(flags)
            .map_err(|e| format!("cranelift ISA: {e}"))
    });
    isa.clone().map_err(jit_err)
}

/// The shape of the scalar entry point of an all-scalar graph, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScalarAbi {
    /// The dtype shared by all outputs (f64 when there are none).
    pub out_dtype: DType,
}

/// Whether the code of `graph` can fail at run time under `opts`: a reverse `taped_while`
/// allocates its tape as it runs, and with `max_while_iterations` set every `while` (and
/// `taped_while`) counts its iterations. Such code reports failure through the tensor entry's
/// status, which the scalar entry lacks, so these graphs get no scalar entry.
pub(crate) fn may_fail(graph: &Graph, opts: &JitOptions) -> bool {
    graph.insts().any(|(_, inst)| match &inst.op {
        ferrax_ir::Op::Control(op) => {
            let here = match op {
                ControlOp::TapedWhile { reverse, .. } => {
                    *reverse || opts.max_while_iterations.is_some()
                }
                ControlOp::While { .. } => opts.max_while_iterations.is_some(),
                _ => false,
            };
            here || crate::plan::bodies(op)
                .into_iter()
                .any(|g| may_fail(g, opts))
        }
        _ => false,
    })
}

/// Whether `graph` gets a scalar entry: all parameters and outputs rank 0, all outputs of one
/// dtype, a workspace small enough for the stack, and nothing that can fail at run time (see
/// [`may_fail`]).
fn scalar_abi(graph: &Graph, plan: &Plan, opts: &JitOptions) -> Option<ScalarAbi> {
    let all_scalar = graph
        .params()
        .iter()
        .chain(graph.outputs())
        .all(|&v| graph.ty(v).is_scalar());
    let out_dtype = graph
        .outputs()
        .first()
        .map_or(DType::F64, |&o| graph.ty(o).dtype);
    let same = graph
        .outputs()
        .iter()
        .all(|&o| graph.ty(o).dtype == out_dtype);
    (all_scalar && same && plan.workspace <= MAX_STACK_WORKSPACE && !may_fail(graph, opts))
        .then_some(ScalarAbi { out_dtype })
}

/// Checks that every value of `graph` and of its control-flow bodies has a type whose byte
/// size is representable (within [`ferrax_ir::MAX_BYTES`]), so that the size arithmetic of
/// planning and lowering cannot overflow.
fn check_sizes(graph: &Graph) -> Result<()> {
    for (k, &p) in graph.params().iter().enumerate() {
        graph.ty(p).check_size(&format!("compile: parameter {k}"))?;
    }
    for (_, inst) in graph.insts() {
        for &r in &inst.results {
            graph
                .ty(r)
                .check_size(&format!("compile: the result of {}", inst.op.name()))?;
        }
        if let ferrax_ir::Op::Control(op) = &inst.op {
            for body in crate::plan::bodies(op) {
                check_sizes(body)?;
            }
        }
    }
    Ok(())
}

/// Where generated code runs, which decides how it reaches what lies outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// In this process, through a `JITModule`: helpers are ferrax's own functions, array
    /// constants are read in place, large loops run on the thread pool.
    Process,
    /// In an object file linked into another program: helpers are C library functions or
    /// code emitted into the object (scalar helpers as local functions, window ops and
    /// convolutions as loop nests, tapes through `realloc`), array constants become data
    /// objects, and every loop runs on the calling thread.
    Object,
}

/// The names and linkage of the entries [`define_graph`] declares.
#[derive(Clone, Copy, Debug)]
pub struct EntryNames<'n> {
    /// The tensor entry `fn(ins: *const *const u8, outs: *const *mut u8, ws: *mut u8) -> i32`.
    pub tensor: &'n str,
    /// The scalar entry of an all-scalar graph (arguments and results in registers).
    pub scalar: &'n str,
    /// The linkage of both.
    pub linkage: Linkage,
}

/// The functions [`define_graph`] defined for one graph.
#[derive(Debug)]
pub struct Defined {
    /// The tensor entry.
    pub tensor: FuncId,
    /// The scalar entry, for all-scalar graphs that can have one: one register per
    /// parameter, one returned register for one output, otherwise a trailing pointer to an
    /// array of the outputs (all of one dtype).
    pub scalar: Option<FuncId>,
    /// The bytes of workspace the tensor entry needs (16-byte aligned).
    pub workspace: usize,
    /// The machine code size of the functions, in bytes (not counting the helpers an
    /// object module defines once for all its graphs, `erf` and the like).
    pub code_bytes: usize,
    /// The array constants the code reads in place (empty for [`Destination::Object`]).
    pub consts: Vec<Literal>,
    /// Whether the tensor entry can return a non-zero status (see `Status`): a
    /// `while_loop` over its iteration limit, a reverse-mode loop tape that cannot grow.
    pub may_fail: bool,
    /// Whether the tensor entry writes every element of each output whenever it completes
    /// (see [`written_outputs`]): such outputs need no zero-filling before a call.
    pub written: Vec<bool>,
    /// For each output, the parameter whose buffer it may be written into (see
    /// `crate::in_place`).
    pub in_place: Vec<Option<usize>>,
}

/// `graph` with its long runs of repeated blocks rolled into loops (`opts.reroll`), or `None`
/// when it has none or the option is off. The graph to give [`code_flags`] and
/// [`define_graph`], which take graphs as they are: the Cranelift tier is chosen by the size
/// of the code to generate, so a 300,000-equation chain rolled into a loop of a few equations
/// compiles with the optimising tier and the backtracking register allocator, which keep the
/// loop's carries in registers. A failure to reroll is a bug, reported in debug builds and
/// passed over (the graph compiles unrolled) in release builds.
pub fn rerolled(graph: &Graph, opts: &JitOptions) -> Result<Option<Graph>> {
    match opts.reroll.then(|| crate::reroll::reroll(graph)) {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) if cfg!(debug_assertions) => Err(e),
        Some(Err(_)) | None => Ok(None),
    }
}

/// Plans `graph` and defines its entries in `module`, code for `dest`: a tensor entry and,
/// for all-scalar graphs, a scalar entry (see [`Defined`]). The driver of [`compile`] (in a
/// `JITModule`) and of ahead-of-time export (in an object module); both pass the graph
/// through [`rerolled`] first.
pub fn define_graph(
    module: &mut dyn Module,
    graph: &Graph,
    opts: &JitOptions,
    dest: Destination,
    names: &EntryNames,
) -> Result<Defined> {
    check_sizes(graph)?;
    if opts.flush_subnormals {
        if dest == Destination::Object {
            return Err(jit_err(
                "flush_subnormals applies to code run in this process; an exported object's \
                 caller sets its own floating-point mode (found the option set for an export)",
            ));
        }
        if !crate::fp_env::FLUSH_SUPPORTED {
            return Err(jit_err(format!(
                "flush_subnormals: expected an x86-64 or AArch64 target, found {}",
                std::env::consts::ARCH
            )));
        }
    }
    let plan = plan(graph);
    if plan.workspace > ferrax_ir::MAX_BYTES {
        return Err(ferrax_ir::Error::new(
            ferrax_ir::ErrorKind::Size,
            format!(
                "compile: the graph's intermediates need a workspace of more than {}, which \
                 no allocation can serve",
                ferrax_ir::alloc::fmt_bytes(ferrax_ir::MAX_BYTES)
            ),
        ));
    }
    let scalar = scalar_abi(graph, &plan, opts);
    let mut fbc = FunctionBuilderContext::new();
    let mut consts: Vec<Literal> = Vec::new();
    let ptr = module.target_config().pointer_type();
    let cc = module.isa().default_call_conv();
    let mut code_bytes = 0;
    let bodies = Bodies {
        graph,
        opts,
        plan: &plan,
        dest,
    };

    let mut tsig = Signature::new(cc);
    tsig.params.extend([AbiParam::new(ptr); 3]);
    tsig.returns.push(AbiParam::new(types::I32));
    let tid = declare(module, names.tensor, names.linkage, &tsig)?;
    let sid = match scalar {
        Some(abi) => {
            let ssig = scalar_signature(graph, abi, cc, ptr);
            let sid = declare(module, names.scalar, names.linkage, &ssig)?;
            let mut func = Function::with_name_signature(Default::default(), ssig);
            build_scalar(module, &mut fbc, &mut func, &bodies, &mut consts, abi)?;
            code_bytes += define(module, sid, func)?;
            let mut func = Function::with_name_signature(Default::default(), tsig);
            build_wrapper(module, &mut fbc, &mut func, graph, sid, abi)?;
            code_bytes += define(module, tid, func)?;
            Some(sid)
        }
        None => {
            let mut func = Function::with_name_signature(Default::default(), tsig);
            build_tensor(module, &mut fbc, &mut func, &bodies, &mut consts)?;
            code_bytes += define(module, tid, func)?;
            None
        }
    };
    Ok(Defined {
        tensor: tid,
        scalar: sid,
        workspace: plan.workspace,
        code_bytes,
        consts,
        may_fail: may_fail(graph, opts),
        // The wrapper of a scalar entry stores every result into its output.
        written: if sid.is_some() {
            vec![true; graph.outputs().len()]
        } else {
            written_outputs(graph, &plan)
        },
        in_place: crate::in_place::in_place_outputs(graph, &plan),
    })
}

/// Which outputs of `graph` the tensor entry writes whole whenever it completes, so that a
/// call allocating them leaves them unfilled:
/// - every output whose home is not its own output buffer, which the entry's epilogue
///   stores (a register) or copies whole (a buffer) into it;
/// - an output computed in its buffer by the root of a fused loop (not one absorbing a
///   product), which stores every element of its result: an elementwise loop at each index,
///   a band its row default before its bands, a reduction its initial values before
///   accumulating;
/// - an output computed in its buffer by a shape op lowered on its own (`lower/shape.rs`: not
///   a member of a loop, not a transpose absorbing a product), which writes every element of
///   its result: broadcast, transpose, slice and rev run a nest over the whole result,
///   reshape copies every element, pad fills the result before writing the operand into it,
///   and concatenate writes its pieces into windows that tile the result along the axis.
///
/// Other lowerings (products, gathers and scatters, control flow, windows, convolutions) are
/// not relied on here, so their outputs count as not written and are zero-filled.
pub(crate) fn written_outputs(graph: &Graph, plan: &Plan) -> Vec<bool> {
    let mut producer: Vec<Option<usize>> = vec![None; graph.num_values()];
    let mut shape_op = Vec::with_capacity(graph.num_insts());
    for (i, (_, inst)) in graph.insts().enumerate() {
        for r in &inst.results {
            producer[r.index()] = Some(i);
        }
        shape_op.push(matches!(inst.op, ferrax_ir::Op::Shape(_)));
    }
    let fusion = &plan.fusion;
    let whole = |i: usize| {
        !fusion.dup[i]
            && fusion.absorbed_dot[i].is_none()
            && match fusion.root[i] {
                Some(r) => r == i,
                None => shape_op[i],
            }
    };
    graph
        .outputs()
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            plan.homes[o.index()] != Home::Output(k)
                || (plan.alias[o.index()].is_none() && producer[o.index()].is_some_and(whole))
        })
        .collect()
}

/// What the builders of a graph's entries share.
struct Bodies<'g> {
    graph: &'g Graph,
    opts: &'g JitOptions,
    plan: &'g Plan,
    dest: Destination,
}

/// Compiles `graph` to native code.
///
/// The result can be called from any thread; dropping its last handle frees the code.
pub fn compile(graph: &Graph, opts: &JitOptions) -> Result<Compiled> {
    let start = Instant::now();
    crate::stats::begin_compile();
    let rolled = rerolled(graph, opts)?;
    let code = rolled.as_ref().unwrap_or(graph);
    let mut jb = JITBuilder::with_isa(isa(tier(code, opts))?, default_libcall_names());
    jb.symbol_lookup_fn(Box::new(crate::symbols::lookup));
    let mut module = JITModule::new(jb);
    let names = EntryNames {
        tensor: "ferrax_tensor_entry",
        scalar: "ferrax_scalar_entry",
        linkage: Linkage::Local,
    };
    let defined = define_graph(&mut module, code, opts, Destination::Process, &names)?;
    drop(rolled);
    let fin = Instant::now();
    module
        .finalize_definitions()
        .map_err(|e| jit_err(format!("cranelift finalize: {e}")))?;
    crate::stats::codegen(fin.elapsed());
    let tensor = module.get_finalized_function(defined.tensor);
    let scalar_ptr = defined.scalar.map(|s| module.get_finalized_function(s));
    let elapsed = start.elapsed();
    crate::stats::end_compile(elapsed);
    Ok(Compiled::from_inner(Inner::new(
        ModuleHandle(module),
        tensor,
        scalar_ptr,
        graph.clone(),
        *opts,
        defined.workspace,
        defined.consts,
        elapsed,
        defined.code_bytes,
        defined.written,
        defined.in_place,
    )))
}

fn declare(
    module: &mut dyn Module,
    name: &str,
    linkage: Linkage,
    sig: &Signature,
) -> Result<FuncId> {
    module
        .declare_function(name, linkage, sig)
        .map_err(|e| jit_err(format!("cranelift declare {name}: {e}")))
}

/// Compiles `func` as the definition of `id`; returns its machine code size in bytes.
fn define(module: &mut dyn Module, id: FuncId, func: Function) -> Result<usize> {
    let mut ctx = cranelift_codegen::Context::for_function(func);
    // `FERRAX_DISASM=1` prints the machine code of every function (a debugging aid).
    let disasm = std::env::var_os("FERRAX_DISASM").is_some();
    ctx.set_disasm(disasm);
    let t = Instant::now();
    define_function(module, id, &mut ctx, "")?;
    crate::stats::codegen(t.elapsed());
    if disasm {
        if let Some(v) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("{v}");
        }
    }
    Ok(ctx
        .compiled_code()
        .map_or(0, |c| c.code_info().total_size as usize))
}

/// Runs Cranelift's code generation of `ctx` as the definition of `id` (`what` names the
/// function in errors). A panic inside it, which a malformed function can cause in a release
/// build, where the verifier is off (a value of one register class passed where another is
/// expected, say), becomes an error of kind [`ferrax_ir::ErrorKind::Jit`] instead of unwinding
/// into the caller: `compile` and `jit` return it like any other failure to compile. Such an
/// error is a bug in ferrax's lowering, and the differential fuzzer reports it as one.
pub(crate) fn define_function(
    module: &mut dyn Module,
    id: FuncId,
    ctx: &mut cranelift_codegen::Context,
    what: &str,
) -> Result<()> {
    let run = std::panic::AssertUnwindSafe(|| {
        module
            .define_function(id, ctx)
            .map_err(|e| jit_err(format!("cranelift codegen{what}: {e:?}")))
    });
    match std::panic::catch_unwind(run) {
        Ok(done) => done,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(jit_err(format!(
                "cranelift codegen{what}: internal compiler error (a bug in ferrax's lowering): \
                 {msg}"
            )))
        }
    }
}

/// The scalar entry's signature: one register per parameter; one returned register for one
/// output, otherwise a trailing pointer to an array of the outputs.
fn scalar_signature(
    graph: &Graph,
    abi: ScalarAbi,
    cc: cranelift_codegen::isa::CallConv,
    ptr: types::Type,
) -> Signature {
    let mut sig = Signature::new(cc);
    for &p in graph.params() {
        sig.params.push(AbiParam::new(clty(graph.ty(p).dtype)));
    }
    match graph.outputs().len() {
        0 => {}
        1 => sig.returns.push(AbiParam::new(clty(abi.out_dtype))),
        _ => sig.params.push(AbiParam::new(ptr)),
    }
    sig
}

/// Builds the tensor entry `fn(ins: *const *const u8, outs: *const *mut u8, ws: *mut u8)`.
fn build_tensor(
    module: &mut dyn Module,
    fbc: &mut FunctionBuilderContext,
    func: &mut Function,
    bodies: &Bodies,
    consts: &mut Vec<Literal>,
) -> Result<()> {
    let (graph, opts, plan) = (bodies.graph, bodies.opts, bodies.plan);
    let cfg = module.isa().frontend_config();
    let mut fb = FunctionBuilder::new(func, fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let (ins, outs, ws) = {
        let p = fb.block_params(entry);
        (p[0], p[1], p[2])
    };
    let flags = MemFlagsData::trusted();
    let out_ptrs: Vec<_> = (0..graph.outputs().len())
        .map(|k| Some(fb.ins().load(types::I64, flags, outs, (8 * k) as i32)))
        .collect();
    // Code that fails at run time jumps here with its status (see `Status`).
    let fail = fb.create_block();
    fb.append_block_param(fail, types::I32);
    let mut cx = Ctx::new(
        &mut fb,
        module,
        graph,
        opts,
        plan,
        consts,
        Some(ws),
        out_ptrs.clone(),
    );
    cx.fail = Some(fail);
    cx.dest = bodies.dest;
    let saved_fp = cx.enter_fp_mode()?;
    cx.tape_limit = Inner::tape_limit(opts, plan.workspace, &graph.output_types());
    for (k, &p) in graph.params().iter().enumerate() {
        let addr = cx.fb.ins().load(types::I64, flags, ins, (8 * k) as i32);
        let ty = graph.ty(p);
        cx.slots[p.index()] = Some(if ty.is_scalar() {
            Slot::Reg(cx.fb.ins().load(clty(ty.dtype), flags, addr, 0))
        } else {
            Slot::Mem(addr)
        });
    }
    cx.lower_body()?;
    for (k, &o) in graph.outputs().iter().enumerate() {
        if plan.homes[o.index()] != Home::Output(k) {
            let dst = out_ptrs[k].ok_or_else(|| jit_err("missing output pointer"))?;
            cx.copy_into(o, dst)?;
        }
    }
    cx.leave_fp_mode(saved_fp)?;
    let ok = cx.fb.ins().iconst(types::I32, Status::Ok as i64);
    cx.fb.ins().return_(&[ok]);
    cx.fb.switch_to_block(fail);
    cx.leave_fp_mode(saved_fp)?;
    let status = cx.fb.block_params(fail)[0];
    cx.fb.ins().return_(&[status]);
    fb.seal_all_blocks();
    fb.finalize(cfg);
    Ok(())
}

/// Builds the scalar entry of an all-scalar graph (workspace, if any, on the stack).
fn build_scalar(
    module: &mut dyn Module,
    fbc: &mut FunctionBuilderContext,
    func: &mut Function,
    bodies: &Bodies,
    consts: &mut Vec<Literal>,
    abi: ScalarAbi,
) -> Result<()> {
    let (graph, opts, plan) = (bodies.graph, bodies.opts, bodies.plan);
    let cfg = module.isa().frontend_config();
    let mut fb = FunctionBuilder::new(func, fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let params: Vec<_> = fb.block_params(entry).to_vec();
    let ws = if plan.workspace > 0 {
        let slot = fb.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            plan.workspace as u32,
            4,
        ));
        Some(fb.ins().stack_addr(types::I64, slot, 0))
    } else {
        None
    };
    let nout = graph.outputs().len();
    let mut cx = Ctx::new(
        &mut fb,
        module,
        graph,
        opts,
        plan,
        consts,
        ws,
        vec![None; nout],
    );
    cx.dest = bodies.dest;
    let saved_fp = cx.enter_fp_mode()?;
    for (k, &p) in graph.params().iter().enumerate() {
        cx.slots[p.index()] = Some(Slot::Reg(params[k]));
    }
    cx.lower_body()?;
    let zero = cx.iconst(0);
    let mut vals = Vec::with_capacity(nout);
    for &o in graph.outputs() {
        vals.push(cx.load(o, zero)?);
    }
    if nout <= 1 {
        // With a floating-point mode to restore, the result goes through a stack slot: the
        // store pins its computation before the restoring call (Cranelift may otherwise place
        // pure arithmetic after it), and the call keeps the reload after it.
        let vals = match (saved_fp, vals.first()) {
            (Some(_), Some(&v)) => {
                let ty = clty(abi.out_dtype);
                let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    8,
                    3,
                ));
                cx.fb.ins().stack_store(types::I64, v, slot, 0);
                cx.leave_fp_mode(saved_fp)?;
                vec![cx.fb.ins().stack_load(types::I64, ty, slot, 0)]
            }
            _ => vals,
        };
        cx.fb.ins().return_(&vals);
    } else {
        let out = params[graph.params().len()];
        let size = abi.out_dtype.size_bytes() as i32;
        for (k, &v) in vals.iter().enumerate() {
            cx.fb
                .ins()
                .store(MemFlagsData::trusted(), v, out, size * k as i32);
        }
        cx.leave_fp_mode(saved_fp)?;
        cx.fb.ins().return_(&[]);
    }
    fb.seal_all_blocks();
    fb.finalize(cfg);
    Ok(())
}

/// Calls an all-scalar graph's scalar entry `callee` with `args` (which it extends) and returns
/// its `nout` results of dtype `out`: one comes back in a register, several through a stack slot
/// whose address is passed as the last argument. Shared by the JIT's array-ABI wrapper and the
/// exporter's C entry, which differ only in where they load arguments and store results.
pub fn call_scalar_entry(
    fb: &mut FunctionBuilder,
    callee: cranelift_codegen::ir::FuncRef,
    mut args: Vec<cranelift_codegen::ir::Value>,
    out: DType,
    nout: usize,
) -> Vec<cranelift_codegen::ir::Value> {
    let size = out.size_bytes();
    let tmp = if nout > 1 {
        let slot = fb.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (size * nout) as u32,
            3,
        ));
        let a = fb.ins().stack_addr(types::I64, slot, 0);
        args.push(a);
        Some(a)
    } else {
        None
    };
    let call = fb.ins().call(callee, &args);
    let rets = fb.inst_results(call).to_vec();
    let flags = MemFlagsData::trusted();
    (0..nout)
        .map(|k| match tmp {
            Some(a) => fb.ins().load(clty(out), flags, a, (size * k) as i32),
            None => rets[0],
        })
        .collect()
}

/// Builds the tensor entry of an all-scalar graph: loads the arguments, calls the scalar
/// entry and stores its results.
fn build_wrapper(
    module: &mut dyn Module,
    fbc: &mut FunctionBuilderContext,
    func: &mut Function,
    graph: &Graph,
    sid: FuncId,
    abi: ScalarAbi,
) -> Result<()> {
    let callee = module.declare_func_in_func(sid, func);
    let cfg = module.isa().frontend_config();
    let mut fb = FunctionBuilder::new(func, fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let (ins, outs) = {
        let p = fb.block_params(entry);
        (p[0], p[1])
    };
    let flags = MemFlagsData::trusted();
    let mut args = Vec::new();
    for (k, &p) in graph.params().iter().enumerate() {
        let addr = fb.ins().load(types::I64, flags, ins, (8 * k) as i32);
        args.push(fb.ins().load(clty(graph.ty(p).dtype), flags, addr, 0));
    }
    let results = call_scalar_entry(&mut fb, callee, args, abi.out_dtype, graph.outputs().len());
    for (k, v) in results.into_iter().enumerate() {
        let addr = fb.ins().load(types::I64, flags, outs, (8 * k) as i32);
        fb.ins().store(flags, v, addr, 0);
    }
    // The scalar entry cannot fail (see `may_fail`).
    let ok = fb.ins().iconst(types::I32, Status::Ok as i64);
    fb.ins().return_(&[ok]);
    fb.seal_all_blocks();
    fb.finalize(cfg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrax_ir::{DType, Tensor, Type};

    /// The graph of `steps` steps `x = sin(x) · 1.0001 + 0.1` on an f64 array of `dims`.
    fn chain(dims: &[usize], steps: usize) -> Graph {
        let ty = Type::new(DType::F64, dims);
        let f = move |mut x: Tensor| {
            for _ in 0..steps {
                x = x.sin() * 1.0001 + 0.1;
            }
            x
        };
        ferrax_ir::tracer::trace_with(&[ty], |xs| vec![f(xs[0].clone())])
            .expect("chain traces")
            .graph
    }

    #[test]
    fn long_scalar_code_takes_the_single_pass_tier_and_array_code_does_not() {
        let opts = JitOptions::default();
        let short = chain(&[], 20);
        let long = chain(&[], 400);
        let arrays = chain(&[16], 400);
        assert!(straight_line(&short) && straight_line(&long));
        assert!(!straight_line(&arrays));
        assert!(graph_size(&long) > LONG_STRAIGHT_LINE);
        assert!(graph_size(&arrays) > LONG_STRAIGHT_LINE && graph_size(&arrays) <= HUGE_GRAPH);
        assert_eq!(tier(&short, &opts), Tier::Speed);
        assert_eq!(tier(&long, &opts), Tier::Huge);
        assert_eq!(tier(&arrays, &opts), Tier::Speed);
        let off = JitOptions {
            optimize: false,
            ..JitOptions::default()
        };
        assert_eq!(tier(&long, &off), Tier::NoOpt);
    }

    #[test]
    fn a_rerolled_chain_takes_the_tier_of_its_loop() {
        // 2,000 steps (6,000 equations, a huge graph) roll into one loop of a few equations,
        // which compiles with the optimising tier; with rerolling off it stays huge.
        let opts = JitOptions::default();
        let long = chain(&[], 2_000);
        assert!(graph_size(&long) > HUGE_GRAPH);
        let rolled = rerolled(&long, &opts).unwrap().expect("the chain rerolls");
        assert!(graph_size(&rolled) < LONG_STRAIGHT_LINE);
        assert_eq!(tier(&rolled, &opts), Tier::Speed);
        let off = JitOptions {
            reroll: false,
            ..JitOptions::default()
        };
        assert!(rerolled(&long, &off).unwrap().is_none());
        assert_eq!(tier(&long, &off), Tier::Huge);
    }

    #[test]
    fn outputs_written_whole_are_known() {
        // Outputs: a concatenation of 20 one-element pieces (a jet's series), a pad, a
        // transpose, a product, a scalar, a parameter passed through, and the pad again.
        let tys = [Type::new(DType::F64, &[4, 3]), Type::scalar(DType::F64)];
        let g = ferrax_ir::tracer::trace_with(&tys, |xs| {
            let (x, y) = (&xs[0], &xs[1]);
            let pieces: Vec<Tensor> = (0..20).map(|k| (y * k as f64).reshape(&[1])).collect();
            let p = x.pad(&[1, 0], &[0, 2], &[0, 0], 7.0);
            vec![
                ferrax_ir::tensor::concatenate(&pieces, 0),
                p.clone(),
                x.transpose(&[1, 0]),
                x.matmul(&x.transpose(&[1, 0])),
                y.sin(),
                x.clone(),
                p,
            ]
        })
        .expect("traces")
        .graph;
        let written = written_outputs(&g, &plan(&g));
        assert_eq!(written, [true, true, true, false, true, true, true]);
    }
}
