//! Simplification passes: dead-code elimination, CSE, constant folding, algebraic identities.
