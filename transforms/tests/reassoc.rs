//! Value numbering modulo reassociation (`passes::reassoc`): each rewrite on a small graph,
//! the rewrites it must never make (cancellations, operands dropped, integer arithmetic), and
//! random expressions checked against the original graph on finite inputs (to rounding) and
//! on inputs with NaN and ±∞ (the same NaNs and infinities).

mod common;

use common::*;
use ferrax_ir::interp::eval;
use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Graph, Type, Value};
use ferrax_transforms::passes::reassoc::reassoc;

/// The graph after the pass, verified.
fn pass(g: &Graph) -> Graph {
    let h = reassoc(g).unwrap();
    h.verify().unwrap();
    assert!(
        h.num_insts() <= g.num_insts(),
        "the pass made a graph larger"
    );
    h
}

fn eval_f64(g: &Graph, xs: &[f64]) -> Vec<f64> {
    let args: Vec<Array> = xs.iter().map(|&x| Array::from(x)).collect();
    eval(g, &args)
        .unwrap()
        .iter()
        .map(|a| a.to_scalar().unwrap())
        .collect()
}

fn mul(b: &mut Builder, x: Value, y: Value) -> Value {
    bin(b, BinaryOp::Mul, x, y)
}

fn add(b: &mut Builder, x: Value, y: Value) -> Value {
    bin(b, BinaryOp::Add, x, y)
}

fn sub(b: &mut Builder, x: Value, y: Value) -> Value {
    bin(b, BinaryOp::Sub, x, y)
}

fn neg(b: &mut Builder, x: Value) -> Value {
    un(b, UnaryOp::Neg, x)
}

#[test]
fn proportional_products_become_one_value() {
    let s = f64t(&[]);
    let g = build(&[s.clone(), s], |b, p| {
        let (t, u) = (p[0], p[1]);
        let two = cst(b, 2.0);
        let t2 = mul(b, t, two);
        let u2 = mul(b, u, two);
        let a = mul(b, t2, u2); // (2t)(2u)
        let ut2 = mul(b, u, t2);
        let c = mul(b, two, ut2); // 2(u·2t)
        let tu = mul(b, t2, u);
        let n = neg(b, tu);
        let m = mul(b, two, n);
        let d = neg(b, m); // -(2·(-(2t·u)))
        let e = neg(b, a); // -(2t)(2u)
        vec![a, c, d, e]
    });
    let h = pass(&g);
    let o = h.outputs();
    assert_eq!(o[0], o[1], "{h}");
    assert_eq!(o[0], o[2], "{h}");
    // One product t·u (or (2t)·(2u)), its scaling, and one negation: no second product.
    let muls = h.insts().filter(|(_, i)| i.op.name() == "mul").count();
    assert!(muls <= 3, "{h}");
    for xs in [[0.3, -1.7], [1e-3, 4.5]] {
        let want = eval_f64(&g, &xs);
        let got = eval_f64(&h, &xs);
        for (w, v) in want.iter().zip(&got) {
            close(*v, *w, 1e-15, "proportional products");
        }
    }
}

#[test]
fn scaling_chains_and_constant_additions_fold() {
    let s = f64t(&[]);
    let g = build(&[s], |b, p| {
        let x = p[0];
        let (c2, c3, c1) = (cst(b, 2.0), cst(b, 3.0), cst(b, 1.0));
        let x3 = mul(b, c3, x);
        let x6 = mul(b, c2, x3); // 2(3x)
        let x1 = add(b, x, c1);
        let x12 = add(b, x1, c2); // (x + 1) + 2
        let y = neg(b, x);
        let y1 = sub(b, c1, y); // 1 - (-x)
        let xx = add(b, x, x);
        let xxx = add(b, xx, x); // x + x + x
        vec![x6, x12, y1, xxx]
    });
    let h = pass(&g);
    // 6x, x + 3, x + 1 and 3x: four equations on x, plus their constants.
    let ops: Vec<&str> = h
        .insts()
        .map(|(_, i)| i.op.name())
        .filter(|n| *n != "const")
        .collect();
    assert_eq!(ops.len(), 4, "{h}");
    for x in [0.7, -2.5, 1e10] {
        let want = eval_f64(&g, &[x]);
        let got = eval_f64(&h, &[x]);
        for (w, v) in want.iter().zip(&got) {
            close(*v, *w, 1e-15, "folded chains");
        }
    }
}

#[test]
fn like_terms_merge_only_without_cancellation() {
    let s = f64t(&[]);
    let g = build(&[s.clone(), s], |b, p| {
        let (x, y) = (p[0], p[1]);
        let two = cst(b, 2.0);
        let x2 = mul(b, two, x);
        let a = add(b, x2, y);
        let same = add(b, a, x); // 2x + y + x = 3x + y
        let two_y = mul(b, two, y);
        let same2 = add(b, x, two_y);
        let same3 = add(b, same2, x);
        let same4 = sub(b, same3, y); // (x + 2y + x) - y: y's coefficients cancel in part
        vec![same, same4]
    });
    let h = pass(&g);
    // The partial cancellation of y (2y − y) is not merged: the subtraction stays.
    assert!(h.insts().any(|(_, i)| i.op.name() == "sub"), "{h}");
    for xs in [[0.25, 1.5], [-3.0, 7.0]] {
        let want = eval_f64(&g, &xs);
        let got = eval_f64(&h, &xs);
        for (w, v) in want.iter().zip(&got) {
            close(*v, *w, 1e-15, "like terms");
        }
    }
}

/// Expressions whose value depends on rounding or on NaN and ±∞: the pass must leave every
/// output bit for bit as it was.
#[test]
fn cancellations_and_error_free_tricks_are_untouched() {
    let s = f64t(&[]);
    let g = build(&[s.clone(), s.clone(), s], |b, p| {
        let (x, y, z) = (p[0], p[1], p[2]);
        let zero = cst(b, 0.0);
        let x_minus_x = sub(b, x, x);
        let xy = add(b, x, y);
        let back = sub(b, xy, y); // (x + y) - y
        let x0 = mul(b, x, zero);
        let x0y = add(b, x0, y); // x·0 + y

        // Veltkamp splitting of x: hi = c − (c − x) with c = (2^27 + 1)·x.
        let k = cst(b, 134_217_729.0);
        let c = mul(b, k, x);
        let cx = sub(b, c, x);
        let hi = sub(b, c, cx);
        // Kahan: the compensation (t − s) − y of t = s + y.
        let t = add(b, z, y);
        let ts = sub(b, t, z);
        let comp = sub(b, ts, y);
        // Rounding to an integer: (x + 2^52) − 2^52.
        let big = cst(b, 4_503_599_627_370_496.0);
        let xb = add(b, x, big);
        let rounded = sub(b, xb, big);
        vec![x_minus_x, back, x0y, hi, comp, rounded]
    });
    let h = pass(&g);
    let inputs = [
        [0.1, 1e-17, 1.0],
        [f64::INFINITY, 2.0, 3.0],
        [1.0, f64::NEG_INFINITY, f64::NAN],
        [f64::NAN, 0.5, -0.0],
        [1.000_000_123_456_789, 3.0e-9, 1e8],
        [2.5, -0.0, 0.0],
    ];
    for xs in inputs {
        let want = eval_f64(&g, &xs);
        let got = eval_f64(&h, &xs);
        for (i, (w, v)) in want.iter().zip(&got).enumerate() {
            assert!(
                w.to_bits() == v.to_bits(),
                "output {i} at {xs:?}: {v} instead of {w}\n{h}"
            );
        }
    }
}

#[test]
fn integer_arithmetic_is_left_alone() {
    let s = Type::new(DType::I32, &[]);
    let g = build(&[s], |b, p| {
        let c2 = b.constant(Array::scalar(DType::I32, 2.0));
        let c3 = b.constant(Array::scalar(DType::I32, 3.0));
        let x3 = mul(b, c3, p[0]);
        let x6 = mul(b, c2, x3);
        vec![x6]
    });
    let h = pass(&g);
    // Only the emitter's operand order may change: still two multiplications by 3 and by 2.
    assert_eq!(h.num_insts(), g.num_insts(), "{h}");
    assert!(h.to_text().contains("const[3]"), "{h}");
}

/// Random expressions over three inputs: after the pass, finite inputs give the same values to
/// rounding, and inputs with NaN or ±∞ give NaN exactly where the original does and the same
/// infinities (no intermediate can overflow: inputs are moderate and the depth is small).
#[test]
fn random_expressions_keep_values_nans_and_infinities() {
    let mut rng = Rng(0x5eed_2026);
    let consts = [2.0, -1.0, 0.5, 3.0, -4.0, 1.0];
    let mut saved = 0;
    for case in 0..300 {
        let s = f64t(&[]);
        let g = build(&[s.clone(), s.clone(), s], |b, p| {
            let mut pool: Vec<Value> = p.to_vec();
            for _ in 0..(6 + case % 14) {
                let pick = |rng: &mut Rng, pool: &[Value]| {
                    pool[(rng.next_u64() % pool.len() as u64) as usize]
                };
                let x = pick(&mut rng, &pool);
                let y = if rng.next_u64().is_multiple_of(4) {
                    let c = consts[(rng.next_u64() % consts.len() as u64) as usize];
                    cst(b, c)
                } else {
                    pick(&mut rng, &pool)
                };
                let v = match rng.next_u64() % 5 {
                    0 => add(b, x, y),
                    1 => sub(b, x, y),
                    2 => mul(b, x, y),
                    3 => neg(b, x),
                    _ => un(b, UnaryOp::Square, x),
                };
                pool.push(v);
            }
            pool[pool.len() - 3..].to_vec()
        });
        let h = pass(&g);
        saved += g.num_insts() - h.num_insts();
        for _ in 0..4 {
            let xs = [
                rng.uniform(0.5, 2.0),
                rng.uniform(-2.0, -0.5),
                rng.uniform(0.5, 2.0),
            ];
            let want = eval_f64(&g, &xs);
            let got = eval_f64(&h, &xs);
            let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
            for (w, v) in want.iter().zip(&got) {
                assert!(
                    (w - v).abs() <= 1e-12 * scale,
                    "case {case} at {xs:?}: {v} instead of {w}\n{g}\n{h}"
                );
            }
        }
        for special in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for slot in 0..3 {
                let mut xs = [1.25, -0.75, 1.5];
                xs[slot] = special;
                let want = eval_f64(&g, &xs);
                let got = eval_f64(&h, &xs);
                for (w, v) in want.iter().zip(&got) {
                    let same = (w.is_nan() && v.is_nan())
                        || (w.is_infinite() && w == v)
                        || (w.is_finite() && v.is_finite());
                    assert!(same, "case {case} at {xs:?}: {v} instead of {w}\n{g}\n{h}");
                }
            }
        }
    }
    assert!(
        saved > 100,
        "the rewrites hardly ever applied: {saved} equations saved"
    );
}

#[test]
fn single_precision_products_are_numbered_too() {
    let s = Type::new(DType::F32, &[3]);
    let g = build(&[s.clone(), s], |b, p| {
        let (t, u) = (p[0], p[1]);
        let two = b.constant(Array::full(DType::F32, vec![3], 2.0).unwrap());
        let t2 = mul(b, t, two);
        let u2 = mul(b, u, two);
        let a = mul(b, t2, u2);
        let ut2 = mul(b, u, t2);
        let c = mul(b, two, ut2);
        vec![a, c]
    });
    let h = pass(&g);
    assert_eq!(h.outputs()[0], h.outputs()[1], "{h}");
    let args = [
        Array::from_f64(vec![3], vec![0.5, -1.5, 3.0])
            .unwrap()
            .cast(DType::F32),
        Array::from_f64(vec![3], vec![2.0, 0.25, -7.0])
            .unwrap()
            .cast(DType::F32),
    ];
    let want = eval(&g, &args).unwrap();
    let got = eval(&h, &args).unwrap();
    for (w, v) in want.iter().zip(&got) {
        close_arrays(v, w, 1e-6, "f32 products");
    }
}

/// The longest chain of equations from a parameter to an output.
fn depth(g: &Graph) -> usize {
    let mut d = vec![0usize; g.num_values()];
    for (_, inst) in g.insts() {
        let at = inst.args.iter().map(|a| d[a.index()]).max().unwrap_or(0) + 1;
        for r in inst.results.iter() {
            d[r.index()] = at;
        }
    }
    g.outputs().iter().map(|o| d[o.index()]).max().unwrap_or(0)
}

#[test]
fn a_scaling_used_once_moves_off_the_running_product() {
    // (ct · 3) · c, with c older than ct: becomes ct · (3 · c), one multiplication on ct.
    let s = f64t(&[]);
    let g = build(&[s.clone(), s], |b, p| {
        let c = un(b, UnaryOp::Cos, p[0]);
        let ct = un(b, UnaryOp::Sin, p[1]);
        let three = cst(b, 3.0);
        let scaled = mul(b, ct, three);
        vec![mul(b, scaled, c)]
    });
    let h = pass(&g);
    let out = h.outputs()[0];
    let (_, last) = h.producer(out).unwrap();
    let sin = h
        .insts()
        .find(|(_, i)| i.op == ferrax_ir::Op::Unary(UnaryOp::Sin))
        .map(|(_, i)| i.results[0])
        .unwrap();
    assert!(
        last.args.contains(&sin),
        "the product's last multiplication should take the running value directly:\n{h}"
    );
    for xs in [[0.3, -1.2], [2.0, 0.7]] {
        close(eval_f64(&h, &xs)[0], eval_f64(&g, &xs)[0], 1e-15, "value");
    }
    // Used twice, the scaling stays and the product is left as it is.
    let g2 = build(&[f64t(&[]), f64t(&[])], |b, p| {
        let c = un(b, UnaryOp::Cos, p[0]);
        let ct = un(b, UnaryOp::Sin, p[1]);
        let three = cst(b, 3.0);
        let scaled = mul(b, ct, three);
        vec![mul(b, scaled, c), scaled]
    });
    let h2 = pass(&g2);
    assert_eq!(h2.num_insts(), g2.num_insts(), "{h2}");
}

#[test]
fn a_long_chain_reverse_pass_puts_one_multiplication_per_step_on_its_cotangent() {
    // x ← sin(x)·1.0001 + 0.1, n times: the forward pass is three equations deep per step,
    // and the reverse pass's running product one (`ct · (1.0001 · cos x)`), not two.
    let n = 200;
    let f = ferrax_ir::function(move |x: ferrax_ir::Tensor| {
        let mut x = x;
        for _ in 0..n {
            x = x.sin() * 1.0001 + 0.1;
        }
        x
    });
    let g = (*f.specialize(&[f64t(&[])]).unwrap().graph).clone();
    let dg = ferrax_transforms::grad_graph(&g, 1, &[0], false).unwrap();
    dg.verify().unwrap();
    let d = depth(&dg);
    assert!(d <= 4 * n + 4, "depth {d} for {n} steps:\n{dg}");
    // The derivative, multiplied out by hand in the same order as a tape would.
    let mut x: f64 = 0.4;
    let mut tape = Vec::new();
    for _ in 0..n {
        tape.push(x.cos() * 1.0001);
        x = x.sin() * 1.0001 + 0.1;
    }
    let want: f64 = tape.iter().rev().product();
    close(run_scalars(&dg, &[0.4])[0], want, 1e-12, "chain gradient");
}
