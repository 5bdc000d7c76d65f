//! The retained-message actor: the last retained message of every topic, in memory (the router writes it
//! through to the store in the publisher's commit), and its delivery to new subscriptions.

use super::messages::{CountRetained, DeliverRetained, RetainMessage, SendRetained};
use crate::message::Message;
use crate::protocol::Delivery;
use crate::topic::TopicName;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Retained messages by topic.
#[derive(Default)]
pub struct RetainedStore {
    messages: HashMap<TopicName, Arc<Message>>,
}

impl RetainedStore {
    /// A store holding the messages recovered from disk.
    pub fn new(recovered: Vec<Arc<Message>>) -> Self {
        RetainedStore {
            messages: recovered
                .into_iter()
                .map(|m| (m.topic.clone(), m))
                .collect(),
        }
    }

    /// Keeps `message` as the topic's retained message, or forgets the topic's message when the payload is
    /// empty [MQTT-3.3.1-10], [MQTT-3.3.1-11].
    pub fn retain(&mut self, message: Arc<Message>) {
        if message.payload.is_empty() {
            self.messages.remove(&message.topic);
        } else {
            self.messages.insert(message.topic.clone(), message);
        }
    }

    /// The retained messages matching the filters, each at min(its QoS, granted QoS), with RETAIN set
    /// [MQTT-3.3.1-6], [MQTT-3.3.1-8]; one delivery per message even when several filters match, carrying the
    /// Subscription Identifiers of those filters [MQTT-3.3.4-3 in 5.0].
    pub fn matching(
        &self,
        filters: &[(crate::topic::TopicFilter, crate::codec::QoS, Option<u32>)],
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        for message in self.messages.values() {
            let mut granted = None;
            let mut subscription_ids = Vec::new();
            for (_, qos, id) in filters.iter().filter(|(f, _, _)| f.matches(&message.topic)) {
                granted = granted.max(Some(*qos));
                subscription_ids.extend(*id);
            }
            if let Some(granted) = granted {
                out.push(Delivery {
                    message: message.clone(),
                    qos: message.qos.min(granted),
                    seq: None,
                    retain: true,
                    extras: crate::protocol::outbound::DeliveryExtras::of(subscription_ids, None),
                    expiring: crate::protocol::outbound::expiring(message),
                });
            }
        }
        out.sort_by_key(|d| d.message.arrived_at_ms);
        out
    }
}

impl Actor for RetainedStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<RetainMessage> for RetainedStore {
    type Result = ();

    fn handle(&mut self, msg: RetainMessage, _: &mut Self::Context) {
        self.retain(msg.0);
    }
}

impl Handler<SendRetained> for RetainedStore {
    type Result = ();

    fn handle(&mut self, msg: SendRetained, _: &mut Self::Context) {
        let deliveries = self.matching(&msg.filters);
        if !deliveries.is_empty() {
            msg.to.do_send(DeliverRetained(deliveries));
        }
    }
}

impl Handler<CountRetained> for RetainedStore {
    type Result = usize;

    fn handle(&mut self, _: CountRetained, _: &mut Self::Context) -> usize {
        self.messages.len()
    }
}

impl Handler<super::messages::ListRetained> for RetainedStore {
    type Result = MessageResult<super::messages::ListRetained>;

    fn handle(
        &mut self,
        msg: super::messages::ListRetained,
        _: &mut Self::Context,
    ) -> Self::Result {
        let mut found: Vec<Arc<Message>> = self
            .messages
            .values()
            .filter(|m| msg.filter.as_ref().is_none_or(|f| f.matches(&m.topic)))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        MessageResult(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::topic::TopicFilter;
    use bytes::Bytes;

    fn msg(topic: &str, payload: &'static [u8], qos: QoS) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic.to_owned()).unwrap(),
            payload: Bytes::from_static(payload),
            qos,
            retain: true,
            arrived_at_ms: 0,
            properties: None,
        })
    }

    #[test]
    fn empty_payload_deletes_and_wildcards_match() {
        let mut store = RetainedStore::default();
        store.retain(msg("a/b", b"1", QoS::ExactlyOnce));
        store.retain(msg("a/c", b"2", QoS::AtMostOnce));
        store.retain(msg("a/c", b"", QoS::AtMostOnce));
        let filters = vec![
            (TopicFilter::new("a/+").unwrap(), QoS::AtLeastOnce, Some(3)),
            (TopicFilter::new("a/b").unwrap(), QoS::AtMostOnce, Some(5)),
        ];
        let found = store.matching(&filters);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].message.topic.as_str(), "a/b");
        assert_eq!(found[0].qos, QoS::AtLeastOnce);
        assert!(found[0].retain);
        assert_eq!(found[0].subscription_ids(), &[3, 5]);
    }
}
