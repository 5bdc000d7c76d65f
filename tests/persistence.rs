//! Persistent sessions over the wire: the offline queue (QoS 1/2, QoS 0 only with `queue_qos0`), clean sessions
//! discarded at disconnect, and session, queue and retained state surviving a broker restart.

mod common;

use common::*;
use rumqttc::QoS as RQoS;

/// Connects a persistent subscriber on `filter` and leaves with DISCONNECT.
async fn subscribe_and_leave(broker: &TestBroker, client_id: &str, filter: &str, qos: RQoS) {
    let (mut client, _) = broker.persistent_client(client_id, false).await;
    client.subscribe(filter, qos).await;
    client.disconnect().await;
}

// [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-4.6.0-6]: QoS 1 and 2 messages published while a persistent session is
// away are delivered, in order per topic and with their QoS, when it reconnects.
#[tokio::test]
async fn offline_qos1_and_qos2_messages_are_delivered_on_reconnect() {
    let broker = TestBroker::start();
    subscribe_and_leave(&broker, "away", "off/#", RQoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..5 {
        publisher
            .publish("off/1", RQoS::AtLeastOnce, false, format!("a{i}"))
            .await;
        publisher
            .publish("off/2", RQoS::ExactlyOnce, false, format!("b{i}"))
            .await;
    }

    let (mut back, present) = broker.persistent_client("away", false).await;
    assert!(present, "[MQTT-3.2.2-2]");
    let got = back.publishes(10).await;
    for (topic, qos, prefix) in [
        ("off/1", RQoS::AtLeastOnce, "a"),
        ("off/2", RQoS::ExactlyOnce, "b"),
    ] {
        let on_topic: Vec<_> = got.iter().filter(|p| p.topic == topic).cloned().collect();
        assert!(on_topic.iter().all(|p| p.qos == qos), "{on_topic:?}");
        let expected: Vec<String> = (0..5).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(payloads(&on_topic), expected);
    }
    back.expect_no_publish(QUIET).await;
}

/// Leaves a persistent subscriber on `z/#`, publishes "zero" at QoS 0 and then "one" at QoS 1 while it is away,
/// and reconnects it, checking that its session was resumed.
async fn qos0_and_qos1_published_while_away(broker: &TestBroker) -> Client {
    subscribe_and_leave(broker, "away", "z/#", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("z/t", RQoS::AtMostOnce, false, "zero")
        .await;
    publisher
        .publish("z/t", RQoS::AtLeastOnce, false, "one")
        .await;
    let (back, present) = broker.persistent_client("away", false).await;
    assert!(present, "[MQTT-3.2.2-2]");
    back
}

// [MQTT-3.1.2-5]: QoS 0 messages are not queued for an offline session unless `queue_qos0` is set.
#[tokio::test]
async fn offline_qos0_messages_are_not_queued_by_default() {
    let broker = TestBroker::start();
    let mut back = qos0_and_qos1_published_while_away(&broker).await;
    let got = back.next_publish().await;
    assert_eq!(got.payload.as_ref(), b"one");
    assert_eq!(got.qos, RQoS::AtLeastOnce);
    back.expect_no_publish(QUIET).await;
}

// [MQTT-3.1.2-5]: with `queue_qos0` set, QoS 0 messages are queued too, in order with the rest.
#[tokio::test]
async fn offline_qos0_messages_are_queued_with_queue_qos0() {
    let broker = TestBroker::start_with(|c| c.queue_qos0 = true);
    let mut back = qos0_and_qos1_published_while_away(&broker).await;
    let got = back.publishes(2).await;
    assert_eq!(payloads(&got), ["zero", "one"]);
    assert_eq!(got[0].qos, RQoS::AtMostOnce);
    assert_eq!(got[1].qos, RQoS::AtLeastOnce);
    back.expect_no_publish(QUIET).await;
}

// [MQTT-3.1.2-6]: a clean session ends with its connection: nothing of it is present on the next connection.
#[tokio::test]
async fn clean_session_is_discarded_at_disconnect() {
    let broker = TestBroker::start();
    let mut clean = broker.client("brief").await;
    clean.subscribe("gone/#", RQoS::AtLeastOnce).await;
    clean.disconnect().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("gone/t", RQoS::AtLeastOnce, false, "lost")
        .await;

    let (mut again, present) = broker.persistent_client("brief", false).await;
    assert!(!present, "[MQTT-3.2.2-3] no session was kept");
    again.subscribe("marker", RQoS::AtLeastOnce).await;
    publisher
        .publish("gone/t", RQoS::AtLeastOnce, false, "still not subscribed")
        .await;
    publisher
        .publish("marker", RQoS::AtLeastOnce, false, "end")
        .await;
    let next = again.next_publish().await;
    assert_eq!(
        next.topic, "marker",
        "neither a queued message nor the old subscription"
    );
}

// Durability contract 1 and 2: subscriptions, the offline queue and retained messages acknowledged before a stop
// are there after a start on the same data directory.
#[tokio::test]
async fn sessions_queues_and_retained_survive_a_restart() {
    let mut broker = TestBroker::start();
    subscribe_and_leave(&broker, "durable", "keep/#", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..3 {
        publisher
            .publish("keep/t", RQoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    publisher
        .publish("keep/retained", RQoS::AtLeastOnce, true, "r")
        .await;
    publisher.disconnect().await;

    broker.restart();

    let (mut back, present) = broker.persistent_client("durable", false).await;
    assert!(present, "the session was stored");
    let got = back.publishes(4).await;
    let (queued, retained): (Vec<_>, Vec<_>) = got.into_iter().partition(|p| p.topic == "keep/t");
    assert_eq!(payloads(&queued), ["m0", "m1", "m2"]);
    assert_eq!(payloads(&retained), ["r"]);
    assert!(
        queued.iter().all(|p| p.qos == RQoS::AtLeastOnce),
        "{queued:?}"
    );
    // Published while the subscription existed, so it was queued as a forward [MQTT-3.3.1-9].
    assert!(!retained[0].retain, "queued with RETAIN 0: {retained:?}");
    back.expect_no_publish(QUIET).await;
    // The subscription itself survived.
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("keep/t", RQoS::AtLeastOnce, false, "new")
        .await;
    assert_eq!(back.next_publish().await.payload.as_ref(), b"new");
    // So did the retained message.
    let mut late = broker.client("late").await;
    late.subscribe("keep/retained", RQoS::AtLeastOnce).await;
    let retained = late.next_publish().await;
    assert!(retained.retain && retained.payload.as_ref() == b"r");
}

// Durability contract 4, [MQTT-4.4.0-1]: a message delivered but not acknowledged before a restart is re-sent
// with DUP 1 after it.
#[tokio::test]
async fn unacknowledged_delivery_survives_a_restart() {
    let mut broker = TestBroker::start();
    let (mut sub, _) = broker.persistent_client("unacked", true).await;
    sub.subscribe("ua/t", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ua/t", RQoS::AtLeastOnce, false, "m")
        .await;
    let first = sub.next_publish().await;
    assert!(!first.dup);
    publisher.disconnect().await;
    sub.kill().await;

    broker.restart();

    let (mut back, present) = broker.persistent_client("unacked", false).await;
    assert!(present);
    let again = back.next_publish().await;
    assert_eq!(again.payload.as_ref(), b"m");
    assert!(again.dup, "re-sent with DUP 1");
    assert_eq!(again.pkid, first.pkid);
}
