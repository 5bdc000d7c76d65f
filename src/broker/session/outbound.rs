//! Messages on their way to the client: live deliveries from the router, the stored queue read in pages
//! while a persistent session catches up, the inflight window and the acknowledgements that free it.

use super::inbound::AckKind;
use super::*;
use crate::protocol::{Delivery, Offer, Sendable};
use crate::store::{EntryState, QueuedMessage, StoreError, StoreRequest};

impl Session {
    /// Takes deliveries from the router or the retained actor.
    pub(super) fn deliver(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        let overflow = self.peers.settings.overflow;
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        let mut pause = false;
        for delivery in deliveries {
            if let Some(seq) = delivery.seq {
                // Stored messages are taken in queue order; while catching up they come from the store.
                if attached.catching_up || seq <= attached.cursor {
                    continue;
                }
                if seq != attached.cursor + 1 {
                    attached.catching_up = true;
                    pause = true;
                    continue;
                }
                attached.cursor = seq;
            }
            match attached.outbound.offer(delivery) {
                Offer::Send(sendable) => send_publish(
                    &mut self.out,
                    &mut self.pending_ops,
                    &attached.client_id,
                    &mut attached.hooks,
                    sendable,
                ),
                Offer::Queued => {}
                Offer::Full(delivery) => {
                    if let Some(seq) = delivery.seq {
                        // Memory is full: it stays in the store and is read from there later.
                        attached.cursor = seq - 1;
                        attached.catching_up = true;
                        pause = true;
                    } else {
                        overflow_in_memory(attached, delivery, overflow);
                    }
                }
            }
        }
        if pause {
            self.peers.router.do_send(PauseLive {
                slot: attached.slot,
                conn: attached.conn,
            });
        }
        // A clean session's queue is memory: past a point, publishers are held back rather than messages dropped.
        if !attached.persistent
            && !attached.backed_up
            && attached.outbound.queued_len() >= BACKED_UP_AT
        {
            attached.backed_up = true;
            self.peers.router.do_send(SessionBackedUp {
                slot: attached.slot,
                conn: attached.conn,
            });
        }
        self.read_store_if_room(ctx);
    }

    /// The client acknowledged an outbound message: record it, and let waiting messages into the window.
    pub(super) fn on_outbound_ack(&mut self, id: PacketId, kind: AckKind, ctx: &mut Context<Self>) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        let client_id = attached.client_id.clone();
        if let (Some(hooks), AckKind::Acknowledged | AckKind::Received) =
            (&mut attached.hooks, kind)
        {
            hooks.acked(id);
        }
        match kind {
            AckKind::Acknowledged => {
                if let Some(Some(seq)) = attached.outbound.on_puback(id) {
                    self.pending_ops.push(StoreOp::Remove { client_id, seq });
                }
            }
            AckKind::Received => {
                if let Some(Some(seq)) = attached.outbound.on_pubrec(id) {
                    self.pending_ops.push(StoreOp::MarkReleased {
                        client_id,
                        seq,
                        packet_id: id,
                    });
                }
                // [MQTT-4.3.3-1]: PUBREL answers PUBREC.
                self.out.write(&Packet::PubRel(id));
            }
            AckKind::Completed => {
                if let Some(Some(seq)) = attached.outbound.on_pubcomp(id) {
                    self.pending_ops.push(StoreOp::Remove { client_id, seq });
                }
            }
        }
        let (out, ops) = (&mut self.out, &mut self.pending_ops);
        let Attached {
            outbound,
            client_id,
            hooks,
            ..
        } = &mut **attached;
        outbound.take_sendable(|s| send_publish(out, ops, client_id, hooks, s));
        if attached.backed_up && attached.outbound.queued_len() <= DRAINED_AT {
            attached.backed_up = false;
            self.peers.router.do_send(SessionDrained {
                slot: attached.slot,
                conn: attached.conn,
            });
        }
        self.read_store_if_room(ctx);
    }

    /// A persistent session that is catching up reads the next page of its stored queue when it has room.
    pub(super) fn read_store_if_room(&mut self, ctx: &mut Context<Self>) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        if !attached.persistent
            || !attached.catching_up
            || attached.reading_store
            || !attached.outbound.has_room()
        {
            return;
        }
        attached.reading_store = true;
        let (reply, page) = tokio::sync::oneshot::channel();
        let request = StoreRequest::ReadQueue {
            client_id: attached.client_id.clone(),
            after_seq: attached.cursor,
            limit: STORE_PAGE,
            reply,
        };
        // Writes recorded so far must reach the store before the read that depends on them.
        self.flush(ctx);
        if self.peers.store.submit(request).is_err() {
            ctx.stop();
            return;
        }
        ctx.spawn(page.into_actor(self).map(|result, act, ctx| {
            let result = result.unwrap_or(Err(StoreError::WriterGone));
            act.on_store_page(result, ctx);
            act.flush(ctx);
        }));
    }

    fn on_store_page(
        &mut self,
        page: Result<Vec<QueuedMessage>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        attached.reading_store = false;
        let entries = match page {
            Ok(entries) => entries,
            Err(e) => {
                log::error!("client {}: cannot read its queue: {e}", attached.client_id);
                ctx.stop();
                return;
            }
        };
        let complete = entries.len() < STORE_PAGE;
        for entry in entries {
            if entry.seq <= attached.cursor {
                continue;
            }
            attached.cursor = entry.seq;
            resume_entry(&mut self.out, &mut self.pending_ops, attached, entry);
        }
        if complete {
            // Nothing beyond the cursor was stored when the read ran: positions up to the head the router
            // reported before it are read or gone (acknowledged earlier, or dropped by the queue limit).
            attached.cursor = attached.cursor.max(attached.known_head);
            self.ask_to_resume_live(ctx);
        } else {
            self.read_store_if_room(ctx);
        }
    }

    /// The stored queue is read to its end: ask the router for live delivery, or read again if more arrived.
    fn ask_to_resume_live(&mut self, ctx: &mut Context<Self>) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        let request = ResumeLive {
            slot: attached.slot,
            conn: attached.conn,
            cursor: attached.cursor,
        };
        attached.reading_store = true;
        ctx.spawn(
            self.peers
                .router
                .send(request)
                .into_actor(self)
                .map(|live, act, ctx| {
                    let Phase::Connected(attached) = &mut act.phase else {
                        return;
                    };
                    attached.reading_store = false;
                    match live {
                        Ok(Ok(())) => attached.catching_up = false,
                        Ok(Err(head)) => {
                            attached.known_head = attached.known_head.max(head);
                            act.read_store_if_room(ctx);
                        }
                        Err(_) => ctx.stop(),
                    }
                    act.flush(ctx);
                }),
        );
    }
}

/// Writes a PUBLISH and records in the store that it was sent (or, for stored QoS 0, that it is done).
fn send_publish(
    out: &mut Outgoing,
    ops: &mut Vec<StoreOp>,
    client_id: &ClientId,
    hooks: &mut Option<Box<hooked::SessionHooks>>,
    sendable: Sendable,
) {
    if let Some(seq) = sendable.seq {
        let client_id = client_id.clone();
        ops.push(match sendable.publish.packet_id {
            Some(packet_id) => StoreOp::MarkSent {
                client_id,
                seq,
                packet_id,
            },
            None => StoreOp::Remove { client_id, seq },
        });
    }
    if let Some(hooks) = hooks {
        hooks.delivered(&sendable.publish);
    }
    out.write(&Packet::Publish(sendable.publish));
}

/// Takes a stored queue entry back into the session: unacknowledged ones are re-sent as they were
/// [MQTT-4.4.0-1], waiting ones are offered to the window.
fn resume_entry(
    out: &mut Outgoing,
    ops: &mut Vec<StoreOp>,
    attached: &mut Attached,
    entry: QueuedMessage,
) {
    let seq = entry.seq;
    match (entry.state, entry.message) {
        (EntryState::PubRelSent(id), _) => {
            attached.outbound.resume_pubrel(id, Some(seq));
            out.write(&Packet::PubRel(id));
        }
        (EntryState::PublishSent(id), Some(message)) => {
            let delivery = Delivery {
                message,
                qos: entry.qos,
                seq: Some(seq),
                retain: false,
            };
            let publish = attached.outbound.resume_publish(delivery, id);
            if let Some(hooks) = &mut attached.hooks {
                hooks.delivered(&publish);
            }
            out.write(&Packet::Publish(publish));
        }
        (EntryState::Queued, Some(message)) => {
            let delivery = Delivery {
                message,
                qos: entry.qos,
                seq: Some(seq),
                retain: false,
            };
            match attached.outbound.offer(delivery) {
                Offer::Send(sendable) => {
                    send_publish(out, ops, &attached.client_id, &mut attached.hooks, sendable)
                }
                Offer::Queued => {}
                Offer::Full(delivery) => attached.outbound.force_queue(delivery),
            }
        }
        (_, None) => {
            log::error!(
                "client {}: stored queue entry {seq} has no message body",
                attached.client_id
            );
        }
    }
}

/// A clean session's memory queue is full: apply the overflow policy, never dropping QoS 2.
fn overflow_in_memory(attached: &mut Attached, delivery: Delivery, overflow: OverflowPolicy) {
    if delivery.qos == QoS::ExactlyOnce {
        attached.outbound.force_queue(delivery);
        return;
    }
    attached.dropped += 1;
    if overflow == OverflowPolicy::DropOldest && attached.outbound.drop_oldest().is_some() {
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
