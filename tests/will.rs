//! Will messages over the wire: published with their QoS and retain flag when a connection ends without
//! DISCONNECT (keepalive timeout, network drop, protocol violation, takeover), discarded on DISCONNECT.

mod common;

use common::*;
use harbormq::codec::{Connect, Packet, QoS};
use rumqttc::QoS as RQoS;

/// A CONNECT carrying a will on `will/<name>`.
fn connect_with_will(client_id: &str, keep_alive_secs: u16, qos: QoS, retain: bool) -> Connect {
    let mut connect = connect_packet(client_id, true, keep_alive_secs);
    connect.will = Some(will(&format!("will/{client_id}"), b"gone", qos, retain));
    connect
}

/// A client subscribed to every will topic at QoS 2, so that deliveries keep the will's own QoS.
async fn observer(broker: &TestBroker) -> Client {
    let mut observer = broker.client("observer").await;
    observer.subscribe("will/#", RQoS::ExactlyOnce).await;
    observer
}

/// Waits for the will of `client_id` and checks all of it: topic, payload, the will's QoS, and RETAIN 0 (the
/// observer's subscription exists before the will is published [MQTT-3.3.1-9]).
async fn expect_will(observer: &mut Client, client_id: &str, qos: RQoS) {
    let will = observer.next_publish().await;
    assert_eq!(will.topic, format!("will/{client_id}"));
    assert_eq!(will.payload.as_ref(), b"gone");
    assert_eq!(will.qos, qos, "the will keeps its QoS");
    assert!(
        !will.retain,
        "forwarded to an existing subscription with RETAIN 0"
    );
}

// [MQTT-3.1.2-8], [MQTT-3.1.2-24]: the will is published when the keepalive expires.
#[tokio::test]
async fn will_is_published_on_keepalive_timeout() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut raw = broker.raw().await;
    raw.connect(connect_with_will("ka", 1, QoS::AtLeastOnce, false))
        .await;
    expect_will(&mut observer, "ka", RQoS::AtLeastOnce).await;
    assert_eq!(raw.wait_closed().await, vec![]);
}

// [MQTT-3.1.2-8]: the will is published when the network connection closes without DISCONNECT.
#[tokio::test]
async fn will_is_published_on_network_drop() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut raw = broker.raw().await;
    raw.connect(connect_with_will("dropped", 30, QoS::AtMostOnce, false))
        .await;
    drop(raw);
    expect_will(&mut observer, "dropped", RQoS::AtMostOnce).await;
}

// [MQTT-3.1.2-8]: the will is published when the broker closes the connection for a protocol violation.
#[tokio::test]
async fn will_is_published_on_protocol_violation() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut raw = broker.raw().await;
    raw.connect(connect_with_will("violator", 30, QoS::ExactlyOnce, false))
        .await;
    // PUBLISH QoS 0 with DUP set [MQTT-3.3.1-2].
    raw.send_bytes(&[0x38, 0x05, 0x00, 0x01, b't', b'x', b'y'])
        .await;
    assert_eq!(raw.wait_closed().await, vec![]);
    expect_will(&mut observer, "violator", RQoS::ExactlyOnce).await;
}

// [MQTT-3.1.4-2], [MQTT-3.1.2-8]: the connection closed by a takeover did not send DISCONNECT, so its will
// is published.
#[tokio::test]
async fn will_is_published_on_takeover() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut options = broker.options("taken");
    options.set_last_will(rumqttc::LastWill::new(
        "will/taken",
        "gone",
        RQoS::AtLeastOnce,
        false,
    ));
    let (mut first, _) = Client::connect(options).await;
    let _second = broker.client("taken").await;
    first.wait_closed().await;
    expect_will(&mut observer, "taken", RQoS::AtLeastOnce).await;
}

// [MQTT-3.1.2-8], [MQTT-3.3.1-5], [MQTT-3.3.1-8]: a will with RETAIN set becomes the retained message of its
// topic; existing subscribers get it with RETAIN 0 [MQTT-3.3.1-9], a later subscriber with RETAIN 1.
#[tokio::test]
async fn will_with_retain_flag_is_retained() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut raw = broker.raw().await;
    raw.connect(connect_with_will("kept", 30, QoS::ExactlyOnce, true))
        .await;
    drop(raw);
    expect_will(&mut observer, "kept", RQoS::ExactlyOnce).await;

    let mut late = broker.client("late").await;
    late.subscribe("will/+", RQoS::ExactlyOnce).await;
    let retained = late.next_publish().await;
    assert_eq!(retained.topic, "will/kept");
    assert_eq!(retained.payload.as_ref(), b"gone");
    assert_eq!(retained.qos, RQoS::ExactlyOnce);
    assert!(retained.retain);
}

// [MQTT-3.1.2-10], [MQTT-3.14.4-3]: DISCONNECT discards the will. The marker published after the connection has
// closed proves the observer would already have seen a will routed before it.
#[tokio::test]
async fn will_is_not_published_after_disconnect() {
    let broker = TestBroker::start();
    let mut observer = observer(&broker).await;
    let mut raw = broker.raw().await;
    raw.connect(connect_with_will("polite", 30, QoS::AtLeastOnce, true))
        .await;
    raw.send(&Packet::Disconnect(Default::default())).await;
    assert_eq!(raw.wait_closed().await, vec![]);

    let mut marker = broker.client("marker").await;
    marker
        .publish("will/marker", RQoS::AtLeastOnce, false, "end")
        .await;
    let next = observer.next_publish().await;
    assert_eq!(next.topic, "will/marker", "no will before the marker");

    // Nor was it retained.
    let mut late = broker.client("late").await;
    late.subscribe("will/polite", RQoS::AtLeastOnce).await;
    marker
        .publish("will/polite", RQoS::AtLeastOnce, false, "live")
        .await;
    let next = late.next_publish().await;
    assert_eq!(next.payload.as_ref(), b"live", "no retained will");
}
