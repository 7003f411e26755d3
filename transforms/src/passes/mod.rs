//! Simplification passes: dead-code elimination, CSE, constant folding, algebraic identities.
//!
//! Every pass takes a `&Graph` and returns a new one. [`simplify`] runs them all and is applied
//! after every transform; [`simplify_report`] runs them one by one and records the equation
//! count before and after each. [`reassoc`] (value numbering modulo reassociation, which may
//! change rounding) runs only on the results of `grad` ([`try_simplify_reassociating`]).

pub mod dce;
pub mod identities;
pub(crate) mod masks;
pub mod reassoc;
pub(crate) mod structure;

pub use dce::dce;
pub use identities::identities;

use ferrax_ir::timings::timed;
use ferrax_ir::{Builder, Graph, Result, Value};
use smallvec::SmallVec;

/// Rebuilds `g` equation by equation into a fresh builder, which hash-conses identical
/// equations (CSE). With `fold`, ops on small constants are evaluated; with `identities`, the
/// exact algebraic identities are applied as well.
pub(crate) fn rebuild(g: &Graph, fold: bool, identities: bool) -> Result<Graph> {
    let mut b = Builder::with_capacity(g.num_values(), g.num_insts());
    b.fold_constants = fold;
    let params: Vec<Value> = g
        .params()
        .iter()
        .map(|&p| b.param(g.ty(p).clone()))
        .collect();
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (&p, &q) in g.params().iter().zip(&params) {
        map[p.index()] = Some(q);
    }
    for (_, inst) in g.insts() {
        let args: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("verified graph"))
            .collect();
        let outs = if identities {
            crate::emit::push(&mut b, inst.op.clone(), &args)?
        } else {
            b.push(inst.op.clone(), &args)?
        };
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

/// Common-subexpression elimination: identical equations (same op, same operands) are merged.
pub fn cse(g: &Graph) -> Result<Graph> {
    rebuild(g, false, false)
}

/// Constant folding: equations whose operands are all constants of at most
/// [`ferrax_ir::builder::FOLD_LIMIT`] elements are evaluated.
pub fn fold(g: &Graph) -> Result<Graph> {
    rebuild(g, true, false)
}

/// Runs every pass (CSE, folding and identities in one rebuild, then DCE), returning the
/// simplified graph or the first error a pass met.
pub fn try_simplify(g: &Graph) -> Result<Graph> {
    let rebuilt = timed("simplify.rebuild", || rebuild(g, true, true))?;
    // The rebuilt graph holds no duplicate equations (its builder merged them), so dropping
    // the dead ones in place gives what `dce` would build, without a second builder.
    Ok(timed("simplify.dce", || rebuilt.without_dead_code()))
}

/// [`try_simplify`] of a graph the caller no longer needs, which is freed as soon as the
/// rebuild has read it (the transforms' intermediate graphs).
pub(crate) fn try_simplify_owned(g: Graph) -> Result<Graph> {
    let rebuilt = timed("simplify.rebuild", || rebuild(&g, true, true))?;
    drop(g);
    Ok(timed("simplify.dce", || rebuilt.without_dead_code()))
}

/// [`try_simplify`], then value numbering modulo reassociation
/// ([`reassoc::reassoc_owned`]), which may change rounding: applied to the results of `grad`
/// and `value_and_grad` only (see the module documentation of [`reassoc`] for why not to
/// intermediate graphs).
///
/// The two run as one walk: numbering rebuilds the graph through the simplifying emitter
/// (CSE, folding, identities) as it numbers it, so numbering the live equations
/// gives what numbering the rebuilt graph would (the same graphs on every test of the
/// workspace when this was introduced), without the separate rebuild. Dead equations are
/// skipped by the walk rather than dropped from the input first. Where numbering would
/// make the graph larger, the graph is simplified and numbered as two passes instead.
pub fn try_simplify_reassociating(g: Graph) -> Result<Graph> {
    let numbered = timed("simplify.reassoc", || {
        reassoc::number_live(&g, Some(&g.live_insts()))
    })?;
    let g = match numbered {
        Some(out) => {
            drop(g);
            out
        }
        None => {
            let g = try_simplify_owned(g.without_dead_code())?;
            timed("simplify.reassoc", || reassoc::reassoc_owned(g))?
        }
    };
    timed("verify", || g.verify())?;
    Ok(g)
}

/// Runs every pass; a graph no pass can improve (or one a pass fails on) is returned as is.
pub fn simplify(g: &Graph) -> Graph {
    try_simplify(g).unwrap_or_else(|_| g.clone())
}

/// The effect of one pass: its name and the equation counts before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassReport {
    /// The pass name (`cse`, `fold`, `identities`, `dce`).
    pub pass: &'static str,
    /// Equations before the pass.
    pub before: usize,
    /// Equations after the pass.
    pub after: usize,
}

impl std::fmt::Display for PassReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<10} {:>6} -> {:>6}",
            self.pass, self.before, self.after
        )
    }
}

/// Runs the passes one at a time (CSE, constant folding, identities, DCE) and reports the
/// equation count before and after each; returns the simplified graph and the report.
pub fn simplify_report(g: &Graph) -> Result<(Graph, Vec<PassReport>)> {
    type Pass = fn(&Graph) -> Result<Graph>;
    let passes: [(&'static str, Pass); 4] = [
        ("cse", cse),
        ("fold", fold),
        ("identities", identities),
        ("dce", dce),
    ];
    let mut cur = g.clone();
    let mut report = Vec::new();
    for (name, pass) in passes {
        let next = pass(&cur)?;
        report.push(PassReport {
            pass: name,
            before: cur.num_insts(),
            after: next.num_insts(),
        });
        cur = next;
    }
    Ok((cur, report))
}
