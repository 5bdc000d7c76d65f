//! Unit tests of the store against real redb files in temporary directories.
//! Shared helpers here; one file per area.

mod batching;
mod fixture;
mod limits;
mod model;
mod open;
mod refs;
mod tables;

use super::*;
use crate::topic::TopicName;
use bytes::Bytes;
use std::path::Path;

pub(super) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_owned(),
        ..StoreConfig::default()
    }
}

pub(super) fn open(config: &StoreConfig) -> (StoreHandle, Recovered, StoreWorker) {
    Store::open(config).unwrap()
}

pub(super) fn cid(id: &str) -> ClientId {
    ClientId::new(id.to_owned())
}

pub(super) fn msg(topic: &str, payload: &[u8], qos: QoS) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic.to_owned()).unwrap(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain: false,
        arrived_at_ms: 1_700_000_000_000,
        properties: None,
    })
}

pub(super) fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

pub(super) fn write(handle: &StoreHandle, ops: Vec<StoreOp>) -> Result<(), StoreError> {
    handle.write(ops).blocking_recv().unwrap()
}

pub(super) fn queue(handle: &StoreHandle, client: &str) -> Vec<QueuedMessage> {
    handle
        .read_queue(cid(client), 0, usize::MAX)
        .blocking_recv()
        .unwrap()
        .unwrap()
}

pub(super) fn seqs(handle: &StoreHandle, client: &str) -> Vec<u64> {
    queue(handle, client).iter().map(|q| q.seq).collect()
}

pub(super) fn store_message(id: u64, message: &Arc<Message>) -> StoreOp {
    StoreOp::StoreMessage {
        id: MessageId(id),
        message: Arc::clone(message),
    }
}

pub(super) fn enqueue(client: &str, seq: u64, id: u64, qos: QoS) -> StoreOp {
    StoreOp::Enqueue {
        retain: false,
        subscription_ids: Vec::new(),
        client_id: cid(client),
        seq,
        message: MessageId(id),
        qos,
    }
}

pub(super) fn create(client: &str, now_ms: u64) -> StoreOp {
    StoreOp::CreateSession {
        client_id: cid(client),
        level: ProtocolLevel::V311,
        now_ms,
    }
}

/// Stored message bodies, counted through a read-only handle beside the writer.
pub(super) fn bodies(dir: &Path) -> u64 {
    Store::open_read_only(dir).unwrap().message_count().unwrap()
}

/// Holds the writer until the returned sender is dropped, so requests pile up into one batch.
pub(super) fn pause(handle: &StoreHandle) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel();
    handle.tx.send(Command::Pause(held)).unwrap();
    release
}

pub(super) fn mark_sent(client: &str, seq: u64, packet_id: u16) -> StoreOp {
    StoreOp::MarkSent {
        client_id: cid(client),
        seq,
        packet_id: pid(packet_id),
    }
}

pub(super) fn mark_released(client: &str, seq: u64, packet_id: u16) -> StoreOp {
    StoreOp::MarkReleased {
        client_id: cid(client),
        seq,
        packet_id: pid(packet_id),
    }
}

pub(super) fn remove(client: &str, seq: u64) -> StoreOp {
    StoreOp::Remove {
        client_id: cid(client),
        seq,
    }
}
