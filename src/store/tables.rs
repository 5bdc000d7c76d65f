//! Every redb table of the current schema, with versioned names.
//! Owns table names and key/value types only: values are encoded by `records`, and migrations keep frozen copies of their own.

use redb::TableDefinition;

/// Bookkeeping of the database itself; its name never changes so every version can find it.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The key in `META` holding the schema version.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Client id -> encoded `SessionRecord`.
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_v1");

/// (client id, topic filter) -> the grant as `records::grant_to_u64` packs it: the options byte (granted QoS,
/// No Local, Retain As Published) in the low 8 bits, the Subscription Identifier (0 for none) above.
pub(crate) const SUBSCRIPTIONS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("subscriptions_v2");

/// Message id -> encoded `MessageRecord`, one body shared by every queue entry naming it.
pub(crate) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_v2");

/// (client id, sequence number) -> encoded `QueueRecord`: waiting and inflight outbound messages, in order.
pub(crate) const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_v2");

/// (client id, packet id) of inbound QoS 2 messages awaiting PUBREL.
pub(crate) const INCOMING_QOS2: TableDefinition<(&str, u16), ()> =
    TableDefinition::new("incoming_qos2_v1");

/// Topic -> encoded `MessageRecord` of the retained message, body inline.
pub(crate) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained_v2");

/// Client id -> a will waiting for its MQTT 5.0 Will Delay Interval: the due time (8 bytes, big-endian ms since
/// the epoch) followed by the encoded `MessageRecord`.
pub(crate) const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills_v2");

/// The first key after every key of `client` in a table keyed by `(client, &str)`.
///
/// No string lies strictly between `client` and `client + "\0"`, so `(client, "")..(succ, "")` is exactly the client's range.
pub(crate) fn client_successor(client: &str) -> String {
    let mut succ = String::with_capacity(client.len() + 1);
    succ.push_str(client);
    succ.push('\0');
    succ
}
