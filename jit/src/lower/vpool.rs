//! Vector constants of a parallel kernel, read from a per-kernel pool inside the loop.
//!
//! The inline transcendentals of [`super::fastmath`] need a few dozen splatted constants per
//! vector (polynomial coefficients, reduction parts, masks). As `vconst`s, Cranelift hoists
//! them out of the loop, and with more of them than x86's sixteen vector registers the
//! register allocator parks most in stack slots and reloads them, often with a register copy
//! and an extra spill store per iteration: in P3's f32 gradient about 60 of the loop's 160
//! instructions were such moves. Here a kernel's vector constants live in one read-only data
//! object (the pool) and each is a movable, read-only load whose address is the pool's
//! address as loaded, once per block, from a stack slot of the kernel's own frame. The
//! optimiser never merges or hoists a `stack_load`, so it cannot see that the address is
//! invariant: it places each constant's load next to its use, and the instruction selector
//! folds a load with one use into its user as a memory operand (`vfmadd213ps c(%r), ...`): a
//! constant costs at most one load and no register across the loop, and a block using
//! constants one load of the pool's address. (Before, the address was read from the kernel's
//! context array, whose pointer then stayed live through the whole kernel: under register
//! pressure that pointer was spilled, and every iteration of the sparse Hessian's loop
//! reloaded it, loaded the pool's address through it and stored it back.) The pool is only
//! used in kernels, whose context array the caller fills and whose entry copies the pool's
//! address into the slot (see [`super::fused`]); elsewhere constants stay `vconst`s.

use super::Ctx;
use cranelift_codegen::ir::{self, types, Endianness, InstBuilder, MemFlagsData};
use hashbrown::HashMap;

/// The vector constants of one kernel and where the kernel finds them.
pub(crate) struct VecPool {
    /// The stack slot of the kernel's frame holding the pool's address.
    slot: ir::StackSlot,
    /// The pool's contents: 16 bytes per constant, little-endian.
    bytes: Vec<u8>,
    /// The byte offset in the pool of each constant, by its bits.
    index: HashMap<u128, i32>,
    /// The pool's address as loaded in one block (reused within that block only, where it
    /// dominates every later use).
    base: Option<(ir::Block, ir::Value)>,
}

impl VecPool {
    /// A pool whose address the kernel keeps in its stack slot `slot`.
    pub(crate) fn new(slot: ir::StackSlot) -> VecPool {
        VecPool {
            slot,
            bytes: Vec::new(),
            index: HashMap::new(),
            base: None,
        }
    }

    /// The pool's contents (empty when the kernel used no pooled constant, and then the
    /// kernel never reads the pool's address).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The bits of a 128-bit vector whose lanes of `lane_bytes` bytes all hold the low bits of
/// `lane`.
pub(crate) fn splat_bits(lane: u64, lane_bytes: u32) -> u128 {
    let width = 8 * lane_bytes;
    let lane = if width >= 64 {
        lane as u128
    } else {
        (lane & ((1u64 << width) - 1)) as u128
    };
    (0..128 / width).fold(0u128, |acc, k| acc | (lane << (k * width)))
}

impl Ctx<'_, '_> {
    /// A 128-bit vector constant of type `ty` with the bits `bits`, read from the kernel's
    /// pool; `None` outside kernels, where the caller emits a `vconst` or a splat instead.
    pub(crate) fn pooled_vector(&mut self, ty: ir::Type, bits: u128) -> Option<ir::Value> {
        let block = self.fb.current_block()?;
        let pool = self.vpool.as_mut()?;
        let at = match pool.index.get(&bits) {
            Some(&at) => at,
            None => {
                let at = i32::try_from(pool.bytes.len()).ok()?;
                pool.bytes.extend_from_slice(&bits.to_le_bytes());
                pool.index.insert(bits, at);
                at
            }
        };
        let base = match pool.base {
            Some((b, v)) if b == block => v,
            _ => {
                // A stack load, which stays where it is: the constants' addresses then
                // depend on a value defined in the loop, so they are not hoisted out of it.
                let v = self
                    .fb
                    .ins()
                    .stack_load(types::I64, types::I64, pool.slot, 0);
                pool.base = Some((block, v));
                v
            }
        };
        let flags = MemFlagsData::trusted()
            .with_readonly()
            .with_can_move()
            .with_endianness(Endianness::Little);
        Some(self.fb.ins().load(ty, flags, base, at))
    }
}

#[cfg(test)]
mod tests {
    use super::splat_bits;

    /// Splatted bits repeat the lane in every lane and drop bits above the lane width.
    #[test]
    fn splat_bits_repeat_lanes() {
        assert_eq!(
            splat_bits(0x3f80_0000, 4),
            0x3f80_0000_3f80_0000_3f80_0000_3f80_0000
        );
        assert_eq!(
            splat_bits(u64::MAX, 4),
            0xffff_ffff_ffff_ffff_ffff_ffff_ffff_ffff
        );
        assert_eq!(
            splat_bits(0x1_0000_0001, 4),
            0x0000_0001_0000_0001_0000_0001_0000_0001
        );
        assert_eq!(
            splat_bits(0x4000_0000_0000_0000, 8),
            0x4000_0000_0000_0000_4000_0000_0000_0000
        );
    }
}
