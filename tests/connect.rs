//! CONNECT behaviour over the wire: ordering, connect timeout, CONNACK return codes, MQTT 3.1, the session
//! present flag and session takeover.

mod common;

use common::*;
use harbormq::codec::{ConnectReturnCode, Packet, ProtocolLevel, QoS};
use rumqttc::QoS as RQoS;
use std::time::Duration;
use tokio::time::Instant;

/// A CONNECT written byte by byte, so that the protocol name and level can be anything.
fn raw_connect(protocol_name: &str, level: u8, flags: u8, client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(protocol_name.len() as u16).to_be_bytes());
    body.extend_from_slice(protocol_name.as_bytes());
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

const CLEAN_SESSION: u8 = 0b0000_0010;

// [MQTT-3.1.0-1]: the first packet from the client must be CONNECT.
#[tokio::test]
async fn first_packet_other_than_connect_closes_the_connection() {
    let broker = TestBroker::start();
    let mut raw = broker.raw().await;
    raw.send(&Packet::PingReq).await;
    assert_eq!(
        raw.wait_closed().await,
        vec![],
        "no PINGRESP before CONNECT"
    );
}

// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
#[tokio::test]
async fn second_connect_closes_the_connection() {
    let broker = TestBroker::start();
    let (mut raw, ack) = broker.raw_connected("twice", true, 30).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    raw.send(&Packet::Connect(Box::new(connect_packet(
        "twice", true, 30,
    ))))
    .await;
    assert_eq!(raw.wait_closed().await, vec![]);
}

// [MQTT-3.1.4] / issue 2: a connection that sends nothing within the connect timeout is closed.
#[tokio::test]
async fn silent_connection_is_closed_after_the_connect_timeout() {
    let broker = TestBroker::start_with(|c| c.connect_timeout_secs = 1);
    let opened = Instant::now();
    let mut raw = broker.raw().await;
    assert_eq!(raw.wait_closed_within(Duration::from_secs(4)).await, vec![]);
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(950),
        "closed after {elapsed:?}, before the 1 s connect timeout"
    );
}

// [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 and the connection is closed.
#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01() {
    let broker = TestBroker::start();
    for level in [2u8, 6, 0x7f] {
        let mut raw = broker.raw().await;
        raw.send_bytes(&raw_connect("MQTT", level, CLEAN_SESSION, "lvl"))
            .await;
        let seen = raw.wait_closed().await;
        match seen.as_slice() {
            [Packet::ConnAck(ack)] => {
                assert_eq!(ack.code, ConnectReturnCode::UnacceptableProtocolVersion);
                assert!(!ack.session_present, "[MQTT-3.2.2-4]");
            }
            other => panic!("level {level}: expected one CONNACK, got {other:?}"),
        }
    }
}

// [MQTT-3.1.3-8]: a zero-length client id with clean session 0 gets CONNACK 0x02 and is closed.
#[tokio::test]
async fn empty_client_id_with_persistent_session_gets_connack_0x02() {
    let broker = TestBroker::start();
    let mut raw = broker.raw().await;
    raw.send(&Packet::Connect(Box::new(connect_packet("", false, 30))))
        .await;
    let seen = raw.wait_closed().await;
    match seen.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ConnectReturnCode::IdentifierRejected);
            assert!(!ack.session_present, "[MQTT-3.2.2-4]");
        }
        other => panic!("expected one CONNACK, got {other:?}"),
    }
}

// [MQTT-3.1.3-6]: a zero-length client id with clean session 1 is given a unique id. Two such clients can be
// connected at once; if they shared an id the second would take over the first.
#[tokio::test]
async fn empty_client_id_with_clean_session_gets_a_unique_generated_id() {
    let broker = TestBroker::start();
    let (mut a, ack_a) = Client::connect(broker.options("")).await;
    let (mut b, ack_b) = Client::connect(broker.options("")).await;
    assert_eq!(ack_a.code, rumqttc::ConnectReturnCode::Success);
    assert_eq!(ack_b.code, rumqttc::ConnectReturnCode::Success);
    assert!(!ack_a.session_present && !ack_b.session_present);
    a.subscribe("gen/id", RQoS::AtLeastOnce).await;
    b.subscribe("gen/id", RQoS::AtLeastOnce).await;
    b.publish("gen/id", RQoS::AtLeastOnce, false, "hello").await;
    assert_eq!(a.next_publish().await.payload.as_ref(), b"hello");
    assert_eq!(b.next_publish().await.payload.as_ref(), b"hello");
}

// MQTT 3.1 (protocol name "MQIsdp", level 3) is accepted and usable.
#[tokio::test]
async fn mqtt_3_1_connect_is_accepted() {
    let broker = TestBroker::start();
    let mut raw = broker.raw().await;
    let mut connect = connect_packet("old-client", true, 30);
    connect.level = ProtocolLevel::V31;
    let ack = raw.connect(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    let suback = raw.subscribe(1, "legacy/#", QoS::AtLeastOnce).await;
    assert_eq!(suback.packet_id.get(), 1);
    raw.send(&publish_packet(
        "legacy/x",
        QoS::AtLeastOnce,
        Some(2),
        false,
        b"v31",
    ))
    .await;
    let mut got_puback = false;
    let mut delivered = None;
    while !got_puback || delivered.is_none() {
        match raw.recv().await {
            Packet::PubAck(ack) if ack.packet_id.get() == 2 => got_puback = true,
            Packet::Publish(p) => delivered = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    let delivered = delivered.unwrap();
    assert_eq!(delivered.topic.as_str(), "legacy/x");
    assert_eq!(delivered.payload.as_ref(), b"v31");
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
}

// [MQTT-3.2.2-1], [MQTT-3.2.2-2], [MQTT-3.2.2-3], [MQTT-3.1.2-6]: session present is 0 for a clean session,
// 0 for a new persistent session, 1 when a stored session is resumed; a clean session discards the stored one.
#[tokio::test]
async fn session_present_flag_follows_the_stored_session() {
    let broker = TestBroker::start();
    let (c, present) = broker.persistent_client("sp", false).await;
    assert!(!present, "no session stored yet");
    c.disconnect().await;

    let (c, present) = broker.persistent_client("sp", false).await;
    assert!(present, "the persistent session was stored");
    c.disconnect().await;

    let (c, ack) = Client::connect(broker.options("sp")).await;
    assert!(!ack.session_present, "[MQTT-3.2.2-1] clean session");
    c.disconnect().await;

    let (c, present) = broker.persistent_client("sp", false).await;
    assert!(!present, "the clean session discarded the stored session");
    c.disconnect().await;

    // A clean session connection that ended is not stored either.
    let (c, ack) = Client::connect(broker.options("never-persistent")).await;
    assert!(!ack.session_present);
    c.disconnect().await;
    let (_c, present) = broker.persistent_client("never-persistent", false).await;
    assert!(!present);
}

// [MQTT-3.1.4-2]: a second connection with the same client id disconnects the first.
#[tokio::test]
async fn takeover_closes_the_first_connection() {
    let broker = TestBroker::start();
    let mut first = broker.client("same-id").await;
    let mut second = broker.client("same-id").await;
    first.wait_closed().await;
    second.subscribe("takeover/t", RQoS::AtLeastOnce).await;
    second
        .publish("takeover/t", RQoS::AtLeastOnce, false, "still here")
        .await;
    assert_eq!(second.next_publish().await.payload.as_ref(), b"still here");
}

// [MQTT-3.1.4-2], [MQTT-3.1.2-4]: taking over a persistent session keeps its subscriptions and its inflight and
// queued messages; the inflight one is re-sent with DUP set [MQTT-4.4.0-1].
#[tokio::test]
async fn persistent_takeover_carries_subscriptions_and_messages() {
    let broker = TestBroker::start_with(|c| c.max_inflight = 1);
    let (mut first, _) = broker.persistent_client("carry", true).await;
    first.subscribe("carry/#", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("carry-pub").await;
    for payload in ["m1", "m2", "m3"] {
        publisher
            .publish("carry/t", RQoS::AtLeastOnce, false, payload)
            .await;
    }
    // The first connection holds m1 unacknowledged; m2 and m3 wait in the session queue.
    let inflight = first.next_publish().await;
    assert_eq!(inflight.payload.as_ref(), b"m1");
    first.expect_no_publish(QUIET).await;

    let (mut second, present) = broker.persistent_client("carry", false).await;
    assert!(present, "[MQTT-3.2.2-2] the session was taken over");
    first.wait_closed().await;
    let got = second.publishes(3).await;
    assert_eq!(payloads(&got), ["m1", "m2", "m3"]);
    assert!(
        got[0].dup,
        "the unacknowledged message is re-sent with DUP=1"
    );
    assert_eq!(
        got[0].pkid, inflight.pkid,
        "re-sent with the same packet id"
    );
    assert!(
        !got[1].dup && !got[2].dup,
        "queued messages are sent for the first time with DUP=0: {got:?}"
    );
    assert!(got.iter().all(|p| p.qos == RQoS::AtLeastOnce), "{got:?}");

    publisher
        .publish("carry/t", RQoS::AtLeastOnce, false, "m4")
        .await;
    assert_eq!(second.next_publish().await.payload.as_ref(), b"m4");
}

// [MQTT-3.1.4-2], [MQTT-3.1.2-6]: a takeover with clean session 1 discards the previous session.
#[tokio::test]
async fn clean_takeover_discards_the_session() {
    let broker = TestBroker::start_with(|c| c.max_inflight = 1);
    let (mut first, _) = broker.persistent_client("discard", true).await;
    first.subscribe("discard/#", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("discard-pub").await;
    for payload in ["m1", "m2"] {
        publisher
            .publish("discard/t", RQoS::AtLeastOnce, false, payload)
            .await;
    }
    assert_eq!(first.next_publish().await.payload.as_ref(), b"m1");

    let (mut second, ack) = Client::connect(broker.options("discard")).await;
    assert!(!ack.session_present, "[MQTT-3.2.2-1]");
    first.wait_closed().await;
    // The subscription is gone: a later message on its topic does not arrive, one on a new subscription does.
    second.subscribe("marker", RQoS::AtLeastOnce).await;
    publisher
        .publish("discard/t", RQoS::AtLeastOnce, false, "m3")
        .await;
    publisher
        .publish("marker", RQoS::AtLeastOnce, false, "end")
        .await;
    let got = second.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        ("marker", &b"end"[..]),
        "nothing of the discarded session is delivered"
    );
}

// [MQTT-3.14.4-2], [MQTT-3.14.4-3]: what came before DISCONNECT is handled; nothing the client sends after
// it is acted on, even when it arrives in the same write, and the will is discarded.
#[tokio::test]
async fn packets_after_disconnect_in_the_same_write_are_ignored() {
    let broker = TestBroker::start();
    let (mut watcher, _) = broker.raw_connected("watcher", true, 30).await;
    watcher.subscribe(1, "dc/#", QoS::AtMostOnce).await;
    let mut leaver = broker.raw().await;
    let mut connect = connect_packet("leaver", true, 30);
    connect.will = Some(will("dc/will", b"gone", QoS::AtMostOnce, false));
    leaver.connect(connect).await;
    leaver
        .send_together(&[
            publish_packet("dc/before", QoS::AtMostOnce, None, false, b"1"),
            Packet::Disconnect(Default::default()),
            publish_packet("dc/after", QoS::AtMostOnce, None, false, b"2"),
            publish_packet("dc/after", QoS::AtLeastOnce, Some(3), false, b"3"),
        ])
        .await;
    let before = watcher.recv_publish().await;
    assert_eq!(before.topic.as_str(), "dc/before");
    assert!(
        leaver.wait_closed().await.is_empty(),
        "no PUBACK for the publish after DISCONNECT"
    );
    // Whatever the leaver's session routed (the publishes after DISCONNECT, a will) reached the router before
    // it closed, so before this marker: the marker must be the next message.
    watcher
        .send(&publish_packet(
            "dc/marker",
            QoS::AtMostOnce,
            None,
            false,
            b"m",
        ))
        .await;
    let next = watcher.recv_publish().await;
    assert_eq!(
        next.topic.as_str(),
        "dc/marker",
        "neither the publishes after DISCONNECT nor the will are routed: {next:?}"
    );
}
