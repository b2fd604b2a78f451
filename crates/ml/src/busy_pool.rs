//! Rayon's threads kept busy through a long piece of work made of many
//! short parallel loops, instead of falling asleep between them.
//!
//! A decoding step runs ~120 parallel products with short serial steps
//! (norms, attention, the adapter) between them; a training step ~2000
//! (projections, element-wise passes, attention) with serial stretches of
//! its own. Left alone, rayon's idle threads go to sleep in every gap and
//! every next loop pays a futex wake-up on both sides: 10-15% of a
//! decoding step's CPU time on 2 threads, and each pool thread of a
//! training step was busy only ~88% of the time. Here the work runs on one
//! of the pool's threads while the others poll for its loops' pieces until
//! it ends (llama.cpp's threads spin between operations for the same
//! reason). The pollers are not waited for: a thread busy elsewhere (an
//! import beside a chat) takes its turn to poll when it is free, by which
//! time the work may be over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `work` on one of rayon's threads (this one, inside the pool)
/// while the pool's other threads poll for work until it returns.
pub(crate) fn with_pollers<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| {
        let done = Arc::new(AtomicBool::new(false));
        let working_thread = rayon::current_thread_index();
        let flag = Arc::clone(&done);
        rayon::spawn_broadcast(move |thread| {
            if Some(thread.index()) != working_thread {
                poll_for_work(&flag, POLL_IDLE_LIMIT);
            }
        });
        // Set however the work ends, a panic included.
        let _stop = StopPolling(&done);
        work()
    })
}

/// Ends [`poll_for_work`] when dropped.
struct StopPolling<'a>(&'a AtomicBool);

impl Drop for StopPolling<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How long [`poll_for_work`] spins without finding work before it leaves
/// the thread to rayon's own idling. The serial stretches between a
/// decoding step's parallel loops (norms, one token's attention) last tens
/// of microseconds, a training step's at most a few milliseconds (the
/// loss, moving gradients into tensors), so a pass in progress keeps its pollers
/// even when its thread is preempted for a scheduler tick or two; a poller
/// that cannot see the work it waits for (see [`poll_for_work`]) costs
/// its pass this long, once.
const POLL_IDLE_LIMIT: Duration = Duration::from_millis(5);

/// Runs the pool's work as it appears until `done`, never sleeping, and
/// returns early once `idle_limit` passes without any work found. A
/// thread polling runs any work the pool has, the pass's or anyone
/// else's.
///
/// The bound is what keeps this from deadlocking. A thread waiting inside
/// a job (for the stolen half of a `join`) runs whatever it finds, the
/// broadcast poller included, on top of its stack: if that job was a
/// piece of the pass, the pass cannot end (so `done` is never set) until
/// the poller returns and the piece beneath it finishes. Seen as a hang
/// of `bench generate` under load before the bound existed.
fn poll_for_work(done: &AtomicBool, idle_limit: Duration) {
    // The clock is read every `CHECK_EVERY` idle rounds, not every round.
    const CHECK_EVERY: u32 = 64;
    let (mut idle_since, mut idle_rounds) = (None::<Instant>, 0u32);
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => (idle_since, idle_rounds) = (None, 0),
            Some(rayon::Yield::Idle) => {
                idle_rounds = idle_rounds.wrapping_add(1);
                if idle_rounds % CHECK_EVERY == 1
                    && idle_since.get_or_insert_with(Instant::now).elapsed() >= idle_limit
                {
                    return;
                }
                std::hint::spin_loop();
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poller_whose_pass_never_ends_lets_go_once_idle() {
        // The deadlock's shape: the flag is never set while the poller
        // runs (the pass waits on work beneath it). Unbounded, this spun
        // forever; a watchdog turns that into a failure, not a hung run.
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("a pool of two threads");
            let never = AtomicBool::new(false);
            let start = Instant::now();
            pool.install(|| poll_for_work(&never, Duration::from_millis(5)));
            let _ = sent.send(start.elapsed());
        });
        let waited = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the poller never let go of its thread");
        assert!(waited >= Duration::from_millis(5), "left after {waited:?}");
    }

    #[test]
    fn a_poller_still_runs_the_pools_work_and_stops_when_done() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool of two threads");
        let done = AtomicBool::new(false);
        let ran = std::sync::atomic::AtomicUsize::new(0);
        pool.in_place_scope(|scope| {
            scope.spawn(|_| {
                // Generous bound: only `done` may end this poll.
                poll_for_work(&done, Duration::from_secs(60));
            });
            for _ in 0..64 {
                scope.spawn(|_| {
                    ran.fetch_add(1, Ordering::Relaxed);
                });
            }
            scope.spawn(|_| {
                while ran.load(Ordering::Relaxed) < 64 {
                    std::hint::spin_loop();
                }
                done.store(true, Ordering::Release);
            });
        });
        assert_eq!(ran.load(Ordering::Relaxed), 64);
    }
}
