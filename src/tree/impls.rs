//! [`Tree`] for the leaves (`Tensor`, `Array`, `f64`, `f32`) and the standard containers:
//! `()`, tuples of up to 8, `[T; N]`, `Vec<T>`, `Box<T>`, `Option<T>`, `BTreeMap<K, T>`.

use super::{map_keys, Key, Leaf, Tree, TreeDef, TreeError};
use crate::{Array, Tensor};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;

/// Takes the next leaf, or reports that the leaves ran out.
#[inline]
fn next_leaf<L>(leaves: &mut dyn Iterator<Item = L>) -> Result<L, TreeError> {
    leaves
        .next()
        .ok_or_else(|| TreeError::new("missing (fewer leaves than the structure has)"))
}

/// The error for a node where a leaf was expected.
#[cold]
#[inline(never)]
fn not_a_leaf(n: &super::Node) -> TreeError {
    TreeError::new(format!("expected a leaf, found {}", n.describe()))
}

/// Whether `def` is a node of `kind` whose children are `items`' structures under their
/// indices (a `Vec`'s or an array's structure).
fn indexed_match<L: Leaf, T: Tree<L>>(def: &TreeDef, kind: &str, items: &[T]) -> bool {
    def.node_of(kind, items.len(), 0).is_some_and(|n| {
        items
            .iter()
            .enumerate()
            .all(|(i, c)| n.child_is(i, &Key::Index(i), c))
    })
}

macro_rules! leaf {
    ($($t:ty),*) => {$(
        impl Leaf for $t {}

        impl Tree<$t> for $t {
            type Map<U: Leaf> = U;
            #[inline]
            fn def(&self) -> TreeDef {
                TreeDef::Leaf
            }
            #[inline]
            fn matches_def(&self, def: &TreeDef) -> bool {
                matches!(def, TreeDef::Leaf)
            }
            #[inline]
            fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a $t)) {
                f(self)
            }
            #[inline]
            fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut $t)) {
                f(self)
            }
            #[inline]
            fn into_each_leaf(self, f: &mut dyn FnMut($t)) {
                f(self)
            }
            #[inline]
            fn unflatten(
                def: &TreeDef,
                leaves: &mut dyn Iterator<Item = $t>,
            ) -> Result<Self, TreeError> {
                match def {
                    TreeDef::Leaf => next_leaf(leaves),
                    TreeDef::Node(n) => Err(not_a_leaf(n)),
                }
            }
        }
    )*};
}
leaf!(Tensor, Array, f64, f32);

impl<L: Leaf> Tree<L> for () {
    type Map<U: Leaf> = ();
    fn def(&self) -> TreeDef {
        TreeDef::node("()", Vec::new(), Vec::new())
    }
    fn matches_def(&self, def: &TreeDef) -> bool {
        def.node_of("()", 0, 0).is_some()
    }
    fn for_each_leaf<'a>(&'a self, _: &mut dyn FnMut(&'a L)) {}
    fn for_each_leaf_mut(&mut self, _: &mut dyn FnMut(&mut L)) {}
    fn into_each_leaf(self, _: &mut dyn FnMut(L)) {}
    fn unflatten(def: &TreeDef, _: &mut dyn Iterator<Item = L>) -> Result<(), TreeError> {
        def.expect_kind("()")?;
        Ok(())
    }
}

impl<L: Leaf, T: Tree<L>> Tree<L> for Vec<T> {
    type Map<U: Leaf> = Vec<T::Map<U>>;
    fn def(&self) -> TreeDef {
        let children = self
            .iter()
            .enumerate()
            .map(|(i, c)| (Key::Index(i), c.def()))
            .collect();
        TreeDef::node("Vec", children, Vec::new())
    }
    fn matches_def(&self, def: &TreeDef) -> bool {
        indexed_match(def, "Vec", self)
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
        self.iter().for_each(|c| c.for_each_leaf(f))
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
        self.iter_mut().for_each(|c| c.for_each_leaf_mut(f))
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
        self.into_iter().for_each(|c| c.into_each_leaf(f))
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError> {
        let n = def.expect_kind("Vec")?;
        (0..n.children.len()).map(|k| n.child(k, leaves)).collect()
    }
}

impl<L: Leaf, T: Tree<L>, const N: usize> Tree<L> for [T; N] {
    type Map<U: Leaf> = [T::Map<U>; N];
    fn def(&self) -> TreeDef {
        let children = self
            .iter()
            .enumerate()
            .map(|(i, c)| (Key::Index(i), c.def()))
            .collect();
        TreeDef::node("array", children, Vec::new())
    }
    fn matches_def(&self, def: &TreeDef) -> bool {
        indexed_match(def, "array", self)
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
        self.iter().for_each(|c| c.for_each_leaf(f))
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
        self.iter_mut().for_each(|c| c.for_each_leaf_mut(f))
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
        self.into_iter().for_each(|c| c.into_each_leaf(f))
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError> {
        let n = def.expect_kind("array")?;
        if n.children.len() != N {
            return Err(TreeError::new(format!(
                "expected an array of length {N}, found {}",
                n.describe()
            )));
        }
        let v: Vec<T> = (0..N)
            .map(|k| n.child(k, leaves))
            .collect::<Result<_, _>>()?;
        v.try_into()
            .map_err(|_| TreeError::new(format!("expected an array of length {N}")))
    }
}

impl<L: Leaf, T: Tree<L>> Tree<L> for Box<T> {
    type Map<U: Leaf> = Box<T::Map<U>>;
    fn def(&self) -> TreeDef {
        (**self).def()
    }
    fn matches_def(&self, def: &TreeDef) -> bool {
        (**self).matches_def(def)
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
        (**self).for_each_leaf(f)
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
        (**self).for_each_leaf_mut(f)
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
        (*self).into_each_leaf(f)
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError> {
        T::unflatten(def, leaves).map(Box::new)
    }
}

impl<L: Leaf, T: Tree<L>> Tree<L> for Option<T> {
    type Map<U: Leaf> = Option<T::Map<U>>;
    fn def(&self) -> TreeDef {
        match self {
            None => TreeDef::node("None", Vec::new(), Vec::new()),
            Some(c) => TreeDef::node("Some", vec![(Key::Some, c.def())], Vec::new()),
        }
    }
    fn matches_def(&self, def: &TreeDef) -> bool {
        match self {
            None => def.node_of("None", 0, 0).is_some(),
            Some(c) => def
                .node_of("Some", 1, 0)
                .is_some_and(|n| n.child_is(0, &Key::Some, c)),
        }
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
        if let Some(c) = self {
            c.for_each_leaf(f)
        }
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
        if let Some(c) = self {
            c.for_each_leaf_mut(f)
        }
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
        if let Some(c) = self {
            c.into_each_leaf(f)
        }
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError> {
        match def {
            TreeDef::Node(n) if n.kind == "None" && n.children.is_empty() => Ok(None),
            TreeDef::Node(n) if n.kind == "Some" && n.children.len() == 1 => {
                n.child(0, leaves).map(Some)
            }
            TreeDef::Node(n) => Err(TreeError::new(format!(
                "expected an Option, found {}",
                n.describe()
            ))),
            TreeDef::Leaf => Err(TreeError::new("expected an Option, found a leaf")),
        }
    }
}

impl<L: Leaf, K, T: Tree<L>> Tree<L> for BTreeMap<K, T>
where
    K: Ord + Clone + fmt::Debug + Hash + Send + Sync + 'static,
{
    type Map<U: Leaf> = BTreeMap<K, T::Map<U>>;
    fn def(&self) -> TreeDef {
        let children = self
            .iter()
            .map(|(k, c)| (Key::Map(format!("{k:?}")), c.def()))
            .collect();
        TreeDef::node("BTreeMap", children, vec![map_keys(self)])
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
        self.values().for_each(|c| c.for_each_leaf(f))
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
        self.values_mut().for_each(|c| c.for_each_leaf_mut(f))
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
        self.into_values().for_each(|c| c.into_each_leaf(f))
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = L>) -> Result<Self, TreeError> {
        let n = def.expect_kind("BTreeMap")?;
        let keys: Vec<K> = n.static_value(0)?;
        if keys.len() != n.children.len() {
            return Err(TreeError::new(
                "a BTreeMap's keys and entries differ in number",
            ));
        }
        let mut m = BTreeMap::new();
        for (k, key) in keys.into_iter().enumerate() {
            m.insert(key, n.child(k, leaves)?);
        }
        Ok(m)
    }
}

macro_rules! tuple {
    ($n:literal; $($t:ident $i:tt),+) => {
        impl<L: Leaf, $($t: Tree<L>),+> Tree<L> for ($($t,)+) {
            type Map<U: Leaf> = ($($t::Map<U>,)+);
            fn def(&self) -> TreeDef {
                TreeDef::node(
                    "tuple",
                    vec![$((Key::Field(stringify!($i)), self.$i.def())),+],
                    Vec::new(),
                )
            }
            fn matches_def(&self, def: &TreeDef) -> bool {
                def.node_of("tuple", $n, 0).is_some_and(|n| {
                    $(n.child_is($i, &Key::Field(stringify!($i)), &self.$i))&&+
                })
            }
            fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a L)) {
                $(self.$i.for_each_leaf(f);)+
            }
            fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut L)) {
                $(self.$i.for_each_leaf_mut(f);)+
            }
            fn into_each_leaf(self, f: &mut dyn FnMut(L)) {
                $(self.$i.into_each_leaf(f);)+
            }
            fn unflatten(
                def: &TreeDef,
                leaves: &mut dyn Iterator<Item = L>,
            ) -> Result<Self, TreeError> {
                let n = def.expect_node("tuple", &[$(stringify!($i)),+], 0)?;
                Ok(($(n.child::<L, $t>($i, leaves)?,)+))
            }
        }
    };
}
tuple!(1; A 0);
tuple!(2; A 0, B 1);
tuple!(3; A 0, B 1, C 2);
tuple!(4; A 0, B 1, C 2, D 3);
tuple!(5; A 0, B 1, C 2, D 3, E 4);
tuple!(6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
