//! Flow control: a subscriber that reads more slowly than a publisher writes holds the publisher back
//! instead of losing what the publisher was told is accepted.

mod common;

use bytes::Bytes;
use common::*;
use harbormq::codec::{Packet, Publish, QoS};
use std::time::Duration;

const MESSAGES: u32 = 30_000;

/// [MQTT-4.3.2-2]: PUBACK means the broker owns the message. A clean session whose queue limit (10,000) is
/// far below what is in flight must still receive every message when it merely reads late.
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
                .send(&Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: topic("flow/t"),
                    packet_id: Some(pid(n as u16 + 1)),
                    payload: Bytes::copy_from_slice(&n.to_be_bytes()),
                }))
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

    // The reader falls behind on purpose: this pause is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for expected in 0..MESSAGES {
        let p = sub.recv_publish().await;
        let n = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
        assert_eq!(n, expected, "messages out of order or lost");
        sub.send(&Packet::PubAck(p.packet_id.unwrap())).await;
    }
    assert_eq!(writer.await.unwrap(), MESSAGES);
}
