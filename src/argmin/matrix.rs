//! A dense row-major matrix for argmin's `Vec<f64>` backend.
//!
//! argmin-math's `vec` backend represents a matrix as `Vec<Vec<f64>>` and has no inverse, so
//! its Newton and Gauss–Newton solvers cannot run on it. [`Matrix`] holds ferrax's dense
//! Hessians and Jacobians as they come out of the JIT (one row-major buffer) and implements the
//! argmin-math traits those solvers ask of a matrix: products with vectors and matrices, the
//! transpose and the inverse. argmin's traits return plain values, so a product whose sizes do
//! not fit gives NaN entries (of the size the left operand implies) instead of panicking; only
//! the inverse can report an error.

use argmin_math::{ArgminDot, ArgminInv, ArgminTranspose};
use ferrax_ir::{alloc, Array, Error, ErrorKind, Result};

/// A dense `rows × cols` matrix of `f64` stored row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// A matrix from its row-major entries; `data` must hold `rows * cols` of them.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Matrix> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "Matrix::new: expected {rows} × {cols} entries, found {}",
                    data.len()
                ),
            ));
        }
        Ok(Matrix { rows, cols, data })
    }

    /// The matrix held by a rank-2 array (of any dtype, widened to `f64`); `what` names the
    /// caller in the error for other ranks.
    pub(crate) fn from_array(a: &Array, what: &str) -> Result<Matrix> {
        match *a.dims() {
            [rows, cols] => Matrix::new(rows, cols, a.to_f64_vec()),
            _ => Err(Error::new(
                ErrorKind::Shape,
                format!("{what}: expected a matrix (rank 2), found {}", a.ty()),
            )),
        }
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The entries, row by row.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The entry in row `r` and column `c`, if both are in range.
    pub fn get(&self, r: usize, c: usize) -> Option<f64> {
        if r < self.rows && c < self.cols {
            self.data.get(r * self.cols + c).copied()
        } else {
            None
        }
    }

    /// The rows as vectors: argmin-math's own matrix form (empty for a matrix without
    /// columns).
    pub fn to_rows(&self) -> Vec<Vec<f64>> {
        self.data
            .chunks(self.cols.max(1))
            .take(self.rows)
            .map(|row| row.to_vec())
            .collect()
    }

    /// A `rows × cols` matrix of NaNs, or an empty one when that cannot be allocated: the
    /// result of a product whose sizes do not fit.
    fn nan(rows: usize, cols: usize) -> Matrix {
        rows.checked_mul(cols)
            .and_then(|n| alloc::try_filled(n, f64::NAN, "a matrix").ok())
            .map_or(
                Matrix {
                    rows: 0,
                    cols: 0,
                    data: Vec::new(),
                },
                |data| Matrix { rows, cols, data },
            )
    }
}

/// A vector of `n` NaNs, or an empty one when that cannot be allocated.
fn nan_vec(n: usize) -> Vec<f64> {
    alloc::try_filled(n, f64::NAN, "a vector").unwrap_or_default()
}

impl From<Matrix> for Vec<Vec<f64>> {
    fn from(m: Matrix) -> Vec<Vec<f64>> {
        m.to_rows()
    }
}

/// The matrix-vector product; a vector of another length than `cols` gives `rows` NaNs.
impl ArgminDot<Vec<f64>, Vec<f64>> for Matrix {
    fn dot(&self, v: &Vec<f64>) -> Vec<f64> {
        if v.len() != self.cols {
            return nan_vec(self.rows);
        }
        if self.cols == 0 {
            // An empty sum per row (a matrix without columns may still have many rows).
            return alloc::try_filled(self.rows, 0.0, "a matrix-vector product")
                .unwrap_or_default();
        }
        self.data
            .chunks_exact(self.cols)
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// The matrix product; inner sizes that differ give a `rows × other.cols` matrix of NaNs.
impl ArgminDot<Matrix, Matrix> for Matrix {
    fn dot(&self, other: &Matrix) -> Matrix {
        if self.cols != other.rows {
            return Matrix::nan(self.rows, other.cols);
        }
        let (m, k, n) = (self.rows, self.cols, other.cols);
        let Some(data) = m
            .checked_mul(n)
            .and_then(|len| alloc::try_filled(len, 0.0, "a matrix product").ok())
        else {
            return Matrix::nan(0, 0);
        };
        let mut out = Matrix {
            rows: m,
            cols: n,
            data,
        };
        if n == 0 {
            return out;
        }
        for (i, row) in out.data.chunks_exact_mut(n).enumerate() {
            for p in 0..k {
                let a = self.data[i * k + p];
                let b_row = &other.data[p * n..(p + 1) * n];
                for (o, b) in row.iter_mut().zip(b_row) {
                    *o += a * b;
                }
            }
        }
        out
    }
}

impl ArgminTranspose<Matrix> for Matrix {
    fn t(self) -> Matrix {
        let (r, c) = (self.rows, self.cols);
        let mut data = Vec::with_capacity(self.data.len());
        for j in 0..c {
            for i in 0..r {
                data.push(self.data[i * c + j]);
            }
        }
        Matrix {
            rows: c,
            cols: r,
            data,
        }
    }
}

/// The inverse by Gauss–Jordan elimination with partial pivoting. A matrix that is not
/// square, or whose pivot vanishes (exactly singular, or singular to working precision
/// relative to its largest entry), is an error, as are non-finite entries.
impl ArgminInv<Matrix> for Matrix {
    fn inv(&self) -> std::result::Result<Matrix, argmin_math::Error> {
        inverse(self).map_err(argmin_math::Error::new)
    }
}

fn inverse(m: &Matrix) -> Result<Matrix> {
    let n = m.rows;
    if m.cols != n {
        return Err(Error::new(
            ErrorKind::Shape,
            format!(
                "Matrix::inv: expected a square matrix, found {} × {}",
                m.rows, m.cols
            ),
        ));
    }
    if m.data.iter().any(|x| !x.is_finite()) {
        return Err(Error::new(
            ErrorKind::Transform,
            "Matrix::inv: expected finite entries, found a NaN or an infinity",
        ));
    }
    let scale = m.data.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    let tiny = scale * n as f64 * f64::EPSILON;
    let mut a = m.data.clone();
    let mut inv = alloc::try_filled(m.data.len(), 0.0, "Matrix::inv")?;
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for col in 0..n {
        // The row with the largest entry in this column, at or below the diagonal.
        let mut pivot = col;
        for r in col + 1..n {
            if a[r * n + col].abs() > a[pivot * n + col].abs() {
                pivot = r;
            }
        }
        let p = a[pivot * n + col];
        if p.abs() <= tiny || p == 0.0 {
            return Err(Error::new(
                ErrorKind::Transform,
                format!(
                    "Matrix::inv: the {n} × {n} matrix is singular (pivot {p:e} in column {col})"
                ),
            ));
        }
        if pivot != col {
            for c in 0..n {
                a.swap(pivot * n + c, col * n + c);
                inv.swap(pivot * n + c, col * n + c);
            }
        }
        for c in 0..n {
            a[col * n + c] /= p;
            inv[col * n + c] /= p;
        }
        for r in 0..n {
            let f = a[r * n + col];
            if r == col || f == 0.0 {
                continue;
            }
            for c in 0..n {
                a[r * n + c] -= f * a[col * n + c];
                inv[r * n + c] -= f * inv[col * n + c];
            }
        }
    }
    Ok(Matrix {
        rows: n,
        cols: n,
        data: inv,
    })
}
