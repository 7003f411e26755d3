//! `verify`: checks every invariant of a graph (types, definitions before uses, outputs).

use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, ValueDef};
use crate::ops::{CallKind, ControlOp, Op};
use crate::types::Type;

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
            let tys: Vec<Type> = data.args.iter().map(|&a| self.ty(a).clone()).collect();
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
