//! `verify`: checks every invariant of a graph (types, definitions before uses, outputs).

use crate::builder::{memo_key, MemoKey};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, ValueDef};
use crate::ops::{CallKind, ControlOp, Op};
use crate::types::Type;
use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;
use std::hash::BuildHasher;

/// The sub-graphs a control op holds.
fn bodies(c: &ControlOp) -> Vec<&Graph> {
    match c {
        ControlOp::Switch { branches } => branches.iter().map(|b| b.graph()).collect(),
        ControlOp::While { cond, body, .. } => vec![cond.graph(), body.graph()],
        ControlOp::Scan { body, .. } => vec![body.graph()],
        ControlOp::TapedWhile {
            cond, fwd, step, ..
        } => vec![cond.graph(), fwd.graph(), step.graph()],
        ControlOp::CustomLinear { bwd, .. } => vec![bwd.graph()],
        ControlOp::Call { body, kind } => {
            let mut v = vec![body.graph()];
            match kind {
                CallKind::Checkpoint(_) => {}
                CallKind::CustomJvp { rule, .. } => v.push(rule.graph()),
                CallKind::CustomVjp { fwd, bwd, .. } => {
                    v.push(fwd.graph());
                    v.push(bwd.graph());
                }
            }
            v
        }
    }
}

fn fail(msg: String) -> Error {
    Error::new(ErrorKind::Verify, msg)
}

impl Graph {
    /// Checks that every value is defined once before use, every instruction's result types
    /// follow from its op's type rule, outputs are defined, and sub-graphs verify too.
    pub fn verify(&self) -> Result<()> {
        let mut defined = vec![false; self.values.len()];
        // The result type index of every elementwise op and operand types checked so far.
        let mut checked: HashTable<(Op, MemoKey, u32)> = HashTable::new();
        let hasher = DefaultHashBuilder::default();
        for (k, &p) in self.params.iter().enumerate() {
            let ok = p.index() < self.values.len()
                && self.values[p.index()].def == ValueDef::Param(k as u32);
            if !ok || std::mem::replace(&mut defined[p.index()], true) {
                return Err(fail(format!("parameter {k} ({p}) is malformed")));
            }
            self.ty(p).check_size(&format!("parameter {k} ({p})"))?;
        }
        for (inst, data) in self.insts() {
            for &a in &data.args {
                if a.index() >= defined.len() || !defined[a.index()] {
                    return Err(fail(format!(
                        "{inst} ({}) uses {a} before its definition",
                        data.op.name()
                    )));
                }
            }
            if let Op::Control(c) = &data.op {
                for (k, body) in bodies(c).into_iter().enumerate() {
                    body.verify().map_err(|e| {
                        fail(format!(
                            "{inst} ({}) sub-graph {k}: {}",
                            data.op.name(),
                            e.message
                        ))
                    })?;
                }
            }
            // An elementwise equation whose op and operand types were met before has the
            // result type the type rule gave then.
            let key = memo_key(self, &data.op, &data.args);
            let hash = key.map(|k| hasher.hash_one((&data.op, k)));
            let known = key
                .zip(hash)
                .and_then(|(k, h)| checked.find(h, |e| e.0 == data.op && e.1 == k).map(|e| e.2));
            if let (Some(t), [r]) = (known, data.results.as_slice()) {
                let ok = r.index() < defined.len()
                    && self.values[r.index()].def == ValueDef::Result(inst, 0);
                if !ok {
                    return Err(fail(format!("{inst} result 0 ({r}) is malformed")));
                }
                if std::mem::replace(&mut defined[r.index()], true) {
                    return Err(fail(format!("{r} is defined twice")));
                }
                let want = &self.types[t as usize];
                if self.type_index(*r) != t && self.ty(*r) != want {
                    return Err(fail(format!(
                        "{inst} ({}) declares {} but its type rule gives {want}",
                        data.op.name(),
                        self.ty(*r),
                    )));
                }
                continue;
            }
            let tys: SmallVec<[Type; 4]> = data.args.iter().map(|&a| self.ty(a).clone()).collect();
            let out = data
                .op
                .infer(&tys)
                .map_err(|e| fail(format!("{inst}: {}", e.message)))?;
            if out.len() != data.results.len() {
                return Err(fail(format!(
                    "{inst} ({}) has the wrong number of results",
                    data.op.name()
                )));
            }
            for (k, (&r, ty)) in data.results.iter().zip(&out).enumerate() {
                if r.index() >= defined.len()
                    || self.values[r.index()].def != ValueDef::Result(inst, k as u32)
                {
                    return Err(fail(format!("{inst} result {k} ({r}) is malformed")));
                }
                if std::mem::replace(&mut defined[r.index()], true) {
                    return Err(fail(format!("{r} is defined twice")));
                }
                if self.ty(r) != ty {
                    return Err(fail(format!(
                        "{inst} ({}) declares {} but its type rule gives {}",
                        data.op.name(),
                        self.ty(r),
                        ty
                    )));
                }
            }
            if let (Some(k), Some(h), [r]) = (key, hash, data.results.as_slice()) {
                let t = self.type_index(*r);
                checked.insert_unique(h, (data.op.clone(), k, t), |e| hasher.hash_one((&e.0, e.1)));
            }
        }
        for &o in &self.outputs {
            if o.index() >= defined.len() || !defined[o.index()] {
                return Err(fail(format!("output {o} is not defined")));
            }
        }
        for g in &self.subgraphs {
            g.verify()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::{BinaryOp, UnaryOp};
    use crate::{Builder, DType, Op, Type};

    /// A wrong result type is caught on an equation whose op and operand types were checked
    /// before (where the type rule does not run again), as on the first one.
    #[test]
    fn remembered_elementwise_types_still_catch_a_wrong_declared_type() {
        for wrong in [1usize, 2] {
            let mut b = Builder::new();
            let x = b.param(Type::new(DType::F64, &[3]));
            let _other = b.param(Type::new(DType::F32, &[3]));
            let y1 = b.push1(Op::Unary(UnaryOp::Sin), &[x]).unwrap();
            let y2 = b.push1(Op::Unary(UnaryOp::Sin), &[y1]).unwrap();
            let z = b.push1(Op::Binary(BinaryOp::Add), &[y1, y2]).unwrap();
            let mut g = b.finish(&[z]);
            g.verify().expect("a well-typed graph verifies");
            // Give `sin`'s first or second result the type of the f32 parameter.
            let f32_index = g.type_index(g.params()[1]);
            let bad = [y1, y2][wrong - 1];
            g.values[bad.index()].ty = f32_index;
            let e = g.verify().expect_err("a wrong declared type is an error");
            assert!(e.message.contains("declares"), "{e}");
        }
    }
}
