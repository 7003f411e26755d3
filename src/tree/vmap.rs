//! `vmap` over trees: axis prefixes ([`Axis`], [`AxisSpec`], [`IntoAxisSpec`]) and
//! [`TreeVmap`], which expands the prefixes to one batch axis per leaf once the argument and
//! output structures are known and applies the positional `vmap` to the flat function.

use super::transforms::{tuple_def, Flat, IntoTreeFn, TreeFn, TreeFnMarker};
use super::{Leaf, Tree, TreeDef, TreeError};
use crate::{Error, ErrorKind, Function, Result, Type};
use std::sync::Arc;

/// The leaf type of axis prefixes: the batch axis of a whole subtree (`Axis(Some(0))`) or none
/// (`Axis(None)`, not batched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Axis(pub Option<usize>);

impl Leaf for Axis {}

impl Tree<Axis> for Axis {
    type Map<U: Leaf> = U;
    fn def(&self) -> TreeDef {
        TreeDef::Leaf
    }
    fn for_each_leaf<'a>(&'a self, f: &mut dyn FnMut(&'a Axis)) {
        f(self)
    }
    fn for_each_leaf_mut(&mut self, f: &mut dyn FnMut(&mut Axis)) {
        f(self)
    }
    fn into_each_leaf(self, f: &mut dyn FnMut(Axis)) {
        f(self)
    }
    fn unflatten(def: &TreeDef, leaves: &mut dyn Iterator<Item = Axis>) -> Result<Axis, TreeError> {
        match def {
            TreeDef::Leaf => leaves
                .next()
                .ok_or_else(|| TreeError::new("missing (fewer leaves than the structure has)")),
            TreeDef::Node(_) => Err(TreeError::new("expected a leaf")),
        }
    }
}

/// An axis prefix: a tree whose leaves are [`Axis`] values and whose structure is a prefix of
/// the tree it describes; an axis at a position applies to the whole subtree there.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisSpec {
    def: TreeDef,
    axes: Vec<Axis>,
}

impl AxisSpec {
    /// A prefix from a tree of axes (`Layer { w: Axis(Some(0)), b: Axis(None) }`).
    pub fn tree<T: Tree<Axis>>(t: &T) -> AxisSpec {
        AxisSpec {
            def: t.def(),
            axes: t.leaves().into_iter().copied().collect(),
        }
    }

    /// The axis of every leaf of a tree of structure `def`; a prefix that does not fit is an
    /// error naming the key path under `root`.
    fn expand(&self, name: &str, root: &str, def: &TreeDef) -> Result<Vec<Option<usize>>> {
        fn walk(
            spec: &TreeDef,
            axes: &mut std::slice::Iter<'_, Axis>,
            def: &TreeDef,
            out: &mut Vec<Option<usize>>,
        ) -> std::result::Result<(), TreeError> {
            match (spec, def) {
                (TreeDef::Leaf, d) => {
                    let a = axes.next().ok_or_else(|| TreeError::new("axis missing"))?;
                    out.extend(std::iter::repeat_n(a.0, d.num_leaves()));
                    Ok(())
                }
                (TreeDef::Node(_), TreeDef::Leaf) => Err(TreeError::new(
                    "the axis prefix has a subtree where the argument has a leaf",
                )),
                (TreeDef::Node(s), TreeDef::Node(n)) => {
                    if s.kind != n.kind || s.children.len() != n.children.len() {
                        return Err(TreeError::new(format!(
                            "the axis prefix is {spec:?} where the tree is {def:?}"
                        )));
                    }
                    for ((ks, cs), (kd, cd)) in s.children.iter().zip(&n.children) {
                        if ks != kd {
                            return Err(
                                TreeError::new("missing in the axis prefix").within(kd.clone())
                            );
                        }
                        walk(cs, axes, cd, out).map_err(|e| e.within(kd.clone()))?;
                    }
                    Ok(())
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.def, &mut self.axes.iter(), def, &mut out)
            .map_err(|e| e.into_error(name, root))?;
        Ok(out)
    }

    /// The prefix for argument `k` when this spec covers all arguments: a leaf applies to
    /// every argument, a tuple gives one prefix per argument.
    fn per_arg(&self, name: &str, n: usize) -> Result<Vec<AxisSpec>> {
        match &self.def {
            TreeDef::Leaf => Ok(vec![self.clone(); n]),
            TreeDef::Node(node) if node.kind == "tuple" && node.children.len() == n => {
                let mut axes = self.axes.iter();
                Ok(node
                    .children
                    .iter()
                    .map(|(_, c)| AxisSpec {
                        def: c.clone(),
                        axes: axes.by_ref().take(c.num_leaves()).copied().collect(),
                    })
                    .collect())
            }
            _ => Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "{name}: in_axes {:?} is neither one axis nor a tuple of one prefix per \
                     argument ({})",
                    self.def,
                    ferrax_ir::error::count_of(n, "argument")
                ),
            )),
        }
    }
}

/// Values that describe an axis prefix: `0usize`, `None`, `Some(1)`, `Axis(..)`, a tuple of
/// prefixes `(None, 0, 0)`, or a tree of axes by reference.
pub trait IntoAxisSpec {
    /// The prefix.
    fn into_axis_spec(self) -> AxisSpec;
}

impl IntoAxisSpec for usize {
    fn into_axis_spec(self) -> AxisSpec {
        Axis(Some(self)).into_axis_spec()
    }
}

impl IntoAxisSpec for Option<usize> {
    fn into_axis_spec(self) -> AxisSpec {
        Axis(self).into_axis_spec()
    }
}

impl IntoAxisSpec for Axis {
    fn into_axis_spec(self) -> AxisSpec {
        AxisSpec {
            def: TreeDef::Leaf,
            axes: vec![self],
        }
    }
}

impl IntoAxisSpec for AxisSpec {
    fn into_axis_spec(self) -> AxisSpec {
        self
    }
}

impl<T: Tree<Axis>> IntoAxisSpec for &T {
    fn into_axis_spec(self) -> AxisSpec {
        AxisSpec::tree(self)
    }
}

macro_rules! tuple_axes {
    ($($a:ident),+) => {
        impl<$($a: IntoAxisSpec),+> IntoAxisSpec for ($($a,)+) {
            #[allow(non_snake_case)]
            fn into_axis_spec(self) -> AxisSpec {
                let ($($a,)+) = self;
                let specs = vec![$($a.into_axis_spec()),+];
                let def = tuple_def(specs.iter().map(|s| s.def.clone()).collect())
                    .expect("at most 6 elements");
                AxisSpec {
                    def,
                    axes: specs.into_iter().flat_map(|s| s.axes).collect(),
                }
            }
        }
    };
}
tuple_axes!(A);
tuple_axes!(A, B);
tuple_axes!(A, B, C);
tuple_axes!(A, B, C, D);
tuple_axes!(A, B, C, D, E);
tuple_axes!(A, B, C, D, E, F);

/// `vmap` over trees, with [`TreeVmap::in_axes`] and [`TreeVmap::out_axes`] as tree prefixes.
#[derive(Clone)]
pub struct TreeVmap {
    base: TreeFn,
    in_axes: AxisSpec,
    out_axes: AxisSpec,
    func: TreeFn,
}

ferrax_transforms::wrapping_handle!(TreeVmap => TreeFn, IntoTreeFn::into_tree_fn, TreeFnMarker);

impl TreeVmap {
    fn build(base: TreeFn, in_axes: AxisSpec, out_axes: AxisSpec) -> TreeVmap {
        let (b, ia, oa) = (base.clone(), in_axes.clone(), out_axes.clone());
        let func = TreeFn::new("vmap", base.arity(), move |defs| {
            let flat = b.flat(defs)?;
            let mut flat_in = Vec::new();
            for (k, (spec, d)) in ia.per_arg("vmap", defs.len())?.iter().zip(defs).enumerate() {
                flat_in.extend(spec.expand("vmap: in_axes", &format!("args[{k}]"), d)?);
            }
            let (member_fn, base_out, oa) = (flat.func.clone(), flat.out.clone(), oa.clone());
            let fi = flat_in.clone();
            let func = Function::derived("vmap", Some(flat_in.len()), None, move |types| {
                let member = member_types(&fi, types)?;
                let out_def = base_out(&member)?;
                let flat_out = oa.expand("vmap: out_axes", "result", &out_def)?;
                let mut out = Vec::with_capacity(flat_out.len());
                for a in flat_out {
                    out.push(a.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Axis,
                            "vmap: out_axes must give every output leaf a batch axis (None is \
                             for inputs only)",
                        )
                    })?);
                }
                crate::vmap(&member_fn)
                    .in_axes(&fi)
                    .out_axes(&out)
                    .specialize_untracked(types)
            });
            let (base_out, fi) = (flat.out.clone(), flat_in);
            let out = move |types: &[Type]| base_out(&member_types(&fi, types)?);
            Ok(Flat {
                func,
                out: Arc::new(out),
            })
        });
        TreeVmap {
            base,
            in_axes,
            out_axes,
            func,
        }
    }

    /// The batch axes of the arguments: one axis for every argument (`0`), or a tuple with one
    /// prefix per argument (`(None, 0, 0)`, or `(&Layer { w: Axis(Some(0)), b: Axis(None) },
    /// 0)`); `None` leaves a subtree unbatched.
    pub fn in_axes(&self, axes: impl IntoAxisSpec) -> TreeVmap {
        TreeVmap::build(
            self.base.clone(),
            axes.into_axis_spec(),
            self.out_axes.clone(),
        )
    }

    /// Where the output tree carries the batch axis: a prefix of the output tree (default 0).
    pub fn out_axes(&self, axes: impl IntoAxisSpec) -> TreeVmap {
        TreeVmap::build(
            self.base.clone(),
            self.in_axes.clone(),
            axes.into_axis_spec(),
        )
    }

    /// The TreeFn this transform stands for.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// The member types of a batched call: each type without its batch axis.
fn member_types(axes: &[Option<usize>], types: &[Type]) -> Result<Vec<Type>> {
    if axes.len() != types.len() {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "vmap: {} for {}",
                ferrax_ir::error::count_of(axes.len(), "axis"),
                ferrax_ir::error::count_of(types.len(), "leaf")
            ),
        ));
    }
    let mut out = Vec::with_capacity(types.len());
    for (k, (t, a)) in types.iter().zip(axes).enumerate() {
        out.push(match a {
            None => t.clone(),
            Some(a) if let Some(m) = t.without_axis(*a) => m,
            Some(a) => {
                return Err(Error::new(
                    ErrorKind::Axis,
                    format!("vmap: axis {a} of leaf {k} is out of range for its type {t}"),
                ))
            }
        });
    }
    Ok(out)
}

/// Vectorizes a function of trees over axis 0 of every leaf (see [`TreeVmap::in_axes`]).
pub fn vmap<M>(f: impl IntoTreeFn<M>) -> TreeVmap {
    let zero = 0usize.into_axis_spec();
    TreeVmap::build(f.into_tree_fn(), zero.clone(), zero)
}
