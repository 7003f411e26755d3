//! Differentiation rules, one file per op family (mirroring `ferrax_ir::ops`).
//!
//! Each family has a `jvp` rule: given the primal operands, their tangents (`None` is a
//! symbolic zero) and the primal result, it emits the result's tangent, linear in the operand
//! tangents, preferably as `tangent * coefficient` where the coefficient is a primal value
//! (often computed from the result, as `1 - y²` for `tanh`, so that nested derivatives reuse
//! it). Linear ops also have a `transpose` rule: given which operands are linear and the
//! result's cotangent, it emits the cotangents of the linear operands.
//!
//! The matches are exhaustive with no `_ =>` arms: a new op does not compile until it has its
//! rules.

pub mod binary;
pub mod compare;
pub mod control;
pub mod conv;
pub mod convert;
pub mod dot;
pub mod index;
pub mod literal;
pub mod reduce;
pub mod shape;
pub mod unary;
pub mod window;

use ferrax_ir::{Builder, Error, ErrorKind, Op, Result, Type, Value};
use smallvec::SmallVec;

/// Cotangents of an equation's operands (`None` for primal operands and symbolic zeros).
pub type Cotangents = SmallVec<[Option<Value>; 4]>;

/// An operand of a linear equation seen by a transpose rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// An operand that depends linearly on the tangents; only its type is known.
    Linear(Type),
    /// An operand that does not depend on the tangents, with its value in the graph being built.
    Primal(Value),
}

impl Operand {
    /// The value of a primal operand.
    pub fn primal(&self) -> Option<Value> {
        match self {
            Operand::Linear(_) => None,
            Operand::Primal(v) => Some(*v),
        }
    }

    /// Whether the operand is linear.
    pub fn is_linear(&self) -> bool {
        matches!(self, Operand::Linear(_))
    }
}

/// The tangent of `op`'s result at primal operands `x` with tangents `t` and primal result `y`.
pub fn jvp(
    b: &mut Builder,
    op: &Op,
    x: &[Value],
    t: &[Option<Value>],
    y: Value,
) -> Result<Option<Value>> {
    if t.iter().all(Option::is_none) || !b.ty(y).dtype.is_float() {
        return Ok(None);
    }
    match op {
        Op::Unary(u) => unary::jvp(b, *u, x[0], t[0], y),
        Op::Binary(o) => binary::jvp(b, *o, x, t, y),
        Op::Compare(c) => compare::jvp(b, *c, x, t),
        Op::Convert(c) => convert::jvp(b, *c, x[0], t[0]),
        Op::Literal(l) => literal::jvp(l),
        Op::Shape(s) => shape::jvp(b, s, x, t),
        Op::Reduce(r) => reduce::jvp(b, r, x[0], t[0], y),
        Op::Dot(d) => dot::jvp(b, d, x, t),
        Op::Conv(c) => conv::jvp(b, c, x, t),
        Op::Index(i) => index::jvp(b, i, x, t, y),
        Op::Window(w) => window::jvp(b, w, x, t),
        Op::Control(c) => Err(Error::new(
            ErrorKind::Transform,
            format!(
                "jvp: `{}` may have several results; its rule is control::jvp",
                c.name()
            ),
        )),
    }
}

/// The cotangents of the linear operands of `op(args)` given the result's cotangent `ct`.
pub fn transpose(b: &mut Builder, op: &Op, args: &[Operand], ct: Value) -> Result<Cotangents> {
    match op {
        Op::Unary(u) => unary::transpose(b, *u, args, ct),
        Op::Binary(o) => binary::transpose(b, *o, args, ct),
        Op::Compare(c) => compare::transpose(b, *c, args, ct),
        Op::Convert(c) => convert::transpose(b, *c, args, ct),
        Op::Literal(l) => literal::transpose(l),
        Op::Shape(s) => shape::transpose(b, s, args, ct),
        Op::Reduce(r) => reduce::transpose(b, r, args, ct),
        Op::Dot(d) => dot::transpose(b, d, args, ct),
        Op::Conv(c) => conv::transpose(b, c, args, ct),
        Op::Index(i) => index::transpose(b, i, args, ct),
        Op::Control(c) => control::transpose(b, c, args, &[Some(ct)]),
        Op::Window(w) => window::transpose(b, w, args, ct),
    }
}

/// The transpose of a bilinear op (`dot_general`, `conv_general_dilated`) with respect to its
/// one linear operand: `lhs(b, linear type, other primal)` or `rhs(...)` gives the cotangent.
pub(crate) fn transpose_bilinear(
    b: &mut Builder,
    name: &str,
    args: &[Operand],
    lhs: impl FnOnce(&mut Builder, &Type, Value) -> Result<Value>,
    rhs: impl FnOnce(&mut Builder, &Type, Value) -> Result<Value>,
) -> Result<Cotangents> {
    match (&args[0], &args[1]) {
        (Operand::Linear(ty), Operand::Primal(w)) => {
            Ok([Some(lhs(b, ty, *w)?), None].into_iter().collect())
        }
        (Operand::Primal(x), Operand::Linear(ty)) => {
            Ok([None, Some(rhs(b, ty, *x)?)].into_iter().collect())
        }
        _ => Err(not_linear(name)),
    }
}

/// The error for transposing an op that is not linear in its linear operands.
pub(crate) fn not_linear(name: &str) -> Error {
    Error::new(
        ErrorKind::Transform,
        format!("transpose: `{name}` is not linear in the operands that carry tangents"),
    )
}

/// Cotangents with `ct` for the linear operands that `f` maps, `None` elsewhere.
pub(crate) fn for_linear(
    args: &[Operand],
    mut f: impl FnMut(usize, &Type) -> Result<Option<Value>>,
) -> Result<Cotangents> {
    args.iter()
        .enumerate()
        .map(|(k, a)| match a {
            Operand::Linear(ty) => f(k, ty),
            Operand::Primal(_) => Ok(None),
        })
        .collect()
}
