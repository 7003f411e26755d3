//! Fusion analysis: which instructions run together in one loop nest.
//!
//! A *fusable* instruction is an elementwise op (unary, binary, compare/select, convert) or a
//! `broadcast_in_dim`, with a non-scalar result. Fusable instructions are grouped in reverse
//! order: the result of a fusable instruction is *internal* to a group (computed in registers,
//! never stored) when it is not a graph output and every user is a fusable, non-broadcast
//! instruction of the same group (elementwise users have the same shape, so the element index
//! is shared). A broadcast joins its users' group only as a *leaf read*: its operand is read
//! through a stride-0 affine map, so broadcasts never need a buffer either. Every other
//! fusable instruction roots a group of its own, placed at its position in the body; values a
//! group reads from outside (parameters, constants, other groups' or ops' results) are its
//! leaves, which must stay live until the root runs.

use ferrax_ir::ops::ShapeOp;
use ferrax_ir::{Graph, Op};

/// The groups of a graph, indexed by instruction position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fusion {
    /// The position of the group root of every fusable instruction (`None` otherwise).
    pub root: Vec<Option<usize>>,
}

impl Fusion {
    /// Whether the instruction at `i` belongs to a group rooted elsewhere (it emits no code of
    /// its own and its results have no buffer).
    pub fn is_member(&self, i: usize) -> bool {
        matches!(self.root[i], Some(r) if r != i)
    }

    /// The position at which instruction `i` runs (its group root, or itself).
    pub fn exec_pos(&self, i: usize) -> usize {
        self.root[i].unwrap_or(i)
    }
}

/// Whether `op` can join a fused loop.
pub(crate) fn fusable(op: &Op) -> bool {
    op.is_elementwise() || matches!(op, Op::Shape(ShapeOp::BroadcastInDim { .. }))
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
    for i in (0..n).rev() {
        let inst = insts[i];
        if !fusable(&inst.op) || inst.results.len() != 1 {
            continue;
        }
        let r = inst.results[0];
        let rty = graph.ty(r);
        if rty.is_scalar() {
            continue;
        }
        let us = &users[r.index()];
        let mut group: Option<usize> = None;
        let mut ok = !is_output[r.index()] && !us.is_empty();
        for &u in us {
            let ui = insts[u];
            let same_shape = graph.ty(ui.results[0]).shape == rty.shape;
            let elementwise = ui.op.is_elementwise() && same_shape;
            match (elementwise, root[u]) {
                (true, Some(g)) if group.is_none_or(|x| x == g) => group = Some(g),
                _ => ok = false,
            }
        }
        root[i] = Some(if ok { group.unwrap_or(i) } else { i });
    }
    Fusion { root }
}
