//! From CONNECT to CONNACK: the first-packet rule, client identifier rules, the authenticate hook, registration
//! with the router, the store work CONNACK waits for, and the connect and keepalive timers.

use super::*;
use crate::codec::{props, ConnAck, Connect, ConnectReturnCode, ReasonCode};
use crate::protocol::connect::{accept_connect, ConnectDecision};
use crate::protocol::io::{CertificateName, CloseReason, ConnectInfo, Emit, Notification, Request};
use crate::protocol::v5::{connack_properties, granted_session_expiry, server_keep_alive};
use crate::store::StoreError;
use bytes::Bytes;
use bytestring::ByteString;

impl Connection {
    pub(super) fn on_read(
        &mut self,
        items: Vec<Result<Packet, DecodeError>>,
        now: Now,
        out: &mut Outputs,
    ) {
        match &mut self.stage {
            Stage::Closed => return,
            Stage::Connected(attached) => attached.last_packet = now.instant,
            _ => {}
        }
        if self.backlog.is_empty() {
            // Takes over the read's buffer rather than copying it.
            self.backlog = VecDeque::from(items);
        } else {
            self.backlog.extend(items);
        }
        self.drain(now, out);
        if self.backlog.is_empty() {
            // An idle connection keeps no buffer.
            self.backlog = VecDeque::new();
        }
    }

    /// Handles waiting packets in order until none is left or the core must wait for an answer.
    pub(super) fn drain(&mut self, now: Now, out: &mut Outputs) {
        loop {
            let connected = match &self.stage {
                Stage::AwaitingConnect { .. } => false,
                Stage::Connected(attached) if attached.awaiting.is_none() => true,
                Stage::Exchanging(_) => {
                    let Some(item) = self.backlog.pop_front() else {
                        return;
                    };
                    self.on_exchange_item(item, now, out);
                    continue;
                }
                _ => return,
            };
            let Some(item) = self.backlog.pop_front() else {
                if connected {
                    self.settle_batch(out);
                }
                return;
            };
            if connected {
                self.on_attached_item(item, now, out);
            } else {
                self.on_first_packet(item, now, out);
            }
        }
    }

    fn on_first_packet(&mut self, item: Result<Packet, DecodeError>, now: Now, out: &mut Outputs) {
        match item {
            Ok(Packet::Connect(connect)) => self.on_connect(*connect, now, out),
            Ok(other) => self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format_args!(
                    "[MQTT-3.1.0-1] first packet is {}, not CONNECT",
                    other.name()
                ),
                now,
                out,
            ),
            Err(DecodeError::UnsupportedProtocolLevel(level)) => {
                log::warn!(
                    "{}: [MQTT-3.1.2-2] unsupported protocol level {level}; CONNACK 0x01",
                    self.peer
                );
                self.refuse(ConnectReturnCode::UnacceptableProtocolVersion, now, out);
            }
            Err(e) => self.violation(e.reason_code(), e, now, out),
        }
    }

    fn on_connect(&mut self, connect: Connect, now: Now, out: &mut Outputs) {
        self.level = connect.level;
        self.problem_information =
            props(&connect.properties).request_problem_information != Some(0);
        if let Err(limit) = self.connect_within_limits(&connect) {
            return self.refuse_over_limit(limit, now, out);
        }
        let (client_id, generated) = match accept_connect(&connect) {
            ConnectDecision::Accept {
                client_id,
                generated,
            } => (client_id.detached(), generated),
            ConnectDecision::Refuse(code) => {
                log::warn!(
                    "client {:?} from {}: CONNECT refused with {code:?}",
                    connect.client_id,
                    self.peer
                );
                self.refuse(code, now, out);
                return;
            }
        };
        let Some((username, password, certificate_identity)) = self.credentials(&connect, now, out)
        else {
            return;
        };
        let joining = Box::new(Joining {
            connect_deadline: self.connect_deadline(now),
            client_id: client_id.clone(),
            clean_session: connect.clean_session,
            level: connect.level,
            keep_alive_secs: connect.keep_alive_secs,
            // The will outlives the read buffer it was decoded from: it gets its own copy.
            will: connect.will.map(|w| {
                Box::new(LastWill {
                    topic: w.topic.detached(),
                    payload: Bytes::copy_from_slice(&w.payload),
                    qos: w.qos,
                    retain: w.retain,
                    properties: w.properties.map(|p| Box::new(p.detached())),
                })
            }),
            early: Vec::new(),
            early_behind: 0,
            v5: connect.level.is_v5().then(|| {
                let props = props(&connect.properties);
                let limits = &self.settings.v5;
                let session_expiry = granted_session_expiry(
                    props.session_expiry_interval,
                    limits.max_session_expiry_secs,
                );
                Box::new(JoiningV5 {
                    limits: ClientLimits::of(props),
                    session_expiry,
                    expiry_capped: props.session_expiry_interval.unwrap_or(0) != session_expiry,
                    assigned_id: generated,
                    server_keep_alive: server_keep_alive(
                        connect.keep_alive_secs,
                        limits.max_keepalive_secs,
                    ),
                    auth: None,
                })
            }),
        });
        let info = ConnectInfo {
            client_id,
            username,
            password,
            peer: self.peer.to_string(),
            clean_session: connect.clean_session,
            keep_alive_secs: connect.keep_alive_secs,
            level: connect.level,
            properties: connect.properties.map(|p| Box::new(p.detached())),
            certificate_identity,
        };
        if let Some(method) = props(&info.properties).authentication_method.clone() {
            return self.start_auth_exchange(joining, info, method, now, out);
        }
        self.authenticate(joining, info, out);
    }

    /// The user name and password the CONNECT is judged by, and whether the user name is a TLS client
    /// certificate's: with `use_identity_as_username` the certificate's identity replaces what the client
    /// sent, and a client whose certificate names nobody is refused as Mosquitto refuses it (0x04 / 0x86).
    /// `None` once refused.
    #[allow(clippy::type_complexity)]
    fn credentials(
        &mut self,
        connect: &Connect,
        now: Now,
        out: &mut Outputs,
    ) -> Option<(Option<ByteString>, Option<Bytes>, bool)> {
        let identity = match &mut self.stage {
            Stage::AwaitingConnect { identity, .. } => identity.take(),
            _ => None,
        };
        match identity.map(|name| *name) {
            None => Some((connect.username.clone(), connect.password.clone(), false)),
            Some(CertificateName::Name(name)) => Some((Some(name), None, true)),
            Some(CertificateName::Missing) => {
                log::warn!(
                    "client {:?} from {}: its TLS certificate names nobody (no CN, DNS or email name) to \
                     take as the user name; CONNACK bad user name or password",
                    connect.client_id,
                    self.peer
                );
                self.refuse(ConnectReturnCode::BadUsernameOrPassword, now, out);
                None
            }
        }
    }

    /// Asks the authenticate hook, when one runs, else registers at once.
    pub(super) fn authenticate(
        &mut self,
        joining: Box<Joining>,
        info: ConnectInfo,
        out: &mut Outputs,
    ) {
        if self.settings.authenticate {
            out.requests.push(Request::Authenticate(info));
            self.stage = Stage::Authenticating(joining);
        } else {
            self.register(joining, out);
        }
    }

    pub(super) fn on_authenticated(
        &mut self,
        verdict: Result<(), ReasonCode>,
        now: Now,
        out: &mut Outputs,
    ) {
        let joining = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Authenticating(joining) => joining,
            other => {
                self.stage = other;
                return;
            }
        };
        match verdict {
            Ok(()) => self.register(joining, out),
            Err(code) => {
                // Success is no way to refuse: it reads as not authorised.
                let code = match code {
                    ReasonCode::SUCCESS => ReasonCode::NOT_AUTHORIZED,
                    code => code,
                };
                log::warn!(
                    "client {} from {}: refused by the authenticate hook with {code:?}",
                    joining.client_id,
                    self.peer
                );
                self.refuse(code, now, out);
            }
        }
    }

    fn register(&mut self, joining: Box<Joining>, out: &mut Outputs) {
        out.requests.push(Request::Register {
            client_id: joining.client_id.clone(),
            clean_session: joining.clean_session,
            session_expiry: joining.v5.as_ref().map(|v5| v5.session_expiry),
            credit: self.settings.credit,
        });
        self.stage = Stage::Registering(joining);
    }

    /// The router registered the session: the store work CONNACK waits for follows [MQTT-3.1.2-4..6].
    pub(super) fn on_registered(
        &mut self,
        result: Result<Registration, ()>,
        now: Now,
        out: &mut Outputs,
    ) {
        let joining = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Registering(joining) => joining,
            other => {
                self.stage = other;
                return;
            }
        };
        let Ok(registration) = result else {
            log::error!(
                "client {} from {}: cannot attach: router unavailable",
                joining.client_id,
                self.peer
            );
            self.refuse(ConnectReturnCode::ServerUnavailable, now, out);
            return;
        };
        let client_id = joining.client_id.clone();
        let mut ops = Vec::new();
        if joining.clean_session && registration.had_persistent {
            // [MQTT-3.1.2-6]: a clean session (Clean Start in 5.0) discards any stored state.
            ops.push(StoreOp::DeleteSession {
                client_id: client_id.clone(),
            });
        }
        let session_expiry = joining.v5.as_ref().map(|v5| v5.session_expiry);
        if registration.session_present {
            if session_expiry.is_some() {
                // The expiry of this CONNECT replaces the stored one (section 3.1.2.11.2).
                out.store.push(StoreOp::SetSessionExpiry {
                    client_id: client_id.clone(),
                    session_expiry,
                });
            }
            out.store.push(StoreOp::TouchSession {
                client_id,
                now_ms: now.wall_ms,
            });
        } else if joining.outlives_connection(false) {
            // Durability contract, point 2: a new persistent session exists in the store before CONNACK.
            ops.push(StoreOp::CreateSession {
                client_id: client_id.clone(),
                level: joining.level,
                now_ms: now.wall_ms,
            });
            if session_expiry.is_some() {
                ops.push(StoreOp::SetSessionExpiry {
                    client_id,
                    session_expiry,
                });
            }
        }
        let ops = (!ops.is_empty()).then_some(ops);
        let commit = ops.map(|ops| {
            let ticket = self.new_ticket();
            out.requests.push(Request::Store { ops, ticket });
            ticket
        });
        let resumed = registration.session_present;
        if resumed {
            out.requests.push(Request::ReadIncomingQos2);
        }
        self.stage = Stage::Restoring(Box::new(Restoring {
            joining: *joining,
            registration,
            commit,
            incoming_qos2: (!resumed).then(Vec::new),
        }));
        self.connect_if_restored(now, out);
    }

    /// A commit finished: one CONNACK waits for, or one the answers of a connected session wait for.
    pub(super) fn on_committed(
        &mut self,
        ticket: Ticket,
        result: Result<(), StoreError>,
        now: Now,
        out: &mut Outputs,
    ) {
        match &mut self.stage {
            Stage::Restoring(restoring) if restoring.commit == Some(ticket) => {
                if let Err(e) = result {
                    self.restore_failed(e, now, out);
                    return;
                }
                restoring.commit = None;
                self.connect_if_restored(now, out);
            }
            Stage::Connected(_) => self.on_answer_committed(ticket, result, now, out),
            _ => {}
        }
    }

    pub(super) fn on_incoming_qos2(
        &mut self,
        result: Result<Vec<PacketId>, StoreError>,
        now: Now,
        out: &mut Outputs,
    ) {
        let Stage::Restoring(restoring) = &mut self.stage else {
            return;
        };
        match result {
            Ok(ids) => restoring.incoming_qos2 = Some(ids),
            Err(e) => return self.restore_failed(e, now, out),
        }
        self.connect_if_restored(now, out);
    }

    fn restore_failed(&mut self, error: StoreError, now: Now, out: &mut Outputs) {
        log::error!(
            "client {} from {}: cannot attach: {error}",
            self.label(),
            self.peer
        );
        self.refuse(ConnectReturnCode::ServerUnavailable, now, out);
    }

    fn connect_if_restored(&mut self, now: Now, out: &mut Outputs) {
        let restoring = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Restoring(r) if r.commit.is_none() && r.incoming_qos2.is_some() => r,
            other => {
                self.stage = other;
                return;
            }
        };
        self.connected(*restoring, now, out);
    }

    /// CONNACK: the session is attached; what arrived meanwhile is handled now.
    fn connected(&mut self, restoring: Restoring, now: Now, out: &mut Outputs) {
        let Restoring {
            joining,
            registration,
            incoming_qos2,
            ..
        } = restoring;
        let persistent = joining.outlives_connection(registration.session_present);
        log::info!(
            "client {} connected from {} ({:?}, keepalive {}s, session present {})",
            joining.client_id,
            self.peer,
            joining.level,
            joining.keep_alive_secs,
            registration.session_present
        );
        let keep_alive = joining
            .v5
            .as_ref()
            .and_then(|v5| v5.server_keep_alive)
            .unwrap_or(joining.keep_alive_secs);
        let silence_limit = silence_limit(keep_alive);
        if let Some(limit) = silence_limit {
            out.timer = Some(now.instant + limit);
        }
        let stored = persistent
            .then(|| StoredFeed::resume(registration.queue_head.max(joining.early_behind)));
        let properties = joining.v5.as_ref().map(|v5| {
            let mut p = connack_properties(
                &self.settings.v5,
                v5.assigned_id.then_some(&joining.client_id),
                v5.server_keep_alive,
                v5.expiry_capped.then_some(v5.session_expiry),
            );
            if let Some(auth) = &v5.auth {
                // [MQTT-4.12.0-5]: CONNACK names the method; it carries the hook's last data.
                p.authentication_method = Some(auth.method.clone());
                p.authentication_data = auth.last_data.clone();
            }
            Box::new(p)
        });
        if let Some(rights) = self.rights.as_mut() {
            // What the resumed session's filters match is screened by what its rights know of them.
            let filters: Vec<&str> = registration
                .subscriptions
                .iter()
                .map(|f| crate::protocol::share::matched_filter(f.as_str()))
                .collect();
            rights.subscribed(&filters);
        }
        self.stage = Stage::Connected(Box::new(Attached {
            client_id: joining.client_id,
            persistent,
            silence_limit,
            last_packet: now.instant,
            will: joining.will,
            outbound: Outbound::new(match &joining.v5 {
                // [MQTT-3.3.4-9 in 5.0]: never more unacknowledged QoS 1/2 PUBLISHes than the client allows.
                Some(v5) => self
                    .settings
                    .max_inflight
                    .min(usize::from(v5.limits.receive_maximum)),
                None => self.settings.max_inflight,
            }),
            acks: AckQueue::new(),
            incoming_qos2: incoming_qos2.unwrap_or_default().into_iter().collect(),
            stored: stored.map(Box::new),
            credit: Credit::new(self.settings.credit),
            batch: OpenBatch::default(),
            awaiting: None,
            held: false,
            router_busy: false,
            retained_after: None,
            hooked_unacked: None,
            dropped: 0,
            subscribed: (self.settings.limits.max_subscriptions_per_client > 0)
                .then(|| Box::new(registration.subscriptions.into_iter().collect())),
            v5: joining.v5.as_ref().map(|v5| V5Session {
                outbound_aliases: OutboundAliases::default(),
                limits: v5.limits.clone(),
                inbound_aliases: InboundAliases::default(),
                session_expiry: v5.session_expiry,
                auth: v5.auth.clone(),
            }),
        }));
        out.emits.push(Emit::Control(Packet::ConnAck(ConnAck {
            session_present: registration.session_present,
            code: ReasonCode::SUCCESS,
            properties,
        })));
        if self.settings.notify {
            out.requests.push(Request::Notify(Notification::Connected {
                session_present: registration.session_present,
            }));
        }
        if !joining.early.is_empty() {
            self.on_deliveries(joining.early, out);
        }
        self.drain(now, out);
    }

    /// Answers a CONNECT with a refusing CONNACK and closes [MQTT-3.2.2-5].
    pub(super) fn refuse(&mut self, code: impl Into<ReasonCode>, now: Now, out: &mut Outputs) {
        let code = code.into();
        // [MQTT-3.1.2-29 in 5.0]: a Reason String only for a client that did not turn problem information off.
        let properties = (self.level.is_v5() && self.problem_information).then(|| {
            Box::new(crate::codec::Properties {
                reason_string: Some(code.name().into()),
                ..Default::default()
            })
        });
        out.emits.push(Emit::Control(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties,
        })));
        self.close(CloseReason::Abnormal, now, out);
    }

    /// The timer the core asked for has come: the CONNECT deadline, or a keepalive check.
    pub(super) fn on_timer(&mut self, now: Now, out: &mut Outputs) {
        match &self.stage {
            Stage::AwaitingConnect { deadline, .. } if now.instant >= *deadline => {
                out.limits.hit(crate::protocol::Limit::ConnectTimeout);
                log::debug!(
                    "{}: no CONNECT within {:?}, closing",
                    self.peer,
                    self.settings.connect_timeout
                );
                self.close(CloseReason::Abnormal, now, out);
            }
            Stage::AwaitingConnect { deadline, .. } => out.timer = Some(*deadline),
            // A client in an enhanced authentication exchange keeps the deadline set at the accept: it cannot
            // hold its connection open by never sending its next AUTH.
            Stage::Exchanging(joining) if now.instant >= joining.connect_deadline => {
                out.limits.hit(crate::protocol::Limit::ConnectTimeout);
                self.close(CloseReason::Abnormal, now, out);
            }
            Stage::Exchanging(joining) => out.timer = Some(joining.connect_deadline),
            Stage::Connected(attached) => {
                let Some(limit) = attached.silence_limit else {
                    return;
                };
                let idle = now.instant.saturating_duration_since(attached.last_packet);
                if idle >= limit {
                    self.violation(
                        ReasonCode::KEEP_ALIVE_TIMEOUT,
                        format_args!("[MQTT-3.1.2-24] no packet within {}s", limit.as_secs_f32()),
                        now,
                        out,
                    );
                } else {
                    out.timer = Some(attached.last_packet + limit);
                }
            }
            _ => {}
        }
    }
}

/// How long a client with this keepalive may stay silent: one and a half keepalive periods
/// [MQTT-3.1.2-24]; `None` when 0 turns the keepalive off.
fn silence_limit(keep_alive_secs: u16) -> Option<Duration> {
    let keep_alive = Duration::from_secs(keep_alive_secs.into());
    (keep_alive_secs > 0).then(|| keep_alive + keep_alive / 2)
}

/// Deliveries that arrive before CONNACK wait for it (the router registered the session already).
impl Joining {
    pub(super) fn hold_early(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            if let Some(seq) = delivery.seq {
                self.early_behind = self.early_behind.max(seq);
            }
            self.early.push(delivery);
        }
    }
}

impl Connection {
    /// The deadline set at the accept for CONNECT.
    fn connect_deadline(&self, now: Now) -> Instant {
        match self.stage {
            Stage::AwaitingConnect { deadline, .. } => deadline,
            _ => now.instant,
        }
    }

    /// Refuses a CONNECT over `limit` as Mosquitto does: 0x02 Identifier rejected before 5.0, whose CONNACK
    /// has no better code; 0x85 Client Identifier not valid in 5.0 (a keepalive is never refused there).
    fn refuse_over_limit(&mut self, limit: crate::protocol::Limit, now: Now, out: &mut Outputs) {
        out.limits.hit(limit);
        log::debug!("{}: CONNECT over {}", self.peer, limit.name());
        self.refuse(ConnectReturnCode::IdentifierRejected, now, out);
    }

    /// The limits a CONNECT must keep: `max_client_id_len_bytes` for every level, and `max_keepalive_secs` for
    /// MQTT 3.1 and 3.1.1, whose CONNACK cannot tell the client another keepalive (5.0 gets Server Keep
    /// Alive instead). A keepalive of 0 asks for none at all, more than any maximum below 65535.
    fn connect_within_limits(&self, connect: &Connect) -> Result<(), crate::protocol::Limit> {
        use crate::protocol::Limit;
        if !self
            .settings
            .limits
            .client_id_ok(connect.client_id.as_str())
        {
            return Err(Limit::ClientIdLength);
        }
        let max = self.settings.v5.max_keepalive_secs;
        let asked = connect.keep_alive_secs;
        let too_long = asked > max || (asked == 0 && max < u16::MAX);
        if !connect.level.is_v5() && too_long {
            return Err(Limit::Keepalive);
        }
        Ok(())
    }
}
