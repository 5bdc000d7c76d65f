//! Property tests of the MQTT 5.0 codec: round trips for every packet type in the direction it travels, with
//! the properties the specification allows in it (table of section 2.2.2.2, written out here independently of
//! the codec's own table), byte-by-byte framing through `MqttCodec`, and a decoder that never panics on
//! arbitrary input at level 5.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use harbormq::codec::properties::{boxed, MAX_VARINT};
use harbormq::codec::{
    decode_packet_at, encode_packet_at, encode_publish_v5, Ack, ClientId, ConnAck, Connect,
    LastWill, MaybeProperties, MaybePublishProperties, MqttCodec, Packet, PacketId, Properties,
    ProtocolLevel, Publish, PublishExtras, PublishHead, PublishProperties, QoS, ReasonCode,
    ReasonOnly, RetainHandling, Role, SubAck, Subscribe, SubscribeReturnCode, SubscriptionOptions,
    UnsubAck, Unsubscribe, UserProperties,
};
use harbormq::topic::{TopicFilter, TopicName};
use proptest::prelude::*;
use proptest::sample::select;
use tokio_util::codec::Decoder;

const LIMIT: usize = 1 << 20;
const V5: ProtocolLevel = ProtocolLevel::V5;

// ---------------------------------------------------------------------------------------------------------
// Where a property section sits, and the properties the specification allows there.
// ---------------------------------------------------------------------------------------------------------

/// A property section, by the packet (and direction) it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Connect,
    Will,
    ConnAck,
    /// PUBLISH from client to server: no Subscription Identifier [MQTT-3.3.4-6].
    PublishToServer,
    /// PUBLISH from server to client: any number of Subscription Identifiers.
    PublishToClient,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    /// SUBACK and UNSUBACK.
    SubAck,
    Unsubscribe,
    Disconnect,
    Auth,
}

fn keep<T>(allowed: bool, value: Option<T>) -> Option<T> {
    if allowed {
        value
    } else {
        None
    }
}

/// `p` with every property the specification does not allow in `scope` removed (section 2.2.2.2).
fn restrict(p: Properties, scope: Scope) -> Properties {
    use Scope::*;
    let message = matches!(scope, PublishToServer | PublishToClient | Will);
    let publish = matches!(scope, PublishToServer | PublishToClient);
    let connect = scope == Connect;
    let connack = scope == ConnAck;
    let subscription_identifiers = match scope {
        PublishToClient => p.subscription_identifiers,
        Subscribe => p.subscription_identifiers.into_iter().take(1).collect(),
        _ => Vec::new(),
    };
    Properties {
        payload_format_indicator: keep(message, p.payload_format_indicator),
        message_expiry_interval: keep(message, p.message_expiry_interval),
        content_type: keep(message, p.content_type),
        response_topic: keep(message, p.response_topic),
        correlation_data: keep(message, p.correlation_data),
        subscription_identifiers,
        session_expiry_interval: keep(
            matches!(scope, Connect | ConnAck | Disconnect),
            p.session_expiry_interval,
        ),
        assigned_client_identifier: keep(connack, p.assigned_client_identifier),
        server_keep_alive: keep(connack, p.server_keep_alive),
        authentication_method: keep(
            matches!(scope, Connect | ConnAck | Auth),
            p.authentication_method,
        ),
        authentication_data: keep(
            matches!(scope, Connect | ConnAck | Auth),
            p.authentication_data,
        ),
        request_problem_information: keep(connect, p.request_problem_information),
        will_delay_interval: keep(scope == Will, p.will_delay_interval),
        request_response_information: keep(connect, p.request_response_information),
        response_information: keep(connack, p.response_information),
        server_reference: keep(matches!(scope, ConnAck | Disconnect), p.server_reference),
        reason_string: keep(
            matches!(scope, ConnAck | Ack | SubAck | Disconnect | Auth),
            p.reason_string,
        ),
        receive_maximum: keep(connect || connack, p.receive_maximum),
        topic_alias_maximum: keep(connect || connack, p.topic_alias_maximum),
        topic_alias: keep(publish, p.topic_alias),
        maximum_qos: keep(connack, p.maximum_qos),
        retain_available: keep(connack, p.retain_available),
        user_properties: p.user_properties,
        maximum_packet_size: keep(connect || connack, p.maximum_packet_size),
        wildcard_subscription_available: keep(connack, p.wildcard_subscription_available),
        subscription_identifier_available: keep(connack, p.subscription_identifier_available),
        shared_subscription_available: keep(connack, p.shared_subscription_available),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Value strategies.
// ---------------------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = ByteString> {
    "[a-zA-Z0-9 _/$é\u{4e2d}\u{1F600}-]{0,10}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

/// A property that is 0 or 1.
fn flag() -> impl Strategy<Value = u8> {
    0u8..=1
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::of(s)
}

/// User properties with names drawn from a small set, so that names repeat.
fn user_properties() -> impl Strategy<Value = Vec<(ByteString, ByteString)>> {
    let name = prop_oneof![
        3 => select(vec!["a", "b", "key"]).prop_map(ByteString::from),
        1 => text(),
    ];
    prop::collection::vec((name, text()), 0..5)
}

/// A set of every property, each present or not, with values the specification allows.
fn any_properties() -> BoxedStrategy<Properties> {
    let message = (
        opt(flag()),
        opt(any::<u32>()),
        opt(text()),
        opt(text()),
        opt(binary()),
        opt(1..=u16::MAX),
    );
    let connect = (
        opt(any::<u32>()),
        opt(text()),
        opt(binary()),
        opt(flag()),
        opt(any::<u32>()),
        opt(flag()),
        opt(1..=u16::MAX),
        opt(any::<u16>()),
        opt(1..=u32::MAX),
    );
    let connack = (
        opt(text()),
        opt(any::<u16>()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(flag()),
        opt(flag()),
        opt(flag()),
        opt(flag()),
        opt(flag()),
    );
    let subscription_identifiers = prop::collection::vec(
        prop_oneof![1u32..128, 128u32..=16_383, 1u32..=MAX_VARINT],
        0..4,
    );
    (
        message,
        connect,
        connack,
        user_properties(),
        subscription_identifiers,
    )
        .prop_map(
            |(
                (pfi, mei, content_type, response_topic, correlation_data, topic_alias),
                (sei, auth_method, auth_data, rpi, wdi, rri, receive_max, alias_max, max_packet),
                (
                    assigned,
                    keep_alive,
                    response_info,
                    server_ref,
                    reason,
                    max_qos,
                    retain,
                    wildcard,
                    sub_ids,
                    shared,
                ),
                user_properties,
                subscription_identifiers,
            )| Properties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type,
                response_topic,
                correlation_data,
                subscription_identifiers,
                session_expiry_interval: sei,
                assigned_client_identifier: assigned,
                server_keep_alive: keep_alive,
                authentication_method: auth_method,
                authentication_data: auth_data,
                request_problem_information: rpi,
                will_delay_interval: wdi,
                request_response_information: rri,
                response_information: response_info,
                server_reference: server_ref,
                reason_string: reason,
                receive_maximum: receive_max,
                topic_alias_maximum: alias_max,
                topic_alias,
                maximum_qos: max_qos,
                retain_available: retain,
                user_properties: UserProperties::from_pairs(
                    user_properties.iter().map(|(k, v)| (&**k, &**v)),
                )
                .expect("generated strings are shorter than 65,536 bytes"),
                maximum_packet_size: max_packet,
                wildcard_subscription_available: wildcard,
                subscription_identifier_available: sub_ids,
                shared_subscription_available: shared,
            },
        )
        .boxed()
}

/// Properties allowed in `scope`, `None` for an empty set (as the decoder gives it) about a third of the time.
fn properties(scope: Scope) -> BoxedStrategy<MaybeProperties> {
    prop_oneof![
        1 => Just(None),
        2 => any_properties().prop_map(move |p| boxed(restrict(p, scope))),
    ]
    .boxed()
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).expect("non-zero"))
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
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

/// A reason code from `codes`, Success half of the time when it is one of them.
fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    let success = if codes.contains(&0) {
        Just(ReasonCode::SUCCESS).boxed()
    } else {
        select(codes).prop_map(ReasonCode).boxed()
    };
    prop_oneof![success, select(codes).prop_map(ReasonCode)]
}

// The reason codes each packet may carry, as the specification lists them.

/// Section 3.2.2.2, Table 3-1.
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// Sections 3.4.2.1 and 3.5.2.1.
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Sections 3.6.2.1 and 3.7.2.1.
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
/// Section 3.9.3, the refusals (0x80 is `SubscribeReturnCode::Failure`).
const SUBACK_REFUSALS: &[u8] = &[0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
/// Section 3.11.3.
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Section 3.14.2.1, Table 3-10: the codes a client may send.
const DISCONNECT_BY_CLIENT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
];
/// Section 3.14.2.1, Table 3-10: the codes a server may send.
const DISCONNECT_BY_SERVER: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// Section 3.15.2.1.
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

// ---------------------------------------------------------------------------------------------------------
// Packet strategies.
// ---------------------------------------------------------------------------------------------------------

fn will() -> impl Strategy<Value = LastWill> {
    (
        topic_name(),
        payload(),
        qos(),
        any::<bool>(),
        properties(Scope::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect() -> impl Strategy<Value = Connect> {
    let credentials = opt((text(), opt(binary())));
    (
        any::<bool>(),
        any::<u16>(),
        level_text(),
        opt(will()),
        credentials,
        properties(Scope::Connect),
    )
        .prop_map(
            |(clean_session, keep_alive_secs, id, will, credentials, properties)| {
                let (username, password) = match credentials {
                    Some((user, password)) => (Some(user), password),
                    None => (None, None),
                };
                Connect {
                    level: V5,
                    clean_session,
                    keep_alive_secs,
                    client_id: ClientId::new(id),
                    will,
                    username,
                    password,
                    properties,
                }
            },
        )
}

fn connack() -> impl Strategy<Value = ConnAck> {
    (
        any::<bool>(),
        reason(CONNACK_CODES),
        properties(Scope::ConnAck),
    )
        .prop_map(|(present, code, properties)| ConnAck {
            // Session Present is 0 with a refusal [MQTT-3.2.2-6].
            session_present: present && code == ReasonCode::SUCCESS,
            code,
            properties,
        })
}

/// The PUBLISH form of generated properties (which hold only what a PUBLISH may carry).
fn publish_properties(properties: MaybeProperties) -> MaybePublishProperties {
    let p = properties.map(|p| *p).unwrap_or_default();
    PublishProperties::from_properties(&p)
        .expect("generated values are valid")
        .boxed()
}

/// A PUBLISH with properties allowed in `scope`; sometimes its topic is left out for a Topic Alias.
fn publish(scope: Scope) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![4 => topic_name().prop_map(Some), 1 => Just(None)],
        1..=u16::MAX,
        packet_id(),
        payload(),
        properties(scope),
    )
        .prop_map(
            move |(qos, dup, retain, topic, alias, id, payload, properties)| {
                let acknowledged = qos != QoS::AtMostOnce;
                let (topic, properties) = match topic {
                    Some(topic) => (topic, properties),
                    None => {
                        // An empty topic stands for the Topic Alias, which must then be present.
                        let mut p = properties.map(|p| *p).unwrap_or_default();
                        p.topic_alias = Some(alias);
                        (TopicName::aliased(), boxed(p))
                    }
                };
                Publish {
                    dup: dup && acknowledged,
                    qos,
                    retain,
                    topic,
                    packet_id: acknowledged.then_some(id),
                    payload,
                    properties: publish_properties(properties),
                }
            },
        )
}

fn ack(codes: &'static [u8]) -> impl Strategy<Value = Ack> {
    (packet_id(), reason(codes), properties(Scope::Ack)).prop_map(
        |(packet_id, reason, properties)| Ack {
            packet_id,
            reason,
            properties,
        },
    )
}

fn subscription_options() -> impl Strategy<Value = SubscriptionOptions> {
    let handling = prop_oneof![
        Just(RetainHandling::OnSubscribe),
        Just(RetainHandling::OnNewSubscription),
        Just(RetainHandling::Never),
    ];
    (qos(), any::<bool>(), any::<bool>(), handling).prop_map(
        |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        },
    )
}

fn subscribe() -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        prop::collection::vec((topic_filter(), subscription_options()), 1..6),
        properties(Scope::Subscribe),
    )
        .prop_map(|(packet_id, filters, properties)| Subscribe {
            packet_id,
            filters,
            properties,
        })
}

fn suback() -> impl Strategy<Value = SubAck> {
    let code = prop_oneof![
        qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure),
        select(SUBACK_REFUSALS).prop_map(|c| SubscribeReturnCode::Refused(ReasonCode(c))),
    ];
    (
        packet_id(),
        prop::collection::vec(code, 1..6),
        properties(Scope::SubAck),
    )
        .prop_map(|(packet_id, return_codes, properties)| SubAck {
            packet_id,
            return_codes,
            properties,
        })
}

fn unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        prop::collection::vec(topic_filter(), 1..6),
        properties(Scope::Unsubscribe),
    )
        .prop_map(|(packet_id, filters, properties)| Unsubscribe {
            packet_id,
            filters,
            properties,
        })
}

fn unsuback() -> impl Strategy<Value = UnsubAck> {
    (
        packet_id(),
        prop::collection::vec(select(UNSUBACK_CODES).prop_map(ReasonCode), 1..6),
        properties(Scope::SubAck),
    )
        .prop_map(|(packet_id, reason_codes, properties)| UnsubAck {
            packet_id,
            reason_codes,
            properties,
        })
}

fn reason_only(codes: &'static [u8], scope: Scope) -> impl Strategy<Value = ReasonOnly> {
    (reason(codes), properties(scope))
        .prop_map(|(reason, properties)| ReasonOnly { reason, properties })
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP, which travel both ways.
fn acks() -> impl Strategy<Value = Packet> {
    prop_oneof![
        ack(PUBACK_CODES).prop_map(Packet::PubAck),
        ack(PUBACK_CODES).prop_map(Packet::PubRec),
        ack(PUBREL_CODES).prop_map(Packet::PubRel),
        ack(PUBREL_CODES).prop_map(Packet::PubComp),
    ]
}

/// DISCONNECT or AUTH, in either direction.
fn disconnect_or_auth() -> impl Strategy<Value = Packet> {
    prop_oneof![
        reason_only(DISCONNECT_BY_CLIENT, Scope::Disconnect).prop_map(Packet::Disconnect),
        reason_only(DISCONNECT_BY_SERVER, Scope::Disconnect).prop_map(Packet::Disconnect),
        reason_only(AUTH_CODES, Scope::Auth).prop_map(Packet::Auth),
    ]
}

/// Every MQTT 5.0 packet a client sends, which the server role decodes.
fn client_to_server() -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connect().prop_map(|c| Packet::Connect(Box::new(c))),
        1 => publish(Scope::PublishToServer).prop_map(Packet::Publish),
        4 => acks(),
        1 => subscribe().prop_map(Packet::Subscribe),
        1 => unsubscribe().prop_map(Packet::Unsubscribe),
        1 => Just(Packet::PingReq),
        1 => reason_only(DISCONNECT_BY_CLIENT, Scope::Disconnect).prop_map(Packet::Disconnect),
        1 => reason_only(AUTH_CODES, Scope::Auth).prop_map(Packet::Auth),
    ]
    .boxed()
}

/// Every MQTT 5.0 packet a server sends, which the client role decodes.
fn server_to_client() -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connack().prop_map(Packet::ConnAck),
        1 => publish(Scope::PublishToClient).prop_map(Packet::Publish),
        4 => acks(),
        1 => suback().prop_map(Packet::SubAck),
        1 => unsuback().prop_map(Packet::UnsubAck),
        1 => Just(Packet::PingResp),
        1 => reason_only(DISCONNECT_BY_SERVER, Scope::Disconnect).prop_map(Packet::Disconnect),
        1 => reason_only(AUTH_CODES, Scope::Auth).prop_map(Packet::Auth),
    ]
    .boxed()
}

/// A packet together with the role that decodes it.
fn directed_packet() -> impl Strategy<Value = (Role, Packet)> {
    prop_oneof![
        client_to_server().prop_map(|p| (Role::Server, p)),
        server_to_client().prop_map(|p| (Role::Client, p)),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------------------

fn encoded(packet: &Packet) -> BytesMut {
    let mut dst = BytesMut::new();
    encode_packet_at(packet, V5, &mut dst).expect("a valid packet encodes");
    dst
}

/// The smallest MQTT 5.0 CONNECT.
fn v5_connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        level: V5,
        clean_session: true,
        keep_alive_secs: 30,
        client_id: ClientId::new("primer"),
        will: None,
        username: None,
        password: None,
        properties: None,
    }))
}

/// A codec speaking MQTT 5.0 for `role`: a client codec told so, a server codec that has decoded a v5 CONNECT
/// (unless `packet` is itself the CONNECT, whose level a fresh server codec must adopt).
fn v5_codec(role: Role, packet: &Packet) -> MqttCodec {
    match role {
        Role::Client => MqttCodec::client(LIMIT).at_level(V5),
        Role::Server if matches!(packet, Packet::Connect(_)) => MqttCodec::server(LIMIT),
        Role::Server => {
            let mut codec = MqttCodec::server(LIMIT);
            let mut buf = encoded(&v5_connect());
            let primer = codec.decode(&mut buf).expect("the primer decodes");
            assert_eq!(primer, Some(v5_connect()));
            assert_eq!(
                codec.level(),
                V5,
                "a server codec adopts the CONNECT's level"
            );
            codec
        }
    }
}

/// Decodes at level 5 until the decoder asks for more bytes or fails; must never panic.
fn drain(bytes: &[u8], role: Role, limit: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decode_packet_at(&mut buf, role, V5, limit) {}
}

fn ack_of(packet: &Packet) -> Option<&Ack> {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => Some(a),
        _ => None,
    }
}

/// Every reason code the specification lists for a packet decodes back, in the direction that may carry it,
/// and every other value is refused (sections 2.4, 3.2.2.2, 3.4.2.1 to 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1,
/// 3.15.2.1).
#[test]
fn exactly_the_listed_reason_codes_are_accepted() {
    let id = PacketId::new(9).expect("non-zero");
    let disconnect: Vec<u8> = DISCONNECT_BY_CLIENT
        .iter()
        .chain(DISCONNECT_BY_SERVER)
        .copied()
        .collect();
    type Build = fn(PacketId, ReasonCode) -> Packet;
    let cases: [(&str, Role, &[u8], Build); 8] = [
        ("CONNACK", Role::Client, CONNACK_CODES, |_, code| {
            Packet::ConnAck(ConnAck {
                session_present: false,
                code,
                properties: None,
            })
        }),
        ("PUBACK", Role::Server, PUBACK_CODES, |id, code| {
            Packet::PubAck(Ack::with_reason(id, code))
        }),
        ("PUBREC", Role::Client, PUBACK_CODES, |id, code| {
            Packet::PubRec(Ack::with_reason(id, code))
        }),
        ("PUBREL", Role::Server, PUBREL_CODES, |id, code| {
            Packet::PubRel(Ack::with_reason(id, code))
        }),
        ("PUBCOMP", Role::Client, PUBREL_CODES, |id, code| {
            Packet::PubComp(Ack::with_reason(id, code))
        }),
        ("UNSUBACK", Role::Client, UNSUBACK_CODES, |id, code| {
            Packet::UnsubAck(UnsubAck {
                packet_id: id,
                reason_codes: vec![ReasonCode::SUCCESS, code],
                properties: None,
            })
        }),
        ("DISCONNECT", Role::Client, &disconnect, |_, code| {
            Packet::Disconnect(ReasonOnly::new(code))
        }),
        ("AUTH", Role::Server, AUTH_CODES, |_, code| {
            Packet::Auth(ReasonOnly::new(code))
        }),
    ];
    for (name, role, listed, build) in cases {
        for code in 0..=u8::MAX {
            let packet = build(id, ReasonCode(code));
            let mut buf = encoded(&packet);
            let decoded = decode_packet_at(&mut buf, role, V5, LIMIT);
            if listed.contains(&code) {
                assert_eq!(decoded.unwrap(), Some(packet), "{name} {code:#04x}");
            } else {
                let err = decoded.expect_err(&format!("{name} {code:#04x} is refused"));
                assert!(
                    matches!(err, harbormq::codec::DecodeError::InvalidReasonCode { code: c, .. } if c == code),
                    "{name} {code:#04x}: {err:?}"
                );
            }
        }
    }
    // SUBACK: 0x00 to 0x02 grant a QoS, 0x80 is the failure of 3.1.1, the other refusals are kept.
    for code in 0..=u8::MAX {
        let entry = match code {
            0..=2 => SubscribeReturnCode::Success(QoS::from_u8(code).expect("0 to 2")),
            0x80 => SubscribeReturnCode::Failure,
            _ => SubscribeReturnCode::Refused(ReasonCode(code)),
        };
        let packet = Packet::SubAck(SubAck {
            packet_id: id,
            return_codes: vec![entry],
            properties: None,
        });
        let mut buf = encoded(&packet);
        let decoded = decode_packet_at(&mut buf, Role::Client, V5, LIMIT);
        if code <= 2 || code == 0x80 || SUBACK_REFUSALS.contains(&code) {
            assert_eq!(decoded.unwrap(), Some(packet), "SUBACK {code:#04x}");
        } else {
            assert!(decoded.is_err(), "SUBACK {code:#04x} is refused");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_at_level_5((role, packet) in directed_packet()) {
        let mut buf = encoded(&packet);
        let decoded = decode_packet_at(&mut buf, role, V5, LIMIT).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn round_trip_through_the_codec_split_at_every_byte((role, packet) in directed_packet()) {
        let bytes = encoded(&packet);
        for cut in 0..=bytes.len() {
            let mut codec = v5_codec(role, &packet);
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
            prop_assert_eq!(codec.level(), V5);
        }
    }

    #[test]
    fn the_codec_encodes_at_its_level((role, packet) in directed_packet()) {
        // What the codec writes once it speaks level 5 is the level 5 wire form.
        let mut codec = v5_codec(role, &packet).at_level(V5);
        let mut dst = BytesMut::new();
        tokio_util::codec::Encoder::encode(&mut codec, &packet, &mut dst).unwrap();
        prop_assert_eq!(&dst[..], &encoded(&packet)[..]);
    }

    #[test]
    fn a_server_codec_decodes_a_v5_session_after_its_connect(
        connect in connect(),
        packets in prop::collection::vec(client_to_server(), 1..10),
    ) {
        let mut buf = BytesMut::new();
        let connect = Packet::Connect(Box::new(connect));
        for packet in std::iter::once(&connect).chain(&packets) {
            encode_packet_at(packet, V5, &mut buf).unwrap();
        }
        let mut codec = MqttCodec::server(LIMIT);
        prop_assert_eq!(codec.level(), ProtocolLevel::V311);
        let mut decoded = Vec::new();
        while let Some(packet) = codec.decode(&mut buf).unwrap() {
            decoded.push(packet);
        }
        prop_assert_eq!(codec.level(), V5);
        prop_assert_eq!(&decoded[0], &connect);
        prop_assert_eq!(&decoded[1..], &packets[..]);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_v5_client_codec_decodes_concatenated_packets_in_order(
        packets in prop::collection::vec(server_to_client(), 1..10),
    ) {
        let mut buf = BytesMut::new();
        for packet in &packets {
            encode_packet_at(packet, V5, &mut buf).unwrap();
        }
        let mut codec = MqttCodec::client(LIMIT).at_level(V5);
        let mut decoded = Vec::new();
        while let Some(packet) = codec.decode(&mut buf).unwrap() {
            decoded.push(packet);
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }

    /// Sections 3.4.2.1 to 3.7.2.1: the reason code is left out for Success without properties, the property
    /// length for a reason code without properties.
    #[test]
    fn acknowledgements_take_the_shortest_form(packet in acks()) {
        let ack = ack_of(&packet).expect("an acknowledgement");
        let bytes = encoded(&packet);
        match (ack.reason, &ack.properties) {
            (ReasonCode::SUCCESS, None) => prop_assert_eq!(bytes.len(), 4),
            (_, None) => {
                prop_assert_eq!(bytes.len(), 5);
                prop_assert_eq!(bytes[4], ack.reason.0);
            }
            (_, Some(_)) => prop_assert!(bytes.len() > 6),
        }
    }

    /// DISCONNECT and AUTH are empty for Success without properties (sections 3.14.2.1, 3.15.2.1); with
    /// another reason code they carry it and a property length of 0, which some clients wait for.
    #[test]
    fn disconnect_and_auth_take_the_shortest_form(packet in disconnect_or_auth()) {
        let (Packet::Disconnect(body) | Packet::Auth(body)) = &packet else {
            unreachable!("DISCONNECT or AUTH");
        };
        let bytes = encoded(&packet);
        match (body.reason, &body.properties) {
            (ReasonCode::SUCCESS, None) => prop_assert_eq!(bytes.len(), 2),
            (_, None) => prop_assert_eq!(&bytes[1..], &[2, body.reason.0, 0][..]),
            (_, Some(_)) => prop_assert!(bytes.len() > 3),
        }
    }

    /// A server forwarding a message replaces its expiry, alias and subscription identifiers with its own.
    #[test]
    fn publish_extras_replace_the_message_properties(
        publish in publish(Scope::PublishToServer),
        expiry in opt(any::<u32>()),
        alias in opt(1..=u16::MAX),
        ids in prop::collection::vec(1u32..=MAX_VARINT, 0..4),
    ) {
        let extras = PublishExtras {
            message_expiry_interval: expiry,
            topic_alias: alias,
            subscription_identifiers: &ids,
        };
        let message = publish
            .properties
            .as_deref()
            .map(PublishProperties::to_properties)
            .unwrap_or_default();
        let mut dst = BytesMut::new();
        encode_publish_v5(
            PublishHead::of(&publish),
            publish.properties.as_deref(),
            &extras,
            &publish.payload,
            &mut dst,
        )
        .unwrap();
        let mut expected = message.clone();
        if expiry.is_some() {
            expected.message_expiry_interval = expiry;
        }
        if alias.is_some() {
            expected.topic_alias = alias;
        }
        if !ids.is_empty() {
            expected.subscription_identifiers = ids.clone();
        }
        let decoded = decode_packet_at(&mut dst, Role::Client, V5, LIMIT).unwrap();
        let Some(Packet::Publish(decoded)) = decoded else {
            return Err(TestCaseError::fail(format!("not a PUBLISH: {decoded:?}")));
        };
        prop_assert_eq!(decoded.properties, publish_properties(boxed(expected)));
        prop_assert_eq!(decoded.topic, publish.topic);
        prop_assert_eq!(decoded.payload, publish.payload);
        prop_assert!(dst.is_empty());
    }

    #[test]
    fn decoding_arbitrary_bytes_at_level_5_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        limit in prop_oneof![Just(LIMIT), 0usize..64],
    ) {
        drain(&bytes, Role::Server, limit);
        drain(&bytes, Role::Client, limit);
        for codec in [MqttCodec::server(limit).at_level(V5), MqttCodec::client(limit).at_level(V5)] {
            let mut codec = codec;
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    #[test]
    fn decoding_mutated_v5_packets_never_panics(
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

    /// Whatever decodes at level 5 from mutated bytes encodes and decodes back to itself.
    #[test]
    fn whatever_decodes_at_level_5_round_trips(
        (role, packet) in directed_packet(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
    ) {
        let mut bytes = encoded(&packet).to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(decoded)) = decode_packet_at(&mut buf, role, V5, LIMIT) {
            let mut again = BytesMut::new();
            encode_packet_at(&decoded, V5, &mut again).unwrap();
            let back = decode_packet_at(&mut again, role, V5, usize::MAX).unwrap();
            prop_assert_eq!(back, Some(decoded));
            prop_assert!(again.is_empty());
        }
    }
}
