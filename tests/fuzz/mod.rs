//! Helpers of the differential fuzzer `tests/fuzz_graphs.rs`: the graph generator, the checks,
//! and text mutants with ill-typed ops.

pub mod check;
pub mod gen;
pub mod mutate;
