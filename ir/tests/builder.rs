//! The builder's hash-consing and type memo against plain references: every equation pushed
//! twice returns its first results (also for values with more users than a region of the
//! hash-consing table holds, and for equations without operands), no two instructions of a
//! built graph are identical, remembered result types never let an ill-typed equation
//! through, the placement of hash-consing entries always probes where it placed them, and an
//! equation's storage (`Op`, `InstData`) stays within its size budget.

use ferrax_ir::ops::{BinaryOp, CompareOp, ConvertOp, UnaryOp};
use ferrax_ir::{Array, Builder, DType, ErrorKind, Op, Type, Value};
use std::collections::HashMap;

/// A small deterministic generator (64-bit LCG, high bits), so that failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Checks that no two instructions of the built graph have the same op and operands.
fn assert_no_duplicates(b: &Builder) {
    let g = b.graph();
    let mut seen: HashMap<(Op, Vec<Value>), usize> = HashMap::new();
    for (i, inst) in g.insts() {
        let key = (inst.op.clone(), inst.args.to_vec());
        if let Some(j) = seen.insert(key, i.index()) {
            panic!("instructions {j} and {} are identical", i.index());
        }
    }
}

#[test]
fn a_value_with_many_users_keeps_every_user_hash_consed() {
    let mut b = Builder::new();
    let p = b.param(Type::new(DType::F64, &[2]));
    // Constants made before `x`, so that `x` is the newest operand of every user below: far
    // more users than one region of the table holds.
    let consts: Vec<Value> = (0..300)
        .map(|k| {
            let c = b.constant(Array::from(vec![k as f64, -(k as f64)]));
            b.push1(Op::Unary(UnaryOp::Neg), &[c]).unwrap_or(c)
        })
        .collect();
    let x = b.push1(Op::Unary(UnaryOp::Sin), &[p]).unwrap();
    let ops = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub];
    let mut first = Vec::new();
    for &c in &consts {
        for op in ops {
            first.push(b.push1(Op::Binary(op), &[x, c]).unwrap());
        }
    }
    let n = b.graph().num_insts();
    // Pushed again, in another order: the same values and no new instruction.
    let mut k = first.len();
    for &c in consts.iter().rev() {
        for op in ops.iter().rev() {
            k -= 1;
            assert_eq!(b.push1(Op::Binary(*op), &[x, c]).unwrap(), first[k]);
        }
    }
    assert_eq!(b.graph().num_insts(), n);
    // Every user is a distinct instruction.
    assert_eq!(
        first.iter().collect::<std::collections::HashSet<_>>().len(),
        first.len()
    );
    assert_no_duplicates(&b);
}

#[test]
fn hash_consing_matches_a_reference_map_on_random_graphs() {
    for seed in [1u64, 7, 42, 1234] {
        let mut rng = Lcg(seed);
        let mut b = Builder::new();
        b.fold_constants = false;
        let mut vals: Vec<Value> = (0..4)
            .map(|_| b.param(Type::new(DType::F64, &[3])))
            .collect();
        let mut reference: HashMap<(Op, Vec<Value>), Value> = HashMap::new();
        let unary = [UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Neg, UnaryOp::Exp];
        let binary = [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub, BinaryOp::Max];
        for step in 0..20_000 {
            // Operands mostly recent, sometimes old, sometimes one value used very often
            // (the first parameter), and some constants (equations without operands).
            let pick = |rng: &mut Lcg| -> Value {
                match rng.next(10) {
                    0 => vals[0],
                    1 => vals[rng.next(vals.len())],
                    _ => vals[vals.len() - 1 - rng.next(vals.len().min(24))],
                }
            };
            let (op, args) = match rng.next(9) {
                0..=2 => (Op::Unary(unary[rng.next(4)]), vec![pick(&mut rng)]),
                3..=7 => (
                    Op::Binary(binary[rng.next(4)]),
                    vec![pick(&mut rng), pick(&mut rng)],
                ),
                _ => {
                    let k = rng.next(40) as f64;
                    (
                        Op::Literal(ferrax_ir::ops::LiteralOp::Const(
                            ferrax_ir::ops::Literal::new(Array::from(vec![k, k, k])),
                        )),
                        vec![],
                    )
                }
            };
            let v = b.push1(op.clone(), &args).unwrap();
            match reference.get(&(op.clone(), args.clone())) {
                Some(&w) => assert_eq!(v, w, "seed {seed} step {step}: {op:?} {args:?}"),
                None => {
                    reference.insert((op, args), v);
                    vals.push(v);
                }
            }
        }
        assert_eq!(b.graph().num_insts(), reference.len());
        assert_no_duplicates(&b);
    }
}

#[test]
fn remembered_result_types_do_not_admit_ill_typed_equations() {
    let mut b = Builder::new();
    let f3 = b.param(Type::new(DType::F64, &[3]));
    let g3 = b.param(Type::new(DType::F64, &[3]));
    let f2 = b.param(Type::new(DType::F64, &[2]));
    let s3 = b.param(Type::new(DType::F32, &[3]));
    let flag = b.param(Type::new(DType::Bool, &[3]));
    for _ in 0..2 {
        let y = b.push1(Op::Binary(BinaryOp::Add), &[f3, g3]).unwrap();
        assert_eq!(b.ty(y), &Type::new(DType::F64, &[3]));
        let e = b.push1(Op::Binary(BinaryOp::Add), &[f3, f2]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape, "{e}");
        let e = b.push1(Op::Binary(BinaryOp::Add), &[f3, s3]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::DType, "{e}");
        let e = b.push(Op::Binary(BinaryOp::Add), &[f3]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Arity, "{e}");
        let e = b.push1(Op::Unary(UnaryOp::Sin), &[flag]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::DType, "{e}");
        let c = b
            .push1(Op::Compare(CompareOp::Lt), &[f3, g3])
            .expect("compare");
        assert_eq!(b.ty(c), &Type::new(DType::Bool, &[3]));
        let s = b
            .push1(Op::Compare(CompareOp::Select), &[c, f3, g3])
            .expect("select");
        assert_eq!(b.ty(s), &Type::new(DType::F64, &[3]));
        let e = b
            .push1(Op::Compare(CompareOp::Select), &[f3, f3, g3])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DType, "{e}");
        let v = b
            .push1(Op::Convert(ConvertOp::Convert(DType::F32)), &[f3])
            .expect("convert");
        assert_eq!(b.ty(v), &Type::new(DType::F32, &[3]));
        // A fresh operand of a remembered type: a new instruction of that type.
        let z = b.push1(Op::Unary(UnaryOp::Cos), &[y]).unwrap();
        assert_eq!(b.ty(z), &Type::new(DType::F64, &[3]));
    }
}

#[test]
fn placement_probes_find_every_placed_entry() {
    use ferrax_ir::placement::{Placement, BLOCK, REGION_LIMIT};
    let mut p = Placement::with_capacity(0);
    let mut rng = Lcg(3);
    // Blocks with few entries, with exactly the limit, and with many more; entries without
    // a newest value.
    let mut placed = Vec::new();
    for (block, count) in [
        (0u32, 5usize),
        (1, REGION_LIMIT as usize),
        (7, 300),
        (1000, 1),
    ] {
        for _ in 0..count {
            let key = rng.next(1 << 30) as u32 ^ ((rng.next(4) as u32) << 30);
            let newest = Some(block * BLOCK + rng.next(BLOCK as usize) as u32);
            placed.push((key, newest, p.place(key, newest)));
        }
    }
    for k in 0..50u32 {
        let key = k.wrapping_mul(2_654_435_761);
        let stored = p.place(key, None);
        assert_eq!(stored, key, "an entry without values is placed by its key");
        placed.push((key, None, stored));
    }
    for &(key, newest, stored) in &placed {
        let probes = p.probes(key, newest);
        assert!(
            probes.contains(&Some(stored)),
            "{key:#x} {newest:?}: {stored:#x} not among {probes:?}"
        );
    }
    // A block that placed nothing has nothing to probe.
    assert_eq!(p.probes(12345, Some(500 * BLOCK)), [None, None]);
}

#[test]
fn repeated_folds_return_their_first_constants() {
    // Many distinct folds (their table grows several times), then every one again: each
    // returns the constant of its first fold and adds no instruction.
    let mut b = Builder::new();
    let consts: Vec<Value> = (0..500)
        .map(|k| b.constant(Array::from(vec![k as f64 * 0.5, 1.0])))
        .collect();
    let first: Vec<Value> = consts
        .iter()
        .map(|&c| b.push1(Op::Unary(UnaryOp::Sin), &[c]).unwrap())
        .collect();
    let n = b.graph().num_insts();
    for (&c, &f) in consts.iter().zip(&first) {
        assert_eq!(b.push1(Op::Unary(UnaryOp::Sin), &[c]).unwrap(), f);
        assert!(b.literal(f).is_some(), "folded to a constant");
    }
    assert_eq!(b.graph().num_insts(), n);
}

/// Every graph stores one `InstData` per equation, and every transform of a long graph walks
/// and writes them, so their size is the graphs' memory and much of the transforms' time. A
/// parameter list that grows an op back past 64 bytes (the size of a constant or `iota`) should
/// be kept out of line like the shape ops' lists.
#[test]
#[cfg(target_pointer_width = "64")]
fn an_equation_stays_small() {
    assert!(
        std::mem::size_of::<ferrax_ir::Op>() <= 64,
        "Op is {} bytes",
        std::mem::size_of::<ferrax_ir::Op>()
    );
    assert!(
        std::mem::size_of::<ferrax_ir::InstData>() <= 112,
        "InstData is {} bytes",
        std::mem::size_of::<ferrax_ir::InstData>()
    );
}
