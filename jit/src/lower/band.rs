//! Banded select chains: a fused 2-D group whose root is
//! `select(c₁, t₁, select(c₂, t₂, … select(cₖ, tₖ, d)))` where every condition `cₘ` is an
//! equality of integer index expressions that holds at exactly one column per row.
//!
//! Such chains are what one-hot bases turn into after simplification: the dense Hessian of a
//! function with a tridiagonal Hessian is three `select(eq(j, i + k), …)` around a default.
//! Evaluated elementwise, every element pays for every comparison; here each row is instead
//! written with the default (a plain, vectorised loop), then each band's value is computed
//! once per row at its column and stored over it, innermost select first, so that the
//! outermost condition wins where two bands meet, exactly as the chain says. Results are the
//! interpreter's bit for bit: every element still receives the value the chain selects, computed
//! by the same emitters from the same operands.
//!
//! An *index-affine* value is an `i32` tensor whose element at index `(x₀, …, xᵣ₋₁)` is
//! `c + Σ aₔ·xₔ`, built from `iota`, integer constants, `broadcast_in_dim`, `add`, `sub` and
//! `neg`, with every intermediate bounded well inside `i32` so that the wrapping arithmetic of
//! the interpreter never wraps. An equality of two such values over the result's two dims
//! `(i, j)` reads `αᵢ·i + αⱼ·j + γ = 0`; with `αⱼ = ±1` it holds at the single column
//! `j = −αⱼ·(αᵢ·i + γ)` of row `i`, which may lie outside the row (then nothing is written).

use ferrax_ir::ops::{BinaryOp, CompareOp, LiteralOp, ShapeOp, UnaryOp};
use ferrax_ir::{DType, Graph, InstData, Op, Value};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// A sub-expression of a fused group: its value, the members that compute it (in body order)
/// and which of the group's reads it loads.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    /// The value computed.
    pub value: Value,
    /// The member positions it needs, in body order.
    pub members: Vec<usize>,
    /// Per read of the group, whether this part loads it.
    pub reads: Vec<bool>,
}

/// One band of a chain: where row `i`'s condition holds (column `a·i + b`) and the value
/// selected there.
#[derive(Clone, Debug)]
pub(crate) struct Band {
    /// The column's slope in the row index.
    pub a: i64,
    /// The column at row 0.
    pub b: i64,
    /// The selected value.
    pub part: Part,
}

/// A banded select chain: the bands, outermost select first, and the default.
#[derive(Clone, Debug)]
pub(crate) struct Banded {
    /// The bands, outermost first (the outermost wins where bands meet).
    pub bands: Vec<Band>,
    /// The value where no condition holds.
    pub default: Part,
}

/// Bound on every intermediate of an index-affine value: far from `i32`'s range, so the
/// interpreter's wrapping arithmetic computes the exact integer.
const BOUND: i64 = 1 << 30;

/// An affine function of the indices of a value's dims: `c + Σ coeffs[d]·x[d]`.
#[derive(Clone, Debug, PartialEq)]
struct Affine {
    coeffs: SmallVec<[i64; 4]>,
    c: i64,
}

impl Affine {
    /// The largest magnitude the function takes over `dims`.
    fn max_abs(&self, dims: &[usize]) -> i64 {
        self.c.abs()
            + self
                .coeffs
                .iter()
                .zip(dims)
                .map(|(a, &n)| a.abs() * (n as i64 - 1).max(0))
                .sum::<i64>()
    }
}

/// The affine form of an `i32` value, when it is index-affine (module docs).
fn affine(graph: &Graph, v: Value, depth: usize) -> Option<Affine> {
    let ty = graph.ty(v);
    if ty.dtype != DType::I32 || depth > 16 {
        return None;
    }
    let dims = ty.dims();
    let (_, inst) = graph.producer(v)?;
    let f = match &inst.op {
        Op::Literal(LiteralOp::Iota { axis, .. }) => {
            let mut coeffs: SmallVec<[i64; 4]> = SmallVec::from_elem(0, dims.len());
            coeffs[*axis] = 1;
            Affine { coeffs, c: 0 }
        }
        Op::Literal(LiteralOp::Const(l)) => {
            let x = l.splat_value()?;
            Affine {
                coeffs: SmallVec::from_elem(0, dims.len()),
                c: x as i64,
            }
        }
        Op::Shape(ShapeOp::BroadcastInDim { dims: to, .. }) => {
            let x = inst.args[0];
            let a = affine(graph, x, depth + 1)?;
            let xdims = graph.ty(x).dims();
            let mut coeffs: SmallVec<[i64; 4]> = SmallVec::from_elem(0, dims.len());
            for (k, &d) in to.iter().enumerate() {
                // A size-1 operand dim is read at index 0 whatever the result index.
                if xdims[k] != 1 {
                    coeffs[d] = a.coeffs[k];
                }
            }
            Affine { coeffs, c: a.c }
        }
        Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub)) => {
            let x = affine(graph, inst.args[0], depth + 1)?;
            let y = affine(graph, inst.args[1], depth + 1)?;
            let s = if *op == BinaryOp::Add { 1 } else { -1 };
            Affine {
                coeffs: x
                    .coeffs
                    .iter()
                    .zip(&y.coeffs)
                    .map(|(p, q)| p + s * q)
                    .collect(),
                c: x.c + s * y.c,
            }
        }
        Op::Unary(UnaryOp::Neg) => {
            let x = affine(graph, inst.args[0], depth + 1)?;
            Affine {
                coeffs: x.coeffs.iter().map(|p| -p).collect(),
                c: -x.c,
            }
        }
        _ => return None,
    };
    (f.max_abs(dims) < BOUND).then_some(f)
}

/// The column `(a, b)` (`j = a·i + b`) where `cond` holds in row `i`, when `cond` is an
/// equality of index-affine values over a 2-D shape with a unit coefficient along the columns.
fn band_condition(graph: &Graph, cond: Value) -> Option<(i64, i64)> {
    let (_, inst) = graph.producer(cond)?;
    if inst.op != Op::Compare(CompareOp::Eq) || graph.ty(cond).rank() != 2 {
        return None;
    }
    let x = affine(graph, inst.args[0], 0)?;
    let y = affine(graph, inst.args[1], 0)?;
    let (ai, aj, c) = (
        x.coeffs[0] - y.coeffs[0],
        x.coeffs[1] - y.coeffs[1],
        x.c - y.c,
    );
    // ai·i + aj·j + c = 0 with aj = ±1 (so 1/aj = aj).
    matches!(aj, 1 | -1).then_some((-aj * ai, -aj * c))
}

/// The members and reads `value` needs within a group (`member_of`: member results to their
/// positions; `read_of`: read indices of leaves and broadcast results).
fn part(
    insts: &[&InstData],
    member_of: &HashMap<Value, usize>,
    read_of: &HashMap<Value, usize>,
    nreads: usize,
    value: Value,
) -> Part {
    let mut members: Vec<usize> = Vec::new();
    let mut reads = vec![false; nreads];
    let mut stack = vec![value];
    let mut seen: HashMap<Value, ()> = HashMap::new();
    while let Some(v) = stack.pop() {
        if seen.insert(v, ()).is_some() {
            continue;
        }
        match member_of.get(&v) {
            // A broadcast reads its operand, unless it passes a member through.
            Some(&j) if read_of.contains_key(&v) => {
                members.push(j);
                reads[read_of[&v]] = true;
            }
            Some(&j) => {
                members.push(j);
                stack.extend(insts[j].args.iter().copied());
            }
            None => {
                if let Some(&k) = read_of.get(&v) {
                    reads[k] = true;
                }
            }
        }
    }
    members.sort_unstable();
    Part {
        value,
        members,
        reads,
    }
}

/// The banded form of the elementwise group with `members` (body order, root last) and
/// result `out`, when its root is a select chain with at least one band condition (module
/// docs). The caller checks that the loop runs over `out`'s two dims uncoalesced.
pub(crate) fn banded(
    graph: &Graph,
    insts: &[&InstData],
    members: &[usize],
    out: Value,
    read_of: &HashMap<Value, usize>,
    nreads: usize,
) -> Option<Banded> {
    // Most 2-D groups are not select chains: look at the root (the last member) first.
    if members.last().map(|&r| &insts[r].op) != Some(&Op::Compare(CompareOp::Select)) {
        return None;
    }
    let member_of: HashMap<Value, usize> =
        members.iter().map(|&j| (insts[j].results[0], j)).collect();
    let mut bands = Vec::new();
    let mut v = out;
    while let Some(&j) = member_of.get(&v) {
        let inst = insts[j];
        if inst.op != Op::Compare(CompareOp::Select) {
            break;
        }
        let Some((a, b)) = band_condition(graph, inst.args[0]) else {
            break;
        };
        let part = part(insts, &member_of, read_of, nreads, inst.args[1]);
        bands.push(Band { a, b, part });
        v = inst.args[2];
    }
    if bands.is_empty() {
        return None;
    }
    let default = part(insts, &member_of, read_of, nreads, v);
    Some(Banded { bands, default })
}
