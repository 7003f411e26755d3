//! Sparse derivatives over parameter trees: `tree::jacobian_sparse`, `tree::hessian_sparse`,
//! `tree::sparsity` and `tree::hvp` against the dense tree `jacfwd` and `hessian` (whose blocks
//! are placed by the rows' and columns' leaf indices), the leaf index's mapping back to key
//! paths and elements, and errors for trees the sparse form does not take.

use ferrax::prelude::*;
use ferrax::tree::{self, Tree};
use ferrax::ErrorKind;
use proptest::prelude::*;

#[derive(Tree, Clone, Debug)]
struct State<T> {
    u: T,
    v: T,
}

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

fn state(nu: usize, rows: usize, seed: u64) -> State<Array> {
    State {
        u: Array::from(random(nu, seed)),
        v: Array::from_f64(vec![rows, 2], random(2 * rows, seed + 7)).unwrap(),
    }
}

/// A coupled map of a tree: `u` (a vector) and `v` (a matrix) meet elementwise and along a
/// stencil; the output is a tree of another structure (a pair).
fn coupled(s: State<Tensor>) -> (Tensor, Tensor) {
    let n = s.u.shape()[0];
    let col = s.v.slice_axis(1, 0, 1).reshape(&[n]);
    let p = s.u.pad(&[1], &[1], &[0], 0.0);
    let lap = p.slice_axis(0, 0, n) - 2.0 * s.u.clone() + p.slice_axis(0, 2, n + 2);
    let a = lap * col.clone().sin() + s.u.clone() * s.u.clone();
    let b = s.v.clone().exp() * s.v.slice_axis(1, 1, 2).tanh();
    (a, b)
}

/// A scalar function of a tree with a banded Hessian in `u` and a coupling of `u` and `v`.
fn energy(s: State<Tensor>) -> Tensor {
    let n = s.u.shape()[0];
    let a = s.u.slice_axis(0, 0, n - 1);
    let b = s.u.slice_axis(0, 1, n);
    let d = b - a.clone() * a;
    let col = s.v.slice_axis(1, 1, 2).reshape(&[n]);
    (10.0 * d.clone() * d).sum_all() + (s.u * col.sin()).sum_all() + (s.v.clone() * s.v).sum_all()
}

/// The dense matrix `rows × cols` assembled from a dense tree derivative's blocks: block `k`
/// of `blocks` (in leaf order: output leaf major, argument leaf minor) holds rows of output
/// leaf `k / nc`, columns of argument leaf `k % nc`.
fn assemble(blocks: &[&Array], rows: &tree::LeafIndex, cols: &tree::LeafIndex) -> Vec<f64> {
    let (m, n) = (rows.len(), cols.len());
    let nc = cols.num_leaves();
    let mut d = vec![0.0; m * n];
    for (k, b) in blocks.iter().enumerate() {
        let (ri, ci) = (rows.range(k / nc), cols.range(k % nc));
        let vals = b.to_f64_vec();
        assert_eq!(vals.len(), ri.len() * ci.len());
        for (a, r) in ri.clone().enumerate() {
            for (c, col) in ci.clone().enumerate() {
                d[r * n + col] = vals[a * ci.len() + c];
            }
        }
    }
    d
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{i}: {x} vs {y}");
    }
}

fn check_jacobian(nu: usize, seed: u64) {
    let s = state(nu, nu, seed);
    let j = tree::jacobian_sparse(coupled).call((&s,)).unwrap();
    j.matrix.check().unwrap();
    assert_eq!(
        (j.matrix.nrows, j.matrix.ncols),
        (j.rows.len(), j.cols.len())
    );
    let dense: (State<Array>, State<Array>) = tree::jacfwd(coupled).call((&s,)).unwrap();
    let want = assemble(&dense.leaves(), &j.rows, &j.cols);
    close(&j.matrix.to_dense().unwrap(), &want);
    // The pattern alone is the one the values came with.
    let p = tree::sparsity(coupled).jacobian((&s,)).unwrap();
    assert_eq!(p.pattern.col_idx(), j.matrix.col_idx);
    assert_eq!(p.pattern.row_ptr(), j.matrix.row_ptr);
    assert_eq!((p.rows, p.cols), (j.rows, j.cols));
}

#[test]
fn tree_jacobian_equals_the_dense_tree_jacobian() {
    check_jacobian(6, 1);
    let s = state(6, 6, 2);
    let j = tree::jacobian_sparse(coupled).call((&s,)).unwrap();
    // Columns: u's 6 elements, then v's 12 (row-major); rows: the pair's leaves.
    assert_eq!(j.cols.paths().len(), 2);
    assert_eq!(j.cols.paths()[1].to_string(), "v");
    assert_eq!(j.rows.paths()[0].to_string(), "0");
    assert_eq!(j.rows.range(1), 6..18);
    // A structural zero: a(0) does not depend on v[5, 1] (column 6 + 11).
    assert!(!j.matrix.col_idx[j.matrix.row_ptr[0]..j.matrix.row_ptr[1]].contains(&17));
}

#[test]
fn tree_hessian_equals_the_dense_tree_hessian() {
    let s = state(7, 7, 3);
    for ordering in [
        ferrax::sparse::Ordering::Natural,
        ferrax::sparse::Ordering::LargestFirst,
        ferrax::sparse::Ordering::SmallestLast,
    ] {
        let h = tree::hessian_sparse(energy)
            .ordering(ordering)
            .call((&s,))
            .unwrap();
        h.matrix.check().unwrap();
        assert_eq!(h.rows, h.cols);
        let dense: State<State<Array>> = tree::hessian(energy).call((&s,)).unwrap();
        let want = assemble(&dense.leaves(), &h.rows, &h.cols);
        close(&h.matrix.to_dense().unwrap(), &want);
        assert!(h.matrix.nnz() < want.len() / 2, "the Hessian is sparse");
    }
    // An acyclic colouring: fewer colours, the same values.
    let star = tree::hessian_sparse(energy).call((&s,)).unwrap();
    let acyclic = tree::hessian_sparse(energy).acyclic().call((&s,)).unwrap();
    assert!(acyclic.matrix.colours <= star.matrix.colours);
    let (x, y) = (
        acyclic.matrix.to_dense().unwrap(),
        star.matrix.to_dense().unwrap(),
    );
    for (a, b) in x.iter().zip(&y) {
        assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{a} vs {b}");
    }
    let p = tree::sparsity(energy).hessian((&s,)).unwrap();
    let h = tree::hessian_sparse(energy).call((&s,)).unwrap();
    assert_eq!(p.pattern.col_idx(), h.matrix.col_idx);
}

#[test]
fn derivatives_with_respect_to_a_later_tree_argument() {
    // The first argument is a parameter passed through, not differentiated.
    let f = |k: Tensor, s: State<Tensor>| (k.clone() * s.u.clone(), s.v * k.sum_all());
    let s = state(4, 4, 4);
    let k = Array::from(random(4, 9));
    let j = tree::jacobian_sparse(f).wrt(1).call((&k, &s)).unwrap();
    let dense: (State<Array>, State<Array>) = tree::jacfwd(f).wrt(1).call((&k, &s)).unwrap();
    let want = assemble(&dense.leaves(), &j.rows, &j.cols);
    close(&j.matrix.to_dense().unwrap(), &want);
    assert_eq!(j.matrix.nnz(), 4 + 8);
    // Another k: the same compiled derivative, other values.
    let k2 = Array::from(random(4, 10));
    let j2 = tree::jacobian_sparse(f).wrt(1).call((&k2, &s)).unwrap();
    assert_eq!(j2.matrix.values[0], k2.to_f64_vec()[0]);
}

#[test]
fn leaf_indices_map_back_to_paths_and_elements() {
    let s = state(3, 3, 5);
    let j = tree::jacobian_sparse(coupled).call((&s,)).unwrap();
    let c = &j.cols;
    assert_eq!(c.len(), 3 + 6);
    assert_eq!(c.leaf_of(2), Some((0, 2)));
    assert_eq!(c.leaf_of(3), Some((1, 0)));
    let (path, at) = c.locate(8).unwrap();
    assert_eq!((path.to_string(), at), ("v".to_string(), vec![2, 1]));
    let (path, at) = c.locate(4).unwrap();
    assert_eq!((path.to_string(), at), ("v".to_string(), vec![0, 1]));
    assert_eq!(c.locate(9), None);
    assert_eq!(c.leaf_of(usize::MAX), None);
    assert_eq!(c.range(2), 0..0);
    assert_eq!(c.shapes()[1].dims(), &[3, 2]);
}

#[test]
fn tree_hvp_equals_the_dense_hessian_times_v() {
    let s = state(5, 5, 6);
    let v = state(5, 5, 11);
    let hv: State<Array> = tree::hvp(energy).call((&s, &v)).unwrap();
    let h = tree::hessian_sparse(energy).call((&s,)).unwrap();
    let d = h.matrix.to_dense().unwrap();
    let vf: Vec<f64> = v.leaves().iter().flat_map(|a| a.to_f64_vec()).collect();
    let n = vf.len();
    let want: Vec<f64> = (0..n)
        .map(|r| (0..n).map(|c| d[r * n + c] * vf[c]).sum())
        .collect();
    let got: Vec<f64> = hv.leaves().iter().flat_map(|a| a.to_f64_vec()).collect();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{a} vs {b}");
    }
    // A direction of another structure is an error, not a panic.
    let bad = tree::hvp(energy).call::<_, State<Array>>((&s, &(Array::from(1.0),)));
    assert!(bad.is_err());
}

#[test]
fn trees_the_sparse_form_does_not_take_are_errors() {
    // Leaves of two float dtypes cannot be joined into one vector.
    let mixed = State {
        u: Array::from(vec![1.0, 2.0]),
        v: Array::from(vec![1.0f32, 2.0]),
    };
    let f = |s: State<Tensor>| s.u.clone() * s.v.astype(DType::F64);
    let e = tree::jacobian_sparse(f).call((&mixed,)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    assert!(e.to_string().contains("dtype"), "{e}");
    // No argument 1.
    let s = state(3, 3, 1);
    let e = tree::jacobian_sparse(coupled)
        .wrt(1)
        .call((&s,))
        .unwrap_err();
    assert!(e.to_string().contains("argument 1"), "{e}");
    // A Hessian of a non-scalar function.
    assert!(tree::hessian_sparse(coupled).call((&s,)).is_err());
    // An argument without leaves.
    let g = |_u: Option<Tensor>, x: Tensor| x.sin();
    let e = tree::jacobian_sparse(g)
        .call((&None::<Array>, Array::from(vec![1.0])))
        .unwrap_err();
    assert!(e.to_string().contains("no leaves"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random leaf sizes and inputs: the sparse tree Jacobian equals the dense one.
    #[test]
    fn tree_jacobians_equal_dense_ones(nu in 2usize..9, seed in 0u64..1000) {
        check_jacobian(nu, seed);
    }
}
