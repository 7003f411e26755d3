//! Shared pieces of the tests that link exported objects into a C program: element bit
//! patterns, the C driver's declarations and printing, compiling and running it with `cc`.
//! The aot crate's tests and the facade's random-graph export test include this file.

#![allow(dead_code)]

use ferrax_ir::{Array, DType, Data, Type};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `tool` runs here.
pub fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A fresh directory `aot-<name>` under the target directory for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("aot-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// The bit patterns of an array's elements, as the C driver prints them.
pub fn bits(a: &Array) -> Vec<u64> {
    match a.data() {
        Data::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        Data::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        Data::I32(v) => v.iter().map(|&x| x as u32 as u64).collect(),
        Data::Bool(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

/// The C type and the unsigned integer type of the same size for a dtype.
pub fn c_types(dtype: DType) -> (&'static str, &'static str) {
    match dtype {
        DType::F64 => ("double", "uint64_t"),
        DType::F32 => ("float", "uint32_t"),
        DType::I32 => ("int32_t", "uint32_t"),
        DType::Bool => ("bool", "uint8_t"),
    }
}

/// The start of a C driver including `header`.
pub fn driver_prelude(header: &str) -> String {
    format!(
        "#include \"{header}\"\n#include <inttypes.h>\n#include <stdio.h>\n#include <stdlib.h>\n\
         #include <string.h>\n\nint main(void) {{\n"
    )
}

/// Declares, inside a driver's block, the input buffers `in0..` holding `args` (copied from
/// their bit patterns) and the output buffers `out0..` of types `outs`; returns the call's
/// argument list without the workspace.
pub fn declare_buffers(c: &mut String, args: &[Array], outs: &[Type]) -> Vec<String> {
    let mut call = Vec::new();
    for (k, a) in args.iter().enumerate() {
        let (ct, ut) = c_types(a.dtype());
        let mut b: Vec<String> = bits(a).iter().map(|x| format!("{x:#x}u")).collect();
        if b.is_empty() {
            b.push("0".into());
        }
        let _ = writeln!(
            c,
            "    static const {ut} bin{k}[] = {{{}}};\n    static {ct} in{k}[{}];\n    \
             memcpy(in{k}, bin{k}, {} * sizeof({ut}));",
            b.join(", "),
            a.size().max(1),
            a.size()
        );
        call.push(format!("in{k}"));
    }
    for (k, t) in outs.iter().enumerate() {
        let (ct, _) = c_types(t.dtype);
        let _ = writeln!(c, "    static {ct} out{k}[{}];", t.size().max(1));
        call.push(format!("out{k}"));
    }
    call
}

/// Prints, inside a driver's block, one line `tag k bits...` per output buffer `outk`.
pub fn print_outputs(c: &mut String, tag: &str, outs: &[Type]) {
    for (k, t) in outs.iter().enumerate() {
        let (_, ut) = c_types(t.dtype);
        let _ = writeln!(
            c,
            "    printf(\"{tag} {k}\");\n    for (int i = 0; i < {}; i++) {{\n      \
             {ut} b;\n      memcpy(&b, (const char *)out{k} + i * sizeof b, sizeof b);\n      \
             printf(\" %\" PRIx64, (uint64_t)b);\n    }}\n    printf(\"\\n\");",
            t.size()
        );
    }
}

/// Compiles the driver `source` in `dir` against `object` with `cc` (with `flags`), runs it
/// and returns its standard output, asserting that both steps succeed.
pub fn link_and_run(dir: &Path, source: &str, object: &Path, flags: &[&str]) -> String {
    let src = dir.join("driver.c");
    std::fs::write(&src, source).unwrap();
    let exe = dir.join("driver");
    let cc = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg(object)
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "the driver failed: {:?}", run.status);
    String::from_utf8(run.stdout).unwrap()
}

/// The bit patterns on the driver's line for output `tag` (`name k`).
pub fn output_bits(out: &str, tag: &str) -> Vec<u64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag} ")) || *l == tag)
        .unwrap_or_else(|| panic!("no line for {tag} in\n{out}"));
    line.split_whitespace()
        .skip(2)
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .collect()
}

/// A C driver including `header` that calls each exported function `name` of `cases` on its
/// arguments (with a workspace of its `NAME_WORKSPACE_BYTES`), returns 1 if a call fails, and
/// prints each output's bits on a line `name k bits...`.
pub fn case_driver<'a>(
    header: &str,
    cases: impl IntoIterator<Item = (&'a str, ferrax_ir::Function, Vec<Array>)>,
) -> String {
    let mut c = driver_prelude(header);
    for (name, f, args) in cases {
        let types: Vec<Type> = args.iter().map(Array::ty).collect();
        let outs = f.specialize(&types).unwrap().output_types();
        let up = name.to_uppercase();
        let _ = writeln!(c, "  {{");
        let call = declare_buffers(&mut c, &args, &outs);
        let _ = writeln!(
            c,
            "    void *ws = {up}_WORKSPACE_BYTES ? aligned_alloc(16, ({up}_WORKSPACE_BYTES + 15) / 16 * 16) : NULL;\n    \
             if ({up}_WORKSPACE_BYTES && !ws) return 2;\n    \
             if ({name}({}, ws) != 0) return 1;\n    free(ws);",
            call.join(", ")
        );
        print_outputs(&mut c, name, &outs);
        let _ = writeln!(c, "  }}");
    }
    c.push_str("  return 0;\n}\n");
    c
}
