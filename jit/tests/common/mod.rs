//! Shared helpers of the JIT tests: deterministic inputs and a JIT-vs-interpreter check.
#![allow(dead_code)]

use ferrax_ir::{interp, Array, DType, Data, Graph, Shape, Tensor, Type};
use ferrax_jit::{compile, JitOptions};

/// Deterministic pseudo-random numbers (a 64-bit LCG).
pub struct Rng(pub u64);

impl Rng {
    /// The next number in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An array of `dtype` and `dims` with values in [lo, hi) (floats), small ints, or bools;
/// with `specials`, some float elements are ±0, ±∞ or NaN.
pub fn array(
    rng: &mut Rng,
    dtype: DType,
    dims: &[usize],
    lo: f64,
    hi: f64,
    specials: bool,
) -> Array {
    let n: usize = dims.iter().product();
    let special = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1.0,
        -1.0,
    ];
    let vals: Vec<f64> = (0..n)
        .map(|_| {
            if specials && rng.next() < 0.2 {
                special[(rng.next() * special.len() as f64) as usize]
            } else {
                lo + (hi - lo) * rng.next()
            }
        })
        .collect();
    let data = match dtype {
        DType::F64 => Data::F64(vals),
        DType::F32 => Data::F32(vals.iter().map(|&x| x as f32).collect()),
        DType::I32 => Data::I32(
            vals.iter()
                .map(|&x| if x.is_finite() { x.round() as i32 } else { 7 })
                .collect(),
        ),
        DType::Bool => Data::Bool(vals.iter().map(|&x| x > (lo + hi) / 2.0).collect()),
    };
    Array::new(Shape::new(dims), data).unwrap()
}

/// Whether two arrays are equal bit for bit (any NaN equals any NaN).
pub fn same_bits(a: &Array, b: &Array) -> bool {
    if a.shape() != b.shape() {
        return false;
    }
    match (a.data(), b.data()) {
        (Data::F64(x), Data::F64(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        (Data::F32(x), Data::F32(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        (Data::I32(x), Data::I32(y)) => x == y,
        (Data::Bool(x), Data::Bool(y)) => x == y,
        _ => false,
    }
}

/// Whether two float arrays agree within a relative tolerance.
pub fn close(a: &Array, b: &Array, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(&p, q)| {
            (p.is_nan() && q.is_nan())
                || p == q
                || (p - q).abs() <= tol * (1.0 + p.abs().max(q.abs()))
        })
}

/// Runs `graph` through the JIT (twice: `call` and `call_into`) and the interpreter and
/// asserts bit-identical results.
pub fn check(graph: &Graph, args: &[Array]) {
    check_with(graph, args, None)
}

/// As [`check`], with a relative tolerance instead of bit equality when `tol` is given.
pub fn check_with(graph: &Graph, args: &[Array], tol: Option<f64>) {
    let want = interp::eval(graph, args).expect("interpreter");
    let f = compile(graph, &JitOptions::default()).expect("compile");
    let got = f.call(args).expect("call");
    assert_eq!(want.len(), got.len());
    for (k, (w, g)) in want.iter().zip(&got).enumerate() {
        let ok = match tol {
            None => same_bits(w, g),
            Some(t) => close(w, g, t),
        };
        assert!(
            ok,
            "output {k} differs\n graph: {graph:?}\n args: {args:?}\n interp: {w}\n jit: {g}"
        );
    }
    let refs: Vec<&Array> = args.iter().collect();
    let mut outs: Vec<Array> = f
        .output_types()
        .iter()
        .map(|t| Array::full(t.dtype, t.shape.clone(), 3.0).unwrap())
        .collect();
    f.call_into(&refs, &mut outs).expect("call_into");
    for (w, g) in want.iter().zip(&outs) {
        assert!(
            tol.is_some() || same_bits(w, g),
            "call_into differs: {w} vs {g}"
        );
    }
}

/// Adam's update over one parameter tensor: `[p', m', v']` from `(p, g, m, v)`, with the
/// hyperparameters `(b1, b2, lr, eps)` as rank-0 parameters (so nothing folds into constants).
pub fn adam(xs: &[Tensor]) -> [Tensor; 3] {
    let (p, g, m, v) = (&xs[0], &xs[1], &xs[2], &xs[3]);
    let (b1, b2, lr, eps) = (&xs[4], &xs[5], &xs[6], &xs[7]);
    let dims = p.shape().to_vec();
    let like = |s: &Tensor| s.broadcast_in_dim(&dims, &[]);
    let m2 = like(&(1.0 - b1)) * g + like(b1) * m;
    let v2 = like(&(1.0 - b2)) * (g * g) + like(b2) * v;
    let u =
        &m2 * like(&(1.0 - b1).recip()) / ((&v2 * like(&(1.0 - b2).recip())).sqrt() + like(eps));
    [p - like(lr) * u, m2, v2]
}

/// The parameter types of [`adam`]: four tensors of `dims`, then four scalars.
pub fn adam_types(dtype: DType, dims: &[usize]) -> Vec<Type> {
    let mut t = vec![Type::new(dtype, dims); 4];
    t.extend((0..4).map(|_| Type::new(dtype, &[])));
    t
}

/// Arguments for [`adam`]: a parameter, a gradient, a first moment in [-1, 1), a second moment
/// in [0, 1) (with `specials` sprinkled in), and the usual hyperparameters.
pub fn adam_args(rng: &mut Rng, dtype: DType, dims: &[usize], specials: bool) -> Vec<Array> {
    let mut a = vec![
        array(rng, dtype, dims, -2.0, 2.0, specials),
        array(rng, dtype, dims, -2.0, 2.0, specials),
        array(rng, dtype, dims, -1.0, 1.0, specials),
        array(rng, dtype, dims, 0.0, 1.0, specials),
    ];
    for x in [0.9, 0.999, 1e-3, 1e-8] {
        a.push(Array::scalar(dtype, x));
    }
    a
}
