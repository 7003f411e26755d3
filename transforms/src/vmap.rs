//! vmap: batching as an IR-to-IR rewrite.
