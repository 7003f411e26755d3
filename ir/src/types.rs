//! Element types and static shapes: the `Type` every IR value carries.

use crate::error::{Error, ErrorKind, Result};
use smallvec::SmallVec;
use std::fmt;

/// The largest buffer, in bytes, that a value may need: `isize::MAX`, the most Rust's allocator
/// can hand out. Every type in a graph, every [`crate::Array`] and every type given to
/// `specialize` stays within it, so element counts, strides and byte sizes computed from a
/// checked shape never overflow.
pub const MAX_BYTES: usize = isize::MAX as usize;

/// The element type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 32-bit integers (indices, counters).
    I32,
    /// Booleans (masks, predicates).
    Bool,
}

impl DType {
    /// Every dtype, in a fixed order.
    pub const ALL: [DType; 4] = [DType::F32, DType::F64, DType::I32, DType::Bool];

    /// Whether this is a floating-point dtype (the only kind that can be differentiated).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Whether arithmetic is defined on this dtype (floats and i32).
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::Bool)
    }

    /// The size of one element in bytes, as stored in buffers.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::Bool => 1,
        }
    }

    /// The name used by the text format (`f32`, `f64`, `i32`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::Bool => "bool",
        }
    }

    /// Parses a dtype name of the text format.
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The dimensions of a value; rank 0 (a scalar) and zero-size dimensions are allowed.
pub type Dims = SmallVec<[usize; 4]>;

/// A static shape.
#[derive(Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape(pub Dims);

/// A shape is copied as one block of dimensions (the derived clone would copy them one by
/// one through an iterator; types are cloned on every equation built).
impl Clone for Shape {
    fn clone(&self) -> Shape {
        Shape(Dims::from_slice(&self.0))
    }
}

impl Shape {
    /// The shape of a scalar.
    pub fn scalar() -> Shape {
        Shape(Dims::new())
    }

    /// A shape from its dimensions.
    pub fn new(dims: &[usize]) -> Shape {
        Shape(Dims::from_slice(dims))
    }

    /// The number of dimensions.
    #[inline]
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dimensions as a slice.
    #[inline]
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Whether the dimensions are `dims`. Compared element by element rather than through
    /// the slices' `==`, which calls `memcmp`: shapes have a few dimensions, and a call
    /// checks every argument and output against its type.
    #[inline]
    pub fn is(&self, dims: &[usize]) -> bool {
        let own = self.dims();
        own.len() == dims.len() && own.iter().zip(dims).all(|(a, b)| a == b)
    }

    /// The number of elements (1 for a scalar, 0 when any dimension is 0), saturating at
    /// `usize::MAX`; exact for every shape that passed [`Shape::checked_size`].
    pub fn size(&self) -> usize {
        self.checked_size().unwrap_or(usize::MAX)
    }

    /// The number of elements, or `None` when the product of the dimensions overflows
    /// `usize`. A zero dimension makes the count 0 whatever the others are.
    pub fn checked_size(&self) -> Option<usize> {
        if self.0.contains(&0) {
            return Some(0);
        }
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Row-major strides in elements (saturating, like [`Shape::size`]).
    pub fn strides(&self) -> Dims {
        let mut s = Dims::from_elem(0, self.rank());
        let mut acc = 1usize;
        for i in (0..self.rank()).rev() {
            s[i] = acc;
            acc = acc.saturating_mul(self.0[i]);
        }
        s
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Shape {
        Shape::new(d)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Shape {
        Shape::new(&d)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Shape {
        Shape::new(&d)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// The type of an IR value: a dtype and a static shape, printed like `f64[3,2]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Type {
    /// The element type.
    pub dtype: DType,
    /// The static shape.
    pub shape: Shape,
}

impl Type {
    /// A type from a dtype and dimensions.
    pub fn new(dtype: DType, dims: &[usize]) -> Type {
        Type {
            dtype,
            shape: Shape::new(dims),
        }
    }

    /// A rank-0 type.
    pub fn scalar(dtype: DType) -> Type {
        Type {
            dtype,
            shape: Shape::scalar(),
        }
    }

    /// The rank of the shape.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// The dimensions of the shape.
    #[inline]
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.shape.size()
    }

    /// The number of bytes a buffer of this type needs, or `None` when it overflows `usize`.
    pub fn checked_bytes(&self) -> Option<usize> {
        self.shape
            .checked_size()?
            .checked_mul(self.dtype.size_bytes())
    }

    /// Checks that a buffer of this type can exist: its element count and byte size do not
    /// overflow and stay within [`MAX_BYTES`]. The error (of kind [`ErrorKind::Size`]) names
    /// `what` (an op or an entry point) and the type.
    pub fn check_size(&self, what: &str) -> Result<()> {
        match self.checked_bytes() {
            Some(b) if b <= MAX_BYTES => Ok(()),
            Some(b) => Err(Error::new(
                ErrorKind::Size,
                format!(
                    "{what}: type {self} needs {} ({b} bytes), more than the {} limit",
                    crate::alloc::fmt_bytes(b),
                    crate::alloc::fmt_bytes(MAX_BYTES)
                ),
            )),
            None => Err(Error::new(
                ErrorKind::Size,
                format!("{what}: the element count of type {self} overflows usize"),
            )),
        }
    }

    /// Whether this is a rank-0 type.
    pub fn is_scalar(&self) -> bool {
        self.shape.rank() == 0
    }

    /// The same shape with another dtype.
    pub fn with_dtype(&self, dtype: DType) -> Type {
        Type {
            dtype,
            shape: self.shape.clone(),
        }
    }

    /// The type with axis `axis` removed (one member of a batch along that axis), or `None`
    /// when the type has no such axis.
    pub fn without_axis(&self, axis: usize) -> Option<Type> {
        (axis < self.rank()).then(|| {
            let mut d = self.dims().to_vec();
            d.remove(axis);
            Type::new(self.dtype, &d)
        })
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
