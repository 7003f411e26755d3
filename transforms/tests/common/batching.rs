//! Helpers shared by the vmap tests: a deterministic generator of random arrays of any dtype,
//! and slicing and stacking along an axis for loop-and-stack references.

use ferrax_ir::{Array, DType, Data, Type};

/// A tiny deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random array of `ty`: floats in `lo..hi`, i32 in `-2..7`, bools fair.
    pub fn array(&mut self, ty: &Type, lo: f64, hi: f64) -> Array {
        let n = ty.size();
        let data = match ty.dtype {
            DType::F64 => Data::F64((0..n).map(|_| lo + (hi - lo) * self.uniform()).collect()),
            DType::F32 => Data::F32(
                (0..n)
                    .map(|_| (lo + (hi - lo) * self.uniform()) as f32)
                    .collect(),
            ),
            DType::I32 => Data::I32((0..n).map(|_| (self.next() % 9) as i32 - 2).collect()),
            DType::Bool => Data::Bool((0..n).map(|_| self.next().is_multiple_of(2)).collect()),
        };
        Array::new(ty.shape.clone(), data).unwrap()
    }
}

/// Member `i` of `a` along `axis` (the axis removed).
pub fn take(a: &Array, axis: usize, i: usize) -> Array {
    let dims = a.dims();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let n = dims[axis];
    let idx = (0..outer).flat_map(|o| (0..inner).map(move |k| (o * n + i) * inner + k));
    let mut out: Vec<usize> = dims.to_vec();
    out.remove(axis);
    Array::new(out, a.data().take(idx)).unwrap()
}

/// Stacks equally shaped arrays along a new `axis`.
pub fn stack(parts: &[Array], axis: usize) -> Array {
    let dims = parts[0].dims();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis..].iter().product();
    let n = parts.len();
    let mut out: Vec<usize> = dims.to_vec();
    out.insert(axis, n);
    // Concatenate the members' data, then pick (o, member, k) in order.
    let all = match parts[0].data() {
        Data::F64(_) => Data::F64(
            parts
                .iter()
                .flat_map(|p| p.as_f64().unwrap().to_vec())
                .collect(),
        ),
        Data::F32(_) => Data::F32(
            parts
                .iter()
                .flat_map(|p| p.as_f32().unwrap().to_vec())
                .collect(),
        ),
        Data::I32(_) => Data::I32(
            parts
                .iter()
                .flat_map(|p| p.as_i32().unwrap().to_vec())
                .collect(),
        ),
        Data::Bool(_) => Data::Bool(
            parts
                .iter()
                .flat_map(|p| p.as_bool().unwrap().to_vec())
                .collect(),
        ),
    };
    let size = outer * inner;
    let idx = (0..outer).flat_map(move |o| {
        (0..n).flat_map(move |m| (0..inner).map(move |k| m * size + o * inner + k))
    });
    Array::new(out, all.take(idx)).unwrap()
}

/// Whether two arrays agree: same type, equal elements (NaNs match, floats to 1e-12).
pub fn close(a: &Array, b: &Array) -> bool {
    if a.ty() != b.ty() {
        return false;
    }
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    x.iter().zip(&y).all(|(&p, &q)| {
        p == q || (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-12 * p.abs().max(q.abs())
    })
}
