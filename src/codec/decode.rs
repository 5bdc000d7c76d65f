//! Pure decoding of MQTT 3.1 / 3.1.1 packets from a byte buffer, validating every field.
//! Payloads and strings become slices of the buffer, never copies; performs no I/O.

use super::error::DecodeError;
use super::header::{read_fixed_header, FixedHeader, PacketType};
use super::packet::*;
use crate::topic::{TopicFilter, TopicName};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

pub use super::header::Role;

/// Decodes one packet from the front of `src`, or returns `Ok(None)` if more bytes are needed.
///
/// On success exactly one packet's bytes are consumed. `max_packet_size` bounds the whole packet,
/// fixed header included, and is checked as soon as the fixed header is readable; while the body is
/// incomplete, `src` is given room for the rest of the frame so the next read can take it whole.
/// `DecodeError::UnsupportedProtocolLevel` is returned after the CONNECT frame has been consumed.
pub fn decode_packet(
    src: &mut BytesMut,
    role: Role,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = read_fixed_header(src, role, max_packet_size)? else {
        return Ok(None);
    };
    let frame_len = header.frame_len();
    if src.len() < frame_len {
        // The size was checked against the limit, so this reservation is bounded by it.
        src.reserve(frame_len - src.len());
        return Ok(None);
    }
    src.advance(header.header_len);
    let body = src.split_to(header.remaining_len).freeze();
    decode_body(header, body).map(Some)
}

fn decode_body(header: FixedHeader, body: Bytes) -> Result<Packet, DecodeError> {
    let mut r = Reader {
        buf: body,
        packet: header.packet_type.name(),
    };
    let packet = match header.packet_type {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(&mut r)?),
        PacketType::Publish => Packet::Publish(decode_publish(header.flags, &mut r)?),
        PacketType::PubAck => Packet::PubAck(r.packet_id()?),
        PacketType::PubRec => Packet::PubRec(r.packet_id()?),
        PacketType::PubRel => Packet::PubRel(r.packet_id()?),
        PacketType::PubComp => Packet::PubComp(r.packet_id()?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(&mut r)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(&mut r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(&mut r)?),
        PacketType::UnsubAck => Packet::UnsubAck(r.packet_id()?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect,
    };
    r.finish()?;
    Ok(packet)
}

/// A cursor over a packet body that turns running out of bytes into `DecodeError::Truncated`.
struct Reader {
    buf: Bytes,
    packet: &'static str,
}

impl Reader {
    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(self.truncated());
        }
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(self.truncated());
        }
        Ok(self.buf.get_u16())
    }

    fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        let value = self.u16()?;
        PacketId::new(value).ok_or(DecodeError::ZeroPacketId {
            packet: self.packet,
        })
    }

    /// A field prefixed by its two-byte length, as a slice of the body.
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.buf.len() < len {
            return Err(self.truncated());
        }
        Ok(self.buf.split_to(len))
    }

    /// A UTF-8 string field, checked for well-formedness and U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2].
    fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::NullCharacter {
                packet: self.packet,
            });
        }
        // Rust's UTF-8 validation also refuses encoded surrogates, as [MQTT-1.5.3-1] requires.
        ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8 {
            packet: self.packet,
        })
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            })
        }
    }
}

/// The CONNECT flags byte, checked against [MQTT-3.1.2-3] and [MQTT-3.1.2-11] to [MQTT-3.1.2-22].
struct ConnectFlags {
    username: bool,
    password: bool,
    will: Option<(QoS, bool)>,
    clean_session: bool,
}

impl ConnectFlags {
    fn parse(byte: u8) -> Result<ConnectFlags, DecodeError> {
        if byte & 0b0000_0001 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_flag = byte & 0b0000_0100 != 0;
        let will_qos = (byte >> 3) & 0b11;
        let will_retain = byte & 0b0010_0000 != 0;
        let username = byte & 0b1000_0000 != 0;
        let password = byte & 0b0100_0000 != 0;
        let will = if will_flag {
            let qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillQoS)?;
            Some((qos, will_retain))
        } else if will_qos != 0 {
            return Err(DecodeError::WillQoSWithoutWill(will_qos));
        } else if will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        } else {
            None
        };
        if password && !username {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        Ok(ConnectFlags {
            username,
            password,
            will,
            clean_session: byte & 0b0000_0010 != 0,
        })
    }
}

/// Matches the protocol name to the level: "MQIsdp" goes with 3, "MQTT" with 4 [MQTT-3.1.2-1].
///
/// A known name with an unknown level is `UnsupportedProtocolLevel`, so the broker can answer
/// CONNACK 0x01 [MQTT-3.1.2-2]; an unknown name, or a known level under the other name, is refused.
fn protocol_level(name: &[u8], level: u8) -> Result<ProtocolLevel, DecodeError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolLevel::V311),
        (b"MQIsdp", 3) => Ok(ProtocolLevel::V31),
        (b"MQTT" | b"MQIsdp", 0..=2 | 5..) => Err(DecodeError::UnsupportedProtocolLevel(level)),
        _ => Err(DecodeError::InvalidProtocolName {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        }),
    }
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = protocol_level(&name, r.u8()?)?;
    let flags = ConnectFlags::parse(r.u8()?)?;
    let keep_alive_secs = r.u16()?;
    let client_id = ClientId::new(r.string()?);
    let will = match flags.will {
        Some((qos, retain)) => Some(LastWill {
            topic: TopicName::new(r.string()?)?,
            payload: r.binary()?,
            qos,
            retain,
        }),
        None => None,
    };
    let username = if flags.username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags.password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        level,
        clean_session: flags.clean_session,
        keep_alive_secs,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_connack(r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::ConnAckReservedFlags(flags));
    }
    let code = r.u8()?;
    let code =
        ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnectReturnCode(code))?;
    Ok(ConnAck {
        session_present: flags == 1,
        code,
    })
}

/// Decodes a PUBLISH body; the fixed header flags were checked by `read_fixed_header`.
fn decode_publish(flags: u8, r: &mut Reader) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidPublishQoS)?;
    let topic = TopicName::new(r.string()?)?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id()?),
    };
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
    })
}

fn decode_subscribe(r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = TopicFilter::new(r.string()?)?;
        let requested = r.u8()?;
        // Any value above 2 has a reserved bit set or asks for QoS 3 [MQTT-3.8.3-4].
        let qos = QoS::from_u8(requested).ok_or(DecodeError::InvalidRequestedQoS(requested))?;
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoSubscribeFilters);
    }
    Ok(Subscribe { packet_id, filters })
}

fn decode_suback(r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut return_codes = Vec::with_capacity(r.buf.len());
    while !r.is_empty() {
        let code = r.u8()?;
        return_codes.push(match code {
            0x80 => SubscribeReturnCode::Failure,
            _ => SubscribeReturnCode::Success(
                QoS::from_u8(code).ok_or(DecodeError::InvalidSubAckReturnCode(code))?,
            ),
        });
    }
    if return_codes.is_empty() {
        return Err(DecodeError::NoSubAckReturnCodes);
    }
    Ok(SubAck {
        packet_id,
        return_codes,
    })
}

fn decode_unsubscribe(r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(TopicFilter::new(r.string()?)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoUnsubscribeFilters);
    }
    Ok(Unsubscribe { packet_id, filters })
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
