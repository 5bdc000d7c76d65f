//! MQTT wire format: packets, pure decode/encode functions and the tokio-util codec over them.
//! Owns framing and field validation; never does I/O and knows nothing of sessions or routing.

pub mod decode;
pub mod encode;
pub mod error;
pub mod header;
pub mod packet;
pub mod properties;
pub mod publish_properties;
pub mod reason;
pub mod user_properties;

pub use decode::{decode_packet, decode_packet_at, Role};
pub use encode::{
    encode_packet, encode_packet_at, encode_publish, encode_publish_parts, encode_publish_v5,
    publish_v5_size, PublishExtras, PublishHead,
};
pub use error::{DecodeError, EncodeError};
pub use header::{FixedHeader, PacketType, MAX_REMAINING_LENGTH};
pub use packet::*;
pub use publish_properties::{MaybePublishProperties, PublishProperties};
pub use user_properties::UserProperties;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// The tokio-util framing of MQTT packets for one side of a connection, with a packet size limit. It speaks
/// the protocol level of the connection: a server codec takes it from the CONNECT it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttCodec {
    role: Role,
    level: ProtocolLevel,
    max_packet_size: usize,
}

impl MqttCodec {
    /// A codec for the broker side: decodes what clients send.
    pub fn server(max_packet_size_bytes: usize) -> MqttCodec {
        MqttCodec {
            role: Role::Server,
            level: ProtocolLevel::V311,
            max_packet_size: max_packet_size_bytes,
        }
    }

    /// A codec for the client side: decodes what a broker sends.
    pub fn client(max_packet_size_bytes: usize) -> MqttCodec {
        MqttCodec {
            role: Role::Client,
            level: ProtocolLevel::V311,
            max_packet_size: max_packet_size_bytes,
        }
    }

    /// The same codec speaking `level` (for a client, the level of the CONNECT it sends).
    pub fn at_level(self, level: ProtocolLevel) -> MqttCodec {
        MqttCodec { level, ..self }
    }

    /// The protocol level spoken.
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }
}

impl Decoder for MqttCodec {
    type Item = Packet;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let packet = decode_packet_at(src, self.role, self.level, self.max_packet_size)?;
        if let Some(Packet::Connect(connect)) = &packet {
            self.level = connect.level;
        }
        Ok(packet)
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = EncodeError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_packet_at(packet, self.level, dst)
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = EncodeError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_packet_at(&packet, self.level, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_bytes() -> Vec<u8> {
        // PUBLISH QoS 1, topic "a/b", packet id 10, payload "hi".
        vec![
            0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
        ]
    }

    #[test]
    fn decoder_waits_for_the_whole_frame_and_reserves_room_for_it() {
        let mut codec = MqttCodec::client(1024);
        let bytes = publish_bytes();
        let mut buf = BytesMut::with_capacity(0);
        buf.extend_from_slice(&bytes[..3]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() >= bytes.len());
        assert_eq!(
            buf.len(),
            3,
            "nothing is consumed before the frame is complete"
        );
        buf.extend_from_slice(&bytes[3..]);
        let packet = codec.decode(&mut buf).unwrap().unwrap();
        assert!(matches!(packet, Packet::Publish(ref p) if &p.payload[..] == b"hi"));
        assert!(buf.is_empty());
    }

    #[test]
    fn decoder_refuses_an_oversized_packet_from_its_fixed_header() {
        let mut codec = MqttCodec::server(100);
        // PUBLISH announcing 200 bytes of body; only the fixed header has arrived.
        let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::PacketTooLarge {
                size: 203,
                limit: 100
            }
        ));
        assert!(buf.capacity() < 200, "the body must not be buffered");
    }

    #[test]
    fn encoder_accepts_owned_and_borrowed_packets() {
        let mut codec = MqttCodec::server(1024);
        let mut dst = BytesMut::new();
        codec.encode(Packet::PingResp, &mut dst).unwrap();
        codec.encode(&Packet::PingResp, &mut dst).unwrap();
        assert_eq!(&dst[..], &[0xD0, 0x00, 0xD0, 0x00]);
    }

    #[test]
    fn io_errors_convert_into_codec_errors() {
        let io = std::io::Error::other("reset");
        assert!(matches!(DecodeError::from(io), DecodeError::Io(_)));
        let io = std::io::Error::other("reset");
        assert!(matches!(EncodeError::from(io), EncodeError::Io(_)));
    }
}

#[cfg(test)]
#[path = "v5_tests.rs"]
mod v5_tests;
