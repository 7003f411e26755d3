//! The sparse derivative API: `jacobian_sparse`, `hessian_sparse` and `sparsity` against the
//! dense `jacfwd` and `hessian`, compiled values against the interpreter, and errors for the
//! functions the API does not take.

use ferrax::sparse::{Ordering, SparseDerivative};
use ferrax::{
    grad, hessian, hessian_sparse, hvp, jacfwd, jacobian_sparse, sparsity, Array, DType, ErrorKind,
    Sparse, Tensor, Type,
};

fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a = x.slice_axis(0, 0, n - 1);
    let b = x.slice_axis(0, 1, n);
    let d = b - a.clone() * a.clone();
    let e = 1.0 - a;
    (100.0 * d.clone() * d + e.clone() * e).sum_all()
}

/// A 1-D reaction–diffusion right-hand side with two species interleaved (u0 v0 u1 v1 ...).
fn brusselator(x: Tensor) -> Tensor {
    let n = x.shape()[0] / 2;
    let xy = x.reshape(&[n, 2]);
    let u = xy.slice_axis(1, 0, 1).reshape(&[n]);
    let v = xy.slice_axis(1, 1, 2).reshape(&[n]);
    let lap = |w: &Tensor| {
        let p = w.pad(&[1], &[1], &[0], 0.0);
        p.slice_axis(0, 0, n) - 2.0 * w.clone() + p.slice_axis(0, 2, n + 2)
    };
    let uuv = u.clone() * u.clone() * v.clone();
    let du = 1.0 + uuv.clone() - 4.4 * u.clone() + 0.1 * lap(&u);
    let dv = 3.4 * u - uuv + 0.1 * lap(&v);
    ferrax::stack(&[du, dv])
        .transpose(&[1, 0])
        .reshape(&[2 * n])
}

/// `w` rolled by `s` places along `axis`: the concatenation of its last `s` and first `n − s`
/// slices.
fn roll(w: &Tensor, axis: usize, s: usize) -> Tensor {
    let n = w.shape()[axis];
    if s.is_multiple_of(n) {
        return w.clone();
    }
    let s = s % n;
    ferrax::concatenate(
        &[w.slice_axis(axis, n - s, n), w.slice_axis(axis, 0, n - s)],
        axis,
    )
}

/// The 2-D periodic Brusselator of `examples/sparse_jacobian.rs` on an N × N grid (`x` of
/// shape `[2, N, N]`): rolls along both axes are concatenations, and the output stacks the
/// two species, so the compressed Jacobian is gathered piece by piece.
fn brusselator_2d(x: Tensor) -> Tensor {
    let n = x.shape()[1];
    let u = x.slice_axis(0, 0, 1).reshape(&[n, n]);
    let v = x.slice_axis(0, 1, 2).reshape(&[n, n]);
    let lap = |w: &Tensor| {
        roll(w, 0, 1) + roll(w, 0, n - 1) + roll(w, 1, 1) + roll(w, 1, n - 1) - 4.0 * w.clone()
    };
    let uuv = u.clone() * u.clone() * v.clone();
    let du = 1.0 + uuv.clone() - 4.4 * u.clone() + 7.0 * lap(&u);
    let dv = 3.4 * u - uuv + 7.0 * lap(&v);
    ferrax::stack(&[du, dv])
}

/// An output that joins two pieces along its last axis: the Jacobian's rows alternate
/// between the pieces, in more runs than are gathered piece by piece once `n` > 8.
fn interleaved(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a = (x.clone() * x.clone()).reshape(&[n, 1]);
    let b = (x.rev(&[0]).sin() * x).reshape(&[n, 1]);
    ferrax::concatenate(&[a, b], 1)
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{i}: {x} vs {y}");
    }
}

/// Calls the sparse Jacobian `j` of `f` at `x`, checks its values against `f`'s dense `jacfwd`
/// and the compiled values against the interpreter's, and returns the sparse result.
fn check_against_dense(f: fn(Tensor) -> Tensor, j: &SparseDerivative, x: &Array) -> Sparse {
    let s = j.call(x.clone()).unwrap();
    let d = jacfwd(f).call_arrays(std::slice::from_ref(x)).unwrap()[0].to_f64_vec();
    close(&s.to_dense().unwrap(), &d);
    let interp = j
        .values_function()
        .call_arrays(std::slice::from_ref(x))
        .unwrap()[0]
        .to_f64_vec();
    close(&s.values, &interp);
    s
}

#[test]
fn sparse_hessian_equals_dense() {
    let n = 60;
    let h = hessian_sparse(rosenbrock).unwrap();
    let dense = hessian(rosenbrock);
    for seed in 1..4 {
        let x = Array::from(random(n, seed));
        let s = h.call(x.clone()).unwrap();
        assert_eq!((s.nrows, s.ncols, s.nnz(), s.colours), (n, n, 3 * n - 2, 3));
        let d = dense.call_arrays(&[x]).unwrap()[0].to_f64_vec();
        close(&s.to_dense().unwrap(), &d);
    }
}

#[test]
fn acyclic_sparse_hessian_equals_dense_with_two_colours() {
    let n = 60;
    let h = hessian_sparse(rosenbrock).unwrap().acyclic().unwrap();
    let dense = hessian(rosenbrock);
    for seed in 1..4 {
        let x = Array::from(random(n, seed));
        let s = h.call(x.clone()).unwrap();
        assert_eq!((s.nnz(), s.colours), (3 * n - 2, 2));
        let d = dense.call_arrays(std::slice::from_ref(&x)).unwrap()[0].to_f64_vec();
        for (a, b) in s.to_dense().unwrap().iter().zip(&d) {
            assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{a} vs {b}");
        }
        // The compiled values function returns the compressed Hessian (2 × n) the
        // substitution reads.
        let b = h.values_function().call_arrays(&[x]).unwrap();
        assert_eq!(b[0].shape().dims(), &[2 * n]);
    }
    // Jacobians have no acyclic form.
    assert!(jacobian_sparse(rosenbrock).unwrap().acyclic().is_err());
}

#[test]
fn sparse_jacobian_equals_dense_for_every_ordering() {
    let n = 40;
    for o in [
        Ordering::Natural,
        Ordering::LargestFirst,
        Ordering::SmallestLast,
    ] {
        let j = jacobian_sparse(brusselator).unwrap().ordering(o).unwrap();
        let x = Array::from(random(2 * n, 7));
        let s = check_against_dense(brusselator, &j, &x);
        assert!(s.colours <= 6, "{o:?}: {} colours", s.colours);
    }
}

/// Functions whose output is a concatenation: their values are gathered from each piece
/// where it was computed (the compressed matrix is never joined) when the pieces provide
/// them in few runs, and from the joined matrix otherwise; both equal the dense Jacobian,
/// and the compiled values equal the interpreter's.
#[test]
fn sparse_jacobians_of_concatenated_outputs_equal_dense() {
    let check = |f: fn(Tensor) -> Tensor, dims: &[usize], seed: u64| {
        let size: usize = dims.iter().product();
        let x = Array::from_f64(dims.to_vec(), random(size, seed)).unwrap();
        let j = jacobian_sparse(f).unwrap();
        check_against_dense(f, &j, &x)
    };
    for n in [1, 2, 3, 5, 9] {
        let s = check(brusselator_2d, &[2, n, n], 3 + n as u64);
        assert_eq!(s.nrows, 2 * n * n);
    }
    for n in [1, 4, 20] {
        check(interleaved, &[n], 11 + n as u64);
    }
}

/// Rows coupled through a sum, each to the previous row by a roll along the outer axis and
/// to itself by a roll along the inner one: over a hundred colours, so the seeds of a
/// `[40, 50]` input are the identity gathered by the colour table (beyond the constant seeds'
/// size) and read through rolls on both axes.
fn coupled_rows(x: Tensor) -> Tensor {
    let total = (x.clone() * x.clone()).sum_keepdims(&[1]);
    x.clone() * total + roll(&x, 0, 1) * x.clone() + roll(&x, 1, 3).sin()
}

/// Gathered seeds over a 2-D input (the colour table in the input's shape, read in place by
/// the compiled loops) give the dense Jacobian, and the compiled values equal the
/// interpreter's.
#[test]
fn gathered_seeds_of_a_matrix_input_equal_dense() {
    let x = Array::from_f64(vec![40, 50], random(2000, 41)).unwrap();
    let j = jacobian_sparse(coupled_rows).unwrap();
    let s = check_against_dense(coupled_rows, &j, &x);
    assert!(s.colours * 2000 > 1 << 17, "{} colours", s.colours);
}

#[test]
fn sparsity_patterns() {
    let t = Type::new(DType::F64, &[5]);
    let p = sparsity(rosenbrock)
        .hessian(std::slice::from_ref(&t))
        .unwrap();
    assert_eq!(p.nnz(), 13);
    let p = sparsity(|x: Tensor| x.rev(&[0]).sin())
        .jacobian(&[t])
        .unwrap();
    assert_eq!(p.col_idx(), [4, 3, 2, 1, 0]);
}

#[test]
fn unsupported_functions_are_errors() {
    let x = Array::from(vec![1.0, 2.0]);
    let e = hessian_sparse(|x: Tensor| x.sin())
        .unwrap()
        .call(x.clone())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    // An argument number past the arguments, or an integer argument, is named.
    let two = jacobian_sparse(|x: Tensor, y: Tensor| x * y)
        .unwrap()
        .wrt(2)
        .unwrap();
    let e = two
        .values_function()
        .call_arrays(&[x.clone(), x.clone()])
        .unwrap_err();
    assert!(e.to_string().contains("jacobian_sparse"), "{e}");
    assert!(e.to_string().contains("position 2"), "{e}");
    let e = jacobian_sparse(|x: Tensor| x.sum_all())
        .unwrap()
        .call(Array::from_i32(vec![2], vec![1, 2]).unwrap())
        .unwrap_err();
    assert!(
        e.to_string().contains("float argument at position 0"),
        "{e}"
    );
}

#[test]
fn empty_and_scalar_arguments() {
    let j = jacobian_sparse(|x: Tensor| x.sin()).unwrap();
    let s = j.call(Array::from(Vec::<f64>::new())).unwrap();
    assert_eq!((s.nrows, s.ncols, s.nnz()), (0, 0, 0));
    let s = j.call(Array::from(0.0)).unwrap();
    assert_eq!((s.nrows, s.ncols, s.values.clone()), (1, 1, vec![1.0]));
    let h = hessian_sparse(|x: Tensor| x.clone() * x.clone() * x).unwrap();
    assert_eq!(h.call(Array::from(2.0)).unwrap().values, vec![12.0]);
    let h = hessian_sparse(|x: Tensor| x.sum_all()).unwrap();
    let s = h.call(Array::from(vec![1.0, 2.0])).unwrap();
    assert_eq!((s.nnz(), s.row_ptr.clone()), (0, vec![0, 0, 0]));
}

/// A function of two arguments: a parameter vector `p` and the variables `x`, coupled
/// neighbour to neighbour.
fn coupled(p: Tensor, x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a = x.slice_axis(0, 0, n - 1);
    let b = x.slice_axis(0, 1, n);
    (p.slice_axis(0, 0, n - 1) * a.clone() * a * b.clone() * b).sum_all() + (p * x).sin().sum_all()
}

#[test]
fn derivatives_with_respect_to_a_later_argument() {
    let n = 12;
    let (p, x) = (Array::from(random(n, 3)), Array::from(random(n, 4)));
    // The Hessian in x, p a parameter: tridiagonal, against the dense Hessian in x.
    let h = hessian_sparse(coupled).unwrap().wrt(1).unwrap();
    let s = h.call_args(&[p.clone(), x.clone()]).unwrap();
    assert_eq!((s.nrows, s.ncols, s.nnz(), s.colours), (n, n, 3 * n - 2, 3));
    let d = hessian(coupled)
        .wrt(1)
        .call_arrays(&[p.clone(), x.clone()])
        .unwrap()[0]
        .to_f64_vec();
    close(&s.to_dense().unwrap(), &d);
    // The Jacobian of the gradient in p with respect to x (the mixed second derivative).
    let gp = grad(coupled);
    let j = jacobian_sparse(gp.clone()).unwrap().wrt(1).unwrap();
    let s = j.call_args(&[p.clone(), x.clone()]).unwrap();
    let d = jacfwd(gp)
        .wrt(1)
        .call_arrays(&[p.clone(), x.clone()])
        .unwrap()[0]
        .to_f64_vec();
    close(&s.to_dense().unwrap(), &d);
    // ∂f/∂p_i = x_i² x_{i+1}² + x_i cos(p_i x_i) (the first term for i < n − 1): upper
    // bidiagonal in x.
    assert_eq!(s.nnz(), 2 * n - 1);
    // The compiled values equal the interpreter's.
    let interp = j.values_function().call_arrays(&[p, x]).unwrap()[0].to_f64_vec();
    close(&s.values, &interp);
}

#[test]
fn hvp_equals_the_dense_hessian_times_v_and_finite_differences() {
    let n = 9;
    let f = hvp(rosenbrock).unwrap();
    let g = grad(rosenbrock);
    for seed in 1..4 {
        let (x, v) = (random(n, seed), random(n, seed + 10));
        let hv = f
            .call_arrays(&[Array::from(x.clone()), Array::from(v.clone())])
            .unwrap()[0]
            .to_f64_vec();
        let h = hessian(rosenbrock)
            .call_arrays(&[Array::from(x.clone())])
            .unwrap()[0]
            .to_f64_vec();
        let want: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| h[i * n + j] * v[j]).sum())
            .collect();
        close(&hv, &want);
        // Central differences of the gradient along v.
        let eps = 1e-6;
        let at = |s: f64| {
            let y: Vec<f64> = x.iter().zip(&v).map(|(a, b)| a + s * b).collect();
            g.call_arrays(&[Array::from(y)]).unwrap()[0].to_f64_vec()
        };
        let (gp, gm) = (at(eps), at(-eps));
        for i in 0..n {
            let fd = (gp[i] - gm[i]) / (2.0 * eps);
            assert!(
                (fd - hv[i]).abs() <= 1e-5 * hv[i].abs().max(1.0),
                "{i}: {fd} vs {}",
                hv[i]
            );
        }
    }
    // Two arguments: one block per argument, H · (v1, v2).
    let f2 = hvp(|a: Tensor, b: Tensor| (a.clone() * a * b.clone() * b).sum_all()).unwrap();
    let one = Array::from(vec![1.0]);
    let two = Array::from(vec![2.0]);
    let out = f2
        .call_arrays(&[one.clone(), two.clone(), one.clone(), one])
        .unwrap();
    // f = a²b²: f_aa = 2b² = 8, f_ab = 4ab = 8, f_bb = 2a² = 2.
    assert_eq!(out[0].to_f64_vec(), vec![16.0]);
    assert_eq!(out[1].to_f64_vec(), vec![10.0]);
    // Directions of the wrong type are an error naming hvp.
    let e = f2
        .call_arrays(&[two.clone(), two.clone(), two])
        .unwrap_err();
    assert!(e.to_string().contains("hvp"), "{e}");
}

#[test]
fn triplets_and_the_csr_checks() {
    let h = hessian_sparse(rosenbrock).unwrap();
    let s = h.call(Array::from(random(4, 5))).unwrap();
    s.check().unwrap();
    let t: Vec<(usize, usize, f64)> = s.triplets().collect();
    assert_eq!(t.len(), s.nnz());
    let rows: Vec<(usize, usize)> = t.iter().map(|&(r, c, _)| (r, c)).collect();
    assert_eq!(
        rows,
        vec![
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3)
        ]
    );
    // Malformed values are errors, never panics.
    let mut bad: Sparse = s.clone();
    bad.col_idx[1] = 0;
    assert!(bad.check().is_err() && bad.to_dense().is_err());
    let mut bad = s.clone();
    bad.row_ptr.pop();
    assert!(bad.check().is_err());
    assert_eq!(bad.triplets().count(), bad.row_ptr[3]);
    let mut bad = s.clone();
    bad.values.pop();
    assert!(bad.check().is_err());
    let mut bad = s;
    bad.col_idx[9] = 7;
    assert!(bad.to_dense().is_err());
}

#[cfg(feature = "faer")]
#[test]
fn faer_conversions_keep_the_orientation() {
    let j = jacobian_sparse(|x: Tensor| x.cumsum(0) * 2.0).unwrap();
    let s = j.call(Array::from(vec![1.0, 2.0, 3.0])).unwrap();
    let dense = s.to_dense().unwrap();
    let csr = s.to_faer_csr().unwrap();
    let csc = s.to_faer_csc().unwrap();
    for r in 0..3 {
        for c in 0..3 {
            let want = dense[r * 3 + c];
            assert_eq!(csr.to_dense()[(r, c)], want);
            assert_eq!(csc.to_dense()[(r, c)], want);
        }
    }
    // The lower triangle: entry (2, 0) is in row 2 and column 0.
    assert_eq!(csc.to_dense()[(2, 0)], 2.0);
    assert_eq!(csc.to_dense()[(0, 2)], 0.0);
}

/// Constant entries: the 2-D Brusselator's diffusion couplings (8 of the 12 entries per grid
/// point) are computed once, and only the u–v block of each point per call, with 4 colours
/// instead of 9 or more; the values equal the dense Jacobian at random inputs. A function
/// whose `0 · exp(x)` term hides a nonlinear op keeps that entry varying, so at an input
/// where `exp` overflows its NaN comes through as in the dense Jacobian; a product with a
/// second argument varies with it.
#[test]
fn constant_entries_are_computed_once_and_equal_dense() {
    let n = 8;
    let j = jacobian_sparse(brusselator_2d).unwrap();
    let plan = j.plan(&Type::new(DType::F64, &[2, n, n])).unwrap();
    assert_eq!(plan.constant_entries, 8 * n * n);
    for seed in [1, 2, 3] {
        let x = Array::from_f64(vec![2, n, n], random(2 * n * n, seed)).unwrap();
        let s = check_against_dense(brusselator_2d, &j, &x);
        assert_eq!((s.nnz(), s.colours), (12 * n * n, 4));
    }

    // Constant couplings to three neighbours (3 colours for the varying diagonal, 4 for
    // the whole pattern), and a diagonal behind `0 · exp(x)`.
    let hidden = |x: Tensor| {
        let n = x.shape()[0];
        let w = x.pad(&[1], &[2], &[0], 0.0);
        let near = w.slice_axis(0, 0, n) + w.slice_axis(0, 2, n + 2) + w.slice_axis(0, 3, n + 3);
        0.0 * x.exp() + near * 3.0
    };
    let j = jacobian_sparse(hidden).unwrap();
    let mut x = random(6, 5);
    x[2] = 1000.0;
    let x = Array::from(x);
    let s = j.call(x.clone()).unwrap();
    let plan = j.plan(&Type::new(DType::F64, &[6])).unwrap();
    assert_eq!((plan.constant_entries, s.colours), (s.nnz() - 6, 3));
    let d = jacfwd(hidden).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    // `exp(1000)` overflows: the dense Jacobian's row 2 is NaN throughout (`0 · ∞ · 0` in
    // every direction), and so is the varying entry (2, 2) here, while the row's constant
    // entries keep the value the chain rule gives (the function's own value there is NaN).
    // Every other entry agrees with the dense Jacobian.
    for (r, c, a) in s.triplets() {
        let b = d[r * 6 + c];
        if r == 2 && c != 2 {
            assert!(b.is_nan() && a == 3.0, "({r}, {c}): {a} vs {b}");
        } else {
            assert!(
                a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-12,
                "({r}, {c}): {a} vs {b}"
            );
        }
    }
    assert!(s.to_dense().unwrap()[2 * 6 + 2].is_nan());

    // The same beyond the size at which the builder folds constants: the values graph
    // selects the constants by the template's own NaNs (no bool mask), and the compiled
    // select, run in vectors, gives the interpreter's values bit for bit, the overflowing
    // varying entry's NaN included.
    let m = 96;
    let mut x = random(m, 6);
    x[41] = 1000.0;
    let x = Array::from(x);
    let plan = j.plan(&Type::new(DType::F64, &[m])).unwrap();
    assert!(plan.constant_entries > 64);
    assert!(plan.graph.insts().all(|(_, d)| d
        .results
        .iter()
        .all(|&v| plan.graph.ty(v).dtype != DType::Bool
            || !matches!(d.op, ferrax::ir::Op::Literal(_)))));
    let s = j.call(x.clone()).unwrap();
    let interp = j
        .values_function()
        .call_arrays(std::slice::from_ref(&x))
        .unwrap()[0]
        .to_f64_vec();
    assert!(s
        .values
        .iter()
        .zip(&interp)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let d = jacfwd(hidden).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    for (r, c, a) in s.triplets() {
        let b = d[r * m + c];
        if r == 41 {
            assert!(
                if c == 41 { a.is_nan() } else { a == 3.0 },
                "({r}, {c}): {a}"
            );
        } else {
            assert!((a - b).abs() <= 1e-12, "({r}, {c}): {a} vs {b}");
        }
    }

    // In f32 the constants are evaluated in f32 and kept exactly.
    let x = Array::from_f64(vec![2, n, n], random(2 * n * n, 4))
        .unwrap()
        .cast(DType::F32);
    let j = jacobian_sparse(brusselator_2d).unwrap();
    let s = j.call(x.clone()).unwrap();
    let d = jacfwd(brusselator_2d)
        .call_arrays(std::slice::from_ref(&x))
        .unwrap()[0]
        .to_f64_vec();
    assert_eq!(s.colours, 4);
    for (r, c, a) in s.triplets() {
        assert_eq!(
            a.to_bits(),
            d[r * 2 * n * n + c].to_bits(),
            "f32 ({r}, {c})"
        );
    }

    // An affine function: every entry constant, no product per call.
    let affine = |x: Tensor| {
        let n = x.shape()[0];
        let w = x.pad(&[1], &[2], &[0], 0.5);
        w.slice_axis(0, 0, n) * 2.0 - w.slice_axis(0, 3, n + 3) + x.cumsum(0)
    };
    let j = jacobian_sparse(affine).unwrap();
    let x = Array::from(random(9, 3));
    let s = j.call(x.clone()).unwrap();
    assert_eq!(j.plan(&x.ty()).unwrap().constant_entries, s.nnz());
    let d = jacfwd(affine).call_arrays(&[x]).unwrap()[0].to_f64_vec();
    close(&s.to_dense().unwrap(), &d);

    let scaled = |x: Tensor, p: Tensor| p * x.clone() + 2.0 * x;
    let j = jacobian_sparse(scaled).unwrap();
    let x = Array::from(random(5, 6));
    for seed in [7, 8] {
        let p = Array::from(random(5, seed));
        let s = j.call_args(&[x.clone(), p.clone()]).unwrap();
        let d = jacfwd(scaled).call_arrays(&[x.clone(), p]).unwrap()[0].to_f64_vec();
        close(&s.to_dense().unwrap(), &d);
    }
}
