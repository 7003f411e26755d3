//! Loop rerolling (`ferrax_jit::reroll`): long runs of repeated blocks become `scan`s, and
//! the rerolled graph gives the original's results bit for bit, in the interpreter and in
//! compiled code (Precise mode), on random chains of several periods, chains with a broken
//! period, chains whose blocks differ only in a constant, and gradients of chains.

use ferrax_ir::interp::eval;
use ferrax_ir::ops::{BinaryOp, ControlOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, Graph, Op, Tensor, Type, Value};
use ferrax_jit::{compile, reroll, JitOptions, MathMode};
use ferrax_transforms::api::grad;

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
}

fn precise() -> JitOptions {
    JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    }
}

fn unrolled() -> JitOptions {
    JitOptions {
        reroll: false,
        ..precise()
    }
}

/// The number of `scan`s at the top level of `g`.
fn scans(g: &Graph) -> usize {
    g.insts()
        .filter(|(_, i)| matches!(i.op, Op::Control(ControlOp::Scan { .. })))
        .count()
}

/// Checks that the rerolled graph (if any) and the compiled code (rerolled and not) give the
/// interpreter's bits on `args`; returns the rerolled graph.
fn check_same(g: &Graph, args: &[Array]) -> Option<Graph> {
    g.verify().expect("the test graph is valid");
    let want = eval(g, args).expect("the interpreter runs the graph");
    let rolled = reroll(g).expect("rerolling succeeds");
    if let Some(r) = &rolled {
        r.verify().expect("the rerolled graph is valid");
        assert_eq!(r.param_types(), g.param_types());
        assert_eq!(r.output_types(), g.output_types());
        let got = eval(r, args).expect("the interpreter runs the rerolled graph");
        for (a, b) in got.iter().zip(&want) {
            assert!(a.bits_eq(b), "rerolled graph differs from the original");
        }
    }
    for opts in [precise(), unrolled()] {
        let got = compile(g, &opts)
            .expect("compiles")
            .call(args)
            .expect("runs");
        for (a, b) in got.iter().zip(&want) {
            assert!(a.bits_eq(b), "compiled code differs from the interpreter");
        }
    }
    rolled
}

/// How block `b` of a chain may differ from the others.
#[derive(Clone, Copy, PartialEq)]
enum Twist {
    /// Every block is the same.
    None,
    /// Block `at` uses another op at one position.
    BrokenAt(usize),
    /// Every block multiplies by its own constant.
    OwnConstant,
}

/// A random chain of `blocks` blocks of one random template over `ty`: `carries` values
/// flow from block to block, each block computes `ops` operations on them, on an invariant
/// parameter and on constants, and ends with bounded (sin/cos/tanh) next carries.
fn random_chain(seed: u64, ty: &Type, blocks: usize, twist: Twist) -> Graph {
    let mut rng = Rng(seed | 1);
    let carries = 1 + rng.below(3);
    let ops = 1 + rng.below(5);
    // The template: per operation (kind, operand choices).
    let template: Vec<(usize, usize, usize)> = (0..ops + carries)
        .map(|_| (rng.below(5), rng.next() as usize, rng.next() as usize))
        .collect();
    let mut b = Builder::new();
    let x = b.param(ty.clone());
    let a = b.param(ty.clone());
    let konst = |b: &mut Builder, v: f64| {
        let c = b.constant(Array::scalar(ty.dtype, v));
        if ty.is_scalar() {
            c
        } else {
            b.push1(
                Op::Shape(ferrax_ir::ops::ShapeOp::BroadcastInDim {
                    shape: ty.shape.clone(),
                    dims: Default::default(),
                }),
                &[c],
            )
            .unwrap()
        }
    };
    let half = konst(&mut b, 0.5);
    let mut carry: Vec<Value> = (0..carries)
        .map(|k| {
            b.push1(
                Op::Unary(if k % 2 == 0 {
                    UnaryOp::Sin
                } else {
                    UnaryOp::Cos
                }),
                &[x],
            )
            .unwrap()
        })
        .collect();
    for blk in 0..blocks {
        let mut vals = carry.clone();
        for (j, &(kind, c1, c2)) in template.iter().enumerate() {
            let last = j >= ops;
            let p1 = vals[c1 % vals.len()];
            let p2 = match c2 % 4 {
                0 => a,
                1 => half,
                _ => vals[c2 % vals.len()],
            };
            let kind = if twist == Twist::BrokenAt(blk) && j == 0 {
                (kind + 1) % 5
            } else {
                kind
            };
            let v = if last {
                let op = [UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Tanh][kind % 3];
                let s = b.push1(Op::Binary(BinaryOp::Add), &[p1, p2]).unwrap();
                b.push1(Op::Unary(op), &[s]).unwrap()
            } else {
                match kind {
                    0 => b.push1(Op::Binary(BinaryOp::Add), &[p1, p2]).unwrap(),
                    1 => b.push1(Op::Binary(BinaryOp::Mul), &[p1, p2]).unwrap(),
                    2 => b.push1(Op::Binary(BinaryOp::Sub), &[p1, p2]).unwrap(),
                    3 => b.push1(Op::Unary(UnaryOp::Sin), &[p1]).unwrap(),
                    _ => b.push1(Op::Unary(UnaryOp::Tanh), &[p1]).unwrap(),
                }
            };
            let v = if twist == Twist::OwnConstant && j == 0 {
                let c = konst(&mut b, 1.0 + blk as f64 * 1e-3);
                b.push1(Op::Binary(BinaryOp::Mul), &[v, c]).unwrap()
            } else {
                v
            };
            vals.push(v);
        }
        carry = vals[vals.len() - carries..].to_vec();
    }
    // Outputs: every final carry, and a value from the middle of the chain.
    let mut outs = carry;
    let mid = Value::from_index(b.graph().num_values() / 2);
    outs.push(mid);
    b.finish(&outs)
}

fn args_for(ty: &Type) -> Vec<Array> {
    let n = ty.size();
    let x = Array::from_f64(
        ty.shape.clone(),
        (0..n).map(|i| 0.3 + 0.11 * i as f64).collect(),
    )
    .unwrap();
    let a = Array::from_f64(
        ty.shape.clone(),
        (0..n).map(|i| 0.7 - 0.05 * i as f64).collect(),
    )
    .unwrap();
    vec![x, a]
}

#[test]
fn random_chains_reroll_and_agree() {
    let mut rolled = 0;
    for seed in 1..25u64 {
        let ty = if seed % 3 == 0 {
            Type::new(DType::F64, &[5])
        } else {
            Type::scalar(DType::F64)
        };
        let g = random_chain(seed * 7919, &ty, 800, Twist::None);
        if let Some(r) = check_same(&g, &args_for(&ty)) {
            assert!(scans(&r) >= 1);
            assert!(
                r.num_insts() * 10 < g.num_insts(),
                "{} of {}",
                r.num_insts(),
                g.num_insts()
            );
            rolled += 1;
        }
    }
    assert_eq!(rolled, 24, "only {rolled} of 24 chains were rerolled");
}

#[test]
fn broken_period_splits_the_run() {
    for seed in 1..9u64 {
        let ty = Type::scalar(DType::F64);
        let g = random_chain(seed * 104_729, &ty, 800, Twist::BrokenAt(400));
        let r = check_same(&g, &args_for(&ty)).expect("both halves are rerolled");
        assert!(scans(&r) >= 2, "seed {seed}: {} scans", scans(&r));
    }
}

#[test]
fn blocks_differing_in_a_constant_are_not_merged() {
    for seed in 1..9u64 {
        let ty = Type::scalar(DType::F64);
        let g = random_chain(seed * 15_485_863, &ty, 800, Twist::OwnConstant);
        let r = check_same(&g, &args_for(&ty));
        assert!(
            r.is_none(),
            "seed {seed}: blocks with different constants were rerolled"
        );
    }
}

#[test]
fn short_graphs_are_left_alone() {
    let ty = Type::scalar(DType::F64);
    let g = random_chain(99, &ty, 40, Twist::None);
    assert!(g.num_insts() < ferrax_jit::reroll::MIN_GRAPH_INSTS);
    assert!(reroll(&g).unwrap().is_none());
}

/// The gradient of the chain `x = sin(x)·1.0001 + 0.1`: a forward scan that stacks `cos`
/// and a reverse scan that reads it; same bits as the unrolled graph.
#[test]
fn gradient_of_a_chain_becomes_two_scans() {
    for vec in [false, true] {
        let n = 500;
        let f = move |x: Tensor| {
            let mut x = x;
            for _ in 0..n {
                x = x.sin() * 1.0001 + 0.1;
            }
            if vec {
                x.sum(&[0])
            } else {
                x
            }
        };
        let ty = if vec {
            Type::new(DType::F64, &[16])
        } else {
            Type::scalar(DType::F64)
        };
        let g = grad(f).specialize(std::slice::from_ref(&ty)).unwrap().graph;
        let x = Array::from_f64(
            ty.shape.clone(),
            (0..ty.size()).map(|i| 0.1 * i as f64 - 0.7).collect(),
        )
        .unwrap();
        let r = check_same(&g, &[x]).expect("the gradient is rerolled");
        assert_eq!(scans(&r), 2);
        let reverse = r
            .insts()
            .any(|(_, i)| matches!(i.op, Op::Control(ControlOp::Scan { reverse: true, .. })));
        assert!(reverse, "the backward pass runs as a reverse scan");
        assert!(r.num_insts() < 20);
        let small = compile(&g, &precise()).unwrap().code_bytes();
        let big = compile(&g, &unrolled()).unwrap().code_bytes();
        assert!(small * 20 < big, "{small} bytes rerolled, {big} unrolled");
    }
}
