//! The Rust binding of an export: the `extern "C"` declarations, and per function a module
//! with its types as constants and a safe `call` that checks every slice's length before
//! entering the object's code.

use crate::Entry;
use ferrax_ir::DType;
use std::fmt::Write;

/// The Rust type of one element of `dtype`.
fn rust_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I32 => "i32",
        DType::Bool => "bool",
    }
}

/// The binding text for the entries of the export `name`.
pub(crate) fn generate(name: &str, triple: &str, entries: &[Entry]) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "// Rust binding of the functions in {name}.o, compiled by ferrax-aot {} for {triple}.\n\
         // Generated; do not edit. Include it with `include!` (or as a module) and link the\n\
         // object from a build script:\n\
         //     println!(\"cargo:rustc-link-arg=/path/to/{name}.o\");\n\
         //     println!(\"cargo:rustc-link-lib=m\");\n\
         // Each function's module holds its types as constants and a safe `call` that checks\n\
         // the length of every slice (and of the workspace) before the call.\n",
        env!("CARGO_PKG_VERSION")
    );
    r.push_str(ERROR_TYPE);
    r.push_str(
        "\n/// The C entry points of the object (see its header for the contract).\n\
         #[allow(dead_code)]\npub mod ffi {\n    unsafe extern \"C\" {\n",
    );
    for e in entries {
        let mut params = Vec::new();
        for (k, t) in e.inputs.iter().enumerate() {
            params.push(format!("in{k}: *const {}", rust_type(t.dtype)));
        }
        for (k, t) in e.outputs.iter().enumerate() {
            params.push(format!("out{k}: *mut {}", rust_type(t.dtype)));
        }
        params.push("workspace: *mut u8".to_string());
        let _ = writeln!(
            r,
            "        /// `{}`: {} input(s), {} output(s).\n        pub fn {}({}) -> i32;",
            e.name,
            e.inputs.len(),
            e.outputs.len(),
            e.name,
            params.join(", ")
        );
    }
    r.push_str("    }\n}\n");
    for e in entries {
        entry(&mut r, e);
    }
    r
}

/// The error type the safe wrappers return.
const ERROR_TYPE: &str = r#"/// Why a call through a safe wrapper did not run or did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AotError {
    /// A slice does not hold the number of elements of its type (nothing was called).
    Length {
        /// The function.
        function: &'static str,
        /// The argument (`in0`, `out1`, `workspace`, ...).
        argument: &'static str,
        /// The elements its type holds (for the workspace: at least this many 16-byte words).
        expected: usize,
        /// The slice's length.
        found: usize,
    },
    /// The code returned a non-zero status (1: a while_loop ran over its iteration limit;
    /// 2: a reverse-mode while_loop's tape could not be allocated; 3: it would outgrow the size
    /// limit).
    Status {
        /// The function.
        function: &'static str,
        /// The status.
        status: i32,
    },
}

impl std::fmt::Display for AotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AotError::Length { function, argument, expected, found } => write!(
                f,
                "{function}: argument {argument} expects {expected} elements but the slice has {found}"
            ),
            AotError::Status { function, status } => {
                write!(f, "{function}: the call returned status {status}")
            }
        }
    }
}

impl std::error::Error for AotError {}

/// Checks one slice's length.
#[allow(dead_code)]
fn check_len(
    function: &'static str,
    argument: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), AotError> {
    if expected == found {
        Ok(())
    } else {
        Err(AotError::Length { function, argument, expected, found })
    }
}

// The workspace is a slice of u128, which the safe wrappers rely on to be 16-byte aligned.
const _: () = assert!(std::mem::align_of::<u128>() >= 16);
"#;

/// Appends one function's module.
fn entry(r: &mut String, e: &Entry) {
    let shapes = |types: &[ferrax_ir::Type]| -> String {
        let s: Vec<String> = types
            .iter()
            .map(|t| {
                let d: Vec<String> = t.shape.dims().iter().map(|d| d.to_string()).collect();
                format!("&[{}]", d.join(", "))
            })
            .collect();
        s.join(", ")
    };
    let lens = |types: &[ferrax_ir::Type]| -> String {
        let s: Vec<String> = types.iter().map(|t| t.size().to_string()).collect();
        s.join(", ")
    };
    let sig: Vec<String> = e.inputs.iter().map(|t| t.to_string()).collect();
    let outs: Vec<String> = e.outputs.iter().map(|t| t.to_string()).collect();
    let (ni, no) = (e.inputs.len(), e.outputs.len());
    let _ = writeln!(
        r,
        "\n/// `{}`: ({}) -> ({}).\n#[allow(dead_code, clippy::too_many_arguments)]\npub mod {} {{",
        e.name,
        sig.join(", "),
        outs.join(", "),
        e.name
    );
    let _ = writeln!(
        r,
        "    /// The input shapes.\n    pub const INPUT_SHAPES: [&[usize]; {ni}] = [{}];\n\
         \x20   /// The input element counts.\n    pub const INPUT_LENS: [usize; {ni}] = [{}];\n\
         \x20   /// The output shapes.\n    pub const OUTPUT_SHAPES: [&[usize]; {no}] = [{}];\n\
         \x20   /// The output element counts.\n    pub const OUTPUT_LENS: [usize; {no}] = [{}];\n\
         \x20   /// The workspace a call needs, in bytes.\n    pub const WORKSPACE_BYTES: usize = {};\n\
         \x20   /// The workspace in 16-byte words (the length of `call_with`'s workspace).\n\
         \x20   pub const WORKSPACE_WORDS: usize = {};",
        shapes(&e.inputs),
        lens(&e.inputs),
        shapes(&e.outputs),
        lens(&e.outputs),
        e.workspace,
        e.workspace.div_ceil(16)
    );
    let mut params = Vec::new();
    let mut names = Vec::new();
    for (k, t) in e.inputs.iter().enumerate() {
        params.push(format!("in{k}: &[{}]", rust_type(t.dtype)));
        names.push(format!("in{k}"));
    }
    for (k, t) in e.outputs.iter().enumerate() {
        params.push(format!("out{k}: &mut [{}]", rust_type(t.dtype)));
        names.push(format!("out{k}"));
    }
    let _ = writeln!(
        r,
        "\n    /// Calls `{0}` after checking every slice's length, with a workspace allocated\n\
         \x20   /// for the call (none when it needs none).\n\
         \x20   pub fn call({1}) -> Result<(), super::AotError> {{\n\
         \x20       let mut ws = vec![0u128; WORKSPACE_WORDS];\n\
         \x20       call_with(&mut ws, {2})\n    }}",
        e.name,
        params.join(", "),
        names.join(", ")
    );
    let mut checks = String::new();
    for k in 0..ni {
        let _ = writeln!(
            checks,
            "        super::check_len(\"{0}\", \"in{k}\", INPUT_LENS[{k}], in{k}.len())?;",
            e.name
        );
    }
    for k in 0..no {
        let _ = writeln!(
            checks,
            "        super::check_len(\"{0}\", \"out{k}\", OUTPUT_LENS[{k}], out{k}.len())?;",
            e.name
        );
    }
    let mut args: Vec<String> = (0..ni).map(|k| format!("in{k}.as_ptr()")).collect();
    args.extend((0..no).map(|k| format!("out{k}.as_mut_ptr()")));
    args.push("workspace.as_mut_ptr().cast::<u8>()".to_string());
    let _ = writeln!(
        r,
        "\n    /// Calls `{0}` after checking every slice's length, with a caller-provided\n\
         \x20   /// workspace of at least `WORKSPACE_WORDS` words (reusable across calls).\n\
         \x20   pub fn call_with(workspace: &mut [u128], {1}) -> Result<(), super::AotError> {{\n\
         \x20       if workspace.len() < WORKSPACE_WORDS {{\n\
         \x20           return Err(super::AotError::Length {{ function: \"{0}\", argument: \"workspace\", \
         expected: WORKSPACE_WORDS, found: workspace.len() }});\n        }}\n\
         {2}\
         \x20       // SAFETY: every slice holds exactly the elements of its type (checked above),\n\
         \x20       // outputs are exclusive borrows, so they overlap nothing, and the workspace is\n\
         \x20       // 16-byte aligned and large enough: the header's contract.\n\
         \x20       let status = unsafe {{ super::ffi::{0}({3}) }};\n\
         \x20       if status == 0 {{\n            Ok(())\n        }} else {{\n\
         \x20           Err(super::AotError::Status {{ function: \"{0}\", status }})\n        }}\n    }}\n}}",
        e.name,
        params.join(", "),
        checks,
        args.join(", ")
    );
}
