//! `$SYS/broker/...` topics: published retained at QoS 0 every `sys_interval_secs`, with the broker's figures,
//! and not matched by a filter that starts with a wildcard [MQTT-4.7.2-1].

mod common;

use common::{TestBroker, QUIET};
use rumqttc::QoS;
use std::collections::HashMap;

fn status(publishes: &[rumqttc::Publish]) -> HashMap<String, String> {
    publishes
        .iter()
        .map(|p| {
            (
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sys_topics_reach_a_subscriber_with_the_broker_figures() {
    let broker = TestBroker::start_with(|c| {
        c.sys_interval_secs = 1;
        c.admin_bind = String::new();
    });
    let mut publisher = broker.client("publisher").await;
    publisher.publish("a/b", QoS::AtLeastOnce, false, "x").await;
    publisher.publish("a/b", QoS::AtMostOnce, false, "y").await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    // The retained copies of the last publication are sent on subscribing, all at QoS 0.
    let first = watcher
        .publishes_until("$SYS/broker/version", b"harbormq version 0.1.0")
        .await;
    assert!(first.iter().all(|p| p.qos == QoS::AtMostOnce));
    // A publication may overtake the retained copies, so they are looked for in every batch.
    let mut retained_seen = first.iter().any(|p| p.retain);
    // The next publication counts the watcher's own subscription and both clients.
    let mut figures = HashMap::new();
    while figures
        .get("$SYS/broker/subscriptions/count")
        .map(String::as_str)
        != Some("1")
    {
        let batch = watcher
            .publishes_until("$SYS/broker/version", b"harbormq version 0.1.0")
            .await;
        assert!(batch.iter().all(|p| p.qos == QoS::AtMostOnce));
        retained_seen |= batch.iter().any(|p| p.retain);
        figures = status(&batch);
    }
    assert!(
        retained_seen,
        "[MQTT-3.3.1-8] the $SYS messages held when subscribing arrive with RETAIN set"
    );
    assert_eq!(figures["$SYS/broker/clients/connected"], "2");
    assert_eq!(figures["$SYS/broker/clients/total"], "2");
    assert_eq!(figures["$SYS/broker/messages/received"], "2");
    assert!(figures["$SYS/broker/uptime"].ends_with(" seconds"));
    // The two messages arrived after the first publication, so the next one folds them into the load.
    let load: f64 = figures["$SYS/broker/load/messages/received/1min"]
        .parse()
        .unwrap();
    assert!(load > 0.0, "received load {load} after two messages");
    assert!(figures.contains_key("$SYS/broker/retained messages/count"));
    assert!(figures.contains_key("$SYS/broker/load/messages/sent/15min"));
}

#[tokio::test]
async fn a_leading_wildcard_does_not_match_sys_topics() {
    let broker = TestBroker::start_with(|c| {
        c.sys_interval_secs = 1;
        c.admin_bind = String::new();
    });
    let mut everything = broker.client("everything").await;
    everything.subscribe("#", QoS::AtMostOnce).await;
    // [MQTT-4.7.2-1]: "#" does not match topics beginning with "$".
    everything.expect_no_publish(QUIET * 5).await;
}
