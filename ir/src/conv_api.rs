//! The convolution methods of `Tensor`: `conv_general_dilated` with a [`ConvParams`] builder,
//! and the `conv1d`/`conv2d` shorthands. Padding ([`Padding`]) may be given as `"SAME"`,
//! `"SAME_LOWER"` or `"VALID"`, resolved to explicit pads from the operand shapes as JAX does,
//! or explicitly.

use crate::error::{Error, ErrorKind};
use crate::ops::{ConvDimensionNumbers, ConvGeneral, Op};
use crate::padding::Padding;
use crate::tracer::{apply, fail, Tensor};
use crate::types::{Dims, Type};
use std::panic::Location;

/// The parameters of [`Tensor::conv_general_dilated`]. `ConvParams::default()` is a plain
/// convolution in canonical layout (NCH.., OIH.., NCH..): unit strides and dilations, `VALID`
/// padding, one group. Empty stride and dilation lists mean 1 on every spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Window strides per spatial axis (empty: all 1).
    pub window_strides: Vec<usize>,
    /// The padding.
    pub padding: Padding,
    /// Input dilation per spatial axis (empty: all 1).
    pub lhs_dilation: Vec<usize>,
    /// Kernel dilation per spatial axis (empty: all 1).
    pub rhs_dilation: Vec<usize>,
    /// Layout strings such as `("NHWC", "HWIO", "NHWC")`; `None` is the canonical layout.
    pub layouts: Option<(String, String, String)>,
    /// Explicit dimension numbers; when set they take precedence over `layouts`.
    pub dimension_numbers: Option<ConvDimensionNumbers>,
    /// The feature group count (depthwise: the input feature count).
    pub feature_group_count: usize,
    /// The batch group count.
    pub batch_group_count: usize,
}

impl Default for ConvParams {
    fn default() -> ConvParams {
        ConvParams {
            window_strides: Vec::new(),
            padding: Padding::Valid,
            lhs_dilation: Vec::new(),
            rhs_dilation: Vec::new(),
            layouts: None,
            dimension_numbers: None,
            feature_group_count: 1,
            batch_group_count: 1,
        }
    }
}

impl ConvParams {
    /// The default parameters (see the type's documentation).
    pub fn new() -> ConvParams {
        ConvParams::default()
    }

    /// Sets the window strides.
    pub fn strides(mut self, s: &[usize]) -> ConvParams {
        self.window_strides = s.to_vec();
        self
    }

    /// Sets the padding: `"SAME"`, `"SAME_LOWER"`, `"VALID"` or explicit `(lo, hi)` pairs.
    pub fn padding(mut self, p: impl Into<Padding>) -> ConvParams {
        self.padding = p.into();
        self
    }

    /// Sets the input dilation.
    pub fn lhs_dilation(mut self, d: &[usize]) -> ConvParams {
        self.lhs_dilation = d.to_vec();
        self
    }

    /// Sets the kernel dilation.
    pub fn rhs_dilation(mut self, d: &[usize]) -> ConvParams {
        self.rhs_dilation = d.to_vec();
        self
    }

    /// Sets the layouts by letters, e.g. `("NHWC", "HWIO", "NHWC")`.
    pub fn layouts(mut self, lhs: &str, rhs: &str, out: &str) -> ConvParams {
        self.layouts = Some((lhs.to_string(), rhs.to_string(), out.to_string()));
        self
    }

    /// Sets explicit dimension numbers.
    pub fn dimension_numbers(mut self, dn: ConvDimensionNumbers) -> ConvParams {
        self.dimension_numbers = Some(dn);
        self
    }

    /// Sets the feature group count.
    pub fn feature_groups(mut self, g: usize) -> ConvParams {
        self.feature_group_count = g;
        self
    }

    /// Sets the batch group count.
    pub fn batch_groups(mut self, g: usize) -> ConvParams {
        self.batch_group_count = g;
        self
    }

    /// The op for operands of types `lhs` and `rhs`: layouts resolved, empty lists filled with
    /// ones, and `SAME`/`VALID` padding resolved to explicit pads as JAX does (from the input's
    /// undilated size and the kernel's dilated size).
    pub fn resolve(&self, lhs: &Type, rhs: &Type) -> Result<ConvGeneral, String> {
        let rank = lhs.rank();
        if rank < 2 || rhs.rank() != rank {
            return Err(format!(
                "operands need one rank of at least 2, found {lhs} and {rhs}"
            ));
        }
        let ns = rank - 2;
        let dn = match (&self.dimension_numbers, &self.layouts) {
            (Some(dn), _) => dn.clone(),
            (None, Some((l, r, o))) => ConvDimensionNumbers::from_layouts(l, r, o)?,
            (None, None) => ConvDimensionNumbers::canonical(rank),
        };
        let ones = |v: &[usize]| -> Dims {
            if v.is_empty() {
                Dims::from_elem(1, ns)
            } else {
                Dims::from_slice(v)
            }
        };
        let mut op = ConvGeneral {
            window_strides: ones(&self.window_strides),
            padding: Default::default(),
            lhs_dilation: ones(&self.lhs_dilation),
            rhs_dilation: ones(&self.rhs_dilation),
            dimension_numbers: dn,
            feature_group_count: self.feature_group_count,
            batch_group_count: self.batch_group_count,
        };
        let dn = &op.dimension_numbers;
        let fits = [&dn.lhs, &dn.rhs]
            .iter()
            .all(|d| d.len() == rank && d.iter().all(|&x| x < rank))
            && op.window_strides.len() == ns
            && op.rhs_dilation.len() == ns;
        if !fits && matches!(self.padding, Padding::Same | Padding::SameLower) {
            return Err(format!(
                "SAME padding needs dimension numbers, strides and dilations for {ns} \
                 spatial axes"
            ));
        }
        let (spatial, window): (Vec<usize>, Vec<usize>) = if fits {
            (0..ns)
                .map(|j| (lhs.dims()[dn.lhs[2 + j]], rhs.dims()[dn.rhs[2 + j]]))
                .unzip()
        } else {
            (vec![0; ns], vec![0; ns])
        };
        op.padding = self
            .padding
            .pairs(&spatial, &window, &op.window_strides, &op.rhs_dilation)?
            .into_iter()
            .collect();
        Ok(op)
    }
}

impl Tensor {
    /// XLA's general convolution of `self` (the input) with `kernel`; see
    /// [`crate::ops::conv`] for the semantics and [`ConvParams`] for the parameters.
    #[track_caller]
    pub fn conv_general_dilated(&self, kernel: &Tensor, params: &ConvParams) -> Tensor {
        let loc = Location::caller();
        let (Ok(a), Ok(b)) = (self.try_ty(), kernel.try_ty()) else {
            // An error operand: `apply` passes its error on.
            return apply(
                Op::Conv(Box::new(ConvGeneral::new(0))),
                &[self, kernel],
                loc,
            );
        };
        match params.resolve(&a, &b) {
            Ok(op) => apply(Op::Conv(Box::new(op)), &[self, kernel], loc),
            Err(m) => fail(
                Error::new(
                    ErrorKind::Shape,
                    format!("conv_general_dilated: {m}; operand types ({a}, {b})"),
                )
                .at(loc),
            ),
        }
    }

    /// A 1-D convolution: input `[N, C, W]`, kernel `[O, C, K]`, the given stride and padding
    /// (`"SAME"`, `"VALID"` or explicit pairs).
    #[track_caller]
    pub fn conv1d(&self, kernel: &Tensor, stride: usize, padding: impl Into<Padding>) -> Tensor {
        let p = ConvParams::new().strides(&[stride]).padding(padding);
        self.conv_general_dilated(kernel, &p)
    }

    /// A 2-D convolution: input NCHW `[N, C, H, W]`, kernel OIHW `[O, C, KH, KW]`, strides
    /// `(sh, sw)` and padding (`"SAME"`, `"VALID"` or explicit pairs).
    #[track_caller]
    pub fn conv2d(
        &self,
        kernel: &Tensor,
        strides: (usize, usize),
        padding: impl Into<Padding>,
    ) -> Tensor {
        let p = ConvParams::new()
            .strides(&[strides.0, strides.1])
            .padding(padding);
        self.conv_general_dilated(kernel, &p)
    }
}
