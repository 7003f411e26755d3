//! Process-wide compile statistics: compiles, cache hits, compile time, live functions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) static COMPILES: AtomicU64 = AtomicU64::new(0);
pub(crate) static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
pub(crate) static COMPILE_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LIVE: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the JIT's counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Graphs compiled to native code.
    pub compiles: u64,
    /// `compile_cached` calls answered from the cache.
    pub cache_hits: u64,
    /// Total time spent compiling.
    pub compile_time: Duration,
    /// Compiled functions currently alive (not yet freed).
    pub live_functions: u64,
}

/// The JIT's counters.
pub fn stats() -> JitStats {
    JitStats {
        compiles: COMPILES.load(Ordering::Relaxed),
        cache_hits: CACHE_HITS.load(Ordering::Relaxed),
        compile_time: Duration::from_nanos(COMPILE_NANOS.load(Ordering::Relaxed)),
        live_functions: LIVE.load(Ordering::Relaxed),
    }
}

pub(crate) fn record_compile(t: Duration) {
    COMPILES.fetch_add(1, Ordering::Relaxed);
    COMPILE_NANOS.fetch_add(t.as_nanos() as u64, Ordering::Relaxed);
}
