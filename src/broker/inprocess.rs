//! In-process clients on a [`BrokerHandle`](super::BrokerHandle): publishing straight into the router, and
//! subscriptions delivered as a bounded stream. Owns the subscriber actor; routing stays in the router.

use super::link::SessionLink;
use super::messages::*;
use super::router::Router;
use super::session::SessionPeers;
use crate::codec::{ClientId, QoS};
use crate::error::Error;
use crate::message::{now_ms, Message};
use crate::protocol::Delivery;
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
) -> Result<(), Error> {
    let topic = TopicName::new(topic.to_owned())?;
    let message = Arc::new(Message {
        topic,
        payload,
        qos,
        retain,
        arrived_at_ms: now_ms(),
    });
    let (done, stored) = oneshot::channel();
    let route = RoutePublish {
        messages: vec![message],
        ops: Vec::new(),
        done: Some(done),
        permit: None,
    };
    router.send(route).await.map_err(|_| Error::NotRunning)?;
    stored
        .await
        .unwrap_or(Err(StoreError::WriterGone))
        .map_err(Error::from)
}

/// An in-process subscription: a stream of the messages matching its filter. Dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<ReceivedMessage>,
    subscriber: Addr<Subscriber>,
}

impl Stream for Subscription {
    type Item = ReceivedMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscriber.do_send(Detach);
    }
}

/// Subscribes an in-process client to `filter`; retained messages matching it come first.
pub(crate) async fn subscribe(
    peers: &SessionPeers,
    arbiter: &ArbiterHandle,
    filter: &str,
    qos: QoS,
) -> Result<Subscription, Error> {
    let filter = TopicFilter::new(filter.to_owned())?;
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
    let (ready, registered) = oneshot::channel();
    let router = peers.router.clone();
    let subscriber = Subscriber::start_in_arbiter(arbiter, move |_| Subscriber {
        tx,
        router,
        ready: Some(ready),
        attached: None,
        dropped: 0,
    });
    // From here on, dropping the subscription (also by cancelling this future) unregisters it.
    let subscription = Subscription {
        rx,
        subscriber: subscriber.clone(),
    };
    let (slot, conn) = registered.await.map_err(|_| Error::NotRunning)?;
    let (done, stored) = oneshot::channel();
    let filters = vec![(filter, qos)];
    peers
        .router
        .send(AddSubscriptions {
            slot,
            conn,
            filters: filters.clone(),
            done,
        })
        .await
        .map_err(|_| Error::NotRunning)?;
    stored.await.unwrap_or(Err(StoreError::WriterGone))?;
    peers.retained.do_send(SendRetained {
        filters,
        to: subscriber.recipient(),
    });
    Ok(subscription)
}

/// The router's counterpart of an in-process subscription: a clean session without a connection.
pub struct Subscriber {
    tx: mpsc::Sender<ReceivedMessage>,
    router: Addr<Router>,
    ready: Option<oneshot::Sender<(SlotId, ConnId)>>,
    attached: Option<(SlotId, ConnId)>,
    dropped: u64,
}

/// The subscription was dropped.
#[derive(Message)]
#[rtype(result = "()")]
struct Detach;

impl Subscriber {
    /// Hands deliveries to the reader; QoS 0 is dropped when the reader is behind, QoS 1/2 waits for room
    /// (holding this subscriber's mailbox, as a slow network client's session would).
    fn take(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        let mut waiting = Vec::new();
        for delivery in deliveries {
            let received = ReceivedMessage {
                message: delivery.message,
                qos: delivery.qos,
                retain: delivery.retain,
            };
            if !waiting.is_empty() {
                waiting.push(received);
                continue;
            }
            match self.tx.try_send(received) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(received))
                    if received.qos != QoS::AtMostOnce =>
                {
                    waiting.push(received);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        log::warn!(
                            "in-process subscription is behind: {} message(s) dropped so far",
                            self.dropped
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    ctx.stop();
                    return;
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        let send = async move {
            for received in waiting {
                if tx.send(received).await.is_err() {
                    return false;
                }
            }
            true
        };
        ctx.wait(send.into_actor(self).map(|open, _, ctx| {
            if !open {
                ctx.stop();
            }
        }));
    }
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        // A random id: MQTT clients cannot guess it, so none takes this subscription over by accident.
        let client_id = ClientId::new(format!(
            "$harbormq/inprocess/{:016x}",
            rand::random::<u64>()
        ));
        let register = self.router.send(RegisterSession {
            client_id,
            clean_session: true,
            session: SessionLink::from(ctx.address()),
        });
        ctx.wait(
            register
                .into_actor(self)
                .map(|reply, act, ctx| match reply {
                    Ok(reply) => {
                        act.attached = Some((reply.slot, reply.conn));
                        if let Some(ready) = act.ready.take() {
                            let _ = ready.send((reply.slot, reply.conn));
                        }
                    }
                    Err(_) => ctx.stop(),
                }),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some((slot, conn)) = self.attached.take() {
            self.router.do_send(SessionClosed { slot, conn });
        }
    }
}

impl Handler<Deliver> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.take(msg.0, ctx);
    }
}

impl Handler<QueueBehind> for Subscriber {
    type Result = ();

    /// Only persistent sessions fall behind into the store; an in-process subscription is a clean session.
    fn handle(&mut self, _: QueueBehind, _: &mut Self::Context) {}
}

impl Handler<TakenOver> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: TakenOver, ctx: &mut Self::Context) {
        // The slot now belongs to the new connection; this subscription must not close it.
        self.attached = None;
        let _ = msg.done.send(());
        ctx.stop();
    }
}

impl Handler<CloseForShutdown> for Subscriber {
    type Result = ();

    fn handle(&mut self, _: CloseForShutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Detach> for Subscriber {
    type Result = ();

    fn handle(&mut self, _: Detach, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
