use super::*;

#[test]
fn create_session_is_an_upsert_that_keeps_created_at() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(&h, vec![create("a", 100)]).unwrap();
    write(
        &h,
        vec![StoreOp::CreateSession {
            client_id: cid("a"),
            level: ProtocolLevel::V31,
            now_ms: 200,
        }],
    )
    .unwrap();
    write(
        &h,
        vec![StoreOp::TouchSession {
            client_id: cid("a"),
            now_ms: 300,
        }],
    )
    .unwrap();
    write(
        &h,
        vec![StoreOp::TouchSession {
            client_id: cid("ghost"),
            now_ms: 300,
        }],
    )
    .unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let a = reader.session("a").unwrap().unwrap();
    assert_eq!(
        (a.created_at_ms, a.last_seen_ms, a.level),
        (100, 300, ProtocolLevel::V31)
    );
    assert!(
        reader.session("ghost").unwrap().is_none(),
        "touch must not create a session"
    );
    w.shutdown().unwrap();
}

#[test]
fn subscriptions_are_kept_per_client_without_leaking_into_prefixed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let f = |s: &str| TopicFilter::new(s.to_owned()).unwrap();
    let sub = |c: &str, filter: &str, qos: QoS| StoreOp::Subscribe {
        client_id: cid(c),
        filter: f(filter),
        grant: qos.into(),
    };
    write(
        &h,
        vec![
            create("c", 1),
            create("c1", 1),
            sub("c", "a/#", QoS::AtLeastOnce),
            sub("c", "b/+", QoS::ExactlyOnce),
            sub("c1", "z", QoS::AtMostOnce),
            sub("c", "a/#", QoS::AtMostOnce),
            StoreOp::Unsubscribe {
                client_id: cid("c"),
                filter: f("b/+"),
            },
        ],
    )
    .unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        reader.subscriptions("c").unwrap(),
        vec![(f("a/#"), QoS::AtMostOnce.into())]
    );
    assert_eq!(
        reader.subscriptions("c1").unwrap(),
        vec![(f("z"), QoS::AtMostOnce.into())]
    );
    assert_eq!(reader.session("c").unwrap().unwrap().subscriptions, 1);
    w.shutdown().unwrap();
}

#[test]
fn incoming_qos2_ids_are_added_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let add = |c: &str, p| StoreOp::AddIncomingQos2 {
        client_id: cid(c),
        packet_id: pid(p),
    };
    write(
        &h,
        vec![add("a", 7), add("a", 1), add("a", 65535), add("b", 7)],
    )
    .unwrap();
    write(
        &h,
        vec![StoreOp::RemoveIncomingQos2 {
            client_id: cid("a"),
            packet_id: pid(7),
        }],
    )
    .unwrap();
    let ids = h
        .read_incoming_qos2(cid("a"))
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(ids, vec![pid(1), pid(65535)]);
    let ids = h
        .read_incoming_qos2(cid("b"))
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(ids, vec![pid(7)]);
    w.shutdown().unwrap();
}

#[test]
fn retained_messages_are_set_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (h, _, w) = open(&cfg);
    let first = msg("t/1", b"one", QoS::AtLeastOnce);
    let second = msg("t/1", b"uno", QoS::AtMostOnce);
    let other = msg("t/2", b"two", QoS::ExactlyOnce);
    write(
        &h,
        vec![
            StoreOp::SetRetained { message: first },
            StoreOp::SetRetained {
                message: Arc::clone(&other),
            },
        ],
    )
    .unwrap();
    write(
        &h,
        vec![StoreOp::SetRetained {
            message: Arc::clone(&second),
        }],
    )
    .unwrap();
    w.shutdown().unwrap();
    let (h, recovered, w) = open(&cfg);
    assert_eq!(
        recovered.retained,
        vec![Arc::clone(&second), Arc::clone(&other)]
    );
    write(
        &h,
        vec![StoreOp::DeleteRetained {
            topic: other.topic.clone(),
        }],
    )
    .unwrap();
    assert_eq!(
        Store::open_read_only(dir.path())
            .unwrap()
            .retained()
            .unwrap(),
        vec![second]
    );
    w.shutdown().unwrap();
}

#[test]
fn queue_entries_move_through_their_states_and_read_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let m = msg("q", b"body", QoS::ExactlyOnce);
    let mut ops = vec![create("a", 1), store_message(1, &m)];
    ops.extend((1..=5).map(|seq| enqueue("a", seq, 1, QoS::ExactlyOnce)));
    write(&h, ops).unwrap();
    write(
        &h,
        vec![
            mark_sent("a", 1, 10),
            mark_sent("a", 2, 11),
            mark_released("a", 1, 10),
        ],
    )
    .unwrap();
    let all = queue(&h, "a");
    assert_eq!(all.len(), 5);
    assert_eq!(
        (all[0].state, all[0].message.is_none()),
        (EntryState::PubRelSent(pid(10)), true)
    );
    assert_eq!(all[1].state, EntryState::PublishSent(pid(11)));
    assert_eq!(all[1].message.as_deref(), Some(&*m));
    assert_eq!(
        (all[2].state, all[2].qos),
        (EntryState::Queued, QoS::ExactlyOnce)
    );
    let page = h
        .read_queue(cid("a"), 2, 2)
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(page.iter().map(|q| q.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert!(h
        .read_queue(cid("a"), u64::MAX, 10)
        .blocking_recv()
        .unwrap()
        .unwrap()
        .is_empty());
    let summary = Store::open_read_only(dir.path())
        .unwrap()
        .session("a")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            summary.queued_messages,
            summary.inflight,
            summary.queued_bytes
        ),
        (3, 2, 3 * 5)
    );
    w.shutdown().unwrap();
}
