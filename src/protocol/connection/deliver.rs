//! Messages on their way to the client: deliveries from the router (counted against the session's credit),
//! retained messages for new subscriptions, pages of the stored queue while a persistent session catches up,
//! and the client's acknowledgements that free the inflight window.

use super::*;
use crate::codec::{publish_v5_size, PublishExtras, PublishHead};
use crate::protocol::feed::LiveVerdict;
use crate::protocol::io::{CloseReason, Emit, Notification, Request};
use crate::protocol::outbound::{Acked, DeliveryExtras, PublishV5, Sendable};
use crate::protocol::v5::{remaining_expiry, AliasUse};
use crate::store::{EntryState, QueuedMessage, StoreError};

impl Connection {
    /// Deliveries from the router; before CONNACK they wait for it.
    pub(super) fn on_deliveries(&mut self, deliveries: Vec<Delivery>, out: &mut Outputs) {
        if let Some(joining) = self.joining() {
            return joining.hold_early(deliveries);
        }
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        attached.credit.consumed(deliveries.len());
        let dropped_before = attached.dropped;
        let mut unwritten = self.pending_output;
        let bound = self.settings.limits.max_outgoing_buffer_bytes;
        for delivery in deliveries {
            if delivery.qos == QoS::AtMostOnce {
                // A client that does not read what it is sent cannot make the broker hold more than the bound
                // for it: its QoS 0 messages beyond it are dropped (counted); QoS 1/2 wait behind the inflight
                // window, and a persistent session's in the store.
                if unwritten >= bound {
                    out.limits.hit(crate::protocol::Limit::OutgoingBuffer);
                    continue;
                }
                unwritten += crate::protocol::outbound::held_bytes(&delivery) + PUBLISH_OVERHEAD;
            }
            take_delivery(
                attached,
                delivery,
                &self.settings,
                &mut self.rights,
                self.wall_ms,
                out,
            );
        }
        let dropped = attached.dropped - dropped_before;
        if dropped > 0 {
            out.requests.push(Request::CountDropped(dropped));
        }
    }

    /// Retained messages for a new subscription, with RETAIN set [MQTT-3.3.1-8].
    pub(super) fn on_retained(&mut self, deliveries: Vec<Delivery>, out: &mut Outputs) {
        let hooks = self.settings.notify;
        if let Stage::Connected(attached) = &mut self.stage {
            for delivery in deliveries {
                offer(
                    attached,
                    delivery,
                    hooks,
                    (&mut self.rights, Matched::Now),
                    self.wall_ms,
                    out,
                );
            }
        }
    }

    /// The router skipped stored messages for lack of credit: they are read from the store.
    pub(super) fn on_behind(&mut self, head: u64) {
        if let Some(joining) = self.joining() {
            joining.early_behind = joining.early_behind.max(head);
        } else if let Stage::Connected(attached) = &mut self.stage {
            if let Some(stored) = &mut attached.stored {
                stored.on_behind(head);
            }
        }
    }

    /// A page of the stored queue: unacknowledged entries are sent again as they were, waiting ones offered.
    pub(super) fn on_store_page(
        &mut self,
        page: Result<Vec<QueuedMessage>, StoreError>,
        now: Now,
        out: &mut Outputs,
    ) {
        let hooks = self.settings.notify;
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let entries = match page {
            Ok(entries) => entries,
            Err(e) => {
                log::error!("client {}: cannot read its queue: {e}", attached.client_id);
                if let Some(stored) = &mut attached.stored {
                    stored.read_failed();
                }
                self.close(CloseReason::Abnormal, now, out);
                return;
            }
        };
        let complete = entries.len() < STORE_PAGE;
        for entry in entries {
            let new = attached
                .stored
                .as_mut()
                .is_some_and(|s| s.take_page_entry(entry.seq));
            if new {
                resume_entry(attached, entry, hooks, &mut self.rights, self.wall_ms, out);
            }
        }
        if let Some(stored) = &mut attached.stored {
            stored.page_done(complete);
        }
    }

    pub(super) fn on_outbound_puback(&mut self, id: PacketId, out: &mut Outputs) {
        let hooks = self.settings.notify;
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Acked::Done(seq) = attached.outbound.on_puback(id) {
            self.progressed = true;
            acked(attached, id, seq, out, |client_id, seq| StoreOp::Remove {
                client_id,
                seq,
            });
        }
        refill_window(attached, hooks, self.wall_ms, out);
    }

    pub(super) fn on_outbound_pubrec(&mut self, id: PacketId, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Acked::Done(seq) = attached.outbound.on_pubrec(id) {
            acked(attached, id, seq, out, |client_id, seq| {
                StoreOp::MarkReleased {
                    client_id,
                    seq,
                    packet_id: id,
                }
            });
        }
        // [MQTT-4.3.3-1]: PUBREL answers PUBREC; behind earlier answers, and (for a stored message) behind the
        // commit of its released state, which the gate sees to. In MQTT 5.0 a PUBREC for an id not in flight
        // gets PUBREL 0x92 Packet Identifier not found (section 3.6.2.1).
        let unknown = attached.v5.is_some() && !attached.outbound.is_released(id);
        let reason = match unknown {
            true => crate::codec::ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            false => crate::codec::ReasonCode::SUCCESS,
        };
        self.answer(
            None,
            Answer::PubRel(crate::codec::Ack::with_reason(id, reason)),
            out,
        );
    }

    /// A PUBREC with an error reason code: the client refused the message (MQTT 5.0), so the exchange ends
    /// here, without PUBREL, and the message leaves the store as if completed.
    pub(super) fn on_outbound_pubrec_refused(&mut self, id: PacketId, out: &mut Outputs) {
        let hooks = self.settings.notify;
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Acked::Done(seq) = attached.outbound.on_pubrec_refused(id) {
            self.progressed = true;
            acked(attached, id, seq, out, |client_id, seq| StoreOp::Remove {
                client_id,
                seq,
            });
        }
        refill_window(attached, hooks, self.wall_ms, out);
    }

    pub(super) fn on_outbound_pubcomp(&mut self, id: PacketId, out: &mut Outputs) {
        let hooks = self.settings.notify;
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Acked::Done(seq) = attached.outbound.on_pubcomp(id) {
            self.progressed = true;
            if let Some(seq) = seq {
                out.store.push(StoreOp::Remove {
                    client_id: attached.client_id.clone(),
                    seq,
                });
            }
        }
        refill_window(attached, hooks, self.wall_ms, out);
    }
}

/// A PUBACK or first PUBREC: record it in the store (`op`, for a stored message) and tell the hooks.
fn acked(
    attached: &mut Attached,
    id: PacketId,
    seq: Option<u64>,
    out: &mut Outputs,
    op: impl FnOnce(ClientId, u64) -> StoreOp,
) {
    if let Some(seq) = seq {
        out.store.push(op(attached.client_id.clone(), seq));
    }
    let Some(unacked) = attached.hooked_unacked.as_mut() else {
        return;
    };
    if let Some(publish) = unacked.remove(&id) {
        out.requests
            .push(Request::Notify(Notification::Acked(publish)));
    }
    if unacked.is_empty() {
        attached.hooked_unacked = None;
    }
}

/// Takes one delivery from the router: stored messages strictly in queue order, the rest as they come (up
/// to the queue's bound, beyond which the overflow policy applies).
fn take_delivery(
    attached: &mut Attached,
    delivery: Delivery,
    settings: &Settings,
    rights: &mut Rights,
    now_ms: u64,
    out: &mut Outputs,
) {
    match (delivery.seq, attached.stored.as_mut()) {
        (Some(seq), Some(stored)) => {
            // What does not fit in memory (in messages, or in bytes beside the outgoing buffer's bound) is read
            // from the store when there is room again.
            let room = attached.outbound.queued_len() < PERSISTENT_QUEUE_BOUND
                && attached.outbound.queued_bytes() < settings.limits.max_outgoing_buffer_bytes;
            if stored.on_live(seq, room) != LiveVerdict::Take {
                return;
            }
        }
        _ => {
            // A clean session's queue lives in memory: bounded in messages and in bytes.
            let full = attached.outbound.queued_len() >= settings.max_queued_messages
                || attached.outbound.queued_bytes() >= settings.limits.max_queued_bytes;
            if full && attached.outbound.would_queue(&delivery) {
                return overflow(attached, delivery, settings.overflow);
            }
        }
    }
    // A stored message handed over live was matched by the router now; one beyond the stored queue's bound
    // waits for a page, which screens it again.
    offer(
        attached,
        delivery,
        settings.notify,
        (rights, Matched::Now),
        now_ms,
        out,
    );
}

/// Bytes a PUBLISH takes beyond its topic and payload, near enough for the outgoing buffer's bound: fixed
/// header, lengths, packet id.
const PUBLISH_OVERHEAD: usize = 8;

/// The memory queue is full: drop the new message or the oldest waiting one, never a QoS 2 message.
fn overflow(attached: &mut Attached, delivery: Delivery, policy: OverflowPolicy) {
    if delivery.qos == QoS::ExactlyOnce {
        attached.outbound.force_queue(delivery);
        return;
    }
    attached.dropped = attached.dropped.saturating_add(1);
    if policy == OverflowPolicy::DropOldest && attached.outbound.drop_oldest().is_some() {
        attached.outbound.force_queue(delivery);
    }
    // One line per power of two keeps a flood of drops from flooding the log.
    if attached.dropped.is_power_of_two() {
        log::warn!(
            "client {}: queue full ({} messages), {} message(s) dropped so far",
            attached.client_id,
            attached.outbound.queued_len(),
            attached.dropped
        );
    }
}

/// Offers a delivery to the window: written now, or queued until the window has room. A message on a topic
/// the client may not read (a wide subscription under the ACL file's rules) is not sent.
fn offer(
    attached: &mut Attached,
    delivery: Delivery,
    hooks: bool,
    rights: (&mut Rights, Matched),
    now_ms: u64,
    out: &mut Outputs,
) {
    let max_size = max_packet_size(attached);
    let (rights, matched) = rights;
    let topic = delivery.message.topic.as_str();
    let readable = rights.as_mut().is_none_or(|rights| match matched {
        Matched::Now => rights.may_read_matched(topic),
        Matched::Earlier => rights.may_read(topic),
    });
    let verdict = match readable {
        true => deliverable(&delivery, max_size, now_ms),
        false => Err(Undeliverable::NotAuthorized),
    };
    if let Err(why) = verdict {
        return drop_undeliverable(&attached.client_id, delivery.seq, why, out);
    }
    if let Some(sendable) = attached.outbound.offer(delivery) {
        let mut writer = PublishWriter::of(attached, hooks, now_ms);
        writer.send(sendable, out);
    }
}

/// Lets queued messages into the window after an acknowledgement freed room.
fn refill_window(attached: &mut Attached, hooks: bool, now_ms: u64, out: &mut Outputs) {
    let max_size = max_packet_size(attached);
    let Attached {
        outbound,
        client_id,
        hooked_unacked,
        v5,
        ..
    } = attached;
    let mut dropped = Vec::new();
    let mut writer = PublishWriter {
        client_id,
        hooked_unacked,
        hooks,
        v5,
        now_ms,
    };
    outbound.take_sendable_where(
        |d| match deliverable(d, max_size, now_ms) {
            Ok(()) => true,
            Err(why) => {
                dropped.push((d.seq, why));
                false
            }
        },
        |s| writer.send(s, out),
    );
    for (seq, why) in dropped {
        drop_undeliverable(&attached.client_id, seq, why, out);
    }
}

/// The largest packet an MQTT 5.0 client accepts, and whether it takes topic aliases.
#[derive(Debug, Clone, Copy)]
struct SizeLimit {
    max: u32,
    aliases: bool,
}

/// The Maximum Packet Size of an MQTT 5.0 client, if it set one.
#[inline]
fn max_packet_size(attached: &Attached) -> Option<SizeLimit> {
    let v5 = attached.v5.as_ref()?;
    Some(SizeLimit {
        max: v5.limits.maximum_packet_size?,
        aliases: v5.limits.topic_alias_maximum > 0,
    })
}

/// Whether a message was matched against the filters the session holds now (a delivery from the router or
/// the retained store), or earlier (an entry of the stored queue, perhaps through a filter since dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matched {
    Now,
    Earlier,
}

/// Why a message is not sent to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undeliverable {
    Expired,
    TooLarge,
    NotAuthorized,
}

/// Whether a message may still go to this client: not once it has expired (section 3.3.2.3.3, for clients of
/// every level), nor when it is larger than an MQTT 5.0 client accepts [MQTT-3.1.2-25].
#[inline]
fn deliverable(
    delivery: &Delivery,
    max_packet_size: Option<SizeLimit>,
    now_ms: u64,
) -> Result<(), Undeliverable> {
    let message = &delivery.message;
    if delivery.expiring
        && remaining_expiry(message.properties.as_deref(), message.arrived_at_ms, now_ms).is_err()
    {
        return Err(Undeliverable::Expired);
    }
    if max_packet_size.is_some_and(|limit| publish_size(delivery, limit) > limit.max as usize) {
        return Err(Undeliverable::TooLarge);
    }
    Ok(())
}

/// A message that may not be sent is dropped for good: a stored one leaves the store, an oversized one is
/// counted.
fn drop_undeliverable(
    client_id: &ClientId,
    seq: Option<u64>,
    why: Undeliverable,
    out: &mut Outputs,
) {
    if why == Undeliverable::TooLarge {
        log::info!("client {client_id}: a message larger than its Maximum Packet Size is not sent");
        out.requests.push(Request::CountDropped(1));
    }
    if let Some(seq) = seq {
        out.store.push(StoreOp::Remove {
            client_id: client_id.clone(),
            seq,
        });
    }
}

/// The size of the MQTT 5.0 PUBLISH of this delivery, as the codec would write it; a topic alias the client
/// allows is counted as a new one (topic in full and the alias), the largest form it can take.
fn publish_size(delivery: &Delivery, limit: SizeLimit) -> usize {
    let message = &delivery.message;
    let head = PublishHead {
        dup: false,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.as_str(),
        // Any identifier takes two bytes.
        packet_id: PacketId::new(1).filter(|_| delivery.qos != QoS::AtMostOnce),
    };
    let extras = PublishExtras {
        message_expiry_interval: None,
        topic_alias: limit.aliases.then_some(1),
        subscription_identifiers: delivery.subscription_ids(),
    };
    // Unencodable (a field too long) counts as too large.
    publish_v5_size(
        &head,
        message.properties.as_deref(),
        &extras,
        message.payload.len(),
    )
    .unwrap_or(usize::MAX)
}

/// Writes PUBLISHes for one session: what the store and the hooks learn about each.
struct PublishWriter<'a> {
    client_id: &'a ClientId,
    hooked_unacked: &'a mut super::HookedUnacked,
    hooks: bool,
    v5: &'a mut Option<V5Session>,
    now_ms: u64,
}

impl<'a> PublishWriter<'a> {
    fn of(attached: &'a mut Attached, hooks: bool, now_ms: u64) -> Self {
        PublishWriter {
            client_id: &attached.client_id,
            hooked_unacked: &mut attached.hooked_unacked,
            hooks,
            v5: &mut attached.v5,
            now_ms,
        }
    }

    /// Writes a PUBLISH; a stored message records that it was sent under its packet id (or, at QoS 0, that
    /// it is done), and that record gates the packet [MQTT-4.4.0-1].
    fn send(&mut self, sendable: Sendable, out: &mut Outputs) {
        if let Some(seq) = sendable.seq {
            let client_id = self.client_id.clone();
            out.store.push(match sendable.publish.packet_id {
                Some(packet_id) => StoreOp::MarkSent {
                    client_id,
                    seq,
                    packet_id,
                },
                None => StoreOp::Remove { client_id, seq },
            });
        }
        self.emit(sendable.publish, out);
    }

    /// Writes a PUBLISH and tells the hooks.
    fn emit(&mut self, mut publish: OutboundPublish, out: &mut Outputs) {
        if let Some(v5) = self.v5.as_mut() {
            publish.v5 = publish_v5(v5, &mut publish, self.now_ms);
        }
        if self.hooks {
            if let Some(id) = publish.packet_id {
                self.hooked_unacked
                    .get_or_insert_with(Box::default)
                    .insert(id, publish.clone());
            }
            out.requests
                .push(Request::Notify(Notification::Delivered(publish.clone())));
        }
        out.emits.push(Emit::Publish(publish));
    }
}

/// What an MQTT 5.0 PUBLISH of `publish` adds to the subscription identifiers it already carries: the expiry
/// left and a topic alias. The box it came with is reused.
fn publish_v5(
    v5: &mut V5Session,
    publish: &mut OutboundPublish,
    now_ms: u64,
) -> Option<Box<PublishV5>> {
    let message = &publish.message;
    let message_expiry_interval =
        remaining_expiry(message.properties.as_deref(), message.arrived_at_ms, now_ms)
            .ok()
            .flatten();
    let maximum = v5.limits.topic_alias_maximum;
    let alias = match v5.outbound_aliases.use_for(&message.topic, maximum) {
        AliasUse::Topic => None,
        other => Some(other),
    };
    if message_expiry_interval.is_none() && alias.is_none() {
        return publish.v5.take();
    }
    let mut extras = publish.v5.take().unwrap_or_default();
    extras.message_expiry_interval = message_expiry_interval;
    extras.alias = alias;
    Some(extras)
}

/// Takes a stored queue entry back: unacknowledged ones are sent again as they were [MQTT-4.4.0-1], waiting
/// ones are offered to the window.
fn resume_entry(
    attached: &mut Attached,
    entry: QueuedMessage,
    hooks: bool,
    rights: &mut Rights,
    now_ms: u64,
    out: &mut Outputs,
) {
    match entry.state {
        EntryState::PubRelSent(id) => {
            attached.outbound.resume_pubrel(id, Some(entry.seq));
            out.emits.push(Emit::Control(Packet::PubRel(id.into())));
        }
        EntryState::PublishSent(id) => {
            if let Some(delivery) = stored_delivery(entry, &attached.client_id) {
                let publish = attached.outbound.resume_publish(delivery, id);
                PublishWriter::of(attached, hooks, now_ms).emit(publish, out);
            }
        }
        EntryState::Queued => {
            if let Some(delivery) = stored_delivery(entry, &attached.client_id) {
                offer(
                    attached,
                    delivery,
                    hooks,
                    (rights, Matched::Earlier),
                    now_ms,
                    out,
                );
            }
        }
    }
}

/// The delivery a stored queue entry holds; `None` (logged) when its message body is missing.
fn stored_delivery(entry: QueuedMessage, client_id: &ClientId) -> Option<Delivery> {
    let Some(message) = entry.message else {
        log::error!(
            "client {client_id}: stored queue entry {} has no message body",
            entry.seq
        );
        return None;
    };
    Some(Delivery {
        expiring: crate::protocol::outbound::expiring(&message),
        message,
        qos: entry.qos,
        seq: Some(entry.seq),
        retain: entry.retain,
        extras: DeliveryExtras::of(entry.subscription_ids, None),
    })
}
