//! Indexing ops: cumulative sums, dynamic slices and updates, row gathers and scatter-adds.

use super::op_error;
use crate::array::Array;
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
                return Err(op_error(ErrorKind::DType, name, args, "start indices must be i32 scalars"));
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
                    return Err(op_error(ErrorKind::DType, name, args, "needs a numeric operand"));
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
                Ok(Type { dtype: x.dtype, shape: Shape(sizes.clone()) })
            }
            IndexOp::DynamicUpdateSlice => {
                if args.len() < 2 {
                    return Err(op_error(ErrorKind::Arity, name, args, "needs an operand and an update"));
                }
                let (x, u) = (&args[0], &args[1]);
                need(2 + x.rank())?;
                scalar_indices(&args[2..])?;
                if u.dtype != x.dtype
                    || u.rank() != x.rank()
                    || u.dims().iter().zip(x.dims()).any(|(s, d)| s > d)
                {
                    return Err(op_error(ErrorKind::Shape, name, args, "the update does not fit"));
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
                Ok(Type { dtype: x.dtype, shape: Shape(dims) })
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
    pub fn eval(&self, args: &[&Array]) -> Array {
        let _ = args;
        todo!("index eval")
    }
}
