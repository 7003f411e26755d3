//! Transforms over parameter trees, each against the same computation written positionally
//! (a closure over the flat list of leaves), plus finite differences for the tree gradient,
//! and structure mismatches reported as errors naming the key path.

use ferrax::prelude::*;
use ferrax::tree::{self, global_norm, tree_leaves, tree_map, tree_zip_map, Axis, Tree};
use ferrax::ErrorKind;

#[derive(Tree, Clone, Debug, PartialEq)]
struct Layer<T> {
    w: T,
    b: T,
}

#[derive(Tree, Clone, Debug, PartialEq)]
struct Mlp<T> {
    layers: Vec<Layer<T>>,
    scale: Option<T>,
    #[tree(skip)]
    name: &'static str,
}

/// A deterministic pseudo-random array of `shape`.
fn arr(shape: &[usize], seed: u64) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Array::from_f64(shape.to_vec(), data).unwrap()
}

/// A model of `depth` layers of width 3 (input width 2).
fn model(depth: usize) -> Mlp<Array> {
    Mlp {
        layers: (0..depth)
            .map(|k| Layer {
                w: arr(&[if k == 0 { 2 } else { 3 }, 3], 10 + k as u64),
                b: arr(&[3], 20 + k as u64),
            })
            .collect(),
        scale: Some(Array::from(0.7)),
        name: "net",
    }
}

fn forward(p: &Mlp<Tensor>, x: &Tensor) -> Tensor {
    let mut h = x.clone();
    for l in &p.layers {
        h = (h.matmul(&l.w) + &l.b).tanh();
    }
    match &p.scale {
        Some(s) => h * s,
        None => h,
    }
}

fn loss(p: Mlp<Tensor>, x: Tensor, y: Tensor) -> Tensor {
    let d = forward(&p, &x) - y;
    (&d * &d).mean_all()
}

/// The same loss over the flat leaves `[w0, b0, w1, b1, .., scale, x, y]`.
fn loss_flat(depth: usize) -> Function {
    Function::from_slice_fn(Some(2 * depth + 3), move |xs: &[Tensor]| {
        let mut h = xs[2 * depth + 1].clone();
        for k in 0..depth {
            h = (h.matmul(&xs[2 * k]) + &xs[2 * k + 1]).tanh();
        }
        let d = h * &xs[2 * depth] - &xs[2 * depth + 2];
        vec![(&d * &d).mean_all()]
    })
}

fn data() -> (Array, Array) {
    (arr(&[4, 2], 1), arr(&[4, 3], 2))
}

fn flat_args(p: &Mlp<Array>, x: &Array, y: &Array) -> Vec<Array> {
    let mut v: Vec<Array> = p.leaves().into_iter().cloned().collect();
    v.push(x.clone());
    v.push(y.clone());
    v
}

fn assert_close(a: &Array, b: &Array, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

fn assert_trees_close<T: Tree<Array>>(a: &T, b: &T, tol: f64) {
    assert_eq!(a.def(), b.def());
    for (x, y) in a.leaves().into_iter().zip(b.leaves()) {
        assert_close(x, y, tol);
    }
}

#[test]
fn function_and_jit_on_trees_match_the_positional_function() {
    let (x, y) = data();
    let f = tree::function(loss);
    let jf = tree::jit(loss);
    for depth in [1, 2, 3] {
        let p = model(depth);
        let v: Array = f.call((&p, &x, &y)).unwrap();
        let want = loss_flat(depth)
            .call_arrays(&flat_args(&p, &x, &y))
            .unwrap();
        assert_eq!(v, want[0]);
        let vj: Array = jf.call((&p, &x, &y)).unwrap();
        assert_close(&vj, &want[0], 1e-12);
    }
    // Another structure: no scale.
    let mut p = model(2);
    p.scale = None;
    let v: f64 = f.call((&p, &x, &y)).unwrap();
    assert!(v.is_finite());
}

#[test]
fn tree_output_and_apply_inside_a_trace() {
    // A function returning a tree: every layer's weights doubled.
    let double = tree::function(|p: Mlp<Tensor>| tree_map(&p, |t| t * 2.0));
    let p = model(2);
    let d: Mlp<Array> = double.call((&p,)).unwrap();
    assert_eq!(d.name, "net");
    for (a, b) in d.leaves().into_iter().zip(p.leaves()) {
        let twice: Vec<f64> = b.to_f64_vec().iter().map(|v| 2.0 * v).collect();
        assert_eq!(a.to_f64_vec(), twice);
        assert_eq!(a.shape(), b.shape());
    }
    // Applied to tensor trees inside another traced function.
    let outer = tree::function(move |p: Mlp<Tensor>| {
        let q: Mlp<Tensor> = double.apply((&p,)).unwrap();
        global_norm(&q)
    });
    let n: f64 = outer.call((&p,)).unwrap();
    assert!((n - 2.0 * global_norm(&p)).abs() < 1e-12);
}

#[test]
fn grad_and_value_and_grad_match_positional_and_finite_differences() {
    let (x, y) = data();
    let p = model(3);
    let g: Mlp<Array> = tree::grad(loss).call((&p, &x, &y)).unwrap();
    assert_eq!(g.name, "net");
    let n = p.num_leaves();
    let flat = ferrax::grad(loss_flat(3))
        .wrt((0..n).collect::<Vec<_>>())
        .call_arrays(&flat_args(&p, &x, &y))
        .unwrap();
    for (a, b) in g.leaves().into_iter().zip(&flat) {
        assert_close(a, b, 1e-12);
    }
    // Finite differences in a random direction.
    let dir: Mlp<Array> = tree_map(&p, |a| arr(a.dims(), 99));
    let f = tree::function(loss);
    let at = |t: f64| -> f64 {
        let q = tree_zip_map(&p, &dir, |a, d| {
            let v: Vec<f64> = a
                .to_f64_vec()
                .iter()
                .zip(d.to_f64_vec())
                .map(|(a, d)| a + t * d)
                .collect();
            Array::from_f64(a.dims().to_vec(), v).unwrap()
        })
        .unwrap();
        f.call((&q, &x, &y)).unwrap()
    };
    let h = 1e-5;
    let fd = (at(h) - at(-h)) / (2.0 * h);
    let dot: f64 = tree_zip_map(&g, &dir, |a, d| {
        let s: f64 = a
            .to_f64_vec()
            .iter()
            .zip(d.to_f64_vec())
            .map(|(a, d)| a * d)
            .sum();
        Array::from(s)
    })
    .unwrap()
    .leaves()
    .iter()
    .map(|a| a.to_scalar().unwrap())
    .sum();
    assert!((fd - dot).abs() < 1e-8, "{fd} vs {dot}");

    // value_and_grad: the value, then the same gradients.
    let (v, g2): (Array, Mlp<Array>) = tree::value_and_grad(loss).call((&p, &x, &y)).unwrap();
    let want: Array = tree::function(loss).call((&p, &x, &y)).unwrap();
    assert_eq!(v, want);
    assert_trees_close(&g2, &g, 0.0);

    // Several arguments: a tuple of trees.
    let (gp, gx): (Mlp<Array>, Array) = tree::grad(loss).wrt((0, 1)).call((&p, &x, &y)).unwrap();
    assert_trees_close(&gp, &g, 0.0);
    let gx_flat = ferrax::grad(loss_flat(3))
        .wrt(n)
        .call_arrays(&flat_args(&p, &x, &y))
        .unwrap();
    assert_close(&gx, &gx_flat[0], 1e-12);
}

#[test]
fn grad_with_aux_returns_any_tree() {
    let (x, y) = data();
    let p = model(2);
    let with_aux = |p: Mlp<Tensor>, x: Tensor, y: Tensor| {
        let out = forward(&p, &x);
        let d = &out - y;
        let aux = (out.sum_all(), vec![p.layers[0].w.clone()]);
        ((&d * &d).mean_all(), aux)
    };
    let (g, (s, ws)): (Mlp<Array>, (Array, Vec<Array>)) =
        tree::grad(with_aux).has_aux().call((&p, &x, &y)).unwrap();
    let g0: Mlp<Array> = tree::grad(loss).call((&p, &x, &y)).unwrap();
    assert_trees_close(&g, &g0, 0.0);
    assert_eq!(ws[0], p.layers[0].w);
    assert!(s.to_scalar().unwrap().is_finite());
    let (v, g1, (_, ws1)): (Array, Mlp<Array>, (Array, Vec<Array>)) =
        tree::value_and_grad(with_aux)
            .has_aux()
            .call((&p, &x, &y))
            .unwrap();
    assert_trees_close(&g1, &g0, 0.0);
    assert_eq!(ws1.len(), 1);
    let want: f64 = tree::function(loss).call((&p, &x, &y)).unwrap();
    assert_eq!(v.to_scalar().unwrap(), want);
    // A function without a pair to split is an error, not a panic.
    let e = tree::grad(loss)
        .has_aux()
        .call::<_, Mlp<Array>>((&p, &x, &y))
        .unwrap_err();
    assert!(e.message.contains("pair (loss, aux)"), "{e}");
}

#[test]
fn jvp_vjp_and_linearize_on_trees_match_positional() {
    let (x, y) = data();
    let p = model(2);
    let dp: Mlp<Array> = tree_map(&p, |a| arr(a.dims(), 7));
    let dx = arr(&[4, 2], 8);
    let dy = arr(&[4, 3], 9);
    let (v, t): (Array, Array) = tree::jvp(loss).call((&p, &x, &y), (&dp, &dx, &dy)).unwrap();
    let mut flat = flat_args(&p, &x, &y);
    flat.extend(flat_args(&dp, &dx, &dy));
    let want = ferrax::jvp(loss_flat(2)).call_arrays(&flat).unwrap();
    assert_close(&v, &want[0], 1e-12);
    assert_close(&t, &want[1], 1e-12);

    // vjp: <ct, J t> = <J^T ct, t>.
    let ct = Array::from(1.3);
    let (v2, (cp, cx, cy)): (Array, (Mlp<Array>, Array, Array)) =
        tree::vjp(loss).call((&p, &x, &y), &ct).unwrap();
    assert_close(&v2, &want[0], 1e-12);
    let dot = |a: &Array, b: &Array| -> f64 {
        a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .map(|(a, b)| a * b)
            .sum()
    };
    let lhs = 1.3 * t.to_scalar().unwrap();
    let rhs: f64 = cp
        .leaves()
        .into_iter()
        .zip(dp.leaves())
        .map(|(a, b)| dot(a, b))
        .sum::<f64>()
        + dot(&cx, &dx)
        + dot(&cy, &dy);
    assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");

    // linearize: the linear map gives the jvp's tangent.
    let (v3, lin): (Array, _) = tree::linearize(loss, (&p, &x, &y)).unwrap();
    assert_close(&v3, &want[0], 1e-12);
    let t3: Array = lin.call((&dp, &dx, &dy)).unwrap();
    assert_close(&t3, &t, 1e-12);
}

#[test]
fn vmap_with_axis_prefixes_gives_per_example_gradients() {
    let (x, y) = data();
    let p = model(2);
    // One example's loss: x is [2], y is [3].
    let one = |p: Mlp<Tensor>, x: Tensor, y: Tensor| {
        let d = forward(&p, &x.reshape(&[1, 2])) - y.reshape(&[1, 3]);
        (&d * &d).sum_all()
    };
    let per_example = tree::vmap(tree::grad(one)).in_axes((None, 0, 0));
    let g: Mlp<Array> = per_example.call((&p, &x, &y)).unwrap();
    // Against a loop over the examples.
    let single = tree::grad(one);
    for k in 0..4 {
        let xk = Array::from_f64(vec![2], x.to_f64_vec()[2 * k..2 * k + 2].to_vec()).unwrap();
        let yk = Array::from_f64(vec![3], y.to_f64_vec()[3 * k..3 * k + 3].to_vec()).unwrap();
        let gk: Mlp<Array> = single.call((&p, &xk, &yk)).unwrap();
        for (batched, member) in g.leaves().into_iter().zip(gk.leaves()) {
            let m = member.size();
            let rows = batched.to_f64_vec()[k * m..(k + 1) * m].to_vec();
            assert_close(
                &Array::from_f64(member.dims().to_vec(), rows).unwrap(),
                member,
                1e-12,
            );
        }
    }
    // A per-leaf prefix: the same, written out for the model's fields; and out_axes 1 on
    // every leaf puts the batch second.
    let prefix = Mlp {
        layers: vec![
            Layer {
                w: Axis(None),
                b: Axis(None)
            };
            2
        ],
        scale: Some(Axis(None)),
        name: "net",
    };
    let g2: Mlp<Array> = per_example
        .in_axes((&prefix, 0, Some(0)))
        .call((&p, &x, &y))
        .unwrap();
    assert_trees_close(&g2, &g, 0.0);
    let out_prefix = Mlp {
        layers: vec![
            Layer {
                w: Axis(Some(1)),
                b: Axis(Some(1))
            };
            2
        ],
        scale: Some(Axis(Some(0))),
        name: "net",
    };
    let g3: Mlp<Array> = per_example
        .in_axes((None, 0, 0))
        .out_axes(&out_prefix)
        .call((&p, &x, &y))
        .unwrap();
    assert_eq!(g3.layers[0].w.dims(), &[2, 4, 3]);
    assert_eq!(g3.layers[1].b.dims(), &[3, 4]);
    assert_eq!(g3.scale.as_ref().unwrap(), g.scale.as_ref().unwrap());
    // A prefix of another structure is an error naming the path.
    let short = Mlp {
        layers: vec![Layer {
            w: Axis(None),
            b: Axis(None),
        }],
        scale: Some(Axis(None)),
        name: "net",
    };
    let e = per_example
        .in_axes((&short, 0, 0))
        .call::<_, Mlp<Array>>((&p, &x, &y))
        .unwrap_err();
    assert!(e.message.contains("args[0].layers"), "{e}");
}

#[test]
fn jacobians_and_hessians_nest_as_output_then_argument_trees() {
    let f = |l: Layer<Tensor>, x: Tensor| (l.w.matmul(&x).tanh(), (l.b * &x).sum_all());
    let l = Layer {
        w: arr(&[2, 3], 3),
        b: arr(&[3], 4),
    };
    let x = arr(&[3], 5);
    type Blocks = (Layer<Array>, Layer<Array>);
    let jf: Blocks = tree::jacfwd(f).call((&l, &x)).unwrap();
    let jr: Blocks = tree::jacrev(f).call((&l, &x)).unwrap();
    assert_eq!(jf.0.w.shape().dims(), &[2, 2, 3]);
    assert_eq!(jf.0.b.shape().dims(), &[2, 3]);
    assert_eq!(jf.1.w.shape().dims(), &[2, 3]);
    assert_trees_close(&jf, &jr, 1e-12);
    let flat = Function::from_slice_fn(Some(3), |xs: &[Tensor]| {
        vec![xs[0].matmul(&xs[2]).tanh(), (&xs[1] * &xs[2]).sum_all()]
    });
    let want = ferrax::jacfwd(flat)
        .wrt((0, 1))
        .call_arrays(&[l.w.clone(), l.b.clone(), x.clone()])
        .unwrap();
    for (a, b) in jf.leaves().into_iter().zip(&want) {
        assert_close(a, b, 1e-12);
    }
    // The Hessian of a scalar function of a Layer: a Layer of Layers.
    let s = |l: Layer<Tensor>, x: Tensor| l.w.matmul(&x).tanh().sum_all() * l.b.sum_all();
    let h: Layer<Layer<Array>> = tree::hessian(s).call((&l, &x)).unwrap();
    assert_eq!(h.w.b.shape().dims(), &[2, 3, 3]);
    let flat_s = Function::from_slice_fn(Some(3), |xs: &[Tensor]| {
        vec![xs[0].matmul(&xs[2]).tanh().sum_all() * xs[1].sum_all()]
    });
    let want = ferrax::hessian(flat_s)
        .wrt((0, 1))
        .call_arrays(&[l.w.clone(), l.b.clone(), x.clone()])
        .unwrap();
    for (a, b) in h.leaves().into_iter().zip(&want) {
        assert_close(a, b, 1e-12);
    }
}

#[test]
fn checkpoint_and_composition() {
    let (x, y) = data();
    let p = model(2);
    let g0: Mlp<Array> = tree::grad(loss).call((&p, &x, &y)).unwrap();
    let g1: Mlp<Array> = tree::grad(tree::checkpoint(loss))
        .call((&p, &x, &y))
        .unwrap();
    assert_trees_close(&g1, &g0, 1e-12);
    // jit of grad of a tree function.
    let g2: Mlp<Array> = tree::jit(tree::grad(loss)).call((&p, &x, &y)).unwrap();
    assert_trees_close(&g2, &g0, 1e-12);
    // Second order through trees: grad of (grad's global norm).
    let gn = tree::function(|p: Mlp<Tensor>, x: Tensor, y: Tensor| {
        let g: Mlp<Tensor> = tree::grad(loss).apply((&p, &x, &y)).unwrap();
        global_norm(&g)
    });
    let gg: Mlp<Array> = tree::grad(gn).call((&p, &x, &y)).unwrap();
    assert!(tree_leaves(&gg)
        .iter()
        .all(|a| a.to_f64_vec().iter().all(|v| v.is_finite())));
}

#[test]
fn structure_mismatches_are_errors_naming_the_path() {
    let (x, y) = data();
    let p2 = model(2);
    let p3 = model(3);
    // Tangents of another structure.
    let e = tree::jvp(loss)
        .call::<_, _, Array>((&p3, &x, &y), (&p2, &x, &y))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Structure);
    assert!(
        e.message.starts_with("jvp: tangents[0].layers[2]: missing"),
        "{e}"
    );
    // A gradient requested as another type.
    let e = tree::grad(loss)
        .call::<_, Layer<Array>>((&p2, &x, &y))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Structure);
    assert!(
        e.message
            .contains("grad: result: expected a Layer, found a Mlp"),
        "{e}"
    );
    // A tree given to a function of another tree.
    let f = tree::function(|l: Layer<Tensor>| l.w.sum_all());
    let e = f.call::<_, Array>((&p2,)).unwrap_err();
    assert!(
        e.message.contains("args[0]: expected a Layer, found a Mlp"),
        "{e}"
    );
    // Other static data.
    let mut renamed = p2.clone();
    renamed.name = "other";
    let e = tree::jvp(loss)
        .call::<_, _, Array>((&p2, &x, &y), (&renamed, &x, &y))
        .unwrap_err();
    assert!(
        e.message.contains("tangents[0]: static data differs"),
        "{e}"
    );
    // A missing optional field.
    let mut no_scale = p2.clone();
    no_scale.scale = None;
    let (_, lin): (Array, _) = tree::linearize(loss, (&p2, &x, &y)).unwrap();
    let e = lin.call::<_, Array>((&no_scale, &x, &y)).unwrap_err();
    assert!(
        e.message
            .contains("tangents[0].scale: expected Some(..), found None"),
        "{e}"
    );
    // A cotangent of another structure.
    let e = tree::vjp(loss)
        .call::<_, _, Array, Mlp<Array>>((&p2, &x, &y), &(x.clone(), y.clone()))
        .unwrap_err();
    assert!(e.message.contains("vjp: cotangent: expected a leaf"), "{e}");
    // Wrong count of arguments.
    let e = tree::function(loss)
        .call::<_, Array>((&p2, &x))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
    let e = tree::grad(loss)
        .wrt(5)
        .call::<_, Array>((&p2, &x, &y))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Arity);
}

#[test]
fn control_flow_carries_trees() {
    let p = model(2);
    // fori_loop: three steps of p <- p - 0.1 * p * p over the whole tree, against the same loop
    // over the flat leaves.
    let step = |p: Mlp<Tensor>| tree_map(&p, |t| t - 0.1 * (t * t));
    let looped =
        tree::function(move |p: Mlp<Tensor>| tree::fori_loop(0, 3, |_, c: Mlp<Tensor>| step(c), p));
    let got: Mlp<Array> = looped.call((&p,)).unwrap();
    let n = p.num_leaves();
    let flat = Function::from_slice_fn(Some(n), |xs: &[Tensor]| {
        ferrax::fori_loop(
            0,
            3,
            |_, c| c.iter().map(|t| t - 0.1 * (t * t)).collect(),
            xs,
        )
    });
    let want = flat
        .call_arrays(&p.leaves().into_iter().cloned().collect::<Vec<_>>())
        .unwrap();
    for (a, b) in got.leaves().into_iter().zip(&want) {
        assert_eq!(a, b);
    }
    // Gradient through the loop against the positional gradient.
    let summed = tree::function(move |p: Mlp<Tensor>| {
        let q = tree::fori_loop(0, 3, |_, c: Mlp<Tensor>| step(c), p);
        tree_leaves(&q)
            .into_iter()
            .map(|t| t.sum_all())
            .reduce(|a, b| a + b)
            .unwrap()
    });
    let g: Mlp<Array> = tree::grad(summed).call((&p,)).unwrap();
    let flat_sum = Function::from_slice_fn(Some(n), |xs: &[Tensor]| {
        let q = ferrax::fori_loop(
            0,
            3,
            |_, c| c.iter().map(|t| t - 0.1 * (t * t)).collect(),
            xs,
        );
        vec![q.iter().map(|t| t.sum_all()).reduce(|a, b| a + b).unwrap()]
    });
    let gw = ferrax::grad(flat_sum)
        .wrt((0..n).collect::<Vec<_>>())
        .call_arrays(&p.leaves().into_iter().cloned().collect::<Vec<_>>())
        .unwrap();
    for (a, b) in g.leaves().into_iter().zip(&gw) {
        assert_close(a, b, 1e-12);
    }

    // while_loop: double a (scalar, vector) pair until the scalar exceeds 100.
    let w = tree::function(|s: Tensor, v: Tensor| {
        tree::while_loop(
            |c: &(Tensor, Tensor)| c.0.lt(100.0),
            |(s, v): (Tensor, Tensor)| (s * 2.0, v * 2.0),
            (s, v),
        )
    });
    let (s, v): (Array, Array) = w.call((1.0, Array::from(vec![1.0, 3.0]))).unwrap();
    assert_eq!(s.to_scalar().unwrap(), 128.0);
    assert_eq!(v.to_f64_vec(), [128.0, 384.0]);

    // scan with a Layer carry and a (Tensor, Vec<Tensor>) of ys.
    let sc = tree::function(|l: Layer<Tensor>, xs: Tensor| {
        let (c, ys) = tree::scan(
            |c: Layer<Tensor>, x: Tensor| {
                let next = Layer {
                    w: &c.w + &x,
                    b: &c.b * &x,
                };
                let y = (next.w.clone(), vec![next.b.clone()]);
                (next, y)
            },
            l,
            xs,
        );
        (c, ys)
    });
    let l = Layer {
        w: Array::from(0.0),
        b: Array::from(1.0),
    };
    let (c, (yw, yb)): (Layer<Array>, (Array, Vec<Array>)) =
        sc.call((&l, Array::from(vec![1.0, 2.0, 3.0]))).unwrap();
    assert_eq!(
        (c.w.to_scalar().unwrap(), c.b.to_scalar().unwrap()),
        (6.0, 6.0)
    );
    assert_eq!(yw.to_f64_vec(), [1.0, 3.0, 6.0]);
    assert_eq!(yb[0].to_f64_vec(), [1.0, 2.0, 6.0]);

    // cond over an operand tree, returning a tree.
    let c = tree::function(|x: Tensor, l: Layer<Tensor>| {
        tree::cond(
            &x.gt(0.0),
            |l: Layer<Tensor>| Layer {
                w: l.b.clone(),
                b: l.w,
            },
            |l: Layer<Tensor>| l,
            l,
        )
    });
    let l = Layer {
        w: Array::from(1.0),
        b: Array::from(2.0),
    };
    let swapped: Layer<Array> = c.call((1.0, &l)).unwrap();
    let kept: Layer<Array> = c.call((-1.0, &l)).unwrap();
    assert_eq!(
        (swapped.w.to_scalar().unwrap(), kept.w.to_scalar().unwrap()),
        (2.0, 1.0)
    );
}

#[test]
fn control_flow_structure_errors_name_the_path() {
    let p = model(2);
    // A body that drops a layer.
    let bad = tree::function(|p: Mlp<Tensor>| {
        tree::fori_loop(
            0,
            2,
            |_, mut c: Mlp<Tensor>| {
                c.layers.pop();
                c
            },
            p,
        )
    });
    let e = bad.call::<_, Mlp<Array>>((&p,)).unwrap_err();
    assert!(
        e.message
            .contains("fori_loop: the body's carry: carry.layers[1]: missing"),
        "{e}"
    );
    // Branches of different structures.
    let bad = tree::function(|x: Tensor, y: Tensor| {
        tree::cond(
            &x.gt(0.0),
            |y: Tensor| vec![y.clone(), y],
            |y: Tensor| vec![y],
            y,
        )
    });
    let e = bad.call::<_, Vec<Array>>((1.0, 2.0)).unwrap_err();
    assert!(
        e.message
            .contains("another structure than the other branch"),
        "{e}"
    );
    // A scan whose xs fail to line up still returns (an error), never panics.
    let bad = tree::function(|a: Tensor, b: Tensor| {
        let (c, ys) = tree::scan(
            |c: Tensor, (a, b): (Tensor, Tensor)| (&c + &a, Layer { w: a, b }),
            Tensor::from(0.0),
            (a, b),
        );
        (c, ys)
    });
    let e = bad
        .call::<_, (Array, Layer<Array>)>((Array::from(vec![1.0, 2.0]), Array::from(vec![1.0])))
        .unwrap_err();
    assert!(e.message.contains("scan"), "{e}");
}

#[test]
fn custom_rules_on_tree_functions() {
    // custom_jvp: a Layer's output tanh(w) + b with the derivative of tanh replaced by 1.
    let f = |l: Layer<Tensor>| l.w.tanh() + l.b;
    let g = tree::custom_jvp(f, |(p,): (Layer<Tensor>,), (t,): (Layer<Tensor>,)| {
        (p.w.tanh() + &p.b, t.w + t.b)
    });
    let l = Layer {
        w: Array::from(0.5),
        b: Array::from(2.0),
    };
    let v: f64 = g.call((&l,)).unwrap();
    assert_eq!(v, 0.5f64.tanh() + 2.0);
    let d: Layer<Array> = tree::grad(&g).call((&l,)).unwrap();
    assert_eq!(
        (d.w.to_scalar().unwrap(), d.b.to_scalar().unwrap()),
        (1.0, 1.0)
    );

    // custom_vjp: the gradient with respect to w scaled by 3 through a residual tree.
    let h = tree::custom_vjp(
        f,
        |(p,): (Layer<Tensor>,)| {
            let out = p.w.tanh() + &p.b;
            let res = Layer {
                w: p.w.tanh(),
                b: Tensor::from(3.0),
            };
            (out, res)
        },
        |res: Layer<Tensor>, ct: Tensor| {
            let dw = &ct * (1.0 - &res.w * &res.w) * &res.b;
            (Layer { w: dw, b: ct },)
        },
    );
    let d: Layer<Array> = tree::grad(&h).call((&l,)).unwrap();
    let want = 3.0 * (1.0 - 0.5f64.tanh().powi(2));
    assert!((d.w.to_scalar().unwrap() - want).abs() < 1e-15);
    assert_eq!(d.b.to_scalar().unwrap(), 1.0);

    // Reverse mode of the rule's function as a vjp over trees, and vjp of a vjp.
    let (v, c): (Array, Layer<Array>) = tree::vjp(&g).call((&l,), &Array::from(2.0)).unwrap();
    assert_eq!(v.to_scalar().unwrap(), 0.5f64.tanh() + 2.0);
    assert_eq!(
        (c.w.to_scalar().unwrap(), c.b.to_scalar().unwrap()),
        (2.0, 2.0)
    );
    let vv = tree::vjp(tree::vjp(&h).tree_fn());
    let ((v, c), _): ((Array, Layer<Array>), (Layer<Array>, Array)) = vv
        .call(
            (&l, Array::from(1.0)),
            &(
                Array::from(1.0),
                Layer {
                    w: Array::from(0.0),
                    b: Array::from(0.0),
                },
            ),
        )
        .unwrap();
    assert_eq!(v.to_scalar().unwrap(), 0.5f64.tanh() + 2.0);
    assert!((c.w.to_scalar().unwrap() - want).abs() < 1e-15);

    // A rule whose tangent has another structure than f's output.
    let bad = tree::custom_jvp(f, |(p,): (Layer<Tensor>,), (t,): (Layer<Tensor>,)| {
        (vec![p.w.tanh() + &p.b], vec![t.w + t.b])
    });
    let e = tree::grad(&bad).call::<_, Layer<Array>>((&l,)).unwrap_err();
    assert!(e.message.contains("do not have f's structure"), "{e}");
}

/// The address of an array's elements.
fn address(a: &Array) -> usize {
    match a.data() {
        ferrax::ir::Data::F32(v) => v.as_ptr() as usize,
        ferrax::ir::Data::F64(v) => v.as_ptr() as usize,
        ferrax::ir::Data::I32(v) => v.as_ptr() as usize,
        ferrax::ir::Data::Bool(v) => v.as_ptr() as usize,
    }
}

/// A donated leaf that no output takes in place in a call is kept as the buffer of an output
/// of the next call: here the moment `m`, whose update `0.1·g + 0.9·m` may overwrite the
/// gradient `g` instead (the nearer argument), while `g` is passed by reference. The moment's
/// output then lands in the buffer donated one call before, rather than in new zeros.
#[test]
fn donated_leaves_not_taken_in_place_serve_the_next_call() {
    use ferrax::tree::Donate;
    let step = tree::jit(|p: Tensor, m: Tensor, g: Tensor| {
        let m2 = 0.1 * g + 0.9 * m;
        (p - 0.5 * &m2, m2)
    });
    let n = 4096;
    let vector = |f: &dyn Fn(usize) -> f64| Array::from_f64([n], (0..n).map(f).collect());
    let g = vector(&|i| (i as f64).sin()).unwrap();
    let (mut p, mut m) = (vector(&|_| 1.0).unwrap(), vector(&|_| 0.0).unwrap());
    let (mut pr, mut mr) = (vector(&|_| 1.0).unwrap(), vector(&|_| 0.0).unwrap());
    // Arrays of the same size allocated after each call, so that a dropped moment buffer
    // would most likely be handed to one of them rather than to the next call's output.
    let mut blockers = Vec::new();
    let mut given_before = None;
    for _ in 0..4 {
        let given = address(&m);
        let (p2, m2): (Array, Array) = step.call_donating((Donate(p), Donate(m), &g)).unwrap();
        blockers.push(vector(&|_| 0.0).unwrap());
        let (pr2, mr2): (Array, Array) = step.call((&pr, &mr, &g)).unwrap();
        assert_eq!(p2.to_f64_vec(), pr2.to_f64_vec(), "donated parameters");
        assert_eq!(m2.to_f64_vec(), mr2.to_f64_vec(), "donated moment");
        if let Some(before) = given_before {
            assert_eq!(address(&m2), before, "the moment donated one call before");
        }
        given_before = Some(given);
        (p, m, pr, mr) = (p2, m2, pr2, mr2);
    }
}

/// Calls that give up other leaves than the previous call (both trees, one of them, none)
/// each get the plan of their own pattern: results equal plain calls, a donated parameter is
/// updated in its own buffer, and a parameter passed by reference is never written.
#[test]
fn donation_patterns_switching_between_calls() {
    use ferrax::tree::Donate;
    let step = tree::jit(|p: Tensor, m: Tensor, g: Tensor| {
        let m2 = 0.1 * g + 0.9 * m;
        (p - 0.5 * &m2, m2)
    });
    let n = 1024;
    let vector = |f: &dyn Fn(usize) -> f64| Array::from_f64([n], (0..n).map(f).collect());
    let g = vector(&|i| (i as f64).cos()).unwrap();
    let (mut p, mut m) = (vector(&|_| 1.0).unwrap(), vector(&|_| 0.0).unwrap());
    for (k, pattern) in [3, 3, 1, 2, 0, 3, 2, 2, 1, 0, 3, 3].into_iter().enumerate() {
        let (want_p, want_m): (Array, Array) = step.call((&p, &m, &g)).unwrap();
        let (given_p, kept_p, kept_m) = (address(&p), p.clone(), m.clone());
        let (p2, m2): (Array, Array) = match pattern {
            3 => step.call_donating((Donate(p), Donate(m), &g)).unwrap(),
            2 => {
                let out = step.call_donating((Donate(p), &m, &g)).unwrap();
                assert_eq!(m, kept_m, "call {k}: the moment passed by reference");
                out
            }
            1 => {
                let out = step.call_donating((&p, Donate(m), &g)).unwrap();
                assert_eq!(p, kept_p, "call {k}: the parameter passed by reference");
                out
            }
            _ => {
                let out = step.call_donating((&p, &m, &g)).unwrap();
                assert_eq!((&p, &m), (&kept_p, &kept_m), "call {k}: both by reference");
                out
            }
        };
        assert_eq!(p2.to_f64_vec(), want_p.to_f64_vec(), "call {k}");
        assert_eq!(m2.to_f64_vec(), want_m.to_f64_vec(), "call {k}");
        if pattern & 2 != 0 {
            assert_eq!(address(&p2), given_p, "call {k}: the parameter in place");
        }
        (p, m) = (p2, m2);
    }
}

#[test]
fn donated_steps_match_plain_calls_and_recycle_buffers() {
    use ferrax::tree::Donate;
    let (x, y) = data();
    // One SGD step with a momentum state: (params, velocity, x, y) -> (params, velocity, loss).
    let step = tree::jit(|p: Mlp<Tensor>, v: Mlp<Tensor>, x: Tensor, y: Tensor| {
        let (l, g): (Tensor, Mlp<Tensor>) = tree::value_and_grad(loss).apply((&p, &x, &y)).unwrap();
        let v2 = tree_zip_map(&v, &g, |v, g| 0.9 * v + g).unwrap();
        let p2 = tree_zip_map(&p, &v2, |p, v| p - 0.1 * v).unwrap();
        (p2, v2, l)
    });
    let p0 = model(2);
    let v0 = tree_map(&p0, |a| Array::zeros(&a.ty()).unwrap());
    let (mut p, mut v) = (p0.clone(), v0.clone());
    let (mut pd, mut vd) = (p0, v0);
    let mut first_addresses = Vec::new();
    for k in 0..4 {
        let (p2, v2, l): (Mlp<Array>, Mlp<Array>, Array) = step.call((&p, &v, &x, &y)).unwrap();
        if k == 0 {
            first_addresses = tree_leaves(&pd)
                .iter()
                .chain(tree_leaves(&vd).iter())
                .map(|a| address(a))
                .collect();
        }
        let given: Vec<usize> = tree_leaves(&pd)
            .iter()
            .chain(tree_leaves(&vd).iter())
            .map(|a| address(a))
            .collect();
        let (pd2, vd2, ld): (Mlp<Array>, Mlp<Array>, Array) = step
            .call_donating((Donate(pd), Donate(vd), &x, &y))
            .unwrap();
        // Each update of a tensor is an elementwise loop that reads its parameter and
        // velocity at the index it writes, so those outputs are written in place of the
        // donated inputs (the rank-0 `scale` is computed in a register).
        let now: Vec<usize> = tree_leaves(&pd2)
            .iter()
            .chain(tree_leaves(&vd2).iter())
            .filter(|a| !a.dims().is_empty())
            .map(|a| address(a))
            .collect();
        assert_eq!(now.len(), 8);
        // Each parameter's update takes that parameter's own buffer (the nearest argument of
        // its expression `p − 0.1·v`).
        for (a, b) in tree_leaves(&pd2).iter().zip(&given) {
            if !a.dims().is_empty() {
                assert_eq!(address(a), *b);
            }
        }
        assert!(now.iter().all(|a| given.contains(a)), "{now:?} {given:?}");
        assert_eq!(l, ld);
        assert_eq!(p2, pd2);
        assert_eq!(v2, vd2);
        if k == 1 {
            // The second donated call writes into the first call's donated inputs.
            let now: Vec<usize> = tree_leaves(&pd2)
                .iter()
                .chain(tree_leaves(&vd2).iter())
                .map(|a| address(a))
                .collect();
            assert!(
                now.iter().all(|a| first_addresses.contains(a)),
                "{now:?} {first_addresses:?}"
            );
        }
        (p, v, pd, vd) = (p2, v2, pd2, vd2);
    }
}

#[derive(Tree, Clone, Debug)]
struct Act<T> {
    w: T,
    #[tree(skip)]
    kind: &'static str,
}

#[test]
fn static_data_is_part_of_the_cache_key() {
    // The skipped field picks the activation at trace time; each value traces its own graph.
    let f = tree::jit(|a: Act<Tensor>| match a.kind {
        "relu" => a.w.relu(),
        _ => a.w.tanh(),
    });
    let relu = Act {
        w: Array::from(-1.0),
        kind: "relu",
    };
    let tanh = Act {
        w: Array::from(-1.0),
        kind: "tanh",
    };
    for _ in 0..2 {
        let r: f64 = f.call((&relu,)).unwrap();
        let t: f64 = f.call((&tanh,)).unwrap();
        assert_eq!((r, t), (0.0, (-1.0f64).tanh()));
    }
    // The gradient keeps the static data of its argument.
    let g: Act<Array> = tree::grad(|a: Act<Tensor>| a.w.tanh())
        .call((&tanh,))
        .unwrap();
    assert_eq!(g.kind, "tanh");
}

#[test]
fn jacobians_with_respect_to_several_tree_arguments() {
    let f = |l: Layer<Tensor>, x: Tensor| vec![(&l.w * &x).sin(), (l.b * x).sum_all()];
    let l = Layer {
        w: arr(&[3], 1),
        b: arr(&[3], 2),
    };
    let x = arr(&[3], 3);
    // Output tree Vec of 2; each leaf becomes the pair (Layer, Array) of argument blocks.
    let j: Vec<(Layer<Array>, Array)> = tree::jacrev(f).wrt((0, 1)).call((&l, &x)).unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0].0.w.dims(), &[3, 3]);
    assert_eq!(j[1].1.dims(), &[3]);
    let jf: Vec<(Layer<Array>, Array)> = tree::jacfwd(f).wrt((0, 1)).call((&l, &x)).unwrap();
    for (a, b) in j.iter().zip(&jf) {
        assert_trees_close(a, b, 1e-12);
    }
    // d/dx of sum(b * x) is b.
    assert_close(&j[1].1, &l.b, 0.0);
}

/// `Tree::matches_def`, which a jitted call uses to check its arguments against the previous
/// call's structures without building them, answers as `def() ==` does, for every built-in
/// kind, derived structs with static data and the optimizer states, across many structures.
#[test]
fn matches_def_agrees_with_comparing_structures() {
    use ferrax::optim::AdamState;
    use std::collections::BTreeMap;
    let layer = |w: f64| Layer { w, b: 2.0 * w };
    let mlp = |n: usize, scale: Option<f64>, name: &'static str| Mlp {
        layers: (0..n).map(|k| layer(k as f64)).collect(),
        scale,
        name,
    };
    let mlps = [
        mlp(0, None, "net"),
        mlp(2, Some(1.0), "net"),
        mlp(2, None, "net"),
        mlp(2, Some(1.0), "other"),
        mlp(3, Some(1.0), "net"),
    ];
    let states: Vec<AdamState<f64, Layer<f64>>> = (0..2)
        .map(|k| AdamState {
            count: 1.0,
            learning_rate: 0.1,
            b1: 0.9,
            b2: 0.999,
            eps: 1e-8,
            weight_decay: (k == 1).then_some(0.01),
            mu: layer(1.0),
            nu: layer(2.0),
        })
        .collect();
    let maps: Vec<BTreeMap<String, f64>> = vec![
        BTreeMap::new(),
        [("a".to_string(), 1.0)].into(),
        [("b".to_string(), 1.0)].into(),
    ];
    let tuples = [(1.0, layer(1.0)), (2.0, layer(3.0))];
    let arrays = [[layer(1.0), layer(2.0)]];
    let boxes = [Box::new(layer(1.0))];
    let vecs: Vec<Vec<f64>> = vec![vec![], vec![1.0], vec![1.0, 2.0]];
    let options = [None, Some(1.0), Some(2.0)];
    let units = [()];
    let leaves = [1.0];
    let mut all: Vec<tree::TreeDef> = Vec::new();
    all.extend(mlps.iter().map(Tree::<f64>::def));
    all.extend(states.iter().map(Tree::<f64>::def));
    all.extend(maps.iter().map(Tree::<f64>::def));
    all.extend(tuples.iter().map(Tree::<f64>::def));
    all.extend(arrays.iter().map(Tree::<f64>::def));
    all.extend(boxes.iter().map(Tree::<f64>::def));
    all.extend(vecs.iter().map(Tree::<f64>::def));
    all.extend(options.iter().map(Tree::<f64>::def));
    all.extend(units.iter().map(Tree::<f64>::def));
    all.extend(leaves.iter().map(Tree::<f64>::def));
    fn check<T: Tree<f64>>(values: &[T], all: &[tree::TreeDef]) {
        for v in values {
            let own = v.def();
            assert!(v.matches_def(&own), "{own:?}");
            for d in all {
                assert_eq!(v.matches_def(d), own == *d, "{own:?} against {d:?}");
            }
        }
    }
    check(&mlps, &all);
    check(&states, &all);
    check(&maps, &all);
    check(&tuples, &all);
    check(&arrays, &all);
    check(&boxes, &all);
    check(&vecs, &all);
    check(&options, &all);
    check(&units, &all);
    check(&leaves, &all);
}

/// A jitted call whose argument structures differ from the previous call's (another number
/// of layers, another static value, a missing optional leaf), by reference or donated, gets
/// the code of its own structures: results equal the uncompiled function's.
#[test]
fn calls_switching_structures_get_their_own_code() {
    use ferrax::tree::Donate;
    let (x, _) = data();
    let f = tree::jit(|p: Mlp<Tensor>, x: Tensor| {
        let h = forward(&p, &x);
        let s = if p.name == "net" { 1.0 } else { -1.0 };
        (tree_map(&p, |l| l * s), h)
    });
    let mut other = model(2);
    other.name = "other";
    let mut unscaled = model(2);
    unscaled.scale = None;
    let order = [
        model(2),
        model(3),
        model(2),
        other,
        unscaled,
        model(1),
        model(2),
    ];
    for (k, p) in order.iter().enumerate() {
        let want: (Mlp<Array>, Array) = f.tree_fn().call((p, &x)).unwrap();
        let got: (Mlp<Array>, Array) = f.call((p, &x)).unwrap();
        assert_trees_close(&got.0, &want.0, 1e-12);
        assert_close(&got.1, &want.1, 1e-12);
        let donated: (Mlp<Array>, Array) = f.call_donating((Donate(p.clone()), &x)).unwrap();
        assert_trees_close(&donated.0, &want.0, 1e-12);
        assert_close(&donated.1, &want.1, 1e-12);
        assert_eq!(donated.0.name, p.name, "call {k}");
        assert_eq!(donated.0.layers.len(), p.layers.len(), "call {k}");
    }
    // A structure that does not fit the closure is still an error naming the path.
    let bad = tree::jit(|p: Layer<Tensor>| p.w + p.b);
    let l = Layer {
        w: Array::from(1.0),
        b: Array::from(2.0),
    };
    let _: f64 = bad.call((&l,)).unwrap();
    let e = bad.call::<_, f64>((&model(1),)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Structure, "{e}");
}
