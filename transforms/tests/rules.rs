//! One row per primitive: the JVP against central finite differences in a random direction at
//! several random points, the VJP against the JVP through <ct, J·t> = <Jᵀ·ct, t>, linearize
//! against the JVP, and grad of a scalar reduction of the op against finite differences.

mod common;

use common::*;
use ferrax_ir::ops::{
    BinaryOp, Bounds, Combine, CompareOp, ConvertOp, DotGeneral, IndexOp, Indexing, LiteralOp,
    ReduceOp, ShapeOp, UnaryOp,
};
use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
use ferrax_ir::{Array, Builder, DType, Dims, Op, Shape, Type, Value};
use ferrax_transforms::{grad_graph, inline, jvp_graph, linearize_graph, vjp_graph};

type Body = Box<dyn Fn(&mut Builder, &[Value]) -> Vec<Value>>;

struct Case {
    name: String,
    tys: Vec<Type>,
    lo: f64,
    hi: f64,
    /// Finite-difference step and relative tolerance.
    h: f64,
    rtol: f64,
    body: Body,
}

fn case(name: &str, tys: Vec<Type>, lo: f64, hi: f64, body: Body) -> Case {
    Case {
        name: name.to_string(),
        tys,
        lo,
        hi,
        h: 1e-6,
        rtol: 1e-6,
        body,
    }
}

fn i32s() -> Type {
    Type::scalar(DType::I32)
}

fn push(b: &mut Builder, op: Op, args: &[Value]) -> Value {
    b.push1(op, args).unwrap()
}

fn random_args(rng: &mut Rng, tys: &[Type], lo: f64, hi: f64) -> Vec<Array> {
    tys.iter()
        .map(|t| {
            if t.dtype.is_float() {
                rng.array(t, lo, hi)
            } else {
                let v: Vec<f64> = (0..t.size())
                    .map(|_| rng.uniform(0.0, 3.0).floor())
                    .collect();
                Array::from_f64(t.shape.clone(), v).unwrap().cast(t.dtype)
            }
        })
        .collect()
}

fn unary_domain(op: UnaryOp) -> (f64, f64) {
    match op {
        UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Log | UnaryOp::Log1p => (0.5, 2.0),
        UnaryOp::Asin | UnaryOp::Acos | UnaryOp::Atanh => (-0.9, 0.9),
        UnaryOp::Acosh => (1.2, 3.0),
        UnaryOp::Reciprocal | UnaryOp::IntegerPow(_) | UnaryOp::Abs => (0.3, 2.0),
        _ => (-2.0, 2.0),
    }
}

fn cases() -> Vec<Case> {
    let mut cs = Vec::new();
    let mut unary: Vec<UnaryOp> = UnaryOp::ALL.to_vec();
    unary.extend([
        UnaryOp::IntegerPow(-2),
        UnaryOp::IntegerPow(0),
        UnaryOp::IntegerPow(1),
    ]);
    for op in unary {
        let (lo, hi) = unary_domain(op);
        let name = format!(
            "{}{}",
            op.name(),
            if let UnaryOp::IntegerPow(n) = op {
                n.to_string()
            } else {
                String::new()
            }
        );
        cs.push(case(
            &name,
            vec![f64t(&[3])],
            lo,
            hi,
            Box::new(move |b, p| vec![un(b, op, p[0])]),
        ));
    }
    for op in BinaryOp::ALL {
        cs.push(case(
            op.name(),
            vec![f64t(&[2, 3]), f64t(&[2, 3])],
            0.5,
            2.0,
            Box::new(move |b, p| vec![bin(b, op, p[0], p[1])]),
        ));
    }
    for op in [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ] {
        cs.push(case(
            op.name(),
            vec![f64t(&[4]), f64t(&[4])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                let c = push(b, Op::Compare(op), &[p[0], p[1]]);
                let s = un(b, UnaryOp::Sin, p[0]);
                let e = un(b, UnaryOp::Exp, p[1]);
                vec![push(b, Op::Compare(CompareOp::Select), &[c, s, e]), c]
            }),
        ));
    }
    for op in [CompareOp::And, CompareOp::Or, CompareOp::Not] {
        cs.push(case(
            op.name(),
            vec![f64t(&[4]), f64t(&[4])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                let z = b.constant(Array::full(DType::F64, [4], 0.0).unwrap());
                let c1 = push(b, Op::Compare(CompareOp::Gt), &[p[0], z]);
                let c2 = push(b, Op::Compare(CompareOp::Lt), &[p[1], z]);
                let c = if op == CompareOp::Not {
                    push(b, Op::Compare(op), &[c1])
                } else {
                    push(b, Op::Compare(op), &[c1, c2])
                };
                vec![push(b, Op::Compare(CompareOp::Select), &[c, p[0], p[1]])]
            }),
        ));
    }
    cs.push(case(
        "select_one_branch",
        vec![f64t(&[4])],
        -1.0,
        1.0,
        Box::new(|b, p| {
            let z = b.constant(Array::full(DType::F64, [4], 0.0).unwrap());
            let c = push(b, Op::Compare(CompareOp::Gt), &[p[0], z]);
            let sq = un(b, UnaryOp::Square, p[0]);
            vec![push(b, Op::Compare(CompareOp::Select), &[c, sq, z])]
        }),
    ));
    let mut conv = case(
        "convert_f32",
        vec![f64t(&[3])],
        -2.0,
        2.0,
        Box::new(|b, p| {
            let s = un(b, UnaryOp::Sin, p[0]);
            let f = push(b, Op::Convert(ConvertOp::Convert(DType::F32)), &[s]);
            let c = un(b, UnaryOp::Exp, f);
            vec![push(b, Op::Convert(ConvertOp::Convert(DType::F64)), &[c])]
        }),
    );
    conv.h = 1e-2;
    conv.rtol = 1e-3;
    cs.push(conv);
    cs.push(case(
        "convert_i32",
        vec![f64t(&[3])],
        0.1,
        2.9,
        Box::new(|b, p| {
            let i = push(b, Op::Convert(ConvertOp::Convert(DType::I32)), &[p[0]]);
            let f = push(b, Op::Convert(ConvertOp::Convert(DType::F64)), &[i]);
            vec![bin(b, BinaryOp::Mul, p[0], f), i]
        }),
    ));
    cs.push(case(
        "iota_const",
        vec![f64t(&[2, 3])],
        -1.0,
        1.0,
        Box::new(|b, p| {
            let io = push(
                b,
                Op::Literal(LiteralOp::Iota {
                    dtype: DType::F64,
                    shape: Shape::new(&[2, 3]),
                    axis: 1,
                }),
                &[],
            );
            let c = b.constant(Array::full(DType::F64, [2, 3], 1.5).unwrap());
            let m = bin(b, BinaryOp::Mul, p[0], io);
            vec![bin(b, BinaryOp::Add, m, c)]
        }),
    ));
    let shape_op = |op: ShapeOp| Op::Shape(op);
    cs.push(case(
        "broadcast_in_dim",
        vec![f64t(&[3])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::BroadcastInDim {
                    shape: Shape::new(&[2, 3]),
                    dims: Box::new([1]),
                }),
                &[p[0]],
            )]
        }),
    ));
    cs.push(case(
        "broadcast_size1",
        vec![f64t(&[3, 1])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::BroadcastInDim {
                    shape: Shape::new(&[2, 3, 4]),
                    dims: Box::new([1, 2]),
                }),
                &[p[0]],
            )]
        }),
    ));
    cs.push(case(
        "reshape",
        vec![f64t(&[2, 3])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::Reshape {
                    shape: Shape::new(&[3, 2]),
                }),
                &[p[0]],
            )]
        }),
    ));
    cs.push(case(
        "transpose",
        vec![f64t(&[2, 3, 4])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::Transpose {
                    perm: Box::new([2, 0, 1]),
                }),
                &[p[0]],
            )]
        }),
    ));
    cs.push(case(
        "slice",
        vec![f64t(&[5, 4])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            let op = ShapeOp::Slice {
                start: Box::new([1, 0]),
                limit: Box::new([5, 3]),
                stride: Box::new([2, 1]),
            };
            vec![push(b, shape_op(op), &[p[0]])]
        }),
    ));
    cs.push(case(
        "pad",
        vec![f64t(&[2, 3]), f64t(&[])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            let op = ShapeOp::Pad {
                lo: Box::new([1, 0]),
                hi: Box::new([0, 2]),
                interior: Box::new([1, 1]),
            };
            vec![push(b, shape_op(op), &[p[0], p[1]])]
        }),
    ));
    cs.push(case(
        "concatenate",
        vec![f64t(&[2, 3]), f64t(&[2, 1]), f64t(&[2, 2])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::Concatenate { axis: 1 }),
                &[p[0], p[1], p[2]],
            )]
        }),
    ));
    cs.push(case(
        "concatenate_const",
        vec![f64t(&[2, 3])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            let c = b.constant(Array::full(DType::F64, [1, 3], 2.0).unwrap());
            vec![push(
                b,
                shape_op(ShapeOp::Concatenate { axis: 0 }),
                &[c, p[0]],
            )]
        }),
    ));
    cs.push(case(
        "rev",
        vec![f64t(&[2, 3])],
        -1.0,
        1.0,
        Box::new(move |b, p| {
            vec![push(
                b,
                shape_op(ShapeOp::Rev {
                    axes: Box::new([1]),
                }),
                &[p[0]],
            )]
        }),
    ));
    let axes = |a: &[usize]| Dims::from_slice(a);
    for (name, op) in [
        (
            "reduce_sum",
            ReduceOp::Sum {
                axes: axes(&[0, 2]),
            },
        ),
        ("reduce_max", ReduceOp::Max { axes: axes(&[1]) }),
        (
            "reduce_min",
            ReduceOp::Min {
                axes: axes(&[0, 1]),
            },
        ),
        ("reduce_prod", ReduceOp::Prod { axes: axes(&[2]) }),
    ] {
        cs.push(case(
            name,
            vec![f64t(&[2, 3, 2])],
            0.5,
            2.0,
            Box::new(move |b, p| vec![push(b, Op::Reduce(op.clone()), &[p[0]])]),
        ));
    }
    for (name, op) in [
        ("argmax", ReduceOp::ArgMax { axis: 1 }),
        ("argmin", ReduceOp::ArgMin { axis: 0 }),
    ] {
        cs.push(case(
            name,
            vec![f64t(&[2, 3])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                let i = push(b, Op::Reduce(op.clone()), &[p[0]]);
                let f = push(b, Op::Convert(ConvertOp::Convert(DType::F64)), &[i]);
                let s = sum_all(b, p[0]);
                let sf = sum_all(b, f);
                vec![bin(b, BinaryOp::Mul, s, sf), i]
            }),
        ));
    }
    let dot = |lc: &[usize], rc: &[usize], lb: &[usize], rb: &[usize]| DotGeneral {
        lhs_contract: Dims::from_slice(lc),
        rhs_contract: Dims::from_slice(rc),
        lhs_batch: Dims::from_slice(lb),
        rhs_batch: Dims::from_slice(rb),
    };
    for (name, d, a, c) in [
        (
            "dot_matmul",
            dot(&[1], &[0], &[], &[]),
            f64t(&[2, 3]),
            f64t(&[3, 4]),
        ),
        (
            "dot_batched",
            dot(&[2], &[1], &[0], &[0]),
            f64t(&[2, 2, 3]),
            f64t(&[2, 3, 2]),
        ),
        (
            "dot_odd_dims",
            dot(&[0], &[1], &[], &[]),
            f64t(&[3, 2]),
            f64t(&[4, 3]),
        ),
        (
            "dot_two_contract",
            dot(&[2, 0], &[0, 3], &[1], &[2]),
            f64t(&[3, 2, 4]),
            f64t(&[4, 5, 2, 3]),
        ),
        (
            "dot_vector",
            dot(&[0], &[0], &[], &[]),
            f64t(&[3]),
            f64t(&[3]),
        ),
    ] {
        cs.push(case(
            name,
            vec![a, c],
            -1.0,
            1.0,
            Box::new(move |b, p| vec![push(b, Op::Dot(Box::new(d.clone())), &[p[0], p[1]])]),
        ));
    }
    // conv_general_dilated: strided, padded (one side negative), both dilations, two
    // feature groups (more configurations in tests/conv.rs).
    let mut conv = ferrax_ir::ops::ConvGeneral::new(2);
    conv.window_strides = Dims::from_slice(&[2, 1]);
    conv.padding = smallvec::smallvec![(1, 0), (-1, 2)];
    conv.lhs_dilation = Dims::from_slice(&[1, 2]);
    conv.rhs_dilation = Dims::from_slice(&[2, 1]);
    conv.feature_group_count = 2;
    cs.push(case(
        "conv_general_dilated",
        vec![f64t(&[2, 4, 5, 3]), f64t(&[4, 2, 2, 2])],
        -1.0,
        1.0,
        Box::new(move |b, p| vec![push(b, Op::Conv(Box::new(conv.clone())), &[p[0], p[1]])]),
    ));
    for reverse in [false, true] {
        cs.push(case(
            if reverse { "cumsum_rev" } else { "cumsum" },
            vec![f64t(&[3, 4])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                vec![push(
                    b,
                    Op::Index(IndexOp::Cumsum { axis: 1, reverse }),
                    &[p[0]],
                )]
            }),
        ));
    }
    cs.push(case(
        "dynamic_slice",
        vec![f64t(&[4, 5]), i32s(), i32s()],
        -1.0,
        1.0,
        Box::new(|b, p| {
            vec![push(
                b,
                Op::Index(IndexOp::DynamicSlice {
                    sizes: Dims::from_slice(&[2, 3]),
                }),
                &[p[0], p[1], p[2]],
            )]
        }),
    ));
    cs.push(case(
        "dynamic_update_slice",
        vec![f64t(&[4, 5]), f64t(&[2, 3]), i32s(), i32s()],
        -1.0,
        1.0,
        Box::new(|b, p| {
            vec![push(
                b,
                Op::Index(IndexOp::DynamicUpdateSlice),
                &[p[0], p[1], p[2], p[3]],
            )]
        }),
    ));
    cs.push(case(
        "gather",
        vec![f64t(&[4, 3])],
        -1.0,
        1.0,
        Box::new(|b, p| {
            let idx = b.constant(Array::from_i32([2, 2], vec![3, 0, 3, 1]).unwrap());
            vec![push(
                b,
                Op::Index(IndexOp::Gather(Default::default())),
                &[p[0], idx],
            )]
        }),
    ));
    cs.push(case(
        "scatter_add",
        vec![f64t(&[4, 3]), f64t(&[3, 3])],
        -1.0,
        1.0,
        Box::new(|b, p| {
            let idx = b.constant(Array::from_i32([3], vec![1, 1, 2]).unwrap());
            vec![push(
                b,
                Op::Index(IndexOp::Scatter {
                    at: Default::default(),
                    combine: ferrax_ir::ops::Combine::Add,
                }),
                &[p[0], idx, p[1]],
            )]
        }),
    ));
    // Gathers and scatters along an axis, with repeated, negative and out-of-range indices.
    let ix = |axis: usize, along: bool, bounds: Bounds| Indexing {
        axis,
        along,
        bounds,
    };
    let idx_const = |b: &mut Builder, dims: &[usize], v: &[i32]| {
        b.constant(Array::from_i32(Shape::new(dims), v.to_vec()).unwrap())
    };
    for (name, at, x, idims, iv) in [
        (
            "gather_axis1",
            ix(1, false, Bounds::Clip),
            vec![3usize, 4, 2],
            vec![5usize],
            vec![3, -1, 0, 7, 3],
        ),
        (
            "gather_axis1_fill",
            ix(1, false, Bounds::Fill),
            vec![3, 4, 2],
            vec![2, 2],
            vec![3, -1, 0, 4],
        ),
        (
            "gather_along_fill",
            ix(1, true, Bounds::Fill),
            vec![3, 4],
            vec![3, 2],
            vec![0, 3, 9, 1, -2, 1],
        ),
        (
            "gather_along_axis0",
            ix(0, true, Bounds::Clip),
            vec![3, 4],
            vec![2, 4],
            vec![0, 2, 1, 1, 5, -1, 0, 2],
        ),
    ] {
        let (idims2, iv2) = (idims.clone(), iv.clone());
        cs.push(case(
            name,
            vec![f64t(&x)],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                let idx = idx_const(b, &idims2, &iv2);
                vec![push(b, Op::Index(IndexOp::Gather(at)), &[p[0], idx])]
            }),
        ));
        // The scatters over the same positions: updates shaped as the gather's result.
        let udims = at
            .result_dims("scatter", &[], &f64t(&x), &Type::new(DType::I32, &idims))
            .unwrap();
        for combine in Combine::ALL {
            let (idims2, iv2) = (idims.clone(), iv.clone());
            // Multiplication by updates near zero is checked below with an exact zero.
            let (lo, hi) = match combine {
                Combine::Mul => (0.5, 1.5),
                _ => (-1.0, 1.0),
            };
            cs.push(case(
                &format!("{}_{name}", combine.op_name()),
                vec![f64t(&x), f64t(&udims)],
                lo,
                hi,
                Box::new(move |b, p| {
                    let idx = idx_const(b, &idims2, &iv2);
                    let op = Op::Index(IndexOp::Scatter { at, combine });
                    vec![push(b, op, &[p[0], idx, p[1]])]
                }),
            ));
        }
    }
    // scatter_mul's derivative where an update is exactly zero, alone or beside another zero.
    cs.push(case(
        "scatter_mul_zero_updates",
        vec![f64t(&[4, 2]), f64t(&[5, 2])],
        0.5,
        1.5,
        Box::new(move |b, p| {
            let idx = idx_const(b, &[5], &[1, 1, 2, 2, 3]);
            let mask = b.constant(
                Array::from_f64(
                    Shape::new(&[5, 2]),
                    vec![0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
                )
                .unwrap(),
            );
            let u = push(b, Op::Binary(BinaryOp::Mul), &[p[1], mask]);
            let op = Op::Index(IndexOp::Scatter {
                at: Indexing::default(),
                combine: Combine::Mul,
            });
            vec![push(b, op, &[p[0], idx, u])]
        }),
    ));
    // Windowed ops: a 2-D window with stride, padding and both dilations.
    let window = || {
        Window::new(&[2, 3])
            .with_strides(&[2, 1])
            .with_padding(&[(1, 0), (2, 1)])
            .with_base_dilation(&[1, 2])
            .with_window_dilation(&[2, 1])
    };
    for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
        let op = WindowOp::Reduce {
            monoid,
            window: window(),
        };
        cs.push(case(
            op.name(),
            vec![f64t(&[5, 4])],
            -1.0,
            1.0,
            Box::new(move |b, p| vec![push(b, Op::Window(Box::new(op.clone())), &[p[0]])]),
        ));
    }
    for select in [Select::Max, Select::Min] {
        let gather = WindowOp::SelectAndGatherAdd {
            select,
            window: window(),
        };
        let scatter = WindowOp::SelectAndScatterAdd {
            select,
            window: window(),
        };
        // Both operands carry tangents; the selecting one's derivative is zero.
        cs.push(case(
            gather.name(),
            vec![f64t(&[5, 4]), f64t(&[5, 4])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                vec![push(b, Op::Window(Box::new(gather.clone())), &[p[0], p[1]])]
            }),
        ));
        cs.push(case(
            scatter.name(),
            vec![f64t(&[2, 8]), f64t(&[5, 4])],
            -1.0,
            1.0,
            Box::new(move |b, p| {
                vec![push(
                    b,
                    Op::Window(Box::new(scatter.clone())),
                    &[p[0], p[1]],
                )]
            }),
        ));
    }
    cs
}

fn float_params(tys: &[Type]) -> Vec<usize> {
    (0..tys.len())
        .filter(|&i| tys[i].dtype.is_float())
        .collect()
}

fn check_case(c: &Case, rng: &mut Rng) {
    let g = build(&c.tys, |b, p| (c.body)(b, p));
    let n = c.tys.len();
    let k = g.outputs().len();
    let out_tys = g.output_types();
    let jvp = jvp_graph(&g, n).unwrap();
    let vjp = vjp_graph(&g, n).unwrap();
    let (primal, lin) = linearize_graph(&g, n).unwrap();
    for graph in [&jvp, &vjp, &primal, &lin] {
        graph.verify().unwrap();
    }
    let fl = float_params(&c.tys);
    // The scalar reduction: the sum of every float output.
    let summed = build(&c.tys, |b, p| {
        let outs = inline(b, &g, p).unwrap();
        let mut acc = cst(b, 0.0);
        for (o, ty) in outs.iter().zip(&out_tys) {
            if ty.dtype.is_float() {
                let f = b
                    .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[*o])
                    .unwrap();
                let s = sum_all(b, f);
                acc = bin(b, BinaryOp::Add, acc, s);
            }
        }
        vec![acc]
    });
    let grad = grad_graph(&summed, n, &fl, false).unwrap();
    grad.verify().unwrap();
    for point in 0..3 {
        let what = format!("{} at point {point}", c.name);
        let x = random_args(rng, &c.tys, c.lo, c.hi);
        let t = random_args(rng, &c.tys, -1.0, 1.0);
        // JVP against central differences.
        let mut args = x.clone();
        args.extend(t.iter().cloned());
        let jo = run(&jvp, &args);
        let plus: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, c.h, d)).collect();
        let minus: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, -c.h, d)).collect();
        let (fp, fm, f0) = (run(&g, &plus), run(&g, &minus), run(&g, &x));
        for o in 0..k {
            close_arrays(
                &jo[o],
                &f0[o],
                1e-12,
                &format!("{what}: jvp primal output {o}"),
            );
            if out_tys[o].dtype.is_float() {
                let fd: Vec<f64> = fp[o]
                    .to_f64_vec()
                    .iter()
                    .zip(fm[o].to_f64_vec())
                    .map(|(p, m)| (p - m) / (2.0 * c.h))
                    .collect();
                let fd = Array::from_f64(out_tys[o].shape.clone(), fd).unwrap();
                close_arrays(
                    &jo[k + o].cast(DType::F64),
                    &fd,
                    c.rtol * 10.0,
                    &format!("{what}: jvp vs fd, output {o}"),
                );
            } else {
                assert!(
                    jo[k + o].to_f64_vec().iter().all(|&v| v == 0.0),
                    "{what}: int output tangent"
                );
            }
        }
        // Linearize agrees with the JVP.
        let po = run(&primal, &x);
        let mut largs = po[k..].to_vec();
        largs.extend(t.iter().cloned());
        let lo = run(&lin, &largs);
        for o in 0..k {
            close_arrays(
                &lo[o],
                &jo[k + o],
                1e-12,
                &format!("{what}: linearize vs jvp, output {o}"),
            );
        }
        // VJP against the JVP: <ct, J t> = <J^T ct, t>.
        let ct: Vec<Array> = out_tys
            .iter()
            .map(|ty| {
                if ty.dtype.is_float() {
                    rng.array(ty, -1.0, 1.0)
                } else {
                    Array::zeros(ty).unwrap()
                }
            })
            .collect();
        let mut vargs = x.clone();
        vargs.extend(ct.iter().cloned());
        let vo = run(&vjp, &vargs);
        for o in 0..k {
            close_arrays(
                &vo[o],
                &f0[o],
                1e-12,
                &format!("{what}: vjp primal output {o}"),
            );
        }
        let lhs: f64 = (0..k)
            .filter(|&o| out_tys[o].dtype.is_float())
            .map(|o| dot(&ct[o], &jo[k + o]))
            .sum();
        let rhs: f64 = fl.iter().map(|&i| dot(&vo[k + i], &t[i])).sum();
        close(
            lhs,
            rhs,
            1e-9_f64.max(c.rtol),
            &format!("{what}: <ct, J t> vs <J^T ct, t>"),
        );
        // grad of the summed op against central differences of the sum.
        let go = run(&grad, &x);
        let gdot: f64 = fl.iter().zip(&go).map(|(&i, gi)| dot(gi, &t[i])).sum();
        let s = |a: &[Array]| run(&summed, a)[0].to_scalar().unwrap();
        let fd = (s(&plus) - s(&minus)) / (2.0 * c.h);
        close(
            gdot,
            fd,
            c.rtol * 10.0,
            &format!("{what}: grad of sum vs fd"),
        );
    }
}

#[test]
fn every_primitive_jvp_vjp_grad() {
    let mut rng = Rng(42);
    let cs = cases();
    for c in &cs {
        check_case(c, &mut rng);
    }
    println!("checked {} cases", cs.len());
}
