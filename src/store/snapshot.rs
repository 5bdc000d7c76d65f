//! One consistent read transaction over the tables, with the reads an operator needs: sessions, queues, retained.
//! Used by `StoreReader` (a read-only file handle) and by the writer thread's inspect requests; never writes.

use super::limits::QueueSize;
use super::read::{self, QueueTally};
use super::reader::{summary, CountTables, SessionSummary};
use super::tables;
use super::{QueuedMessage, StoreError};
use crate::codec::{ClientId, PacketId};
use crate::message::Message;
use crate::topic::TopicFilter;
use redb::{ReadTransaction, ReadableTableMetadata};
use std::sync::Arc;

/// Queue figures of every session together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueTotals {
    /// Sessions with at least one queue entry holding a message.
    pub sessions: u64,
    /// Queue entries holding a message (waiting, or sent and awaiting acknowledgement).
    pub messages: u64,
    /// Topic plus payload bytes of those entries.
    pub bytes: u64,
}

impl QueueTotals {
    /// The sum of per-session queue sizes.
    pub(crate) fn of(sizes: impl Iterator<Item = QueueSize>) -> QueueTotals {
        sizes.fold(QueueTotals::default(), |acc, size| QueueTotals {
            sessions: acc.sessions + u64::from(size.messages > 0),
            messages: acc.messages + size.messages,
            bytes: acc.bytes + size.bytes,
        })
    }
}

/// A point-in-time view of the database for inspection.
pub struct Snapshot {
    txn: ReadTransaction,
    totals: Option<QueueTotals>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    /// A view over `txn`; `totals` are the writer's running figures when it has them.
    pub(crate) fn new(txn: ReadTransaction, totals: Option<QueueTotals>) -> Snapshot {
        Snapshot { txn, totals }
    }

    /// Every persistent session with its counts, in client id order.
    pub fn sessions(&self) -> Result<Vec<SessionSummary>, StoreError> {
        let tallies = read::tally_queues(&self.txn.open_table(tables::QUEUE)?)?;
        let sessions = self.txn.open_table(tables::SESSIONS)?;
        let counts = CountTables::open(&self.txn)?;
        let mut out = Vec::new();
        for item in sessions.range::<&str>(..)? {
            let (key, value) = item?;
            let client = key.value();
            let tally = tallies
                .get(&ClientId::new(client.to_owned()))
                .copied()
                .unwrap_or_default();
            out.push(summary(&counts, client, value.value(), tally)?);
        }
        Ok(out)
    }

    /// One session with its counts, `None` if there is no such session.
    pub fn session(&self, client_id: &str) -> Result<Option<SessionSummary>, StoreError> {
        let sessions = self.txn.open_table(tables::SESSIONS)?;
        let Some(value) = sessions.get(client_id)? else {
            return Ok(None);
        };
        let tally = read::tally_client(&self.txn.open_table(tables::QUEUE)?, client_id)?;
        let counts = CountTables::open(&self.txn)?;
        Ok(Some(summary(&counts, client_id, value.value(), tally)?))
    }

    /// The subscriptions of a session with their granted QoS.
    pub fn subscriptions(
        &self,
        client_id: &str,
    ) -> Result<Vec<(TopicFilter, crate::message::Grant)>, StoreError> {
        read::subscriptions(&self.txn.open_table(tables::SUBSCRIPTIONS)?, client_id)
    }

    /// Up to `limit` queue entries of a session after `after_seq` (0 for the start), inflight ones included.
    pub fn queue(
        &self,
        client_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let queue = self.txn.open_table(tables::QUEUE)?;
        let messages = self.txn.open_table(tables::MESSAGES)?;
        read::queue_page(&queue, &messages, client_id, after_seq, limit)
    }

    /// The inbound QoS 2 packet ids of a session awaiting PUBREL.
    pub fn incoming_qos2(&self, client_id: &str) -> Result<Vec<PacketId>, StoreError> {
        read::incoming_qos2(&self.txn.open_table(tables::INCOMING_QOS2)?, client_id)
    }

    /// Every retained message, in topic order.
    pub fn retained(&self) -> Result<Vec<Arc<Message>>, StoreError> {
        read::retained(&self.txn.open_table(tables::RETAINED)?)
    }

    /// Number of stored message bodies (each shared by the queue entries naming it).
    pub fn message_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(tables::MESSAGES)?.len()?)
    }

    /// Number of persistent sessions.
    pub fn session_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(tables::SESSIONS)?.len()?)
    }

    /// Number of subscriptions of all persistent sessions.
    pub fn subscription_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(tables::SUBSCRIPTIONS)?.len()?)
    }

    /// Queue figures of all sessions: the writer's running figures, or one pass over the queue table.
    pub fn queue_totals(&self) -> Result<QueueTotals, StoreError> {
        if let Some(totals) = self.totals {
            return Ok(totals);
        }
        let tallies = read::tally_queues(&self.txn.open_table(tables::QUEUE)?)?;
        Ok(QueueTotals::of(tallies.values().map(QueueTally::held)))
    }
}
