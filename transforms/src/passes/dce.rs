//! Dead-code elimination: drops every equation no output depends on (all ops are pure).

use ferrax_ir::{Builder, Graph, Result, Value};
use smallvec::SmallVec;

/// Removes the equations whose results no output uses, directly or indirectly.
pub fn dce(g: &Graph) -> Result<Graph> {
    let mut live = vec![false; g.num_values()];
    for &o in g.outputs() {
        live[o.index()] = true;
    }
    let insts: Vec<_> = g.insts().collect();
    let mut keep = vec![false; insts.len()];
    for (k, (_, inst)) in insts.iter().enumerate().rev() {
        if inst.results.iter().any(|r| live[r.index()]) {
            keep[k] = true;
            for &a in &inst.args {
                live[a.index()] = true;
            }
        }
    }
    let mut b = Builder::new();
    b.fold_constants = false;
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for &p in g.params() {
        map[p.index()] = Some(b.param(g.ty(p).clone()));
    }
    for (k, (_, inst)) in insts.iter().enumerate() {
        if !keep[k] {
            continue;
        }
        let args: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("verified graph"))
            .collect();
        let outs = b.push(inst.op.clone(), &args)?;
        for (&r, &o) in inst.results.iter().zip(&outs) {
            map[r.index()] = Some(o);
        }
    }
    let outs: Vec<Value> = g
        .outputs()
        .iter()
        .map(|&o| map[o.index()].expect("verified graph"))
        .collect();
    Ok(b.finish(&outs))
}
