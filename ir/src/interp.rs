//! The reference interpreter: evaluates any graph on concrete arrays. It is the specification
//! every transform and the JIT are tested against.

use crate::array::Array;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;

/// Evaluates `graph` on `args` (checked against the parameter types) and returns its outputs.
pub fn eval(graph: &Graph, args: &[Array]) -> Result<Vec<Array>> {
    let params = graph.params();
    if args.len() != params.len() {
        return Err(Error::new(
            ErrorKind::Arity,
            format!(
                "the graph takes {} arguments, got {}",
                params.len(),
                args.len()
            ),
        ));
    }
    let mut env: Vec<Option<Array>> = vec![None; graph.num_values()];
    for (k, (&p, a)) in params.iter().zip(args).enumerate() {
        if &a.ty() != graph.ty(p) {
            return Err(Error::new(
                ErrorKind::DType,
                format!(
                    "argument {k} has type {} but the graph expects {}",
                    a.ty(),
                    graph.ty(p)
                ),
            ));
        }
        env[p.index()] = Some(a.clone());
    }
    for (_, inst) in graph.insts() {
        let ins: Vec<&Array> = inst
            .args
            .iter()
            .map(|&a| env[a.index()].as_ref().expect("verified graph"))
            .collect();
        let outs = inst.op.eval(&ins)?;
        for (&r, a) in inst.results.iter().zip(outs) {
            env[r.index()] = Some(a);
        }
    }
    Ok(graph
        .outputs()
        .iter()
        .map(|&o| env[o.index()].clone().expect("verified graph"))
        .collect())
}
