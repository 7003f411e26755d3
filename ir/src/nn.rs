//! Reductions that keep their axes, and the common neural-network functions: `log_softmax`,
//! `var`, `std`, `norm`, `clip`, [`where_`] and the activations (`gelu`, `silu`, `softplus`,
//! `leaky_relu`, `elu`).
//!
//! Everything here is a composition of primitives, written so that values and derivatives
//! stay finite wherever the mathematical function is: exponentials only ever see arguments
//! that cannot overflow, and where a branch is not taken its operand is made harmless too (the
//! double-where idiom), so that a zero cotangent never meets an infinite derivative.

use crate::tensor::Operand;
use crate::tracer::Tensor;

/// The `ord` of [`Tensor::norm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Σ |x|.
    L1,
    /// √(Σ x²), computed without overflow or underflow of the squares.
    L2,
    /// max |x|.
    Inf,
}

/// `cond ? on_true : on_false` elementwise, with NumPy broadcasting of all three (NumPy's and
/// JAX's `where`; the same as [`crate::select`]).
#[track_caller]
pub fn where_(cond: &Tensor, on_true: impl Operand, on_false: impl Operand) -> Tensor {
    cond.select(on_true, on_false)
}

impl Tensor {
    /// The shape of `self` with the dimensions in `axes` set to 1 (axes out of range are
    /// ignored here: the reduction before reports them).
    fn kept_shape(&self, axes: &[usize]) -> Vec<usize> {
        let mut s = self.shape();
        for &a in axes {
            if let Some(d) = s.get_mut(a) {
                *d = 1;
            }
        }
        s
    }

    /// `reduced` (a reduction of `self` over `axes`) with the reduced axes kept as size 1.
    #[track_caller]
    fn keep(&self, reduced: Tensor, axes: &[usize]) -> Tensor {
        if reduced.error().is_some() {
            return reduced;
        }
        reduced.reshape(&self.kept_shape(axes))
    }

    /// [`Tensor::sum`] keeping the reduced axes as size 1, so the result broadcasts against
    /// `self`.
    #[track_caller]
    pub fn sum_keepdims(&self, axes: &[usize]) -> Tensor {
        self.keep(self.sum(axes), axes)
    }

    /// [`Tensor::mean`] keeping the reduced axes as size 1.
    #[track_caller]
    pub fn mean_keepdims(&self, axes: &[usize]) -> Tensor {
        self.keep(self.mean(axes), axes)
    }

    /// [`Tensor::max`] keeping the reduced axes as size 1.
    #[track_caller]
    pub fn max_keepdims(&self, axes: &[usize]) -> Tensor {
        self.keep(self.max(axes), axes)
    }

    /// [`Tensor::min`] keeping the reduced axes as size 1.
    #[track_caller]
    pub fn min_keepdims(&self, axes: &[usize]) -> Tensor {
        self.keep(self.min(axes), axes)
    }

    /// [`Tensor::prod`] keeping the reduced axes as size 1.
    #[track_caller]
    pub fn prod_keepdims(&self, axes: &[usize]) -> Tensor {
        self.keep(self.prod(axes), axes)
    }

    /// [`Tensor::argmax`] keeping the reduced axis as size 1 (ready for
    /// [`Tensor::take_along_axis`]).
    #[track_caller]
    pub fn argmax_keepdims(&self, axis: usize) -> Tensor {
        self.keep(self.argmax(axis), &[axis])
    }

    /// [`Tensor::argmin`] keeping the reduced axis as size 1.
    #[track_caller]
    pub fn argmin_keepdims(&self, axis: usize) -> Tensor {
        self.keep(self.argmin(axis), &[axis])
    }

    /// The maximum over `axes` (kept as size 1) where it is finite, else 0, with its gradient
    /// stopped: the shift that makes `exp(x − shift)` safe.
    #[track_caller]
    fn safe_shift(&self, axes: &[usize]) -> Tensor {
        let m = self.max_keepdims(axes).stop_gradient();
        m.abs().lt(f64::INFINITY).select(&m, 0.0)
    }

    /// log Σ exp(x) over `axes`, keeping them as size 1; stable for large |x| and for rows
    /// that are all −∞ (which give −∞), so `z - z.logsumexp_keepdims(&[1])` normalises logits.
    #[track_caller]
    pub fn logsumexp_keepdims(&self, axes: &[usize]) -> Tensor {
        let m = self.safe_shift(axes);
        self.sub(&m).exp().sum_keepdims(axes).ln().add(&m)
    }

    /// log softmax along `axis`: `x − m − log Σ exp(x − m)` with `m` the (gradient-stopped)
    /// maximum, exact for large |x| where `softmax(x).ln()` would give −∞.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor {
        let s = self.sub(self.safe_shift(&[axis]));
        let lse = s.exp().sum_keepdims(&[axis]).ln();
        s.sub(&lse)
    }

    /// The variance over `axes` with `ddof` delta degrees of freedom:
    /// `Σ (x − mean)² / (N − ddof)` (∞ or NaN when `N ≤ ddof`, as in NumPy).
    #[track_caller]
    pub fn var(&self, axes: &[usize], ddof: usize) -> Tensor {
        let n: usize = axes
            .iter()
            .filter_map(|&a| self.shape().get(a).copied())
            .product();
        let d = self.sub(self.mean_keepdims(axes));
        d.mul(&d).sum(axes).div(n as f64 - ddof as f64)
    }

    /// The standard deviation over `axes`: the square root of [`Tensor::var`]. Its derivative
    /// is infinite where the variance is 0 (a constant input gives a NaN gradient, as in JAX).
    #[track_caller]
    pub fn std(&self, axes: &[usize], ddof: usize) -> Tensor {
        self.var(axes, ddof).sqrt()
    }

    /// The vector norm of order `ord` over `axes` (NumPy's `vector_norm`). Derivatives at
    /// `x = 0` are zero (the zero subgradient, as `abs` has); JAX's `norm` gives NaN there for
    /// the L2 norm. The L2 norm is scaled by max |x| first, so it neither overflows nor
    /// underflows where the result is representable.
    #[track_caller]
    pub fn norm(&self, ord: Norm, axes: &[usize]) -> Tensor {
        match ord {
            Norm::L1 => self.abs().sum(axes),
            Norm::Inf => self.abs().max(axes),
            Norm::L2 => {
                // s = max |x| (gradient stopped: the result does not depend on the scale).
                let s = self.abs().max_keepdims(axes).stop_gradient();
                let pos = s.gt(0.0).and(&s.lt(f64::INFINITY));
                let safe_s = pos.select(&s, 1.0);
                let r = self.div(&safe_s);
                let q = r.mul(&r).sum_keepdims(axes);
                // Double where: the square root only sees positive sums.
                let nz = q.gt(0.0);
                let root = nz.select(&q, 1.0).sqrt();
                let n = nz.select(&root, 0.0).mul(&safe_s);
                // An infinite element makes the norm infinite (and a NaN makes it NaN).
                let n = s.lt(f64::INFINITY).select(&n, &s);
                n.sum(axes)
            }
        }
    }

    /// The elements clamped to `[lo, hi]` (`min(max(x, lo), hi)`).
    #[track_caller]
    pub fn clip(&self, lo: impl Operand, hi: impl Operand) -> Tensor {
        self.maximum(lo).minimum(hi)
    }

    /// GELU: `x·Φ(x)` with `Φ` the standard normal CDF, exactly via `erf` when `approximate`
    /// is false, and with JAX's tanh approximation
    /// `x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` when it is true.
    #[track_caller]
    pub fn gelu(&self, approximate: bool) -> Tensor {
        if approximate {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let inner = self.add(self.mul(self).mul(self).mul(0.044715)).mul(c);
            self.mul(0.5).mul(inner.tanh().add(1.0))
        } else {
            let phi = self.mul(std::f64::consts::FRAC_1_SQRT_2).erf().add(1.0);
            self.mul(0.5).mul(&phi)
        }
    }

    /// SiLU (swish): `x·σ(x)`.
    #[track_caller]
    pub fn silu(&self) -> Tensor {
        self.mul(self.logistic())
    }

    /// softplus: `log(1 + eˣ)`, computed as `max(x, 0) + log1p(exp(−|x|))` (so `exp` never
    /// overflows), with the derivative `σ(x)` everywhere, 1/2 at 0.
    #[track_caller]
    pub fn softplus(&self) -> Tensor {
        let pos = self.gt(0.0);
        // −|x|, with the derivative of x at 0 so that the two pieces' slopes sum to σ(0).
        let neg_abs = pos.select(self.neg(), self);
        pos.select(self, 0.0).add(neg_abs.exp().log1p())
    }

    /// Leaky ReLU: `x` where `x ≥ 0`, `slope·x` elsewhere (derivative 1 at 0, as JAX).
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Tensor {
        self.ge(0.0).select(self, self.mul(slope))
    }

    /// ELU: `x` where `x > 0`, `alpha·(eˣ − 1)` elsewhere. The exponential only sees
    /// non-positive arguments, so large positive `x` gives finite derivatives.
    #[track_caller]
    pub fn elu(&self, alpha: f64) -> Tensor {
        let pos = self.gt(0.0);
        let safe = pos.select(0.0, self);
        pos.select(self, safe.expm1().mul(alpha))
    }
}
