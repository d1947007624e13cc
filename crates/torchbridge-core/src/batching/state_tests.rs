use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::*;
use crate::Tensor;

/// A reply handle that names its request and can be closed from the outside.
#[derive(Debug, Clone)]
struct Handle {
    id: u32,
    closed: Arc<AtomicBool>,
}

impl Reply for Handle {
    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

const DELAY: Duration = Duration::from_millis(10);
const MAX: usize = 8;

fn state(preferred: &[u32], max_queue_size: u32) -> State<Handle> {
    State::new(&BatchingConfig {
        max_queue_delay_us: DELAY.as_micros() as u64,
        preferred_batch_sizes: preferred.to_vec(),
        max_queue_size,
        max_queue_wait_us: None,
    })
}

fn request(id: u32, rows: usize, width: i64, at: Instant) -> Request<Handle> {
    let x = Tensor::from_slice(
        "X",
        vec![rows as i64, width],
        &vec![0f32; rows * width as usize],
    );
    Request {
        batch: Batch {
            inputs: vec![x.unwrap()],
            rows,
        },
        enqueued: at,
        deadline: None,
        reply: Handle {
            id,
            closed: Arc::default(),
        },
    }
}

/// Appends single-row requests of width 16 with ids `ids`, all at `at`.
fn fill(s: &mut State<Handle>, ids: std::ops::Range<u32>, at: Instant) {
    for id in ids {
        s.append(request(id, 1, 16, at)).unwrap();
    }
}

fn ids(group: &[Request<Handle>]) -> Vec<u32> {
    group.iter().map(|r| r.reply.id).collect()
}

#[test]
fn a_lone_request_waits_out_the_delay_then_runs() {
    let t0 = Instant::now();
    let mut s = state(&[], 16);
    assert_eq!(s.next_wakeup(t0), None);
    fill(&mut s, 0..1, t0);
    assert!(s.next_batch(t0, MAX).is_none());
    assert_eq!(s.next_wakeup(t0), Some(t0 + DELAY));
    assert!(s.next_batch(t0 + DELAY / 2, MAX).is_none());
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![0]);
    assert!(s.is_empty() && s.next_batch(t0 + DELAY * 2, MAX).is_none());
}

#[test]
fn a_full_batch_runs_at_once_in_arrival_order() {
    let t0 = Instant::now();
    let mut s = state(&[], 64);
    fill(&mut s, 0..11, t0);
    assert_eq!(
        ids(&s.next_batch(t0, MAX).unwrap()),
        (0..8).collect::<Vec<_>>()
    );
    // Three left: not full, so they wait for the oldest one's delay.
    assert!(s.next_batch(t0, MAX).is_none());
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![8, 9, 10]);
}

#[test]
fn requests_are_taken_whole_and_order_is_kept() {
    let t0 = Instant::now();
    let mut s = state(&[], 64);
    for (id, rows) in [(0, 3), (1, 4), (2, 2), (3, 1)] {
        s.append(request(id, rows, 16, t0)).unwrap();
    }
    // 3 + 4 = 7; the 2-row request would make 9, so the group is complete without it,
    // and the 1-row request behind it does not jump the queue.
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 1]);
    assert!(s.next_batch(t0, MAX).is_none());
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![2, 3]);
}

#[test]
fn max_batch_size_is_never_exceeded() {
    let t0 = Instant::now();
    let mut s = state(&[3, 5], 1024);
    let mut rows_of = Vec::new();
    let mut seed = 7u32;
    for id in 0..300 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let rows = 1 + (seed >> 16) as usize % MAX;
        let width = if seed & 1 == 0 { 16 } else { 8 };
        rows_of.push(rows);
        s.append(request(id, rows, width, t0)).unwrap();
    }
    let mut seen = Vec::new();
    while let Some(group) = s.next_batch(t0 + DELAY, MAX) {
        let rows: usize = group.iter().map(|r| r.batch.rows).sum();
        assert!((1..=MAX).contains(&rows), "a group of {rows} rows");
        assert!(group.iter().all(|r| r.fits_with(&group[0])));
        seen.extend(ids(&group));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..300).collect::<Vec<_>>(),
        "each request exactly once"
    );
}

#[test]
fn preferred_sizes_release_early() {
    let t0 = Instant::now();
    let mut s = state(&[4, 6], 64);
    fill(&mut s, 0..3, t0);
    assert!(s.next_batch(t0, MAX).is_none(), "3 is no preferred size");
    fill(&mut s, 3..4, t0);
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 1, 2, 3]);
    // Five at hand: 4 is reached, 6 is not, so the first four go and one waits.
    fill(&mut s, 4..9, t0);
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![4, 5, 6, 7]);
    assert!(s.next_batch(t0, MAX).is_none());
    // Seven at hand (one old, six new): the largest preferred size reached is 6.
    fill(&mut s, 9..15, t0);
    assert_eq!(
        ids(&s.next_batch(t0, MAX).unwrap()),
        (8..14).collect::<Vec<_>>()
    );
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![14]);
}

#[test]
fn an_arrival_completes_a_group_only_when_that_group_can_go() {
    let t0 = Instant::now();
    let mut s = state(&[4], 64);
    assert!(!s.last_completes_group(t0, MAX), "nothing queued");
    fill(&mut s, 0..3, t0);
    assert!(
        !s.last_completes_group(t0, MAX),
        "3 rows: not preferred, not full"
    );
    // A request of another shape does not complete the first group, nor its own.
    s.append(request(3, 1, 8, t0)).unwrap();
    assert!(!s.last_completes_group(t0, MAX));
    fill(&mut s, 4..5, t0);
    assert!(
        s.last_completes_group(t0, MAX),
        "4 rows of width 16: preferred"
    );
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 1, 2, 4]);
    // A full batch completes its group with no preferred size reached on the way.
    let mut s = state(&[], 64);
    s.append(request(0, 5, 16, t0)).unwrap();
    assert!(!s.last_completes_group(t0, MAX));
    s.append(request(1, 3, 16, t0)).unwrap();
    assert!(s.last_completes_group(t0, MAX), "5 + 3 rows fill {MAX}");
    // Past the oldest's delay its group is ready whatever arrives.
    let mut s = state(&[], 64);
    fill(&mut s, 0..1, t0);
    fill(&mut s, 1..2, t0 + DELAY);
    assert!(s.last_completes_group(t0 + DELAY, MAX));
}

#[test]
fn multi_row_requests_reach_preferred_sizes_by_rows() {
    let t0 = Instant::now();
    let mut s = state(&[4], 64);
    s.append(request(0, 2, 16, t0)).unwrap();
    s.append(request(1, 3, 16, t0)).unwrap();
    assert!(
        s.next_batch(t0, MAX).is_none(),
        "2 then 5 rows: never exactly 4"
    );
    s.append(request(2, 1, 16, t0)).unwrap();
    assert!(s.next_batch(t0, MAX).is_none());
    let mut s = state(&[4], 64);
    s.append(request(0, 3, 16, t0)).unwrap();
    s.append(request(1, 1, 16, t0)).unwrap();
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 1]);
}

#[test]
fn shapes_and_datatypes_group_apart() {
    let t0 = Instant::now();
    let mut s = state(&[3], 64);
    s.append(request(0, 1, 16, t0)).unwrap();
    s.append(request(1, 1, 8, t0)).unwrap();
    s.append(request(2, 1, 16, t0)).unwrap();
    let mut wide = request(3, 1, 16, t0);
    wide.batch.inputs[0] = Tensor::from_slice("X", vec![1, 16], &[0f64; 16]).unwrap();
    s.append(wide).unwrap();
    assert!(s.next_batch(t0, MAX).is_none(), "two FP32 of width 16 only");
    s.append(request(4, 1, 16, t0)).unwrap();
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 2, 4]);
    // A younger group that is ready does not wait behind an older one that is not.
    let t1 = t0 + Duration::from_millis(1);
    fill(&mut s, 5..8, t1);
    s.append(request(8, 1, 8, t1)).unwrap();
    assert_eq!(ids(&s.next_batch(t1, MAX).unwrap()), vec![5, 6, 7]);
    // Out of delay, the rest goes group by group, oldest first.
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![1, 8]);
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![3]);
    assert!(s.is_empty());
}

#[test]
fn a_full_queue_refuses_and_keeps_what_it_holds() {
    let t0 = Instant::now();
    let mut s = state(&[], 2);
    fill(&mut s, 0..2, t0);
    let refused = s.append(request(2, 1, 16, t0)).unwrap_err();
    assert_eq!(refused, Overloaded { queued: 2 });
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![0, 1]);
    fill(&mut s, 3..4, t0);
}

#[test]
fn requests_past_their_deadline_are_set_aside_not_run() {
    let t0 = Instant::now();
    let mut s = state(&[], 64);
    let mut late = request(0, 1, 16, t0);
    late.deadline = Some(t0 + Duration::from_millis(2));
    s.append(late).unwrap();
    let mut fine = request(1, 1, 16, t0);
    fine.deadline = Some(t0 + DELAY * 2);
    s.append(fine).unwrap();
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(2)));
    assert_eq!(s.next_wakeup(t0), Some(t0 + Duration::from_millis(2)));
    assert!(s.next_batch(t0 + Duration::from_millis(2), MAX).is_none());
    assert_eq!(ids(&s.take_expired()), vec![0]);
    assert!(s.take_expired().is_empty());
    assert_eq!(s.next_wakeup(t0), Some(t0 + DELAY));
    assert_eq!(ids(&s.next_batch(t0 + DELAY, MAX).unwrap()), vec![1]);
    // `purge` alone finds them too (the scheduler uses it while every instance is busy).
    let mut late = request(2, 1, 16, t0);
    late.deadline = Some(t0);
    s.append(late).unwrap();
    s.purge(t0);
    assert!(s.is_empty());
    assert_eq!(ids(&s.take_expired()), vec![2]);
}

#[test]
fn requests_nobody_waits_for_are_set_aside_unrun() {
    let t0 = Instant::now();
    let mut s = state(&[], 64);
    fill(&mut s, 0..8, t0);
    let gone = request(8, 1, 16, t0);
    let closed = gone.reply.closed.clone();
    s.append(gone).unwrap();
    s.queue[2].reply.closed.store(true, Relaxed);
    closed.store(true, Relaxed);
    // 7 left: no longer a full batch.
    assert!(s.next_batch(t0, MAX).is_none());
    let group = s.next_batch(t0 + DELAY, MAX).unwrap();
    assert_eq!(ids(&group), vec![0, 1, 3, 4, 5, 6, 7]);
    // Answered (to nobody) and counted as failed, like the expired ones.
    assert_eq!(ids(&s.take_expired()), vec![2, 8]);
    assert!(s.is_empty());
}

#[test]
fn draining_releases_everything_at_once() {
    let t0 = Instant::now();
    let mut s = state(&[], 64);
    fill(&mut s, 0..3, t0);
    s.append(request(3, 1, 8, t0)).unwrap();
    s.drain();
    assert_eq!(s.next_wakeup(t0), Some(t0));
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![0, 1, 2]);
    assert_eq!(ids(&s.next_batch(t0, MAX).unwrap()), vec![3]);
    assert_eq!(s.next_wakeup(t0), None);
}
