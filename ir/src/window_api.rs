//! The `Tensor` methods of the window family: `reduce_window_sum`/`max`/`min` with a full
//! [`Window`], and the pooling conveniences `max_pool` and `avg_pool` (NCHW, or any spatial
//! axes with the `_axes` forms) with `SAME`, `VALID` or explicit padding.

use crate::error::{Error, ErrorKind};
use crate::ops::{Monoid, Op, Window, WindowOp};
use crate::padding::Padding;
use crate::tracer::{apply, fail, Tensor};
use std::panic::Location;

/// The error tensor of a pooling call.
fn pool_error(loc: &'static Location<'static>, op: &str, t: &Tensor, msg: String) -> Tensor {
    fail(
        Error::new(
            ErrorKind::Shape,
            format!("{op}: {msg}; operand type {}", t.ty()),
        )
        .at(loc),
    )
}

impl Tensor {
    #[track_caller]
    fn reduce_window(&self, monoid: Monoid, window: &Window) -> Tensor {
        let op = WindowOp::Reduce {
            monoid,
            window: window.clone(),
        };
        apply(Op::Window(Box::new(op)), &[self], Location::caller())
    }

    /// The sum of every window (XLA's `ReduceWindow` with `add` and init 0; padding counts 0).
    #[track_caller]
    pub fn reduce_window_sum(&self, window: &Window) -> Tensor {
        self.reduce_window(Monoid::Sum, window)
    }

    /// The maximum of every window (padding counts −∞, or `i32::MIN`).
    #[track_caller]
    pub fn reduce_window_max(&self, window: &Window) -> Tensor {
        self.reduce_window(Monoid::Max, window)
    }

    /// The minimum of every window (padding counts +∞, or `i32::MAX`).
    #[track_caller]
    pub fn reduce_window_min(&self, window: &Window) -> Tensor {
        self.reduce_window(Monoid::Min, window)
    }

    /// The window over `axes` (the other dimensions get a window of 1), checked.
    fn pool_window(
        &self,
        axes: &[usize],
        window: &[usize],
        strides: &[usize],
        padding: &Padding,
    ) -> Result<Window, String> {
        let dims = self.shape();
        let rank = dims.len();
        let mut seen = vec![false; rank];
        for &a in axes {
            if a >= rank || seen[a] {
                return Err(format!(
                    "axes {axes:?} must be distinct and below the rank {rank}"
                ));
            }
            seen[a] = true;
        }
        if window.len() != axes.len() || strides.len() != axes.len() {
            return Err(format!(
                "{} spatial axes need as many window sizes and strides, got {window:?} and {strides:?}",
                axes.len()
            ));
        }
        if window.contains(&0) || strides.contains(&0) {
            return Err(format!(
                "window sizes {window:?} and strides {strides:?} must be at least 1"
            ));
        }
        let spatial: Vec<usize> = axes.iter().map(|&a| dims[a]).collect();
        let pads = padding.pairs(&spatial, window, strides, &[])?;
        let pads = pads
            .into_iter()
            .map(|(lo, hi)| Ok((usize::try_from(lo)?, usize::try_from(hi)?)))
            .collect::<Result<Vec<(usize, usize)>, std::num::TryFromIntError>>()
            .map_err(|_| "pooling padding must not be negative".to_string())?;
        if pads.len() != axes.len() {
            return Err(format!(
                "{} spatial axes need as many (lo, hi) paddings, got {pads:?}",
                axes.len()
            ));
        }
        let mut w = Window::new(&vec![1; rank]);
        for (k, &a) in axes.iter().enumerate() {
            w.dims[a] = window[k];
            w.strides[a] = strides[k];
            w.lo[a] = pads[k].0;
            w.hi[a] = pads[k].1;
        }
        Ok(w)
    }

    /// Max pooling of an NCHW (or NC + any spatial dims) tensor over its spatial axes
    /// `2..rank`: `window` and `strides` give one entry per spatial axis. Padding counts −∞.
    #[track_caller]
    pub fn max_pool(
        &self,
        window: &[usize],
        strides: &[usize],
        padding: impl Into<Padding>,
    ) -> Tensor {
        self.spatial_pool(Monoid::Max, "max_pool", window, strides, &padding.into())
    }

    /// Max pooling over the given spatial `axes` (see [`Tensor::max_pool`]).
    #[track_caller]
    pub fn max_pool_axes(
        &self,
        axes: &[usize],
        window: &[usize],
        strides: &[usize],
        padding: impl Into<Padding>,
    ) -> Tensor {
        self.pool(
            Monoid::Max,
            "max_pool",
            axes,
            window,
            strides,
            &padding.into(),
        )
    }

    /// Average pooling of an NCHW tensor over its spatial axes `2..rank`: each window's sum
    /// divided by the window's size, padding counted as zeros (as PyTorch's and Flax's
    /// default `count_include_pad`). Floats only.
    #[track_caller]
    pub fn avg_pool(
        &self,
        window: &[usize],
        strides: &[usize],
        padding: impl Into<Padding>,
    ) -> Tensor {
        self.spatial_pool(Monoid::Sum, "avg_pool", window, strides, &padding.into())
    }

    /// Average pooling over the given spatial `axes` (see [`Tensor::avg_pool`]).
    #[track_caller]
    pub fn avg_pool_axes(
        &self,
        axes: &[usize],
        window: &[usize],
        strides: &[usize],
        padding: impl Into<Padding>,
    ) -> Tensor {
        self.pool(
            Monoid::Sum,
            "avg_pool",
            axes,
            window,
            strides,
            &padding.into(),
        )
    }

    /// Pooling over the spatial axes `2..rank` of an operand laid out as N, C, spatial dims.
    #[track_caller]
    fn spatial_pool(
        &self,
        monoid: Monoid,
        op: &str,
        window: &[usize],
        strides: &[usize],
        padding: &Padding,
    ) -> Tensor {
        let rank = self.rank();
        if rank < 2 {
            let msg = "needs an operand laid out as N, C, spatial dims (rank >= 2)".into();
            return pool_error(Location::caller(), op, self, msg);
        }
        let axes: Vec<usize> = (2..rank).collect();
        self.pool(monoid, op, &axes, window, strides, padding)
    }

    #[track_caller]
    fn pool(
        &self,
        monoid: Monoid,
        op: &str,
        axes: &[usize],
        window: &[usize],
        strides: &[usize],
        padding: &Padding,
    ) -> Tensor {
        let loc = Location::caller();
        if self.error().is_some() {
            // The operand's own error surfaces when the trace ends.
            return self.clone();
        }
        let w = match self.pool_window(axes, window, strides, padding) {
            Ok(w) => w,
            Err(msg) => return pool_error(loc, op, self, msg),
        };
        let r = apply(
            Op::Window(Box::new(WindowOp::Reduce { monoid, window: w })),
            &[self],
            loc,
        );
        match monoid {
            Monoid::Sum => {
                if !self.dtype().is_float() {
                    return pool_error(loc, op, self, "needs a float operand".into());
                }
                let n: f64 = window.iter().map(|&w| w as f64).product();
                &r / n
            }
            Monoid::Max | Monoid::Min => r,
        }
    }
}
