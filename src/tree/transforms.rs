//! Transforms that speak trees: [`TreeFn`], a function of tree arguments returning a tree, and
//! tree versions of `function`, `grad`, `value_and_grad`, `jvp`, `vjp`, `linearize`, `jacfwd`,
//! `jacrev`, `hessian` and `checkpoint` (`vmap` and `jit` have files of their own).
//!
//! A `TreeFn` is a family of positional [`Function`]s, one per list of argument structures
//! ([`TreeDef`]s): for each, the arguments are flattened to their leaves in order, the
//! positional function runs on them, and the outputs are rebuilt into the output tree. The
//! positional function is cached by the structures and specialises (and caches) per leaf types
//! as usual, so the cache key is structure + static data + leaf types. Every tree transform
//! maps a `TreeFn` to a `TreeFn` by applying the positional transform to the flat function and
//! computing the output structure, so they compose like the positional ones.

use super::{tree_unflatten, Key, Leaf, Tree, TreeDef, TreeError};
use crate::{Array, Error, ErrorKind, Function, Result, Tensor, Type};
use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Arc, Mutex};

/// The output structure of a flat function for its leaf types.
pub(crate) type OutFn = dyn Fn(&[Type]) -> Result<TreeDef> + Send + Sync;

/// One member of a [`TreeFn`]: the positional function over the arguments' leaves, and the
/// output structure for given leaf types.
#[derive(Clone)]
pub struct Flat {
    /// The positional function.
    pub func: Function,
    pub(crate) out: Arc<OutFn>,
}

impl Flat {
    /// A member from its positional function and output structure.
    pub(crate) fn new(func: Function, out: Arc<OutFn>) -> Flat {
        Flat { func, out }
    }

    /// The output structure of the function for the arguments' leaf types.
    pub fn out_def(&self, types: &[Type]) -> Result<TreeDef> {
        (self.out)(types)
    }
}

type BuildFn = dyn Fn(&[TreeDef]) -> Result<Flat> + Send + Sync;

struct Inner {
    name: String,
    arity: Option<usize>,
    build: Box<BuildFn>,
    cache: Mutex<HashMap<Vec<TreeDef>, Flat>>,
}

/// A function of tree arguments returning a tree; cheap to clone, `Send + Sync`. Made by
/// [`function`] from a closure over `Tensor` trees, or by a tree transform.
#[derive(Clone)]
pub struct TreeFn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TreeFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TreeFn({}, arity {:?})",
            self.inner.name, self.inner.arity
        )
    }
}

impl TreeFn {
    pub(crate) fn new(
        name: &str,
        arity: Option<usize>,
        build: impl Fn(&[TreeDef]) -> Result<Flat> + Send + Sync + 'static,
    ) -> TreeFn {
        TreeFn {
            inner: Arc::new(Inner {
                name: name.to_string(),
                arity,
                build: Box::new(build),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The function's name (`closure`, `grad`, `jvp`, ...).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of tree arguments, when fixed.
    pub fn arity(&self) -> Option<usize> {
        self.inner.arity
    }

    /// The positional function and output structure for these argument structures (built on
    /// first use and cached).
    pub fn flat(&self, defs: &[TreeDef]) -> Result<Flat> {
        if let Some(a) = self.inner.arity {
            if a != defs.len() {
                return Err(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "{} takes {}, got {}",
                        self.inner.name,
                        ferrax_ir::error::count_of(a, "tree argument"),
                        defs.len()
                    ),
                ));
            }
        }
        let lock = || self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = lock().get(defs) {
            return Ok(f.clone());
        }
        let f = (self.inner.build)(defs)?;
        lock().insert(defs.to_vec(), f.clone());
        Ok(f)
    }

    /// Calls the function on flat arguments: their structures and their leaves in order.
    /// Returns the output structure and leaves.
    #[track_caller]
    pub fn call_flat(&self, defs: &[TreeDef], leaves: &[Array]) -> Result<(TreeDef, Vec<Array>)> {
        let loc = Location::caller();
        let flat = self.flat(defs).map_err(|e| e.at(loc))?;
        // The output structure first: its errors (a function of the wrong shape for a
        // transform) are more telling than the positional function's.
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let def = flat.out_def(&types).map_err(|e| e.at(loc))?;
        let outs = flat.func.call_arrays(leaves)?;
        Ok((def, outs))
    }

    /// Calls the function on `Array` trees (a tuple of arguments: `(&params, &x, 2.0)`) and
    /// rebuilds the output as an `R`, e.g. an `Mlp<Array>` or `(Array, Mlp<Array>)`.
    #[track_caller]
    pub fn call<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (defs, leaves) = args.flatten_args();
        let (def, outs) = self.call_flat(&defs, &leaves)?;
        R::from_tree_output(self.name(), &def, outs).map_err(|e| e.at(loc))
    }

    /// Applies the function to `Tensor` trees inside a trace (or to concrete tensors), e.g.
    /// from another traced function.
    #[track_caller]
    pub fn apply<A: TreeArgs<Tensor>, R: Tree<Tensor>>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (defs, leaves) = args.flatten_args();
        let flat = self.flat(&defs).map_err(|e| e.at(loc))?;
        let types: Vec<Type> = leaves
            .iter()
            .map(|t| t.try_ty())
            .collect::<Result<_>>()
            .map_err(|e| e.at(loc))?;
        let outs = flat.func.apply(&leaves);
        if let Some(e) = outs.iter().find_map(|t| t.error()) {
            return Err(e.clone().at(loc));
        }
        let def = flat.out_def(&types).map_err(|e| e.at(loc))?;
        rebuild_result(self.name(), &def, outs).map_err(|e| e.at(loc))
    }

    /// The text of the positional graph for these arguments (structures and leaf types).
    #[track_caller]
    pub fn ir_for<A: TreeArgs<Array>>(&self, args: A) -> Result<String> {
        let (defs, leaves) = args.flatten_args();
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        self.flat(&defs)?.func.ir_for(&types)
    }
}

/// Rebuilds a function's output tree as the requested type `R`; a structure that does not fit
/// is an error naming the key path under `result`.
pub(crate) fn rebuild_result<L: Leaf, R: Tree<L>>(
    name: &str,
    def: &TreeDef,
    outs: Vec<L>,
) -> Result<R> {
    tree_unflatten(def, outs).map_err(|e| {
        Error::new(
            ErrorKind::Structure,
            format!(
                "{name}: {}: {} (the requested result type does not have the structure of \
                 the function's output, {def:?})",
                e.path.under("result"),
                e.what
            ),
        )
    })
}

/// What a tree call may return: any `Array` tree (`Mlp<Array>`, `(Array, Mlp<Array>)`), or an
/// `f64`/`f32` when the output is one scalar leaf.
pub trait FromTreeOutput: Sized {
    /// Rebuilds the output of the function `name` from its structure and leaves.
    fn from_tree_output(name: &str, def: &TreeDef, outs: Vec<Array>) -> Result<Self>;
}

impl<T: Tree<Array>> FromTreeOutput for T {
    fn from_tree_output(name: &str, def: &TreeDef, outs: Vec<Array>) -> Result<T> {
        rebuild_result(name, def, outs)
    }
}

macro_rules! scalar_output {
    ($($t:ty),*) => {$(
        impl FromTreeOutput for $t {
            fn from_tree_output(name: &str, def: &TreeDef, outs: Vec<Array>) -> Result<$t> {
                let a: Array = rebuild_result(name, def, outs)?;
                <$t as ferrax_ir::function::FromArray>::from_array(a)
            }
        }
    )*};
}
scalar_output!(f64, f32);

/// An error about argument `k`'s structure.
fn arg_error(name: &str, root: &str, e: TreeError) -> Error {
    e.into_error(name, root)
}

/// One argument of a tree call: a tree by reference (`&params`, `&x`), an `f64`/`f32` scalar,
/// an `Array` by value, or a tree given up with [`Donate`](crate::tree::Donate) (`Donate(params)`, whose buffers
/// [`TreeJit::call_donating`](crate::tree::TreeJit::call_donating) recycles).
pub trait TreeArg<L: Leaf> {
    /// Appends the argument's structure and leaves.
    fn flatten_arg(self, defs: &mut Vec<TreeDef>, leaves: &mut Vec<L>);

    /// Appends the argument's structure and leaves, and for each leaf whether the caller gave
    /// it up (passed it by value).
    fn flatten_arg_donating(
        self,
        defs: &mut Vec<TreeDef>,
        leaves: &mut Vec<L>,
        donated: &mut Vec<bool>,
    ) where
        Self: Sized,
    {
        let before = leaves.len();
        self.flatten_arg(defs, leaves);
        donated.resize(donated.len() + leaves.len() - before, false);
    }

    /// Appends the argument's structure and leaves like [`TreeArg::flatten_arg_donating`],
    /// but borrows the leaves of a tree passed by reference instead of cloning them (a
    /// compiled call only reads them).
    fn flatten_arg_borrowed<'a>(
        self,
        defs: &mut Vec<TreeDef>,
        leaves: &mut Vec<Cow<'a, L>>,
        donated: &mut Vec<bool>,
    ) where
        Self: Sized + 'a,
    {
        let mut owned = Vec::new();
        self.flatten_arg_donating(defs, &mut owned, donated);
        leaves.extend(owned.into_iter().map(Cow::Owned));
    }

    /// Whether the argument's structure is `def`, found without building it. `false` when
    /// not known (the default), which only costs the caller a rebuild.
    fn matches_def(&self, def: &TreeDef) -> bool {
        let _ = def;
        false
    }

    /// Appends the leaves and donation flags of [`TreeArg::flatten_arg_borrowed`] without
    /// the structure (for an argument whose structure [`TreeArg::matches_def`] confirmed).
    fn flatten_leaves_borrowed<'a>(self, leaves: &mut Vec<Cow<'a, L>>, donated: &mut Vec<bool>)
    where
        Self: Sized + 'a,
    {
        self.flatten_arg_borrowed(&mut Vec::new(), leaves, donated);
    }
}

impl<L: Leaf, T: Tree<L>> TreeArg<L> for &T {
    fn flatten_arg(self, defs: &mut Vec<TreeDef>, leaves: &mut Vec<L>) {
        defs.push(self.def());
        self.for_each_leaf(&mut |l| leaves.push(l.clone()));
    }

    fn flatten_arg_borrowed<'a>(
        self,
        defs: &mut Vec<TreeDef>,
        leaves: &mut Vec<Cow<'a, L>>,
        donated: &mut Vec<bool>,
    ) where
        Self: Sized + 'a,
    {
        defs.push(self.def());
        self.flatten_leaves_borrowed(leaves, donated);
    }

    fn matches_def(&self, def: &TreeDef) -> bool {
        Tree::<L>::matches_def(*self, def)
    }

    fn flatten_leaves_borrowed<'a>(self, leaves: &mut Vec<Cow<'a, L>>, donated: &mut Vec<bool>)
    where
        Self: Sized + 'a,
    {
        let before = leaves.len();
        self.for_each_leaf(&mut |l| leaves.push(Cow::Borrowed(l)));
        donated.resize(donated.len() + leaves.len() - before, false);
    }
}

macro_rules! scalar_arg {
    ($($t:ty => $l:ty),*) => {$(
        impl TreeArg<$l> for $t {
            fn flatten_arg(self, defs: &mut Vec<TreeDef>, leaves: &mut Vec<$l>) {
                defs.push(TreeDef::Leaf);
                leaves.push(<$l>::from(self));
            }

            fn matches_def(&self, def: &TreeDef) -> bool {
                matches!(def, TreeDef::Leaf)
            }
        }
    )*};
}
scalar_arg!(f64 => Array, f32 => Array, Array => Array, f64 => Tensor, f32 => Tensor,
    Tensor => Tensor);

/// The arguments of a tree call: a tuple of [`TreeArg`]s.
pub trait TreeArgs<L: Leaf> {
    /// The structures of the arguments and their leaves in order.
    fn flatten_args(self) -> (Vec<TreeDef>, Vec<L>);

    /// The structures and leaves, and for each leaf whether it was passed by value.
    fn flatten_args_donating(self) -> (Vec<TreeDef>, Vec<L>, Vec<bool>)
    where
        Self: Sized,
    {
        let (defs, leaves) = self.flatten_args();
        let n = leaves.len();
        (defs, leaves, vec![false; n])
    }

    /// The structures, the leaves (borrowed from trees passed by reference, see
    /// [`TreeArg::flatten_arg_borrowed`]), and for each leaf whether it was passed by value.
    #[allow(clippy::type_complexity)]
    fn flatten_args_borrowed<'a>(self) -> (Vec<TreeDef>, Vec<Cow<'a, L>>, Vec<bool>)
    where
        Self: Sized + 'a,
    {
        let (defs, leaves, donated) = self.flatten_args_donating();
        (defs, leaves.into_iter().map(Cow::Owned).collect(), donated)
    }

    /// [`TreeArgs::flatten_args_borrowed`] for a call expected to have the structures
    /// `like` (the previous call's) and about `n_leaves` leaves: `None` in place of the
    /// structures when every argument has its structure in `like` (checked without building
    /// them), the structures otherwise.
    #[allow(clippy::type_complexity)]
    fn flatten_args_like<'a>(
        self,
        like: &[TreeDef],
        n_leaves: usize,
    ) -> (Option<Vec<TreeDef>>, Vec<Cow<'a, L>>, Vec<bool>)
    where
        Self: Sized + 'a,
    {
        let _ = (like, n_leaves);
        let (defs, leaves, donated) = self.flatten_args_borrowed();
        (Some(defs), leaves, donated)
    }
}

impl<L: Leaf> TreeArgs<L> for () {
    fn flatten_args(self) -> (Vec<TreeDef>, Vec<L>) {
        (Vec::new(), Vec::new())
    }
}

macro_rules! tuple_args {
    ($($a:ident),+) => {
        impl<L: Leaf, $($a: TreeArg<L>),+> TreeArgs<L> for ($($a,)+) {
            #[allow(non_snake_case)]
            fn flatten_args(self) -> (Vec<TreeDef>, Vec<L>) {
                let ($($a,)+) = self;
                let (mut defs, mut leaves) = (Vec::new(), Vec::new());
                $($a.flatten_arg(&mut defs, &mut leaves);)+
                (defs, leaves)
            }

            #[allow(non_snake_case)]
            fn flatten_args_donating(self) -> (Vec<TreeDef>, Vec<L>, Vec<bool>) {
                let ($($a,)+) = self;
                let (mut defs, mut leaves, mut donated) = (Vec::new(), Vec::new(), Vec::new());
                $($a.flatten_arg_donating(&mut defs, &mut leaves, &mut donated);)+
                (defs, leaves, donated)
            }

            #[allow(non_snake_case)]
            fn flatten_args_borrowed<'a>(self) -> (Vec<TreeDef>, Vec<Cow<'a, L>>, Vec<bool>)
            where
                Self: 'a,
            {
                let ($($a,)+) = self;
                let (mut defs, mut leaves, mut donated) = (Vec::new(), Vec::new(), Vec::new());
                $($a.flatten_arg_borrowed(&mut defs, &mut leaves, &mut donated);)+
                (defs, leaves, donated)
            }

            #[allow(non_snake_case)]
            fn flatten_args_like<'a>(
                self,
                like: &[TreeDef],
                n_leaves: usize,
            ) -> (Option<Vec<TreeDef>>, Vec<Cow<'a, L>>, Vec<bool>)
            where
                Self: 'a,
            {
                let ($($a,)+) = self;
                let count = [$(stringify!($a)),+].len();
                let mut leaves = Vec::with_capacity(n_leaves);
                let mut donated = Vec::with_capacity(n_leaves);
                // The structures of the arguments so far, once one of them differs from
                // `like` (those before it are `like`'s).
                let mut defs: Option<Vec<TreeDef>> = None;
                let mut k = 0usize;
                $(
                    if defs.is_none() && (like.len() != count || !$a.matches_def(&like[k])) {
                        defs = Some(like[..k.min(like.len())].to_vec());
                    }
                    match defs.as_mut() {
                        None => $a.flatten_leaves_borrowed(&mut leaves, &mut donated),
                        Some(d) => $a.flatten_arg_borrowed(d, &mut leaves, &mut donated),
                    }
                    k += 1;
                )+
                let _ = k;
                (defs, leaves, donated)
            }
        }
    };
}
tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);

/// Arguments already flattened: their structures and their leaves in order.
#[derive(Clone, Debug)]
pub struct FlatArgs<L>(pub Vec<TreeDef>, pub Vec<L>);

impl<L: Leaf> TreeArgs<L> for FlatArgs<L> {
    fn flatten_args(self) -> (Vec<TreeDef>, Vec<L>) {
        (self.0, self.1)
    }
}

/// Anything that becomes a [`TreeFn`]: closures of 1 to 6 tree arguments returning a tree,
/// `TreeFn`s and the tree transforms' builders. `M` tells the closure kinds apart.
pub trait IntoTreeFn<M> {
    /// The function.
    fn into_tree_fn(self) -> TreeFn;
}

/// Marker for [`IntoTreeFn`] on values that are (or hold) a `TreeFn`.
pub struct TreeFnMarker;

impl IntoTreeFn<TreeFnMarker> for TreeFn {
    fn into_tree_fn(self) -> TreeFn {
        self
    }
}

impl IntoTreeFn<TreeFnMarker> for &TreeFn {
    fn into_tree_fn(self) -> TreeFn {
        self.clone()
    }
}

/// How a closure of tree arguments runs on flat tensors: rebuild its arguments from the
/// structures and leaves, call it, flatten its output.
type Invoke = dyn Fn(&[TreeDef], &mut dyn Iterator<Item = Tensor>) -> Result<(TreeDef, Vec<Tensor>)>
    + Send
    + Sync;

impl TreeFn {
    /// A TreeFn from a closure of `arity` tree arguments (see [`Invoke`]).
    fn from_closure(arity: usize, invoke: Arc<Invoke>) -> TreeFn {
        TreeFn::new("closure", Some(arity), move |defs| {
            // The structures must fit the closure's argument types; find out before tracing by
            // rebuilding the arguments from placeholder leaves.
            let mut placeholders = std::iter::repeat_with(|| Tensor::from(0.0));
            let probe = Arc::clone(&invoke);
            check_args(&*probe, defs, &mut placeholders)?;
            let total: usize = defs.iter().map(TreeDef::num_leaves).sum();
            let seen: Arc<Mutex<HashMap<Vec<Type>, TreeDef>>> = Arc::default();
            let (inv, defs_c, seen_c) = (Arc::clone(&invoke), defs.to_vec(), Arc::clone(&seen));
            let func = Function::from_slice_fn(Some(total), move |xs: &[Tensor]| {
                let types: Option<Vec<Type>> = xs.iter().map(|x| x.try_ty().ok()).collect();
                match inv(&defs_c, &mut xs.iter().cloned()) {
                    Ok((def, leaves)) => {
                        if let Some(t) = types {
                            seen_c
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(t, def);
                        }
                        leaves
                    }
                    Err(e) => vec![Tensor::from_error(e)],
                }
            });
            let f2 = func.clone();
            let out = move |types: &[Type]| -> Result<TreeDef> {
                let lookup = || {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(types)
                        .cloned()
                };
                if let Some(d) = lookup() {
                    return Ok(d);
                }
                f2.specialize_untracked(types)?;
                lookup().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Trace,
                        "the output structure of a tree function was not recorded by its trace",
                    )
                })
            };
            Ok(Flat {
                func,
                out: Arc::new(out),
            })
        })
    }
}

/// Runs only the argument-rebuilding part of a closure's invocation on placeholder leaves.
fn check_args(
    invoke: &Invoke,
    defs: &[TreeDef],
    placeholders: &mut dyn Iterator<Item = Tensor>,
) -> Result<()> {
    // The invocation rebuilds every argument before calling the closure; a structure error
    // is reported before the call. Calling the closure on constants would run user code
    // eagerly, so the check rebuilds through `CHECK_ONLY` instead.
    CHECK_ONLY.with(|c| c.set(true));
    let r = invoke(defs, placeholders);
    CHECK_ONLY.with(|c| c.set(false));
    r.map(|_| ())
}

thread_local! {
    /// Set while [`check_args`] runs: the invocation stops after rebuilding the arguments.
    static CHECK_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn check_only() -> bool {
    CHECK_ONLY.with(|c| c.get())
}

macro_rules! closure_tree_fn {
    ($n:literal; $($a:ident $i:tt),+) => {
        impl<Func, $($a,)+ R> IntoTreeFn<(fn($($a),+) -> R,)> for Func
        where
            Func: Fn($($a),+) -> R + Send + Sync + 'static,
            $($a: Tree<Tensor>,)+
            R: Tree<Tensor>,
        {
            fn into_tree_fn(self) -> TreeFn {
                let invoke = move |defs: &[TreeDef], it: &mut dyn Iterator<Item = Tensor>|
                    -> Result<(TreeDef, Vec<Tensor>)> {
                    #[allow(non_snake_case)]
                    let ($($a,)+) = ($(
                        $a::unflatten(&defs[$i], it)
                            .map_err(|e| arg_error("function", &format!("args[{}]", $i), e))?,
                    )+);
                    if check_only() {
                        return Ok((TreeDef::Leaf, Vec::new()));
                    }
                    let r = self($($a),+);
                    Ok((r.def(), r.into_leaves()))
                };
                TreeFn::from_closure($n, Arc::new(invoke))
            }
        }
    };
}
closure_tree_fn!(1; A0 0);
closure_tree_fn!(2; A0 0, A1 1);
closure_tree_fn!(3; A0 0, A1 1, A2 2);
closure_tree_fn!(4; A0 0, A1 1, A2 2, A3 3);
closure_tree_fn!(5; A0 0, A1 1, A2 2, A3 3, A4 4);
closure_tree_fn!(6; A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);

/// A function of trees from a closure whose arguments and result are `Tensor` trees (or a
/// `TreeFn`).
///
/// ```
/// use ferrax::prelude::*;
/// use ferrax::tree::{self, Tree};
///
/// #[derive(Tree, Clone, Debug)]
/// struct Layer<T> { w: T, b: T }
///
/// let f = tree::function(|l: Layer<Tensor>, x: Tensor| (l.w * x + l.b).sum_all());
/// let l = Layer { w: Array::from(vec![1.0, 2.0]), b: Array::from(vec![0.5, 0.5]) };
/// let y: f64 = f.call((&l, Array::from(vec![3.0, 4.0]))).unwrap();
/// assert_eq!(y, 12.0);
/// ```
pub fn function<M>(f: impl IntoTreeFn<M>) -> TreeFn {
    f.into_tree_fn()
}

/// A tuple structure of `children`, as `(A, B, ..)` builds it (up to 8 elements).
pub(crate) fn tuple_def(children: Vec<TreeDef>) -> Result<TreeDef> {
    const NAMES: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
    if children.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "a tuple of {} trees is longer than the 8 that tuples support",
                children.len()
            ),
        ));
    }
    Ok(TreeDef::node(
        "tuple",
        children
            .into_iter()
            .enumerate()
            .map(|(k, c)| (Key::Field(NAMES[k]), c))
            .collect(),
        Vec::new(),
    ))
}

/// `def` with every leaf replaced by `leaf` (a Jacobian's nesting).
fn graft(def: &TreeDef, leaf: &TreeDef) -> TreeDef {
    match def {
        TreeDef::Leaf => leaf.clone(),
        TreeDef::Node(n) => TreeDef::node(
            n.kind,
            n.children
                .iter()
                .map(|(k, c)| (k.clone(), graft(c, leaf)))
                .collect(),
            n.statics.clone(),
        ),
    }
}

/// The leaf indices of the selected arguments, and their structure (one argument's, or a
/// tuple of several).
fn selected(name: &str, defs: &[TreeDef], argnums: &[usize]) -> Result<(Vec<usize>, TreeDef)> {
    let mut offsets = Vec::with_capacity(defs.len());
    let mut at = 0;
    for d in defs {
        offsets.push(at);
        at += d.num_leaves();
    }
    let mut flat = Vec::new();
    let mut sel = Vec::new();
    for &a in argnums {
        let Some(d) = defs.get(a) else {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "{name}: argument {a} is selected but the call has {}",
                    ferrax_ir::error::count_of(defs.len(), "argument")
                ),
            ));
        };
        flat.extend(offsets[a]..offsets[a] + d.num_leaves());
        sel.push(d.clone());
    }
    let def = if sel.len() == 1 {
        sel.pop().expect("one")
    } else {
        tuple_def(sel)?
    };
    Ok((flat, def))
}

/// The leaf types of the first `n` arguments of `defs`.
fn leading_types<'a>(defs: &[TreeDef], n: usize, types: &'a [Type]) -> &'a [Type] {
    let k: usize = defs[..n].iter().map(TreeDef::num_leaves).sum();
    &types[..k.min(types.len())]
}

/// `grad(f)` or `value_and_grad(f)` over trees, with [`TreeGrad::wrt`] and
/// [`TreeGrad::has_aux`]; calls through `Deref` to its [`TreeFn`].
#[derive(Clone)]
pub struct TreeGrad {
    base: TreeFn,
    argnums: Vec<usize>,
    has_aux: bool,
    with_value: bool,
    func: TreeFn,
}

ferrax_transforms::wrapping_handle!(TreeGrad => TreeFn, IntoTreeFn::into_tree_fn, TreeFnMarker);

impl TreeGrad {
    fn build(base: TreeFn, argnums: Vec<usize>, has_aux: bool, with_value: bool) -> TreeGrad {
        let name = if with_value { "value_and_grad" } else { "grad" };
        let (b, nums) = (base.clone(), argnums.clone());
        let func = TreeFn::new(name, base.arity(), move |defs| {
            let flat = b.flat(defs)?;
            let (flat_nums, wrt_def) = selected(name, defs, &nums)?;
            let g = if with_value {
                crate::value_and_grad(&flat.func)
            } else {
                crate::grad(&flat.func)
            }
            .wrt(flat_nums);
            let g = if has_aux { g.has_aux() } else { g };
            let base_out = flat.out.clone();
            let out = move |types: &[Type]| -> Result<TreeDef> {
                if !has_aux {
                    return if with_value {
                        tuple_def(vec![base_out(types)?, wrt_def.clone()])
                    } else {
                        Ok(wrt_def.clone())
                    };
                }
                let o = base_out(types)?;
                let aux = match &o {
                    TreeDef::Node(n)
                        if n.kind == "tuple"
                            && n.children.len() == 2
                            && n.children[0].1 == TreeDef::Leaf =>
                    {
                        n.children[1].1.clone()
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::Structure,
                            format!(
                                "{name} with has_aux: the function must return a pair (loss, \
                                 aux) whose loss is one leaf, but returns {o:?}"
                            ),
                        ))
                    }
                };
                if with_value {
                    tuple_def(vec![TreeDef::Leaf, wrt_def.clone(), aux])
                } else {
                    tuple_def(vec![wrt_def.clone(), aux])
                }
            };
            Ok(Flat {
                func: g.function(),
                out: Arc::new(out),
            })
        });
        TreeGrad {
            base,
            argnums,
            has_aux,
            with_value,
            func,
        }
    }

    /// Differentiates with respect to these tree arguments (default: argument 0). One index
    /// gives that argument's tree of gradients; several give a tuple of them.
    pub fn wrt(&self, argnums: impl crate::transforms::api::Argnums) -> TreeGrad {
        TreeGrad::build(
            self.base.clone(),
            argnums.argnums(),
            self.has_aux,
            self.with_value,
        )
    }

    /// The function returns a pair `(loss, aux)` with any tree `aux`; `grad` then returns
    /// `(gradients, aux)` and `value_and_grad` `(loss, gradients, aux)` (flat, unlike JAX's
    /// `((loss, aux), gradients)`).
    pub fn has_aux(&self) -> TreeGrad {
        TreeGrad::build(
            self.base.clone(),
            self.argnums.clone(),
            true,
            self.with_value,
        )
    }

    /// The TreeFn this transform stands for.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// The gradient of a function of trees with a scalar output, as a tree of argument 0's
/// structure (see [`TreeGrad::wrt`] and [`TreeGrad::has_aux`]).
///
/// ```
/// use ferrax::prelude::*;
/// use ferrax::tree::{self, Tree};
///
/// #[derive(Tree, Clone, Debug)]
/// struct Layer<T> { w: T, b: T }
///
/// let loss = |l: Layer<Tensor>, x: Tensor| ((l.w * x + l.b).tanh()).sum_all();
/// let l = Layer { w: Array::from(0.5), b: Array::from(0.25) };
/// let g: Layer<Array> = tree::grad(loss).call((&l, 2.0)).unwrap();
/// let d = 1.0 - (0.5f64 * 2.0 + 0.25).tanh().powi(2);
/// assert!((g.w.to_scalar().unwrap() - 2.0 * d).abs() < 1e-12);
/// assert!((g.b.to_scalar().unwrap() - d).abs() < 1e-12);
/// ```
pub fn grad<M>(f: impl IntoTreeFn<M>) -> TreeGrad {
    TreeGrad::build(f.into_tree_fn(), vec![0], false, false)
}

/// The value and the gradient over trees: `(value, gradients)`.
pub fn value_and_grad<M>(f: impl IntoTreeFn<M>) -> TreeGrad {
    TreeGrad::build(f.into_tree_fn(), vec![0], false, true)
}

/// Which Jacobian a [`TreeJacobian`] builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JacKind {
    Forward,
    Reverse,
    Hessian,
}

/// `jacfwd`, `jacrev` or `hessian` over trees, with [`TreeJacobian::wrt`]. The result nests as
/// in JAX: the output tree whose every leaf is the tree of the selected arguments (twice
/// nested for Hessians), each leaf a block of shape `out.shape ++ arg.shape`.
#[derive(Clone)]
pub struct TreeJacobian {
    base: TreeFn,
    kind: JacKind,
    func: TreeFn,
}

ferrax_transforms::wrapping_handle!(TreeJacobian => TreeFn, IntoTreeFn::into_tree_fn, TreeFnMarker);

impl TreeJacobian {
    fn build(base: TreeFn, kind: JacKind, argnums: Vec<usize>) -> TreeJacobian {
        let name = match kind {
            JacKind::Forward => "jacfwd",
            JacKind::Reverse => "jacrev",
            JacKind::Hessian => "hessian",
        };
        let b = base.clone();
        let func = TreeFn::new(name, base.arity(), move |defs| {
            let flat = b.flat(defs)?;
            let (flat_nums, wrt_def) = selected(name, defs, &argnums)?;
            let j = match kind {
                JacKind::Forward => crate::jacfwd(&flat.func),
                JacKind::Reverse => crate::jacrev(&flat.func),
                JacKind::Hessian => crate::hessian(&flat.func),
            }
            .wrt(flat_nums);
            let block = match kind {
                JacKind::Forward | JacKind::Reverse => wrt_def,
                JacKind::Hessian => graft(&wrt_def, &wrt_def),
            };
            let base_out = flat.out.clone();
            let out = move |types: &[Type]| Ok(graft(&base_out(types)?, &block));
            Ok(Flat {
                func: j.function(),
                out: Arc::new(out),
            })
        });
        TreeJacobian { base, kind, func }
    }

    /// Differentiates with respect to these tree arguments (default: argument 0).
    pub fn wrt(&self, argnums: impl crate::transforms::api::Argnums) -> TreeJacobian {
        TreeJacobian::build(self.base.clone(), self.kind, argnums.argnums())
    }

    /// The TreeFn this transform stands for.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// The Jacobian over trees by forward mode.
pub fn jacfwd<M>(f: impl IntoTreeFn<M>) -> TreeJacobian {
    TreeJacobian::build(f.into_tree_fn(), JacKind::Forward, vec![0])
}

/// The Jacobian over trees by reverse mode.
pub fn jacrev<M>(f: impl IntoTreeFn<M>) -> TreeJacobian {
    TreeJacobian::build(f.into_tree_fn(), JacKind::Reverse, vec![0])
}

/// The Hessian over trees of a function with a scalar output.
pub fn hessian<M>(f: impl IntoTreeFn<M>) -> TreeJacobian {
    TreeJacobian::build(f.into_tree_fn(), JacKind::Hessian, vec![0])
}

/// Checks that the structures `found` are `expected`, naming the path under `root[k]`.
fn same_defs(name: &str, root: &str, expected: &[TreeDef], found: &[TreeDef]) -> Result<()> {
    for (k, (e, f)) in expected.iter().zip(found).enumerate() {
        if let Some(d) = e.difference(f) {
            return Err(d.into_error(name, &format!("{root}[{k}]")));
        }
    }
    Ok(())
}

/// Forward mode over trees: [`TreeJvp::call`] takes the primal trees and tangent trees of the
/// same structures and returns the output tree and its tangent tree.
#[derive(Clone)]
pub struct TreeJvp {
    func: TreeFn,
}

ferrax_transforms::wrapping_handle!(TreeJvp => TreeFn, IntoTreeFn::into_tree_fn, TreeFnMarker);

impl TreeJvp {
    /// `(outputs, output tangents)` at `primals` in the direction `tangents`, e.g.
    /// `call((&params, &x), (&dparams, &dx))`.
    #[track_caller]
    pub fn call<A, B, R>(&self, primals: A, tangents: B) -> Result<(R, R)>
    where
        A: TreeArgs<Array>,
        B: TreeArgs<Array>,
        R: Tree<Array>,
        (R, R): FromTreeOutput,
    {
        let (mut defs, mut leaves) = primals.flatten_args();
        let (td, tl) = tangents.flatten_args();
        defs.extend(td);
        leaves.extend(tl);
        self.func.call(FlatArgs(defs, leaves))
    }

    /// The TreeFn this transform stands for: primal trees then tangent trees, returning the
    /// pair `(outputs, output tangents)`.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// Forward mode over trees (see [`TreeJvp::call`]).
pub fn jvp<M>(f: impl IntoTreeFn<M>) -> TreeJvp {
    let base = f.into_tree_fn();
    let arity = base.arity().map(|n| 2 * n);
    let func = TreeFn::new("jvp", arity, move |defs| {
        if defs.len() % 2 != 0 {
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "jvp takes primal and tangent trees in equal numbers, got {}",
                    defs.len()
                ),
            ));
        }
        let n = defs.len() / 2;
        let (primals, tangents) = defs.split_at(n);
        same_defs("jvp", "tangents", primals, tangents)?;
        let flat = base.flat(primals)?;
        let base_out = flat.out.clone();
        let p = primals.to_vec();
        let out = move |types: &[Type]| {
            let o = base_out(leading_types(&p, p.len(), types))?;
            tuple_def(vec![o.clone(), o])
        };
        Ok(Flat {
            func: crate::jvp(&flat.func),
            out: Arc::new(out),
        })
    });
    TreeJvp { func }
}

/// Reverse mode over trees: [`TreeVjp::call`] takes the primal trees and one cotangent tree of
/// the output's structure, and returns the output tree and the arguments' cotangents (one
/// argument's tree, or a tuple for several).
#[derive(Clone)]
pub struct TreeVjp {
    func: TreeFn,
}

ferrax_transforms::wrapping_handle!(TreeVjp => TreeFn, IntoTreeFn::into_tree_fn, TreeFnMarker);

impl TreeVjp {
    /// `(outputs, argument cotangents)` at `primals` for the output cotangent `cotangent`.
    #[track_caller]
    pub fn call<A, C, R, G>(&self, primals: A, cotangent: &C) -> Result<(R, G)>
    where
        A: TreeArgs<Array>,
        C: Tree<Array>,
        R: Tree<Array>,
        G: Tree<Array>,
    {
        let (mut defs, mut leaves) = primals.flatten_args();
        cotangent.flatten_arg(&mut defs, &mut leaves);
        self.func.call(FlatArgs(defs, leaves))
    }

    /// The TreeFn this transform stands for: primal trees then the output cotangent tree,
    /// returning the pair `(outputs, argument cotangents)`.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// Reverse mode over trees (see [`TreeVjp::call`]).
pub fn vjp<M>(f: impl IntoTreeFn<M>) -> TreeVjp {
    let base = f.into_tree_fn();
    let func = TreeFn::new("vjp", base.arity().map(|n| n + 1), move |defs| {
        let Some((cot_def, primals)) = defs.split_last() else {
            return Err(Error::new(
                ErrorKind::Arity,
                "vjp takes the primal trees and an output cotangent tree, got no arguments",
            ));
        };
        let flat = base.flat(primals)?;
        let n_primal_leaves: usize = primals.iter().map(TreeDef::num_leaves).sum();
        let args_def = if primals.len() == 1 {
            primals[0].clone()
        } else {
            tuple_def(primals.to_vec())?
        };
        let positional = crate::vjp(&flat.func);
        let (base_out, cot) = (flat.out.clone(), cot_def.clone());
        let arity = Some(n_primal_leaves + cot_def.num_leaves());
        let checked = Function::derived("vjp", arity, None, move |types| {
            let k = n_primal_leaves.min(types.len());
            let o = base_out(&types[..k])?;
            if let Some(d) = o.difference(&cot) {
                return Err(d.into_error("vjp", "cotangent"));
            }
            positional.specialize_untracked(types)
        });
        let base_out = flat.out.clone();
        let out = move |types: &[Type]| {
            let k = n_primal_leaves.min(types.len());
            tuple_def(vec![base_out(&types[..k])?, args_def.clone()])
        };
        Ok(Flat {
            func: checked,
            out: Arc::new(out),
        })
    });
    TreeVjp { func }
}

/// Linearizes a function of trees at `primals`: the output tree and the linear map of
/// tangents, a TreeFn from tangent trees (of the primals' structures) to the output tangent
/// tree, with the residuals computed once.
#[track_caller]
pub fn linearize<M, A, R>(f: impl IntoTreeFn<M>, primals: A) -> Result<(R, TreeFn)>
where
    A: TreeArgs<Array>,
    R: Tree<Array>,
{
    let loc = Location::caller();
    let base = f.into_tree_fn();
    let (defs, leaves) = primals.flatten_args();
    let flat = base.flat(&defs).map_err(|e| e.at(loc))?;
    let (outs, lin) = crate::linearize(&flat.func, &leaves)?;
    let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
    let out_def = flat.out_def(&types).map_err(|e| e.at(loc))?;
    let r = rebuild_result("linearize", &out_def, outs).map_err(|e| e.at(loc))?;
    let lin_fn = TreeFn::new("linearize", Some(defs.len()), move |found| {
        same_defs("linearize", "tangents", &defs, found)?;
        let d = out_def.clone();
        Ok(Flat {
            func: lin.clone(),
            out: Arc::new(move |_: &[Type]| Ok(d.clone())),
        })
    });
    Ok((r, lin_fn))
}

/// `f` checkpointed over trees (see [`crate::checkpoint`]).
pub fn checkpoint<M>(f: impl IntoTreeFn<M>) -> TreeFn {
    let base = f.into_tree_fn();
    TreeFn::new("checkpoint", base.arity(), move |defs| {
        let flat = base.flat(defs)?;
        Ok(Flat {
            func: crate::checkpoint(&flat.func),
            out: flat.out,
        })
    })
}
