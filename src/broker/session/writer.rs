//! The outgoing bytes of a network connection: packets are encoded into a buffer, and bytes that announce
//! stored state (a PUBLISH under a recorded packet id, a PUBREL) are sealed behind a gate that opens once that
//! state is committed; every later byte waits behind it, so a client never sees what a crash could take back.
//! Owns the bytes and their gates, not the socket. Once everything is written, a buffer that is full (the one
//! CONNACK was encoded into, for an idle connection) or large is released.

use crate::codec::encode::{encode_packet_at, encode_publish_parts, encode_publish_v5};
use crate::codec::{ProtocolLevel, PublishExtras, PublishHead};
use crate::protocol::v5::AliasUse;
use crate::protocol::{Emit, OutboundPublish, Ticket};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// Buffer capacity kept once everything is written; above it the buffer is released.
const KEEP_WHEN_IDLE_BYTES: usize = 4 * 1024;

/// Encoded packets waiting for the socket, in order.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Bytes encoded after the last sealed chunk (all of them, when nothing is gated).
    buf: BytesMut,
    /// Chunks sealed behind gates; only a session whose bytes announce stored state has them.
    gated: Option<Box<Gated>>,
}

/// Chunks sealed behind commits, and the commits not yet done.
#[derive(Debug, Default)]
struct Gated {
    /// Sealed chunks, each behind the gate it waits for, in order.
    held: VecDeque<(Ticket, Bytes)>,
    /// Gates not yet opened.
    closed: Vec<Ticket>,
}

/// An MQTT 5.0 PUBLISH: the message's properties with what this delivery adds (expiry left, topic alias,
/// subscription identifiers); the topic is left empty when the alias alone names it.
fn encode_v5(p: &OutboundPublish, buf: &mut BytesMut) -> Result<(), crate::codec::EncodeError> {
    let extras = p.v5.as_deref();
    let alias = extras.and_then(|e| e.alias);
    let topic = match alias {
        Some(AliasUse::Reuse(_)) => "",
        _ => p.message.topic.as_str(),
    };
    let head = PublishHead {
        dup: p.dup,
        qos: p.qos,
        retain: p.retain,
        topic,
        packet_id: p.packet_id,
    };
    let added = PublishExtras {
        message_expiry_interval: extras.and_then(|e| e.message_expiry_interval),
        topic_alias: match alias {
            Some(AliasUse::Define(a) | AliasUse::Reuse(a)) => Some(a),
            _ => None,
        },
        subscription_identifiers: extras.map_or(&[], |e| &e.subscription_ids),
    };
    encode_publish_v5(
        head,
        p.message.properties.as_deref(),
        &added,
        &p.message.payload,
        buf,
    )
}

impl Outgoing {
    /// Encodes one packet at the end, in the form of the connection's protocol `level`.
    pub fn write(&mut self, emit: &Emit, level: ProtocolLevel) {
        let encoded = match emit {
            Emit::Control(packet) => encode_packet_at(packet, level, &mut self.buf),
            Emit::Publish(p) if level.is_v5() => encode_v5(p, &mut self.buf),
            Emit::Publish(p) => encode_publish_parts(
                p.dup,
                p.qos,
                p.retain,
                p.message.topic.as_str(),
                p.packet_id,
                &p.message.payload,
                &mut self.buf,
            ),
        };
        if let Err(e) = encoded {
            log::error!("cannot encode a packet for the client: {e}");
        }
    }

    /// Seals everything encoded so far behind `gate`, to leave once the commit it names is done.
    pub fn seal(&mut self, gate: Ticket) {
        let chunk = self.buf.split().freeze();
        let gated = self.gated.get_or_insert_with(Box::default);
        gated.closed.push(gate);
        gated.held.push_back((gate, chunk));
    }

    /// The commit behind `gate` is done.
    pub fn open(&mut self, gate: Ticket) {
        if let Some(gated) = &mut self.gated {
            gated.closed.retain(|g| *g != gate);
        }
        self.settle();
    }

    /// The bytes that may be written now, from the front; empty when nothing may leave.
    pub fn ready(&self) -> &[u8] {
        let front = self
            .gated
            .as_ref()
            .and_then(|g| g.held.front().map(|h| (g, h)));
        match front {
            Some((gated, (gate, _))) if gated.closed.contains(gate) => &[],
            Some((_, (_, chunk))) => chunk,
            None => &self.buf,
        }
    }

    /// `n` bytes from the front were written.
    pub fn advance(&mut self, n: usize) {
        match self.gated.as_mut().and_then(|g| g.held.front_mut()) {
            Some((_, chunk)) => chunk.advance(n),
            None => self.buf.advance(n),
        }
        self.settle();
        let idle = self.gated.is_none() && self.buf.is_empty();
        let room = self.buf.capacity();
        if idle && (room == 0 || room > KEEP_WHEN_IDLE_BYTES) {
            // A burst is over: an idle connection does not keep its high-water mark. A buffer written to its
            // last byte is released too: the next packet needs room anyway, and a connection that stays
            // quiet after CONNACK then holds no buffer.
            self.buf = BytesMut::new();
        }
    }

    /// Drops the written chunks at the front whose gate is open, and the gates once nothing is held. A gate
    /// sealed over nothing (its PUBREL still waits behind an earlier answer) leaves an empty chunk that only
    /// this removes: it holds what follows until its gate opens, then must not stand in the way.
    fn settle(&mut self) {
        let Some(gated) = &mut self.gated else {
            return;
        };
        while let Some((gate, chunk)) = gated.held.front() {
            if !chunk.is_empty() || gated.closed.contains(gate) {
                break;
            }
            gated.held.pop_front();
        }
        if gated.held.is_empty() && gated.closed.is_empty() {
            self.gated = None;
        }
    }

    /// Bytes waiting to be written, gated ones included.
    pub fn pending_bytes(&self) -> usize {
        let held = self
            .gated
            .as_ref()
            .map_or(0, |g| g.held.iter().map(|(_, c)| c.len()).sum::<usize>());
        self.buf.len() + held
    }

    /// Whether nothing waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// Drops what is still gated: on close, bytes whose state was never committed are not sent (the client
    /// gets them again when it reconnects).
    pub fn drop_gated(&mut self) {
        let Some(gated) = &mut self.gated else {
            return;
        };
        let first_closed = gated
            .held
            .iter()
            .position(|(g, _)| gated.closed.contains(g));
        if let Some(i) = first_closed {
            gated.held.truncate(i);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Packet, PacketId};

    fn puback(id: u16) -> Emit {
        Emit::Control(Packet::PubAck(PacketId::new(id).unwrap().into()))
    }

    #[test]
    fn gated_bytes_and_everything_after_them_wait_for_the_commit() {
        let mut out = Outgoing::default();
        out.write(&puback(1), ProtocolLevel::V311);
        out.seal(Ticket(7));
        out.write(&puback(2), ProtocolLevel::V311);
        assert!(out.ready().is_empty());
        assert_eq!(out.pending_bytes(), 8);
        out.open(Ticket(7));
        assert_eq!(out.ready(), &[0x40, 2, 0, 1]);
        out.advance(4);
        assert_eq!(out.ready(), &[0x40, 2, 0, 2]);
        out.advance(4);
        assert!(out.is_empty());
    }

    #[test]
    fn a_gate_sealed_over_nothing_holds_what_follows_until_it_opens() {
        // A PUBREC's released state is recorded while its PUBREL still waits behind an earlier answer: the
        // gate is sealed before anything is written behind it.
        let mut out = Outgoing::default();
        out.seal(Ticket(1));
        out.write(&puback(1), ProtocolLevel::V311);
        assert!(out.ready().is_empty(), "the PUBREL waits for its commit");
        out.open(Ticket(1));
        assert_eq!(out.ready(), &[0x40, 2, 0, 1]);
        out.advance(4);
        assert!(out.is_empty());
        assert!(out.gated.is_none(), "nothing is held once all is written");
        // Opened before anything follows it, the gate holds nothing back either.
        out.seal(Ticket(2));
        out.open(Ticket(2));
        out.write(&puback(2), ProtocolLevel::V311);
        assert_eq!(out.ready(), &[0x40, 2, 0, 2]);
    }

    #[test]
    fn partial_writes_advance_within_a_chunk() {
        let mut out = Outgoing::default();
        out.write(&puback(1), ProtocolLevel::V311);
        out.advance(3);
        assert_eq!(out.ready(), &[1]);
        out.advance(1);
        assert!(out.is_empty());
    }

    #[test]
    fn closing_drops_what_waits_for_a_commit() {
        let mut out = Outgoing::default();
        out.write(&puback(1), ProtocolLevel::V311);
        out.seal(Ticket(1));
        out.open(Ticket(1));
        out.write(&puback(2), ProtocolLevel::V311);
        out.seal(Ticket(2));
        out.write(&puback(3), ProtocolLevel::V311);
        out.drop_gated();
        assert_eq!(out.pending_bytes(), 4);
    }

    #[test]
    fn an_idle_connection_keeps_no_large_buffer() {
        let mut out = Outgoing::default();
        let big = Emit::Control(Packet::SubAck(crate::codec::SubAck {
            packet_id: PacketId::new(1).unwrap(),
            return_codes: vec![crate::codec::SubscribeReturnCode::Failure; 10_000],
            properties: None,
        }));
        out.write(&big, ProtocolLevel::V311);
        let n = out.ready().len();
        out.advance(n);
        // A kept buffer would take the next packet in its 20,000 bytes of room.
        out.write(&puback(1), ProtocolLevel::V311);
        assert!(out.buf.capacity() < 64, "{}", out.buf.capacity());
    }

    #[test]
    fn a_connection_quiet_after_connack_holds_no_buffer() {
        let mut out = Outgoing::default();
        let connack = Emit::Control(Packet::ConnAck(crate::codec::ConnAck {
            session_present: false,
            code: crate::codec::ReasonCode::SUCCESS,
            properties: crate::codec::properties::boxed(crate::codec::Properties {
                reason_string: Some("x".repeat(40).into()),
                ..Default::default()
            }),
        }));
        out.write(&connack, ProtocolLevel::V5);
        let n = out.ready().len();
        assert!(n > 40);
        out.advance(n);
        // Released: the next packet gets a buffer of its own size, not the CONNACK's.
        out.write(&puback(1), ProtocolLevel::V5);
        assert!(out.buf.capacity() < 16, "{}", out.buf.capacity());
    }
}
