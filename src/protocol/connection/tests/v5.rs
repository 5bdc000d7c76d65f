//! The MQTT 5.0 rules of the core, in virtual time: CONNACK properties, session expiry, keepalive imposed by
//! the server, DISCONNECT reason codes both ways, Receive Maximum both ways, topic aliases both ways, Maximum
//! Packet Size, message expiry, the payload format check and enhanced authentication refused.

use super::*;
use crate::codec::{props as props_of, Ack, Properties, ReasonCode, ReasonOnly};
use crate::protocol::io::{CloseReason, EndCause};
use crate::protocol::v5::AliasUse;

/// An MQTT 5.0 CONNECT with these properties.
fn connect5(client_id: &str, clean_start: bool, keep_alive_secs: u16, props: Properties) -> Packet {
    Packet::Connect(Box::new(Connect {
        level: ProtocolLevel::V5,
        clean_session: clean_start,
        keep_alive_secs,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: crate::codec::properties::boxed(props),
    }))
}

/// Connects an MQTT 5.0 client with a clean start and these CONNECT properties; returns its CONNACK.
fn connected5(h: &mut Harness, props: Properties) -> ConnAck {
    h.read(vec![connect5("c5", true, 0, props)]);
    h.feed(registered(false, false, 0));
    let requests = h.requests();
    if requests.iter().any(|r| matches!(r, Request::Store { .. })) {
        // A session that outlives its connection is stored before CONNACK.
        h.commit(Harness::ticket_of(&requests));
    }
    let packets = h.packets();
    h.take();
    match packets.as_slice() {
        [Packet::ConnAck(ack)] => ack.clone(),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// PUBLISH properties made of `p`.
fn publish_props(p: Properties) -> crate::codec::MaybePublishProperties {
    crate::codec::PublishProperties::from_properties(&p)
        .unwrap()
        .boxed()
}

fn publish5(
    topic: &str,
    qos: QoS,
    id: Option<u16>,
    payload: &'static [u8],
    props: Properties,
) -> Packet {
    match publish(topic, qos, id, payload) {
        Packet::Publish(mut p) => {
            p.properties = publish_props(props);
            Packet::Publish(p)
        }
        other => other,
    }
}

fn disconnect_reasons(packets: &[Packet]) -> Vec<ReasonCode> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason),
            _ => None,
        })
        .collect()
}

fn routed_topics(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { messages, .. } => Some(messages),
            _ => None,
        })
        .flatten()
        .map(|m| m.topic.as_str().to_owned())
        .collect()
}

#[test]
fn connack_reports_what_the_server_does() {
    // Section 3.2.2.3: Receive Maximum, Topic Alias Maximum, Maximum Packet Size, the availability flags, and
    // the identifier assigned to a client that sent none [MQTT-3.2.2-16].
    let mut h = Harness::new();
    h.read(vec![connect5("", true, 30, Properties::default())]);
    let assigned = match h.requests().as_slice() {
        [Request::Register { client_id, .. }] => client_id.clone(),
        other => panic!("expected a registration, got {other:?}"),
    };
    h.feed(registered(false, false, 0));
    let ack = match h.packets().as_slice() {
        [Packet::ConnAck(ack)] => ack.clone(),
        other => panic!("expected CONNACK, got {other:?}"),
    };
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    let p = props_of(&ack.properties);
    assert_eq!(p.receive_maximum, Some(3));
    assert_eq!(p.topic_alias_maximum, Some(4));
    assert_eq!(p.maximum_packet_size, Some(1 << 20));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.wildcard_subscription_available, Some(1));
    assert_eq!(p.subscription_identifier_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(
        p.maximum_qos, None,
        "QoS 2 is supported, so Maximum QoS is absent"
    );
    assert_eq!(
        p.assigned_client_identifier.as_deref(),
        Some(assigned.as_str())
    );
    assert_eq!(p.server_keep_alive, None, "30 s is within the maximum");
}

#[test]
fn a_clean_start_with_an_expiry_keeps_the_session_and_expiry_zero_does_not() {
    // Section 3.1.2.11.2: the session outlives the connection only with an expiry above 0.
    let mut h = Harness::new();
    h.read(vec![connect5(
        "keep",
        true,
        0,
        Properties {
            session_expiry_interval: Some(100),
            ..Default::default()
        },
    )]);
    match h.requests().as_slice() {
        [Request::Register { session_expiry, .. }] => assert_eq!(*session_expiry, Some(100)),
        other => panic!("expected a registration, got {other:?}"),
    }
    h.feed(registered(false, false, 0));
    let requests = h.requests();
    assert!(
        requests
            .iter()
            .any(|r| matches!(r, Request::Store { ops, .. }
            if ops.iter().any(|op| matches!(op, StoreOp::CreateSession { .. })))),
        "a session with an expiry is stored before CONNACK: {requests:?}"
    );
    assert!(h.packets().is_empty(), "CONNACK waits for the commit");
    let mut h = Harness::new();
    h.read(vec![connect5("gone", true, 0, Properties::default())]);
    h.feed(registered(false, false, 0));
    assert!(
        !h.requests()
            .iter()
            .any(|r| matches!(r, Request::Store { .. })),
        "expiry 0 stores nothing"
    );
    assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(_)]));
}

#[test]
fn the_server_imposes_its_maximum_keepalive_and_closes_with_0x8d() {
    // Section 3.2.2.3.14 and [MQTT-3.1.2-22 in 5.0]: Server Keep Alive replaces the client's value.
    let mut settings = settings();
    settings.v5.max_keepalive_secs = 10;
    let mut h = Harness::with(settings);
    let ack = connected5(&mut h, Properties::default());
    assert_eq!(props_of(&ack.properties).server_keep_alive, Some(10));
    h.advance(Duration::from_secs(14));
    h.feed(Input::Timer);
    assert!(h.out.close.is_none(), "1.5 x 10 s have not passed");
    h.advance(Duration::from_secs(2));
    h.feed(Input::Timer);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::KEEP_ALIVE_TIMEOUT]
    );
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn disconnect_may_change_the_expiry_but_not_from_zero() {
    // [MQTT-3.14.2-2]
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![Packet::Disconnect(ReasonOnly {
        reason: ReasonCode::SUCCESS,
        properties: crate::codec::properties::boxed(Properties {
            session_expiry_interval: Some(60),
            ..Default::default()
        }),
    })]);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::PROTOCOL_ERROR]
    );
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));

    let mut h = Harness::new();
    connected5(
        &mut h,
        Properties {
            session_expiry_interval: Some(100),
            ..Default::default()
        },
    );
    h.read(vec![Packet::Disconnect(ReasonOnly {
        reason: ReasonCode::SUCCESS,
        properties: crate::codec::properties::boxed(Properties {
            session_expiry_interval: Some(7),
            ..Default::default()
        }),
    })]);
    assert!(h
        .requests()
        .iter()
        .any(|r| matches!(r, Request::SessionExpiry(7))));
    assert_eq!(h.out.close, Some(CloseReason::Disconnect));
}

#[test]
fn disconnect_with_will_message_still_publishes_the_will() {
    // Section 3.14.2.1, reason 0x04.
    let mut h = Harness::new();
    let mut packet = connect5("w", true, 0, Properties::default());
    if let Packet::Connect(c) = &mut packet {
        c.will = Some(crate::codec::LastWill {
            topic: TopicName::new("will/t".to_owned()).unwrap(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: None,
        });
    }
    h.read(vec![packet]);
    h.feed(registered(false, false, 0));
    h.take();
    h.read(vec![Packet::Disconnect(ReasonOnly::new(
        ReasonCode::DISCONNECT_WITH_WILL,
    ))]);
    assert!(h.requests().iter().any(
        |r| matches!(r, Request::PublishWill { message: m, .. } if m.topic.as_str() == "will/t")
    ));
}

#[test]
fn more_unacknowledged_publishes_than_receive_maximum_is_disconnect_0x93() {
    // [MQTT-3.3.4-8]: the server's Receive Maximum is 3 in these settings.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![
        publish("t", QoS::AtLeastOnce, Some(1), b"1"),
        publish("t", QoS::ExactlyOnce, Some(2), b"2"),
        publish("t", QoS::AtLeastOnce, Some(3), b"3"),
    ]);
    assert!(h.out.close.is_none(), "three are allowed");
    let ticket = Harness::ticket_of(&h.requests());
    h.commit(ticket);
    // PUBACK 1 and 3 leave; QoS 2 id 2 is unanswered until PUBCOMP, so two more fit, a third does not.
    h.take();
    h.read(vec![
        publish("t", QoS::AtLeastOnce, Some(4), b"4"),
        publish("t", QoS::AtLeastOnce, Some(5), b"5"),
    ]);
    assert!(h.out.close.is_none());
    h.read(vec![publish("t", QoS::AtLeastOnce, Some(6), b"6")]);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::RECEIVE_MAXIMUM_EXCEEDED]
    );
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn client_topic_aliases_resolve_and_bad_ones_disconnect() {
    // Section 3.3.2.3.4, [MQTT-3.3.2-7], [MQTT-3.3.2-8]; the server's maximum is 4 in these settings.
    let alias = |n| Properties {
        topic_alias: Some(n),
        ..Default::default()
    };
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![
        publish5("long/topic/name", QoS::AtMostOnce, None, b"1", alias(2)),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::aliased(),
            packet_id: None,
            payload: Bytes::from_static(b"2"),
            properties: publish_props(alias(2)),
        }),
    ]);
    let requests = h.requests();
    assert_eq!(
        routed_topics(&requests),
        vec!["long/topic/name", "long/topic/name"]
    );
    let routed_props: Vec<_> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { messages, .. } => Some(messages),
            _ => None,
        })
        .flatten()
        .map(|m| m.properties.clone())
        .collect();
    assert!(
        routed_props.iter().all(Option::is_none),
        "the alias is not part of the message"
    );
    h.read(vec![publish5("x", QoS::AtMostOnce, None, b"3", alias(5))]);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::TOPIC_ALIAS_INVALID]
    );

    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::aliased(),
        packet_id: None,
        payload: Bytes::from_static(b"?"),
        properties: publish_props(alias(1)),
    })]);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::PROTOCOL_ERROR],
        "an alias never defined"
    );
}

#[test]
fn a_subscription_identifier_from_a_client_is_a_protocol_error() {
    // [MQTT-3.3.4-6]
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![publish5(
        "t",
        QoS::AtMostOnce,
        None,
        b"x",
        Properties {
            subscription_identifiers: vec![9],
            ..Default::default()
        },
    )]);
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::PROTOCOL_ERROR]
    );
}

#[test]
fn a_payload_marked_utf8_that_is_not_gets_0x99_and_is_not_routed() {
    // Section 3.3.2.3.2.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![publish5(
        "t",
        QoS::AtLeastOnce,
        Some(1),
        &[0xff, 0xfe],
        Properties {
            payload_format_indicator: Some(1),
            ..Default::default()
        },
    )]);
    h.feed(Input::Read(Vec::new()));
    let requests = h.requests();
    assert!(routed_topics(&requests).is_empty(), "{requests:?}");
    assert_eq!(
        h.packets(),
        vec![Packet::PubAck(Ack::with_reason(
            pid(1),
            ReasonCode::PAYLOAD_FORMAT_INVALID
        ))]
    );
}

#[test]
fn the_clients_receive_maximum_bounds_what_is_in_flight() {
    // [MQTT-3.3.4-9]: at most Receive Maximum unacknowledged QoS 1/2 PUBLISHes (max_inflight is 4 here).
    let mut h = Harness::new();
    connected5(
        &mut h,
        Properties {
            receive_maximum: Some(2),
            ..Default::default()
        },
    );
    h.feed(Input::Deliveries(vec![
        delivery("t", QoS::AtLeastOnce, None),
        delivery("t", QoS::AtLeastOnce, None),
        delivery("t", QoS::AtLeastOnce, None),
    ]));
    assert_eq!(publishes(&h.take().emits).len(), 2);
    h.read(vec![Packet::PubAck(pid(1).into())]);
    assert_eq!(publishes(&h.take().emits).len(), 1, "one ack, one more");
}

#[test]
fn a_message_larger_than_the_clients_maximum_is_not_sent_and_is_counted() {
    // [MQTT-3.1.2-25]
    let mut h = Harness::new();
    connected5(
        &mut h,
        Properties {
            maximum_packet_size: Some(64),
            ..Default::default()
        },
    );
    let big = Arc::new(Message {
        payload: Bytes::from(vec![0u8; 100]),
        ..(*message("t", QoS::AtMostOnce, b"")).clone()
    });
    h.feed(Input::Deliveries(vec![
        Delivery {
            message: big,
            qos: QoS::AtMostOnce,
            seq: None,
            retain: false,
            extras: None,
            expiring: false,
        },
        delivery("t", QoS::AtMostOnce, None),
    ]));
    let out = h.take();
    assert_eq!(publishes(&out.emits).len(), 1, "only the small one");
    assert!(out
        .requests
        .iter()
        .any(|r| matches!(r, Request::CountDropped(1))));
    // The limit is the packet's exact size: topic "t" at QoS 0 is 6 bytes besides the payload, so 58 bytes of
    // payload make 64 and go out, 59 do not.
    let sized = |n: usize| Delivery {
        message: Arc::new(Message {
            payload: Bytes::from(vec![0u8; n]),
            ..(*message("t", QoS::AtMostOnce, b"")).clone()
        }),
        ..delivery("t", QoS::AtMostOnce, None)
    };
    h.feed(Input::Deliveries(vec![sized(58), sized(59)]));
    let sent: Vec<usize> = h
        .take()
        .emits
        .iter()
        .filter_map(|e| match e {
            Emit::Publish(p) => Some(p.message.payload.len()),
            Emit::Control(_) => None,
        })
        .collect();
    assert_eq!(sent, vec![58]);
}

#[test]
fn expired_messages_are_dropped_and_forwarded_ones_carry_the_time_left() {
    // Section 3.3.2.3.3, [MQTT-3.3.2-5], [MQTT-3.3.2-6]; the clock starts at wall time 1000 ms.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    let expiring = Arc::new(Message {
        arrived_at_ms: 1_000,
        properties: publish_props(Properties {
            message_expiry_interval: Some(5),
            ..Default::default()
        }),
        ..(*message("t", QoS::AtMostOnce, b"x")).clone()
    });
    let d = |m: &Arc<Message>| Delivery {
        message: m.clone(),
        qos: QoS::AtMostOnce,
        seq: None,
        retain: false,
        extras: None,
        expiring: crate::protocol::outbound::expiring(m),
    };
    h.advance(Duration::from_millis(2_000));
    h.feed(Input::Deliveries(vec![d(&expiring)]));
    let emits = h.take().emits;
    match emits.as_slice() {
        [Emit::Publish(p)] => assert_eq!(
            p.v5.as_ref().and_then(|v| v.message_expiry_interval),
            Some(3)
        ),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
    h.advance(Duration::from_millis(3_000));
    h.feed(Input::Deliveries(vec![d(&expiring)]));
    assert!(publishes(&h.take().emits).is_empty(), "expired");
}

#[test]
fn server_topic_aliases_are_used_up_to_the_clients_maximum() {
    // [MQTT-3.3.2-9], [MQTT-3.3.2-10]
    let mut h = Harness::new();
    connected5(
        &mut h,
        Properties {
            topic_alias_maximum: Some(1),
            ..Default::default()
        },
    );
    h.feed(Input::Deliveries(vec![
        delivery("a", QoS::AtMostOnce, None),
        delivery("a", QoS::AtMostOnce, None),
        delivery("b", QoS::AtMostOnce, None),
    ]));
    let aliases: Vec<_> = h
        .take()
        .emits
        .iter()
        .filter_map(|e| match e {
            Emit::Publish(p) => Some(p.v5.as_ref().and_then(|v| v.alias)),
            Emit::Control(_) => None,
        })
        .collect();
    assert_eq!(
        aliases,
        vec![Some(AliasUse::Define(1)), Some(AliasUse::Reuse(1)), None]
    );
}

#[test]
fn the_server_says_why_it_closes_a_v5_connection_and_not_a_v3_one() {
    // Section 4.13.1: 0x81 malformed, 0x8E taken over, 0x8B shutting down; nothing for 3.1.1.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.feed(Input::Read(vec![Err(
        crate::codec::DecodeError::Truncated { packet: "PUBLISH" },
    )]));
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::MALFORMED_PACKET]
    );
    for (cause, reason) in [
        (EndCause::TakenOver, ReasonCode::SESSION_TAKEN_OVER),
        (EndCause::Shutdown, ReasonCode::SERVER_SHUTTING_DOWN),
    ] {
        let mut h = Harness::new();
        connected5(&mut h, Properties::default());
        h.feed(Input::End(cause));
        assert_eq!(disconnect_reasons(&h.packets()), vec![reason]);
    }
    let mut h = Harness::new();
    h.connect_clean("v3", 0);
    h.feed(Input::End(EndCause::TakenOver));
    assert!(disconnect_reasons(&h.packets()).is_empty());
}

#[test]
fn an_authentication_method_without_a_hook_is_connack_0x8c_with_a_reason_string() {
    // Section 4.12; [MQTT-3.1.2-29]: the Reason String only when problem information is allowed.
    let method = |problem_info| Properties {
        authentication_method: Some("SCRAM-SHA-1".into()),
        request_problem_information: problem_info,
        ..Default::default()
    };
    let mut h = Harness::new();
    h.read(vec![connect5("a", true, 0, method(None))]);
    match h.packets().as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ReasonCode::BAD_AUTHENTICATION_METHOD);
            assert!(props_of(&ack.properties).reason_string.is_some());
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.out.close.is_some());
    let mut h = Harness::new();
    h.read(vec![connect5("a", true, 0, method(Some(0)))]);
    match h.packets().as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.properties, None),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn subscribe5(
    id: u16,
    filters: Vec<(&str, crate::codec::SubscriptionOptions)>,
    sub_id: Option<u32>,
) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        filters: filters
            .into_iter()
            .map(|(f, o)| (TopicFilter::new(f.to_owned()).unwrap(), o))
            .collect(),
        properties: crate::codec::properties::boxed(Properties {
            subscription_identifiers: sub_id.into_iter().collect(),
            ..Default::default()
        }),
    })
}

fn options(qos: QoS, handling: crate::codec::RetainHandling) -> crate::codec::SubscriptionOptions {
    crate::codec::SubscriptionOptions {
        qos,
        no_local: true,
        retain_as_published: true,
        retain_handling: handling,
    }
}

/// The filters whose retained messages are asked for once the SUBSCRIBE is committed, the router having said
/// which of its filters `existed`.
fn retained_asked(h: &mut Harness, existed: Vec<bool>) -> Vec<String> {
    let requests = h.requests();
    assert!(
        matches!(
            &requests[..],
            [Request::Subscribe {
                report_existing: true,
                ..
            }]
        ),
        "a v5 SUBSCRIBE asks which filters existed: {requests:?}"
    );
    let ticket = Harness::ticket_of(&requests);
    h.feed(Input::Existing { ticket, existed });
    h.commit(ticket);
    h.requests()
        .iter()
        .filter_map(|r| match r {
            Request::SendRetained(filters) => Some(filters),
            _ => None,
        })
        .flatten()
        .map(|(f, _, _)| f.as_str().to_owned())
        .collect()
}

#[test]
fn subscription_options_and_identifier_are_granted_and_shared_filters_refused_when_off() {
    // Section 3.8.3.1 and 3.8.2.1.2; with `shared_subscriptions` off they are refused with 0x9E (section 4.8.2).
    use crate::codec::{RetainHandling, SubscribeReturnCode};
    let mut settings = settings();
    settings.v5.shared_subscriptions = false;
    let mut h = Harness::with(settings);
    connected5(&mut h, Properties::default());
    h.read(vec![subscribe5(
        1,
        vec![
            (
                "a/+",
                options(QoS::AtLeastOnce, RetainHandling::OnSubscribe),
            ),
            (
                "$share/g/a",
                options(QoS::AtLeastOnce, RetainHandling::OnSubscribe),
            ),
        ],
        Some(42),
    )]);
    let requests = h.requests();
    let grants: Vec<_> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Subscribe { filters, .. } => Some(filters.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let (filter, grant) = &grants[0];
    assert_eq!(filter.as_str(), "a/+");
    assert_eq!(
        (
            grant.qos(),
            grant.no_local(),
            grant.retain_as_published(),
            grant.id()
        ),
        (QoS::AtLeastOnce, true, true, Some(42))
    );
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![suback(
            1,
            vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Refused(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            ]
        )]
    );
}

#[test]
fn retain_handling_decides_when_retained_messages_are_sent() {
    // Section 3.8.3.1: 0 at every subscribe, 1 only for a new subscription, 2 never.
    use crate::codec::RetainHandling;
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![subscribe5(
        1,
        vec![("r/0", options(QoS::AtMostOnce, RetainHandling::OnSubscribe))],
        None,
    )]);
    assert_eq!(retained_asked(&mut h, vec![false]), vec!["r/0"]);
    h.read(vec![subscribe5(
        2,
        vec![("r/0", options(QoS::AtMostOnce, RetainHandling::OnSubscribe))],
        None,
    )]);
    assert_eq!(
        retained_asked(&mut h, vec![true]),
        vec!["r/0"],
        "again for 0"
    );
    h.read(vec![subscribe5(
        3,
        vec![(
            "r/1",
            options(QoS::AtMostOnce, RetainHandling::OnNewSubscription),
        )],
        None,
    )]);
    assert_eq!(retained_asked(&mut h, vec![false]), vec!["r/1"], "new");
    h.read(vec![subscribe5(
        4,
        vec![(
            "r/1",
            options(QoS::AtMostOnce, RetainHandling::OnNewSubscription),
        )],
        None,
    )]);
    assert!(retained_asked(&mut h, vec![true]).is_empty(), "existing");
    h.read(vec![subscribe5(
        5,
        vec![("r/2", options(QoS::AtMostOnce, RetainHandling::Never))],
        None,
    )]);
    assert!(retained_asked(&mut h, vec![false]).is_empty(), "never");
}

#[test]
fn unsuback_says_which_subscriptions_existed() {
    // [MQTT-3.11.3-1 in 5.0]: one reason code per filter, 0x11 No subscription existed, as the router says.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(2),
        filters: vec![
            TopicFilter::new("u/a".to_owned()).unwrap(),
            TopicFilter::new("u/b".to_owned()).unwrap(),
        ],
        properties: None,
    })]);
    let requests = h.requests();
    assert!(matches!(
        &requests[..],
        [Request::Unsubscribe {
            report_existing: true,
            ..
        }]
    ));
    let ticket = Harness::ticket_of(&requests);
    h.feed(Input::Existing {
        ticket,
        existed: vec![true, false],
    });
    h.commit(ticket);
    assert_eq!(
        h.packets(),
        vec![Packet::UnsubAck(crate::codec::UnsubAck {
            packet_id: pid(2),
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: None,
        })]
    );
}

#[test]
fn a_delivery_carries_the_identifiers_of_every_matching_subscription() {
    // [MQTT-3.3.4-3 in 5.0], [MQTT-3.3.4-4 in 5.0]: one PUBLISH with all of them.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    let mut d = delivery("t", QoS::AtMostOnce, None);
    d.extras = crate::protocol::outbound::DeliveryExtras::of(vec![3, 7], None);
    h.feed(Input::Deliveries(vec![d]));
    match h.take().emits.as_slice() {
        [Emit::Publish(p)] => assert_eq!(
            p.v5.as_ref().map(|v| v.subscription_ids.clone()),
            Some(vec![3, 7])
        ),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

#[test]
fn shared_subscriptions_are_granted_without_retained_messages_and_bad_share_names_refused() {
    // Section 4.8.2: no retained messages on a shared subscription; [MQTT-4.8.2-1] a share name is needed.
    use crate::codec::{RetainHandling, SubscribeReturnCode};
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![subscribe5(
        1,
        vec![
            (
                "$share/g/s/#",
                options(QoS::AtLeastOnce, RetainHandling::OnSubscribe),
            ),
            (
                "$share//s",
                options(QoS::AtLeastOnce, RetainHandling::OnSubscribe),
            ),
        ],
        None,
    )]);
    let requests = h.requests();
    assert!(requests
        .iter()
        .any(|r| matches!(r, Request::Subscribe { filters, .. }
        if filters.len() == 1 && filters[0].0.as_str() == "$share/g/s/#")));
    h.commit(Harness::ticket_of(&requests));
    assert!(
        !h.requests()
            .iter()
            .any(|r| matches!(r, Request::SendRetained(_))),
        "no retained messages for a shared subscription"
    );
    assert_eq!(
        h.packets(),
        vec![suback(
            1,
            vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Refused(ReasonCode::TOPIC_FILTER_INVALID)
            ]
        )]
    );
}

#[test]
fn a_session_ending_hands_back_what_a_shared_subscription_gave_it_unacknowledged() {
    // Section 4.8.2: another member of the group gets what this one did not acknowledge.
    let mut h = Harness::new();
    h.connect_clean("member", 0);
    let group = crate::message::ShareGroup(7);
    let shared = |topic: &str, qos| Delivery {
        extras: crate::protocol::outbound::DeliveryExtras::of(Vec::new(), Some(group)),
        ..delivery(topic, qos, None)
    };
    // max_inflight is 4: two in flight (one acknowledged), one QoS 0 sent, five more waiting in the queue.
    h.feed(Input::Deliveries(vec![
        shared("s/1", QoS::AtLeastOnce),
        shared("s/2", QoS::AtLeastOnce),
        shared("s/0", QoS::AtMostOnce),
        delivery("own", QoS::AtLeastOnce, None),
        shared("s/3", QoS::AtLeastOnce),
        shared("s/4", QoS::AtLeastOnce),
    ]));
    let sent = publishes(&h.take().emits);
    assert_eq!(sent.len(), 5, "{sent:?}");
    h.read(vec![Packet::PubAck(pid(1).into())]);
    h.take();
    h.feed(Input::InputClosed);
    let handed: Vec<String> = h
        .requests()
        .iter()
        .filter_map(|r| match r {
            Request::HandBack(messages) => Some(messages.clone()),
            _ => None,
        })
        .flatten()
        .map(|(g, m)| {
            assert_eq!(g, group);
            m.topic.as_str().to_owned()
        })
        .collect();
    assert_eq!(handed, vec!["s/2", "s/3", "s/4"]);
}

#[test]
fn a_will_waits_for_its_delay_only_when_the_session_outlives_the_connection() {
    // Section 3.1.3.2.2: published after the Will Delay Interval or when the session ends, whichever is first.
    let will_delay = |session_expiry| {
        let mut h = Harness::new();
        let mut packet = connect5(
            "w",
            true,
            0,
            Properties {
                session_expiry_interval: Some(session_expiry),
                ..Default::default()
            },
        );
        if let Packet::Connect(c) = &mut packet {
            c.will = Some(crate::codec::LastWill {
                topic: TopicName::new("will/t".to_owned()).unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: crate::codec::properties::boxed(Properties {
                    will_delay_interval: Some(30),
                    content_type: Some("text/plain".into()),
                    ..Default::default()
                }),
            });
        }
        h.read(vec![packet]);
        h.feed(registered(false, false, 0));
        let requests = h.requests();
        if requests.iter().any(|r| matches!(r, Request::Store { .. })) {
            h.commit(Harness::ticket_of(&requests));
        }
        h.take();
        h.feed(Input::InputClosed);
        h.requests()
            .into_iter()
            .find_map(|r| match r {
                Request::PublishWill {
                    message,
                    delay_secs,
                } => Some((message, delay_secs)),
                _ => None,
            })
            .expect("a will")
    };
    let (message, delay) = will_delay(100);
    assert_eq!(delay, 30);
    let props = message.properties.as_deref().unwrap().to_properties();
    assert_eq!(props.will_delay_interval, None, "not a PUBLISH property");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(will_delay(0).1, 0, "the session ends now, so does the wait");
}

#[test]
fn a_publish_the_hooks_deny_gets_0x87_and_its_qos2_exchange_ends() {
    // Section 3.4.2.1 / 3.5.2.1: 0x87 Not authorized; a PUBREC with an error ends the QoS 2 exchange.
    use crate::protocol::io::Screening;
    let mut h = Harness::with(hooked());
    h.read(vec![connect5("h5", true, 0, Properties::default())]);
    h.feed(Input::Authenticated(Ok(())));
    h.feed(registered(false, false, 0));
    h.take();
    h.read(vec![
        publish("t", QoS::AtLeastOnce, Some(1), b"1"),
        publish("t", QoS::ExactlyOnce, Some(2), b"2"),
    ]);
    assert!(matches!(&h.requests()[..], [Request::ScreenPublishes(m)] if m.len() == 2));
    h.feed(Input::Screened(vec![Screening::Denied, Screening::Denied]));
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(Ack::with_reason(pid(1), ReasonCode::NOT_AUTHORIZED)),
            Packet::PubRec(Ack::with_reason(pid(2), ReasonCode::NOT_AUTHORIZED)),
        ]
    );
    // The id is free again: the same id is a new message, screened again, not a duplicate.
    h.take();
    h.read(vec![publish("t", QoS::ExactlyOnce, Some(2), b"3")]);
    assert!(matches!(&h.requests()[..], [Request::ScreenPublishes(m)] if m.len() == 1));
}

fn auth5(reason: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    Packet::Auth(ReasonOnly {
        reason,
        properties: Some(Box::new(Properties {
            authentication_method: Some(method.into()),
            authentication_data: Some(Bytes::from_static(data)),
            ..Default::default()
        })),
    })
}

/// The Authentication Data of the one `AuthStep` request among `requests`.
fn step_data(requests: &[Request]) -> Option<Bytes> {
    match requests {
        [Request::AuthStep { method, data, .. }] => {
            assert_eq!(&**method, "SCRAM");
            data.clone()
        }
        other => panic!("expected one AuthStep, got {other:?}"),
    }
}

#[test]
fn an_enhanced_authentication_exchange_runs_through_the_hook_to_connack() {
    // Section 4.12, [MQTT-4.12.0-5]: AUTH 0x18 both ways, then CONNACK with the method and the last data.
    use crate::protocol::io::AuthStep;
    let mut h = Harness::with(hooked());
    h.read(vec![connect5(
        "scram",
        true,
        0,
        Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
            ..Default::default()
        },
    )]);
    assert_eq!(
        step_data(&h.requests()).as_deref(),
        Some(&b"client-first"[..])
    );
    h.feed(Input::AuthStepped(AuthStep::Continue(Bytes::from_static(
        b"server-first",
    ))));
    assert_eq!(
        h.packets(),
        vec![auth5(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "SCRAM",
            b"server-first"
        )]
    );
    assert!(h.conn.wants_input(), "the client's AUTH is awaited");
    h.read(vec![auth5(
        ReasonCode::CONTINUE_AUTHENTICATION,
        "SCRAM",
        b"client-final",
    )]);
    assert_eq!(
        step_data(&h.requests()).as_deref(),
        Some(&b"client-final"[..])
    );
    h.feed(Input::AuthStepped(AuthStep::Success(Some(
        Bytes::from_static(b"server-final"),
    ))));
    assert!(matches!(&h.requests()[..], [Request::Authenticate(_)]));
    h.feed(Input::Authenticated(Ok(())));
    h.feed(registered(false, false, 0));
    match h.packets().as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ReasonCode::SUCCESS);
            let p = props_of(&ack.properties);
            assert_eq!(p.authentication_method.as_deref(), Some("SCRAM"));
            assert_eq!(p.authentication_data.as_deref(), Some(&b"server-final"[..]));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Re-authentication (section 4.12.1): AUTH 0x19, the hook's step, AUTH 0x00.
    h.take();
    h.read(vec![auth5(ReasonCode::REAUTHENTICATE, "SCRAM", b"again")]);
    assert_eq!(step_data(&h.requests()).as_deref(), Some(&b"again"[..]));
    h.feed(Input::AuthStepped(AuthStep::Success(None)));
    match h.packets().as_slice() {
        [Packet::Auth(a)] => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    h.read(vec![auth5(ReasonCode::REAUTHENTICATE, "SCRAM", b"third")]);
    h.feed(Input::AuthStepped(AuthStep::Fail(
        ReasonCode::NOT_AUTHORIZED,
    )));
    assert_eq!(
        disconnect_reasons(&h.packets()),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert!(h.out.close.is_some());
}

#[test]
fn an_enhanced_authentication_refused_or_interrupted_gets_a_failing_connack() {
    // Section 4.12: 0x8C when no hook speaks the method, the hook's code when it fails, 0x82 for anything
    // but AUTH before CONNACK.
    use crate::protocol::io::AuthStep;
    let start = || {
        let mut h = Harness::with(hooked());
        h.read(vec![connect5(
            "scram",
            true,
            0,
            Properties {
                authentication_method: Some("SCRAM".into()),
                ..Default::default()
            },
        )]);
        h.take();
        h
    };
    let code = |h: &mut Harness| match h.packets().as_slice() {
        [Packet::ConnAck(ack)] => ack.code,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let mut h = start();
    h.feed(Input::AuthStepped(AuthStep::Unsupported));
    assert_eq!(code(&mut h), ReasonCode::BAD_AUTHENTICATION_METHOD);
    let mut h = start();
    h.feed(Input::AuthStepped(AuthStep::Fail(
        ReasonCode::BAD_USERNAME_OR_PASSWORD,
    )));
    assert_eq!(code(&mut h), ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let mut h = start();
    h.feed(Input::AuthStepped(AuthStep::Continue(Bytes::new())));
    h.take();
    h.read(vec![Packet::PingReq]);
    assert_eq!(code(&mut h), ReasonCode::PROTOCOL_ERROR);
    assert!(h.out.close.is_some());
}

#[test]
fn a_publish_nobody_subscribes_to_is_acknowledged_with_0x10() {
    // Sections 3.4.2.1 and 3.5.2.1: 0x10 No matching subscribers, the message being accepted all the same.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![
        publish("nobody", QoS::AtLeastOnce, Some(1), b"1"),
        publish("somebody", QoS::ExactlyOnce, Some(2), b"2"),
    ]);
    let requests = h.requests();
    match &requests[..] {
        [Request::Route {
            report_unmatched, ..
        }] => assert_eq!(report_unmatched, &vec![Some(pid(1)), Some(pid(2))]),
        other => panic!("expected a route, got {other:?}"),
    }
    h.feed(Input::Unmatched(vec![pid(1)]));
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(Ack::with_reason(
                pid(1),
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            )),
            Packet::PubRec(pid(2).into()),
        ]
    );
    // A 3.1.1 client asks for no report.
    let mut h = Harness::new();
    h.connect_clean("v3", 0);
    h.read(vec![publish("nobody", QoS::AtLeastOnce, Some(1), b"1")]);
    assert!(
        matches!(&h.requests()[..], [Request::Route { report_unmatched, .. }] if report_unmatched.is_empty())
    );
}

#[test]
fn a_full_disk_refuses_a_v5_clients_messages_with_0x97_and_says_so_before_closing() {
    // Sections 3.4.2.1, 3.5.2.1 and 3.14.2.1: 0x97 Quota exceeded; nothing refused is stored or acknowledged
    // as accepted.
    let full = || {
        crate::store::StoreError::Storage(redb::StorageError::Io(std::io::Error::from(
            std::io::ErrorKind::StorageFull,
        )))
    };
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![
        publish("t", QoS::AtLeastOnce, Some(1), b"1"),
        publish("t", QoS::ExactlyOnce, Some(2), b"2"),
    ]);
    let ticket = Harness::ticket_of(&h.requests());
    h.feed(Input::Committed {
        ticket,
        result: Err(full()),
    });
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(Ack::with_reason(pid(1), ReasonCode::QUOTA_EXCEEDED)),
            Packet::PubRec(Ack::with_reason(pid(2), ReasonCode::QUOTA_EXCEEDED)),
            Packet::Disconnect(ReasonOnly::new(ReasonCode::QUOTA_EXCEEDED)),
        ]
    );
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
    // A 3.1.1 client is closed without an answer, as before.
    let mut h = Harness::new();
    h.connect_clean("v3", 0);
    h.read(vec![publish("t", QoS::AtLeastOnce, Some(1), b"1")]);
    let ticket = Harness::ticket_of(&h.requests());
    h.feed(Input::Committed {
        ticket,
        result: Err(full()),
    });
    assert!(h.packets().is_empty());
    assert!(h.out.close.is_some());
}

#[test]
fn unknown_packet_ids_get_0x92_and_a_refusing_pubrec_ends_the_exchange() {
    // Sections 3.6.2.1 and 3.7.2.1: 0x92 Packet Identifier not found; section 4.3.3: a PUBREC with a reason
    // code of 0x80 or more ends the QoS 2 exchange, without PUBREL.
    let mut h = Harness::new();
    connected5(&mut h, Properties::default());
    h.read(vec![Packet::PubRel(pid(9).into())]);
    let ticket_free = h.requests();
    assert!(ticket_free.is_empty() || matches!(&ticket_free[..], [Request::Route { .. }]));
    h.feed(Input::Read(Vec::new()));
    assert_eq!(
        h.packets(),
        vec![Packet::PubComp(Ack::with_reason(
            pid(9),
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ))]
    );
    h.read(vec![Packet::PubRec(pid(8).into())]);
    assert_eq!(
        h.packets(),
        vec![Packet::PubRel(Ack::with_reason(
            pid(8),
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ))]
    );
    h.take();
    h.feed(Input::Deliveries(vec![delivery(
        "q2",
        QoS::ExactlyOnce,
        None,
    )]));
    assert_eq!(publishes(&h.take().emits).len(), 1);
    h.read(vec![Packet::PubRec(Ack::with_reason(
        pid(1),
        ReasonCode::UNSPECIFIED_ERROR,
    ))]);
    assert!(h.packets().is_empty(), "no PUBREL after a refusing PUBREC");
    // The window is free again: max_inflight (4) more QoS 2 messages go out at once.
    h.feed(Input::Deliveries(
        (0..4)
            .map(|_| delivery("q2", QoS::ExactlyOnce, None))
            .collect(),
    ));
    assert_eq!(publishes(&h.take().emits).len(), 4);
}

#[test]
fn every_connack_refusal_the_broker_makes_reaches_a_v5_client_as_its_reason_code() {
    // Section 3.2.2.2: 0x88 Server unavailable when the router or the store fails, the authenticate hook's
    // own code (Success reads as 0x87 Not authorized), 0x8C and 0x82 from enhanced authentication (tested
    // above). Unsupported protocol levels are answered in the 3.1.1 form (0x01), the level being unknown, and a
    // v5 client without an identifier is given one, so 0x84 and 0x85 never go to a v5 client.
    let code_after = |hooks: bool, step: &dyn Fn(&mut Harness)| {
        let mut h = Harness::with(if hooks { hooked() } else { settings() });
        h.read(vec![connect5("r", false, 0, Properties::default())]);
        step(&mut h);
        match h.packets().as_slice() {
            [Packet::ConnAck(ack)] => {
                assert!(!ack.session_present, "[MQTT-3.2.2-6 in 5.0]");
                assert!(h.out.close.is_some(), "closed after a refusal");
                ack.code
            }
            other => panic!("expected one CONNACK, got {other:?}"),
        }
    };
    assert_eq!(
        code_after(false, &|h| h.feed(Input::Registered(Err(())))),
        ReasonCode::SERVER_UNAVAILABLE
    );
    assert_eq!(
        code_after(false, &|h| {
            h.feed(registered(true, true, 0));
            h.feed(Input::IncomingQos2(Err(
                crate::store::StoreError::WriterGone,
            )));
        }),
        ReasonCode::SERVER_UNAVAILABLE
    );
    for code in [
        ReasonCode::BAD_USERNAME_OR_PASSWORD,
        ReasonCode::NOT_AUTHORIZED,
        ReasonCode(0x8A),
        ReasonCode::SERVER_BUSY,
        ReasonCode(0x9F),
    ] {
        assert_eq!(
            code_after(true, &|h| h.feed(Input::Authenticated(Err(code)))),
            code
        );
    }
    assert_eq!(
        code_after(true, &|h| h
            .feed(Input::Authenticated(Err(ReasonCode::SUCCESS)))),
        ReasonCode::NOT_AUTHORIZED
    );
}

/// A connected session's state is one allocation per client. 256 bytes is a size class of jemalloc, the
/// binary's allocator (the next is 320), and the MQTT 5.0 state is kept inside it rather than in a box of its
/// own, so an idle 5.0 connection costs no more memory than a 3.1.1 one.
#[test]
fn the_v5_state_fits_in_the_allocation_of_a_connected_session() {
    let size = std::mem::size_of::<Attached>();
    assert!(size <= 256, "a connected session takes {size} bytes");
}
