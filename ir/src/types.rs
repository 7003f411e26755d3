//! Element types and static shapes: the `Type` every IR value carries.

use smallvec::SmallVec;
use std::fmt;

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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape(pub Dims);

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
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dimensions as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// The number of elements (1 for a scalar, 0 when any dimension is 0).
    pub fn size(&self) -> usize {
        self.0.iter().product()
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Dims {
        let mut s = Dims::from_elem(0, self.rank());
        let mut acc = 1;
        for i in (0..self.rank()).rev() {
            s[i] = acc;
            acc *= self.0[i];
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
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.shape.size()
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
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
