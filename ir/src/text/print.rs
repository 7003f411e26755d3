//! The printer: renders a [`Graph`] in the jaxpr-like text format described in the
//! [module documentation](super).

use crate::array::{Array, Data};
use crate::entities::Value;
use crate::graph::Graph;
use crate::ops::{
    BinaryOp, CallKind, CompareOp, ControlOp, ConvGeneral, ConvertOp, DotGeneral, IndexOp,
    LiteralOp, Op, ReduceOp, ShapeOp, UnaryOp, WindowOp,
};
use crate::types::Shape;
use std::fmt::{self, Write};

/// Bodies with more equations than this, and graphs with control ops or `where` sub-graphs,
/// print one equation a line.
pub(crate) const MAX_INLINE_EQUATIONS: usize = 3;

impl Graph {
    /// The graph in the text format, without a trailing newline. Values are renumbered in
    /// print order (parameters `v0..`, then results in body order), so the text of a graph
    /// does not depend on how its arenas were filled.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        write_graph(&mut out, self, 0).expect("writing to a String cannot fail");
        out
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// The printed names of a graph's values: `v0..` in print order.
pub(crate) struct Names {
    numbers: Vec<Option<u32>>,
}

impl Names {
    /// Numbers the parameters first, then the results of each instruction in body order.
    pub(crate) fn new(g: &Graph) -> Names {
        let mut numbers = vec![None; g.values.len()];
        let mut next = 0u32;
        let defs = g
            .params
            .iter()
            .chain(g.insts.iter().flat_map(|i| i.results.iter()));
        for &v in defs {
            if let Some(slot) = numbers.get_mut(v.index()) {
                if slot.is_none() {
                    *slot = Some(next);
                    next += 1;
                }
            }
        }
        Names { numbers }
    }

    /// The printed name of `v`; a value the graph never defines prints as `undefined<index>`,
    /// which the parser rejects.
    pub(crate) fn name(&self, v: Value) -> String {
        match self.numbers.get(v.index()).copied().flatten() {
            Some(n) => format!("v{n}"),
            None => format!("undefined{}", v.index()),
        }
    }
}

/// The type of `v` as text; a value outside the graph's arena prints as `?`, which the
/// parser rejects.
pub(crate) fn type_text(g: &Graph, v: Value) -> String {
    match g.values.get(v.index()) {
        Some(_) => g.ty(v).to_string(),
        None => "?".to_string(),
    }
}

/// Writes an equation's op with all its parameters; the sub-graphs of a control op start new
/// lines indented by `indent` spaces.
fn write_equation_op(out: &mut String, op: &Op, indent: usize) -> fmt::Result {
    match op {
        Op::Control(c) => {
            out.push_str(op.name());
            write_control(out, c, Some(indent))
        }
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Convert(_)
        | Op::Literal(_)
        | Op::Shape(_)
        | Op::Reduce(_)
        | Op::Dot(_)
        | Op::Conv(_)
        | Op::Index(_)
        | Op::Window(_) => write_op(out, op),
    }
}

/// Whether an equation spans several lines (control ops print their sub-graphs on their own
/// lines), which forces the enclosing graph into the one-equation-a-line layout.
fn spans_lines(op: &Op) -> bool {
    match op {
        Op::Control(_) => true,
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Convert(_)
        | Op::Literal(_)
        | Op::Shape(_)
        | Op::Reduce(_)
        | Op::Dot(_)
        | Op::Conv(_)
        | Op::Index(_)
        | Op::Window(_) => false,
    }
}

/// Writes `g` whose opening brace sits on a line indented by `indent` spaces (the graph's
/// `let`, `in` and `where` lines are indented two more).
fn write_graph(out: &mut String, g: &Graph, indent: usize) -> fmt::Result {
    let names = Names::new(g);
    let multi = g.insts.len() > MAX_INLINE_EQUATIONS
        || !g.subgraphs.is_empty()
        || g.insts.iter().any(|i| spans_lines(&i.op));
    let pad = " ".repeat(indent);
    out.push_str("{ lambda ");
    for (k, &p) in g.params.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        write!(out, "{}:{}", names.name(p), type_text(g, p))?;
    }
    if !g.params.is_empty() {
        out.push(' ');
    }
    out.push('.');
    if multi {
        write!(out, "\n{pad}  let")?;
    } else {
        out.push_str(" let");
    }
    for (k, inst) in g.insts.iter().enumerate() {
        if k == 0 {
            out.push(' ');
        } else if multi {
            write!(out, "\n{pad}      ")?;
        } else {
            out.push_str("; ");
        }
        if inst.results.is_empty() {
            out.push('_');
        }
        for (j, &r) in inst.results.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            write!(out, "{}:{}", names.name(r), type_text(g, r))?;
        }
        out.push_str(" = ");
        write_equation_op(out, &inst.op, indent + 10)?;
        for &a in &inst.args {
            write!(out, " {}", names.name(a))?;
        }
    }
    if multi {
        write!(out, "\n{pad}  in (")?;
    } else {
        out.push_str(" in (");
    }
    for (k, &o) in g.outputs.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        out.push_str(&names.name(o));
    }
    out.push(')');
    for (k, sub) in g.subgraphs.iter().enumerate() {
        if k == 0 {
            write!(out, "\n{pad}  where ")?;
        } else {
            write!(out, "\n{pad}        ")?;
        }
        write!(out, "g{k} = ")?;
        write_graph(out, sub, indent + 8)?;
    }
    out.push_str(" }");
    Ok(())
}

/// Writes an op's name followed by its static parameters in brackets (nothing when it has
/// none), e.g. `transpose[perm=(1,0)]`. The sub-graphs of control ops are left out, so this is
/// a one-line header (used for DOT labels); equations print through [`write_equation_op`].
pub(crate) fn write_op(out: &mut String, op: &Op) -> fmt::Result {
    out.push_str(op.name());
    match op {
        Op::Unary(u) => write_unary(out, *u),
        Op::Binary(b) => write_binary(out, *b),
        Op::Compare(c) => write_compare(out, *c),
        Op::Convert(c) => write_convert(out, *c),
        Op::Literal(l) => write_literal(out, l),
        Op::Shape(s) => write_shape(out, s),
        Op::Reduce(r) => write_reduce(out, r),
        Op::Dot(d) => write_dot(out, d),
        Op::Conv(c) => write_conv(out, c),
        Op::Index(i) => write_index(out, i),
        Op::Control(c) => write_control(out, c, None),
        Op::Window(w) => write_window(out, w),
    }
}

/// A sub-graph parameter of a control op: one graph (`body={ ... }`) or a tuple of graphs
/// (`branches=({ ... }, { ... })`).
pub(crate) enum GraphParam<'a> {
    /// A single graph.
    One(&'a Graph),
    /// A tuple of graphs.
    Tuple(Vec<&'a Graph>),
}

/// The static parameters of a control op in print order: first the scalar ones as
/// `(key, value)` text, then the sub-graph ones. The parser reads the same keys.
pub(crate) struct ControlParams<'a> {
    /// `key=value` parameters whose value is a word.
    pub(crate) scalars: Vec<(&'static str, String)>,
    /// Parameters whose value is a graph or a tuple of graphs.
    pub(crate) graphs: Vec<(&'static str, GraphParam<'a>)>,
}

/// The text name of a call kind (`kind=...`).
pub(crate) fn call_kind_name(kind: &CallKind) -> &'static str {
    match kind {
        CallKind::Checkpoint(_) => "checkpoint",
        CallKind::CustomJvp { .. } => "custom_jvp",
        CallKind::CustomVjp { .. } => "custom_vjp",
    }
}

/// Splits a control op's parameters into scalar and sub-graph parameters.
pub(crate) fn control_params(op: &ControlOp) -> ControlParams<'_> {
    let mut scalars = Vec::new();
    let mut graphs = Vec::new();
    match op {
        ControlOp::Switch { branches } => {
            let bs = branches.iter().map(|b| b.graph()).collect();
            graphs.push(("branches", GraphParam::Tuple(bs)));
        }
        ControlOp::While {
            cond,
            body,
            n_consts,
        } => {
            scalars.push(("n_consts", n_consts.to_string()));
            graphs.push(("cond", GraphParam::One(cond.graph())));
            graphs.push(("body", GraphParam::One(body.graph())));
        }
        ControlOp::Scan {
            body,
            length,
            n_consts,
            n_carry,
            reverse,
        } => {
            scalars.push(("length", length.to_string()));
            scalars.push(("n_consts", n_consts.to_string()));
            scalars.push(("n_carry", n_carry.to_string()));
            scalars.push(("reverse", reverse.to_string()));
            graphs.push(("body", GraphParam::One(body.graph())));
        }
        ControlOp::TapedWhile {
            cond,
            fwd,
            step,
            n_consts,
            reverse,
        } => {
            scalars.push(("n_consts", n_consts.to_string()));
            scalars.push(("reverse", reverse.to_string()));
            graphs.push(("cond", GraphParam::One(cond.graph())));
            graphs.push(("fwd", GraphParam::One(fwd.graph())));
            graphs.push(("step", GraphParam::One(step.graph())));
        }
        ControlOp::CustomLinear { bwd, n_res } => {
            scalars.push(("n_res", n_res.to_string()));
            graphs.push(("bwd", GraphParam::One(bwd.graph())));
        }
        ControlOp::Call { body, kind } => {
            scalars.push(("kind", call_kind_name(kind).to_string()));
            match kind {
                CallKind::Checkpoint(p) => scalars.push(("policy", p.name().to_string())),
                CallKind::CustomJvp { rule, n_diff } => {
                    scalars.push(("n_diff", n_diff.to_string()));
                    graphs.push(("rule", GraphParam::One(rule.graph())));
                }
                CallKind::CustomVjp { fwd, bwd, n_diff } => {
                    scalars.push(("n_diff", n_diff.to_string()));
                    graphs.push(("fwd", GraphParam::One(fwd.graph())));
                    graphs.push(("bwd", GraphParam::One(bwd.graph())));
                }
            }
            graphs.push(("body", GraphParam::One(body.graph())));
        }
    }
    ControlParams { scalars, graphs }
}

/// Writes a control op's name and parameters. With `indent`, every sub-graph starts a new line
/// indented by that many spaces (its own lines are indented relative to it), e.g.
///
/// ```text
/// while[n_consts=0
///     cond={ lambda v0:f64[] . let ... in (v2) }
///     body={ lambda v0:f64[] . let ... in (v3) }]
/// ```
///
/// Without `indent` the sub-graphs are left out (a header for labels such as DOT's).
fn write_control(out: &mut String, op: &ControlOp, indent: Option<usize>) -> fmt::Result {
    let params = control_params(op);
    let header: Vec<String> = params
        .scalars
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let Some(indent) = indent else {
        if !header.is_empty() {
            write!(out, "[{}]", header.join(" "))?;
        }
        return Ok(());
    };
    let pad = " ".repeat(indent);
    write!(out, "[{}", header.join(" "))?;
    for (k, (key, value)) in params.graphs.iter().enumerate() {
        match value {
            GraphParam::One(g) => {
                write!(out, "\n{pad}{key}=")?;
                write_graph(out, g, indent)?;
            }
            GraphParam::Tuple(gs) => {
                if k > 0 || !header.is_empty() {
                    write!(out, "\n{pad}")?;
                }
                write!(out, "{key}=(")?;
                for (j, g) in gs.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write!(out, "\n{pad}")?;
                    write_graph(out, g, indent)?;
                }
                out.push(')');
            }
        }
    }
    out.push(']');
    Ok(())
}

/// A tuple of dimensions: `(1,0)`, `(2)` or `()`.
pub(crate) fn tuple(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("({})", parts.join(","))
}

fn write_unary(out: &mut String, op: UnaryOp) -> fmt::Result {
    match op.int_param() {
        Some((key, value)) => write!(out, "[{key}={value}]"),
        None => Ok(()),
    }
}

fn write_binary(_out: &mut String, op: BinaryOp) -> fmt::Result {
    match op {
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Pow
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Atan2
        | BinaryOp::Rem => Ok(()),
    }
}

fn write_compare(_out: &mut String, op: CompareOp) -> fmt::Result {
    match op {
        CompareOp::Eq
        | CompareOp::Ne
        | CompareOp::Lt
        | CompareOp::Le
        | CompareOp::Gt
        | CompareOp::Ge
        | CompareOp::And
        | CompareOp::Or
        | CompareOp::Not
        | CompareOp::Select => Ok(()),
    }
}

fn write_convert(out: &mut String, op: ConvertOp) -> fmt::Result {
    match op {
        ConvertOp::Convert(d) => write!(out, "[dtype={d}]"),
        ConvertOp::StopGradient => Ok(()),
    }
}

fn write_literal(out: &mut String, op: &LiteralOp) -> fmt::Result {
    match op {
        LiteralOp::Const(l) => {
            out.push('[');
            write_elements(out, l.array());
            out.push(']');
            Ok(())
        }
        LiteralOp::Iota { dtype, shape, axis } => {
            write!(
                out,
                "[dtype={dtype} shape={} axis={axis}]",
                tuple(shape.dims())
            )
        }
    }
}

fn write_shape(out: &mut String, op: &ShapeOp) -> fmt::Result {
    match op {
        ShapeOp::BroadcastInDim { shape, dims } => {
            write!(out, "[shape={} dims={}]", tuple(shape.dims()), tuple(dims))
        }
        ShapeOp::Reshape { shape } => write!(out, "[shape={}]", tuple(shape.dims())),
        ShapeOp::Transpose { perm } => write!(out, "[perm={}]", tuple(perm)),
        ShapeOp::Slice {
            start,
            limit,
            stride,
        } => write!(
            out,
            "[start={} limit={} stride={}]",
            tuple(start),
            tuple(limit),
            tuple(stride)
        ),
        ShapeOp::Pad { lo, hi, interior } => write!(
            out,
            "[lo={} hi={} interior={}]",
            tuple(lo),
            tuple(hi),
            tuple(interior)
        ),
        ShapeOp::Concatenate { axis } => write!(out, "[axis={axis}]"),
        ShapeOp::Rev { axes } => write!(out, "[axes={}]", tuple(axes)),
    }
}

fn write_reduce(out: &mut String, op: &ReduceOp) -> fmt::Result {
    match op {
        ReduceOp::Sum { axes }
        | ReduceOp::Max { axes }
        | ReduceOp::Min { axes }
        | ReduceOp::Prod { axes } => write!(out, "[axes={}]", tuple(axes)),
        ReduceOp::ArgMax { axis } | ReduceOp::ArgMin { axis } => write!(out, "[axis={axis}]"),
    }
}

fn write_dot(out: &mut String, d: &DotGeneral) -> fmt::Result {
    write!(
        out,
        "[lhs_contract={} rhs_contract={} lhs_batch={} rhs_batch={}]",
        tuple(&d.lhs_contract),
        tuple(&d.rhs_contract),
        tuple(&d.lhs_batch),
        tuple(&d.rhs_batch)
    )
}

fn write_conv(out: &mut String, c: &ConvGeneral) -> fmt::Result {
    let ints = |v: &mut dyn Iterator<Item = i64>| {
        let parts: Vec<String> = v.map(|x| x.to_string()).collect();
        format!("({})", parts.join(","))
    };
    let dn = &c.dimension_numbers;
    write!(
        out,
        "[window_strides={} padding_lo={} padding_hi={} lhs_dilation={} rhs_dilation={} \
         lhs_spec={} rhs_spec={} out_spec={} feature_group_count={} batch_group_count={}]",
        tuple(&c.window_strides),
        ints(&mut c.padding.iter().map(|p| p.0)),
        ints(&mut c.padding.iter().map(|p| p.1)),
        tuple(&c.lhs_dilation),
        tuple(&c.rhs_dilation),
        tuple(&dn.lhs),
        tuple(&dn.rhs),
        tuple(&dn.out),
        c.feature_group_count,
        c.batch_group_count
    )
}

fn write_index(out: &mut String, op: &IndexOp) -> fmt::Result {
    match op {
        IndexOp::Cumsum { axis, reverse } => write!(out, "[axis={axis} reverse={reverse}]"),
        IndexOp::DynamicSlice { sizes } => write!(out, "[sizes={}]", tuple(sizes)),
        IndexOp::DynamicUpdateSlice => Ok(()),
        IndexOp::Gather(ix) | IndexOp::Scatter { at: ix, .. } => out.write_str(&ix.params()),
    }
}

fn write_window(out: &mut String, op: &WindowOp) -> fmt::Result {
    out.push('[');
    match op {
        WindowOp::Reduce { .. } => {}
        WindowOp::SelectAndGatherAdd { select, .. }
        | WindowOp::SelectAndScatterAdd { select, .. } => write!(out, "select={} ", select.name())?,
    }
    let w = op.window();
    write!(
        out,
        "window={} strides={} lo={} hi={} base_dilation={} window_dilation={}]",
        tuple(&w.dims),
        tuple(&w.strides),
        tuple(&w.lo),
        tuple(&w.hi),
        tuple(&w.base_dilation),
        tuple(&w.window_dilation)
    )
}

/// Writes the elements of a constant without its outermost brackets: a scalar as one element,
/// higher ranks as comma-separated nested lists of the first dimension (`[1.0,2.0],[3.0,4.0]`
/// for a 2×2 array). The declared type supplies the shape when parsing.
pub(crate) fn write_elements(out: &mut String, a: &Array) {
    let dims = a.dims();
    if dims.is_empty() {
        write_element(out, a.data(), 0);
        return;
    }
    write_level(out, a.data(), a.shape(), 0, 0);
}

/// Writes the sub-array at `offset` spanning dimensions `dim..`, without brackets.
fn write_level(out: &mut String, data: &Data, shape: &Shape, dim: usize, offset: usize) {
    let dims = shape.dims();
    let stride: usize = dims[dim + 1..].iter().product();
    for i in 0..dims[dim] {
        if i > 0 {
            out.push(',');
        }
        if dim + 1 == dims.len() {
            write_element(out, data, offset + i);
        } else {
            out.push('[');
            write_level(out, data, shape, dim + 1, offset + i * stride);
            out.push(']');
        }
    }
}

/// Writes one element so that parsing it back gives the same bits: floats in Rust's shortest
/// round-tripping form (`1.0`, `-0.0`, `inf`, `NaN`), NaNs other than the canonical quiet NaN
/// as their raw bits in hexadecimal (`0x7ff8000000000001`).
fn write_element(out: &mut String, data: &Data, i: usize) {
    // Writing to a String cannot fail, so the results are ignored.
    let _ = match data {
        Data::F64(v) => {
            let x = v[i];
            if x.is_nan() && x.to_bits() != f64::NAN.to_bits() {
                write!(out, "0x{:016x}", x.to_bits())
            } else {
                write!(out, "{x:?}")
            }
        }
        Data::F32(v) => {
            let x = v[i];
            if x.is_nan() && x.to_bits() != f32::NAN.to_bits() {
                write!(out, "0x{:08x}", x.to_bits())
            } else {
                write!(out, "{x:?}")
            }
        }
        Data::I32(v) => write!(out, "{}", v[i]),
        Data::Bool(v) => write!(out, "{}", v[i]),
    };
}
