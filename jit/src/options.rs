//! Compilation options: the math mode, the Cranelift optimisation level, and the run-time
//! limits of a call (memory budget, `while_loop` iteration limit).

/// How transcendental functions are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MathMode {
    /// Calls the exact scalar functions the interpreter uses, so results are bit-identical to
    /// [`ferrax_ir::interp::eval`] for every elementwise op.
    Precise,
    /// Inline, vectorisable polynomial approximations of `exp`, `expm1`, `log`, `log1p`, `sin`,
    /// `cos`, `tanh`, `logistic`, `erf` and `pow` (f64 `pow` when the CPU has FMA), each within
    /// a documented ulp bound on every finite input and with the precise result's IEEE class
    /// (NaN, ±∞, ±0) on every input (the table in `lower/fastmath.rs`, asserted by
    /// `jit/tests/fastmath.rs`); `sin` and `cos` of very large arguments and `pow` right at
    /// its overflow and underflow thresholds call the precise functions for the vector
    /// concerned. The other transcendentals stay precise. Sums and products along a row may
    /// use one accumulator per vector lane (reassociated, so they differ from the
    /// interpreter's sequential order by rounding).
    Fast,
    /// The default: [`MathMode::Fast`] for transcendentals and reductions over tensors of at
    /// least [`AUTO_FAST_MIN`] elements, where throughput matters and the loop vectorises;
    /// [`MathMode::Precise`] for scalars and small tensors, whose cost is dominated by
    /// dispatch, so that they stay bit-identical to the interpreter.
    #[default]
    Auto,
}

/// The element count from which [`MathMode::Auto`] uses the fast transcendentals (and lets
/// reductions reassociate).
pub const AUTO_FAST_MIN: usize = 1024;

impl MathMode {
    /// Whether an op over `elements` elements uses the fast transcendentals.
    pub fn fast_for(self, elements: usize) -> bool {
        match self {
            MathMode::Precise => false,
            MathMode::Fast => true,
            MathMode::Auto => elements >= AUTO_FAST_MIN,
        }
    }
}

/// Options for [`crate::compile`]; part of the compile-cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JitOptions {
    /// How transcendentals are computed.
    pub math: MathMode,
    /// Whether Cranelift optimises for speed (`opt_level = "speed"`) or compiles with no
    /// optimisation (`"none"`, fastest compile).
    pub optimize: bool,
    /// Matrix products with at least this many multiply-adds (m·n·k) whose operands map to
    /// strided 2-D matrices call `matrixmultiply`'s GEMM; smaller ones loop in generated code.
    pub gemm_threshold: usize,
    /// The most memory one call may use, in bytes: its workspace plus its outputs (whether
    /// allocated by [`crate::Compiled::call`] or passed to [`crate::Compiled::call_into`]),
    /// and separately each reverse-mode `while_loop` tape, which may grow to what the budget
    /// leaves after those. A call that needs more returns an error of kind
    /// [`ferrax_ir::ErrorKind::Resource`] before any code runs (a tape: when it would outgrow
    /// its share). `None` (the default): no budget, only the allocator's limits.
    pub max_call_bytes: Option<usize>,
    /// The most iterations any one run of a `while_loop` (also the forward loop of a
    /// `taped_while`) may take. Exceeding it ends the call with an error of kind
    /// [`ferrax_ir::ErrorKind::Resource`] naming the limit, so that a loop that never ends
    /// cannot hang the caller. The count is per run of the loop: a nested loop starts from
    /// zero each time its enclosing body runs. `None` (the default): no limit and no counter
    /// in the generated code. With a limit, graphs containing a `while_loop` get no scalar
    /// entry (the typed `as_fn*` callables cannot report errors), so `as_fn*` refuses them.
    pub max_while_iterations: Option<u64>,
    /// Whether long runs of isomorphic consecutive blocks of a large straight-line graph (the
    /// unrolled steps of a long chain and of its gradient) are compiled as loops (see
    /// [`crate::reroll()`]); results are the same bits either way. On by default. A rerolled
    /// all-scalar graph whose stacked residuals exceed the scalar entry's stack workspace has
    /// no scalar entry (so `as_fn*` refuses it; [`crate::Jit::call`] serves it).
    pub reroll: bool,
    /// Whether the call runs with subnormal numbers flushed to zero: subnormal inputs of every
    /// floating-point operation read as zero and subnormal results are written as zero (the
    /// CPU's flush-to-zero and denormals-are-zero modes, as XLA sets them for JAX on CPU).
    /// Off by default: results then follow IEEE 754 gradual underflow and equal the
    /// interpreter's. On some CPUs every operation on a subnormal takes a microcode assist of
    /// about a hundred cycles, so a computation that settles into the subnormal range (a long
    /// reverse-mode product that shrinks at each step) can run several times slower than the
    /// same code on normal numbers; this option trades those last 52 bits of range for speed.
    /// The caller's own mode is restored when the call returns, and work the call hands to
    /// other threads runs in the same mode. Supported on x86-64 and AArch64 (compiling with it
    /// elsewhere is an error), in this process only: exported objects refuse it, since their
    /// caller owns the floating-point mode.
    pub flush_subnormals: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            math: MathMode::Auto,
            optimize: true,
            gemm_threshold: 4096,
            max_call_bytes: None,
            max_while_iterations: None,
            reroll: true,
            flush_subnormals: false,
        }
    }
}
