//! The reference interpreter: evaluates any graph on concrete arrays. It is the specification
//! every transform and the JIT are tested against.

use crate::array::Array;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;
use std::borrow::Cow;
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
    let refs: Vec<&Array> = args.iter().collect();
    eval_refs_with(graph, &refs, opts)
}

/// [`eval_with`] on borrowed arguments (see [`eval_refs`]).
pub fn eval_refs_with(graph: &Graph, args: &[&Array], opts: &EvalOptions) -> Result<Vec<Array>> {
    /// Restores the options it holds when dropped.
    struct Restore(EvalOptions);
    impl Drop for Restore {
        fn drop(&mut self) {
            OPTIONS.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OPTIONS.with(|o| o.replace(*opts)));
    eval_refs(graph, args)
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
    let refs: Vec<&Array> = args.iter().collect();
    eval_refs(graph, &refs)
}

/// [`eval`] on borrowed arguments: they are read in place, never copied. Outputs that are
/// arguments, or that appear more than once, are copied with fallible allocation.
pub fn eval_refs(graph: &Graph, args: &[&Array]) -> Result<Vec<Array>> {
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
    let mut env: Vec<Option<Cow<'_, Array>>> = vec![None; graph.num_values()];
    for (k, (&p, &a)) in params.iter().zip(args).enumerate() {
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
        env[p.index()] = Some(Cow::Borrowed(a));
    }
    for (_, inst) in graph.insts() {
        let ins: Vec<&Array> = inst
            .args
            .iter()
            .map(|&a| env[a.index()].as_deref().expect("verified graph"))
            .collect();
        let outs = inst.op.eval(&ins)?;
        for (&r, a) in inst.results.iter().zip(outs) {
            env[r.index()] = Some(Cow::Owned(a));
        }
    }
    let outputs = graph.outputs();
    let mut result = Vec::with_capacity(outputs.len());
    for (k, &o) in outputs.iter().enumerate() {
        let used_again = outputs[k + 1..].contains(&o);
        let slot = &mut env[o.index()];
        let a = match slot.take().expect("verified graph") {
            Cow::Owned(a) if !used_again => a,
            value => {
                let copy = value.try_clone(format_args!("output {k} of the graph"))?;
                *slot = Some(value);
                copy
            }
        };
        result.push(a);
    }
    Ok(result)
}
