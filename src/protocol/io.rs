//! What goes into the connection core and what comes out of it: the inputs its owner feeds, the outputs its
//! owner carries out. Plain data; the session actor (or an in-process subscriber) is that owner.

use super::acks::Ticket;
use super::outbound::{Delivery, OutboundPublish};
use crate::codec::{ClientId, DecodeError, Packet, PacketId, ProtocolLevel, QoS, ReasonCode};
use crate::message::Message;
use crate::store::{QueuedMessage, StoreError, StoreOp};
use crate::topic::TopicFilter;
use bytes::Bytes;
use bytestring::ByteString;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The moment of an input: the time (monotonic for timers, wall-clock milliseconds for what is stored and
/// stamped) and how much output the client has not taken yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For keepalive and timeouts.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Bytes written for the client that it has not taken yet (the socket's backlog).
    pub unwritten_bytes: usize,
}

/// Who is at the other end, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP connection.
    Tcp(SocketAddr),
    /// A TLS connection.
    Tls(SocketAddr),
    /// A WebSocket connection (the address when the server knows it).
    WebSocket(Option<SocketAddr>),
    /// An in-process client of the embedding application.
    InProcess,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Tls(addr) => write!(f, "{addr} (tls)"),
            Peer::WebSocket(Some(addr)) => write!(f, "{addr} (websocket)"),
            Peer::WebSocket(None) => f.write_str("(websocket)"),
            Peer::InProcess => f.write_str("(in-process)"),
        }
    }
}

/// Why a connection ends, which decides what happens to the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT: the will is discarded [MQTT-3.14.4-3].
    Disconnect,
    /// The broker shuts down: the will is not published.
    Shutdown,
    /// Anything else (network error, keepalive, violation, takeover, deletion): the will is published
    /// [MQTT-3.1.2-8].
    Abnormal,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Disconnect => "DISCONNECT",
            CloseReason::Shutdown => "broker shutdown",
            CloseReason::Abnormal => "connection lost or closed by the broker",
        })
    }
}

/// Why the broker ends a connected session from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// A new connection with the same client id [MQTT-3.1.4-2].
    TakenOver,
    /// An operator deleted the session.
    Deleted,
    /// The broker shuts down.
    Shutdown,
    /// The in-process client went away (its subscription was dropped).
    Detached,
}

/// One step of an MQTT 5.0 enhanced authentication exchange, as the hook decides it (section 4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// No hook speaks this method: CONNACK 0x8C Bad authentication method (DISCONNECT when re-authenticating).
    Unsupported,
    /// Send the client AUTH 0x18 Continue authentication with this data, and wait for its answer.
    Continue(Bytes),
    /// Authenticated: CONNACK (or AUTH 0x00 when re-authenticating), with this data if any.
    Success(Option<Bytes>),
    /// Refused with this reason code.
    Fail(ReasonCode),
}

/// What the publish hooks made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screening {
    /// Route it (possibly rewritten).
    Kept(Arc<Message>),
    /// `on_message_publish` dropped it: acknowledged as usual, not routed.
    Dropped,
    /// `authorize_publish` denied it: an MQTT 5.0 client gets PUBACK/PUBREC 0x87, earlier ones a plain
    /// acknowledgement (they cannot be told no).
    Denied,
}

/// What the router said when the session registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// A stored session is resumed (CONNACK session present) [MQTT-3.2.2-2].
    pub session_present: bool,
    /// A persistent session existed for the client id, whose stored state a clean session discards.
    pub had_persistent: bool,
    /// Highest stored queue position assigned so far.
    pub queue_head: u64,
    /// The filters a resumed session holds, which count against `max_subscriptions_per_client`.
    pub subscriptions: Vec<crate::topic::TopicFilter>,
}

/// Everything the core is told.
#[derive(Debug)]
pub enum Input {
    /// One read's worth of decoded packets, in order; a decode error ends it.
    Read(Vec<Result<Packet, DecodeError>>),
    /// The client closed its side, or reading failed.
    InputClosed,
    /// The client took output (the socket accepted bytes): credit held back may be given now. Needed only
    /// while `Connection::wants_written` says so.
    Written,
    /// The authenticate hook answered: `Err` refuses with that CONNACK reason code (written as the closest
    /// 3.1.1 return code to earlier clients).
    Authenticated(Result<(), ReasonCode>),
    /// Which filters of the SUBSCRIBE or UNSUBSCRIBE behind `ticket` the session was subscribed to before, one
    /// flag per filter in order; comes before that ticket's commit.
    Existing {
        /// The request's ticket.
        ticket: Ticket,
        /// One flag per filter.
        existed: Vec<bool>,
    },
    /// These QoS 1/2 messages of a routed batch matched no subscriber: their PUBACK/PUBREC say 0x10 (MQTT 5.0).
    Unmatched(Vec<PacketId>),
    /// The enhanced authentication hook took one step of an MQTT 5.0 AUTH exchange.
    AuthStepped(AuthStep),
    /// The router answered the registration; `Err` when it could not be reached.
    Registered(Result<Registration, ()>),
    /// A store commit (or router round trip) an output waited for is done.
    Committed {
        /// Which one.
        ticket: Ticket,
        /// Its outcome.
        result: Result<(), StoreError>,
    },
    /// The inbound QoS 2 packet ids awaiting PUBREL, read back for a resumed session.
    IncomingQos2(Result<Vec<PacketId>, StoreError>),
    /// The publish hooks' verdict on each message of the batch they screened, in order.
    Screened(Vec<Screening>),
    /// The subscribe hook's verdict on each filter of the SUBSCRIBE it screened: true is denied.
    SubscribeScreened(Vec<bool>),
    /// Messages from the router, each counting against the session's credit.
    Deliveries(Vec<Delivery>),
    /// Retained messages for a new subscription (not counted against credit).
    Retained(Vec<Delivery>),
    /// The router skipped stored messages up to `head` because the session had no credit.
    Behind {
        /// Highest position queued when the router said so.
        head: u64,
    },
    /// A page of the stored queue that the core asked for.
    StorePage(Result<Vec<QueuedMessage>, StoreError>),
    /// The router holds this publisher back (a subscriber it feeds is out of credit), or lets it go again.
    Pace {
        /// True to stop reading, false to go on.
        hold: bool,
    },
    /// The router's mailbox is full (true) or took the waiting batch (false): reading waits meanwhile.
    RouterBusy(bool),
    /// The time the core asked to be woken at has come.
    Timer,
    /// The broker ends the session.
    End(EndCause),
}

/// What a client sent in CONNECT, for the authenticate hook (`broker::hooks::Hooks::authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The client identifier (assigned by the broker when the client sent an empty one).
    pub client_id: ClientId,
    /// The user name, if sent.
    pub username: Option<ByteString>,
    /// The password, if sent.
    pub password: Option<Bytes>,
    /// The peer's address (with "(websocket)" for WebSocket connections).
    pub peer: String,
    /// The clean session flag.
    pub clean_session: bool,
    /// The keepalive in seconds.
    pub keep_alive_secs: u16,
    /// The protocol level.
    pub level: ProtocolLevel,
    /// The CONNECT properties of an MQTT 5.0 client (User Properties, Authentication Method...).
    pub properties: crate::codec::MaybeProperties,
    /// The user name is the TLS client certificate's identity (`use_identity_as_username`): the CONNECT's
    /// own user name and password were set aside, and the password file does not check it.
    pub certificate_identity: bool,
}

/// What a TLS client certificate makes the user name of a connection, on a listener that takes the
/// certificate's identity as the user name (`use_identity_as_username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateName {
    /// The certificate's subject CN, else its first DNS or email subject alternative name.
    Name(ByteString),
    /// No certificate, or one that names nobody: the CONNECT is refused as a bad user name or password.
    Missing,
}

/// Who a connected client is, as every hook after authentication sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client identifier.
    pub client_id: ClientId,
    /// The user name the client authenticated with, if any.
    pub username: Option<ByteString>,
    /// The peer's address.
    pub peer: String,
}

impl ConnectInfo {
    /// The part of the CONNECT information kept for the connection's lifetime.
    pub fn client(&self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// A packet for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// Anything but a PUBLISH.
    Control(Packet),
    /// An application message.
    Publish(OutboundPublish),
}

/// What the hooks are told, without waiting for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The client is connected.
    Connected {
        /// CONNACK's session present flag.
        session_present: bool,
    },
    /// A PUBLISH was written to the client.
    Delivered(OutboundPublish),
    /// The client acknowledged a PUBLISH (PUBACK or PUBREC).
    Acked(OutboundPublish),
    /// The connection ended.
    Disconnected(CloseReason),
}

/// Work for the core's owner that goes beyond writing to the client.
#[derive(Debug)]
pub enum Request {
    /// Ask the authenticate hook; answer with `Input::Authenticated`.
    Authenticate(ConnectInfo),
    /// Ask the enhanced authentication hook for the next step of an MQTT 5.0 exchange (section 4.12); answer
    /// with `Input::AuthStepped`.
    AuthStep {
        /// What the client sent in CONNECT.
        connect: ConnectInfo,
        /// The Authentication Method.
        method: ByteString,
        /// The Authentication Data of the client's CONNECT or AUTH.
        data: Option<Bytes>,
    },
    /// Register with the router (taking over a previous connection); answer with `Input::Registered` once the
    /// connection taken over has finished.
    Register {
        /// The client identifier.
        client_id: ClientId,
        /// CONNECT's clean session flag (Clean Start in MQTT 5.0).
        clean_session: bool,
        /// The Session Expiry Interval granted to an MQTT 5.0 client, in seconds; `None` before 5.0, where
        /// clean session 0 means the broker's configured expiry.
        session_expiry: Option<u32>,
        /// Deliveries the router may send before the session grants more.
        credit: u32,
    },
    /// Write `ops` to the store; answer with `Input::Committed` for `ticket`.
    Store {
        /// The operations, in order.
        ops: Vec<StoreOp>,
        /// What waits for the commit.
        ticket: Ticket,
    },
    /// Read the inbound QoS 2 ids of this session; answer with `Input::IncomingQos2`.
    ReadIncomingQos2,
    /// Route messages (and store the publisher's own `ops` in the same commit); answer with
    /// `Input::Committed` when a ticket is given.
    Route {
        /// The messages, in arrival order.
        messages: Vec<Arc<Message>>,
        /// Inbound QoS 2 bookkeeping of a persistent session.
        ops: Vec<StoreOp>,
        /// What waits for the messages to be stored.
        ticket: Option<Ticket>,
        /// The packet id of each message (MQTT 5.0 sessions only, else empty): those that match no subscriber
        /// come back in `Input::Unmatched` before the commit, for PUBACK/PUBREC 0x10.
        report_unmatched: Vec<Option<PacketId>>,
    },
    /// Run the publish hooks over these messages; answer with `Input::Screened`.
    ScreenPublishes(Vec<Arc<Message>>),
    /// Run the subscribe hook over these filters; answer with `Input::SubscribeScreened`.
    ScreenSubscribe(Vec<(TopicFilter, QoS)>),
    /// Add subscriptions with what is granted; answer with `Input::Committed` once stored.
    Subscribe {
        /// Filters and grants.
        filters: Vec<(TopicFilter, crate::message::Grant)>,
        /// What waits for them to be stored.
        ticket: Ticket,
        /// Say which filters the session was already subscribed to (`Input::Existing`, before the commit):
        /// MQTT 5.0 Retain Handling 1 needs it.
        report_existing: bool,
    },
    /// Remove subscriptions; answer with `Input::Committed` once stored.
    Unsubscribe {
        /// The filters.
        filters: Vec<TopicFilter>,
        /// What waits for the removal to be stored.
        ticket: Ticket,
        /// Say which filters the session was subscribed to (`Input::Existing`, before the commit): MQTT 5.0
        /// UNSUBACK says 0x11 for the others.
        report_existing: bool,
    },
    /// Send the retained messages matching these new subscriptions; they arrive as `Input::Retained`.
    SendRetained(Vec<(TopicFilter, QoS, Option<u32>)>),
    /// Read up to `limit` stored queue entries after `after_seq`; answer with `Input::StorePage`.
    ReadQueue {
        /// Entries after this position.
        after_seq: u64,
        /// Most entries to read.
        limit: usize,
    },
    /// Give the router this much credit back.
    GrantCredit(u32),
    /// Count this many messages dropped by the overflow policy of the session's queue.
    CountDropped(u32),
    /// Tell the hooks, without waiting.
    Notify(Notification),
    /// Publish the will, now (`delay_secs` 0) or once the MQTT 5.0 Will Delay Interval has passed unless the
    /// client reconnects before, or when the session ends if that comes first (section 3.1.3.2.2).
    PublishWill {
        /// The will.
        message: Arc<Message>,
        /// Seconds to wait first.
        delay_secs: u32,
    },
    /// Give these messages, which came through shared subscriptions and were not acknowledged, to other
    /// members of their groups: the session ends.
    HandBack(Vec<(crate::message::ShareGroup, Arc<Message>)>),
    /// The client changed its MQTT 5.0 Session Expiry Interval in DISCONNECT (seconds).
    SessionExpiry(u32),
    /// Leave the router: the connection is gone.
    Detach,
}

/// Everything one input produced, for the owner to carry out in this order: store writes, requests, packets.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Store writes nobody waits for, except `gate`.
    pub store: Vec<StoreOp>,
    /// When set, `store` announces what `emits` say (a PUBLISH under a recorded packet id, a PUBREL): it is
    /// committed before any of these packets, or anything after them, reaches the client [MQTT-4.4.0-1].
    pub gate: Option<Ticket>,
    /// Requests, in order.
    pub requests: Vec<Request>,
    /// Packets for the client, in order.
    pub emits: Vec<Emit>,
    /// When the core wants `Input::Timer` next (unchanged when `None`).
    pub timer: Option<Instant>,
    /// The connection is over: write what may leave, then close it.
    pub close: Option<CloseReason>,
    /// Limits that bit, for the owner to count and log.
    pub limits: super::limits::LimitHits,
}

impl Outputs {
    /// Whether there is nothing to carry out.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
            && self.gate.is_none()
            && self.requests.is_empty()
            && self.emits.is_empty()
            && self.timer.is_none()
            && self.close.is_none()
            && self.limits.is_empty()
    }

    /// Empties every list, keeping their allocations for the next input.
    pub fn clear(&mut self) {
        self.store.clear();
        self.gate = None;
        self.requests.clear();
        self.emits.clear();
        self.timer = None;
        self.close = None;
        self.limits.clear();
    }

    /// The packets written, as plain packets (for tests and the in-process client).
    pub fn packets(&self) -> impl Iterator<Item = Packet> + '_ {
        self.emits.iter().map(|e| match e {
            Emit::Control(p) => p.clone(),
            Emit::Publish(p) => Packet::Publish(p.to_publish()),
        })
    }
}
