//! `Padding`, shared by convolutions and pooling: `VALID`, JAX's `SAME` and `SAME_LOWER`
//! (resolved to explicit pads from the spatial sizes, window sizes, strides and dilations), or
//! explicit `(lo, hi)` pairs, which convolutions accept negative (cropping) and pooling does not.

/// How a convolution or a pooling window pads its input, per spatial axis.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: only windows that fit in the input.
    #[default]
    Valid,
    /// Pads so that the result has `ceil(input / stride)` positions per spatial axis, the odd
    /// zero (if any) going after the input.
    Same,
    /// As `Same`, with the odd zero before the input.
    SameLower,
    /// Zeros before and after each spatial axis (negative values crop).
    Explicit(Vec<(i64, i64)>),
    /// A padding name that is none of the above (an error when the convolution is applied).
    Unknown(String),
}

impl From<&str> for Padding {
    fn from(s: &str) -> Padding {
        match s {
            "VALID" | "valid" => Padding::Valid,
            "SAME" | "same" => Padding::Same,
            "SAME_LOWER" | "same_lower" => Padding::SameLower,
            other => Padding::Unknown(other.to_string()),
        }
    }
}

impl From<Vec<(i64, i64)>> for Padding {
    fn from(p: Vec<(i64, i64)>) -> Padding {
        Padding::Explicit(p)
    }
}

impl From<&[(i64, i64)]> for Padding {
    fn from(p: &[(i64, i64)]) -> Padding {
        Padding::Explicit(p.to_vec())
    }
}

impl<const N: usize> From<[(i64, i64); N]> for Padding {
    fn from(p: [(i64, i64); N]) -> Padding {
        Padding::Explicit(p.to_vec())
    }
}

impl Padding {
    /// The `(lo, hi)` pairs for spatial sizes `spatial`, window sizes `window`, `strides` and
    /// window `dilation` (one entry each per spatial axis). An unknown padding name, or a
    /// `SAME` padding that overflows, is an error message.
    pub fn pairs(
        &self,
        spatial: &[usize],
        window: &[usize],
        strides: &[usize],
        dilation: &[usize],
    ) -> Result<Vec<(i64, i64)>, String> {
        match self {
            Padding::Explicit(p) => Ok(p.clone()),
            Padding::Valid => Ok(vec![(0, 0); spatial.len()]),
            Padding::Same | Padding::SameLower => {
                let lower = *self == Padding::SameLower;
                (0..spatial.len())
                    .map(|j| {
                        let at = |v: &[usize]| v.get(j).copied().unwrap_or(1);
                        same_pads(spatial[j], at(window), at(strides), at(dilation), lower)
                            .ok_or_else(|| format!("SAME padding of spatial axis {j} overflows"))
                    })
                    .collect()
            }
            Padding::Unknown(s) => Err(format!(
                "unknown padding {s:?} (expected \"SAME\", \"SAME_LOWER\", \"VALID\" or explicit \
                 pairs)"
            )),
        }
    }
}

/// JAX's `SAME` pads of one axis: the result keeps `ceil(l / s)` positions and the total
/// padding is split evenly, the odd zero after (or, `lower`, before) the input.
fn same_pads(l: usize, k: usize, s: usize, rd: usize, lower: bool) -> Option<(i64, i64)> {
    if s == 0 || rd == 0 {
        return Some((0, 0)); // The type rule reports the zero stride or dilation.
    }
    let kd = if k == 0 {
        0
    } else {
        (k as i128 - 1) * rd as i128 + 1
    };
    let l = l as i128;
    let s = s as i128;
    let out = (l + s - 1) / s;
    let total = ((out - 1) * s + kd - l).max(0);
    let (small, big) = (total / 2, total - total / 2);
    let (lo, hi) = if lower { (big, small) } else { (small, big) };
    Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?))
}
