//! vmap against a loop-and-stack reference: for every primitive (one table row each), the
//! batched graph evaluated once must equal the original graph evaluated per member, with the
//! batch at the front, the last position and the middle, mixed with unbatched arguments.

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{
    BinaryOp, Bounds, Combine, CompareOp, ConvertOp, DotGeneral, IndexOp, Indexing, LiteralOp,
    ReduceOp, ShapeOp, UnaryOp,
};
use ferrax_ir::ops::{Monoid, Select, Window, WindowOp};
use ferrax_ir::{Array, Builder, DType, Dims, ErrorKind, Graph, Op, Result, Shape, Type, Value};
use ferrax_transforms::vmap::{vmap_graph, vmap_graph_sized};

mod common;
use common::batching::{close, stack, take, Rng};

/// Builds a row's graph body from its parameters.
type BuildFn = dyn Fn(&mut Builder, &[Value]) -> Result<Vec<Value>>;

/// One row of the table: a per-member function and its parameter types.
struct Case {
    name: String,
    params: Vec<Type>,
    /// How many leading parameters are arguments (the rest are captured values).
    explicit: usize,
    /// The range of float data.
    range: (f64, f64),
    build: Box<BuildFn>,
}

fn case(
    name: &str,
    params: Vec<Type>,
    build: impl Fn(&mut Builder, &[Value]) -> Result<Vec<Value>> + 'static,
) -> Case {
    let explicit = params.len();
    Case {
        name: name.to_string(),
        params,
        explicit,
        range: (-2.0, 2.0),
        build: Box::new(build),
    }
}

fn graph_of(c: &Case) -> Graph {
    let mut b = Builder::new();
    let ps: Vec<Value> = c.params.iter().map(|t| b.param(t.clone())).collect();
    let outs =
        (c.build)(&mut b, &ps).unwrap_or_else(|e| panic!("{}: building failed: {e}", c.name));
    let g = b.finish(&outs);
    g.verify().unwrap();
    g
}

const B: usize = 7;

/// Checks vmap of `g` against the loop-and-stack reference for one choice of axes.
fn check_axes(
    name: &str,
    g: &Graph,
    explicit: usize,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    range: (f64, f64),
    rng: &mut Rng,
) {
    let ctx = format!("{name} in_axes={in_axes:?} out_axes={out_axes:?}");
    let vg = vmap_graph_sized(g, explicit, in_axes, out_axes, B)
        .unwrap_or_else(|e| panic!("{ctx}: vmap failed: {e}"));
    vg.verify()
        .unwrap_or_else(|e| panic!("{ctx}: the batched graph does not verify: {e}"));
    let args: Vec<Array> = vg
        .param_types()
        .iter()
        .map(|t| rng.array(t, range.0, range.1))
        .collect();
    let got = eval(&vg, &args).unwrap_or_else(|e| panic!("{ctx}: eval failed: {e}"));
    let mut per_member: Vec<Vec<Array>> = vec![Vec::new(); g.outputs().len()];
    for m in 0..B {
        let margs: Vec<Array> = args
            .iter()
            .enumerate()
            .map(|(i, a)| match in_axes.get(i).copied().flatten() {
                Some(ax) => take(a, ax, m),
                None => a.clone(),
            })
            .collect();
        let outs = eval(g, &margs).unwrap_or_else(|e| panic!("{ctx}: reference failed: {e}"));
        for (k, o) in outs.into_iter().enumerate() {
            per_member[k].push(o);
        }
    }
    for (k, parts) in per_member.iter().enumerate() {
        let want = stack(parts, out_axes[k]);
        assert!(
            close(&got[k], &want),
            "{ctx}: output {k}\n got {}\nwant {}",
            got[k],
            want
        );
    }
}

/// Runs a row with the batch at 0, at the last position, in the middle, and mixed with
/// unbatched arguments.
fn check_case(c: &Case, rng: &mut Rng) {
    let g = graph_of(c);
    let ranks: Vec<usize> = c.params[..c.explicit].iter().map(|t| t.rank()).collect();
    let out_ranks: Vec<usize> = g.output_types().iter().map(|t| t.rank()).collect();
    let n = ranks.len();
    let mut variants: Vec<(Vec<Option<usize>>, Vec<usize>)> = vec![
        (
            ranks.iter().map(|_| Some(0)).collect(),
            out_ranks.iter().map(|_| 0).collect(),
        ),
        (ranks.iter().map(|&r| Some(r)).collect(), out_ranks.to_vec()),
        (
            ranks.iter().map(|&r| Some(r / 2)).collect(),
            out_ranks.iter().map(|&r| r.div_ceil(2)).collect(),
        ),
    ];
    if n >= 2 {
        for j in 0..n {
            let only_j: Vec<Option<usize>> = (0..n)
                .map(|i| (i == j).then_some(ranks[i].div_ceil(2)))
                .collect();
            let all_but_j: Vec<Option<usize>> =
                (0..n).map(|i| (i != j).then_some(ranks[i])).collect();
            variants.push((only_j, out_ranks.iter().map(|_| 0).collect()));
            variants.push((all_but_j, out_ranks.to_vec()));
        }
    }
    for (ia, oa) in variants {
        check_axes(&c.name, &g, c.explicit, &ia, &oa, c.range, rng);
    }
}

fn f64t(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}
fn i32t(dims: &[usize]) -> Type {
    Type::new(DType::I32, dims)
}
fn boolt(dims: &[usize]) -> Type {
    Type::new(DType::Bool, dims)
}
fn dims(d: &[usize]) -> Dims {
    Dims::from_slice(d)
}
fn op1(op: Op) -> impl Fn(&mut Builder, &[Value]) -> Result<Vec<Value>> {
    move |b: &mut Builder, p: &[Value]| Ok(vec![b.push1(op.clone(), p)?])
}

fn elementwise_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for op in UnaryOp::ALL {
        let mut c = case(op.name(), vec![f64t(&[3, 4])], op1(Op::Unary(op)));
        c.range = (0.1, 0.9);
        cases.push(c);
        if op.accepts_int() {
            cases.push(case(
                &format!("{}_i32", op.name()),
                vec![i32t(&[3, 4])],
                op1(Op::Unary(op)),
            ));
        }
    }
    for op in BinaryOp::ALL {
        let mut c = case(
            op.name(),
            vec![f64t(&[3, 4]), f64t(&[3, 4])],
            op1(Op::Binary(op)),
        );
        c.range = (0.1, 2.0);
        cases.push(c);
        if op.accepts_int() {
            let t = i32t(&[2, 3]);
            cases.push(case(
                &format!("{}_i32", op.name()),
                vec![t.clone(), t],
                op1(Op::Binary(op)),
            ));
        }
    }
    for op in CompareOp::ALL {
        let c = match op {
            CompareOp::Eq
            | CompareOp::Ne
            | CompareOp::Lt
            | CompareOp::Le
            | CompareOp::Gt
            | CompareOp::Ge => {
                let t = i32t(&[3, 2]);
                cases.push(case(
                    &format!("{}_i32", op.name()),
                    vec![t.clone(), t],
                    op1(Op::Compare(op)),
                ));
                case(
                    op.name(),
                    vec![f64t(&[3, 2]), f64t(&[3, 2])],
                    op1(Op::Compare(op)),
                )
            }
            CompareOp::And | CompareOp::Or => case(
                op.name(),
                vec![boolt(&[4]), boolt(&[4])],
                op1(Op::Compare(op)),
            ),
            CompareOp::Not => case(op.name(), vec![boolt(&[2, 3])], op1(Op::Compare(op))),
            CompareOp::Select => case(
                op.name(),
                vec![boolt(&[2, 3]), f64t(&[2, 3]), f64t(&[2, 3])],
                op1(Op::Compare(op)),
            ),
        };
        cases.push(c);
    }
    for (name, op, t) in [
        (
            "convert_f64_i32",
            ConvertOp::Convert(DType::I32),
            f64t(&[3, 2]),
        ),
        (
            "convert_i32_f64",
            ConvertOp::Convert(DType::F64),
            i32t(&[3, 2]),
        ),
        (
            "convert_f64_bool",
            ConvertOp::Convert(DType::Bool),
            f64t(&[4]),
        ),
        (
            "convert_bool_f32",
            ConvertOp::Convert(DType::F32),
            boolt(&[4]),
        ),
        ("stop_gradient", ConvertOp::StopGradient, f64t(&[2, 2])),
    ] {
        cases.push(case(name, vec![t], op1(Op::Convert(op))));
    }
    cases
}

fn literal_cases() -> Vec<Case> {
    vec![
        case("identity", vec![f64t(&[2, 3]), boolt(&[2])], |_, p| {
            Ok(vec![p[1], p[0], p[0]])
        }),
        case("const", vec![f64t(&[2, 3])], |b, p| {
            let c = b.constant(Array::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
            Ok(vec![b.push1(Op::Binary(BinaryOp::Mul), &[p[0], c])?, c])
        }),
        case("iota", vec![i32t(&[2, 3])], |b, p| {
            let op = LiteralOp::Iota {
                dtype: DType::I32,
                shape: Shape::new(&[2, 3]),
                axis: 1,
            };
            let i = b.push1(Op::Literal(op), &[])?;
            Ok(vec![b.push1(Op::Binary(BinaryOp::Add), &[p[0], i])?])
        }),
    ]
}

fn shape_cases() -> Vec<Case> {
    let sh = |op: ShapeOp| op1(Op::Shape(op));
    vec![
        case(
            "broadcast_in_dim",
            vec![f64t(&[3])],
            sh(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[2, 3, 4]),
                dims: Box::new([1]),
            }),
        ),
        case(
            "broadcast_in_dim_expand",
            vec![f64t(&[3, 1])],
            sh(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[3, 5, 2]),
                dims: Box::new([0, 2]),
            }),
        ),
        case(
            "broadcast_in_dim_scalar",
            vec![f64t(&[])],
            sh(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[2, 2]),
                dims: Box::new([]),
            }),
        ),
        case(
            "reshape",
            vec![f64t(&[3, 4])],
            sh(ShapeOp::Reshape {
                shape: Shape::new(&[2, 6]),
            }),
        ),
        case(
            "reshape_flat",
            vec![i32t(&[2, 3, 2])],
            sh(ShapeOp::Reshape {
                shape: Shape::new(&[12]),
            }),
        ),
        case(
            "transpose",
            vec![f64t(&[2, 3, 4])],
            sh(ShapeOp::Transpose {
                perm: Box::new([2, 0, 1]),
            }),
        ),
        case(
            "slice",
            vec![f64t(&[5, 6])],
            sh(ShapeOp::Slice {
                start: Box::new([1, 0]),
                limit: Box::new([5, 5]),
                stride: Box::new([2, 2]),
            }),
        ),
        case(
            "pad",
            vec![f64t(&[3, 2]), f64t(&[])],
            sh(ShapeOp::Pad {
                lo: Box::new([1, 0]),
                hi: Box::new([0, 2]),
                interior: Box::new([1, 1]),
            }),
        ),
        case(
            "pad_bool",
            vec![boolt(&[3]), boolt(&[])],
            sh(ShapeOp::Pad {
                lo: Box::new([2]),
                hi: Box::new([1]),
                interior: Box::new([0]),
            }),
        ),
        case(
            "concatenate",
            vec![f64t(&[2, 3]), f64t(&[2, 1]), f64t(&[2, 2])],
            sh(ShapeOp::Concatenate { axis: 1 }),
        ),
        case(
            "rev",
            vec![f64t(&[3, 2, 4])],
            sh(ShapeOp::Rev {
                axes: Box::new([2, 0]),
            }),
        ),
    ]
}

fn reduce_cases() -> Vec<Case> {
    let r = |op: ReduceOp| op1(Op::Reduce(op));
    let t = f64t(&[2, 3, 4]);
    vec![
        case(
            "reduce_sum",
            vec![t.clone()],
            r(ReduceOp::Sum {
                axes: dims(&[0, 2]),
            }),
        ),
        case(
            "reduce_sum_all",
            vec![t.clone()],
            r(ReduceOp::Sum {
                axes: dims(&[0, 1, 2]),
            }),
        ),
        case(
            "reduce_sum_i32",
            vec![i32t(&[3, 4])],
            r(ReduceOp::Sum { axes: dims(&[1]) }),
        ),
        case(
            "reduce_max",
            vec![t.clone()],
            r(ReduceOp::Max { axes: dims(&[1]) }),
        ),
        case(
            "reduce_min",
            vec![t.clone()],
            r(ReduceOp::Min {
                axes: dims(&[0, 1]),
            }),
        ),
        case(
            "reduce_prod",
            vec![t.clone()],
            r(ReduceOp::Prod { axes: dims(&[2]) }),
        ),
        case("argmax", vec![t.clone()], r(ReduceOp::ArgMax { axis: 1 })),
        case("argmin", vec![t], r(ReduceOp::ArgMin { axis: 2 })),
        case(
            "argmax_i32",
            vec![i32t(&[4, 3])],
            r(ReduceOp::ArgMax { axis: 0 }),
        ),
    ]
}

fn dot(lc: &[usize], rc: &[usize], lb: &[usize], rb: &[usize]) -> Op {
    Op::Dot(Box::new(DotGeneral {
        lhs_contract: dims(lc),
        rhs_contract: dims(rc),
        lhs_batch: dims(lb),
        rhs_batch: dims(rb),
    }))
}

fn dot_cases() -> Vec<Case> {
    vec![
        case(
            "matmul",
            vec![f64t(&[3, 4]), f64t(&[4, 5])],
            op1(dot(&[1], &[0], &[], &[])),
        ),
        case(
            "matvec",
            vec![f64t(&[3, 4]), f64t(&[4])],
            op1(dot(&[1], &[0], &[], &[])),
        ),
        case(
            "vecdot",
            vec![f64t(&[4]), f64t(&[4])],
            op1(dot(&[0], &[0], &[], &[])),
        ),
        case(
            "outer",
            vec![f64t(&[2]), f64t(&[3])],
            op1(dot(&[], &[], &[], &[])),
        ),
        case(
            "batched_matmul",
            vec![f64t(&[2, 3, 4]), f64t(&[4, 2, 5])],
            op1(dot(&[2], &[0], &[0], &[1])),
        ),
        case(
            "matmul_i32",
            vec![i32t(&[2, 3]), i32t(&[3, 2])],
            op1(dot(&[1], &[0], &[], &[])),
        ),
        case(
            "matmul_t",
            vec![f64t(&[4, 3]), f64t(&[5, 4])],
            op1(dot(&[0], &[1], &[], &[])),
        ),
    ]
}

fn index_cases() -> Vec<Case> {
    let ix = |op: IndexOp| op1(Op::Index(op));
    vec![
        case(
            "cumsum",
            vec![f64t(&[3, 4])],
            ix(IndexOp::Cumsum {
                axis: 1,
                reverse: false,
            }),
        ),
        case(
            "cumsum_rev_i32",
            vec![i32t(&[3, 4])],
            ix(IndexOp::Cumsum {
                axis: 0,
                reverse: true,
            }),
        ),
        case(
            "dynamic_slice",
            vec![f64t(&[5, 6]), i32t(&[]), i32t(&[])],
            ix(IndexOp::DynamicSlice {
                sizes: dims(&[2, 3]),
            }),
        ),
        case(
            "dynamic_slice_1d",
            vec![i32t(&[6]), i32t(&[])],
            ix(IndexOp::DynamicSlice { sizes: dims(&[4]) }),
        ),
        case(
            "dynamic_update_slice",
            vec![f64t(&[5, 6]), f64t(&[2, 3]), i32t(&[]), i32t(&[])],
            ix(IndexOp::DynamicUpdateSlice),
        ),
        case(
            "dynamic_update_slice_bool",
            vec![boolt(&[5]), boolt(&[2]), i32t(&[])],
            ix(IndexOp::DynamicUpdateSlice),
        ),
        case(
            "gather",
            vec![f64t(&[5, 3]), i32t(&[4])],
            ix(IndexOp::Gather(Default::default())),
        ),
        case(
            "gather_2d_index",
            vec![f64t(&[4]), i32t(&[2, 3])],
            ix(IndexOp::Gather(Default::default())),
        ),
        case(
            "gather_rank3",
            vec![i32t(&[5, 2, 3]), i32t(&[2])],
            ix(IndexOp::Gather(Default::default())),
        ),
        case(
            "scatter_add",
            vec![f64t(&[5, 3]), i32t(&[4]), f64t(&[4, 3])],
            ix(IndexOp::Scatter {
                at: Default::default(),
                combine: ferrax_ir::ops::Combine::Add,
            }),
        ),
        case(
            "scatter_add_2d_index",
            vec![f64t(&[4]), i32t(&[2, 3]), f64t(&[2, 3])],
            ix(IndexOp::Scatter {
                at: Default::default(),
                combine: ferrax_ir::ops::Combine::Add,
            }),
        ),
    ]
}

fn run(cases: Vec<Case>, seed: u64) {
    let mut rng = Rng(seed);
    for c in &cases {
        check_case(c, &mut rng);
    }
}

#[test]
fn elementwise_ops() {
    run(elementwise_cases(), 1);
}

#[test]
fn literal_ops() {
    run(literal_cases(), 2);
}

#[test]
fn shape_ops() {
    run(shape_cases(), 3);
}

#[test]
fn reduce_ops() {
    run(reduce_cases(), 4);
}

#[test]
fn dot_ops() {
    run(dot_cases(), 5);
}

#[test]
fn index_ops() {
    run(index_cases(), 6);
}

/// Windowed ops: a window with stride, padding and both dilations, in f64 and i32; the select
/// ops with both operands batched or only one.
fn window_cases() -> Vec<Case> {
    let window = || {
        Window::new(&[2, 2])
            .with_strides(&[1, 2])
            .with_padding(&[(1, 0), (0, 1)])
            .with_base_dilation(&[2, 1])
            .with_window_dilation(&[1, 2])
    };
    let mut cases = Vec::new();
    for monoid in [Monoid::Sum, Monoid::Max, Monoid::Min] {
        let op = WindowOp::Reduce {
            monoid,
            window: window(),
        };
        cases.push(case(
            op.name(),
            vec![f64t(&[3, 5])],
            op1(Op::Window(Box::new(op.clone()))),
        ));
        cases.push(case(
            &format!("{}_i32", op.name()),
            vec![i32t(&[3, 5])],
            op1(Op::Window(Box::new(op))),
        ));
    }
    for select in [Select::Max, Select::Min] {
        let gather = WindowOp::SelectAndGatherAdd {
            select,
            window: window(),
        };
        cases.push(case(
            gather.name(),
            vec![f64t(&[3, 5]), f64t(&[3, 5])],
            op1(Op::Window(Box::new(gather))),
        ));
        let scatter = WindowOp::SelectAndScatterAdd {
            select,
            window: window(),
        };
        cases.push(case(
            scatter.name(),
            vec![f64t(&[5, 2]), f64t(&[3, 5])],
            op1(Op::Window(Box::new(scatter))),
        ));
    }
    cases
}

#[test]
fn window_ops() {
    run(window_cases(), 8);
}

/// Gathers and scatters along every kind of axis, both bounds and every combine; the i32 data
/// (−2..=6) holds negative and out-of-range indices.
fn axis_index_cases() -> Vec<Case> {
    let mut cs = Vec::new();
    let kinds = [
        (1, false, vec![3usize, 4, 2], vec![2usize, 3]),
        (2, false, vec![3, 2, 5], vec![4]),
        (1, true, vec![3, 4], vec![3, 6]),
        (0, true, vec![4, 3, 2], vec![2, 3, 2]),
    ];
    for (axis, along, x, idims) in kinds {
        for bounds in [Bounds::Clip, Bounds::Fill] {
            let at = Indexing {
                axis,
                along,
                bounds,
            };
            let tag = format!("axis{axis}_along{along}_{}", bounds.name());
            cs.push(case(
                &format!("gather_{tag}"),
                vec![f64t(&x), i32t(&idims)],
                op1(Op::Index(IndexOp::Gather(at))),
            ));
            let udims = at
                .result_dims("scatter", &[], &f64t(&x), &i32t(&idims))
                .unwrap();
            for combine in Combine::ALL {
                cs.push(case(
                    &format!("{}_{tag}", combine.op_name()),
                    vec![f64t(&x), i32t(&idims), f64t(&udims)],
                    op1(Op::Index(IndexOp::Scatter { at, combine })),
                ));
            }
        }
    }
    cs
}

#[test]
fn axis_gathers_and_scatters() {
    run(axis_index_cases(), 16);
}

#[test]
fn take_and_stack_are_inverse() {
    let mut rng = Rng(7);
    let a = rng.array(&f64t(&[2, 3, 4]), -1.0, 1.0);
    for axis in 0..3 {
        let parts: Vec<Array> = (0..a.dims()[axis]).map(|i| take(&a, axis, i)).collect();
        assert!(stack(&parts, axis).bits_eq(&a), "axis {axis}");
    }
    assert_eq!(take(&a, 1, 2).dims(), &[2, 4]);
}

/// A small network: captured weights, a bias argument, tanh, and a softmax over the outputs.
fn mlp_case() -> Case {
    let mut c = case(
        "mlp",
        vec![f64t(&[4]), f64t(&[3]), f64t(&[4, 3])],
        |b, p| {
            let (x, bias, w) = (p[0], p[1], p[2]);
            let h = b.push1(dot(&[0], &[0], &[], &[]), &[x, w])?;
            let h = b.push1(Op::Binary(BinaryOp::Add), &[h, bias])?;
            let h = b.push1(Op::Unary(UnaryOp::Tanh), &[h])?;
            let m = b.push1(Op::Reduce(ReduceOp::Max { axes: dims(&[0]) }), &[h])?;
            let shape = ShapeOp::BroadcastInDim {
                shape: Shape::new(&[3]),
                dims: Box::new([]),
            };
            let m = b.push1(Op::Shape(shape.clone()), &[m])?;
            let e = b.push1(Op::Binary(BinaryOp::Sub), &[h, m])?;
            let e = b.push1(Op::Unary(UnaryOp::Exp), &[e])?;
            let z = b.push1(Op::Reduce(ReduceOp::Sum { axes: dims(&[0]) }), &[e])?;
            let z = b.push1(Op::Shape(shape), &[z])?;
            let y = b.push1(Op::Binary(BinaryOp::Div), &[e, z])?;
            let loss = b.push1(Op::Reduce(ReduceOp::Sum { axes: dims(&[0]) }), &[y])?;
            Ok(vec![y, loss, w])
        },
    );
    c.explicit = 2;
    c
}

#[test]
fn composite_with_captured_values() {
    let mut rng = Rng(8);
    check_case(&mlp_case(), &mut rng);
}

#[test]
fn unbatched_arguments_broadcast_outputs() {
    let mut rng = Rng(9);
    let c = mlp_case();
    let g = graph_of(&c);
    check_axes(
        "mlp_unbatched",
        &g,
        2,
        &[None, None],
        &[1, 0, 2],
        c.range,
        &mut rng,
    );
    check_axes(
        "mlp_bias_only",
        &g,
        2,
        &[None, Some(1)],
        &[0, 0, 1],
        c.range,
        &mut rng,
    );
}

#[test]
fn nested_vmap() {
    let mut rng = Rng(10);
    for c in [
        mlp_case(),
        dot_cases().remove(0),
        shape_cases().remove(6),
        index_cases().remove(4),
    ] {
        let g = graph_of(&c);
        let n = c.explicit;
        let outs = g.outputs().len();
        let in_axes: Vec<Option<usize>> = c.params[..n]
            .iter()
            .enumerate()
            .map(|(i, t)| (i % 2 == 0).then_some(t.rank()))
            .collect();
        let in_axes = if in_axes.iter().all(|a| a.is_none()) {
            vec![Some(0); n]
        } else {
            in_axes
        };
        let inner = vmap_graph_sized(&g, n, &in_axes, &vec![0; outs], 3).unwrap();
        check_axes(&c.name, &g, n, &in_axes, &vec![0; outs], c.range, &mut rng);
        // The outer vmap batches every argument of the inner one in the middle, with the
        // outputs' batch axis last.
        let mid: Vec<Option<usize>> = inner.param_types()[..n]
            .iter()
            .map(|t| Some(t.rank() / 2))
            .collect();
        let last: Vec<usize> = inner.output_types().iter().map(|t| t.rank()).collect();
        let name = format!("vmap(vmap({}))", c.name);
        check_axes(&name, &inner, n, &mid, &last, c.range, &mut rng);
    }
}

#[test]
fn batched_graph_is_loop_free() {
    let g = graph_of(&mlp_case());
    for c in index_cases().iter().chain([&mlp_case()]) {
        let g = graph_of(c);
        let axes = vec![Some(0); c.explicit];
        let outs = vec![0; g.outputs().len()];
        let small = vmap_graph_sized(&g, c.explicit, &axes, &outs, 2).unwrap();
        let large = vmap_graph_sized(&g, c.explicit, &axes, &outs, 64).unwrap();
        assert_eq!(small.num_insts(), large.num_insts(), "{}", c.name);
    }
    // Elementwise ops whose arguments share the batch position need no data movement.
    let vg = vmap_graph_sized(&g, 2, &[Some(0), None], &[0, 0, 0], 5).unwrap();
    assert!(
        vg.num_insts() <= g.num_insts() + 4,
        "{} vs {}",
        vg.num_insts(),
        g.num_insts()
    );
}

#[test]
fn batch_size_from_argument_types() {
    let mut rng = Rng(11);
    let g = graph_of(&dot_cases().remove(0));
    let vg = vmap_graph(
        &g,
        2,
        &[Some(2), None],
        &[1],
        &[f64t(&[3, 4, 6]), f64t(&[4, 5])],
    )
    .unwrap();
    assert_eq!(vg.param_types(), vec![f64t(&[3, 4, 6]), f64t(&[4, 5])]);
    assert_eq!(vg.output_types(), vec![f64t(&[3, 6, 5])]);
    let args: Vec<Array> = vg
        .param_types()
        .iter()
        .map(|t| rng.array(t, -1.0, 1.0))
        .collect();
    let got = eval(&vg, &args).unwrap();
    let parts: Vec<Array> = (0..6)
        .map(|m| {
            eval(&g, &[take(&args[0], 2, m), args[1].clone()])
                .unwrap()
                .remove(0)
        })
        .collect();
    assert!(close(&got[0], &stack(&parts, 1)));
}

#[test]
fn errors_are_reported() {
    let g = graph_of(&dot_cases().remove(0));
    let kind = |r: Result<Graph>| r.map(|_| ()).unwrap_err().kind;
    let (a, b) = (f64t(&[3, 4]), f64t(&[4, 5]));
    // Batch sizes that disagree.
    let r = vmap_graph(
        &g,
        2,
        &[Some(0), Some(0)],
        &[0],
        &[f64t(&[5, 3, 4]), f64t(&[6, 4, 5])],
    );
    assert_eq!(kind(r), ErrorKind::Shape);
    // An argument type that is not the parameter type with a batch axis.
    let r = vmap_graph(
        &g,
        2,
        &[Some(0), None],
        &[0],
        &[f64t(&[5, 3, 4]), f64t(&[5, 4, 5])],
    );
    assert_eq!(kind(r), ErrorKind::Shape);
    // No batched argument and no explicit size.
    let r = vmap_graph(&g, 2, &[None, None], &[0], &[a.clone(), b.clone()]);
    assert_eq!(kind(r), ErrorKind::Transform);
    // Axes out of range.
    let r = vmap_graph(&g, 2, &[Some(3), None], &[0], &[f64t(&[3, 4, 6]), b]);
    assert_eq!(kind(r), ErrorKind::Axis);
    assert_eq!(
        kind(vmap_graph_sized(&g, 2, &[Some(3), None], &[0], 4)),
        ErrorKind::Axis
    );
    assert_eq!(
        kind(vmap_graph_sized(&g, 2, &[Some(0), None], &[3], 4)),
        ErrorKind::Axis
    );
    // Wrong counts.
    assert_eq!(
        kind(vmap_graph_sized(&g, 2, &[Some(0)], &[0], 4)),
        ErrorKind::Arity
    );
    assert_eq!(
        kind(vmap_graph_sized(&g, 3, &[None; 3], &[0], 4)),
        ErrorKind::Arity
    );
    assert_eq!(
        kind(vmap_graph_sized(&g, 2, &[Some(0), None], &[0, 0], 4)),
        ErrorKind::Arity
    );
    let _ = a;
}

#[test]
fn empty_batch() {
    let mut rng = Rng(12);
    let all = [
        elementwise_cases(),
        shape_cases(),
        reduce_cases(),
        dot_cases(),
        index_cases(),
    ];
    for c in all.iter().flatten() {
        let g = graph_of(c);
        let axes = vec![Some(0); c.explicit];
        let outs = vec![0; g.outputs().len()];
        let vg = vmap_graph_sized(&g, c.explicit, &axes, &outs, 0).unwrap();
        vg.verify().unwrap();
        let args: Vec<Array> = vg
            .param_types()
            .iter()
            .map(|t| rng.array(t, 0.1, 0.9))
            .collect();
        let got = eval(&vg, &args).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        for (o, t) in got.iter().zip(g.output_types()) {
            assert_eq!(o.dims()[0], 0, "{}", c.name);
            assert_eq!(&o.dims()[1..], t.dims(), "{}", c.name);
        }
    }
}
