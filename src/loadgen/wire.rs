//! The load generator's single door to the MQTT wire format: packet encoding and decoding.
//! Owns the pre-encoded PUBLISH template and where its patchable bytes sit; does no I/O.

use crate::codec::{self, Packet, PacketId, QoS, Role};
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

/// Appends the encoding of `packet` to `dst`.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), WireError> {
    codec::encode_packet(packet, dst).map_err(|e| WireError::Encode(e.to_string()))
}

/// Takes one complete packet off the front of `src`, or `None` when more bytes are needed.
///
/// Decodes as a client, so a broker that sends client-only packets is caught.
pub fn decode(src: &mut BytesMut) -> Result<Option<Packet>, WireError> {
    codec::decode_packet(src, Role::Client, MAX_PACKET_SIZE)
        .map_err(|e| WireError::Decode(e.to_string()))
}

/// One PUBLISH encoded once, into which only the packet identifier and the payload stamp are patched.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    payload_at: usize,
    packet_id_at: Option<usize>,
}

impl PublishTemplate {
    /// Encodes a PUBLISH of `payload_len` filler bytes to `topic`; `payload_len` must hold a stamp.
    pub fn new(topic: &str, qos: QoS, payload_len: usize) -> Result<PublishTemplate, WireError> {
        if payload_len < STAMP_LEN {
            return Err(WireError::Encode(format!(
                "payload of {payload_len} bytes cannot hold the {STAMP_LEN}-byte stamp"
            )));
        }
        crate::topic::TopicName::new(topic).map_err(|e| WireError::Encode(e.to_string()))?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => PacketId::new(1),
        };
        let mut dst = BytesMut::new();
        codec::encode_publish_parts(
            false,
            qos,
            false,
            topic,
            packet_id,
            &filler(payload_len),
            &mut dst,
        )
        .map_err(|e| WireError::Encode(e.to_string()))?;
        let bytes = dst.to_vec();
        // The payload is the tail of a PUBLISH and the packet identifier, when present, sits right before it.
        let payload_at = bytes.len() - payload_len;
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| payload_at - 2);
        Ok(PublishTemplate {
            bytes,
            payload_at,
            packet_id_at,
        })
    }

    /// Encoded size of one message.
    pub fn len(&self) -> usize {
        self.bytes.len()
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

    fn patched(qos: QoS) -> Publish {
        let t = PublishTemplate::new("bench/t/1", qos, 32).unwrap();
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
        match decode(&mut out).unwrap() {
            Some(Packet::Publish(p)) => {
                assert!(out.is_empty());
                p
            }
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
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
        assert!(PublishTemplate::new("a", QoS::AtMostOnce, STAMP_LEN - 1).is_err());
    }
}
