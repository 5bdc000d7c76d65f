//! Packets from the client once attached: PUBLISH and the QoS 1/2 handshakes it starts, acknowledgements of
//! outbound messages, SUBSCRIBE/UNSUBSCRIBE, PINGREQ and DISCONNECT.

use super::*;
use crate::codec::{Publish, SubAck, Subscribe, SubscribeReturnCode, Unsubscribe};
use crate::message::{now_ms, Message};
use crate::protocol::BatchId;
use crate::store::StoreError;

/// What one read's packets send to the router together.
#[derive(Default)]
pub(super) struct InboundBatch {
    messages: Vec<Arc<Message>>,
    ops: Vec<StoreOp>,
    ack_batch: Option<BatchId>,
    now_ms: Option<u64>,
    /// The publish hooks have seen these messages.
    screened: bool,
}

impl InboundBatch {
    fn ack_batch(&mut self, acks: &mut AckQueue) -> BatchId {
        *self.ack_batch.get_or_insert_with(|| acks.next_batch())
    }

    fn now_ms(&mut self) -> u64 {
        *self.now_ms.get_or_insert_with(now_ms)
    }
}

impl Session {
    pub(super) fn handle_attached(
        &mut self,
        packet: Packet,
        batch: &mut InboundBatch,
        ctx: &mut Context<Self>,
    ) {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, batch, ctx),
            Packet::PubAck(id) => self.on_outbound_ack(id, AckKind::Acknowledged, ctx),
            Packet::PubRec(id) => self.on_outbound_ack(id, AckKind::Received, ctx),
            Packet::PubComp(id) => self.on_outbound_ack(id, AckKind::Completed, ctx),
            Packet::PubRel(id) => self.on_pubrel(id, batch),
            Packet::Subscribe(subscribe) => {
                self.finish_inbound(std::mem::take(batch), ctx);
                self.on_subscribe(subscribe, ctx);
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.finish_inbound(std::mem::take(batch), ctx);
                self.on_unsubscribe(unsubscribe, ctx);
            }
            Packet::PingReq => self.out.write(&Packet::PingResp),
            Packet::Disconnect => {
                // [MQTT-3.14.4-3]: the will is discarded.
                if let Phase::Connected(attached) = &mut self.phase {
                    attached.will = None;
                }
                self.close(CloseReason::Disconnect, ctx);
            }
            Packet::Connect(_) => self.violation("[MQTT-3.1.0-2] second CONNECT", ctx),
            other => self.violation(
                format_args!("[MQTT-2.2.1] {} is sent only by servers", other.name()),
                ctx,
            ),
        }
    }

    fn on_publish(&mut self, publish: Publish, batch: &mut InboundBatch, ctx: &mut Context<Self>) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        let id = publish.packet_id;
        let qos = publish.qos;
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            arrived_at_ms: batch.now_ms(),
        });
        match (qos, id) {
            (QoS::AtMostOnce, _) => batch.messages.push(message),
            (QoS::AtLeastOnce, Some(id)) => {
                batch.messages.push(message);
                let ack = batch.ack_batch(&mut attached.acks);
                attached.acks.push(Some(ack), Packet::PubAck(id));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let ack = batch.ack_batch(&mut attached.acks);
                // [MQTT-4.3.3-2]: a PUBLISH with an id still awaiting PUBREL is not delivered again.
                if attached.incoming_qos2.insert(id) {
                    batch.messages.push(message);
                    if attached.persistent {
                        batch.ops.push(StoreOp::AddIncomingQos2 {
                            client_id: attached.client_id.clone(),
                            packet_id: id,
                        });
                    }
                }
                attached.acks.push(Some(ack), Packet::PubRec(id));
            }
            (_, None) => self.violation("[MQTT-2.3.1-1] QoS > 0 PUBLISH without packet id", ctx),
        }
    }

    fn on_pubrel(&mut self, id: PacketId, batch: &mut InboundBatch) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        if attached.incoming_qos2.remove(&id) && attached.persistent {
            batch.ops.push(StoreOp::RemoveIncomingQos2 {
                client_id: attached.client_id.clone(),
                packet_id: id,
            });
        }
        // [MQTT-4.3.3-2]: PUBCOMP answers every PUBREL, known id or not, once its removal is stored.
        let ack = batch.ack_batch(&mut attached.acks);
        attached.acks.push(Some(ack), Packet::PubComp(id));
    }

    /// Sends a read's messages and store changes to the router; acknowledgements wait for the commit.
    pub(super) fn finish_inbound(&mut self, mut batch: InboundBatch, ctx: &mut Context<Self>) {
        if !batch.screened && !batch.messages.is_empty() {
            batch.screened = true;
            let messages = std::mem::take(&mut batch.messages);
            match self.screen_publishes(messages) {
                Ok(messages) => batch.messages = messages,
                Err(screening) => {
                    // The session waits for the hooks, so its packets stay in order.
                    ctx.wait(screening.into_actor(self).map(move |kept, act, ctx| {
                        batch.messages = kept;
                        act.finish_inbound(batch, ctx);
                        act.flush(ctx);
                    }));
                    return;
                }
            }
        }
        if batch.messages.is_empty() && batch.ops.is_empty() {
            if let Some(ack) = batch.ack_batch {
                self.on_committed(ack, Ok(()), ctx);
            }
            return;
        }
        let done = batch.ack_batch.map(|ack| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            ctx.spawn(rx.into_actor(self).map(move |result, act, ctx| {
                let result = result.unwrap_or(Err(StoreError::WriterGone));
                act.on_committed(ack, result, ctx);
                act.flush(ctx);
            }));
            tx
        });
        let route = RoutePublish {
            messages: batch.messages,
            ops: batch.ops,
            done,
            permit: None,
        };
        if ctx.state() != ActorState::Running {
            // The client is gone (or said DISCONNECT after these packets): nothing left to hold back.
            self.peers.router.do_send(route);
            return;
        }
        // Each batch holds one of a few permits until every subscriber has taken it: when all are out, the
        // session stops reading its client until a slow subscriber catches up.
        match self.flow.clone().try_acquire_owned() {
            Ok(permit) => self.send_route(route, permit, ctx),
            Err(_) => {
                let acquire = self.flow.clone().acquire_owned();
                ctx.wait(
                    acquire
                        .into_actor(self)
                        .map(move |permit, act, ctx| match permit {
                            Ok(permit) => act.send_route(route, permit, ctx),
                            Err(_) => ctx.stop(),
                        }),
                );
            }
        }
    }

    fn send_route(
        &mut self,
        mut route: RoutePublish,
        permit: tokio::sync::OwnedSemaphorePermit,
        ctx: &mut Context<Self>,
    ) {
        route.permit = Some(Arc::new(permit));
        match self.peers.router.try_send(route) {
            Ok(()) => {}
            Err(SendError::Full(route)) => {
                // The router is behind: stop reading this client until it takes the batch.
                let send = self.peers.router.send(route);
                ctx.wait(send.into_actor(self).map(|result, _, ctx| {
                    if result.is_err() {
                        ctx.stop();
                    }
                }));
            }
            Err(SendError::Closed(_)) => ctx.stop(),
        }
    }

    /// A store commit finished: release the acknowledgements it held, or close without them on failure.
    pub(super) fn on_committed(
        &mut self,
        ack: BatchId,
        result: Result<(), StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        if let Err(e) = result {
            // Nothing unstored is acknowledged; the client resends after reconnecting.
            log::error!(
                "client {}: store commit failed, closing without acknowledging: {e}",
                attached.client_id
            );
            ctx.stop();
            return;
        }
        attached.acks.complete(ack);
        let out = &mut self.out;
        attached.acks.release(|packet| out.write(&packet));
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, ctx: &mut Context<Self>) {
        if let Some(subscribe) = self.screen_subscribe(subscribe, ctx) {
            self.subscribe_screened(subscribe, Vec::new(), ctx);
        }
    }

    /// Subscribes to the filters not `denied` (one flag per filter; empty when nothing is denied).
    pub(super) fn subscribe_screened(
        &mut self,
        subscribe: Subscribe,
        denied: Vec<bool>,
        ctx: &mut Context<Self>,
    ) {
        let max_qos = self.peers.settings.max_qos;
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        // [MQTT-3.9.3-1]: one return code per filter, in order; granted QoS is capped by the broker's maximum.
        let granted: Vec<_> = subscribe
            .filters
            .into_iter()
            .map(|(filter, qos)| (filter, qos.min(max_qos)))
            .collect();
        let ack = attached.acks.next_batch();
        attached.acks.push(
            Some(ack),
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                return_codes: granted
                    .iter()
                    .enumerate()
                    .map(|(i, (_, qos))| match denied.get(i) {
                        Some(true) => SubscribeReturnCode::Failure,
                        _ => SubscribeReturnCode::Success(*qos),
                    })
                    .collect(),
            }),
        );
        let granted: Vec<_> = granted
            .into_iter()
            .enumerate()
            .filter(|(i, _)| denied.get(*i) != Some(&true))
            .map(|(_, granted)| granted)
            .collect();
        let (done, committed) = tokio::sync::oneshot::channel();
        self.peers.router.do_send(AddSubscriptions {
            slot: attached.slot,
            conn: attached.conn,
            filters: granted.clone(),
            done,
        });
        ctx.spawn(committed.into_actor(self).map(move |result, act, ctx| {
            let result = result.unwrap_or(Err(StoreError::WriterGone));
            let ok = result.is_ok();
            act.on_committed(ack, result, ctx);
            act.flush(ctx);
            if ok {
                // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: retained messages follow the SUBACK, also for a replaced subscription.
                act.peers.retained.do_send(SendRetained {
                    filters: granted,
                    to: ctx.address().recipient(),
                });
            }
        }));
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, ctx: &mut Context<Self>) {
        let Phase::Connected(attached) = &mut self.phase else {
            return;
        };
        let ack = attached.acks.next_batch();
        // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK even when nothing matched.
        attached
            .acks
            .push(Some(ack), Packet::UnsubAck(unsubscribe.packet_id));
        let (done, committed) = tokio::sync::oneshot::channel();
        self.peers.router.do_send(RemoveSubscriptions {
            slot: attached.slot,
            conn: attached.conn,
            filters: unsubscribe.filters,
            done,
        });
        ctx.spawn(committed.into_actor(self).map(move |result, act, ctx| {
            let result = result.unwrap_or(Err(StoreError::WriterGone));
            act.on_committed(ack, result, ctx);
            act.flush(ctx);
        }));
    }
}

/// Which acknowledgement of an outbound message arrived.
#[derive(Debug, Clone, Copy)]
pub(super) enum AckKind {
    /// PUBACK.
    Acknowledged,
    /// PUBREC.
    Received,
    /// PUBCOMP.
    Completed,
}
