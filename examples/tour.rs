//! The tour: a few screens that walk a new user through ferrax — tracing, the IR, grad,
//! jvp/vjp, Jacobians, nesting, vmap, jit and timing.

use ferrax::prelude::*;
use std::time::Instant;

fn main() -> ferrax::Result<()> {
    println!("== 1. Tracing: a Rust closure becomes a typed SSA graph ==");
    let f = function(|x: Tensor, y: Tensor, z: Tensor| x.sin() * y.exp() / z.ln());
    println!("{}", f.ir());
    let v: f64 = f.call((1.0, 2.0, 3.0))?;
    println!("f(1, 2, 3) = {v}");

    println!("\n== 2. grad: an IR-to-IR rewrite ==");
    let df = grad(&f).wrt((0, 1, 2));
    println!("{}", df.ir());
    let (dx, dy, dz): (f64, f64, f64) = df.call((1.0, 2.0, 3.0))?;
    println!("grad f(1, 2, 3) = [{dx}, {dy}, {dz}]");

    println!("\n== 3. jvp and vjp ==");
    let (y, t): (f64, f64) = jvp(|x: Tensor| x.tanh()).call((0.5, 1.0))?;
    println!("jvp tanh at 0.5: value = {y}, tangent = {t}");
    let (z, cx, cy): (f64, f64, f64) = vjp(|x: Tensor, y: Tensor| x * y).call((2.0, 3.0, 1.0))?;
    println!("vjp of x*y at (2, 3): value = {z}, cotangents = ({cx}, {cy})");

    println!("\n== 4. Jacobians and Hessians ==");
    let j = jacfwd(|x: Tensor| x.clone() * x.clone() * x);
    let jm: Array = j.call(Array::from(vec![1.0, 2.0, 3.0]))?;
    println!("jacfwd of x^3 at [1, 2, 3] = {jm}");
    let h = hessian(|x: Tensor| (x.clone() * x).sum_all());
    let hm: Array = h.call(Array::from(vec![1.0, 2.0]))?;
    println!("hessian of sum(x^2) = {hm}");

    println!("\n== 5. Nesting to any order ==");
    let t0 = Instant::now();
    let mut d = grad(|x: Tensor| x.tanh()).function();
    for k in 1..=8 {
        if k > 1 {
            d = grad(&d).function();
        }
        let val: f64 = d.call(0.5)?;
        println!("d{k} tanh(0.5) = {val:<22}  ({} equations)", d.num_eqns()?);
    }
    println!(
        "trace + transform + evaluate, orders 1..8: {:?}",
        t0.elapsed()
    );

    println!("\n== 6. vmap: per-example gradients as one batched graph ==");
    let loss = |w: Tensor, x: Tensor| (w.clone() * x).sin().sum_all();
    let per_example = vmap(grad(loss)).in_axes(&[None, Some(0)]);
    let w = Array::from(vec![0.5, -1.0, 2.0]);
    let xs = Array::from_f64([4, 3], (0..12).map(|i| i as f64 / 10.0).collect())?;
    let g: Array = per_example.call((w, xs))?;
    println!("per-example gradients, shape {:?}:\n{g}", g.dims());

    println!("\n== 7. jit: native code with Cranelift ==");
    // `jit` is lazy: the first `compiled()` (or call) specialises the gradient to the
    // argument types and compiles it; later calls with the same types reuse the code.
    let t0 = Instant::now();
    let fast = jit(&df)?;
    let compiled = fast.compiled()?;
    println!("specialise + compile on first use: {:?}", t0.elapsed());
    let native = compiled.as_fn3_n::<f64, 3>()?;
    let g = native.call_multi(1.0, 2.0, 3.0);
    println!("jit grad f(1, 2, 3) = {g:?}");
    let n = 1_000_000;
    let t0 = Instant::now();
    let mut acc = 0.0;
    for i in 0..n {
        acc += native.call_multi(1.0 + i as f64 * 1e-9, 2.0, 3.0)[0];
    }
    let per_call = t0.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!("{per_call:.1} ns per call of the compiled gradient (checksum {acc:.3})");

    Ok(())
}
