//! Shared by the convolution tests of every crate (included with `#[path]`): a deterministic
//! RNG, random valid `conv_general_dilated` configurations (1 to 3 spatial axes, random
//! layouts, strides, dilations, negative and positive padding, feature, depthwise and batch
//! grouping), and an independent naive convolution that materialises the padded, dilated input
//! per axis as an index table, written without the interpreter's code.
#![allow(dead_code)]

use ferrax_ir::ops::{ConvDimensionNumbers, ConvGeneral};
use ferrax_ir::{Array, DType, Dims, Type};

/// A SplitMix64 generator.
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

    /// A uniform integer in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// A uniform number in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }

    /// An array of `ty` with uniform elements in [-1, 1).
    pub fn array(&mut self, ty: &Type) -> Array {
        let v: Vec<f64> = (0..ty.size()).map(|_| self.uniform(-1.0, 1.0)).collect();
        Array::from_f64(ty.shape.clone(), v).unwrap().cast(ty.dtype)
    }

    /// A random permutation of `0..n`.
    pub fn perm(&mut self, n: usize) -> Dims {
        let mut p: Dims = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// A random valid convolution with `ns` spatial axes on `dtype`, with its operand types.
/// `big` allows larger sizes (for the JIT's GEMM path).
pub fn random_conv(rng: &mut Rng, ns: usize, dtype: DType, big: bool) -> (ConvGeneral, Type, Type) {
    loop {
        let rank = ns + 2;
        let dn = if rng.int(0, 2) == 0 {
            ConvDimensionNumbers::canonical(rank)
        } else {
            ConvDimensionNumbers {
                lhs: rng.perm(rank),
                rhs: rng.perm(rank),
                out: rng.perm(rank),
            }
        };
        let scale = if big { 4 } else { 1 };
        let i = rng.int(1, 2 * scale) as usize;
        let m = rng.int(1, 2 * scale) as usize;
        let nb = rng.int(1, 2 + scale) as usize;
        let (g, bg, c, o, n) = match rng.int(0, 3) {
            0 => (1, 1, i, m, nb),
            1 => {
                let g = rng.int(2, 3) as usize;
                (g, 1, g * i, g * m, nb)
            }
            2 => {
                // Depthwise: one input feature per group.
                let g = rng.int(2, 4) as usize;
                (g, 1, g, g * m, nb)
            }
            _ => {
                let b = rng.int(2, 3) as usize;
                (1, b, i, b * m, b * nb)
            }
        };
        let kin = c / g;
        let mut op = ConvGeneral::new(ns);
        op.dimension_numbers = dn.clone();
        op.feature_group_count = g;
        op.batch_group_count = bg;
        let mut lhs = Dims::from_elem(0, rank);
        let mut rhs = Dims::from_elem(0, rank);
        lhs[dn.lhs[0]] = n;
        lhs[dn.lhs[1]] = c;
        rhs[dn.rhs[0]] = o;
        rhs[dn.rhs[1]] = kin;
        for j in 0..ns {
            lhs[dn.lhs[2 + j]] = rng.int(1, 5 + 3 * scale) as usize;
            rhs[dn.rhs[2 + j]] = rng.int(1, 3) as usize;
            op.window_strides[j] = rng.int(1, 3) as usize;
            op.lhs_dilation[j] = rng.int(1, 2) as usize;
            op.rhs_dilation[j] = rng.int(1, 2) as usize;
            op.padding[j] = (rng.int(-1, 2), rng.int(-1, 2));
        }
        let (a, b) = (Type::new(dtype, &lhs), Type::new(dtype, &rhs));
        if op.infer(&a, &b).is_ok() {
            return (op, a, b);
        }
    }
}

/// For one spatial axis, the input index behind each position of the padded, dilated input
/// (`None` for a zero of padding or dilation), built the way XLA's `pad` defines it: dilate,
/// add the positive padding, then remove the negative padding.
fn axis_table(l: usize, ld: usize, lo: i64, hi: i64) -> Vec<Option<usize>> {
    let mut t: Vec<Option<usize>> = Vec::new();
    for x in 0..l {
        if x > 0 {
            t.extend(std::iter::repeat_n(None, ld - 1));
        }
        t.push(Some(x));
    }
    let mut v: Vec<Option<usize>> = std::iter::repeat_n(None, lo.max(0) as usize).collect();
    v.extend(t);
    v.extend(std::iter::repeat_n(None, hi.max(0) as usize));
    let front = (-lo).max(0) as usize;
    let back = (-hi).max(0) as usize;
    v[front..v.len() - back].to_vec()
}

/// Row-major offset of index `idx` in `dims`.
fn offset(dims: &[usize], idx: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Every row-major multi-index below `dims`.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &d in dims {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..d).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

/// The convolution computed naively in f64: per group, per output element, a sum over the
/// padded input built from [`axis_table`].
pub fn naive(op: &ConvGeneral, a: &Array, b: &Array) -> Array {
    let dn = &op.dimension_numbers;
    let ns = op.window_strides.len();
    let (ad, bd) = (a.dims().to_vec(), b.dims().to_vec());
    let (x, w) = (a.to_f64_vec(), b.to_f64_vec());
    let (n, c) = (ad[dn.lhs[0]], ad[dn.lhs[1]]);
    let (o, kin) = (bd[dn.rhs[0]], bd[dn.rhs[1]]);
    let tables: Vec<Vec<Option<usize>>> = (0..ns)
        .map(|j| {
            axis_table(
                ad[dn.lhs[2 + j]],
                op.lhs_dilation[j],
                op.padding[j].0,
                op.padding[j].1,
            )
        })
        .collect();
    let ks: Vec<usize> = (0..ns).map(|j| bd[dn.rhs[2 + j]]).collect();
    let ys: Vec<usize> = (0..ns)
        .map(|j| {
            let kd = (ks[j] - 1) * op.rhs_dilation[j] + 1;
            (tables[j].len() - kd) / op.window_strides[j] + 1
        })
        .collect();
    let groups = op.feature_group_count.max(op.batch_group_count);
    let (o_per, nout) = (o / groups, n / op.batch_group_count);
    let mut od = vec![0; ns + 2];
    od[dn.out[0]] = nout;
    od[dn.out[1]] = o;
    for j in 0..ns {
        od[dn.out[2 + j]] = ys[j];
    }
    let mut out = vec![0.0; od.iter().product()];
    let _ = c;
    for t in 0..groups {
        for ol in 0..o_per {
            let oo = t * o_per + ol;
            for nn in 0..nout {
                let n_in = if op.batch_group_count > 1 {
                    t * nout + nn
                } else {
                    nn
                };
                for y in indices(&ys) {
                    let mut acc = 0.0;
                    for i in 0..kin {
                        let cc = if op.feature_group_count > 1 {
                            t * kin + i
                        } else {
                            i
                        };
                        for wi in indices(&ks) {
                            let mut li = vec![0; ns + 2];
                            li[dn.lhs[0]] = n_in;
                            li[dn.lhs[1]] = cc;
                            let mut hole = false;
                            for j in 0..ns {
                                match tables[j]
                                    [y[j] * op.window_strides[j] + wi[j] * op.rhs_dilation[j]]
                                {
                                    Some(p) => li[dn.lhs[2 + j]] = p,
                                    None => hole = true,
                                }
                            }
                            let mut ri = vec![0; ns + 2];
                            ri[dn.rhs[0]] = oo;
                            ri[dn.rhs[1]] = i;
                            for j in 0..ns {
                                ri[dn.rhs[2 + j]] = wi[j];
                            }
                            let xv = if hole { 0.0 } else { x[offset(&ad, &li)] };
                            acc += xv * w[offset(&bd, &ri)];
                        }
                    }
                    let mut oi = vec![0; ns + 2];
                    oi[dn.out[0]] = nn;
                    oi[dn.out[1]] = oo;
                    for j in 0..ns {
                        oi[dn.out[2 + j]] = y[j];
                    }
                    out[offset(&od, &oi)] = acc;
                }
            }
        }
    }
    Array::from_f64(od, out).unwrap()
}

/// The largest absolute difference between two arrays (as f64), and the largest magnitude of
/// the second.
pub fn max_diff(a: &Array, b: &Array) -> (f64, f64) {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let d = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    let m = y.iter().map(|q| q.abs()).fold(0.0, f64::max);
    (d, m)
}
