//! CONNECT to CONNACK, the connect timeout, keepalive, and the end of a connection.

use super::*;
use crate::codec::{DecodeError, LastWill};
use crate::protocol::io::{CloseReason, EndCause, Notification};

/// A clean-session CONNECT with a will.
fn connect_with_will(client_id: &str, keep_alive_secs: u16, will: LastWill) -> Packet {
    match connect(client_id, true, keep_alive_secs) {
        Packet::Connect(mut c) => {
            c.will = Some(will);
            Packet::Connect(c)
        }
        other => other,
    }
}

#[test]
fn the_first_packet_must_be_connect() {
    // [MQTT-3.1.0-1]
    let mut h = Harness::new();
    h.read(vec![Packet::PingReq]);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
    assert!(
        h.packets().is_empty(),
        "no answer to a client that skipped CONNECT"
    );
    assert!(h.conn.is_closed());
}

#[test]
fn an_unsupported_protocol_level_gets_connack_0x01() {
    // [MQTT-3.1.2-2]
    let mut h = Harness::new();
    h.feed(Input::Read(vec![Err(
        DecodeError::UnsupportedProtocolLevel(6),
    )]));
    assert_eq!(
        h.packets(),
        vec![refused(ConnectReturnCode::UnacceptableProtocolVersion)]
    );
    assert!(h.out.close.is_some());
}

#[test]
fn an_empty_client_id_is_assigned_one_with_a_clean_session_and_refused_without() {
    // [MQTT-3.1.3-6], [MQTT-3.1.3-8]
    let mut h = Harness::new();
    h.read(vec![connect("", true, 0)]);
    match h.requests().as_slice() {
        [Request::Register { client_id, .. }] => {
            assert!(client_id.as_str().starts_with("harbormq-"))
        }
        other => panic!("expected a registration, got {other:?}"),
    }
    let mut h = Harness::new();
    h.read(vec![connect("", false, 0)]);
    assert_eq!(
        h.packets(),
        vec![refused(ConnectReturnCode::IdentifierRejected)]
    );
    assert!(h.out.close.is_some());
}

#[test]
fn without_connect_in_time_the_connection_is_closed() {
    let mut h = Harness::new();
    let deadline = h.out.timer.expect("a timer at the CONNECT deadline");
    assert_eq!(deadline, h.now + Duration::from_secs(10));
    h.advance(Duration::from_secs(9));
    h.feed(Input::Timer);
    assert!(h.out.close.is_none());
    h.advance(Duration::from_secs(1));
    h.feed(Input::Timer);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn a_clean_session_that_had_a_stored_one_deletes_it_before_connack() {
    // [MQTT-3.1.2-6]
    let mut h = Harness::new();
    h.read(vec![connect("dev", true, 0)]);
    assert!(!h.conn.wants_input(), "nothing is read while registering");
    h.take();
    h.feed(registered(false, true, 0));
    let requests = h.requests();
    assert!(matches!(&requests[..], [Request::Store { ops, .. }]
        if matches!(ops[..], [StoreOp::DeleteSession { .. }])));
    assert!(h.packets().is_empty(), "CONNACK waits for the deletion");
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(h.packets(), vec![connack(false)]);
    assert!(h.conn.wants_input());
}

#[test]
fn a_new_persistent_session_is_stored_before_connack() {
    // Durability contract, point 2.
    let mut h = Harness::new();
    h.read(vec![connect("dev", false, 0)]);
    h.take();
    h.feed(registered(false, false, 0));
    let requests = h.requests();
    assert!(matches!(&requests[..], [Request::Store { ops, .. }]
        if matches!(ops[..], [StoreOp::CreateSession { .. }])));
    assert!(h.packets().is_empty());
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(h.packets(), vec![connack(false)]);
}

#[test]
fn a_resumed_session_reads_its_qos2_ids_then_its_queue() {
    // [MQTT-3.2.2-2]: session present; [MQTT-4.3.3-2]: ids awaiting PUBREL survive.
    let mut h = Harness::new();
    h.read(vec![connect("dev", false, 0)]);
    h.take();
    h.feed(registered(true, true, 7));
    assert!(matches!(h.out.store[..], [StoreOp::TouchSession { .. }]));
    assert!(matches!(h.requests()[..], [Request::ReadIncomingQos2]));
    assert!(h.packets().is_empty());
    h.feed(Input::IncomingQos2(Ok(vec![pid(9)])));
    assert_eq!(h.packets(), vec![connack(true)]);
    assert!(matches!(
        h.requests()[..],
        [Request::ReadQueue { after_seq: 0, .. }]
    ));
    // The id read back still de-duplicates: a PUBLISH under it is acknowledged, not routed.
    h.read(vec![publish("t", QoS::ExactlyOnce, Some(9), b"x")]);
    let requests = h.requests();
    assert!(!requests
        .iter()
        .any(|r| matches!(r, Request::Route { messages, .. } if !messages.is_empty())));
    assert_eq!(h.packets(), vec![Packet::PubRec(pid(9).into())]);
}

#[test]
fn packets_sent_with_connect_wait_for_connack_and_keep_their_order() {
    let mut h = Harness::new();
    h.read(vec![
        connect("dev", true, 0),
        Packet::PingReq,
        subscribe(1, &[("a/#", QoS::AtLeastOnce)]),
    ]);
    assert!(h.packets().is_empty());
    h.feed(registered(false, false, 0));
    assert_eq!(h.packets(), vec![connack(false), Packet::PingResp]);
    let requests = h.requests();
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![suback(
            1,
            vec![crate::codec::SubscribeReturnCode::Success(QoS::AtLeastOnce)]
        )]
    );
}

#[test]
fn a_second_connect_closes_the_connection() {
    // [MQTT-3.1.0-2]
    let mut h = Harness::new();
    h.connect_clean("dev", 0);
    h.read(vec![connect("dev", true, 0)]);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
    assert!(h.requests().iter().any(|r| matches!(r, Request::Detach)));
}

#[test]
fn the_router_or_the_store_failing_refuses_with_server_unavailable() {
    let refused = refused(ConnectReturnCode::ServerUnavailable);
    let mut h = Harness::new();
    h.read(vec![connect("dev", true, 0)]);
    h.feed(Input::Registered(Err(())));
    assert_eq!(h.packets(), vec![refused.clone()]);
    assert!(h.out.close.is_some());

    let mut h = Harness::new();
    h.read(vec![connect("dev", false, 0)]);
    h.feed(registered(false, false, 0));
    let ticket = Harness::ticket_of(&h.requests());
    h.feed(Input::Committed {
        ticket,
        result: Err(crate::store::StoreError::WriterGone),
    });
    assert_eq!(h.packets(), vec![refused]);
    assert!(
        h.requests().iter().any(|r| matches!(r, Request::Detach)),
        "the registration is undone"
    );
}

#[test]
fn the_authenticate_hook_decides_before_registration() {
    let mut h = Harness::with(hooked());
    h.read(vec![connect("dev", true, 0)]);
    assert!(matches!(h.requests()[..], [Request::Authenticate(_)]));
    h.feed(Input::Authenticated(
        Err(ConnectReturnCode::Accepted.into()),
    ));
    assert_eq!(
        h.packets(),
        vec![refused(ConnectReturnCode::NotAuthorized)],
        "'accepted' is no refusal: it reads as not authorised"
    );
    let mut h = Harness::with(hooked());
    h.read(vec![connect("dev", true, 0)]);
    h.feed(Input::Authenticated(Ok(())));
    assert!(matches!(
        h.requests()[..],
        [Request::Authenticate(_), Request::Register { .. }]
    ));
    h.feed(registered(false, false, 0));
    assert_eq!(h.packets(), vec![connack(false)]);
    assert!(h.requests().iter().any(|r| matches!(
        r,
        Request::Notify(Notification::Connected {
            session_present: false
        })
    )));
}

#[test]
fn a_client_silent_for_one_and_a_half_keepalives_is_closed_and_its_will_published() {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-8]
    let mut h = Harness::new();
    h.read(vec![connect_with_will(
        "dev",
        10,
        LastWill {
            topic: TopicName::new("status/dev").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
        },
    )]);
    h.feed(registered(false, false, 0));
    assert_eq!(h.out.timer, Some(h.now + Duration::from_secs(15)));
    h.take();
    h.advance(Duration::from_secs(10));
    h.read(vec![Packet::PingReq]);
    h.advance(Duration::from_secs(5));
    h.feed(Input::Timer);
    assert!(h.out.close.is_none(), "a packet 5 s ago keeps it alive");
    assert_eq!(h.out.timer, Some(h.now + Duration::from_secs(10)));
    h.advance(Duration::from_secs(10));
    h.feed(Input::Timer);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
    let requests = h.requests();
    assert!(requests.iter().any(|r| matches!(r, Request::PublishWill { message: m, .. }
        if m.topic.as_str() == "status/dev" && &m.payload[..] == b"gone" && m.qos == QoS::AtLeastOnce)));
}

#[test]
fn keepalive_zero_asks_for_no_timer() {
    let mut h = Harness::new();
    h.read(vec![connect("dev", true, 0)]);
    h.take();
    h.feed(registered(false, false, 0));
    assert_eq!(h.out.timer, None);
}

#[test]
fn disconnect_discards_the_will_and_nothing_after_it_is_acted_on() {
    // [MQTT-3.14.4-3], [MQTT-3.14.4-2]
    let mut h = Harness::new();
    h.connect_clean("dev", 0);
    h.read(vec![
        publish("before", QoS::AtMostOnce, None, b"1"),
        Packet::Disconnect(Default::default()),
        publish("after", QoS::AtMostOnce, None, b"2"),
        subscribe(1, &[("x", QoS::AtMostOnce)]),
    ]);
    assert_eq!(h.out.close, Some(CloseReason::Disconnect));
    let requests = h.requests();
    let routed: Vec<_> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { messages, .. } => {
                Some(messages.iter().map(|m| m.topic.as_str().to_owned()))
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(routed, vec!["before".to_owned()]);
    assert!(!requests
        .iter()
        .any(|r| matches!(r, Request::Subscribe { .. } | Request::PublishWill { .. })));
    assert!(requests.iter().any(|r| matches!(r, Request::Detach)));
    // Later inputs change nothing.
    h.take();
    h.read(vec![publish("late", QoS::AtMostOnce, None, b"3")]);
    assert!(h.take().is_empty());
}

#[test]
fn the_broker_ending_a_session_publishes_the_will_except_at_shutdown() {
    for (cause, will) in [
        (EndCause::TakenOver, true),
        (EndCause::Deleted, true),
        (EndCause::Shutdown, false),
    ] {
        let mut h = Harness::new();
        h.read(vec![connect_with_will(
            "dev",
            0,
            LastWill {
                topic: TopicName::new("w").unwrap(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: None,
            },
        )]);
        h.feed(registered(false, false, 0));
        h.take();
        h.feed(Input::End(cause));
        let requests = h.requests();
        assert_eq!(
            requests
                .iter()
                .any(|r| matches!(r, Request::PublishWill { .. })),
            will,
            "{cause:?}"
        );
        assert!(requests.iter().any(|r| matches!(r, Request::Detach)));
    }
}

#[test]
fn a_persistent_session_records_its_last_seen_time_when_it_ends() {
    let mut h = Harness::new();
    h.connect_resumed("dev", 0);
    h.advance(Duration::from_secs(3));
    h.feed(Input::InputClosed);
    assert!(h.out.store.iter().any(|op| matches!(op,
        StoreOp::TouchSession { now_ms, .. } if *now_ms == 4_000)));
}

#[test]
fn a_registration_answered_after_the_close_is_undone() {
    let mut h = Harness::new();
    h.read(vec![connect("dev", true, 0)]);
    h.feed(Input::InputClosed);
    h.take();
    h.feed(registered(false, false, 0));
    assert!(matches!(h.requests()[..], [Request::Detach]));
    assert!(h.packets().is_empty());
}

#[test]
fn a_certificate_identity_replaces_the_user_name_and_password() {
    // use_identity_as_username, as in Mosquitto: what the client sent is set aside.
    let mut h = Harness::with(hooked());
    h.conn
        .use_certificate_identity(crate::protocol::CertificateName::Name("sensor-7".into()));
    let mut packet = connect("dev", true, 0);
    if let Packet::Connect(c) = &mut packet {
        c.username = Some("mallory".into());
        c.password = Some(Bytes::from_static(b"guess"));
    }
    h.read(vec![packet]);
    match &h.requests()[..] {
        [Request::Authenticate(info)] => {
            assert_eq!(info.username.as_deref(), Some("sensor-7"));
            assert_eq!(info.password, None);
            assert!(info.certificate_identity);
        }
        other => panic!("expected the authenticate request, got {other:?}"),
    }
}

#[test]
fn a_certificate_that_names_nobody_is_refused_as_a_bad_user_name() {
    let mut h = Harness::with(hooked());
    h.conn
        .use_certificate_identity(crate::protocol::CertificateName::Missing);
    h.read(vec![connect("dev", true, 0)]);
    assert!(h.requests().is_empty(), "neither hook nor router is asked");
    assert_eq!(
        h.packets(),
        vec![refused(ConnectReturnCode::BadUsernameOrPassword)]
    );
    assert!(h.out.close.is_some());
}
