//! The host interpreter's exit. In the Python package the interpreter is the user's own,
//! and it finalizes when their script ends while torchbridge's threads may still hold
//! models: a thread that attaches to an interpreter being finalized is ended by CPython
//! mid-frame, which aborts a Rust process ("terminate called without an active
//! exception"). So the package's `atexit` hook closes the gate first: calls are refused
//! from then on, the calls in flight are waited for, and a model dropped later leaks its
//! Python objects instead of attaching to release them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

static CLOSED: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One call into the interpreter (or a wait, detached from it, that ends by attaching
/// again), counted while it lasts.
#[derive(Debug)]
pub struct Passage(());

impl Drop for Passage {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, SeqCst);
    }
}

/// A passage for one call, or `None` once the interpreter is exiting. Counted before
/// the gate is looked at, so [`close`] never misses a call that got through.
pub fn enter() -> Option<Passage> {
    IN_FLIGHT.fetch_add(1, SeqCst);
    let passage = Passage(());
    (!CLOSED.load(SeqCst)).then_some(passage)
}

/// Refuses every call into the interpreter from now on and waits up to `wait` for the
/// calls in flight; returns whether they all ended.
pub fn close(wait: Duration) -> bool {
    CLOSED.store(true, SeqCst);
    let until = Instant::now() + wait;
    while IN_FLIGHT.load(SeqCst) > 0 {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}
