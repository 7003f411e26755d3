//! Parameter trees: nested structures of leaves (`Tensor`, `Array`, `f64`, `f32`) that the
//! transforms flatten to positional arguments and rebuild afterwards, as JAX's pytrees.
//!
//! A type is a tree of `L` leaves when it implements [`Tree<L>`]: leaves themselves, `()`,
//! tuples of up to 8 trees, `[T; N]`, `Vec<T>`, `Box<T>`, `Option<T>`, `BTreeMap<K, T>`, and
//! structs with `#[derive(Tree)]`. A tree is described by its structure, a [`TreeDef`] (node
//! kinds, keys, static data; no leaf values), and its leaves in a fixed order; the structure
//! and the leaves rebuild the tree ([`Tree::unflatten`]), also with leaves of another type
//! ([`Tree::Map`]), which is how a trace turns `Mlp<Array>` arguments into `Mlp<Tensor>`s and
//! its outputs back into an `Mlp<Array>` gradient.
//!
//! ```
//! use ferrax::prelude::*;
//! use ferrax::tree::{tree_map, tree_paths, Tree};
//!
//! #[derive(Tree, Clone, Debug)]
//! struct Layer<T> { w: T, b: T }
//!
//! #[derive(Tree, Clone, Debug)]
//! struct Mlp<T> {
//!     layers: Vec<Layer<T>>,
//!     #[tree(skip)]
//!     name: &'static str,
//! }
//!
//! let p = Mlp {
//!     layers: vec![Layer { w: 1.0, b: 2.0 }, Layer { w: 3.0, b: 4.0 }],
//!     name: "mlp",
//! };
//! let paths: Vec<String> = tree_paths(&p).iter().map(|k| k.to_string()).collect();
//! assert_eq!(paths, ["layers[0].w", "layers[0].b", "layers[1].w", "layers[1].b"]);
//! let doubled: Mlp<f64> = tree_map(&p, |x| 2.0 * x);
//! assert_eq!(doubled.layers[1].b, 8.0);
//! assert_eq!(doubled.name, "mlp");
//! ```

mod control;
mod impls;
mod jit;
mod sparse;
mod transforms;
mod utils;
mod vmap;

pub use control::*;
pub use ferrax_derive::Tree;
pub use jit::*;
pub use sparse::*;
pub use transforms::*;
pub use utils::*;
pub use vmap::*;

use crate::{Error, ErrorKind};
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A leaf type: a tree of itself with one leaf. `Tensor`, `Array`, `f64` and `f32` are leaves.
pub trait Leaf: Tree<Self> + Clone + fmt::Debug + Send + Sync + 'static {}

/// A tree whose leaves have type `L`.
///
/// Implementations must agree with themselves: [`Tree::def`] lists one child per subtree in the
/// order [`Tree::for_each_leaf`] visits them, and [`Tree::unflatten`] rebuilds a value from a
/// structure and leaves in that order. `#[derive(Tree)]` and the implementations of this module
/// do; a hand-written implementation should follow one of them.
///
/// A field whose type is not a tree is a compile error naming the field's type:
///
/// ```compile_fail
/// use ferrax::tree::Tree;
/// #[derive(Tree)]
/// struct Bad<T> { w: T, name: &'static str } // `name` needs #[tree(skip)]
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a parameter tree with leaves of type `{L}`",
    label = "not a tree of `{L}` leaves",
    note = "trees are the leaves `Tensor`, `Array`, `f64` and `f32`, tuples, arrays, `Vec`, \
            `Box`, `Option` and `BTreeMap` of trees, and structs with #[derive(Tree)]; every \
            leaf of one tree has the same type",
    note = "a field that is static data rather than leaves takes #[tree(skip)]"
)]
pub trait Tree<L: Leaf>: Sized {
    /// The same structure with leaves of type `U` (`Mlp<Array>` for `Mlp<Tensor>`).
    type Map<U: Leaf>: Tree<U>;

    /// The structure: node kinds, keys and static data, without the leaves.
    fn def(&self) -> TreeDef;

    /// Visits the leaves in order.
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L));

    /// Visits the leaves in order, mutably (for updates in place).
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L));

    /// Consumes the tree, handing each leaf to `f` in order.
    fn into_each_leaf(self, f: &mut dyn FnMut(L));

    /// Whether this tree's structure is `def`: the same answer as `self.def() == *def`,
    /// found without building the structure (a jitted step checks its arguments against the
    /// previous call's structures on every call). Implementations that do not override it
    /// build the structure and compare.
    fn matches_def(&self, def: &TreeDef) -> bool {
        self.def() == *def
    }

    /// Rebuilds a tree of this type from a structure and leaves in order. A structure of
    /// another shape (another node kind, other keys or static data, a missing leaf) is an
    /// error naming the key path where it differs. Leaves left over are the caller's to check.
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError>;

    /// The leaves in order.
    fn leaves(&self) -> Vec<&L> {
        let mut out = Vec::new();
        self.for_each_leaf(&mut |l| out.push(l));
        out
    }

    /// The leaves in order, by value.
    fn into_leaves(self) -> Vec<L> {
        let mut out = Vec::new();
        self.into_each_leaf(&mut |l| out.push(l));
        out
    }

    /// The number of leaves.
    fn num_leaves(&self) -> usize {
        let mut n = 0;
        self.for_each_leaf(&mut |_| n += 1);
        n
    }

    /// The same structure with `f` applied to every leaf.
    ///
    /// # Panics
    ///
    /// Never for `#[derive(Tree)]` and the implementations of this module; only when a
    /// hand-written implementation's `Map` does not rebuild its own structure.
    fn map<U: Leaf>(self, mut f: impl FnMut(L) -> U) -> Self::Map<U> {
        let def = self.def();
        let mut out = Vec::new();
        self.into_each_leaf(&mut |l| out.push(f(l)));
        match Self::Map::<U>::unflatten(&def, &mut out.into_iter()) {
            Ok(t) => t,
            Err(e) => panic!("a Tree implementation does not rebuild its own structure: {e}"),
        }
    }
}

/// One step of a key path: a struct field (`.w`, `.0`), a sequence index (`[2]`), a map key
/// (`["encoder"]`, the key's `Debug` form), or the inside of an `Option`'s `Some` (no text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A named or positional field.
    Field(&'static str),
    /// An element of a `Vec` or array.
    Index(usize),
    /// A `BTreeMap` entry, by the key's `Debug` text.
    Map(String),
    /// The value inside `Some`.
    Some,
}

impl Key {
    /// Whether the keys are equal (as `==`), comparing field names by address first.
    #[inline]
    fn is(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::Field(a), Key::Field(b)) => same_name(a, b),
            _ => self == other,
        }
    }
}

/// Whether two names (node kinds, field keys) are equal, by address first: a structure and
/// the value checked against it usually hold the same `&'static str` from one `stringify!`,
/// and comparing the text calls `memcmp`, several times per tree on every jitted call.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

/// The path from a tree's root to one of its nodes: `layers[2].w`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<Key>);

impl KeyPath {
    /// The path with a root name before it (`params` gives `params.layers[2].w`).
    pub fn under(&self, root: &str) -> String {
        let rest = self.to_string();
        if rest.is_empty() || rest.starts_with('[') {
            format!("{root}{rest}")
        } else {
            format!("{root}.{rest}")
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for k in &self.0 {
            match k {
                Key::Field(n) if first => write!(f, "{n}")?,
                Key::Field(n) => write!(f, ".{n}")?,
                Key::Index(i) => write!(f, "[{i}]")?,
                Key::Map(m) => write!(f, "[{m}]")?,
                Key::Some => continue,
            }
            first = false;
        }
        Ok(())
    }
}

/// Static data of a tree: values of `#[tree(skip)]` fields and `BTreeMap` keys. They take part
/// in the structure (and so in equality, hashing and cache keys) but not in any computation.
/// Any `Clone + Debug + PartialEq + Hash + Send + Sync + 'static` type qualifies.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be static data of a tree",
    note = "a #[tree(skip)] field is compared and hashed with the tree's structure, so its type \
            must be Clone + Debug + PartialEq + Hash + Send + Sync + 'static"
)]
pub trait StaticData: Any + fmt::Debug + Send + Sync {
    /// Equality with another static value (false for another type).
    fn dyn_eq(&self, other: &dyn StaticData) -> bool;
    /// Hashes the value and its type.
    fn dyn_hash(&self, state: &mut dyn Hasher);
    /// The value as `Any`, for downcasting.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug + PartialEq + Hash + Send + Sync> StaticData for T {
    fn dyn_eq(&self, other: &dyn StaticData) -> bool {
        other
            .as_any()
            .downcast_ref::<T>()
            .is_some_and(|o| self == o)
    }
    fn dyn_hash(&self, mut state: &mut dyn Hasher) {
        TypeId::of::<T>().hash(&mut state);
        self.hash(&mut state);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One static value held by a [`TreeDef`].
#[derive(Clone)]
pub struct Static(Arc<dyn StaticData>);

impl Static {
    /// Wraps a value.
    pub fn new<S: StaticData + Clone>(value: S) -> Static {
        Static(Arc::new(value))
    }

    /// The value, if it has type `S`.
    pub fn get<S: 'static>(&self) -> Option<&S> {
        self.0.as_any().downcast_ref::<S>()
    }

    /// Whether the value equals `value` (as `Static::new(value.clone()) == *self` would find).
    pub fn is<S: StaticData>(&self, value: &S) -> bool {
        self.0.dyn_eq(value)
    }
}

impl fmt::Debug for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq for Static {
    fn eq(&self, other: &Static) -> bool {
        self.0.dyn_eq(&*other.0)
    }
}

impl Eq for Static {}

impl Hash for Static {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.dyn_hash(state);
    }
}

/// The structure of a tree: where its leaves are, under which keys, with which static data.
/// Two trees of one structure have equal `TreeDef`s; transforms key their caches by it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum TreeDef {
    /// One leaf.
    Leaf,
    /// An inner node.
    Node(Arc<Node>),
}

/// An inner node of a [`TreeDef`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// What kind of node: a struct's name, `Vec`, `array`, `tuple`, `Some`, `None`, `BTreeMap`,
    /// `()`.
    pub kind: &'static str,
    /// The subtrees with their keys, in leaf order.
    pub children: Vec<(Key, TreeDef)>,
    /// Static data (skipped fields in order; a map's keys).
    pub statics: Vec<Static>,
}

impl fmt::Debug for TreeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeDef::Leaf => f.write_str("*"),
            TreeDef::Node(n) => {
                write!(f, "{}", n.kind)?;
                if !n.statics.is_empty() {
                    write!(f, "{:?}", n.statics)?;
                }
                if !n.children.is_empty() {
                    f.write_str(" { ")?;
                    for (k, (key, c)) in n.children.iter().enumerate() {
                        if k > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{}: {c:?}", KeyPath(vec![key.clone()]))?;
                    }
                    f.write_str(" }")?;
                }
                Ok(())
            }
        }
    }
}

impl TreeDef {
    /// An inner node.
    pub fn node(kind: &'static str, children: Vec<(Key, TreeDef)>, statics: Vec<Static>) -> Self {
        TreeDef::Node(Arc::new(Node {
            kind,
            children,
            statics,
        }))
    }

    /// The number of leaves.
    pub fn num_leaves(&self) -> usize {
        match self {
            TreeDef::Leaf => 1,
            TreeDef::Node(n) => n.children.iter().map(|(_, c)| c.num_leaves()).sum(),
        }
    }

    /// The key path of every leaf, in leaf order.
    pub fn paths(&self) -> Vec<KeyPath> {
        fn walk(d: &TreeDef, path: &mut Vec<Key>, out: &mut Vec<KeyPath>) {
            match d {
                TreeDef::Leaf => out.push(KeyPath(path.clone())),
                TreeDef::Node(n) => {
                    for (k, c) in &n.children {
                        path.push(k.clone());
                        walk(c, path, out);
                        path.pop();
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The first place where `found` differs from `self` (the expected structure), as an
    /// error whose path is that place, or `None` when they are equal.
    pub fn difference(&self, found: &TreeDef) -> Option<TreeError> {
        match (self, found) {
            (TreeDef::Leaf, TreeDef::Leaf) => None,
            (TreeDef::Leaf, TreeDef::Node(n)) => Some(TreeError::new(format!(
                "expected a leaf, found {}",
                n.describe()
            ))),
            (TreeDef::Node(n), TreeDef::Leaf) => Some(TreeError::new(format!(
                "expected {}, found a leaf",
                n.describe()
            ))),
            (TreeDef::Node(a), TreeDef::Node(b)) => {
                if a.kind != b.kind {
                    return Some(TreeError::new(format!(
                        "expected {}, found {}",
                        a.describe(),
                        b.describe()
                    )));
                }
                if a.statics != b.statics {
                    return Some(TreeError::new(format!(
                        "static data differs: expected {:?}, found {:?}",
                        a.statics, b.statics
                    )));
                }
                for (ka, ca) in &a.children {
                    match b.children.iter().find(|(kb, _)| kb == ka) {
                        None => return Some(TreeError::new("missing").within(ka.clone())),
                        Some((_, cb)) => {
                            if let Some(e) = ca.difference(cb) {
                                return Some(e.within(ka.clone()));
                            }
                        }
                    }
                }
                if let Some((kb, _)) = b
                    .children
                    .iter()
                    .find(|(kb, _)| !a.children.iter().any(|(ka, _)| ka == kb))
                {
                    return Some(
                        TreeError::new("unexpected (not in the expected tree)").within(kb.clone()),
                    );
                }
                // Same keys, in another order (cannot happen for the built-in kinds).
                if a.children
                    .iter()
                    .map(|c| &c.0)
                    .ne(b.children.iter().map(|c| &c.0))
                {
                    return Some(TreeError::new("the same keys in another order"));
                }
                None
            }
        }
    }

    /// This node when it has `kind`, `children` children and `statics` static values (for
    /// [`Tree::matches_def`]).
    #[doc(hidden)]
    #[inline]
    pub fn node_of(&self, kind: &str, children: usize, statics: usize) -> Option<&Node> {
        match self {
            TreeDef::Node(n)
                if same_name(n.kind, kind)
                    && n.children.len() == children
                    && n.statics.len() == statics =>
            {
                Some(n)
            }
            _ => None,
        }
    }

    /// This node, checked to have `kind`, exactly the field `keys` and `n_statics` static
    /// values (for `#[derive(Tree)]`). The common case, the fields in order, is checked
    /// inline without collecting the keys; anything else is [`TreeDef::node_mismatch`]'s.
    #[doc(hidden)]
    #[inline]
    pub fn expect_node(
        &self,
        kind: &'static str,
        keys: &[&'static str],
        n_statics: usize,
    ) -> Result<&Node, TreeError> {
        match self {
            TreeDef::Node(n)
                if same_name(n.kind, kind)
                    && n.children.len() == keys.len()
                    && n.statics.len() == n_statics
                    && (n.children.iter().zip(keys))
                        .all(|((k, _), key)| matches!(k, Key::Field(f) if same_name(f, key))) =>
            {
                Ok(n)
            }
            _ => self.node_mismatch(kind, keys, n_statics),
        }
    }

    /// [`TreeDef::expect_node`] for a node other than the expected kind with its fields in
    /// order: the error naming what differs.
    #[cold]
    #[inline(never)]
    fn node_mismatch(
        &self,
        kind: &'static str,
        keys: &[&'static str],
        n_statics: usize,
    ) -> Result<&Node, TreeError> {
        let n = self.expect_kind(kind)?;
        let found: Vec<&Key> = n.children.iter().map(|(k, _)| k).collect();
        for key in keys {
            if !found.contains(&&Key::Field(key)) {
                return Err(TreeError::new("missing").within(Key::Field(key)));
            }
        }
        if found.len() != keys.len() || n.statics.len() != n_statics {
            return Err(TreeError::new(format!(
                "{} does not have the fields of {kind}",
                n.describe()
            )));
        }
        for (k, key) in keys.iter().enumerate() {
            if found[k] != &Key::Field(key) {
                return Err(TreeError::new(format!("{kind}'s fields in another order")));
            }
        }
        Ok(n)
    }

    /// This node, checked to have `kind`.
    #[doc(hidden)]
    #[inline]
    pub fn expect_kind(&self, kind: &'static str) -> Result<&Node, TreeError> {
        match self {
            TreeDef::Node(n) if same_name(n.kind, kind) => Ok(n),
            _ => Err(self.kind_mismatch(kind)),
        }
    }

    /// The error of [`TreeDef::expect_kind`].
    #[cold]
    #[inline(never)]
    fn kind_mismatch(&self, kind: &'static str) -> TreeError {
        match self {
            TreeDef::Node(n) => TreeError::new(format!(
                "expected {}, found {}",
                describe_kind(kind),
                n.describe()
            )),
            TreeDef::Leaf => {
                TreeError::new(format!("expected {}, found a leaf", describe_kind(kind)))
            }
        }
    }
}

fn describe_kind(kind: &str) -> String {
    match kind {
        "Vec" | "array" | "tuple" | "BTreeMap" => format!("a {kind}"),
        "None" | "()" => kind.to_string(),
        "Some" => "Some(..)".to_string(),
        k => format!("a {k}"),
    }
}

impl Node {
    fn describe(&self) -> String {
        let n = self.children.len();
        match self.kind {
            "Vec" | "array" => format!("a {} of length {n}", self.kind),
            "tuple" => format!("a tuple of {n}"),
            "BTreeMap" => format!("a BTreeMap of {n} entries"),
            k => describe_kind(k),
        }
    }

    /// Rebuilds child `k` as a `C` (for `#[derive(Tree)]`).
    #[doc(hidden)]
    #[inline]
    pub fn child<L: Leaf, C: Tree<L>>(
        &self,
        k: usize,
        leaves: &mut dyn Iterator<Item = L>,
    ) -> Result<C, TreeError> {
        let Some((key, def)) = self.children.get(k) else {
            return Err(TreeError::new(format!(
                "{} has no child {k}",
                self.describe()
            )));
        };
        C::unflatten(def, leaves).map_err(|e| e.within(key.clone()))
    }

    /// Whether child `k` has the key `key` and `value`'s structure (for
    /// [`Tree::matches_def`]).
    #[doc(hidden)]
    #[inline]
    pub fn child_is<L: Leaf, C: Tree<L>>(&self, k: usize, key: &Key, value: &C) -> bool {
        self.children
            .get(k)
            .is_some_and(|(kk, d)| kk.is(key) && value.matches_def(d))
    }

    /// Whether static value `k` equals `value` (for [`Tree::matches_def`]).
    #[doc(hidden)]
    pub fn static_is<S: StaticData>(&self, k: usize, value: &S) -> bool {
        self.statics.get(k).is_some_and(|s| s.is(value))
    }

    /// Static value `k` as an `S` (for `#[derive(Tree)]`).
    #[doc(hidden)]
    pub fn static_value<S: Clone + 'static>(&self, k: usize) -> Result<S, TreeError> {
        match self.statics.get(k).and_then(|s| s.get::<S>()) {
            Some(s) => Ok(s.clone()),
            None => Err(TreeError::new(format!(
                "{}: static value {k} is missing or of another type",
                self.kind
            ))),
        }
    }
}

/// A structure that does not fit: where (the key path) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeError {
    /// The path from the root to the place where the structures differ.
    pub path: KeyPath,
    /// What differs there.
    pub what: String,
}

impl TreeError {
    /// An error at the root.
    pub fn new(what: impl Into<String>) -> TreeError {
        TreeError {
            path: KeyPath::default(),
            what: what.into(),
        }
    }

    /// The same error one level down, under `key`.
    pub fn within(mut self, key: Key) -> TreeError {
        self.path.0.insert(0, key);
        self
    }

    /// A ferrax [`Error`] (kind [`ErrorKind::Structure`]) naming the path under `root`, after
    /// `context`: `grad: params.layers[2].w: missing`.
    pub fn into_error(self, context: &str, root: &str) -> Error {
        Error::new(
            ErrorKind::Structure,
            format!("{context}: {}: {}", self.path.under(root), self.what),
        )
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.0.is_empty() {
            write!(f, "{}", self.what)
        } else {
            write!(f, "{}: {}", self.path, self.what)
        }
    }
}

impl std::error::Error for TreeError {}

impl From<TreeError> for Error {
    fn from(e: TreeError) -> Error {
        Error::new(ErrorKind::Structure, e.to_string())
    }
}

/// Rebuilds a tree of type `T` from a structure and exactly `def.num_leaves()` leaves.
pub fn tree_unflatten<L: Leaf, T: Tree<L>>(
    def: &TreeDef,
    leaves: impl IntoIterator<Item = L>,
) -> Result<T, TreeError> {
    let mut it = leaves.into_iter();
    let t = T::unflatten(def, &mut it)?;
    let extra = it.count();
    if extra > 0 {
        return Err(TreeError::new(format!(
            "{extra} leaves left over after rebuilding the tree"
        )));
    }
    Ok(t)
}

/// A map's keys as static data (kept for rebuilding it).
pub(crate) fn map_keys<K, T>(m: &BTreeMap<K, T>) -> Static
where
    K: Ord + Clone + fmt::Debug + Hash + Send + Sync + 'static,
{
    Static::new(m.keys().cloned().collect::<Vec<K>>())
}
