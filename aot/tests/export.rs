//! Exported objects: their symbols and architecture (read with the `object` crate, which
//! cranelift-object already depends on), unsupported targets and names refused with errors
//! naming them (and the in-process-only `flush_subnormals` option), and — when a C compiler `cc` is present (the tests say so and skip that part
//! otherwise) — results of the linked object equal to the JIT's bit for bit, for every dtype,
//! array constants, loops, matrix products, several outputs and a workspace. The ops whose
//! JIT code calls Rust helpers are exported in `runtime.rs`.

use ferrax_aot::{Export, Exporter, Target};
use ferrax_ir::{function, Array, DType, Function, IntoFunction, Tensor, Type};
use ferrax_jit::{jit_with, JitOptions, MathMode};
use ferrax_transforms::api::{grad, hessian};
use object::{Object, ObjectSymbol};
use std::process::Command;

mod support;
use support::{available, bits, case_driver, link_and_run, output_bits, scratch};

/// The chained Rosenbrock function.
fn rosenbrock(x: Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.slice_axis(0, 0, n - 1);
    let tail = x.slice_axis(0, 1, n);
    (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
}

/// The seed function's gradient with respect to all three arguments.
fn seed_grad() -> Function {
    grad(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln())
        .wrt((0, 1, 2))
        .into_function()
}

/// Several outputs of three dtypes, an array constant, a matrix product, a reduction and a
/// comparison, with a tensor workspace.
fn mixed() -> Function {
    function(|x: Tensor, k: Tensor| {
        let w = Tensor::constant(
            Array::from_f32(
                [4, 3],
                (0..12).map(|i| 0.25 * i as f32 - 1.0).collect::<Vec<_>>(),
            )
            .expect("a 4x3 constant"),
        );
        let y = x.matmul(&w).tanh() + x.sum_all().exp();
        let big = x.gt(0.0);
        (y, k.clone() * k + 3.0, big)
    })
}

/// A `fori_loop` (its body inlined in the entry) over a vector.
fn looped() -> Function {
    function(|x: Tensor| {
        let out = ferrax_ir::control_api::fori_loop(
            0,
            5,
            |i, c| vec![c[0].sin() * 1.5 + i.astype(DType::F64)],
            &[x],
        );
        out[0].clone()
    })
}

/// The cases the linking test runs: name, function, inputs.
fn cases() -> Vec<(&'static str, Function, Vec<Array>)> {
    let n = 8;
    let point: Vec<f64> = (0..n)
        .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
        .collect();
    vec![
        (
            "seed_grad",
            seed_grad(),
            vec![Array::from(1.0), Array::from(2.0), Array::from(3.0)],
        ),
        (
            "rosen_hessian",
            hessian(rosenbrock).into_function(),
            vec![Array::from(point.clone())],
        ),
        (
            "rosen_grad",
            grad(rosenbrock).into_function(),
            vec![Array::from(point.clone())],
        ),
        (
            "mixed",
            mixed(),
            vec![
                Array::from_f32([2, 4], vec![0.5, -1.25, 2.0, 0.0, -0.75, 3.5, 1e-3, -2.0])
                    .unwrap(),
                Array::from_i32([3], vec![-7, 0, 46341]).unwrap(),
            ],
        ),
        (
            "looped",
            looped(),
            vec![Array::from(vec![0.1, -2.0, 3.0, 40.0])],
        ),
    ]
}

/// Exports every case for `target`.
fn export(target: Target) -> Export {
    let mut ex = Exporter::new("cases", target).expect("an exporter");
    for (name, f, args) in cases() {
        let types: Vec<Type> = args.iter().map(Array::ty).collect();
        ex.add(name, &f, &types).expect("the case exports");
    }
    ex.finish().expect("the object builds")
}

/// The C library symbols an exported object may import.
const LIBC: &[&str] = &[
    "sin",
    "cos",
    "sincos",
    "exp",
    "log",
    "pow",
    "tanh",
    "sinf",
    "cosf",
    "sincosf",
    "expf",
    "logf",
    "powf",
    "tanhf",
    "memcpy",
    "memset",
    "memmove",
    "fmod",
    "fmodf",
    "ceil",
    "floor",
    "trunc",
    "nearbyint",
    "ceilf",
    "floorf",
    "truncf",
    "nearbyintf",
    "fma",
    "fmaf",
    "round",
    "roundf",
];

/// Checks an object's defined and imported symbols.
fn check_symbols(file: &object::File) {
    let mut defined = Vec::new();
    for sym in file.symbols() {
        let name = sym.name().expect("a UTF-8 symbol name");
        if sym.is_undefined() {
            if !name.is_empty() {
                assert!(
                    LIBC.contains(&name),
                    "the object imports `{name}`, which is not a C library function"
                );
            }
        } else if sym.is_global() {
            defined.push(name.to_string());
            assert_eq!(
                sym.kind(),
                object::SymbolKind::Text,
                "`{name}` is not a function"
            );
        }
    }
    defined.sort();
    let mut want: Vec<String> = cases().iter().map(|c| c.0.to_string()).collect();
    want.sort();
    assert_eq!(defined, want, "the exported (global) symbols");
}

#[test]
fn host_object_exports_one_symbol_per_function_and_imports_only_libc() {
    let ex = export(Target::Host);
    let file = object::File::parse(ex.object()).expect("an ELF object");
    assert_eq!(file.kind(), object::ObjectKind::Relocatable);
    check_symbols(&file);
    let header = ex.header();
    assert!(header.contains(
        "int32_t seed_grad(const double *in0, const double *in1, const double *in2, \
         double *out0, double *out1, double *out2, void *workspace);"
    ));
    assert!(header.contains("#define ROSEN_HESSIAN_OUT0_SHAPE {8, 8}"));
    assert!(header.contains("#define ROSEN_HESSIAN_OUT0_BYTES 512"));
    assert!(header.contains("#define MIXED_IN1_DTYPE FERRAX_AOT_I32"));
    assert!(header.contains("#define MIXED_OUT2_DTYPE FERRAX_AOT_BOOL"));
    assert!(ex
        .binding()
        .contains("pub fn call(in0: &[f64], out0: &mut [f64]) -> Result<(), super::AotError>"));
    // `nm` agrees, where it is installed.
    if let Some(out) = tool_output("nm", &ex) {
        for (name, _, _) in cases() {
            assert!(
                out.lines().any(|l| l.ends_with(&format!(" T {name}"))),
                "nm does not list {name} as a global text symbol:\n{out}"
            );
        }
    }
}

#[test]
fn aarch64_object_has_the_aarch64_architecture() {
    let ex = export(Target::triple("aarch64-unknown-linux-gnu"));
    assert_eq!(ex.triple(), "aarch64-unknown-linux-gnu");
    let file = object::File::parse(ex.object()).expect("an ELF object");
    assert_eq!(file.architecture(), object::Architecture::Aarch64);
    assert_eq!(file.kind(), object::ObjectKind::Relocatable);
    check_symbols(&file);
    // A baseline x86-64 object too (no host feature detection).
    let x86 = export(Target::triple("x86_64-unknown-linux-gnu"));
    let file = object::File::parse(x86.object()).expect("an ELF object");
    assert_eq!(file.architecture(), object::Architecture::X86_64);
    if let Some(out) = tool_output("objdump", &ex) {
        assert!(out.contains("aarch64"), "objdump -f: {out}");
    }
}

/// The output of `tool` (`nm` or `objdump -f`) on the export's object, or `None` with a
/// message when the tool is missing.
fn tool_output(tool: &str, ex: &Export) -> Option<String> {
    let dir = scratch(&format!("tool-{tool}-{}", ex.triple()));
    let written = ex.write_to(&dir).expect("write the files");
    let mut cmd = Command::new(tool);
    if tool == "objdump" {
        cmd.arg("-f");
    }
    match cmd.arg(&written.object).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => {
            eprintln!("{tool} is not available: skipping its check");
            None
        }
    }
}

#[test]
fn unsupported_targets_and_bad_names_are_errors_naming_them() {
    for t in [
        "riscv64gc-unknown-linux-gnu",
        "x86_64-pc-windows-msvc",
        "nonsense",
    ] {
        let mut ex = Exporter::new("e", Target::triple(t)).unwrap();
        let s = Type::scalar(DType::F64);
        ex.add("f", seed_grad(), &[s.clone(), s.clone(), s])
            .unwrap();
        let err = ex.finish().unwrap_err();
        assert!(err.message.contains(t), "{err}");
    }
    // Names: C identifiers, unique ignoring case.
    assert!(Exporter::new("1x", Target::Host).is_err());
    let mut ex = Exporter::new("e", Target::Host).unwrap();
    let s = Type::scalar(DType::F64);
    let sq = function(|x: Tensor| x.square());
    ex.add("f", &sq, std::slice::from_ref(&s)).unwrap();
    assert!(ex.add("F", &sq, std::slice::from_ref(&s)).is_err());
    assert!(ex.add("int", &sq, std::slice::from_ref(&s)).is_err());
    assert!(ex.add("a-b", &sq, std::slice::from_ref(&s)).is_err());
    // Flushing subnormals is a mode of code run in this process: an object's caller owns its
    // floating-point mode, so the option is refused, naming it.
    let opts = JitOptions {
        flush_subnormals: true,
        ..JitOptions::default()
    };
    let mut ex = Exporter::new("e", Target::Host).unwrap().with_options(opts);
    ex.add("f", &sq, std::slice::from_ref(&s)).unwrap();
    let err = ex.finish().unwrap_err();
    assert!(err.message.contains("flush_subnormals"), "{err}");
}

/// A C program that calls every case on its inputs (given as bit patterns) and prints each
/// output's bits in hex, one line per output: `name k bits...`.
fn driver() -> String {
    case_driver("cases.h", cases())
}

#[test]
fn linked_object_equals_the_jit_bit_for_bit() {
    if !available("cc") {
        eprintln!("cc is not available: skipping the link test (exporting needs no C compiler)");
        return;
    }
    let ex = export(Target::Host);
    let dir = scratch("link");
    let written = ex.write_to(&dir).expect("write the files");
    let out = link_and_run(
        &dir,
        &driver(),
        &written.object,
        &["-std=c11", "-O1", "-Wall", "-Werror"],
    );
    let precise = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let mut checked = 0;
    for (name, f, args) in cases() {
        let want = jit_with(&f, precise).unwrap().call_arrays(&args).unwrap();
        for (k, w) in want.iter().enumerate() {
            let tag = format!("{name} {k}");
            let got = output_bits(&out, &tag);
            assert_eq!(
                got,
                bits(w),
                "{tag}: the object's bits differ from the JIT's"
            );
            checked += w.size();
        }
    }
    assert!(checked > 64, "only {checked} elements compared");
}
