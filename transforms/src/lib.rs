//! ferrax-transforms: jvp, vjp, grad, jacobians, vmap and simplification passes as IR-to-IR rewrites.
