//! Crash tests of MQTT 5.0 sessions against the real binary: each test drives a `harbormq` process with real
//! MQTT 5.0 clients (rumqttc's v5 client, and a raw socket speaking the crate's codec at protocol level 5 for an
//! exchange a client library does not let a test cut short), kills it with SIGKILL, restarts it on the same data
//! directory and checks what of the v5 state survived: message properties, subscription identifiers, retained
//! properties, session and message expiry, delayed wills and inbound QoS 2. Every wait is bounded; the only
//! waits on time itself are in the tests about time passing (expiry, will delay).

// Only part of the shared helper is needed here: not its v3 clients nor the numbered-message tally.
#[allow(dead_code)]
mod process;
mod v5client;

use bytes::{Bytes, BytesMut};
use harbormq::admin::client::AdminClient;
use harbormq::codec::{
    decode_packet_at, encode_packet_at, Ack, ClientId, ConnAck, Connect, Packet as RawPacket,
    PacketId, Properties, ProtocolLevel, Publish as RawPublish, QoS as RawQoS, ReasonCode, Role,
};
use harbormq::topic::TopicName;
use process::{within, BrokerProcess, STEP};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck as V5ConnAck, ConnectReturnCode, Filter, LastWill, LastWillProperties,
    Packet as V5Packet, PubAckReason, PubRecReason, Publish as V5Publish, PublishProperties,
    SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Event, MqttOptions};
use rumqttc::Outgoing;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, Instant};
use v5client::V5;

/// Window in which something a test expects not to happen must stay absent.
const QUIET: Duration = Duration::from_millis(500);

/// The Session Expiry Interval of the sessions that must outlive the crash.
const HOUR: u32 = 3600;

/// The payload that ends a subscriber's backlog.
const SENTINEL: &str = "end";

/// The durability mode under test: `sync` unless `CRASH_DURABILITY` names another, e.g. `off` to see these
/// tests catch a broker that keeps nothing across a restart.
fn durability() -> String {
    std::env::var("CRASH_DURABILITY").unwrap_or_else(|_| "sync".to_string())
}

/// A temporary data dir with a broker started on it.
fn start_broker() -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &durability());
    (dir, broker)
}

/// A numbered payload, as text: the number in its first six characters.
fn numbered(n: u32) -> String {
    format!("{n:06}-harbormq-crash-v5")
}

/// The number of a `numbered` payload.
fn number_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.get(..6))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered payload: {payload:?}"))
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// User properties as rumqttc takes them.
fn user_properties(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// rumqttc's MQTT 5.0 client.
// ---------------------------------------------------------------------------------------------------------

/// rumqttc v5 options for the broker on `port`: 60 s keepalive, Clean Start `clean_start`, and a Session
/// Expiry Interval when `session_expiry` is given.
fn v5_options(
    port: u16,
    client_id: &str,
    clean_start: bool,
    session_expiry: Option<u32>,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_start(clean_start)
        .set_session_expiry_interval(session_expiry)
        .set_max_packet_size(Some(1 << 20));
    options
}

/// Options of a persistent session (Session Expiry Interval one hour) resuming what it has (Clean Start 0).
fn persistent(port: u16, client_id: &str) -> MqttOptions {
    v5_options(port, client_id, false, Some(HOUR))
}

/// The steps of these scenarios on rumqttc's MQTT 5.0 client (`v5client::V5`).
impl V5 {
    /// Connects and waits for a CONNACK that accepts.
    async fn connect(options: MqttOptions) -> (V5, V5ConnAck) {
        let (client, ack) = V5::connect_within(options, STEP).await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{}", client.id);
        (client, ack)
    }

    /// Subscribes to `filter` (No Local off, the default) with an optional Subscription Identifier, and checks
    /// that the SUBACK grants `qos`.
    async fn subscribe(&mut self, filter: &str, qos: QoS, id: Option<usize>) {
        let filter_options = Filter::new(filter, qos);
        assert!(!filter_options.nolocal);
        let properties = SubscribeProperties {
            id,
            user_properties: Vec::new(),
        };
        self.handle
            .subscribe_many_with_properties(vec![filter_options], properties)
            .await
            .unwrap();
        let codes = self
            .wait_incoming("SUBACK", |p| match p {
                V5Packet::SubAck(ack) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Publishes and waits for the end of the exchange (PUBACK for QoS 1, PUBCOMP for QoS 2), checking that
    /// the broker accepted the message (Success, or 0x10 No matching subscribers for a retained message).
    async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        properties: PublishProperties,
    ) {
        self.handle
            .publish_with_properties(topic, qos, retain, payload.into(), properties)
            .await
            .unwrap();
        self.wait_event("the end of a PUBLISH exchange", |e| match (qos, e) {
            (QoS::AtLeastOnce, Event::Incoming(V5Packet::PubAck(ack))) => {
                let accepted = [PubAckReason::Success, PubAckReason::NoMatchingSubscribers];
                assert!(
                    accepted.contains(&ack.reason),
                    "PUBACK for {topic}: {ack:?}"
                );
                Some(())
            }
            (QoS::ExactlyOnce, Event::Incoming(V5Packet::PubRec(rec))) => {
                let accepted = [PubRecReason::Success, PubRecReason::NoMatchingSubscribers];
                assert!(
                    accepted.contains(&rec.reason),
                    "PUBREC for {topic}: {rec:?}"
                );
                None
            }
            (QoS::ExactlyOnce, Event::Incoming(V5Packet::PubComp(_))) => Some(()),
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
            _ => None,
        })
        .await;
    }

    /// The next incoming PUBLISH.
    /// Incoming PUBLISHes until one on `topic` with the sentinel payload (which is not returned).
    async fn publishes_until_sentinel(&mut self, topic: &str) -> Vec<V5Publish> {
        let mut got = Vec::new();
        loop {
            let p = self.next_publish().await;
            if text(&p.topic) == topic && p.payload.as_ref() == SENTINEL.as_bytes() {
                return got;
            }
            got.push(p);
        }
    }
}

/// A persistent session (Session Expiry Interval one hour) subscribes to `filter` and goes offline.
async fn subscribe_offline(port: u16, client_id: &str, filter: &str, qos: QoS, id: Option<usize>) {
    let (mut client, _) = V5::connect(persistent(port, client_id)).await;
    client.subscribe(filter, qos, id).await;
    client.disconnect().await;
}

/// Reconnects a persistent session after the restart, which must find it (Session Present 1).
async fn resume(port: u16, client_id: &str) -> V5 {
    let (client, ack) = V5::connect(persistent(port, client_id)).await;
    assert!(
        ack.session_present,
        "{client_id}: CONNACK after the restart has Session Present 0; the session of Session Expiry \
         Interval {HOUR} did not survive kill -9 [MQTT-3.2.2-3, MQTT-3.1.2-23]"
    );
    client
}

/// Publishes one message with a new clean session and waits for the end of its exchange.
async fn publish_one(
    port: u16,
    topic: &str,
    qos: QoS,
    retain: bool,
    payload: &str,
    properties: PublishProperties,
) {
    let id = format!("one-{}", topic.replace('/', "-"));
    let (mut client, _) = V5::connect(v5_options(port, &id, true, None)).await;
    client
        .publish(topic, qos, retain, payload.to_owned(), properties)
        .await;
    client.disconnect().await;
}

/// A store barrier: a persistent session subscribes; its SUBACK follows the commit of the subscription, and
/// the store commits in the order the router submits, so what the router submitted before is committed too.
async fn store_barrier(port: u16, client_id: &str) {
    let (mut client, _) = V5::connect(persistent(port, client_id)).await;
    let filter = format!("crash5/barrier/{client_id}");
    client.subscribe(&filter, QoS::AtLeastOnce, None).await;
    client.kill().await;
}

// ---------------------------------------------------------------------------------------------------------
// A raw MQTT 5.0 connection over the crate's codec.
// ---------------------------------------------------------------------------------------------------------

/// A TCP connection driven packet by packet at protocol level 5; every wait bounded by `STEP`.
struct RawV5 {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawV5 {
    /// Connects with `client_id`, Clean Start `clean_start` and Session Expiry Interval one hour; the CONNACK
    /// must accept.
    async fn connect(port: u16, client_id: &str, clean_start: bool) -> (RawV5, ConnAck) {
        let stream = within("raw TCP connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = RawV5 {
            stream,
            buf: BytesMut::new(),
        };
        let connect = Connect {
            level: ProtocolLevel::V5,
            clean_session: clean_start,
            keep_alive_secs: 60,
            client_id: ClientId::new(client_id.to_owned()),
            will: None,
            username: None,
            password: None,
            properties: Some(Box::new(Properties {
                session_expiry_interval: Some(HOUR),
                ..Properties::default()
            })),
        };
        raw.send(&RawPacket::Connect(Box::new(connect))).await;
        match raw.recv().await {
            RawPacket::ConnAck(ack) => {
                assert_eq!(ack.code, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
                (raw, ack)
            }
            other => panic!("{client_id}: expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: &RawPacket) {
        let mut out = BytesMut::new();
        encode_packet_at(packet, ProtocolLevel::V5, &mut out).unwrap();
        within("a raw write", self.stream.write_all(&out))
            .await
            .unwrap();
    }

    /// The next packet; panics if the broker closes the connection or sends nothing within `STEP`.
    async fn recv(&mut self) -> RawPacket {
        loop {
            match decode_packet_at(&mut self.buf, Role::Client, ProtocolLevel::V5, 1 << 20) {
                Ok(Some(packet)) => return packet,
                Ok(None) => {}
                Err(e) => panic!("the broker sent an undecodable MQTT 5.0 packet: {e}"),
            }
            let read = within("a raw read", self.stream.read_buf(&mut self.buf)).await;
            assert!(
                read.unwrap() > 0,
                "the broker closed the raw connection while a packet was expected"
            );
        }
    }

    /// The next packet, which must be an acknowledgement `kind` ("PUBREC", "PUBCOMP") for `id`; returns it.
    async fn recv_ack(&mut self, kind: &str, id: u16) -> Ack {
        let packet = self.recv().await;
        let ack = match (kind, packet) {
            ("PUBREC", RawPacket::PubRec(ack)) | ("PUBCOMP", RawPacket::PubComp(ack)) => ack,
            (_, other) => panic!("expected {kind} {id}, got {other:?}"),
        };
        assert_eq!(ack.packet_id.get(), id, "{kind} for the wrong packet id");
        ack
    }
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

// =========================================================================================================
// 1. QoS 1 and QoS 2 messages with their properties
// =========================================================================================================

/// Messages per QoS in the publishing run of test 1.
const PER_QOS: u32 = 100;

/// The Subscription Identifier of the offline subscriber of test 1.
const SUBSCRIPTION_ID: usize = 42;

/// The message properties message `n` is published with: user properties with a repeated name, in an order
/// that must be kept, and the other properties a broker forwards unaltered (3.3.2.3).
fn properties_of(n: u32) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some(format!("application/x-crash; n={n}")),
        response_topic: Some(format!("crash5/reply/{n}")),
        correlation_data: Some(Bytes::from([&n.to_be_bytes()[..], &[0x00, 0xff]].concat())),
        user_properties: vec![
            ("n".to_owned(), n.to_string()),
            ("kind".to_owned(), "crash".to_owned()),
            ("n".to_owned(), format!("{n}-again")),
            ("ünï".to_owned(), "cödé".to_owned()),
        ],
        ..PublishProperties::default()
    }
}

/// Publishes `plan` (topic, QoS, number) pipelined from one v5 publisher, and kills the broker with SIGKILL
/// the moment the last of them is acknowledged (PUBACK for QoS 1, PUBREC for QoS 2): the QoS 2 exchanges
/// still in PUBREL are cut short. Returns the numbers acknowledged per topic, sorted.
async fn publish_then_kill(
    broker: &mut BrokerProcess,
    plan: &[(&str, QoS, u32)],
) -> BTreeMap<String, Vec<u32>> {
    let (mut client, _) = V5::connect(v5_options(broker.port(), "crash5-pub", true, None)).await;
    let handle = client.handle.clone();
    let requests: Vec<(String, QoS, u32)> = plan
        .iter()
        .map(|(topic, qos, n)| (topic.to_string(), *qos, *n))
        .collect();
    let feeder = tokio::spawn(async move {
        for (topic, qos, n) in requests {
            handle
                .publish_with_properties(topic, qos, false, numbered(n), properties_of(n))
                .await
                .unwrap();
        }
    });
    // rumqttc hands out packet ids in request order: the k-th outgoing PUBLISH is the k-th of the plan.
    let mut unsent: VecDeque<(&str, u32)> = plan.iter().map(|(t, _, n)| (*t, *n)).collect();
    let mut by_packet_id: HashMap<u16, (&str, u32)> = HashMap::new();
    let mut acked: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut count = 0;
    while count < plan.len() {
        let acked_id = client
            .wait_event("the next publisher event", |e| match e {
                Event::Outgoing(Outgoing::Publish(pkid)) => Some((false, *pkid)),
                Event::Incoming(V5Packet::PubAck(ack)) => {
                    assert_eq!(ack.reason, PubAckReason::Success, "{ack:?}");
                    Some((true, ack.pkid))
                }
                Event::Incoming(V5Packet::PubRec(rec)) => {
                    assert_eq!(rec.reason, PubRecReason::Success, "{rec:?}");
                    Some((true, rec.pkid))
                }
                _ => None,
            })
            .await;
        match acked_id {
            (false, pkid) => {
                let next = unsent.pop_front().expect("more PUBLISHes than requests");
                assert!(
                    by_packet_id.insert(pkid, next).is_none(),
                    "packet id {pkid} in use"
                );
            }
            (true, pkid) => {
                let (topic, n) = by_packet_id
                    .remove(&pkid)
                    .unwrap_or_else(|| panic!("acknowledgement of unknown packet id {pkid}"));
                acked.entry(topic.to_owned()).or_default().push(n);
                count += 1;
            }
        }
    }
    broker.kill9();
    within("the publishing task", feeder).await.unwrap();
    client.kill().await;
    for numbers in acked.values_mut() {
        numbers.sort_unstable();
    }
    acked
}

/// What the subscriber of test 1 got after the restart.
struct Backlog {
    /// The QoS 1 topic.
    q1: String,
    /// The QoS 2 topic.
    q2: String,
    /// Its deliveries per topic, in arrival order, up to the sentinels.
    queued: BTreeMap<String, Vec<V5Publish>>,
    /// A message published after it had drained its backlog, while it was connected.
    live: V5Publish,
}

/// The offline persistent v5 subscriber of test 1 (Subscription Identifier `SUBSCRIPTION_ID`, No Local off)
/// subscribes to both topics at QoS 2; `per_qos` QoS 1 and as many QoS 2 messages are published and all
/// acknowledged, the broker is killed with SIGKILL on the last acknowledgement and restarted, and the
/// subscriber comes back, drains its backlog and gets one more message live.
async fn offline_v5_backlog_across_kill9(label: &str, per_qos: u32) -> Backlog {
    let (_dir, mut broker) = start_broker();
    let (q1, q2) = (format!("crash5/{label}/q1"), format!("crash5/{label}/q2"));
    let sub = format!("crash5-{label}-sub");
    let filter = format!("crash5/{label}/+");
    subscribe_offline(
        broker.port(),
        &sub,
        &filter,
        QoS::ExactlyOnce,
        Some(SUBSCRIPTION_ID),
    )
    .await;
    // QoS 1 and QoS 2 interleaved, on a topic of their own each: ordering holds per topic and QoS (4.6).
    let plan: Vec<(&str, QoS, u32)> = (0..per_qos)
        .flat_map(|n| {
            [
                (q1.as_str(), QoS::AtLeastOnce, n),
                (q2.as_str(), QoS::ExactlyOnce, n),
            ]
        })
        .collect();
    let acked = publish_then_kill(&mut broker, &plan).await;
    let all: Vec<u32> = (0..per_qos).collect();
    assert_eq!(acked.get(&q1), Some(&all), "PUBACKs");
    assert_eq!(acked.get(&q2), Some(&all), "PUBRECs");

    let broker = broker.restart(&durability());
    let port = broker.port();
    for (topic, qos) in [(&q1, QoS::AtLeastOnce), (&q2, QoS::ExactlyOnce)] {
        let none = PublishProperties::default();
        publish_one(port, topic, qos, false, SENTINEL, none).await;
    }
    let mut subscriber = resume(port, &sub).await;
    let mut got: BTreeMap<String, Vec<V5Publish>> = BTreeMap::new();
    let mut sentinels = 0;
    while sentinels < 2 {
        let p = subscriber.next_publish().await;
        if p.payload.as_ref() == SENTINEL.as_bytes() {
            sentinels += 1;
            continue;
        }
        got.entry(text(&p.topic)).or_default().push(p);
    }
    let none = PublishProperties::default();
    publish_one(port, &q1, QoS::AtLeastOnce, false, "live", none).await;
    let live = subscriber.next_publish().await;
    assert_eq!(live.payload.as_ref(), b"live");
    subscriber.disconnect().await;
    Backlog {
        q1,
        q2,
        queued: got,
        live,
    }
}

/// (1) Every QoS 1 and QoS 2 message acknowledged to a v5 publisher (PUBACK, PUBREC) reaches the offline
/// persistent v5 subscriber after kill -9, in order, QoS 2 exactly once, each with the message properties it
/// was published with: user properties in order with a repeated name, content type, response topic,
/// correlation data, payload format indicator [MQTT-3.3.2-4, -15, -16, -17, -18, -20]. (Its Subscription
/// Identifier is the next test's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_v5_messages_survive_kill9_with_their_properties() {
    let Backlog {
        q1,
        q2,
        queued: mut got,
        ..
    } = offline_v5_backlog_across_kill9("props", PER_QOS).await;
    let all: Vec<u32> = (0..PER_QOS).collect();
    for (topic, qos) in [(&q1, QoS::AtLeastOnce), (&q2, QoS::ExactlyOnce)] {
        let delivered = got.remove(topic.as_str()).unwrap_or_default();
        let numbers: Vec<u32> = delivered.iter().map(|p| number_of(&p.payload)).collect();
        assert_eq!(
            numbers, all,
            "{topic}: the acknowledged messages delivered after kill -9, in order, each once"
        );
        for p in &delivered {
            let n = number_of(&p.payload);
            assert_eq!(p.qos, qos, "{topic}: delivery QoS of message {n}");
            assert!(!p.retain, "{topic}: RETAIN of message {n}");
            let message_properties = p.properties.clone().map(|props| PublishProperties {
                subscription_identifiers: Vec::new(),
                ..props
            });
            assert_eq!(
                message_properties,
                Some(properties_of(n)),
                "message {n} on {topic} after kill -9: its properties changed (user properties in order \
                 [MQTT-3.3.2-17, MQTT-3.3.2-18], the others unaltered [MQTT-3.3.2-4, -15, -16, -20])"
            );
        }
    }
    assert!(got.is_empty(), "deliveries on other topics: {got:?}");
}

/// (1') The Subscription Identifier of a persistent v5 subscription survives kill -9: a message published to
/// the resumed subscription after the restart carries it, and so do the messages queued for the offline
/// session before the kill, delivered after it [MQTT-3.3.4-3] (3.8.2.1.2: it is stored with the subscription).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_v5_messages_carry_their_subscription_identifier_after_kill9() {
    let Backlog {
        q1,
        q2,
        queued: got,
        live,
    } = offline_v5_backlog_across_kill9("subid", 3).await;
    let live_ids = live.properties.map(|props| props.subscription_identifiers);
    assert_eq!(
        live_ids,
        Some(vec![SUBSCRIPTION_ID]),
        "a message published after the restart to the resumed subscription: the subscription lost its \
         Subscription Identifier across kill -9 (3.8.2.1.2: it is stored with the subscription) [MQTT-3.3.4-3]"
    );
    let ids: Vec<(String, u32, Vec<usize>)> = got
        .values()
        .flatten()
        .map(|p| {
            let ids = p
                .properties
                .as_ref()
                .map(|props| props.subscription_identifiers.clone())
                .unwrap_or_default();
            (text(&p.topic), number_of(&p.payload), ids)
        })
        .collect();
    let expected: Vec<(String, u32, Vec<usize>)> = [&q1, &q2]
        .iter()
        .flat_map(|topic| (0..3).map(move |n| (topic.to_string(), n, vec![SUBSCRIPTION_ID])))
        .collect();
    assert_eq!(
        ids, expected,
        "(topic, message, Subscription Identifiers) of the deliveries after kill -9: each must carry the \
         identifier {SUBSCRIPTION_ID} of the subscription it matched [MQTT-3.3.4-3]"
    );
}

// =========================================================================================================
// 2. A retained message with properties
// =========================================================================================================

/// The properties of the retained message of test 2.
fn retained_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".to_owned()),
        response_topic: Some("crash5/retained/reply".to_owned()),
        correlation_data: Some(Bytes::from_static(&[7, 0, 255])),
        user_properties: user_properties(&[("a", "1"), ("b", "2"), ("a", "3")]),
        ..PublishProperties::default()
    }
}

/// A v5 publisher sets a retained QoS 1 message with `retained_properties` and gets its PUBACK; the broker
/// is killed with SIGKILL and restarted; a new v5 subscriber subscribes (with Subscription Identifier
/// `subscription_id`, if any) and gets the retained message, which this returns after checking that nothing
/// else follows.
async fn retained_after_kill9(label: &str, subscription_id: Option<usize>) -> V5Publish {
    let (_dir, mut broker) = start_broker();
    let topic = format!("crash5/{label}/t");
    let (mut publisher, _) = V5::connect(v5_options(
        broker.port(),
        &format!("{label}-pub"),
        true,
        None,
    ))
    .await;
    publisher
        .publish(
            &topic,
            QoS::AtLeastOnce,
            true,
            "kept",
            retained_properties(),
        )
        .await;
    broker.kill9();
    publisher.kill().await;

    let broker = broker.restart(&durability());
    let options = v5_options(broker.port(), &format!("{label}-sub"), true, None);
    let (mut subscriber, _) = V5::connect(options).await;
    let filter = format!("crash5/{label}/#");
    subscriber
        .subscribe(&filter, QoS::AtLeastOnce, subscription_id)
        .await;
    let p = subscriber.next_publish().await;
    assert_eq!(text(&p.topic), topic);
    assert_eq!(
        p.payload.as_ref(),
        b"kept",
        "the retained payload after kill -9"
    );
    assert!(
        p.retain,
        "a retained message sent for a new subscription has RETAIN 1 (3.3.1.3)"
    );
    subscriber
        .expect_no_publish_until(Instant::now() + QUIET)
        .await;
    subscriber.disconnect().await;
    p
}

/// (2) A retained message acknowledged to a v5 publisher (PUBACK) survives kill -9 with its properties: a new
/// v5 subscriber after the restart gets it with RETAIN 1 and the user properties in order, content type,
/// response topic, correlation data and payload format indicator it was published with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_v5_message_keeps_its_properties_across_kill9() {
    let p = retained_after_kill9("retained", None).await;
    assert_eq!(
        p.properties,
        Some(retained_properties()),
        "the retained message after kill -9 carries the properties it was published with [MQTT-3.3.2-17, \
         MQTT-3.3.2-18, MQTT-3.3.2-20]"
    );
}

/// (2') The retained message a new v5 subscription gets after kill -9 carries that subscription's Subscription
/// Identifier: it is published to the client as the result of the subscription [MQTT-3.3.4-3].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_v5_message_carries_the_new_subscriptions_identifier_after_kill9() {
    let p = retained_after_kill9("retained-subid", Some(9)).await;
    let ids = p
        .properties
        .map(|props| props.subscription_identifiers)
        .unwrap_or_default();
    assert_eq!(
        ids,
        [9],
        "Subscription Identifiers of the retained message sent for a SUBSCRIBE with identifier 9 [MQTT-3.3.4-3]"
    );
}

// =========================================================================================================
// 3. Session expiry across a restart
// =========================================================================================================

/// The admin token of the brokers started with their admin API.
const ADMIN_TOKEN: &str = "crash-v5-token";

/// Starts a broker on `data_dir` with its admin API on a free port; returns it with an admin client.
fn start_with_admin(data_dir: &Path) -> (BrokerProcess, AdminClient) {
    let mut broker = BrokerProcess::start_with(
        data_dir,
        "127.0.0.1:0",
        &["--durability", &durability(), "--admin-token", ADMIN_TOKEN],
    );
    let admin = broker.wait_for_addr("admin HTTP API on ");
    let client = AdminClient::new(&format!("http://{admin}"), Some(ADMIN_TOKEN.to_owned()))
        .expect("admin URL");
    (broker, client)
}

/// Whether the broker holds a stored session for `client_id` (admin API), and its queued message count.
/// Looking does not touch the session, unlike a reconnect, which would resume it.
async fn stored_session(admin: &AdminClient, client_id: &str) -> Option<u64> {
    let admin = admin.clone();
    let path = format!("/api/sessions/{client_id}");
    let response = within(
        "an admin API request",
        tokio::task::spawn_blocking(move || admin.request("GET", &path)),
    )
    .await
    .unwrap()
    .expect("admin API request");
    match response.status {
        200 => {
            let detail: serde_json::Value =
                serde_json::from_slice(&response.body).expect("JSON session detail");
            Some(detail["queued_messages"].as_u64().expect("queued_messages"))
        }
        404 => None,
        status => panic!("admin API answered {status}: {}", response.text()),
    }
}

/// (3) Session expiry across kill -9: a session with Session Expiry Interval 3600 is resumed after the restart
/// (Session Present 1) with its queue; one with 3 s that went offline before the kill is kept until its
/// interval has passed, then removed with its queue [MQTT-3.1.2-23], so it comes back to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_is_kept_across_kill9() {
    const SHORT: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, _) = start_with_admin(dir.path());
    let port = broker.port();
    let (topic, long, short) = ("crash5/expiry/t", "crash5-exp-long", "crash5-exp-short");
    subscribe_offline(port, long, topic, QoS::AtLeastOnce, None).await;
    let (mut publisher, _) = V5::connect(v5_options(port, "crash5-exp-pub", true, None)).await;
    let (mut client, _) = V5::connect(v5_options(port, short, false, Some(SHORT))).await;
    client.subscribe(topic, QoS::AtLeastOnce, None).await;
    // Taken before the DISCONNECT leaves: the broker's offline time starts after this.
    let short_offline = Instant::now();
    client.disconnect().await;
    for n in 0..3 {
        let none = PublishProperties::default();
        publisher
            .publish(topic, QoS::AtLeastOnce, false, numbered(n), none)
            .await;
    }
    broker.kill9();
    publisher.kill().await;
    assert!(
        short_offline.elapsed() < Duration::from_secs(SHORT.into()),
        "the kill came {:?} after {short} went offline, past its expiry: this run cannot check a restart \
         in the middle of the interval",
        short_offline.elapsed()
    );

    let (broker, admin) = start_with_admin(dir.path());
    let port = broker.port();
    let short_options = v5_options(port, short, false, Some(SHORT));
    // The broker checks expiry every second; give it the interval, that second and slack, but no more.
    let deadline = short_offline + Duration::from_secs(u64::from(SHORT) + 10);
    let gone_at = loop {
        if stored_session(&admin, short).await.is_none() {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{short} (Session Expiry Interval {SHORT} s) still stored {:?} after it went offline; log:\n{}",
            short_offline.elapsed(),
            broker.log_text()
        );
        sleep(Duration::from_millis(100)).await;
    };
    let kept_for = gone_at - short_offline;
    assert!(
        kept_for + Duration::from_millis(250) >= Duration::from_secs(SHORT.into()),
        "{short} was removed {kept_for:?} after it went offline, before its Session Expiry Interval of \
         {SHORT} s had passed [MQTT-3.1.2-23]"
    );

    let (mut returning, ack) = V5::connect(short_options).await;
    assert!(
        !ack.session_present,
        "{short} came back {:?} after going offline with Session Expiry Interval {SHORT} s and found its \
         session (Session Present 1)",
        short_offline.elapsed()
    );
    returning
        .expect_no_publish_until(Instant::now() + QUIET)
        .await;
    returning.disconnect().await;

    let mut kept = resume(port, long).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(number_of(&kept.next_publish().await.payload));
    }
    assert_eq!(got, [0, 1, 2], "{long}: its queue after kill -9");
    kept.expect_no_publish_until(Instant::now() + QUIET).await;
}

// =========================================================================================================
// 4. Message expiry in an offline queue
// =========================================================================================================

/// (4) Message expiry across kill -9: of two QoS 1 messages queued for an offline persistent v5 session, the
/// one with Message Expiry Interval 2 is not delivered when the client returns more than 2 s later (the time
/// the broker was down counts) [MQTT-3.3.2-5]; the one with 3600 is, with the interval left [MQTT-3.3.2-6].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_message_expiry_counts_across_kill9() {
    let (_dir, mut broker) = start_broker();
    let (topic, sub) = ("crash5/msgexp/t", "crash5-msgexp-sub");
    subscribe_offline(broker.port(), sub, topic, QoS::AtLeastOnce, None).await;
    let (mut publisher, _) =
        V5::connect(v5_options(broker.port(), "crash5-msgexp-pub", true, None)).await;
    let published_at = Instant::now();
    for (payload, expiry) in [("short", 2), ("long", HOUR)] {
        let properties = PublishProperties {
            message_expiry_interval: Some(expiry),
            ..PublishProperties::default()
        };
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload, properties)
            .await;
    }
    broker.kill9();
    publisher.kill().await;
    // Time passing is what this test is about: the short message expires while the broker is down.
    sleep_until(published_at + Duration::from_millis(2500)).await;

    let broker = broker.restart(&durability());
    let port = broker.port();
    publish_one(
        port,
        topic,
        QoS::AtLeastOnce,
        false,
        SENTINEL,
        PublishProperties::default(),
    )
    .await;
    let mut subscriber = resume(port, sub).await;
    let got = subscriber.publishes_until_sentinel(topic).await;
    let waited = published_at.elapsed();
    subscriber.disconnect().await;
    let payloads: Vec<String> = got.iter().map(|p| text(&p.payload)).collect();
    assert_eq!(
        payloads,
        ["long"],
        "messages delivered {waited:?} after publishing; the one with Message Expiry Interval 2 had \
         expired [MQTT-3.3.2-5]"
    );
    let left = got[0]
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    // At least 2.5 s passed (3597.5 s left, 3598 rounded up); at most `waited` (rounded up) and a second.
    let lowest = HOUR - u32::try_from(waited.as_secs()).unwrap() - 2;
    assert!(
        left.is_some_and(|s| (lowest..=HOUR - 2).contains(&s)),
        "the message of Message Expiry Interval {HOUR} arrived {waited:?} after publishing with {left:?} \
         left; it must carry the interval minus the time it waited, the downtime included [MQTT-3.3.2-6]"
    );
}

// =========================================================================================================
// 5. Delayed wills
// =========================================================================================================

/// The topic of the wills of test 5.
const WILL_TOPIC: &str = "crash5/will/gone";

/// The will properties of test 5 beyond the delay: what the will must be published with.
fn will_message_properties() -> PublishProperties {
    PublishProperties {
        content_type: Some("text/plain".to_owned()),
        user_properties: user_properties(&[
            ("why", "dropped"),
            ("who", "crash5"),
            ("why", "again"),
        ]),
        ..PublishProperties::default()
    }
}

/// Connects a persistent v5 client (Session Expiry Interval one hour) with a QoS 1 will of Will Delay
/// Interval `delay`, drops its TCP connection without DISCONNECT once connected, waits until the broker has
/// noticed and stored the delayed will, and kills the broker. Returns when the connection was dropped.
async fn drop_with_delayed_will(
    broker: &mut BrokerProcess,
    client_id: &str,
    delay: u32,
) -> Instant {
    let wanted = will_message_properties();
    let will = LastWill::new(
        WILL_TOPIC,
        "gone",
        QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: wanted.content_type,
            response_topic: None,
            correlation_data: None,
            user_properties: wanted.user_properties,
        }),
    );
    let mut options = persistent(broker.port(), client_id);
    options.set_last_will(will);
    let (client, _) = V5::connect(options).await;
    let dropped_at = Instant::now();
    client.kill().await;
    let seen = format!("client {client_id} from ");
    broker.wait_for_line(&format!("the end of {client_id}'s connection"), 0, |line| {
        line.contains(&seen) && line.contains(" disconnected")
    });
    store_barrier(broker.port(), &format!("{client_id}-barrier")).await;
    broker.kill9();
    assert!(
        dropped_at.elapsed() < Duration::from_secs(delay.into()),
        "the kill came {:?} after the connection dropped, past the Will Delay Interval of {delay} s: this \
         run cannot check a restart within the delay",
        dropped_at.elapsed()
    );
    dropped_at
}

/// (5) A delayed will survives kill -9: a v5 client with Session Expiry Interval 3600 and a will of Will Delay
/// Interval 4 s loses its connection, the broker is killed within the delay and restarted; the persistent
/// watcher gets the will once, not before the delay has passed, with its user properties and content type
/// (3.1.3.2.2, 3.1.3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_is_published_after_kill9_once_the_delay_passes() {
    const DELAY: u32 = 4;
    let (_dir, mut broker) = start_broker();
    let watcher = "crash5-will-watcher";
    subscribe_offline(
        broker.port(),
        watcher,
        "crash5/will/#",
        QoS::AtLeastOnce,
        None,
    )
    .await;
    let dropped_at = drop_with_delayed_will(&mut broker, "crash5-will-a", DELAY).await;

    let broker = broker.restart(&durability());
    let mut watching = resume(broker.port(), watcher).await;
    let will = watching.next_publish().await;
    let arrived = dropped_at.elapsed();
    assert_eq!(text(&will.topic), WILL_TOPIC);
    assert_eq!(will.payload.as_ref(), b"gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(
        arrived + Duration::from_millis(250) >= Duration::from_secs(DELAY.into()),
        "the will arrived {arrived:?} after the connection dropped, before its Will Delay Interval of \
         {DELAY} s (3.1.3.2.2)"
    );
    assert_eq!(
        will.properties,
        Some(will_message_properties()),
        "the will published after kill -9 carries its will properties (3.1.3.2)"
    );
    watching
        .expect_no_publish_until(Instant::now() + Duration::from_secs(2))
        .await;
}

/// (5') A delayed will is not published when its client comes back within the delay, a kill -9 in between:
/// the client resumes its session after the restart (Session Present 1), and nothing arrives on the will
/// topic until well past the delay [MQTT-3.1.3-9].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_is_not_published_when_the_client_returns_after_kill9() {
    const DELAY: u32 = 8;
    let (_dir, mut broker) = start_broker();
    let (watcher, client_id) = ("crash5-will-watcher-b", "crash5-will-b");
    subscribe_offline(
        broker.port(),
        watcher,
        "crash5/will/#",
        QoS::AtLeastOnce,
        None,
    )
    .await;
    let dropped_at = drop_with_delayed_will(&mut broker, client_id, DELAY).await;

    let broker = broker.restart(&durability());
    let port = broker.port();
    let back = resume(port, client_id).await;
    let delay = Duration::from_secs(DELAY.into());
    assert!(
        dropped_at.elapsed() < delay,
        "{client_id} came back {:?} after its connection dropped, past the Will Delay Interval of {DELAY} s: \
         this run cannot check a return within the delay",
        dropped_at.elapsed()
    );
    let mut watching = resume(port, watcher).await;
    // Beyond the delay, the broker's one-second check and slack.
    watching
        .expect_no_publish_until(Instant::now().max(dropped_at + delay) + Duration::from_secs(3))
        .await;
    publish_one(
        port,
        WILL_TOPIC,
        QoS::AtLeastOnce,
        false,
        "marker",
        PublishProperties::default(),
    )
    .await;
    let first = watching.next_publish().await;
    assert_eq!(
        first.payload.as_ref(),
        b"marker",
        "the watcher's subscription works, and nothing came before the marker"
    );
    back.disconnect().await;
    watching.disconnect().await;
}

// =========================================================================================================
// 6. Inbound QoS 2 interrupted after PUBREC
// =========================================================================================================

/// A QoS 2 PUBLISH of message `n` with a user property, as a raw v5 client sends it.
fn raw_qos2_publish(topic: &str, id: u16, n: u32, dup: bool) -> RawPacket {
    RawPacket::Publish(RawPublish {
        dup,
        qos: RawQoS::ExactlyOnce,
        retain: false,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        packet_id: Some(pid(id)),
        payload: Bytes::from(numbered(n)),
        properties: harbormq::codec::PublishProperties::from_properties(&Properties {
            user_properties: harbormq::codec::UserProperties::from_pairs([("n", n.to_string())])
                .unwrap(),
            ..Properties::default()
        })
        .unwrap()
        .boxed(),
    })
}

/// A persistent v5 subscriber goes offline on `topic` at QoS 2; a raw v5 publisher with Session Expiry Interval
/// 3600 sends message 1 at QoS 2 and gets PUBREC; the broker is killed with SIGKILL and restarted. Returns the
/// broker and the publisher reconnected with Clean Start 0, whose session must have survived.
async fn interrupt_inbound_qos2_after_pubrec(
    label: &str,
    topic: &str,
) -> (tempfile::TempDir, BrokerProcess, RawV5) {
    let (dir, mut broker) = start_broker();
    let (sub, publisher_id) = (format!("{label}-sub"), format!("{label}-pub"));
    subscribe_offline(broker.port(), &sub, topic, QoS::ExactlyOnce, None).await;
    let (mut publisher, _) = RawV5::connect(broker.port(), &publisher_id, true).await;
    publisher.send(&raw_qos2_publish(topic, 7, 1, false)).await;
    let rec = publisher.recv_ack("PUBREC", 7).await;
    assert_eq!(rec.reason, ReasonCode::SUCCESS, "PUBREC {rec:?}");
    broker.kill9();
    drop(publisher);

    let broker = broker.restart(&durability());
    let (publisher, ack) = RawV5::connect(broker.port(), &publisher_id, false).await;
    assert!(
        ack.session_present,
        "{publisher_id}: CONNACK after the restart has Session Present 0; its session of Session Expiry \
         Interval {HOUR}, with the QoS 2 packet id awaiting PUBREL, did not survive kill -9 [MQTT-3.2.2-3]"
    );
    (dir, broker, publisher)
}

/// Sends PUBREL for `id` and expects PUBCOMP with reason Success (not 0x92 Packet Identifier not found).
async fn release(publisher: &mut RawV5, id: u16) {
    publisher.send(&RawPacket::PubRel(Ack::from(pid(id)))).await;
    let comp = publisher.recv_ack("PUBCOMP", id).await;
    assert_eq!(
        comp.reason,
        ReasonCode::SUCCESS,
        "PUBCOMP {id} after kill -9: the broker forgot the packet id it had answered with PUBREC \
         [MQTT-4.3.3-10] ({comp:?})"
    );
}

/// Ends test 6: a sentinel follows at QoS 2, and the subscriber must get message 1 exactly once, with its
/// user property.
async fn assert_inbound_delivered_once(
    mut publisher: RawV5,
    broker: &BrokerProcess,
    label: &str,
    topic: &str,
) {
    let sentinel = RawPacket::Publish(RawPublish {
        dup: false,
        qos: RawQoS::ExactlyOnce,
        retain: false,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        packet_id: Some(pid(8)),
        payload: Bytes::from_static(SENTINEL.as_bytes()),
        properties: None,
    });
    publisher.send(&sentinel).await;
    publisher.recv_ack("PUBREC", 8).await;
    release(&mut publisher, 8).await;
    drop(publisher);
    let mut subscriber = resume(broker.port(), &format!("{label}-sub")).await;
    let got = subscriber.publishes_until_sentinel(topic).await;
    subscriber.disconnect().await;
    let numbers: Vec<u32> = got.iter().map(|p| number_of(&p.payload)).collect();
    assert_eq!(
        numbers,
        [1],
        "{label}: deliveries of the QoS 2 message PUBRECed before kill -9, exactly once (4.3.3)"
    );
    let properties = got[0].properties.clone().unwrap_or_default();
    assert_eq!(
        properties.user_properties,
        user_properties(&[("n", "1")]),
        "{label}: the user property of the QoS 2 message [MQTT-3.3.2-17]"
    );
}

/// (6) An inbound QoS 2 exchange of a v5 publisher cut between PUBREC and PUBREL by kill -9: after the restart
/// its PUBREL gets PUBCOMP (Success) and the message is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_inbound_qos2_pubrel_after_kill9_completes_once() {
    let (label, topic) = ("crash5-in-pubrel", "crash5/in-qos2/pubrel");
    let (_dir, broker, mut publisher) = interrupt_inbound_qos2_after_pubrec(label, topic).await;
    release(&mut publisher, 7).await;
    assert_inbound_delivered_once(publisher, &broker, label, topic).await;
}

/// (6') The same exchange when the publisher, not knowing whether PUBREC arrived, sends the PUBLISH again with
/// DUP 1 after the restart: PUBREC, PUBREL, PUBCOMP, and still one delivery [MQTT-4.3.3-9, MQTT-4.3.3-10].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_inbound_qos2_resent_publish_after_kill9_delivers_once() {
    let (label, topic) = ("crash5-in-resend", "crash5/in-qos2/resend");
    let (_dir, broker, mut publisher) = interrupt_inbound_qos2_after_pubrec(label, topic).await;
    publisher.send(&raw_qos2_publish(topic, 7, 1, true)).await;
    let rec = publisher.recv_ack("PUBREC", 7).await;
    assert_eq!(rec.reason, ReasonCode::SUCCESS, "PUBREC {rec:?}");
    release(&mut publisher, 7).await;
    assert_inbound_delivered_once(publisher, &broker, label, topic).await;
}
