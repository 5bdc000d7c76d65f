//! Schema version 1: creates the tables of the first schema in an empty database.
//! Frozen once released: later versions add a step of their own instead of editing this one.

use crate::store::StoreError;
use redb::{TableDefinition, WriteTransaction};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_v1");
const SUBSCRIPTIONS: TableDefinition<(&str, &str), u8> = TableDefinition::new("subscriptions_v1");
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_v1");
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_v1");
const INCOMING_QOS2: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming_qos2_v1");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained_v1");

/// Creates every version 1 table (opening a table in a write transaction creates it).
pub(super) fn apply(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SESSIONS)?;
    txn.open_table(SUBSCRIPTIONS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(QUEUE)?;
    txn.open_table(INCOMING_QOS2)?;
    txn.open_table(RETAINED)?;
    Ok(())
}
