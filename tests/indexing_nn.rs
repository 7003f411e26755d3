//! Indexing along axes and the nn functions, end to end through the facade: `take` and
//! `take_along_axis` against naive loops for random shapes and axes (f32 and f64, with
//! negative and huge indices), `.at` updates against naive loops, derivatives against finite
//! differences and forward against reverse mode, vmap against a loop, the JIT against the
//! interpreter, keepdims reductions against the plain ones reshaped, every activation against
//! its closed form and derivative (at 0 and ±1e3), and the classifier idiom's gradient.

use ferrax::ir::ops::Combine;
use ferrax::prelude::*;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn floats(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// Indices for an axis of length `n`: mostly in range, some negative (NumPy style), some
    /// out of range, some extreme.
    fn indices(&mut self, count: usize, n: usize) -> Vec<i32> {
        (0..count)
            .map(|_| match self.below(10) {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => -(n as i32) - 1 - self.below(3) as i32,
                3 => n as i32 + self.below(3) as i32,
                4 | 5 if n > 0 => -1 - self.below(n) as i32,
                _ => self.below(n.max(1)) as i32,
            })
            .collect()
    }
    fn dims(&mut self, rank: usize, lo: usize) -> Vec<usize> {
        (0..rank).map(|_| lo + self.below(4)).collect()
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn coords(mut k: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        c[d] = k % dims[d];
        k /= dims[d];
    }
    c
}

fn flat(c: &[usize], dims: &[usize]) -> usize {
    c.iter().zip(strides(dims)).map(|(a, s)| a * s).sum()
}

/// NumPy's resolution of an index into an axis of `n`, `None` when out of range.
fn resolve(i: i32, n: usize) -> Option<usize> {
    let i = i as i64;
    let i = if i < 0 { i + n as i64 } else { i };
    (0..n as i64).contains(&i).then_some(i as usize)
}

/// For every position of the gather's result, the operand offset it reads (None: fill).
fn naive_positions(
    xd: &[usize],
    idx: &[i32],
    id: &[usize],
    axis: usize,
    along: bool,
) -> Vec<Option<usize>> {
    let out: Vec<usize> = if along {
        id.to_vec()
    } else {
        [&xd[..axis], id, &xd[axis + 1..]].concat()
    };
    let total: usize = out.iter().product();
    (0..total)
        .map(|k| {
            let c = coords(k, &out);
            let (i, mut src) = if along {
                (idx[flat(&c, id)], c.clone())
            } else {
                let ic = &c[axis..axis + id.len()];
                let mut src = c[..axis].to_vec();
                src.push(0);
                src.extend_from_slice(&c[axis + id.len()..]);
                (idx[flat(ic, id)], src)
            };
            resolve(i, xd[axis]).map(|p| {
                src[axis] = p;
                flat(&src, xd)
            })
        })
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn arr(dtype: DType, dims: &[usize], v: Vec<f64>) -> Array {
    Array::from_f64(Shape::new(dims), v).unwrap().cast(dtype)
}

fn iarr(dims: &[usize], v: Vec<i32>) -> Array {
    Array::from_i32(Shape::new(dims), v).unwrap()
}

/// A random case: operand dims, axis, index dims (for `along`: the operand's but the axis).
fn random_case(rng: &mut Rng, along: bool) -> (Vec<usize>, usize, Vec<usize>) {
    let rank = 1 + rng.below(3);
    let xd = rng.dims(rank, 0);
    let axis = rng.below(rank);
    let id = if along {
        let mut d = xd.clone();
        d[axis] = rng.below(5);
        d
    } else {
        let r = rng.below(3);
        rng.dims(r, 0)
    };
    (xd, axis, id)
}

#[test]
fn take_and_take_along_axis_match_naive_loops_interpreted_and_compiled() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for trial in 0..120 {
        let along = trial % 2 == 0;
        let dtype = if trial % 4 < 2 {
            DType::F64
        } else {
            DType::F32
        };
        let (xd, axis, id) = random_case(&mut rng, along);
        let n: usize = xd.iter().product();
        let xv = rng.floats(n, -3.0, 3.0);
        let x = arr(dtype, &xd, xv.clone());
        let iv = rng.indices(id.iter().product(), xd[axis]);
        let idx = iarr(&id, iv.clone());
        let want: Vec<f64> = naive_positions(&xd, &iv, &id, axis, along)
            .into_iter()
            .map(|p| p.map_or(f64::NAN, |o| arr(dtype, &[1], vec![xv[o]]).to_f64_vec()[0]))
            .collect();
        let f = function(move |x: Tensor, i: Tensor| {
            if along {
                x.take_along_axis(&i, axis)
            } else {
                x.take(&i, axis)
            }
        });
        let what = format!("trial {trial}: {dtype} {xd:?} axis {axis} along={along} idx {iv:?}");
        let got = f.call_arrays(&[x.clone(), idx.clone()]).unwrap();
        let got_v = got[0].to_f64_vec();
        assert_eq!(got_v.len(), want.len(), "{what}");
        assert!(
            got_v.iter().zip(&want).all(|(a, b)| same(*a, *b)),
            "{what}\n got {got_v:?}\nwant {want:?}"
        );
        assert_eq!(got[0].dtype(), dtype, "{what}");
        let compiled = jit(&f).unwrap().call_arrays(&[x, idx]).unwrap();
        let cv = compiled[0].to_f64_vec();
        assert!(
            cv.iter().zip(&got_v).all(|(a, b)| same(*a, *b)),
            "{what}: jit\n got {cv:?}\nwant {got_v:?}"
        );
    }
}

#[test]
fn i32_and_bool_take_fill_with_jax_values() {
    let x = Tensor::constant(iarr(&[3], vec![4, 5, 6]));
    let i = Tensor::constant(iarr(&[4], vec![-1, 3, 0, i32::MIN]));
    let got = x.take(&i, 0).to_array().unwrap();
    assert_eq!(got, iarr(&[4], vec![6, i32::MIN, 4, i32::MIN]));
    let b = x.gt(4i32);
    let got = b.take(&i, 0).to_array().unwrap();
    assert_eq!(got.to_f64_vec(), vec![1.0, 1.0, 0.0, 1.0]);
}

/// The naive `.at` update: updates applied in row-major order, out-of-range ones dropped.
fn naive_scatter(xv: &[f64], pos: &[Option<usize>], u: &[f64], combine: Combine) -> Vec<f64> {
    let mut out = xv.to_vec();
    for (k, p) in pos.iter().enumerate() {
        if let Some(o) = *p {
            out[o] = match combine {
                Combine::Set => u[k],
                Combine::Add => out[o] + u[k],
                Combine::Mul => out[o] * u[k],
                Combine::Min => out[o].min(u[k]),
                Combine::Max => out[o].max(u[k]),
            };
        }
    }
    out
}

#[test]
fn at_updates_match_naive_loops_interpreted_and_compiled() {
    let mut rng = Rng(77);
    for trial in 0..100 {
        let along = trial % 2 == 1;
        let combine = Combine::ALL[trial % 5];
        let (xd, axis, id) = random_case(&mut rng, along);
        let xv = rng.floats(xd.iter().product(), -3.0, 3.0);
        let iv = rng.indices(id.iter().product(), xd[axis]);
        let pos = naive_positions(&xd, &iv, &id, axis, along);
        // Small integers make every sum and product exact, whatever the order.
        let uv: Vec<f64> = (0..pos.len()).map(|_| rng.below(7) as f64 - 3.0).collect();
        let xv: Vec<f64> = xv.iter().map(|v| v.round()).collect();
        let want = naive_scatter(&xv, &pos, &uv, combine);
        let udims: Vec<usize> = if along {
            id.clone()
        } else {
            [&xd[..axis], &id[..], &xd[axis + 1..]].concat()
        };
        let f = function(move |x: Tensor, i: Tensor, u: Tensor| {
            let at = if along {
                x.at(&i).along_axis(axis)
            } else {
                x.at(&i).axis(axis)
            };
            match combine {
                Combine::Set => at.set(&u),
                Combine::Add => at.add(&u),
                Combine::Mul => at.mul(&u),
                Combine::Min => at.min(&u),
                Combine::Max => at.max(&u),
            }
        });
        let args = [
            arr(DType::F32, &xd, xv.clone()),
            iarr(&id, iv.clone()),
            arr(DType::F32, &udims, uv.clone()),
        ];
        let what =
            format!("trial {trial}: {combine:?} {xd:?} axis {axis} along={along} idx {iv:?}");
        let got = f.call_arrays(&args).unwrap()[0].to_f64_vec();
        assert_eq!(got, want, "{what}");
        let compiled = jit(&f).unwrap().call_arrays(&args).unwrap()[0].to_f64_vec();
        assert_eq!(compiled, want, "{what}: jit");
    }
}

#[test]
fn at_set_broadcasts_a_scalar_and_counts_negative_indices_from_the_end() {
    let x = Tensor::constant(Array::from(vec![1.0, 2.0, 3.0, 4.0]));
    let i = Tensor::constant(iarr(&[2], vec![-1, 7]));
    let got = x.at(&i).set(0.0).to_array().unwrap();
    assert_eq!(got.to_f64_vec(), vec![1.0, 2.0, 3.0, 0.0]);
    let got = x.at(&i).get().to_array().unwrap().to_f64_vec();
    assert_eq!(got[0], 4.0);
    assert!(got[1].is_nan());
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Checks grad of `sum(f(x) * w)` against central differences in random directions, and the
/// JVP against the VJP (the dot-product test), in f64.
fn check_derivatives(
    name: &str,
    f: impl Fn(&Tensor) -> Tensor + Clone + Send + Sync + 'static,
    xd: &[usize],
    rng: &mut Rng,
) {
    let x = arr(DType::F64, xd, rng.floats(xd.iter().product(), -2.0, 2.0));
    let fx = {
        let f = f.clone();
        function(move |x: Tensor| f(&x))
    };
    let y = fx.call_arrays(std::slice::from_ref(&x)).unwrap().remove(0);
    let w = arr(DType::F64, y.dims(), rng.floats(y.size(), -1.0, 1.0));
    let wt = Tensor::constant(w.clone());
    let loss = {
        let f = f.clone();
        function(move |x: Tensor| f(&x).mul(&wt).sum_all())
    };
    let g = grad(&loss)
        .call_arrays(std::slice::from_ref(&x))
        .unwrap()
        .remove(0);
    let gv = g.to_f64_vec();
    for _ in 0..3 {
        let t = rng.floats(x.size(), -1.0, 1.0);
        let h = 1e-6;
        let shifted = |s: f64| {
            let v: Vec<f64> = x
                .to_f64_vec()
                .iter()
                .zip(&t)
                .map(|(a, d)| a + s * d)
                .collect();
            let a = arr(DType::F64, xd, v);
            loss.call_arrays(&[a]).unwrap()[0].to_scalar().unwrap()
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
        let gd: f64 = gv.iter().zip(&t).map(|(a, b)| a * b).sum();
        assert!(close(gd, fd, 1e-6), "{name}: grad·t {gd} vs fd {fd}");
        // Forward mode: <w, J t> must equal <J^T w, t> = grad·t.
        let tangent = arr(DType::F64, xd, t.clone());
        let out = jvp(&fx).call_arrays(&[x.clone(), tangent]).unwrap();
        let jt: f64 = out[1]
            .to_f64_vec()
            .iter()
            .zip(w.to_f64_vec())
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            close(jt, gd, 1e-9),
            "{name}: <w, J t> {jt} vs <J^T w, t> {gd}"
        );
    }
    // The compiled gradient equals the interpreted one.
    let gj = jit(grad(&loss))
        .unwrap()
        .call_arrays(&[x])
        .unwrap()
        .remove(0);
    assert!(
        gj.to_f64_vec()
            .iter()
            .zip(&gv)
            .all(|(a, b)| close(*a, *b, 1e-12)),
        "{name}: jit grad"
    );
}

#[test]
fn derivatives_of_take_at_and_scatters() {
    let mut rng = Rng(5);
    let i2 = Tensor::constant(iarr(&[3, 2], vec![0, 3, -1, 1, -4, 1]));
    let i1 = Tensor::constant(iarr(&[5], vec![2, -1, 0, 2, 3]));
    let u_take = Tensor::constant(arr(DType::F64, &[3, 5, 2], rng.floats(30, 0.5, 1.5)));
    type Unary = Box<dyn Fn(&Tensor) -> Tensor + Send + Sync>;
    let cases: Vec<(&str, Unary)> = vec![
        ("take_along_axis", {
            let i = i2.clone();
            Box::new(move |x: &Tensor| x.take_along_axis(&i, 1))
        }),
        ("take axis 1", {
            let i = i1.clone();
            Box::new(move |x: &Tensor| x.take(&i, 1))
        }),
    ];
    for (name, f) in cases {
        let f = std::sync::Arc::new(f);
        let xd: &[usize] = if name == "take_along_axis" {
            &[3, 4]
        } else {
            &[3, 4, 2]
        };
        check_derivatives(name, move |x| f(x), xd, &mut rng);
    }
    // Scatters through `.at`, differentiated in the operand and the updates together: the
    // updates are a function of x so both paths carry tangents.
    for combine in Combine::ALL {
        let i = i1.clone();
        let u0 = u_take.clone();
        let f = move |x: &Tensor| {
            let u = u0.mul(x.sum(&[1]).expand_dims(1).sin().add(1.5));
            let at = x.at(&i).axis(1);
            match combine {
                Combine::Set => at.set(&u),
                Combine::Add => at.add(&u),
                Combine::Mul => at.mul(&u),
                Combine::Min => at.min(&u),
                Combine::Max => at.max(&u),
            }
        };
        check_derivatives(&format!("at.{combine:?}"), f, &[3, 4, 2], &mut rng);
    }
}

#[test]
fn vmap_of_take_along_axis_matches_a_loop() {
    let mut rng = Rng(11);
    let xs = arr(DType::F64, &[4, 3, 5], rng.floats(60, -1.0, 1.0));
    let is = iarr(&[4, 3, 2], rng.indices(24, 5));
    let f = function(|x: Tensor, i: Tensor| x.take_along_axis(&i, 1).mul(2.0));
    let batched = vmap(&f)
        .call_arrays(&[xs.clone(), is.clone()])
        .unwrap()
        .remove(0);
    for m in 0..4 {
        let x = Tensor::constant(xs.clone())
            .slice_axis(0, m, m + 1)
            .reshape(&[3, 5]);
        let i = Tensor::constant(is.clone())
            .slice_axis(0, m, m + 1)
            .reshape(&[3, 2]);
        let want = f
            .call_arrays(&[x.to_array().unwrap(), i.to_array().unwrap()])
            .unwrap();
        let got = Tensor::constant(batched.clone())
            .slice_axis(0, m, m + 1)
            .reshape(&[3, 2])
            .to_array()
            .unwrap();
        let (a, b) = (got.to_f64_vec(), want[0].to_f64_vec());
        assert!(
            a.iter().zip(&b).all(|(p, q)| same(*p, *q)),
            "member {m}: {a:?} vs {b:?}"
        );
    }
}

#[test]
fn keepdims_reductions_equal_the_plain_ones_reshaped() {
    let mut rng = Rng(3);
    let x = Tensor::constant(arr(DType::F64, &[2, 3, 4], rng.floats(24, -2.0, 2.0)));
    let check = |kept: Tensor, plain: Tensor, shape: &[usize]| {
        assert_eq!(kept.shape(), shape);
        let a = kept.to_array().unwrap().to_f64_vec();
        let b = plain.reshape(shape).to_array().unwrap().to_f64_vec();
        assert_eq!(a, b);
    };
    for (axes, shape) in [
        (vec![1], vec![2, 1, 4]),
        (vec![0, 2], vec![1, 3, 1]),
        (vec![], vec![2, 3, 4]),
        (vec![0, 1, 2], vec![1, 1, 1]),
    ] {
        check(x.sum_keepdims(&axes), x.sum(&axes), &shape);
        check(x.mean_keepdims(&axes), x.mean(&axes), &shape);
        check(x.max_keepdims(&axes), x.max(&axes), &shape);
        check(x.min_keepdims(&axes), x.min(&axes), &shape);
        check(x.prod_keepdims(&axes), x.prod(&axes), &shape);
        check(x.logsumexp_keepdims(&axes), x.logsumexp(&axes), &shape);
    }
    for axis in 0..3 {
        let mut shape = vec![2, 3, 4];
        shape[axis] = 1;
        check(x.argmax_keepdims(axis), x.argmax(axis), &shape);
        check(x.argmin_keepdims(axis), x.argmin(axis), &shape);
    }
    // Normalising logits by broadcasting against the kept axis.
    let z = x.reshape(&[6, 4]);
    let ls = z.sub(z.logsumexp_keepdims(&[1]));
    let ref_ls = z.log_softmax(1).to_array().unwrap().to_f64_vec();
    for (a, b) in ls.to_array().unwrap().to_f64_vec().iter().zip(ref_ls) {
        assert!(close(*a, b, 1e-14));
    }
    // A bad axis is an error naming the reduction and the caller's line.
    let e = function(|x: Tensor| x.sum_keepdims(&[3])).call_arrays(&[Array::from(vec![1.0])]);
    let e = e.unwrap_err();
    assert!(
        e.to_string().contains("reduce_sum") || e.to_string().contains("sum"),
        "{e}"
    );
    assert!(e.to_string().contains("indexing_nn.rs"), "{e}");
}

/// Value and derivative of a scalar function at `x`, through grad.
fn value_and_slope(f: fn(&Tensor) -> Tensor, x: f64) -> (f64, f64) {
    let vg = value_and_grad(move |x: Tensor| f(&x));
    vg.call(x).unwrap()
}

#[test]
fn activations_match_closed_forms_with_finite_derivatives() {
    use std::f64::consts::{FRAC_1_SQRT_2, PI};
    fn erf(x: f64) -> f64 {
        Tensor::scalar(x).erf().to_f64().unwrap()
    }
    let phi = |x: f64| 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    type Case = (
        &'static str,
        fn(&Tensor) -> Tensor,
        Box<dyn Fn(f64) -> (f64, f64)>,
    );
    let c = (2.0 / PI).sqrt();
    let cases: Vec<Case> = vec![
        (
            "relu",
            |x| x.relu(),
            Box::new(|x: f64| (x.max(0.0), if x > 0.0 { 1.0 } else { 0.0 })),
        ),
        (
            "gelu",
            |x| x.gelu(false),
            Box::new(move |x: f64| (x * phi(x), phi(x) + x * pdf(x))),
        ),
        (
            "gelu_tanh",
            |x| x.gelu(true),
            Box::new(move |x: f64| {
                let u = c * (x + 0.044715 * x * x * x);
                let th = u.tanh();
                let du = c * (1.0 + 3.0 * 0.044715 * x * x);
                (
                    0.5 * x * (1.0 + th),
                    0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du,
                )
            }),
        ),
        (
            "silu",
            |x| x.silu(),
            Box::new(move |x: f64| (x * sig(x), sig(x) * (1.0 + x * (1.0 - sig(x))))),
        ),
        (
            "softplus",
            |x| x.softplus(),
            Box::new(move |x: f64| (x.max(0.0) + (-x.abs()).exp().ln_1p(), sig(x))),
        ),
        (
            "leaky_relu",
            |x| x.leaky_relu(0.1),
            Box::new(|x: f64| {
                (
                    if x >= 0.0 { x } else { 0.1 * x },
                    if x >= 0.0 { 1.0 } else { 0.1 },
                )
            }),
        ),
        (
            "elu",
            |x| x.elu(0.7),
            Box::new(|x: f64| {
                if x > 0.0 {
                    (x, 1.0)
                } else {
                    (0.7 * x.exp_m1(), 0.7 * x.exp())
                }
            }),
        ),
    ];
    for (name, f, want) in &cases {
        for x in [
            -1e3, -30.0, -2.5, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 30.0, 1e3,
        ] {
            let (v, d) = value_and_slope(*f, x);
            let (wv, wd) = want(x);
            assert!(
                v.is_finite() && d.is_finite(),
                "{name}({x}) = {v}, slope {d}"
            );
            assert!(close(v, wv, 1e-12), "{name}({x}) = {v}, want {wv}");
            assert!(close(d, wd, 1e-9), "{name}'({x}) = {d}, want {wd}");
        }
    }
    // Second derivatives stay finite at the extremes too.
    for (name, f, _) in &cases {
        for x in [-1e3, 1e3] {
            let f = *f;
            let d2: f64 = grad(grad(move |x: Tensor| f(&x))).call(x).unwrap();
            assert!(d2.is_finite(), "{name}''({x}) = {d2}");
        }
    }
    // softplus' is exactly 1/2 at 0.
    assert_eq!(value_and_slope(|x| x.softplus(), 0.0).1, 0.5);
}

#[test]
fn log_softmax_var_std_norm_clip_where() {
    // log_softmax is exact for huge logits, and all −∞ rows give NaN-free gradients elsewhere.
    let z = Tensor::constant(Array::from(vec![1e4, 0.0, -1e4])).reshape(&[1, 3]);
    let ls = z.log_softmax(1).to_array().unwrap().to_f64_vec();
    assert_eq!(ls, vec![0.0, -1e4, -2e4]);
    let g: Array = grad(|z: Tensor| z.log_softmax(0).sum(&[0]))
        .call(Array::from(vec![1e3, -1e3, 0.0]))
        .unwrap();
    assert!(g.to_f64_vec().iter().all(|v| v.is_finite()));
    // var and std with ddof.
    let x = Tensor::constant(Array::from(vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(x.var(&[0], 0).to_f64().unwrap(), 1.25);
    assert!(close(x.var(&[0], 1).to_f64().unwrap(), 5.0 / 3.0, 1e-15));
    assert!(close(
        x.std(&[0], 1).to_f64().unwrap(),
        (5.0f64 / 3.0).sqrt(),
        1e-15
    ));
    // Norms, their gradients, and the zero subgradient at 0.
    let v = Tensor::constant(Array::from(vec![3.0, -4.0]));
    assert_eq!(v.norm(Norm::L2, &[0]).to_f64().unwrap(), 5.0);
    assert_eq!(v.norm(Norm::L1, &[0]).to_f64().unwrap(), 7.0);
    assert_eq!(v.norm(Norm::Inf, &[0]).to_f64().unwrap(), 4.0);
    let big = Tensor::constant(Array::from(vec![3e300, 4e300]));
    assert!(close(
        big.norm(Norm::L2, &[0]).to_f64().unwrap(),
        5e300,
        1e-15
    ));
    let tiny = Tensor::constant(Array::from(vec![3e-300, 4e-300]));
    assert!(close(
        tiny.norm(Norm::L2, &[0]).to_f64().unwrap(),
        5e-300,
        1e-15
    ));
    for ord in [Norm::L2, Norm::L1, Norm::Inf] {
        let g: Array = grad(move |x: Tensor| x.norm(ord, &[0]))
            .call(Array::from(vec![0.0, 0.0]))
            .unwrap();
        assert_eq!(g.to_f64_vec(), vec![0.0, 0.0], "{ord:?}");
    }
    let g: Array = grad(|x: Tensor| x.norm(Norm::L2, &[0]))
        .call(Array::from(vec![3.0, -4.0]))
        .unwrap();
    assert!(close(g.to_f64_vec()[0], 0.6, 1e-15) && close(g.to_f64_vec()[1], -0.8, 1e-15));
    let mut rng = Rng(21);
    check_derivatives(
        "norm L2 rows",
        |x| x.norm(Norm::L2, &[1]),
        &[3, 4],
        &mut rng,
    );
    check_derivatives("var ddof 1", |x| x.var(&[0], 1), &[5, 2], &mut rng);
    check_derivatives("log_softmax", |x| x.log_softmax(1), &[3, 4], &mut rng);
    // clip and where_.
    let c = x.clip(1.5, 3.0).to_array().unwrap().to_f64_vec();
    assert_eq!(c, vec![1.5, 2.0, 3.0, 3.0]);
    let w = where_(&x.gt(2.0), &x, 0.0).to_array().unwrap().to_f64_vec();
    assert_eq!(w, vec![0.0, 0.0, 3.0, 4.0]);
}

#[test]
fn classifier_cross_entropy_gradient() {
    let (batch, classes) = (512, 10);
    let mut rng = Rng(1234);
    let z = arr(
        DType::F64,
        &[batch, classes],
        rng.floats(batch * classes, -3.0, 3.0),
    );
    let labels: Vec<i32> = (0..batch).map(|_| rng.below(classes) as i32).collect();
    let lt = Tensor::constant(iarr(&[batch], labels.clone()));
    let loss = function(move |z: Tensor| {
        let picked = z.log_softmax(1).take_along_axis(&lt.expand_dims(1), 1);
        picked.mean_all().neg()
    });
    let g = grad(&loss)
        .call_arrays(std::slice::from_ref(&z))
        .unwrap()
        .remove(0);
    // Closed form: (softmax(z) − onehot(label)) / batch.
    let zv = z.to_f64_vec();
    let gv = g.to_f64_vec();
    for r in 0..batch {
        let row = &zv[r * classes..(r + 1) * classes];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for k in 0..classes {
            let p = (row[k] - m).exp() / s;
            let want = (p - if labels[r] as usize == k { 1.0 } else { 0.0 }) / batch as f64;
            assert!(close(gv[r * classes + k], want, 1e-12), "row {r} class {k}");
        }
    }
    // Finite differences in random directions.
    for _ in 0..3 {
        let t = rng.floats(batch * classes, -1.0, 1.0);
        let h = 1e-5;
        let at = |s: f64| {
            let v: Vec<f64> = zv.iter().zip(&t).map(|(a, d)| a + s * d).collect();
            loss.call_arrays(&[arr(DType::F64, &[batch, classes], v)])
                .unwrap()[0]
                .to_scalar()
                .unwrap()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        let gd: f64 = gv.iter().zip(&t).map(|(a, b)| a * b).sum();
        assert!(close(gd, fd, 1e-7), "grad·t {gd} vs fd {fd}");
    }
    // The compiled gradient agrees.
    let gj = jit(grad(&loss))
        .unwrap()
        .call_arrays(&[z])
        .unwrap()
        .remove(0)
        .to_f64_vec();
    assert!(gj.iter().zip(&gv).all(|(a, b)| close(*a, *b, 1e-12)));
}

#[test]
fn misuse_gives_errors_naming_the_op() {
    let x = Array::from_f64(Shape::new(&[2, 3]), vec![0.0; 6]).unwrap();
    let cases: Vec<(Function, Vec<Array>, &str)> = vec![
        (
            function(|x: Tensor, i: Tensor| x.take_along_axis(&i, 1)),
            vec![x.clone(), iarr(&[3, 1], vec![0, 0, 0])],
            "gather",
        ),
        (
            function(|x: Tensor, i: Tensor| x.take(&i, 2)),
            vec![x.clone(), iarr(&[1], vec![0])],
            "axis 2 is out of range",
        ),
        (
            function(|x: Tensor, i: Tensor| x.gather_axis(&i, 0)),
            vec![x.clone(), Array::from(vec![0.0])],
            "indices must be i32",
        ),
        (
            function(|x: Tensor, i: Tensor| x.at(&i).axis(1).set(Tensor::zeros(&[5]))),
            vec![x.clone(), iarr(&[1], vec![0])],
            "updates must have type",
        ),
        (
            function(|x: Tensor, i: Tensor| x.gt(0.0).at(&i).add(x.gt(0.0).gather(&i))),
            vec![x.clone(), iarr(&[1], vec![0])],
            "numeric",
        ),
    ];
    for (f, args, needle) in cases {
        let e = f.call_arrays(&args).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(needle), "{msg}");
        assert!(
            msg.contains("indexing_nn.rs"),
            "names the caller's line: {msg}"
        );
    }
}
