//! `Graph`: the typed SSA IR. Values and instructions live in arenas indexed by `u32` newtypes;
//! the body is the instruction arena itself, in order, so definitions precede uses.

use crate::entities::{GraphId, Inst, Value};
use crate::ops::Op;
use crate::types::Type;
use hashbrown::HashMap;
use smallvec::SmallVec;
use std::cell::RefCell;

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// The `n`-th parameter of the graph.
    Param(u32),
    /// The `n`-th result of an instruction.
    Result(Inst, u32),
}

/// A value's type and definition: 16 bytes, the type being an index into the graph's table of
/// distinct types (read it with [`Graph::ty`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueData {
    /// The static type: its index in the graph's type table.
    pub(crate) ty: u32,
    /// Its definition.
    pub def: ValueDef,
}

/// One equation: an op applied to argument values, defining result values.
#[derive(Clone, Debug, PartialEq)]
pub struct InstData {
    /// The primitive and its static parameters.
    pub op: Op,
    /// The operands, in order.
    pub args: SmallVec<[Value; 4]>,
    /// The values this instruction defines.
    pub results: SmallVec<[Value; 1]>,
}

/// A typed SSA graph: parameters, a straight-line body, outputs and owned sub-graphs.
///
/// Types are interned: each distinct type is stored once (`types`, found through `type_ids`)
/// and values refer to it by index, since a long graph has few distinct types.
#[derive(Clone, Default)]
pub struct Graph {
    pub(crate) values: Vec<ValueData>,
    pub(crate) types: Vec<Type>,
    pub(crate) type_ids: HashMap<Type, u32>,
    pub(crate) insts: Vec<InstData>,
    pub(crate) params: Vec<Value>,
    pub(crate) outputs: Vec<Value>,
    pub(crate) subgraphs: Vec<Graph>,
}

/// The debug form lists the type table in its own (insertion) order and leaves out the lookup
/// map that finds an index from a type, whose order is a hash order.
impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("values", &self.values)
            .field("types", &self.types)
            .field("insts", &self.insts)
            .field("params", &self.params)
            .field("outputs", &self.outputs)
            .field("subgraphs", &self.subgraphs)
            .finish()
    }
}

thread_local! {
    /// Instruction storage of a graph freed by [`Graph::recycle`], kept (emptied) for the next
    /// builder made with [`crate::Builder::with_capacity`] on this thread.
    static SPARE_INSTS: RefCell<Vec<InstData>> = const { RefCell::new(Vec::new()) };
}

/// Instruction storage left by [`Graph::recycle`] with room for at least `n` instructions,
/// if there is some.
pub(crate) fn take_spare_insts(n: usize) -> Option<Vec<InstData>> {
    SPARE_INSTS
        .try_with(|s| {
            let mut s = s.borrow_mut();
            (s.capacity() >= n && n > 0).then(|| std::mem::take(&mut *s))
        })
        .ok()
        .flatten()
}

/// Frees the storage [`Graph::recycle`] kept on this thread, if any.
pub fn release_spare_storage() {
    let _ = SPARE_INSTS.try_with(|s| drop(std::mem::take(&mut *s.borrow_mut())));
}

/// Graphs are equal when their parameters, equations, outputs, sub-graphs and value types and
/// definitions are (whatever the order of their type tables).
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.params == other.params
            && self.outputs == other.outputs
            && self.insts == other.insts
            && self.subgraphs == other.subgraphs
            && self.values.len() == other.values.len()
            && (0..self.values.len()).all(|i| {
                let v = Value::from_index(i);
                self.def(v) == other.def(v) && self.ty(v) == other.ty(v)
            })
    }
}

impl Graph {
    /// The parameters, in order.
    pub fn params(&self) -> &[Value] {
        &self.params
    }

    /// The outputs, in order.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// The instructions of the body, in execution order.
    pub fn insts(
        &self,
    ) -> impl ExactSizeIterator<Item = (Inst, &InstData)> + DoubleEndedIterator + '_ {
        self.insts
            .iter()
            .enumerate()
            .map(|(i, d)| (Inst::from_index(i), d))
    }

    /// One instruction.
    pub fn inst(&self, inst: Inst) -> &InstData {
        &self.insts[inst.index()]
    }

    /// The number of equations in the body (the graph's size).
    pub fn num_insts(&self) -> usize {
        self.insts.len()
    }

    /// The number of values (parameters and results).
    pub fn num_values(&self) -> usize {
        self.values.len()
    }

    /// The type of a value.
    pub fn ty(&self, v: Value) -> &Type {
        &self.types[self.values[v.index()].ty as usize]
    }

    /// The index of a value's type in the graph's table of distinct types: two values of
    /// one graph have equal types exactly when their indices are equal.
    pub fn type_index(&self, v: Value) -> u32 {
        self.values[v.index()].ty
    }

    /// Appends a value of type `ty` (interned) defined by `def`, and returns it.
    pub(crate) fn push_value(&mut self, ty: Type, def: ValueDef) -> Value {
        let v = Value::from_index(self.values.len());
        let id = match self.type_ids.get(&ty) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.types.len()).expect("type count within u32");
                self.types.push(ty.clone());
                self.type_ids.insert(ty, id);
                id
            }
        };
        self.values.push(ValueData { ty: id, def });
        v
    }

    /// Appends a value whose type is the one at index `ty` of the type table, defined by
    /// `def`, and returns it.
    pub(crate) fn push_value_with_index(&mut self, ty: u32, def: ValueDef) -> Value {
        let v = Value::from_index(self.values.len());
        self.values.push(ValueData { ty, def });
        v
    }

    /// A value's definition.
    pub fn def(&self, v: Value) -> ValueDef {
        self.values[v.index()].def
    }

    /// The parameter types, in order.
    pub fn param_types(&self) -> Vec<Type> {
        self.params.iter().map(|&v| self.ty(v).clone()).collect()
    }

    /// The output types, in order.
    pub fn output_types(&self) -> Vec<Type> {
        self.outputs.iter().map(|&v| self.ty(v).clone()).collect()
    }

    /// A sub-graph by id.
    pub fn subgraph(&self, g: GraphId) -> &Graph {
        &self.subgraphs[g.index()]
    }

    /// All sub-graphs.
    pub fn subgraphs(&self) -> &[Graph] {
        &self.subgraphs
    }

    /// The instruction defining `v`, if it is not a parameter.
    pub fn producer(&self, v: Value) -> Option<(Inst, &InstData)> {
        match self.def(v) {
            ValueDef::Param(_) => None,
            ValueDef::Result(i, _) => Some((i, self.inst(i))),
        }
    }

    /// Frees the graph but keeps its (emptied) instruction storage on this thread for the
    /// next builder made with [`crate::Builder::with_capacity`] that fits in it, until
    /// [`release_spare_storage`]. A transform that frees a large intermediate graph before
    /// building another of about the same size so reuses memory already mapped: writing a
    /// large graph into fresh pages costs the kernel a page fault and a cleared page every
    /// 4 KiB, which was a third of the time of the last pass of `grad` on a long chain.
    /// Only the largest storage is kept.
    pub fn recycle(mut self) {
        let mut insts = std::mem::take(&mut self.insts);
        drop(self);
        insts.clear();
        let _ = SPARE_INSTS.try_with(|s| {
            let mut s = s.borrow_mut();
            if insts.capacity() > s.capacity() {
                *s = insts;
            }
        });
    }

    /// The graph without the equations no output depends on, directly or indirectly (all ops
    /// are pure). Works in place, in two linear passes: the kept equations stay in order and
    /// values are renumbered densely (parameters first, then results in equation order), the
    /// numbering a [`crate::Builder`] would give the same equations. Unlike rebuilding through
    /// a builder it merges no duplicate equations.
    pub fn without_dead_code(mut self) -> Graph {
        let keep = self.live_insts();
        if keep.iter().all(|&k| k) && self.is_densely_numbered() {
            // Nothing is dead and the numbering is already the one renumbering would give.
            return self;
        }
        const NONE: u32 = u32::MAX;
        let mut renumber = vec![NONE; self.values.len()];
        let mut old_values = std::mem::take(&mut self.values);
        let mut values = Vec::with_capacity(old_values.len());
        let take = |old: &mut Vec<ValueData>, v: Value| {
            std::mem::replace(
                &mut old[v.index()],
                ValueData {
                    ty: 0,
                    def: ValueDef::Param(0),
                },
            )
        };
        for &p in &self.params {
            renumber[p.index()] = values.len() as u32;
            values.push(take(&mut old_values, p));
        }
        let mut k = 0;
        let mut new_index = 0usize;
        self.insts.retain_mut(|inst| {
            let kept = keep[k];
            k += 1;
            if !kept {
                return false;
            }
            let i = Inst::from_index(new_index);
            new_index += 1;
            for a in inst.args.iter_mut() {
                *a = Value(renumber[a.index()]);
            }
            for r in inst.results.iter_mut() {
                let mut d = take(&mut old_values, *r);
                if let ValueDef::Result(_, n) = d.def {
                    d.def = ValueDef::Result(i, n);
                }
                renumber[r.index()] = values.len() as u32;
                *r = Value::from_index(values.len());
                values.push(d);
            }
            true
        });
        drop(old_values);
        for p in self.params.iter_mut() {
            *p = Value(renumber[p.index()]);
        }
        for o in self.outputs.iter_mut() {
            *o = Value(renumber[o.index()]);
        }
        self.values = values;
        self
    }

    /// For every equation, whether some output depends on it, directly or indirectly (one
    /// backward pass; [`Graph::without_dead_code`] keeps exactly these).
    pub fn live_insts(&self) -> Vec<bool> {
        let mut live = vec![false; self.values.len()];
        for &o in &self.outputs {
            live[o.index()] = true;
        }
        let mut keep = vec![false; self.insts.len()];
        for (k, inst) in self.insts.iter().enumerate().rev() {
            if inst.results.iter().any(|r| live[r.index()]) {
                keep[k] = true;
                for &a in &inst.args {
                    live[a.index()] = true;
                }
            }
        }
        keep
    }

    /// Whether values are numbered parameters first, then results in equation order.
    fn is_densely_numbered(&self) -> bool {
        let mut next = 0usize;
        for &p in &self.params {
            if p.index() != next {
                return false;
            }
            next += 1;
        }
        for inst in &self.insts {
            for &r in &inst.results {
                if r.index() != next {
                    return false;
                }
                next += 1;
            }
        }
        next == self.values.len()
    }

    /// A structural hash of the whole graph (ops, wiring, types, sub-graphs), stable within
    /// one build of ferrax; the JIT cache keys on it.
    pub fn structural_hash(&self) -> u64 {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash_into(&mut h);
        h.finish()
    }

    fn hash_into<H: std::hash::Hasher>(&self, h: &mut H) {
        use std::hash::Hash;
        for &p in &self.params {
            self.ty(p).hash(h);
        }
        self.insts.len().hash(h);
        for inst in &self.insts {
            inst.op.hash(h);
            inst.args.hash(h);
            inst.results.len().hash(h);
        }
        self.outputs.hash(h);
        self.subgraphs.len().hash(h);
        for g in &self.subgraphs {
            g.hash_into(h);
        }
    }
}
