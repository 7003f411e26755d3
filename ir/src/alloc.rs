//! Fallible allocation: every buffer that ferrax allocates for a value (interpreter results,
//! `Array` constructors, the JIT's outputs and workspaces) is reserved with `try_reserve`, so
//! that running out of memory is an [`ErrorKind::Resource`] error and the process goes on.

use crate::error::{Error, ErrorKind, Result};
use std::fmt::Display;

/// A vector of `n` copies of `value`, or a resource error naming `what` when the memory
/// cannot be had. `what` is anything printable (a `&str`, or `format_args!` so that nothing is
/// formatted unless the allocation fails).
pub fn try_filled<T: Clone>(n: usize, value: T, what: impl Display) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// An empty vector with room for `n` elements, or a resource error naming `what`.
pub fn try_with_capacity<T>(n: usize, what: impl Display) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| cannot_allocate(n.saturating_mul(std::mem::size_of::<T>()), what))?;
    Ok(v)
}

/// Checks that `bytes` bytes can be allocated right now by reserving and releasing them. The
/// interpreter calls this before computing a result, so that a result too large for the
/// machine is an error instead of an abort inside the computation.
pub fn probe(bytes: usize, what: impl Display) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes)
        .map_err(|_| cannot_allocate(bytes, what))?;
    Ok(())
}

/// The error for an allocation of `bytes` bytes that failed, for `what`.
pub fn cannot_allocate(bytes: usize, what: impl Display) -> Error {
    Error::new(
        ErrorKind::Resource,
        format!("cannot allocate {} for {what}", fmt_bytes(bytes)),
    )
}

/// A byte count in binary units with up to three significant digits: `512 B`, `1.5 KiB`,
/// `8 TiB`.
pub fn fmt_bytes(bytes: usize) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut x = bytes as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if x >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0} {}", UNITS[u])
    } else if x >= 10.0 {
        format!("{x:.1} {}", UNITS[u])
    } else {
        format!("{x:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_print_in_binary_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.50 KiB");
        assert_eq!(fmt_bytes(8 << 40), "8 TiB");
        assert_eq!(fmt_bytes(usize::MAX), "16 EiB");
    }

    #[test]
    fn huge_allocations_are_errors() {
        let e = try_filled::<f64>(1 << 60, 0.0, "a test").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Resource);
        assert!(e.message.contains("a test"), "{}", e.message);
        assert!(probe(1 << 62, "a probe").is_err());
        assert_eq!(try_filled(3, 1.5f32, "three").unwrap(), vec![1.5; 3]);
    }
}
