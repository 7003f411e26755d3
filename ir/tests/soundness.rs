//! Soundness of the IR layer under hostile input: shapes whose size overflows, buffers too
//! large for the machine and arrays whose length could disagree with their shape are errors
//! (of kinds `Size` and `Resource`) at construction, specialisation or parse time, and the
//! process goes on.

use ferrax_ir::ops::{LiteralOp, ShapeOp};
use ferrax_ir::{
    function, interp, Array, DType, ErrorKind, Graph, Op, Shape, Tensor, Type, MAX_BYTES,
};

/// Asserts that `r` is an error of `kind` whose message contains every one of `words`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: ferrax_ir::Result<T>, kind: ErrorKind, words: &[&str]) {
    let e = r.expect_err("an error");
    assert_eq!(e.kind, kind, "{e}");
    for w in words {
        assert!(e.message.contains(w), "`{w}` missing from: {e}");
    }
}

/// Whether the kernel grants every allocation (`vm.overcommit_memory = 1`): then an 8 TiB
/// request succeeds and only touching the pages fails, which no process can catch, so the
/// tests ask for more than the 128 TiB of address space instead.
fn overcommit_always() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|s| s.trim() == "1")
}

/// The element count of a huge f64 test buffer and how its size prints: 8 TiB (a request far
/// beyond any machine), or 1 PiB where the kernel overcommits always.
fn huge() -> (usize, &'static str, &'static str) {
    if overcommit_always() {
        (1 << 47, "1 PiB", "f64[140737488355328]")
    } else {
        (1 << 40, "8 TiB", "f64[1099511627776]")
    }
}

#[test]
fn shapes_whose_size_overflows_are_rejected_by_array_constructors() {
    // The element count wraps to 0 in unchecked arithmetic.
    assert_err(
        Array::from_f64([1 << 32, 1 << 32], vec![]),
        ErrorKind::Size,
        &["Array::new", "[4294967296,4294967296]", "overflows"],
    );
    let e = Array::full(DType::F64, [usize::MAX, 2], 0.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size);
    assert!(e.location.unwrap().file().ends_with("soundness.rs"), "{e}");
    // Fits usize, but not the allocator's limit of isize::MAX bytes.
    assert_err(
        Array::full(DType::F64, [MAX_BYTES / 4], 0.0),
        ErrorKind::Size,
        &["Array::full", "limit"],
    );
    // A zero dimension makes any other dimension harmless.
    let a = Array::full(DType::F32, [0, usize::MAX], 1.0).unwrap();
    assert_eq!(a.size(), 0);
}

#[test]
fn allocations_the_machine_cannot_serve_are_resource_errors() {
    // 8 TiB: within the type limit, beyond any machine this runs on.
    let (n, size, ty) = huge();
    assert_err(
        Array::full(DType::F64, [n], 0.0),
        ErrorKind::Resource,
        &["cannot allocate", size, ty],
    );
    assert_err(
        Array::zeros(&Type::new(DType::F32, &[n, 64])),
        ErrorKind::Resource,
        &["cannot allocate"],
    );
    // The process goes on and ordinary allocations still work.
    assert_eq!(Array::full(DType::I32, [3], 7.0).unwrap().size(), 3);
}

#[test]
fn type_rules_reject_results_whose_size_overflows() {
    let iota = Op::Literal(LiteralOp::Iota {
        dtype: DType::F64,
        shape: Shape::new(&[1 << 32, 1 << 32]),
        axis: 0,
    });
    assert_err(iota.infer(&[]), ErrorKind::Size, &["iota", "overflows"]);

    let x = Type::new(DType::F64, &[3]);
    let pad = Op::Shape(ShapeOp::Pad {
        lo: Box::new([usize::MAX / 2]),
        hi: Box::new([usize::MAX / 2]),
        interior: Box::new([0]),
    });
    assert_err(
        pad.infer(&[x.clone(), Type::scalar(DType::F64)]),
        ErrorKind::Size,
        &["pad", "dimension 0", "overflows"],
    );
    let pad = Op::Shape(ShapeOp::Pad {
        lo: Box::new([0]),
        hi: Box::new([0]),
        interior: Box::new([usize::MAX / 2]),
    });
    assert_err(
        pad.infer(&[x.clone(), Type::scalar(DType::F64)]),
        ErrorKind::Size,
        &["pad"],
    );
    let bcast = Op::Shape(ShapeOp::BroadcastInDim {
        shape: Shape::new(&[1 << 62, 4]),
        dims: Box::default(),
    });
    assert_err(
        bcast.infer(&[Type::scalar(DType::F64)]),
        ErrorKind::Size,
        &["broadcast_in_dim", "f64[4611686018427387904,4]"],
    );
    let big = Type::new(DType::F64, &[usize::MAX / 2]);
    let concat = Op::Shape(ShapeOp::Concatenate { axis: 0 });
    assert_err(
        concat.infer(&[big.clone(), big.clone(), big]),
        ErrorKind::Size,
        &["concatenate"],
    );
}

#[test]
fn traced_shapes_that_overflow_are_trace_errors_with_the_callers_line() {
    let f = function(|x: Tensor| Tensor::iota(DType::F64, &[1 << 32, 1 << 32], 0) + x);
    let e = f.call_arrays(&[Array::from(1.0)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size, "{e}");
    assert!(e.location.unwrap().file().ends_with("soundness.rs"), "{e}");

    let f = function(|x: Tensor| x.pad(&[usize::MAX / 2], &[usize::MAX / 2], &[0], 0.0));
    let e = f.call_arrays(&[Array::from(vec![1.0, 2.0])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size, "{e}");

    let f = function(|x: Tensor| Tensor::eye(1 << 33) + x);
    assert!(f.call_arrays(&[Array::from(1.0)]).is_err());
    let f = function(|x: Tensor| Tensor::arange(usize::MAX) + x);
    assert_eq!(
        f.call_arrays(&[Array::from(1.0)]).unwrap_err().kind,
        ErrorKind::Size
    );
}

#[test]
fn specialising_for_an_oversized_type_is_an_error() {
    let f = function(|x: Tensor| x.sin());
    let e = f
        .specialize(&[Type::new(DType::F64, &[1 << 62, 4])])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Size, "{e}");
    assert!(e.message.contains("f64[4611686018427387904,4]"), "{e}");
    assert!(e.location.unwrap().file().ends_with("soundness.rs"), "{e}");
}

#[test]
fn the_interpreter_reports_results_it_cannot_allocate() {
    // Tracing a huge broadcast is fine (the type is legal); computing it is not.
    let (n, size, ty) = huge();
    let f = function(move |x: Tensor| x.broadcast_to(&[n]).sin());
    let e = f.call_arrays(&[Array::from(1.0)]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Resource, "{e}");
    let want = format!("cannot allocate {size} for the output of broadcast_in_dim {ty}");
    assert!(e.message.contains(&want), "{e}");
    // The interpreter still works afterwards.
    let g = function(|x: Tensor| x.broadcast_to(&[4]).sin());
    let out = g.call_arrays(&[Array::from(1.0)]).unwrap();
    assert_eq!(out[0].size(), 4);
    let graph = g.graph().unwrap();
    assert!(interp::eval(&graph, &[Array::from(1.0)]).is_ok());
}

#[test]
fn the_parser_rejects_oversized_types() {
    for (text, words) in [
        (
            "{ lambda v0:f64[2147483647,2147483647,4] . let in (v0) }",
            &["overflows"][..],
        ),
        (
            "{ lambda v0:f64[2147483647,1073741824] . let in (v0) }",
            &["limit"][..],
        ),
        (
            "{ lambda v0:f64[] . let v1:f64[2147483647,2147483647,4] = \
             broadcast_in_dim[shape=(2147483647,2147483647,4) dims=()] v0 in (v1) }",
            &["overflows"][..],
        ),
    ] {
        let e = Graph::parse(text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Size, "{text}: {e}");
        for w in words {
            assert!(e.message.contains(w), "{text}: {e}");
        }
    }
}

#[test]
fn array_buffers_keep_their_length() {
    let mut a = Array::from(vec![1.0, 2.0, 3.0]);
    assert_eq!(a.data_mut().len(), 3);
    a.as_f64_mut().unwrap()[1] = 5.0;
    assert_eq!(a.as_f64().unwrap(), &[1.0, 5.0, 3.0]);
    assert!(a.as_f32_mut().is_none());
    assert_eq!(a.size(), a.shape().size());
}
