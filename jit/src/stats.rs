//! Process-wide compile statistics: compiles, cache hits, live functions, and the time spent
//! in each phase (specialisation, i.e. trace + transform + simplify; lowering to Cranelift IR;
//! Cranelift code generation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) static COMPILES: AtomicU64 = AtomicU64::new(0);
pub(crate) static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
pub(crate) static COMPILE_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LIVE: AtomicU64 = AtomicU64::new(0);
pub(crate) static SPECIALIZE_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LOWER_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static CODEGEN_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static BANDED: AtomicU64 = AtomicU64::new(0);
pub(crate) static WIDE_TAILS: AtomicU64 = AtomicU64::new(0);
pub(crate) static BIAS_TAILS: AtomicU64 = AtomicU64::new(0);
pub(crate) static TANH_BACKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static STORED: AtomicU64 = AtomicU64::new(0);
pub(crate) static COLUMNS: AtomicU64 = AtomicU64::new(0);
pub(crate) static PERIODIC_GATHERS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the JIT's counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Graphs compiled to native code.
    pub compiles: u64,
    /// `compile_cached` calls answered from the cache.
    pub cache_hits: u64,
    /// Total time spent compiling (planning, lowering, Cranelift, finalisation).
    pub compile_time: Duration,
    /// Time spent by [`crate::Jit`] specialising functions before compiling them: tracing the
    /// closure, applying transforms and simplifying (one phase, measured around
    /// `Function::specialize`).
    pub specialize_time: Duration,
    /// Time spent planning buffers and building Cranelift IR (part of `compile_time`).
    pub lower_time: Duration,
    /// Time spent in Cranelift's code generation and finalisation (part of `compile_time`).
    pub codegen_time: Duration,
    /// Compiled functions currently alive (not yet freed).
    pub live_functions: u64,
    /// Fused select chains lowered as bands (a default row plus one element per band and
    /// row; see the JIT's `lower/band.rs`), e.g. the dense Hessians of banded functions.
    pub banded_groups: u64,
    /// Fused groups finished by a wide helper (a `tanh` root applied in place over the whole
    /// result with the CPU's widest vectors; see the JIT's `wide_math.rs`).
    pub wide_tails: u64,
    /// Of those, groups `tanh(x + broadcast(b))` replaced by one helper call that adds the
    /// bias row and applies `tanh` in one pass (no loop of their own).
    pub bias_tails: u64,
    /// Groups `(1 − t²)·g` (a `tanh` layer's backward pass), stored alone or with their sums
    /// over the rows (the bias gradient), replaced by one call of a wide helper (see the
    /// JIT's `wide_math.rs`).
    pub tanh_backs: u64,
    /// Graph outputs computed and stored inside another group's fused loop instead of a loop
    /// of their own (see the JIT's `fuse.rs`), such as an optimizer's new moments.
    pub stored_members: u64,
    /// Reductions across the rows of a matrix lowered column block by column block, their
    /// sums kept in registers down the rows (see the JIT's `lower/fused.rs`), such as a dense
    /// layer's bias gradient.
    pub column_reductions: u64,
    /// Gathers by constant indices that repeat with a shift, lowered as a loop over the
    /// periods with the indices as immediate offsets (see the JIT's `lower/periodic.rs`).
    pub periodic_gathers: u64,
}

/// The JIT's counters.
pub fn stats() -> JitStats {
    JitStats {
        compiles: COMPILES.load(Ordering::Relaxed),
        cache_hits: CACHE_HITS.load(Ordering::Relaxed),
        compile_time: Duration::from_nanos(COMPILE_NANOS.load(Ordering::Relaxed)),
        specialize_time: Duration::from_nanos(SPECIALIZE_NANOS.load(Ordering::Relaxed)),
        lower_time: Duration::from_nanos(LOWER_NANOS.load(Ordering::Relaxed)),
        codegen_time: Duration::from_nanos(CODEGEN_NANOS.load(Ordering::Relaxed)),
        live_functions: LIVE.load(Ordering::Relaxed),
        banded_groups: BANDED.load(Ordering::Relaxed),
        wide_tails: WIDE_TAILS.load(Ordering::Relaxed),
        bias_tails: BIAS_TAILS.load(Ordering::Relaxed),
        tanh_backs: TANH_BACKS.load(Ordering::Relaxed),
        stored_members: STORED.load(Ordering::Relaxed),
        column_reductions: COLUMNS.load(Ordering::Relaxed),
        periodic_gathers: PERIODIC_GATHERS.load(Ordering::Relaxed),
    }
}

pub(crate) fn record_compile(t: Duration) {
    COMPILES.fetch_add(1, Ordering::Relaxed);
    COMPILE_NANOS.fetch_add(t.as_nanos() as u64, Ordering::Relaxed);
}

/// Adds `t` to one of the phase counters.
pub(crate) fn add(counter: &AtomicU64, t: Duration) {
    counter.fetch_add(t.as_nanos() as u64, Ordering::Relaxed);
}

thread_local! {
    /// Code-generation time of the compile running on this thread.
    static CODEGEN_HERE: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Records `t` of Cranelift code generation (global counter and the current compile).
pub(crate) fn codegen(t: Duration) {
    add(&CODEGEN_NANOS, t);
    CODEGEN_HERE.with(|c| c.set(c.get() + t));
}

/// Starts timing a compile on this thread.
pub(crate) fn begin_compile() {
    CODEGEN_HERE.with(|c| c.set(Duration::ZERO));
}

/// Ends a compile that took `total`: the part not spent in code generation was lowering.
pub(crate) fn end_compile(total: Duration) {
    record_compile(total);
    let cg = CODEGEN_HERE.with(|c| c.replace(Duration::ZERO));
    add(&LOWER_NANOS, total.saturating_sub(cg));
}
