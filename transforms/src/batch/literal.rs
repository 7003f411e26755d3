//! Batching rule of `const` and `iota`: ops without operands never depend on the batch.

use super::{BatchCtx, Batched};
use ferrax_ir::ops::LiteralOp;
use ferrax_ir::{Op, Result};

/// Batches a literal: it is re-emitted unbatched (the generic walker already does this, since
/// a literal has no batched operand; the rule exists so the family is complete).
pub fn batch(op: &LiteralOp, ctx: &mut BatchCtx<'_>, args: &[Batched]) -> Result<Batched> {
    debug_assert!(args.is_empty());
    match op {
        LiteralOp::Const(_) | LiteralOp::Iota { .. } => {
            Ok(Batched::unbatched(ctx.push1(Op::Literal(op.clone()), &[])?))
        }
    }
}
