//! How long a request that arrives now would wait before its batch starts, predicted
//! from the batches this queue has seen run: `[batching] max_queue_wait_us` refuses at
//! admission what would wait too long, so an accepted request's latency is bounded by
//! time, not by a count of requests whose cost the server cannot know in advance.
//!
//! Pure: no threads or clocks of its own (`now` is passed in), like [`super::state`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The batches running now and how long one takes, on average.
#[derive(Debug)]
pub(crate) struct Pace {
    instances: usize,
    max_batch_size: usize,
    /// When each batch now running was handed to its instance.
    running: Vec<Instant>,
    /// Moving average (weight 1/8 for the newest) of a batch's time from being handed
    /// out to being answered; `None` until a batch has finished.
    batch_time: Option<Duration>,
}

impl Pace {
    pub fn new(instances: usize, max_batch_size: usize) -> Self {
        Pace {
            instances: instances.max(1),
            max_batch_size: max_batch_size.max(1),
            running: Vec::new(),
            batch_time: None,
        }
    }

    pub fn started(&mut self, at: Instant) {
        self.running.push(at);
    }

    /// The batch handed out at `started` is over; `ran`: it was run (a batch whose
    /// callers had all left is dropped unrun and says nothing about the model's speed).
    pub fn finished(&mut self, started: Instant, now: Instant, ran: bool) {
        if let Some(i) = self.running.iter().position(|&s| s == started) {
            self.running.swap_remove(i);
        }
        if ran {
            let took = now.saturating_duration_since(started);
            self.batch_time = Some(match self.batch_time {
                None => took,
                Some(average) => (average * 7 + took) / 8,
            });
        }
    }

    /// The predicted wait, at `now`, of a request behind `rows_ahead` queued rows: the
    /// full batches ahead of it leave first, each on the instance that comes free
    /// soonest. With nothing measured yet the prediction is zero (admit).
    pub fn wait(&self, now: Instant, rows_ahead: usize) -> Duration {
        let Some(batch) = self.batch_time else {
            return Duration::ZERO;
        };
        let mut free_in: Vec<Duration> = self
            .running
            .iter()
            .map(|&since| (since + batch).saturating_duration_since(now))
            .collect();
        free_in.resize(self.instances.max(free_in.len()), Duration::ZERO);
        free_in.sort_unstable();
        let ahead = rows_ahead / self.max_batch_size;
        let rounds = (ahead / free_in.len()) as u32;
        free_in[ahead % free_in.len()] + batch * rounds
    }
}

/// A batch handed out, as [`Pace`] counts it: over when this is dropped, whether the
/// batch ran, failed or was never run.
pub(crate) struct Running {
    pub pace: Arc<Mutex<Pace>>,
    pub since: Instant,
    pub ran: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut pace = self.pace.lock().unwrap_or_else(PoisonError::into_inner);
        pace.finished(self.since, Instant::now(), self.ran);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A pace whose average batch time is `batch` (one batch measured).
    fn measured(instances: usize, max: usize, t0: Instant, batch: Duration) -> Pace {
        let mut pace = Pace::new(instances, max);
        pace.started(t0);
        pace.finished(t0, t0 + batch, true);
        pace
    }

    #[test]
    fn nothing_measured_predicts_no_wait() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1, 8);
        pace.started(t0);
        assert_eq!(pace.wait(t0 + MS, 100), Duration::ZERO);
    }

    #[test]
    fn an_idle_instance_means_no_wait_while_less_than_a_batch_is_queued() {
        let t0 = Instant::now();
        let pace = measured(1, 8, t0, 10 * MS);
        assert_eq!(pace.wait(t0 + 20 * MS, 0), Duration::ZERO);
        assert_eq!(pace.wait(t0 + 20 * MS, 7), Duration::ZERO);
        // A full batch is ahead: it runs first.
        assert_eq!(pace.wait(t0 + 20 * MS, 8), 10 * MS);
    }

    #[test]
    fn a_running_batch_is_waited_for_until_its_expected_end() {
        let t0 = Instant::now();
        let mut pace = measured(1, 8, t0, 10 * MS);
        let t1 = t0 + 20 * MS;
        pace.started(t1);
        assert_eq!(pace.wait(t1 + 4 * MS, 3), 6 * MS);
        // Two full batches queued ahead, then this one: 6 + 2 x 10 ms.
        assert_eq!(pace.wait(t1 + 4 * MS, 16), 26 * MS);
        // Past its expected end: it may finish any moment.
        assert_eq!(pace.wait(t1 + 15 * MS, 0), Duration::ZERO);
    }

    #[test]
    fn batches_ahead_spread_over_the_instances_that_come_free_first() {
        let t0 = Instant::now();
        let mut pace = measured(2, 4, t0, 10 * MS);
        let t1 = t0 + 50 * MS;
        pace.started(t1);
        pace.started(t1 + 6 * MS);
        let now = t1 + 8 * MS;
        // Instances free in 2 ms and 8 ms.
        assert_eq!(pace.wait(now, 0), 2 * MS);
        assert_eq!(pace.wait(now, 4), 8 * MS);
        assert_eq!(pace.wait(now, 8), 12 * MS);
        assert_eq!(pace.wait(now, 12), 18 * MS);
    }

    #[test]
    fn the_average_follows_the_newest_batches_and_skips_unrun_ones() {
        let t0 = Instant::now();
        let mut pace = measured(1, 1, t0, 8 * MS);
        pace.started(t0);
        pace.finished(t0, t0 + 16 * MS, true);
        assert_eq!(pace.batch_time, Some(9 * MS));
        pace.started(t0);
        pace.finished(t0, t0 + 100 * MS, false);
        assert_eq!(pace.batch_time, Some(9 * MS));
        assert!(pace.running.is_empty());
    }

    #[test]
    fn dropping_the_token_ends_the_batch() {
        let t0 = Instant::now();
        let pace = Arc::new(Mutex::new(measured(1, 1, t0, 10 * MS)));
        pace.lock().unwrap().started(t0);
        let running = Running {
            pace: pace.clone(),
            since: t0,
            ran: false,
        };
        assert_eq!(pace.lock().unwrap().running.len(), 1);
        drop(running);
        let pace = pace.lock().unwrap();
        assert!(pace.running.is_empty());
        assert_eq!(pace.batch_time, Some(10 * MS));
    }
}
