//! Answers to the client (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP) held until what they promise is
//! stored. Owns their order: an answer leaves only after every earlier one has, as [MQTT-4.6.0-2..4] require.

use crate::codec::Packet;
use std::collections::{BTreeSet, VecDeque};

/// Identifies one store commit (or router round trip) that outputs of the core wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Answers in the order they were earned, each released when its ticket is complete.
///
/// Tickets are issued in increasing order and an answer's ticket is never older than the one before it,
/// so a completed ticket is forgotten as soon as the first waiting answer carries a newer one.
#[derive(Debug, Default)]
pub struct AckQueue {
    waiting: VecDeque<(Option<Ticket>, Packet)>,
    done: BTreeSet<Ticket>,
}

impl AckQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `packet`, to be released once `ticket` (if any) is complete and all earlier packets are released.
    pub fn push(&mut self, ticket: Option<Ticket>, packet: Packet) {
        self.waiting.push_back((ticket, packet));
    }

    /// Marks a ticket as complete.
    pub fn complete(&mut self, ticket: Ticket) {
        self.done.insert(ticket);
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Number of answers waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Hands every packet that may now be sent to `send`, in order.
    pub fn release(&mut self, mut send: impl FnMut(Packet)) {
        while let Some((ticket, _)) = self.waiting.front() {
            if ticket.is_some_and(|t| !self.done.contains(&t)) {
                break;
            }
            if let Some((_, packet)) = self.waiting.pop_front() {
                send(packet);
            }
        }
        let oldest_waiting = self.waiting.iter().find_map(|(t, _)| *t);
        while let Some(first) = self.done.first().copied() {
            if oldest_waiting.is_some_and(|w| first >= w) {
                break;
            }
            self.done.pop_first();
        }
        if self.waiting.is_empty() && self.waiting.capacity() > 16 {
            // A burst is over: do not keep its high-water mark for an idle connection.
            self.waiting = VecDeque::new();
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
        q.push(Some(Ticket(1)), puback(1));
        q.push(None, puback(2));
        assert!(drain(&mut q).is_empty());
        q.complete(Ticket(1));
        assert_eq!(drain(&mut q), vec![puback(1), puback(2)]);
        assert!(q.is_empty());
    }

    #[test]
    fn tickets_completing_out_of_order_release_in_order() {
        let mut q = AckQueue::new();
        q.push(Some(Ticket(1)), puback(1));
        q.push(None, Packet::PingResp);
        q.push(Some(Ticket(1)), puback(2));
        q.push(Some(Ticket(2)), puback(3));
        q.complete(Ticket(2));
        assert!(drain(&mut q).is_empty());
        q.complete(Ticket(1));
        assert_eq!(
            drain(&mut q),
            vec![puback(1), Packet::PingResp, puback(2), puback(3)]
        );
        assert!(q.done.is_empty(), "completed tickets are forgotten");
    }

    #[test]
    fn a_completed_ticket_behind_a_pending_one_is_remembered() {
        let mut q = AckQueue::new();
        q.push(Some(Ticket(1)), puback(1));
        q.push(Some(Ticket(2)), puback(2));
        q.complete(Ticket(2));
        assert!(drain(&mut q).is_empty());
        assert!(q.done.contains(&Ticket(2)));
        q.complete(Ticket(1));
        assert_eq!(drain(&mut q), vec![puback(1), puback(2)]);
        assert!(q.done.is_empty());
    }
}
