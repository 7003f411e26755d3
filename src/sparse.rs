//! Sparse Jacobians and Hessians: `jacobian_sparse(f)`, `hessian_sparse(f)`, `sparsity(f)`,
//! and Hessian-vector products `hvp(f)`.
//!
//! For each input type the pattern is detected once on the IR (valid for every input), coloured,
//! and turned into one graph that computes only the structural nonzeros (see
//! `ferrax_transforms::sparse`); that graph is compiled with the JIT, so a call runs native code
//! returning `nnz` values. The derivative is taken with respect to one float array argument
//! (the first, or the one [`SparseDerivative::wrt`] names); any other arguments are parameters
//! passed through. The Jacobian needs one float output, the Hessian a scalar output.
//!
//! With the cargo feature `faer`, a [`Sparse`] converts to faer's compressed sparse column and
//! row matrices ([`Sparse::to_faer_csc`], [`Sparse::to_faer_csr`]).

use ferrax_ir::{Array, Data, Error, ErrorKind, Function, IntoFunction, Result, Type};
use ferrax_jit::{jit_with, Jit, JitOptions};
use ferrax_transforms::sparse::compress::{
    hessian_plan, hessian_plan_acyclic, jacobian_plan_with, SparsePlan, CONSTANT_EVAL_ITERATIONS,
};
pub use ferrax_transforms::sparse::{Colouring, Ordering, Pattern};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A sparse matrix in compressed sparse row form, with the number of colours its compressed
/// evaluation used. Row `r` of a Jacobian is output element `r` (row-major over the output),
/// column `c` input element `c` (row-major over the argument the derivative is taken with
/// respect to).
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

    /// Checks the CSR invariants (the fields are public, so a value may have been edited):
    /// `nrows + 1` nondecreasing row pointers from 0 to `nnz`, one value per column index,
    /// column indices below `ncols` and strictly increasing within each row.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::new(ErrorKind::Shape, format!("Sparse: {what}")));
        if self.row_ptr.len() != self.nrows.saturating_add(1) {
            return bad(format!(
                "expected {} row pointers (nrows + 1), found {}",
                self.nrows.saturating_add(1),
                self.row_ptr.len()
            ));
        }
        if self.values.len() != self.col_idx.len() {
            return bad(format!(
                "expected one value per column index ({}), found {}",
                self.col_idx.len(),
                self.values.len()
            ));
        }
        if self.row_ptr[0] != 0 || self.row_ptr[self.nrows] != self.col_idx.len() {
            return bad(format!(
                "expected row pointers from 0 to nnz = {}, found {} to {}",
                self.col_idx.len(),
                self.row_ptr[0],
                self.row_ptr[self.nrows]
            ));
        }
        for r in 0..self.nrows {
            let (a, b) = (self.row_ptr[r], self.row_ptr[r + 1]);
            if a > b {
                return bad(format!("row pointers decrease at row {r} ({a} > {b})"));
            }
            let row = &self.col_idx[a..b];
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("the column indices of row {r} are not increasing"));
            }
            if let Some(&c) = row.last().filter(|&&c| c >= self.ncols) {
                return bad(format!(
                    "column {c} in row {r}, expected below {}",
                    self.ncols
                ));
            }
        }
        Ok(())
    }

    /// The stored entries as `(row, column, value)` triplets, in row order (entries a
    /// malformed value does not describe, see [`Sparse::check`], are skipped).
    pub fn triplets(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        (0..self.nrows).flat_map(move |r| {
            let a = self.row_ptr.get(r).copied().unwrap_or(0);
            let b = self.row_ptr.get(r + 1).copied().unwrap_or(0);
            (a..b.max(a))
                .filter_map(move |k| Some((r, *self.col_idx.get(k)?, *self.values.get(k)?)))
        })
    }

    /// The dense row-major `nrows × ncols` matrix (for tests and small sizes). Errors for a
    /// malformed value or one too large to allocate.
    pub fn to_dense(&self) -> Result<Vec<f64>> {
        self.check()?;
        let size = ferrax_ir::Shape::new(&[self.nrows, self.ncols]).checked_size();
        let Some(size) = size else {
            return Err(Error::new(
                ErrorKind::Size,
                format!(
                    "Sparse::to_dense: {} × {} elements overflow",
                    self.nrows, self.ncols
                ),
            ));
        };
        let mut d = ferrax_ir::alloc::try_filled(size, 0.0, "Sparse::to_dense")?;
        for (r, c, v) in self.triplets() {
            d[r * self.ncols + c] = v;
        }
        Ok(d)
    }

    /// The matrix as faer's compressed sparse row matrix: the same row pointers, column
    /// indices and values (rows are this matrix's rows). Errors for a malformed value.
    #[cfg(feature = "faer")]
    pub fn to_faer_csr(&self) -> Result<faer::sparse::SparseRowMat<usize, f64>> {
        self.check()?;
        if self.nrows > isize::MAX as usize || self.ncols > isize::MAX as usize {
            return Err(Error::new(
                ErrorKind::Size,
                "Sparse::to_faer_csr: more than isize::MAX rows or columns",
            ));
        }
        // The checks above are the invariants faer asserts.
        let sym = faer::sparse::SymbolicSparseRowMat::new_checked(
            self.nrows,
            self.ncols,
            self.row_ptr.clone(),
            None,
            self.col_idx.clone(),
        );
        Ok(faer::sparse::SparseRowMat::new(sym, self.values.clone()))
    }

    /// The matrix as faer's compressed sparse column matrix (the form faer's sparse LU and
    /// Cholesky factor directly): the same matrix, entry `(r, c)` in column `c`, rows sorted
    /// within each column. Errors for a malformed value or when faer cannot allocate.
    #[cfg(feature = "faer")]
    pub fn to_faer_csc(&self) -> Result<faer::sparse::SparseColMat<usize, f64>> {
        self.to_faer_csr()?.to_col_major().map_err(|e| {
            Error::new(
                ErrorKind::Resource,
                format!("Sparse::to_faer_csc: faer could not allocate the transpose: {e:?}"),
            )
        })
    }
}

/// Which sparse derivative a plan computes (shared with the tree entry points).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Jacobian,
    Hessian,
}

impl Kind {
    /// The name of the entry point, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Jacobian => "jacobian_sparse",
            Kind::Hessian => "hessian_sparse",
        }
    }
}

type Plans = Arc<Mutex<HashMap<Vec<Type>, Arc<SparsePlan>>>>;

/// What a sparse derivative is taken of: the function, the kind, the argument and the
/// colouring's vertex ordering.
#[derive(Clone)]
struct Spec {
    base: Function,
    kind: Kind,
    wrt: usize,
    ordering: Ordering,
    /// Hessians only: an acyclic colouring, recovered by substitution.
    acyclic: bool,
}

/// A sparse Jacobian or Hessian transform: [`SparseDerivative::call`] evaluates it.
#[derive(Clone)]
pub struct SparseDerivative {
    spec: Spec,
    plans: Plans,
    values: Function,
    compiled: Jit,
}

impl SparseDerivative {
    fn new(spec: Spec, opts: JitOptions) -> Result<Self> {
        let plans: Plans = Arc::default();
        let (s2, p2) = (spec.clone(), plans.clone());
        let values = Function::derived(spec.kind.name(), None, None, move |types| {
            let plan = plan_for(&s2, &p2, types)?;
            Ok(ferrax_ir::Specialized {
                graph: Arc::new(plan.graph.clone()),
                n_explicit: types.len(),
                captures: Vec::new(),
            })
        });
        let compiled = jit_with(values.clone(), opts)?;
        Ok(SparseDerivative {
            spec,
            plans,
            values,
            compiled,
        })
    }

    /// The same transform with another vertex ordering for the colouring (default:
    /// smallest-last).
    pub fn ordering(&self, ordering: Ordering) -> Result<SparseDerivative> {
        let spec = Spec {
            ordering,
            ..self.spec.clone()
        };
        SparseDerivative::new(spec, JitOptions::default())
    }

    /// The same Hessian with an acyclic colouring instead of a star colouring: often fewer
    /// colours (two instead of three for a tridiagonal Hessian, so two Hessian-vector products
    /// per call instead of three), the values then recovered from the compressed Hessian by
    /// substitution after the compiled call (a pass over the nonzeros). Errors for a Jacobian.
    pub fn acyclic(&self) -> Result<SparseDerivative> {
        if self.spec.kind != Kind::Hessian {
            return Err(Error::new(
                ErrorKind::Transform,
                "jacobian_sparse: acyclic colouring is for Hessians (a Jacobian's column \
                 colouring already recovers every entry directly)",
            ));
        }
        let spec = Spec {
            acyclic: true,
            ..self.spec.clone()
        };
        SparseDerivative::new(spec, JitOptions::default())
    }

    /// The same transform taken with respect to argument `argnum` (default 0), like
    /// `grad(f).wrt(argnum)`; the other arguments are parameters, passed to
    /// [`SparseDerivative::call_args`] but not differentiated. The pattern and the compiled
    /// graph are specialised per argument types, so they cover every value of the others.
    pub fn wrt(&self, argnum: usize) -> Result<SparseDerivative> {
        let spec = Spec {
            wrt: argnum,
            ..self.spec.clone()
        };
        SparseDerivative::new(spec, JitOptions::default())
    }

    /// The plan (pattern, colouring, values graph) for a function of one argument of type
    /// `ty`, computed once per type.
    pub fn plan(&self, ty: &Type) -> Result<Arc<SparsePlan>> {
        self.plan_for(std::slice::from_ref(ty))
    }

    /// The plan for these argument types, computed once per types.
    pub fn plan_for(&self, types: &[Type]) -> Result<Arc<SparsePlan>> {
        plan_for(&self.spec, &self.plans, types)
    }

    /// The Function from the arguments to the `nnz` values in CSR order (interpretable,
    /// jittable and usable inside other traces like any Function); with
    /// [`SparseDerivative::acyclic`], to the compressed Hessian the plan's substitution reads.
    pub fn values_function(&self) -> Function {
        self.values.clone()
    }

    /// The `nnz` values at `x` (a function of one argument), by the compiled graph.
    #[track_caller]
    pub fn values(&self, x: &Array) -> Result<Vec<f64>> {
        self.values_args(std::slice::from_ref(x))
    }

    /// The `nnz` values at these arguments, by the compiled graph.
    #[track_caller]
    pub fn values_args(&self, args: &[Array]) -> Result<Vec<f64>> {
        let out = self.compiled.call_arrays(args)?;
        let plan = if self.spec.acyclic {
            let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
            Some(self.plan_for(&types)?)
        } else {
            None
        };
        let first = out.into_iter().next().ok_or_else(|| {
            Error::new(
                ErrorKind::Transform,
                format!(
                    "{}: the values graph returned nothing",
                    self.spec.kind.name()
                ),
            )
        })?;
        // The values come back as f64 for f64 arguments: taken without a copy.
        let vals = match first.into_parts() {
            (_, Data::F64(v)) => v,
            (shape, data) => Array::new(shape, data)?.to_f64_vec(),
        };
        match plan.as_ref().and_then(|p| p.substitution.as_ref()) {
            Some(s) => s.apply(&vals),
            None => Ok(vals),
        }
    }

    /// The sparse derivative at `x`, for a function of one argument: the pattern with its
    /// values. The pattern is computed once per argument types, but each result holds its own
    /// copy of it (`nrows + 1 + nnz` indices, 32 MB for the chained Rosenbrock Hessian at
    /// n = 10⁶); a loop that evaluates many times calls [`SparseDerivative::values`], which
    /// returns only the `nnz` values in the order of the pattern ([`SparseDerivative::plan`]
    /// or one `call`).
    #[track_caller]
    pub fn call(&self, x: impl Into<Array>) -> Result<Sparse> {
        self.call_args(&[x.into()])
    }

    /// The sparse derivative at these arguments, with respect to the chosen one (see
    /// [`SparseDerivative::wrt`]).
    #[track_caller]
    pub fn call_args(&self, args: &[Array]) -> Result<Sparse> {
        let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
        let plan = self.plan_for(&types)?;
        let values = self.values_args(args)?;
        let p = &plan.pattern;
        Ok(Sparse {
            nrows: p.nrows(),
            ncols: p.ncols(),
            row_ptr: p.row_ptr().to_vec(),
            col_idx: p.col_idx().to_vec(),
            values,
            colours: plan.colouring.num_colours,
        })
    }
}

fn plan_for(spec: &Spec, plans: &Plans, types: &[Type]) -> Result<Arc<SparsePlan>> {
    // A poisoned lock still holds whole entries only.
    let lock = || plans.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = lock().get(types) {
        return Ok(p.clone());
    }
    let s = spec.base.specialize_untracked(types)?;
    if !s.captures.is_empty() {
        return Err(Error::new(
            ErrorKind::Trace,
            format!(
                "{}: the function closes over tracers of an enclosing trace",
                spec.kind.name()
            ),
        ));
    }
    let plan = Arc::new(match spec.kind {
        Kind::Jacobian => {
            jacobian_plan_with(&s.graph, s.n_explicit, spec.wrt, spec.ordering, &compiled)?
        }
        Kind::Hessian if spec.acyclic => {
            hessian_plan_acyclic(&s.graph, s.n_explicit, spec.wrt, spec.ordering)?
        }
        Kind::Hessian => hessian_plan(&s.graph, s.n_explicit, spec.wrt, spec.ordering)?,
    });
    lock().insert(types.to_vec(), plan.clone());
    Ok(plan)
}

/// Evaluates `g` once, compiled: how a Jacobian plan computes its constant entries (the
/// compressed evaluation of the whole pattern at zero), with the plan's limit on `while`
/// iterations.
fn compiled(g: &ferrax_ir::Graph, args: &[Array]) -> Result<Vec<Array>> {
    let opts = JitOptions {
        max_while_iterations: Some(CONSTANT_EVAL_ITERATIONS),
        ..JitOptions::default()
    };
    ferrax_jit::compile(g, &opts)?.call(args)
}

fn sparse_derivative(base: Function, kind: Kind) -> Result<SparseDerivative> {
    let spec = Spec {
        base,
        kind,
        wrt: 0,
        ordering: Ordering::default(),
        acyclic: false,
    };
    SparseDerivative::new(spec, JitOptions::default())
}

/// The sparse Jacobian of a function with one float output, with respect to its first
/// argument (a float array; see [`SparseDerivative::wrt`] for another), by forward mode over a
/// column colouring of its detected pattern, or by reverse mode over a row colouring when that
/// needs fewer colours.
///
/// ```
/// use ferrax::{jacobian_sparse, Array, Tensor};
/// let j = jacobian_sparse(|x: Tensor| x.clone() * x).unwrap();
/// let s = j.call(Array::from(vec![1.0, 2.0, 3.0])).unwrap();
/// assert_eq!((s.nnz(), s.colours), (3, 1));
/// assert_eq!(s.values, vec![2.0, 4.0, 6.0]);
/// ```
pub fn jacobian_sparse<M>(f: impl IntoFunction<M>) -> Result<SparseDerivative> {
    sparse_derivative(f.into_function(), Kind::Jacobian)
}

/// The sparse Hessian of a scalar function with respect to its first argument (a float array;
/// see [`SparseDerivative::wrt`] for another), by Hessian-vector products over a star colouring
/// of its detected pattern.
///
/// ```
/// use ferrax::{hessian_sparse, Array, Tensor};
/// let h = hessian_sparse(|x: Tensor| (x.clone() * x).sum_all()).unwrap();
/// let s = h.call(Array::from(vec![1.0, 2.0, 3.0])).unwrap();
/// assert_eq!(s.values, vec![2.0, 2.0, 2.0]);
/// assert_eq!(s.col_idx, vec![0, 1, 2]);
/// ```
pub fn hessian_sparse<M>(f: impl IntoFunction<M>) -> Result<SparseDerivative> {
    sparse_derivative(f.into_function(), Kind::Hessian)
}

/// The Hessian-vector product of a scalar function of `n` float arguments, forward over
/// reverse (the JVP of the gradient), compiled: a function of `(x_1.., x_n, v_1.., v_n)`
/// (one direction of each argument's type) returning `H · v` as one array per argument. It
/// costs a few gradients and never forms `H`.
///
/// ```
/// use ferrax::{hvp, Array, Tensor};
/// let f = hvp(|x: Tensor| (x.clone() * x.clone() * x).sum_all()).unwrap();
/// let hv = f.call_arrays(&[Array::from(vec![1.0, 2.0]), Array::from(vec![1.0, 1.0])]).unwrap();
/// assert_eq!(hv[0].to_f64_vec(), vec![6.0, 12.0]);
/// ```
pub fn hvp<M>(f: impl IntoFunction<M>) -> Result<Jit> {
    jit_with(hvp_function(f.into_function()), JitOptions::default())
}

/// The Hessian-vector product of `base` as a Function of `(x_1.., x_n, v_1.., v_n)` (see
/// [`hvp`]), not compiled.
pub(crate) fn hvp_function(base: Function) -> Function {
    Function::derived("hvp", None, None, move |types| {
        if types.len() % 2 != 0 || types[..types.len() / 2] != types[types.len() / 2..] {
            let list: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            return Err(Error::new(
                ErrorKind::Arity,
                format!(
                    "hvp: needs the arguments then one direction of each argument's type, got \
                     ({})",
                    list.join(", ")
                ),
            ));
        }
        let n = types.len() / 2;
        let s = base.specialize_untracked(&types[..n])?;
        let graph = ferrax_transforms::sparse::hvp_graph(&s.graph, s.n_explicit)?;
        Ok(ferrax_ir::Specialized {
            graph: Arc::new(graph),
            n_explicit: types.len(),
            captures: s.captures,
        })
    })
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
/// assert_eq!(p.col_idx(), [0, 0, 1, 0, 1, 2]);
/// ```
pub fn sparsity<M>(f: impl IntoFunction<M>) -> Sparsity {
    Sparsity {
        base: f.into_function(),
    }
}
