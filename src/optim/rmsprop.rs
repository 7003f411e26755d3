//! RMSprop: the gradient divided by the root of a running mean of its square (optax's
//! `rmsprop` without centring or momentum).

use super::{
    check_trees, full_like, hyper_dtype, increment, like, poisoned, state_struct, with_leaves,
    zero_count, GradientTransformation, OptLeaf, Schedule,
};
use crate::tree::{Leaf, Tree};
use crate::{Result, Tensor};

state_struct! {
    /// The state of [`Rmsprop`]: the step count, the hyperparameters as scalar leaves, and the
    /// running mean of the squared gradients in the parameters' structure.
    pub struct RmspropState<L, P> {
        /// Steps taken (i32).
        pub count: L,
        /// The learning rate: the rate to use for a constant schedule (change it between
        /// calls freely), the rate of the latest step for other schedules.
        pub learning_rate: L,
        /// The decay of the running mean.
        pub decay: L,
        /// The denominator's offset.
        pub eps: L,
        /// The running mean of the squared gradients.
        pub nu: P,
    }
}

/// RMSprop: `ν = decay·ν + (1 − decay)·g²` and the update `−lr · g / √(ν + eps)` (optax's
/// default, `eps` inside the root), or `−lr · g / (√ν + eps)` with
/// [`Rmsprop::eps_in_sqrt`]`(false)` (PyTorch's).
#[derive(Clone, Debug, PartialEq)]
pub struct Rmsprop {
    learning_rate: Schedule,
    decay: f64,
    eps: f64,
    initial_scale: f64,
    eps_in_sqrt: bool,
}

/// RMSprop with optax's defaults: `decay = 0.9`, `eps = 1e-8` inside the root, `ν` from 0.
pub fn rmsprop(learning_rate: impl Into<Schedule>) -> Rmsprop {
    Rmsprop {
        learning_rate: learning_rate.into(),
        decay: 0.9,
        eps: 1e-8,
        initial_scale: 0.0,
        eps_in_sqrt: true,
    }
}

impl Rmsprop {
    /// The decay of the running mean (initial value of the state's `decay`).
    pub fn decay(mut self, decay: f64) -> Rmsprop {
        self.decay = decay;
        self
    }

    /// The denominator's offset (initial value of the state's `eps`).
    pub fn eps(mut self, eps: f64) -> Rmsprop {
        self.eps = eps;
        self
    }

    /// The initial value of every element of `ν`.
    pub fn initial_scale(mut self, initial_scale: f64) -> Rmsprop {
        self.initial_scale = initial_scale;
        self
    }

    /// Whether `eps` is added inside the square root (optax) or outside (PyTorch).
    pub fn eps_in_sqrt(mut self, inside: bool) -> Rmsprop {
        self.eps_in_sqrt = inside;
        self
    }
}

impl GradientTransformation for Rmsprop {
    type State<L: Leaf, P: Tree<L>> = RmspropState<L, P>;

    fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<RmspropState<L, P>> {
        let d = hyper_dtype(params);
        Ok(RmspropState {
            count: zero_count(),
            learning_rate: L::scalar(d, self.learning_rate.initial_value()),
            decay: L::scalar(d, self.decay),
            eps: L::scalar(d, self.eps),
            nu: full_like(params, self.initial_scale)?,
        })
    }

    fn update<P: Tree<Tensor>>(
        &self,
        grads: P,
        state: RmspropState<Tensor, P>,
        params: &P,
    ) -> (P, RmspropState<Tensor, P>) {
        if let Err(e) = check_trees("rmsprop", &grads, params, &[("state.nu", &state.nu)]) {
            return (poisoned(grads, &e), poisoned(state, &e));
        }
        let count = increment(&state.count);
        let lr = self
            .learning_rate
            .traced(&state.count, &state.learning_rate);
        let one_decay = 1.0 - &state.decay;
        let (mut us, mut vs) = (Vec::new(), Vec::new());
        for (g, v) in grads.leaves().into_iter().zip(state.nu.leaves()) {
            let eps = like(&state.eps, g);
            let v = like(&one_decay, g) * (g * g) + like(&state.decay, g) * v;
            let u = if self.eps_in_sqrt {
                (&v + eps).rsqrt() * g
            } else {
                g / (v.sqrt() + eps)
            };
            us.push(-like(&lr, g) * u);
            vs.push(v);
        }
        let RmspropState { decay, eps, nu, .. } = state;
        let state = RmspropState {
            count,
            learning_rate: lr,
            decay,
            eps,
            nu: with_leaves(nu, vs),
        };
        (with_leaves(grads, us), state)
    }
}
