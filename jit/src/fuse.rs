//! Fusion analysis: which instructions run together in one loop nest.
//!
//! A *fusable* instruction is an elementwise op (unary, binary, compare/select, convert), a
//! `broadcast_in_dim`, or an index remapping (see below), with a non-scalar result. Fusable instructions are grouped in reverse
//! order: the result of a fusable instruction is *internal* to a group (computed in registers,
//! never stored) when it is not a graph output and every user is a fusable, non-broadcast
//! instruction of the same group (elementwise users have the same shape, so the element index
//! is shared). A broadcast joins its users' group only as a *leaf read*: its operand is read
//! through a stride-0 affine map, so broadcasts never need a buffer either. Every other
//! fusable instruction roots a group of its own, placed at its position in the body; values a
//! group reads from outside (parameters, constants, other groups' or ops' results) are its
//! leaves, which must stay live until the root runs.
//!
//! A reduction (`reduce_sum`, `reduce_max`, `reduce_min`, `reduce_prod`) of a non-scalar
//! operand always roots a group of its own, and the operand's group joins it when the
//! reduction is its only user: the loop nest then runs over the operand's elements and
//! combines each into the reduction's accumulators instead of storing it, so the reduced
//! tensor is never written. A reduction with the same operand shape, axes and dtype as a later
//! reduction root joins it as a *sibling* when all its users come after that root: both
//! accumulate in one loop (their operands' groups merge, and a value feeding both is computed
//! once), each into its own result.
//!
//! A `broadcast_in_dim` that only adds dimensions of size 1 (see [`trivial_broadcast`]) is
//! elementwise in effect: its operand joins its group and flows through it unchanged.
//!
//! Index remappings ([`remap`]: broadcasts, slices, pads without interior padding,
//! concatenations, transposes, revs, reshapes that only add or drop unit dimensions (see
//! [`unit_reshape`]), and gathers by constant indices inside the axis, see [`const_gather`])
//! join their users' group the way broadcasts do, and chains of them join
//! too: the loop reads the buffer at the end of the chain through the composed index map
//! (`lower/remap.rs`). An elementwise float op whose users are all pads, slices, transposes
//! or revs that reach the loop only through such remaps joins as well: it is computed in the
//! loop at the remapped index (a broadcast or a concatenation above it would compute it
//! several times per element, so neither qualifies). A remap no loop reads through is lowered
//! on its own, except a constant gather, which roots a loop of its own, and a concatenation
//! with a piece that is a constant gather used only there (see [`joins_gathers`]), which
//! roots a loop that reads its gathers in place.
//!
//! A cheap fusable instruction (a broadcast or another remap, a constant gather included, or
//! arithmetic without division or transcendentals) whose users all evaluate it in their
//! loops but belong to several groups is *duplicated*: each of those groups (at most
//! [`DUP_MAX`], any number for remaps) computes it again from its own operands, so it needs
//! neither a buffer nor a loop of its own. Recomputing an add or a
//! multiply is cheaper than storing the result and loading it again, and the graphs that
//! transforms produce (a primal value shared by several tangent or cotangent expressions) are
//! full of such values: without duplication each would be a separate loop over memory.
//!
//! A graph output is normally the root of its group, and so is a value that some user outside
//! every loop (a product, a convolution, control flow) reads from memory: a loop that needs it
//! reads it back. Such an elementwise value whose loop users all belong to one group, and all
//! evaluate their operands at that group's element index (elementwise members of the loop's
//! shape up to an elementwise root, or a fused reduction, whose loop runs over its operand),
//! instead joins that group as a *stored* member, if it has the dtype of the group's root and
//! every outside user runs after that root: the loop computes it in registers, uses it there,
//! and also stores it, at the loop's index, to its output buffer or a workspace buffer of its
//! own. Adam's new moments are outputs that the parameter update reads, so each parameter
//! tensor's three results come from one pass that reads the gradient, the moments and the
//! parameters once; a network's backward pass computes `(1 − t²)·g`, which the weight
//! gradient's product reads from memory and the bias gradient sums over the batch, and that
//! column sum's loop now computes and stores it.
//!
//! A second kind of grouping folds a 2-D `dot_general` into the `transpose[perm=(1,0)]` that is
//! its only user: the product is computed straight into the transpose's buffer in transposed
//! layout (a GEMM with its operands swapped), so the dot's result needs no buffer and the
//! transpose no copy. The dot is then a member whose root is the transpose.

use ferrax_ir::ops::{DotGeneral, IndexOp, LiteralOp, ReduceOp, ShapeOp};
use ferrax_ir::{Graph, InstData, Op};
use smallvec::SmallVec;

/// At most this many groups evaluate one duplicated arithmetic instruction (broadcasts, which
/// are only reads, are duplicated into any number).
pub(crate) const DUP_MAX: usize = 8;

/// At most this many pieces in a concatenation read in place.
pub(crate) const CONCAT_MAX: usize = 16;

/// At most this many remaps lie between a member and its group's root (building the reads
/// recurses once per remap).
pub(crate) const NEST_MAX: usize = 16;

/// The groups of a graph, indexed by instruction position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fusion {
    /// The position of the group root of every fusable instruction (`None` otherwise); for a
    /// duplicated instruction, the last group that evaluates it.
    pub root: Vec<Option<usize>>,
    /// Whether the instruction is duplicated into every group that uses it.
    pub dup: Vec<bool>,
    /// The members of the group rooted at each position (body order, the root last; empty
    /// for positions that root no group), duplicated instructions included.
    pub members: Vec<Vec<usize>>,
    /// For a `transpose` that absorbs the `dot_general` feeding it, the dot's position.
    pub absorbed_dot: Vec<Option<usize>>,
    /// Whether the instruction is a *stored* member: a value (a graph output, or one read from
    /// memory outside every loop) computed in its group's loop and stored there besides the
    /// root's (see the module documentation).
    pub stored: Vec<bool>,
}

impl Fusion {
    /// Whether the instruction at `i` belongs to a group rooted elsewhere (it emits no code of
    /// its own and its results have no buffer).
    pub fn is_member(&self, i: usize) -> bool {
        self.dup[i] || matches!(self.root[i], Some(r) if r != i)
    }

    /// The last position at which instruction `i` runs (its group root, the last group that
    /// evaluates a duplicated instruction, or itself): its operands live until then.
    pub fn exec_pos(&self, i: usize) -> usize {
        self.root[i].unwrap_or(i)
    }
}

/// Whether recomputing `op` in several loops costs less than storing and reloading it: a
/// remap (a strided or guarded read), a comparison, select or conversion, or arithmetic without
/// division, roots or transcendentals. Every elementwise op is listed, so a new one has to be
/// placed here.
fn cheap(op: &Op) -> bool {
    use ferrax_ir::ops::{BinaryOp, UnaryOp};
    match op {
        Op::Shape(s) => remap_shape(s),
        Op::Compare(_) | Op::Convert(_) => true,
        Op::Unary(u) => match u {
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Square | UnaryOp::Sign => true,
            UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Exp
            | UnaryOp::Exp2
            | UnaryOp::Expm1
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Tanh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh
            | UnaryOp::Logistic
            | UnaryOp::Erf
            | UnaryOp::IntegerPow(_)
            | UnaryOp::Reciprocal => false,
        },
        Op::Binary(b) => match b {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min => true,
            BinaryOp::Div | BinaryOp::Pow | BinaryOp::Atan2 | BinaryOp::Rem => false,
        },
        Op::Literal(_)
        | Op::Reduce(_)
        | Op::Dot(_)
        | Op::Conv(_)
        | Op::Index(_)
        | Op::Control(_)
        | Op::Window(_) => false,
    }
}

/// Whether `inst` is a `broadcast_in_dim` that only adds dimensions of size 1: its elements
/// are its operand's in the same order, so a fused operand is passed through unchanged.
pub(crate) fn trivial_broadcast(graph: &Graph, inst: &InstData) -> bool {
    // Equal sizes are not enough: with a zero-size dim, `[0] → [2, 0]` has both.
    let non_unit = |v| graph.ty(v).dims().iter().filter(|&&n| n != 1).copied();
    matches!(inst.op, Op::Shape(ShapeOp::BroadcastInDim { .. }))
        && non_unit(inst.args[0]).eq(non_unit(inst.results[0]))
}

/// Whether `op` can join a fused loop.
pub(crate) fn fusable(op: &Op) -> bool {
    op.is_elementwise() || matches!(op, Op::Shape(ShapeOp::BroadcastInDim { .. }))
}

/// Whether a shape op moves elements by a per-dimension affine index map (possibly guarded),
/// so that a fused loop can read its operand in place: broadcast, slice, transpose, rev,
/// concatenate, pad and reshape. A pad with interior padding has a non-affine map (every
/// other element), and so has a reshape that splits or merges dimensions, but the ops are
/// listed by kind; [`remap`] checks the instance (only reshapes that add or drop dimensions
/// of size 1 are read through, see [`unit_reshape`]; any other reshape is a view of its
/// operand's buffer, see `crate::plan`).
pub(crate) fn remap_shape(op: &ShapeOp) -> bool {
    match op {
        ShapeOp::BroadcastInDim { .. }
        | ShapeOp::Transpose { .. }
        | ShapeOp::Slice { .. }
        | ShapeOp::Pad { .. }
        | ShapeOp::Concatenate { .. }
        | ShapeOp::Rev { .. }
        | ShapeOp::Reshape { .. } => true,
    }
}

/// Whether `inst` is a reshape of a non-scalar value that only adds or drops dimensions of
/// size 1 (the other dimensions equal, in order): each dimension of the result reads one of
/// the operand, so a loop reads the operand in place (a slice of one plane of a tensor,
/// reshaped to drop the sliced axis, then needs no copy).
pub(crate) fn unit_reshape(graph: &Graph, inst: &InstData) -> bool {
    let non_unit = |v| graph.ty(v).dims().iter().filter(|&&n| n != 1).copied();
    matches!(inst.op, Op::Shape(ShapeOp::Reshape { .. }))
        && !graph.ty(inst.args[0]).is_scalar()
        && non_unit(inst.args[0]).eq(non_unit(inst.results[0]))
}

/// Whether the instruction is an index remapping that a fused loop can read through (see
/// [`remap_shape`]): not a reshape other than a [`unit_reshape`], not a pad with interior
/// padding, not a transpose of a `dot_general`
/// result (which the dot writes transposed instead, see [`analyze`]), not a concatenation of
/// more than [`CONCAT_MAX`] pieces.
pub(crate) fn remap(graph: &Graph, inst: &InstData) -> bool {
    let Op::Shape(s) = &inst.op else {
        return false;
    };
    let from_dot = || match graph.def(inst.args[0]) {
        ferrax_ir::ValueDef::Result(i, _) => matches!(graph.inst(i).op, Op::Dot(_)),
        ferrax_ir::ValueDef::Param(_) => false,
    };
    match s {
        ShapeOp::Pad { interior, .. } => interior.iter().all(|&k| k == 0),
        ShapeOp::Transpose { .. } => !from_dot(),
        // Each piece falls back on the next, one guard per piece: long joins are copied.
        ShapeOp::Concatenate { .. } => inst.args.len() <= CONCAT_MAX,
        ShapeOp::Reshape { .. } => unit_reshape(graph, inst),
        s => remap_shape(s),
    }
}

/// Whether the instruction roots a reduction group: a sum, max, min or product of a
/// non-scalar operand.
pub(crate) fn fused_reduce(graph: &Graph, inst: &InstData) -> bool {
    matches!(
        inst.op,
        Op::Reduce(
            ReduceOp::Sum { .. }
                | ReduceOp::Max { .. }
                | ReduceOp::Min { .. }
                | ReduceOp::Prod { .. }
        )
    ) && !graph.ty(inst.args[0]).is_scalar()
}

/// Whether every operand and result of `inst` is a float: such an op never traps, so a loop
/// may evaluate it at indices whose result it then discards (the padding of a pad).
fn float_only(graph: &Graph, inst: &InstData) -> bool {
    let float = |v: &ferrax_ir::Value| graph.ty(*v).dtype.is_float();
    inst.args.iter().all(float) && inst.results.iter().all(float)
}

/// Whether `inst` is a gather (`take`, not `along`) by constant indices that all lie inside
/// the indexed axis, with a non-scalar result: a fused loop reads the operand at the index it
/// loads from the constant, with nothing to check at run time (see `lower/remap.rs`, which
/// checks the indices again when it builds the read).
pub(crate) fn const_gather(graph: &Graph, inst: &InstData) -> bool {
    let Op::Index(IndexOp::Gather(ix)) = &inst.op else {
        return false;
    };
    let n = graph
        .ty(inst.args[0])
        .dims()
        .get(ix.axis)
        .copied()
        .unwrap_or(0);
    !ix.along
        && !graph.ty(inst.results[0]).is_scalar()
        && const_indices(graph, inst.args[1])
            .is_some_and(|(lo, hi)| lo >= 0 && (hi as i64) < n as i64)
}

/// The least and greatest element of `v` when it is a non-empty `i32` constant.
pub(crate) fn const_indices(graph: &Graph, v: ferrax_ir::Value) -> Option<(i32, i32)> {
    let ferrax_ir::ValueDef::Result(i, _) = graph.def(v) else {
        return None;
    };
    let Op::Literal(LiteralOp::Const(lit)) = &graph.inst(i).op else {
        return None;
    };
    let xs = lit.0.as_i32()?;
    let lo = xs.iter().copied().min()?;
    let hi = xs.iter().copied().max()?;
    Some((lo, hi))
}

/// Whether a member of a fused group (already accepted by [`analyze`]) is read through: a
/// remap (see [`remap_shape`]) or a gather by constant indices.
pub(crate) fn remap_member(op: &Op) -> bool {
    match op {
        Op::Shape(s) => remap_shape(s),
        Op::Index(IndexOp::Gather(_)) => true,
        _ => false,
    }
}

/// Groups the instructions of `graph`.
pub(crate) fn analyze(graph: &Graph) -> Fusion {
    let n = graph.num_insts();
    let insts: Vec<_> = graph.insts().map(|(_, d)| d).collect();
    // The users (instruction positions) of every value.
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.num_values()];
    for (i, inst) in insts.iter().enumerate() {
        for &a in &inst.args {
            if users[a.index()].last() != Some(&i) {
                users[a.index()].push(i);
            }
        }
    }
    let mut is_output = vec![false; graph.num_values()];
    for &o in graph.outputs() {
        is_output[o.index()] = true;
    }
    let mut root: Vec<Option<usize>> = vec![None; n];
    let mut dup = vec![false; n];
    // The groups (roots, sorted) that evaluate each instruction.
    let mut groups: Vec<SmallVec<[usize; 2]>> = vec![SmallVec::new(); n];
    let mut absorbed_dot: Vec<Option<usize>> = vec![None; n];
    // Reduction roots found so far (later positions first).
    let mut red_roots: Vec<usize> = Vec::new();
    // Remap members that another remap reads through (their operand is read at remapped
    // indices, so no value may pass through them in registers).
    let mut chain = vec![false; n];
    // Which instructions are remaps a loop can read through (computed once: a constant
    // gather's indices are scanned), and which of them are gathers.
    let gather: Vec<bool> = insts.iter().map(|inst| const_gather(graph, inst)).collect();
    let remaps: Vec<bool> = insts
        .iter()
        .zip(&gather)
        .map(|(inst, &g)| g || remap(graph, inst))
        .collect();
    // Remap members whose operand may be computed in the loop at the remapped index: pads,
    // slices, transposes and revs that reach the loop's value only through other such
    // remaps (a broadcast or a concatenation above would compute it several times).
    let mut computed_ok = vec![false; n];
    // The number of remaps between each member and its group's root.
    let mut nest = vec![0usize; n];
    // Instructions whose operands a loop evaluates at its element index: an elementwise root,
    // a fused reduction (its loop runs over its operand), and the elementwise members whose
    // users all are such instructions (a stored member must be one of these).
    let mut at_index = vec![false; n];
    let mut stored = vec![false; n];
    for i in (0..n).rev() {
        let inst = insts[i];
        if let Op::Dot(d) = &inst.op {
            let r = inst.results[0];
            if let [t] = users[r.index()][..] {
                if !is_output[r.index()] && transposable(graph, d, inst, &insts[t].op) {
                    root[i] = Some(t);
                    absorbed_dot[t] = Some(i);
                }
            }
            continue;
        }
        if fused_reduce(graph, inst) {
            let r = sibling(graph, &insts, &users, &red_roots, i).unwrap_or(i);
            root[i] = Some(r);
            at_index[i] = true;
            groups[i].push(r);
            if r == i {
                red_roots.push(i);
            }
            continue;
        }
        let is_remap = remaps[i];
        if !(fusable(&inst.op) || is_remap) || inst.results.len() != 1 {
            continue;
        }
        let r = inst.results[0];
        let rty = graph.ty(r);
        if rty.is_scalar() {
            continue;
        }
        let us = &users[r.index()];
        let mut ok = !us.is_empty();
        let mut set: SmallVec<[usize; 2]> = SmallVec::new();
        // Users that no loop evaluates (a product, a convolution, control flow), which read
        // the value from memory: it may still join a group as a stored member.
        let mut outside: SmallVec<[usize; 2]> = SmallVec::new();
        let loop_kind =
            |u: usize| fusable(&insts[u].op) || remaps[u] || fused_reduce(graph, insts[u]);
        for &u in us {
            let ui = insts[u];
            let same_shape = graph.ty(ui.results[0]).shape == rty.shape;
            // A remap joins a remap user (the loop reads through both maps); any other
            // value joins a trivial broadcast only when that broadcast passes it through
            // (no remap reads it at other indices).
            let joinable = (ui.op.is_elementwise() && same_shape)
                || fused_reduce(graph, ui)
                || (is_remap && remaps[u] && !gather[u])
                || (trivial_broadcast(graph, ui) && !chain[u])
                || (inst.op.is_elementwise() && computed_ok[u] && float_only(graph, inst));
            if !joinable || root[u].is_none() {
                if !loop_kind(u) {
                    outside.push(u);
                    continue;
                }
                ok = false;
                break;
            }
            for &g in &groups[u] {
                if let Err(k) = set.binary_search(&g) {
                    set.insert(k, g);
                }
            }
        }
        // The remaps between this value and its loop: reads nest once per remap when the
        // loop is built, so deep nests are cut.
        let depth = us
            .iter()
            .map(|&u| nest[u] + remaps[u] as usize)
            .max()
            .unwrap_or(0);
        ok &= depth <= NEST_MAX;
        // Evaluated at the loop's index: elementwise, and every user in the loop evaluates
        // its operands there.
        let indexed = ok
            && inst.op.is_elementwise()
            && !is_remap
            && us
                .iter()
                .filter(|u| !outside.contains(u))
                .all(|&u| at_index[u] && graph.ty(insts[u].args[0]).shape == rty.shape);
        // An output, or a value also read from memory by users outside every loop, joins
        // only as a stored member: with the root's dtype (so it is stored like the root's
        // value), and written before any outside user runs.
        let store = is_output[r.index()] || !outside.is_empty();
        if store {
            let in_time = |g: usize| outside.iter().all(|&u| root[u].unwrap_or(u) > g);
            ok &= indexed
                && set.len() == 1
                && in_time(set[0])
                && graph.ty(insts[set[0]].results[0]).dtype == rty.dtype;
        }
        if ok {
            nest[i] = depth;
            chain[i] = is_remap && us.iter().any(|&u| remaps[u]);
            computed_ok[i] = matches!(
                inst.op,
                Op::Shape(
                    ShapeOp::Pad { .. }
                        | ShapeOp::Slice { .. }
                        | ShapeOp::Transpose { .. }
                        | ShapeOp::Rev { .. }
                )
            ) && is_remap
                && us.iter().all(|&u| !remaps[u] || computed_ok[u]);
        }
        if ok && set.len() == 1 {
            root[i] = Some(set[0]);
            groups[i] = set;
            at_index[i] = indexed;
            stored[i] = store;
        } else if ok && (cheap(&inst.op) || gather[i]) && (set.len() <= DUP_MAX || is_remap) {
            root[i] = set.last().copied();
            dup[i] = true;
            groups[i] = set;
        } else if !fusable(&inst.op)
            && !gather[i]
            && !joins_gathers(graph, &insts, &users, &gather, i)
        {
            // A remap no fused loop can read through is lowered on its own (a constant
            // gather roots a loop of its own, which runs on all cores when large, and so
            // does a concatenation of constant gathers, which read in place).
            chain[i] = false;
            computed_ok[i] = false;
        } else {
            root[i] = Some(i);
            groups[i] = SmallVec::from_slice(&[i]);
            at_index[i] = inst.op.is_elementwise() && !is_remap;
        }
    }
    let members = members_of(graph, &insts, &root, &dup);
    Fusion {
        root,
        dup,
        members,
        absorbed_dot,
        stored,
    }
}

/// Whether the instruction at `i` is a concatenation read in place (see [`remap`]) with a
/// piece computed by a constant gather that nothing else uses: such a concatenation roots a
/// loop of its own, which its gathers join, so neither the gathered pieces nor a copy of
/// them is made (the sparse derivatives of `ferrax-transforms` end in one when the
/// function's output is a concatenation).
fn joins_gathers(
    graph: &Graph,
    insts: &[&InstData],
    users: &[Vec<usize>],
    gather: &[bool],
    i: usize,
) -> bool {
    let inst = insts[i];
    if !matches!(inst.op, Op::Shape(ShapeOp::Concatenate { .. })) || !remap(graph, inst) {
        return false;
    }
    let outputs = graph.outputs();
    inst.args.iter().any(|&a| match graph.def(a) {
        ferrax_ir::ValueDef::Result(p, _) => {
            let p = p.index();
            gather[p] && !outputs.contains(&a) && users[a.index()][..] == [i]
        }
        ferrax_ir::ValueDef::Param(_) => false,
    })
}

/// The members of every group: the instructions whose group it is, and the duplicated
/// instructions they reach through operands.
fn members_of(
    graph: &Graph,
    insts: &[&InstData],
    root: &[Option<usize>],
    dup: &[bool],
) -> Vec<Vec<usize>> {
    let n = insts.len();
    // The position defining a value (instruction positions are their indices).
    let def = |v: ferrax_ir::Value| match graph.def(v) {
        ferrax_ir::ValueDef::Result(inst, _) => Some(inst.index()),
        ferrax_ir::ValueDef::Param(_) => None,
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        if let Some(r) = root[i] {
            if !dup[i] {
                members[r].push(i);
            }
        }
    }
    for (r, m) in members.iter_mut().enumerate() {
        if m.is_empty() || root[r] != Some(r) {
            continue;
        }
        let mut stack: Vec<usize> = m.clone();
        let mut seen: hashbrown::HashSet<usize> = m.iter().copied().collect();
        while let Some(j) = stack.pop() {
            for &a in &insts[j].args {
                if let Some(d) = def(a) {
                    if dup[d] && seen.insert(d) {
                        m.push(d);
                        stack.push(d);
                    }
                }
            }
        }
        m.sort_unstable();
    }
    members
}

/// A later reduction root that the reduction at `i` can join as a sibling: same operand
/// shape, axes and result dtype, and every user of `i`'s result comes after that root (so
/// computing it there is in time). The nearest such root is taken.
fn sibling(
    graph: &Graph,
    insts: &[&InstData],
    users: &[Vec<usize>],
    red_roots: &[usize],
    i: usize,
) -> Option<usize> {
    let inst = insts[i];
    let Op::Reduce(op) = &inst.op else {
        return None;
    };
    let r = inst.results[0];
    red_roots.iter().rev().copied().find(|&g| {
        let other = insts[g];
        let Op::Reduce(gop) = &other.op else {
            return false;
        };
        gop.axes() == op.axes()
            && graph.ty(other.args[0]).shape == graph.ty(inst.args[0]).shape
            && graph.ty(other.results[0]).dtype == graph.ty(r).dtype
            && users[r.index()].iter().all(|&u| u > g)
    })
}

/// Whether the product `d` (instruction `inst`) can be written transposed by its user `user`: a
/// 2-D product with one free dimension per side and no batch, under `transpose[perm=(1,0)]`.
fn transposable(graph: &Graph, d: &DotGeneral, inst: &InstData, user: &Op) -> bool {
    let (a, b) = (graph.ty(inst.args[0]).rank(), graph.ty(inst.args[1]).rank());
    let two_d = d.lhs_batch.is_empty() && d.lhs_free(a).len() == 1 && d.rhs_free(b).len() == 1;
    let swap = matches!(user, Op::Shape(ShapeOp::Transpose { perm }) if perm[..] == [1, 0]);
    two_d && swap
}
