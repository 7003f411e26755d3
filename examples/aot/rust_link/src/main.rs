//! Calls the exported seed gradient and Rosenbrock Hessian through the generated binding's
//! safe wrappers, and prints the results with 17 significant digits for the example to
//! compare with the JIT's.

mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo.rs"));
}

fn main() -> Result<(), demo::AotError> {
    let mut g = [0.0f64; 3];
    let (g0, rest) = g.split_at_mut(1);
    let (g1, g2) = rest.split_at_mut(1);
    demo::seed_grad::call(&[1.0], &[2.0], &[3.0], g0, g1, g2)?;
    println!("grad {:.17e} {:.17e} {:.17e}", g[0], g[1], g[2]);

    let n = demo::rosen_hessian::INPUT_LENS[0];
    let xs: Vec<f64> = (0..n)
        .map(|i| -1.2 + 2.4 * i as f64 / (n - 1) as f64)
        .collect();
    let mut h = vec![0.0; demo::rosen_hessian::OUTPUT_LENS[0]];
    demo::rosen_hessian::call(&xs, &mut h)?;
    let text: Vec<String> = h.iter().map(|v| format!("{v:.17e}")).collect();
    println!("hessian {}", text.join(" "));

    // A slice of the wrong length is an error, not a call.
    let short = demo::rosen_hessian::call(&xs[1..], &mut h);
    println!(
        "short input: {}",
        short.map_or_else(|e| e.to_string(), |()| "accepted".into())
    );
    Ok(())
}
