//! Sparse derivatives over parameter trees: [`jacobian_sparse`], [`hessian_sparse`],
//! [`sparsity`] and [`hvp`] for functions of trees.
//!
//! The derivative is taken with respect to every leaf of one tree argument (argument 0, or the
//! one [`TreeSparseDerivative::wrt`] names); its columns index those leaves' elements end to
//! end (each leaf row-major, leaves in tree order), and a Jacobian's rows index the output
//! tree's leaves likewise. A [`LeafIndex`] maps an index back to its leaf's key path and the
//! element within that leaf. Underneath, the positional function of the leaves is rewritten
//! so the selected leaves are one vector (`ferrax_transforms::sparse::flat`), and the
//! positional sparse machinery of [`crate::sparse`] runs on that: one pattern, colouring and
//! compiled graph per argument structure and leaf types.

use super::transforms::{tuple_def, Flat, IntoTreeFn, TreeArgs, TreeFn};
use super::{KeyPath, TreeDef};
use crate::sparse::{Kind, Ordering, Pattern, Sparse, SparseDerivative};
use crate::{Array, Error, ErrorKind, Function, Result, Shape, Type};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The leaves behind the rows or the columns of a tree's sparse derivative: their key paths
/// and shapes, in order, with the first flat index of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafIndex {
    paths: Vec<KeyPath>,
    shapes: Vec<Shape>,
    /// `starts[k]` is leaf `k`'s first index; one more entry, the total.
    starts: Vec<usize>,
}

impl LeafIndex {
    fn new(paths: Vec<KeyPath>, shapes: Vec<Shape>) -> Result<LeafIndex> {
        let mut starts = Vec::with_capacity(shapes.len() + 1);
        let mut at = 0usize;
        starts.push(0);
        for s in &shapes {
            at = at.checked_add(s.size()).ok_or_else(|| {
                Error::new(
                    ErrorKind::Size,
                    "sparse derivative: the element count overflows",
                )
            })?;
            starts.push(at);
        }
        Ok(LeafIndex {
            paths,
            shapes,
            starts,
        })
    }

    /// The number of indices (elements over all leaves).
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether there is no index.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of leaves.
    pub fn num_leaves(&self) -> usize {
        self.paths.len()
    }

    /// The key paths of the leaves, in order.
    pub fn paths(&self) -> &[KeyPath] {
        &self.paths
    }

    /// The shapes of the leaves, in order.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// The indices of leaf `k`'s elements (empty for `k` past the last leaf).
    pub fn range(&self, k: usize) -> std::ops::Range<usize> {
        match (self.starts.get(k), self.starts.get(k + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    /// The leaf index `i` belongs to, and the element's row-major offset within that leaf
    /// (`None` for `i` past the end).
    pub fn leaf_of(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.len() {
            return None;
        }
        // The last leaf starting at or before `i` (empty leaves start where the next does).
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        Some((k, i - self.starts[k]))
    }

    /// Index `i`'s leaf key path and the element's multi-index within that leaf (`None` for
    /// `i` past the end).
    pub fn locate(&self, i: usize) -> Option<(&KeyPath, Vec<usize>)> {
        let (k, mut rest) = self.leaf_of(i)?;
        let dims = self.shapes[k].dims();
        let mut idx = vec![0; dims.len()];
        for d in (0..dims.len()).rev() {
            idx[d] = rest % dims[d].max(1);
            rest /= dims[d].max(1);
        }
        Some((&self.paths[k], idx))
    }
}

/// A sparse derivative of a tree function: the matrix, and what its rows and columns index.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeSparse {
    /// The matrix (CSR), with the number of colours its evaluation used.
    pub matrix: Sparse,
    /// The rows: the output leaves for a Jacobian, the argument's leaves for a Hessian.
    pub rows: LeafIndex,
    /// The columns: the leaves of the argument the derivative is taken with respect to.
    pub cols: LeafIndex,
}

/// A sparsity pattern of a tree function, and what its rows and columns index.
#[derive(Clone, Debug, PartialEq)]
pub struct TreePattern {
    /// The pattern (CSR).
    pub pattern: Pattern,
    /// The rows, as in [`TreeSparse::rows`].
    pub rows: LeafIndex,
    /// The columns, as in [`TreeSparse::cols`].
    pub cols: LeafIndex,
}

/// Everything one argument structure and leaf types need: the positional function of the
/// joined vector, the leaves it joins, and the row and column indices.
struct Member {
    /// `(x, other leaves..)`: `x` the selected leaves joined, each flattened.
    joined: Function,
    /// The flat positions of the selected leaves.
    selected: Vec<usize>,
    rows: LeafIndex,
    cols: LeafIndex,
}

type Key = (Vec<TreeDef>, Vec<Type>);

/// A sparse Jacobian or Hessian of a tree function: [`TreeSparseDerivative::call`] evaluates
/// it on `Array` trees.
#[derive(Clone)]
pub struct TreeSparseDerivative {
    base: TreeFn,
    kind: Kind,
    argnum: usize,
    ordering: Ordering,
    acyclic: bool,
    members: Arc<Mutex<HashMap<Key, Arc<Member>>>>,
    derivs: Arc<Mutex<HashMap<Key, SparseDerivative>>>,
}

impl TreeSparseDerivative {
    fn new(base: TreeFn, kind: Kind, argnum: usize, ordering: Ordering) -> Self {
        TreeSparseDerivative {
            base,
            kind,
            argnum,
            ordering,
            acyclic: false,
            members: Arc::default(),
            derivs: Arc::default(),
        }
    }

    /// The same transform taken with respect to tree argument `argnum` (default 0); the other
    /// arguments are passed through, not differentiated.
    pub fn wrt(&self, argnum: usize) -> TreeSparseDerivative {
        TreeSparseDerivative {
            acyclic: self.acyclic,
            ..TreeSparseDerivative::new(self.base.clone(), self.kind, argnum, self.ordering)
        }
    }

    /// The same transform with another vertex ordering for the colouring (default:
    /// smallest-last).
    pub fn ordering(&self, ordering: Ordering) -> TreeSparseDerivative {
        TreeSparseDerivative {
            acyclic: self.acyclic,
            ..TreeSparseDerivative::new(self.base.clone(), self.kind, self.argnum, ordering)
        }
    }

    /// The same Hessian with an acyclic colouring, recovered by substitution (see
    /// [`SparseDerivative::acyclic`]); a Jacobian's calls then error.
    pub fn acyclic(&self) -> TreeSparseDerivative {
        TreeSparseDerivative {
            acyclic: true,
            ..TreeSparseDerivative::new(self.base.clone(), self.kind, self.argnum, self.ordering)
        }
    }

    fn member(&self, defs: &[TreeDef], types: &[Type]) -> Result<Arc<Member>> {
        let key = (defs.to_vec(), types.to_vec());
        let lock = || self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = lock().get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(member(
            &self.base.flat(defs)?,
            self.kind,
            defs,
            types,
            self.argnum,
        )?);
        lock().insert(key, m.clone());
        Ok(m)
    }

    fn derivative(&self, defs: &[TreeDef], types: &[Type], m: &Member) -> Result<SparseDerivative> {
        let key = (defs.to_vec(), types.to_vec());
        let lock = || self.derivs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = lock().get(&key) {
            return Ok(d.clone());
        }
        let d = match self.kind {
            Kind::Jacobian => crate::jacobian_sparse(m.joined.clone())?,
            Kind::Hessian => crate::hessian_sparse(m.joined.clone())?,
        };
        let d = if self.ordering == Ordering::default() {
            d
        } else {
            d.ordering(self.ordering)?
        };
        let d = if self.acyclic { d.acyclic()? } else { d };
        lock().insert(key, d.clone());
        Ok(d)
    }

    /// The sparse derivative at these `Array` tree arguments (a tuple, as for
    /// [`TreeFn::call`]).
    #[track_caller]
    pub fn call<A: TreeArgs<Array>>(&self, args: A) -> Result<TreeSparse> {
        let loc = std::panic::Location::caller();
        let (defs, leaves) = args.flatten_args();
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let m = self.member(&defs, &types).map_err(|e| e.at(loc))?;
        let d = self.derivative(&defs, &types, &m).map_err(|e| e.at(loc))?;
        let flat = joined_args(&m.selected, leaves, &types)?;
        let matrix = d.call_args(&flat).map_err(|e| e.at(loc))?;
        Ok(TreeSparse {
            matrix,
            rows: m.rows.clone(),
            cols: m.cols.clone(),
        })
    }

    /// The pattern alone for these argument structures and leaf types (the values are not
    /// computed; `args` gives only the structures and types).
    #[track_caller]
    pub fn pattern<A: TreeArgs<Array>>(&self, args: A) -> Result<TreePattern> {
        let loc = std::panic::Location::caller();
        let (defs, leaves) = args.flatten_args();
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let m = self.member(&defs, &types).map_err(|e| e.at(loc))?;
        let d = self.derivative(&defs, &types, &m).map_err(|e| e.at(loc))?;
        let mut joined = vec![Type::new(types[m.selected[0]].dtype, &[m.cols.len()])];
        joined.extend(
            (0..types.len())
                .filter(|i| !m.selected.contains(i))
                .map(|i| types[i].clone()),
        );
        let plan = d.plan_for(&joined).map_err(|e| e.at(loc))?;
        Ok(TreePattern {
            pattern: plan.pattern.clone(),
            rows: m.rows.clone(),
            cols: m.cols.clone(),
        })
    }
}

/// The leaf positions of tree argument `argnum` among all the leaves of `defs`.
fn leaves_of(name: &str, defs: &[TreeDef], argnum: usize) -> Result<(Vec<usize>, TreeDef)> {
    let Some(d) = defs.get(argnum) else {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "{name}: argument {argnum} is differentiated but the call has {}",
                ferrax_ir::error::count_of(defs.len(), "argument")
            ),
        ));
    };
    let start: usize = defs[..argnum].iter().map(TreeDef::num_leaves).sum();
    Ok(((start..start + d.num_leaves()).collect(), d.clone()))
}

fn member(
    flat: &Flat,
    kind: Kind,
    defs: &[TreeDef],
    types: &[Type],
    argnum: usize,
) -> Result<Member> {
    let name = kind.name();
    let (selected, wrt_def) = leaves_of(name, defs, argnum)?;
    if selected.is_empty() {
        return Err(Error::new(
            ErrorKind::Transform,
            format!("{name}: argument {argnum} has no leaves to differentiate with respect to"),
        ));
    }
    let cols = LeafIndex::new(
        wrt_def.paths(),
        selected.iter().map(|&i| types[i].shape.clone()).collect(),
    )?;
    let rows = match kind {
        Kind::Hessian => cols.clone(),
        Kind::Jacobian => {
            let s = flat.func.specialize_untracked(types)?;
            let out_def = flat.out_def(types)?;
            LeafIndex::new(
                out_def.paths(),
                s.output_types().into_iter().map(|t| t.shape).collect(),
            )?
        }
    };
    let (func, sel, types) = (flat.func.clone(), selected.clone(), types.to_vec());
    let flatten_outputs = kind == Kind::Jacobian;
    let joined = Function::derived(name, None, None, move |given| {
        let s = func.specialize_untracked(&types)?;
        if !s.captures.is_empty() {
            return Err(Error::new(
                ErrorKind::Trace,
                format!("{name}: the function closes over tracers of an enclosing trace"),
            ));
        }
        let g = ferrax_transforms::sparse::flat::concat_params(
            &s.graph,
            s.n_explicit,
            &sel,
            flatten_outputs,
        )?;
        // This member is built for one list of leaf types; others are a misuse.
        if g.param_types() != given {
            return Err(Error::new(
                ErrorKind::Transform,
                format!(
                    "{name}: the joined function was built for {:?}, called with {given:?}",
                    g.param_types()
                ),
            ));
        }
        Ok(ferrax_ir::Specialized {
            n_explicit: s.n_explicit + 1 - sel.len(),
            graph: Arc::new(g),
            captures: Vec::new(),
        })
    });
    Ok(Member {
        joined,
        selected,
        rows,
        cols,
    })
}

/// The positional arguments of a member's joined function: the selected leaves joined into
/// one vector (of their common dtype), then the other leaves in order.
fn joined_args(selected: &[usize], leaves: Vec<Array>, types: &[Type]) -> Result<Vec<Array>> {
    let dtype = types[selected[0]].dtype;
    let total: usize = selected.iter().map(|&i| types[i].size()).sum();
    let mut x = ferrax_ir::alloc::try_filled(total, 0.0, "sparse derivative arguments")?;
    let mut at = 0;
    for &i in selected {
        let v = leaves[i].to_f64_vec();
        x[at..at + v.len()].copy_from_slice(&v);
        at += v.len();
    }
    let mut out = vec![Array::from_f64(Shape::new(&[total]), x)?.cast(dtype)];
    out.extend(
        leaves
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !selected.contains(i))
            .map(|(_, a)| a),
    );
    Ok(out)
}

/// The sparse Jacobian of a tree function with respect to every leaf of its first tree
/// argument (see [`TreeSparseDerivative::wrt`]): rows index the output tree's leaves' elements,
/// columns the argument's, each leaf row-major in tree order. The leaves differentiated must
/// share one float dtype, as must the outputs.
///
/// ```
/// use ferrax::prelude::*;
/// use ferrax::tree::{self, Tree};
///
/// #[derive(Tree, Clone, Debug)]
/// struct State<T> { u: T, v: T }
///
/// let f = |s: State<Tensor>| State { u: s.u.clone() * s.v.clone(), v: s.v.sin() };
/// let s = State { u: Array::from(vec![1.0, 2.0]), v: Array::from(vec![3.0, 4.0]) };
/// let j = tree::jacobian_sparse(f).call((&s,)).unwrap();
/// assert_eq!(j.matrix.nnz(), 6);
/// let (path, at) = j.cols.locate(3).unwrap();
/// assert_eq!((path.to_string(), at), ("v".to_string(), vec![1]));
/// ```
pub fn jacobian_sparse<M>(f: impl IntoTreeFn<M>) -> TreeSparseDerivative {
    TreeSparseDerivative::new(f.into_tree_fn(), Kind::Jacobian, 0, Ordering::default())
}

/// The sparse Hessian of a tree function with one scalar output, with respect to every leaf of
/// its first tree argument (see [`TreeSparseDerivative::wrt`]): rows and columns both index the
/// argument's leaves' elements, each leaf row-major in tree order.
pub fn hessian_sparse<M>(f: impl IntoTreeFn<M>) -> TreeSparseDerivative {
    TreeSparseDerivative::new(f.into_tree_fn(), Kind::Hessian, 0, Ordering::default())
}

/// Sparsity patterns of a tree function, without values: [`TreeSparsity::jacobian`] and
/// [`TreeSparsity::hessian`], with respect to tree argument 0 (or the one
/// [`TreeSparsity::wrt`] names).
#[derive(Clone)]
pub struct TreeSparsity {
    base: TreeFn,
    argnum: usize,
}

impl TreeSparsity {
    /// The same patterns with respect to tree argument `argnum`.
    pub fn wrt(&self, argnum: usize) -> TreeSparsity {
        TreeSparsity {
            base: self.base.clone(),
            argnum,
        }
    }

    /// The Jacobian pattern at these arguments' structures and leaf types.
    #[track_caller]
    pub fn jacobian<A: TreeArgs<Array>>(&self, args: A) -> Result<TreePattern> {
        TreeSparseDerivative::new(
            self.base.clone(),
            Kind::Jacobian,
            self.argnum,
            Ordering::default(),
        )
        .pattern(args)
    }

    /// The Hessian pattern of a scalar tree function at these arguments' structures and leaf
    /// types.
    #[track_caller]
    pub fn hessian<A: TreeArgs<Array>>(&self, args: A) -> Result<TreePattern> {
        TreeSparseDerivative::new(
            self.base.clone(),
            Kind::Hessian,
            self.argnum,
            Ordering::default(),
        )
        .pattern(args)
    }
}

/// The sparsity patterns of a tree function, detected on its graph (valid for every input).
pub fn sparsity<M>(f: impl IntoTreeFn<M>) -> TreeSparsity {
    TreeSparsity {
        base: f.into_tree_fn(),
        argnum: 0,
    }
}

/// The Hessian-vector product of a tree function with a scalar output, forward over reverse,
/// compiled: called with the arguments then one direction tree per argument, of the same
/// structures and leaf types, it returns `H · v` with the arguments' structure (the one
/// argument's tree, or a tuple of them for several arguments).
///
/// ```
/// use ferrax::prelude::*;
/// use ferrax::tree::{self, Tree};
///
/// #[derive(Tree, Clone, Debug)]
/// struct P<T> { a: T, b: T }
///
/// let f = |p: P<Tensor>| (p.a.clone() * p.a * p.b).sum_all();
/// let p = P { a: Array::from(vec![1.0, 2.0]), b: Array::from(vec![3.0, 4.0]) };
/// let v = P { a: Array::from(vec![1.0, 0.0]), b: Array::from(vec![0.0, 1.0]) };
/// let hv: P<Array> = tree::hvp(f).call((&p, &v)).unwrap();
/// // H = [[2b, 2a], [2a, 0]] per element: H·v = (2b·va + 2a·vb, 2a·va).
/// assert_eq!(hv.a.to_f64_vec(), vec![6.0, 4.0]);
/// assert_eq!(hv.b.to_f64_vec(), vec![2.0, 0.0]);
/// ```
pub fn hvp<M>(f: impl IntoTreeFn<M>) -> super::TreeJit {
    let base = f.into_tree_fn();
    let arity = base.arity().map(|a| 2 * a);
    let product = TreeFn::new("hvp", arity, move |defs| {
        let n = defs.len() / 2;
        if defs.len() % 2 != 0 || defs[..n] != defs[n..] {
            return Err(Error::new(
                ErrorKind::Structure,
                format!(
                    "hvp: needs the arguments then one direction per argument of the same \
                     structure, got {} tree argument(s) of structures {defs:?}",
                    defs.len()
                ),
            ));
        }
        let flat = base.flat(&defs[..n])?;
        let out_def = if n == 1 {
            defs[0].clone()
        } else {
            tuple_def(defs[..n].to_vec())?
        };
        Ok(Flat::new(
            crate::sparse::hvp_function(flat.func),
            Arc::new(move |_: &[Type]| Ok(out_def.clone())),
        ))
    });
    super::jit(product)
}
