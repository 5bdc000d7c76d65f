//! Crash tests of the durability contract (DESIGN.md section 2) against the real binary and real clients.
//! Each test kills or stops a `harbormq` process on a temporary data dir, restarts it and checks what survived.

// Only part of the shared helper is needed here: not the broker's address, nor raw reads that tolerate a close.
#[allow(dead_code)]
mod process;

use harbormq::codec::{
    Packet as RawPacket, PacketId, Publish as RawPublish, QoS as RawQoS, Subscribe,
    SubscribeReturnCode,
};
use harbormq::topic::{TopicFilter, TopicName};
use process::client::{self, connect, disconnect, subscribe, subscribe_offline};
use process::numbered::{duplicates, invented, lost, number_of, tally};
use process::raw::RawClient;
use process::{within, BrokerProcess, STEP};
use rumqttc::{Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

/// Messages per publishing run.
const COUNT: u32 = 5_000;

/// The payload number that marks the end of a subscriber's backlog.
const SENTINEL: u32 = u32::MAX;

/// A payload that carries its message number in the first four bytes.
fn numbered(n: u32) -> Vec<u8> {
    let mut payload = n.to_be_bytes().to_vec();
    payload.extend_from_slice(b"-harbormq-crash-test");
    payload
}

/// A client id made of a prefix, a topic and a number, with the topic's slashes replaced.
fn client_name(prefix: &str, topic: &str, n: impl std::fmt::Display) -> String {
    format!("{prefix}-{}-{n}", topic.replace('/', "-"))
}

/// Client options for the broker on `port`, with room for a pipelined publishing run in flight.
fn options(client_id: &str, port: u16, clean_session: bool) -> MqttOptions {
    let mut options = client::options(client_id, port, clean_session);
    options.set_inflight(500);
    options
}

/// What a publishing run saw before its connection ended.
#[derive(Debug, Default)]
struct PublishOutcome {
    /// Numbers of the messages the broker acknowledged (PUBACK for QoS 1, PUBREC for QoS 2).
    acked: BTreeSet<u32>,
    /// Numbers of the messages written to the socket.
    sent: u32,
    /// Whether `on_ack` asked to stop (it killed or stopped the broker).
    stopped: bool,
}

/// Publishes `0..count` as numbered messages, pipelined; after each broker acknowledgement calls
/// `on_ack(acked so far)`. When that returns true (the broker was killed or stopped) the run keeps
/// reading until the connection ends, so acknowledgements already on the wire are counted too.
async fn publish_numbered(
    port: u16,
    topic: &str,
    qos: QoS,
    count: u32,
    mut on_ack: impl FnMut(usize) -> bool,
) -> PublishOutcome {
    let (client, mut eventloop, _) =
        connect(options(&client_name("pub", topic, port), port, true)).await;
    let feeder = client.clone();
    let owned_topic = topic.to_string();
    let publisher = tokio::spawn(async move {
        for n in 0..count {
            if feeder
                .publish(owned_topic.as_str(), qos, false, numbered(n))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // rumqttc hands out packet ids in request order; the n-th outgoing PUBLISH carries message n.
    let mut unsent: VecDeque<u32> = (0..count).collect();
    let mut by_packet_id: HashMap<u16, u32> = HashMap::new();
    let mut outcome = PublishOutcome::default();
    let mut completed = 0u32;
    loop {
        let event = within("the next publisher event", eventloop.poll()).await;
        let acked_id = match event {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let n = unsent.pop_front().expect("more PUBLISHes than requests");
                by_packet_id.insert(pkid, n);
                outcome.sent += 1;
                None
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) if qos == QoS::AtLeastOnce => {
                completed += 1;
                Some(ack.pkid)
            }
            Ok(Event::Incoming(Packet::PubRec(rec))) if qos == QoS::ExactlyOnce => Some(rec.pkid),
            Ok(Event::Incoming(Packet::PubComp(_))) => {
                completed += 1;
                None
            }
            Ok(_) => None,
            Err(e) if outcome.stopped => {
                eprintln!("publisher connection ended after the stop: {e}");
                break;
            }
            Err(e) => panic!("publisher lost its connection before the stop: {e}"),
        };
        if let Some(pkid) = acked_id {
            let n = by_packet_id
                .remove(&pkid)
                .unwrap_or_else(|| panic!("acknowledgement for unknown packet id {pkid}"));
            outcome.acked.insert(n);
            if !outcome.stopped && on_ack(outcome.acked.len()) {
                outcome.stopped = true;
            }
        }
        if !outcome.stopped && completed == count {
            break;
        }
    }
    drop(eventloop);
    within("the publishing task", publisher).await.unwrap();
    outcome
}

/// Publishes one numbered QoS 1 message with a new clean session and waits for its PUBACK.
async fn publish_one(port: u16, topic: &str, n: u32, retain: bool) {
    let (client, mut eventloop, _) =
        connect(options(&client_name("one", topic, n), port, true)).await;
    client
        .publish(topic, QoS::AtLeastOnce, retain, numbered(n))
        .await
        .unwrap();
    loop {
        match within("PUBACK", eventloop.poll()).await {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("connection lost before PUBACK: {e}"),
        }
    }
    disconnect(client, eventloop).await;
}

/// Every delivery a subscriber saw, in arrival order, as (message number, DUP flag).
type Deliveries = Vec<(u32, bool)>;

/// Reads deliveries on `topic` until the sentinel arrives.
async fn receive_until_sentinel(eventloop: &mut EventLoop, topic: &str) -> Deliveries {
    let mut deliveries = Vec::new();
    loop {
        let event = within(
            &format!("the next delivery on {topic} ({} so far)", deliveries.len()),
            eventloop.poll(),
        )
        .await;
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                assert_eq!(publish.topic, topic);
                let n = number_of(&publish.payload);
                if n == SENTINEL {
                    return deliveries;
                }
                deliveries.push((n, publish.dup));
            }
            Ok(_) => {}
            Err(e) => panic!("subscriber lost its connection: {e}"),
        }
    }
}

/// Reconnects a persistent subscriber and drains its backlog up to the sentinel published before.
async fn drain_backlog(port: u16, client_id: &str, topic: &str) -> Deliveries {
    let (client, mut eventloop, session_present) = connect(options(client_id, port, false)).await;
    assert!(
        session_present,
        "CONNACK to {client_id} after the restart has session present 0 [MQTT-3.2.2-2]"
    );
    let deliveries = receive_until_sentinel(&mut eventloop, topic).await;
    disconnect(client, eventloop).await;
    deliveries
}

/// A short description of a set of numbers for failure messages.
fn sample(numbers: &[u32]) -> String {
    let shown: Vec<String> = numbers.iter().take(20).map(u32::to_string).collect();
    format!("{} message(s): {}", numbers.len(), shown.join(", "))
}

/// Checks that every acknowledged message arrived and none was invented; returns the duplicate count.
fn assert_acked_delivered(label: &str, acked: &BTreeSet<u32>, sent: u32, got: &Deliveries) -> u32 {
    let counts = tally(got.iter().map(|(n, _)| *n));
    let lost = lost(acked, &counts);
    assert!(
        lost.is_empty(),
        "{label}: acknowledged but never delivered after the restart: {}",
        sample(&lost)
    );
    let invented = invented(&counts, sent);
    assert!(
        invented.is_empty(),
        "{label}: delivered but never sent: {}",
        sample(&invented)
    );
    let duplicates = duplicates(&counts);
    let unacked_delivered = counts.keys().filter(|n| !acked.contains(n)).count();
    println!(
        "{label}: sent {sent}, acknowledged {}, delivered {} ({} distinct, {unacked_delivered} of them unacknowledged), duplicates {duplicates}",
        acked.len(),
        got.len(),
        counts.len()
    );
    duplicates
}

/// The durability mode under test: `sync` (the default mode, which the contract is about) unless
/// `CRASH_DURABILITY` names another, e.g. `off` to see these tests catch a broker that loses messages.
fn durability() -> String {
    std::env::var("CRASH_DURABILITY").unwrap_or_else(|_| "sync".to_string())
}

/// A temporary data dir with a broker started on it.
fn start_broker() -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &durability());
    (dir, broker)
}

/// The message count at which a test kills the broker: `CRASH_KILL_AT` if set, otherwise random.
fn kill_point(range: std::ops::Range<usize>) -> usize {
    match std::env::var("CRASH_KILL_AT") {
        Ok(value) => value.parse().expect("CRASH_KILL_AT is a number"),
        Err(_) => rand::random_range(range),
    }
}

/// Runs scenario (a) or (f): all of `COUNT` acknowledged, then the broker is stopped by `stop`.
async fn offline_subscriber_survives(label: &str, stop: impl FnOnce(&mut BrokerProcess)) -> u32 {
    let started = Instant::now();
    let (_dir, mut broker) = start_broker();
    let (topic, sub) = (format!("crash/{label}"), format!("sub-{label}"));
    subscribe_offline(
        options(&sub, broker.port(), false),
        &topic,
        QoS::AtLeastOnce,
    )
    .await;
    let mut stop = Some(stop);
    let port = broker.port();
    let outcome = publish_numbered(port, &topic, QoS::AtLeastOnce, COUNT, |acked| {
        if acked == COUNT as usize {
            (stop.take().unwrap())(&mut broker);
            return true;
        }
        false
    })
    .await;
    assert!(
        outcome.stopped,
        "{label}: only {} PUBACKs",
        outcome.acked.len()
    );
    assert_eq!(outcome.acked.len(), COUNT as usize);
    let broker = broker.restart(&durability());
    publish_one(broker.port(), &topic, SENTINEL, false).await;
    let got = drain_backlog(broker.port(), &sub, &topic).await;
    let duplicates = assert_acked_delivered(label, &outcome.acked, outcome.sent, &got);
    println!("{label}: took {:?}", started.elapsed());
    duplicates
}

/// (a) Every PUBACKed QoS 1 message reaches the offline persistent subscriber after kill -9 [contract 1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill9_after_last_puback_loses_nothing() {
    offline_subscriber_survives("a-kill9-after-last", BrokerProcess::kill9).await;
}

/// (f) A graceful stop (SIGTERM, clean exit) keeps the guarantees of (a).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_sigterm_after_last_puback_loses_nothing() {
    offline_subscriber_survives("f-sigterm", |broker| {
        let status = broker.terminate(STEP);
        assert!(
            status.success(),
            "broker exit status after SIGTERM: {status}"
        );
    })
    .await;
}

/// Kills the broker at a random acknowledgement while `qos` messages are being published.
async fn kill_during_publishing(label: &str, qos: QoS) -> (PublishOutcome, Deliveries) {
    let (_dir, mut broker) = start_broker();
    let (topic, sub) = (format!("crash/{label}"), format!("sub-{label}"));
    subscribe_offline(options(&sub, broker.port(), false), &topic, qos).await;
    let kill_at = kill_point(500..4_500);
    println!("{label}: killing the broker at acknowledgement {kill_at} (CRASH_KILL_AT={kill_at} repeats this)");
    let port = broker.port();
    let outcome = publish_numbered(port, &topic, qos, COUNT, |acked| {
        if acked == kill_at {
            broker.kill9();
            return true;
        }
        false
    })
    .await;
    assert!(outcome.stopped, "{label}: the kill point was never reached");
    let broker = broker.restart(&durability());
    publish_one(broker.port(), &topic, SENTINEL, false).await;
    let got = drain_backlog(broker.port(), &sub, &topic).await;
    (outcome, got)
}

/// (b) A kill -9 at a random moment of a QoS 1 run loses no PUBACKed message [contract 1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_kill9_during_publishing_loses_no_acked_message() {
    let started = Instant::now();
    let label = "b-kill9-during";
    let (outcome, got) = kill_during_publishing(label, QoS::AtLeastOnce).await;
    assert_acked_delivered(label, &outcome.acked, outcome.sent, &got);
    println!("{label}: took {:?}", started.elapsed());
}

/// (c) QoS 2 end to end: every PUBRECed message arrives exactly once, and nothing arrives twice [contract 1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_qos2_kill9_during_publishing_delivers_exactly_once() {
    let started = Instant::now();
    let label = "c-qos2-kill9";
    let (outcome, got) = kill_during_publishing(label, QoS::ExactlyOnce).await;
    let duplicates = assert_acked_delivered(label, &outcome.acked, outcome.sent, &got);
    let twice: Vec<u32> = tally(got.iter().map(|(n, _)| *n))
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        duplicates,
        0,
        "{label}: QoS 2 messages delivered more than once: {}",
        sample(&twice)
    );
    println!("{label}: took {:?}", started.elapsed());
}

/// Waits for the retained message on a fresh subscription to `topic`.
async fn receive_retained(port: u16, topic: &str) -> (u32, bool) {
    let (client, mut eventloop, _) = connect(options("d-fresh", port, true)).await;
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    loop {
        match within("the retained message", eventloop.poll()).await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let got = (number_of(&publish.payload), publish.retain);
                disconnect(client, eventloop).await;
                return got;
            }
            Ok(_) => {}
            Err(e) => panic!("retained subscriber lost its connection: {e}"),
        }
    }
}

/// (d) A retained message and a persistent subscription survive kill -9 [contract 1, 2].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_retained_message_and_subscription_survive_kill9() {
    let (_dir, mut broker) = start_broker();
    publish_one(broker.port(), "d/retained", 42, true).await;
    // The subscriber stays connected: the kill follows SUBACK, which promises a durable subscription.
    let (client, mut eventloop, _) = connect(options("d-sub", broker.port(), false)).await;
    subscribe(&client, &mut eventloop, "d/live", QoS::AtLeastOnce).await;
    broker.kill9();
    drop((client, eventloop));

    let broker = broker.restart(&durability());
    let (n, retain) = receive_retained(broker.port(), "d/retained").await;
    assert_eq!(n, 42, "retained payload after the restart");
    assert!(
        retain,
        "a retained message sent for a new subscription has RETAIN 1 [MQTT-3.3.1-8]"
    );
    for n in 0..10 {
        publish_one(broker.port(), "d/live", n, false).await;
    }
    publish_one(broker.port(), "d/live", SENTINEL, false).await;
    let got = drain_backlog(broker.port(), "d-sub", "d/live").await;
    let numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (0..10).collect::<Vec<u32>>(),
        "messages after the restart"
    );
}

/// The QoS 2 PUBLISH of scenario (e).
fn qos2_publish(topic: &str, id: u16, n: u32, dup: bool) -> RawPacket {
    RawPacket::Publish(RawPublish {
        dup,
        qos: RawQoS::ExactlyOnce,
        retain: false,
        topic: TopicName::new(topic.to_string()).unwrap(),
        packet_id: PacketId::new(id),
        payload: numbered(n).into(),
        properties: None,
    })
}

/// Runs an inbound QoS 2 exchange up to PUBREC, kills the broker and restarts it.
async fn interrupt_after_pubrec(label: &str, topic: &str) -> (tempfile::TempDir, BrokerProcess) {
    let (dir, mut broker) = start_broker();
    let sub = options(&format!("sub-{label}"), broker.port(), false);
    subscribe_offline(sub, topic, QoS::ExactlyOnce).await;
    let (mut publisher, _) = RawClient::connect(broker.port(), &format!("pub-{label}")).await;
    publisher.send(&qos2_publish(topic, 7, 1, false)).await;
    let answer = publisher.recv().await;
    assert_eq!(answer, RawPacket::PubRec(PacketId::new(7).unwrap().into()));
    broker.kill9();
    drop(publisher);
    let broker = broker.restart(&durability());
    (dir, broker)
}

/// Publishes the sentinel as QoS 2 on the raw publisher and completes its exchange.
async fn raw_sentinel(publisher: &mut RawClient, topic: &str) {
    let id = PacketId::new(8).unwrap();
    publisher
        .send(&qos2_publish(topic, 8, SENTINEL, false))
        .await;
    assert_eq!(publisher.recv().await, RawPacket::PubRec(id.into()));
    publisher.send(&RawPacket::PubRel(id.into())).await;
    assert_eq!(publisher.recv().await, RawPacket::PubComp(id.into()));
}

/// Reconnects the publisher of scenario (e), whose session must have survived the kill.
async fn reconnect_publisher(broker: &BrokerProcess, label: &str) -> RawClient {
    let (publisher, ack) = RawClient::connect(broker.port(), &format!("pub-{label}")).await;
    assert!(
        ack.session_present,
        "the publisher's session survived [MQTT-3.2.2-2]"
    );
    publisher
}

/// Ends scenario (e): the sentinel follows, and the subscriber must have got message 1 exactly once.
async fn assert_delivered_once(
    publisher: &mut RawClient,
    broker: &BrokerProcess,
    label: &str,
    topic: &str,
) {
    raw_sentinel(publisher, topic).await;
    let got = drain_backlog(broker.port(), &format!("sub-{label}"), topic).await;
    let numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![1], "{label}: deliveries of the QoS 2 message");
}

/// (e) An inbound QoS 2 exchange cut between PUBREC and PUBREL completes exactly once after kill -9,
/// when the client retransmits the PUBLISH with DUP 1 [MQTT-4.3.3-2, MQTT-4.4.0-1, contract 3].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_inbound_qos2_resent_publish_after_kill9_delivers_once() {
    let (label, topic) = ("e-resend", "crash/e-resend");
    let (_dir, broker) = interrupt_after_pubrec(label, topic).await;
    let mut publisher = reconnect_publisher(&broker, label).await;
    let id = PacketId::new(7).unwrap();
    publisher.send(&qos2_publish(topic, 7, 1, true)).await;
    assert_eq!(publisher.recv().await, RawPacket::PubRec(id.into()));
    publisher.send(&RawPacket::PubRel(id.into())).await;
    assert_eq!(publisher.recv().await, RawPacket::PubComp(id.into()));
    assert_delivered_once(&mut publisher, &broker, label, topic).await;
}

/// (e') The same exchange completed by PUBREL alone after the restart [contract 3].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_inbound_qos2_pubrel_after_kill9_completes_once() {
    let (label, topic) = ("e-pubrel", "crash/e-pubrel");
    let (_dir, broker) = interrupt_after_pubrec(label, topic).await;
    let mut publisher = reconnect_publisher(&broker, label).await;
    let id = PacketId::new(7).unwrap();
    publisher.send(&RawPacket::PubRel(id.into())).await;
    assert_eq!(publisher.recv().await, RawPacket::PubComp(id.into()));
    assert_delivered_once(&mut publisher, &broker, label, topic).await;
}

/// (g) Messages delivered to a persistent subscriber but not acknowledged come again with DUP 1
/// after kill -9 [MQTT-3.3.1-1, MQTT-4.4.0-1, contract 4].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_unacked_outbound_messages_are_resent_with_dup_after_kill9() {
    let (_dir, mut broker) = start_broker();
    let (topic, sub, count) = ("crash/g-inflight", "sub-g-inflight", 10u32);
    let mut sub_options = options(sub, broker.port(), false);
    sub_options.set_manual_acks(true);
    let (client, mut eventloop, _) = connect(sub_options).await;
    subscribe(&client, &mut eventloop, topic, QoS::AtLeastOnce).await;
    let outcome = publish_numbered(broker.port(), topic, QoS::AtLeastOnce, count, |_| false).await;
    assert_eq!(outcome.acked.len(), count as usize);
    let mut first: Vec<u32> = Vec::new();
    while first.len() < count as usize {
        match within("the first delivery", eventloop.poll()).await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                assert!(!publish.dup, "first delivery of a message has DUP 0");
                first.push(number_of(&publish.payload));
            }
            Ok(_) => {}
            Err(e) => panic!("subscriber lost its connection: {e}"),
        }
    }
    assert_eq!(first, (0..count).collect::<Vec<u32>>());
    broker.kill9();
    drop((client, eventloop));

    let broker = broker.restart(&durability());
    publish_one(broker.port(), topic, SENTINEL, false).await;
    let got = drain_backlog(broker.port(), sub, topic).await;
    let again: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        again,
        (0..count).collect::<Vec<u32>>(),
        "redelivered messages"
    );
    let without_dup: Vec<u32> = got
        .iter()
        .filter(|(_, dup)| !dup)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        without_dup.is_empty(),
        "re-sent without DUP 1 [MQTT-3.3.1-1]: {}",
        sample(&without_dup)
    );
}

/// Subscribes a raw persistent session to `filter` at QoS 2 and waits for its SUBACK.
async fn raw_subscribe(client: &mut RawClient, filter: &str) {
    let id = PacketId::new(1).unwrap();
    let subscribe = Subscribe {
        packet_id: id,
        filters: vec![(
            TopicFilter::new(filter.to_string()).unwrap(),
            RawQoS::ExactlyOnce.into(),
        )],
        properties: None,
    };
    client.send(&RawPacket::Subscribe(subscribe)).await;
    match client.recv().await {
        RawPacket::SubAck(ack) => assert_eq!(
            ack.return_codes,
            vec![SubscribeReturnCode::Success(RawQoS::ExactlyOnce)]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Reads `count` PUBLISHes on a raw subscriber, returning (message number, packet id) in order.
async fn raw_read_publishes(client: &mut RawClient, count: usize) -> Vec<(u32, PacketId)> {
    let mut got = Vec::new();
    while got.len() < count {
        match client.recv().await {
            RawPacket::Publish(publish) => {
                assert!(!publish.dup, "first delivery of a message has DUP 0");
                got.push((number_of(&publish.payload), publish.packet_id.unwrap()));
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

/// How the broker re-sent one message after the restart.
#[derive(Debug, PartialEq, Eq)]
enum Resent {
    /// PUBREL with this packet id.
    PubRel(PacketId),
    /// PUBLISH with this packet id and DUP flag.
    Publish(PacketId, bool),
}

/// Reads what a reconnected raw QoS 2 subscriber gets up to the sentinel, completing each exchange.
async fn raw_read_resent(client: &mut RawClient) -> Vec<(Option<u32>, Resent)> {
    let mut got = Vec::new();
    loop {
        match client.recv().await {
            RawPacket::PubRel(rel) => {
                got.push((None, Resent::PubRel(rel.packet_id)));
                client.send(&RawPacket::PubComp(rel.packet_id.into())).await;
            }
            RawPacket::Publish(publish) => {
                let n = number_of(&publish.payload);
                let id = publish.packet_id.unwrap();
                if n == SENTINEL {
                    assert_eq!(publish.qos, RawQoS::AtLeastOnce);
                    client.send(&RawPacket::PubAck(id.into())).await;
                    return got;
                }
                got.push((Some(n), Resent::Publish(id, publish.dup)));
                client.send(&RawPacket::PubRec(id.into())).await;
            }
            RawPacket::PubComp(_) | RawPacket::PubAck(_) => {}
            other => panic!("unexpected packet after the restart: {other:?}"),
        }
    }
}

/// (h) Outbound QoS 2 interrupted by kill -9 resumes with the original packet ids: PUBREL for the
/// messages the subscriber PUBRECed, PUBLISH with DUP 1 for the others [MQTT-4.4.0-1, MQTT-3.3.1-1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_outbound_qos2_resumes_with_original_packet_ids_after_kill9() {
    let (_dir, mut broker) = start_broker();
    let (topic, sub) = ("crash/h-outbound-qos2", "sub-h-outbound-qos2");
    let (mut subscriber, _) = RawClient::connect(broker.port(), sub).await;
    raw_subscribe(&mut subscriber, topic).await;
    // Five completed exchanges first, so the interrupted ones do not use the lowest packet ids.
    publish_numbered(broker.port(), topic, QoS::ExactlyOnce, 5, |_| false).await;
    for (_, id) in raw_read_publishes(&mut subscriber, 5).await {
        subscriber.send(&RawPacket::PubRec(id.into())).await;
        assert_eq!(subscriber.recv().await, RawPacket::PubRel(id.into()));
        subscriber.send(&RawPacket::PubComp(id.into())).await;
    }
    let outcome = publish_numbered(broker.port(), topic, QoS::ExactlyOnce, 15, |_| false).await;
    assert_eq!(outcome.acked.len(), 15);
    // The whole run fits in the broker's outbound window, so all of it is sent before any PUBREC.
    let first = raw_read_publishes(&mut subscriber, 15).await;
    let original: HashMap<u32, PacketId> = first.iter().copied().collect();
    let recorded: Vec<(u32, PacketId)> = first.iter().copied().take(5).collect();
    // The kill follows the last PUBLISH read and the PUBRECs at once: nothing waits for the broker's store.
    for (_, id) in &recorded {
        subscriber.send(&RawPacket::PubRec((*id).into())).await;
    }
    broker.kill9();
    drop(subscriber);

    let broker = broker.restart(&durability());
    publish_one(broker.port(), topic, SENTINEL, false).await;
    let (mut subscriber, ack) = RawClient::connect(broker.port(), sub).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let resent = raw_read_resent(&mut subscriber).await;
    println!("h-outbound-qos2: before the kill {first:?}; after the restart {resent:?}");
    for (n, id) in &recorded {
        let again = resent.iter().any(|(m, r)| {
            *r == Resent::PubRel(*id) || (*m == Some(*n) && *r == Resent::Publish(*id, true))
        });
        assert!(
            again,
            "message {n}: the subscriber PUBRECed packet id {id}, yet after the restart the broker neither \
             sent PUBREL {id} nor re-sent PUBLISH {id} with DUP 1, so a receiver delivers it twice [MQTT-4.4.0-1]"
        );
    }
    for (n, id) in first.iter().skip(5) {
        let publish = resent.iter().find(|(m, _)| *m == Some(*n));
        assert_eq!(
            publish.map(|(_, r)| r),
            Some(&Resent::Publish(*id, true)),
            "message {n}, first sent with packet id {id}, re-sent [MQTT-4.4.0-1, MQTT-3.3.1-1]"
        );
    }
    let wrong_id: Vec<u32> = resent
        .iter()
        .filter_map(|(m, r)| match (m, r) {
            (Some(n), Resent::Publish(id, _)) => original.get(n).filter(|o| *o != id).map(|_| *n),
            _ => None,
        })
        .collect();
    assert!(
        wrong_id.is_empty(),
        "re-sent under a new packet id: {}",
        sample(&wrong_id)
    );
}
