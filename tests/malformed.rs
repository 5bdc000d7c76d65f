//! Malformed input over the wire, as raw bytes: each kind of violation closes the offending connection only,
//! nothing it sent is routed, other clients keep working and the broker keeps accepting connections.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use harbormq::codec::{encode_packet, ConnectReturnCode, Packet, Publish, QoS};
use rumqttc::QoS as RQoS;

/// One offending byte sequence: what it breaks, and whether it follows a valid CONNECT.
struct Case {
    rule: &'static str,
    after_connect: bool,
    bytes: Vec<u8>,
}

fn after_connect(rule: &'static str, bytes: &[u8]) -> Case {
    Case {
        rule,
        after_connect: true,
        bytes: bytes.to_vec(),
    }
}

fn as_first_packet(rule: &'static str, bytes: Vec<u8>) -> Case {
    Case {
        rule,
        after_connect: false,
        bytes,
    }
}

/// A client subscribed to everything, which sees any message an offender managed to get routed.
async fn bystander(broker: &TestBroker) -> Client {
    let mut bystander = broker.client("bystander").await;
    bystander.subscribe("#", RQoS::AtLeastOnce).await;
    bystander
}

/// Runs each case on its own connection and checks that only that connection is closed: no accepted CONNACK and
/// nothing else is sent to it, nothing of it reaches the bystander, the bystander and new clients keep working.
async fn each_closes_only_its_connection(broker: &TestBroker, cases: &[Case]) {
    let mut bystander = bystander(broker).await;
    for (i, case) in cases.iter().enumerate() {
        let mut offender = if case.after_connect {
            broker
                .raw_connected(&format!("offender{i}"), true, 30)
                .await
                .0
        } else {
            broker.raw().await
        };
        // The broker may close before it has read everything, so the write itself may fail.
        let _ = offender.try_send_bytes(&case.bytes).await;
        let seen = offender.wait_closed().await;
        assert!(
            seen.iter().all(|p| matches!(
                p,
                Packet::ConnAck(ack) if ack.code != ConnectReturnCode::Accepted
            )),
            "{}: the broker answered {seen:?}",
            case.rule
        );
        let marker = format!("after {}", case.rule);
        bystander
            .publish("bystander/marker", RQoS::AtLeastOnce, false, marker.clone())
            .await;
        let next = bystander.next_publish().await;
        assert_eq!(
            (next.topic.as_str(), next.payload.as_ref()),
            ("bystander/marker", marker.as_bytes()),
            "{}: something from the offender was routed",
            case.rule
        );
    }
    let (_newcomer, ack) = Client::connect(broker.options("newcomer")).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
}

/// A CONNECT body with the given flags, written byte by byte; `rest` follows the client id.
fn connect_bytes(flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x1e];
    body.extend_from_slice(&[0x00, 0x02, b'i', b'd']);
    body.extend_from_slice(rest);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

// [MQTT-2.2.2-2], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1], [MQTT-3.12.1], [MQTT-3.14.1-1], [MQTT-2.2.1]:
// flags other than the fixed ones, and the reserved packet types 0 and 15, close the connection.
#[tokio::test]
async fn reserved_header_flags_and_packet_types_close_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect("PUBACK with flags 0010", &[0x42, 0x02, 0x00, 0x01]),
        after_connect("PUBREL with flags 0000", &[0x60, 0x02, 0x00, 0x01]),
        after_connect(
            "SUBSCRIBE with flags 0000",
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        ),
        after_connect(
            "UNSUBSCRIBE with flags 0000",
            &[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
        ),
        after_connect("PINGREQ with flags 0001", &[0xc1, 0x00]),
        after_connect("DISCONNECT with flags 0010", &[0xe2, 0x00]),
        after_connect("packet type 0", &[0x00, 0x00]),
        after_connect("packet type 15", &[0xf0, 0x00]),
        as_first_packet("CONNECT with flags 0001", {
            let mut bytes = connect_bytes(0x02, &[]);
            bytes[0] = 0x11;
            bytes
        }),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-2.2.3]: the remaining length takes at most four bytes.
#[tokio::test]
async fn remaining_length_of_five_bytes_closes_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect(
            "five-byte remaining length",
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        as_first_packet(
            "five-byte remaining length on CONNECT",
            vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

/// A QoS 0 PUBLISH on `big` whose encoding is exactly `total` bytes long.
fn publish_of_size(total: usize) -> Vec<u8> {
    // Fixed header of 3 bytes (two-byte remaining length) plus the topic field of 5.
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic("big"),
        packet_id: None,
        payload: Bytes::from(vec![b'x'; total - 8]),
        properties: None,
    });
    let mut out = BytesMut::new();
    encode_packet(&publish, &mut out).unwrap();
    assert_eq!(out.len(), total);
    out.to_vec()
}

// Issue 2: a packet larger than `max_packet_size_bytes` closes the connection, and the size is judged from the
// fixed header, before the body is buffered; a packet of exactly the limit is accepted.
#[tokio::test]
async fn packets_over_the_size_limit_close_the_connection() {
    let broker = TestBroker::start_with(|c| c.max_packet_size_bytes = 1024);
    let mut bystander = bystander(&broker).await;
    let (mut fits, _) = broker.raw_connected("fits", true, 30).await;
    fits.send_bytes(&publish_of_size(1024)).await;
    let got = bystander.next_publish().await;
    assert_eq!((got.topic.as_str(), got.payload.len()), ("big", 1016));
    bystander.kill().await;

    let cases = [
        after_connect("PUBLISH one byte over the limit", &publish_of_size(1025)),
        // Only the fixed header of a 2000-byte PUBLISH: the broker must not wait for the body.
        after_connect("fixed header announcing 2000 bytes", &[0x30, 0xd0, 0x0f]),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-1.5.3-1], [MQTT-1.5.3-2]: strings must be well-formed UTF-8 without surrogates or U+0000.
#[tokio::test]
async fn invalid_utf8_closes_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect(
            "invalid UTF-8 in a topic name",
            &[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28],
        ),
        after_connect(
            "U+0000 in a topic name",
            &[0x30, 0x04, 0x00, 0x02, b'a', 0x00],
        ),
        after_connect(
            "UTF-16 surrogate in a topic name",
            &[0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80],
        ),
        after_connect(
            "invalid UTF-8 in a topic filter",
            &[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0xc3, 0x28, 0x00],
        ),
        as_first_packet("invalid UTF-8 in a client id", {
            let mut bytes = connect_bytes(0x02, &[]);
            let n = bytes.len();
            bytes[n - 2] = 0xff;
            bytes
        }),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-3.3.2-2]: a topic name in PUBLISH must not contain wildcards.
#[tokio::test]
async fn wildcard_in_a_publish_topic_closes_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect(
            "+ in a topic name",
            &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'],
        ),
        after_connect(
            "# in a topic name",
            &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'],
        ),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.1-3]: `#` only last and alone in its level, `+` alone in its level.
#[tokio::test]
async fn invalid_topic_filters_close_the_connection() {
    let broker = TestBroker::start();
    let filter = |f: &[u8]| {
        let mut bytes = vec![0x82, (f.len() + 5) as u8, 0x00, 0x01, 0x00, f.len() as u8];
        bytes.extend_from_slice(f);
        bytes.push(0x01);
        bytes
    };
    let cases = [
        after_connect("# not last", &filter(b"a/#/b")),
        after_connect("# not alone in its level", &filter(b"a/b#")),
        after_connect("+ not alone in its level", &filter(b"a+/b")),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-3.8.3-3], [MQTT-3.10.3-2]: SUBSCRIBE and UNSUBSCRIBE must name at least one topic filter.
#[tokio::test]
async fn subscribe_or_unsubscribe_without_topics_closes_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect("SUBSCRIBE without topics", &[0x82, 0x02, 0x00, 0x01]),
        after_connect("UNSUBSCRIBE without topics", &[0xa2, 0x02, 0x00, 0x01]),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-3.3.1-4], [MQTT-3.8.3-4], [MQTT-3.3.1-2]: QoS 3 is reserved, in PUBLISH and in a SUBSCRIBE request;
// DUP must be 0 on a QoS 0 PUBLISH.
#[tokio::test]
async fn qos_3_and_dup_on_qos_0_close_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect(
            "PUBLISH with QoS 3",
            &[0x36, 0x07, 0x00, 0x01, b't', 0x00, 0x01, b'x', b'y'],
        ),
        after_connect(
            "SUBSCRIBE requesting QoS 3",
            &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x03],
        ),
        after_connect(
            "QoS 0 PUBLISH with DUP",
            &[0x38, 0x05, 0x00, 0x01, b't', b'x', b'y'],
        ),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-2.3.1-1]: packet identifiers are non-zero.
#[tokio::test]
async fn packet_id_zero_closes_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect(
            "QoS 1 PUBLISH with packet id 0",
            &[0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x00, b'x'],
        ),
        after_connect(
            "SUBSCRIBE with packet id 0",
            &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b't', 0x01],
        ),
        after_connect(
            "UNSUBSCRIBE with packet id 0",
            &[0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, b't'],
        ),
        after_connect("PUBACK with packet id 0", &[0x40, 0x02, 0x00, 0x00]),
        after_connect("PUBREL with packet id 0", &[0x62, 0x02, 0x00, 0x00]),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-2.2.1], [MQTT-4.8.0-1]: CONNACK, SUBACK, UNSUBACK and PINGRESP are sent only by servers.
#[tokio::test]
async fn server_only_packets_from_a_client_close_the_connection() {
    let broker = TestBroker::start();
    let cases = [
        after_connect("CONNACK from a client", &[0x20, 0x02, 0x00, 0x00]),
        after_connect("SUBACK from a client", &[0x90, 0x03, 0x00, 0x01, 0x00]),
        after_connect("UNSUBACK from a client", &[0xb0, 0x02, 0x00, 0x01]),
        after_connect("PINGRESP from a client", &[0xd0, 0x00]),
        as_first_packet("CONNACK as the first packet", vec![0x20, 0x02, 0x00, 0x00]),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// [MQTT-3.1.2-1], [MQTT-3.1.2-3], [MQTT-3.1.2-13], [MQTT-3.1.2-14], [MQTT-3.1.2-15], [MQTT-3.1.2-22]: a CONNECT
// with a wrong protocol name, the reserved flag set, inconsistent will flags or a password without a user name
// is not accepted and the connection is closed.
#[tokio::test]
async fn invalid_connect_flags_close_the_connection() {
    let broker = TestBroker::start();
    let will_fields = [0x00, 0x01, b'w', 0x00, 0x01, b'x'];
    let cases = [
        as_first_packet("protocol name MQTX", {
            let mut bytes = connect_bytes(0x02, &[]);
            bytes[7] = b'X';
            bytes
        }),
        as_first_packet("reserved CONNECT flag", connect_bytes(0x03, &[])),
        as_first_packet("will QoS 3", connect_bytes(0x1e, &will_fields)),
        as_first_packet("will QoS without will flag", connect_bytes(0x0a, &[])),
        as_first_packet("will retain without will flag", connect_bytes(0x22, &[])),
        as_first_packet(
            "password without user name",
            connect_bytes(0x42, &[0x00, 0x02, b'p', b'w']),
        ),
    ];
    each_closes_only_its_connection(&broker, &cases).await;
}

// Issue 2: whatever bytes a client sends, the broker never panics and keeps serving everyone else.
#[tokio::test]
async fn random_bytes_never_bring_the_broker_down() {
    use rand::{Rng, SeedableRng};
    let broker = TestBroker::start_with(|c| c.durability = "off".to_owned());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x4d51_5454);
    for i in 0..200 {
        let mut garbage = vec![0u8; rng.random_range(1..256)];
        rng.fill(&mut garbage[..]);
        let mut raw = if i % 2 == 0 {
            broker.raw_connected(&format!("noise{i}"), true, 30).await.0
        } else {
            broker.raw().await
        };
        let _ = raw.try_send_bytes(&garbage).await;
    }
    let mut bystander = bystander(&broker).await;
    bystander
        .publish(
            "bystander/marker",
            RQoS::AtLeastOnce,
            false,
            "still serving",
        )
        .await;
    // Noise that happened to be a valid retained PUBLISH may arrive first.
    bystander
        .publishes_until("bystander/marker", b"still serving")
        .await;
}
