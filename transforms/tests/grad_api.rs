//! grad and value_and_grad at graph level: argnums, aux outputs, captures, errors,
//! perturbation confusion, stop_gradient, NaN through select, integer inputs, and the
//! simplification passes.

mod common;

use common::*;
use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, UnaryOp};
use ferrax_ir::{Array, DType, ErrorKind, Op, Type};
use ferrax_transforms::passes::{dce, identities};
use ferrax_transforms::{
    grad_graph, inline, jvp_graph, simplify_report, value_and_grad_graph, vjp_graph,
};

#[test]
fn argnums_aux_and_value() {
    // f(x, y) = (x·sin(y), x + y).
    let g = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let s = un(b, UnaryOp::Sin, p[1]);
        let v = bin(b, BinaryOp::Mul, p[0], s);
        vec![v, bin(b, BinaryOp::Add, p[0], p[1])]
    });
    let (x, y) = (1.5, 0.3);
    let g01 = grad_graph(&g, 2, &[0, 1], true).unwrap();
    close_arrays(
        &Array::from(run_scalars(&g01, &[x, y])),
        &Array::from(vec![y.sin(), x * y.cos(), x + y]),
        1e-15,
        "grad",
    );
    let g1 = grad_graph(&g, 2, &[1], true).unwrap();
    assert_eq!(run_scalars(&g1, &[x, y]), vec![x * y.cos(), x + y]);
    let vg = value_and_grad_graph(&g, 2, &[0], true).unwrap();
    assert_eq!(run_scalars(&vg, &[x, y]), vec![x * y.sin(), y.sin(), x + y]);
}

#[test]
fn errors_name_the_problem() {
    let vec_out = build(&[f64t(&[3])], |b, p| vec![un(b, UnaryOp::Sin, p[0])]);
    let e = grad_graph(&vec_out, 1, &[0], false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform);
    assert!(
        e.message.contains("output 0") && e.message.contains("f64[3]"),
        "{}",
        e.message
    );

    let int_out = build(&[f64t(&[])], |b, p| {
        vec![b
            .push1(Op::Convert(ConvertOp::Convert(DType::I32)), &[p[0]])
            .unwrap()]
    });
    let e = grad_graph(&int_out, 1, &[0], false).unwrap_err();
    assert!(e.message.contains("i32[]"), "{}", e.message);

    let int_arg = build(&[f64t(&[]), Type::scalar(DType::I32)], |b, p| {
        let c = b
            .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[p[1]])
            .unwrap();
        vec![bin(b, BinaryOp::Mul, p[0], c)]
    });
    let e = grad_graph(&int_arg, 2, &[1], false).unwrap_err();
    assert!(
        e.message.contains("argument 1") && e.message.contains("i32[]"),
        "{}",
        e.message
    );
    let e = grad_graph(&int_arg, 2, &[2], false).unwrap_err();
    assert!(e.message.contains("argnum 2"), "{}", e.message);
    let e = grad_graph(&int_arg, 1, &[1], false).unwrap_err();
    assert!(e.message.contains("out of range"), "{}", e.message);
    let e = grad_graph(&int_arg, 2, &[0], true).unwrap_err();
    assert!(e.message.contains("has_aux"), "{}", e.message);
    assert_eq!(
        jvp_graph(&int_arg, 3).unwrap_err().kind,
        ErrorKind::Transform
    );

    // An integer argument that is not differentiated is fine; its cotangent is zero.
    let g = grad_graph(&int_arg, 2, &[0], false).unwrap();
    let out = run(&g, &[Array::from(2.0), Array::from(3i32)]);
    assert_eq!(out[0].to_scalar().unwrap(), 3.0);
    let v = vjp_graph(&int_arg, 2).unwrap();
    let out = run(&v, &[Array::from(2.0), Array::from(3i32), Array::from(1.0)]);
    assert_eq!(out[2].as_i32(), Some(&[0][..]));
}

#[test]
fn captures_are_passed_through_and_not_differentiated() {
    // f(x; c) = x·c + c² with c captured.
    let g = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let m = bin(b, BinaryOp::Mul, p[0], p[1]);
        let cc = bin(b, BinaryOp::Mul, p[1], p[1]);
        vec![bin(b, BinaryOp::Add, m, cc)]
    });
    let dg = grad_graph(&g, 1, &[0], false).unwrap();
    assert_eq!(dg.params().len(), 2);
    assert_eq!(run_scalars(&dg, &[3.0, 5.0]), vec![5.0]);
    let j = jvp_graph(&g, 1).unwrap();
    assert_eq!(j.params().len(), 3);
    assert_eq!(run_scalars(&j, &[3.0, 1.0, 5.0]), vec![40.0, 5.0]);
}

#[test]
fn no_perturbation_confusion() {
    // h(y; x) = x·y, with x captured from the enclosing function.
    let h = build(&[f64t(&[]), f64t(&[])], |b, p| {
        vec![bin(b, BinaryOp::Mul, p[1], p[0])]
    });
    // grad in grad: f(x) = x · (d/dy h)(y = 3; x).
    let dh = grad_graph(&h, 1, &[0], false).unwrap();
    let f = build(&[f64t(&[])], |b, p| {
        let y = cst(b, 3.0);
        let d = inline(b, &dh, &[y, p[0]]).unwrap()[0];
        vec![bin(b, BinaryOp::Mul, p[0], d)]
    });
    let df = grad_graph(&f, 1, &[0], false).unwrap();
    for x in [0.5, 2.0, -3.0] {
        assert_eq!(run_scalars(&df, &[x]), vec![2.0 * x], "grad in grad at {x}");
    }
    // jvp in grad: the inner derivative is the JVP of h in y with tangent 1.
    let jh = jvp_graph(&h, 1).unwrap();
    let f = build(&[f64t(&[])], |b, p| {
        let (y, one) = (cst(b, 3.0), cst(b, 1.0));
        let d = inline(b, &jh, &[y, one, p[0]]).unwrap()[1];
        vec![bin(b, BinaryOp::Mul, p[0], d)]
    });
    let df = grad_graph(&f, 1, &[0], false).unwrap();
    assert_eq!(run_scalars(&df, &[1.5]), vec![3.0]);
}

#[test]
fn stop_gradient_blocks_at_every_level() {
    let g = scalar_fn(|b, x| {
        let s = b.push1(Op::Convert(ConvertOp::StopGradient), &[x]).unwrap();
        let x3 = un(b, UnaryOp::IntegerPow(3), x);
        let m = bin(b, BinaryOp::Mul, x3, s);
        bin(b, BinaryOp::Add, m, s)
    });
    let d1 = grad_graph(&g, 1, &[0], false).unwrap();
    let d2 = grad_graph(&d1, 1, &[0], false).unwrap();
    let x: f64 = 1.5;
    close(run_scalars(&d1, &[x])[0], 3.0 * x * x * x, 1e-15, "d1");
    close(run_scalars(&d2, &[x])[0], 6.0 * x * x, 1e-15, "d2");
}

#[test]
fn nan_through_select_matches_jax() {
    // grad of where(x > 0, sqrt(x), 0) at 0 is NaN in JAX: the untaken branch's zero
    // cotangent meets sqrt's infinite derivative.
    let naive = scalar_fn(|b, x| {
        let z = cst(b, 0.0);
        let p = b.push1(Op::Compare(CompareOp::Gt), &[x, z]).unwrap();
        let s = un(b, UnaryOp::Sqrt, x);
        b.push1(Op::Compare(CompareOp::Select), &[p, s, z]).unwrap()
    });
    let d = grad_graph(&naive, 1, &[0], false).unwrap();
    assert!(run_scalars(&d, &[0.0])[0].is_nan());
    close(run_scalars(&d, &[4.0])[0], 0.25, 1e-15, "naive at 4");
    // The double-where idiom: make the untaken branch's operand safe too.
    let safe = scalar_fn(|b, x| {
        let (z, one) = (cst(b, 0.0), cst(b, 1.0));
        let p = b.push1(Op::Compare(CompareOp::Gt), &[x, z]).unwrap();
        let xs = b
            .push1(Op::Compare(CompareOp::Select), &[p, x, one])
            .unwrap();
        let s = un(b, UnaryOp::Sqrt, xs);
        b.push1(Op::Compare(CompareOp::Select), &[p, s, z]).unwrap()
    });
    let d = grad_graph(&safe, 1, &[0], false).unwrap();
    assert_eq!(run_scalars(&d, &[0.0]), vec![0.0]);
    close(run_scalars(&d, &[4.0])[0], 0.25, 1e-15, "safe at 4");
}

#[test]
fn exact_identities_only() {
    let g = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let one = cst(b, 1.0);
        let a = bin(b, BinaryOp::Mul, p[0], one); // x
        let nz = cst(b, -0.0);
        let c = bin(b, BinaryOp::Add, a, nz); // x
        let n1 = un(b, UnaryOp::Neg, c);
        let n2 = un(b, UnaryOp::Neg, n1); // x
        let pz = cst(b, 0.0);
        let kept = bin(b, BinaryOp::Add, n2, pz); // x + 0.0 stays: -0.0 + 0.0 = +0.0
        let zero_mul = bin(b, BinaryOp::Mul, p[1], pz); // stays: NaN·0 = NaN
        vec![n2, kept, zero_mul]
    });
    let s = identities(&g).and_then(|g| dce(&g)).unwrap();
    assert_eq!(s.outputs()[0], s.params()[0]);
    assert_ne!(s.outputs()[1], s.params()[0]);
    let out = run_scalars(&s, &[-0.0, f64::NAN]);
    assert!(out[1] == 0.0 && out[1].is_sign_positive());
    assert!(out[2].is_nan());
    let (simplified, report) = simplify_report(&g).unwrap();
    for r in &report {
        println!("{r}");
        assert!(r.after <= r.before);
    }
    assert_eq!(simplified.num_insts(), report.last().unwrap().after);
}

#[test]
fn integer_primals_get_ignored_tangents() {
    let g = build(&[f64t(&[2]), Type::new(DType::I32, &[2])], |b, p| {
        let c = b
            .push1(Op::Convert(ConvertOp::Convert(DType::F64)), &[p[1]])
            .unwrap();
        vec![bin(b, BinaryOp::Mul, p[0], c), p[1]]
    });
    let j = jvp_graph(&g, 2).unwrap();
    let args = [
        Array::from(vec![1.0, 2.0]),
        Array::from(vec![3, 4]),
        Array::from(vec![1.0, 1.0]),
        Array::from(vec![7, 7]),
    ];
    let out = run(&j, &args);
    assert_eq!(out[2].to_f64_vec(), vec![3.0, 4.0]);
    assert_eq!(out[3].as_i32(), Some(&[0, 0][..]));
}

#[test]
fn degenerate_functions() {
    // Identity, a constant output, and an output listed twice.
    let g = build(&[f64t(&[2])], |b, p| {
        let c = b.constant(Array::from(vec![1.0, 2.0]));
        vec![p[0], c, p[0]]
    });
    let v = vjp_graph(&g, 1).unwrap();
    let x = Array::from(vec![3.0, 4.0]);
    let ct = |a: f64, c: f64| Array::from(vec![a, c]);
    let out = run(&v, &[x.clone(), ct(1.0, 2.0), ct(5.0, 6.0), ct(10.0, 20.0)]);
    assert_eq!(out[3].to_f64_vec(), vec![11.0, 22.0]);
    let constant = scalar_fn(|b, _| cst(b, 7.0));
    let d = grad_graph(&constant, 1, &[0], false).unwrap();
    assert_eq!(run_scalars(&d, &[1.0]), vec![0.0]);
}

#[test]
fn single_precision_derivatives() {
    let g = build(&[Type::scalar(DType::F32)], |b, p| {
        vec![b.push1(Op::Unary(UnaryOp::Tanh), &[p[0]]).unwrap()]
    });
    let mut d = g;
    for _ in 0..4 {
        d = grad_graph(&d, 1, &[0], false).unwrap();
    }
    let out = run(&d, &[Array::from(0.5f32)]);
    assert_eq!(out[0].dtype(), DType::F32);
    close(
        out[0].to_scalar().unwrap(),
        3.952219563724583,
        1e-5,
        "d4 tanh(0.5) in f32",
    );
}
