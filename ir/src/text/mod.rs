//! The text format: a jaxpr-like printer, its parser, and Graphviz DOT output.
//!
//! [`Graph::to_text`](crate::Graph::to_text) (also `Display`) prints a graph,
//! [`Graph::parse`](crate::Graph::parse) reads it back, and
//! [`Graph::to_dot`](crate::Graph::to_dot) draws it.
//!
//! # Format
//!
//! ```text
//! { lambda v0:f64[], v1:f64[] . let v2:f64[] = sin v0; v3:f64[] = mul v2 v1 in (v3) }
//! ```
//!
//! A graph is `{ lambda PARAMS . let EQUATIONS in (OUTPUTS) }`. Values are named `v0, v1, ...`
//! in print order: parameters first, then the results of each equation in body order. Every
//! definition carries its type inline (`v2:f64[3,2]`, scalars `f64[]`); uses are bare names.
//! An equation is `RESULTS = OP[PARAMS] ARGS`, where `RESULTS` is one or more comma-separated
//! `name:type` (or `_` for none), `OP` is the op's `name()`, the bracketed static parameters
//! are space-separated `key=value` with tuples written `(1,0)`, `(2)` or `()`, booleans
//! `true`/`false` and dtypes by name, and the arguments are value names separated by spaces:
//! `transpose[perm=(1,0)] v3`, `dot_general[lhs_contract=(1) rhs_contract=(0) lhs_batch=()
//! rhs_batch=()] v0 v1`. Ops without parameters have no brackets.
//!
//! A constant writes its elements in the brackets and takes its shape and dtype from the
//! declared type: a scalar is one element (`v2:f64[] = const[1.0]`); otherwise the brackets
//! hold the list along the first dimension, with inner dimensions as nested lists
//! (`v2:f64[2,2] = const[[1.0,2.0],[3.0,4.0]]`, `v3:f64[0,3] = const[]`). Floats are written in
//! Rust's shortest round-tripping form (`0.1`, `-0.0`, `1e-7`, `inf`, `-inf`, `NaN`); a NaN with
//! a payload or sign bit other than the canonical quiet NaN is written as its raw bits
//! (`0x7ff8000000000001`), so every constant round-trips bit for bit. Integers are decimal and
//! booleans are `true`/`false`.
//!
//! Layout: bodies of at most three equations print on one line with `; ` between equations.
//! Longer bodies, and graphs with control ops or `where` sub-graphs, print one equation a line:
//!
//! ```text
//! { lambda v0:f64[], v1:f64[] .
//!   let v2:f64[] = sin v0
//!       v3:f64[] = cos v1
//!       v4:f64[] = mul v2 v3
//!       v5:f64[] = add v4 v0
//!   in (v5) }
//! ```
//!
//! # Control ops
//!
//! Control ops (`switch`, `while`, `scan`, `call`, and the `taped_while` and `custom_lin` that
//! reverse mode produces) hold their sub-graphs inline as parameters whose value is a graph,
//! `key={ lambda ... }`, or a tuple of graphs, `branches=({ lambda ... }, { lambda ... })`.
//! Each sub-graph has its own value names, starting again at `v0`, and sees only its own
//! parameters (closure-converted: everything it uses is an operand). Scalar parameters come
//! first on the op's line; each sub-graph then starts a new line indented four columns past
//! the equation, and its own `let` and `in` lines are indented relative to that line, so
//! nesting reads like code. The operands follow the closing `]`. Equations with several
//! results list them comma-separated.
//!
//! ```text
//! { lambda v0:f64[], v1:i32[] .
//!   let v2:i32[], v3:f64[] = while[n_consts=1
//!           cond={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[4]; v4:bool[] = lt v1 v3 in (v4) }
//!           body={ lambda v0:f64[], v1:i32[], v2:f64[] . let v3:i32[] = const[1]; v4:i32[] = add v1 v3; v5:f64[] = mul v2 v0 in (v4, v5) }] v0 v1 v0
//!   in (v3, v2) }
//! ```
//!
//! The parameters are: `switch[branches=(..)]`; `while[n_consts=N cond={..} body={..}]`;
//! `scan[length=N n_consts=N n_carry=N reverse=B body={..}]`;
//! `taped_while[n_consts=N reverse=B cond={..} fwd={..} step={..}]`;
//! `custom_lin[n_res=N bwd={..}]`; and `call[kind=K ... body={..}]` with
//! `kind=checkpoint policy=nothing|dots`, `kind=custom_jvp n_diff=N rule={..}` or
//! `kind=custom_vjp n_diff=N fwd={..} bwd={..}`. DOT output draws each sub-graph as a cluster
//! labelled with the equation and the parameter.
//!
//! # Legacy `where` sub-graphs
//!
//! A graph's own sub-graph table ([`Graph::subgraphs`](crate::Graph::subgraphs)), which no op
//! refers to any more, prints after the outputs as `where g0 = GRAPH g1 = GRAPH ...`, numbered
//! in order, each with its own value names. It is kept so that every graph still prints and
//! parses back exactly; new code holds sub-graphs in ops. The parser accepts any whitespace
//! and line breaks, optional `;` between equations, `#` comments to the end of a line, and any
//! value names that start with a letter (they are renumbered when printed again).
//!
//! # Parsing
//!
//! The parser builds the graph directly, without the builder's constant folding or CSE, so a
//! parsed graph holds exactly the written equations (duplicates included) and
//! `Graph::parse(&g.to_text())` equals `g` whenever `g`'s values are numbered in print order,
//! as they are for graphs whose parameters were all added before the first equation. Each
//! equation is checked with its op's type rule and the declared result types must match the
//! inferred ones; the graph is then verified. Errors have kind
//! [`ErrorKind::Parse`](crate::ErrorKind::Parse) and messages starting with `line:column:`.
//!
//! Op names map back to ops through one function per op family in `parse.rs`, driven by each
//! op's `name()` and exhaustive matches, so a new op cannot be forgotten by the text format.

mod dot;
mod parse;
mod print;
