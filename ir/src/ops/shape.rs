//! Shape ops: broadcast_in_dim, reshape, transpose, slice, pad, concatenate, rev.

use super::op_error;
use crate::array::{signed_strides, strided_offsets, Array, Data};
use crate::error::{ErrorKind, Result};
use crate::types::{Dims, Shape, Type};

/// A shape op's per-dimension parameters (a permutation, slice bounds, padding amounts,
/// axes). They are kept out of line, 16 bytes in the op instead of a 40-byte `Dims`, so that
/// the three lists of a slice or a pad do not make every `Op` (and every equation of every
/// graph) larger; shape ops are few in long graphs, so the extra allocation is rare.
pub type DimList = Box<[usize]>;

/// A shape-manipulating op; parameters are static.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ShapeOp {
    /// Broadcasts the operand to `shape`; operand dimension `i` maps to result dimension
    /// `dims[i]` (strictly increasing), and must equal it or be 1.
    BroadcastInDim {
        /// Result shape.
        shape: Shape,
        /// Where each operand dimension lands.
        dims: DimList,
    },
    /// Reinterprets the row-major elements under a shape with the same element count.
    Reshape {
        /// Result shape.
        shape: Shape,
    },
    /// Permutes dimensions: result dimension `i` is operand dimension `perm[i]`.
    Transpose {
        /// A permutation of `0..rank`.
        perm: DimList,
    },
    /// A strided window: elements `start[i], start[i] + stride[i], ...` below `limit[i]`.
    Slice {
        /// First index per dimension.
        start: DimList,
        /// Exclusive end per dimension.
        limit: DimList,
        /// Step per dimension (at least 1).
        stride: DimList,
    },
    /// Pads with the scalar second operand: `lo` before, `hi` after, and `interior` between
    /// neighbouring elements of each dimension.
    Pad {
        /// Elements added before, per dimension.
        lo: DimList,
        /// Elements added after, per dimension.
        hi: DimList,
        /// Elements added between neighbours, per dimension.
        interior: DimList,
    },
    /// Joins operands of equal rank and dtype along `axis`.
    Concatenate {
        /// The joining axis.
        axis: usize,
    },
    /// Reverses the order of elements along `axes`.
    Rev {
        /// The reversed axes.
        axes: DimList,
    },
}

fn check_axes(name: &str, tys: &[Type], axes: &[usize], rank: usize) -> Result<()> {
    let mut seen = vec![false; rank];
    for &a in axes {
        if a >= rank || seen[a] {
            return Err(op_error(
                ErrorKind::Axis,
                name,
                tys,
                format!("axes {axes:?} must be distinct and below rank {rank}"),
            ));
        }
        seen[a] = true;
    }
    Ok(())
}

impl ShapeOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            ShapeOp::BroadcastInDim { .. } => "broadcast_in_dim",
            ShapeOp::Reshape { .. } => "reshape",
            ShapeOp::Transpose { .. } => "transpose",
            ShapeOp::Slice { .. } => "slice",
            ShapeOp::Pad { .. } => "pad",
            ShapeOp::Concatenate { .. } => "concatenate",
            ShapeOp::Rev { .. } => "rev",
        }
    }

    /// The number of operands (`None` for concatenate, which takes one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            ShapeOp::Pad { .. } => Some(2),
            ShapeOp::Concatenate { .. } => None,
            _ => Some(1),
        }
    }

    /// The type rule.
    pub fn infer(&self, args: &[Type]) -> Result<Type> {
        let name = self.name();
        if args.is_empty() {
            return Err(op_error(
                ErrorKind::Arity,
                name,
                args,
                "needs at least one operand",
            ));
        }
        let x = &args[0];
        let rank = x.rank();
        match self {
            ShapeOp::BroadcastInDim { shape, dims } => {
                if dims.len() != rank {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        format!("dims {dims:?} must have one entry per operand dimension"),
                    ));
                }
                for (i, &d) in dims.iter().enumerate() {
                    if d >= shape.rank() || (i > 0 && d <= dims[i - 1]) {
                        return Err(op_error(
                            ErrorKind::Axis,
                            name,
                            args,
                            format!(
                                "dims {dims:?} must be increasing and below rank {}",
                                shape.rank()
                            ),
                        ));
                    }
                    let (src, dst) = (x.dims()[i], shape.dims()[d]);
                    if src != dst && src != 1 {
                        return Err(op_error(
                            ErrorKind::Shape,
                            name,
                            args,
                            format!("cannot broadcast to {shape} with dims {dims:?}"),
                        ));
                    }
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: shape.clone(),
                })
            }
            ShapeOp::Reshape { shape } => {
                if shape.size() != x.size() {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        format!("cannot reshape {} elements to {shape}", x.size()),
                    ));
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: shape.clone(),
                })
            }
            ShapeOp::Transpose { perm } => {
                if perm.len() != rank {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        format!("permutation {perm:?} does not match rank {rank}"),
                    ));
                }
                check_axes(name, args, perm, rank)?;
                let dims: Dims = perm.iter().map(|&p| x.dims()[p]).collect();
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(dims),
                })
            }
            ShapeOp::Slice {
                start,
                limit,
                stride,
            } => {
                if start.len() != rank || limit.len() != rank || stride.len() != rank {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        "start, limit and stride need one entry per dimension",
                    ));
                }
                let mut dims = Dims::new();
                for i in 0..rank {
                    if stride[i] == 0 || start[i] > limit[i] || limit[i] > x.dims()[i] {
                        return Err(op_error(
                            ErrorKind::Axis,
                            name,
                            args,
                            format!("bad window start={start:?} limit={limit:?} stride={stride:?}"),
                        ));
                    }
                    dims.push((limit[i] - start[i]).div_ceil(stride[i]));
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(dims),
                })
            }
            ShapeOp::Pad { lo, hi, interior } => {
                if lo.len() != rank || hi.len() != rank || interior.len() != rank {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        "lo, hi and interior need one entry per dimension",
                    ));
                }
                if !args[1].is_scalar() || args[1].dtype != x.dtype {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        "the padding value must be a scalar of the operand's dtype",
                    ));
                }
                let mut dims = Dims::new();
                for i in 0..rank {
                    let n = x.dims()[i];
                    let d = n
                        .saturating_sub(1)
                        .checked_mul(interior[i])
                        .and_then(|m| m.checked_add(n))
                        .and_then(|m| m.checked_add(lo[i]))
                        .and_then(|m| m.checked_add(hi[i]));
                    let Some(d) = d else {
                        return Err(op_error(
                            ErrorKind::Size,
                            name,
                            args,
                            format!(
                                "dimension {i} padded by lo={} hi={} interior={} overflows usize",
                                lo[i], hi[i], interior[i]
                            ),
                        ));
                    };
                    dims.push(d);
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(dims),
                })
            }
            ShapeOp::Concatenate { axis } => {
                if *axis >= rank {
                    return Err(op_error(
                        ErrorKind::Axis,
                        name,
                        args,
                        format!("axis {axis} is out of range for rank {rank}"),
                    ));
                }
                let mut dims = x.shape.0.clone();
                for t in &args[1..] {
                    let compatible = t.dtype == x.dtype
                        && t.rank() == rank
                        && (0..rank).all(|i| i == *axis || t.dims()[i] == x.dims()[i]);
                    if !compatible {
                        return Err(op_error(
                            ErrorKind::Shape,
                            name,
                            args,
                            format!(
                                "operands must agree in dtype and in every dimension but {axis}"
                            ),
                        ));
                    }
                    dims[*axis] = dims[*axis].checked_add(t.dims()[*axis]).ok_or_else(|| {
                        op_error(
                            ErrorKind::Size,
                            name,
                            args,
                            format!("the joined dimension {axis} overflows usize"),
                        )
                    })?;
                }
                Ok(Type {
                    dtype: x.dtype,
                    shape: Shape(dims),
                })
            }
            ShapeOp::Rev { axes } => {
                check_axes(name, args, axes, rank)?;
                Ok(x.clone())
            }
        }
    }

    /// The reference semantics. Every op here only moves elements, so each one computes, for
    /// every result position in row-major order, the position it reads from, by a stride walk.
    ///
    /// `pad` places operand element `i` of a dimension at `lo + i·(interior + 1)` and fills the
    /// rest with the padding value; `concatenate` places operands one after another along
    /// `axis`; the others are as described on [`ShapeOp`].
    pub fn eval(&self, args: &[&Array]) -> Array {
        let x = args[0];
        let xs = signed_strides(x.dims());
        let tys: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let out = match self.infer(&tys) {
            Ok(t) => t.shape,
            Err(e) => unreachable!("operands are checked by infer before eval: {e}"),
        };
        let os = signed_strides(out.dims());
        let data = match self {
            ShapeOp::BroadcastInDim { dims, .. } => {
                let mut strides = vec![0isize; out.rank()];
                for (i, &d) in dims.iter().enumerate() {
                    if x.dims()[i] != 1 {
                        strides[d] = xs[i];
                    }
                }
                x.data()
                    .take(strided_offsets(out.dims(), &strides, 0).into_iter())
            }
            ShapeOp::Reshape { .. } => x.data().clone(),
            ShapeOp::Transpose { perm } => {
                let strides: Vec<isize> = perm.iter().map(|&p| xs[p]).collect();
                x.data()
                    .take(strided_offsets(out.dims(), &strides, 0).into_iter())
            }
            ShapeOp::Slice { start, stride, .. } => {
                let strides: Vec<isize> = xs
                    .iter()
                    .zip(stride)
                    .map(|(&s, &k)| s * k as isize)
                    .collect();
                let base = xs.iter().zip(start).map(|(&s, &b)| s * b as isize).sum();
                x.data()
                    .take(strided_offsets(out.dims(), &strides, base).into_iter())
            }
            ShapeOp::Pad { lo, interior, .. } => {
                // Position `n` of the joined data is the padding value.
                let n = x.size();
                let mut src = vec![n; out.size()];
                let strides: Vec<isize> = os
                    .iter()
                    .zip(interior)
                    .map(|(&s, &k)| s * (k as isize + 1))
                    .collect();
                let base = os.iter().zip(lo).map(|(&s, &l)| s * l as isize).sum();
                for (k, o) in strided_offsets(x.dims(), &strides, base)
                    .into_iter()
                    .enumerate()
                {
                    src[o] = k;
                }
                Data::concat(&[x.data(), args[1].data()]).take(src.into_iter())
            }
            ShapeOp::Concatenate { axis } => {
                let mut src = vec![0; out.size()];
                let (mut at, mut first) = (0isize, 0usize);
                for a in args {
                    for (k, o) in strided_offsets(a.dims(), &os, at * os[*axis])
                        .into_iter()
                        .enumerate()
                    {
                        src[o] = first + k;
                    }
                    at += a.dims()[*axis] as isize;
                    first += a.size();
                }
                let parts: Vec<&Data> = args.iter().map(|a| a.data()).collect();
                Data::concat(&parts).take(src.into_iter())
            }
            ShapeOp::Rev { axes } => {
                let mut strides = xs.clone();
                let mut base = 0isize;
                for &a in axes {
                    strides[a] = -xs[a];
                    base += xs[a] * (x.dims()[a] as isize - 1).max(0);
                }
                x.data()
                    .take(strided_offsets(x.dims(), &strides, base).into_iter())
            }
        };
        Array::from_parts(out, data)
    }
}
