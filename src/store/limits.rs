//! Per-session queue figures kept on the writer thread, the queue limits and the rate-limited drop log.
//! Owns only in-memory accounting; the tables are changed by `apply`, which consults this first.

use super::read::QueueTally;
use super::{OverflowPolicy, QueueTotals, SessionQueueStats};
use crate::codec::ClientId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often at most a session's drops are logged.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Entries holding a body and their bytes, for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueSize {
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct DropLog {
    total: u64,
    unreported: u64,
    last_report: Option<Instant>,
}

/// The queue limits of the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_messages: u64,
    pub max_bytes: u64,
    pub overflow: OverflowPolicy,
}

/// Queue sizes per session with an undo journal, so a failed commit restores the figures of the last good one.
#[derive(Debug)]
pub(crate) struct Queues {
    limits: Limits,
    sizes: HashMap<ClientId, QueueSize>,
    undo: HashMap<ClientId, Option<QueueSize>>,
    drops: HashMap<ClientId, DropLog>,
}

impl Queues {
    /// Starts from the tallies of the queue table.
    pub fn new(limits: Limits, tallies: HashMap<ClientId, QueueTally>) -> Queues {
        let sizes = tallies.into_iter().map(|(id, t)| (id, t.held())).collect();
        Queues {
            limits,
            sizes,
            undo: HashMap::new(),
            drops: HashMap::new(),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The current size of `client`'s queue.
    pub fn size(&self, client: &ClientId) -> QueueSize {
        self.sizes.get(client).copied().unwrap_or_default()
    }

    /// Whether adding `bytes` more would take `client`'s queue over a limit.
    pub fn is_full(&self, client: &ClientId, bytes: u64) -> bool {
        let size = self.size(client);
        size.messages >= self.limits.max_messages
            || size.bytes.saturating_add(bytes) > self.limits.max_bytes
    }

    fn journal(&mut self, client: &ClientId) {
        if !self.undo.contains_key(client) {
            self.undo
                .insert(client.clone(), self.sizes.get(client).copied());
        }
    }

    /// Counts an entry holding `bytes` added to (`add`) or leaving (`!add`) `client`'s queue.
    pub fn adjust(&mut self, client: &ClientId, add: bool, bytes: u64) {
        self.journal(client);
        let size = self.sizes.entry(client.clone()).or_default();
        if add {
            size.messages += 1;
            size.bytes = size.bytes.saturating_add(bytes);
        } else {
            size.messages = size.messages.saturating_sub(1);
            size.bytes = size.bytes.saturating_sub(bytes);
        }
    }

    /// Forgets `client`'s queue (session deleted).
    pub fn remove_session(&mut self, client: &ClientId) {
        self.journal(client);
        self.sizes.remove(client);
    }

    /// The figures are committed: the journal starts afresh.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The transaction was abandoned: the figures return to those of the last commit.
    pub fn rollback(&mut self) {
        for (client, before) in self.undo.drain() {
            match before {
                Some(size) => self.sizes.insert(client, size),
                None => self.sizes.remove(&client),
            };
        }
    }

    /// Counts a message dropped from `client`'s queue, logging at most once per interval per session.
    pub fn record_drop(&mut self, client: &ClientId, now: Instant) {
        let log = self.drops.entry(client.clone()).or_default();
        log.total += 1;
        log.unreported += 1;
        let due = log
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_LOG_INTERVAL);
        if due {
            log::warn!(
                "store: queue of session {client:?} is full ({} messages / {} bytes max, policy {:?}): \
                 {} messages dropped since the last report, {} in all",
                self.limits.max_messages,
                self.limits.max_bytes,
                self.limits.overflow,
                log.unreported,
                log.total
            );
            log.unreported = 0;
            log.last_report = Some(now);
        }
    }

    /// The figures of all sessions together.
    pub fn totals(&self) -> QueueTotals {
        QueueTotals::of(self.sizes.values().copied())
    }

    /// The figures of one session.
    pub fn stats(&self, client: &ClientId) -> SessionQueueStats {
        let size = self.size(client);
        SessionQueueStats {
            messages: size.messages,
            bytes: size.bytes,
            dropped: self.drops.get(client).map_or(0, |d| d.total),
        }
    }
}
