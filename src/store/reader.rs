//! Read-only access to a database file, beside a running broker or without one: what the admin command reads.
//! Owns a `ReadOnlyDatabase` opened in the writer's concurrency mode; never writes, so changes go through the broker.

use super::migrate::{self, CURRENT_VERSION};
use super::read::QueueTally;
use super::records;
use super::snapshot::Snapshot;
use super::tables::{self, client_successor};
use super::writer::{check_magic, guarded_open};
use super::{QueuedMessage, StoreError};
use crate::codec::{ClientId, PacketId, ProtocolLevel};
use crate::message::Message;
use crate::topic::TopicFilter;
use redb::{
    Builder, ConcurrencyMode, ReadOnlyDatabase, ReadOnlyTable, ReadTransaction, ReadableDatabase,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One persistent session with the figures an operator wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session's client id.
    pub client_id: ClientId,
    /// Protocol level of its last CONNECT.
    pub level: ProtocolLevel,
    /// When the session was created, in ms since the epoch.
    pub created_at_ms: u64,
    /// When the client was last seen, in ms since the epoch.
    pub last_seen_ms: u64,
    /// How long after `last_seen_ms` the session may be discarded, if set.
    pub expiry_interval_ms: Option<u64>,
    /// Number of subscriptions.
    pub subscriptions: u64,
    /// Messages waiting to be sent.
    pub queued_messages: u64,
    /// Topic plus payload bytes of the waiting messages.
    pub queued_bytes: u64,
    /// Outbound messages in a QoS 1/2 handshake (PUBLISH or PUBREL sent).
    pub inflight: u64,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: u64,
}

/// A read-only view of a harbormq database file.
pub struct StoreReader {
    db: ReadOnlyDatabase,
    path: PathBuf,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreReader {
    /// Opens the file at `path` read-only; refuses other schema versions, foreign and damaged files.
    pub(crate) fn open(path: &Path) -> Result<StoreReader, StoreError> {
        check_magic(path)?;
        let mut builder = Builder::new();
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
        let db = guarded_open(path, || builder.open_read_only(path))?;
        match migrate::stored_version(&db, path)? {
            None => Err(StoreError::NotADatabase {
                path: path.to_owned(),
                reason: "the database is empty (never initialised by the broker)".to_string(),
            }),
            Some(found) if found > CURRENT_VERSION => Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: CURRENT_VERSION,
            }),
            Some(found) if found < CURRENT_VERSION => Err(StoreError::OlderSchema {
                path: path.to_owned(),
                found,
                supported: CURRENT_VERSION,
            }),
            Some(_) => Ok(StoreReader {
                db,
                path: path.to_owned(),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the database file in bytes.
    pub fn file_size(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// A consistent view of the file as it is now; every read of one snapshot sees the same state.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::new(self.db.begin_read()?, None))
    }

    /// Every persistent session with its counts, in client id order, from one consistent snapshot.
    pub fn sessions(&self) -> Result<Vec<SessionSummary>, StoreError> {
        self.snapshot()?.sessions()
    }

    /// One session with its counts, `None` if there is no such session.
    pub fn session(&self, client_id: &str) -> Result<Option<SessionSummary>, StoreError> {
        self.snapshot()?.session(client_id)
    }

    /// The subscriptions of a session with their granted QoS.
    pub fn subscriptions(
        &self,
        client_id: &str,
    ) -> Result<Vec<(TopicFilter, crate::message::Grant)>, StoreError> {
        self.snapshot()?.subscriptions(client_id)
    }

    /// Up to `limit` queue entries of a session after `after_seq` (0 for the start), inflight ones included.
    pub fn queue(
        &self,
        client_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        self.snapshot()?.queue(client_id, after_seq, limit)
    }

    /// The inbound QoS 2 packet ids of a session awaiting PUBREL.
    pub fn incoming_qos2(&self, client_id: &str) -> Result<Vec<PacketId>, StoreError> {
        self.snapshot()?.incoming_qos2(client_id)
    }

    /// Every retained message, in topic order.
    pub fn retained(&self) -> Result<Vec<Arc<Message>>, StoreError> {
        self.snapshot()?.retained()
    }

    /// Number of stored message bodies (each shared by the queue entries naming it).
    pub fn message_count(&self) -> Result<u64, StoreError> {
        self.snapshot()?.message_count()
    }
}

/// The subscription and inbound QoS 2 tables a summary counts from, opened once per snapshot read.
pub(super) struct CountTables {
    subs: ReadOnlyTable<(&'static str, &'static str), u64>,
    qos2: ReadOnlyTable<(&'static str, u16), ()>,
}

impl CountTables {
    /// Opens both tables in `txn`.
    pub(super) fn open(txn: &ReadTransaction) -> Result<CountTables, StoreError> {
        Ok(CountTables {
            subs: txn.open_table(tables::SUBSCRIPTIONS)?,
            qos2: txn.open_table(tables::INCOMING_QOS2)?,
        })
    }
}

/// The summary of one session from its record and queue tally, counting its subscriptions and QoS 2 ids.
pub(super) fn summary(
    counts: &CountTables,
    client: &str,
    value: &[u8],
    tally: QueueTally,
) -> Result<SessionSummary, StoreError> {
    let record = records::decode_session(client, value)?;
    let level = record.protocol_level(client)?;
    let succ = client_successor(client);
    let mut subscriptions = 0;
    for item in counts.subs.range((client, "")..(succ.as_str(), ""))? {
        item?;
        subscriptions += 1;
    }
    let mut incoming_qos2 = 0;
    for item in counts.qos2.range((client, 0u16)..=(client, u16::MAX))? {
        item?;
        incoming_qos2 += 1;
    }
    Ok(SessionSummary {
        client_id: ClientId::new(client.to_owned()),
        level,
        created_at_ms: record.created_at_ms,
        last_seen_ms: record.last_seen_ms,
        expiry_interval_ms: record.expiry_interval_ms,
        subscriptions,
        queued_messages: tally.queued,
        queued_bytes: tally.queued_bytes,
        inflight: tally.publish_sent + tally.pubrel_sent,
        incoming_qos2,
    })
}
