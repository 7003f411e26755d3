//! The parser: reads the text format back into a [`Graph`], type-checking every equation with
//! its op's type rule and comparing the result against the declared types.
//!
//! Op names are found through one function per op family. Each one walks the family's list
//! of ops (`UnaryOp::ALL`, or a list of prototypes for families whose variants carry
//! parameters) comparing `name()`, then reads the static parameters in an exhaustive `match`
//! on the variant, so adding a variant to a family fails to compile here until its parameters
//! are parsed.
//!
//! The graph is assembled directly rather than through the `Builder`, so nothing is folded or
//! merged: the parsed graph has exactly the printed equations, and its values are numbered in
//! text order.

use super::print::call_kind_name;
use crate::array::{Array, Data};
use crate::entities::{Inst, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, InstData, ValueDef};
use crate::ops::{
    BinaryOp, Body, Bounds, CallKind, Combine, CompareOp, ControlOp, ConvDimensionNumbers,
    ConvGeneral, ConvertOp, DotGeneral, IndexOp, Indexing, Literal, LiteralOp, Monoid, Op,
    ReduceOp, RematPolicy, Select, ShapeOp, UnaryOp, Window, WindowOp,
};
use crate::types::{DType, Dims, Shape, Type};
use hashbrown::HashMap;
use smallvec::SmallVec;
use std::fmt;

impl Graph {
    /// Parses the text format (as printed by [`Graph::to_text`]; whitespace and line breaks
    /// are free, `;` between equations is optional, `#` starts a comment running to the end
    /// of the line). Every equation is checked against its op's type rule and the declared
    /// result types, and the graph is verified. Errors have kind [`ErrorKind::Parse`] and a
    /// message starting with `line:column:`.
    pub fn parse(text: &str) -> Result<Graph> {
        let toks = lex(text)?;
        let mut p = Parser {
            toks,
            at: 0,
            depth: 0,
        };
        let g = p.graph()?;
        let t = p.peek();
        if t.tok != Tok::End {
            return Err(err(
                t.pos,
                format!("expected the end of the text, found {}", t.tok),
            ));
        }
        g.verify().map_err(|e| {
            Error::new(
                ErrorKind::Parse,
                format!("the parsed graph fails verification: {}", e.message),
            )
        })?;
        Ok(g)
    }
}

/// A position in the text, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: u32,
    col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

fn err(pos: Pos, msg: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Parse, format!("{pos}: {msg}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Names, numbers and keywords.
    Word(String),
    /// One of `{ } ( ) [ ] , : ; = .`.
    Punct(char),
    /// The end of the text.
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Punct(c) => write!(f, "`{c}`"),
            Tok::End => f.write_str("the end of the text"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: Pos,
}

/// Splits the text into tokens. A word is a run of letters, digits, `_`; words starting with a
/// digit or a sign are numbers and may also contain `.` and a signed exponent.
fn lex(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if "{}()[],:;=.".contains(c) {
            toks.push(Token {
                tok: Tok::Punct(c),
                pos,
            });
            i += 1;
            col += 1;
            continue;
        }
        let signed = (c == '-' || c == '+')
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() || *n == '.');
        if c.is_alphanumeric() || c == '_' || signed {
            let numeric = signed || c.is_ascii_digit();
            let start = i;
            i += 1;
            while i < chars.len() {
                let n = chars[i];
                let exp_sign =
                    numeric && (n == '-' || n == '+') && matches!(chars[i - 1], 'e' | 'E');
                if n.is_alphanumeric() || n == '_' || (numeric && n == '.') || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            let word: String = chars[start..i].iter().collect();
            col += (i - start) as u32;
            toks.push(Token {
                tok: Tok::Word(word),
                pos,
            });
            continue;
        }
        return Err(err(pos, format!("unexpected character `{c}`")));
    }
    toks.push(Token {
        tok: Tok::End,
        pos: Pos { line, col },
    });
    Ok(toks)
}

/// A parameter value: a word, a tuple of words, a graph, or a tuple of graphs.
#[derive(Clone, Debug)]
enum PVal {
    Word(String),
    Tuple(Vec<String>),
    Graph(Graph),
    Graphs(Vec<Graph>),
}

impl PVal {
    /// What kind of value this is, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            PVal::Word(_) => "a single value",
            PVal::Tuple(_) => "a tuple",
            PVal::Graph(_) => "a graph",
            PVal::Graphs(_) => "a tuple of graphs",
        }
    }
}

/// The `key=value` parameters of one equation, consumed as the op reads them.
#[derive(Debug)]
struct Params {
    op: String,
    pos: Pos,
    items: Vec<(String, PVal, Pos)>,
}

impl Params {
    fn take(&mut self, key: &str) -> Result<(PVal, Pos)> {
        match self.items.iter().position(|(k, _, _)| k == key) {
            Some(i) => {
                let (_, v, pos) = self.items.remove(i);
                Ok((v, pos))
            }
            None => Err(err(
                self.pos,
                format!("`{}` needs the parameter `{key}`", self.op),
            )),
        }
    }

    fn word(&mut self, key: &str) -> Result<(String, Pos)> {
        match self.take(key)? {
            (PVal::Word(w), pos) => Ok((w, pos)),
            (other, pos) => Err(err(
                pos,
                format!(
                    "`{key}` of `{}` must be a single value, not {}",
                    self.op,
                    other.kind()
                ),
            )),
        }
    }

    /// A graph parameter, `key={ lambda ... }`.
    fn graph(&mut self, key: &str) -> Result<Graph> {
        match self.take(key)? {
            (PVal::Graph(g), _) => Ok(g),
            (other, pos) => Err(err(
                pos,
                format!(
                    "`{key}` of `{}` must be a graph `{{ lambda ... }}`, not {}",
                    self.op,
                    other.kind()
                ),
            )),
        }
    }

    /// A tuple of graphs, `key=({ lambda ... }, { lambda ... })`; `()` is an empty tuple.
    fn graphs(&mut self, key: &str) -> Result<Vec<Graph>> {
        match self.take(key)? {
            (PVal::Graphs(gs), _) => Ok(gs),
            (PVal::Tuple(ws), _) if ws.is_empty() => Ok(Vec::new()),
            (other, pos) => Err(err(
                pos,
                format!(
                    "`{key}` of `{}` must be a tuple of graphs, not {}",
                    self.op,
                    other.kind()
                ),
            )),
        }
    }

    /// Whether the parameter `key` was given (for optional parameters).
    fn has(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _, _)| k == key)
    }

    fn usize(&mut self, key: &str) -> Result<usize> {
        let (w, pos) = self.word(key)?;
        parse_dim(&w, pos, key)
    }

    fn i32(&mut self, key: &str) -> Result<i32> {
        let (w, pos) = self.word(key)?;
        w.parse()
            .map_err(|_| err(pos, format!("`{key}` must be an integer, found `{w}`")))
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let (w, pos) = self.word(key)?;
        match w.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(err(
                pos,
                format!("`{key}` must be `true` or `false`, found `{w}`"),
            )),
        }
    }

    fn dtype(&mut self, key: &str) -> Result<DType> {
        let (w, pos) = self.word(key)?;
        DType::from_name(&w).ok_or_else(|| err(pos, format!("unknown dtype `{w}`")))
    }

    fn dims(&mut self, key: &str) -> Result<Dims> {
        match self.take(key)? {
            (PVal::Tuple(ws), pos) => ws.iter().map(|w| parse_dim(w, pos, key)).collect(),
            (PVal::Word(w), pos) => Err(err(
                pos,
                format!("`{key}` must be a tuple like `(0,1)`, found `{w}`"),
            )),
            (other, pos) => Err(err(
                pos,
                format!("`{key}` must be a tuple like `(0,1)`, not {}", other.kind()),
            )),
        }
    }

    /// A tuple of signed integers, `key=(0,-1)`.
    fn ints(&mut self, key: &str) -> Result<Vec<i64>> {
        match self.take(key)? {
            (PVal::Tuple(ws), pos) => ws
                .iter()
                .map(|w| {
                    w.parse::<i64>().map_err(|_| {
                        err(pos, format!("`{key}` needs 64-bit integers, found `{w}`"))
                    })
                })
                .collect(),
            (other, pos) => Err(err(
                pos,
                format!(
                    "`{key}` must be a tuple like `(0,-1)`, not {}",
                    other.kind()
                ),
            )),
        }
    }

    fn shape(&mut self, key: &str) -> Result<Shape> {
        let pos = self
            .items
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or(self.pos, |i| i.2);
        checked_shape(self.dims(key)?, pos)
    }

    /// Fails when a parameter was given that the op does not take.
    fn finish(self) -> Result<()> {
        match self.items.first() {
            Some((k, _, pos)) => Err(err(*pos, format!("`{}` takes no parameter `{k}`", self.op))),
            None => Ok(()),
        }
    }
}

/// The elements of a constant as written: leaves and bracketed lists.
#[derive(Clone, Debug)]
enum Lit {
    Leaf(String, Pos),
    List(Vec<Lit>, Pos),
}

/// What follows an op's name in brackets.
enum Bracket {
    /// `key=value` parameters (possibly none).
    Params(Params),
    /// The elements of a constant.
    Elems(Vec<Lit>, Pos),
}

/// Everything an op family needs to build its op from the text.
struct OpText<'a> {
    name: &'a str,
    pos: Pos,
    bracket: Bracket,
    declared: &'a [Type],
}

impl OpText<'_> {
    /// The key-value parameters; a constant's element list is an error here.
    fn params(&mut self) -> Result<&mut Params> {
        match &mut self.bracket {
            Bracket::Params(p) => Ok(p),
            Bracket::Elems(_, pos) => Err(err(
                *pos,
                format!("`{}` takes `key=value` parameters", self.name),
            )),
        }
    }

    /// Checks that every parameter was used and returns `op`.
    fn done(self, op: Op) -> Result<Op> {
        match self.bracket {
            Bracket::Params(p) => p.finish()?,
            Bracket::Elems(_, pos) => {
                return Err(err(
                    pos,
                    format!("`{}` takes `key=value` parameters", self.name),
                ))
            }
        }
        Ok(op)
    }
}

/// Builds an op of one family when the family has an op of that name.
type Family = fn(&mut OpText<'_>) -> Result<Option<Op>>;

/// Finds the op named in `t`, trying each family in turn.
fn lookup_op(mut t: OpText<'_>) -> Result<Op> {
    let families: [Family; 12] = [
        unary_op, binary_op, compare_op, convert_op, literal_op, shape_op, reduce_op, dot_op,
        conv_op, index_op, control_op, window_op,
    ];
    for family in families {
        if let Some(op) = family(&mut t)? {
            return t.done(op);
        }
    }
    Err(err(t.pos, format!("unknown op `{}`", t.name)))
}

fn unary_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let Some(proto) = UnaryOp::ALL.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let op = match proto.int_param() {
        Some((key, _)) => proto.with_int_param(t.params()?.i32(key)?),
        None => proto,
    };
    Ok(Some(Op::Unary(op)))
}

fn binary_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    Ok(BinaryOp::ALL
        .into_iter()
        .find(|o| o.name() == t.name)
        .map(Op::Binary))
}

fn compare_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    Ok(CompareOp::ALL
        .into_iter()
        .find(|o| o.name() == t.name)
        .map(Op::Compare))
}

fn convert_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let protos = [ConvertOp::Convert(DType::F64), ConvertOp::StopGradient];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let op = match proto {
        ConvertOp::Convert(_) => ConvertOp::Convert(t.params()?.dtype("dtype")?),
        ConvertOp::StopGradient => proto,
    };
    Ok(Some(Op::Convert(op)))
}

/// The name of `const`, taken from the op itself.
fn const_name() -> &'static str {
    LiteralOp::Const(Literal::new(Array::scalar(DType::F64, 0.0))).name()
}

fn literal_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let protos = [
        LiteralOp::Const(Literal::new(Array::scalar(DType::F64, 0.0))),
        LiteralOp::Iota {
            dtype: DType::I32,
            shape: Shape::scalar(),
            axis: 0,
        },
    ];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let op = match proto {
        LiteralOp::Const(_) => {
            let (elems, pos) = match &t.bracket {
                Bracket::Elems(e, pos) => (e, *pos),
                Bracket::Params(_) => {
                    return Err(err(t.pos, "`const` needs its elements in brackets"))
                }
            };
            let [ty] = t.declared else {
                return Err(err(t.pos, "`const` defines exactly one value"));
            };
            let array = build_constant(elems, pos, ty)?;
            // The elements are consumed; an empty parameter list lets `done` succeed.
            t.bracket = Bracket::Params(Params {
                op: t.name.to_string(),
                pos,
                items: Vec::new(),
            });
            LiteralOp::Const(Literal::new(array))
        }
        LiteralOp::Iota { .. } => {
            let p = t.params()?;
            LiteralOp::Iota {
                dtype: p.dtype("dtype")?,
                shape: p.shape("shape")?,
                axis: p.usize("axis")?,
            }
        }
    };
    Ok(Some(Op::Literal(op)))
}

fn shape_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let protos = [
        ShapeOp::BroadcastInDim {
            shape: Shape::scalar(),
            dims: Box::default(),
        },
        ShapeOp::Reshape {
            shape: Shape::scalar(),
        },
        ShapeOp::Transpose {
            perm: Box::default(),
        },
        ShapeOp::Slice {
            start: Box::default(),
            limit: Box::default(),
            stride: Box::default(),
        },
        ShapeOp::Pad {
            lo: Box::default(),
            hi: Box::default(),
            interior: Box::default(),
        },
        ShapeOp::Concatenate { axis: 0 },
        ShapeOp::Rev {
            axes: Box::default(),
        },
    ];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let p = t.params()?;
    let op = match proto {
        ShapeOp::BroadcastInDim { .. } => ShapeOp::BroadcastInDim {
            shape: p.shape("shape")?,
            dims: p.dims("dims")?.into_boxed_slice(),
        },
        ShapeOp::Reshape { .. } => ShapeOp::Reshape {
            shape: p.shape("shape")?,
        },
        ShapeOp::Transpose { .. } => ShapeOp::Transpose {
            perm: p.dims("perm")?.into_boxed_slice(),
        },
        ShapeOp::Slice { .. } => ShapeOp::Slice {
            start: p.dims("start")?.into_boxed_slice(),
            limit: p.dims("limit")?.into_boxed_slice(),
            stride: p.dims("stride")?.into_boxed_slice(),
        },
        ShapeOp::Pad { .. } => ShapeOp::Pad {
            lo: p.dims("lo")?.into_boxed_slice(),
            hi: p.dims("hi")?.into_boxed_slice(),
            interior: p.dims("interior")?.into_boxed_slice(),
        },
        ShapeOp::Concatenate { .. } => ShapeOp::Concatenate {
            axis: p.usize("axis")?,
        },
        ShapeOp::Rev { .. } => ShapeOp::Rev {
            axes: p.dims("axes")?.into_boxed_slice(),
        },
    };
    Ok(Some(Op::Shape(op)))
}

fn reduce_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let protos = [
        ReduceOp::Sum { axes: Dims::new() },
        ReduceOp::Max { axes: Dims::new() },
        ReduceOp::Min { axes: Dims::new() },
        ReduceOp::Prod { axes: Dims::new() },
        ReduceOp::ArgMax { axis: 0 },
        ReduceOp::ArgMin { axis: 0 },
    ];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let p = t.params()?;
    let op = match proto {
        ReduceOp::Sum { .. } => ReduceOp::Sum {
            axes: p.dims("axes")?,
        },
        ReduceOp::Max { .. } => ReduceOp::Max {
            axes: p.dims("axes")?,
        },
        ReduceOp::Min { .. } => ReduceOp::Min {
            axes: p.dims("axes")?,
        },
        ReduceOp::Prod { .. } => ReduceOp::Prod {
            axes: p.dims("axes")?,
        },
        ReduceOp::ArgMax { .. } => ReduceOp::ArgMax {
            axis: p.usize("axis")?,
        },
        ReduceOp::ArgMin { .. } => ReduceOp::ArgMin {
            axis: p.usize("axis")?,
        },
    };
    Ok(Some(Op::Reduce(op)))
}

fn dot_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let proto = Op::Dot(Box::default());
    if proto.name() != t.name {
        return Ok(None);
    }
    let p = t.params()?;
    Ok(Some(Op::Dot(Box::new(DotGeneral {
        lhs_contract: p.dims("lhs_contract")?,
        rhs_contract: p.dims("rhs_contract")?,
        lhs_batch: p.dims("lhs_batch")?,
        rhs_batch: p.dims("rhs_batch")?,
    }))))
}

fn conv_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let proto = Op::Conv(Box::new(ConvGeneral::new(0)));
    if proto.name() != t.name {
        return Ok(None);
    }
    let p = t.params()?;
    let window_strides = p.dims("window_strides")?;
    let (lo, hi) = (p.ints("padding_lo")?, p.ints("padding_hi")?);
    if lo.len() != hi.len() {
        return Err(err(
            p.pos,
            "`padding_lo` and `padding_hi` need one entry per spatial axis each",
        ));
    }
    Ok(Some(Op::Conv(Box::new(ConvGeneral {
        window_strides,
        padding: lo.into_iter().zip(hi).collect(),
        lhs_dilation: p.dims("lhs_dilation")?,
        rhs_dilation: p.dims("rhs_dilation")?,
        dimension_numbers: ConvDimensionNumbers {
            lhs: p.dims("lhs_spec")?,
            rhs: p.dims("rhs_spec")?,
            out: p.dims("out_spec")?,
        },
        feature_group_count: p.usize("feature_group_count")?,
        batch_group_count: p.usize("batch_group_count")?,
    }))))
}

fn index_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let protos = [
        IndexOp::Cumsum {
            axis: 0,
            reverse: false,
        },
        IndexOp::DynamicSlice { sizes: Dims::new() },
        IndexOp::DynamicUpdateSlice,
        IndexOp::Gather(Indexing::default()),
    ];
    let scatters = Combine::ALL.map(|combine| IndexOp::Scatter {
        at: Indexing::default(),
        combine,
    });
    let Some(proto) = protos
        .into_iter()
        .chain(scatters)
        .find(|o| o.name() == t.name)
    else {
        return Ok(None);
    };
    let op = match proto {
        IndexOp::Cumsum { .. } => {
            let p = t.params()?;
            IndexOp::Cumsum {
                axis: p.usize("axis")?,
                reverse: p.bool("reverse")?,
            }
        }
        IndexOp::DynamicSlice { .. } => IndexOp::DynamicSlice {
            sizes: t.params()?.dims("sizes")?,
        },
        IndexOp::DynamicUpdateSlice => proto,
        IndexOp::Gather(_) => IndexOp::Gather(indexing(t)?),
        IndexOp::Scatter { combine, .. } => IndexOp::Scatter {
            at: indexing(t)?,
            combine,
        },
    };
    Ok(Some(Op::Index(op)))
}

fn window_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let w = Window::new(&[]);
    let select = Select::Max;
    let protos = [
        WindowOp::Reduce {
            monoid: Monoid::Sum,
            window: w.clone(),
        },
        WindowOp::Reduce {
            monoid: Monoid::Max,
            window: w.clone(),
        },
        WindowOp::Reduce {
            monoid: Monoid::Min,
            window: w.clone(),
        },
        WindowOp::SelectAndGatherAdd {
            select,
            window: w.clone(),
        },
        WindowOp::SelectAndScatterAdd { select, window: w },
    ];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let p = t.params()?;
    let mut select = || -> Result<Select> {
        let (w, pos) = p.word("select")?;
        Select::from_name(&w)
            .ok_or_else(|| err(pos, format!("`select` must be `max` or `min`, found `{w}`")))
    };
    let op = match proto {
        WindowOp::Reduce { monoid, window } => WindowOp::Reduce { monoid, window },
        WindowOp::SelectAndGatherAdd { window, .. } => WindowOp::SelectAndGatherAdd {
            select: select()?,
            window,
        },
        WindowOp::SelectAndScatterAdd { window, .. } => WindowOp::SelectAndScatterAdd {
            select: select()?,
            window,
        },
    };
    let window = Window {
        dims: p.dims("window")?,
        strides: p.dims("strides")?,
        lo: p.dims("lo")?,
        hi: p.dims("hi")?,
        base_dilation: p.dims("base_dilation")?,
        window_dilation: p.dims("window_dilation")?,
    };
    Ok(Some(Op::Window(Box::new(op.with_window(window)))))
}

/// The optional `axis`, `along` and `bounds` parameters of a gather or scatter (each defaults
/// to the row gather's: axis 0, take, clip).
fn indexing(t: &mut OpText<'_>) -> Result<Indexing> {
    let p = t.params()?;
    let mut ix = Indexing::default();
    if p.has("axis") {
        ix.axis = p.usize("axis")?;
    }
    if p.has("along") {
        ix.along = p.bool("along")?;
    }
    if p.has("bounds") {
        let (w, pos) = p.word("bounds")?;
        ix.bounds = match w.as_str() {
            "clip" => Bounds::Clip,
            "fill" => Bounds::Fill,
            _ => {
                return Err(err(
                    pos,
                    format!("`bounds` must be `clip` or `fill`, found `{w}`"),
                ))
            }
        };
    }
    Ok(ix)
}

/// The sub-graph of a control op, shared.
fn body(g: Graph) -> Body {
    Body::new(g)
}

fn control_op(t: &mut OpText<'_>) -> Result<Option<Op>> {
    let empty = || body(Graph::default());
    let protos = [
        ControlOp::Switch {
            branches: SmallVec::new(),
        },
        ControlOp::While {
            cond: empty(),
            body: empty(),
            n_consts: 0,
        },
        ControlOp::Scan {
            body: empty(),
            length: 0,
            n_consts: 0,
            n_carry: 0,
            reverse: false,
        },
        ControlOp::TapedWhile {
            cond: empty(),
            fwd: empty(),
            step: empty(),
            n_consts: 0,
            reverse: false,
        },
        ControlOp::CustomLinear {
            bwd: empty(),
            n_res: 0,
        },
        ControlOp::Call {
            body: empty(),
            kind: CallKind::Checkpoint(RematPolicy::Nothing),
        },
    ];
    let Some(proto) = protos.into_iter().find(|o| o.name() == t.name) else {
        return Ok(None);
    };
    let p = t.params()?;
    let op = match proto {
        ControlOp::Switch { .. } => ControlOp::Switch {
            branches: p.graphs("branches")?.into_iter().map(body).collect(),
        },
        ControlOp::While { .. } => ControlOp::While {
            n_consts: p.usize("n_consts")?,
            cond: body(p.graph("cond")?),
            body: body(p.graph("body")?),
        },
        ControlOp::Scan { .. } => ControlOp::Scan {
            length: p.usize("length")?,
            n_consts: p.usize("n_consts")?,
            n_carry: p.usize("n_carry")?,
            reverse: p.bool("reverse")?,
            body: body(p.graph("body")?),
        },
        ControlOp::TapedWhile { .. } => ControlOp::TapedWhile {
            n_consts: p.usize("n_consts")?,
            reverse: p.bool("reverse")?,
            cond: body(p.graph("cond")?),
            fwd: body(p.graph("fwd")?),
            step: body(p.graph("step")?),
        },
        ControlOp::CustomLinear { .. } => ControlOp::CustomLinear {
            n_res: p.usize("n_res")?,
            bwd: body(p.graph("bwd")?),
        },
        ControlOp::Call { .. } => {
            let kind = call_kind(p)?;
            ControlOp::Call {
                body: body(p.graph("body")?),
                kind,
            }
        }
    };
    Ok(Some(Op::Control(op)))
}

/// The `kind=...` of a `call` and the parameters that kind takes.
fn call_kind(p: &mut Params) -> Result<CallKind> {
    let empty = || body(Graph::default());
    let protos = [
        CallKind::Checkpoint(RematPolicy::Nothing),
        CallKind::CustomJvp {
            rule: empty(),
            n_diff: 0,
        },
        CallKind::CustomVjp {
            fwd: empty(),
            bwd: empty(),
            n_diff: 0,
        },
    ];
    let (w, pos) = p.word("kind")?;
    let Some(proto) = protos.into_iter().find(|k| call_kind_name(k) == w) else {
        return Err(err(pos, format!("unknown call kind `{w}`")));
    };
    Ok(match proto {
        CallKind::Checkpoint(_) => {
            let (w, pos) = p.word("policy")?;
            // Every policy, so that the names are looked up rather than repeated here.
            let policies = [RematPolicy::Nothing, RematPolicy::DotsOnly];
            let policy = policies
                .into_iter()
                .find(|q| q.name() == w)
                .ok_or_else(|| err(pos, format!("unknown checkpoint policy `{w}`")))?;
            CallKind::Checkpoint(policy)
        }
        CallKind::CustomJvp { .. } => CallKind::CustomJvp {
            n_diff: p.usize("n_diff")?,
            rule: body(p.graph("rule")?),
        },
        CallKind::CustomVjp { .. } => CallKind::CustomVjp {
            n_diff: p.usize("n_diff")?,
            fwd: body(p.graph("fwd")?),
            bwd: body(p.graph("bwd")?),
        },
    })
}

/// Builds a constant of the declared type from its written elements: a scalar is one element;
/// otherwise the bracket holds the list along the first dimension, nested for the others.
fn build_constant(elems: &[Lit], pos: Pos, ty: &Type) -> Result<Array> {
    let mut leaves = Vec::new();
    if ty.is_scalar() {
        match elems {
            [Lit::Leaf(s, p)] => leaves.push((s.as_str(), *p)),
            _ => {
                return Err(err(
                    pos,
                    format!("a constant of type {ty} needs exactly one element"),
                ))
            }
        }
    } else {
        flatten(elems, pos, ty, 0, &mut leaves)?;
    }
    let data = match ty.dtype {
        DType::F64 => Data::F64(
            leaves
                .iter()
                .map(|&(s, p)| parse_f64(s).ok_or_else(|| bad_element(p, s, ty.dtype)))
                .collect::<Result<_>>()?,
        ),
        DType::F32 => Data::F32(
            leaves
                .iter()
                .map(|&(s, p)| parse_f32(s).ok_or_else(|| bad_element(p, s, ty.dtype)))
                .collect::<Result<_>>()?,
        ),
        DType::I32 => Data::I32(
            leaves
                .iter()
                .map(|&(s, p)| s.parse().map_err(|_| bad_element(p, s, ty.dtype)))
                .collect::<Result<_>>()?,
        ),
        DType::Bool => Data::Bool(
            leaves
                .iter()
                .map(|&(s, p)| match s {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(bad_element(p, s, ty.dtype)),
                })
                .collect::<Result<_>>()?,
        ),
    };
    Array::new(ty.shape.clone(), data).map_err(|e| err(pos, e.message))
}

fn bad_element(pos: Pos, s: &str, dtype: DType) -> Error {
    err(pos, format!("`{s}` is not a valid {dtype} element"))
}

/// Checks that `items` is a list along dimension `dim` of `ty` and collects its leaves.
fn flatten<'a>(
    items: &'a [Lit],
    pos: Pos,
    ty: &Type,
    dim: usize,
    out: &mut Vec<(&'a str, Pos)>,
) -> Result<()> {
    let n = ty.dims()[dim];
    if items.len() != n {
        return Err(err(
            pos,
            format!(
                "a constant of type {ty} needs {n} elements along dimension {dim}, found {}",
                items.len()
            ),
        ));
    }
    let last = dim + 1 == ty.rank();
    for item in items {
        match (item, last) {
            (Lit::Leaf(s, p), true) => out.push((s.as_str(), *p)),
            (Lit::List(sub, p), false) => flatten(sub, *p, ty, dim + 1, out)?,
            (Lit::Leaf(_, p), false) => {
                return Err(err(
                    *p,
                    format!(
                        "expected a bracketed list for dimension {} of {ty}",
                        dim + 1
                    ),
                ))
            }
            (Lit::List(_, p), true) => {
                return Err(err(
                    *p,
                    format!("expected an element, not a list, in dimension {dim} of {ty}"),
                ))
            }
        }
    }
    Ok(())
}

/// Parses an f64 element: a decimal form Rust reads, `inf`, `NaN`, or `0x` and the raw bits.
fn parse_f64(s: &str) -> Option<f64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok().map(f64::from_bits),
        None => s.parse().ok(),
    }
}

/// Parses an f32 element like [`parse_f64`].
fn parse_f32(s: &str) -> Option<f32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok().map(f32::from_bits),
        None => s.parse().ok(),
    }
}

/// Whether a word can name a value (starts with a letter and is not a keyword).
/// The largest dimension, axis or size parameter the parser accepts, so that the arithmetic of
/// type rules on parsed numbers cannot overflow.
const MAX_DIM: usize = i32::MAX as usize;

/// How deeply graphs and constant lists may nest, so hostile text cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Parses a dimension or an axis: a non-negative integer up to [`MAX_DIM`].
fn parse_dim(w: &str, pos: Pos, what: &str) -> Result<usize> {
    match w.parse::<usize>() {
        Ok(d) if d <= MAX_DIM => Ok(d),
        _ => Err(err(
            pos,
            format!("`{what}` needs integers from 0 to {MAX_DIM}, found `{w}`"),
        )),
    }
}

/// A shape whose element count fits in `usize`.
/// A shape whose element count fits `usize`; an overflow is an error of kind
/// [`ErrorKind::Size`] at `pos`.
fn checked_shape(dims: Dims, pos: Pos) -> Result<Shape> {
    let shape = Shape(dims);
    if shape.checked_size().is_none() {
        return Err(Error::new(
            ErrorKind::Size,
            format!("{pos}: the element count of shape {shape} overflows usize"),
        ));
    }
    Ok(shape)
}

fn is_value_name(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(w, "in" | "let" | "lambda" | "where")
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    /// The current nesting of graphs and constant lists.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn peek2(&self) -> &Token {
        &self.toks[(self.at + 1).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(x) if x == w)
    }

    fn expect_punct(&mut self, c: char, context: &str) -> Result<Pos> {
        let t = self.bump();
        if t.tok == Tok::Punct(c) {
            Ok(t.pos)
        } else {
            Err(err(
                t.pos,
                format!("expected `{c}` {context}, found {}", t.tok),
            ))
        }
    }

    fn expect_word(&mut self, w: &str, context: &str) -> Result<Pos> {
        let t = self.bump();
        match &t.tok {
            Tok::Word(x) if x == w => Ok(t.pos),
            other => Err(err(
                t.pos,
                format!("expected `{w}` {context}, found {other}"),
            )),
        }
    }

    fn any_word(&mut self, what: &str) -> Result<(String, Pos)> {
        let t = self.bump();
        match t.tok {
            Tok::Word(w) => Ok((w, t.pos)),
            other => Err(err(t.pos, format!("expected {what}, found {other}"))),
        }
    }

    fn value_name(&mut self, what: &str) -> Result<(String, Pos)> {
        let (w, pos) = self.any_word(what)?;
        if !is_value_name(&w) {
            return Err(err(pos, format!("expected {what}, found `{w}`")));
        }
        Ok((w, pos))
    }

    /// `dtype[d0,d1,...]`.
    fn ty(&mut self) -> Result<Type> {
        let (w, pos) = self.any_word("a type like `f64[3,2]`")?;
        let open = self.peek().pos;
        let dtype = DType::from_name(&w).ok_or_else(|| err(pos, format!("unknown dtype `{w}`")))?;
        self.expect_punct('[', "after the dtype")?;
        let mut dims = Dims::new();
        if !self.is_punct(']') {
            loop {
                let (d, pos) = self.any_word("a dimension")?;
                dims.push(parse_dim(&d, pos, "a shape")?);
                if self.is_punct(',') {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect_punct(']', "to close the shape")?;
        let ty = Type {
            dtype,
            shape: checked_shape(dims, open)?,
        };
        ty.check_size("the type")
            .map_err(|e| Error::new(e.kind, format!("{open}: {}", e.message)))?;
        Ok(ty)
    }

    /// `name:type`.
    fn binder(&mut self) -> Result<(String, Pos, Type)> {
        let (name, pos) = self.value_name("a value name")?;
        self.expect_punct(':', "between a value and its type")?;
        let ty = self.ty()?;
        Ok((name, pos, ty))
    }

    /// `{ lambda params . let eqns in (outputs) [where g0 = graph ...] }`.
    fn graph(&mut self) -> Result<Graph> {
        let open = self.expect_punct('{', "to open a graph")?;
        self.enter(open)?;
        let g = self.graph_body();
        self.depth -= 1;
        g
    }

    /// A graph given as an op parameter; it is verified on its own, since the enclosing
    /// graph's verification does not look inside ops.
    fn nested_graph(&mut self) -> Result<Graph> {
        let pos = self.peek().pos;
        let g = self.graph()?;
        g.verify().map_err(|e| {
            err(
                pos,
                format!("this sub-graph fails verification: {}", e.message),
            )
        })?;
        Ok(g)
    }

    /// Counts one more level of nesting, failing beyond [`MAX_DEPTH`].
    fn enter(&mut self, pos: Pos) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// A graph after its opening brace.
    fn graph_body(&mut self) -> Result<Graph> {
        self.expect_word("lambda", "after `{`")?;
        let mut g = Graph::default();
        let mut scope: HashMap<String, Value> = HashMap::new();
        if !self.is_punct('.') {
            loop {
                let (name, pos, ty) = self.binder()?;
                let v = Value::from_index(g.values.len());
                define(&mut scope, name, pos, v)?;
                let n = g.params.len() as u32;
                g.push_value(ty, ValueDef::Param(n));
                g.params.push(v);
                if self.is_punct(',') {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect_punct('.', "after the parameters")?;
        self.expect_word("let", "after the parameters")?;
        loop {
            if self.is_punct(';') {
                self.bump();
            } else if self.is_word("in") {
                self.bump();
                break;
            } else {
                self.equation(&mut g, &mut scope)?;
            }
        }
        self.expect_punct('(', "before the outputs")?;
        if !self.is_punct(')') {
            loop {
                let (name, pos) = self.value_name("an output value")?;
                g.outputs.push(lookup(&scope, &name, pos)?);
                if self.is_punct(',') {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect_punct(')', "after the outputs")?;
        if self.is_word("where") {
            self.bump();
            loop {
                let name = format!("g{}", g.subgraphs.len());
                self.expect_word(&name, "(sub-graphs are numbered in order)")?;
                self.expect_punct('=', "after the sub-graph name")?;
                let sub = self.graph()?;
                g.subgraphs.push(sub);
                if self.is_punct('}') {
                    break;
                }
            }
        }
        self.expect_punct('}', "to close the graph")?;
        Ok(g)
    }

    /// `v2:f64[], v3:f64[] = op[params] args` (or `_ = ...` with no results).
    fn equation(&mut self, g: &mut Graph, scope: &mut HashMap<String, Value>) -> Result<()> {
        let mut binders = Vec::new();
        if self.is_word("_") {
            self.bump();
        } else {
            loop {
                binders.push(self.binder()?);
                if self.is_punct(',') {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect_punct('=', "after the defined values")?;
        let (name, pos) = self.any_word("an op name")?;
        let bracket = if self.is_punct('[') {
            let open = self.bump().pos;
            if name == const_name() {
                Bracket::Elems(self.elements()?, open)
            } else {
                Bracket::Params(self.params(&name, open)?)
            }
        } else {
            Bracket::Params(Params {
                op: name.clone(),
                pos,
                items: Vec::new(),
            })
        };
        let mut args = SmallVec::<[Value; 4]>::new();
        while let Tok::Word(w) = &self.peek().tok {
            if !is_value_name(w) || self.peek2().tok == Tok::Punct(':') {
                break;
            }
            let (w, apos) = self.any_word("an operand")?;
            args.push(lookup(scope, &w, apos)?);
        }
        let declared: Vec<Type> = binders.iter().map(|(_, _, t)| t.clone()).collect();
        let op = lookup_op(OpText {
            name: &name,
            pos,
            bracket,
            declared: &declared,
        })?;
        let arg_tys: Vec<Type> = args.iter().map(|&a| g.ty(a).clone()).collect();
        let inferred = op.infer(&arg_tys).map_err(|e| err(pos, e.message))?;
        if inferred.len() != declared.len() {
            return Err(err(
                pos,
                format!(
                    "`{name}` gives {} results but {} are declared",
                    inferred.len(),
                    declared.len()
                ),
            ));
        }
        for ((vname, vpos, ty), want) in binders.iter().zip(&inferred) {
            if ty != want {
                return Err(err(
                    *vpos,
                    format!("{vname} is declared {ty} but the type rule of `{name}` gives {want}"),
                ));
            }
        }
        let inst = Inst::from_index(g.insts.len());
        let mut results = SmallVec::new();
        for (k, (vname, vpos, ty)) in binders.into_iter().enumerate() {
            let v = Value::from_index(g.values.len());
            define(scope, vname, vpos, v)?;
            g.push_value(ty, ValueDef::Result(inst, k as u32));
            results.push(v);
        }
        g.insts.push(InstData { op, args, results });
        Ok(())
    }

    /// `key=value ...]` after the opening bracket; commas between entries are allowed.
    fn params(&mut self, op: &str, open: Pos) -> Result<Params> {
        let mut items: Vec<(String, PVal, Pos)> = Vec::new();
        loop {
            if self.is_punct(']') {
                self.bump();
                break;
            }
            if self.is_punct(',') && !items.is_empty() {
                self.bump();
                continue;
            }
            let (key, kpos) = self.any_word("a parameter name or `]`")?;
            if items.iter().any(|(k, _, _)| *k == key) {
                return Err(err(kpos, format!("the parameter `{key}` is given twice")));
            }
            self.expect_punct('=', "after the parameter name")?;
            let val = if self.is_punct('{') {
                PVal::Graph(self.nested_graph()?)
            } else if self.is_punct('(') && self.peek2().tok == Tok::Punct('{') {
                self.bump();
                let mut gs = Vec::new();
                loop {
                    gs.push(self.nested_graph()?);
                    if self.is_punct(',') {
                        self.bump();
                    } else {
                        break;
                    }
                }
                self.expect_punct(')', "to close the tuple of graphs")?;
                PVal::Graphs(gs)
            } else if self.is_punct('(') {
                self.bump();
                let mut ws = Vec::new();
                if !self.is_punct(')') {
                    loop {
                        ws.push(self.any_word("a tuple element")?.0);
                        if self.is_punct(',') {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect_punct(')', "to close the tuple")?;
                PVal::Tuple(ws)
            } else {
                PVal::Word(self.any_word("a parameter value")?.0)
            };
            items.push((key, val, kpos));
        }
        Ok(Params {
            op: op.to_string(),
            pos: open,
            items,
        })
    }

    /// The comma-separated elements of a constant up to and including the closing `]`.
    fn elements(&mut self) -> Result<Vec<Lit>> {
        let mut items = Vec::new();
        if self.is_punct(']') {
            self.bump();
            return Ok(items);
        }
        loop {
            if self.is_punct('[') {
                let pos = self.bump().pos;
                self.enter(pos)?;
                let sub = self.elements();
                self.depth -= 1;
                items.push(Lit::List(sub?, pos));
            } else {
                let (w, pos) = self.any_word("a constant element")?;
                items.push(Lit::Leaf(w, pos));
            }
            let t = self.bump();
            match t.tok {
                Tok::Punct(',') => {}
                Tok::Punct(']') => return Ok(items),
                other => {
                    return Err(err(
                        t.pos,
                        format!("expected `,` or `]` in a constant, found {other}"),
                    ))
                }
            }
        }
    }
}

fn define(scope: &mut HashMap<String, Value>, name: String, pos: Pos, v: Value) -> Result<()> {
    if scope.contains_key(&name) {
        return Err(err(pos, format!("{name} is defined twice")));
    }
    scope.insert(name, v);
    Ok(())
}

fn lookup(scope: &HashMap<String, Value>, name: &str, pos: Pos) -> Result<Value> {
    scope
        .get(name)
        .copied()
        .ok_or_else(|| err(pos, format!("undefined value {name}")))
}
