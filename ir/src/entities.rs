//! Entity references: `u32` newtypes that index the arenas of a [`Graph`](crate::Graph).
//!
//! Their `Display` prefix matches the text format (`v3`, `i2`, `g1`), as in Cranelift.

use std::fmt;

macro_rules! entity {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The arena index.
            pub fn index(self) -> usize {
                self.0 as usize
            }

            /// The reference for an arena index.
            pub fn from_index(i: usize) -> $name {
                $name(u32::try_from(i).expect("arena index exceeds u32"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

entity!(
    /// An SSA value: a parameter of a graph or a result of an instruction.
    Value,
    "v"
);
entity!(
    /// An instruction (an equation) of a graph's body.
    Inst,
    "i"
);
entity!(
    /// A sub-graph owned by a graph (branches and bodies of control flow, custom rules).
    GraphId,
    "g"
);
