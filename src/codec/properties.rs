//! MQTT 5.0 properties (section 2.2.2): one typed struct holding any of them, the table of which packet may
//! carry which, and their wire form. A property a packet may not carry, or one given twice where only one is
//! allowed, is a malformed packet; performs no I/O and copies no binary data.

use super::encode::field_len;
use super::error::{DecodeError, EncodeError};
use super::user_properties::{UserProperties, UserPropertySpans};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

/// Where a property section sits, which decides the properties it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyScope {
    /// CONNECT's variable header.
    Connect,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// The will properties of CONNECT's payload.
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK and UNSUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyScope {
    fn name(self) -> &'static str {
        match self {
            PropertyScope::Connect => "CONNECT",
            PropertyScope::ConnAck => "CONNACK",
            PropertyScope::Publish => "PUBLISH",
            PropertyScope::Will => "will properties",
            PropertyScope::Ack => "acknowledgement",
            PropertyScope::Subscribe => "SUBSCRIBE",
            PropertyScope::SubAck => "SUBACK/UNSUBACK",
            PropertyScope::Unsubscribe => "UNSUBSCRIBE",
            PropertyScope::Disconnect => "DISCONNECT",
            PropertyScope::Auth => "AUTH",
        }
    }
}

/// Every MQTT 5.0 property, each typed as the specification defines it; absent ones are `None` or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties {
    /// 0x01 Payload Format Indicator: 1 means the payload is UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifiers (several in a PUBLISH, at most one in SUBSCRIBE).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13 Server Keep Alive in seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (0 or 1).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval in seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (0 or 1).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information.
    pub response_information: Option<ByteString>,
    /// 0x1C Server Reference.
    pub server_reference: Option<ByteString>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x21 Receive Maximum (never 0).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias.
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (0 or 1).
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (0 or 1).
    pub retain_available: Option<u8>,
    /// 0x26 User Properties, in the order sent (names may repeat).
    pub user_properties: UserProperties,
    /// 0x27 Maximum Packet Size (never 0).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (0 or 1).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (0 or 1).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (0 or 1).
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// Whether no property is set (cheaper than comparing with an empty set).
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.subscription_identifiers.is_empty()
            && self.session_expiry_interval.is_none()
            && self.assigned_client_identifier.is_none()
            && self.server_keep_alive.is_none()
            && self.authentication_method.is_none()
            && self.authentication_data.is_none()
            && self.request_problem_information.is_none()
            && self.will_delay_interval.is_none()
            && self.request_response_information.is_none()
            && self.response_information.is_none()
            && self.server_reference.is_none()
            && self.reason_string.is_none()
            && self.receive_maximum.is_none()
            && self.topic_alias_maximum.is_none()
            && self.topic_alias.is_none()
            && self.maximum_qos.is_none()
            && self.retain_available.is_none()
            && self.user_properties.is_empty()
            && self.maximum_packet_size.is_none()
            && self.wildcard_subscription_available.is_none()
            && self.subscription_identifier_available.is_none()
            && self.shared_subscription_available.is_none()
    }

    /// The same properties with every string and binary value in an allocation of its own, so that a value
    /// kept for long (a will, a stored message) does not keep alive the read buffer it was decoded from.
    pub fn detached(&self) -> Properties {
        let s = |v: &Option<ByteString>| v.as_deref().map(ByteString::from);
        let b = |v: &Option<Bytes>| v.as_deref().map(Bytes::copy_from_slice);
        Properties {
            content_type: s(&self.content_type),
            response_topic: s(&self.response_topic),
            correlation_data: b(&self.correlation_data),
            assigned_client_identifier: s(&self.assigned_client_identifier),
            authentication_method: s(&self.authentication_method),
            authentication_data: b(&self.authentication_data),
            response_information: s(&self.response_information),
            server_reference: s(&self.server_reference),
            reason_string: s(&self.reason_string),
            user_properties: self.user_properties.detached(),
            subscription_identifiers: self.subscription_identifiers.clone(),
            ..*self
        }
    }
}

/// The empty property set, for packets that carry none.
pub static NO_PROPERTIES: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: UserProperties::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

/// Properties as packets hold them: absent (the common case, no allocation) or boxed.
pub type MaybeProperties = Option<Box<Properties>>;

/// The properties of `maybe`, or the empty set.
pub fn props(maybe: &MaybeProperties) -> &Properties {
    maybe.as_deref().unwrap_or(&NO_PROPERTIES)
}

/// `None` when `properties` is empty, so that an empty set costs nothing.
pub fn boxed(properties: Properties) -> MaybeProperties {
    if properties.is_empty() {
        None
    } else {
        Some(Box::new(properties))
    }
}

/// Which scopes each property identifier may appear in (the table of section 2.2.2.2).
pub(super) fn allowed(id: u8, scope: PropertyScope) -> bool {
    use PropertyScope::*;
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(scope, Publish | Will),
        0x0B => matches!(scope, Publish | Subscribe),
        0x11 => matches!(scope, Connect | ConnAck | Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => scope == ConnAck,
        0x15 | 0x16 => matches!(scope, Connect | ConnAck | Auth),
        0x17 | 0x19 => scope == Connect,
        0x18 => scope == Will,
        0x1C => matches!(scope, ConnAck | Disconnect),
        0x1F => matches!(scope, ConnAck | Ack | SubAck | Disconnect | Auth),
        0x21 | 0x22 | 0x27 => matches!(scope, Connect | ConnAck),
        0x23 => scope == Publish,
        0x26 => true,
        _ => false,
    }
}

/// Reads a Variable Byte Integer (section 1.5.5): at most four bytes, each carrying seven bits.
pub fn read_varint(buf: &mut Bytes, packet: &'static str) -> Result<u32, DecodeError> {
    let (value, used) = varint_at(buf, packet)?;
    buf.advance(used);
    Ok(value)
}

/// The Variable Byte Integer at the start of `bytes`, and how many bytes it takes.
pub(super) fn varint_at(bytes: &[u8], packet: &'static str) -> Result<(u32, usize), DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&byte) = bytes.get(i) else {
            return Err(DecodeError::Truncated { packet });
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // [MQTT-1.5.5-1]: the minimum number of bytes; a last byte of 0 after others is one too many.
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarint { packet });
            }
            return Ok((value, i + 1));
        }
    }
    Err(DecodeError::MalformedVarint { packet })
}

/// Bytes a Variable Byte Integer of `value` takes.
pub fn varint_len(value: u32) -> usize {
    // A Variable Byte Integer is written as the fixed header's Remaining Length is.
    super::header::remaining_length_len(value as usize)
}

/// Writes a Variable Byte Integer; values above 268,435,455 cannot be written and are refused by callers.
pub fn write_varint(value: u32, dst: &mut impl BufMut) {
    super::header::write_remaining_length(value as usize, dst);
}

/// The largest value a Variable Byte Integer carries.
pub const MAX_VARINT: u32 = 268_435_455;

/// A cursor over one property section; values are slices of the section, so reading takes no copies.
struct PropReader {
    section: Bytes,
    pos: usize,
    packet: &'static str,
}

impl PropReader {
    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.section.len()
    }

    /// The next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let start = self.pos;
        match self.section.get(start..start + n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.truncated()),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u32, DecodeError> {
        let (value, used) = varint_at(&self.section[self.pos..], self.packet)?;
        self.pos += used;
        Ok(value)
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        let start = self.pos;
        self.take(len)?;
        Ok(self.section.slice(start..start + len))
    }

    fn string(&mut self) -> Result<ByteString, DecodeError> {
        decode_string(self.binary()?, self.packet)
    }
}

/// A UTF-8 string field, checked for well-formedness and U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2].
pub fn decode_string(raw: Bytes, packet: &'static str) -> Result<ByteString, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::NullCharacter { packet });
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8 { packet })
}

/// Sets a property that may appear once, refusing a second occurrence [MQTT-2.2.2-2].
fn once<T>(
    slot: &mut Option<T>,
    value: T,
    id: u8,
    scope: PropertyScope,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty {
            id,
            packet: scope.name(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// A property whose value must be 0 or 1.
pub(super) fn boolean(value: u8, id: u8) -> Result<u8, DecodeError> {
    if value > 1 {
        return Err(DecodeError::InvalidPropertyValue { id });
    }
    Ok(value)
}

/// Reads the property length and the properties after it, checking each against `scope`.
pub fn decode_properties(
    buf: &mut Bytes,
    scope: PropertyScope,
    packet: &'static str,
) -> Result<MaybeProperties, DecodeError> {
    let len = read_varint(buf, packet)? as usize;
    if buf.len() < len {
        return Err(DecodeError::Truncated { packet });
    }
    if len == 0 {
        return Ok(None);
    }
    decode_section(buf.split_to(len), scope, packet).map(|p| Some(Box::new(p)))
}

/// The properties of one section (without the property length in front), each checked against `scope`.
pub(super) fn decode_section(
    section: Bytes,
    scope: PropertyScope,
    packet: &'static str,
) -> Result<Properties, DecodeError> {
    let mut r = PropReader {
        section,
        pos: 0,
        packet,
    };
    let mut p = Properties::default();
    let mut user = UserPropertySpans::default();
    while !r.at_end() {
        let start = r.pos;
        let id = r.varint()?;
        let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty { id })?;
        if !allowed(id, scope) {
            return Err(if known(id) {
                DecodeError::PropertyNotAllowed {
                    id,
                    packet: scope.name(),
                }
            } else {
                DecodeError::UnknownProperty { id: u32::from(id) }
            });
        }
        if id == 0x26 {
            r.pos = user.read(&r.section, start, packet)?;
        } else {
            read_one(&mut r, &mut p, id, scope)?;
        }
    }
    p.user_properties = user.finish(r.section);
    Ok(p)
}

pub(super) fn known(id: u8) -> bool {
    matches!(
        id,
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 | 0x0B | 0x11 | 0x12 | 0x13 | 0x15..=0x19 | 0x1A | 0x1C
            | 0x1F | 0x21..=0x2A
    )
}

fn read_one(
    r: &mut PropReader,
    p: &mut Properties,
    id: u8,
    scope: PropertyScope,
) -> Result<(), DecodeError> {
    match id {
        0x01 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.payload_format_indicator, v, id, scope)
        }
        0x02 => once(&mut p.message_expiry_interval, r.u32()?, id, scope),
        0x03 => once(&mut p.content_type, r.string()?, id, scope),
        0x08 => once(&mut p.response_topic, r.string()?, id, scope),
        0x09 => once(&mut p.correlation_data, r.binary()?, id, scope),
        0x0B => {
            let v = r.varint()?;
            if v == 0 {
                return Err(DecodeError::InvalidPropertyValue { id });
            }
            if scope == PropertyScope::Subscribe && !p.subscription_identifiers.is_empty() {
                return Err(DecodeError::DuplicateProperty {
                    id,
                    packet: scope.name(),
                });
            }
            p.subscription_identifiers.push(v);
            Ok(())
        }
        0x11 => once(&mut p.session_expiry_interval, r.u32()?, id, scope),
        0x12 => once(&mut p.assigned_client_identifier, r.string()?, id, scope),
        0x13 => once(&mut p.server_keep_alive, r.u16()?, id, scope),
        0x15 => once(&mut p.authentication_method, r.string()?, id, scope),
        0x16 => once(&mut p.authentication_data, r.binary()?, id, scope),
        0x17 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.request_problem_information, v, id, scope)
        }
        0x18 => once(&mut p.will_delay_interval, r.u32()?, id, scope),
        0x19 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.request_response_information, v, id, scope)
        }
        0x1A => once(&mut p.response_information, r.string()?, id, scope),
        0x1C => once(&mut p.server_reference, r.string()?, id, scope),
        0x1F => once(&mut p.reason_string, r.string()?, id, scope),
        0x21 => {
            let v = r.u16()?;
            if v == 0 {
                return Err(DecodeError::InvalidPropertyValue { id });
            }
            once(&mut p.receive_maximum, v, id, scope)
        }
        0x22 => once(&mut p.topic_alias_maximum, r.u16()?, id, scope),
        0x23 => once(&mut p.topic_alias, r.u16()?, id, scope),
        0x24 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.maximum_qos, v, id, scope)
        }
        0x25 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.retain_available, v, id, scope)
        }
        0x27 => {
            let v = r.u32()?;
            if v == 0 {
                return Err(DecodeError::InvalidPropertyValue { id });
            }
            once(&mut p.maximum_packet_size, v, id, scope)
        }
        0x28 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.wildcard_subscription_available, v, id, scope)
        }
        0x29 => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.subscription_identifier_available, v, id, scope)
        }
        0x2A => {
            let v = boolean(r.u8()?, id)?;
            once(&mut p.shared_subscription_available, v, id, scope)
        }
        _ => Err(DecodeError::UnknownProperty { id: u32::from(id) }),
    }
}

/// The size of the properties themselves, without the property length in front.
pub fn properties_len(p: &Properties) -> Result<usize, EncodeError> {
    let mut n = 0;
    let byte = |v: &Option<u8>| if v.is_some() { 2 } else { 0 };
    let two = |v: &Option<u16>| if v.is_some() { 3 } else { 0 };
    let four = |v: &Option<u32>| if v.is_some() { 5 } else { 0 };
    n += byte(&p.payload_format_indicator) + four(&p.message_expiry_interval);
    n += byte(&p.request_problem_information) + byte(&p.request_response_information);
    n += byte(&p.maximum_qos) + byte(&p.retain_available);
    n += byte(&p.wildcard_subscription_available) + byte(&p.subscription_identifier_available);
    n += byte(&p.shared_subscription_available);
    n += four(&p.session_expiry_interval) + four(&p.will_delay_interval);
    n += four(&p.maximum_packet_size);
    n += two(&p.server_keep_alive) + two(&p.receive_maximum) + two(&p.topic_alias_maximum);
    n += two(&p.topic_alias);
    for (name, v) in [
        ("content type", &p.content_type),
        ("response topic", &p.response_topic),
        ("assigned client identifier", &p.assigned_client_identifier),
        ("authentication method", &p.authentication_method),
        ("response information", &p.response_information),
        ("server reference", &p.server_reference),
        ("reason string", &p.reason_string),
    ] {
        if let Some(s) = v {
            n += 1 + field_len(name, s.len())?;
        }
    }
    for (name, v) in [
        ("correlation data", &p.correlation_data),
        ("authentication data", &p.authentication_data),
    ] {
        if let Some(b) = v {
            n += 1 + field_len(name, b.len())?;
        }
    }
    for id in &p.subscription_identifiers {
        if *id == 0 || *id > MAX_VARINT {
            return Err(EncodeError::InvalidSubscriptionIdentifier(*id));
        }
        n += 1 + varint_len(*id);
    }
    n += p.user_properties.wire().len();
    Ok(n)
}

/// The wire size of a property section: the property length and the properties.
pub fn section_len(p: &Properties) -> Result<usize, EncodeError> {
    let len = properties_len(p)?;
    Ok(varint_len(len as u32) + len)
}

fn put_str(dst: &mut BytesMut, id: u8, s: &[u8]) {
    dst.put_u8(id);
    dst.put_u16(s.len() as u16);
    dst.put_slice(s);
}

/// Writes the property length and the properties, whose sizes `properties_len` has accepted.
pub fn write_properties(p: &Properties, len: usize, dst: &mut BytesMut) {
    write_varint(len as u32, dst);
    write_all_properties(p, dst);
}

/// Writes the properties, without the length in front.
fn write_all_properties(p: &Properties, dst: &mut BytesMut) {
    let put_u8 = |dst: &mut BytesMut, id: u8, v: Option<u8>| {
        if let Some(v) = v {
            dst.put_u8(id);
            dst.put_u8(v);
        }
    };
    let put_u16 = |dst: &mut BytesMut, id: u8, v: Option<u16>| {
        if let Some(v) = v {
            dst.put_u8(id);
            dst.put_u16(v);
        }
    };
    let put_u32 = |dst: &mut BytesMut, id: u8, v: Option<u32>| {
        if let Some(v) = v {
            dst.put_u8(id);
            dst.put_u32(v);
        }
    };
    write_message_part(p, Replaced::default(), dst);
    put_u32(dst, 0x11, p.session_expiry_interval);
    if let Some(s) = &p.assigned_client_identifier {
        put_str(dst, 0x12, s.as_bytes());
    }
    put_u16(dst, 0x13, p.server_keep_alive);
    if let Some(s) = &p.authentication_method {
        put_str(dst, 0x15, s.as_bytes());
    }
    if let Some(b) = &p.authentication_data {
        put_str(dst, 0x16, b);
    }
    put_u8(dst, 0x17, p.request_problem_information);
    put_u32(dst, 0x18, p.will_delay_interval);
    put_u8(dst, 0x19, p.request_response_information);
    if let Some(s) = &p.response_information {
        put_str(dst, 0x1A, s.as_bytes());
    }
    if let Some(s) = &p.server_reference {
        put_str(dst, 0x1C, s.as_bytes());
    }
    if let Some(s) = &p.reason_string {
        put_str(dst, 0x1F, s.as_bytes());
    }
    put_u16(dst, 0x21, p.receive_maximum);
    put_u16(dst, 0x22, p.topic_alias_maximum);
    put_u16(dst, 0x23, p.topic_alias);
    put_u8(dst, 0x24, p.maximum_qos);
    put_u8(dst, 0x25, p.retain_available);
    dst.put_slice(p.user_properties.wire());
    put_u32(dst, 0x27, p.maximum_packet_size);
    put_u8(dst, 0x28, p.wildcard_subscription_available);
    put_u8(dst, 0x29, p.subscription_identifier_available);
    put_u8(dst, 0x2A, p.shared_subscription_available);
}

/// Which properties of a message a server replaces with its own when it forwards it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// The Message Expiry Interval (by the time left).
    pub expiry: bool,
    /// The Topic Alias.
    pub alias: bool,
    /// The Subscription Identifiers.
    pub subscription_ids: bool,
}

/// The size of the properties a PUBLISH may carry (section 3.3.2.3), without those `skip` names and without
/// the property length in front. Only these are looked at: they are all a PUBLISH is written with.
pub fn publish_properties_len(p: &Properties, skip: Replaced) -> Result<usize, EncodeError> {
    let mut n = 0;
    if p.payload_format_indicator.is_some() {
        n += 2;
    }
    if p.message_expiry_interval.is_some() && !skip.expiry {
        n += 5;
    }
    if let Some(s) = &p.content_type {
        n += 1 + field_len("content type", s.len())?;
    }
    if let Some(s) = &p.response_topic {
        n += 1 + field_len("response topic", s.len())?;
    }
    if let Some(b) = &p.correlation_data {
        n += 1 + field_len("correlation data", b.len())?;
    }
    if !skip.subscription_ids {
        for id in &p.subscription_identifiers {
            if *id == 0 || *id > MAX_VARINT {
                return Err(EncodeError::InvalidSubscriptionIdentifier(*id));
            }
            n += 1 + varint_len(*id);
        }
    }
    if p.topic_alias.is_some() && !skip.alias {
        n += 3;
    }
    Ok(n + p.user_properties.wire().len())
}

/// Writes the properties from 0x01 to 0x0B (a message's own and the Subscription Identifiers), without those
/// `skip` names: the head of both writers above and below.
fn write_message_part(p: &Properties, skip: Replaced, dst: &mut BytesMut) {
    if let Some(v) = p.payload_format_indicator {
        dst.put_u8(0x01);
        dst.put_u8(v);
    }
    if let (Some(v), false) = (p.message_expiry_interval, skip.expiry) {
        dst.put_u8(0x02);
        dst.put_u32(v);
    }
    if let Some(s) = &p.content_type {
        put_str(dst, 0x03, s.as_bytes());
    }
    if let Some(s) = &p.response_topic {
        put_str(dst, 0x08, s.as_bytes());
    }
    if let Some(b) = &p.correlation_data {
        put_str(dst, 0x09, b);
    }
    if !skip.subscription_ids {
        for id in &p.subscription_identifiers {
            dst.put_u8(0x0B);
            write_varint(*id, dst);
        }
    }
}

/// Writes the properties `publish_properties_len` counted, in the order of their identifiers.
pub fn write_publish_properties(p: &Properties, skip: Replaced, dst: &mut BytesMut) {
    write_message_part(p, skip, dst);
    if let (Some(v), false) = (p.topic_alias, skip.alias) {
        dst.put_u8(0x23);
        dst.put_u16(v);
    }
    dst.put_slice(p.user_properties.wire());
}
