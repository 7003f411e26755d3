//! Batching rule of `dot_general`.
//!
//! When both operands are batched, the batch becomes a new leading batch dimension of the dot
//! (the result's batch dimension is 0). When only one side is batched, its batch dimension
//! simply becomes one more free dimension of that side: the product stays one large
//! contraction (a GEMM with a bigger M or N) instead of a batched product, and the result's
//! batch dimension is wherever that free dimension lands.

use super::{shift_axis, BatchCtx, Batched};
use ferrax_ir::ops::DotGeneral;
use ferrax_ir::{Dims, Op, Result};

fn shifted(dims: &Dims, bdim: Option<usize>) -> Dims {
    match bdim {
        Some(b) => dims.iter().map(|&d| shift_axis(d, b)).collect(),
        None => dims.clone(),
    }
}

/// Batches a `dot_general`.
pub fn batch(op: &DotGeneral, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    let (l, r) = (args[0], args[1]);
    let mut dn = DotGeneral {
        lhs_contract: shifted(&op.lhs_contract, l.bdim),
        rhs_contract: shifted(&op.rhs_contract, r.bdim),
        lhs_batch: shifted(&op.lhs_batch, l.bdim),
        rhs_batch: shifted(&op.rhs_batch, r.bdim),
    };
    let nb = dn.lhs_batch.len();
    let lrank = ctx.ty(l.value).rank();
    let rrank = ctx.ty(r.value).rank();
    let bdim = match (l.bdim, r.bdim) {
        (Some(lb), Some(rb)) => {
            dn.lhs_batch.insert(0, lb);
            dn.rhs_batch.insert(0, rb);
            0
        }
        (Some(lb), None) => {
            let free = dn.lhs_free(lrank);
            nb + free.iter().position(|&d| d == lb).unwrap_or(0)
        }
        (None, Some(rb)) => {
            let lfree = dn.lhs_free(lrank).len();
            let free = dn.rhs_free(rrank);
            nb + lfree + free.iter().position(|&d| d == rb).unwrap_or(0)
        }
        (None, None) => {
            return Ok(Batched::unbatched(
                ctx.push1(Op::Dot(Box::new(op.clone())), &[l.value, r.value])?,
            ))
        }
    };
    Ok(Batched::at(
        ctx.push1(Op::Dot(Box::new(dn)), &[l.value, r.value])?,
        bdim,
    ))
}
