//! The router's answers to the admin API and the `$SYS` publisher: session listing and removal, retained
//! removal, status fan-out and traffic counters. Changes go to the store through the router, never around it.

use super::messages::*;
use super::router::Router;
use crate::codec::{ClientId, QoS};
use crate::message::{now_ms, Message};
use crate::protocol::{Delivery, EndCause};
use crate::store::{StoreError, StoreHandle, StoreOp};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a deletion waits for the session it closes to write its last state before deleting it anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

impl RouterStats {
    /// Counts a message routed at `qos`.
    pub(super) fn count_in(&mut self, qos: QoS) {
        self.messages_in += 1;
        if let Some(n) = self.messages_in_by_qos.get_mut(usize::from(qos.as_u8())) {
            *n += 1;
        }
    }

    /// Counts a delivery at `qos`.
    pub(super) fn count_out(&mut self, qos: QoS) {
        self.messages_out += 1;
        if let Some(n) = self.messages_out_by_qos.get_mut(usize::from(qos.as_u8())) {
            *n += 1;
        }
    }
}

impl Router {
    fn presence(&self) -> Vec<SessionPresence> {
        let mut out: Vec<SessionPresence> = self
            .registry()
            .entries()
            .map(|(_, e)| SessionPresence {
                client_id: e.client_id.clone(),
                online: e.online.is_some(),
                persistent: e.persistent,
                subscriptions: e.subscriptions.len(),
            })
            .collect();
        out.sort_by(|a, b| a.client_id.as_str().cmp(b.client_id.as_str()));
        out
    }

    /// Forgets the session and closes its connection; the receiver resolves once the closed session has
    /// written what it had to the store.
    fn evict(&mut self, client_id: &ClientId) -> Option<Option<oneshot::Receiver<()>>> {
        let slot = self.registry().slot_of(client_id)?;
        let entry = self.forget(slot)?;
        let Some(online) = entry.online else {
            return Some(None);
        };
        log::info!("session {client_id} deleted through the admin API: closing its connection");
        let (done, closed) = oneshot::channel();
        // The connection is closed by the broker, so its will is published [MQTT-3.1.2-8].
        online.addr.do_send(TakenOver {
            done,
            cause: EndCause::Deleted,
        });
        Some(Some(closed))
    }

    fn expired(&self, older_than_ms: Option<u64>) -> Vec<ClientId> {
        let Some(age) = older_than_ms.or_else(|| {
            self.settings()
                .session_expiry
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }) else {
            return Vec::new();
        };
        let cutoff = now_ms().saturating_sub(age);
        self.registry()
            .entries()
            .filter(|(_, e)| e.persistent && e.online.is_none() && e.offline_since_ms <= cutoff)
            .map(|(_, e)| e.client_id.clone())
            .collect()
    }

    /// Hands status messages to the retained actor and to the online subscribers, at QoS 0.
    fn publish_status(&mut self, messages: Vec<Arc<Message>>) {
        let mut outbox: HashMap<SlotId, Vec<Delivery>> = HashMap::new();
        for message in messages {
            self.retained().do_send(RetainMessage(message.clone()));
            self.trie().for_each_match(&message.topic, |slot, _| {
                let deliveries = outbox.entry(*slot).or_default();
                // Overlapping subscriptions of one client give one delivery.
                if !deliveries
                    .last()
                    .is_some_and(|d| Arc::ptr_eq(&d.message, &message))
                {
                    deliveries.push(Delivery {
                        message: message.clone(),
                        qos: QoS::AtMostOnce,
                        seq: None,
                        retain: false,
                        extras: None,
                        expiring: false,
                    });
                }
            });
        }
        for (slot, mut deliveries) in outbox {
            let Some(online) = self.registry.get_mut(slot).and_then(|e| e.online.as_mut()) else {
                continue;
            };
            // Status messages are QoS 0 and published again soon: a session out of credit misses them.
            deliveries.retain(|_| online.flow.try_spend());
            if !deliveries.is_empty() {
                online.addr.do_send(Deliver(deliveries));
            }
        }
    }
}

/// Commits one deletion and waits for it.
async fn delete_stored(store: StoreHandle, op: StoreOp) -> Result<(), StoreError> {
    store
        .write(vec![op])
        .await
        .map_err(|_| StoreError::WriterGone)?
}

impl Handler<ListSessions> for Router {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, _: ListSessions, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.presence())
    }
}

impl Handler<DeleteSession> for Router {
    type Result = ResponseActFuture<Self, Result<bool, StoreError>>;

    fn handle(&mut self, msg: DeleteSession, _: &mut Self::Context) -> Self::Result {
        let evicted = self.evict(&msg.client_id);
        self.begin_delete(&msg.client_id);
        let store = self.store().clone();
        let client_id = msg.client_id.clone();
        let work = async move {
            let known = evicted.is_some();
            if let Some(Some(closed)) = evicted {
                let _ = tokio::time::timeout(CLOSE_WAIT, closed).await;
            }
            let op = StoreOp::DeleteSession {
                client_id: msg.client_id,
            };
            delete_stored(store, op).await?;
            Ok(known)
        };
        Box::pin(work.into_actor(self).map(move |result, router, _| {
            router.end_delete(&client_id);
            result
        }))
    }
}

impl Handler<DeleteExpiredSessions> for Router {
    type Result = ResponseFuture<Result<Vec<ClientId>, StoreError>>;

    fn handle(&mut self, msg: DeleteExpiredSessions, _: &mut Self::Context) -> Self::Result {
        let expired = self.expired(msg.older_than_ms);
        for client_id in &expired {
            self.evict(client_id);
            log::info!("session {client_id} deleted through the admin API (expired)");
        }
        let ops: Vec<StoreOp> = expired
            .iter()
            .map(|client_id| StoreOp::DeleteSession {
                client_id: client_id.clone(),
            })
            .collect();
        // Submitted now, so a connection registering after this message is stored after the deletion.
        let committed = (!ops.is_empty()).then(|| self.store().write(ops));
        Box::pin(async move {
            if let Some(committed) = committed {
                committed.await.map_err(|_| StoreError::WriterGone)??;
            }
            Ok(expired)
        })
    }
}

impl Handler<ClearRetained> for Router {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: ClearRetained, _: &mut Self::Context) -> Self::Result {
        // An empty retained payload removes the topic's message [MQTT-3.3.1-10]; it is not routed to anyone.
        let empty = Arc::new(Message {
            topic: msg.topic.clone(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: true,
            arrived_at_ms: now_ms(),
            properties: None,
        });
        self.retained().do_send(RetainMessage(empty));
        let store = self.store().clone();
        Box::pin(delete_stored(
            store,
            StoreOp::DeleteRetained { topic: msg.topic },
        ))
    }
}

impl Handler<PublishStatus> for Router {
    type Result = ();

    fn handle(&mut self, msg: PublishStatus, _: &mut Self::Context) {
        self.publish_status(msg.0);
    }
}
