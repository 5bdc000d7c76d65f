//! Acknowledgements (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK) held until what they promise is stored.
//! Owns their order: an acknowledgement leaves only after every earlier one has, as [MQTT-4.6.0-2..4] require.

use crate::codec::Packet;
use std::collections::{HashSet, VecDeque};

/// Identifies one store commit an acknowledgement waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// Acknowledgements in the order they were earned, each released when its batch is durable.
#[derive(Debug, Default)]
pub struct AckQueue {
    waiting: VecDeque<(Option<BatchId>, Packet)>,
    done: HashSet<BatchId>,
    next_batch: u64,
}

impl AckQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new batch identifier for a store write that acknowledgements will wait for.
    pub fn next_batch(&mut self) -> BatchId {
        self.next_batch += 1;
        BatchId(self.next_batch)
    }

    /// Queues `packet`, to be released once `batch` (if any) is complete and all earlier packets are released.
    pub fn push(&mut self, batch: Option<BatchId>, packet: Packet) {
        self.waiting.push_back((batch, packet));
    }

    /// Marks a batch as durably stored.
    pub fn complete(&mut self, batch: BatchId) {
        self.done.insert(batch);
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Hands every packet that may now be sent to `send`, in order.
    pub fn release(&mut self, mut send: impl FnMut(Packet)) {
        while let Some((batch, _)) = self.waiting.front() {
            if let Some(batch) = batch {
                if !self.done.contains(batch) {
                    break;
                }
            }
            let Some((batch, packet)) = self.waiting.pop_front() else {
                break;
            };
            // A batch may cover several packets: forget it once the last of them has left.
            if let Some(batch) = batch {
                let more = self.waiting.iter().any(|(b, _)| *b == Some(batch));
                if !more {
                    self.done.remove(&batch);
                }
            }
            send(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PacketId;

    fn puback(id: u16) -> Packet {
        Packet::PubAck(PacketId::new(id).unwrap())
    }

    fn drain(q: &mut AckQueue) -> Vec<Packet> {
        let mut out = Vec::new();
        q.release(|p| out.push(p));
        out
    }

    #[test]
    fn a_later_ready_ack_waits_for_an_earlier_pending_one() {
        let mut q = AckQueue::new();
        let first = q.next_batch();
        q.push(Some(first), puback(1));
        q.push(None, puback(2));
        assert!(drain(&mut q).is_empty());
        q.complete(first);
        assert_eq!(drain(&mut q), vec![puback(1), puback(2)]);
        assert!(q.is_empty());
    }

    #[test]
    fn batches_completing_out_of_order_release_in_order() {
        let mut q = AckQueue::new();
        let a = q.next_batch();
        let b = q.next_batch();
        q.push(Some(a), puback(1));
        q.push(Some(a), puback(2));
        q.push(Some(b), puback(3));
        q.complete(b);
        assert!(drain(&mut q).is_empty());
        q.complete(a);
        assert_eq!(drain(&mut q), vec![puback(1), puback(2), puback(3)]);
    }
}
