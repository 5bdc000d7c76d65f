//! Packets from a connected client, in the order it sent them: PUBLISH and the inbound QoS 1/2 handshakes,
//! SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT. Every answer goes through the ordered answer queue, released
//! once what it promises is stored; hooks screen publishes and subscriptions without reordering anything.

use super::*;
use crate::codec::RetainHandling;
use crate::codec::{
    props, Publish, ReasonCode, ReasonOnly, SubAck, Subscribe, SubscribeReturnCode, Unsubscribe,
};
use crate::message::Grant;
use crate::protocol::io::{CloseReason, Emit, Request, Screening};
use crate::protocol::share::{self, is_shared};
use crate::protocol::v5::payload_format_valid;
use crate::store::StoreError;

impl Connection {
    pub(super) fn on_attached_item(
        &mut self,
        item: Result<Packet, DecodeError>,
        now: Now,
        out: &mut Outputs,
    ) {
        let packet = match item {
            Ok(packet) => packet,
            Err(e) => {
                // What came before the malformed packet is still handled (and routed) first.
                if self.settle_batch(out) {
                    if matches!(e, DecodeError::PacketTooLarge { .. }) {
                        out.limits.hit(crate::protocol::Limit::PacketSize);
                    }
                    self.violation(e.reason_code(), e, now, out);
                } else {
                    self.backlog.push_front(Err(e));
                }
                return;
            }
        };
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, now, out),
            Packet::PubRel(ack) => self.on_pubrel(ack.packet_id),
            Packet::PubAck(ack) => self.on_outbound_puback(ack.packet_id, out),
            Packet::PubRec(ack) if ack.reason.is_error() => {
                self.on_outbound_pubrec_refused(ack.packet_id, out)
            }
            Packet::PubRec(ack) => self.on_outbound_pubrec(ack.packet_id, out),
            Packet::PubComp(ack) => self.on_outbound_pubcomp(ack.packet_id, out),
            Packet::PingReq => self.answer(None, Answer::PingResp, out),
            packet @ (Packet::Subscribe(_) | Packet::Unsubscribe(_) | Packet::Disconnect(_)) => {
                // The router must see this after the publishes before it: they are routed (or screened) first.
                if !self.settle_batch(out) {
                    self.backlog.push_front(Ok(packet));
                    return;
                }
                match packet {
                    Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, out),
                    Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe, out),
                    Packet::Disconnect(disconnect) => self.on_disconnect(disconnect, now, out),
                    _ => {}
                }
            }
            Packet::Auth(auth) if self.level.is_v5() => self.on_auth(auth, now, out),
            Packet::Connect(_) => self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.1.0-2] second CONNECT",
                now,
                out,
            ),
            other => self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format_args!("[MQTT-2.2.1] {} is sent only by servers", other.name()),
                now,
                out,
            ),
        }
    }

    /// The checks a PUBLISH passes before it is taken: the MQTT 5.0 rules (a violation closes the connection,
    /// a payload that is not the UTF-8 it claims gets 0x99) and the topic limits. `None` once it is dealt with;
    /// else whether its message is routed.
    fn screen_publish(
        &mut self,
        publish: &mut Publish,
        now: Now,
        out: &mut Outputs,
    ) -> Option<bool> {
        let limits = &self.settings.v5;
        let Stage::Connected(attached) = &mut self.stage else {
            return None;
        };
        if let Some(v5) = attached.v5.as_mut() {
            // Exchanges still open: QoS 2 ones awaiting PUBREL, and those whose PUBACK or PUBCOMP waits to leave.
            let open = attached.incoming_qos2.len() + attached.acks.unanswered_exchanges();
            if let Err((reason, rule)) =
                v5.accept_publish(publish, limits, &attached.incoming_qos2, open)
            {
                if reason == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED {
                    out.limits.hit(crate::protocol::Limit::ReceiveMaximum);
                }
                self.violation(reason, rule, now, out);
                return None;
            }
            if !payload_format_valid(publish.properties.as_deref(), &publish.payload) {
                // Section 3.3.2.3.2: the message is refused with 0x99, and not routed.
                self.refuse_publish(publish, ReasonCode::PAYLOAD_FORMAT_INVALID);
                return None;
            }
        }
        // A topic over `max_topic_len_bytes` or `max_topic_levels` is well formed but not accepted: an MQTT 5.0
        // client is told 0x90 Topic Name invalid in its PUBACK/PUBREC (sections 3.4.2.1, 3.5.2.1); a QoS 0
        // message, and any message of an earlier level (which has no refusal to send), is dropped and
        // acknowledged as usual, as a message the hooks deny is.
        if let Err(limit) = self.settings.limits.check_topic(publish.topic.as_str()) {
            out.limits.hit(limit);
            if attached.v5.is_some() {
                self.refuse_publish(publish, ReasonCode::TOPIC_NAME_INVALID);
                return None;
            }
            return Some(false);
        }
        // Rights over topics (the ACL file's): a publish the client may not make is dropped. An MQTT 5.0 client
        // is told 0x87 Not authorized; earlier ones are acknowledged as usual, having no way to be told.
        let allowed = self
            .rights
            .as_mut()
            .is_none_or(|rights| rights.may_publish(publish.topic.as_str()));
        if !allowed && attached.v5.is_some() {
            self.refuse_publish(publish, ReasonCode::NOT_AUTHORIZED);
            return None;
        }
        Some(allowed)
    }

    fn on_publish(&mut self, mut publish: Publish, now: Now, out: &mut Outputs) {
        let Some(routed) = self.screen_publish(&mut publish, now, out) else {
            return;
        };
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            arrived_at_ms: now.wall_ms,
            properties: publish
                .properties
                .and_then(crate::codec::PublishProperties::into_message),
        });
        // The packet ids travel with the batch when the hooks may deny (0x87) or the router report no match
        // (0x10): both answers exist in MQTT 5.0 only, but the hooks need them in order either way.
        let track_ids = self.settings.hooks || attached.v5.is_some();
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        let take = |batch: &mut InboundBatch, message| {
            if !routed {
                return;
            }
            batch.messages.push(message);
            if track_ids {
                batch.ids.push((packet_id, qos));
            }
        };
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => take(attached.batch.get(), message),
            (QoS::AtLeastOnce, Some(id)) => {
                take(attached.batch.get(), message);
                attached.answer_after_batch(Answer::PubAck(id.into()), &mut self.tickets);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // [MQTT-4.3.3-2]: a PUBLISH whose id still awaits PUBREL is acknowledged but not delivered again.
                if attached.incoming_qos2.insert(id) {
                    take(attached.batch.get(), message);
                    if attached.persistent {
                        attached.batch.get().ops.push(StoreOp::AddIncomingQos2 {
                            client_id: attached.client_id.clone(),
                            packet_id: id,
                        });
                    }
                }
                attached.answer_after_batch(Answer::PubRec(id.into()), &mut self.tickets);
            }
            (_, None) => self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-2.3.1-1] QoS > 0 PUBLISH without packet id",
                now,
                out,
            ),
        }
    }

    /// Answers a QoS 1/2 PUBLISH with a failure reason code without routing it (MQTT 5.0).
    fn refuse_publish(&mut self, publish: &Publish, reason: ReasonCode) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let Some(id) = publish.packet_id else {
            return;
        };
        let answer = match publish.qos {
            QoS::ExactlyOnce => Answer::PubRec(crate::codec::Ack::with_reason(id, reason)),
            _ => Answer::PubAck(crate::codec::Ack::with_reason(id, reason)),
        };
        attached.answer_after_batch(answer, &mut self.tickets);
    }

    fn on_pubrel(&mut self, id: PacketId) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let known = attached.incoming_qos2.remove(&id);
        if known && attached.persistent {
            attached.batch.get().ops.push(StoreOp::RemoveIncomingQos2 {
                client_id: attached.client_id.clone(),
                packet_id: id,
            });
        }
        // [MQTT-4.3.3-2]: PUBCOMP answers every PUBREL, known id or not, once its removal is stored; in MQTT
        // 5.0 an unknown one says 0x92 Packet Identifier not found (section 3.7.2.1).
        let reason = match (known, attached.v5.is_some()) {
            (false, true) => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            _ => ReasonCode::SUCCESS,
        };
        let answer = Answer::PubComp(crate::codec::Ack::with_reason(id, reason));
        attached.answer_after_batch(answer, &mut self.tickets);
    }

    /// The router found no subscriber for these QoS 1/2 messages: PUBACK/PUBREC 0x10 No matching
    /// subscribers (sections 3.4.2.1, 3.5.2.1), unless they already carry a failure.
    pub(super) fn on_unmatched(&mut self, ids: Vec<PacketId>) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        for id in ids {
            // An answer that already says why the message was refused keeps saying so.
            if let Some(ack) = attached
                .acks
                .publish_answer(id)
                .filter(|ack| ack.reason == ReasonCode::SUCCESS)
            {
                ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
            }
        }
    }

    /// Queues an answer behind every earlier one; `ticket` is the commit it waits for, if any.
    pub(super) fn answer(&mut self, ticket: Option<Ticket>, answer: Answer, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        attached.acks.push(ticket, answer);
        release_answers(attached, out);
    }

    /// Routes the open batch of publishes, or hands it to the publish hooks first; false while the hooks
    /// have it (the core then waits for `Input::Screened`).
    pub(super) fn settle_batch(&mut self, out: &mut Outputs) -> bool {
        let hooks = self.settings.hooks;
        let Stage::Connected(attached) = &mut self.stage else {
            return true;
        };
        if attached.awaiting.is_some() {
            return false;
        }
        let mut batch = attached.batch.take();
        if hooks && !batch.messages.is_empty() {
            // The hooks hand back what they keep; the batch waits with its answers and store changes.
            let messages = std::mem::take(&mut batch.messages);
            out.requests.push(Request::ScreenPublishes(messages));
            attached.awaiting = Some(Box::new(Awaiting::Screening(batch)));
            return false;
        }
        route(attached, batch, out);
        true
    }

    /// The publish hooks screened the batch: what they kept is routed, and the client's packets go on. An MQTT
    /// 5.0 client is told 0x87 Not authorized for what they denied.
    pub(super) fn on_screened(&mut self, verdicts: Vec<Screening>, now: Now, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let Some(Awaiting::Screening(mut batch)) = attached.awaiting.take().map(|a| *a) else {
            return;
        };
        let ids = std::mem::take(&mut batch.ids);
        let mut kept = Vec::with_capacity(verdicts.len());
        for (i, verdict) in verdicts.into_iter().enumerate() {
            match verdict {
                Screening::Kept(message) => {
                    kept.push(message);
                    if let Some(id) = ids.get(i) {
                        batch.ids.push(*id);
                    }
                }
                Screening::Dropped => {}
                Screening::Denied => {
                    if let (Some((Some(id), qos)), true) = (ids.get(i), attached.v5.is_some()) {
                        attached.refuse_publish(*id, *qos, &mut batch);
                    }
                }
            }
        }
        batch.messages = kept;
        route(attached, batch, out);
        self.drain(now, out);
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if self.settings.hooks {
            out.requests.push(Request::ScreenSubscribe(
                subscribe
                    .filters
                    .iter()
                    .map(|(filter, options)| (filter.clone(), options.qos))
                    .collect(),
            ));
            attached.awaiting = Some(Box::new(Awaiting::SubscribeScreening(subscribe)));
            return;
        }
        self.subscribe(subscribe, &[], out);
    }

    pub(super) fn on_subscribe_screened(&mut self, denied: Vec<bool>, now: Now, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let Some(Awaiting::SubscribeScreening(subscribe)) = attached.awaiting.take().map(|a| *a)
        else {
            return;
        };
        self.subscribe(subscribe, &denied, out);
        self.drain(now, out);
    }

    /// Subscribes to the filters not `denied` (one flag per filter); SUBACK once they are stored.
    fn subscribe(&mut self, subscribe: Subscribe, denied: &[bool], out: &mut Outputs) {
        let max_qos = self.settings.max_qos;
        let shared_on = self.settings.v5.shared_subscriptions;
        let settings = self.settings.clone();
        let limits = &settings.limits;
        let ticket = self.new_ticket();
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::with_capacity(subscribe.filters.len());
        let id = props(&subscribe.properties)
            .subscription_identifiers
            .first()
            .copied();
        let v5 = attached.v5.is_some();
        let refuse = |reason| match v5 {
            true => SubscribeReturnCode::Refused(reason),
            false => SubscribeReturnCode::Failure,
        };
        for (i, (filter, options)) in subscribe.filters.into_iter().enumerate() {
            let denied = denied.get(i).copied().unwrap_or(false);
            let screened = screen_filter(
                attached,
                &filter,
                denied,
                shared_on,
                limits,
                &mut self.rights,
                out,
            );
            if let Err(reason) = screened {
                // The reason in 5.0, 0x80 before.
                return_codes.push(refuse(reason));
                continue;
            }
            let shared = is_shared(&filter);
            // [MQTT-3.9.3-1]: one return code per filter, in order; the granted QoS is capped by the broker's.
            let qos = options.qos.min(max_qos);
            return_codes.push(SubscribeReturnCode::Success(qos));
            let filter = filter.detached();
            // Section 3.8.3.1, Retain Handling: 0 always, 1 only for a new subscription (the router says
            // which existed, before the commit), 2 never. Retained messages are not sent for a shared
            // subscription (section 4.8.2).
            let only_if_new = match options.retain_handling {
                RetainHandling::OnSubscribe => Some(false),
                RetainHandling::OnNewSubscription => Some(true),
                RetainHandling::Never => None,
            };
            if let (Some(only_if_new), false) = (only_if_new, shared) {
                retained.push(RetainedAfter {
                    index: granted.len(),
                    filter: filter.clone(),
                    qos,
                    id,
                    only_if_new,
                });
            }
            let grant = Grant::new(qos, options.no_local, options.retain_as_published, id);
            granted.push((filter, grant));
        }
        attached.acks.push(
            Some(ticket),
            Answer::SubAck(Box::new(SubAck {
                packet_id: subscribe.packet_id,
                return_codes,
                properties: None,
            })),
        );
        if !retained.is_empty() {
            // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: retained messages follow the SUBACK, also for a replaced subscription.
            attached
                .retained_after
                .get_or_insert_with(Box::default)
                .push((ticket, retained));
        }
        if let Some(rights) = self.rights.as_mut() {
            let filters: Vec<&str> = granted
                .iter()
                .map(|(f, _)| share::matched_filter(f.as_str()))
                .collect();
            rights.subscribed(&filters);
        }
        out.requests.push(Request::Subscribe {
            filters: granted,
            ticket,
            report_existing: attached.v5.is_some(),
        });
    }

    /// The router said which filters of a SUBSCRIBE or UNSUBSCRIBE the session had before (MQTT 5.0): Retain
    /// Handling 1 sends nothing for those, and UNSUBACK says 0x11 for the others [MQTT-3.11.3-1 in 5.0].
    pub(super) fn on_existing(&mut self, ticket: Ticket, existed: Vec<bool>) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Some((_, retained)) = attached
            .retained_after
            .iter_mut()
            .flat_map(|all| all.iter_mut())
            .find(|(t, _)| *t == ticket)
        {
            retained.retain(|r| !(r.only_if_new && existed.get(r.index).copied().unwrap_or(false)));
        }
        let codes = existed
            .iter()
            .map(|had| match had {
                true => ReasonCode::SUCCESS,
                false => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        attached.acks.set_unsuback_codes(ticket, codes);
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, out: &mut Outputs) {
        let ticket = self.new_ticket();
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK even when nothing matched; in 5.0 one reason code per
        // filter, set once the router says which subscriptions existed (`on_existing`).
        if let Some(held) = attached.subscribed.as_mut() {
            for filter in &unsubscribe.filters {
                held.remove(filter);
            }
        }
        if let Some(rights) = self.rights.as_mut() {
            for filter in &unsubscribe.filters {
                rights.unsubscribed(share::matched_filter(filter.as_str()));
            }
        }
        let mut unsuback = crate::codec::UnsubAck::from(unsubscribe.packet_id);
        let v5 = attached.v5.is_some();
        if v5 {
            unsuback.reason_codes = vec![ReasonCode::SUCCESS; unsubscribe.filters.len()];
        }
        attached
            .acks
            .push(Some(ticket), Answer::UnsubAck(Box::new(unsuback)));
        out.requests.push(Request::Unsubscribe {
            filters: unsubscribe.filters,
            ticket,
            report_existing: v5,
        });
    }

    fn on_disconnect(&mut self, disconnect: ReasonOnly, now: Now, out: &mut Outputs) {
        if let Stage::Connected(attached) = &mut self.stage {
            if let Some(v5) = attached.v5.as_mut() {
                let asked = props(&disconnect.properties).session_expiry_interval;
                match asked {
                    // [MQTT-3.14.2-2]: a session that ends with its connection cannot be given an expiry now.
                    Some(e) if e > 0 && v5.session_expiry == 0 => {
                        return self.violation(
                            ReasonCode::PROTOCOL_ERROR,
                            "[MQTT-3.14.2-2] DISCONNECT sets a session expiry after CONNECT set 0",
                            now,
                            out,
                        );
                    }
                    Some(e) => {
                        v5.session_expiry = e.min(self.settings.v5.max_session_expiry_secs);
                        out.requests.push(Request::SessionExpiry(v5.session_expiry));
                    }
                    None => {}
                }
            }
            if disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL {
                // Section 3.14.2.1: 0x04 asks for the will to be published all the same.
                return self.close(CloseReason::Abnormal, now, out);
            }
            // [MQTT-3.14.4-3]: the will is discarded.
            attached.will = None;
        }
        // [MQTT-3.14.4-2]: anything the client sent after DISCONNECT, even in the same read, is ignored.
        self.close(CloseReason::Disconnect, now, out);
    }

    /// A commit that answers waited for finished: release them in order, or close without them on failure.
    pub(super) fn on_answer_committed(
        &mut self,
        ticket: Ticket,
        result: Result<(), StoreError>,
        now: Now,
        out: &mut Outputs,
    ) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Err(e) = result {
            // Nothing unstored is acknowledged as accepted; a 3.1.1 client sends it again after reconnecting.
            log::error!(
                "client {}: store commit failed, closing without acknowledging: {e}",
                attached.client_id
            );
            if attached.v5.is_some() {
                // An MQTT 5.0 client is told: with a full disk its messages are refused with 0x97 Quota
                // exceeded (sections 3.4.2.1, 3.5.2.1) and so is the connection; otherwise 0x80.
                let reason = match e.is_out_of_space() {
                    true => ReasonCode::QUOTA_EXCEEDED,
                    false => ReasonCode::UNSPECIFIED_ERROR,
                };
                for refused in attached.acks.fail(ticket, reason) {
                    out.emits.push(Emit::Control(refused));
                }
                self.disconnect_with(reason, out);
            }
            self.close(CloseReason::Abnormal, now, out);
            return;
        }
        attached.acks.complete(ticket);
        release_answers(attached, out);
        let Some(waiting) = attached.retained_after.as_mut() else {
            return;
        };
        if let Some(i) = waiting.iter().position(|(t, _)| *t == ticket) {
            let (_, filters) = waiting.remove(i);
            if waiting.is_empty() {
                attached.retained_after = None;
            }
            let filters: Vec<_> = filters
                .into_iter()
                .map(|r| (r.filter, r.qos, r.id))
                .collect();
            if !filters.is_empty() {
                out.requests.push(Request::SendRetained(filters));
            }
        }
    }
}

impl Attached {
    /// Answers a denied QoS 1/2 PUBLISH with 0x87 (MQTT 5.0): a QoS 2 exchange ends with that PUBREC, so its
    /// packet id is not kept awaiting PUBREL.
    fn refuse_publish(&mut self, id: PacketId, qos: QoS, batch: &mut InboundBatch) {
        if let Some(ack) = self.acks.publish_answer(id) {
            ack.reason = ReasonCode::NOT_AUTHORIZED;
        }
        if qos == QoS::ExactlyOnce && self.incoming_qos2.remove(&id) {
            batch.ops.retain(
                |op| !matches!(op, StoreOp::AddIncomingQos2 { packet_id, .. } if *packet_id == id),
            );
        }
    }

    /// Queues an answer behind every earlier one, released once the open batch is stored.
    fn answer_after_batch(&mut self, answer: Answer, tickets: &mut Tickets) {
        let ticket = self.batch.ticket(tickets);
        self.acks.push(Some(ticket), answer);
    }
}

/// Sends a batch to the router; a batch with nothing to route or store completes its answers at once.
fn route(attached: &mut Attached, batch: InboundBatch, out: &mut Outputs) {
    if batch.messages.is_empty() && batch.ops.is_empty() {
        if let Some(ticket) = batch.ticket {
            attached.acks.complete(ticket);
            release_answers(attached, out);
        }
        return;
    }
    let report_unmatched = match (&attached.v5, batch.ticket) {
        (Some(_), Some(_)) => batch.ids.iter().map(|(id, _)| *id).collect(),
        _ => Vec::new(),
    };
    out.requests.push(Request::Route {
        report_unmatched,
        messages: batch.messages,
        ops: batch.ops,
        ticket: batch.ticket,
    });
}

/// Whether a SUBSCRIBE filter may be granted: not when the hooks `denied` it (0x87 Not authorized), a shared
/// subscription while they are off (0x9E; CONNACK says so) or without a share name and a filter
/// ([MQTT-4.8.2-1], [MQTT-4.8.2-2]: 0x8F), nor over the limits (`admit_filter`).
fn screen_filter(
    attached: &mut Attached,
    filter: &TopicFilter,
    denied: bool,
    shared_on: bool,
    limits: &crate::protocol::Limits,
    rights: &mut Rights,
    out: &mut Outputs,
) -> Result<(), ReasonCode> {
    if denied {
        return Err(ReasonCode::NOT_AUTHORIZED);
    }
    let shared = is_shared(filter);
    if shared && !shared_on {
        return Err(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
    }
    if shared && share::parse(filter).is_none() {
        // [MQTT-4.8.2-1], [MQTT-4.8.2-2]: a share name of at least one character, then a filter.
        return Err(ReasonCode::TOPIC_FILTER_INVALID);
    }
    // Rights over topics (the ACL file's), judged by the filter messages are matched by: a filter the client
    // may not read gets 0x87 (0x80 before 5.0).
    if let Some(rights) = rights.as_mut() {
        if !rights.may_subscribe(share::matched_filter(filter.as_str())) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
    }
    admit_filter(attached, filter, limits, out)
}

/// Whether a SUBSCRIBE filter is within `max_topic_len_bytes`, `max_topic_levels` and (when it is new to the
/// session) `max_subscriptions_per_client`; the SUBACK reason when not: 0x8F Topic Filter invalid, 0x97 Quota
/// exceeded (section 3.9.3), 0x80 before 5.0. A filter the session holds already replaces its subscription
/// and counts once.
fn admit_filter(
    attached: &mut Attached,
    filter: &TopicFilter,
    limits: &crate::protocol::Limits,
    out: &mut Outputs,
) -> Result<(), ReasonCode> {
    if let Err(limit) = limits.check_topic(filter.as_str()) {
        out.limits.hit(limit);
        return Err(ReasonCode::TOPIC_FILTER_INVALID);
    }
    let Some(held) = attached.subscribed.as_mut() else {
        return Ok(());
    };
    if held.contains(filter) {
        return Ok(());
    }
    if !limits.subscription_fits(held.len()) {
        out.limits.hit(crate::protocol::Limit::Subscriptions);
        return Err(ReasonCode::QUOTA_EXCEEDED);
    }
    held.insert(filter.detached());
    Ok(())
}

/// Moves every answer that may leave now into the outputs.
fn release_answers(attached: &mut Attached, out: &mut Outputs) {
    attached
        .acks
        .release(|packet| out.emits.push(Emit::Control(packet)));
}

impl V5Session {
    /// The MQTT 5.0 rules of an incoming PUBLISH: no Subscription Identifier from a client [MQTT-3.3.4-6],
    /// topic aliases resolved [MQTT-3.3.2-7] [MQTT-3.3.2-8], and no more unanswered QoS 1/2 PUBLISHes than the
    /// server's Receive Maximum [MQTT-3.3.4-8]. The error names the DISCONNECT reason and the rule.
    fn accept_publish(
        &mut self,
        publish: &mut Publish,
        limits: &ServerLimits,
        incoming_qos2: &BTreeSet<PacketId>,
        open_exchanges: usize,
    ) -> Result<(), (ReasonCode, &'static str)> {
        let (alias, ids) = publish.properties.as_deref().map_or((None, false), |p| {
            (p.topic_alias(), p.has_subscription_identifiers())
        });
        if ids {
            return Err((
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] PUBLISH from a client carries a Subscription Identifier",
            ));
        }
        let topic = std::mem::replace(&mut publish.topic, crate::topic::TopicName::aliased());
        publish.topic = self
            .inbound_aliases
            .resolve(topic, alias, limits.topic_alias_maximum)
            .map_err(|reason| (reason, "[MQTT-3.3.2-7] topic alias invalid or unknown"))?;
        if publish.topic.is_aliased() {
            return Err((
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.7.3-1] empty topic name without a topic alias",
            ));
        }
        let repeated_qos2 = publish.qos == QoS::ExactlyOnce
            && publish
                .packet_id
                .is_some_and(|id| incoming_qos2.contains(&id));
        if publish.qos != QoS::AtMostOnce
            && !repeated_qos2
            && open_exchanges >= usize::from(limits.receive_maximum)
        {
            return Err((
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "[MQTT-3.3.4-8] more unacknowledged QoS 1/2 PUBLISHes than Receive Maximum",
            ));
        }
        Ok(())
    }
}
