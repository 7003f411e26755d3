//! The generic call path `Jit::call` and `Jit::call_into_outs`: its fast path (same argument
//! types as the previous call) gives the results of the checked path, a change of argument
//! types takes the general path and stays correct, wrong arguments give the errors they gave
//! before, and several threads share one `Jit`.

use ferrax_ir::{Array, DType, ErrorKind, Tensor, Type};
use ferrax_jit::{jit, Jit};

fn seed(x: Tensor, y: Tensor, z: Tensor) -> Tensor {
    x.sin() * y.exp() / z.ln()
}

fn seed_jit() -> Jit {
    jit(seed).unwrap()
}

/// The checked path: arrays built and checked by `Compiled::call`.
fn checked(f: &Jit, args: &[Array]) -> Vec<Array> {
    let types: Vec<Type> = args.iter().map(|a| a.ty()).collect();
    f.compiled_for(&types).unwrap().call(args).unwrap()
}

/// The interpreter's result.
fn interp(f: &Jit, args: &[Array]) -> Vec<Array> {
    f.function().call_arrays(args).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn fast_path_matches_checked_path_and_interpreter() {
    let f = seed_jit();
    let mut seen_fast = 0;
    for k in 0..50 {
        let (x, y, z) = (
            0.1 * k as f64 - 2.0,
            0.7 - 0.03 * k as f64,
            1.5 + 0.2 * k as f64,
        );
        // The first call takes the general path, the rest the fast one.
        let got: f64 = f.call((x, y, z)).unwrap();
        let args = [Array::from(x), Array::from(y), Array::from(z)];
        let want = checked(&f, &args);
        assert_eq!(got, f64::try_from(&want[0]).unwrap(), "k = {k}");
        let i = f64::try_from(&interp(&f, &args)[0]).unwrap();
        assert!(close(got, i, 1e-13), "{got} vs {i}");
        assert_eq!(got.to_bits(), (x.sin() * y.exp() / z.ln()).to_bits());
        seen_fast += 1;
    }
    assert_eq!(seen_fast, 50);
    // Other result types convert as the checked path converts them.
    let a: Array = f.call((0.3, 0.4, 2.0)).unwrap();
    assert_eq!(a, checked(&f, &[0.3.into(), 0.4.into(), 2.0.into()])[0]);
    let v: Vec<f64> = f.call((0.3, 0.4, 2.0)).unwrap();
    assert_eq!(v, vec![f64::try_from(&a).unwrap()]);
    let outs: Vec<Array> = f.call((0.3, 0.4, 2.0)).unwrap();
    assert_eq!(outs, vec![a.clone()]);
    // Borrowed and owned arrays and slices take the same path.
    let arrays = vec![Array::from(0.3), Array::from(0.4), Array::from(2.0)];
    let b: f64 = f.call((&arrays[0], &arrays[1], &arrays[2])).unwrap();
    assert_eq!(b, f64::try_from(&a).unwrap());
    let c: f64 = f.call(arrays.as_slice()).unwrap();
    assert_eq!(c, b);
    let d: f64 = f.call(arrays.clone()).unwrap();
    assert_eq!(d, b);
    // Scalars and rank-0 arrays of one type share code and mix freely.
    let m: f64 = f.call((0.3, &arrays[1], 2.0)).unwrap();
    assert_eq!(m, b);
}

#[test]
fn several_scalar_outputs_use_stack_slots() {
    let f = jit(|x: Tensor, y: Tensor| (x.clone() * y.clone(), x.sin() + y, x.exp())).unwrap();
    for k in 0..10 {
        let (x, y) = (0.2 * k as f64, 1.0 - 0.1 * k as f64);
        let got: (f64, f64, f64) = f.call((x, y)).unwrap();
        let want = checked(&f, &[x.into(), y.into()]);
        let want: Vec<f64> = want.iter().map(|a| f64::try_from(a).unwrap()).collect();
        assert_eq!(vec![got.0, got.1, got.2], want);
        // f32 results of f32 arguments, and f64 results widened from f32.
        let g32: (f32, f32, f32) = f.call((x as f32, y as f32)).unwrap();
        let w32 = checked(&f, &[(x as f32).into(), (y as f32).into()]);
        assert_eq!(g32.1, f32::try_from(&w32[1]).unwrap());
        let wide: (f64, f64, f64) = f.call((x as f32, y as f32)).unwrap();
        assert_eq!(wide.2, g32.2 as f64);
    }
}

#[test]
fn changes_of_argument_types_take_the_general_path() {
    let f = jit(|x: Tensor, y: Tensor| (x.sin() * y).sum_all()).unwrap();
    let expect = |xs: &[f64], ys: &[f64]| -> f64 {
        xs.iter()
            .zip(ys.iter().cycle())
            .map(|(x, y)| x.sin() * y)
            .sum()
    };
    for round in 0..3 {
        let r = round as f64;
        // f64 scalars.
        let a: f64 = f.call((0.5 + r, 2.0)).unwrap();
        assert_eq!(a, expect(&[0.5 + r], &[2.0]));
        // f32 scalars: new code, f32 arithmetic.
        let b: f32 = f.call((0.5f32 + r as f32, 2.0f32)).unwrap();
        assert_eq!(b, (0.5f32 + r as f32).sin() * 2.0);
        // A vector and a scalar.
        let xs = vec![0.1, 0.2, 0.3 + r];
        let c: f64 = f.call((Array::from(xs.clone()), 3.0)).unwrap();
        assert!(close(c, expect(&xs, &[3.0]), 1e-14));
        // Another length.
        let xs5 = vec![0.1, 0.2, 0.3, 0.4, 0.5 + r];
        let d: f64 = f.call((&Array::from(xs5.clone()), 3.0)).unwrap();
        assert!(close(d, expect(&xs5, &[3.0]), 1e-14));
        // Another rank.
        let m = Array::from([[0.1, 0.2], [0.3, 0.4 + r]]);
        let e: f64 = f.call((&m, -1.0)).unwrap();
        assert!(close(e, expect(&[0.1, 0.2, 0.3, 0.4 + r], &[-1.0]), 1e-14));
        // Two vectors, and back to scalars.
        let ys = vec![1.0, -1.0, 2.0];
        let g: f64 = f
            .call((Array::from(xs.clone()), Array::from(ys.clone())))
            .unwrap();
        assert!(close(g, expect(&xs, &ys), 1e-14));
    }
    // Each type list compiled once: f64, f32, [3]+s, [5]+s, [2,2]+s, [3]+[3].
    for tys in [
        vec![Type::scalar(DType::F64); 2],
        vec![Type::scalar(DType::F32); 2],
        vec![Type::new(DType::F64, &[3]), Type::scalar(DType::F64)],
        vec![Type::new(DType::F64, &[2, 2]), Type::scalar(DType::F64)],
    ] {
        let c1 = f.compiled_for(&tys).unwrap();
        let c2 = f.compiled_for(&tys).unwrap();
        assert!(c1.same_code(&c2));
    }
}

/// The error of the general path for the same call, as it was before the fast path.
fn slow_error(f: &Jit, args: &[Array]) -> ferrax_ir::Error {
    f.call_arrays(args).unwrap_err()
}

#[test]
fn wrong_arguments_give_the_same_errors() {
    let f = seed_jit();
    // Warm the fast path first, so that the wrong calls meet a populated slot.
    let _: f64 = f.call((0.1, 0.2, 3.0)).unwrap();
    let line = line!() + 1;
    let e = f.call::<_, f64>((0.1, 0.2)).unwrap_err();
    let s = slow_error(&f, &[0.1.into(), 0.2.into()]);
    assert_eq!((e.kind, &e.message), (s.kind, &s.message));
    assert_eq!(e.kind, ErrorKind::Arity);
    let loc = e.location.expect("a location");
    assert!(
        loc.file().ends_with("generic_call.rs") && loc.line() == line,
        "{loc}"
    );
    let e = f.call::<_, f64>((0.1, 0.2, 3.0, 4.0)).unwrap_err();
    let s = slow_error(&f, &[0.1.into(), 0.2.into(), 3.0.into(), 4.0.into()]);
    assert_eq!((e.kind, &e.message), (s.kind, &s.message));
    // Mixed dtypes.
    let e = f.call::<_, f64>((0.1, 0.2f32, 3.0)).unwrap_err();
    let s = slow_error(&f, &[0.1.into(), 0.2f32.into(), 3.0.into()]);
    assert_eq!((e.kind, &e.message), (s.kind, &s.message));
    // The wrong number or type of results.
    let e = f.call::<_, (f64, f64)>((0.1, 0.2, 3.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    assert!(e.message.contains("expected 2 outputs"), "{}", e.message);
    let e = f.call::<_, f32>((0.1, 0.2, 3.0)).unwrap_err();
    let s = f32::try_from(&Array::from(0.0f64)).unwrap_err();
    assert_eq!((e.kind, &e.message), (s.kind, &s.message));
    let e = f.call::<_, i32>((0.1, 0.2, 3.0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Convert);
    // The slot still serves a right call afterwards.
    let y: f64 = f.call((0.1, 0.2, 3.0)).unwrap();
    assert_eq!(y, 0.1f64.sin() * 0.2f64.exp() / 3.0f64.ln());
}

#[test]
fn call_into_outs_checks_and_writes_outputs() {
    let f = jit(|x: Tensor, y: Tensor| (x.clone() * y.clone(), (x + y).sum_all())).unwrap();
    let x = Array::from(vec![1.0, 2.0, 3.0]);
    let y = Array::from(vec![4.0, 5.0, 6.0]);
    let mut prod = Array::from(vec![0.0; 3]);
    let mut total = 0.0f64;
    for _ in 0..3 {
        f.call_into_outs((&x, &y), (&mut prod, &mut total)).unwrap();
        assert_eq!(prod, Array::from(vec![4.0, 10.0, 18.0]));
        assert_eq!(total, 21.0);
    }
    // A slice of arrays as outputs.
    let mut outs = vec![Array::from(vec![0.0; 3]), Array::from(0.0)];
    f.call_into_outs(vec![x.clone(), y.clone()], outs.as_mut_slice())
        .unwrap();
    assert_eq!(outs[1], Array::from(21.0));
    // Wrong outputs are errors, and nothing runs.
    let mut short = Array::from(vec![0.0; 2]);
    let e = f
        .call_into_outs((&x, &y), (&mut short, &mut total))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let mut t32 = 0.0f32;
    let e = f
        .call_into_outs((&x, &y), (&mut prod, &mut t32))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(e.message.contains("output 1"), "{}", e.message);
    let e = f.call_into_outs((&x, &y), &mut prod).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    // Scalars of a scalar function.
    let g = seed_jit();
    let mut out = 0.0;
    g.call_into_outs((0.7, -1.3, 2.5), &mut out).unwrap();
    assert_eq!(out, 0.7f64.sin() * (-1.3f64).exp() / 2.5f64.ln());
    let mut out32 = 0.0f32;
    g.call_into_outs((0.7f32, -1.3f32, 2.5f32), (&mut out32,))
        .unwrap();
    assert_eq!(out32, 0.7f32.sin() * (-1.3f32).exp() / 2.5f32.ln());
    // Wrong arguments give the general path's error.
    let e = g.call_into_outs((0.7, -1.3), &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
}

#[test]
fn threads_with_different_types_share_one_jit() {
    let f = jit(|x: Tensor, y: Tensor| (x.sin() * y).sum_all()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4usize {
            let f = f.clone();
            s.spawn(move || {
                let xs: Vec<f64> = (0..t + 1).map(|i| 0.1 * (i + t) as f64).collect();
                let xa = Array::from(xs.clone());
                let want_vec: f64 = xs.iter().map(|x| x.sin() * 2.0).sum();
                for k in 0..500 {
                    let xk = 0.01 * k as f64;
                    // Each thread alternates its own types with the ones other threads use,
                    // so the shared slot keeps changing under it.
                    match (t + k) % 3 {
                        0 => {
                            let y: f64 = f.call((xk, 2.0)).unwrap();
                            assert_eq!(y, xk.sin() * 2.0);
                        }
                        1 => {
                            let y: f32 = f.call((xk as f32, 2.0f32)).unwrap();
                            assert_eq!(y, (xk as f32).sin() * 2.0);
                        }
                        _ => {
                            let y: f64 = f.call((&xa, 2.0)).unwrap();
                            assert!(close(y, want_vec, 1e-14), "{y} vs {want_vec}");
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn the_memory_budget_is_checked_on_the_fast_path() {
    let opts = ferrax_jit::JitOptions {
        max_call_bytes: Some(0),
        ..Default::default()
    };
    let f = ferrax_jit::jit_with(seed, opts).unwrap();
    let want = f
        .compiled()
        .unwrap()
        .call(&[0.1.into(), 0.2.into(), 3.0.into()])
        .unwrap_err();
    assert_eq!(want.kind, ErrorKind::Resource);
    // Twice: the first call fills the slot, the second goes through it.
    for _ in 0..2 {
        let e = f.call::<_, f64>((0.1, 0.2, 3.0)).unwrap_err();
        assert_eq!((e.kind, &e.message), (want.kind, &want.message));
        let mut out = 0.0;
        let e = f.call_into_outs((0.1, 0.2, 3.0), &mut out).unwrap_err();
        assert_eq!((e.kind, &e.message), (want.kind, &want.message));
        let mut a = Array::from(0.0);
        let e = f.call_into_outs((0.1, 0.2, 3.0), &mut a).unwrap_err();
        assert_eq!((e.kind, &e.message), (want.kind, &want.message));
    }
}

#[test]
fn integer_and_bool_scalars_pass_through_their_own_storage() {
    // Mixed dtypes: no register entry, so the tensor entry reads each scalar through a
    // pointer to its place in the argument list (4 bytes for i32, 1 for bool).
    let f = jit(|x: Tensor, n: Tensor, b: Tensor| {
        let y = x * n.astype(DType::F64);
        (b.select(y.clone(), -y.clone()), n.clone() + n)
    })
    .unwrap();
    for k in -3i32..4 {
        for b in [true, false] {
            let x = 0.25 * k as f64 + 0.5;
            let got: (f64, i32) = f.call((x, k, b)).unwrap();
            let args = [Array::from(x), Array::from(k), Array::from(b)];
            let want = interp(&f, &args);
            assert_eq!(got.0, f64::try_from(&want[0]).unwrap(), "k = {k}, b = {b}");
            assert_eq!(got.1, i32::try_from(&want[1]).unwrap());
            assert_eq!(got.1, 2 * k);
            assert_eq!(got.0, if b { x * k as f64 } else { -(x * k as f64) });
            // Into places: an f64 and an i32.
            let (mut y, mut m) = (0.0, 0i32);
            f.call_into_outs((x, k, b), (&mut y, &mut m)).unwrap();
            assert_eq!((y, m), got);
        }
    }
}

#[test]
fn scalar_and_array_outputs_together_convert_like_arrays() {
    // Rank-0 outputs next to array outputs are read from stack slots (no array built for
    // them): every dtype, as a typed value and as an `Array`, against the interpreter.
    let f = jit(|x: Tensor, v: Tensor| {
        let s = (x.clone() * v.clone()).sum_all();
        (
            s.clone(),
            v.clone() * x.clone(),
            s.clone().astype(DType::F32),
            s.clone().astype(DType::I32),
            s.gt(0.0),
            v.sin(),
        )
    })
    .unwrap();
    for k in 0..6 {
        let x = 0.75 * k as f64 - 2.0;
        let v = Array::from(vec![1.5, -0.5, 2.0 + k as f64]);
        let want = interp(&f, &[Array::from(x), v.clone()]);
        let got: (f64, Vec<f64>, f32, i32, Array, Array) = f.call((x, v.clone())).unwrap();
        assert_eq!(got.0.to_bits(), f64::try_from(&want[0]).unwrap().to_bits());
        assert_eq!(got.1, Vec::<f64>::try_from(&want[1]).unwrap());
        assert_eq!(got.2.to_bits(), f32::try_from(&want[2]).unwrap().to_bits());
        assert_eq!(got.3, i32::try_from(&want[3]).unwrap());
        assert!(got.4.bits_eq(&want[4]), "{} vs {}", got.4, want[4]);
        assert!(got.5.bits_eq(&want[5]));
        let all: Vec<Array> = f.call((x, v.clone())).unwrap();
        assert_eq!(all.len(), want.len());
        for (g, w) in all.iter().zip(&want) {
            assert!(g.bits_eq(w), "{g} vs {w}");
        }
        // Too few places for the outputs is the count error, as before.
        let e = f.call::<_, (f64, Array)>((x, v)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Arity, "{e}");
    }
}
