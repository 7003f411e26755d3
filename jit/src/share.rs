//! Sharing one call's work with the rayon pool's threads without waiting for threads that
//! have not started it.
//!
//! A runtime kernel called from compiled code runs on the caller's thread, which is not one of
//! the pool's. `rayon::scope` would hand the whole scope to a pool thread and put the caller to
//! sleep until it ends (two thread switches per call), and `rayon::in_place_scope` would wait
//! for every spawned job to finish, including jobs that a pool thread only picks up after the
//! caller has done all the work: on a shared machine a sleeping pool thread can take tens of
//! microseconds to wake, longer than a small convolution takes. Here the caller starts working
//! at once; each helper, when it starts, registers unless the caller has already closed the
//! call, and the caller waits only for helpers that registered (those are in the middle of one
//! work item). The work must therefore be a loop over items claimed from a shared counter,
//! which any number of threads, including the caller alone, can run to the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bit of the shared state that closes a call to helpers not yet registered; the other
/// bits count registered helpers still running.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Spins before the waiting caller starts yielding its core.
const SPINS: usize = 1 << 10;

/// Runs `work` on the calling thread and on up to `helpers` pool threads that start before the
/// caller has finished it; returns when the caller's run and every helper's run have ended.
///
/// `work` must claim its items from state it shares (a counter), so that the runs together
/// do each item once however many of them take part and whenever they start.
pub(crate) fn share_work<F: Fn() + Sync>(helpers: usize, work: &F) {
    if helpers == 0 {
        work();
        return;
    }
    let state = Arc::new(AtomicUsize::new(0));
    // The closure's address, passed to helpers as an integer: the pool's jobs must be
    // `'static`, and a helper dereferences it only while registered, when the caller is still
    // inside this function (see `Close`).
    let at = work as *const F as usize;
    // Helpers compute in the caller's floating-point mode (see `crate::fp_env`).
    let fp = crate::fp_env::FpControl::current();
    for _ in 0..helpers {
        let state = Arc::clone(&state);
        let job = move || {
            let mut s = state.load(Ordering::Acquire);
            loop {
                if s & CLOSED != 0 {
                    return;
                }
                match state.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => s = now,
                }
            }
            // SAFETY: registered before the call closed, so the caller waits for this run
            // to end before `work` goes out of scope; `F: Sync` allows the shared use.
            let work = unsafe { &*(at as *const F) };
            fp.run(work);
            state.fetch_sub(1, Ordering::Release);
        };
        // The global pool cannot be created when its threads cannot be spawned; the caller
        // then does all the work.
        if std::panic::catch_unwind(move || rayon::spawn(job)).is_err() {
            break;
        }
    }
    let close = Close(&state);
    work();
    drop(close);
}

/// Closes a call to helpers that have not registered and waits for those that have, also
/// when the caller's own run unwinds.
struct Close<'a>(&'a AtomicUsize);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let mut s = self.0.fetch_or(CLOSED, Ordering::AcqRel) | CLOSED;
        let mut spins = 0;
        while s != CLOSED {
            if spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
            s = self.0.load(Ordering::Acquire);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item is done exactly once, for any number of helpers, with items that take
    /// long enough for helpers to join and with so few that they mostly arrive too late.
    #[test]
    fn every_item_runs_once() {
        for helpers in 0..4 {
            for items in [0usize, 1, 3, 200] {
                let counts: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                let next = AtomicUsize::new(0);
                let work = || loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = counts.get(k) else {
                        break;
                    };
                    // Some work per item, so that helpers have time to join.
                    let mut x = k as u64;
                    for _ in 0..2000 {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                    }
                    c.fetch_add(1 + (x == 0) as usize, Ordering::Relaxed);
                };
                share_work(helpers, &work);
                for (k, c) in counts.iter().enumerate() {
                    assert_eq!(c.load(Ordering::Relaxed), 1, "{helpers} helpers, item {k}");
                }
            }
        }
    }

    /// Many short calls in a row, each with its work on the stack and done before most
    /// helpers wake: every call returns, and its work runs to the end once.
    #[test]
    fn short_calls_return() {
        let total = AtomicUsize::new(0);
        for _ in 0..2000 {
            let done = AtomicUsize::new(0);
            let work = || {
                if done.fetch_add(1, Ordering::Relaxed) == 0 {
                    total.fetch_add(1, Ordering::Relaxed);
                }
            };
            share_work(2, &work);
        }
        assert_eq!(total.load(Ordering::Relaxed), 2000);
    }
}
