//! The checks of the differential fuzzer: inputs with every IEEE special, the interpreter
//! against the JIT in each math mode, transforms against finite differences, and panics
//! caught and reported with the graph that caused them.

use ferrax::ir::ops::{ControlOp, ConvertOp, LiteralOp, ReduceOp, UnaryOp};
use ferrax::ir::{interp, Array, Builder, DType, Data, Graph, Op, Shape, Type};
use ferrax::jit_backend::{compile, JitOptions, MathMode};
use ferrax::transforms::{grad_graph, inline, jvp_graph, simplify, vjp_graph, vmap::vmap_graph};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Known library bugs: each entry skips the checks that would report it. Removing an entry
/// re-enables them once the library is fixed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Known {
    /// Fast-math transcendentals giving NaN or ±inf where the precise result is finite (fast
    /// `sin(1e300)` was -inf). Fixed: large arguments fall back to the precise functions.
    /// Regression test `bug_fast_sin_huge_argument`.
    FastNonFiniteWherePreciseFinite,
    /// Huge shapes in mutated text, which overflowed sizes or aborted on allocation. Fixed:
    /// checked sizes and fallible allocation. While listed, mutants whose types exceed
    /// `MUTANT_MAX_BYTES` are not run.
    HugeShapes,
    /// `reduce_sum` over no axes maps -0.0 to +0.0 in the interpreter and the JIT, while the
    /// simplifier removed it as the identity. Fixed: float sums over no axes are kept.
    /// Regression test `bug_empty_axes_sum_signed_zero`.
    TrivialSumSignedZero,
    /// The JVP rule of `atan2(a, b)` divided by `a² + b²`, which overflows above about 1e154.
    /// Fixed: the rule scales by max(|a|, |b|). Regression test `bug_atan2_jvp_overflows`.
    Atan2JvpOverflow,
    /// Loops whose condition never fails. Fixed: the fuzzer runs under an iteration limit
    /// (`MAX_WHILE`); while listed, mutants with `while` are not run.
    EndlessWhile,
}

/// The known bugs currently skipped: none. A bug found later is listed here (with a variant
/// above and an ignored regression test) until it is fixed.
pub const KNOWN_BUGS: &[Known] = &[];

/// Whether checks for `k` are skipped (never with `FERRAX_FUZZ_ALL_CHECKS=1`, which runs
/// every check, to see whether the known bugs are fixed).
pub fn known(k: Known) -> bool {
    static ALL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let all = *ALL.get_or_init(|| std::env::var("FERRAX_FUZZ_ALL_CHECKS").is_ok_and(|v| v == "1"));
    !all && KNOWN_BUGS.contains(&k)
}

/// Whether `FERRAX_FUZZ_TRACE=1` asks to print each mutant and random graph before it runs
/// (to find the input of an abort, which no `catch_unwind` sees).
pub fn tracing() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var("FERRAX_FUZZ_TRACE").is_ok_and(|v| v == "1"))
}

/// Counters printed at the end of a run.
pub struct Counts {
    /// Graphs generated.
    pub graphs: AtomicUsize,
    /// Input sets evaluated (every graph, transformed graph and mutant counts).
    pub inputs: AtomicUsize,
    /// Transformed graphs built.
    pub transforms: AtomicUsize,
    /// Output elements compared with finite differences.
    pub fd_checked: AtomicUsize,
    /// Output elements skipped by finite differences (non-finite or not smooth).
    pub fd_skipped: AtomicUsize,
    /// Text mutants made, parsed, and run.
    pub mutants: AtomicUsize,
    /// Mutants that parsed and verified.
    pub mutants_parsed: AtomicUsize,
    /// Mutants that were run.
    pub mutants_run: AtomicUsize,
    /// Ill-typed ops tried.
    pub ill_typed: AtomicUsize,
    /// Generator ops the builder rejected.
    pub rejects: AtomicUsize,
    /// Transforms that returned an error on a generated graph.
    pub transform_errors: AtomicUsize,
    /// Fast or Auto results compared within a bound.
    pub fast_compared: AtomicUsize,
    /// Failures found (before shrinking; each shrink step counts).
    pub failures: AtomicUsize,
}

/// The run's counters.
pub static COUNTS: Counts = Counts {
    graphs: AtomicUsize::new(0),
    inputs: AtomicUsize::new(0),
    transforms: AtomicUsize::new(0),
    fd_checked: AtomicUsize::new(0),
    fd_skipped: AtomicUsize::new(0),
    mutants: AtomicUsize::new(0),
    mutants_parsed: AtomicUsize::new(0),
    mutants_run: AtomicUsize::new(0),
    ill_typed: AtomicUsize::new(0),
    rejects: AtomicUsize::new(0),
    transform_errors: AtomicUsize::new(0),
    fast_compared: AtomicUsize::new(0),
    failures: AtomicUsize::new(0),
};

/// How many generated graphs (sub-graphs included) use each op, by text name.
pub static OPS_SEEN: std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Transforms that returned an error, by name: how often, and the first message.
pub static DECLINED: std::sync::Mutex<std::collections::BTreeMap<String, (usize, String)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Records the ops of `g` in `OPS_SEEN`.
pub fn record_ops(g: &Graph) {
    let mut seen = OPS_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    walk(g, &mut |op, _, _| *seen.entry(op.name()).or_insert(0) += 1);
}

/// Adds `n` to a counter.
pub fn bump(c: &AtomicUsize, n: usize) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Runs `f`, turning a panic into an error naming the stage.
pub fn guard<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("panic in {stage}: {msg}")
    })
}

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPECIAL_F32: [f32; 12] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1.0e-45,
    -1.175_494_4e-38,
    f32::MAX,
    f32::MIN,
    1e30,
    -1e-30,
    1.0,
];

/// An array of `ty` whose elements mix every IEEE special, extremes and ordinary numbers.
pub fn special_input(rng: &mut Rng, ty: &Type) -> Array {
    let n = ty.size();
    let data = match ty.dtype {
        DType::F64 => Data::F64(
            (0..n)
                .map(|_| {
                    if rng.below(2) == 0 {
                        super::gen::SPECIAL_F64[rng.below(super::gen::SPECIAL_F64.len())]
                    } else {
                        rng.uniform(-4.0, 4.0)
                    }
                })
                .collect(),
        ),
        DType::F32 => Data::F32(
            (0..n)
                .map(|_| {
                    if rng.below(2) == 0 {
                        SPECIAL_F32[rng.below(SPECIAL_F32.len())]
                    } else {
                        rng.uniform(-4.0, 4.0) as f32
                    }
                })
                .collect(),
        ),
        DType::I32 => Data::I32(
            (0..n)
                .map(|_| super::gen::SPECIAL_I32[rng.below(super::gen::SPECIAL_I32.len())])
                .collect(),
        ),
        DType::Bool => Data::Bool((0..n).map(|_| rng.below(2) == 1).collect()),
    };
    Array::new(ty.shape.clone(), data).expect("sizes match")
}

/// An array of `ty` with moderate elements in `[lo, hi)` (small integers for i32).
pub fn moderate_input(rng: &mut Rng, ty: &Type, lo: f64, hi: f64) -> Array {
    let n = ty.size();
    let v: Vec<f64> = (0..n)
        .map(|_| match ty.dtype {
            DType::I32 => rng.below(5) as f64 - 1.0,
            DType::Bool => rng.below(2) as f64,
            _ => rng.uniform(lo, hi),
        })
        .collect();
    Array::from_f64(ty.dims(), v)
        .expect("sizes match")
        .cast(ty.dtype)
}

/// Equal dtype, shape and bits, any NaN equal to any NaN.
pub fn same(a: &Array, b: &Array) -> bool {
    if a.ty() != b.ty() {
        return false;
    }
    match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        _ => a
            .to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
    }
}

/// Like [`same`], but with +0.0 and -0.0 equal when `g` has a known signed-zero bug.
pub fn same_known(a: &Array, b: &Array, g: &Graph) -> bool {
    if same(a, b) {
        return true;
    }
    known(Known::TrivialSumSignedZero)
        && traits(g).trivial_sum
        && a.ty() == b.ty()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(p, q)| {
            p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()) || (*p == 0.0 && q == 0.0)
        })
}

/// The IEEE class of a number: NaN, ±inf, or finite.
fn class(x: f64) -> i32 {
    if x.is_nan() {
        0
    } else if x == f64::INFINITY {
        1
    } else if x == f64::NEG_INFINITY {
        2
    } else {
        3
    }
}

/// Equal types, the same IEEE class per element, and finite elements within `rel`
/// (relative) or `abs` (absolute).
pub fn close(a: &Array, b: &Array, rel: f64, abs: f64) -> Result<(), String> {
    if a.ty() != b.ty() {
        return Err(format!("types differ: {} against {}", a.ty(), b.ty()));
    }
    for (i, (p, q)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
        if class(*p) != class(q) {
            if known(Known::FastNonFiniteWherePreciseFinite) && !q.is_finite() && p.is_finite() {
                continue;
            }
            return Err(format!("element {i}: {p:e} against {q:e} (IEEE class)"));
        }
        if p.is_finite() && (p - q).abs() > abs + rel * p.abs().max(q.abs()) {
            return Err(format!("element {i}: {p:e} against {q:e}"));
        }
    }
    Ok(())
}

fn show(args: &[Array]) -> String {
    args.iter()
        .map(|a| format!("{}: {:?}", a.ty(), a.to_f64_vec()))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// A visitor of ops with their operand and result types.
pub type Visit<'a> = dyn FnMut(&Op, &[Type], &[Type]) + 'a;

/// Visits every op of `g` and of its sub-graphs.
pub fn walk(g: &Graph, f: &mut Visit<'_>) {
    for (_, inst) in g.insts() {
        let args: Vec<Type> = inst.args.iter().map(|&a| g.ty(a).clone()).collect();
        let res: Vec<Type> = inst.results.iter().map(|&r| g.ty(r).clone()).collect();
        f(&inst.op, &args, &res);
        if let Op::Control(c) = &inst.op {
            match c {
                ControlOp::Switch { branches } => branches.iter().for_each(|b| walk(b.graph(), f)),
                ControlOp::While { cond, body, .. } => {
                    walk(cond.graph(), f);
                    walk(body.graph(), f)
                }
                ControlOp::Scan { body, .. } => walk(body.graph(), f),
                ControlOp::TapedWhile {
                    cond, fwd, step, ..
                } => {
                    walk(cond.graph(), f);
                    walk(fwd.graph(), f);
                    walk(step.graph(), f)
                }
                ControlOp::CustomLinear { bwd, .. } => walk(bwd.graph(), f),
                ControlOp::Call { body, .. } => walk(body.graph(), f),
            }
        }
    }
}

/// What a graph contains, for choosing comparisons.
#[derive(Default, Debug)]
pub struct Traits {
    /// A matrix product large enough to call GEMM (summed in another order).
    pub gemm: bool,
    /// Some value has at least 1,024 elements (`Auto` takes its fast path).
    pub large: bool,
    /// Ops whose results jump (comparisons, rounding, integer conversions, arg-reductions,
    /// remainders, control flow with computed branches or trip counts).
    pub discrete: bool,
    /// A `reduce_sum` over at most one element per result (see `Known::TrivialSumSignedZero`).
    pub trivial_sum: bool,
    /// An `atan2` (see `Known::Atan2JvpOverflow`).
    pub atan2: bool,
    /// Only elementwise ops (and constants): no reductions to reassociate.
    pub elementwise: bool,
    /// Some value is f32 (finite differences are too coarse there).
    pub f32: bool,
    /// Some value is i32 produced from floats.
    pub int_from_float: bool,
    /// Rounding, remainders or float-to-integer conversions: with wild constants their jumps
    /// can be denser than a finite-difference step.
    pub jumpy: bool,
    /// A `stop_gradient` (derivatives differ from finite differences on purpose).
    pub stop_gradient: bool,
    /// A float constant that is not finite, huge or tiny: reassociated sums (Fast mode) may
    /// then legitimately change the IEEE class.
    pub wild_consts: bool,
}

/// The traits of `g`.
pub fn traits(g: &Graph) -> Traits {
    let mut t = Traits {
        elementwise: true,
        ..Traits::default()
    };
    let see = |ty: &Type, t: &mut Traits| {
        if ty.size() >= 1024 {
            t.large = true;
        }
        if ty.dtype == DType::F32 {
            t.f32 = true;
        }
    };
    for &p in g.params() {
        see(g.ty(p), &mut t);
    }
    walk(g, &mut |op, args, res| {
        for r in res.iter().chain(args) {
            see(r, &mut t);
        }
        if !(op.is_elementwise() || matches!(op, Op::Literal(_))) {
            t.elementwise = false;
        }
        match op {
            Op::Reduce(ReduceOp::Sum { axes }) if axes.iter().all(|&a| args[0].dims()[a] <= 1) => {
                t.trivial_sum = true;
            }
            Op::Dot(d) => {
                let lhs: usize = args[0].dims().iter().product();
                let rfree: usize = d
                    .rhs_free(args[1].rank())
                    .iter()
                    .map(|&i| args[1].dims()[i])
                    .product();
                if lhs.saturating_mul(rfree) >= 1024 {
                    t.gemm = true;
                }
            }
            Op::Conv(c) => {
                // The JIT's im2col + GEMM path (from 2,048 multiply-adds) sums in another
                // order than the interpreter.
                let o = args[1].dims()[c.dimension_numbers.rhs[0]];
                let per = args[1].size().checked_div(o).unwrap_or(0);
                if res[0].size().saturating_mul(per) >= 2048 {
                    t.gemm = true;
                }
            }
            Op::Unary(UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round) => {
                t.discrete = true;
                t.jumpy = true;
            }
            Op::Unary(UnaryOp::Sign | UnaryOp::Abs)
            | Op::Compare(_)
            | Op::Reduce(ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. })
            | Op::Control(_) => t.discrete = true,
            Op::Binary(ferrax::ir::ops::BinaryOp::Atan2) => t.atan2 = true,
            Op::Binary(ferrax::ir::ops::BinaryOp::Rem) => {
                t.discrete = true;
                t.jumpy = true;
            }
            Op::Convert(ConvertOp::StopGradient) => t.stop_gradient = true,
            Op::Literal(LiteralOp::Const(l)) => {
                let a = l.array();
                if a.dtype().is_float()
                    && a.to_f64_vec()
                        .iter()
                        .any(|x| !(x.abs() <= 1e6 && (x.abs() >= 1e-6 || *x == 0.0)))
                {
                    t.wild_consts = true;
                }
            }
            Op::Convert(ConvertOp::Convert(d)) if !d.is_float() => {
                t.discrete = true;
                if args[0].dtype.is_float() {
                    t.int_from_float = true;
                    t.jumpy = true;
                }
            }
            _ => {}
        }
    });
    t
}

/// The most iterations a `while_loop` may run in the fuzzer (generated loops stop after at
/// most 3; mutated ones may never stop, and then end with an error).
const MAX_WHILE: u64 = 10_000;

fn opts(math: MathMode) -> JitOptions {
    JitOptions {
        math,
        max_while_iterations: Some(MAX_WHILE),
        ..JitOptions::default()
    }
}

/// Evaluates with the interpreter (under the fuzzer's iteration limit), a panic being an
/// error.
pub fn run_interp(g: &Graph, args: &[Array]) -> Result<ferrax::Result<Vec<Array>>, String> {
    let limits = interp::EvalOptions {
        max_while_iterations: Some(MAX_WHILE),
    };
    guard("interp", || interp::eval_with(g, args, &limits))
}

/// Compiles and runs with the JIT, a panic being an error.
pub fn run_jit(
    g: &Graph,
    args: &[Array],
    math: MathMode,
) -> Result<ferrax::Result<Vec<Array>>, String> {
    guard(&format!("jit {math:?}"), || {
        compile(g, &opts(math)).and_then(|c| c.call(args))
    })
}

/// How inputs were made: the comparisons allowed in Fast mode depend on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InputKind {
    /// Every IEEE special mixed in.
    Special,
    /// Moderate, finite numbers.
    Moderate,
}

/// The interpreter against the JIT in all three math modes on one input set; returns the
/// interpreter's outputs. `what` names the graph in messages.
pub fn interp_vs_jit(
    what: &str,
    g: &Graph,
    args: &[Array],
    kind: InputKind,
) -> Result<Vec<Array>, String> {
    bump(&COUNTS.inputs, 1);
    let ctx = || format!("{what}:\n{}\ninputs:\n  {}", g.to_text(), show(args));
    let want = match run_interp(g, args).map_err(|e| format!("{e}\n{}", ctx()))? {
        Ok(v) => v,
        Err(e) => return Err(format!("interp error on a verified graph: {e}\n{}", ctx())),
    };
    let t = traits(g);
    for math in [MathMode::Precise, MathMode::Auto, MathMode::Fast] {
        let got = match run_jit(g, args, math).map_err(|e| format!("{e}\n{}", ctx()))? {
            Ok(v) => v,
            Err(e) => return Err(format!("jit {math:?} error: {e}\n{}", ctx())),
        };
        if got.len() != want.len() {
            return Err(format!("jit {math:?}: output count differs\n{}", ctx()));
        }
        // Which comparison this mode promises.
        let exact = match math {
            MathMode::Precise => !t.gemm,
            MathMode::Auto => !t.gemm && !t.large,
            MathMode::Fast => false,
        };
        let loose = !exact && kind == InputKind::Moderate && !t.discrete && !t.wild_consts;
        if loose {
            bump(&COUNTS.fast_compared, 1);
        }
        for (k, (w, h)) in want.iter().zip(&got).enumerate() {
            if exact && !same(w, h) {
                return Err(format!(
                    "jit {math:?} differs from interp at output {k}:\n  interp {:?}\n  jit    {:?}\n{}",
                    w.to_f64_vec(),
                    h.to_f64_vec(),
                    ctx()
                ));
            }
            if w.ty() != h.ty() {
                return Err(format!("jit {math:?}: output {k} type differs\n{}", ctx()));
            }
            if !exact && kind == InputKind::Special && t.elementwise {
                // Elementwise graphs keep every IEEE class, whatever the math mode.
                bump(&COUNTS.fast_compared, 1);
                close(w, h, f64::INFINITY, 0.0).map_err(|e| {
                    format!(
                        "jit {math:?} changes the IEEE class at output {k}: {e}\n{}",
                        ctx()
                    )
                })?;
            }
            if loose {
                // Any f32 value upstream bounds the accuracy of everything after it.
                let (rel, abs) = if t.f32 { (1e-3, 1e-4) } else { (1e-7, 1e-9) };
                close(w, h, rel, abs).map_err(|e| {
                    format!("jit {math:?} far from interp at output {k}: {e}\n{}", ctx())
                })?;
            }
        }
    }
    Ok(want)
}

/// The graph `sum(convert_f64(outputs[k]))` of `g`'s parameters, for the first float output
/// `k`; `None` when no output is float.
pub fn summed(g: &Graph) -> Option<Graph> {
    let k = g.output_types().iter().position(|t| t.dtype.is_float())?;
    let mut b = Builder::new();
    let ps: Vec<_> = g.param_types().into_iter().map(|t| b.param(t)).collect();
    let outs = inline(&mut b, g, &ps).ok()?;
    let mut v = outs[k];
    if b.ty(v).dtype == DType::F32 {
        v = b
            .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[v])
            .ok()?;
    }
    let axes = (0..b.ty(v).rank()).collect();
    let s = b.push1(Op::Reduce(ReduceOp::Sum { axes }), &[v]).ok()?;
    Some(b.finish(&[s]))
}

/// The float parameters of `g`.
pub fn float_params(g: &Graph) -> Vec<usize> {
    g.param_types()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.dtype.is_float())
        .map(|(i, _)| i)
        .collect()
}

/// A transform's result, an error counted but not a failure (transforms may decline).
pub fn transform(
    name: &str,
    g: &Graph,
    f: impl FnOnce(&Graph) -> ferrax::Result<Graph>,
) -> Result<Option<Graph>, String> {
    bump(&COUNTS.transforms, 1);
    let r = guard(name, || f(g).map(|h| simplify(&h)))
        .map_err(|e| format!("{e}\nof graph:\n{}", g.to_text()))?;
    match r {
        Ok(h) => {
            let v = guard("verify", || h.verify())?;
            if let Err(e) = v {
                return Err(format!(
                    "{name} made a graph that does not verify: {e}\n{}\nfrom:\n{}",
                    h.to_text(),
                    g.to_text()
                ));
            }
            Ok(Some(h))
        }
        Err(e) => {
            bump(&COUNTS.transform_errors, 1);
            let mut d = DECLINED.lock().unwrap_or_else(|e| e.into_inner());
            let entry = d.entry(name.to_string()).or_insert((0, String::new()));
            entry.0 += 1;
            if entry.1.is_empty() {
                entry.1 = e.to_string().chars().take(160).collect();
            }
            Ok(None)
        }
    }
}

/// `grad` of the summed first float output with respect to every float parameter.
pub fn grad_of(g: &Graph) -> Result<Option<Graph>, String> {
    let Some(s) = summed(g) else {
        return Ok(None);
    };
    let argnums = float_params(&s);
    if argnums.is_empty() {
        return Ok(None);
    }
    let n = s.params().len();
    transform("grad", &s, |s| grad_graph(s, n, &argnums, false))
}

/// `jvp` of `g`: parameters `(primals.., tangents..)`, outputs `(outputs.., tangents..)`.
pub fn jvp_of(g: &Graph) -> Result<Option<Graph>, String> {
    let n = g.params().len();
    transform("jvp", g, |g| jvp_graph(g, n))
}

/// `vjp` of `g`: parameters `(primals.., output cotangents..)`, outputs `(outputs.., input
/// cotangents..)`.
pub fn vjp_of(g: &Graph) -> Result<Option<Graph>, String> {
    let n = g.params().len();
    transform("vjp", g, |g| vjp_graph(g, n))
}

/// `vmap` of `g` over a batch of `batch` with the given in_axes.
pub fn vmap_of(
    g: &Graph,
    in_axes: &[Option<usize>],
    batch: usize,
) -> Result<Option<Graph>, String> {
    let n = g.params().len();
    let types: Vec<Type> = g
        .param_types()
        .iter()
        .zip(in_axes)
        .map(|(t, a)| match a {
            Some(a) => {
                let mut d = t.dims().to_vec();
                d.insert(*a, batch);
                Type::new(t.dtype, &d)
            }
            None => t.clone(),
        })
        .collect();
    let out_axes = vec![0; g.outputs().len()];
    transform("vmap", g, |g| vmap_graph(g, n, in_axes, &out_axes, &types))
}

/// Stacks member arrays along a new axis `axis`.
pub fn stack_at(members: &[Array], axis: usize) -> Array {
    let t = members[0].ty();
    let b = members.len();
    let outer: usize = t.dims()[..axis].iter().product();
    let inner: usize = t.dims()[axis..].iter().product();
    let vals: Vec<Vec<f64>> = members.iter().map(|m| m.to_f64_vec()).collect();
    let mut out = Vec::with_capacity(b * t.size());
    for o in 0..outer {
        for v in &vals {
            out.extend_from_slice(&v[o * inner..(o + 1) * inner]);
        }
    }
    let mut d = t.dims().to_vec();
    d.insert(axis, b);
    let a = Array::from_f64(Shape::new(&d), out).expect("sizes match");
    // f32 elements go through f64 exactly (NaN payloads aside, which compare as NaN).
    a.cast(t.dtype)
}

/// Member `m` of an array batched along axis 0.
pub fn member(a: &Array, m: usize) -> Array {
    let b = a.dims()[0];
    let n = a.size() / b.max(1);
    let v = a.to_f64_vec()[m * n..(m + 1) * n].to_vec();
    Array::from_f64(Shape::new(&a.dims()[1..]), v)
        .expect("sizes match")
        .cast(a.dtype())
}

/// `f` at `x + s·d` (float parameters only move).
fn shifted(x: &[Array], d: &[Array], s: f64) -> Vec<Array> {
    x.iter()
        .zip(d)
        .map(|(a, t)| {
            if a.dtype() != DType::F64 {
                return a.clone();
            }
            let v: Vec<f64> = a
                .to_f64_vec()
                .iter()
                .zip(t.to_f64_vec())
                .map(|(p, q)| p + s * q)
                .collect();
            Array::from_f64(a.shape().clone(), v).expect("sizes match")
        })
        .collect()
}

/// Compares `ad` (one array per float output of `f`, the derivative along `d` at `x`) with
/// central differences of `f`, element by element, where two step sizes agree (the function
/// is smooth there) and everything is finite.
pub fn fd_check(
    what: &str,
    f: &Graph,
    x: &[Array],
    d: &[Array],
    ad: &[Array],
) -> Result<(), String> {
    let eval = |s: f64| -> Option<Vec<Array>> {
        let xs = shifted(x, d, s);
        interp::eval(f, &xs).ok()
    };
    let (h1, h2) = (1e-4, 1e-5);
    let (Some(p1), Some(m1), Some(p2), Some(m2), Some(y0)) =
        (eval(h1), eval(-h1), eval(h2), eval(-h2), eval(0.0))
    else {
        return Ok(());
    };
    let floats: Vec<usize> = (0..y0.len())
        .filter(|&k| y0[k].dtype() == DType::F64)
        .collect();
    if floats.len() != ad.len() {
        return Ok(());
    }
    for (j, &k) in floats.iter().enumerate() {
        let (a1, b1, a2, b2, y) = (
            p1[k].to_f64_vec(),
            m1[k].to_f64_vec(),
            p2[k].to_f64_vec(),
            m2[k].to_f64_vec(),
            y0[k].to_f64_vec(),
        );
        let t = ad[j].to_f64_vec();
        for i in 0..t.len() {
            let fd1 = (a1[i] - b1[i]) / (2.0 * h1);
            let fd2 = (a2[i] - b2[i]) / (2.0 * h2);
            let scale = 1.0 + fd2.abs() + 1e-9 * y[i].abs();
            // The rounding of f itself, divided by the step: with large values (a constant of
            // 1e10 in a sum) both differences are quantised to the same wrong multiple, so
            // their agreement proves nothing below this.
            let noise = 32.0 * f64::EPSILON * (y[i].abs() + a2[i].abs() + b2[i].abs()) / h2;
            if !(fd1.is_finite() && fd2.is_finite() && t[i].is_finite() && y[i].is_finite())
                || (fd1 - fd2).abs() > 1e-4 * scale
                || noise > 1e-4 * scale
            {
                bump(&COUNTS.fd_skipped, 1);
                continue;
            }
            bump(&COUNTS.fd_checked, 1);
            if (t[i] - fd2).abs() > 1e-3 * scale + 10.0 * (fd1 - fd2).abs() {
                return Err(format!(
                    "{what}: derivative {:e} but finite differences give {fd2:e} (h={h2}) and \
                     {fd1:e} (h={h1}) at output {k} element {i}\ngraph:\n{}\nat:\n  {}\n\
                     direction:\n  {}",
                    t[i],
                    f.to_text(),
                    show(x),
                    show(d)
                ));
            }
        }
    }
    Ok(())
}

/// The largest finite magnitude among the float values that the body of `g` computes on
/// `args` (its top level: a control-flow op counts by its results). Where the fuzzer compares
/// two AD modes, a result that is the difference of terms this large is right only up to
/// their rounding (the derivative of `x / x` near 0 is `1/x − (x/x)·(1/x)`), which a bound on
/// the inputs and outputs alone does not see. Infinite on an evaluation error.
pub fn largest_term(g: &Graph, args: &[Array]) -> f64 {
    let mut env: Vec<Option<Array>> = vec![None; g.num_values()];
    for (&p, a) in g.params().iter().zip(args) {
        env[p.index()] = Some(a.clone());
    }
    let mut big = 0.0f64;
    for (_, inst) in g.insts() {
        let ins: Vec<&Array> = inst
            .args
            .iter()
            .map(|&a| env[a.index()].as_ref().expect("a verified graph"))
            .collect();
        let Ok(outs) = inst.op.eval(&ins) else {
            return f64::INFINITY;
        };
        for (&r, a) in inst.results.iter().zip(outs) {
            if a.dtype().is_float() {
                for v in a.to_f64_vec() {
                    if v.is_finite() {
                        big = big.max(v.abs());
                    }
                }
            }
            env[r.index()] = Some(a);
        }
    }
    big
}

/// The rounding allowance, relative to [`largest_term`], with which two AD modes may differ in
/// f64: a few thousand ulps of the largest term, for the error that accumulates through long
/// chains of operations on such terms.
pub const TERM_ROUNDING: f64 = 1e-12;
