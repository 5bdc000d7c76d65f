//! A client that stops reading cannot grow the broker's memory: the real `harbormq` binary runs with a slow
//! consumer (a raw socket that subscribes at QoS 0 and then never reads) while another client floods 200 MiB of
//! QoS 0 messages at it. The broker's peak resident memory (VmHWM in /proc) grows far less than the flood,
//! the QoS 0 messages beyond `max_outgoing_buffer_bytes` are dropped and counted, and an already connected
//! client keeps a bounded round trip throughout.

mod common;
mod limits_support;
#[allow(dead_code)]
mod process;

use bytes::{Bytes, BytesMut};
use common::{connect_packet, pid, RawClient};
use harbormq::codec::{encode_packet, Packet, Publish, QoS};
use harbormq::topic::TopicName;
use limits_support::{metric_at, with_bystander_at, TOKEN};
use process::BrokerProcess;

/// Payload of each flood message.
const MESSAGE_BYTES: usize = 64 * 1024;
/// Messages flooded: 200 MiB.
const MESSAGES: usize = 3200;
/// What the broker's peak memory may grow by, far below the flood.
const GROWTH_BOUND_BYTES: u64 = 64 * 1024 * 1024;

/// A figure of /proc/PID/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    kib * 1024
}

/// Writes `MESSAGES` PUBLISHes of `MESSAGE_BYTES` at `qos` as fast as the broker reads them, then a PINGREQ,
/// and waits for its PINGRESP (past the PUBACKs): the broker has then handled every PUBLISH before it.
async fn flood(publisher: &mut RawClient, qos: QoS) {
    let payload = Bytes::from(vec![b'f'; MESSAGE_BYTES]);
    for n in 0..MESSAGES {
        let mut packet = BytesMut::new();
        encode_packet(
            &Packet::Publish(Publish {
                dup: false,
                qos,
                retain: false,
                topic: TopicName::new("flood/t".to_owned()).unwrap(),
                packet_id: (qos != QoS::AtMostOnce).then(|| pid(n as u16 + 1)),
                payload: payload.clone(),
                properties: None,
            }),
            &mut packet,
        )
        .unwrap();
        publisher.send_bytes(&packet).await;
    }
    publisher.send(&Packet::PingReq).await;
    loop {
        match publisher.recv().await {
            Packet::PingResp => break,
            Packet::PubAck(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A broker process with a consumer that subscribed to the flood at `qos` and reads nothing more, flooded
/// with `MESSAGES` at `qos` by another client: returns the broker's peak memory growth and its admin address.
async fn flood_a_stopped_reader(
    qos: QoS,
    extra: &[&str],
) -> (u64, std::net::SocketAddr, BrokerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--durability", "off", "--admin-token", TOKEN];
    args.extend_from_slice(extra);
    let mut broker = BrokerProcess::start_with(dir.path(), "127.0.0.1:0", &args);
    let admin = broker.wait_for_addr("admin HTTP API on ");
    let pid = broker.pid().expect("the broker runs");

    let mut slow = RawClient::open_with_small_receive_buffer(broker.addr()).await;
    slow.connect(connect_packet("slow-consumer", true, 0)).await;
    slow.subscribe(1, "flood/#", qos).await;
    // From here on the slow consumer reads nothing.
    let mut publisher = RawClient::open(broker.addr()).await;
    publisher.connect(connect_packet("flooder", true, 0)).await;

    let before = proc_status_bytes(pid, "VmRSS");
    let ((), trips) = with_bystander_at(broker.port(), flood(&mut publisher, qos)).await;
    let peak = proc_status_bytes(pid, "VmHWM");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "flooded {} MiB at {qos:?}: VmRSS before {} KiB, VmHWM after {} KiB, growth {} KiB; bystander {} \
         round trips, longest {:?}",
        (MESSAGES * MESSAGE_BYTES) >> 20,
        before >> 10,
        peak >> 10,
        growth >> 10,
        trips.count,
        trips.max
    );
    trips.assert_bounded();
    assert!(
        growth < GROWTH_BOUND_BYTES,
        "peak memory grew by {} MiB for a {} MiB flood",
        growth >> 20,
        (MESSAGES * MESSAGE_BYTES) >> 20
    );
    drop(slow);
    (growth, admin, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_cannot_grow_the_brokers_memory() {
    let (_, admin, _broker) = flood_a_stopped_reader(QoS::AtMostOnce, &[]).await;
    let dropped = metric_at(admin, "harbormq_qos0_dropped_total").await;
    assert!(dropped > 0.0, "no QoS 0 message was dropped");
    assert_eq!(
        metric_at(
            admin,
            "harbormq_limit_hits_total{limit=\"max_outgoing_buffer_bytes\"}"
        )
        .await,
        dropped
    );
}

/// QoS 1 messages for a clean session that stopped reading wait in its queue in memory, bounded in bytes by
/// `max_queued_bytes`; what overflows it is dropped and counted as a full queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_session_that_stops_reading_queues_at_most_max_queued_bytes() {
    let limit = (16 * 1024 * 1024).to_string();
    let (_, admin, _broker) =
        flood_a_stopped_reader(QoS::AtLeastOnce, &["--max-queued-bytes", &limit]).await;
    let dropped = metric_at(
        admin,
        "harbormq_messages_dropped_total{reason=\"queue_full\"}",
    )
    .await;
    assert!(dropped > 0.0, "no message overflowed the queue");
}
