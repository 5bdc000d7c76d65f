//! Hooks: the embedding application's say over what clients may do, and its view of what they do.
//! Owns the trait and the data handed to it; sessions call it (each on its own), the router never does.

use crate::codec::{ConnectReturnCode, Publish, QoS, ReasonCode};
use crate::message::Message;
pub use crate::protocol::TopicRights;
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
/// [`BrokerHandle::publish`](crate::BrokerHandle::publish) do not pass through hooks; will messages are
/// checked against [`Hooks::topic_rights`] only.
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

    /// Rights over topics that the broker checks itself, synchronously: for each message the client
    /// publishes (and its will), each message about to be sent to it, and each filter it subscribes to. For
    /// rules held in memory, like the ACL file's; an implementation caches its answers per topic, since it is
    /// asked once per message. Asked once a client is authenticated; `None` (the default) adds no rule.
    /// Refusals are answered as `authorize_publish` and `authorize_subscribe` ones are, and a message the
    /// client may not read is not sent (a stored one leaves its queue).
    fn topic_rights(&self, client: &ClientInfo) -> Option<Box<dyn TopicRights>> {
        let _ = client;
        None
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

/// Two sets of hooks run as one: `first` and then `then`. A CONNECT, a publish or a subscription goes ahead
/// only when both allow it (`then` is not asked once `first` refuses); `on_message_publish` passes the message
/// through `first`, then `then`; an enhanced authentication method is `first`'s if it speaks it, else
/// `then`'s; notifications reach both. The broker uses it to run its password file before the
/// application's hooks; an application can use it to combine its own. Topic rights of both must allow.
pub struct Chain {
    first: std::sync::Arc<dyn Hooks>,
    then: std::sync::Arc<dyn Hooks>,
}

impl Chain {
    /// `first`, then `then`.
    pub fn new(first: std::sync::Arc<dyn Hooks>, then: std::sync::Arc<dyn Hooks>) -> Chain {
        Chain { first, then }
    }
}

/// Two notifications, the second once the first is done.
fn in_turn<'a>(first: HookFuture<'a, ()>, then: HookFuture<'a, ()>) -> HookFuture<'a, ()> {
    Box::pin(async move {
        first.await;
        then.await;
    })
}

impl Hooks for Chain {
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        Box::pin(async move {
            match self.first.authenticate(connect).await {
                AuthDecision::Allow => self.then.authenticate(connect).await,
                refused => refused,
            }
        })
    }

    fn authenticate_step<'a>(
        &'a self,
        connect: &'a ConnectInfo,
        method: &'a str,
        data: Option<&'a [u8]>,
    ) -> HookFuture<'a, AuthStep> {
        Box::pin(async move {
            match self.first.authenticate_step(connect, method, data).await {
                AuthStep::Unsupported => self.then.authenticate_step(connect, method, data).await,
                step => step,
            }
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: &'a Message,
    ) -> HookFuture<'a, bool> {
        Box::pin(async move {
            self.first.authorize_publish(client, message).await
                && self.then.authorize_publish(client, message).await
        })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        filter: &'a TopicFilter,
        qos: QoS,
    ) -> HookFuture<'a, bool> {
        Box::pin(async move {
            self.first.authorize_subscribe(client, filter, qos).await
                && self.then.authorize_subscribe(client, filter, qos).await
        })
    }

    fn topic_rights(&self, client: &ClientInfo) -> Option<Box<dyn TopicRights>> {
        match (
            self.first.topic_rights(client),
            self.then.topic_rights(client),
        ) {
            (Some(first), Some(then)) => {
                Some(Box::new(crate::protocol::rights::BothRights(first, then)))
            }
            (first, then) => first.or(then),
        }
    }

    fn on_message_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: Message,
    ) -> HookFuture<'a, Option<Message>> {
        Box::pin(async move {
            match self.first.on_message_publish(client, message).await {
                Some(message) => self.then.on_message_publish(client, message).await,
                None => None,
            }
        })
    }

    fn on_connected<'a>(
        &'a self,
        client: &'a ClientInfo,
        session_present: bool,
    ) -> HookFuture<'a, ()> {
        in_turn(
            self.first.on_connected(client, session_present),
            self.then.on_connected(client, session_present),
        )
    }

    fn on_disconnected<'a>(
        &'a self,
        client: &'a ClientInfo,
        reason: DisconnectReason,
    ) -> HookFuture<'a, ()> {
        in_turn(
            self.first.on_disconnected(client, reason),
            self.then.on_disconnected(client, reason),
        )
    }

    fn on_message_delivered<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        in_turn(
            self.first.on_message_delivered(client, publish),
            self.then.on_message_delivered(client, publish),
        )
    }

    fn on_message_acked<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        in_turn(
            self.first.on_message_acked(client, publish),
            self.then.on_message_acked(client, publish),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ClientId, ProtocolLevel};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Hooks with fixed answers that count how often they are asked.
    struct Fixed {
        auth: AuthDecision,
        subscribe: bool,
        asked: AtomicUsize,
    }

    impl Fixed {
        fn new(auth: AuthDecision, subscribe: bool) -> Arc<Fixed> {
            Arc::new(Fixed {
                auth,
                subscribe,
                asked: AtomicUsize::new(0),
            })
        }
    }

    impl Hooks for Fixed {
        fn authenticate<'a>(&'a self, _: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            ready(self.auth)
        }

        fn authorize_subscribe<'a>(
            &'a self,
            _: &'a ClientInfo,
            _: &'a TopicFilter,
            _: QoS,
        ) -> HookFuture<'a, bool> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            ready(self.subscribe)
        }
    }

    fn connect() -> ConnectInfo {
        ConnectInfo {
            client_id: ClientId::new("c".to_owned()),
            username: Some("alice".into()),
            password: None,
            peer: "127.0.0.1:1".to_owned(),
            clean_session: true,
            keep_alive_secs: 30,
            level: ProtocolLevel::V311,
            properties: None,
            certificate_identity: false,
        }
    }

    #[tokio::test]
    async fn a_chain_goes_ahead_only_when_both_allow_and_stops_at_the_first_no() {
        let refuse = AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
        let filter = TopicFilter::new("a/#".to_owned()).unwrap();
        let client = connect().client();

        let (first, then) = (
            Fixed::new(refuse, false),
            Fixed::new(AuthDecision::Allow, true),
        );
        let chain = Chain::new(first.clone(), then.clone());
        assert_eq!(chain.authenticate(&connect()).await, refuse);
        assert!(
            !chain
                .authorize_subscribe(&client, &filter, QoS::AtMostOnce)
                .await
        );
        assert_eq!(then.asked.load(Ordering::SeqCst), 0, "not asked after a no");

        let denied = AuthDecision::Deny(ConnectReturnCode::NotAuthorized);
        let (first, then) = (
            Fixed::new(AuthDecision::Allow, true),
            Fixed::new(denied, false),
        );
        let chain = Chain::new(first.clone(), then.clone());
        assert_eq!(chain.authenticate(&connect()).await, denied);
        assert!(
            !chain
                .authorize_subscribe(&client, &filter, QoS::AtMostOnce)
                .await
        );
        assert_eq!(then.asked.load(Ordering::SeqCst), 2);

        let both = Chain::new(
            Fixed::new(AuthDecision::Allow, true),
            Fixed::new(AuthDecision::Allow, true),
        );
        assert_eq!(both.authenticate(&connect()).await, AuthDecision::Allow);
        assert!(
            both.authorize_subscribe(&client, &filter, QoS::AtMostOnce)
                .await
        );
    }

    #[test]
    fn a_chain_gives_topic_rights_that_both_sides_must_allow() {
        use crate::auth::{AclAuth, AclFile};
        let acl = |rules: &str| Arc::new(AclAuth::new(AclFile::parse(rules).unwrap()));
        let client = ConnectInfo {
            username: None,
            ..connect()
        }
        .client();
        let chain = Chain::new(acl("topic readwrite a/#\n"), acl("topic readwrite a/b\n"));
        let mut rights = chain.topic_rights(&client).expect("both give rights");
        assert!(rights.may_publish("a/b"));
        assert!(!rights.may_publish("a/c"), "the second side refuses");
        assert!(!rights.may_read("x"), "both refuse");
        let one_sided = Chain::new(acl("topic read x\n"), Fixed::new(AuthDecision::Allow, true));
        let mut rights = one_sided
            .topic_rights(&client)
            .expect("the first side's rights");
        assert!(rights.may_read("x"));
        assert!(!rights.may_read("y"));
        let none = Chain::new(
            Fixed::new(AuthDecision::Allow, true),
            Fixed::new(AuthDecision::Allow, true),
        );
        assert!(none.topic_rights(&client).is_none());
    }

    /// Hooks that write their name into a shared log when told of a connection or its end.
    struct Told {
        name: &'static str,
        log: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Hooks for Told {
        fn on_connected<'a>(&'a self, _: &'a ClientInfo, present: bool) -> HookFuture<'a, ()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} connected {present}", self.name));
            ready(())
        }

        fn on_disconnected<'a>(
            &'a self,
            _: &'a ClientInfo,
            reason: DisconnectReason,
        ) -> HookFuture<'a, ()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} ended {reason:?}", self.name));
            ready(())
        }
    }

    #[tokio::test]
    async fn a_chain_tells_both_sides_first_then_second() {
        let log = Arc::default();
        let told = |name| {
            Arc::new(Told {
                name,
                log: Arc::clone(&log),
            })
        };
        let chain = Chain::new(told("first"), told("then"));
        let client = connect().client();
        chain.on_connected(&client, true).await;
        chain
            .on_disconnected(&client, DisconnectReason::Client)
            .await;
        assert_eq!(
            *log.lock().unwrap(),
            [
                "first connected true",
                "then connected true",
                "first ended Client",
                "then ended Client"
            ]
        );
    }
}
