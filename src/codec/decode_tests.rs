use super::*;
use crate::topic::TopicError;

const LIMIT: usize = 1 << 20;

fn decode(role: Role, bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode_packet(&mut BytesMut::from(bytes), role, LIMIT)
}

fn server(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(Role::Server, bytes)
}

fn client(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(Role::Client, bytes)
}

/// A packet with the given first byte and body, remaining length included (bodies under 128 bytes).
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first, body.len() as u8];
    bytes.extend_from_slice(body);
    bytes
}

fn field(s: &[u8]) -> Vec<u8> {
    let mut bytes = (s.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(s);
    bytes
}

/// A CONNECT with the given protocol name, level and flags, followed by `payload`.
fn connect(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = field(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

fn publish_qos0(topic: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend_from_slice(b"payload");
    frame(0x30, &body)
}

#[test]
fn decodes_a_full_connect() {
    let mut payload = field(b"client-1");
    payload.extend(field(b"will/topic"));
    payload.extend(field(b"bye"));
    payload.extend(field(b"user"));
    payload.extend(field(b"secret"));
    // User name, password, will retain, will QoS 1, will flag, clean session.
    let bytes = connect(b"MQTT", 4, 0b1110_1110, &payload);
    let Some(Packet::Connect(c)) = server(&bytes).unwrap() else {
        panic!("expected CONNECT");
    };
    assert_eq!(c.level, ProtocolLevel::V311);
    assert!(c.clean_session);
    assert_eq!(c.keep_alive_secs, 60);
    assert_eq!(c.client_id.as_str(), "client-1");
    let will = c.will.unwrap();
    assert_eq!(will.topic.as_str(), "will/topic");
    assert_eq!(&will.payload[..], b"bye");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(will.retain);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
}

#[test]
fn decodes_an_mqtt_3_1_connect() {
    let bytes = connect(b"MQIsdp", 3, 0b0000_0010, &field(b"old"));
    let Some(Packet::Connect(c)) = server(&bytes).unwrap() else {
        panic!("expected CONNECT");
    };
    assert_eq!(c.level, ProtocolLevel::V31);
    assert_eq!(c.client_id.as_str(), "old");
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::from(&publish_qos0(b"a/b")[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode_packet(&mut buf, Role::Server, LIMIT).unwrap() else {
        panic!("expected PUBLISH");
    };
    assert_eq!(&p.payload[..], b"payload");
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
    assert!(range.contains(&(p.topic.as_str().as_ptr() as usize)));
}

#[test]
fn every_prefix_asks_for_more_and_consumes_nothing() {
    let bytes = publish_qos0(b"a/b");
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert!(decode_packet(&mut buf, Role::Server, LIMIT)
            .unwrap()
            .is_none());
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn consumes_exactly_one_packet() {
    let mut bytes = frame(0x40, &[0x00, 0x07]);
    bytes.extend(frame(0xC0, &[]));
    let mut buf = BytesMut::from(&bytes[..]);
    let first = decode_packet(&mut buf, Role::Server, LIMIT).unwrap();
    assert_eq!(
        first,
        Some(Packet::PubAck(PacketId::new(7).unwrap().into()))
    );
    assert_eq!(&buf[..], &[0xC0, 0x00]);
}

#[test]
fn remaining_length_of_more_than_four_bytes_is_malformed() {
    // [MQTT-2.2.3]
    let err = server(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).unwrap_err();
    assert!(matches!(err, DecodeError::MalformedRemainingLength));
    assert!(server(&[0x30, 0xFF, 0xFF, 0xFF]).unwrap().is_none());
}

#[test]
fn packet_over_the_limit_is_refused_before_its_body_arrives() {
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x01][..]);
    let err = decode_packet(&mut buf, Role::Server, 130).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::PacketTooLarge {
            size: 131,
            limit: 130
        }
    ));
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x01][..]);
    assert!(decode_packet(&mut buf, Role::Server, 131)
        .unwrap()
        .is_none());
}

#[test]
fn reserved_packet_types_are_refused() {
    // [MQTT-2.2.1] types 0 and 15 are reserved.
    assert!(matches!(
        server(&[0x00, 0x00]),
        Err(DecodeError::ReservedPacketType(0))
    ));
    assert!(matches!(
        client(&[0xF0, 0x00]),
        Err(DecodeError::ReservedPacketType(15))
    ));
}

#[test]
fn reserved_fixed_header_flags_are_checked_per_type() {
    // [MQTT-2.2.2-1] [MQTT-2.2.2-2]
    let cases: [(Role, &[u8]); 8] = [
        (Role::Server, &[0x11, 0x00]),
        (Role::Server, &[0x41, 0x02, 0x00, 0x01]),
        (Role::Server, &[0x60, 0x02, 0x00, 0x01]),
        (Role::Server, &[0x80, 0x02, 0x00, 0x01]),
        (Role::Server, &[0xA0, 0x02, 0x00, 0x01]),
        (Role::Server, &[0xC8, 0x00]),
        (Role::Client, &[0x24, 0x02, 0x00, 0x00]),
        (Role::Client, &[0xB2, 0x02, 0x00, 0x01]),
    ];
    for (role, bytes) in cases {
        let err = decode(role, bytes).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidFlags { flags, .. } if flags == bytes[0] & 0x0F),
            "{bytes:x?}: {err}"
        );
    }
}

#[test]
fn publish_with_qos_3_is_refused() {
    // [MQTT-3.3.1-4]
    let mut bytes = publish_qos0(b"a");
    bytes[0] = 0x36;
    assert!(matches!(
        server(&bytes),
        Err(DecodeError::InvalidPublishQoS)
    ));
}

#[test]
fn dup_on_a_qos_0_publish_is_refused() {
    // [MQTT-3.3.1-2]
    let mut bytes = publish_qos0(b"a");
    bytes[0] = 0x38;
    assert!(matches!(client(&bytes), Err(DecodeError::DupOnQoS0)));
}

#[test]
fn ill_formed_utf8_is_refused() {
    // [MQTT-1.5.3-1]
    let err = server(&publish_qos0(&[b'a', 0xC3, 0x28])).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::InvalidUtf8 { packet: "PUBLISH" }
    ));
}

#[test]
fn encoded_surrogates_are_refused() {
    // [MQTT-1.5.3-1] U+D800 encoded as ED A0 80.
    let bytes = connect(b"MQTT", 4, 0x02, &field(&[0xED, 0xA0, 0x80]));
    let err = server(&bytes).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::InvalidUtf8 { packet: "CONNECT" }
    ));
}

#[test]
fn null_character_in_a_string_is_refused() {
    // [MQTT-1.5.3-2]
    let bytes = connect(b"MQTT", 4, 0x02, &field(b"ab\0c"));
    let err = server(&bytes).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::NullCharacter { packet: "CONNECT" }
    ));
}

#[test]
fn wildcard_in_a_publish_topic_is_refused() {
    // [MQTT-3.3.2-2]
    let err = server(&publish_qos0(b"a/+")).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::WildcardInName)
    ));
    let err = client(&publish_qos0(b"#")).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::WildcardInName)
    ));
}

#[test]
fn empty_publish_topic_is_refused() {
    // [MQTT-4.7.3-1]
    let err = server(&publish_qos0(b"")).unwrap_err();
    assert!(matches!(err, DecodeError::Topic(TopicError::Empty)));
}

#[test]
fn will_topic_is_validated_as_a_topic_name() {
    let mut payload = field(b"id");
    payload.extend(field(b"will/#"));
    payload.extend(field(b"x"));
    let err = server(&connect(b"MQTT", 4, 0b0000_0110, &payload)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::WildcardInName)
    ));
}

fn subscribe(filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    for (filter, qos) in filters {
        body.extend(field(filter));
        body.push(*qos);
    }
    frame(0x82, &body)
}

#[test]
fn misplaced_wildcards_in_filters_are_refused() {
    // [MQTT-4.7.1-2] [MQTT-4.7.1-3]
    let err = server(&subscribe(&[(b"a/#/b", 0)])).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::MisplacedMultiLevelWildcard)
    ));
    let err = server(&subscribe(&[(b"ok/+", 0), (b"a+/b", 1)])).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::MisplacedSingleLevelWildcard)
    ));
    let mut unsubscribe = vec![0x00, 0x02];
    unsubscribe.extend(field(b"sport#"));
    let err = server(&frame(0xA2, &unsubscribe)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Topic(TopicError::MisplacedMultiLevelWildcard)
    ));
}

#[test]
fn packet_identifier_zero_is_refused() {
    // [MQTT-2.3.1-1]
    let err = server(&[0x40, 0x02, 0x00, 0x00]).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::ZeroPacketId { packet: "PUBACK" }
    ));
    let mut body = field(b"a");
    body.extend_from_slice(&[0x00, 0x00]);
    let err = server(&frame(0x32, &body)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::ZeroPacketId { packet: "PUBLISH" }
    ));
    let mut bytes = subscribe(&[(b"a", 0)]);
    bytes[3] = 0;
    let err = server(&bytes).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::ZeroPacketId {
            packet: "SUBSCRIBE"
        }
    ));
}

#[test]
fn subscribe_without_filters_is_refused() {
    // [MQTT-3.8.3-3]
    let err = server(&[0x82, 0x02, 0x00, 0x01]).unwrap_err();
    assert!(matches!(err, DecodeError::NoSubscribeFilters));
}

#[test]
fn unsubscribe_without_filters_is_refused() {
    // [MQTT-3.10.3-2]
    let err = server(&[0xA2, 0x02, 0x00, 0x01]).unwrap_err();
    assert!(matches!(err, DecodeError::NoUnsubscribeFilters));
}

#[test]
fn requested_qos_with_reserved_bits_or_qos_3_is_refused() {
    // [MQTT-3.8.3-4]
    for byte in [0x03, 0x04, 0x81] {
        let err = server(&subscribe(&[(b"a", byte)])).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidRequestedQoS(b) if b == byte));
    }
}

#[test]
fn connect_reserved_flag_is_refused() {
    // [MQTT-3.1.2-3]
    let err = server(&connect(b"MQTT", 4, 0b0000_0011, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::ConnectReservedFlag));
}

#[test]
fn will_qos_without_will_flag_is_refused() {
    // [MQTT-3.1.2-11] [MQTT-3.1.2-13]
    let err = server(&connect(b"MQTT", 4, 0b0001_0000, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::WillQoSWithoutWill(2)));
}

#[test]
fn will_retain_without_will_flag_is_refused() {
    // [MQTT-3.1.2-15]
    let err = server(&connect(b"MQTT", 4, 0b0010_0000, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::WillRetainWithoutWill));
}

#[test]
fn will_qos_3_is_refused() {
    // [MQTT-3.1.2-14]
    let err = server(&connect(b"MQTT", 4, 0b0001_1100, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidWillQoS));
}

#[test]
fn password_without_user_name_is_refused() {
    // [MQTT-3.1.2-22]
    let mut payload = field(b"id");
    payload.extend(field(b"pw"));
    let err = server(&connect(b"MQTT", 4, 0b0100_0000, &payload)).unwrap_err();
    assert!(matches!(err, DecodeError::PasswordWithoutUsername));
}

#[test]
fn protocol_name_must_match_the_level() {
    // [MQTT-3.1.2-1]
    for (name, level) in [
        (&b"MQIsdp"[..], 4),
        (b"MQTT", 3),
        (b"MQTX", 4),
        (b"HTTP", 9),
    ] {
        let err = server(&connect(name, level, 0x02, &field(b"id"))).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidProtocolName { level: l, .. } if l == level),
            "{err}"
        );
    }
}

#[test]
fn unsupported_level_is_reported_after_consuming_the_frame() {
    // [MQTT-3.1.2-2] the broker answers CONNACK 0x01, so the frame must be taken whole.
    let mut bytes = connect(b"MQTT", 6, 0x02, &[0x00, 0x00, 0x00]);
    bytes.extend_from_slice(&[0xE0, 0x00]);
    let mut buf = BytesMut::from(&bytes[..]);
    let err = decode_packet(&mut buf, Role::Server, LIMIT).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedProtocolLevel(6)));
    assert_eq!(&buf[..], &[0xE0, 0x00]);
    let err = server(&connect(b"MQIsdp", 2, 0x02, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedProtocolLevel(2)));
}

#[test]
fn bytes_after_the_last_field_are_refused() {
    let err = server(&[0x40, 0x03, 0x00, 0x01, 0x00]).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::TrailingBytes {
            packet: "PUBACK",
            extra: 1
        }
    ));
    let err = server(&[0xE0, 0x01, 0x00]).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::TrailingBytes {
            packet: "DISCONNECT",
            ..
        }
    ));
    let mut payload = field(b"id");
    payload.push(0x00);
    let err = server(&connect(b"MQTT", 4, 0x02, &payload)).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { extra: 1, .. }));
    let err = client(&[0x20, 0x03, 0x00, 0x00, 0x00]).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }));
}

#[test]
fn body_shorter_than_its_fields_is_refused() {
    let err = server(&[0x40, 0x01, 0x00]).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { packet: "PUBACK" }));
    // A string length pointing past the end of the packet.
    let err = server(&frame(0x30, &[0x00, 0x05, b'a'])).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { packet: "PUBLISH" }));
    // User name flag without a user name.
    let err = server(&connect(b"MQTT", 4, 0x82, &field(b"id"))).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { packet: "CONNECT" }));
    // A filter without its requested QoS byte.
    let mut body = vec![0x00, 0x01];
    body.extend(field(b"a"));
    let err = server(&frame(0x82, &body)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Truncated {
            packet: "SUBSCRIBE"
        }
    ));
}

#[test]
fn server_refuses_packets_only_a_server_sends() {
    // [MQTT-2.2.1] CONNACK, SUBACK, UNSUBACK and PINGRESP flow from server to client only.
    let cases: [&[u8]; 4] = [
        &[0x20, 0x02, 0x00, 0x00],
        &[0x90, 0x03, 0x00, 0x01, 0x00],
        &[0xB0, 0x02, 0x00, 0x01],
        &[0xD0, 0x00],
    ];
    for bytes in cases {
        let err = server(bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::WrongDirection {
                    sender: "client",
                    ..
                }
            ),
            "{err}"
        );
        assert!(client(bytes).unwrap().is_some());
    }
}

#[test]
fn client_refuses_packets_only_a_client_sends() {
    // [MQTT-2.2.1] CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT flow from client to server only.
    let mut unsubscribe = vec![0x00, 0x01];
    unsubscribe.extend(field(b"a"));
    let cases: [Vec<u8>; 5] = [
        connect(b"MQTT", 4, 0x02, &field(b"id")),
        subscribe(&[(b"a", 1)]),
        frame(0xA2, &unsubscribe),
        vec![0xC0, 0x00],
        vec![0xE0, 0x00],
    ];
    for bytes in cases {
        let err = client(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::WrongDirection {
                    sender: "server",
                    ..
                }
            ),
            "{err}"
        );
        assert!(server(&bytes).unwrap().is_some());
    }
}

#[test]
fn connack_reserved_flags_and_codes_are_refused() {
    let err = client(&[0x20, 0x02, 0x02, 0x00]).unwrap_err();
    assert!(matches!(err, DecodeError::ConnAckReservedFlags(0x02)));
    let err = client(&[0x20, 0x02, 0x00, 0x06]).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidConnectReturnCode(6)));
    let ok = client(&[0x20, 0x02, 0x01, 0x00]).unwrap();
    assert_eq!(
        ok,
        Some(Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted.into(),
            properties: None,
        }))
    );
}

#[test]
fn suback_return_codes_are_checked() {
    // [MQTT-3.9.3-2]
    let err = client(&[0x90, 0x03, 0x00, 0x01, 0x03]).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidSubAckReturnCode(3)));
    let err = client(&[0x90, 0x02, 0x00, 0x01]).unwrap_err();
    assert!(matches!(err, DecodeError::NoSubAckReturnCodes));
    let Some(Packet::SubAck(ack)) = client(&[0x90, 0x05, 0x00, 0x01, 0x00, 0x02, 0x80]).unwrap()
    else {
        panic!("expected SUBACK");
    };
    assert_eq!(
        ack.return_codes,
        vec![
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Success(QoS::ExactlyOnce),
            SubscribeReturnCode::Failure
        ]
    );
}
