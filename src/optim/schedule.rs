//! Learning-rate schedules: the rate as a function of the step count, evaluated inside the
//! traced update from the count the optimizer state carries (and on the host by
//! [`Schedule::value`], for plots and tests). The formulas are optax's, including its
//! handling of degenerate lengths.

use crate::{DType, Tensor};
use std::f64::consts::PI;

/// A learning rate: a constant held in the optimizer state (so that it can be changed between
/// calls without recompiling), or a schedule of the step count whose parameters are constants
/// of the compiled step. `f64` and `f32` values convert to [`Schedule::Constant`].
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// The rate is the state's `learning_rate` leaf, which starts at `value`.
    Constant {
        /// The initial rate.
        value: f64,
    },
    /// `init_value · decay_rate^((t − transition_begin) / transition_steps)`, held at
    /// `init_value` until `transition_begin`, the exponent floored when `staircase`, and
    /// bounded by `end_value` when given (below when `decay_rate < 1`, above otherwise).
    /// `transition_steps = 0` or `decay_rate = 0` give the constant `init_value`.
    ExponentialDecay {
        /// The rate before decay starts.
        init_value: f64,
        /// Steps per factor of `decay_rate`.
        transition_steps: u32,
        /// The factor per `transition_steps` steps.
        decay_rate: f64,
        /// Steps before the decay starts.
        transition_begin: u32,
        /// Decay in whole factors (a step function).
        staircase: bool,
        /// The bound the rate stops at.
        end_value: Option<f64>,
    },
    /// `init_value · ((1 − alpha) · c^exponent + alpha)` with
    /// `c = ½ (1 + cos(π · min(t, decay_steps) / decay_steps))`: from `init_value` down to
    /// `alpha · init_value` over `decay_steps`, then constant. `decay_steps = 0` gives the
    /// constant `alpha · init_value`.
    CosineDecay {
        /// The rate at step 0.
        init_value: f64,
        /// The length of the decay.
        decay_steps: u32,
        /// The final rate as a fraction of `init_value`.
        alpha: f64,
        /// The power of the cosine factor (1 for the plain cosine).
        exponent: f64,
    },
    /// A linear warm-up from `init_value` to `peak_value` over `warmup_steps`, then a cosine
    /// decay from `peak_value` to `end_value` until step `decay_steps` (which counts the
    /// warm-up), then `end_value`.
    WarmupCosineDecay {
        /// The rate at step 0.
        init_value: f64,
        /// The rate at the end of the warm-up.
        peak_value: f64,
        /// The length of the warm-up.
        warmup_steps: u32,
        /// The step at which the decay ends (warm-up included).
        decay_steps: u32,
        /// The final rate.
        end_value: f64,
        /// The power of the cosine factor (1 for the plain cosine).
        exponent: f64,
    },
}

/// A constant learning rate (held in the state; see [`Schedule::Constant`]).
pub fn constant_schedule(value: f64) -> Schedule {
    Schedule::Constant { value }
}

/// Exponential decay without staircase, delay or bound (see [`Schedule::ExponentialDecay`];
/// set its fields for the others).
pub fn exponential_decay(init_value: f64, transition_steps: u32, decay_rate: f64) -> Schedule {
    Schedule::ExponentialDecay {
        init_value,
        transition_steps,
        decay_rate,
        transition_begin: 0,
        staircase: false,
        end_value: None,
    }
}

/// Cosine decay to `alpha · init_value` over `decay_steps` (see [`Schedule::CosineDecay`]).
pub fn cosine_decay_schedule(init_value: f64, decay_steps: u32, alpha: f64) -> Schedule {
    Schedule::CosineDecay {
        init_value,
        decay_steps,
        alpha,
        exponent: 1.0,
    }
}

/// Linear warm-up then cosine decay (see [`Schedule::WarmupCosineDecay`]).
///
/// ```
/// let s = ferrax::optim::warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.01);
/// let rates: Vec<f64> = (0..7).map(|t| s.value(t)).collect();
/// assert_eq!(rates[..3], [0.0, 0.05, 0.1]);
/// assert!((rates[5] - 0.01).abs() < 1e-15 && (rates[6] - 0.01).abs() < 1e-15);
/// ```
pub fn warmup_cosine_decay_schedule(
    init_value: f64,
    peak_value: f64,
    warmup_steps: u32,
    decay_steps: u32,
    end_value: f64,
) -> Schedule {
    Schedule::WarmupCosineDecay {
        init_value,
        peak_value,
        warmup_steps,
        decay_steps,
        end_value,
        exponent: 1.0,
    }
}

impl From<f64> for Schedule {
    fn from(value: f64) -> Schedule {
        Schedule::Constant { value }
    }
}

impl From<f32> for Schedule {
    fn from(value: f32) -> Schedule {
        Schedule::Constant {
            value: f64::from(value),
        }
    }
}

/// The arithmetic a schedule needs, on host numbers and on traced scalars alike, so that one
/// formula serves [`Schedule::value`] and the traced update.
trait Num: Clone {
    fn lit(&self, v: f64) -> Self;
    fn add(&self, o: &Self) -> Self;
    fn sub(&self, o: &Self) -> Self;
    fn mul(&self, o: &Self) -> Self;
    fn div(&self, o: &Self) -> Self;
    fn pow(&self, o: &Self) -> Self;
    fn floor(&self) -> Self;
    fn cos(&self) -> Self;
    fn min(&self, o: &Self) -> Self;
    fn max(&self, o: &Self) -> Self;
    /// `if self <= o { a } else { b }`.
    fn if_le(&self, o: &Self, a: &Self, b: &Self) -> Self;
    /// `if self < o { a } else { b }`.
    fn if_lt(&self, o: &Self, a: &Self, b: &Self) -> Self;
}

impl Num for f64 {
    fn lit(&self, v: f64) -> f64 {
        v
    }
    fn add(&self, o: &f64) -> f64 {
        self + o
    }
    fn sub(&self, o: &f64) -> f64 {
        self - o
    }
    fn mul(&self, o: &f64) -> f64 {
        self * o
    }
    fn div(&self, o: &f64) -> f64 {
        self / o
    }
    fn pow(&self, o: &f64) -> f64 {
        self.powf(*o)
    }
    fn floor(&self) -> f64 {
        f64::floor(*self)
    }
    fn cos(&self) -> f64 {
        f64::cos(*self)
    }
    fn min(&self, o: &f64) -> f64 {
        f64::min(*self, *o)
    }
    fn max(&self, o: &f64) -> f64 {
        f64::max(*self, *o)
    }
    fn if_le(&self, o: &f64, a: &f64, b: &f64) -> f64 {
        if self <= o {
            *a
        } else {
            *b
        }
    }
    fn if_lt(&self, o: &f64, a: &f64, b: &f64) -> f64 {
        if self < o {
            *a
        } else {
            *b
        }
    }
}

impl Num for Tensor {
    fn lit(&self, v: f64) -> Tensor {
        Tensor::from_array(crate::Array::scalar(self.dtype(), v))
    }
    fn add(&self, o: &Tensor) -> Tensor {
        self + o
    }
    fn sub(&self, o: &Tensor) -> Tensor {
        self - o
    }
    fn mul(&self, o: &Tensor) -> Tensor {
        self * o
    }
    fn div(&self, o: &Tensor) -> Tensor {
        self / o
    }
    fn pow(&self, o: &Tensor) -> Tensor {
        Tensor::pow(self, o)
    }
    fn floor(&self) -> Tensor {
        Tensor::floor(self)
    }
    fn cos(&self) -> Tensor {
        Tensor::cos(self)
    }
    fn min(&self, o: &Tensor) -> Tensor {
        self.minimum(o)
    }
    fn max(&self, o: &Tensor) -> Tensor {
        self.maximum(o)
    }
    fn if_le(&self, o: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        self.le(o).select(a, b)
    }
    fn if_lt(&self, o: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        self.lt(o).select(a, b)
    }
}

/// optax's cosine decay at step `t` (a number of the evaluation's type).
fn cosine<N: Num>(t: &N, init_value: f64, decay_steps: u32, alpha: f64, exponent: f64) -> N {
    if decay_steps == 0 {
        return t.lit(init_value * alpha);
    }
    let steps = t.lit(f64::from(decay_steps));
    let tc = t.min(&steps);
    let c = t
        .lit(0.5)
        .mul(&t.lit(1.0).add(&t.lit(PI).mul(&tc).div(&steps).cos()));
    let c = if exponent == 1.0 {
        c
    } else {
        c.pow(&t.lit(exponent))
    };
    let decayed = t.lit(1.0 - alpha).mul(&c).add(&t.lit(alpha));
    t.lit(init_value).mul(&decayed)
}

impl Schedule {
    /// Whether the rate is the state's leaf rather than a function of the step count.
    pub fn is_constant(&self) -> bool {
        matches!(self, Schedule::Constant { .. })
    }

    /// The rate at step 0 (the state's initial `learning_rate`).
    pub fn initial_value(&self) -> f64 {
        self.value(0)
    }

    /// The rate at `step`, computed on the host in f64 (a constant gives its initial value).
    pub fn value(&self, step: u64) -> f64 {
        // Steps beyond i32 cannot occur in the state's count, which saturates.
        let t = step.min(i32::MAX as u64) as f64;
        self.eval(&t, &t.lit(self.constant_value()))
    }

    fn constant_value(&self) -> f64 {
        match self {
            Schedule::Constant { value } => *value,
            Schedule::ExponentialDecay { init_value, .. }
            | Schedule::CosineDecay { init_value, .. }
            | Schedule::WarmupCosineDecay { init_value, .. } => *init_value,
        }
    }

    /// The rate at the traced step `count` (an i32 scalar) in `current`'s dtype; a constant
    /// gives `current`, the state's leaf.
    pub(crate) fn traced(&self, count: &Tensor, current: &Tensor) -> Tensor {
        let dtype: DType = current.dtype();
        self.eval(&count.astype(dtype), current)
    }

    /// The formula, for host and traced numbers alike.
    fn eval<N: Num>(&self, t: &N, current: &N) -> N {
        match *self {
            Schedule::Constant { .. } => current.clone(),
            Schedule::ExponentialDecay {
                init_value,
                transition_steps,
                decay_rate,
                transition_begin,
                staircase,
                end_value,
            } => {
                if transition_steps == 0 || decay_rate == 0.0 {
                    return t.lit(init_value);
                }
                let init = t.lit(init_value);
                let dt = t.sub(&t.lit(f64::from(transition_begin)));
                let p = dt.div(&t.lit(f64::from(transition_steps)));
                let p = if staircase { p.floor() } else { p };
                let decayed = init.mul(&t.lit(decay_rate).pow(&p));
                let v = dt.if_le(&t.lit(0.0), &init, &decayed);
                match end_value {
                    None => v,
                    Some(e) if decay_rate < 1.0 => v.max(&t.lit(e)),
                    Some(e) => v.min(&t.lit(e)),
                }
            }
            Schedule::CosineDecay {
                init_value,
                decay_steps,
                alpha,
                exponent,
            } => cosine(t, init_value, decay_steps, alpha, exponent),
            Schedule::WarmupCosineDecay {
                init_value,
                peak_value,
                warmup_steps,
                decay_steps,
                end_value,
                exponent,
            } => {
                let warm = f64::from(warmup_steps);
                let linear = if warmup_steps == 0 {
                    t.lit(init_value)
                } else {
                    let w = t.lit(warm);
                    let tc = t.max(&t.lit(0.0)).min(&w);
                    let frac = t.lit(1.0).sub(&tc.div(&w));
                    t.lit(init_value - peak_value)
                        .mul(&frac)
                        .add(&t.lit(peak_value))
                };
                let alpha = if peak_value == 0.0 {
                    0.0
                } else {
                    end_value / peak_value
                };
                let after = cosine(
                    &t.sub(&t.lit(warm)),
                    peak_value,
                    decay_steps.saturating_sub(warmup_steps),
                    alpha,
                    exponent,
                );
                t.if_lt(&t.lit(warm), &linear, &after)
            }
        }
    }
}
