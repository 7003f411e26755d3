//! Graphs whose JIT code calls ferrax's Rust helpers export too, needing nothing from ferrax at
//! run time: `erf`, `logistic` and the inverse hyperbolic functions (emitted into the object),
//! convolutions and window ops with their gradients (loop nests), reverse-mode `while_loop`s
//! (tapes grown with `realloc`), and a CNN-style train step's gradient. The objects import
//! C library functions only, for the host and for AArch64; linked with `cc` (when present; the
//! test says so and skips that part otherwise), their results equal the interpreter's bit for
//! bit and the JIT's (in precise math) bit for bit where the JIT runs the same loops, within
//! 1e-12 relative (1e-5 in f32) where its convolution kernel sums in another order.

use ferrax_aot::{Export, Exporter, Target};
use ferrax_ir::control_api::while_loop;
use ferrax_ir::ops::Window;
use ferrax_ir::{function, Array, ConvParams, DType, Function, IntoFunction, Tensor, Type};
use ferrax_jit::{jit_with, JitOptions, MathMode};
use ferrax_transforms::api::grad;
use object::{Object, ObjectSymbol};
use std::process::Command;

mod support;
use support::{available, bits, case_driver, link_and_run, output_bits, scratch};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// An f64 array of `dims` filled by [`values`].
fn arr(dims: &[usize], seed: u64) -> Array {
    Array::from_f64(dims, values(dims.iter().product(), seed)).unwrap()
}

/// Arguments of `erf` covering the series, the continued fraction, the constant tail, signed
/// zeros, infinities and NaN.
fn erf_points() -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        1e-300,
        -1e-8,
        0.3,
        -1.0,
        2.4999,
        2.5,
        -3.7,
        5.9999,
        6.0,
        -27.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    v.extend(values(17, 5).iter().map(|x| 7.0 * x));
    v
}

/// Arguments of the inverse hyperbolic functions, inside and outside their domains.
fn hyperbolic_points() -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        1e-310,
        1e-9,
        -0.5,
        0.999,
        -0.999,
        1.0,
        -1.0,
        1.5,
        2.0,
        7.0,
        3e5,
        5e8,
        -1e300,
        1e308,
        1.0000001,
        -0.9999999999,
    ];
    v.extend(values(11, 9).iter().map(|x| 4.0 * x));
    v
}

/// The reverse-mode `while_loop`: Newton's iteration for √x run 40 times on a vector, its
/// tape holding every iterate.
fn newton_sqrt(x: Tensor) -> Tensor {
    let r = while_loop(
        |c| c[0].lt(40.0),
        |c| {
            let y = &c[1];
            vec![&c[0] + 1.0, (y.clone() + &c[2] / y) * 0.5, c[2].clone()]
        },
        &[Tensor::scalar(0.0), x.clone(), x],
    );
    (r[1].clone() * r[1].sin()).sum_all()
}

/// A CNN-style loss: convolution, bias, ReLU, max pooling, average pooling, a dense layer and
/// a logistic output against targets.
fn cnn_loss(x: Tensor, k: Tensor, b: Tensor, w: Tensor, y: Tensor) -> Tensor {
    let h = (x.conv2d(&k, (1, 1), "SAME") + b.reshape(&[1, 3, 1, 1])).relu();
    let p = h.max_pool(&[2, 2], &[2, 2], "VALID");
    let q = p.avg_pool(&[2, 2], &[1, 1], "SAME");
    let z = q.reshape(&[2, 3 * 4 * 4]).matmul(&w).sigmoid();
    (z - y).square().sum_all()
}

/// A conv net's loss (strided SAME convolution, then a dilated VALID one).
fn conv_net(x: Tensor, w1: Tensor, w2: Tensor) -> Tensor {
    let h = x.conv2d(&w1, (2, 2), "SAME").relu();
    let p = ConvParams::new().padding("VALID").rhs_dilation(&[2, 1]);
    h.conv_general_dilated(&w2, &p).sum_all()
}

/// Convolutions of unusual geometry: feature groups (depthwise), cropping (negative) padding
/// with input and kernel dilation and strides, an NHWC/HWIO layout, in f64 and f32.
fn odd_convs(x: Tensor, k: Tensor, d: Tensor) -> (Tensor, Tensor, Tensor) {
    let depthwise = ConvParams::new()
        .feature_groups(4)
        .padding(vec![(1, 2), (0, 1)])
        .strides(&[2, 1]);
    let cropped = ConvParams::new()
        .padding(vec![(-1, 2), (3, -2)])
        .lhs_dilation(&[2, 1])
        .rhs_dilation(&[1, 2])
        .strides(&[1, 3]);
    let nhwc = ConvParams::new()
        .layouts("NHWC", "HWIO", "NHWC")
        .padding("SAME");
    let a = x.conv_general_dilated(&d, &depthwise);
    let b = x.conv_general_dilated(&k, &cropped);
    let xt = x.transpose(&[0, 2, 3, 1]);
    let kt = k.transpose(&[2, 3, 1, 0]).astype(DType::F32);
    let c = xt.astype(DType::F32).conv_general_dilated(&kt, &nhwc);
    (a, b, c)
}

/// The sum of [`odd_convs`]' outputs weighted elementwise by their sines: its gradient holds
/// batch-grouped and input-dilated convolutions.
fn odd_convs_loss(x: Tensor, k: Tensor, d: Tensor) -> Tensor {
    let (a, b, c) = odd_convs(x, k, d);
    (&a * a.sin()).sum_all() + (&b * b.cos()).sum_all() + c.astype(DType::F64).square().sum_all()
}

/// Integer windows with padding, strides and both dilations, and a float one likewise.
fn odd_windows(i: Tensor, x: Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
    let w = Window::new(&[2, 3])
        .with_strides(&[2, 1])
        .with_padding(&[(1, 2), (3, 0)])
        .with_base_dilation(&[2, 1])
        .with_window_dilation(&[1, 2]);
    (
        i.reduce_window_sum(&w),
        i.reduce_window_max(&w),
        i.reduce_window_min(&w),
        x.reduce_window_max(&w),
    )
}

/// The cases: name, function, inputs, and `None` when the JIT's result equals the
/// interpreter's bit for bit, else the relative tolerance (of the output's largest element) of
/// the JIT's result, whose convolution kernel sums in another order (the f64 output of a graph
/// with f32 convolutions inherits their rounding).
fn cases() -> Vec<(&'static str, Function, Vec<Array>, Option<f64>)> {
    let erf = Array::from(erf_points());
    let erf32 = Array::from_f32(
        [erf_points().len()],
        erf_points().iter().map(|&x| x as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let hyp = Array::from(hyperbolic_points());
    let hyp32 = Array::from_f32(
        [hyperbolic_points().len()],
        hyperbolic_points()
            .iter()
            .map(|&x| x as f32)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut logistic_points = erf_points();
    logistic_points.extend([-800.0, 800.0, 40.0, -40.0]);
    // Pooling input with ties (values on a coarse grid) and signed zeros.
    let mut pool_in: Vec<f64> = values(2 * 3 * 7 * 6, 21)
        .iter()
        .map(|x| (x * 3.0).round() * 0.5)
        .collect();
    pool_in[3] = -0.0;
    pool_in[4] = 0.0;
    let pool_in = Array::from_f64([2, 3, 7, 6], pool_in).unwrap();
    vec![
        ("erf64", function(|x: Tensor| x.erf()), vec![erf], None),
        ("erf32", function(|x: Tensor| x.erf()), vec![erf32], None),
        (
            "logistic",
            function(|x: Tensor| (x.sigmoid(), x.astype(DType::F32).sigmoid())),
            vec![Array::from(logistic_points)],
            None,
        ),
        (
            "inv_hyperbolic64",
            function(|x: Tensor| (x.asinh(), x.acosh(), x.atanh())),
            vec![hyp],
            None,
        ),
        (
            "inv_hyperbolic32",
            function(|x: Tensor| (x.asinh(), x.acosh(), x.atanh())),
            vec![hyp32],
            None,
        ),
        (
            "conv_net",
            function(conv_net),
            vec![
                arr(&[2, 3, 9, 8], 1),
                arr(&[4, 3, 3, 3], 2),
                arr(&[2, 4, 2, 2], 3),
            ],
            Some(1e-12),
        ),
        (
            "conv_net_grad",
            grad(conv_net).wrt((0, 1, 2)).into_function(),
            vec![
                arr(&[2, 3, 9, 8], 1),
                arr(&[4, 3, 3, 3], 2),
                arr(&[2, 4, 2, 2], 3),
            ],
            Some(1e-12),
        ),
        (
            "pools",
            function(|x: Tensor| {
                (
                    x.max_pool(&[3, 2], &[2, 2], "SAME"),
                    x.avg_pool(&[2, 3], &[1, 2], "VALID"),
                    x.reduce_window_min(&Window::new(&[1, 2, 2, 1])),
                )
            }),
            vec![pool_in.clone()],
            None,
        ),
        (
            "pool_grad",
            grad(|x: Tensor, c: Tensor| {
                (x.max_pool(&[3, 2], &[2, 2], "SAME") * c).sum_all()
                    + x.avg_pool(&[2, 2], &[1, 1], "SAME").square().sum_all()
                    - x.reduce_window_min(&Window::new(&[1, 1, 3, 3])).sum_all()
            })
            .wrt((0, 1))
            .into_function(),
            vec![pool_in.clone(), arr(&[2, 3, 4, 3], 22)],
            None,
        ),
        (
            "odd_convs",
            function(odd_convs),
            vec![
                arr(&[2, 4, 7, 6], 41),
                arr(&[3, 4, 3, 2], 42),
                arr(&[8, 1, 2, 3], 43),
            ],
            Some(1e-12),
        ),
        (
            "odd_convs_grad",
            grad(odd_convs_loss).wrt((0, 1, 2)).into_function(),
            vec![
                arr(&[2, 4, 7, 6], 41),
                arr(&[3, 4, 3, 2], 42),
                arr(&[8, 1, 2, 3], 43),
            ],
            Some(1e-5),
        ),
        (
            "odd_windows",
            function(odd_windows),
            vec![
                Array::from_i32(
                    [5, 6],
                    values(30, 51)
                        .iter()
                        .map(|v| (v * 1e9) as i32)
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
                arr(&[5, 6], 52),
            ],
            None,
        ),
        (
            "pool_jvp",
            ferrax_transforms::api::jvp(|x: Tensor| {
                x.max_pool(&[2, 3], &[1, 2], "SAME")
                    + x.reduce_window_min(&Window::new(&[1, 1, 2, 2])).sum_all()
            }),
            vec![pool_in.clone(), arr(&[2, 3, 7, 6], 23)],
            None,
        ),
        (
            "while_grad",
            grad(newton_sqrt).into_function(),
            vec![Array::from(vec![0.5, 2.0, 9.0, 1e-3, 123.0])],
            None,
        ),
        (
            "while_grad_scalar",
            grad(newton_sqrt).into_function(),
            vec![Array::from(2.0)],
            None,
        ),
        (
            "cnn_step",
            grad(cnn_loss).wrt((1, 2, 3)).into_function(),
            vec![
                arr(&[2, 2, 8, 8], 31),
                arr(&[3, 2, 3, 3], 32),
                arr(&[3], 33),
                arr(&[48, 5], 34),
                arr(&[2, 5], 35),
            ],
            Some(1e-12),
        ),
    ]
}

/// Exports every case for `target`.
fn export(target: Target) -> Export {
    let mut ex = Exporter::new("rt", target).expect("an exporter");
    for (name, f, args, _) in cases() {
        let types: Vec<Type> = args.iter().map(Array::ty).collect();
        ex.add(name, &f, &types)
            .unwrap_or_else(|e| panic!("{name} does not export: {e}"));
    }
    ex.finish().expect("the object builds")
}

/// The C library functions these objects may import.
const LIBC: &[&str] = &[
    "exp",
    "expf",
    "log",
    "logf",
    "log1p",
    "log1pf",
    "hypot",
    "hypotf",
    "sin",
    "sinf",
    "cos",
    "cosf",
    "sincos",
    "sincosf",
    "pow",
    "powf",
    "realloc",
    "free",
    "memcpy",
    "memset",
    "memmove",
    "fma",
    "fmaf",
    "ceil",
    "ceilf",
    "floor",
    "floorf",
    "trunc",
    "truncf",
    "nearbyint",
    "nearbyintf",
    "round",
    "roundf",
    "tanh",
    "tanhf",
];

/// The undefined symbols of an object, checked to be C library functions; returns them.
fn check_imports(ex: &Export) -> Vec<String> {
    let file = object::File::parse(ex.object()).expect("an ELF object");
    let mut imports = Vec::new();
    let mut defined = Vec::new();
    for sym in file.symbols() {
        let name = sym.name().expect("a UTF-8 symbol name").to_string();
        if sym.is_undefined() {
            if !name.is_empty() {
                assert!(
                    !name.starts_with("ferrax_") && LIBC.contains(&name.as_str()),
                    "the {} object imports `{name}`, which is not a C library function",
                    ex.triple()
                );
                imports.push(name);
            }
        } else if sym.is_global() {
            defined.push(name);
        }
    }
    defined.sort();
    let mut want: Vec<String> = cases().iter().map(|c| c.0.to_string()).collect();
    want.sort();
    assert_eq!(defined, want, "the exported (global) symbols");
    imports.sort();
    imports
}

#[test]
fn formerly_refused_ops_export_importing_only_the_c_library() {
    let host = export(Target::Host);
    let imports = check_imports(&host);
    // The object carries its own erf, logistic and inverse hyperbolic functions and grows
    // tapes with realloc.
    for want in ["realloc", "free", "hypot", "log1p", "exp"] {
        assert!(imports.iter().any(|i| i == want), "{want} in {imports:?}");
    }
    let header = host.header();
    let doc = &header[header.find("/* while_grad").expect("while_grad's comment")..];
    let doc = &doc[..doc.find("*/").unwrap()];
    assert!(
        doc.contains("FERRAX_AOT_TAPE_ALLOC"),
        "the taped while can fail (allocation): {doc}"
    );
    assert!(header.contains("#define FERRAX_AOT_TAPE_ALLOC 2"));
    let arm = export(Target::triple("aarch64-unknown-linux-gnu"));
    let file = object::File::parse(arm.object()).expect("an ELF object");
    assert_eq!(file.architecture(), object::Architecture::Aarch64);
    check_imports(&arm);
    let which = Command::new("qemu-aarch64").arg("--version").output();
    if which.is_err() {
        eprintln!("qemu-aarch64 is not available: the AArch64 object is checked, not run");
    }
}

/// The value of bit pattern `b` of an element of `dtype`, as f64.
fn value(dtype: DType, b: u64) -> f64 {
    match dtype {
        DType::F64 => f64::from_bits(b),
        DType::F32 => f32::from_bits(b as u32) as f64,
        DType::I32 => b as u32 as i32 as f64,
        DType::Bool => b as f64,
    }
}

/// Whether two bit patterns are the same value (NaNs of any payload alike).
fn same(dtype: DType, a: u64, b: u64) -> bool {
    a == b || (value(dtype, a).is_nan() && value(dtype, b).is_nan())
}

/// A C program calling every case on its inputs (as bit patterns) and printing each output's
/// bits in hex, one line per output: `name k bits...`.
fn driver() -> String {
    case_driver("rt.h", cases().into_iter().map(|(n, f, a, _)| (n, f, a)))
}

#[test]
fn linked_object_equals_the_interpreter_and_the_jit() {
    if !available("cc") {
        eprintln!("cc is not available: skipping the link test (exporting needs no C compiler)");
        return;
    }
    let ex = export(Target::Host);
    let dir = scratch("runtime-link");
    let written = ex.write_to(&dir).expect("write the files");
    let out = link_and_run(
        &dir,
        &driver(),
        &written.object,
        &["-std=c11", "-O1", "-Wall", "-Werror"],
    );
    let precise = JitOptions {
        math: MathMode::Precise,
        ..JitOptions::default()
    };
    let mut checked = 0;
    for (name, f, args, tolerance) in cases() {
        let interp = f.call_arrays(&args).unwrap();
        let jit = jit_with(&f, precise).unwrap().call_arrays(&args).unwrap();
        for (k, (want, j)) in interp.iter().zip(&jit).enumerate() {
            let tag = format!("{name} {k}");
            let got = output_bits(&out, &tag);
            let dt = want.dtype();
            let (w, jb) = (bits(want), bits(j));
            assert_eq!(got.len(), w.len(), "{tag}: element count");
            for (i, ((&g, &w), &jv)) in got.iter().zip(&w).zip(&jb).enumerate() {
                assert!(
                    same(dt, g, w),
                    "{tag}[{i}]: the object gives {} where the interpreter gives {}",
                    value(dt, g),
                    value(dt, w)
                );
                if let Some(tol) = tolerance {
                    let (g, jv) = (value(dt, g), value(dt, jv));
                    // An f32 output rounds its sums in f32.
                    let rel = if dt == DType::F32 { tol.max(1e-5) } else { tol };
                    let scale = jit_scale(j);
                    assert!(
                        (g - jv).abs() <= rel * scale,
                        "{tag}[{i}]: the object gives {g}, the JIT {jv}"
                    );
                } else {
                    assert!(
                        same(dt, g, jv),
                        "{tag}[{i}]: the object gives {} where the JIT gives {}",
                        value(dt, g),
                        value(dt, jv)
                    );
                }
            }
            checked += w.len();
        }
    }
    assert!(checked > 1000, "only {checked} elements compared");
}

/// The largest magnitude among an output's elements (at least 1), the scale of the
/// tolerance against the JIT's convolution kernel.
fn jit_scale(a: &Array) -> f64 {
    a.to_f64_vec().iter().fold(1.0f64, |m, x| m.max(x.abs()))
}

/// A C program whose `realloc` fails on demand (the object's references are redirected with
/// the linker's `--wrap`): the taped `while_loop` returns `FERRAX_AOT_TAPE_ALLOC` when its
/// first or a later allocation fails, frees the tape it had, and succeeds again afterwards.
const FAILING_REALLOC: &str = r#"#include "rt.h"
#include <stdio.h>
#include <stdlib.h>

void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
static int fail_at = -1, grows = 0, frees = 0;

void *__wrap_realloc(void *p, size_t n) {
  if (fail_at >= 0 && grows++ >= fail_at) return NULL;
  return __real_realloc(p, n);
}

void __wrap_free(void *p) {
  if (p) frees++;
  __real_free(p);
}

int main(void) {
  double in0[WHILE_GRAD_IN0_LEN] = {0.5, 2.0, 9.0, 1e-3, 123.0};
  double out0[WHILE_GRAD_OUT0_LEN];
  void *ws = aligned_alloc(16, (WHILE_GRAD_WORKSPACE_BYTES + 15) / 16 * 16 + 16);
  if (!ws) return 3;
  int ok = while_grad(in0, out0, ws);
  int ok_frees = frees;
  fail_at = 0; grows = 0; frees = 0;
  int first = while_grad(in0, out0, ws);
  int first_frees = frees;
  fail_at = 2; grows = 0; frees = 0;
  int later = while_grad(in0, out0, ws);
  int later_frees = frees;
  fail_at = -1; frees = 0;
  int again = while_grad(in0, out0, ws);
  printf("%d %d %d %d %d %d %d %d\n", ok, ok_frees, first, first_frees, later, later_frees,
         again, frees);
  free(ws);
  return 0;
}
"#;

#[test]
fn a_failed_tape_allocation_is_the_entrys_status() {
    if !available("cc") {
        eprintln!("cc is not available: skipping the allocation-failure test");
        return;
    }
    let ex = export(Target::Host);
    let dir = scratch("runtime-realloc");
    let written = ex.write_to(&dir).expect("write the files");
    let flags = [
        "-std=c11",
        "-O1",
        "-Wall",
        "-Werror",
        "-Wl,--wrap=realloc,--wrap=free",
    ];
    let out = link_and_run(&dir, FAILING_REALLOC, &written.object, &flags);
    let v: Vec<i32> = out.split_whitespace().map(|t| t.parse().unwrap()).collect();
    // Statuses 0 / 2 (FERRAX_AOT_TAPE_ALLOC) / 2 / 0; every successful call frees its one
    // tape, a call failing at the first allocation has none to free, one failing later frees
    // the tape it had.
    assert_eq!(
        v,
        [0, 1, 2, 0, 2, 1, 0, 1],
        "ok, frees, first, frees, later, frees, again, frees"
    );
}
