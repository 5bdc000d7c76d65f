//! The version 1 fixture: `migrations/fixtures/v1.redb`, written once by `write_v1_fixture` and read by every later build.

use super::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/fixtures/v1.redb");

/// What the fixture holds: two sessions, a shared body, an inflight QoS 2 exchange, a QoS 2 id and a retained message.
fn fixture_ops() -> Vec<StoreOp> {
    let f = |s: &str| TopicFilter::new(s.to_owned()).unwrap();
    let body = msg("sensors/1/temp", b"21.5", QoS::AtLeastOnce);
    let q2 = msg("cmd/door", b"open", QoS::ExactlyOnce);
    let mut retained = (*msg("status/broker", b"up", QoS::AtLeastOnce)).clone();
    retained.retain = true;
    vec![
        StoreOp::CreateSession {
            client_id: cid("device-1"),
            level: ProtocolLevel::V311,
            now_ms: 1_700_000_000_000,
        },
        StoreOp::CreateSession {
            client_id: cid("legacy"),
            level: ProtocolLevel::V31,
            now_ms: 1_700_000_001_000,
        },
        StoreOp::Subscribe {
            client_id: cid("device-1"),
            filter: f("sensors/+/temp"),
            grant: (QoS::AtLeastOnce).into(),
        },
        StoreOp::Subscribe {
            client_id: cid("device-1"),
            filter: f("cmd/#"),
            grant: (QoS::ExactlyOnce).into(),
        },
        StoreOp::Subscribe {
            client_id: cid("legacy"),
            filter: f("sensors/#"),
            grant: (QoS::AtLeastOnce).into(),
        },
        store_message(1, &body),
        store_message(2, &q2),
        enqueue("device-1", 1, 1, QoS::AtLeastOnce),
        enqueue("device-1", 2, 2, QoS::ExactlyOnce),
        enqueue("legacy", 1, 1, QoS::AtLeastOnce),
        mark_sent("device-1", 2, 17),
        StoreOp::AddIncomingQos2 {
            client_id: cid("legacy"),
            packet_id: pid(300),
        },
        StoreOp::SetRetained {
            message: Arc::new(retained),
        },
    ]
}

#[test]
#[ignore = "writes migrations/fixtures/v1.redb; run only to regenerate the version 1 fixture"]
fn write_v1_fixture() {
    assert_eq!(
        migrate::CURRENT_VERSION,
        1,
        "this generator writes version 1 only"
    );
    assert!(
        std::env::var_os("HARBORMQ_WRITE_FIXTURE").is_some(),
        "set HARBORMQ_WRITE_FIXTURE=1"
    );
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(&h, fixture_ops()).unwrap();
    w.shutdown().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let mut db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(&path)
        .unwrap();
    while db.compact().unwrap() {}
    drop(db);
    std::fs::copy(&path, FIXTURE).unwrap();
}

fn check_contents(h: &StoreHandle, recovered: &Recovered) {
    let names: Vec<_> = recovered
        .sessions
        .iter()
        .map(|s| (s.client_id.as_str(), s.level, s.next_seq))
        .collect();
    assert_eq!(
        names,
        vec![
            ("device-1", ProtocolLevel::V311, 3),
            ("legacy", ProtocolLevel::V31, 2)
        ]
    );
    assert_eq!(recovered.sessions[0].subscriptions.len(), 2);
    assert_eq!(recovered.next_message_id, 3);
    assert_eq!(recovered.retained.len(), 1);
    assert_eq!(
        (
            recovered.retained[0].topic.as_str(),
            recovered.retained[0].retain
        ),
        ("status/broker", true)
    );
    let device = queue(h, "device-1");
    assert_eq!(
        device[0].message.as_ref().unwrap().payload.as_ref(),
        b"21.5"
    );
    assert_eq!(device[1].state, EntryState::PublishSent(pid(17)));
    assert_eq!(
        device[1].message.as_ref().unwrap().topic.as_str(),
        "cmd/door"
    );
    let ids = h
        .read_incoming_qos2(cid("legacy"))
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(ids, vec![pid(300)]);
}

#[test]
fn the_v1_fixture_upgrades_to_v2_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(FIXTURE, dir.path().join(DB_FILE_NAME)).unwrap();
    // A read-only reader never migrates: it asks for the broker to be started on the file once.
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(StoreError::OlderSchema {
            found: 1,
            supported: 2,
            ..
        })
    ));
    // Step 2 (migrations/0002_mqtt5.rs) upgrades it; every session, subscription and queued message stays.
    let (h, recovered, w) = open(&config(dir.path()));
    check_contents(&h, &recovered);
    w.shutdown().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        (
            sessions[0].queued_messages,
            sessions[0].inflight,
            sessions[1].incoming_qos2
        ),
        (1, 1, 1)
    );
    drop(reader);
    let (h, recovered, w) = open(&config(dir.path()));
    check_contents(&h, &recovered);
    w.shutdown().unwrap();
}

#[test]
fn the_migration_steps_initialise_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let (h, recovered, w) = open(&config(dir.path()));
    assert!(recovered.sessions.is_empty());
    write(&h, fixture_ops()).unwrap();
    w.shutdown().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open_read_only(&path)
        .unwrap();
    assert_eq!(
        migrate::stored_version(&db, &path).unwrap(),
        Some(migrate::CURRENT_VERSION)
    );
    drop(db);
    let (h, recovered, w) = open(&config(dir.path()));
    check_contents(&h, &recovered);
    w.shutdown().unwrap();
}
