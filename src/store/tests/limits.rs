use super::*;

fn limited(dir: &Path, max_messages: u64, overflow: OverflowPolicy) -> StoreConfig {
    StoreConfig {
        max_queued_messages: max_messages,
        overflow,
        ..config(dir)
    }
}

/// Enqueues messages `first..=last` for `client`, each its own body with id = seq.
fn fill(h: &StoreHandle, client: &str, seqs: std::ops::RangeInclusive<u64>, qos: QoS) {
    let mut ops = Vec::new();
    for seq in seqs {
        ops.push(store_message(
            seq,
            &msg("t", format!("m{seq}").as_bytes(), qos),
        ));
        ops.push(enqueue(client, seq, seq, qos));
    }
    write(h, ops).unwrap();
}

fn dropped(h: &StoreHandle, client: &str) -> u64 {
    h.read_session_stats(cid(client))
        .blocking_recv()
        .unwrap()
        .unwrap()
        .dropped
}

#[test]
fn drop_new_keeps_the_oldest_messages_and_counts_the_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&limited(dir.path(), 3, OverflowPolicy::DropNew));
    fill(&h, "a", 1..=5, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "a"), vec![1, 2, 3]);
    assert_eq!(dropped(&h, "a"), 2);
    assert_eq!(h.stats().messages_dropped, 2);
    assert_eq!(
        bodies(dir.path()),
        3,
        "the dropped messages' bodies are not kept"
    );
    fill(&h, "b", 1..=1, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "b"), vec![1], "limits are per session");
    w.shutdown().unwrap();
}

#[test]
fn drop_oldest_drops_waiting_messages_but_never_inflight_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&limited(dir.path(), 3, OverflowPolicy::DropOldest));
    fill(&h, "a", 1..=3, QoS::AtLeastOnce);
    write(&h, vec![mark_sent("a", 1, 1)]).unwrap();
    fill(&h, "a", 4..=5, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "a"), vec![1, 4, 5]);
    assert_eq!(dropped(&h, "a"), 2);
    assert_eq!(bodies(dir.path()), 3);
    w.shutdown().unwrap();
}

#[test]
fn qos2_messages_are_queued_beyond_the_limit_and_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    for policy in [OverflowPolicy::DropNew, OverflowPolicy::DropOldest] {
        let (h, _, w) = open(&limited(&dir.path().join(format!("{policy:?}")), 2, policy));
        fill(&h, "a", 1..=4, QoS::ExactlyOnce);
        assert_eq!(seqs(&h, "a"), vec![1, 2, 3, 4], "{policy:?}");
        fill(&h, "a", 5..=5, QoS::AtLeastOnce);
        assert_eq!(
            seqs(&h, "a"),
            vec![1, 2, 3, 4],
            "{policy:?}: no QoS 0/1 entry to evict, so the new one goes"
        );
        assert_eq!(dropped(&h, "a"), 1);
        w.shutdown().unwrap();
    }
}

#[test]
fn the_byte_limit_applies_too() {
    let dir = tempfile::tempdir().unwrap();
    // Each message counts 1 topic byte + 2 payload bytes.
    let cfg = StoreConfig {
        max_queued_bytes: 7,
        ..limited(dir.path(), 100, OverflowPolicy::DropNew)
    };
    let (h, _, w) = open(&cfg);
    fill(&h, "a", 1..=3, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "a"), vec![1, 2]);
    let stats = h
        .read_session_stats(cid("a"))
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!((stats.messages, stats.bytes, stats.dropped), (2, 6, 1));
    w.shutdown().unwrap();
}

#[test]
fn queue_sizes_are_recomputed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = limited(dir.path(), 3, OverflowPolicy::DropNew);
    let (h, _, w) = open(&cfg);
    fill(&h, "a", 1..=3, QoS::AtLeastOnce);
    w.shutdown().unwrap();
    let (h, recovered, w) = open(&cfg);
    assert_eq!(
        recovered.sessions.len(),
        0,
        "queue entries alone make no session"
    );
    fill(&h, "a", 4..=4, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "a"), vec![1, 2, 3]);
    assert_eq!(dropped(&h, "a"), 1);
    w.shutdown().unwrap();
}

#[test]
fn a_failed_batch_leaves_the_queue_figures_of_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _, w) = open(&limited(dir.path(), 3, OverflowPolicy::DropNew));
    fill(&h, "a", 1..=2, QoS::AtLeastOnce);
    let m = msg("t", b"xx", QoS::AtLeastOnce);
    // The first enqueue counts, then the batch fails on the missing body and must be forgotten.
    let err = write(
        &h,
        vec![
            store_message(10, &m),
            enqueue("a", 10, 10, QoS::AtLeastOnce),
            enqueue("a", 11, 99, QoS::AtLeastOnce),
        ],
    );
    assert!(err.is_err());
    fill(&h, "a", 3..=3, QoS::AtLeastOnce);
    assert_eq!(seqs(&h, "a"), vec![1, 2, 3]);
    assert_eq!(dropped(&h, "a"), 0);
    w.shutdown().unwrap();
}
