//! Mismatch errors name the op, what was expected and what was found (both type lists, both
//! counts, the branch that differs, `in_axes` for vmap), and carry the user's source line: the
//! line of the construct inside the traced function, the line of the call of a transform, or
//! the line that defined a custom rule.

use ferrax::ir::ops::{Body, ControlOp, ConvertOp};
use ferrax::ir::{Builder, Op};
use ferrax::prelude::*;
use ferrax::{Error, ErrorKind, Type};
use std::ops::RangeInclusive;

fn f64s(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

/// Asserts that the message contains every part.
#[track_caller]
fn says(e: &Error, parts: &[&str]) {
    for p in parts {
        assert!(e.message.contains(p), "missing {p:?} in: {e}");
    }
}

/// Asserts that the error names a line of this file within `lines`.
#[track_caller]
fn located(e: &Error, lines: RangeInclusive<u32>) {
    let loc = e
        .location
        .unwrap_or_else(|| panic!("no source line in: {e}"));
    assert!(
        loc.file().ends_with("error_messages.rs"),
        "the error names {} rather than this test: {e}",
        loc.file()
    );
    assert!(
        lines.contains(&loc.line()),
        "line {} is not in {lines:?}: {e}",
        loc.line()
    );
}

#[test]
fn cond_branches_of_different_types_name_both_branches_and_types() {
    let start = line!();
    let f = function(|x: Tensor| {
        cond(
            &x.gt(0.0),
            |o| vec![o[0].astype(DType::F32)],
            |o| vec![o[0].clone()],
            std::slice::from_ref(&x),
        )[0]
        .clone()
    });
    let end = line!();
    let e = f.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &[
            "cond",
            "true_fn (branch 1)",
            "false_fn (branch 0)",
            "f32[]",
            "f64[]",
            "result 0",
        ],
    );
    // The true branch's type comes first, as what was found.
    assert!(e.message.find("f32[]") < e.message.find("f64[]"), "{e}");
    located(&e, start..=end);
}

#[test]
fn cond_branches_of_different_counts_give_both_counts() {
    let start = line!();
    let f = function(|x: Tensor| {
        cond(
            &x.gt(0.0),
            |o| vec![o[0].clone(), o[0].clone()],
            |o| vec![o[0].clone()],
            std::slice::from_ref(&x),
        )[0]
        .clone()
    });
    let end = line!();
    let e = f.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(
        &e,
        &[
            "cond",
            "true_fn",
            "2 values (f64[], f64[])",
            "1 value (f64[])",
        ],
    );
    located(&e, start..=end);
}

#[test]
fn switch_names_the_branch_that_differs() {
    let i = Tensor::full_dtype(DType::I32, &[], 0.0);
    let x = Tensor::scalar(1.0);
    let line = line!() + 1;
    let r = switch(
        &i,
        &[
            &|o: &[Tensor]| vec![o[0].clone()],
            &|o: &[Tensor]| vec![&o[0] * 2.0],
            &|o: &[Tensor]| vec![o[0].reshape(&[1])],
        ],
        &[x],
    );
    // Concrete operands: the error is in the result instead of a trace.
    let e = r[0].error().expect("an error tensor").clone();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    says(&e, &["switch", "branch 2", "branch 0", "f64[1]", "f64[]"]);
    assert!(!e.message.contains("branch 1"), "{e}");
    located(&e, line..=line);
}

#[test]
fn scan_carry_mismatch_shows_the_type_the_body_returned() {
    let start = line!();
    let f = function(|xs: Tensor| {
        scan(
            |c, x| (vec![(&c[0] + &x[0]).astype(DType::F32)], vec![]),
            &[Tensor::scalar(0.0)],
            &[xs],
        )
        .0[0]
            .clone()
    });
    let end = line!();
    let e = f.specialize(&[f64s(&[3])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &[
            "scan",
            "the body returns 1 value (f32[])",
            "the carry is 1 value (f64[])",
            "carry 0",
        ],
    );
    located(&e, start..=end);

    let start = line!();
    let f = function(|xs: Tensor| {
        scan(
            |c, x| (vec![&c[0] + &x[0], c[0].clone()], vec![]),
            &[Tensor::scalar(0.0)],
            &[xs],
        )
        .0[0]
            .clone()
    });
    let end = line!();
    let e = f.specialize(&[f64s(&[3])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["scan", "2 values (f64[], f64[])", "1 value (f64[])"]);
    located(&e, start..=end);
}

#[test]
fn fori_loop_carry_mismatch_shows_the_users_carry_without_the_counter() {
    let start = line!();
    let f = function(|x: Tensor| {
        fori_loop(0, 3, |_, c| vec![c[0].broadcast_to(&[2])], &[x])[0].clone()
    });
    let end = line!();
    let e = f.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    says(
        &e,
        &[
            "fori_loop",
            "1 value (f64[2])",
            "the carry is 1 value (f64[])",
        ],
    );
    // The loop counter (an i32 carried by the underlying scan) is not the user's business.
    assert!(!e.message.contains("i32"), "{e}");
    located(&e, start..=end);

    let f = function(|x: Tensor| fori_loop(0, 3, |_, _| vec![], &[x])[0].clone());
    let e = f.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["fori_loop", "no values ()", "1 value (f64[])"]);
}

#[test]
fn while_loop_mismatches_name_both_sides() {
    let start = line!();
    let body = function(|x: Tensor| {
        while_loop(|c| c[0].lt(3.0), |c| vec![c[0].astype(DType::F32)], &[x])[0].clone()
    });
    let end = line!();
    let e = body.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &[
            "while_loop",
            "the body returns 1 value (f32[])",
            "the carry is 1 value (f64[])",
        ],
    );
    located(&e, start..=end);

    let count = function(|x: Tensor| {
        while_loop(|c| c[0].lt(3.0), |c| vec![c[0].clone(), c[0].clone()], &[x])[0].clone()
    });
    let e = count.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["while_loop", "2 values", "1 value (f64[])"]);

    let predicate =
        function(|x: Tensor| while_loop(|c| c[0].clone(), |c| vec![c[0].clone()], &[x])[0].clone());
    let e = predicate.specialize(&[f64s(&[])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &[
            "while_loop",
            "the condition returns 1 value (f64[])",
            "bool[]",
        ],
    );
}

#[test]
fn custom_vjp_rules_of_the_wrong_arity_give_both_counts() {
    let line = line!() + 1;
    let f = custom_vjp(
        |x: Tensor, y: Tensor| x * y,
        |p| (vec![&p[0] * &p[1]], vec![]),
        |_, ct| vec![ct[0].clone()],
    );
    let e = grad(&f).call::<_, f64>((1.0, 2.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(
        &e,
        &[
            "custom_vjp",
            "bwd returns 1 cotangent (f64[])",
            "f takes 2 arguments (f64[], f64[])",
        ],
    );
    // The rule's definition is the line to fix.
    located(&e, line..=line);

    let line = line!() + 1;
    let f = custom_vjp(
        |x: Tensor| x.sin(),
        |_| (vec![], vec![]),
        |_, ct| vec![ct[0].clone()],
    );
    let e = grad(&f).call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(
        &e,
        &[
            "custom_vjp",
            "fwd returns no outputs",
            "f has 1 output (f64[])",
        ],
    );
    located(&e, line..=line);

    let line = line!() + 1;
    let f = custom_vjp(
        |x: Tensor| x.sin(),
        |p| (vec![p[0].sin()], vec![]),
        |_, ct| vec![ct[0].astype(DType::F32)],
    );
    let e = grad(&f).call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &["custom_vjp", "bwd", "(f32[])", "(f64[])", "cotangent 0"],
    );
    located(&e, line..=line);
}

#[test]
fn custom_jvp_rules_of_the_wrong_arity_give_both_counts() {
    let line = line!() + 1;
    let f = custom_jvp(|x: Tensor| x.sin(), |p, _| (vec![p[0].sin()], vec![]));
    let e = grad(&f).call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(
        &e,
        &[
            "custom_jvp",
            "1 output and no tangents",
            "f has 1 output (f64[])",
        ],
    );
    located(&e, line..=line);

    let line = line!() + 1;
    let f = custom_jvp(
        |x: Tensor| x.sin(),
        |p, t| (vec![p[0].sin()], vec![t[0].reshape(&[1])]),
    );
    let e = jvp(&f).call::<_, (f64, f64)>((1.0, 1.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    says(
        &e,
        &["custom_jvp", "tangents", "(f64[1])", "(f64[])", "tangent 0"],
    );
    located(&e, line..=line);
}

#[test]
fn vmap_without_a_batched_argument_mentions_in_axes() {
    let v = vmap(|x: Tensor, y: Tensor| x * y).in_axes(&[None, None]);
    let line = line!() + 1;
    let e = v.call::<_, Array>((1.0, 2.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    says(&e, &["vmap", "in_axes", "[None, None]", "batch size"]);
    located(&e, line..=line);

    let v = vmap(|x: Tensor| x.sin()).in_axes(&[Some(0), None]);
    let line = line!() + 1;
    let e = v.call::<_, Array>(Array::from(vec![1.0])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["vmap", "in_axes", "length 2", "1 argument"]);
    located(&e, line..=line);
}

#[test]
fn transform_misuse_names_both_sides_and_the_calling_line() {
    let g = grad(|x: Tensor| x.sin()).wrt(3);
    let line = line!() + 1;
    let e = g.call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    says(&e, &["grad", "argnum 3", "1 argument"]);
    located(&e, line..=line);

    let j = jvp(|x: Tensor| x.sin());
    let line = line!() + 1;
    let e = j.call::<_, (f64, f64)>((1.0, 1.0f32)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(&e, &["jvp", "(f32[])", "(f64[])", "tangent 0"]);
    located(&e, line..=line);

    let v = vjp(|x: Tensor| x.sin());
    let ct = Array::from(vec![1.0]);
    let line = line!() + 1;
    let e = v.call::<_, (f64, f64)>((1.0, ct)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    says(&e, &["vjp", "(f64[1])", "(f64[])", "cotangent 0"]);
    located(&e, line..=line);

    let g = grad(|x: Tensor| x.sin());
    let line = line!() + 1;
    let e = g.call::<_, f64>((1.0, 2.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["takes 1 argument, got 2"]);
    located(&e, line..=line);

    let primals = [Array::from(1.0), Array::from(2.0)];
    let line = line!() + 1;
    let e = linearize(|x: Tensor| x.sin(), &primals).unwrap_err();
    says(&e, &["takes 1 argument, got 2"]);
    located(&e, line..=line);
}

#[test]
fn errors_inside_a_transforms_specialisation_name_the_callers_line() {
    // A graph function with fixed parameter types, called through jvp with other types: the
    // error arises when jvp specialises the graph, inside the transform's code.
    let mut b = Builder::new();
    let p = b.param(f64s(&[]));
    let g = Function::from_graph(b.finish(&[p]));
    let line = line!() + 1;
    let e = jvp(&g).call::<_, (f32, f32)>((1.0f32, 1.0f32)).unwrap_err();
    says(&e, &["(f64[])", "(f32[])"]);
    located(&e, line..=line);
}

#[test]
fn jit_calls_with_wrong_buffers_name_both_sides_and_the_calling_line() {
    let f = jit(|x: Tensor| x.sin()).unwrap();
    let line = line!() + 1;
    let e = f.call::<_, f64>((1.0, 2.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["takes 1 argument, got 2"]);
    located(&e, line..=line);

    let line = line!() + 1;
    let e = f.call::<_, (f64, f64)>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["expected 2 outputs", "returned 1"]);
    located(&e, line..=line);

    let c = f.compiled_for(&[f64s(&[3])]).unwrap();
    let a = Array::from(vec![1.0, 2.0, 3.0]);
    let mut out = vec![Array::zeros(&f64s(&[3])).unwrap()];
    let single = Array::from(vec![1.0f32, 2.0, 3.0]);
    let line = line!() + 1;
    let e = c.call_into(&[&single], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(&e, &["argument 0", "expected f64[3]", "got f32[3]"]);
    located(&e, line..=line);

    let line = line!() + 1;
    let e = c.call(&[Array::from(vec![1.0, 2.0])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    says(&e, &["expected f64[3]", "got f64[2]"]);
    located(&e, line..=line);

    let line = line!() + 1;
    let e = c.call_into(&[&a, &a], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    says(&e, &["takes 1 argument, got 2"]);
    located(&e, line..=line);

    let s = f.compiled().unwrap();
    let line = line!() + 1;
    let e = s.as_fn2::<f64>().err().unwrap();
    says(&e, &["takes 1 argument, got 2"]);
    located(&e, line..=line);

    let line = line!() + 1;
    let e = c.call_scalar(&[1.0], &mut [0.0]).unwrap_err();
    says(&e, &["call_scalar", "f64[3]"]);
    located(&e, line..=line);
}

/// The type rule of `switch` itself (for graphs built without the tracer) names both branches'
/// types.
#[test]
fn the_switch_type_rule_names_both_branches() {
    let branch = |convert: Option<DType>| {
        let mut b = Builder::new();
        let p = b.param(f64s(&[]));
        let out = match convert {
            Some(d) => b.push1(Op::Convert(ConvertOp::Convert(d)), &[p]).unwrap(),
            None => p,
        };
        Body::new(b.finish(&[out]))
    };
    let op = Op::Control(ControlOp::Switch {
        branches: vec![branch(None), branch(Some(DType::F32))].into(),
    });
    let mut b = Builder::new();
    let i = b.param(Type::new(DType::I32, &[]));
    let x = b.param(f64s(&[]));
    let e = b.push(op, &[i, x]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    says(
        &e,
        &[
            "switch",
            "branch 1 returns 1 value (f32[])",
            "branch 0 returns 1 value (f64[])",
        ],
    );
}
