//! Dynamic batching: requests that arrive close together run as one backend call.
//!
//! Why it is built this way:
//!
//! - **Instances pull their batches.** The queue is shared, behind a mutex, by the
//!   callers that fill it and the instances that empty it. A caller appends and, if no
//!   instance is on the queue yet, hands the pool a *turn*; the instance that takes it
//!   forms a batch from what is queued at that moment, runs it, and comes back for the
//!   next until the queue is empty. Under load no batch waits pre-formed while another
//!   runs (a request that arrives meanwhile joins the next batch), and no thread sits
//!   between a caller and an instance, so a lone request costs one hand-off, not two.
//! - **A full queue refuses at once.** The queue limit is checked as the caller appends,
//!   so [`Error::Overloaded`] comes back from `submit` itself, without a thread hop.
//!   With `max_queue_wait_us`, so does a request predicted ([`mod@pace`]: the batches
//!   running, the rows ahead, the measured batch time) to wait longer than that.
//! - **The rules live in a pure [`State`]** (no threads, locks or clocks: `now` is
//!   passed in), so unit tests drive ordering, delays, preferred sizes, shape groups,
//!   the queue limit, deadlines and cancellation directly.
//! - **A timer thread for deadlines only.** While every instance is busy, nobody looks at
//!   the queue; a small thread sleeps until the nearest deadline of a queued request and
//!   answers it [`Error::Timeout`] on time. It is woken only when a request brings an
//!   earlier deadline than the one it sleeps until, so it costs nothing per request.
//! - **One copy in, none out.** A group's inputs are joined on dim 0 into one new
//!   buffer per input ([`mod@concat`]), on the instance's thread, outside the lock;
//!   outputs are split back as `Bytes` slices.
//! - **Requests whose caller left, or whose deadline passed, never run**: the former are
//!   dropped, the latter answered [`Error::Timeout`].

mod concat;
mod pace;
mod state;

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::instance::{Job, Turn, Waiter};
use crate::trace::{self, CallTimes, CallTrace, RanCall};
use crate::{Batch, BatchingConfig, Error, InstancePool, ModelStats, Result, Tensor};
use pace::{Pace, Running};
use state::{Overloaded, Request, State};

/// Who a queued request answers: its caller, and its trace when it is traced.
pub(crate) struct Reply {
    caller: oneshot::Sender<Result<Vec<Tensor>>>,
    trace: Option<Arc<CallTrace>>,
}

impl state::Reply for Reply {
    fn is_closed(&self) -> bool {
        self.caller.is_closed()
    }
}

/// A model's batching queue, as its [`crate::ServedModel`] holds it. Dropping it runs
/// what is queued, then lets the timer thread stop.
#[derive(Debug)]
pub(crate) struct Scheduler {
    queue: Arc<Queue>,
    pool: Arc<InstancePool>,
}

struct Queue {
    model: String,
    max_batch_size: usize,
    instances: usize,
    stats: Arc<ModelStats>,
    /// With `max_queue_wait_us`: the longest predicted wait admitted, and the pace of
    /// the batches that predicts it.
    admission: Option<(Duration, Arc<Mutex<Pace>>)>,
    inner: Mutex<Inner>,
    /// Instances on a turn that wait for the oldest request's delay (or a newcomer).
    work: Condvar,
    /// The timer thread sleeps here.
    timer: Condvar,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("model", &self.model).finish()
    }
}

struct Inner {
    state: State<Reply>,
    /// Turns handed to the pool and not ended yet (at most one per instance).
    turns: usize,
    /// Of those, how many wait on `work`.
    waiting: usize,
    /// The deadline the timer thread sleeps until (`None`: until it is told).
    timer_at: Option<Instant>,
    open: bool,
}

impl Scheduler {
    pub fn start(pool: Arc<InstancePool>, config: &BatchingConfig) -> Result<Self> {
        let name = pool.metadata().name.clone();
        let max_batch_size = pool.metadata().max_batch_size as usize;
        let admission = config.max_queue_wait_us.map(|us| {
            let pace = Pace::new(pool.instances(), max_batch_size);
            (Duration::from_micros(us), Arc::new(Mutex::new(pace)))
        });
        let queue = Arc::new(Queue {
            model: name.clone(),
            max_batch_size,
            instances: pool.instances(),
            stats: pool.shared_stats(),
            admission,
            inner: Mutex::new(Inner {
                state: State::new(config),
                turns: 0,
                waiting: 0,
                timer_at: None,
                open: true,
            }),
            work: Condvar::new(),
            timer: Condvar::new(),
        });
        let timer = queue.clone();
        std::thread::Builder::new()
            .name(format!("tb-{name}-timer"))
            .spawn(move || timer.keep_time())
            .map_err(|e| {
                Error::Internal(format!(
                    "model `{name}`: cannot start the batching timer's thread: {e} (the \
                     process is out of threads or memory)"
                ))
            })?;
        Ok(Scheduler { queue, pool })
    }

    /// Queues a checked batch; the receiver yields its outputs, and `trace` (when given)
    /// what became of the request. A full queue, or a predicted wait over
    /// `max_queue_wait_us`, answers [`Error::Overloaded`] at once.
    pub fn submit_traced(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        trace: Option<Arc<CallTrace>>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        let (caller, rx) = oneshot::channel();
        let request_time = Instant::now();
        let request = Request {
            batch,
            enqueued: request_time,
            deadline,
            reply: Reply { caller, trace },
        };
        let queue = &self.queue;
        let mut inner = queue.lock();
        if !inner.open {
            return Err(Error::Unavailable(queue.model.clone()));
        }
        if let Some((limit, pace)) = &queue.admission {
            let pace = pace.lock().unwrap_or_else(PoisonError::into_inner);
            let wait = pace.wait(request.enqueued, inner.state.rows());
            if wait > *limit {
                return Err(Error::Overloaded {
                    model: queue.model.clone(),
                    queued: inner.state.len(),
                    predicted_wait_us: Some(wait.as_micros() as u64),
                });
            }
        }
        if let Err(Overloaded { queued }) = inner.state.append(request) {
            return Err(Error::Overloaded {
                model: queue.model.clone(),
                queued,
                predicted_wait_us: None,
            });
        }
        queue.stats.queue_depth(inner.state.len());
        if deadline.is_some_and(|d| inner.timer_at.is_none_or(|at| d < at)) {
            queue.timer.notify_one();
        }
        let new_turn = if inner.waiting > 0 {
            // The waiting instance wakes by itself when the oldest delay ends; waking it
            // for every arrival would cost a thread switch each.
            if inner
                .state
                .last_completes_group(request_time, queue.max_batch_size)
            {
                queue.work.notify_one();
            }
            false
        } else if inner.turns < queue.instances {
            inner.turns += 1;
            true
        } else {
            false // a busy instance comes back for it
        };
        drop(inner);
        if new_turn && !self.pool.submit_turn(queue.clone()) {
            queue.lock().turns -= 1;
            return Err(Error::Unavailable(queue.model.clone()));
        }
        Ok(rx)
    }

    /// Nothing is queued and no instance is on the queue: a request could run at once.
    pub fn is_idle(&self) -> bool {
        let inner = self.queue.lock();
        inner.turns == 0 && inner.state.is_empty()
    }
}

impl Drop for Scheduler {
    /// From now on every group is released at once; the timer stops.
    fn drop(&mut self) {
        let mut inner = self.queue.lock();
        inner.open = false;
        inner.state.drain();
        let new_turn = inner.turns == 0 && !inner.state.is_empty();
        inner.turns += usize::from(new_turn);
        drop(inner);
        self.queue.work.notify_all();
        self.queue.timer.notify_one();
        if new_turn {
            self.pool.submit_turn(self.queue.clone());
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; recover the data if something ever does.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The timer thread: answers queued requests whose deadline passed while every
    /// instance was busy; stops once the scheduler is dropped.
    fn keep_time(&self) {
        let mut inner = self.lock();
        while inner.open {
            let now = Instant::now();
            inner.state.purge(now);
            let expired = inner.state.take_expired();
            if !expired.is_empty() {
                self.stats.queue_depth(inner.state.len());
                drop(inner);
                self.time_out(expired, now);
                inner = self.lock();
                continue;
            }
            inner.timer_at = inner.state.next_deadline();
            inner = match inner.timer_at {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    let waited = self.timer.wait_timeout(inner, wait);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
                None => self
                    .timer
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn time_out(&self, late: Vec<Request<Reply>>, now: Instant) {
        for request in late {
            let waited = now - request.enqueued;
            self.stats.answered(false, request.enqueued, None);
            let queued = request.enqueued;
            trace::record(&request.reply.trace, CallTimes { queued, call: None });
            let _ = request.reply.caller.send(Err(Error::Timeout {
                model: self.model.clone(),
                waited_ms: waited.as_millis() as u64,
            }));
        }
    }

    /// One backend call for a group of requests, handed out at `now`.
    fn job(&self, group: Vec<Request<Reply>>, now: Instant) -> Job {
        let enqueued = group[0].enqueued;
        // The latest time a member's caller waits for the call, if every member has one.
        let deadlines: Option<Vec<Instant>> = group
            .iter()
            .map(|r| trace::answer_by(&r.reply.trace, r.deadline))
            .collect();
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
        Job {
            batch: concat::concat(batches),
            enqueued,
            // Deadlines were checked as the group formed; it starts right away.
            deadline: None,
            answer_by,
            waiter: Box::new(Group {
                model: self.model.clone(),
                members,
                stats: self.stats.clone(),
                running: self.admission.as_ref().map(|(_, pace)| Running {
                    pace: pace.clone(),
                    since: now,
                    ran: false,
                }),
            }),
        }
    }
}

impl Turn for Queue {
    fn next_job(&self) -> Option<Job> {
        let mut inner = self.lock();
        loop {
            let now = Instant::now();
            let group = inner.state.next_batch(now, self.max_batch_size);
            let expired = inner.state.take_expired();
            if group.is_some() || !expired.is_empty() {
                self.stats.queue_depth(inner.state.len());
                if let (Some(_), Some((_, pace))) = (&group, &self.admission) {
                    // Under the queue's lock, so a caller's prediction sees this batch.
                    let mut pace = pace.lock().unwrap_or_else(PoisonError::into_inner);
                    pace.started(now);
                }
                drop(inner);
                self.time_out(expired, now);
                match group {
                    Some(group) => return Some(self.job(group, now)),
                    None => {
                        inner = self.lock();
                        continue;
                    }
                }
            }
            let Some(at) = inner.state.next_wakeup(now) else {
                inner.turns -= 1;
                return None;
            };
            inner.waiting += 1;
            let waited = self
                .work
                .wait_timeout(inner, at.saturating_duration_since(now));
            inner = waited.unwrap_or_else(PoisonError::into_inner).0;
            inner.waiting -= 1;
        }
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
    /// With admission by predicted wait: counts the batch as running until dropped.
    running: Option<Running>,
}

impl Waiter for Group {
    fn is_closed(&self) -> bool {
        self.members.iter().all(|m| m.reply.caller.is_closed())
    }

    fn starting(&self) {
        for member in &self.members {
            trace::mark_started(&member.reply.trace);
        }
    }

    fn complete(mut self: Box<Self>, result: Result<Vec<Tensor>>, ran: Option<RanCall>) {
        if let Some(running) = &mut self.running {
            running.ran = ran.is_some();
        }
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
            self.stats
                .answered(result.is_ok(), member.enqueued, ran.as_ref());
            let queued = member.enqueued;
            trace::record(&member.reply.trace, CallTimes { queued, call: ran });
            let _ = member.reply.caller.send(result);
        }
    }
}

#[cfg(test)]
mod tests;
