//! Misuse through the public API returns `Err` with a clear message — never a panic: bad
//! shapes, dtypes, axes and arity when tracing, transforming, vmapping and calling compiled
//! code with the wrong buffers.

use ferrax::prelude::*;
use ferrax::{ErrorKind, Type};

fn f64s(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

#[test]
fn tracing_errors() {
    let cases: Vec<(Function, Vec<Type>, ErrorKind, &str)> = vec![
        (
            function(|x: Tensor| x.slice(&[0], &[5], &[1])),
            vec![f64s(&[3])],
            ErrorKind::Axis,
            "slice",
        ),
        (
            function(|x: Tensor| x.pad(&[1], &[1], &[0], 0.0).sum(&[1])),
            vec![f64s(&[3])],
            ErrorKind::Axis,
            "reduce_sum",
        ),
        (
            function(|x: Tensor| x.argmax(0)),
            vec![f64s(&[0])],
            ErrorKind::Shape,
            "argmax",
        ),
        (
            function(|x: Tensor| x.broadcast_in_dim(&[4, 3], &[0])),
            vec![f64s(&[3])],
            ErrorKind::Shape,
            "broadcast_in_dim",
        ),
        (
            function(|x: Tensor, i: Tensor| x.gather(&i)),
            vec![f64s(&[3]), f64s(&[2])],
            ErrorKind::DType,
            "gather",
        ),
        (
            function(|x: Tensor| x.cumsum(3)),
            vec![f64s(&[3])],
            ErrorKind::Axis,
            "cumsum",
        ),
        (
            function(|x: Tensor| x.not()),
            vec![f64s(&[3])],
            ErrorKind::DType,
            "not",
        ),
        (
            function(|x: Tensor| x.iota_like_error()),
            vec![f64s(&[3])],
            ErrorKind::Axis,
            "iota",
        ),
    ];
    for (f, tys, kind, name) in cases {
        let e = f.specialize(&tys).unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(name), "{name}: {e}");
        assert!(e.location.is_some(), "{name}: a source line");
    }
}

trait IotaLikeError {
    fn iota_like_error(&self) -> Tensor;
}

impl IotaLikeError for Tensor {
    fn iota_like_error(&self) -> Tensor {
        Tensor::iota(DType::I32, &[3], 1).astype(DType::F64) + self
    }
}

#[test]
fn transform_errors() {
    let sq = |x: Tensor| x.clone() * x;
    let e = grad(sq).wrt(3).call::<_, f64>(1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform);
    // Integer inputs cannot be differentiated (a vector output is fine: the Hessian then has
    // shape out ++ in ++ in, as in JAX).
    let e = hessian(|x: Tensor| x.astype(DType::F64).sum_all())
        .call::<_, Array>(Array::from(vec![1i32, 2]))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transform, "{e}");
    let e = jvp(sq)
        .call::<_, Vec<Array>>((1.0, Array::from(vec![1.0, 2.0])))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    let e = vjp(sq)
        .call::<_, Vec<Array>>((1.0, Array::from(vec![1.0])))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    let v = vmap(sq).in_axes(&[Some(2)]);
    let e = v.call::<_, Array>(Array::from(vec![1.0, 2.0])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Axis, "{e}");
    let v = vmap(|x: Tensor, y: Tensor| x * y);
    let e = v
        .call::<_, Array>((
            Array::from(vec![1.0, 2.0]),
            Array::from(vec![1.0, 2.0, 3.0]),
        ))
        .unwrap_err();
    assert!(e.message.contains("batch"), "{e}");
}

#[test]
fn compiled_code_rejects_wrong_buffers() {
    let f = jit(|x: Tensor, y: Tensor| x.sin() * y).unwrap();
    let c = f.compiled_for(&[f64s(&[3]), f64s(&[3])]).unwrap();
    let a = Array::from(vec![1.0, 2.0, 3.0]);
    let short = Array::from(vec![1.0, 2.0]);
    let single = Array::from(vec![1.0f32, 2.0, 3.0]);
    let mut out = vec![Array::zeros(&f64s(&[3])).unwrap()];
    let e = c.call_into(&[&a], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    let e = c.call_into(&[&a, &short], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    let e = c.call_into(&[&a, &single], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    let mut bad_out = vec![Array::zeros(&f64s(&[2])).unwrap()];
    assert!(c.call_into(&[&a, &a], &mut bad_out).is_err());
    let mut no_out: Vec<Array> = vec![];
    assert!(c.call_into(&[&a, &a], &mut no_out).is_err());
    // Scalar entry points check their types once, when they are created.
    let s = jit(|x: Tensor| x.exp()).unwrap();
    let cs = s.compiled().unwrap();
    assert!(cs.as_fn1::<f32>().is_err());
    assert!(cs.as_fn2::<f64>().is_err());
    let mut o = [0.0; 2];
    assert!(cs.call_scalar(&[1.0], &mut o).is_err());
    assert!(cs.call_scalar(&[1.0, 2.0], &mut o[..1]).is_err());
}

#[test]
fn escaped_and_foreign_tracers_are_errors() {
    let inner = std::sync::Mutex::new(None);
    let f = function(move |x: Tensor| {
        let g = function(|y: Tensor| y.sin());
        let out = g.apply1(std::slice::from_ref(&x));
        *inner.lock().unwrap() = Some(out.clone());
        out
    });
    let _: f64 = f.call(1.0).unwrap();
    // Calling a function that closes over a tracer with concrete values is an error.
    let g = function(|x: Tensor| {
        let xc = x.clone();
        let h = function(move |y: Tensor| &xc * y);
        let r = h.call_arrays(&[Array::from(2.0)]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::Trace);
        x
    });
    let _: f64 = g.call(1.0).unwrap();
}
