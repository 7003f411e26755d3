//! `Array`: an owned, contiguous, row-major n-dimensional array of one dtype, and its conversions.

use crate::alloc::try_filled;
use crate::error::{Error, ErrorKind, Result};
use crate::types::{DType, Shape, Type};
use std::fmt;

/// The elements of an [`Array`], one variant per dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// i32 elements.
    I32(Vec<i32>),
    /// bool elements.
    Bool(Vec<bool>),
}

impl Data {
    /// The dtype of the elements.
    #[inline]
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I32(_) => DType::I32,
            Data::Bool(_) => DType::Bool,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` converted to f64 (bools as 0 or 1).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v[i] as f64,
            Data::F64(v) => v[i],
            Data::I32(v) => v[i] as f64,
            Data::Bool(v) => v[i] as u8 as f64,
        }
    }

    /// A vector of `n` elements of `dtype` all equal to `value` (rounded or truncated as `as`),
    /// or a resource error naming `what` when the memory cannot be allocated.
    pub fn try_filled(dtype: DType, n: usize, value: f64, what: impl fmt::Display) -> Result<Data> {
        Ok(match dtype {
            DType::F32 => Data::F32(try_filled(n, value as f32, what)?),
            DType::F64 => Data::F64(try_filled(n, value, what)?),
            DType::I32 => Data::I32(try_filled(n, value as i32, what)?),
            DType::Bool => Data::Bool(try_filled(n, value != 0.0, what)?),
        })
    }

    /// An empty vector of `dtype` with room for `n` elements, or a resource error naming `what`
    /// when the memory cannot be allocated.
    pub fn try_with_capacity(dtype: DType, n: usize, what: impl fmt::Display) -> Result<Data> {
        use crate::alloc::try_with_capacity;
        Ok(match dtype {
            DType::F32 => Data::F32(try_with_capacity(n, what)?),
            DType::F64 => Data::F64(try_with_capacity(n, what)?),
            DType::I32 => Data::I32(try_with_capacity(n, what)?),
            DType::Bool => Data::Bool(try_with_capacity(n, what)?),
        })
    }

    /// A vector of `n` elements of `dtype` all equal to `value`, allocated infallibly: only for
    /// evaluations whose result memory `Op::eval` has already probed.
    pub(crate) fn filled(dtype: DType, n: usize, value: f64) -> Data {
        match dtype {
            DType::F32 => Data::F32(vec![value as f32; n]),
            DType::F64 => Data::F64(vec![value; n]),
            DType::I32 => Data::I32(vec![value as i32; n]),
            DType::Bool => Data::Bool(vec![value != 0.0; n]),
        }
    }

    /// Gathers elements by index into a new vector of the same dtype.
    pub fn take(&self, idx: impl Iterator<Item = usize>) -> Data {
        match self {
            Data::F32(v) => Data::F32(idx.map(|i| v[i]).collect()),
            Data::F64(v) => Data::F64(idx.map(|i| v[i]).collect()),
            Data::I32(v) => Data::I32(idx.map(|i| v[i]).collect()),
            Data::Bool(v) => Data::Bool(idx.map(|i| v[i]).collect()),
        }
    }
}

impl Data {
    /// The elements of several vectors of one dtype, one after another (an empty list gives
    /// an empty f64 vector).
    pub fn concat(parts: &[&Data]) -> Data {
        fn join<T: Copy>(parts: &[&Data], get: impl Fn(&Data) -> &[T]) -> Vec<T> {
            let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                out.extend_from_slice(get(p));
            }
            out
        }
        let Some(first) = parts.first() else {
            return Data::F64(Vec::new());
        };
        match first {
            Data::F32(_) => Data::F32(join(parts, |d| d.as_slice::<f32>())),
            Data::F64(_) => Data::F64(join(parts, |d| d.as_slice::<f64>())),
            Data::I32(_) => Data::I32(join(parts, |d| d.as_slice::<i32>())),
            Data::Bool(_) => Data::Bool(join(parts, |d| d.as_slice::<bool>())),
        }
    }

    /// The elements as a slice of `T`; empty when the dtype is not `T`'s.
    pub(crate) fn as_slice<T: Elem>(&self) -> &[T] {
        T::slice(self).unwrap_or(&[])
    }
}

/// The elements of an [`Array`] as mutable slices, one variant per dtype (see
/// [`Array::data_mut`]): a view that can change values but never the element count.
#[derive(Debug)]
pub enum DataMut<'a> {
    /// f32 elements.
    F32(&'a mut [f32]),
    /// f64 elements.
    F64(&'a mut [f64]),
    /// i32 elements.
    I32(&'a mut [i32]),
    /// bool elements.
    Bool(&'a mut [bool]),
}

impl DataMut<'_> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            DataMut::F32(v) => v.len(),
            DataMut::F64(v) => v.len(),
            DataMut::I32(v) => v.len(),
            DataMut::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A pointer to the first element, for handing the buffer to compiled code.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            DataMut::F32(v) => v.as_mut_ptr() as *mut u8,
            DataMut::F64(v) => v.as_mut_ptr() as *mut u8,
            DataMut::I32(v) => v.as_mut_ptr() as *mut u8,
            DataMut::Bool(v) => v.as_mut_ptr() as *mut u8,
        }
    }
}

/// A Rust element type stored in one [`Data`] variant.
pub(crate) trait Elem: Copy + PartialOrd + fmt::Debug + 'static {
    /// The elements of `data` when its variant holds `Self`.
    fn slice(data: &Data) -> Option<&[Self]>;
    /// Wraps a vector into its variant.
    fn wrap(v: Vec<Self>) -> Data;
}

macro_rules! impl_elem {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            fn slice(data: &Data) -> Option<&[$t]> {
                match data {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<$t>) -> Data {
                Data::$variant(v)
            }
        }
    };
}

impl_elem!(f32, F32);
impl_elem!(f64, F64);
impl_elem!(i32, I32);
impl_elem!(bool, Bool);

/// Declares (`decl`) or implements by forwarding to std (`impl f32`) the one-operand float
/// methods the unary ops use.
macro_rules! float_methods {
    (@list $mac:ident $($arg:tt)*) => {
        $mac!($($arg)*; abs floor ceil round sqrt exp exp2 exp_m1 ln ln_1p sin cos tan asin acos
            atan sinh cosh tanh);
    };
    (decl) => {
        float_methods!(@list float_decl);
    };
    (impl $t:ident) => {
        float_methods!(@list float_forward $t);
    };
}

/// Declares one-operand float methods (a helper of `float_methods`).
macro_rules! float_decl {
    (; $($m:ident)*) => {
        $(
            #[doc = concat!("As std's `", stringify!($m), "`.")]
            fn $m(self) -> Self;
        )*
    };
}

/// Forwards one-operand float methods to std (a helper of `float_methods`).
macro_rules! float_forward {
    ($t:ident; $($m:ident)*) => {
        $(fn $m(self) -> $t { $t::$m(self) })*
    };
}

/// Numeric element types (f32, f64, i32) with the arithmetic the reference interpreter uses.
/// Integer arithmetic wraps and never panics: division and remainder by zero give 0.
pub(crate) trait Num: Elem {
    /// The additive identity.
    const ZERO: Self;
    /// The multiplicative identity.
    const ONE: Self;
    /// The identity of `max` (−∞ or `i32::MIN`).
    const LOWEST: Self;
    /// The identity of `min` (+∞ or `i32::MAX`).
    const HIGHEST: Self;
    /// a + b.
    fn add(self, b: Self) -> Self;
    /// a − b.
    fn sub(self, b: Self) -> Self;
    /// −a (exact for floats, so −0 and +0 swap).
    fn neg(self) -> Self;
    /// a · b.
    fn mul(self, b: Self) -> Self;
    /// a / b (integers truncate; by zero gives 0).
    fn div(self, b: Self) -> Self;
    /// The remainder with the sign of a, as `%` (integers: by zero gives 0).
    fn rem(self, b: Self) -> Self;
    /// Whether the value is a NaN (never for integers).
    fn is_nan(self) -> bool;

    /// Whether the value is a negative zero (never for integers).
    fn is_neg_zero(self) -> bool;

    /// The larger operand; a NaN operand is returned as is, and +0 beats −0.
    fn max_nan(self, b: Self) -> Self {
        if self.is_nan() {
            self
        } else if b.is_nan() || b > self || (b == self && self.is_neg_zero()) {
            b
        } else {
            self
        }
    }

    /// The smaller operand; a NaN operand is returned as is, and −0 beats +0.
    fn min_nan(self, b: Self) -> Self {
        if self.is_nan() {
            self
        } else if b.is_nan() || b < self || (b == self && b.is_neg_zero()) {
            b
        } else {
            self
        }
    }
}

impl Num for i32 {
    const ZERO: i32 = 0;
    const ONE: i32 = 1;
    const LOWEST: i32 = i32::MIN;
    const HIGHEST: i32 = i32::MAX;
    fn add(self, b: i32) -> i32 {
        self.wrapping_add(b)
    }
    fn sub(self, b: i32) -> i32 {
        self.wrapping_sub(b)
    }
    fn neg(self) -> i32 {
        self.wrapping_neg()
    }
    fn mul(self, b: i32) -> i32 {
        self.wrapping_mul(b)
    }
    fn div(self, b: i32) -> i32 {
        if b == 0 {
            0
        } else {
            self.wrapping_div(b)
        }
    }
    fn rem(self, b: i32) -> i32 {
        if b == 0 {
            0
        } else {
            self.wrapping_rem(b)
        }
    }
    fn is_nan(self) -> bool {
        false
    }
    fn is_neg_zero(self) -> bool {
        false
    }
}

/// Floating-point element types: every method forwards to Rust's std method of the same name.
pub(crate) trait Float: Num {
    /// The value nearest to `x` (exact for f64).
    fn from_f64(x: f64) -> Self;
    /// The value widened to f64 (exact).
    fn to_f64(self) -> f64;
    /// `self` raised to the power `y`.
    fn powf(self, y: Self) -> Self;
    /// The four-quadrant arctangent of `self / x`.
    fn atan2(self, x: Self) -> Self;
    /// `sqrt(self² + y²)` without undue overflow (libm's `hypot`).
    fn hypot(self, y: Self) -> Self;
    /// `self` with the sign of `sign`.
    fn copysign(self, sign: Self) -> Self;
    float_methods!(decl);
}

macro_rules! impl_float {
    ($t:ident) => {
        impl Num for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const LOWEST: $t = $t::NEG_INFINITY;
            const HIGHEST: $t = $t::INFINITY;
            fn add(self, b: $t) -> $t {
                self + b
            }
            fn sub(self, b: $t) -> $t {
                self - b
            }
            fn neg(self) -> $t {
                -self
            }
            fn mul(self, b: $t) -> $t {
                self * b
            }
            fn div(self, b: $t) -> $t {
                self / b
            }
            fn rem(self, b: $t) -> $t {
                self % b
            }
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            fn is_neg_zero(self) -> bool {
                self == 0.0 && $t::is_sign_negative(self)
            }
        }
        impl Float for $t {
            fn from_f64(x: f64) -> $t {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn powf(self, y: $t) -> $t {
                $t::powf(self, y)
            }
            fn atan2(self, x: $t) -> $t {
                $t::atan2(self, x)
            }
            fn hypot(self, y: $t) -> $t {
                $t::hypot(self, y)
            }
            fn copysign(self, sign: $t) -> $t {
                $t::copysign(self, sign)
            }
            float_methods!(impl $t);
        }
    };
}

impl_float!(f32);
impl_float!(f64);

/// Row-major walk over the multi-indices of `dims`, yielding `base + Σ index[i] * strides[i]`
/// for each; the strides may be negative (reversal) or zero (broadcast). Nothing is yielded
/// when a dimension is 0, and exactly `base` for rank 0.
pub(crate) fn strided_offsets(dims: &[usize], strides: &[isize], base: isize) -> Vec<usize> {
    debug_assert_eq!(dims.len(), strides.len());
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let rank = dims.len();
    let mut idx = vec![0usize; rank];
    let mut off = base;
    loop {
        out.push(off as usize);
        // Advance the odometer: bump the last dimension, carrying into earlier ones.
        let mut d = rank;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < dims[d] {
                break;
            }
            off -= strides[d] * dims[d] as isize;
            idx[d] = 0;
        }
    }
}

/// Applies `f` to every element of `v`, wrapping the results into their [`Data`] variant.
pub(crate) fn map_vec<T: Elem, U: Elem>(v: &[T], f: impl FnMut(T) -> U) -> Data {
    U::wrap(v.iter().copied().map(f).collect())
}

/// Applies `f` to every pair of same-position elements of `a` and `b` (of equal length).
pub(crate) fn zip_vec<T: Elem, U: Elem>(a: &[T], b: &[T], mut f: impl FnMut(T, T) -> U) -> Data {
    U::wrap(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect())
}

/// The row-major strides of `dims` as signed numbers.
pub(crate) fn signed_strides(dims: &[usize]) -> Vec<isize> {
    Shape::new(dims)
        .strides()
        .iter()
        .map(|&s| s as isize)
        .collect()
}

/// An owned n-dimensional array: a dtype, a static shape and row-major contiguous elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    shape: Shape,
    data: Data,
}

impl Array {
    /// An array from a shape and its elements; the element count must match the shape. A
    /// shape whose size overflows, or whose buffer would exceed [`crate::MAX_BYTES`], is an
    /// error of kind [`ErrorKind::Size`].
    #[track_caller]
    pub fn new(shape: impl Into<Shape>, data: Data) -> Result<Array> {
        let loc = std::panic::Location::caller();
        let ty = Type {
            dtype: data.dtype(),
            shape: shape.into(),
        };
        ty.check_size("Array::new").map_err(|e| e.at(loc))?;
        if ty.size() != data.len() {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "Array::new: shape {} holds {} elements but {} were given",
                    ty.shape,
                    ty.size(),
                    data.len()
                ),
            )
            .here());
        }
        Ok(Array {
            shape: ty.shape,
            data,
        })
    }

    /// An array from parts already known to agree (crate-internal fast path).
    pub(crate) fn from_parts(shape: Shape, data: Data) -> Array {
        debug_assert_eq!(shape.size(), data.len());
        Array { shape, data }
    }

    /// An array from a shape and elements without the checks of [`Array::new`], for code
    /// that allocated the elements for a type it has already checked (the outputs of a
    /// compiled call, built on every call). User input goes through [`Array::new`].
    ///
    /// # Safety
    /// `data` must hold exactly `shape.size()` elements, and the shape's buffer must not
    /// exceed [`crate::MAX_BYTES`]: every array is relied on to hold as many elements as its
    /// shape says, within that limit.
    #[doc(hidden)]
    #[inline]
    pub unsafe fn from_parts_unchecked(shape: Shape, data: Data) -> Array {
        debug_assert_eq!(shape.checked_size(), Some(data.len()));
        Array { shape, data }
    }

    /// An array of `dtype` and `shape` filled with `value`. A shape whose size overflows is an
    /// error of kind [`ErrorKind::Size`]; memory that cannot be allocated is an error of kind
    /// [`ErrorKind::Resource`].
    #[track_caller]
    pub fn full(dtype: DType, shape: impl Into<Shape>, value: f64) -> Result<Array> {
        let loc = std::panic::Location::caller();
        let ty = Type {
            dtype,
            shape: shape.into(),
        };
        ty.check_size("Array::full").map_err(|e| e.at(loc))?;
        let data = Data::try_filled(
            dtype,
            ty.size(),
            value,
            format_args!("Array::full of type {ty}"),
        )
        .map_err(|e| e.at(loc))?;
        Ok(Array {
            shape: ty.shape,
            data,
        })
    }

    /// A zero-filled array of the given type (errors as [`Array::full`]).
    #[track_caller]
    pub fn zeros(ty: &Type) -> Result<Array> {
        Array::full(ty.dtype, ty.shape.clone(), 0.0)
    }

    /// A rank-0 array holding `value` converted to `dtype`.
    pub fn scalar(dtype: DType, value: f64) -> Array {
        let data = match dtype {
            DType::F32 => Data::F32(vec![value as f32]),
            DType::F64 => Data::F64(vec![value]),
            DType::I32 => Data::I32(vec![value as i32]),
            DType::Bool => Data::Bool(vec![value != 0.0]),
        };
        Array::from_parts(Shape::scalar(), data)
    }

    /// An f64 array from a shape and elements.
    #[track_caller]
    pub fn from_f64(shape: impl Into<Shape>, data: Vec<f64>) -> Result<Array> {
        Array::new(shape, Data::F64(data))
    }

    /// An f32 array from a shape and elements.
    #[track_caller]
    pub fn from_f32(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Array> {
        Array::new(shape, Data::F32(data))
    }

    /// An i32 array from a shape and elements.
    #[track_caller]
    pub fn from_i32(shape: impl Into<Shape>, data: Vec<i32>) -> Result<Array> {
        Array::new(shape, Data::I32(data))
    }

    /// A bool array from a shape and elements.
    #[track_caller]
    pub fn from_bool(shape: impl Into<Shape>, data: Vec<bool>) -> Result<Array> {
        Array::new(shape, Data::Bool(data))
    }

    /// The dtype of the elements.
    #[inline]
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape.
    #[inline]
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// The dimensions.
    #[inline]
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Whether this array has type `t` (its dtype and shape), found without building the
    /// type.
    #[inline]
    pub fn has_type(&self, t: &Type) -> bool {
        self.dtype() == t.dtype && self.shape.is(t.dims())
    }

    /// The IR type (dtype and shape) of this array.
    pub fn ty(&self) -> Type {
        Type {
            dtype: self.dtype(),
            shape: self.shape.clone(),
        }
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The elements.
    #[inline]
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The elements as mutable slices: values can change, the length cannot, so the buffer
    /// always holds exactly as many elements as the shape says.
    pub fn data_mut(&mut self) -> DataMut<'_> {
        match &mut self.data {
            Data::F32(v) => DataMut::F32(v),
            Data::F64(v) => DataMut::F64(v),
            Data::I32(v) => DataMut::I32(v),
            Data::Bool(v) => DataMut::Bool(v),
        }
    }

    /// The f64 elements as a mutable slice, when the dtype is f64.
    pub fn as_f64_mut(&mut self) -> Option<&mut [f64]> {
        match &mut self.data {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The f32 elements as a mutable slice, when the dtype is f32.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i32 elements as a mutable slice, when the dtype is i32.
    pub fn as_i32_mut(&mut self) -> Option<&mut [i32]> {
        match &mut self.data {
            Data::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The bool elements as a mutable slice, when the dtype is bool.
    pub fn as_bool_mut(&mut self) -> Option<&mut [bool]> {
        match &mut self.data {
            Data::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A copy of the array whose memory is reserved fallibly: a resource error naming `what`
    /// when it cannot be had.
    pub fn try_clone(&self, what: impl fmt::Display) -> Result<Array> {
        fn copy<T: Copy>(v: &[T], what: impl fmt::Display) -> Result<Vec<T>> {
            let mut out = crate::alloc::try_with_capacity(v.len(), what)?;
            out.extend_from_slice(v);
            Ok(out)
        }
        let data = match &self.data {
            Data::F32(v) => Data::F32(copy(v, what)?),
            Data::F64(v) => Data::F64(copy(v, what)?),
            Data::I32(v) => Data::I32(copy(v, what)?),
            Data::Bool(v) => Data::Bool(copy(v, what)?),
        };
        Ok(Array {
            shape: self.shape.clone(),
            data,
        })
    }

    /// Splits the array into its shape and elements.
    pub fn into_parts(self) -> (Shape, Data) {
        (self.shape, self.data)
    }

    /// The same elements under another shape with the same element count.
    #[track_caller]
    pub fn reshaped(self, shape: impl Into<Shape>) -> Result<Array> {
        Array::new(shape, self.data)
    }

    /// Every element converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F64(v) => v.clone(),
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            d => (0..d.len()).map(|i| d.get_f64(i)).collect(),
        }
    }

    /// The f64 elements, when the dtype is f64.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The f32 elements, when the dtype is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i32 elements, when the dtype is i32.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            Data::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The bool elements, when the dtype is bool.
    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            Data::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The single element of a one-element array, converted to f64.
    #[track_caller]
    pub fn to_scalar(&self) -> Result<f64> {
        if self.size() != 1 {
            return Err(Error::new(
                ErrorKind::Convert,
                format!("expected a one-element array, got {}", self.ty()),
            )
            .here());
        }
        Ok(self.data.get_f64(0))
    }

    /// The same values converted to another dtype (with Rust's `as` semantics).
    pub fn cast(&self, dtype: DType) -> Array {
        let n = self.size();
        let data = match dtype {
            DType::F64 => Data::F64(self.to_f64_vec()),
            DType::F32 => Data::F32(match &self.data {
                Data::F32(v) => v.clone(),
                Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
                Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
                Data::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
            }),
            DType::I32 => Data::I32(match &self.data {
                Data::F32(v) => v.iter().map(|&x| x as i32).collect(),
                Data::F64(v) => v.iter().map(|&x| x as i32).collect(),
                Data::I32(v) => v.clone(),
                Data::Bool(v) => v.iter().map(|&x| x as i32).collect(),
            }),
            DType::Bool => Data::Bool((0..n).map(|i| self.data.get_f64(i) != 0.0).collect()),
        };
        Array {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Whether two arrays have the same type and bitwise-equal elements (NaNs compare equal).
    pub fn bits_eq(&self, other: &Array) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (&self.data, &other.data) {
            (Data::F32(a), Data::F32(b)) => {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Data::F64(a), Data::F64(b)) => {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Data::I32(a), Data::I32(b)) => a == b,
            (Data::Bool(a), Data::Bool(b)) => a == b,
            _ => false,
        }
    }

    /// Feeds the type and the element bits to a hasher (used to hash-cons constants).
    pub fn hash_bits<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.shape.hash(state);
        self.dtype().hash(state);
        match &self.data {
            // Bits in blocks, each hashed as one slice of integers (one `write` of its bytes
            // rather than one per element: large constants are hashed by every rebuild).
            Data::F32(v) => {
                let mut buf = [0u32; 256];
                for c in v.chunks(256) {
                    for (b, x) in buf.iter_mut().zip(c) {
                        *b = x.to_bits();
                    }
                    u32::hash_slice(&buf[..c.len()], state);
                }
            }
            Data::F64(v) => {
                let mut buf = [0u64; 256];
                for c in v.chunks(256) {
                    for (b, x) in buf.iter_mut().zip(c) {
                        *b = x.to_bits();
                    }
                    u64::hash_slice(&buf[..c.len()], state);
                }
            }
            Data::I32(v) => v.hash(state),
            Data::Bool(v) => v.hash(state),
        }
    }
}

impl fmt::Display for Array {
    /// Prints nested brackets like NumPy, e.g. `[[1, 2], [3, 4]]`; scalars print bare.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn rec(a: &Array, f: &mut fmt::Formatter<'_>, dim: usize, offset: usize) -> fmt::Result {
            let dims = a.dims();
            if dim == dims.len() {
                return match &a.data {
                    Data::F32(v) => write!(f, "{}", v[offset]),
                    Data::F64(v) => write!(f, "{}", v[offset]),
                    Data::I32(v) => write!(f, "{}", v[offset]),
                    Data::Bool(v) => write!(f, "{}", v[offset]),
                };
            }
            let stride: usize = dims[dim + 1..].iter().product();
            write!(f, "[")?;
            for i in 0..dims[dim] {
                if i > 0 {
                    write!(f, ", ")?;
                }
                rec(a, f, dim + 1, offset + i * stride)?;
            }
            write!(f, "]")
        }
        rec(self, f, 0, 0)
    }
}

macro_rules! scalar_conversions {
    ($t:ty, $variant:ident, $dtype:expr) => {
        impl From<$t> for Array {
            fn from(x: $t) -> Array {
                Array {
                    shape: Shape::scalar(),
                    data: Data::$variant(vec![x]),
                }
            }
        }
        impl From<Vec<$t>> for Array {
            fn from(v: Vec<$t>) -> Array {
                Array {
                    shape: Shape::new(&[v.len()]),
                    data: Data::$variant(v),
                }
            }
        }
        impl From<&[$t]> for Array {
            fn from(v: &[$t]) -> Array {
                Array::from(v.to_vec())
            }
        }
        impl<const N: usize> From<[$t; N]> for Array {
            fn from(v: [$t; N]) -> Array {
                Array::from(v.to_vec())
            }
        }
        impl<const N: usize, const M: usize> From<[[$t; M]; N]> for Array {
            fn from(v: [[$t; M]; N]) -> Array {
                let flat: Vec<$t> = v.iter().flatten().copied().collect();
                Array {
                    shape: Shape::new(&[N, M]),
                    data: Data::$variant(flat),
                }
            }
        }
        impl TryFrom<&Array> for $t {
            type Error = Error;
            fn try_from(a: &Array) -> Result<$t> {
                match (&a.data, a.size()) {
                    (Data::$variant(v), 1) => Ok(v[0]),
                    _ => Err(Error::new(
                        ErrorKind::Convert,
                        format!(
                            "cannot convert an array of type {} to a {} scalar",
                            a.ty(),
                            $dtype.name()
                        ),
                    )),
                }
            }
        }
        impl TryFrom<Array> for $t {
            type Error = Error;
            fn try_from(a: Array) -> Result<$t> {
                <$t>::try_from(&a)
            }
        }
        impl TryFrom<&Array> for Vec<$t> {
            type Error = Error;
            fn try_from(a: &Array) -> Result<Vec<$t>> {
                match &a.data {
                    Data::$variant(v) => Ok(v.clone()),
                    _ => Err(Error::new(
                        ErrorKind::Convert,
                        format!(
                            "cannot convert an array of type {} to Vec<{}>",
                            a.ty(),
                            $dtype.name()
                        ),
                    )),
                }
            }
        }
        impl TryFrom<Array> for Vec<$t> {
            type Error = Error;
            fn try_from(a: Array) -> Result<Vec<$t>> {
                match a.data {
                    Data::$variant(v) => Ok(v),
                    _ => Err(Error::new(
                        ErrorKind::Convert,
                        format!(
                            "cannot convert an array of type {} to Vec<{}>",
                            a.ty(),
                            $dtype.name()
                        ),
                    )),
                }
            }
        }
    };
}

scalar_conversions!(f64, F64, DType::F64);
scalar_conversions!(f32, F32, DType::F32);
scalar_conversions!(i32, I32, DType::I32);
scalar_conversions!(bool, Bool, DType::Bool);

#[cfg(feature = "ndarray")]
mod nd {
    //! Conversions between `Array` and `ndarray::ArrayD`.
    use super::*;

    macro_rules! nd_conversions {
        ($t:ty, $variant:ident) => {
            impl From<ndarray::ArrayD<$t>> for Array {
                fn from(a: ndarray::ArrayD<$t>) -> Array {
                    let shape = Shape::new(a.shape());
                    let data: Vec<$t> = a.iter().copied().collect();
                    Array {
                        shape,
                        data: Data::$variant(data),
                    }
                }
            }
            impl TryFrom<Array> for ndarray::ArrayD<$t> {
                type Error = Error;
                fn try_from(a: Array) -> Result<ndarray::ArrayD<$t>> {
                    let dims = a.dims().to_vec();
                    let v: Vec<$t> = Vec::<$t>::try_from(a)?;
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), v)
                        .map_err(|e| Error::new(ErrorKind::Convert, e.to_string()))
                }
            }
        };
    }
    nd_conversions!(f64, F64);
    nd_conversions!(f32, F32);
    nd_conversions!(i32, I32);
    nd_conversions!(bool, Bool);
}
