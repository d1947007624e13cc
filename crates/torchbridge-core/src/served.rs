use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::batching::Scheduler;
use crate::company::CompanyProbe;
use crate::pool::{Caller, Waiting};
use crate::{
    Batch, BatchingConfig, CallTrace, Error, InstancePool, ModelMetadata, ModelStats, OutputLabels,
    Result, Tensor,
};

/// A model ready to serve: its instance pool, behind a dynamic-batching scheduler when
/// the config has a `[batching]` table. What the registry and the library facade hold;
/// `Send + Sync`, so share it behind an `Arc`.
#[derive(Debug)]
pub struct ServedModel {
    pool: Arc<InstancePool>,
    batching: Option<(Scheduler, BatchingConfig)>,
    /// Whether a lone async caller first yields to let others arrive.
    company: CompanyProbe,
    labels: OutputLabels,
}

impl From<InstancePool> for ServedModel {
    /// Requests go straight to the pool, one backend call each.
    fn from(pool: InstancePool) -> Self {
        ServedModel {
            pool: Arc::new(pool),
            batching: None,
            company: CompanyProbe::default(),
            labels: OutputLabels::default(),
        }
    }
}

impl ServedModel {
    /// Serves `pool`, batching requests together when `batching` is given (the model
    /// must have a batch dimension: `max_batch_size > 0`).
    pub fn new(pool: InstancePool, batching: Option<&BatchingConfig>) -> Result<Self> {
        let Some(config) = batching else {
            return Ok(pool.into());
        };
        let meta = pool.metadata();
        if meta.max_batch_size == 0 {
            return Err(Error::Load {
                model: meta.name.clone(),
                bridge: "batching",
                message: "`[batching]` needs `max_batch_size` > 0".into(),
            });
        }
        let pool = Arc::new(pool);
        let scheduler = Scheduler::start(pool.clone(), config)?;
        Ok(ServedModel {
            pool,
            batching: Some((scheduler, config.clone())),
            company: CompanyProbe::default(),
            labels: OutputLabels::default(),
        })
    }

    /// Names the classes of outputs (from their `labels` files), for classification
    /// answers.
    /// A labels file whose count is not the output's class count is kept (Triton shows
    /// the classes past it by index) and logged as a warning.
    pub fn with_labels(mut self, labels: OutputLabels) -> Self {
        for output in &self.metadata().outputs {
            let (Some(names), Some(&classes)) = (labels.get(&output.name), output.dims.last())
            else {
                continue;
            };
            if classes > 0 && names.len() as i64 != classes {
                tracing::warn!(
                    model = %self.metadata().name,
                    "the labels of output `{}` name {} classes, but it has {classes}; \
                     classes without a name are answered by index",
                    output.name,
                    names.len()
                );
            }
        }
        self.labels = labels;
        self
    }

    /// The class names of the outputs whose config names a labels file.
    pub fn labels(&self) -> &OutputLabels {
        &self.labels
    }

    pub fn metadata(&self) -> &ModelMetadata {
        self.pool.metadata()
    }

    /// Counters of this model's requests and backend calls.
    pub fn stats(&self) -> &ModelStats {
        self.pool.stats()
    }

    pub fn instances(&self) -> usize {
        self.pool.instances()
    }

    /// The dynamic batching settings, when requests are batched.
    pub fn batching(&self) -> Option<&BatchingConfig> {
        self.batching.as_ref().map(|(_, config)| config)
    }

    /// Queues a checked batch (from [`ModelMetadata::prepare`]); the receiver yields its
    /// outputs. A request not started by `deadline` is answered [`Error::Timeout`] and
    /// never run; one whose receiver is dropped first is never run either. With batching
    /// on, a full queue answers [`Error::Overloaded`]. While every instance is stuck
    /// (see [`crate::InstanceHealth`]) it is refused at once with [`Error::NotReady`]
    /// rather than queued behind calls that may never return.
    pub fn submit(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        self.check_not_stuck()?;
        self.enqueue(batch, deadline, None)
    }

    /// [`ServedModel::submit`] once the stuck check is done.
    fn enqueue(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        trace: Option<Arc<CallTrace>>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        match &self.batching {
            None => self.pool.submit_traced(batch, deadline, trace),
            Some((scheduler, _)) => scheduler.submit_traced(batch, deadline, trace),
        }
    }

    /// Why the model can serve nothing although it is loaded (every instance broken, see
    /// [`Backend::broken`](crate::Backend::broken)); `None` when it can. Model readiness
    /// and the repository index report it; requests are still taken, so that one can
    /// find the instances recovered.
    pub fn broken(&self) -> Option<String> {
        self.stats().health.all_broken()
    }

    /// While every instance is stuck, a request is refused at once rather than queued
    /// behind calls that may never return.
    fn check_not_stuck(&self) -> Result<()> {
        let health = &self.stats().health;
        if health.all_stuck(Instant::now()) {
            return Err(Error::NotReady {
                model: self.metadata().name.clone(),
                reason: format!(
                    "all {} of its instances are stuck on calls that ran past their \
                     requests' deadlines; retry once one returns",
                    health.instances()
                ),
            });
        }
        Ok(())
    }

    /// Whether a call could run on the caller's thread now: a lone caller, an engine that
    /// may run on any thread, a deadline not yet passed, and batching that would not hold
    /// it anyway (no queue delay configured, nothing queued).
    fn may_run_here(&self, deadline: Option<Instant>) -> bool {
        // The cheap tests first: under load there are other callers, and the queue's
        // lock is left alone.
        let waits = || match &self.batching {
            Some((scheduler, config)) => config.max_queue_delay_us > 0 || !scheduler.is_idle(),
            None => false,
        };
        self.pool.alone()
            && self.pool.runs_on_any_thread()
            && !waits()
            && deadline.is_none_or(|d| d > Instant::now())
    }

    /// Runs `batch` on the calling thread when [`ServedModel::may_run_here`] and the
    /// pool's own `run_here` (an idle instance) allow it. Otherwise the batch comes back.
    fn run_here(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        caller: Caller,
        trace: &Option<Arc<CallTrace>>,
    ) -> std::result::Result<Result<Vec<Tensor>>, Batch> {
        if !self.may_run_here(deadline) {
            return Err(batch);
        }
        self.pool.run_here(batch, caller, trace)
    }

    /// Runs a checked batch and awaits its outputs.
    pub async fn run(&self, batch: Batch) -> Result<Vec<Tensor>> {
        self.run_with_deadline(batch, None).await
    }

    /// As [`ServedModel::run`], answered [`Error::Timeout`] if not started by `deadline`.
    pub async fn run_with_deadline(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>> {
        self.run_traced(batch, deadline, None).await
    }

    /// As [`ServedModel::run_with_deadline`]; with a `trace`, records in it when the
    /// request was queued and the call that carried it (see [`CallTrace`]).
    pub async fn run_traced(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        trace: Option<Arc<CallTrace>>,
    ) -> Result<Vec<Tensor>> {
        self.check_not_stuck()?;
        let _waiting = InFlight::new(self);
        if self.may_run_here(deadline) && self.company.should_yield() {
            // Let the runtime take in what else has arrived first (see `company`).
            tokio::task::yield_now().await;
            self.company.found(!self.may_run_here(deadline));
        }
        let batch = match self.run_here(batch, deadline, Caller::Async, &trace) {
            Ok(result) => return result,
            Err(batch) => batch,
        };
        let rx = self.enqueue(batch, deadline, trace)?;
        rx.await.unwrap_or_else(|_| Err(self.unavailable()))
    }

    /// Runs a checked batch and waits, blocking this thread (never on an async runtime).
    pub fn run_blocking(&self, batch: Batch) -> Result<Vec<Tensor>> {
        self.run_blocking_with_deadline(batch, None)
    }

    /// As [`ServedModel::run_blocking`], answered [`Error::Timeout`] if not started by
    /// `deadline`.
    pub fn run_blocking_with_deadline(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>> {
        self.check_not_stuck()?;
        let _waiting = InFlight::new(self);
        let batch = match self.run_here(batch, deadline, Caller::Blocking, &None) {
            Ok(result) => return result,
            Err(batch) => batch,
        };
        let rx = self.enqueue(batch, deadline, None)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.unavailable()))
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable(self.metadata().name.clone())
    }
}

/// Counts a request as waiting (for the pool's lone-caller rule) and in the in-flight
/// gauge while its caller waits for it (a cancelled await counts down too).
struct InFlight<'a> {
    stats: &'a ModelStats,
    _waiting: Waiting<'a>,
}

impl<'a> InFlight<'a> {
    fn new(model: &'a ServedModel) -> Self {
        model.stats().in_flight(1.0);
        InFlight {
            stats: model.stats(),
            _waiting: model.pool.waiting(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight(-1.0);
    }
}
