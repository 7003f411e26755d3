//! Functions over trees: leaves and their paths, maps over one or several trees of one
//! structure, reductions and the global norm. Each works on `Array` trees outside a trace and
//! on `Tensor` trees inside one.

use super::{KeyPath, Leaf, Tree, TreeDef, TreeError};
use crate::{Array, Tensor};

/// The leaves of a tree, in order.
pub fn tree_leaves<L: Leaf, T: Tree<L>>(tree: &T) -> Vec<&L> {
    tree.leaves()
}

/// The structure of a tree.
pub fn tree_structure<L: Leaf, T: Tree<L>>(tree: &T) -> TreeDef {
    tree.def()
}

/// The key path of every leaf, in leaf order (`layers[2].w`).
pub fn tree_paths<L: Leaf, T: Tree<L>>(tree: &T) -> Vec<KeyPath> {
    tree.def().paths()
}

/// The leaves with their key paths.
pub fn tree_leaves_with_path<L: Leaf, T: Tree<L>>(tree: &T) -> Vec<(KeyPath, &L)> {
    tree.def().paths().into_iter().zip(tree.leaves()).collect()
}

/// The same structure with `f` applied to every leaf (by reference; [`Tree::map`] consumes).
///
/// # Panics
///
/// Only for a hand-written `Tree` implementation that does not rebuild its own structure
/// (see [`Tree::map`]).
pub fn tree_map<L: Leaf, U: Leaf, T: Tree<L>>(tree: &T, mut f: impl FnMut(&L) -> U) -> T::Map<U> {
    let mut out = Vec::new();
    tree.for_each_leaf(&mut |l| out.push(f(l)));
    rebuild(&tree.def(), out)
}

fn rebuild<U: Leaf, M: Tree<U>>(def: &TreeDef, leaves: Vec<U>) -> M {
    match super::tree_unflatten(def, leaves) {
        Ok(t) => t,
        Err(e) => panic!("a Tree implementation does not rebuild its own structure: {e}"),
    }
}

/// Checks that `found` has the structure `expected`; the error names the first differing
/// key path and says which tree (`the second tree`) it is in.
fn same_structure(expected: &TreeDef, found: &TreeDef, which: &str) -> Result<(), TreeError> {
    match expected.difference(found) {
        None => Ok(()),
        Some(mut e) => {
            e.what = format!("{} in {which}", e.what);
            Err(e)
        }
    }
}

/// Maps two trees of one structure leaf by leaf: `f(a_leaf, b_leaf)`. The structures must be
/// equal (static data included); otherwise the error names the first key path where the
/// second tree differs (`layers[2]: missing in the second tree`).
///
/// ```
/// use ferrax::tree::{tree_zip_map, Tree};
/// let a = vec![(1.0, 2.0), (3.0, 4.0)];
/// let b = vec![(10.0, 20.0), (30.0, 40.0)];
/// let s: Vec<(f64, f64)> = tree_zip_map(&a, &b, |x, y| x + y).unwrap();
/// assert_eq!(s, [(11.0, 22.0), (33.0, 44.0)]);
/// let e = tree_zip_map(&a, &b[..1].to_vec(), |x, y| x + y).unwrap_err();
/// assert_eq!(e.to_string(), "[1]: missing in the second tree");
/// ```
pub fn tree_zip_map<L1, L2, U, A, B>(
    a: &A,
    b: &B,
    mut f: impl FnMut(&L1, &L2) -> U,
) -> Result<A::Map<U>, TreeError>
where
    L1: Leaf,
    L2: Leaf,
    U: Leaf,
    A: Tree<L1>,
    B: Tree<L2>,
{
    let def = a.def();
    same_structure(&def, &b.def(), "the second tree")?;
    let out: Vec<U> = a
        .leaves()
        .into_iter()
        .zip(b.leaves())
        .map(|(x, y)| f(x, y))
        .collect();
    Ok(rebuild(&def, out))
}

/// Maps three trees of one structure leaf by leaf (see [`tree_zip_map`]).
pub fn tree_zip_map3<L1, L2, L3, U, A, B, C>(
    a: &A,
    b: &B,
    c: &C,
    mut f: impl FnMut(&L1, &L2, &L3) -> U,
) -> Result<A::Map<U>, TreeError>
where
    L1: Leaf,
    L2: Leaf,
    L3: Leaf,
    U: Leaf,
    A: Tree<L1>,
    B: Tree<L2>,
    C: Tree<L3>,
{
    let def = a.def();
    same_structure(&def, &b.def(), "the second tree")?;
    same_structure(&def, &c.def(), "the third tree")?;
    let out: Vec<U> = a
        .leaves()
        .into_iter()
        .zip(b.leaves())
        .zip(c.leaves())
        .map(|((x, y), z)| f(x, y, z))
        .collect();
    Ok(rebuild(&def, out))
}

/// Maps any number of trees of one type and structure leaf by leaf: `f` gets the leaves at one
/// position, one from each tree. The result has the structure of the first tree; no trees is
/// an error.
pub fn tree_zip_map_n<L: Leaf, U: Leaf, T: Tree<L>>(
    trees: &[&T],
    mut f: impl FnMut(&[&L]) -> U,
) -> Result<T::Map<U>, TreeError> {
    let Some(first) = trees.first() else {
        return Err(TreeError::new("tree_zip_map_n needs at least one tree"));
    };
    let def = first.def();
    for (k, t) in trees.iter().enumerate().skip(1) {
        same_structure(&def, &t.def(), &format!("tree {k}"))?;
    }
    let leaves: Vec<Vec<&L>> = trees.iter().map(|t| t.leaves()).collect();
    let n = leaves[0].len();
    let mut out = Vec::with_capacity(n);
    let mut column = Vec::with_capacity(trees.len());
    for i in 0..n {
        column.clear();
        column.extend(leaves.iter().map(|l| l[i]));
        out.push(f(&column));
    }
    Ok(rebuild(&def, out))
}

/// Folds the leaves in order: `f(f(init, leaf0), leaf1)...`.
pub fn tree_reduce<L: Leaf, T: Tree<L>, A>(tree: &T, init: A, f: impl FnMut(A, &L) -> A) -> A {
    tree.leaves().into_iter().fold(init, f)
}

/// Leaves whose tree has a global norm: the square root of the sum of the squares of every
/// element of every leaf.
pub trait NormLeaf: Leaf {
    /// The norm's type: `f64` for arrays, a scalar `Tensor` inside a trace.
    type Norm;
    /// The global norm of these leaves.
    fn global_norm_of(leaves: &[&Self]) -> Self::Norm;
}

impl NormLeaf for Array {
    type Norm = f64;
    /// Elements of any dtype, widened to f64.
    fn global_norm_of(leaves: &[&Array]) -> f64 {
        leaves
            .iter()
            .flat_map(|a| a.to_f64_vec())
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
    }
}

impl NormLeaf for Tensor {
    type Norm = Tensor;
    /// Sums in the leaves' dtype; leaves of mixed dtypes give the usual dtype error.
    fn global_norm_of(leaves: &[&Tensor]) -> Tensor {
        let mut total: Option<Tensor> = None;
        for l in leaves {
            let s = (*l * *l).sum_all();
            total = Some(match total {
                None => s,
                Some(t) => t + s,
            });
        }
        total.unwrap_or_else(|| Tensor::from(0.0)).sqrt()
    }
}

impl NormLeaf for f64 {
    type Norm = f64;
    fn global_norm_of(leaves: &[&f64]) -> f64 {
        leaves.iter().map(|x| *x * *x).sum::<f64>().sqrt()
    }
}

impl NormLeaf for f32 {
    type Norm = f32;
    fn global_norm_of(leaves: &[&f32]) -> f32 {
        leaves.iter().map(|x| *x * *x).sum::<f32>().sqrt()
    }
}

/// The global norm of a tree: `sqrt(Σ x²)` over every element of every leaf (an `f64` for an
/// `Array` tree, a scalar `Tensor` inside a trace), as used for gradient clipping.
///
/// ```
/// use ferrax::tree::global_norm;
/// assert_eq!(global_norm(&(3.0, vec![4.0])), 5.0);
/// ```
pub fn global_norm<L: NormLeaf, T: Tree<L>>(tree: &T) -> L::Norm {
    L::global_norm_of(&tree.leaves())
}
