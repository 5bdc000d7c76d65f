//! Keepalive over the wire: the broker closes a connection that is silent for one and a half keepalive
//! periods, answers PINGREQ with PINGRESP, and counts any packet as activity.

mod common;

use common::*;
use harbormq::codec::{ConnectReturnCode, Packet, QoS};
use std::time::Duration;
use tokio::time::Instant;

// [MQTT-3.1.2-24]: no packet within 1.5 × keepalive closes the connection; the client is allowed the whole
// 1.5 periods, so the broker must not close before then.
#[tokio::test]
async fn silent_client_is_closed_after_one_and_a_half_keepalive_periods() {
    let broker = TestBroker::start();
    let mut raw = broker.raw().await;
    let sent = Instant::now();
    let ack = raw.connect(connect_packet("sleepy", true, 1)).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    assert_eq!(raw.wait_closed_within(Duration::from_secs(4)).await, vec![]);
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1450),
        "closed after {elapsed:?}, before 1.5 × the 1 s keepalive"
    );
    assert!(
        elapsed <= Duration::from_millis(2500),
        "closed only after {elapsed:?}"
    );
}

// [MQTT-3.12.4-1]: the server answers PINGREQ with PINGRESP.
#[tokio::test]
async fn pingreq_is_answered_with_pingresp() {
    let broker = TestBroker::start();
    let (mut raw, _) = broker.raw_connected("pinger", true, 30).await;
    for _ in 0..3 {
        raw.send(&Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp);
    }
}

// [MQTT-3.1.2-23], [MQTT-3.1.2-24]: a client that pings within the keepalive stays connected well beyond
// 1.5 × keepalive.
#[tokio::test]
async fn pings_keep_the_connection_open() {
    let broker = TestBroker::start();
    let (mut raw, _) = broker.raw_connected("steady", true, 1).await;
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(700));
    for _ in 0..4 {
        pace.tick().await;
        raw.send(&Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp);
    }
    assert!(started.elapsed() >= Duration::from_millis(2000));
}

// [MQTT-3.1.2-24]: any control packet counts, not only PINGREQ.
#[tokio::test]
async fn any_packet_counts_as_activity() {
    let broker = TestBroker::start();
    let (mut raw, _) = broker.raw_connected("busy", true, 1).await;
    let mut pace = tokio::time::interval(Duration::from_millis(700));
    for _ in 0..4 {
        pace.tick().await;
        raw.send(&publish_packet(
            "busy/t",
            QoS::AtMostOnce,
            None,
            false,
            b"x",
        ))
        .await;
    }
    // 2.1 s have passed without a PINGREQ; the connection is still open.
    raw.send(&Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
}

// [MQTT-3.1.2-23]: a real client with a 1 s keepalive pings on its own and is never disconnected.
#[tokio::test]
async fn rumqttc_with_short_keepalive_stays_connected() {
    let broker = TestBroker::start();
    let mut options = broker.options("rumqttc-ka");
    options.set_keep_alive(Duration::from_secs(1));
    let (mut client, _) = Client::connect(options).await;
    for _ in 0..2 {
        client
            .wait_incoming("PINGRESP", |p| {
                matches!(p, rumqttc::Packet::PingResp).then_some(())
            })
            .await;
    }
    client.subscribe("ka/t", rumqttc::QoS::AtLeastOnce).await;
    client
        .publish("ka/t", rumqttc::QoS::AtLeastOnce, false, "alive")
        .await;
    assert_eq!(client.next_publish().await.payload.as_ref(), b"alive");
}
