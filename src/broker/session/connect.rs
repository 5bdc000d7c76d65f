//! Attaching a session: CONNECT checks, registration with the router (taking over any previous connection),
//! the store work CONNACK waits for, and detaching when the connection ends.

use super::*;
use crate::codec::{ConnAck, Connect, ConnectReturnCode};
use crate::message::{now_ms, Message};
use crate::protocol::{accept_connect, ConnectDecision};
use crate::store::StoreError;

/// How long a new connection waits for the one it takes over to finish writing its state.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// What CONNECT asked for, kept while the session attaches.
struct ConnectParams {
    client_id: ClientId,
    level: ProtocolLevel,
    persistent: bool,
    keep_alive_secs: u16,
    will: Option<LastWill>,
}

/// Everything learned while attaching, applied to the actor in one step.
struct Attachment {
    reply: RegisterReply,
    incoming_qos2: Vec<PacketId>,
}

#[derive(Debug, thiserror::Error)]
enum AttachError {
    #[error("router unavailable")]
    RouterGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Session {
    pub(super) fn begin_connect(&mut self, connect: Connect, ctx: &mut Context<Self>) {
        let client_id = match accept_connect(&connect) {
            ConnectDecision::Accept { client_id, .. } => client_id,
            ConnectDecision::Refuse(code) => {
                log::warn!(
                    "client {:?} from {}: CONNECT refused with {code:?}",
                    connect.client_id,
                    self.peer
                );
                self.refuse(code, ctx);
                return;
            }
        };
        self.phase = Phase::Connecting(Vec::new());
        if let Some(hooks) = self.peers.hooks.clone() {
            self.authenticate(hooks, connect, client_id, ctx);
            return;
        }
        self.attach(connect, client_id, ctx);
    }

    /// Registers an accepted CONNECT with the router and does the store work CONNACK waits for.
    pub(super) fn attach(
        &mut self,
        connect: Connect,
        client_id: ClientId,
        ctx: &mut Context<Self>,
    ) {
        let persistent = !connect.clean_session;
        let router = self.peers.router.clone();
        let store = self.peers.store.clone();
        let register = RegisterSession {
            client_id: client_id.clone(),
            clean_session: connect.clean_session,
            session: ctx.address().into(),
        };
        let level = connect.level;
        let id = client_id.clone();
        let work = async move {
            let reply = router
                .send(register)
                .await
                .map_err(|_| AttachError::RouterGone)?;
            if let Some(previous) = reply.previous_closed {
                let _ = tokio::time::timeout(TAKEOVER_WAIT, previous).await;
            }
            let reply = RegisterReply {
                previous_closed: None,
                ..reply
            };
            let now = now_ms();
            // [MQTT-3.1.2-6]: a clean session discards stored state; a new persistent session must exist in
            // the store before CONNACK (durability contract, point 2).
            let ops = if !persistent {
                reply.had_persistent.then(|| {
                    vec![StoreOp::DeleteSession {
                        client_id: id.clone(),
                    }]
                })
            } else if reply.session_present {
                store.write_and_forget(vec![StoreOp::TouchSession {
                    client_id: id.clone(),
                    now_ms: now,
                }]);
                None
            } else {
                Some(vec![StoreOp::CreateSession {
                    client_id: id.clone(),
                    level,
                    now_ms: now,
                }])
            };
            if let Some(ops) = ops {
                store
                    .write(ops)
                    .await
                    .map_err(|_| StoreError::WriterGone)??;
            }
            let incoming_qos2 = if reply.session_present {
                store
                    .read_incoming_qos2(id)
                    .await
                    .map_err(|_| StoreError::WriterGone)??
            } else {
                Vec::new()
            };
            Ok::<_, AttachError>(Attachment {
                reply,
                incoming_qos2,
            })
        };
        let params = ConnectParams {
            client_id,
            level,
            persistent,
            keep_alive_secs: connect.keep_alive_secs,
            will: connect.will,
        };
        ctx.wait(work.into_actor(self).map(move |result, act, ctx| {
            act.finish_connect(result, params, ctx);
        }));
    }

    fn finish_connect(
        &mut self,
        result: Result<Attachment, AttachError>,
        params: ConnectParams,
        ctx: &mut Context<Self>,
    ) {
        let ConnectParams {
            client_id,
            level,
            persistent,
            keep_alive_secs,
            will,
        } = params;
        let attachment = match result {
            Ok(attachment) => attachment,
            Err(e) => {
                log::error!("client {client_id} from {}: cannot attach: {e}", self.peer);
                self.refuse(ConnectReturnCode::ServerUnavailable, ctx);
                return;
            }
        };
        let deferred = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Connecting(deferred) => deferred,
            _ => Vec::new(),
        };
        let reply = attachment.reply;
        let settings = &self.peers.settings;
        // A persistent session's queue lives in the store; memory holds at most a couple of pages of it.
        let max_queued = if persistent {
            STORE_PAGE * 2
        } else {
            settings.max_queued_messages
        };
        log::info!(
            "client {client_id} connected from {} ({:?}, keepalive {keep_alive_secs}s, session present {})",
            self.peer,
            level,
            reply.session_present
        );
        let keep_alive = (keep_alive_secs > 0).then(|| Duration::from_secs(keep_alive_secs.into()));
        self.phase = Phase::Connected(Box::new(Attached {
            client_id,
            slot: reply.slot,
            conn: reply.conn,
            persistent,
            keep_alive,
            will,
            outbound: Outbound::new(settings.max_inflight, max_queued),
            acks: AckQueue::new(),
            incoming_qos2: attachment.incoming_qos2.into_iter().collect(),
            cursor: 0,
            known_head: reply.queue_head,
            catching_up: persistent,
            reading_store: false,
            dropped: 0,
            backed_up: false,
            hooks: self.session_hooks(),
        }));
        self.out.write(&Packet::ConnAck(ConnAck {
            session_present: reply.session_present,
            code: ConnectReturnCode::Accepted,
        }));
        self.hook_connected(reply.session_present);
        if let Some(keep_alive) = keep_alive {
            self.arm_keepalive(keep_alive + keep_alive / 2, ctx);
        }
        self.read_store_if_room(ctx);
        let mut batch = inbound::InboundBatch::default();
        for packet in deferred {
            self.handle_packet(packet, &mut batch, ctx);
        }
        self.finish_inbound(batch, ctx);
        self.flush(ctx);
    }

    /// Answers a CONNECT with an unsupported protocol level with CONNACK 0x01 and closes [MQTT-3.1.2-2].
    pub(super) fn refuse_level(&mut self, level: u8, ctx: &mut Context<Self>) {
        log::warn!(
            "{}: [MQTT-3.1.2-2] unsupported protocol level {level}; CONNACK 0x01",
            self.peer
        );
        self.refuse(ConnectReturnCode::UnacceptableProtocolVersion, ctx);
    }

    /// Sends a refusing CONNACK and closes [MQTT-3.2.2-5].
    pub(super) fn refuse(&mut self, code: ConnectReturnCode, ctx: &mut Context<Self>) {
        self.out.write(&Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        }));
        self.phase = Phase::Closed;
        self.out.close();
        ctx.stop();
    }

    /// Leaves the router: publishes the will unless the client said DISCONNECT, records the last-seen time,
    /// and tells a connection that took over that this one is done.
    pub(super) fn detach(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let Phase::Connected(attached) = phase else {
            self.out.close();
            return;
        };
        let attached = *attached;
        if self.close_reason == CloseReason::Abnormal {
            if let Some(will) = attached.will {
                self.peers.router.do_send(RoutePublish {
                    messages: vec![Arc::new(Message {
                        topic: will.topic,
                        payload: will.payload,
                        qos: will.qos,
                        retain: will.retain,
                        arrived_at_ms: now_ms(),
                    })],
                    ops: Vec::new(),
                    done: None,
                    permit: None,
                });
            }
        }
        if attached.persistent {
            self.pending_ops.push(StoreOp::TouchSession {
                client_id: attached.client_id.clone(),
                now_ms: now_ms(),
            });
        }
        let ops = std::mem::take(&mut self.pending_ops);
        if !ops.is_empty() {
            self.peers.store.write_and_forget(ops);
        }
        self.peers.router.do_send(SessionClosed {
            slot: attached.slot,
            conn: attached.conn,
        });
        self.out.close();
        hooked::disconnected(attached.hooks.as_deref(), self.close_reason);
        log::info!(
            "client {} from {} disconnected ({})",
            attached.client_id,
            self.peer,
            self.close_reason
        );
        if let Some(done) = self.takeover_done.take() {
            let _ = done.send(());
        }
    }
}
