//! The client limits in the core, in virtual time: client identifier length, keepalive before 5.0,
//! topic length and levels for PUBLISH and SUBSCRIBE, the subscription quota, the outgoing buffer bound for QoS
//! 0, and the connect deadline; each counted in the outputs.

use super::*;
use crate::codec::{ReasonCode, SubscribeReturnCode};
use crate::protocol::limits::{Limit, Limits};

fn limited(limits: Limits) -> Harness {
    Harness::with(Settings {
        limits,
        ..settings()
    })
}

fn connect_at(level: ProtocolLevel, client_id: &str, keep_alive_secs: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        level,
        clean_session: true,
        keep_alive_secs,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: None,
    }))
}

/// Connects a clean MQTT 5.0 client and takes every output.
fn connect5_clean(h: &mut Harness, client_id: &str) {
    h.read(vec![connect_at(ProtocolLevel::V5, client_id, 0)]);
    h.feed(registered(false, false, 0));
    assert!(matches!(h.packets()[..], [Packet::ConnAck(_)]));
    h.take();
}

fn connack_code(packets: &[Packet]) -> ReasonCode {
    match packets {
        [Packet::ConnAck(ack)] => ack.code,
        other => panic!("expected one CONNACK, got {other:?}"),
    }
}

#[test]
fn a_client_id_over_the_limit_is_refused_at_every_level() {
    let limits = Limits {
        max_client_id_len_bytes: 23,
        ..Limits::default()
    };
    let long = "x".repeat(24);
    for (level, code) in [
        // 3.1.1 has no better CONNACK code than 0x02 Identifier rejected; 5.0 says 0x85.
        (ProtocolLevel::V311, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        (ProtocolLevel::V5, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
    ] {
        let mut h = limited(limits.clone());
        h.read(vec![connect_at(level, &long, 0)]);
        let out = h.take();
        assert_eq!(connack_code(&out.packets().collect::<Vec<_>>()), code);
        assert!(out.close.is_some(), "refused and closed");
        assert!(
            !out.requests
                .iter()
                .any(|r| matches!(r, Request::Register { .. })),
            "no session state for it"
        );
        assert_eq!(out.limits.of(Limit::ClientIdLength), 1);
    }
    let mut h = limited(limits);
    h.connect_clean(&"x".repeat(23), 0);
}

#[test]
fn a_keepalive_over_the_maximum_refuses_a_311_client_and_is_capped_for_50() {
    let mut settings = settings();
    settings.v5.max_keepalive_secs = 60;
    let mut h = Harness::with(settings.clone());
    h.read(vec![connect_at(ProtocolLevel::V311, "k", 61)]);
    let out = h.take();
    assert_eq!(
        connack_code(&out.packets().collect::<Vec<_>>()),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        "written as 0x02 Identifier rejected at 3.1.1, as Mosquitto answers"
    );
    assert_eq!(out.limits.of(Limit::Keepalive), 1);
    // No keepalive at all is more than any maximum.
    let mut h = Harness::with(settings.clone());
    h.read(vec![connect_at(ProtocolLevel::V311, "k", 0)]);
    assert_eq!(h.take().limits.of(Limit::Keepalive), 1);
    // Within it, connected.
    let mut h = Harness::with(settings.clone());
    h.connect_clean("k", 60);
    // 5.0 is told Server Keep Alive instead of being refused.
    let mut h = Harness::with(settings);
    h.read(vec![connect_at(ProtocolLevel::V5, "k", 600)]);
    h.feed(registered(false, false, 0));
    let out = h.take();
    match &out.packets().collect::<Vec<_>>()[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ReasonCode::SUCCESS);
            assert_eq!(
                crate::codec::props(&ack.properties).server_keep_alive,
                Some(60)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(out.limits.is_empty());
}

#[test]
fn the_default_maximum_keeps_311_clients_without_keepalive() {
    let mut h = Harness::new();
    h.connect_clean("k", 0);
}

#[test]
fn a_311_publish_over_the_topic_limits_is_acknowledged_and_dropped() {
    let mut h = limited(Limits {
        max_topic_len_bytes: 10,
        max_topic_levels: 3,
        ..Limits::default()
    });
    h.connect_clean("p", 0);
    h.read(vec![
        publish("a/b/c/d", QoS::AtLeastOnce, Some(1), b"levels"),
        publish("abcdefghijk", QoS::AtMostOnce, None, b"length"),
        publish("a/b/c", QoS::AtLeastOnce, Some(2), b"fine"),
    ]);
    let out = h.take();
    let routed: Vec<_> = out
        .requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { messages, .. } => Some(messages.len()),
            _ => None,
        })
        .collect();
    assert_eq!(routed, vec![1], "only the message within the limits");
    assert_eq!(out.limits.of(Limit::TopicLevels), 1);
    assert_eq!(out.limits.of(Limit::TopicLength), 1);
    assert!(out.close.is_none(), "the connection stays");
    h.commit(Harness::ticket_of(&out.requests));
    assert_eq!(
        h.packets(),
        vec![Packet::PubAck(pid(1).into()), Packet::PubAck(pid(2).into())]
    );
}

#[test]
fn a_50_publish_over_the_topic_limit_gets_0x90() {
    let mut h = limited(Limits {
        max_topic_len_bytes: 4,
        ..Limits::default()
    });
    connect5_clean(&mut h, "p5");
    h.read(vec![
        publish("toolong", QoS::AtLeastOnce, Some(7), b"x"),
        publish("toolong", QoS::ExactlyOnce, Some(8), b"x"),
    ]);
    let out = h.take();
    assert!(!out
        .requests
        .iter()
        .any(|r| matches!(r, Request::Route { .. })));
    assert_eq!(out.limits.of(Limit::TopicLength), 2);
    // Nothing to store or route: the answers leave at once.
    let packets: Vec<Packet> = out.packets().collect();
    assert_eq!(
        packets,
        vec![
            Packet::PubAck(crate::codec::Ack::with_reason(
                pid(7),
                ReasonCode::TOPIC_NAME_INVALID
            )),
            Packet::PubRec(crate::codec::Ack::with_reason(
                pid(8),
                ReasonCode::TOPIC_NAME_INVALID
            )),
        ]
    );
}

fn suback_codes(h: &mut Harness) -> Vec<SubscribeReturnCode> {
    let requests = h.requests();
    if requests
        .iter()
        .any(|r| matches!(r, Request::Subscribe { .. }))
    {
        h.commit(Harness::ticket_of(&requests));
    }
    match &h.packets()[..] {
        [Packet::SubAck(ack)] => ack.return_codes.clone(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn filters_over_the_topic_limits_are_refused_in_suback() {
    let limits = Limits {
        max_topic_levels: 2,
        ..Limits::default()
    };
    let mut h = limited(limits.clone());
    h.connect_clean("s", 0);
    h.read(vec![subscribe(
        1,
        &[("a/b/c", QoS::AtMostOnce), ("a/#", QoS::AtMostOnce)],
    )]);
    assert_eq!(
        suback_codes(&mut h),
        vec![
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::AtMostOnce)
        ]
    );
    let mut h = limited(limits);
    connect5_clean(&mut h, "s5");
    h.read(vec![subscribe(1, &[("a/+/c", QoS::AtMostOnce)])]);
    assert_eq!(
        suback_codes(&mut h),
        vec![SubscribeReturnCode::Refused(
            ReasonCode::TOPIC_FILTER_INVALID
        )]
    );
    assert_eq!(h.take().limits.of(Limit::TopicLevels), 1);
}

#[test]
fn the_subscription_quota_counts_each_filter_once() {
    let mut h = limited(Limits {
        max_subscriptions_per_client: 2,
        ..Limits::default()
    });
    connect5_clean(&mut h, "q");
    h.read(vec![subscribe(
        1,
        &[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)],
    )]);
    assert_eq!(suback_codes(&mut h).len(), 2);
    // "a" again replaces its subscription; "c" is one too many.
    h.read(vec![subscribe(
        2,
        &[("a", QoS::AtLeastOnce), ("c", QoS::AtMostOnce)],
    )]);
    assert_eq!(
        suback_codes(&mut h),
        vec![
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Refused(ReasonCode::QUOTA_EXCEEDED)
        ]
    );
    assert_eq!(h.take().limits.of(Limit::Subscriptions), 1);
    // An unsubscribe makes room.
    h.read(vec![unsubscribe(3, "b")]);
    let requests = h.requests();
    h.commit(Harness::ticket_of(&requests));
    h.take();
    h.read(vec![subscribe(4, &[("c", QoS::AtMostOnce)])]);
    assert_eq!(
        suback_codes(&mut h),
        vec![SubscribeReturnCode::Success(QoS::AtMostOnce)]
    );
}

#[test]
fn a_resumed_session_counts_the_filters_it_holds() {
    let mut h = limited(Limits {
        max_subscriptions_per_client: 1,
        ..Limits::default()
    });
    h.read(vec![connect("r", false, 0)]);
    h.feed(Input::Registered(Ok(Registration {
        session_present: true,
        had_persistent: true,
        queue_head: 0,
        subscriptions: vec![TopicFilter::new("held".to_owned()).unwrap()],
    })));
    h.feed(Input::IncomingQos2(Ok(Vec::new())));
    h.take();
    h.read(vec![subscribe(
        1,
        &[("held", QoS::AtMostOnce), ("new", QoS::AtMostOnce)],
    )]);
    assert_eq!(
        suback_codes(&mut h),
        vec![
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Failure
        ]
    );
}

#[test]
fn qos0_beyond_the_outgoing_bound_is_dropped_and_qos1_is_kept() {
    let mut h = limited(Limits {
        max_outgoing_buffer_bytes: 100,
        ..Limits::default()
    });
    h.connect_clean("slow", 0);
    // The socket holds 90 unwritten bytes: one QoS 0 message fits below the bound, the rest do not.
    h.unwritten = 90;
    h.feed(Input::Deliveries(vec![
        delivery("t", QoS::AtMostOnce, None),
        delivery("t", QoS::AtMostOnce, None),
        delivery("t", QoS::AtLeastOnce, None),
        delivery("t", QoS::AtMostOnce, None),
    ]));
    let out = h.take();
    let sent: Vec<QoS> = publishes(&out.emits).into_iter().map(|p| p.1).collect();
    assert_eq!(sent, vec![QoS::AtMostOnce, QoS::AtLeastOnce]);
    assert_eq!(out.limits.of(Limit::OutgoingBuffer), 2);
    // Once the client took its bytes, QoS 0 flows again.
    h.unwritten = 0;
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtMostOnce,
        None,
    )]));
    assert_eq!(publishes(&h.take().emits).len(), 1);
}

#[test]
fn the_connect_deadline_is_not_moved_by_bytes_that_arrive() {
    let mut h = Harness::new();
    let deadline = h.take().timer.expect("a timer at the deadline");
    // A byte a second: reads that decode no packet do not move the deadline.
    for _ in 0..9 {
        h.advance(Duration::from_secs(1));
        h.feed(Input::Read(Vec::new()));
        assert!(h.out.close.is_none());
    }
    h.advance(Duration::from_secs(1));
    assert!(h.now >= deadline);
    h.feed(Input::Timer);
    let out = h.take();
    assert!(
        out.close.is_some(),
        "closed at the deadline set at the accept"
    );
    assert_eq!(out.limits.of(Limit::ConnectTimeout), 1);
}

#[test]
fn one_publish_over_receive_maximum_is_counted() {
    // `settings()` grants MQTT 5.0 clients a Receive Maximum of 3.
    let mut h = Harness::new();
    connect5_clean(&mut h, "r");
    h.read(
        (1..=4)
            .map(|id| publish("t", QoS::AtLeastOnce, Some(id), b"x"))
            .collect(),
    );
    let out = h.take();
    assert_eq!(out.limits.of(Limit::ReceiveMaximum), 1);
    assert!(out.close.is_some());
}

#[test]
fn a_clean_sessions_memory_queue_is_bounded_in_bytes_too() {
    let mut h = limited(Limits {
        max_queued_bytes: 20,
        ..Limits::default()
    });
    h.connect_clean("q", 0);
    // The window of 4 fills, then the queue takes messages until it holds 20 bytes ("t" and 9 bytes each).
    let many: Vec<Delivery> = (0..10)
        .map(|_| {
            let mut d = delivery("t", QoS::AtLeastOnce, None);
            d.message = message("t", QoS::AtLeastOnce, b"123456789");
            d
        })
        .collect();
    h.feed(Input::Deliveries(many));
    let out = h.take();
    assert_eq!(publishes(&out.emits).len(), 4, "the inflight window");
    let dropped: u32 = out
        .requests
        .iter()
        .map(|r| match r {
            Request::CountDropped(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(
        dropped, 4,
        "two queued (20 bytes), the other four dropped and counted"
    );
}

#[test]
fn an_enhanced_authentication_exchange_keeps_the_connect_deadline() {
    use crate::codec::Properties;
    use crate::protocol::io::AuthStep;
    let mut h = Harness::with(hooked());
    let deadline = h.take().timer.expect("a timer at the deadline");
    let mut connect = connect_at(ProtocolLevel::V5, "auth", 0);
    if let Packet::Connect(c) = &mut connect {
        c.properties = crate::codec::properties::boxed(Properties {
            authentication_method: Some("SCRAM".into()),
            ..Default::default()
        });
    }
    h.read(vec![connect]);
    h.feed(Input::AuthStepped(AuthStep::Continue(Bytes::from_static(
        b"challenge",
    ))));
    assert!(h.conn.wants_input(), "the client's AUTH is awaited");
    h.take();
    // The client never answers: the timer set at the accept fires, and the connection ends there.
    h.now = deadline - Duration::from_millis(1);
    h.feed(Input::Timer);
    assert!(h.out.close.is_none());
    assert_eq!(h.take().timer, Some(deadline), "re-armed for the deadline");
    h.now = deadline;
    h.feed(Input::Timer);
    let out = h.take();
    assert!(
        out.close.is_some(),
        "closed at the deadline set at the accept"
    );
    assert_eq!(out.limits.of(Limit::ConnectTimeout), 1);
}

#[test]
fn a_persistent_session_keeps_at_most_the_outgoing_bound_of_its_queue_in_memory() {
    let mut h = limited(Limits {
        max_outgoing_buffer_bytes: 30,
        ..Limits::default()
    });
    h.connect_live("p");
    // Ten stored messages of 10 bytes (topic "t", 9 bytes of payload) arrive live.
    let live: Vec<Delivery> = (1..=10)
        .map(|seq| {
            let mut d = delivery("t", QoS::AtLeastOnce, Some(seq));
            d.message = message("t", QoS::AtLeastOnce, b"123456789");
            d
        })
        .collect();
    h.feed(Input::Deliveries(live));
    let out = h.take();
    assert_eq!(publishes(&out.emits).len(), 4, "the inflight window");
    let Stage::Connected(attached) = &h.conn.stage else {
        panic!("connected");
    };
    assert_eq!(
        attached.outbound.queued_len(),
        3,
        "30 bytes wait in memory; the rest stays in the store, read once there is room"
    );
    assert!(attached
        .stored
        .as_ref()
        .is_some_and(|s| s.feed() != crate::protocol::Feed::Live));
}
