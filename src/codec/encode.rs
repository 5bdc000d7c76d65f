//! Pure encoding of MQTT 3.1 / 3.1.1 packets into a byte buffer.
//! Reserves once per packet and writes straight into the destination; refuses only what the wire cannot carry.

use super::error::EncodeError;
use super::header::{
    remaining_length_len, write_remaining_length, PacketType, MAX_REMAINING_LENGTH,
};
use super::packet::*;
use bytes::{BufMut, BytesMut};

/// Appends the wire form of `packet` to `dst`.
///
/// Nothing is written when an error is returned.
pub fn encode_packet(packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(connect) => encode_connect(connect, dst),
        Packet::ConnAck(ack) => {
            start(dst, PacketType::ConnAck.first_byte(), 2)?;
            dst.put_u8(u8::from(ack.session_present));
            dst.put_u8(ack.code as u8);
            Ok(())
        }
        Packet::Publish(publish) => encode_publish(publish, dst),
        Packet::PubAck(id) => encode_packet_id(PacketType::PubAck, *id, dst),
        Packet::PubRec(id) => encode_packet_id(PacketType::PubRec, *id, dst),
        Packet::PubRel(id) => encode_packet_id(PacketType::PubRel, *id, dst),
        Packet::PubComp(id) => encode_packet_id(PacketType::PubComp, *id, dst),
        Packet::Subscribe(subscribe) => encode_subscribe(subscribe, dst),
        Packet::SubAck(ack) => encode_suback(ack, dst),
        Packet::Unsubscribe(unsubscribe) => encode_unsubscribe(unsubscribe, dst),
        Packet::UnsubAck(id) => encode_packet_id(PacketType::UnsubAck, *id, dst),
        Packet::PingReq => start(dst, PacketType::PingReq.first_byte(), 0),
        Packet::PingResp => start(dst, PacketType::PingResp.first_byte(), 0),
        Packet::Disconnect => start(dst, PacketType::Disconnect.first_byte(), 0),
    }
}

/// Appends the wire form of a PUBLISH to `dst`: the fast path for fan-out.
pub fn encode_publish(publish: &Publish, dst: &mut BytesMut) -> Result<(), EncodeError> {
    encode_publish_parts(
        publish.dup,
        publish.qos,
        publish.retain,
        publish.topic.as_str(),
        publish.packet_id,
        &publish.payload,
        dst,
    )
}

/// Appends a PUBLISH built from borrowed parts to `dst`, without constructing a `Publish`.
///
/// The topic is written as given: the caller vouches that it is a valid topic name. The flags and
/// the packet identifier are checked against each other ([MQTT-2.3.1-1], [MQTT-2.3.1-5], [MQTT-3.3.1-2]).
pub fn encode_publish_parts(
    dup: bool,
    qos: QoS,
    retain: bool,
    topic: &str,
    packet_id: Option<PacketId>,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    match (qos, packet_id) {
        (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::UnexpectedPacketId),
        (QoS::AtMostOnce, None) if dup => return Err(EncodeError::DupOnQoS0),
        (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
            return Err(EncodeError::MissingPacketId(qos.as_u8()))
        }
        _ => {}
    }
    let id_len = if packet_id.is_some() { 2 } else { 0 };
    let remaining = field_len("topic name", topic.len())? + id_len + payload.len();
    let first =
        (PacketType::Publish as u8) << 4 | u8::from(dup) << 3 | qos.as_u8() << 1 | u8::from(retain);
    start(dst, first, remaining)?;
    put_field(dst, topic.as_bytes());
    if let Some(id) = packet_id {
        dst.put_u16(id.get());
    }
    dst.put_slice(payload);
    Ok(())
}

/// Checks the remaining length, reserves room for the whole packet and writes the fixed header.
fn start(dst: &mut BytesMut, first_byte: u8, remaining_len: usize) -> Result<(), EncodeError> {
    if remaining_len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining_len));
    }
    dst.reserve(1 + remaining_length_len(remaining_len) + remaining_len);
    dst.put_u8(first_byte);
    write_remaining_length(remaining_len, dst);
    Ok(())
}

/// The wire size of a length-prefixed field, refusing fields longer than a two-byte length can say.
fn field_len(field: &'static str, len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong { field, len });
    }
    Ok(2 + len)
}

/// Writes a length-prefixed field whose length `field_len` has accepted.
fn put_field(dst: &mut BytesMut, bytes: &[u8]) {
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}

fn encode_packet_id(kind: PacketType, id: PacketId, dst: &mut BytesMut) -> Result<(), EncodeError> {
    start(dst, kind.first_byte(), 2)?;
    dst.put_u16(id.get());
    Ok(())
}

/// The CONNECT flags byte for `connect` [MQTT-3.1.2-3]; the reserved bit stays 0.
fn connect_flags(connect: &Connect) -> u8 {
    let mut flags = u8::from(connect.clean_session) << 1;
    if let Some(will) = &connect.will {
        flags |= 0b100 | will.qos.as_u8() << 3 | u8::from(will.retain) << 5;
    }
    if connect.password.is_some() {
        flags |= 0b0100_0000;
    }
    if connect.username.is_some() {
        flags |= 0b1000_0000;
    }
    flags
}

fn encode_connect(connect: &Connect, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::PasswordWithoutUsername);
    }
    let name = connect.level.protocol_name();
    // Protocol name, level, flags and keepalive.
    let mut len = 2 + name.len() + 1 + 1 + 2;
    len += field_len("client identifier", connect.client_id.as_str().len())?;
    if let Some(will) = &connect.will {
        len += field_len("will topic", will.topic.as_str().len())?;
        len += field_len("will payload", will.payload.len())?;
    }
    if let Some(username) = &connect.username {
        len += field_len("user name", username.len())?;
    }
    if let Some(password) = &connect.password {
        len += field_len("password", password.len())?;
    }
    start(dst, PacketType::Connect.first_byte(), len)?;
    put_field(dst, name.as_bytes());
    dst.put_u8(connect.level.as_u8());
    dst.put_u8(connect_flags(connect));
    dst.put_u16(connect.keep_alive_secs);
    put_field(dst, connect.client_id.as_str().as_bytes());
    if let Some(will) = &connect.will {
        put_field(dst, will.topic.as_str().as_bytes());
        put_field(dst, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_field(dst, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_field(dst, password);
    }
    Ok(())
}

fn encode_subscribe(subscribe: &Subscribe, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if subscribe.filters.is_empty() {
        return Err(EncodeError::EmptyList("SUBSCRIBE"));
    }
    let mut len = 2;
    for (filter, _) in &subscribe.filters {
        len += field_len("topic filter", filter.as_str().len())? + 1;
    }
    start(dst, PacketType::Subscribe.first_byte(), len)?;
    dst.put_u16(subscribe.packet_id.get());
    for (filter, qos) in &subscribe.filters {
        put_field(dst, filter.as_str().as_bytes());
        dst.put_u8(qos.as_u8());
    }
    Ok(())
}

fn encode_suback(ack: &SubAck, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if ack.return_codes.is_empty() {
        return Err(EncodeError::EmptyList("SUBACK"));
    }
    start(
        dst,
        PacketType::SubAck.first_byte(),
        2 + ack.return_codes.len(),
    )?;
    dst.put_u16(ack.packet_id.get());
    for code in &ack.return_codes {
        dst.put_u8(match code {
            SubscribeReturnCode::Success(qos) => qos.as_u8(),
            SubscribeReturnCode::Failure => 0x80,
        });
    }
    Ok(())
}

fn encode_unsubscribe(unsubscribe: &Unsubscribe, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if unsubscribe.filters.is_empty() {
        return Err(EncodeError::EmptyList("UNSUBSCRIBE"));
    }
    let mut len = 2;
    for filter in &unsubscribe.filters {
        len += field_len("topic filter", filter.as_str().len())?;
    }
    start(dst, PacketType::Unsubscribe.first_byte(), len)?;
    dst.put_u16(unsubscribe.packet_id.get());
    for filter in &unsubscribe.filters {
        put_field(dst, filter.as_str().as_bytes());
    }
    Ok(())
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
