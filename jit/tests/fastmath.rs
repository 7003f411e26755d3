//! The fast transcendentals (`MathMode::Fast`) against the f64 std reference: every function
//! is swept over its usual range (uniform and log-spaced points, through the vectorised
//! tensor path and the scalar entry) and must stay within its documented ulp bound (the table
//! in `jit/src/lower/fastmath.rs`); special values must match std exactly. The whole-domain
//! tests below then check the IEEE class of the precise result (the interpreter's) everywhere
//! and the bound on every finite input: special values and thresholds, the nearest values to
//! multiples of π/2, the f32 range by every 1024th bit pattern, random f64 bit patterns, every
//! pair of special values for `pow`, and random compositions against the interpreter.

mod common;

use common::Rng;
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{Array, Builder, DType, Graph, Op, Type};
use ferrax_jit::{compile, JitOptions, MathMode};

/// One function under test: its op, f64 reference, sweep domain and ulp bound.
struct Case {
    op: UnaryOp,
    reference: fn(f64) -> f64,
    /// Uniform sweep ranges for (f64, f32).
    range: [(f64, f64); 2],
    /// Whether to add log-spaced positive (and negated) points within the range.
    log_spaced: bool,
    /// The documented bound in ulps.
    ulps: f64,
    /// The dtypes swept against `reference` (f64 `erf` has a table of its own instead).
    dtypes: &'static [DType],
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            op: UnaryOp::Exp,
            reference: f64::exp,
            range: [(-708.0, 709.0), (-87.0, 88.0)],
            log_spaced: true,
            ulps: 2.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Expm1,
            reference: f64::exp_m1,
            range: [(-40.0, 709.0), (-20.0, 88.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Log,
            reference: f64::ln,
            range: [(0.0, 1e300), (0.0, 1e38)],
            log_spaced: true,
            ulps: 2.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Log1p,
            reference: f64::ln_1p,
            range: [(-0.9999, 1e300), (-0.9999, 1e38)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Sin,
            reference: f64::sin,
            range: [(-65536.0, 65536.0), (-1024.0, 1024.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Cos,
            reference: f64::cos,
            range: [(-65536.0, 65536.0), (-1024.0, 1024.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        // glibc's f64 `tanh` errs by up to about 1.7 ulps near |x| ≈ 0.2, where the fast one
        // can be 4 ulps from it; these points miss such inputs, and the f64 bound against the
        // exact value is `fast_f64_tanh_matches_its_table`'s.
        Case {
            op: UnaryOp::Tanh,
            reference: f64::tanh,
            range: [(-30.0, 30.0), (-15.0, 15.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        Case {
            op: UnaryOp::Logistic,
            reference: logistic,
            range: [(-700.0, 700.0), (-87.0, 87.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F64, DType::F32],
        },
        // The interpreter's f64 erf is within 1e-15 of erf: far inside an f32 ulp, but not
        // an f64 one, so f64 is checked against a table (`fast_f64_erf_matches_its_table`).
        Case {
            op: UnaryOp::Erf,
            reference: ferrax_ir::ops::unary::erf,
            range: [(-7.0, 7.0), (-7.0, 7.0)],
            log_spaced: true,
            ulps: 3.0,
            dtypes: &[DType::F32],
        },
    ]
}

/// A graph applying `op` to one parameter of type `ty`.
fn graph(op: UnaryOp, ty: Type) -> Graph {
    let mut b = Builder::new();
    let x = b.param(ty);
    let r = b.push1(Op::Unary(op), &[x]).expect("a well-typed op");
    b.finish(&[r])
}

fn fast() -> JitOptions {
    JitOptions {
        math: MathMode::Fast,
        ..JitOptions::default()
    }
}

/// The sweep points of a case for one dtype, kept inside the range (and the dtype).
fn points(c: &Case, dtype: DType) -> Vec<f64> {
    let (lo, hi) = c.range[usize::from(dtype == DType::F32)];
    let mut rng = Rng(11);
    let mut xs: Vec<f64> = (0..20_000).map(|_| lo + (hi - lo) * rng.next()).collect();
    // Dense near zero and around the reduction boundaries.
    xs.extend((0..4000).map(|_| -4.0 + 8.0 * rng.next()));
    if c.log_spaced {
        let min = if dtype == DType::F32 { -37.0 } else { -300.0 };
        for i in 0..4000 {
            let e = min + (hi.abs().max(1.0).log10() - min) * i as f64 / 4000.0;
            xs.push(10f64.powf(e));
            xs.push(-(10f64.powf(e)));
        }
    }
    xs.retain(|&x| x >= lo && x <= hi && x.is_finite());
    if dtype == DType::F32 {
        xs = xs
            .into_iter()
            .map(|x| x as f32 as f64)
            .filter(|&x| x >= lo && x <= hi)
            .collect();
    }
    xs
}

/// The error of `got` against the f64 reference value `want`, in ulps of `dtype`.
fn ulps(got: f64, want: f64, dtype: DType) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !want.is_finite() || !got.is_finite() {
        return f64::INFINITY;
    }
    let (mant, min_exp) = if dtype == DType::F32 {
        (23, -126)
    } else {
        (52, -1022)
    };
    let e = if want == 0.0 {
        min_exp
    } else {
        (want.abs().log2().floor() as i32).max(min_exp)
    };
    let ulp = 2f64.powi(e) * 2f64.powi(-mant);
    (got - want).abs() / ulp
}

/// The reference result of `c` at `x` for `dtype`, when it lies in the range the bound
/// covers (finite and normal).
fn reference(c: &Case, x: f64, dtype: DType) -> Option<f64> {
    let want = (c.reference)(x);
    let min = if dtype == DType::F32 {
        f32::MIN_POSITIVE as f64
    } else {
        f64::MIN_POSITIVE
    };
    let max = if dtype == DType::F32 {
        f32::MAX as f64
    } else {
        f64::MAX
    };
    (want.is_finite() && (want == 0.0 || want.abs() >= min) && want.abs() <= max).then_some(want)
}

#[test]
fn fast_transcendentals_stay_within_their_ulp_bounds() {
    for c in cases() {
        for &dtype in c.dtypes {
            let xs = points(&c, dtype);
            let n = xs.len();
            let f = compile(&graph(c.op, Type::new(dtype, &[n])), &fast()).expect("compile");
            let x = Array::from(xs.clone()).cast(dtype);
            let got = f.call(&[x]).expect("call")[0].to_f64_vec();
            let mut worst = (0.0, 0.0);
            for (&x, &g) in xs.iter().zip(&got) {
                let Some(want) = reference(&c, x, dtype) else {
                    continue;
                };
                let e = ulps(g, want, dtype);
                if e > worst.0 {
                    worst = (e, x);
                }
            }
            // The scalar entry (no vectors) on a subset.
            let s = compile(&graph(c.op, Type::scalar(dtype)), &fast()).expect("compile");
            for &x in xs.iter().step_by(17) {
                let mut out = [0.0];
                s.call_scalar(&[x], &mut out).expect("call_scalar");
                if let Some(want) = reference(&c, x, dtype) {
                    let e = ulps(out[0], want, dtype);
                    if e > worst.0 {
                        worst = (e, x);
                    }
                }
            }
            if std::env::var("FX_ULPS").is_ok() {
                eprintln!(
                    "{} {dtype}: {:.3} ulps at {:e}",
                    c.op.name(),
                    worst.0,
                    worst.1
                );
                continue;
            }
            assert!(
                worst.0 <= c.ulps,
                "{} {dtype}: {:.2} ulps at x = {:e} (bound {})",
                c.op.name(),
                worst.0,
                worst.1,
                c.ulps
            );
        }
    }
}

#[test]
fn fast_transcendentals_keep_special_values() {
    let specials = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -1.0,
        1.0,
        1e-310,
        -1e-310,
    ];
    for c in cases() {
        for &dtype in c.dtypes {
            let f = compile(&graph(c.op, Type::new(dtype, &[specials.len()])), &fast())
                .expect("compile");
            let x = Array::from(specials.to_vec()).cast(dtype);
            let xs = x.to_f64_vec();
            let got = f.call(&[x]).expect("call")[0].to_f64_vec();
            for (&x, &g) in xs.iter().zip(&got) {
                let want = (c.reference)(x);
                let want = if dtype == DType::F32 {
                    want as f32 as f64
                } else {
                    want
                };
                let ok = if want.is_nan() {
                    g.is_nan()
                } else if !want.is_finite() || want == 0.0 {
                    g.to_bits() == want.to_bits()
                } else {
                    ulps(g, want, dtype) <= c.ulps.max(1.0)
                        || (x.abs() < 1e-300 && (g - want).abs() <= 1e-300)
                };
                assert!(ok, "{} {dtype} at {x:e}: {g:e}, std {want:e}", c.op.name());
            }
        }
    }
}

/// `sin` and `cos` of one argument in one fused vector loop (as in the gradient of `sin²`)
/// share their reduction and kernels; the shared values must equal each function compiled
/// alone, bit for bit, and the product must be their rounded product.
#[test]
fn fused_sin_and_cos_match_their_separate_forms() {
    use ferrax_ir::ops::BinaryOp;
    for dtype in [DType::F64, DType::F32] {
        let mut rng = Rng(5);
        let xs: Vec<f64> = (0..4099).map(|_| -40.0 + 80.0 * rng.next()).collect();
        let ty = Type::new(dtype, &[xs.len()]);
        let mut b = Builder::new();
        let x = b.param(ty.clone());
        let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).expect("sin");
        let c = b.push1(Op::Unary(UnaryOp::Cos), &[x]).expect("cos");
        let p = b.push1(Op::Binary(BinaryOp::Mul), &[s, c]).expect("mul");
        let both = compile(&b.finish(&[p]), &fast()).expect("compile");
        let x = Array::from(xs).cast(dtype);
        let got = both.call(std::slice::from_ref(&x)).expect("call")[0].to_f64_vec();
        let sin = compile(&graph(UnaryOp::Sin, ty.clone()), &fast()).expect("compile");
        let cos = compile(&graph(UnaryOp::Cos, ty), &fast()).expect("compile");
        let s = sin.call(std::slice::from_ref(&x)).expect("call")[0].to_f64_vec();
        let c = cos.call(&[x]).expect("call")[0].to_f64_vec();
        for (i, &g) in got.iter().enumerate() {
            let want = if dtype == DType::F32 {
                (s[i] as f32 * c[i] as f32) as f64
            } else {
                s[i] * c[i]
            };
            assert_eq!(g.to_bits(), want.to_bits(), "{dtype} element {i}");
        }
    }
}

/// A graph of `pow` on two `dtype` parameters of shape `dims`.
fn pow_graph(dtype: DType, dims: &[usize]) -> Graph {
    use ferrax_ir::ops::BinaryOp;
    let mut b = Builder::new();
    let ty = Type::new(dtype, dims);
    let x = b.param(ty.clone());
    let y = b.param(ty);
    let r = b.push1(Op::Binary(BinaryOp::Pow), &[x, y]).expect("pow");
    b.finish(&[r])
}

/// Runs fast `pow` of `dtype` on the pairs `(xs, ys)` (values of `dtype`) and on every pair of
/// special values, through the vector loop (with a scalar tail) and, on every 7th pair, the
/// scalar entry. Special results (infinite, zero, or from a NaN input) must equal `powf` of
/// `dtype` exactly (any NaN for NaN); the others must stay within `bound` ulps of the f64
/// `powf` of the inputs.
fn check_pow(dtype: DType, mut xs: Vec<f64>, mut ys: Vec<f64>, bound: f64) {
    let f32_dtype = dtype == DType::F32;
    let tiny = if f32_dtype { 1e-40 } else { 1e-310 };
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -2.0,
        3.0,
        -3.0,
        2.5,
        -2.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        tiny,
        -tiny,
        1e300,
    ];
    let round = |v: f64| if f32_dtype { v as f32 as f64 } else { v };
    for &a in &specials {
        for &b in &specials {
            xs.push(round(a));
            ys.push(round(b));
        }
    }
    // An odd length, so the vector loop leaves a scalar tail.
    xs.push(1.5);
    ys.push(2.5);
    let n = xs.len();
    let f = compile(&pow_graph(dtype, &[n]), &fast()).expect("compile");
    let args = [
        Array::from(xs.clone()).cast(dtype),
        Array::from(ys.clone()).cast(dtype),
    ];
    let mut got = f.call(&args).expect("call")[0].to_f64_vec();
    let scalar = compile(&pow_graph(dtype, &[]), &fast()).expect("compile");
    for k in (0..n).step_by(7) {
        let mut out = [0.0];
        scalar
            .call_scalar(&[xs[k], ys[k]], &mut out)
            .expect("call_scalar");
        got.push(out[0]);
    }
    let picked: Vec<usize> = (0..n).chain((0..n).step_by(7)).collect();
    let (min, max) = if f32_dtype {
        (f32::MIN_POSITIVE as f64, f32::MAX as f64)
    } else {
        (f64::MIN_POSITIVE, f64::MAX)
    };
    let mut worst = (0.0, 0.0, 0.0);
    for (&k, &g) in picked.iter().zip(&got) {
        let (x, y) = (xs[k], ys[k]);
        let exact = if f32_dtype {
            (x as f32).powf(y as f32) as f64
        } else {
            x.powf(y)
        };
        if !exact.is_finite() || exact == 0.0 || x.is_nan() || y.is_nan() {
            let ok = (exact.is_nan() && g.is_nan()) || g.to_bits() == exact.to_bits();
            assert!(
                ok,
                "pow {dtype} ({x:e}, {y:e}) = {g:e}, powf gives {exact:e}"
            );
            continue;
        }
        let want = x.powf(y);
        if want.abs() < min || want.abs() > max {
            continue;
        }
        let e = ulps(g, want, dtype);
        if e > worst.0 {
            worst = (e, x, y);
        }
    }
    assert!(
        worst.0 <= bound,
        "pow {dtype}: {:.2} ulps at ({:e}, {:e})",
        worst.0,
        worst.1,
        worst.2
    );
}

/// Fast f32 `pow` (computed in f64 lanes) stays within one f32 ulp over positive bases from
/// 1e-30 to 1e30, negative bases with integer exponents and bases near 1 with exponents up to
/// ±800, and keeps every special value.
#[test]
fn fast_f32_pow_stays_within_one_ulp_and_keeps_special_values() {
    let mut rng = Rng(17);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let f32v = |v: f64| v as f32 as f64;
    for _ in 0..30_000 {
        xs.push(f32v(10f64.powf(-30.0 + 60.0 * rng.next())));
        ys.push(f32v(-40.0 + 80.0 * rng.next()));
        xs.push(f32v(-(1.0 + 9.0 * rng.next())));
        ys.push((-30.0 + 60.0 * rng.next()).round());
        xs.push(f32v(0.9 + 0.2 * rng.next()));
        ys.push(f32v(-800.0 + 1600.0 * rng.next()));
    }
    check_pow(DType::F32, xs, ys, 1.0);
}

/// Fast f64 `pow` (a double-word `log`, an exact product with `y`, and `exp` with the low
/// word applied) stays within 3 ulps of glibc's `pow` over bases from 1e-300 to 1e300,
/// negative bases with integer exponents, and bases near 1 with exponents in the tens of
/// thousands (where an error in `log|x|` is amplified most), and keeps every special value.
#[test]
fn fast_f64_pow_stays_within_three_ulps_and_keeps_special_values() {
    let mut rng = Rng(23);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for _ in 0..30_000 {
        xs.push(10f64.powf(-300.0 + 600.0 * rng.next()));
        ys.push(-2.4 + 4.8 * rng.next());
        xs.push(10f64.powf(-5.0 + 10.0 * rng.next()));
        ys.push(-60.0 + 120.0 * rng.next());
        xs.push(-(1.0 + 99.0 * rng.next()));
        ys.push((-150.0 + 300.0 * rng.next()).round());
        xs.push(0.99 + 0.02 * rng.next());
        ys.push(-70_000.0 + 140_000.0 * rng.next());
    }
    check_pow(DType::F64, xs, ys, 3.0);
}

/// Fast f64 `erf` against 2,000 correctly rounded values computed with mpmath at 50 digits
/// (`tests/data/erf_f64.txt`: uniform in [−6.5, 6.5], log-spaced down to 1e-300, and dense
/// around the pieces' boundaries), through the vector loop and the scalar entry: within 3
/// ulps; and its special values exactly.
#[test]
fn fast_f64_erf_matches_its_table() {
    let specials = [
        (0.0, 0.0),
        (-0.0, -0.0),
        (f64::INFINITY, 1.0),
        (f64::NEG_INFINITY, -1.0),
        (6.0, 1.0),
        (-40.0, -1.0),
        (1e-310, 1e-310 * std::f64::consts::FRAC_2_SQRT_PI),
    ];
    check_table(UnaryOp::Erf, include_str!("data/erf_f64.txt"), &specials);
}

/// Fast f64 `tanh` against 2,000 correctly rounded values computed with mpmath at 50 digits
/// (`tests/data/tanh_f64.txt`), through the vector loop and the scalar entry: within 3 ulps;
/// and its special values exactly. glibc's `tanh`, the sweeps' reference, is itself up to
/// about 1.7 ulps off near |x| ≈ 0.2, where the fast result can be 4 ulps from it while
/// within 2.5 of the exact value: the table holds the first 400 such inputs a sweep found.
#[test]
fn fast_f64_tanh_matches_its_table() {
    let specials = [
        (0.0, 0.0),
        (-0.0, -0.0),
        (f64::INFINITY, 1.0),
        (f64::NEG_INFINITY, -1.0),
        (30.0, 1.0),
        (-800.0, -1.0),
        (1e-310, 1e-310),
    ];
    check_table(UnaryOp::Tanh, include_str!("data/tanh_f64.txt"), &specials);
}

/// Checks fast f64 `op` against a table of `x` and correctly rounded `op(x)` (lines of two hex
/// bit patterns, `#` comments) and against `specials` (with NaN added), through the vector loop
/// and the scalar entry: exact for NaN, zeros and ±1, within 3 ulps of the table otherwise.
fn check_table(op: UnaryOp, table: &str, specials: &[(f64, f64)]) {
    let mut xs = Vec::new();
    let mut want = Vec::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let mut next = || {
            let bits = u64::from_str_radix(parts.next().expect("two columns"), 16).expect("hex");
            f64::from_bits(bits)
        };
        xs.push(next());
        want.push(next());
    }
    for &(x, w) in specials {
        xs.push(x);
        want.push(w);
    }
    xs.push(f64::NAN);
    want.push(f64::NAN);
    let n = xs.len();
    let f = compile(&graph(op, Type::new(DType::F64, &[n])), &fast()).expect("compile");
    let got = f.call(&[Array::from(xs.clone())]).expect("call")[0].to_f64_vec();
    let scalar = compile(&graph(op, Type::scalar(DType::F64)), &fast()).expect("compile");
    let mut worst = (0.0, 0.0);
    for k in 0..n {
        let mut out = [0.0];
        scalar.call_scalar(&[xs[k]], &mut out).expect("call_scalar");
        for g in [got[k], out[0]] {
            if want[k].is_nan() || want[k] == 0.0 || want[k].abs() == 1.0 {
                let ok = (want[k].is_nan() && g.is_nan()) || g.to_bits() == want[k].to_bits();
                assert!(ok, "{op:?}({:e}) = {g:e}, want {:e}", xs[k], want[k]);
                continue;
            }
            let e = ulps(g, want[k], DType::F64);
            if e > worst.0 {
                worst = (e, xs[k]);
            }
        }
    }
    assert!(
        worst.0 <= 3.0,
        "{op:?} f64: {:.2} ulps at {:e}",
        worst.0,
        worst.1
    );
}

// ---------------------------------------------------------------------------------------------
// Whole-domain checks: IEEE classes everywhere, ulp bounds on every finite input.

/// The IEEE class of `v`: NaN, −∞, +∞, −0, +0 or finite non-zero (the sign of a finite
/// non-zero value is left to the ulp bounds).
fn class(v: f64) -> u8 {
    if v.is_nan() {
        0
    } else if v.is_infinite() {
        1 + u8::from(v > 0.0)
    } else if v == 0.0 {
        3 + u8::from(v.is_sign_positive())
    } else {
        5
    }
}

/// The ulp of `dtype` at `v` (an f64 value), by the exponent bits: subnormal results count
/// in subnormal ulps.
fn ulp_at(v: f64, dtype: DType) -> f64 {
    let (mant, min_exp) = if dtype == DType::F32 {
        (23, -126)
    } else {
        (52, -1022)
    };
    let e = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let e = e.max(min_exp) - mant;
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// The precise result (the interpreter's scalar function) of `op` at `x` in `dtype`.
fn precise(op: UnaryOp, dtype: DType, x: f64) -> f64 {
    if dtype == DType::F32 {
        op.scalar_f32(x as f32) as f64
    } else {
        op.scalar_f64(x)
    }
}

/// A fast unary function, its f64 reference for the ulp bound (`None`: class only) and its
/// bound.
type Bound = (UnaryOp, Option<fn(f64) -> f64>, f64);

/// The fast unary functions with their references and bounds (the table in
/// `lower/fastmath.rs`).
fn unary_bounds() -> Vec<Bound> {
    vec![
        (UnaryOp::Exp, Some(f64::exp), 2.0),
        (UnaryOp::Expm1, Some(f64::exp_m1), 3.0),
        (UnaryOp::Log, Some(f64::ln), 2.0),
        (UnaryOp::Log1p, Some(f64::ln_1p), 3.0),
        (UnaryOp::Sin, Some(f64::sin), 3.0),
        (UnaryOp::Cos, Some(f64::cos), 3.0),
        // Against glibc, whose own error near |x| ≈ 0.2 these inputs miss (see the table test).
        (UnaryOp::Tanh, Some(f64::tanh), 3.0),
        (UnaryOp::Logistic, Some(precise_logistic), 3.0),
        (UnaryOp::Erf, Some(ferrax_ir::ops::unary::erf), 3.0),
    ]
}

/// `logistic` in f64 without overflow of `e^−x` (the interpreter's form).
fn precise_logistic(x: f64) -> f64 {
    UnaryOp::Logistic.scalar_f64(x)
}

/// Checks fast `op` of `dtype` at `xs` (values of `dtype`), through the vector loop and, with
/// `scalar`, the scalar entry: the class must be the precise result's, and where a reference
/// is given and the precise result is finite the error must stay within `bound` ulps of it.
/// Returns the failures (at most 10) and the number of points checked.
fn check_unary(
    op: UnaryOp,
    dtype: DType,
    xs: &[f64],
    reference: Option<fn(f64) -> f64>,
    bound: f64,
    scalar: bool,
) -> Vec<String> {
    let n = xs.len();
    let f = compile(&graph(op, Type::new(dtype, &[n])), &fast()).expect("compile");
    let x = Array::from(xs.to_vec()).cast(dtype);
    let mut got: Vec<(f64, f64)> = xs
        .iter()
        .zip(f.call(&[x]).expect("call")[0].to_f64_vec())
        .map(|(&x, g)| (x, g))
        .collect();
    if scalar {
        let s = compile(&graph(op, Type::scalar(dtype)), &fast()).expect("compile");
        for &x in xs {
            let mut out = [0.0];
            s.call_scalar(&[x], &mut out).expect("call_scalar");
            got.push((x, out[0]));
        }
    }
    let mut fails = Vec::new();
    let mut worst = (0.0, 0.0);
    for (x, g) in got {
        let p = precise(op, dtype, x);
        let err = if class(g) != class(p) {
            f64::INFINITY
        } else if let (Some(r), true) = (reference, p.is_finite() && p != 0.0) {
            let want = r(x);
            (g - want).abs() / ulp_at(want, dtype)
        } else {
            0.0
        };
        if err > worst.0 {
            worst = (err, x);
        }
        if err > bound && fails.len() < 10 {
            fails.push(format!(
                "{} {dtype}({x:e}) = {g:e}, precise {p:e} ({err:.2} ulps)",
                op.name()
            ));
        }
    }
    if std::env::var("FX_ULPS").is_ok() {
        eprintln!(
            "{} {dtype}: {:.3} ulps at {:e}",
            op.name(),
            worst.0,
            worst.1
        );
    }
    fails
}

/// Values of `dtype` around `t`: the nearest value and `n` neighbours on each side.
fn around(t: f64, n: i64, dtype: DType) -> Vec<f64> {
    if dtype == DType::F32 {
        let b = (t as f32).to_bits() as i64;
        (-n..=n)
            .map(|d| f32::from_bits((b + d) as u32) as f64)
            .collect()
    } else {
        let b = t.to_bits() as i64;
        (-n..=n).map(|d| f64::from_bits((b + d) as u64)).collect()
    }
}

/// The special values of `dtype`: ±0, the smallest and largest subnormals, the smallest
/// normal, ±1, the largest finite values, ±∞ and NaN (both signs of each).
fn specials(dtype: DType) -> Vec<f64> {
    let base: Vec<f64> = if dtype == DType::F32 {
        vec![
            0.0,
            f32::from_bits(1) as f64,
            f32::from_bits(0x007f_ffff) as f64,
            f32::MIN_POSITIVE as f64,
            1.0,
            f32::MAX as f64,
            f64::INFINITY,
            f64::NAN,
        ]
    } else {
        vec![
            0.0,
            f64::from_bits(1),
            f64::from_bits(0x000f_ffff_ffff_ffff),
            f64::MIN_POSITIVE,
            1.0,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ]
    };
    base.iter().flat_map(|&v| [v, -v]).collect()
}

/// Where each function's result changes class or saturates (overflow, underflow to
/// subnormals and to zero, rounding to ±1), for `dtype`.
fn thresholds(op: UnaryOp, dtype: DType) -> Vec<f64> {
    let f32d = dtype == DType::F32;
    // ln of the largest finite value, the smallest normal and half the smallest subnormal.
    let (ln_max, ln_min_normal, ln_half_sub) = if f32d {
        (
            88.722_839_052_068_34,
            -87.336_544_750_553_1,
            -103.972_077_083_991_8,
        )
    } else {
        (
            709.782_712_893_384,
            -708.396_418_532_264_1,
            -745.133_219_101_941_1,
        )
    };
    // ln 2^-(p+1): below it e^x is below half an ulp of 1.
    let ln_eps = if f32d {
        -17.328_679_513_998_63
    } else {
        -37.429_947_750_237_04
    };
    match op {
        UnaryOp::Exp => vec![ln_max, ln_min_normal, ln_half_sub, ln_eps, -ln_eps],
        UnaryOp::Expm1 => vec![ln_max, ln_eps, 2.0 * ln_eps, ln_min_normal],
        UnaryOp::Logistic => vec![-ln_half_sub, ln_min_normal, ln_half_sub, ln_eps, -ln_eps],
        UnaryOp::Tanh => vec![
            if f32d {
                9.010_913
            } else {
                19.061_547_465_398_5
            },
            1e-4,
        ],
        UnaryOp::Erf => vec![
            if f32d {
                3.919_206
            } else {
                5.921_590_000_260_29
            },
            1.0,
            2.0,
        ],
        UnaryOp::Log | UnaryOp::Log1p => vec![1.0, -1.0, 0.5, 2.0, 1e-300],
        _ => vec![1.0],
    }
}

/// Every fast unary function keeps the IEEE class of the precise result and its ulp bound on
/// the special values and around the points where its result changes class or saturates,
/// 64 values of the type either side (negated too), through the vector loop and the scalar
/// entry.
#[test]
fn fast_unary_functions_are_exact_in_class_on_special_grids() {
    let mut fails = Vec::new();
    for (op, reference, bound) in unary_bounds() {
        for dtype in [DType::F64, DType::F32] {
            let mut xs = specials(dtype);
            for t in thresholds(op, dtype) {
                for v in around(t, 64, dtype) {
                    xs.push(v);
                    xs.push(-v);
                }
            }
            // The interpreter's f64 erf is not accurate to an f64 ulp (see above).
            let reference = reference.filter(|_| op != UnaryOp::Erf || dtype == DType::F32);
            fails.extend(check_unary(op, dtype, &xs, reference, bound, true));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// The grids of [`fast_unary_functions_are_exact_in_class_on_special_grids`] in loops long
/// enough to run as parallel kernels (at least `fused::PAR_MIN` = 2^16 elements), where the
/// vector constants come from the kernel's pool and `exp` takes its short path vector by
/// vector: each grid value sits alone among ordinary values, at every lane position in turn,
/// so that one special lane sends its vector to the cold path while its neighbours, and the
/// vectors around, take the short one; random values in [−100, 100] fill the rest.
#[test]
fn fast_unary_functions_keep_their_bounds_in_parallel_kernels() {
    let mut fails = Vec::new();
    let mut rng = Rng(5);
    for (op, reference, bound) in unary_bounds() {
        for dtype in [DType::F64, DType::F32] {
            let mut grid = specials(dtype);
            for t in thresholds(op, dtype) {
                for v in around(t, 16, dtype) {
                    grid.push(v);
                    grid.push(-v);
                }
            }
            let mut xs = Vec::new();
            for (i, &g) in grid.iter().enumerate() {
                for lane in 0..4 {
                    let v = -100.0 + 200.0 * rng.next();
                    xs.push(if lane == i % 4 { g } else { v });
                }
            }
            while xs.len() < 70_000 {
                xs.push(-100.0 + 200.0 * rng.next());
            }
            let xs: Vec<f64> = xs
                .into_iter()
                .map(|v| {
                    if dtype == DType::F32 {
                        v as f32 as f64
                    } else {
                        v
                    }
                })
                .collect();
            let reference = reference.filter(|_| op != UnaryOp::Erf || dtype == DType::F32);
            fails.extend(check_unary(op, dtype, &xs, reference, bound, false));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// `sin` and `cos` near multiples of π/2 (the nearest values of the type to k·π/2 and two
/// neighbours each side), for every k up to the fast reduction's range and at sampled k
/// beyond, up to the largest finite value.
#[test]
fn fast_sin_and_cos_are_accurate_near_multiples_of_half_pi() {
    let mut fails = Vec::new();
    for dtype in [DType::F64, DType::F32] {
        let kmax: u64 = if dtype == DType::F32 {
            1 << 16
        } else {
            1 << 17
        };
        let mut ks: Vec<f64> = (1..kmax).map(|k| k as f64).collect();
        let mut rng = Rng(31);
        let top = if dtype == DType::F32 { 127.0 } else { 1023.0 };
        ks.extend((0..4000).map(|_| 2f64.powf(17.0 + (top - 17.0) * rng.next()).floor()));
        let mut xs = Vec::new();
        for k in ks {
            // k·π/2 to about 2^-100 relative: k times a double-word π/2.
            let hi = k * std::f64::consts::FRAC_PI_2;
            let lo = k.mul_add(std::f64::consts::FRAC_PI_2, -hi) + k * 6.123_233_995_736_766e-17;
            let t = hi + lo;
            if t.is_finite() && (dtype == DType::F64 || t < f32::MAX as f64) {
                xs.extend(around(t, 2, dtype));
            }
        }
        let neg: Vec<f64> = xs.iter().map(|&x| -x).collect();
        xs.extend(neg);
        for (op, r) in [
            (UnaryOp::Sin, f64::sin as fn(f64) -> f64),
            (UnaryOp::Cos, f64::cos),
        ] {
            fails.extend(check_unary(op, dtype, &xs, Some(r), 3.0, false));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Checks fast `op` of `dtype` on the values whose bit patterns `bits` yields (f32 patterns
/// in the low 32 bits for f32), in chunks through the vector loop: the class must be the
/// precise result's everywhere, and the error within `bound` ulps of `reference` wherever
/// the precise result is finite and non-zero. Returns the failures (at most 10).
fn sweep(
    op: UnaryOp,
    dtype: DType,
    bits: impl Iterator<Item = u64>,
    reference: Option<fn(f64) -> f64>,
    bound: f64,
) -> Vec<String> {
    use ferrax_ir::{Data, Shape};
    const CHUNK: usize = 1 << 18;
    let f = compile(&graph(op, Type::new(dtype, &[CHUNK])), &fast()).expect("compile");
    let mut fails = Vec::new();
    let mut worst = (0.0, 0.0);
    let mut bits = bits.peekable();
    while bits.peek().is_some() {
        let chunk: Vec<u64> = bits.by_ref().take(CHUNK).collect();
        let mut xs: Vec<f64> = if dtype == DType::F32 {
            chunk
                .iter()
                .map(|&b| f32::from_bits(b as u32) as f64)
                .collect()
        } else {
            chunk.iter().map(|&b| f64::from_bits(b)).collect()
        };
        xs.resize(CHUNK, 0.0);
        let data = if dtype == DType::F32 {
            Data::F32(xs.iter().map(|&x| x as f32).collect())
        } else {
            Data::F64(xs.clone())
        };
        let x = Array::new(Shape::new(&[CHUNK]), data).expect("an array");
        let out = f.call(&[x]).expect("call");
        let got: Vec<f64> = match out[0].data() {
            Data::F32(v) => v.iter().map(|&g| g as f64).collect(),
            Data::F64(v) => v.clone(),
            _ => unreachable!("a float result"),
        };
        for (&x, &g) in xs.iter().zip(&got) {
            let p = precise(op, dtype, x);
            let err = if class(g) != class(p) {
                f64::INFINITY
            } else if let (Some(r), true) = (reference, p.is_finite() && p != 0.0) {
                let want = r(x);
                (g - want).abs() / ulp_at(want, dtype)
            } else {
                0.0
            };
            if err > worst.0 {
                worst = (err, x);
            }
            if err > bound && fails.len() < 10 {
                fails.push(format!(
                    "{} {dtype}({x:e}) = {g:e}, precise {p:e} ({err:.2} ulps)",
                    op.name()
                ));
            }
        }
    }
    if std::env::var("FX_ULPS").is_ok() {
        eprintln!(
            "{} {dtype}: {:.3} ulps at {:e}",
            op.name(),
            worst.0,
            worst.1
        );
    }
    fails
}

/// Every fast unary function over the whole f32 range: 2^22 values per function, every
/// 1024th bit pattern (a pseudo-random one of each block of 1024, so all exponents, both
/// signs, subnormals, infinities and NaNs are visited).
#[test]
fn fast_f32_unary_functions_hold_over_the_whole_range() {
    let mut fails = Vec::new();
    for (op, reference, bound) in unary_bounds() {
        let bits = (0u64..1 << 22).map(|i| {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54;
            (i << 10) | h
        });
        fails.extend(sweep(op, DType::F32, bits, reference, bound));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Every fast unary function over the whole f64 range: 2^20 pseudo-random bit patterns per
/// function (uniform over exponents and signs, so every binade is visited about 500 times),
/// and 2^18 values uniform in [−800, 800] where the results change fastest.
#[test]
fn fast_f64_unary_functions_hold_over_the_whole_range() {
    let mut fails = Vec::new();
    for (op, reference, bound) in unary_bounds() {
        let reference = reference.filter(|_| op != UnaryOp::Erf);
        let mut rng = Rng(41);
        let random = (0..1 << 20).map(move |_| {
            let hi = (rng.next() * (1u64 << 32) as f64) as u64;
            let lo = (rng.next() * (1u64 << 32) as f64) as u64;
            (hi << 32) | lo
        });
        let mut rng = Rng(43);
        let near = (0..1 << 18).map(move |_| (-800.0 + 1600.0 * rng.next()).to_bits());
        fails.extend(sweep(op, DType::F64, random.chain(near), reference, bound));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Checks fast `pow` of `dtype` on the pairs `(xs[i], ys[i])` (values of `dtype`), through the
/// vector loop and the scalar entry: the class must be the precise result's, and where that
/// is finite and non-zero the error within `bound` ulps of the f64 `powf` of the inputs
/// (subnormal results in subnormal ulps). Returns the failures (at most 10).
fn check_pow_pairs(dtype: DType, xs: &[f64], ys: &[f64], bound: f64) -> Vec<String> {
    use ferrax_ir::ops::BinaryOp;
    let n = xs.len();
    let f = compile(&pow_graph(dtype, &[n]), &fast()).expect("compile");
    let args = [
        Array::from(xs.to_vec()).cast(dtype),
        Array::from(ys.to_vec()).cast(dtype),
    ];
    let mut got: Vec<(usize, f64)> = f.call(&args).expect("call")[0]
        .to_f64_vec()
        .into_iter()
        .enumerate()
        .collect();
    let scalar = compile(&pow_graph(dtype, &[]), &fast()).expect("compile");
    for k in 0..n {
        let mut out = [0.0];
        scalar
            .call_scalar(&[xs[k], ys[k]], &mut out)
            .expect("call_scalar");
        got.push((k, out[0]));
    }
    let mut fails = Vec::new();
    let mut worst = (0.0, 0.0, 0.0);
    for (k, g) in got {
        let (x, y) = (xs[k], ys[k]);
        let p = if dtype == DType::F32 {
            BinaryOp::Pow.scalar_f32(x as f32, y as f32) as f64
        } else {
            BinaryOp::Pow.scalar_f64(x, y)
        };
        let err = if class(g) != class(p) {
            f64::INFINITY
        } else if p.is_finite() && p != 0.0 {
            let want = x.powf(y);
            (g - want).abs() / ulp_at(want, dtype)
        } else {
            0.0
        };
        if err > worst.0 {
            worst = (err, x, y);
        }
        if err > bound && fails.len() < 10 {
            fails.push(format!(
                "pow {dtype}({x:e}, {y:e}) = {g:e}, precise {p:e} ({err:.2} ulps)"
            ));
        }
    }
    if std::env::var("FX_ULPS").is_ok() {
        eprintln!(
            "pow {dtype}: {:.3} ulps at {:e}, {:e}",
            worst.0, worst.1, worst.2
        );
    }
    fails
}

/// Fast `pow` keeps the precise result's class and its bound on every pair of special
/// values (with halves, odd and even integers, and the largest integers of the type), where
/// the result overflows, becomes subnormal or underflows to zero (exponents around those
/// thresholds for several bases), and where the exact result is half the smallest subnormal
/// (a tie that rounds to zero).
#[test]
fn fast_pow_is_exact_in_class_on_special_grids() {
    let mut fails = Vec::new();
    for (dtype, bound) in [(DType::F64, 3.0), (DType::F32, 1.0)] {
        let f32d = dtype == DType::F32;
        let round = |v: f64| if f32d { v as f32 as f64 } else { v };
        let mut grid = specials(dtype);
        let big_int = if f32d {
            16_777_216.0
        } else {
            9_007_199_254_740_992.0
        };
        for v in [0.5, 2.0, 3.0, 2.5, big_int, big_int - 1.0, 1e10, 1e-10] {
            grid.push(v);
            grid.push(-v);
        }
        grid.extend(around(1.0, 2, dtype));
        grid.extend(around(-1.0, 2, dtype));
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for &a in &grid {
            for &b in &grid {
                xs.push(a);
                ys.push(b);
            }
        }
        // Exponents around the overflow, subnormal and zero thresholds.
        let (max, min_normal, half_sub) = if f32d {
            (f32::MAX as f64, f32::MIN_POSITIVE as f64, 2f64.powi(-150))
        } else {
            (f64::MAX, f64::MIN_POSITIVE, 2f64.powi(-1074) / 2.0)
        };
        for base in [
            2.0, 0.5, 10.0, 0.1, 3.0, 1.001, 0.999, 1e-20, 1e20, -2.0, -0.1,
        ] {
            let base = round(base);
            let lb = base.abs().ln();
            for target in [max, min_normal, half_sub] {
                for y in around(target.ln() / lb, 16, dtype) {
                    xs.push(base);
                    ys.push(y);
                }
                // Odd integer exponents for negative bases.
                let yi = (target.ln() / lb).round();
                for d in -3..=3 {
                    xs.push(base);
                    ys.push(yi + d as f64);
                }
            }
        }
        // Exact ties at half the smallest subnormal: 2^a raised to −e/a (and negative bases
        // with odd exponents, which give −0).
        let e: i32 = if f32d { 150 } else { 1075 };
        for a in [1, 2, 4, 5, 8, 16, 25, 43, -1, -2, -5, -25] {
            let x = 2f64.powi(a);
            let y = -(e as f64) / a as f64;
            if round(x) == x && round(y) == y {
                xs.extend([x, -x]);
                ys.extend([y, y]);
            }
        }
        fails.extend(check_pow_pairs(dtype, &xs, &ys, bound));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// The derivative of `op` at `v` where `op(v) = w`, in absolute value (for the error
/// propagation of [`fast_compositions_match_the_interpreter`]).
fn slope(op: UnaryOp, v: f64, w: f64) -> f64 {
    use std::f64::consts::FRAC_2_SQRT_PI;
    match op {
        UnaryOp::Exp | UnaryOp::Cosh | UnaryOp::Sinh => w.abs().max(v.cosh().min(f64::MAX)),
        UnaryOp::Exp2 => w * std::f64::consts::LN_2,
        UnaryOp::Expm1 => w + 1.0,
        UnaryOp::Log => 1.0 / v.abs(),
        UnaryOp::Log1p => 1.0 / (1.0 + v).abs(),
        UnaryOp::Sin | UnaryOp::Cos => 1.0,
        UnaryOp::Tan => 1.0 + w * w,
        UnaryOp::Tanh => 1.0 - w * w,
        UnaryOp::Logistic => w * (1.0 - w),
        UnaryOp::Erf => FRAC_2_SQRT_PI * (-v * v).exp(),
        UnaryOp::Square => 2.0 * v.abs(),
        UnaryOp::Reciprocal => w * w,
        _ => 1.0,
    }
}

/// Random chains of one to four unary ops (the fast functions, with `cosh`, `sinh`, `tan`,
/// `exp2`, `square`, `reciprocal` and `neg` between them to reach large values and special
/// values) over 2,048-element inputs of which a fifth are special values (the grid of
/// [`specials`] and ±π/2, ±88.7, ±709.8), compiled in Fast mode and in Auto mode (fast at this
/// size; also unoptimised): every element must have the interpreter's IEEE class, and a
/// value within four times an error bound propagated along the chain (each stage's ulp bound,
/// amplified by the later stages' derivatives; elements whose propagated error is large are
/// checked by class only). A zero against a finite value is accepted within that bound (the
/// functions are not correctly rounded, so `log` of an `erf` rounded to 1 is 0); NaN and
/// infinities must match exactly.
#[test]
fn fast_compositions_match_the_interpreter() {
    let fast_ops = [
        UnaryOp::Exp,
        UnaryOp::Expm1,
        UnaryOp::Log,
        UnaryOp::Log1p,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Logistic,
        UnaryOp::Erf,
    ];
    let other_ops = [
        UnaryOp::Cosh,
        UnaryOp::Sinh,
        UnaryOp::Tan,
        UnaryOp::Exp2,
        UnaryOp::Square,
        UnaryOp::Reciprocal,
        UnaryOp::Neg,
    ];
    let bound_of = |op: UnaryOp| {
        unary_bounds()
            .into_iter()
            .find(|b| b.0 == op)
            .map_or(1.0, |b| b.2)
    };
    let configs = [
        fast(),
        JitOptions {
            math: MathMode::Auto,
            ..JitOptions::default()
        },
        JitOptions {
            math: MathMode::Auto,
            optimize: false,
            ..JitOptions::default()
        },
    ];
    let mut rng = Rng(97);
    let mut fails = Vec::new();
    for trial in 0..60 {
        let dtype = if trial % 2 == 0 {
            DType::F64
        } else {
            DType::F32
        };
        let len = 1 + (rng.next() * 4.0) as usize;
        let ops: Vec<UnaryOp> = (0..len)
            .map(|_| {
                if rng.next() < 0.7 {
                    fast_ops[(rng.next() * fast_ops.len() as f64) as usize]
                } else {
                    other_ops[(rng.next() * other_ops.len() as f64) as usize]
                }
            })
            .collect();
        let mut special = specials(dtype);
        for v in [std::f64::consts::FRAC_PI_2, 88.7, 709.8] {
            special.extend([v, -v]);
        }
        let top = if dtype == DType::F32 { 38.0 } else { 300.0 };
        let xs: Vec<f64> = (0..2048)
            .map(|_| {
                let u = rng.next();
                let v = if u < 0.2 {
                    special[(rng.next() * special.len() as f64) as usize]
                } else if u < 0.6 {
                    -10.0 + 20.0 * rng.next()
                } else {
                    let s = if rng.next() < 0.5 { -1.0 } else { 1.0 };
                    s * 10f64.powf(-top + 2.0 * top * rng.next())
                };
                if dtype == DType::F32 {
                    v as f32 as f64
                } else {
                    v
                }
            })
            .collect();
        let mut b = Builder::new();
        let mut v = b.param(Type::new(dtype, &[xs.len()]));
        for &op in &ops {
            v = b.push1(Op::Unary(op), &[v]).expect("a unary op");
        }
        let g = b.finish(&[v]);
        let x = Array::from(xs.clone()).cast(dtype);
        let want = ferrax_ir::interp::eval(&g, std::slice::from_ref(&x)).expect("interpreter")[0]
            .to_f64_vec();
        // The error bound of each element, propagated stage by stage.
        let bounds: Vec<f64> = xs
            .iter()
            .map(|&x0| {
                let (mut v, mut err) = (x0, 0.0);
                for &op in &ops {
                    let w = precise(op, dtype, v);
                    let own = if fast_ops.contains(&op) {
                        bound_of(op)
                    } else {
                        0.5
                    };
                    err = slope(op, v, w) * err + own * ulp_at(w, dtype);
                    // Beyond first order: no bound.
                    if err.is_nan() || err > 1e-3 * w.abs().max(1.0) {
                        err = f64::INFINITY;
                    }
                    v = w;
                }
                err
            })
            .collect();
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        for opts in &configs {
            let f = compile(&g, opts).expect("compile");
            let got = f.call(std::slice::from_ref(&x)).expect("call")[0].to_f64_vec();
            for i in 0..xs.len() {
                let (gv, wv) = (got[i], want[i]);
                // A zero where the interpreter has a finite value (or the reverse) is allowed
                // within the bound: log(1) of an `erf` rounded up to 1, say.
                let close = gv.is_finite() && wv.is_finite() && (gv - wv).abs() <= 4.0 * bounds[i];
                let ok = if class(gv) == class(wv) {
                    !wv.is_finite() || gv == wv || close
                } else {
                    close
                };
                if !ok && fails.len() < 20 {
                    fails.push(format!(
                        "{names:?} {dtype} {:?} at {:e}: {gv:e}, interpreter {wv:e}",
                        opts.math, xs[i]
                    ));
                }
            }
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}
