//! A crash in the middle of a drain: a persistent subscriber comes back to a queue of QoS 1 messages,
//! acknowledges the first half of them, and the broker is killed with `kill -9` while it is still sending the
//! rest. After the restart every message the subscriber had not acknowledged arrives; those it had been sent
//! come again under their first packet id with DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]. An acknowledged message may
//! come again (QoS 1 allows it), and the test says how many did. Runs the real binary.

#[allow(dead_code)]
mod process;

use harbormq::codec::{
    Packet as RawPacket, PacketId, Publish, QoS as RawQoS, Subscribe, SubscribeReturnCode,
};
use harbormq::topic::TopicFilter;
use process::client::{connect, disconnect, options};
use process::numbered::number_of;
use process::raw::RawClient;
use process::{within, BrokerProcess};
use rumqttc::{Event, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};

const TOPIC: &str = "crash/drain";
const SUBSCRIBER: &str = "sub-crash-drain";
/// Messages queued for the subscriber while it is away.
const QUEUED: u32 = 2_000;
/// The broker's window of unacknowledged messages per session (`--max-inflight`): what the subscriber holds
/// unacknowledged when the broker is killed.
const WINDOW: u32 = 64;
/// The payload number of the message published after the restart, which ends the subscriber's reading.
const SENTINEL: u32 = u32::MAX;

fn payload(n: u32) -> Vec<u8> {
    let mut payload = n.to_be_bytes().to_vec();
    payload.extend_from_slice(b"-drain");
    payload
}

/// Subscribes the raw persistent session at QoS 1 and waits for its SUBACK.
async fn raw_subscribe(client: &mut RawClient) {
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters: vec![(
            TopicFilter::new(TOPIC.to_owned()).unwrap(),
            RawQoS::AtLeastOnce.into(),
        )],
        properties: None,
    };
    client.send(&RawPacket::Subscribe(subscribe)).await;
    match client.recv().await {
        RawPacket::SubAck(ack) => assert_eq!(
            ack.return_codes,
            vec![SubscribeReturnCode::Success(RawQoS::AtLeastOnce)]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes `numbers` at QoS 1 with rumqttc and waits until every one is acknowledged.
async fn publish(port: u16, numbers: impl Iterator<Item = u32>) {
    let (client, mut eventloop, _) = connect(options("pub-crash-drain", port, true)).await;
    let numbers: Vec<u32> = numbers.collect();
    let expected = numbers.len();
    // The requests are queued by a task of their own while the event loop runs here: the client's request
    // queue holds fewer than a whole run.
    let queuing = client.clone();
    let queue = tokio::spawn(async move {
        for n in numbers {
            queuing
                .publish(TOPIC, QoS::AtLeastOnce, false, payload(n))
                .await
                .unwrap();
        }
    });
    let mut acked = 0usize;
    while acked < expected {
        match within("the publisher's PUBACKs", eventloop.poll()).await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher lost its connection: {e}"),
        }
    }
    within("queuing the publishes", queue).await.unwrap();
    disconnect(client, eventloop).await;
}

/// The next PUBLISH on the raw subscriber, as (number, packet id, DUP).
async fn next_publish(client: &mut RawClient) -> (u32, PacketId, bool) {
    loop {
        match client.recv().await {
            RawPacket::Publish(Publish {
                payload,
                packet_id: Some(id),
                dup,
                ..
            }) => return (number_of(&payload), id, dup),
            RawPacket::PubAck(_) | RawPacket::PingResp => {}
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill9_in_the_middle_of_a_drain_loses_nothing_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let window = WINDOW.to_string();
    let flags = ["--durability", "sync", "--max-inflight", window.as_str()];
    let mut broker = BrokerProcess::start_with(dir.path(), "", &flags);
    let (mut subscriber, _) = RawClient::connect(broker.port(), SUBSCRIBER).await;
    raw_subscribe(&mut subscriber).await;
    drop(subscriber);
    publish(broker.port(), 0..QUEUED).await;

    // The subscriber comes back: it acknowledges the first half of what it is sent, then reads on without
    // acknowledging until the broker's window is full, and the broker is killed at once.
    let (mut subscriber, ack) = RawClient::connect(broker.port(), SUBSCRIBER).await;
    assert!(ack.session_present);
    let mut acked = BTreeSet::new();
    let mut sent_unacked: BTreeMap<u32, PacketId> = BTreeMap::new();
    while acked.len() < (QUEUED / 2) as usize {
        let (n, id, _) = next_publish(&mut subscriber).await;
        subscriber.send(&RawPacket::PubAck(id.into())).await;
        acked.insert(n);
    }
    while sent_unacked.len() < WINDOW as usize {
        let (n, id, _) = next_publish(&mut subscriber).await;
        sent_unacked.insert(n, id);
    }
    broker.kill9();
    drop(subscriber);

    let broker = broker.restart("sync");
    publish(broker.port(), std::iter::once(SENTINEL)).await;
    let (mut subscriber, ack) = RawClient::connect(broker.port(), SUBSCRIBER).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let mut again: BTreeMap<u32, (PacketId, bool)> = BTreeMap::new();
    let mut duplicates = 0u32;
    loop {
        let (n, id, dup) = next_publish(&mut subscriber).await;
        subscriber.send(&RawPacket::PubAck(id.into())).await;
        if n == SENTINEL {
            break;
        }
        if again.insert(n, (id, dup)).is_some() {
            duplicates += 1;
        }
    }
    let lost: Vec<u32> = (0..QUEUED)
        .filter(|n| !acked.contains(n) && !again.contains_key(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} unacknowledged message(s) lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for (n, first_id) in &sent_unacked {
        assert_eq!(
            again.get(n),
            Some(&(*first_id, true)),
            "message {n}, sent under packet id {first_id} before the kill, comes again under it with DUP 1"
        );
    }
    let acked_again = again.keys().filter(|n| acked.contains(n)).count();
    println!(
        "drain crash: {} acknowledged before the kill, {} of them sent again (QoS 1 allows it); {} sent and \
         not acknowledged, all sent again; {duplicates} duplicate(s) after the restart",
        acked.len(),
        acked_again,
        sent_unacked.len()
    );
    assert_eq!(duplicates, 0, "nothing is sent twice after the restart");
}
