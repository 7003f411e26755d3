//! Interleaved A/B timing of the two GEMM kernels ferrax can call, `matrixmultiply` and
//! `gemm` (single-threaded, as every part of a split product is called), on the shapes of the
//! 784-256-10 train step, anchor P5 and the spirals step, in f32 and f64.
//!
//! Run with `cargo run --release -p ferrax-jit --example gemm_kernels`; the figures it prints
//! are the best of 14 rounds, each round timing the two kernels back to back, and the
//! median over rounds of the ratio of the two, so that a neighbour's load falls on both alike.

use std::time::Instant;

/// One product `C (m×n) = A (m×k) · B (k×n)` with the operands' strides.
struct Case {
    /// The label printed with the figures.
    name: &'static str,
    /// Rows of `C`.
    m: usize,
    /// The contracted dimension.
    k: usize,
    /// Columns of `C`.
    n: usize,
    /// Whether `A` is stored transposed (column-major).
    at: bool,
    /// Whether `B` is stored transposed (column-major).
    bt: bool,
}

/// The strides (row, column) of an `r×c` matrix stored row-major, or column-major when `t`.
fn strides(r: usize, c: usize, t: bool) -> (isize, isize) {
    if t {
        (1, r as isize)
    } else {
        (c as isize, 1)
    }
}

/// A scalar type both kernels support.
trait Elem: Copy + Default + From<u8> {
    /// `matrixmultiply`'s kernel for this type.
    ///
    /// # Safety
    /// The pointers and strides address matrices of the given sizes.
    unsafe fn mm(c: &Case, a: *const Self, b: *const Self, out: *mut Self);
    /// `gemm`'s kernel for this type.
    ///
    /// # Safety
    /// As for [`Elem::mm`].
    unsafe fn gm(c: &Case, a: *const Self, b: *const Self, out: *mut Self);
}

macro_rules! elem {
    ($t:ty, $mm:path, $gm:path) => {
        impl Elem for $t {
            unsafe fn mm(c: &Case, a: *const $t, b: *const $t, out: *mut $t) {
                let (rsa, csa) = strides(c.m, c.k, c.at);
                let (rsb, csb) = strides(c.k, c.n, c.bt);
                unsafe {
                    $mm(
                        c.m,
                        c.k,
                        c.n,
                        1.0,
                        a,
                        rsa,
                        csa,
                        b,
                        rsb,
                        csb,
                        0.0,
                        out,
                        c.n as isize,
                        1,
                    )
                }
            }
            unsafe fn gm(c: &Case, a: *const $t, b: *const $t, out: *mut $t) {
                let (rsa, csa) = strides(c.m, c.k, c.at);
                let (rsb, csb) = strides(c.k, c.n, c.bt);
                let f = $gm();
                unsafe {
                    f(
                        c.m,
                        c.n,
                        c.k,
                        out,
                        1,
                        c.n as isize,
                        false,
                        a,
                        csa,
                        rsa,
                        b,
                        csb,
                        rsb,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm_common_parallelism(),
                    )
                }
            }
        }
    };
}

/// `gemm`'s single-threaded mode, as every part of a split product is run.
fn gemm_common_parallelism() -> gemm_common::Parallelism {
    gemm_common::Parallelism::None
}

elem!(f32, matrixmultiply::sgemm, gemm_f32::gemm::f32::get_gemm_fn);
elem!(f64, matrixmultiply::dgemm, gemm_f64::gemm::f64::get_gemm_fn);

/// Times `reps` calls of `f`, in nanoseconds per call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_nanos() as f64 / reps as f64
}

/// Medians of interleaved rounds of both kernels on one case, printed with the rate.
fn run<T: Elem>(c: &Case, label: &str) {
    let a: Vec<T> = (0..c.m * c.k).map(|i| T::from((i % 7) as u8)).collect();
    let b: Vec<T> = (0..c.k * c.n).map(|i| T::from((i % 5) as u8)).collect();
    let mut o1 = vec![T::default(); c.m * c.n];
    let mut o2 = vec![T::default(); c.m * c.n];
    let flops = (c.m * c.k * c.n) as f64;
    let reps = ((1e8 / flops.max(1.0)) as usize).clamp(3, 200_000);
    let (mut tm, mut tg) = (Vec::new(), Vec::new());
    for round in 0..15 {
        let (x, y) = (
            time(reps, || unsafe {
                T::mm(c, a.as_ptr(), b.as_ptr(), o1.as_mut_ptr())
            }),
            time(reps, || unsafe {
                T::gm(c, a.as_ptr(), b.as_ptr(), o2.as_mut_ptr())
            }),
        );
        if round > 0 {
            tm.push(x);
            tg.push(y);
        }
    }
    // The ratio is taken round by round (both kernels timed under the same load), then its
    // median; the times are the best rounds, the kernels' rate when undisturbed.
    let mut ratio: Vec<f64> = tg.iter().zip(&tm).map(|(g, m)| g / m).collect();
    ratio.sort_by(f64::total_cmp);
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (m, g) = (best(&tm), best(&tg));
    println!(
        "{label} {:<34} mm {:>9.1} us ({:>5.1} GF/s)  gemm {:>9.1} us ({:>5.1} GF/s)  gemm/mm {:.2}",
        c.name,
        m / 1e3,
        2.0 * flops / m,
        g / 1e3,
        2.0 * flops / g,
        ratio[ratio.len() / 2]
    );
}

/// `matrixmultiply`'s product of `c` restricted to rows `r0..r0 + rows` and columns
/// `c0..c0 + cols`, as one part of a split product.
///
/// # Safety
/// As for [`Elem::mm`].
unsafe fn part(c: &Case, a: *const f32, b: *const f32, out: *mut f32, blk: [usize; 4]) {
    let [r0, rows, c0, cols] = blk;
    let (rsa, csa) = strides(c.m, c.k, c.at);
    let (rsb, csb) = strides(c.k, c.n, c.bt);
    let a = a.wrapping_offset(r0 as isize * rsa);
    let b = b.wrapping_offset(c0 as isize * csb);
    let out = out.wrapping_add(r0 * c.n + c0);
    unsafe {
        matrixmultiply::sgemm(
            rows,
            c.k,
            cols,
            1.0,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            0.0,
            out,
            c.n as isize,
            1,
        )
    }
}

/// Interleaved timing of the ways to cut one f32 product: one call, two row halves or two
/// column halves, each either in sequence on one thread or on two threads (`rayon::join`).
fn splits(c: &Case) {
    let a: Vec<f32> = (0..c.m * c.k).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..c.k * c.n).map(|i| (i % 5) as f32).collect();
    let mut o = vec![0f32; c.m * c.n];
    let (pa, pb, po) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        o.as_mut_ptr() as usize,
    );
    let (hm, hn) = (c.m / 2 / 16 * 16, c.n / 2 / 16 * 16);
    let rows = [[0, hm, 0, c.n], [hm, c.m - hm, 0, c.n]];
    let cols = [[0, c.m, 0, hn], [0, c.m, hn, c.n - hn]];
    let go = |blk: [usize; 4]| unsafe {
        part(c, pa as *const f32, pb as *const f32, po as *mut f32, blk)
    };
    let flops = (c.m * c.k * c.n) as f64;
    let reps = ((1e8 / flops) as usize).clamp(3, 100_000);
    let names = [
        "one call",
        "rows seq",
        "cols seq",
        "rows 2 thr",
        "cols 2 thr",
    ];
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..15 {
        let f: [&dyn Fn(); 5] = [
            &|| go([0, c.m, 0, c.n]),
            &|| rows.iter().for_each(|&r| go(r)),
            &|| cols.iter().for_each(|&r| go(r)),
            &|| {
                rayon::join(|| go(rows[0]), || go(rows[1]));
            },
            &|| {
                rayon::join(|| go(cols[0]), || go(cols[1]));
            },
        ];
        for (i, f) in f.iter().enumerate() {
            let x = time(reps, f);
            if round > 0 {
                t[i].push(x);
            }
        }
    }
    print!("split {:<34}", c.name);
    for (n, mut v) in names.iter().zip(t) {
        v.sort_by(f64::total_cmp);
        print!(" {n} {:>7.0} us", v[v.len() / 2] / 1e3);
    }
    println!();
}

fn main() {
    let cases = [
        Case {
            name: "P5 X.W1 256x784x256",
            m: 256,
            k: 784,
            n: 256,
            at: false,
            bt: false,
        },
        Case {
            name: "P5 X.W1 half cols 256x784x128",
            m: 256,
            k: 784,
            n: 128,
            at: false,
            bt: false,
        },
        Case {
            name: "P5 X^T.dH 784x256x256",
            m: 784,
            k: 256,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "P5 X^T.dH half rows 392x256x256",
            m: 392,
            k: 256,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "step X.W1 128x784x256",
            m: 128,
            k: 784,
            n: 256,
            at: false,
            bt: false,
        },
        Case {
            name: "step X.W1, X col-major 128x784x256",
            m: 128,
            k: 784,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "P5 X.W1 half rows, X col-major 128x784x256",
            m: 128,
            k: 784,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "step X.W1 half cols 128x784x128",
            m: 128,
            k: 784,
            n: 128,
            at: false,
            bt: false,
        },
        Case {
            name: "step X^T.dH 784x128x256",
            m: 784,
            k: 128,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "step X^T.dH half rows 392x128x256",
            m: 392,
            k: 128,
            n: 256,
            at: true,
            bt: false,
        },
        Case {
            name: "step X^T.dH half cols 784x128x128",
            m: 784,
            k: 128,
            n: 128,
            at: true,
            bt: false,
        },
        Case {
            name: "H.W2 128x256x10",
            m: 128,
            k: 256,
            n: 10,
            at: false,
            bt: false,
        },
        Case {
            name: "H^T.dO 256x128x10",
            m: 256,
            k: 128,
            n: 10,
            at: true,
            bt: false,
        },
        Case {
            name: "dO.W2^T 128x10x256",
            m: 128,
            k: 10,
            n: 256,
            at: false,
            bt: true,
        },
        Case {
            name: "spirals 200x2x32",
            m: 200,
            k: 2,
            n: 32,
            at: false,
            bt: false,
        },
        Case {
            name: "spirals 200x32x32",
            m: 200,
            k: 32,
            n: 32,
            at: false,
            bt: false,
        },
        Case {
            name: "spirals 32x200x32 (A^T)",
            m: 32,
            k: 200,
            n: 32,
            at: true,
            bt: false,
        },
        Case {
            name: "square 64",
            m: 64,
            k: 64,
            n: 64,
            at: false,
            bt: false,
        },
        Case {
            name: "square 96",
            m: 96,
            k: 96,
            n: 96,
            at: false,
            bt: false,
        },
        Case {
            name: "square 128",
            m: 128,
            k: 128,
            n: 128,
            at: false,
            bt: false,
        },
        Case {
            name: "square 512",
            m: 512,
            k: 512,
            n: 512,
            at: false,
            bt: false,
        },
    ];
    let only = std::env::args().nth(1);
    if only.as_deref() == Some("split") {
        for c in cases.iter().filter(|c| c.m * c.k * c.n >= 1 << 21) {
            splits(c);
        }
        return;
    }
    for c in &cases {
        if only.as_deref().is_some_and(|o| !c.name.contains(o)) {
            continue;
        }
        run::<f32>(c, "f32");
        run::<f64>(c, "f64");
    }
}
