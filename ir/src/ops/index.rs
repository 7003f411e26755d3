//! Indexing ops: cumulative sums, dynamic slices and updates, gathers and scatters along an
//! axis.
//!
//! A gather or scatter is described by an [`Indexing`]: the indexed axis, whether the indices
//! replace that axis (`take`) or pair element by element with the operand's other dimensions
//! (`take_along_axis`), and what happens to indices outside `0..n`. Both kinds walk the same
//! way, as affine maps over an iteration space ([`Walk`]), which the interpreter and the JIT
//! share.

use super::op_error;
use crate::array::{signed_strides, strided_offsets, Array, Data, Num};
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Dims, Shape, Type};

/// An indexing op.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexOp {
    /// Inclusive cumulative sum along `axis`, from the end when `reverse`.
    Cumsum {
        /// The summed axis.
        axis: usize,
        /// Sum from the last element backwards.
        reverse: bool,
    },
    /// A window of static `sizes` at dynamic start indices: operands are the array then one i32
    /// scalar per dimension. Starts are clamped so the window fits, as in XLA.
    DynamicSlice {
        /// Window size per dimension.
        sizes: Dims,
    },
    /// Writes the second operand into a copy of the first at dynamic start indices (one i32
    /// scalar per dimension follows), clamped so the update fits.
    DynamicUpdateSlice,
    /// Elements of the first operand picked along an axis by the second (i32 indices); see
    /// [`Indexing`] for the result's shape and the out-of-range rule. The default indexing
    /// (axis 0, `take`, clipped) picks rows: operand `[n, rest..]`, result `index.shape ++ rest`.
    Gather(Indexing),
    /// Combines the third operand (the updates, shaped as the matching `Gather`'s result) into
    /// a copy of the first at the positions the second (i32 indices) names. Updates are applied
    /// in row-major order of the updates, so with repeated indices `add` and `mul` accumulate,
    /// `min`/`max` keep the extreme and `set` keeps the last. With `Combine::Add` it is the
    /// transpose of `Gather`.
    Scatter {
        /// Where the updates go.
        at: Indexing,
        /// How an update combines with the element it lands on.
        combine: Combine,
    },
}

/// Where a gather reads or a scatter writes.
///
/// With the operand's shape `pre ++ [n] ++ post` (`n` at `axis`):
/// - `along = false` (NumPy's `take`): indices of any shape `I` replace the axis; the gather's
///   result is `pre ++ I ++ post`, `out[p, i, q] = x[p, idx[i], q]`.
/// - `along = true` (NumPy's `take_along_axis`): indices have the operand's rank and its
///   dimensions except along `axis`, where their length `m` is free; the result has the
///   indices' shape, `out[p, j, q] = x[p, idx[p, j, q], q]`. Nothing broadcasts.
///
/// An index outside `0..n` is clamped into it under `Bounds::Clip` (XLA's gather and the
/// historical behaviour of `gather`/`scatter_add`); under `Bounds::Fill` a gather reads 0 there
/// and a scatter drops the update (JAX's `fill`/`drop` modes, with the fill value 0 so that the
/// op stays linear; `Tensor::take` selects NaN on top). Indices are never used unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Indexing {
    /// The indexed axis of the operand.
    pub axis: usize,
    /// Whether the indices pair with the operand's other dimensions (`take_along_axis`).
    pub along: bool,
    /// What an index outside the axis does.
    pub bounds: Bounds,
}

/// The treatment of indices outside `0..n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Bounds {
    /// Clamped into `0..n` (with `n = 0`, a gather gives zeros and a scatter drops).
    #[default]
    Clip,
    /// A gather reads zero, a scatter drops the update.
    Fill,
}

impl Bounds {
    /// The text-format name.
    pub fn name(self) -> &'static str {
        match self {
            Bounds::Clip => "clip",
            Bounds::Fill => "fill",
        }
    }

    /// The position an index names along an axis of length `n`, if any.
    pub fn resolve(self, i: i32, n: usize) -> Option<usize> {
        match self {
            Bounds::Clip if n > 0 => Some((i.max(0) as usize).min(n - 1)),
            Bounds::Clip => None,
            Bounds::Fill => usize::try_from(i).ok().filter(|&i| i < n),
        }
    }
}

/// How a scatter combines an update with the element it lands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Combine {
    /// The update replaces the element.
    Set,
    /// The update is added.
    Add,
    /// The element is multiplied by the update.
    Mul,
    /// The smaller of the two (NaN-propagating, as `min`).
    Min,
    /// The larger of the two (NaN-propagating, as `max`).
    Max,
}

impl Combine {
    /// Every combine, in text order.
    pub const ALL: [Combine; 5] = [
        Combine::Set,
        Combine::Add,
        Combine::Mul,
        Combine::Min,
        Combine::Max,
    ];

    /// The text-format name of the scatter that combines this way.
    pub fn op_name(self) -> &'static str {
        match self {
            Combine::Set => "scatter",
            Combine::Add => "scatter_add",
            Combine::Mul => "scatter_mul",
            Combine::Min => "scatter_min",
            Combine::Max => "scatter_max",
        }
    }
}

/// A gather's or scatter's iteration space (the gather's result, the scatter's updates) with
/// the affine maps from it into the indices and the operand.
///
/// The element at row-major position `k` of the iteration space, with coordinates `c`, reads
/// its index at `Σ c_d · idx_strides[d]`; the operand element it names is at
/// `Σ c_d · x_strides[d] + resolve(index) · axis_stride`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The iteration space.
    pub dims: Dims,
    /// Element strides into the indices, per iteration dimension.
    pub idx_strides: Dims,
    /// Element strides into the operand, per iteration dimension (0 where the index varies).
    pub x_strides: Dims,
    /// The operand's stride along the indexed axis.
    pub axis_stride: usize,
    /// The length of the indexed axis.
    pub n: usize,
}

impl Indexing {
    /// The text parameters that differ from the default, e.g. `[axis=1 along=true]`; empty for
    /// the default, so graphs written before axes existed print as they did.
    pub fn params(&self) -> String {
        let mut p = Vec::new();
        if self.axis != 0 {
            p.push(format!("axis={}", self.axis));
        }
        if self.along {
            p.push("along=true".to_string());
        }
        if self.bounds != Bounds::Clip {
            p.push(format!("bounds={}", self.bounds.name()));
        }
        if p.is_empty() {
            String::new()
        } else {
            format!("[{}]", p.join(" "))
        }
    }

    /// The shape a gather of an operand of type `x` by indices of type `idx` has, or an error
    /// for `op` naming what does not fit.
    pub fn result_dims(&self, op: &str, args: &[Type], x: &Type, idx: &Type) -> Result<Dims> {
        let axis = self.axis;
        if axis >= x.rank() {
            return Err(op_error(
                ErrorKind::Axis,
                op,
                args,
                format!(
                    "axis {axis} is out of range for an operand of rank {}",
                    x.rank()
                ),
            ));
        }
        if idx.dtype != DType::I32 {
            return Err(op_error(
                ErrorKind::DType,
                op,
                args,
                format!("indices must be i32, found {}", idx.dtype),
            ));
        }
        if self.along {
            let fits = idx.rank() == x.rank()
                && (0..x.rank()).all(|d| d == axis || idx.dims()[d] == x.dims()[d]);
            if !fits {
                return Err(op_error(
                    ErrorKind::Shape,
                    op,
                    args,
                    format!(
                        "indices along axis {axis} must have the operand's shape {} except \
                         along the axis, found {}",
                        x.shape, idx.shape
                    ),
                ));
            }
            return Ok(idx.shape.0.clone());
        }
        let mut dims: Dims = x.dims()[..axis].into();
        dims.extend_from_slice(idx.dims());
        dims.extend_from_slice(&x.dims()[axis + 1..]);
        Ok(dims)
    }

    /// The walk of a gather from an operand of shape `x` by indices of shape `idx` (types
    /// already checked by [`Indexing::result_dims`]).
    pub fn walk(&self, x: &[usize], idx: &[usize]) -> Walk {
        let axis = self.axis;
        let xs = Shape::new(x).strides();
        let is = Shape::new(idx).strides();
        if self.along {
            let mut x_strides: Dims = xs.iter().copied().collect();
            x_strides[axis] = 0;
            return Walk {
                dims: idx.into(),
                idx_strides: is.iter().copied().collect(),
                x_strides,
                axis_stride: xs[axis],
                n: x[axis],
            };
        }
        let (pre, post) = (&x[..axis], &x[axis + 1..]);
        let mut dims: Dims = pre.into();
        dims.extend_from_slice(idx);
        dims.extend_from_slice(post);
        let mut idx_strides = Dims::from_elem(0, pre.len());
        idx_strides.extend(is.iter().copied());
        idx_strides.extend(std::iter::repeat_n(0, post.len()));
        let mut x_strides: Dims = xs[..axis].iter().copied().collect();
        x_strides.extend(std::iter::repeat_n(0, idx.len()));
        x_strides.extend(xs[axis + 1..].iter().copied());
        Walk {
            dims,
            idx_strides,
            x_strides,
            axis_stride: xs[axis],
            n: x[axis],
        }
    }
}

impl Walk {
    /// Calls `f(k, x_base, idx_offset)` for every position `k` of the iteration space in
    /// row-major order, where `x_base` is the operand offset without the indexed axis.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let total: usize = self.dims.iter().product();
        if total == 0 {
            return;
        }
        let r = self.dims.len();
        let mut c = vec![0usize; r];
        let (mut xo, mut io) = (0usize, 0usize);
        for k in 0..total {
            f(k, xo, io);
            // Advance the odometer, updating both offsets incrementally.
            for d in (0..r).rev() {
                c[d] += 1;
                xo += self.x_strides[d];
                io += self.idx_strides[d];
                if c[d] < self.dims[d] {
                    break;
                }
                xo -= self.x_strides[d] * self.dims[d];
                io -= self.idx_strides[d] * self.dims[d];
                c[d] = 0;
            }
        }
    }
}

impl IndexOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            IndexOp::Cumsum { .. } => "cumsum",
            IndexOp::DynamicSlice { .. } => "dynamic_slice",
            IndexOp::DynamicUpdateSlice => "dynamic_update_slice",
            IndexOp::Gather(_) => "gather",
            IndexOp::Scatter { combine, .. } => combine.op_name(),
        }
    }

    /// The number of operands, when fixed (the dynamic ops take one index per dimension).
    pub fn arity(&self) -> Option<usize> {
        match self {
            IndexOp::Cumsum { .. } => Some(1),
            IndexOp::DynamicSlice { .. } | IndexOp::DynamicUpdateSlice => None,
            IndexOp::Gather(_) => Some(2),
            IndexOp::Scatter { .. } => Some(3),
        }
    }

    /// The type rule.
    pub fn infer(&self, args: &[Type]) -> Result<Type> {
        let name = self.name();
        let need = |n: usize| -> Result<()> {
            if args.len() != n {
                return Err(op_error(
                    ErrorKind::Arity,
                    name,
                    args,
                    format!("takes {n} operands, got {}", args.len()),
                ));
            }
            Ok(())
        };
        let scalar_indices = |idx: &[Type]| -> Result<()> {
            if idx.iter().any(|t| t.dtype != DType::I32 || !t.is_scalar()) {
                return Err(op_error(
                    ErrorKind::DType,
                    name,
                    args,
                    "start indices must be i32 scalars",
                ));
            }
            Ok(())
        };
        match self {
            IndexOp::Cumsum { axis, .. } => {
                need(1)?;
                let x = &args[0];
                if *axis >= x.rank() {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        format!("axis {axis} is out of range for rank {}", x.rank()),
                    ));
                }
                if !x.dtype.is_numeric() {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "needs a numeric operand",
                    ));
                }
                Ok(x.clone())
            }
            IndexOp::DynamicSlice { sizes } => {
                if args.is_empty() {
                    return Err(op_error(ErrorKind::Arity, name, args, "needs an operand"));
                }
                let x = &args[0];
                need(1 + x.rank())?;
                scalar_indices(&args[1..])?;
                if sizes.len() != x.rank() || sizes.iter().zip(x.dims()).any(|(s, d)| s > d) {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        format!("window sizes {sizes:?} do not fit"),
                    ));
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(sizes.clone()),
                })
            }
            IndexOp::DynamicUpdateSlice => {
                if args.len() < 2 {
                    return Err(op_error(
                        ErrorKind::Arity,
                        name,
                        args,
                        "needs an operand and an update",
                    ));
                }
                let (x, u) = (&args[0], &args[1]);
                need(2 + x.rank())?;
                scalar_indices(&args[2..])?;
                if u.dtype != x.dtype
                    || u.rank() != x.rank()
                    || u.dims().iter().zip(x.dims()).any(|(s, d)| s > d)
                {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        "the update does not fit",
                    ));
                }
                Ok(x.clone())
            }
            IndexOp::Gather(ix) => {
                need(2)?;
                let dims = ix.result_dims(name, args, &args[0], &args[1])?;
                Ok(Type {
                    dtype: args[0].dtype,
                    shape: Shape(dims),
                })
            }
            IndexOp::Scatter { at, combine } => {
                need(3)?;
                let (x, idx, upd) = (&args[0], &args[1], &args[2]);
                let dims = at.result_dims(name, args, x, idx)?;
                if *combine != Combine::Set && !x.dtype.is_numeric() {
                    return Err(op_error(
                        ErrorKind::DType,
                        name,
                        args,
                        "needs a numeric operand",
                    ));
                }
                if upd.dtype != x.dtype || upd.dims() != &dims[..] {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        format!("updates must have type {}{}", x.dtype, Shape(dims)),
                    ));
                }
                Ok(x.clone())
            }
        }
    }

    /// The reference semantics.
    ///
    /// `cumsum` adds in order along the axis (from the end when `reverse`), wrapping on i32.
    /// The dynamic ops clamp each start index into `[0, dim − size]` (XLA semantics), so the
    /// window always fits. Gathers and scatters resolve each index by their [`Bounds`]: a
    /// gather reads zero and a scatter drops the update where no position is named (always
    /// when the axis is empty). Scatters apply their updates in row-major order.
    pub fn eval(&self, args: &[&Array]) -> Array {
        let x = args[0];
        let xs = signed_strides(x.dims());
        match self {
            IndexOp::Cumsum { axis, reverse } => {
                let mut order: Vec<usize> = (0..x.rank()).filter(|d| d != axis).collect();
                order.push(*axis);
                let dims: Vec<usize> = order.iter().map(|&d| x.dims()[d]).collect();
                let strides: Vec<isize> = order.iter().map(|&d| xs[d]).collect();
                let offsets = strided_offsets(&dims, &strides, 0);
                let run = x.dims()[*axis];
                let data = match x.data() {
                    Data::F32(v) => cumsum(v, &offsets, run, *reverse),
                    Data::F64(v) => cumsum(v, &offsets, run, *reverse),
                    Data::I32(v) => cumsum(v, &offsets, run, *reverse),
                    Data::Bool(_) => unreachable!("cumsum: bool operands are rejected by infer"),
                };
                Array::from_parts(x.shape().clone(), data)
            }
            IndexOp::DynamicSlice { sizes } => {
                let base = clamped_base(x.dims(), sizes, &args[1..]);
                let offsets = strided_offsets(sizes, &xs, base);
                Array::from_parts(Shape(sizes.clone()), x.data().take(offsets.into_iter()))
            }
            IndexOp::DynamicUpdateSlice => {
                let u = args[1];
                let base = clamped_base(x.dims(), u.dims(), &args[2..]);
                // Position `n + k` of the joined data is element `k` of the update.
                let n = x.size();
                let mut src: Vec<usize> = (0..n).collect();
                for (k, o) in strided_offsets(u.dims(), &xs, base).into_iter().enumerate() {
                    src[o] = n + k;
                }
                let data = Data::concat(&[x.data(), u.data()]).take(src.into_iter());
                Array::from_parts(x.shape().clone(), data)
            }
            IndexOp::Gather(ix) => {
                let idx = args[1];
                let w = ix.walk(x.dims(), idx.dims());
                let iv = idx.data().as_slice::<i32>();
                let data = match x.data() {
                    Data::F32(v) => Data::F32(gather(v, 0.0, iv, &w, ix.bounds)),
                    Data::F64(v) => Data::F64(gather(v, 0.0, iv, &w, ix.bounds)),
                    Data::I32(v) => Data::I32(gather(v, 0, iv, &w, ix.bounds)),
                    Data::Bool(v) => Data::Bool(gather(v, false, iv, &w, ix.bounds)),
                };
                Array::from_parts(Shape(w.dims), data)
            }
            IndexOp::Scatter { at, combine } => {
                let (idx, upd) = (args[1], args[2]);
                let w = at.walk(x.dims(), idx.dims());
                let iv = idx.data().as_slice::<i32>();
                let b = at.bounds;
                let data = match (x.data(), upd.data()) {
                    (Data::F32(v), Data::F32(u)) => {
                        Data::F32(scatter_num(v, iv, u, &w, b, *combine))
                    }
                    (Data::F64(v), Data::F64(u)) => {
                        Data::F64(scatter_num(v, iv, u, &w, b, *combine))
                    }
                    (Data::I32(v), Data::I32(u)) => {
                        Data::I32(scatter_num(v, iv, u, &w, b, *combine))
                    }
                    (Data::Bool(v), Data::Bool(u)) => {
                        Data::Bool(scatter(v, iv, u, &w, b, |_, u| u))
                    }
                    _ => unreachable!("scatter: operand types are checked by infer"),
                };
                Array::from_parts(x.shape().clone(), data)
            }
        }
    }
}

/// The offset of a window of `sizes` in an array of `dims` at the given i32 scalar starts,
/// each clamped into `[0, dim − size]`.
fn clamped_base(dims: &[usize], sizes: &[usize], starts: &[&Array]) -> isize {
    let strides = signed_strides(dims);
    let mut base = 0isize;
    for (i, s) in starts.iter().enumerate() {
        let start = s.data().as_slice::<i32>()[0].max(0) as usize;
        base += start.min(dims[i] - sizes[i]) as isize * strides[i];
    }
    base
}

/// Inclusive running sums over each run of `run` elements of `v` named by `offsets`.
fn cumsum<T: Num>(v: &[T], offsets: &[usize], run: usize, reverse: bool) -> Data {
    let mut out = v.to_vec();
    for c in offsets.chunks(run.max(1)) {
        let mut acc = T::ZERO;
        let mut step = |o: usize| {
            acc = acc.add(v[o]);
            out[o] = acc;
        };
        if reverse {
            c.iter().rev().for_each(|&o| step(o));
        } else {
            c.iter().for_each(|&o| step(o));
        }
    }
    T::wrap(out)
}

/// The gather of `v` along the walk `w` by the indices `idx`; unnamed positions read `zero`.
fn gather<T: Copy>(v: &[T], zero: T, idx: &[i32], w: &Walk, bounds: Bounds) -> Vec<T> {
    let mut out = Vec::with_capacity(w.dims.iter().product());
    w.for_each(|_, xo, io| {
        out.push(match bounds.resolve(idx[io], w.n) {
            Some(p) => v[xo + p * w.axis_stride],
            None => zero,
        })
    });
    out
}

/// A copy of `v` with each update `upd[k]` combined by `f(old, update)` into the element its
/// index names along the walk `w`; updates naming no element are dropped.
fn scatter<T: Copy>(
    v: &[T],
    idx: &[i32],
    upd: &[T],
    w: &Walk,
    bounds: Bounds,
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let mut out = v.to_vec();
    w.for_each(|k, xo, io| {
        if let Some(p) = bounds.resolve(idx[io], w.n) {
            let o = xo + p * w.axis_stride;
            out[o] = f(out[o], upd[k]);
        }
    });
    out
}

/// [`scatter`] on numbers, combining as `combine` says (min and max as the binary ops do).
fn scatter_num<T: Num>(
    v: &[T],
    idx: &[i32],
    upd: &[T],
    w: &Walk,
    bounds: Bounds,
    combine: Combine,
) -> Vec<T> {
    match combine {
        Combine::Set => scatter(v, idx, upd, w, bounds, |_, u| u),
        Combine::Add => scatter(v, idx, upd, w, bounds, T::add),
        Combine::Mul => scatter(v, idx, upd, w, bounds, T::mul),
        Combine::Min => scatter(v, idx, upd, w, bounds, T::min_nan),
        Combine::Max => scatter(v, idx, upd, w, bounds, T::max_nan),
    }
}
