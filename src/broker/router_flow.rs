//! The router's fan-out under flow control: each message goes to every matching session that has credit;
//! without credit a stored message stays in the store, any other one still goes but the batch's routing credit
//! stays with that session, and a stuck session's QoS 0 messages are dropped and counted (rules in `flow`).
//! Also the credit sessions grant back and the periodic look for stuck sessions.

use super::flow::{Admit, Backing, RouteCredit};
use super::messages::*;
use super::registry::{Entry, Registry};
use super::router::Router;
use super::shared::Availability;
use crate::codec::QoS;
use crate::message::{Message, MessageId, ShareGroup};
use crate::protocol::outbound::DeliveryExtras;
use crate::protocol::Delivery;
use crate::store::StoreOp;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;

impl Router {
    /// Fans a batch out; store writes are submitted before any session can acknowledge what they contain.
    pub(super) fn route(&mut self, msg: RoutePublish) {
        let mut ops = msg.ops;
        let now = Instant::now();
        let mut unmatched = Vec::new();
        for (i, message) in msg.messages.iter().enumerate() {
            let matched = self.route_one(message, msg.from, &mut ops, now);
            if let (false, Some((ids, _))) = (matched, &msg.unmatched) {
                unmatched.extend(ids.get(i).copied().flatten());
            }
        }
        if let Some((_, report)) = msg.unmatched {
            let _ = report.send(unmatched);
        }
        self.submit(ops, msg.done);
        self.flush_outbox(msg.credit.as_ref());
    }

    fn route_one(
        &mut self,
        message: &Arc<Message>,
        from: Option<SlotId>,
        ops: &mut Vec<StoreOp>,
        now: Instant,
    ) -> bool {
        self.stats.count_in(message.qos);
        if message.retain {
            self.retain(message, ops);
        }
        let matches = &mut self.matches;
        matches.clear();
        // Overlapping subscriptions of one client give one delivery at the highest granted QoS, with the
        // identifiers of all of them [MQTT-3.3.4-3 in 5.0].
        self.trie.for_each_match(&message.topic, |slot, grant| {
            if grant.no_local() && from == Some(*slot) {
                // [MQTT-3.8.3-3 in 5.0]: not back to the client that published it.
                return;
            }
            matches.entry(*slot).or_default().add(grant, message.retain);
        });
        // Each matching shared group gives the message to one member (section 4.8.2).
        let mut groups = std::mem::take(&mut self.matched_groups);
        self.shared
            .for_each_match(&message.topic, |group| groups.push(group));
        for group in groups.drain(..) {
            let registry = &self.registry;
            let Some((slot, grant)) = self
                .shared
                .pick(group, None, |slot| availability(registry, slot))
            else {
                continue;
            };
            // Handed back to the group only if it came through the group alone.
            let matched = self.matches.entry(slot).or_default();
            let only_shared = !matched.direct;
            matched.add_shared(&grant, only_shared.then_some(group));
        }
        self.matched_groups = groups;
        let (mut fan_out, registry, matches) = self.fan_out(message, ops, now);
        for (slot, matched) in matches.iter_mut() {
            if let Some(entry) = registry.get_mut(*slot) {
                fan_out.to(*slot, entry, matched);
            }
        }
        !matches.is_empty()
    }

    /// The fan-out of `message`: the parts of the router it changes, lent apart from the registry and the
    /// matches it walks, which come with it.
    fn fan_out<'a>(
        &'a mut self,
        message: &'a Arc<Message>,
        ops: &'a mut Vec<StoreOp>,
        now: Instant,
    ) -> (FanOut<'a>, &'a mut Registry, &'a mut SlotMap<Matched>) {
        let queue_qos0 = self.settings().queue_qos0;
        let Router {
            matches,
            registry,
            outbox,
            stats,
            starving,
            next_message_id,
            ..
        } = self;
        let fan_out = FanOut {
            message,
            ops,
            now,
            queue_qos0,
            body: None,
            expiring: crate::protocol::outbound::expiring(message),
            next_message_id,
            outbox,
            stats,
            starving,
        };
        (fan_out, registry, matches)
    }

    /// Keeps a retained message (or forgets the topic's, for an empty payload) in memory and in the store.
    fn retain(&mut self, message: &Arc<Message>, ops: &mut Vec<StoreOp>) {
        // A retained message is kept for long: it must not pin the read buffer it was decoded from.
        let kept = Arc::new(Message {
            topic: message.topic.detached(),
            payload: bytes::Bytes::copy_from_slice(&message.payload),
            properties: message
                .properties
                .as_deref()
                .map(|p| Box::new(p.detached())),
            ..(**message).clone()
        });
        self.retained().do_send(RetainMessage(kept.clone()));
        ops.push(if kept.payload.is_empty() {
            StoreOp::DeleteRetained {
                topic: kept.topic.clone(),
            }
        } else {
            StoreOp::SetRetained { message: kept }
        });
    }

    /// Hands each session its deliveries of the batch; credit bounds how many a mailbox can hold. A session
    /// the batch went beyond the credit of keeps the batch's routing credit until it grants again.
    fn flush_outbox(&mut self, credit: Option<&RouteCredit>) {
        let mut outbox = std::mem::take(&mut self.outbox);
        for (slot, deliveries) in outbox.drain() {
            let Some(online) = self.registry.get_mut(slot).and_then(|e| e.online.as_mut()) else {
                continue;
            };
            if let (true, Some(credit)) = (online.flow.take_overshot(), credit) {
                online.flow.hold(credit.clone());
                self.stats.routing_credits_kept += 1;
            }
            online.addr.do_send(Deliver(deliveries));
        }
        // Keep the map's allocation for the next batch.
        self.outbox = outbox;
    }

    /// A session grants credit: its congestion is over, the routing credits it kept go back (its publishers
    /// read again), and it hears of stored messages skipped meanwhile.
    pub(super) fn grant_credit(&mut self, msg: GrantCredit) {
        let Some(entry) = self.registry.get_mut(msg.link.slot) else {
            return;
        };
        let head = entry.next_seq - 1;
        let Some(online) = entry.online_as(msg.link.conn) else {
            return;
        };
        if msg.credit == 0 {
            online.flow.progress(Instant::now());
            return;
        }
        let Some(congestion) = online.flow.grant(msg.credit) else {
            return;
        };
        if congestion.skipped() {
            online.addr.do_send(Behind { head });
        }
    }

    /// Sessions out of credit for too long are stuck: the publishers they held go on.
    pub(super) fn check_stuck(&mut self) {
        let now = Instant::now();
        let starving = std::mem::take(&mut self.starving);
        for link in starving {
            let Some(entry) = self.registry.get_mut(link.slot) else {
                continue;
            };
            let client_id = entry.client_id.clone();
            let Some(online) = entry.online_as(link.conn) else {
                continue;
            };
            if online.flow.check_stuck(now) {
                self.stats.stuck_sessions += 1;
                log::warn!(
                    "client {client_id}: out of credit for {:?} with messages waiting: it counts as stuck, \
                     its publishers go on and its QoS 0 messages are dropped",
                    super::flow::STUCK_AFTER
                );
            } else if online.flow.is_starving() {
                self.starving.push(link);
                continue;
            }
            online.flow.unlist();
        }
    }
}

/// One message's fan-out: the parts of the router it changes, borrowed apart from the matches it walks.
struct FanOut<'a> {
    message: &'a Arc<Message>,
    ops: &'a mut Vec<StoreOp>,
    now: Instant,
    queue_qos0: bool,
    /// The message's stored body, once one session stores it.
    body: Option<MessageId>,
    /// The message has a Message Expiry Interval (see `Delivery::expiring`).
    expiring: bool,
    next_message_id: &'a mut u64,
    outbox: &'a mut SlotMap<Vec<Delivery>>,
    stats: &'a mut RouterStats,
    starving: &'a mut Vec<RouterLink>,
}

impl FanOut<'_> {
    /// The message for the session at `slot`, at the QoS its subscriptions allow: stored for it if it is
    /// persistent and the message must survive, then handed over as its credit allows.
    fn to(&mut self, slot: SlotId, entry: &mut Entry, matched: &mut Matched) {
        let qos = self.message.qos.min(matched.qos);
        let store_it = entry.persistent
            && (qos != QoS::AtMostOnce || (self.queue_qos0 && entry.online.is_none()));
        let seq = store_it.then(|| self.enqueue(entry, qos, matched));
        let Some(online) = entry.online.as_mut() else {
            if seq.is_some() {
                self.stats.count_out(qos);
            }
            return;
        };
        let backing = match (seq, qos) {
            (Some(_), _) => Backing::Store,
            (None, QoS::AtMostOnce) => Backing::Nothing,
            (None, _) => Backing::Queue,
        };
        let admit = online.flow.admit(backing, self.now);
        match admit {
            Admit::Deliver | Admit::Overshoot | Admit::Push => {
                self.outbox.entry(slot).or_default().push(Delivery {
                    message: self.message.clone(),
                    qos,
                    seq,
                    retain: matched.retain,
                    // A stored copy stays with its session; only what lives in memory is handed back.
                    expiring: self.expiring,
                    extras: matched.extras.take().map(|mut extras| {
                        if seq.is_some() {
                            extras.group = None;
                        }
                        extras
                    }),
                });
                self.stats.count_out(qos);
            }
            Admit::Skip => self.stats.count_out(qos),
            Admit::Drop => count_dropped(self.stats, &entry.client_id),
        }
        if admit == Admit::Overshoot && online.flow.list() {
            let conn = online.conn;
            self.starving.push(RouterLink { slot, conn });
        }
    }

    /// Appends the message to the session's stored queue (storing its body once for all sessions); its
    /// queue position.
    fn enqueue(&mut self, entry: &mut Entry, qos: QoS, matched: &Matched) -> u64 {
        let id = match self.body {
            Some(id) => id,
            None => {
                let id = MessageId(*self.next_message_id);
                *self.next_message_id += 1;
                self.ops.push(StoreOp::StoreMessage {
                    id,
                    message: self.message.clone(),
                });
                self.body = Some(id);
                id
            }
        };
        let seq = entry.next_seq;
        entry.next_seq += 1;
        self.ops.push(StoreOp::Enqueue {
            retain: matched.retain,
            subscription_ids: matched.subscription_ids().to_vec(),
            client_id: entry.client_id.clone(),
            seq,
            message: id,
            qos,
        });
        seq
    }
}

/// What the subscriptions of one session that match a message make of it.
#[derive(Debug, Default)]
pub(super) struct Matched {
    /// The highest QoS granted among them.
    qos: QoS,
    /// RETAIN to send: the message's flag when one of them is Retain As Published [MQTT-3.3.1-12 in 5.0],
    /// else 0 [MQTT-3.3.1-9].
    retain: bool,
    /// One of them is the session's own (not shared) subscription.
    direct: bool,
    /// Their Subscription Identifiers, and the shared group the message came through when that is the only
    /// way it came; allocated only when there is one of either, so the plain fan-out stays small.
    extras: Option<Box<DeliveryExtras>>,
}

impl Matched {
    #[inline]
    fn add(&mut self, grant: &crate::message::Grant, retained: bool) {
        self.direct = true;
        self.qos = self.qos.max(grant.qos());
        if let Some(id) = grant.id() {
            self.extras
                .get_or_insert_with(Box::default)
                .subscription_ids
                .push(id);
        }
        self.retain |= grant.retain_as_published() && retained;
    }

    /// A shared subscription's turn: retained flags are never forwarded on one [MQTT-4.8.2].
    fn add_shared(&mut self, grant: &crate::message::Grant, group: Option<ShareGroup>) {
        self.qos = self.qos.max(grant.qos());
        if grant.id().is_none() && group.is_none() {
            return;
        }
        let extras = self.extras.get_or_insert_with(Box::default);
        extras.subscription_ids.extend(grant.id());
        extras.group = group;
    }

    fn subscription_ids(&self) -> &[u32] {
        self.extras.as_ref().map_or(&[], |e| &e.subscription_ids)
    }

    /// What a member picked to take a message back gets.
    fn for_member(grant: &crate::message::Grant, group: ShareGroup) -> Matched {
        let mut matched = Matched::default();
        matched.add_shared(grant, Some(group));
        matched
    }
}

/// Whether the session at `slot` can take a shared subscription's message: connected, or keeping a queue.
fn availability(registry: &super::registry::Registry, slot: SlotId) -> Availability {
    match registry.get(slot) {
        Some(entry) if entry.online.is_some() => Availability::Online,
        Some(entry) if entry.persistent => Availability::Stored,
        _ => Availability::Gone,
    }
}

impl Router {
    /// Gives each handed-back message to another member of its group, as its credit allows.
    fn hand_back(&mut self, msg: HandBack) {
        let mut ops = Vec::new();
        let now = Instant::now();
        for (group, message) in &msg.messages {
            let registry = &self.registry;
            let Some((slot, grant)) = self
                .shared
                .pick(*group, Some(msg.from), |slot| availability(registry, slot))
            else {
                log::debug!(
                    "no other member of its group takes a message on {}",
                    message.topic
                );
                continue;
            };
            let (mut fan_out, registry, _) = self.fan_out(message, &mut ops, now);
            let Some(entry) = registry.get_mut(slot) else {
                continue;
            };
            fan_out.to(slot, entry, &mut Matched::for_member(&grant, *group));
        }
        self.submit(ops, None);
        self.flush_outbox(None);
    }
}

impl Handler<HandBack> for Router {
    type Result = ();

    fn handle(&mut self, msg: HandBack, _: &mut Self::Context) {
        self.hand_back(msg);
    }
}

impl Handler<RoutePublish> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutePublish, _: &mut Self::Context) {
        self.route(msg);
    }
}

/// One delivery dropped for a stuck session; one log line each time the broker-wide count passes a power of
/// two, so a flood cannot flood the log (the exact count is in the metrics).
fn count_dropped(stats: &mut RouterStats, client_id: &crate::codec::ClientId) {
    let before = stats.dropped;
    stats.dropped += 1;
    if before.checked_ilog2() != stats.dropped.checked_ilog2() {
        log::warn!(
            "client {client_id}: messages dropped, it has stopped reading ({} dropped in all)",
            stats.dropped
        );
    }
}

impl Handler<CountDropped> for Router {
    type Result = ();

    fn handle(&mut self, msg: CountDropped, _: &mut Self::Context) {
        self.stats.dropped += u64::from(msg.0);
        self.stats.dropped_queue_full += u64::from(msg.0);
    }
}

impl Handler<PublisherWaited> for Router {
    type Result = ();

    fn handle(&mut self, msg: PublisherWaited, _: &mut Self::Context) {
        self.stats.publisher_waits += 1;
        self.stats.publisher_wait_ms += msg.waited_ms;
    }
}
