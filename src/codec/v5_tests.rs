//! Hand-written tests of the MQTT 5.0 decoding rules, each naming the section or normative statement of the
//! MQTT 5.0 specification it checks.

use super::properties::{boxed, Properties};
use super::*;
use crate::topic::{TopicError, TopicName};

const LIMIT: usize = 1 << 20;
const V5: ProtocolLevel = ProtocolLevel::V5;

fn decode_at(
    role: Role,
    level: ProtocolLevel,
    bytes: &[u8],
) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode_packet_at(&mut buf, role, level, LIMIT)?;
    if packet.is_some() {
        assert!(buf.is_empty(), "exactly one packet is consumed");
    }
    Ok(packet)
}

/// What a server decodes at level 5.
fn server(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode_at(Role::Server, V5, bytes)
}

/// What a client decodes at level 5.
fn client(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode_at(Role::Client, V5, bytes)
}

/// A packet with the given first byte and body, remaining length included (bodies under 128 bytes).
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut bytes = vec![first, body.len() as u8];
    bytes.extend_from_slice(body);
    bytes
}

fn field(s: &[u8]) -> Vec<u8> {
    let mut bytes = (s.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(s);
    bytes
}

/// A property section: its length (under 128) and the properties.
fn section(properties: &[u8]) -> Vec<u8> {
    assert!(properties.len() < 128);
    let mut bytes = vec![properties.len() as u8];
    bytes.extend_from_slice(properties);
    bytes
}

/// A User Property (0x26).
fn user_property(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x26];
    bytes.extend(field(name));
    bytes.extend(field(value));
    bytes
}

/// An MQTT 5.0 CONNECT (clean start, keepalive 60) with the given CONNECT properties and client "c".
fn connect_v5(properties: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[5, 0b0000_0010, 0x00, 0x3C]);
    body.extend(section(properties));
    body.extend(field(b"c"));
    frame(0x10, &body)
}

/// An MQTT 5.0 CONNECT with a QoS 0 will on "w" carrying the given will properties.
fn connect_v5_with_will(will_properties: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[5, 0b0000_0110, 0x00, 0x3C]);
    body.extend(section(&[]));
    body.extend(field(b"c"));
    body.extend(section(will_properties));
    body.extend(field(b"w"));
    body.extend(field(b"bye"));
    frame(0x10, &body)
}

/// A QoS 0 PUBLISH at level 5 on `topic` with the given properties and payload "x".
fn publish_v5(topic: &[u8], properties: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend(section(properties));
    body.push(b'x');
    frame(0x30, &body)
}

/// A SUBSCRIBE at level 5 (packet id 1) for "a/b" with the given options byte and properties.
fn subscribe_v5(options: u8, properties: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(section(properties));
    body.extend(field(b"a/b"));
    body.push(options);
    frame(0x82, &body)
}

fn decoded_properties(packet: &Packet) -> Properties {
    match packet {
        Packet::Publish(p) => p
            .properties
            .as_deref()
            .map(PublishProperties::to_properties)
            .unwrap_or_default(),
        Packet::Connect(c) => props(&c.properties).clone(),
        Packet::Subscribe(s) => props(&s.properties).clone(),
        other => panic!("no properties looked at in {other:?}"),
    }
}

// Section 3.1.2.2: the Protocol Version of MQTT 5.0 is 5, under the Protocol Name "MQTT".
#[test]
fn connect_mqtt_level_5_decodes_as_v5_and_the_server_codec_adopts_it() {
    let bytes = connect_v5(&[]);
    // A CONNECT is read at the level it names, whatever level the decoder speaks.
    let Some(Packet::Connect(c)) = decode_at(Role::Server, ProtocolLevel::V311, &bytes).unwrap()
    else {
        panic!("expected CONNECT");
    };
    assert_eq!(c.level, V5);
    assert!(c.clean_session);
    assert_eq!(c.keep_alive_secs, 60);
    assert_eq!(c.client_id.as_str(), "c");
    assert_eq!(c.properties, None, "an empty property section is None");

    let mut codec = MqttCodec::server(LIMIT);
    assert_eq!(codec.level(), ProtocolLevel::V311);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(codec.level(), V5);
}

// Section 3.1.2.11 and 3.1.3.2: CONNECT properties and will properties are read, each in its own section.
#[test]
fn connect_and_will_properties_are_read_into_their_own_sets() {
    // Session Expiry Interval 0x11 = 300 and Receive Maximum 0x21 = 20 in CONNECT.
    let bytes = connect_v5(&[0x11, 0, 0, 0x01, 0x2C, 0x21, 0x00, 0x14]);
    let Some(Packet::Connect(c)) = server(&bytes).unwrap() else {
        panic!("expected CONNECT");
    };
    let p = props(&c.properties);
    assert_eq!(p.session_expiry_interval, Some(300));
    assert_eq!(p.receive_maximum, Some(20));

    // Will Delay Interval 0x18 = 5 in the will properties.
    let bytes = connect_v5_with_will(&[0x18, 0, 0, 0, 5]);
    let Some(Packet::Connect(c)) = server(&bytes).unwrap() else {
        panic!("expected CONNECT");
    };
    assert_eq!(c.properties, None);
    let will = c.will.expect("a will");
    assert_eq!(will.topic.as_str(), "w");
    assert_eq!(props(&will.properties).will_delay_interval, Some(5));
}

// Section 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its packet type ...
// is a Malformed Packet." Topic Alias (0x23) belongs to PUBLISH only.
#[test]
fn topic_alias_in_connect_is_not_allowed() {
    let err = server(&connect_v5(&[0x23, 0x00, 0x01])).unwrap_err();
    assert!(
        matches!(err, DecodeError::PropertyNotAllowed { id: 0x23, .. }),
        "{err:?}"
    );
}

// Section 2.2.2.2: Session Expiry Interval (0x11) belongs to CONNECT, CONNACK and DISCONNECT, not PUBLISH.
#[test]
fn session_expiry_in_publish_is_not_allowed() {
    for decode in [server, client] {
        let err = decode(&publish_v5(b"a", &[0x11, 0, 0, 0, 1])).unwrap_err();
        assert!(
            matches!(err, DecodeError::PropertyNotAllowed { id: 0x11, .. }),
            "{err:?}"
        );
    }
}

// Section 2.2.2.2: Will Delay Interval (0x18) belongs to the will properties, not to CONNECT's own.
#[test]
fn will_delay_interval_is_allowed_only_in_the_will_properties() {
    let err = server(&connect_v5(&[0x18, 0, 0, 0, 5])).unwrap_err();
    assert!(
        matches!(err, DecodeError::PropertyNotAllowed { id: 0x18, .. }),
        "{err:?}"
    );
    // And Session Expiry Interval belongs to CONNECT's own, not to the will's.
    let err = server(&connect_v5_with_will(&[0x11, 0, 0, 0, 5])).unwrap_err();
    assert!(
        matches!(err, DecodeError::PropertyNotAllowed { id: 0x11, .. }),
        "{err:?}"
    );
}

// Section 2.2.2.2: a property identifier the specification does not define is a Malformed Packet.
#[test]
fn an_unknown_property_identifier_is_refused() {
    let err = server(&publish_v5(b"a", &[0x7F, 0x00])).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnknownProperty { id: 0x7F }),
        "{err:?}"
    );
}

// Section 3.3.2.3.3: "It is a Protocol Error to include the Message Expiry Interval more than once" (the codec
// refuses it as DuplicateProperty, citing [MQTT-2.2.2-2]); section 3.1.2.11.3: likewise the Receive Maximum.
#[test]
fn a_property_given_twice_where_allowed_once_is_refused() {
    let err = server(&publish_v5(b"a", &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2])).unwrap_err();
    assert!(
        matches!(err, DecodeError::DuplicateProperty { id: 0x02, .. }),
        "{err:?}"
    );
    let err = server(&connect_v5(&[0x21, 0x00, 0x01, 0x21, 0x00, 0x01])).unwrap_err();
    assert!(
        matches!(err, DecodeError::DuplicateProperty { id: 0x21, .. }),
        "{err:?}"
    );
}

// Section 3.8.2.1.2: SUBSCRIBE carries at most one Subscription Identifier ("It is a Protocol Error to include
// the Subscription Identifier more than once"); section 3.3.2.3.8: a PUBLISH to a client may carry several,
// one per matching subscription, and they are kept in the order sent.
#[test]
fn subscription_identifiers_once_in_subscribe_several_in_publish() {
    let err = server(&subscribe_v5(0x01, &[0x0B, 0x01, 0x0B, 0x02])).unwrap_err();
    assert!(
        matches!(err, DecodeError::DuplicateProperty { id: 0x0B, .. }),
        "{err:?}"
    );
    let Some(packet) = server(&subscribe_v5(0x01, &[0x0B, 0x80, 0x01])).unwrap() else {
        panic!("complete");
    };
    assert_eq!(decoded_properties(&packet).subscription_identifiers, [128]);

    let Some(packet) = client(&publish_v5(
        b"a",
        &[0x0B, 0x07, 0x0B, 0x80, 0x01, 0x0B, 0x02],
    ))
    .unwrap() else {
        panic!("complete");
    };
    assert_eq!(
        decoded_properties(&packet).subscription_identifiers,
        [7, 128, 2]
    );
}

/// A PUBLISH carrying `properties` as a server decodes it, and the typed view of its properties.
fn publish_with(properties: &[u8]) -> (Packet, Properties) {
    let Some(packet) = server(&publish_v5(b"t", properties)).unwrap() else {
        panic!("complete");
    };
    let decoded = decoded_properties(&packet);
    (packet, decoded)
}

fn user_pairs(p: &Properties) -> Vec<(&str, &str)> {
    p.user_properties.iter().collect()
}

// Section 3.1.2.11.8: "The User Property is allowed to appear multiple times ... The same name is allowed to
// appear more than once"; [MQTT-3.3.2-18]: the order of User Properties is kept when a message is forwarded.
#[test]
fn user_properties_may_repeat_and_keep_their_order() {
    let mut properties = user_property(b"a", b"1");
    properties.extend(user_property(b"b", b"2"));
    properties.extend(user_property(b"a", b"3"));
    let (_, decoded) = publish_with(&properties);
    assert_eq!(user_pairs(&decoded), [("a", "1"), ("b", "2"), ("a", "3")]);
}

#[test]
fn user_properties_between_other_properties_keep_their_order() {
    // user property, Content Type, user property, Payload Format Indicator, user property: the pairs come
    // back in the order sent, and the PUBLISH is written again as it came.
    let mut properties = user_property(b"a", b"1");
    properties.extend([0x03, 0x00, 0x01, b't']);
    properties.extend(user_property(b"b", b"2"));
    properties.extend([0x01, 0x01]);
    properties.extend(user_property(b"a", b"3"));
    let (packet, decoded) = publish_with(&properties);
    assert_eq!(user_pairs(&decoded), [("a", "1"), ("b", "2"), ("a", "3")]);
    assert_eq!(decoded.content_type.as_deref(), Some("t"));
    assert_eq!(decoded.payload_format_indicator, Some(1));
    let mut encoded = BytesMut::new();
    encode_packet_at(&packet, ProtocolLevel::V5, &mut encoded).unwrap();
    assert_eq!(&encoded[..], &publish_v5(b"t", &properties)[..]);
}

// Section 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3."
#[test]
fn retain_handling_3_is_refused() {
    let err = server(&subscribe_v5(0b0011_0001, &[])).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidRetainHandling), "{err:?}");
    // Retain Handling 2, No Local, Retain As Published and QoS 2 are all accepted.
    let Some(Packet::Subscribe(s)) = server(&subscribe_v5(0b0010_1110, &[])).unwrap() else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(
        s.filters[0].1,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        }
    );
}

// [MQTT-3.8.3-5]: "The Server MUST treat a SUBSCRIBE packet as malformed if any of Reserved bits in the Payload
// are non-zero" (bits 6 and 7 of the Subscription Options); section 3.8.3.1: Maximum QoS 3 is a Protocol Error.
#[test]
fn reserved_bits_of_the_subscription_options_are_refused() {
    for options in [0b0100_0000, 0b1000_0000, 0b1100_0001, 0b0000_0011] {
        let err = server(&subscribe_v5(options, &[])).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidRequestedQoS(byte) if byte == options),
            "{options:#x}: {err:?}"
        );
    }
}

// Section 3.1.2.11.3: "It is a Protocol Error ... for [the Receive Maximum] to have the value 0."
// Section 3.1.2.11.4: "It is a Protocol Error ... for the [Maximum Packet Size] to be set to zero."
// Section 3.8.2.1.2: "It is a Protocol Error if the Subscription Identifier has a value of 0."
#[test]
fn zero_where_the_specification_forbids_it_is_refused() {
    let err = server(&connect_v5(&[0x21, 0x00, 0x00])).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidPropertyValue { id: 0x21 }),
        "{err:?}"
    );
    let err = server(&connect_v5(&[0x27, 0, 0, 0, 0])).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidPropertyValue { id: 0x27 }),
        "{err:?}"
    );
    let err = server(&subscribe_v5(0x01, &[0x0B, 0x00])).unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidPropertyValue { id: 0x0B }),
        "{err:?}"
    );
    // The same properties with the value 1 are accepted.
    assert!(server(&connect_v5(&[0x21, 0x00, 0x01, 0x27, 0, 0, 0, 1])).is_ok());
    assert!(server(&subscribe_v5(0x01, &[0x0B, 0x01])).is_ok());
}

// Section 1.5.5: a Variable Byte Integer takes at most four bytes; a fifth is a Malformed Packet.
#[test]
fn a_variable_byte_integer_of_five_bytes_is_refused() {
    // As the property length of a SUBSCRIBE.
    let mut body = vec![0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    body.extend(field(b"a/b"));
    body.push(0x01);
    let err = server(&frame(0x82, &body)).unwrap_err();
    assert!(
        matches!(err, DecodeError::MalformedVarint { .. }),
        "{err:?}"
    );
    // As a Subscription Identifier.
    let err = server(&subscribe_v5(0x01, &[0x0B, 0x81, 0x81, 0x81, 0x81, 0x01])).unwrap_err();
    assert!(
        matches!(err, DecodeError::MalformedVarint { .. }),
        "{err:?}"
    );
    // As the remaining length.
    let err = server(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).unwrap_err();
    assert!(
        matches!(err, DecodeError::MalformedRemainingLength),
        "{err:?}"
    );
    // Four bytes are the most, and are accepted: 268,435,455 as a Subscription Identifier.
    let Some(packet) = server(&subscribe_v5(0x01, &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F])).unwrap() else {
        panic!("complete");
    };
    assert_eq!(
        decoded_properties(&packet).subscription_identifiers,
        [268_435_455]
    );
}

// Section 2.2.2.1: the Property Length counts the bytes of the properties; a property running past it, or a
// length running past the packet, is a Malformed Packet.
#[test]
fn a_property_length_past_the_packet_is_refused() {
    let err = server(&publish_v5(b"a", &[0x02, 0x00])).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
    let mut body = field(b"a");
    body.push(0x10);
    let err = server(&frame(0x30, &body)).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
}

// Section 2.1.2 of MQTT 3.1.1: packet type 15 is reserved; AUTH (15) exists from MQTT 5.0 on (section 3.15).
#[test]
fn auth_is_a_reserved_packet_type_before_level_5() {
    for role in [Role::Server, Role::Client] {
        let err = decode_at(role, ProtocolLevel::V311, &[0xF0, 0x00]).unwrap_err();
        assert!(
            matches!(err, DecodeError::ReservedPacketType(15)),
            "{err:?}"
        );
        assert_eq!(
            decode_at(role, V5, &[0xF0, 0x00]).unwrap(),
            Some(Packet::Auth(ReasonOnly::default()))
        );
    }
    // Section 3.15.2.1: AUTH with Continue authentication and an Authentication Method.
    let mut properties = vec![0x15];
    properties.extend(field(b"SCRAM"));
    let mut body = vec![0x18];
    body.extend(section(&properties));
    let Some(Packet::Auth(auth)) = client(&frame(0xF0, &body)).unwrap() else {
        panic!("expected AUTH");
    };
    assert_eq!(auth.reason, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(
        props(&auth.properties).authentication_method.as_deref(),
        Some("SCRAM")
    );
}

// Section 3.14: in MQTT 5.0 DISCONNECT flows both ways; in MQTT 3.1.1 (section 3.14 there) only from client
// to server.
#[test]
fn disconnect_from_the_server_is_accepted_by_a_client_only_at_level_5() {
    let bytes = [0xE0, 0x02, 0x8B, 0x00];
    let Some(Packet::Disconnect(d)) = client(&bytes).unwrap() else {
        panic!("expected DISCONNECT");
    };
    assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN);
    assert_eq!(d.properties, None);
    let err = decode_at(Role::Client, ProtocolLevel::V311, &[0xE0, 0x00]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::WrongDirection {
                packet: "DISCONNECT",
                ..
            }
        ),
        "{err:?}"
    );
}

// Section 3.14.2.1, Table 3-10: 0x9B QoS not supported is a DISCONNECT reason code (the server sends it for a
// PUBLISH above its Maximum QoS, [MQTT-3.2.2-11]).
#[test]
fn disconnect_qos_not_supported_is_accepted() {
    let Some(Packet::Disconnect(d)) = client(&[0xE0, 0x01, 0x9B]).unwrap() else {
        panic!("expected DISCONNECT");
    };
    assert_eq!(d.reason, ReasonCode::QOS_NOT_SUPPORTED);
}

// Section 3.2.2.2, Table 3-1: 0x9E Shared Subscriptions not supported is not a CONNACK reason code.
#[test]
fn connack_refuses_a_reason_code_of_another_packet() {
    let err = client(&[0x20, 0x03, 0x00, 0x9E, 0x00]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::InvalidReasonCode {
                packet: "CONNACK",
                code: 0x9E
            }
        ),
        "{err:?}"
    );
    // Section 3.6.2.1: PUBREL carries only Success and Packet Identifier not found.
    let err = server(&[0x62, 0x03, 0x00, 0x01, 0x10]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::InvalidReasonCode {
                packet: "PUBREL",
                code: 0x10
            }
        ),
        "{err:?}"
    );
}

// Section 3.4.2.1: "The Reason Code and Property Length can be omitted if the Reason Code is 0x00 (Success) and
// there are no Properties. In this case the PUBACK has a Remaining Length of 2." Section 3.4.2.2.1: "If the
// Remaining Length is less than 4 there is no Property Length and the value of 0 is used."
#[test]
fn short_forms_of_puback_decode() {
    let id = PacketId::new(7).expect("non-zero");
    assert_eq!(
        server(&[0x40, 0x02, 0x00, 0x07]).unwrap(),
        Some(Packet::PubAck(Ack::from(id)))
    );
    assert_eq!(
        server(&[0x40, 0x03, 0x00, 0x07, 0x10]).unwrap(),
        Some(Packet::PubAck(Ack::with_reason(
            id,
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        )))
    );
    assert_eq!(
        server(&[0x40, 0x04, 0x00, 0x07, 0x00, 0x00]).unwrap(),
        Some(Packet::PubAck(Ack::from(id))),
        "an empty property section is None"
    );
    // The encoder writes the short forms.
    let mut dst = BytesMut::new();
    encode_packet_at(&Packet::PubAck(Ack::from(id)), V5, &mut dst).unwrap();
    encode_packet_at(
        &Packet::PubRec(Ack::with_reason(id, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
        V5,
        &mut dst,
    )
    .unwrap();
    assert_eq!(
        &dst[..],
        &[0x40, 0x02, 0x00, 0x07, 0x50, 0x03, 0x00, 0x07, 0x10]
    );
}

// Section 3.14.2.1: "If the Remaining Length is less than 1 the value of 0x00 (Normal disconnection) is used."
#[test]
fn disconnect_with_remaining_length_0_is_a_normal_disconnection() {
    for decode in [server, client] {
        assert_eq!(
            decode(&[0xE0, 0x00]).unwrap(),
            Some(Packet::Disconnect(ReasonOnly::new(ReasonCode::SUCCESS)))
        );
    }
    // With a reason code and a Reason String.
    let mut properties = vec![0x1F];
    properties.extend(field(b"bye"));
    let mut body = vec![0x04];
    body.extend(section(&properties));
    let Some(Packet::Disconnect(d)) = server(&frame(0xE0, &body)).unwrap() else {
        panic!("expected DISCONNECT");
    };
    assert_eq!(d.reason, ReasonCode::DISCONNECT_WITH_WILL);
    assert_eq!(props(&d.properties).reason_string.as_deref(), Some("bye"));
}

// Section 3.3.2.3.4: "A Topic Alias ... is used to identify the Topic instead of using the Topic Name"; section
// 3.3.2.1: "It is a Protocol Error if the Topic Name is zero length and there is no Topic Alias."
#[test]
fn an_empty_topic_stands_for_a_topic_alias_and_is_refused_without_one() {
    let Some(Packet::Publish(p)) = server(&publish_v5(b"", &[0x23, 0x00, 0x03])).unwrap() else {
        panic!("expected PUBLISH");
    };
    assert_eq!(p.topic, TopicName::aliased());
    assert!(p.topic.is_aliased());
    assert_eq!(
        p.properties.as_deref().and_then(|p| p.topic_alias()),
        Some(3)
    );
    assert_eq!(&p.payload[..], b"x");

    let err = server(&publish_v5(b"", &[])).unwrap_err();
    assert!(
        matches!(err, DecodeError::Topic(TopicError::Empty)),
        "{err:?}"
    );
    // A topic given with an alias is kept (it sets the alias, section 3.3.2.3.4).
    let Some(Packet::Publish(p)) = server(&publish_v5(b"a/b", &[0x23, 0x00, 0x03])).unwrap() else {
        panic!("expected PUBLISH");
    };
    assert_eq!(p.topic.as_str(), "a/b");
}

// Section 3.9.3: a SUBACK at level 5 carries reason codes, refusals among them (0x80 is the Failure of 3.1.1).
#[test]
fn suback_reason_codes_decode_at_level_5() {
    let mut body = vec![0x00, 0x05];
    body.extend(section(&[]));
    body.extend_from_slice(&[0x01, 0x80, 0x87, 0xA2]);
    let Some(Packet::SubAck(ack)) = client(&frame(0x90, &body)).unwrap() else {
        panic!("expected SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        [
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Refused(ReasonCode::NOT_AUTHORIZED),
            SubscribeReturnCode::Refused(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
        ]
    );
    // 0x87 is not a SUBACK return code in MQTT 3.1.1 [MQTT-3.9.3-2].
    let err = decode_at(
        Role::Client,
        ProtocolLevel::V311,
        &[0x90, 0x03, 0x00, 0x05, 0x87],
    )
    .unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidSubAckReturnCode(0x87)),
        "{err:?}"
    );
}

// Section 3.11.3: an UNSUBACK at level 5 carries one reason code per topic filter, so at least one.
#[test]
fn unsuback_carries_reason_codes_at_level_5() {
    let mut body = vec![0x00, 0x05];
    body.extend(section(&[]));
    body.extend_from_slice(&[0x00, 0x11]);
    let Some(Packet::UnsubAck(ack)) = client(&frame(0xB0, &body)).unwrap() else {
        panic!("expected UNSUBACK");
    };
    assert_eq!(
        ack.reason_codes,
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    let err = client(&[0xB0, 0x03, 0x00, 0x05, 0x00]).unwrap_err();
    assert!(matches!(err, DecodeError::NoSubAckReturnCodes), "{err:?}");
}

// Section 3.2: the CONNACK of MQTT 5.0 is the acknowledge flags, the reason code and the CONNACK properties.
#[test]
fn v5_connack_wire_bytes_match_the_hand_computed_ones() {
    let ack = ConnAck {
        session_present: true,
        code: ReasonCode::SUCCESS,
        properties: boxed(Properties {
            assigned_client_identifier: Some("ab".into()),
            receive_maximum: Some(10),
            topic_alias_maximum: Some(5),
            user_properties: UserProperties::from_pairs([("k", "v")]).unwrap(),
            ..Properties::default()
        }),
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x20, 0x15,             // CONNACK, remaining length 21
        0x01,                   // Session Present
        0x00,                   // Success
        0x12,                   // property length 18
        0x12, 0x00, 0x02, b'a', b'b', // Assigned Client Identifier "ab"
        0x21, 0x00, 0x0A,       // Receive Maximum 10
        0x22, 0x00, 0x05,       // Topic Alias Maximum 5
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property ("k", "v")
    ];
    let mut dst = BytesMut::new();
    encode_packet_at(&Packet::ConnAck(ack.clone()), V5, &mut dst).unwrap();
    assert_eq!(&dst[..], expected);
    assert_eq!(client(expected).unwrap(), Some(Packet::ConnAck(ack)));
    // At MQTT 3.1.1 the same CONNACK is two bytes of body, without properties.
    let mut dst = BytesMut::new();
    encode_packet_at(
        &Packet::ConnAck(ConnAck {
            session_present: true,
            code: ReasonCode::SUCCESS,
            properties: None,
        }),
        ProtocolLevel::V311,
        &mut dst,
    )
    .unwrap();
    assert_eq!(&dst[..], &[0x20, 0x02, 0x01, 0x00]);
}

// Section 4.13.1 and the Reason Codes of section 2.4: a packet over the Maximum Packet Size is answered with
// 0x95 Packet too large, bytes that are not a packet with 0x81 Malformed Packet.
#[test]
fn decode_errors_name_the_reason_code_to_disconnect_with() {
    let mut buf = BytesMut::from(&publish_v5(b"a/b", &[])[..]);
    let err = decode_packet_at(&mut buf, Role::Server, V5, 4).unwrap_err();
    assert!(matches!(err, DecodeError::PacketTooLarge { .. }), "{err:?}");
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(err.reason_code().0, 0x95);

    // A PUBACK with a byte after its properties.
    let err = server(&[0x40, 0x05, 0x00, 0x07, 0x00, 0x00, 0xAA]).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err:?}");
    assert_eq!(err.reason_code().0, 0x81);
    let err = server(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

// [MQTT-1.5.5-1]: a Variable Byte Integer uses the minimum number of bytes; 0x80 0x00 (zero in two bytes) is
// malformed.
#[test]
fn a_variable_byte_integer_longer_than_needed_is_refused() {
    let err = server(&subscribe_v5(0x01, &[0x0B, 0x81, 0x00])).unwrap_err();
    assert!(
        matches!(err, DecodeError::MalformedVarint { .. }),
        "{err:?}"
    );
    assert!(server(&subscribe_v5(0x01, &[0x0B, 0x81, 0x01])).is_ok());
}
