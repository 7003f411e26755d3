//! The sparse derivative API: `jacobian_sparse`, `hessian_sparse` and `sparsity` against the
//! dense `jacfwd` and `hessian`, compiled values against the interpreter, and errors for the
//! functions the API does not take.

use ferrax::sparse::Ordering;
use ferrax::{
    hessian, hessian_sparse, jacfwd, jacobian_sparse, sparsity, Array, DType, ErrorKind, Tensor,
    Type,
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

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{i}: {x} vs {y}");
    }
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
        close(&s.to_dense(), &d);
    }
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
        let s = j.call(x.clone()).unwrap();
        let d = jacfwd(brusselator)
            .call_arrays(std::slice::from_ref(&x))
            .unwrap()[0]
            .to_f64_vec();
        close(&s.to_dense(), &d);
        assert!(s.colours <= 6, "{o:?}: {} colours", s.colours);
        // The compiled values equal the interpreter's.
        let interp = j.values_function().call_arrays(&[x]).unwrap()[0].to_f64_vec();
        close(&s.values, &interp);
    }
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
    assert_eq!(p.col_idx, vec![4, 3, 2, 1, 0]);
}

#[test]
fn unsupported_functions_are_errors() {
    let x = Array::from(vec![1.0, 2.0]);
    let e = hessian_sparse(|x: Tensor| x.sin())
        .unwrap()
        .call(x.clone())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    let two = jacobian_sparse(|x: Tensor, y: Tensor| x * y).unwrap();
    let e = two
        .values_function()
        .call_arrays(&[x.clone(), x.clone()])
        .unwrap_err();
    assert!(e.to_string().contains("jacobian_sparse"), "{e}");
    let e = jacobian_sparse(|x: Tensor| x.sum_all())
        .unwrap()
        .call(Array::from_i32(vec![2], vec![1, 2]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("one float argument"), "{e}");
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
