//! Graphviz DOT output: one node per parameter, equation and output, edges for data flow.
//! The sub-graphs of control ops are drawn as clusters beside the equation that holds them.

use super::print::{control_params, type_text, write_op, GraphParam, Names};
use crate::entities::Value;
use crate::graph::{Graph, ValueDef};
use crate::ops::{LiteralOp, Op};
use std::fmt::Write;

/// Constants with more elements than this show only their type in DOT labels.
const MAX_LABEL_ELEMENTS: usize = 8;

impl Graph {
    /// The graph in Graphviz DOT (`digraph ferrax { rankdir=TB; ... }`). Parameters are
    /// ellipses labelled `v0: f64[]`, equations are boxes labelled with the op, its parameters
    /// and the defined values with their types, outputs are labelled `out0: f64[]`. Value names
    /// match [`Graph::to_text`]. Edges into an equation with several operands carry the operand
    /// position. A control op's box shows its name and scalar parameters (`while[n_consts=1]`);
    /// each of its sub-graphs is drawn as a cluster labelled with the equation and the
    /// parameter (`v4 = while: body`, `v7 = switch: branches[1]`), whose outputs have dashed
    /// edges into the equation's box. Legacy `where` sub-graphs are drawn as clusters too.
    pub fn to_dot(&self) -> String {
        self.to_dot_with(&|_| None)
    }

    /// Like [`Graph::to_dot`], but appends `labels(v)`, when it returns text, as an extra line
    /// to the label of the node defining `v` (parameters and equation results of this graph,
    /// not of its sub-graphs). `v` is the graph's own [`Value`], as used by
    /// [`Graph::params`] and [`Graph::insts`]; this lets a caller show, say, each value and its
    /// gradient next to the equation that computes it.
    pub fn to_dot_with(&self, labels: &dyn Fn(Value) -> Option<String>) -> String {
        let mut out = String::from("digraph ferrax {\n  rankdir=TB;\n");
        out.push_str("  node [fontname=\"monospace\"];\n");
        write_body(&mut out, self, "", "  ", labels);
        out.push_str("}\n");
        out
    }
}

/// Escapes text for a double-quoted DOT string; line breaks become `\n`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Joins label lines, each escaped, with DOT line breaks.
fn label(lines: &[String]) -> String {
    let parts: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    parts.join("\\n")
}

/// The node id defining `v` (`p0` for a parameter, `i3` for an instruction), with `prefix`.
fn node_of(g: &Graph, prefix: &str, v: Value) -> String {
    match g.values.get(v.index()).map(|d| d.def) {
        Some(ValueDef::Param(k)) => format!("{prefix}p{k}"),
        Some(ValueDef::Result(i, _)) => format!("{prefix}i{}", i.index()),
        None => format!("{prefix}undefined{}", v.index()),
    }
}

/// Writes the nodes and edges of `g` with node ids starting with `prefix`.
fn write_body(
    out: &mut String,
    g: &Graph,
    prefix: &str,
    pad: &str,
    labels: &dyn Fn(Value) -> Option<String>,
) {
    let names = Names::new(g);
    // Writing to a String cannot fail, so the results of `writeln!` are ignored.
    for (k, &p) in g.params.iter().enumerate() {
        let mut lines = vec![format!("{}: {}", names.name(p), type_text(g, p))];
        lines.extend(labels(p));
        let _ = writeln!(
            out,
            "{pad}{prefix}p{k} [shape=ellipse, label=\"{}\"];",
            label(&lines)
        );
    }
    for (i, inst) in g.insts.iter().enumerate() {
        let mut op = String::new();
        match &inst.op {
            Op::Literal(LiteralOp::Const(l)) if l.array().size() > MAX_LABEL_ELEMENTS => {
                op.push_str("const");
            }
            other => {
                let _ = write_op(&mut op, other);
            }
        }
        let mut lines = vec![op];
        for &r in &inst.results {
            lines.push(format!("{}: {}", names.name(r), type_text(g, r)));
        }
        for &r in &inst.results {
            lines.extend(labels(r));
        }
        let _ = writeln!(
            out,
            "{pad}{prefix}i{i} [shape=box, label=\"{}\"];",
            label(&lines)
        );
        if let Op::Control(c) = &inst.op {
            let results: Vec<String> = inst.results.iter().map(|&r| names.name(r)).collect();
            let defined = if results.is_empty() {
                "_".to_string()
            } else {
                results.join(", ")
            };
            for (key, value) in control_params(c).graphs {
                let subs: Vec<(String, &Graph)> = match value {
                    GraphParam::One(sub) => vec![(key.to_string(), sub)],
                    GraphParam::Tuple(subs) => subs
                        .into_iter()
                        .enumerate()
                        .map(|(k, sub)| (format!("{key}[{k}]"), sub))
                        .collect(),
                };
                for (what, sub) in subs {
                    let id: String = what
                        .chars()
                        .map(|ch| if ch.is_alphanumeric() { ch } else { '_' })
                        .collect();
                    let inner = format!("{prefix}i{i}_{id}_");
                    let title = format!("{defined} = {}: {what}", c.name());
                    let _ = writeln!(out, "{pad}subgraph cluster_{inner} {{");
                    let _ = writeln!(out, "{pad}  label=\"{}\";", escape(&title));
                    let _ = writeln!(out, "{pad}  style=rounded;");
                    write_body(out, sub, &inner, &format!("{pad}  "), &|_| None);
                    let _ = writeln!(out, "{pad}}}");
                    for k in 0..sub.outputs.len() {
                        let _ = writeln!(out, "{pad}{inner}o{k} -> {prefix}i{i} [style=dashed];");
                    }
                }
            }
        }
        let many = inst.args.len() > 1;
        for (k, &a) in inst.args.iter().enumerate() {
            let from = node_of(g, prefix, a);
            if many {
                let _ = writeln!(out, "{pad}{from} -> {prefix}i{i} [label=\"{k}\"];");
            } else {
                let _ = writeln!(out, "{pad}{from} -> {prefix}i{i};");
            }
        }
    }
    for (k, &o) in g.outputs.iter().enumerate() {
        let lines = vec![format!("out{k}: {}", type_text(g, o))];
        let _ = writeln!(
            out,
            "{pad}{prefix}o{k} [shape=doubleoctagon, label=\"{}\"];",
            label(&lines)
        );
        let _ = writeln!(out, "{pad}{} -> {prefix}o{k};", node_of(g, prefix, o));
    }
    for (k, sub) in g.subgraphs.iter().enumerate() {
        let inner = format!("{prefix}g{k}_");
        let _ = writeln!(out, "{pad}subgraph cluster_{inner} {{");
        let _ = writeln!(out, "{pad}  label=\"{prefix}g{k}\";");
        write_body(out, sub, &inner, &format!("{pad}  "), &|_| None);
        let _ = writeln!(out, "{pad}}}");
    }
}
