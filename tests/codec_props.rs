//! Property tests of the MQTT codec: round trips for every packet type in the direction it travels,
//! byte-by-byte framing, concatenated packets, and a decoder that never panics on arbitrary input.

use bytes::{Bytes, BytesMut};
use harbormq::codec::{
    decode_packet, encode_packet, ClientId, ConnAck, Connect, ConnectReturnCode, LastWill,
    MqttCodec, Packet, PacketId, ProtocolLevel, Publish, QoS, Role, SubAck, Subscribe,
    SubscribeReturnCode, Unsubscribe,
};
use harbormq::topic::{TopicFilter, TopicName};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_during;

const LIMIT: usize = 1 << 20;

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap())
}

fn level_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _$é\u{4e2d}\u{1F600}-]{0,8}"
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(level_text(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter_map("topic names are non-empty", |s| TopicName::new(s).ok())
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![3 => level_text(), 1 => Just("+".to_owned())];
    (prop::collection::vec(level, 1..5), any::<bool>())
        .prop_map(|(mut levels, multi)| {
            if multi {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter_map("topic filters are non-empty", |s| TopicFilter::new(s).ok())
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        payload(),
    )
        .prop_map(|(qos, dup, retain, topic, id, payload)| {
            let acknowledged = qos != QoS::AtMostOnce;
            Publish {
                dup: dup && acknowledged,
                qos,
                retain,
                topic,
                packet_id: acknowledged.then_some(id),
                payload,
                properties: None,
            }
        })
}

fn will() -> impl Strategy<Value = LastWill> {
    (topic_name(), payload(), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
        LastWill {
            topic,
            payload,
            qos,
            retain,
            properties: None,
        }
    })
}

fn connect() -> impl Strategy<Value = Packet> {
    let level = prop_oneof![Just(ProtocolLevel::V31), Just(ProtocolLevel::V311)];
    let credentials = prop::option::of((level_text(), prop::option::of(payload())));
    (
        level,
        any::<bool>(),
        any::<u16>(),
        level_text(),
        prop::option::of(will()),
        credentials,
    )
        .prop_map(
            |(level, clean_session, keep_alive_secs, id, will, credentials)| {
                let (username, password) = match credentials {
                    Some((user, password)) => (Some(user.into()), password),
                    None => (None, None),
                };
                Packet::Connect(Box::new(Connect {
                    level,
                    clean_session,
                    keep_alive_secs,
                    client_id: ClientId::new(id),
                    will,
                    username,
                    password,
                    properties: None,
                }))
            },
        )
}

fn connack() -> impl Strategy<Value = Packet> {
    (any::<bool>(), 0u8..=5).prop_map(|(session_present, code)| {
        Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::from_u8(code).unwrap().into(),
            properties: None,
        })
    })
}

fn return_code() -> impl Strategy<Value = SubscribeReturnCode> {
    prop_oneof![
        qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure)
    ]
}

/// Every packet a client sends, which the server role decodes.
fn client_to_server() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(),
        publish().prop_map(Packet::Publish),
        packet_id().prop_map(|id| Packet::PubAck(id.into())),
        packet_id().prop_map(|id| Packet::PubRec(id.into())),
        packet_id().prop_map(|id| Packet::PubRel(id.into())),
        packet_id().prop_map(|id| Packet::PubComp(id.into())),
        (
            packet_id(),
            prop::collection::vec((topic_filter(), qos()), 1..6)
        )
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe {
                packet_id,
                filters: filters.into_iter().map(|(f, q)| (f, q.into())).collect(),
                properties: None
            })),
        (packet_id(), prop::collection::vec(topic_filter(), 1..6)).prop_map(
            |(packet_id, filters)| Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: None
            })
        ),
        Just(Packet::PingReq),
        Just(Packet::Disconnect(Default::default())),
    ]
}

/// Every packet a server sends, which the client role decodes.
fn server_to_client() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connack(),
        publish().prop_map(Packet::Publish),
        packet_id().prop_map(|id| Packet::PubAck(id.into())),
        packet_id().prop_map(|id| Packet::PubRec(id.into())),
        packet_id().prop_map(|id| Packet::PubRel(id.into())),
        packet_id().prop_map(|id| Packet::PubComp(id.into())),
        (packet_id(), prop::collection::vec(return_code(), 1..6)).prop_map(
            |(packet_id, return_codes)| Packet::SubAck(SubAck {
                packet_id,
                return_codes,
                properties: None,
            })
        ),
        packet_id().prop_map(|id| Packet::UnsubAck(id.into())),
        Just(Packet::PingResp),
    ]
}

/// A packet together with the role that decodes it.
fn directed_packet() -> impl Strategy<Value = (Role, Packet)> {
    prop_oneof![
        client_to_server().prop_map(|p| (Role::Server, p)),
        server_to_client().prop_map(|p| (Role::Client, p)),
    ]
}

fn encoded(packet: &Packet) -> BytesMut {
    let mut dst = BytesMut::new();
    encode_packet(packet, &mut dst).unwrap();
    dst
}

fn codec(role: Role) -> MqttCodec {
    match role {
        Role::Server => MqttCodec::server(LIMIT),
        Role::Client => MqttCodec::client(LIMIT),
    }
}

/// Decodes with `decode_packet` until it asks for more bytes or fails; must never panic.
fn drain(bytes: &[u8], role: Role, limit: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decode_packet(&mut buf, role, limit) {}
}

#[test]
fn pipelined_publishes_decode_and_encode_without_allocating_per_packet() {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("sensors/42/temperature").unwrap(),
        packet_id: PacketId::new(7),
        payload: Bytes::from(vec![1u8; 64]),
        properties: None,
    };
    let packet = Packet::Publish(publish);
    let mut buf = BytesMut::with_capacity(100 * 1000);
    let mut decoded = Vec::with_capacity(1000);
    let encoding = allocations_during(|| {
        for _ in 0..1000 {
            encode_packet(&packet, &mut buf).unwrap();
        }
    });
    assert_eq!(encoding, 0, "encoding into a large enough buffer");
    let mut codec = MqttCodec::client(LIMIT);
    let decoding = allocations_during(|| {
        while let Some(p) = codec.decode(&mut buf).unwrap() {
            decoded.push(p);
        }
    });
    // Sharing the read buffer with the first payload takes one allocation; the rest are slices.
    assert!(decoding <= 1, "{decoding} allocations");
    assert_eq!(decoded.len(), 1000);
    assert!(decoded.iter().all(|p| p == &packet));
}

proptest! {
    #[test]
    fn round_trip((role, packet) in directed_packet()) {
        let mut buf = encoded(&packet);
        let decoded = decode_packet(&mut buf, role, LIMIT).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn round_trip_split_at_every_byte((role, packet) in directed_packet()) {
        let bytes = encoded(&packet);
        for cut in 0..=bytes.len() {
            let mut codec = codec(role);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&bytes[..cut]);
            let early = codec.decode(&mut buf).unwrap();
            if cut < bytes.len() {
                prop_assert_eq!(early, None);
                buf.extend_from_slice(&bytes[cut..]);
                let whole = codec.decode(&mut buf).unwrap();
                prop_assert_eq!(whole.as_ref(), Some(&packet));
            } else {
                prop_assert_eq!(early.as_ref(), Some(&packet));
            }
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn round_trip_one_byte_at_a_time((role, packet) in directed_packet()) {
        let bytes = encoded(&packet);
        let mut codec = codec(role);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in bytes.iter() {
            buf.extend_from_slice(&[*byte]);
            if let Some(p) = codec.decode(&mut buf).unwrap() {
                decoded.push(p);
            }
        }
        prop_assert_eq!(decoded, vec![packet]);
    }

    #[test]
    fn concatenated_packets_decode_in_order(
        role in prop_oneof![Just(Role::Server), Just(Role::Client)],
        seed in prop::collection::vec((client_to_server(), server_to_client()), 1..12),
    ) {
        let packets: Vec<Packet> = seed
            .into_iter()
            .map(|(to_server, to_client)| if role == Role::Server { to_server } else { to_client })
            .collect();
        let mut buf = BytesMut::new();
        for packet in &packets {
            encode_packet(packet, &mut buf).unwrap();
        }
        let mut codec = codec(role);
        let mut decoded = Vec::new();
        while let Some(packet) = codec.decode(&mut buf).unwrap() {
            decoded.push(packet);
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        limit in prop_oneof![Just(LIMIT), 0usize..64],
    ) {
        drain(&bytes, Role::Server, limit);
        drain(&bytes, Role::Client, limit);
        for role in [Role::Server, Role::Client] {
            let mut codec = codec(role);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    #[test]
    fn decoding_mutated_packets_never_panics(
        (role, packet) in directed_packet(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&packet).to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let end = cut.index(bytes.len() + 1);
        drain(&bytes[..end], role, LIMIT);
        drain(&bytes, Role::Server, LIMIT);
        drain(&bytes, Role::Client, LIMIT);
    }
}
