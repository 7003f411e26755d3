//! Compilation options: the math mode and the Cranelift optimisation level.

/// How transcendental functions are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MathMode {
    /// Calls the exact scalar functions the interpreter uses, so results are bit-identical to
    /// [`ferrax_ir::interp::eval`] for every elementwise op.
    #[default]
    Precise,
    /// Inline polynomial approximations with a documented ulp bound. For now this is identical
    /// to [`MathMode::Precise`]; the performance work replaces the transcendental emitters of
    /// this mode without touching the rest of the lowering.
    Fast,
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
            math: MathMode::Precise,
            optimize: true,
            gemm_threshold: 4096,
        }
    }
}
