//! Golden files for the printed IR of traced functions (tests/filetests/traced/*.fx), and one
//! test per error kind that a user can trigger through the tracer and `Function`.
//!
//! Set `FERRAX_BLESS=1` to rewrite the golden files instead of failing on a difference.

use ferrax_ir::{function, Array, DType, ErrorKind, Function, Graph, Tensor, Type};

const TRACED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/filetests/traced");

fn f64s(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

/// The traced functions with golden IR: a name, the function and its input types.
fn cases() -> Vec<(&'static str, Function, Vec<Type>)> {
    vec![
        (
            "seed",
            function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln()),
            vec![f64s(&[]); 3],
        ),
        (
            "broadcast_add",
            function(|x: Tensor, y: Tensor| x + y),
            vec![f64s(&[3, 1]), f64s(&[4])],
        ),
        (
            "weak_scalars_f32",
            function(|x: Tensor| 2.0 * x.clone() + 1.0 - x.powi(3)),
            vec![Type::new(DType::F32, &[2])],
        ),
        (
            "matmul_tanh_mean",
            function(|x: Tensor, w: Tensor, b: Tensor| x.matmul(&w).add(&b).tanh().mean_all()),
            vec![f64s(&[4, 3]), f64s(&[3, 2]), f64s(&[2])],
        ),
        (
            "relu_select",
            function(|x: Tensor| x.gt(0.0).select(&x, 0.0)),
            vec![f64s(&[5])],
        ),
        (
            "softmax_rows",
            function(|x: Tensor| x.softmax(1)),
            vec![f64s(&[2, 3])],
        ),
        (
            "one_hot_cross_entropy",
            function(|logits: Tensor, labels: Tensor| {
                let lse = logits.logsumexp(&[1]);
                let picked = (logits * labels.one_hot(3, DType::F64)).sum(&[1]);
                (lse - picked).mean_all()
            }),
            vec![f64s(&[4, 3]), Type::new(DType::I32, &[4])],
        ),
        (
            "closure_constant",
            {
                let w = Tensor::from(vec![1.0, 2.0, 3.0]);
                function(move |x: Tensor| (x * &w).sum_all())
            },
            vec![f64s(&[3])],
        ),
        (
            "shape_ops",
            function(|x: Tensor| {
                let y = x.t().reshape(&[3, 2]).rev(&[0]);
                let z = y
                    .slice(&[0, 0], &[3, 2], &[2, 1])
                    .pad(&[1, 0], &[0, 1], &[0, 0], 0.0);
                ferrax_ir::concatenate(&[z.clone(), z], 0).cumsum(1)
            }),
            vec![f64s(&[2, 3])],
        ),
    ]
}

#[test]
fn traced_golden_files() {
    let bless = std::env::var("FERRAX_BLESS").is_ok_and(|v| v == "1");
    std::fs::create_dir_all(TRACED_DIR).expect("a writable filetests folder");
    let mut failures = Vec::new();
    for (name, f, types) in cases() {
        let s = f
            .specialize(&types)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        s.graph.verify().unwrap();
        let text = format!("{}\n", s.graph.to_text());
        // The printed text parses back to a graph that prints the same.
        let again = Graph::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{}\n", again.to_text()), text, "{name}: round trip");
        let path = format!("{TRACED_DIR}/{name}.fx");
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == text => {}
            _ if bless => std::fs::write(&path, &text).expect("a writable golden file"),
            Ok(expected) => {
                failures.push(format!("{name}:\n--- file\n{expected}--- traced\n{text}"))
            }
            Err(_) => failures.push(format!("{name}: missing {path} (FERRAX_BLESS=1 writes it)")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_shape_mismatch() {
    let f = function(|x: Tensor, y: Tensor| x.matmul(&y));
    let e = f.specialize(&[f64s(&[2, 3]), f64s(&[4, 5])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message.contains("dot_general") && e.message.contains("f64[2,3]"),
        "{e}"
    );
    assert!(e.message.contains("f64[4,5]"), "{e}");
    assert!(
        e.to_string().contains("traced.rs:"),
        "the user's line is named: {e}"
    );
}

#[test]
fn error_dtype_mismatch() {
    let f = function(|x: Tensor, y: Tensor| x.pow(&y));
    let e = f
        .specialize(&[f64s(&[]), Type::scalar(DType::F32)])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message.contains("pow") && e.message.contains("f32[]"),
        "{e}"
    );
}

#[test]
fn error_integer_input_to_float_op() {
    let f = function(|x: Tensor| x.sin());
    let e = f.specialize(&[Type::scalar(DType::I32)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message.contains("sin") && e.message.contains("i32"),
        "{e}"
    );
}

#[test]
fn error_bad_axes() {
    let f = function(|x: Tensor| x.sum(&[2]));
    let e = f.specialize(&[f64s(&[2, 3])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Axis);
    assert!(
        e.message.contains("reduce_sum") && e.message.contains("[2]"),
        "{e}"
    );
}

#[test]
fn error_bad_permutation() {
    let f = function(|x: Tensor| x.transpose(&[0, 0]));
    let e = f.specialize(&[f64s(&[2, 3])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Axis);
    assert!(
        e.message.contains("transpose") && e.message.contains("[0, 0]"),
        "{e}"
    );
}

#[test]
fn error_bad_reshape() {
    let f = function(|x: Tensor| x.reshape(&[4]));
    let e = f.specialize(&[f64s(&[2, 3])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message.contains("reshape") && e.message.contains("6 elements"),
        "{e}"
    );
}

#[test]
fn error_wrong_arity_call() {
    let f = function(|x: Tensor, y: Tensor| x * y);
    let e = f.call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    assert!(e.message.contains("takes 2 arguments, got 1"), "{e}");
}

#[test]
fn error_wrong_argument_types_for_fixed_graph() {
    let f = ferrax_ir::trace(|x: Tensor| x.exp(), &[f64s(&[3])]).unwrap();
    let e = f
        .call::<_, Array>(Array::from(vec![1.0f32, 2.0, 3.0]))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message.contains("f64[3]") && e.message.contains("f32[3]"),
        "{e}"
    );
}

#[test]
fn error_wrong_output_count() {
    let f = function(|x: Tensor| (x.sin(), x.cos()));
    let e = f.call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    assert!(
        e.message
            .contains("expected 1 outputs, the function returned 2"),
        "{e}"
    );
}

#[test]
fn error_first_error_wins_and_poisons() {
    // The first bad op is reported even though later ops use its (error) result.
    let f = function(|x: Tensor| x.reshape(&[7]).sin().exp());
    let e = f.specialize(&[f64s(&[3])]).unwrap_err();
    assert!(e.message.starts_with("reshape"), "{e}");
}
