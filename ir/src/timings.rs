//! Phase timings: with the environment variable `FERRAX_TIMINGS=1`, tracing and every
//! transform phase (jvp, partial evaluation, transpose, each simplification pass, verification)
//! print their wall-clock time, their CPU time (on Linux) and the size of the graph they produced to stderr, one line per
//! phase as it ends, indented by nesting depth (so a phase's line follows those of the phases
//! it contains).
//!
//! The variable is read once per process; when it is unset a phase costs one relaxed atomic
//! load.

use crate::error::Result;
use crate::graph::Graph;
use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

/// Whether `FERRAX_TIMINGS` is set to a value other than `0` (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FERRAX_TIMINGS").is_some_and(|v| v != "0"))
}

thread_local! {
    /// The nesting depth of the phases running on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// What a phase produced, as far as its line reports it: the number of equations.
pub trait PhaseOutput {
    /// The equations of the graphs produced (`None` when there is no graph to count).
    fn equations(&self) -> Option<usize>;
}

impl PhaseOutput for Graph {
    fn equations(&self) -> Option<usize> {
        Some(self.num_insts())
    }
}

impl PhaseOutput for Option<Graph> {
    fn equations(&self) -> Option<usize> {
        self.as_ref().map(Graph::num_insts)
    }
}

impl PhaseOutput for Vec<crate::Value> {
    fn equations(&self) -> Option<usize> {
        None
    }
}

impl PhaseOutput for (Vec<crate::Value>, Graph) {
    fn equations(&self) -> Option<usize> {
        Some(self.1.num_insts())
    }
}

impl PhaseOutput for (Graph, Graph) {
    fn equations(&self) -> Option<usize> {
        Some(self.0.num_insts() + self.1.num_insts())
    }
}

impl PhaseOutput for crate::tracer::Traced {
    fn equations(&self) -> Option<usize> {
        Some(self.graph.num_insts())
    }
}

impl PhaseOutput for crate::function::Specialized {
    fn equations(&self) -> Option<usize> {
        Some(self.graph.num_insts())
    }
}

impl PhaseOutput for (Vec<crate::Value>, Vec<Option<crate::Value>>) {
    fn equations(&self) -> Option<usize> {
        None
    }
}

impl PhaseOutput for () {
    fn equations(&self) -> Option<usize> {
        None
    }
}

impl<T: PhaseOutput> PhaseOutput for Result<T> {
    fn equations(&self) -> Option<usize> {
        self.as_ref().ok().and_then(PhaseOutput::equations)
    }
}

/// The CPU time of this thread so far, in nanoseconds (the first field of
/// `/proc/thread-self/schedstat`; 0 where it does not exist). On a loaded machine it shows the
/// work a phase did, which its wall-clock time mixes with the time spent waiting for a core.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` as the phase `name`; with `FERRAX_TIMINGS` set, prints its time and the equations
/// it produced when it ends.
pub fn timed<T: PhaseOutput>(name: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let depth = DEPTH.with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    let out = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = thread_cpu_ns().saturating_sub(cpu) as f64 / 1e6;
    DEPTH.with(|d| d.set(depth));
    let eqs = match out.equations() {
        Some(n) => format!("{n:>9} eqs"),
        None => String::new(),
    };
    eprintln!(
        "ferrax timings: {:indent$}{name:<w$} {ms:>10.3} ms (cpu {cpu_ms:>10.3} ms) {eqs}",
        "",
        indent = 2 * depth,
        w = 24usize.saturating_sub(2 * depth)
    );
    out
}
