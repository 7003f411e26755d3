//! Optimizers as traced functions, in the spirit of optax: a [`GradientTransformation`] turns
//! a tree of gradients into a tree of updates, carrying a state tree from step to step, and is
//! written with `Tensor` ops so that it compiles into the jitted train step with the loss and
//! its gradient.
//!
//! ```
//! use ferrax::prelude::*;
//! use ferrax::optim::{self, AdamState, GradientTransformation};
//! use ferrax::tree::{self, Tree};
//!
//! #[derive(Tree, Clone, Debug)]
//! struct Line<T> { w: T, b: T }
//!
//! let opt = optim::adam(0.1);
//! let step = {
//!     let opt = opt.clone();
//!     tree::jit(move |p: Line<Tensor>, s: AdamState<Tensor, Line<Tensor>>, x: Tensor, y: Tensor| {
//!         let loss = |p: Line<Tensor>, x: Tensor, y: Tensor| {
//!             let d = &p.w * &x + &p.b - &y;
//!             (&d * &d).mean_all()
//!         };
//!         let (l, g): (Tensor, Line<Tensor>) =
//!             tree::value_and_grad(loss).apply((&p, &x, &y)).unwrap();
//!         let (u, s) = opt.update(g, s, &p);
//!         (optim::apply_updates(p, &u), s, l)
//!     })
//! };
//! let mut p = Line { w: Array::from(0.0), b: Array::from(0.0) };
//! let mut s = opt.init(&p).unwrap();
//! let (x, y) = (Array::from(vec![1.0, 2.0, 3.0]), Array::from(vec![3.0, 5.0, 7.0]));
//! for _ in 0..300 {
//!     let (p2, s2, _l): (Line<Array>, AdamState<Array, Line<Array>>, Array) =
//!         step.call((&p, &s, &x, &y)).unwrap();
//!     (p, s) = (p2, s2);
//! }
//! assert!((p.w.to_scalar().unwrap() - 2.0).abs() < 0.05);
//! // The step count and the learning rate are leaves of the state.
//! assert_eq!(s.count.to_scalar().unwrap(), 300.0);
//! assert_eq!(s.learning_rate.to_scalar().unwrap(), 0.1);
//! ```
//!
//! **State.** Each optimizer's state is a struct with named fields ([`AdamState`],
//! [`SgdState`], [`RmspropState`], [`ClipByGlobalNormState`]) generic over the leaf type `L`
//! and the parameter tree `P`: its moments have the parameters' structure (`state.mu.w1`), and
//! its step count (`count`, i32) and hyperparameters (`learning_rate`, `b1`, `weight_decay`,
//! ...) are scalar leaves in the parameters' float dtype. [`GradientTransformation::init`] makes
//! it from `Array` parameters outside a trace (or from `Tensor` parameters inside one).
//! Because hyperparameters are leaves, not constants of the graph, changing one between calls
//! (`state.learning_rate = Array::scalar(DType::F64, 0.01)`) reuses the compiled step. A
//! learning-rate [`Schedule`] is the exception by design: its parameters are constants of the
//! step (as an optax schedule is a Python function), the step count it reads is a leaf, and
//! the rate it gives is written to `state.learning_rate` on every update, where it can be read.
//!
//! **Dtypes.** Updates follow the gradients' dtypes; scalar hyperparameters are converted to
//! each leaf's dtype where they are used, so f32 and f64 parameters (or a mix) work alike.
//!
//! **Errors.** `update` runs inside a trace and returns trees, not `Result`s: a gradient tree
//! whose structure differs from the parameters' gives error tensors naming the differing key
//! path, and the error surfaces when the trace ends (as every tensor error does).

mod adam;
mod clip;
mod combine;
mod rmsprop;
mod schedule;
mod sgd;

pub use adam::{adam, adamw, Adam, AdamState};
pub use clip::{clip_by_global_norm, ClipByGlobalNorm, ClipByGlobalNormState};
pub use combine::{chain, Chain};
pub use rmsprop::{rmsprop, Rmsprop, RmspropState};
pub use schedule::{
    constant_schedule, cosine_decay_schedule, exponential_decay, warmup_cosine_decay_schedule,
    Schedule,
};
pub use sgd::{sgd, Sgd, SgdState};

use crate::tree::{Leaf, Tree, TreeDef};
use crate::{Array, DType, Error, Result, Tensor};

/// A gradient transformation: `init` makes the state from the parameters, `update` maps
/// gradients (or the updates of a previous transformation) to updates and the next state.
/// Optimizers are gradient transformations whose updates are added to the parameters with
/// [`apply_updates`]; [`chain`] composes them.
pub trait GradientTransformation: Clone + Send + Sync + 'static {
    /// The state for parameters `P` with leaves `L`: `Array`s between steps, `Tensor`s in the
    /// trace of a step.
    type State<L: Leaf, P: Tree<L>>: Tree<L>;

    /// The initial state for `params`: zero moments of the parameters' shapes and dtypes,
    /// a zero step count, the hyperparameters as scalar leaves. On `Array` parameters the
    /// state is made of arrays (an allocation that fails is an error of kind `Resource`); on
    /// `Tensor` parameters inside a trace it is made of tensors and errors surface with the
    /// trace.
    fn init<L: OptLeaf, P: Tree<L>>(&self, params: &P) -> Result<Self::State<L, P>>;

    /// The updates for `grads` and the next state, inside a trace. `params` are the current
    /// parameters (used by weight decay; a structure that differs from `grads`' makes every
    /// update an error tensor naming the key path).
    fn update<P: Tree<Tensor>>(
        &self,
        grads: P,
        state: Self::State<Tensor, P>,
        params: &P,
    ) -> (P, Self::State<Tensor, P>);
}

/// The leaves an optimizer state can be made of: `Array` (outside a trace) and `Tensor`.
pub trait OptLeaf: Leaf {
    /// The leaf's dtype.
    fn leaf_dtype(&self) -> DType;
    /// A leaf of this one's dtype and shape filled with `value`.
    fn full_like(&self, value: f64) -> Result<Self>;
    /// A rank-0 leaf of `dtype` holding `value`.
    fn scalar(dtype: DType, value: f64) -> Self;
}

impl OptLeaf for Array {
    fn leaf_dtype(&self) -> DType {
        self.dtype()
    }
    #[track_caller]
    fn full_like(&self, value: f64) -> Result<Array> {
        Array::full(self.dtype(), self.shape().clone(), value)
    }
    fn scalar(dtype: DType, value: f64) -> Array {
        Array::scalar(dtype, value)
    }
}

impl OptLeaf for Tensor {
    fn leaf_dtype(&self) -> DType {
        self.dtype()
    }
    #[track_caller]
    fn full_like(&self, value: f64) -> Result<Tensor> {
        Ok(match self.try_ty() {
            // A broadcast scalar, so that a trace records one broadcast rather than a
            // constant as large as the parameter.
            Ok(t) => <Tensor as OptLeaf>::scalar(t.dtype, value).broadcast_to(t.dims()),
            Err(e) => Tensor::from_error(e),
        })
    }
    fn scalar(dtype: DType, value: f64) -> Tensor {
        Tensor::from_array(Array::scalar(dtype, value))
    }
}

/// The dtype of an optimizer's scalar hyperparameters: the dtype of the parameters' first
/// floating-point leaf (f64 when there is none).
pub(crate) fn hyper_dtype<L: OptLeaf, P: Tree<L>>(params: &P) -> DType {
    let mut found = None;
    params.for_each_leaf(&mut |l| {
        if found.is_none() && l.leaf_dtype().is_float() {
            found = Some(l.leaf_dtype());
        }
    });
    found.unwrap_or(DType::F64)
}

/// A tree of the parameters' structure filled with `value` (moments start at zero).
pub(crate) fn full_like<L: OptLeaf, P: Tree<L>>(params: &P, value: f64) -> Result<P> {
    let mut leaves = Vec::with_capacity(params.num_leaves());
    let mut err = None;
    params.for_each_leaf(&mut |l| match l.full_like(value) {
        Ok(z) => leaves.push(z),
        Err(e) => {
            err.get_or_insert(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    crate::tree::tree_unflatten(&params.def(), leaves).map_err(Error::from)
}

/// The zero step count (i32, as optax).
pub(crate) fn zero_count<L: OptLeaf>() -> L {
    L::scalar(DType::I32, 0.0)
}

/// `count + 1`, saturating at `i32::MAX` so that a long run does not wrap to negative steps.
pub(crate) fn increment(count: &Tensor) -> Tensor {
    count
        .lt(f64::from(i32::MAX))
        .select(count + 1.0, count.clone())
}

/// Replaces the leaves of `tree`, in order, by `new` (which has as many).
pub(crate) fn with_leaves<P: Tree<Tensor>>(mut tree: P, new: Vec<Tensor>) -> P {
    let mut it = new.into_iter();
    tree.for_each_leaf_mut(&mut |l| {
        if let Some(n) = it.next() {
            *l = n;
        }
    });
    tree
}

/// `tree` with every leaf replaced by an error tensor carrying `e`.
pub(crate) fn poisoned<T: Tree<Tensor>>(mut tree: T, e: &Error) -> T {
    tree.for_each_leaf_mut(&mut |l| *l = Tensor::from_error(e.clone()));
    tree
}

/// Checks that the tree `found` (named `what`) has the parameters' structure `expected`; the
/// error names the first differing key path.
pub(crate) fn check_structure(
    name: &str,
    expected: &TreeDef,
    found: &TreeDef,
    what: &str,
) -> std::result::Result<(), Error> {
    match expected.difference(found) {
        None => Ok(()),
        Some(e) => Err(e.into_error(name, what)),
    }
}

/// Checks that `grads`, `params` and the parameter-shaped trees of a state all have the
/// structure of `grads`; on a difference, every output is an error tensor naming it.
pub(crate) fn check_trees<P: Tree<Tensor>>(
    name: &str,
    grads: &P,
    params: &P,
    moments: &[(&str, &P)],
) -> std::result::Result<TreeDef, Error> {
    let def = grads.def();
    check_structure(name, &def, &params.def(), "params")?;
    for (what, m) in moments {
        check_structure(name, &def, &m.def(), what)?;
    }
    Ok(def)
}

/// Adds `updates` to `params` leaf by leaf (each update converted to its parameter's dtype),
/// inside a trace or on concrete tensors. Trees of different structures give error tensors
/// naming the first differing key path.
pub fn apply_updates<P: Tree<Tensor>>(params: P, updates: &P) -> P {
    // An error an optimizer put in the updates is the one to report, before any difference
    // of structure that it caused.
    let mut carried = None;
    updates.for_each_leaf(&mut |u| {
        if carried.is_none() {
            carried = u.error().cloned();
        }
    });
    if let Some(e) = carried {
        return poisoned(params, &e);
    }
    if let Err(e) = check_structure("apply_updates", &params.def(), &updates.def(), "updates") {
        return poisoned(params, &e);
    }
    let ups = updates.leaves();
    let mut k = 0;
    let mut out = params;
    out.for_each_leaf_mut(&mut |p| {
        let u = ups[k].astype(p.dtype());
        *p = &*p + u;
        k += 1;
    });
    out
}

/// A scalar hyperparameter in the dtype of the leaf it scales.
pub(crate) fn like(h: &Tensor, leaf: &Tensor) -> Tensor {
    h.astype(leaf.dtype())
}

/// Declares an optimizer state struct generic over the leaf type `L` and the parameter tree
/// `P`, with named fields, and implements [`Tree`] for it: the fields are the subtrees in
/// declaration order, keyed by name, and mapping the leaves to `U` maps `P` to `P::Map<U>`
/// (`AdamState<Tensor, Mlp<Tensor>>` becomes `AdamState<Array, Mlp<Array>>`). (`#[derive(Tree)]`
/// maps one type parameter; these states need two mapped together.)
macro_rules! state_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident<L, P> {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name<L, P> {
            $($(#[$fmeta])* pub $field: $ty,)+
        }

        impl<L: $crate::tree::Leaf, P: $crate::tree::Tree<L>> $crate::tree::Tree<L>
            for $name<L, P>
        {
            type Map<U: $crate::tree::Leaf> = $name<U, <P as $crate::tree::Tree<L>>::Map<U>>;

            fn def(&self) -> $crate::tree::TreeDef {
                $crate::tree::TreeDef::node(
                    stringify!($name),
                    vec![$((
                        $crate::tree::Key::Field(stringify!($field)),
                        <$ty as $crate::tree::Tree<L>>::def(&self.$field),
                    )),+],
                    Vec::new(),
                )
            }

            fn matches_def(&self, def: &$crate::tree::TreeDef) -> bool {
                let count = [$(stringify!($field)),+].len();
                def.node_of(stringify!($name), count, 0).is_some_and(|node| {
                    let (mut k, mut same) = (0usize, true);
                    $(
                        same = same
                            && node.child_is::<L, $ty>(
                                k,
                                &$crate::tree::Key::Field(stringify!($field)),
                                &self.$field,
                            );
                        k += 1;
                    )+
                    let _ = k;
                    same
                })
            }

            fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
                $(<$ty as $crate::tree::Tree<L>>::for_each_leaf(&self.$field, f);)+
            }

            fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
                $(<$ty as $crate::tree::Tree<L>>::for_each_leaf_mut(&mut self.$field, f);)+
            }

            fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
                $(<$ty as $crate::tree::Tree<L>>::into_each_leaf(self.$field, f);)+
            }

            fn unflatten(
                def: &$crate::tree::TreeDef,
                leaves: &mut dyn Iterator<Item = L>,
            ) -> ::core::result::Result<Self, $crate::tree::TreeError> {
                let node = def.expect_node(stringify!($name), &[$(stringify!($field)),+], 0)?;
                let mut k = 0usize;
                $(
                    let $field = node.child::<L, $ty>(k, leaves)?;
                    k += 1;
                )+
                let _ = k;
                Ok($name { $($field),+ })
            }
        }
    };
}
pub(crate) use state_struct;
