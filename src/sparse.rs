//! Sparse Jacobians and Hessians: `jacobian_sparse(f)`, `hessian_sparse(f)` and `sparsity(f)`.
//!
//! For each input type the pattern is detected once on the IR (valid for every input), coloured,
//! and turned into one graph that computes only the structural nonzeros (see
//! `ferrax_transforms::sparse`); that graph is compiled with the JIT, so a call runs native code
//! returning `nnz` values. Both transforms take functions of one float array argument; the
//! Jacobian needs one float output, the Hessian a scalar output.

use ferrax_ir::{Array, Error, ErrorKind, Function, IntoFunction, Result, Type};
use ferrax_jit::{jit_with, Jit, JitOptions};
use ferrax_transforms::sparse::compress::{hessian_plan, jacobian_plan, SparsePlan};
pub use ferrax_transforms::sparse::{Colouring, Ordering, Pattern};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A sparse matrix in compressed sparse row form, with the number of colours its compressed
/// evaluation used.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse {
    /// The number of rows.
    pub nrows: usize,
    /// The number of columns.
    pub ncols: usize,
    /// Row `r`'s entries are at `row_ptr[r]..row_ptr[r + 1]`; `nrows + 1` entries.
    pub row_ptr: Vec<usize>,
    /// The column of each entry, sorted within a row.
    pub col_idx: Vec<usize>,
    /// The value of each entry (structural nonzeros may be numerically zero at some inputs).
    pub values: Vec<f64>,
    /// The number of colours: the Jacobian-vector, vector-Jacobian or Hessian-vector products
    /// one evaluation costs.
    pub colours: usize,
}

impl Sparse {
    /// The number of stored entries.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }

    /// The dense row-major `nrows × ncols` matrix (for tests and small sizes).
    pub fn to_dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.nrows * self.ncols];
        for r in 0..self.nrows {
            for k in self.row_ptr[r]..self.row_ptr[r + 1] {
                d[r * self.ncols + self.col_idx[k]] = self.values[k];
            }
        }
        d
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Jacobian,
    Hessian,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Jacobian => "jacobian_sparse",
            Kind::Hessian => "hessian_sparse",
        }
    }
}

type Plans = Arc<Mutex<HashMap<Vec<Type>, Arc<SparsePlan>>>>;

/// A sparse Jacobian or Hessian transform: [`SparseDerivative::call`] evaluates it.
#[derive(Clone)]
pub struct SparseDerivative {
    base: Function,
    kind: Kind,
    ordering: Ordering,
    plans: Plans,
    values: Function,
    compiled: Jit,
}

impl SparseDerivative {
    fn new(base: Function, kind: Kind, ordering: Ordering, opts: JitOptions) -> Result<Self> {
        let plans: Plans = Arc::default();
        let (b2, p2) = (base.clone(), plans.clone());
        let values = Function::derived(kind.name(), Some(1), None, move |types| {
            let plan = plan_for(&b2, kind, ordering, &p2, types)?;
            Ok(ferrax_ir::Specialized {
                graph: Arc::new(plan.graph.clone()),
                n_explicit: 1,
                captures: Vec::new(),
            })
        });
        let compiled = jit_with(values.clone(), opts)?;
        Ok(SparseDerivative {
            base,
            kind,
            ordering,
            plans,
            values,
            compiled,
        })
    }

    /// The same transform with another vertex ordering for the colouring (default:
    /// smallest-last).
    pub fn ordering(&self, ordering: Ordering) -> Result<SparseDerivative> {
        let opts = JitOptions::default();
        SparseDerivative::new(self.base.clone(), self.kind, ordering, opts)
    }

    /// The plan (pattern, colouring, values graph) for an argument of type `ty`, computed once
    /// per type.
    pub fn plan(&self, ty: &Type) -> Result<Arc<SparsePlan>> {
        plan_for(
            &self.base,
            self.kind,
            self.ordering,
            &self.plans,
            std::slice::from_ref(ty),
        )
    }

    /// The Function from the argument to the `nnz` values in CSR order (interpretable,
    /// jittable and usable inside other traces like any Function).
    pub fn values_function(&self) -> Function {
        self.values.clone()
    }

    /// The `nnz` values at `x`, by the compiled graph.
    #[track_caller]
    pub fn values(&self, x: &Array) -> Result<Vec<f64>> {
        let out = self.compiled.call_arrays(std::slice::from_ref(x))?;
        Ok(out[0].to_f64_vec())
    }

    /// The sparse derivative at `x`: the pattern with its values.
    #[track_caller]
    pub fn call(&self, x: impl Into<Array>) -> Result<Sparse> {
        let x = x.into();
        let plan = self.plan(&x.ty())?;
        let values = self.values(&x)?;
        let p = &plan.pattern;
        Ok(Sparse {
            nrows: p.nrows,
            ncols: p.ncols,
            row_ptr: p.row_ptr.clone(),
            col_idx: p.col_idx.clone(),
            values,
            colours: plan.colouring.num_colours,
        })
    }
}

fn plan_for(
    base: &Function,
    kind: Kind,
    ordering: Ordering,
    plans: &Plans,
    types: &[Type],
) -> Result<Arc<SparsePlan>> {
    // A poisoned lock still holds whole entries only.
    let lock = || plans.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = lock().get(types) {
        return Ok(p.clone());
    }
    let s = base.specialize_untracked(types)?;
    if !s.captures.is_empty() {
        return Err(Error::new(
            ErrorKind::Trace,
            format!(
                "{}: the function closes over tracers of an enclosing trace",
                kind.name()
            ),
        ));
    }
    let plan = Arc::new(match kind {
        Kind::Jacobian => jacobian_plan(&s.graph, s.n_explicit, ordering)?,
        Kind::Hessian => hessian_plan(&s.graph, s.n_explicit, ordering)?,
    });
    lock().insert(types.to_vec(), plan.clone());
    Ok(plan)
}

/// The sparse Jacobian of a function of one float array with one float output, by forward
/// mode over a column colouring of its detected pattern, or by reverse mode over a row
/// colouring when that needs fewer colours.
///
/// ```
/// use ferrax::{jacobian_sparse, Array, Tensor};
/// let j = jacobian_sparse(|x: Tensor| x.clone() * x).unwrap();
/// let s = j.call(Array::from(vec![1.0, 2.0, 3.0])).unwrap();
/// assert_eq!((s.nnz(), s.colours), (3, 1));
/// assert_eq!(s.values, vec![2.0, 4.0, 6.0]);
/// ```
pub fn jacobian_sparse<M>(f: impl IntoFunction<M>) -> Result<SparseDerivative> {
    SparseDerivative::new(
        f.into_function(),
        Kind::Jacobian,
        Ordering::default(),
        JitOptions::default(),
    )
}

/// The sparse Hessian of a scalar function of one float array, by Hessian-vector products
/// over a star colouring of its detected pattern.
///
/// ```
/// use ferrax::{hessian_sparse, Array, Tensor};
/// let h = hessian_sparse(|x: Tensor| (x.clone() * x).sum_all()).unwrap();
/// let s = h.call(Array::from(vec![1.0, 2.0, 3.0])).unwrap();
/// assert_eq!(s.values, vec![2.0, 2.0, 2.0]);
/// assert_eq!(s.col_idx, vec![0, 1, 2]);
/// ```
pub fn hessian_sparse<M>(f: impl IntoFunction<M>) -> Result<SparseDerivative> {
    SparseDerivative::new(
        f.into_function(),
        Kind::Hessian,
        Ordering::default(),
        JitOptions::default(),
    )
}

/// Sparsity patterns of a function, without values: see [`Sparsity::jacobian`] and
/// [`Sparsity::hessian`].
#[derive(Clone)]
pub struct Sparsity {
    base: Function,
}

impl Sparsity {
    /// The Jacobian pattern for these argument types: rows are the elements of the outputs
    /// (concatenated), columns those of the float arguments (concatenated).
    pub fn jacobian(&self, types: &[Type]) -> Result<Pattern> {
        let s = self.base.specialize(types)?;
        ferrax_transforms::sparse::jacobian_pattern(&s.graph, s.n_explicit)
    }

    /// The Hessian pattern of a scalar function for these argument types (the Jacobian pattern
    /// of its gradient with respect to every argument).
    pub fn hessian(&self, types: &[Type]) -> Result<Pattern> {
        let s = self.base.specialize(types)?;
        ferrax_transforms::sparse::hessian_pattern(&s.graph, s.n_explicit)
    }
}

/// The sparsity patterns of `f`, detected on its graph (valid for every input).
///
/// ```
/// use ferrax::{sparsity, DType, Tensor, Type};
/// let p = sparsity(|x: Tensor| x.cumsum(0)).jacobian(&[Type::new(DType::F64, &[3])]).unwrap();
/// assert_eq!(p.col_idx, vec![0, 0, 1, 0, 1, 2]);
/// ```
pub fn sparsity<M>(f: impl IntoFunction<M>) -> Sparsity {
    Sparsity {
        base: f.into_function(),
    }
}
