//! The `Tensor` API for indexing along an axis: the raw `gather`/`scatter` primitives with an
//! axis, NumPy's `take` and `take_along_axis` with JAX's out-of-range rules, and JAX-style
//! `.at` updates (`x.at(&idx).set(v)`, `.add`, `.mul`, `.min`, `.max`, `.get`).
//!
//! The primitives clamp or fill with zero ([`Bounds`]); the functions here add NumPy's negative
//! indices (−1 is the last element) and JAX's defaults: `take` and `take_along_axis` fill
//! out-of-range positions with NaN (i32: `i32::MIN`, bool: `true`), `.at(..)` updates drop
//! out-of-range updates and `.at(..).get()` fills as `take` does.

use crate::ops::{Bounds, Combine, IndexOp, Indexing, Op};
use crate::tensor::{broadcast_shapes, Operand};
use crate::tracer::{apply, Tensor};
use crate::types::DType;
use std::panic::Location;

impl Tensor {
    /// The `gather` primitive along `axis` with clamped indices: for `self` of shape
    /// `pre ++ [n] ++ post` and i32 `indices` of shape `I`, the result has shape
    /// `pre ++ I ++ post` and `out[p, i, q] = self[p, clamp(indices[i], 0, n − 1), q]`.
    #[track_caller]
    pub fn gather_axis(&self, indices: &Tensor, axis: usize) -> Tensor {
        let ix = Indexing {
            axis,
            ..Indexing::default()
        };
        apply(
            Op::Index(IndexOp::Gather(ix)),
            &[self, indices],
            Location::caller(),
        )
    }

    /// The transpose of [`Tensor::gather_axis`]: adds `updates` (shape `pre ++ I ++ post`)
    /// into a copy of `self` at the clamped positions `indices` name along `axis`.
    #[track_caller]
    pub fn scatter_add_axis(&self, indices: &Tensor, updates: &Tensor, axis: usize) -> Tensor {
        let at = Indexing {
            axis,
            ..Indexing::default()
        };
        apply(
            Op::Index(IndexOp::Scatter {
                at,
                combine: Combine::Add,
            }),
            &[self, indices, updates],
            Location::caller(),
        )
    }

    /// Any gather primitive: `ix` says along which axis, which kind and what out-of-range
    /// indices do (see [`Indexing`]).
    #[track_caller]
    pub fn gather_with(&self, indices: &Tensor, ix: Indexing) -> Tensor {
        apply(
            Op::Index(IndexOp::Gather(ix)),
            &[self, indices],
            Location::caller(),
        )
    }

    /// Any scatter primitive: `updates` (shaped as the matching gather's result) are combined
    /// into a copy of `self` as `combine` says, at the positions `indices` name under `at`.
    #[track_caller]
    pub fn scatter_with(
        &self,
        indices: &Tensor,
        updates: &Tensor,
        at: Indexing,
        combine: Combine,
    ) -> Tensor {
        apply(
            Op::Index(IndexOp::Scatter { at, combine }),
            &[self, indices, updates],
            Location::caller(),
        )
    }

    /// NumPy's `take` along `axis` with JAX's default `fill` mode: for `self` of shape
    /// `pre ++ [n] ++ post` and i32 `indices` of shape `I`, the result has shape
    /// `pre ++ I ++ post`. An index `i` in `-n..0` means `i + n`; any other index outside
    /// `0..n` gives NaN (`i32::MIN` for i32, `true` for bool), whose derivative is zero.
    #[track_caller]
    pub fn take(&self, indices: &Tensor, axis: usize) -> Tensor {
        self.take_filled(indices, axis, false)
    }

    /// NumPy's `take_along_axis` with JAX's default `fill` mode: `indices` (i32) have the
    /// rank and the shape of `self` except along `axis` (nothing broadcasts), and
    /// `out[p, j, q] = self[p, indices[p, j, q], q]` has the shape of `indices`. Negative and
    /// out-of-range indices behave as in [`Tensor::take`].
    ///
    /// The classifier idiom, with `labels` of shape `[batch]`:
    /// `logits.log_softmax(1).take_along_axis(&labels.expand_dims(1), 1)`.
    #[track_caller]
    pub fn take_along_axis(&self, indices: &Tensor, axis: usize) -> Tensor {
        self.take_filled(indices, axis, true)
    }

    #[track_caller]
    fn take_filled(&self, indices: &Tensor, axis: usize, along: bool) -> Tensor {
        let ix = Indexing {
            axis,
            along,
            bounds: Bounds::Fill,
        };
        let n = self.ty().dims().get(axis).copied().unwrap_or(0);
        let idx = wrap_negative(indices, n);
        let taken = self.gather_with(&idx, ix);
        let fill = match self.dtype() {
            DType::F32 | DType::F64 => f64::NAN,
            DType::I32 => i32::MIN as f64,
            DType::Bool => 1.0,
        };
        let inside = in_range(&idx, n);
        let out = taken.shape();
        let inside = if along {
            inside
        } else {
            let dims: Vec<usize> = (axis..axis + idx.rank()).collect();
            inside.broadcast_in_dim(&out, &dims)
        };
        let fill = Tensor::full_dtype(self.dtype(), &[], fill);
        inside.select(&taken, &fill)
    }

    /// JAX's `x.at[indices]`: the positions `indices` (i32, any shape) name along axis 0 (see
    /// [`At::axis`] and [`At::along_axis`] for other axes), to update with [`At::set`],
    /// [`At::add`], [`At::mul`], [`At::min`], [`At::max`] or read with [`At::get`]. Negative
    /// indices count from the end; updates at other out-of-range indices are dropped.
    #[track_caller]
    pub fn at(&self, indices: &Tensor) -> At {
        At {
            x: self.clone(),
            indices: indices.clone(),
            axis: 0,
            along: false,
        }
    }
}

/// Positions of a tensor to read or update, made by [`Tensor::at`].
#[derive(Clone, Debug)]
pub struct At {
    x: Tensor,
    indices: Tensor,
    axis: usize,
    along: bool,
}

impl At {
    /// Index along `axis` instead of 0, as [`Tensor::take`] does (the indices replace the
    /// axis).
    pub fn axis(mut self, axis: usize) -> At {
        self.axis = axis;
        self.along = false;
        self
    }

    /// Index along `axis` as [`Tensor::take_along_axis`] does (the indices pair with the
    /// other dimensions).
    pub fn along_axis(mut self, axis: usize) -> At {
        self.axis = axis;
        self.along = true;
        self
    }

    /// The elements at the positions, as [`Tensor::take`] or [`Tensor::take_along_axis`].
    #[track_caller]
    pub fn get(&self) -> Tensor {
        self.x.take_filled(&self.indices, self.axis, self.along)
    }

    /// A copy with the positions set to `updates` (broadcast to the positions' shape); where
    /// an index repeats, the last update in row-major order wins.
    #[track_caller]
    pub fn set(&self, updates: impl Operand) -> Tensor {
        self.scatter(updates, Combine::Set)
    }

    /// A copy with `updates` added at the positions (repeated indices accumulate).
    #[track_caller]
    pub fn add(&self, updates: impl Operand) -> Tensor {
        self.scatter(updates, Combine::Add)
    }

    /// A copy with the positions multiplied by `updates` (repeated indices accumulate).
    #[track_caller]
    pub fn mul(&self, updates: impl Operand) -> Tensor {
        self.scatter(updates, Combine::Mul)
    }

    /// A copy with each position replaced by the minimum of it and its updates.
    #[track_caller]
    pub fn min(&self, updates: impl Operand) -> Tensor {
        self.scatter(updates, Combine::Min)
    }

    /// A copy with each position replaced by the maximum of it and its updates.
    #[track_caller]
    pub fn max(&self, updates: impl Operand) -> Tensor {
        self.scatter(updates, Combine::Max)
    }

    #[track_caller]
    fn scatter(&self, updates: impl Operand, combine: Combine) -> Tensor {
        let loc = Location::caller();
        let at = Indexing {
            axis: self.axis,
            along: self.along,
            bounds: Bounds::Fill,
        };
        let n = self.x.ty().dims().get(self.axis).copied().unwrap_or(0);
        let idx = wrap_negative(&self.indices, n);
        // The positions' shape: that of the matching gather's result.
        let xty = self.x.ty();
        let ity = idx.ty();
        let target = at.result_dims(combine.op_name(), &[xty.clone(), ity.clone()], &xty, &ity);
        let u = updates.to_tensor(self.x.dtype());
        let u = match target {
            Ok(dims) => match broadcast_shapes(u.ty().dims(), &dims) {
                Some(b) if b[..] == dims[..] => u.broadcast_to_at(&dims, loc),
                _ => u,
            },
            Err(_) => u,
        };
        apply(
            Op::Index(IndexOp::Scatter { at, combine }),
            &[&self.x, &idx, &u],
            loc,
        )
    }
}

/// NumPy's negative indices: `i + n` where `i < 0`, for an axis of length `n` (left as they
/// are when `n` exceeds what i32 indices reach, where every negative index is out of range).
#[track_caller]
fn wrap_negative(indices: &Tensor, n: usize) -> Tensor {
    if indices.dtype() != DType::I32 || n > i32::MAX as usize {
        return indices.clone();
    }
    indices.lt(0i32).select(indices.add(n as i32), indices)
}

/// Whether each index lies in `0..n`, as bool.
#[track_caller]
fn in_range(indices: &Tensor, n: usize) -> Tensor {
    if n > i32::MAX as usize {
        return indices.ge(0i32);
    }
    indices.ge(0i32).and(&indices.lt(n as i32))
}
