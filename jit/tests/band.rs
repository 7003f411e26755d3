//! Banded select chains (`select(eq(j, a·i + b), t, …)` around a default, the shape dense
//! Hessians of banded functions take) against the interpreter, bit for bit: diagonals inside
//! and outside the matrix, anti-diagonals, slopes above one, bands that coincide (the
//! outermost wins), rectangular shapes, band values read from full matrices, ±∞ and NaN in
//! every operand, and chains that are not banded (the elementwise path).

mod common;

use common::{array, check, Rng};
use ferrax_ir::{trace, DType, Graph, Tensor, Type};
use ferrax_jit::stats;

/// One band: the column `slope·i + offset` of row `i`, written as an index expression.
#[derive(Clone, Copy)]
struct BandSpec {
    slope: i32,
    offset: i32,
    /// Whether the band's value also reads the full matrix (not constant along the row).
    full: bool,
}

/// `slope·i + offset` from add, neg and constants (the forms the band analysis accepts).
fn column(i: &Tensor, slope: i32, offset: i32) -> Tensor {
    let mut c = Tensor::full_dtype(DType::I32, &i.shape(), offset as f64);
    for _ in 0..slope.unsigned_abs() {
        c = if slope > 0 { c + i } else { c - i };
    }
    c
}

/// `out[i, j]` = the first band whose column is `j` in row `i`, else `d[i]`; band `k`'s value
/// is `v[i]·(k + 1)` (plus `m[i, j]` for a `full` band). Parameters: `m` [rows, cols], `v` and
/// `d` [rows].
fn chain(dtype: DType, rows: usize, cols: usize, bands: &[BandSpec]) -> Graph {
    let bands = bands.to_vec();
    let f = move |xs: &[Tensor]| {
        let (m, v, d) = (&xs[0], &xs[1], &xs[2]);
        let shape = [rows, cols];
        let i = Tensor::iota(DType::I32, &shape, 0);
        let j = Tensor::iota(DType::I32, &shape, 1);
        let mut out = d.broadcast_in_dim(&shape, &[0]);
        for (k, b) in bands.iter().enumerate().rev() {
            let mut val = v.broadcast_in_dim(&shape, &[0]) * (k as f64 + 1.0);
            if b.full {
                val = val + m;
            }
            let cond = j.equal(column(&i, b.slope, b.offset));
            out = cond.select(&val, &out);
        }
        vec![out]
    };
    let types = [
        Type::new(dtype, &[rows, cols]),
        Type::new(dtype, &[rows]),
        Type::new(dtype, &[rows]),
    ];
    (*trace(f, &types).expect("trace").graph().expect("graph")).clone()
}

fn run(dtype: DType, rows: usize, cols: usize, bands: &[BandSpec], seed: u64) {
    let g = chain(dtype, rows, cols, bands);
    let mut rng = Rng(seed);
    for specials in [false, true] {
        let args = [
            array(&mut rng, dtype, &[rows, cols], -2.0, 2.0, specials),
            array(&mut rng, dtype, &[rows], -2.0, 2.0, specials),
            array(&mut rng, dtype, &[rows], -2.0, 2.0, specials),
        ];
        check(&g, &args);
    }
}

const fn band(slope: i32, offset: i32, full: bool) -> BandSpec {
    BandSpec {
        slope,
        offset,
        full,
    }
}

#[test]
fn tridiagonal_chains_match_the_interpreter_and_use_bands() {
    let before = stats().banded_groups;
    let tri = [band(1, 0, false), band(1, -1, false), band(1, 1, true)];
    for (dtype, n) in [
        (DType::F64, 100),
        (DType::F32, 37),
        (DType::F64, 1),
        (DType::F64, 2),
    ] {
        run(dtype, n, n, &tri, n as u64);
    }
    assert!(
        stats().banded_groups > before,
        "the tridiagonal chain was not lowered as bands"
    );
}

#[test]
fn diagonals_outside_the_matrix_write_nothing() {
    run(
        DType::F64,
        9,
        9,
        &[band(1, 50, false), band(1, -50, true)],
        1,
    );
    run(DType::F64, 9, 9, &[band(1, 8, false), band(1, -8, true)], 2);
}

#[test]
fn anti_diagonals_and_steep_slopes() {
    run(
        DType::F64,
        11,
        11,
        &[band(-1, 10, false), band(2, 0, true)],
        3,
    );
    run(
        DType::F32,
        8,
        20,
        &[band(2, 1, true), band(-2, 19, false)],
        4,
    );
}

#[test]
fn coinciding_bands_keep_the_outermost() {
    run(
        DType::F64,
        12,
        12,
        &[
            band(1, 0, false),
            band(1, 0, true),
            band(1, 1, false),
            band(1, 1, false),
        ],
        5,
    );
}

#[test]
fn rectangular_shapes() {
    run(DType::F64, 7, 13, &[band(1, 0, false), band(1, 3, true)], 6);
    run(
        DType::F64,
        13,
        7,
        &[band(1, 0, true), band(1, -3, false)],
        7,
    );
    // Rows too short for a vector, and a large matrix on the parallel path.
    run(DType::F64, 5, 1, &[band(1, 0, false)], 8);
    run(
        DType::F32,
        300,
        300,
        &[band(1, 0, false), band(1, 1, true)],
        9,
    );
}

#[test]
fn chains_that_are_not_banded_take_the_elementwise_path() {
    // `j + j == i` holds at no more than one column, but not with a unit coefficient on `j`.
    let f = |xs: &[Tensor]| {
        let shape = [6, 6];
        let i = Tensor::iota(DType::I32, &shape, 0);
        let j = Tensor::iota(DType::I32, &shape, 1);
        let c = (&j + &j).equal(&i);
        let inner = j.equal(&i).select(&xs[0], &xs[1]);
        vec![c.select(&xs[1], &inner)]
    };
    let t = Type::new(DType::F64, &[6, 6]);
    let g = (*trace(f, &[t.clone(), t])
        .expect("trace")
        .graph()
        .expect("graph"))
    .clone();
    let mut rng = Rng(10);
    let args = [
        array(&mut rng, DType::F64, &[6, 6], -1.0, 1.0, true),
        array(&mut rng, DType::F64, &[6, 6], -1.0, 1.0, true),
    ];
    check(&g, &args);
}

#[test]
fn dense_hessian_of_rosenbrock_is_bit_identical() {
    let rosen = |x: Tensor| {
        let n = x.shape()[0];
        let head = x.slice_axis(0, 0, n - 1);
        let tail = x.slice_axis(0, 1, n);
        (100.0 * (tail - head.square()).square() + (1.0 - head).square()).sum_all()
    };
    // The uncompressed Hessian is the band chain; the compressed one (the default from
    // n = 16) a scatter into zeros.
    let h = ferrax_transforms::api::hessian(rosen);
    for j in [h.uncompressed(), h] {
        for n in [2, 3, 100] {
            let g = j
                .specialize(&[Type::new(DType::F64, &[n])])
                .expect("hessian")
                .graph;
            let mut rng = Rng(n as u64);
            for specials in [false, true] {
                check(
                    &g,
                    &[array(&mut rng, DType::F64, &[n], -1.5, 1.5, specials)],
                );
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random chains: up to five bands with slopes in −2..=2 (0 gives a column, which is a
    /// band too) and offsets that may fall outside the matrix, random shapes and dtypes,
    /// with and without special values: always the interpreter's bits.
    #[test]
    fn random_band_chains_match_the_interpreter(
        rows in 1usize..12,
        cols in 1usize..12,
        f32_dtype in proptest::bool::ANY,
        specs in proptest::collection::vec((-2i32..=2, -14i32..=14, proptest::bool::ANY), 1..6),
        seed in 0u64..1000,
    ) {
        let bands: Vec<BandSpec> = specs
            .iter()
            .map(|&(slope, offset, full)| band(slope, offset, full))
            .collect();
        let dtype = if f32_dtype { DType::F32 } else { DType::F64 };
        run(dtype, rows, cols, &bands, seed);
    }
}
