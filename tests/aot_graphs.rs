//! Random graphs of the differential fuzzer (`fuzz::gen`: every primitive family but
//! convolutions and windows, which `aot/tests/runtime.rs` covers, control flow included), with
//! their gradients where they have a scalar float output, exported as objects: every one
//! exports, for the host and for AArch64, and — when `cc` and `nm` are present (the test says
//! so and skips that part otherwise) — the objects import only C library functions and, linked
//! into one C program each, give the interpreter's results bit for bit on inputs holding
//! every IEEE special.

#[allow(dead_code)]
mod fuzz;

use ferrax::aot::{Export, Exporter, Target};
use ferrax::ir::{Array, DType, Graph, Type};
use ferrax::{JitOptions, MathMode};
use fuzz::check::{grad_of, guard, run_interp, same, special_input, Rng};
use fuzz::gen::{Gen, Tape};
use std::fmt::Write;
use std::process::Command;

#[path = "../aot/tests/support/mod.rs"]
mod support;
use std::sync::Arc;
use support::{available, declare_buffers, driver_prelude, link_and_run, print_outputs, scratch};

/// Graphs per object (one C program each).
const PER_OBJECT: usize = 40;
/// Objects.
const OBJECTS: usize = 4;

/// The fuzzer's limit on `while_loop` iterations, so a loop that never ends returns a status.
const MAX_WHILE: u64 = 10_000;

/// The `n`-th random graph (from a tape of pseudo-random choices), or `None` when the
/// generator could not build a verified one.
fn random_graph(n: u64) -> Option<Graph> {
    let mut rng = Rng(0xa07 ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = 100 + (rng.next() % 600) as usize;
    let tape: Vec<u32> = (0..len).map(|_| rng.next() as u32).collect();
    let mut t = Tape::new(&tape);
    let g = guard("generate", || Gen::new(&mut t).graph(12)).ok()?.graph;
    g.verify().ok()?;
    Some(g)
}

/// The gradient of `g`'s first float output, summed, with respect to its float parameters
/// (the fuzzer's `grad_of`), when it has both.
fn gradient(g: &Graph) -> Option<Graph> {
    grad_of(g).ok().flatten()
}

/// The graphs of one object (random graphs and gradients, named `g0`, `g1`, ...) and how
/// many of them are gradients.
fn graphs(object: usize) -> (Vec<Graph>, usize) {
    let mut out = Vec::new();
    let mut grads = 0;
    let mut n = (object * 1000) as u64;
    while out.len() < PER_OBJECT {
        n += 1;
        if let Some(g) = random_graph(n) {
            if let Some(d) = gradient(&g) {
                out.push(d);
                grads += 1;
            }
            out.push(g);
        }
    }
    if out.len() > PER_OBJECT {
        // The last pushed pair overshot: its gradient stays, the graph goes.
        out.truncate(PER_OBJECT);
    }
    (out, grads)
}

/// Exports `graphs` for `target` as `gK` functions.
fn export(graphs: &[Graph], target: Target) -> Export {
    let opts = JitOptions {
        math: MathMode::Precise,
        max_while_iterations: Some(MAX_WHILE),
        ..JitOptions::default()
    };
    let mut ex = Exporter::new("fuzzed", target).unwrap().with_options(opts);
    for (k, g) in graphs.iter().enumerate() {
        ex.add_graph(&format!("g{k}"), Arc::new(g.clone()))
            .unwrap_or_else(|e| panic!("g{k} does not export: {e}\n{}", g.to_text()));
    }
    ex.finish()
        .unwrap_or_else(|e| panic!("the object does not build: {e}"))
}

/// C library functions the fuzzed graphs' objects may import.
const LIBC: &[&str] = &[
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "sinh",
    "cosh",
    "tanh",
    "exp",
    "exp2",
    "expm1",
    "log",
    "log1p",
    "hypot",
    "pow",
    "fmod",
    "round",
    "sincos",
    "memcpy",
    "memset",
    "memmove",
    "realloc",
    "free",
    "ceil",
    "floor",
    "trunc",
    "nearbyint",
    "fma",
];

/// Checks with `nm -u` that the object at `path` imports C library functions only.
fn check_imports(path: &std::path::Path) {
    let out = Command::new("nm").arg("-u").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let name = line.split_whitespace().last().unwrap_or("");
        let base = name.strip_suffix('f').filter(|b| LIBC.contains(b));
        assert!(
            LIBC.contains(&name) || base.is_some(),
            "{} imports `{name}`, not a C library function",
            path.display()
        );
    }
}

/// An array of type `t` from bit patterns.
fn from_bits(t: &Type, b: &[u64]) -> Array {
    let dims = t.dims();
    match t.dtype {
        DType::F64 => Array::from_f64(dims, b.iter().map(|&x| f64::from_bits(x)).collect()),
        DType::F32 => Array::from_f32(dims, b.iter().map(|&x| f32::from_bits(x as u32)).collect()),
        DType::I32 => Array::from_i32(dims, b.iter().map(|&x| x as u32 as i32).collect()),
        DType::Bool => Array::from_bool(dims, b.iter().map(|&x| x != 0).collect()),
    }
    .unwrap()
}

/// A C program calling every graph on `inputs` and printing `gK status` and then, per output,
/// `gK j bits...`.
fn driver(graphs: &[Graph], inputs: &[Vec<Array>]) -> String {
    let mut c = driver_prelude("fuzzed.h");
    for (k, (g, args)) in graphs.iter().zip(inputs).enumerate() {
        let up = format!("G{k}");
        let _ = writeln!(c, "  {{");
        let outs = g.output_types();
        let mut call = declare_buffers(&mut c, args, &outs);
        call.push("ws".into());
        let _ = writeln!(
            c,
            "    void *ws = aligned_alloc(16, ({up}_WORKSPACE_BYTES + 15) / 16 * 16 + 16);\n    \
             if (!ws) return 2;\n    int status = g{k}({});\n    free(ws);\n    \
             printf(\"g{k} status %d\\n\", status);",
            call.join(", ")
        );
        print_outputs(&mut c, &format!("g{k}"), &outs);
        let _ = writeln!(c, "  }}");
    }
    c.push_str("  return 0;\n}\n");
    c
}

#[test]
fn random_graphs_and_gradients_export_and_run_as_the_interpreter() {
    let tools = available("cc") && available("nm");
    if !tools {
        eprintln!("cc or nm is not available: the objects are exported, not linked or inspected");
    }
    let (mut compared, mut gradients, mut stopped) = (0, 0, 0);
    for object in 0..OBJECTS {
        let (graphs, grads) = graphs(object);
        gradients += grads;
        let arm = export(&graphs, Target::triple("aarch64-unknown-linux-gnu"));
        let host = export(&graphs, Target::Host);
        if !tools {
            continue;
        }
        let dir = scratch(&format!("graphs-{object}"));
        let written = host.write_to(&dir).unwrap();
        check_imports(&written.object);
        let arm_dir = dir.join("aarch64");
        check_imports(&arm.write_to(&arm_dir).unwrap().object);
        let mut rng = Rng(77 + object as u64);
        let inputs: Vec<Vec<Array>> = graphs
            .iter()
            .map(|g| {
                g.param_types()
                    .iter()
                    .map(|t| special_input(&mut rng, t))
                    .collect()
            })
            .collect();
        let out = link_and_run(
            &dir,
            &driver(&graphs, &inputs),
            &written.object,
            &["-std=c11", "-O0", "-w"],
        );
        let mut lines = out.lines();
        for (k, (g, args)) in graphs.iter().zip(&inputs).enumerate() {
            let status = lines.next().unwrap_or_default();
            let want = run_interp(g, args).unwrap();
            let outs: Vec<&str> = (0..g.output_types().len())
                .map(|_| lines.next().unwrap_or_default())
                .collect();
            match want {
                // The interpreter stopped a loop at the limit: so must the object.
                Err(_) => {
                    assert_eq!(status, format!("g{k} status 1"), "g{k}");
                    stopped += 1;
                }
                Ok(want) => {
                    assert_eq!(status, format!("g{k} status 0"), "g{k}:\n{}", g.to_text());
                    for (j, (w, line)) in want.iter().zip(outs).enumerate() {
                        let b: Vec<u64> = line
                            .split_whitespace()
                            .skip(2)
                            .map(|h| u64::from_str_radix(h, 16).unwrap())
                            .collect();
                        let got = from_bits(&w.ty(), &b);
                        assert!(
                            same(&got, w),
                            "g{k} output {j}: the object gives {:?}, the interpreter {:?}\n{}",
                            got.to_f64_vec(),
                            w.to_f64_vec(),
                            g.to_text()
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "{} graphs ({gradients} gradients) exported for two targets; {compared} outputs \
         compared, {stopped} calls stopped at the iteration limit",
        OBJECTS * PER_OBJECT
    );
    assert!(
        gradients >= 10,
        "only {gradients} gradients among the graphs"
    );
    if tools {
        assert!(compared > 50, "only {compared} outputs compared");
    }
}
