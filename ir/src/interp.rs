//! The reference interpreter: evaluates any graph on concrete arrays. It is the specification
//! every transform and the JIT are tested against.

use crate::array::Array;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;
use std::cell::Cell;

/// Limits for one evaluation by [`eval_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EvalOptions {
    /// The most iterations any one run of a `while_loop` (also the forward loop of a
    /// `taped_while`) may take; exceeding it is an error of kind [`ErrorKind::Resource`]
    /// naming the limit. The count is per run of the loop: a nested loop starts from zero
    /// each time its enclosing body runs. `None` (the default): no limit.
    pub max_while_iterations: Option<u64>,
}

std::thread_local! {
    /// The options of the evaluation running on this thread (set by [`eval_with`] for its
    /// duration; nested evaluations of bodies inherit them).
    static OPTIONS: Cell<EvalOptions> = const {
        Cell::new(EvalOptions {
            max_while_iterations: None,
        })
    };
}

/// Evaluates `graph` on `args` like [`eval`], under the limits of `opts` (which also apply to
/// every body that control flow evaluates). The thread's previous options are restored
/// afterwards, also when evaluation fails or panics.
pub fn eval_with(graph: &Graph, args: &[Array], opts: &EvalOptions) -> Result<Vec<Array>> {
    /// Restores the options it holds when dropped.
    struct Restore(EvalOptions);
    impl Drop for Restore {
        fn drop(&mut self) {
            OPTIONS.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OPTIONS.with(|o| o.replace(*opts)));
    eval(graph, args)
}

/// Counts the `n`-th iteration of a running `while` loop: an error once `n` exceeds the
/// evaluation's [`EvalOptions::max_while_iterations`].
pub(crate) fn count_while_iteration(n: u64) -> Result<()> {
    match OPTIONS.with(|o| o.get().max_while_iterations) {
        Some(limit) if n > limit => Err(Error::new(
            ErrorKind::Resource,
            format!(
                "a while_loop exceeded its iteration limit of {limit} \
                 (EvalOptions::max_while_iterations); the evaluation was abandoned"
            ),
        )),
        _ => Ok(()),
    }
}

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
