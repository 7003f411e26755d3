//! The convolution methods through the `ferrax` facade: a small conv net's gradient
//! (conv → relu → conv → sum) against central differences in f64 and random directions, the
//! same gradient jitted, `vmap` of a convolution against a loop, and misuse reported at the
//! caller's line.

use ferrax::prelude::*;
use ferrax::ErrorKind;

fn arr(dims: &[usize], seed: u64) -> Array {
    let mut s = seed;
    let v: Vec<f64> = (0..dims.iter().product::<usize>())
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Array::from_f64(dims, v).unwrap()
}

fn net(x: Tensor, w1: Tensor, w2: Tensor) -> Tensor {
    let h = x.conv2d(&w1, (2, 2), "SAME").relu();
    let p = ConvParams::new().padding("VALID").rhs_dilation(&[2, 1]);
    h.conv_general_dilated(&w2, &p).sum_all()
}

fn axpy(x: &Array, h: f64, t: &Array) -> Array {
    let v: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .zip(t.to_f64_vec())
        .map(|(a, b)| a + h * b)
        .collect();
    Array::from_f64(x.shape().clone(), v).unwrap()
}

fn dot(a: &Array, b: &Array) -> f64 {
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| x * y)
        .sum()
}

#[test]
fn grad_of_a_conv_net_matches_central_differences_and_the_jit() {
    let x = [
        arr(&[2, 3, 9, 8], 1),
        arr(&[4, 3, 3, 3], 2),
        arr(&[2, 4, 2, 2], 3),
    ];
    let g = grad(net).wrt((0, 1, 2));
    let gs = g.call_arrays(&x).unwrap();
    let f = function(net);
    for seed in 10..13 {
        let t = [
            arr(&[2, 3, 9, 8], seed),
            arr(&[4, 3, 3, 3], seed + 100),
            arr(&[2, 4, 2, 2], seed + 200),
        ];
        let at = |h: f64| -> f64 {
            let a: Vec<Array> = x.iter().zip(&t).map(|(a, d)| axpy(a, h, d)).collect();
            f.call_arrays(&a).unwrap()[0].to_scalar().unwrap()
        };
        let h = 1e-6;
        let fd = (at(h) - at(-h)) / (2.0 * h);
        let gd: f64 = gs.iter().zip(&t).map(|(a, b)| dot(a, b)).sum();
        assert!((fd - gd).abs() <= 1e-6 * (1.0 + fd.abs()), "{fd} vs {gd}");
    }
    let jg = jit(grad(net).wrt((0, 1, 2))).unwrap();
    let js = jg.call_arrays(&x).unwrap();
    for (a, b) in js.iter().zip(&gs) {
        for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "jit {p} vs {q}");
        }
    }
}

#[test]
fn vmap_of_conv1d_matches_a_loop() {
    let f = |x: Tensor, w: Tensor| x.conv1d(&w, 1, "SAME");
    let xs = arr(&[5, 2, 3, 7], 4); // 5 members of [2, 3, 7]
    let w = arr(&[4, 3, 3], 5);
    let batched = vmap(f)
        .in_axes(&[Some(0), None])
        .call_arrays(&[xs.clone(), w.clone()])
        .unwrap();
    let per = function(f);
    let xv = xs.to_f64_vec();
    let yv = batched[0].to_f64_vec();
    let m = 2 * 3 * 7;
    let o = 2 * 4 * 7;
    for k in 0..5 {
        let xk = Array::from_f64(&[2usize, 3, 7][..], xv[k * m..(k + 1) * m].to_vec()).unwrap();
        let want = per.call_arrays(&[xk, w.clone()]).unwrap()[0].to_f64_vec();
        assert_eq!(&yv[k * o..(k + 1) * o], want.as_slice(), "member {k}");
    }
}

#[test]
fn misuse_is_an_error_at_the_callers_line() {
    let f = function(|x: Tensor, w: Tensor| x.conv2d(&w, (1, 1), "VALID"));
    // Kernel input features (2) do not match the input's (3).
    let e = f
        .call_arrays(&[arr(&[1, 3, 5, 5], 1), arr(&[4, 2, 3, 3], 2)])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.message.contains("conv_general_dilated"), "{}", e.message);
    assert!(e.to_string().contains("conv_api.rs"), "{e}");
    // A kernel larger than the input.
    let e = f
        .call_arrays(&[arr(&[1, 3, 2, 2], 1), arr(&[4, 3, 3, 3], 2)])
        .unwrap_err();
    assert!(e.message.contains("larger than"), "{}", e.message);
}
