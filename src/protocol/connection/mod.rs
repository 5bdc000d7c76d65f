//! The per-connection state machine: `Connection::handle(input, now, outputs)`. Every MQTT rule a session
//! follows lives here, from CONNECT to the close; its owner feeds it inputs and carries out what it returns,
//! and does nothing of its own. No I/O, no clock, no actors: tests drive it with plain values and virtual time.
//!
//! The stages of a connection: waiting for CONNECT, asking the authenticate hook, registering with the
//! router, restoring stored state, connected, closed. Packets that arrive while the core waits for an answer
//! (a hook, the router, the store) wait in order in the backlog; the owner stops reading meanwhile.

mod attach;
mod auth;
mod close;
mod deliver;
mod inbound;
#[cfg(test)]
mod tests;

use super::acks::{AckQueue, Answer, Ticket, Tickets};
use super::credit::{Credit, OUTPUT_HIGH_WATER_BYTES};
use super::feed::StoredFeed;
use super::io::{CertificateName, Input, Now, Outputs, Peer, Registration};
use super::outbound::{Delivery, Outbound, OutboundPublish};
use super::v5::{ClientLimits, InboundAliases, OutboundAliases, ServerLimits};
use crate::codec::{ClientId, DecodeError, LastWill, Packet, PacketId, ProtocolLevel, QoS};
use crate::message::Message;
use crate::store::{OverflowPolicy, StoreOp};
use crate::topic::TopicFilter;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stored queue entries read at a time by a persistent session that is catching up.
pub const STORE_PAGE: usize = 256;

/// Messages a persistent session holds in memory before it leaves the rest in the store.
const PERSISTENT_QUEUE_BOUND: usize = STORE_PAGE * 2;

/// Queued messages at which a clean session holds its credit back, so that its publishers are held back
/// rather than its queue filling up to `max_queued_messages` and overflowing.
const CLEAN_QUEUE_HOLD_AT: usize = 1024;

/// Unwritten output above which the core stops reading the client: it is not reading what it is sent.
const READ_PAUSE_OUTPUT_BYTES: usize = 4 * OUTPUT_HIGH_WATER_BYTES;

/// Answers waiting for their commits above which the core stops reading the client.
const MAX_UNANSWERED: usize = 65_536;

/// What every connection of a broker shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Highest QoS granted to a subscription.
    pub max_qos: QoS,
    /// Unacknowledged outbound QoS 1/2 messages at a time.
    pub max_inflight: usize,
    /// Messages a session queues in memory that are not in the store (a clean session's); beyond it the
    /// overflow policy applies.
    pub max_queued_messages: usize,
    /// What a full queue does with one more message (QoS 2 messages are never dropped).
    pub overflow: OverflowPolicy,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Whether publishes and subscriptions are screened by the hooks first (the application's, or the HTTP
    /// authorisation service's).
    pub hooks: bool,
    /// Whether the application's hooks are told what happens (connections, deliveries, acknowledgements, ends)
    /// and asked about MQTT 5.0 enhanced authentication.
    pub notify: bool,
    /// Whether every CONNECT is put to the authenticate hook: when there are hooks, and when a password file
    /// is configured (which alone screens nothing else).
    pub authenticate: bool,
    /// Deliveries the router may hand the session before it grants more.
    pub credit: u32,
    /// What MQTT 5.0 clients are offered in CONNACK.
    pub v5: ServerLimits,
    /// Client identifier, topic, subscription and outgoing buffer limits.
    pub limits: super::limits::Limits,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    settings: Arc<Settings>,
    peer: Peer,
    stage: Stage,
    /// Packets read but not yet handled, in order.
    backlog: VecDeque<Result<Packet, DecodeError>>,
    /// Bytes written for the client that the socket has not taken yet.
    pending_output: usize,
    tickets: Tickets,
    /// The connection is over; every later input is ignored.
    closed: bool,
    /// The current input shows the client taking what it is sent (its socket took bytes, or it acknowledged).
    progressed: bool,
    /// The protocol level of the CONNECT (3.1.1 until one arrives).
    level: ProtocolLevel,
    /// Wall-clock milliseconds of the current input, for message expiry.
    wall_ms: u64,
    /// An MQTT 5.0 client allows a Reason String on refusals (Request Problem Information).
    problem_information: bool,
    /// What the client may do with topics, once the hooks said (the ACL file's rules).
    rights: Rights,
}

/// A connection's rights over topics, if any rule limits them.
type Rights = Option<Box<dyn crate::protocol::TopicRights>>;

#[derive(Debug)]
enum Stage {
    AwaitingConnect {
        deadline: Instant,
        /// The user name a TLS client certificate gives (`use_identity_as_username`), if the listener says so.
        identity: Option<Box<CertificateName>>,
    },
    /// Waiting for the enhanced authentication hook's next step.
    AuthStepping(Box<Joining>),
    /// Waiting for the client's AUTH in an enhanced authentication exchange.
    Exchanging(Box<Joining>),
    Authenticating(Box<Joining>),
    Registering(Box<Joining>),
    Restoring(Box<Restoring>),
    Connected(Box<Attached>),
    Closed,
}

/// What CONNECT asked for, kept while the session is being set up.
#[derive(Debug)]
struct Joining {
    /// The CONNECT deadline set at the accept, which an enhanced authentication exchange must also keep.
    connect_deadline: Instant,
    client_id: ClientId,
    clean_session: bool,
    level: ProtocolLevel,
    keep_alive_secs: u16,
    will: Option<Box<LastWill>>,
    /// Messages the router sent before CONNACK could be sent, in order.
    early: Vec<Delivery>,
    /// Highest stored position the router reported skipping before CONNACK.
    early_behind: u64,
    /// What an MQTT 5.0 client allows and was granted; `None` for earlier levels.
    v5: Option<Box<JoiningV5>>,
}

/// The MQTT 5.0 part of a CONNECT being set up.
#[derive(Debug)]
struct JoiningV5 {
    limits: ClientLimits,
    /// Session Expiry Interval granted, in seconds.
    session_expiry: u32,
    /// Whether the session expiry granted differs from the one asked for (CONNACK then says so).
    expiry_capped: bool,
    /// The client identifier was assigned by the broker (CONNACK says which).
    assigned_id: bool,
    /// Server Keep Alive, when the server imposes its own.
    server_keep_alive: Option<u16>,
    /// The enhanced authentication of this connection, if it uses one.
    auth: Option<Box<AuthState>>,
}

/// An MQTT 5.0 enhanced authentication (section 4.12): its method, what the client sent in CONNECT (for each
/// step of the hook), and the data of the hook's last step.
#[derive(Debug, Clone)]
struct AuthState {
    method: bytestring::ByteString,
    info: super::io::ConnectInfo,
    last_data: Option<bytes::Bytes>,
    /// A re-authentication is under way (connected sessions only).
    again: bool,
}

impl Joining {
    /// Whether the session outlives its connection: clean session 0 before 5.0, a session expiry above 0 in
    /// 5.0 (or a resumed stored session, which lasts at least until this connection ends).
    fn outlives_connection(&self, resumed: bool) -> bool {
        match &self.v5 {
            None => !self.clean_session,
            Some(v5) => v5.session_expiry > 0 || resumed,
        }
    }
}

/// The MQTT 5.0 state of a connected session.
#[derive(Debug)]
struct V5Session {
    limits: ClientLimits,
    inbound_aliases: InboundAliases,
    outbound_aliases: OutboundAliases,
    /// Session Expiry Interval in force, in seconds.
    session_expiry: u32,
    /// The enhanced authentication it connected with, for re-authentication.
    auth: Option<Box<AuthState>>,
}

/// A registered session waiting for the store before CONNACK.
#[derive(Debug)]
struct Restoring {
    joining: Joining,
    registration: Registration,
    /// The store write CONNACK waits for.
    commit: Option<Ticket>,
    /// The inbound QoS 2 ids, once read (for a resumed session).
    incoming_qos2: Option<Vec<PacketId>>,
}

/// A connected session.
#[derive(Debug)]
struct Attached {
    client_id: ClientId,
    persistent: bool,
    /// How long the client may stay silent (one and a half keepalives); `None` when the keepalive is off.
    silence_limit: Option<Duration>,
    last_packet: Instant,
    will: Option<Box<LastWill>>,
    outbound: Outbound,
    acks: AckQueue,
    incoming_qos2: BTreeSet<PacketId>,
    /// Where stored messages come from (persistent sessions only).
    stored: Option<Box<StoredFeed>>,
    credit: Credit,
    /// The publishes of the current read, routed together.
    batch: OpenBatch,
    /// An answer the core waits for before it handles the backlog.
    awaiting: Option<Box<Awaiting>>,
    /// The router holds this publisher back.
    held: bool,
    /// The router's mailbox is full.
    router_busy: bool,
    /// Subscriptions whose retained messages are sent once they are stored.
    retained_after: RetainedWaiting,
    /// PUBLISHes sent and not yet acknowledged, kept only for the hooks' `on_message_acked` (and only
    /// while there are some).
    hooked_unacked: HookedUnacked,
    /// Messages dropped by the overflow policy since the session connected (32 bits keep the state within its
    /// allocation size class; it saturates).
    dropped: u32,
    /// The filters the session holds, kept only under `max_subscriptions_per_client`.
    subscribed: HeldFilters,
    /// MQTT 5.0 state; `None` for earlier levels. Kept in place: with the two boxed fields above, an idle
    /// 5.0 connection costs no more memory than a 3.1.1 one.
    v5: Option<V5Session>,
}

/// Subscriptions waiting for their retained messages, by the commit they wait for. Allocated while there are
/// some, like `HookedUnacked`, so that an idle connection pays a pointer for each.
#[allow(clippy::box_collection)]
type RetainedWaiting = Option<Box<Vec<(Ticket, Vec<RetainedAfter>)>>>;

/// The filters a session holds, boxed like `HookedUnacked` so that a session without a quota pays a pointer.
#[allow(clippy::box_collection)]
type HeldFilters = Option<Box<std::collections::HashSet<TopicFilter>>>;

/// PUBLISHes sent and not yet acknowledged, by packet identifier; allocated while there are some.
#[allow(clippy::box_collection)]
type HookedUnacked = Option<Box<BTreeMap<PacketId, OutboundPublish>>>;

/// A new subscription whose retained messages are sent once it is stored.
#[derive(Debug)]
struct RetainedAfter {
    /// Its place among the filters of the SUBSCRIBE request.
    index: usize,
    filter: TopicFilter,
    qos: QoS,
    /// Its Subscription Identifier, which the retained messages carry.
    id: Option<u32>,
    /// Retain Handling 1: only if the subscription did not exist before.
    only_if_new: bool,
}

/// The publishes of one read, with the publisher's own store changes and the ticket their answers wait for.
#[derive(Debug, Default)]
struct InboundBatch {
    messages: Vec<Arc<Message>>,
    /// The packet id and QoS of each message, kept only while hooks screen publishes (for 0x87 answers) or
    /// the publisher speaks MQTT 5.0 (for 0x10 No matching subscribers).
    ids: Vec<(Option<PacketId>, QoS)>,
    ops: Vec<StoreOp>,
    ticket: Option<Ticket>,
}

/// The open batch of a connection: allocated by the read that starts one, gone once it is routed.
#[derive(Debug, Default)]
struct OpenBatch(Option<Box<InboundBatch>>);

impl OpenBatch {
    fn get(&mut self) -> &mut InboundBatch {
        self.0.get_or_insert_with(Box::default)
    }

    /// The ticket the batch's answers wait for, taken when the first answer needs one.
    fn ticket(&mut self, tickets: &mut Tickets) -> Ticket {
        *self.get().ticket.get_or_insert_with(|| tickets.issue())
    }

    fn take(&mut self) -> InboundBatch {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

/// An answer the core waits for before going on with the client's packets.
#[derive(Debug)]
enum Awaiting {
    /// The publish hooks screen a batch.
    Screening(InboundBatch),
    /// The subscribe hook screens a SUBSCRIBE.
    SubscribeScreening(crate::codec::Subscribe),
}

/// Whether a store record holds something the client is told in the same breath (a PUBLISH under a packet
/// id, a PUBREL): the packet must not leave before the record is committed [MQTT-4.4.0-1]. A rule about what
/// a client has been told, so it lives here and not in the store.
fn announced_to_client(op: &StoreOp) -> bool {
    matches!(op, StoreOp::MarkSent { .. } | StoreOp::MarkReleased { .. })
}

impl Connection {
    /// Makes the identity of the client's TLS certificate the user name of its CONNECT, whose own user name
    /// and password are then set aside (`use_identity_as_username`, as in Mosquitto). Only before CONNECT.
    pub fn use_certificate_identity(&mut self, name: CertificateName) {
        if let Stage::AwaitingConnect { identity, .. } = &mut self.stage {
            *identity = Some(Box::new(name));
        }
    }

    /// A new connection from `peer`; asks for a timer at the CONNECT deadline.
    pub fn new(settings: Arc<Settings>, peer: Peer, now: Now, out: &mut Outputs) -> Self {
        let deadline = now.instant + settings.connect_timeout;
        out.timer = Some(deadline);
        Connection {
            settings,
            peer,
            stage: Stage::AwaitingConnect {
                deadline,
                identity: None,
            },
            backlog: VecDeque::new(),
            pending_output: 0,
            tickets: Tickets::default(),
            closed: false,
            progressed: false,
            level: ProtocolLevel::V311,
            wall_ms: now.wall_ms,
            problem_information: true,
            rights: None,
        }
    }

    /// Limits what the client may do with topics from now on (given by the hooks once it authenticated).
    pub fn grant_rights(&mut self, rights: Rights) {
        self.rights = rights;
    }

    /// The protocol level the client speaks (3.1.1 until its CONNECT is read).
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }

    /// Handles one input; what it produced is appended to `out`.
    pub fn handle(&mut self, input: Input, now: Now, out: &mut Outputs) {
        self.pending_output = now.unwritten_bytes;
        self.wall_ms = now.wall_ms;
        self.progressed = matches!(input, Input::Written);
        if self.closed {
            // Nothing is acted on after the close [MQTT-3.14.4-2]; a registration that raced with it is undone.
            if let Input::Registered(Ok(_)) = input {
                out.requests.push(super::io::Request::Detach);
            }
            return;
        }
        match input {
            Input::Read(items) => self.on_read(items, now, out),
            Input::InputClosed => self.close(super::io::CloseReason::Abnormal, now, out),
            Input::Written => {}
            Input::Authenticated(verdict) => self.on_authenticated(verdict, now, out),
            Input::AuthStepped(step) => self.on_auth_stepped(step, now, out),
            Input::Unmatched(ids) => self.on_unmatched(ids),
            Input::Existing { ticket, existed } => self.on_existing(ticket, existed),
            Input::Registered(result) => self.on_registered(result, now, out),
            Input::Committed { ticket, result } => self.on_committed(ticket, result, now, out),
            Input::IncomingQos2(result) => self.on_incoming_qos2(result, now, out),
            Input::Screened(verdicts) => self.on_screened(verdicts, now, out),
            Input::SubscribeScreened(denied) => self.on_subscribe_screened(denied, now, out),
            Input::Deliveries(deliveries) => self.on_deliveries(deliveries, out),
            Input::Retained(deliveries) => self.on_retained(deliveries, out),
            Input::Behind { head } => self.on_behind(head),
            Input::StorePage(page) => self.on_store_page(page, now, out),
            Input::Pace { hold } => self.with_attached(|a| a.held = hold),
            Input::RouterBusy(busy) => self.with_attached(|a| a.router_busy = busy),
            Input::Timer => self.on_timer(now, out),
            Input::End(cause) => self.on_end(cause, now, out),
        }
        self.after_input(now, out);
        if out.gate.is_none() && out.store.iter().any(announced_to_client) {
            // [MQTT-4.4.0-1]: what these records announce must not reach the client before they are committed.
            out.gate = Some(self.new_ticket());
        }
    }

    /// Whether the owner should read more from the client now.
    pub fn wants_input(&self) -> bool {
        match &self.stage {
            Stage::AwaitingConnect { .. } | Stage::Exchanging(_) => self.backlog.is_empty(),
            Stage::Connected(a) => {
                a.awaiting.is_none()
                    && self.backlog.is_empty()
                    && !a.held
                    && !a.router_busy
                    && self.pending_output < READ_PAUSE_OUTPUT_BYTES
                    && a.acks.len() < MAX_UNANSWERED
            }
            _ => false,
        }
    }

    /// Whether the core wants to hear when the client takes output (`Input::Written`): only while it holds
    /// credit back, waiting for the client to catch up.
    pub fn wants_written(&self) -> bool {
        matches!(&self.stage, Stage::Connected(a) if a.credit.is_withholding())
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The client identifier, once CONNECT was accepted.
    pub fn client_id(&self) -> Option<&ClientId> {
        match &self.stage {
            Stage::Authenticating(j)
            | Stage::Registering(j)
            | Stage::AuthStepping(j)
            | Stage::Exchanging(j) => Some(&j.client_id),
            Stage::Restoring(r) => Some(&r.joining.client_id),
            Stage::Connected(a) => Some(&a.client_id),
            Stage::AwaitingConnect { .. } | Stage::Closed => None,
        }
    }

    /// Who the client is, for logs.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The client identifier, or that there is none yet, for logs.
    pub fn label(&self) -> String {
        match self.client_id() {
            Some(id) => id.to_string(),
            None => "(not connected)".to_owned(),
        }
    }

    fn new_ticket(&mut self) -> Ticket {
        self.tickets.issue()
    }

    /// What CONNECT asked for, while the session is registered with the router but CONNACK not yet sent.
    fn joining(&mut self) -> Option<&mut Joining> {
        match &mut self.stage {
            Stage::Registering(joining) => Some(joining),
            Stage::Restoring(restoring) => Some(&mut restoring.joining),
            _ => None,
        }
    }

    fn with_attached(&mut self, f: impl FnOnce(&mut Attached)) {
        if let Stage::Connected(attached) = &mut self.stage {
            f(attached);
        }
    }

    /// What follows every input of a connected session: a page read when it has room, credit given back.
    fn after_input(&mut self, now: Now, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        if let Some(stored) = &mut attached.stored {
            if let Some(after_seq) = stored.next_read(attached.outbound.has_room()) {
                out.requests.push(super::io::Request::ReadQueue {
                    after_seq,
                    limit: STORE_PAGE,
                });
            }
        }
        let bound = if attached.persistent {
            PERSISTENT_QUEUE_BOUND
        } else {
            self.settings.max_queued_messages.min(CLEAN_QUEUE_HOLD_AT)
        };
        let congested =
            attached
                .credit
                .congested(attached.outbound.queued_len(), bound, self.pending_output);
        if let Some(n) = attached.credit.to_grant(congested) {
            out.requests.push(super::io::Request::GrantCredit(n));
        } else if attached
            .credit
            .report_progress(self.progressed, now.instant)
        {
            // Still lagging, but not stuck: a grant of nothing says so.
            out.requests.push(super::io::Request::GrantCredit(0));
        }
    }
}
