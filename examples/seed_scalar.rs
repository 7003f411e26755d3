//! The tutorial's three scalar functions: their values and gradients, their IR, and a drawing
//! of each computational graph with every node's value and gradient (adjoint).
//!
//! Run with `cargo run --release --example seed_scalar`; the drawings go to
//! `target/ferrax-examples/seed_ex{1,2,3}.dot` (and `.svg` when Graphviz's `dot` is installed).

#[path = "common/mod.rs"]
mod common;

use common::{num, vec_text, AnyResult};
use ferrax::ir::{Builder, Graph};
use ferrax::prelude::*;
use std::collections::HashMap;

/// One of the tutorial's functions with the point it is evaluated at.
pub struct Seed {
    /// The name printed before each line (`ex1`, ...).
    pub name: &'static str,
    /// The function.
    pub f: Function,
    /// The point.
    pub point: Vec<f64>,
}

/// The three functions: x² at 3, (x + y)(x − y) at (3, 2), sin(x)·exp(y)/log(z) at (1, 2, 3).
pub fn seeds() -> Vec<Seed> {
    vec![
        Seed {
            name: "ex1",
            f: function(|x: Tensor| x.square()),
            point: vec![3.0],
        },
        Seed {
            name: "ex2",
            f: function(|x: Tensor, y: Tensor| (&x + &y) * (&x - &y)),
            point: vec![3.0, 2.0],
        },
        Seed {
            name: "ex3",
            f: function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln()),
            point: vec![1.0, 2.0, 3.0],
        },
    ]
}

/// The value of `f` at `point` and its gradient with respect to every argument, by
/// `value_and_grad`.
pub fn value_and_gradient(f: &Function, point: &[f64]) -> AnyResult<(f64, Vec<f64>)> {
    let argnums: Vec<usize> = (0..point.len()).collect();
    let vg = value_and_grad(f).wrt(argnums);
    let args: Vec<Array> = point.iter().map(|&x| Array::from(x)).collect();
    let outs = vg.call_arrays(&args)?;
    let value = outs[0].to_scalar()?;
    let grads = outs[1..]
        .iter()
        .map(|a| a.to_scalar())
        .collect::<Result<Vec<_>>>()?;
    Ok((value, grads))
}

/// Copies `g` into a new graph whose outputs are every value of `g` (parameters first, then
/// equation results), so one interpreter run yields each node's value.
fn all_values_graph(g: &Graph) -> AnyResult<(Graph, Vec<ferrax::ir::Value>)> {
    let mut b = Builder::new();
    let mut map = HashMap::new();
    let mut order = Vec::new();
    for &p in g.params() {
        map.insert(p, b.param(g.ty(p).clone()));
        order.push(p);
    }
    for (_, inst) in g.insts() {
        let args: Vec<_> = inst.args.iter().map(|a| map[a]).collect();
        let results = b.push(inst.op.clone(), &args)?;
        for (&r, &nr) in inst.results.iter().zip(&results) {
            map.insert(r, nr);
            order.push(r);
        }
    }
    let outs: Vec<_> = order.iter().map(|v| map[v]).collect();
    Ok((b.finish(&outs), order))
}

/// Copies `g` with the node `cut` replaced by a new, last parameter: everything downstream of
/// `cut` reads the new parameter, everything else is computed from the original inputs as
/// before. The only output is `g`'s first output.
fn cut_at(g: &Graph, cut: ferrax::ir::Value) -> AnyResult<Graph> {
    let mut b = Builder::new();
    let mut map = HashMap::new();
    for &p in g.params() {
        map.insert(p, b.param(g.ty(p).clone()));
    }
    let fresh = b.param(g.ty(cut).clone());
    map.insert(cut, fresh);
    for (_, inst) in g.insts() {
        let args: Vec<_> = inst.args.iter().map(|a| map[a]).collect();
        let results = b.push(inst.op.clone(), &args)?;
        for (&r, &nr) in inst.results.iter().zip(&results) {
            if r != cut {
                map.insert(r, nr);
            }
        }
    }
    let out = map[&g.outputs()[0]];
    Ok(b.finish(&[out]))
}

/// Each node's value and gradient (adjoint) at `point`, as text for the graph drawing.
///
/// Values come from one interpreter run of a copy of the graph that outputs every node.
/// The adjoint of a node `v` is ∂out/∂v with every other node that does not depend on `v`
/// held at its value, which is exactly what reverse mode accumulates at `v`. To get it with
/// ferrax itself, the graph is cut at `v` (see [`cut_at`]): `v` becomes a new input fed with
/// its own value, so the cut graph computes the same output, and `grad` with respect to that
/// input is the adjoint. For an input `x` this is ∂out/∂x, the usual gradient.
pub fn node_labels(g: &Graph, point: &[f64]) -> AnyResult<HashMap<ferrax::ir::Value, String>> {
    let args: Vec<Array> = point.iter().map(|&x| Array::from(x)).collect();
    let (values_graph, order) = all_values_graph(g)?;
    let values = ferrax::ir::interp::eval(&values_graph, &args)?;
    let mut labels = HashMap::new();
    for (&v, value) in order.iter().zip(&values) {
        let Ok(x) = value.to_scalar() else { continue };
        let mut text = format!("value = {}", num(x));
        if g.ty(v).dtype.is_float() {
            let cut = Function::from_graph(cut_at(g, v)?);
            let adjoint = grad(&cut).wrt(point.len());
            let mut cut_args = args.clone();
            cut_args.push(value.clone());
            let d = adjoint.call_arrays(&cut_args)?[0].to_scalar()?;
            text.push_str(&format!("\ngrad = {}", num(d)));
        }
        labels.insert(v, text);
    }
    Ok(labels)
}

fn main() -> AnyResult<()> {
    let mut files = Vec::new();
    for seed in seeds() {
        let (value, grads) = value_and_gradient(&seed.f, &seed.point)?;
        println!("{} f = {}", seed.name, num(value));
        if grads.len() == 3 {
            println!("{} grad = {}", seed.name, vec_text(&grads));
        } else {
            for (name, d) in ["x", "y"].iter().zip(&grads) {
                println!("{} df/d{name} = {}", seed.name, num(*d));
            }
        }
        println!("{} ir:\n{}", seed.name, seed.f.ir());
        let graph = seed.f.graph()?;
        let labels = node_labels(&graph, &seed.point)?;
        let dot = graph.to_dot_with(&|v| labels.get(&v).cloned());
        files.extend(common::write_dot(&format!("seed_{}", seed.name), &dot)?);
    }
    for f in &files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
