//! Index masks: what is known about boolean arrays computed from `iota`.
//!
//! Jacobians and Hessians select between vectors with masks such as `eq(col, row + 1)` or
//! `row >= 1`, where `row` and `col` are (broadcast) `i32` iotas. This module recognises such
//! masks symbolically, so that the structural rewrites can
//! - fold a comparison that has the same value at every element (`iota_n < n` is all true);
//! - decide a mask from what an enclosing `select` already established: inside
//!   `select(eq(col, row), t, f)`, the mask `eq(col, row + 1)` is false everywhere in `t`,
//!   since both cannot hold at one element.
//!
//! Every conclusion is a statement about integers that holds at each element, so rewrites
//! built on it are exact: they pick, at each element, the very value the original picked.
//!
//! An *affine index* is an `i32` array whose element at index `idx` equals `idx[axis] + offset`
//! exactly: an `iota`, plus or minus a splat constant, seen through broadcasts that keep the
//! axis. Each addition is checked to stay in the `i32` range at every element, so no wrapped
//! (modular) value is ever reasoned about as an integer.

use crate::emit::{producer, splat};
use ferrax_ir::ops::{BinaryOp, CompareOp, LiteralOp, ShapeOp};
use ferrax_ir::{Array, Builder, DType, InstData, Op, Value};

/// How deep mask expressions (`and`, `or`, `not`, index arithmetic) are looked into.
const DEPTH: usize = 8;

/// `idx[axis] + offset` over the elements of an `i32` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Affine {
    /// The axis whose index the value follows.
    pub axis: usize,
    /// The constant added to the index.
    pub offset: i64,
}

/// Whether `offset .. offset + len` (the values of an affine index over an axis of `len`
/// elements) lies within the `i32` range.
fn fits(offset: i64, len: usize) -> bool {
    let (lo, hi) = (i64::from(i32::MIN), i64::from(i32::MAX));
    len == 0 || (offset >= lo && offset + len as i64 - 1 <= hi)
}

/// The integer every element of the `i32` splat `v` holds.
fn int_splat(b: &Builder, v: Value) -> Option<i64> {
    if b.ty(v).dtype != DType::I32 {
        return None;
    }
    splat(b, v).map(|s| s as i64)
}

/// `v` as an affine index, if it is one.
pub(crate) fn affine(b: &Builder, v: Value) -> Option<Affine> {
    affine_at(b, v, DEPTH)
}

fn affine_at(b: &Builder, v: Value, depth: usize) -> Option<Affine> {
    let ty = b.ty(v);
    if ty.dtype != DType::I32 || ty.rank() == 0 || depth == 0 {
        return None;
    }
    if let Some(l) = b.literal(v) {
        return affine_literal(l.array());
    }
    match producer(b, v)? {
        InstData {
            op:
                Op::Literal(LiteralOp::Iota {
                    dtype: DType::I32,
                    axis,
                    ..
                }),
            ..
        } => Some(Affine {
            axis: *axis,
            offset: 0,
        }),
        InstData {
            op: Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub)),
            args,
            ..
        } => {
            let (x, y) = (args[0], args[1]);
            let (a, c) = match (int_splat(b, x), int_splat(b, y)) {
                (_, Some(c)) => {
                    let c = if *op == BinaryOp::Sub { -c } else { c };
                    (affine_at(b, x, depth - 1)?, c)
                }
                (Some(c), None) if *op == BinaryOp::Add => (affine_at(b, y, depth - 1)?, c),
                _ => return None,
            };
            // The operand's values are exactly `idx + a.offset`; the sum is exact when it
            // stays in range at every element (no wrap-around).
            let offset = a.offset + c;
            fits(offset, ty.dims()[a.axis]).then_some(Affine {
                axis: a.axis,
                offset,
            })
        }
        InstData {
            op: Op::Shape(ShapeOp::BroadcastInDim { shape, dims }),
            args,
            ..
        } => {
            let a = affine_at(b, args[0], depth - 1)?;
            let d = dims[a.axis];
            (b.ty(args[0]).dims()[a.axis] == shape.dims()[d]).then_some(Affine {
                axis: d,
                offset: a.offset,
            })
        }
        _ => None,
    }
}

/// The largest constant checked for being an affine index (small iotas are folded into
/// constants).
const LITERAL_LIMIT: usize = 4096;

/// A constant whose elements are `idx[axis] + c` (a folded iota plus a constant).
fn affine_literal(a: &Array) -> Option<Affine> {
    let n = a.size();
    if n == 0 || n > LITERAL_LIMIT || a.dtype() != DType::I32 {
        return None;
    }
    let dims = a.dims();
    let c = a.data().get_f64(0) as i64;
    (0..dims.len()).find_map(|axis| {
        // Flat index i has idx[axis] = (i / stride) % dims[axis] in row-major order.
        let stride: usize = dims[axis + 1..].iter().product();
        let ok = (0..n).all(|i| {
            let idx = (i / stride % dims[axis]) as i64;
            a.data().get_f64(i) as i64 == idx + c
        });
        ok.then_some(Affine { axis, offset: c })
    })
}

/// An elementary fact about the index of an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Atom {
    /// `idx[a] - idx[b] == k`, with `a < b`.
    Diag { a: usize, b: usize, k: i64 },
    /// `lo <= idx[axis] < hi`.
    Range { axis: usize, lo: i64, hi: i64 },
    /// The same truth value at every element.
    Const(bool),
}

/// The comparison `x op y` of two `i32` arrays as an atom and its polarity (`false` for a
/// negated atom), when both sides are affine indices or one is a splat.
fn compare_atom(b: &Builder, op: CompareOp, x: Value, y: Value) -> Option<(Atom, bool)> {
    if b.ty(x).dtype != DType::I32 {
        return None;
    }
    match (affine(b, x), affine(b, y)) {
        (Some(p), Some(q)) => {
            if p.axis == q.axis {
                // idx + p.offset  op  idx + q.offset
                let (u, v) = (p.offset, q.offset);
                let holds = match op {
                    CompareOp::Eq => u == v,
                    CompareOp::Ne => u != v,
                    CompareOp::Lt => u < v,
                    CompareOp::Le => u <= v,
                    CompareOp::Gt => u > v,
                    CompareOp::Ge => u >= v,
                    _ => return None,
                };
                return Some((Atom::Const(holds), true));
            }
            let pos = match op {
                CompareOp::Eq => true,
                CompareOp::Ne => false,
                _ => return None,
            };
            // idx[p] + u == idx[q] + v  ⇔  idx[p] - idx[q] == v - u.
            let atom = if p.axis < q.axis {
                Atom::Diag {
                    a: p.axis,
                    b: q.axis,
                    k: q.offset - p.offset,
                }
            } else {
                Atom::Diag {
                    a: q.axis,
                    b: p.axis,
                    k: p.offset - q.offset,
                }
            };
            Some((atom, pos))
        }
        (Some(p), None) => range_atom(op, p, int_splat(b, y)?),
        (None, Some(q)) => {
            let mirrored = match op {
                CompareOp::Lt => CompareOp::Gt,
                CompareOp::Le => CompareOp::Ge,
                CompareOp::Gt => CompareOp::Lt,
                CompareOp::Ge => CompareOp::Le,
                other => other,
            };
            range_atom(mirrored, q, int_splat(b, x)?)
        }
        (None, None) => None,
    }
}

/// `idx + p.offset  op  c` as a range of the index.
fn range_atom(op: CompareOp, p: Affine, c: i64) -> Option<(Atom, bool)> {
    let t = c - p.offset;
    let (lo, hi, pos) = match op {
        CompareOp::Eq => (t, t + 1, true),
        CompareOp::Ne => (t, t + 1, false),
        CompareOp::Lt => (i64::MIN, t, true),
        CompareOp::Le => (i64::MIN, t + 1, true),
        CompareOp::Gt => (t + 1, i64::MAX, true),
        CompareOp::Ge => (t, i64::MAX, true),
        _ => return None,
    };
    Some((
        Atom::Range {
            axis: p.axis,
            lo,
            hi,
        },
        pos,
    ))
}

/// The atom a mask value is (with its polarity), if it is a recognised comparison or a
/// broadcast of one along axes that keep their size.
fn atom_of(b: &Builder, m: Value) -> Option<(Atom, bool)> {
    match producer(b, m)? {
        InstData {
            op: Op::Compare(op),
            args,
            ..
        } if args.len() == 2 && !matches!(op, CompareOp::And | CompareOp::Or) => {
            compare_atom(b, *op, args[0], args[1])
        }
        InstData {
            op: Op::Shape(ShapeOp::BroadcastInDim { shape, dims }),
            args,
            ..
        } => {
            let (atom, pos) = atom_of(b, args[0])?;
            let src = b.ty(args[0]).dims().to_vec();
            let keeps = |a: usize| src[a] == shape.dims()[dims[a]];
            let atom = match atom {
                Atom::Const(c) => Atom::Const(c),
                Atom::Range { axis, lo, hi } if keeps(axis) => Atom::Range {
                    axis: dims[axis],
                    lo,
                    hi,
                },
                Atom::Diag { a, b, k } if keeps(a) && keeps(b) => {
                    let (p, q) = (dims[a], dims[b]);
                    // idx[p] - idx[q] == k, written with the smaller axis first.
                    if p < q {
                        Atom::Diag { a: p, b: q, k }
                    } else {
                        Atom::Diag { a: q, b: p, k: -k }
                    }
                }
                _ => return None,
            };
            Some((atom, pos))
        }
        _ => None,
    }
}

/// When the comparison `op(x, y)` of `i32` arrays has the same value at every element (the
/// index range of the array is known), that value.
pub(crate) fn constant_compare(b: &Builder, op: CompareOp, x: Value, y: Value) -> Option<bool> {
    let (atom, pos) = compare_atom(b, op, x, y)?;
    let dims = b.ty(x).dims().to_vec();
    let v = match atom {
        Atom::Const(c) => c,
        Atom::Range { axis, lo, hi } => {
            let n = dims[axis] as i64;
            if n == 0 {
                return None;
            }
            if lo <= 0 && hi >= n {
                true
            } else if hi <= 0 || lo >= n || lo >= hi {
                false
            } else {
                return None;
            }
        }
        Atom::Diag { .. } => return None,
    };
    Some(v == pos)
}

/// Facts established about the elements of one shape: masks known to hold or not to hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    /// Mask values with their known truth value.
    raw: Vec<(Value, bool)>,
    /// Recognised atoms with their known truth value.
    atoms: Vec<(Atom, bool)>,
    /// The dimensions of the shape the facts are about.
    dims: Vec<usize>,
}

impl Facts {
    /// The facts `m == val` (with everything that follows through `and`, `or` and `not`).
    pub(crate) fn new(b: &Builder, m: Value, val: bool) -> Facts {
        let mut f = Facts {
            dims: b.ty(m).dims().to_vec(),
            ..Facts::default()
        };
        f.add(b, m, val, DEPTH);
        f
    }

    fn add(&mut self, b: &Builder, m: Value, val: bool, depth: usize) {
        self.raw.push((m, val));
        if depth == 0 {
            return;
        }
        if let Some((atom, pos)) = atom_of(b, m) {
            self.atoms.push((atom, pos == val));
            return;
        }
        match producer(b, m) {
            Some(InstData {
                op: Op::Compare(CompareOp::Not),
                args,
                ..
            }) => self.add(b, args[0], !val, depth - 1),
            Some(InstData {
                op: Op::Compare(op @ (CompareOp::And | CompareOp::Or)),
                args,
                ..
            }) if (*op == CompareOp::And) == val => {
                // and(p, q) true, or or(p, q) false: both operands have that value.
                let (p, q) = (args[0], args[1]);
                self.add(b, p, val, depth - 1);
                self.add(b, q, val, depth - 1);
            }
            _ => {}
        }
    }

    /// The value of the mask `q` (of the facts' shape) wherever the facts hold, if they
    /// decide it.
    pub(crate) fn decide(&self, b: &Builder, q: Value) -> Option<bool> {
        self.decide_at(b, q, DEPTH)
    }

    fn decide_at(&self, b: &Builder, q: Value, depth: usize) -> Option<bool> {
        if let Some(&(_, v)) = self.raw.iter().find(|(m, _)| *m == q) {
            return Some(v);
        }
        if b.ty(q).dtype != DType::Bool {
            return None;
        }
        if let Some(s) = splat(b, q) {
            return Some(s != 0.0);
        }
        if depth == 0 {
            return None;
        }
        if let Some((atom, pos)) = atom_of(b, q) {
            return self.decide_atom(atom).map(|v| v == pos);
        }
        let inst = producer(b, q)?;
        let sub = |v: Value| self.decide_at(b, v, depth - 1);
        match &inst.op {
            Op::Compare(CompareOp::Not) => sub(inst.args[0]).map(|v| !v),
            Op::Compare(op @ (CompareOp::And | CompareOp::Or)) => {
                // The absorbing value: false for `and`, true for `or`.
                let absorb = *op == CompareOp::Or;
                let (x, y) = (sub(inst.args[0]), sub(inst.args[1]));
                if x == Some(absorb) || y == Some(absorb) {
                    Some(absorb)
                } else if x.is_some() && y.is_some() {
                    Some(!absorb)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Whether the facts decide `lo <= idx[axis] < hi`.
    pub(crate) fn decide_range(&self, axis: usize, lo: i64, hi: i64) -> Option<bool> {
        self.decide_atom(Atom::Range { axis, lo, hi })
    }

    /// What the atom facts say about `q`.
    fn decide_atom(&self, q: Atom) -> Option<bool> {
        if let Atom::Const(c) = q {
            return Some(c);
        }
        self.atoms
            .iter()
            .find_map(|&(f, val)| implied(f, val, q, &self.dims))
    }
}

/// The intersection of the half-open integer intervals `[lo, hi)`, `None` when empty.
fn meet(a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
    let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
    (lo < hi).then_some((lo, hi))
}

/// What `fact == val` says about `q`, for elements whose index lies in `dims`.
fn implied(fact: Atom, val: bool, q: Atom, dims: &[usize]) -> Option<bool> {
    match (fact, q) {
        (
            Atom::Diag { a, b, k },
            Atom::Diag {
                a: qa,
                b: qb,
                k: qk,
            },
        ) if (a, b) == (qa, qb) => {
            // One difference of indices cannot equal two different constants.
            if val {
                Some(k == qk)
            } else {
                (k == qk).then_some(false)
            }
        }
        (
            Atom::Range { axis, lo, hi },
            Atom::Range {
                axis: qa,
                lo: qlo,
                hi: qhi,
            },
        ) if axis == qa => {
            let all = (0, dims[axis] as i64);
            // The index values the fact leaves possible, as at most two intervals.
            let parts: Vec<(i64, i64)> = if val {
                meet(all, (lo, hi)).into_iter().collect()
            } else {
                [meet(all, (i64::MIN, lo)), meet(all, (hi, i64::MAX))]
                    .into_iter()
                    .flatten()
                    .collect()
            };
            if parts.is_empty() {
                return None;
            }
            let inside = |p: &(i64, i64)| p.0 >= qlo && p.1 <= qhi;
            let outside = |p: &(i64, i64)| meet(*p, (qlo, qhi)).is_none();
            if parts.iter().all(inside) {
                Some(true)
            } else if parts.iter().all(outside) {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}
