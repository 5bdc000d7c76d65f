//! MQTT 5.0 against the real broker with real third-party MQTT 5.0 clients: rumqttc's v5 client, paho-mqtt 2.x
//! in Python (driven by tests/v5/paho_client.py), mosquitto_sub/mosquitto_pub with `-V mqttv5`, and a raw
//! socket speaking the crate's codec at protocol level 5 for what a well-behaved client never sends and for
//! byte-level checks. Each test cites the part of the MQTT 5.0 specification (OASIS Standard, March 2019) it
//! checks. Every broker listens on 127.0.0.1:0 with a data directory of its own, and every wait is bounded.
//! A missing client program fails the test under HARBORMQ_CI (`.ci/run` installs them) and skips it elsewhere.

mod common;
mod needs;
// Not every test file drives a plan that waits for the test (`release`).
#[allow(dead_code)]
mod scripted;
mod v5client;

use bytes::{Bytes, BytesMut};
use common::{pid, topic, topic_filter, TestBroker, QUIET, WAIT};
use harbormq::codec::{
    decode_packet_at, encode_packet_at, props, Ack, ClientId, ConnAck, Connect, LastWill, Packet,
    Properties, ProtocolLevel, Publish, QoS, ReasonCode, ReasonOnly, Role, Subscribe,
    SubscriptionOptions,
};
use harbormq::topic::TopicName;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck as V5ConnAck, ConnectReturnCode, Filter, Packet as V5Packet, PubAckReason,
    Publish as V5Publish, PublishProperties, RetainForwardRule, SubscribeProperties,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::{ConnectionError, Event, MqttOptions};
use rumqttc::Outgoing;
use scripted::{of_kind, Scripted};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::{sleep, timeout, timeout_at, Instant};
use v5client::V5;

// ---------------------------------------------------------------------------------------------------------
// A raw MQTT 5.0 connection over the crate's codec.
// ---------------------------------------------------------------------------------------------------------

/// A TCP connection driven packet by packet at protocol level 5.
struct RawV5 {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawV5 {
    async fn open(addr: SocketAddr) -> RawV5 {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawV5 {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Sends CONNECT and returns the CONNACK.
    async fn connect(&mut self, connect: Connect) -> ConnAck {
        self.send(&Packet::Connect(Box::new(connect))).await;
        match self.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: &Packet) {
        self.send_together(std::slice::from_ref(packet)).await;
    }

    /// Sends several packets in one write, so that the broker reads them together.
    async fn send_together(&mut self, packets: &[Packet]) {
        let mut out = BytesMut::new();
        for packet in packets {
            encode_packet_at(packet, ProtocolLevel::V5, &mut out).unwrap();
        }
        self.send_bytes(&out).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).await.unwrap();
    }

    /// Sends bytes; the write may fail when the broker has already closed the connection.
    async fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        timeout(WAIT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write timed out")
    }

    /// The next packet, `Ok(None)` if the broker closed the connection, `Err(())` if nothing came in `window`.
    async fn recv_within(&mut self, window: Duration) -> Result<Option<Packet>, ()> {
        let deadline = Instant::now() + window;
        loop {
            match decode_packet_at(&mut self.buf, Role::Client, ProtocolLevel::V5, usize::MAX) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(e) => panic!("the broker sent an undecodable MQTT 5.0 packet: {e}"),
            }
            let mut chunk = [0u8; 8192];
            match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(()),
                // A reset counts as closed: the broker may close with unread bytes in its buffer.
                Ok(Ok(0)) | Ok(Err(_)) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed in the middle of a packet"
                    );
                    return Ok(None);
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("connection closed while a packet was expected"),
            Err(()) => panic!("no packet within {WAIT:?}"),
        }
    }

    async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives and the connection stays open for `window`.
    async fn expect_silence(&mut self, window: Duration) {
        match self.recv_within(window).await {
            Err(()) => {}
            Ok(Some(packet)) => panic!("unexpected packet {packet:?}"),
            Ok(None) => panic!("connection closed during a quiet window"),
        }
    }

    /// Waits until the broker closes the connection; returns what it sent before.
    async fn wait_closed(&mut self) -> Vec<Packet> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Ok(Some(packet)) => seen.push(packet),
                Ok(None) => return seen,
                Err(()) => panic!("connection still open after {WAIT:?} (received {seen:?})"),
            }
        }
    }

    /// Waits for the broker to close the connection and asserts that the last thing it sent was a DISCONNECT
    /// with `reason` (4.13: the server may send a DISCONNECT with a reason code before it closes).
    async fn expect_disconnect(&mut self, reason: ReasonCode) {
        let seen = self.wait_closed().await;
        match seen.last() {
            Some(Packet::Disconnect(d)) => assert_eq!(
                d.reason, reason,
                "DISCONNECT reason {:?}, expected {reason:?} (received {seen:?})",
                d.reason
            ),
            _ => panic!("closed without DISCONNECT {reason:?}; received {seen:?}"),
        }
    }
}

/// An MQTT 5.0 CONNECT.
fn v5_connect(
    client_id: &str,
    clean_start: bool,
    keep_alive_secs: u16,
    properties: Properties,
) -> Connect {
    Connect {
        level: ProtocolLevel::V5,
        clean_session: clean_start,
        keep_alive_secs,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: Some(Box::new(properties)),
    }
}

/// A raw MQTT 5.0 connection with Clean Start, a 30 s keepalive and these CONNECT properties.
async fn raw_v5(broker: &TestBroker, client_id: &str, properties: Properties) -> (RawV5, ConnAck) {
    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect(client_id, true, 30, properties))
        .await;
    assert_eq!(ack.code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
    (raw, ack)
}

/// An MQTT 5.0 PUBLISH.
fn v5_publish(
    topic_name: TopicName,
    qos: QoS,
    packet_id: Option<u16>,
    payload: &[u8],
    properties: Properties,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic_name,
        packet_id: packet_id.map(pid),
        payload: Bytes::copy_from_slice(payload),
        properties: harbormq::codec::PublishProperties::from_properties(&properties)
            .unwrap()
            .boxed(),
    })
}

/// An MQTT 5.0 SUBSCRIBE of one filter.
fn v5_subscribe(packet_id: u16, filter: &str, options: SubscriptionOptions) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        filters: vec![(topic_filter(filter), options)],
        properties: None,
    })
}

/// Subscribes a raw client and checks that the SUBACK grants `qos`.
async fn raw_subscribe(raw: &mut RawV5, filter: &str, qos: QoS) {
    raw.send(&v5_subscribe(1, filter, qos.into())).await;
    match raw.recv().await {
        Packet::SubAck(ack) => assert_eq!(
            ack.return_codes
                .iter()
                .map(|c| c.reason())
                .collect::<Vec<_>>(),
            vec![ReasonCode(qos.as_u8())]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn ack_of(packet_id: u16) -> Ack {
    Ack::from(pid(packet_id))
}

fn packet_id_of(p: &Publish) -> u16 {
    p.packet_id
        .expect("QoS > 0 PUBLISH without packet id")
        .get()
}

// ---------------------------------------------------------------------------------------------------------
// rumqttc's MQTT 5.0 client.
// ---------------------------------------------------------------------------------------------------------

/// rumqttc v5 options for this broker: 30 s keepalive, Clean Start, room for large packets.
fn v5_options(broker: &TestBroker, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.addr().port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(1 << 20));
    options
}

/// The steps of these scenarios on rumqttc's MQTT 5.0 client (`v5client::V5`).
impl V5 {
    /// Connects; the broker's refusal comes back as the error.
    async fn try_connect(options: MqttOptions) -> Result<(V5, V5ConnAck), ConnectionError> {
        V5::try_connect_within(options, WAIT).await
    }

    /// Connects and panics unless the broker accepts.
    async fn connect(options: MqttOptions) -> (V5, V5ConnAck) {
        V5::connect_within(options, WAIT).await
    }

    /// Subscribes with these filters and properties; returns the SUBACK's reason codes.
    async fn subscribe_with(
        &mut self,
        filters: Vec<Filter>,
        properties: Option<SubscribeProperties>,
    ) -> Vec<SubscribeReasonCode> {
        match properties {
            Some(p) => self.handle.subscribe_many_with_properties(filters, p).await,
            None => self.handle.subscribe_many(filters).await,
        }
        .unwrap();
        self.wait_incoming("SUBACK", |p| match p {
            V5Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes to one filter with default options and checks the grant.
    async fn subscribe(&mut self, filter: &str, qos: V5QoS) {
        let codes = self
            .subscribe_with(vec![Filter::new(filter, qos)], None)
            .await;
        assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)]);
    }

    /// Publishes and waits for the end of the exchange; returns the PUBACK's reason for QoS 1.
    async fn publish_with(
        &mut self,
        topic_name: &str,
        qos: V5QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        properties: Option<PublishProperties>,
    ) -> Option<PubAckReason> {
        let payload = payload.into();
        match properties {
            Some(p) => {
                self.handle
                    .publish_with_properties(topic_name, qos, retain, payload, p)
                    .await
            }
            None => self.handle.publish(topic_name, qos, retain, payload).await,
        }
        .unwrap();
        self.wait_event("the end of a PUBLISH exchange", |e| match (qos, e) {
            (V5QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(None),
            (V5QoS::AtLeastOnce, Event::Incoming(V5Packet::PubAck(ack))) => Some(Some(ack.reason)),
            (V5QoS::ExactlyOnce, Event::Incoming(V5Packet::PubComp(_))) => Some(None),
            _ => None,
        })
        .await
    }

    async fn publish(&mut self, topic_name: &str, qos: V5QoS, retain: bool, payload: &'static str) {
        self.publish_with(topic_name, qos, retain, payload, None)
            .await;
    }

    /// Asserts that no PUBLISH arrives and the connection stays up for `window`.
    async fn expect_no_publish(&mut self, window: Duration) {
        self.expect_no_publish_until(Instant::now() + window).await;
    }
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------------------
// paho-mqtt 2.x (Python), one process per client, driven by tests/v5/paho_client.py.
// ---------------------------------------------------------------------------------------------------------

const PAHO_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/v5/paho_client.py");

/// Bound on one wait for the script (its own steps give up after 5 s and report it).
const PAHO_WAIT: Duration = Duration::from_secs(15);

/// Why python3 with paho-mqtt 2.x cannot be used, checked once per test binary.
async fn paho_problem() -> Option<String> {
    static PROBLEM: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    PROBLEM
        .get_or_init(|| async {
            let run = Command::new("python3")
                .args(["-c", "import paho.mqtt; print(paho.mqtt.__version__)"])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = match timeout(Duration::from_secs(30), run).await {
                Err(_) => return Some("python3 did not answer within 30 s".to_owned()),
                Ok(Err(e)) => return Some(format!("python3 cannot be run: {e}")),
                Ok(Ok(output)) => output,
            };
            if !output.status.success() {
                return Some("python3 has no paho-mqtt module (pip install paho-mqtt)".to_owned());
            }
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let major: u32 = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            (major < 2).then(|| format!("paho-mqtt {version} is installed; these tests need 2.x"))
        })
        .await
        .clone()
}

/// Whether paho can be used; if not, fails under HARBORMQ_CI and otherwise says why the test skips.
async fn have_paho() -> bool {
    match paho_problem().await {
        None => true,
        Some(problem) => {
            needs::missing(&problem);
            false
        }
    }
}

/// A paho client on `broker` running `plan` (see the script's documentation).
fn start_paho(broker: &TestBroker, mut plan: Value) -> Scripted {
    plan["host"] = json!("127.0.0.1");
    plan["port"] = json!(broker.addr().port());
    let mut command = Command::new("python3");
    command.arg(PAHO_SCRIPT).arg(plan.to_string());
    Scripted::start("paho".to_owned(), command, PAHO_WAIT)
}

/// Runs a plan that needs nothing from the test while it runs; returns every event.
async fn paho_run(broker: &TestBroker, plan: Value) -> Vec<Value> {
    start_paho(broker, plan).finish().await
}

/// The payloads (as text) of the "message" events.
fn paho_payloads(events: &[Value]) -> Vec<String> {
    of_kind(events, "message")
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or("<not UTF-8>").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// mosquitto_sub / mosquitto_pub.
// ---------------------------------------------------------------------------------------------------------

/// Whether the mosquitto clients (and stdbuf, which runs mosquitto_sub) can be run; if not, fails under
/// HARBORMQ_CI and otherwise skips.
async fn have_mosquitto_clients() -> bool {
    for (program, package) in [
        ("mosquitto_sub", "mosquitto-clients"),
        ("mosquitto_pub", "mosquitto-clients"),
        ("stdbuf", "coreutils"),
    ] {
        let run = Command::new(program)
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        if !matches!(timeout(WAIT, run).await, Ok(Ok(_))) {
            needs::missing(&format!(
                "{program} is not installed (Debian package {package})"
            ));
            return false;
        }
    }
    true
}

/// A running mosquitto_sub whose subscription is acknowledged.
struct MosquittoSub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl MosquittoSub {
    /// Starts mosquitto_sub with debug output on and waits until it has its SUBACK. `args` should bound its
    /// run (`-C count -W secs`) and give an output format starting with "MSG " (`-F 'MSG ...'`).
    async fn start(broker: &TestBroker, args: &[&str]) -> MosquittoSub {
        let port = broker.addr().port().to_string();
        // Line-buffered: mosquitto_sub's debug lines would otherwise sit in its stdio buffer until it exits.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port, "-d"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start mosquitto_sub");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, lines.next_line()).await {
                Err(_) => panic!("mosquitto_sub got no SUBACK within {WAIT:?}"),
                Ok(Ok(Some(line))) if line.contains("received SUBACK") => break,
                Ok(Ok(Some(_))) => {}
                Ok(other) => panic!("mosquitto_sub ended before its SUBACK: {other:?}"),
            }
        }
        MosquittoSub { child, lines }
    }

    /// Waits for mosquitto_sub to exit; returns its "MSG " lines without the prefix.
    async fn output(mut self) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match timeout_at(deadline, self.lines.next_line()).await {
                Err(_) => panic!("mosquitto_sub still running after 10 s; printed {out:?}"),
                Ok(Ok(Some(line))) => {
                    if let Some(rest) = line.strip_prefix("MSG ") {
                        out.push(rest.to_owned());
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => panic!("cannot read mosquitto_sub's output: {e}"),
            }
        }
        let _ = timeout(WAIT, self.child.wait()).await;
        out
    }
}

/// Runs mosquitto_pub to completion and checks that it succeeded.
async fn mosquitto_pub(broker: &TestBroker, args: &[&str]) {
    let port = broker.addr().port().to_string();
    let run = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = timeout(WAIT, run)
        .await
        .expect("mosquitto_pub did not finish")
        .expect("cannot run mosquitto_pub");
    assert!(
        output.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops a broker as an operator would, off the async runtime (stopping joins the broker's thread).
async fn stop_broker(broker: TestBroker) {
    timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || drop(broker)),
    )
    .await
    .expect("the broker did not stop within 15 s")
    .unwrap();
}

// =========================================================================================================
// CONNACK properties
// =========================================================================================================

// 3.2.2.3 CONNACK Properties: Receive Maximum (3.2.2.3.3), Retain Available (3.2.2.3.5), Maximum Packet
// Size (3.2.2.3.6), Topic Alias Maximum (3.2.2.3.8), Wildcard Subscription Available (3.2.2.3.11) and
// Subscription Identifiers Available (3.2.2.3.12), as paho reads them with the default configuration. No
// Assigned Client Identifier for a client that gave one (3.2.2.3.7) and no Server Keep Alive for a
// keepalive the server accepts [MQTT-3.2.2-22]. Shared Subscription Available (3.2.2.3.13) "declares whether
// the Server supports Shared Subscriptions": it must agree with the SUBACK of a `$share/` filter (0x9E,
// "Shared Subscriptions not supported", exactly when it is 0). The value itself is checked with shared
// subscriptions switched off, in `connack_reports_configured_limits_to_rumqttc`.
#[tokio::test]
async fn connack_reports_the_default_limits_to_paho() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let events = paho_run(
        &broker,
        json!({
            "client_id": "limits",
            "keepalive": 30,
            "steps": [{"op": "subscribe", "filter": "$share/g/limits", "qos": 1}],
        }),
    )
    .await;
    let connack = of_kind(&events, "connack")[0];
    assert_eq!(connack["reason_code"], 0);
    assert_eq!(connack["session_present"], false);
    let p = &connack["properties"];
    assert_eq!(p["ReceiveMaximum"], 1024, "{p}");
    assert_eq!(p["TopicAliasMaximum"], 64, "{p}");
    assert_eq!(p["MaximumPacketSize"], 1024 * 1024, "{p}");
    assert_eq!(p["RetainAvailable"], 1, "{p}");
    assert_eq!(p["WildcardSubscriptionAvailable"], 1, "{p}");
    assert_eq!(p["SubscriptionIdentifierAvailable"], 1, "{p}");
    let shared_suback = &of_kind(&events, "suback")[0]["reason_codes"];
    match p["SharedSubscriptionAvailable"].as_u64() {
        Some(0) => assert_eq!(shared_suback, &json!([0x9E])),
        Some(1) => assert_eq!(shared_suback, &json!([1])),
        other => panic!("Shared Subscription Available {other:?}: {p}"),
    }
    assert!(p.get("AssignedClientIdentifier").is_none(), "{p}");
    assert!(p.get("ServerKeepAlive").is_none(), "{p}");
    // Maximum QoS is absent because QoS 2 is supported (3.2.2.3.4).
    assert!(p.get("MaximumQoS").is_none(), "{p}");
}

// 3.2.2.3.3, 3.2.2.3.6, 3.2.2.3.8, 3.2.2.3.13: the values the server sends are its own limits, so a
// configured receive_maximum, topic_alias_maximum and max_packet_size_bytes reach the client (here rumqttc's),
// and with shared_subscriptions off Shared Subscription Available is 0.
#[tokio::test]
async fn connack_reports_configured_limits_to_rumqttc() {
    let broker = TestBroker::start_with(|c| {
        c.receive_maximum = 7;
        c.topic_alias_maximum = 3;
        c.max_packet_size_bytes = 4096;
        c.shared_subscriptions = false;
    });
    let (client, ack) = V5::connect(v5_options(&broker, "configured")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let p = ack.properties.expect("CONNACK without properties");
    assert_eq!(p.receive_max, Some(7));
    assert_eq!(p.topic_alias_max, Some(3));
    assert_eq!(p.max_packet_size, Some(4096));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(0));
    client.disconnect().await;
}

// [MQTT-3.1.3-6], [MQTT-3.1.3-7]: a zero-length ClientID gets a unique identifier of the server's, returned
// in CONNACK as the Assigned Client Identifier (3.2.2.3.7). paho, then a raw client: the two differ.
#[tokio::test]
async fn an_empty_client_id_gets_an_assigned_client_identifier() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let events = paho_run(&broker, json!({"client_id": ""})).await;
    let connack = of_kind(&events, "connack")[0];
    assert_eq!(connack["reason_code"], 0);
    let assigned = connack["properties"]["AssignedClientIdentifier"]
        .as_str()
        .unwrap_or_else(|| panic!("no Assigned Client Identifier: {connack}"))
        .to_owned();
    assert!(!assigned.is_empty());

    let (_raw, ack) = raw_v5(&broker, "", Properties::default()).await;
    let other = props(&ack.properties)
        .assigned_client_identifier
        .clone()
        .expect("no Assigned Client Identifier for the raw client");
    assert!(!other.is_empty());
    assert_ne!(
        &*other,
        assigned.as_str(),
        "assigned identifiers must be unique"
    );
}

// 3.2.2.3.14 Server Keep Alive: the server may impose a keepalive (here max_keepalive_secs = 10) and then
// sends it in CONNACK, the value the client must use [MQTT-3.2.2-21]; absent, the client's value stands
// [MQTT-3.2.2-22]. Sent for a longer keepalive (60, rumqttc) and for none at all (0, raw), not for 5.
#[tokio::test]
async fn server_keep_alive_replaces_a_longer_or_absent_keepalive() {
    let broker = TestBroker::start_with(|c| c.max_keepalive_secs = 10);
    let mut options = v5_options(&broker, "ka-long");
    options.set_keep_alive(Duration::from_secs(60));
    let (client, ack) = V5::connect(options).await;
    assert_eq!(ack.properties.unwrap().server_keep_alive, Some(10));
    client.disconnect().await;

    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect("ka-zero", true, 0, Properties::default()))
        .await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert_eq!(props(&ack.properties).server_keep_alive, Some(10));

    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect("ka-short", true, 5, Properties::default()))
        .await;
    assert_eq!(props(&ack.properties).server_keep_alive, None);
}

// [MQTT-3.2.2-21]: paho follows the Server Keep Alive of 1 s instead of the 60 s it asked for, and the
// server, which times out after one and a half keepalives [MQTT-3.1.2-22], keeps it connected for 3.5 s.
#[tokio::test]
async fn paho_following_server_keep_alive_stays_connected() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start_with(|c| c.max_keepalive_secs = 1);
    let events = paho_run(
        &broker,
        json!({
            "client_id": "follower",
            "keepalive": 60,
            "steps": [{"op": "linger", "secs": 3.5}, {"op": "expect_connected"}],
        }),
    )
    .await;
    assert_eq!(
        of_kind(&events, "connack")[0]["properties"]["ServerKeepAlive"],
        1
    );
    assert!(of_kind(&events, "disconnect").is_empty(), "{events:?}");
}

// =========================================================================================================
// Session Expiry Interval
// =========================================================================================================

// 3.1.2.11.2: "If the Session Expiry Interval is absent the value 0 is used. If it is set to 0, or is absent,
// the Session ends when the Network Connection is closed." A reconnect with Clean Start 0 finds no session
// (Session Present 0, 3.2.2.1.1) and nothing of what was published meanwhile.
#[tokio::test]
async fn session_expiry_zero_ends_the_session_at_disconnect() {
    let broker = TestBroker::start();
    let mut options = v5_options(&broker, "short-lived");
    options.set_clean_start(false);
    let (mut sub, ack) = V5::connect(options.clone()).await;
    assert!(!ack.session_present);
    sub.subscribe("se0/t", V5QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = V5::connect(v5_options(&broker, "se0-pub")).await;
    publisher
        .publish("se0/t", V5QoS::AtLeastOnce, false, "meanwhile")
        .await;

    options.set_session_expiry_interval(Some(3600));
    let (mut sub, ack) = V5::connect(options).await;
    assert!(!ack.session_present, "the session should have ended");
    sub.expect_no_publish(QUIET).await;
}

// [MQTT-3.1.2-23]: with a Session Expiry Interval above 0 the server keeps the session after the connection
// closes; paho reconnecting with Clean Start 0 gets Session Present 1 [MQTT-3.2.2-3] and the QoS 1 messages
// published (by rumqttc) while it was away, in order (4.1, 4.6).
#[tokio::test]
async fn session_expiry_keeps_the_session_and_its_offline_messages() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let first = paho_run(
        &broker,
        json!({
            "client_id": "kept",
            "clean_start": true,
            "connect_properties": {"SessionExpiryInterval": 300},
            "steps": [
                {"op": "subscribe", "filter": "se/t", "qos": 1},
                {"op": "disconnect"},
            ],
        }),
    )
    .await;
    assert_eq!(of_kind(&first, "suback")[0]["reason_codes"], json!([1]));

    let (mut publisher, _) = V5::connect(v5_options(&broker, "se-pub")).await;
    for payload in ["one", "two", "three"] {
        publisher
            .publish("se/t", V5QoS::AtLeastOnce, false, payload)
            .await;
    }

    let second = paho_run(
        &broker,
        json!({
            "client_id": "kept",
            "clean_start": false,
            "connect_properties": {"SessionExpiryInterval": 300},
            "steps": [
                {"op": "wait_messages", "count": 3},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    )
    .await;
    assert_eq!(of_kind(&second, "connack")[0]["session_present"], true);
    assert_eq!(paho_payloads(&second), ["one", "two", "three"]);
}

// 3.14.2.2.2: "If the Session Expiry Interval in the CONNECT packet was zero, then it is a Protocol Error to
// set a non-zero Session Expiry Interval in the DISCONNECT packet sent by the Client. If such a non-zero
// Session Expiry Interval is received by the Server, it does not treat it as a valid DISCONNECT packet. The
// Server uses DISCONNECT with Reason Code 0x82 (Protocol Error)". Not being a valid DISCONNECT, it does not
// discard the will, which is published as for any connection closed on a protocol error (3.1.2.5).
#[tokio::test]
async fn disconnect_cannot_set_an_expiry_when_connect_had_zero() {
    let broker = TestBroker::start();
    let (mut observer, _) = V5::connect(v5_options(&broker, "observer")).await;
    observer.subscribe("will/#", V5QoS::AtLeastOnce).await;

    let mut raw = RawV5::open(broker.addr()).await;
    let mut connect = v5_connect("zero-expiry", true, 30, Properties::default());
    connect.will = Some(LastWill {
        topic: topic("will/zero-expiry"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
    });
    assert_eq!(raw.connect(connect).await.code, ReasonCode::SUCCESS);
    raw.send(&Packet::Disconnect(ReasonOnly {
        reason: ReasonCode::SUCCESS,
        properties: Some(Box::new(Properties {
            session_expiry_interval: Some(60),
            ..Properties::default()
        })),
    }))
    .await;
    raw.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;

    let will = observer.next_publish().await;
    assert_eq!(text(&will.topic), "will/zero-expiry");
    assert_eq!(will.payload.as_ref(), b"gone");
}

// 3.14.2.2.2: the Session Expiry Interval of DISCONNECT replaces that of CONNECT; 0 ends a session that
// CONNECT asked to keep, so paho finds none on its return (Session Present 0).
#[tokio::test]
async fn disconnect_with_zero_expiry_ends_a_session_connect_meant_to_keep() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    paho_run(
        &broker,
        json!({
            "client_id": "changes-its-mind",
            "connect_properties": {"SessionExpiryInterval": 300},
            "steps": [
                {"op": "subscribe", "filter": "se/x", "qos": 1},
                {"op": "disconnect", "properties": {"SessionExpiryInterval": 0}},
            ],
        }),
    )
    .await;
    let again = paho_run(
        &broker,
        json!({
            "client_id": "changes-its-mind",
            "clean_start": false,
            "connect_properties": {"SessionExpiryInterval": 300},
        }),
    )
    .await;
    assert_eq!(of_kind(&again, "connack")[0]["session_present"], false);
}

// =========================================================================================================
// Message properties
// =========================================================================================================

/// The user properties every pass-through test sends: repeated names, in an order that must be kept.
fn sample_user_properties() -> Vec<(String, String)> {
    [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "cödé")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// 3.3.2.3: the server forwards Payload Format Indicator [MQTT-3.3.2-4], Content Type [MQTT-3.3.2-20],
// Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16] and User Properties [MQTT-3.3.2-17]
// unaltered, the User Properties in their order [MQTT-3.3.2-18]. paho publishes, rumqttc receives.
#[tokio::test]
async fn message_properties_from_paho_reach_rumqttc_unchanged() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let (mut sub, _) = V5::connect(v5_options(&broker, "props-sub")).await;
    sub.subscribe("props/#", V5QoS::AtLeastOnce).await;
    let user: Vec<Value> = sample_user_properties()
        .into_iter()
        .map(|(k, v)| json!([k, v]))
        .collect();
    let events = paho_run(
        &broker,
        json!({
            "client_id": "props-pub",
            "steps": [{"op": "publish", "topic": "props/a", "payload": "héllo", "qos": 1,
                "properties": {
                    "PayloadFormatIndicator": 1,
                    "ContentType": "text/plain; charset=utf-8",
                    "ResponseTopic": "reply/here",
                    "CorrelationData": {"hex": "00ff10"},
                    "UserProperty": user,
                }}],
        }),
    )
    .await;
    assert_eq!(of_kind(&events, "published")[0]["reason_code"], 0);

    let p = sub.next_publish().await;
    assert_eq!(text(&p.topic), "props/a");
    assert_eq!(p.payload.as_ref(), "héllo".as_bytes());
    let props = p.properties.expect("PUBLISH without properties");
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(
        props.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(&[0x00, 0xff, 0x10][..])
    );
    assert_eq!(props.user_properties, sample_user_properties());
    assert_eq!(props.message_expiry_interval, None);
    assert_eq!(props.topic_alias, None);
    assert!(props.subscription_identifiers.is_empty());
}

// The same statements as above in the other direction: rumqttc publishes, paho receives.
#[tokio::test]
async fn message_properties_from_rumqttc_reach_paho_unchanged() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "props-paho",
            "steps": [
                {"op": "subscribe", "filter": "props/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 1},
            ],
        }),
    );
    paho.wait_for("ready").await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "props-rumqttc")).await;
    let properties = PublishProperties {
        payload_format_indicator: Some(0),
        content_type: Some("application/octet-stream".to_owned()),
        response_topic: Some("reply/there".to_owned()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 0, 255])),
        user_properties: sample_user_properties(),
        ..PublishProperties::default()
    };
    publisher
        .publish_with(
            "props/b",
            V5QoS::AtLeastOnce,
            false,
            Bytes::from_static(&[0xde, 0xad]),
            Some(properties),
        )
        .await;
    let events = paho.finish().await;
    let message = of_kind(&events, "message")[0];
    assert_eq!(message["topic"], "props/b");
    assert_eq!(message["payload_hex"], "dead");
    let p = &message["properties"];
    assert_eq!(p["PayloadFormatIndicator"], 0, "{p}");
    assert_eq!(p["ContentType"], "application/octet-stream", "{p}");
    assert_eq!(p["ResponseTopic"], "reply/there", "{p}");
    assert_eq!(p["CorrelationData"], json!({"hex": "010200ff"}), "{p}");
    let expected: Vec<Value> = sample_user_properties()
        .into_iter()
        .map(|(k, v)| json!([k, v]))
        .collect();
    assert_eq!(p["UserProperty"], json!(expected), "{p}");
    assert!(p.get("MessageExpiryInterval").is_none(), "{p}");
    assert!(p.get("TopicAlias").is_none(), "{p}");
}

// [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20]: mosquitto_sub (MQTT 5.0) prints the User Properties and
// Content Type of a message published by mosquitto_pub, in the order sent, repeated names included.
#[tokio::test]
async fn user_properties_reach_mosquitto_sub_in_order() {
    if !have_mosquitto_clients().await {
        return;
    }
    let broker = TestBroker::start();
    let sub = MosquittoSub::start(
        &broker,
        &[
            "-V",
            "mqttv5",
            "-t",
            "up/t",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "8",
            "-F",
            "MSG %P|%C|%p",
        ],
    )
    .await;
    mosquitto_pub(
        &broker,
        &[
            "-V",
            "mqttv5",
            "-t",
            "up/t",
            "-q",
            "1",
            "-m",
            "hello",
            "-D",
            "publish",
            "user-property",
            "a",
            "1",
            "-D",
            "publish",
            "user-property",
            "b",
            "2",
            "-D",
            "publish",
            "user-property",
            "a",
            "3",
            "-D",
            "publish",
            "content-type",
            "text/x",
        ],
    )
    .await;
    assert_eq!(sub.output().await, ["a:1 b:2 a:3|text/x|hello"]);
}

// [MQTT-3.3.2-6]: "The PUBLISH packet sent to a Client by the Server MUST contain a Message Expiry Interval
// set to the received value minus the time that the Application Message has been waiting in the Server." A
// live subscriber gets (nearly) all of 10 s; a persistent session that was away for 2.2 s gets at most 8.
#[tokio::test]
async fn a_forwarded_message_carries_the_expiry_left() {
    let broker = TestBroker::start();
    let mut offline_options = v5_options(&broker, "expiry-away");
    offline_options.set_clean_start(false);
    offline_options.set_session_expiry_interval(Some(300));
    let (mut away, _) = V5::connect(offline_options.clone()).await;
    away.subscribe("exp/t", V5QoS::AtLeastOnce).await;
    away.disconnect().await;
    let (mut live, _) = V5::connect(v5_options(&broker, "expiry-live")).await;
    live.subscribe("exp/t", V5QoS::AtLeastOnce).await;

    let (mut publisher, _) = V5::connect(v5_options(&broker, "expiry-pub")).await;
    let properties = PublishProperties {
        message_expiry_interval: Some(10),
        ..PublishProperties::default()
    };
    publisher
        .publish_with("exp/t", V5QoS::AtLeastOnce, false, "ttl", Some(properties))
        .await;
    let now = live.next_publish().await;
    let left = now.properties.and_then(|p| p.message_expiry_interval);
    assert!(
        matches!(left, Some(9..=10)),
        "a live subscriber got expiry {left:?}"
    );

    // Time passing is what this test is about.
    sleep(Duration::from_millis(2200)).await;
    let (mut away, ack) = V5::connect(offline_options).await;
    assert!(ack.session_present);
    let later = away.next_publish().await;
    assert_eq!(later.payload.as_ref(), b"ttl");
    let left = later.properties.and_then(|p| p.message_expiry_interval);
    assert!(
        matches!(left, Some(1..=8)),
        "after 2.2 s offline the message has expiry {left:?}"
    );
}

// [MQTT-3.3.2-5]: "If the Message Expiry Interval has passed and the Server has not managed to start onward
// delivery to a matching subscriber, then it MUST delete the copy of the message for that subscriber." paho
// comes back after 2.2 s to a message with 1 s of expiry (gone) and one with an hour (delivered).
#[tokio::test]
async fn an_expired_message_is_not_delivered_to_a_returning_session() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    paho_run(
        &broker,
        json!({
            "client_id": "expiring",
            "connect_properties": {"SessionExpiryInterval": 300},
            "steps": [{"op": "subscribe", "filter": "exp/p", "qos": 1}, {"op": "disconnect"}],
        }),
    )
    .await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "exp-pub")).await;
    for (payload, expiry) in [("short", 1), ("long", 3600)] {
        let properties = PublishProperties {
            message_expiry_interval: Some(expiry),
            ..PublishProperties::default()
        };
        publisher
            .publish_with(
                "exp/p",
                V5QoS::AtLeastOnce,
                false,
                payload,
                Some(properties),
            )
            .await;
    }
    // Time passing is what this test is about.
    sleep(Duration::from_millis(2200)).await;
    let events = paho_run(
        &broker,
        json!({
            "client_id": "expiring",
            "clean_start": false,
            "connect_properties": {"SessionExpiryInterval": 300},
            "steps": [{"op": "wait_messages", "count": 1}, {"op": "linger", "secs": 0.4}],
        }),
    )
    .await;
    assert_eq!(of_kind(&events, "connack")[0]["session_present"], true);
    assert_eq!(paho_payloads(&events), ["long"]);
    let left = &of_kind(&events, "message")[0]["properties"]["MessageExpiryInterval"];
    assert!(
        left.as_u64().is_some_and(|s| (3590..=3600).contains(&s)),
        "expiry left {left}"
    );
}

// 3.3.2.3.3 applied to retained messages: a retained message whose Message Expiry Interval has passed is not
// sent to a new subscription; one that has not expired is, with the time it has left [MQTT-3.3.2-6].
#[tokio::test]
async fn an_expired_retained_message_is_not_sent_to_new_subscribers() {
    let broker = TestBroker::start();
    let (mut publisher, _) = V5::connect(v5_options(&broker, "ret-exp-pub")).await;
    for (t, expiry) in [("rexp/short", 1), ("rexp/long", 3600)] {
        let properties = PublishProperties {
            message_expiry_interval: Some(expiry),
            ..PublishProperties::default()
        };
        publisher
            .publish_with(t, V5QoS::AtLeastOnce, true, "kept", Some(properties))
            .await;
    }
    // Time passing is what this test is about.
    sleep(Duration::from_millis(2200)).await;
    let (mut sub, _) = V5::connect(v5_options(&broker, "ret-exp-sub")).await;
    sub.subscribe("rexp/#", V5QoS::AtLeastOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(text(&p.topic), "rexp/long");
    assert!(p.retain);
    sub.expect_no_publish(QUIET).await;
}

// =========================================================================================================
// Topic aliases
// =========================================================================================================

// 3.3.2.3.4 Topic Alias: a PUBLISH with a topic and an alias sets the mapping, one with an empty topic and the
// alias uses it, and a new topic with the same alias replaces it [MQTT-3.3.2-12]. paho publishes that way;
// a rumqttc subscriber gets every message under its real topic.
#[tokio::test]
async fn paho_publishes_through_topic_aliases() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let (mut sub, _) = V5::connect(v5_options(&broker, "alias-sub")).await;
    sub.subscribe("alias/#", V5QoS::AtLeastOnce).await;
    let publish = |t: &str, payload: &str| {
        json!({"op": "publish", "topic": t, "payload": payload, "qos": 1,
            "properties": {"TopicAlias": 1}})
    };
    let events = paho_run(
        &broker,
        json!({
            "client_id": "alias-pub",
            "steps": [
                publish("alias/t", "set"),
                publish("", "used"),
                publish("", "used again"),
                publish("alias/u", "reset"),
                publish("", "used after reset"),
            ],
        }),
    )
    .await;
    let codes: Vec<&Value> = of_kind(&events, "published")
        .iter()
        .map(|e| &e["reason_code"])
        .collect();
    assert_eq!(codes, [0, 0, 0, 0, 0]);
    let received = sub.next_n(5).await;
    // rumqttc set no Topic Alias Maximum, so the server sends it no alias [MQTT-3.1.2-27]: the publisher's
    // aliases belong to the publisher's connection.
    for p in &received {
        assert_eq!(p.properties.as_ref().and_then(|p| p.topic_alias), None);
    }
    let got: Vec<(String, String)> = received
        .iter()
        .map(|p| (text(&p.topic), text(&p.payload)))
        .collect();
    let expected = [
        ("alias/t", "set"),
        ("alias/t", "used"),
        ("alias/t", "used again"),
        ("alias/u", "reset"),
        ("alias/u", "used after reset"),
    ]
    .map(|(t, p)| (t.to_owned(), p.to_owned()));
    assert_eq!(got, expected);
}

/// Follows the topic aliases of received PUBLISHes given as (topic as sent, Topic Alias): returns each
/// message's topic as resolved and how many used an alias alone, and checks that every alias is within
/// 1..=`maximum` [MQTT-3.1.2-26] and that an empty topic only ever uses an alias set before in the connection
/// (3.3.2.3.4).
fn resolve_aliases(received: &[(String, Option<u64>)], maximum: u64) -> (Vec<String>, usize) {
    let mut mapping = std::collections::HashMap::new();
    let mut reused = 0;
    let topics = received
        .iter()
        .map(|(raw_topic, alias)| {
            let Some(alias) = *alias else {
                assert!(
                    !raw_topic.is_empty(),
                    "empty topic without alias: {received:?}"
                );
                return raw_topic.clone();
            };
            assert!(
                (1..=maximum).contains(&alias),
                "alias {alias} out of range: {received:?}"
            );
            if raw_topic.is_empty() {
                reused += 1;
                mapping
                    .get(&alias)
                    .cloned()
                    .unwrap_or_else(|| panic!("alias {alias} used before it was set: {received:?}"))
            } else {
                mapping.insert(alias, raw_topic.clone());
                raw_topic.clone()
            }
        })
        .collect();
    (topics, reused)
}

// 3.3.2.3.4 and 3.1.2.11.8: paho's CONNECT sets Topic Alias Maximum 2, so the server may send it aliases up to
// 2 and no higher [MQTT-3.1.2-26]. paho-mqtt hands aliased messages to the application unresolved, so the
// test resolves them as the specification says and checks that each message names the topic it was
// published to; the broker does use aliases (an empty topic with an alias shows up).
#[tokio::test]
async fn server_topic_aliases_towards_paho_resolve_to_the_right_topics() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "alias-paho",
            "connect_properties": {"TopicAliasMaximum": 2},
            "steps": [
                {"op": "subscribe", "filter": "ta/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 7},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    paho.wait_for("ready").await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "alias-src")).await;
    let sent = ["ta/x", "ta/x", "ta/y", "ta/z", "ta/z", "ta/x", "ta/y"];
    for (n, t) in sent.iter().enumerate() {
        publisher
            .publish_with(t, V5QoS::AtLeastOnce, false, format!("m{n}"), None)
            .await;
    }
    let events = paho.finish().await;
    let messages = of_kind(&events, "message");
    let received: Vec<(String, Option<u64>)> = messages
        .iter()
        .map(|m| {
            let t = m["topic"].as_str().unwrap().to_owned();
            (t, m["properties"]["TopicAlias"].as_u64())
        })
        .collect();
    let (topics, reused) = resolve_aliases(&received, 2);
    assert_eq!(topics, sent);
    assert_eq!(
        paho_payloads(&events),
        ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]
    );
    assert!(reused > 0, "the server never used an alias: {messages:?}");
}

// The same with rumqttc, Topic Alias Maximum 10 in its CONNECT. rumqttc 0.25 keeps the mapping itself but
// reports each incoming PUBLISH (Event::Incoming) before it resolves the alias, so the event shows the empty
// topic and its Topic Alias property; the test resolves them and checks every message's topic.
#[tokio::test]
async fn server_topic_aliases_towards_rumqttc_resolve_to_the_right_topics() {
    let broker = TestBroker::start();
    let mut options = v5_options(&broker, "alias-rumqttc");
    options.set_topic_alias_max(Some(10));
    let (mut sub, _) = V5::connect(options).await;
    sub.subscribe("tr/#", V5QoS::AtLeastOnce).await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "alias-src2")).await;
    let sent = ["tr/a", "tr/b", "tr/a", "tr/a", "tr/b", "tr/c"];
    for (n, t) in sent.iter().enumerate() {
        publisher
            .publish_with(t, V5QoS::AtLeastOnce, false, format!("m{n}"), None)
            .await;
    }
    let publishes = sub.next_n(sent.len()).await;
    let received: Vec<(String, Option<u64>)> = publishes
        .iter()
        .map(|p| {
            let alias = p.properties.as_ref().and_then(|p| p.topic_alias);
            (text(&p.topic), alias.map(u64::from))
        })
        .collect();
    let (topics, reused) = resolve_aliases(&received, 10);
    assert_eq!(topics, sent);
    let payloads: Vec<String> = publishes.iter().map(|p| text(&p.payload)).collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    assert!(reused > 0, "the server never used an alias: {received:?}");
}

// Byte level. [MQTT-3.1.2-27]: "If Topic Alias Maximum is absent or zero, the Server MUST NOT send any Topic
// Aliases to the Client": every PUBLISH names its topic in full. With Topic Alias Maximum 1 an alias is
// never above 1 [MQTT-3.1.2-26], and a PUBLISH with an empty topic carries the alias set before.
#[tokio::test]
async fn server_topic_aliases_on_the_wire_respect_the_clients_maximum() {
    let broker = TestBroker::start();
    let (mut plain, _) = raw_v5(&broker, "no-alias", Properties::default()).await;
    raw_subscribe(&mut plain, "tw/#", QoS::AtMostOnce).await;
    let one = Properties {
        topic_alias_maximum: Some(1),
        ..Properties::default()
    };
    let (mut aliased, _) = raw_v5(&broker, "one-alias", one).await;
    raw_subscribe(&mut aliased, "tw/#", QoS::AtMostOnce).await;

    let (mut publisher, _) = V5::connect(v5_options(&broker, "tw-pub")).await;
    let sent = ["tw/a", "tw/a", "tw/b", "tw/b", "tw/a"];
    for t in sent {
        publisher.publish(t, V5QoS::AtLeastOnce, false, "x").await;
    }
    for t in sent {
        let p = plain.recv_publish().await;
        assert_eq!(p.topic.as_str(), t);
        let alias = p.properties.as_deref().and_then(|p| p.topic_alias());
        assert_eq!(alias, None, "{p:?}");
    }
    let mut alias_one: Option<String> = None;
    let mut reused = 0;
    for t in sent {
        let p = aliased.recv_publish().await;
        match p.properties.as_deref().and_then(|p| p.topic_alias()) {
            None => assert_eq!(p.topic.as_str(), t),
            Some(1) if p.topic.is_aliased() => {
                reused += 1;
                assert_eq!(alias_one.as_deref(), Some(t), "{p:?}");
            }
            Some(1) => {
                assert_eq!(p.topic.as_str(), t);
                alias_one = Some(t.to_owned());
            }
            Some(other) => panic!("alias {other} above the client's maximum of 1: {p:?}"),
        }
    }
    assert!(reused > 0, "the server never used the alias");
}

// =========================================================================================================
// Receive Maximum
// =========================================================================================================

// [MQTT-3.3.4-9]: "The Server MUST NOT send more than Receive Maximum QoS 1 and QoS 2 PUBLISH packets for
// which it has not received PUBACK, PUBCOMP, or PUBREC with a Reason Code of 128 or greater from the
// Client." With Receive Maximum 2 and five messages waiting, exactly two arrive until one is acknowledged.
#[tokio::test]
async fn the_broker_never_exceeds_the_clients_receive_maximum_for_qos1() {
    let broker = TestBroker::start();
    let two = Properties {
        receive_maximum: Some(2),
        ..Properties::default()
    };
    let (mut raw, _) = raw_v5(&broker, "rm-two", two).await;
    raw_subscribe(&mut raw, "rm/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "rm-pub")).await;
    let payloads = ["p0", "p1", "p2", "p3", "p4"];
    for payload in payloads {
        publisher
            .publish("rm/t", V5QoS::AtLeastOnce, false, payload)
            .await;
    }

    let first = raw.recv_publish().await;
    let second = raw.recv_publish().await;
    raw.expect_silence(QUIET).await;
    let mut got = vec![first.payload.clone(), second.payload.clone()];
    raw.send(&Packet::PubAck(ack_of(packet_id_of(&first))))
        .await;
    let third = raw.recv_publish().await;
    got.push(third.payload.clone());
    raw.expect_silence(QUIET).await;
    // Acknowledge the rest as they come; each acknowledgement lets exactly one more in.
    let mut unacked = VecDeque::from([packet_id_of(&second), packet_id_of(&third)]);
    while got.len() < payloads.len() {
        raw.send(&Packet::PubAck(ack_of(unacked.pop_front().unwrap())))
            .await;
        let next = raw.recv_publish().await;
        got.push(next.payload.clone());
        unacked.push_back(packet_id_of(&next));
    }
    raw.expect_silence(QUIET).await;
    assert_eq!(got, payloads.map(|p| Bytes::from_static(p.as_bytes())));
}

// [MQTT-3.3.4-9] for QoS 2: a PUBREC with a success code does not free the slot; only the PUBCOMP does. With
// Receive Maximum 1 the second message waits for the end of the first's exchange.
#[tokio::test]
async fn a_qos2_delivery_holds_the_clients_receive_maximum_until_pubcomp() {
    let broker = TestBroker::start();
    let one = Properties {
        receive_maximum: Some(1),
        ..Properties::default()
    };
    let (mut raw, _) = raw_v5(&broker, "rm-one", one).await;
    raw_subscribe(&mut raw, "rm2/t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "rm2-pub")).await;
    for payload in ["a", "b"] {
        publisher
            .publish("rm2/t", V5QoS::ExactlyOnce, false, payload)
            .await;
    }
    let first = raw.recv_publish().await;
    assert_eq!(first.payload.as_ref(), b"a");
    raw.expect_silence(QUIET).await;
    let id = packet_id_of(&first);
    raw.send(&Packet::PubRec(ack_of(id))).await;
    match raw.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id.get(), id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    raw.expect_silence(QUIET).await;
    raw.send(&Packet::PubComp(ack_of(id))).await;
    let second = raw.recv_publish().await;
    assert_eq!(second.payload.as_ref(), b"b");
}

/// A raw connection to a broker whose Receive Maximum is 2.
async fn receive_maximum_two() -> (TestBroker, RawV5) {
    let broker = TestBroker::start_with(|c| c.receive_maximum = 2);
    let (raw, ack) = raw_v5(&broker, "flooder", Properties::default()).await;
    assert_eq!(props(&ack.properties).receive_maximum, Some(2));
    (broker, raw)
}

/// QoS 1 PUBLISHes with packet ids `ids`.
fn qos1_publishes(ids: std::ops::RangeInclusive<u16>) -> Vec<Packet> {
    ids.map(|id| {
        v5_publish(
            topic("in/t"),
            QoS::AtLeastOnce,
            Some(id),
            b"x",
            Properties::default(),
        )
    })
    .collect()
}

// 3.3.4 and 4.9 (Flow Control): the server counts the QoS 1 and 2 PUBLISHes it has not answered with PUBACK or
// PUBCOMP; "If it receives more than Receive Maximum ... the Server uses a DISCONNECT packet with Reason Code
// 0x93 (Receive Maximum exceeded)". Ten QoS 1 PUBLISHes in one write against a Receive Maximum of 2.
#[tokio::test]
async fn pipelined_qos1_publishes_beyond_receive_maximum_get_disconnect_0x93() {
    let (_broker, mut raw) = receive_maximum_two().await;
    raw.send_together(&qos1_publishes(1..=10)).await;
    raw.expect_disconnect(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
}

// The boundary of the rule above: exactly Receive Maximum PUBLISHes in one write are all acknowledged and the
// connection stays open.
#[tokio::test]
async fn pipelined_qos1_publishes_up_to_receive_maximum_are_accepted() {
    let (_broker, mut raw) = receive_maximum_two().await;
    raw.send_together(&qos1_publishes(1..=2)).await;
    for id in 1..=2 {
        match raw.recv().await {
            Packet::PubAck(ack) => {
                assert_eq!(ack.packet_id.get(), id);
                assert!(!ack.reason.is_error(), "{ack:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    raw.expect_silence(QUIET).await;
}

// 4.9 for QoS 2: a PUBLISH stays unanswered until its PUBCOMP leaves, so with Receive Maximum 2 a finished
// exchange frees its slot, two open exchanges (PUBREC sent, no PUBREL yet) are allowed, and a third open one
// gets DISCONNECT 0x93.
#[tokio::test]
async fn open_qos2_exchanges_beyond_receive_maximum_get_disconnect_0x93() {
    let (_broker, mut raw) = receive_maximum_two().await;
    let qos2 = |id| {
        v5_publish(
            topic("in/q2"),
            QoS::ExactlyOnce,
            Some(id),
            b"x",
            Properties::default(),
        )
    };
    raw.send(&qos2(1)).await;
    assert!(matches!(raw.recv().await, Packet::PubRec(a) if a.packet_id.get() == 1));
    raw.send(&Packet::PubRel(ack_of(1))).await;
    assert!(matches!(raw.recv().await, Packet::PubComp(a) if a.packet_id.get() == 1));
    for id in [2, 3] {
        raw.send(&qos2(id)).await;
        match raw.recv().await {
            Packet::PubRec(a) => assert_eq!(a.packet_id.get(), id),
            other => panic!("expected PUBREC for {id}, got {other:?}"),
        }
    }
    raw.send(&qos2(4)).await;
    raw.expect_disconnect(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
}

// =========================================================================================================
// Subscription options
// =========================================================================================================

// [MQTT-3.8.3-3]: "Bit 2 of the Subscription Options represents the No Local option. If the value is 1,
// Application Messages MUST NOT be forwarded to a connection with a ClientID equal to the ClientID of the
// publishing connection." paho subscribes with No Local and publishes; it gets only rumqttc's message.
#[tokio::test]
async fn no_local_withholds_only_the_clients_own_messages() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "no-local",
            "steps": [
                {"op": "subscribe", "filter": "nl/t", "qos": 1, "no_local": true},
                {"op": "publish", "topic": "nl/t", "payload": "own", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 1},
                {"op": "linger", "secs": 0.4},
            ],
        }),
    );
    paho.wait_for("ready").await;
    let (mut other, _) = V5::connect(v5_options(&broker, "nl-other")).await;
    other
        .publish("nl/t", V5QoS::AtLeastOnce, false, "other")
        .await;
    let events = paho.finish().await;
    assert_eq!(paho_payloads(&events), ["other"]);
}

// [MQTT-3.3.1-12]: "If the value of Retain As Published subscription option is set to 0, the Server MUST set
// the RETAIN flag to 0 when forwarding an Application Message regardless of how the RETAIN flag was set in
// the received PUBLISH packet." [MQTT-3.3.1-13]: "If the value of Retain As Published subscription option is
// set to 1, the Server MUST set the RETAIN flag equal to the RETAIN flag in the received PUBLISH packet."
#[tokio::test]
async fn retain_as_published_keeps_the_retain_flag_on_live_messages() {
    let broker = TestBroker::start();
    let (mut kept, _) = V5::connect(v5_options(&broker, "rap-1")).await;
    let mut filter = Filter::new("rap/#", V5QoS::AtLeastOnce);
    filter.preserve_retain = true;
    assert_eq!(
        kept.subscribe_with(vec![filter], None).await,
        vec![SubscribeReasonCode::Success(V5QoS::AtLeastOnce)]
    );
    let (mut cleared, _) = V5::connect(v5_options(&broker, "rap-0")).await;
    cleared.subscribe("rap/#", V5QoS::AtLeastOnce).await;

    let (mut publisher, _) = V5::connect(v5_options(&broker, "rap-pub")).await;
    publisher
        .publish("rap/r", V5QoS::AtLeastOnce, true, "retained")
        .await;
    publisher
        .publish("rap/n", V5QoS::AtLeastOnce, false, "plain")
        .await;

    let flags = |ps: Vec<V5Publish>| -> Vec<(String, bool)> {
        ps.iter().map(|p| (text(&p.payload), p.retain)).collect()
    };
    assert_eq!(
        flags(kept.next_n(2).await),
        [("retained".to_owned(), true), ("plain".to_owned(), false)]
    );
    assert_eq!(
        flags(cleared.next_n(2).await),
        [("retained".to_owned(), false), ("plain".to_owned(), false)]
    );
}

// [MQTT-3.3.1-9]: "If Retain Handling is set to 0 the Server MUST send the retained messages matching the
// Topic Filter of the subscription to the Client", on every SUBSCRIBE, a repeated one included (rumqttc).
#[tokio::test]
async fn retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let broker = TestBroker::start();
    let (mut publisher, _) = V5::connect(v5_options(&broker, "rh0-pub")).await;
    publisher
        .publish("rh0/t", V5QoS::AtLeastOnce, true, "kept")
        .await;
    let (mut sub, _) = V5::connect(v5_options(&broker, "rh0-sub")).await;
    for _ in 0..2 {
        let mut filter = Filter::new("rh0/t", V5QoS::AtLeastOnce);
        filter.retain_forward_rule = RetainForwardRule::OnEverySubscribe;
        sub.subscribe_with(vec![filter], None).await;
        let p = sub.next_publish().await;
        assert_eq!(p.payload.as_ref(), b"kept");
        assert!(
            p.retain,
            "retained messages sent on subscribe have RETAIN 1 (3.3.1.3)"
        );
    }
    sub.expect_no_publish(QUIET).await;
}

// [MQTT-3.3.1-10]: "If Retain Handling is set to 1 then if the subscription did not already exist, the Server
// MUST send all retained message matching the Topic Filter of the subscription to the Client, and if the
// subscription did exist the Server MUST NOT send the retained messages." [MQTT-3.3.1-11]: "If Retain
// Handling is set to 2, the Server MUST NOT send the retained messages." paho subscribes with 1 twice, then
// with 2 to a new filter: one retained message in all.
#[tokio::test]
async fn retain_handling_1_and_2_as_seen_by_paho() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let (mut publisher, _) = V5::connect(v5_options(&broker, "rh-pub")).await;
    publisher
        .publish("rh/t", V5QoS::AtLeastOnce, true, "kept")
        .await;
    let events = paho_run(
        &broker,
        json!({
            "client_id": "rh-paho",
            "steps": [
                {"op": "subscribe", "filter": "rh/t", "qos": 1, "retain_handling": 1},
                {"op": "wait_messages", "count": 1},
                {"op": "subscribe", "filter": "rh/t", "qos": 1, "retain_handling": 1},
                {"op": "subscribe", "filter": "rh/#", "qos": 1, "retain_handling": 2},
                {"op": "linger", "secs": 0.5},
            ],
        }),
    )
    .await;
    let subacks: Vec<&Value> = of_kind(&events, "suback")
        .iter()
        .map(|e| &e["reason_codes"])
        .collect();
    assert_eq!(subacks, [&json!([1]), &json!([1]), &json!([1])]);
    let messages = of_kind(&events, "message");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["payload"], "kept");
    assert_eq!(messages[0]["retain"], true);
}

// [MQTT-3.3.4-3], [MQTT-3.3.4-4]: "If the Server sends a single copy of the message it MUST include in the
// PUBLISH packet the Subscription Identifiers for all matching subscriptions which have a Subscription
// Identifiers, their order is not significant." (3.8.2.1.2: an identifier is a Variable Byte Integer up to
// 268,435,455.) paho's subscriptions: si/a (7), si/# (268435455), si/+ (none), other/+ (none); one PUBLISH
// per message, carrying the identifiers of the matching subscriptions that have one, and none otherwise.
#[tokio::test]
async fn one_publish_carries_every_matching_subscription_identifier() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "sub-ids",
            "steps": [
                {"op": "subscribe", "filter": "si/a", "qos": 1, "subscription_identifier": 7},
                {"op": "subscribe", "filter": "si/#", "qos": 1,
                    "subscription_identifier": 268_435_455},
                {"op": "subscribe", "filter": "si/+", "qos": 1},
                {"op": "subscribe", "filter": "other/+", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 3},
                {"op": "linger", "secs": 0.4},
            ],
        }),
    );
    paho.wait_for("ready").await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "si-pub")).await;
    for t in ["si/a", "si/b", "other/q"] {
        publisher.publish(t, V5QoS::AtLeastOnce, false, "x").await;
    }
    let events = paho.finish().await;
    let messages = of_kind(&events, "message");
    let ids = |m: &Value| -> Vec<u64> {
        let mut ids: Vec<u64> = match &m["properties"]["SubscriptionIdentifier"] {
            Value::Null => vec![],
            Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap()).collect(),
            other => vec![other.as_u64().unwrap()],
        };
        ids.sort_unstable();
        ids
    };
    let got: Vec<(String, Vec<u64>)> = messages
        .iter()
        .map(|m| (m["topic"].as_str().unwrap().to_owned(), ids(m)))
        .collect();
    assert_eq!(
        got,
        [
            ("si/a".to_owned(), vec![7, 268_435_455]),
            ("si/b".to_owned(), vec![268_435_455]),
            ("other/q".to_owned(), vec![]),
        ]
    );
}

// =========================================================================================================
// SUBACK and UNSUBACK reason codes
// =========================================================================================================

// 3.9.3 SUBACK Payload, 0x9E "Shared Subscriptions not supported: The Server does not support Shared
// Subscriptions for this Client" (the CONNACK said Shared Subscription Available 0, 3.2.2.3.13). With shared
// subscriptions switched off, paho and rumqttc both get it, and a plain filter in the same SUBSCRIBE is
// still granted.
#[tokio::test]
async fn a_shared_subscription_gets_suback_0x9e() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start_with(|c| c.shared_subscriptions = false);
    let events = paho_run(
        &broker,
        json!({
            "client_id": "sharer",
            "steps": [{"op": "subscribe", "filter": "$share/g/t", "qos": 1}],
        }),
    )
    .await;
    assert_eq!(of_kind(&events, "suback")[0]["reason_codes"], json!([0x9E]));

    let (mut client, _) = V5::connect(v5_options(&broker, "sharer-rumqttc")).await;
    let codes = client
        .subscribe_with(
            vec![
                Filter::new("$share/g/t", V5QoS::AtLeastOnce),
                Filter::new("plain/t", V5QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::SharedSubscriptionsNotSupported,
            SubscribeReasonCode::Success(V5QoS::AtLeastOnce)
        ]
    );
}

// 3.11.3 UNSUBACK Payload, 0x11 "No subscription existed: No matching Topic Filter is being used by the
// Client." paho unsubscribes from a filter it has (0x00), then from it again and from one it never had.
#[tokio::test]
async fn unsubscribing_a_filter_without_subscription_gets_unsuback_0x11() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let events = paho_run(
        &broker,
        json!({
            "client_id": "unsubscriber",
            "steps": [
                {"op": "subscribe", "filter": "us/a", "qos": 1},
                {"op": "unsubscribe", "filter": "us/a"},
                {"op": "unsubscribe", "filter": "us/a"},
                {"op": "unsubscribe", "filter": "never/+"},
            ],
        }),
    )
    .await;
    let codes: Vec<&Value> = of_kind(&events, "unsuback")
        .iter()
        .map(|e| &e["reason_codes"])
        .collect();
    assert_eq!(codes, [&json!([0]), &json!([0x11]), &json!([0x11])]);
}

// =========================================================================================================
// DISCONNECT from the server
// =========================================================================================================

// [MQTT-3.1.4-3]: "If the ClientID represents a Client already connected to the Server, the Server sends a
// DISCONNECT packet to the existing Client with Reason Code of 0x8E (Session taken over) as described in
// section 4.13 and MUST close the Network Connection of the existing Client." paho is the existing client;
// rumqttc takes over and stays connected.
#[tokio::test]
async fn takeover_sends_disconnect_0x8e_to_paho() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "twin",
            "steps": [{"op": "ready"}, {"op": "wait_disconnect"}],
        }),
    );
    paho.wait_for("ready").await;
    let (mut newcomer, _) = V5::connect(v5_options(&broker, "twin")).await;
    let disconnect = paho.wait_for("disconnect").await;
    assert_eq!(disconnect["reason_code"], 0x8E, "{disconnect}");
    assert_eq!(disconnect["from_server"], true, "{disconnect}");
    paho.finish().await;
    newcomer.expect_no_publish(QUIET).await;
}

// [MQTT-3.1.4-3] on the wire: the old connection gets DISCONNECT 0x8E, then the close.
#[tokio::test]
async fn takeover_sends_disconnect_0x8e_on_the_wire() {
    let broker = TestBroker::start();
    let (mut old, _) = raw_v5(&broker, "twin-raw", Properties::default()).await;
    let (_newcomer, _) = V5::connect(v5_options(&broker, "twin-raw")).await;
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
}

// [MQTT-3.1.2-22]: "If the Keep Alive value is non-zero and the Server does not receive an MQTT Control Packet
// from the Client within one and a half times the Keep Alive time period, it MUST close the Network
// Connection"; 3.14.2.1: it says why with DISCONNECT 0x8D (Keep Alive timeout). A silent client with a
// keepalive of 1 s is closed, not before the keepalive.
#[tokio::test]
async fn a_silent_client_gets_disconnect_0x8d() {
    let broker = TestBroker::start();
    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect("silent", true, 1, Properties::default()))
        .await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    let start = Instant::now();
    raw.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "closed after {:?}",
        start.elapsed()
    );
}

// [MQTT-3.2.2-21] with [MQTT-3.1.2-22]: the keepalive in force is the Server Keep Alive (max_keepalive_secs =
// 1), not the 60 s the client asked for, so a client silent for longer gets DISCONNECT 0x8D.
#[tokio::test]
async fn server_keep_alive_is_enforced_with_disconnect_0x8d() {
    let broker = TestBroker::start_with(|c| c.max_keepalive_secs = 1);
    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect("asked-60", true, 60, Properties::default()))
        .await;
    assert_eq!(props(&ack.properties).server_keep_alive, Some(1));
    raw.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
}

// 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its packet type ... is a
// Malformed Packet. If received, use a CONNACK or DISCONNECT packet with Reason Code 0x81 (Malformed
// Packet)". Also a property length running past the end of the packet (4.13.1: a packet that cannot be
// parsed). Each on its own connection.
#[tokio::test]
async fn malformed_packets_get_disconnect_0x81() {
    let broker = TestBroker::start();
    let cases: [(&str, &[u8]); 2] = [
        (
            "Session Expiry Interval (0x11) in a PUBLISH",
            &[0x30, 10, 0x00, 0x01, b't', 5, 0x11, 0, 0, 0, 10, b'x'],
        ),
        (
            "property length past the end",
            &[0x30, 5, 0x00, 0x01, b't', 20, b'x'],
        ),
    ];
    for (what, bytes) in cases {
        let (mut raw, _) = raw_v5(&broker, "malformed", Properties::default()).await;
        raw.send_bytes(bytes).await;
        let seen = raw.wait_closed().await;
        assert!(
            matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::MALFORMED_PACKET),
            "{what}: received {seen:?}"
        );
    }
}

// 3.3.2.3.2: "It is a Protocol Error to include the Payload Format Indicator more than once" (every PUBLISH
// property that may appear once says the same), and 4.13.1: a Protocol Error gets DISCONNECT 0x82.
#[tokio::test]
async fn a_repeated_publish_property_gets_disconnect_0x82() {
    let broker = TestBroker::start();
    let (mut raw, _) = raw_v5(&broker, "repeater", Properties::default()).await;
    // PUBLISH QoS 0, topic "t", properties: Payload Format Indicator 0 twice, payload "x".
    raw.send_bytes(&[0x30, 9, 0x00, 0x01, b't', 4, 0x01, 0, 0x01, 0, b'x'])
        .await;
    raw.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

// [MQTT-3.1.0-2]: "The Server MUST process a second CONNECT packet sent from a Client as a Protocol Error and
// close the Network Connection"; 4.13.1: DISCONNECT 0x82 first.
#[tokio::test]
async fn a_second_connect_gets_disconnect_0x82() {
    let broker = TestBroker::start();
    let (mut raw, _) = raw_v5(&broker, "twice", Properties::default()).await;
    raw.send(&Packet::Connect(Box::new(v5_connect(
        "twice",
        true,
        30,
        Properties::default(),
    ))))
    .await;
    raw.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

// [MQTT-3.3.2-12]: the server accepts every alias from 1 to the Topic Alias Maximum it sent (here 2);
// 3.3.2.3.4 and 3.14.2.1: an alias above it is answered with DISCONNECT 0x94 (Topic Alias invalid).
#[tokio::test]
async fn a_topic_alias_above_the_maximum_gets_disconnect_0x94() {
    let broker = TestBroker::start_with(|c| c.topic_alias_maximum = 2);
    let (mut raw, ack) = raw_v5(&broker, "aliaser", Properties::default()).await;
    assert_eq!(props(&ack.properties).topic_alias_maximum, Some(2));
    let with_alias = |alias| Properties {
        topic_alias: Some(alias),
        ..Properties::default()
    };
    raw.send(&v5_publish(
        topic("ta/ok"),
        QoS::AtLeastOnce,
        Some(1),
        b"x",
        with_alias(2),
    ))
    .await;
    match raw.recv().await {
        Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{ack:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    raw.send(&v5_publish(
        topic("ta/no"),
        QoS::AtLeastOnce,
        Some(2),
        b"x",
        with_alias(3),
    ))
    .await;
    raw.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
}

/// A QoS 1 PUBLISH on "big" whose whole packet is `size` bytes (remaining length of two bytes).
fn publish_of_size(size: usize, packet_id: u16) -> Vec<u8> {
    // Fixed header 3 bytes, topic 2 + 3, packet id 2, property length 1.
    let payload = vec![b'x'; size - 11];
    let mut out = BytesMut::new();
    let packet = v5_publish(
        topic("big"),
        QoS::AtLeastOnce,
        Some(packet_id),
        &payload,
        Properties::default(),
    );
    encode_packet_at(&packet, ProtocolLevel::V5, &mut out).unwrap();
    assert_eq!(out.len(), size);
    out.to_vec()
}

// 3.2.2.3.6 Maximum Packet Size: the server's limit (max_packet_size_bytes = 1024) is the whole packet; a
// packet of exactly 1024 bytes is accepted, and for a larger one "the Server uses DISCONNECT with Reason
// Code 0x95 (Packet too large)" (3.14.2.1, 4.13).
#[tokio::test]
async fn a_packet_above_the_maximum_size_gets_disconnect_0x95() {
    let broker = TestBroker::start_with(|c| c.max_packet_size_bytes = 1024);
    let (mut raw, ack) = raw_v5(&broker, "big-sender", Properties::default()).await;
    assert_eq!(props(&ack.properties).maximum_packet_size, Some(1024));
    raw.send_bytes(&publish_of_size(1024, 1)).await;
    match raw.recv().await {
        Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{ack:?}"),
        other => panic!("expected PUBACK for a packet of exactly the maximum, got {other:?}"),
    }
    // The broker may close while this is still being written.
    let _ = raw.try_send_bytes(&publish_of_size(1025, 2)).await;
    raw.expect_disconnect(ReasonCode::PACKET_TOO_LARGE).await;
}

// [MQTT-3.1.2-24]: "The Server MUST NOT send packets exceeding Maximum Packet Size to the Client";
// [MQTT-3.1.2-25]: "Where a Packet is too large to send, the Server MUST discard it without sending it and
// then behave as if it had completed sending that Application Message." paho allows 256 bytes: a 1000-byte
// message is dropped, the next small one arrives and the connection stays up.
#[tokio::test]
async fn messages_above_the_clients_maximum_packet_size_are_not_sent() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "small-reader",
            "connect_properties": {"MaximumPacketSize": 256},
            "steps": [
                {"op": "subscribe", "filter": "mps/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 1},
                {"op": "linger", "secs": 0.4},
                {"op": "expect_connected"},
            ],
        }),
    );
    paho.wait_for("ready").await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "mps-pub")).await;
    publisher
        .publish_with("mps/big", V5QoS::AtLeastOnce, false, vec![b'x'; 1000], None)
        .await;
    publisher
        .publish("mps/small", V5QoS::AtLeastOnce, false, "small")
        .await;
    let events = paho.finish().await;
    assert_eq!(paho_payloads(&events), ["small"]);
}

// 3.14.2.1 and 4.13: the server closing connections because it stops says so with DISCONNECT 0x8B (Server
// shutting down). paho reports the server's DISCONNECT; the raw client sees it on the wire. (rumqttc 0.25
// cannot take part: it does not parse a DISCONNECT without a Property Length, which 3.14.2.2.1 allows, "If
// the Remaining Length is less than 2, a value of 0 is used", and reports the connection as aborted.)
#[tokio::test]
async fn stopping_the_broker_sends_disconnect_0x8b() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "bystander",
            "steps": [{"op": "ready"}, {"op": "wait_disconnect", "timeout": 12}],
        }),
    );
    paho.wait_for("ready").await;
    let (mut raw, _) = raw_v5(&broker, "bystander-raw", Properties::default()).await;
    stop_broker(broker).await;
    raw.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        .await;
    let disconnect = paho.wait_for("disconnect").await;
    assert_eq!(disconnect["reason_code"], 0x8B, "{disconnect}");
    assert_eq!(disconnect["from_server"], true, "{disconnect}");
    paho.finish().await;
}

// =========================================================================================================
// Payload Format Indicator
// =========================================================================================================

// 3.3.2.3.2: "A receiver of a PUBLISH with Payload Format Indicator 1 ... may validate that the Payload is of
// the format indicated, and if it is not send a PUBACK, PUBREC, or DISCONNECT with Reason Code of 0x99
// (Payload format invalid)". paho's non-UTF-8 payload marked UTF-8 gets PUBACK 0x99 and reaches nobody; a
// valid one gets 0x00 and is delivered.
#[tokio::test]
async fn a_payload_marked_utf8_that_is_not_gets_puback_0x99() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let (mut sub, _) = V5::connect(v5_options(&broker, "pfi-sub")).await;
    sub.subscribe("pfi/#", V5QoS::AtLeastOnce).await;
    let utf8 = json!({"PayloadFormatIndicator": 1});
    let events = paho_run(
        &broker,
        json!({
            "client_id": "pfi-pub",
            "steps": [
                {"op": "publish", "topic": "pfi/bad", "payload_hex": "fffe", "qos": 1,
                    "properties": utf8},
                {"op": "publish", "topic": "pfi/good", "payload": "ok", "qos": 1,
                    "properties": utf8},
            ],
        }),
    )
    .await;
    let codes: Vec<&Value> = of_kind(&events, "published")
        .iter()
        .map(|e| &e["reason_code"])
        .collect();
    assert_eq!(codes, [0x99, 0]);
    let p = sub.next_publish().await;
    assert_eq!(text(&p.topic), "pfi/good");
    sub.expect_no_publish(QUIET).await;
}

// =========================================================================================================
// MQTT 3.1.1 and 5.0 clients together
// =========================================================================================================

// A 3.1.1 subscriber gets a 5.0 publisher's message as a 3.1.1 PUBLISH, without properties (MQTT 3.1.1
// section 3.3 has none): mosquitto_sub -V mqttv311 prints topic, payload, QoS and RETAIN exactly, and a raw
// 3.1.1 client decodes the packet at level 4 with the exact payload.
#[tokio::test]
async fn a_v311_subscriber_gets_a_v5_publishers_message() {
    if !have_mosquitto_clients().await {
        return;
    }
    let broker = TestBroker::start();
    let (mut raw_v3, _) = broker.raw_connected("v3-raw", true, 30).await;
    raw_v3.subscribe(1, "mix/t", QoS::AtLeastOnce).await;
    let sub = MosquittoSub::start(
        &broker,
        &[
            "-V",
            "mqttv311",
            "-t",
            "mix/t",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "8",
            "-F",
            "MSG %t|%p|%q|%r",
        ],
    )
    .await;
    let (mut publisher, _) = V5::connect(v5_options(&broker, "v5-pub")).await;
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        content_type: Some("text/plain".to_owned()),
        response_topic: Some("mix/reply".to_owned()),
        correlation_data: Some(Bytes::from_static(b"42")),
        user_properties: sample_user_properties(),
        ..PublishProperties::default()
    };
    publisher
        .publish_with(
            "mix/t",
            V5QoS::AtLeastOnce,
            false,
            "from v5",
            Some(properties),
        )
        .await;
    assert_eq!(sub.output().await, ["mix/t|from v5|1|0"]);
    let p = raw_v3.recv_publish().await;
    assert_eq!(p.topic.as_str(), "mix/t");
    assert_eq!(p.payload.as_ref(), b"from v5");
    assert_eq!(p.properties, None);
}

// The other way: a 5.0 subscriber (paho) gets a 3.1.1 publisher's (mosquitto_pub -V mqttv311) message with
// its topic, payload and QoS, and no properties the publisher never gave.
#[tokio::test]
async fn a_v5_subscriber_gets_a_v311_publishers_message() {
    if !have_paho().await || !have_mosquitto_clients().await {
        return;
    }
    let broker = TestBroker::start();
    let mut paho = start_paho(
        &broker,
        json!({
            "client_id": "v5-sub",
            "steps": [
                {"op": "subscribe", "filter": "mix/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 1},
            ],
        }),
    );
    paho.wait_for("ready").await;
    mosquitto_pub(
        &broker,
        &["-V", "mqttv311", "-t", "mix/v3", "-q", "1", "-m", "from v3"],
    )
    .await;
    let events = paho.finish().await;
    let message = of_kind(&events, "message")[0];
    assert_eq!(message["topic"], "mix/v3");
    assert_eq!(message["payload"], "from v3");
    assert_eq!(message["qos"], 1);
    assert_eq!(message["retain"], false);
    assert_eq!(message["properties"], json!({}), "{message}");
}

// =========================================================================================================
// Enhanced authentication
// =========================================================================================================

// [MQTT-4.12.0-1]: "If the Server does not support the Authentication Method supplied by the Client, it MAY
// send a CONNACK with a Reason Code of 0x8C (Bad authentication method) or 0x87 (Not Authorized) as
// described in section 4.13 and MUST close the Network Connection." Methods no server knows get 0x8C: for
// paho, for rumqttc, and on the wire, where the connection is then closed.
#[tokio::test]
async fn an_unknown_authentication_method_gets_connack_0x8c() {
    if !have_paho().await {
        return;
    }
    let broker = TestBroker::start();
    let events = paho_run(
        &broker,
        json!({
            "client_id": "scram",
            "connect_properties": {
                "AuthenticationMethod": "X-UNKNOWN-METHOD-1",
                "AuthenticationData": {"hex": "6e2c2c6e3d75736572"},
            },
        }),
    )
    .await;
    assert_eq!(of_kind(&events, "connack")[0]["reason_code"], 0x8C);

    let mut options = v5_options(&broker, "scram-rumqttc");
    options.set_authentication_method(Some("X-UNKNOWN-METHOD-2".to_owned()));
    match V5::try_connect(options).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadAuthenticationMethod)
        }
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok((_, ack)) => panic!("accepted: {ack:?}"),
    }

    let mut raw = RawV5::open(broker.addr()).await;
    let ack = raw
        .connect(v5_connect(
            "scram-raw",
            true,
            30,
            Properties {
                authentication_method: Some("X-UNKNOWN-METHOD-3".into()),
                ..Properties::default()
            },
        ))
        .await;
    assert_eq!(ack.code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(raw.wait_closed().await, vec![]);
}
