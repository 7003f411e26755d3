//! Control flow through the JIT: `call`, `switch`, `while`, `scan` (and the reverse-mode
//! `taped_while`) against the interpreter, bit for bit, with scalar and tensor carries, zero
//! trips, nesting, clamped branch indices and every float dtype (and i32).

mod common;

use common::{array, check, Rng};
use ferrax_ir::ops::{BinaryOp, Body, CallKind, CompareOp, ControlOp, RematPolicy, UnaryOp};
use ferrax_ir::{interp, Array, Builder, DType, Graph, Op, Type, Value};
use ferrax_jit::{compile, JitOptions};
use smallvec::smallvec;

const DTYPES: [DType; 3] = [DType::F32, DType::F64, DType::I32];

/// A body graph over parameters of `tys`, built by `f`.
fn body(tys: &[Type], f: impl FnOnce(&mut Builder, &[Value]) -> Vec<Value>) -> Body {
    let mut b = Builder::new();
    let ps: Vec<Value> = tys.iter().map(|t| b.param(t.clone())).collect();
    let outs = f(&mut b, &ps);
    Body::new(b.finish(&outs))
}

fn bin(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Value {
    b.push1(Op::Binary(op), &[x, y]).unwrap()
}

/// A constant of `v` with the type of `like`.
fn fill(b: &mut Builder, like: Value, v: f64) -> Value {
    let t = b.ty(like).clone();
    b.constant(Array::full(t.dtype, t.shape, v).unwrap())
}

fn i32s() -> Type {
    Type::scalar(DType::I32)
}

/// `i < n` for i32 scalars.
fn less(b: &mut Builder, i: Value, n: Value) -> Value {
    b.push1(Op::Compare(CompareOp::Lt), &[i, n]).unwrap()
}

/// `i + 1` for an i32 scalar.
fn incr(b: &mut Builder, i: Value) -> Value {
    let one = fill(b, i, 1.0);
    bin(b, BinaryOp::Add, i, one)
}

fn push(b: &mut Builder, op: ControlOp, args: &[Value]) -> Vec<Value> {
    b.push(Op::Control(op), args).unwrap().to_vec()
}

fn i32a(v: i32) -> Array {
    Array::scalar(DType::I32, v as f64)
}

#[test]
fn call_is_inlined() {
    let mut rng = Rng(11);
    for dt in [DType::F32, DType::F64] {
        let tv = Type::new(dt, &[3]);
        let ts = Type::scalar(dt);
        let callee = body(&[tv.clone(), ts.clone()], |b, p| {
            let s = b.push1(Op::Unary(UnaryOp::Sin), &[p[0]]).unwrap();
            let m = bin(b, BinaryOp::Mul, s, p[0]);
            let q = bin(b, BinaryOp::Mul, p[1], p[1]);
            // The first parameter is returned unchanged too (a copy into the result).
            vec![m, q, p[0]]
        });
        for kind in [
            CallKind::Checkpoint(RematPolicy::Nothing),
            CallKind::Checkpoint(RematPolicy::DotsOnly),
        ] {
            let mut b = Builder::new();
            let x = b.param(tv.clone());
            let y = b.param(ts.clone());
            let r = push(
                &mut b,
                ControlOp::Call {
                    body: callee.clone(),
                    kind,
                },
                &[x, y],
            );
            let after = bin(&mut b, BinaryOp::Add, r[0], x);
            let g = b.finish(&[r[0], r[1], r[2], after]);
            let xa = array(&mut rng, dt, &[3], -2.0, 2.0, false);
            check(&g, &[xa, Array::scalar(dt, 1.5)]);
        }
    }
}

/// `switch(idx, x, s)` with three branches returning a tensor and a scalar.
fn switch_graph(dt: DType) -> Graph {
    let tv = Type::new(dt, &[4]);
    let ts = Type::scalar(dt);
    let tys = [tv.clone(), ts.clone()];
    let b0 = body(&tys, |b, p| {
        let a = bin(b, BinaryOp::Add, p[0], p[0]);
        vec![a, p[1]]
    });
    let b1 = body(&tys, |b, p| {
        let a = bin(b, BinaryOp::Mul, p[0], p[0]);
        let s = bin(b, BinaryOp::Add, p[1], p[1]);
        vec![a, s]
    });
    let b2 = body(&tys, |b, p| {
        let s = bin(b, BinaryOp::Mul, p[1], p[1]);
        vec![p[0], s]
    });
    let mut b = Builder::new();
    let i = b.param(i32s());
    let x = b.param(tv);
    let s = b.param(ts);
    let r = push(
        &mut b,
        ControlOp::Switch {
            branches: smallvec![b0, b1, b2],
        },
        &[i, x, s],
    );
    let after = bin(&mut b, BinaryOp::Sub, r[0], x);
    b.finish(&[r[0], r[1], after])
}

#[test]
fn switch_clamps_its_index() {
    let mut rng = Rng(12);
    for dt in DTYPES {
        let g = switch_graph(dt);
        for idx in [-7, -1, 0, 1, 2, 3, 1000, i32::MIN, i32::MAX] {
            let x = array(&mut rng, dt, &[4], -3.0, 3.0, false);
            check(&g, &[i32a(idx), x, Array::scalar(dt, 2.0)]);
        }
    }
}

#[test]
fn switch_with_one_branch_and_scalar_only() {
    let ts = Type::scalar(DType::F64);
    let only = body(std::slice::from_ref(&ts), |b, p| {
        vec![b.push1(Op::Unary(UnaryOp::Exp), &[p[0]]).unwrap()]
    });
    let neg = body(std::slice::from_ref(&ts), |b, p| {
        vec![b.push1(Op::Unary(UnaryOp::Neg), &[p[0]]).unwrap()]
    });
    for branches in [smallvec![only.clone()], smallvec![only, neg]] {
        let mut b = Builder::new();
        let i = b.param(i32s());
        let x = b.param(ts.clone());
        let r = push(&mut b, ControlOp::Switch { branches }, &[i, x]);
        let g = b.finish(&r);
        let f = compile(&g, &JitOptions::default()).unwrap();
        assert!(f.has_scalar_entry());
        for idx in [-1, 0, 1, 2] {
            check(&g, &[i32a(idx), Array::scalar(DType::F64, 0.75)]);
        }
    }
}

/// `(i, acc) = (0, a); while i < n { i += 1; acc = acc * x + x }` with scalar carries;
/// returns the final `(i, acc)`.
fn scalar_while(dt: DType) -> Graph {
    let ts = Type::scalar(dt);
    let tys = [i32s(), ts.clone(), i32s(), ts.clone()];
    let cond = body(&tys, |b, p| vec![less(b, p[2], p[0])]);
    let step = body(&tys, |b, p| {
        let i = incr(b, p[2]);
        let m = bin(b, BinaryOp::Mul, p[3], p[1]);
        let acc = bin(b, BinaryOp::Add, m, p[1]);
        vec![i, acc]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let x = b.param(ts.clone());
    let i0 = b.param(i32s());
    let a0 = b.param(ts);
    let r = push(
        &mut b,
        ControlOp::While {
            cond,
            body: step,
            n_consts: 2,
        },
        &[n, x, i0, a0],
    );
    b.finish(&r)
}

#[test]
fn while_with_scalar_carries() {
    for dt in DTYPES {
        let g = scalar_while(dt);
        let f = compile(&g, &JitOptions::default()).unwrap();
        // An all-scalar loop keeps its carries in registers; with outputs of one dtype it
        // gets the scalar entry.
        assert_eq!(f.workspace_bytes(), 0);
        assert_eq!(f.has_scalar_entry(), dt == DType::I32);
        for n in [-3, 0, 1, 2, 5, 17] {
            let x = Array::scalar(dt, if dt == DType::I32 { 2.0 } else { 0.9 });
            check(&g, &[i32a(n), x, i32a(0), Array::scalar(dt, 1.0)]);
        }
    }
}

/// `while i < n { (i, v, w) = (i + 1, w, v * c + w) }` over tensors of `dims`: the carried
/// tensors trade places every iteration.
fn tensor_while(dt: DType, dims: &[usize]) -> Graph {
    let tv = Type::new(dt, dims);
    let tys = [i32s(), tv.clone(), i32s(), tv.clone(), tv.clone()];
    let cond = body(&tys, |b, p| vec![less(b, p[2], p[0])]);
    let step = body(&tys, |b, p| {
        let i = incr(b, p[2]);
        let m = bin(b, BinaryOp::Mul, p[3], p[1]);
        let w = bin(b, BinaryOp::Add, m, p[4]);
        vec![i, p[4], w]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let c = b.param(tv.clone());
    let v = b.param(tv.clone());
    let w = b.param(tv);
    let zero = b.constant(i32a(0));
    let r = push(
        &mut b,
        ControlOp::While {
            cond,
            body: step,
            n_consts: 2,
        },
        &[n, c, zero, v, w],
    );
    // The initial carries are still live after the loop.
    let d = bin(&mut b, BinaryOp::Sub, r[2], w);
    b.finish(&[r[0], r[1], r[2], d, v])
}

#[test]
fn while_with_tensor_carries() {
    let mut rng = Rng(13);
    for dt in DTYPES {
        for dims in [&[4][..], &[2, 3], &[0], &[1]] {
            let g = tensor_while(dt, dims);
            for n in [0, 1, 2, 3, 6, 7] {
                let c = array(&mut rng, dt, dims, -1.0, 1.0, false);
                let v = array(&mut rng, dt, dims, -2.0, 2.0, false);
                let w = array(&mut rng, dt, dims, -2.0, 2.0, false);
                check(&g, &[i32a(n), c, v, w]);
            }
        }
    }
}

/// A condition that reads a tensor: `while sum(v) < limit { v = v * 2 }` (f64).
#[test]
fn while_condition_on_a_tensor() {
    use ferrax_ir::ops::ReduceOp;
    use ferrax_ir::Dims;
    let tv = Type::new(DType::F64, &[3]);
    let ts = Type::scalar(DType::F64);
    let tys = [ts.clone(), tv.clone()];
    let cond = body(&tys, |b, p| {
        let s = b
            .push1(
                Op::Reduce(ReduceOp::Sum {
                    axes: Dims::from_slice(&[0]),
                }),
                &[p[1]],
            )
            .unwrap();
        vec![less(b, s, p[0])]
    });
    let step = body(&tys, |b, p| {
        let two = fill(b, p[1], 2.0);
        vec![bin(b, BinaryOp::Mul, p[1], two)]
    });
    let mut b = Builder::new();
    let limit = b.param(ts);
    let v = b.param(tv);
    let r = push(
        &mut b,
        ControlOp::While {
            cond,
            body: step,
            n_consts: 1,
        },
        &[limit, v],
    );
    let g = b.finish(&r);
    for limit in [0.0, 1.0, 100.0, 1e6] {
        let v = Array::from_f64([3], vec![0.25, 0.5, 0.125]).unwrap();
        check(&g, &[Array::scalar(DType::F64, limit), v]);
    }
}

/// An outer loop whose body runs an inner loop: `for i < n { for j < m { v = v * c + 1 };
/// s = s + sum-free scalar update }`.
fn nested_while(dt: DType) -> Graph {
    let tv = Type::new(dt, &[5]);
    let inner_tys = [i32s(), tv.clone(), i32s(), tv.clone()];
    let inner_cond = body(&inner_tys, |b, p| vec![less(b, p[2], p[0])]);
    let inner_body = body(&inner_tys, |b, p| {
        let j = incr(b, p[2]);
        let m = bin(b, BinaryOp::Mul, p[3], p[1]);
        let one = fill(b, p[3], 1.0);
        vec![j, bin(b, BinaryOp::Add, m, one)]
    });
    let outer_tys = [i32s(), i32s(), tv.clone(), i32s(), tv.clone(), i32s()];
    let outer_cond = body(&outer_tys, |b, p| vec![less(b, p[3], p[0])]);
    let outer_body = body(&outer_tys, |b, p| {
        let i = incr(b, p[3]);
        let zero = fill(b, p[3], 0.0);
        let r = push(
            b,
            ControlOp::While {
                cond: inner_cond.clone(),
                body: inner_body.clone(),
                n_consts: 2,
            },
            &[p[1], p[2], zero, p[4]],
        );
        // Count the inner iterations in an i32 carry as well.
        let k = bin(b, BinaryOp::Add, p[5], r[0]);
        vec![i, r[1], k]
    });
    let mut b = Builder::new();
    let n = b.param(i32s());
    let m = b.param(i32s());
    let c = b.param(tv.clone());
    let v = b.param(tv);
    let zero = b.constant(i32a(0));
    let r = push(
        &mut b,
        ControlOp::While {
            cond: outer_cond,
            body: outer_body,
            n_consts: 3,
        },
        &[n, m, c, zero, v, zero],
    );
    b.finish(&r)
}

#[test]
fn nested_while_loops() {
    let mut rng = Rng(14);
    for dt in DTYPES {
        let g = nested_while(dt);
        for (n, m) in [(0, 0), (0, 3), (3, 0), (1, 1), (2, 3), (3, 4)] {
            let c = array(&mut rng, dt, &[5], -1.0, 1.0, false);
            let v = array(&mut rng, dt, &[5], -1.0, 1.0, false);
            check(&g, &[i32a(n), i32a(m), c, v]);
        }
    }
}

/// `scan` with a const `c`, carries `(s, v)`, scanned `xa: [L, 3]`, `xb: [L]`; the body
/// returns `(s + xb_i, v * c + xa_i)` and stacks `v + xa_i` and `s * xb_i`.
fn scan_graph(dt: DType, length: usize, reverse: bool) -> Graph {
    let ts = Type::scalar(dt);
    let tv = Type::new(dt, &[3]);
    let tys = [tv.clone(), ts.clone(), tv.clone(), tv.clone(), ts.clone()];
    let step = body(&tys, |b, p| {
        let s = bin(b, BinaryOp::Add, p[1], p[4]);
        let m = bin(b, BinaryOp::Mul, p[2], p[0]);
        let v = bin(b, BinaryOp::Add, m, p[3]);
        let y0 = bin(b, BinaryOp::Add, p[2], p[3]);
        let y1 = bin(b, BinaryOp::Mul, p[1], p[4]);
        vec![s, v, y0, y1]
    });
    let mut b = Builder::new();
    let c = b.param(tv.clone());
    let s = b.param(ts);
    let v = b.param(tv);
    let xa = b.param(Type::new(dt, &[length, 3]));
    let xb = b.param(Type::new(dt, &[length]));
    let r = push(
        &mut b,
        ControlOp::Scan {
            body: step,
            length,
            n_consts: 1,
            n_carry: 2,
            reverse,
        },
        &[c, s, v, xa, xb],
    );
    b.finish(&r)
}

#[test]
fn scan_forwards_and_backwards() {
    let mut rng = Rng(15);
    for dt in DTYPES {
        for length in [0, 1, 2, 5] {
            for reverse in [false, true] {
                let g = scan_graph(dt, length, reverse);
                let args = vec![
                    array(&mut rng, dt, &[3], -1.0, 1.0, false),
                    Array::scalar(dt, 0.5),
                    array(&mut rng, dt, &[3], -1.0, 1.0, false),
                    array(&mut rng, dt, &[length, 3], -2.0, 2.0, false),
                    array(&mut rng, dt, &[length], -2.0, 2.0, false),
                ];
                check(&g, &args);
            }
        }
    }
}

/// A scan whose body holds a switch on the scanned index, and a switch whose branch holds a
/// scan: control flow nests both ways.
#[test]
fn scan_and_switch_nest() {
    let mut rng = Rng(16);
    for dt in [DType::F32, DType::F64] {
        let tv = Type::new(dt, &[2]);
        let tys = [tv.clone()];
        let double = body(&tys, |b, p| vec![bin(b, BinaryOp::Add, p[0], p[0])]);
        let square = body(&tys, |b, p| vec![bin(b, BinaryOp::Mul, p[0], p[0])]);
        let step = body(&[tv.clone(), i32s()], |b, p| {
            let r = push(
                b,
                ControlOp::Switch {
                    branches: smallvec![double.clone(), square.clone()],
                },
                &[p[1], p[0]],
            );
            vec![r[0], r[0]]
        });
        let scan = ControlOp::Scan {
            body: step,
            length: 4,
            n_consts: 0,
            n_carry: 1,
            reverse: false,
        };
        let with_scan = body(&[tv.clone(), Type::new(DType::I32, &[4])], |b, p| {
            push(b, scan.clone(), &[p[0], p[1]])
        });
        let plain = body(&[tv.clone(), Type::new(DType::I32, &[4])], |b, p| {
            let z = fill(b, p[0], 0.0);
            let stacked = b.constant(Array::full(dt, &[4usize, 2][..], 1.0).unwrap());
            vec![z, stacked]
        });
        let mut b = Builder::new();
        let which = b.param(i32s());
        let v = b.param(tv);
        let idx = b.param(Type::new(DType::I32, &[4]));
        let r = push(
            &mut b,
            ControlOp::Switch {
                branches: smallvec![plain, with_scan],
            },
            &[which, v, idx],
        );
        let g = b.finish(&r);
        for w in [0, 1, 5] {
            let v = array(&mut rng, dt, &[2], -1.5, 1.5, false);
            let idx = Array::from(vec![0, 1, 9, -2]);
            check(&g, &[i32a(w), v, idx]);
        }
    }
}

/// A `while` nested in a `scan` nested in a `while`, with tensors carried at every level.
#[test]
fn three_levels_of_nesting() {
    let mut rng = Rng(17);
    let dt = DType::F64;
    let tv = Type::new(dt, &[3]);
    let inner_tys = [i32s(), tv.clone()];
    let inner_cond = body(&inner_tys, |b, p| {
        let two = b.constant(i32a(2));
        vec![less(b, p[0], two)]
    });
    let inner_body = body(&inner_tys, |b, p| {
        let h = fill(b, p[1], 0.5);
        vec![incr(b, p[0]), bin(b, BinaryOp::Mul, p[1], h)]
    });
    let step = body(&[tv.clone(), tv.clone()], |b, p| {
        let zero = b.constant(i32a(0));
        let a = bin(b, BinaryOp::Add, p[0], p[1]);
        let r = push(
            b,
            ControlOp::While {
                cond: inner_cond.clone(),
                body: inner_body.clone(),
                n_consts: 0,
            },
            &[zero, a],
        );
        vec![r[1], a]
    });
    let outer_tys = [Type::new(dt, &[4, 3]), i32s(), tv.clone()];
    let outer_cond = body(&outer_tys, |b, p| {
        let three = b.constant(i32a(3));
        vec![less(b, p[1], three)]
    });
    let outer_body = body(&outer_tys, |b, p| {
        let r = push(
            b,
            ControlOp::Scan {
                body: step.clone(),
                length: 4,
                n_consts: 0,
                n_carry: 1,
                reverse: true,
            },
            &[p[2], p[0]],
        );
        vec![incr(b, p[1]), r[0]]
    });
    let mut b = Builder::new();
    let xs = b.param(Type::new(dt, &[4, 3]));
    let v = b.param(tv);
    let i = b.param(i32s());
    let r = push(
        &mut b,
        ControlOp::While {
            cond: outer_cond,
            body: outer_body,
            n_consts: 1,
        },
        &[xs, i, v],
    );
    let g = b.finish(&r);
    for start in [-1, 0, 2, 3] {
        let xs = array(&mut rng, dt, &[4, 3], -1.0, 1.0, false);
        let v = array(&mut rng, dt, &[3], -1.0, 1.0, false);
        check(&g, &[xs, v, i32a(start)]);
    }
}

/// `while i < n { i += 1; v = v * 0.999 + 0.001 }` with the trip count a constant.
fn counted_loop(trips: i32) -> Graph {
    let tv = Type::new(DType::F64, &[8]);
    let tys = [i32s(), tv.clone()];
    let cond = body(&tys, |b, p| {
        let n = b.constant(i32a(trips));
        vec![less(b, p[0], n)]
    });
    let step = body(&tys, |b, p| {
        let a = fill(b, p[1], 0.999);
        let c = fill(b, p[1], 0.001);
        let m = bin(b, BinaryOp::Mul, p[1], a);
        vec![incr(b, p[0]), bin(b, BinaryOp::Add, m, c)]
    });
    let mut b = Builder::new();
    let v = b.param(tv);
    let zero = b.constant(i32a(0));
    let r = push(
        &mut b,
        ControlOp::While {
            cond,
            body: step,
            n_consts: 0,
        },
        &[zero, v],
    );
    b.finish(&r)
}

#[test]
fn a_thousand_iterations_run_as_a_loop() {
    let opts = JitOptions::default();
    let f1000 = compile(&counted_loop(1000), &opts).unwrap();
    let f5000 = compile(&counted_loop(5000), &opts).unwrap();
    // The code does not grow with the trip count (an unrolled loop would be 1000 copies).
    assert_eq!(f1000.code_bytes(), f5000.code_bytes());
    assert!(
        f1000.code_bytes() < 2000,
        "code size {} bytes",
        f1000.code_bytes()
    );
    let v = Array::from_f64([8], (0..8).map(|k| k as f64).collect()).unwrap();
    check(&counted_loop(1000), std::slice::from_ref(&v));
    let got = f1000.call(std::slice::from_ref(&v)).unwrap();
    assert_eq!(got[0], i32a(1000));
}

/// A scan body whose parameters and outputs alias: the carry is returned both as the next
/// carry and as the stacked output, and an x slice is returned unchanged.
#[test]
fn scan_outputs_that_alias() {
    let mut rng = Rng(18);
    for dt in DTYPES {
        let tv = Type::new(dt, &[2]);
        let step = body(&[tv.clone(), tv.clone()], |b, p| {
            let a = bin(b, BinaryOp::Add, p[0], p[1]);
            vec![a, a, p[1], p[0]]
        });
        for reverse in [false, true] {
            let mut b = Builder::new();
            let c = b.param(tv.clone());
            let xs = b.param(Type::new(dt, &[3, 2]));
            let r = push(
                &mut b,
                ControlOp::Scan {
                    body: step.clone(),
                    length: 3,
                    n_consts: 0,
                    n_carry: 1,
                    reverse,
                },
                &[c, xs],
            );
            let g = b.finish(&r);
            let args = [
                array(&mut rng, dt, &[2], -2.0, 2.0, false),
                array(&mut rng, dt, &[3, 2], -2.0, 2.0, false),
            ];
            check(&g, &args);
        }
    }
}

/// The compiled loop agrees with the interpreter on random starting points, compiled once and
/// called many times (the workspace is reused between calls).
#[test]
fn repeated_calls_reuse_the_workspace() {
    let mut rng = Rng(19);
    let g = tensor_while(DType::F64, &[6]);
    let f = compile(&g, &JitOptions::default()).unwrap();
    for k in 0..20 {
        let args = vec![
            i32a(k % 5),
            array(&mut rng, DType::F64, &[6], -1.0, 1.0, false),
            array(&mut rng, DType::F64, &[6], -1.0, 1.0, false),
            array(&mut rng, DType::F64, &[6], -1.0, 1.0, false),
        ];
        let want = interp::eval(&g, &args).unwrap();
        let got = f.call(&args).unwrap();
        assert_eq!(want, got);
    }
}

/// A `taped_while` with consts `(n, a)`, forward carries `(i, v)`, tape entries `(i, v, v·a)`
/// and linear carries `(s, u)`: `fwd = (i + 1, v·a; i, v, v·a)` and `step(e_i, e_v, e_va, s, u)
/// = (s·0.5 + convert(e_i), u·e_va + e_v)`, so the fold order shows in the result.
fn taped_graph(dt: DType, dims: &[usize], reverse: bool) -> Graph {
    use ferrax_ir::ops::ConvertOp;
    let tv = Type::new(dt, dims);
    let ts = Type::scalar(dt);
    let state = [i32s(), tv.clone(), i32s(), tv.clone()];
    let cond = body(&state, |b, p| vec![less(b, p[2], p[0])]);
    let fwd = body(&state, |b, p| {
        let i = incr(b, p[2]);
        let va = bin(b, BinaryOp::Mul, p[3], p[1]);
        vec![i, va, p[2], p[3], va]
    });
    let step = body(
        &[i32s(), tv.clone(), tv.clone(), ts.clone(), tv.clone()],
        |b, p| {
            let h = fill(b, p[3], 0.5);
            let sh = bin(b, BinaryOp::Mul, p[3], h);
            let c = b
                .push1(Op::Convert(ConvertOp::Convert(dt)), &[p[0]])
                .unwrap();
            let s = bin(b, BinaryOp::Add, sh, c);
            let m = bin(b, BinaryOp::Mul, p[4], p[2]);
            vec![s, bin(b, BinaryOp::Add, m, p[1])]
        },
    );
    let mut b = Builder::new();
    let n = b.param(i32s());
    let a = b.param(tv.clone());
    let v = b.param(tv.clone());
    let s = b.param(ts);
    let u = b.param(tv);
    let zero = b.constant(i32a(0));
    let r = push(
        &mut b,
        ControlOp::TapedWhile {
            cond,
            fwd,
            step,
            n_consts: 2,
            reverse,
        },
        &[n, a, zero, v, s, u],
    );
    b.finish(&r)
}

#[test]
fn taped_while_folds_forwards_and_backwards() {
    let mut rng = Rng(20);
    for dt in [DType::F32, DType::F64] {
        for dims in [&[3][..], &[0], &[]] {
            for reverse in [false, true] {
                let g = taped_graph(dt, dims, reverse);
                // 300 iterations grow the tape several times.
                for n in [0, 1, 2, 5, 300] {
                    let args = vec![
                        i32a(n),
                        array(&mut rng, dt, dims, 0.5, 1.0, false),
                        array(&mut rng, dt, dims, -1.0, 1.0, false),
                        Array::scalar(dt, 0.25),
                        array(&mut rng, dt, dims, -1.0, 1.0, false),
                    ];
                    check(&g, &args);
                }
            }
        }
    }
}

#[test]
fn custom_lin_is_refused() {
    let ts = Type::scalar(DType::F64);
    let bwd = body(&[ts.clone(), ts.clone()], |b, p| {
        vec![bin(b, BinaryOp::Mul, p[0], p[1])]
    });
    let mut b = Builder::new();
    let r = b.param(ts.clone());
    let t = b.param(ts);
    let out = push(&mut b, ControlOp::CustomLinear { bwd, n_res: 1 }, &[r, t]);
    let g = b.finish(&out);
    let err = compile(&g, &JitOptions::default()).unwrap_err();
    assert!(err.message.contains("custom_lin"), "{}", err.message);
}
