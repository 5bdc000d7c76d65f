//! The fixed header shared by decoding and encoding: packet types, their flags and the remaining length.
//! Owns the rules of section 2.2 that can be checked before the body has arrived; reads no body fields.

use super::error::DecodeError;
use super::packet::ProtocolLevel;
use bytes::BufMut;

/// The largest remaining length the four-byte variable-length encoding can carry.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Which side of the connection is decoding, which decides the packet types it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The broker side: decodes what clients send and rejects CONNACK, SUBACK, UNSUBACK and PINGRESP.
    Server,
    /// The client side: decodes what servers send and rejects CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT.
    Client,
}

/// The fifteen control packet types, numbered as on the wire (AUTH is MQTT 5.0 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// CONNECT (1).
    Connect = 1,
    /// CONNACK (2).
    ConnAck = 2,
    /// PUBLISH (3).
    Publish = 3,
    /// PUBACK (4).
    PubAck = 4,
    /// PUBREC (5).
    PubRec = 5,
    /// PUBREL (6).
    PubRel = 6,
    /// PUBCOMP (7).
    PubComp = 7,
    /// SUBSCRIBE (8).
    Subscribe = 8,
    /// SUBACK (9).
    SubAck = 9,
    /// UNSUBSCRIBE (10).
    Unsubscribe = 10,
    /// UNSUBACK (11).
    UnsubAck = 11,
    /// PINGREQ (12).
    PingReq = 12,
    /// PINGRESP (13).
    PingResp = 13,
    /// DISCONNECT (14).
    Disconnect = 14,
    /// AUTH (15, MQTT 5.0).
    Auth = 15,
}

impl PacketType {
    /// The packet type in the high nibble of a first byte; 0 is reserved [MQTT-2.2.1] (15 is AUTH, which only
    /// MQTT 5.0 accepts: see `accepted_by`).
    pub fn from_first_byte(byte: u8) -> Result<PacketType, DecodeError> {
        use PacketType::*;
        Ok(match byte >> 4 {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            other => return Err(DecodeError::ReservedPacketType(other)),
        })
    }

    /// The packet's name as the specification writes it.
    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }

    /// The fixed flags of every type but PUBLISH: 0b0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, else 0 [MQTT-2.2.2-1].
    pub fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }

    /// The first byte of a packet of this type that is not PUBLISH.
    pub fn first_byte(self) -> u8 {
        (self as u8) << 4 | self.required_flags()
    }

    /// Whether a peer in the other role may send this packet type to `role` at `level`: AUTH only in MQTT 5.0,
    /// where the server may also send DISCONNECT.
    pub fn accepted_by(self, role: Role, level: ProtocolLevel) -> bool {
        use PacketType::*;
        match role {
            Role::Server => !matches!(self, ConnAck | SubAck | UnsubAck | PingResp),
            Role::Client => {
                !matches!(self, Connect | Subscribe | Unsubscribe | PingReq)
                    && (self != Disconnect || level.is_v5())
            }
        }
    }
}

/// The fixed header of a packet whose type, flags and remaining length are known and valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The control packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header: the first byte plus one to four length bytes.
    pub header_len: usize,
    /// Bytes of variable header and payload that follow the fixed header.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// The size of the whole packet, fixed header included.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads and checks the fixed header at the start of `src`, or returns `None` if it is not complete yet.
///
/// Everything that can be judged from the fixed header is judged here, before the body is buffered:
/// the type, the direction, the flags and the size limit (which counts the whole packet).
pub fn read_fixed_header(
    src: &[u8],
    role: Role,
    level: ProtocolLevel,
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = src.split_first() else {
        return Ok(None);
    };
    let packet_type = PacketType::from_first_byte(first)?;
    if packet_type == PacketType::Auth && !level.is_v5() {
        return Err(DecodeError::ReservedPacketType(15));
    }
    if !packet_type.accepted_by(role, level) {
        // The sender is the peer, which plays the other role.
        let sender = match role {
            Role::Server => "client",
            Role::Client => "server",
        };
        return Err(DecodeError::WrongDirection {
            packet: packet_type.name(),
            sender,
        });
    }
    let flags = first & 0x0F;
    check_flags(packet_type, flags)?;
    let Some((remaining_len, len_bytes)) = read_remaining_length(rest)? else {
        return Ok(None);
    };
    let header = FixedHeader {
        packet_type,
        flags,
        header_len: 1 + len_bytes,
        remaining_len,
    };
    if header.frame_len() > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: header.frame_len(),
            limit: max_packet_size,
        });
    }
    Ok(Some(header))
}

fn check_flags(packet_type: PacketType, flags: u8) -> Result<(), DecodeError> {
    if packet_type != PacketType::Publish {
        if flags != packet_type.required_flags() {
            return Err(DecodeError::InvalidFlags {
                packet: packet_type.name(),
                flags,
            });
        }
        return Ok(());
    }
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return Err(DecodeError::InvalidPublishQoS);
    }
    if qos == 0 && flags & 0b1000 != 0 {
        return Err(DecodeError::DupOnQoS0);
    }
    Ok(())
}

/// Reads a variable-length remaining length: the value and the bytes it took, or `None` if incomplete.
pub fn read_remaining_length(src: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in src.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if src.len() >= 4 {
        return Err(DecodeError::MalformedRemainingLength);
    }
    Ok(None)
}

/// How many bytes the remaining length `len` takes on the wire (at most 4 for valid lengths).
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `len` as a variable-length remaining length; the caller has checked it is at most `MAX_REMAINING_LENGTH`.
pub fn write_remaining_length(mut len: usize, dst: &mut impl BufMut) {
    loop {
        let mut byte = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if len == 0 {
            return;
        }
    }
}
