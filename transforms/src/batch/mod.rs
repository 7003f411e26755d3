//! Batching rules for vmap, one file per op family (mirroring `ferrax_ir::ops`).
