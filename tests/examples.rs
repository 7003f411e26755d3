//! The examples' key numbers, asserted. Each example is compiled in as a module, so these
//! tests check the very functions the examples print from (their `main`s and plots are not
//! run here).

// Every example includes the shared helpers, so they are compiled once per example here.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/seed_scalar.rs"]
mod seed_scalar;

#[allow(dead_code)]
#[path = "../examples/higher_order.rs"]
mod higher_order;

#[allow(dead_code)]
#[path = "../examples/jacobian_hessian.rs"]
mod jacobian_hessian;

#[allow(dead_code)]
#[path = "../examples/gradient_descent.rs"]
mod gradient_descent;

#[allow(dead_code)]
#[path = "../examples/linear_regression.rs"]
mod linear_regression;

#[allow(dead_code)]
#[path = "../examples/mlp.rs"]
mod mlp;

#[allow(dead_code)]
#[path = "../examples/trees.rs"]
mod trees;

#[path = "../examples/common/mod.rs"]
mod common;

/// Asserts `got` is within `rel` relative error of `want`.
#[track_caller]
fn assert_close(got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
    assert!(
        err <= rel,
        "got {got}, want {want} (relative error {err:e} > {rel:e})"
    );
}

#[test]
fn seed_scalar_values_and_gradients() {
    let seeds = seed_scalar::seeds();
    let results: Vec<(f64, Vec<f64>)> = seeds
        .iter()
        .map(|s| seed_scalar::value_and_gradient(&s.f, &s.point).unwrap())
        .collect();
    assert_eq!(results[0], (9.0, vec![6.0]));
    assert_eq!(results[1], (5.0, vec![6.0, -4.0]));
    // The reference digits come from JAX, whose sin, exp and log are not glibc's: ferrax's
    // interpreter agrees with them to a few units in the last place.
    let (f3, g3) = &results[2];
    assert_close(*f3, 5.659572877985826, 1e-15);
    let want = [3.6339699542969074, 5.659572877985825, -1.7171884131653474];
    for (g, w) in g3.iter().zip(want) {
        assert_close(*g, w, 1e-15);
    }
}

#[test]
fn seed_scalar_graph_labels_hold_values_and_adjoints() {
    let seeds = seed_scalar::seeds();
    let ex3 = &seeds[2];
    let g = ex3.f.graph().unwrap();
    let labels = seed_scalar::node_labels(&g, &ex3.point).unwrap();
    // The inputs' adjoints are the gradient; the output's adjoint is 1.
    let (_, grads) = seed_scalar::value_and_gradient(&ex3.f, &ex3.point).unwrap();
    for (p, d) in g.params().iter().zip(&grads) {
        assert!(
            labels[p].ends_with(&format!("grad = {}", common::num(*d))),
            "{}",
            labels[p]
        );
    }
    let out = &labels[&g.outputs()[0]];
    assert!(
        out.starts_with("value = 5.65957287798582") && out.ends_with("grad = 1"),
        "{out}"
    );
    // The log node's adjoint is -sin(1)·e²/ln(3)².
    let want = -(1f64.sin() * 2f64.exp()) / 3f64.ln().powi(2);
    let log_node = g
        .insts()
        .find(|(_, i)| i.op.name() == "log")
        .unwrap()
        .1
        .results[0];
    let text = &labels[&log_node];
    let got: f64 = text.rsplit("grad = ").next().unwrap().parse().unwrap();
    assert_close(got, want, 1e-14);
    let dot = g.to_dot_with(&|v| labels.get(&v).cloned());
    assert!(dot.contains("grad = 1\""), "{dot}");
}

#[test]
fn higher_order_derivatives_of_sin() {
    let c = higher_order::curves().unwrap();
    assert_eq!(c.xs.len(), 1000);
    assert!(higher_order::max_err(&c.xs, &c.d1, f64::cos) <= 1e-12);
    assert!(higher_order::max_err(&c.xs, &c.d2, |x| -x.sin()) <= 1e-12);
}

#[test]
fn jacobian_and_hessian() {
    let (fwd, rev) = jacobian_hessian::jacobians().unwrap();
    assert_eq!(common::matrix_text(&fwd, 2), "[[2, 1], [2, 1]]");
    assert_eq!(rev, fwd);
    let h = jacobian_hessian::hessian_at().unwrap();
    assert_eq!(common::matrix_text(&h, 2), "[[2, 2], [2, 2]]");
}

#[test]
fn gradient_descent_final_point() {
    let path = gradient_descent::descend(0.0, 0.0, 0.1, 50).unwrap();
    assert_eq!(path.len(), 51);
    let last = path[50];
    let want = [
        1.9999714550461458,
        0.9999999999919171,
        8.148143905339296e-10,
    ];
    for (g, w) in last.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12, "got {last:?}, want {want:?}");
    }
}

#[test]
fn linear_regression_after_100_epochs() {
    let (xs, ys) = linear_regression::data().unwrap();
    assert_eq!((xs.len(), ys.len()), (100, 100));
    let mut t = linear_regression::Trainer::new().unwrap();
    for _ in 0..100 {
        t.epoch().unwrap();
    }
    assert_close(t.w as f64, 2.0327768, 1e-4);
    assert_close(t.b as f64, 0.7027012, 1e-4);
}

#[test]
fn mlp_learns_the_spirals() {
    let trained = mlp::train(mlp::Config::quick(), &mut |_, _| {}).unwrap();
    assert!(
        trained.accuracy >= 0.95,
        "train accuracy {}",
        trained.accuracy
    );
    let first = trained.losses[0];
    let last = trained.losses[trained.losses.len() - 1];
    assert!(last < 0.25 * first, "loss went from {first} to {last}");
    // The optimizer ran inside the compiled step: its state counted every step and kept the
    // rate, and its moments have the parameters' shapes.
    let s = &trained.state;
    assert_eq!(
        s.count.to_scalar().unwrap(),
        mlp::Config::quick().steps as f64
    );
    assert_eq!(
        s.learning_rate.to_scalar().unwrap(),
        mlp::Config::quick().rate
    );
    assert_eq!(s.mu.w1.shape(), trained.params.w1.shape());
    assert!(s.nu.w2.to_f64_vec().iter().all(|v| *v > 0.0));
    assert!(trained.step_us > 0.0 && trained.step_us.is_finite());
    assert!(trained.first_step_ms > 0.0 && trained.first_step_ms.is_finite());
}

#[test]
fn numbers_print_in_shortest_form() {
    assert_eq!(common::num(9.0), "9");
    assert_eq!(common::num(-4.0), "-4");
    assert_eq!(common::num(8.148143905339296e-10), "8.148143905339296e-10");
    assert_eq!(common::num32(2.0327768), "2.0327768");
    assert_eq!(common::vec_text(&[1.5, 2.0]), "[1.5, 2]");
}

#[test]
fn contour_lines_lie_on_the_level_set() {
    let xs = common::linspace(-2.0, 2.0, 41);
    let (px, py) = common::Grid::points(&xs, &xs);
    let z = px.iter().zip(&py).map(|(x, y)| x * x + y * y).collect();
    let grid = common::Grid {
        xs: xs.clone(),
        ys: xs,
        z,
    };
    let segments = grid.contour(1.0);
    assert!(segments.len() > 20);
    for (x, y) in segments.iter().flatten() {
        assert!(
            (x.hypot(*y) - 1.0).abs() < 0.01,
            "({x}, {y}) is off the unit circle"
        );
    }
}

#[test]
fn digits_load_with_every_class_and_split_disjointly() {
    let d = common::digits::load().expect("the shipped file parses");
    assert_eq!(d.len(), 1797);
    assert_eq!(d.images.len(), 1797 * common::digits::PIXELS);
    let mut counts = [0usize; common::digits::CLASSES];
    for &l in &d.labels {
        counts[l as usize] += 1;
    }
    // scikit-learn's counts per digit.
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(d.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // The first image is a zero; its first row is 0 0 5 13 9 1 0 0 (in sixteenths).
    assert_eq!(d.labels[0], 0);
    assert_eq!(&d.image(0)[..4], &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]);
    let (train, test) = d.split(360, 1);
    assert_eq!((train.len(), test.len()), (1437, 360));
    let mut all: Vec<&[f32]> = train
        .images
        .chunks(64)
        .chain(test.images.chunks(64))
        .collect();
    let before = all.len();
    all.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    all.dedup();
    // Some images repeat in the data set, so compare counts of distinct images instead.
    let mut orig: Vec<&[f32]> = d.images.chunks(64).collect();
    orig.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    orig.dedup();
    assert_eq!(before, 1797);
    assert_eq!(all.len(), orig.len());
}

#[test]
fn trees_training_per_example_gradients_and_jvp() {
    let t = trees::train(&[1, 8, 8, 1], 150, 0.1).unwrap();
    assert_eq!(t.params.layers.len(), 3);
    assert_eq!(t.params.name, "mlp");
    assert!(
        t.last_loss < 0.5 * t.first_loss,
        "{} {}",
        t.first_loss,
        t.last_loss
    );
    let (worst, shape) = trees::per_example_check(&t.params).unwrap();
    assert_eq!(shape, [16, 1, 8]);
    assert!(worst < 1e-12, "{worst}");
    let (jvp, dot) = trees::jvp_check(&t.params).unwrap();
    assert_close(jvp, dot, 1e-10);
}

#[allow(dead_code)]
#[path = "../examples/taylor.rs"]
mod taylor;

#[test]
fn taylor_jet_matches_the_closed_form_and_nested_grad() {
    // The closed form itself: tanh' = 1 − tanh², tanh'' = −2 tanh (1 − tanh²).
    let y = 0.5f64.tanh();
    assert_close(taylor::tanh_closed_form(1, 0.5), 1.0 - y * y, 1e-15);
    assert_close(
        taylor::tanh_closed_form(2, 0.5),
        -2.0 * y * (1.0 - y * y),
        1e-15,
    );
    for k in 1..=20 {
        let (v, n) = taylor::jet_tanh(k).unwrap();
        assert_close(v, taylor::tanh_closed_form(k, 0.5), 1e-12);
        if k == 20 {
            assert!(n <= 450, "jet of order 20 has {n} equations");
        }
    }
    for k in 1..=6 {
        let (v, _) = taylor::nested_tanh(k).unwrap();
        assert_close(v, taylor::tanh_closed_form(k, 0.5), 1e-12);
    }
    for (f, x) in [(taylor::exp_sin as fn(_) -> _, 0.3), (taylor::mlp, 0.4)] {
        let (worst, nj, nn) = taylor::compare(f, x, 6).unwrap();
        assert!(worst <= 1e-10, "jet against nested grad: {worst:e}");
        assert!(nj < nn, "jet graph {nj} against nested {nn}");
    }
}

#[allow(dead_code)]
#[path = "../examples/taylor_ode.rs"]
mod taylor_ode;

#[test]
fn taylor_ode_follows_the_kepler_orbit() {
    let run = taylor_ode::taylor(2).unwrap();
    // After two periods the exact solution is the initial state again.
    let err = taylor_ode::final_error(&run);
    assert!(err < 1e-11, "final error {err:e}");
    let worst = run.energy.iter().fold(0.0f64, |m, &(_, e)| m.max(e));
    assert!(worst < 1e-13, "energy error {worst:e}");
    assert!(run.max_momentum_error < 1e-13);
    // RK4 with as many steps as the Taylor method takes (each far cheaper) is far off.
    let rk = taylor_ode::rk4(2, run.steps).unwrap();
    assert!(taylor_ode::final_error(&rk) > 1e3 * err.max(1e-15));
    assert!(taylor_ode::series_equations().unwrap() < 4000);
}

#[allow(dead_code)]
#[path = "../examples/cnn.rs"]
mod cnn;

#[test]
fn cnn_learns_the_digits() {
    let t = cnn::train(cnn::Config::quick(), &mut |_, _| {}).unwrap();
    assert!(t.test_accuracy >= 0.95, "test accuracy {}", t.test_accuracy);
    let first = t.losses[..5].iter().sum::<f64>() / 5.0;
    let last = t.losses[t.losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.2 * first, "loss {first} -> {last}");
    // Every test image is counted once in the confusion matrix.
    let total: usize = t.confusion.iter().flatten().sum();
    assert_eq!(total, t.test.len());
    assert_eq!(t.params.k2.dims(), &[32, 16, 3, 3]);
}

#[allow(dead_code)]
#[path = "../examples/sparse_hessian.rs"]
mod sparse_hessian;

#[test]
fn sparse_hessian_matches_the_closed_form_and_the_dense_hessian() {
    let n = 200;
    let x = sparse_hessian::point(n);
    let h = ferrax::hessian_sparse(sparse_hessian::rosenbrock).unwrap();
    let s = h.call(ferrax::Array::from(x.clone())).unwrap();
    assert_eq!((s.nnz(), s.colours), (3 * n - 2, 3));
    assert!(sparse_hessian::closed_form_error(&s, &x).unwrap() <= 1e-12);
    assert!(sparse_hessian::dense_error(&s, &x).unwrap() <= 1e-9);
    // The closed form itself: a wrong value is caught.
    let mut wrong = s.clone();
    wrong.values[4] += 1e-3;
    assert!(sparse_hessian::closed_form_error(&wrong, &x).unwrap() > 1e-8);
}

#[allow(dead_code)]
#[path = "../examples/sparse_jacobian.rs"]
mod sparse_jacobian;

#[test]
fn sparse_jacobian_newton_converges_on_the_brusselator() {
    let n = 6;
    let x0 = sparse_jacobian::initial(n);
    let x = ferrax::Array::from_f64(vec![2, n, n], x0.clone()).unwrap();
    let j = ferrax::jacobian_sparse(sparse_jacobian::brusselator).unwrap();
    let s = j.call(x.clone()).unwrap();
    assert_eq!(s.nnz(), 12 * n * n);
    assert!(sparse_jacobian::dense_error(&s, &x).unwrap() <= 1e-9);
    let f = ferrax::jit(sparse_jacobian::brusselator).unwrap();
    let (y, history) = sparse_jacobian::implicit_euler_step(&f, &j, n, &x0, 1e-3).unwrap();
    assert!(history.len() <= 5, "{history:?}");
    assert!(*history.last().unwrap() <= 1e-9, "{history:?}");
    // The step moved the state.
    assert!(y.iter().zip(&x0).any(|(a, b)| (a - b).abs() > 1e-6));
}
