//! The `Tensor` API: a method for every primitive, NumPy-style broadcasting for binary ops,
//! operator overloading (with Rust scalars on either side), and NumPy-like constructors.
//!
//! Rust scalars mixed with tensors are *weakly typed*, as in JAX: `x * 2.0` takes `x`'s dtype.

use crate::array::Array;
use crate::error::{Error, ErrorKind};
use crate::ops::{
    BinaryOp, CompareOp, ConvertOp, DotGeneral, IndexOp, Literal, LiteralOp, Op, ReduceOp, ShapeOp,
    UnaryOp,
};
use crate::tracer::{apply, fail, Tensor};
use crate::types::{DType, Dims, Shape, Type};
use std::panic::Location;

/// Something usable as the second operand of a binary tensor op: a tensor, or a Rust scalar
/// that takes the other operand's dtype.
pub trait Operand {
    /// The operand as a tensor of dtype `like` when it is a weakly typed scalar.
    fn to_tensor(&self, like: DType) -> Tensor;
}

impl Operand for Tensor {
    fn to_tensor(&self, _: DType) -> Tensor {
        self.clone()
    }
}

impl Operand for &Tensor {
    fn to_tensor(&self, _: DType) -> Tensor {
        (*self).clone()
    }
}

macro_rules! scalar_operand {
    ($($t:ty),*) => {$(
        impl Operand for $t {
            fn to_tensor(&self, like: DType) -> Tensor {
                Tensor::from_array(Array::scalar(like, *self as f64))
            }
        }
    )*};
}
scalar_operand!(f64, f32, i32);

impl From<Array> for Tensor {
    fn from(a: Array) -> Tensor {
        Tensor::from_array(a)
    }
}

impl From<f64> for Tensor {
    fn from(x: f64) -> Tensor {
        Tensor::from_array(Array::from(x))
    }
}

impl From<f32> for Tensor {
    fn from(x: f32) -> Tensor {
        Tensor::from_array(Array::from(x))
    }
}

impl From<Vec<f64>> for Tensor {
    fn from(x: Vec<f64>) -> Tensor {
        Tensor::from_array(Array::from(x))
    }
}

impl From<Vec<f32>> for Tensor {
    fn from(x: Vec<f32>) -> Tensor {
        Tensor::from_array(Array::from(x))
    }
}

/// The NumPy broadcast shape of two shapes, if compatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Dims> {
    let r = a.len().max(b.len());
    let mut out = Dims::from_elem(0, r);
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

fn err(kind: ErrorKind, loc: &'static Location<'static>, msg: String) -> Tensor {
    fail(Error::new(kind, msg).at(loc))
}

impl Tensor {
    // ----- metadata -----

    /// The type; an error tensor reports `f64[]` (its error surfaces when the trace ends).
    pub fn ty(&self) -> Type {
        self.try_ty().unwrap_or_else(|_| Type::scalar(DType::F64))
    }

    /// The dimensions.
    pub fn shape(&self) -> Vec<usize> {
        self.ty().dims().to_vec()
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.ty().dtype
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.ty().rank()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.ty().size()
    }

    // ----- constructors -----

    /// A constant tensor from an array.
    pub fn constant(a: Array) -> Tensor {
        Tensor::from_array(a)
    }

    /// A rank-0 f64 constant.
    pub fn scalar(x: f64) -> Tensor {
        Tensor::from(x)
    }

    /// An f64 tensor of `shape` filled with `value`.
    #[track_caller]
    pub fn full(shape: &[usize], value: f64) -> Tensor {
        Tensor::full_dtype(DType::F64, shape, value)
    }

    /// A tensor of `dtype` and `shape` filled with `value`; a shape too large to hold is an
    /// error of the trace (kind `Size` or `Resource`).
    #[track_caller]
    pub fn full_dtype(dtype: DType, shape: &[usize], value: f64) -> Tensor {
        let loc = Location::caller();
        match Array::full(dtype, shape, value) {
            Ok(a) => Tensor::from_array(a),
            Err(e) => fail(e.at(loc)),
        }
    }

    /// An f64 tensor of zeros.
    #[track_caller]
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// An f64 tensor of ones.
    #[track_caller]
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Zeros of this tensor's type.
    #[track_caller]
    pub fn zeros_like(&self) -> Tensor {
        let ty = self.ty();
        Tensor::full_dtype(ty.dtype, ty.dims(), 0.0)
    }

    /// Ones of this tensor's type.
    #[track_caller]
    pub fn ones_like(&self) -> Tensor {
        let ty = self.ty();
        Tensor::full_dtype(ty.dtype, ty.dims(), 1.0)
    }

    /// `n` evenly spaced f64 values from `start` to `stop` inclusive (as NumPy's linspace).
    #[track_caller]
    pub fn linspace(start: f64, stop: f64, n: usize) -> Tensor {
        let step = if n > 1 {
            (stop - start) / (n - 1) as f64
        } else {
            0.0
        };
        Tensor::from_fn(n, "linspace", Location::caller(), |i| {
            if i + 1 == n && n > 1 {
                stop
            } else {
                start + step * i as f64
            }
        })
    }

    /// The f64 values `0, 1, ..., n - 1`.
    #[track_caller]
    pub fn arange(n: usize) -> Tensor {
        Tensor::from_fn(n, "arange", Location::caller(), |i| i as f64)
    }

    /// A rank-1 f64 constant of `n` values `f(0), ..., f(n - 1)`, its memory reserved
    /// fallibly; a failure is an error of the trace naming `what`.
    fn from_fn(
        n: usize,
        what: &str,
        loc: &'static Location<'static>,
        f: impl Fn(usize) -> f64,
    ) -> Tensor {
        let ty = Type::new(DType::F64, &[n]);
        let made = ty.check_size(what).and_then(|()| {
            let mut v = crate::alloc::try_with_capacity(n, format_args!("{what} of type {ty}"))?;
            v.extend((0..n).map(f));
            Ok(v)
        });
        match made {
            Ok(v) => Tensor::from(v),
            Err(e) => fail(e.at(loc)),
        }
    }

    /// The `n × n` f64 identity matrix.
    #[track_caller]
    pub fn eye(n: usize) -> Tensor {
        let loc = Location::caller();
        match Array::full(DType::F64, [n, n], 0.0) {
            Ok(mut a) => {
                if let Some(v) = a.as_f64_mut() {
                    for i in 0..n {
                        v[i * n + i] = 1.0;
                    }
                }
                Tensor::from_array(a)
            }
            Err(e) => fail(e.at(loc)),
        }
    }

    /// `iota`: the index along `axis` at every position of a `dtype` tensor of `shape`.
    #[track_caller]
    pub fn iota(dtype: DType, shape: &[usize], axis: usize) -> Tensor {
        apply(
            Op::Literal(LiteralOp::Iota {
                dtype,
                shape: Shape::new(shape),
                axis,
            }),
            &[],
            Location::caller(),
        )
    }

    // ----- unary -----

    #[track_caller]
    fn unary(&self, op: UnaryOp) -> Tensor {
        apply(Op::Unary(op), &[self], Location::caller())
    }
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                #[track_caller]
                pub fn $name(&self) -> Tensor {
                    self.unary(UnaryOp::$op)
                }
            )*
        }
    };
}

unary_methods! {
    /// −x.
    neg => Neg;
    /// |x|.
    abs => Abs;
    /// −1, 0 or 1.
    sign => Sign;
    /// Round toward −∞.
    floor => Floor;
    /// Round toward +∞.
    ceil => Ceil;
    /// Round half away from zero.
    round => Round;
    /// √x.
    sqrt => Sqrt;
    /// 1/√x.
    rsqrt => Rsqrt;
    /// eˣ.
    exp => Exp;
    /// 2ˣ.
    exp2 => Exp2;
    /// eˣ − 1.
    expm1 => Expm1;
    /// Natural logarithm.
    ln => Log;
    /// Natural logarithm (same as `ln`).
    log => Log;
    /// ln(1 + x).
    log1p => Log1p;
    /// Sine.
    sin => Sin;
    /// Cosine.
    cos => Cos;
    /// Tangent.
    tan => Tan;
    /// Arcsine.
    asin => Asin;
    /// Arccosine.
    acos => Acos;
    /// Arctangent.
    atan => Atan;
    /// Hyperbolic sine.
    sinh => Sinh;
    /// Hyperbolic cosine.
    cosh => Cosh;
    /// Hyperbolic tangent.
    tanh => Tanh;
    /// Inverse hyperbolic sine.
    asinh => Asinh;
    /// Inverse hyperbolic cosine.
    acosh => Acosh;
    /// Inverse hyperbolic tangent.
    atanh => Atanh;
    /// The logistic sigmoid.
    logistic => Logistic;
    /// The logistic sigmoid (same as `logistic`).
    sigmoid => Logistic;
    /// The error function.
    erf => Erf;
    /// x².
    square => Square;
    /// 1/x.
    recip => Reciprocal;
}

impl Tensor {
    /// xⁿ for a fixed integer exponent.
    #[track_caller]
    pub fn powi(&self, n: i32) -> Tensor {
        self.unary(UnaryOp::IntegerPow(n))
    }

    /// max(x, 0), with derivative 1 where x > 0 and 0 elsewhere (0 at x = 0, as JAX's relu);
    /// a NaN passes through.
    #[track_caller]
    pub fn relu(&self) -> Tensor {
        let keep = self.gt(0.0).or(&self.not_equal(self));
        keep.select(self, 0.0)
    }

    // ----- binary -----

    /// Broadcasts two operands to a common shape, NumPy-style, with explicit broadcast_in_dim.
    #[track_caller]
    fn broadcast_pair(&self, other: &Tensor, name: &str) -> Result<(Tensor, Tensor), Tensor> {
        let loc = Location::caller();
        let (ta, tb) = (self.ty(), other.ty());
        if ta.shape == tb.shape {
            return Ok((self.clone(), other.clone()));
        }
        let Some(shape) = broadcast_shapes(ta.dims(), tb.dims()) else {
            return Err(err(
                ErrorKind::Shape,
                loc,
                format!(
                    "{name}: shapes {} and {} do not broadcast",
                    ta.shape, tb.shape
                ),
            ));
        };
        let a = self.broadcast_to_at(&shape, loc);
        let b = other.broadcast_to_at(&shape, loc);
        Ok((a, b))
    }

    pub(crate) fn broadcast_to_at(
        &self,
        shape: &[usize],
        loc: &'static Location<'static>,
    ) -> Tensor {
        let ty = self.ty();
        if ty.dims() == shape {
            return self.clone();
        }
        if ty.rank() > shape.len() {
            return err(
                ErrorKind::Shape,
                loc,
                format!(
                    "broadcast_to: cannot broadcast {} to {}",
                    ty.shape,
                    Shape::new(shape)
                ),
            );
        }
        let off = shape.len() - ty.rank();
        let dims: Dims = (0..ty.rank()).map(|i| i + off).collect();
        apply(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(shape),
                dims: dims.into_boxed_slice(),
            }),
            &[self],
            loc,
        )
    }

    #[track_caller]
    fn binary_op(&self, op: BinaryOp, other: &dyn Operand) -> Tensor {
        let loc = Location::caller();
        let other = other.to_tensor(self.dtype());
        match self.broadcast_pair(&other, op.name()) {
            Ok((a, b)) => apply(Op::Binary(op), &[&a, &b], loc),
            Err(e) => e,
        }
    }

    /// Elementwise a + b (broadcasting).
    #[track_caller]
    pub fn add(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Add, &other)
    }

    /// Elementwise a − b (broadcasting).
    #[track_caller]
    pub fn sub(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Sub, &other)
    }

    /// Elementwise a · b (broadcasting).
    #[track_caller]
    pub fn mul(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Mul, &other)
    }

    /// Elementwise a / b (broadcasting).
    #[track_caller]
    pub fn div(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Div, &other)
    }

    /// Elementwise aᵇ (broadcasting).
    #[track_caller]
    pub fn pow(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Pow, &other)
    }

    /// Elementwise maximum (broadcasting; NaN propagates).
    #[track_caller]
    pub fn maximum(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Max, &other)
    }

    /// Elementwise minimum (broadcasting; NaN propagates).
    #[track_caller]
    pub fn minimum(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Min, &other)
    }

    /// Elementwise atan2(self, other) (broadcasting).
    #[track_caller]
    pub fn atan2(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Atan2, &other)
    }

    /// Elementwise remainder with the sign of self (broadcasting).
    #[track_caller]
    pub fn rem(&self, other: impl Operand) -> Tensor {
        self.binary_op(BinaryOp::Rem, &other)
    }

    // ----- comparisons and logic -----

    #[track_caller]
    fn compare(&self, op: CompareOp, other: &dyn Operand) -> Tensor {
        let loc = Location::caller();
        let other = other.to_tensor(self.dtype());
        match self.broadcast_pair(&other, op.name()) {
            Ok((a, b)) => apply(Op::Compare(op), &[&a, &b], loc),
            Err(e) => e,
        }
    }

    /// Elementwise a == b, as bool.
    #[track_caller]
    pub fn equal(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Eq, &other)
    }

    /// Elementwise a != b, as bool.
    #[track_caller]
    pub fn not_equal(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Ne, &other)
    }

    /// Elementwise a < b, as bool.
    #[track_caller]
    pub fn lt(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Lt, &other)
    }

    /// Elementwise a <= b, as bool.
    #[track_caller]
    pub fn le(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Le, &other)
    }

    /// Elementwise a > b, as bool.
    #[track_caller]
    pub fn gt(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Gt, &other)
    }

    /// Elementwise a >= b, as bool.
    #[track_caller]
    pub fn ge(&self, other: impl Operand) -> Tensor {
        self.compare(CompareOp::Ge, &other)
    }

    /// Logical and of two bool tensors.
    #[track_caller]
    pub fn and(&self, other: &Tensor) -> Tensor {
        self.compare(CompareOp::And, other)
    }

    /// Logical or of two bool tensors.
    #[track_caller]
    pub fn or(&self, other: &Tensor) -> Tensor {
        self.compare(CompareOp::Or, other)
    }

    /// Logical not of a bool tensor.
    #[track_caller]
    pub fn not(&self) -> Tensor {
        apply(Op::Compare(CompareOp::Not), &[self], Location::caller())
    }

    /// `select(self, on_true, on_false)` with `self` a bool predicate; all three broadcast.
    ///
    /// Derivatives follow JAX: the untaken branch gets a zero cotangent, but a zero times a
    /// non-finite derivative is still NaN. So the gradient of `x.gt(0.0).select(x.sqrt(), 0.0)`
    /// at `x = 0` is NaN, because `sqrt`'s derivative there is infinite even though that branch
    /// is not taken. The *double-where* idiom makes the untaken branch's operand safe as well:
    ///
    /// ```
    /// use ferrax_ir::{function, Tensor};
    /// let safe_sqrt = function(|x: Tensor| {
    ///     let pos = x.gt(0.0);
    ///     let safe_x = pos.select(&x, 1.0); // never 0 inside sqrt
    ///     pos.select(safe_x.sqrt(), 0.0)
    /// });
    /// let y: f64 = safe_sqrt.call(0.0).unwrap();
    /// assert_eq!(y, 0.0);
    /// ```
    #[track_caller]
    pub fn select(&self, on_true: impl Operand, on_false: impl Operand) -> Tensor {
        let loc = Location::caller();
        let like = {
            let t = on_true.to_tensor(DType::F64);
            if t.is_traced() || t.rank() > 0 {
                t.dtype()
            } else {
                on_false.to_tensor(DType::F64).dtype()
            }
        };
        let a = on_true.to_tensor(like);
        let b = on_false.to_tensor(a.dtype());
        let shape = broadcast_shapes(self.ty().dims(), a.ty().dims())
            .and_then(|s| broadcast_shapes(&s, b.ty().dims()));
        let Some(shape) = shape else {
            return err(
                ErrorKind::Shape,
                loc,
                format!(
                    "select: shapes {}, {} and {} do not broadcast",
                    self.ty().shape,
                    a.ty().shape,
                    b.ty().shape
                ),
            );
        };
        let p = self.broadcast_to_at(&shape, loc);
        let a = a.broadcast_to_at(&shape, loc);
        let b = b.broadcast_to_at(&shape, loc);
        apply(Op::Compare(CompareOp::Select), &[&p, &a, &b], loc)
    }

    // ----- conversion -----

    /// Converts to another dtype.
    #[track_caller]
    pub fn astype(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype && self.error().is_none() {
            return self.clone();
        }
        apply(
            Op::Convert(ConvertOp::Convert(dtype)),
            &[self],
            Location::caller(),
        )
    }

    /// The same value, with a zero derivative at every nesting level.
    #[track_caller]
    pub fn stop_gradient(&self) -> Tensor {
        apply(
            Op::Convert(ConvertOp::StopGradient),
            &[self],
            Location::caller(),
        )
    }

    // ----- shape -----

    /// Broadcasts to `shape` NumPy-style (trailing dimensions aligned).
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        self.broadcast_to_at(shape, Location::caller())
    }

    /// `broadcast_in_dim`: operand dimension `i` goes to result dimension `dims[i]`.
    #[track_caller]
    pub fn broadcast_in_dim(&self, shape: &[usize], dims: &[usize]) -> Tensor {
        let op = ShapeOp::BroadcastInDim {
            shape: Shape::new(shape),
            dims: dims.into(),
        };
        apply(Op::Shape(op), &[self], Location::caller())
    }

    /// Reshapes to `shape`; at most one dimension may be `usize::MAX` meaning "inferred".
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let loc = Location::caller();
        let mut dims = Dims::from_slice(shape);
        if let Some(pos) = dims.iter().position(|&d| d == usize::MAX) {
            let known = dims
                .iter()
                .filter(|&&d| d != usize::MAX)
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .unwrap_or(0);
            if known == 0 || !self.size().is_multiple_of(known) {
                return err(
                    ErrorKind::Shape,
                    loc,
                    format!(
                        "reshape: cannot infer a dimension of {shape:?} for {}",
                        self.ty()
                    ),
                );
            }
            dims[pos] = self.size() / known;
        }
        if dims.as_slice() == self.ty().dims() && self.error().is_none() {
            return self.clone();
        }
        apply(
            Op::Shape(ShapeOp::Reshape { shape: Shape(dims) }),
            &[self],
            loc,
        )
    }

    /// Permutes dimensions: result dimension `i` is dimension `perm[i]`.
    #[track_caller]
    pub fn transpose(&self, perm: &[usize]) -> Tensor {
        let op = ShapeOp::Transpose { perm: perm.into() };
        apply(Op::Shape(op), &[self], Location::caller())
    }

    /// Reverses the order of dimensions (the matrix transpose for rank 2).
    #[track_caller]
    pub fn t(&self) -> Tensor {
        let perm: Vec<usize> = (0..self.rank()).rev().collect();
        self.transpose(&perm)
    }

    /// A strided window `start..limit` step `stride` per dimension.
    #[track_caller]
    pub fn slice(&self, start: &[usize], limit: &[usize], stride: &[usize]) -> Tensor {
        let op = ShapeOp::Slice {
            start: start.into(),
            limit: limit.into(),
            stride: stride.into(),
        };
        apply(Op::Shape(op), &[self], Location::caller())
    }

    /// Elements `start..limit` of one axis (unit stride).
    #[track_caller]
    pub fn slice_axis(&self, axis: usize, start: usize, limit: usize) -> Tensor {
        let loc = Location::caller();
        let ty = self.ty();
        if axis >= ty.rank() {
            return err(
                ErrorKind::Axis,
                loc,
                format!("slice_axis: axis {axis} is out of range for {ty}"),
            );
        }
        let mut s = vec![0; ty.rank()];
        let mut l = ty.dims().to_vec();
        s[axis] = start;
        l[axis] = limit;
        let op = ShapeOp::Slice {
            start: s[..].into(),
            limit: l[..].into(),
            stride: vec![1; ty.rank()].into_boxed_slice(),
        };
        apply(Op::Shape(op), &[self], loc)
    }

    /// Pads with `value`: `lo` before, `hi` after and `interior` between elements per dimension.
    #[track_caller]
    pub fn pad(&self, lo: &[usize], hi: &[usize], interior: &[usize], value: f64) -> Tensor {
        let v = Tensor::from_array(Array::scalar(self.dtype(), value));
        let op = ShapeOp::Pad {
            lo: lo.into(),
            hi: hi.into(),
            interior: interior.into(),
        };
        apply(Op::Shape(op), &[self, &v], Location::caller())
    }

    /// Reverses the elements along `axes`.
    #[track_caller]
    pub fn rev(&self, axes: &[usize]) -> Tensor {
        apply(
            Op::Shape(ShapeOp::Rev { axes: axes.into() }),
            &[self],
            Location::caller(),
        )
    }

    /// Inserts a dimension of size 1 at `axis`.
    #[track_caller]
    pub fn expand_dims(&self, axis: usize) -> Tensor {
        let mut dims = self.shape();
        if axis > dims.len() {
            return err(
                ErrorKind::Axis,
                Location::caller(),
                format!("expand_dims: axis {axis} is out of range for {}", self.ty()),
            );
        }
        dims.insert(axis, 1);
        self.reshape(&dims)
    }

    // ----- reductions -----

    #[track_caller]
    fn reduce(&self, make: fn(Dims) -> ReduceOp, axes: &[usize]) -> Tensor {
        let mut a = Dims::from_slice(axes);
        a.sort_unstable();
        apply(Op::Reduce(make(a)), &[self], Location::caller())
    }

    /// Sum over `axes`.
    #[track_caller]
    pub fn sum(&self, axes: &[usize]) -> Tensor {
        self.reduce(|axes| ReduceOp::Sum { axes }, axes)
    }

    /// Sum of all elements (rank 0).
    #[track_caller]
    pub fn sum_all(&self) -> Tensor {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum(&axes)
    }

    /// Mean over `axes`.
    #[track_caller]
    pub fn mean(&self, axes: &[usize]) -> Tensor {
        let dims = self.shape();
        let n: usize = axes.iter().filter_map(|&a| dims.get(a)).product();
        self.sum(axes).div(n as f64)
    }

    /// Mean of all elements (rank 0).
    #[track_caller]
    pub fn mean_all(&self) -> Tensor {
        let n = self.size();
        self.sum_all().div(n as f64)
    }

    /// Maximum over `axes`.
    #[track_caller]
    pub fn max(&self, axes: &[usize]) -> Tensor {
        self.reduce(|axes| ReduceOp::Max { axes }, axes)
    }

    /// Minimum over `axes`.
    #[track_caller]
    pub fn min(&self, axes: &[usize]) -> Tensor {
        self.reduce(|axes| ReduceOp::Min { axes }, axes)
    }

    /// Product over `axes`.
    #[track_caller]
    pub fn prod(&self, axes: &[usize]) -> Tensor {
        self.reduce(|axes| ReduceOp::Prod { axes }, axes)
    }

    /// Index (i32) of the first maximum along `axis`.
    #[track_caller]
    pub fn argmax(&self, axis: usize) -> Tensor {
        apply(
            Op::Reduce(ReduceOp::ArgMax { axis }),
            &[self],
            Location::caller(),
        )
    }

    /// Index (i32) of the first minimum along `axis`.
    #[track_caller]
    pub fn argmin(&self, axis: usize) -> Tensor {
        apply(
            Op::Reduce(ReduceOp::ArgMin { axis }),
            &[self],
            Location::caller(),
        )
    }

    /// log(Σ exp(x)) over `axes`, computed stably (the max is subtracted, with its gradient
    /// stopped).
    #[track_caller]
    pub fn logsumexp(&self, axes: &[usize]) -> Tensor {
        let m = self.max(axes).stop_gradient();
        let shape = self.shape();
        let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        let mb = m.broadcast_in_dim(&shape, &kept);
        self.sub(&mb).exp().sum(axes).ln().add(&m)
    }

    /// Softmax along `axis`.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Tensor {
        let shape = self.shape();
        let kept: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
        let lse = self.logsumexp(&[axis]).broadcast_in_dim(&shape, &kept);
        self.sub(&lse).exp()
    }

    // ----- dot -----

    /// `dot_general` with explicit dimension numbers.
    #[track_caller]
    pub fn dot_general(&self, other: &Tensor, dims: DotGeneral) -> Tensor {
        apply(Op::Dot(Box::new(dims)), &[self, other], Location::caller())
    }

    /// NumPy's matmul: vector·vector, matrix·vector, vector·matrix, matrix·matrix, and batched
    /// matrix products over leading dimensions of equal rank.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        let loc = Location::caller();
        let (ra, rb) = (self.rank(), other.rank());
        let d = |v: &[usize]| Dims::from_slice(v);
        let dims = match (ra, rb) {
            (1, 1) | (2, 1) => DotGeneral {
                lhs_contract: d(&[ra - 1]),
                rhs_contract: d(&[0]),
                ..Default::default()
            },
            (1, 2) | (2, 2) => DotGeneral {
                lhs_contract: d(&[ra - 1]),
                rhs_contract: d(&[0]),
                ..Default::default()
            },
            (a, b) if a == b && a > 2 => {
                let batch: Vec<usize> = (0..a - 2).collect();
                DotGeneral {
                    lhs_contract: d(&[a - 1]),
                    rhs_contract: d(&[a - 2]),
                    lhs_batch: d(&batch),
                    rhs_batch: d(&batch),
                }
            }
            _ => {
                return err(
                    ErrorKind::Shape,
                    loc,
                    format!(
                        "matmul: unsupported operand types {} and {}",
                        self.ty(),
                        other.ty()
                    ),
                )
            }
        };
        apply(Op::Dot(Box::new(dims)), &[self, other], loc)
    }

    /// The inner product of two vectors (or `matmul` for higher ranks).
    #[track_caller]
    pub fn dot(&self, other: &Tensor) -> Tensor {
        self.matmul(other)
    }

    // ----- indexing -----

    /// Inclusive cumulative sum along `axis`.
    #[track_caller]
    pub fn cumsum(&self, axis: usize) -> Tensor {
        let op = IndexOp::Cumsum {
            axis,
            reverse: false,
        };
        apply(Op::Index(op), &[self], Location::caller())
    }

    /// A window of `sizes` starting at the i32 scalar tensors `starts` (clamped to fit).
    #[track_caller]
    pub fn dynamic_slice(&self, starts: &[Tensor], sizes: &[usize]) -> Tensor {
        let mut args: Vec<&Tensor> = vec![self];
        args.extend(starts.iter());
        let op = IndexOp::DynamicSlice {
            sizes: Dims::from_slice(sizes),
        };
        apply(Op::Index(op), &args, Location::caller())
    }

    /// A copy with `update` written at the i32 scalar tensors `starts` (clamped to fit).
    #[track_caller]
    pub fn dynamic_update_slice(&self, update: &Tensor, starts: &[Tensor]) -> Tensor {
        let mut args: Vec<&Tensor> = vec![self, update];
        args.extend(starts.iter());
        apply(
            Op::Index(IndexOp::DynamicUpdateSlice),
            &args,
            Location::caller(),
        )
    }

    /// Rows of `self` picked by the i32 `indices` (clamped): shape `indices.shape ++ rest`.
    #[track_caller]
    pub fn gather(&self, indices: &Tensor) -> Tensor {
        apply(
            Op::Index(IndexOp::Gather(Default::default())),
            &[self, indices],
            Location::caller(),
        )
    }

    /// Adds the rows of `updates` into a copy of `self` at the rows `indices` name.
    #[track_caller]
    pub fn scatter_add(&self, indices: &Tensor, updates: &Tensor) -> Tensor {
        apply(
            Op::Index(IndexOp::Scatter {
                at: Default::default(),
                combine: crate::ops::Combine::Add,
            }),
            &[self, indices, updates],
            Location::caller(),
        )
    }

    /// A one-hot encoding of i32 `self` (any shape) into `n` classes of `dtype`, as a new
    /// trailing dimension.
    #[track_caller]
    pub fn one_hot(&self, n: usize, dtype: DType) -> Tensor {
        let mut shape = self.shape();
        shape.push(n);
        let kept: Vec<usize> = (0..self.rank()).collect();
        let classes = Tensor::iota(DType::I32, &shape, shape.len() - 1);
        self.broadcast_in_dim(&shape, &kept)
            .equal(&classes)
            .astype(dtype)
    }
}

/// Concatenates tensors along `axis`.
#[track_caller]
pub fn concatenate(tensors: &[Tensor], axis: usize) -> Tensor {
    let args: Vec<&Tensor> = tensors.iter().collect();
    apply(
        Op::Shape(ShapeOp::Concatenate { axis }),
        &args,
        Location::caller(),
    )
}

/// `select(pred, on_true, on_false)`, NumPy's `where`.
#[track_caller]
pub fn select(pred: &Tensor, on_true: impl Operand, on_false: impl Operand) -> Tensor {
    pred.select(on_true, on_false)
}

/// Stacks equally shaped tensors along a new leading axis.
#[track_caller]
pub fn stack(tensors: &[Tensor]) -> Tensor {
    let expanded: Vec<Tensor> = tensors.iter().map(|t| t.expand_dims(0)).collect();
    concatenate(&expanded, 0)
}

/// A constant tensor from a literal, used by transforms that need constants in traces.
pub fn literal_tensor(l: &Literal) -> Tensor {
    Tensor::from_array(l.array().clone())
}

// ----- operator overloading -----

macro_rules! binop_impls {
    ($trait:ident, $method:ident, $op:ident) => {
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        binop_impls!(@scalar $trait, $method, $op, f64);
    };
    (@scalar $trait:ident, $method:ident, $op:ident, $t:ty) => {
        impl std::ops::$trait<$t> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<$t> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                self.binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.to_tensor(rhs.dtype()).binary_op(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.to_tensor(rhs.dtype()).binary_op(BinaryOp::$op, rhs)
            }
        }
    };
}

binop_impls!(Add, add, Add);
binop_impls!(Sub, sub, Sub);
binop_impls!(Mul, mul, Mul);
binop_impls!(Div, div, Div);

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
}

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
}
