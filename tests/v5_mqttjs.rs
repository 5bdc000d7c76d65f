//! MQTT 5.0 against the real broker with MQTT.js (the npm package `mqtt`, 5.x) connecting with
//! `protocolVersion: 5`, one Node process per client driven by tests/v5/mqttjs_client.js. Each scenario runs
//! twice, as `NAME::tcp` (mqtt://127.0.0.1:PORT) and as `NAME::ws` (ws://127.0.0.1:PORT/mqtt, the `ws_bind`
//! listener), and cites the part of the MQTT 5.0 specification (OASIS Standard, March 2019) it checks. rumqttc's
//! v5 client (over TCP) is the second client where a scenario crosses clients.
//!
//! MQTT.js comes from tests/v5/node_modules, installed by `npm ci` in tests/v5 from package.json and
//! package-lock.json (`.ci/run` does it); the script loads it from there and nowhere else. A missing `node`
//! or module fails the tests under HARBORMQ_CI and skips them elsewhere. Every broker listens on
//! 127.0.0.1:0 with a data directory of its own, and every wait is bounded: each step of the script gives up
//! after 5 s, each script run after its deadline, and each read of its output here after `MQTTJS_WAIT`.

mod common;
mod needs;
mod scripted;
mod v5client;

use bytes::Bytes;
use common::{TestBroker, WAIT};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet as V5Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::{Event, MqttOptions};
use scripted::{of_kind, Scripted};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;
use v5client::V5;

use tokio::process::Command;
use tokio::time::{timeout, Instant};

// ---------------------------------------------------------------------------------------------------------
// The broker and the two transports.
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Ws,
}

impl Transport {
    fn other(self) -> Transport {
        match self {
            Transport::Tcp => Transport::Ws,
            Transport::Ws => Transport::Tcp,
        }
    }
}

/// A broker with its WebSocket listener on too, both on 127.0.0.1:0, otherwise adjusted by `tweak`.
fn broker_with(tweak: impl FnOnce(&mut harbormq::Config)) -> TestBroker {
    TestBroker::start_with(|c| {
        c.ws_bind = "127.0.0.1:0".to_owned();
        tweak(c);
    })
}

fn broker() -> TestBroker {
    broker_with(|_| {})
}

/// The URL MQTT.js connects to over `transport`.
fn url(broker: &TestBroker, transport: Transport) -> String {
    match transport {
        Transport::Tcp => format!("mqtt://127.0.0.1:{}", broker.addr().port()),
        Transport::Ws => format!(
            "ws://{}/mqtt",
            broker
                .handle()
                .ws_addr()
                .expect("the WebSocket listener is off")
        ),
    }
}

/// Runs each named scenario `async fn NAME(Transport)` as two tests, `NAME::tcp` and `NAME::ws`.
macro_rules! over_tcp_and_ws {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn tcp() {
                    super::$name(super::Transport::Tcp).await
                }

                #[tokio::test]
                async fn ws() {
                    super::$name(super::Transport::Ws).await
                }
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------------------
// MQTT.js, one Node process per client, driven by tests/v5/mqttjs_client.js.
// ---------------------------------------------------------------------------------------------------------

const MQTTJS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/v5");
const MQTTJS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/v5/mqttjs_client.js");
const MQTTJS_MODULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/v5/node_modules");

/// Bound on one wait for the script's output (its own steps give up after 5 s and report it).
const MQTTJS_WAIT: Duration = Duration::from_secs(15);

/// `node` with the fixed module directory, run from tests/v5.
fn node() -> Command {
    let mut command = Command::new("node");
    command
        .current_dir(MQTTJS_DIR)
        .env("NODE_PATH", MQTTJS_MODULES)
        .kill_on_drop(true);
    command
}

/// Why MQTT.js 5.x cannot be run, checked once per test binary.
async fn mqttjs_problem() -> Option<String> {
    static PROBLEM: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    PROBLEM
        .get_or_init(|| async {
            let run = node()
                .args([MQTTJS_SCRIPT, "--version"])
                .stdin(Stdio::null())
                .output();
            let output = match timeout(Duration::from_secs(30), run).await {
                Err(_) => return Some("node did not answer within 30 s".to_owned()),
                Ok(Err(e)) => {
                    return Some(format!(
                        "node cannot be run ({e}): install the Debian packages nodejs and npm"
                    ))
                }
                Ok(Ok(output)) => output,
            };
            if !output.status.success() {
                return Some(format!(
                    "MQTT.js is not installed in {MQTTJS_MODULES} (run `npm ci` in tests/v5): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            (!version.starts_with("5."))
                .then(|| format!("MQTT.js {version} is installed in {MQTTJS_MODULES}; these tests need 5.x (`npm ci` in tests/v5)"))
        })
        .await
        .clone()
}

/// Whether MQTT.js can be used; if not, fails under HARBORMQ_CI and otherwise says why the test skips.
async fn have_mqttjs() -> bool {
    match mqttjs_problem().await {
        None => true,
        Some(problem) => {
            needs::missing(&problem);
            false
        }
    }
}

/// An MQTT.js client on `broker` over `transport` running `plan` (see the script's documentation).
fn start_mqttjs(broker: &TestBroker, transport: Transport, mut plan: Value) -> Scripted {
    plan["url"] = json!(url(broker, transport));
    let name = format!(
        "MQTT.js {:?} over {transport:?}",
        plan["client_id"].as_str().unwrap_or("")
    );
    let mut command = node();
    command.arg(MQTTJS_SCRIPT).arg(plan.to_string());
    Scripted::start(name, command, MQTTJS_WAIT)
}

/// Runs a plan that needs nothing from the test while it runs; returns every event.
async fn run(broker: &TestBroker, transport: Transport, plan: Value) -> Vec<Value> {
    start_mqttjs(broker, transport, plan).finish().await
}

/// The one CONNACK of a run.
fn connack(events: &[Value]) -> &Value {
    let acks = of_kind(events, "connack");
    assert_eq!(acks.len(), 1, "one CONNACK expected: {events:?}");
    acks[0]
}

/// The payloads (as text) of the "message" events.
fn payloads(events: &[Value]) -> Vec<String> {
    of_kind(events, "message")
        .iter()
        .map(|m| m["payload"].as_str().unwrap_or("<not UTF-8>").to_owned())
        .collect()
}

/// (topic as MQTT.js resolved it, payload) of the "message" events.
fn topics_and_payloads(events: &[Value]) -> Vec<(String, String)> {
    of_kind(events, "message")
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap_or("<not UTF-8>").to_owned(),
            )
        })
        .collect()
}

/// The reason codes of the "published" events.
fn published_codes(events: &[Value]) -> Vec<u64> {
    of_kind(events, "published")
        .iter()
        .map(|e| e["reason_code"].as_u64().unwrap())
        .collect()
}

/// The reason codes of each SUBACK.
fn suback_codes(events: &[Value]) -> Vec<Value> {
    of_kind(events, "suback")
        .iter()
        .map(|e| e["reason_codes"].clone())
        .collect()
}

/// A publish step.
fn publish(topic: &str, payload: &str, qos: u8) -> Value {
    json!({"op": "publish", "topic": topic, "payload": payload, "qos": qos})
}

/// Pairs as the script prints User Properties.
fn pairs(list: &[(&str, &str)]) -> Value {
    json!(list.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>())
}

fn owned_pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// rumqttc's MQTT 5.0 client (TCP), the other side of the scenarios that cross clients.
// ---------------------------------------------------------------------------------------------------------

/// The steps of these scenarios on rumqttc's MQTT 5.0 client (`v5client::V5`).
impl V5 {
    /// Connects with Clean Start and a 30 s keepalive; panics unless the broker accepts.
    async fn connect(broker: &TestBroker, client_id: &str) -> V5 {
        V5::connect_with(broker, client_id, |_| {}).await
    }

    async fn connect_with(
        broker: &TestBroker,
        client_id: &str,
        tweak: impl FnOnce(&mut MqttOptions),
    ) -> V5 {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.addr().port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(1 << 20));
        tweak(&mut options);
        V5::connect_within(options, WAIT).await.0
    }

    /// Subscribes to one filter at QoS 1 and checks the grant.
    async fn subscribe(&mut self, filter: &str) {
        self.handle
            .subscribe_many(vec![Filter::new(filter, V5QoS::AtLeastOnce)])
            .await
            .unwrap();
        let codes = self
            .wait_event("SUBACK", |e| match e {
                Event::Incoming(V5Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            codes,
            [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
                V5QoS::AtLeastOnce
            )]
        );
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        properties: Option<PublishProperties>,
    ) {
        let payload = payload.into();
        match properties {
            Some(p) => {
                self.handle
                    .publish_with_properties(topic, V5QoS::AtLeastOnce, false, payload, p)
                    .await
            }
            None => {
                self.handle
                    .publish(topic, V5QoS::AtLeastOnce, false, payload)
                    .await
            }
        }
        .unwrap();
        self.wait_event("PUBACK", |e| {
            matches!(e, Event::Incoming(V5Packet::PubAck(_))).then_some(())
        })
        .await;
    }
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// =========================================================================================================
// 1. CONNACK properties
// =========================================================================================================

over_tcp_and_ws!(
    connack_properties_seen_by_mqttjs,
    the_maximum_packet_size_mqttjs_asks_for_is_respected
);

// 3.2.2.3 CONNACK Properties as MQTT.js reads them: Receive Maximum (3.2.2.3.3), Maximum Packet Size
// (3.2.2.3.6) and Topic Alias Maximum (3.2.2.3.8) are the server's configured limits (7, 4096 and 3 here; the
// defaults 1024, 1 MiB and 64 on a second broker), Retain, Wildcard Subscription, Subscription Identifiers
// and Shared Subscription Available are on, and Maximum QoS is absent since QoS 2 is supported (3.2.2.3.4).
// [MQTT-3.1.3-6], [MQTT-3.1.3-7]: a zero-length ClientID with Clean Start gets a unique identifier returned
// as the Assigned Client Identifier (3.2.2.3.7); two such clients get different ones; a client that gave
// its own gets none. A new session has Session Present 0 [MQTT-3.2.2-2].
async fn connack_properties_seen_by_mqttjs(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let limited = broker_with(|c| {
        c.receive_maximum = 7;
        c.topic_alias_maximum = 3;
        c.max_packet_size_bytes = 4096;
    });
    let plan = json!({"client_id": "", "clean_start": true});
    let first = run(&limited, transport, plan.clone()).await;
    let ack = connack(&first);
    assert_eq!(ack["reason_code"], 0, "{ack}");
    assert_eq!(ack["session_present"], false, "{ack}");
    let p = &ack["properties"];
    assert_eq!(p["receiveMaximum"], 7, "{p}");
    assert_eq!(p["topicAliasMaximum"], 3, "{p}");
    assert_eq!(p["maximumPacketSize"], 4096, "{p}");
    let assigned = p["assignedClientIdentifier"]
        .as_str()
        .unwrap_or_else(|| panic!("no Assigned Client Identifier: {p}"))
        .to_owned();
    assert!(!assigned.is_empty(), "{p}");

    let second = run(&limited, transport, plan).await;
    let other = connack(&second)["properties"]["assignedClientIdentifier"].clone();
    assert!(other.is_string(), "{second:?}");
    assert_ne!(
        other,
        json!(assigned),
        "assigned identifiers must be unique"
    );

    let default = broker();
    let named = run(&default, transport, json!({"client_id": "named"})).await;
    let ack = connack(&named);
    assert_eq!(ack["reason_code"], 0, "{ack}");
    let p = &ack["properties"];
    assert_eq!(p["receiveMaximum"], 1024, "{p}");
    assert_eq!(p["topicAliasMaximum"], 64, "{p}");
    assert_eq!(p["maximumPacketSize"], 1024 * 1024, "{p}");
    // Byte properties are booleans in MQTT.js.
    assert_eq!(p["retainAvailable"], true, "{p}");
    assert_eq!(p["wildcardSubscriptionAvailable"], true, "{p}");
    assert_eq!(p["subscriptionIdentifiersAvailable"], true, "{p}");
    assert_eq!(p["sharedSubscriptionAvailable"], true, "{p}");
    assert!(p.get("maximumQoS").is_none(), "{p}");
    assert!(p.get("assignedClientIdentifier").is_none(), "{p}");
}

// 3.1.2.11.4 Maximum Packet Size in CONNECT: "The Server MUST NOT send packets exceeding Maximum Packet Size
// to the Client" [MQTT-3.1.2-24]; a message that would make a larger PUBLISH is discarded as if it had been
// sent [MQTT-3.1.2-25]. MQTT.js asks for 256 bytes (and fails the run on any larger packet). rumqttc
// publishes a 1000-byte payload, then a short payload whose User Properties make the PUBLISH larger than
// 256 bytes, then a small message: MQTT.js gets only the small one and stays connected.
async fn the_maximum_packet_size_mqttjs_asks_for_is_respected(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut client = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "small-packets",
            "connect_properties": {"maximumPacketSize": 256},
            "steps": [
                {"op": "subscribe", "filter": "mp/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_payload", "payload": "small"},
                {"op": "linger", "secs": 0.3},
                {"op": "expect_connected"},
            ],
        }),
    );
    client.wait_for("ready").await;
    let mut publisher = V5::connect(&broker, "mp-pub").await;
    publisher.publish("mp/big", vec![b'x'; 1000], None).await;
    let heavy = PublishProperties {
        user_properties: owned_pairs(&[("padding", &"p".repeat(250))]),
        ..PublishProperties::default()
    };
    publisher.publish("mp/heavy", "short", Some(heavy)).await;
    publisher.publish("mp/small", "small", None).await;
    publisher.disconnect().await;
    let events = client.finish().await;
    assert_eq!(payloads(&events), ["small"]);
}

// =========================================================================================================
// 2. Session Expiry Interval
// =========================================================================================================

over_tcp_and_ws!(
    session_expiry_keeps_the_subscription_and_offline_messages,
    session_expiry_zero_ends_the_session
);

// [MQTT-3.1.2-23]: with a Session Expiry Interval above 0 the server keeps the session after the connection
// closes. MQTT.js subscribes with Session Expiry Interval 300 and disconnects; another MQTT.js publishes
// three QoS 1 messages; the first reconnects with Clean Start 0 and gets Session Present 1 [MQTT-3.2.2-3]
// and the three messages, in order (4.6), each once.
async fn session_expiry_keeps_the_subscription_and_offline_messages(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let first = run(
        &broker,
        transport,
        json!({
            "client_id": "kept",
            "clean_start": true,
            "connect_properties": {"sessionExpiryInterval": 300},
            "steps": [
                {"op": "subscribe", "filter": "se/t", "qos": 1},
                {"op": "disconnect"},
            ],
        }),
    )
    .await;
    assert_eq!(connack(&first)["session_present"], false);
    assert_eq!(suback_codes(&first), [json!([1])]);

    let publisher = run(
        &broker,
        transport,
        json!({
            "client_id": "se-pub",
            "steps": [publish("se/t", "one", 1), publish("se/t", "two", 1), publish("se/t", "three", 1)],
        }),
    )
    .await;
    assert_eq!(published_codes(&publisher), [0, 0, 0]);

    let second = run(
        &broker,
        transport,
        json!({
            "client_id": "kept",
            "clean_start": false,
            "connect_properties": {"sessionExpiryInterval": 300},
            "steps": [
                {"op": "wait_messages", "count": 3},
                // A quiet window in which a duplicate would show.
                {"op": "linger", "secs": 0.3},
            ],
        }),
    )
    .await;
    assert_eq!(connack(&second)["session_present"], true);
    assert_eq!(payloads(&second), ["one", "two", "three"]);
    for m in of_kind(&second, "message") {
        assert_eq!(m["topic"], "se/t", "{m}");
        assert_eq!(m["qos"], 1, "{m}");
    }
}

// 3.1.2.11.2: "If the Session Expiry Interval is absent the value 0 is used. If it is set to 0, or is absent,
// the Session ends when the Network Connection is closed." MQTT.js connects with Clean Start 0 and no
// Session Expiry Interval, subscribes and disconnects. A message published meanwhile matches no
// subscription (PUBACK 0x10). Back with Clean Start 0, it finds no session (Session Present 0, [MQTT-3.2.2-2]) and nothing
// queued: it subscribes again and publishes a marker to itself, and the marker is the only message it gets
// (a queued message would have come first, right after CONNACK).
async fn session_expiry_zero_ends_the_session(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let first = run(
        &broker,
        transport,
        json!({
            "client_id": "brief",
            "clean_start": false,
            "steps": [
                {"op": "subscribe", "filter": "se0/t", "qos": 1},
                {"op": "disconnect"},
            ],
        }),
    )
    .await;
    assert_eq!(suback_codes(&first), [json!([1])]);

    let publisher = run(
        &broker,
        transport,
        json!({"client_id": "se0-pub", "steps": [publish("se0/t", "meanwhile", 1)]}),
    )
    .await;
    // 3.4.2.1: PUBACK 0x10 "No matching subscribers": the session, and so its subscription, ended when the
    // broker closed the first connection, which MQTT.js saw before it exited.
    assert_eq!(published_codes(&publisher), [0x10]);

    let second = run(
        &broker,
        transport,
        json!({
            "client_id": "brief",
            "clean_start": false,
            "connect_properties": {"sessionExpiryInterval": 300},
            "steps": [
                {"op": "subscribe", "filter": "se0/t", "qos": 1},
                publish("se0/t", "marker", 1),
                {"op": "wait_payload", "payload": "marker"},
            ],
        }),
    )
    .await;
    assert_eq!(
        connack(&second)["session_present"],
        false,
        "the session should have ended"
    );
    assert_eq!(payloads(&second), ["marker"]);
}

// =========================================================================================================
// 3. Message properties
// =========================================================================================================

over_tcp_and_ws!(
    message_properties_from_mqttjs_reach_mqttjs_and_rumqttc,
    message_properties_from_rumqttc_reach_mqttjs
);

/// User Properties MQTT.js can send and show in full: names not in alphabetical order, a repeated name's
/// values together (MQTT.js keeps User Properties as an object of names).
const USER_PROPERTIES: [(&str, &str); 5] = [
    ("z", "1"),
    ("a", "2"),
    ("a", "3"),
    ("m", "4"),
    ("ünï", "cödé"),
];

// 3.3.2.3: the server forwards Payload Format Indicator [MQTT-3.3.2-4], Content Type [MQTT-3.3.2-20],
// Response Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16] and User Properties [MQTT-3.3.2-17]
// unaltered, the User Properties in their order [MQTT-3.3.2-18]. MQTT.js publishes at QoS 2; an MQTT.js
// subscriber (QoS 2) and a rumqttc subscriber (QoS 1, and it shows the order as it was on the wire) get them
// unchanged, and no Topic Alias that was not sent. The Message Expiry Interval of 3600 s arrives as what is
// left of it, "the received value minus the time that the Application Message has been waiting in the
// Server" [MQTT-3.3.2-6]: a few seconds at most here.
async fn message_properties_from_mqttjs_reach_mqttjs_and_rumqttc(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut rumqttc = V5::connect(&broker, "props-rumqttc").await;
    rumqttc.subscribe("props/#").await;
    let mut sub = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "props-sub",
            "steps": [
                {"op": "subscribe", "filter": "props/#", "qos": 2},
                {"op": "ready"},
                {"op": "wait_messages", "count": 1},
            ],
        }),
    );
    sub.wait_for("ready").await;
    let publisher = run(
        &broker,
        transport,
        json!({
            "client_id": "props-pub",
            "steps": [{"op": "publish", "topic": "props/a", "payload": "héllo", "qos": 2,
                "properties": {
                    "payloadFormatIndicator": true,
                    "messageExpiryInterval": 3600,
                    "contentType": "text/plain; charset=utf-8",
                    "responseTopic": "reply/here",
                    "correlationData": {"hex": "00ff10"},
                    "userProperties": pairs(&USER_PROPERTIES),
                }}],
        }),
    )
    .await;
    assert_eq!(published_codes(&publisher), [0]);

    let events = sub.finish().await;
    let messages = of_kind(&events, "message");
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = messages[0];
    assert_eq!(m["topic"], "props/a");
    assert_eq!(m["payload"], "héllo");
    assert_eq!(m["qos"], 2);
    let p = &m["properties"];
    assert_eq!(p["payloadFormatIndicator"], true, "{p}");
    assert_eq!(p["contentType"], "text/plain; charset=utf-8", "{p}");
    assert_eq!(p["responseTopic"], "reply/here", "{p}");
    assert_eq!(p["correlationData"], json!({"hex": "00ff10"}), "{p}");
    assert_eq!(p["userProperties"], pairs(&USER_PROPERTIES), "{p}");
    let expiry = p["messageExpiryInterval"].as_u64().unwrap_or(0);
    assert!((3590..=3600).contains(&expiry), "{p}");
    assert!(p.get("topicAlias").is_none(), "{p}");

    let p = rumqttc.next_publish().await;
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
    assert_eq!(props.user_properties, owned_pairs(&USER_PROPERTIES));
    let expiry = props.message_expiry_interval.unwrap_or(0);
    assert!((3590..=3600).contains(&expiry), "expiry {expiry}");
    assert_eq!(props.topic_alias, None);
    rumqttc.disconnect().await;
}

// The same statements the other way: rumqttc publishes a binary payload with Payload Format Indicator 0,
// Content Type, Response Topic, Correlation Data and User Properties; MQTT.js gets them unchanged. A second
// message has User Properties whose names interleave (a, b, a): MQTT.js can only show them grouped by name,
// so the check there is that each name's values keep their order and the names their first-seen order.
async fn message_properties_from_rumqttc_reach_mqttjs(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut sub = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "props-mqttjs",
            "steps": [
                {"op": "subscribe", "filter": "props/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 2},
            ],
        }),
    );
    sub.wait_for("ready").await;
    let mut publisher = V5::connect(&broker, "props-rumqttc").await;
    let properties = PublishProperties {
        payload_format_indicator: Some(0),
        content_type: Some("application/octet-stream".to_owned()),
        response_topic: Some("reply/there".to_owned()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 0, 255])),
        user_properties: owned_pairs(&USER_PROPERTIES),
        ..PublishProperties::default()
    };
    publisher
        .publish(
            "props/b",
            Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
            Some(properties),
        )
        .await;
    let interleaved = PublishProperties {
        user_properties: owned_pairs(&[("a", "1"), ("b", "2"), ("a", "3")]),
        ..PublishProperties::default()
    };
    publisher
        .publish("props/c", "interleaved", Some(interleaved))
        .await;
    publisher.disconnect().await;

    let events = sub.finish().await;
    let messages = of_kind(&events, "message");
    assert_eq!(messages.len(), 2, "{messages:?}");
    let m = messages[0];
    assert_eq!(m["topic"], "props/b");
    assert_eq!(m["payload_hex"], "deadbeef");
    let p = &m["properties"];
    assert_eq!(p["payloadFormatIndicator"], false, "{p}");
    assert_eq!(p["contentType"], "application/octet-stream", "{p}");
    assert_eq!(p["responseTopic"], "reply/there", "{p}");
    assert_eq!(p["correlationData"], json!({"hex": "010200ff"}), "{p}");
    assert_eq!(p["userProperties"], pairs(&USER_PROPERTIES), "{p}");
    assert!(p.get("messageExpiryInterval").is_none(), "{p}");
    assert!(p.get("topicAlias").is_none(), "{p}");

    let m = messages[1];
    assert_eq!(m["topic"], "props/c");
    assert_eq!(
        m["properties"]["userProperties"],
        pairs(&[("a", "1"), ("a", "3"), ("b", "2")]),
        "{m}"
    );
}

// =========================================================================================================
// 4. Request / response
// =========================================================================================================

over_tcp_and_ws!(request_response_through_an_mqttjs_responder);

// 4.10 Request / Response: the requester publishes with a Response Topic (3.3.2.3.5) and Correlation Data
// (3.3.2.3.6); the responder publishes its answer to that Response Topic with the same Correlation Data, and
// the server forwards both properties unaltered [MQTT-3.3.2-15], [MQTT-3.3.2-16]. An MQTT.js responder
// answers two MQTT.js requests and one rumqttc request; each requester gets the answers to its own requests
// on its own response topic, matched by Correlation Data.
async fn request_response_through_an_mqttjs_responder(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut responder = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "responder",
            "respond": {"prefix": "re:"},
            "steps": [
                {"op": "subscribe", "filter": "svc/echo", "qos": 1},
                {"op": "ready"},
                {"op": "wait_responded", "count": 3},
            ],
        }),
    );
    responder.wait_for("ready").await;

    let request = |payload: &str, correlation: &str| {
        json!({"op": "publish", "topic": "svc/echo", "payload": payload, "qos": 1,
            "properties": {"responseTopic": "reply/mqttjs", "correlationData": {"hex": correlation}}})
    };
    let requester = run(
        &broker,
        transport,
        json!({
            "client_id": "requester",
            "steps": [
                {"op": "subscribe", "filter": "reply/mqttjs", "qos": 1},
                request("ping", "c0ffee01"),
                request("pong", "c0ffee02"),
                {"op": "wait_messages", "count": 2},
            ],
        }),
    )
    .await;
    assert_eq!(published_codes(&requester), [0, 0]);
    let mut answers: Vec<(String, String, Value)> = of_kind(&requester, "message")
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap().to_owned(),
                m["properties"]["correlationData"].clone(),
            )
        })
        .collect();
    answers.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        answers,
        [
            (
                "reply/mqttjs".to_owned(),
                "re:ping".to_owned(),
                json!({"hex": "c0ffee01"})
            ),
            (
                "reply/mqttjs".to_owned(),
                "re:pong".to_owned(),
                json!({"hex": "c0ffee02"})
            ),
        ]
    );

    let mut rumqttc = V5::connect(&broker, "requester-rumqttc").await;
    rumqttc.subscribe("reply/rumqttc").await;
    let properties = PublishProperties {
        response_topic: Some("reply/rumqttc".to_owned()),
        correlation_data: Some(Bytes::from_static(b"\x00id-3")),
        ..PublishProperties::default()
    };
    rumqttc.publish("svc/echo", "third", Some(properties)).await;
    let answer = rumqttc.next_publish().await;
    assert_eq!(text(&answer.topic), "reply/rumqttc");
    assert_eq!(answer.payload.as_ref(), b"re:third");
    assert_eq!(
        answer
            .properties
            .and_then(|p| p.correlation_data)
            .as_deref(),
        Some(&b"\x00id-3"[..])
    );
    rumqttc.disconnect().await;

    let events = responder.finish().await;
    let responded = of_kind(&events, "responded");
    assert_eq!(responded.len(), 3, "{events:?}");
    for r in responded {
        assert_eq!(r["error"], Value::Null, "{r}");
    }
}

// =========================================================================================================
// 5. Topic aliases
// =========================================================================================================

over_tcp_and_ws!(
    mqttjs_auto_assigned_topic_aliases_reach_subscribers,
    mqttjs_auto_used_topic_aliases_reach_subscribers,
    server_topic_aliases_resolve_to_the_right_topics_in_mqttjs,
    server_topic_aliases_start_afresh_on_a_new_connection
);

/// (topic as written, Topic Alias) of the PUBLISHes MQTT.js wrote.
fn sent_topics(events: &[Value]) -> Vec<(String, Option<u64>)> {
    of_kind(events, "published")
        .iter()
        .map(|e| {
            (
                e["sent_topic"].as_str().unwrap().to_owned(),
                e["sent_alias"].as_u64(),
            )
        })
        .collect()
}

/// Subscribes an MQTT.js client (no Topic Alias Maximum of its own) and a rumqttc client to `filter`, runs the
/// publisher's plan, and returns what the publisher reported and the (topic, payload) each subscriber got.
async fn publish_to_two_subscribers(
    broker: &TestBroker,
    transport: Transport,
    filter: &str,
    publisher_plan: Value,
    count: usize,
) -> (Vec<Value>, Vec<(String, String)>, Vec<(String, String)>) {
    let mut rumqttc = V5::connect(broker, "alias-rumqttc").await;
    rumqttc.subscribe(filter).await;
    let mut sub = start_mqttjs(
        broker,
        transport,
        json!({
            "client_id": "alias-mqttjs",
            "steps": [
                {"op": "subscribe", "filter": filter, "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": count},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    sub.wait_for("ready").await;
    let published = run(broker, transport, publisher_plan).await;
    let events = sub.finish().await;
    for m in of_kind(&events, "message") {
        // The subscriber set no Topic Alias Maximum, so the server sends it no alias [MQTT-3.1.2-27].
        assert!(m["properties"].get("topicAlias").is_none(), "{m}");
        assert_eq!(m["raw_topic"], m["topic"], "{m}");
    }
    let got_rumqttc = rumqttc
        .next_n(count)
        .await
        .iter()
        .map(|p| {
            assert_eq!(p.properties.as_ref().and_then(|p| p.topic_alias), None);
            (text(&p.topic), text(&p.payload))
        })
        .collect();
    rumqttc.disconnect().await;
    (published, topics_and_payloads(&events), got_rumqttc)
}

// 3.3.2.3.4 Topic Alias: MQTT.js with `autoAssignTopicAlias` gives each topic an alias within the server's
// Topic Alias Maximum (2 here, [MQTT-3.3.2-9]), sends the topic with the alias the first time and the alias
// alone (empty topic) after, and reassigns the least recently used alias to a third topic, which replaces
// the mapping (3.3.2.3.4: a non-empty topic with an alias "updates" the mapping). The server accepts every
// alias up to its maximum [MQTT-3.3.2-12] (every PUBACK is 0), and both subscribers get each message under
// the topic it was published to.
async fn mqttjs_auto_assigned_topic_aliases_reach_subscribers(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker_with(|c| c.topic_alias_maximum = 2);
    let sent = [
        "ta/a", "ta/b", "ta/a", "ta/c", "ta/a", "ta/b", "ta/c", "ta/c",
    ];
    let steps: Vec<Value> = sent
        .iter()
        .enumerate()
        .map(|(n, t)| publish(t, &format!("m{n}"), 1))
        .collect();
    let (published, mqttjs, rumqttc) = publish_to_two_subscribers(
        &broker,
        transport,
        "ta/#",
        json!({
            "client_id": "alias-auto",
            "options": {"autoAssignTopicAlias": true},
            "steps": steps,
        }),
        sent.len(),
    )
    .await;
    assert_eq!(published_codes(&published), vec![0; sent.len()]);
    let wire = sent_topics(&published);
    assert!(
        wire.iter()
            .all(|(_, alias)| matches!(alias, Some(1) | Some(2))),
        "MQTT.js should have put an alias within 1..=2 on every PUBLISH: {wire:?}"
    );
    assert!(
        wire.iter().any(|(t, _)| t.is_empty()),
        "MQTT.js never used an alias alone: {wire:?}"
    );
    let expected: Vec<(String, String)> = sent
        .iter()
        .enumerate()
        .map(|(n, t)| (t.to_string(), format!("m{n}")))
        .collect();
    assert_eq!(mqttjs, expected);
    assert_eq!(rumqttc, expected);
}

// 3.3.2.3.4 again, with `autoUseTopicAlias`: MQTT.js sets alias 1 for ta/x with an explicit Topic Alias,
// then uses it alone for later messages on ta/x; ta/y goes without alias, then gets alias 2 and uses it.
async fn mqttjs_auto_used_topic_aliases_reach_subscribers(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let with_alias = |topic: &str, payload: &str, alias: u16| {
        json!({"op": "publish", "topic": topic, "payload": payload, "qos": 1,
            "properties": {"topicAlias": alias}})
    };
    let (published, mqttjs, rumqttc) = publish_to_two_subscribers(
        &broker,
        transport,
        "tu/#",
        json!({
            "client_id": "alias-use",
            "options": {"autoUseTopicAlias": true},
            "steps": [
                with_alias("tu/x", "set x", 1),
                publish("tu/x", "x by alias", 1),
                publish("tu/y", "y plain", 1),
                publish("tu/x", "x by alias again", 1),
                with_alias("tu/y", "set y", 2),
                publish("tu/y", "y by alias", 1),
            ],
        }),
        6,
    )
    .await;
    assert_eq!(published_codes(&published), [0; 6]);
    let alias = |t: &str, a: Option<u64>| (t.to_owned(), a);
    assert_eq!(
        sent_topics(&published),
        [
            alias("tu/x", Some(1)),
            alias("", Some(1)),
            alias("tu/y", None),
            alias("", Some(1)),
            alias("tu/y", Some(2)),
            alias("", Some(2)),
        ],
        "MQTT.js did not write the PUBLISHes the test means to send"
    );
    let expected: Vec<(String, String)> = [
        ("tu/x", "set x"),
        ("tu/x", "x by alias"),
        ("tu/y", "y plain"),
        ("tu/x", "x by alias again"),
        ("tu/y", "set y"),
        ("tu/y", "y by alias"),
    ]
    .iter()
    .map(|(t, p)| (t.to_string(), p.to_string()))
    .collect();
    assert_eq!(mqttjs, expected);
    assert_eq!(rumqttc, expected);
}

// 3.1.2.11.8 and 3.3.2.3.4: MQTT.js's CONNECT sets Topic Alias Maximum 2, so the server may send it aliases
// from 1 to 2 and no higher [MQTT-3.1.2-26] (MQTT.js itself rejects any other, which would end the run). The
// server does use them (some PUBLISH arrives with an empty topic and an alias), each alias is used only
// after it was set, and every message, as MQTT.js resolves it, names the topic it was published to.
async fn server_topic_aliases_resolve_to_the_right_topics_in_mqttjs(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let sent = [
        "tr/x", "tr/x", "tr/y", "tr/z", "tr/z", "tr/x", "tr/y", "tr/y",
    ];
    let mut sub = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "alias-receiver",
            "connect_properties": {"topicAliasMaximum": 2},
            "steps": [
                {"op": "subscribe", "filter": "tr/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": sent.len()},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    sub.wait_for("ready").await;
    let mut publisher = V5::connect(&broker, "alias-source").await;
    for (n, t) in sent.iter().enumerate() {
        publisher.publish(t, format!("m{n}"), None).await;
    }
    publisher.disconnect().await;
    let events = sub.finish().await;
    let expected: Vec<(String, String)> = sent
        .iter()
        .enumerate()
        .map(|(n, t)| (t.to_string(), format!("m{n}")))
        .collect();
    assert_eq!(topics_and_payloads(&events), expected);

    // Follow the aliases as the specification says, independently of MQTT.js.
    let mut mapping: HashMap<u64, String> = HashMap::new();
    let mut reused = 0;
    for m in of_kind(&events, "message") {
        let raw = m["raw_topic"].as_str().unwrap();
        let resolved = match m["properties"]["topicAlias"].as_u64() {
            None => {
                assert!(!raw.is_empty(), "empty topic without alias: {m}");
                raw.to_owned()
            }
            Some(alias) => {
                assert!((1..=2).contains(&alias), "alias {alias} out of range: {m}");
                if raw.is_empty() {
                    reused += 1;
                    mapping
                        .get(&alias)
                        .cloned()
                        .unwrap_or_else(|| panic!("alias {alias} used before it was set: {m}"))
                } else {
                    mapping.insert(alias, raw.to_owned());
                    raw.to_owned()
                }
            }
        };
        assert_eq!(m["topic"], json!(resolved), "{m}");
    }
    assert!(reused > 0, "the server never used an alias: {events:?}");
}

// [MQTT-3.3.2-7]: "A receiver MUST NOT carry forward any Topic Alias mappings from one Network Connection to
// another." MQTT.js (Topic Alias Maximum 2, Session Expiry Interval 300) gets two messages on ak/x, the
// second under an alias the server set on the first, and disconnects; two more are published while it is
// away. Back on a new connection of the same session, the server must set its aliases again: the first
// queued message carries its topic (MQTT.js refuses an alias it has not been given on this connection, which
// would end the run), and every message resolves to ak/x.
async fn server_topic_aliases_start_afresh_on_a_new_connection(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let client = |clean_start: bool, steps: Value| {
        json!({
            "client_id": "alias-kept",
            "clean_start": clean_start,
            "connect_properties": {"topicAliasMaximum": 2, "sessionExpiryInterval": 300},
            "steps": steps,
        })
    };
    let mut first = start_mqttjs(
        &broker,
        transport,
        client(
            true,
            json!([
                {"op": "subscribe", "filter": "ak/#", "qos": 1},
                {"op": "ready"},
                {"op": "wait_messages", "count": 2},
                {"op": "disconnect"},
            ]),
        ),
    );
    first.wait_for("ready").await;
    let mut publisher = V5::connect(&broker, "alias-kept-src").await;
    publisher.publish("ak/x", "live 1", None).await;
    publisher.publish("ak/x", "live 2", None).await;
    let first = first.finish().await;
    let aliased: Vec<(String, Option<u64>)> = of_kind(&first, "message")
        .iter()
        .map(|m| {
            (
                m["raw_topic"].as_str().unwrap().to_owned(),
                m["properties"]["topicAlias"].as_u64(),
            )
        })
        .collect();
    assert!(
        aliased.iter().any(|(t, a)| t.is_empty() && a.is_some()),
        "the server used no alias on the first connection: {aliased:?}"
    );

    publisher.publish("ak/x", "offline 1", None).await;
    publisher.publish("ak/x", "offline 2", None).await;
    publisher.disconnect().await;
    let second = run(
        &broker,
        transport,
        client(
            false,
            json!([
                {"op": "wait_messages", "count": 2},
                {"op": "linger", "secs": 0.3},
            ]),
        ),
    )
    .await;
    assert_eq!(connack(&second)["session_present"], true);
    assert_eq!(
        topics_and_payloads(&second),
        [
            ("ak/x".to_owned(), "offline 1".to_owned()),
            ("ak/x".to_owned(), "offline 2".to_owned()),
        ]
    );
    let first_message = of_kind(&second, "message")[0];
    assert_eq!(first_message["raw_topic"], "ak/x", "{first_message}");
}

// =========================================================================================================
// 6. Subscription options and identifiers
// =========================================================================================================

over_tcp_and_ws!(
    no_local_withholds_only_mqttjs_own_messages,
    retain_as_published_as_mqttjs_sees_it,
    retain_handling_as_mqttjs_sees_it,
    subscription_identifiers_as_mqttjs_reports_them
);

// [MQTT-3.8.3-3]: "Bit 2 of the Subscription Options represents the No Local option. If the value is 1,
// Application Messages MUST NOT be forwarded to a connection with a ClientID equal to the ClientID of the
// publishing connection." MQTT.js subscribes with `nl: true` and publishes "own" (acknowledged before the
// other message is published, so it would have arrived first); it gets only rumqttc's "other".
async fn no_local_withholds_only_mqttjs_own_messages(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut client = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "no-local",
            "steps": [
                {"op": "subscribe", "filter": "nl/t", "qos": 1, "nl": true},
                publish("nl/t", "own", 1),
                {"op": "ready"},
                {"op": "wait_payload", "payload": "other"},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    client.wait_for("ready").await;
    let mut other = V5::connect(&broker, "nl-other").await;
    other.publish("nl/t", "other", None).await;
    other.disconnect().await;
    let events = client.finish().await;
    assert_eq!(suback_codes(&events), [json!([1])]);
    assert_eq!(payloads(&events), ["other"]);
}

// [MQTT-3.3.1-12]: with Retain As Published 0 the server sets RETAIN 0 when forwarding, whatever the
// PUBLISH had; [MQTT-3.3.1-13]: with 1 it keeps the RETAIN flag of the PUBLISH. MQTT.js subscribes rap/on/#
// with `rap: true` and rap/off/# with `rap: false`; another MQTT.js publishes live messages, retained and
// not.
async fn retain_as_published_as_mqttjs_sees_it(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut sub = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "rap-sub",
            "steps": [
                {"op": "subscribe", "filter": "rap/on/#", "qos": 1, "rap": true},
                {"op": "subscribe", "filter": "rap/off/#", "qos": 1, "rap": false},
                {"op": "ready"},
                {"op": "wait_messages", "count": 4},
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    sub.wait_for("ready").await;
    let retained = |topic: &str, payload: &str| json!({"op": "publish", "topic": topic, "payload": payload, "qos": 1, "retain": true});
    run(
        &broker,
        transport,
        json!({
            "client_id": "rap-pub",
            "steps": [
                retained("rap/on/r", "on retained"),
                publish("rap/on/n", "on plain", 1),
                retained("rap/off/r", "off retained"),
                publish("rap/off/n", "off plain", 1),
            ],
        }),
    )
    .await;
    let events = sub.finish().await;
    let flags: Vec<(String, bool)> = of_kind(&events, "message")
        .iter()
        .map(|m| {
            (
                m["payload"].as_str().unwrap().to_owned(),
                m["retain"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("on retained".to_owned(), true),
            ("on plain".to_owned(), false),
            ("off retained".to_owned(), false),
            ("off plain".to_owned(), false),
        ]
    );
}

// 3.8.3.1 Retain Handling, with retained messages on rh/0, rh/1 and rh/2 beforehand. [MQTT-3.3.1-9]: with 0
// the server sends the retained messages on every SUBSCRIBE (rh/0 twice: two copies). [MQTT-3.3.1-10]: with
// 1 only if the subscription did not exist (rh/1 twice: one copy). [MQTT-3.3.1-11]: with 2 never (rh/2).
// Retained messages sent on subscribe have RETAIN 1 (3.3.1.3). A marker MQTT.js publishes to itself after
// the last SUBSCRIBE closes the count.
async fn retain_handling_as_mqttjs_sees_it(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let retained = |topic: &str, payload: &str| json!({"op": "publish", "topic": topic, "payload": payload, "qos": 1, "retain": true});
    run(
        &broker,
        transport,
        json!({
            "client_id": "rh-pub",
            "steps": [retained("rh/0", "kept 0"), retained("rh/1", "kept 1"), retained("rh/2", "kept 2")],
        }),
    )
    .await;
    let subscribe =
        |filter: &str, rh: u8| json!({"op": "subscribe", "filter": filter, "qos": 1, "rh": rh});
    let events = run(
        &broker,
        transport,
        json!({
            "client_id": "rh-sub",
            "steps": [
                {"op": "subscribe", "filter": "marker", "qos": 1},
                subscribe("rh/0", 0),
                {"op": "wait_payload", "payload": "kept 0"},
                subscribe("rh/0", 0),
                subscribe("rh/1", 1),
                {"op": "wait_payload", "payload": "kept 1"},
                subscribe("rh/1", 1),
                subscribe("rh/2", 2),
                publish("marker", "end", 1),
                {"op": "wait_payload", "payload": "end"},
            ],
        }),
    )
    .await;
    assert_eq!(suback_codes(&events), vec![json!([1]); 6]);
    let got: Vec<(String, String, bool)> = of_kind(&events, "message")
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap().to_owned(),
                m["retain"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, bool)> = [
        ("rh/0", "kept 0", true),
        ("rh/0", "kept 0", true),
        ("rh/1", "kept 1", true),
        ("marker", "end", false),
    ]
    .iter()
    .map(|(t, p, r)| (t.to_string(), p.to_string(), *r))
    .collect();
    assert_eq!(got, expected);
}

// 3.8.2.1.2 Subscription Identifier (1 to 268,435,455) and [MQTT-3.3.4-3], [MQTT-3.3.4-4]: "If the Server
// sends a single copy of the message it MUST include in the PUBLISH packet the Subscription Identifiers for
// all matching subscriptions which have a Subscription Identifiers, their order is not significant."
// MQTT.js subscribes si/a (7), si/# (268435455), si/+ (none) and other/+ (none); rumqttc publishes to si/a,
// si/b and other/q; MQTT.js reports one message each with the identifiers of the matching subscriptions.
async fn subscription_identifiers_as_mqttjs_reports_them(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut client = start_mqttjs(
        &broker,
        transport,
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
                {"op": "linger", "secs": 0.3},
            ],
        }),
    );
    client.wait_for("ready").await;
    let mut publisher = V5::connect(&broker, "si-pub").await;
    for t in ["si/a", "si/b", "other/q"] {
        publisher.publish(t, "x", None).await;
    }
    publisher.disconnect().await;
    let events = client.finish().await;
    let ids = |m: &Value| -> Vec<u64> {
        // MQTT.js gives one identifier as a number and several as an array.
        let mut ids: Vec<u64> = match &m["properties"]["subscriptionIdentifier"] {
            Value::Null => vec![],
            Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap()).collect(),
            other => vec![other.as_u64().unwrap()],
        };
        ids.sort_unstable();
        ids
    };
    let got: Vec<(String, Vec<u64>)> = of_kind(&events, "message")
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
// 7. MQTT 3.1.1 and MQTT 5.0 clients on one topic
// =========================================================================================================

over_tcp_and_ws!(v311_and_v5_mqttjs_clients_share_a_topic);

// 3.3.2.3 and the 3.1.1 PUBLISH layout: MQTT.js at protocol level 4 (3.1.1) and at level 5 subscribe to
// mix/#, then each publishes once. The 3.1.1 client gets both messages, the 5.0 one's with its topic and
// payload intact and no properties (a 3.1.1 PUBLISH has none: properties sent anyway would be read as
// payload). The 5.0 client gets its own message with its Content Type and User Properties, and the 3.1.1
// client's with none. The 5.0 client's second PUBLISH uses a Topic Alias alone (3.3.2.3.4), which the 3.1.1
// client, which has no aliases, must get under its full topic.
async fn v311_and_v5_mqttjs_clients_share_a_topic(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let plan = |client_id: &str, version: u8, options: Value, publish_steps: Vec<Value>| {
        let mut steps = vec![
            json!({"op": "subscribe", "filter": "mix/#", "qos": 1}),
            json!({"op": "ready"}),
            json!({"op": "wait_release"}),
        ];
        steps.extend(publish_steps);
        steps.push(json!({"op": "wait_messages", "count": 3}));
        steps.push(json!({"op": "linger", "secs": 0.3}));
        json!({
            "client_id": client_id,
            "protocol_version": version,
            "options": options,
            "steps": steps,
        })
    };
    let mut v3 = start_mqttjs(
        &broker,
        transport,
        plan(
            "old",
            4,
            json!({}),
            vec![publish("mix/from3", "three one one", 1)],
        ),
    );
    let mut v5 = start_mqttjs(
        &broker,
        transport,
        plan(
            "new",
            5,
            json!({"autoAssignTopicAlias": true}),
            vec![
                json!({"op": "publish", "topic": "mix/from5", "payload": "five", "qos": 1,
                    "properties": {"contentType": "text/plain", "userProperties": [["k", "v"]]}}),
                publish("mix/from5", "five again", 1),
            ],
        ),
    );
    v3.wait_for("ready").await;
    v5.wait_for("ready").await;
    v3.release().await;
    let v3_publish = v3.wait_for("published").await;
    assert_eq!(v3_publish["reason_code"], 0);
    v5.release().await;
    let v3_events = v3.finish().await;
    let v5_events = v5.finish().await;
    assert_eq!(connack(&v3_events)["reason_code"], 0);
    assert_eq!(suback_codes(&v3_events), [json!([1])]);
    // The second 5.0 PUBLISH went as an alias alone.
    assert_eq!(
        sent_topics(&v5_events),
        [("mix/from5".to_owned(), Some(1)), (String::new(), Some(1))]
    );

    let expected: Vec<(String, String)> = [
        ("mix/from3", "three one one"),
        ("mix/from5", "five"),
        ("mix/from5", "five again"),
    ]
    .iter()
    .map(|(t, p)| (t.to_string(), p.to_string()))
    .collect();
    assert_eq!(topics_and_payloads(&v3_events), expected);
    for m in of_kind(&v3_events, "message") {
        assert_eq!(m["properties"], json!({}), "{m}");
        assert_eq!(m["raw_topic"], m["topic"], "{m}");
    }
    assert_eq!(topics_and_payloads(&v5_events), expected);
    let v5_messages = of_kind(&v5_events, "message");
    assert_eq!(v5_messages[0]["properties"], json!({}), "{v5_events:?}");
    let p = &v5_messages[1]["properties"];
    assert_eq!(p["contentType"], "text/plain", "{p}");
    assert_eq!(p["userProperties"], pairs(&[("k", "v")]), "{p}");
    assert_eq!(v5_messages[2]["properties"], json!({}), "{v5_events:?}");
}

// =========================================================================================================
// 8. DISCONNECT from the server
// =========================================================================================================

over_tcp_and_ws!(takeover_sends_disconnect_0x8e_to_mqttjs);

// [MQTT-3.1.4-3]: "If the ClientID represents a Client already connected to the Server, the Server sends a
// DISCONNECT packet to the existing Client with Reason Code of 0x8E (Session taken over) as described in
// section 4.13 and MUST close the Network Connection of the existing Client." MQTT.js is the existing
// client; a second MQTT.js with the same ClientID connects over the other transport and stays connected.
async fn takeover_sends_disconnect_0x8e_to_mqttjs(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    let broker = broker();
    let mut existing = start_mqttjs(
        &broker,
        transport,
        json!({
            "client_id": "twin",
            // The socket may be reset under MQTT.js as it is closed: that is not what this test is about.
            "errors_fatal": false,
            "steps": [{"op": "ready"}, {"op": "wait_disconnect"}],
        }),
    );
    existing.wait_for("ready").await;
    let newcomer = run(
        &broker,
        transport.other(),
        json!({
            "client_id": "twin",
            "steps": [
                {"op": "linger", "secs": 0.3},
                {"op": "expect_connected"},
                {"op": "disconnect"},
            ],
        }),
    )
    .await;
    assert_eq!(connack(&newcomer)["reason_code"], 0);
    let disconnect = existing.wait_for("disconnect").await;
    assert_eq!(disconnect["reason_code"], 0x8E, "{disconnect}");
    let events = existing.finish().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|k| ["disconnect", "close"].contains(k))
        .collect();
    assert_eq!(kinds, ["disconnect", "close"], "{events:?}");
}

// =========================================================================================================
// 9. Shared subscriptions
// =========================================================================================================

over_tcp_and_ws!(a_shared_subscription_splits_messages_between_mqttjs_members);

// 4.8.2 Shared Subscriptions: a Shared Subscription may be associated with several Sessions, but a message
// that matches it is sent to the Client of only one of them (the section's prose; which one is the
// server's choice, here round robin). Shared Subscription Available is 1 (3.2.2.3.13) and the SUBACK grants
// QoS 1. Two MQTT.js members of $share/g/sh/t; another MQTT.js publishes 20 QoS 1 messages to sh/t. Each
// member gets some, together they get all 20, none twice.
async fn a_shared_subscription_splits_messages_between_mqttjs_members(transport: Transport) {
    if !have_mqttjs().await {
        return;
    }
    const COUNT: usize = 20;
    let broker = broker();
    let member = |client_id: &str| {
        json!({
            "client_id": client_id,
            "steps": [
                {"op": "subscribe", "filter": "$share/g/sh/t", "qos": 1},
                {"op": "ready"},
                {"op": "wait_release"},
                // A quiet window after all messages arrived, in which a second copy would show.
                {"op": "linger", "secs": 0.3},
                {"op": "disconnect"},
            ],
        })
    };
    let mut a = start_mqttjs(&broker, transport, member("member-a"));
    let mut b = start_mqttjs(&broker, transport, member("member-b"));
    a.wait_for("ready").await;
    b.wait_for("ready").await;
    let steps: Vec<Value> = (0..COUNT)
        .map(|n| publish("sh/t", &format!("m{n}"), 1))
        .collect();
    let published = run(
        &broker,
        transport,
        json!({"client_id": "sh-pub", "steps": steps}),
    )
    .await;
    assert_eq!(published_codes(&published), vec![0; COUNT]);

    // Read both members' output until the messages add up, or give up.
    let deadline = Instant::now() + MQTTJS_WAIT;
    while a.messages_so_far() + b.messages_so_far() < COUNT {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = timeout(left, async {
            tokio::select! {
                _ = a.read_event("shared messages") => {}
                _ = b.read_event("shared messages") => {}
            }
        })
        .await;
        if read.is_err() {
            panic!(
                "the members got {} and {} of {COUNT} messages within {MQTTJS_WAIT:?}",
                a.messages_so_far(),
                b.messages_so_far()
            );
        }
    }
    a.release().await;
    b.release().await;
    let a_events = a.finish().await;
    let b_events = b.finish().await;
    for events in [&a_events, &b_events] {
        assert_eq!(
            connack(events)["properties"]["sharedSubscriptionAvailable"],
            true
        );
        assert_eq!(suback_codes(events), [json!([1])]);
    }
    let got_a = payloads(&a_events);
    let got_b = payloads(&b_events);
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "one member got everything: {got_a:?} / {got_b:?}"
    );
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    assert_eq!(all.len(), COUNT, "{got_a:?} / {got_b:?}");
    all.sort();
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), COUNT, "a message arrived twice: {all:?}");
    let mut expected: Vec<String> = (0..COUNT).map(|n| format!("m{n}")).collect();
    expected.sort();
    assert_eq!(all, expected);
}
