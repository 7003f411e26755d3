//! ferrax-jit: lowers any ferrax graph to native code with Cranelift.
//!
//! [`compile`] (or the caching [`compile_cached`]) turns a [`ferrax_ir::Graph`] into a
//! [`Compiled`] function whose results equal the interpreter's ([`ferrax_ir::interp::eval`])
//! bit for bit in [`MathMode::Precise`] (matrix products that go through GEMM are the one
//! exception: their summation order differs).
//!
//! # ABI
//! Every graph gets a *tensor entry*
//! `extern "C" fn(ins: *const *const u8, outs: *const *mut u8, ws: *mut u8)`: `ins[k]` points
//! to the row-major elements of parameter `k`, `outs[k]` to the caller-owned buffer of output
//! `k`, and `ws` to the workspace (null when the plan needs none). Elements are stored as
//! their Rust types (`bool` as a 0/1 byte). [`Compiled::call_into`] checks arity, dtypes,
//! shapes and buffer lengths before entering native code.
//!
//! A graph whose parameters and outputs are all scalars (outputs of one dtype) also gets a
//! *scalar entry* `extern "C" fn(p0, p1, ...) -> r` with arguments in registers; with several
//! outputs the entry instead takes a trailing `*mut T` to an array of them. Its workspace, if
//! any (at most 64 KiB), lives on its stack. [`Compiled::as_fn3`] and friends wrap it in typed
//! callables with no per-call checks; [`Compiled::call_scalar`] uses it with f64 values.
//!
//! # Workspace
//! Rank-0 intermediates live in registers. Other intermediates live in one workspace per
//! call, planned by liveness (`plan.rs`): regions are reused when lifetimes do not overlap, and
//! an elementwise op may write over an operand that dies at it. Values that are outputs are
//! computed straight into the caller's buffers. Workspaces are pooled per `Compiled` (one per
//! concurrent caller), so a steady-state `call_into` allocates nothing.
//!
//! # Lowering and where fusion fits
//! `lower/<family>.rs` mirrors `ferrax_ir::ops`. Elementwise families provide per-element
//! expression emitters; today each elementwise op is one flat loop around its emitter.
//! Fusion (issue 5) will group a chain of elementwise ops, with broadcasts as stride-0
//! `Access` maps and an optional trailing reduction, into one loop nest that calls
//! the same emitters and keeps intermediates in registers; the planner then skips buffers for
//! fused intermediates. Vectorisation calls the same emitters on vector-typed values.
//!
//! # Control flow
//! `switch`, `while`, `scan`, `taped_while` and `call` lower to real branches and loops, never
//! unrolled (`lower/control.rs`): a body is lowered inline by `Ctx::lower_inline`
//! with its parameters bound to the operands' slots, recursively for nested control flow.
//! `switch` clamps its index and jumps through a jump table to one block per branch; `while`
//! is a header block (the condition), a body block and an exit; `scan` a counted loop that
//! reads slice `i` of each scanned operand and writes slice `i` of each stacked output in
//! place; `call` is inlined. Rank-0 carries are block parameters; carried tensors are
//! double-buffered (the op's result buffer and a second buffer, swapped on the back edge, one
//! copy at the exit when the trip count was odd). The planner gives each control op a scratch
//! region, live only while the op runs, for the second buffers and for its bodies'
//! workspaces, each body planned as a graph of its own. `taped_while` folding backwards keeps
//! its tape on the heap (grown by doubling, freed when the op ends), the one allocation a
//! compiled call can make. `custom_lin` cannot be evaluated, so it is refused at compile time.
//!
//! Matrix products that map to strided 2-D products call `matrixmultiply` (imported symbols
//! `ferrax_dgemm`, `ferrax_sgemm`); transcendentals call imported `ferrax_*` wrappers around
//! the interpreter's scalar functions.
#![deny(missing_docs)]

mod cache;
mod compile;
mod compiled;
mod function;
mod lower;
mod options;
mod plan;
mod scalar;
mod stats;
mod symbols;

pub use cache::{clear_cache, compile_cached};
pub use compile::compile;
pub use compiled::Compiled;
pub use function::{jit, jit_with, Jit};
pub use options::{JitOptions, MathMode};
pub use scalar::{ScalarFn1, ScalarFn2, ScalarFn3, ScalarFn4, ScalarType};
pub use stats::{stats, JitStats};
