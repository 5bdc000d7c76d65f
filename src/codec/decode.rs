//! Pure decoding of MQTT 3.1, 3.1.1 and 5.0 packets from a byte buffer, validating every field.
//! Payloads and strings become slices of the buffer, never copies; performs no I/O.

use super::error::DecodeError;
use super::header::{read_fixed_header, FixedHeader, PacketType};
use super::packet::*;
use super::properties::{decode_properties, decode_string, read_varint, PropertyScope};
use super::reason;
use crate::topic::{TopicFilter, TopicName};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

pub use super::header::Role;

/// Decodes one MQTT 3.1.1 (or 3.1) packet from the front of `src`, or returns `Ok(None)` if more bytes are
/// needed; `decode_packet_at` decodes at any level.
pub fn decode_packet(
    src: &mut BytesMut,
    role: Role,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode_packet_at(src, role, ProtocolLevel::V311, max_packet_size)
}

/// Decodes one packet at protocol `level` from the front of `src`, or returns `Ok(None)` if more bytes are
/// needed. A CONNECT is read at the level it names, whatever `level` says.
///
/// On success exactly one packet's bytes are consumed. `max_packet_size` bounds the whole packet,
/// fixed header included, and is checked as soon as the fixed header is readable; while the body is
/// incomplete, `src` is given room for the rest of the frame so the next read can take it whole.
/// `DecodeError::UnsupportedProtocolLevel` is returned after the CONNECT frame has been consumed.
pub fn decode_packet_at(
    src: &mut BytesMut,
    role: Role,
    level: ProtocolLevel,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = read_fixed_header(src, role, level, max_packet_size)? else {
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
    decode_body(header, level, body).map(Some)
}

fn decode_body(
    header: FixedHeader,
    level: ProtocolLevel,
    body: Bytes,
) -> Result<Packet, DecodeError> {
    let mut r = Reader {
        buf: body,
        packet: header.packet_type.name(),
        v5: level.is_v5(),
    };
    let packet = match header.packet_type {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(&mut r)?),
        PacketType::Publish => Packet::Publish(decode_publish(header.flags, &mut r)?),
        PacketType::PubAck => Packet::PubAck(decode_ack(&mut r)?),
        PacketType::PubRec => Packet::PubRec(decode_ack(&mut r)?),
        PacketType::PubRel => Packet::PubRel(decode_ack(&mut r)?),
        PacketType::PubComp => Packet::PubComp(decode_ack(&mut r)?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(&mut r)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(&mut r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(&mut r)?),
        PacketType::UnsubAck => Packet::UnsubAck(decode_unsuback(&mut r)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => {
            Packet::Disconnect(decode_reason_only(&mut r, PropertyScope::Disconnect)?)
        }
        PacketType::Auth => Packet::Auth(decode_reason_only(&mut r, PropertyScope::Auth)?),
    };
    r.finish()?;
    Ok(packet)
}

/// A cursor over a packet body that turns running out of bytes into `DecodeError::Truncated`.
struct Reader {
    buf: Bytes,
    packet: &'static str,
    /// Whether the packet is read as MQTT 5.0 (properties and reason codes).
    v5: bool,
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
        // Rust's UTF-8 validation also refuses encoded surrogates, as [MQTT-1.5.3-1] requires.
        decode_string(self.binary()?, self.packet)
    }

    /// A property section in MQTT 5.0, nothing on earlier levels.
    fn properties(&mut self, scope: PropertyScope) -> Result<MaybeProperties, DecodeError> {
        if !self.v5 {
            return Ok(None);
        }
        decode_properties(&mut self.buf, scope, self.packet)
    }

    /// A PUBLISH's property section in MQTT 5.0, nothing on earlier levels.
    fn publish_properties(&mut self) -> Result<MaybePublishProperties, DecodeError> {
        if !self.v5 {
            return Ok(None);
        }
        let len = read_varint(&mut self.buf, self.packet)? as usize;
        if self.buf.len() < len {
            return Err(self.truncated());
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(PublishProperties::decode(self.buf.split_to(len))?.boxed())
    }

    /// A reason code that `packet` may carry.
    fn reason(&mut self) -> Result<ReasonCode, DecodeError> {
        let code = ReasonCode(self.u8()?);
        if !reason::allowed_in(self.packet, code) {
            return Err(DecodeError::InvalidReasonCode {
                packet: self.packet,
                code: code.0,
            });
        }
        Ok(code)
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

/// Matches the protocol name to the level: "MQIsdp" goes with 3, "MQTT" with 4 and 5 [MQTT-3.1.2-1].
///
/// A known name with an unknown level is `UnsupportedProtocolLevel`, so the broker can answer
/// CONNACK 0x01 [MQTT-3.1.2-2]; an unknown name, or a known level under the other name, is refused.
fn protocol_level(name: &[u8], level: u8) -> Result<ProtocolLevel, DecodeError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolLevel::V311),
        (b"MQTT", 5) => Ok(ProtocolLevel::V5),
        (b"MQIsdp", 3) => Ok(ProtocolLevel::V31),
        (b"MQTT" | b"MQIsdp", 0..=2 | 6..) | (b"MQIsdp", 5) => {
            Err(DecodeError::UnsupportedProtocolLevel(level))
        }
        _ => Err(DecodeError::InvalidProtocolName {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        }),
    }
}

fn decode_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = protocol_level(&name, r.u8()?)?;
    r.v5 = level.is_v5();
    let flags = ConnectFlags::parse(r.u8()?)?;
    let keep_alive_secs = r.u16()?;
    let properties = r.properties(PropertyScope::Connect)?;
    let client_id = ClientId::new(r.string()?);
    let will = match flags.will {
        Some((qos, retain)) => {
            let properties = r.properties(PropertyScope::Will)?;
            Some(LastWill {
                topic: TopicName::new(r.string()?)?,
                payload: r.binary()?,
                qos,
                retain,
                properties,
            })
        }
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
        properties,
    })
}

fn decode_connack(r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::ConnAckReservedFlags(flags));
    }
    let code = if r.v5 {
        r.reason()?
    } else {
        let code = r.u8()?;
        ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidConnectReturnCode(code))?
    };
    Ok(ConnAck {
        session_present: flags == 1,
        code,
        properties: r.properties(PropertyScope::ConnAck)?,
    })
}

/// Decodes a PUBLISH body; the fixed header flags were checked by `read_fixed_header`.
fn decode_publish(flags: u8, r: &mut Reader) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidPublishQoS)?;
    let raw_topic = r.string()?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id()?),
    };
    let properties = r.publish_properties()?;
    // In MQTT 5.0 a Topic Alias may stand for the topic, which is then empty (section 3.3.2.3.4).
    let alias = properties.as_ref().and_then(|p| p.topic_alias());
    let topic = if raw_topic.is_empty() && alias.is_some() {
        TopicName::aliased()
    } else {
        TopicName::new(raw_topic)?
    };
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: in MQTT 5.0 the reason code and properties may be left out when the
/// reason is Success and there are no properties (sections 3.4.2.1 to 3.7.2.1).
fn decode_ack(r: &mut Reader) -> Result<Ack, DecodeError> {
    let packet_id = r.packet_id()?;
    if !r.v5 || r.is_empty() {
        return Ok(Ack::from(packet_id));
    }
    let reason = r.reason()?;
    let properties = if r.is_empty() {
        None
    } else {
        r.properties(PropertyScope::Ack)?
    };
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

/// DISCONNECT or AUTH: empty means Success without properties (sections 3.14.2.1, 3.15.2.1).
fn decode_reason_only(r: &mut Reader, scope: PropertyScope) -> Result<ReasonOnly, DecodeError> {
    if !r.v5 || r.is_empty() {
        return Ok(ReasonOnly::default());
    }
    let reason = r.reason()?;
    let properties = if r.is_empty() {
        None
    } else {
        r.properties(scope)?
    };
    Ok(ReasonOnly { reason, properties })
}

fn decode_subscribe(r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = r.properties(PropertyScope::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = TopicFilter::new(r.string()?)?;
        let byte = r.u8()?;
        let options = if r.v5 {
            subscription_options(byte)?
        } else {
            // Any value above 2 has a reserved bit set or asks for QoS 3 [MQTT-3.8.3-4].
            QoS::from_u8(byte)
                .ok_or(DecodeError::InvalidRequestedQoS(byte))?
                .into()
        };
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoSubscribeFilters);
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// The MQTT 5.0 subscription options byte: reserved bits 6 and 7 must be 0, QoS and Retain Handling must not
/// be 3 (section 3.8.3.1).
fn subscription_options(byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    if byte & 0b1100_0000 != 0 {
        return Err(DecodeError::InvalidRequestedQoS(byte));
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidRequestedQoS(byte))?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscription,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

fn decode_suback(r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = r.properties(PropertyScope::SubAck)?;
    let mut return_codes = Vec::with_capacity(r.buf.len());
    while !r.is_empty() {
        let code = r.u8()?;
        return_codes.push(match code {
            0x80 => SubscribeReturnCode::Failure,
            0x00..=0x02 => SubscribeReturnCode::Success(
                QoS::from_u8(code).ok_or(DecodeError::InvalidSubAckReturnCode(code))?,
            ),
            _ if r.v5 && reason::allowed_in("SUBACK", ReasonCode(code)) => {
                SubscribeReturnCode::Refused(ReasonCode(code))
            }
            _ => return Err(DecodeError::InvalidSubAckReturnCode(code)),
        });
    }
    if return_codes.is_empty() {
        return Err(DecodeError::NoSubAckReturnCodes);
    }
    Ok(SubAck {
        packet_id,
        return_codes,
        properties,
    })
}

fn decode_unsuback(r: &mut Reader) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    if !r.v5 {
        return Ok(UnsubAck::from(packet_id));
    }
    let properties = r.properties(PropertyScope::SubAck)?;
    let mut reason_codes = Vec::with_capacity(r.buf.len());
    while !r.is_empty() {
        reason_codes.push(r.reason()?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::NoSubAckReturnCodes);
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn decode_unsubscribe(r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = r.properties(PropertyScope::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(TopicFilter::new(r.string()?)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoUnsubscribeFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
