use super::*;

#[test]
fn a_body_is_stored_once_for_many_sessions_and_removed_with_its_last_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let m = msg("fan/out", &[7; 100], QoS::AtLeastOnce);
    let mut ops = vec![store_message(1, &m)];
    ops.extend(
        ["a", "b", "c"]
            .iter()
            .map(|c| enqueue(c, 1, 1, QoS::AtLeastOnce)),
    );
    write(&h, ops).unwrap();
    assert_eq!(bodies(dir.path()), 1);
    write(&h, vec![remove("a", 1)]).unwrap();
    write(&h, vec![remove("b", 1)]).unwrap();
    assert_eq!(bodies(dir.path()), 1, "one reference is left");
    assert_eq!(queue(&h, "c")[0].message.as_deref(), Some(&*m));
    write(&h, vec![remove("c", 1)]).unwrap();
    assert_eq!(bodies(dir.path()), 0);
    w.shutdown().unwrap();
}

#[test]
fn the_body_is_released_at_pubrel_while_the_entry_remains() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let m = msg("q2", b"exactly once", QoS::ExactlyOnce);
    write(
        &h,
        vec![store_message(9, &m), enqueue("a", 1, 9, QoS::ExactlyOnce)],
    )
    .unwrap();
    write(&h, vec![mark_sent("a", 1, 3)]).unwrap();
    assert_eq!(bodies(dir.path()), 1);
    write(&h, vec![mark_released("a", 1, 3)]).unwrap();
    assert_eq!(bodies(dir.path()), 0);
    let entries = queue(&h, "a");
    assert_eq!(
        (entries[0].state, entries[0].message.is_none()),
        (EntryState::PubRelSent(pid(3)), true)
    );
    let stats = h
        .read_session_stats(cid("a"))
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(
        (stats.messages, stats.bytes),
        (0, 0),
        "a released entry no longer counts against the limits"
    );
    write(&h, vec![remove("a", 1)]).unwrap();
    assert!(queue(&h, "a").is_empty());
    w.shutdown().unwrap();
}

#[test]
fn a_body_nobody_references_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(
        &h,
        vec![store_message(1, &msg("t", b"x", QoS::AtLeastOnce))],
    )
    .unwrap();
    assert_eq!(bodies(dir.path()), 0);
    w.shutdown().unwrap();
}

#[test]
fn an_enqueue_of_a_missing_body_refuses_its_request_and_nothing_of_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let err = write(
        &h,
        vec![create("a", 1), enqueue("a", 1, 42, QoS::AtLeastOnce)],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("message 42 is not stored"),
        "{err}"
    );
    assert!(Store::open_read_only(dir.path())
        .unwrap()
        .session("a")
        .unwrap()
        .is_none());
    assert_eq!(h.stats().refused_requests, 1);
    assert_eq!(h.stats().failed_batches, 0);
    write(&h, vec![create("a", 1)]).expect("the writer keeps serving");
    w.shutdown().unwrap();
}

#[test]
fn a_refused_request_does_not_fail_the_others_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let body = msg("t", b"x", QoS::AtLeastOnce);
    let release = pause(&h);
    let first = h.write(vec![create("a", 1), store_message(7, &body)]);
    let bad = h.write(vec![create("b", 1), enqueue("b", 1, 42, QoS::AtLeastOnce)]);
    // A body stored by an earlier request of the same batch is there for a later one.
    let third = h.write(vec![create("c", 1), enqueue("c", 1, 7, QoS::AtLeastOnce)]);
    drop(release);
    first
        .blocking_recv()
        .unwrap()
        .expect("the first request is stored");
    let refused = bad.blocking_recv().unwrap().unwrap_err();
    assert!(
        matches!(refused, StoreError::MissingMessage(42)),
        "{refused}"
    );
    third
        .blocking_recv()
        .unwrap()
        .expect("the third request is stored");
    assert_eq!(h.stats().commits, 1, "one batch");
    assert_eq!(h.stats().refused_requests, 1);
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(reader.session("a").unwrap().is_some());
    assert!(
        reader.session("b").unwrap().is_none(),
        "nothing of the refused request"
    );
    assert!(reader.session("c").unwrap().is_some());
    assert_eq!(bodies(dir.path()), 1, "the body c's entry names");
    w.shutdown().unwrap();
}
