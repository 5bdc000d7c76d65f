//! Disk-full test of the durability contract (DESIGN.md section 2) against the real binary on a really full tmpfs.
//! Owns the tmpfs mount and the filler file; the broker process and its clients come from `process` and rumqttc.

mod needs;
// Only part of the shared helper is needed here: neither SIGTERM nor raw persistent sessions.
#[allow(dead_code)]
mod process;

use bytes::Bytes;
use harbormq::codec::{Packet as RawPacket, PacketId, Publish as RawPublish, QoS as RawQoS};
use harbormq::topic::TopicName;
use process::client::{self, connect, disconnect, subscribe, subscribe_offline};
use process::numbered::{duplicates, invented, lost, number_of, tally};
use process::raw::RawClient;
use process::{within, BrokerProcess};
use rumqttc::{Event, MqttOptions, Packet, QoS};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Mount options of the tmpfs that serves as the data dir.
const TMPFS_OPTIONS: &str = "size=4m";

/// Free space the filler file leaves on the tmpfs: room for a few dozen messages, not for all of them.
const HEADROOM: u64 = 512 * 1024;

/// Size of every numbered payload.
const PAYLOAD_BYTES: usize = 16 * 1024;

/// Messages a run may publish before the test decides the disk never filled (far more than 4 MiB).
const MAX_MESSAGES: u32 = 2_000;

/// Publisher connections after the first refusal, each of which must be refused too while the disk is full.
const RECONNECTS: usize = 3;

/// The payload number that marks the end of a subscriber's backlog.
const SENTINEL: u32 = u32::MAX;

/// The filter of the persistent subscribers.
const FILTER: &str = "full/#";

/// A tmpfs mounted on a temporary directory, unmounted when dropped (also on panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a small tmpfs, or says why it cannot (not root, no permission, no `mount`).
    fn mount() -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_OPTIONS, "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        match Command::new("umount").arg(self.dir.path()).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "umount {} failed: {}",
                self.dir.path().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(e) => eprintln!("cannot run umount: {e}"),
        }
    }
}

/// Fills the file system of `path` until a write fails with ENOSPC, then gives back `headroom` bytes.
fn fill_leaving(path: &Path, headroom: u64) -> u64 {
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("writing the filler {}: {e}", path.display()),
        }
    }
    let full = file.metadata().unwrap().len();
    assert!(full > headroom, "the filler only took {full} bytes");
    file.set_len(full - headroom).unwrap();
    drop(file);
    // The room is really there again (tmpfs rounds to pages, so half of it is what is checked).
    assert_fits(path.with_extension("probe"), headroom / 2);
    full - headroom
}

/// Checks that `bytes` can be written to `probe` (then removed again).
fn assert_fits(probe: PathBuf, bytes: u64) {
    let mut file = File::create(&probe).unwrap();
    let written = file.write_all(&vec![0u8; usize::try_from(bytes).unwrap()]);
    drop(file);
    std::fs::remove_file(&probe).unwrap();
    written.unwrap_or_else(|e| panic!("{bytes} bytes do not fit after the filler: {e}"));
}

/// A payload of `PAYLOAD_BYTES` that carries its message number in the first four bytes.
fn numbered(n: u32) -> Bytes {
    let mut payload = n.to_be_bytes().to_vec();
    payload.resize(PAYLOAD_BYTES, b'f');
    Bytes::from(payload)
}

/// Publishes message `n` at QoS 1 on `topic` on a raw publisher and waits for the outcome: true for a PUBACK,
/// false if the broker closed the connection instead, which a client library does not tell from a stall.
async fn publish_numbered(publisher: &mut RawClient, topic: &str, n: u32) -> bool {
    let packet_id = PacketId::new(u16::try_from(n % 65_535 + 1).unwrap()).unwrap();
    let publish = RawPublish {
        dup: false,
        qos: RawQoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        packet_id: Some(packet_id),
        payload: numbered(n),
        properties: None,
    };
    if !publisher.try_send(&RawPacket::Publish(publish)).await {
        return false;
    }
    match publisher.try_recv().await {
        Some(RawPacket::PubAck(id)) => {
            assert_eq!(
                id.packet_id, packet_id,
                "PUBACK for another packet [MQTT-4.3.2-2]"
            );
            true
        }
        None => false,
        Some(other) => panic!("expected PUBACK for message {n}, got {other:?}"),
    }
}

/// What the publishers saw while the disk filled up.
#[derive(Debug, Default)]
struct PublishOutcome {
    /// Numbers of the messages the broker acknowledged.
    acked: BTreeSet<u32>,
    /// Numbers of the messages whose connection the broker closed instead of acknowledging.
    refused: BTreeSet<u32>,
    /// Numbers handed out so far; every message sent is below it.
    sent: u32,
}

/// Publishes numbered 16 KiB QoS 1 messages one at a time until the broker refuses one, then reconnects
/// `RECONNECTS` times and publishes again; every connection must end with a refusal.
async fn publish_until_refused(port: u16) -> PublishOutcome {
    let mut outcome = PublishOutcome::default();
    for connection in 0..=RECONNECTS {
        // Clean session 1, so the connection itself never needs the store.
        let client_id = format!("disk-full-pub-{connection}");
        let (mut publisher, _) = RawClient::open(port, &client_id, true).await;
        loop {
            let n = outcome.sent;
            assert!(
                n < MAX_MESSAGES,
                "{} messages of {PAYLOAD_BYTES} bytes acknowledged on a {TMPFS_OPTIONS} tmpfs",
                outcome.acked.len()
            );
            outcome.sent += 1;
            if publish_numbered(&mut publisher, &format!("full/{}", n % 4), n).await {
                outcome.acked.insert(n);
            } else {
                outcome.refused.insert(n);
                break;
            }
        }
    }
    outcome
}

/// While the disk is full, an MQTT 5.0 publisher is told why its message is not accepted: PUBACK 0x97 Quota
/// exceeded and DISCONNECT 0x97 (sections 3.4.2.1 and 3.14.2.1), where a 3.1.1 one only sees the connection
/// close.
async fn assert_v5_publisher_told_quota_exceeded(port: u16, n: u32) {
    use harbormq::codec::{
        decode_packet_at, encode_packet_at, ClientId, Connect, ProtocolLevel, ReasonCode, Role,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let connect = Connect {
        level: ProtocolLevel::V5,
        clean_session: true,
        keep_alive_secs: 30,
        client_id: ClientId::new("disk-full-v5"),
        will: None,
        username: None,
        password: None,
        properties: None,
    };
    let publish = RawPublish {
        dup: false,
        qos: RawQoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("full/v5").unwrap(),
        packet_id: PacketId::new(1),
        payload: numbered(n),
        properties: None,
    };
    let mut out = bytes::BytesMut::new();
    encode_packet_at(
        &RawPacket::Connect(Box::new(connect)),
        ProtocolLevel::V5,
        &mut out,
    )
    .unwrap();
    encode_packet_at(&RawPacket::Publish(publish), ProtocolLevel::V5, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = bytes::BytesMut::new();
    let read_all = async {
        loop {
            while let Ok(Some(packet)) =
                decode_packet_at(&mut buf, Role::Client, ProtocolLevel::V5, usize::MAX)
            {
                seen.push(packet);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    within("the v5 publisher's connection to close", read_all).await;
    match seen.as_slice() {
        [RawPacket::ConnAck(ack), RawPacket::PubAck(puback), RawPacket::Disconnect(d)] => {
            assert_eq!(ack.code, ReasonCode::SUCCESS);
            assert_eq!(puback.reason, ReasonCode::QUOTA_EXCEEDED);
            assert_eq!(d.reason, ReasonCode::QUOTA_EXCEEDED);
        }
        other => panic!("expected CONNACK, PUBACK 0x97, DISCONNECT 0x97; got {other:?}"),
    }
}

/// Client options for the broker on `port`, taking the large payloads of this test.
fn options(client_id: &str, port: u16, clean_session: bool) -> MqttOptions {
    let mut options = client::options(client_id, port, clean_session);
    options
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(100);
    options
}

/// While the disk is full, a clean client connects, subscribes and gets a QoS 0 message and a QoS 1
/// message back; neither needs the disk, as no persistent session subscribes to their topic.
async fn assert_clean_client_served(port: u16) {
    let (client, mut eventloop, _) = connect(options("disk-full-clean", port, true)).await;
    subscribe(&client, &mut eventloop, "live/echo", QoS::AtLeastOnce).await;
    for (qos, body) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
        client.publish("live/echo", qos, false, body).await.unwrap();
        let mut acked = qos == QoS::AtMostOnce;
        let mut received = false;
        while !(acked && received) {
            let what = format!("the {body} echo while the disk is full");
            match within(&what, eventloop.poll()).await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    assert_eq!(publish.payload.as_ref(), body.as_bytes());
                    received = true;
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => acked = true,
                Ok(_) => {}
                Err(e) => panic!("clean client lost its connection while the disk is full: {e}"),
            }
        }
    }
    disconnect(client, eventloop).await;
}

/// Publishes the sentinel to `full/end` with a new clean publisher; true if it was acknowledged.
async fn publish_sentinel(port: u16, label: &str) -> bool {
    let client_id = format!("disk-full-sentinel-{label}");
    let (mut publisher, _) = RawClient::open(port, &client_id, true).await;
    publish_numbered(&mut publisher, "full/end", SENTINEL).await
}

/// Reconnects a persistent subscriber and reads its backlog up to the sentinel; returns every message
/// number delivered before it, in arrival order.
async fn drain_backlog(port: u16, client_id: &str) -> Vec<u32> {
    let (client, mut eventloop, session_present) = connect(options(client_id, port, false)).await;
    assert!(
        session_present,
        "CONNACK to {client_id} has session present 0 [MQTT-3.2.2-2]"
    );
    let mut delivered = Vec::new();
    loop {
        let what = format!("delivery to {client_id} ({} so far)", delivered.len());
        match within(&what, eventloop.poll()).await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                assert!(publish.topic.starts_with("full/"), "{}", publish.topic);
                let n = number_of(&publish.payload);
                if n == SENTINEL {
                    break;
                }
                delivered.push(n);
            }
            Ok(_) => {}
            Err(e) => panic!("{client_id} lost its connection while draining: {e}"),
        }
    }
    disconnect(client, eventloop).await;
    delivered
}

/// Checks that every acknowledged message was delivered and nothing unsent was; returns the duplicate count.
fn assert_acked_delivered(label: &str, outcome: &PublishOutcome, delivered: &[u32]) -> u32 {
    let counts = tally(delivered.iter().copied());
    let lost = lost(&outcome.acked, &counts);
    assert!(
        lost.is_empty(),
        "{label}: acknowledged but never delivered: {lost:?}"
    );
    let invented = invented(&counts, outcome.sent);
    assert!(
        invented.is_empty(),
        "{label}: delivered but never sent: {invented:?}"
    );
    let duplicates = duplicates(&counts);
    let refused_delivered = counts
        .keys()
        .filter(|n| outcome.refused.contains(n))
        .count();
    println!(
        "{label}: delivered {} ({} distinct, {refused_delivered} of them refused), duplicates {duplicates}",
        delivered.len(),
        counts.len()
    );
    duplicates
}

/// The lines of the broker log that report a store failure caused by the full disk.
fn disk_full_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("store") && line.contains("No space left on device"))
        .collect()
}

/// A full disk refuses publishes without acknowledging them, the broker keeps serving, and once space
/// is back every acknowledged message reaches the persistent subscribers, live and after kill -9 [contract 1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_publishes_and_loses_no_acked_message() {
    let started = Instant::now();
    let tmpfs = match Tmpfs::mount() {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            needs::missing(&format!(
                "cannot mount a tmpfs for the disk-full test: {reason}"
            ));
            return;
        }
    };
    let data_dir = tmpfs.path().join("data");
    let filler = tmpfs.path().join("filler");
    let mut broker = BrokerProcess::start(&data_dir, "sync");
    let port = broker.port();
    for sub in ["disk-full-live", "disk-full-restart"] {
        subscribe_offline(options(sub, port, false), FILTER, QoS::AtLeastOnce).await;
    }
    let filled = fill_leaving(&filler, HEADROOM);
    println!("filler of {filled} bytes leaves {HEADROOM} bytes free");

    let outcome = publish_until_refused(port).await;
    println!(
        "sent {}, acknowledged {}, refused {} over {} publisher connections",
        outcome.sent,
        outcome.acked.len(),
        outcome.refused.len(),
        RECONNECTS + 1
    );
    assert!(
        !outcome.acked.is_empty(),
        "nothing was acknowledged before the disk filled; log:\n{}",
        broker.log_text()
    );
    assert_clean_client_served(port).await;
    assert_v5_publisher_told_quota_exceeded(port, outcome.sent).await;
    let log = broker.log_text();
    let reported = disk_full_lines(&log);
    assert!(
        !reported.is_empty(),
        "the broker log names no store error for the full disk:\n{log}"
    );
    println!("broker log: {}", reported[0]);
    assert!(!log.contains("panicked"), "the broker panicked:\n{log}");

    std::fs::remove_file(&filler).unwrap();
    assert!(
        publish_sentinel(port, "live").await,
        "space is back, but the broker refuses a persistent publish; log:\n{}",
        broker.log_text()
    );
    let live = drain_backlog(port, "disk-full-live").await;
    let live_duplicates = assert_acked_delivered("live, space back", &outcome, &live);

    broker.kill9();
    let broker = broker.restart("sync");
    let restarted = drain_backlog(broker.port(), "disk-full-restart").await;
    let restart_duplicates = assert_acked_delivered("after kill -9", &outcome, &restarted);
    println!(
        "acked {}, refused {}, duplicates {live_duplicates} live and {restart_duplicates} after kill -9; took {:?}",
        outcome.acked.len(),
        outcome.refused.len(),
        started.elapsed()
    );
}
