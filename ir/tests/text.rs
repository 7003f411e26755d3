//! Tests of the text format: golden round trips of tests/filetests/roundtrip/*.fx, round trips
//! of built graphs, parse errors, and DOT output.
//!
//! Set `FERRAX_BLESS=1` to rewrite the golden files with the printer's output instead of
//! failing on a difference.

use ferrax_ir::ops::{
    BinaryOp, Body, CallKind, CompareOp, ControlOp, DotGeneral, ReduceOp, RematPolicy, ShapeOp,
    UnaryOp,
};
use ferrax_ir::{Array, Builder, DType, Error, ErrorKind, Graph, Op, Shape, Type, Value};
use smallvec::smallvec;
use std::path::PathBuf;

const ROUNDTRIP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/filetests/roundtrip");

/// Splits a golden file into its leading `#` comment lines and the IR text after them.
fn split_header(content: &str) -> (String, &str) {
    let mut header = String::new();
    let mut rest = content;
    while rest.starts_with('#') {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        header.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    (header, rest)
}

const CONTROL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/filetests/control");

/// The `.fx` files of a folder, sorted.
fn golden_paths(dir: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the folder {dir} exists: {e}"))
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "fx"))
        .collect();
    paths.sort();
    paths
}

/// Parses every golden file of `dir`, prints it again and compares with the file (or rewrites
/// the file when `FERRAX_BLESS=1`); the printed text must parse back to the same graph.
fn check_golden_dir(dir: &str, at_least: usize) {
    let bless = std::env::var("FERRAX_BLESS").is_ok_and(|v| v == "1");
    let paths = golden_paths(dir);
    assert!(
        paths.len() >= at_least,
        "expected at least {at_least} golden files in {dir}"
    );
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(path).expect("a readable golden file");
        let (header, body) = split_header(&content);
        let g = match Graph::parse(body) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{name}: {}", e.message));
                continue;
            }
        };
        let printed = g.to_text();
        let expected = format!("{header}{printed}\n");
        let again = Graph::parse(&printed)
            .unwrap_or_else(|e| panic!("{name}: the printed text does not parse: {e}\n{printed}"));
        assert_eq!(
            again, g,
            "{name}: parsing the printed text changes the graph"
        );
        if expected != content {
            if bless {
                std::fs::write(path, &expected).expect("a writable golden file");
            } else {
                failures.push(format!(
                    "{name}: printed text differs (FERRAX_BLESS=1 rewrites it)\n--- file\n{content}\
                     --- printed\n{expected}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_files_round_trip() {
    check_golden_dir(ROUNDTRIP_DIR, 10);
}

#[test]
fn control_golden_files_round_trip() {
    check_golden_dir(CONTROL_DIR, 7);
}

fn f64s(dims: &[usize]) -> Type {
    Type::new(DType::F64, dims)
}

/// A builder that never evaluates ops at build time.
fn builder() -> Builder {
    let mut b = Builder::new();
    b.fold_constants = false;
    b
}

#[test]
fn built_graph_round_trips() {
    let mut b = builder();
    let x = b.param(f64s(&[2, 3]));
    let y = b.param(f64s(&[3]));
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let yb = b
        .push1(
            Op::Shape(ShapeOp::BroadcastInDim {
                shape: Shape::new(&[2, 3]),
                dims: vec![1].into_boxed_slice(),
            }),
            &[y],
        )
        .unwrap();
    let m = b.push1(Op::Binary(BinaryOp::Mul), &[s, yb]).unwrap();
    let c = b.constant(Array::from([
        [1.0, f64::NAN, -0.0],
        [f64::INFINITY, 0.1, 1e300],
    ]));
    let a = b.push1(Op::Binary(BinaryOp::Add), &[m, c]).unwrap();
    let t = b
        .push1(
            Op::Shape(ShapeOp::Transpose {
                perm: vec![1, 0].into_boxed_slice(),
            }),
            &[a],
        )
        .unwrap();
    let dot = DotGeneral {
        lhs_contract: smallvec![1],
        rhs_contract: smallvec![0],
        ..Default::default()
    };
    let d = b.push1(Op::Dot(Box::new(dot)), &[x, t]).unwrap();
    let r = b
        .push1(
            Op::Reduce(ReduceOp::Sum {
                axes: smallvec![0, 1],
            }),
            &[d],
        )
        .unwrap();
    let g = b.finish(&[r, t]);
    let text = g.to_text();
    let parsed = Graph::parse(&text).unwrap_or_else(|e| panic!("{}\n{text}", e.message));
    assert_eq!(parsed, g, "{text}");
    assert_eq!(parsed.to_text(), text);
    assert_eq!(format!("{g}"), text);
}

#[test]
fn every_elementwise_op_round_trips() {
    for op in UnaryOp::ALL {
        let mut b = builder();
        let x = b.param(f64s(&[2]));
        let r = b.push1(Op::Unary(op), &[x]).unwrap();
        let g = b.finish(&[r]);
        assert_eq!(Graph::parse(&g.to_text()).unwrap(), g, "{}", g.to_text());
    }
    for op in BinaryOp::ALL {
        let mut b = builder();
        let x = b.param(f64s(&[]));
        let y = b.param(f64s(&[]));
        let r = b.push1(Op::Binary(op), &[x, y]).unwrap();
        let g = b.finish(&[r]);
        assert_eq!(Graph::parse(&g.to_text()).unwrap(), g, "{}", g.to_text());
    }
    for op in CompareOp::ALL {
        let mut b = builder();
        let ty = Type::scalar(DType::Bool);
        let args: Vec<Value> = (0..op.arity()).map(|_| b.param(ty.clone())).collect();
        let r = b.push1(Op::Compare(op), &args).unwrap();
        let g = b.finish(&[r]);
        assert_eq!(Graph::parse(&g.to_text()).unwrap(), g, "{}", g.to_text());
    }
}

#[test]
fn text_layout_is_single_line_for_short_bodies() {
    let text =
        "{ lambda v0:f64[], v1:f64[] . let v2:f64[] = sin v0; v3:f64[] = mul v2 v1 in (v3) }";
    let g = Graph::parse(text).unwrap();
    assert_eq!(g.to_text(), text);
    assert_eq!(g.num_insts(), 2);
}

#[test]
fn parser_tolerates_whitespace_comments_and_other_names() {
    let text =
        "# a comment\n{lambda x:f64[],y:f64[].let\n s:f64[]=sin x;\n\n p:f64[]=mul s y in(p)}";
    let g = Graph::parse(text).unwrap();
    assert_eq!(
        g.to_text(),
        "{ lambda v0:f64[], v1:f64[] . let v2:f64[] = sin v0; v3:f64[] = mul v2 v1 in (v3) }"
    );
}

#[test]
fn duplicate_equations_are_kept() {
    let text = "{ lambda v0:f64[] . let v1:f64[] = sin v0; v2:f64[] = sin v0 in (v1, v2) }";
    let g = Graph::parse(text).unwrap();
    assert_eq!(g.num_insts(), 2);
    assert_eq!(g.to_text(), text);
}

/// Parses `text`, expecting a parse error, and returns its message.
fn parse_error(text: &str) -> String {
    let e: Error = Graph::parse(text).expect_err("the text is invalid");
    assert_eq!(e.kind, ErrorKind::Parse, "{}", e.message);
    e.message
}

/// The `line:column` of the first occurrence of `needle` in `text`.
fn position(text: &str, needle: &str) -> String {
    let at = text.find(needle).expect("the needle occurs");
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

#[test]
fn error_unknown_op() {
    let text = "{ lambda v0:f64[] . let v1:f64[] = frobnicate v0 in (v1) }";
    let msg = parse_error(text);
    assert_eq!(
        msg,
        format!("{}: unknown op `frobnicate`", position(text, "frobnicate"))
    );
}

#[test]
fn error_declared_type_differs_from_inferred() {
    let text = "{ lambda v0:f64[3] . let v1:f32[3] = sin v0 in (v1) }";
    let msg = parse_error(text);
    assert_eq!(
        msg,
        format!(
            "{}: v1 is declared f32[3] but the type rule of `sin` gives f64[3]",
            position(text, "v1:")
        )
    );
}

#[test]
fn error_type_rule_fails() {
    let text = "{ lambda v0:f64[], v1:f32[] . let v2:f64[] = add v0 v1 in (v2) }";
    let msg = parse_error(text);
    assert!(
        msg.starts_with(&format!("{}: add:", position(text, "add"))),
        "{msg}"
    );
    assert!(msg.contains("operand dtypes differ"), "{msg}");
}

#[test]
fn error_undefined_value() {
    let text = "{ lambda v0:f64[] . let v1:f64[] = mul v0 v7 in (v1) }";
    let msg = parse_error(text);
    assert_eq!(msg, format!("{}: undefined value v7", position(text, "v7")));
    let text = "{ lambda v0:f64[] . let in (v3) }";
    let msg = parse_error(text);
    assert_eq!(msg, format!("{}: undefined value v3", position(text, "v3")));
}

#[test]
fn error_bad_syntax_reports_line_and_column() {
    let text = "{ lambda v0:f64[] .\n  let v1:f64[] sin v0\n  in (v1) }";
    let msg = parse_error(text);
    assert_eq!(
        msg,
        "2:16: expected `=` after the defined values, found `sin`"
    );
    let msg = parse_error("{ lambda v0:f64[] . let in (v0) } extra");
    assert_eq!(msg, "1:35: expected the end of the text, found `extra`");
    let msg = parse_error("{ lambda v0:f64[] . let in (v0)");
    assert_eq!(
        msg,
        "1:32: expected `}` to close the graph, found the end of the text"
    );
    let msg = parse_error("{ lambda v0:f99[] . let in (v0) }");
    assert_eq!(msg, "1:13: unknown dtype `f99`");
    let msg = parse_error("{ lambda v0:f64[] . let in (v0) } $");
    assert_eq!(msg, "1:35: unexpected character `$`");
}

#[test]
fn error_bad_parameters_and_constants() {
    let msg = parse_error("{ lambda v0:f64[2,3] . let v1:f64[3,2] = transpose v0 in (v1) }");
    assert!(
        msg.contains("`transpose` needs the parameter `perm`"),
        "{msg}"
    );
    let msg = parse_error("{ lambda v0:f64[] . let v1:f64[] = sin[n=2] v0 in (v1) }");
    assert!(msg.contains("`sin` takes no parameter `n`"), "{msg}");
    let msg = parse_error("{ lambda . let v0:f64[2] = const[1.0] in (v0) }");
    assert!(
        msg.contains("needs 2 elements along dimension 0, found 1"),
        "{msg}"
    );
    let msg = parse_error("{ lambda . let v0:i32[] = const[1.5] in (v0) }");
    assert!(msg.contains("`1.5` is not a valid i32 element"), "{msg}");
    let msg = parse_error("{ lambda v0:f64[] . let v0:f64[] = neg v0 in (v0) }");
    assert!(msg.contains("v0 is defined twice"), "{msg}");
}

#[test]
fn special_floats_round_trip_bit_for_bit() {
    let vals = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        5e-324,
        0.1 + 0.2,
        f64::MAX,
    ];
    let mut b = builder();
    let c = b.constant(Array::from(vals.to_vec()));
    let c32 = b.constant(Array::from(vals.map(|x| x as f32).to_vec()));
    let g = b.finish(&[c, c32]);
    let parsed = Graph::parse(&g.to_text()).unwrap();
    assert_eq!(parsed, g, "{}", g.to_text());
}

fn sample() -> Graph {
    let mut b = builder();
    let x = b.param(f64s(&[]));
    let y = b.param(f64s(&[]));
    let s = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
    let m = b.push1(Op::Binary(BinaryOp::Sub), &[s, y]).unwrap();
    b.finish(&[m])
}

#[test]
fn dot_has_nodes_and_edges() {
    let dot = sample().to_dot();
    assert!(
        dot.starts_with("digraph ferrax {\n  rankdir=TB;\n"),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    for line in [
        "p0 [shape=ellipse, label=\"v0: f64[]\"];",
        "p1 [shape=ellipse, label=\"v1: f64[]\"];",
        "i0 [shape=box, label=\"sin\\nv2: f64[]\"];",
        "i1 [shape=box, label=\"sub\\nv3: f64[]\"];",
        "o0 [shape=doubleoctagon, label=\"out0: f64[]\"];",
        "p0 -> i0;",
        "i0 -> i1 [label=\"0\"];",
        "p1 -> i1 [label=\"1\"];",
        "i1 -> o0;",
    ] {
        assert!(dot.contains(line), "missing `{line}` in\n{dot}");
    }
}

#[test]
fn dot_with_labels_appends_escaped_text() {
    let g = sample();
    let dot = g.to_dot_with(&|v| (v.index() != 1).then(|| format!("val \"{v}\" \\ ok")));
    assert!(
        dot.contains("p0 [shape=ellipse, label=\"v0: f64[]\\nval \\\"v0\\\" \\\\ ok\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("p1 [shape=ellipse, label=\"v1: f64[]\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("label=\"sin\\nv2: f64[]\\nval \\\"v2\\\" \\\\ ok\""),
        "{dot}"
    );
}

#[test]
fn hostile_text_gives_errors_not_panics() {
    let deep = format!(
        "{{ lambda . let v0:f64[] = const[{}1.0{}] in (v0) }}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(parse_error(&deep).contains("nesting deeper than"));
    let deep = format!(
        "{}{}",
        "{ lambda . let in () where g0 = ".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(parse_error(&deep).contains("nesting deeper than"));
    let msg = parse_error("{ lambda v0:f64[4294967296,4294967296] . let in (v0) }");
    assert!(msg.contains("needs integers from 0 to"), "{msg}");
    // Shapes whose element count overflows are errors of the size kind, still with a position.
    for text in [
        "{ lambda v0:f64[2147483647,2147483647,2147483647,2] . let in (v0) }",
        "{ lambda v0:f64[1] . let v1:f64[1] = reshape[shape=(2147483647,2147483647,2147483647,2)] v0 in (v1) }",
    ] {
        let e = Graph::parse(text).expect_err("the shape overflows");
        assert_eq!(e.kind, ErrorKind::Size, "{e}");
        assert!(e.message.contains("overflows usize"), "{e}");
        assert!(e.message.starts_with("1:"), "{e}");
    }
}

#[test]
fn truncated_and_mangled_golden_files_never_panic() {
    let mut paths = golden_paths(ROUNDTRIP_DIR);
    paths.extend(golden_paths(CONTROL_DIR));
    for path in paths {
        let content = std::fs::read_to_string(&path).unwrap();
        let chars: Vec<char> = content.chars().collect();
        for cut in 0..chars.len() {
            let truncated: String = chars[..cut].iter().collect();
            let _ = Graph::parse(&truncated);
            for replacement in [']', ',', '9'] {
                let mut mangled = chars.clone();
                mangled[cut] = replacement;
                let mangled: String = mangled.into_iter().collect();
                if let Err(e) = Graph::parse(&mangled) {
                    assert_eq!(e.kind, ErrorKind::Parse, "{}", e.message);
                }
            }
        }
    }
}

#[test]
fn documented_multi_line_layout_is_the_printed_one() {
    let text = "{ lambda v0:f64[], v1:f64[] .
  let v2:f64[] = sin v0
      v3:f64[] = cos v1
      v4:f64[] = mul v2 v3
      v5:f64[] = add v4 v0
  in (v5)
  where g0 = { lambda v0:f64[] . let v1:f64[] = neg v0 in (v1) } }";
    assert_eq!(Graph::parse(text).unwrap().to_text(), text);
}

/// `while i < n: (i, x) = (i + 1, x * a)` with `a` loop-invariant, built with the builder.
fn while_graph() -> Graph {
    let i32s = Type::scalar(DType::I32);
    let mut c = builder();
    let (_, i, _) = (
        c.param(f64s(&[])),
        c.param(i32s.clone()),
        c.param(f64s(&[])),
    );
    let n = c.constant(Array::scalar(DType::I32, 4.0));
    let lt = c.push1(Op::Compare(CompareOp::Lt), &[i, n]).unwrap();
    let cond = c.finish(&[lt]);
    let mut bb = builder();
    let (a, i, x) = (
        bb.param(f64s(&[])),
        bb.param(i32s.clone()),
        bb.param(f64s(&[])),
    );
    let one = bb.constant(Array::scalar(DType::I32, 1.0));
    let j = bb.push1(Op::Binary(BinaryOp::Add), &[i, one]).unwrap();
    let y = bb.push1(Op::Binary(BinaryOp::Mul), &[x, a]).unwrap();
    let body = bb.finish(&[j, y]);
    let mut b = builder();
    let a = b.param(f64s(&[]));
    let i = b.param(i32s);
    let op = ControlOp::While {
        cond: Body::new(cond),
        body: Body::new(body),
        n_consts: 1,
    };
    let r = b.push(Op::Control(op), &[a, i, a]).unwrap();
    b.finish(&[r[1], r[0]])
}

#[test]
fn built_control_graphs_round_trip() {
    let w = while_graph();
    let mut b = builder();
    let x = b.param(f64s(&[]));
    let k = b.param(Type::scalar(DType::I32));
    let switch = ControlOp::Switch {
        branches: smallvec![Body::new(w.clone()), Body::new(w.clone())],
    };
    let r = b.push(Op::Control(switch), &[k, x, k]).unwrap();
    let call = ControlOp::Call {
        body: Body::new(sample()),
        kind: CallKind::Checkpoint(RematPolicy::DotsOnly),
    };
    let c = b.push1(Op::Control(call), &[r[0], x]).unwrap();
    let g = b.finish(&[c, r[1]]);
    let text = g.to_text();
    let parsed = Graph::parse(&text).unwrap_or_else(|e| panic!("{}\n{text}", e.message));
    assert_eq!(parsed, g, "{text}");
    assert_eq!(parsed.to_text(), text);
    // Three levels of graphs: the while loop's bodies sit inside the switch's branches.
    assert!(
        text.contains("\n                    body={ lambda"),
        "{text}"
    );
}

#[test]
fn documented_control_layout_is_the_printed_one() {
    let text = "{ lambda v0:f64[], v1:i32[] .
  let v2:i32[], v3:f64[] = while[n_consts=1
          cond={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[4]; v4:bool[] = lt v1 v3 in (v4) }
          body={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[1]; v4:i32[] = add v1 v3; v5:f64[] = mul v2 v0 in (v4, v5) }] v0 v1 v0
  in (v3, v2) }";
    assert_eq!(while_graph().to_text(), text);
    assert_eq!(Graph::parse(text).unwrap(), while_graph());
}

#[test]
fn control_parse_errors() {
    let body = "{ lambda v0:f64[] . let v1:f64[] = sin v0 in (v1) }";
    let msg = parse_error(&format!(
        "{{ lambda v0:f64[] . let v1:f64[] = call[kind=inline body={body}] v0 in (v1) }}"
    ));
    assert!(msg.contains("unknown call kind `inline`"), "{msg}");
    let msg = parse_error(&format!(
        "{{ lambda v0:f64[] . let v1:f64[] = call[kind=checkpoint policy=all body={body}] v0 in (v1) }}"
    ));
    assert!(msg.contains("unknown checkpoint policy `all`"), "{msg}");
    let msg = parse_error(
        "{ lambda v0:f64[] . let v1:f64[] = call[kind=checkpoint policy=nothing] v0 in (v1) }",
    );
    assert!(msg.contains("`call` needs the parameter `body`"), "{msg}");
    let msg = parse_error(&format!(
        "{{ lambda v0:f64[] . let v1:f64[] = call[kind=checkpoint policy={body} body={body}] v0 in (v1) }}"
    ));
    assert!(msg.contains("must be a single value, not a graph"), "{msg}");
    let msg = parse_error(&format!(
        "{{ lambda v0:i32[], v1:f64[] . let v2:f64[] = switch[branches={body}] v0 v1 in (v2) }}"
    ));
    assert!(
        msg.contains("must be a tuple of graphs, not a graph"),
        "{msg}"
    );
    let msg = parse_error(
        "{ lambda v0:i32[], v1:f64[] . let v2:f64[] = switch[branches=()] v0 v1 in (v2) }",
    );
    assert!(msg.contains("needs at least one branch"), "{msg}");
    // A body whose parameter types do not match the operands fails the type rule.
    let msg = parse_error(&format!(
        "{{ lambda v0:f32[] . let v1:f64[] = call[kind=checkpoint policy=nothing body={body}] v0 in (v1) }}"
    ));
    assert!(
        msg.contains("the body takes (f64[]) but is given (f32[])"),
        "{msg}"
    );
    // Errors inside a nested graph point into it.
    let text = "{ lambda v0:f64[] . let v1:f64[] = call[kind=checkpoint policy=nothing\n  body={ lambda v0:f64[] . let v1:f64[] = sin v9 in (v1) }] v0 in (v1) }";
    assert_eq!(
        parse_error(text),
        format!("{}: undefined value v9", position(text, "v9"))
    );
}

#[test]
fn dot_draws_control_bodies_as_clusters() {
    let dot = while_graph().to_dot();
    for line in [
        "i0 [shape=box, label=\"while[n_consts=1]\\nv2: i32[]\\nv3: f64[]\"];",
        "subgraph cluster_i0_cond_ {",
        "label=\"v2, v3 = while: cond\";",
        "subgraph cluster_i0_body_ {",
        "i0_body_i1 [shape=box, label=\"add\\nv4: i32[]\"];",
        "i0_body_o1 -> i0 [style=dashed];",
        "p0 -> i0 [label=\"0\"];",
    ] {
        assert!(dot.contains(line), "missing `{line}` in\n{dot}");
    }
    assert!(!dot.contains("lambda"), "{dot}");
}

#[test]
fn gather_and_scatter_parameters_are_optional_and_checked() {
    // Written without parameters, a gather is the row gather it always was.
    let g = Graph::parse(
        "{ lambda v0:f64[5,3], v1:i32[4] . let v2:f64[4,3] = gather[axis=0] v0 v1 in (v2) }",
    )
    .unwrap();
    assert!(!g.to_text().contains("axis"), "{}", g.to_text());
    for (bad, needle) in [
        (
            "gather[bounds=wrap] v0 v1",
            "`bounds` must be `clip` or `fill`",
        ),
        ("gather[axis=2] v0 v1", "axis 2 is out of range"),
        ("gather[along=true] v0 v1", "must have the operand's shape"),
        ("gather[reverse=true] v0 v1", "takes no parameter `reverse`"),
    ] {
        let text = format!("{{ lambda v0:f64[5,3], v1:i32[4] . let v2:f64[4,3] = {bad} in (v2) }}");
        let e = Graph::parse(&text).unwrap_err();
        assert!(e.message.contains(needle), "{bad}: {}", e.message);
    }
}
