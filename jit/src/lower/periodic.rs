//! Gathers of a one-dimensional operand by constant indices that repeat with a shift: over a
//! long run of positions `j`, `idx[j + P] = idx[j] + D` (the decompression of a sparse
//! derivative whose colouring repeats along the variables, such as the chained Rosenbrock
//! Hessian's, whose star colouring repeats every four rows: twelve values, shifted by four).
//!
//! Such a run is lowered as a loop over its periods that reads the `P` elements of each at
//! immediate offsets from one base address, which moves by `D` elements per period, so the
//! call streams no index vector (4 bytes per gathered value). The positions before and after
//! the run are gathered as any other constant gather, an index loaded per element. A run of
//! at least `fused::PAR_MIN` elements runs on all cores (a kernel over a range of periods,
//! called through `ferrax_parallel_for`), as the fused gather it replaces did. Every
//! index of the run is checked against the operand's length when the code is built (an
//! affine sequence takes its extremes at its ends, and the run is extended only over indices
//! inside), so the loop needs no clamp and reads exactly what the general gather reads.

use super::{index, Ctx, Slot};
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::Module;
use ferrax_ir::ops::{IndexOp, LiteralOp};
use ferrax_ir::{Graph, InstData, Op, Result, Value, ValueDef};

/// The longest period looked for: the loop body holds one load and one store per position.
const MAX_PERIOD: usize = 32;

/// The fewest periods a run must repeat.
const MIN_REPS: usize = 4;

/// A periodic run of a constant index vector: positions `start .. start + reps · first.len()`
/// hold `first[k] + m · shift` at `start + m · first.len() + k`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The first position of the run.
    pub start: usize,
    /// The number of whole periods.
    pub reps: usize,
    /// The shift of the indices from one period to the next.
    pub shift: i64,
    /// The indices of the first period.
    pub first: Vec<i64>,
}

impl Run {
    /// The number of positions the run covers.
    pub fn len(&self) -> usize {
        self.reps * self.first.len()
    }
}

/// The longest periodic run (at least [`MIN_REPS`] periods, every index in `0..n`) of `idx`
/// covering at least half of it, for the shortest period (up to [`MAX_PERIOD`]) that has one;
/// `None` when there is none. A period is scanned only if it holds at two of three sample
/// places, and then only around every `reach`-th position (see the loop), so the search
/// reads about the run itself: at n = 10⁶ the Rosenbrock Hessian's three million indices
/// took 43–47 ms to search position by position, for periods that held at the samples but
/// had no long run, and take about 5 ms.
pub(crate) fn find(idx: &[i32], n: usize) -> Option<Run> {
    search(idx, n, false)
}

/// [`find`], measuring every stretch when `every` (the tests' reference) rather than only
/// those that can hold a run covering half of `idx`.
fn search(idx: &[i32], n: usize, every: bool) -> Option<Run> {
    let len = idx.len();
    let inside = |j: usize| idx[j] >= 0 && (idx[j] as i64) < n as i64;
    let diff = |j: usize, p: usize| idx[j + p] as i64 - idx[j] as i64;
    // (positions covered by whole periods, start, period, shift)
    let mut best: Option<(usize, usize, usize, i64)> = None;
    for p in 1..=MAX_PERIOD.min(len / MIN_REPS) {
        // A run covering half the vector holds at least two of the quarter points (three
        // positions each, `s`, `s + p` and `s + 2p`); a period that fewer of them follow is
        // skipped without a scan.
        let plausible = [len / 4, len / 2, 3 * len / 4]
            .iter()
            .filter(|&&s| s + 2 * p < len && diff(s, p) == diff(s + p, p))
            .count()
            >= 2;
        if !plausible {
            continue;
        }
        // Maximal stretches `j .. e` of equal difference `idx[j + p] − idx[j]`, both ends
        // inside: positions `j .. e + p` then follow the period with that shift. Only a
        // stretch whose run covers half of `idx` can be returned (a shorter best is replaced
        // by any such, or gives `None`), and such a stretch is at least `reach` long, so it
        // holds a multiple of `reach`: the stretches holding those positions are the only
        // ones measured, each extended both ways from the first multiple inside it. The
        // stretches partition the positions, so each is measured once, in increasing order
        // (ties keep the earliest, as a scan of every position would).
        let ok = |j: usize| inside(j) && inside(j + p);
        let reach = if every {
            1
        } else {
            (len / 2).saturating_sub(p).max(1)
        };
        let (mut done, mut s) = (0, 0);
        while s + p < len {
            if s < done || !ok(s) {
                s += reach;
                continue;
            }
            let d = diff(s, p);
            let mut j = s;
            while j > done && ok(j - 1) && diff(j - 1, p) == d {
                j -= 1;
            }
            let mut e = s + 1;
            while e + p < len && ok(e) && diff(e, p) == d {
                e += 1;
            }
            let whole = (e + p - j) / p * p;
            if e - j >= p && whole / p >= MIN_REPS && best.is_none_or(|b| whole > b.0) {
                best = Some((whole, j, p, d));
            }
            done = e;
            s += reach;
        }
        // The shortest period with a run long enough is taken (a multiple of it would only
        // repeat it).
        if best.is_some_and(|b| 2 * b.0 >= len) {
            break;
        }
    }
    let (whole, start, p, shift) = best?;
    (2 * whole >= len).then(|| Run {
        start,
        reps: whole / p,
        shift,
        first: idx[start..start + p].iter().map(|&i| i as i64).collect(),
    })
}

/// The elements of `v` when it is an `i32` constant.
fn const_i32(graph: &Graph, v: Value) -> Option<&[i32]> {
    let ValueDef::Result(i, _) = graph.def(v) else {
        return None;
    };
    let Op::Literal(LiteralOp::Const(lit)) = &graph.inst(i).op else {
        return None;
    };
    lit.0.as_i32()
}

/// The periodic run of `inst` when it is a gather (`take`, not `along`) of a rank-1 operand
/// by constant indices with one (see [`find`]).
pub(crate) fn plan(graph: &Graph, inst: &InstData) -> Option<Run> {
    let Op::Index(IndexOp::Gather(ix)) = &inst.op else {
        return None;
    };
    let (x, idx) = (inst.args[0], inst.args[1]);
    let n = match graph.ty(x).dims() {
        [n] if !ix.along && ix.axis == 0 => *n,
        _ => return None,
    };
    if graph.ty(idx).rank() == 0 {
        return None;
    }
    find(const_i32(graph, idx)?, n)
}

/// Lowers `inst` as a periodic gather when [`plan`] finds a run and the operand is in
/// memory; returns whether it did.
pub(crate) fn lower(cx: &mut Ctx, inst: &InstData) -> Result<bool> {
    let (Some(run), Op::Index(IndexOp::Gather(ix))) = (plan(cx.graph, inst), &inst.op) else {
        return Ok(false);
    };
    let bounds = ix.bounds;
    let (x, idx, r) = (inst.args[0], inst.args[1], inst.results[0]);
    let dtype = cx.graph.ty(x).dtype;
    let size = dtype.size_bytes() as i64;
    let Slot::Mem(xbase) = cx.slot(x)? else {
        return Ok(false);
    };
    // The period's reads at byte offsets from its least index, which must fit the loads'
    // 32-bit immediates (as must the stores' offsets, at most `MAX_PERIOD` elements).
    let lo = run.first.iter().copied().min().unwrap_or(0);
    let offsets: Option<Vec<i32>> = run
        .first
        .iter()
        .map(|&i| {
            (i - lo)
                .checked_mul(size)
                .and_then(|b| i32::try_from(b).ok())
        })
        .collect();
    let Some(offsets) = offsets else {
        return Ok(false);
    };
    let Some(out) = cx.alloc_result(r)? else {
        return Ok(false);
    };
    let n = cx.graph.ty(x).size();
    let total = cx.graph.ty(idx).size();
    let (start, end) = (run.start, run.start + run.len());
    // The positions before and after the run, an index loaded per element.
    for (a, b) in [(0, start), (end, total)] {
        cx.for_range(b - a, &mut |cx, t| {
            let q = cx.fb.ins().iadd_imm_s(t, a as i64);
            let i = cx.load(idx, q)?;
            let zero = cx.iconst(0);
            let v = index::gathered(cx, x, zero, i, n, 1, bounds)?;
            cx.store_out(r, q, v)
        })?;
    }
    // The run: the base addresses move by `shift` and `P` elements a period.
    let src0 = cx.fb.ins().iadd_imm_s(xbase, lo * size);
    let dst0 = cx.fb.ins().iadd_imm_s(out, start as i64 * size);
    let body = Body {
        ty: super::clty(dtype),
        offsets,
        src_step: run.shift * size,
        size,
    };
    let threads = cx.dest == crate::Destination::Process;
    if run.len() >= super::fused::PAR_MIN && threads {
        parallel(cx, &body, src0, dst0, run.reps)?;
    } else {
        let z = cx.iconst(0);
        let reps = cx.iconst(run.reps as i64);
        body.emit(&mut *cx.fb, src0, dst0, z, reps);
    }
    crate::stats::PERIODIC_GATHERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(true)
}

/// The loop over a run's periods: the loads (of type `ty`) at byte `offsets` from a base
/// that moves by `src_step` bytes a period, stored one after another (`size` bytes each).
struct Body {
    ty: ir::Type,
    offsets: Vec<i32>,
    src_step: i64,
    size: i64,
}

impl Body {
    /// Emits the periods `lo..hi` of the run whose first period reads from `src0` and
    /// writes to `dst0`.
    fn emit(
        &self,
        fb: &mut FunctionBuilder,
        src0: ir::Value,
        dst0: ir::Value,
        lo: ir::Value,
        hi: ir::Value,
    ) {
        let flags = MemFlagsData::trusted();
        let dst_step = self.offsets.len() as i64 * self.size;
        let var = fb.declare_var(types::I64);
        fb.def_var(var, lo);
        let looping = fb.create_block();
        let exit = fb.create_block();
        let enter = fb.ins().icmp(IntCC::SignedLessThan, lo, hi);
        fb.ins().brif(enter, looping, &[], exit, &[]);
        fb.switch_to_block(looping);
        let m = fb.use_var(var);
        let s = fb.ins().imul_imm_s(m, self.src_step);
        let src = fb.ins().iadd(src0, s);
        let d = fb.ins().imul_imm_s(m, dst_step);
        let dst = fb.ins().iadd(dst0, d);
        for (k, &off) in self.offsets.iter().enumerate() {
            let v = fb.ins().load(self.ty, flags, src, off);
            fb.ins().store(flags, v, dst, (k as i64 * self.size) as i32);
        }
        let next = fb.ins().iadd_imm_s(m, 1);
        fb.def_var(var, next);
        let more = fb.ins().icmp(IntCC::SignedLessThan, next, hi);
        fb.ins().brif(more, looping, &[], exit, &[]);
        fb.switch_to_block(exit);
    }
}

/// Runs the `reps` periods of `body` on all cores: a kernel taking a context (the two base
/// addresses) and a range of periods, called through `ferrax_parallel_for`. The periods
/// write disjoint elements, so the split changes no result.
fn parallel(
    cx: &mut Ctx,
    body: &Body,
    src0: ir::Value,
    dst0: ir::Value,
    reps: usize,
) -> Result<()> {
    let ptr = types::I64;
    let flags = MemFlagsData::trusted();
    let slot =
        cx.fb
            .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 3));
    let ctxp = cx.fb.ins().stack_addr(ptr, slot, 0);
    cx.fb.ins().store(flags, src0, ctxp, 0);
    cx.fb.ins().store(flags, dst0, ctxp, 8);
    let (id, mut func) = super::fused::declare_kernel(cx)?;
    let mut fbc = FunctionBuilderContext::new();
    {
        let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let (kctx, lo, hi) = {
            let p = fb.block_params(entry);
            (p[0], p[1], p[2])
        };
        let src = fb.ins().load(ptr, flags, kctx, 0);
        let dst = fb.ins().load(ptr, flags, kctx, 8);
        body.emit(&mut fb, src, dst, lo, hi);
        fb.ins().return_(&[]);
        fb.seal_all_blocks();
        fb.finalize(cx.module.isa().frontend_config());
    }
    let kaddr = super::fused::define_kernel(cx, id, func)?;
    let n = cx.iconst(reps as i64);
    let align = cx.iconst(1);
    cx.call(
        "ferrax_parallel_for",
        &[ptr; 4],
        &[],
        &[kaddr, ctxp, n, align],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rosenbrock decompression's shape: two odd positions, then twelve values repeating
    /// shifted by four.
    #[test]
    fn finds_a_shifted_period_after_a_head() {
        let mut idx = vec![100, 0];
        for m in 0..50 {
            let b = 4 * m;
            idx.extend([201 + b, 1 + b, 101 + b, 101 + b, 102 + b, 103 + b]);
            idx.extend([103 + b, 3 + b, 203 + b, 203 + b, 204 + b, 205 + b]);
        }
        idx.push(7);
        let run = find(&idx, 500).expect("a run");
        assert_eq!(
            (run.start, run.reps, run.shift, run.first.len()),
            (2, 50, 4, 12)
        );
        // Indices outside the operand end the run: any run found holds none.
        if let Some(r) = find(&idx, 300) {
            assert!(idx[r.start..r.start + r.len()].iter().all(|&i| i < 300));
        }
    }

    /// The search finds the run that measuring every stretch finds (every position starts or
    /// extends one, as the search did before it skipped stretches), on periodic index vectors
    /// with random periods, shifts, breaks and operand lengths (a third of them have a run).
    #[test]
    fn finds_what_a_scan_of_every_position_finds() {
        let mut seed = 1u64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        let mut found = 0;
        for _ in 0..20_000 {
            let len = next(200) as usize;
            let p = 1 + next(6) as i32;
            let shift = next(5) as i32 - 2;
            let mut idx: Vec<i32> = (0..len as i32)
                .map(|q| (q % p) * 3 + (q / p) * shift + 10)
                .collect();
            for _ in 0..next(6) {
                if len > 0 {
                    let at = next(len as u64) as usize;
                    idx[at] = next(60) as i32 - 5;
                }
            }
            let n = 20 + next(400) as usize;
            let want = search(&idx, n, true);
            found += usize::from(want.is_some());
            assert_eq!(find(&idx, n), want, "{idx:?}, n = {n}");
        }
        assert!(found > 2_000, "{found}");
    }

    /// Irregular, short and negative indices have no run.
    #[test]
    fn rejects_irregular_and_out_of_range_indices() {
        let irregular: Vec<i32> = (0..400).map(|q| (q * q * 7 + q / 3) % 97).collect();
        assert_eq!(find(&irregular, 97), None);
        assert_eq!(find(&[0, 1, 2], 3), None);
        let negative: Vec<i32> = (0..400).map(|q| q - 1000).collect();
        assert_eq!(find(&negative, 10_000), None);
    }
}
