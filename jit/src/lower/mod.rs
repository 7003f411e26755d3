//! Lowering of a graph to one Cranelift function.
//!
//! [`Ctx`] holds the function being built and where every IR value lives ([`Slot`]). Each op
//! family has a file here mirroring `ferrax_ir::ops`: elementwise families (unary, binary,
//! compare, convert) expose a per-element *expression emitter* (`emit`) that turns operand
//! SSA values into a result SSA value; [`Ctx::lower_elementwise`] wraps one emitter in a flat
//! loop today. Fusion will instead walk a chain of elementwise ops inside a single loop nest
//! (broadcasts become index maps through [`Access`] strides), calling the same emitters, and
//! vectorisation will call them with vector-typed values. The other families build loop nests
//! with [`Ctx::nest`], whose [`Access`]es are affine maps from loop indices to element offsets.
//!
//! Control flow lowers its bodies inline with [`Ctx::lower_inline`]: a body gets a context of
//! its own (its graph, its plan, its slots) that shares the function builder, so a body can
//! itself hold control flow, lowered the same way, to any depth.

pub(crate) mod band;
pub(crate) mod binary;
pub(crate) mod compare;
pub(crate) mod control;
pub(crate) mod conv;
pub(crate) mod convert;
pub(crate) mod dot;
pub(crate) mod fastmath;
pub(crate) mod fused;
pub(crate) mod index;
pub(crate) mod literal;
pub(crate) mod periodic;
pub(crate) mod portable;
pub(crate) mod reduce;
pub(crate) mod remap;
pub(crate) mod shape;
pub(crate) mod unary;
pub(crate) mod vpool;
pub(crate) mod window;

use crate::plan::{Home, Plan};
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, InstBuilder, MemFlagsData, Signature,
};
use cranelift_frontend::FunctionBuilder;
use cranelift_module::{Linkage, Module};
use ferrax_ir::ops::Literal;
use ferrax_ir::{DType, Error, ErrorKind, Graph, InstData, Op, Result, Value};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// Where an IR value lives during lowering.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// A rank-0 value held in an SSA value.
    Reg(ir::Value),
    /// A buffer: the SSA value is its base address.
    Mem(ir::Value),
}

/// An affine map from the indices of a loop nest to an element offset:
/// `base + Σ idx[d] · strides[d]`.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// The offset (in elements, i64) at index zero.
    pub base: ir::Value,
    /// The stride (in elements) per nest dimension.
    pub strides: SmallVec<[i64; 4]>,
}

/// Row-major element strides of `dims`.
pub(crate) fn strides(dims: &[usize]) -> SmallVec<[i64; 4]> {
    let mut s: SmallVec<[i64; 4]> = SmallVec::from_elem(0, dims.len());
    let mut acc = 1i64;
    for i in (0..dims.len()).rev() {
        s[i] = acc;
        acc *= dims[i] as i64;
    }
    s
}

/// The Cranelift type of one element of `dtype` (bools are bytes holding 0 or 1).
pub(crate) fn clty(dtype: DType) -> ir::Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::Bool => types::I8,
    }
}

/// An internal lowering error (a graph the JIT cannot handle).
pub(crate) fn jit_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Jit, msg.into())
}

/// The body of a loop nest: gets the loop indices and the offset of every access.
pub(crate) type NestBody<'f, 'a, 'b> =
    dyn FnMut(&mut Ctx<'a, 'b>, &[ir::Value], &[ir::Value]) -> Result<()> + 'f;

/// The state of one function being lowered.
pub(crate) struct Ctx<'a, 'b> {
    /// The Cranelift function builder.
    pub fb: &'a mut FunctionBuilder<'b>,
    /// The module (for imports): a `JITModule` for code run in this process, an object
    /// module for exported code.
    pub module: &'a mut dyn Module,
    /// Where the code will run, which decides how helpers and constants are reached.
    pub(crate) dest: crate::Destination,
    /// The graph.
    pub graph: &'a Graph,
    /// The compile options.
    pub opts: &'a crate::JitOptions,
    /// Where every IR value lives (filled as lowering proceeds).
    pub slots: Vec<Option<Slot>>,
    /// Constants whose data the code points to (kept alive by the compiled function).
    pub consts: &'a mut Vec<Literal>,
    /// The buffer plan of the graph.
    pub plan: &'a Plan,
    /// Whether the target has fused multiply-add (used by [`crate::MathMode::Fast`] only).
    pub has_fma: bool,
    /// The block code jumps to when it fails at run time, with the status (an i32) as its
    /// parameter; `None` in functions that cannot report failure (the scalar entry, kernels).
    pub(crate) fail: Option<ir::Block>,
    /// The most bytes a reverse `taped_while`'s tape may grow to.
    pub(crate) tape_limit: usize,
    ws: Option<ir::Value>,
    outs: Vec<Option<ir::Value>>,
    imports: HashMap<String, ir::FuncRef>,
    /// Rank-0 values whose `sin` and `cos` are both taken in this graph (one `sincos` call
    /// serves both), and the results of calls already made.
    sincos: HashMap<Value, Option<(ir::Value, ir::Value)>>,
    /// The fast sine and cosine kernels already emitted for an argument in a block: the
    /// kernels (sine, cosine) and the quadrant, shared by `sin` and `cos` of one argument.
    pub(crate) fast_sincos: HashMap<(ir::Block, ir::Value), (ir::Value, ir::Value, ir::Value)>,
    /// A kernel's pool of vector constants (see [`vpool`]); `None` outside kernels.
    pub(crate) vpool: Option<vpool::VecPool>,
}

/// The rank-0 float values of `graph` with both a `sin` and a `cos`.
fn sincos_pairs(graph: &Graph) -> HashMap<Value, Option<(ir::Value, ir::Value)>> {
    use ferrax_ir::ops::UnaryOp;
    let mut seen: HashMap<Value, u8> = HashMap::new();
    for (_, inst) in graph.insts() {
        let bit = match inst.op {
            Op::Unary(UnaryOp::Sin) => 1,
            Op::Unary(UnaryOp::Cos) => 2,
            _ => continue,
        };
        let x = inst.args[0];
        if graph.ty(x).is_scalar() && graph.ty(x).dtype.is_float() {
            *seen.entry(x).or_insert(0) |= bit;
        }
    }
    seen.into_iter()
        .filter(|&(_, b)| b == 3)
        .map(|(x, _)| (x, None))
        .collect()
}

/// Whether the ISA of `module` has fused multiply-add instructions.
fn isa_has_fma(module: &dyn Module) -> bool {
    module
        .isa()
        .isa_flags()
        .iter()
        .any(|f| f.name == "has_fma" && f.as_bool() == Some(true))
}

impl<'a, 'b> Ctx<'a, 'b> {
    /// A context for a function whose workspace base is `ws` and whose output buffers are
    /// `outs` (addresses, for outputs living in caller buffers).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fb: &'a mut FunctionBuilder<'b>,
        module: &'a mut dyn Module,
        graph: &'a Graph,
        opts: &'a crate::JitOptions,
        plan: &'a Plan,
        consts: &'a mut Vec<Literal>,
        ws: Option<ir::Value>,
        outs: Vec<Option<ir::Value>>,
    ) -> Self {
        let slots = vec![None; graph.num_values()];
        let has_fma = isa_has_fma(module);
        let sincos = sincos_pairs(graph);
        Ctx {
            dest: crate::Destination::Process,
            sincos,
            fast_sincos: HashMap::new(),
            vpool: None,
            has_fma,
            fb,
            module,
            graph,
            opts,
            slots,
            consts,
            plan,
            fail: None,
            tape_limit: ferrax_ir::MAX_BYTES,
            ws,
            outs,
            imports: HashMap::new(),
        }
    }

    /// An i64 constant.
    pub fn iconst(&mut self, v: i64) -> ir::Value {
        self.fb.ins().iconst(types::I64, v)
    }

    /// A constant of `dtype` equal to `v` (converted as by `as`).
    pub fn constant(&mut self, dtype: DType, v: f64) -> ir::Value {
        match dtype {
            DType::F32 => self.fb.ins().f32const(v as f32),
            DType::F64 => self.fb.ins().f64const(v),
            DType::I32 => self.fb.ins().iconst(types::I32, v as i32 as i64),
            DType::Bool => self.fb.ins().iconst(types::I8, (v != 0.0) as i64),
        }
    }

    /// A float constant `v` of the same type as `like` (splatted when `like` is a vector).
    pub fn const_like(&mut self, like: ir::Value, v: f64) -> ir::Value {
        let ty = self.fb.func.dfg.value_type(like);
        let s = match ty.lane_type() {
            types::F32 => self.fb.ins().f32const(v as f32),
            _ => self.fb.ins().f64const(v),
        };
        if ty.is_vector() {
            self.fb.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// The slot of an already lowered value.
    pub fn slot(&self, v: Value) -> Result<Slot> {
        self.slots[v.index()].ok_or_else(|| jit_err(format!("value {v:?} used before definition")))
    }

    /// The address of element `off` (i64 elements) of a buffer of `dtype` at `base`.
    pub fn elem_addr(&mut self, base: ir::Value, off: ir::Value, dtype: DType) -> ir::Value {
        let bytes = self.fb.ins().imul_imm_s(off, dtype.size_bytes() as i64);
        self.fb.ins().iadd(base, bytes)
    }

    /// Loads element `off` of value `v` (a register value ignores the offset).
    pub fn load(&mut self, v: Value, off: ir::Value) -> Result<ir::Value> {
        let dtype = self.graph.ty(v).dtype;
        match self.slot(v)? {
            Slot::Reg(x) => Ok(x),
            Slot::Mem(base) => Ok(self.load_at(base, off, dtype)),
        }
    }

    /// Loads element `off` of the buffer at `base`.
    pub fn load_at(&mut self, base: ir::Value, off: ir::Value, dtype: DType) -> ir::Value {
        let addr = self.elem_addr(base, off, dtype);
        self.fb
            .ins()
            .load(clty(dtype), MemFlagsData::trusted(), addr, 0)
    }

    /// Stores `x` as element `off` of the buffer at `base`.
    pub fn store_at(&mut self, base: ir::Value, off: ir::Value, x: ir::Value, dtype: DType) {
        let addr = self.elem_addr(base, off, dtype);
        self.fb.ins().store(MemFlagsData::trusted(), x, addr, 0);
    }

    /// Prepares result `r` of the current instruction: a buffer for non-scalar results (its
    /// base address is returned), nothing for rank-0 results (set by [`Ctx::store_out`]).
    pub fn alloc_result(&mut self, r: Value) -> Result<Option<ir::Value>> {
        let base = match self.plan.homes[r.index()] {
            Home::Reg => return Ok(None),
            Home::Output(k) => self.outs[k]
                .ok_or_else(|| jit_err(format!("output {k} has no buffer in this entry")))?,
            Home::Work(off) => self.ws_addr(off)?,
            Home::Param(_) | Home::Const | Home::Fused => {
                return Err(jit_err(
                    "an instruction result cannot live in an input, a constant or a fused loop",
                ))
            }
        };
        self.slots[r.index()] = Some(Slot::Mem(base));
        Ok(Some(base))
    }

    /// Writes element `off` of result `r`: stores into its buffer, or for a rank-0 result
    /// (computed outside any loop) makes `x` its register value.
    pub fn store_out(&mut self, r: Value, off: ir::Value, x: ir::Value) -> Result<()> {
        if self.graph.ty(r).is_scalar() {
            self.slots[r.index()] = Some(Slot::Reg(x));
            return Ok(());
        }
        let dtype = self.graph.ty(r).dtype;
        match self.slot(r)? {
            Slot::Mem(base) => {
                self.store_at(base, off, x, dtype);
                Ok(())
            }
            Slot::Reg(_) => Err(jit_err("non-scalar result held in a register")),
        }
    }

    /// Emits `body(i)` for `i` in `0..n` (nothing for `n = 0`, straight-line code for 1).
    pub fn for_range(
        &mut self,
        n: usize,
        body: &mut dyn FnMut(&mut Self, ir::Value) -> Result<()>,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if n == 1 {
            let z = self.iconst(0);
            return body(self, z);
        }
        let var = self.fb.declare_var(types::I64);
        let z = self.iconst(0);
        self.fb.def_var(var, z);
        let looping = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.ins().jump(looping, &[]);
        self.fb.switch_to_block(looping);
        let i = self.fb.use_var(var);
        body(self, i)?;
        let next = self.fb.ins().iadd_imm_s(i, 1);
        self.fb.def_var(var, next);
        let more = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, next, n as i64);
        self.fb.ins().brif(more, looping, &[], exit, &[]);
        self.fb.switch_to_block(exit);
        Ok(())
    }

    /// Emits a loop nest over `dims` (row-major); the body gets the indices and the offset of
    /// every access. Empty for any zero dimension.
    pub fn nest(
        &mut self,
        dims: &[usize],
        accesses: &[Access],
        body: &mut NestBody<'_, 'a, 'b>,
    ) -> Result<()> {
        if dims.contains(&0) {
            return Ok(());
        }
        let offs: SmallVec<[ir::Value; 4]> = accesses.iter().map(|a| a.base).collect();
        let mut idx = Vec::with_capacity(dims.len());
        self.nest_level(0, dims, accesses, &mut idx, &offs, body)
    }

    fn nest_level(
        &mut self,
        d: usize,
        dims: &[usize],
        accesses: &[Access],
        idx: &mut Vec<ir::Value>,
        offs: &[ir::Value],
        body: &mut NestBody<'_, 'a, 'b>,
    ) -> Result<()> {
        if d == dims.len() {
            return body(self, idx, offs);
        }
        self.for_range(dims[d], &mut |cx, i| {
            let mut next: SmallVec<[ir::Value; 4]> = SmallVec::new();
            for (a, &o) in accesses.iter().zip(offs) {
                let s = a.strides[d];
                next.push(if s == 0 || dims[d] == 1 {
                    o
                } else {
                    let t = cx.fb.ins().imul_imm_s(i, s);
                    cx.fb.ins().iadd(o, t)
                });
            }
            idx.push(i);
            cx.nest_level(d + 1, dims, accesses, idx, &next, body)?;
            idx.pop();
            Ok(())
        })
    }

    /// With [`crate::JitOptions::flush_subnormals`], switches the calling thread to flushing
    /// subnormals and returns its previous floating-point control word, which
    /// [`Ctx::leave_fp_mode`] restores before each return of the entry (see `crate::fp_env`).
    pub fn enter_fp_mode(&mut self) -> Result<Option<ir::Value>> {
        if !self.opts.flush_subnormals {
            return Ok(None);
        }
        let saved = self.call("ferrax_fp_flush_enter", &[], &[types::I64], &[])?;
        Ok(saved.first().copied())
    }

    /// Restores the control word [`Ctx::enter_fp_mode`] saved, if it saved one.
    pub fn leave_fp_mode(&mut self, saved: Option<ir::Value>) -> Result<()> {
        if let Some(word) = saved {
            self.call("ferrax_fp_restore", &[types::I64], &[], &[word])?;
        }
        Ok(())
    }

    /// Calls an imported `ferrax_*` helper (or libc) function. In an exported object the
    /// helper is either emitted into the object or replaced by a C library call
    /// ([`portable::call`]), or has a libm equivalent ([`crate::symbols::object_symbol`]),
    /// which the object imports instead; other helpers are an error naming what needs them.
    pub fn call(
        &mut self,
        name: &str,
        params: &[ir::Type],
        rets: &[ir::Type],
        args: &[ir::Value],
    ) -> Result<SmallVec<[ir::Value; 1]>> {
        let name = match self.dest {
            crate::Destination::Process => name,
            crate::Destination::Object => {
                if let Some(results) = portable::call(self, name, args)? {
                    return Ok(results);
                }
                crate::symbols::object_symbol(name)?
            }
        };
        let fref = match self.imports.get(name) {
            Some(&f) => f,
            None => {
                let mut sig = Signature::new(self.module.isa().default_call_conv());
                sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
                sig.returns.extend(rets.iter().map(|&t| AbiParam::new(t)));
                let id = self
                    .module
                    .declare_function(name, Linkage::Import, &sig)
                    .map_err(|e| jit_err(format!("cannot import {name}: {e}")))?;
                let f = self.module.declare_func_in_func(id, self.fb.func);
                self.imports.insert(name.to_string(), f);
                f
            }
        };
        let call = self.fb.ins().call(fref, args);
        Ok(SmallVec::from_slice(self.fb.inst_results(call)))
    }

    /// The address of a read-only data object holding `bytes` (aligned to 16 bytes), defined
    /// in the module: how an exported object carries its array constants, which code run in
    /// this process instead reads in place.
    pub fn data_addr(&mut self, bytes: Vec<u8>) -> Result<ir::Value> {
        let id = self
            .module
            .declare_anonymous_data(false, false)
            .map_err(|e| jit_err(format!("cranelift declare data: {e}")))?;
        let mut desc = cranelift_module::DataDescription::new();
        desc.define(bytes.into_boxed_slice());
        desc.set_align(16);
        self.module
            .define_data(id, &desc)
            .map_err(|e| jit_err(format!("cranelift define data: {e}")))?;
        let gv = self.module.declare_data_in_func(id, self.fb.func);
        Ok(self.fb.ins().symbol_value(types::I64, gv))
    }

    /// Copies all elements of `v` into the buffer at `dst`.
    pub fn copy_into(&mut self, v: Value, dst: ir::Value) -> Result<()> {
        let ty = self.graph.ty(v).clone();
        match self.slot(v)? {
            Slot::Reg(x) => {
                let z = self.iconst(0);
                self.store_at(dst, z, x, ty.dtype);
            }
            Slot::Mem(src) => {
                let bytes = ty.size() * ty.dtype.size_bytes();
                if bytes > 0 {
                    let n = self.iconst(bytes as i64);
                    let cfg = self.module.isa().frontend_config();
                    self.fb.call_memcpy(cfg, dst, src, n);
                }
            }
        }
        Ok(())
    }

    /// Lowers every instruction of the graph, in order.
    ///
    /// `FERRAX_GROUPS=1` prints every fused group (its root and members) and every instruction
    /// lowered on its own, a debugging aid for fusion.
    pub fn lower_body(&mut self) -> Result<()> {
        let graph = self.graph;
        let show = std::env::var_os("FERRAX_GROUPS").is_some();
        let unread = index::unread_splats(graph);
        for (i, (_, inst)) in graph.insts().enumerate() {
            match self.plan.fusion.root[i] {
                // A splat only scatters fill from (see `index::unread_splats`): never stored.
                Some(r)
                    if r == i
                        && unread[i]
                        && self.plan.fusion.members[i].iter().all(|&m| m == i) => {}
                // A constant gather alone in its group whose indices repeat with a shift
                // reads each period at immediate offsets (see `periodic`).
                Some(r)
                    if r == i
                        && self.plan.fusion.members[i][..] == [i]
                        && periodic::lower(self, inst)? =>
                {
                    if show {
                        eprintln!("periodic gather at {i}");
                    }
                }
                Some(r) if r == i => {
                    if show {
                        let members = &self.plan.fusion.members[i];
                        eprintln!("group at {i} ({}): members {members:?}", inst.op.name());
                    }
                    fused::lower(self, i)?
                }
                Some(_) => {}
                None => {
                    if show {
                        eprintln!("alone at {i}: {}", inst.op.name());
                    }
                    self.lower_inst(i, inst)?
                }
            }
        }
        Ok(())
    }

    /// The address `off` bytes into this function's workspace.
    ///
    /// A context without a workspace belongs to a plan whose workspace is empty, so every
    /// region it asks for is empty (a zero-size tensor) and is never read or written; it gets
    /// the address `off`.
    pub fn ws_addr(&mut self, off: usize) -> Result<ir::Value> {
        Ok(match self.ws {
            Some(ws) => self.fb.ins().iadd_imm_s(ws, off as i64),
            None => self.iconst(off as i64),
        })
    }

    /// Lowers `body` inline at the current position, as a graph of its own planned by `plan`:
    /// its parameters take the slots `args`, its non-scalar outputs are written to the buffers
    /// `dests` (`None` for rank-0 outputs), and its workspace starts `ws_off` bytes into this
    /// function's workspace. Returns the slots of its outputs: registers for rank-0 outputs,
    /// the `dests` buffers for the others.
    pub fn lower_inline(
        &mut self,
        body: &Graph,
        plan: &Plan,
        args: &[Slot],
        dests: &[Option<ir::Value>],
        ws_off: usize,
    ) -> Result<Vec<Slot>> {
        if args.len() != body.params().len() || dests.len() != body.outputs().len() {
            return Err(jit_err("a body's arity does not match its operands"));
        }
        let ws = if plan.workspace > 0 {
            Some(self.ws_addr(ws_off)?)
        } else {
            None
        };
        let mut sub = Ctx {
            has_fma: self.has_fma,
            fb: &mut *self.fb,
            module: &mut *self.module,
            dest: self.dest,
            graph: body,
            opts: self.opts,
            slots: vec![None; body.num_values()],
            consts: &mut *self.consts,
            plan,
            fail: self.fail,
            tape_limit: self.tape_limit,
            ws,
            outs: dests.to_vec(),
            imports: std::mem::take(&mut self.imports),
            sincos: sincos_pairs(body),
            fast_sincos: HashMap::new(),
            vpool: self.vpool.take(),
        };
        let res = sub.bind_and_lower(args, dests);
        self.imports = std::mem::take(&mut sub.imports);
        self.vpool = sub.vpool.take();
        res
    }

    /// Binds the parameters, lowers the body and collects the output slots (see
    /// [`Ctx::lower_inline`]).
    fn bind_and_lower(&mut self, args: &[Slot], dests: &[Option<ir::Value>]) -> Result<Vec<Slot>> {
        let graph = self.graph;
        for (&p, &a) in graph.params().iter().zip(args) {
            let ty = graph.ty(p);
            self.slots[p.index()] = Some(match a {
                Slot::Mem(base) if ty.is_scalar() => {
                    let z = self.iconst(0);
                    Slot::Reg(self.load_at(base, z, ty.dtype))
                }
                Slot::Reg(_) if !ty.is_scalar() => {
                    return Err(jit_err("a tensor operand of a body is held in a register"))
                }
                s => s,
            });
        }
        self.lower_body()?;
        let mut outs = Vec::with_capacity(dests.len());
        for (k, &o) in graph.outputs().iter().enumerate() {
            if graph.ty(o).is_scalar() {
                let z = self.iconst(0);
                outs.push(Slot::Reg(self.load(o, z)?));
            } else {
                let dst =
                    dests[k].ok_or_else(|| jit_err("a tensor output of a body has no buffer"))?;
                if self.plan.homes[o.index()] != Home::Output(k) {
                    self.copy_into(o, dst)?;
                }
                outs.push(Slot::Mem(dst));
            }
        }
        Ok(outs)
    }

    /// Lowers one instruction (at position `i` of the body), dispatching on its family.
    fn lower_inst(&mut self, i: usize, inst: &InstData) -> Result<()> {
        if let Some(x) = inst
            .results
            .first()
            .and_then(|r| self.plan.alias[r.index()])
        {
            // A view: the result is the operand's buffer.
            self.slots[inst.results[0].index()] = Some(self.slot(x)?);
            return Ok(());
        }
        match &inst.op {
            Op::Unary(u @ (ferrax_ir::ops::UnaryOp::Sin | ferrax_ir::ops::UnaryOp::Cos))
                if self.sincos.contains_key(&inst.args[0]) && !self.opts.math.fast_for(1) =>
            {
                self.lower_sincos(*u, inst)
            }
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Convert(_) => {
                self.lower_elementwise(inst)
            }
            Op::Literal(op) => literal::lower(self, op, inst),
            Op::Shape(op) => match self.plan.fusion.absorbed_dot[i] {
                Some(d) => {
                    let graph = self.graph;
                    match graph.insts().nth(d) {
                        Some((
                            _,
                            dot @ InstData {
                                op: Op::Dot(dop), ..
                            },
                        )) => dot::lower_to(self, dop, dot, inst.results[0], true),
                        _ => Err(jit_err("an absorbed product is not a dot_general")),
                    }
                }
                None => shape::lower(self, op, inst),
            },
            Op::Reduce(op) => reduce::lower(self, op, inst),
            Op::Dot(op) => dot::lower_to(self, op, inst, inst.results[0], false),
            Op::Conv(op) => conv::lower(self, op, inst),
            Op::Index(op) => index::lower(self, op, inst),
            Op::Control(op) => control::lower(self, op, i, inst),
            Op::Window(op) => window::lower(self, op, inst),
        }
    }

    /// Emits one element of an elementwise op from its operand elements.
    pub fn emit_elementwise(
        &mut self,
        op: &Op,
        args: &[Value],
        xs: &[ir::Value],
    ) -> Result<ir::Value> {
        let dt = |k: usize| self.graph.ty(args[k]).dtype;
        match op {
            Op::Unary(u) => {
                let n = self.graph.ty(args[0]).size();
                unary::emit(self, *u, dt(0), xs[0], n)
            }
            Op::Binary(b) => {
                let n = self.graph.ty(args[0]).size();
                binary::emit(self, *b, dt(0), xs[0], xs[1], n)
            }
            Op::Compare(c) => {
                let d = if args.len() == 3 { dt(1) } else { dt(0) };
                compare::emit(self, *c, d, xs)
            }
            Op::Convert(c) => convert::emit(self, *c, dt(0), xs[0]),
            Op::Literal(_)
            | Op::Shape(_)
            | Op::Reduce(_)
            | Op::Dot(_)
            | Op::Conv(_)
            | Op::Index(_)
            | Op::Control(_)
            | Op::Window(_) => Err(jit_err(format!("{} is not elementwise", op.name()))),
        }
    }

    /// Lowers a rank-0 `sin` or `cos` whose argument also has the other: the first of the
    /// two makes one `ferrax_sincos_*` call (bit-identical to separate calls), the second
    /// reuses its result.
    fn lower_sincos(&mut self, op: ferrax_ir::ops::UnaryOp, inst: &InstData) -> Result<()> {
        let x = inst.args[0];
        let (s, c) = match self.sincos.get(&x).copied().flatten() {
            Some(sc) => sc,
            None => {
                let dtype = self.graph.ty(x).dtype;
                let t = clty(dtype);
                let bytes = dtype.size_bytes() as u32;
                let slot = self.fb.create_sized_stack_slot(ir::StackSlotData::new(
                    ir::StackSlotKind::ExplicitSlot,
                    2 * bytes,
                    3,
                ));
                let ps = self.fb.ins().stack_addr(types::I64, slot, 0);
                let pc = self.fb.ins().stack_addr(types::I64, slot, bytes as i32);
                let z = self.iconst(0);
                let xv = self.load(x, z)?;
                let name = format!("ferrax_sincos_{dtype}");
                self.call(&name, &[t, types::I64, types::I64], &[], &[xv, ps, pc])?;
                let s = self.fb.ins().load(t, MemFlagsData::trusted(), ps, 0);
                let c = self.fb.ins().load(t, MemFlagsData::trusted(), pc, 0);
                self.sincos.insert(x, Some((s, c)));
                (s, c)
            }
        };
        let y = if op == ferrax_ir::ops::UnaryOp::Sin {
            s
        } else {
            c
        };
        let z = self.iconst(0);
        self.store_out(inst.results[0], z, y)
    }

    /// Lowers an elementwise op as one flat loop over its elements (one loop per op until
    /// fusion lands).
    fn lower_elementwise(&mut self, inst: &InstData) -> Result<()> {
        let r = inst.results[0];
        let n = self.graph.ty(r).size();
        self.alloc_result(r)?;
        let args: SmallVec<[Value; 4]> = inst.args.clone();
        self.for_range(n, &mut |cx, i| {
            let mut xs: SmallVec<[ir::Value; 4]> = SmallVec::new();
            for &a in &args {
                xs.push(cx.load(a, i)?);
            }
            let y = cx.emit_elementwise(&inst.op, &args, &xs)?;
            cx.store_out(r, i, y)
        })
    }
}
