//! Stochastic gradient descent, with heavy-ball or Nesterov momentum (optax's `sgd`: a trace
//! of the gradients, then the learning rate).

use super::{
    check_trees, full_like, hyper_dtype, increment, like, poisoned, state_struct, with_leaves,
    zero_count, GradientTransformation, OptLeaf, Schedule,
};
use crate::tree::{Leaf, Tree};
use crate::{Result, Tensor};

state_struct! {
    /// The state of [`Sgd`]: the step count, the hyperparameters as scalar leaves, and the
    /// momentum's trace in the parameters' structure (when there is momentum).
    pub struct SgdState<L, P> {
        /// Steps taken (i32).
        pub count: L,
        /// The learning rate: the rate to use for a constant schedule (change it between
        /// calls freely), the rate of the latest step for other schedules.
        pub learning_rate: L,
        /// The momentum's decay (`None` without momentum).
        pub momentum: Option<L>,
        /// The running sum `g + momentum · trace` (`None` without momentum).
        pub trace: Option<P>,
    }
}

/// SGD: the update of a gradient `g` is `−lr · g`; with momentum `μ` the trace becomes
/// `τ = g + μ·τ` and the update `−lr · τ`, or `−lr · (g + μ·τ)` with Nesterov's correction.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    learning_rate: Schedule,
    momentum: Option<f64>,
    nesterov: bool,
}

/// Plain SGD (add [`Sgd::momentum`] and [`Sgd::nesterov`] for momentum).
pub fn sgd(learning_rate: impl Into<Schedule>) -> Sgd {
    Sgd {
        learning_rate: learning_rate.into(),
        momentum: None,
        nesterov: false,
    }
}

impl Sgd {
    /// Heavy-ball momentum with decay `momentum` (the initial value of the state's leaf).
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        self.momentum = Some(momentum);
        self
    }

    /// Nesterov's correction of the momentum (no effect without momentum).
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
}

impl GradientTransformation for Sgd {
    type State<L: Leaf, P: Tree<L>> = SgdState<L, P>;

    fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<SgdState<L, P>> {
        let d = hyper_dtype(params);
        Ok(SgdState {
            count: zero_count(),
            learning_rate: L::scalar(d, self.learning_rate.initial_value()),
            momentum: self.momentum.map(|m| L::scalar(d, m)),
            trace: match self.momentum {
                Some(_) => Some(full_like(params, 0.0)?),
                None => None,
            },
        })
    }

    fn update<P: Tree<Tensor>>(
        &self,
        grads: P,
        state: SgdState<Tensor, P>,
        params: &P,
    ) -> (P, SgdState<Tensor, P>) {
        let checked = match &state.trace {
            Some(tr) => check_trees("sgd", &grads, params, &[("state.trace", tr)]),
            None => check_trees("sgd", &grads, params, &[]),
        };
        if let Err(e) = checked {
            return (poisoned(grads, &e), poisoned(state, &e));
        }
        let count = increment(&state.count);
        let lr = self
            .learning_rate
            .traced(&state.count, &state.learning_rate);
        let SgdState {
            momentum, trace, ..
        } = state;
        let gs: Vec<Tensor> = grads.leaves().into_iter().cloned().collect();
        let (directions, trace) = match (&momentum, trace) {
            (Some(mu), Some(trace)) => {
                let mut new_trace = Vec::with_capacity(gs.len());
                let mut dirs = Vec::with_capacity(gs.len());
                for (g, t) in gs.iter().zip(trace.leaves()) {
                    let m = like(mu, g);
                    let t = g + &m * t;
                    dirs.push(if self.nesterov {
                        g + &m * &t
                    } else {
                        t.clone()
                    });
                    new_trace.push(t);
                }
                (dirs, Some(with_leaves(trace, new_trace)))
            }
            // The state does not carry momentum (it was made by another optimizer's init or
            // edited): plain SGD, with whatever trace there was passed through.
            (_, trace) => (gs, trace),
        };
        let us = directions.iter().map(|d| -like(&lr, d) * d).collect();
        let state = SgdState {
            count,
            learning_rate: lr,
            momentum,
            trace,
        };
        (with_leaves(grads, us), state)
    }
}
