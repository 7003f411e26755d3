//! Tests of the tracer and `Function`: tracing closures, calling on concrete values, nesting,
//! closure conversion and error reporting.

use ferrax_ir::{function, Array, DType, ErrorKind, Function, Tensor, Type};

fn seed() -> Function {
    function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln())
}

#[test]
fn seed_function_evaluates() {
    let f = seed();
    let v: f64 = f.call((1.0, 2.0, 3.0)).unwrap();
    let expect = 1f64.sin() * 2f64.exp() / 3f64.ln();
    assert_eq!(v, expect);
    assert!((v - 5.659572877985826).abs() < 1e-15);
}

#[test]
fn seed_graph_has_five_equations() {
    let f = seed();
    assert_eq!(f.num_eqns().unwrap(), 5, "{}", f.ir());
    let g = f.graph().unwrap();
    g.verify().unwrap();
}

#[test]
fn broadcasting_records_broadcast_in_dim() {
    let f = function(|x: Tensor, y: Tensor| x + y);
    let tys = [Type::new(DType::F64, &[3, 1]), Type::new(DType::F64, &[4])];
    let s = f.specialize(&tys).unwrap();
    assert_eq!(s.graph.output_types()[0], Type::new(DType::F64, &[3, 4]));
    let names: Vec<&str> = s.graph.insts().map(|(_, i)| i.op.name()).collect();
    assert_eq!(names, ["broadcast_in_dim", "broadcast_in_dim", "add"]);
}

#[test]
fn scalars_are_weakly_typed() {
    let f = function(|x: Tensor| 2.0 * x.clone() + 1.0 - x / 4.0);
    let s = f.specialize(&[Type::new(DType::F32, &[2])]).unwrap();
    assert_eq!(s.graph.output_types()[0], Type::new(DType::F32, &[2]));
    let out: Vec<f32> = f.call(Array::from(vec![4.0f32, 8.0])).unwrap();
    assert_eq!(out, vec![8.0, 15.0]);
}

#[test]
fn nested_trace_captures_enclosing_tracer() {
    // g(x) = x * h(x) where h(y) = x * y closes over x: the inner function must take x as an
    // explicit extra input rather than a constant.
    let f = function(|x: Tensor| {
        let xc = x.clone();
        let h = function(move |y: Tensor| &xc * y);
        let s = h.specialize(&[x.ty()]).unwrap();
        assert_eq!(s.graph.params().len(), 2, "captured x is a parameter");
        assert_eq!(s.captures.len(), 1);
        let hy = h.apply1(std::slice::from_ref(&x));
        x * hy
    });
    let v: f64 = f.call(3.0).unwrap();
    assert_eq!(v, 27.0);
}

#[test]
fn shape_error_is_reported_with_location() {
    let f = function(|x: Tensor, y: Tensor| x + y);
    let tys = [Type::new(DType::F64, &[3]), Type::new(DType::F64, &[4])];
    let e = f.specialize(&tys).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message.contains("add") && e.message.contains("[3]") && e.message.contains("[4]"),
        "{e}"
    );
    let loc = e.location.expect("a location");
    assert!(loc.file().ends_with("tracer.rs"), "{loc}");
}

#[test]
fn wrong_arity_is_an_error() {
    let f = seed();
    let e = f.call::<_, f64>((1.0, 2.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    assert!(e.message.contains("takes 3 arguments, got 2"), "{e}");
}

#[test]
fn escaped_tracer_is_an_error() {
    use std::sync::Mutex;
    static LEAK: Mutex<Option<Tensor>> = Mutex::new(None);
    let f = function(|x: Tensor| {
        *LEAK.lock().unwrap() = Some(x.clone());
        x
    });
    let _: f64 = f.call(1.0).unwrap();
    let leaked = LEAK.lock().unwrap().clone().unwrap();
    let y = leaked.sin();
    let e = y.error().expect("an error tensor");
    assert_eq!(e.kind, ErrorKind::Trace);
    assert!(e.message.contains("escaped"), "{e}");
}

#[test]
fn eager_ops_on_concrete_tensors() {
    let x = Tensor::linspace(0.0, 1.0, 5);
    let y = (x.clone() * 2.0).sum_all();
    assert_eq!(y.to_f64().unwrap(), 5.0);
    let bad = Tensor::ones(&[2]).reshape(&[3]);
    assert_eq!(bad.to_array().unwrap_err().kind, ErrorKind::Shape);
}
