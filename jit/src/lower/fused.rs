//! Lowering of a fused group (see `crate::fuse`): one loop nest over the root's elements that
//! reads the group's leaves through affine maps, evaluates every member with the elementwise
//! emitters (intermediates stay in SSA values), and stores only the root.
//!
//! The result's dimensions are first coalesced (adjacent dimensions merge when every access
//! walks them as one), so most groups are a flat loop or a row loop around a contiguous inner
//! loop. The inner loop is vectorised with 128-bit vectors (`f32x4`, `f64x2`) when every value
//! of the group has one float dtype, every op has a vector form, and every read of the inner
//! dimension is contiguous or stride-0 (a broadcast, splatted once per row); a scalar tail
//! finishes the row. Groups of at least [`PAR_MIN`] elements are compiled as a separate kernel
//! over a range of the outermost dimension and run on all cores through the imported
//! `ferrax_parallel_for`.

use super::{clty, jit_err, Ctx, Slot};
use crate::MathMode;
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, Function, InstBuilder, MemFlagsData, Signature,
    StackSlotData, StackSlotKind,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::Module;
use ferrax_ir::ops::{BinaryOp, ConvertOp, ShapeOp, UnaryOp};
use ferrax_ir::{DType, Graph, InstData, Op, Result, Value};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// Groups with at least this many elements run on all cores.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// One leaf read: `leaf` at element offset `Σ idx[d]·strides[d]` (over the coalesced dims).
#[derive(Clone, Debug)]
struct Read {
    leaf: Value,
    strides: SmallVec<[i64; 4]>,
}

/// Everything needed to emit a group's loop nest.
struct Spec {
    /// Member instructions (positions), in body order; the last is the root.
    members: Vec<usize>,
    /// The root's result.
    out: Value,
    /// The coalesced loop dimensions.
    dims: SmallVec<[usize; 4]>,
    /// The leaf reads.
    reads: Vec<Read>,
    /// The output's strides over the coalesced dims.
    out_strides: SmallVec<[i64; 4]>,
    /// The read index of every leaf read by an elementwise member and of every broadcast
    /// member's result.
    read_of: HashMap<Value, usize>,
    /// The vector type of the inner loop, when it vectorises.
    vector: Option<ir::Type>,
}

/// Whether `op` has a vector form (`fast`: whether transcendentals use the fast forms).
fn vectorizable(op: &Op, fast: bool) -> bool {
    match op {
        Op::Unary(u) => match u {
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Square
            | UnaryOp::Reciprocal
            | UnaryOp::IntegerPow(_) => true,
            UnaryOp::Exp
            | UnaryOp::Expm1
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Logistic => fast,
            UnaryOp::Sign
            | UnaryOp::Round
            | UnaryOp::Exp2
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh
            | UnaryOp::Erf => false,
        },
        Op::Binary(b) => matches!(
            b,
            BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Max
                | BinaryOp::Min
        ),
        Op::Convert(ConvertOp::StopGradient) => true,
        Op::Shape(ShapeOp::BroadcastInDim { .. }) => true,
        Op::Convert(ConvertOp::Convert(_))
        | Op::Compare(_)
        | Op::Literal(_)
        | Op::Shape(_)
        | Op::Reduce(_)
        | Op::Dot(_)
        | Op::Index(_)
        | Op::Control(_) => false,
    }
}

/// Row-major element strides of `dims`.
fn row_major(dims: &[usize]) -> SmallVec<[i64; 4]> {
    super::strides(dims)
}

/// Builds the spec of the group rooted at position `root`.
fn spec(
    graph: &Graph,
    insts: &[&InstData],
    fusion_root: &[Option<usize>],
    root: usize,
    math: MathMode,
) -> Spec {
    let members: Vec<usize> = (0..=root)
        .filter(|&j| fusion_root[j] == Some(root))
        .collect();
    let out = insts[root].results[0];
    let rdims: SmallVec<[usize; 4]> = SmallVec::from_slice(graph.ty(out).dims());
    let contig = row_major(&rdims);
    let mut is_member_result: HashMap<Value, ()> = HashMap::new();
    for &j in &members {
        is_member_result.insert(insts[j].results[0], ());
    }
    let mut reads: Vec<Read> = Vec::new();
    let mut read_of: HashMap<Value, usize> = HashMap::new();
    for &j in &members {
        let inst = insts[j];
        match &inst.op {
            Op::Shape(ShapeOp::BroadcastInDim { dims, .. }) => {
                let x = inst.args[0];
                let xdims = graph.ty(x).dims();
                let xs = row_major(xdims);
                let mut s: SmallVec<[i64; 4]> = SmallVec::from_elem(0, rdims.len());
                for (i, &d) in dims.iter().enumerate() {
                    if xdims[i] != 1 {
                        s[d] = xs[i];
                    }
                }
                read_of.insert(inst.results[0], reads.len());
                reads.push(Read {
                    leaf: x,
                    strides: s,
                });
            }
            _ => {
                for &a in &inst.args {
                    if !is_member_result.contains_key(&a) && !read_of.contains_key(&a) {
                        read_of.insert(a, reads.len());
                        let strides = if graph.ty(a).is_scalar() {
                            SmallVec::from_elem(0, rdims.len())
                        } else {
                            contig.clone()
                        };
                        reads.push(Read { leaf: a, strides });
                    }
                }
            }
        }
    }
    // Coalesce: drop size-1 dims, merge runs every access walks as one.
    let mut dims: SmallVec<[usize; 4]> = SmallVec::new();
    let mut cols: Vec<SmallVec<[i64; 4]>> = vec![SmallVec::new(); reads.len() + 1];
    for d in 0..rdims.len() {
        if rdims[d] == 1 {
            continue;
        }
        let st = |k: usize| {
            if k < reads.len() {
                reads[k].strides[d]
            } else {
                contig[d]
            }
        };
        let merge = !dims.is_empty()
            && (0..=reads.len()).all(|k| {
                let prev = *cols[k].last().expect("a previous dim");
                prev == st(k) * rdims[d] as i64
            });
        if merge {
            let last = dims.len() - 1;
            dims[last] *= rdims[d];
            for (k, c) in cols.iter_mut().enumerate() {
                let l = c.len() - 1;
                c[l] = st(k);
            }
        } else {
            dims.push(rdims[d]);
            for (k, c) in cols.iter_mut().enumerate() {
                c.push(st(k));
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for c in cols.iter_mut() {
            c.push(0);
        }
    }
    let out_strides = cols.pop().expect("the output column");
    for (r, c) in reads.iter_mut().zip(cols) {
        r.strides = c;
    }
    // Vectorise when every value has one float dtype and every op and inner read allows it.
    let dtype = graph.ty(out).dtype;
    let inner = dims.len() - 1;
    let same_dtype = members.iter().all(|&j| {
        insts[j].results.iter().all(|&r| graph.ty(r).dtype == dtype)
            && insts[j].args.iter().all(|&a| graph.ty(a).dtype == dtype)
    });
    let ok = dtype.is_float()
        && same_dtype
        && out_strides[inner] == 1
        && members
            .iter()
            .all(|&j| vectorizable(&insts[j].op, math.fast_for(graph.ty(out).size())))
        && reads.iter().all(|r| matches!(r.strides[inner], 0 | 1));
    let vector = ok.then(|| {
        if dtype == DType::F64 {
            types::F64X2
        } else {
            types::F32X4
        }
    });
    Spec {
        members,
        out,
        dims,
        reads,
        out_strides,
        read_of,
        vector,
    }
}

/// Lowers the group rooted at instruction position `root`.
pub(crate) fn lower(cx: &mut Ctx, root: usize) -> Result<()> {
    let graph = cx.graph;
    let insts: Vec<&InstData> = graph.insts().map(|(_, d)| d).collect();
    let sp = spec(graph, &insts, &cx.plan.fusion.root, root, cx.opts.math);
    cx.alloc_result(sp.out)?;
    let n: usize = sp.dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    if n >= PAR_MIN && sp.dims[0] >= 2 {
        return parallel(cx, &sp, &insts);
    }
    let start = cx.iconst(0);
    let end = cx.iconst(sp.dims[0] as i64);
    emit_range(cx, &sp, &insts, start, end)
}

/// Emits the loop nest for indices `start..end` of the outermost coalesced dimension.
fn emit_range(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    start: ir::Value,
    end: ir::Value,
) -> Result<()> {
    let nacc = sp.reads.len() + 1;
    let stride = |k: usize, d: usize| {
        if k < sp.reads.len() {
            sp.reads[k].strides[d]
        } else {
            sp.out_strides[d]
        }
    };
    let c = sp.dims.len();
    if c == 1 {
        let zero = cx.iconst(0);
        let offs: SmallVec<[ir::Value; 8]> = (0..nacc).map(|_| zero).collect();
        return emit_row(cx, sp, insts, &offs, start, end);
    }
    // Outer dimension: a dynamic range; middle dimensions: a static nest; inner: a row.
    counted_loop(cx, start, end, 1, &mut |cx, i0| {
        let offs: SmallVec<[ir::Value; 8]> = (0..nacc)
            .map(|k| {
                let s = stride(k, 0);
                if s == 0 {
                    cx.iconst(0)
                } else {
                    cx.fb.ins().imul_imm_s(i0, s)
                }
            })
            .collect();
        let mid: SmallVec<[usize; 4]> = sp.dims[1..c - 1].iter().copied().collect();
        let accesses: Vec<super::Access> = (0..nacc)
            .map(|k| super::Access {
                base: offs[k],
                strides: (1..c - 1).map(|d| stride(k, d)).collect(),
            })
            .collect();
        let inner = sp.dims[c - 1] as i64;
        cx.nest(&mid, &accesses, &mut |cx, _, o| {
            let lo = cx.iconst(0);
            let hi = cx.iconst(inner);
            emit_row(cx, sp, insts, o, lo, hi)
        })?;
        Ok(())
    })?;
    Ok(())
}

/// A loop `for (i = lo; i + step <= hi; i += step)`; returns the index at exit.
fn counted_loop(
    cx: &mut Ctx,
    lo: ir::Value,
    hi: ir::Value,
    step: i64,
    body: &mut dyn FnMut(&mut Ctx, ir::Value) -> Result<()>,
) -> Result<ir::Value> {
    let var = cx.fb.declare_var(types::I64);
    cx.fb.def_var(var, lo);
    let header = cx.fb.create_block();
    let looping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    cx.fb.ins().jump(header, &[]);
    cx.fb.switch_to_block(header);
    let i = cx.fb.use_var(var);
    let next = cx.fb.ins().iadd_imm_s(i, step);
    let more = cx.fb.ins().icmp(IntCC::SignedLessThanOrEqual, next, hi);
    cx.fb.ins().brif(more, looping, &[], exit, &[]);
    cx.fb.switch_to_block(looping);
    body(cx, i)?;
    let i2 = cx.fb.use_var(var);
    let next2 = cx.fb.ins().iadd_imm_s(i2, step);
    cx.fb.def_var(var, next2);
    cx.fb.ins().jump(header, &[]);
    cx.fb.switch_to_block(exit);
    Ok(cx.fb.use_var(var))
}

/// Emits one row: inner indices `lo..hi`, with `offs` the element offset of every access
/// (reads, then the output) at inner index 0.
fn emit_row(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    offs: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
) -> Result<()> {
    let inner = sp.dims.len() - 1;
    let nr = sp.reads.len();
    let mut from = lo;
    if let Some(vty) = sp.vector {
        let lanes = vty.lane_count() as i64;
        // Loop-invariant reads of the row (stride 0) are splatted once.
        let mut inv: SmallVec<[Option<ir::Value>; 8]> = SmallVec::new();
        for (k, r) in sp.reads.iter().enumerate() {
            inv.push(if r.strides[inner] == 0 {
                let x = cx.load(r.leaf, offs[k])?;
                Some(cx.fb.ins().splat(vty, x))
            } else {
                None
            });
        }
        from = counted_loop(cx, lo, hi, lanes, &mut |cx, i| {
            let mut vals: SmallVec<[ir::Value; 8]> = SmallVec::new();
            for (k, r) in sp.reads.iter().enumerate() {
                vals.push(match inv[k] {
                    Some(v) => v,
                    None => {
                        let Slot::Mem(base) = cx.slot(r.leaf)? else {
                            return Err(jit_err("a contiguous read of a register value"));
                        };
                        let o = cx.fb.ins().iadd(offs[k], i);
                        let addr = cx.elem_addr(base, o, cx.graph.ty(r.leaf).dtype);
                        cx.fb
                            .ins()
                            .load(vty, MemFlagsData::new().with_notrap(), addr, 0)
                    }
                });
            }
            let y = eval(cx, sp, insts, &vals, Some(vty))?;
            let Slot::Mem(base) = cx.slot(sp.out)? else {
                return Err(jit_err("a fused result without a buffer"));
            };
            let o = cx.fb.ins().iadd(offs[nr], i);
            let addr = cx.elem_addr(base, o, cx.graph.ty(sp.out).dtype);
            cx.fb
                .ins()
                .store(MemFlagsData::new().with_notrap(), y, addr, 0);
            Ok(())
        })?;
    }
    counted_loop(cx, from, hi, 1, &mut |cx, i| {
        let mut vals: SmallVec<[ir::Value; 8]> = SmallVec::new();
        for (k, r) in sp.reads.iter().enumerate() {
            let s = r.strides[inner];
            let o = match s {
                0 => offs[k],
                1 => cx.fb.ins().iadd(offs[k], i),
                _ => {
                    let t = cx.fb.ins().imul_imm_s(i, s);
                    cx.fb.ins().iadd(offs[k], t)
                }
            };
            vals.push(cx.load(r.leaf, o)?);
        }
        let y = eval(cx, sp, insts, &vals, None)?;
        let s = sp.out_strides[inner];
        let t = cx.fb.ins().imul_imm_s(i, s);
        let o = cx.fb.ins().iadd(offs[nr], t);
        cx.store_out(sp.out, o, y)
    })?;
    Ok(())
}

/// Evaluates the members on one element (or vector of elements) given the read values.
fn eval(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    reads: &[ir::Value],
    vector: Option<ir::Type>,
) -> Result<ir::Value> {
    let mut vals: HashMap<Value, ir::Value> = HashMap::new();
    let mut last = None;
    for &j in &sp.members {
        let inst = insts[j];
        let r = inst.results[0];
        let y = match &inst.op {
            Op::Shape(ShapeOp::BroadcastInDim { .. }) => reads[sp.read_of[&r]],
            op => {
                let mut xs: SmallVec<[ir::Value; 4]> = SmallVec::new();
                for &a in &inst.args {
                    xs.push(match vals.get(&a) {
                        Some(&v) => v,
                        None => {
                            let v = reads[sp.read_of[&a]];
                            match vector {
                                Some(vty) if !cx.fb.func.dfg.value_type(v).is_vector() => {
                                    cx.fb.ins().splat(vty, v)
                                }
                                _ => v,
                            }
                        }
                    });
                }
                cx.emit_elementwise(op, &inst.args, &xs)?
            }
        };
        vals.insert(r, y);
        last = Some(y);
    }
    last.ok_or_else(|| jit_err("an empty fused group"))
}

/// Compiles the group as a kernel `fn(ctx, start, end)` over a range of the outermost
/// dimension and calls it through `ferrax_parallel_for`. `ctx` is a stack array holding, per
/// read, the leaf's buffer address or its scalar value, then the output address.
fn parallel(cx: &mut Ctx, sp: &Spec, insts: &[&InstData]) -> Result<()> {
    let nr = sp.reads.len();
    let ptr = types::I64;
    // The context array in the caller's frame.
    let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (8 * (nr + 1)) as u32,
        3,
    ));
    let flags = MemFlagsData::trusted();
    let ctxp = cx.fb.ins().stack_addr(ptr, slot, 0);
    for (k, r) in sp.reads.iter().enumerate() {
        let v = match cx.slot(r.leaf)? {
            Slot::Mem(a) | Slot::Reg(a) => a,
        };
        cx.fb.ins().store(flags, v, ctxp, (8 * k) as i32);
    }
    let Slot::Mem(out) = cx.slot(sp.out)? else {
        return Err(jit_err("a fused result without a buffer"));
    };
    cx.fb.ins().store(flags, out, ctxp, (8 * nr) as i32);

    // The kernel.
    let cc = cx.module.isa().default_call_conv();
    let mut sig = Signature::new(cc);
    sig.params.extend([AbiParam::new(ptr); 3]);
    let id = cx
        .module
        .declare_anonymous_function(&sig)
        .map_err(|e| jit_err(format!("cranelift declare kernel: {e}")))?;
    let mut func = Function::with_name_signature(Default::default(), sig);
    let mut fbc = FunctionBuilderContext::new();
    {
        let cfg = cx.module.isa().frontend_config();
        let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let (kctx, start, end) = {
            let p = fb.block_params(entry);
            (p[0], p[1], p[2])
        };
        let mut kx = Ctx::new(
            &mut fb,
            &mut *cx.module,
            cx.graph,
            cx.opts,
            cx.plan,
            &mut *cx.consts,
            None,
            Vec::new(),
        );
        for (k, r) in sp.reads.iter().enumerate() {
            let ty = kx.graph.ty(r.leaf);
            let s = match cx.slots[r.leaf.index()] {
                Some(Slot::Mem(_)) => Slot::Mem(kx.fb.ins().load(ptr, flags, kctx, (8 * k) as i32)),
                Some(Slot::Reg(_)) => Slot::Reg(kx.fb.ins().load(
                    clty(ty.dtype),
                    flags,
                    kctx,
                    (8 * k) as i32,
                )),
                None => return Err(jit_err("a fused leaf used before definition")),
            };
            kx.slots[r.leaf.index()] = Some(s);
        }
        let o = kx.fb.ins().load(ptr, flags, kctx, (8 * nr) as i32);
        kx.slots[sp.out.index()] = Some(Slot::Mem(o));
        emit_range(&mut kx, sp, insts, start, end)?;
        kx.fb.ins().return_(&[]);
        fb.seal_all_blocks();
        fb.finalize(cfg);
    }
    let mut ctx = cranelift_codegen::Context::for_function(func);
    let t = std::time::Instant::now();
    cx.module
        .define_function(id, &mut ctx)
        .map_err(|e| jit_err(format!("cranelift codegen (kernel): {e:?}")))?;
    crate::stats::codegen(t.elapsed());
    let fref = cx.module.declare_func_in_func(id, cx.fb.func);
    let kaddr = cx.fb.ins().func_addr(ptr, fref);
    let n = cx.iconst(sp.dims[0] as i64);
    // Split points stay multiples of the vector width for flat loops.
    let align = match (sp.dims.len(), sp.vector) {
        (1, Some(v)) => v.lane_count() as i64,
        _ => 1,
    };
    let al = cx.iconst(align);
    cx.call("ferrax_parallel_for", &[ptr; 4], &[], &[kaddr, ctxp, n, al])?;
    Ok(())
}
