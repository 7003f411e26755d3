//! Fused groups whose root is a fast `tanh`, finished by the wide helper (`wide_math.rs`: the
//! loop stores the root's operand, the helper applies `tanh` in place with the CPU's widest
//! vectors), against the same groups computed inline: the root `tanh(e)` against
//! `−(−tanh(e))`, whose root is a negation, so its `tanh` stays in the 128-bit loop. The
//! helper performs the inline form's operations, so the two agree bit for bit, for f32 and
//! f64, on every special value, on random bit patterns over the whole range, on a hidden
//! layer's `tanh(x·W + b)` shape, in the scalar tail of a row and above the size where both
//! run on the thread pool. The interpreter (libm's `tanh`) is matched within the fast bound.

mod common;

use common::{close, same_bits, Rng};
use ferrax_ir::ops::UnaryOp;
use ferrax_ir::{interp, trace, Array, Builder, DType, Data, Graph, Op, Shape, Tensor, Type};
use ferrax_jit::{compile, stats, JitOptions, MathMode};

/// `tanh(x)` (`wrap`: `−(−tanh(x))`) over one parameter of type `ty`.
fn tanh_graph(ty: Type, wrap: bool) -> Graph {
    let mut b = Builder::new();
    let x = b.param(ty);
    let mut r = b.push1(Op::Unary(UnaryOp::Tanh), &[x]).expect("tanh");
    if wrap {
        for _ in 0..2 {
            r = b.push1(Op::Unary(UnaryOp::Neg), &[r]).expect("neg");
        }
    }
    b.finish(&[r])
}

fn opts(math: MathMode) -> JitOptions {
    JitOptions {
        math,
        ..JitOptions::default()
    }
}

/// An array of `dtype` from f64 bit patterns (f32 patterns in the low 32 bits for f32).
fn from_bits(dtype: DType, bits: &[u64]) -> Array {
    let data = match dtype {
        DType::F64 => Data::F64(bits.iter().map(|&b| f64::from_bits(b)).collect()),
        _ => Data::F32(bits.iter().map(|&b| f32::from_bits(b as u32)).collect()),
    };
    Array::new(Shape::new(&[bits.len()]), data).expect("an array")
}

/// The special values of both types, and values around the clamp and the reduction's ends.
fn specials(dtype: DType) -> Vec<u64> {
    let f64s = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        1e-300,
        1e-8,
        0.5,
        0.3465735902799726,
        1.0,
        9.999999,
        10.0,
        10.000001,
        19.99999,
        20.0,
        20.00001,
        -20.0,
        1e300,
    ];
    match dtype {
        DType::F64 => f64s.iter().map(|x| x.to_bits()).collect(),
        _ => f64s
            .iter()
            .map(|&x| (x as f32).to_bits() as u64)
            .chain([1u64, 0x8000_0001, 0x7fc0_0001, 0xffc0_0000])
            .collect(),
    }
}

/// Random bit patterns of `dtype` (every exponent and both signs) and values in [−25, 25].
fn patterns(dtype: DType, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let u = rng.next();
            let v = rng.next();
            match (dtype, i % 2) {
                (DType::F64, 0) => {
                    ((u * (1u64 << 32) as f64) as u64) << 32 | (v * (1u64 << 32) as f64) as u64
                }
                (DType::F64, _) => (-25.0 + 50.0 * u).to_bits(),
                (_, 0) => (u * (1u64 << 32) as f64) as u64,
                (_, _) => ((-25.0 + 50.0 * u) as f32).to_bits() as u64,
            }
        })
        .collect()
}

/// Compiles `tanh` rooted and wrapped for `n` elements and checks that they agree bit for
/// bit on `bits` (cycled to `n` elements), and that the rooted one took the helper.
fn same_as_inline(dtype: DType, n: usize, bits: &[u64], math: MathMode) {
    let ty = Type::new(dtype, &[n]);
    let before = stats().wide_tails;
    let wide = compile(&tanh_graph(ty.clone(), false), &opts(math)).expect("compile");
    assert!(
        stats().wide_tails > before,
        "a {dtype}[{n}] tanh root takes the helper"
    );
    let inline = compile(&tanh_graph(ty, true), &opts(math)).expect("compile");
    let x: Vec<u64> = bits.iter().cycle().take(n).copied().collect();
    let x = from_bits(dtype, &x);
    let (a, b) = (
        wide.call(std::slice::from_ref(&x)).expect("call"),
        inline.call(std::slice::from_ref(&x)).expect("call"),
    );
    assert!(
        same_bits(&a[0], &b[0]),
        "{dtype}[{n}]: the helper's tanh differs from the inline loop's"
    );
}

#[test]
fn helper_matches_the_inline_loop_on_special_values() {
    for dtype in [DType::F64, DType::F32] {
        let s = specials(dtype);
        // Lengths with and without a scalar tail in the inline loop.
        for n in [64, 67, 1031] {
            same_as_inline(dtype, n, &s, MathMode::Fast);
        }
    }
}

#[test]
fn helper_matches_the_inline_loop_over_the_whole_range() {
    for (dtype, seed) in [(DType::F64, 3), (DType::F32, 5)] {
        let bits = patterns(dtype, 1 << 15, seed);
        same_as_inline(dtype, 1 << 15, &bits, MathMode::Fast);
        same_as_inline(dtype, 1 << 15, &bits, MathMode::Auto);
    }
}

/// Above the pool's threshold the loop and the helper both run in blocks on the pool.
#[test]
fn helper_matches_the_inline_loop_on_the_pool() {
    for (dtype, seed) in [(DType::F64, 7), (DType::F32, 9)] {
        let bits = patterns(dtype, 1 << 12, seed);
        same_as_inline(dtype, (1 << 17) + 5, &bits, MathMode::Auto);
    }
}

/// Small and precise groups keep the inline or the library `tanh`: in Auto mode a
/// 1,000-element `tanh` is precise (the interpreter's bits).
#[test]
fn precise_tanh_is_not_taken_by_the_helper() {
    for dtype in [DType::F64, DType::F32] {
        let ty = Type::new(dtype, &[1000]);
        let g = tanh_graph(ty, false);
        let f = compile(&g, &opts(MathMode::Auto)).expect("compile");
        let bits = patterns(dtype, 1000, 11);
        let x = from_bits(dtype, &bits);
        let got = f.call(std::slice::from_ref(&x)).expect("call");
        let want = interp::eval(&g, &[x]).expect("interpreter");
        assert!(same_bits(&got[0], &want[0]), "{dtype}: precise tanh");
    }
}

/// A hidden layer `tanh(h + b)` with the bias broadcast along rows, as an MLP's forward pass
/// fuses it, taken by the helper that adds the bias and applies `tanh` in one pass (odd
/// widths, one column, two rows): its result equals the inline loop's bit for bit, and the
/// interpreter's within the fast `tanh`'s three ulps.
#[test]
fn hidden_layer_matches_inline_and_interpreter() {
    for dtype in [DType::F64, DType::F32] {
        for (rows, cols) in [(200, 32), (128, 256), (3, 37), (65, 1), (2, 33)] {
            let layer = |wrap: bool| {
                let f = move |xs: &[Tensor]| {
                    let t = (&xs[0] + xs[1].broadcast_in_dim(&[rows, cols], &[1])).tanh();
                    vec![if wrap { -(-t) } else { t }]
                };
                let types = [Type::new(dtype, &[rows, cols]), Type::new(dtype, &[cols])];
                (*trace(f, &types).expect("trace").graph().expect("graph")).clone()
            };
            let (g, w) = (layer(false), layer(true));
            let mut rng = Rng(rows as u64 * 31 + cols as u64);
            let args = [
                common::array(&mut rng, dtype, &[rows, cols], -6.0, 6.0, true),
                common::array(&mut rng, dtype, &[cols], -1.0, 1.0, true),
            ];
            let fast = opts(MathMode::Fast);
            let before = stats().bias_tails;
            let a = compile(&g, &fast)
                .expect("compile")
                .call(&args)
                .expect("call");
            assert!(
                stats().bias_tails > before,
                "{dtype}[{rows},{cols}]: one pass"
            );
            let b = compile(&w, &fast)
                .expect("compile")
                .call(&args)
                .expect("call");
            assert!(same_bits(&a[0], &b[0]), "{dtype}[{rows},{cols}] vs inline");
            let want = interp::eval(&g, &args).expect("interpreter");
            let ulp = if dtype == DType::F64 {
                f64::EPSILON
            } else {
                f32::EPSILON as f64
            };
            assert!(
                close(&a[0], &want[0], 3.0 * ulp),
                "{dtype}[{rows},{cols}] vs interpreter"
            );
        }
    }
}

/// A `tanh` root over operands read in place through remaps (a transpose, a pad whose guard
/// yields the pad value, a strided slice, and a product computed at the padded index): the
/// loop stores the operand at every index, and the helper's result equals the inline loop's
/// bit for bit and the interpreter's within three ulps.
#[test]
fn remapped_operands_match_inline() {
    type Layer = fn(&Tensor, &Tensor) -> Tensor;
    let cases: [Layer; 3] = [
        |x, _| x.transpose(&[1, 0]),
        |x, y| (x * y).pad(&[1, 2], &[3, 0], &[0, 0], 0.5),
        |x, _| x.slice(&[0, 1], &[17, 24], &[2, 1]),
    ];
    for dtype in [DType::F64, DType::F32] {
        for (k, case) in cases.iter().enumerate() {
            let case = *case;
            let build = |wrap: bool| {
                let f = move |xs: &[Tensor]| {
                    let t = case(&xs[0], &xs[1]).tanh();
                    vec![if wrap { -(-t) } else { t }]
                };
                let types = [Type::new(dtype, &[17, 24]), Type::new(dtype, &[17, 24])];
                (*trace(f, &types).expect("trace").graph().expect("graph")).clone()
            };
            let mut rng = Rng(k as u64 + 100);
            let args = [
                common::array(&mut rng, dtype, &[17, 24], -6.0, 6.0, true),
                common::array(&mut rng, dtype, &[17, 24], -2.0, 2.0, true),
            ];
            let fast = opts(MathMode::Fast);
            let before = stats().wide_tails;
            let g = build(false);
            let a = compile(&g, &fast).expect("compile");
            assert!(stats().wide_tails > before, "case {k} takes the helper");
            let b = compile(&build(true), &fast).expect("compile");
            let (a, b) = (a.call(&args).expect("call"), b.call(&args).expect("call"));
            assert!(same_bits(&a[0], &b[0]), "{dtype} case {k}");
            let want = interp::eval(&g, &args).expect("interpreter");
            let ulp = if dtype == DType::F64 {
                f64::EPSILON
            } else {
                f32::EPSILON as f64
            };
            assert!(
                close(&a[0], &want[0], 3.0 * ulp),
                "{dtype} case {k} vs interpreter"
            );
        }
    }
}

/// A dense layer `tanh(x·W + b)` whose product's buffer the one-pass helper reads (and, when
/// the plan reuses it, writes over), with the bias on either side of the sum, against the
/// inline loop bit for bit, also when a further product reads the activations (which then
/// live in the workspace, where the plan may put them over the product's buffer); a bias
/// that is not broadcast along the rows, a single row and empty rows keep the loop.
#[test]
fn dense_layers_take_the_one_pass_helper() {
    for dtype in [DType::F64, DType::F32] {
        let shapes = [(200, 2, 32, false), (50, 7, 9, true), (64, 3, 1, false)];
        for ((m, k, n, bias_first), next) in
            shapes.into_iter().flat_map(|s| [(s, false), (s, true)])
        {
            let layer = |wrap: bool| {
                let f = move |xs: &[Tensor]| {
                    let h = xs[0].matmul(&xs[1]);
                    let b = xs[2].broadcast_in_dim(&[m, n], &[1]);
                    let z = if bias_first { b + h } else { h + b };
                    let t = z.tanh();
                    let t = if wrap { -(-t) } else { t };
                    vec![if next {
                        t.matmul(&xs[1].transpose(&[1, 0]))
                    } else {
                        t
                    }]
                };
                let types = [
                    Type::new(dtype, &[m, k]),
                    Type::new(dtype, &[k, n]),
                    Type::new(dtype, &[n]),
                ];
                (*trace(f, &types).expect("trace").graph().expect("graph")).clone()
            };
            let mut rng = Rng(m as u64 + 7 * n as u64);
            let args = [
                common::array(&mut rng, dtype, &[m, k], -2.0, 2.0, true),
                common::array(&mut rng, dtype, &[k, n], -2.0, 2.0, false),
                common::array(&mut rng, dtype, &[n], -1.0, 1.0, true),
            ];
            let fast = opts(MathMode::Fast);
            let before = stats().bias_tails;
            let a = compile(&layer(false), &fast).expect("compile");
            assert!(stats().bias_tails > before, "{dtype} {m}×{k}×{n}: one pass");
            let b = compile(&layer(true), &fast).expect("compile");
            let (a, b) = (a.call(&args).expect("call"), b.call(&args).expect("call"));
            assert!(same_bits(&a[0], &b[0]), "{dtype} {m}×{k}×{n} vs inline");
        }
    }
    // Not a row bias (broadcast along the columns), one row, no rows: the loop serves.
    for (rows, cols, along) in [(40, 30, 0), (1, 100, 1), (0, 100, 1)] {
        let f = move |xs: &[Tensor]| {
            let len = if along == 1 { cols } else { rows };
            let b = xs[1]
                .reshape(&[len])
                .broadcast_in_dim(&[rows, cols], &[along]);
            vec![(&xs[0] + b).tanh()]
        };
        let len = if along == 1 { cols } else { rows };
        let types = [
            Type::new(DType::F64, &[rows, cols]),
            Type::new(DType::F64, &[len]),
        ];
        let g = (*trace(f, &types).expect("trace").graph().expect("graph")).clone();
        let mut rng = Rng(3);
        let args = [
            common::array(&mut rng, DType::F64, &[rows, cols], -3.0, 3.0, true),
            common::array(&mut rng, DType::F64, &[len], -1.0, 1.0, false),
        ];
        let got = compile(&g, &opts(MathMode::Fast))
            .expect("compile")
            .call(&args)
            .expect("call");
        let want = interp::eval(&g, &args).expect("interpreter");
        assert!(close(&got[0], &want[0], 3.0 * f64::EPSILON));
    }
}

/// How a `tanh` layer's backward test case computes `(1 − t²)·g`.
#[derive(Clone, Copy, Debug)]
struct Back {
    /// `square(t)` (else `t·t`).
    square: bool,
    /// `(1 − t²)·g` (else `g·(1 − t²)`).
    d_first: bool,
    /// Where `g` comes from: 0 a parameter, 1 a product `a·B` computed in the workspace (the
    /// result may be written over it), 2 `t` itself.
    g_from: u8,
    /// The leading axes summed (the bias gradient), if any.
    sum: Option<usize>,
}

/// `[(1 − t²)·g]` plus its sum over the leading `sum` axes when asked, over `dims`; `wrap`
/// reads `g` as `−(−g)`, which keeps the group in the inline loop (the negations are members
/// the helper does not take) with the same values.
fn back_graph(dtype: DType, dims: &[usize], c: Back, wrap: bool) -> Graph {
    let dims = dims.to_vec();
    let shape = dims.clone();
    let f = move |xs: &[Tensor]| {
        let t = &xs[0];
        let g = match c.g_from {
            0 => xs[1].clone(),
            1 => xs[1].matmul(&xs[2]),
            _ => t.clone(),
        };
        let g = if wrap { -(-g) } else { g };
        let one = Tensor::full_dtype(dtype, &[], 1.0).broadcast_in_dim(&dims, &[]);
        let sq = if c.square { t.square() } else { t * t };
        let d = one - sq;
        let p = if c.d_first { d * g } else { g * d };
        let mut outs = vec![p.clone()];
        if let Some(k) = c.sum {
            outs.push(p.sum(&(0..k).collect::<Vec<_>>()));
        }
        outs
    };
    let mut types = vec![Type::new(dtype, &shape)];
    if c.g_from == 0 {
        types.push(Type::new(dtype, &shape));
    } else if c.g_from == 1 {
        let (m, n) = (shape[0], shape[1]);
        types.push(Type::new(dtype, &[m, 3]));
        types.push(Type::new(dtype, &[3, n]));
    }
    (*trace(f, &types).expect("trace").graph().expect("graph")).clone()
}

/// A `tanh` layer's backward group `(1 − t²)·g`, stored alone or with its column sums (the
/// bias gradient, also over two leading axes), with `square(t)` or `t·t`, the product in
/// either order, `g` a parameter, a product in the workspace (which the result may overwrite)
/// or `t` itself, is taken by the helper and equals the inline loop bit for bit over f64 and
/// f32, one row, odd widths, one column, whole blocks of columns with and without the
/// columns after them and more rows than a block, and zeros of both signs, infinities and
/// NaNs.
#[test]
fn tanh_backward_groups_take_the_helper() {
    let shapes: [(&[usize], usize); 6] = [
        (&[200, 32], 1),
        (&[70, 139], 1),
        (&[1, 97], 1),
        (&[13, 7], 1),
        (&[64, 1], 1),
        (&[4, 5, 9], 2),
    ];
    for dtype in [DType::F64, DType::F32] {
        for (s, &(dims, lead)) in shapes.iter().enumerate() {
            for k in 0..8u8 {
                let g_from = if dims.len() == 2 { k % 3 } else { k % 2 * 2 };
                let c = Back {
                    square: k & 1 == 0,
                    d_first: k & 2 == 0,
                    g_from,
                    sum: (k & 4 == 0).then_some(lead),
                };
                let mut rng = Rng(s as u64 * 8 + k as u64 + 1);
                let mut args = vec![common::array(&mut rng, dtype, dims, -3.0, 3.0, true)];
                if g_from == 0 {
                    args.push(common::array(&mut rng, dtype, dims, -2.0, 2.0, true));
                } else if g_from == 1 {
                    let (m, n) = (dims[0], dims[1]);
                    args.push(common::array(&mut rng, dtype, &[m, 3], -2.0, 2.0, true));
                    args.push(common::array(&mut rng, dtype, &[3, n], -2.0, 2.0, false));
                }
                let fast = opts(MathMode::Fast);
                let before = stats().tanh_backs;
                let a = compile(&back_graph(dtype, dims, c, false), &fast).expect("compile");
                assert!(stats().tanh_backs > before, "{dtype}{dims:?} {c:?}: helper");
                let b = compile(&back_graph(dtype, dims, c, true), &fast).expect("compile");
                let (a, b) = (a.call(&args).expect("call"), b.call(&args).expect("call"));
                for (x, y) in a.iter().zip(&b) {
                    assert!(same_bits(x, y), "{dtype}{dims:?} {c:?} vs inline");
                }
            }
        }
    }
}

/// Groups that are not exactly a `tanh` layer's backward product keep the loop: `(2 − t²)·g`,
/// a sum over the last axis, and fewer elements than the helper's minimum.
#[test]
fn other_backward_shapes_keep_the_loop() {
    type Case = fn(&Tensor, &Tensor) -> Vec<Tensor>;
    let cases: [(Case, &[usize]); 3] = [
        (
            |t, g| {
                let two = Tensor::full(&[], 2.0).broadcast_in_dim(&[20, 8], &[]);
                let p = (two - t.square()) * g;
                vec![p.clone(), p.sum(&[0])]
            },
            &[20, 8],
        ),
        (
            |t, g| {
                let one = Tensor::full(&[], 1.0).broadcast_in_dim(&[20, 8], &[]);
                let p = (one - t.square()) * g;
                vec![p.clone(), p.sum(&[1])]
            },
            &[20, 8],
        ),
        (
            |t, g| {
                let one = Tensor::full(&[], 1.0).broadcast_in_dim(&[5, 8], &[]);
                vec![(one - t.square()) * g]
            },
            &[5, 8],
        ),
    ];
    for (k, &(case, dims)) in cases.iter().enumerate() {
        let f = move |xs: &[Tensor]| case(&xs[0], &xs[1]);
        let types = [Type::new(DType::F64, dims), Type::new(DType::F64, dims)];
        let g = (*trace(f, &types).expect("trace").graph().expect("graph")).clone();
        let mut rng = Rng(k as u64 + 40);
        let args = [
            common::array(&mut rng, DType::F64, dims, -3.0, 3.0, false),
            common::array(&mut rng, DType::F64, dims, -2.0, 2.0, false),
        ];
        let before = stats().tanh_backs;
        let got = compile(&g, &opts(MathMode::Fast))
            .expect("compile")
            .call(&args)
            .expect("call");
        assert_eq!(stats().tanh_backs, before, "case {k} keeps the loop");
        let want = interp::eval(&g, &args).expect("interpreter");
        for (x, y) in got.iter().zip(&want) {
            assert!(close(x, y, 4.0 * f64::EPSILON), "case {k}");
        }
    }
}
