//! The session actor: one per network connection. Owns the connection's protocol state (CONNECT, keepalive,
//! packet ids, inflight windows, QoS handshakes, will) and talks to the router and store only by message.

mod connect;
mod hooked;
mod inbound;
mod outbound;
mod writer;

use super::messages::*;
use super::retained::RetainedStore;
use super::router::Router;
use crate::codec::{
    ClientId, DecodeError, LastWill, MqttCodec, Packet, PacketId, ProtocolLevel, QoS,
};
use crate::protocol::{AckQueue, Outbound};
use crate::store::{OverflowPolicy, StoreHandle, StoreOp};
use crate::transport::reader::PacketStream;
use actix::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use writer::Outgoing;

/// Routing batches a publisher may have waiting for slow subscribers before it stops reading.
const BATCHES_IN_FLIGHT: usize = 4;
/// Queued messages at which a clean session asks the router to hold deliveries back, and at which it lets
/// them flow again.
const BACKED_UP_AT: usize = 1024;
const DRAINED_AT: usize = 256;
/// How long one write may make no progress before the client counts as gone.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(60);
/// Stored queue entries read at a time by a persistent session that is catching up.
const STORE_PAGE: usize = 256;

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Largest accepted packet.
    pub max_packet_size_bytes: usize,
    /// Time to send CONNECT.
    pub connect_timeout: Duration,
    /// Highest QoS granted.
    pub max_qos: QoS,
    /// Outbound inflight window.
    pub max_inflight: usize,
    /// Outbound queue of a clean session, in messages.
    pub max_queued_messages: usize,
    /// What a clean session's full queue does with new messages.
    pub overflow: OverflowPolicy,
}

/// The peers a session talks to.
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
    /// The application's hooks, if it registered any.
    pub hooks: Option<Arc<dyn crate::broker::hooks::Hooks>>,
}

/// A transport's two halves and the peer's name, as handed to a new session.
pub struct Connection {
    /// Bytes from the client.
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    /// Bytes to the client.
    pub writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// Peer address for logs.
    pub peer: String,
}

enum Phase {
    AwaitingConnect,
    Connecting(Vec<Packet>),
    Connected(Box<Attached>),
    Closed,
}

/// State of a session once CONNECT was accepted.
struct Attached {
    client_id: ClientId,
    slot: SlotId,
    conn: ConnId,
    persistent: bool,
    keep_alive: Option<Duration>,
    will: Option<LastWill>,
    outbound: Outbound,
    acks: AckQueue,
    incoming_qos2: HashSet<PacketId>,
    /// Highest stored queue position this session holds in memory (or knows to be removed).
    cursor: u64,
    /// A queue head learned from the router before the latest store read was sent: every position up to it
    /// was either returned by that read or no longer exists.
    known_head: u64,
    /// Stored messages are read from the store rather than received live.
    catching_up: bool,
    reading_store: bool,
    dropped: u64,
    /// Present only when hooks are registered, so a broker without them pays nothing per message.
    hooks: Option<Box<hooked::SessionHooks>>,
    /// The router was told this session's queue is long and parks its deliveries.
    backed_up: bool,
}

/// Why the session ends, which decides what happens to the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// The client sent DISCONNECT: the will is discarded [MQTT-3.14.4-3].
    Disconnect,
    /// The broker shuts down.
    Shutdown,
    /// Anything else (network error, keepalive, violation, takeover): the will is published [MQTT-3.1.2-8].
    Abnormal,
}

/// One client connection.
pub struct Session {
    peers: SessionPeers,
    peer: String,
    out: Outgoing,
    phase: Phase,
    last_activity: Instant,
    close_reason: CloseReason,
    takeover_done: Option<tokio::sync::oneshot::Sender<()>>,
    pending_ops: Vec<StoreOp>,
    /// Who the client is, kept for the hooks once authenticate accepted it.
    client_info: Option<Arc<crate::broker::hooks::ClientInfo>>,
    /// Routing batches this session may have in flight; see `finish_inbound`.
    flow: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Disconnect => "DISCONNECT",
            CloseReason::Shutdown => "broker shutdown",
            CloseReason::Abnormal => "connection lost or closed by the broker",
        })
    }
}

impl Session {
    /// Starts a session for a new connection on the current arbiter.
    pub fn start(conn: Connection, peers: SessionPeers) -> Addr<Session> {
        Session::create(move |ctx| {
            let codec = MqttCodec::server(peers.settings.max_packet_size_bytes);
            ctx.add_stream(PacketStream::new(conn.reader, codec));
            Session {
                out: Outgoing::new(conn.writer),
                peer: conn.peer,
                peers,
                phase: Phase::AwaitingConnect,
                last_activity: Instant::now(),
                close_reason: CloseReason::Abnormal,
                takeover_done: None,
                pending_ops: Vec::new(),
                client_info: None,
                flow: Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT)),
            }
        })
    }

    fn client_label(&self) -> String {
        match &self.phase {
            Phase::Connected(a) => a.client_id.to_string(),
            _ => "(not connected)".to_owned(),
        }
    }

    /// Ends the connection because the client broke a rule; logged with who and which rule.
    fn violation(&mut self, rule: impl std::fmt::Display, ctx: &mut Context<Self>) {
        log::warn!(
            "client {} from {}: {rule}; closing the connection",
            self.client_label(),
            self.peer
        );
        self.close(CloseReason::Abnormal, ctx);
    }

    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.close_reason == CloseReason::Abnormal {
            self.close_reason = reason;
        }
        ctx.stop();
    }

    /// Hands what was recorded to the store and what was encoded to the writer; bytes that announce stored
    /// state wait for its commit; waits if the client is slow.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.pending_ops.is_empty() {
            let ops = std::mem::take(&mut self.pending_ops);
            if ops.iter().any(StoreOp::announced_to_client) {
                // [MQTT-4.4.0-1]: after a crash the packet must be re-sent as it was; so the packet id it
                // went out under is committed before the client can see it.
                let gate = self.out.seal_gated();
                let committed = self.peers.store.write(ops);
                ctx.spawn(committed.into_actor(self).map(move |result, act, ctx| {
                    act.out.open(gate);
                    if !matches!(result, Ok(Ok(()))) {
                        log::error!(
                            "client {}: cannot record what was sent; closing",
                            act.client_label()
                        );
                        act.out.close();
                        ctx.stop();
                        return;
                    }
                    act.flush(ctx);
                }));
            } else {
                self.peers.store.write_and_forget(ops);
            }
        }
        // The socket is written while the session waits: a full socket holds the session (and so its mailbox).
        if let Some(job) = self.out.take_job() {
            // While waiting nothing else of this session runs, not even its keepalive timer: a client that
            // vanished with a full socket buffer is dropped after a bounded stall instead.
            let write = tokio::time::timeout(WRITE_STALL_LIMIT, job.run());
            ctx.wait(write.into_actor(self).map(|result, act, ctx| match result {
                Ok(Ok(io)) => {
                    act.out.restore(io);
                    act.flush(ctx);
                }
                Ok(Err(_)) => ctx.stop(),
                Err(_) => act.violation("the socket accepted nothing for 60 s", ctx),
            }));
        }
    }

    fn arm_keepalive(&mut self, after: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(after, |act, ctx| {
            let Phase::Connected(attached) = &act.phase else {
                return;
            };
            let Some(keep_alive) = attached.keep_alive else {
                return;
            };
            // [MQTT-3.1.2-24]: one and a half keepalive periods without a packet.
            let limit = keep_alive + keep_alive / 2;
            let idle = act.last_activity.elapsed();
            if idle >= limit {
                act.violation(
                    format_args!("[MQTT-3.1.2-24] no packet within {}s", limit.as_secs_f32()),
                    ctx,
                );
            } else {
                act.arm_keepalive(limit - idle, ctx);
            }
        });
    }

    fn handle_batch(&mut self, items: Vec<Result<Packet, DecodeError>>, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        let mut batch = inbound::InboundBatch::default();
        for item in items {
            if matches!(self.phase, Phase::Closed) {
                break;
            }
            match item {
                Ok(packet) => self.handle_packet(packet, &mut batch, ctx),
                Err(DecodeError::UnsupportedProtocolLevel(level)) => {
                    self.refuse_level(level, ctx);
                    break;
                }
                Err(e) => {
                    self.violation(e, ctx);
                    break;
                }
            }
        }
        self.finish_inbound(batch, ctx);
        self.flush(ctx);
    }

    fn handle_packet(
        &mut self,
        packet: Packet,
        batch: &mut inbound::InboundBatch,
        ctx: &mut Context<Self>,
    ) {
        match &mut self.phase {
            Phase::AwaitingConnect => match packet {
                Packet::Connect(connect) => self.begin_connect(*connect, ctx),
                other => self.violation(
                    format_args!(
                        "[MQTT-3.1.0-1] first packet is {}, not CONNECT",
                        other.name()
                    ),
                    ctx,
                ),
            },
            // Packets sent right after CONNECT wait until the session is attached.
            Phase::Connecting(deferred) => deferred.push(packet),
            Phase::Connected(_) => self.handle_attached(packet, batch, ctx),
            Phase::Closed => {}
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Each message is a batch; a short mailbox keeps the overshoot past a backed-up signal small.
        ctx.set_mailbox_capacity(16);
        let timeout = self.peers.settings.connect_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if matches!(act.phase, Phase::AwaitingConnect) {
                log::info!("{}: no CONNECT within {:?}, closing", act.peer, timeout);
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.detach();
    }
}

impl StreamHandler<Vec<Result<Packet, DecodeError>>> for Session {
    fn handle(&mut self, items: Vec<Result<Packet, DecodeError>>, ctx: &mut Self::Context) {
        self.handle_batch(items, ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.deliver(msg.0, ctx);
        self.flush(ctx);
    }
}

impl Handler<QueueBehind> for Session {
    type Result = ();

    fn handle(&mut self, _: QueueBehind, ctx: &mut Self::Context) {
        if let Phase::Connected(attached) = &mut self.phase {
            attached.catching_up = true;
        }
        self.read_store_if_room(ctx);
    }
}

impl Handler<TakenOver> for Session {
    type Result = ();

    fn handle(&mut self, msg: TakenOver, ctx: &mut Self::Context) {
        let why = match msg.cause {
            EndCause::Takeover => "taken over by a new connection",
            EndCause::Deleted => "session deleted by an operator",
        };
        log::info!("client {} from {}: {why}", self.client_label(), self.peer);
        self.takeover_done = Some(msg.done);
        self.close(CloseReason::Abnormal, ctx);
    }
}

impl Handler<CloseForShutdown> for Session {
    type Result = ();

    fn handle(&mut self, _: CloseForShutdown, ctx: &mut Self::Context) {
        self.close(CloseReason::Shutdown, ctx);
    }
}
