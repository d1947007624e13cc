//! `--idle-poll-us`: keep the server's CPUs from going to sleep for a while after each
//! request.
//!
//! A CPU with nothing to run halts, and on a virtual machine waking it again is slow: on
//! the project's 2-vCPU VM each wake-up (a request arriving, a model call finishing on
//! another thread) costs ~35 µs, more than the server's own work for a small model. With
//! a window set, one thread per CPU the process may use spins while the latest request
//! is younger than the window, then parks until the next one. The spinners run in the
//! lowest scheduling class (`SCHED_IDLE`), so the process's own threads preempt them at
//! once, and they yield every 20 µs to anything else; they only stand in for the idle
//! loop. While as many requests are in flight as there are CPUs, the CPUs are busy anyway
//! and the spinners nap instead (spinning there cost 8–15 % of perf_analyzer's rate at 64
//! clients). The price is CPU time at low load — up to the window × the CPUs after each
//! request, shown as busy by `top` and billed by a cloud — so it is off by default and
//! meant for latency-bound deployments.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The spinning threads; dropping this stops and joins them.
#[derive(Debug)]
pub struct IdlePoll {
    shared: Arc<Shared>,
    spinners: Vec<JoinHandle<()>>,
    /// The spinners' kernel thread ids, for inspection (`/proc/self/task/<tid>`).
    tids: Vec<i32>,
}

#[derive(Debug)]
struct Shared {
    window_ns: u64,
    origin: Instant,
    /// Nanoseconds from `origin` to the end of the window the latest
    /// [`IdlePoll::touch`] opened; 0 before the first.
    awake_until: AtomicU64,
    /// Spinners parked (or about to park) for want of recent requests.
    parked: AtomicUsize,
    /// Inference requests being answered; at `cpus` or more the CPUs have work and the
    /// spinners stand aside.
    in_flight: AtomicUsize,
    cpus: usize,
    /// Spin slices run, for tests.
    slices: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn window_open(&self) -> bool {
        self.now_ns() < self.awake_until.load(Ordering::SeqCst)
    }
}

impl IdlePoll {
    /// Starts one spinner per CPU in the process's affinity mask, each pinned to its
    /// CPU in `SCHED_IDLE`. The window starts closed: nothing spins until the first
    /// [`touch`](Self::touch).
    pub fn start(window: Duration) -> std::io::Result<IdlePoll> {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let cpus = sys::allowed_cpus()?;
        let shared = Arc::new(Shared {
            window_ns,
            origin: Instant::now(),
            awake_until: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            cpus: cpus.len(),
            slices: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let mut spinners = Vec::new();
        let mut tids = Vec::new();
        let poll = |spinners: Vec<JoinHandle<()>>, tids: Vec<i32>| IdlePoll {
            shared: shared.clone(),
            spinners,
            tids,
        };
        for cpu in cpus {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tb-idle-poll-{cpu}"))
                .spawn(move || {
                    let setup = sys::pin_and_demote(cpu);
                    let ok = setup.is_ok();
                    let _ = ready_tx.send(setup);
                    if ok {
                        spin(&shared);
                    }
                });
            let handle = match spawned {
                Ok(handle) => handle,
                Err(e) => {
                    drop(poll(spinners, tids));
                    return Err(e);
                }
            };
            let setup = ready_rx.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "an idle-poll thread died while starting",
                ))
            });
            spinners.push(handle);
            match setup {
                Ok(tid) => tids.push(tid),
                Err(e) => {
                    drop(poll(spinners, tids));
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("--idle-poll-us: cannot set up the spinner for CPU {cpu}: {e}"),
                    ));
                }
            }
        }
        Ok(poll(spinners, tids))
    }

    /// Marks a request in flight until the guard drops; the window opens at both ends.
    pub fn request(&self) -> InFlight<'_> {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self)
    }

    /// Marks activity: the CPUs stay awake for the window from now.
    pub fn touch(&self) {
        let shared = &self.shared;
        let until = shared.now_ns().saturating_add(shared.window_ns);
        shared.awake_until.store(until, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        for handle in &self.spinners {
            handle.thread().unpark();
        }
    }

    /// How many spin slices the spinners have run so far.
    pub fn slices_spun(&self) -> u64 {
        self.shared.slices.load(Ordering::Relaxed)
    }

    /// How many spinners there are (one per CPU the process may run on).
    pub fn spinners(&self) -> usize {
        self.spinners.len()
    }

    /// The spinners' kernel thread ids.
    pub fn thread_ids(&self) -> &[i32] {
        &self.tids
    }

    /// How many spinners are parked, the window having closed.
    pub fn parked(&self) -> usize {
        self.shared.parked.load(Ordering::SeqCst)
    }
}

/// An inference request being answered (see [`IdlePoll::request`]).
#[derive(Debug)]
pub struct InFlight<'a>(&'a IdlePoll);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        // The window counts from the answer too: the client's next request follows it.
        self.0.touch();
    }
}

impl Drop for IdlePoll {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake_all();
        for handle in self.spinners.drain(..) {
            let _ = handle.join();
        }
    }
}

/// How long a spinner spins between yields to whatever else wants its CPU.
const SPIN_SLICE: Duration = Duration::from_micros(20);

/// How long a spinner sleeps before looking again while the server is busy.
const BUSY_NAP: Duration = Duration::from_millis(1);

/// A spinner's life: spin while the window is open, park while it is closed.
fn spin(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.window_open() {
            if shared.in_flight.load(Ordering::Relaxed) >= shared.cpus {
                // As many requests as CPUs: they keep the CPUs busy; spinning would only
                // take turns with them.
                std::thread::sleep(BUSY_NAP);
                continue;
            }
            shared.slices.fetch_add(1, Ordering::Relaxed);
            let slice_end = Instant::now() + SPIN_SLICE;
            while Instant::now() < slice_end {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            // `SCHED_IDLE` loses to a woken task of this process at once, but not always
            // to one of another cgroup (a kernel worker, softirq processing): that one
            // would wait for the window to close. Yielding bounds its wait to a slice.
            std::thread::yield_now();
            continue;
        }
        // Announce the park before the last look, so that a `touch` either sees the
        // count and unparks, or is seen here.
        shared.parked.fetch_add(1, Ordering::SeqCst);
        if !shared.window_open() && !shared.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        shared.parked.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(target_os = "linux")]
mod sys {
    /// The CPUs this process may run on.
    pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the call writes at most its size.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            set
        };
        // SAFETY: `set` is initialised; the index is below CPU_SETSIZE.
        let cpus = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect();
        Ok(cpus)
    }

    /// Pins the calling thread to `cpu` and moves it to `SCHED_IDLE`; returns its thread id.
    pub fn pin_and_demote(cpu: usize) -> std::io::Result<i32> {
        // SAFETY: plain system calls on the calling thread (pid 0) with initialised arguments.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let param = libc::sched_param { sched_priority: 0 };
            if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(libc::gettid())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "--idle-poll-us needs Linux (SCHED_IDLE)",
        ))
    }

    pub fn pin_and_demote(_cpu: usize) -> std::io::Result<i32> {
        unreachable!("no CPUs are listed off Linux")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn spinners_park_until_touched_and_park_again_after_the_window() {
        // A window far longer than the touches' spacing: only a 300 ms stall of this thread
        // could close it between them.
        let poll = IdlePoll::start(Duration::from_millis(300)).unwrap();
        let n = poll.spinners();
        assert!(n >= 1);
        wait_for("every spinner to park before any request", || {
            poll.parked() == n
        });
        poll.touch();
        wait_for("the spinners to wake on a request", || poll.parked() == 0);
        // Touching again within the window keeps them awake.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(10));
            poll.touch();
            assert_eq!(poll.parked(), 0, "a spinner parked inside the window");
        }
        wait_for("the spinners to park once the window closed", || {
            poll.parked() == n
        });
    }

    #[test]
    fn spinners_stand_aside_while_as_many_requests_as_cpus_are_in_flight() {
        let poll = IdlePoll::start(Duration::from_secs(3600)).unwrap();
        let busy: Vec<_> = (0..poll.spinners()).map(|_| poll.request()).collect();
        // A spinner that looked before the last request arrived may finish its slice.
        std::thread::sleep(Duration::from_millis(20));
        let before = poll.slices_spun();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(poll.slices_spun(), before, "spun while the CPUs were busy");
        drop(busy);
        wait_for(
            "the spinners to spin once requests are fewer than CPUs",
            || poll.slices_spun() > before,
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn spinners_run_in_sched_idle_one_per_allowed_cpu() {
        let poll = IdlePoll::start(Duration::from_millis(5)).unwrap();
        let policies: Vec<String> = poll
            .thread_ids()
            .iter()
            .map(|tid| {
                let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
                // Field 41 (policy), counted after the parenthesised name.
                let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                after_name.split(' ').nth(38).unwrap().to_string()
            })
            .collect();
        assert_eq!(policies.len(), poll.spinners());
        assert_eq!(poll.spinners(), sys::allowed_cpus().unwrap().len());
        let sched_idle = libc::SCHED_IDLE.to_string();
        assert!(policies.iter().all(|p| *p == sched_idle), "{policies:?}");
    }

    #[test]
    fn dropping_stops_spinning_threads() {
        let poll = IdlePoll::start(Duration::from_secs(3600)).unwrap();
        poll.touch();
        let shared = poll.shared.clone();
        drop(poll);
        assert_eq!(Arc::strong_count(&shared), 1, "a spinner outlived the drop");
    }
}
