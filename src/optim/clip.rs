//! Gradient clipping by the global norm: when the norm of all the gradients together exceeds
//! `max_norm`, every gradient is scaled by `max_norm / norm` (optax's `clip_by_global_norm`).

use super::{hyper_dtype, like, GradientTransformation, OptLeaf};
use crate::tree::{Leaf, Tree};
use crate::{Result, Tensor};

/// The state of [`ClipByGlobalNorm`]: the bound, a scalar leaf (change it between calls
/// without recompiling).
#[derive(crate::Tree, Clone, Debug, PartialEq)]
pub struct ClipByGlobalNormState<T> {
    /// The largest global norm let through.
    pub max_norm: T,
}

/// Clips the updates to a global norm of at most `max_norm`; usually the first link of a
/// [`chain`](super::chain).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipByGlobalNorm {
    max_norm: f64,
}

/// Clipping by the global norm `sqrt(Σ g²)` over every element of every leaf.
pub fn clip_by_global_norm(max_norm: f64) -> ClipByGlobalNorm {
    ClipByGlobalNorm { max_norm }
}

impl GradientTransformation for ClipByGlobalNorm {
    type State<L: Leaf, P: Tree<L>> = ClipByGlobalNormState<L>;

    fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<ClipByGlobalNormState<L>> {
        Ok(ClipByGlobalNormState {
            max_norm: L::scalar(hyper_dtype(params), self.max_norm),
        })
    }

    fn update<P: Tree<Tensor>>(
        &self,
        grads: P,
        state: ClipByGlobalNormState<Tensor>,
        _params: &P,
    ) -> (P, ClipByGlobalNormState<Tensor>) {
        let max = &state.max_norm;
        // The squares are summed per leaf in its dtype, and the leaves' sums in the bound's.
        let mut total = Tensor::from_array(crate::Array::scalar(max.dtype(), 0.0));
        for g in grads.leaves() {
            total = total + (g * g).sum_all().astype(max.dtype());
        }
        let norm = total.sqrt();
        let keep = norm.lt(max);
        let mut out = grads;
        out.for_each_leaf_mut(&mut |g| {
            let scaled = &*g / like(&norm, g) * like(max, g);
            *g = keep.select(&*g, scaled);
        });
        (out, state)
    }
}
