//! Stored members: a graph output whose users all lie in one elementwise group is computed in
//! that group's loop and stored there besides the root (see the JIT's `fuse.rs`). An
//! Adam-style update (new moments as outputs that the parameter update reads) against the
//! interpreter, bit for bit in Precise mode and within a tolerance in the default mode, in f32
//! and f64, on the parallel path, odd row lengths (vector tails), a single column, empty
//! tensors, and inputs with ±0, ±∞ and NaN; and a value that a matrix product reads from memory,
//! computed and stored by the loop of the reduction that also sums it. Outputs that must keep a
//! loop of their own (another user outside the group, a remapped user, another dtype) are
//! checked as well.
//!
//! Everything runs in one test, because the assertions on the process-wide `stored_members`
//! counter would race with compilations in concurrent tests.

mod common;

use common::{adam, adam_args, adam_types, array, check_with, same_bits, Rng};
use ferrax_ir::{interp, trace, DType, Graph, Tensor, Type};
use ferrax_jit::{compile, stats, JitOptions, MathMode};

/// Traces `f` over parameters of `types` into a graph.
fn graph(f: impl Fn(&[Tensor]) -> Vec<Tensor> + Send + Sync + 'static, types: &[Type]) -> Graph {
    (*trace(f, types).expect("trace").graph().expect("graph")).clone()
}

/// Compiles `g` in Precise mode, checks it against the interpreter bit for bit and the
/// default mode within `tol`, and returns how many members its compilation stored.
fn check_stored(g: &Graph, args: &[ferrax_ir::Array], tol: f64) -> u64 {
    let before = stats().stored_members;
    let precise = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let f = compile(g, &precise).expect("compile");
    let stored = stats().stored_members - before;
    let want = interp::eval(g, args).expect("interpreter");
    let got = f.call(args).expect("call");
    for (k, (w, o)) in want.iter().zip(&got).enumerate() {
        assert!(same_bits(w, o), "output {k}: interpreter {w}, jit {o}");
    }
    check_with(g, args, Some(tol));
    stored
}

#[test]
fn stored_members_match_the_interpreter() {
    let mut rng = Rng(17);
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
        // Parallel with an odd row, one long row, a column, a small block and empty tensors.
        for dims in [
            vec![300, 257],
            vec![1, 70_001],
            vec![9, 1],
            vec![3, 5],
            vec![0, 4],
        ] {
            let empty = dims.iter().product::<usize>() == 0;
            let g = graph(
                |xs| {
                    let [p, m, v] = adam(xs);
                    vec![p, m, v]
                },
                &adam_types(dtype, &dims),
            );
            for specials in [false, true] {
                let stored = check_stored(&g, &adam_args(&mut rng, dtype, &dims, specials), tol);
                assert!(
                    stored == 2 || empty,
                    "{dtype} {dims:?}: {stored} stored members, want the two moments"
                );
            }
            // An output listed twice, and the moments before the parameters.
            let g = graph(
                |xs| {
                    let [p, m, v] = adam(xs);
                    vec![m.clone(), v, p, m]
                },
                &adam_types(dtype, &dims),
            );
            let stored = check_stored(&g, &adam_args(&mut rng, dtype, &dims, true), tol);
            assert!(stored == 2 || empty, "{dtype} {dims:?}: {stored} stored");
        }
        // A network's backward pattern: `d = (1 − t²)·g`, read from memory by a product and
        // summed over rows (a kept inner dimension) or columns (a reduced one, in vectors
        // folded at the row's end only in fast mode) by a reduction whose loop stores it.
        for (rows, cols) in [(200, 32), (129, 257), (3000, 30), (5, 3)] {
            for axis in [0, 1] {
                let g = graph(
                    move |xs| {
                        let (t, g, w) = (&xs[0], &xs[1], &xs[2]);
                        let d = (1.0 - t * t) * g;
                        let s = d.sum(&[axis]);
                        vec![d.matmul(w), s]
                    },
                    &[
                        Type::new(dtype, &[rows, cols]),
                        Type::new(dtype, &[rows, cols]),
                        Type::new(dtype, &[cols, 4]),
                    ],
                );
                let a = vec![
                    array(&mut rng, dtype, &[rows, cols], -1.0, 1.0, true),
                    array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, true),
                    array(&mut rng, dtype, &[cols, 4], -1.0, 1.0, false),
                ];
                // The product's summation order differs from the interpreter's when it runs
                // as a GEMM, so its output is compared within a tolerance; the sum is exact.
                let before = stats().stored_members;
                let f = compile(
                    &g,
                    &JitOptions {
                        math: MathMode::Precise,
                        ..JitOptions::default()
                    },
                )
                .expect("compile");
                let stored = stats().stored_members - before;
                assert_eq!(
                    stored, 1,
                    "{dtype} [{rows},{cols}] axis {axis}: d is stored"
                );
                let want = interp::eval(&g, &a).expect("interpreter");
                let got = f.call(&a).expect("call");
                assert!(
                    common::close(&want[0], &got[0], tol * 100.0),
                    "{dtype} [{rows},{cols}] axis {axis}: product"
                );
                assert!(
                    same_bits(&want[1], &got[1]),
                    "{dtype} [{rows},{cols}] axis {axis}: sum {} vs {}",
                    want[1],
                    got[1]
                );
                check_with(&g, &a, Some(tol * 100.0));
            }
        }
        let dims = [67, 33];
        // `m'` also feeds a reduction: it keeps its loop; `v'` is still stored.
        let g = graph(
            |xs| {
                let [p, m, v] = adam(xs);
                let s = m.sum(&[0]);
                vec![p, m, v, s]
            },
            &adam_types(dtype, &dims),
        );
        let stored = check_stored(&g, &adam_args(&mut rng, dtype, &dims, true), tol);
        assert_eq!(stored, 1, "{dtype}: only v' is stored");
        // A transposed user reads `m'` at other indices: not stored.
        let g = graph(
            |xs| {
                let [p, m, _] = adam(xs);
                let t = m.transpose(&[1, 0]) * 2.0;
                vec![p, m, t]
            },
            &adam_types(dtype, &dims),
        );
        let stored = check_stored(&g, &adam_args(&mut rng, dtype, &dims, true), tol);
        assert_eq!(stored, 0, "{dtype}: a remapped user keeps m' in memory");
        // An output of another dtype than its group's root (a comparison's bool) is not
        // stored; the float output it feeds through a select still is the root.
        let g = graph(
            |xs| {
                let [p, m, _] = adam(xs);
                let pos = m.gt(m.zeros_like());
                vec![pos.select(&p, &m), pos]
            },
            &adam_types(dtype, &dims),
        );
        let stored = check_stored(&g, &adam_args(&mut rng, dtype, &dims, true), tol);
        assert_eq!(stored, 0, "{dtype}: a bool output keeps its loop");
    }
}
