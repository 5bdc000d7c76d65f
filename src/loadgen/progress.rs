//! Shared run counters, the once-a-second progress line on stderr, and the watch that ends a phase.
//! Owns when a phase is over (done, timed out or stalled); never touches a socket.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the supervisor checks whether the phase is over.
const POLL: Duration = Duration::from_millis(20);

/// Counters updated by the connection tasks, once per batch rather than once per message.
#[derive(Debug, Default)]
pub struct Counters {
    /// PUBLISH packets written by publishers.
    pub sent: AtomicU64,
    /// Publishes acknowledged to publishers (PUBACK or PUBCOMP).
    pub acked: AtomicU64,
    /// PUBLISH packets received by subscribers.
    pub received: AtomicU64,
    /// Tasks of the current phase that have finished.
    pub finished: AtomicU32,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> [u64; 3] {
        [
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        ]
    }
}

/// Why a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every task finished.
    Completed,
    /// The run's `--timeout` passed.
    TimedOut,
    /// No counter moved for `--stall` seconds.
    Stalled,
}

/// The stop signal handed to every task; it flips to `true` once.
pub type StopRx = watch::Receiver<bool>;

/// Resolves once `stop` is raised (or its sender is gone).
pub async fn stopped(stop: &mut StopRx) {
    let _ = stop.wait_for(|&s| s).await;
}

/// Watches one phase of a run: prints progress and decides when it is over.
#[derive(Debug)]
pub struct Supervisor {
    /// Name shown at the start of progress lines.
    pub label: String,
    /// Names of the three counters in progress lines.
    pub names: [&'static str; 3],
    /// Suppresses the progress lines.
    pub quiet: bool,
    /// When the whole run must end.
    pub deadline: Instant,
    /// How long counters may stand still before the phase is abandoned.
    pub stall: Duration,
}

impl Supervisor {
    /// Waits until `tasks` tasks have counted themselves finished, the deadline passes or the counters stall.
    ///
    /// Raises `stop` when the phase ends for any reason other than completion.
    pub async fn watch(
        &self,
        counters: &Arc<Counters>,
        tasks: u32,
        stop: &watch::Sender<bool>,
    ) -> Ending {
        let started = Instant::now();
        let mut last = counters.snapshot();
        let mut last_move = started;
        let mut next_report = started + Duration::from_secs(1);
        let mut last_received = last[2];
        let ending = loop {
            if counters.finished.load(Ordering::Acquire) >= tasks {
                break Ending::Completed;
            }
            let now = Instant::now();
            if now >= self.deadline {
                break Ending::TimedOut;
            }
            let snap = counters.snapshot();
            if snap != last {
                last = snap;
                last_move = now;
            } else if now.duration_since(last_move) >= self.stall {
                break Ending::Stalled;
            }
            if now >= next_report {
                self.report(started, &snap, snap[2] - last_received);
                last_received = snap[2];
                next_report += Duration::from_secs(1);
            }
            tokio::time::sleep(POLL).await;
        };
        if ending != Ending::Completed {
            let _ = stop.send(true);
        }
        ending
    }

    fn report(&self, started: Instant, snap: &[u64; 3], received_last_second: u64) {
        if self.quiet {
            return;
        }
        eprintln!(
            "[{} {:>4}s] {} {:>10}  {} {:>10}  {} {:>11}  (+{}/s)",
            self.label,
            started.elapsed().as_secs(),
            self.names[0],
            snap[0],
            self.names[1],
            snap[1],
            self.names[2],
            snap[2],
            received_last_second
        );
    }
}
