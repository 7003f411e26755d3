//! Structural rewrites, exact in IEEE arithmetic, that move elementwise work from large
//! broadcast shapes to small operands. They matter most for Jacobians and Hessians, whose seeds
//! are identity masks built from `iota` comparisons: without them every tangent op of a
//! batched JVP runs on an n×n array even when all it does is scale a vector.
//!
//! Each rewrite computes every element with the same operations on the same operand values as
//! the original equation, so the result is equal bit for bit for every input (NaN, ±∞ and −0.0
//! included):
//! - an elementwise op whose operands are all broadcasts (or splat constants) runs on the
//!   smallest shape that holds every operand's varying axes, and its result is broadcast;
//! - an elementwise op with a `select(m, t, f)` operand (or `convert(m)` of a bool mask, which
//!   is `select(m, 1, 0)`) whose operands are all *cheap* (broadcasts, splats, comparisons of
//!   those, selects of those) is applied to both branches:
//!   `op(select(m, t, f), y)` → `select(m, op(t, y), op(f, y))`. The number of branches this
//!   creates is bounded by [`MAX_LEAVES`], so the rewrite cannot blow up;
//! - slices, transposes, reshapes and broadcasts that only insert or drop unit axes, and pads
//!   move through cheap expressions down to the broadcast operands; a pad becomes a `select`
//!   of an in-range mask between the extended expression and the padding value;
//! - a transpose that only moves unit axes is a reshape; a `dot_general` whose contracted
//!   axes all have size 1 is an outer product (plus `+0.0`, as the reference accumulates);
//! - an `iota` of rank above 1 becomes a broadcast of a 1-D `iota`, and a slice of an `i32`
//!   iota becomes an iota plus its start;
//! - index masks ([`super::masks`]): a comparison of index arrays that has one value at every
//!   element becomes a constant; inside `select(m, t, f)` every select in `t` (`f`) whose mask
//!   `m == true` (`false`) decides is replaced by the branch it takes (e.g. `eq(i, j)` excludes
//!   `eq(i, j + 1)`); when a pad is extended, an index operand `iota + c` keeps counting
//!   (`iota + (c - lo)`) instead of being zero-padded, so shifted masks stay comparable;
//! - `select(p, select(q, a, b), c)` → `select(q, select(p, a, c), select(p, b, c))` when `q`
//!   varies along strictly more axes than `p` (the small mask moves to the leaves and its
//!   selects shrink to vectors); `select(m, pad(x, v), v)` → `pad(x, v)` when `m` is false
//!   only in the padding.
//!
//! Selects only choose among operands, so moving or dropping them is exact whenever the
//! element chosen is the same, which the index reasoning guarantees element by element.
//!
//! After these rewrites the only full-size work left in, e.g., the Hessian of a banded function
//! is one index comparison and one select per band (three of each for a tridiagonal Hessian),
//! which the JIT fuses into one loop.

use super::masks::{self, Facts};
use crate::emit::{self, producer};
use ferrax_ir::ops::{CompareOp, ConvertOp, DotGeneral, LiteralOp, ShapeOp};
use ferrax_ir::{Array, Builder, DType, Dims, InstData, Op, Result, Shape, Type, Value};
use smallvec::SmallVec;

/// How deep the cheapness check looks into an expression.
const MAX_DEPTH: usize = 6;

/// The most select branches (leaves) a lifted expression may have.
pub(crate) const MAX_LEAVES: usize = 16;

/// A value that varies along fewer axes than its shape has.
enum Leaf {
    /// `broadcast_in_dim(src, _, dims)` where every `src` axis keeps its size.
    Bcast(Value, Dims),
    /// A constant whose elements are all the same bits, as a scalar array.
    Splat(Array),
}

/// Whether `op` is elementwise and may be moved around by these rewrites (stop_gradient is
/// left where the user put it).
fn movable(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Convert(ConvertOp::Convert(_))
    )
}

/// `v` as a [`Leaf`], if it is one (and is not a scalar).
fn leaf(b: &Builder, v: Value) -> Option<Leaf> {
    let ty = b.ty(v);
    if ty.rank() == 0 {
        return None;
    }
    if b.literal(v).is_some() {
        return splat_literal(b, v);
    }
    match producer(b, v) {
        Some(InstData {
            op: Op::Shape(ShapeOp::BroadcastInDim { shape, dims }),
            args,
            ..
        }) => {
            if let Some(Leaf::Splat(s)) = splat_literal(b, args[0]) {
                return Some(Leaf::Splat(s));
            }
            let src = b.ty(args[0]);
            let keeps = dims
                .iter()
                .enumerate()
                .all(|(k, &d)| src.dims()[k] == shape.dims()[d]);
            (keeps && src.size() < shape.size())
                .then(|| Leaf::Bcast(args[0], Dims::from_slice(dims)))
        }
        _ => None,
    }
}

/// Whether [`leaf`] may find a leaf in `v`: a constant or a broadcast that is not a scalar.
fn may_be_leaf(b: &Builder, v: Value) -> bool {
    b.ty(v).rank() != 0
        && (b.literal(v).is_some()
            || matches!(
                producer(b, v),
                Some(InstData {
                    op: Op::Shape(ShapeOp::BroadcastInDim { .. }),
                    ..
                })
            ))
}

/// A constant `v` whose elements all have the same (non-NaN) bits, as a scalar splat.
fn splat_literal(b: &Builder, v: Value) -> Option<Leaf> {
    let a = b.literal(v)?.array();
    if a.size() == 0 {
        return None;
    }
    let first = a.data().get_f64(0);
    let same = (1..a.size()).all(|i| a.data().get_f64(i).to_bits() == first.to_bits());
    (same && !first.is_nan()).then(|| Leaf::Splat(Array::scalar(a.dtype(), first)))
}

/// A select view of `v`: `select(m, t, f)`, or `convert(m)` of a bool `m` (returned with `None`
/// branches, meaning the constants 1 and 0 of `v`'s type).
fn sel_view(b: &Builder, v: Value) -> Option<(Value, Option<(Value, Value)>)> {
    match producer(b, v) {
        Some(InstData {
            op: Op::Compare(CompareOp::Select),
            args,
            ..
        }) => Some((args[0], Some((args[1], args[2])))),
        Some(InstData {
            op: Op::Convert(ConvertOp::Convert(_)),
            args,
            ..
        }) if b.ty(args[0]).dtype == DType::Bool => Some((args[0], None)),
        _ => None,
    }
}

/// The number of branches of `v` if it is cheap: a leaf, a comparison of cheap values, or a
/// select (or mask conversion) of cheap values. With `relaxed`, any elementwise op of cheap
/// values counts too (pushing a shape op through it never adds work).
fn cheap(b: &Builder, v: Value, depth: usize, relaxed: bool) -> Option<usize> {
    if leaf(b, v).is_some() {
        return Some(1);
    }
    if depth == 0 {
        return None;
    }
    let inst = producer(b, v)?;
    let sub = |a: Value| cheap(b, a, depth - 1, relaxed);
    match &inst.op {
        Op::Compare(CompareOp::Select) => {
            sub(inst.args[0])?;
            Some(sub(inst.args[1])? + sub(inst.args[2])?)
        }
        Op::Convert(ConvertOp::Convert(_)) if b.ty(inst.args[0]).dtype == DType::Bool => {
            sub(inst.args[0])?;
            Some(2)
        }
        op if movable(op) && (relaxed || b.ty(v).dtype == DType::Bool) => {
            for &a in &inst.args {
                sub(a)?;
            }
            Some(1)
        }
        _ => None,
    }
}

/// Tries every structural rewrite of `op(args)`.
pub(crate) fn rewrite(b: &mut Builder, op: &Op, args: &[Value]) -> Result<Option<Value>> {
    match op {
        Op::Literal(LiteralOp::Iota { dtype, shape, axis }) if shape.rank() > 1 => {
            let line = Op::Literal(LiteralOp::Iota {
                dtype: *dtype,
                shape: Shape::new(&[shape.dims()[*axis]]),
                axis: 0,
            });
            let v = emit::push1(b, line, &[])?;
            emit::broadcast(b, v, shape.clone(), Dims::from_slice(&[*axis])).map(Some)
        }
        Op::Compare(
            c @ (CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge),
        ) => {
            if let Some(v) = masks::constant_compare(b, *c, args[0], args[1]) {
                let ty = b.ty(args[0]).with_dtype(DType::Bool);
                return emit::full(b, &ty, if v { 1.0 } else { 0.0 }).map(Some);
            }
            shrink(b, op, args)
        }
        Op::Compare(CompareOp::Select) => {
            if let Some(v) = select_of_pad(b, args) {
                return Ok(Some(v));
            }
            if let Some(v) = prune(b, args)? {
                return Ok(Some(v));
            }
            if let Some(v) = shrink(b, op, args)? {
                return Ok(Some(v));
            }
            distribute(b, args[0], args[1], args[2])
        }
        op if movable(op) => {
            if let Some(v) = shrink(b, op, args)? {
                return Ok(Some(v));
            }
            lift(b, op, args)
        }
        Op::Shape(ShapeOp::Transpose { perm }) if keeps_order(b.ty(args[0]).dims(), perm) => {
            let ty = b.ty(args[0]);
            let shape = Shape(perm.iter().map(|&p| ty.dims()[p]).collect());
            emit::reshape(b, args[0], shape).map(Some)
        }
        Op::Shape(s) => shape_op(b, s, args),
        Op::Dot(d) => unit_dot(b, d, args),
        _ => Ok(None),
    }
}

/// Whether a transpose with `perm` of an array with dims `dims` keeps the order of its non-unit
/// axes (so it only moves unit axes and is a reshape).
fn keeps_order(dims: &[usize], perm: &[usize]) -> bool {
    let moved: Vec<usize> = perm.iter().copied().filter(|&p| dims[p] != 1).collect();
    moved.windows(2).all(|w| w[0] < w[1])
}

/// A `dot_general` without batch axes whose contracted axes all have size 1 is an outer
/// product: `0 + x ⊗ y`, where adding `+0.0` reproduces the reference's accumulation from zero
/// (it turns a `-0.0` product into `+0.0`, as the sum does).
fn unit_dot(b: &mut Builder, d: &DotGeneral, args: &[Value]) -> Result<Option<Value>> {
    let (x, y) = (args[0], args[1]);
    let (xt, yt) = (b.ty(x).clone(), b.ty(y).clone());
    if !d.lhs_batch.is_empty() || d.lhs_contract.iter().any(|&a| xt.dims()[a] != 1) {
        return Ok(None);
    }
    let xf = d.lhs_free(xt.rank());
    let yf = d.rhs_free(yt.rank());
    let xs = Shape(xf.iter().map(|&a| xt.dims()[a]).collect());
    let ys = Shape(yf.iter().map(|&a| yt.dims()[a]).collect());
    let mut out: Dims = Dims::from_slice(xs.dims());
    out.extend_from_slice(ys.dims());
    let out = Shape(out);
    let x2 = emit::reshape(b, x, xs.clone())?;
    let y2 = emit::reshape(b, y, ys.clone())?;
    let xb = emit::broadcast(b, x2, out.clone(), (0..xs.rank()).collect())?;
    let yb = emit::broadcast(b, y2, out.clone(), (xs.rank()..out.rank()).collect())?;
    let p = emit::mul(b, xb, yb)?;
    let zero = emit::like(b, p, 0.0)?;
    emit::add(b, zero, p).map(Some)
}

/// The shape every operand of an elementwise op has.
fn elementwise_shape(b: &Builder, args: &[Value]) -> Shape {
    b.ty(*args.last().expect("elementwise ops have operands"))
        .shape
        .clone()
}

/// An elementwise op over broadcasts and splats, computed on the axes that vary.
fn shrink(b: &mut Builder, op: &Op, args: &[Value]) -> Result<Option<Value>> {
    // Most equations have an operand that cannot be a leaf: found without building anything.
    if !args.iter().all(|&a| may_be_leaf(b, a)) {
        return Ok(None);
    }
    let shape = elementwise_shape(b, args);
    if shape.rank() == 0 {
        return Ok(None);
    }
    let mut leaves: SmallVec<[Leaf; 4]> = SmallVec::with_capacity(args.len());
    for &a in args {
        match leaf(b, a) {
            Some(l) => leaves.push(l),
            None => return Ok(None),
        }
    }
    let mut used = vec![false; shape.rank()];
    for l in &leaves {
        if let Leaf::Bcast(_, dims) = l {
            for &d in dims {
                used[d] = true;
            }
        }
    }
    if used.iter().all(|&u| u) {
        return Ok(None);
    }
    let axes: Dims = (0..shape.rank()).filter(|&a| used[a]).collect();
    let small = Shape(axes.iter().map(|&a| shape.dims()[a]).collect());
    if small.size() == shape.size() {
        return Ok(None);
    }
    let mut small_args: SmallVec<[Value; 4]> = SmallVec::new();
    for l in leaves {
        small_args.push(match l {
            Leaf::Bcast(src, dims) => {
                let at: Dims = dims
                    .iter()
                    .map(|d| axes.iter().position(|a| a == d).expect("marked axis"))
                    .collect();
                emit::broadcast(b, src, small.clone(), at)?
            }
            Leaf::Splat(s) => splat_to(b, s, &small)?,
        });
    }
    let r = emit::push1(b, op.clone(), &small_args)?;
    emit::broadcast(b, r, shape, axes).map(Some)
}

/// The scalar `s` broadcast to `shape`.
fn splat_to(b: &mut Builder, s: Array, shape: &Shape) -> Result<Value> {
    let c = b.constant(s);
    emit::broadcast(b, c, shape.clone(), Dims::new())
}

/// The branches of a select view: `(t, f)`, materializing 1 and 0 for a mask conversion.
fn branches(b: &mut Builder, v: Value, view: Option<(Value, Value)>) -> Result<(Value, Value)> {
    match view {
        Some(tf) => Ok(tf),
        None => {
            let ty = b.ty(v).clone();
            Ok((emit::full(b, &ty, 1.0)?, emit::full(b, &ty, 0.0)?))
        }
    }
}

/// `op(.., select(m, t, f), ..)` → `select(m, op(.., t, ..), op(.., f, ..))` over cheap operands.
fn lift(b: &mut Builder, op: &Op, args: &[Value]) -> Result<Option<Value>> {
    if matches!(op, Op::Compare(CompareOp::Select)) {
        return Ok(None);
    }
    let Some((pos, (m, _))) = args
        .iter()
        .enumerate()
        .find_map(|(i, &a)| sel_view(b, a).map(|s| (i, s)))
    else {
        return Ok(None);
    };
    let mut total = 1usize;
    for &a in args {
        match cheap(b, a, MAX_DEPTH, false) {
            Some(n) => total = total.saturating_mul(n),
            None => return Ok(None),
        }
    }
    if total > MAX_LEAVES {
        return Ok(None);
    }
    let mut on_t: SmallVec<[Value; 4]> = SmallVec::new();
    let mut on_f: SmallVec<[Value; 4]> = SmallVec::new();
    for (i, &a) in args.iter().enumerate() {
        let same_mask = match sel_view(b, a) {
            Some((ma, view)) if i == pos || ma == m => Some(view),
            _ => None,
        };
        match same_mask {
            Some(view) => {
                let (t, f) = branches(b, a, view)?;
                on_t.push(t);
                on_f.push(f);
            }
            None => {
                on_t.push(a);
                on_f.push(a);
            }
        }
    }
    let t = emit::push1(b, op.clone(), &on_t)?;
    let f = emit::push1(b, op.clone(), &on_f)?;
    emit::select(b, m, t, f).map(Some)
}

/// `select(m, t, f)` with the selects inside `t` (`f`) whose masks `m == true` (`false`)
/// decides replaced by the branch they take there: `select(m, select(m, a, b), c)` →
/// `select(m, a, c)`, and with index masks e.g. `select(eq(i, j), select(eq(i, j + 1), a, b),
/// c)` → `select(eq(i, j), b, c)`. Exact: at every element where `t` is taken the dropped
/// select would have taken the kept branch.
fn prune(b: &mut Builder, args: &[Value]) -> Result<Option<Value>> {
    let (m, t, f) = (args[0], args[1], args[2]);
    if sel_view(b, t).is_none() && sel_view(b, f).is_none() {
        return Ok(None);
    }
    let on = Facts::new(b, m, true);
    let t2 = assume(b, t, &on, MAX_DEPTH)?;
    let off = Facts::new(b, m, false);
    let f2 = assume(b, f, &off, MAX_DEPTH)?;
    if (t2, f2) == (t, f) {
        return Ok(None);
    }
    emit::select(b, m, t2, f2).map(Some)
}

/// `select(m, pad(x, pv), pv)` → `pad(x, pv)` when every element where `m` is false lies in
/// the padding (and symmetrically with the pad in the false branch): there both operands hold
/// the padding value, bit for bit, so the select never changes a value.
fn select_of_pad(b: &Builder, args: &[Value]) -> Option<Value> {
    let m = args[0];
    for (pos, (p, other)) in [(args[1], args[2]), (args[2], args[1])]
        .into_iter()
        .enumerate()
    {
        let Some(InstData {
            op: Op::Shape(ShapeOp::Pad { lo, hi, interior }),
            args: pa,
            ..
        }) = producer(b, p)
        else {
            continue;
        };
        if interior.iter().any(|&i| i != 0) || !same_splat(b, other, pa[1]) {
            continue;
        }
        // Where the pad is not selected (m false for the true branch, m true for the false
        // branch), some padded axis must be out of the operand's range.
        let facts = Facts::new(b, m, pos == 1);
        let xd = b.ty(pa[0]).dims().to_vec();
        let outside = (0..xd.len()).any(|a| {
            (lo[a] != 0 || hi[a] != 0)
                && facts.decide_range(a, lo[a] as i64, (lo[a] + xd[a]) as i64) == Some(false)
        });
        if outside {
            return Some(p);
        }
    }
    None
}

/// Whether `v` holds, at every element, the bits of the scalar `s`.
fn same_splat(b: &Builder, v: Value, s: Value) -> bool {
    if let Some(InstData {
        op: Op::Shape(ShapeOp::BroadcastInDim { .. }),
        args,
        ..
    }) = producer(b, v)
    {
        if args[0] == s {
            return true;
        }
    }
    match (splat_literal(b, s), leaf(b, v)) {
        (Some(Leaf::Splat(x)), Some(Leaf::Splat(y))) => {
            x.dtype() == y.dtype() && x.data().get_f64(0).to_bits() == y.data().get_f64(0).to_bits()
        }
        _ => false,
    }
}

/// `v` with every select (or mask conversion) the facts decide replaced by its taken branch,
/// looking through nested selects up to `depth` levels.
fn assume(b: &mut Builder, v: Value, facts: &Facts, depth: usize) -> Result<Value> {
    if depth == 0 {
        return Ok(v);
    }
    let Some((q, view)) = sel_view(b, v) else {
        return Ok(v);
    };
    if let Some(val) = facts.decide(b, q) {
        let (t, f) = branches(b, v, view)?;
        return assume(b, if val { t } else { f }, facts, depth - 1);
    }
    let Some((t, f)) = view else {
        return Ok(v);
    };
    let t2 = assume(b, t, facts, depth - 1)?;
    let f2 = assume(b, f, facts, depth - 1)?;
    if (t2, f2) == (t, f) {
        return Ok(v);
    }
    emit::select(b, q, t2, f2)
}

/// The axes along which `v` varies, as a bit set (all axes when unknown).
fn axes(b: &Builder, v: Value, depth: usize) -> u64 {
    let rank = b.ty(v).rank();
    let all = if rank >= 64 {
        u64::MAX
    } else {
        (1u64 << rank) - 1
    };
    match leaf(b, v) {
        Some(Leaf::Splat(_)) => return 0,
        Some(Leaf::Bcast(_, dims)) => return dims.iter().fold(0, |m, &d| m | 1 << d),
        None => {}
    }
    if depth == 0 {
        return all;
    }
    match producer(b, v) {
        Some(InstData {
            op: Op::Literal(LiteralOp::Iota { axis, .. }),
            ..
        }) => 1 << axis,
        Some(i) if movable(&i.op) => i.args.iter().fold(0, |m, &a| m | axes(b, a, depth - 1)),
        _ => all,
    }
}

/// `select(p, select(q, t1, t2), f)` → `select(q, select(p, t1, f), select(p, t2, f))` (and
/// likewise for a select in the false branch, or in both on the same mask) when `q` varies
/// along strictly more axes than `p`: the mask that varies less moves towards the leaves,
/// where its selects between broadcasts shrink to small arrays. Exact: both sides pick, at
/// each element, the operand the two masks designate. Moving masks only in the direction of
/// fewer axes cannot cycle, and the operands must be cheap with at most [`MAX_LEAVES`]
/// branches, so the expression stays small.
fn distribute(b: &mut Builder, p: Value, t: Value, f: Value) -> Result<Option<Value>> {
    let pa = axes(b, p, MAX_DEPTH);
    let Some(q) = [t, f].into_iter().find_map(|v| {
        let (q, _) = sel_view(b, v)?;
        let qa = axes(b, q, MAX_DEPTH);
        (qa & pa == pa && qa != pa).then_some(q)
    }) else {
        return Ok(None);
    };
    let (Some(lt), Some(lf)) = (cheap(b, t, MAX_DEPTH, false), cheap(b, f, MAX_DEPTH, false))
    else {
        return Ok(None);
    };
    if cheap(b, p, MAX_DEPTH, false).is_none() || lt + lf > MAX_LEAVES {
        return Ok(None);
    }
    let mut split = |v: Value| -> Result<(Value, Value)> {
        match sel_view(b, v) {
            Some((m, view)) if m == q => branches(b, v, view),
            _ => Ok((v, v)),
        }
    };
    let (tt, tf) = split(t)?;
    let (ft, ff) = split(f)?;
    let on = emit::select(b, p, tt, ft)?;
    let off = emit::select(b, p, tf, ff)?;
    emit::select(b, q, on, off).map(Some)
}

/// Whether a reshape from `from` to `to` only inserts or drops unit axes.
fn unit_reshape(from: &[usize], to: &[usize]) -> bool {
    let a: Vec<usize> = from.iter().copied().filter(|&d| d != 1).collect();
    let c: Vec<usize> = to.iter().copied().filter(|&d| d != 1).collect();
    a == c
}

/// A shape op moved through a leaf or a cheap elementwise expression.
fn shape_op(b: &mut Builder, op: &ShapeOp, args: &[Value]) -> Result<Option<Value>> {
    let x = args[0];
    let from = b.ty(x).shape.clone();
    match op {
        ShapeOp::Slice { .. } | ShapeOp::Transpose { .. } => {}
        ShapeOp::Reshape { shape } if unit_reshape(from.dims(), shape.dims()) => {}
        ShapeOp::Pad { interior, .. } if interior.iter().all(|&i| i == 0) => {}
        ShapeOp::BroadcastInDim { shape, .. } if shape.size() == from.size() => {}
        _ => return Ok(None),
    }
    if let ShapeOp::Slice {
        start,
        limit,
        stride,
    } = op
    {
        if let Some(v) = slice_iota(b, x, start, limit, stride)? {
            return Ok(Some(v));
        }
    }
    if let Some(l) = leaf(b, x) {
        return leaf_shape_op(b, op, args, l);
    }
    if cheap(b, x, MAX_DEPTH, true).is_none() {
        return Ok(None);
    }
    let inst = producer(b, x)
        .expect("a cheap non-leaf has a producer")
        .clone();
    if let ShapeOp::Pad { lo, hi, .. } = op {
        return pad_select(b, x, args[1], lo, hi).map(Some);
    }
    let mut moved: SmallVec<[Value; 4]> = SmallVec::new();
    for &a in &inst.args {
        moved.push(emit::push1(b, Op::Shape(op.clone()), &[a])?);
    }
    emit::push1(b, inst.op.clone(), &moved).map(Some)
}

/// A stride-1 slice of an `i32` iota: the smaller iota plus the start along its axis.
fn slice_iota(
    b: &mut Builder,
    x: Value,
    start: &[usize],
    limit: &[usize],
    stride: &[usize],
) -> Result<Option<Value>> {
    let Some(InstData {
        op: Op::Literal(LiteralOp::Iota { dtype, axis, .. }),
        ..
    }) = producer(b, x)
    else {
        return Ok(None);
    };
    let (dtype, axis) = (*dtype, *axis);
    if dtype != DType::I32 || stride.iter().any(|&s| s != 1) {
        return Ok(None);
    }
    let shape = Shape(start.iter().zip(limit).map(|(&s, &l)| l - s).collect());
    let v = emit::push1(b, Op::Literal(LiteralOp::Iota { dtype, shape, axis }), &[])?;
    emit::add_const(b, v, start[axis] as f64).map(Some)
}

/// A shape op applied to a broadcast or a splat.
fn leaf_shape_op(b: &mut Builder, op: &ShapeOp, args: &[Value], l: Leaf) -> Result<Option<Value>> {
    let x = args[0];
    let from = b.ty(x).clone();
    let pv_ty = args
        .get(1)
        .map_or_else(|| from.clone(), |&p| b.ty(p).clone());
    let to = shape_type(op, &from, &pv_ty)?;
    let (src, dims) = match l {
        Leaf::Splat(s) => {
            if let ShapeOp::Pad { lo, hi, .. } = op {
                return pad_select(b, x, args[1], lo, hi).map(Some);
            }
            return splat_to(b, s, &to.shape).map(Some);
        }
        Leaf::Bcast(src, dims) => (src, dims),
    };
    let sty = b.ty(src).clone();
    match op {
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => {
            let s_start: Dims = dims.iter().map(|&d| start[d]).collect();
            let s_limit: Dims = dims.iter().map(|&d| limit[d]).collect();
            let s_stride: Dims = dims.iter().map(|&d| stride[d]).collect();
            let s = emit::slice(b, src, s_start, s_limit, s_stride)?;
            emit::broadcast(b, s, to.shape, dims).map(Some)
        }
        ShapeOp::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (j, &p) in perm.iter().enumerate() {
                inv[p] = j;
            }
            let nd: Vec<usize> = dims.iter().map(|&d| inv[d]).collect();
            let mut order: Vec<usize> = (0..nd.len()).collect();
            order.sort_by_key(|&k| nd[k]);
            let s = emit::transpose(b, src, order.iter().copied().collect())?;
            let sorted: Dims = order.iter().map(|&k| nd[k]).collect();
            emit::broadcast(b, s, to.shape, sorted).map(Some)
        }
        ShapeOp::Reshape { shape } => {
            let mut new_axis = vec![None; from.rank()];
            let mut j = 0;
            for (a, &d) in from.dims().iter().enumerate() {
                if d == 1 {
                    continue;
                }
                while shape.dims()[j] == 1 {
                    j += 1;
                }
                new_axis[a] = Some(j);
                j += 1;
            }
            let kept: Vec<(usize, usize)> = dims
                .iter()
                .enumerate()
                .filter_map(|(k, &d)| new_axis[d].map(|n| (k, n)))
                .collect();
            let s_shape = Shape(kept.iter().map(|&(k, _)| sty.dims()[k]).collect());
            let s = emit::reshape(b, src, s_shape)?;
            let nd: Dims = kept.iter().map(|&(_, n)| n).collect();
            emit::broadcast(b, s, shape.clone(), nd).map(Some)
        }
        ShapeOp::Pad { lo, hi, .. } => {
            let mapped = (0..from.rank())
                .filter(|&a| lo[a] != 0 || hi[a] != 0)
                .all(|a| dims.contains(&a));
            if !mapped {
                return pad_select(b, x, args[1], lo, hi).map(Some);
            }
            let s_lo: Dims = dims.iter().map(|&d| lo[d]).collect();
            let s_hi: Dims = dims.iter().map(|&d| hi[d]).collect();
            let s_in = Dims::from_elem(0, dims.len());
            let s = emit::push1(
                b,
                Op::Shape(ShapeOp::Pad {
                    lo: s_lo.into_boxed_slice(),
                    hi: s_hi.into_boxed_slice(),
                    interior: s_in.into_boxed_slice(),
                }),
                &[src, args[1]],
            )?;
            emit::broadcast(b, s, to.shape, dims).map(Some)
        }
        ShapeOp::BroadcastInDim { .. } | ShapeOp::Concatenate { .. } | ShapeOp::Rev { .. } => {
            Ok(None)
        }
    }
}

/// The number of operands of a shape op this module moves (pad takes its value too).
fn op_arity(op: &ShapeOp) -> usize {
    match op {
        ShapeOp::Pad { .. } => 2,
        _ => 1,
    }
}

/// `pad(x, pv)` as `select(in_range, extend(x), pv)`, where `extend` computes the cheap
/// expression `x` on the padded shape (its values outside the original range are discarded).
fn pad_select(b: &mut Builder, x: Value, pv: Value, lo: &[usize], hi: &[usize]) -> Result<Value> {
    let from = b.ty(x).clone();
    let to: Shape = Shape(
        (0..from.rank())
            .map(|a| lo[a] + from.dims()[a] + hi[a])
            .collect(),
    );
    let ext = extend(b, x, lo, hi, &to, MAX_DEPTH)?;
    let mut mask: Option<Value> = None;
    for a in 0..from.rank() {
        if lo[a] == 0 && hi[a] == 0 {
            continue;
        }
        let n = to.dims()[a];
        let iota = emit::push1(
            b,
            Op::Literal(LiteralOp::Iota {
                dtype: DType::I32,
                shape: Shape::new(&[n]),
                axis: 0,
            }),
            &[],
        )?;
        let lo_c = emit::like(b, iota, lo[a] as f64)?;
        let hi_c = emit::like(b, iota, (lo[a] + from.dims()[a]) as f64)?;
        let ge = emit::compare(b, CompareOp::Ge, iota, lo_c)?;
        let lt = emit::compare(b, CompareOp::Lt, iota, hi_c)?;
        let r = emit::compare(b, CompareOp::And, ge, lt)?;
        let r = emit::broadcast(b, r, to.clone(), Dims::from_slice(&[a]))?;
        mask = Some(match mask {
            Some(m) => emit::compare(b, CompareOp::And, m, r)?,
            None => r,
        });
    }
    let pad_full = emit::broadcast(b, pv, to, Dims::new())?;
    match mask {
        Some(m) => emit::select(b, m, ext, pad_full),
        None => Ok(x),
    }
}

/// The cheap expression `x` computed on the padded shape `to`: leaves are padded (broadcast
/// axes simply grow), elementwise ops are recomputed on the extended operands.
fn extend(
    b: &mut Builder,
    x: Value,
    lo: &[usize],
    hi: &[usize],
    to: &Shape,
    depth: usize,
) -> Result<Value> {
    let ty = b.ty(x).clone();
    match leaf(b, x) {
        Some(Leaf::Splat(s)) => return splat_to(b, s, to),
        Some(Leaf::Bcast(src, dims)) => {
            let s_lo: Dims = dims.iter().map(|&d| lo[d]).collect();
            let s_hi: Dims = dims.iter().map(|&d| hi[d]).collect();
            if let Some(v) = extend_index(b, src, &s_lo, &s_hi)? {
                return emit::broadcast(b, v, to.clone(), dims);
            }
            let zero = b.constant(Array::scalar(b.ty(src).dtype, 0.0));
            let s = emit::push1(
                b,
                Op::Shape(ShapeOp::Pad {
                    lo: s_lo.into_boxed_slice(),
                    hi: s_hi.into_boxed_slice(),
                    interior: vec![0; dims.len()].into_boxed_slice(),
                }),
                &[src, zero],
            )?;
            return emit::broadcast(b, s, to.clone(), dims);
        }
        None => {}
    }
    let inst = match producer(b, x) {
        Some(i) if depth > 0 && movable(&i.op) => i.clone(),
        _ => {
            // Not reachable for values `cheap` accepted; pad explicitly as a fallback.
            let zero = b.constant(Array::scalar(ty.dtype, 0.0));
            return b.push1(
                Op::Shape(ShapeOp::Pad {
                    lo: lo.into(),
                    hi: hi.into(),
                    interior: vec![0; ty.rank()].into_boxed_slice(),
                }),
                &[x, zero],
            );
        }
    };
    let mut ext: SmallVec<[Value; 4]> = SmallVec::new();
    for &a in &inst.args {
        ext.push(extend(b, a, lo, hi, to, depth - 1)?);
    }
    emit::push1(b, inst.op.clone(), &ext)
}

/// An affine index `src` (`iota + c`, see [`masks`]) extended by `lo`/`hi` elements per axis
/// as the same affine function of the new index: `iota + (c - lo)` on the larger shape. Inside
/// the original range each element is the same integer as before; outside it `extend` may
/// hold anything, and an index that keeps counting lets masks built from differently shifted
/// copies be compared (`eq(j, i)` and `eq(j, i - 1)` are recognised as exclusive, which they
/// would not be after zero padding).
fn extend_index(b: &mut Builder, src: Value, lo: &[usize], hi: &[usize]) -> Result<Option<Value>> {
    let Some(a) = masks::affine(b, src) else {
        return Ok(None);
    };
    let sty = b.ty(src).clone();
    let shape = Shape(
        (0..sty.rank())
            .map(|k| lo[k] + sty.dims()[k] + hi[k])
            .collect(),
    );
    let offset = a.offset - lo[a.axis] as i64;
    let n = shape.dims()[a.axis] as i64;
    let fits = offset >= i64::from(i32::MIN) && offset + n - 1 <= i64::from(i32::MAX);
    if !fits {
        return Ok(None);
    }
    let iota = emit::push1(
        b,
        Op::Literal(LiteralOp::Iota {
            dtype: DType::I32,
            shape,
            axis: a.axis,
        }),
        &[],
    )?;
    emit::add_const(b, iota, offset as f64).map(Some)
}

/// The type of `op` applied to a value of type `from` (for the shape ops this module moves).
fn shape_type(op: &ShapeOp, from: &Type, pv: &Type) -> Result<Type> {
    op.infer(&[from.clone(), pv.clone()][..op_arity(op)])
}
