//! Shared helpers for the transform tests: a tiny deterministic RNG, graph builders, evaluation
//! and numeric comparisons.
#![allow(dead_code)]

pub mod batching;

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{BinaryOp, ReduceOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Dims, Graph, Op, Type, Value};

/// A SplitMix64 generator: deterministic, no dependencies.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }

    /// An f64 array of `ty`'s shape with uniform elements in [lo, hi).
    pub fn array(&mut self, ty: &Type, lo: f64, hi: f64) -> Array {
        let v: Vec<f64> = (0..ty.size()).map(|_| self.uniform(lo, hi)).collect();
        Array::from_f64(ty.shape.clone(), v).unwrap().cast(ty.dtype)
    }
}

/// The f64 type of the given dims.
pub fn f64t(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

/// Builds a graph with parameters of `tys` and outputs produced by `f`.
pub fn build(tys: &[Type], f: impl FnOnce(&mut Builder, &[Value]) -> Vec<Value>) -> Graph {
    let mut b = Builder::new();
    let ps: Vec<Value> = tys.iter().map(|t| b.param(t.clone())).collect();
    let outs = f(&mut b, &ps);
    let g = b.finish(&outs);
    g.verify().unwrap();
    g
}

/// A scalar f64 function of one scalar.
pub fn scalar_fn(f: impl FnOnce(&mut Builder, Value) -> Value) -> Graph {
    build(&[f64t(&[])], |b, ps| vec![f(b, ps[0])])
}

/// Applies a unary op.
pub fn un(b: &mut Builder, op: UnaryOp, x: Value) -> Value {
    b.push1(Op::Unary(op), &[x]).unwrap()
}

/// Applies a binary op.
pub fn bin(b: &mut Builder, op: BinaryOp, x: Value, y: Value) -> Value {
    b.push1(Op::Binary(op), &[x, y]).unwrap()
}

/// Sums all elements.
pub fn sum_all(b: &mut Builder, x: Value) -> Value {
    let axes: Dims = (0..b.ty(x).rank()).collect();
    b.push1(Op::Reduce(ReduceOp::Sum { axes }), &[x]).unwrap()
}

/// A scalar f64 constant.
pub fn cst(b: &mut Builder, x: f64) -> Value {
    b.constant(Array::scalar(DType::F64, x))
}

/// Evaluates a graph (verifying it first).
pub fn run(g: &Graph, args: &[Array]) -> Vec<Array> {
    g.verify().unwrap();
    eval(g, args).unwrap()
}

/// Evaluates a graph on scalars and returns the scalar outputs.
pub fn run_scalars(g: &Graph, xs: &[f64]) -> Vec<f64> {
    let args: Vec<Array> = xs.iter().map(|&x| Array::from(x)).collect();
    run(g, &args)
        .iter()
        .map(|a| a.to_scalar().unwrap())
        .collect()
}

/// Asserts that two numbers agree to a relative tolerance (with an absolute floor).
#[track_caller]
pub fn close(a: f64, b: f64, rtol: f64, what: &str) {
    let ok = (a - b).abs() <= rtol * (1.0 + a.abs().max(b.abs())) || (a.is_nan() && b.is_nan());
    assert!(ok, "{what}: {a} vs {b}");
}

/// Asserts that two arrays agree elementwise.
#[track_caller]
pub fn close_arrays(a: &Array, b: &Array, rtol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    for (i, (x, y)) in a.to_f64_vec().into_iter().zip(b.to_f64_vec()).enumerate() {
        close(x, y, rtol, &format!("{what}[{i}]"));
    }
}

/// The inner product of two arrays, in f64.
pub fn dot(a: &Array, b: &Array) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

/// `x + h·t` elementwise (float arrays; others unchanged).
pub fn axpy(x: &Array, h: f64, t: &Array) -> Array {
    if !x.dtype().is_float() {
        return x.clone();
    }
    let v: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .zip(t.to_f64_vec())
        .map(|(a, b)| a + h * b)
        .collect();
    Array::from_f64(x.shape().clone(), v)
        .unwrap()
        .cast(x.dtype())
}
