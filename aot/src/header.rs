//! The C header of an export: per function, its prototype and, as constants and comments,
//! the dtype, shape, element count and byte size of every input and output and the
//! workspace it needs.

use crate::Entry;
use ferrax_ir::{DType, Type};
use std::fmt::Write;

/// The C type of one element of `dtype`.
pub(crate) fn c_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I32 => "int32_t",
        DType::Bool => "bool",
    }
}

/// The name of `dtype`'s code constant (`FERRAX_AOT_F64`, ...).
fn dtype_const(dtype: DType) -> String {
    format!("FERRAX_AOT_{}", dtype.to_string().to_uppercase())
}

/// `elements, bytes` of a type, for comments.
fn size_note(t: &Type) -> String {
    let n = t.size();
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} element{plural}, {} bytes", n * t.dtype.size_bytes())
}

/// The header text for the entries of the export `name`.
pub(crate) fn generate(name: &str, triple: &str, entries: &[Entry]) -> String {
    let guard = format!("FERRAX_AOT_{}_H", name.to_uppercase());
    let mut h = String::new();
    let lines = [
        format!(
            "/* {name}.h: the functions of {name}.o, compiled by ferrax-aot {} for {triple}.",
            env!("CARGO_PKG_VERSION")
        ),
        " * Generated; do not edit.".to_string(),
        " *".to_string(),
        format!(" * Link: cc your_program.c {name}.o -lm (the object needs only libc and libm)."),
        " *".to_string(),
        " * Every function takes a pointer per input, then a pointer per output, then a".into(),
        " * workspace, and returns an int32_t status (0: success).".into(),
        " * - The caller owns every buffer. Input i must hold NAME_INi_LEN elements of its".into(),
        " *   dtype, output i NAME_OUTi_LEN elements (NAME_OUTi_BYTES bytes), row-major, each"
            .into(),
        " *   aligned to its element size; outputs may not overlap inputs or each other.".into(),
        " *   Nothing checks these sizes: a smaller buffer is undefined behaviour.".into(),
        " * - The workspace holds NAME_WORKSPACE_BYTES bytes aligned to FERRAX_AOT_ALIGN; it"
            .into(),
        " *   need not be initialised and may be reused by later calls, but not by concurrent"
            .into(),
        " *   ones (pass NULL when NAME_WORKSPACE_BYTES is 0).".into(),
        " * - Functions keep no state between calls and use no threads; concurrent calls".into(),
        " *   with distinct workspaces and outputs are safe. Only reverse-mode while_loops".into(),
        " *   allocate: their tape, with realloc, freed with free before the call returns.".into(),
        " * - Rank-0 (scalar) values are passed by pointer to one element, like tensors.".into(),
        " */".into(),
    ];
    for line in lines {
        let _ = writeln!(h, "{line}");
    }
    let _ = writeln!(h, "#ifndef {guard}\n#define {guard}\n");
    h.push_str(
        "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #ifdef __cplusplus\nextern \"C\" {\n#endif\n\n\
         #ifndef FERRAX_AOT_COMMON\n#define FERRAX_AOT_COMMON\n\
         /* Dtype codes of the NAME_INi_DTYPE and NAME_OUTi_DTYPE constants. */\n\
         #define FERRAX_AOT_F32 0\n#define FERRAX_AOT_F64 1\n\
         #define FERRAX_AOT_I32 2\n#define FERRAX_AOT_BOOL 3\n\
         /* The alignment of a workspace, in bytes. */\n#define FERRAX_AOT_ALIGN 16\n\
         /* Statuses: a while_loop ran over its iteration limit; a reverse-mode */\n\
         /* while_loop's tape could not be allocated (realloc failed); it would outgrow */\n\
         /* the largest size ferrax allocates. */\n\
         #define FERRAX_AOT_WHILE_LIMIT 1\n#define FERRAX_AOT_TAPE_ALLOC 2\n\
         #define FERRAX_AOT_TAPE_LIMIT 3\n#endif\n\n",
    );
    for e in entries {
        entry(&mut h, e);
    }
    let _ = writeln!(h, "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */");
    h
}

/// Appends one function's comment, constants and prototype.
fn entry(h: &mut String, e: &Entry) {
    let up = e.name.to_uppercase();
    let _ = writeln!(h, "/* {}", e.name);
    let _ = writeln!(h, " *");
    let mut params = Vec::new();
    for (k, t) in e.inputs.iter().enumerate() {
        let _ = writeln!(h, " *   in{k}:  {t} ({}), input {k}", size_note(t));
        params.push(format!("const {} *in{k}", c_type(t.dtype)));
    }
    for (k, t) in e.outputs.iter().enumerate() {
        let _ = writeln!(h, " *   out{k}: {t} ({}), output {k}", size_note(t));
        params.push(format!("{} *out{k}", c_type(t.dtype)));
    }
    let _ = writeln!(h, " *   workspace: {} bytes", e.workspace);
    params.push("void *workspace".to_string());
    if e.may_fail {
        let _ = writeln!(
            h,
            " * Returns 0, or a non-zero status (the outputs are then unspecified):\n\
             * FERRAX_AOT_WHILE_LIMIT when a while_loop ran over its iteration limit,\n\
             * FERRAX_AOT_TAPE_ALLOC when a reverse-mode while_loop's tape could not be\n\
             * allocated, FERRAX_AOT_TAPE_LIMIT when it would outgrow the size limit."
        );
    } else {
        let _ = writeln!(h, " * Returns 0 (this function cannot fail).");
    }
    let _ = writeln!(h, " */");
    let _ = writeln!(h, "#define {up}_NUM_INPUTS {}", e.inputs.len());
    let _ = writeln!(h, "#define {up}_NUM_OUTPUTS {}", e.outputs.len());
    let groups = [("IN", &e.inputs), ("OUT", &e.outputs)];
    for (tag, types) in groups {
        for (k, t) in types.iter().enumerate() {
            let p = format!("{up}_{tag}{k}");
            let _ = writeln!(h, "#define {p}_DTYPE {}", dtype_const(t.dtype));
            let _ = writeln!(h, "#define {p}_RANK {}", t.shape.rank());
            if t.shape.rank() > 0 {
                let dims: Vec<String> = t.shape.dims().iter().map(|d| d.to_string()).collect();
                let _ = writeln!(h, "#define {p}_SHAPE {{{}}}", dims.join(", "));
            }
            let _ = writeln!(h, "#define {p}_LEN {}", t.size());
            let _ = writeln!(h, "#define {p}_BYTES {}", t.size() * t.dtype.size_bytes());
        }
    }
    let _ = writeln!(h, "#define {up}_WORKSPACE_BYTES {}", e.workspace);
    let _ = writeln!(h, "int32_t {}({});\n", e.name, params.join(", "));
}
