//! The one error type of ferrax: what went wrong, in which op, and at which line of the caller.
//!
//! Every misuse of the public API and every failure to run is an [`Error`]; no input reaches a
//! panic, an abort or undefined behaviour. The [`ErrorKind`] says which class of problem it is:
//!
//! | kind | when |
//! |---|---|
//! | `Shape`, `DType`, `Axis`, `Arity` | operands or arguments that do not fit an op, a transform or a compiled function (the message names both what was expected and what was found) |
//! | `Transform` | a transform applied where it is not defined (`grad` of a non-scalar output, of an integer input, ...) |
//! | `Trace` | a tracer used outside the trace that created it |
//! | `Parse`, `Verify` | text that is not a graph; a hand-built graph that breaks an IR invariant |
//! | `Size` | a shape whose element count or byte size overflows, or exceeds [`crate::MAX_BYTES`]: reported where the shape is made (an `Array`, an op's type rule, `specialize`, the parser), never later |
//! | `Resource` | memory that cannot be allocated, a call above its memory budget, a `while_loop` above its iteration limit; the process goes on |
//! | `Jit` | the native backend failed |
//! | `Convert` | a value that cannot become the requested Rust type |

use crate::types::Type;
use std::fmt;
use std::panic::Location;

/// What kind of misuse or failure an [`Error`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Operand shapes do not fit the op.
    Shape,
    /// Operand dtypes do not fit the op.
    DType,
    /// An axis, permutation or index parameter is out of range or malformed.
    Axis,
    /// A function was called with the wrong number of arguments or outputs.
    Arity,
    /// A transform was applied where it is not defined (non-scalar grad output, integer input...).
    Transform,
    /// A tracer was used outside the trace that created it.
    Trace,
    /// The text format could not be parsed.
    Parse,
    /// A graph broke one of the IR's invariants.
    Verify,
    /// The native backend failed or was called with buffers that do not fit.
    Jit,
    /// A value could not be converted to the requested Rust type.
    Convert,
    /// A shape's element count or byte size overflows, or exceeds the limit of
    /// [`crate::types::MAX_BYTES`] bytes that Rust's allocator can serve.
    Size,
    /// A resource ran out: an allocation failed, a call's workspace exceeds its memory budget,
    /// or a `while_loop` exceeded its iteration limit. The process keeps running.
    Resource,
    /// A parameter tree does not have the structure that was expected (a missing field, a
    /// `Vec` of another length, other static data); the message names the leaf's key path.
    Structure,
}

/// An error with a message naming the op, the shapes and dtypes involved, and where known the
/// caller's source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The kind of error.
    pub kind: ErrorKind,
    /// A sentence saying what went wrong.
    pub message: String,
    /// The user's source line that caused it, when known.
    pub location: Option<&'static Location<'static>>,
}

impl Error {
    /// A new error without a source location.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            location: None,
        }
    }

    /// Attaches the caller's location unless one is already known.
    pub fn at(mut self, location: &'static Location<'static>) -> Error {
        if self.location.is_none() {
            self.location = Some(location);
        }
        self
    }

    /// Attaches the location of the `#[track_caller]` chain's caller.
    #[track_caller]
    pub fn here(self) -> Error {
        self.at(Location::caller())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(loc) = self.location {
            write!(f, " (at {}:{})", loc.file(), loc.line())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// A count with its noun, for messages: `no values`, `1 value`, `2 values`.
pub fn count_of(n: usize, noun: &str) -> String {
    match n {
        0 => format!("no {noun}s"),
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// A list of types with its count, for messages: `2 values (f64[3], f32[])`, `1 value
/// (f64[])`, `no values ()` (with `noun` = `"value"`).
pub fn counted_types(tys: &[Type], noun: &str) -> String {
    let parts: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
    format!("{} ({})", count_of(tys.len(), noun), parts.join(", "))
}

/// How the type list `found` differs from `expected`, for messages, with the kind of error
/// that is: different counts are an [`ErrorKind::Arity`] error (`"2 values against 1"`),
/// otherwise the first position that differs is named (`"output 1 is f32[] where f64[] is
/// expected"`, with `item` = `"output"`) and the error is a [`ErrorKind::DType`] error when
/// the dtypes there differ, a [`ErrorKind::Shape`] error when only the shapes do. Equal lists
/// give an [`ErrorKind::DType`] error with an empty description.
pub fn type_difference(item: &str, found: &[Type], expected: &[Type]) -> (ErrorKind, String) {
    if found.len() != expected.len() {
        return (
            ErrorKind::Arity,
            format!("{} values against {}", found.len(), expected.len()),
        );
    }
    match found.iter().zip(expected).position(|(f, e)| f != e) {
        Some(k) => {
            let kind = if found[k].dtype != expected[k].dtype {
                ErrorKind::DType
            } else {
                ErrorKind::Shape
            };
            (
                kind,
                format!(
                    "{item} {k} is {} where {} is expected",
                    found[k], expected[k]
                ),
            )
        }
        None => (ErrorKind::DType, String::new()),
    }
}

/// The result type of every fallible ferrax operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an error of the given kind and a formatted message.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}
