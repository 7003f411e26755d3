//! `Builder`: appends type-checked instructions to a new graph, hash-consing identical
//! equations (CSE for free) and folding ops whose operands are all constants.

use crate::array::Array;
use crate::entities::{GraphId, Inst, Value};
use crate::error::Result;
use crate::graph::{Graph, InstData, ValueData, ValueDef};
use crate::ops::{Literal, LiteralOp, Op};
use crate::types::Type;
use hashbrown::HashMap;
use smallvec::SmallVec;

/// Constants up to this many elements are folded at build time.
pub const FOLD_LIMIT: usize = 64;

/// The hash-consing key of an equation: its op and operands.
type EqnKey = (Op, SmallVec<[Value; 4]>);

/// Builds a graph instruction by instruction.
#[derive(Debug, Default)]
pub struct Builder {
    graph: Graph,
    cse: HashMap<EqnKey, SmallVec<[Value; 1]>>,
    /// Whether ops on small constants are evaluated at build time.
    pub fold_constants: bool,
}

impl Builder {
    /// An empty builder that folds constants.
    pub fn new() -> Builder {
        Builder {
            fold_constants: true,
            ..Default::default()
        }
    }

    /// Adds a parameter of type `ty`.
    pub fn param(&mut self, ty: Type) -> Value {
        let v = Value::from_index(self.graph.values.len());
        let n = self.graph.params.len() as u32;
        self.graph.values.push(ValueData {
            ty,
            def: ValueDef::Param(n),
        });
        self.graph.params.push(v);
        v
    }

    /// The type of a value built so far.
    pub fn ty(&self, v: Value) -> &Type {
        self.graph.ty(v)
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The constant a value holds, if it is defined by a `const` instruction.
    pub fn literal(&self, v: Value) -> Option<&Literal> {
        match self.graph.producer(v) {
            Some((
                _,
                InstData {
                    op: Op::Literal(LiteralOp::Const(l)),
                    ..
                },
            )) => Some(l),
            _ => None,
        }
    }

    /// Appends `op` applied to `args`, checking types; returns the results. An equation
    /// identical to an earlier one returns the earlier results instead.
    pub fn push(&mut self, op: Op, args: &[Value]) -> Result<SmallVec<[Value; 1]>> {
        let key = (op, SmallVec::from_slice(args));
        if let Some(r) = self.cse.get(&key) {
            return Ok(r.clone());
        }
        let (op, args) = key;
        let tys: Vec<Type> = args.iter().map(|&a| self.ty(a).clone()).collect();
        let out_tys = op.infer(&tys)?;
        let is_const = matches!(op, Op::Literal(LiteralOp::Const(_)));
        if self.fold_constants && !is_const && out_tys.iter().all(|t| t.size() <= FOLD_LIMIT) {
            let lits: Option<Vec<&Array>> = args
                .iter()
                .map(|&a| self.literal(a).map(|l| l.array()))
                .collect();
            if let Some(lits) = lits {
                let vals = op.eval(&lits)?;
                let mut res = SmallVec::new();
                for a in vals {
                    res.push(self.constant(a));
                }
                self.cse.insert((op, args), res.clone());
                return Ok(res);
            }
        }
        let inst = Inst::from_index(self.graph.insts.len());
        let mut results = SmallVec::new();
        for (k, ty) in out_tys.into_iter().enumerate() {
            let v = Value::from_index(self.graph.values.len());
            self.graph.values.push(ValueData {
                ty,
                def: ValueDef::Result(inst, k as u32),
            });
            results.push(v);
        }
        self.graph.insts.push(InstData {
            op: op.clone(),
            args: args.clone(),
            results: results.clone(),
        });
        self.cse.insert((op, args), results.clone());
        Ok(results)
    }

    /// Appends a single-result op and returns its result.
    pub fn push1(&mut self, op: Op, args: &[Value]) -> Result<Value> {
        Ok(self.push(op, args)?[0])
    }

    /// A constant value (hash-consed).
    pub fn constant(&mut self, a: Array) -> Value {
        self.push1(Op::Literal(LiteralOp::Const(Literal::new(a))), &[])
            .expect("constants always type-check")
    }

    /// Adds a sub-graph and returns its id.
    pub fn add_subgraph(&mut self, g: Graph) -> GraphId {
        self.graph.subgraphs.push(g);
        GraphId::from_index(self.graph.subgraphs.len() - 1)
    }

    /// Finishes the graph with the given outputs.
    pub fn finish(mut self, outputs: &[Value]) -> Graph {
        self.graph.outputs = outputs.to_vec();
        self.graph
    }
}
