//! The application message as the broker keeps it: one immutable value shared by every session it reaches.
//! Owns no behaviour beyond construction; routing and storage pass `Arc<Message>` around so payloads are never copied.

use crate::codec::{MaybePublishProperties, QoS};
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
    pub properties: MaybePublishProperties,
}

/// A subscription as the router keeps it: the QoS granted and the MQTT 5.0 options that act on each delivery,
/// packed in 32 bits (the trie holds one per subscriber, and the fan-out walks them for every message): QoS in
/// bits 0-1, No Local in bit 2, Retain As Published in bit 3, the Subscription Identifier (0 for none, at most
/// 268,435,455) in bits 4-31.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant(u32);

impl Grant {
    /// A grant; an identifier above 268,435,455 (which the codec never lets through) is dropped.
    pub fn new(qos: QoS, no_local: bool, retain_as_published: bool, id: Option<u32>) -> Grant {
        let id = id.filter(|id| *id < 1 << 28).unwrap_or(0);
        Grant(
            u32::from(qos.as_u8())
                | u32::from(no_local) << 2
                | u32::from(retain_as_published) << 3
                | id << 4,
        )
    }

    /// The maximum QoS granted.
    pub fn qos(self) -> QoS {
        QoS::from_u8((self.0 & 0b11) as u8).unwrap_or(QoS::AtMostOnce)
    }

    /// The subscriber does not get its own messages (No Local) [MQTT-3.8.3-3 in 5.0].
    pub fn no_local(self) -> bool {
        self.0 & 0b100 != 0
    }

    /// Forwarded messages keep the RETAIN flag they were published with (Retain As Published)
    /// [MQTT-3.3.1-12 in 5.0].
    pub fn retain_as_published(self) -> bool {
        self.0 & 0b1000 != 0
    }

    /// The Subscription Identifier, sent with every message the subscription matches [MQTT-3.3.4-3 in 5.0].
    pub fn id(self) -> Option<u32> {
        Some(self.0 >> 4).filter(|id| *id != 0)
    }
}

impl From<QoS> for Grant {
    fn from(qos: QoS) -> Grant {
        Grant::new(qos, false, false, None)
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("qos", &self.qos())
            .field("no_local", &self.no_local())
            .field("retain_as_published", &self.retain_as_published())
            .field("id", &self.id())
            .finish()
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
