//! The router actor: owns the subscription trie and the session registry, registers and forgets sessions,
//! keeps subscriptions, and hands what must be durable to the store. Fan-out and flow control are in
//! `router_flow`; admin answers in `router_admin`. Never blocks on disk except when the store's bounded
//! channel is full.

use super::flow::{SubscriberFlow, STUCK_CHECK_EVERY};
use super::messages::*;
use super::registry::{Entry, Online, Registry, Subscriptions};
use super::retained::RetainedStore;
use crate::codec::ClientId;
use crate::message::now_ms;
use crate::message::Grant;
use crate::protocol::{Delivery, EndCause};
use crate::store::{RecoveredSession, StoreHandle, StoreOp, StoreRequest};
use crate::topic::{SubscriptionTrie, TopicFilter};
use actix::prelude::*;
use std::collections::HashMap;

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
    pub(super) trie: SubscriptionTrie<SlotId, Grant>,
    /// Shared subscription groups, matched beside the trie.
    pub(super) shared: super::shared::SharedGroups,
    pub(super) registry: Registry,
    store: StoreHandle,
    retained: Addr<RetainedStore>,
    settings: RouterSettings,
    pub(super) next_message_id: u64,
    /// Scratch space of the fan-out, kept between batches for its allocations.
    pub(super) matches: SlotMap<super::router_flow::Matched>,
    /// The shared groups matching the message being routed (kept for its allocation).
    pub(super) matched_groups: Vec<crate::message::ShareGroup>,
    pub(super) outbox: SlotMap<Vec<Delivery>>,
    /// Sessions out of credit with messages waiting, looked at every `STUCK_CHECK_EVERY`.
    pub(super) starving: Vec<RouterLink>,
    pub(super) stats: RouterStats,
    /// Client ids whose stored session is being deleted, with the connections waiting for that to finish.
    deleting: HashMap<ClientId, Vec<tokio::sync::oneshot::Sender<()>>>,
}

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
            shared: super::shared::SharedGroups::default(),
            registry: Registry::default(),
            store,
            retained,
            settings,
            next_message_id,
            matches: SlotMap::default(),
            matched_groups: Vec::new(),
            outbox: SlotMap::default(),
            starving: Vec::new(),
            stats: RouterStats::default(),
            deleting: HashMap::new(),
        };
        for session in sessions {
            let slot = router.registry.insert(Entry {
                client_id: session.client_id,
                persistent: true,
                online: None,
                next_seq: session.next_seq,
                subscriptions: Subscriptions::default(),
                offline_since_ms: session.last_seen_ms,
                session_expiry: session.session_expiry,
                will: session.will.map(Box::new),
            });
            for (filter, grant) in session.subscriptions {
                router.index(slot, &filter, grant);
                if let Some(entry) = router.registry.get_mut(slot) {
                    entry.subscriptions.insert(filter, grant);
                }
            }
        }
        router
    }

    fn register(&mut self, msg: RegisterSession) -> RegisterReply {
        let conn = self.registry.next_conn();
        // Before 5.0 clean session 0 keeps the session; in 5.0 a Session Expiry Interval above 0 does.
        let persistent = match msg.session_expiry {
            None => !msg.clean_session,
            Some(expiry) => expiry > 0,
        };
        let online = Online {
            conn,
            addr: msg.session,
            flow: SubscriberFlow::new(msg.credit),
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
                subscriptions: Subscriptions::default(),
                offline_since_ms: 0,
                session_expiry: msg.session_expiry,
                will: None,
            });
            return RegisterReply {
                link: RouterLink { slot, conn },
                session_present: false,
                had_persistent: false,
                previous_closed: after_delete,
                queue_head: 0,
                subscriptions: Vec::new(),
            };
        };
        let Some(entry) = self.registry.get_mut(slot) else {
            log::error!("router registry lost slot {slot:?}");
            return RegisterReply {
                link: RouterLink { slot, conn },
                session_present: false,
                had_persistent: false,
                previous_closed: None,
                queue_head: 0,
                subscriptions: Vec::new(),
            };
        };
        // [MQTT-3.1.4-2]: the connection already using this client id is closed.
        let previous_closed = entry.online.take().map(|old| {
            let (done, closed) = tokio::sync::oneshot::channel();
            old.addr.do_send(TakenOver {
                done,
                cause: EndCause::TakenOver,
            });
            closed
        });
        // Section 3.1.3.2.2: a will still waiting for its delay is not published once the client is back.
        let cancel_will =
            (entry.will.take().is_some() && entry.persistent).then(|| StoreOp::SetWill {
                client_id: entry.client_id.clone(),
                will: None,
            });
        let had_persistent = entry.persistent;
        // [MQTT-3.2.2-2]: a stored session is resumed unless the client asked for a clean start.
        let resume = !msg.clean_session && had_persistent;
        if !resume {
            // [MQTT-3.1.2-6]: a clean session (new or old) starts from nothing.
            for filter in std::mem::take(&mut entry.subscriptions).filters() {
                unindex(&mut self.trie, &mut self.shared, slot, filter);
            }
        }
        // A resumed session stays stored at least until this connection ends, whatever its new expiry.
        entry.persistent = persistent || resume;
        entry.session_expiry = msg.session_expiry;
        entry.online = Some(online);
        let queue_head = entry.next_seq - 1;
        let subscriptions = entry.subscriptions.filters().cloned().collect();
        if let Some(op) = cancel_will {
            self.submit(vec![op], None);
        }
        RegisterReply {
            link: RouterLink { slot, conn },
            session_present: resume,
            had_persistent,
            previous_closed,
            queue_head,
            subscriptions,
        }
    }

    fn close(&mut self, msg: SessionClosed) {
        let RouterLink { slot, conn } = msg.link;
        let Some(entry) = self.registry.get_mut(slot) else {
            return;
        };
        // Dropping the connection's entry gives back the routing credits it kept.
        if entry.online.take_if(|o| o.conn == conn).is_none() {
            return;
        }
        if !entry.persistent {
            self.forget(slot);
        } else if entry.session_expiry == Some(0) {
            // An MQTT 5.0 session with expiry 0 ends with its connection, stored state included; a will
            // waiting for its delay goes now, as the session's end comes first.
            if let Some(will) = entry.will.take() {
                self.route(RoutePublish::from_broker(vec![will.1], Vec::new(), None));
            }
            if let Some(entry) = self.forget(slot) {
                self.submit(
                    vec![StoreOp::DeleteSession {
                        client_id: entry.client_id,
                    }],
                    None,
                );
            }
        } else {
            entry.offline_since_ms = now_ms();
        }
    }

    pub(super) fn submit(&self, ops: Vec<StoreOp>, done: Option<Completion>) {
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
        let RouterLink { slot, conn } = msg.link;
        let Some(entry) = self.registry.get_mut(slot) else {
            let _ = msg.done.send(Ok(()));
            return;
        };
        if entry.online_as(conn).is_none() {
            let _ = msg.done.send(Ok(()));
            return;
        }
        let mut ops = Vec::new();
        let mut existed = Vec::with_capacity(msg.filters.len());
        for (filter, grant) in msg.filters {
            existed.push(entry.subscriptions.contains(&filter));
            index(&mut self.trie, &mut self.shared, slot, &filter, grant);
            if entry.persistent {
                ops.push(StoreOp::Subscribe {
                    client_id: entry.client_id.clone(),
                    filter: filter.clone(),
                    grant,
                });
            }
            entry.subscriptions.insert(filter, grant);
        }
        if let Some(report) = msg.existed {
            let _ = report.send(existed);
        }
        self.submit(ops, Some(msg.done));
    }

    fn remove_subscriptions(&mut self, msg: RemoveSubscriptions) {
        let RouterLink { slot, conn } = msg.link;
        let Some(entry) = self.registry.get_mut(slot) else {
            let _ = msg.done.send(Ok(()));
            return;
        };
        if entry.online_as(conn).is_none() {
            let _ = msg.done.send(Ok(()));
            return;
        }
        let mut ops = Vec::new();
        let mut existed = Vec::with_capacity(msg.filters.len());
        for filter in msg.filters {
            let had = entry.subscriptions.remove(&filter);
            existed.push(had);
            if had {
                unindex(&mut self.trie, &mut self.shared, slot, &filter);
                if entry.persistent {
                    ops.push(StoreOp::Unsubscribe {
                        client_id: entry.client_id.clone(),
                        filter,
                    });
                }
            }
        }
        if let Some(report) = msg.existed {
            let _ = report.send(existed);
        }
        self.submit(ops, Some(msg.done));
    }

    /// Removes offline persistent sessions that have been away longer than their expiry, with their queues;
    /// publishes the delayed wills whose time has come, or whose session ends.
    fn expire_sessions(&mut self) {
        let now = now_ms();
        let default_expiry = self.settings.session_expiry;
        self.publish_due_wills(now, default_expiry);
        let expired: Vec<SlotId> = self
            .registry
            .entries()
            .filter(|(_, e)| e.expired(now, default_expiry))
            .map(|(slot, _)| *slot)
            .collect();
        let mut ops = Vec::new();
        for slot in expired {
            if let Some(entry) = self.forget(slot) {
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
        ctx.run_interval(STUCK_CHECK_EVERY, |router, _| router.check_stuck());
        // MQTT 5.0 sessions carry their own expiry, so the check runs whatever the configured default.
        let every =
            self.settings
                .session_expiry
                .map_or(std::time::Duration::from_secs(1), |expiry| {
                    (expiry / 4).clamp(
                        std::time::Duration::from_secs(1),
                        std::time::Duration::from_secs(60),
                    )
                });
        ctx.run_interval(every, |router, _| router.expire_sessions());
    }
}

impl Handler<RegisterSession> for Router {
    type Result = MessageResult<RegisterSession>;

    fn handle(&mut self, msg: RegisterSession, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.register(msg))
    }
}

impl Handler<DelayWill> for Router {
    type Result = ();

    fn handle(&mut self, msg: DelayWill, _: &mut Self::Context) {
        self.delay_will(msg);
    }
}

impl Handler<SetSessionExpiry> for Router {
    type Result = ();

    fn handle(&mut self, msg: SetSessionExpiry, _: &mut Self::Context) {
        if let Some(entry) = self.registry.get_mut(msg.link.slot) {
            if entry.online_as(msg.link.conn).is_some() {
                entry.session_expiry = Some(msg.secs);
                if entry.persistent {
                    let op = StoreOp::SetSessionExpiry {
                        client_id: entry.client_id.clone(),
                        session_expiry: Some(msg.secs),
                    };
                    self.submit(vec![op], None);
                }
            }
        }
    }
}

impl Handler<SessionClosed> for Router {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Self::Context) {
        self.close(msg);
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

impl Handler<GrantCredit> for Router {
    type Result = ();

    fn handle(&mut self, msg: GrantCredit, _: &mut Self::Context) {
        self.grant_credit(msg);
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
    pub(super) fn trie(&self) -> &SubscriptionTrie<SlotId, Grant> {
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

    /// Removes a slot from the registry and its subscriptions from the trie.
    pub(super) fn forget(&mut self, slot: SlotId) -> Option<Entry> {
        let entry = self.registry.remove(slot)?;
        for filter in entry.subscriptions.filters() {
            self.unindex(slot, filter);
        }
        Some(entry)
    }

    /// Publishes every delayed will whose delay has passed or whose session expires now (section 3.1.3.2.2).
    fn publish_due_wills(&mut self, now: u64, default_expiry: Option<std::time::Duration>) {
        let mut due = Vec::new();
        let mut ops = Vec::new();
        for (_, entry) in self.registry.entries_mut() {
            let ready = entry.online.is_none()
                && entry
                    .will
                    .as_ref()
                    .is_some_and(|w| w.0 <= now || entry.expired(now, default_expiry));
            if !ready {
                continue;
            }
            if let Some(will) = entry.will.take() {
                ops.push(StoreOp::SetWill {
                    client_id: entry.client_id.clone(),
                    will: None,
                });
                log::info!("publishing the delayed will of {}", entry.client_id);
                due.push(will.1);
            }
        }
        if !due.is_empty() || !ops.is_empty() {
            self.route(RoutePublish::from_broker(due, ops, None));
        }
    }

    /// A session left with a delayed will: kept (and stored, for a stored session) until it is due.
    fn delay_will(&mut self, msg: DelayWill) {
        let Some(entry) = self.registry.get_mut(msg.link.slot) else {
            return;
        };
        if entry.online_as(msg.link.conn).is_none() {
            return;
        }
        if entry.persistent {
            let op = StoreOp::SetWill {
                client_id: entry.client_id.clone(),
                will: Some((msg.due_ms, msg.message.clone())),
            };
            entry.will = Some(Box::new((msg.due_ms, msg.message)));
            self.submit(vec![op], None);
        } else {
            // A session that ends with its connection publishes its will now.
            self.route(RoutePublish::from_broker(
                vec![msg.message],
                Vec::new(),
                None,
            ));
        }
    }

    /// Makes a subscription findable: a shared one in its group, any other in the trie.
    fn index(&mut self, slot: SlotId, filter: &TopicFilter, grant: Grant) {
        index(&mut self.trie, &mut self.shared, slot, filter, grant);
    }

    /// Undoes `index`.
    fn unindex(&mut self, slot: SlotId, filter: &TopicFilter) {
        unindex(&mut self.trie, &mut self.shared, slot, filter);
    }
}

/// Indexes a subscription: `$share/{group}/{filter}` joins its group, any other filter goes in the trie.
fn index(
    trie: &mut SubscriptionTrie<SlotId, Grant>,
    shared: &mut super::shared::SharedGroups,
    slot: SlotId,
    filter: &TopicFilter,
    grant: Grant,
) {
    match super::shared::parse(filter) {
        Some(name) => shared.join(name, slot, grant),
        None => {
            trie.insert(filter, slot, grant);
        }
    }
}

/// Removes what `index` added.
fn unindex(
    trie: &mut SubscriptionTrie<SlotId, Grant>,
    shared: &mut super::shared::SharedGroups,
    slot: SlotId,
    filter: &TopicFilter,
) {
    match super::shared::parse(filter) {
        Some(name) => {
            shared.leave(&name, slot);
        }
        None => {
            trie.remove(filter, &slot);
        }
    }
}
