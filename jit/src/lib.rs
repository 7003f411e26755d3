//! ferrax-jit: lowers any ferrax graph to native code with Cranelift.
