//! Outputs written into an argument's buffer (`Compiled::in_place_outputs`,
//! `Compiled::call_in_place`). Every graph here runs with each argument that some output may
//! take given up to that output, and its outputs must equal the interpreter's bit for bit in
//! Precise mode, and the same compiled code's `call_into` (distinct buffers) bit for bit in
//! the default mode: in f32 and f64, on the parallel path, odd row lengths, a column, empty
//! tensors, and inputs with ±0, ±∞ and NaN. The analysis is checked to find the updates of an
//! Adam step and to refuse an argument that is read after its loop, read at another index (a
//! transpose, a broadcast), returned as an output itself, or reshaped.

mod common;

use common::{adam, adam_args, adam_types, array, close, same_bits, Rng};
use ferrax_ir::{interp, trace, Array, DType, Graph, Tensor, Type};
use ferrax_jit::{compile, Compiled, JitOptions, MathMode};

/// Traces `f` over parameters of `types` into a graph.
fn graph(f: impl Fn(&[Tensor]) -> Vec<Tensor> + Send + Sync + 'static, types: &[Type]) -> Graph {
    (*trace(f, types).expect("trace").graph().expect("graph")).clone()
}

/// Runs `f` on `args` with every argument that an output may take given up to it.
fn run_in_place(f: &Compiled, args: &[Array]) -> Vec<Array> {
    let plan = f.in_place_outputs();
    let mut outs: Vec<Array> = f
        .output_types()
        .iter()
        .enumerate()
        .map(|(k, t)| match plan[k] {
            Some(j) => args[j].clone(),
            None => Array::zeros(t).expect("zeros"),
        })
        .collect();
    let given: Vec<Option<&Array>> = args
        .iter()
        .enumerate()
        .map(|(j, a)| (!plan.contains(&Some(j))).then_some(a))
        .collect();
    f.call_in_place(&given, &mut outs).expect("call_in_place");
    outs
}

/// Checks `g` in place against the interpreter (Precise: bit for bit, or within 1e-12
/// relative (f32: 1e-5) for graphs with a matrix product, whose GEMM sums in another order) and against
/// distinct buffers (the same code in the default mode, bit for bit); returns the in-place
/// plan.
fn check(g: &Graph, args: &[Array]) -> Vec<Option<usize>> {
    let precise = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let f = compile(g, &precise).expect("compile");
    let want = interp::eval(g, args).expect("interpreter");
    let got = run_in_place(&f, args);
    let product = g
        .insts()
        .any(|(_, i)| matches!(i.op, ferrax_ir::Op::Dot(_)));
    for (k, (w, o)) in want.iter().zip(&got).enumerate() {
        let ok = if product {
            close(w, o, if w.dtype() == DType::F32 { 1e-5 } else { 1e-12 })
        } else {
            same_bits(w, o)
        };
        assert!(ok, "output {k}: interpreter {w}, in place {o}");
    }
    let fast = compile(g, &JitOptions::default()).expect("compile");
    let want = fast.call(args).expect("call");
    let got = run_in_place(&fast, args);
    for (k, (w, o)) in want.iter().zip(&got).enumerate() {
        assert!(
            same_bits(w, o),
            "output {k}: distinct buffers {w}, in place {o}"
        );
    }
    assert_eq!(f.in_place_outputs(), fast.in_place_outputs());
    f.in_place_outputs().to_vec()
}

#[test]
fn adam_updates_run_in_place_and_match_the_interpreter() {
    let mut rng = Rng(23);
    for dtype in [DType::F64, DType::F32] {
        for dims in [
            vec![300, 257],
            vec![1, 70_001],
            vec![9, 1],
            vec![3, 5],
            vec![0, 4],
        ] {
            let g = graph(|xs| adam(xs).to_vec(), &adam_types(dtype, &dims));
            for specials in [false, true] {
                let args = adam_args(&mut rng, dtype, &dims, specials);
                let plan = check(&g, &args);
                // Each of the three updates takes a distinct tensor argument (the gradient
                // or a state tensor: all are read at the index written, in one loop).
                let mut taken: Vec<usize> = plan.iter().map(|j| j.expect("in place")).collect();
                taken.sort_unstable();
                taken.dedup();
                assert_eq!(taken.len(), 3, "{dtype} {dims:?}: {plan:?}");
                assert!(taken.iter().all(|&j| j < 4), "{plan:?}");
            }
        }
    }
}

#[test]
fn arguments_read_elsewhere_are_not_overwritten() {
    let mut rng = Rng(29);
    for dtype in [DType::F64, DType::F32] {
        let t = Type::new(dtype, &[70, 70]);
        // Finite inputs, so that a wrongly overwritten argument cannot hide behind a NaN.
        let a = |rng: &mut Rng| array(rng, dtype, &[70, 70], -2.0, 2.0, false);
        // `p` is summed after the update's loop: only `q` may be overwritten.
        let g = graph(
            |xs| {
                let (p, q) = (&xs[0], &xs[1]);
                vec![p * q + q, (p * p).sum_all()]
            },
            &[t.clone(), t.clone()],
        );
        assert_eq!(check(&g, &[a(&mut rng), a(&mut rng)])[0], Some(1));
        // Read transposed (at another index): neither.
        let g = graph(
            |xs| {
                let (p, q) = (&xs[0], &xs[1]);
                vec![p.transpose(&[1, 0]) + q]
            },
            &[t.clone(), t.clone()],
        );
        assert_eq!(check(&g, &[a(&mut rng), a(&mut rng)]), vec![None]);
        // Read broadcast (a row of `r` read at every row): only `p`.
        let g = graph(
            |xs| {
                let (p, r) = (&xs[0], &xs[1]);
                let row = r.slice(&[0, 0], &[1, 70], &[1, 1]).reshape(&[70]);
                vec![p + row.broadcast_in_dim(&[70, 70], &[1]) * r]
            },
            &[t.clone(), t.clone()],
        );
        let plan = check(&g, &[a(&mut rng), a(&mut rng)]);
        assert_ne!(plan[0], Some(1), "{plan:?}");
        // Returned as an output itself: only `q`.
        let g = graph(
            |xs| {
                let (p, q) = (&xs[0], &xs[1]);
                vec![p + q, p.clone()]
            },
            &[t.clone(), t.clone()],
        );
        assert_eq!(check(&g, &[a(&mut rng), a(&mut rng)]), vec![Some(1), None]);
        // Reshaped, the reshape read by a later product: only `q`.
        let g = graph(
            |xs| {
                let (p, q) = (&xs[0], &xs[1]);
                let flat = p.reshape(&[4900, 1]);
                vec![p - q, flat.transpose(&[1, 0]).matmul(&flat)]
            },
            &[t.clone(), t.clone()],
        );
        assert_ne!(check(&g, &[a(&mut rng), a(&mut rng)])[0], Some(0));
        // Two outputs of one loop over the same two arguments take one each.
        let g = graph(
            |xs| {
                let (p, q) = (&xs[0], &xs[1]);
                vec![p + q, p * q]
            },
            &[t.clone(), t.clone()],
        );
        let plan = check(&g, &[a(&mut rng), a(&mut rng)]);
        assert!(plan.iter().flatten().count() <= 2 && plan[0] != plan[1] || plan[0].is_none());
    }
}

#[test]
fn arguments_no_output_can_take_are_refused() {
    let t = Type::new(DType::F32, &[4, 3]);
    let g = graph(
        |xs| vec![&xs[0] + &xs[1], xs[0].transpose(&[1, 0])],
        &[t.clone(), t.clone()],
    );
    let f = compile(&g, &JitOptions::default()).expect("compile");
    let x = Array::zeros(&t).unwrap();
    let mut outs = vec![
        Array::zeros(&t).unwrap(),
        Array::zeros(&Type::new(DType::F32, &[3, 4])).unwrap(),
    ];
    // The transpose's output cannot take argument 0, whatever `in_place_outputs` says of
    // the sum's.
    let taker = f.in_place_outputs()[0];
    let other = if taker == Some(0) { 1 } else { 0 };
    let mut given = vec![Some(&x), Some(&x)];
    given[other] = None;
    let e = f.call_in_place(&given, &mut outs).unwrap_err();
    assert!(
        e.to_string()
            .contains("no output of the compiled function can take"),
        "{e}"
    );
    // Wrong arity and a wrong output type are errors too.
    assert!(f.call_in_place(&[Some(&x)], &mut outs).is_err());
    let mut bad = vec![Array::zeros(&t).unwrap(), Array::zeros(&t).unwrap()];
    assert!(f.call_in_place(&[Some(&x), Some(&x)], &mut bad).is_err());
}
