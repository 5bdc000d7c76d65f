//! In-process clients on a [`BrokerHandle`](super::BrokerHandle): publishing straight into the router, and
//! subscriptions delivered as a bounded stream by a session that speaks to the connection core like any
//! network client. Owns the public types of that API; routing stays in the router.

use super::messages::*;
use super::router::Router;
use super::session::{AppSink, Session, SessionPeers, SubscribeOutcome};
use crate::codec::{ClientId, Connect, Packet, PacketId, ProtocolLevel, QoS, Subscribe};
use crate::error::Error;
use crate::message::{now_ms, Message};
use crate::store::StoreError;
use crate::topic::{TopicFilter, TopicName};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::{mpsc, oneshot};

/// Messages an in-process subscription holds for its reader before further ones wait or are dropped.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// A message received by an in-process subscription; the payload is shared, not copied.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    message: Arc<Message>,
    qos: QoS,
    retain: bool,
}

impl ReceivedMessage {
    /// A delivery of `message` at `qos`, with `retain` as sent.
    pub(crate) fn new(message: Arc<Message>, qos: QoS, retain: bool) -> Self {
        ReceivedMessage {
            message,
            qos,
            retain,
        }
    }

    /// The topic the message was published to.
    pub fn topic(&self) -> &TopicName {
        &self.message.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// The QoS of this delivery: the lower of the published and the subscribed QoS.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// Whether this is a retained message sent because the subscription was made.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// The MQTT 5.0 properties the message was published with (empty when it has none).
    pub fn properties(&self) -> crate::codec::Properties {
        self.message
            .properties
            .as_deref()
            .map(crate::codec::PublishProperties::to_properties)
            .unwrap_or_default()
    }

    /// The message as the broker holds it.
    pub fn message(&self) -> &Arc<Message> {
        &self.message
    }
}

/// Routes one message; resolves once it is routed and, when stored (QoS > 0 for persistent subscribers,
/// retained messages), durable as the durability setting promises.
pub(crate) async fn publish(
    router: &Addr<Router>,
    topic: &str,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: crate::codec::MaybePublishProperties,
) -> Result<(), Error> {
    let topic = TopicName::new(topic.to_owned())?;
    let message = Arc::new(Message {
        topic,
        payload,
        qos,
        retain,
        arrived_at_ms: now_ms(),
        properties,
    });
    let (done, stored) = oneshot::channel();
    let route = RoutePublish::from_broker(vec![message], Vec::new(), Some(done));
    router.send(route).await.map_err(|_| Error::NotRunning)?;
    stored
        .await
        .unwrap_or(Err(StoreError::WriterGone))
        .map_err(Error::from)
}

/// An in-process subscription: a stream of the messages matching its filter. Dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<ReceivedMessage>,
    session: Addr<Session>,
}

impl Stream for Subscription {
    type Item = ReceivedMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.session.do_send(DetachClient);
    }
}

/// Subscribes an in-process client to `filter`; retained messages matching it come first.
///
/// The client is a session like any network client's, with a clean session: it sends CONNECT and SUBSCRIBE
/// as packets, its messages arrive on a bounded channel and are acknowledged as the channel takes them.
pub(crate) async fn subscribe(
    peers: &Arc<SessionPeers>,
    arbiter: &ArbiterHandle,
    filter: &str,
    qos: QoS,
) -> Result<Subscription, Error> {
    let filter = TopicFilter::new(filter.to_owned())?;
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
    let (ready, subscribed) = oneshot::channel();
    let peers = peers.clone();
    let session = Session::start_in_arbiter(arbiter, move |_| {
        Session::in_process(AppSink::new(tx, ready), peers)
    });
    // From here on, dropping the subscription (also by cancelling this future) ends the client.
    let subscription = Subscription {
        rx,
        session: session.clone(),
    };
    // A random id: MQTT clients cannot guess it, so none takes this subscription over by accident.
    let client_id = ClientId::new(format!(
        "$harbormq/inprocess/{:016x}",
        rand::random::<u64>()
    ));
    let connect = Connect {
        level: ProtocolLevel::V311,
        clean_session: true,
        keep_alive_secs: 0,
        client_id,
        will: None,
        username: None,
        password: None,
        properties: None,
    };
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).ok_or(Error::NotRunning)?,
        filters: vec![(filter.clone(), qos.into())],
        properties: None,
    };
    session
        .send(ClientPackets(vec![
            Packet::Connect(Box::new(connect)),
            Packet::Subscribe(subscribe),
        ]))
        .await
        .map_err(|_| Error::NotRunning)?;
    match subscribed.await {
        Ok(SubscribeOutcome::Subscribed) => Ok(subscription),
        Ok(SubscribeOutcome::Refused) => Err(Error::SubscriptionRefused(filter.to_string())),
        Err(_) => Err(Error::NotRunning),
    }
}
