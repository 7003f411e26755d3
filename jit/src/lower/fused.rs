//! Lowering of a fused group (see `crate::fuse`): one loop nest over the root's elements that
//! reads the group's leaves through affine maps (guarded where pads and concatenations
//! decide, see [`remap`]), evaluates every member with the elementwise emitters (intermediates
//! stay in SSA values; a member under a pad or slice is evaluated at the remapped index), and
//! stores the root, plus any stored members (graph outputs the loop computes anyway, written
//! at the root's index into their own buffers).
//!
//! The result's dimensions are first coalesced (adjacent dimensions merge when every access
//! walks them as one), so most groups are a flat loop or a row loop around a contiguous inner
//! loop. The inner loop is vectorised with 128-bit vectors (`f32x4`, `f64x2`) when the value
//! produced is a float, every op has a vector form at that float's lane count (comparisons of
//! floats or i32s, logic and `select` work on lane masks; i32 leaves are widened to the lane
//! width on load), no leaf is a bool, and every read of the inner dimension is contiguous,
//! stride-0 (a broadcast, splatted once per row) or a gather by constant indices (loaded lane
//! by lane, or for a gathered identity compared with the row's position, see [`OneHot`]); a
//! scalar tail finishes the row. A row with guarded reads is cut into segments
//! over which every read resolves to one source (see [`emit_segments`]).
//!
//! A reduction root runs the nest over its operand's elements; the output access has stride 0
//! along reduced dimensions, so coalescing never merges a kept with a reduced dimension.
//! [`emit_reduce_row`] documents the accumulation order. Groups of at least [`PAR_MIN`] elements are compiled as a separate kernel
//! over a range of the outermost dimension and run on all cores through the imported
//! `ferrax_parallel_for`.

use super::band::{self, Banded, Part};
use super::remap::{self, Node, Read, Reads, Src};
use super::{clty, jit_err, Ctx, Slot};
use crate::plan::Home;
use crate::MathMode;
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, Function, InstBuilder, MemFlagsData, Signature,
    StackSlotData, StackSlotKind,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::Module;
use ferrax_ir::ops::{
    BinaryOp, CompareOp, ConvertOp, IndexOp, LiteralOp, ReduceOp, ShapeOp, UnaryOp,
};
use ferrax_ir::{DType, Graph, InstData, Op, Result, Value};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// Groups with at least this many elements run on all cores.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// Groups with a `tanh` root of at least this many elements finish with a wide helper (see
/// [`wide_tail`]); below, the call and the second pass would cost more than they save.
pub(crate) const WIDE_MIN: usize = 64;

/// Everything needed to emit a group's loop nest.
#[derive(Clone)]
struct Spec {
    /// The root's result.
    out: Value,
    /// The stored members' results (see `crate::fuse`), written at the loop's index.
    stored: SmallVec<[Value; 2]>,
    /// Each stored member's strides over the coalesced dims (row-major over the loop's).
    stored_strides: Vec<SmallVec<[i64; 4]>>,
    /// The reductions of a reduction group (the root last; siblings over the same operand
    /// shape and axes share the loop), empty for an elementwise group.
    reds: Vec<Red>,
    /// Whether a reduction may reassociate (vector accumulators along a reduced inner
    /// dimension): only with fast math for the group's size.
    reassoc: bool,
    /// Whether each output element of a reduction along the inner dimension is produced by
    /// one row emitted in one piece (see [`one_row_per_output`]): the row's accumulator then
    /// starts from the reduction's identity, and the output is not filled beforehand.
    fresh: bool,
    /// The coalesced loop dimensions.
    dims: SmallVec<[usize; 4]>,
    /// The leaf reads (see [`remap`]).
    reads: Vec<Read>,
    /// The computations of one element, operands first.
    nodes: Vec<Node>,
    /// The sources of the values the loop produces: the root's result, or for a reduction
    /// group each reduction's operand; then the stored members'.
    outs: SmallVec<[Src; 2]>,
    /// The source at the loop index of every member's result and operands.
    src_of: HashMap<Value, Src>,
    /// Whether some read or select has guards: rows are then split around the part where every guard
    /// holds (see [`remap::middle`]).
    guarded: bool,
    /// The output's strides over the coalesced dims.
    out_strides: SmallVec<[i64; 4]>,
    /// The vector type of the inner loop, when it vectorises.
    vector: Option<ir::Type>,
    /// The banded form of a 2-D select chain (see [`band`]), written row by row as a
    /// default loop plus one element per band.
    band: Option<Banded>,
    /// The helper that applies the root's `tanh` in place after the loop, which then stores
    /// the root's operand (see [`wide_tail`]).
    tail: Option<&'static str>,
}

/// One reduction of a reduction group.
#[derive(Clone)]
struct Red {
    /// The reduction.
    op: ReduceOp,
    /// Its result.
    out: Value,
    /// Its operand (produced by the loop or read as a leaf).
    value: Value,
    /// The accumulator of a rank-0 result (which has no buffer), set while lowering.
    acc_var: Option<Variable>,
}

/// Whether `op` has a vector form (`fast`: whether transcendentals use the fast forms).
fn vectorizable(op: &Op, fast: bool) -> bool {
    match op {
        Op::Unary(u) => match u {
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Square
            | UnaryOp::Reciprocal
            | UnaryOp::IntegerPow(_) => true,
            UnaryOp::Exp
            | UnaryOp::Expm1
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Logistic
            | UnaryOp::Erf => fast,
            UnaryOp::Sign
            | UnaryOp::Round
            | UnaryOp::Exp2
            | UnaryOp::Tan
            | UnaryOp::Asin
            | UnaryOp::Acos
            | UnaryOp::Atan
            | UnaryOp::Sinh
            | UnaryOp::Cosh
            | UnaryOp::Asinh
            | UnaryOp::Acosh
            | UnaryOp::Atanh => false,
        },
        Op::Binary(b) => match b {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Max
            | BinaryOp::Min => true,
            BinaryOp::Pow => fast,
            BinaryOp::Atan2 | BinaryOp::Rem => false,
        },
        Op::Convert(ConvertOp::StopGradient) => true,
        Op::Shape(ShapeOp::BroadcastInDim { .. }) => true,
        Op::Convert(ConvertOp::Convert(_))
        | Op::Compare(_)
        | Op::Literal(_)
        | Op::Shape(_)
        | Op::Reduce(_)
        | Op::Dot(_)
        | Op::Conv(_)
        | Op::Index(_)
        | Op::Control(_)
        | Op::Window(_) => false,
    }
}

/// Whether a member has a vector form in a group whose float dtype is `float`: float ops
/// on `float` values (see [`vectorizable`]); comparisons of `float` or i32 values (i32 lanes
/// are widened to the float's lane width), and logic on their results, as lane masks; and
/// `select` between `float` values on such a mask; and reads of `float` or i32 values.
fn vector_member(graph: &Graph, inst: &InstData, float: DType, fast: bool, fma: bool) -> bool {
    let dt = |v: &Value| graph.ty(*v).dtype;
    let all = |vs: &[Value], d: DType| vs.iter().all(|v| dt(v) == d);
    match &inst.op {
        Op::Compare(c) => match c {
            CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge => {
                all(&inst.args, float)
                    || all(&inst.args, DType::I32)
                    || all(&inst.args, DType::Bool)
            }
            CompareOp::And | CompareOp::Or | CompareOp::Not => all(&inst.args, DType::Bool),
            CompareOp::Select => dt(&inst.args[0]) == DType::Bool && all(&inst.args[1..], float),
        },
        // A remap is a read: of the float or of i32 (widened on load).
        Op::Shape(s) if crate::fuse::remap_shape(s) => {
            matches!(dt(&inst.args[0]), DType::I32) || dt(&inst.args[0]) == float
        }
        // A gather by constant indices (the only gather a group holds) is a read of the
        // float, loaded lane by lane (see `vector_reads`).
        Op::Index(IndexOp::Gather(_)) => dt(&inst.args[0]) == float,
        // The fast f64 `pow` needs FMA.
        Op::Binary(BinaryOp::Pow) if float == DType::F64 && !fma => false,
        op => all(&inst.args, float) && all(&inst.results, float) && vectorizable(op, fast),
    }
}

/// The integer vector type with the lanes of the float vector type `vty` (lane masks, and
/// i32 values widened to the lane width).
fn int_lanes(vty: ir::Type) -> ir::Type {
    if vty == types::F64X2 {
        types::I64X2
    } else {
        types::I32X4
    }
}

/// Splats a scalar read (of the group's float dtype or i32) to the vector type of its dtype.
fn splat_scalar(cx: &mut Ctx, x: ir::Value, dtype: DType, vty: ir::Type) -> ir::Value {
    if dtype == DType::I32 {
        let ity = int_lanes(vty);
        let w = if ity == types::I64X2 {
            cx.fb.ins().sextend(types::I64, x)
        } else {
            x
        };
        cx.fb.ins().splat(ity, w)
    } else {
        cx.fb.ins().splat(vty, x)
    }
}

/// Row-major element strides of `dims`.
fn row_major(dims: &[usize]) -> SmallVec<[i64; 4]> {
    super::strides(dims)
}

/// Builds the spec of the group rooted at position `root`.
fn spec(
    graph: &Graph,
    insts: &[&InstData],
    fusion: &crate::fuse::Fusion,
    root: usize,
    math: MathMode,
    fma: bool,
    tail: Option<&'static str>,
) -> Result<Spec> {
    let members: Vec<usize> = fusion.members[root].clone();
    let out = insts[root].results[0];
    let stored: SmallVec<[Value; 2]> = members
        .iter()
        .filter(|&&j| fusion.stored[j])
        .map(|&j| insts[j].results[0])
        .collect();
    let reds: Vec<Red> = members
        .iter()
        .filter_map(|&j| match &insts[j].op {
            Op::Reduce(op) => Some(Red {
                op: op.clone(),
                out: insts[j].results[0],
                value: insts[j].args[0],
                acc_var: None,
            }),
            _ => None,
        })
        .collect();
    let reduce = reds.last().map(|r| r.op.clone());
    let value = reds.last().map_or(out, |r| r.value);
    let rdims: SmallVec<[usize; 4]> = SmallVec::from_slice(graph.ty(value).dims());
    let contig = row_major(&rdims);
    // The output's strides over the loop dims: 0 along reduced axes.
    let out_full: SmallVec<[i64; 4]> = match &reduce {
        Some(op) => {
            let axes = op.axes();
            let kept = row_major(graph.ty(out).dims());
            let mut k = 0;
            (0..rdims.len())
                .map(|d| {
                    if axes.contains(&d) {
                        0
                    } else {
                        k += 1;
                        kept[k - 1]
                    }
                })
                .collect()
        }
        None => contig.clone(),
    };
    // Remap members are read through (see `remap`), except a trivial broadcast of a value
    // computed in the loop, which passes it through.
    let member_at: HashMap<Value, usize> =
        members.iter().map(|&j| (insts[j].results[0], j)).collect();
    let is_remap = |j: usize| crate::fuse::remap_member(&insts[j].op);
    let passthrough = |j: usize| {
        crate::fuse::trivial_broadcast(graph, insts[j])
            && member_at
                .get(&insts[j].args[0])
                .is_some_and(|&k| !is_remap(k))
    };
    let through: HashMap<Value, usize> = member_at
        .iter()
        .filter(|&(_, &j)| is_remap(j) && !passthrough(j))
        .map(|(&v, &j)| (v, j))
        .collect();
    let computed: HashMap<Value, usize> = member_at
        .iter()
        .filter(|&(v, &j)| !through.contains_key(v) && !matches!(insts[j].op, Op::Reduce(_)))
        .map(|(&v, &j)| (v, j))
        .collect();
    let mut rb = Reads::new(graph, insts, through, computed, &rdims);
    // The values the loop produces: the group's value, or each reduction's operand.
    let mut outs: SmallVec<[Src; 2]> = SmallVec::new();
    if let (true, Some(_)) = (reds.is_empty(), tail) {
        outs.push(rb.value(insts[root].args[0])?);
    } else if reds.is_empty() {
        outs.push(rb.value(value)?);
        for &v in &stored {
            outs.push(rb.value(v)?);
        }
    } else {
        for r in &reds {
            outs.push(rb.value(r.value)?);
        }
        for &v in &stored {
            outs.push(rb.value(v)?);
        }
    }
    rb.mark_top(&outs);
    // Sources at the loop index of every member's result and operands (for bands).
    let mut src_of: HashMap<Value, Src> = HashMap::new();
    let mut read_of: HashMap<Value, usize> = HashMap::new();
    for &j in &members {
        for &v in insts[j].results.iter().chain(&insts[j].args) {
            if let Some(s) = rb.at_identity(v) {
                src_of.insert(v, s);
                if let Src::Read(k) = s {
                    read_of.insert(v, k);
                }
            }
        }
    }
    let nodes = std::mem::take(&mut rb.nodes);
    let mut reads = rb.reads;
    let mut selects = nodes.iter().filter_map(|n| match n {
        Node::Select { guards, .. } => Some(guards),
        Node::Op { .. } => None,
    });
    let guarded = reads.iter().any(|r| !r.guards.is_empty()) || selects.next().is_some();
    // Guarded dimensions are never merged, so guards stay affine in one loop index.
    let mut guarded_dim = vec![false; rdims.len()];
    let all_guards = reads
        .iter()
        .flat_map(|r| r.guards.iter().map(|(g, _)| g))
        .chain(nodes.iter().flat_map(|n| match n {
            Node::Select { guards, .. } => guards.as_slice(),
            Node::Op { .. } => &[],
        }));
    for g in all_guards {
        if g.fixed().is_none() {
            guarded_dim[g.dim] = true;
        }
    }
    // Coalesce: drop size-1 dims, merge runs every access walks as one.
    let mut dims: SmallVec<[usize; 4]> = SmallVec::new();
    // Columns: the reads, the output, then the stored members (row-major over the loop).
    let ncols = reads.len() + 1 + stored.len();
    let mut cols: Vec<SmallVec<[i64; 4]>> = vec![SmallVec::new(); ncols];
    // The coalesced dimension of every loop dimension, and whether the last one holds a
    // guarded dimension.
    let mut new_of = vec![0usize; rdims.len()];
    let mut last_guarded = false;
    for d in 0..rdims.len() {
        if rdims[d] == 1 {
            continue;
        }
        let st = |k: usize| match k.cmp(&reads.len()) {
            std::cmp::Ordering::Less => reads[k].strides[d],
            std::cmp::Ordering::Equal => out_full[d],
            std::cmp::Ordering::Greater => contig[d],
        };
        let merge = !dims.is_empty()
            && !guarded_dim[d]
            && !last_guarded
            && (0..ncols).all(|k| {
                let prev = *cols[k].last().expect("a previous dim");
                prev == st(k) * rdims[d] as i64
            });
        if merge {
            let last = dims.len() - 1;
            dims[last] *= rdims[d];
            for (k, c) in cols.iter_mut().enumerate() {
                let l = c.len() - 1;
                c[l] = st(k);
            }
        } else {
            dims.push(rdims[d]);
            for (k, c) in cols.iter_mut().enumerate() {
                c.push(st(k));
            }
        }
        new_of[d] = dims.len() - 1;
        last_guarded = guarded_dim[d];
    }
    if dims.is_empty() {
        dims.push(1);
        for c in cols.iter_mut() {
            c.push(0);
        }
    }
    let stored_strides = cols.split_off(reads.len() + 1);
    let out_strides = cols.pop().expect("the output column");
    let renumber = |g: &mut remap::Guard| {
        if g.fixed().is_none() {
            g.dim = new_of[g.dim];
        }
    };
    for (r, c) in reads.iter_mut().zip(cols) {
        r.strides = c;
        r.guards.iter_mut().for_each(|(g, _)| renumber(g));
    }
    let mut nodes = nodes;
    for n in nodes.iter_mut() {
        if let Node::Select { guards, .. } = n {
            guards.iter_mut().for_each(renumber);
        }
    }
    // Vectorise when the produced value is a float, every member has a vector form at that
    // float's lane count, no leaf is a bool, and every inner read is contiguous or stride 0.
    let dtype = graph.ty(out).dtype;
    let inner = dims.len() - 1;
    let size = graph.ty(value).size();
    let fast = math.fast_for(size);
    let ok = dtype.is_float()
        && graph.ty(value).dtype == dtype
        && reds
            .iter()
            .all(|r| graph.ty(r.out).dtype == dtype && graph.ty(r.value).dtype == dtype)
        && (out_strides[inner] == 1 || (reduce.is_some() && out_strides[inner] == 0))
        && members.iter().all(|&j| {
            matches!(insts[j].op, Op::Reduce(_)) || vector_member(graph, insts[j], dtype, fast, fma)
        })
        && reads.iter().all(|r| vector_read(graph, r, inner, dtype));
    let vector = ok.then(|| {
        if dtype == DType::F64 {
            types::F64X2
        } else {
            types::F32X4
        }
    });
    let reds_empty = reds.is_empty();
    let uncoalesced = dims.len() == 2 && graph.ty(out).dims() == &dims[..];
    let plain = members
        .iter()
        .all(|&j| !is_remap(j) || matches!(insts[j].op, Op::Shape(ShapeOp::BroadcastInDim { .. })));
    let band = if reds.is_empty() && uncoalesced && plain && !guarded && stored.is_empty() {
        band::banded(graph, insts, &members, out, &read_of, reads.len())
    } else {
        None
    };
    Ok(Spec {
        out,
        stored,
        stored_strides,
        reds,
        reassoc: fast,
        fresh: false,
        dims,
        reads,
        nodes,
        outs,
        src_of,
        guarded,
        out_strides,
        vector,
        band,
        tail: tail.filter(|_| reds_empty),
    })
}

/// The wide helper (see `crate::wide_math`) that can finish the group rooted at `root`: the
/// root is a fast `tanh` of at least [`WIDE_MIN`] floats computed into a buffer, for code
/// running in this process on a target with FMA (the helpers reproduce the inline form's
/// fused multiply-adds, so the results are the same bits).
fn wide_tail(cx: &Ctx, root: &InstData) -> Option<&'static str> {
    let ty = cx.graph.ty(root.results[0]);
    let wanted = matches!(root.op, Op::Unary(UnaryOp::Tanh))
        && cx.dest == crate::Destination::Process
        && cx.has_fma
        && cfg!(target_arch = "x86_64")
        && ty.size() >= WIDE_MIN
        && !ty.is_scalar()
        && cx.opts.math.fast_for(ty.size());
    wanted.then(|| crate::wide_math::tanh_symbol(ty.dtype))?
}

/// The operands `(x, b)` when the group rooted at `root` (whose `tanh` has a wide tail) is
/// exactly `tanh(x + broadcast(b))` with `x` a buffer of the result's shape, `b` a vector
/// broadcast along the rows (a dense layer's pre-activation: `x` the product, `b` the bias),
/// and fewer than [`PAR_MIN`] elements in at least two rows; then [`emit_bias_tanh`] replaces
/// the loop.
fn bias_tanh(cx: &Ctx, insts: &[&InstData], root: usize) -> Option<(Value, Value)> {
    let graph = cx.graph;
    let members = &cx.plan.fusion.members[root];
    let ty = graph.ty(insts[root].results[0]);
    let dims = ty.dims();
    let (&cols, outer) = dims.split_last()?;
    let rows: usize = outer.iter().product();
    if members.len() != 3 || rows < 2 || ty.size() >= PAR_MIN {
        return None;
    }
    let member = |v: Value| {
        graph
            .producer(v)
            .filter(|(i, _)| members.contains(&i.index()))
            .map(|(_, d)| d)
    };
    let add = member(insts[root].args[0])?;
    if !matches!(add.op, Op::Binary(BinaryOp::Add)) {
        return None;
    }
    let (a, b) = (add.args[0], add.args[1]);
    [(a, b), (b, a)].into_iter().find_map(|(x, bb)| {
        let bc = member(bb)?;
        let Op::Shape(ShapeOp::BroadcastInDim { dims: to, .. }) = &bc.op else {
            return None;
        };
        let bias = bc.args[0];
        let plain = member(x).is_none()
            && graph.ty(x).dims() == dims
            && graph.ty(bias).dims() == [cols]
            && to[..] == [dims.len() - 1]
            && matches!(cx.slot(x), Ok(Slot::Mem(_)))
            && matches!(cx.slot(bias), Ok(Slot::Mem(_)));
        plain.then_some((x, bias))
    })
}

/// Lowers a `tanh(x + broadcast(b))` group (see [`bias_tanh`]) as one call of the wide helper
/// that adds the bias row and applies `tanh` in one pass over the rows.
fn emit_bias_tanh(cx: &mut Ctx, root: &InstData, x: Value, bias: Value) -> Result<()> {
    let out = root.results[0];
    let ty = cx.graph.ty(out).clone();
    let name = crate::wide_math::bias_tanh_symbol(ty.dtype)
        .ok_or_else(|| jit_err("a wide tanh of a non-float"))?;
    let (Slot::Mem(px), Slot::Mem(pb), Slot::Mem(po)) =
        (cx.slot(x)?, cx.slot(bias)?, cx.slot(out)?)
    else {
        return Err(jit_err("a fused result without a buffer"));
    };
    let cols = ty.dims().last().copied().unwrap_or(1);
    let rows = cx.iconst((ty.size() / cols.max(1)) as i64);
    let cols = cx.iconst(cols as i64);
    cx.call(name, &[types::I64; 5], &[], &[px, pb, po, rows, cols])?;
    crate::stats::WIDE_TAILS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::stats::BIAS_TAILS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// A `tanh` layer's backward group (see [`tanh_back`]): its leaves `t` and `g`, the product
/// `(1 − t²)·g` it stores, and the product's sums over the outer rows when the group is their
/// reduction.
struct TanhBack {
    /// The activations `t`.
    t: Value,
    /// The incoming gradient `g`.
    g: Value,
    /// The product `(1 − t²)·g`.
    prod: Value,
    /// The product's sums over its outer axes, when the group's root is that reduction.
    sums: Option<Value>,
}

/// The parts of the group rooted at `root` when it is exactly a `tanh` layer's backward
/// product `(1 − t²)·g` (`1 − square(t)` or `1 − t·t`, the ones a broadcast constant or a
/// constant array, the product in either order) with `t` and `g` buffers of its shape, stored as the group's
/// elementwise result or as the stored member of a root that sums it over its leading axes
/// (a bias gradient), of at least [`WIDE_MIN`] and fewer than [`PAR_MIN`] floats, for code
/// running in this process; then [`emit_tanh_back`] replaces the loop. No condition on the
/// math mode: the helper performs the loop's IEEE operations in its order in every mode.
fn tanh_back(cx: &Ctx, insts: &[&InstData], root: usize) -> Option<TanhBack> {
    let graph = cx.graph;
    let fusion = &cx.plan.fusion;
    let members = &fusion.members[root];
    let member = |v: Value| {
        graph
            .producer(v)
            .filter(|(i, _)| members.contains(&i.index()))
    };
    let in_memory = |v: Value| matches!(cx.plan.homes[v.index()], Home::Output(_) | Home::Work(_));
    let top = insts[root];
    let (prod, sums) = match &top.op {
        Op::Reduce(ReduceOp::Sum { axes }) => {
            let rank = graph.ty(top.args[0]).dims().len();
            let leading =
                !axes.is_empty() && axes.len() < rank && axes.iter().copied().eq(0..axes.len());
            leading.then_some((top.args[0], Some(top.results[0])))?
        }
        _ => (top.results[0], None),
    };
    let ty = graph.ty(prod);
    let size = ty.size();
    let wanted = cx.dest == crate::Destination::Process
        && crate::wide_math::tanh_back_symbol(ty.dtype).is_some()
        && !ty.is_scalar()
        && (WIDE_MIN..PAR_MIN).contains(&size)
        && in_memory(prod)
        && sums.is_none_or(in_memory);
    if !wanted {
        return None;
    }
    let (mi, mul) = member(prod)?;
    if !matches!(mul.op, Op::Binary(BinaryOp::Mul)) {
        return None;
    }
    // A leaf of the product's type in a buffer.
    let leaf = |v: Value| {
        member(v).is_none() && graph.ty(v) == ty && matches!(cx.slot(v), Ok(Slot::Mem(_)))
    };
    let (a, b) = (mul.args[0], mul.args[1]);
    let (g, di, one_i, sq_i, t) = [(a, b), (b, a)].into_iter().find_map(|(d, g)| {
        let (di, sub) = member(d)?;
        if !matches!(sub.op, Op::Binary(BinaryOp::Sub)) || !leaf(g) {
            return None;
        }
        // The ones: a broadcast member of a constant one, or a constant of ones read as a leaf.
        let ones = |v: Value| {
            graph.producer(v).is_some_and(|(_, c)| match &c.op {
                Op::Literal(LiteralOp::Const(l)) => l.splat_value() == Some(1.0),
                _ => false,
            })
        };
        let (one_i, one) = match member(sub.args[0]) {
            Some((i, bc)) => (
                Some(i),
                matches!(bc.op, Op::Shape(ShapeOp::BroadcastInDim { .. })) && ones(bc.args[0]),
            ),
            None => (None, ones(sub.args[0])),
        };
        let (sq_i, sq) = member(sub.args[1])?;
        let t = match &sq.op {
            Op::Unary(UnaryOp::Square) => sq.args[0],
            Op::Binary(BinaryOp::Mul) if sq.args[0] == sq.args[1] => sq.args[0],
            _ => return None,
        };
        (one && leaf(t)).then_some((g, di, one_i, sq_i, t))
    })?;
    // The group is exactly these members, and stores the product only as the reduction's
    // operand (an elementwise group stores nothing besides its root).
    let mut exact: Vec<usize> = [Some(mi), Some(di), one_i, Some(sq_i)]
        .iter()
        .flatten()
        .map(|i| i.index())
        .chain(sums.map(|_| root))
        .collect();
    exact.sort_unstable();
    let mut have = members.clone();
    have.sort_unstable();
    let stores_only_prod = members
        .iter()
        .all(|&j| fusion.stored[j] == (sums.is_some() && j == mi.index()));
    (exact == have && stores_only_prod).then_some(TanhBack { t, g, prod, sums })
}

/// Lowers a `tanh` layer's backward group (see [`tanh_back`]) as one call of the wide helper
/// that stores the product and adds its rows into the sums.
fn emit_tanh_back(cx: &mut Ctx, tb: &TanhBack) -> Result<()> {
    let ty = cx.graph.ty(tb.prod).clone();
    let name = crate::wide_math::tanh_back_symbol(ty.dtype)
        .ok_or_else(|| jit_err("a tanh backward group of a non-float"))?;
    let out = cx
        .alloc_result(tb.prod)?
        .ok_or_else(|| jit_err("a fused result without a buffer"))?;
    let (sums, cols) = match tb.sums {
        Some(s) => {
            let b = cx
                .alloc_result(s)?
                .ok_or_else(|| jit_err("a fused result without a buffer"))?;
            crate::stats::STORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (b, cx.graph.ty(s).size())
        }
        None => (cx.iconst(0), ty.size()),
    };
    let (Slot::Mem(pt), Slot::Mem(pg)) = (cx.slot(tb.t)?, cx.slot(tb.g)?) else {
        return Err(jit_err("a fused leaf without a buffer"));
    };
    let rows = cx.iconst((ty.size() / cols.max(1)) as i64);
    let cols = cx.iconst(cols as i64);
    cx.call(
        name,
        &[types::I64; 6],
        &[],
        &[pt, pg, out, sums, rows, cols],
    )?;
    crate::stats::TANH_BACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Lowers the group rooted at instruction position `root`.
pub(crate) fn lower(cx: &mut Ctx, root: usize) -> Result<()> {
    let graph = cx.graph;
    let insts: Vec<&InstData> = graph.insts().map(|(_, d)| d).collect();
    if let Some(tb) = tanh_back(cx, &insts, root) {
        return emit_tanh_back(cx, &tb);
    }
    // The wide tail needs the result in a buffer, and the loop to store nothing else.
    let stores = cx.plan.fusion.members[root]
        .iter()
        .any(|&j| cx.plan.fusion.stored[j]);
    let tail = match cx.alloc_result(insts[root].results[0])? {
        Some(_) if !stores => wide_tail(cx, insts[root]),
        _ => None,
    };
    if tail.is_some() {
        if let Some((x, bias)) = bias_tanh(cx, &insts, root) {
            return emit_bias_tanh(cx, insts[root], x, bias);
        }
    }
    let mut sp = spec(
        graph,
        &insts,
        &cx.plan.fusion,
        root,
        cx.opts.math,
        cx.has_fma,
        tail,
    )?;
    for &v in &sp.stored {
        cx.alloc_result(v)?;
        crate::stats::STORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    sp.fresh = one_row_per_output(&sp);
    if sp.band.is_some() {
        crate::stats::BANDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for red in sp.reds.iter_mut() {
        if red.out != sp.out {
            cx.alloc_result(red.out)?;
        }
        let dtype = graph.ty(red.out).dtype;
        let init = super::reduce::init_value(cx, &red.op, dtype);
        match cx.slot(red.out) {
            // Every element is written by its row, which starts from `init` itself.
            Ok(Slot::Mem(_)) if sp.fresh => {}
            Ok(Slot::Mem(base)) => {
                let m = graph.ty(red.out).size();
                cx.for_range(m, &mut |cx, i| {
                    cx.store_at(base, i, init, dtype);
                    Ok(())
                })?;
            }
            _ => {
                let v = cx.fb.declare_var(clty(dtype));
                cx.fb.def_var(v, init);
                red.acc_var = Some(v);
            }
        }
    }
    let n: usize = sp.dims.iter().product();
    // A reduction splits across threads only along a kept outer dimension (disjoint results,
    // unchanged order).
    let splittable = sp.reds.is_empty() || sp.out_strides[0] != 0;
    // Exported objects run every loop on the calling thread (they have no thread pool).
    let threads = cx.dest == crate::Destination::Process;
    if n >= PAR_MIN && sp.dims[0] >= 2 && splittable && threads {
        parallel(cx, &sp, &insts)?;
    } else if n > 0 {
        let start = cx.iconst(0);
        let end = cx.iconst(sp.dims[0] as i64);
        emit_range(cx, &sp, &insts, start, end)?;
    }
    for red in &sp.reds {
        if let Some(v) = red.acc_var {
            let a = cx.fb.use_var(v);
            cx.slots[red.out.index()] = Some(Slot::Reg(a));
        }
    }
    if let Some(name) = sp.tail {
        let Slot::Mem(base) = cx.slot(sp.out)? else {
            return Err(jit_err("a fused result without a buffer"));
        };
        let len = cx.iconst(n as i64);
        cx.call(name, &[types::I64; 2], &[], &[base, len])?;
        crate::stats::WIDE_TAILS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// Emits the loop nest for indices `start..end` of the outermost coalesced dimension.
fn emit_range(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    start: ir::Value,
    end: ir::Value,
) -> Result<()> {
    let nacc = sp.reads.len() + 1 + sp.stored.len();
    let stride = |k: usize, d: usize| access_stride(sp, k, d);
    let base = |k: usize| sp.reads.get(k).map_or(0, |r| r.base);
    let c = sp.dims.len();
    if by_columns(cx, sp) {
        return emit_columns(cx, sp, insts, start, end);
    }
    if c == 1 {
        let offs: SmallVec<[ir::Value; 8]> = (0..nacc).map(|k| cx.iconst(base(k))).collect();
        return emit_row(cx, sp, insts, &offs, &[], start, end, None);
    }
    // Outer dimension: a dynamic range; middle dimensions: a static nest; inner: a row.
    counted_loop(cx, start, end, 1, &mut |cx, i0| {
        let offs: SmallVec<[ir::Value; 8]> = (0..nacc)
            .map(|k| {
                let s = stride(k, 0);
                if s == 0 {
                    cx.iconst(base(k))
                } else {
                    let t = cx.fb.ins().imul_imm_s(i0, s);
                    cx.fb.ins().iadd_imm_s(t, base(k))
                }
            })
            .collect();
        let mid: SmallVec<[usize; 4]> = sp.dims[1..c - 1].iter().copied().collect();
        let accesses: Vec<super::Access> = (0..nacc)
            .map(|k| super::Access {
                base: offs[k],
                strides: (1..c - 1).map(|d| stride(k, d)).collect(),
            })
            .collect();
        let inner = sp.dims[c - 1] as i64;
        if let Some(b) = &sp.band {
            return emit_banded_row(cx, sp, insts, b, &offs, i0);
        }
        cx.nest(&mid, &accesses, &mut |cx, mid_idx, o| {
            let lo = cx.iconst(0);
            let hi = cx.iconst(inner);
            let mut idx: SmallVec<[ir::Value; 4]> = SmallVec::from_slice(&[i0]);
            idx.extend_from_slice(mid_idx);
            emit_row(cx, sp, insts, o, &idx, lo, hi, None)
        })?;
        Ok(())
    })?;
    Ok(())
}

/// The most rows [`emit_columns`] runs down a block of columns before moving to the next
/// block: the rows' operands then stay in the first-level cache between blocks.
const COLUMN_ROWS: i64 = 64;

/// The most vectors of columns whose sums [`emit_columns`] keeps in registers at once.
const COLUMN_VECTORS: i64 = 4;

/// Whether the reduction group `sp` runs column block by column block (see
/// [`emit_columns`]): a vectorised two-dimensional loop without guards whose reductions sum
/// across the rows into a contiguous row of outputs held in buffers, and whose reads are
/// contiguous along the row or one value for the whole loop (a scalar), none a gather.
fn by_columns(cx: &Ctx, sp: &Spec) -> bool {
    sp.dims.len() == 2
        && sp.vector.is_some()
        && !sp.reds.is_empty()
        && !sp.guarded
        && sp.band.is_none()
        && sp.out_strides[..] == [0, 1]
        && sp
            .reds
            .iter()
            .all(|r| matches!(cx.slot(r.out), Ok(Slot::Mem(_))))
        && sp.reads.iter().all(|r| {
            !r.top || (r.index.is_none() && (r.strides[1] == 1 || r.strides[..] == [0, 0]))
        })
}

/// Emits rows `start..end` of a reduction across rows (see [`by_columns`]) with the loops
/// interchanged: for each block of up to [`COLUMN_ROWS`] rows and each block of up to
/// [`COLUMN_VECTORS`] vectors of columns, the columns' partial results are loaded into
/// registers, combined with every row of the block in order, and stored back once (a last
/// narrower block of single vectors, then single columns, finishes the row). Row by row, the
/// loop loaded, combined and stored every output vector on every row: the bias gradient of a
/// dense layer (a `[200, 32]` column sum, stored with its operand `(1 − t²)·g`) made 16 loads
/// and 16 stores of partial sums per row. Every output element still combines its column's
/// values in row order, starting from the same initial value, and every stored member gets
/// the same value, so results do not change.
fn emit_columns(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    start: ir::Value,
    end: ir::Value,
) -> Result<()> {
    let vty = sp
        .vector
        .ok_or_else(|| jit_err("a column reduction without vectors"))?;
    let lanes = vty.lane_count() as i64;
    let nr = sp.reads.len();
    let nacc = nr + 1 + sp.stored.len();
    let base = |k: usize| sp.reads.get(k).map_or(0, |r| r.base);
    crate::stats::COLUMNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The scalars' splats, one value for the whole loop.
    let offs0: SmallVec<[ir::Value; 8]> = (0..nacc).map(|k| cx.iconst(base(k))).collect();
    let inv = row_invariants(cx, sp, &offs0, vty, None)?;
    let mut outs: SmallVec<[(ir::Value, DType); 2]> = SmallVec::new();
    for red in &sp.reds {
        let Slot::Mem(b) = cx.slot(red.out)? else {
            return Err(jit_err("a column reduction without a buffer"));
        };
        outs.push((b, cx.graph.ty(red.out).dtype));
    }
    let cols = cx.iconst(sp.dims[1] as i64);
    let zero = cx.iconst(0);
    // Blocks of rows: `r0..r1`, the last one possibly shorter.
    let row_var = cx.fb.declare_var(types::I64);
    cx.fb.def_var(row_var, start);
    let rows = cx.fb.create_block();
    let done = cx.fb.create_block();
    let any = cx.fb.ins().icmp(IntCC::SignedLessThan, start, end);
    cx.fb.ins().brif(any, rows, &[], done, &[]);
    cx.fb.switch_to_block(rows);
    let r0 = cx.fb.use_var(row_var);
    let r1 = cx.fb.ins().iadd_imm_s(r0, COLUMN_ROWS);
    let r1 = cx.fb.ins().smin(r1, end);
    // One block of `w` vectors (`w = 0`: one column in scalars) starting at column `c0`.
    let block = |cx: &mut Ctx, c0: ir::Value, w: i64| -> Result<()> {
        let (width, ty) = if w == 0 { (1, None) } else { (w, Some(vty)) };
        let at = |cx: &mut Ctx, k: i64| cx.fb.ins().iadd_imm_s(c0, k * lanes);
        // The partial results, from the outputs.
        let mut accs: SmallVec<[Variable; 8]> = SmallVec::new();
        for &(b, dtype) in &outs {
            for k in 0..width {
                let v = cx.fb.declare_var(ty.unwrap_or(clty(dtype)));
                let x = match ty {
                    Some(vty) => {
                        let i = at(cx, k);
                        let addr = row_elem_addr(cx, b, zero, i, dtype);
                        let flags = MemFlagsData::new().with_notrap();
                        cx.fb.ins().load(vty, flags, addr, 0)
                    }
                    None => cx.load_at(b, c0, dtype),
                };
                cx.fb.def_var(v, x);
                accs.push(v);
            }
        }
        // Every access's element offset at row `r0`, advanced by its row stride per row:
        // one variable per distinct pair of row stride and base (operands of one shape
        // share theirs).
        let mut offs_vars: SmallVec<[(Variable, i64, i64); 8]> = SmallVec::new();
        let mut var_of: SmallVec<[usize; 8]> = SmallVec::new();
        for k in 0..nacc {
            let (s, b) = (access_stride(sp, k, 0), base(k));
            let j = match offs_vars.iter().position(|&(_, s2, b2)| (s2, b2) == (s, b)) {
                Some(j) => j,
                None => {
                    let v = cx.fb.declare_var(types::I64);
                    let o = cx.fb.ins().imul_imm_s(r0, s);
                    let o = cx.fb.ins().iadd_imm_s(o, b);
                    cx.fb.def_var(v, o);
                    offs_vars.push((v, s, b));
                    offs_vars.len() - 1
                }
            };
            var_of.push(j);
        }
        counted_loop(cx, r0, r1, 1, &mut |cx, r| {
            let now: SmallVec<[ir::Value; 8]> = offs_vars
                .iter()
                .map(|&(v, _, _)| cx.fb.use_var(v))
                .collect();
            let offs: SmallVec<[ir::Value; 8]> = var_of.iter().map(|&j| now[j]).collect();
            for k in 0..width {
                let (ys, i) = match ty {
                    Some(vty) => {
                        let i = at(cx, k);
                        let vals = vector_reads(cx, sp, &offs, &inv, i, vty, None)?;
                        (eval(cx, sp, insts, &vals, Some(vty), None, None)?, i)
                    }
                    None => {
                        let vals = scalar_reads(cx, sp, &offs, &[r], c0, None, false)?;
                        (eval(cx, sp, insts, &vals, None, None, None)?, c0)
                    }
                };
                for (s, &v) in sp.stored.iter().enumerate() {
                    let y = ys[sp.reds.len() + s];
                    let acc = nr + 1 + s;
                    if ty.is_some() {
                        let Slot::Mem(b) = cx.slot(v)? else {
                            return Err(jit_err("a fused result without a buffer"));
                        };
                        let dtype = cx.graph.ty(v).dtype;
                        let addr = row_elem_addr(cx, b, offs[acc], i, dtype);
                        cx.fb
                            .ins()
                            .store(MemFlagsData::new().with_notrap(), y, addr, 0);
                    } else {
                        let o = cx.fb.ins().iadd(offs[acc], i);
                        cx.store_out(v, o, y)?;
                    }
                }
                for (j, red) in sp.reds.iter().enumerate() {
                    let fl = outs[j].1.is_float();
                    let v = accs[j * width as usize + k as usize];
                    let a = cx.fb.use_var(v);
                    let n = super::reduce::combine(cx, &red.op, fl, a, ys[j]);
                    cx.fb.def_var(v, n);
                }
            }
            for (&(v, s, _), &o) in offs_vars.iter().zip(&now) {
                if s != 0 {
                    let next = cx.fb.ins().iadd_imm_s(o, s);
                    cx.fb.def_var(v, next);
                }
            }
            Ok(())
        })?;
        for (j, &(b, dtype)) in outs.iter().enumerate() {
            for k in 0..width {
                let a = cx.fb.use_var(accs[j * width as usize + k as usize]);
                match ty {
                    Some(_) => {
                        let i = at(cx, k);
                        let addr = row_elem_addr(cx, b, zero, i, dtype);
                        cx.fb
                            .ins()
                            .store(MemFlagsData::new().with_notrap(), a, addr, 0);
                    }
                    None => cx.store_at(b, c0, a, dtype),
                }
            }
        }
        Ok(())
    };
    let from = row_loop(cx, zero, cols, COLUMN_VECTORS * lanes, &mut |cx, c0| {
        block(cx, c0, COLUMN_VECTORS)
    })?;
    let from = row_loop(cx, from, cols, lanes, &mut |cx, c0| block(cx, c0, 1))?;
    row_loop(cx, from, cols, 1, &mut |cx, c0| block(cx, c0, 0))?;
    cx.fb.def_var(row_var, r1);
    let more = cx.fb.ins().icmp(IntCC::SignedLessThan, r1, end);
    cx.fb.ins().brif(more, rows, &[], done, &[]);
    cx.fb.switch_to_block(done);
    Ok(())
}

/// Whether every output element of the reduction group `sp` is combined by exactly one row
/// of its loop, emitted in one piece: the reduced dimension is the inner one alone (every
/// outer dimension of more than one index moves the output), the loop runs (no dimension is
/// empty), and no guard cuts rows into segments (each segment would restart the row).
fn one_row_per_output(sp: &Spec) -> bool {
    let inner = sp.dims.len() - 1;
    !sp.reds.is_empty()
        && !sp.guarded
        && sp.out_strides[inner] == 0
        && sp.dims.iter().all(|&n| n > 0)
        && (0..inner).all(|d| sp.out_strides[d] != 0 || sp.dims[d] == 1)
}

/// The value of `v` when it is an integer constant.
fn known(cx: &Ctx, v: ir::Value) -> Option<i64> {
    let dfg = &cx.fb.func.dfg;
    match dfg.insts[dfg.value_def(v).inst()?] {
        ir::InstructionData::UnaryImm {
            opcode: ir::Opcode::Iconst,
            imm,
        } => Some(imm.bits()),
        _ => None,
    }
}

/// The most iterations a loop with constant bounds is written out for (see [`row_loop`]).
const SHORT_TRIPS: i64 = 4;

/// [`counted_loop`] over the inner indices of a row, written out without a counter when the
/// bounds are constants and it runs at most [`SHORT_TRIPS`] times: rows of 2 to 8 elements
/// (a `[200, 2]` operand reduced along its rows) otherwise pay a guard, a counter and two
/// branches per vector loop and again per scalar tail. The body sees the same indices in the
/// same order, so results do not change.
fn row_loop(
    cx: &mut Ctx,
    lo: ir::Value,
    hi: ir::Value,
    step: i64,
    body: &mut dyn FnMut(&mut Ctx, ir::Value) -> Result<()>,
) -> Result<ir::Value> {
    if let (Some(a), Some(b)) = (known(cx, lo), known(cx, hi)) {
        let trips = b.checked_sub(a).map_or(0, |d| d.max(0) / step);
        if trips <= SHORT_TRIPS {
            for t in 0..trips {
                let i = cx.iconst(a + t * step);
                body(cx, i)?;
            }
            return Ok(cx.iconst(a + trips * step));
        }
    }
    counted_loop(cx, lo, hi, step, body)
}

/// A loop `for (i = lo; i + step <= hi; i += step)`; returns the index at exit. The test is
/// rotated to the bottom (one conditional branch per iteration), with a guard before entry.
fn counted_loop(
    cx: &mut Ctx,
    lo: ir::Value,
    hi: ir::Value,
    step: i64,
    body: &mut dyn FnMut(&mut Ctx, ir::Value) -> Result<()>,
) -> Result<ir::Value> {
    let var = cx.fb.declare_var(types::I64);
    cx.fb.def_var(var, lo);
    let looping = cx.fb.create_block();
    let exit = cx.fb.create_block();
    let first = cx.fb.ins().iadd_imm_s(lo, step);
    let enter = cx.fb.ins().icmp(IntCC::SignedLessThanOrEqual, first, hi);
    cx.fb.ins().brif(enter, looping, &[], exit, &[]);
    cx.fb.switch_to_block(looping);
    let i = cx.fb.use_var(var);
    body(cx, i)?;
    let i2 = cx.fb.use_var(var);
    let next = cx.fb.ins().iadd_imm_s(i2, step);
    cx.fb.def_var(var, next);
    let after = cx.fb.ins().iadd_imm_s(next, step);
    let more = cx.fb.ins().icmp(IntCC::SignedLessThanOrEqual, after, hi);
    cx.fb.ins().brif(more, looping, &[], exit, &[]);
    cx.fb.switch_to_block(exit);
    Ok(cx.fb.use_var(var))
}

/// A read that is invariant along the row: the type of its splatted value and that value, as
/// loaded back from the stack slot it was parked in.
type Inv = (ir::Type, ir::Value);

/// Whether read `k` is loaded when evaluating `part` (every read for the whole group).
fn wanted(part: Option<&Part>, k: usize) -> bool {
    part.is_none_or(|p| p.reads[k])
}

/// The reads that are invariant along the row (stride 0), splatted once per row, and the
/// positions [`OneHot`] reads compare their indices with (only those `part` loads).
///
/// Each splat is stored to a stack slot and loaded back at once, before the loop: Cranelift
/// would otherwise re-place the pure splat (and its widening) inside the loop body, while a
/// load stays where it is, so the loop finds the value in a register (or, where registers run
/// short, reloads it from the spill slot). Reads splatting the same value share one (see
/// [`computed_alike`]): the one-hot reads of the sparse derivatives' seeds at `i − 1`, `i` and
/// `i + 1` all compare with one position, and a scalar constant broadcast twice is one value.
/// Before, every read had its own slot and reloaded it in every iteration: the Rosenbrock
/// Hessian's main loop made eleven such loads per two lanes, four of them of one position.
fn row_invariants(
    cx: &mut Ctx,
    sp: &Spec,
    offs: &[ir::Value],
    vty: ir::Type,
    part: Option<&Part>,
) -> Result<SmallVec<[Option<Inv>; 8]>> {
    let inner = sp.dims.len() - 1;
    let mut inv: SmallVec<[Option<Inv>; 8]> = SmallVec::new();
    for (k, r) in sp.reads.iter().enumerate() {
        let hot = one_hot(cx, sp, k, lane_dtype(vty)).filter(|_| wanted(part, k) && r.top);
        // A read splatting what an earlier one splats (the same leaf at an offset computed
        // alike, as one-hot or not) shares its slot: one load per distinct value.
        let twin = (0..k).find(|&j| {
            inv[j].is_some()
                && sp.reads[j].leaf == r.leaf
                && one_hot(cx, sp, j, lane_dtype(vty)).map(|h| (h.k, h.columns))
                    == hot.map(|h| (h.k, h.columns))
                && computed_alike(&cx.fb.func.dfg, offs[j], offs[k], ALIKE_DEPTH)
        });
        let splatted = (invariant(r, inner) && wanted(part, k) && r.top) || hot.is_some();
        if let Some(j) = twin.filter(|_| splatted) {
            inv.push(inv[j]);
            continue;
        }
        inv.push(if splatted {
            let v = match hot {
                // A one-hot read keeps the position its indices are compared with.
                Some(h) => {
                    let at = if h.columns {
                        cx.fb.ins().udiv_imm_s(offs[k], h.k as i64)
                    } else {
                        offs[k]
                    };
                    let at = match int_lanes(vty) {
                        types::I64X2 => at,
                        _ => cx.fb.ins().ireduce(types::I32, at),
                    };
                    cx.fb.ins().splat(int_lanes(vty), at)
                }
                None => {
                    let x = cx.load(r.leaf, offs[k])?;
                    let dtype = cx.graph.ty(r.leaf).dtype;
                    splat_scalar(cx, x, dtype, vty)
                }
            };
            let ty = cx.fb.func.dfg.value_type(v);
            let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                16,
                4,
            ));
            let addr = cx.fb.ins().stack_addr(types::I64, slot, 0);
            cx.fb.ins().store(MemFlagsData::trusted(), v, addr, 0);
            let back = cx.fb.ins().load(ty, MemFlagsData::trusted(), addr, 0);
            Some((ty, back))
        } else {
            None
        });
    }
    Ok(inv)
}

/// How many instructions deep [`computed_alike`] compares two row offsets.
const ALIKE_DEPTH: u32 = 8;

/// Whether SSA values `a` and `b` hold the same value because they are computed alike: the
/// same value, or results of one opcode with the same immediates and type on operands
/// computed alike, looking at most `depth` instructions deep. Only instructions whose operands
/// are all inline (unary, binary, ternary, comparisons, constants) are compared, never loads,
/// so the result does not depend on memory. The row offsets of a loop's reads are such
/// expressions of the outer loop indices, often built twice for two reads of one place.
fn computed_alike(dfg: &ir::DataFlowGraph, a: ir::Value, b: ir::Value, depth: u32) -> bool {
    use ir::InstructionData as D;
    if a == b {
        return true;
    }
    if depth == 0 || dfg.value_type(a) != dfg.value_type(b) {
        return false;
    }
    let (ir::ValueDef::Result(ia, 0), ir::ValueDef::Result(ib, 0)) =
        (dfg.value_def(a), dfg.value_def(b))
    else {
        return false;
    };
    let (da, db) = (&dfg.insts[ia], &dfg.insts[ib]);
    let inline = |d: &D| {
        matches!(
            d,
            D::Unary { .. }
                | D::UnaryImm { .. }
                | D::Binary { .. }
                | D::BinaryImm8 { .. }
                | D::Ternary { .. }
                | D::IntCompare { .. }
                | D::UnaryIeee32 { .. }
                | D::UnaryIeee64 { .. }
        )
    };
    if !inline(da) || da.opcode() != db.opcode() || da.opcode().can_load() {
        return false;
    }
    let pool = &dfg.value_lists;
    let (xa, xb) = (da.arguments(pool), db.arguments(pool));
    if xa.len() != xb.len()
        || !xa
            .iter()
            .zip(xb)
            .all(|(&x, &y)| computed_alike(dfg, x, y, depth - 1))
    {
        return false;
    }
    // The same instruction with `b`'s operands: equal when the immediates are. Inline
    // operands never touch the pool, so an empty one serves.
    let mut with_b = *da;
    let mut scratch = ir::ValueListPool::new();
    with_b.arguments_mut(&mut scratch).copy_from_slice(xb);
    with_b.eq(db, pool)
}

/// Whether read `r` has one value along a row: stride 0 along the inner dimension, and no
/// index (a gather's index may vary along the row even where its operand's offset does
/// not).
fn invariant(r: &Read, inner: usize) -> bool {
    r.strides[inner] == 0 && r.index.is_none()
}

/// A gathered read of the `k × k` identity (see [`remap::identity_order`]) at a place fixed
/// along the row, whose indices are read contiguously along it: the seeds of the sparse
/// derivatives. Its lanes are one-hot, one where the index names the position the row reads
/// (the identity's row when the gather picks columns, its column when it picks rows) and
/// `+0.0` elsewhere, so a vector loop compares the indices, loaded as one vector, with that
/// position (splatted once per row) instead of loading each lane at its own index.
#[derive(Clone, Copy)]
struct OneHot {
    /// The identity's order.
    k: usize,
    /// Whether the gather picks columns: the read's row offset is then `k` times the
    /// position, otherwise the position itself.
    columns: bool,
    /// The read of the indices.
    index: usize,
}

/// Read `k` as a [`OneHot`] in a loop producing `dtype`, if it is one.
fn one_hot(cx: &Ctx, sp: &Spec, k: usize, dtype: DType) -> Option<OneHot> {
    let r = &sp.reads[k];
    let inner = sp.dims.len() - 1;
    let (ki, stride) = r.index?;
    let n = remap::identity_order(cx.graph, r.leaf)?;
    let ix = &sp.reads[ki];
    let columns = match stride {
        1 => true,
        s if s == n as i64 => false,
        _ => return None,
    };
    let ok = r.strides[inner] == 0
        && cx.graph.ty(r.leaf).dtype == dtype
        && ix.strides[inner] == 1
        && ix.index.is_none()
        && cx.graph.ty(ix.leaf).dtype == DType::I32
        && matches!(cx.slot(ix.leaf), Ok(Slot::Mem(_)));
    ok.then_some(OneHot {
        k: n,
        columns,
        index: ki,
    })
}

/// The float dtype of the lanes of `vty`.
fn lane_dtype(vty: ir::Type) -> DType {
    if vty == types::F64X2 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Whether read `r` of a loop producing `dtype` has a vector form: a read only other reads
/// fall back on needs none; otherwise not a bool, and contiguous or stride 0 along the inner
/// dimension, or a gather by constant indices of `dtype` elements (loaded lane by lane, see
/// [`vector_reads`]).
fn vector_read(graph: &Graph, r: &Read, inner: usize, dtype: DType) -> bool {
    let leaf = graph.ty(r.leaf).dtype;
    !r.top
        || match r.index {
            None => matches!(r.strides[inner], 0 | 1) && leaf != DType::Bool,
            Some(_) => leaf == dtype && dtype.is_float(),
        }
}

/// The read values at inner index `i` as vectors of type `vty` (`inv` from
/// [`row_invariants`]); reads `part` does not load are left as a placeholder. A gather's read
/// loads each lane at its own index and assembles the vector.
fn vector_reads(
    cx: &mut Ctx,
    sp: &Spec,
    offs: &[ir::Value],
    inv: &[Option<Inv>],
    i: ir::Value,
    vty: ir::Type,
    part: Option<&Part>,
) -> Result<SmallVec<[ir::Value; 8]>> {
    let mut vals: SmallVec<[ir::Value; 8]> = SmallVec::new();
    for (k, r) in sp.reads.iter().enumerate() {
        if !wanted(part, k) || !r.top {
            vals.push(i);
            continue;
        }
        vals.push(match inv[k] {
            // The row's position, loaded before the loop (see [`row_invariants`]).
            Some((ty, at)) if r.index.is_some() => {
                let Some(h) = one_hot(cx, sp, k, lane_dtype(vty)) else {
                    return Err(jit_err("a row-invariant gathered read that is not one-hot"));
                };
                let Slot::Mem(base) = cx.slot(sp.reads[h.index].leaf)? else {
                    return Err(jit_err("a contiguous read of a register value"));
                };
                let addr = row_elem_addr(cx, base, offs[h.index], i, DType::I32);
                let flags = MemFlagsData::new().with_notrap();
                let (ix, one) = match ty {
                    types::I64X2 => (
                        cx.fb.ins().sload32x2(flags, addr, 0),
                        cx.fb.ins().iconst(types::I64, 1f64.to_bits() as i64),
                    ),
                    _ => (
                        cx.fb.ins().load(ty, flags, addr, 0),
                        cx.fb.ins().iconst(types::I32, 1f32.to_bits() as i64),
                    ),
                };
                let hit = cx.fb.ins().icmp(IntCC::Equal, ix, at);
                let one = cx.fb.ins().splat(ty, one);
                let bits = cx.fb.ins().band(hit, one);
                let le = MemFlagsData::new().with_endianness(ir::Endianness::Little);
                cx.fb.ins().bitcast(vty, le, bits)
            }
            Some((_, splat)) => splat,
            None if r.index.is_some() => {
                let inner = sp.dims.len() - 1;
                let x = remap::load_plain(cx, &sp.reads, inner, offs, i, k)?;
                let mut v = cx.fb.ins().scalar_to_vector(vty, x);
                for l in 1..vty.lane_count() {
                    let il = cx.fb.ins().iadd_imm_s(i, l as i64);
                    let x = remap::load_plain(cx, &sp.reads, inner, offs, il, k)?;
                    v = cx.fb.ins().insertlane(v, x, l as u8);
                }
                v
            }
            None => {
                let Slot::Mem(base) = cx.slot(r.leaf)? else {
                    return Err(jit_err("a contiguous read of a register value"));
                };
                let dtype = cx.graph.ty(r.leaf).dtype;
                let addr = row_elem_addr(cx, base, offs[k], i, dtype);
                let flags = MemFlagsData::new().with_notrap();
                match (dtype, int_lanes(vty)) {
                    (DType::I32, types::I64X2) => cx.fb.ins().sload32x2(flags, addr, 0),
                    (DType::I32, ity) => cx.fb.ins().load(ity, flags, addr, 0),
                    _ => cx.fb.ins().load(vty, flags, addr, 0),
                }
            }
        });
    }
    Ok(vals)
}

/// The address of element `row + i` of a buffer of `dtype` at `base`, where `row` is fixed
/// along the row and `i` is the inner index: `(base + row·size) + i·size`, whose first part
/// Cranelift computes once per row, outside the inner loop, so each access in the loop is
/// one addressing mode (base register plus scaled index) rather than an add and an address.
fn row_elem_addr(
    cx: &mut Ctx,
    base: ir::Value,
    row: ir::Value,
    i: ir::Value,
    dtype: DType,
) -> ir::Value {
    let size = dtype.size_bytes() as i64;
    // Constant parts of the row offset `x + c` (reads of one buffer at neighbouring places,
    // such as `i ± 1` or the next row) and of the inner index `y + d` (a later vector of a
    // repeated body) become the access's displacement: reads of one buffer whose row offsets
    // differ by a constant share one row address (one register across the loop) rather than
    // each holding its own, and a later vector is a displacement from the first's index.
    let (row, c) = plus_constant(cx, row);
    let (i, d) = plus_constant(cx, i);
    let at_row = cx.elem_addr(base, row, dtype);
    let at_row = match c.wrapping_add(d).wrapping_mul(size) {
        0 => at_row,
        disp => cx.fb.ins().iadd_imm_s(at_row, disp),
    };
    let bytes = cx.fb.ins().imul_imm_s(i, size);
    cx.fb.ins().iadd(at_row, bytes)
}

/// `(x, c)` with `v = x + c` (wrapping) and `c` the sum of the integer constants added in
/// `v`'s tree of additions (looking [`ALIKE_DEPTH`] additions deep), else `(v, 0)`. Where
/// constants sit inside the tree, `x` is a new sum of the other terms, which Cranelift's value
/// numbering shares between reads that add different constants to the same terms.
fn plus_constant(cx: &mut Ctx, v: ir::Value) -> (ir::Value, i64) {
    split_sum(cx, v, ALIKE_DEPTH)
}

/// [`plus_constant`] looking at most `depth` additions deep.
fn split_sum(cx: &mut Ctx, v: ir::Value, depth: u32) -> (ir::Value, i64) {
    if depth == 0 {
        return (v, 0);
    }
    let dfg = &cx.fb.func.dfg;
    let Some(inst) = dfg.value_def(v).inst() else {
        return (v, 0);
    };
    let ir::InstructionData::Binary {
        opcode: ir::Opcode::Iadd,
        args: [x, y],
    } = dfg.insts[inst]
    else {
        return (v, 0);
    };
    match (known(cx, x), known(cx, y)) {
        (_, Some(c)) => {
            let (x, cx_) = split_sum(cx, x, depth - 1);
            (x, cx_.wrapping_add(c))
        }
        (Some(c), None) => {
            let (y, cy) = split_sum(cx, y, depth - 1);
            (y, cy.wrapping_add(c))
        }
        (None, None) => {
            let (x2, a) = split_sum(cx, x, depth - 1);
            let (y2, b) = split_sum(cx, y, depth - 1);
            match a.wrapping_add(b) {
                0 => (v, 0),
                c => (cx.fb.ins().iadd(x2, y2), c),
            }
        }
    }
}

/// The read values at inner index `i` as scalars; reads `part` does not load are left as a
/// placeholder.
fn scalar_reads(
    cx: &mut Ctx,
    sp: &Spec,
    offs: &[ir::Value],
    idx: &[ir::Value],
    i: ir::Value,
    part: Option<&Part>,
    guarded: bool,
) -> Result<SmallVec<[ir::Value; 8]>> {
    let inner = sp.dims.len() - 1;
    let mut vals: SmallVec<[ir::Value; 8]> = SmallVec::new();
    for (k, r) in sp.reads.iter().enumerate() {
        if !wanted(part, k) || !r.top {
            vals.push(i);
            continue;
        }
        if guarded {
            vals.push(remap::guarded_load(cx, &sp.reads, inner, offs, idx, i, k)?);
        } else {
            vals.push(remap::load_plain(cx, &sp.reads, inner, offs, i, k)?);
        }
    }
    Ok(vals)
}

/// `base + i·stride` (element offsets).
fn offset(cx: &mut Ctx, base: ir::Value, i: ir::Value, stride: i64) -> ir::Value {
    match stride {
        0 => base,
        1 => cx.fb.ins().iadd(base, i),
        _ => {
            let t = cx.fb.ins().imul_imm_s(i, stride);
            cx.fb.ins().iadd(base, t)
        }
    }
}

/// The vectors a short loop body computes per iteration (see [`short_body`]).
const UNROLL: i64 = 4;

/// Whether the group's elementwise body is short enough to repeat [`UNROLL`] times per loop
/// iteration, in a group of [`UNROLL_MIN`] to [`PAR_MIN`] elements: at most [`SHORT_NODES`]
/// computations, none a fast transcendental or `pow` (whose
/// inline polynomials would multiply the code). A short body's loop is otherwise dominated by
/// its counter, compare and branch; repeating it computes the same elements with the same
/// operations, so results do not change.
fn short_body(sp: &Spec, insts: &[&InstData]) -> bool {
    (UNROLL_MIN..PAR_MIN).contains(&sp.dims.iter().product::<usize>())
        && sp.nodes.len() <= SHORT_NODES
        && no_inline_polynomials(sp, insts)
}

/// Whether no computation of the group is a fast transcendental or `pow`, whose inline
/// polynomials would multiply the code when the body is repeated.
fn no_inline_polynomials(sp: &Spec, insts: &[&InstData]) -> bool {
    sp.nodes.iter().all(|n| match n {
        Node::Op { member, .. } => {
            let op = &insts[*member].op;
            vectorizable(op, false) || !vectorizable(op, true)
        }
        Node::Select { .. } => true,
    })
}

/// The vectors an elementwise group's vector loop computes per iteration: [`UNROLL`] for a
/// short body (see [`short_body`]); two for a group of at least [`PAR_MIN`] elements (a
/// kernel on the pool) whose body has at most [`PAIR_NODES`] computations and no inline
/// polynomial, such as the sparse Hessian's products with its seeds, where the counter,
/// compare and branch (and any reload the register allocator places at the loop's head) are
/// then paid once per two vectors; one otherwise. Every element gets the same operations.
fn unroll(sp: &Spec, insts: &[&InstData]) -> i64 {
    let n: usize = sp.dims.iter().product();
    if short_body(sp, insts) {
        UNROLL
    } else if n >= PAR_MIN && sp.nodes.len() <= PAIR_NODES && no_inline_polynomials(sp, insts) {
        2
    } else {
        1
    }
}

/// The most computations of a pool kernel's body repeated twice per iteration (see
/// [`unroll`]).
const PAIR_NODES: usize = 32;

/// The most computations of a body repeated by [`short_body`].
const SHORT_NODES: usize = 12;

/// The fewest elements of a group whose short body is repeated: smaller loops run too few
/// iterations to repay the longer code, whose compile time a first call pays. Groups of
/// [`PAR_MIN`] elements or more are not repeated either: they run on the pool, where memory
/// traffic rather than the loop's counter bounds them.
const UNROLL_MIN: usize = 4096;

/// Emits one row: inner indices `lo..hi`, with `offs` the element offset of every access
/// (reads, then the output) at inner index 0 and `idx` the outer loop indices. With `part`,
/// the row stores that sub-expression instead of the group's value.
///
/// With guarded reads the row is cut into segments (see [`emit_segments`]); when it would
/// take too many, in three: the part where every guard holds (see [`remap::middle`]) runs the
/// plain (vector) loop, the parts before and after it check the guards element by element.
/// The parts are consecutive, so a reduction combines in the same order.
#[allow(clippy::too_many_arguments)]
fn emit_row(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    offs: &[ir::Value],
    idx: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
    part: Option<&Part>,
) -> Result<()> {
    if !sp.guarded {
        return emit_span(cx, sp, insts, offs, idx, lo, hi, part, false);
    }
    let inner = sp.dims.len() - 1;
    if let Some(cuts) = remap::segments(&sp.reads, &sp.nodes, inner, sp.dims[inner] as i64) {
        return emit_segments(cx, sp, insts, offs, idx, lo, hi, part, &cuts);
    }
    let (m_lo, m_hi) = remap::middle(cx, &sp.reads, &sp.nodes, inner, idx, lo, hi);
    emit_span(cx, sp, insts, offs, idx, lo, m_lo, part, true)?;
    // The plain loop, and the row invariants it loads, only run when the middle is not empty.
    let nonempty = cx.fb.ins().icmp(IntCC::SignedLessThan, m_lo, m_hi);
    let body = cx.fb.create_block();
    let after = cx.fb.create_block();
    cx.fb.ins().brif(nonempty, body, &[], after, &[]);
    cx.fb.switch_to_block(body);
    emit_span(cx, sp, insts, offs, idx, m_lo, m_hi, part, false)?;
    cx.fb.ins().jump(after, &[]);
    cx.fb.switch_to_block(after);
    emit_span(cx, sp, insts, offs, idx, m_hi, hi, part, true)
}

/// Emits the row `lo..hi` segment by segment (`cuts` from [`remap::segments`]): over a
/// segment every guard on the inner dimension is decided, so each read is one read of its
/// fallback chain, or, when guards on outer dimensions choose, one of several reads of the
/// same buffer with the same inner stride whose offset is selected once per row; the
/// segment then runs the plain (vector) loop. A segment where some read or select cannot be
/// resolved this way checks the guards element by element. The segments are consecutive, so a reduction
/// combines in the same order.
#[allow(clippy::too_many_arguments)]
fn emit_segments(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    offs: &[ir::Value],
    idx: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
    part: Option<&Part>,
    cuts: &[i64],
) -> Result<()> {
    let inner = sp.dims.len() - 1;
    for w in cuts.windows(2) {
        let (a, b) = (cx.iconst(w[0]), cx.iconst(w[1]));
        let s_lo = cx.fb.ins().smax(lo, a);
        let s_lo = cx.fb.ins().smin(s_lo, hi);
        let s_hi = cx.fb.ins().smin(hi, b);
        let s_hi = cx.fb.ins().smax(s_hi, s_lo);
        let nonempty = cx.fb.ins().icmp(IntCC::SignedLessThan, s_lo, s_hi);
        let body = cx.fb.create_block();
        let after = cx.fb.create_block();
        cx.fb.ins().brif(nonempty, body, &[], after, &[]);
        cx.fb.switch_to_block(body);
        match segment_spec(cx, sp, offs, idx, inner, (w[0], w[1])) {
            Some((seg, seg_offs)) => {
                emit_span(cx, &seg, insts, &seg_offs, idx, s_lo, s_hi, part, false)?
            }
            None => emit_span(cx, sp, insts, offs, idx, s_lo, s_hi, part, true)?,
        }
        cx.fb.ins().jump(after, &[]);
        cx.fb.switch_to_block(after);
    }
    Ok(())
}

/// The group as it reads over the inner indices `seg` of a row (see [`emit_segments`]):
/// every top read replaced by the read it resolves to, without guards, with its offset for
/// the row (selected by the row's outer indices where guards on outer dimensions choose),
/// and every select decided. `None` when a read or a select cannot be resolved so.
fn segment_spec(
    cx: &mut Ctx,
    sp: &Spec,
    offs: &[ir::Value],
    idx: &[ir::Value],
    inner: usize,
    seg: (i64, i64),
) -> Option<(Spec, SmallVec<[ir::Value; 8]>)> {
    let mut nodes = sp.nodes.clone();
    for n in nodes.iter_mut() {
        if let Node::Select {
            guards,
            then,
            other,
        } = n
        {
            match remap::select_truth(guards, inner, seg)? {
                true => *other = *then,
                false => *then = *other,
            }
            guards.clear();
        }
    }
    // With the selects decided, a pad's operand or its fallback may be needed no longer: such
    // reads are neither resolved nor loaded (a band's parts keep every read).
    let used = match sp.band {
        Some(_) => vec![true; sp.reads.len()],
        None => used_reads(&nodes, &sp.outs, sp.reads.len()),
    };
    // Resolve every read before emitting any code for the row's offsets.
    let rows = remap::all_rows(&sp.dims);
    let mut chosen: Vec<Option<remap::Resolved>> = Vec::with_capacity(sp.reads.len());
    for (k, r) in sp.reads.iter().enumerate() {
        if !r.top || !used[k] {
            chosen.push(None);
            continue;
        }
        let res = remap::resolve(&sp.reads, k, 0, inner, seg, &rows, 0)?;
        let mut leaves = Vec::new();
        if !resolved_reads(&res, &mut leaves) {
            return None;
        }
        let first = &sp.reads[leaves[0]];
        let alike = leaves.iter().all(|&e| {
            let x = &sp.reads[e];
            x.leaf == first.leaf && x.strides[inner] == first.strides[inner]
        });
        let plain = leaves.iter().all(|&e| sp.reads[e].index.is_none());
        if leaves.len() > 1 && !(alike && (plain || alike_gathers(&sp.reads, &leaves, inner))) {
            return None;
        }
        chosen.push(Some(res));
    }
    let mut reads = sp.reads.clone();
    for (r, &u) in reads.iter_mut().zip(&used) {
        r.top &= u;
    }
    let mut seg_offs: SmallVec<[ir::Value; 8]> = SmallVec::from_slice(offs);
    for (k, res) in chosen.iter().enumerate() {
        let Some(res) = res else { continue };
        let mut leaves = Vec::new();
        resolved_reads(res, &mut leaves);
        let mut r = sp.reads[leaves[0]].clone();
        r.guards.clear();
        r.top = true;
        if let (true, Some((_, stride))) = (leaves.len() > 1, r.index) {
            // Gathers whose row chooses between them: the row picks the offset of their
            // indices too, as a read of its own.
            let at = index_resolution(res, &sp.reads)?;
            let mut ix = sp.reads[reads_of_index(&sp.reads, leaves[0])?].clone();
            ix.guards.clear();
            ix.top = false;
            reads.push(ix);
            // The offsets end with the output's, after every read's.
            let o = row_offset(cx, &at, offs, idx);
            seg_offs.insert(reads.len() - 1, o);
            r.index = Some((reads.len() - 1, stride));
        }
        reads[k] = r;
        seg_offs[k] = row_offset(cx, res, offs, idx);
    }
    let dtype = cx.graph.ty(sp.out).dtype;
    let vector = sp
        .vector
        .filter(|_| reads.iter().all(|r| vector_read(cx.graph, r, inner, dtype)));
    Some((
        Spec {
            reads,
            nodes,
            vector,
            guarded: false,
            ..sp.clone()
        },
        seg_offs,
    ))
}

/// Which reads the values `outs` need through `nodes` (operands before their users): a read
/// that only feeds nodes no output needs is not needed. [`eval`] skips such nodes.
fn used_reads(nodes: &[Node], outs: &[Src], nreads: usize) -> Vec<bool> {
    let mut live = vec![false; nodes.len()];
    let mut used = vec![false; nreads];
    let mut mark = |s: Src, live: &mut Vec<bool>| match s {
        Src::Node(j) => live[j] = true,
        Src::Read(k) => used[k] = true,
    };
    for &s in outs {
        mark(s, &mut live);
    }
    for n in (0..nodes.len()).rev() {
        if !live[n] {
            continue;
        }
        match &nodes[n] {
            Node::Op { args, .. } => args.iter().for_each(|&a| mark(a, &mut live)),
            Node::Select { then, other, .. } => {
                mark(*then, &mut live);
                mark(*other, &mut live);
            }
        }
    }
    used
}

/// Whether the reads `leaves` (which one row chooses between) are gathers with one axis
/// stride whose indices are plain reads of one buffer with one inner stride: the row then
/// chooses the offsets of the indices as it chooses those of the gathered values.
fn alike_gathers(reads: &[Read], leaves: &[usize], inner: usize) -> bool {
    let index = |e: usize| reads[e].index;
    let Some((k0, stride)) = index(leaves[0]) else {
        return false;
    };
    let first = &reads[k0];
    leaves.iter().all(|&e| match index(e) {
        Some((k, s)) => {
            let x = &reads[k];
            s == stride
                && x.index.is_none()
                && x.leaf == first.leaf
                && x.strides[inner] == first.strides[inner]
        }
        None => false,
    })
}

/// The read of the indices of gather read `k`.
fn reads_of_index(reads: &[Read], k: usize) -> Option<usize> {
    reads[k].index.map(|(i, _)| i)
}

/// `res` with every gather read replaced by the read of its indices; `None` when a read it
/// takes is no gather.
fn index_resolution(res: &remap::Resolved, reads: &[Read]) -> Option<remap::Resolved> {
    use remap::Resolved;
    Some(match res {
        Resolved::Read(k) => Resolved::Read(reads_of_index(reads, *k)?),
        Resolved::Zero => Resolved::Zero,
        Resolved::Cond(g, a, b) => Resolved::Cond(
            *g,
            Box::new(index_resolution(a, reads)?),
            Box::new(index_resolution(b, reads)?),
        ),
    })
}

/// Collects the reads a resolution may take into `out`; false when it may yield zero.
fn resolved_reads(res: &remap::Resolved, out: &mut Vec<usize>) -> bool {
    match res {
        remap::Resolved::Read(k) => {
            out.push(*k);
            true
        }
        remap::Resolved::Zero => false,
        remap::Resolved::Cond(_, a, b) => resolved_reads(a, out) && resolved_reads(b, out),
    }
}

/// The row's element offset of a resolution (no [`remap::Resolved::Zero`] in it): the
/// offset of the read it takes, chosen by its guards at the row's outer indices.
fn row_offset(
    cx: &mut Ctx,
    res: &remap::Resolved,
    offs: &[ir::Value],
    idx: &[ir::Value],
) -> ir::Value {
    match res {
        remap::Resolved::Read(k) => offs[*k],
        remap::Resolved::Zero => cx.iconst(0),
        remap::Resolved::Cond(g, a, b) => {
            let z = cx.iconst(0);
            let ok = remap::guard_holds(cx, g, idx, z);
            let x = row_offset(cx, a, offs, idx);
            let y = row_offset(cx, b, offs, idx);
            cx.fb.ins().select(ok, x, y)
        }
    }
}

/// Emits inner indices `lo..hi` of a row (see [`emit_row`]); `guarded`: checking every read's
/// guards, element by element.
#[allow(clippy::too_many_arguments)]
fn emit_span(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    offs: &[ir::Value],
    idx: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
    part: Option<&Part>,
    guarded: bool,
) -> Result<()> {
    if !sp.reds.is_empty() {
        return emit_reduce_row(cx, sp, insts, offs, idx, lo, hi, guarded);
    }
    let inner = sp.dims.len() - 1;
    let nr = sp.reads.len();
    let mut from = lo;
    // The results this span writes, with their accesses (a part's value stands for the root
    // alone).
    let targets = if part.is_none() {
        stored_targets(sp)
    } else {
        SmallVec::from_slice(&[(sp.out, nr)])
    };
    let targets = &targets;
    if let Some(vty) = sp.vector.filter(|_| !guarded) {
        let lanes = vty.lane_count() as i64;
        let inv = row_invariants(cx, sp, offs, vty, part)?;
        let dtype = cx.graph.ty(sp.out).dtype;
        // Stores the produced vectors `ys` (the root's, then the stored members', which share
        // the root's dtype and are contiguous along the row) at inner index `i` plus `k`
        // vectors.
        let store = |cx: &mut Ctx, ys: &[ir::Value], i: ir::Value, k: i64| -> Result<()> {
            for (&(v, acc), &y) in targets.iter().zip(ys) {
                let Slot::Mem(base) = cx.slot(v)? else {
                    return Err(jit_err("a fused result without a buffer"));
                };
                let addr = row_elem_addr(cx, base, offs[acc], i, dtype);
                let bytes = (k * lanes * dtype.size_bytes() as i64) as i32;
                cx.fb
                    .ins()
                    .store(MemFlagsData::new().with_notrap(), y, addr, bytes);
            }
            Ok(())
        };
        let invariant =
            (0..nr).all(|k| !wanted(part, k) || !sp.reads[k].top || invariant(&sp.reads[k], inner));
        if invariant {
            // A value constant along the row (a broadcast row, a band's default) is computed
            // once and stored four vectors per iteration.
            let vals = vector_reads(cx, sp, offs, &inv, lo, vty, part)?;
            let ys = eval(cx, sp, insts, &vals, Some(vty), part, None)?;
            from = row_loop(cx, lo, hi, 4 * lanes, &mut |cx, i| {
                (0..4).try_for_each(|k| store(cx, &ys, i, k))
            })?;
            from = row_loop(cx, from, hi, lanes, &mut |cx, i| store(cx, &ys, i, 0))?;
        } else {
            // Bodies worth repeating run `times` vectors per iteration, then one at a time.
            let times = unroll(sp, insts);
            if times > 1 {
                from = row_loop(cx, lo, hi, times * lanes, &mut |cx, i| {
                    for k in 0..times {
                        let ik = cx.fb.ins().iadd_imm_s(i, k * lanes);
                        let vals = vector_reads(cx, sp, offs, &inv, ik, vty, part)?;
                        let ys = eval(cx, sp, insts, &vals, Some(vty), part, None)?;
                        store(cx, &ys, i, k)?;
                    }
                    Ok(())
                })?;
            }
            from = row_loop(cx, from, hi, lanes, &mut |cx, i| {
                let vals = vector_reads(cx, sp, offs, &inv, i, vty, part)?;
                let ys = eval(cx, sp, insts, &vals, Some(vty), part, None)?;
                store(cx, &ys, i, 0)
            })?;
        }
    }
    row_loop(cx, from, hi, 1, &mut |cx, i| {
        let vals = scalar_reads(cx, sp, offs, idx, i, part, guarded)?;
        let ys = eval(
            cx,
            sp,
            insts,
            &vals,
            None,
            part,
            guarded.then_some((idx, i)),
        )?;
        for (&(v, acc), &y) in targets.iter().zip(&ys) {
            let o = offset(cx, offs[acc], i, access_stride(sp, acc, inner));
            cx.store_out(v, o, y)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The results an elementwise group's loop writes, each with the index of its access in the
/// loop's offsets: the root's (after the reads), then the stored members'.
fn stored_targets(sp: &Spec) -> SmallVec<[(Value, usize); 3]> {
    let nr = sp.reads.len();
    std::iter::once((sp.out, nr))
        .chain(sp.stored.iter().enumerate().map(|(s, &v)| (v, nr + 1 + s)))
        .collect()
}

/// The stride along coalesced dimension `d` of access `k` (a read, the output, or a stored
/// member, in the order of the loop's offsets).
fn access_stride(sp: &Spec, k: usize, d: usize) -> i64 {
    let nr = sp.reads.len();
    match k.cmp(&nr) {
        std::cmp::Ordering::Less => sp.reads[k].strides[d],
        std::cmp::Ordering::Equal => sp.out_strides[d],
        std::cmp::Ordering::Greater => sp.stored_strides[k - nr - 1][d],
    }
}

/// Emits row `i` of a banded select chain (see [`band`]): the default over the whole row, then
/// each band's value at its column when that lies in the row, innermost band first so that
/// the outermost condition wins where bands meet.
fn emit_banded_row(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    b: &Banded,
    offs: &[ir::Value],
    i: ir::Value,
) -> Result<()> {
    let cols = sp.dims[1] as i64;
    let lo = cx.iconst(0);
    let hi = cx.iconst(cols);
    emit_row(cx, sp, insts, offs, &[i], lo, hi, Some(&b.default))?;
    let nr = sp.reads.len();
    for band in b.bands.iter().rev() {
        let t = cx.fb.ins().imul_imm_s(i, band.a);
        let j = cx.fb.ins().iadd_imm_s(t, band.b);
        // One unsigned comparison checks 0 <= j < cols.
        let inside = cx.fb.ins().icmp_imm_s(IntCC::UnsignedLessThan, j, cols);
        let write = cx.fb.create_block();
        let next = cx.fb.create_block();
        cx.fb.ins().brif(inside, write, &[], next, &[]);
        cx.fb.switch_to_block(write);
        let vals = scalar_reads(cx, sp, offs, &[i], j, Some(&band.part), false)?;
        let y = eval(cx, sp, insts, &vals, None, Some(&band.part), None)?[0];
        let o = offset(cx, offs[nr], j, sp.out_strides[1]);
        cx.store_out(sp.out, o, y)?;
        cx.fb.ins().jump(next, &[]);
        cx.fb.switch_to_block(next);
    }
    Ok(())
}

/// Emits one row of a reduction group: every produced element is combined into its
/// accumulator, in row-major order of the reduced operand (the interpreter's order).
///
/// When the inner dimension is kept, accumulators are the outputs' elements (vector lanes
/// are distinct outputs, so vectors change no order). When it is reduced, the row
/// accumulates in a register that starts from and returns to the output element (or the
/// rank-0 accumulator); vectors then either add their lanes in order, or, when the spec
/// allows reassociation, accumulate lane-wise and fold the lanes at the end of the row.
/// Sibling reductions keep separate accumulators, so their chains overlap.
#[allow(clippy::too_many_arguments)]
fn emit_reduce_row(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    offs: &[ir::Value],
    idx: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
    guarded: bool,
) -> Result<()> {
    let inner = sp.dims.len() - 1;
    let nr = sp.reads.len();
    let along = sp.out_strides[inner] == 0;
    let flags = MemFlagsData::new().with_notrap();
    /// Per reduction: its dtype, buffer (if any) and row accumulators.
    struct Acc {
        dtype: DType,
        base: Option<ir::Value>,
        row: Option<Variable>,
        lanes: Option<Variable>,
    }
    let mut accs: Vec<Acc> = Vec::with_capacity(sp.reds.len());
    for red in &sp.reds {
        let dtype = cx.graph.ty(red.out).dtype;
        let base = match cx.slot(red.out) {
            Ok(Slot::Mem(b)) => Some(b),
            _ => None,
        };
        let row = if along {
            let v = cx.fb.declare_var(clty(dtype));
            let a0 = match (base, red.acc_var) {
                (Some(_), _) if sp.fresh => super::reduce::init_value(cx, &red.op, dtype),
                (Some(b), _) => cx.load_at(b, offs[nr], dtype),
                (None, Some(g)) => cx.fb.use_var(g),
                (None, None) => return Err(jit_err("a reduction without an accumulator")),
            };
            cx.fb.def_var(v, a0);
            Some(v)
        } else {
            None
        };
        accs.push(Acc {
            dtype,
            base,
            row,
            lanes: None,
        });
    }
    let mut from = lo;
    if let Some(vty) = sp.vector.filter(|_| !guarded) {
        let lanes = vty.lane_count() as i64;
        let inv = row_invariants(cx, sp, offs, vty, None)?;
        if along && sp.reassoc {
            for (acc, red) in accs.iter_mut().zip(&sp.reds) {
                let v = cx.fb.declare_var(vty);
                let init = super::reduce::init_value(cx, &red.op, acc.dtype);
                let s = cx.fb.ins().splat(vty, init);
                cx.fb.def_var(v, s);
                acc.lanes = Some(v);
            }
        }
        let mut one = |cx: &mut Ctx, i: ir::Value| -> Result<()> {
            let vals = vector_reads(cx, sp, offs, &inv, i, vty, None)?;
            let ys = eval(cx, sp, insts, &vals, Some(vty), None, None)?;
            // The stored members' vectors follow the reductions' operands (contiguous along
            // the row, of the loop's dtype).
            for (s, &v) in sp.stored.iter().enumerate() {
                let Slot::Mem(base) = cx.slot(v)? else {
                    return Err(jit_err("a fused result without a buffer"));
                };
                let o = cx.fb.ins().iadd(offs[nr + 1 + s], i);
                let dtype = cx.graph.ty(v).dtype;
                let addr = cx.elem_addr(base, o, dtype);
                cx.fb.ins().store(flags, ys[sp.reds.len() + s], addr, 0);
            }
            for ((acc, red), &y) in accs.iter().zip(&sp.reds).zip(&ys) {
                let fl = acc.dtype.is_float();
                match (acc.row, acc.lanes) {
                    (_, Some(va)) => {
                        let a = cx.fb.use_var(va);
                        let n = super::reduce::combine(cx, &red.op, fl, a, y);
                        cx.fb.def_var(va, n);
                    }
                    (Some(v), None) => {
                        let mut a = cx.fb.use_var(v);
                        for l in 0..lanes {
                            let e = cx.fb.ins().extractlane(y, l as u8);
                            a = super::reduce::combine(cx, &red.op, fl, a, e);
                        }
                        cx.fb.def_var(v, a);
                    }
                    (None, None) => {
                        let base = acc
                            .base
                            .ok_or_else(|| jit_err("a reduction without a buffer"))?;
                        let o = cx.fb.ins().iadd(offs[nr], i);
                        let addr = cx.elem_addr(base, o, acc.dtype);
                        let old = cx.fb.ins().load(vty, flags, addr, 0);
                        let n = super::reduce::combine(cx, &red.op, fl, old, y);
                        cx.fb.ins().store(flags, n, addr, 0);
                    }
                }
            }
            Ok(())
        };
        // With a kept inner dimension every lane is its own output element, so a short body
        // may run `UNROLL` vectors per iteration without changing any order.
        if !along && short_body(sp, insts) {
            from = row_loop(cx, lo, hi, UNROLL * lanes, &mut |cx, i| {
                for k in 0..UNROLL {
                    let ik = cx.fb.ins().iadd_imm_s(i, k * lanes);
                    one(cx, ik)?;
                }
                Ok(())
            })?;
        }
        from = row_loop(cx, from, hi, lanes, &mut one)?;
        for (acc, red) in accs.iter().zip(&sp.reds) {
            if let (Some(v), Some(va)) = (acc.row, acc.lanes) {
                let fl = acc.dtype.is_float();
                let mut a = cx.fb.use_var(v);
                let y = cx.fb.use_var(va);
                for l in 0..lanes {
                    let e = cx.fb.ins().extractlane(y, l as u8);
                    a = super::reduce::combine(cx, &red.op, fl, a, e);
                }
                cx.fb.def_var(v, a);
            }
        }
    }
    row_loop(cx, from, hi, 1, &mut |cx, i| {
        let vals = scalar_reads(cx, sp, offs, idx, i, None, guarded)?;
        let ys = eval(
            cx,
            sp,
            insts,
            &vals,
            None,
            None,
            guarded.then_some((idx, i)),
        )?;
        for (s, &v) in sp.stored.iter().enumerate() {
            let k = nr + 1 + s;
            let o = offset(cx, offs[k], i, access_stride(sp, k, inner));
            cx.store_out(v, o, ys[sp.reds.len() + s])?;
        }
        for ((acc, red), &y) in accs.iter().zip(&sp.reds).zip(&ys) {
            let fl = acc.dtype.is_float();
            match acc.row {
                Some(v) => {
                    let a = cx.fb.use_var(v);
                    let n = super::reduce::combine(cx, &red.op, fl, a, y);
                    cx.fb.def_var(v, n);
                }
                None => {
                    let base = acc
                        .base
                        .ok_or_else(|| jit_err("a reduction without a buffer"))?;
                    let o = offset(cx, offs[nr], i, sp.out_strides[inner]);
                    let old = cx.load_at(base, o, acc.dtype);
                    let n = super::reduce::combine(cx, &red.op, fl, old, y);
                    cx.store_at(base, o, n, acc.dtype);
                }
            }
        }
        Ok(())
    })?;
    for (acc, red) in accs.iter().zip(&sp.reds) {
        if let Some(v) = acc.row {
            let a = cx.fb.use_var(v);
            match (acc.base, red.acc_var) {
                (Some(b), _) => cx.store_at(b, offs[nr], a, acc.dtype),
                (None, Some(g)) => cx.fb.def_var(g, a),
                (None, None) => {}
            }
        }
    }
    Ok(())
}

/// Evaluates the nodes on one element (or vector of elements) given the read values;
/// returns the produced values: the root's, or each reduction's operand, or with `part` that
/// sub-expression's (evaluating only the members it needs). `at` (the outer loop indices and
/// the inner index) is given where guards are checked: selects then test theirs; elsewhere
/// every guard holds and a select is its first value.
fn eval(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    reads: &[ir::Value],
    vector: Option<ir::Type>,
    part: Option<&Part>,
    at: Option<(&[ir::Value], ir::Value)>,
) -> Result<SmallVec<[ir::Value; 2]>> {
    let mut vals: Vec<Option<ir::Value>> = vec![None; sp.nodes.len()];
    // A node is dead when it reads what this loop does not load (a segment's unused reads,
    // see [`used_reads`]) or uses a dead node; no output needs it.
    let mut dead = vec![false; sp.nodes.len()];
    let unloaded = |s: &Src, dead: &[bool]| match *s {
        Src::Read(k) => !sp.reads[k].top,
        Src::Node(j) => dead[j],
    };
    let get = |cx: &mut Ctx, vals: &[Option<ir::Value>], s: Src| -> Result<ir::Value> {
        match s {
            Src::Node(k) => {
                vals[k].ok_or_else(|| jit_err("a fused node used before it is computed"))
            }
            Src::Read(k) => {
                let v = reads[k];
                Ok(match vector {
                    Some(vty) if !cx.fb.func.dfg.value_type(v).is_vector() => {
                        let dtype = cx.graph.ty(sp.reads[k].leaf).dtype;
                        splat_scalar(cx, v, dtype, vty)
                    }
                    _ => v,
                })
            }
        }
    };
    for (n, node) in sp.nodes.iter().enumerate() {
        let skip = match node {
            Node::Op { args, .. } => args.iter().any(|a| unloaded(a, &dead)),
            Node::Select { then, other, .. } => {
                unloaded(then, &dead) || (at.is_some() && unloaded(other, &dead))
            }
        };
        if skip {
            dead[n] = true;
            continue;
        }
        let y = match node {
            Node::Op { member, args } => {
                if part.is_some_and(|p| !p.members.contains(member)) {
                    continue;
                }
                let inst = insts[*member];
                let mut xs: SmallVec<[ir::Value; 4]> = SmallVec::new();
                for &a in args {
                    xs.push(get(cx, &vals, a)?);
                }
                match (&inst.op, vector) {
                    (Op::Compare(c), Some(vty)) => {
                        let d = cx.graph.ty(inst.args[inst.args.len() - 1]).dtype;
                        super::compare::emit_vector(cx, *c, d, &xs, vty)
                    }
                    (op, _) => cx.emit_elementwise(op, &inst.args, &xs)?,
                }
            }
            Node::Select {
                guards,
                then,
                other,
            } => {
                let t = get(cx, &vals, *then)?;
                match at {
                    Some((idx, i)) => {
                        let mut ok: Option<ir::Value> = None;
                        for g in guards {
                            let h = remap::guard_holds(cx, g, idx, i);
                            ok = Some(match ok {
                                Some(o) => cx.fb.ins().band(o, h),
                                None => h,
                            });
                        }
                        let o = get(cx, &vals, *other)?;
                        match ok {
                            Some(c) => cx.fb.ins().select(c, t, o),
                            None => t,
                        }
                    }
                    None => t,
                }
            }
        };
        vals[n] = Some(y);
    }
    if let Some(p) = part {
        let s = sp
            .src_of
            .get(&p.value)
            .copied()
            .ok_or_else(|| jit_err("a fused group without its value"))?;
        Ok(SmallVec::from_slice(&[get(cx, &vals, s)?]))
    } else {
        sp.outs.iter().map(|&s| get(cx, &vals, s)).collect()
    }
}

/// Below this many rows, a parallel group of two dimensions is shared out by row blocks
/// rather than by rows: three rows on two threads would leave one thread a third of the work
/// idle (the sparse Hessian's `[3, n]` compressed matrix is such a loop).
const FEW_ROWS: usize = 8;

/// The parallel items a row blocks split aims at (rows times blocks per row), a few per
/// thread so that a slower core takes fewer of them.
const BLOCK_ITEMS: usize = 16;

/// How a parallel group with few long rows is cut into row blocks: `per_row` blocks of
/// `width` elements (the last block of a row may be shorter). Each block is a span of one
/// row's inner loop, so an element computes exactly what it computes in the whole row: only
/// elementwise groups (no reductions, no bands) are cut this way.
#[derive(Clone, Copy)]
struct RowBlocks {
    /// Blocks per row.
    per_row: usize,
    /// Elements per block, a multiple of 8 (whole vectors of every lane count).
    width: usize,
}

impl RowBlocks {
    /// The blocks for `sp`, or `None` when its rows are many (or short) enough to share out
    /// whole, or its loop is not a plain two-dimensional elementwise one.
    fn of(sp: &Spec) -> Option<RowBlocks> {
        if sp.dims.len() != 2 || sp.band.is_some() || !sp.reds.is_empty() {
            return None;
        }
        let (rows, inner) = (sp.dims[0], sp.dims[1]);
        if rows == 0 || rows >= FEW_ROWS {
            return None;
        }
        let want = BLOCK_ITEMS.div_ceil(rows);
        let width = inner.div_ceil(want).div_ceil(8) * 8;
        let per_row = inner.div_ceil(width);
        (per_row >= 2).then_some(RowBlocks { per_row, width })
    }
}

/// Emits items `start..end` of a row-block split (see [`RowBlocks`]): item `t` is block
/// `t mod per_row` of row `t / per_row`, which runs the row's inner loop over its span.
fn emit_blocks(
    cx: &mut Ctx,
    sp: &Spec,
    insts: &[&InstData],
    b: RowBlocks,
    start: ir::Value,
    end: ir::Value,
) -> Result<()> {
    let nacc = sp.reads.len() + 1 + sp.stored.len();
    let inner = sp.dims[1] as i64;
    counted_loop(cx, start, end, 1, &mut |cx, t| {
        let i0 = cx.fb.ins().udiv_imm_s(t, b.per_row as i64);
        let first = cx.fb.ins().imul_imm_s(i0, b.per_row as i64);
        let blk = cx.fb.ins().isub(t, first);
        let lo = cx.fb.ins().imul_imm_s(blk, b.width as i64);
        let hi = cx.fb.ins().iadd_imm_s(lo, b.width as i64);
        let limit = cx.iconst(inner);
        let hi = cx.fb.ins().smin(hi, limit);
        let offs: SmallVec<[ir::Value; 8]> = (0..nacc)
            .map(|k| {
                let s = access_stride(sp, k, 0);
                let base = sp.reads.get(k).map_or(0, |r| r.base);
                if s == 0 {
                    cx.iconst(base)
                } else {
                    let m = cx.fb.ins().imul_imm_s(i0, s);
                    cx.fb.ins().iadd_imm_s(m, base)
                }
            })
            .collect();
        emit_row(cx, sp, insts, &offs, &[i0], lo, hi, None)
    })?;
    Ok(())
}

/// Declares a kernel `(context, start, end)` of the kind `ferrax_parallel_for` runs over a
/// range, in `cx`'s module: its id and an empty function of that signature to fill in.
pub(super) fn declare_kernel(cx: &mut Ctx) -> Result<(cranelift_module::FuncId, Function)> {
    let mut sig = Signature::new(cx.module.isa().default_call_conv());
    sig.params.extend([AbiParam::new(types::I64); 3]);
    let id = cx
        .module
        .declare_anonymous_function(&sig)
        .map_err(|e| jit_err(format!("cranelift declare kernel: {e}")))?;
    Ok((id, Function::with_name_signature(Default::default(), sig)))
}

/// Compiles `func`, the body of the kernel declared as `id` (see [`declare_kernel`]), and
/// returns its address in the function being built, for `ferrax_parallel_for`.
/// `FERRAX_DISASM=1` prints its machine code.
pub(super) fn define_kernel(
    cx: &mut Ctx,
    id: cranelift_module::FuncId,
    func: Function,
) -> Result<ir::Value> {
    let mut ctx = cranelift_codegen::Context::for_function(func);
    let disasm = std::env::var_os("FERRAX_DISASM").is_some();
    ctx.set_disasm(disasm);
    let t = std::time::Instant::now();
    crate::compile::define_function(cx.module, id, &mut ctx, " (kernel)")?;
    if disasm {
        if let Some(v) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("{v}");
        }
    }
    crate::stats::codegen(t.elapsed());
    let fref = cx.module.declare_func_in_func(id, cx.fb.func);
    Ok(cx.fb.ins().func_addr(types::I64, fref))
}

/// Compiles the group as a kernel `fn(ctx, start, end)` over a range of the outermost
/// dimension and calls it through `ferrax_parallel_for`. `ctx` is a stack array holding, per
/// read, the leaf's buffer address or its scalar value, then the output addresses.
fn parallel(cx: &mut Ctx, sp: &Spec, insts: &[&InstData]) -> Result<()> {
    let blocks = RowBlocks::of(sp);
    let nr = sp.reads.len();
    let ptr = types::I64;
    // The loop's results, then its stored members.
    let outs: SmallVec<[Value; 4]> = if sp.reds.is_empty() {
        SmallVec::from_slice(&[sp.out])
    } else {
        sp.reds.iter().map(|r| r.out).collect()
    };
    let outs: SmallVec<[Value; 4]> = outs.into_iter().chain(sp.stored.iter().copied()).collect();
    // The context array in the caller's frame: the reads, the outputs, and the address of
    // the kernel's pool of vector constants.
    let pool_at = 8 * (nr + outs.len());
    let slot = cx.fb.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (pool_at + 8) as u32,
        3,
    ));
    let flags = MemFlagsData::trusted();
    let ctxp = cx.fb.ins().stack_addr(ptr, slot, 0);
    for (k, r) in sp.reads.iter().enumerate() {
        let v = match cx.slot(r.leaf)? {
            Slot::Mem(a) | Slot::Reg(a) => a,
        };
        cx.fb.ins().store(flags, v, ctxp, (8 * k) as i32);
    }
    for (k, &o) in outs.iter().enumerate() {
        let Slot::Mem(out) = cx.slot(o)? else {
            return Err(jit_err("a fused result without a buffer"));
        };
        cx.fb.ins().store(flags, out, ctxp, (8 * (nr + k)) as i32);
    }

    // The kernel.
    let (id, mut func) = declare_kernel(cx)?;
    let mut fbc = FunctionBuilderContext::new();
    let pool;
    {
        let cfg = cx.module.isa().frontend_config();
        let mut fb = FunctionBuilder::new(&mut func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let (kctx, start, end) = {
            let p = fb.block_params(entry);
            (p[0], p[1], p[2])
        };
        let mut kx = Ctx::new(
            &mut fb,
            &mut *cx.module,
            cx.graph,
            cx.opts,
            cx.plan,
            &mut *cx.consts,
            None,
            Vec::new(),
        );
        kx.dest = cx.dest;
        // The pool's address, copied once into the kernel's frame (see [`super::vpool`]).
        let pool_slot =
            kx.fb
                .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 3));
        let pool_addr = kx.fb.ins().load(ptr, flags, kctx, pool_at as i32);
        kx.fb.ins().stack_store(ptr, pool_addr, pool_slot, 0);
        kx.vpool = Some(super::vpool::VecPool::new(pool_slot));
        for (k, r) in sp.reads.iter().enumerate() {
            let ty = kx.graph.ty(r.leaf);
            let s = match cx.slots[r.leaf.index()] {
                Some(Slot::Mem(_)) => Slot::Mem(kx.fb.ins().load(ptr, flags, kctx, (8 * k) as i32)),
                Some(Slot::Reg(_)) => Slot::Reg(kx.fb.ins().load(
                    clty(ty.dtype),
                    flags,
                    kctx,
                    (8 * k) as i32,
                )),
                None => return Err(jit_err("a fused leaf used before definition")),
            };
            kx.slots[r.leaf.index()] = Some(s);
        }
        for (k, &o) in outs.iter().enumerate() {
            let a = kx.fb.ins().load(ptr, flags, kctx, (8 * (nr + k)) as i32);
            kx.slots[o.index()] = Some(Slot::Mem(a));
        }
        match blocks {
            Some(b) => emit_blocks(&mut kx, sp, insts, b, start, end)?,
            None => emit_range(&mut kx, sp, insts, start, end)?,
        }
        kx.fb.ins().return_(&[]);
        pool = kx.vpool.take().map_or_else(Vec::new, |p| p.into_bytes());
        fb.seal_all_blocks();
        fb.finalize(cfg);
    }
    let kaddr = define_kernel(cx, id, func)?;
    // The kernel's entry reads the pool's address even when no constant used it.
    let addr = if pool.is_empty() {
        cx.iconst(0)
    } else {
        cx.data_addr(pool)?
    };
    cx.fb.ins().store(flags, addr, ctxp, pool_at as i32);
    // The kernel runs a range of rows, or of row blocks when the rows are few.
    let n = cx.iconst(blocks.map_or(sp.dims[0], |b| sp.dims[0] * b.per_row) as i64);
    // Split points stay multiples of the vector width for flat loops.
    let align = match (sp.dims.len(), sp.vector) {
        (1, Some(v)) => v.lane_count() as i64,
        _ => 1,
    };
    let al = cx.iconst(align);
    cx.call("ferrax_parallel_for", &[ptr; 4], &[], &[kaddr, ctxp, n, al])?;
    Ok(())
}
