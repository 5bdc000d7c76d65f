//! The router actor: owns the subscription trie and the session registry, fans messages out and hands
//! what must be durable to the store. Never blocks on disk except when the store's bounded channel is full.

use super::congestion::{Congestion, FlowPermit};
use super::messages::*;
use super::registry::{Entry, Online, Registry};
use super::retained::RetainedStore;
use crate::codec::{ClientId, QoS};
use crate::message::{now_ms, Message, MessageId};
use crate::protocol::Delivery;
use crate::store::{RecoveredSession, StoreHandle, StoreOp, StoreRequest};
use crate::topic::SubscriptionTrie;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Router settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Whether QoS 0 messages are stored for offline persistent sessions.
    pub queue_qos0: bool,
    /// Offline persistent sessions older than this are removed with their queue; `None` keeps them.
    pub session_expiry: Option<std::time::Duration>,
}

/// The subscription router.
pub struct Router {
    trie: SubscriptionTrie<SlotId, QoS>,
    registry: Registry,
    store: StoreHandle,
    retained: Addr<RetainedStore>,
    settings: RouterSettings,
    next_message_id: u64,
    matches: HashMap<SlotId, QoS>,
    outbox: HashMap<SlotId, Vec<Delivery>>,
    congestion: Congestion,
    stats: RouterStats,
    /// Client ids whose stored session is being deleted, with the connections waiting for that to finish.
    deleting: HashMap<ClientId, Vec<tokio::sync::oneshot::Sender<()>>>,
}

/// How long a session may take to handle one parked batch before it counts as stuck and its deliveries are
/// dropped (stored ones stay in the store), so a client that stopped reading cannot hold publishers back.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl Router {
    /// A router holding the persistent sessions recovered from the store, all offline.
    pub fn new(
        store: StoreHandle,
        retained: Addr<RetainedStore>,
        settings: RouterSettings,
        sessions: Vec<RecoveredSession>,
        next_message_id: u64,
    ) -> Self {
        let mut router = Router {
            trie: SubscriptionTrie::new(),
            registry: Registry::default(),
            store,
            retained,
            settings,
            next_message_id,
            matches: HashMap::new(),
            outbox: HashMap::new(),
            congestion: Congestion::default(),
            stats: RouterStats::default(),
            deleting: HashMap::new(),
        };
        for session in sessions {
            let slot = router.registry.insert(Entry {
                client_id: session.client_id,
                persistent: true,
                online: None,
                next_seq: session.next_seq,
                subscriptions: HashMap::new(),
                offline_since_ms: session.last_seen_ms,
            });
            for (filter, qos) in session.subscriptions {
                router.trie.insert(&filter, slot, qos);
                if let Some(entry) = router.registry.get_mut(slot) {
                    entry.subscriptions.insert(filter, qos);
                }
            }
        }
        router
    }

    fn register(&mut self, msg: RegisterSession) -> RegisterReply {
        let conn = self.registry.next_conn();
        let persistent = !msg.clean_session;
        let online = Online {
            conn,
            addr: msg.session,
            // A persistent session first reads what is stored for it, then asks for live delivery.
            live: !persistent,
        };
        // A connection arriving while its old session's deletion is under way must not touch the store
        // before that deletion is committed, or the deletion would erase the new session.
        let after_delete = self.deleting.get_mut(&msg.client_id).map(|waiting| {
            let (done, deleted) = tokio::sync::oneshot::channel();
            waiting.push(done);
            deleted
        });
        let Some(slot) = self.registry.slot_of(&msg.client_id) else {
            let slot = self.registry.insert(Entry {
                client_id: msg.client_id,
                persistent,
                online: Some(online),
                next_seq: 1,
                subscriptions: HashMap::new(),
                offline_since_ms: 0,
            });
            return RegisterReply {
                slot,
                conn,
                session_present: false,
                had_persistent: false,
                previous_closed: after_delete,
                queue_head: 0,
            };
        };
        let Some(entry) = self.registry.get_mut(slot) else {
            log::error!("router registry lost slot {slot:?}");
            return RegisterReply {
                slot,
                conn,
                session_present: false,
                had_persistent: false,
                previous_closed: None,
                queue_head: 0,
            };
        };
        // [MQTT-3.1.4-2]: the connection already using this client id is closed.
        let previous_closed = entry.online.take().map(|old| {
            let (done, closed) = tokio::sync::oneshot::channel();
            old.addr.do_send(TakenOver {
                done,
                cause: EndCause::Takeover,
            });
            closed
        });
        let had_persistent = entry.persistent;
        let resume = persistent && had_persistent;
        if !resume {
            // [MQTT-3.1.2-6]: a clean session (new or old) starts from nothing.
            for filter in entry.subscriptions.keys() {
                self.trie.remove(filter, &slot);
            }
            entry.subscriptions.clear();
        }
        entry.persistent = persistent;
        entry.online = Some(online);
        RegisterReply {
            slot,
            conn,
            session_present: resume,
            had_persistent,
            previous_closed,
            queue_head: entry.next_seq - 1,
        }
    }

    fn close(&mut self, msg: SessionClosed) {
        if self.attached(msg.slot, msg.conn).is_none() {
            return;
        }
        let Some(entry) = self.registry.get_mut(msg.slot) else {
            return;
        };
        entry.online = None;
        if entry.persistent {
            entry.offline_since_ms = now_ms();
            return;
        }
        if let Some(entry) = self.registry.remove(msg.slot) {
            for filter in entry.subscriptions.keys() {
                self.trie.remove(filter, &msg.slot);
            }
        }
    }

    /// Fans a batch out; store writes are submitted before any session can acknowledge what they contain.
    fn route(&mut self, msg: RoutePublish, ctx: &mut Context<Self>) {
        let mut ops = msg.ops;
        for message in &msg.messages {
            self.route_one(message, &mut ops);
        }
        self.submit(ops, msg.done);
        self.flush_outbox(msg.permit, ctx);
    }

    fn route_one(&mut self, message: &Arc<Message>, ops: &mut Vec<StoreOp>) {
        self.stats.count_in(message.qos);
        if message.retain {
            self.retained.do_send(RetainMessage(message.clone()));
            ops.push(if message.payload.is_empty() {
                StoreOp::DeleteRetained {
                    topic: message.topic.clone(),
                }
            } else {
                StoreOp::SetRetained {
                    message: message.clone(),
                }
            });
        }
        let matches = &mut self.matches;
        matches.clear();
        // Overlapping subscriptions of one client give one delivery at the highest granted QoS.
        self.trie.for_each_match(&message.topic, |slot, qos| {
            let best = matches.entry(*slot).or_insert(*qos);
            *best = (*best).max(*qos);
        });
        let mut body: Option<MessageId> = None;
        for (slot, granted) in self.matches.iter() {
            let Some(entry) = self.registry.get_mut(*slot) else {
                continue;
            };
            let qos = message.qos.min(*granted);
            let store_it = entry.persistent
                && (qos != QoS::AtMostOnce || (self.settings.queue_qos0 && entry.online.is_none()));
            let seq = if store_it {
                let id = *body.get_or_insert_with(|| {
                    let id = MessageId(self.next_message_id);
                    self.next_message_id += 1;
                    ops.push(StoreOp::StoreMessage {
                        id,
                        message: message.clone(),
                    });
                    id
                });
                let seq = entry.next_seq;
                entry.next_seq += 1;
                ops.push(StoreOp::Enqueue {
                    client_id: entry.client_id.clone(),
                    seq,
                    message: id,
                    qos,
                });
                Some(seq)
            } else {
                None
            };
            // A stored message reaches a catching-up session through the store, not live.
            let live = matches!(&entry.online, Some(online) if online.live || seq.is_none());
            if live {
                self.outbox.entry(*slot).or_default().push(Delivery {
                    message: message.clone(),
                    qos,
                    seq,
                    retain: false,
                });
            }
            if live || seq.is_some() {
                self.stats.count_out(qos);
            }
        }
    }

    fn flush_outbox(&mut self, permit: Option<FlowPermit>, ctx: &mut Context<Self>) {
        let mut outbox = std::mem::take(&mut self.outbox);
        for (slot, deliveries) in outbox.drain() {
            let Some(online) = self.registry.get_mut(slot).and_then(|e| e.online.as_mut()) else {
                continue;
            };
            if self.congestion.is_congested(slot) {
                if let Err(deliveries) = self.congestion.park(slot, deliveries, permit.clone()) {
                    self.lose(slot, deliveries);
                }
                continue;
            }
            match online.addr.try_send(Deliver(deliveries)) {
                Ok(()) => {}
                Err(SendError::Full(Deliver(deliveries))) => {
                    // Park in order; the publisher's permit stays with the batch, holding the publisher back.
                    if let Err(deliveries) = self.congestion.park(slot, deliveries, permit.clone())
                    {
                        self.lose(slot, deliveries);
                    }
                    self.pump(slot, ctx);
                }
                Err(SendError::Closed(_)) => {}
            }
        }
        // Keep the map's allocation for the next batch.
        self.outbox = outbox;
    }

    /// Sends the next parked batch of a congested session once the previous one was handled.
    fn pump(&mut self, slot: SlotId, ctx: &mut Context<Self>) {
        let Some(addr) = self
            .registry
            .get(slot)
            .and_then(|e| e.online.as_ref())
            .map(|o| o.addr.clone())
        else {
            let deliveries = self.congestion.abandon(slot);
            self.lose(slot, deliveries);
            return;
        };
        let Some((deliveries, permit)) = self.congestion.next_to_send(slot) else {
            return;
        };
        let handled = tokio::time::timeout(STUCK_AFTER, addr.send(Deliver(deliveries)));
        // The batch is in the mailbox now: the publisher may go on.
        drop(permit);
        ctx.spawn(handled.into_actor(self).map(move |result, router, ctx| {
            router.congestion.sent(slot);
            match result {
                Ok(Ok(())) => router.pump(slot, ctx),
                Ok(Err(_)) | Err(_) => {
                    let deliveries = router.congestion.abandon(slot);
                    router.lose(slot, deliveries);
                }
            }
        }));
    }

    /// Deliveries a session cannot take: stored ones wait in the store (the session reads them later),
    /// the others are dropped and counted.
    fn lose(&mut self, slot: SlotId, deliveries: Vec<Delivery>) {
        let Some(entry) = self.registry.get_mut(slot) else {
            return;
        };
        let lost = deliveries.iter().filter(|d| d.seq.is_none()).count() as u64;
        let before = self.stats.dropped;
        self.stats.dropped += lost;
        // One line each time the broker-wide count passes a power of two: a stuck client under a flood
        // cannot flood the log; the exact count is in the metrics.
        if lost > 0 && before.checked_ilog2() != self.stats.dropped.checked_ilog2() {
            log::warn!(
                "client {}: dropped {lost} message(s), it is not reading ({} dropped in all)",
                entry.client_id,
                self.stats.dropped
            );
        }
        if let Some(online) = entry.online.as_mut() {
            if online.live && deliveries.iter().any(|d| d.seq.is_some()) {
                online.live = false;
                online.addr.do_send(QueueBehind);
            }
        }
    }

    fn submit(&self, ops: Vec<StoreOp>, done: Option<Completion>) {
        if ops.is_empty() {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return;
        }
        if let Err(e) = self.store.submit(StoreRequest::Write { ops, done }) {
            log::error!("store unavailable: {e}");
        }
    }

    fn add_subscriptions(&mut self, msg: AddSubscriptions) {
        let Some(entry) = self.registry.get_mut(msg.slot) else {
            let _ = msg.done.send(Ok(()));
            return;
        };
        if entry.online_as(msg.conn).is_none() {
            let _ = msg.done.send(Ok(()));
            return;
        }
        let mut ops = Vec::new();
        for (filter, qos) in msg.filters {
            self.trie.insert(&filter, msg.slot, qos);
            if entry.persistent {
                ops.push(StoreOp::Subscribe {
                    client_id: entry.client_id.clone(),
                    filter: filter.clone(),
                    qos,
                });
            }
            entry.subscriptions.insert(filter, qos);
        }
        self.submit(ops, Some(msg.done));
    }

    fn remove_subscriptions(&mut self, msg: RemoveSubscriptions) {
        let Some(entry) = self.registry.get_mut(msg.slot) else {
            let _ = msg.done.send(Ok(()));
            return;
        };
        if entry.online_as(msg.conn).is_none() {
            let _ = msg.done.send(Ok(()));
            return;
        }
        let mut ops = Vec::new();
        for filter in msg.filters {
            if entry.subscriptions.remove(&filter).is_some() {
                self.trie.remove(&filter, &msg.slot);
                if entry.persistent {
                    ops.push(StoreOp::Unsubscribe {
                        client_id: entry.client_id.clone(),
                        filter,
                    });
                }
            }
        }
        self.submit(ops, Some(msg.done));
    }

    fn resume_live(&mut self, msg: ResumeLive) -> Result<(), u64> {
        let Some(entry) = self.registry.get_mut(msg.slot) else {
            return Err(msg.cursor);
        };
        let head = entry.next_seq - 1;
        match entry.online_as(msg.conn) {
            Some(online) if head <= msg.cursor => {
                online.live = true;
                Ok(())
            }
            _ => Err(head),
        }
    }

    /// Removes offline persistent sessions that have been away longer than the expiry, with their queues.
    fn expire_sessions(&mut self, expiry: std::time::Duration) {
        let cutoff = now_ms().saturating_sub(expiry.as_millis() as u64);
        let expired: Vec<SlotId> = self
            .registry
            .entries()
            .filter(|(_, e)| e.persistent && e.online.is_none() && e.offline_since_ms <= cutoff)
            .map(|(slot, _)| *slot)
            .collect();
        let mut ops = Vec::new();
        for slot in expired {
            if let Some(entry) = self.registry.remove(slot) {
                for filter in entry.subscriptions.keys() {
                    self.trie.remove(filter, &slot);
                }
                log::info!("session {} expired", entry.client_id);
                ops.push(StoreOp::DeleteSession {
                    client_id: entry.client_id,
                });
            }
        }
        self.submit(ops, None);
    }

    fn stats(&self) -> RouterStats {
        RouterStats {
            connected: self
                .registry
                .entries()
                .filter(|(_, e)| e.online.is_some())
                .count(),
            sessions: self.registry.len(),
            subscriptions: self.trie.len(),
            ..self.stats.clone()
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if let Some(expiry) = self.settings.session_expiry {
            let every = (expiry / 4).clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(60),
            );
            ctx.run_interval(every, move |router, _| router.expire_sessions(expiry));
        }
    }
}

impl Handler<RegisterSession> for Router {
    type Result = MessageResult<RegisterSession>;

    fn handle(&mut self, msg: RegisterSession, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.register(msg))
    }
}

impl Handler<SessionClosed> for Router {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Self::Context) {
        self.close(msg);
    }
}

impl Handler<RoutePublish> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutePublish, ctx: &mut Self::Context) {
        self.route(msg, ctx);
    }
}

impl Handler<AddSubscriptions> for Router {
    type Result = ();

    fn handle(&mut self, msg: AddSubscriptions, _: &mut Self::Context) {
        self.add_subscriptions(msg);
    }
}

impl Handler<RemoveSubscriptions> for Router {
    type Result = ();

    fn handle(&mut self, msg: RemoveSubscriptions, _: &mut Self::Context) {
        self.remove_subscriptions(msg);
    }
}

impl Handler<ResumeLive> for Router {
    type Result = Result<(), u64>;

    fn handle(&mut self, msg: ResumeLive, _: &mut Self::Context) -> Self::Result {
        self.resume_live(msg)
    }
}

impl Handler<PauseLive> for Router {
    type Result = ();

    fn handle(&mut self, msg: PauseLive, _: &mut Self::Context) {
        if let Some(online) = self.attached(msg.slot, msg.conn) {
            online.live = false;
        }
    }
}

impl Handler<DisconnectAll> for Router {
    type Result = usize;

    fn handle(&mut self, _: DisconnectAll, _: &mut Self::Context) -> usize {
        let mut told = 0;
        for (_, entry) in self.registry.entries() {
            if let Some(online) = &entry.online {
                online.addr.do_send(CloseForShutdown);
                told += 1;
            }
        }
        told
    }
}

impl Handler<GetRouterStats> for Router {
    type Result = MessageResult<GetRouterStats>;

    fn handle(&mut self, _: GetRouterStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats())
    }
}

/// What the admin handlers (`router_admin`) reach of the router's state.
impl Router {
    /// The session registry.
    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The subscription trie.
    pub(super) fn trie(&self) -> &SubscriptionTrie<SlotId, QoS> {
        &self.trie
    }

    /// The store.
    pub(super) fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// The retained-message actor.
    pub(super) fn retained(&self) -> &Addr<RetainedStore> {
        &self.retained
    }

    /// The configured settings.
    pub(super) fn settings(&self) -> &RouterSettings {
        &self.settings
    }

    /// Removes a slot from the registry and its subscriptions from the trie.
    /// The connection attached to `slot`, if it is still `conn`; messages from a replaced connection are stale.
    fn attached(&mut self, slot: SlotId, conn: ConnId) -> Option<&mut Online> {
        self.registry.get_mut(slot).and_then(|e| e.online_as(conn))
    }

    /// Marks a client id as being deleted from the store; connections registering meanwhile wait.
    pub(super) fn begin_delete(&mut self, client_id: &ClientId) {
        self.deleting.entry(client_id.clone()).or_default();
    }

    /// The deletion of a client id's stored session is committed (or gave up): waiting connections go on.
    pub(super) fn end_delete(&mut self, client_id: &ClientId) {
        for waiting in self.deleting.remove(client_id).unwrap_or_default() {
            let _ = waiting.send(());
        }
    }

    pub(super) fn forget(&mut self, slot: SlotId) -> Option<Entry> {
        let entry = self.registry.remove(slot)?;
        for filter in entry.subscriptions.keys() {
            self.trie.remove(filter, &slot);
        }
        Some(entry)
    }
}

impl Handler<SessionBackedUp> for Router {
    type Result = ();

    fn handle(&mut self, msg: SessionBackedUp, ctx: &mut Self::Context) {
        if self.attached(msg.slot, msg.conn).is_none() {
            return;
        }
        self.congestion.pause(msg.slot);
        let slot = msg.slot;
        // A session that stays backed up is stuck: its parked deliveries are given up so publishers go on.
        ctx.run_later(STUCK_AFTER, move |router, ctx| {
            if router
                .congestion
                .paused_for(slot)
                .is_some_and(|d| d >= STUCK_AFTER)
            {
                router.congestion.resume(slot);
                let deliveries = router.congestion.abandon(slot);
                router.lose(slot, deliveries);
                router.pump(slot, ctx);
            }
        });
    }
}

impl Handler<SessionDrained> for Router {
    type Result = ();

    fn handle(&mut self, msg: SessionDrained, ctx: &mut Self::Context) {
        if self.attached(msg.slot, msg.conn).is_none() {
            return;
        }
        self.congestion.resume(msg.slot);
        self.pump(msg.slot, ctx);
    }
}
