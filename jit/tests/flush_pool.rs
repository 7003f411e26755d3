//! The thread pool created during a call compiled with `JitOptions::flush_subnormals` does not
//! inherit the flushing mode (new threads start with their creator's floating-point control
//! word): the user's own work on the pool keeps gradual underflow. This file holds one test,
//! so that the call below is the first use of the pool in its process.

use ferrax_ir::{Array, DType, Tensor};
use ferrax_jit::{jit_with, JitOptions};
use rayon::prelude::*;
use std::hint::black_box;

#[test]
fn a_pool_created_while_flushing_keeps_gradual_underflow() {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return;
    }
    let opts = JitOptions {
        flush_subnormals: true,
        ..JitOptions::default()
    };
    // Large enough to be split across the pool's threads, which this call creates.
    let f = jit_with(|x: Tensor| x * 0.5, opts).unwrap();
    let x = Array::full(DType::F64, [1 << 20], f64::MIN_POSITIVE).unwrap();
    let y = f.call_arrays(&[x]).unwrap();
    assert!(y[0].to_f64_vec().iter().all(|&v| v == 0.0));
    // Work of the user's own on every pool thread.
    let halves: Vec<f64> = (0..4 * rayon::current_num_threads())
        .into_par_iter()
        .map(|_| black_box(f64::MIN_POSITIVE) * black_box(0.5))
        .collect();
    assert!(halves.iter().all(|&v| v > 0.0), "{halves:?}");
}
