//! Ahead-of-time export: functions ferrax can compile, written as a relocatable object file
//! that C, C++ or Rust programs link, with a C header and a Rust binding.
//!
//! ```no_run
//! use ferrax_aot::{Exporter, Target};
//! use ferrax_ir::{function, DType, Tensor, Type};
//! # fn main() -> ferrax_ir::Result<()> {
//! let f = function(|x: Tensor| (&x * &x).sum_all());
//! let mut ex = Exporter::new("squares", Target::Host)?;
//! ex.add("sum_squares", &f, &[Type::new(DType::F64, &[8])])?;
//! let export = ex.finish()?;
//! export.write_to(std::path::Path::new("target/squares"))?;
//! println!("{}", export.link_line("main.c", "main"));
//! # Ok(()) }
//! ```
//!
//! Each exported function `NAME` becomes one C entry point
//! `int32_t NAME(const T *in0, ..., T *out0, ..., void *workspace)`: a pointer per input and
//! output to a caller-owned buffer of the element type, then a workspace of
//! `NAME_WORKSPACE_BYTES` bytes (16-byte aligned; `NULL` when that is 0). It returns 0, or a
//! non-zero status when code that can fail at run time failed (see the header). Several
//! functions go into one object. The code is what [`ferrax_jit`] generates for the same graph
//! ([`ferrax_jit::define_graph`] with [`ferrax_jit::Destination::Object`]), compiled in
//! [`ferrax_jit::MathMode::Precise`] by default, so results equal the interpreter's bit for
//! bit, and the JIT's too except for large convolutions, which the JIT sums through GEMM in
//! another order (the two then agree within rounding).
//!
//! **Nothing from ferrax at run time.** The object imports only C library functions
//! (`sin`, `exp`, `hypot`, `pow`, `memcpy`, `realloc`, ...: link with `-lm`), and every graph
//! the JIT compiles exports. What the JIT gets from ferrax's Rust helpers the object carries as
//! code of its own: `erf`, `logistic` and the inverse hyperbolic functions (in precise math)
//! are local functions of the object computing the interpreter's formulas; window ops (pooling
//! and its gradients) and convolutions are loop nests in the interpreter's order; matrix
//! products are loops instead of GEMM calls. Reverse-mode `while_loop`s grow their tape with
//! `realloc` and free it before returning; when the memory cannot be had the entry returns
//! `FERRAX_AOT_TAPE_ALLOC` (see the header). All loops run on the calling thread.

mod binding;
mod header;
mod object;

use cranelift_codegen::isa::OwnedTargetIsa;
use ferrax_ir::{Error, ErrorKind, Graph, IntoFunction, Result, Type};
use ferrax_jit::{JitOptions, MathMode};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The machine an object is exported for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This machine, with the instruction-set features of its CPU (as the JIT uses them):
    /// the object runs on this machine and ones with the same features.
    Host,
    /// A target triple, with the baseline features of its architecture (no feature
    /// detection): `x86_64-unknown-linux-gnu` or `aarch64-unknown-linux-gnu`.
    Triple(String),
}

impl Target {
    /// A target from its triple (see [`Target::Triple`]).
    pub fn triple(triple: &str) -> Target {
        Target::Triple(triple.to_string())
    }

    /// The Cranelift ISA of this target with `flags`.
    fn isa(&self, flags: cranelift_codegen::settings::Flags) -> Result<OwnedTargetIsa> {
        let builder = match self {
            Target::Host => cranelift_native::builder()
                .map_err(|e| aot_err(format!("the host is not supported by Cranelift: {e}")))?,
            Target::Triple(t) => {
                check_triple(t)?;
                cranelift_codegen::isa::lookup_by_name(t)
                    .map_err(|e| aot_err(format!("target triple `{t}`: {e}")))?
            }
        };
        let isa = builder
            .finish(flags)
            .map_err(|e| aot_err(format!("cranelift ISA: {e}")))?;
        check_triple(&isa.triple().to_string())?;
        Ok(isa)
    }
}

/// The architectures an object can be exported for (their C ABI, the libm symbols the code
/// imports and little-endian constants are what the exporter knows).
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Checks that `triple` names a supported architecture on Linux with glibc.
fn check_triple(triple: &str) -> Result<()> {
    let parts: Vec<&str> = triple.split('-').collect();
    let ok =
        parts.len() == 4 && ARCHES.contains(&parts[0]) && parts[2] == "linux" && parts[3] == "gnu";
    if ok {
        Ok(())
    } else {
        Err(aot_err(format!(
            "target triple `{triple}` is not supported: expected x86_64-unknown-linux-gnu or \
             aarch64-unknown-linux-gnu (an architecture among {ARCHES:?}, Linux, glibc)"
        )))
    }
}

/// An error of the exporter.
fn aot_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Jit, format!("aot export: {}", msg.into()))
}

/// One function to export: its C name and graph.
#[derive(Clone, Debug)]
struct Pending {
    name: String,
    graph: Arc<Graph>,
}

/// Collects functions and writes them as one object file (see the crate docs).
#[derive(Debug)]
pub struct Exporter {
    name: String,
    target: Target,
    opts: JitOptions,
    pending: Vec<Pending>,
}

impl Exporter {
    /// An exporter writing `name.o`, `name.h` and `name.rs` for `target`, compiling with
    /// [`MathMode::Precise`] (results bit-identical to the interpreter, whatever the target's
    /// features). `name` must be a C identifier.
    pub fn new(name: &str, target: Target) -> Result<Exporter> {
        check_ident(name, "the export's name")?;
        let opts = JitOptions {
            math: MathMode::Precise,
            ..JitOptions::default()
        };
        Ok(Exporter {
            name: name.to_string(),
            target,
            opts,
            pending: Vec::new(),
        })
    }

    /// Compile options other than the defaults (the math mode above all). GEMM calls and
    /// memory budgets do not apply to exported code: matrix products always compile as loops,
    /// and the caller provides every buffer.
    pub fn with_options(mut self, opts: JitOptions) -> Exporter {
        self.opts = opts;
        self
    }

    /// Adds `f`, specialised for the input types `types` (after whatever transforms `f`
    /// holds: a `grad`, a `hessian`, ...), as the C function `name`.
    #[track_caller]
    pub fn add<M>(
        &mut self,
        name: &str,
        f: impl IntoFunction<M>,
        types: &[Type],
    ) -> Result<&mut Exporter> {
        let s = f.into_function().specialize(types)?;
        if !s.captures.is_empty() {
            return Err(aot_err(format!(
                "`{name}` captures tensors of an enclosing trace; export functions of their \
                 arguments only"
            )));
        }
        self.add_graph(name, s.graph)
    }

    /// Adds a graph as the C function `name`.
    pub fn add_graph(&mut self, name: &str, graph: Arc<Graph>) -> Result<&mut Exporter> {
        check_ident(name, "a function's name")?;
        // The header's constants are upper case, so names may not differ in case only.
        let up = name.to_uppercase();
        if let Some(p) = self.pending.iter().find(|p| p.name.to_uppercase() == up) {
            return Err(aot_err(format!(
                "`{name}` is exported twice (as `{}`; the header's constants ignore case)",
                p.name
            )));
        }
        graph.verify()?;
        self.pending.push(Pending {
            name: name.to_string(),
            graph,
        });
        Ok(self)
    }

    /// Compiles every function into one object and generates the header and the binding.
    /// Errors name the function and what failed.
    pub fn finish(&self) -> Result<Export> {
        if self.pending.is_empty() {
            return Err(aot_err("nothing to export: add a function first"));
        }
        let mut opts = self.opts;
        // No GEMM calls: matrix products compile as loops.
        opts.gemm_threshold = usize::MAX;
        opts.max_call_bytes = None;
        let (object, entries, triple) = object::build(self, &opts)?;
        let header = header::generate(&self.name, &triple, &entries);
        let binding = binding::generate(&self.name, &triple, &entries);
        Ok(Export {
            name: self.name.clone(),
            triple,
            object,
            header,
            binding,
            entries,
        })
    }
}

/// Checks that `name` is a C identifier that cannot clash with the generated names.
fn check_ident(name: &str, what: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(aot_err(format!(
            "{what} `{name}` is not a C identifier (ASCII letters, digits and `_`, not starting \
             with a digit, at most 64 characters)"
        )));
    }
    if name.starts_with("__") || RESERVED.contains(&name) {
        return Err(aot_err(format!(
            "{what} `{name}` is reserved in C or Rust, or starts with `__`"
        )));
    }
    Ok(())
}

/// Keywords of C and Rust, and names the binding itself defines.
const RESERVED: &[&str] = &[
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "as", "async", "await", "crate", "dyn",
    "false", "fn", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "self", "Self", "super", "trait", "true", "type", "unsafe", "use", "where", "main", "ffi",
    "AotError",
];

/// What was exported for one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The C symbol.
    pub name: String,
    /// The input types, in order.
    pub inputs: Vec<Type>,
    /// The output types, in order.
    pub outputs: Vec<Type>,
    /// The workspace the entry needs, in bytes (16-byte aligned; 0 for none).
    pub workspace: usize,
    /// Whether the code can fail at run time (a `while_loop` iteration limit), returning a
    /// non-zero status.
    pub may_fail: bool,
    /// The machine code size of the entry and the functions it calls, in bytes.
    pub code_bytes: usize,
}

/// An exported object with its header and binding.
#[derive(Clone, Debug)]
pub struct Export {
    name: String,
    triple: String,
    object: Vec<u8>,
    header: String,
    binding: String,
    entries: Vec<Entry>,
}

/// The files [`Export::write_to`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The object file, `NAME.o`.
    pub object: PathBuf,
    /// The C header, `NAME.h`.
    pub header: PathBuf,
    /// The Rust binding, `NAME.rs`.
    pub binding: PathBuf,
}

impl Export {
    /// The object file's bytes (ELF, relocatable).
    pub fn object(&self) -> &[u8] {
        &self.object
    }

    /// The C header.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The Rust binding: `extern "C"` declarations and a safe, length-checking wrapper per
    /// function (include it with `include!` or as a module).
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// The exported functions.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The target triple the object was compiled for.
    pub fn triple(&self) -> &str {
        &self.triple
    }

    /// The libraries the object needs at link time (`m`: libm; libc is linked by default).
    pub fn libraries(&self) -> &'static [&'static str] {
        &["m"]
    }

    /// The command that links a C program `driver` against the object written by
    /// [`Export::write_to`] into the executable `exe` (run in the directory holding both).
    pub fn link_line(&self, driver: &str, exe: &str) -> String {
        let libs: Vec<String> = self.libraries().iter().map(|l| format!("-l{l}")).collect();
        format!(
            "cc -O2 -o {exe} {driver} {}.o {}",
            self.name,
            libs.join(" ")
        )
    }

    /// Writes `NAME.o`, `NAME.h` and `NAME.rs` into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<Written> {
        let io = |what: &Path, e: std::io::Error| {
            aot_err(format!("cannot write {}: {e}", what.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let written = Written {
            object: dir.join(format!("{}.o", self.name)),
            header: dir.join(format!("{}.h", self.name)),
            binding: dir.join(format!("{}.rs", self.name)),
        };
        std::fs::write(&written.object, &self.object).map_err(|e| io(&written.object, e))?;
        std::fs::write(&written.header, &self.header).map_err(|e| io(&written.header, e))?;
        std::fs::write(&written.binding, &self.binding).map_err(|e| io(&written.binding, e))?;
        Ok(written)
    }
}
