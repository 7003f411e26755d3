//! Soundness of the JIT runtime: calls that need more memory than the machine has, calls over
//! their memory budget, `while_loop`s over their iteration limit (compiled and interpreted),
//! reverse-mode tapes that cannot grow, and buffers that do not fit are all errors of the
//! right kind with a message naming the cause, and the process goes on (each test calls the
//! function again afterwards and checks a good result).

use ferrax_ir::interp::{self, EvalOptions};
use ferrax_ir::ops::{BinaryOp, Body, CompareOp, ControlOp, IndexOp, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Dims, ErrorKind, Graph, Op, Shape, Type, Value};
use ferrax_jit::{compile, jit_with, JitOptions};

/// An element count whose f64 buffer (4 EiB) is within `MAX_BYTES` but beyond any machine's
/// address space, so that its allocation fails whatever the overcommit policy.
const HUGE: usize = 1 << 59;

/// `x ↦ sin(broadcast(x))` to f64 of `dims`.
fn sin_of_broadcast(dims: &[usize]) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(dims),
                dims: Box::default(),
            }),
            &[x],
        )
        .unwrap();
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[y]).unwrap();
    b.finish(&[s])
}

/// `x ↦ sum(cumsum(sin(broadcast(x))))` over f64 of `[n, n]`: a scalar result whose
/// intermediates live in the workspace (a cumulative sum is not fused, so both its operand and
/// its result need buffers; a transpose would be read in place by the sum's loop).
fn big_intermediate(n: usize) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[n, n]),
                dims: Box::default(),
            }),
            &[x],
        )
        .unwrap();
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[y]).unwrap();
    let t = b
        .push1(
            Op::Index(IndexOp::Cumsum {
                axis: 0,
                reverse: false,
            }),
            &[s],
        )
        .unwrap();
    let r = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: Dims::from_slice(&[0, 1]),
            }),
            &[t],
        )
        .unwrap();
    b.finish(&[r])
}

/// A body graph over parameters of `tys`, built by `f`.
fn body(tys: &[Type], f: impl FnOnce(&mut Builder, &[Value]) -> Vec<Value>) -> Body {
    let mut b = Builder::new();
    let ps: Vec<Value> = tys.iter().map(|t| b.param(t.clone())).collect();
    let outs = f(&mut b, &ps);
    Body::new(b.finish(&outs))
}

/// A constant `v` of the type of `like`.
fn fill(b: &mut Builder, like: Value, v: f64) -> Value {
    let t = b.ty(like).clone();
    b.constant(Array::full(t.dtype, t.shape, v).unwrap())
}

fn bin(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Value {
    b.push1(Op::Binary(op), &[x, y]).unwrap()
}

fn i32s() -> Type {
    Type::scalar(DType::I32)
}

fn i32a(v: i32) -> Array {
    Array::scalar(DType::I32, v as f64)
}

/// The `while` over `(n; i, x)` that runs `i += 1, x *= 0.5` while `i < n`, for `x` of type
/// `tx`.
fn counted_while_op(tx: Type) -> ControlOp {
    let state = [i32s(), i32s(), tx];
    let cond = body(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let step = body(&state, |b, p| {
        let one = fill(b, p[1], 1.0);
        let half = fill(b, p[2], 0.5);
        vec![
            bin(b, BinaryOp::Add, p[1], one),
            bin(b, BinaryOp::Mul, p[2], half),
        ]
    });
    ControlOp::While {
        cond,
        body: step,
        n_consts: 1,
    }
}

/// `(n, x) ↦ (i, x·0.5^i)` after a `while` of `n` iterations `i += 1, x *= 0.5`, over a
/// carry of type `tx`.
fn counted_while(tx: Type) -> Graph {
    let mut b = Builder::new();
    let n = b.param(i32s());
    let x = b.param(tx.clone());
    let zero = b.constant(i32a(0));
    let r = b
        .push(Op::Control(counted_while_op(tx)), &[n, zero, x])
        .unwrap()
        .to_vec();
    b.finish(&r)
}

/// A `while` that never ends: `x ↦ x + 1` while `true`.
fn endless_while() -> Graph {
    let ts = Type::scalar(DType::F64);
    let cond = body(std::slice::from_ref(&ts), |b, _| {
        vec![b.constant(Array::scalar(DType::Bool, 1.0))]
    });
    let step = body(std::slice::from_ref(&ts), |b, p| {
        let one = fill(b, p[0], 1.0);
        vec![bin(b, BinaryOp::Add, p[0], one)]
    });
    let mut b = Builder::new();
    let x = b.param(ts);
    let r = b
        .push(
            Op::Control(ControlOp::While {
                cond,
                body: step,
                n_consts: 0,
            }),
            &[x],
        )
        .unwrap()
        .to_vec();
    b.finish(&r)
}

/// A reverse `taped_while` of `n` iterations whose tape entry is `v` of type `tv` (the
/// forward carry, doubled each iteration), folded backwards into a scalar sum `s + sum(e)`.
fn taped_sum(tv: Type) -> Graph {
    let ts = Type::scalar(DType::F64);
    let state = [i32s(), i32s(), tv.clone()];
    let cond = body(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let fwd = body(&state, |b, p| {
        let one = fill(b, p[1], 1.0);
        let i = bin(b, BinaryOp::Add, p[1], one);
        let v = bin(b, BinaryOp::Add, p[2], p[2]);
        vec![i, v, p[2]]
    });
    let rank = tv.shape.rank();
    let step = body(&[tv.clone(), ts.clone()], |b, p| {
        let e = b
            .push1(
                Op::Reduce(ReduceOp::Sum {
                    axes: (0..rank).collect(),
                }),
                &[p[0]],
            )
            .unwrap();
        vec![bin(b, BinaryOp::Add, p[1], e)]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let v = b.param(tv);
    let s = b.param(ts);
    let zero = b.constant(i32a(0));
    let r = b
        .push(
            Op::Control(ControlOp::TapedWhile {
                cond,
                fwd,
                step,
                n_consts: 1,
                reverse: true,
            }),
            &[n, zero, v, s],
        )
        .unwrap()
        .to_vec();
    b.finish(&r)
}

/// The argument list `(n, v, s)` of [`taped_sum`] with `v` filled with ones.
fn taped_args(n: i32, tv: &Type) -> Vec<Array> {
    vec![
        i32a(n),
        Array::full(tv.dtype, tv.shape.clone(), 1.0).unwrap(),
        Array::scalar(DType::F64, 0.0),
    ]
}

fn opts_with(f: impl FnOnce(&mut JitOptions)) -> JitOptions {
    let mut o = JitOptions::default();
    f(&mut o);
    o
}

#[test]
fn a_huge_output_is_a_resource_error() {
    let g = sin_of_broadcast(&[HUGE]);
    let f = compile(&g, &JitOptions::default()).unwrap();
    assert_eq!(f.workspace_bytes(), 0);
    let e = f.call(&[Array::scalar(DType::F64, 0.5)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(e.message.contains("cannot allocate 4 EiB"), "{e}");
    assert!(e.message.contains("output 0"), "{e}");
    assert!(e.message.contains("sin f64[576460752303423488]"), "{e}");
    // The same graph at a size that fits runs, in this process, afterwards.
    let small = compile(&sin_of_broadcast(&[4]), &JitOptions::default()).unwrap();
    let out = small.call(&[Array::scalar(DType::F64, 0.5)]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.5f64.sin(); 4]);
}

/// 8 TiB of output, far beyond any machine. Whether the allocator refuses it depends on the
/// kernel's overcommit policy, so this runs only under the heuristic (0) or strict (2)
/// policies, which refuse an allocation larger than the machine's memory and swap.
#[test]
fn an_eight_tib_output_is_a_resource_error_without_overcommit() {
    let policy = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if !matches!(policy.trim(), "0" | "2") {
        eprintln!("skipped: overcommit policy {policy:?}");
        return;
    }
    let f = compile(&sin_of_broadcast(&[1 << 40]), &JitOptions::default()).unwrap();
    let e = f.call(&[Array::scalar(DType::F64, 0.5)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(
        e.message
            .contains("cannot allocate 8 TiB for output 0 of the compiled call (the result of sin f64[1099511627776])"),
        "{e}"
    );
}

#[test]
fn a_huge_workspace_is_a_resource_error() {
    // 2^29 × 2^29 f64 intermediates: 2 EiB each.
    let n = 1 << 29;
    let f = compile(&big_intermediate(n), &JitOptions::default()).unwrap();
    assert!(
        f.workspace_bytes() >= n * n * 8,
        "workspace {} bytes",
        f.workspace_bytes()
    );
    let x = Array::scalar(DType::F64, 0.5);
    let e = f.call(std::slice::from_ref(&x)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(e.message.contains("cannot allocate"), "{e}");
    assert!(e.message.contains("workspace"), "{e}");
    // call_into and call_scalar fail the same way (outputs passed by the caller).
    let mut out = vec![Array::scalar(DType::F64, 0.0)];
    let e = f.call_into(&[&x], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    let e = f.call_scalar(&[0.5], &mut [0.0]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    // A small instance of the same graph runs afterwards.
    let small = compile(&big_intermediate(3), &JitOptions::default()).unwrap();
    let got = small.call(std::slice::from_ref(&x)).unwrap();
    let want = interp::eval(&big_intermediate(3), &[x]).unwrap();
    assert_eq!(got, want);
}

#[test]
fn a_graph_whose_workspace_cannot_exist_is_refused_at_compile_time() {
    // Four intermediates of 2^61 bytes live at once would need 2^63 bytes of workspace, more
    // than any allocation.
    let n = 1 << 29;
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[n, n]),
                dims: Box::default(),
            }),
            &[x],
        )
        .unwrap();
    let mut ts = Vec::new();
    for op in [UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Exp, UnaryOp::Tanh] {
        let s = b.push1(Op::Unary(op), &[y]).unwrap();
        ts.push(
            b.push1(
                Op::Index(IndexOp::Cumsum {
                    axis: 1,
                    reverse: false,
                }),
                &[s],
            )
            .unwrap(),
        );
    }
    let mut acc = ts[0];
    for &t in &ts[1..] {
        acc = bin(&mut b, BinaryOp::Add, acc, t);
    }
    let r = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: Dims::from_slice(&[0, 1]),
            }),
            &[acc],
        )
        .unwrap();
    let g = b.finish(&[r]);
    let e = compile(&g, &JitOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size, "{e}");
    assert!(e.message.contains("workspace"), "{e}");
}

/// `x ↦ (sum(x·w), x·w)` over f64[n].
fn products(n: usize) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::new(DType::F64, &[n]));
    let w = b.param(Type::new(DType::F64, &[n]));
    let m = bin(&mut b, BinaryOp::Mul, x, w);
    let s = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: Dims::from_slice(&[0]),
            }),
            &[m],
        )
        .unwrap();
    b.finish(&[s, m])
}

#[test]
fn a_call_over_its_memory_budget_is_refused_before_it_runs() {
    let n = 1000;
    let g = products(n);
    let x = Array::from_f64([n], vec![2.0; n]).unwrap();
    let w = Array::from_f64([n], vec![3.0; n]).unwrap();
    // Outputs: 8 + 8000 bytes.
    let tight = compile(&g, &opts_with(|o| o.max_call_bytes = Some(8000))).unwrap();
    let e = tight.call(&[x.clone(), w.clone()]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(e.message.contains("max_call_bytes"), "{e}");
    assert!(e.message.contains("7.81 KiB"), "the budget: {e}");
    assert!(e.message.contains("7.82 KiB"), "the need: {e}");
    // call_into with caller-owned outputs counts them too, and writes nothing.
    let mut outs = vec![
        Array::scalar(DType::F64, -1.0),
        Array::from_f64([n], vec![-1.0; n]).unwrap(),
    ];
    let e = tight.call_into(&[&x, &w], &mut outs).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert_eq!(outs[0].to_f64_vec(), vec![-1.0]);
    // Enough budget: the same call runs.
    let roomy = compile(&g, &opts_with(|o| o.max_call_bytes = Some(8008))).unwrap();
    assert!(!roomy.same_code(&tight));
    let got = roomy.call(&[x.clone(), w.clone()]).unwrap();
    assert_eq!(got[0].to_f64_vec(), vec![6.0 * n as f64]);
    // Through `jit_with` too.
    let j = jit_with(
        |x: ferrax_ir::Tensor| x.sin(),
        opts_with(|o| o.max_call_bytes = Some(8)),
    )
    .unwrap();
    let e = j.call_arrays(&[Array::from_f64([2], vec![0.0, 1.0]).unwrap()]);
    assert_eq!(e.unwrap_err().kind, ErrorKind::Resource);
    let y: f64 = j.call(0.5).unwrap();
    assert_eq!(y, 0.5f64.sin());
}

#[test]
fn scalar_entries_respect_the_budget() {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let g = b.finish(&[s]);
    let f = compile(&g, &opts_with(|o| o.max_call_bytes = Some(4))).unwrap();
    assert_eq!(f.as_fn1::<f64>().unwrap_err().kind, ErrorKind::Resource);
    let e = f.call_scalar(&[0.5], &mut [0.0]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource);
    let ok = compile(&g, &opts_with(|o| o.max_call_bytes = Some(8))).unwrap();
    assert_eq!(ok.as_fn1::<f64>().unwrap().call(0.5), 0.5f64.sin());
}

#[test]
fn while_iteration_limit_in_the_interpreter() {
    let limit = EvalOptions {
        max_while_iterations: Some(10),
    };
    let g = counted_while(Type::scalar(DType::F64));
    let x = Array::scalar(DType::F64, 1.0);
    let ok = interp::eval_with(&g, &[i32a(10), x.clone()], &limit).unwrap();
    assert_eq!(ok[0], i32a(10));
    let e = interp::eval_with(&g, &[i32a(11), x.clone()], &limit).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(e.message.contains("iteration limit of 10"), "{e}");
    assert!(e.message.contains("max_while_iterations"), "{e}");
    // Without options (and after a failure) there is no limit.
    let ok = interp::eval(&g, &[i32a(11), x.clone()]).unwrap();
    assert_eq!(ok[0], i32a(11));
    // An endless loop stops.
    let e = interp::eval_with(&endless_while(), &[x], &limit).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    // The reverse-mode loop's forward pass counts too.
    let tv = Type::new(DType::F64, &[2]);
    let e = interp::eval_with(&taped_sum(tv.clone()), &taped_args(11, &tv), &limit).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    let ok = interp::eval_with(&taped_sum(tv.clone()), &taped_args(10, &tv), &limit).unwrap();
    assert_eq!(ok[0].to_f64_vec(), vec![2.0 * 1023.0]);
}

#[test]
fn while_iteration_limit_in_compiled_code() {
    let opts = opts_with(|o| o.max_while_iterations = Some(10));
    for tx in [Type::scalar(DType::F64), Type::new(DType::F64, &[3])] {
        let g = counted_while(tx.clone());
        let f = compile(&g, &opts).unwrap();
        let x = Array::full(DType::F64, tx.shape.clone(), 1.0).unwrap();
        let got = f.call(&[i32a(10), x.clone()]).unwrap();
        assert_eq!(got, interp::eval(&g, &[i32a(10), x.clone()]).unwrap());
        let e = f.call(&[i32a(11), x.clone()]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource, "{e}");
        assert!(e.message.contains("iteration limit of 10"), "{e}");
        assert!(
            e.message.contains("JitOptions::max_while_iterations"),
            "{e}"
        );
        // The function keeps working after the failure.
        let got = f.call(&[i32a(3), x.clone()]).unwrap();
        assert_eq!(got[0], i32a(3));
        // Without a limit the same graph runs 11 iterations.
        let free = compile(&g, &JitOptions::default()).unwrap();
        assert_eq!(free.call(&[i32a(11), x]).unwrap()[0], i32a(11));
    }
    // An endless loop returns instead of hanging, through every entry point.
    let f = compile(&endless_while(), &opts).unwrap();
    assert!(!f.has_scalar_entry());
    let e = f.call(&[Array::scalar(DType::F64, 0.0)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    let e = f.call_scalar(&[0.0], &mut [0.0]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    // Typed callables cannot report the error, so they are refused for such graphs.
    let e = f.as_fn1::<f64>().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Jit, "{e}");
    assert!(e.message.contains("max_while_iterations"), "{e}");
    // Without a limit the all-scalar graph keeps its scalar entry.
    let free = compile(&endless_while(), &JitOptions::default()).unwrap();
    assert!(free.has_scalar_entry());
}

#[test]
fn nested_loops_count_per_run() {
    // An outer loop of 5 iterations around an inner loop of 5: each run stays within a
    // limit of 5, though the inner body runs 25 times.
    let ts = Type::scalar(DType::F64);
    let state = [i32s(), i32s(), ts.clone()];
    let cond = body(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let step = body(&state, |b, p| {
        let one = fill(b, p[1], 1.0);
        let zero = b.constant(i32a(0));
        let r = b
            .push(
                Op::Control(counted_while_op(Type::scalar(DType::F64))),
                &[p[0], zero, p[2]],
            )
            .unwrap()
            .to_vec();
        vec![bin(b, BinaryOp::Add, p[1], one), r[1]]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let x = b.param(ts);
    let zero = b.constant(i32a(0));
    let r = b
        .push(
            Op::Control(ControlOp::While {
                cond,
                body: step,
                n_consts: 1,
            }),
            &[n, zero, x],
        )
        .unwrap()
        .to_vec();
    let g = b.finish(&r);
    let x = Array::scalar(DType::F64, 1.0);
    for limit in [5, 4] {
        let f = compile(&g, &opts_with(|o| o.max_while_iterations = Some(limit))).unwrap();
        let jit = f.call(&[i32a(5), x.clone()]);
        let int = interp::eval_with(
            &g,
            &[i32a(5), x.clone()],
            &EvalOptions {
                max_while_iterations: Some(limit),
            },
        );
        if limit == 5 {
            let want = 0.5f64.powi(25);
            assert_eq!(jit.unwrap()[1].to_f64_vec(), vec![want]);
            assert_eq!(int.unwrap()[1].to_f64_vec(), vec![want]);
        } else {
            assert_eq!(jit.unwrap_err().kind, ErrorKind::Resource);
            assert_eq!(int.unwrap_err().kind, ErrorKind::Resource);
        }
    }
}

#[test]
fn reverse_tapes_respect_limits_and_budgets() {
    let tv = Type::new(DType::F64, &[4]);
    let g = taped_sum(tv.clone());
    let want = |n: i32| vec![4.0 * ((1u64 << n) - 1) as f64];
    // The iteration limit applies to the forward loop; the tape is freed on the way out.
    let f = compile(&g, &opts_with(|o| o.max_while_iterations = Some(100))).unwrap();
    assert!(!f.has_scalar_entry());
    assert_eq!(
        f.call(&taped_args(20, &tv)).unwrap()[0].to_f64_vec(),
        want(20)
    );
    for _ in 0..3 {
        let e = f.call(&taped_args(101, &tv)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource, "{e}");
        assert!(e.message.contains("iteration limit of 100"), "{e}");
    }
    assert_eq!(
        f.call(&taped_args(30, &tv)).unwrap()[0].to_f64_vec(),
        want(30)
    );
    // A budget leaves the tape what the workspace and outputs do not use: 32 bytes per
    // entry, so 10 entries fit in 320 bytes and 11 do not.
    let need = f.workspace_bytes() + 8;
    let b = compile(&g, &opts_with(|o| o.max_call_bytes = Some(need + 320))).unwrap();
    assert_eq!(
        b.call(&taped_args(10, &tv)).unwrap()[0].to_f64_vec(),
        want(10)
    );
    let e = b.call(&taped_args(11, &tv)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(e.message.contains("tape"), "{e}");
    assert!(e.message.contains("max_call_bytes"), "{e}");
    assert_eq!(
        b.call(&taped_args(3, &tv)).unwrap()[0].to_f64_vec(),
        want(3)
    );
}

/// A reverse `taped_while` over `(n; i, x)` whose tape entry is `broadcast(x)` to f64 of
/// `dims`, folded backwards into `s + sum(entry)`: small carries, big entries.
fn taped_broadcast(dims: &[usize]) -> Graph {
    let ts = Type::scalar(DType::F64);
    let te = Type::new(DType::F64, dims);
    let state = [i32s(), i32s(), ts.clone()];
    let cond = body(&state, |b, p| {
        vec![b.push1(Op::Compare(CompareOp::Lt), &[p[1], p[0]]).unwrap()]
    });
    let fwd = body(&state, |b, p| {
        let one = fill(b, p[1], 1.0);
        let i = bin(b, BinaryOp::Add, p[1], one);
        let e = b
            .push1(
                Op::Shape(ShapeOp::BroadcastInDim {
                    shape: te.shape.clone(),
                    dims: Box::default(),
                }),
                &[p[2]],
            )
            .unwrap();
        vec![i, p[2], e]
    });
    let rank = te.shape.rank();
    let step = body(&[te.clone(), ts.clone()], |b, p| {
        let e = b
            .push1(
                Op::Reduce(ReduceOp::Sum {
                    axes: (0..rank).collect(),
                }),
                &[p[0]],
            )
            .unwrap();
        vec![bin(b, BinaryOp::Add, p[1], e)]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let x = b.param(ts.clone());
    let zero = b.constant(i32a(0));
    let s = b.constant(Array::scalar(DType::F64, 0.0));
    let r = b
        .push(
            Op::Control(ControlOp::TapedWhile {
                cond,
                fwd,
                step,
                n_consts: 1,
                reverse: true,
            }),
            &[n, zero, x, s],
        )
        .unwrap()
        .to_vec();
    b.finish(&r)
}

#[test]
fn a_tape_that_cannot_be_allocated_is_a_resource_error() {
    let args = |n: i32| [i32a(n), Array::scalar(DType::F64, 1.5)];
    // Small entries: the graph works.
    let small = compile(&taped_broadcast(&[3]), &JitOptions::default()).unwrap();
    assert_eq!(small.call(&args(4)).unwrap()[0].to_f64_vec(), vec![18.0]);
    // Entries of 2^58 f64 (2 EiB): the first append cannot be allocated.
    let g = taped_broadcast(&[1 << 58]);
    let f = compile(&g, &JitOptions::default()).unwrap();
    assert!(f.workspace_bytes() < 1 << 20, "{}", f.workspace_bytes());
    // No iterations, no tape.
    assert_eq!(f.call(&args(0)).unwrap()[0].to_f64_vec(), vec![0.0]);
    for _ in 0..3 {
        let e = f.call(&args(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource, "{e}");
        assert!(e.message.contains("cannot allocate 2 EiB"), "{e}");
        assert!(e.message.contains("tape"), "{e}");
    }
    assert_eq!(small.call(&args(2)).unwrap()[0].to_f64_vec(), vec![9.0]);
}

#[test]
fn caller_buffers_are_checked_on_every_entry() {
    let n = 4;
    let g = products(n);
    let f = compile(&g, &JitOptions::default()).unwrap();
    let x = Array::from_f64([n], vec![1.0; n]).unwrap();
    let good_outs = || {
        vec![
            Array::scalar(DType::F64, 0.0),
            Array::from_f64([n], vec![0.0; n]).unwrap(),
        ]
    };
    // Outputs of the wrong dtype, shape, count.
    let mut outs = good_outs();
    outs[1] = Array::from_f32([n], vec![0.0; n]).unwrap();
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::DType
    );
    let mut outs = good_outs();
    outs[1] = Array::from_f64([n + 1], vec![0.0; n + 1]).unwrap();
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::Shape
    );
    let mut outs = good_outs();
    outs[0] = Array::from_f64([1], vec![0.0]).unwrap();
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::Shape
    );
    let mut outs = good_outs();
    outs.pop();
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::Arity
    );
    // Arguments of the wrong dtype, shape, count; outputs are untouched.
    let mut outs = good_outs();
    let y = Array::from_f64([n - 1], vec![1.0; n - 1]).unwrap();
    assert_eq!(
        f.call_into(&[&x, &y], &mut outs).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert_eq!(
        f.call(std::slice::from_ref(&x)).unwrap_err().kind,
        ErrorKind::Arity
    );
    let i = Array::from_i32([n], vec![1; n]).unwrap();
    assert_eq!(f.call(&[x.clone(), i]).unwrap_err().kind, ErrorKind::DType);
    // A tensor graph has no scalar entry points.
    assert_eq!(
        f.call_scalar(&[1.0], &mut [0.0]).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert!(f.as_fn2::<f64>().is_err());
    // `Jit::call_into` checks the outputs it is given.
    let j = ferrax_jit::jit(|x: ferrax_ir::Tensor| x.sin()).unwrap();
    let mut wrong = vec![Array::from_f64([3], vec![0.0; 3]).unwrap()];
    let e = j.call_into(&[&x], &mut wrong).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    let mut right = vec![Array::from_f64([n], vec![0.0; n]).unwrap()];
    j.call_into(&[&x], &mut right).unwrap();
    assert_eq!(right[0].to_f64_vec(), vec![1f64.sin(); n]);
    // The good call still works after all the refusals.
    let mut outs = good_outs();
    f.call_into(&[&x, &x], &mut outs).unwrap();
    assert_eq!(outs[0].to_f64_vec(), vec![n as f64]);
}
