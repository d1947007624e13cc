//! Dynamic batching: requests that arrive close together run as one backend call.
//!
//! Why it is built this way:
//!
//! - **An actor on a plain thread.** One `std::thread` per model owns the queue and
//!   receives requests over a crossbeam channel, sleeping with `recv_deadline` until the
//!   next request, the oldest request's `max_queue_delay`, a deadline, or a finished
//!   batch. No async runtime is needed, so the library batches without tokio; async
//!   callers only await a `oneshot`.
//! - **The rules live in a pure [`State`]** (no threads, channels or
//!   clocks: `now` is passed in), so unit tests drive ordering, delays, preferred sizes,
//!   shape groups, the queue limit, deadlines and cancellation directly.
//! - **At most `instances + 1` batches in flight.** Every instance busy plus one batch
//!   prefetched; past that the scheduler stops handing out work, so requests gather in
//!   the queue and the next batch is as large as the backlog allows, and a full queue
//!   refuses new requests at once ([`Error::Overloaded`]) instead of hiding the backlog
//!   in an unbounded channel.
//! - **One copy in, none out.** A group's inputs are joined on dim 0 into one new
//!   buffer per input ([`mod@concat`]); outputs are split back as `Bytes` slices.
//! - **Requests whose caller left, or whose deadline passed, never run**: the former are
//!   dropped, the latter answered [`Error::Timeout`].

mod concat;
mod state;

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use crate::pool::{Job, Waiter};
use crate::{Batch, BatchingConfig, Error, InstancePool, ModelStats, Result, Tensor};
use state::{Overloaded, Request, State};

pub(crate) type Reply = oneshot::Sender<Result<Vec<Tensor>>>;

enum Msg {
    Request(Request<Reply>),
    /// A batch handed to the pool has been answered (or dropped).
    Done,
    /// The handle is gone: run what is queued, then stop.
    Close,
}

/// The sending side of a model's scheduler. Dropping it lets the scheduler run what is
/// queued, then stop; it holds the pool until then. (The scheduler keeps a sender of its
/// own for batches to report back on, so it is told to close rather than left to see
/// the channel disconnect.)
#[derive(Debug)]
pub(crate) struct Scheduler {
    requests: Sender<Msg>,
}

impl Scheduler {
    pub fn start(pool: Arc<InstancePool>, config: &BatchingConfig) -> Result<Self> {
        let (requests, inbox) = crossbeam_channel::unbounded();
        let name = pool.metadata().name.clone();
        let actor = Actor {
            state: State::new(config),
            max_batch_size: pool.metadata().max_batch_size as usize,
            stats: pool.shared_stats(),
            done: requests.clone(),
            pool,
        };
        std::thread::Builder::new()
            .name(format!("tb-{name}-batcher"))
            .spawn(move || actor.run(inbox))
            .map_err(|e| Error::Unavailable(format!("{name} (cannot spawn a thread: {e})")))?;
        Ok(Scheduler { requests })
    }

    /// Queues a checked batch; `false` when the scheduler has stopped.
    pub fn send(&self, batch: Batch, deadline: Option<Instant>, reply: Reply) -> bool {
        let request = Request {
            batch,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        self.requests.send(Msg::Request(request)).is_ok()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.requests.send(Msg::Close);
    }
}

struct Actor {
    state: State<Reply>,
    max_batch_size: usize,
    pool: Arc<InstancePool>,
    stats: Arc<ModelStats>,
    /// Cloned into each batch, which reports back when answered.
    done: Sender<Msg>,
}

impl Actor {
    fn run(mut self, inbox: Receiver<Msg>) {
        let most_in_flight = self.pool.instances() + 1;
        let mut in_flight = 0;
        let mut open = true;
        loop {
            let now = Instant::now();
            while in_flight < most_in_flight
                && let Some(group) = self.state.next_batch(now, self.max_batch_size)
            {
                self.launch(group);
                in_flight += 1;
            }
            if in_flight == most_in_flight {
                self.state.purge(now);
            }
            for late in self.state.take_expired() {
                self.time_out(late, now);
            }
            self.stats.queue_depth(self.state.len());
            if !open && self.state.is_empty() {
                return;
            }
            // While every slot is taken, only a deadline (or a message) wakes us.
            let wakeup = if in_flight < most_in_flight {
                self.state.next_wakeup(now)
            } else {
                self.state.next_deadline()
            };
            let first = match wakeup {
                Some(at) => inbox.recv_deadline(at),
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let first = match first {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                // Cannot happen while `done` is held; stop rather than spin if it does.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Take in what has arrived by now, so the next group sees it all.
            let waiting = inbox.len();
            for msg in std::iter::once(first).chain(inbox.try_iter().take(waiting)) {
                match msg {
                    Msg::Request(request) => self.admit(request),
                    Msg::Done => in_flight -= 1,
                    Msg::Close => {
                        open = false;
                        self.state.drain();
                    }
                }
            }
        }
    }

    fn admit(&mut self, request: Request<Reply>) {
        if request.reply.is_closed() {
            return;
        }
        if let Err(Overloaded { request, queued }) = self.state.append(request) {
            let model = self.pool.metadata().name.clone();
            let _ = request.reply.send(Err(Error::Overloaded { model, queued }));
        }
    }

    fn time_out(&self, request: Request<Reply>, now: Instant) {
        let waited = now - request.enqueued;
        self.stats.answered(false, waited);
        let _ = request.reply.send(Err(Error::Timeout {
            model: self.pool.metadata().name.clone(),
            waited_ms: waited.as_millis() as u64,
        }));
    }

    fn launch(&self, group: Vec<Request<Reply>>) {
        let enqueued = group[0].enqueued;
        // The latest deadline of the group, if every member has one.
        let deadlines: Option<Vec<Instant>> = group.iter().map(|r| r.deadline).collect();
        let answer_by = deadlines.and_then(|d| d.into_iter().max());
        let mut batches = Vec::with_capacity(group.len());
        let mut members = Vec::with_capacity(group.len());
        for request in group {
            members.push(Member {
                rows: request.batch.rows,
                enqueued: request.enqueued,
                reply: request.reply,
            });
            batches.push(request.batch);
        }
        let waiter = Group {
            model: self.pool.metadata().name.clone(),
            members,
            stats: self.stats.clone(),
            done: self.done.clone(),
        };
        self.pool.submit_job(Job {
            batch: concat::concat(batches),
            enqueued,
            // Deadlines were checked as the group formed; it starts once a slot is free.
            deadline: None,
            answer_by,
            waiter: Box::new(waiter),
        });
    }
}

struct Member {
    rows: usize,
    enqueued: Instant,
    reply: Reply,
}

/// The requests of one backend call: each gets its rows of the outputs, or the error.
struct Group {
    model: String,
    members: Vec<Member>,
    stats: Arc<ModelStats>,
    done: Sender<Msg>,
}

impl Waiter for Group {
    fn is_closed(&self) -> bool {
        self.members.iter().all(|m| m.reply.is_closed())
    }

    fn complete(mut self: Box<Self>, result: Result<Vec<Tensor>>, started: Option<Instant>) {
        let members = std::mem::take(&mut self.members);
        let rows: Vec<usize> = members.iter().map(|m| m.rows).collect();
        let shares = result.and_then(|outputs| {
            concat::split(outputs, &rows).map_err(|message| Error::Inference {
                model: self.model.clone(),
                message,
            })
        });
        let mut shares = shares.map(Vec::into_iter);
        for member in members {
            let result = match &mut shares {
                Ok(shares) => Ok(shares.next().expect("one share per request")),
                Err(e) => Err(e.clone()),
            };
            if let Some(started) = started {
                self.stats.queued(started - member.enqueued);
            }
            self.stats
                .answered(result.is_ok(), member.enqueued.elapsed());
            let _ = member.reply.send(result);
        }
    }
}

impl Drop for Group {
    /// Answered, skipped or dropped unrun: either way its slot is free again.
    fn drop(&mut self) {
        let _ = self.done.send(Msg::Done);
    }
}

#[cfg(test)]
mod tests;
