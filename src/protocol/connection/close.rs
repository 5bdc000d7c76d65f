//! The end of a connection: violations, the broker ending it, and what a close does (the will, the last-seen
//! time, leaving the router, telling the hooks). After the close nothing the client sent is acted on.

use super::*;
use crate::codec::{ReasonCode, ReasonOnly};
use crate::message::Message;
use crate::protocol::io::{CloseReason, Emit, EndCause, Notification, Request};
use std::fmt::Display;

impl Connection {
    /// Ends the connection because the client broke a rule; logged with who and which rule. An MQTT 5.0
    /// client that has its CONNACK is told why in a DISCONNECT first (section 4.13.1).
    pub(super) fn violation(
        &mut self,
        reason: ReasonCode,
        rule: impl Display,
        now: Now,
        out: &mut Outputs,
    ) {
        log::warn!(
            "client {} from {}: {rule}; closing the connection ({reason})",
            self.label(),
            self.peer
        );
        self.disconnect_with(reason, out);
        self.close(CloseReason::Abnormal, now, out);
    }

    /// Tells an MQTT 5.0 client why the server closes its connection; only after CONNACK [MQTT-3.14.0-1].
    pub(super) fn disconnect_with(&mut self, reason: ReasonCode, out: &mut Outputs) {
        if self.level.is_v5() && matches!(self.stage, Stage::Connected(_)) && !self.closed {
            out.emits
                .push(Emit::Control(Packet::Disconnect(ReasonOnly::new(reason))));
        }
    }

    /// The broker ends the session.
    pub(super) fn on_end(&mut self, cause: EndCause, now: Now, out: &mut Outputs) {
        let reason = match cause {
            EndCause::TakenOver => {
                log::info!(
                    "client {} from {}: taken over by a new connection",
                    self.label(),
                    self.peer
                );
                self.disconnect_with(ReasonCode::SESSION_TAKEN_OVER, out);
                CloseReason::Abnormal
            }
            EndCause::Deleted => {
                log::info!(
                    "client {} from {}: session deleted by an operator",
                    self.label(),
                    self.peer
                );
                self.disconnect_with(ReasonCode(0x98), out);
                CloseReason::Abnormal
            }
            EndCause::Shutdown => {
                self.disconnect_with(ReasonCode::SERVER_SHUTTING_DOWN, out);
                CloseReason::Shutdown
            }
            EndCause::Detached => CloseReason::Disconnect,
        };
        self.close(reason, now, out);
    }

    /// Closes once: packets still waiting are dropped [MQTT-3.14.4-2], and a registered session leaves the
    /// router.
    pub(super) fn close(&mut self, reason: CloseReason, now: Now, out: &mut Outputs) {
        if self.closed {
            return;
        }
        self.closed = true;
        out.close = Some(reason);
        self.backlog.clear();
        match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Registering(_) | Stage::Restoring(_) => out.requests.push(Request::Detach),
            Stage::Connected(attached) => self.detach(*attached, reason, now, out),
            Stage::AwaitingConnect { .. }
            | Stage::AuthStepping(_)
            | Stage::Exchanging(_)
            | Stage::Authenticating(_)
            | Stage::Closed => {}
        }
    }

    /// Leaves the router: publishes the will unless the client said DISCONNECT or the broker stops, and
    /// records the last-seen time of a persistent session.
    fn detach(&mut self, mut attached: Attached, reason: CloseReason, now: Now, out: &mut Outputs) {
        // [MQTT-4.8.2]: what a shared subscription gave this session and it did not acknowledge goes to
        // another member of the group (a stored copy stays in this session's queue).
        let shared = attached.outbound.take_shared();
        if !shared.is_empty() {
            out.requests.push(Request::HandBack(shared));
        }
        if reason == CloseReason::Abnormal {
            // The will is checked against the client's rights when it is published, as any publish is.
            let will = attached.will.filter(|will| {
                self.rights
                    .as_mut()
                    .is_none_or(|rights| rights.may_publish(will.topic.as_str()))
            });
            if let Some(will) = will {
                // A delay only means something for a session that outlives its connection; one that ends
                // now publishes its will now, as the session's end comes first.
                let outlives = attached.v5.as_ref().is_some_and(|v5| v5.session_expiry > 0);
                let delay_secs = match &will.properties {
                    Some(p) if outlives => p.will_delay_interval.unwrap_or(0),
                    _ => 0,
                };
                // [MQTT-3.1.2-8]: the will is published when the connection ends without DISCONNECT.
                let message = Arc::new(Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                    arrived_at_ms: now.wall_ms,
                    // The Will Delay Interval belongs to the will, not to the PUBLISH (section 3.1.3.2).
                    // Will properties were checked when CONNECT was decoded, so they always make PUBLISH
                    // properties.
                    properties: will.properties.as_deref().and_then(|p| {
                        crate::codec::PublishProperties::message_of(p)
                            .ok()
                            .flatten()
                    }),
                });
                out.requests.push(Request::PublishWill {
                    message,
                    delay_secs,
                });
            }
        }
        if attached.persistent {
            out.store.push(StoreOp::TouchSession {
                client_id: attached.client_id.clone(),
                now_ms: now.wall_ms,
            });
        }
        out.requests.push(Request::Detach);
        if self.settings.notify {
            out.requests
                .push(Request::Notify(Notification::Disconnected(reason)));
        }
        log::info!(
            "client {} from {} disconnected ({reason})",
            attached.client_id,
            self.peer
        );
    }
}
