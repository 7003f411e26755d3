//! Dense Jacobians and Hessians by compressed evaluation (`sparse/dense.rs`): the compressed
//! graph is taken where the pattern allows it and not elsewhere, its structural nonzeros are
//! bit for bit those of the uncompressed computation (`Jacobian::uncompressed`), its
//! structural zeros are exact `+0.0` even for non-finite inputs, the values match finite
//! differences in f64, and it nests (several arguments, `vmap`, `jacfwd` of a Hessian).

use ferrax_ir::{Array, DType, Tensor, Type};
use ferrax_transforms::api::{grad, hessian, jacfwd, jacrev, vmap, Jacobian};

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

/// Products of elements far apart, read by gathers at constant indices: a scattered,
/// non-banded Hessian pattern (each row has two or three entries).
fn pairs(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a: Vec<i32> = (0..n as i32).collect();
    let b: Vec<i32> = (0..n).map(|i| ((7 * i + 3) % n) as i32).collect();
    let xa = x.take(&Tensor::from(Array::from_i32([n], a).unwrap()), 0);
    let xb = x.take(&Tensor::from(Array::from_i32([n], b).unwrap()), 0);
    (xa * xb).sin().sum_all()
}

fn linspace(n: usize) -> Array {
    Array::from(
        (0..n)
            .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
            .collect::<Vec<f64>>(),
    )
}

fn f64v(n: usize) -> Type {
    Type::new(DType::F64, &[n])
}

/// Whether the graph of `j` at `types` was built by compressed evaluation (it scatters the
/// values into the dense blocks).
fn compressed(j: &Jacobian, types: &[Type]) -> bool {
    j.ir_for(types)
        .unwrap()
        .contains("= scatter[axis=1 along=true bounds=fill]")
}

/// Compares every output of `j` with its uncompressed version at `args`: nonzeros of the
/// uncompressed result are bit-identical, and every entry the compressed one leaves zero is
/// `+0.0` and zero in the uncompressed result too. Returns the compressed outputs.
fn same_as_uncompressed(j: &Jacobian, args: &[Array]) -> Vec<Array> {
    let c = j.call_arrays(args).map_err(|e| e.to_string()).unwrap();
    let d = j.uncompressed().call_arrays(args).unwrap();
    assert_eq!(c.len(), d.len());
    for (a, b) in c.iter().zip(&d) {
        assert_eq!(a.dims(), b.dims());
        for (k, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
            if *x == 0.0 && y == 0.0 {
                assert!(x.is_sign_positive(), "entry {k}: a compressed zero is -0.0");
            } else {
                assert_eq!(x.to_bits(), y.to_bits(), "entry {k}: {x} against {y}");
            }
        }
    }
    c
}

#[test]
fn rosenbrock_hessian_is_compressed_and_bit_identical() {
    for n in [16, 40, 100] {
        let h = hessian(rosenbrock);
        assert!(compressed(&h, &[f64v(n)]), "n = {n}");
        assert!(!compressed(&h.uncompressed(), &[f64v(n)]));
        let out = same_as_uncompressed(&h, &[linspace(n)]);
        // The analytic tridiagonal Hessian.
        let x = linspace(n).to_f64_vec();
        let v = out[0].to_f64_vec();
        for i in 0..n {
            for j in 0..n {
                let want = if i == j {
                    let mut d = if i + 1 < n {
                        1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0
                    } else {
                        0.0
                    };
                    if i > 0 {
                        d += 200.0;
                    }
                    d
                } else if i + 1 == j || j + 1 == i {
                    -400.0 * x[i.min(j)]
                } else {
                    0.0
                };
                let got = v[i * n + j];
                assert!(
                    (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
                    "({i}, {j})"
                );
            }
        }
    }
}

#[test]
fn small_or_dense_jacobians_stay_uncompressed() {
    // Below the smallest basis compressed.
    assert!(!compressed(&hessian(rosenbrock), &[f64v(8)]));
    // A dense Hessian: every row is full.
    let dense = |x: Tensor| x.sum_all().square().sin();
    assert!(!compressed(&hessian(dense), &[f64v(64)]));
    // An index computed from the input makes the gather's pattern conservative (every
    // element may be read): the dense path runs, with the same values.
    let dynamic = |x: Tensor| {
        let i = x.argmax(0);
        (x.take(&i, 0) * x).sum_all()
    };
    let h = hessian(dynamic);
    assert!(!compressed(&h, &[f64v(32)]));
    same_as_uncompressed(&h, &[linspace(32)]);
}

#[test]
fn scattered_pattern_matches_finite_differences() {
    let n = 50;
    let h = hessian(pairs);
    assert!(compressed(&h, &[f64v(n)]));
    let x0 = Array::from((0..n).map(|i| 0.3 + 0.02 * i as f64).collect::<Vec<f64>>());
    let out = same_as_uncompressed(&h, std::slice::from_ref(&x0))[0].to_f64_vec();
    // Central differences of the gradient, column by column.
    let g = grad(pairs);
    let eps = 1e-5;
    let x = x0.to_f64_vec();
    for j in 0..n {
        let at = |d: f64| {
            let mut y = x.clone();
            y[j] += d;
            g.call_arrays(&[Array::from(y)]).unwrap()[0].to_f64_vec()
        };
        let (p, m) = (at(eps), at(-eps));
        for i in 0..n {
            let fd = (p[i] - m[i]) / (2.0 * eps);
            let got = out[i * n + j];
            assert!((got - fd).abs() < 1e-6, "({i}, {j}): {got} against {fd}");
        }
    }
}

#[test]
fn non_finite_inputs_leave_structural_zeros_exact() {
    let n = 32;
    let mut x = linspace(n).to_f64_vec();
    x[5] = f64::INFINITY;
    x[20] = f64::NAN;
    let args = [Array::from(x)];
    let h = hessian(rosenbrock);
    let c = h.call_arrays(&args).unwrap()[0].to_f64_vec();
    let d = h.uncompressed().call_arrays(&args).unwrap()[0].to_f64_vec();
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (c[i * n + j], d[i * n + j]);
            if i.abs_diff(j) > 1 {
                // A structural zero: exact in the compressed result, whatever the dense one
                // computed (NaN from 0 · ∞ in the rows next to the non-finite inputs).
                assert_eq!(a.to_bits(), 0.0f64.to_bits(), "({i}, {j})");
            } else {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "({i}, {j}): {a} against {b}"
                );
            }
        }
    }
    assert!(d.iter().any(|v| v.is_nan()));
}

#[test]
fn blocks_of_several_arguments() {
    // A coupled function of two vectors: Hessian blocks (x, x), (x, y), (y, x), (y, y).
    let f = |x: Tensor, y: Tensor| {
        let n = x.shape()[0];
        let head = x.slice_axis(0, 0, n - 1);
        let tail = x.slice_axis(0, 1, n);
        (tail - head.square()).square().sum_all()
            + (x * y.clone()).sin().sum_all()
            + (y.clone() * y).exp().sum_all()
    };
    let n = 24;
    let h = hessian(f).wrt((0, 1));
    assert!(compressed(&h, &[f64v(n), f64v(n)]));
    let y = Array::from((0..n).map(|i| 0.1 * i as f64 - 1.0).collect::<Vec<f64>>());
    let out = same_as_uncompressed(&h, &[linspace(n), y]);
    assert_eq!(out.len(), 4);
    assert_eq!(out[1].dims(), &[n, n]);
}

/// A banded map of a vector: `y_i = x_i · x_{i+1} − sin(x_i)` (n − 1 outputs).
fn banded_map(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    head.clone() * tail - head.sin()
}

#[test]
fn forward_and_reverse_jacobians_of_a_banded_map() {
    let n = 48;
    for j in [jacfwd(banded_map), jacrev(banded_map)] {
        assert!(compressed(&j, &[f64v(n)]));
        let out = same_as_uncompressed(&j, &[linspace(n)]);
        assert_eq!(out[0].dims(), &[n - 1, n]);
    }
}

#[test]
fn nesting_vmap_and_higher_order() {
    // vmap of a compressed Hessian over a batch of points.
    let n = 20;
    let h = hessian(rosenbrock);
    let batch: Vec<f64> = (0..3)
        .flat_map(|b| {
            linspace(n)
                .to_f64_vec()
                .into_iter()
                .map(move |v| v + 0.1 * b as f64)
        })
        .collect();
    let xs = Array::from_f64([3, n], batch.clone()).unwrap();
    let got = vmap(&h).call_arrays(&[xs]).unwrap()[0].to_f64_vec();
    for b in 0..3 {
        let x = Array::from(batch[b * n..(b + 1) * n].to_vec());
        let one = h.uncompressed().call_arrays(&[x]).unwrap()[0].to_f64_vec();
        let part = &got[b * n * n..(b + 1) * n * n];
        for (k, (p, q)) in part.iter().zip(&one).enumerate() {
            assert!(
                p.to_bits() == q.to_bits() || (*p == 0.0 && *q == 0.0),
                "{b}, {k}"
            );
        }
    }
    // The third derivatives: jacfwd of the Hessian, compressed at both levels.
    let t = jacfwd(hessian(rosenbrock));
    let dense = jacfwd(hessian(rosenbrock).uncompressed()).uncompressed();
    let (a, d) = (
        t.call_arrays(&[linspace(n)]).unwrap(),
        dense.call_arrays(&[linspace(n)]).unwrap(),
    );
    assert_eq!(a[0].dims(), &[n, n, n]);
    for (p, q) in a[0].to_f64_vec().iter().zip(d[0].to_f64_vec()) {
        assert!(p.to_bits() == q.to_bits() || (*p == 0.0 && q == 0.0));
    }
}
