//! Outputs that may be written into an argument's buffer: the analysis behind
//! [`crate::Compiled::call_in_place`], which lets a caller that gives an argument up (a
//! training step's parameters and optimizer state) receive an output in the same memory.
//!
//! Updating in place halves the memory an optimizer's elementwise pass streams through: an
//! Adam step over 200k f32 parameters reads the gradient, parameters and two moments and
//! writes three tensors, and with distinct output buffers the seven tensors (5.6 MB) no longer
//! fit the two cores' caches, while four (3.2 MB) do.
//!
//! Output `k` may take parameter `j`'s buffer when writing it cannot change anything the code
//! still reads:
//! - the output is computed by an elementwise fused loop (its root or a stored member, see
//!   `crate::fuse`), of the parameter's type, and is not also a parameter or another output;
//! - that loop reads the parameter only at the element index it writes (a leaf read through
//!   no broadcast or other remap, as for the workspace reuse in `crate::plan`), so every
//!   element is read before it is overwritten, on whichever thread runs it;
//! - every other reader of the parameter runs before that loop, and the parameter has no
//!   view (a reshape sharing its buffer) whose readers could run later;
//! - no other output takes the same parameter.
//!
//! The generated code does not change: it reads parameters and writes outputs through the
//! pointers it is given, with no assumption that they differ.

use crate::plan::{same_index_leaves, Home, Plan};
use ferrax_ir::{Graph, Op};

/// For each output of `graph` (planned by `plan`), the parameter whose buffer it may be
/// written into, if any (see the module documentation).
pub(crate) fn in_place_outputs(graph: &Graph, plan: &Plan) -> Vec<Option<usize>> {
    let outputs = graph.outputs();
    let mut found = vec![None; outputs.len()];
    let n = graph.num_values();
    // How often each value is an output; the last position at which it is read.
    let mut as_output = vec![0usize; n];
    for o in outputs {
        as_output[o.index()] += 1;
    }
    let mut last_use = vec![None::<usize>; n];
    let mut viewed = vec![false; n];
    for (i, (_, inst)) in graph.insts().enumerate() {
        let at = plan.fusion.exec_pos(i);
        for &a in &inst.args {
            let l = &mut last_use[a.index()];
            *l = Some(l.map_or(at, |l| l.max(at)));
        }
    }
    for x in plan.alias.iter().flatten() {
        viewed[x.index()] = true;
    }
    // The instruction and group root that produce each value.
    let mut producer = vec![None::<usize>; n];
    for (i, (_, inst)) in graph.insts().enumerate() {
        for r in &inst.results {
            producer[r.index()] = Some(i);
        }
    }
    let insts: Vec<_> = graph.insts().map(|(_, d)| d).collect();
    let mut taken = vec![false; graph.params().len()];
    for (k, &r) in outputs.iter().enumerate() {
        if as_output[r.index()] != 1 || plan.homes[r.index()] != Home::Output(k) {
            continue;
        }
        let Some(i) = producer[r.index()] else {
            continue;
        };
        // The loop that writes `r`: a group whose root is elementwise, `r` being the root's
        // result or a stored member of the root's type.
        let Some(root) = plan.fusion.root[i] else {
            continue;
        };
        let root_inst = insts[root];
        if !root_inst.op.is_elementwise()
            || matches!(root_inst.op, Op::Reduce(_))
            || (root != i && !plan.fusion.stored[i])
            || graph.ty(root_inst.results[0]) != graph.ty(r)
        {
            continue;
        }
        // The candidates nearest to `r` in its expression first (breadth first through the
        // group's members), so that an update `p − lr·u` takes `p`'s buffer rather than that
        // of another argument its loop reads, and a caller donating only the parameters (not
        // the optimizer state) still gets them updated in place.
        let leaves = same_index_leaves(graph, &plan.fusion, root);
        let mut order = Vec::with_capacity(leaves.len());
        let mut seen = hashbrown::HashSet::new();
        let mut queue = std::collections::VecDeque::from([r]);
        while let Some(v) = queue.pop_front() {
            if !seen.insert(v) {
                continue;
            }
            if leaves.contains(&v) {
                order.push(v);
            }
            match producer[v.index()] {
                Some(p)
                    if plan.fusion.root[p] == Some(root) && (v == r || !leaves.contains(&v)) =>
                {
                    queue.extend(insts[p].args.iter().copied());
                }
                _ => {}
            }
        }
        let rest: Vec<_> = leaves
            .iter()
            .filter(|a| !order.contains(a))
            .copied()
            .collect();
        order.extend(rest);
        for a in order {
            let Home::Param(j) = plan.homes[a.index()] else {
                continue;
            };
            if taken[j]
                || graph.ty(a) != graph.ty(r)
                || as_output[a.index()] != 0
                || viewed[a.index()]
                || plan.alias[a.index()].is_some()
                || last_use[a.index()] != Some(root)
            {
                continue;
            }
            taken[j] = true;
            found[k] = Some(j);
            break;
        }
    }
    found
}
