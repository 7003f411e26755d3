//! Combinators of gradient transformations: [`chain`] applies several in turn, each to the
//! updates of the one before, with the tuple of their states as its state.

use super::{GradientTransformation, OptLeaf};
use crate::tree::{Leaf, Tree};
use crate::{Result, Tensor};

/// Gradient transformations applied in turn (see [`chain`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Chain<T>(pub T);

/// Applies a tuple of 2 to 4 gradient transformations in turn: the first to the gradients,
/// each next one to the updates of the one before. The state is the tuple of their states,
/// so `chain((clip_by_global_norm(1.0), adam(1e-3)))` has state
/// `(ClipByGlobalNormState<L>, AdamState<L, P>)` and its learning rate is
/// `state.1.learning_rate`.
pub fn chain<T>(transforms: T) -> Chain<T>
where
    Chain<T>: GradientTransformation,
{
    Chain(transforms)
}

macro_rules! chain_tuple {
    ($($t:ident $i:tt),+) => {
        impl<$($t: GradientTransformation),+> GradientTransformation for Chain<($($t,)+)> {
            type State<L: Leaf, P: Tree<L>> = ($($t::State<L, P>,)+);

            fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<Self::State<L, P>> {
                Ok(($((self.0).$i.init(params)?,)+))
            }

            fn update<P: Tree<Tensor>>(
                &self,
                grads: P,
                state: Self::State<Tensor, P>,
                params: &P,
            ) -> (P, Self::State<Tensor, P>) {
                let updates = grads;
                #[allow(non_snake_case)]
                let ($($t,)+) = state;
                $(
                    #[allow(non_snake_case)]
                    let (updates, $t) = (self.0).$i.update(updates, $t, params);
                )+
                (updates, ($($t,)+))
            }
        }
    };
}
chain_tuple!(A 0, B 1);
chain_tuple!(A 0, B 1, C 2);
chain_tuple!(A 0, B 1, C 2, D 3);
