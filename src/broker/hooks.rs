//! Hooks: the embedding application's say over what clients may do, and its view of what they do.
//! Owns the trait and the data handed to it; sessions call it (each on its own), the router never does.

use crate::codec::{ConnectReturnCode, Publish, QoS, ReasonCode};
use crate::message::Message;
use crate::topic::TopicFilter;
use std::future::Future;
use std::pin::Pin;

/// The future a hook returns; it may borrow the hook and its arguments.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A hook future that is ready at once, for hooks that need not wait.
pub fn ready<'a, T: Send + 'a>(value: T) -> HookFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

// What a client sent in CONNECT and who it is afterwards: the connection core fills them in, so they are
// defined beside it.
pub use crate::protocol::io::{ClientInfo, ConnectInfo};

/// The answer of [`Hooks::authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// The connection goes ahead.
    Allow,
    /// The connection is refused with this CONNACK return code (`Accepted` is read as `NotAuthorized`).
    Deny(ConnectReturnCode),
    /// The connection is refused with this MQTT 5.0 CONNACK reason code (e.g. 0x8A Banned, 0x9F Connection
    /// rate exceeded); a 3.1.1 or 3.1 client gets the closest return code (`SUCCESS` reads as 0x87).
    Refuse(ReasonCode),
}

// One step of an MQTT 5.0 enhanced authentication, as [`Hooks::authenticate_step`] decides it.
pub use crate::protocol::io::AuthStep;

/// Why a connection ended, for [`Hooks::on_disconnected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    Client,
    /// The broker is shutting down.
    Shutdown,
    /// The network connection was lost or closed by the broker (violation, keepalive, takeover).
    Abnormal,
}

/// Callbacks an application registers on the [`Broker`](crate::Broker) builder; every method has a default
/// that allows everything and observes nothing.
///
/// Hooks run on the session of the client concerned: while `authenticate`, `authorize_*` or
/// `on_message_publish` are pending, that client's session waits (keeping its packets in order) and every
/// other client goes on. The notification hooks (`on_connected`, `on_disconnected`, `on_message_delivered`,
/// `on_message_acked`) run detached and delay nothing. Messages published through
/// [`BrokerHandle::publish`](crate::BrokerHandle::publish) and will messages do not pass through hooks.
///
/// ```
/// use harbormq::broker::hooks::{ready, AuthDecision, ConnectInfo, HookFuture, Hooks};
/// use harbormq::codec::ConnectReturnCode;
///
/// struct OnlyAlice;
///
/// impl Hooks for OnlyAlice {
///     fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
///         ready(match connect.username.as_deref() {
///             Some("alice") => AuthDecision::Allow,
///             _ => AuthDecision::Deny(ConnectReturnCode::BadUsernameOrPassword),
///         })
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Decides whether a CONNECT is accepted; runs before the session is registered.
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        let _ = connect;
        ready(AuthDecision::Allow)
    }

    /// MQTT 5.0 enhanced authentication (section 4.12): one step of the exchange for the client's
    /// Authentication Method, given the Authentication Data it sent (in CONNECT, then in each AUTH). The
    /// default speaks no method, so such a CONNECT gets CONNACK 0x8C Bad authentication method. After
    /// `Success`, `authenticate` still runs. Called again for a re-authentication of a connected client.
    fn authenticate_step<'a>(
        &'a self,
        connect: &'a ConnectInfo,
        method: &'a str,
        data: Option<&'a [u8]>,
    ) -> HookFuture<'a, AuthStep> {
        let _ = (connect, method, data);
        ready(AuthStep::Unsupported)
    }

    /// Decides whether a client may publish this message; a denied message is logged and dropped, and
    /// acknowledged with 0x87 Not authorized to an MQTT 5.0 client (as usual to earlier ones, which cannot be
    /// told no). The message carries its MQTT 5.0 properties.
    fn authorize_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: &'a Message,
    ) -> HookFuture<'a, bool> {
        let _ = (client, message);
        ready(true)
    }

    /// Decides whether a client may subscribe to this filter; a denied filter gets 0x87 in SUBACK (0x80 before
    /// MQTT 5.0).
    fn authorize_subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        filter: &'a TopicFilter,
        qos: QoS,
    ) -> HookFuture<'a, bool> {
        let _ = (client, filter, qos);
        ready(true)
    }

    /// Sees every message an authorized client publishes before it is routed: returns it (possibly with a
    /// new topic or payload) or `None` to drop it.
    fn on_message_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: Message,
    ) -> HookFuture<'a, Option<Message>> {
        let _ = client;
        ready(Some(message))
    }

    /// A client was accepted and CONNACK sent.
    fn on_connected<'a>(
        &'a self,
        client: &'a ClientInfo,
        session_present: bool,
    ) -> HookFuture<'a, ()> {
        let _ = (client, session_present);
        ready(())
    }

    /// A connected client's connection ended.
    fn on_disconnected<'a>(
        &'a self,
        client: &'a ClientInfo,
        reason: DisconnectReason,
    ) -> HookFuture<'a, ()> {
        let _ = (client, reason);
        ready(())
    }

    /// A PUBLISH was written to a client (again, when it is a retransmission).
    fn on_message_delivered<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        let _ = (client, publish);
        ready(())
    }

    /// A client acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBREC) message sent to it.
    fn on_message_acked<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        let _ = (client, publish);
        ready(())
    }
}
