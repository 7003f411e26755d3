//! `Builder`: appends type-checked instructions to a new graph, hash-consing identical
//! equations (CSE for free) and folding ops whose operands are all constants.

use crate::array::Array;
use crate::entities::{GraphId, Inst, Value};
use crate::error::Result;
use crate::graph::{Graph, InstData, ValueDef};
use crate::ops::{Literal, LiteralOp, Op, Types};
use crate::placement::{table_hash, Placement};
use crate::types::Type;
use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;
use std::hash::BuildHasher;

/// Constants up to this many elements are folded at build time.
pub const FOLD_LIMIT: usize = 64;

/// A folded equation: its op, its operands and the constants it folded to.
type Folded = (Op, SmallVec<[Value; 4]>, SmallVec<[Value; 1]>);

/// The operand count and operand type indices of an elementwise equation (of at most three
/// operands), which with its op determine its result type.
pub(crate) type MemoKey = (u8, [u32; 3]);

/// The key under which the result type of `op(args)` is remembered, if `op` is elementwise.
pub(crate) fn memo_key(g: &Graph, op: &Op, args: &[Value]) -> Option<MemoKey> {
    if !op.is_elementwise() || args.len() > 3 {
        return None;
    }
    let mut tys = [u32::MAX; 3];
    for (t, &a) in tys.iter_mut().zip(args) {
        *t = g.type_index(a);
    }
    Some((args.len() as u8, tys))
}

/// Builds a graph instruction by instruction.
///
/// Hash-consing keeps eight bytes per instruction: the index of the instruction in the graph
/// being built, whose op and operands are the key (compared in place), and 32 bits of hash
/// that place it (see [`crate::placement`]: by its newest operand, so that the lookups of a
/// transform stay in cache), so that growing the table never hashes an op again.
/// Equations folded to constants have no instruction of their own; they are remembered in the
/// (usually small) `folded` map.
#[derive(Debug, Default)]
pub struct Builder {
    graph: Graph,
    cse: HashTable<(u32, u32)>,
    /// Where the entries of `cse` go.
    placement: Placement,
    /// The result type index of every elementwise op and operand types met so far (the ops
    /// have no heap data, and a graph has few of these combinations).
    elementwise_types: HashTable<(Op, MemoKey, u32)>,
    folded: HashTable<Folded>,
    hasher: DefaultHashBuilder,
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

    /// An empty builder that folds constants, with room for `values` values and `insts`
    /// instructions (a rebuild of a graph of known size grows no vector and no table). The
    /// instruction storage of a graph freed by [`Graph::recycle`] on this thread is reused
    /// when it is large enough.
    pub fn with_capacity(values: usize, insts: usize) -> Builder {
        let mut b = Builder::new();
        if let Some(spare) = crate::graph::take_spare_insts(insts) {
            b.graph.insts = spare;
        }
        // A little room beyond `values`: a rebuild may add constants, and growing the
        // vector by one would copy all of it.
        b.graph.values.reserve_exact(values + values / 16);
        b.graph.insts.reserve_exact(insts);
        b.cse.reserve(insts, |_| 0);
        b.placement = Placement::with_capacity(values);
        b
    }

    /// Adds a parameter of type `ty`.
    pub fn param(&mut self, ty: Type) -> Value {
        let n = self.graph.params.len() as u32;
        let v = self.graph.push_value(ty, ValueDef::Param(n));
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
        let key = self.hasher.hash_one((&op, args)) as u32;
        let hash = table_hash(key);
        let newest = args.iter().map(|a| a.0).max();
        let insts = &self.graph.insts;
        let found = self
            .placement
            .probes(key, newest)
            .into_iter()
            .find_map(|h32| {
                let h32 = h32?;
                let same = |&(i, h): &(u32, u32)| {
                    let d = &insts[i as usize];
                    h == h32 && d.op == op && d.args.as_slice() == args
                };
                self.cse.find(table_hash(h32), same).map(|&(i, _)| i)
            });
        if let Some(i) = found {
            return Ok(self.graph.insts[i as usize].results.clone());
        }
        if let Some(f) = self
            .folded
            .find(hash, |f| f.0 == op && f.1.as_slice() == args)
        {
            return Ok(f.2.clone());
        }
        // An elementwise op's result type depends on the op and the operand types alone: the
        // type rule runs once per combination, and its result is found by type indices.
        let memo_key = memo_key(&self.graph, &op, args);
        let memo_hash = memo_key.map(|k| self.hasher.hash_one((&op, k)));
        let known = memo_key.zip(memo_hash).and_then(|(k, h)| {
            self.elementwise_types
                .find(h, |e| e.0 == op && e.1 == k)
                .map(|e| e.2)
        });
        let out_tys = match known {
            Some(_) => Types::new(),
            None => {
                let tys: SmallVec<[Type; 4]> = args.iter().map(|&a| self.ty(a).clone()).collect();
                op.infer(&tys)?
            }
        };
        let small = match known {
            Some(id) => self.graph.types[id as usize].size() <= FOLD_LIMIT,
            None => out_tys.iter().all(|t| t.size() <= FOLD_LIMIT),
        };
        let is_const = matches!(op, Op::Literal(LiteralOp::Const(_)));
        if self.fold_constants && !is_const && small {
            // Checked before anything is collected: most equations have an operand that is
            // not a constant.
            let all_literal = args.iter().all(|&a| self.literal(a).is_some());
            let lits: Option<Vec<&Array>> = all_literal.then(|| {
                args.iter()
                    .filter_map(|&a| self.literal(a).map(|l| l.array()))
                    .collect()
            });
            if let Some(lits) = lits {
                let vals = op.eval(&lits)?;
                let mut res = SmallVec::new();
                for a in vals {
                    res.push(self.constant(a));
                }
                // Rehashing must give the hash lookups use (32 bits of the key's hash, spread),
                // or folds made before the table grew would be missed and evaluated again.
                let hasher = &self.hasher;
                self.folded.insert_unique(
                    hash,
                    (op, SmallVec::from_slice(args), res.clone()),
                    |f| table_hash(hasher.hash_one((&f.0, f.1.as_slice())) as u32),
                );
                return Ok(res);
            }
        }
        let inst = Inst::from_index(self.graph.insts.len());
        let mut results = SmallVec::new();
        if let Some(id) = known {
            results.push(
                self.graph
                    .push_value_with_index(id, ValueDef::Result(inst, 0)),
            );
        }
        for (k, ty) in out_tys.into_iter().enumerate() {
            let def = ValueDef::Result(inst, k as u32);
            // Most results have the type of their first operand, whose index in the type
            // table is known: no lookup by type.
            let v = match args.first() {
                Some(&a) if *self.graph.ty(a) == ty => {
                    let id = self.graph.type_index(a);
                    self.graph.push_value_with_index(id, def)
                }
                _ => self.graph.push_value(ty, def),
            };
            results.push(v);
        }
        if let (Some(k), Some(h), None, [r]) = (memo_key, memo_hash, known, results.as_slice()) {
            let id = self.graph.type_index(*r);
            let hasher = &self.hasher;
            self.elementwise_types
                .insert_unique(h, (op.clone(), k, id), |e| hasher.hash_one((&e.0, e.1)));
        }
        self.graph.insts.push(InstData {
            op,
            args: SmallVec::from_slice(args),
            results: results.clone(),
        });
        let index = u32::try_from(inst.index()).expect("instruction index within u32");
        let stored = self.placement.place(key, newest);
        self.cse
            .insert_unique(table_hash(stored), (index, stored), |&(_, h)| table_hash(h));
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
