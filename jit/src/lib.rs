//! ferrax-jit: lowers any ferrax graph to native code with Cranelift.
//!
//! [`compile`] (or the caching [`compile_cached`]) turns a [`ferrax_ir::Graph`] into a
//! [`Compiled`] function whose results equal the interpreter's ([`ferrax_ir::interp::eval`])
//! bit for bit in [`MathMode::Precise`] (matrix products that go through GEMM are the one
//! exception: their summation order differs).
//!
//! # ABI
//! Every graph gets a *tensor entry*
//! `extern "C" fn(ins: *const *const u8, outs: *const *mut u8, ws: *mut u8) -> i32`: `ins[k]`
//! points to the row-major elements of parameter `k`, `outs[k]` to the caller-owned buffer of
//! output `k`, and `ws` to the workspace (null when the plan needs none). Elements are stored
//! as their Rust types (`bool` as a 0/1 byte). It returns 0 when the call completed, or a
//! status saying why it stopped early (a `while_loop` over
//! [`JitOptions::max_while_iterations`], a reverse-mode loop's tape that could not grow),
//! which the Rust caller turns into an error; no helper called from native code aborts or
//! unwinds. [`Compiled::call_into`] checks arity, dtypes, shapes and buffer lengths of the
//! arguments and of the caller's outputs before entering native code.
//!
//! # Resources
//! Outputs, workspaces and tapes are allocated fallibly: memory that cannot be had is an
//! error of kind [`ferrax_ir::ErrorKind::Resource`] naming what it was for, and the process
//! goes on. [`JitOptions::max_call_bytes`] bounds a call's workspace plus outputs (checked
//! before anything runs) and each reverse-mode tape; [`JitOptions::max_while_iterations`]
//! bounds every run of a `while_loop`. Graphs whose code can fail at run time (a reverse-mode
//! `while_loop`, or any `while_loop` under an iteration limit) get no scalar entry, because
//! the typed `as_fn*` callables cannot return an error; [`Compiled::call_scalar`] still
//! serves them through the tensor entry.
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
//! # Fusion and vectorisation
//! `lower/<family>.rs` mirrors `ferrax_ir::ops`; elementwise families provide per-element
//! expression emitters that work on scalars and on 128-bit vectors alike. `fuse.rs` groups
//! maximal chains of elementwise ops (unary, binary, compare/select, convert) with the
//! `broadcast_in_dim`s feeding them: a value is internal to a group when it is not an output
//! and all its users are same-shape elementwise ops of that group. `lower/fused.rs` emits one
//! loop nest per group over the coalesced dimensions of its root: leaves are read through
//! affine `Access` maps (broadcasts are stride-0 reads, splatted once per row), members are
//! evaluated in SSA values, and only the root is stored; the planner gives internal values
//! no buffer (`Home::Fused`) and keeps leaves live until the root runs. The inner loop uses
//! `f64x2`/`f32x4` vectors with a scalar tail when the produced value is a float, every op
//! has a vector form (transcendentals only with the fast forms) and no leaf is a bool:
//! comparisons of floats or of i32s (widened to the float's lane width), logic on their
//! results and `select` run as lane masks, so index masks like P4's `iota == iota` choosing
//! between float rows vectorise. Groups of at least 65,536 elements are compiled as a
//! separate kernel over a range of the outer dimension and split across the rayon pool
//! (`ferrax_parallel_for`); smaller ones run inline, with no pool overhead. Short bodies (at
//! most 12 computations, no inline transcendental) of groups of 4,096 to 65,535 elements run
//! four vectors per loop iteration. A
//! group whose root is a fast `tanh` stores the root's operand and then calls a helper that
//! applies `tanh` in place with AVX-512 or AVX2 (`wide_math.rs`), performing the inline form's
//! operations, so the bits are the same.
//!
//! Cheap values used by several groups (broadcasts, and arithmetic without division or
//! transcendentals, in up to 8 groups) are recomputed in each instead of being stored;
//! broadcasts that only add unit dimensions pass a fused value through; and a 2-D select chain
//! over `eq(column, a·row + b)` index masks (dense Jacobians and Hessians of banded functions)
//! is written as a default row plus one element per band and row (`lower/band.rs`), still
//! bit-identical to the interpreter.
//!
//! **Reductions** (`reduce_sum/max/min/prod`) root groups of their own, and the group
//! producing their operand joins them when the reduction is its only user: the loop runs over
//! the operand's elements and combines each into its accumulator, so the reduced tensor is
//! never written. Accumulation follows the interpreter's order (row-major over the reduced
//! indices, per result element): along a kept inner dimension the accumulators are the
//! result's elements, so vector lanes are distinct results and vectors change no order;
//! along a reduced inner dimension the row accumulates in a register, adding vector lanes one
//! by one. Only when the math mode is fast for the operand's size (always in
//! [`MathMode::Fast`], from [`AUTO_FAST_MIN`] elements in [`MathMode::Auto`]) does a
//! reduction along the inner dimension keep one accumulator per lane and fold the lanes at
//! the end of the row: this *reassociates* sums and products (results then differ from the
//! interpreter's by rounding, within about n·ε of Σ|x|); max and min are unaffected except
//! possibly for which NaN payload or signed zero is returned. [`MathMode::Precise`] never
//! reassociates. A reduction splits across threads only along a kept outer dimension.
//!
//! **Products**: a 2-D `dot_general` whose only user is `transpose[perm=(1,0)]` is computed
//! straight into the transpose's buffer (GEMM with swapped operands: `Cᵀ = Bᵀ·Aᵀ`), and
//! operands contracted on any axis are passed to GEMM through strides, never transposed in
//! memory. GEMMs of at least 2^21 multiply-adds split their rows across the pool (measured
//! faster on P5's two 51M multiply-add products than `matrixmultiply`'s own `threading`
//! feature, which also spawns a second thread pool); smaller ones, such as P7's 100×100
//! products, stay on the calling thread.
//! **Views**: a `reshape` that is not an output shares its operand's buffer (no copy).
//!
//! # Math modes
//! [`MathMode::Precise`] calls the interpreter's scalar functions (bit-identical results).
//! [`MathMode::Fast`] inlines polynomial `exp`, `expm1`, `log`, `log1p`, `sin`,
//! `cos`, `tanh`, `logistic`, `erf` and `pow` (`lower/fastmath.rs` documents each bound,
//! 1–3 ulps on every finite input, with the precise result's class on every input, tested in
//! `tests/fastmath.rs`); FMA is used only there; reductions along a row may reassociate
//! (above). The default, [`MathMode::Auto`], is Fast for tensors of at least
//! [`AUTO_FAST_MIN`] elements and Precise for scalars and small tensors, so scalar graphs and
//! small tests stay bit-identical to the interpreter while large elementwise work vectorises.
//! In Precise mode a rank-0 `sin` and `cos` of the same value share one call to glibc's
//! `sincos`, which is bit-identical to separate `sin` and `cos` calls (checked on 30 million
//! f64 arguments and every f32; `tests/primitives.rs` checks it on each build).
//!
//! # Compile-speed policy
//! [`stats`] reports, besides the total compile time, the time spent specialising (trace +
//! transform + simplify, measured around `Function::specialize` by [`Jit`]), lowering
//! (planning and building Cranelift IR) and in Cranelift's code generation. Graphs compile
//! with `opt_level = "speed"` and the backtracking register allocator; graphs of more than
//! 3,000 instructions after rerolling (control-flow bodies included; typically unrolled
//! derivatives that do not roll into loops) use
//! `opt_level = "none"` and the single-pass register allocator, whose cost grows linearly;
//! `JitOptions::optimize = false` selects `opt_level = "none"` for any size. Cranelift's IR
//! verifier runs only in debug builds (`enable_verifier` is off in release). The size test
//! counts graph instructions, not Cranelift IR: P4's Hessian is 82 instructions yet spends
//! about 2 ms of its ~3.5 ms first call in code generation, mostly in register allocation.
//! Giving it the single-pass allocator cut that by 0.4–1 ms but slowed its steady-state call
//! from about 12.5 µs to 16–20 µs (P7-jacrev's from about 14 µs to 19–25 µs), so mid-size
//! graphs keep the speed tier.
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
//! its tape on the heap (grown by doubling, freed when the op ends or fails), the one
//! allocation a compiled call can make; a tape that cannot grow ends the call with an error. `custom_lin` cannot be evaluated, so it is refused at compile time.
//!
//! # Loop rerolling
//! Before lowering, [`reroll()`] turns long runs of isomorphic consecutive blocks of a large
//! straight-line graph (a long chain and its gradient) into `scan`s, so their code stays
//! small; results are the same bits ([`JitOptions::reroll`] turns it off).
//!
//! Matrix products that map to strided 2-D products call `matrixmultiply` (imported symbols
//! `ferrax_dgemm`, `ferrax_sgemm`), except skinny small ones (at most 2^16 multiply-adds, result
//! rows or columns of at least 8), which run as register-blocked AVX2/FMA (or AVX-512) row
//! AXPYs when the CPU has them (`small_gemm.rs`); precise transcendentals call imported
//! `ferrax_*` wrappers around the interpreter's scalar functions.
#![deny(missing_docs)]

mod cache;
mod compile;
mod compiled;
mod conv_kernel;
mod fp_env;
mod function;
mod fuse;
mod in_place;
mod lower;
mod options;
mod plan;
mod pool_kernel;
pub mod reroll;
mod scalar;
mod share;
mod small_gemm;
mod stats;
mod symbols;
mod wide_math;

pub use cache::{clear_cache, compile_cached};
pub use compile::{
    call_scalar_entry, code_flags, compile, define_graph, rerolled, Defined, Destination,
    EntryNames,
};
pub use compiled::Compiled;
pub use function::{jit, jit_with, IntoOutRef, IntoOutRefs, Jit, OutRef};
pub use options::{JitOptions, MathMode, AUTO_FAST_MIN};
pub use reroll::reroll;
pub use scalar::{ScalarFn1, ScalarFn2, ScalarFn3, ScalarFn4, ScalarType};
pub use stats::{stats, JitStats};
