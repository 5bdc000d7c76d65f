//! The application message as the broker keeps it: one immutable value shared by every session it reaches.
//! Owns no behaviour beyond construction; routing and storage pass `Arc<Message>` around so payloads are never copied.

use crate::codec::{MaybeProperties, QoS};
use crate::topic::TopicName;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// An application message accepted by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic the message was published to.
    pub topic: TopicName,
    /// Payload, shared by reference count.
    pub payload: Bytes,
    /// QoS the message was published with (the upper bound of every delivery).
    pub qos: QoS,
    /// Whether the publisher set RETAIN.
    pub retain: bool,
    /// When the broker accepted the message, in milliseconds since the Unix epoch.
    pub arrived_at_ms: u64,
    /// The MQTT 5.0 message properties (Payload Format Indicator, Message Expiry Interval, Content Type,
    /// Response Topic, Correlation Data, User Properties) as published; `None` when there are none.
    pub properties: MaybeProperties,
}

/// A subscription as the router keeps it: the QoS granted and the MQTT 5.0 options that act on each delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The maximum QoS granted.
    pub qos: QoS,
    /// The subscriber does not get its own messages (No Local) [MQTT-3.8.3-3 in 5.0].
    pub no_local: bool,
    /// Forwarded messages keep the RETAIN flag they were published with (Retain As Published)
    /// [MQTT-3.3.1-12 in 5.0].
    pub retain_as_published: bool,
    /// The Subscription Identifier, sent with every message the subscription matches [MQTT-3.3.4-3 in 5.0].
    pub id: Option<u32>,
}

impl From<QoS> for Grant {
    fn from(qos: QoS) -> Grant {
        Grant {
            qos,
            no_local: false,
            retain_as_published: false,
            id: None,
        }
    }
}

/// A shared subscription group (`$share/{group}/{filter}`), as the router numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareGroup(pub u64);

/// A broker-wide identifier for a stored message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// Milliseconds since the Unix epoch, the time base of every stored timestamp.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
