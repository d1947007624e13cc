//! How `torchbridge serve` stops. A supervisor (Kubernetes, systemd, a terminal's ctrl-c)
//! sends a signal and, a grace period later, kills; meanwhile a load balancer may still
//! route to the process until it notices. So a stop goes in steps, each logged: on the
//! first SIGTERM, SIGINT or SIGHUP the server reports not ready at once and, for
//! `--shutdown-delay-secs`, goes on serving; then it closes its listeners and lets the
//! requests in flight finish, for at most `--exit-timeout-secs`. A second signal, at
//! any step, ends the process without waiting any longer.

use std::time::Duration;

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;
use torchbridge_server::AppState;

use super::logger::Logger;

/// The signals that stop the server.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next one to arrive.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// How long each step of a stop may last.
#[derive(Debug, Clone, Copy)]
pub(super) struct StopTimes {
    /// Serving on, reported not ready, after the first signal.
    pub delay: Duration,
    /// Requests in flight finishing once the listeners are closed.
    pub exit_timeout: Duration,
}

/// Follows the signals for `state`'s server. The first future resolves when the server
/// should close its listeners and drain (hand it to `torchbridge_server::serve`); the
/// second when the process should exit without waiting for the drain any longer (past
/// the exit timeout, or at a second signal).
pub(super) fn follow_signals(
    state: AppState,
    times: StopTimes,
    logger: Arc<Logger>,
) -> std::io::Result<(
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
)> {
    let mut signals = Signals::new()?;
    let (close, closed) = oneshot::channel::<()>();
    let give_up = tokio::spawn(async move {
        let first = signals.next().await;
        state.drain();
        logger.status(&format!(
            "{first}: stopping; reporting not ready{}, then closing the listeners and letting \
             the requests in flight finish (at most {:?}); a second signal stops at once",
            match times.delay.is_zero() {
                true => String::new(),
                false => format!(" and serving on for {:?}", times.delay),
            },
            times.exit_timeout
        ));
        if !times.delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(times.delay) => {}
                again = signals.next() => {
                    let _ = close.send(());
                    logger.problem(&format!("{again} again"));
                    return;
                }
            }
        }
        let _ = close.send(());
        tokio::select! {
            () = tokio::time::sleep(times.exit_timeout) => logger.problem(&format!(
                "requests still in flight {:?} after the listeners closed \
                 (--exit-timeout-secs)",
                times.exit_timeout
            )),
            again = signals.next() => logger.problem(&format!("{again} again")),
        }
    });
    let closed = async move {
        let _ = closed.await;
    };
    let give_up = async move {
        let _ = give_up.await;
    };
    Ok((closed, give_up))
}
