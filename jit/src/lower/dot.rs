//! Lowering of `ferrax_ir::ops::DotGeneral`. When the free and contracting dimensions of the
//! operands each collapse to one strided dimension (a plain or transposed 2-D product, per
//! batch) and the product is large enough, each batch calls `matrixmultiply`'s GEMM through the
//! imported `ferrax_dgemm` / `ferrax_sgemm`; otherwise a loop nest accumulates in contraction
//! order, as the interpreter does.
//!
//! A product whose only user is `transpose[perm=(1,0)]` is written straight into the
//! transpose's buffer in transposed layout (see `crate::fuse`): the GEMM computes
//! `Cᵀ = Bᵀ·Aᵀ` by swapping the operands and their strides, so its output stays row-major,
//! and the loop nest stores through swapped output strides.

use super::{clty, strides, Access, Ctx, Slot};
use cranelift_codegen::ir::{types, InstBuilder};
use ferrax_ir::ops::DotGeneral;
use ferrax_ir::{DType, InstData, Result};
use smallvec::SmallVec;

/// Merges dimensions `(size, stride)` into one `(size, stride)` when they are contiguous
/// row-major runs of each other (size-1 dimensions are ignored).
fn merge(dims: &[(usize, i64)]) -> Option<(usize, i64)> {
    let d: SmallVec<[(usize, i64); 4]> = dims.iter().copied().filter(|&(n, _)| n != 1).collect();
    if d.is_empty() {
        return Some((1, 1));
    }
    for w in d.windows(2) {
        if w[0].1 != w[1].1 * w[1].0 as i64 {
            return None;
        }
    }
    let size = d.iter().map(|&(n, _)| n).product();
    Some((size, d[d.len() - 1].1))
}

/// Lowers the dot_general `inst` into the value `r`: its own result, or (`transposed`) the
/// result of the 2-D transpose that absorbs it, written in transposed layout.
pub(crate) fn lower_to(
    cx: &mut Ctx,
    op: &DotGeneral,
    inst: &InstData,
    r: ferrax_ir::Value,
    transposed: bool,
) -> Result<()> {
    let (a, b) = (inst.args[0], inst.args[1]);
    let aty = cx.graph.ty(a).clone();
    let bty = cx.graph.ty(b).clone();
    let rty = cx.graph.ty(inst.results[0]).clone();
    let dtype = aty.dtype;
    let (asd, bsd) = (strides(aty.dims()), strides(bty.dims()));
    let mut rs = strides(rty.dims());
    if transposed {
        // The dot's element [i, j] lives at [j, i] of the transpose's row-major buffer.
        rs = SmallVec::from_slice(&[1, rty.dims()[0] as i64]);
    }
    let lfree = op.lhs_free(aty.rank());
    let rfree = op.rhs_free(bty.rank());
    let nb = op.lhs_batch.len();
    cx.alloc_result(r)?;
    let zero = cx.iconst(0);

    // Try the GEMM route.
    let m = merge(
        &lfree
            .iter()
            .map(|&d| (aty.dims()[d], asd[d]))
            .collect::<Vec<_>>(),
    );
    let n = merge(
        &rfree
            .iter()
            .map(|&d| (bty.dims()[d], bsd[d]))
            .collect::<Vec<_>>(),
    );
    let pairs: Vec<(usize, usize)> = op
        .lhs_contract
        .iter()
        .zip(&op.rhs_contract)
        .map(|(&l, &r)| (l, r))
        .filter(|&(l, _)| aty.dims()[l] != 1)
        .collect();
    let ka = merge(
        &pairs
            .iter()
            .map(|&(l, _)| (aty.dims()[l], asd[l]))
            .collect::<Vec<_>>(),
    );
    let kb = merge(
        &pairs
            .iter()
            .map(|&(_, r)| (bty.dims()[r], bsd[r]))
            .collect::<Vec<_>>(),
    );
    let operands_in_memory =
        matches!(cx.slot(a)?, Slot::Mem(_)) && matches!(cx.slot(b)?, Slot::Mem(_));
    if let (true, Some((m, rsa)), Some((n, csb)), Some((k, csa)), Some((_, rsb))) = (
        dtype.is_float() && !rty.is_scalar() && operands_in_memory,
        m,
        n,
        ka,
        kb,
    ) {
        if m * n * k >= cx.opts.gemm_threshold.max(1) && m > 0 && n > 0 && k > 0 {
            let (Slot::Mem(pa), Slot::Mem(pb), Slot::Mem(pc)) =
                (cx.slot(a)?, cx.slot(b)?, cx.slot(r)?)
            else {
                return Err(super::jit_err("dot_general operands must be buffers"));
            };
            let bdims: SmallVec<[usize; 4]> = op.lhs_batch.iter().map(|&d| aty.dims()[d]).collect();
            let acc = [
                Access {
                    base: zero,
                    strides: op.lhs_batch.iter().map(|&d| asd[d]).collect(),
                },
                Access {
                    base: zero,
                    strides: op.rhs_batch.iter().map(|&d| bsd[d]).collect(),
                },
                Access {
                    base: zero,
                    strides: rs[..nb].iter().copied().collect(),
                },
            ];
            let name = if dtype == DType::F64 {
                "ferrax_dgemm"
            } else {
                "ferrax_sgemm"
            };
            let p = types::I64;
            return cx.nest(&bdims, &acc, &mut |cx, _, offs| {
                let pa = cx.elem_addr(pa, offs[0], dtype);
                let pb = cx.elem_addr(pb, offs[1], dtype);
                let pc = cx.elem_addr(pc, offs[2], dtype);
                // `C = A·B`, or for a transposed result `Cᵀ = Bᵀ·Aᵀ` (row-major `n×m`).
                let (m, n, pa, rsa, csa, pb, rsb, csb) = if transposed {
                    (n, m, pb, csb, rsb, pa, csa, rsa)
                } else {
                    (m, n, pa, rsa, csa, pb, rsb, csb)
                };
                let args = [
                    cx.iconst(m as i64),
                    cx.iconst(k as i64),
                    cx.iconst(n as i64),
                    pa,
                    cx.iconst(rsa),
                    cx.iconst(csa),
                    pb,
                    cx.iconst(rsb),
                    cx.iconst(csb),
                    pc,
                    cx.iconst(n as i64),
                    cx.iconst(1),
                ];
                cx.call(name, &[p; 12], &[], &args)?;
                Ok(())
            });
        }
    }

    // The general loop nest.
    let mut astr: SmallVec<[i64; 4]> = op.lhs_batch.iter().map(|&d| asd[d]).collect();
    let mut bstr: SmallVec<[i64; 4]> = op.rhs_batch.iter().map(|&d| bsd[d]).collect();
    astr.extend(lfree.iter().map(|&d| asd[d]));
    bstr.extend(lfree.iter().map(|_| 0));
    astr.extend(rfree.iter().map(|_| 0));
    bstr.extend(rfree.iter().map(|&d| bsd[d]));
    let outer = [
        Access {
            base: zero,
            strides: astr,
        },
        Access {
            base: zero,
            strides: bstr,
        },
        Access {
            base: zero,
            strides: rs,
        },
    ];
    let cdims: SmallVec<[usize; 4]> = op.lhs_contract.iter().map(|&d| aty.dims()[d]).collect();
    let ca: SmallVec<[i64; 4]> = op.lhs_contract.iter().map(|&d| asd[d]).collect();
    let cb: SmallVec<[i64; 4]> = op.rhs_contract.iter().map(|&d| bsd[d]).collect();
    let is_float = dtype.is_float();
    cx.nest(rty.dims(), &outer, &mut |cx, _, offs| {
        let inner = [
            Access {
                base: offs[0],
                strides: ca.clone(),
            },
            Access {
                base: offs[1],
                strides: cb.clone(),
            },
        ];
        let acc = cx.fb.declare_var(clty(dtype));
        let init = cx.constant(dtype, 0.0);
        cx.fb.def_var(acc, init);
        cx.nest(&cdims, &inner, &mut |cx, _, o| {
            let x = cx.load(a, o[0])?;
            let y = cx.load(b, o[1])?;
            let s = cx.fb.use_var(acc);
            let t = if is_float {
                let p = cx.fb.ins().fmul(x, y);
                cx.fb.ins().fadd(s, p)
            } else {
                let p = cx.fb.ins().imul(x, y);
                cx.fb.ins().iadd(s, p)
            };
            cx.fb.def_var(acc, t);
            Ok(())
        })?;
        let s = cx.fb.use_var(acc);
        cx.store_out(r, offs[2], s)
    })
}
