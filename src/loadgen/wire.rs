//! The load generator's single door to the MQTT wire format: packet encoding and decoding at the connection's
//! protocol level. Owns the pre-encoded PUBLISH template and where its patchable bytes sit; does no I/O.

use crate::codec::header::read_remaining_length;
use crate::codec::{
    self, Packet, PacketId, Properties, ProtocolLevel, PublishExtras, PublishHead, QoS, Role,
    UserProperties,
};
use bytes::BytesMut;

use super::payload::{filler, STAMP_LEN};

/// Largest packet the generator accepts from a broker.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

/// Why bytes could not be turned into a packet or back.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The broker sent bytes that are not a valid packet.
    #[error("malformed packet from the broker: {0}")]
    Decode(String),
    /// A packet could not be encoded.
    #[error("cannot encode packet: {0}")]
    Encode(String),
}

/// Appends the encoding of `packet` at protocol `level` to `dst` (a CONNECT is written at the level it names).
pub fn encode(packet: &Packet, level: ProtocolLevel, dst: &mut BytesMut) -> Result<(), WireError> {
    codec::encode_packet_at(packet, level, dst).map_err(|e| WireError::Encode(e.to_string()))
}

/// Takes one complete packet at protocol `level` off the front of `src`, or `None` when more bytes are needed.
///
/// Decodes as a client, so a broker that sends client-only packets is caught.
pub fn decode(src: &mut BytesMut, level: ProtocolLevel) -> Result<Option<Packet>, WireError> {
    codec::decode_packet_at(src, Role::Client, level, MAX_PACKET_SIZE)
        .map_err(|e| WireError::Decode(e.to_string()))
}

/// PUBLISH properties holding `n` User Properties ("k0", "v0"), ("k1", "v1")...; empty when `n` is 0.
pub fn user_properties(n: u16) -> Properties {
    Properties {
        // Names and values of at most six bytes are always within the 65,535-byte limit.
        user_properties: UserProperties::from_pairs(
            (0..n).map(|i| (format!("k{i}"), format!("v{i}"))),
        )
        .unwrap_or_default(),
        ..Properties::default()
    }
}

/// One PUBLISH encoded once, into which only the packet identifier and the payload stamp are patched.
///
/// Its properties (MQTT 5.0) are encoded with it, so sending a message never builds or encodes them again.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    payload_at: usize,
    packet_id_at: Option<usize>,
    level: ProtocolLevel,
}

impl PublishTemplate {
    /// Encodes a PUBLISH at protocol `level` of `payload_len` filler bytes to `topic`, carrying `properties`
    /// (which must be empty below MQTT 5.0); `payload_len` must hold a stamp.
    pub fn new(
        topic: &str,
        qos: QoS,
        payload_len: usize,
        level: ProtocolLevel,
        properties: &Properties,
    ) -> Result<PublishTemplate, WireError> {
        if payload_len < STAMP_LEN {
            return Err(WireError::Encode(format!(
                "payload of {payload_len} bytes cannot hold the {STAMP_LEN}-byte stamp"
            )));
        }
        if !level.is_v5() && !properties.is_empty() {
            return Err(WireError::Encode(format!(
                "PUBLISH properties need MQTT 5.0, not protocol level {}",
                level.as_u8()
            )));
        }
        crate::topic::TopicName::new(topic).map_err(|e| WireError::Encode(e.to_string()))?;
        let head = PublishHead {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: match qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce | QoS::ExactlyOnce => PacketId::new(1),
            },
        };
        let payload = filler(payload_len);
        let mut dst = BytesMut::new();
        let encoded = if level.is_v5() {
            let properties = codec::PublishProperties::from_properties(properties)
                .map_err(|e| WireError::Encode(e.to_string()))?;
            codec::encode_publish_v5(
                head,
                Some(&properties),
                &PublishExtras::default(),
                &payload,
                &mut dst,
            )
        } else {
            codec::encode_publish_parts(
                head.dup,
                head.qos,
                head.retain,
                topic,
                head.packet_id,
                &payload,
                &mut dst,
            )
        };
        encoded.map_err(|e| WireError::Encode(e.to_string()))?;
        let bytes = dst.to_vec();
        // The payload is the tail of a PUBLISH. The packet identifier, when present, follows the topic: after the
        // first byte, the remaining length and the topic's two-byte length (MQTT 5.0 properties come after it).
        let payload_at = bytes.len() - payload_len;
        let length_bytes = bytes
            .get(1..)
            .and_then(|rest| read_remaining_length(rest).ok().flatten())
            .map(|(_, n)| n)
            .ok_or_else(|| WireError::Encode("PUBLISH template without a fixed header".into()))?;
        let packet_id_at = head.packet_id.map(|_| 1 + length_bytes + 2 + topic.len());
        Ok(PublishTemplate {
            bytes,
            payload_at,
            packet_id_at,
            level,
        })
    }

    /// Encoded size of one message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The protocol level the template was encoded at.
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }

    /// Appends one copy of the template to `out` and returns the range of the copy's stamp and packet id.
    pub fn append(&self, out: &mut BytesMut) -> Patch {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        Patch {
            stamp_at: base + self.payload_at,
            packet_id_at: self.packet_id_at.map(|at| base + at),
        }
    }
}

/// Where, in an output buffer, the variable bytes of one appended PUBLISH sit.
#[derive(Debug, Clone, Copy)]
pub struct Patch {
    /// Offset of the payload stamp.
    pub stamp_at: usize,
    /// Offset of the two-byte packet identifier, for QoS 1 and 2.
    pub packet_id_at: Option<usize>,
}

impl Patch {
    /// Writes the packet identifier into the appended copy.
    pub fn set_packet_id(&self, out: &mut [u8], id: PacketId) {
        if let Some(slot) = self.packet_id_at.and_then(|at| out.get_mut(at..at + 2)) {
            slot.copy_from_slice(&id.get().to_be_bytes());
        }
    }

    /// The stamp area of the appended copy.
    pub fn stamp<'a>(&self, out: &'a mut [u8]) -> &'a mut [u8] {
        out.get_mut(self.stamp_at..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Publish;
    use crate::loadgen::payload::Stamp;

    /// Appends the template behind three bytes of other data, patches it and decodes it back at `level`.
    fn patched_at(t: &PublishTemplate, level: ProtocolLevel) -> Publish {
        let mut out = BytesMut::new();
        out.extend_from_slice(b"xyz");
        let patch = t.append(&mut out);
        patch.set_packet_id(&mut out, PacketId::new(0x1234).unwrap());
        Stamp {
            publisher: 3,
            seq: 42,
            sent_ns: 99,
        }
        .write(patch.stamp(&mut out));
        assert_eq!(out.len(), 3 + t.len());
        let _ = out.split_to(3);
        match decode(&mut out, level).unwrap() {
            Some(Packet::Publish(p)) => {
                assert!(out.is_empty());
                p
            }
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    fn patched(qos: QoS) -> Publish {
        let level = ProtocolLevel::V311;
        let t = PublishTemplate::new("bench/t/1", qos, 32, level, &Properties::default()).unwrap();
        patched_at(&t, level)
    }

    #[test]
    fn template_patches_stamp_and_packet_id() {
        let p = patched(QoS::AtLeastOnce);
        assert_eq!(p.packet_id, PacketId::new(0x1234));
        assert_eq!(p.topic.as_str(), "bench/t/1");
        assert_eq!(p.payload.len(), 32);
        let s = Stamp::read(&p.payload).unwrap();
        assert_eq!((s.publisher, s.seq, s.sent_ns), (3, 42, 99));
    }

    #[test]
    fn qos0_template_has_no_packet_id() {
        let p = patched(QoS::AtMostOnce);
        assert_eq!(p.packet_id, None);
        assert_eq!(Stamp::read(&p.payload).unwrap().seq, 42);
    }

    #[test]
    fn template_refuses_a_payload_too_small_for_the_stamp() {
        let none = Properties::default();
        assert!(PublishTemplate::new(
            "a",
            QoS::AtMostOnce,
            STAMP_LEN - 1,
            ProtocolLevel::V311,
            &none
        )
        .is_err());
    }

    #[test]
    fn v5_template_with_user_properties_round_trips_at_level_5() {
        let level = ProtocolLevel::V5;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let t = PublishTemplate::new("bench/t/7", qos, 64, level, &user_properties(2)).unwrap();
            assert_eq!(t.level(), level);
            let p = patched_at(&t, level);
            assert_eq!(p.qos, qos);
            let want_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(0x1234).unwrap());
            assert_eq!(
                p.packet_id, want_id,
                "the packet id sits before the properties"
            );
            assert_eq!(p.topic.as_str(), "bench/t/7");
            assert_eq!(p.payload.len(), 64);
            let s = Stamp::read(&p.payload).unwrap();
            assert_eq!((s.publisher, s.seq, s.sent_ns), (3, 42, 99));
            let properties = p.properties.as_deref().unwrap().to_properties();
            let users: Vec<(&str, &str)> = properties.user_properties.iter().collect();
            assert_eq!(users, [("k0", "v0"), ("k1", "v1")]);
            assert_eq!(
                properties,
                user_properties(2),
                "nothing but the user properties"
            );
        }
    }

    #[test]
    fn v5_template_is_the_codecs_encoding_of_the_same_publish() {
        let properties = user_properties(2);
        let t = PublishTemplate::new("a/b", QoS::AtLeastOnce, 16, ProtocolLevel::V5, &properties)
            .unwrap();
        let mut out = BytesMut::new();
        let patch = t.append(&mut out);
        patch.set_packet_id(&mut out, PacketId::new(7).unwrap());
        let mut expected = BytesMut::new();
        codec::encode_publish_v5(
            PublishHead {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "a/b",
                packet_id: PacketId::new(7),
            },
            Some(&codec::PublishProperties::from_properties(&properties).unwrap()),
            &PublishExtras::default(),
            &filler(16),
            &mut expected,
        )
        .unwrap();
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn many_user_properties_move_the_payload_but_not_the_packet_id() {
        // 200 properties make the remaining length take two bytes.
        let t = PublishTemplate::new(
            "t",
            QoS::ExactlyOnce,
            100,
            ProtocolLevel::V5,
            &user_properties(200),
        )
        .unwrap();
        assert!(t.len() > 128 + 100);
        let p = patched_at(&t, ProtocolLevel::V5);
        assert_eq!(p.packet_id, PacketId::new(0x1234));
        let properties = p.properties.as_deref().unwrap().to_properties();
        assert_eq!(properties.user_properties.len(), 200);
        assert_eq!(Stamp::read(&p.payload).unwrap().publisher, 3);
    }

    #[test]
    fn v5_template_without_properties_has_an_empty_section() {
        let t = PublishTemplate::new(
            "t",
            QoS::AtMostOnce,
            16,
            ProtocolLevel::V5,
            &user_properties(0),
        )
        .unwrap();
        let v3 = PublishTemplate::new(
            "t",
            QoS::AtMostOnce,
            16,
            ProtocolLevel::V311,
            &user_properties(0),
        )
        .unwrap();
        assert_eq!(
            t.len(),
            v3.len() + 1,
            "one byte for the zero property length"
        );
        assert_eq!(patched_at(&t, ProtocolLevel::V5).properties, None);
    }

    #[test]
    fn properties_below_level_5_are_refused() {
        for level in [ProtocolLevel::V31, ProtocolLevel::V311] {
            let err = PublishTemplate::new("t", QoS::AtMostOnce, 16, level, &user_properties(1))
                .unwrap_err();
            assert!(err.to_string().contains("MQTT 5.0"), "{err}");
        }
    }

    #[test]
    fn v31_template_is_the_311_encoding() {
        let none = Properties::default();
        let a = PublishTemplate::new("t", QoS::AtLeastOnce, 16, ProtocolLevel::V31, &none).unwrap();
        let b =
            PublishTemplate::new("t", QoS::AtLeastOnce, 16, ProtocolLevel::V311, &none).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(
            patched_at(&a, ProtocolLevel::V31).packet_id,
            PacketId::new(0x1234)
        );
    }

    #[test]
    fn acks_with_reason_codes_decode_at_level_5_only() {
        use crate::codec::{Ack, ReasonCode};
        // PUBACK, packet id 5, reason 0x97 Quota exceeded, no properties.
        let bytes = [0x40, 0x03, 0x00, 0x05, 0x97];
        let mut src = BytesMut::from(&bytes[..]);
        match decode(&mut src, ProtocolLevel::V5).unwrap() {
            Some(Packet::PubAck(Ack {
                packet_id, reason, ..
            })) => {
                assert_eq!(packet_id.get(), 5);
                assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let mut src = BytesMut::from(&bytes[..]);
        assert!(
            decode(&mut src, ProtocolLevel::V311).is_err(),
            "3.1.1 PUBACK is 2 bytes"
        );
        // What the subscriber answers: PUBACK Success, written in the short form at level 5.
        let mut out = BytesMut::new();
        let ack = Packet::PubAck(PacketId::new(5).unwrap().into());
        encode(&ack, ProtocolLevel::V5, &mut out).unwrap();
        assert_eq!(&out[..], &[0x40, 0x02, 0x00, 0x05]);
    }

    #[test]
    fn disconnect_from_the_broker_decodes_at_level_5_and_is_refused_below() {
        let bytes = [0xE0, 0x01, 0x8B];
        let mut src = BytesMut::from(&bytes[..]);
        assert!(matches!(
            decode(&mut src, ProtocolLevel::V5).unwrap(),
            Some(Packet::Disconnect(d)) if d.reason.0 == 0x8B
        ));
        let mut src = BytesMut::from(&bytes[..]);
        assert!(decode(&mut src, ProtocolLevel::V311).is_err());
    }
}
