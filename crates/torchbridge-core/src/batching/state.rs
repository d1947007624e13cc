//! The batching queue's logic, with no threads, channels or clocks of its own: the
//! scheduler passes `now` in, so tests drive every rule with made-up instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{Batch, BatchingConfig};

/// A reply handle the queue can ask whether anyone still waits.
pub(crate) trait Reply {
    fn is_closed(&self) -> bool;
}

impl<T> Reply for tokio::sync::oneshot::Sender<T> {
    fn is_closed(&self) -> bool {
        tokio::sync::oneshot::Sender::is_closed(self)
    }
}

/// One queued request: checked inputs (rows ≥ 1, model order) and who to answer.
#[derive(Debug)]
pub(crate) struct Request<R> {
    pub batch: Batch,
    pub enqueued: Instant,
    /// Not started by then: handed back by [`State::take_expired`], never run.
    pub deadline: Option<Instant>,
    pub reply: R,
}

impl<R> Request<R> {
    /// Same datatypes and the same shape past dim 0, input by input: can share a batch.
    fn fits_with(&self, other: &Request<R>) -> bool {
        let (a, b) = (&self.batch.inputs, &other.batch.inputs);
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.datatype == y.datatype && x.shape.get(1..) == y.shape.get(1..))
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

/// The queue was full (it held `queued` requests); the request was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overloaded {
    pub queued: usize,
}

/// Queued requests, and the rules that group them into batches.
#[derive(Debug)]
pub(crate) struct State<R> {
    queue: VecDeque<Request<R>>,
    expired: Vec<Request<R>>,
    max_delay: Duration,
    /// Ascending.
    preferred: Vec<usize>,
    max_queue_size: usize,
    draining: bool,
}

impl<R: Reply> State<R> {
    pub fn new(config: &BatchingConfig) -> Self {
        let mut preferred: Vec<usize> = config
            .preferred_batch_sizes
            .iter()
            .map(|&p| p as usize)
            .collect();
        preferred.sort_unstable();
        State {
            queue: VecDeque::new(),
            expired: Vec::new(),
            max_delay: Duration::from_micros(config.max_queue_delay_us),
            preferred,
            max_queue_size: config.max_queue_size as usize,
            draining: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Requests queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Rows queued, over every shape group.
    pub fn rows(&self) -> usize {
        self.queue.iter().map(|r| r.batch.rows).sum()
    }

    /// Queues a request, or refuses it when `max_queue_size` are already queued.
    pub fn append(&mut self, request: Request<R>) -> Result<(), Overloaded> {
        let queued = self.queue.len();
        if queued >= self.max_queue_size {
            return Err(Overloaded { queued });
        }
        self.queue.push_back(request);
        Ok(())
    }

    /// From now on every group is released at once (the model is going away).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Sets aside the requests nobody waits for and those past their deadline. (A scan
    /// without moving anything when, as usual, there is nothing to take out: it runs under
    /// the queue's lock each time an instance asks for a batch.)
    pub fn purge(&mut self, now: Instant) {
        if !self
            .queue
            .iter()
            .any(|r| r.reply.is_closed() || r.expired(now))
        {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for request in self.queue.drain(..) {
            // A request whose caller left is set aside with the expired ones: never run,
            // and counted as failed, as the caller was answered (a timeout, or nothing).
            if request.reply.is_closed() || request.expired(now) {
                self.expired.push(request);
            } else {
                kept.push_back(request);
            }
        }
        self.queue = kept;
    }

    /// Requests whose deadline passed before they could run, or whose caller left (found
    /// by [`State::purge`] and [`State::next_batch`]); answer them with a timeout.
    pub fn take_expired(&mut self) -> Vec<Request<R>> {
        std::mem::take(&mut self.expired)
    }

    /// A group to run now, or `None` (then [`State::next_wakeup`] says when to ask
    /// again). Groups are looked at in order of their oldest request; a group holds
    /// requests of one shape, in arrival order, taken whole, up to `max_batch_size` rows.
    pub fn next_batch(&mut self, now: Instant, max_batch_size: usize) -> Option<Vec<Request<R>>> {
        self.purge(now);
        let mut heads: Vec<usize> = Vec::new();
        for head in 0..self.queue.len() {
            if heads
                .iter()
                .any(|&h| self.queue[h].fits_with(&self.queue[head]))
            {
                continue;
            }
            heads.push(head);
            if let Some(members) = self.ready_group(head, now, max_batch_size) {
                return Some(self.remove(&members));
            }
        }
        None
    }

    /// Whether the group of the request appended last is ready at `now`. An arrival
    /// changes nothing else (the others' delays run on the clock), so an instance
    /// waiting out a delay need be woken only when this says so.
    pub fn last_completes_group(&self, now: Instant, max_batch_size: usize) -> bool {
        let Some(last) = self.queue.back() else {
            return false;
        };
        let head = self.queue.iter().position(|r| r.fits_with(last));
        head.is_some_and(|head| self.ready_group(head, now, max_batch_size).is_some())
    }

    /// The members of the group led by `head`, if it should run now.
    fn ready_group(&self, head: usize, now: Instant, max: usize) -> Option<Vec<usize>> {
        let lead = &self.queue[head];
        let mut members = vec![head];
        let mut rows = lead.batch.rows;
        let mut full = rows >= max;
        for (i, request) in self.queue.iter().enumerate().skip(head + 1) {
            if full {
                break;
            }
            if !request.fits_with(lead) {
                continue;
            }
            if rows + request.batch.rows > max {
                // Order within a shape is kept: this one leads the next group.
                full = true;
                break;
            }
            members.push(i);
            rows += request.batch.rows;
            full = rows == max;
        }
        if full || self.draining || now >= lead.enqueued + self.max_delay {
            return Some(members);
        }
        // The largest preferred size the requests at hand reach exactly.
        let mut sum = 0;
        let mut preferred = None;
        for (k, &i) in members.iter().enumerate() {
            sum += self.queue[i].batch.rows;
            if self.preferred.binary_search(&sum).is_ok() {
                preferred = Some(k + 1);
            }
        }
        preferred.map(|k| members[..k].to_vec())
    }

    /// Takes the requests at `indices` (ascending) out of the queue, in that order.
    fn remove(&mut self, indices: &[usize]) -> Vec<Request<R>> {
        let mut taken = Vec::with_capacity(indices.len());
        for (removed, &i) in indices.iter().enumerate() {
            taken.extend(self.queue.remove(i - removed));
        }
        taken
    }

    /// When the oldest request's delay runs out or the nearest deadline passes.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let oldest = self.queue.front()?;
        let release = if self.draining {
            now
        } else {
            oldest.enqueued + self.max_delay
        };
        Some(self.next_deadline().map_or(release, |d| d.min(release)))
    }

    /// The nearest deadline of a queued request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.iter().filter_map(|r| r.deadline).min()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
