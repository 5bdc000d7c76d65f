//! Messages on their way to one client: packet identifiers, the QoS 1/2 inflight window and the queue behind
//! it. Owns the outbound half of [MQTT-4.3]; empty, it holds no allocation, so an idle connection pays nothing.

use super::v5::AliasUse;
use crate::codec::{PacketId, Publish, QoS};
use crate::message::Message;
use crate::message::ShareGroup;
use std::collections::{btree_map, BTreeMap, VecDeque};
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
    /// RETAIN flag to send: set for retained messages sent because of a new subscription [MQTT-3.3.1-8], and
    /// kept as published for a Retain As Published subscription.
    pub retain: bool,
    /// Subscription Identifiers and shared group, boxed: most deliveries have neither, and the fan-out moves
    /// every delivery several times.
    pub extras: Option<Box<DeliveryExtras>>,
    /// The message has a Message Expiry Interval: whether it expired is checked before it is sent. Known
    /// without reading the message, which the fan-out would otherwise fetch once more per delivery.
    pub expiring: bool,
}

/// Whether `message` has a Message Expiry Interval (for [`Delivery::expiring`]).
pub fn expiring(message: &Message) -> bool {
    message
        .properties
        .as_ref()
        .is_some_and(|p| p.message_expiry_interval().is_some())
}

/// What only some deliveries carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryExtras {
    /// The identifiers of the subscriptions of this client that matched (MQTT 5.0), in one PUBLISH.
    pub subscription_ids: Vec<u32>,
    /// The shared subscription group it came through, if only through one: handed back to the group when the
    /// session ends before the client acknowledged it.
    pub group: Option<crate::message::ShareGroup>,
}

impl DeliveryExtras {
    /// The extras of a delivery, `None` when there are none.
    pub fn of(
        subscription_ids: Vec<u32>,
        group: Option<crate::message::ShareGroup>,
    ) -> Option<Box<DeliveryExtras>> {
        (!subscription_ids.is_empty() || group.is_some()).then(|| {
            Box::new(DeliveryExtras {
                subscription_ids,
                group,
            })
        })
    }
}

/// A PUBLISH to write, built from the shared message without copying its topic or payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPublish {
    /// The message.
    pub message: Arc<Message>,
    /// QoS of this transmission.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// DUP flag: set when an unacknowledged PUBLISH is sent again [MQTT-3.3.1-1].
    pub dup: bool,
    /// Packet identifier, for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// What an MQTT 5.0 PUBLISH adds to the message's properties; `None` when nothing.
    pub v5: Option<Box<PublishV5>>,
}

/// The per-delivery part of an MQTT 5.0 PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishV5 {
    /// How the topic is named: in full, with a new alias, or by the alias alone.
    pub alias: Option<AliasUse>,
    /// Identifiers of the client's subscriptions the message matched [MQTT-3.3.4-3 in 5.0].
    pub subscription_ids: Vec<u32>,
    /// The Message Expiry Interval left [MQTT-3.3.2-6].
    pub message_expiry_interval: Option<u32>,
}

impl OutboundPublish {
    /// The packet as the codec describes it (for hooks, which see `Publish` values).
    pub fn to_publish(&self) -> Publish {
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.message.topic.clone(),
            packet_id: self.packet_id,
            payload: self.message.payload.clone(),
            properties: self.message.properties.clone(),
        }
    }
}

/// A PUBLISH ready to be written, with its stored queue position if the message is stored.
#[derive(Debug, Clone)]
pub struct Sendable {
    /// The packet.
    pub publish: OutboundPublish,
    /// Stored queue position, if the message is stored.
    pub seq: Option<u64>,
}

impl Delivery {
    /// The shared group it came through, if any.
    pub fn group(&self) -> Option<crate::message::ShareGroup> {
        self.extras.as_ref().and_then(|e| e.group)
    }

    /// The Subscription Identifiers it carries.
    pub fn subscription_ids(&self) -> &[u32] {
        self.extras.as_ref().map_or(&[], |e| &e.subscription_ids)
    }

    fn into_publish(self, packet_id: Option<PacketId>, dup: bool) -> Sendable {
        Sendable {
            seq: self.seq,
            publish: OutboundPublish {
                message: self.message,
                qos: self.qos,
                retain: self.retain,
                dup,
                packet_id,
                // Only MQTT 5.0 subscriptions carry identifiers.
                v5: self
                    .extras
                    .filter(|e| !e.subscription_ids.is_empty())
                    .map(|e| {
                        Box::new(PublishV5 {
                            subscription_ids: e.subscription_ids,
                            ..PublishV5::default()
                        })
                    }),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What an acknowledgement from the client did to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// It finished (PUBACK, PUBCOMP) or released (PUBREC) the message under this id; the stored position, if any.
    Done(Option<u64>),
    /// The id was not awaiting this acknowledgement: nothing changes.
    Unknown,
}

/// The outbound inflight window and queue of one session.
#[derive(Debug)]
pub struct Outbound {
    max_inflight: usize,
    last_packet_id: u16,
    /// Allocated while something is in flight or waiting, released when the session is idle again.
    window: Option<Box<Window>>,
}

/// What is in flight and what waits behind it.
#[derive(Debug, Default)]
struct Window {
    inflight: BTreeMap<PacketId, Inflight>,
    queued: Queued,
    /// In-flight messages that came through a shared subscription, to be handed back if the session ends
    /// before the client has them (kept apart so that the usual window entry stays small).
    shared: BTreeMap<PacketId, (ShareGroup, Arc<Message>)>,
}

/// The deliveries waiting for room in the window, in order, with their topic plus payload bytes.
#[derive(Debug, Default)]
struct Queued {
    items: VecDeque<Delivery>,
    bytes: usize,
}

/// The bytes a delivery holds on to: its topic and payload.
pub fn held_bytes(delivery: &Delivery) -> usize {
    delivery.message.topic.as_str().len() + delivery.message.payload.len()
}

impl Queued {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn push_back(&mut self, delivery: Delivery) {
        self.bytes += held_bytes(&delivery);
        self.items.push_back(delivery);
    }

    fn push_front(&mut self, delivery: Delivery) {
        self.bytes += held_bytes(&delivery);
        self.items.push_front(delivery);
    }

    fn pop_front(&mut self) -> Option<Delivery> {
        let delivery = self.items.pop_front()?;
        self.bytes -= held_bytes(&delivery);
        Some(delivery)
    }

    fn remove(&mut self, index: usize) -> Option<Delivery> {
        let delivery = self.items.remove(index)?;
        self.bytes -= held_bytes(&delivery);
        Some(delivery)
    }

    /// Keeps the deliveries that did not come through a shared subscription.
    fn retain_ungrouped(&mut self) {
        self.items.retain(|d| d.group().is_none());
        self.bytes = self.items.iter().map(held_bytes).sum();
    }
}

impl Outbound {
    /// A window of `max_inflight` unacknowledged messages with a queue behind it.
    pub fn new(max_inflight: usize) -> Self {
        Outbound {
            max_inflight: max_inflight.clamp(1, usize::from(u16::MAX)),
            last_packet_id: 0,
            window: None,
        }
    }

    fn window(&mut self) -> &mut Window {
        self.window.get_or_insert_with(Box::default)
    }

    /// Releases the window once nothing is in flight or waiting.
    fn release_if_idle(&mut self) {
        if self
            .window
            .as_ref()
            .is_some_and(|w| w.inflight.is_empty() && w.queued.is_empty())
        {
            self.window = None;
        }
    }

    /// Number of QoS 1/2 messages awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.window.as_ref().map_or(0, |w| w.inflight.len())
    }

    /// Number of messages waiting for room in the window.
    pub fn queued_len(&self) -> usize {
        self.window.as_ref().map_or(0, |w| w.queued.len())
    }

    /// Topic plus payload bytes of the messages waiting for room in the window.
    pub fn queued_bytes(&self) -> usize {
        self.window.as_ref().map_or(0, |w| w.queued.bytes)
    }

    /// Whether a new QoS 1/2 message would be written at once.
    pub fn has_room(&self) -> bool {
        self.inflight_len() < self.max_inflight && self.queued_len() == 0
    }

    /// Offers a delivery: QoS 0 goes straight out, QoS 1/2 when the window has room and nothing waits before
    /// it; otherwise it waits in the queue (`None`).
    pub fn offer(&mut self, delivery: Delivery) -> Option<Sendable> {
        if delivery.qos == QoS::AtMostOnce {
            return Some(delivery.into_publish(None, false));
        }
        if self.has_room() {
            if let Some(id) = self.allocate_packet_id() {
                return Some(self.start(delivery, id));
            }
        }
        self.window().queued.push_back(delivery);
        None
    }

    /// Whether a QoS 1/2 delivery offered now would wait in the queue.
    pub fn would_queue(&self, delivery: &Delivery) -> bool {
        delivery.qos != QoS::AtMostOnce && !self.has_room()
    }

    /// Drops the oldest queued delivery that is not QoS 2, to make room under a drop-oldest policy.
    pub fn drop_oldest(&mut self) -> Option<Delivery> {
        let queued = &mut self.window.as_mut()?.queued;
        let index = queued
            .items
            .iter()
            .position(|d| d.qos != QoS::ExactlyOnce)?;
        queued.remove(index)
    }

    /// Queues a delivery whatever the queue's length (QoS 2 messages are never dropped).
    pub fn force_queue(&mut self, delivery: Delivery) {
        self.window().queued.push_back(delivery);
    }

    /// Moves queued deliveries into the window while it has room.
    pub fn take_sendable(&mut self, send: impl FnMut(Sendable)) {
        self.take_sendable_where(|_| true, send)
    }

    /// Moves queued deliveries into the window while it has room, dropping those `keep` refuses (an expired
    /// message, one too large for the client) before they take a packet identifier.
    pub fn take_sendable_where(
        &mut self,
        mut keep: impl FnMut(&Delivery) -> bool,
        mut send: impl FnMut(Sendable),
    ) {
        while self.inflight_len() < self.max_inflight {
            let Some(delivery) = self.window.as_mut().and_then(|w| w.queued.pop_front()) else {
                break;
            };
            if !keep(&delivery) {
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                send(delivery.into_publish(None, false));
                continue;
            }
            let Some(id) = self.allocate_packet_id() else {
                self.window().queued.push_front(delivery);
                break;
            };
            send(self.start(delivery, id));
        }
        self.release_if_idle();
    }

    /// PUBACK received: the message under `id` is delivered [MQTT-4.3.2].
    pub fn on_puback(&mut self, id: PacketId) -> Acked {
        self.finish(id, InflightState::WantPubAck)
    }

    /// PUBREC received: the message is now owned by the receiver [MQTT-4.3.3-1]; `Done` only for the first
    /// PUBREC of it, a repeated one changes nothing.
    pub fn on_pubrec(&mut self, id: PacketId) -> Acked {
        let Some(window) = self.window.as_mut() else {
            return Acked::Unknown;
        };
        match window.inflight.get_mut(&id) {
            Some(entry) if entry.state == InflightState::WantPubRec => {
                entry.state = InflightState::Released;
                if !window.shared.is_empty() {
                    window.shared.remove(&id);
                }
                Acked::Done(entry.seq)
            }
            _ => Acked::Unknown,
        }
    }

    /// A PUBREC with an error reason code (MQTT 5.0): the client refused the message, which ends the QoS 2
    /// exchange without PUBREL (section 4.3.3).
    pub fn on_pubrec_refused(&mut self, id: PacketId) -> Acked {
        self.finish(id, InflightState::WantPubRec)
    }

    /// Whether `id` is released (PUBREC seen).
    pub fn is_released(&self, id: PacketId) -> bool {
        self.window
            .as_ref()
            .and_then(|w| w.inflight.get(&id))
            .is_some_and(|e| e.state == InflightState::Released)
    }

    /// PUBCOMP received: the QoS 2 exchange under `id` is complete.
    pub fn on_pubcomp(&mut self, id: PacketId) -> Acked {
        self.finish(id, InflightState::Released)
    }

    fn finish(&mut self, id: PacketId, expected: InflightState) -> Acked {
        let Some(window) = self.window.as_mut() else {
            return Acked::Unknown;
        };
        let acked = match window.inflight.entry(id) {
            btree_map::Entry::Occupied(entry) if entry.get().state == expected => {
                Acked::Done(entry.remove().seq)
            }
            _ => Acked::Unknown,
        };
        if acked != Acked::Unknown && !window.shared.is_empty() {
            window.shared.remove(&id);
        }
        self.release_if_idle();
        acked
    }

    /// Takes back an unacknowledged PUBLISH from the store after a reconnect; returns it with DUP set, to be
    /// re-sent under its original packet identifier [MQTT-4.4.0-1].
    pub fn resume_publish(&mut self, delivery: Delivery, id: PacketId) -> OutboundPublish {
        self.track(id, delivery.qos, delivery.seq);
        delivery.into_publish(Some(id), true).publish
    }

    /// Takes back a QoS 2 message whose PUBREL was sent before a reconnect; the PUBREL is re-sent.
    pub fn resume_pubrel(&mut self, id: PacketId, seq: Option<u64>) {
        self.window().inflight.insert(
            id,
            Inflight {
                seq,
                state: InflightState::Released,
            },
        );
    }

    fn start(&mut self, delivery: Delivery, id: PacketId) -> Sendable {
        self.track(id, delivery.qos, delivery.seq);
        if let Some(group) = delivery.group() {
            let message = delivery.message.clone();
            self.window().shared.insert(id, (group, message));
        }
        delivery.into_publish(Some(id), false)
    }

    /// Takes out every message that came through a shared subscription and that the client has not
    /// acknowledged (or, at QoS 2, received): the session ends, and its group gives them to another member.
    pub fn take_shared(&mut self) -> Vec<(ShareGroup, Arc<Message>)> {
        let Some(window) = self.window.as_mut() else {
            return Vec::new();
        };
        // A message is in `shared` until the client has it (PUBACK, or PUBREC at QoS 2).
        let mut taken: Vec<(ShareGroup, Arc<Message>)> =
            std::mem::take(&mut window.shared).into_values().collect();
        for delivery in &window.queued.items {
            if let Some(group) = delivery.group() {
                taken.push((group, delivery.message.clone()));
            }
        }
        window.queued.retain_ungrouped();
        taken
    }

    /// Puts a QoS 1/2 message in the window under `id`, awaiting its first acknowledgement.
    fn track(&mut self, id: PacketId, qos: QoS, seq: Option<u64>) {
        let state = match qos {
            QoS::ExactlyOnce => InflightState::WantPubRec,
            _ => InflightState::WantPubAck,
        };
        self.window().inflight.insert(id, Inflight { seq, state });
    }

    /// The next identifier not in use, cycling through 1..=65535 [MQTT-2.3.1-2].
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_packet_id) {
                let in_use = self
                    .window
                    .as_ref()
                    .is_some_and(|w| w.inflight.contains_key(&id));
                if !in_use {
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
                properties: None,
            }),
            qos,
            seq,
            retain: false,
            extras: None,
            expiring: false,
        }
    }

    fn sent(offer: Option<Sendable>) -> Sendable {
        offer.expect("expected the delivery to be sent at once")
    }

    #[test]
    fn window_holds_back_beyond_max_inflight_and_releases_on_ack() {
        let mut out = Outbound::new(2);
        let a = sent(out.offer(delivery(QoS::AtLeastOnce, Some(1))));
        let _b = sent(out.offer(delivery(QoS::AtLeastOnce, Some(2))));
        assert!(out.offer(delivery(QoS::AtLeastOnce, Some(3))).is_none());
        let id = a.publish.packet_id.unwrap();
        assert_eq!(out.on_puback(id), Acked::Done(Some(1)));
        let mut released = Vec::new();
        out.take_sendable(|s| released.push(s.seq));
        assert_eq!(released, vec![Some(3)]);
        // A second PUBACK for the same id is not an acknowledgement of anything.
        assert_eq!(out.on_puback(id), Acked::Unknown);
    }

    #[test]
    fn the_window_keeps_ids_and_positions_not_messages() {
        let mut out = Outbound::new(2);
        let d = delivery(QoS::ExactlyOnce, Some(4));
        let message = d.message.clone();
        let s = sent(out.offer(d));
        drop(s);
        assert_eq!(out.inflight_len(), 1);
        assert_eq!(
            Arc::strong_count(&message),
            1,
            "inflight state holds no message"
        );
    }

    #[test]
    fn qos0_bypasses_the_window() {
        let mut out = Outbound::new(1);
        sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        let s = sent(out.offer(delivery(QoS::AtMostOnce, None)));
        assert_eq!(s.publish.packet_id, None);
    }

    #[test]
    fn qos2_goes_through_pubrec_then_pubcomp() {
        let mut out = Outbound::new(4);
        let s = sent(out.offer(delivery(QoS::ExactlyOnce, Some(7))));
        let id = s.publish.packet_id.unwrap();
        assert_eq!(
            out.on_puback(id),
            Acked::Unknown,
            "PUBACK does not finish QoS 2"
        );
        assert_eq!(out.on_pubcomp(id), Acked::Unknown, "PUBCOMP before PUBREC");
        assert_eq!(out.on_pubrec(id), Acked::Done(Some(7)));
        assert!(out.is_released(id));
        assert_eq!(
            out.on_pubrec(id),
            Acked::Unknown,
            "second PUBREC changes nothing"
        );
        assert_eq!(out.on_pubcomp(id), Acked::Done(Some(7)));
        assert_eq!(out.inflight_len(), 0);
    }

    #[test]
    fn packet_ids_skip_those_in_use() {
        let mut out = Outbound::new(3);
        out.resume_pubrel(PacketId::new(1).unwrap(), None);
        let s = sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        assert_eq!(s.publish.packet_id, PacketId::new(2));
    }

    #[test]
    fn packet_ids_wrap_after_65535() {
        // [MQTT-2.3.1-2]: identifiers are reused once free; 0 is never used.
        let mut out = Outbound::new(1);
        let mut last = 0;
        for _ in 0..70_000u32 {
            let s = sent(out.offer(delivery(QoS::AtLeastOnce, None)));
            let id = s.publish.packet_id.unwrap();
            assert_ne!(id.get(), 0);
            last = id.get();
            assert_eq!(out.on_puback(id), Acked::Done(None));
        }
        assert_eq!(last, (70_000u32 % 65_535) as u16);
    }

    #[test]
    fn resumed_publish_carries_dup_and_original_id() {
        let mut out = Outbound::new(3);
        let id = PacketId::new(42).unwrap();
        let p = out.resume_publish(delivery(QoS::AtLeastOnce, Some(5)), id);
        assert!(p.dup);
        assert_eq!(p.packet_id, Some(id));
        assert_eq!(out.on_puback(id), Acked::Done(Some(5)));
    }

    #[test]
    fn an_idle_window_keeps_no_allocation() {
        let mut out = Outbound::new(1);
        let s = sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        assert!(out.offer(delivery(QoS::AtLeastOnce, None)).is_none());
        assert!(out.window.is_some());
        assert_eq!(
            out.on_puback(s.publish.packet_id.unwrap()),
            Acked::Done(None)
        );
        let mut next = Vec::new();
        out.take_sendable(|s| next.push(s));
        assert_eq!(
            out.on_puback(next[0].publish.packet_id.unwrap()),
            Acked::Done(None)
        );
        assert!(out.window.is_none());
        let again = sent(out.offer(delivery(QoS::AtLeastOnce, None)));
        assert_eq!(
            again.publish.packet_id,
            PacketId::new(3),
            "ids go on cycling"
        );
    }
}
