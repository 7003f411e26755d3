//! The simplifying emitter every transform builds through: it applies the exact algebraic
//! identities of [`crate::passes::identities`] before handing an equation to the `Builder`,
//! which then hash-conses it (CSE) and folds it when all operands are small constants.
//!
//! The small helpers below (`add`, `mul`, `full`, ...) keep the rules short and readable.

use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::timings::timed;
use ferrax_ir::{Array, Builder, DType, Dims, Graph, InstData, Op, Result, Shape, Type, Value};
use smallvec::SmallVec;

/// Appends `op` applied to `args` after trying the exact identities; returns the results.
pub(crate) fn push(b: &mut Builder, op: Op, args: &[Value]) -> Result<SmallVec<[Value; 1]>> {
    if let Some(v) = crate::passes::identities::rewrite(b, &op, args)? {
        return Ok(SmallVec::from_slice(&[v]));
    }
    if let Some(v) = crate::passes::structure::rewrite(b, &op, args)? {
        return Ok(SmallVec::from_slice(&[v]));
    }
    if is_commutative(&op) && args.len() == 2 && args[1] < args[0] {
        return b.push(op, &[args[1], args[0]]);
    }
    b.push(op, args)
}

/// Appends a single-result op through [`push`].
pub(crate) fn push1(b: &mut Builder, op: Op, args: &[Value]) -> Result<Value> {
    Ok(push(b, op, args)?[0])
}

/// Whether swapping the two operands of `op` never changes its result (IEEE add and mul are
/// commutative; max and min propagate NaN from either side).
fn is_commutative(op: &Op) -> bool {
    matches!(
        op,
        Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)
            | Op::Compare(CompareOp::Eq | CompareOp::Ne | CompareOp::And | CompareOp::Or)
    )
}

/// The instruction defining `v` in the graph being built, if any.
pub(crate) fn producer(b: &Builder, v: Value) -> Option<&InstData> {
    b.graph().producer(v).map(|(_, d)| d)
}

/// When `v` is a constant (or a broadcast of a constant) whose elements all equal one number,
/// that number.
pub(crate) fn splat(b: &Builder, v: Value) -> Option<f64> {
    if let Some(l) = b.literal(v) {
        return l.splat_value();
    }
    match producer(b, v) {
        Some(InstData {
            op: Op::Shape(ShapeOp::BroadcastInDim { .. }),
            args,
            ..
        }) => splat(b, args[0]),
        _ => None,
    }
}

/// Whether `v` is a constant splat of exactly `x` (for 0.0, the sign bit must match too).
pub(crate) fn is_splat(b: &Builder, v: Value, x: f64) -> bool {
    splat_is(b, v, splat(b, v), x)
}

/// [`is_splat`] given `splat(b, v)` (for callers that test one value against several numbers).
pub(crate) fn splat_is(b: &Builder, v: Value, splat: Option<f64>, x: f64) -> bool {
    match splat {
        Some(s) => {
            let int_like = !b.ty(v).dtype.is_float();
            s == x && (int_like || s.is_sign_negative() == x.is_sign_negative())
        }
        None => false,
    }
}

/// A value of type `ty` with every element equal to `x` (a scalar constant broadcast).
pub(crate) fn full(b: &mut Builder, ty: &Type, x: f64) -> Result<Value> {
    let s = b.constant(Array::scalar(ty.dtype, x));
    if ty.is_scalar() {
        return Ok(s);
    }
    broadcast(b, s, ty.shape.clone(), Dims::new())
}

/// Zeros of type `ty`.
pub(crate) fn zeros(b: &mut Builder, ty: &Type) -> Result<Value> {
    full(b, ty, 0.0)
}

/// A splat of `x` with the type of `like`.
pub(crate) fn like(b: &mut Builder, like: Value, x: f64) -> Result<Value> {
    let ty = b.ty(like).clone();
    full(b, &ty, x)
}

/// An elementwise unary op.
pub(crate) fn unary(b: &mut Builder, op: UnaryOp, x: Value) -> Result<Value> {
    push1(b, Op::Unary(op), &[x])
}

/// An elementwise binary op.
pub(crate) fn binary(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Result<Value> {
    push1(b, Op::Binary(op), &[x, y])
}

/// x + y.
pub(crate) fn add(b: &mut Builder, x: Value, y: Value) -> Result<Value> {
    binary(b, BinaryOp::Add, x, y)
}

/// x − y.
pub(crate) fn sub(b: &mut Builder, x: Value, y: Value) -> Result<Value> {
    binary(b, BinaryOp::Sub, x, y)
}

/// x · y.
pub(crate) fn mul(b: &mut Builder, x: Value, y: Value) -> Result<Value> {
    binary(b, BinaryOp::Mul, x, y)
}

/// x / y.
pub(crate) fn div(b: &mut Builder, x: Value, y: Value) -> Result<Value> {
    binary(b, BinaryOp::Div, x, y)
}

/// −x.
pub(crate) fn neg(b: &mut Builder, x: Value) -> Result<Value> {
    unary(b, UnaryOp::Neg, x)
}

/// x · c for a number `c` (splat to x's type).
pub(crate) fn scale(b: &mut Builder, x: Value, c: f64) -> Result<Value> {
    let c = like(b, x, c)?;
    mul(b, x, c)
}

/// c − x for a number `c`.
pub(crate) fn rsub(b: &mut Builder, c: f64, x: Value) -> Result<Value> {
    let c = like(b, x, c)?;
    sub(b, c, x)
}

/// x + c for a number `c`.
pub(crate) fn add_const(b: &mut Builder, x: Value, c: f64) -> Result<Value> {
    let c = like(b, x, c)?;
    add(b, x, c)
}

/// A comparison or logical op.
pub(crate) fn compare(b: &mut Builder, op: CompareOp, x: Value, y: Value) -> Result<Value> {
    push1(b, Op::Compare(op), &[x, y])
}

/// `select(p, x, y)`.
pub(crate) fn select(b: &mut Builder, p: Value, x: Value, y: Value) -> Result<Value> {
    push1(b, Op::Compare(CompareOp::Select), &[p, x, y])
}

/// Converts `x` to `dtype`.
pub(crate) fn convert(b: &mut Builder, x: Value, dtype: DType) -> Result<Value> {
    push1(b, Op::Convert(ConvertOp::Convert(dtype)), &[x])
}

/// Sums `x` over `axes` (ascending).
pub(crate) fn reduce_sum(b: &mut Builder, x: Value, axes: Dims) -> Result<Value> {
    push1(b, Op::Reduce(ReduceOp::Sum { axes }), &[x])
}

/// Sums every element of `x` into a scalar.
pub(crate) fn sum_all(b: &mut Builder, x: Value) -> Result<Value> {
    let axes: Dims = (0..b.ty(x).rank()).collect();
    reduce_sum(b, x, axes)
}

/// `broadcast_in_dim(x, shape, dims)`.
pub(crate) fn broadcast(b: &mut Builder, x: Value, shape: Shape, dims: Dims) -> Result<Value> {
    push1(
        b,
        Op::Shape(ShapeOp::BroadcastInDim {
            shape,
            dims: dims.into_boxed_slice(),
        }),
        &[x],
    )
}

/// `reshape(x, shape)`.
pub(crate) fn reshape(b: &mut Builder, x: Value, shape: Shape) -> Result<Value> {
    push1(b, Op::Shape(ShapeOp::Reshape { shape }), &[x])
}

/// `transpose(x, perm)`.
pub(crate) fn transpose(b: &mut Builder, x: Value, perm: Dims) -> Result<Value> {
    push1(
        b,
        Op::Shape(ShapeOp::Transpose {
            perm: perm.into_boxed_slice(),
        }),
        &[x],
    )
}

/// `slice(x, start, limit, stride)`.
pub(crate) fn slice(
    b: &mut Builder,
    x: Value,
    start: Dims,
    limit: Dims,
    stride: Dims,
) -> Result<Value> {
    push1(
        b,
        Op::Shape(ShapeOp::Slice {
            start: start.into_boxed_slice(),
            limit: limit.into_boxed_slice(),
            stride: stride.into_boxed_slice(),
        }),
        &[x],
    )
}

/// `concatenate(xs, axis)`.
pub(crate) fn concatenate(b: &mut Builder, xs: &[Value], axis: usize) -> Result<Value> {
    push1(b, Op::Shape(ShapeOp::Concatenate { axis }), xs)
}

/// Adds two optional (symbolically zero when `None`) values.
pub(crate) fn add_opt(
    b: &mut Builder,
    x: Option<Value>,
    y: Option<Value>,
) -> Result<Option<Value>> {
    Ok(match (x, y) {
        (Some(x), Some(y)) => Some(add(b, x, y)?),
        (x, None) => x,
        (None, y) => y,
    })
}

/// The value, or zeros of `ty` when it is symbolically zero.
pub(crate) fn or_zeros(b: &mut Builder, x: Option<Value>, ty: &Type) -> Result<Value> {
    match x {
        Some(x) => Ok(x),
        None => zeros(b, ty),
    }
}

/// Whether `op` creates a value from nothing (a constant or iota), so it can be re-emitted in
/// any graph instead of being passed in.
pub(crate) fn is_nullary(op: &Op) -> bool {
    matches!(op, Op::Literal(_))
}

/// Copies `g` into `b`, binding its parameters to `args`, through the simplifying emitter;
/// returns the values of its outputs.
pub fn inline(b: &mut Builder, g: &Graph, args: &[Value]) -> Result<Vec<Value>> {
    if args.len() != g.params().len() {
        ferrax_ir::bail!(
            Arity,
            "inline: the graph takes {} parameters but {} arguments were given",
            g.params().len(),
            args.len()
        );
    }
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (&p, &a) in g.params().iter().zip(args) {
        if b.ty(a) != g.ty(p) {
            ferrax_ir::bail!(
                DType,
                "inline: argument of type {} bound to a parameter of type {}",
                b.ty(a),
                g.ty(p)
            );
        }
        map[p.index()] = Some(a);
    }
    for (_, inst) in g.insts() {
        let ins: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("verified graph"))
            .collect();
        let outs = push(b, inst.op.clone(), &ins)?;
        for (&r, &o) in inst.results.iter().zip(&outs) {
            map[r.index()] = Some(o);
        }
    }
    Ok(g.outputs()
        .iter()
        .map(|&o| map[o.index()].expect("verified graph"))
        .collect())
}

/// A new graph with parameters of the given types whose body is built by `f`.
pub(crate) fn build_graph(
    param_tys: &[Type],
    f: impl FnOnce(&mut Builder, &[Value]) -> Result<Vec<Value>>,
) -> Result<Graph> {
    build_graph_sized(param_tys, 0, f)
}

/// [`build_graph`] with room for about `insts` equations from the start, for a transform
/// that knows the size of its result roughly (the JVP and VJP of a graph have about twice
/// its equations): the builder's vectors and hash-consing table then grow no more, instead
/// of being copied and rehashed at every doubling. Room that goes unused is address space
/// never written.
pub(crate) fn build_graph_sized(
    param_tys: &[Type],
    insts: usize,
    f: impl FnOnce(&mut Builder, &[Value]) -> Result<Vec<Value>>,
) -> Result<Graph> {
    let mut b = Builder::with_capacity(insts + param_tys.len(), insts);
    let params: Vec<Value> = param_tys.iter().map(|t| b.param(t.clone())).collect();
    let outs = f(&mut b, &params)?;
    Ok(b.finish(&outs))
}

/// Finishes an intermediate graph of a transform that will be inlined, through the
/// simplifying emitter, into a graph that gets the full [`finish`]: drops its dead code in
/// place and verifies it in debug builds. The full simplification of the final graph applies
/// everything a rebuild here would, so rebuilding every intermediate graph only cost time.
pub(crate) fn finish_lean(g: Graph) -> Result<Graph> {
    let g = timed("simplify.dce", || g.without_dead_code());
    if cfg!(debug_assertions) {
        g.verify()?;
    }
    Ok(g)
}

/// How a transform finishes the graph it built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Simplified and verified ([`finish`]): a graph handed to the user.
    Full,
    /// Dead code dropped ([`finish_lean`]): an intermediate graph.
    Lean,
}

impl Finish {
    /// Finishes `g` this way.
    pub(crate) fn apply(self, g: Graph) -> Result<Graph> {
        match self {
            Finish::Full => finish(g),
            Finish::Lean => finish_lean(g),
        }
    }
}

/// Simplifies and verifies a graph a transform produced (freeing it as soon as it is read).
pub(crate) fn finish(g: Graph) -> Result<Graph> {
    let g = crate::passes::try_simplify_owned(g)?;
    timed("verify", || g.verify())?;
    Ok(g)
}
