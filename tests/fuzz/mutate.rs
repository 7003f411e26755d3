//! Printed-text mutants and ill-typed ops: inputs the parser, the type rules, the interpreter
//! and the JIT must reject with an error or handle, never with a panic.

use super::check::{self, bump, guard, known, Known, Rng, COUNTS};
use super::gen::OP_NAMES;
use ferrax::ir::ops::{
    BinaryOp, Body, CompareOp, ControlOp, ConvertOp, DotGeneral, IndexOp, LiteralOp, ReduceOp,
    ShapeOp, UnaryOp,
};
use ferrax::ir::{Array, Builder, DType, Dims, Graph, Op, Shape, Type, Value};
use ferrax::jit_backend::MathMode;

/// Mutants whose types hold more bytes than this are not run (see `Known::HugeShapes`).
const MUTANT_MAX_BYTES: usize = 1 << 22;

/// Splits text into tokens: identifiers and numbers, or single other characters.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A mutant of `text`: one to three token edits.
pub fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut t = tokens(text);
    let small = [
        "0", "1", "2", "3", "7", "-1", "1.5", "-0.0", "inf", "NaN", "1e308", "5e-324",
    ];
    let huge = ["1031", "4294967296", "18446744073709551615", "100000000000"];
    for _ in 0..1 + rng.below(3) {
        if t.is_empty() {
            break;
        }
        let i = rng.below(t.len());
        let is_num = t[i]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-');
        match rng.below(8) {
            0 | 1 if is_num => {
                let pick_huge = !known(Known::HugeShapes) && rng.below(4) == 0;
                t[i] = if pick_huge {
                    huge[rng.below(huge.len())].to_string()
                } else {
                    small[rng.below(small.len())].to_string()
                };
            }
            0 | 1 => {
                // A number somewhere else.
                let nums: Vec<usize> = (0..t.len())
                    .filter(|&k| t[k].chars().next().is_some_and(|c| c.is_ascii_digit()))
                    .collect();
                if !nums.is_empty() {
                    let k = nums[rng.below(nums.len())];
                    t[k] = small[rng.below(small.len())].to_string();
                }
            }
            2 => {
                let dts = ["f64", "f32", "i32", "bool"];
                let at: Vec<usize> = (0..t.len())
                    .filter(|&k| dts.contains(&t[k].as_str()))
                    .collect();
                if !at.is_empty() {
                    let k = at[rng.below(at.len())];
                    t[k] = dts[rng.below(4)].to_string();
                }
            }
            3 => {
                let at: Vec<usize> = (0..t.len())
                    .filter(|&k| OP_NAMES.contains(&t[k].as_str()))
                    .collect();
                if !at.is_empty() {
                    let k = at[rng.below(at.len())];
                    t[k] = OP_NAMES[rng.below(OP_NAMES.len())].to_string();
                }
            }
            4 => {
                t.remove(i);
            }
            5 => {
                let c = t[i].clone();
                t.insert(i, c);
            }
            6 => {
                // Another value name.
                let at: Vec<usize> = (0..t.len())
                    .filter(|&k| t[k].starts_with('v') && t[k][1..].parse::<u32>().is_ok())
                    .collect();
                if !at.is_empty() {
                    let k = at[rng.below(at.len())];
                    t[k] = format!("v{}", rng.below(12));
                }
            }
            _ => {
                let swap = [
                    ("true", "false"),
                    ("false", "true"),
                    ("(", ""),
                    (")", ""),
                    (",", ""),
                ];
                let (a, b) = swap[rng.below(swap.len())];
                if let Some(k) = t.iter().position(|s| s == a) {
                    t[k] = b.to_string();
                }
            }
        }
    }
    t.concat()
}

/// Whether a parsed mutant is too dangerous to run (known bug classes).
fn skip_mutant(g: &Graph) -> bool {
    let big = |t: &Type| {
        known(Known::HugeShapes) && t.checked_bytes().is_none_or(|b| b > MUTANT_MAX_BYTES)
    };
    let mut skip = g.param_types().iter().any(big);
    check::walk(g, &mut |op, args, res| {
        if args.iter().chain(res).any(big) {
            skip = true;
        }
        match op {
            Op::Control(ControlOp::While { .. } | ControlOp::TapedWhile { .. })
                if known(Known::EndlessWhile) =>
            {
                skip = true
            }
            Op::Control(ControlOp::Scan { length, .. }) if *length > 1000 => skip = true,
            _ => {}
        }
    });
    skip
}

/// Mutates the printed `text` of a generated graph `n` times; each mutant must parse or fail
/// without panicking, and each one that parses runs on the interpreter and the JIT, which must
/// agree bit for bit in precise mode.
pub fn mutants(text: &str, rng: &mut Rng, n: usize) -> Result<(), String> {
    for _ in 0..n {
        let m = mutate(text, rng);
        bump(&COUNTS.mutants, 1);
        let parsed = guard("parse of a mutant", || Graph::parse(&m))
            .map_err(|e| format!("{e}\nmutant:\n{m}"))?;
        let Ok(g) = parsed else { continue };
        bump(&COUNTS.mutants_parsed, 1);
        let skip = guard("walk of a mutant", || skip_mutant(&g))?;
        if skip {
            continue;
        }
        bump(&COUNTS.mutants_run, 1);
        if check::tracing() {
            eprintln!("fuzz_graphs: running mutant\n{m}");
        }
        let ctx = || format!("mutant:\n{m}");
        // Printing and parsing again must give the same text.
        let text2 =
            guard("print of a mutant", || g.to_text()).map_err(|e| format!("{e}\n{}", ctx()))?;
        let again = guard("reparse of a mutant", || Graph::parse(&text2))
            .map_err(|e| format!("{e}\n{}", ctx()))?;
        match again {
            Ok(g2) if g2.to_text() == text2 => {}
            Ok(g2) => {
                return Err(format!(
                    "mutant text does not round-trip:\n{text2}\nprints back as\n{}",
                    g2.to_text()
                ))
            }
            Err(e) => return Err(format!("printed mutant does not parse: {e}\n{text2}")),
        }
        let args: Vec<Array> = g
            .param_types()
            .iter()
            .map(|t| check::special_input(rng, t))
            .collect();
        bump(&COUNTS.inputs, 1);
        let want = check::run_interp(&g, &args).map_err(|e| format!("{e}\n{}", ctx()))?;
        let got =
            check::run_jit(&g, &args, MathMode::Precise).map_err(|e| format!("{e}\n{}", ctx()))?;
        if let (Ok(w), Ok(h)) = (&want, &got) {
            let gemm = check::traits(&g).gemm;
            for (k, (a, b)) in w.iter().zip(h).enumerate() {
                if !gemm && !check::same(a, b) {
                    return Err(format!(
                        "mutant: jit Precise differs from interp at output {k}:\n  interp {:?}\n  jit    {:?}\n{}",
                        a.to_f64_vec(),
                        b.to_f64_vec(),
                        ctx()
                    ));
                }
            }
        }
        // Transforms of a mutant must not panic either.
        check::jvp_of(&g).map_err(|e| format!("{e}\n{}", ctx()))?;
        check::grad_of(&g).map_err(|e| format!("{e}\n{}", ctx()))?;
    }
    Ok(())
}

fn rand_dims(rng: &mut Rng, max_rank: usize) -> Dims {
    let huge = !known(Known::HugeShapes) && rng.below(20) == 0;
    (0..rng.below(max_rank + 1))
        .map(|_| {
            if huge {
                [1usize << 33, usize::MAX / 2, 1 << 20][rng.below(3)]
            } else {
                rng.below(4)
            }
        })
        .collect()
}

fn rand_dtype(rng: &mut Rng) -> DType {
    DType::ALL[rng.below(4)]
}

fn rand_type(rng: &mut Rng) -> Type {
    let d = rand_dims(rng, 3);
    Type::new(rand_dtype(rng), &d)
}

/// A small graph of random parameter types returning random ones of them (or a constant).
fn rand_body(rng: &mut Rng) -> Graph {
    let mut b = Builder::new();
    let ps: Vec<Value> = (0..rng.below(3)).map(|_| b.param(rand_type(rng))).collect();
    let mut outs = Vec::new();
    for _ in 0..rng.below(3) {
        if !ps.is_empty() && rng.below(2) == 0 {
            outs.push(ps[rng.below(ps.len())]);
        } else {
            let t = Type::new(rand_dtype(rng), &[rng.below(3)]);
            outs.push(b.constant(Array::zeros(&t).expect("a small constant")));
        }
    }
    b.finish(&outs)
}

/// A random op with random (often inconsistent) static parameters.
fn rand_op(rng: &mut Rng) -> Op {
    let axis = |rng: &mut Rng| rng.below(5);
    match rng.below(24) {
        0 => {
            let mut u = UnaryOp::ALL[rng.below(UnaryOp::ALL.len())];
            if let UnaryOp::IntegerPow(_) = u {
                u = UnaryOp::IntegerPow([i32::MIN, -1, 0, 2, i32::MAX][rng.below(5)]);
            }
            Op::Unary(u)
        }
        1 => Op::Binary(BinaryOp::ALL[rng.below(BinaryOp::ALL.len())]),
        2 => Op::Compare(CompareOp::ALL[rng.below(CompareOp::ALL.len())]),
        3 => Op::Convert(ConvertOp::Convert(rand_dtype(rng))),
        4 => Op::Convert(ConvertOp::StopGradient),
        5 => Op::Literal(LiteralOp::Iota {
            dtype: rand_dtype(rng),
            shape: Shape(rand_dims(rng, 3)),
            axis: axis(rng),
        }),
        6 => Op::Shape(ShapeOp::BroadcastInDim {
            shape: Shape(rand_dims(rng, 4)),
            dims: rand_dims(rng, 3).into_boxed_slice(),
        }),
        7 => Op::Shape(ShapeOp::Reshape {
            shape: Shape(rand_dims(rng, 3)),
        }),
        8 => Op::Shape(ShapeOp::Transpose {
            perm: rand_dims(rng, 3).into_boxed_slice(),
        }),
        9 => Op::Shape(ShapeOp::Slice {
            start: rand_dims(rng, 3).into_boxed_slice(),
            limit: rand_dims(rng, 3).into_boxed_slice(),
            stride: rand_dims(rng, 3).into_boxed_slice(),
        }),
        10 => Op::Shape(ShapeOp::Pad {
            lo: rand_dims(rng, 3).into_boxed_slice(),
            hi: rand_dims(rng, 3).into_boxed_slice(),
            interior: rand_dims(rng, 3).into_boxed_slice(),
        }),
        11 => Op::Shape(ShapeOp::Concatenate { axis: axis(rng) }),
        12 => Op::Shape(ShapeOp::Rev {
            axes: rand_dims(rng, 3).into_boxed_slice(),
        }),
        13 => Op::Reduce(
            [
                ReduceOp::Sum {
                    axes: rand_dims(rng, 3),
                },
                ReduceOp::Max {
                    axes: rand_dims(rng, 3),
                },
                ReduceOp::Prod {
                    axes: rand_dims(rng, 3),
                },
                ReduceOp::ArgMin { axis: axis(rng) },
            ][rng.below(4)]
            .clone(),
        ),
        14 => Op::Dot(Box::new(DotGeneral {
            lhs_contract: rand_dims(rng, 2),
            rhs_contract: rand_dims(rng, 2),
            lhs_batch: rand_dims(rng, 1),
            rhs_batch: rand_dims(rng, 1),
        })),
        15 => Op::Index(IndexOp::Cumsum {
            axis: axis(rng),
            reverse: rng.below(2) == 0,
        }),
        16 => Op::Index(IndexOp::DynamicSlice {
            sizes: rand_dims(rng, 3),
        }),
        17 => Op::Index(IndexOp::DynamicUpdateSlice),
        18 => Op::Index(IndexOp::Gather(Default::default())),
        19 => Op::Index(IndexOp::Scatter {
            at: Default::default(),
            combine: ferrax::ir::ops::Combine::Add,
        }),
        20 => Op::Control(ControlOp::Switch {
            branches: (0..rng.below(3))
                .map(|_| Body::new(rand_body(rng)))
                .collect(),
        }),
        21 => Op::Control(ControlOp::Scan {
            body: Body::new(rand_body(rng)),
            length: rng.below(4),
            n_consts: rng.below(3),
            n_carry: rng.below(3),
            reverse: rng.below(2) == 0,
        }),
        22 => Op::Control(ControlOp::While {
            cond: Body::new(rand_body(rng)),
            body: Body::new(rand_body(rng)),
            n_consts: rng.below(3),
        }),
        _ => {
            // Constants stay small: their array exists before any check could refuse it.
            let t = Type::new(rand_dtype(rng), &[rng.below(3), rng.below(3)]);
            Op::Literal(LiteralOp::Const(ferrax::ir::ops::Literal::new(
                Array::zeros(&t).expect("a small constant"),
            )))
        }
    }
}

/// Random ops on random operands: the builder must answer with a value or an error, and the
/// graph of the accepted ones must run on the interpreter and the JIT without panicking. Also
/// calls `g` with arguments of wrong types, which must be an error.
pub fn ill_typed(g: &Graph, rng: &mut Rng, n: usize) -> Result<(), String> {
    let mut b = Builder::new();
    let mut pool: Vec<Value> = g.param_types().into_iter().map(|t| b.param(t)).collect();
    for _ in 0..2 {
        let t = rand_type(rng);
        if t.checked_bytes().is_some_and(|b| b < 1 << 20) {
            pool.push(b.constant(check::moderate_input(rng, &t, -2.0, 2.0)));
        }
    }
    pool.push(b.constant(Array::scalar(DType::I32, 1.0)));
    let mut log = Vec::new();
    for _ in 0..n {
        let op = rand_op(rng);
        let args: Vec<Value> = (0..rng.below(5))
            .map(|_| pool[rng.below(pool.len())])
            .collect();
        let tys: Vec<String> = args.iter().map(|&a| b.ty(a).to_string()).collect();
        log.push(format!("{op:?} on ({})", tys.join(", ")));
        bump(&COUNTS.ill_typed, 1);
        if check::tracing() {
            eprintln!(
                "fuzz_graphs: pushing {}",
                log.last().map_or("", |s| s.as_str())
            );
        }
        let r = guard("push of a random op", || b.push(op, &args))
            .map_err(|e| format!("{e}\nops:\n  {}", log.join("\n  ")))?;
        if let Ok(rs) = r {
            let tys: Vec<Type> = rs.iter().map(|&r| b.ty(r).clone()).collect();
            // Known: huge results are left out of the graph that runs.
            if tys
                .iter()
                .all(|t| t.checked_bytes().is_some_and(|n| n <= MUTANT_MAX_BYTES))
            {
                pool.extend(rs.iter().copied());
            }
        }
    }
    let outs: Vec<Value> = pool.iter().rev().take(3).copied().collect();
    let h = b.finish(&outs);
    let ctx = || {
        format!(
            "graph of random ops:\n{}\nops:\n  {}",
            h.to_text(),
            log.join("\n  ")
        )
    };
    let skip = guard("walk", || skip_mutant(&h))?;
    if !skip {
        if check::tracing() {
            eprintln!("fuzz_graphs: running random ops\n{}", log.join("\n"));
        }
        let args: Vec<Array> = h
            .param_types()
            .iter()
            .map(|t| check::special_input(rng, t))
            .collect();
        let want = check::run_interp(&h, &args).map_err(|e| format!("{e}\n{}", ctx()))?;
        let got =
            check::run_jit(&h, &args, MathMode::Precise).map_err(|e| format!("{e}\n{}", ctx()))?;
        if let (Ok(w), Ok(j)) = (&want, &got) {
            let gemm = check::traits(&h).gemm;
            if !gemm && w.iter().zip(j).any(|(a, b)| !check::same(a, b)) {
                return Err(format!("jit Precise differs from interp\n{}", ctx()));
            }
        }
    }
    // Wrong arguments: one type changed, or one too many.
    let mut wrong: Vec<Array> = g
        .param_types()
        .iter()
        .map(|t| check::special_input(rng, t))
        .collect();
    if rng.below(2) == 0 || wrong.is_empty() {
        wrong.push(Array::scalar(DType::F64, 1.0));
    } else {
        let k = rng.below(wrong.len());
        let t = rand_type(rng);
        if t == wrong[k].ty() || t.checked_bytes().is_none_or(|b| b > 1 << 20) {
            wrong.push(Array::scalar(DType::F64, 1.0));
        } else {
            wrong[k] = Array::zeros(&t).expect("a small argument");
        }
    }
    let ctx = || {
        format!(
            "graph:\n{}\ncalled with {:?}",
            g.to_text(),
            wrong.iter().map(|a| a.ty().to_string()).collect::<Vec<_>>()
        )
    };
    if check::run_interp(g, &wrong)
        .map_err(|e| format!("{e}\n{}", ctx()))?
        .is_ok()
    {
        return Err(format!("interp accepted wrong arguments\n{}", ctx()));
    }
    if check::run_jit(g, &wrong, MathMode::Precise)
        .map_err(|e| format!("{e}\n{}", ctx()))?
        .is_ok()
    {
        return Err(format!("jit accepted wrong arguments\n{}", ctx()));
    }
    Ok(())
}
