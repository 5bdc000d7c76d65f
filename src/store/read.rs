//! Reads shared by recovery, the writer's read requests and the read-only reader.
//! Generic over redb's `ReadableTable`, so write transactions, read transactions and read-only handles read alike; never writes.

use super::limits::QueueSize;
use super::records::{self, StateRecord};
use super::tables::{self, client_successor};
use super::{EntryState, QueuedMessage, Recovered, RecoveredSession, StoreError};
use crate::codec::{ClientId, PacketId};
use crate::message::Grant;
use crate::message::Message;
use crate::topic::TopicFilter;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::Arc;

/// Key and value types of the tables, as `ReadableTable` bounds name them.
pub(crate) type QueueKey = (&'static str, u64);
pub(crate) type Bytes = &'static [u8];

/// Per-session figures from one pass over the queue table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueTally {
    /// Entries waiting to be sent.
    pub queued: u64,
    /// Topic plus payload bytes of the waiting entries.
    pub queued_bytes: u64,
    /// Entries whose PUBLISH was sent.
    pub publish_sent: u64,
    /// Topic plus payload bytes of those.
    pub publish_sent_bytes: u64,
    /// Entries in the PUBREL state (no body).
    pub pubrel_sent: u64,
    /// Highest sequence number seen.
    pub last_seq: u64,
}

impl QueueTally {
    /// The entries still holding a body (waiting or PUBLISH sent) and their bytes: what the queue limits count.
    pub fn held(&self) -> QueueSize {
        QueueSize {
            messages: self.queued + self.publish_sent,
            bytes: self.queued_bytes + self.publish_sent_bytes,
        }
    }

    fn add(&mut self, seq: u64, record: &records::QueueRecord) {
        let bytes = u64::from(record.bytes);
        match record.state {
            StateRecord::Queued => {
                self.queued += 1;
                self.queued_bytes += bytes;
            }
            StateRecord::PublishSent(_) => {
                self.publish_sent += 1;
                self.publish_sent_bytes += bytes;
            }
            StateRecord::PubRelSent(_) => self.pubrel_sent += 1,
        }
        self.last_seq = self.last_seq.max(seq);
    }
}

/// Tallies every session's queue in one ordered pass.
pub(crate) fn tally_queues<Q>(queue: &Q) -> Result<HashMap<ClientId, QueueTally>, StoreError>
where
    Q: ReadableTable<QueueKey, Bytes>,
{
    let mut out: HashMap<ClientId, QueueTally> = HashMap::new();
    let mut current: Option<(ClientId, QueueTally)> = None;
    for item in queue.range::<QueueKey>(..)? {
        let (key, value) = item?;
        let (client, seq) = key.value();
        let record = records::decode_queue(client, seq, value.value())?;
        match &mut current {
            Some((id, tally)) if id.as_str() == client => tally.add(seq, &record),
            _ => {
                if let Some((id, tally)) = current.take() {
                    out.insert(id, tally);
                }
                let mut tally = QueueTally::default();
                tally.add(seq, &record);
                current = Some((ClientId::new(client.to_owned()), tally));
            }
        }
    }
    if let Some((id, tally)) = current {
        out.insert(id, tally);
    }
    Ok(out)
}

fn entry_state(client: &str, seq: u64, state: StateRecord) -> Result<EntryState, StoreError> {
    let pid = |v: u16| -> Result<PacketId, StoreError> {
        records::stored_packet_id("queue", || format!("({client:?}, {seq})"), v)
    };
    Ok(match state {
        StateRecord::Queued => EntryState::Queued,
        StateRecord::PublishSent(v) => EntryState::PublishSent(pid(v)?),
        StateRecord::PubRelSent(v) => EntryState::PubRelSent(pid(v)?),
    })
}

/// Reads a stored body by id, `None` when it is missing.
pub(crate) fn message_body<M>(messages: &M, id: u64) -> Result<Option<Message>, StoreError>
where
    M: ReadableTable<u64, Bytes>,
{
    match messages.get(id)? {
        Some(value) => {
            let (message, _) =
                records::decode_message("messages", || id.to_string(), value.value())?;
            Ok(Some(message))
        }
        None => Ok(None),
    }
}

/// Up to `limit` queue entries of `client` with `seq > after_seq`, in order, bodies attached while held.
pub(crate) fn queue_page<Q, M>(
    queue: &Q,
    messages: &M,
    client: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<QueuedMessage>, StoreError>
where
    Q: ReadableTable<QueueKey, Bytes>,
    M: ReadableTable<u64, Bytes>,
{
    let mut out = Vec::with_capacity(limit.min(1024));
    let Some(first) = after_seq.checked_add(1) else {
        return Ok(out);
    };
    for item in queue.range((client, first)..=(client, u64::MAX))? {
        if out.len() >= limit {
            break;
        }
        let (key, value) = item?;
        let seq = key.value().1;
        let record = records::decode_queue(client, seq, value.value())?;
        let qos = record.qos(client, seq)?;
        let state = entry_state(client, seq, record.state)?;
        let message = if record.state.holds_body() {
            match message_body(messages, record.message)? {
                Some(message) => Some(Arc::new(message)),
                None => {
                    log::error!(
                        "store: queue entry ({client:?}, {seq}) refers to missing message {}; skipped",
                        record.message
                    );
                    continue;
                }
            }
        } else {
            None
        };
        out.push(QueuedMessage {
            seq,
            qos,
            state,
            message,
            retain: record.retain,
            subscription_ids: record.subscription_ids,
        });
    }
    Ok(out)
}

/// The inbound QoS 2 packet ids of `client` awaiting PUBREL, ascending.
pub(crate) fn incoming_qos2<T>(table: &T, client: &str) -> Result<Vec<PacketId>, StoreError>
where
    T: ReadableTable<(&'static str, u16), ()>,
{
    let mut out = Vec::new();
    for item in table.range((client, 0u16)..=(client, u16::MAX))? {
        let (key, _) = item?;
        let value = key.value().1;
        out.push(records::stored_packet_id(
            "incoming_qos2",
            || format!("({client:?}, {value})"),
            value,
        )?);
    }
    Ok(out)
}

/// The subscriptions of `client` with their granted QoS, in filter order.
pub(crate) fn subscriptions<T>(
    table: &T,
    client: &str,
) -> Result<Vec<(TopicFilter, Grant)>, StoreError>
where
    T: ReadableTable<(&'static str, &'static str), u64>,
{
    let succ = client_successor(client);
    let mut out = Vec::new();
    for item in table.range((client, "")..(succ.as_str(), ""))? {
        let (key, value) = item?;
        let (_, filter) = key.value();
        let corrupt = |reason: String| StoreError::Decode {
            table: "subscriptions",
            key: format!("({client:?}, {filter:?})"),
            reason,
        };
        let parsed = TopicFilter::new(filter.to_owned()).map_err(|e| corrupt(e.to_string()))?;
        let grant = records::grant_from_u64(value.value()).map_err(corrupt)?;
        out.push((parsed, grant));
    }
    Ok(out)
}

/// Every retained message, in topic order.
pub(crate) fn retained<T>(table: &T) -> Result<Vec<Arc<Message>>, StoreError>
where
    T: ReadableTable<&'static str, Bytes>,
{
    let mut out = Vec::new();
    for item in table.range::<&str>(..)? {
        let (key, value) = item?;
        let topic = key.value();
        let (message, _) =
            records::decode_message("retained", || format!("{topic:?}"), value.value())?;
        out.push(Arc::new(message));
    }
    Ok(out)
}

/// Everything the broker needs at start-up, plus the queue tallies the writer's limits start from.
pub(crate) fn recover(
    db: &impl ReadableDatabase,
) -> Result<(Recovered, HashMap<ClientId, QueueTally>), StoreError> {
    let txn: ReadTransaction = db.begin_read()?;
    let sessions = txn.open_table(tables::SESSIONS)?;
    let subs = txn.open_table(tables::SUBSCRIPTIONS)?;
    let wills = txn.open_table(tables::WILLS)?;
    let queue = txn.open_table(tables::QUEUE)?;
    let messages = txn.open_table(tables::MESSAGES)?;
    let tallies = tally_queues(&queue)?;
    let mut recovered = Recovered::default();
    for item in sessions.range::<&str>(..)? {
        let (key, value) = item?;
        let client = key.value();
        let record = records::decode_session(client, value.value())?;
        let level = record.protocol_level(client)?;
        let client_id = ClientId::new(client.to_owned());
        let next_seq = tallies
            .get(&client_id)
            .map_or(0, |t| t.last_seq)
            .saturating_add(1);
        recovered.sessions.push(RecoveredSession {
            subscriptions: subscriptions(&subs, client)?,
            client_id,
            level,
            next_seq,
            last_seen_ms: record.last_seen_ms,
            will: match wills.get(client)? {
                Some(bytes) => {
                    let (due, message) = records::decode_will(client, bytes.value())?;
                    Some((due, Arc::new(message)))
                }
                None => None,
            },
            // Only MQTT 5.0 sessions store an expiry of their own, in milliseconds.
            session_expiry: record
                .expiry_interval_ms
                .map(|ms| u32::try_from(ms / 1000).unwrap_or(u32::MAX)),
        });
    }
    recovered.retained = retained(&txn.open_table(tables::RETAINED)?)?;
    recovered.next_message_id = match messages.last()? {
        Some((key, _)) => key.value().saturating_add(1),
        None => 1,
    };
    Ok((recovered, tallies))
}

/// Tallies one session's queue.
pub(crate) fn tally_client<Q>(queue: &Q, client: &str) -> Result<QueueTally, StoreError>
where
    Q: ReadableTable<QueueKey, Bytes>,
{
    let mut tally = QueueTally::default();
    for item in queue.range((client, 0u64)..=(client, u64::MAX))? {
        let (key, value) = item?;
        let seq = key.value().1;
        tally.add(seq, &records::decode_queue(client, seq, value.value())?);
    }
    Ok(tally)
}
