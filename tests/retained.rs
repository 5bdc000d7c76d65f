//! Retained messages over the wire: stored on RETAIN 1, replaced, deleted by an empty payload, sent with RETAIN 1
//! to new matching subscriptions (wildcards included) and forwarded with RETAIN 0 to existing ones.

mod common;

use common::*;
use rumqttc::QoS as RQoS;

// [MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-8]: a retained message is sent to a new subscription with RETAIN 1,
// at the lower of its QoS and the granted QoS.
#[tokio::test]
async fn retained_message_goes_to_a_new_subscription_with_retain_set() {
    let broker = TestBroker::start();
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("r/a", RQoS::ExactlyOnce, true, "stored")
        .await;

    let mut sub = broker.client("sub").await;
    sub.subscribe("r/a", RQoS::AtLeastOnce).await;
    let got = sub.next_publish().await;
    assert_eq!(got.topic, "r/a");
    assert_eq!(got.payload.as_ref(), b"stored");
    assert!(got.retain);
    assert_eq!(got.qos, RQoS::AtLeastOnce);
}

// [MQTT-3.3.1-6]: every retained message matching a wildcard filter is sent, and no other.
#[tokio::test]
async fn retained_messages_match_wildcard_subscriptions() {
    let broker = TestBroker::start();
    let mut publisher = broker.client("pub").await;
    for topic in ["w/a", "w/b/c", "x/y", "w"] {
        publisher
            .publish(topic, RQoS::AtLeastOnce, true, topic)
            .await;
    }

    let mut hash = broker.client("hash").await;
    hash.subscribe("w/#", RQoS::AtLeastOnce).await;
    let got = hash.publishes(3).await;
    assert!(
        got.iter()
            .all(|p| p.retain && p.payload == p.topic.as_bytes()),
        "{got:?}"
    );
    let mut topics: Vec<String> = got.into_iter().map(|p| p.topic).collect();
    topics.sort();
    assert_eq!(topics, ["w", "w/a", "w/b/c"]);
    hash.expect_no_publish(QUIET).await;

    let mut plus = broker.client("plus").await;
    plus.subscribe("+/y", RQoS::AtLeastOnce).await;
    let got = plus.next_publish().await;
    assert_eq!((got.topic.as_str(), got.retain), ("x/y", true));
    plus.expect_no_publish(QUIET).await;
}

// [MQTT-3.3.1-5], [MQTT-3.3.1-7]: a new retained message replaces the previous one on its topic, a QoS 0 one too.
#[tokio::test]
async fn a_new_retained_message_replaces_the_old_one() {
    let broker = TestBroker::start();
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("r/t", RQoS::ExactlyOnce, true, "v1")
        .await;
    publisher.publish("r/t", RQoS::AtMostOnce, true, "v2").await;
    // Proves the QoS 0 publish has been routed before the subscriber arrives.
    publisher
        .publish("r/t", RQoS::AtLeastOnce, false, "x")
        .await;

    let mut sub = broker.client("sub").await;
    sub.subscribe("r/t", RQoS::ExactlyOnce).await;
    let got = sub.next_publish().await;
    assert_eq!(got.payload.as_ref(), b"v2");
    assert_eq!(got.qos, RQoS::AtMostOnce);
    sub.expect_no_publish(QUIET).await;
}

// [MQTT-3.3.1-10], [MQTT-3.3.1-11]: an empty retained payload deletes the retained message, is itself not
// retained, and is forwarded to existing subscriptions as a normal message.
#[tokio::test]
async fn empty_retained_payload_deletes_the_retained_message() {
    let broker = TestBroker::start();
    let mut existing = broker.client("existing").await;
    existing.subscribe("del/t", RQoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("del/t", RQoS::AtLeastOnce, true, "v")
        .await;
    publisher
        .publish("del/t", RQoS::AtLeastOnce, true, "")
        .await;

    let got = existing.publishes(2).await;
    assert_eq!(payloads(&got), ["v", ""]);
    assert!(got.iter().all(|p| !p.retain));

    let mut late = broker.client("late").await;
    late.subscribe("del/#", RQoS::AtLeastOnce).await;
    publisher
        .publish("del/t", RQoS::AtLeastOnce, false, "marker")
        .await;
    let next = late.next_publish().await;
    assert_eq!(
        next.payload.as_ref(),
        b"marker",
        "nothing retained was sent"
    );
    assert!(!next.retain);
}

// [MQTT-3.3.1-9]: a retained message forwarded to an existing subscription carries RETAIN 0.
#[tokio::test]
async fn retained_message_is_forwarded_with_retain_clear_to_existing_subscribers() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("fw/#", RQoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("fw/t", RQoS::ExactlyOnce, true, "retained")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(got.payload.as_ref(), b"retained");
    assert!(!got.retain);
    assert_eq!(got.qos, RQoS::ExactlyOnce);
}
