//! Schema version 2 (MQTT 5.0): message bodies and retained messages gain their properties, subscriptions
//! their options and identifier, queue entries the RETAIN flag and identifiers they are sent with, and a new
//! table keeps wills waiting for their delay. Copies every version 1 row into the version 2 tables, then drops the old ones.
//! Sessions keep their table: MQTT 5.0 sessions fill the expiry field version 1 already had, and level 5.
//! Frozen once released: later versions add a step of their own instead of editing this one.

use crate::store::StoreError;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, Serializer};

const SUBSCRIPTIONS_V1: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("subscriptions_v1");
const MESSAGES_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_v1");
const RETAINED_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("retained_v1");
const QUEUE_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_v1");

const SUBSCRIPTIONS_V2: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("subscriptions_v2");
const MESSAGES_V2: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_v2");
const RETAINED_V2: TableDefinition<&str, &[u8]> = TableDefinition::new("retained_v2");
const WILLS_V2: TableDefinition<&str, &[u8]> = TableDefinition::new("wills_v2");
const QUEUE_V2: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_v2");

/// Where a queue entry stands, in both versions.
#[derive(Serialize, Deserialize)]
enum EntryState {
    Queued,
    PublishSent(u16),
    PubRelSent(u16),
}

/// A queue entry of version 1.
#[derive(Deserialize)]
struct QueueV1 {
    message: u64,
    qos: u8,
    bytes: u32,
    state: EntryState,
}

/// A queue entry of version 2: version 1 with the RETAIN flag and Subscription Identifiers to send.
#[derive(Serialize)]
struct QueueV2 {
    message: u64,
    qos: u8,
    bytes: u32,
    state: EntryState,
    retain: bool,
    subscription_ids: Vec<u32>,
}

/// A version 1 queue entry re-encoded as version 2 (RETAIN 0 and no identifiers, as version 1 sent them).
fn upgrade_entry(key: String, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let config = bincode::config::standard();
    let (old, used): (QueueV1, usize) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| corrupt("queue", key.clone(), e.to_string()))?;
    if used != bytes.len() {
        return Err(corrupt("queue", key, "trailing bytes".to_owned()));
    }
    let new = QueueV2 {
        message: old.message,
        qos: old.qos,
        bytes: old.bytes,
        state: old.state,
        retain: false,
        subscription_ids: Vec::new(),
    };
    bincode::serde::encode_to_vec(&new, config).map_err(|e| StoreError::Encode {
        table: "queue",
        reason: e.to_string(),
    })
}

fn payload_as_bytes<S: Serializer>(payload: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(payload)
}

/// A message body of version 1.
#[derive(Deserialize)]
struct MessageV1<'a> {
    topic: &'a str,
    qos: u8,
    retain: bool,
    payload: &'a [u8],
    arrived_at_ms: u64,
    refs: u32,
}

/// The message properties of version 2.
#[derive(Serialize)]
struct PropertiesV2 {
    payload_format_indicator: Option<u8>,
    message_expiry_interval: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
}

/// A message body of version 2: version 1 and its properties.
#[derive(Serialize)]
struct MessageV2<'a> {
    topic: &'a str,
    qos: u8,
    retain: bool,
    #[serde(serialize_with = "payload_as_bytes")]
    payload: &'a [u8],
    arrived_at_ms: u64,
    refs: u32,
    properties: Option<PropertiesV2>,
}

fn corrupt(table: &'static str, key: String, reason: String) -> StoreError {
    StoreError::Decode { table, key, reason }
}

/// A version 1 body re-encoded as version 2 (without properties: version 1 had none).
fn upgrade_message(table: &'static str, key: String, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let config = bincode::config::standard();
    let (old, used): (MessageV1<'_>, usize) =
        bincode::serde::borrow_decode_from_slice(bytes, config)
            .map_err(|e| corrupt(table, key.clone(), e.to_string()))?;
    if used != bytes.len() {
        return Err(corrupt(table, key, "trailing bytes".to_owned()));
    }
    let new = MessageV2 {
        topic: old.topic,
        qos: old.qos,
        retain: old.retain,
        payload: old.payload,
        arrived_at_ms: old.arrived_at_ms,
        refs: old.refs,
        properties: None,
    };
    bincode::serde::encode_to_vec(&new, config).map_err(|e| StoreError::Encode {
        table,
        reason: e.to_string(),
    })
}

/// Copies every version 1 row into the version 2 tables and drops the version 1 tables.
pub(super) fn apply(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let old = txn.open_table(MESSAGES_V1)?;
        let mut new = txn.open_table(MESSAGES_V2)?;
        for item in old.iter()? {
            let (id, bytes) = item?;
            let upgraded = upgrade_message("messages", id.value().to_string(), bytes.value())?;
            new.insert(id.value(), upgraded.as_slice())?;
        }
    }
    {
        let old = txn.open_table(RETAINED_V1)?;
        let mut new = txn.open_table(RETAINED_V2)?;
        for item in old.iter()? {
            let (topic, bytes) = item?;
            let upgraded =
                upgrade_message("retained", format!("{:?}", topic.value()), bytes.value())?;
            new.insert(topic.value(), upgraded.as_slice())?;
        }
    }
    {
        let old = txn.open_table(SUBSCRIPTIONS_V1)?;
        let mut new = txn.open_table(SUBSCRIPTIONS_V2)?;
        for item in old.iter()? {
            let (key, qos) = item?;
            let (client, filter) = key.value();
            // Version 2 packs the options byte (QoS in its low bits) and the identifier (0: none).
            new.insert((client, filter), u64::from(qos.value()))?;
        }
    }
    {
        let old = txn.open_table(QUEUE_V1)?;
        let mut new = txn.open_table(QUEUE_V2)?;
        for item in old.iter()? {
            let (key, bytes) = item?;
            let (client, seq) = key.value();
            let upgraded = upgrade_entry(format!("({client:?}, {seq})"), bytes.value())?;
            new.insert((client, seq), upgraded.as_slice())?;
        }
    }
    // Wills waiting for their delay: new in version 2, empty.
    txn.open_table(WILLS_V2)?;
    txn.delete_table(MESSAGES_V1)?;
    txn.delete_table(RETAINED_V1)?;
    txn.delete_table(SUBSCRIPTIONS_V1)?;
    txn.delete_table(QUEUE_V1)?;
    Ok(())
}
