//! Golden files for the simplified IR of transformed seed functions
//! (tests/filetests/transforms/*.fx): gradients, value-and-gradient, JVP, Hessian.
//!
//! Set `FERRAX_BLESS=1` to rewrite the golden files instead of failing on a difference.

use ferrax::prelude::*;
use ferrax::Graph;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/filetests/transforms");

fn seed() -> Function {
    function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln())
}

fn cases() -> Vec<(&'static str, Function)> {
    vec![
        ("grad_square", grad(|x: Tensor| x.clone() * x).function()),
        (
            "grad_sum_difference",
            grad(|x: Tensor, y: Tensor| (x.clone() + y.clone()) * (x - y))
                .wrt((0, 1))
                .function(),
        ),
        ("grad_seed", grad(seed()).wrt((0, 1, 2)).function()),
        (
            "value_and_grad_seed",
            value_and_grad(seed()).wrt((0, 1, 2)).function(),
        ),
        ("jvp_tanh", jvp(|x: Tensor| x.tanh())),
        ("grad2_tanh", grad(grad(|x: Tensor| x.tanh())).function()),
        (
            "grad4_tanh",
            grad(grad(grad(grad(|x: Tensor| x.tanh())))).function(),
        ),
        (
            "hessian_quadratic",
            hessian(|x: Tensor, y: Tensor| {
                x.clone() * x.clone() + 2.0 * x * y.clone() + y.clone() * y
            })
            .wrt((0, 1))
            .function(),
        ),
    ]
}

#[test]
fn transformed_golden_files() {
    let bless = std::env::var("FERRAX_BLESS").is_ok_and(|v| v == "1");
    std::fs::create_dir_all(DIR).expect("a writable filetests folder");
    let mut failures = Vec::new();
    for (name, f) in cases() {
        let g = f.graph().unwrap_or_else(|e| panic!("{name}: {e}"));
        g.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = format!("{}\n", g.to_text());
        let again = Graph::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{}\n", again.to_text()), text, "{name}: round trip");
        let path = format!("{DIR}/{name}.fx");
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == text => {}
            _ if bless => std::fs::write(&path, &text).expect("a writable golden file"),
            Ok(expected) => failures.push(format!("{name}:\n--- file\n{expected}--- now\n{text}")),
            Err(_) => failures.push(format!("{name}: missing {path} (FERRAX_BLESS=1 writes it)")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seed_values_through_the_facade() {
    let v: f64 = seed().call((1.0, 2.0, 3.0)).unwrap();
    assert!((v - 5.659572877985826).abs() <= 1e-15 * 5.66);
    let (dx, dy, dz): (f64, f64, f64) = grad(seed()).wrt((0, 1, 2)).call((1.0, 2.0, 3.0)).unwrap();
    let want = [3.6339699542969074, 5.659572877985825, -1.7171884131653474];
    for (got, want) in [dx, dy, dz].into_iter().zip(want) {
        assert!((got - want).abs() <= 1e-15 * want.abs(), "{got} vs {want}");
    }
}

#[test]
fn grad_rejects_bad_functions() {
    let e = grad(|x: Tensor| x.clone() * 2.0)
        .call::<_, Array>(Array::from(vec![1.0, 2.0]))
        .unwrap_err();
    assert_eq!(e.kind, ferrax::ErrorKind::Transform);
    assert!(e.message.contains("scalar"), "{e}");
    let e = grad(|x: Tensor| x.astype(DType::F64))
        .call::<_, f64>(Array::from(3i32))
        .unwrap_err();
    assert_eq!(e.kind, ferrax::ErrorKind::Transform);
    assert!(e.message.contains("i32"), "{e}");
}

#[test]
fn perturbation_confusion_is_impossible() {
    // d/dx [x * d/dy (x * y)] at any x is 2x: the inner derivative closes over x.
    let f = grad(|x: Tensor| {
        let xc = x.clone();
        let inner = grad(move |y: Tensor| &xc * y);
        x.clone() * inner.apply1(&[x])
    });
    let d: f64 = f.call(3.0).unwrap();
    assert_eq!(d, 6.0);
    // The same with jvp inside grad.
    let g = grad(|x: Tensor| {
        let xc = x.clone();
        let inner = jvp(move |y: Tensor| &xc * y);
        let outs = inner.apply(&[x.clone(), Tensor::scalar(1.0)]);
        x * outs[1].clone()
    });
    let d: f64 = g.call(5.0).unwrap();
    assert_eq!(d, 10.0);
}
