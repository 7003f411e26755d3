//! Tests of `Array` conversions: scalars, vectors, slices, nested arrays, typed extraction, and
//! (with the `ndarray` feature) `ndarray::ArrayD`.

use ferrax_ir::{Array, DType, ErrorKind, Type};

#[test]
fn scalars_and_vectors_convert_both_ways() {
    let a = Array::from(2.5f64);
    assert_eq!(a.ty(), Type::scalar(DType::F64));
    assert_eq!(f64::try_from(&a).unwrap(), 2.5);
    let v = Array::from(vec![1.0f32, 2.0, 3.0]);
    assert_eq!(v.ty(), Type::new(DType::F32, &[3]));
    assert_eq!(Vec::<f32>::try_from(v).unwrap(), vec![1.0, 2.0, 3.0]);
    let s: &[i32] = &[4, 5];
    let i = Array::from(s);
    assert_eq!(i.as_i32().unwrap(), &[4, 5]);
    let m = Array::from([[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(m.dims(), &[2, 2]);
    assert_eq!(m.to_string(), "[[1, 2], [3, 4]]");
    let b = Array::from(vec![true, false]);
    assert_eq!(b.dtype(), DType::Bool);
}

#[test]
fn conversions_report_mismatches() {
    let v = Array::from(vec![1.0, 2.0]);
    let e = f64::try_from(&v).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Convert);
    assert!(e.message.contains("f64[2]"), "{e}");
    let e = Vec::<f32>::try_from(&v).unwrap_err();
    assert!(e.message.contains("Vec<f32>"), "{e}");
    let e = Array::from_f64([2, 2], vec![1.0]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message
            .contains("[2,2] holds 4 elements but 1 were given"),
        "{e}"
    );
}

#[test]
fn zero_size_and_rank_zero_arrays() {
    let z = Array::zeros(&Type::new(DType::F64, &[3, 0])).unwrap();
    assert_eq!(z.size(), 0);
    assert_eq!(z.to_string(), "[[], [], []]");
    let c = Array::from(1.0f64).cast(DType::I32);
    assert_eq!(c.as_i32().unwrap(), &[1]);
    assert_eq!(
        Array::from(f64::NAN).cast(DType::I32).as_i32().unwrap(),
        &[0]
    );
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_round_trip() {
    let nd =
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 3]), vec![1.0f64, 2., 3., 4., 5., 6.])
            .unwrap();
    let a = Array::from(nd.clone());
    assert_eq!(a.dims(), &[2, 3]);
    let back = ndarray::ArrayD::<f64>::try_from(a).unwrap();
    assert_eq!(back, nd);
    let e = ndarray::ArrayD::<f32>::try_from(Array::from(1.0f64)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Convert);
}

#[test]
fn every_dtype_widens_to_f64_vectors_element_by_element() {
    use ferrax_ir::function::FromArray;
    let cases = [
        (
            Array::from(vec![1.5f64, -0.0, f64::INFINITY]),
            vec![1.5, -0.0, f64::INFINITY],
        ),
        (
            Array::from(vec![0.1f32, -2.0]),
            vec![f64::from(0.1f32), -2.0],
        ),
        (Array::from(vec![7i32, -3]), vec![7.0, -3.0]),
        (Array::from(vec![true, false]), vec![1.0, 0.0]),
        (Array::from(4.0f64), vec![4.0]),
    ];
    for (a, want) in cases {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.to_f64_vec()), bits(&want), "{a}");
        assert_eq!(
            bits(&Vec::<f64>::from_array(a.clone()).unwrap()),
            bits(&want),
            "{a}"
        );
    }
}
