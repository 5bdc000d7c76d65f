//! The session actor: one per client, whether a network connection or an in-process client of the embedding
//! API. It owns the client's `protocol::Connection`, feeds it every event (packets read, deliveries, commits,
//! replies, timers) and carries out what it returns; it holds no MQTT rule of its own.

mod app;
mod carry;
mod hooked;
mod net;
mod writer;

pub(crate) use app::{AppSink, SubscribeOutcome};
pub use net::ClientIo;

use super::messages::*;
use super::retained::RetainedStore;
use super::router::Router;
use crate::broker::hooks::{ClientInfo, Hooks};
use crate::codec::MqttCodec;
use crate::message::now_ms;
use crate::protocol::{self, Connection, EndCause, Input, Now, Outputs, Peer};
use crate::store::StoreHandle;
use actix::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use tokio::sync::oneshot;
use writer::Outgoing;

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Largest accepted packet.
    pub max_packet_size_bytes: usize,
    /// Most network connections open at once (0: no limit).
    pub max_connections: usize,
    /// New connections accepted per second from one IP address (0: no limit).
    pub max_connections_per_sec_per_ip: u32,
    /// PUBLISH packets read per second from one client (0: no limit).
    pub max_publish_rate_msgs_per_sec: u64,
    /// PUBLISH topic plus payload bytes read per second from one client (0: no limit).
    pub max_publish_rate_bytes_per_sec: u64,
    /// The protocol settings of network clients.
    pub protocol: Arc<protocol::Settings>,
    /// The protocol settings of in-process clients (no hooks: the application is their author).
    pub in_process: Arc<protocol::Settings>,
}

/// The peers a session talks to, shared by every session of a broker.
#[derive(Clone)]
pub struct SessionPeers {
    /// The router.
    pub router: Addr<Router>,
    /// The retained-message actor.
    pub retained: Addr<RetainedStore>,
    /// The store.
    pub store: StoreHandle,
    /// Shared settings.
    pub settings: Arc<SessionSettings>,
    /// The hooks CONNECTs and messages go through (the password file's and the application's), if any.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// Open network connections and refusals, for `max_connections` and `/metrics`.
    pub counters: Arc<ConnectionCounters>,
}

/// Network connections counted across every session of a broker.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Network connections whose session runs.
    pub open: std::sync::atomic::AtomicUsize,
    /// CONNECTs the hooks (the password file's or the application's) refused.
    pub refused_connects: std::sync::atomic::AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub over_limit: std::sync::atomic::AtomicU64,
    /// TLS connections closed before MQTT: the handshake failed, timed out or found too many under way.
    pub tls_handshakes_failed: std::sync::atomic::AtomicU64,
    /// Hits of every limit, and the per-address connection rate.
    pub limits: crate::broker::limits::LimitCounters,
}

impl ConnectionCounters {
    /// Counts a new connection in, unless `limit` (0: none) are open already.
    fn admit(&self, limit: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let admitted = self
            .open
            .fetch_update(Relaxed, Relaxed, |open| {
                (limit == 0 || open < limit).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            self.over_limit.fetch_add(1, Relaxed);
        }
        admitted
    }
}

/// A network connection's byte stream and the peer's address, as a transport hands them to a new session.
pub struct ClientStream {
    /// Bytes from and to the client.
    pub io: Box<dyn ClientIo>,
    /// Who it is, for logs.
    pub peer: Peer,
    /// The user name its TLS client certificate gives, on a listener with `use_identity_as_username`.
    pub identity: Option<protocol::CertificateName>,
}

/// Where the packets for the client go.
enum Sink {
    /// Encoded, to a socket (written by the `NetIo` future).
    Wire(Outgoing),
    /// As values, to an in-process subscription.
    App(Box<AppSink>),
}

thread_local! {
    /// The outputs of one input, reused by every session of the thread so no session keeps their high-water mark.
    static SCRATCH: RefCell<Outputs> = RefCell::new(Outputs::default());
    /// Inputs produced while carrying out outputs, handled before `Session::feed` returns.
    static FOLLOWUPS: RefCell<VecDeque<Input>> = const { RefCell::new(VecDeque::new()) };
}

/// Queues an input that carrying out an output produced (an answer known at once); `feed` handles it next.
fn follow_up(input: Input) {
    FOLLOWUPS.with(|f| f.borrow_mut().push_back(input));
}

/// One client.
pub struct Session {
    core: Connection,
    peers: Arc<SessionPeers>,
    link: Option<RouterLink>,
    sink: Sink,
    /// When the core wants `Input::Timer`.
    timer_at: Option<Instant>,
    /// Wakes the `NetIo` future when there is something to write or read again.
    io_waker: Option<Waker>,
    /// Routing credits, taken by the first batch this client publishes.
    route_credits: Option<Arc<tokio::sync::Semaphore>>,
    /// What few sessions need, allocated when one does.
    rare: Option<Box<Rare>>,
}

/// Session state that most sessions never need.
#[derive(Default)]
struct Rare {
    /// Signalled once a session that was taken over has written its last state.
    takeover_done: Option<oneshot::Sender<()>>,
    /// Since when every routing credit is out.
    held_since: Option<Instant>,
    /// Who the client is, for the hooks, once it authenticated.
    client_info: Option<Arc<ClientInfo>>,
}

impl Session {
    /// Starts a session for a new network connection on the current arbiter.
    /// `None`, with the stream closed, when `max_connections` are open already.
    pub fn start(stream: ClientStream, peers: Arc<SessionPeers>) -> Option<Addr<Session>> {
        if !peers.counters.admit(peers.settings.max_connections) {
            let who = format_args!("connection from {}", stream.peer);
            peers
                .counters
                .limits
                .record(protocol::Limit::Connections, 1, &who);
            return None;
        }
        Some(Session::create(move |ctx| {
            let codec = MqttCodec::server(peers.settings.max_packet_size_bytes);
            let pace = protocol::limits::PublishPace::new(
                peers.settings.max_publish_rate_msgs_per_sec,
                peers.settings.max_publish_rate_bytes_per_sec,
                Instant::now(),
            );
            ctx.spawn(net::NetIo::new(stream.io, codec, pace));
            let settings = peers.settings.protocol.clone();
            let mut session = Session::with_sink(
                settings,
                stream.peer,
                Sink::Wire(Outgoing::default()),
                peers,
            );
            if let Some(identity) = stream.identity {
                session.core.use_certificate_identity(identity);
            }
            session
        }))
    }

    /// An in-process client whose packets go to `sink`, to be started on an arbiter.
    pub(crate) fn in_process(sink: AppSink, peers: Arc<SessionPeers>) -> Session {
        let settings = peers.settings.in_process.clone();
        Session::with_sink(settings, Peer::InProcess, Sink::App(Box::new(sink)), peers)
    }

    fn with_sink(
        settings: Arc<protocol::Settings>,
        peer: Peer,
        sink: Sink,
        peers: Arc<SessionPeers>,
    ) -> Session {
        let mut out = Outputs::default();
        let core = Connection::new(settings, peer, now(0), &mut out);
        Session {
            core,
            peers,
            link: None,
            sink,
            timer_at: out.timer,
            io_waker: None,
            route_credits: None,
            rare: None,
        }
    }

    /// Hands one input to the core and carries out what it returns, with any input that produced.
    pub(crate) fn feed(&mut self, input: Input, ctx: &mut Context<Self>) {
        let mut out = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let mut next = Some(input);
        while let Some(input) = next {
            out.clear();
            self.core
                .handle(input, now(self.unwritten_bytes()), &mut out);
            if !out.limits.is_empty() {
                self.count_limits(&out.limits);
            }
            self.carry_out(&mut out, ctx);
            next = FOLLOWUPS.with(|f| f.borrow_mut().pop_front());
        }
        out.clear();
        SCRATCH.with(|s| *s.borrow_mut() = out);
    }

    /// Bytes (or, in process, message bytes) the client has not taken yet.
    fn unwritten_bytes(&self) -> usize {
        match &self.sink {
            Sink::Wire(out) => out.pending_bytes(),
            Sink::App(app) => app.pending_bytes(),
        }
    }

    /// Whether bytes wait that the socket may take now (not those waiting for a commit).
    fn ready_to_write(&self) -> bool {
        matches!(&self.sink, Sink::Wire(out) if !out.ready().is_empty())
    }

    /// Counts and logs the limits one input hit, naming the client and its peer.
    fn count_limits(&self, hits: &protocol::LimitHits) {
        let who = format_args!("client {} from {}", self.core.label(), self.core.peer());
        self.peers.counters.limits.record_all(hits, &who);
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn wake_io(&mut self) {
        if let Some(waker) = &self.io_waker {
            waker.wake_by_ref();
        }
    }
}

/// The time of an input, with what the owner knows of its unwritten output.
fn now(unwritten_bytes: usize) -> Now {
    Now {
        instant: Instant::now(),
        wall_ms: now_ms(),
        unwritten_bytes,
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Self::Context) {
        // Stopped from outside (the arbiter ends) before the core closed: close it now.
        if !self.core.is_closed() {
            self.feed(Input::End(EndCause::Shutdown), ctx);
        }
        if let Some(done) = self.rare.as_mut().and_then(|r| r.takeover_done.take()) {
            let _ = done.send(());
        }
        if matches!(self.sink, Sink::Wire(_)) {
            // Counted in by `start`.
            self.peers
                .counters
                .open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.feed(Input::Deliveries(msg.0), ctx);
    }
}

impl Handler<DeliverRetained> for Session {
    type Result = ();

    fn handle(&mut self, msg: DeliverRetained, ctx: &mut Self::Context) {
        self.feed(Input::Retained(msg.0), ctx);
    }
}

impl Handler<Behind> for Session {
    type Result = ();

    fn handle(&mut self, msg: Behind, ctx: &mut Self::Context) {
        self.feed(Input::Behind { head: msg.head }, ctx);
    }
}

impl Handler<TakenOver> for Session {
    type Result = ();

    fn handle(&mut self, msg: TakenOver, ctx: &mut Self::Context) {
        self.rare().takeover_done = Some(msg.done);
        self.feed(Input::End(msg.cause), ctx);
    }
}

impl Handler<CloseForShutdown> for Session {
    type Result = ();

    fn handle(&mut self, _: CloseForShutdown, ctx: &mut Self::Context) {
        self.feed(Input::End(EndCause::Shutdown), ctx);
    }
}
