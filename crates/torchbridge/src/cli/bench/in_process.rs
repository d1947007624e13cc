//! The in-process measure: the model loaded through each bridge ([`Model::from_dir`],
//! its config's instances and batching included), called by `--concurrency` threads in
//! a closed loop with no server: the limit a server of this model can approach.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Barrier, OnceLock};
use std::time::Instant;

use anyhow::Context;
use torchbridge::{Error, Model, Tensor};

use super::args::{InProcess, Plan};
use super::load::{Counters, Measured, Progress, Tally};
use super::report::{Run, Subject};

pub fn run(plan: &Plan, target: &InProcess) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &bridge in &target.bridges {
        // One bridge loaded at a time: the others' threads must not take its cores.
        let model = Model::from_dir(target.dir.clone(), bridge)?;
        for &batch in &plan.batches {
            let (inputs, rows) = super::workload(plan, model.metadata(), batch)?;
            model
                .infer(inputs.clone())
                .with_context(|| format!("the {bridge} bridge failed on the first call"))?;
            for &threads in &plan.concurrency {
                let label = format!("{bridge} · batch {rows} · {threads} threads");
                let measured = measure(&model, &inputs, threads, plan, label);
                runs.push(Run::new(Subject::Bridge(bridge), rows, threads, &measured));
            }
        }
    }
    Ok(runs)
}

/// One closed-loop run of `threads` callers; the clock starts when all have warmed up.
fn measure(
    model: &Model,
    inputs: &[Tensor],
    threads: usize,
    plan: &Plan,
    label: String,
) -> Measured {
    let counters = Counters::new(plan.warmup, plan.stop);
    let (warm, go) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    let start = OnceLock::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    while counters.warm_up_one() {
                        let _ = model.infer(inputs.to_vec());
                    }
                    warm.wait();
                    go.wait();
                    let start = *start.get().expect("set before the callers go");
                    let mut tally = Tally::default();
                    while counters.next(start) {
                        let sent = Instant::now();
                        match model.infer(inputs.to_vec()) {
                            Ok(_) => tally.ok(sent.elapsed()),
                            Err(e) => tally.error(kind(&e)),
                        }
                        counters.done.fetch_add(1, Relaxed);
                    }
                    tally
                })
            })
            .collect();
        warm.wait();
        let started = *start.get_or_init(Instant::now);
        go.wait();
        let _progress = Progress::start(plan.progress, label, counters.clone());
        let tallies = workers
            .into_iter()
            .map(|w| w.join().expect("a bench caller panicked"));
        Measured::new(started, tallies.collect::<Vec<_>>())
    })
}

/// A short name for an in-process failure, to count failures by kind.
fn kind(e: &Error) -> String {
    match e {
        Error::Overloaded { .. } => "overloaded".into(),
        Error::Timeout { .. } | Error::DeadlineExceeded { .. } => "timeout".into(),
        Error::InvalidInput(_) => "invalid input".into(),
        Error::Python { error, .. } => format!("python {}", error.kind),
        Error::Unavailable(_) | Error::NotReady { .. } => "unavailable".into(),
        _ => "inference failed".into(),
    }
}
