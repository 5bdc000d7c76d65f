//! The MQTT 5.0 rules of one connection that need no I/O: what the client's CONNECT allows the server to
//! send, what CONNACK tells the client, topic aliases in both directions, message expiry and the payload
//! format check. Pure values and functions; the connection core decides when to apply them.

use crate::codec::{ClientId, Properties, PublishProperties, ReasonCode};
use crate::topic::TopicName;
use bytestring::ByteString;
use std::collections::HashMap;

/// Session Expiry Interval meaning "never expires" (section 3.1.2.11.2).
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// What the broker offers every MQTT 5.0 client, reported in CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards the server.
    pub receive_maximum: u16,
    /// Highest topic alias a client may use.
    pub topic_alias_maximum: u16,
    /// Largest packet the server accepts, in bytes.
    pub maximum_packet_size: u32,
    /// Highest keepalive granted, in seconds.
    pub max_keepalive_secs: u16,
    /// Highest session expiry granted, in seconds (`NEVER_EXPIRES` for no limit).
    pub max_session_expiry_secs: u32,
    /// Whether `$share/` filters are accepted.
    pub shared_subscriptions: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            maximum_packet_size: 1 << 20,
            max_keepalive_secs: u16::MAX,
            max_session_expiry_secs: NEVER_EXPIRES,
            shared_subscriptions: true,
        }
    }
}

/// What an MQTT 5.0 client's CONNECT allows the server to send it (section 3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// Unacknowledged QoS 1/2 PUBLISHes the client accepts at a time (65,535 when absent).
    pub receive_maximum: u16,
    /// Largest packet the client accepts; `None` when it set no limit.
    pub maximum_packet_size: Option<u32>,
    /// Highest topic alias the server may use towards the client (0: none).
    pub topic_alias_maximum: u16,
}

impl ClientLimits {
    /// The limits of CONNECT's properties.
    pub fn of(props: &Properties) -> ClientLimits {
        ClientLimits {
            receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: props.maximum_packet_size,
            topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
        }
    }
}

/// The session expiry the server grants: what the client asked for, capped by the server's maximum.
pub fn granted_session_expiry(asked: Option<u32>, server_max: u32) -> u32 {
    asked.unwrap_or(0).min(server_max)
}

/// The keepalive the server imposes, if it differs from the client's (section 3.2.2.3.14): the configured
/// maximum when the client asked for more, or for none at all.
pub fn server_keep_alive(asked_secs: u16, max_secs: u16) -> Option<u16> {
    (asked_secs == 0 || asked_secs > max_secs).then_some(max_secs)
}

/// The CONNACK properties of an accepted MQTT 5.0 connection.
pub fn connack_properties(
    server: &ServerLimits,
    assigned_client_id: Option<&ClientId>,
    keep_alive: Option<u16>,
    session_expiry: Option<u32>,
) -> Properties {
    Properties {
        receive_maximum: Some(server.receive_maximum),
        // Maximum QoS is left out: the server supports QoS 2 (section 3.2.2.3.4 allows only 0 or 1 here).
        retain_available: Some(1),
        maximum_packet_size: Some(server.maximum_packet_size),
        topic_alias_maximum: Some(server.topic_alias_maximum),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(1),
        shared_subscription_available: Some(u8::from(server.shared_subscriptions)),
        assigned_client_identifier: assigned_client_id.map(|id| ByteString::from(id.as_str())),
        server_keep_alive: keep_alive,
        session_expiry_interval: session_expiry,
        ..Properties::default()
    }
}

/// The topic aliases a client set up for its PUBLISHes (section 3.3.2.3.4); allocated by the first one, so a
/// connection that uses none pays a pointer.
#[derive(Debug, Default)]
pub struct InboundAliases {
    // Boxed so that an unused map costs 8 bytes rather than 48 in every MQTT 5.0 session.
    #[allow(clippy::box_collection)]
    topics: Option<Box<HashMap<u16, TopicName>>>,
}

impl InboundAliases {
    /// Resolves the topic of an incoming PUBLISH: a non-empty topic with an alias (re)defines it, an empty
    /// topic takes the alias's topic. An alias of 0 or above `maximum` is Topic Alias invalid [MQTT-3.3.2-8];
    /// an empty topic with an alias never defined is a Protocol Error [MQTT-3.3.2-7].
    pub fn resolve(
        &mut self,
        topic: TopicName,
        alias: Option<u16>,
        maximum: u16,
    ) -> Result<TopicName, ReasonCode> {
        let Some(alias) = alias else {
            return Ok(topic);
        };
        if alias == 0 || alias > maximum {
            return Err(ReasonCode::TOPIC_ALIAS_INVALID);
        }
        if topic.is_aliased() {
            return self
                .topics
                .as_ref()
                .and_then(|topics| topics.get(&alias))
                .cloned()
                .ok_or(ReasonCode::PROTOCOL_ERROR);
        }
        self.topics
            .get_or_insert_with(Box::default)
            .insert(alias, topic.detached());
        Ok(topic)
    }
}

/// The topic aliases the server uses towards a client that allows them: the first topics sent get one
/// alias each, up to the client's maximum; the mapping is never changed within a connection.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    /// Allocated by the first alias; boxed so that an unused map costs 8 bytes rather than 48.
    #[allow(clippy::box_collection)]
    assigned: Option<Box<HashMap<TopicName, u16>>>,
}

/// How a PUBLISH names its topic towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasUse {
    /// The topic in full, no alias.
    Topic,
    /// The topic in full with a new alias, which later PUBLISHes use alone.
    Define(u16),
    /// The alias alone, with an empty topic.
    Reuse(u16),
}

impl OutboundAliases {
    /// How to name `topic` in the next PUBLISH, with aliases up to `maximum` (the client's Topic Alias
    /// Maximum, the same for the whole connection) [MQTT-3.3.2-9] [MQTT-3.3.2-10].
    pub fn use_for(&mut self, topic: &TopicName, maximum: u16) -> AliasUse {
        if maximum == 0 {
            return AliasUse::Topic;
        }
        let assigned = self.assigned.get_or_insert_with(Box::default);
        if let Some(alias) = assigned.get(topic) {
            return AliasUse::Reuse(*alias);
        }
        let next = assigned.len() + 1;
        match u16::try_from(next) {
            Ok(alias) if alias <= maximum => {
                assigned.insert(topic.detached(), alias);
                AliasUse::Define(alias)
            }
            _ => AliasUse::Topic,
        }
    }
}

/// What is left of a message's expiry interval at `now_ms`: `Ok(None)` when it has none, `Err(())` when it
/// has expired (the server must not deliver it, section 3.3.2.3.3), else the seconds left, which a forwarded
/// message carries [MQTT-3.3.2-6].
#[allow(clippy::result_unit_err)]
pub fn remaining_expiry(
    props: Option<&PublishProperties>,
    arrived_at_ms: u64,
    now_ms: u64,
) -> Result<Option<u32>, ()> {
    let Some(interval) = props.and_then(|p| p.message_expiry_interval()) else {
        return Ok(None);
    };
    let expires_at_ms = arrived_at_ms.saturating_add(u64::from(interval) * 1000);
    if now_ms >= expires_at_ms {
        return Err(());
    }
    let left_ms = expires_at_ms - now_ms;
    // Rounded up, so a message with time left is never forwarded as already expired.
    Ok(Some(
        u32::try_from(left_ms.div_ceil(1000)).unwrap_or(interval),
    ))
}

/// Whether a payload marked as UTF-8 (Payload Format Indicator 1) is valid UTF-8 (section 3.3.2.3.2).
pub fn payload_format_valid(props: Option<&PublishProperties>, payload: &[u8]) -> bool {
    props.and_then(|p| p.payload_format_indicator()) != Some(1)
        || std::str::from_utf8(payload).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::new(s.to_owned()).unwrap()
    }

    #[test]
    fn an_alias_is_defined_by_a_full_topic_and_used_by_an_empty_one() {
        let mut aliases = InboundAliases::default();
        assert_eq!(aliases.resolve(topic("a/b"), Some(3), 10), Ok(topic("a/b")));
        assert_eq!(
            aliases.resolve(TopicName::aliased(), Some(3), 10),
            Ok(topic("a/b"))
        );
        // A redefinition replaces the mapping (section 3.3.2.3.4).
        assert_eq!(aliases.resolve(topic("c"), Some(3), 10), Ok(topic("c")));
        assert_eq!(
            aliases.resolve(TopicName::aliased(), Some(3), 10),
            Ok(topic("c"))
        );
    }

    #[test]
    fn aliases_out_of_range_or_unknown_are_refused() {
        let mut aliases = InboundAliases::default();
        // [MQTT-3.3.2-8]: 0 and anything above the server's maximum are invalid.
        assert_eq!(
            aliases.resolve(topic("a"), Some(0), 10),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        assert_eq!(
            aliases.resolve(topic("a"), Some(11), 10),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        assert!(aliases.resolve(TopicName::aliased(), Some(2), 10).is_err());
    }

    #[test]
    fn outbound_aliases_are_assigned_up_to_the_clients_maximum() {
        let mut aliases = OutboundAliases::default();
        assert_eq!(aliases.use_for(&topic("x"), 2), AliasUse::Define(1));
        assert_eq!(aliases.use_for(&topic("x"), 2), AliasUse::Reuse(1));
        assert_eq!(aliases.use_for(&topic("y"), 2), AliasUse::Define(2));
        assert_eq!(aliases.use_for(&topic("z"), 2), AliasUse::Topic);
        assert_eq!(
            OutboundAliases::default().use_for(&topic("x"), 0),
            AliasUse::Topic
        );
    }

    #[test]
    fn expiry_counts_down_from_arrival_and_expires() {
        let props = PublishProperties::from_properties(&Properties {
            message_expiry_interval: Some(10),
            ..Properties::default()
        })
        .unwrap();
        assert_eq!(remaining_expiry(Some(&props), 1_000, 1_000), Ok(Some(10)));
        assert_eq!(remaining_expiry(Some(&props), 1_000, 4_500), Ok(Some(7)));
        assert_eq!(remaining_expiry(Some(&props), 1_000, 11_000), Err(()));
        assert_eq!(remaining_expiry(None, 0, u64::MAX), Ok(None));
    }

    #[test]
    fn keepalive_and_session_expiry_are_capped() {
        assert_eq!(server_keep_alive(30, 60), None);
        assert_eq!(server_keep_alive(120, 60), Some(60));
        assert_eq!(server_keep_alive(0, 60), Some(60));
        assert_eq!(granted_session_expiry(None, 100), 0);
        assert_eq!(granted_session_expiry(Some(NEVER_EXPIRES), 100), 100);
    }

    #[test]
    fn a_payload_marked_utf8_must_be_utf8() {
        let marked = PublishProperties::from_properties(&Properties {
            payload_format_indicator: Some(1),
            ..Properties::default()
        })
        .unwrap();
        assert!(payload_format_valid(Some(&marked), "héllo".as_bytes()));
        assert!(!payload_format_valid(Some(&marked), &[0xff, 0xfe]));
        assert!(payload_format_valid(None, &[0xff]));
    }
}
