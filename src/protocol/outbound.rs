//! Messages on their way to one client: packet identifiers, the QoS 1/2 inflight window and the bounded queue
//! behind it. Owns the outbound half of [MQTT-4.3]; the session actor writes what it returns and records it in the store.

use crate::codec::{PacketId, Publish, QoS};
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One message for one subscriber, with the QoS it is delivered at.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// min(publish QoS, granted QoS).
    pub qos: QoS,
    /// Position in the persistent session's stored queue; `None` for messages held only in memory.
    pub seq: Option<u64>,
    /// RETAIN flag to send: set only for retained messages sent because of a new subscription [MQTT-3.3.1-8].
    pub retain: bool,
}

impl Delivery {
    fn to_publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.message.topic.clone(),
            packet_id,
            payload: self.message.payload.clone(),
        }
    }
}

/// A PUBLISH ready to be written, with what the store must learn about it.
#[derive(Debug, Clone)]
pub struct Sendable {
    /// The packet.
    pub publish: Publish,
    /// Stored queue position, if the message is stored.
    pub seq: Option<u64>,
}

/// What happened to a delivery offered to the window.
#[derive(Debug)]
pub enum Offer {
    /// Write this now.
    Send(Sendable),
    /// Held in the queue until the window has room.
    Queued,
    /// The queue is full; the delivery is handed back.
    Full(Delivery),
}

#[derive(Debug)]
enum InflightState {
    WantPubAck,
    WantPubRec,
    Released,
}

#[derive(Debug)]
struct Inflight {
    seq: Option<u64>,
    state: InflightState,
}

/// The outbound inflight window and queue of one session.
#[derive(Debug)]
pub struct Outbound {
    max_inflight: usize,
    max_queued: usize,
    inflight: HashMap<PacketId, Inflight>,
    queued: VecDeque<Delivery>,
    last_packet_id: u16,
}

impl Outbound {
    /// A window of `max_inflight` unacknowledged messages with up to `max_queued` waiting behind it.
    pub fn new(max_inflight: usize, max_queued: usize) -> Self {
        Outbound {
            max_inflight: max_inflight.max(1),
            max_queued,
            inflight: HashMap::new(),
            queued: VecDeque::new(),
            last_packet_id: 0,
        }
    }

    /// Number of QoS 1/2 messages awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Number of messages waiting for room in the window.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Whether a new QoS 1/2 message would be written at once.
    pub fn has_room(&self) -> bool {
        self.inflight.len() < self.max_inflight && self.queued.is_empty()
    }

    /// Offers a delivery: QoS 0 goes straight out, QoS 1/2 when the window has room and nothing waits before it.
    pub fn offer(&mut self, delivery: Delivery) -> Offer {
        if delivery.qos == QoS::AtMostOnce {
            return Offer::Send(Sendable {
                publish: delivery.to_publish(None, false),
                seq: delivery.seq,
            });
        }
        if self.has_room() {
            if let Some(sendable) = self.start(delivery) {
                return Offer::Send(sendable);
            }
            return Offer::Queued;
        }
        if self.queued.len() >= self.max_queued {
            return Offer::Full(delivery);
        }
        self.queued.push_back(delivery);
        Offer::Queued
    }

    /// Drops the oldest queued delivery that is not QoS 2, to make room under a drop-oldest policy.
    pub fn drop_oldest(&mut self) -> Option<Delivery> {
        let index = self.queued.iter().position(|d| d.qos != QoS::ExactlyOnce)?;
        self.queued.remove(index)
    }

    /// Queues a delivery beyond the limit (QoS 2 messages are never dropped).
    pub fn force_queue(&mut self, delivery: Delivery) {
        self.queued.push_back(delivery);
    }

    /// Moves queued deliveries into the window while it has room.
    pub fn take_sendable(&mut self, mut send: impl FnMut(Sendable)) {
        while self.inflight.len() < self.max_inflight {
            let Some(delivery) = self.queued.pop_front() else {
                return;
            };
            if delivery.qos == QoS::AtMostOnce {
                send(Sendable {
                    publish: delivery.to_publish(None, false),
                    seq: delivery.seq,
                });
                continue;
            }
            match self.start(delivery) {
                Some(sendable) => send(sendable),
                None => return,
            }
        }
    }

    /// PUBACK received: returns the stored position to remove, or `None` if the id was not awaiting a PUBACK.
    pub fn on_puback(&mut self, id: PacketId) -> Option<Option<u64>> {
        match self.inflight.get(&id) {
            Some(Inflight {
                state: InflightState::WantPubAck,
                ..
            }) => self.inflight.remove(&id).map(|entry| entry.seq),
            _ => None,
        }
    }

    /// PUBREC received: the message is now owned by the receiver [MQTT-4.3.3-1]; returns its stored position
    /// when this is the first PUBREC for it.
    pub fn on_pubrec(&mut self, id: PacketId) -> Option<Option<u64>> {
        let entry = self.inflight.get_mut(&id)?;
        match entry.state {
            InflightState::WantPubRec => {
                entry.state = InflightState::Released;
                Some(entry.seq)
            }
            _ => None,
        }
    }

    /// PUBCOMP received: returns the stored position to remove.
    pub fn on_pubcomp(&mut self, id: PacketId) -> Option<Option<u64>> {
        match self.inflight.get(&id) {
            Some(Inflight {
                state: InflightState::Released,
                ..
            }) => self.inflight.remove(&id).map(|entry| entry.seq),
            _ => None,
        }
    }

    /// Takes back an unacknowledged PUBLISH from the store after a reconnect; returns it with DUP set, to be
    /// re-sent under its original packet identifier [MQTT-4.4.0-1].
    pub fn resume_publish(&mut self, delivery: Delivery, id: PacketId) -> Publish {
        let publish = delivery.to_publish(Some(id), true);
        self.track(id, delivery.qos, delivery.seq);
        publish
    }

    /// Takes back a QoS 2 message whose PUBREL was sent before a reconnect; the PUBREL is re-sent.
    pub fn resume_pubrel(&mut self, id: PacketId, seq: Option<u64>) {
        self.inflight.insert(
            id,
            Inflight {
                seq,
                state: InflightState::Released,
            },
        );
    }

    fn start(&mut self, delivery: Delivery) -> Option<Sendable> {
        let id = self.allocate_packet_id()?;
        let publish = delivery.to_publish(Some(id), false);
        self.track(id, delivery.qos, delivery.seq);
        Some(Sendable {
            publish,
            seq: delivery.seq,
        })
    }

    /// Puts a QoS 1/2 message in the window under `id`, awaiting its first acknowledgement.
    fn track(&mut self, id: PacketId, qos: QoS, seq: Option<u64>) {
        let state = match qos {
            QoS::ExactlyOnce => InflightState::WantPubRec,
            _ => InflightState::WantPubAck,
        };
        self.inflight.insert(id, Inflight { seq, state });
    }

    /// The next identifier not in use, cycling through 1..=65535 [MQTT-2.3.1-2].
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_packet_id) {
                if !self.inflight.contains_key(&id) {
                    return Some(id);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TopicName;
    use bytes::Bytes;

    fn delivery(qos: QoS, seq: Option<u64>) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                payload: Bytes::from_static(b"x"),
                qos,
                retain: false,
                arrived_at_ms: 0,
            }),
            qos,
            seq,
            retain: false,
        }
    }

    fn sent(offer: Offer) -> Sendable {
        match offer {
            Offer::Send(s) => s,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn window_holds_back_beyond_max_inflight_and_releases_on_ack() {
        let mut out = Outbound::new(2, 10);
        let a = sent(out.offer(delivery(QoS::AtLeastOnce, Some(1))));
        let _b = sent(out.offer(delivery(QoS::AtLeastOnce, Some(2))));
        assert!(matches!(
            out.offer(delivery(QoS::AtLeastOnce, Some(3))),
            Offer::Queued
        ));
        let id = a.publish.packet_id.unwrap();
        assert_eq!(out.on_puback(id), Some(Some(1)));
        let mut released = Vec::new();
        out.take_sendable(|s| released.push(s.seq));
        assert_eq!(released, vec![Some(3)]);
        // A second PUBACK for the same id is not an acknowledgement of anything.
        assert_eq!(out.on_puback(id), None);
    }

    #[test]
    fn the_window_keeps_ids_and_positions_not_messages() {
        let mut out = Outbound::new(2, 0);
        let d = delivery(QoS::ExactlyOnce, Some(4));
        let message = d.message.clone();
        let s = sent(out.offer(d));
        assert_eq!(out.inflight_len(), 1);
        assert_eq!(
            Arc::strong_count(&message),
            1,
            "inflight state holds no message"
        );
        assert_eq!(out.on_pubrec(s.publish.packet_id.unwrap()), Some(Some(4)));
    }

    #[test]
    fn qos0_bypasses_the_window() {
        let mut out = Outbound::new(1, 0);
        sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        let s = sent(out.offer(delivery(QoS::AtMostOnce, None)));
        assert_eq!(s.publish.packet_id, None);
    }

    #[test]
    fn full_queue_hands_the_delivery_back() {
        let mut out = Outbound::new(1, 1);
        sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        assert!(matches!(
            out.offer(delivery(QoS::AtLeastOnce, None)),
            Offer::Queued
        ));
        assert!(matches!(
            out.offer(delivery(QoS::AtLeastOnce, None)),
            Offer::Full(_)
        ));
    }

    #[test]
    fn qos2_goes_through_pubrec_then_pubcomp() {
        let mut out = Outbound::new(4, 4);
        let s = sent(out.offer(delivery(QoS::ExactlyOnce, Some(7))));
        let id = s.publish.packet_id.unwrap();
        assert_eq!(out.on_puback(id), None, "PUBACK does not finish QoS 2");
        assert_eq!(out.on_pubrec(id), Some(Some(7)));
        assert_eq!(out.on_pubrec(id), None, "second PUBREC changes nothing");
        assert_eq!(out.on_pubcomp(id), Some(Some(7)));
        assert_eq!(out.inflight_len(), 0);
    }

    #[test]
    fn packet_ids_skip_those_in_use() {
        let mut out = Outbound::new(3, 0);
        out.resume_pubrel(PacketId::new(1).unwrap(), None);
        let s = sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        assert_eq!(s.publish.packet_id, PacketId::new(2));
    }

    #[test]
    fn resumed_publish_carries_dup_and_original_id() {
        let mut out = Outbound::new(3, 0);
        let id = PacketId::new(42).unwrap();
        let p = out.resume_publish(delivery(QoS::AtLeastOnce, Some(5)), id);
        assert!(p.dup);
        assert_eq!(p.packet_id, Some(id));
        assert_eq!(out.on_puback(id), Some(Some(5)));
    }
}
