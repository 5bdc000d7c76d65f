//! The records stored as redb values and the one place that encodes and decodes them (bincode 2 through serde).
//! Owns the byte layout of every value; knows nothing of transactions, batching or policies.

use super::StoreError;
use crate::codec::{PacketId, Properties, ProtocolLevel, PublishProperties, QoS, UserProperties};
use crate::message::{Grant, Message};
use crate::topic::TopicName;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StoreError::Encode {
        table,
        reason: e.to_string(),
    })
}

fn decode<'a, T: Deserialize<'a>>(
    table: &'static str,
    key: impl FnOnce() -> String,
    bytes: &'a [u8],
) -> Result<T, StoreError> {
    let corrupt = |key: String, reason: String| StoreError::Decode { table, key, reason };
    match bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(corrupt(
            key(),
            format!("{} trailing bytes", bytes.len() - used),
        )),
        Err(e) => Err(corrupt(key(), e.to_string())),
    }
}

/// The wire level byte for storage, so reordering `ProtocolLevel` never changes stored data.
pub(crate) fn level_to_u8(level: ProtocolLevel) -> u8 {
    level.as_u8()
}

/// The protocol level for a stored level byte.
fn level_from_u8(value: u8) -> Option<ProtocolLevel> {
    match value {
        3 => Some(ProtocolLevel::V31),
        4 => Some(ProtocolLevel::V311),
        5 => Some(ProtocolLevel::V5),
        _ => None,
    }
}

/// A persistent session as stored in the `sessions` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// Protocol level byte of the last CONNECT.
    pub level: u8,
    /// When the session was first created.
    pub created_at_ms: u64,
    /// When the client was last connected.
    pub last_seen_ms: u64,
    /// How long after `last_seen_ms` the session may be discarded; `None` keeps it forever.
    pub expiry_interval_ms: Option<u64>,
}

impl SessionRecord {
    /// The protocol level of the stored level byte, or a decode error naming the session.
    pub fn protocol_level(&self, client: &str) -> Result<ProtocolLevel, StoreError> {
        level_from_u8(self.level).ok_or_else(|| StoreError::Decode {
            table: SESSIONS,
            key: format!("{client:?}"),
            reason: format!("protocol level {}", self.level),
        })
    }
}

const SESSIONS: &str = "sessions";
const MESSAGES: &str = "messages";
const QUEUE: &str = "queue";

/// Encodes a session record.
pub(crate) fn encode_session(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    encode(SESSIONS, record)
}

/// Decodes a session record stored under `client`.
pub(crate) fn decode_session(client: &str, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    decode(SESSIONS, || format!("{client:?}"), bytes)
}

/// Serialises a payload as one byte string rather than a sequence of numbers (same bytes, far faster).
fn payload_as_bytes<S: Serializer>(payload: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(payload)
}

/// A message body as stored in `messages` (with its reference count) and `retained` (refs unused).
#[derive(Debug, Serialize, Deserialize)]
struct MessageRecord<'a> {
    topic: &'a str,
    qos: u8,
    retain: bool,
    #[serde(serialize_with = "payload_as_bytes")]
    payload: &'a [u8],
    arrived_at_ms: u64,
    refs: u32,
    /// The MQTT 5.0 message properties (schema version 2).
    properties: Option<PropertiesRecord>,
}

/// The MQTT 5.0 properties a stored message keeps (section 3.3.2.3): what subscribers must receive unchanged.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PropertiesRecord {
    payload_format_indicator: Option<u8>,
    message_expiry_interval: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    /// Serialized as the list of (name, value) pairs schema version 2 has always stored.
    user_properties: UserProperties,
}

impl PropertiesRecord {
    fn of(p: &Properties) -> PropertiesRecord {
        PropertiesRecord {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.as_deref().map(str::to_owned),
            response_topic: p.response_topic.as_deref().map(str::to_owned),
            correlation_data: p.correlation_data.as_deref().map(<[u8]>::to_vec),
            user_properties: p.user_properties.clone(),
        }
    }

    fn into_properties(self) -> Properties {
        Properties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            content_type: self.content_type.map(Into::into),
            response_topic: self.response_topic.map(Into::into),
            correlation_data: self.correlation_data.map(Bytes::from),
            user_properties: self.user_properties,
            ..Properties::default()
        }
    }
}

/// Packs a subscription grant for the `subscriptions` table: the options byte (QoS, No Local, Retain As
/// Published, as in SUBSCRIBE) in the low 8 bits, the Subscription Identifier (0 for none) above.
pub(crate) fn grant_to_u64(grant: &Grant) -> u64 {
    let options = grant.qos().as_u8()
        | u8::from(grant.no_local()) << 2
        | u8::from(grant.retain_as_published()) << 3;
    u64::from(options) | u64::from(grant.id().unwrap_or(0)) << 8
}

/// The grant packed by `grant_to_u64`, or why the value cannot be one.
pub(crate) fn grant_from_u64(value: u64) -> Result<Grant, String> {
    let options = (value & 0xFF) as u8;
    let qos = QoS::from_u8(options & 0b11).ok_or_else(|| format!("QoS {}", options & 0b11))?;
    let id =
        u32::try_from(value >> 8).map_err(|_| format!("subscription identifier {}", value >> 8))?;
    Ok(Grant::new(
        qos,
        options & 0b100 != 0,
        options & 0b1000 != 0,
        (id != 0).then_some(id),
    ))
}

/// Encodes a message body with its reference count, borrowing the payload.
pub(crate) fn encode_message(
    table: &'static str,
    message: &Message,
    refs: u32,
) -> Result<Vec<u8>, StoreError> {
    encode(
        table,
        &MessageRecord {
            topic: message.topic.as_str(),
            qos: message.qos.as_u8(),
            retain: message.retain,
            payload: &message.payload,
            arrived_at_ms: message.arrived_at_ms,
            refs,
            properties: message
                .properties
                .as_deref()
                .map(|p| PropertiesRecord::of(&p.to_properties())),
        },
    )
}

/// Decodes a message body stored under `key` in `table`, returning the message and its reference count.
pub(crate) fn decode_message(
    table: &'static str,
    key: impl FnOnce() -> String + Clone,
    bytes: &[u8],
) -> Result<(Message, u32), StoreError> {
    let mut record: MessageRecord<'_> = decode(table, key.clone(), bytes)?;
    let corrupt = |reason: String| StoreError::Decode {
        table,
        key: key.clone()(),
        reason,
    };
    let properties = match record.properties.take() {
        Some(p) => PublishProperties::from_properties(&p.into_properties())
            .map_err(|e| corrupt(e.to_string()))?
            .boxed(),
        None => None,
    };
    let topic = TopicName::new(record.topic).map_err(|e| corrupt(e.to_string()))?;
    let qos = QoS::from_u8(record.qos).ok_or_else(|| corrupt(format!("QoS {}", record.qos)))?;
    let message = Message {
        topic,
        payload: Bytes::copy_from_slice(record.payload),
        qos,
        retain: record.retain,
        arrived_at_ms: record.arrived_at_ms,
        properties,
    };
    Ok((message, record.refs))
}

const WILLS: &str = "wills";

/// Encodes a delayed will: its due time, big-endian, then the message record.
pub(crate) fn encode_will(due_ms: u64, message: &Message) -> Result<Vec<u8>, StoreError> {
    let mut out = due_ms.to_be_bytes().to_vec();
    out.extend(encode_message(WILLS, message, 0)?);
    Ok(out)
}

/// Decodes a delayed will stored under `client`.
pub(crate) fn decode_will(client: &str, bytes: &[u8]) -> Result<(u64, Message), StoreError> {
    let key = || format!("{client:?}");
    let Some((due, body)) = bytes.split_first_chunk::<8>() else {
        return Err(StoreError::Decode {
            table: WILLS,
            key: key(),
            reason: "shorter than its due time".to_owned(),
        });
    };
    let (message, _) = decode_message(WILLS, key, body)?;
    Ok((u64::from_be_bytes(*due), message))
}

/// The reference count and size (topic plus payload bytes) of a stored body, without copying it.
pub(crate) fn message_refs_and_size(id: u64, bytes: &[u8]) -> Result<(u32, u32), StoreError> {
    let record: MessageRecord<'_> = decode(MESSAGES, || id.to_string(), bytes)?;
    Ok((
        record.refs,
        body_size(record.topic.len(), record.payload.len()),
    ))
}

/// Re-encodes a stored body with a new reference count.
pub(crate) fn message_with_refs(id: u64, bytes: &[u8], refs: u32) -> Result<Vec<u8>, StoreError> {
    let mut record: MessageRecord<'_> = decode(MESSAGES, || id.to_string(), bytes)?;
    record.refs = refs;
    encode(MESSAGES, &record)
}

/// The size a message counts for in queue limits: topic plus payload bytes, saturating at `u32::MAX`.
pub(crate) fn body_size(topic_len: usize, payload_len: usize) -> u32 {
    u32::try_from(topic_len.saturating_add(payload_len)).unwrap_or(u32::MAX)
}

/// Where an outbound queue entry stands in its QoS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StateRecord {
    /// Waiting to be sent.
    Queued,
    /// PUBLISH sent with this packet id, awaiting PUBACK or PUBREC.
    PublishSent(u16),
    /// PUBREL sent with this packet id, awaiting PUBCOMP; the body is released.
    PubRelSent(u16),
}

impl StateRecord {
    /// Whether the entry still holds a reference to its message body.
    pub fn holds_body(self) -> bool {
        !matches!(self, StateRecord::PubRelSent(_))
    }
}

/// One entry of a session's outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueRecord {
    /// The body in `messages`.
    pub message: u64,
    /// Delivery QoS byte.
    pub qos: u8,
    /// Topic plus payload bytes, so queue sizes are known without reading bodies.
    pub bytes: u32,
    /// Handshake state.
    pub state: StateRecord,
    /// RETAIN to send (a Retain As Published subscription of a retained message; schema version 2).
    pub retain: bool,
    /// The Subscription Identifiers the delivery carries (MQTT 5.0; schema version 2).
    pub subscription_ids: Vec<u32>,
}

impl QueueRecord {
    /// The delivery QoS, or a decode error naming the entry.
    pub fn qos(&self, client: &str, seq: u64) -> Result<QoS, StoreError> {
        QoS::from_u8(self.qos).ok_or_else(|| StoreError::Decode {
            table: QUEUE,
            key: format!("({client:?}, {seq})"),
            reason: format!("QoS {}", self.qos),
        })
    }
}

/// Encodes a queue entry.
pub(crate) fn encode_queue(record: &QueueRecord) -> Result<Vec<u8>, StoreError> {
    encode(QUEUE, record)
}

/// Decodes the queue entry stored under `(client, seq)`.
pub(crate) fn decode_queue(
    client: &str,
    seq: u64,
    bytes: &[u8],
) -> Result<QueueRecord, StoreError> {
    decode(QUEUE, || format!("({client:?}, {seq})"), bytes)
}

/// A packet id read from storage, or a decode error naming where it was found.
pub(crate) fn stored_packet_id(
    table: &'static str,
    key: impl FnOnce() -> String,
    value: u16,
) -> Result<PacketId, StoreError> {
    PacketId::new(value).ok_or_else(|| StoreError::Decode {
        table,
        key: key(),
        reason: "packet id 0".to_string(),
    })
}
