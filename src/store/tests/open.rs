use super::*;
use redb::{Builder, ConcurrencyMode};

#[test]
fn delete_session_removes_everything_of_that_session_only() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let shared = msg("shared", b"s", QoS::AtLeastOnce);
    let own = msg("own", b"o", QoS::ExactlyOnce);
    let f = TopicFilter::new("#").unwrap();
    let setup = |c: &str| {
        vec![
            create(c, 1),
            StoreOp::Subscribe {
                client_id: cid(c),
                filter: f.clone(),
                grant: (QoS::ExactlyOnce).into(),
            },
            StoreOp::AddIncomingQos2 {
                client_id: cid(c),
                packet_id: pid(5),
            },
            enqueue(c, 1, 1, QoS::AtLeastOnce),
        ]
    };
    let mut ops = vec![store_message(1, &shared), store_message(2, &own)];
    ops.extend(setup("a"));
    ops.extend(setup("b"));
    ops.push(enqueue("a", 2, 2, QoS::ExactlyOnce));
    write(&h, ops).unwrap();
    assert_eq!(bodies(dir.path()), 2);
    write(
        &h,
        vec![StoreOp::DeleteSession {
            client_id: cid("a"),
        }],
    )
    .unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(reader.session("a").unwrap().is_none());
    assert!(reader.subscriptions("a").unwrap().is_empty());
    assert!(reader.queue("a", 0, 100).unwrap().is_empty());
    assert!(reader.incoming_qos2("a").unwrap().is_empty());
    assert_eq!(
        reader.message_count().unwrap(),
        1,
        "the body only b references stays"
    );
    assert_eq!(reader.session("b").unwrap().unwrap().subscriptions, 1);
    assert_eq!(
        reader.queue("b", 0, 100).unwrap()[0].message.as_deref(),
        Some(&*shared)
    );
    assert_eq!(
        h.read_session_stats(cid("a"))
            .blocking_recv()
            .unwrap()
            .unwrap(),
        SessionQueueStats::default()
    );
    w.shutdown().unwrap();
}

#[test]
fn state_is_recovered_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (h, recovered, w) = open(&cfg);
    assert!(recovered.sessions.is_empty());
    assert_eq!(recovered.next_message_id, 1);
    let f = |s: &str| TopicFilter::new(s.to_owned()).unwrap();
    let m = msg("r", b"keep", QoS::AtLeastOnce);
    let mut retained = (*msg("ret/x", b"r", QoS::AtMostOnce)).clone();
    retained.retain = true;
    write(
        &h,
        vec![
            StoreOp::CreateSession {
                client_id: cid("old"),
                level: ProtocolLevel::V31,
                now_ms: 10,
            },
            create("new", 20),
            StoreOp::TouchSession {
                client_id: cid("new"),
                now_ms: 25,
            },
            StoreOp::Subscribe {
                client_id: cid("new"),
                filter: f("a/+"),
                grant: (QoS::AtLeastOnce).into(),
            },
            StoreOp::Subscribe {
                client_id: cid("new"),
                filter: f("b"),
                grant: (QoS::ExactlyOnce).into(),
            },
            store_message(41, &m),
            enqueue("new", 7, 41, QoS::AtLeastOnce),
            enqueue("new", 9, 41, QoS::AtLeastOnce),
            StoreOp::SetRetained {
                message: Arc::new(retained.clone()),
            },
        ],
    )
    .unwrap();
    w.shutdown().unwrap();
    let (h, recovered, w) = open(&cfg);
    let expected = vec![
        RecoveredSession {
            client_id: cid("new"),
            level: ProtocolLevel::V311,
            subscriptions: vec![
                (f("a/+"), QoS::AtLeastOnce.into()),
                (f("b"), QoS::ExactlyOnce.into()),
            ],
            next_seq: 10,
            last_seen_ms: 25,
            session_expiry: None,
            will: None,
        },
        RecoveredSession {
            client_id: cid("old"),
            level: ProtocolLevel::V31,
            subscriptions: vec![],
            next_seq: 1,
            last_seen_ms: 10,
            session_expiry: None,
            will: None,
        },
    ];
    assert_eq!(recovered.sessions, expected);
    assert_eq!(recovered.retained, vec![Arc::new(retained)]);
    assert_eq!(recovered.next_message_id, 42);
    assert_eq!(seqs(&h, "new"), vec![7, 9]);
    w.shutdown().unwrap();
}

fn raw_db(dir: &Path) -> redb::Database {
    let mut builder = Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder.create(dir.join(DB_FILE_NAME)).unwrap()
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, w) = open(&config(dir.path()));
    w.shutdown().unwrap();
    let db = raw_db(dir.path());
    migrate::force_version(&db, 7).unwrap();
    drop(db);
    let err = Store::open(&config(dir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("version 7") && text.contains("up to 2") && text.contains(DB_FILE_NAME),
        "{text}"
    );
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(StoreError::NewerSchema { found: 7, .. })
    ));
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    std::fs::write(&path, b"these are not the bytes of a database").unwrap();
    let err = Store::open(&config(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"these are not the bytes of a database",
        "the file is left alone"
    );
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

fn damage(skip: usize, take: usize) -> StoreError {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(
        &h,
        vec![
            create("a", 1),
            StoreOp::SetRetained {
                message: msg("t", &[3; 9000], QoS::AtMostOnce),
            },
        ],
    )
    .unwrap();
    w.shutdown().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(skip).take(take) {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(&config(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    err
}

#[test]
fn a_damaged_header_is_refused_without_a_panic() {
    let err = damage(9, 4096);
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
}

#[test]
fn damaged_pages_are_refused_without_a_panic() {
    damage(4096, usize::MAX);
}

#[test]
fn a_foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = raw_db(dir.path());
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<u64, u64>::new("someone_else"))
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    let err = Store::open(&config(dir.path())).unwrap_err();
    assert!(
        matches!(err, StoreError::NotADatabase { .. }) && err.to_string().contains("someone_else"),
        "{err}"
    );
}

#[test]
fn a_read_only_reader_opens_beside_the_writer_and_follows_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(&h, vec![create("a", 1)]).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.sessions().unwrap().len(), 1);
    let m = msg("t", b"payload", QoS::AtLeastOnce);
    write(
        &h,
        vec![
            create("b", 2),
            store_message(1, &m),
            enqueue("b", 1, 1, QoS::AtLeastOnce),
        ],
    )
    .unwrap();
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        (sessions[1].queued_messages, sessions[1].queued_bytes),
        (1, 8)
    );
    assert!(reader.file_size().unwrap() > 0);
    w.shutdown().unwrap();
    assert_eq!(
        reader.sessions().unwrap().len(),
        2,
        "the reader outlives the writer"
    );
}

#[test]
fn a_missing_database_is_reported_by_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_read_only(&dir.path().join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn mqtt5_properties_grants_expiry_and_delayed_wills_survive_a_reopen() {
    // Schema version 2: message properties (user properties in order), subscription options with their
    // identifier, and a session's own expiry are stored and read back as they were.
    use crate::codec::Properties;
    use crate::message::Grant;
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let properties = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x00\x01")),
        user_properties: crate::codec::UserProperties::from_pairs([("k", "2"), ("k", "1")])
            .unwrap(),
        ..Properties::default()
    };
    let mut message = (*msg("v5/t", b"p", QoS::AtLeastOnce)).clone();
    message.properties = crate::codec::PublishProperties::from_properties(&properties)
        .unwrap()
        .boxed();
    let message = Arc::new(message);
    let mut retained = (*message).clone();
    retained.retain = true;
    let grant = Grant::new(QoS::ExactlyOnce, true, true, Some(268_435_455));
    write(
        &h,
        vec![
            create("c5", 1),
            StoreOp::SetSessionExpiry {
                client_id: cid("c5"),
                session_expiry: Some(90),
            },
            StoreOp::Subscribe {
                client_id: cid("c5"),
                filter: TopicFilter::new("v5/#").unwrap(),
                grant,
            },
            store_message(1, &message),
            StoreOp::Enqueue {
                client_id: cid("c5"),
                seq: 1,
                message: MessageId(1),
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_ids: vec![42, 7],
            },
            StoreOp::SetRetained {
                message: Arc::new(retained),
            },
            StoreOp::SetWill {
                client_id: cid("c5"),
                will: Some((123_456, message.clone())),
            },
        ],
    )
    .unwrap();
    w.shutdown().unwrap();
    let (h, recovered, w) = open(&config(dir.path()));
    let session = &recovered.sessions[0];
    assert_eq!(session.session_expiry, Some(90));
    let (due, will) = session.will.clone().expect("the delayed will");
    assert_eq!(
        (due, will.properties.as_deref().map(|p| p.to_properties())),
        (123_456, Some(properties.clone()))
    );
    assert_eq!(
        session.subscriptions,
        vec![(TopicFilter::new("v5/#").unwrap(), grant)]
    );
    assert_eq!(
        recovered.retained[0]
            .properties
            .as_deref()
            .map(|p| p.to_properties()),
        Some(properties.clone())
    );
    let queued = queue(&h, "c5");
    assert_eq!(
        queued[0]
            .message
            .as_ref()
            .unwrap()
            .properties
            .as_deref()
            .map(|p| p.to_properties()),
        Some(properties.clone())
    );
    assert_eq!(
        (queued[0].retain, queued[0].subscription_ids.clone()),
        (true, vec![42, 7])
    );
    w.shutdown().unwrap();
}
