//! `#[derive(Tree)]` on nested generic structs, container fields, skipped fields, tuple and
//! unit structs: structure, leaf order, key paths, maps to another leaf type, and rebuilding
//! from a structure of another shape (an error naming the key path).

use ferrax::tree::{tree_paths, tree_unflatten, tree_zip_map, Tree};
use ferrax::{Array, ErrorKind};
use std::collections::BTreeMap;

#[derive(Tree, Clone, Debug, PartialEq)]
struct Layer<T> {
    w: T,
    b: T,
}

#[derive(Tree, Clone, Debug, PartialEq)]
struct Mlp<T> {
    w1: T,
    b1: T,
    layers: Vec<Layer<T>>,
    #[tree(skip)]
    name: &'static str,
}

#[derive(Tree, Clone, Debug, PartialEq)]
struct Everything<T> {
    head: Option<Layer<T>>,
    tail: Option<T>,
    blocks: BTreeMap<String, Layer<T>>,
    pair: (T, [T; 2]),
    boxed: Box<T>,
    unit: (),
    #[tree(skip)]
    depth: usize,
}

#[derive(Tree, Clone, Debug, PartialEq)]
struct Pair<T>(T, Layer<T>);

#[derive(Tree, Clone, Debug, PartialEq)]
struct Nothing<T> {
    #[tree(skip)]
    tag: u8,
    #[tree(skip)]
    marker: std::marker::PhantomData<()>,
    #[tree(skip)]
    _t: std::marker::PhantomData<fn() -> u8>,
    empty: Vec<T>,
}

#[derive(Tree, Clone, Debug, PartialEq)]
#[tree(leaf = L)]
struct TwoParams<
    L,
    X: Clone + std::fmt::Debug + PartialEq + std::hash::Hash + Send + Sync + 'static,
> {
    v: L,
    #[tree(skip)]
    extra: X,
}

fn mlp(n: usize) -> Mlp<f64> {
    Mlp {
        w1: 1.0,
        b1: 2.0,
        layers: (0..n)
            .map(|k| Layer {
                w: 10.0 * (k + 1) as f64,
                b: 10.0 * (k + 1) as f64 + 1.0,
            })
            .collect(),
        name: "mlp",
    }
}

fn paths<T: Tree<f64>>(t: &T) -> Vec<String> {
    tree_paths(t).iter().map(|p| p.to_string()).collect()
}

#[test]
fn nested_generic_struct_leaves_paths_and_map() {
    let p = mlp(2);
    let leaves: Vec<f64> = p.leaves().into_iter().copied().collect();
    assert_eq!(leaves, [1.0, 2.0, 10.0, 11.0, 20.0, 21.0]);
    assert_eq!(
        paths(&p),
        [
            "w1",
            "b1",
            "layers[0].w",
            "layers[0].b",
            "layers[1].w",
            "layers[1].b"
        ]
    );
    // The same struct with arrays, then back: structure and static data survive.
    let arrays: Mlp<Array> = p.clone().map(Array::from);
    assert_eq!(arrays.name, "mlp");
    assert_eq!(arrays.layers[1].b.to_scalar().unwrap(), 21.0);
    assert_eq!(arrays.def(), p.def());
    let back: Mlp<f64> = arrays.map(|a| a.to_scalar().unwrap());
    assert_eq!(back, p);
    assert_eq!(p.num_leaves(), 6);
}

#[test]
fn containers_and_skipped_fields() {
    let mut blocks = BTreeMap::new();
    blocks.insert("enc".to_string(), Layer { w: 5.0, b: 6.0 });
    blocks.insert("dec".to_string(), Layer { w: 3.0, b: 4.0 });
    let e = Everything {
        head: Some(Layer { w: 1.0, b: 2.0 }),
        tail: None,
        blocks,
        pair: (7.0, [8.0, 9.0]),
        boxed: Box::new(10.0),
        unit: (),
        depth: 3,
    };
    assert_eq!(
        paths(&e),
        [
            "head.w",
            "head.b",
            "blocks[\"dec\"].w",
            "blocks[\"dec\"].b",
            "blocks[\"enc\"].w",
            "blocks[\"enc\"].b",
            "pair.0",
            "pair.1[0]",
            "pair.1[1]",
            "boxed"
        ]
    );
    let leaves: Vec<f64> = e.leaves().into_iter().copied().collect();
    assert_eq!(leaves, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
    let rebuilt: Everything<f64> = tree_unflatten(&e.def(), leaves).unwrap();
    assert_eq!(rebuilt, e);
    let scaled: Everything<f32> = e.clone().map(|x| x as f32 * 2.0);
    assert_eq!(scaled.blocks["enc"].b, 12.0);
    assert_eq!(scaled.depth, 3);

    // Skipped fields are part of the structure: another depth is another structure.
    let mut other = e.clone();
    other.depth = 4;
    assert_ne!(other.def(), e.def());
    let err = tree_zip_map(&e, &other, |a, b| a + b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "static data differs: expected [3], found [4] in the second tree"
    );
    // None against Some names the field.
    let mut some_tail = e.clone();
    some_tail.tail = Some(0.5);
    let err = tree_zip_map(&e, &some_tail, |a, b| a + b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tail: expected None, found Some(..) in the second tree"
    );
}

#[test]
fn tuple_unit_and_two_parameter_structs() {
    let p = Pair(1.0, Layer { w: 2.0, b: 3.0 });
    assert_eq!(paths(&p), ["0", "1.w", "1.b"]);
    let q: Pair<f32> = p.clone().map(|x| x as f32);
    assert_eq!(q.1.b, 3.0);

    let n: Nothing<f64> = Nothing {
        tag: 1,
        marker: std::marker::PhantomData,
        _t: std::marker::PhantomData,
        empty: vec![],
    };
    assert_eq!(n.num_leaves(), 0);
    let m: Nothing<f32> = n.clone().map(|x| x as f32);
    assert_eq!(m.tag, 1);

    let t = TwoParams {
        v: 1.5,
        extra: "x".to_string(),
    };
    let u: TwoParams<f32, String> = t.map(|x| x as f32);
    assert_eq!((u.v, u.extra.as_str()), (1.5, "x"));
}

#[test]
fn rebuilding_from_another_structure_names_the_path() {
    let two = mlp(2);
    let three = mlp(3);
    // Three layers' leaves rebuilt as a Layer: the kinds differ at the root.
    let err = tree_unflatten::<f64, Layer<f64>>(&two.def(), vec![0.0; 6]).unwrap_err();
    assert_eq!(err.to_string(), "expected a Layer, found a Mlp");
    // A Vec of another length, in either direction.
    let err = tree_zip_map(&three, &two, |a, b| a + b).unwrap_err();
    assert_eq!(err.to_string(), "layers[2]: missing in the second tree");
    let err = tree_zip_map(&two, &three, |a, b| a + b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layers[2]: unexpected (not in the expected tree) in the second tree"
    );
    // Too few leaves, too many leaves.
    let err = tree_unflatten::<f64, Mlp<f64>>(&two.def(), vec![0.0; 5]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layers[1].b: missing (fewer leaves than the structure has)"
    );
    let err = tree_unflatten::<f64, Mlp<f64>>(&two.def(), vec![0.0; 7]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 leaves left over after rebuilding the tree"
    );
    // As a ferrax error.
    let e: ferrax::Error = err.into();
    assert_eq!(e.kind, ErrorKind::Structure);
}

#[test]
fn the_leaf_parameter_may_be_a_tree() {
    // A Layer of Layers (a Hessian block's shape) is a tree of f64 leaves.
    let h = Layer {
        w: Layer { w: 1.0, b: 2.0 },
        b: Layer { w: 3.0, b: 4.0 },
    };
    assert_eq!(paths(&h), ["w.w", "w.b", "b.w", "b.b"]);
    let m: Layer<Layer<f32>> = h.clone().map(|x| x as f32);
    assert_eq!(m.b.w, 3.0);
    let back: Layer<Layer<f64>> = tree_unflatten(&h.def(), vec![5.0, 6.0, 7.0, 8.0]).unwrap();
    assert_eq!(back.w.b, 6.0);
}

#[derive(Tree, Clone, Debug, PartialEq)]
struct WithConst<T, const N: usize> {
    blocks: [T; N],
    #[tree(skip)]
    label: &'static str,
}

#[test]
fn const_parameters() {
    let w: WithConst<f64, 3> = WithConst {
        blocks: [1.0, 2.0, 3.0],
        label: "blocks",
    };
    assert_eq!(paths(&w), ["blocks[0]", "blocks[1]", "blocks[2]"]);
    let m: WithConst<f32, 3> = w.map(|x| x as f32);
    assert_eq!((m.blocks[2], m.label), (3.0, "blocks"));
}

#[test]
fn zip_maps_reduce_and_norm() {
    use ferrax::tree::{global_norm, tree_reduce, tree_zip_map3, tree_zip_map_n};
    let a = mlp(2);
    let b = a.clone().map(|x| 2.0 * x);
    let c = a.clone().map(|x| 3.0 * x);
    let s: Mlp<f64> = tree_zip_map3(&a, &b, &c, |x, y, z| x + y + z).unwrap();
    assert_eq!(s, a.clone().map(|x| 6.0 * x));
    let n: Mlp<f64> = tree_zip_map_n(&[&a, &b, &c], |xs| xs.iter().copied().sum()).unwrap();
    assert_eq!(n, s);
    let e = tree_zip_map3(&a, &b, &mlp(1), |x, _, _| *x).unwrap_err();
    assert_eq!(e.to_string(), "layers[1]: missing in the third tree");
    assert!(tree_zip_map_n::<f64, f64, Mlp<f64>>(&[], |_| 0.0).is_err());
    let total = tree_reduce(&a, 0.0, |acc, x| acc + x);
    assert_eq!(total, 1.0 + 2.0 + 10.0 + 11.0 + 20.0 + 21.0);
    let norm = global_norm(&a);
    let want = a.leaves().iter().map(|x| *x * *x).sum::<f64>().sqrt();
    assert_eq!(norm, want);
    let arrays: Mlp<Array> = a.clone().map(Array::from);
    assert_eq!(global_norm(&arrays), want);
}
