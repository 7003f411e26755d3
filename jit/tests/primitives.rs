//! Differential tests: every primitive, in every dtype it accepts, on edge shapes (rank 0,
//! zero-size and size-1 dimensions), JIT against the interpreter, bit for bit.

mod common;

use common::{array, check, check_with, Rng};
use ferrax_ir::ops::{
    BinaryOp, Bounds, Combine, CompareOp, ConvertOp, DotGeneral, IndexOp, Indexing, LiteralOp,
    ReduceOp, ShapeOp, UnaryOp,
};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Shape, Type};

const SHAPES: &[&[usize]] = &[&[], &[0], &[1], &[5], &[2, 3], &[3, 0, 2], &[1, 4, 1]];
const FLOATS: [DType; 2] = [DType::F32, DType::F64];

/// A graph applying `op` to parameters of `tys`.
fn graph(op: Op, tys: &[Type]) -> Graph {
    let mut b = Builder::new();
    let ps: Vec<_> = tys.iter().map(|t| b.param(t.clone())).collect();
    let r = b.push(op, &ps).expect("well-typed test op");
    b.finish(&r)
}

fn d(v: &[usize]) -> Dims {
    Dims::from_slice(v)
}

#[test]
fn unary_ops() {
    let mut rng = Rng(1);
    let mut ops: Vec<UnaryOp> = UnaryOp::ALL.to_vec();
    ops.extend([
        UnaryOp::IntegerPow(0),
        UnaryOp::IntegerPow(-3),
        UnaryOp::IntegerPow(7),
        UnaryOp::IntegerPow(1),
    ]);
    for op in ops {
        let mut dts = FLOATS.to_vec();
        if op.accepts_int() && !matches!(op, UnaryOp::IntegerPow(n) if n < 0) {
            dts.push(DType::I32);
        }
        for &dt in &dts {
            for dims in SHAPES {
                let ty = Type::new(dt, dims);
                let x = array(&mut rng, dt, dims, -3.0, 3.0, true);
                check(&graph(Op::Unary(op), &[ty]), &[x]);
            }
            // A wider range too (overflow, large arguments).
            let x = array(&mut rng, dt, &[16], -800.0, 800.0, false);
            check(&graph(Op::Unary(op), &[Type::new(dt, &[16])]), &[x]);
        }
    }
}

#[test]
fn binary_ops() {
    let mut rng = Rng(2);
    for op in BinaryOp::ALL {
        let mut dts = FLOATS.to_vec();
        if op.accepts_int() {
            dts.push(DType::I32);
        }
        for &dt in &dts {
            for dims in SHAPES {
                let ty = Type::new(dt, dims);
                let a = array(&mut rng, dt, dims, -4.0, 4.0, true);
                let b = array(&mut rng, dt, dims, -4.0, 4.0, true);
                check(&graph(Op::Binary(op), &[ty.clone(), ty]), &[a, b]);
            }
        }
    }
    // i32 corner cases: division by zero and MIN / -1.
    for op in [BinaryOp::Div, BinaryOp::Rem] {
        let a = Array::from(vec![i32::MIN, 7, -7, 0, i32::MAX, 5]);
        let b = Array::from(vec![-1, 0, 2, 0, -1, -3]);
        check(
            &graph(
                Op::Binary(op),
                &[Type::new(DType::I32, &[6]), Type::new(DType::I32, &[6])],
            ),
            &[a, b],
        );
    }
}

#[test]
fn compare_ops() {
    let mut rng = Rng(3);
    for op in CompareOp::ALL {
        for dt in DType::ALL {
            for dims in SHAPES {
                let ty = Type::new(dt, dims);
                let (tys, args) = match op {
                    CompareOp::And | CompareOp::Or | CompareOp::Not => {
                        if dt != DType::Bool {
                            continue;
                        }
                        let n = op.arity();
                        let args: Vec<Array> = (0..n)
                            .map(|_| array(&mut rng, dt, dims, 0.0, 1.0, false))
                            .collect();
                        (vec![ty; n], args)
                    }
                    CompareOp::Select => {
                        let p = array(&mut rng, DType::Bool, dims, 0.0, 1.0, false);
                        let a = array(&mut rng, dt, dims, -2.0, 2.0, true);
                        let b = array(&mut rng, dt, dims, -2.0, 2.0, true);
                        (
                            vec![Type::new(DType::Bool, dims), ty.clone(), ty],
                            vec![p, a, b],
                        )
                    }
                    _ => {
                        let a = array(&mut rng, dt, dims, -2.0, 2.0, true);
                        let b = array(&mut rng, dt, dims, -2.0, 2.0, true);
                        (vec![ty.clone(), ty], vec![a, b])
                    }
                };
                check(&graph(Op::Compare(op), &tys), &args);
            }
        }
    }
}

#[test]
fn convert_ops() {
    let mut rng = Rng(4);
    for from in DType::ALL {
        for to in DType::ALL {
            for dims in SHAPES {
                let x = array(&mut rng, from, dims, -3e9, 3e9, true);
                check(
                    &graph(
                        Op::Convert(ConvertOp::Convert(to)),
                        &[Type::new(from, dims)],
                    ),
                    &[x],
                );
                let x = array(&mut rng, from, dims, -2.0, 2.0, true);
                check(
                    &graph(
                        Op::Convert(ConvertOp::Convert(to)),
                        &[Type::new(from, dims)],
                    ),
                    &[x],
                );
            }
        }
        if from != DType::Bool {
            let x = array(&mut rng, from, &[4], -2.0, 2.0, true);
            check(
                &graph(
                    Op::Convert(ConvertOp::StopGradient),
                    &[Type::new(from, &[4])],
                ),
                &[x],
            );
        }
    }
}

#[test]
fn literal_ops() {
    let mut rng = Rng(5);
    for dt in [DType::F32, DType::F64, DType::I32] {
        for (dims, axis) in [
            (&[3usize][..], 0),
            (&[2, 3], 1),
            (&[0, 2], 1),
            (&[4, 1, 2], 0),
            (&[100, 2], 0),
        ] {
            let op = LiteralOp::Iota {
                dtype: dt,
                shape: Shape::new(dims),
                axis,
            };
            check(&graph(Op::Literal(op), &[]), &[]);
        }
    }
    // Constants, scalar and array, combined with parameters so they are not folded away.
    for dt in [DType::F32, DType::F64, DType::I32] {
        for dims in [&[][..], &[3], &[2, 100]] {
            let mut b = Builder::new();
            let x = b.param(Type::new(dt, dims));
            let c = b.constant(array(&mut rng, dt, dims, -2.0, 2.0, false));
            let y = b.push1(Op::Binary(BinaryOp::Add), &[x, c]).unwrap();
            let g = b.finish(&[y, c]);
            check(&g, &[array(&mut rng, dt, dims, -2.0, 2.0, false)]);
        }
    }
}

#[test]
fn shape_ops() {
    let mut rng = Rng(6);
    for dt in DType::ALL {
        let mut run = |op: ShapeOp, dims: &[&[usize]]| {
            let tys: Vec<Type> = dims.iter().map(|d| Type::new(dt, d)).collect();
            let args: Vec<Array> = dims
                .iter()
                .map(|d| array(&mut rng, dt, d, -5.0, 5.0, false))
                .collect();
            check(&graph(Op::Shape(op), &tys), &args);
        };
        let bc = |shape: &[usize], dims: &[usize]| ShapeOp::BroadcastInDim {
            shape: Shape::new(shape),
            dims: d(dims).into_boxed_slice(),
        };
        run(bc(&[2, 3], &[]), &[&[]]);
        run(bc(&[2, 3], &[1]), &[&[3]]);
        run(bc(&[2, 3], &[0]), &[&[2]]);
        run(bc(&[2, 1, 3], &[0, 2]), &[&[1, 3]]);
        run(bc(&[0, 3], &[1]), &[&[3]]);
        run(bc(&[4, 0], &[0, 1]), &[&[1, 0]]);
        run(bc(&[], &[]), &[&[]]);
        run(
            ShapeOp::Reshape {
                shape: Shape::new(&[3, 2]),
            },
            &[&[2, 3]],
        );
        run(
            ShapeOp::Reshape {
                shape: Shape::new(&[]),
            },
            &[&[1, 1]],
        );
        run(
            ShapeOp::Reshape {
                shape: Shape::new(&[1]),
            },
            &[&[]],
        );
        run(
            ShapeOp::Reshape {
                shape: Shape::new(&[0, 5]),
            },
            &[&[5, 0]],
        );
        run(
            ShapeOp::Transpose {
                perm: Box::new([1, 0]),
            },
            &[&[2, 3]],
        );
        run(
            ShapeOp::Transpose {
                perm: Box::new([2, 0, 1]),
            },
            &[&[2, 3, 4]],
        );
        run(
            ShapeOp::Transpose {
                perm: Box::new([1, 0]),
            },
            &[&[0, 3]],
        );
        run(ShapeOp::Transpose { perm: Box::new([]) }, &[&[]]);
        let sl = |s: &[usize], l: &[usize], t: &[usize]| ShapeOp::Slice {
            start: d(s).into_boxed_slice(),
            limit: d(l).into_boxed_slice(),
            stride: d(t).into_boxed_slice(),
        };
        run(sl(&[1], &[4], &[1]), &[&[5]]);
        run(sl(&[0, 1], &[3, 4], &[2, 2]), &[&[3, 5]]);
        run(sl(&[2], &[2], &[1]), &[&[5]]);
        run(sl(&[], &[], &[]), &[&[]]);
        let pad = |lo: &[usize], hi: &[usize], it: &[usize]| ShapeOp::Pad {
            lo: d(lo).into_boxed_slice(),
            hi: d(hi).into_boxed_slice(),
            interior: d(it).into_boxed_slice(),
        };
        run(pad(&[1], &[2], &[0]), &[&[3], &[]]);
        run(pad(&[0, 1], &[1, 0], &[1, 2]), &[&[2, 3], &[]]);
        run(pad(&[2], &[1], &[3]), &[&[0], &[]]);
        run(pad(&[], &[], &[]), &[&[], &[]]);
        run(ShapeOp::Concatenate { axis: 0 }, &[&[2], &[0], &[3]]);
        run(ShapeOp::Concatenate { axis: 1 }, &[&[2, 1], &[2, 3]]);
        run(ShapeOp::Concatenate { axis: 0 }, &[&[1, 2]]);
        run(
            ShapeOp::Rev {
                axes: Box::new([0]),
            },
            &[&[4]],
        );
        run(
            ShapeOp::Rev {
                axes: Box::new([0, 2]),
            },
            &[&[2, 3, 2]],
        );
        run(
            ShapeOp::Rev {
                axes: Box::new([1]),
            },
            &[&[2, 0]],
        );
        run(ShapeOp::Rev { axes: Box::new([]) }, &[&[]]);
    }
}

#[test]
fn reduce_ops() {
    let mut rng = Rng(7);
    for dt in [DType::F32, DType::F64, DType::I32] {
        let cases: &[(&[usize], &[usize])] = &[
            (&[5], &[0]),
            (&[2, 3], &[0]),
            (&[2, 3], &[1]),
            (&[2, 3], &[0, 1]),
            (&[2, 3, 4], &[0, 2]),
            (&[0, 3], &[0]),
            (&[0, 3], &[1]),
            (&[3], &[]),
            (&[], &[]),
            (&[1, 1], &[1]),
        ];
        for &(dims, axes) in cases {
            let ty = Type::new(dt, dims);
            for op in [
                ReduceOp::Sum { axes: d(axes) },
                ReduceOp::Max { axes: d(axes) },
                ReduceOp::Min { axes: d(axes) },
                ReduceOp::Prod { axes: d(axes) },
            ] {
                let x = array(&mut rng, dt, dims, -2.0, 2.0, true);
                check(&graph(Op::Reduce(op), std::slice::from_ref(&ty)), &[x]);
            }
            if axes.len() == 1 && dims[axes[0]] > 0 {
                for op in [
                    ReduceOp::ArgMax { axis: axes[0] },
                    ReduceOp::ArgMin { axis: axes[0] },
                ] {
                    let x = array(&mut rng, dt, dims, -2.0, 2.0, true);
                    check(&graph(Op::Reduce(op), std::slice::from_ref(&ty)), &[x]);
                }
            }
        }
    }
}

fn dot(lc: &[usize], rc: &[usize], lb: &[usize], rb: &[usize]) -> DotGeneral {
    DotGeneral {
        lhs_contract: d(lc),
        rhs_contract: d(rc),
        lhs_batch: d(lb),
        rhs_batch: d(rb),
    }
}

#[test]
fn dot_general_loops() {
    let mut rng = Rng(8);
    for dt in [DType::F32, DType::F64, DType::I32] {
        let cases: Vec<(DotGeneral, &[usize], &[usize])> = vec![
            (dot(&[0], &[0], &[], &[]), &[4], &[4]),
            (dot(&[1], &[0], &[], &[]), &[2, 3], &[3, 4]),
            (dot(&[0], &[1], &[], &[]), &[3, 2], &[4, 3]),
            (dot(&[1], &[0], &[], &[]), &[2, 0], &[0, 4]),
            (dot(&[1], &[0], &[], &[]), &[0, 3], &[3, 4]),
            (dot(&[], &[], &[], &[]), &[2], &[3]),
            (dot(&[], &[], &[], &[]), &[], &[]),
            (dot(&[2], &[1], &[0], &[0]), &[2, 3, 4], &[2, 4, 5]),
            (dot(&[1, 2], &[0, 1], &[], &[]), &[2, 3, 4], &[3, 4]),
        ];
        for (op, a, b) in cases {
            let tys = [Type::new(dt, a), Type::new(dt, b)];
            if op.infer(&tys[0], &tys[1]).is_err() {
                continue;
            }
            let x = array(&mut rng, dt, a, -2.0, 2.0, false);
            let y = array(&mut rng, dt, b, -2.0, 2.0, false);
            check(&graph(Op::Dot(Box::new(op)), &tys), &[x, y]);
        }
    }
}

#[test]
fn dot_general_gemm() {
    let mut rng = Rng(9);
    for dt in FLOATS {
        let tol = if dt == DType::F32 { 1e-4 } else { 1e-12 };
        let cases: Vec<(DotGeneral, &[usize], &[usize])> = vec![
            (dot(&[1], &[0], &[], &[]), &[20, 30], &[30, 25]),
            (dot(&[0], &[0], &[], &[]), &[30, 20], &[30, 25]),
            (dot(&[1], &[1], &[], &[]), &[20, 30], &[25, 30]),
            (dot(&[2], &[1], &[0], &[0]), &[3, 16, 17], &[3, 17, 18]),
            (dot(&[1, 2], &[0, 1], &[], &[]), &[16, 4, 8], &[4, 8, 16]),
            // Above the threads' threshold (2^21 multiply-adds): rows split across threads in
            // proportion to their measured rates, with a row count that is no multiple of 8.
            (dot(&[1], &[0], &[], &[]), &[131, 150], &[150, 120]),
            (dot(&[0], &[0], &[], &[]), &[150, 131], &[150, 120]),
            // Fewer rows than columns: split by columns (each thread packs its own columns of
            // `B`), with a column count that is no multiple of 16, `B` row- and column-major.
            (dot(&[1], &[0], &[], &[]), &[60, 150], &[150, 301]),
            (dot(&[1], &[1], &[], &[]), &[60, 150], &[301, 150]),
            // Exactly at the threshold (128³ = 2^21 multiply-adds) and one row below it.
            (dot(&[1], &[0], &[], &[]), &[128, 128], &[128, 128]),
            (dot(&[1], &[0], &[], &[]), &[127, 128], &[128, 128]),
            // The 784-256-10 step's layouts at a smaller batch: `X·W1` (split by columns,
            // each part packing all of a row-major `X`), the weight gradient `Xᵀ·dH` (split by
            // rows of a column-major `Xᵀ`), and a product of two transposed operands.
            (dot(&[1], &[0], &[], &[]), &[24, 784], &[784, 200]),
            (dot(&[0], &[0], &[], &[]), &[24, 784], &[24, 200]),
            (dot(&[0], &[1], &[], &[]), &[150, 131], &[120, 150]),
            // A zero dimension in an otherwise large product: no rows, and no contraction
            // (every result element zero).
            (dot(&[1], &[0], &[], &[]), &[0, 784], &[784, 256]),
            (dot(&[1], &[0], &[], &[]), &[150, 0], &[0, 301]),
        ];
        for (op, a, b) in cases {
            let tys = [Type::new(dt, a), Type::new(dt, b)];
            let x = array(&mut rng, dt, a, -2.0, 2.0, false);
            let y = array(&mut rng, dt, b, -2.0, 2.0, false);
            check_with(&graph(Op::Dot(Box::new(op)), &tys), &[x, y], Some(tol));
        }
    }
}

#[test]
fn index_ops() {
    let mut rng = Rng(10);
    let i32s = |v: i32| Array::scalar(DType::I32, v as f64);
    let sc = Type::scalar(DType::I32);
    for dt in [DType::F32, DType::F64, DType::I32] {
        for (dims, axis) in [
            (&[5usize][..], 0),
            (&[2, 3], 1),
            (&[2, 3], 0),
            (&[0, 3], 1),
            (&[3, 0], 1),
        ] {
            for reverse in [false, true] {
                let x = array(&mut rng, dt, dims, -2.0, 2.0, true);
                let op = IndexOp::Cumsum { axis, reverse };
                check(&graph(Op::Index(op), &[Type::new(dt, dims)]), &[x]);
            }
        }
        for starts in [[0, 0], [1, 2], [-5, 9], [100, -100]] {
            let x = array(&mut rng, dt, &[4, 5], -2.0, 2.0, false);
            let op = IndexOp::DynamicSlice { sizes: d(&[2, 3]) };
            let tys = [Type::new(dt, &[4, 5]), sc.clone(), sc.clone()];
            check(
                &graph(Op::Index(op), &tys),
                &[x.clone(), i32s(starts[0]), i32s(starts[1])],
            );
            let u = array(&mut rng, dt, &[2, 3], -2.0, 2.0, false);
            let tys = [
                Type::new(dt, &[4, 5]),
                Type::new(dt, &[2, 3]),
                sc.clone(),
                sc.clone(),
            ];
            check(
                &graph(Op::Index(IndexOp::DynamicUpdateSlice), &tys),
                &[x, u, i32s(starts[0]), i32s(starts[1])],
            );
        }
        let x = array(&mut rng, dt, &[3], -2.0, 2.0, false);
        let op = IndexOp::DynamicSlice { sizes: d(&[0]) };
        check(
            &graph(Op::Index(op), &[Type::new(dt, &[3]), sc.clone()]),
            &[x, i32s(2)],
        );
        for (xd, idims) in [
            (&[4usize, 3][..], &[5usize][..]),
            (&[4], &[2, 2]),
            (&[4, 2], &[0]),
            (&[1, 2], &[3]),
        ] {
            let x = array(&mut rng, dt, xd, -2.0, 2.0, false);
            let idx = Array::new(
                Shape::new(idims),
                ferrax_ir::Data::I32(
                    (0..idims.iter().product::<usize>())
                        .map(|k| (k as i32 * 7) % 9 - 3)
                        .collect(),
                ),
            )
            .unwrap();
            let tys = [Type::new(dt, xd), Type::new(DType::I32, idims)];
            check(
                &graph(Op::Index(IndexOp::Gather(Default::default())), &tys),
                &[x.clone(), idx.clone()],
            );
            let mut ud: Vec<usize> = idims.to_vec();
            ud.extend_from_slice(&xd[1..]);
            let u = array(&mut rng, dt, &ud, -2.0, 2.0, false);
            let tys = [
                Type::new(dt, xd),
                Type::new(DType::I32, idims),
                Type::new(dt, &ud),
            ];
            check(
                &graph(
                    Op::Index(IndexOp::Scatter {
                        at: Default::default(),
                        combine: ferrax_ir::ops::Combine::Add,
                    }),
                    &tys,
                ),
                &[x, idx, u],
            );
        }
    }
}

/// Scatters into a broadcast constant (the dense blocks of a compressed Jacobian): the JIT
/// fills the result with the constant instead of copying the broadcast, which must give the
/// same bits for every combine, splat value (signed zeros, NaN), odd and empty sizes, and for
/// the compressed Rosenbrock Hessian as a whole.
#[test]
fn scatters_into_a_splat() {
    let mut rng = Rng(43);
    let kinds: [(usize, bool, &[usize], &[usize]); 4] = [
        (0, false, &[7], &[5]),
        (1, true, &[3, 5], &[3, 2]),
        (1, false, &[2, 3, 2], &[4]),
        (0, false, &[0], &[2]),
    ];
    for (axis, along, xd, idims) in kinds {
        let at = Indexing {
            axis,
            along,
            bounds: Bounds::Fill,
        };
        let n: usize = idims.iter().product();
        let idx = Array::from_i32(
            Shape::new(idims),
            (0..n as i32).map(|k| (k * 3) % 4 - 1).collect(),
        )
        .unwrap();
        let ity = Type::new(DType::I32, idims);
        for dt in FLOATS {
            let xty = Type::new(dt, xd);
            let ud = at.result_dims("scatter", &[], &xty, &ity).unwrap();
            let u = array(&mut rng, dt, &ud, -2.0, 2.0, true);
            for splat in [0.0, -0.0, 2.5, f64::NAN] {
                for combine in Combine::ALL {
                    // Unfolded, so the broadcast stays a broadcast at these small sizes.
                    let mut b = Builder::new();
                    b.fold_constants = false;
                    let i = b.param(ity.clone());
                    let up = b.param(Type::new(dt, &ud));
                    let c = b.constant(Array::from(splat).cast(dt));
                    let shape = Op::Shape(ShapeOp::BroadcastInDim {
                        shape: Shape::new(xd),
                        dims: Box::default(),
                    });
                    let x = b.push1(shape, &[c]).unwrap();
                    let op = Op::Index(IndexOp::Scatter { at, combine });
                    let r = b.push1(op, &[x, i, up]).unwrap();
                    check(&b.finish(&[r]), &[idx.clone(), u.clone()]);
                }
            }
        }
    }
    // A splat that is also read (an output, another op's operand, a scatter's updates) is
    // computed; one read only by scatters is not, and both scatters still fill from it.
    let xt = Type::new(DType::F64, &[9]);
    let it = Type::new(DType::I32, &[3]);
    let at = Indexing::default();
    for reader in 0..4 {
        let mut b = Builder::new();
        b.fold_constants = false;
        let i = b.param(it.clone());
        let up = b.param(Type::new(DType::F64, &[3]));
        let c = b.constant(Array::from(-1.5));
        let shape = |d: &[usize]| {
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(d),
                dims: Box::default(),
            })
        };
        let x = b.push1(shape(xt.dims()), &[c]).unwrap();
        let set = Op::Index(IndexOp::Scatter {
            at,
            combine: Combine::Set,
        });
        let s = b.push1(set.clone(), &[x, i, up]).unwrap();
        let outs = match reader {
            0 => vec![s, x],
            1 => {
                let y = b.push1(Op::Binary(BinaryOp::Mul), &[x, s]).unwrap();
                vec![y]
            }
            2 => {
                let small = b.push1(shape(&[3]), &[c]).unwrap();
                let t = b.push1(set.clone(), &[s, i, small]).unwrap();
                vec![t, s]
            }
            _ => {
                let add = Op::Index(IndexOp::Scatter {
                    at,
                    combine: Combine::Add,
                });
                let t = b.push1(add, &[x, i, up]).unwrap();
                vec![s, t]
            }
        };
        let idx = Array::from_i32(Shape::new(&[3]), vec![4, 0, 8]).unwrap();
        check(&b.finish(&outs), &[idx, Array::from(vec![1.0, 2.0, 3.0])]);
    }
    let rosenbrock = |x: ferrax_ir::Tensor| {
        let n = x.shape()[0];
        let head = x.slice_axis(0, 0, n - 1);
        let tail = x.slice_axis(0, 1, n);
        (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
    };
    let n = 40;
    let g = ferrax_transforms::api::hessian(rosenbrock)
        .specialize(&[Type::new(DType::F64, &[n])])
        .unwrap()
        .graph;
    let mut x: Vec<f64> = (0..n).map(|i| -1.2 + 0.06 * i as f64).collect();
    check(&g, &[Array::from(x.clone())]);
    x[7] = f64::INFINITY;
    check(&g, &[Array::from(x)]);
}

/// Gathers and scatters along axes, both kinds, both bounds, every combine and dtype, with
/// indices that repeat, are negative, or are as large as i32 allows; and empty axes.
#[test]
fn axis_gathers_and_scatters() {
    let mut rng = Rng(41);
    let kinds: [(usize, bool, &[usize], &[usize]); 6] = [
        (1, false, &[3, 4, 2], &[2, 3]),
        (0, false, &[5], &[7]),
        (2, false, &[2, 2, 3], &[]),
        (1, true, &[3, 4], &[3, 6]),
        (0, true, &[4, 3, 2], &[2, 3, 2]),
        (1, false, &[2, 0, 3], &[4]),
    ];
    let picks = [0, 1, 3, -1, -4, 4, 9, i32::MIN, i32::MAX, 2, 2, 0];
    for (axis, along, xd, idims) in kinds {
        for bounds in [Bounds::Clip, Bounds::Fill] {
            let at = Indexing {
                axis,
                along,
                bounds,
            };
            let n: usize = idims.iter().product();
            let idx = Array::from_i32(
                Shape::new(idims),
                (0..n)
                    .map(|k| picks[(k * 5 + axis) % picks.len()])
                    .collect(),
            )
            .unwrap();
            let ity = Type::new(DType::I32, idims);
            for dt in [DType::F32, DType::F64, DType::I32, DType::Bool] {
                let x = array(&mut rng, dt, xd, -2.0, 2.0, dt.is_float());
                let xty = Type::new(dt, xd);
                let g = graph(Op::Index(IndexOp::Gather(at)), &[xty.clone(), ity.clone()]);
                check(&g, &[x.clone(), idx.clone()]);
                let ud = at.result_dims("scatter", &[], &xty, &ity).unwrap();
                let u = array(&mut rng, dt, &ud, -2.0, 2.0, dt.is_float());
                for combine in Combine::ALL {
                    if dt == DType::Bool && combine != Combine::Set {
                        continue;
                    }
                    let tys = [xty.clone(), ity.clone(), Type::new(dt, &ud)];
                    let g = graph(Op::Index(IndexOp::Scatter { at, combine }), &tys);
                    check(&g, &[x.clone(), idx.clone(), u.clone()]);
                }
            }
        }
    }
}

#[test]
fn chains_reuse_workspace() {
    // A longer chain exercises buffer reuse, in-place elementwise ops and outputs aliasing
    // parameters and constants.
    let mut rng = Rng(11);
    let mut b = Builder::new();
    let x = b.param(Type::new(DType::F64, &[3, 4]));
    let y = b.param(Type::new(DType::F64, &[4]));
    let yb = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[3, 4]),
                dims: Box::new([1]),
            }),
            &[y],
        )
        .unwrap();
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[s, yb]).unwrap();
    let e = b.push1(Op::Unary(UnaryOp::Exp), &[m]).unwrap();
    let t = b
        .push1(
            Op::Shape(ShapeOp::Transpose {
                perm: Box::new([1, 0]),
            }),
            &[e],
        )
        .unwrap();
    let r = b
        .push1(Op::Reduce(ReduceOp::Sum { axes: d(&[1]) }), &[t])
        .unwrap();
    let q = b.push1(Op::Binary(BinaryOp::Add), &[r, y]).unwrap();
    let tot = b
        .push1(Op::Reduce(ReduceOp::Sum { axes: d(&[0]) }), &[q])
        .unwrap();
    let g = b.finish(&[tot, q, x, q, t]);
    check(
        &g,
        &[
            array(&mut rng, DType::F64, &[3, 4], -1.0, 1.0, false),
            array(&mut rng, DType::F64, &[4], -1.0, 1.0, false),
        ],
    );
}

#[test]
fn shared_sin_cos_calls_match_separate_ones() {
    // `sin x` and `cos x` of one rank-0 value share one `sincos` call: bit-identical to the
    // interpreter's separate calls, on random bit patterns and arguments of every magnitude.
    let mut rng = Rng(9);
    for dtype in FLOATS {
        let mut b = Builder::new();
        let x = b.param(Type::scalar(dtype));
        let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).expect("sin");
        let c = b.push1(Op::Unary(UnaryOp::Cos), &[x]).expect("cos");
        let g = b.finish(&[s, c]);
        let opts = ferrax_jit::JitOptions {
            math: ferrax_jit::MathMode::Precise,
            ..ferrax_jit::JitOptions::default()
        };
        let f = ferrax_jit::compile(&g, &opts).expect("compile");
        for i in 0..100_000u64 {
            let u = rng.next();
            let v = match i % 4 {
                0 => f64::from_bits((u * u64::MAX as f64) as u64),
                1 => (u - 0.5) * 20.0,
                2 => (u - 0.5) * 1e6,
                _ => (u - 0.5) * 2e22,
            };
            let arg = Array::scalar(dtype, v);
            let want = ferrax_ir::interp::eval(&g, std::slice::from_ref(&arg)).expect("interp");
            let got = f.call(&[arg]).expect("call");
            for (w, o) in want.iter().zip(&got) {
                assert!(
                    common::same_bits(w, o),
                    "{dtype} sin/cos of {v}: {w} vs {o}"
                );
            }
        }
    }
}

#[test]
fn window_ops() {
    use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
    let mut rng = Rng(11);
    let pick = |rng: &mut Rng, n: usize| (rng.next() * n as f64) as usize;
    for case in 0..150 {
        let rank = pick(&mut rng, 4);
        let dims: Vec<usize> = (0..rank)
            .map(|_| {
                if pick(&mut rng, 8) == 0 {
                    0
                } else {
                    pick(&mut rng, 5) + 1
                }
            })
            .collect();
        let ints = |rng: &mut Rng, lo: usize, n: usize| -> Vec<usize> {
            (0..rank)
                .map(|_| lo + (rng.next() * n as f64) as usize)
                .collect()
        };
        let w = Window::new(&ints(&mut rng, 1, 3))
            .with_strides(&ints(&mut rng, 1, 3))
            .with_padding(
                &ints(&mut rng, 0, 3)
                    .into_iter()
                    .zip(ints(&mut rng, 0, 3))
                    .collect::<Vec<_>>(),
            )
            .with_base_dilation(&ints(&mut rng, 1, 3))
            .with_window_dilation(&ints(&mut rng, 1, 3));
        let out = w.out_dims(&dims).unwrap();
        for dt in [DType::F32, DType::F64, DType::I32] {
            let xt = Type::new(dt, &dims);
            let ot = Type::new(dt, &out);
            // Few distinct values, so windows hold ties; specials in the floats.
            let x = array(&mut rng, dt, &dims, -3.0, 3.0, true);
            let x = if case % 2 == 0 {
                let v: Vec<f64> = x.to_f64_vec().iter().map(|v| v.round()).collect();
                Array::from_f64(dims.clone(), v).unwrap().cast(dt)
            } else {
                x
            };
            for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
                let op = WindowOp::Reduce {
                    monoid,
                    window: w.clone(),
                };
                check(
                    &graph(Op::Window(Box::new(op)), std::slice::from_ref(&xt)),
                    std::slice::from_ref(&x),
                );
            }
            for select in [Select::Max, Select::Min] {
                let t = array(&mut rng, dt, &dims, -3.0, 3.0, false);
                let gather = WindowOp::SelectAndGatherAdd {
                    select,
                    window: w.clone(),
                };
                check(
                    &graph(Op::Window(Box::new(gather)), &[xt.clone(), xt.clone()]),
                    &[t, x.clone()],
                );
                let c = array(&mut rng, dt, &out, -3.0, 3.0, false);
                let scatter = WindowOp::SelectAndScatterAdd {
                    select,
                    window: w.clone(),
                };
                check(
                    &graph(Op::Window(Box::new(scatter)), &[ot.clone(), xt.clone()]),
                    &[c, x.clone()],
                );
            }
        }
    }
}

#[test]
fn window_ops_on_a_zero_size_operand_with_huge_dimensions() {
    use ferrax_ir::ops::{Monoid, Window, WindowOp};
    let big = 1usize << 40;
    let w = Window::new(&[1, 1, 1])
        .with_strides(&[1, big, big])
        .with_padding(&[(1, 0), (0, 0), (0, 0)]);
    let xt = Type::new(DType::F32, &[0, big, big]);
    let x = Array::full(DType::F32, vec![0, big, big], 0.0).unwrap();
    for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
        let op = WindowOp::Reduce {
            monoid,
            window: w.clone(),
        };
        check(
            &graph(Op::Window(Box::new(op)), std::slice::from_ref(&xt)),
            std::slice::from_ref(&x),
        );
    }
}
