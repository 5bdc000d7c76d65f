//! Subscriptions over the wire: wildcards, `$` topics, granted QoS, re-subscription, UNSUBSCRIBE, overlapping
//! subscriptions and the QoS of each delivery.

mod common;

use common::*;
use rumqttc::{QoS as RQoS, SubscribeFilter, SubscribeReasonCode};

/// Publishes each topic in order at QoS 1, then a marker on `marker_topic`; returns the topics the subscriber
/// received up to the marker. One publisher and one QoS keep the order [MQTT-4.6.0-6].
async fn topics_received(
    broker: &TestBroker,
    subscriber: &mut Client,
    topics: &[&str],
    marker_topic: &str,
) -> Vec<String> {
    let mut publisher = broker.client("publisher").await;
    for topic in topics {
        publisher
            .publish(topic, RQoS::AtLeastOnce, false, "m")
            .await;
    }
    publisher
        .publish(marker_topic, RQoS::AtLeastOnce, false, "marker")
        .await;
    subscriber
        .publishes_until(marker_topic, b"marker")
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect()
}

// [MQTT-4.7.1-3]: `+` matches exactly one level, an empty one included.
#[tokio::test]
async fn plus_matches_exactly_one_level() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("a/+/c", RQoS::AtLeastOnce).await;
    let got = topics_received(
        &broker,
        &mut sub,
        &["a/b/c", "a/c", "a/b/d/c", "a//c", "x/b/c", "a/b/c/d"],
        "a/end/c",
    )
    .await;
    assert_eq!(got, ["a/b/c", "a//c", "a/end/c"]);
}

// [MQTT-4.7.1-2]: `#` matches the parent level and every level below; `sport/#` matches `sport`.
#[tokio::test]
async fn hash_matches_the_parent_and_all_children() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("sport/#", RQoS::AtLeastOnce).await;
    let got = topics_received(
        &broker,
        &mut sub,
        &[
            "sport",
            "sports",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/",
            "other/sport",
        ],
        "sport/end",
    )
    .await;
    assert_eq!(
        got,
        [
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/",
            "sport/end"
        ]
    );
}

// [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a topic starting with `$`; a filter that
// names the `$` level does.
#[tokio::test]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = TestBroker::start();
    let mut wild = broker.client("wild").await;
    wild.subscribe("#", RQoS::AtLeastOnce).await;
    wild.subscribe("+/info", RQoS::AtLeastOnce).await;
    let mut named = broker.client("named").await;
    named.subscribe("$app/#", RQoS::AtLeastOnce).await;

    let got = topics_received(&broker, &mut wild, &["$app/info", "$app"], "plain/info").await;
    assert_eq!(got, ["plain/info"]);
    let got = named.publishes(2).await;
    assert_eq!(
        got.iter().map(|p| p.topic.as_str()).collect::<Vec<_>>(),
        ["$app/info", "$app"]
    );
}

// [MQTT-3.9.3-1], [MQTT-3.8.4-6]: one return code per filter in order; the granted QoS is the lower of the
// requested one and the broker's maximum, and a delivery never exceeds it.
#[tokio::test]
async fn granted_qos_is_capped_by_the_configured_maximum() {
    let broker = TestBroker::start_with(|c| c.max_qos = 1);
    let mut sub = broker.client("sub").await;
    sub.handle
        .subscribe_many([
            SubscribeFilter::new("q/0".to_owned(), RQoS::AtMostOnce),
            SubscribeFilter::new("q/1".to_owned(), RQoS::AtLeastOnce),
            SubscribeFilter::new("q/2".to_owned(), RQoS::ExactlyOnce),
        ])
        .await
        .unwrap();
    let codes = sub.wait_suback().await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(RQoS::AtMostOnce),
            SubscribeReasonCode::Success(RQoS::AtLeastOnce),
            SubscribeReasonCode::Success(RQoS::AtLeastOnce),
        ]
    );
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("q/2", RQoS::ExactlyOnce, false, "x")
        .await;
    assert_eq!(sub.next_publish().await.qos, RQoS::AtLeastOnce);
}

// [MQTT-3.8.4-3]: a SUBSCRIBE to an existing filter replaces it (its QoS changes, no second copy) and the
// retained messages matching it are sent again.
#[tokio::test]
async fn resubscribe_replaces_and_resends_retained() {
    let broker = TestBroker::start();
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("r/kept", RQoS::AtLeastOnce, true, "retained")
        .await;
    let mut sub = broker.client("sub").await;
    assert_eq!(
        sub.subscribe("r/#", RQoS::ExactlyOnce).await,
        [SubscribeReasonCode::Success(RQoS::ExactlyOnce)]
    );
    let first = sub.next_publish().await;
    assert!(first.retain && first.payload.as_ref() == b"retained");

    assert_eq!(
        sub.subscribe("r/#", RQoS::AtMostOnce).await,
        [SubscribeReasonCode::Success(RQoS::AtMostOnce)]
    );
    let again = sub.next_publish().await;
    assert!(again.retain && again.payload.as_ref() == b"retained");
    assert_eq!(again.qos, RQoS::AtMostOnce);

    publisher
        .publish("r/live", RQoS::ExactlyOnce, false, "one")
        .await;
    publisher
        .publish("r/live", RQoS::ExactlyOnce, false, "marker")
        .await;
    let got = sub.publishes_until("r/live", b"marker").await;
    assert_eq!(
        payloads(&got),
        ["one", "marker"],
        "one subscription, one copy"
    );
    assert!(got.iter().all(|p| p.qos == RQoS::AtMostOnce), "{got:?}");
}

// [MQTT-3.10.4-4], [MQTT-3.10.4-5], [MQTT-3.10.4-2]: UNSUBSCRIBE is answered with UNSUBACK (also for a filter
// that was never subscribed) and delivery on the removed filter stops.
#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("u/1", RQoS::AtLeastOnce).await;
    sub.subscribe("u/2", RQoS::AtLeastOnce).await;
    sub.unsubscribe("u/1").await;
    sub.unsubscribe("never/subscribed").await;
    let got = topics_received(&broker, &mut sub, &["u/1", "u/2", "u/1"], "u/2").await;
    assert_eq!(got, ["u/2", "u/2"]);
}

// [MQTT-3.3.5-1]: overlapping subscriptions of one client deliver one copy, at the highest granted QoS.
#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("o/#", RQoS::AtLeastOnce).await;
    sub.subscribe("o/+", RQoS::ExactlyOnce).await;
    sub.subscribe("o/x", RQoS::AtMostOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("o/x", RQoS::ExactlyOnce, false, "one")
        .await;
    publisher
        .publish("o/y/z", RQoS::ExactlyOnce, false, "marker")
        .await;
    let got = sub.publishes_until("o/y/z", b"marker").await;
    assert_eq!(payloads(&got), ["one", "marker"]);
    assert_eq!(got[0].qos, RQoS::ExactlyOnce, "highest granted QoS of o/+");
    assert_eq!(got[1].qos, RQoS::AtLeastOnce, "only o/# matches o/y/z");
}

// [MQTT-3.8.4-6]: each delivery goes out at the lower of the message's QoS and the subscription's.
#[tokio::test]
async fn delivery_qos_is_the_lower_of_publish_and_granted() {
    let broker = TestBroker::start();
    let levels = [RQoS::AtMostOnce, RQoS::AtLeastOnce, RQoS::ExactlyOnce];
    let mut subscribers = Vec::new();
    for (i, granted) in levels.iter().enumerate() {
        let mut sub = broker.client(&format!("sub{i}")).await;
        sub.subscribe("d/t", *granted).await;
        subscribers.push(sub);
    }
    let mut publisher = broker.client("pub").await;
    for qos in levels {
        publisher
            .publish("d/t", qos, false, format!("{qos:?}"))
            .await;
    }
    for (sub, granted) in subscribers.iter_mut().zip(levels) {
        let got = sub.publishes(3).await;
        for (p, sent) in got.iter().zip(levels) {
            assert_eq!(p.payload.as_ref(), format!("{sent:?}").as_bytes());
            let expected = if sent < granted { sent } else { granted };
            assert_eq!(p.qos, expected, "granted {granted:?}, sent {sent:?}");
        }
    }
}
