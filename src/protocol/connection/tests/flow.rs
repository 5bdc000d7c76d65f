//! Flow control as the core sees it: credit given back to the router, held back while the client lags, and
//! reading paused while the router holds this publisher back.

use super::*;
use crate::protocol::credit::OUTPUT_HIGH_WATER_BYTES;
use crate::store::OverflowPolicy;

/// The credit given back, leaving out the grants of nothing that only report progress.
fn grants(requests: &[Request]) -> Vec<u32> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::GrantCredit(n) if *n > 0 => Some(*n),
            _ => None,
        })
        .collect()
}

/// How many grants of nothing (progress reports) are among `requests`.
fn progress_reports(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| matches!(r, Request::GrantCredit(0)))
        .count()
}

#[test]
fn deliveries_taken_give_credit_back_a_quarter_window_at_a_time() {
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    h.feed(Input::Deliveries(vec![
        delivery("t", QoS::AtMostOnce, None);
        3
    ]));
    assert!(grants(&h.requests()).is_empty());
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtMostOnce,
        None,
    )]));
    assert_eq!(grants(&h.requests()), vec![4], "a quarter of 16");
}

#[test]
fn a_clean_session_with_a_full_queue_holds_credit_back_until_the_client_acknowledges() {
    let mut h = Harness::with(Settings {
        max_queued_messages: 8,
        ..settings()
    });
    h.connect_clean("s", 0);
    // 4 in the window, 8 queued: the queue is at its bound.
    h.feed(Input::Deliveries(vec![
        delivery("t", QoS::AtLeastOnce, None);
        12
    ]));
    assert!(
        grants(&h.requests()).is_empty(),
        "nothing given back while congested"
    );
    for id in 1..=4 {
        h.read(vec![Packet::PubAck(pid(id).into())]);
    }
    assert!(
        grants(&h.requests()).is_empty(),
        "4 in the window, 4 queued: half way"
    );
    for id in 5..=8 {
        h.read(vec![Packet::PubAck(pid(id).into())]);
    }
    assert_eq!(
        grants(&h.requests()),
        vec![12],
        "everything owed, once the queue has drained"
    );
}

#[test]
fn a_client_that_does_not_read_its_socket_gets_no_credit_until_it_does() {
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    assert!(
        !h.conn.wants_written(),
        "no news needed while nothing is held back"
    );
    h.unwritten = OUTPUT_HIGH_WATER_BYTES + 1;
    h.feed(Input::Deliveries(vec![
        delivery("t", QoS::AtMostOnce, None);
        8
    ]));
    assert!(grants(&h.requests()).is_empty());
    h.unwritten = OUTPUT_HIGH_WATER_BYTES / 2;
    h.feed(Input::Written);
    let requests = h.requests();
    assert!(grants(&requests).is_empty(), "still above the low mark");
    assert_eq!(progress_reports(&requests), 1, "but the socket took bytes");
    h.unwritten = 0;
    h.feed(Input::Written);
    assert_eq!(grants(&h.requests()), vec![8]);
    assert!(!h.conn.wants_written());
}

#[test]
fn a_held_publisher_stops_reading_until_released() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    assert!(h.conn.wants_input());
    h.feed(Input::Pace { hold: true });
    assert!(!h.conn.wants_input());
    h.feed(Input::Pace { hold: false });
    assert!(h.conn.wants_input());
    h.feed(Input::RouterBusy(true));
    assert!(!h.conn.wants_input(), "the router's mailbox is full");
    h.feed(Input::RouterBusy(false));
    assert!(h.conn.wants_input());
}

#[test]
fn a_persistent_session_leaves_what_it_has_no_room_for_in_the_store() {
    let mut h = Harness::new();
    h.connect_live("s");
    let many: Vec<_> = (1..=600)
        .map(|seq| delivery("t", QoS::AtLeastOnce, Some(seq)))
        .collect();
    h.feed(Input::Deliveries(many));
    let out = h.take();
    assert_eq!(publishes(&out.emits).len(), 4, "the window");
    assert!(
        grants(&out.requests).is_empty(),
        "the memory queue is at its bound"
    );
    // Acknowledging everything in memory lets the session read the rest from the store.
    let mut acked = 0;
    for id in 1..=600u16 {
        h.read(vec![Packet::PubAck(pid(id).into())]);
        acked += 1;
        if h.out
            .requests
            .iter()
            .any(|r| matches!(r, Request::ReadQueue { .. }))
        {
            break;
        }
    }
    let requests = h.requests();
    assert!(
        matches!(requests.iter().find(|r| matches!(r, Request::ReadQueue { .. })), Some(Request::ReadQueue { after_seq, .. }) if *after_seq == 516),
        "after {acked} acknowledgements: {requests:?}"
    );
}

fn dropped(requests: &[Request]) -> u32 {
    requests
        .iter()
        .map(|r| match r {
            Request::CountDropped(n) => *n,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_full_clean_queue_drops_the_newest_or_the_oldest_but_never_qos2() {
    for (policy, kept) in [
        (OverflowPolicy::DropNew, vec!["q1", "q2"]),
        (OverflowPolicy::DropOldest, vec!["q2", "q3"]),
    ] {
        let mut h = Harness::with(Settings {
            max_inflight: 1,
            max_queued_messages: 2,
            overflow: policy,
            ..settings()
        });
        h.connect_clean("s", 0);
        let batch = ["w", "q1", "q2", "q3"]
            .iter()
            .map(|t| delivery(t, QoS::AtLeastOnce, None))
            .chain([delivery("x2", QoS::ExactlyOnce, None)])
            .collect();
        h.feed(Input::Deliveries(batch));
        assert_eq!(dropped(&h.requests()), 1, "{policy:?}");
        h.take();
        let mut sent = Vec::new();
        for id in 1..=4 {
            h.read(vec![Packet::PubAck(pid(id).into())]);
            h.read(vec![Packet::PubRec(pid(id).into())]);
            h.read(vec![Packet::PubComp(pid(id).into())]);
            sent.extend(publishes(&h.take().emits).into_iter().map(|p| p.0));
        }
        let mut expected: Vec<String> = kept.iter().map(|s| (*s).to_owned()).collect();
        expected.push("x2".to_owned());
        assert_eq!(sent, expected, "{policy:?}");
    }
}
