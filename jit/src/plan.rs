//! Buffer planning: where every value of a graph lives while the compiled code runs.
//!
//! Rank-0 values live in registers (Cranelift SSA values). Other values live in a caller's
//! input buffer (parameters), a constant owned by the compiled function, the caller's output
//! buffer (a value that is an output is computed straight into it), or the workspace: one
//! byte arena per call whose regions are assigned by liveness, so values whose lifetimes do not
//! overlap share memory. Elementwise ops may write into the region of an operand that dies at
//! that op (same index, read before written).

use ferrax_ir::{Graph, Op, Value};

/// Alignment of every workspace region, in bytes (enough for 128-bit vectors).
pub(crate) const ALIGN: usize = 16;

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
}

/// The buffer plan of a graph.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// The home of every value, indexed by value.
    pub homes: Vec<Home>,
    /// The workspace size in bytes.
    pub workspace: usize,
}

/// A first-fit allocator over workspace byte offsets.
#[derive(Default)]
struct Arena {
    /// Live regions as (offset, size), sorted by offset.
    live: Vec<(usize, usize)>,
    high: usize,
}

impl Arena {
    fn alloc(&mut self, size: usize) -> usize {
        let size = size.div_ceil(ALIGN) * ALIGN;
        let mut at = 0;
        let mut pos = self.live.len();
        for (i, &(o, s)) in self.live.iter().enumerate() {
            if o >= at + size {
                pos = i;
                break;
            }
            at = at.max(o + s);
        }
        self.live.insert(pos, (at, size));
        self.high = self.high.max(at + size);
        at
    }

    fn free(&mut self, offset: usize) {
        if let Some(i) = self.live.iter().position(|&(o, _)| o == offset) {
            self.live.remove(i);
        }
    }
}

/// Plans the homes of every value of `graph`.
pub(crate) fn plan(graph: &Graph) -> Plan {
    let n = graph.num_values();
    let mut homes = vec![Home::Reg; n];
    let mut last_use = vec![0usize; n];
    for (i, (_, inst)) in graph.insts().enumerate() {
        for &a in &inst.args {
            last_use[a.index()] = i;
        }
    }
    for (k, &p) in graph.params().iter().enumerate() {
        if !graph.ty(p).is_scalar() {
            homes[p.index()] = Home::Param(k);
        }
    }
    let mut first_output: Vec<Option<usize>> = vec![None; n];
    for (k, &o) in graph.outputs().iter().enumerate() {
        first_output[o.index()].get_or_insert(k);
    }
    let mut arena = Arena::default();
    let size_of = |v: Value| graph.ty(v).size() * graph.ty(v).dtype.size_bytes();
    for (i, (_, inst)) in graph.insts().enumerate() {
        let mut reusable: Option<usize> = None;
        if inst.op.is_elementwise() {
            let want = size_of(inst.results[0]);
            for &a in &inst.args {
                if let Home::Work(off) = homes[a.index()] {
                    if last_use[a.index()] == i && size_of(a) == want && reusable.is_none() {
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
        for &a in &inst.args {
            if let Home::Work(off) = homes[a.index()] {
                if last_use[a.index()] == i && !taken.contains(&off) {
                    arena.free(off);
                }
            }
        }
    }
    Plan {
        homes,
        workspace: arena.high,
    }
}
