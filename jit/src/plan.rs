//! Buffer planning: where every value of a graph lives while the compiled code runs.
//!
//! Rank-0 values live in registers (Cranelift SSA values). Other values live in a caller's
//! input buffer (parameters), a constant owned by the compiled function, the caller's output
//! buffer (a value that is an output is computed straight into it), or the workspace: one
//! byte arena per call whose regions are assigned by liveness, so values whose lifetimes do not
//! overlap share memory. Elementwise ops may write into the region of an operand that dies at
//! that op (same index, read before written). Regions of a cache line or more start on a
//! line (the workspace itself does), so that 512-bit accesses never straddle two lines.
//!
//! A `reshape` of a non-scalar value into a non-scalar value that is not an output is a
//! *view*: its result shares its operand's home (row-major elements do not move), no code
//! runs, and the operand stays live as long as the view is used. (A reshape that a fused
//! loop reads through, see `crate::fuse::unit_reshape`, is a member of that loop instead.)
//!
//! A control-flow op (`switch`, `while`, `scan`, `call`) gets a *scratch* region for the time it
//! runs, allocated while its operands and results are live so it overlaps neither. The scratch
//! holds the second buffer of every carried tensor of a loop (carries are double-buffered: the
//! body reads one buffer and writes the other, and the two swap each iteration; the first is the
//! op's result buffer) and, after those, one region shared by the op's bodies. Each body is
//! planned separately by the same rules (recursively, for nested control flow) as if it were a
//! graph of its own; bodies of one op never run at the same time, so their workspaces overlap.

use crate::fuse::{analyze, Fusion};
use ferrax_ir::ops::{ControlOp, ShapeOp};
use ferrax_ir::{Graph, InstData, Op, Type, Value};

/// Alignment of every workspace region, in bytes (enough for 128-bit vectors).
pub(crate) const ALIGN: usize = 16;

/// Alignment of every workspace region of at least this many bytes (a cache line). The wide
/// helpers (`wide_math.rs`, `small_gemm.rs`) read and write whole 512-bit vectors, which
/// straddle two cache lines at three of the four 16-byte offsets within a line; the
/// workspace itself starts on a line (see `compiled.rs`).
pub(crate) const LINE: usize = 64;

/// The alignment of a workspace region of `bytes` bytes: a cache line from [`LINE`] bytes,
/// [`ALIGN`] below (small values keep their compact layout).
fn region_align(bytes: usize) -> usize {
    if bytes >= LINE {
        LINE
    } else {
        ALIGN
    }
}

/// `at` rounded up to a multiple of `align`, saturating.
fn align_up(at: usize, align: usize) -> usize {
    at.div_ceil(align).saturating_mul(align)
}

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// A rank-0 value held in a register.
    Reg,
    /// The caller's `k`-th input buffer.
    Param(usize),
    /// A constant embedded in the compiled function.
    Const,
    /// The caller's `k`-th output buffer.
    Output(usize),
    /// A workspace region starting at this byte offset.
    Work(usize),
    /// Internal to a fused loop: computed in registers element by element, never stored.
    Fused,
}

/// The buffer plan of a graph.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The home of every value, indexed by value.
    pub homes: Vec<Home>,
    /// The workspace size in bytes.
    pub workspace: usize,
    /// The plan of every control-flow instruction, indexed by instruction position.
    pub controls: Vec<Option<ControlPlan>>,
    /// The fused-loop groups of the graph.
    pub fusion: Fusion,
    /// For a value that is a view (a reshape sharing its operand's buffer), the operand.
    pub alias: Vec<Option<Value>>,
}

/// The buffers of one control-flow instruction, as byte offsets in its graph's workspace.
#[derive(Clone, Debug, Default)]
pub(crate) struct ControlPlan {
    /// The plans of the op's bodies in the order of [`bodies`].
    pub bodies: Vec<Plan>,
    /// Where the bodies' workspaces start (they share one region).
    pub body_ws: usize,
    /// The second buffer of each carry that is a result (the carries of `while` and `scan`,
    /// the linear carries of `taped_while`); `None` for rank-0 carries, held in registers.
    pub carry_bufs: Vec<Option<usize>>,
    /// `taped_while`: both buffers of each carry of its forward loop (not a result).
    pub state_bufs: Vec<Option<[usize; 2]>>,
    /// `taped_while` folding forwards: a buffer for each tensor of one tape entry.
    pub entry_bufs: Vec<Option<usize>>,
}

/// The bodies of a control-flow op, in the order of [`ControlPlan::bodies`]: the branches of
/// a `switch`; the condition then the body of a `while`; the body of a `scan` or `call`; the
/// condition, forward body and step of a `taped_while`; none for `custom_lin`, which cannot
/// run.
pub(crate) fn bodies(op: &ControlOp) -> Vec<&Graph> {
    match op {
        ControlOp::Switch { branches } => branches.iter().map(|b| b.graph()).collect(),
        ControlOp::While { cond, body, .. } => vec![cond.graph(), body.graph()],
        ControlOp::Scan { body, .. } => vec![body.graph()],
        ControlOp::TapedWhile {
            cond, fwd, step, ..
        } => vec![cond.graph(), fwd.graph(), step.graph()],
        ControlOp::CustomLinear { .. } => vec![],
        ControlOp::Call { body, .. } => vec![body.graph()],
    }
}

/// Lays out regions one after another (each aligned), as offsets from the start.
#[derive(Default)]
struct Layout {
    size: usize,
}

impl Layout {
    /// A region for a value of `ty`, or `None` when it is rank 0 (a register).
    fn tensor(&mut self, ty: &Type) -> Option<usize> {
        (!ty.is_scalar()).then(|| self.take(ty.size().saturating_mul(ty.dtype.size_bytes())))
    }

    /// The next `bytes` bytes (aligned by [`region_align`]); a zero-size value takes `ALIGN`
    /// bytes, so that no two carries' buffers share an address (the lowering tells a loop's
    /// buffers apart by address).
    fn take(&mut self, bytes: usize) -> usize {
        let at = align_up(self.size, region_align(bytes));
        self.size = at.saturating_add(align_up(bytes.max(1), ALIGN));
        at
    }
}

/// Plans a control-flow instruction's bodies and scratch region; `arena` holds everything
/// live across it (its operands and results), so the scratch overlaps none of them.
fn plan_control(graph: &Graph, op: &ControlOp, inst: &InstData, arena: &mut Arena) -> ControlPlan {
    let subs: Vec<Plan> = bodies(op).into_iter().map(plan).collect();
    let mut lay = Layout::default();
    let ty = |v: &Value| graph.ty(*v).clone();
    let mut cp = ControlPlan::default();
    match op {
        ControlOp::While { .. } => {
            cp.carry_bufs = inst.results.iter().map(|r| lay.tensor(&ty(r))).collect();
        }
        ControlOp::Scan { n_carry, .. } => {
            let n = (*n_carry).min(inst.results.len());
            cp.carry_bufs = inst.results[..n]
                .iter()
                .map(|r| lay.tensor(&ty(r)))
                .collect();
        }
        ControlOp::TapedWhile {
            cond,
            fwd,
            n_consts,
            reverse,
            ..
        } => {
            cp.carry_bufs = inst.results.iter().map(|r| lay.tensor(&ty(r))).collect();
            let n_state = cond.graph().params().len();
            let state = inst.args.get(*n_consts..n_state).unwrap_or(&[]);
            for a in state {
                let t = ty(a);
                let first = lay.tensor(&t);
                let second = lay.tensor(&t);
                cp.state_bufs.push(first.zip(second).map(|(x, y)| [x, y]));
            }
            if !reverse {
                let g = fwd.graph();
                let entries = g.outputs().get(state.len()..).unwrap_or(&[]);
                cp.entry_bufs = entries.iter().map(|&o| lay.tensor(g.ty(o))).collect();
            }
        }
        ControlOp::Switch { .. } | ControlOp::CustomLinear { .. } | ControlOp::Call { .. } => {}
    }
    // The bodies' regions are aligned relative to their workspace's start, so that start is
    // aligned as their largest region needs.
    let body_ws = subs.iter().map(|p| p.workspace).max().unwrap_or(0);
    let body_rel = align_up(lay.size, region_align(body_ws));
    let size = body_rel.saturating_add(body_ws);
    // The scratch is taken while the operands and results are live and given back at once:
    // nothing else is allocated before the op has run.
    let base = if size > 0 {
        let b = arena.alloc(size);
        arena.free(b);
        b
    } else {
        0
    };
    let shift = |o: Option<usize>| o.map(|o| base.saturating_add(o));
    cp.carry_bufs = cp.carry_bufs.into_iter().map(shift).collect();
    cp.entry_bufs = cp.entry_bufs.into_iter().map(shift).collect();
    cp.state_bufs = cp
        .state_bufs
        .into_iter()
        .map(|o| o.map(|[a, b]| [base.saturating_add(a), base.saturating_add(b)]))
        .collect();
    cp.bodies = subs;
    cp.body_ws = base.saturating_add(body_rel);
    cp
}

/// A first-fit allocator over workspace byte offsets.
///
/// Its arithmetic saturates: a plan whose regions would not fit in `usize` ends with a high
/// mark of `usize::MAX`, which `compile` refuses (more than [`ferrax_ir::MAX_BYTES`]), so no
/// wrapped offset ever reaches generated code.
#[derive(Default)]
struct Arena {
    /// Live regions as (offset, size), sorted by offset.
    live: Vec<(usize, usize)>,
    high: usize,
}

impl Arena {
    /// A region of `size` bytes, aligned by [`region_align`]. Zero-size values get a region
    /// too (of `ALIGN` bytes): they never share an offset with a live region, which `free` (by
    /// offset) could release in their place, and their addresses stay distinct from every
    /// other buffer's.
    fn alloc(&mut self, size: usize) -> usize {
        let align = region_align(size);
        let size = align_up(size.max(1), ALIGN);
        let mut at = 0usize;
        let mut pos = self.live.len();
        for (i, &(o, s)) in self.live.iter().enumerate() {
            if o >= at.saturating_add(size) {
                pos = i;
                break;
            }
            at = align_up(at.max(o.saturating_add(s)), align);
        }
        self.live.insert(pos, (at, size));
        self.high = self.high.max(at.saturating_add(size));
        at
    }

    fn free(&mut self, offset: usize) {
        if let Some(i) = self.live.iter().position(|&(o, _)| o == offset) {
            self.live.remove(i);
        }
    }
}

/// The leaves of the group rooted at `root` that a fused loop reads at the element index it
/// writes (same shape, not through a broadcast or another remap): the only ones the result
/// may overwrite.
pub(crate) fn same_index_leaves(graph: &Graph, fusion: &Fusion, root: usize) -> Vec<Value> {
    let insts: Vec<&InstData> = graph.insts().map(|(_, d)| d).collect();
    let mut member_result = vec![false; graph.num_values()];
    let mut through_broadcast = vec![false; graph.num_values()];
    let mut leaves = Vec::new();
    // A member under a pad, slice, transpose or rev reads its leaves at remapped indices
    // (see `lower/remap.rs`): such a group overwrites none.
    let remapped = fusion.members[root].iter().any(|&j| {
        crate::fuse::remap_member(&insts[j].op)
            && !matches!(insts[j].op, Op::Shape(ShapeOp::BroadcastInDim { .. }))
    });
    if remapped {
        return leaves;
    }
    for &j in &fusion.members[root] {
        let inst = insts[j];
        member_result[inst.results[0].index()] = true;
        let moved = crate::fuse::remap_member(&inst.op);
        for &a in &inst.args {
            if moved {
                through_broadcast[a.index()] = true;
            } else {
                leaves.push(a);
            }
        }
    }
    leaves.retain(|a| !member_result[a.index()] && !through_broadcast[a.index()]);
    leaves
}

/// Plans the homes of every value of `graph`.
pub(crate) fn plan(graph: &Graph) -> Plan {
    let n = graph.num_values();
    let fusion = analyze(graph);
    let mut homes = vec![Home::Reg; n];
    let mut first_output: Vec<Option<usize>> = vec![None; n];
    for (k, &o) in graph.outputs().iter().enumerate() {
        first_output[o.index()].get_or_insert(k);
    }
    // Views: reshapes that share their operand's buffer.
    let mut alias: Vec<Option<Value>> = vec![None; n];
    let mut aliased = vec![false; n];
    for (i, (_, inst)) in graph.insts().enumerate() {
        if let Op::Shape(ShapeOp::Reshape { .. }) = inst.op {
            let (x, r) = (inst.args[0], inst.results[0]);
            // A reshape a fused loop reads through has no buffer at all.
            if !fusion.is_member(i)
                && !graph.ty(x).is_scalar()
                && !graph.ty(r).is_scalar()
                && first_output[r.index()].is_none()
            {
                alias[r.index()] = Some(x);
                aliased[x.index()] = true;
            }
        }
    }
    let mut last_use = vec![0usize; n];
    for (i, (_, inst)) in graph.insts().enumerate() {
        let at = fusion.exec_pos(i);
        for &a in &inst.args {
            last_use[a.index()] = last_use[a.index()].max(at);
        }
    }
    // An operand lives as long as its views (later views first, for chains of views).
    let insts: Vec<&InstData> = graph.insts().map(|(_, d)| d).collect();
    for inst in insts.iter().rev() {
        if let Some(&r) = inst.results.first() {
            if let Some(x) = alias[r.index()] {
                last_use[x.index()] = last_use[x.index()].max(last_use[r.index()]);
            }
        }
    }
    let mut dies: Vec<Vec<Value>> = vec![Vec::new(); graph.num_insts()];
    for (v, &at) in last_use.iter().enumerate() {
        if let Some(d) = dies.get_mut(at) {
            d.push(Value::from_index(v));
        }
    }
    for (k, &p) in graph.params().iter().enumerate() {
        if !graph.ty(p).is_scalar() {
            homes[p.index()] = Home::Param(k);
        }
    }
    let mut used = vec![false; n];
    for (_, inst) in graph.insts() {
        for &a in &inst.args {
            used[a.index()] = true;
        }
    }
    let mut arena = Arena::default();
    let size_of = |v: Value| {
        let ty = graph.ty(v);
        ty.size().saturating_mul(ty.dtype.size_bytes())
    };
    let mut controls: Vec<Option<ControlPlan>> = vec![None; graph.num_insts()];
    for (i, (_, inst)) in graph.insts().enumerate() {
        // Members give their results no buffer, except sibling reductions (results of their
        // group) and stored members (outputs their group writes).
        if fusion.is_member(i) && !matches!(inst.op, Op::Reduce(_)) && !fusion.stored[i] {
            for &r in &inst.results {
                homes[r.index()] = Home::Fused;
            }
            continue;
        }
        if let Some(x) = inst.results.first().and_then(|r| alias[r.index()]) {
            homes[inst.results[0].index()] = homes[x.index()];
            continue;
        }
        let mut reusable: Option<usize> = None;
        if fusion.root[i] == Some(i) && inst.op.is_elementwise() {
            let want = size_of(inst.results[0]);
            for a in same_index_leaves(graph, &fusion, i) {
                if let Home::Work(off) = homes[a.index()] {
                    let view = alias[a.index()].is_some() || aliased[a.index()];
                    if last_use[a.index()] == i && size_of(a) == want && reusable.is_none() && !view
                    {
                        reusable = Some(off);
                    }
                }
            }
        }
        for &r in &inst.results {
            let ty = graph.ty(r);
            homes[r.index()] =
                if matches!(inst.op, Op::Literal(ferrax_ir::ops::LiteralOp::Const(_)))
                    && !ty.is_scalar()
                {
                    Home::Const
                } else if ty.is_scalar() {
                    Home::Reg
                } else if let Some(k) = first_output[r.index()] {
                    Home::Output(k)
                } else if let Some(off) = reusable.take() {
                    Home::Work(off)
                } else {
                    Home::Work(arena.alloc(size_of(r)))
                };
        }
        let taken: Vec<usize> = inst
            .results
            .iter()
            .filter_map(|r| match homes[r.index()] {
                Home::Work(o) => Some(o),
                _ => None,
            })
            .collect();
        if let Op::Control(op) = &inst.op {
            controls[i] = Some(plan_control(graph, op, inst, &mut arena));
        }
        for &a in &dies[i] {
            if let Home::Work(off) = homes[a.index()] {
                if used[a.index()] && !taken.contains(&off) && alias[a.index()].is_none() {
                    arena.free(off);
                }
            }
        }
    }
    Plan {
        homes,
        workspace: arena.high,
        controls,
        fusion,
        alias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrax_ir::control_api::fori_loop;
    use ferrax_ir::DType;

    /// Checks that every workspace value of `plan` (offsets from `base`) of at least a line
    /// starts on a line, and the others on `ALIGN`, in the bodies of control flow too.
    fn check_aligned(graph: &Graph, plan: &Plan, base: usize) {
        for (v, home) in plan.homes.iter().enumerate() {
            if let Home::Work(off) = home {
                let ty = graph.ty(Value::from_index(v));
                let bytes = ty.size() * ty.dtype.size_bytes();
                let at = base + off;
                assert_eq!(at % ALIGN, 0, "value {v} at {at}");
                if bytes >= LINE {
                    assert_eq!(at % LINE, 0, "value {v} of {bytes} bytes at {at}");
                }
            }
        }
        for ((_, inst), cp) in graph.insts().zip(&plan.controls) {
            let (Some(cp), Op::Control(op)) = (cp, &inst.op) else {
                continue;
            };
            for (r, buf) in inst.results.iter().zip(&cp.carry_bufs) {
                let ty = graph.ty(*r);
                if let Some(off) = buf {
                    let at = base + off;
                    assert_eq!(at % ALIGN, 0);
                    if ty.size() * ty.dtype.size_bytes() >= LINE {
                        assert_eq!(at % LINE, 0, "carry buffer at {at}");
                    }
                }
            }
            for (body, sub) in bodies(op).into_iter().zip(&cp.bodies) {
                check_aligned(body, sub, base + cp.body_ws);
            }
        }
    }

    #[test]
    fn regions_of_a_line_or_more_start_on_a_line() {
        // Products (each a buffer of its own) of 8 to 51,200 bytes, a scalar-sized one among
        // them shifting the rest by 16 bytes, and a loop whose carries and body need buffers.
        let tys = [
            Type::new(DType::F64, &[200, 2]),
            Type::new(DType::F64, &[2, 32]),
            Type::new(DType::F64, &[3, 2]),
        ];
        let traced = ferrax_ir::tracer::trace_with(&tys, |xs| {
            let (x, w, s) = (&xs[0], &xs[1], &xs[2]);
            let small = s.matmul(&s.transpose(&[1, 0])); // 72 bytes.
            let tiny = s
                .slice_axis(0, 0, 1)
                .matmul(&s.slice_axis(0, 1, 2).transpose(&[1, 0]));
            let h = x.matmul(w).tanh();
            let looped = fori_loop(
                0,
                3,
                |_, c| vec![c[0].matmul(&w.transpose(&[1, 0])).matmul(w), &c[1] * 2.0],
                &[h.clone(), small.clone()],
            );
            let back = looped[0].transpose(&[1, 0]).matmul(x);
            vec![back, looped[1].clone(), tiny, h.sum(&[0])]
        })
        .expect("the graph traces");
        let plan = plan(&traced.graph);
        assert!(
            plan.controls.iter().any(|c| c.is_some()),
            "the loop is planned"
        );
        check_aligned(&traced.graph, &plan, 0);
        assert_eq!(std::mem::align_of::<crate::compiled::Chunk>(), LINE);
    }
}
