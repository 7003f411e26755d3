//! Adam and AdamW: running means of the gradient and of its square, bias-corrected, and for
//! AdamW a weight decay added to the update before it is scaled by the learning rate
//! (Loshchilov and Hutter's decoupled decay, as optax's `adamw`).

use super::{
    check_trees, full_like, hyper_dtype, increment, like, poisoned, state_struct, with_leaves,
    zero_count, GradientTransformation, OptLeaf, Schedule,
};
use crate::tree::{Leaf, Tree};
use crate::{Result, Tensor};

state_struct! {
    /// The state of [`Adam`]: the step count, the hyperparameters as scalar leaves, and the
    /// two moments in the parameters' structure.
    pub struct AdamState<L, P> {
        /// Steps taken (i32).
        pub count: L,
        /// The learning rate: the rate to use for a constant schedule (change it between
        /// calls freely), the rate of the latest step for other schedules.
        pub learning_rate: L,
        /// The decay of the first moment.
        pub b1: L,
        /// The decay of the second moment.
        pub b2: L,
        /// Added to the square root of the second moment.
        pub eps: L,
        /// AdamW's weight decay (`None` for Adam).
        pub weight_decay: Option<L>,
        /// The running mean of the gradients.
        pub mu: P,
        /// The running mean of the squared gradients.
        pub nu: P,
    }
}

/// Adam (or AdamW, with a weight decay): the update of a gradient `g` at step `t` (from 1) is
/// `−lr · (m̂ / (√v̂ + eps) + wd · p)` with `m = b1·m + (1 − b1)·g`, `v = b2·v + (1 − b2)·g²`,
/// `m̂ = m / (1 − b1^t)`, `v̂ = v / (1 − b2^t)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    learning_rate: Schedule,
    b1: f64,
    b2: f64,
    eps: f64,
    weight_decay: Option<f64>,
}

/// Adam with optax's defaults: `b1 = 0.9`, `b2 = 0.999`, `eps = 1e-8`.
pub fn adam(learning_rate: impl Into<Schedule>) -> Adam {
    Adam {
        learning_rate: learning_rate.into(),
        b1: 0.9,
        b2: 0.999,
        eps: 1e-8,
        weight_decay: None,
    }
}

/// AdamW: Adam with a decoupled weight decay (optax's default is `1e-4`).
pub fn adamw(learning_rate: impl Into<Schedule>, weight_decay: f64) -> Adam {
    Adam {
        weight_decay: Some(weight_decay),
        ..adam(learning_rate)
    }
}

impl Adam {
    /// The decay of the first moment (initial value of the state's `b1`).
    pub fn b1(mut self, b1: f64) -> Adam {
        self.b1 = b1;
        self
    }

    /// The decay of the second moment (initial value of the state's `b2`).
    pub fn b2(mut self, b2: f64) -> Adam {
        self.b2 = b2;
        self
    }

    /// The denominator's offset (initial value of the state's `eps`).
    pub fn eps(mut self, eps: f64) -> Adam {
        self.eps = eps;
        self
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.learning_rate
    }
}

impl GradientTransformation for Adam {
    type State<L: Leaf, P: Tree<L>> = AdamState<L, P>;

    fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<AdamState<L, P>> {
        let d = hyper_dtype(params);
        Ok(AdamState {
            count: zero_count(),
            learning_rate: L::scalar(d, self.learning_rate.initial_value()),
            b1: L::scalar(d, self.b1),
            b2: L::scalar(d, self.b2),
            eps: L::scalar(d, self.eps),
            weight_decay: self.weight_decay.map(|w| L::scalar(d, w)),
            mu: full_like(params, 0.0)?,
            nu: full_like(params, 0.0)?,
        })
    }

    fn update<P: Tree<Tensor>>(
        &self,
        grads: P,
        state: AdamState<Tensor, P>,
        params: &P,
    ) -> (P, AdamState<Tensor, P>) {
        let name = if self.weight_decay.is_some() {
            "adamw"
        } else {
            "adam"
        };
        let moments = [("state.mu", &state.mu), ("state.nu", &state.nu)];
        if let Err(e) = check_trees(name, &grads, params, &moments) {
            return (poisoned(grads, &e), poisoned(state, &e));
        }
        let count = increment(&state.count);
        let lr = self
            .learning_rate
            .traced(&state.count, &state.learning_rate);
        // The bias corrections, in the hyperparameters' dtype, as scalars; their reciprocals
        // make the per-element divisions multiplications.
        let t = count.astype(state.b1.dtype());
        let inv_c1 = (1.0 - state.b1.pow(&t)).recip();
        let inv_c2 = (1.0 - state.b2.pow(&t)).recip();
        let (one_b1, one_b2) = (1.0 - &state.b1, 1.0 - &state.b2);
        let weight_decay = state.weight_decay.clone();
        let ps = params.leaves();
        let (mut us, mut ms, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (k, ((g, m), v)) in grads
            .leaves()
            .into_iter()
            .zip(state.mu.leaves())
            .zip(state.nu.leaves())
            .enumerate()
        {
            let m = like(&one_b1, g) * g + like(&state.b1, g) * m;
            let v = like(&one_b2, g) * (g * g) + like(&state.b2, g) * v;
            let m_hat = &m * like(&inv_c1, g);
            let v_hat = &v * like(&inv_c2, g);
            let mut u = m_hat / (v_hat.sqrt() + like(&state.eps, g));
            if let Some(wd) = &weight_decay {
                u = u + like(wd, g) * ps[k];
            }
            us.push(-like(&lr, g) * u);
            ms.push(m);
            vs.push(v);
        }
        let AdamState {
            b1,
            b2,
            eps,
            weight_decay,
            mu,
            nu,
            ..
        } = state;
        let state = AdamState {
            count,
            learning_rate: lr,
            b1,
            b2,
            eps,
            weight_decay,
            mu: with_leaves(mu, ms),
            nu: with_leaves(nu, vs),
        };
        (with_leaves(grads, us), state)
    }
}
