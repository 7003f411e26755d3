//! Indexing ops: cumulative sums, dynamic slices and updates, row gathers and scatter-adds.

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
    /// Rows of the first operand (shape `[n, rest..]`) picked by an i32 index array of any
    /// shape: the result has shape `index.shape ++ rest`. Indices are clamped to `0..n`.
    Gather,
    /// The transpose of `Gather`: adds each row of the third operand (shape
    /// `index.shape ++ rest`) into the first operand (shape `[n, rest..]`) at the row the second
    /// operand (i32 indices, clamped to `0..n`) names.
    ScatterAdd,
}

impl IndexOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            IndexOp::Cumsum { .. } => "cumsum",
            IndexOp::DynamicSlice { .. } => "dynamic_slice",
            IndexOp::DynamicUpdateSlice => "dynamic_update_slice",
            IndexOp::Gather => "gather",
            IndexOp::ScatterAdd => "scatter_add",
        }
    }

    /// The number of operands, when fixed (the dynamic ops take one index per dimension).
    pub fn arity(&self) -> Option<usize> {
        match self {
            IndexOp::Cumsum { .. } => Some(1),
            IndexOp::DynamicSlice { .. } | IndexOp::DynamicUpdateSlice => None,
            IndexOp::Gather => Some(2),
            IndexOp::ScatterAdd => Some(3),
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
            IndexOp::Gather => {
                need(2)?;
                let (x, idx) = (&args[0], &args[1]);
                if x.rank() == 0 || idx.dtype != DType::I32 {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        "needs an operand of rank >= 1 and i32 indices",
                    ));
                }
                let mut dims: Dims = idx.shape.0.clone();
                dims.extend_from_slice(&x.dims()[1..]);
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(dims),
                })
            }
            IndexOp::ScatterAdd => {
                need(3)?;
                let (x, idx, upd) = (&args[0], &args[1], &args[2]);
                if x.rank() == 0 || idx.dtype != DType::I32 || !x.dtype.is_numeric() {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        "needs a numeric operand of rank >= 1 and i32 indices",
                    ));
                }
                let mut dims: Dims = idx.shape.0.clone();
                dims.extend_from_slice(&x.dims()[1..]);
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
    /// window always fits. `gather` and `scatter_add` clamp each row index into `[0, n − 1]`;
    /// when the operand has no rows (n = 0), `gather` returns zeros of the result shape and
    /// `scatter_add` drops every update and returns the (empty) operand. `scatter_add` adds the
    /// update rows in row-major order of the index array, so repeated indices accumulate.
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
            IndexOp::Gather => {
                let idx = args[1];
                let mut dims: Dims = idx.shape().0.clone();
                dims.extend_from_slice(&x.dims()[1..]);
                let out = Shape(dims);
                let rows = x.dims()[0];
                if rows == 0 {
                    let n = out.size();
                    return Array::new(out, Data::filled(x.dtype(), n, 0.0))
                        .expect("the type rule checked the result's size");
                }
                let width: usize = x.dims()[1..].iter().product();
                let src = idx.data().as_slice::<i32>().iter().flat_map(|&i| {
                    let row = clamp_row(i, rows);
                    row * width..(row + 1) * width
                });
                Array::from_parts(out, x.data().take(src))
            }
            IndexOp::ScatterAdd => {
                let (idx, upd) = (args[1].data().as_slice::<i32>(), args[2]);
                let rows = x.dims()[0];
                let width: usize = x.dims()[1..].iter().product();
                let data = match (x.data(), upd.data()) {
                    (Data::F32(v), Data::F32(u)) => scatter_add(v, idx, u, rows, width),
                    (Data::F64(v), Data::F64(u)) => scatter_add(v, idx, u, rows, width),
                    (Data::I32(v), Data::I32(u)) => scatter_add(v, idx, u, rows, width),
                    _ => unreachable!("scatter_add: operand types are checked by infer"),
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

/// A row index clamped into `[0, rows − 1]` (`rows` is at least 1).
fn clamp_row(i: i32, rows: usize) -> usize {
    (i.max(0) as usize).min(rows - 1)
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

/// A copy of `v` (rows of `width` elements) with row `k` of `upd` added at row `idx[k]`.
fn scatter_add<T: Num>(v: &[T], idx: &[i32], upd: &[T], rows: usize, width: usize) -> Data {
    let mut out = v.to_vec();
    if rows > 0 {
        for (k, &i) in idx.iter().enumerate() {
            let row = clamp_row(i, rows);
            let dst = &mut out[row * width..(row + 1) * width];
            for (d, &u) in dst.iter_mut().zip(&upd[k * width..(k + 1) * width]) {
                *d = d.add(u);
            }
        }
    }
    T::wrap(out)
}
