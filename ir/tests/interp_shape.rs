//! The reference interpreter on the structural primitives: shape ops, reductions,
//! `dot_general` and the indexing ops, against hand-computed arrays and naive loops, including
//! rank 0 and zero-size dimensions.

use ferrax_ir::ops::{DotGeneral, IndexOp, ReduceOp, ShapeOp};
use ferrax_ir::{Array, DType, Dims, Op, Shape, Type};

/// Evaluates a single-result op, failing the test on an error.
fn run(op: Op, args: &[&Array]) -> Array {
    let mut out = op
        .eval(args)
        .unwrap_or_else(|e| panic!("{op:?} failed: {e}"));
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// A parameter list.
fn d(x: &[usize]) -> Dims {
    Dims::from_slice(x)
}

/// An f64 array of the given shape holding 0, 1, 2, ... in row-major order.
fn iota(dims: &[usize]) -> Array {
    let n = dims.iter().product::<usize>();
    Array::from_f64(dims, (0..n).map(|i| i as f64).collect()).unwrap()
}

/// An f64 array from a shape and elements.
fn f(dims: &[usize], v: &[f64]) -> Array {
    Array::from_f64(dims, v.to_vec()).unwrap()
}

/// An i32 array from a shape and elements.
fn i(dims: &[usize], v: &[i32]) -> Array {
    Array::from_i32(dims, v.to_vec()).unwrap()
}

/// An i32 scalar.
fn s(v: i32) -> Array {
    Array::from(v)
}

/// Row-major offset of a multi-index.
fn offset(dims: &[usize], idx: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&k, &n)| acc * n + k)
}

/// Every multi-index of `dims` in row-major order.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &n in dims {
        out = out
            .into_iter()
            .flat_map(|p| (0..n).map(move |k| [p.clone(), vec![k]].concat()))
            .collect();
    }
    out
}

#[test]
fn broadcast_in_dim() {
    let bcast = |shape: &[usize], dims: &[usize]| {
        Op::Shape(ShapeOp::BroadcastInDim {
            shape: Shape::new(shape),
            dims: d(dims).into_boxed_slice(),
        })
    };
    let x = f(&[3], &[1.0, 2.0, 3.0]);
    assert_eq!(
        run(bcast(&[2, 3], &[1]), &[&x]),
        f(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    );
    assert_eq!(
        run(bcast(&[3, 2], &[0]), &[&x]),
        f(&[3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    );
    // A size-1 operand dimension is repeated.
    let row = f(&[1, 3], &[1.0, 2.0, 3.0]);
    assert_eq!(
        run(bcast(&[2, 3], &[0, 1]), &[&row]),
        f(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    );
    let col = i(&[2, 1], &[5, 6]);
    assert_eq!(
        run(bcast(&[2, 2, 3], &[0, 2]), &[&col]).as_i32().unwrap(),
        &[5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6]
    );
    // Scalars, and targets with zero-size dimensions.
    assert_eq!(
        run(bcast(&[2, 2], &[]), &[&Array::from(true)]),
        Array::from([[true, true], [true, true]])
    );
    assert_eq!(
        run(bcast(&[], &[]), &[&Array::from(4.0f32)]),
        Array::from(4.0f32)
    );
    let e = run(bcast(&[0, 3], &[1]), &[&x]);
    assert_eq!(e.ty(), Type::new(DType::F64, &[0, 3]));
    // Against a naive loop in three dimensions.
    let x = iota(&[4, 1]);
    let got = run(bcast(&[2, 4, 3], &[1, 2]), &[&x]);
    for idx in indices(&[2, 4, 3]) {
        assert_eq!(got.to_f64_vec()[offset(&[2, 4, 3], &idx)], idx[1] as f64);
    }
}

#[test]
fn reshape_keeps_row_major_order() {
    let x = iota(&[2, 3]);
    let r = run(
        Op::Shape(ShapeOp::Reshape {
            shape: [3, 2].into(),
        }),
        &[&x],
    );
    assert_eq!(r, iota(&[3, 2]));
    let one = run(
        Op::Shape(ShapeOp::Reshape {
            shape: Shape::scalar(),
        }),
        &[&f(&[1, 1], &[7.0])],
    );
    assert_eq!(one, Array::from(7.0f64));
    let e = run(
        Op::Shape(ShapeOp::Reshape {
            shape: [3, 0].into(),
        }),
        &[&iota(&[0, 5])],
    );
    assert_eq!(e.dims(), &[3, 0]);
}

#[test]
fn transpose_against_naive_loop() {
    let t = |perm: &[usize]| {
        Op::Shape(ShapeOp::Transpose {
            perm: d(perm).into_boxed_slice(),
        })
    };
    let x = iota(&[2, 3]);
    assert_eq!(
        run(t(&[1, 0]), &[&x]),
        f(&[3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
    );
    let x = iota(&[2, 3, 4]);
    for perm in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0], [0, 2, 1]] {
        let got = run(t(&perm), &[&x]);
        let od: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
        assert_eq!(got.dims(), &od[..]);
        for idx in indices(&od) {
            // Result index `idx` reads operand index `src` with src[perm[k]] = idx[k].
            let mut src = [0; 3];
            for k in 0..3 {
                src[perm[k]] = idx[k];
            }
            assert_eq!(
                got.to_f64_vec()[offset(&od, &idx)],
                offset(&[2, 3, 4], &src) as f64
            );
        }
    }
    assert_eq!(run(t(&[]), &[&Array::from(3i32)]), Array::from(3i32));
    assert_eq!(run(t(&[1, 0]), &[&iota(&[0, 2])]).dims(), &[2, 0]);
}

#[test]
fn slice_windows() {
    let sl = |start: &[usize], limit: &[usize], stride: &[usize]| {
        Op::Shape(ShapeOp::Slice {
            start: d(start).into_boxed_slice(),
            limit: d(limit).into_boxed_slice(),
            stride: d(stride).into_boxed_slice(),
        })
    };
    let x = iota(&[10]);
    assert_eq!(run(sl(&[1], &[8], &[3]), &[&x]), f(&[3], &[1.0, 4.0, 7.0]));
    assert_eq!(run(sl(&[2], &[5], &[1]), &[&x]), f(&[3], &[2.0, 3.0, 4.0]));
    assert_eq!(run(sl(&[4], &[4], &[1]), &[&x]).dims(), &[0]);
    let m = iota(&[3, 4]);
    assert_eq!(
        run(sl(&[1, 0], &[3, 4], &[1, 2]), &[&m]),
        f(&[2, 2], &[4.0, 6.0, 8.0, 10.0])
    );
    assert_eq!(
        run(sl(&[], &[], &[]), &[&Array::from(1.5f64)]),
        Array::from(1.5f64)
    );
    let e = run(sl(&[0, 1], &[0, 3], &[1, 1]), &[&iota(&[0, 3])]);
    assert_eq!(e.dims(), &[0, 2]);
}

#[test]
fn pad_low_high_interior() {
    let pad = |lo: &[usize], hi: &[usize], interior: &[usize]| {
        Op::Shape(ShapeOp::Pad {
            lo: d(lo).into_boxed_slice(),
            hi: d(hi).into_boxed_slice(),
            interior: d(interior).into_boxed_slice(),
        })
    };
    let x = f(&[3], &[1.0, 2.0, 3.0]);
    let z = Array::from(0.0f64);
    assert_eq!(
        run(pad(&[1], &[2], &[1]), &[&x, &z]),
        f(&[8], &[0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 0.0])
    );
    assert_eq!(run(pad(&[0], &[0], &[0]), &[&x, &z]), x);
    let m = i(&[2, 2], &[1, 2, 3, 4]);
    let got = run(pad(&[1, 0], &[0, 1], &[0, 1]), &[&m, &s(-1)]);
    assert_eq!(
        got,
        i(&[3, 4], &[-1, -1, -1, -1, 1, -1, 2, -1, 3, -1, 4, -1])
    );
    // An empty operand becomes all padding; interior padding of an empty dimension adds nothing.
    let e = f(&[0], &[]);
    assert_eq!(
        run(pad(&[2], &[1], &[5]), &[&e, &Array::from(9.0f64)]),
        f(&[3], &[9.0, 9.0, 9.0])
    );
    let e2 = run(pad(&[1, 0], &[0, 0], &[0, 0]), &[&iota(&[0, 2]), &z]);
    assert_eq!(e2, f(&[1, 2], &[0.0, 0.0]));
    assert_eq!(
        run(pad(&[], &[], &[]), &[&Array::from(2.0f64), &z]),
        Array::from(2.0f64)
    );
}

#[test]
fn concatenate_along_each_axis() {
    let cat = |axis: usize| Op::Shape(ShapeOp::Concatenate { axis });
    let a = iota(&[2, 2]);
    let b = f(&[1, 2], &[10.0, 11.0]);
    let c = f(&[2, 1], &[20.0, 21.0]);
    assert_eq!(
        run(cat(0), &[&a, &b]),
        f(&[3, 2], &[0.0, 1.0, 2.0, 3.0, 10.0, 11.0])
    );
    assert_eq!(
        run(cat(1), &[&a, &c, &a]),
        f(
            &[2, 5],
            &[0.0, 1.0, 20.0, 0.0, 1.0, 2.0, 3.0, 21.0, 2.0, 3.0]
        )
    );
    assert_eq!(run(cat(0), &[&a]), a);
    let empty = iota(&[0, 2]);
    assert_eq!(run(cat(0), &[&empty, &b, &empty]), b);
    let bools = run(
        cat(0),
        &[&Array::from(vec![true]), &Array::from(vec![false, true])],
    );
    assert_eq!(bools, Array::from(vec![true, false, true]));
}

#[test]
fn rev_axes() {
    let rev = |axes: &[usize]| {
        Op::Shape(ShapeOp::Rev {
            axes: d(axes).into_boxed_slice(),
        })
    };
    assert_eq!(run(rev(&[0]), &[&iota(&[3])]), f(&[3], &[2.0, 1.0, 0.0]));
    let m = iota(&[2, 3]);
    assert_eq!(
        run(rev(&[0]), &[&m]),
        f(&[2, 3], &[3.0, 4.0, 5.0, 0.0, 1.0, 2.0])
    );
    assert_eq!(
        run(rev(&[1]), &[&m]),
        f(&[2, 3], &[2.0, 1.0, 0.0, 5.0, 4.0, 3.0])
    );
    assert_eq!(
        run(rev(&[1, 0]), &[&m]),
        f(&[2, 3], &[5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    );
    assert_eq!(run(rev(&[]), &[&m]), m);
    assert_eq!(run(rev(&[]), &[&Array::from(1i32)]), Array::from(1i32));
    assert_eq!(run(rev(&[0, 1]), &[&iota(&[0, 4])]).dims(), &[0, 4]);
}

#[test]
fn reductions_over_axis_sets() {
    let x = iota(&[2, 3]);
    let sum = |axes: &[usize]| Op::Reduce(ReduceOp::Sum { axes: d(axes) });
    assert_eq!(run(sum(&[0]), &[&x]), f(&[3], &[3.0, 5.0, 7.0]));
    assert_eq!(run(sum(&[1]), &[&x]), f(&[2], &[3.0, 12.0]));
    assert_eq!(run(sum(&[0, 1]), &[&x]), Array::from(15.0f64));
    assert_eq!(run(sum(&[]), &[&x]), x);
    assert_eq!(run(sum(&[]), &[&Array::from(2.5f32)]), Array::from(2.5f32));
    let mx = run(Op::Reduce(ReduceOp::Max { axes: d(&[1]) }), &[&x]);
    assert_eq!(mx, f(&[2], &[2.0, 5.0]));
    let mn = run(Op::Reduce(ReduceOp::Min { axes: d(&[0]) }), &[&x]);
    assert_eq!(mn, f(&[3], &[0.0, 1.0, 2.0]));
    let pr = run(
        Op::Reduce(ReduceOp::Prod { axes: d(&[1]) }),
        &[&f(&[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.5, 4.0])],
    );
    assert_eq!(pr, f(&[2], &[6.0, -2.0]));
    // Three dimensions against a naive loop, summing in row-major order.
    let x = Array::from_f64(
        [3, 4, 5],
        (0..60).map(|k| ((k * 37) % 11) as f64 - 5.0).collect(),
    )
    .unwrap();
    let got = run(sum(&[0, 2]), &[&x]);
    let v = x.to_f64_vec();
    for j in 0..4 {
        let mut acc = 0.0;
        for a in 0..3 {
            for c in 0..5 {
                acc += v[offset(&[3, 4, 5], &[a, j, c])];
            }
        }
        assert_eq!(got.to_f64_vec()[j], acc);
    }
    let got = run(Op::Reduce(ReduceOp::Max { axes: d(&[1, 2]) }), &[&x]);
    for a in 0..3 {
        let want = (0..20)
            .map(|k| v[a * 20 + k])
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(got.to_f64_vec()[a], want);
    }
}

#[test]
fn empty_reductions_give_identities() {
    let e = iota(&[0, 3]);
    let red = |op: ReduceOp, x: &Array| run(Op::Reduce(op), &[x]);
    assert_eq!(red(ReduceOp::Sum { axes: d(&[0]) }, &e), f(&[3], &[0.0; 3]));
    assert_eq!(
        red(ReduceOp::Prod { axes: d(&[0]) }, &e),
        f(&[3], &[1.0; 3])
    );
    assert_eq!(
        red(ReduceOp::Max { axes: d(&[0]) }, &e),
        f(&[3], &[f64::NEG_INFINITY; 3])
    );
    assert_eq!(
        red(ReduceOp::Min { axes: d(&[0, 1]) }, &e),
        Array::from(f64::INFINITY)
    );
    assert_eq!(red(ReduceOp::Sum { axes: d(&[1]) }, &e).dims(), &[0]);
    let ei = i(&[2, 0], &[]);
    assert_eq!(
        red(ReduceOp::Max { axes: d(&[1]) }, &ei),
        i(&[2], &[i32::MIN; 2])
    );
    assert_eq!(
        red(ReduceOp::Min { axes: d(&[1]) }, &ei),
        i(&[2], &[i32::MAX; 2])
    );
    assert_eq!(red(ReduceOp::Prod { axes: d(&[1]) }, &ei), i(&[2], &[1; 2]));
    let ef = Array::from_f32([0], vec![]).unwrap();
    assert_eq!(
        red(ReduceOp::Sum { axes: d(&[0]) }, &ef),
        Array::from(0.0f32)
    );
}

#[test]
fn reductions_propagate_nan_and_wrap() {
    let x = f(&[2, 3], &[1.0, f64::NAN, 3.0, -1.0, -2.0, f64::INFINITY]);
    for op in [
        ReduceOp::Max { axes: d(&[1]) },
        ReduceOp::Min { axes: d(&[1]) },
    ] {
        let got = run(Op::Reduce(op.clone()), &[&x]).to_f64_vec();
        assert!(got[0].is_nan(), "{op:?}: {got:?}");
        assert!(!got[1].is_nan(), "{op:?}: {got:?}");
    }
    let s = run(
        Op::Reduce(ReduceOp::Sum { axes: d(&[0]) }),
        &[&i(&[2], &[i32::MAX, 2])],
    );
    assert_eq!(s, Array::from(i32::MIN + 1));
    let p = run(
        Op::Reduce(ReduceOp::Prod { axes: d(&[0]) }),
        &[&i(&[2], &[65536, 65536])],
    );
    assert_eq!(p, Array::from(0i32));
    let z = run(
        Op::Reduce(ReduceOp::Max { axes: d(&[0]) }),
        &[&f(&[2], &[-0.0, 0.0])],
    );
    assert!(z.to_scalar().unwrap().is_sign_positive());
}

#[test]
fn argmax_argmin_first_occurrence_and_nan() {
    let am = |axis: usize, x: &Array| run(Op::Reduce(ReduceOp::ArgMax { axis }), &[x]);
    let an = |axis: usize, x: &Array| run(Op::Reduce(ReduceOp::ArgMin { axis }), &[x]);
    let x = f(&[5], &[1.0, 3.0, 3.0, 2.0, 1.0]);
    assert_eq!(am(0, &x), Array::from(1i32));
    assert_eq!(an(0, &x), Array::from(0i32));
    let x = f(&[5], &[1.0, f64::NAN, 5.0, f64::NAN, -9.0]);
    assert_eq!(am(0, &x), Array::from(1i32));
    assert_eq!(an(0, &x), Array::from(1i32));
    let x = f(&[3], &[f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY]);
    assert_eq!(am(0, &x), Array::from(2i32));
    assert_eq!(an(0, &x), Array::from(0i32));
    let m = i(&[2, 3], &[4, 9, 9, 7, -1, 7]);
    assert_eq!(am(0, &m), i(&[3], &[1, 0, 0]));
    assert_eq!(am(1, &m), i(&[2], &[1, 0]));
    assert_eq!(an(1, &m), i(&[2], &[0, 1]));
    let x32 = Array::from_f32([2, 2], vec![0.5, -0.5, f32::NAN, 1.0]).unwrap();
    assert_eq!(am(1, &x32), i(&[2], &[0, 0]));
    assert_eq!(an(0, &x32), i(&[2], &[1, 0]));
    // Zero-size other dimensions give an empty result.
    assert_eq!(am(1, &iota(&[0, 3])).ty(), Type::new(DType::I32, &[0]));
}

/// Naive batched matmul: `a` is [b, m, k], `c` is [b, k, n].
fn naive_bmm(a: &[f64], c: &[f64], b: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; b * m * n];
    for bi in 0..b {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for t in 0..k {
                    acc += a[(bi * m + i) * k + t] * c[(bi * k + t) * n + j];
                }
                out[(bi * m + i) * n + j] = acc;
            }
        }
    }
    out
}

/// Deterministic non-trivial test values.
fn vals(dims: &[usize], seed: usize) -> Array {
    let n = dims.iter().product::<usize>();
    Array::from_f64(
        dims,
        (0..n)
            .map(|k| (((k + seed) * 7919) % 23) as f64 / 4.0 - 2.5)
            .collect(),
    )
    .unwrap()
}

/// A `dot_general` op.
fn dot(lc: &[usize], rc: &[usize], lb: &[usize], rb: &[usize]) -> Op {
    Op::Dot(Box::new(DotGeneral {
        lhs_contract: d(lc),
        rhs_contract: d(rc),
        lhs_batch: d(lb),
        rhs_batch: d(rb),
    }))
}

#[test]
fn dot_general_matmul_matvec_dot_batched() {
    let a = vals(&[2, 3], 1);
    let b = vals(&[3, 4], 2);
    let got = run(dot(&[1], &[0], &[], &[]), &[&a, &b]);
    assert_eq!(got.dims(), &[2, 4]);
    assert_eq!(
        got.to_f64_vec(),
        naive_bmm(&a.to_f64_vec(), &b.to_f64_vec(), 1, 2, 3, 4)
    );
    // Matrix-vector and vector-vector products.
    let v = vals(&[4], 3);
    let got = run(dot(&[1], &[0], &[], &[]), &[&b, &v]);
    assert_eq!(got.dims(), &[3]);
    assert_eq!(
        got.to_f64_vec(),
        naive_bmm(&b.to_f64_vec(), &v.to_f64_vec(), 1, 3, 4, 1)
    );
    let w = vals(&[4], 4);
    let got = run(dot(&[0], &[0], &[], &[]), &[&v, &w]);
    let want = v
        .to_f64_vec()
        .iter()
        .zip(w.to_f64_vec())
        .fold(0.0, |acc, (x, y)| acc + x * y);
    assert_eq!(got, Array::from(want));
    // Batched matmul.
    let x = vals(&[2, 3, 4], 5);
    let y = vals(&[2, 4, 5], 6);
    let got = run(dot(&[2], &[1], &[0], &[0]), &[&x, &y]);
    assert_eq!(got.dims(), &[2, 3, 5]);
    assert_eq!(
        got.to_f64_vec(),
        naive_bmm(&x.to_f64_vec(), &y.to_f64_vec(), 2, 3, 4, 5)
    );
}

#[test]
fn dot_general_dimension_orders() {
    // aᵀ·b with a [3, 2] contracted on its first dimension.
    let a = vals(&[3, 2], 7);
    let b = vals(&[3, 4], 8);
    let got = run(dot(&[0], &[0], &[], &[]), &[&a, &b]);
    let at = run(
        Op::Shape(ShapeOp::Transpose {
            perm: Box::new([1, 0]),
        }),
        &[&a],
    );
    assert_eq!(
        got.to_f64_vec(),
        naive_bmm(&at.to_f64_vec(), &b.to_f64_vec(), 1, 2, 3, 4)
    );
    // Batch dimension last on the lhs, first on the rhs: output is [batch, lhs free, rhs free].
    let x = vals(&[3, 4, 2], 9); // [m, k, batch]
    let y = vals(&[2, 4, 5], 10); // [batch, k, n]
    let got = run(dot(&[1], &[1], &[2], &[0]), &[&x, &y]);
    assert_eq!(got.dims(), &[2, 3, 5]);
    let (xv, yv, gv) = (x.to_f64_vec(), y.to_f64_vec(), got.to_f64_vec());
    for bi in 0..2 {
        for m in 0..3 {
            for n in 0..5 {
                let mut acc = 0.0;
                for k in 0..4 {
                    acc +=
                        xv[offset(&[3, 4, 2], &[m, k, bi])] * yv[offset(&[2, 4, 5], &[bi, k, n])];
                }
                assert_eq!(gv[offset(&[2, 3, 5], &[bi, m, n])], acc);
            }
        }
    }
    // Two contracted dimensions, summed in row-major order of lhs_contract.
    let p = vals(&[2, 3], 11);
    let q = vals(&[3, 2], 12);
    let got = run(dot(&[0, 1], &[1, 0], &[], &[]), &[&p, &q]);
    let (pv, qv) = (p.to_f64_vec(), q.to_f64_vec());
    let mut acc = 0.0;
    for r in 0..2 {
        for c in 0..3 {
            acc += pv[r * 3 + c] * qv[c * 2 + r];
        }
    }
    assert_eq!(got, Array::from(acc));
    // Outer product: nothing contracted.
    let got = run(
        dot(&[], &[], &[], &[]),
        &[&f(&[2], &[1.0, 2.0]), &f(&[3], &[1.0, 10.0, 100.0])],
    );
    assert_eq!(got, f(&[2, 3], &[1.0, 10.0, 100.0, 2.0, 20.0, 200.0]));
}

#[test]
fn dot_general_i32_empty_and_f32() {
    let a = i(&[2, 2], &[i32::MAX, 1, 2, 3]);
    let b = i(&[2, 1], &[2, 5]);
    let got = run(dot(&[1], &[0], &[], &[]), &[&a, &b]);
    assert_eq!(
        got,
        i(&[2, 1], &[i32::MAX.wrapping_mul(2).wrapping_add(5), 19])
    );
    // An empty contraction gives zeros; empty free dimensions give an empty result.
    let got = run(dot(&[1], &[0], &[], &[]), &[&iota(&[2, 0]), &iota(&[0, 3])]);
    assert_eq!(got, f(&[2, 3], &[0.0; 6]));
    let got = run(dot(&[1], &[0], &[], &[]), &[&iota(&[0, 2]), &iota(&[2, 3])]);
    assert_eq!(got.dims(), &[0, 3]);
    let x = Array::from_f32([2], vec![1.5, -2.0]).unwrap();
    let got = run(dot(&[0], &[0], &[], &[]), &[&x, &x]);
    assert_eq!(got, Array::from(6.25f32));
}

#[test]
fn cumsum_forward_and_reverse() {
    let cs = |axis: usize, reverse: bool| Op::Index(IndexOp::Cumsum { axis, reverse });
    let x = iota(&[2, 3]);
    assert_eq!(
        run(cs(1, false), &[&x]),
        f(&[2, 3], &[0.0, 1.0, 3.0, 3.0, 7.0, 12.0])
    );
    assert_eq!(
        run(cs(1, true), &[&x]),
        f(&[2, 3], &[3.0, 3.0, 2.0, 12.0, 9.0, 5.0])
    );
    assert_eq!(
        run(cs(0, false), &[&x]),
        f(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 5.0, 7.0])
    );
    assert_eq!(
        run(cs(0, true), &[&x]),
        f(&[2, 3], &[3.0, 5.0, 7.0, 3.0, 4.0, 5.0])
    );
    assert_eq!(
        run(cs(0, false), &[&i(&[3], &[i32::MAX, 1, 1])]),
        i(&[3], &[i32::MAX, i32::MIN, i32::MIN + 1])
    );
    assert_eq!(run(cs(1, false), &[&iota(&[2, 0])]).dims(), &[2, 0]);
    assert_eq!(run(cs(0, true), &[&iota(&[0, 2])]).dims(), &[0, 2]);
    let nan = run(cs(0, false), &[&f(&[3], &[1.0, f64::NAN, 2.0])]).to_f64_vec();
    assert_eq!(nan[0], 1.0);
    assert!(nan[1].is_nan() && nan[2].is_nan());
}

#[test]
fn dynamic_slice_clamps_starts() {
    let ds = |sizes: &[usize]| Op::Index(IndexOp::DynamicSlice { sizes: d(sizes) });
    let x = iota(&[5]);
    assert_eq!(run(ds(&[2]), &[&x, &s(1)]), f(&[2], &[1.0, 2.0]));
    assert_eq!(run(ds(&[2]), &[&x, &s(10)]), f(&[2], &[3.0, 4.0]));
    assert_eq!(run(ds(&[2]), &[&x, &s(-5)]), f(&[2], &[0.0, 1.0]));
    assert_eq!(run(ds(&[2]), &[&x, &s(i32::MIN)]), f(&[2], &[0.0, 1.0]));
    assert_eq!(run(ds(&[0]), &[&x, &s(3)]).dims(), &[0]);
    let m = iota(&[3, 4]);
    assert_eq!(
        run(ds(&[2, 2]), &[&m, &s(1), &s(3)]),
        f(&[2, 2], &[6.0, 7.0, 10.0, 11.0])
    );
    assert_eq!(run(ds(&[]), &[&Array::from(8.0f64)]), Array::from(8.0f64));
}

#[test]
fn dynamic_update_slice_clamps_starts() {
    let dus = Op::Index(IndexOp::DynamicUpdateSlice);
    let x = iota(&[5]);
    let u = f(&[2], &[-1.0, -2.0]);
    assert_eq!(
        run(dus.clone(), &[&x, &u, &s(1)]),
        f(&[5], &[0.0, -1.0, -2.0, 3.0, 4.0])
    );
    assert_eq!(
        run(dus.clone(), &[&x, &u, &s(99)]),
        f(&[5], &[0.0, 1.0, 2.0, -1.0, -2.0])
    );
    assert_eq!(
        run(dus.clone(), &[&x, &u, &s(-3)]),
        f(&[5], &[-1.0, -2.0, 2.0, 3.0, 4.0])
    );
    let m = i(&[2, 3], &[0, 0, 0, 0, 0, 0]);
    let u = i(&[1, 2], &[7, 8]);
    assert_eq!(
        run(dus.clone(), &[&m, &u, &s(1), &s(2)]),
        i(&[2, 3], &[0, 0, 0, 0, 7, 8])
    );
    let e = f(&[0], &[]);
    assert_eq!(run(dus.clone(), &[&x, &e, &s(2)]), x);
    assert_eq!(
        run(dus, &[&Array::from(1.0f64), &Array::from(2.0f64)]),
        Array::from(2.0f64)
    );
}

#[test]
fn gather_rows_with_clamping() {
    let x = f(&[3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    let g = |x: &Array, idx: &Array| run(Op::Index(IndexOp::Gather(Default::default())), &[x, idx]);
    assert_eq!(
        g(&x, &i(&[2], &[2, 0])),
        f(&[2, 2], &[20.0, 21.0, 0.0, 1.0])
    );
    assert_eq!(
        g(&x, &i(&[3], &[-1, 5, 1])),
        f(&[3, 2], &[0.0, 1.0, 20.0, 21.0, 10.0, 11.0])
    );
    assert_eq!(g(&x, &s(1)), f(&[2], &[10.0, 11.0]));
    let got = g(&x, &i(&[2, 2], &[0, 1, 2, 2]));
    assert_eq!(got.dims(), &[2, 2, 2]);
    assert_eq!(
        got.to_f64_vec(),
        vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 20.0, 21.0]
    );
    let v = i(&[4], &[5, 6, 7, 8]);
    assert_eq!(g(&v, &i(&[3], &[3, 3, 0])), i(&[3], &[8, 8, 5]));
    assert_eq!(g(&x, &i(&[0], &[])).dims(), &[0, 2]);
    // With no rows to read, the result is zeros of the result shape.
    assert_eq!(
        g(&iota(&[0, 2]), &i(&[3], &[0, 1, -1])),
        f(&[3, 2], &[0.0; 6])
    );
}

#[test]
fn scatter_add_accumulates_and_is_the_transpose_of_gather() {
    let sa = |x: &Array, idx: &Array, u: &Array| {
        run(
            Op::Index(IndexOp::Scatter {
                at: Default::default(),
                combine: ferrax_ir::ops::Combine::Add,
            }),
            &[x, idx, u],
        )
    };
    let x = f(&[3, 2], &[1.0; 6]);
    let idx = i(&[3], &[0, 2, 0]);
    let u = f(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        sa(&x, &idx, &u),
        f(&[3, 2], &[7.0, 9.0, 1.0, 1.0, 4.0, 5.0])
    );
    let idx = i(&[2], &[-4, 17]);
    let u2 = f(&[2, 2], &[1.0, 1.0, 2.0, 2.0]);
    assert_eq!(
        sa(&x, &idx, &u2),
        f(&[3, 2], &[2.0, 2.0, 1.0, 1.0, 3.0, 3.0])
    );
    let v = i(&[2], &[i32::MAX, 0]);
    assert_eq!(
        sa(&v, &i(&[2], &[0, 0]), &i(&[2], &[1, 2])),
        i(&[2], &[i32::MIN + 2, 0])
    );
    assert_eq!(
        sa(&iota(&[0, 2]), &i(&[1], &[0]), &f(&[1, 2], &[1.0, 2.0])).dims(),
        &[0, 2]
    );
    // <gather(x, idx), u> == <x, scatter_add(0, idx, u)> for any x and u.
    let x = vals(&[4, 3], 13);
    let idx = i(&[2, 3], &[3, 0, 3, -2, 9, 1]);
    let u = vals(&[2, 3, 3], 14);
    let gx = run(Op::Index(IndexOp::Gather(Default::default())), &[&x, &idx]);
    let su = sa(&Array::zeros(&x.ty()).unwrap(), &idx, &u);
    let lhs: f64 = gx
        .to_f64_vec()
        .iter()
        .zip(u.to_f64_vec())
        .map(|(a, b)| a * b)
        .sum();
    let rhs: f64 = x
        .to_f64_vec()
        .iter()
        .zip(su.to_f64_vec())
        .map(|(a, b)| a * b)
        .sum();
    assert!(
        (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn gathers_and_scatters_along_an_axis_clip_or_fill() {
    use ferrax_ir::ops::{Bounds, Combine, Indexing};
    // x[r, c] = 10 r + c, shape [2, 3].
    let x = f(&[2, 3], &[0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
    let ix = |axis, along, bounds| Indexing {
        axis,
        along,
        bounds,
    };
    let g = |at: Indexing, idx: &Array| run(Op::Index(IndexOp::Gather(at)), &[&x, idx]);
    // take along axis 1: every row picks columns [2, -1 → 0 (clip), 7 → 2 (clip)].
    let idx = i(&[3], &[2, -1, 7]);
    assert_eq!(
        g(ix(1, false, Bounds::Clip), &idx),
        f(&[2, 3], &[2.0, 0.0, 2.0, 12.0, 10.0, 12.0])
    );
    // The same with fill: out-of-range positions read 0.
    assert_eq!(
        g(ix(1, false, Bounds::Fill), &idx),
        f(&[2, 3], &[2.0, 0.0, 0.0, 12.0, 0.0, 0.0])
    );
    // Along axis 1: row r picks its own columns.
    let idx = i(&[2, 2], &[1, i32::MIN, 0, 2]);
    assert_eq!(
        g(ix(1, true, Bounds::Fill), &idx),
        f(&[2, 2], &[1.0, 0.0, 10.0, 12.0])
    );
    assert_eq!(
        g(ix(1, true, Bounds::Clip), &idx),
        f(&[2, 2], &[1.0, 0.0, 10.0, 12.0])
    );
    // Along axis 0: column c picks its own row.
    let idx = i(&[1, 3], &[1, 0, i32::MAX]);
    assert_eq!(
        g(ix(0, true, Bounds::Clip), &idx),
        f(&[1, 3], &[10.0, 1.0, 12.0])
    );
    // Scatters: repeated indices combine in row-major order; fill drops out-of-range updates.
    let sc = |at: Indexing, combine, idx: &Array, u: &Array| {
        run(Op::Index(IndexOp::Scatter { at, combine }), &[&x, idx, u])
    };
    let idx = i(&[3], &[1, 1, 5]);
    let u = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let at = ix(1, false, Bounds::Fill);
    assert_eq!(
        sc(at, Combine::Set, &idx, &u),
        f(&[2, 3], &[0.0, 2.0, 2.0, 10.0, 5.0, 12.0])
    );
    assert_eq!(
        sc(at, Combine::Add, &idx, &u),
        f(&[2, 3], &[0.0, 4.0, 2.0, 10.0, 20.0, 12.0])
    );
    assert_eq!(
        sc(at, Combine::Mul, &idx, &u),
        f(&[2, 3], &[0.0, 2.0, 2.0, 10.0, 220.0, 12.0])
    );
    assert_eq!(
        sc(at, Combine::Max, &idx, &u),
        f(&[2, 3], &[0.0, 2.0, 2.0, 10.0, 11.0, 12.0])
    );
    assert_eq!(
        sc(at, Combine::Min, &idx, &u),
        f(&[2, 3], &[0.0, 1.0, 2.0, 10.0, 4.0, 12.0])
    );
    // With clip the out-of-range index 5 lands on the last column.
    assert_eq!(
        sc(ix(1, false, Bounds::Clip), Combine::Set, &idx, &u),
        f(&[2, 3], &[0.0, 2.0, 3.0, 10.0, 5.0, 6.0])
    );
}
