//! The MQTT 5.0 answers of the client limits, as rumqttc's MQTT 5.0 client sees them: CONNACK 0x85 for a client
//! identifier over `max_client_id_len_bytes`, PUBACK 0x90 for a topic over `max_topic_len_bytes`, SUBACK 0x8F
//! for a filter over `max_topic_levels` and 0x97 for one subscription over `max_subscriptions_per_client`; the
//! connection stays, and each answer is counted in `/metrics`.

mod common;
mod limits_support;

use common::WAIT;
use limits_support::{broker, hits};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use std::time::Duration;
use tokio::time::timeout;

fn options(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// The next incoming packet `pick` accepts, within `WAIT`; an error of the event loop fails the test.
async fn incoming<T>(events: &mut EventLoop, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
    timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return found;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => panic!("connection error: {e:?}"),
            }
        }
    })
    .await
    .expect("the packet came in time")
}

async fn suback(client: &AsyncClient, events: &mut EventLoop, filter: &str) -> SubscribeReasonCode {
    client.subscribe(filter, QoS::AtMostOnce).await.unwrap();
    incoming(events, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes[0]),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_clients_are_told_which_limit_refused_them() {
    let broker = broker(|c| {
        c.max_client_id_len_bytes = 32;
        c.max_topic_len_bytes = 16;
        c.max_topic_levels = 3;
        c.max_subscriptions_per_client = 2;
    });
    let port = broker.addr().port();

    let (_refused, mut events) = AsyncClient::new(options(port, &"i".repeat(33)), 10);
    let refusal = timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("refused in time");
    assert!(
        matches!(
            refusal,
            ConnectionError::ConnectionRefused(ConnectReturnCode::ClientIdentifierNotValid)
        ),
        "{refusal:?}"
    );

    let (client, mut events) = AsyncClient::new(options(port, "v5-limits"), 10);
    incoming(&mut events, |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await;
    client
        .publish("much/too/long/a/topic", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let reason = incoming(&mut events, |p| match p {
        Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::TopicNameInvalid);
    assert_eq!(
        suback(&client, &mut events, "a/b/c/d").await,
        SubscribeReasonCode::TopicFilterInvalid
    );
    for filter in ["a", "b", "a"] {
        assert_eq!(
            suback(&client, &mut events, filter).await,
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            "{filter}"
        );
    }
    assert_eq!(
        suback(&client, &mut events, "c").await,
        SubscribeReasonCode::QuotaExceeded
    );
    // The connection stays: a last round trip goes through.
    client
        .publish("a", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    let reason = incoming(&mut events, |p| match p {
        Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::Success);

    assert_eq!(hits(&broker, "max_client_id_len_bytes").await, 1.0);
    assert_eq!(hits(&broker, "max_topic_len_bytes").await, 1.0);
    assert_eq!(hits(&broker, "max_topic_levels").await, 1.0);
    assert_eq!(hits(&broker, "max_subscriptions_per_client").await, 1.0);
}
