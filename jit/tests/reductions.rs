//! Reductions fused into elementwise loops, products written transposed, and reshape views,
//! against the interpreter: bit for bit in Precise mode (sums in the interpreter's order),
//! within a tolerance in the default Auto mode (large sums may use vector accumulators).

mod common;

use common::{array, close, same_bits, Rng};
use ferrax_ir::{interp, Array, DType, Graph};
use ferrax_jit::{compile, JitOptions, MathMode};

fn opts(math: MathMode) -> JitOptions {
    JitOptions {
        math,
        ..JitOptions::default()
    }
}

/// Checks `text` on random inputs (with special values when `specials`): bit-exact in
/// Precise mode, within `tol` in Auto and Fast modes.
fn check_text(text: &str, specials: bool, tol: f64) {
    let g = Graph::parse(text).expect("parse");
    let mut rng = Rng(11);
    let args: Vec<Array> = g
        .params()
        .iter()
        .map(|&p| {
            let t = g.ty(p);
            array(&mut rng, t.dtype, t.dims(), -2.0, 2.0, specials)
        })
        .collect();
    let want = interp::eval(&g, &args).expect("interpreter");
    for math in [MathMode::Precise, MathMode::Auto, MathMode::Fast] {
        let f = compile(&g, &opts(math)).expect("compile");
        let got = f.call(&args).expect("call");
        let refs: Vec<&Array> = args.iter().collect();
        let mut outs: Vec<Array> = f
            .output_types()
            .iter()
            .map(|t| Array::full(t.dtype, t.shape.clone(), 3.0).unwrap())
            .collect();
        f.call_into(&refs, &mut outs).expect("call_into");
        for (k, ((w, g1), g2)) in want.iter().zip(&got).zip(&outs).enumerate() {
            for got in [g1, g2] {
                let ok = if math == MathMode::Precise {
                    same_bits(w, got)
                } else {
                    close(w, got, tol)
                };
                assert!(ok, "{math:?} output {k}\n{text}\ninterp: {w}\njit: {got}");
            }
        }
    }
}

#[test]
fn reductions_over_each_axis_match_the_interpreter() {
    for dtype in ["f32", "f64"] {
        for (dims, axes, out) in [
            ("[7,9]", "(0)", "[9]"),
            ("[7,9]", "(1)", "[7]"),
            ("[7,9]", "(0,1)", "[]"),
            ("[3,5,6]", "(1)", "[3,6]"),
            ("[3,5,6]", "(0,2)", "[5]"),
            ("[300,257]", "(0)", "[257]"),
            ("[300,257]", "(1)", "[300]"),
            ("[300,257]", "(0,1)", "[]"),
            ("[70000]", "(0)", "[]"),
        ] {
            for red in ["reduce_sum", "reduce_max", "reduce_min"] {
                let text = format!(
                    "{{ lambda v0:{dtype}{dims}, v1:{dtype}{dims} . let \
                     v2:{dtype}{dims} = mul v0 v1; v3:{dtype}{dims} = sin v2; \
                     v4:{dtype}{out} = {red}[axes={axes}] v3 in (v4) }}"
                );
                // Long f32 sums with cancellation: the interpreter's sequential order is
                // itself off by ~n·ε relative to Σ|x|, so orders differ by that much.
                let tol = if dtype == "f32" { 5e-3 } else { 1e-9 };
                check_text(&text, false, tol);
            }
        }
    }
}

#[test]
fn reductions_of_leaves_broadcasts_and_specials() {
    // A reduction of a parameter, of a broadcast, of an int tensor, and with NaN/inf inputs.
    check_text(
        "{ lambda v0:f64[4,1000] . let v1:f64[1000] = reduce_sum[axes=(0)] v0 in (v1) }",
        true,
        1e-12,
    );
    check_text(
        "{ lambda v0:f32[5] . let v1:f32[3,5] = broadcast_in_dim[shape=(3,5) dims=(1)] v0; \
         v2:f32[] = reduce_max[axes=(0,1)] v1 in (v2) }",
        true,
        1e-6,
    );
    check_text(
        "{ lambda v0:i32[6,7] . let v1:i32[6,7] = mul v0 v0; \
         v2:i32[7] = reduce_sum[axes=(0)] v1; v3:i32[6] = reduce_max[axes=(1)] v1 in (v2, v3) }",
        false,
        0.0,
    );
    check_text(
        "{ lambda v0:f64[9,33] . let v1:f64[9,33] = square v0; \
         v2:f64[9] = reduce_prod[axes=(1)] v1; v3:f64[33] = reduce_min[axes=(0)] v1 in (v2, v3) }",
        true,
        1e-12,
    );
    // Empty operands: the results are the reductions' identities.
    check_text(
        "{ lambda v0:f32[0,4] . let v1:f32[4] = reduce_sum[axes=(0)] v0; \
         v2:f32[] = reduce_max[axes=(0,1)] v0 in (v1, v2) }",
        false,
        0.0,
    );
}

#[test]
fn products_under_a_transpose_match_the_interpreter() {
    // GEMM-sized (swapped operands) and loop-sized (swapped output strides), contracting on
    // axis 0 and axis 1.
    for (m, k, n) in [(40, 30, 50), (3, 4, 5)] {
        for (lhs, lc, rhs, rc) in [
            (format!("[{k},{m}]"), 0, format!("[{k},{n}]"), 0),
            (format!("[{m},{k}]"), 1, format!("[{n},{k}]"), 1),
            (format!("[{m},{k}]"), 1, format!("[{k},{n}]"), 0),
        ] {
            let text = format!(
                "{{ lambda v0:f64{lhs}, v1:f64{rhs} . let \
                 v2:f64[{m},{n}] = dot_general[lhs_contract=({lc}) rhs_contract=({rc}) \
                 lhs_batch=() rhs_batch=()] v0 v1; \
                 v3:f64[{n},{m}] = transpose[perm=(1,0)] v2 in (v3) }}"
            );
            // GEMM sums in its own order: compare with a tolerance only.
            let g = Graph::parse(&text).expect("parse");
            let mut rng = Rng(5);
            let args: Vec<Array> = g
                .params()
                .iter()
                .map(|&p| array(&mut rng, DType::F64, g.ty(p).dims(), -1.0, 1.0, false))
                .collect();
            let want = interp::eval(&g, &args).expect("interpreter");
            let got = compile(&g, &JitOptions::default())
                .expect("compile")
                .call(&args)
                .expect("call");
            assert!(close(&want[0], &got[0], 1e-12), "{text}");
        }
    }
}

#[test]
fn reshape_views_match_the_interpreter() {
    // Chains of views, a view of a parameter, a view read after its operand's last direct
    // use, and a view that is an output (copied).
    check_text(
        "{ lambda v0:f32[4,6] . let v1:f32[24] = reshape[shape=(24)] v0; \
         v2:f32[2,12] = reshape[shape=(2,12)] v1; v3:f32[2,12] = exp v2; \
         v4:f32[4,6] = reshape[shape=(4,6)] v3; v5:f32[4,6] = add v4 v0; \
         v6:f32[24] = reshape[shape=(24)] v5; v7:f32[24] = mul v6 v6; \
         v8:f32[6,4] = reshape[shape=(6,4)] v7 in (v8, v6) }",
        true,
        1e-5,
    );
}

#[test]
fn mixed_dtype_groups_vectorise_compare_and_select() {
    // P4's pattern: i32 index comparisons (row and column broadcasts) choosing between float
    // broadcasts, plus float comparisons, logic and NaN operands; odd row lengths leave a
    // scalar tail.
    for (dt, n) in [("f64", 7), ("f32", 9), ("f64", 100)] {
        let text = format!(
            "{{ lambda v0:{dt}[{n}], v1:{dt}[{n},{n}], v2:i32[{n}] . let \
             v3:i32[{n},{n}] = broadcast_in_dim[shape=({n},{n}) dims=(0)] v2; \
             v4:i32[{n},{n}] = broadcast_in_dim[shape=({n},{n}) dims=(1)] v2; \
             v5:bool[{n},{n}] = eq v3 v4; v6:bool[{n},{n}] = lt v3 v4; \
             v7:{dt}[{n},{n}] = broadcast_in_dim[shape=({n},{n}) dims=(0)] v0; \
             v8:bool[{n},{n}] = ge v1 v7; v9:bool[{n},{n}] = and v6 v8; \
             v10:bool[{n},{n}] = not v9; v11:bool[{n},{n}] = or v5 v10; \
             v12:bool[{n},{n}] = ne v11 v6; \
             v13:{dt}[{n},{n}] = select v12 v7 v1; \
             v14:{dt}[{n},{n}] = select v5 v1 v13; \
             v15:{dt}[{n},{n}] = add v14 v7 in (v15) }}"
        );
        check_text(&text, true, 1e-12);
    }
}

#[test]
fn sibling_reductions_share_one_loop() {
    // P6's pattern: two sums over one operand shape (one of a value the other's operand also
    // uses), rank-0 and kept-axis results, a sibling whose result is used only after the
    // later reduction, and one whose result feeds the other (which cannot be a sibling).
    check_text(
        "{ lambda v0:f32[100,1], v1:f32[100,1] . let v2:f32[100,1] = sub v0 v1; \
         v3:f32[1] = reduce_sum[axes=(0)] v2; v4:f32[100,1] = mul v0 v2; \
         v5:f32[1] = reduce_sum[axes=(0)] v4; v6:f32[1] = add v3 v5 in (v6, v3) }",
        true,
        1e-5,
    );
    check_text(
        "{ lambda v0:f64[5,300] . let v1:f64[5,300] = exp v0; \
         v2:f64[5] = reduce_max[axes=(1)] v1; v3:f64[5,300] = mul v1 v0; \
         v4:f64[5] = reduce_sum[axes=(1)] v3; v5:f64[] = reduce_sum[axes=(0,1)] v0; \
         v6:f64[] = reduce_min[axes=(0,1)] v3 in (v2, v4, v5, v6) }",
        true,
        1e-9,
    );
    check_text(
        "{ lambda v0:f64[64,70] . let v1:f64[70] = reduce_sum[axes=(0)] v0; \
         v2:f64[64,70] = broadcast_in_dim[shape=(64,70) dims=(1)] v1; \
         v3:f64[64,70] = sub v0 v2; v4:f64[70] = reduce_sum[axes=(0)] v3; \
         v5:f64[64,70] = square v0; v6:f64[70] = reduce_sum[axes=(0)] v5 in (v4, v6) }",
        true,
        1e-9,
    );
}

#[test]
fn short_rows_match_the_interpreter() {
    // Rows of 1 to 9 elements (written out without loop counters when constant and short),
    // reduced along the row (each output from one row, whose accumulator starts from the
    // identity) and across rows (kept inner dimension), at ranks 1 to 3, with NaN and
    // infinities among the inputs, plus the softmax pattern of a two-class network: a row
    // maximum broadcast back, an exponential stored and summed along the row.
    for dtype in ["f32", "f64"] {
        for k in 1..=9 {
            for (dims, axes, out) in [
                (format!("[200,{k}]"), "(1)", "[200]".to_string()),
                (format!("[200,{k}]"), "(0)", format!("[{k}]")),
                (format!("[3,5,{k}]"), "(2)", "[3,5]".to_string()),
                (format!("[3,5,{k}]"), "(0,1)", format!("[{k}]")),
                (format!("[{k}]"), "(0)", "[]".to_string()),
                (format!("[1,{k}]"), "(1)", "[1]".to_string()),
            ] {
                for red in ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod"] {
                    let text = format!(
                        "{{ lambda v0:{dtype}{dims}, v1:{dtype}{dims} . let \
                         v2:{dtype}{dims} = mul v0 v1; v3:{dtype}{dims} = add v2 v0; \
                         v4:{dtype}{out} = {red}[axes={axes}] v3 in (v4) }}"
                    );
                    check_text(&text, true, 1e-5);
                }
            }
            let text = format!(
                "{{ lambda v0:{dtype}[200,{k}], v1:{dtype}[{k}] . let \
                 v2:{dtype}[200,{k}] = broadcast_in_dim[shape=(200,{k}) dims=(1)] v1; \
                 v3:{dtype}[200,{k}] = add v0 v2; \
                 v4:{dtype}[200] = reduce_max[axes=(1)] v3; \
                 v5:{dtype}[200,{k}] = broadcast_in_dim[shape=(200,{k}) dims=(0)] v4; \
                 v6:{dtype}[200,{k}] = sub v3 v5; v7:{dtype}[200,{k}] = exp v6; \
                 v8:{dtype}[200] = reduce_sum[axes=(1)] v7; \
                 v9:{dtype}[{k}] = reduce_sum[axes=(0)] v7 in (v8, v7, v9) }}"
            );
            check_text(&text, true, 1e-5);
        }
        // Empty rows (the results are the identities) and no rows.
        check_text(
            &format!(
                "{{ lambda v0:{dtype}[3,0], v1:{dtype}[0,2] . let \
                 v2:{dtype}[3] = reduce_sum[axes=(1)] v0; v3:{dtype}[3] = reduce_max[axes=(1)] v0; \
                 v4:{dtype}[0] = reduce_sum[axes=(1)] v1; v5:{dtype}[2] = reduce_min[axes=(0)] v1 \
                 in (v2, v3, v4, v5) }}"
            ),
            false,
            0.0,
        );
    }
    // i32 rows.
    check_text(
        "{ lambda v0:i32[50,3] . let v1:i32[50,3] = mul v0 v0; \
         v2:i32[50] = reduce_sum[axes=(1)] v1; v3:i32[50] = reduce_min[axes=(1)] v1; \
         v4:i32[3] = reduce_max[axes=(0)] v1 in (v2, v3, v4) }",
        false,
        0.0,
    );
}

#[test]
fn column_sums_in_registers_match_the_interpreter() {
    // Reductions across rows into a row of outputs run column block by column block with
    // their partial results in registers (`stats().column_reductions`): row counts below, at
    // and above a block of 64 rows, column counts covering whole blocks of four vectors,
    // single vectors and single columns, with NaN and infinities among the inputs, the
    // operand stored as an output (a dense layer's `(1 − t²)·g` and its bias gradient),
    // sibling reductions, a row broadcast down the rows and a scalar.
    let before = ferrax_jit::stats().column_reductions;
    for dtype in ["f32", "f64"] {
        for rows in [1, 2, 63, 64, 65, 130, 200] {
            for cols in [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 32, 33] {
                let m = format!("{dtype}[{rows},{cols}]");
                let r = format!("{dtype}[{cols}]");
                let text = format!(
                    "{{ lambda v0:{m}, v1:{m} . let v2:{m} = mul v0 v0; \
                     v3:{dtype}[] = const[1.0]; \
                     v4:{m} = broadcast_in_dim[shape=({rows},{cols}) dims=()] v3; \
                     v5:{m} = sub v4 v2; v6:{m} = mul v5 v1; \
                     v7:{r} = reduce_sum[axes=(0)] v6 in (v6, v7) }}"
                );
                check_text(&text, true, 1e-5);
            }
            let m = format!("{dtype}[{rows},9]");
            let r = format!("{dtype}[9]");
            let text = format!(
                "{{ lambda v0:{m}, v1:{r} . let \
                 v2:{m} = broadcast_in_dim[shape=({rows},9) dims=(1)] v1; \
                 v3:{m} = mul v0 v2; v4:{r} = reduce_sum[axes=(0)] v3; \
                 v5:{r} = reduce_max[axes=(0)] v3; v6:{r} = reduce_min[axes=(0)] v0; \
                 v7:{r} = reduce_prod[axes=(0)] v3 in (v4, v5, v6, v7) }}"
            );
            check_text(&text, true, 1e-5);
        }
    }
    assert!(ferrax_jit::stats().column_reductions > before);
}
