//! The floating-point control state of compiled code: the opt-in flushing of subnormal
//! numbers to zero ([`crate::JitOptions::flush_subnormals`]), and the rule that work handed to
//! the pool's threads runs under the calling thread's control state.
//!
//! With `flush_subnormals`, the generated entry calls [`ferrax_fp_flush_enter`] first, which
//! sets the CPU's flush-to-zero and denormals-are-zero modes (x86-64: MXCSR's FTZ and DAZ bits;
//! AArch64: FPCR's FZ bit) and returns the previous state, and calls [`ferrax_fp_restore`] with
//! it before every return, so the caller's own mode is back when the call ends, whether it
//! succeeded or failed. Code run on pool threads on the call's behalf (parallel loops, GEMM
//! parts, convolution jobs, wide tails) runs under [`FpControl::run`] with the state captured
//! on the calling thread, so every part of a split computes with the same mode and a result's
//! bits do not depend on which thread computed it.
//!
//! The switch is made around compiled code and the runtime helpers it calls, never around
//! code whose results Rust itself constant-folds, so the only effect of the mode is the one
//! asked for: subnormal inputs read as zero and subnormal results are written as zero.

/// The calling thread's floating-point control bits (status flags excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FpControl(u64);

impl FpControl {
    /// The control state of the calling thread.
    pub(crate) fn current() -> FpControl {
        FpControl(read() & CONTROL_MASK)
    }

    /// Runs `f` with this control state on the current thread and restores the thread's own
    /// afterwards (also when `f` unwinds). When the states already agree, `f` just runs.
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        let own = read();
        if own & CONTROL_MASK == self.0 {
            return f();
        }
        // SAFETY: only control bits this module reads from another thread of this process
        // are written; they change rounding of subnormals, not memory safety.
        unsafe { write((own & !CONTROL_MASK) | self.0) };
        let _restore = Restore(own);
        f()
    }
}

/// Puts a thread's saved control state back when dropped.
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: the state was read from this thread.
        unsafe { write(self.0) }
    }
}

/// Whether this target can flush subnormals (the option is refused elsewhere).
pub(crate) const FLUSH_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Sets flush-to-zero and denormals-are-zero on the calling thread and returns the previous
/// control word, for [`ferrax_fp_restore`]. Called by generated entries compiled with
/// `flush_subnormals`.
pub(crate) extern "C" fn ferrax_fp_flush_enter() -> u64 {
    // New threads start with their creator's control word, so the pool's threads must not be
    // created while this thread flushes: they would keep flushing for good, in the user's own
    // work on the pool too. Asking for the thread count creates the pool first.
    crate::symbols::pool_threads();
    let own = read();
    // SAFETY: sets the flush bits of this thread's own control word.
    unsafe { write(own | FLUSH_BITS) };
    own
}

/// Restores the control word [`ferrax_fp_flush_enter`] returned.
pub(crate) extern "C" fn ferrax_fp_restore(saved: u64) {
    // SAFETY: `saved` is this thread's own earlier control word.
    unsafe { write(saved) }
}

/// The runtime symbols of this module, for [`crate::symbols::lookup`].
pub(crate) fn symbol(name: &str) -> Option<*const u8> {
    match name {
        "ferrax_fp_flush_enter" => Some(ferrax_fp_flush_enter as *const u8),
        "ferrax_fp_restore" => Some(ferrax_fp_restore as *const u8),
        _ => None,
    }
}

// MXCSR: bits 0–5 are sticky exception flags, bits 6–15 control (DAZ is bit 6, FTZ bit 15).
#[cfg(target_arch = "x86_64")]
const CONTROL_MASK: u64 = 0xffc0;
#[cfg(target_arch = "x86_64")]
const FLUSH_BITS: u64 = (1 << 15) | (1 << 6);

#[cfg(target_arch = "x86_64")]
fn read() -> u64 {
    let mut word: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR to a valid, writable location.
    unsafe {
        std::arch::asm!(
            "stmxcsr [{}]",
            in(reg) std::ptr::addr_of_mut!(word),
            options(nostack, preserves_flags),
        );
    }
    u64::from(word)
}

/// # Safety
/// `word` must be a valid MXCSR value (reserved bits clear), as read by [`read`] and changed
/// only in its control bits.
#[cfg(target_arch = "x86_64")]
unsafe fn write(word: u64) {
    let word = word as u32;
    // SAFETY: the caller passes a valid MXCSR value.
    unsafe {
        std::arch::asm!(
            "ldmxcsr [{}]",
            in(reg) std::ptr::addr_of!(word),
            options(nostack, preserves_flags, readonly),
        );
    }
}

// FPCR: every bit is control; FZ (bit 24) flushes subnormal inputs and results alike.
#[cfg(target_arch = "aarch64")]
const CONTROL_MASK: u64 = u64::MAX;
#[cfg(target_arch = "aarch64")]
const FLUSH_BITS: u64 = 1 << 24;

#[cfg(target_arch = "aarch64")]
fn read() -> u64 {
    let word: u64;
    // SAFETY: reading FPCR has no side effect.
    unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) word, options(nomem, nostack)) };
    word
}

/// # Safety
/// `word` must be a valid FPCR value, as read by [`read`] and changed only in its FZ bit.
#[cfg(target_arch = "aarch64")]
unsafe fn write(word: u64) {
    // SAFETY: the caller passes a valid FPCR value.
    unsafe { std::arch::asm!("msr fpcr, {}", in(reg) word, options(nomem, nostack)) };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CONTROL_MASK: u64 = 0;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const FLUSH_BITS: u64 = 0;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn read() -> u64 {
    0
}

/// # Safety
/// Nothing to uphold: targets without a supported control register keep their mode.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn write(_word: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entering sets the flush mode, which flushes a subnormal product, and restoring brings
    /// the thread's gradual underflow back.
    #[test]
    fn enter_flushes_and_restore_undoes_it() {
        if !FLUSH_SUPPORTED {
            return;
        }
        let tiny = std::hint::black_box(f64::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f64);
        assert!(tiny * half > 0.0);
        let saved = ferrax_fp_flush_enter();
        let flushed = std::hint::black_box(tiny) * std::hint::black_box(half);
        ferrax_fp_restore(saved);
        assert_eq!(flushed, 0.0);
        assert!(std::hint::black_box(tiny) * std::hint::black_box(half) > 0.0);
        assert_eq!(FpControl::current(), FpControl(saved & CONTROL_MASK));
    }

    /// A state captured on one thread applies on another for the duration of `run` only.
    #[test]
    fn run_carries_the_state_to_another_thread() {
        if !FLUSH_SUPPORTED {
            return;
        }
        let saved = ferrax_fp_flush_enter();
        let state = FpControl::current();
        ferrax_fp_restore(saved);
        let (inside, after) = std::thread::spawn(move || {
            let tiny = std::hint::black_box(f64::MIN_POSITIVE);
            let inside = state.run(|| std::hint::black_box(tiny) * std::hint::black_box(0.5));
            (
                inside,
                std::hint::black_box(tiny) * std::hint::black_box(0.5),
            )
        })
        .join()
        .unwrap();
        assert_eq!(inside, 0.0);
        assert!(after > 0.0);
    }
}
