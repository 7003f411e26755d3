//! `JitOptions::flush_subnormals`: compiled code flushes subnormal inputs and results to zero
//! through every entry (array, scalar, typed), on every thread a call's work is split over
//! (parallel loops, GEMM parts), and the caller's own floating-point mode is back after the
//! call, whether it succeeded or failed. Without the option, results keep IEEE gradual
//! underflow and equal the interpreter's. (Exported objects refuse the option: see the
//! `ferrax-aot` tests.)

use ferrax_ir::control_api::while_loop;
use ferrax_ir::interp;
use ferrax_ir::ops::BinaryOp;
use ferrax_ir::{Array, Builder, DType, ErrorKind, Op, Tensor, Type};
use ferrax_jit::{compile, jit_with, JitOptions};
use std::hint::black_box;

fn flushing() -> JitOptions {
    JitOptions {
        flush_subnormals: true,
        ..JitOptions::default()
    }
}

/// Whether this thread still has gradual underflow (its mode was restored).
fn gradual_underflow() -> bool {
    black_box(f64::MIN_POSITIVE) * black_box(0.5) > 0.0
}

/// Skips a test on targets where the option is refused (checked by `elsewhere_it_is_an_error`).
fn supported() -> bool {
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
}

#[test]
fn scalar_products_flush_through_every_entry() {
    if !supported() {
        return;
    }
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b.param(Type::scalar(DType::F64));
    let p = b.push1(Op::Binary(BinaryOp::Mul), &[x, y]).unwrap();
    let g = b.finish(&[p]);
    let args = [1e-300, 1e-20];
    let ieee = compile(&g, &JitOptions::default()).unwrap();
    let flush = compile(&g, &flushing()).unwrap();
    let arrays: Vec<Array> = args.iter().map(|&v| Array::scalar(DType::F64, v)).collect();
    // Without the option: the subnormal product, as in the interpreter.
    let expected = interp::eval(&g, &arrays).unwrap();
    assert!(expected[0].to_f64_vec()[0] > 0.0);
    assert_eq!(ieee.call(&arrays).unwrap(), expected);
    // With it: zero through the array entry, the scalar entry and the typed entry.
    assert_eq!(flush.call(&arrays).unwrap()[0].to_f64_vec(), vec![0.0]);
    assert!(gradual_underflow());
    let mut out = [1.0];
    flush.call_scalar(&args, &mut out).unwrap();
    assert_eq!(out, [0.0]);
    assert!(gradual_underflow());
    let typed = flush.as_fn2::<f64>().unwrap();
    assert_eq!(typed.call(args[0], args[1]), 0.0);
    assert!(gradual_underflow());
    // A subnormal input reads as zero: 1e-310 · 1e10 is 1e-300 under IEEE rules.
    assert_eq!(typed.call(1e-310, 1e10), 0.0);
    assert_eq!(
        ieee.as_fn2::<f64>().unwrap().call(1e-310, 1e10),
        1e-310 * 1e10
    );
}

/// Large enough to be split across the pool's threads: every element flushes, whichever
/// thread computed it, and the caller's mode is back afterwards.
#[test]
fn parallel_loops_and_gemm_parts_flush_on_every_thread() {
    if !supported() {
        return;
    }
    let n = 1 << 20;
    let scale = jit_with(|x: Tensor| x.clone() * 0.5 + x * 0.25, flushing()).unwrap();
    let x = Array::full(DType::F64, [n], f64::MIN_POSITIVE).unwrap();
    let y = scale.call_arrays(std::slice::from_ref(&x)).unwrap();
    assert!(y[0].to_f64_vec().iter().all(|&v| v == 0.0));
    assert!(gradual_underflow());
    let ieee = jit_with(
        |x: Tensor| x.clone() * 0.5 + x * 0.25,
        JitOptions::default(),
    )
    .unwrap();
    let y = ieee.call_arrays(std::slice::from_ref(&x)).unwrap();
    assert!(y[0]
        .to_f64_vec()
        .iter()
        .all(|&v| v == 0.75 * f64::MIN_POSITIVE));

    // A 256³ product is split into GEMM parts; each product of two 1e-160 is subnormal.
    let m = 256;
    let a = Array::full(DType::F64, [m, m], 1e-160).unwrap();
    let mm = |opts| jit_with(|a: Tensor, b: Tensor| a.matmul(&b), opts).unwrap();
    let got = mm(flushing()).call_arrays(&[a.clone(), a.clone()]).unwrap();
    assert!(got[0].to_f64_vec().iter().all(|&v| v == 0.0));
    assert!(gradual_underflow());
    let got = mm(JitOptions::default())
        .call_arrays(&[a.clone(), a])
        .unwrap();
    assert!(got[0].to_f64_vec().iter().all(|&v| v > 0.0));
}

/// A call that fails inside compiled code (a `while_loop` over its iteration limit) leaves
/// through the failure path, which restores the mode too.
#[test]
fn a_failing_call_restores_the_mode() {
    if !supported() {
        return;
    }
    let opts = JitOptions {
        max_while_iterations: Some(4),
        ..flushing()
    };
    let f = jit_with(
        |x: Tensor| {
            let r = while_loop(|c| c[0].lt(1e300), |c| vec![&c[0] * 2.0], &[x]);
            r[0].clone()
        },
        opts,
    )
    .unwrap();
    let e = f
        .call_arrays(&[Array::scalar(DType::F64, 1.0)])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    assert!(gradual_underflow());
}

#[test]
fn elsewhere_it_is_an_error() {
    if supported() {
        return;
    }
    let r = jit_with(|x: Tensor| x * 0.5, flushing())
        .and_then(|j| j.call_arrays(&[Array::scalar(DType::F64, 1.0)]));
    let Err(e) = r else {
        panic!("the option is refused on this target")
    };
    assert!(e.message.contains("flush_subnormals"), "{e}");
}

/// Calls in the two modes, alternating, each give their own mode's results on every part of a
/// split GEMM: no thread keeps a mode after a call.
#[test]
fn alternating_modes_do_not_leak_into_each_other() {
    if !supported() {
        return;
    }
    let m = 256;
    let a = Array::full(DType::F64, [m, m], 1e-160).unwrap();
    let mm = |opts| jit_with(|a: Tensor, b: Tensor| a.matmul(&b), opts).unwrap();
    let (flush, ieee) = (mm(flushing()), mm(JitOptions::default()));
    let args = [a.clone(), a];
    for _ in 0..3 {
        let zeros = |j: &ferrax_jit::Jit| {
            let v = j.call_arrays(&args).unwrap()[0].to_f64_vec();
            v.iter().filter(|&&x| x == 0.0).count()
        };
        assert_eq!(zeros(&flush), m * m);
        assert_eq!(zeros(&ieee), 0);
    }
}
