use super::*;
use crate::codec::decode::{decode_packet, Role};
use crate::topic::{TopicFilter, TopicName};
use bytes::Bytes;

fn encode(packet: &Packet) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_packet(packet, &mut dst).unwrap();
    dst.to_vec()
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn publish(qos: QoS, packet_id: Option<PacketId>, dup: bool) -> Publish {
    Publish {
        dup,
        qos,
        retain: false,
        topic: TopicName::new("a/b").unwrap(),
        packet_id,
        payload: Bytes::from_static(b"x"),
        properties: None,
    }
}

#[test]
fn remaining_length_matches_the_table_of_section_2_2_3() {
    let table: [(usize, &[u8]); 8] = [
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for (len, bytes) in table {
        let mut dst = BytesMut::new();
        write_remaining_length(len, &mut dst);
        assert_eq!(&dst[..], bytes, "{len}");
        assert_eq!(remaining_length_len(len), bytes.len());
        let read = crate::codec::header::read_remaining_length(bytes).unwrap();
        assert_eq!(read, Some((len, bytes.len())));
    }
}

#[test]
fn connect_variable_header_matches_the_spec_example() {
    // Section 3.1.2.10: "MQTT", level 4, flags 0xCE, keepalive 10.
    let connect = Connect {
        level: ProtocolLevel::V311,
        clean_session: true,
        keep_alive_secs: 10,
        client_id: ClientId::new("c"),
        will: Some(LastWill {
            topic: TopicName::new("w").unwrap(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"s")),
        properties: None,
    };
    let bytes = encode(&Packet::Connect(Box::new(connect)));
    let variable_header = [0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A];
    assert_eq!(&bytes[..2], &[0x10, 10 + 5 * 3]);
    assert_eq!(&bytes[2..12], &variable_header);
    assert_eq!(
        &bytes[12..],
        &[0, 1, b'c', 0, 1, b'w', 0, 1, b'p', 0, 1, b'u', 0, 1, b's']
    );
}

#[test]
fn mqtt_3_1_connect_uses_its_protocol_name() {
    let connect = Connect {
        level: ProtocolLevel::V31,
        clean_session: false,
        keep_alive_secs: 0,
        client_id: ClientId::new("c"),
        will: None,
        username: None,
        password: None,
        properties: None,
    };
    let bytes = encode(&Packet::Connect(Box::new(connect)));
    let expected = [
        0x10, 15, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x00, 0x00, 0x00, 0x00,
        0x01, b'c',
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn publish_variable_header_matches_the_spec_example() {
    // Section 3.3.2.3: topic "a/b", packet identifier 10.
    let p = publish(QoS::AtLeastOnce, Some(id(10)), false);
    let bytes = encode(&Packet::Publish(p));
    assert_eq!(
        bytes,
        [0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'x']
    );
}

#[test]
fn publish_flags_carry_dup_qos_and_retain() {
    let mut dst = BytesMut::new();
    encode_publish_parts(
        true,
        QoS::ExactlyOnce,
        true,
        "t",
        Some(id(1)),
        b"",
        &mut dst,
    )
    .unwrap();
    assert_eq!(&dst[..], &[0x3D, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
}

#[test]
fn utf8_string_matches_the_spec_example() {
    // Figure 1.1: "A\u{2A6D4}" is 00 05 41 F0 AA 9B 94.
    let mut dst = BytesMut::new();
    encode_publish_parts(
        false,
        QoS::AtMostOnce,
        false,
        "A\u{2A6D4}",
        None,
        b"",
        &mut dst,
    )
    .unwrap();
    assert_eq!(
        &dst[..],
        &[0x30, 0x07, 0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94]
    );
}

#[test]
fn subscribe_payload_matches_the_spec_example() {
    // Section 3.8.3: "a/b" at QoS 1 and "c/d" at QoS 2.
    let subscribe = Subscribe {
        packet_id: id(10),
        filters: vec![
            (TopicFilter::new("a/b").unwrap(), QoS::AtLeastOnce.into()),
            (TopicFilter::new("c/d").unwrap(), QoS::ExactlyOnce.into()),
        ],
        properties: None,
    };
    let bytes = encode(&Packet::Subscribe(subscribe));
    let payload = [0, 3, b'a', b'/', b'b', 1, 0, 3, b'c', b'/', b'd', 2];
    assert_eq!(&bytes[..4], &[0x82, 14, 0x00, 0x0A]);
    assert_eq!(&bytes[4..], &payload);
}

#[test]
fn suback_payload_matches_the_spec_example() {
    // Section 3.9.3: success at QoS 0, success at QoS 2, failure.
    let ack = SubAck {
        packet_id: id(10),
        return_codes: vec![
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Success(QoS::ExactlyOnce),
            SubscribeReturnCode::Failure,
        ],
        properties: None,
    };
    assert_eq!(
        encode(&Packet::SubAck(ack)),
        [0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80]
    );
}

#[test]
fn unsubscribe_payload_matches_the_spec_example() {
    // Section 3.10.3: "a/b" and "c/d".
    let unsubscribe = Unsubscribe {
        packet_id: id(10),
        filters: vec![
            TopicFilter::new("a/b").unwrap(),
            TopicFilter::new("c/d").unwrap(),
        ],
        properties: None,
    };
    let bytes = encode(&Packet::Unsubscribe(unsubscribe));
    assert_eq!(
        bytes,
        [0xA2, 12, 0x00, 0x0A, 0, 3, b'a', b'/', b'b', 0, 3, b'c', b'/', b'd']
    );
}

#[test]
fn fixed_size_packets_have_their_fixed_headers() {
    let cases = [
        (
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::NotAuthorized.into(),
                properties: None,
            }),
            vec![0x20, 0x02, 0x01, 0x05],
        ),
        (
            Packet::PubAck(id(0x1234).into()),
            vec![0x40, 0x02, 0x12, 0x34],
        ),
        (Packet::PubRec(id(1).into()), vec![0x50, 0x02, 0x00, 0x01]),
        (Packet::PubRel(id(1).into()), vec![0x62, 0x02, 0x00, 0x01]),
        (Packet::PubComp(id(1).into()), vec![0x70, 0x02, 0x00, 0x01]),
        (Packet::UnsubAck(id(1).into()), vec![0xB0, 0x02, 0x00, 0x01]),
        (Packet::PingReq, vec![0xC0, 0x00]),
        (Packet::PingResp, vec![0xD0, 0x00]),
        (Packet::Disconnect(Default::default()), vec![0xE0, 0x00]),
    ];
    for (packet, bytes) in cases {
        assert_eq!(encode(&packet), bytes, "{}", packet.name());
    }
}

#[test]
fn publish_packet_id_must_agree_with_qos() {
    // [MQTT-2.3.1-1] [MQTT-2.3.1-5] [MQTT-3.3.1-2]; nothing is written on error.
    let mut dst = BytesMut::new();
    let err = encode_publish(&publish(QoS::AtLeastOnce, None, false), &mut dst).unwrap_err();
    assert!(matches!(err, EncodeError::MissingPacketId(1)));
    let err = encode_publish(&publish(QoS::AtMostOnce, Some(id(3)), false), &mut dst).unwrap_err();
    assert!(matches!(err, EncodeError::UnexpectedPacketId));
    let err = encode_publish(&publish(QoS::AtMostOnce, None, true), &mut dst).unwrap_err();
    assert!(matches!(err, EncodeError::DupOnQoS0));
    assert!(dst.is_empty());
}

#[test]
fn strings_longer_than_65535_bytes_are_refused() {
    let long = "a".repeat(65_536);
    let mut dst = BytesMut::new();
    let err = encode_publish_parts(false, QoS::AtMostOnce, false, &long, None, b"", &mut dst)
        .unwrap_err();
    assert!(matches!(
        err,
        EncodeError::FieldTooLong {
            field: "topic name",
            len: 65_536
        }
    ));
    let connect = Connect {
        level: ProtocolLevel::V311,
        clean_session: true,
        keep_alive_secs: 0,
        client_id: ClientId::new(long),
        will: None,
        username: None,
        password: None,
        properties: None,
    };
    let err = encode_packet(&Packet::Connect(Box::new(connect)), &mut dst).unwrap_err();
    assert!(matches!(err, EncodeError::FieldTooLong { .. }));
    assert!(dst.is_empty());
}

#[test]
fn remaining_length_beyond_four_bytes_is_refused() {
    let mut dst = BytesMut::new();
    let err = start(&mut dst, 0x30, MAX_REMAINING_LENGTH + 1).unwrap_err();
    assert!(matches!(err, EncodeError::PacketTooLarge(268_435_456)));
    assert!(dst.is_empty());
}

#[test]
fn empty_lists_are_refused() {
    let mut dst = BytesMut::new();
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: id(1),
        filters: vec![],
        properties: None,
    });
    let suback = Packet::SubAck(SubAck {
        packet_id: id(1),
        return_codes: vec![],
        properties: None,
    });
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: id(1),
        filters: vec![],
        properties: None,
    });
    for packet in [subscribe, suback, unsubscribe] {
        let err = encode_packet(&packet, &mut dst).unwrap_err();
        assert!(matches!(err, EncodeError::EmptyList(name) if name == packet.name()));
    }
    assert!(dst.is_empty());
}

#[test]
fn password_without_user_name_is_refused() {
    // [MQTT-3.1.2-22]
    let connect = Connect {
        level: ProtocolLevel::V311,
        clean_session: true,
        keep_alive_secs: 0,
        client_id: ClientId::new("c"),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: None,
    };
    let mut dst = BytesMut::new();
    let err = encode_packet(&Packet::Connect(Box::new(connect)), &mut dst).unwrap_err();
    assert!(matches!(err, EncodeError::PasswordWithoutUsername));
}

#[test]
fn encoding_reserves_once_and_decodes_back() {
    let p = publish(QoS::ExactlyOnce, Some(id(9)), true);
    let mut dst = BytesMut::new();
    encode_publish(&p, &mut dst).unwrap();
    assert_eq!(
        dst.capacity(),
        dst.len(),
        "exactly one reservation of the packet size"
    );
    let decoded = decode_packet(&mut dst, Role::Client, 1024).unwrap();
    assert_eq!(decoded, Some(Packet::Publish(p)));
}
