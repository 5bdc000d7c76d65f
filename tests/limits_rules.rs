//! The per-client limits of issue 10 against a real broker and real clients (rumqttc, raw sockets for what
//! rumqttc will not send): client identifier length, keepalive before MQTT 5.0, topic length and levels,
//! the subscription quota and the publish rate. Each limit is reached while an already connected client keeps
//! a bounded round-trip time, and each is counted in `/metrics`.

mod common;
mod limits_support;

use bytes::BytesMut;
use common::{connect_packet, Client, WAIT};
use harbormq::codec::{encode_packet, Packet};
use limits_support::{broker, hits, with_bystander};
use rumqttc::{QoS, SubscribeReasonCode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The four bytes of the CONNACK a 3.1.1 CONNECT gets, as they are on the wire.
async fn connack_bytes(
    addr: std::net::SocketAddr,
    client_id: &str,
    keep_alive_secs: u16,
) -> [u8; 4] {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet(client_id, true, keep_alive_secs))),
        &mut out,
    )
    .unwrap();
    stream.write_all(&out).await.unwrap();
    let mut ack = [0u8; 4];
    timeout(WAIT, stream.read_exact(&mut ack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_client_id_and_a_long_311_keepalive_get_connack_identifier_rejected() {
    let broker = broker(|c| {
        c.max_client_id_len_bytes = 32;
        c.max_keepalive_secs = 60;
    });
    let addr = broker.addr();
    let (acks, trips) = with_bystander(&broker, async {
        [
            connack_bytes(addr, &"i".repeat(33), 30).await,
            // A 3.1.1 CONNACK cannot name another keepalive: refused, as Mosquitto's max_keepalive does.
            connack_bytes(addr, "keepalive-61", 61).await,
            connack_bytes(addr, &"i".repeat(32), 60).await,
        ]
    })
    .await;
    trips.assert_bounded();
    assert_eq!(acks[0], [0x20, 2, 0, 0x02], "0x02 Identifier rejected");
    assert_eq!(acks[1], [0x20, 2, 0, 0x02], "0x02 Identifier rejected");
    assert_eq!(acks[2], [0x20, 2, 0, 0x00], "within both limits");
    assert_eq!(hits(&broker, "max_client_id_len_bytes").await, 1.0);
    assert_eq!(hits(&broker, "max_keepalive_secs").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_over_the_limits_are_dropped_and_filters_refused() {
    let broker = broker(|c| {
        c.max_topic_len_bytes = 64;
        c.max_topic_levels = 4;
    });
    let mut subscriber = broker.client("topic-sub").await;
    subscriber.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("topic-pub").await;
    let long = format!("t/{}", "x".repeat(63));
    let ((), trips) = with_bystander(&broker, async {
        // 3.1.1 has no refusal in PUBACK: the messages are acknowledged and dropped, the connection stays.
        publisher
            .publish("t/a/b/c/d", QoS::AtLeastOnce, false, "too deep")
            .await;
        publisher
            .publish(&long, QoS::AtLeastOnce, false, "too long")
            .await;
        publisher
            .publish("t/a/b/c", QoS::AtLeastOnce, false, "fine")
            .await;
    })
    .await;
    trips.assert_bounded();
    let first = subscriber.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("t/a/b/c", &b"fine"[..]),
        "the first message to arrive is the one within the limits"
    );
    assert_eq!(
        subscriber.subscribe("a/b/c/d/e", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        subscriber.subscribe(&long, QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(hits(&broker, "max_topic_levels").await, 2.0);
    assert_eq!(hits(&broker, "max_topic_len_bytes").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_too_many_is_refused_and_a_held_filter_counts_once() {
    let broker = broker(|c| c.max_subscriptions_per_client = 3);
    let mut options = broker.options("quota");
    options.set_clean_session(false);
    let (mut client, _) = Client::connect(options.clone()).await;
    let ((), trips) = with_bystander(&broker, async {
        for filter in ["a", "b", "c", "a"] {
            assert_eq!(
                client.subscribe(filter, QoS::AtMostOnce).await,
                vec![SubscribeReasonCode::Success(QoS::AtMostOnce)],
                "{filter}"
            );
        }
        assert_eq!(
            client.subscribe("d", QoS::AtMostOnce).await,
            vec![SubscribeReasonCode::Failure]
        );
        client.unsubscribe("b").await;
        assert_eq!(
            client.subscribe("d", QoS::AtMostOnce).await,
            vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
        );
    })
    .await;
    trips.assert_bounded();
    assert_eq!(hits(&broker, "max_subscriptions_per_client").await, 1.0);
    // The resumed session still holds a, c and d.
    client.disconnect().await;
    let (mut again, ack) = Client::connect(options).await;
    assert!(ack.session_present);
    assert_eq!(
        again.subscribe("e", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        again.subscribe("c", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(hits(&broker, "max_subscriptions_per_client").await, 2.0);
}

/// Publishes `count` QoS 0 messages of `size` bytes as fast as the client lets them go, and returns how long
/// the subscriber took to receive them all, from the first; every message must arrive, in order.
async fn paced_run(
    publisher: &mut Client,
    subscriber: &mut Client,
    topic: &str,
    count: usize,
    size: usize,
) -> Duration {
    let payload = vec![b'p'; size];
    let sending = async {
        for _ in 0..count {
            publisher
                .handle
                .publish(topic, QoS::AtMostOnce, false, payload.clone())
                .await
                .unwrap();
        }
        publisher.wait_published(count, QoS::AtMostOnce).await;
    };
    let receiving = async {
        let mut first = None;
        for n in 0..count {
            // Paced, a run takes seconds: each message gets the usual bound.
            let p = subscriber.next_publish().await;
            assert_eq!(
                (p.topic.as_str(), p.payload.len()),
                (topic, size),
                "message {n}"
            );
            first.get_or_insert_with(Instant::now);
        }
        first.map_or(Duration::ZERO, |f| f.elapsed())
    };
    let ((), took) = tokio::join!(sending, receiving);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_over_its_rate_is_read_more_slowly_and_loses_nothing() {
    let broker = broker(|c| {
        c.max_publish_rate_msgs_per_sec = 100;
        c.max_publish_rate_bytes_per_sec = 400 * 1024;
    });
    let mut subscriber = broker.client("rate-sub").await;
    subscriber.subscribe("rate/#", QoS::AtMostOnce).await;
    let mut publisher = broker.client("rate-pub").await;
    let ((by_count, by_bytes), trips) = with_bystander(&broker, async {
        // 300 small messages at 100 a second, one second's worth at once: about two seconds.
        let by_count = paced_run(&mut publisher, &mut subscriber, "rate/n", 300, 10).await;
        // 3 MiB in 64 KiB messages at 400 KiB a second: about six and a half seconds; 48 messages are far
        // below the message rate.
        let by_bytes = paced_run(&mut publisher, &mut subscriber, "rate/b", 48, 64 * 1024).await;
        (by_count, by_bytes)
    })
    .await;
    trips.assert_bounded();
    assert!(by_count >= Duration::from_millis(1500), "{by_count:?}");
    assert!(by_bytes >= Duration::from_secs(5), "{by_bytes:?}");
    assert!(hits(&broker, "max_publish_rate_msgs_per_sec").await >= 1.0);
    assert!(hits(&broker, "max_publish_rate_bytes_per_sec").await >= 1.0);
}
