//! MQTT 5.0 enhanced authentication (section 4.12): the AUTH exchange between CONNECT and CONNACK, and
//! re-authentication of a connected client. The hooks decide each step; the core carries the packets and
//! keeps the order (nothing but AUTH is read before CONNACK).

use super::*;
use crate::codec::{props, Properties, ReasonCode, ReasonOnly};
use crate::protocol::io::{AuthStep, ConnectInfo, Emit, Request};
use bytes::Bytes;
use bytestring::ByteString;

impl Connection {
    /// A CONNECT names an authentication method: without hooks it is refused with 0x8C, else the hook takes
    /// the first step with the CONNECT's Authentication Data.
    pub(super) fn start_auth_exchange(
        &mut self,
        mut joining: Box<Joining>,
        info: ConnectInfo,
        method: ByteString,
        now: Now,
        out: &mut Outputs,
    ) {
        if !self.settings.notify {
            log::warn!(
                "client {} from {}: authentication method {method:?} not supported; CONNACK 0x8C",
                info.client_id,
                self.peer
            );
            return self.refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, now, out);
        }
        let data = props(&info.properties).authentication_data.clone();
        out.requests.push(Request::AuthStep {
            connect: info.clone(),
            method: method.clone(),
            data,
        });
        if let Some(v5) = joining.v5.as_deref_mut() {
            v5.auth = Some(Box::new(AuthState {
                method,
                info,
                last_data: None,
                again: false,
            }));
        }
        self.stage = Stage::AuthStepping(joining);
    }

    /// A packet while the exchange waits for the client's AUTH: only AUTH 0x18 with the same method goes on
    /// (section 4.12); anything else is a protocol error, answered with CONNACK 0x82.
    pub(super) fn on_exchange_item(
        &mut self,
        item: Result<Packet, DecodeError>,
        now: Now,
        out: &mut Outputs,
    ) {
        let joining = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Exchanging(joining) => joining,
            other => {
                self.stage = other;
                return;
            }
        };
        let Some(auth) = joining.v5.as_ref().and_then(|v5| v5.auth.as_deref()) else {
            return self.refuse(ReasonCode::PROTOCOL_ERROR, now, out);
        };
        let step = match item {
            Ok(Packet::Auth(a)) if a.reason == ReasonCode::CONTINUE_AUTHENTICATION => {
                let p = props(&a.properties);
                (p.authentication_method.as_ref() == Some(&auth.method))
                    .then(|| p.authentication_data.clone())
            }
            _ => None,
        };
        let Some(data) = step else {
            log::warn!(
                "client {} from {}: expected AUTH 0x18 with method {:?} (section 4.12); CONNACK 0x82",
                joining.client_id,
                self.peer,
                auth.method
            );
            return self.refuse(ReasonCode::PROTOCOL_ERROR, now, out);
        };
        out.requests.push(Request::AuthStep {
            connect: auth.info.clone(),
            method: auth.method.clone(),
            data,
        });
        self.stage = Stage::AuthStepping(joining);
    }

    /// The hook took a step: before CONNACK it continues the exchange, refuses, or lets the connection go on
    /// to the authenticate hook; for a connected client it answers the re-authentication.
    pub(super) fn on_auth_stepped(&mut self, step: AuthStep, now: Now, out: &mut Outputs) {
        if let Stage::Connected(_) = &self.stage {
            return self.on_reauth_stepped(step, now, out);
        }
        let mut joining = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::AuthStepping(joining) => joining,
            other => {
                self.stage = other;
                return;
            }
        };
        let Some(auth) = joining.v5.as_mut().and_then(|v5| v5.auth.as_deref_mut()) else {
            return self.refuse(ReasonCode::PROTOCOL_ERROR, now, out);
        };
        match step {
            AuthStep::Continue(data) => {
                out.emits
                    .push(Emit::Control(auth_packet(&auth.method, Some(data))));
                self.stage = Stage::Exchanging(joining);
            }
            AuthStep::Success(data) => {
                auth.last_data = data;
                let info = auth.info.clone();
                self.authenticate(joining, info, out);
            }
            AuthStep::Fail(code) => {
                log::warn!(
                    "client {} from {}: enhanced authentication failed ({code})",
                    joining.client_id,
                    self.peer
                );
                let code = match code {
                    ReasonCode::SUCCESS => ReasonCode::NOT_AUTHORIZED,
                    code => code,
                };
                self.refuse(code, now, out);
            }
            AuthStep::Unsupported => {
                log::warn!(
                    "client {} from {}: no hook speaks authentication method {:?}; CONNACK 0x8C",
                    joining.client_id,
                    self.peer,
                    auth.method
                );
                self.refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, now, out);
            }
        }
    }

    /// AUTH from a connected client: 0x19 starts a re-authentication with the method it connected with,
    /// 0x18 continues one (section 4.12.1); anything else is a protocol error.
    pub(super) fn on_auth(&mut self, auth: ReasonOnly, now: Now, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let Some(state) = attached.v5.as_mut().and_then(|v5| v5.auth.as_deref_mut()) else {
            return self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method in CONNECT (section 4.12)",
                now,
                out,
            );
        };
        let p = props(&auth.properties);
        let expected = match state.again {
            false => ReasonCode::REAUTHENTICATE,
            true => ReasonCode::CONTINUE_AUTHENTICATION,
        };
        if auth.reason != expected || p.authentication_method.as_ref() != Some(&state.method) {
            return self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH out of turn or with another method (section 4.12.1)",
                now,
                out,
            );
        }
        state.again = true;
        out.requests.push(Request::AuthStep {
            connect: state.info.clone(),
            method: state.method.clone(),
            data: p.authentication_data.clone(),
        });
    }

    fn on_reauth_stepped(&mut self, step: AuthStep, now: Now, out: &mut Outputs) {
        let Stage::Connected(attached) = &mut self.stage else {
            return;
        };
        let Some(state) = attached.v5.as_mut().and_then(|v5| v5.auth.as_deref_mut()) else {
            return;
        };
        match step {
            AuthStep::Continue(data) => out
                .emits
                .push(Emit::Control(auth_packet(&state.method, Some(data)))),
            AuthStep::Success(data) => {
                state.again = false;
                let mut packet = auth_packet(&state.method, data);
                if let Packet::Auth(a) = &mut packet {
                    a.reason = ReasonCode::SUCCESS;
                }
                out.emits.push(Emit::Control(packet));
            }
            // Section 4.12.1: a failed re-authentication ends the connection with DISCONNECT.
            AuthStep::Fail(code) => self.violation(code, "re-authentication failed", now, out),
            AuthStep::Unsupported => self.violation(
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "re-authentication method no longer supported",
                now,
                out,
            ),
        }
    }
}

/// AUTH 0x18 Continue authentication with `method` and `data`.
fn auth_packet(method: &ByteString, data: Option<Bytes>) -> Packet {
    Packet::Auth(ReasonOnly {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Some(Box::new(Properties {
            authentication_method: Some(method.clone()),
            authentication_data: data,
            ..Properties::default()
        })),
    })
}
