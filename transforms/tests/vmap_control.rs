//! vmap of control flow against a loop-and-stack reference: for `switch`, `while`, `scan`,
//! `call` (checkpoint, custom JVP, custom VJP), `taped_while` and nested control flow, the
//! batched graph evaluated once must equal the original graph evaluated per member, with the
//! batch at the front, the last position and the middle, and with batched and unbatched
//! indices, predicates, loop-invariant operands and carries. The sub-graphs of batched custom
//! rules are checked the same way, so derivatives of a batched call still follow the rule.

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{
    BinaryOp, Body, CallKind, CompareOp, ControlOp, ReduceOp, RematPolicy, ShapeOp, UnaryOp,
};
use ferrax_ir::{Array, Builder, DType, Graph, Op, Shape, Type, Value};
use ferrax_transforms::vmap::vmap_graph_sized;

/// The batch size of every test.
const B: usize = 5;

mod common;
use common::batching::{close, stack, take, Rng};

fn f64t(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

fn i32s() -> Type {
    Type::scalar(DType::I32)
}

/// A graph with parameters of `tys` and the outputs `f` builds (constants are not folded, so
/// the graphs keep their control ops).
fn build(tys: &[Type], f: impl FnOnce(&mut Builder, &[Value]) -> Vec<Value>) -> Graph {
    let mut b = Builder::new();
    b.fold_constants = false;
    let ps: Vec<Value> = tys.iter().map(|t| b.param(t.clone())).collect();
    let outs = f(&mut b, &ps);
    let g = b.finish(&outs);
    g.verify().unwrap();
    g
}

fn un(b: &mut Builder, op: UnaryOp, x: Value) -> Value {
    b.push1(Op::Unary(op), &[x]).unwrap()
}

fn bin(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Value {
    b.push1(Op::Binary(op), &[x, y]).unwrap()
}

fn cst(b: &mut Builder, dtype: DType, x: f64) -> Value {
    b.constant(Array::scalar(dtype, x))
}

/// Broadcasts a scalar to `dims`.
fn spread(b: &mut Builder, x: Value, dims: &[usize]) -> Value {
    let op = ShapeOp::BroadcastInDim {
        shape: Shape::new(dims),
        dims: Box::default(),
    };
    b.push1(Op::Shape(op), &[x]).unwrap()
}

fn sum_all(b: &mut Builder, x: Value) -> Value {
    let rank = b.ty(x).rank();
    let op = ReduceOp::Sum {
        axes: (0..rank).collect(),
    };
    b.push1(Op::Reduce(op), &[x]).unwrap()
}

fn control(b: &mut Builder, op: ControlOp, args: &[Value]) -> Vec<Value> {
    b.push(Op::Control(op), args).unwrap().to_vec()
}

/// Checks vmap of `g` against the loop-and-stack reference for one choice of axes and returns
/// the batched graph.
fn check_axes(
    name: &str,
    g: &Graph,
    in_axes: &[Option<usize>],
    out_axes: &[usize],
    rng: &mut Rng,
) -> Graph {
    let ctx = format!("{name} in_axes={in_axes:?} out_axes={out_axes:?}");
    let vg = vmap_graph_sized(g, in_axes.len(), in_axes, out_axes, B)
        .unwrap_or_else(|e| panic!("{ctx}: vmap failed: {e}"));
    vg.verify()
        .unwrap_or_else(|e| panic!("{ctx}: the batched graph does not verify: {e}"));
    let args: Vec<Array> = vg
        .param_types()
        .iter()
        .map(|t| rng.array(t, -1.0, 1.0))
        .collect();
    let got = eval(&vg, &args).unwrap_or_else(|e| panic!("{ctx}: eval failed: {e}\n{vg}"));
    let mut per_member: Vec<Vec<Array>> = vec![Vec::new(); g.outputs().len()];
    for m in 0..B {
        let margs: Vec<Array> = args
            .iter()
            .zip(in_axes)
            .map(|(a, ax)| match ax {
                Some(ax) => take(a, *ax, m),
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
            "{ctx}: output {k}\n got {}\nwant {}\n{vg}",
            got[k],
            want
        );
    }
    vg
}

/// The axis variants of a row: every argument batched at 0, at its last position and in the
/// middle; each argument alone batched; every argument but one batched.
fn variants(g: &Graph) -> Vec<(Vec<Option<usize>>, Vec<usize>)> {
    let ranks: Vec<usize> = g.param_types().iter().map(|t| t.rank()).collect();
    let out_ranks: Vec<usize> = g.output_types().iter().map(|t| t.rank()).collect();
    let n = ranks.len();
    let mut vs = vec![
        (
            ranks.iter().map(|_| Some(0)).collect(),
            out_ranks.iter().map(|_| 0).collect(),
        ),
        (ranks.iter().map(|&r| Some(r)).collect(), out_ranks.clone()),
        (
            ranks.iter().map(|&r| Some(r / 2)).collect(),
            out_ranks.iter().map(|&r| r.div_ceil(2)).collect(),
        ),
    ];
    if n >= 2 {
        for j in 0..n {
            let only_j = (0..n)
                .map(|i| (i == j).then_some(ranks[i].div_ceil(2)))
                .collect();
            let all_but_j = (0..n).map(|i| (i != j).then_some(ranks[i])).collect();
            vs.push((only_j, out_ranks.iter().map(|_| 0).collect()));
            vs.push((all_but_j, out_ranks.clone()));
        }
    }
    vs
}

/// Runs every axis variant of `g`; returns the batched graphs.
fn check_all(name: &str, g: &Graph, seed: u64) -> Vec<Graph> {
    let mut rng = Rng(seed);
    variants(g)
        .into_iter()
        .map(|(ia, oa)| check_axes(name, g, &ia, &oa, &mut rng))
        .collect()
}

/// The control op of the first control equation of `g`.
fn first_control(g: &Graph) -> ControlOp {
    g.insts()
        .find_map(|(_, d)| match &d.op {
            Op::Control(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the batched graph keeps a control op")
}

/// Checks a batched sub-graph against the original one: parameters and outputs whose type has
/// one more (leading) dimension than the original's are batched at 0, the others are not.
fn check_body(name: &str, orig: &Graph, batched: &Graph, rng: &mut Rng) {
    batched.verify().unwrap();
    let in_b: Vec<bool> = orig
        .param_types()
        .iter()
        .zip(batched.param_types())
        .map(|(o, t)| {
            assert!(t == *o || t.dims()[1..] == *o.dims(), "{name}: {t} for {o}");
            t != *o
        })
        .collect();
    let args: Vec<Array> = batched
        .param_types()
        .iter()
        .map(|t| rng.array(t, -1.0, 1.0))
        .collect();
    let got = eval(batched, &args).unwrap();
    for m in 0..B {
        let margs: Vec<Array> = args
            .iter()
            .zip(&in_b)
            .map(|(a, &b)| if b { take(a, 0, m) } else { a.clone() })
            .collect();
        let want = eval(orig, &margs).unwrap();
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = if g.ty() == w.ty() {
                g.clone()
            } else {
                take(g, 0, m)
            };
            assert!(
                close(&g, w),
                "{name}: output {k} member {m}\n got {g}\nwant {w}"
            );
        }
    }
}

/// `switch(k, x:f64[3], s:f64[])` over three branches with two results.
fn switch_graph() -> Graph {
    let tys = [f64t(&[3]), f64t(&[])];
    let b0 = build(&tys, |b, p| {
        let s = un(b, UnaryOp::Sin, p[0]);
        vec![s, p[1]]
    });
    let b1 = build(&tys, |b, p| {
        let c = un(b, UnaryOp::Cos, p[0]);
        let s3 = spread(b, p[1], &[3]);
        let m = bin(b, BinaryOp::Mul, c, s3);
        let n = un(b, UnaryOp::Neg, p[1]);
        vec![m, n]
    });
    // The third branch ignores its operands for the second result.
    let b2 = build(&tys, |b, p| {
        let e = un(b, UnaryOp::Exp, p[0]);
        let t = cst(b, DType::F64, 2.5);
        vec![e, t]
    });
    build(&[i32s(), f64t(&[3]), f64t(&[])], |b, p| {
        let op = ControlOp::Switch {
            branches: [b0, b1, b2].into_iter().map(Body::new).collect(),
        };
        control(b, op, p)
    })
}

#[test]
fn switch_batched_and_unbatched_index() {
    let g = switch_graph();
    let batched = check_all("switch", &g, 1);
    // With only the operands batched the index stays unbatched and the switch stays a switch.
    let only_x = &batched[5];
    assert!(matches!(first_control(only_x), ControlOp::Switch { .. }));
    // With a batched index the branches are inlined and combined with selects.
    assert!(batched[0]
        .insts()
        .all(|(_, d)| !matches!(d.op, Op::Control(_))));
}

/// `while i < n { i += 1; x = x * a + sin(x) }` with `(n, a)` loop-invariant and carry
/// `(i, x:f64[2])`.
fn while_graph() -> Graph {
    let state = [i32s(), f64t(&[]), i32s(), f64t(&[2])];
    let cond = build(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[2], p[0]]).unwrap()]
    });
    let body = build(&state, |b, p| {
        let one = cst(b, DType::I32, 1.0);
        let j = bin(b, BinaryOp::Add, p[2], one);
        let a2 = spread(b, p[1], &[2]);
        let xa = bin(b, BinaryOp::Mul, p[3], a2);
        let s = un(b, UnaryOp::Sin, p[3]);
        let y = bin(b, BinaryOp::Add, xa, s);
        vec![j, y]
    });
    build(&state, |b, p| {
        let op = ControlOp::While {
            cond: Body::new(cond),
            body: Body::new(body),
            n_consts: 2,
        };
        control(b, op, p)
    })
}

#[test]
fn while_with_batched_and_unbatched_predicate() {
    let g = while_graph();
    let batched = check_all("while", &g, 2);
    // Only `a` batched (variant 4: argument 1 alone): the predicate stays unbatched, so the
    // loop keeps its plain condition.
    let ControlOp::While { cond, .. } = first_control(&batched[5]) else {
        panic!("a while loop")
    };
    assert_eq!(cond.graph().num_insts(), 1, "{}", cond.graph());
    // A batched bound: the loop runs while any member's predicate holds.
    let ControlOp::While { cond, .. } = first_control(&batched[3]) else {
        panic!("a while loop")
    };
    assert!(
        cond.graph().to_text().contains("reduce_max"),
        "{}",
        cond.graph()
    );
}

/// A scan with a loop-invariant weight `w`, a carry `c:f64[2]` and two scanned sequences
/// `xs:f64[4,2]`, `zs:f64[4]`; outputs the final carry and two stacked sequences, one of
/// which does not depend on anything batched when only `w` is.
fn scan_graph(reverse: bool) -> Graph {
    let slice = [f64t(&[]), f64t(&[2]), f64t(&[2]), f64t(&[])];
    let body = build(&slice, |b, p| {
        let w2 = spread(b, p[0], &[2]);
        let z2 = spread(b, p[3], &[2]);
        let wx = bin(b, BinaryOp::Mul, w2, p[2]);
        let wxz = bin(b, BinaryOp::Mul, wx, z2);
        let c = bin(b, BinaryOp::Add, p[1], wxz);
        let s = un(b, UnaryOp::Sin, c);
        let y = bin(b, BinaryOp::Mul, s, z2);
        let zz = un(b, UnaryOp::Cos, p[3]);
        vec![c, y, zz]
    });
    build(
        &[f64t(&[]), f64t(&[2]), f64t(&[4, 2]), f64t(&[4])],
        |b, p| {
            let op = ControlOp::Scan {
                body: Body::new(body),
                length: 4,
                n_consts: 1,
                n_carry: 1,
                reverse,
            };
            control(b, op, p)
        },
    )
}

#[test]
fn scan_forward_and_reverse() {
    check_all("scan", &scan_graph(false), 3);
    let batched = check_all("scan reverse", &scan_graph(true), 4);
    // Only `w` batched: the carry becomes batched through the body, the `cos z` output does
    // not.
    let vg = &batched[3];
    let ControlOp::Scan { body, .. } = first_control(vg) else {
        panic!("a scan")
    };
    assert_eq!(
        body.graph().output_types(),
        vec![f64t(&[B, 2]), f64t(&[B, 2]), f64t(&[])]
    );
}

/// A checkpointed call of `(x:f64[3], y:f64[3]) -> (sin x * y, sum x)`.
fn checkpoint_graph() -> Graph {
    let tys = [f64t(&[3]), f64t(&[3])];
    let body = build(&tys, |b, p| {
        let s = un(b, UnaryOp::Sin, p[0]);
        let m = bin(b, BinaryOp::Mul, s, p[1]);
        let t = sum_all(b, p[0]);
        vec![m, t]
    });
    build(&tys, |b, p| {
        let op = ControlOp::Call {
            body: Body::new(body),
            kind: CallKind::Checkpoint(RematPolicy::DotsOnly),
        };
        control(b, op, p)
    })
}

#[test]
fn checkpoint_keeps_its_kind() {
    let batched = check_all("checkpoint", &checkpoint_graph(), 5);
    for vg in &batched {
        let ControlOp::Call { kind, .. } = first_control(vg) else {
            panic!("a call")
        };
        assert_eq!(kind, CallKind::Checkpoint(RematPolicy::DotsOnly));
    }
}

/// softplus with a custom JVP rule: `(x:f64[2], k:f64[]) -> log1p(exp x) * k`, the rule
/// `(x, k, tx) -> (y, k * logistic(x) * tx)`; `k` is not differentiated.
fn custom_jvp_graph() -> Graph {
    let tys = [f64t(&[2]), f64t(&[])];
    let softplus = |b: &mut Builder, p: &[Value]| {
        let e = un(b, UnaryOp::Exp, p[0]);
        let l = un(b, UnaryOp::Log1p, e);
        let k2 = spread(b, p[1], &[2]);
        (bin(b, BinaryOp::Mul, l, k2), k2)
    };
    let body = build(&tys, |b, p| vec![softplus(b, p).0]);
    let rule = build(&[f64t(&[2]), f64t(&[]), f64t(&[2])], |b, p| {
        let (y, k2) = softplus(b, p);
        let s = un(b, UnaryOp::Logistic, p[0]);
        let ks = bin(b, BinaryOp::Mul, k2, s);
        let t = bin(b, BinaryOp::Mul, ks, p[2]);
        vec![y, t]
    });
    build(&tys, |b, p| {
        let op = ControlOp::Call {
            body: Body::new(body),
            kind: CallKind::CustomJvp {
                rule: Body::new(rule),
                n_diff: 1,
            },
        };
        control(b, op, p)
    })
}

#[test]
fn custom_jvp_rule_is_batched_with_the_body() {
    let g = custom_jvp_graph();
    let ControlOp::Call {
        kind: CallKind::CustomJvp { rule, .. },
        ..
    } = first_control(&g)
    else {
        panic!("a custom_jvp call")
    };
    let mut rng = Rng(6);
    for vg in check_all("custom_jvp", &g, 6) {
        let ControlOp::Call {
            kind: CallKind::CustomJvp { rule: batched, .. },
            ..
        } = first_control(&vg)
        else {
            panic!("the batched call keeps its custom_jvp kind")
        };
        check_body("custom_jvp rule", rule.graph(), batched.graph(), &mut rng);
    }
}

/// `sin` with a custom VJP whose backward rule uses a residual `cos x` and a captured scale
/// `k`: `fwd(x, k) -> (sin x, cos x * k)`, `bwd(r, ct) -> (r * ct)`; the real derivative
/// would not have `k`, so the rule is recognisable.
fn custom_vjp_graph() -> Graph {
    let tys = [f64t(&[3]), f64t(&[])];
    let body = build(&tys, |b, p| vec![un(b, UnaryOp::Sin, p[0])]);
    let fwd = build(&tys, |b, p| {
        let s = un(b, UnaryOp::Sin, p[0]);
        let c = un(b, UnaryOp::Cos, p[0]);
        let k3 = spread(b, p[1], &[3]);
        vec![s, bin(b, BinaryOp::Mul, c, k3)]
    });
    let bwd = build(&[f64t(&[3]), f64t(&[3])], |b, p| {
        vec![bin(b, BinaryOp::Mul, p[0], p[1])]
    });
    build(&tys, |b, p| {
        let op = ControlOp::Call {
            body: Body::new(body),
            kind: CallKind::CustomVjp {
                fwd: Body::new(fwd),
                bwd: Body::new(bwd),
                n_diff: 1,
            },
        };
        control(b, op, p)
    })
}

#[test]
fn custom_vjp_rules_are_batched_with_the_body() {
    let g = custom_vjp_graph();
    let ControlOp::Call {
        kind: CallKind::CustomVjp { fwd, bwd, .. },
        ..
    } = first_control(&g)
    else {
        panic!("a custom_vjp call")
    };
    let mut rng = Rng(7);
    let batched = check_all("custom_vjp", &g, 7);
    for vg in &batched {
        let ControlOp::Call {
            kind: CallKind::CustomVjp {
                fwd: bf, bwd: bb, ..
            },
            ..
        } = first_control(vg)
        else {
            panic!("the batched call keeps its custom_vjp kind")
        };
        check_body("custom_vjp fwd", fwd.graph(), bf.graph(), &mut rng);
        check_body("custom_vjp bwd", bwd.graph(), bb.graph(), &mut rng);
    }
    // Only `k` batched: the residual is batched, so the cotangent of `x` is too, and `x` is
    // broadcast so that the backward rule's result matches the operand.
    let ControlOp::Call {
        kind: CallKind::CustomVjp { bwd: bb, .. },
        ..
    } = first_control(&batched[5])
    else {
        panic!("a custom_vjp call")
    };
    assert_eq!(bb.graph().output_types(), vec![f64t(&[B, 3])]);
}

/// A taped loop as reverse mode through `while` produces it: consts `n`, carry `(i, x:f64[2])`,
/// step carry `l:f64[2]`; `fwd` records `x` on the tape and the step folds
/// `l = l * cos(x) + x` over it.
fn taped_while_graph(reverse: bool) -> Graph {
    let state = [i32s(), i32s(), f64t(&[2])];
    let cond = build(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let fwd = build(&state, |b, p| {
        let one = cst(b, DType::I32, 1.0);
        let j = bin(b, BinaryOp::Add, p[1], one);
        let s = un(b, UnaryOp::Sin, p[2]);
        let y = bin(b, BinaryOp::Add, p[2], s);
        vec![j, y, p[2]]
    });
    let step = build(&[f64t(&[2]), f64t(&[2])], |b, p| {
        let c = un(b, UnaryOp::Cos, p[0]);
        let m = bin(b, BinaryOp::Mul, p[1], c);
        vec![bin(b, BinaryOp::Add, m, p[0])]
    });
    build(&[i32s(), i32s(), f64t(&[2]), f64t(&[2])], |b, p| {
        let op = ControlOp::TapedWhile {
            cond: Body::new(cond),
            fwd: Body::new(fwd),
            step: Body::new(step),
            n_consts: 1,
            reverse,
        };
        control(b, op, p)
    })
}

#[test]
fn taped_while_forward_and_reverse_fold() {
    check_all("taped_while", &taped_while_graph(false), 8);
    check_all("taped_while reverse", &taped_while_graph(true), 9);
}

/// A while loop whose body runs a scan over `xs` and a switch on the counter.
fn nested_graph() -> Graph {
    let scan_body = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let d = bin(b, BinaryOp::Add, p[0], p[1]);
        let y = bin(b, BinaryOp::Mul, d, p[1]);
        vec![d, y]
    });
    let branches: Vec<Graph> = [UnaryOp::Sin, UnaryOp::Cos]
        .into_iter()
        .map(|op| {
            build(&[f64t(&[4]), f64t(&[])], |b, p| {
                let e = un(b, op, p[0]);
                vec![e, un(b, UnaryOp::Neg, p[1])]
            })
        })
        .collect();
    let state = [i32s(), i32s(), f64t(&[]), f64t(&[4])];
    let cond = build(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let body = build(&state, |b, p| {
        let scan = ControlOp::Scan {
            body: Body::new(scan_body),
            length: 4,
            n_consts: 0,
            n_carry: 1,
            reverse: false,
        };
        let sy = control(b, scan, &[p[2], p[3]]);
        let two = cst(b, DType::I32, 2.0);
        let k = bin(b, BinaryOp::Rem, p[1], two);
        let switch = ControlOp::Switch {
            branches: branches.into_iter().map(Body::new).collect(),
        };
        let rt = control(b, switch, &[k, sy[1], sy[0]]);
        let one = cst(b, DType::I32, 1.0);
        let j = bin(b, BinaryOp::Add, p[1], one);
        vec![j, rt[1], rt[0]]
    });
    build(&[i32s(), i32s(), f64t(&[]), f64t(&[4])], |b, p| {
        let op = ControlOp::While {
            cond: Body::new(cond),
            body: Body::new(body),
            n_consts: 1,
        };
        control(b, op, p)
    })
}

#[test]
fn nested_control_flow() {
    check_all("nested", &nested_graph(), 10);
}

#[test]
fn vmap_of_vmap_of_switch() {
    let g = switch_graph();
    let inner = vmap_graph_sized(&g, 3, &[Some(0), None, Some(0)], &[0, 0], 3).unwrap();
    let mut rng = Rng(11);
    check_axes(
        "vmap of vmap of switch",
        &inner,
        &[Some(1), Some(0), None],
        &[2, 0],
        &mut rng,
    );
}

#[test]
fn custom_linear_bwd_is_batched() {
    // `custom_lin` with one residual `r:f64[3]` and tangent `t:f64[3]`; bwd(r, ct) = r * ct.
    let bwd = build(&[f64t(&[3]), f64t(&[3])], |b, p| {
        vec![bin(b, BinaryOp::Mul, p[0], p[1])]
    });
    let g = build(&[f64t(&[3]), f64t(&[3])], |b, p| {
        let op = ControlOp::CustomLinear {
            bwd: Body::new(bwd.clone()),
            n_res: 1,
        };
        control(b, op, p)
    });
    let mut rng = Rng(12);
    for (ia, oa) in variants(&g) {
        let vg = vmap_graph_sized(&g, 2, &ia, &oa, B).unwrap();
        vg.verify().unwrap();
        let ControlOp::CustomLinear { bwd: bb, .. } = first_control(&vg) else {
            panic!("a custom_lin")
        };
        check_body("custom_lin bwd", &bwd, bb.graph(), &mut rng);
    }
}
