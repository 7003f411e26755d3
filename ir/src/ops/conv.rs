//! `conv_general_dilated`: XLA's general convolution, with window strides, explicit (possibly
//! negative) padding, input (lhs) and kernel (rhs) dilation, dimension numbers naming which
//! axis of each operand is batch, feature or spatial, and feature or batch grouping.
//!
//! In canonical order (lhs `[N, C, x..]`, rhs `[O, I, k..]`, result `[N / B, O, y..]`, with
//! `G = feature_group_count` and `B = batch_group_count`, at most one of them above 1):
//!
//! ```text
//! out[n, o, y..] = Σ_{i < I} Σ_{w..} padded[n_in, g·I + i, y·s + w·rd ..] · rhs[o, i, w..]
//! ```
//!
//! where `g = o / (O / G)` is the output feature's feature group, `n_in = b·(N / B) + n` with
//! `b = o / (O / B)` its batch group, and `padded` is the lhs with `lhs_dilation − 1` zeros
//! between neighbours along each spatial axis, then `lo` zeros before and `hi` after (negative
//! padding crops). Padding and dilation holes are real zeros in the sum (`0 · w`), so a
//! non-finite weight facing a hole gives NaN, exactly as convolving an explicitly padded input.

use super::op_error;
use crate::array::{signed_strides, Array, Data, Num};
use crate::error::{ErrorKind, Result};
use crate::types::{Dims, Shape, Type};
use smallvec::SmallVec;

/// Which axis of each operand and of the result plays which role. Each spec lists axis
/// positions: `lhs = [batch, feature, spatial..]`, `rhs = [out_feature, in_feature, spatial..]`,
/// `out = [batch, feature, spatial..]`; spatial axis `j` of the three specs correspond.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConvDimensionNumbers {
    /// Input axes: batch, feature, then the spatial axes.
    pub lhs: Dims,
    /// Kernel axes: output feature, input feature, then the spatial axes.
    pub rhs: Dims,
    /// Result axes: batch, feature, then the spatial axes.
    pub out: Dims,
}

impl ConvDimensionNumbers {
    /// The canonical numbering of rank `rank`: every spec is `0, 1, .., rank − 1` (NCHW input,
    /// OIHW kernel, NCHW result in two dimensions).
    pub fn canonical(rank: usize) -> ConvDimensionNumbers {
        let iota: Dims = (0..rank).collect();
        ConvDimensionNumbers {
            lhs: iota.clone(),
            rhs: iota.clone(),
            out: iota,
        }
    }

    /// Numbers from layout strings such as `("NCHW", "OIHW", "NCHW")` or
    /// `("NHWC", "HWIO", "NHWC")`: `N`/`C` mark batch and feature of the input and result,
    /// `O`/`I` the kernel's output and input features, and every other letter a spatial axis,
    /// matched between the three strings by letter (spatial order follows the kernel string).
    pub fn from_layouts(lhs: &str, rhs: &str, out: &str) -> std::result::Result<Self, String> {
        let (l, r, o): (Vec<char>, Vec<char>, Vec<char>) = (
            lhs.chars().collect(),
            rhs.chars().collect(),
            out.chars().collect(),
        );
        if l.len() != r.len() || l.len() != o.len() {
            return Err(format!(
                "layouts {lhs:?}, {rhs:?}, {out:?} must have one length"
            ));
        }
        let unique = |s: &[char]| (0..s.len()).all(|i| !s[i + 1..].contains(&s[i]));
        if !unique(&l) || !unique(&r) || !unique(&o) {
            return Err(format!("layouts {lhs:?}, {rhs:?}, {out:?} repeat a letter"));
        }
        let spatial: Vec<char> = r
            .iter()
            .copied()
            .filter(|c| *c != 'O' && *c != 'I')
            .collect();
        let spec = |s: &[char], name: &str, pair: [char; 2]| -> std::result::Result<Dims, String> {
            let mut d = Dims::new();
            for c in pair.iter().chain(&spatial) {
                match s.iter().position(|x| x == c) {
                    Some(p) => d.push(p),
                    None => return Err(format!("layout {name:?} lacks the axis `{c}`")),
                }
            }
            if d.len() != s.len() {
                return Err(format!(
                    "layout {name:?} has letters the kernel layout {rhs:?} lacks"
                ));
            }
            Ok(d)
        };
        if r.len() != spatial.len() + 2 {
            return Err(format!("kernel layout {rhs:?} needs `O` and `I`"));
        }
        Ok(ConvDimensionNumbers {
            lhs: spec(&l, lhs, ['N', 'C'])?,
            rhs: spec(&r, rhs, ['O', 'I'])?,
            out: spec(&o, out, ['N', 'C'])?,
        })
    }
}

/// A `conv_general_dilated` with its static parameters (one entry per spatial axis in the
/// per-axis lists).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeneral {
    /// The step between window positions, at least 1.
    pub window_strides: Dims,
    /// Zeros added before and after each spatial axis of the dilated input; negative values
    /// crop.
    pub padding: SmallVec<[(i64, i64); 4]>,
    /// Input dilation: `d − 1` zeros between neighbouring input elements (at least 1).
    pub lhs_dilation: Dims,
    /// Kernel dilation: `d − 1` skipped positions between kernel taps (at least 1).
    pub rhs_dilation: Dims,
    /// The axis roles of the operands and the result.
    pub dimension_numbers: ConvDimensionNumbers,
    /// Feature groups: input features split into this many groups, each convolved with its
    /// block of output features (depthwise when it equals the input feature count).
    pub feature_group_count: usize,
    /// Batch groups: input batch split into this many groups, each producing its block of
    /// output features (the shape of the kernel gradient of a grouped convolution).
    pub batch_group_count: usize,
}

impl ConvGeneral {
    /// A plain convolution over `spatial` axes in canonical layout: unit strides and
    /// dilations, no padding, one group.
    pub fn new(spatial: usize) -> ConvGeneral {
        ConvGeneral {
            window_strides: Dims::from_elem(1, spatial),
            padding: SmallVec::from_elem((0, 0), spatial),
            lhs_dilation: Dims::from_elem(1, spatial),
            rhs_dilation: Dims::from_elem(1, spatial),
            dimension_numbers: ConvDimensionNumbers::canonical(spatial + 2),
            feature_group_count: 1,
            batch_group_count: 1,
        }
    }

    /// The number of spatial axes.
    pub fn spatial(&self) -> usize {
        self.window_strides.len()
    }

    /// The type rule, returning every size in canonical order.
    pub fn geometry(&self, a: &Type, b: &Type) -> Result<ConvShape> {
        let tys = [a.clone(), b.clone()];
        let name = "conv_general_dilated";
        let fail = |kind, reason: String| Err(op_error(kind, name, &tys, reason));
        if a.dtype != b.dtype || !a.dtype.is_float() {
            return fail(ErrorKind::DType, "operands need one float dtype".into());
        }
        let rank = a.rank();
        if b.rank() != rank || rank < 2 {
            return fail(
                ErrorKind::Shape,
                format!(
                    "operands need one rank of at least 2, found ranks {} and {}",
                    a.rank(),
                    b.rank()
                ),
            );
        }
        let ns = rank - 2;
        let dn = &self.dimension_numbers;
        let perm = |d: &Dims| {
            let mut seen = vec![false; rank];
            d.len() == rank
                && d.iter()
                    .all(|&x| x < rank && !std::mem::replace(&mut seen[x], true))
        };
        if !perm(&dn.lhs) || !perm(&dn.rhs) || !perm(&dn.out) {
            return fail(
                ErrorKind::Axis,
                format!(
                    "dimension numbers lhs={:?} rhs={:?} out={:?} must each be a permutation of \
                     0..{rank}",
                    dn.lhs.as_slice(),
                    dn.rhs.as_slice(),
                    dn.out.as_slice()
                ),
            );
        }
        let lists = [
            ("window_strides", self.window_strides.len()),
            ("padding", self.padding.len()),
            ("lhs_dilation", self.lhs_dilation.len()),
            ("rhs_dilation", self.rhs_dilation.len()),
        ];
        for (what, len) in lists {
            if len != ns {
                return fail(
                    ErrorKind::Shape,
                    format!("{what} needs {ns} entries (one per spatial axis), found {len}"),
                );
            }
        }
        for (what, list) in [
            ("window_strides", &self.window_strides),
            ("lhs_dilation", &self.lhs_dilation),
            ("rhs_dilation", &self.rhs_dilation),
        ] {
            if list.contains(&0) {
                return fail(
                    ErrorKind::Shape,
                    format!("{what} must be at least 1, found {:?}", list.as_slice()),
                );
            }
        }
        let (g, bg) = (self.feature_group_count, self.batch_group_count);
        if g == 0 || bg == 0 {
            return fail(
                ErrorKind::Shape,
                format!("group counts must be at least 1, found feature {g} and batch {bg}"),
            );
        }
        if g > 1 && bg > 1 {
            return fail(
                ErrorKind::Shape,
                format!("at most one group count may exceed 1, found feature {g} and batch {bg}"),
            );
        }
        let (ad, bd) = (a.dims(), b.dims());
        let (n, c) = (ad[dn.lhs[0]], ad[dn.lhs[1]]);
        let (o, i) = (bd[dn.rhs[0]], bd[dn.rhs[1]]);
        if c % g != 0 || c / g != i {
            return fail(
                ErrorKind::Shape,
                format!(
                    "the input has {c} features, which feature_group_count {g} must split into \
                     groups of the kernel's {i} input features"
                ),
            );
        }
        if o % g != 0 || o % bg != 0 {
            return fail(
                ErrorKind::Shape,
                format!(
                    "the kernel's {o} output features must be a multiple of the group count {}",
                    g.max(bg)
                ),
            );
        }
        if n % bg != 0 {
            return fail(
                ErrorKind::Shape,
                format!("batch_group_count {bg} must divide the input batch of {n}"),
            );
        }
        let dilate = |x: usize, d: usize| -> Option<i128> {
            if x == 0 {
                Some(0)
            } else {
                (x as i128 - 1).checked_mul(d as i128)?.checked_add(1)
            }
        };
        let mut out_spatial = Dims::new();
        for j in 0..ns {
            let (l, k) = (ad[dn.lhs[2 + j]], bd[dn.rhs[2 + j]]);
            let (lo, hi) = self.padding[j];
            let ld = dilate(l, self.lhs_dilation[j]);
            let kd = dilate(k, self.rhs_dilation[j]);
            let padded = ld.and_then(|x| x.checked_add(lo as i128)?.checked_add(hi as i128));
            let (Some(p), Some(kd)) = (padded, kd) else {
                return fail(
                    ErrorKind::Size,
                    format!("the sizes of spatial axis {j} overflow"),
                );
            };
            if p < kd {
                return fail(
                    ErrorKind::Shape,
                    format!(
                        "spatial axis {j}: the dilated kernel ({kd}) is larger than the dilated \
                         padded input ({p})"
                    ),
                );
            }
            let y = (p - kd) / self.window_strides[j] as i128 + 1;
            match usize::try_from(y) {
                Ok(y) => out_spatial.push(y),
                Err(_) => {
                    return fail(
                        ErrorKind::Size,
                        format!("spatial axis {j}: the result size {y} overflows"),
                    )
                }
            }
        }
        Ok(ConvShape {
            batch: n,
            in_features: c,
            out_batch: n / bg,
            out_features: o,
            group_in: i,
            lhs_spatial: (0..ns).map(|j| ad[dn.lhs[2 + j]]).collect(),
            rhs_spatial: (0..ns).map(|j| bd[dn.rhs[2 + j]]).collect(),
            out_spatial,
        })
    }

    /// The type rule.
    pub fn infer(&self, a: &Type, b: &Type) -> Result<Type> {
        let s = self.geometry(a, b)?;
        Ok(Type {
            dtype: a.dtype,
            shape: Shape(s.out_dims(&self.dimension_numbers.out)),
        })
    }

    /// The reference semantics: a direct loop over the result in canonical order, each
    /// element summed over input features `i` (slowest) and then kernel positions in row-major
    /// order, starting from 0 and including the zeros of padding and dilation.
    pub fn eval(&self, a: &Array, b: &Array) -> Array {
        let s = match self.geometry(&a.ty(), &b.ty()) {
            Ok(s) => s,
            Err(e) => unreachable!("operands are checked by infer before eval: {e}"),
        };
        let shape = Shape(s.out_dims(&self.dimension_numbers.out));
        let data = match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => direct(self, &s, a.dims(), b.dims(), x, y),
            (Data::F64(x), Data::F64(y)) => direct(self, &s, a.dims(), b.dims(), x, y),
            _ => unreachable!("conv_general_dilated: non-float operands are rejected by infer"),
        };
        Array::from_parts(shape, data)
    }
}

/// The sizes of a convolution in canonical order, resolved from its operand types by
/// [`ConvGeneral::geometry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// The input batch `N`.
    pub batch: usize,
    /// The input features `C`.
    pub in_features: usize,
    /// The result batch `N / batch_group_count`.
    pub out_batch: usize,
    /// The output features `O` (the kernel's output-feature size).
    pub out_features: usize,
    /// The kernel's input features `I = C / feature_group_count`.
    pub group_in: usize,
    /// The input's spatial sizes.
    pub lhs_spatial: Dims,
    /// The kernel's spatial sizes.
    pub rhs_spatial: Dims,
    /// The result's spatial sizes.
    pub out_spatial: Dims,
}

impl ConvShape {
    /// The result's dimensions laid out by the result spec `out`.
    pub fn out_dims(&self, out: &[usize]) -> Dims {
        let mut dims = Dims::from_elem(0, out.len());
        dims[out[0]] = self.out_batch;
        dims[out[1]] = self.out_features;
        for (j, &y) in self.out_spatial.iter().enumerate() {
            dims[out[2 + j]] = y;
        }
        dims
    }
}

/// Advances the row-major multi-index `idx` below `dims`; false once it wraps around.
fn next_index(idx: &mut [usize], dims: &[usize]) -> bool {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// The direct loop of [`ConvGeneral::eval`] on row-major operands of dimensions `ad` and
/// `bd`, returning the result's elements in row-major order of its own layout.
fn direct<T: Num>(
    op: &ConvGeneral,
    s: &ConvShape,
    ad: &[usize],
    bd: &[usize],
    x: &[T],
    y: &[T],
) -> Data {
    let dn = &op.dimension_numbers;
    let ns = op.spatial();
    let (xs, ys) = (signed_strides(ad), signed_strides(bd));
    let out_dims = s.out_dims(&dn.out);
    let zs = signed_strides(&out_dims);
    let total: usize = out_dims.iter().product();
    let mut out = vec![T::ZERO; total];
    if total == 0 {
        return T::wrap(out);
    }
    let g_out = s.out_features / op.feature_group_count;
    let b_out = s.out_features / op.batch_group_count;
    let dilated: Vec<i128> = (0..ns)
        .map(|j| match s.lhs_spatial[j] {
            0 => 0,
            l => (l as i128 - 1) * op.lhs_dilation[j] as i128 + 1,
        })
        .collect();
    let kernel_positions: usize = s.rhs_spatial.iter().product();
    let mut ypos = vec![0usize; ns];
    loop {
        for n in 0..s.out_batch {
            for o in 0..s.out_features {
                let g = if op.feature_group_count > 1 {
                    o / g_out
                } else {
                    0
                };
                let n_in = if op.batch_group_count > 1 {
                    (o / b_out) * s.out_batch + n
                } else {
                    n
                };
                let mut acc = T::ZERO;
                for i in 0..s.group_in {
                    let c = g * s.group_in + i;
                    let lbase = n_in as isize * xs[dn.lhs[0]] + c as isize * xs[dn.lhs[1]];
                    let rbase = o as isize * ys[dn.rhs[0]] + i as isize * ys[dn.rhs[1]];
                    let mut w = vec![0usize; ns];
                    for _ in 0..kernel_positions {
                        let mut loff = lbase;
                        let mut inside = true;
                        let mut roff = rbase;
                        for j in 0..ns {
                            roff += w[j] as isize * ys[dn.rhs[2 + j]];
                            // In i128: with huge padding the padded coordinate exceeds
                            // the range of the input's indices.
                            let q = ypos[j] as i128 * op.window_strides[j] as i128
                                + w[j] as i128 * op.rhs_dilation[j] as i128
                                - op.padding[j].0 as i128;
                            let ld = op.lhs_dilation[j] as i128;
                            if q < 0 || q >= dilated[j] || q % ld != 0 {
                                inside = false;
                            } else {
                                loff += (q / ld) as isize * xs[dn.lhs[2 + j]];
                            }
                        }
                        let v = if inside { x[loff as usize] } else { T::ZERO };
                        acc = acc.add(v.mul(y[roff as usize]));
                        next_index(&mut w, &s.rhs_spatial);
                    }
                }
                let mut zoff = n as isize * zs[dn.out[0]] + o as isize * zs[dn.out[1]];
                for j in 0..ns {
                    zoff += ypos[j] as isize * zs[dn.out[2 + j]];
                }
                out[zoff as usize] = acc;
            }
        }
        if !next_index(&mut ypos, &s.out_spatial) {
            break;
        }
    }
    T::wrap(out)
}
