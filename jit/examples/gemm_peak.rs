//! Measures `matrixmultiply::sgemm`'s rate for P5's GEMM shapes, on one thread and with rows
//! split over the rayon pool as the JIT does: the practical GEMM peak P5 is compared against.
//! Run with `cargo run --release -p ferrax-jit --example gemm_peak`.

use std::time::Instant;

/// One GEMM shape with the operand strides of its use in P5.
struct Case {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// Whether `A` is stored transposed (`k×m` row-major).
    at: bool,
    /// Whether `B` is stored transposed (`n×k` row-major).
    bt: bool,
}

fn sgemm(c: &Case, a: &[f32], b: &[f32], out: &mut [f32], rows: std::ops::Range<usize>) {
    let (rsa, csa) = if c.at {
        (1, c.m as isize)
    } else {
        (c.k as isize, 1)
    };
    let (rsb, csb) = if c.bt {
        (1, c.k as isize)
    } else {
        (c.n as isize, 1)
    };
    // SAFETY: the buffers hold every addressed element; `rows` is within `0..m`.
    unsafe {
        matrixmultiply::sgemm(
            rows.len(),
            c.k,
            c.n,
            1.0,
            a.as_ptr().offset(rows.start as isize * rsa),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            out.as_mut_ptr().add(rows.start * c.n),
            c.n as isize,
            1,
        )
    }
}

fn median_s(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[reps / 2]
}

fn main() {
    let cases = [
        Case {
            name: "X·W1      256x784x256",
            m: 256,
            k: 784,
            n: 256,
            at: false,
            bt: false,
        },
        Case {
            name: "dZ1ᵀ·X    256x256x784",
            m: 256,
            k: 256,
            n: 784,
            at: true,
            bt: false,
        },
        Case {
            name: "Xᵀ·dZ1    784x256x256",
            m: 784,
            k: 256,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "dZ2·W2ᵀ   256x10x256 ",
            m: 256,
            k: 10,
            n: 256,
            at: false,
            bt: true,
        },
        Case {
            name: "Hᵀ·dZ2    256x256x10 ",
            m: 256,
            k: 256,
            n: 10,
            at: true,
            bt: false,
        },
    ];
    for c in &cases {
        let a: Vec<f32> = (0..c.m * c.k).map(|i| (i % 17) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..c.k * c.n).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0.0f32; c.m * c.n];
        let flop = 2.0 * (c.m * c.k * c.n) as f64;
        let one = median_s(51, || sgemm(c, &a, &b, &mut out, 0..c.m));
        let half = c.m.div_ceil(2).div_ceil(8) * 8;
        let two = median_s(51, || {
            let (lo, hi) = out.split_at_mut(half * c.n);
            let (a, b) = (&a, &b);
            rayon::join(
                || sgemm(c, a, b, lo, 0..half),
                || {
                    // `hi` holds rows half..m; pass the full buffer offset by hand.
                    let ptr = hi.as_mut_ptr();
                    let full =
                        unsafe { std::slice::from_raw_parts_mut(ptr.sub(half * c.n), c.m * c.n) };
                    sgemm(c, a, b, full, half..c.m)
                },
            );
        });
        println!(
            "{}: 1 thread {:7.1} µs {:6.1} GFLOP/s | 2 threads {:7.1} µs {:6.1} GFLOP/s",
            c.name,
            one * 1e6,
            flop / one / 1e9,
            two * 1e6,
            flop / two / 1e9
        );
    }
}
