//! Prints the graphs of the anchor workloads P1, P2, P3, P4 and P5 (small sizes) and the per-call
//! time of each through the JIT: a quick look at what the JIT is given, without criterion.
//! Run with `cargo run --release -p ferrax-jit --example anchor_graphs`.

use ferrax_ir::{Array, DType, Tensor, Type};
use ferrax_jit::{compile, JitOptions, MathMode};
use ferrax_transforms::api::{grad, hessian, value_and_grad};
use std::time::Instant;

fn main() -> ferrax_ir::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_default();
    let p3 = |x: Tensor| (x.sin().square() * (-(x.square())).exp() + x.square().log1p()).sum_all();
    if which == "p3" || which.is_empty() {
        let g = grad(p3).specialize(&[Type::new(DType::F32, &[8])])?.graph;
        println!("P3:\n{}", g.to_text());
    }
    if which == "p3t" || which == "p3t64" {
        // P3 at full size (1M elements, f32 or f64): the per-call time, both cores.
        let dt = if which == "p3t" {
            DType::F32
        } else {
            DType::F64
        };
        let n = 1usize << 20;
        let g = grad(p3).specialize(&[Type::new(dt, &[n])])?.graph;
        let c = compile(&g, &JitOptions::default())?;
        let xs: Vec<f64> = (0..n).map(|i| (i as f64 / 65536.0) - 8.0).collect();
        let x = Array::from(xs).cast(dt);
        let mut out: Vec<Array> = c
            .output_types()
            .iter()
            .map(|t| Array::zeros(t).unwrap())
            .collect();
        let ns = median_ns(20, 15, || c.call_into(&[&x], &mut out).unwrap());
        println!("P3-{dt}: {:.3} ms", ns / 1e6);
    }
    if which == "p1" {
        let f = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
        let g = grad(f)
            .wrt((0, 1, 2))
            .specialize(&vec![Type::scalar(DType::F64); 3])?
            .graph;
        println!("P1:\n{}", g.to_text());
        let c = compile(&g, &JitOptions::default())?;
        let f = c.as_fn3_n::<f64, 3>()?;
        #[inline(never)]
        fn hand(x: f64, y: f64, z: f64) -> [f64; 3] {
            let (s, c) = x.sin_cos();
            let e = y.exp();
            let l = z.ln();
            [c * e / l, s * e / l, -s * e / (l * l * z)]
        }
        // Interleaved repetitions, so both sides see the same machine load.
        let (mut ts, mut hs) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            ts.push(median_ns(1_000_000, 1, || {
                let r = f.call_multi(
                    std::hint::black_box(1.0),
                    std::hint::black_box(2.0),
                    std::hint::black_box(3.0),
                );
                std::hint::black_box(r);
            }));
            hs.push(median_ns(1_000_000, 1, || {
                std::hint::black_box(hand(
                    std::hint::black_box(1.0),
                    std::hint::black_box(2.0),
                    std::hint::black_box(3.0),
                ));
            }));
        }
        ts.sort_by(f64::total_cmp);
        hs.sort_by(f64::total_cmp);
        let (ns, hs) = (ts[7], hs[7]);
        println!("P1: {ns:.2} ns, hand {hs:.2} ns, ratio {:.3}", ns / hs);
    }
    if which == "p2" {
        let g = grad(grad(grad(grad(|x: Tensor| x.tanh()))))
            .specialize(&[Type::scalar(DType::F64)])?
            .graph;
        println!("P2:\n{}", g.to_text());
    }
    if which == "p5" {
        let mlp = |w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor| {
            let h = x.matmul(&w1).add(&b1).tanh();
            (h.matmul(&w2).add(&b2) - y).square().mean_all()
        };
        let tys = [
            Type::new(DType::F32, &[784, 256]),
            Type::new(DType::F32, &[256]),
            Type::new(DType::F32, &[256, 10]),
            Type::new(DType::F32, &[10]),
            Type::new(DType::F32, &[256, 784]),
            Type::new(DType::F32, &[256, 10]),
        ];
        let g = value_and_grad(mlp)
            .wrt((0, 1, 2, 3))
            .specialize(&tys)?
            .graph;
        println!("P5:\n{}", g.to_text());
        let c = compile(&g, &JitOptions::default())?;
        let mut rng = 1u64;
        let args: Vec<Array> = tys
            .iter()
            .map(|t| {
                let n = t.size();
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
                    })
                    .collect();
                Array::from_f32(t.dims(), v).unwrap()
            })
            .collect();
        let refs: Vec<&Array> = args.iter().collect();
        let mut out: Vec<Array> = c
            .output_types()
            .iter()
            .map(|t| Array::zeros(t).unwrap())
            .collect();
        let ns = median_ns(20, 9, || c.call_into(&refs, &mut out).unwrap());
        println!("P5: {:.3} ms", ns / 1e6);
    }
    if which == "p5e" {
        // P5's elementwise groups alone: tanh(a + b) and its backward product with a row sum.
        let fwd = |a: Tensor, b: Tensor| a.add(&b).tanh();
        let bwd = |h: Tensor, d: Tensor| {
            let z = (h.square().neg() + 1.0) * d;
            (z.clone(), z.sum(&[0]))
        };
        let m = Type::new(DType::F32, &[256, 256]);
        let gf = ferrax_ir::function(fwd)
            .specialize(&[m.clone(), Type::new(DType::F32, &[256])])?
            .graph;
        let gb = ferrax_ir::function(bwd)
            .specialize(&[m.clone(), m.clone()])?
            .graph;
        let gm = ferrax_ir::function(|h: Tensor, d: Tensor| (h.square().neg() + 1.0) * d)
            .specialize(&[m.clone(), m.clone()])?
            .graph;
        let gs = ferrax_ir::function(|z: Tensor| z.sum(&[0]))
            .specialize(std::slice::from_ref(&m))?
            .graph;
        let gs1 = ferrax_ir::function(|z: Tensor| z.sum(&[1]))
            .specialize(std::slice::from_ref(&m))?
            .graph;
        for (name, g) in [
            ("tanh(a + b)", gf),
            ("(1 - h²)·d, row sum", gb),
            ("(1 - h²)·d", gm),
            ("sum over axis 0", gs),
            ("sum over axis 1", gs1),
        ] {
            let c = compile(&g, &JitOptions::default())?;
            let args: Vec<Array> = g
                .params()
                .iter()
                .map(|&p| Array::zeros(g.ty(p)).unwrap())
                .collect();
            let refs: Vec<&Array> = args.iter().collect();
            let mut out: Vec<Array> = c
                .output_types()
                .iter()
                .map(|t| Array::zeros(t).unwrap())
                .collect();
            let ns = median_ns(200, 9, || c.call_into(&refs, &mut out).unwrap());
            println!("{name}: {:.1} µs", ns / 1e3);
        }
    }
    if which == "overhead" {
        let g = grad(|x: Tensor| (x.clone() * x).sum_all())
            .specialize(&[Type::new(DType::F64, &[100])])?
            .graph;
        let c = compile(&g, &JitOptions::default())?;
        let x = Array::from(vec![1.0; 100]);
        let mut out = vec![Array::zeros(&Type::new(DType::F64, &[100])).unwrap()];
        let ns = median_ns(100_000, 9, || c.call_into(&[&x], &mut out).unwrap());
        println!("call_into of a 100-element grad: {ns:.0} ns");
    }
    if which == "p4" {
        p4()?;
    }
    if which == "time" {
        time_all()?;
    }
    Ok(())
}

/// Median time per call of `f` in nanoseconds over `reps` batches of `iters` calls.
fn median_ns(iters: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[reps / 2]
}

fn time_all() -> ferrax_ir::Result<()> {
    let p3 = |x: Tensor| (x.sin().square() * (-(x.square())).exp() + x.square().log1p()).sum_all();
    for math in [MathMode::Precise, MathMode::Fast] {
        let opts = JitOptions {
            math,
            ..JitOptions::default()
        };
        for dt in [DType::F32, DType::F64] {
            let n = 1_000_000;
            let g = grad(p3).specialize(&[Type::new(dt, &[n])])?.graph;
            let c = compile(&g, &opts)?;
            let xs: Vec<f64> = (0..n).map(|i| -3.0 + 6.0 * i as f64 / n as f64).collect();
            let x = Array::from(xs).cast(dt);
            let mut out = vec![Array::zeros(&c.output_types()[0]).unwrap()];
            let ns = median_ns(5, 9, || c.call_into(&[&x], &mut out).unwrap());
            println!(
                "P3 {dt} {math:?}: {:.3} ms (compile {:?})",
                ns / 1e6,
                c.compile_time()
            );
        }
        let f = |x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln();
        let g = grad(f)
            .wrt((0, 1, 2))
            .specialize(&vec![Type::scalar(DType::F64); 3])?
            .graph;
        let c = compile(&g, &opts)?;
        let h = c.as_fn3_n::<f64, 3>()?;
        let ns = median_ns(1_000_000, 9, || {
            std::hint::black_box(h.call_multi(std::hint::black_box(1.0), 2.0, 3.0));
        });
        println!("P1 {math:?}: {ns:.2} ns {:?}", h.call_multi(1.0, 2.0, 3.0));
        let g = grad(grad(grad(grad(|x: Tensor| x.tanh()))))
            .specialize(&[Type::scalar(DType::F64)])?
            .graph;
        let c = compile(&g, &opts)?;
        let h = c.as_fn1::<f64>()?;
        let ns = median_ns(1_000_000, 9, || {
            std::hint::black_box(h.call(std::hint::black_box(0.5)));
        });
        println!("P2 {math:?}: {ns:.2} ns {}", h.call(0.5));
    }
    Ok(())
}

/// Times the P4 Hessian (n = 100) and checks it against the interpreter bit for bit.
fn p4() -> ferrax_ir::Result<()> {
    let rosen = |x: Tensor| {
        let n = x.shape()[0];
        let head = x.slice_axis(0, 0, n - 1);
        let tail = x.slice_axis(0, 1, n);
        (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
    };
    let g = hessian(rosen)
        .specialize(&[Type::new(DType::F64, &[100])])?
        .graph;
    println!("P4:\n{}", g.to_text());
    let c = compile(&g, &JitOptions::default())?;
    let x = Array::from(
        (0..100)
            .map(|i| -1.2 + 2.4 * i as f64 / 99.0)
            .collect::<Vec<f64>>(),
    );
    let mut out = vec![Array::zeros(&Type::new(DType::F64, &[100, 100])).unwrap()];
    let ns = median_ns(20_000, 9, || c.call_into(&[&x], &mut out).unwrap());
    let want = ferrax_ir::interp::eval(&g, std::slice::from_ref(&x))?;
    let same = want[0]
        .to_f64_vec()
        .iter()
        .zip(out[0].to_f64_vec())
        .all(|(a, b)| a.to_bits() == b.to_bits());
    println!("P4: {ns:.0} ns, bit-identical to the interpreter: {same}");
    Ok(())
}
