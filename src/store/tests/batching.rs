use super::*;

#[test]
fn writes_that_arrive_during_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let release = pause(&h);
    let pending: Vec<_> = (0..50)
        .map(|i| h.write(vec![create(&format!("s{i}"), i)]))
        .collect();
    drop(release);
    for rx in pending {
        rx.blocking_recv().unwrap().unwrap();
    }
    assert_eq!(
        h.stats().commits,
        1,
        "50 writes waiting together commit in one transaction"
    );
    assert_eq!(h.stats().write_requests, 50);
    assert_eq!(
        Store::open_read_only(dir.path())
            .unwrap()
            .sessions()
            .unwrap()
            .len(),
        50
    );
    w.shutdown().unwrap();
}

#[test]
fn a_batch_holds_at_most_max_batch_ops() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_batch_ops: 10,
        ..config(dir.path())
    };
    let (h, _, w) = open(&cfg);
    let release = pause(&h);
    let pending: Vec<_> = (0..50)
        .map(|i| h.write(vec![create(&format!("s{i}"), i)]))
        .collect();
    drop(release);
    for rx in pending {
        rx.blocking_recv().unwrap().unwrap();
    }
    assert_eq!(h.stats().commits, 5);
    w.shutdown().unwrap();
}

#[test]
fn an_entry_acknowledged_within_its_batch_never_reaches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    write(&h, vec![create("a", 1)]).unwrap();
    let file = dir.path().join(DB_FILE_NAME);
    let size_before = std::fs::metadata(&file).unwrap().len();
    let big = msg("big", &vec![1u8; 4 << 20], QoS::ExactlyOnce);
    let release = pause(&h);
    let stored = h.write(vec![
        store_message(1, &big),
        enqueue("a", 1, 1, QoS::ExactlyOnce),
    ]);
    let sent = h.write(vec![mark_sent("a", 1, 1)]);
    let released = h.write(vec![mark_released("a", 1, 1)]);
    let removed = h.write(vec![remove("a", 1)]);
    drop(release);
    for rx in [stored, sent, released, removed] {
        rx.blocking_recv().unwrap().unwrap();
    }
    assert!(queue(&h, "a").is_empty());
    assert_eq!(bodies(dir.path()), 0);
    assert_eq!(
        h.stats().ops_coalesced,
        4,
        "enqueue, mark sent, mark released and remove"
    );
    // A commit's own bookkeeping takes a few pages; the 4 MiB body would take far more.
    let size_after = std::fs::metadata(&file).unwrap().len();
    assert!(
        size_after < size_before + (1 << 20),
        "the body was written: {size_before} -> {size_after}"
    );
    // The same message outside one batch does reach the file, so the check above can fail.
    write(
        &h,
        vec![store_message(2, &big), enqueue("a", 2, 2, QoS::ExactlyOnce)],
    )
    .unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > size_after + (4 << 20));
    w.shutdown().unwrap();
}

#[test]
fn a_read_in_a_batch_sees_the_writes_committed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    let m = msg("t", b"x", QoS::AtLeastOnce);
    let release = pause(&h);
    let written = h.write(vec![
        store_message(1, &m),
        enqueue("a", 1, 1, QoS::AtLeastOnce),
    ]);
    let read = h.read_queue(cid("a"), 0, 10);
    drop(release);
    written.blocking_recv().unwrap().unwrap();
    assert_eq!(read.blocking_recv().unwrap().unwrap().len(), 1);
    assert_eq!(h.stats().commits, 1);
    w.shutdown().unwrap();
}

#[test]
fn periodic_mode_acknowledges_before_the_commit_and_commits_on_flush_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        durability: Durability::Periodic {
            interval_ms: 3_600_000,
        },
        ..config(dir.path())
    };
    let (h, _, w) = open(&cfg);
    write(&h, vec![create("a", 1)]).unwrap();
    write(&h, vec![create("b", 1)]).unwrap();
    assert_eq!(
        h.stats().commits,
        0,
        "acknowledged within the window, not yet committed"
    );
    assert!(Store::open_read_only(dir.path())
        .unwrap()
        .session("a")
        .unwrap()
        .is_none());
    let m = msg("t", b"x", QoS::AtLeastOnce);
    write(
        &h,
        vec![store_message(1, &m), enqueue("a", 1, 1, QoS::AtLeastOnce)],
    )
    .unwrap();
    assert_eq!(seqs(&h, "a"), vec![1], "reads see the open window");
    h.flush().blocking_recv().unwrap().unwrap();
    assert_eq!(h.stats().commits, 1, "one commit covers the whole window");
    assert!(Store::open_read_only(dir.path())
        .unwrap()
        .session("b")
        .unwrap()
        .is_some());
    write(&h, vec![create("c", 1)]).unwrap();
    w.shutdown().unwrap();
    let (_, recovered, _w) = open(&cfg);
    assert_eq!(
        recovered.sessions.len(),
        3,
        "shutdown commits the last window"
    );
}

#[test]
fn periodic_mode_commits_when_the_interval_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        durability: Durability::Periodic { interval_ms: 0 },
        ..config(dir.path())
    };
    let (h, _, w) = open(&cfg);
    write(&h, vec![create("a", 1)]).unwrap();
    assert_eq!(
        h.stats().commits,
        1,
        "an elapsed interval commits with the batch"
    );
    w.shutdown().unwrap();
}

#[test]
fn off_mode_keeps_everything_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("never-created");
    let cfg = StoreConfig {
        durability: Durability::Off,
        ..config(&data_dir)
    };
    let (h, _, w) = open(&cfg);
    let m = msg("t", b"x", QoS::AtLeastOnce);
    write(
        &h,
        vec![
            create("a", 1),
            store_message(1, &m),
            enqueue("a", 1, 1, QoS::AtLeastOnce),
        ],
    )
    .unwrap();
    assert_eq!(seqs(&h, "a"), vec![1]);
    h.flush().blocking_recv().unwrap().unwrap();
    w.shutdown().unwrap();
    assert!(!data_dir.exists(), "off never touches the disk");
    let (_, recovered, _w) = open(&cfg);
    assert!(recovered.sessions.is_empty());
}

#[test]
fn requests_after_shutdown_fail_with_writer_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&config(dir.path()));
    w.shutdown().unwrap();
    assert!(matches!(
        h.submit(StoreRequest::Flush {
            reply: tokio::sync::oneshot::channel().0
        }),
        Err(StoreError::WriterGone)
    ));
    assert!(matches!(
        h.write(vec![create("a", 1)]).blocking_recv().unwrap(),
        Err(StoreError::WriterGone)
    ));
}
