//! proptest: random well-typed graphs of elementwise, reduce, broadcast, shape and dot ops on
//! shapes with 0- and 1-sized dimensions, JIT against the interpreter, bit for bit.

mod common;

use common::{array, check, Rng};
use ferrax_ir::ops::{BinaryOp, DotGeneral, ReduceOp, ShapeOp, UnaryOp};
use ferrax_ir::{Builder, DType, Dims, Op, Shape, Type, Value};
use proptest::prelude::*;

/// Applies op number `code` with choices `a`, `b` to the value pool; ill-typed picks are
/// skipped (the builder rejects them).
fn step(b: &mut Builder, pool: &mut Vec<Value>, code: u8, a: usize, c: usize) {
    let x = pool[a % pool.len()];
    let y = pool[c % pool.len()];
    let xt = b.ty(x).clone();
    let rank = xt.rank();
    let op = match code % 9 {
        0 => Op::Unary(
            [
                UnaryOp::Sin,
                UnaryOp::Exp,
                UnaryOp::Neg,
                UnaryOp::Tanh,
                UnaryOp::Square,
            ][c % 5],
        ),
        1 => {
            let op = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Sub][c % 4];
            let args = if b.ty(y) == &xt { [x, y] } else { [x, x] };
            if let Ok(v) = b.push1(Op::Binary(op), &args) {
                pool.push(v);
            }
            return;
        }
        2 | 3 => {
            let axes: Dims = (0..rank).filter(|d| (c >> d) & 1 == 1).collect();
            Op::Reduce(if code % 9 == 2 {
                ReduceOp::Sum { axes }
            } else {
                ReduceOp::Max { axes }
            })
        }
        4 => {
            if rank >= 3 {
                return;
            }
            let mut shape = vec![c % 3];
            shape.extend_from_slice(xt.dims());
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&shape),
                dims: (1..=rank).collect(),
            })
        }
        5 => Op::Shape(ShapeOp::Transpose {
            perm: (0..rank).rev().collect(),
        }),
        6 => Op::Shape(ShapeOp::Rev {
            axes: (0..rank).filter(|d| (c >> d) & 1 == 1).collect(),
        }),
        7 => {
            let yt = b.ty(y).clone();
            if rank == 0 || yt.rank() == 0 || xt.dims()[rank - 1] != yt.dims()[0] {
                return;
            }
            let dot = DotGeneral {
                lhs_contract: Dims::from_slice(&[rank - 1]),
                rhs_contract: Dims::from_slice(&[0]),
                ..Default::default()
            };
            if let Ok(v) = b.push1(Op::Dot(Box::new(dot)), &[x, y]) {
                pool.push(v);
            }
            return;
        }
        _ => {
            let n = xt.size();
            let shape: Vec<usize> = if n == 0 { vec![0, c % 3] } else { vec![n] };
            Op::Shape(ShapeOp::Reshape {
                shape: Shape::new(&shape),
            })
        }
    };
    if let Ok(v) = b.push1(op, &[x]) {
        pool.push(v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_graphs_match_interpreter(
        f32_dtype in any::<bool>(),
        dims in prop::collection::vec(0usize..4, 0..3),
        dims2 in prop::collection::vec(0usize..4, 0..3),
        ops in prop::collection::vec((any::<u8>(), 0usize..16, 0usize..64), 1..10),
        seed in any::<u64>(),
    ) {
        let dt = if f32_dtype { DType::F32 } else { DType::F64 };
        let mut b = Builder::new();
        let p0 = b.param(Type::new(dt, &dims));
        let p1 = b.param(Type::new(dt, &dims2));
        let mut pool = vec![p0, p1];
        for (code, a, c) in ops {
            step(&mut b, &mut pool, code, a, c);
        }
        let outs: Vec<Value> = pool.iter().rev().take(3).copied().collect();
        let g = b.finish(&outs);
        let mut rng = Rng(seed);
        let args = [array(&mut rng, dt, &dims, -2.0, 2.0, false), array(&mut rng, dt, &dims2, -2.0, 2.0, false)];
        check(&g, &args);
    }
}
