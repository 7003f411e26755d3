//! argmin problems from ferrax functions (behind the `argmin` feature).
//!
//! [argmin](https://docs.rs/argmin) is Rust's optimisation library: its solvers ask a
//! problem for costs, gradients, Hessians, residuals and Jacobians through the traits
//! `CostFunction`, `Gradient`, `Hessian`, `Operator` and `Jacobian`. The adapters here
//! implement those traits with ferrax: you write the cost (or the residuals) once as a
//! function of one `f64[n]` tensor, and the derivatives are ferrax transforms of it, each
//! compiled by the JIT on its first call and reused afterwards.
//!
//! - [`Minimize`] turns a scalar cost into a problem with `CostFunction` and `Gradient`
//!   (for L-BFGS, nonlinear CG, steepest descent, BFGS) and `Hessian` (for Newton and
//!   Newton-CG). The Hessian comes in three forms, chosen by a type parameter: a dense
//!   [`Matrix`] from `hessian` (the default), a [`Sparse`] CSR matrix
//!   from [`hessian_sparse`], or a [`HessianAt`] operator that
//!   multiplies vectors by the Hessian through forward-over-reverse products without forming
//!   it. All three work with Newton-CG, which needs only products; Newton's method needs the
//!   dense form (it inverts the matrix).
//! - [`LeastSquares`] turns residuals `r(x)` into a problem with `Operator` (the residuals)
//!   and `Jacobian` (a dense [`Matrix`] from `jacfwd`), for Gauss–Newton, and with
//!   `CostFunction` (`½‖r‖²`) and `Gradient` (`Jᵀr`, by reverse mode) for the other solvers.
//!
//! Parameters, gradients and residuals are argmin-math's `Vec<f64>` backend (feature `vec`):
//! ferrax's arrays are flat row-major buffers, so a `Vec<f64>` converts to and from an
//! `f64[n]` array with one copy and no extra dependency. Errors from ferrax (a cost that is not
//! a scalar, a shape that does not fit, a memory budget) become argmin errors whose message is
//! ferrax's; the original [`Error`] can be recovered with `err.downcast_ref::<ferrax::Error>()`.
//!
//! ```
//! use argmin::core::{Executor, State};
//! use argmin::solver::linesearch::MoreThuenteLineSearch;
//! use argmin::solver::quasinewton::LBFGS;
//! use ferrax::argmin::Minimize;
//! use ferrax::Tensor;
//!
//! // A shifted quadratic bowl whose minimum is at (1, 2).
//! let problem = Minimize::new(|x: Tensor| {
//!     let d = x - Tensor::from(vec![1.0, 2.0]);
//!     (d.clone() * d).sum_all()
//! })
//! .unwrap();
//! let solver = LBFGS::new(MoreThuenteLineSearch::new(), 5);
//! let result = Executor::new(problem, solver)
//!     .configure(|s| s.param(vec![0.0, 0.0]).max_iters(50))
//!     .run()
//!     .unwrap();
//! let best = result.state.get_best_param().unwrap();
//! assert!((best[0] - 1.0).abs() < 1e-8 && (best[1] - 2.0).abs() < 1e-8);
//! ```

mod matrix;

pub use self::matrix::Matrix;
/// The argmin crate these adapters implement, re-exported so that a user's solvers come
/// from the same version.
pub use ::argmin;
/// The argmin-math crate whose `Vec<f64>` backend the adapters use, re-exported likewise.
pub use ::argmin_math;

use crate::sparse::{hessian_sparse, Sparse, SparseDerivative};
use ::argmin::core::{CostFunction, Gradient, Hessian, Jacobian, Operator};
use argmin_math::ArgminDot;
use ferrax_ir::{alloc, Array, Error, ErrorKind, Function, IntoFunction, Result, Tensor};
use ferrax_jit::{jit, Jit};
use ferrax_transforms::api::{grad, hessian, jacfwd, jvp};
use std::sync::{Arc, Mutex};

/// argmin's error type (`anyhow::Error`).
pub type ArgminError = ::argmin::core::Error;

/// A ferrax error as an argmin error: the same message, and the original inside
/// (`downcast_ref::<ferrax::Error>()`).
pub fn to_argmin(e: Error) -> ArgminError {
    ArgminError::new(e)
}

/// The `f64[n]` argument array for a parameter vector.
fn arg(x: &[f64]) -> Array {
    Array::from(x)
}

/// An error recorded by a [`HessianAt`] product, whose argmin trait cannot return one; the
/// problem that made the operator reports it on its next call.
type Pending = Arc<Mutex<Option<Error>>>;

/// Returns the recorded error, if any, clearing it.
fn take_pending(p: &Pending) -> std::result::Result<(), ArgminError> {
    // A poisoned lock still holds a consistent `Option`.
    let mut slot = p.lock().unwrap_or_else(|e| e.into_inner());
    match slot.take() {
        Some(e) => Err(to_argmin(e)),
        None => Ok(()),
    }
}

/// How a [`Minimize`] problem computes Hessians: [`DenseHessian`], [`SparseHessian`] or
/// [`HessianProducts`].
pub trait HessianForm {
    /// What argmin receives as the Hessian.
    type Output;

    /// The form for the cost `f`.
    fn for_cost(f: &Function, pending: &Pending) -> Result<Self>
    where
        Self: Sized;

    /// The Hessian at `x`.
    fn at(&self, x: &[f64]) -> Result<Self::Output>;
}

/// Dense Hessians: `jit(hessian(f))`, as a [`Matrix`].
#[derive(Clone)]
pub struct DenseHessian {
    hessian: Jit,
}

impl HessianForm for DenseHessian {
    type Output = Matrix;

    fn for_cost(f: &Function, _pending: &Pending) -> Result<Self> {
        Ok(DenseHessian {
            hessian: jit(hessian(f))?,
        })
    }

    fn at(&self, x: &[f64]) -> Result<Matrix> {
        let h: Array = self.hessian.call(arg(x))?;
        Matrix::from_array(&h, "Minimize::hessian")
    }
}

/// Sparse Hessians: [`hessian_sparse`] (pattern detected once, star colouring, compiled
/// Hessian-vector products), as a CSR [`Sparse`] matrix.
#[derive(Clone)]
pub struct SparseHessian {
    hessian: SparseDerivative,
}

impl HessianForm for SparseHessian {
    type Output = Sparse;

    fn for_cost(f: &Function, _pending: &Pending) -> Result<Self> {
        Ok(SparseHessian {
            hessian: hessian_sparse(f)?,
        })
    }

    fn at(&self, x: &[f64]) -> Result<Sparse> {
        self.hessian.call(arg(x))
    }
}

/// Hessian-vector products without the matrix: `jit(jvp(grad(f)))` at the point, as a
/// [`HessianAt`] operator.
#[derive(Clone)]
pub struct HessianProducts {
    products: Jit,
    pending: Pending,
}

impl HessianForm for HessianProducts {
    type Output = HessianAt;

    fn for_cost(f: &Function, pending: &Pending) -> Result<Self> {
        Ok(HessianProducts {
            products: jit(jvp(grad(f)))?,
            pending: pending.clone(),
        })
    }

    fn at(&self, x: &[f64]) -> Result<HessianAt> {
        Ok(HessianAt {
            x: arg(x),
            products: self.products.clone(),
            pending: self.pending.clone(),
        })
    }
}

/// The Hessian of a cost at one point as a linear operator: `dot(v)` (and
/// `Operator::apply(v)`) is `H(x) v`, one forward-over-reverse product costing a few
/// gradient evaluations, with no `n × n` matrix. argmin's Newton-CG accepts it as its Hessian.
///
/// `ArgminDot::dot` cannot return an error, so a product that fails (a vector of another
/// length, a memory budget) gives NaNs and records the error; the [`Minimize`] problem that
/// made this operator returns it from its next call, so the solver stops with ferrax's
/// message. `Operator::apply` returns the error directly.
#[derive(Clone)]
pub struct HessianAt {
    x: Array,
    products: Jit,
    pending: Pending,
}

impl HessianAt {
    /// `H(x) v`.
    #[track_caller]
    pub fn product(&self, v: &[f64]) -> Result<Vec<f64>> {
        let n = self.x.dims().first().copied().unwrap_or(0);
        if self.x.rank() != 1 || v.len() != n {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "HessianAt::product: expected a vector of {n} values, found {}",
                    v.len()
                ),
            )
            .here());
        }
        let (_g, hv): (Array, Array) = self.products.call((&self.x, arg(v)))?;
        Ok(hv.to_f64_vec())
    }

    /// The point `x` as a vector.
    pub fn point(&self) -> Vec<f64> {
        self.x.to_f64_vec()
    }
}

impl ArgminDot<Vec<f64>, Vec<f64>> for HessianAt {
    fn dot(&self, v: &Vec<f64>) -> Vec<f64> {
        match self.product(v) {
            Ok(hv) => hv,
            Err(e) => {
                let mut slot = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(e);
                alloc::try_filled(v.len(), f64::NAN, "a Hessian-vector product").unwrap_or_default()
            }
        }
    }
}

impl Operator for HessianAt {
    type Param = Vec<f64>;
    type Output = Vec<f64>;

    fn apply(&self, v: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        self.product(v).map_err(to_argmin)
    }
}

/// The CSR matrix-vector product; a vector of another length than `ncols` gives `nrows` NaNs.
impl ArgminDot<Vec<f64>, Vec<f64>> for Sparse {
    fn dot(&self, v: &Vec<f64>) -> Vec<f64> {
        let fits = v.len() == self.ncols
            && self.nrows.checked_add(1) == Some(self.row_ptr.len())
            && self.row_ptr.last() == Some(&self.values.len())
            && self.col_idx.len() == self.values.len();
        if !fits {
            return alloc::try_filled(self.nrows, f64::NAN, "a sparse product").unwrap_or_default();
        }
        self.row_ptr
            .windows(2)
            .map(|w| {
                let (lo, hi) = (w[0], w[1].max(w[0]));
                let cols = self.col_idx.get(lo..hi).unwrap_or_default();
                let vals = self.values.get(lo..hi).unwrap_or_default();
                cols.iter()
                    .zip(vals)
                    .map(|(&c, &a)| a * v.get(c).copied().unwrap_or(f64::NAN))
                    .sum()
            })
            .collect()
    }
}

/// A scalar cost `f(x)` of one `f64[n]` argument as an argmin problem: `CostFunction`
/// (`jit(f)`), `Gradient` (`jit(grad(f))`) and `Hessian` in the form `H` (dense by default;
/// see [`Minimize::sparse_hessian`] and [`Minimize::hessian_products`]). Nothing is traced or
/// compiled until argmin asks for a value; each compiled function is reused for every later
/// point of the same size.
#[derive(Clone)]
pub struct Minimize<H = DenseHessian> {
    f: Function,
    cost: Jit,
    grad: Jit,
    hessian: H,
    pending: Pending,
}

impl Minimize<DenseHessian> {
    /// The problem of minimising `f` (a closure over one `Tensor`, or any ferrax
    /// `Function` of one argument), with dense Hessians. Nothing is traced or compiled yet.
    pub fn new<M>(f: impl IntoFunction<M>) -> Result<Minimize<DenseHessian>> {
        let f = f.into_function();
        let pending = Pending::default();
        Ok(Minimize {
            cost: jit(&f)?,
            grad: jit(grad(&f))?,
            hessian: DenseHessian::for_cost(&f, &pending)?,
            f,
            pending,
        })
    }
}

impl<H: HessianForm> Minimize<H> {
    /// The same problem with Hessians of another form.
    pub fn with_hessian<H2: HessianForm>(self) -> Result<Minimize<H2>> {
        let hessian = H2::for_cost(&self.f, &self.pending)?;
        Ok(Minimize {
            f: self.f,
            cost: self.cost,
            grad: self.grad,
            hessian,
            pending: self.pending,
        })
    }

    /// The same problem with sparse Hessians ([`hessian_sparse`]), for Newton-CG on costs
    /// whose Hessian is mostly zeros.
    pub fn sparse_hessian(self) -> Result<Minimize<SparseHessian>> {
        self.with_hessian()
    }

    /// The same problem with Hessian-vector products ([`HessianAt`]) instead of matrices, for
    /// Newton-CG on costs whose Hessian is too large to form.
    pub fn hessian_products(self) -> Result<Minimize<HessianProducts>> {
        self.with_hessian()
    }

    /// The cost function.
    pub fn function(&self) -> &Function {
        &self.f
    }

    /// The cost at `x`.
    pub fn cost_at(&self, x: &[f64]) -> Result<f64> {
        self.cost.call(arg(x))
    }

    /// The gradient at `x`.
    pub fn gradient_at(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.grad.call(arg(x))
    }

    /// The Hessian at `x`, in the problem's form.
    pub fn hessian_at(&self, x: &[f64]) -> Result<H::Output> {
        self.hessian.at(x)
    }
}

impl<H: HessianForm> CostFunction for Minimize<H> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, ArgminError> {
        take_pending(&self.pending)?;
        self.cost_at(x).map_err(to_argmin)
    }
}

impl<H: HessianForm> Gradient for Minimize<H> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        take_pending(&self.pending)?;
        self.gradient_at(x).map_err(to_argmin)
    }
}

impl<H: HessianForm> Hessian for Minimize<H> {
    type Param = Vec<f64>;
    type Hessian = H::Output;

    fn hessian(&self, x: &Vec<f64>) -> std::result::Result<H::Output, ArgminError> {
        take_pending(&self.pending)?;
        self.hessian_at(x).map_err(to_argmin)
    }
}

/// Residuals `r(x)` (a function of one `f64[n]` argument returning an `f64[m]` vector) as a
/// nonlinear least-squares problem: `Operator` gives the residuals (`jit(r)`), `Jacobian` the
/// dense `m × n` [`Matrix`] (`jit(jacfwd(r))`; forward mode, since fits have fewer
/// parameters than residuals), as argmin's Gauss–Newton solvers ask; `CostFunction` is
/// `½‖r(x)‖²` and `Gradient` its gradient `J(x)ᵀ r(x)` by reverse mode, for the other solvers.
#[derive(Clone)]
pub struct LeastSquares {
    r: Function,
    residuals: Jit,
    jacobian: Jit,
    cost: Jit,
    grad: Jit,
}

impl LeastSquares {
    /// The least-squares problem of the residual function `r`.
    /// Nothing is traced or compiled yet.
    pub fn new<M>(r: impl IntoFunction<M>) -> Result<LeastSquares> {
        let r = r.into_function();
        let r2 = r.clone();
        let half_sq = crate::function(move |x: Tensor| {
            let mut outs = r2.apply(&[x]);
            let count = outs.len();
            match (outs.pop(), count) {
                (Some(res), 1) => (res.clone() * res).sum_all() * 0.5,
                _ => Tensor::from_error(Error::new(
                    ErrorKind::Arity,
                    format!(
                        "LeastSquares: expected a residual function with 1 output, found {count}"
                    ),
                )),
            }
        });
        Ok(LeastSquares {
            residuals: jit(&r)?,
            jacobian: jit(jacfwd(&r))?,
            cost: jit(&half_sq)?,
            grad: jit(grad(&half_sq))?,
            r,
        })
    }

    /// The residual function.
    pub fn function(&self) -> &Function {
        &self.r
    }

    /// The residuals at `x`.
    pub fn residuals_at(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.residuals.call(arg(x))
    }

    /// The Jacobian of the residuals at `x`, `m × n`.
    pub fn jacobian_at(&self, x: &[f64]) -> Result<Matrix> {
        let j: Array = self.jacobian.call(arg(x))?;
        match *j.dims() {
            // A scalar residual has a Jacobian of shape [n]: one row.
            [n] => Matrix::from_array(&j.reshaped([1, n])?, "LeastSquares::jacobian"),
            _ => Matrix::from_array(&j, "LeastSquares::jacobian"),
        }
    }

    /// `½‖r(x)‖²`.
    pub fn cost_at(&self, x: &[f64]) -> Result<f64> {
        self.cost.call(arg(x))
    }

    /// The gradient of `½‖r(x)‖²`, `J(x)ᵀ r(x)`.
    pub fn gradient_at(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.grad.call(arg(x))
    }
}

impl Operator for LeastSquares {
    type Param = Vec<f64>;
    type Output = Vec<f64>;

    fn apply(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        self.residuals_at(x).map_err(to_argmin)
    }
}

impl Jacobian for LeastSquares {
    type Param = Vec<f64>;
    type Jacobian = Matrix;

    fn jacobian(&self, x: &Vec<f64>) -> std::result::Result<Matrix, ArgminError> {
        self.jacobian_at(x).map_err(to_argmin)
    }
}

impl CostFunction for LeastSquares {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> std::result::Result<f64, ArgminError> {
        self.cost_at(x).map_err(to_argmin)
    }
}

impl Gradient for LeastSquares {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        self.gradient_at(x).map_err(to_argmin)
    }
}
