//! Answers to the client (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP) held until what they promise is
//! stored. Owns their order: an answer leaves only after every earlier one has, as [MQTT-4.6.0-2..4] require.

use crate::codec::{Ack, Packet, SubAck, UnsubAck};
use std::collections::{BTreeSet, VecDeque};

/// Identifies one store commit (or router round trip) that outputs of the core wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Issues tickets in increasing order, which the answer queue relies on.
#[derive(Debug, Default)]
pub struct Tickets(u64);

impl Tickets {
    /// The next ticket.
    pub fn issue(&mut self) -> Ticket {
        self.0 += 1;
        Ticket(self.0)
    }
}

/// An answer to the client, kept small while it waits (a SUBACK's return codes are boxed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// PUBACK.
    PubAck(Ack),
    /// PUBREC.
    PubRec(Ack),
    /// PUBREL.
    PubRel(Ack),
    /// PUBCOMP.
    PubComp(Ack),
    /// SUBACK.
    SubAck(Box<SubAck>),
    /// UNSUBACK.
    UnsubAck(Box<UnsubAck>),
    /// PINGRESP.
    PingResp,
}

impl From<Answer> for Packet {
    fn from(answer: Answer) -> Packet {
        match answer {
            Answer::PubAck(id) => Packet::PubAck(id),
            Answer::PubRec(id) => Packet::PubRec(id),
            Answer::PubRel(id) => Packet::PubRel(id),
            Answer::PubComp(id) => Packet::PubComp(id),
            Answer::SubAck(ack) => Packet::SubAck(*ack),
            Answer::UnsubAck(ack) => Packet::UnsubAck(*ack),
            Answer::PingResp => Packet::PingResp,
        }
    }
}

/// Answers in the order they were earned, each released when its ticket is complete.
///
/// Tickets are issued in increasing order and an answer's ticket is never older than the one before it,
/// so a completed ticket is forgotten as soon as the first waiting answer carries a newer one.
#[derive(Debug, Default)]
pub struct AckQueue(Option<Box<Waiting>>);

/// The answers of a queue that has some, and the tickets completed ahead of them.
#[derive(Debug, Default)]
struct Waiting {
    waiting: VecDeque<(Option<Ticket>, Answer)>,
    done: BTreeSet<Ticket>,
    /// How many of `waiting` are PUBACKs and PUBCOMPs: answers that end a client's QoS 1/2 exchange.
    ending: usize,
}

/// Whether an answer ends a client's QoS 1/2 exchange (PUBACK, PUBCOMP).
fn ends_exchange(answer: &Answer) -> bool {
    matches!(answer, Answer::PubAck(_) | Answer::PubComp(_))
}

impl AckQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `packet`, to be released once `ticket` (if any) is complete and all earlier packets are released.
    pub fn push(&mut self, ticket: Option<Ticket>, answer: Answer) {
        let inner = self.0.get_or_insert_with(Box::default);
        inner.ending += usize::from(ends_exchange(&answer));
        inner.waiting.push_back((ticket, answer));
    }

    /// PUBACKs and PUBCOMPs waiting to leave: QoS 1/2 exchanges of the client not answered yet.
    pub fn unanswered_exchanges(&self) -> usize {
        self.0.as_ref().map_or(0, |inner| inner.ending)
    }

    /// The waiting PUBACK or PUBREC of `id`, to give it an MQTT 5.0 reason code.
    pub fn publish_answer(&mut self, id: crate::codec::PacketId) -> Option<&mut Ack> {
        let inner = self.0.as_mut()?;
        inner
            .waiting
            .iter_mut()
            .rev()
            .find_map(|(_, answer)| match answer {
                Answer::PubAck(ack) | Answer::PubRec(ack) if ack.packet_id == id => Some(ack),
                _ => None,
            })
    }

    /// The commit behind `ticket` failed: the PUBACKs and PUBRECs waiting for it, with `reason` (MQTT 5.0),
    /// in order; everything that was waiting is dropped, since the connection closes.
    pub fn fail(&mut self, ticket: Ticket, reason: crate::codec::ReasonCode) -> Vec<Packet> {
        let Some(inner) = self.0.take() else {
            return Vec::new();
        };
        inner
            .waiting
            .into_iter()
            .filter(|(t, _)| *t == Some(ticket))
            .filter_map(|(_, answer)| match answer {
                Answer::PubAck(mut ack) => {
                    ack.reason = reason;
                    Some(Packet::PubAck(ack))
                }
                Answer::PubRec(mut ack) => {
                    ack.reason = reason;
                    Some(Packet::PubRec(ack))
                }
                _ => None,
            })
            .collect()
    }

    /// Sets the reason codes of the UNSUBACK waiting for `ticket` (MQTT 5.0).
    pub fn set_unsuback_codes(&mut self, ticket: Ticket, codes: Vec<crate::codec::ReasonCode>) {
        let Some(inner) = &mut self.0 else {
            return;
        };
        for (t, answer) in inner.waiting.iter_mut() {
            if let (Some(t), Answer::UnsubAck(ack)) = (t, answer) {
                if *t == ticket {
                    ack.reason_codes = codes;
                    return;
                }
            }
        }
    }

    /// Marks a ticket as complete.
    pub fn complete(&mut self, ticket: Ticket) {
        if let Some(inner) = &mut self.0 {
            inner.done.insert(ticket);
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of answers waiting.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |inner| inner.waiting.len())
    }

    /// Hands every answer that may now be sent to `send`, in order.
    pub fn release(&mut self, mut send: impl FnMut(Packet)) {
        let Some(inner) = &mut self.0 else {
            return;
        };
        while let Some((ticket, _)) = inner.waiting.front() {
            if ticket.is_some_and(|t| !inner.done.contains(&t)) {
                break;
            }
            if let Some((_, answer)) = inner.waiting.pop_front() {
                inner.ending -= usize::from(ends_exchange(&answer));
                send(answer.into());
            }
        }
        let oldest_waiting = inner.waiting.iter().find_map(|(t, _)| *t);
        while let Some(first) = inner.done.first().copied() {
            if oldest_waiting.is_some_and(|w| first >= w) {
                break;
            }
            inner.done.pop_first();
        }
        // Nothing waits: an idle connection keeps no buffer (the next answer allocates one again).
        if inner.waiting.is_empty() {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn puback(id: u16) -> Answer {
        Answer::PubAck(crate::codec::PacketId::new(id).unwrap().into())
    }

    fn drain(q: &mut AckQueue) -> Vec<Answer> {
        let mut out = Vec::new();
        q.release(|p| {
            out.push(match p {
                Packet::PubAck(id) => Answer::PubAck(id),
                Packet::PingResp => Answer::PingResp,
                other => panic!("unexpected {other:?}"),
            })
        });
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
        q.push(None, Answer::PingResp);
        q.push(Some(Ticket(1)), puback(2));
        q.push(Some(Ticket(2)), puback(3));
        q.complete(Ticket(2));
        assert!(drain(&mut q).is_empty());
        q.complete(Ticket(1));
        assert_eq!(
            drain(&mut q),
            vec![puback(1), Answer::PingResp, puback(2), puback(3)]
        );
        assert!(q.0.is_none(), "an idle queue keeps nothing");
    }

    #[test]
    fn a_completed_ticket_behind_a_pending_one_is_remembered() {
        let mut q = AckQueue::new();
        q.push(Some(Ticket(1)), puback(1));
        q.push(Some(Ticket(2)), puback(2));
        q.complete(Ticket(2));
        assert!(drain(&mut q).is_empty());
        assert!(q.0.as_ref().unwrap().done.contains(&Ticket(2)));
        q.complete(Ticket(1));
        assert_eq!(drain(&mut q), vec![puback(1), puback(2)]);
        assert!(q.0.is_none());
    }
}
