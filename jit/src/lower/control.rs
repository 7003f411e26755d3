//! Lowering of control flow: `switch` becomes a native multi-way branch, `while` and `scan`
//! native loops, and `call` is inlined.
//!
//! Every body is lowered inline ([`Ctx::lower_inline`]) in blocks of the function being built,
//! with its parameters bound to the operands' slots, so nested control flow simply nests
//! blocks. Nothing is unrolled: the code size does not depend on trip counts.
//!
//! Loop carries of rank 0 are block parameters of the loop header (registers). Carried tensors
//! are double-buffered: the header's block parameters hold the addresses of the *current* and
//! the *next* buffer, an iteration reads the current one and writes the next one, and the back
//! edge swaps the two. The first buffer is the op's result buffer and the second lies in the
//! op's scratch region (see `plan.rs`), so a loop that exits after an even number of swaps has
//! its results in place already; otherwise one copy per carried tensor moves them there.
//!
//! `taped_while` runs its forward loop with the same carries. Folding forwards, each tape entry
//! lives in scratch buffers only until the step consumes it in the same iteration. Folding
//! backwards, the entries are appended to a tape on the heap (grown by doubling through the
//! imported `ferrax_tape_grow`, freed by `ferrax_tape_free` when the op ends), then a second
//! loop walks the tape from the last entry to the first.
//!
//! Failure at run time: with `JitOptions::max_while_iterations` set, every `while` loop (and
//! `taped_while`'s forward loop) carries an iteration counter and jumps to the function's
//! failure block (`Ctx::fail`) with [`Status::WhileLimit`] when it would exceed the limit. A
//! backward `taped_while` checks, before each append, that the tape stays within
//! `Ctx::tape_limit` ([`Status::TapeLimit`]) and that growing it succeeded
//! ([`Status::TapeAlloc`]). Failures inside a backward `taped_while` (its own or its bodies')
//! first pass through a local block that frees the tape, whose address and capacity are kept
//! in a stack slot for that purpose. Nothing is written to the outputs after a failure but
//! what was written before it; the caller gets an error and must not use them.

use super::{clty, jit_err, Ctx, Slot};
use crate::compiled::Status;
use crate::plan::{bodies, ControlPlan};
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, BlockArg, InstBuilder, StackSlotData, StackSlotKind,
};
use cranelift_frontend::Switch;
use cranelift_module::Module;
use ferrax_ir::ops::ControlOp;
use ferrax_ir::{Graph, InstData, Result, Type, Value};

/// Lowers the control-flow instruction at position `i` of the current body.
pub(crate) fn lower(cx: &mut Ctx, op: &ControlOp, i: usize, inst: &InstData) -> Result<()> {
    // Re-check the type rule: the bodies are trusted below to match their operands.
    let arg_tys: Vec<Type> = inst.args.iter().map(|&a| cx.graph.ty(a).clone()).collect();
    let res_tys: Vec<Type> = inst
        .results
        .iter()
        .map(|&r| cx.graph.ty(r).clone())
        .collect();
    if op.infer(&arg_tys)?.as_slice() != res_tys.as_slice() {
        return Err(jit_err(format!(
            "`{}` has result types that disagree with its type rule",
            op.name()
        )));
    }
    let plan = cx.plan;
    let cp = plan
        .controls
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| jit_err(format!("`{}` has no buffer plan", op.name())))?;
    let graphs = bodies(op);
    if graphs.len() != cp.bodies.len() {
        return Err(jit_err(format!(
            "`{}` does not match its buffer plan",
            op.name()
        )));
    }
    match op {
        ControlOp::Switch { .. } => lower_switch(cx, &graphs, cp, inst),
        ControlOp::While { n_consts, .. } => {
            lower_while(cx, graphs[0], graphs[1], *n_consts, cp, inst)
        }
        ControlOp::Scan {
            length,
            n_consts,
            n_carry,
            reverse,
            ..
        } => lower_scan(
            cx,
            graphs[0],
            &ScanShape {
                length: *length,
                n_consts: *n_consts,
                n_carry: *n_carry,
                reverse: *reverse,
            },
            cp,
            inst,
        ),
        ControlOp::TapedWhile {
            n_consts, reverse, ..
        } => {
            let bodies = [graphs[0], graphs[1], graphs[2]];
            if *reverse {
                lower_taped_reverse(cx, bodies, *n_consts, cp, inst)
            } else {
                lower_taped_forward(cx, bodies, *n_consts, cp, inst)
            }
        }
        ControlOp::CustomLinear { .. } => Err(jit_err(
            "custom_lin (the linear map of a custom_vjp function) cannot be evaluated, so it \
             cannot be compiled: custom_vjp supports reverse mode only",
        )),
        ControlOp::Call { .. } => lower_call(cx, graphs[0], cp, inst),
    }
}

/// The slots of `vals`.
fn slots_of(cx: &Ctx, vals: &[Value]) -> Result<Vec<Slot>> {
    vals.iter().map(|&v| cx.slot(v)).collect()
}

/// Prepares the results `rs` of the current instruction: the buffer of each non-scalar one.
fn result_buffers(cx: &mut Ctx, rs: &[Value]) -> Result<Vec<Option<ir::Value>>> {
    rs.iter().map(|&r| cx.alloc_result(r)).collect()
}

/// The register value of a rank-0 body output.
fn reg(s: Slot) -> Result<ir::Value> {
    match s {
        Slot::Reg(v) => Ok(v),
        Slot::Mem(_) => Err(jit_err("a rank-0 body output is held in memory")),
    }
}

/// Makes the rank-0 results among `rs` the registers `outs` (the others were written into
/// their buffers).
fn bind_scalars(cx: &mut Ctx, rs: &[Value], outs: &[Slot]) -> Result<()> {
    for (&r, &s) in rs.iter().zip(outs) {
        if cx.graph.ty(r).is_scalar() {
            cx.slots[r.index()] = Some(Slot::Reg(reg(s)?));
        }
    }
    Ok(())
}

/// Block arguments from SSA values.
fn block_args(vals: &[ir::Value]) -> Vec<BlockArg> {
    vals.iter().map(|&v| BlockArg::Value(v)).collect()
}

/// Ends the current block: on to `then` when `failed` is false, otherwise to the failure
/// block with `status`.
fn fail_if(cx: &mut Ctx, failed: ir::Value, status: Status, then: ir::Block) -> Result<()> {
    let fail = cx.fail.ok_or_else(|| {
        jit_err("code that can fail at run time was lowered where failure cannot be reported")
    })?;
    let code = cx.fb.ins().iconst(types::I32, status as i64);
    cx.fb
        .ins()
        .brif(failed, fail, &[BlockArg::Value(code)], then, &[]);
    Ok(())
}

/// Counts one iteration of a loop whose counter is `count`: fails with
/// [`Status::WhileLimit`] when the new count exceeds `limit`, otherwise continues in a new
/// block (now current). Returns the new count.
fn count_iteration(cx: &mut Ctx, count: ir::Value, limit: u64) -> Result<ir::Value> {
    let next = cx.fb.ins().iadd_imm_s(count, 1);
    fail_above(cx, next, limit, Status::WhileLimit)?;
    Ok(next)
}

/// Leaves the entry with `status` when the unsigned 64-bit `value` exceeds `limit`, and
/// continues in a new block (now current) otherwise.
fn fail_above(cx: &mut Ctx, value: ir::Value, limit: u64, status: Status) -> Result<()> {
    // The immediate holds the limit's bits; the comparison is unsigned.
    let over = cx
        .fb
        .ins()
        .icmp_imm_s(IntCC::UnsignedGreaterThan, value, limit as i64);
    let go = cx.fb.create_block();
    fail_if(cx, over, status, go)?;
    cx.fb.switch_to_block(go);
    Ok(())
}

/// `call`: the body inlined, writing straight into the result buffers.
fn lower_call(cx: &mut Ctx, body: &Graph, cp: &ControlPlan, inst: &InstData) -> Result<()> {
    let args = slots_of(cx, &inst.args)?;
    let dests = result_buffers(cx, &inst.results)?;
    let outs = cx.lower_inline(body, &cp.bodies[0], &args, &dests, cp.body_ws)?;
    bind_scalars(cx, &inst.results, &outs)
}

/// `switch`: the index clamped into range selects one block per branch through a jump table
/// (or a compare chain, as Cranelift sees fit); every branch writes the result buffers and
/// passes its rank-0 results to the join block.
fn lower_switch(
    cx: &mut Ctx,
    branches: &[&Graph],
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<()> {
    let args = slots_of(cx, &inst.args[1..])?;
    let dests = result_buffers(cx, &inst.results)?;
    let n = branches.len();
    if n == 1 {
        let outs = cx.lower_inline(branches[0], &cp.bodies[0], &args, &dests, cp.body_ws)?;
        return bind_scalars(cx, &inst.results, &outs);
    }
    let z = cx.iconst(0);
    let index = cx.load(inst.args[0], z)?;
    let lo = cx.fb.ins().iconst(types::I32, 0);
    let hi = cx.fb.ins().iconst(types::I32, (n - 1) as i64);
    let k = cx.fb.ins().smax(index, lo);
    let k = cx.fb.ins().smin(k, hi);
    let join = cx.fb.create_block();
    for &r in &inst.results {
        let ty = cx.graph.ty(r);
        if ty.is_scalar() {
            cx.fb.append_block_param(join, clty(ty.dtype));
        }
    }
    let blocks: Vec<ir::Block> = (0..n).map(|_| cx.fb.create_block()).collect();
    let mut table = Switch::new();
    for (j, &b) in blocks.iter().enumerate().take(n - 1) {
        table.set_entry(j as u128, b);
    }
    table.emit(cx.fb, k, blocks[n - 1]);
    for (j, &b) in blocks.iter().enumerate() {
        cx.fb.switch_to_block(b);
        let outs = cx.lower_inline(branches[j], &cp.bodies[j], &args, &dests, cp.body_ws)?;
        let mut vals = Vec::new();
        for (&r, &s) in inst.results.iter().zip(&outs) {
            if cx.graph.ty(r).is_scalar() {
                vals.push(reg(s)?);
            }
        }
        cx.fb.ins().jump(join, &block_args(&vals));
    }
    cx.fb.switch_to_block(join);
    let params = cx.fb.block_params(join).to_vec();
    let mut params = params.into_iter();
    for &r in &inst.results {
        if cx.graph.ty(r).is_scalar() {
            let p = params
                .next()
                .ok_or_else(|| jit_err("switch join block lacks a parameter"))?;
            cx.slots[r.index()] = Some(Slot::Reg(p));
        }
    }
    Ok(())
}

/// How one loop carry is held.
#[derive(Clone, Copy)]
enum Carry {
    /// A rank-0 carry: one block parameter of this type.
    Reg(ir::Type),
    /// A carried tensor: two block parameters (the current and the next buffer's address);
    /// `first` is the result buffer, where the final value must end up.
    Buf {
        /// The result buffer.
        first: ir::Value,
        /// The size in bytes.
        bytes: usize,
    },
}

/// The buffers of carries that are results `rs`: each tensor's result buffer and its second
/// buffer at the planned workspace offset (`None` for rank-0 carries).
fn result_carry_bufs(
    cx: &mut Ctx,
    rs: &[Value],
    offs: &[Option<usize>],
) -> Result<Vec<Option<(ir::Value, ir::Value)>>> {
    let mut bufs = Vec::with_capacity(rs.len());
    for (k, &r) in rs.iter().enumerate() {
        if cx.graph.ty(r).is_scalar() {
            bufs.push(None);
            continue;
        }
        let first = cx
            .alloc_result(r)?
            .ok_or_else(|| jit_err("a carried tensor has no result buffer"))?;
        let off = offs
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| jit_err("a carried tensor has no second buffer"))?;
        bufs.push(Some((first, cx.ws_addr(off)?)));
    }
    Ok(bufs)
}

/// Sets up carries starting from the values `inits`: copies each tensor into the first of its
/// two buffers `bufs`, and returns how every carry is held and the loop header's initial
/// arguments.
fn init_carries(
    cx: &mut Ctx,
    inits: &[Value],
    bufs: &[Option<(ir::Value, ir::Value)>],
) -> Result<(Vec<Carry>, Vec<ir::Value>)> {
    let mut kinds = Vec::with_capacity(inits.len());
    let mut vals = Vec::new();
    for (&a, b) in inits.iter().zip(bufs) {
        let ty = cx.graph.ty(a).clone();
        if ty.is_scalar() {
            let z = cx.iconst(0);
            vals.push(cx.load(a, z)?);
            kinds.push(Carry::Reg(clty(ty.dtype)));
        } else {
            let (first, second) = b.ok_or_else(|| jit_err("a carried tensor has no buffers"))?;
            cx.copy_into(a, first)?;
            vals.extend([first, second]);
            kinds.push(Carry::Buf {
                first,
                bytes: ty.size() * ty.dtype.size_bytes(),
            });
        }
    }
    Ok((kinds, vals))
}

/// How many block parameters the carries take.
fn n_params(kinds: &[Carry]) -> usize {
    kinds
        .iter()
        .map(|c| match c {
            Carry::Reg(_) => 1,
            Carry::Buf { .. } => 2,
        })
        .sum()
}

/// Appends the carries' parameters to `block`.
fn carry_params(cx: &mut Ctx, block: ir::Block, kinds: &[Carry]) {
    for c in kinds {
        match *c {
            Carry::Reg(t) => {
                cx.fb.append_block_param(block, t);
            }
            Carry::Buf { .. } => {
                cx.fb.append_block_param(block, types::I64);
                cx.fb.append_block_param(block, types::I64);
            }
        }
    }
}

/// From the carries' block parameters: the slots a body reads them from, and the buffers it
/// writes the next carries to (`None` for rank-0 carries).
fn carry_slots(kinds: &[Carry], params: &[ir::Value]) -> (Vec<Slot>, Vec<Option<ir::Value>>) {
    let mut slots = Vec::with_capacity(kinds.len());
    let mut dests = Vec::with_capacity(kinds.len());
    let mut p = params.iter();
    for c in kinds {
        match c {
            Carry::Reg(_) => {
                slots.extend(p.next().map(|&v| Slot::Reg(v)));
                dests.push(None);
            }
            Carry::Buf { .. } => {
                slots.extend(p.next().map(|&v| Slot::Mem(v)));
                dests.push(p.next().copied());
            }
        }
    }
    (slots, dests)
}

/// The header's arguments for the next iteration: the body's rank-0 outputs, and each tensor
/// carry's buffers swapped.
fn next_carries(kinds: &[Carry], params: &[ir::Value], outs: &[Slot]) -> Result<Vec<ir::Value>> {
    let mut vals = Vec::with_capacity(params.len());
    let mut p = 0;
    for (c, &o) in kinds.iter().zip(outs) {
        match c {
            Carry::Reg(_) => {
                vals.push(reg(o)?);
                p += 1;
            }
            Carry::Buf { .. } => {
                vals.extend([params[p + 1], params[p]]);
                p += 2;
            }
        }
    }
    Ok(vals)
}

/// At the loop exit (whose parameters are the carries'): binds the rank-0 results and, when
/// the carried tensors ended in their second buffers, copies them into the result buffers.
fn finish_carries(cx: &mut Ctx, kinds: &[Carry], results: &[Value], params: &[ir::Value]) {
    let mut p = 0;
    let mut moves = Vec::new();
    for (c, &r) in kinds.iter().zip(results) {
        match *c {
            Carry::Reg(_) => {
                cx.slots[r.index()] = Some(Slot::Reg(params[p]));
                p += 1;
            }
            Carry::Buf { first, bytes } => {
                moves.push((first, params[p], bytes));
                p += 2;
            }
        }
    }
    // All carried tensors swap together, so the first one tells where all of them are.
    let Some(&(first, cur, _)) = moves.first() else {
        return;
    };
    let copy = cx.fb.create_block();
    let join = cx.fb.create_block();
    let elsewhere = cx.fb.ins().icmp(IntCC::NotEqual, cur, first);
    cx.fb.ins().brif(elsewhere, copy, &[], join, &[]);
    cx.fb.switch_to_block(copy);
    let cfg = cx.module.isa().frontend_config();
    for (dst, src, bytes) in moves {
        if bytes > 0 {
            let n = cx.iconst(bytes as i64);
            cx.fb.call_memcpy(cfg, dst, src, n);
        }
    }
    cx.fb.ins().jump(join, &[]);
    cx.fb.switch_to_block(join);
}

/// `while`: a header block evaluating the condition, a body block, and an exit block. With an
/// iteration limit, the header also carries the count of iterations run.
fn lower_while(
    cx: &mut Ctx,
    cond: &Graph,
    body: &Graph,
    n_consts: usize,
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<()> {
    let limit = cx.opts.max_while_iterations;
    let consts = slots_of(cx, &inst.args[..n_consts])?;
    let bufs = result_carry_bufs(cx, &inst.results, &cp.carry_bufs)?;
    let (kinds, mut init) = init_carries(cx, &inst.args[n_consts..], &bufs)?;
    let header = cx.fb.create_block();
    let looping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    carry_params(cx, header, &kinds);
    carry_params(cx, exit, &kinds);
    if limit.is_some() {
        cx.fb.append_block_param(header, types::I64);
        init.push(cx.iconst(0));
    }
    cx.fb.ins().jump(header, &block_args(&init));

    cx.fb.switch_to_block(header);
    let all = cx.fb.block_params(header).to_vec();
    let (params, count) = all.split_at(n_params(&kinds));
    let (carries, dests) = carry_slots(&kinds, params);
    let mut args = consts;
    args.extend(carries);
    let c = cx.lower_inline(cond, &cp.bodies[0], &args, &[None], cp.body_ws)?;
    let c = reg(c[0])?;
    cx.fb.ins().brif(c, looping, &[], exit, &block_args(params));

    cx.fb.switch_to_block(looping);
    let counted = match (limit, count.first()) {
        (Some(limit), Some(&count)) => Some(count_iteration(cx, count, limit)?),
        _ => None,
    };
    let outs = cx.lower_inline(body, &cp.bodies[1], &args, &dests, cp.body_ws)?;
    let mut next = next_carries(&kinds, params, &outs)?;
    next.extend(counted);
    cx.fb.ins().jump(header, &block_args(&next));

    cx.fb.switch_to_block(exit);
    let fin = cx.fb.block_params(exit).to_vec();
    finish_carries(cx, &kinds, &inst.results, &fin);
    Ok(())
}

/// The static parameters of a `scan`.
struct ScanShape {
    length: usize,
    n_consts: usize,
    n_carry: usize,
    reverse: bool,
}

/// `scan`: a counted loop (header testing the step, body, exit). Slice `i` of each scanned
/// operand is read in place; slice `i` of each stacked output is written in place.
fn lower_scan(
    cx: &mut Ctx,
    body: &Graph,
    s: &ScanShape,
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<()> {
    let fixed = s.n_consts + s.n_carry;
    let consts = slots_of(cx, &inst.args[..s.n_consts])?;
    let mut xs = Vec::new();
    for (j, &x) in inst.args[fixed..].iter().enumerate() {
        let base = match cx.slot(x)? {
            Slot::Mem(b) => b,
            Slot::Reg(_) => return Err(jit_err("a scanned operand is held in a register")),
        };
        xs.push((base, body.ty(body.params()[fixed + j]).clone()));
    }
    let bufs = result_carry_bufs(cx, &inst.results[..s.n_carry], &cp.carry_bufs)?;
    let (kinds, init) = init_carries(cx, &inst.args[s.n_consts..fixed], &bufs)?;
    let mut ys = Vec::new();
    for (j, &r) in inst.results[s.n_carry..].iter().enumerate() {
        let base = cx
            .alloc_result(r)?
            .ok_or_else(|| jit_err("a stacked output has no buffer"))?;
        ys.push((base, body.ty(body.outputs()[s.n_carry + j]).clone()));
    }

    let header = cx.fb.create_block();
    let looping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    cx.fb.append_block_param(header, types::I64);
    carry_params(cx, header, &kinds);
    carry_params(cx, exit, &kinds);
    let zero = cx.iconst(0);
    let mut first = vec![zero];
    first.extend(init);
    cx.fb.ins().jump(header, &block_args(&first));

    cx.fb.switch_to_block(header);
    let params = cx.fb.block_params(header).to_vec();
    let (step, params) = (params[0], &params[1..]);
    let more = cx
        .fb
        .ins()
        .icmp_imm_s(IntCC::UnsignedLessThan, step, s.length as i64);
    cx.fb
        .ins()
        .brif(more, looping, &[], exit, &block_args(params));

    cx.fb.switch_to_block(looping);
    let i = if s.reverse {
        let last = cx.iconst(s.length as i64 - 1);
        cx.fb.ins().isub(last, step)
    } else {
        step
    };
    let (carries, mut dests) = carry_slots(&kinds, params);
    let mut args = consts;
    args.extend(carries);
    for (base, ty) in &xs {
        args.push(slice_slot(cx, *base, ty, i));
    }
    for (base, ty) in &ys {
        dests.push(if ty.is_scalar() {
            None
        } else {
            Some(slice_addr(cx, *base, ty, i))
        });
    }
    let outs = cx.lower_inline(body, &cp.bodies[0], &args, &dests, cp.body_ws)?;
    for ((base, ty), &o) in ys.iter().zip(&outs[s.n_carry..]) {
        if ty.is_scalar() {
            let v = reg(o)?;
            cx.store_at(*base, i, v, ty.dtype);
        }
    }
    let mut next = vec![cx.fb.ins().iadd_imm_s(step, 1)];
    next.extend(next_carries(&kinds, params, &outs[..s.n_carry])?);
    cx.fb.ins().jump(header, &block_args(&next));

    cx.fb.switch_to_block(exit);
    let fin = cx.fb.block_params(exit).to_vec();
    finish_carries(cx, &kinds, &inst.results[..s.n_carry], &fin);
    Ok(())
}

/// The address of slice `i` (along the leading axis, slices of type `ty`) of the buffer at
/// `base`.
fn slice_addr(cx: &mut Ctx, base: ir::Value, ty: &Type, i: ir::Value) -> ir::Value {
    let bytes = (ty.size() * ty.dtype.size_bytes()) as i64;
    let off = cx.fb.ins().imul_imm_s(i, bytes);
    cx.fb.ins().iadd(base, off)
}

/// Slice `i` of the buffer at `base` as a body operand: a register for rank-0 slices.
fn slice_slot(cx: &mut Ctx, base: ir::Value, ty: &Type, i: ir::Value) -> Slot {
    if ty.is_scalar() {
        Slot::Reg(cx.load_at(base, i, ty.dtype))
    } else {
        Slot::Mem(slice_addr(cx, base, ty, i))
    }
}

/// The state shared by both `taped_while` lowerings once the loop's carries are set up.
struct Taped<'g> {
    cond: &'g Graph,
    fwd: &'g Graph,
    step: &'g Graph,
    /// The loop-invariant operands.
    consts: Vec<Slot>,
    /// The forward loop's carries.
    skinds: Vec<Carry>,
    /// The linear carries (the results).
    lkinds: Vec<Carry>,
    /// The header's initial arguments: the forward carries, then the linear carries.
    sinit: Vec<ir::Value>,
    linit: Vec<ir::Value>,
}

/// Checks a `taped_while`'s arity and sets up its carries.
fn taped_setup<'g>(
    cx: &mut Ctx,
    [cond, fwd, step]: [&'g Graph; 3],
    n_consts: usize,
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<Taped<'g>> {
    let n_state = cond.params().len();
    if n_consts > n_state || n_state > inst.args.len() {
        return Err(jit_err(
            "taped_while: the operands do not match the condition",
        ));
    }
    let consts = slots_of(cx, &inst.args[..n_consts])?;
    let mut sbufs = Vec::with_capacity(cp.state_bufs.len());
    for o in &cp.state_bufs {
        sbufs.push(match *o {
            Some([a, b]) => Some((cx.ws_addr(a)?, cx.ws_addr(b)?)),
            None => None,
        });
    }
    let (skinds, sinit) = init_carries(cx, &inst.args[n_consts..n_state], &sbufs)?;
    let lbufs = result_carry_bufs(cx, &inst.results, &cp.carry_bufs)?;
    let (lkinds, linit) = init_carries(cx, &inst.args[n_state..], &lbufs)?;
    Ok(Taped {
        cond,
        fwd,
        step,
        consts,
        skinds,
        lkinds,
        sinit,
        linit,
    })
}

/// `taped_while` folding forwards: one loop whose iteration runs the forward body and then
/// the step on the entry it just made.
fn lower_taped_forward(
    cx: &mut Ctx,
    bodies: [&Graph; 3],
    n_consts: usize,
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<()> {
    let t = taped_setup(cx, bodies, n_consts, cp, inst)?;
    let limit = cx.opts.max_while_iterations;
    let n_carry = t.skinds.len();
    let header = cx.fb.create_block();
    let looping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    carry_params(cx, header, &t.skinds);
    carry_params(cx, header, &t.lkinds);
    carry_params(cx, exit, &t.lkinds);
    let mut init = t.sinit.clone();
    init.extend(&t.linit);
    if limit.is_some() {
        cx.fb.append_block_param(header, types::I64);
        init.push(cx.iconst(0));
    }
    cx.fb.ins().jump(header, &block_args(&init));

    cx.fb.switch_to_block(header);
    let all = cx.fb.block_params(header).to_vec();
    let (params, count) = all.split_at(n_params(&t.skinds) + n_params(&t.lkinds));
    let (sp, lp) = params.split_at(n_params(&t.skinds));
    let (sslots, mut dests) = carry_slots(&t.skinds, sp);
    let (lslots, ldests) = carry_slots(&t.lkinds, lp);
    let mut args = t.consts.clone();
    args.extend(sslots);
    let c = cx.lower_inline(t.cond, &cp.bodies[0], &args, &[None], cp.body_ws)?;
    let c = reg(c[0])?;
    cx.fb.ins().brif(c, looping, &[], exit, &block_args(lp));

    cx.fb.switch_to_block(looping);
    let counted = match (limit, count.first()) {
        (Some(limit), Some(&count)) => Some(count_iteration(cx, count, limit)?),
        _ => None,
    };
    let entries = t.fwd.outputs().get(n_carry..).unwrap_or(&[]);
    for (j, &e) in entries.iter().enumerate() {
        dests.push(if t.fwd.ty(e).is_scalar() {
            None
        } else {
            let off = cp
                .entry_bufs
                .get(j)
                .copied()
                .flatten()
                .ok_or_else(|| jit_err("a tape entry has no buffer"))?;
            Some(cx.ws_addr(off)?)
        });
    }
    let fouts = cx.lower_inline(t.fwd, &cp.bodies[1], &args, &dests, cp.body_ws)?;
    let mut sargs = fouts[n_carry..].to_vec();
    sargs.extend(lslots);
    let louts = cx.lower_inline(t.step, &cp.bodies[2], &sargs, &ldests, cp.body_ws)?;
    let mut next = next_carries(&t.skinds, sp, &fouts[..n_carry])?;
    next.extend(next_carries(&t.lkinds, lp, &louts)?);
    next.extend(counted);
    cx.fb.ins().jump(header, &block_args(&next));

    cx.fb.switch_to_block(exit);
    let fin = cx.fb.block_params(exit).to_vec();
    finish_carries(cx, &t.lkinds, &inst.results, &fin);
    Ok(())
}

/// Byte offsets of each value of `tys` in one tape entry, and the entry's size (8-byte aligned
/// fields; the tape itself is 16-byte aligned).
fn entry_layout(tys: &[Type]) -> (Vec<usize>, usize) {
    let mut offs = Vec::with_capacity(tys.len());
    let mut size = 0;
    for t in tys {
        offs.push(size);
        // Saturating: an entry this large cannot be taped, and the tape limit check refuses
        // it at run time.
        let bytes = t.size().saturating_mul(t.dtype.size_bytes());
        size = usize::saturating_add(size, bytes.div_ceil(8).saturating_mul(8));
    }
    (offs, size)
}

/// `taped_while` folding backwards: the forward loop appends each entry to a heap tape, then a
/// second loop runs the step over the entries from the last to the first.
///
/// The tape's address and capacity are also kept in a stack slot, so that a failure anywhere
/// in the op (an iteration limit, a tape that cannot grow, or a failure in a body) frees the
/// tape on its way to the function's failure block.
fn lower_taped_reverse(
    cx: &mut Ctx,
    bodies: [&Graph; 3],
    n_consts: usize,
    cp: &ControlPlan,
    inst: &InstData,
) -> Result<()> {
    let t = taped_setup(cx, bodies, n_consts, cp, inst)?;
    let limit = cx.opts.max_while_iterations;
    let n_carry = t.skinds.len();
    let outs = t.fwd.outputs();
    let entry_tys: Vec<Type> = outs
        .get(n_carry..)
        .unwrap_or(&[])
        .iter()
        .map(|&e| t.fwd.ty(e).clone())
        .collect();
    let (offs, esize) = entry_layout(&entry_tys);
    let tape_limit = cx.tape_limit.min(ferrax_ir::MAX_BYTES);
    // The most entries the tape may hold; `need = entries · esize` then stays within the
    // limit, so neither it nor the doubled capacity can overflow.
    let max_entries = tape_limit.checked_div(esize).unwrap_or(usize::MAX) as u64;
    let esize = esize.min(ferrax_ir::MAX_BYTES) as i64;
    let ptr_ty = types::I64;

    // Where the tape is, for the failure path: [address, capacity].
    let slot =
        cx.fb
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 3));
    let outer_fail = cx
        .fail
        .ok_or_else(|| jit_err("a backward taped_while where failure cannot be reported"))?;
    let local_fail = cx.fb.create_block();
    cx.fb.append_block_param(local_fail, types::I32);
    cx.fail = Some(local_fail);

    // The forward loop: header(carries.., count, tape, capacity).
    let header = cx.fb.create_block();
    let looping = cx.fb.create_block();
    let grow = cx.fb.create_block();
    let record = cx.fb.create_block();
    let taped = cx.fb.create_block();
    carry_params(cx, header, &t.skinds);
    for b in [header, taped] {
        for _ in 0..3 {
            cx.fb.append_block_param(b, ptr_ty);
        }
    }
    for _ in 0..2 {
        cx.fb.append_block_param(record, ptr_ty);
    }
    let zero = cx.iconst(0);
    cx.fb.ins().stack_store(ptr_ty, zero, slot, 0);
    cx.fb.ins().stack_store(ptr_ty, zero, slot, 8);
    let mut init = t.sinit.clone();
    init.extend([zero, zero, zero]);
    cx.fb.ins().jump(header, &block_args(&init));

    cx.fb.switch_to_block(header);
    let params = cx.fb.block_params(header).to_vec();
    let ns = n_params(&t.skinds);
    let (sp, tape) = params.split_at(ns);
    let (count, ptr, cap) = (tape[0], tape[1], tape[2]);
    let (sslots, mut dests) = carry_slots(&t.skinds, sp);
    let mut args = t.consts.clone();
    args.extend(sslots);
    let c = cx.lower_inline(t.cond, &cp.bodies[0], &args, &[None], cp.body_ws)?;
    let c = reg(c[0])?;
    cx.fb
        .ins()
        .brif(c, looping, &[], taped, &block_args(&[count, ptr, cap]));

    // Count the iteration, then make room for one more entry, doubling the tape when it is
    // full (but never beyond the limit).
    cx.fb.switch_to_block(looping);
    let more = match limit {
        Some(limit) => count_iteration(cx, count, limit)?,
        None => cx.fb.ins().iadd_imm_s(count, 1),
    };
    if max_entries < u64::MAX {
        fail_above(cx, more, max_entries, Status::TapeLimit)?;
    }
    let need = cx.fb.ins().imul_imm_s(more, esize);
    let full = cx.fb.ins().icmp(IntCC::UnsignedGreaterThan, need, cap);
    cx.fb
        .ins()
        .brif(full, grow, &[], record, &block_args(&[ptr, cap]));
    cx.fb.switch_to_block(grow);
    let doubled = cx.fb.ins().imul_imm_s(cap, 2);
    let wanted = cx.fb.ins().umax(doubled, need);
    let most = cx.iconst(tape_limit as i64);
    let new_cap = cx.fb.ins().umin(wanted, most);
    let grown = cx.call(
        "ferrax_tape_grow",
        &[ptr_ty, ptr_ty, ptr_ty],
        &[ptr_ty],
        &[ptr, cap, new_cap],
    )?[0];
    let failed = cx.fb.ins().icmp_imm_s(IntCC::Equal, grown, 0);
    let grew = cx.fb.create_block();
    fail_if(cx, failed, Status::TapeAlloc, grew)?;
    cx.fb.switch_to_block(grew);
    cx.fb.ins().stack_store(ptr_ty, grown, slot, 0);
    cx.fb.ins().stack_store(ptr_ty, new_cap, slot, 8);
    cx.fb.ins().jump(record, &block_args(&[grown, new_cap]));

    // Run the forward body, writing the entry into the tape.
    cx.fb.switch_to_block(record);
    let rp = cx.fb.block_params(record).to_vec();
    let (ptr2, cap2) = (rp[0], rp[1]);
    let at = cx.fb.ins().imul_imm_s(count, esize);
    let base = cx.fb.ins().iadd(ptr2, at);
    let mut addrs = Vec::with_capacity(offs.len());
    for (ty, &off) in entry_tys.iter().zip(&offs) {
        let a = cx.fb.ins().iadd_imm_s(base, off as i64);
        addrs.push(a);
        dests.push((!ty.is_scalar()).then_some(a));
    }
    let fouts = cx.lower_inline(t.fwd, &cp.bodies[1], &args, &dests, cp.body_ws)?;
    for ((ty, &a), &o) in entry_tys.iter().zip(&addrs).zip(&fouts[n_carry..]) {
        if ty.is_scalar() {
            let v = reg(o)?;
            cx.fb
                .ins()
                .store(cranelift_codegen::ir::MemFlagsData::trusted(), v, a, 0);
        }
    }
    let mut next = next_carries(&t.skinds, sp, &fouts[..n_carry])?;
    next.extend([more, ptr2, cap2]);
    cx.fb.ins().jump(header, &block_args(&next));

    // The backward loop: back(remaining, linear carries..).
    cx.fb.switch_to_block(taped);
    let tp = cx.fb.block_params(taped).to_vec();
    let (count, ptr, cap) = (tp[0], tp[1], tp[2]);
    let back = cx.fb.create_block();
    let stepping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    cx.fb.append_block_param(back, ptr_ty);
    carry_params(cx, back, &t.lkinds);
    carry_params(cx, exit, &t.lkinds);
    let mut init = vec![count];
    init.extend(&t.linit);
    cx.fb.ins().jump(back, &block_args(&init));

    cx.fb.switch_to_block(back);
    let bp = cx.fb.block_params(back).to_vec();
    let (left, lp) = (bp[0], &bp[1..]);
    cx.fb.ins().brif(left, stepping, &[], exit, &block_args(lp));

    cx.fb.switch_to_block(stepping);
    let k = cx.fb.ins().iadd_imm_s(left, -1);
    let at = cx.fb.ins().imul_imm_s(k, esize);
    let base = cx.fb.ins().iadd(ptr, at);
    let mut sargs = Vec::with_capacity(entry_tys.len() + t.lkinds.len());
    for (ty, &off) in entry_tys.iter().zip(&offs) {
        let a = cx.fb.ins().iadd_imm_s(base, off as i64);
        sargs.push(if ty.is_scalar() {
            let z = cx.iconst(0);
            Slot::Reg(cx.load_at(a, z, ty.dtype))
        } else {
            Slot::Mem(a)
        });
    }
    let (lslots, ldests) = carry_slots(&t.lkinds, lp);
    sargs.extend(lslots);
    let louts = cx.lower_inline(t.step, &cp.bodies[2], &sargs, &ldests, cp.body_ws)?;
    let mut next = vec![k];
    next.extend(next_carries(&t.lkinds, lp, &louts)?);
    cx.fb.ins().jump(back, &block_args(&next));

    // The failure path: free the tape, then fail outwards with the same status.
    cx.fail = Some(outer_fail);
    cx.fb.switch_to_block(local_fail);
    let status = cx.fb.block_params(local_fail)[0];
    let fptr = cx.fb.ins().stack_load(ptr_ty, ptr_ty, slot, 0);
    let fcap = cx.fb.ins().stack_load(ptr_ty, ptr_ty, slot, 8);
    cx.call("ferrax_tape_free", &[ptr_ty, ptr_ty], &[], &[fptr, fcap])?;
    cx.fb.ins().jump(outer_fail, &[BlockArg::Value(status)]);

    cx.fb.switch_to_block(exit);
    cx.call("ferrax_tape_free", &[ptr_ty, ptr_ty], &[], &[ptr, cap])?;
    let fin = cx.fb.block_params(exit).to_vec();
    finish_carries(cx, &t.lkinds, &inst.results, &fin);
    Ok(())
}
