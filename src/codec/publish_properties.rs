//! The properties of a PUBLISH (section 3.3.2.3) in their wire form: the property section as received, a slice
//! of the read buffer checked once against the rules for a PUBLISH, with the three values the broker acts on
//! for every message (Payload Format Indicator, Message Expiry Interval, Topic Alias) read out. A message's
//! properties reach every subscriber as they arrived [MQTT-3.3.2-17] [MQTT-3.3.2-18], so the broker writes
//! them back with one copy, leaving out only what it replaces; the typed [`Properties`] view is built on
//! demand (hooks, the store, the admin API).

use super::error::{DecodeError, EncodeError};
use super::properties::{
    allowed, boolean, decode_section, known, varint_at, write_publish_properties, Properties,
    PropertyScope, Replaced,
};
use super::user_properties::checked_string;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

const PACKET: &str = "PUBLISH";

/// The properties of one PUBLISH, as they travel.
#[derive(Clone, Default)]
pub struct PublishProperties {
    /// The properties without the property length in front, each checked; empty when there are none.
    wire: Bytes,
    payload_format_indicator: Option<u8>,
    message_expiry_interval: Option<u32>,
    topic_alias: Option<u16>,
    /// Whether `wire` holds Subscription Identifiers.
    subscription_ids: bool,
}

/// PUBLISH properties as packets and messages hold them: absent (no allocation) or boxed.
pub type MaybePublishProperties = Option<Box<PublishProperties>>;

impl PublishProperties {
    /// Checks a PUBLISH's property section (without its length) as the rules for a PUBLISH require: only
    /// the properties a PUBLISH may carry, each at most once except Subscription Identifiers and User
    /// Properties [MQTT-2.2.2-2], with valid values and well-formed UTF-8 strings [MQTT-1.5.4-1].
    pub fn decode(wire: Bytes) -> Result<PublishProperties, DecodeError> {
        let mut p = PublishProperties {
            wire,
            ..PublishProperties::default()
        };
        let mut seen = 0u64;
        let mut pos = 0;
        while pos < p.wire.len() {
            let (id, used) = varint_at(&p.wire[pos..], PACKET)?;
            let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty { id })?;
            if !allowed(id, PropertyScope::Publish) {
                return Err(if known(id) {
                    DecodeError::PropertyNotAllowed { id, packet: PACKET }
                } else {
                    DecodeError::UnknownProperty { id: u32::from(id) }
                });
            }
            let bit = 1u64 << (id & 63);
            let repeatable = matches!(id, 0x0B | 0x26);
            if seen & bit != 0 && !repeatable {
                return Err(DecodeError::DuplicateProperty { id, packet: PACKET });
            }
            seen |= bit;
            let value_at = pos + used;
            let wire = &p.wire;
            let fixed = |n: usize| {
                wire.get(value_at..value_at + n)
                    .ok_or(DecodeError::Truncated { packet: PACKET })
            };
            pos = match id {
                0x01 => {
                    p.payload_format_indicator = Some(boolean(fixed(1)?[0], id)?);
                    value_at + 1
                }
                0x02 => {
                    let b = fixed(4)?;
                    p.message_expiry_interval = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    value_at + 4
                }
                0x03 | 0x08 | 0x26 => {
                    let end = checked_string(wire, value_at, PACKET)?;
                    if id == 0x26 {
                        checked_string(wire, end, PACKET)?
                    } else {
                        end
                    }
                }
                0x09 => {
                    let b = fixed(2)?;
                    let end = value_at + 2 + usize::from(u16::from_be_bytes([b[0], b[1]]));
                    fixed(end - value_at)?;
                    end
                }
                0x0B => {
                    let (v, n) = varint_at(&wire[value_at..], PACKET)?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue { id });
                    }
                    p.subscription_ids = true;
                    value_at + n
                }
                0x23 => {
                    let b = fixed(2)?;
                    p.topic_alias = Some(u16::from_be_bytes([b[0], b[1]]));
                    value_at + 2
                }
                _ => return Err(DecodeError::UnknownProperty { id: u32::from(id) }),
            };
        }
        Ok(p)
    }

    /// The properties of `p` that a PUBLISH may carry (the others are not part of a PUBLISH and are left
    /// out); a string longer than 65,535 bytes or a Subscription Identifier out of range is refused.
    pub fn from_properties(p: &Properties) -> Result<PublishProperties, EncodeError> {
        PublishProperties::written(p, Replaced::default())
    }

    /// The properties of `p` that a PUBLISH may carry, less those `skip` names.
    fn written(p: &Properties, skip: Replaced) -> Result<PublishProperties, EncodeError> {
        let len = super::properties::publish_properties_len(p, skip)?;
        let mut wire = BytesMut::with_capacity(len);
        write_publish_properties(p, skip, &mut wire);
        let wire = wire.freeze();
        // The typed values may still break a rule the types do not carry (a Payload Format Indicator of 2).
        PublishProperties::decode(wire).map_err(EncodeError::InvalidProperty)
    }

    /// `None` when there are no properties, so that an empty set costs nothing.
    pub fn boxed(self) -> MaybePublishProperties {
        (!self.wire.is_empty()).then(|| Box::new(self))
    }

    /// The typed view of every property.
    pub fn to_properties(&self) -> Properties {
        match decode_section(self.wire.clone(), PropertyScope::Publish, PACKET) {
            Ok(p) => p,
            Err(e) => {
                log::error!("checked PUBLISH properties failed to decode again: {e}");
                Properties::default()
            }
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }

    /// 0x01 Payload Format Indicator: 1 means the payload is UTF-8.
    pub fn payload_format_indicator(&self) -> Option<u8> {
        self.payload_format_indicator
    }

    /// 0x02 Message Expiry Interval in seconds.
    pub fn message_expiry_interval(&self) -> Option<u32> {
        self.message_expiry_interval
    }

    /// 0x23 Topic Alias.
    pub fn topic_alias(&self) -> Option<u16> {
        self.topic_alias
    }

    /// Whether there are Subscription Identifiers (0x0B).
    pub fn has_subscription_identifiers(&self) -> bool {
        self.subscription_ids
    }

    /// The wire form, without the property length in front.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The same properties without those a message does not keep once the broker accepts it: the Topic Alias
    /// (the publisher's connection's) and Subscription Identifiers (the server's to add) (section 3.3.2.3).
    /// Copies only when there is one of those, in the same box; `None` when nothing is left.
    pub fn into_message(mut self: Box<Self>) -> Option<Box<PublishProperties>> {
        if self.topic_alias.is_some() || self.subscription_ids {
            let skip = Replaced {
                expiry: false,
                alias: true,
                subscription_ids: true,
            };
            let mut wire = BytesMut::with_capacity(self.encoded_len(skip));
            self.write(skip, &mut wire);
            self.wire = wire.freeze();
            self.topic_alias = None;
            self.subscription_ids = false;
        }
        (!self.wire.is_empty()).then_some(self)
    }

    /// The message properties of `p` (those a PUBLISH carries, less the Topic Alias and Subscription
    /// Identifiers), for a message the broker publishes itself (a will, an embedding application's).
    pub fn message_of(p: &Properties) -> Result<MaybePublishProperties, EncodeError> {
        let skip = Replaced {
            expiry: false,
            alias: true,
            subscription_ids: true,
        };
        Ok(PublishProperties::written(p, skip)?.boxed())
    }

    /// The same properties in an allocation of their own, so that a value kept for long does not keep alive
    /// the read buffer it was decoded from.
    pub fn detached(&self) -> PublishProperties {
        PublishProperties {
            wire: Bytes::copy_from_slice(&self.wire),
            ..self.clone()
        }
    }

    /// The size of the properties written without those `skip` names.
    pub fn encoded_len(&self, skip: Replaced) -> usize {
        let mut n = self.wire.len();
        if skip.expiry && self.message_expiry_interval.is_some() {
            n -= 5;
        }
        if skip.alias && self.topic_alias.is_some() {
            n -= 3;
        }
        if skip.subscription_ids && self.subscription_ids {
            n -= self
                .each()
                .filter(|(id, _)| *id == 0x0B)
                .map(|(_, range)| range.len())
                .sum::<usize>();
        }
        n
    }

    /// Writes the properties without those `skip` names (and without the property length in front): one copy
    /// when none of them is there.
    pub fn write(&self, skip: Replaced, dst: &mut BytesMut) {
        let cut = (skip.expiry && self.message_expiry_interval.is_some())
            || (skip.alias && self.topic_alias.is_some())
            || (skip.subscription_ids && self.subscription_ids);
        if !cut {
            dst.put_slice(&self.wire);
            return;
        }
        for (id, range) in self.each() {
            let skipped = match id {
                0x02 => skip.expiry,
                0x23 => skip.alias,
                0x0B => skip.subscription_ids,
                _ => false,
            };
            if !skipped {
                dst.put_slice(&self.wire[range]);
            }
        }
    }

    /// Each property's identifier and byte range in `wire`, which `decode` checked.
    fn each(&self) -> impl Iterator<Item = (u8, std::ops::Range<usize>)> + '_ {
        let wire = &self.wire[..];
        let mut pos = 0;
        std::iter::from_fn(move || {
            let start = pos;
            let id = *wire.get(start)?;
            let u16_at = |at: usize| -> Option<usize> {
                Some(usize::from(u16::from_be_bytes([
                    *wire.get(at)?,
                    *wire.get(at + 1)?,
                ])))
            };
            let value_at = start + 1;
            let end = match id {
                0x01 => value_at + 1,
                0x02 => value_at + 4,
                0x23 => value_at + 2,
                0x03 | 0x08 | 0x09 => value_at + 2 + u16_at(value_at)?,
                0x26 => {
                    let name_end = value_at + 2 + u16_at(value_at)?;
                    name_end + 2 + u16_at(name_end)?
                }
                0x0B => value_at + varint_at(wire.get(value_at..)?, PACKET).ok()?.1,
                _ => return None,
            };
            pos = end.min(wire.len());
            Some((id, start..pos))
        })
    }
}

impl PartialEq for PublishProperties {
    /// Equal when every property is: two sections that list the same properties in another order are equal.
    fn eq(&self, other: &PublishProperties) -> bool {
        self.wire == other.wire || self.to_properties() == other.to_properties()
    }
}

impl Eq for PublishProperties {}

impl fmt::Debug for PublishProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_properties().fmt(f)
    }
}

impl From<PublishProperties> for Properties {
    fn from(p: PublishProperties) -> Properties {
        p.to_properties()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::UserProperties;

    fn sample() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            topic_alias: Some(3),
            subscription_identifiers: vec![7, 300],
            user_properties: UserProperties::from_pairs([("a", "1"), ("b", "2")]).unwrap(),
            ..Properties::default()
        }
    }

    #[test]
    fn the_typed_view_gives_back_what_was_written() {
        let p = PublishProperties::from_properties(&sample()).unwrap();
        assert_eq!(p.to_properties(), sample());
        assert_eq!(p.payload_format_indicator(), Some(1));
        assert_eq!(p.message_expiry_interval(), Some(60));
        assert_eq!(p.topic_alias(), Some(3));
        assert!(p.has_subscription_identifiers());
    }

    #[test]
    fn properties_a_publish_cannot_carry_are_left_out() {
        let with_others = Properties {
            session_expiry_interval: Some(5),
            will_delay_interval: Some(9),
            reason_string: Some("no".into()),
            ..sample()
        };
        let p = PublishProperties::from_properties(&with_others).unwrap();
        assert_eq!(p.to_properties(), sample());
    }

    #[test]
    fn a_message_keeps_neither_alias_nor_subscription_identifiers() {
        let p = PublishProperties::from_properties(&sample()).unwrap();
        let kept = Box::new(p).into_message().unwrap();
        assert_eq!(
            kept.to_properties(),
            Properties {
                topic_alias: None,
                subscription_identifiers: Vec::new(),
                ..sample()
            }
        );
        assert_eq!(kept.topic_alias(), None);
        let alias_only = Properties {
            topic_alias: Some(1),
            ..Properties::default()
        };
        let p = PublishProperties::from_properties(&alias_only).unwrap();
        assert_eq!(Box::new(p).into_message(), None);
        let will = Properties {
            will_delay_interval: Some(30),
            user_properties: UserProperties::from_pairs([("k", "v")]).unwrap(),
            ..Properties::default()
        };
        let published = PublishProperties::message_of(&will).unwrap().unwrap();
        assert_eq!(
            published.to_properties(),
            Properties {
                will_delay_interval: None,
                ..will
            }
        );
        assert_eq!(PublishProperties::message_of(&alias_only).unwrap(), None);
    }

    #[test]
    fn replaced_properties_are_cut_from_what_is_written() {
        let p = PublishProperties::from_properties(&sample()).unwrap();
        for (expiry, alias, subscription_ids) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (false, false, true),
            (true, true, true),
        ] {
            let skip = Replaced {
                expiry,
                alias,
                subscription_ids,
            };
            let mut out = BytesMut::new();
            p.write(skip, &mut out);
            assert_eq!(out.len(), p.encoded_len(skip));
            let written = PublishProperties::decode(out.freeze())
                .unwrap()
                .to_properties();
            let full = sample();
            assert_eq!(
                written,
                Properties {
                    message_expiry_interval: full.message_expiry_interval.filter(|_| !expiry),
                    topic_alias: full.topic_alias.filter(|_| !alias),
                    subscription_identifiers: if subscription_ids {
                        Vec::new()
                    } else {
                        full.subscription_identifiers.clone()
                    },
                    ..full
                }
            );
        }
    }

    #[test]
    fn sections_that_break_the_rules_are_refused() {
        let refused = |bytes: &[u8]| PublishProperties::decode(Bytes::copy_from_slice(bytes));
        // [MQTT-2.2.2-2]: a property other than a User Property or Subscription Identifier twice.
        assert!(matches!(
            refused(&[0x01, 0x00, 0x01, 0x01]),
            Err(DecodeError::DuplicateProperty { id: 0x01, .. })
        ));
        assert!(matches!(
            refused(&[0x23, 0, 1, 0x23, 0, 2]),
            Err(DecodeError::DuplicateProperty { id: 0x23, .. })
        ));
        // Session Expiry Interval is not a PUBLISH property; 0x7F is no property at all.
        assert!(matches!(
            refused(&[0x11, 0, 0, 0, 1]),
            Err(DecodeError::PropertyNotAllowed { id: 0x11, .. })
        ));
        assert!(matches!(
            refused(&[0x7F]),
            Err(DecodeError::UnknownProperty { id: 0x7F })
        ));
        // Payload Format Indicator 2, Subscription Identifier 0.
        assert!(matches!(
            refused(&[0x01, 0x02]),
            Err(DecodeError::InvalidPropertyValue { id: 0x01 })
        ));
        assert!(matches!(
            refused(&[0x0B, 0x00]),
            Err(DecodeError::InvalidPropertyValue { id: 0x0B })
        ));
        // Cut short, and a Content Type that is not UTF-8 [MQTT-1.5.4-1].
        assert!(matches!(
            refused(&[0x02, 0, 0]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            refused(&[0x09, 0, 5, 1]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            refused(&[0x03, 0, 1, 0xFF]),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        // Repeated User Properties and Subscription Identifiers are allowed.
        let fine = refused(&[
            0x0B, 1, 0x0B, 2, 0x26, 0, 1, b'k', 0, 0, 0x26, 0, 1, b'k', 0, 0,
        ]);
        assert_eq!(
            fine.unwrap().to_properties().subscription_identifiers,
            [1, 2]
        );
    }

    #[test]
    fn the_same_properties_in_another_order_are_equal() {
        let a = PublishProperties::decode(Bytes::from_static(&[0x01, 0x01, 0x23, 0, 4])).unwrap();
        let b = PublishProperties::decode(Bytes::from_static(&[0x23, 0, 4, 0x01, 0x01])).unwrap();
        assert_eq!(a, b);
        let c = PublishProperties::decode(Bytes::from_static(&[0x23, 0, 5, 0x01, 0x01])).unwrap();
        assert_ne!(a, c);
    }
}
