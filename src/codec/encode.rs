//! Pure encoding of MQTT 3.1, 3.1.1 and 5.0 packets into a byte buffer.
//! Reserves once per packet and writes straight into the destination; refuses only what the wire cannot carry.

use super::error::EncodeError;
use super::header::{
    remaining_length_len, write_remaining_length, PacketType, MAX_REMAINING_LENGTH,
};
use super::packet::*;
use super::properties::{
    properties_len, varint_len, write_properties, write_varint, Replaced, MAX_VARINT,
};
use super::publish_properties::PublishProperties;

/// Bytes that Subscription Identifier properties take.
fn ids_len(ids: &[u32]) -> usize {
    ids.iter().map(|id| 1 + varint_len(*id)).sum()
}
use bytes::{BufMut, BytesMut};

/// Appends the MQTT 3.1.1 (or 3.1) wire form of `packet` to `dst`; `encode_packet_at` writes any level.
///
/// Nothing is written when an error is returned.
pub fn encode_packet(packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
    encode_packet_at(packet, ProtocolLevel::V311, dst)
}

/// Appends the wire form of `packet` at protocol `level` to `dst`: MQTT 5.0 adds properties and reason codes,
/// earlier levels leave them out. A CONNECT is written at the level it names.
///
/// Nothing is written when an error is returned.
pub fn encode_packet_at(
    packet: &Packet,
    level: ProtocolLevel,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = level.is_v5();
    match packet {
        Packet::Connect(connect) => encode_connect(connect, dst),
        Packet::ConnAck(ack) => encode_connack(ack, v5, dst),
        Packet::Publish(publish) if v5 => encode_publish_v5(
            PublishHead::of(publish),
            publish.properties.as_deref(),
            &PublishExtras::default(),
            &publish.payload,
            dst,
        ),
        Packet::Publish(publish) => encode_publish(publish, dst),
        Packet::PubAck(ack) => encode_ack(PacketType::PubAck, ack, v5, dst),
        Packet::PubRec(ack) => encode_ack(PacketType::PubRec, ack, v5, dst),
        Packet::PubRel(ack) => encode_ack(PacketType::PubRel, ack, v5, dst),
        Packet::PubComp(ack) => encode_ack(PacketType::PubComp, ack, v5, dst),
        Packet::Subscribe(subscribe) => encode_subscribe(subscribe, v5, dst),
        Packet::SubAck(ack) => encode_suback(ack, v5, dst),
        Packet::Unsubscribe(unsubscribe) => encode_unsubscribe(unsubscribe, v5, dst),
        Packet::UnsubAck(ack) => encode_unsuback(ack, v5, dst),
        Packet::PingReq => start(dst, PacketType::PingReq.first_byte(), 0),
        Packet::PingResp => start(dst, PacketType::PingResp.first_byte(), 0),
        Packet::Disconnect(_) if !v5 => start(dst, PacketType::Disconnect.first_byte(), 0),
        Packet::Disconnect(d) => encode_reason_only(PacketType::Disconnect, d, dst),
        Packet::Auth(_) if !v5 => Err(EncodeError::NotInLevel("AUTH")),
        Packet::Auth(a) => encode_reason_only(PacketType::Auth, a, dst),
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
    let head = PublishHead {
        dup,
        qos,
        retain,
        topic,
        packet_id,
    };
    let id_len = head.check()?;
    let remaining = field_len("topic name", topic.len())? + id_len + payload.len();
    start(dst, head.first_byte(), remaining)?;
    head.put(dst);
    dst.put_slice(payload);
    Ok(())
}

/// The fixed header flags, topic and packet identifier of a PUBLISH.
#[derive(Debug, Clone, Copy)]
pub struct PublishHead<'a> {
    /// Re-delivery flag.
    pub dup: bool,
    /// QoS of this transmission.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name as written (empty when a Topic Alias stands for it).
    pub topic: &'a str,
    /// Packet identifier, for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
}

impl<'a> PublishHead<'a> {
    /// The head of a `Publish`.
    pub fn of(publish: &'a Publish) -> PublishHead<'a> {
        PublishHead {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic: publish.topic.as_str(),
            packet_id: publish.packet_id,
        }
    }

    /// Checks flags against the packet identifier; the identifier's size on the wire.
    #[inline]
    fn check(&self) -> Result<usize, EncodeError> {
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, Some(_)) => Err(EncodeError::UnexpectedPacketId),
            (QoS::AtMostOnce, None) if self.dup => Err(EncodeError::DupOnQoS0),
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                Err(EncodeError::MissingPacketId(self.qos.as_u8()))
            }
            (_, id) => Ok(if id.is_some() { 2 } else { 0 }),
        }
    }

    #[inline]
    fn first_byte(&self) -> u8 {
        (PacketType::Publish as u8) << 4
            | u8::from(self.dup) << 3
            | self.qos.as_u8() << 1
            | u8::from(self.retain)
    }

    #[inline]
    fn put(&self, dst: &mut BytesMut) {
        put_field(dst, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            dst.put_u16(id.get());
        }
    }
}

/// What a server adds to a message's own properties when it forwards it (MQTT 5.0).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishExtras<'a> {
    /// The remaining Message Expiry Interval, replacing the one published [MQTT-3.3.2-6].
    pub message_expiry_interval: Option<u32>,
    /// The Topic Alias for the topic.
    pub topic_alias: Option<u16>,
    /// The identifiers of the subscriptions that matched.
    pub subscription_identifiers: &'a [u32],
}

/// Appends an MQTT 5.0 PUBLISH: the message's properties (its expiry, alias and subscription identifiers
/// replaced by `extras` when `extras` sets them) before the payload.
pub fn encode_publish_v5(
    head: PublishHead<'_>,
    message: Option<&PublishProperties>,
    extras: &PublishExtras<'_>,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let layout = PublishV5Layout::of(&head, message, extras, payload.len())?;
    start(dst, head.first_byte(), layout.remaining)?;
    head.put(dst);
    write_varint(layout.props_len as u32, dst);
    if let Some(message) = message {
        message.write(layout.skip, dst);
    }
    if let Some(expiry) = extras.message_expiry_interval {
        dst.put_u8(0x02);
        dst.put_u32(expiry);
    }
    if let Some(alias) = extras.topic_alias {
        dst.put_u8(0x23);
        dst.put_u16(alias);
    }
    for id in extras.subscription_identifiers {
        dst.put_u8(0x0B);
        write_varint(*id, dst);
    }
    dst.put_slice(payload);
    Ok(())
}

/// The size on the wire of the MQTT 5.0 PUBLISH `encode_publish_v5` would write, fixed header included (to
/// check it against a client's Maximum Packet Size before sending).
pub fn publish_v5_size(
    head: &PublishHead<'_>,
    message: Option<&PublishProperties>,
    extras: &PublishExtras<'_>,
    payload_len: usize,
) -> Result<usize, EncodeError> {
    let layout = PublishV5Layout::of(head, message, extras, payload_len)?;
    Ok(1 + remaining_length_len(layout.remaining) + layout.remaining)
}

/// The lengths of an MQTT 5.0 PUBLISH, where what the server adds replaces the message's own properties
/// without copying them.
struct PublishV5Layout {
    skip: Replaced,
    props_len: usize,
    remaining: usize,
}

impl PublishV5Layout {
    fn of(
        head: &PublishHead<'_>,
        message: Option<&PublishProperties>,
        extras: &PublishExtras<'_>,
        payload_len: usize,
    ) -> Result<PublishV5Layout, EncodeError> {
        let id_len = head.check()?;
        let skip = Replaced {
            expiry: extras.message_expiry_interval.is_some(),
            alias: extras.topic_alias.is_some(),
            subscription_ids: !extras.subscription_identifiers.is_empty(),
        };
        let mut props_len = message.map_or(0, |m| m.encoded_len(skip));
        props_len += extras.message_expiry_interval.map_or(0, |_| 5);
        props_len += extras.topic_alias.map_or(0, |_| 3);
        if let Some(id) = extras
            .subscription_identifiers
            .iter()
            .find(|id| **id == 0 || **id > MAX_VARINT)
        {
            return Err(EncodeError::InvalidSubscriptionIdentifier(*id));
        }
        props_len += ids_len(extras.subscription_identifiers);
        let remaining = field_len("topic name", head.topic.len())?
            + id_len
            + varint_len(props_len as u32)
            + props_len
            + payload_len;
        Ok(PublishV5Layout {
            skip,
            props_len,
            remaining,
        })
    }
}

/// Checks the remaining length, reserves room for the whole packet and writes the fixed header.
#[inline]
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
pub(super) fn field_len(field: &'static str, len: usize) -> Result<usize, EncodeError> {
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

/// The size of an optional MQTT 5.0 property section and the properties' own length.
fn optional_section(properties: &MaybeProperties) -> Result<(usize, usize), EncodeError> {
    let p = props(properties);
    let len = properties_len(p)?;
    Ok((varint_len(len as u32) + len, len))
}

fn encode_connack(ack: &ConnAck, v5: bool, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if !v5 {
        start(dst, PacketType::ConnAck.first_byte(), 2)?;
        dst.put_u8(u8::from(ack.session_present));
        dst.put_u8(ack.code.to_v3_connack());
        return Ok(());
    }
    let (section, len) = optional_section(&ack.properties)?;
    start(dst, PacketType::ConnAck.first_byte(), 2 + section)?;
    dst.put_u8(u8::from(ack.session_present));
    dst.put_u8(ack.code.0);
    write_properties(props(&ack.properties), len, dst);
    Ok(())
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP; in MQTT 5.0 the reason code and properties are left out when they say
/// nothing (Success, no properties), as sections 3.4.2.1 to 3.7.2.1 allow.
fn encode_ack(
    kind: PacketType,
    ack: &Ack,
    v5: bool,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !v5 || (ack.reason == ReasonCode::SUCCESS && ack.properties.is_none()) {
        start(dst, kind.first_byte(), 2)?;
        dst.put_u16(ack.packet_id.get());
        return Ok(());
    }
    if ack.properties.is_none() {
        start(dst, kind.first_byte(), 3)?;
        dst.put_u16(ack.packet_id.get());
        dst.put_u8(ack.reason.0);
        return Ok(());
    }
    let (section, len) = optional_section(&ack.properties)?;
    start(dst, kind.first_byte(), 3 + section)?;
    dst.put_u16(ack.packet_id.get());
    dst.put_u8(ack.reason.0);
    write_properties(props(&ack.properties), len, dst);
    Ok(())
}

/// DISCONNECT or AUTH in MQTT 5.0: empty when Success without properties; otherwise the reason code and the
/// property length, even when it is 0 (sections 3.14.2.2.1 and 3.15.2.2.1 let it be left out, but some
/// clients then wait for it).
fn encode_reason_only(
    kind: PacketType,
    body: &ReasonOnly,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if body.reason == ReasonCode::SUCCESS && body.properties.is_none() {
        return start(dst, kind.first_byte(), 0);
    }
    if body.properties.is_none() {
        start(dst, kind.first_byte(), 2)?;
        dst.put_u8(body.reason.0);
        dst.put_u8(0);
        return Ok(());
    }
    let (section, len) = optional_section(&body.properties)?;
    start(dst, kind.first_byte(), 1 + section)?;
    dst.put_u8(body.reason.0);
    write_properties(props(&body.properties), len, dst);
    Ok(())
}

fn encode_unsuback(ack: &UnsubAck, v5: bool, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if !v5 {
        start(dst, PacketType::UnsubAck.first_byte(), 2)?;
        dst.put_u16(ack.packet_id.get());
        return Ok(());
    }
    if ack.reason_codes.is_empty() {
        return Err(EncodeError::EmptyList("UNSUBACK"));
    }
    let (section, len) = optional_section(&ack.properties)?;
    start(
        dst,
        PacketType::UnsubAck.first_byte(),
        2 + section + ack.reason_codes.len(),
    )?;
    dst.put_u16(ack.packet_id.get());
    write_properties(props(&ack.properties), len, dst);
    for code in &ack.reason_codes {
        dst.put_u8(code.0);
    }
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
    let v5 = connect.level.is_v5();
    // Protocol name, level, flags and keepalive.
    let mut len = 2 + name.len() + 1 + 1 + 2;
    let (section, props_len) = optional_section(&connect.properties)?;
    let mut will_props = (0, 0);
    if v5 {
        len += section;
    }
    len += field_len("client identifier", connect.client_id.as_str().len())?;
    if let Some(will) = &connect.will {
        if v5 {
            will_props = optional_section(&will.properties)?;
            len += will_props.0;
        }
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
    if v5 {
        write_properties(props(&connect.properties), props_len, dst);
    }
    put_field(dst, connect.client_id.as_str().as_bytes());
    if let Some(will) = &connect.will {
        if v5 {
            write_properties(props(&will.properties), will_props.1, dst);
        }
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

fn encode_subscribe(
    subscribe: &Subscribe,
    v5: bool,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if subscribe.filters.is_empty() {
        return Err(EncodeError::EmptyList("SUBSCRIBE"));
    }
    let (section, props_len) = optional_section(&subscribe.properties)?;
    let mut len = 2 + if v5 { section } else { 0 };
    for (filter, _) in &subscribe.filters {
        len += field_len("topic filter", filter.as_str().len())? + 1;
    }
    start(dst, PacketType::Subscribe.first_byte(), len)?;
    dst.put_u16(subscribe.packet_id.get());
    if v5 {
        write_properties(props(&subscribe.properties), props_len, dst);
    }
    for (filter, options) in &subscribe.filters {
        put_field(dst, filter.as_str().as_bytes());
        dst.put_u8(if v5 {
            options.to_byte()
        } else {
            options.qos.as_u8()
        });
    }
    Ok(())
}

fn encode_suback(ack: &SubAck, v5: bool, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if ack.return_codes.is_empty() {
        return Err(EncodeError::EmptyList("SUBACK"));
    }
    let (section, props_len) = optional_section(&ack.properties)?;
    let section = if v5 { section } else { 0 };
    start(
        dst,
        PacketType::SubAck.first_byte(),
        2 + section + ack.return_codes.len(),
    )?;
    dst.put_u16(ack.packet_id.get());
    if v5 {
        write_properties(props(&ack.properties), props_len, dst);
    }
    for code in &ack.return_codes {
        dst.put_u8(match code {
            SubscribeReturnCode::Success(qos) => qos.as_u8(),
            _ if v5 => code.reason().0,
            _ => 0x80,
        });
    }
    Ok(())
}

fn encode_unsubscribe(
    unsubscribe: &Unsubscribe,
    v5: bool,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if unsubscribe.filters.is_empty() {
        return Err(EncodeError::EmptyList("UNSUBSCRIBE"));
    }
    let (section, props_len) = optional_section(&unsubscribe.properties)?;
    let mut len = 2 + if v5 { section } else { 0 };
    for filter in &unsubscribe.filters {
        len += field_len("topic filter", filter.as_str().len())?;
    }
    start(dst, PacketType::Unsubscribe.first_byte(), len)?;
    dst.put_u16(unsubscribe.packet_id.get());
    if v5 {
        write_properties(props(&unsubscribe.properties), props_len, dst);
    }
    for filter in &unsubscribe.filters {
        put_field(dst, filter.as_str().as_bytes());
    }
    Ok(())
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
