//! Primitives. `Op` is a typed enum of op families; each family lives in its own file with its
//! type rule (`infer`), its reference semantics (`eval`) and its text name. The dispatch here is
//! the only place that lists the families.

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

pub use binary::BinaryOp;
pub use compare::CompareOp;
pub use control::{Body, CallKind, ControlOp, RematPolicy};
pub use conv::{ConvDimensionNumbers, ConvGeneral, ConvShape};
pub use convert::ConvertOp;
pub use dot::DotGeneral;
pub use index::{Bounds, Combine, IndexOp, Indexing, Walk};
pub use literal::{Literal, LiteralOp};
pub use reduce::ReduceOp;
pub use shape::ShapeOp;
pub use unary::UnaryOp;
pub use window::{Monoid, Select, Window, WindowOp};

use crate::array::Array;
use crate::error::{Error, ErrorKind, Result};
use crate::types::Type;
use smallvec::{smallvec, SmallVec};

/// A primitive with its static parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Elementwise functions of one operand.
    Unary(UnaryOp),
    /// Elementwise functions of two operands of the same type.
    Binary(BinaryOp),
    /// Comparisons (to bool), logic on bools, and `select`.
    Compare(CompareOp),
    /// Dtype conversion and `stop_gradient`.
    Convert(ConvertOp),
    /// Constants and `iota`: ops without operands.
    Literal(LiteralOp),
    /// Broadcast, reshape, transpose, slice, pad, concatenate, reverse.
    Shape(ShapeOp),
    /// Reductions over axes and arg-reductions.
    Reduce(ReduceOp),
    /// Generalized dot product with batch and contracting dimensions.
    Dot(Box<DotGeneral>),
    /// General dilated convolution with grouping (`conv_general_dilated`).
    Conv(Box<ConvGeneral>),
    /// Cumulative sums, dynamic slices, and gathers/scatters along an axis.
    Index(IndexOp),
    /// Control flow (switch, while, scan) and calls of sub-graphs (checkpoint, custom rules).
    Control(ControlOp),
    /// Windowed reductions and the select ops of their derivatives.
    Window(Box<WindowOp>),
}

/// Result types of one instruction (almost always one).
pub type Types = SmallVec<[Type; 1]>;

impl Op {
    /// The op's name in the text format (e.g. `sin`, `broadcast_in_dim`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(op) => op.name(),
            Op::Binary(op) => op.name(),
            Op::Compare(op) => op.name(),
            Op::Convert(op) => op.name(),
            Op::Literal(op) => op.name(),
            Op::Shape(op) => op.name(),
            Op::Reduce(op) => op.name(),
            Op::Dot(_) => "dot_general",
            Op::Conv(_) => "conv_general_dilated",
            Op::Index(op) => op.name(),
            Op::Control(op) => op.name(),
            Op::Window(op) => op.name(),
        }
    }

    /// The number of operands the op takes, when fixed (`None` for variadic ops).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Unary(_) | Op::Convert(_) | Op::Reduce(_) => Some(1),
            Op::Binary(_) | Op::Dot(_) | Op::Conv(_) => Some(2),
            Op::Compare(op) => Some(op.arity()),
            Op::Literal(_) => Some(0),
            Op::Shape(op) => op.arity(),
            Op::Index(op) => op.arity(),
            Op::Control(_) => None,
            Op::Window(op) => Some(op.arity()),
        }
    }

    /// The type rule: result types for operand types, or an error naming the op and the types.
    pub fn infer(&self, args: &[Type]) -> Result<Types> {
        if let Some(n) = self.arity() {
            if args.len() != n {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!("{} takes {} operands, got {}", self.name(), n, args.len()),
                ));
            }
        }
        let out: Types = match self {
            Op::Unary(op) => smallvec![op.infer(&args[0])?],
            Op::Binary(op) => smallvec![op.infer(&args[0], &args[1])?],
            Op::Compare(op) => smallvec![op.infer(args)?],
            Op::Convert(op) => smallvec![op.infer(&args[0])?],
            Op::Literal(op) => smallvec![op.infer()?],
            Op::Shape(op) => smallvec![op.infer(args)?],
            Op::Reduce(op) => smallvec![op.infer(&args[0])?],
            Op::Dot(op) => smallvec![op.infer(&args[0], &args[1])?],
            Op::Conv(op) => smallvec![op.infer(&args[0], &args[1])?],
            Op::Index(op) => smallvec![op.infer(args)?],
            Op::Control(op) => op.infer(args)?,
            Op::Window(op) => smallvec![op.infer(args)?],
        };
        // Every type in a graph describes a buffer that can exist: checked here, once, for
        // every op, so that sizes computed later from these types never overflow.
        for t in &out {
            t.check_size(self.name()).map_err(|e| {
                Error::new(
                    e.kind,
                    format!("{}; operand types {}", e.message, fmt_types(args)),
                )
            })?;
        }
        Ok(out)
    }

    /// The reference semantics: evaluates the op on concrete operands of inferred types.
    pub fn eval(&self, args: &[&Array]) -> Result<SmallVec<[Array; 1]>> {
        let tys: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let out = self.infer(&tys)?;
        // The evaluations below allocate infallibly; reserve their memory first (the results,
        // plus one index per element for the ops that gather by index) so that a result too
        // large for this machine is an error and not an abort.
        let bytes = |extra: usize| {
            out.iter().fold(0usize, |acc, t| {
                acc.saturating_add(t.size().saturating_mul(t.dtype.size_bytes() + extra))
            })
        };
        let total = bytes(std::mem::size_of::<usize>());
        if crate::alloc::probe(total, "").is_err() {
            let what = match out.as_slice() {
                [t] => t.to_string(),
                ts => fmt_types(ts),
            };
            crate::alloc::probe(
                bytes(0),
                format_args!("the output of {} {what}", self.name()),
            )?;
            return Err(crate::alloc::cannot_allocate(
                total,
                format_args!("the output of {} {what} with its index vector", self.name()),
            ));
        }
        Ok(match self {
            Op::Unary(op) => smallvec![op.eval(args[0])],
            Op::Binary(op) => smallvec![op.eval(args[0], args[1])],
            Op::Compare(op) => smallvec![op.eval(args)],
            Op::Convert(op) => smallvec![op.eval(args[0])],
            Op::Literal(op) => smallvec![op.eval()],
            Op::Shape(op) => smallvec![op.eval(args)],
            Op::Reduce(op) => smallvec![op.eval(args[0])],
            Op::Dot(op) => smallvec![op.eval(args[0], args[1])],
            Op::Conv(op) => smallvec![op.eval(args[0], args[1])],
            Op::Index(op) => smallvec![op.eval(args)],
            Op::Control(op) => op.eval(args)?,
            Op::Window(op) => smallvec![op.eval(args)],
        })
    }

    /// Whether the op is elementwise (each output element depends on the same-index inputs).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Convert(_)
        )
    }
}

/// Formats a type list for error messages: `(f64[3], f32[])`.
pub(crate) fn fmt_types(tys: &[Type]) -> String {
    let parts: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// An error of `kind` for op `name` applied to `tys`, with a reason.
pub(crate) fn op_error(
    kind: ErrorKind,
    name: &str,
    tys: &[Type],
    reason: impl std::fmt::Display,
) -> Error {
    Error::new(
        kind,
        format!("{name}: {reason}; operand types {}", fmt_types(tys)),
    )
}
