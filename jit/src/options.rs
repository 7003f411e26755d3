//! Compilation options: the math mode and the Cranelift optimisation level.

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
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            math: MathMode::Auto,
            optimize: true,
            gemm_threshold: 4096,
        }
    }
}
