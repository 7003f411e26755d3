//! Runtime behaviour: the scalar entry and typed callables, argument validation, concurrent
//! calls, the compile cache, and freeing code when functions are dropped.

mod common;

use ferrax_ir::ops::{BinaryOp, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Dims, ErrorKind, Graph, Op, Shape, Type};
use ferrax_jit::{compile, compile_cached, stats, JitOptions, MathMode};

/// sin(x)·exp(y)/log(z) over scalars of `dt`.
fn sel(dt: DType) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(dt));
    let y = b.param(Type::scalar(dt));
    let z = b.param(Type::scalar(dt));
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let e = b.push1(Op::Unary(UnaryOp::Exp), &[y]).unwrap();
    let l = b.push1(Op::Unary(UnaryOp::Log), &[z]).unwrap();
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[s, e]).unwrap();
    let r = b.push1(Op::Binary(BinaryOp::Div), &[m, l]).unwrap();
    b.finish(&[r])
}

/// x ↦ (sum(x·w), x·w) for x, w of shape [n].
fn tensor_graph(n: usize) -> Graph {
    let mut b = Builder::new();
    let x = b.param(Type::new(DType::F64, &[n]));
    let w = b.param(Type::new(DType::F64, &[n]));
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[x, w]).unwrap();
    let s = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: Dims::from_slice(&[0]),
            }),
            &[m],
        )
        .unwrap();
    b.finish(&[s, m])
}

#[test]
fn scalar_entry_matches_std() {
    let f = compile(&sel(DType::F64), &JitOptions::default()).unwrap();
    assert!(f.has_scalar_entry());
    let want = 1f64.sin() * 2f64.exp() / 3f64.ln();
    let g = f.as_fn3::<f64>().unwrap();
    assert_eq!(g.call(1.0, 2.0, 3.0).to_bits(), want.to_bits());
    let mut out = [0.0];
    f.call_scalar(&[1.0, 2.0, 3.0], &mut out).unwrap();
    assert_eq!(out[0].to_bits(), want.to_bits());
    let r = f.call(&[1.0.into(), 2.0.into(), 3.0.into()]).unwrap();
    assert_eq!(f64::try_from(&r[0]).unwrap().to_bits(), want.to_bits());
    // f32 graphs get f32 callables.
    let f32fn = compile(&sel(DType::F32), &JitOptions::default()).unwrap();
    let h = f32fn.as_fn3::<f32>().unwrap();
    assert_eq!(h.call(1.0, 2.0, 3.0), 1f32.sin() * 2f32.exp() / 3f32.ln());
    assert_eq!(f32fn.as_fn3::<f64>().unwrap_err().kind, ErrorKind::DType);
    assert_eq!(f.as_fn2::<f64>().unwrap_err().kind, ErrorKind::Arity);
}

#[test]
fn scalar_entry_multiple_outputs_and_intermediate_tensors() {
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let y = b.param(Type::scalar(DType::F64));
    let v = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[3]),
                dims: Box::default(),
            }),
            &[x],
        )
        .unwrap();
    let s = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: Dims::from_slice(&[0]),
            }),
            &[v],
        )
        .unwrap();
    let p = b.push1(Op::Binary(BinaryOp::Mul), &[s, y]).unwrap();
    let g = b.finish(&[s, p, x]);
    let f = compile(&g, &JitOptions::default()).unwrap();
    let h = f.as_fn2_n::<f64, 3>().unwrap();
    assert_eq!(h.call_multi(2.0, 5.0), [6.0, 30.0, 2.0]);
    let mut out = [0.0; 3];
    f.call_scalar(&[2.0, 5.0], &mut out).unwrap();
    assert_eq!(out, [6.0, 30.0, 2.0]);
    common::check(&g, &[2.0.into(), 5.0.into()]);
}

#[test]
fn arguments_are_validated() {
    let f = compile(&tensor_graph(3), &JitOptions::default()).unwrap();
    let x = Array::from(vec![1.0, 2.0, 3.0]);
    let e = f.call(std::slice::from_ref(&x)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    let e = f
        .call(&[x.clone(), Array::from(vec![1.0f32, 2.0, 3.0])])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message.contains("argument 1")
            && e.message.contains("f64[3]")
            && e.message.contains("f32[3]"),
        "{}",
        e.message
    );
    let e = f
        .call(&[x.clone(), Array::from(vec![1.0, 2.0])])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    // A buffer whose length no longer matches its shape cannot be made: `data_mut` hands out
    // slices, whose length is fixed.
    let mut bad = x.clone();
    assert_eq!(bad.data_mut().len(), 3);
    // Outputs are checked too.
    let mut outs = vec![Array::scalar(DType::F64, 0.0)];
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::Arity
    );
    let mut outs = vec![Array::scalar(DType::F64, 0.0), Array::from(vec![0.0; 4])];
    assert_eq!(
        f.call_into(&[&x, &x], &mut outs).unwrap_err().kind,
        ErrorKind::Shape
    );
    let mut outs = vec![Array::scalar(DType::F64, 0.0), Array::from(vec![0.0; 3])];
    f.call_into(&[&x, &x], &mut outs).unwrap();
    assert_eq!(outs[0], Array::scalar(DType::F64, 14.0));
    // Scalar entry points refuse tensor graphs.
    assert_eq!(
        f.call_scalar(&[1.0, 2.0], &mut [0.0, 0.0])
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
    assert!(f.as_fn2::<f64>().is_err());
}

#[test]
fn eight_threads_share_one_function() {
    let n = 1000;
    let f = compile(&tensor_graph(n), &JitOptions::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let f = f.clone();
            s.spawn(move || {
                let x = Array::from((0..n).map(|i| (i + t) as f64).collect::<Vec<_>>());
                let w = Array::from(vec![2.0; n]);
                let want: f64 = (0..n).map(|i| 2.0 * (i + t) as f64).sum();
                let mut outs = vec![Array::scalar(DType::F64, 0.0), Array::from(vec![0.0; n])];
                for _ in 0..200 {
                    f.call_into(&[&x, &w], &mut outs).unwrap();
                    assert_eq!(f64::try_from(&outs[0]).unwrap(), want);
                }
            });
        }
    });
}

#[test]
fn cache_compiles_once() {
    let opts = JitOptions::default();
    let g1 = tensor_graph(7);
    let g2 = tensor_graph(7);
    let a = compile_cached(&g1, &opts).unwrap();
    let before = stats();
    let b = compile_cached(&g2, &opts).unwrap();
    let after = stats();
    assert!(after.cache_hits > before.cache_hits);
    assert!(a.same_code(&b));
    // Other options compile anew.
    let c = compile_cached(
        &g1,
        &JitOptions {
            optimize: false,
            ..opts
        },
    )
    .unwrap();
    assert!(!c.options().optimize && !c.same_code(&a));
}

fn resident_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}

/// Held by tests whose allocations would show in [`compiling_and_dropping_frees_code`]'s
/// measure of the process's resident memory, so that they do not run beside it.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn compiling_and_dropping_frees_code() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let opts = JitOptions::default();
    let graphs: Vec<Graph> = (0..20)
        .map(|k| {
            let mut b = Builder::new();
            let x = b.param(Type::scalar(DType::F64));
            let c = b.constant(Array::scalar(DType::F64, k as f64));
            let y = b.push1(Op::Binary(BinaryOp::Add), &[x, c]).unwrap();
            let z = b.push1(Op::Unary(UnaryOp::Sin), &[y]).unwrap();
            b.finish(&[z])
        })
        .collect();
    // Warm up, then measure.
    for g in &graphs {
        drop(compile(g, &opts).unwrap());
    }
    let start = resident_bytes();
    for i in 0..10_000 {
        let f = compile(&graphs[i % graphs.len()], &opts).unwrap();
        let mut out = [0.0];
        f.call_scalar(&[1.0], &mut out).unwrap();
        assert_eq!(out[0], (1.0 + (i % graphs.len()) as f64).sin());
    }
    let grown = resident_bytes().saturating_sub(start);
    assert!(
        grown < 50 << 20,
        "resident memory grew by {} MB",
        grown >> 20
    );
}

#[test]
fn scalar_entry_with_stack_workspace() {
    // An intermediate of 24 KB (read by two reductions, so it is stored) lives on the scalar
    // entry's stack (with stack probes).
    let mut b = Builder::new();
    let x = b.param(Type::scalar(DType::F64));
    let shape = Shape::new(&[3000]);
    let v = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape,
                dims: Box::default(),
            }),
            &[x],
        )
        .unwrap();
    let w = b.push1(Op::Unary(UnaryOp::Sin), &[v]).unwrap();
    let axes = Dims::from_slice(&[0]);
    let s = b
        .push1(Op::Reduce(ReduceOp::Sum { axes: axes.clone() }), &[w])
        .unwrap();
    let m = b.push1(Op::Reduce(ReduceOp::Max { axes }), &[w]).unwrap();
    let t = b.push1(Op::Binary(BinaryOp::Add), &[s, m]).unwrap();
    let g = b.finish(&[t]);
    // Precise: the sum runs in the interpreter's order (no reassociation).
    let opts = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let f = compile(&g, &opts).unwrap();
    assert!(f.has_scalar_entry());
    let h = f.as_fn1::<f64>().unwrap();
    let want = (0..3000).fold(0.0, |acc, _| acc + 0.5f64.sin()) + 0.5f64.sin();
    assert_eq!(h.call(0.5), want);
    // The default (Auto) sums 3000 elements with vector accumulators: close, not bit-equal.
    common::check_with(&g, &[0.5.into()], Some(1e-12));
}

/// The outputs of `shapes_and_more` for an `x` of `dtype[rows, cols]` (at least 4 × 3) and a
/// scalar `y`: outputs the
/// code writes whole (a concatenation of 20 one-element pieces as a jet's series, one of two
/// slices, a pad with interior padding, a strided slice, a rev, a broadcast, a transpose, a
/// reshape, a scalar, the parameter passed through, an output repeated) and outputs it may
/// not (a scatter-add into zeros, a product).
fn shapes_and_more(dtype: DType, rows: usize, cols: usize) -> Graph {
    let tys = [Type::new(dtype, &[rows, cols]), Type::scalar(dtype)];
    let float = dtype != DType::I32;
    ferrax_ir::tracer::trace_with(&tys, |xs| {
        let (x, y) = (&xs[0], &xs[1]);
        let pieces: Vec<ferrax_ir::Tensor> =
            (0..20).map(|k| (y * y + k as f64).reshape(&[1])).collect();
        let a = x.slice(&[0, 0], &[rows, 2], &[1, 1]);
        let b = x.slice(&[0, 1], &[rows, cols], &[1, 1]);
        let p = x.pad(&[1, 0], &[0, 2], &[1, 1], 7.0);
        let idx = ferrax_ir::Tensor::constant(Array::from_i32([3], vec![2, 0, 2]).unwrap());
        let mut outs = vec![
            ferrax_ir::concatenate(&pieces, 0),
            ferrax_ir::concatenate(&[a, b * 2.0], 1),
            p.clone(),
            x.slice(&[1, 0], &[rows, cols], &[2, 2]),
            x.slice(&[1, 1], &[rows, cols], &[1, 1]),
            x.rev(&[0, 1]),
            x.rev(&[1]),
            y.broadcast_to(&[2, 5]),
            x.slice(&[0, 0], &[1, cols], &[1, 1])
                .reshape(&[cols])
                .broadcast_in_dim(&[3, cols], &[1]),
            x.slice(&[0, 0], &[rows, 1], &[1, 1])
                .reshape(&[rows])
                .broadcast_in_dim(&[rows, 11], &[0]),
            x.transpose(&[1, 0]),
            (x + 1.0).reshape(&[cols, rows]),
            y * 3.0,
            x.clone(),
            p,
            x.zeros_like()
                .scatter_add(&idx, &x.slice(&[0, 0], &[3, cols], &[1, 1])),
        ];
        // A product large enough for the GEMM sums in another order than the interpreter.
        if float && rows * cols <= 12 {
            outs.push(x.matmul(&x.transpose(&[1, 0])));
        }
        outs
    })
    .expect("traces")
    .graph
}

/// Outputs a call allocates are left unfilled only where the code writes every element:
/// before each call the memory its outputs will take is dirtied (buffers of their sizes
/// filled with a pattern, then freed, which the allocator hands out again), and every output
/// must still equal the interpreter's bit for bit. An output left unfilled but only partly
/// written would show the pattern. The larger shapes give rows of 8 elements and more, which
/// shape ops copy eight at a time with a remainder (in both directions for the transposes
/// and the reversals, and from a stride-0 read for the broadcasts), and the widest a
/// transpose copied in tiles of eight rows with rows left over.
#[test]
fn fresh_outputs_over_dirty_memory_match_the_interpreter() {
    let mut rng = common::Rng(5);
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let shapes = [(4, 3), (5, 19), (9, 8), (10, 70)];
    for (dtype, (rows, cols)) in [DType::F64, DType::F32, DType::I32]
        .into_iter()
        .flat_map(|d| shapes.map(|s| (d, s)))
    {
        let g = shapes_and_more(dtype, rows, cols);
        let f = compile(&g, &JitOptions::default()).unwrap();
        for _ in 0..3 {
            let args = [
                common::array(&mut rng, dtype, &[rows, cols], -3.0, 3.0, false),
                common::array(&mut rng, dtype, &[], -3.0, 3.0, false),
            ];
            let want = ferrax_ir::interp::eval(&g, &args).unwrap();
            let mut dirty: Vec<Vec<u8>> = f
                .output_types()
                .iter()
                .map(|t| vec![0xA5u8; t.size() * t.dtype.size_bytes()])
                .collect();
            // Freed last first, so that the first output's buffer is the first handed out.
            while let Some(d) = dirty.pop() {
                drop(d);
            }
            let got = f.call(&args).unwrap();
            for (k, (w, o)) in want.iter().zip(&got).enumerate() {
                assert!(common::same_bits(w, o), "{dtype} output {k}: {w} vs {o}");
            }
            common::check(&g, &args);
        }
    }
}
