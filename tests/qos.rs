//! QoS 1 and 2 over the wire: both handshakes in both directions, exactly-once inbound QoS 2, the outbound
//! inflight window and its queue, redelivery with DUP on reconnect, and message order.

mod common;

use common::*;
use harbormq::codec::{Packet, QoS};
use rumqttc::QoS as RQoS;

// [MQTT-4.3.2-2], [MQTT-3.3.4-1]: QoS 1 inbound is answered with PUBACK carrying the packet id; outbound QoS 1
// carries a packet id and DUP 0 on first delivery [MQTT-4.3.2-1].
#[tokio::test]
async fn qos1_in_both_directions() {
    let broker = TestBroker::start();
    let (mut sub, _) = broker.raw_connected("sub", true, 30).await;
    sub.subscribe(1, "q1/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = broker.raw_connected("pub", true, 30).await;

    publisher
        .send(&publish_packet(
            "q1/t",
            QoS::AtLeastOnce,
            Some(10),
            false,
            b"one",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubAck(pid(10).into()));

    let delivered = sub.recv_publish().await;
    assert_eq!(delivered.topic.as_str(), "q1/t");
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
    assert!(!delivered.dup);
    assert!(!delivered.retain);
    assert_eq!(delivered.payload.as_ref(), b"one");
    sub.send(&Packet::PubAck(pid(id_of(&delivered)).into()))
        .await;
    // Acknowledged: nothing is re-sent.
    sub.expect_silence(QUIET).await;
}

// [MQTT-4.3.3-2]: QoS 2 inbound: PUBREC, then PUBCOMP for the PUBREL. Outbound [MQTT-4.3.3-1]: PUBLISH, then
// PUBREL with the same id once the client sent PUBREC, then the client's PUBCOMP ends it.
#[tokio::test]
async fn qos2_in_both_directions() {
    let broker = TestBroker::start();
    let (mut sub, _) = broker.raw_connected("sub", true, 30).await;
    sub.subscribe(1, "q2/t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = broker.raw_connected("pub", true, 30).await;

    publisher
        .send(&publish_packet(
            "q2/t",
            QoS::ExactlyOnce,
            Some(20),
            false,
            b"two",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(pid(20).into()));
    publisher.send(&Packet::PubRel(pid(20).into())).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(pid(20).into()));

    let delivered = sub.recv_publish().await;
    assert_eq!(delivered.topic.as_str(), "q2/t");
    assert_eq!(delivered.qos, QoS::ExactlyOnce);
    assert!(!delivered.dup);
    assert!(!delivered.retain);
    assert_eq!(delivered.payload.as_ref(), b"two");
    let id = pid(id_of(&delivered));
    sub.send(&Packet::PubRec(id.into())).await;
    assert_eq!(sub.recv().await, Packet::PubRel(id.into()));
    sub.send(&Packet::PubComp(id.into())).await;
    sub.expect_silence(QUIET).await;
}

// [MQTT-4.3.3-2]: until PUBREL, a PUBLISH with the same packet id (DUP set) is a retransmission and must not be
// delivered again. After PUBCOMP the id is free and a new message with it is delivered.
#[tokio::test]
async fn retransmitted_qos2_publish_is_delivered_once() {
    let broker = TestBroker::start();
    let mut sub = broker.client("sub").await;
    sub.subscribe("once/t", RQoS::ExactlyOnce).await;
    let (mut publisher, _) = broker.raw_connected("pub", true, 30).await;

    publisher
        .send(&publish_packet(
            "once/t",
            QoS::ExactlyOnce,
            Some(7),
            false,
            b"first",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(pid(7).into()));
    publisher
        .send(&publish_packet(
            "once/t",
            QoS::ExactlyOnce,
            Some(7),
            true,
            b"first",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(pid(7).into()));
    publisher.send(&Packet::PubRel(pid(7).into())).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(pid(7).into()));

    publisher
        .send(&publish_packet(
            "once/t",
            QoS::ExactlyOnce,
            Some(7),
            false,
            b"second",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(pid(7).into()));
    publisher.send(&Packet::PubRel(pid(7).into())).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(pid(7).into()));

    let got = sub.publishes_until("once/t", b"second").await;
    assert_eq!(payloads(&got), ["first", "second"]);
    assert!(got.iter().all(|p| p.qos == RQoS::ExactlyOnce), "{got:?}");
}

// Issue 2, [MQTT-4.6.0-6]: at most `max_inflight` outbound messages await acknowledgement; the rest wait in the
// session's queue and follow, in order, as acknowledgements free the window.
#[tokio::test]
async fn outbound_messages_beyond_the_inflight_window_wait() {
    let broker = TestBroker::start_with(|c| c.max_inflight = 2);
    let (mut sub, _) = broker.raw_connected("slow", true, 30).await;
    sub.subscribe(1, "win/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..5 {
        publisher
            .publish("win/t", RQoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"m0"[..], &b"m1"[..])
    );
    sub.expect_silence(QUIET).await;

    sub.send(&Packet::PubAck(pid(id_of(&first)).into())).await;
    let third = sub.recv_publish().await;
    assert_eq!(third.payload.as_ref(), b"m2");
    sub.expect_silence(QUIET).await;

    sub.send(&Packet::PubAck(pid(id_of(&second)).into())).await;
    sub.send(&Packet::PubAck(pid(id_of(&third)).into())).await;
    let rest = [sub.recv_publish().await, sub.recv_publish().await];
    assert_eq!(rest[0].payload.as_ref(), b"m3");
    assert_eq!(rest[1].payload.as_ref(), b"m4");
    for p in [&first, &second, &third, &rest[0], &rest[1]] {
        assert!(
            p.qos == QoS::AtLeastOnce && !p.dup,
            "first delivery at QoS 1, DUP 0: {p:?}"
        );
    }
    assert_ne!(
        id_of(&first),
        id_of(&second),
        "[MQTT-2.3.1-2] ids in use are distinct"
    );
}

// Issue 2: a clean session's queue holds `max_queued_messages`; what overflows is dropped and never delivered,
// and the session keeps working afterwards.
#[tokio::test]
async fn queue_overflow_is_dropped_not_delivered() {
    let broker = TestBroker::start_with(|c| {
        c.max_inflight = 1;
        c.max_queued_messages = 2;
    });
    let (mut sub, _) = broker.raw_connected("full", true, 30).await;
    sub.subscribe(1, "full/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 1..=6 {
        publisher
            .publish("full/t", RQoS::AtLeastOnce, false, format!("p{i}"))
            .await;
    }
    let mut received = Vec::new();
    for _ in 0..3 {
        let p = sub.recv_publish().await;
        received.push(String::from_utf8_lossy(&p.payload).into_owned());
        sub.send(&Packet::PubAck(pid(id_of(&p)).into())).await;
    }
    assert_eq!(received, ["p1", "p2", "p3"], "one inflight, two queued");
    sub.expect_silence(QUIET).await;

    publisher
        .publish("full/t", RQoS::AtLeastOnce, false, "p7")
        .await;
    assert_eq!(sub.recv_publish().await.payload.as_ref(), b"p7");
}

// [MQTT-4.4.0-1]: when a persistent session reconnects, unacknowledged PUBLISH packets are re-sent with DUP 1
// and their original packet ids, and a PUBREL awaiting PUBCOMP is re-sent.
#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let broker = TestBroker::start();
    let (mut sub, _) = broker.raw_connected("resume", false, 30).await;
    sub.subscribe(1, "re/#", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("re/1", RQoS::AtLeastOnce, false, "q1")
        .await;
    publisher
        .publish("re/2", RQoS::ExactlyOnce, false, "q2")
        .await;
    publisher
        .publish("re/3", RQoS::ExactlyOnce, false, "released")
        .await;

    let q1 = sub.recv_publish().await;
    let q2 = sub.recv_publish().await;
    let q3 = sub.recv_publish().await;
    assert_eq!(q3.payload.as_ref(), b"released");
    // q1 and q2 are left unacknowledged; q3 gets as far as PUBREL.
    sub.send(&Packet::PubRec(pid(id_of(&q3)).into())).await;
    assert_eq!(sub.recv().await, Packet::PubRel(pid(id_of(&q3)).into()));
    drop(sub);

    let (mut sub, ack) = broker.raw_connected("resume", false, 30).await;
    assert!(ack.session_present);
    let mut resent = Vec::new();
    for _ in 0..3 {
        resent.push(sub.recv().await);
    }
    let publishes: Vec<_> = resent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 2, "{resent:?}");
    for (again, before) in publishes.iter().zip([&q1, &q2]) {
        assert!(again.dup, "re-sent with DUP 1: {again:?}");
        assert_eq!(again.packet_id, before.packet_id);
        assert_eq!(again.qos, before.qos);
        assert_eq!(again.payload, before.payload);
    }
    assert!(
        resent.contains(&Packet::PubRel(pid(id_of(&q3)).into())),
        "PUBREL re-sent: {resent:?}"
    );
}

// [MQTT-4.6.0-2], [MQTT-4.6.0-3], [MQTT-4.6.0-6]: messages of one publisher on one topic at one QoS arrive in
// the order they were published.
#[tokio::test]
async fn order_per_topic_and_qos_is_kept() {
    let broker = TestBroker::start_with(|c| c.durability = "off".to_owned());
    let mut sub = broker.client("sub").await;
    sub.subscribe("ord/#", RQoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    let counts = [
        (RQoS::AtLeastOnce, "ord/1", 300),
        (RQoS::ExactlyOnce, "ord/2", 150),
    ];
    for (qos, topic, count) in counts {
        for i in 0..count {
            publisher
                .handle
                .publish(topic, qos, false, i.to_string())
                .await
                .unwrap();
        }
        publisher.wait_published(count, qos).await;
    }
    let got = sub.publishes(450).await;
    for (qos, topic, count) in counts {
        let seq: Vec<usize> = got
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| {
                assert_eq!(p.qos, qos);
                String::from_utf8_lossy(&p.payload).parse().unwrap()
            })
            .collect();
        assert_eq!(seq, (0..count).collect::<Vec<_>>(), "order on {topic}");
    }
}

// [MQTT-4.6.0-2..4], [MQTT-4.3.3-1]: a PUBREC for a stored message and a PUBLISH in the same write. The
// PUBLISH's PUBACK waits for its commit; the PUBREL waits behind it (answers leave in order) and behind the
// commit of the message's released state [MQTT-4.4.0-1]. Both arrive, in that order, and the session goes on.
#[tokio::test]
async fn a_pubrel_held_behind_an_earlier_puback_still_leaves() {
    let broker = TestBroker::start();
    let (mut sub, _) = broker.raw_connected("stored-q2", false, 30).await;
    sub.subscribe(1, "held/in", QoS::ExactlyOnce).await;
    let (mut publisher, _) = broker.raw_connected("pub", true, 30).await;
    publisher
        .send(&publish_packet(
            "held/in",
            QoS::ExactlyOnce,
            Some(1),
            false,
            b"a",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(pid(1).into()));
    let delivered = sub.recv_publish().await;
    assert_eq!(delivered.qos, QoS::ExactlyOnce);
    let id = pid(id_of(&delivered));
    sub.send_together(&[
        publish_packet("held/out", QoS::AtLeastOnce, Some(7), false, b"b"),
        Packet::PubRec(id.into()),
    ])
    .await;
    assert_eq!(sub.recv().await, Packet::PubAck(pid(7).into()));
    assert_eq!(sub.recv().await, Packet::PubRel(id.into()));
    sub.send(&Packet::PubComp(id.into())).await;
    // The connection still answers.
    sub.send(&Packet::PingReq).await;
    assert_eq!(sub.recv().await, Packet::PingResp);
}
