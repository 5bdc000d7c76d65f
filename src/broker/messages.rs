//! Every message exchanged between the session, router and retained actors, named for its purpose.
//! Owns no behaviour; replies that wait for the store carry a one-shot completion.

use super::session::Session;
use crate::codec::{ClientId, QoS};
use crate::message::Message;
use crate::protocol::{Delivery, EndCause};
use crate::store::StoreError;
use crate::topic::TopicFilter;
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Signalled once a store write is durable (per the durability setting), or failed.
pub type Completion = oneshot::Sender<Result<(), StoreError>>;

/// A client's entry in the router: stable across reconnects of a persistent session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u64);

/// A map keyed by slot, walked for every delivery of the fan-out. Slots are numbered by the broker, never
/// chosen by a client, so the fast unkeyed Fx hash is safe here (SipHash guards maps whose keys clients pick).
pub type SlotMap<V> = rustc_hash::FxHashMap<SlotId, V>;

/// One network connection's claim on a slot; a stale connection's messages are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// A session that completed CONNECT asks for its slot; any previous connection is taken over [MQTT-3.1.4-2].
#[derive(Message)]
#[rtype(result = "RegisterReply")]
pub struct RegisterSession {
    /// Client identifier.
    pub client_id: ClientId,
    /// CONNECT's clean session flag (Clean Start in MQTT 5.0).
    pub clean_session: bool,
    /// The MQTT 5.0 Session Expiry Interval granted, in seconds; `None` before 5.0.
    pub session_expiry: Option<u32>,
    /// The new session actor.
    pub session: Addr<Session>,
    /// Deliveries the router may hand the session before it grants more [`GrantCredit`].
    pub credit: u32,
}

/// The router's answer to [`RegisterSession`].
#[derive(Debug)]
pub struct RegisterReply {
    /// Where the session sits in the router.
    pub link: RouterLink,
    /// A stored session is resumed (CONNACK session present flag) [MQTT-3.2.2-2].
    pub session_present: bool,
    /// A persistent session existed for this client id before (its stored state must be discarded when the
    /// new connection asks for a clean session).
    pub had_persistent: bool,
    /// Resolves when the connection that was taken over has finished writing its state.
    pub previous_closed: Option<oneshot::Receiver<()>>,
    /// Highest queue position assigned so far; every position up to it is stored or already removed.
    pub queue_head: u64,
    /// The filters of a resumed session, for `max_subscriptions_per_client` (empty when none is resumed).
    pub subscriptions: Vec<crate::topic::TopicFilter>,
}

/// A session ends with a will to publish later (MQTT 5.0 Will Delay Interval), unless it is resumed first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DelayWill {
    /// The session.
    pub link: RouterLink,
    /// The will.
    pub message: Arc<Message>,
    /// When to publish it, in milliseconds since the epoch.
    pub due_ms: u64,
}

/// A session that ends hands back what shared subscriptions gave it and its client did not acknowledge.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandBack {
    /// The member leaving, which must not get them again.
    pub from: SlotId,
    /// The messages with the group each came through.
    pub messages: Vec<(crate::message::ShareGroup, Arc<Message>)>,
}

/// An MQTT 5.0 client changed its Session Expiry Interval in DISCONNECT (section 3.14.2.2.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSessionExpiry {
    /// The session.
    pub link: RouterLink,
    /// The new interval, in seconds.
    pub secs: u32,
}

/// A connection ended; a clean session is discarded, a persistent one goes offline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    /// The connection that ended.
    pub link: RouterLink,
}

/// Where a connected session sits in the router: its slot and this connection's claim on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouterLink {
    /// The client's slot.
    pub slot: SlotId,
    /// The connection.
    pub conn: ConnId,
}

/// Messages accepted from a publisher (one network read's worth), to be routed and stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoutePublish {
    /// The messages, in arrival order.
    pub messages: Vec<Arc<Message>>,
    /// The publisher's own store changes (inbound QoS 2 ids of a persistent session), in packet order, made
    /// in the same commit as the messages [MQTT-4.3.3-2].
    pub ops: Vec<crate::store::StoreOp>,
    /// Signalled when everything the acknowledgements promise is stored.
    pub done: Option<Completion>,
    /// One of the publisher's few routing credits; the router keeps it while a subscriber this batch went to
    /// is out of credit, so a publisher feeding sessions that lag stops reading once all of its are kept.
    /// `None` for messages of the broker itself (wills, the embedding application), which nothing holds back.
    pub credit: Option<super::flow::RouteCredit>,
    /// The publisher's slot, for No Local subscriptions; `None` for messages of the broker itself.
    pub from: Option<SlotId>,
    /// An MQTT 5.0 publisher's packet ids, one per message, and where to say which QoS 1/2 messages matched
    /// no subscriber (for PUBACK/PUBREC 0x10); sent before anything is stored.
    pub unmatched: Option<UnmatchedReport>,
}

impl RoutePublish {
    /// Messages of the broker itself (wills, the embedding application): no publisher slot, credit or packet
    /// ids; `done` is signalled once they and `ops` are stored.
    pub fn from_broker(
        messages: Vec<Arc<Message>>,
        ops: Vec<crate::store::StoreOp>,
        done: Option<Completion>,
    ) -> Self {
        Self {
            messages,
            ops,
            done,
            credit: None,
            from: None,
            unmatched: None,
        }
    }
}

/// A publisher's packet ids (one per message) and where to send those of the messages that matched nobody.
pub type UnmatchedReport = (
    Vec<Option<crate::codec::PacketId>>,
    oneshot::Sender<Vec<crate::codec::PacketId>>,
);

/// Adds or replaces subscriptions (QoS already granted by the session).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscriptions {
    /// The subscribing connection.
    pub link: RouterLink,
    /// Filters with what is granted.
    pub filters: Vec<(TopicFilter, crate::message::Grant)>,
    /// Signalled when the subscriptions of a persistent session are stored.
    pub done: Completion,
    /// Where to say, at once, which filters the session had already (MQTT 5.0 Retain Handling 1).
    pub existed: Option<oneshot::Sender<Vec<bool>>>,
}

/// Removes subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSubscriptions {
    /// The unsubscribing connection.
    pub link: RouterLink,
    /// Filters to remove.
    pub filters: Vec<TopicFilter>,
    /// Signalled when the removal is stored.
    pub done: Completion,
    /// Where to say, at once, which filters the session had (MQTT 5.0 UNSUBACK 0x11).
    pub existed: Option<oneshot::Sender<Vec<bool>>>,
}

/// A session gives the router credit back: it took that many deliveries and has room for as many again. A
/// grant of 0 says the session still lags but its client takes what it is sent, so it is not stuck.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GrantCredit {
    /// The session.
    pub link: RouterLink,
    /// Deliveries.
    pub credit: u32,
}

/// A session dropped this many messages from its full queue (its overflow policy); counted with the router's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CountDropped(pub u32);

/// Closes every connection (broker shutdown); resolves once all sessions were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectAll;

/// Live figures of the router.
#[derive(Message)]
#[rtype(result = "RouterStats")]
pub struct GetRouterStats;

/// Counters kept by the router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Connected clients.
    pub connected: usize,
    /// Sessions known (connected and offline persistent).
    pub sessions: usize,
    /// Subscriptions in the trie.
    pub subscriptions: usize,
    /// Messages routed.
    pub messages_in: u64,
    /// Deliveries handed to sessions or stored for them.
    pub messages_out: u64,
    /// Deliveries dropped: for a session that stopped reading (stuck), or by a full queue's overflow policy.
    pub dropped: u64,
    /// The part of `dropped` that a session's full queue dropped (its overflow policy).
    pub dropped_queue_full: u64,
    /// Routing credits kept back by sessions out of credit: batches that held their publisher back.
    pub routing_credits_kept: u64,
    /// Times a publisher stopped reading its client for lack of routing credit (ended waits).
    pub publisher_waits: u64,
    /// Milliseconds publishers spent waiting for routing credit, all together (ended waits).
    pub publisher_wait_ms: u64,
    /// Times a session counted as stuck: out of credit for longer than the router waits.
    pub stuck_sessions: u64,
    /// Messages routed, by their QoS (0, 1, 2).
    pub messages_in_by_qos: [u64; 3],
    /// Deliveries, by the QoS they are delivered at (0, 1, 2).
    pub messages_out_by_qos: [u64; 3],
}

/// Messages for one session, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Vec<Delivery>);

/// Retained messages for a new subscription, sent by the retained actor; they do not count against credit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverRetained(pub Vec<Delivery>);

/// The router skipped stored messages for this session (it had no credit) up to `head`: the session reads
/// them from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Behind {
    /// Highest queue position assigned when the router said so.
    pub head: u64,
}

/// A publishing session read nothing for `waited_ms` because all its routing credits were out (on their way
/// to the router, or kept by lagging subscribers); counted in the router's figures.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublisherWaited {
    /// How long it could not read its client.
    pub waited_ms: u64,
}

/// The session must end (another connection took its client id over, or an operator deleted it): close,
/// publish the will, then signal `done`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakenOver {
    /// Signalled once this session wrote everything it had to the store.
    pub done: oneshot::Sender<()>,
    /// Why: taken over by a new connection, or deleted by an operator.
    pub cause: EndCause,
}

/// The broker is stopping: close the connection without publishing the will.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseForShutdown;

/// Keep (or, with an empty payload, delete) the retained message of a topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetainMessage(pub Arc<Message>);

/// Send the retained messages matching new subscriptions to a session, with RETAIN set.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendRetained {
    /// The filters just subscribed, with granted QoS and Subscription Identifier (MQTT 5.0).
    pub filters: Vec<(TopicFilter, QoS, Option<u32>)>,
    /// Where to send them.
    pub to: Addr<Session>,
}

/// Number of retained messages held.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountRetained;

/// Lists every session the router knows, for the admin API.
#[derive(Message)]
#[rtype(result = "Vec<SessionPresence>")]
pub struct ListSessions;

/// A session as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPresence {
    /// The client identifier.
    pub client_id: ClientId,
    /// Whether a connection is attached.
    pub online: bool,
    /// Clean session 0.
    pub persistent: bool,
    /// Subscriptions held.
    pub subscriptions: usize,
}

/// Removes a session for the admin API: closes its connection, forgets it and deletes its stored state.
/// Resolves to whether the router knew the client id, once the deletion is committed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteSession {
    /// The client identifier.
    pub client_id: ClientId,
}

/// Removes every offline persistent session last seen more than `older_than_ms` ago (the configured session
/// expiry when `None`), with its stored state; resolves to the client ids removed, once committed.
#[derive(Message)]
#[rtype(result = "Result<Vec<ClientId>, StoreError>")]
pub struct DeleteExpiredSessions {
    /// The age beyond which an offline session counts as expired.
    pub older_than_ms: Option<u64>,
}

/// Removes the retained message of a topic for the admin API, in memory and in the store, without
/// publishing anything; resolves once the removal is committed.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ClearRetained {
    /// The topic.
    pub topic: crate::topic::TopicName,
}

/// Publishes broker status messages (`$SYS/...`): kept as retained in memory and sent to current
/// subscribers at QoS 0, never stored and not counted as client traffic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishStatus(pub Vec<Arc<Message>>);

/// The retained messages whose topic matches a filter (all of them when `None`), in topic order.
#[derive(Message)]
#[rtype(result = "Vec<Arc<Message>>")]
pub struct ListRetained {
    /// The filter, if any.
    pub filter: Option<TopicFilter>,
}

/// Packets an in-process client sends, as if read from a socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientPackets(pub Vec<crate::codec::Packet>);

/// The in-process client went away (its subscription was dropped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachClient;
