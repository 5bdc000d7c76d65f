//! Flow control: a subscriber that reads more slowly than a publisher writes holds the publisher back
//! instead of losing what the publisher was told is accepted; a subscriber that stops reading altogether
//! holds nobody back for long, and a persistent one finds its messages in the store when it reads again.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use harbormq::broker::flow::ROUTE_CREDITS;
use harbormq::broker::messages::RouterStats;
use harbormq::codec::{encode_packet, Packet, Publish, QoS};
use std::time::Duration;

const MESSAGES: u32 = 30_000;

fn numbered(topic_name: &str, qos: QoS, n: u32) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(topic_name),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid((n % 65_535) as u16 + 1)),
        payload: Bytes::copy_from_slice(&n.to_be_bytes()),
        properties: None,
    })
}

fn number_of(p: &Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().unwrap())
}

/// The broker's figures once `reached` holds for them; fails the test if that takes longer than `WAIT`.
async fn stats_when(broker: &TestBroker, reached: impl Fn(&RouterStats) -> bool) -> RouterStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = broker.handle().router_stats().await.unwrap();
        if reached(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within {WAIT:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [MQTT-4.3.2-2]: PUBACK means the broker owns the message. A clean session whose queue limit (10,000) is
/// far below what is in flight must still receive every message when it merely reads late: the publisher
/// is held back meanwhile (the broker counts it), and nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_holds_the_publisher_back_and_loses_nothing() {
    let broker = TestBroker::start_with(|c| {
        c.durability = "off".to_owned();
        c.max_queued_messages = 10_000;
        c.max_inflight = 16;
    });
    let (mut sub, _) = broker.raw_connected("late-reader", true, 60).await;
    sub.subscribe(1, "flow/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = broker.raw_connected("fast-writer", true, 60).await;

    let writer = tokio::spawn(async move {
        for n in 0..MESSAGES {
            publisher
                .send(&numbered("flow/t", QoS::AtLeastOnce, n))
                .await;
        }
        let mut acked = 0;
        while acked < MESSAGES {
            match publisher.recv_within(Duration::from_secs(30)).await {
                Ok(Some(Packet::PubAck(_))) => acked += 1,
                Ok(Some(other)) => panic!("publisher got {other:?}"),
                Ok(None) | Err(()) => panic!("publisher lost its connection after {acked} PUBACKs"),
            }
        }
        acked
    });

    // The reader falls behind on purpose: it reads nothing until the broker has stopped reading the
    // publisher (all of its routing credits kept by the subscriber out of credit).
    let paused = stats_when(&broker, |s| s.routing_credits_kept >= ROUTE_CREDITS as u64).await;
    // By then the broker read only what the subscriber's queue (held back at 1,024) and a few batches beyond
    // take: the publisher was stopped, its writes waiting in its socket.
    assert!(
        paused.messages_in <= 10_000,
        "the broker went on reading the publisher: {paused:?}"
    );
    for expected in 0..MESSAGES {
        let p = sub.recv_publish().await;
        assert_eq!(number_of(&p), expected, "messages out of order or lost");
        sub.send(&Packet::PubAck(p.packet_id.unwrap().into())).await;
    }
    assert_eq!(writer.await.unwrap(), MESSAGES);
    let stats = broker.handle().router_stats().await.unwrap();
    assert!(
        stats.routing_credits_kept >= 1,
        "no batch held the publisher back: {stats:?}"
    );
    assert_eq!(stats.dropped, 0, "nothing may be dropped: {stats:?}");
    assert_eq!(
        stats.stuck_sessions, 0,
        "a late reader is not stuck: {stats:?}"
    );
}

/// Sends `count` numbered QoS 0 publishes in large writes, then waits for PINGRESP: once it comes, the
/// broker has routed everything sent before it.
async fn flood(publisher: &mut RawClient, first: u32, count: u32) {
    let mut chunk = BytesMut::new();
    for n in first..first + count {
        encode_packet(&numbered("ov/flood/x", QoS::AtMostOnce, n), &mut chunk).unwrap();
        if chunk.len() > 64 * 1024 {
            publisher.send_bytes(&chunk.split()).await;
        }
    }
    publisher.send_bytes(&chunk.split()).await;
    publisher.send(&Packet::PingReq).await;
    match publisher.recv_within(Duration::from_secs(10)).await {
        Ok(Some(Packet::PingResp)) => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// A clean subscriber that never reads must not slow a QoS 0 publisher beside it for long: the broker counts
/// it as stuck after holding the publisher back for at most two seconds in all, and from then on the publisher
/// is not held at all while every copy for the stuck subscriber is dropped and counted (the broker's own
/// figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_publisher_beside_a_subscriber_that_never_reads_keeps_its_rate() {
    const CHUNK: u32 = 20_000;
    const AFTER: u32 = 200_000;
    let broker = TestBroker::start_with(|c| c.durability = "off".to_owned());
    let mut stuck = RawClient::open(broker.addr()).await;
    stuck.connect(connect_packet("never-reads", true, 0)).await;
    stuck.subscribe(1, "ov/flood/#", QoS::AtMostOnce).await;
    // From here on `stuck` reads nothing.
    let (mut publisher, _) = broker.raw_connected("flooder", true, 0).await;
    let mut sent = 0;
    let before = loop {
        flood(&mut publisher, sent, CHUNK).await;
        sent += CHUNK;
        let stats = broker.handle().router_stats().await.unwrap();
        if stats.stuck_sessions > 0 {
            break stats;
        }
        assert!(sent < 10_000_000, "never counted as stuck: {stats:?}");
    };
    assert_eq!(before.stuck_sessions, 1, "{before:?}");
    // The bound: after at most two seconds the publisher runs as it would without that subscriber.
    assert!(
        before.publisher_wait_ms <= 2_000,
        "held back for {} ms before the subscriber counted as stuck: {before:?}",
        before.publisher_wait_ms
    );
    flood(&mut publisher, sent, AFTER).await;
    let after = broker.handle().router_stats().await.unwrap();
    assert_eq!(
        after.messages_in - before.messages_in,
        u64::from(AFTER),
        "{after:?}"
    );
    assert_eq!(
        after.routing_credits_kept, before.routing_credits_kept,
        "the publisher was held back after the subscriber counted as stuck: {after:?}"
    );
    assert_eq!(
        after.dropped - before.dropped,
        u64::from(AFTER),
        "every copy for the stuck subscriber is dropped and counted: {after:?}"
    );
    drop(stuck);
}

/// Reads PUBACKs until `wanted` of them came in all (`acked` already had); returns the count.
async fn pubacks_until(publisher: &mut RawClient, mut acked: u32, wanted: u32) -> u32 {
    while acked < wanted {
        match publisher.recv_within(WAIT).await {
            Ok(Some(Packet::PubAck(_))) => acked += 1,
            other => panic!("publisher expected PUBACK after {acked}, got {other:?}"),
        }
    }
    acked
}

/// A persistent subscriber that stops reading holds no QoS 1 publisher back (its messages go to its stored
/// queue) and receives every one of them, in order and once, when it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_subscriber_that_stops_reading_gets_every_qos1_message_once_it_reads_again() {
    const COUNT: u32 = 20_000;
    let broker = TestBroker::start_with(|c| c.durability = "off".to_owned());
    let mut sub = RawClient::open_with_small_receive_buffer(broker.addr()).await;
    sub.connect(connect_packet("sleepy", false, 0)).await;
    sub.subscribe(1, "ov/p/#", QoS::AtLeastOnce).await;
    // From here on `sub` reads nothing until every message is published.
    let (mut publisher, _) = broker.raw_connected("steady", true, 0).await;
    let payload = Bytes::from(vec![7u8; 256]);
    let mut acked = 0;
    let mut chunk = BytesMut::new();
    for n in 0..COUNT {
        let mut body = BytesMut::from(&n.to_be_bytes()[..]);
        body.extend_from_slice(&payload);
        let packet = Packet::Publish(Publish {
            payload: body.freeze(),
            ..match numbered("ov/p/x", QoS::AtLeastOnce, n) {
                Packet::Publish(p) => p,
                _ => unreachable!(),
            }
        });
        encode_packet(&packet, &mut chunk).unwrap();
        if n % 500 == 499 {
            publisher.send_bytes(&chunk.split()).await;
            // A window of 500 unacknowledged publishes, as a pipelining client keeps.
            acked = pubacks_until(&mut publisher, acked, n + 1 - 500).await;
        }
    }
    pubacks_until(&mut publisher, acked, COUNT).await;
    let stats = broker.handle().router_stats().await.unwrap();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    // Now the subscriber reads again: every message, in order, once.
    for expected in 0..COUNT {
        let p = sub.recv_publish().await;
        assert_eq!(
            number_of(&p),
            expected,
            "messages out of order, lost or repeated"
        );
        assert!(!p.dup, "message {expected} was sent twice");
        sub.send(&Packet::PubAck(p.packet_id.unwrap().into())).await;
    }
    sub.expect_silence(QUIET).await;
}
