//! When one request's backend call ran, for a server that traces requests (Triton's trace
//! extension). A request asks for it by handing a [`CallTrace`] to
//! [`ServedModel::run_traced`](crate::ServedModel::run_traced); whoever runs the call —
//! an instance thread, a dynamic batch, the caller itself — fills it in once, and marks
//! it when the call starts. A request with a client's own timeout carries one too: the
//! mark says whether its call started in time. Other requests carry `None` and pay
//! nothing more.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::CallTiming;

/// Filled in once, when the traced request's call has run (or was given up); marked
/// when that call starts.
#[derive(Debug, Default)]
pub struct CallTrace {
    times: OnceLock<CallTimes>,
    started: AtomicBool,
    /// When the request's caller gives up on a call that has started, if later than its
    /// deadline to start (a client's own timeout is a deadline to start only).
    answer_by: OnceLock<Instant>,
}

/// A traced request's path through the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimes {
    /// Queued (for a call on the caller's own thread: when it started).
    pub queued: Instant,
    /// The backend call that carried it: when it started, where its time went (for
    /// bridges that measure it), when it ended. `None`: it never ran (timed out, or its
    /// caller left).
    pub call: Option<RanCall>,
}

/// One backend call, as seen by every request it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RanCall {
    pub started: Instant,
    pub timing: Option<CallTiming>,
    pub ended: Instant,
}

impl CallTrace {
    /// What was recorded; `None` until the call has been answered.
    pub fn times(&self) -> Option<CallTimes> {
        self.times.get().copied()
    }

    /// Whether an instance has started the call that carries the request (it started
    /// before the request's deadline, so it will be answered with the call's outcome).
    pub fn started(&self) -> bool {
        self.started.load(Relaxed)
    }

    /// Says that the caller waits for a started call until `by`, past the deadline to
    /// start it gave: an instance's call counts as stuck only after that.
    pub fn wait_for_started_call_until(&self, by: Instant) {
        let _ = self.answer_by.set(by);
    }

    /// Records the request's times; only the first record counts.
    pub(crate) fn record(&self, times: CallTimes) {
        let _ = self.times.set(times);
    }
}

/// Marks a request's trace, when it has one, as started.
pub(crate) fn mark_started(trace: &Option<std::sync::Arc<CallTrace>>) {
    if let Some(trace) = trace {
        trace.started.store(true, Relaxed);
    }
}

/// Records `times` into a request's trace when it has one.
pub(crate) fn record(trace: &Option<std::sync::Arc<CallTrace>>, times: CallTimes) {
    if let Some(trace) = trace {
        trace.record(times);
    }
}

/// When a request's caller gives up on its call once started: what its trace says, else
/// its deadline.
pub(crate) fn answer_by(
    trace: &Option<std::sync::Arc<CallTrace>>,
    deadline: Option<Instant>,
) -> Option<Instant> {
    match trace.as_ref().and_then(|t| t.answer_by.get()) {
        Some(&by) => Some(by),
        None => deadline,
    }
}
