//! Sparse derivatives: detected Jacobian and Hessian patterns against the exact patterns read
//! off dense Jacobians at random inputs, colourings checked for validity on random patterns,
//! and compressed values against the dense derivatives.

use ferrax_ir::{Array, DType, Graph, IntoFunction, Tensor, Type};
use ferrax_transforms::sparse::colour::{
    colour_columns, colour_star, is_valid_column_colouring, is_valid_star_colouring, Ordering,
};
use ferrax_transforms::sparse::compress::{hessian_plan, jacobian_plan};
use ferrax_transforms::sparse::{colour, hessian_pattern, jacobian_pattern, Colouring, Pattern};
use ferrax_transforms::{grad_graph, hessian_graph, jacfwd_graph};
use proptest::prelude::*;

const ORDERINGS: [Ordering; 3] = [
    Ordering::Natural,
    Ordering::LargestFirst,
    Ordering::SmallestLast,
];

fn graph_of<M>(f: impl IntoFunction<M>, n: usize) -> Graph {
    let s = ferrax_ir::function(f)
        .specialize(&[Type::new(DType::F64, &[n])])
        .unwrap();
    assert_eq!(s.n_explicit, 1);
    (*s.graph).clone()
}

/// A deterministic pseudo-random vector in [-1.5, 1.5].
fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 3.0 - 1.5
        })
        .collect()
}

/// The dense `rows × n` matrix computed by `dense` (a Jacobian graph of one argument) at `x`.
fn dense_at(dense: &Graph, x: &[f64]) -> Vec<f64> {
    let out = ferrax_ir::interp::eval(dense, &[Array::from(x.to_vec())]).unwrap();
    out[0].to_f64_vec()
}

/// The exact pattern: entries nonzero at any of a few random inputs.
fn exact_pattern(dense: &Graph, n: usize, inputs: &[Vec<f64>]) -> Pattern {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for x in inputs {
        let d = dense_at(dense, x);
        let m = d.len() / n;
        rows.resize(m, Vec::new());
        for (r, row) in rows.iter_mut().enumerate() {
            for c in 0..n {
                if d[r * n + c] != 0.0 && !row.contains(&c) {
                    row.push(c);
                }
            }
        }
    }
    for r in &mut rows {
        r.sort_unstable();
    }
    Pattern::from_rows(n, &rows).unwrap()
}

fn inputs(n: usize) -> Vec<Vec<f64>> {
    (1..4).map(|s| random(n, s)).collect()
}

/// Checks the detected Jacobian pattern of `f` equals the exact one at random inputs.
fn check_exact<M>(f: impl IntoFunction<M>, n: usize) -> Pattern {
    let g = graph_of(f, n);
    let detected = jacobian_pattern(&g, 1).unwrap();
    let exact = exact_pattern(&jacfwd_graph(&g, 1, &[0]).unwrap(), n, &inputs(n));
    assert_eq!(detected, exact, "\n{}", g.to_text());
    detected
}

fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let a = x.slice_axis(0, 0, n - 1);
    let b = x.slice_axis(0, 1, n);
    let d = b - a.clone() * a.clone();
    let e = 1.0 - a;
    (100.0 * d.clone() * d + e.clone() * e).sum_all()
}

fn stencil(x: &Tensor) -> Tensor {
    let n = x.shape()[0];
    let p = x.pad(&[1], &[1], &[0], 0.0);
    p.slice_axis(0, 0, n) - 2.0 * x.clone() + p.slice_axis(0, 2, n + 2)
}

#[test]
fn rosenbrock_gradient_and_hessian() {
    let n = 9;
    let g = graph_of(rosenbrock, n);
    let gg = grad_graph(&g, 1, &[0], false).unwrap();
    let detected = jacobian_pattern(&gg, 1).unwrap();
    let exact = exact_pattern(&hessian_graph(&g, 1, &[0]).unwrap(), n, &inputs(n));
    assert_eq!(detected, exact);
    assert_eq!(hessian_pattern(&g, 1).unwrap(), exact);
    assert_eq!(exact.nnz(), 3 * n - 2);
    // The Jacobian of the gradient (its own graph) is the same tridiagonal pattern.
    let gf = |x: Tensor| {
        let g = ferrax_transforms::api::grad(rosenbrock);
        g.apply1(&[x])
    };
    check_exact(gf, n);
}

#[test]
fn tridiagonal_stencil() {
    let p = check_exact(|x: Tensor| stencil(&x) + x.clone() * x.clone() * x.sin(), 8);
    assert_eq!(p.nnz(), 3 * 8 - 2);
}

#[test]
fn banded_matmul_with_a_constant_sparse_matrix() {
    let n = 10;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i * n + i] = 2.0;
        if i + 2 < n {
            a[i * n + i + 2] = -1.0;
        }
    }
    a[3 * n + 9] = 0.5;
    let a = Array::from_f64(vec![n, n], a).unwrap();
    let p = check_exact(
        move |x: Tensor| Tensor::constant(a.clone()).matmul(&x.sin()),
        n,
    );
    assert_eq!(p.nnz(), n + (n - 2) + 1);
}

#[test]
fn gather_scatter_and_shape_ops() {
    let n = 7;
    let idx = Array::from_i32(vec![5], vec![3, 0, 6, 3, 2]).unwrap();
    let i2 = idx.clone();
    check_exact(
        move |x: Tensor| {
            let i = Tensor::constant(i2.clone());
            x.take(&i, 0) * x.take(&i, 0).rev(&[0])
        },
        n,
    );
    check_exact(
        move |x: Tensor| {
            let i = Tensor::constant(idx.clone());
            let u = x.slice_axis(0, 1, 6).exp();
            let s = x.scatter_add(&i, &u);
            let c = ferrax_ir::concatenate(&[s.clone(), x.rev(&[0]).cos()], 0);
            c.reshape(&[2, n]).transpose(&[1, 0]).sum(&[1]) * s.cumsum(0)
        },
        n,
    );
}

#[test]
fn fori_loop_stencil() {
    let n = 12;
    let p = check_exact(
        |x: Tensor| {
            ferrax_ir::fori_loop(
                0,
                3,
                |_i, c| vec![c[0].clone() + 0.1 * stencil(&c[0]) * c[0].clone()],
                &[x],
            )
            .remove(0)
        },
        n,
    );
    // Three steps of a tridiagonal stencil make a band of half-width 3.
    let band: usize = (0..n).map(|i| i.min(3) + (n - 1 - i).min(3) + 1).sum();
    assert_eq!(p.nnz(), band);
}

#[test]
fn cond_takes_the_union_of_its_branches() {
    let n = 6;
    let g = graph_of(
        |x: Tensor| {
            let pred = x.sum_all().gt(0.0);
            ferrax_ir::cond(
                &pred,
                |o| vec![o[0].slice_axis(0, 0, 3).sin()],
                |o| vec![o[0].slice_axis(0, 3, 6).exp()],
                &[x],
            )
            .remove(0)
        },
        n,
    );
    let detected = jacobian_pattern(&g, 1).unwrap();
    let rows: Vec<Vec<usize>> = (0..3).map(|i| vec![i, i + 3]).collect();
    assert_eq!(detected, Pattern::from_rows(n, &rows).unwrap());
}

/// A random pattern of `rows × cols` with roughly `density` of the entries set.
fn arb_pattern() -> impl Strategy<Value = Pattern> {
    (
        1usize..25,
        1usize..25,
        proptest::collection::vec(any::<u16>(), 0..120),
    )
        .prop_map(|(r, c, picks)| {
            let mut rows = vec![Vec::new(); r];
            for p in picks {
                let p = p as usize;
                rows[p % r].push((p / r) % c);
            }
            for row in &mut rows {
                row.sort_unstable();
                row.dedup();
            }
            Pattern::from_rows(c, &rows).unwrap()
        })
}

fn symmetric(p: &Pattern) -> Pattern {
    let n = p.nrows().max(p.ncols());
    let mut rows = vec![Vec::new(); n];
    for r in 0..p.nrows() {
        for &c in p.row(r) {
            rows[r].push(c);
            rows[c].push(r);
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row.push(i);
        row.sort_unstable();
        row.dedup();
    }
    Pattern::from_rows(n, &rows).unwrap()
}

proptest! {
    #[test]
    fn column_colourings_are_valid(p in arb_pattern()) {
        for o in ORDERINGS {
            let c = colour_columns(&p, o);
            prop_assert!(is_valid_column_colouring(&p, &c));
            let widest = (0..p.nrows()).map(|r| p.row(r).len()).max().unwrap_or(0);
            prop_assert!(c.num_colours >= widest);
        }
    }

    #[test]
    fn orderings_are_permutations_and_adjacency_is_symmetric(p in arb_pattern()) {
        use ferrax_transforms::sparse::colour::{column_conflicts, order, symmetric_adjacency};
        let s = symmetric(&p);
        for adj in [column_conflicts(&p), symmetric_adjacency(&s)] {
            for v in 0..adj.len() {
                let nb = adj.nbrs(v);
                prop_assert!(nb.windows(2).all(|w| w[0] < w[1]) && !nb.contains(&v));
                for &w in nb {
                    prop_assert!(adj.nbrs(w).contains(&v));
                }
            }
            for o in ORDERINGS {
                let mut ord = order(&adj, o);
                ord.sort_unstable();
                prop_assert_eq!(ord, (0..adj.len()).collect::<Vec<_>>());
            }
        }
        // Columns sharing a row are exactly the adjacent ones.
        let adj = column_conflicts(&p);
        for a in 0..p.ncols() {
            for b in 0..p.ncols() {
                let share = (0..p.nrows()).any(|r| p.row(r).contains(&a) && p.row(r).contains(&b));
                prop_assert_eq!(a != b && share, adj.nbrs(a).contains(&b));
            }
        }
    }

    #[test]
    fn star_colourings_are_valid_and_decompress(p in arb_pattern()) {
        let s = symmetric(&p);
        for o in ORDERINGS {
            let c = colour_star(&s, o);
            prop_assert!(is_valid_star_colouring(&s, &c));
            prop_assert!(ferrax_transforms::sparse::colour::star_decompression(&s, &c).is_ok());
        }
    }
}

/// The smallest-last order by its definition, in quadratic time: repeatedly the remaining
/// vertex of least remaining degree, among those the one that reached that degree last (at
/// the start, the lowest index counts as the latest), reversed.
fn smallest_last_by_definition(adj: &colour::Adjacency) -> Vec<usize> {
    let n = adj.len();
    let mut degree: Vec<usize> = (0..n).map(|v| adj.nbrs(v).len()).collect();
    let mut stamp: Vec<usize> = (0..n).map(|v| n - v).collect();
    let mut removed = vec![false; n];
    let mut clock = n;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let v = (0..n)
            .filter(|&v| !removed[v])
            .min_by_key(|&v| (degree[v], std::cmp::Reverse(stamp[v])))
            .unwrap();
        removed[v] = true;
        out.push(v);
        for &w in adj.nbrs(v) {
            if !removed[w] {
                degree[w] -= 1;
                clock += 1;
                stamp[w] = clock;
            }
        }
    }
    out.reverse();
    out
}

/// A square pattern from `p` (rows and columns both `max(nrows, ncols)`), not symmetric in
/// general.
fn square(p: &Pattern) -> Pattern {
    let n = p.nrows().max(p.ncols());
    let mut rows: Vec<Vec<usize>> = (0..p.nrows()).map(|r| p.row(r).to_vec()).collect();
    rows.resize(n, Vec::new());
    Pattern::from_rows(n, &rows).unwrap()
}

proptest! {
    /// The smallest-last order (a bucket queue of linked lists) is the one its definition
    /// gives, ties included, so colourings do not depend on how it is computed.
    #[test]
    fn smallest_last_order_follows_its_definition(p in arb_pattern()) {
        use ferrax_transforms::sparse::colour::{column_conflicts, order, symmetric_adjacency};
        for adj in [column_conflicts(&p), symmetric_adjacency(&symmetric(&p))] {
            prop_assert_eq!(order(&adj, Ordering::SmallestLast), smallest_last_by_definition(&adj));
        }
    }

    /// The adjacency of a square pattern, symmetric or not, joins `i` and `j` exactly when
    /// `(i, j)` or `(j, i)` is an entry (the symmetric case copies the rows while checking
    /// the symmetry; the other builds the lists).
    #[test]
    fn symmetric_adjacency_joins_mirrored_entries(p in arb_pattern(), mirror in any::<bool>()) {
        use ferrax_transforms::sparse::colour::symmetric_adjacency;
        let q = if mirror { symmetric(&p) } else { square(&p) };
        let adj = symmetric_adjacency(&q);
        prop_assert_eq!(adj.len(), q.nrows());
        for a in 0..q.nrows() {
            let want: Vec<usize> = (0..q.nrows())
                .filter(|&b| b != a && (q.row(a).contains(&b) || q.row(b).contains(&a)))
                .collect();
            prop_assert_eq!(adj.nbrs(a), &want[..]);
        }
    }
}

#[test]
fn the_checkers_reject_bad_colourings() {
    // A path 0-1-2-3 coloured 0,1,0,1 is distance-1 valid but not a star colouring.
    let rows = vec![vec![0, 1], vec![0, 1, 2], vec![1, 2, 3], vec![2, 3]];
    let p = Pattern::from_rows(4, &rows).unwrap();
    let bad = ferrax_transforms::sparse::Colouring {
        colours: vec![0, 1, 0, 1],
        num_colours: 2,
    };
    assert!(!is_valid_star_colouring(&p, &bad));
    assert!(ferrax_transforms::sparse::colour::star_decompression(&p, &bad).is_err());
    assert!(!is_valid_column_colouring(&p, &bad));
}

/// The Jacobian pattern of a periodic `m × m` Brusselator-like right-hand side: each of two
/// fields depends on its own five-point stencil and on the other field at the same point.
fn coupled_stencil(m: usize) -> Pattern {
    let at = |f: usize, i: usize, j: usize| f * m * m + (i % m) * m + j % m;
    let rows: Vec<Vec<usize>> = (0..2 * m * m)
        .map(|r| {
            let (f, i, j) = (r / (m * m), (r / m) % m, r % m);
            let mut row = vec![
                at(f, i, j),
                at(f, i + 1, j),
                at(f, i + m - 1, j),
                at(f, i, j + 1),
                at(f, i, j + m - 1),
                at(1 - f, i, j),
            ];
            row.sort_unstable();
            row.dedup();
            row
        })
        .collect();
    Pattern::from_rows(2 * m * m, &rows).unwrap()
}

/// Recolouring (iterated greedy over the colour classes) takes the coupled stencil to 10
/// colours for every ordering (one smallest-last greedy pass gives 12 at m = 256), and the
/// tabu search then to 9 from m = 16 on, on grid sizes that do and do not divide by the five
/// of the stencil's optimal period; the colourings stay valid.
#[test]
fn recolouring_the_coupled_stencil_needs_nine_colours() {
    for m in [7, 8, 16, 23, 64, 100, 128] {
        let p = coupled_stencil(m);
        for o in ORDERINGS {
            let c = colour_columns(&p, o);
            eprintln!("m = {m} {o:?}: {} colours", c.num_colours);
            assert!(is_valid_column_colouring(&p, &c), "m = {m} {o:?}");
            let most = if m >= 16 { 9 } else { 10 };
            assert!(
                c.num_colours <= most,
                "m = {m} {o:?}: {} colours",
                c.num_colours
            );
            assert!(c.num_colours >= 6, "m = {m} {o:?}: below the widest row");
        }
    }
}

#[test]
fn rosenbrock_hessian_needs_three_colours() {
    let n = 50;
    let g = graph_of(rosenbrock, n);
    let h = hessian_pattern(&g, 1).unwrap();
    for o in ORDERINGS {
        let c = colour_star(&h, o);
        assert!(is_valid_star_colouring(&h, &c));
        eprintln!(
            "rosenbrock n = {n}: {o:?} star colouring uses {} colours",
            c.num_colours
        );
    }
    assert_eq!(colour_star(&h, Ordering::Natural).num_colours, 3);
    assert_eq!(colour_star(&h, Ordering::SmallestLast).num_colours, 3);
}

/// The values of `plan` at `x` against the dense matrix from `dense`.
fn check_values(plan_graph: &Graph, p: &Pattern, dense: &Graph, x: &[f64]) {
    let vals = ferrax_ir::interp::eval(plan_graph, &[Array::from(x.to_vec())]).unwrap();
    let vals = vals[0].to_f64_vec();
    let d = dense_at(dense, x);
    assert_eq!(vals.len(), p.nnz());
    let mut k = 0;
    for r in 0..p.nrows() {
        for &c in p.row(r) {
            let want = d[r * p.ncols() + c];
            assert!(
                (vals[k] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "({r}, {c}): {} vs {want}",
                vals[k]
            );
            k += 1;
        }
    }
}

#[test]
fn compressed_jacobian_values_equal_dense() {
    let n = 11;
    let g = graph_of(|x: Tensor| stencil(&x) * x.exp() + x.clone() * x, n);
    for o in ORDERINGS {
        let plan = jacobian_plan(&g, 1, 0, o).unwrap();
        assert_eq!(plan.colouring.num_colours, 3);
        let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
        for x in inputs(n) {
            check_values(&plan.graph, &plan.pattern, &dense, &x);
        }
    }
}

#[test]
fn compressed_hessian_values_equal_dense() {
    let n = 13;
    let g = graph_of(rosenbrock, n);
    let plan = hessian_plan(&g, 1, 0, Ordering::SmallestLast).unwrap();
    assert_eq!(plan.colouring.num_colours, 3);
    let dense = hessian_graph(&g, 1, &[0]).unwrap();
    for x in inputs(n) {
        check_values(&plan.graph, &plan.pattern, &dense, &x);
    }
}

/// The periodic second difference of a vector: `x[i − 1] + x[i + 1] − 2 x[i]`, by rolls.
fn periodic_stencil(x: &Tensor) -> Tensor {
    let n = x.shape()[0];
    let ahead = ferrax_ir::concatenate(&[x.slice_axis(0, 1, n), x.slice_axis(0, 0, 1)], 0);
    let behind = ferrax_ir::concatenate(&[x.slice_axis(0, n - 1, n), x.slice_axis(0, 0, n - 1)], 0);
    ahead + behind - 2.0 * x.clone()
}

/// The float constants of `g` with `dims`.
fn constants_shaped(g: &Graph, dims: &[usize]) -> usize {
    g.insts()
        .filter(|(_, inst)| {
            matches!(
                inst.op,
                ferrax_ir::Op::Literal(ferrax_ir::ops::LiteralOp::Const(_))
            ) && g.ty(inst.results[0]).dims() == dims
                && g.ty(inst.results[0]).dtype.is_float()
        })
        .count()
}

#[test]
fn sums_of_moved_seeds_fold_into_one_constant() {
    // The tangent of the stencil adds the seeds rolled both ways: two constants moved from
    // the seeds, used only by their sum, which is folded. The seeds themselves stay (the
    // product rule of `x · x` and the `2 x` term read them too), so two `[k, n]` constants
    // are left, and the values still equal the dense Jacobian's.
    let n = 40;
    let g = graph_of(|x: Tensor| periodic_stencil(&x) + x.clone() * x.sin(), n);
    let plan = jacobian_plan(&g, 1, 0, Ordering::SmallestLast).unwrap();
    let k = plan.colouring.num_colours;
    assert!(k * n > ferrax_ir::builder::FOLD_LIMIT);
    assert_eq!(
        constants_shaped(&plan.graph, &[k, n]),
        2,
        "\n{}",
        plan.graph.to_text()
    );
    let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
    for x in inputs(n) {
        check_values(&plan.graph, &plan.pattern, &dense, &x);
    }
}

/// Checks the detected pattern contains the exact one (for rules that are conservative by
/// design) and returns both.
fn check_superset<M>(f: impl IntoFunction<M>, n: usize) -> (Pattern, Pattern) {
    let g = graph_of(f, n);
    let detected = jacobian_pattern(&g, 1).unwrap();
    let exact = exact_pattern(&jacfwd_graph(&g, 1, &[0]).unwrap(), n, &inputs(n));
    assert_eq!(
        (detected.nrows(), detected.ncols()),
        (exact.nrows(), exact.ncols())
    );
    for r in 0..exact.nrows() {
        for c in exact.row(r) {
            assert!(detected.row(r).contains(c), "({r}, {c}) missed");
        }
    }
    (detected, exact)
}

fn i32s(v: &[i32]) -> Tensor {
    Tensor::constant(Array::from_i32(vec![v.len()], v.to_vec()).unwrap())
}

fn i32_scalar(v: i32) -> Tensor {
    Tensor::constant(Array::from_i32(Vec::<usize>::new(), vec![v]).unwrap())
}

#[test]
fn scan_over_slices_is_followed_step_by_step() {
    let n = 8;
    let p = check_exact(
        move |x: Tensor| {
            let c0 = x.slice_axis(0, 0, 1).reshape(&[]);
            let (c, ys) = ferrax_ir::scan(
                |c, xs| {
                    let next = c[0].clone() * xs[0].clone() + xs[0].sin();
                    (vec![next.clone()], vec![next.sin()])
                },
                &[c0],
                &[x.slice_axis(0, 1, n)],
            );
            ferrax_ir::concatenate(&[c[0].reshape(&[1]), ys[0].clone()], 0)
        },
        n,
    );
    // Output 0 (the final carry) depends on everything; y_i on x_0..=x_{i+1}.
    assert_eq!(p.row(0).len(), n);
    assert_eq!(p.row(1), &[0, 1]);
}

#[test]
fn while_loop_with_a_data_dependent_trip_count_is_a_sound_fixed_point() {
    let n = 7;
    let (detected, exact) = check_superset(
        |x: Tensor| {
            let t = Tensor::scalar(0.0);
            ferrax_ir::while_loop(
                |c| c[1].lt(2.0),
                |c| {
                    let x = c[0].clone() + 0.1 * stencil(&c[0]) * c[0].clone();
                    let t = c[1].clone() + (c[0].clone() * c[0].clone()).sum_all() + 0.5;
                    vec![x, t]
                },
                &[x, t],
            )
            .remove(0)
        },
        n,
    );
    // The fixed point over an unknown number of stencil steps spreads over the whole vector.
    assert_eq!(detected.nnz(), n * n);
    assert!(exact.nnz() <= n * n);
}

#[test]
fn dynamic_slices_and_set_scatters_with_constant_indices_are_exact() {
    let n = 9;
    check_exact(
        |x: Tensor| {
            let s = x.dynamic_slice(&[i32_scalar(2)], &[4]).exp();
            let u = x.dynamic_update_slice(&s, &[i32_scalar(4)]);
            u.clone() * u.at(&i32s(&[0, 8, 3])).set(x.slice_axis(0, 5, 8).sin())
        },
        n,
    );
}

#[test]
fn computed_indices_are_conservative() {
    let n = 6;
    let (detected, _) = check_superset(
        |x: Tensor| {
            let i = x.argmax(0);
            let s = x.dynamic_slice(std::slice::from_ref(&i), &[2]);
            let g = x.take(&i.reshape(&[1]), 0);
            ferrax_ir::concatenate(&[s, g], 0).sin()
        },
        n,
    );
    assert_eq!(detected.nnz(), 3 * n);
}

#[test]
fn reductions_and_batched_dots() {
    let n = 12;
    check_exact(
        |x: Tensor| {
            let m = x.reshape(&[2, 2, 3]);
            let v = x.slice_axis(0, 0, 6).reshape(&[2, 3]).cos();
            let bd = m
                .exp()
                .dot_general(
                    &v,
                    ferrax_ir::ops::DotGeneral {
                        lhs_contract: [2].into_iter().collect(),
                        rhs_contract: [1].into_iter().collect(),
                        lhs_batch: [0].into_iter().collect(),
                        rhs_batch: [0].into_iter().collect(),
                    },
                )
                .reshape(&[4]);
            let mx = m.sum(&[1]).reshape(&[6]).slice_axis(0, 0, 4);
            let pr = m.prod(&[2]).reshape(&[4]);
            bd + mx * pr
        },
        n,
    );
    // A maximum depends on every element it may pick (at a given input, on one of them).
    let (detected, _) = check_superset(|x: Tensor| x.reshape(&[4, 3]).max(&[1]), n);
    assert_eq!(detected.nnz(), n);
}

#[test]
fn hessian_pattern_through_a_loop() {
    let n = 10;
    let g = graph_of(
        |x: Tensor| {
            let y = ferrax_ir::fori_loop(
                0,
                2,
                |_i, c| vec![c[0].clone() + 0.1 * stencil(&c[0]) * c[0].clone()],
                &[x],
            )
            .remove(0);
            (y.clone() * y).sum_all()
        },
        n,
    );
    let detected = hessian_pattern(&g, 1).unwrap();
    let exact = exact_pattern(&hessian_graph(&g, 1, &[0]).unwrap(), n, &inputs(n));
    for r in 0..n {
        for c in exact.row(r) {
            assert!(detected.row(r).contains(c), "({r}, {c}) missed");
        }
    }
    eprintln!(
        "loop Hessian: detected nnz {} against exact {}",
        detected.nnz(),
        exact.nnz()
    );
    assert_eq!(detected, exact);
}

#[test]
fn a_dense_derivative_too_large_for_the_analysis_is_an_error() {
    let n = 9000;
    let g = graph_of(|x: Tensor| x.sum_all() * x, n);
    let e = jacobian_pattern(&g, 1).unwrap_err();
    assert_eq!(e.kind, ferrax_ir::ErrorKind::Resource, "{e}");
    assert!(e.to_string().contains("sparsity"), "{e}");
}

#[test]
fn a_dense_row_is_compressed_in_reverse_mode() {
    use ferrax_transforms::sparse::compress::Mode;
    let n = 12;
    // One dense row (a sum) over a bidiagonal block: columns need n colours, rows only a few.
    let g = graph_of(
        move |x: Tensor| {
            let s = x.sin().sum_all().reshape(&[1]);
            let p = x.slice_axis(0, 0, n - 1) * x.slice_axis(0, 1, n);
            ferrax_ir::concatenate(&[s, p], 0)
        },
        n,
    );
    let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
    for o in ORDERINGS {
        let plan = jacobian_plan(&g, 1, 0, o).unwrap();
        assert_eq!(plan.mode, Mode::Reverse);
        assert!(
            plan.colouring.num_colours <= 4,
            "{}",
            plan.colouring.num_colours
        );
        for x in inputs(n) {
            check_values(&plan.graph, &plan.pattern, &dense, &x);
        }
    }
    // One dense column: forward mode.
    let g = graph_of(|x: Tensor| x.clone() * x.slice_axis(0, 0, 1).cos(), n);
    let plan = jacobian_plan(&g, 1, 0, Ordering::SmallestLast).unwrap();
    assert_eq!((plan.mode, plan.colouring.num_colours), (Mode::Forward, 2));
    let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
    check_values(&plan.graph, &plan.pattern, &dense, &random(n, 9));
}

#[test]
fn windows_follow_their_geometry() {
    use ferrax_ir::ops::Window;
    let n = 24;
    let w = Window::new(&[2, 3])
        .with_strides(&[1, 2])
        .with_padding(&[(1, 0), (1, 2)])
        .with_window_dilation(&[1, 2]);
    let w2 = w.clone();
    check_exact(
        move |x: Tensor| {
            let m = x.reshape(&[4, 6]).sin();
            let s = m.reduce_window_sum(&w2);
            let d = m.reduce_window_sum(&Window::new(&[2, 1]).with_base_dilation(&[2, 1]));
            let k = s.size();
            ferrax_ir::concatenate(&[s.reshape(&[k]), d.reshape(&[d.size()])], 0)
        },
        n,
    );
    // Max windows pick one element per input, so the exact pattern at a few inputs may be
    // smaller; the detected one must contain it, and second derivatives go through the
    // select-and-gather/scatter ops.
    let (detected, _) = check_superset(
        move |x: Tensor| {
            let m = x.reshape(&[4, 6]);
            let p = m.reduce_window_max(&w);
            p.reshape(&[p.size()])
        },
        n,
    );
    assert!(detected.nnz() < 24 * detected.nrows());
    let g = graph_of(
        |x: Tensor| {
            let p = x
                .reshape(&[4, 6])
                .reduce_window_max(&ferrax_ir::ops::Window::new(&[2, 2]));
            (p.clone() * p).sum_all()
        },
        n,
    );
    let detected = hessian_pattern(&g, 1).unwrap();
    let exact = exact_pattern(&hessian_graph(&g, 1, &[0]).unwrap(), n, &inputs(n));
    for r in 0..n {
        for c in exact.row(r) {
            assert!(detected.row(r).contains(c), "({r}, {c}) missed");
        }
    }
    assert!(detected.nnz() < n * n / 2, "{}", detected.nnz());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The shape family's sources are computed from the op's parameters (not by evaluating
    /// it): strided slices, pads with interior padding, broadcasts, transposes, reversals and
    /// concatenations of a 3-D array, composed, give the exact pattern, for operands whose
    /// elements depend on one input each or on two.
    #[test]
    fn shape_ops_move_elements_exactly(
        lo in proptest::collection::vec(0usize..3, 3),
        hi in proptest::collection::vec(0usize..2, 3),
        interior in proptest::collection::vec(0usize..2, 3),
        start in proptest::collection::vec(0usize..2, 3),
        stride in proptest::collection::vec(1usize..3, 3),
        perm in Just(vec![0usize, 1, 2]).prop_shuffle(),
        axes in proptest::collection::vec(any::<bool>(), 3),
        cat_axis in 0usize..3,
        two in any::<bool>(),
    ) {
        let dims = [2usize, 3, 2];
        let f = move |x: Tensor| {
            // Each element of `y` depends on one input, or on two (the sets of the moved
            // values are then stored compressed, not one index per element).
            let y = if two {
                (x.clone() * x.rev(&[0])).reshape(&dims).sin()
            } else {
                x.reshape(&dims).sin()
            };
            let p = y.pad(&lo, &hi, &interior, 0.5);
            let pd = p.shape().to_vec();
            let limit: Vec<usize> = pd.to_vec();
            let s = p.slice(&start, &limit, &stride);
            let t = s.transpose(&perm);
            let rev: Vec<usize> = (0..3).filter(|&d| axes[d]).collect();
            let r = t.rev(&rev);
            let mut bd = r.shape().to_vec();
            bd.insert(1, 2);
            let b = r.broadcast_in_dim(&bd, &[0, 2, 3]);
            let other = b.clone().cos();
            let c = ferrax_ir::concatenate(&[b, other], cat_axis);
            let size: usize = c.shape().iter().product();
            c.reshape(&[size]) * 2.0
        };
        check_exact(f, 12);
    }
}

/// `B = H · S` (colour-major, `k × n`) for a symmetric `H` given by its values on the pattern.
fn compress_symmetric(
    p: &Pattern,
    vals: &[f64],
    c: &ferrax_transforms::sparse::Colouring,
) -> Vec<f64> {
    let n = p.nrows();
    let mut b = vec![0.0; c.num_colours * n];
    for i in 0..n {
        for (k, &j) in p.row(i).iter().enumerate() {
            b[c.colours[j] * n + i] += vals[p.row_ptr()[i] + k];
        }
    }
    b
}

/// Random symmetric values on a symmetric pattern.
fn symmetric_values(p: &Pattern, seed: u64) -> Vec<f64> {
    let r = random(p.nnz(), seed);
    let mut vals = vec![0.0; p.nnz()];
    for i in 0..p.nrows() {
        for (k, &j) in p.row(i).iter().enumerate() {
            // The value of the lower entry, shared by its mirror.
            let (a, b) = (i.min(j), i.max(j));
            let at = p.row_ptr()[b] + p.row(b).binary_search(&a).unwrap();
            vals[p.row_ptr()[i] + k] = r[at];
        }
    }
    vals
}

proptest! {
    #[test]
    fn acyclic_colourings_are_valid_and_substitution_recovers_every_entry(
        p in arb_pattern(),
        seed in 0u64..1000,
    ) {
        use ferrax_transforms::sparse::acyclic::{
            acyclic_substitution, colour_acyclic, is_valid_acyclic_colouring,
        };
        let s = symmetric(&p);
        let vals = symmetric_values(&s, seed);
        for o in ORDERINGS {
            let c = colour_acyclic(&s, o);
            prop_assert!(is_valid_acyclic_colouring(&s, &c));
            let sub = acyclic_substitution(&s, &c).unwrap();
            let b = compress_symmetric(&s, &vals, &c);
            let got = sub.apply(&b).unwrap();
            for (k, (x, y)) in got.iter().zip(&vals).enumerate() {
                prop_assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "entry {}: {} vs {}", k, x, y);
            }
            // Every star colouring is acyclic, so the checker accepts star colourings too.
            prop_assert!(is_valid_acyclic_colouring(&s, &colour_star(&s, o)));
        }
    }
}

/// A symmetric banded pattern of half-width `w` with an optional dense last row and column
/// (an arrow).
fn banded(n: usize, w: usize, arrow: bool) -> Pattern {
    let rows: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let mut r: Vec<usize> = (i.saturating_sub(w)..(i + w + 1).min(n)).collect();
            if arrow && i + 1 < n {
                r.push(n - 1);
            }
            if arrow && i == n - 1 {
                r = (0..n).collect();
            }
            r.sort_unstable();
            r.dedup();
            r
        })
        .collect();
    Pattern::from_rows(n, &rows).unwrap()
}

#[test]
fn acyclic_colourings_use_fewer_colours_than_star_colourings_on_bands_and_arrows() {
    use ferrax_transforms::sparse::acyclic::{colour_acyclic, is_valid_acyclic_colouring};
    for (w, arrow) in [(1, false), (2, false), (3, false), (1, true), (2, true)] {
        let p = banded(40, w, arrow);
        for o in ORDERINGS {
            let (a, s) = (colour_acyclic(&p, o), colour_star(&p, o));
            assert!(is_valid_acyclic_colouring(&p, &a));
            eprintln!(
                "band w = {w} arrow = {arrow} {o:?}: acyclic {} star {}",
                a.num_colours, s.num_colours
            );
            assert!(
                a.num_colours <= s.num_colours,
                "w = {w} arrow = {arrow} {o:?}"
            );
        }
        // Natural order on a band: w + 1 colours (+1 for the arrow's hub).
        let a = colour_acyclic(&p, Ordering::Natural);
        assert_eq!(a.num_colours, w + 1 + usize::from(arrow));
    }
}

#[test]
fn the_acyclic_checker_and_substitution_reject_two_coloured_cycles() {
    use ferrax_transforms::sparse::acyclic::{acyclic_substitution, is_valid_acyclic_colouring};
    // A 4-cycle 0-1-2-3-0 coloured 0,1,0,1: distance-1 valid, but one two-coloured cycle.
    let rows = vec![vec![0, 1, 3], vec![0, 1, 2], vec![1, 2, 3], vec![0, 2, 3]];
    let p = Pattern::from_rows(4, &rows).unwrap();
    let bad = ferrax_transforms::sparse::Colouring {
        colours: vec![0, 1, 0, 1],
        num_colours: 2,
    };
    assert!(!is_valid_acyclic_colouring(&p, &bad));
    assert!(acyclic_substitution(&p, &bad).is_err());
    let clash = ferrax_transforms::sparse::Colouring {
        colours: vec![0, 0, 1, 2],
        num_colours: 3,
    };
    assert!(!is_valid_acyclic_colouring(&p, &clash));
    assert!(acyclic_substitution(&p, &clash).is_err());
    // Colours out of range, or too few of them, are errors rather than out-of-bounds reads.
    for wild in [
        ferrax_transforms::sparse::Colouring {
            colours: vec![0, 1, 2, 7],
            num_colours: 3,
        },
        ferrax_transforms::sparse::Colouring {
            colours: vec![0, 1],
            num_colours: 2,
        },
    ] {
        assert!(acyclic_substitution(&p, &wild).is_err());
        assert!(ferrax_transforms::sparse::colour::star_decompression(&p, &wild).is_err());
    }
}

#[test]
fn acyclic_hessian_values_equal_dense() {
    use ferrax_transforms::sparse::compress::hessian_plan_acyclic;
    let n = 13;
    let g = graph_of(rosenbrock, n);
    let dense = hessian_graph(&g, 1, &[0]).unwrap();
    for o in ORDERINGS {
        let plan = hessian_plan_acyclic(&g, 1, 0, o).unwrap();
        // A path: two colours instead of the star colouring's three.
        assert_eq!(plan.colouring.num_colours, 2, "{o:?}");
        let sub = plan.substitution.as_ref().unwrap();
        for x in inputs(n) {
            let b = ferrax_ir::interp::eval(&plan.graph, &[Array::from(x.clone())]).unwrap();
            let vals = sub.apply(&b[0].to_f64_vec()).unwrap();
            let d = dense_at(&dense, &x);
            let mut k = 0;
            for r in 0..n {
                for &c in plan.pattern.row(r) {
                    let want = d[r * n + c];
                    assert!((vals[k] - want).abs() <= 1e-10 * want.abs().max(1.0));
                    k += 1;
                }
            }
        }
    }
}

#[test]
fn malformed_patterns_and_colourings_are_errors_not_panics() {
    // Every broken CSR invariant is refused by the constructor.
    assert!(Pattern::from_csr(2, 3, vec![0, 1], vec![0]).is_err()); // too few row pointers
    assert!(Pattern::from_csr(1, 3, vec![1, 1], vec![0]).is_err()); // not from 0
    assert!(Pattern::from_csr(1, 3, vec![0, 2], vec![0]).is_err()); // past nnz
    assert!(Pattern::from_csr(2, 3, vec![0, 2, 1], vec![0, 1]).is_err()); // decreasing
    assert!(Pattern::from_csr(1, 3, vec![0, 2], vec![1, 1]).is_err()); // repeated column
    assert!(Pattern::from_csr(1, 3, vec![0, 1], vec![3]).is_err()); // column past ncols
    assert!(Pattern::from_rows(2, &[vec![1, 0]]).is_err()); // unsorted row
    let p = Pattern::from_csr(2, 3, vec![0, 2, 3], vec![0, 2, 1]).unwrap();
    assert_eq!((p.nrows(), p.ncols(), p.nnz()), (2, 3, 3));
    assert_eq!(p.row(1), [1]);
    assert!(p.row(2).is_empty() && p.row(usize::MAX).is_empty());
    // Colourings that do not fit the pattern are errors (or invalid), never out-of-range reads.
    let short = Colouring {
        colours: vec![0, 1],
        num_colours: 2,
    };
    let out_of_range = Colouring {
        colours: vec![0, 1, 5],
        num_colours: 2,
    };
    assert!(!colour::is_valid_column_colouring(&p, &short));
    assert!(colour::column_decompression(&p, &short).is_err());
    assert!(colour::column_decompression(&p, &out_of_range).is_err());
    assert!(colour::row_decompression(
        &p,
        &Colouring {
            colours: vec![0],
            num_colours: 1
        }
    )
    .is_err());
    let good = colour::colour_columns(&p, Ordering::Natural);
    assert!(colour::is_valid_column_colouring(&p, &good));
    assert_eq!(colour::column_decompression(&p, &good).unwrap().len(), 3);
    let square = Pattern::from_rows(3, &[vec![0, 1], vec![0, 1, 2], vec![1, 2]]).unwrap();
    assert!(!colour::is_valid_star_colouring(&square, &short));
    assert!(colour::star_decompression(&square, &short).is_err());
}

/// The entries of `dense` (a Jacobian graph) that take more than one value over `inputs`.
fn entries_that_vary(dense: &Graph, p: &Pattern, inputs: &[Vec<f64>]) -> Vec<bool> {
    let values: Vec<Vec<f64>> = inputs.iter().map(|x| dense_at(dense, x)).collect();
    let mut out = Vec::with_capacity(p.nnz());
    for r in 0..p.nrows() {
        for &c in p.row(r) {
            let at = r * p.ncols() + c;
            out.push(
                values
                    .iter()
                    .any(|v| v[at].to_bits() != values[0][at].to_bits()),
            );
        }
    }
    out
}

/// Which Jacobian entries are constant: on functions built from linear moves and sums and
/// genuinely nonlinear ops, the entries the analysis calls varying are exactly those that
/// take different values at random inputs; where a nonlinear op hides behind a linear
/// result (`0 · exp(x)`, `x·x − x·x`, a product with another argument, a select on the
/// input, a gather at an index computed from it), the entries are varying, conservatively.
#[test]
fn varying_entries_are_exact_on_linear_and_nonlinear_ops() {
    let n = 7;
    let m = Array::from_f64(vec![3, n], random(3 * n, 9)).unwrap();
    let mixed = move |x: Tensor| {
        let a = x.slice_axis(0, 1, n) * 3.0 - x.slice_axis(0, 0, n - 1);
        let b = x.rev(&[0]) + 2.0 * x.clone() * x.slice_axis(0, 0, 1).sin();
        let c = x.cumsum(0) / 4.0 - x.pad(&[2], &[0], &[0], 1.5).slice_axis(0, 0, n);
        let d = Tensor::constant(m.clone()).matmul(&x) + x.slice_axis(0, 0, 3).exp();
        let e = (x.clone() * x.slice_axis(0, 0, 1)).sum_all().reshape(&[1]) - x.sum_all();
        ferrax_ir::concatenate(
            &[
                a,
                b,
                c,
                d,
                e,
                x.clone().astype(DType::F32).astype(DType::F64),
            ],
            0,
        )
    };
    let g = graph_of(mixed, n);
    let (p, varying) = ferrax_transforms::sparse::pattern::jacobian_pattern_varying(&g, 1).unwrap();
    assert_eq!(p, jacobian_pattern(&g, 1).unwrap());
    let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
    assert_eq!(varying, entries_that_vary(&dense, &p, &inputs(n)));
    assert!(varying.iter().any(|&v| v) && varying.iter().any(|&v| !v));

    // Linear-looking results of nonlinear ops: every entry varies.
    let hidden: [fn(Tensor) -> Tensor; 5] = [
        |x| 0.0 * x.exp() + x.clone(),
        |x| x.clone() * x.clone() - x.clone() * x.clone() + x,
        |x| ferrax_ir::where_(&x.gt(0.0), x.clone(), 2.0 * x.clone()),
        |x| x.take(&x.argmax(0).reshape(&[1]), 0) + x.slice_axis(0, 0, 1),
        |x| x.clone() / x.sum_all() * 0.0 + x,
    ];
    for (k, f) in hidden.into_iter().enumerate() {
        let g = graph_of(f, n);
        let (p, varying) =
            ferrax_transforms::sparse::pattern::jacobian_pattern_varying(&g, 1).unwrap();
        for r in 0..p.nrows() {
            let lo = p.row_ptr()[r];
            for (e, &c) in p.row(r).iter().enumerate() {
                // `x` itself is added last in the first two and the last: its diagonal stays
                // varying because the same element also comes through the nonlinear op.
                assert!(
                    varying[lo + e],
                    "function {k}: entry ({r}, {c}) called constant"
                );
            }
        }
    }

    // A product with another argument (not differentiated) varies with it: `p · x` with
    // respect to `x` alone, while `2 · x` does not.
    let s = ferrax_ir::function(|x: Tensor, p: Tensor| {
        ferrax_ir::concatenate(&[p * x.clone(), 2.0 * x], 0)
    })
    .specialize(&[Type::new(DType::F64, &[n]), Type::new(DType::F64, &[n])])
    .unwrap();
    let (p, varying) =
        ferrax_transforms::sparse::pattern::jacobian_pattern_varying(&s.graph, 1).unwrap();
    assert_eq!((p.nrows(), p.ncols(), p.nnz()), (2 * n, n, 2 * n));
    assert_eq!(varying, (0..2 * n).map(|e| e < n).collect::<Vec<_>>());
}

/// Colourings of the varying entries are valid and use fewer colours than the whole
/// pattern's on a coupled stencil whose couplings are constant; the plan computes the
/// constant entries once and its values equal the dense Jacobian.
#[test]
fn constant_entries_need_fewer_colours_and_equal_dense() {
    let n = 24;
    let stencil = |x: Tensor| {
        let n = x.shape()[0];
        let w = x.pad(&[2], &[2], &[0], 0.0);
        let lap = w.slice_axis(0, 0, n) + w.slice_axis(0, 4, n + 4) - 2.0 * x.clone()
            + w.slice_axis(0, 1, n + 1) * 0.5
            - w.slice_axis(0, 3, n + 3);
        lap + x.clone() * x.clone() * x.rev(&[0])
    };
    let g = graph_of(stencil, n);
    let (p, varying) = ferrax_transforms::sparse::pattern::jacobian_pattern_varying(&g, 1).unwrap();
    for o in ORDERINGS {
        let c = colour::colour_columns_varying(&p, &varying, o).unwrap();
        assert!(
            colour::is_valid_varying_colouring(&p, &varying, &c),
            "{o:?}"
        );
        let full = colour_columns(&p, o);
        assert!(c.num_colours < full.num_colours, "{o:?}: {c:?} {full:?}");
        assert!(!colour::is_valid_varying_colouring(
            &p,
            &varying,
            &Colouring {
                colours: vec![0; n],
                num_colours: 1
            }
        ));
    }
    assert!(colour::colour_columns_varying(&p, &varying[1..], Ordering::Natural).is_err());
    let plan = jacobian_plan(&g, 1, 0, Ordering::SmallestLast).unwrap();
    assert!(plan.constant_entries > 0);
    let dense = jacfwd_graph(&g, 1, &[0]).unwrap();
    for x in inputs(n) {
        let d = dense_at(&dense, &x);
        let vals = ferrax_ir::interp::eval(&plan.graph, &[Array::from(x)]).unwrap()[0].to_f64_vec();
        let mut k = 0;
        for r in 0..p.nrows() {
            for &c in p.row(r) {
                assert_eq!(vals[k].to_bits(), d[r * n + c].to_bits(), "({r}, {c})");
                k += 1;
            }
        }
    }
}
