//! Loop rerolling: long runs of isomorphic consecutive blocks of a straight-line graph become
//! `scan` loops, so that the machine code of a long chain (a gradient of N repeated steps)
//! stays small and inside the instruction caches.
//!
//! A *run* is a stretch of the body (constants and `iota`s set aside) cut into `B` blocks of
//! `p` instructions that match position by position: the same op with the same static
//! parameters and result types, and every operand related to the template block (block 0) in
//! one of these ways, the same in every block:
//! - *internal*: the result of an earlier position of the same block;
//! - *carried*: the result of a position of the previous block (block 0 reads a value just
//!   before the run, the loop's initial carry);
//! - *invariant*: the same value in every block, defined before the run (or a parameter);
//! - *literal*: equal constants (they are rebuilt inside the loop body);
//! - *strided*: position `q'` of block `m0 ± b` of an earlier run with the same period in
//!   instructions (a backward pass reading the residuals of its forward pass in reverse).
//!   The earlier run stacks that position's values (a stacked output of its `scan`) and this
//!   run scans them, in reverse when it reads them backwards.
//!
//! Each run becomes one `scan` whose body is the template block: operands are the
//! invariants, the initial carries and the stacked inputs; results are the final carries and
//! the stacked values later code needs. A value of a run used elsewhere that is not a final
//! carry is taken from its stack with a `slice` and a `reshape`; a run that would need more
//! than [`MAX_EXTRACTS`] of those is not rerolled.
//!
//! Detection is linear in the graph's size: each instruction gets a hash of its op, types and
//! operand kinds; the candidate periods at a position are the distances to the next few
//! instructions with the same hash (at most [`MAX_PERIOD`]), and a candidate is verified
//! exactly, block by block, so a failed candidate costs at most [`MIN_BLOCKS`] blocks.
//! Runs shorter than [`MIN_BLOCKS`] blocks or [`MIN_RUN_INSTS`] instructions are left alone,
//! and graphs under [`MIN_GRAPH_INSTS`] instructions are not examined. The rewritten graph
//! computes the very same operations in the same order on the same values, so its results
//! equal the original's bit for bit.

use ferrax_ir::ops::{Body, ControlOp, ShapeOp};
use ferrax_ir::{Builder, Dims, Graph, Op, Result, Value, ValueDef};
use hashbrown::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// Graphs with fewer instructions are not examined.
pub const MIN_GRAPH_INSTS: usize = 2048;
/// The longest period (instructions per block) looked for.
pub const MAX_PERIOD: usize = 64;
/// The fewest blocks a run needs.
pub const MIN_BLOCKS: usize = 16;
/// The fewest instructions a run needs.
pub const MIN_RUN_INSTS: usize = 256;
/// How many candidate periods are tried at each position.
const CANDIDATES: usize = 4;
/// The most values of a run that later code may take from its stacks one by one.
pub const MAX_EXTRACTS: usize = 64;

/// No position (a sentinel in position tables).
const NONE: u32 = u32::MAX;

/// How an operand of the template block relates to the blocks.
#[derive(Clone, Debug, PartialEq)]
enum Arg {
    /// Position `q`, result `r` of the same block.
    Internal(u32, u32),
    /// Position `q`, result `r` of the previous block; `init` is block 0's operand.
    Carried(u32, u32, Value),
    /// The same value in every block (a parameter or a value defined before the run).
    Invariant(Value),
    /// A constant, rebuilt in the body: the instruction defining it in block 0.
    Literal(Value),
    /// Block `m0 + b·dir` (as `step` is ±1) of run `run`, position `q`, result `r`.
    Strided {
        run: usize,
        q: u32,
        r: u32,
        m0: usize,
        step: isize,
    },
}

/// A detected run: `blocks` blocks of `period` body positions from `start`.
#[derive(Clone, Debug)]
struct Run {
    start: usize,
    period: usize,
    blocks: usize,
    /// Per template position, how each operand is read.
    args: Vec<Vec<Arg>>,
    /// Whether the scan runs from the last block to the first (its stacks are reversed).
    reverse: bool,
}

impl Run {
    fn end(&self) -> usize {
        self.start + self.period * self.blocks
    }

    /// The index in this run's stacks of block `b`.
    fn stack_index(&self, b: usize) -> usize {
        if self.reverse {
            self.blocks - 1 - b
        } else {
            b
        }
    }
}

/// The body of a graph without its literals: positions are indices into `seq`.
struct Seq<'g> {
    g: &'g Graph,
    /// Instruction index of each position.
    seq: Vec<u32>,
    /// Position of each instruction (`NONE` for literals).
    pos: Vec<u32>,
}

impl Seq<'_> {
    /// The position and result index defining `v`, if an instruction of `seq` does.
    fn def(&self, v: Value) -> Option<(usize, u32)> {
        match self.g.def(v) {
            ValueDef::Param(_) => None,
            ValueDef::Result(i, r) => {
                let p = self.pos[i.index()];
                (p != NONE).then_some((p as usize, r))
            }
        }
    }

    /// Whether `v` is defined by a literal instruction.
    fn is_literal(&self, v: Value) -> bool {
        matches!(self.g.producer(v), Some((_, inst)) if matches!(inst.op, Op::Literal(_)))
    }

    fn inst(&self, k: usize) -> &ferrax_ir::InstData {
        self.g
            .inst(ferrax_ir::Inst::from_index(self.seq[k] as usize))
    }
}

/// Rerolls the long runs of isomorphic blocks of `graph` into `scan`s; `None` when there is
/// nothing to reroll (or the graph is too small to be examined).
pub fn reroll(graph: &Graph) -> Result<Option<Graph>> {
    if graph.num_insts() < MIN_GRAPH_INSTS {
        return Ok(None);
    }
    let mut pos = vec![NONE; graph.num_insts()];
    let mut seq = Vec::with_capacity(graph.num_insts());
    for (i, inst) in graph.insts() {
        if !matches!(inst.op, Op::Literal(_)) {
            pos[i.index()] = seq.len() as u32;
            seq.push(i.index() as u32);
        }
    }
    let s = Seq { g: graph, seq, pos };
    let mut runs = detect(&s);
    if runs.is_empty() {
        return Ok(None);
    }
    let stacked = prune(&s, &mut runs);
    if runs.is_empty() {
        return Ok(None);
    }
    rewrite(&s, &runs, &stacked).map(Some)
}

/// The coarse hash of position `k`: op, result and operand types, and per operand whether it
/// is a parameter (which one), a literal (which value) or an instruction's result (which).
fn coarse_keys(s: &Seq) -> Vec<u64> {
    let g = s.g;
    // One hasher state for every key, so that equal instructions get equal hashes.
    let state = hashbrown::DefaultHashBuilder::default();
    let mut lit_hash: HashMap<u32, u64> = HashMap::new();
    let mut keys = Vec::with_capacity(s.seq.len());
    for k in 0..s.seq.len() {
        let inst = s.inst(k);
        let mut h = state.build_hasher();
        inst.op.hash(&mut h);
        for &r in &inst.results {
            g.ty(r).hash(&mut h);
        }
        for &a in &inst.args {
            g.ty(a).hash(&mut h);
            match g.def(a) {
                ValueDef::Param(p) => (0u8, p).hash(&mut h),
                ValueDef::Result(i, r) => {
                    if s.pos[i.index()] == NONE {
                        let lh = *lit_hash
                            .entry(i.index() as u32)
                            .or_insert_with(|| state.hash_one(&g.inst(i).op));
                        (1u8, lh).hash(&mut h);
                    } else {
                        (2u8, r).hash(&mut h);
                    }
                }
            }
        }
        keys.push(h.finish());
    }
    keys
}

/// Finds runs greedily from the start of the body.
fn detect(s: &Seq) -> Vec<Run> {
    let n = s.seq.len();
    let keys = coarse_keys(s);
    let mut next = vec![NONE; n];
    let mut last: HashMap<u64, u32> = HashMap::new();
    for k in (0..n).rev() {
        if let Some(&j) = last.get(&keys[k]) {
            next[k] = j;
        }
        last.insert(keys[k], k as u32);
    }
    // The run each position belongs to, for strided operands.
    let mut run_of = vec![NONE; n];
    let mut runs: Vec<Run> = Vec::new();
    let mut k = 0;
    while k < n {
        let mut found = None;
        let mut j = next[k];
        let mut tries = 0;
        while j != NONE && (j as usize) - k <= MAX_PERIOD && tries < CANDIDATES {
            let p = j as usize - k;
            if n - k >= MIN_BLOCKS * p {
                if let Some(run) = try_run(s, &keys, &runs, &run_of, k, p) {
                    found = Some(run);
                    break;
                }
            }
            j = next[j as usize];
            tries += 1;
        }
        match found {
            Some(run) => {
                let id = runs.len() as u32;
                run_of[run.start..run.end()].fill(id);
                k = run.end();
                runs.push(run);
            }
            None => k += 1,
        }
    }
    runs
}

/// Whether two operand values are the same constant.
fn same_literal(s: &Seq, a: Value, b: Value) -> bool {
    a == b
        || (s.is_literal(a)
            && s.is_literal(b)
            && s.g.producer(a).map(|(_, i)| &i.op) == s.g.producer(b).map(|(_, i)| &i.op))
}

/// Classifies operand `j` of template position `q` of a candidate run at `start` with period
/// `p` from its values `a0`, `a1` in blocks 0 and 1; `None` when no class fits.
#[allow(clippy::too_many_arguments)]
fn classify(
    s: &Seq,
    runs: &[Run],
    run_of: &[u32],
    start: usize,
    p: usize,
    q: usize,
    a0: Value,
    a1: Value,
) -> Option<Arg> {
    if s.is_literal(a0) {
        return same_literal(s, a0, a1).then_some(Arg::Literal(a0));
    }
    if a0 == a1 {
        // The same value in every block: it must come from before the run.
        return match s.def(a0) {
            Some((d, _)) if d >= start => None,
            _ => Some(Arg::Invariant(a0)),
        };
    }
    let (d0, r0) = s.def(a0)?;
    let (d1, r1) = s.def(a1)?;
    if r0 != r1 {
        return None;
    }
    let stride = d1 as isize - d0 as isize;
    if stride == p as isize && d1 >= start {
        if d1 >= start + p {
            let q1 = d1 - start - p;
            return (q1 < q).then_some(Arg::Internal(q1 as u32, r0));
        }
        return Some(Arg::Carried((d1 - start) as u32, r0, a0));
    }
    // A strided read of an earlier run with the same period (values of this run two or more
    // blocks back have no earlier run and are refused here).
    let id = run_of[d0];
    if id == NONE {
        return None;
    }
    let src = &runs[id as usize];
    if stride.unsigned_abs() != src.period {
        return None;
    }
    let off = d0 - src.start;
    Some(Arg::Strided {
        run: id as usize,
        q: (off % src.period) as u32,
        r: r0,
        m0: off / src.period,
        step: stride.signum(),
    })
}

/// Verifies a candidate run at `start` with period `p` block by block; returns it when it is
/// long enough.
fn try_run(
    s: &Seq,
    keys: &[u64],
    runs: &[Run],
    run_of: &[u32],
    start: usize,
    p: usize,
) -> Option<Run> {
    let n = s.seq.len();
    let g = s.g;
    // Coarse check of the first two blocks, then classification from them.
    if (0..2 * p).any(|i| start + i >= n || keys[start + i] != keys[start + i % p]) {
        return None;
    }
    let mut args = Vec::with_capacity(p);
    let mut dir = 0isize;
    for q in 0..p {
        let t = s.inst(start + q);
        let u = s.inst(start + p + q);
        if t.op != u.op || t.args.len() != u.args.len() || t.results.len() != u.results.len() {
            return None;
        }
        let mut row = Vec::with_capacity(t.args.len());
        for (&a0, &a1) in t.args.iter().zip(&u.args) {
            let a = classify(s, runs, run_of, start, p, q, a0, a1)?;
            match &a {
                Arg::Carried(q1, r, init) => {
                    let src = s.inst(start + *q1 as usize);
                    if g.ty(src.results[*r as usize]) != g.ty(*init) {
                        return None;
                    }
                }
                Arg::Strided { run, step, .. } => {
                    let sigma = if runs[*run].reverse { -step } else { *step };
                    if dir != 0 && sigma != dir {
                        return None;
                    }
                    dir = sigma;
                }
                _ => {}
            }
            row.push(a);
        }
        args.push(row);
    }
    // Extend block by block while every position matches the template exactly.
    let mut b = 1;
    'blocks: while start + (b + 1) * p <= n {
        for q in 0..p {
            let k = start + b * p + q;
            if keys[k] != keys[start + q] {
                break 'blocks;
            }
            let t = s.inst(start + q);
            let u = s.inst(k);
            if t.op != u.op || t.args.len() != u.args.len() || t.results.len() != u.results.len() {
                break 'blocks;
            }
            for (&rt, &ru) in t.results.iter().zip(&u.results) {
                if g.ty(rt) != g.ty(ru) {
                    break 'blocks;
                }
            }
            for (a, &v) in args[q].iter().zip(&u.args) {
                let ok = match *a {
                    Arg::Internal(q1, r) => s.def(v) == Some((start + b * p + q1 as usize, r)),
                    Arg::Carried(q1, r, _) => {
                        s.def(v) == Some((start + (b - 1) * p + q1 as usize, r))
                    }
                    Arg::Invariant(x) => v == x,
                    Arg::Literal(x) => same_literal(s, x, v),
                    Arg::Strided {
                        run,
                        q: q1,
                        r,
                        m0,
                        step,
                    } => {
                        let src = &runs[run];
                        let m = m0 as isize + step * b as isize;
                        m >= 0
                            && (m as usize) < src.blocks
                            && s.def(v)
                                == Some((src.start + m as usize * src.period + q1 as usize, r))
                    }
                };
                if !ok {
                    break 'blocks;
                }
            }
        }
        b += 1;
    }
    // Block 0 is verified by the classification (its strided reads lie in their run by
    // construction) and the other blocks by the loop.
    (b >= MIN_BLOCKS && b * p >= MIN_RUN_INSTS).then_some(Run {
        start,
        period: p,
        blocks: b,
        args,
        reverse: dir < 0,
    })
}

/// The stacked outputs each run needs, `(position, result)` per run; drops runs whose values
/// later code would take one by one more than [`MAX_EXTRACTS`] times (and the runs that read
/// them), until none does.
fn prune(s: &Seq, runs: &mut Vec<Run>) -> Vec<Vec<(u32, u32)>> {
    loop {
        let n = s.seq.len();
        let mut run_of = vec![NONE; n];
        for (id, r) in runs.iter().enumerate() {
            run_of[r.start..r.end()].fill(id as u32);
        }
        let mut stack: Vec<HashMap<(u32, u32), ()>> = vec![HashMap::new(); runs.len()];
        let mut extracts = vec![0usize; runs.len()];
        // Whether value `v`, used outside its run, is a final carry there.
        let carried_out = |id: usize, q: u32, r: u32| {
            runs[id]
                .args
                .iter()
                .flatten()
                .any(|a| matches!(*a, Arg::Carried(q1, r1, _) if q1 == q && r1 == r))
        };
        let mut note = |v: Value, by_strided: bool, stack: &mut Vec<HashMap<(u32, u32), ()>>| {
            let Some((d, r)) = s.def(v) else { return };
            let id = run_of[d];
            if id == NONE {
                return;
            }
            let run = &runs[id as usize];
            let b = (d - run.start) / run.period;
            let q = ((d - run.start) % run.period) as u32;
            if !by_strided && b + 1 == run.blocks && carried_out(id as usize, q, r) {
                return;
            }
            stack[id as usize].insert((q, r), ());
            if !by_strided {
                extracts[id as usize] += 1;
            }
        };
        for k in 0..n {
            let inst = s.inst(k);
            let here = run_of[k];
            for (j, &a) in inst.args.iter().enumerate() {
                let inside = s
                    .def(a)
                    .is_some_and(|(d, _)| run_of[d] == here && here != NONE);
                if inside {
                    continue;
                }
                let strided = here != NONE && {
                    let run = &runs[here as usize];
                    let q = (k - run.start) % run.period;
                    matches!(run.args[q][j], Arg::Strided { .. })
                };
                note(a, strided, &mut stack);
            }
        }
        for &o in s.g.outputs() {
            note(o, false, &mut stack);
        }
        let bad: Vec<bool> = extracts.iter().map(|&e| e > MAX_EXTRACTS).collect();
        if !bad.iter().any(|&b| b) {
            return stack
                .into_iter()
                .map(|m| {
                    let mut v: Vec<(u32, u32)> = m.into_keys().collect();
                    v.sort_unstable();
                    v
                })
                .collect();
        }
        // Drop the bad runs and every run reading one of them; renumber strided sources.
        let mut keep = vec![true; runs.len()];
        let mut new_id = vec![usize::MAX; runs.len()];
        let mut next = 0;
        for id in 0..runs.len() {
            let reads_dropped = runs[id].args.iter().flatten().any(|a| match *a {
                Arg::Strided { run, .. } => !keep[run],
                _ => false,
            });
            keep[id] = !bad[id] && !reads_dropped;
            if keep[id] {
                new_id[id] = next;
                next += 1;
            }
        }
        let old = std::mem::take(runs);
        for (id, mut r) in old.into_iter().enumerate() {
            if !keep[id] {
                continue;
            }
            for a in r.args.iter_mut().flatten() {
                if let Arg::Strided { run, .. } = a {
                    *run = new_id[*run];
                }
            }
            runs.push(r);
        }
        if runs.is_empty() {
            return Vec::new();
        }
    }
}

/// Builds the rerolled graph.
fn rewrite(s: &Seq, runs: &[Run], stacked: &[Vec<(u32, u32)>]) -> Result<Graph> {
    let g = s.g;
    let mut b = Builder::new();
    b.fold_constants = false;
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for &p in g.params() {
        map[p.index()] = Some(b.param(g.ty(p).clone()));
    }
    let n = s.seq.len();
    let mut run_of = vec![NONE; n];
    for (id, r) in runs.iter().enumerate() {
        run_of[r.start..r.end()].fill(id as u32);
    }
    // Per run: its final carries and its stacks in the new graph.
    let mut finals: Vec<HashMap<(u32, u32), Value>> = vec![HashMap::new(); runs.len()];
    let mut stacks: Vec<HashMap<(u32, u32), Value>> = vec![HashMap::new(); runs.len()];
    let mut cx = Rewrite {
        s,
        runs,
        run_of: &run_of,
        map: &mut map,
        finals: &mut finals,
        stacks: &mut stacks,
    };
    for (i, inst) in g.insts() {
        let k = s.pos[i.index()];
        if k != NONE && run_of[k as usize] != NONE {
            let id = run_of[k as usize] as usize;
            if k as usize + 1 == runs[id].end() {
                cx.emit_scan(&mut b, id, &stacked[id])?;
            }
            continue;
        }
        let args = inst
            .args
            .iter()
            .map(|&a| cx.resolve(&mut b, a))
            .collect::<Result<Vec<_>>>()?;
        let rs = b.push(inst.op.clone(), &args)?;
        for (&r, &nr) in inst.results.iter().zip(&rs) {
            cx.map[r.index()] = Some(nr);
        }
    }
    let outs = g
        .outputs()
        .iter()
        .map(|&o| cx.resolve(&mut b, o))
        .collect::<Result<Vec<_>>>()?;
    Ok(b.finish(&outs))
}

/// The state of [`rewrite`].
struct Rewrite<'a, 'g> {
    s: &'a Seq<'g>,
    runs: &'a [Run],
    run_of: &'a [u32],
    map: &'a mut Vec<Option<Value>>,
    finals: &'a mut Vec<HashMap<(u32, u32), Value>>,
    stacks: &'a mut Vec<HashMap<(u32, u32), Value>>,
}

fn internal(what: &str) -> ferrax_ir::Error {
    crate::lower::jit_err(format!(
        "reroll: {what} (a bug in the JIT's loop rerolling)"
    ))
}

impl Rewrite<'_, '_> {
    /// The new value of the original value `v`.
    fn resolve(&mut self, b: &mut Builder, v: Value) -> Result<Value> {
        if let Some(nv) = self.map[v.index()] {
            return Ok(nv);
        }
        let (d, r) = self
            .s
            .def(v)
            .ok_or_else(|| internal("a value used before its definition"))?;
        let id = self.run_of[d];
        if id == NONE {
            return Err(internal("a value used before its definition"));
        }
        let run = &self.runs[id as usize];
        let blk = (d - run.start) / run.period;
        let q = ((d - run.start) % run.period) as u32;
        if blk + 1 == run.blocks {
            if let Some(&f) = self.finals[id as usize].get(&(q, r)) {
                self.map[v.index()] = Some(f);
                return Ok(f);
            }
        }
        let stack = *self.stacks[id as usize]
            .get(&(q, r))
            .ok_or_else(|| internal("a run's value is neither carried nor stacked"))?;
        let i = run.stack_index(blk);
        let one = slice_rows(b, stack, i, i + 1)?;
        let ty = self.s.g.ty(v).clone();
        let nv = b.push1(
            Op::Shape(ShapeOp::Reshape {
                shape: ty.shape.clone(),
            }),
            &[one],
        )?;
        self.map[v.index()] = Some(nv);
        Ok(nv)
    }

    /// Emits the `scan` of run `id`, stacking the positions `stacked`.
    fn emit_scan(&mut self, b: &mut Builder, id: usize, stacked: &[(u32, u32)]) -> Result<()> {
        let s = self.s;
        let g = s.g;
        let run = &self.runs[id];
        // Operand lists, deduplicated in order of first use.
        let mut consts: Vec<Value> = Vec::new();
        let mut carries: Vec<(u32, u32, Value)> = Vec::new();
        let mut xs: Vec<(usize, u32, u32, usize, isize)> = Vec::new();
        for a in run.args.iter().flatten() {
            match *a {
                Arg::Invariant(v) => {
                    if !consts.contains(&v) {
                        consts.push(v);
                    }
                }
                Arg::Carried(q, r, init) => {
                    if !carries.iter().any(|&(q1, r1, _)| (q1, r1) == (q, r)) {
                        carries.push((q, r, init));
                    }
                }
                Arg::Strided {
                    run,
                    q,
                    r,
                    m0,
                    step,
                } => {
                    if !xs.contains(&(run, q, r, m0, step)) {
                        xs.push((run, q, r, m0, step));
                    }
                }
                Arg::Internal(..) | Arg::Literal(_) => {}
            }
        }
        // The body: parameters, then the template block.
        let mut body = Builder::new();
        body.fold_constants = false;
        let template = |q: u32| s.inst(run.start + q as usize);
        let cparams: Vec<Value> = consts
            .iter()
            .map(|&v| body.param(g.ty(v).clone()))
            .collect();
        let kparams: Vec<Value> = carries
            .iter()
            .map(|&(q, r, _)| body.param(g.ty(template(q).results[r as usize]).clone()))
            .collect();
        let xparams: Vec<Value> = xs
            .iter()
            .map(|&(src, q, r, _, _)| {
                let srun = &self.runs[src];
                let v = s.inst(srun.start + q as usize).results[r as usize];
                body.param(g.ty(v).clone())
            })
            .collect();
        let mut vals: Vec<Vec<Value>> = Vec::with_capacity(run.period);
        for q in 0..run.period {
            let inst = template(q as u32);
            let mut args = Vec::with_capacity(inst.args.len());
            for (a, &orig) in run.args[q].iter().zip(&inst.args) {
                args.push(match *a {
                    Arg::Internal(q1, r) => vals[q1 as usize][r as usize],
                    Arg::Carried(q1, r, _) => {
                        let k = carries
                            .iter()
                            .position(|&(a, b, _)| (a, b) == (q1, r))
                            .ok_or_else(|| internal("a carry without a parameter"))?;
                        kparams[k]
                    }
                    Arg::Invariant(v) => {
                        let k = consts
                            .iter()
                            .position(|&c| c == v)
                            .ok_or_else(|| internal("an invariant without a parameter"))?;
                        cparams[k]
                    }
                    Arg::Literal(_) => {
                        let (_, lit) = g
                            .producer(orig)
                            .ok_or_else(|| internal("a literal without an instruction"))?;
                        body.push1(lit.op.clone(), &[])?
                    }
                    Arg::Strided {
                        run: src,
                        q: q1,
                        r,
                        m0,
                        step,
                    } => {
                        let k = xs
                            .iter()
                            .position(|&x| x == (src, q1, r, m0, step))
                            .ok_or_else(|| internal("a stacked input without a parameter"))?;
                        xparams[k]
                    }
                });
            }
            vals.push(body.push(inst.op.clone(), &args)?.to_vec());
        }
        let mut outs: Vec<Value> = carries
            .iter()
            .map(|&(q, r, _)| vals[q as usize][r as usize])
            .collect();
        outs.extend(stacked.iter().map(|&(q, r)| vals[q as usize][r as usize]));
        let body = body.finish(&outs);

        // The operands in the outer graph.
        let mut operands = Vec::with_capacity(consts.len() + carries.len() + xs.len());
        for &v in &consts {
            operands.push(self.resolve(b, v)?);
        }
        for &(_, _, init) in &carries {
            operands.push(self.resolve(b, init)?);
        }
        for &(src, q, r, m0, step) in &xs {
            let srun = &self.runs[src];
            let whole = *self.stacks[src]
                .get(&(q, r))
                .ok_or_else(|| internal("a strided read of an unstacked value"))?;
            let first = srun.stack_index(m0);
            let last_block = m0 as isize + step * (run.blocks as isize - 1);
            let last = srun.stack_index(last_block as usize);
            let (lo, hi) = (first.min(last), first.max(last));
            operands.push(if lo == 0 && hi + 1 == srun.blocks {
                whole
            } else {
                slice_rows(b, whole, lo, hi + 1)?
            });
        }
        let op = Op::Control(ControlOp::Scan {
            body: Body::new(body),
            length: run.blocks,
            n_consts: consts.len(),
            n_carry: carries.len(),
            reverse: run.reverse,
        });
        let rs = b.push(op, &operands)?;
        for (k, &(q, r, _)) in carries.iter().enumerate() {
            self.finals[id].insert((q, r), rs[k]);
        }
        for (k, &qr) in stacked.iter().enumerate() {
            self.stacks[id].insert(qr, rs[carries.len() + k]);
        }
        Ok(())
    }
}

/// Rows `lo..hi` (along the leading axis) of the stacked value `v`.
fn slice_rows(b: &mut Builder, v: Value, lo: usize, hi: usize) -> Result<Value> {
    let dims = b.ty(v).dims().to_vec();
    let mut start: Dims = Dims::from_elem(0, dims.len());
    let mut limit: Dims = Dims::from_slice(&dims);
    start[0] = lo;
    limit[0] = hi;
    let stride = Dims::from_elem(1, dims.len());
    b.push1(
        Op::Shape(ShapeOp::Slice {
            start: start.into_boxed_slice(),
            limit: limit.into_boxed_slice(),
            stride: stride.into_boxed_slice(),
        }),
        &[v],
    )
}
