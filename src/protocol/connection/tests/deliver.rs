//! Messages to the client: the inflight window, outbound QoS 2, stored messages and their gates, catching up
//! from the store, and what the hooks are told.

use super::*;
use crate::protocol::io::Notification;
use crate::store::{EntryState, QueuedMessage};

#[test]
fn qos0_goes_out_at_once_and_qos1_waits_for_room_in_the_window() {
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    let mut batch = vec![delivery("z", QoS::AtMostOnce, None)];
    batch.extend((0..6).map(|_| delivery("w", QoS::AtLeastOnce, None)));
    h.feed(Input::Deliveries(batch));
    let sent = publishes(&h.take().emits);
    assert_eq!(sent.len(), 5, "QoS 0 plus a window of 4");
    assert_eq!(sent[0], ("z".to_owned(), QoS::AtMostOnce, None, false));
    let ids: Vec<_> = sent[1..].iter().map(|s| s.2.unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4], "distinct ids in the window");
    h.read(vec![Packet::PubAck(pid(2).into())]);
    assert_eq!(
        publishes(&h.take().emits),
        vec![("w".to_owned(), QoS::AtLeastOnce, Some(5), false)]
    );
    // An acknowledgement of something not in flight changes nothing.
    h.read(vec![Packet::PubAck(pid(2).into())]);
    assert!(publishes(&h.take().emits).is_empty());
}

#[test]
fn qos2_outbound_goes_pubrec_pubrel_pubcomp() {
    // [MQTT-4.3.3-1]
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::ExactlyOnce,
        None,
    )]));
    assert_eq!(publishes(&h.take().emits)[0].2, Some(1));
    h.read(vec![Packet::PubRec(pid(1).into())]);
    assert_eq!(h.packets(), vec![Packet::PubRel(pid(1).into())]);
    h.read(vec![Packet::PubRec(pid(1).into())]);
    assert_eq!(
        h.packets(),
        vec![Packet::PubRel(pid(1).into())],
        "a repeated PUBREC is answered again"
    );
    h.read(vec![Packet::PubComp(pid(1).into())]);
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::ExactlyOnce,
        None,
    )]));
    assert_eq!(publishes(&h.take().emits)[0].2, Some(2));
}

#[test]
fn a_stored_message_is_recorded_as_sent_before_the_client_can_see_it() {
    // [MQTT-4.4.0-1]: after a crash it is sent again under the same id, so the id is committed first.
    let mut h = Harness::new();
    h.connect_live("s");
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtLeastOnce,
        Some(1),
    )]));
    let out = h.take();
    assert!(matches!(out.store[..], [StoreOp::MarkSent { seq: 1, .. }]));
    assert!(out.gate.is_some(), "the PUBLISH waits for that record");
    assert_eq!(publishes(&out.emits).len(), 1);
    h.read(vec![Packet::PubAck(pid(1).into())]);
    let out = h.take();
    assert!(matches!(out.store[..], [StoreOp::Remove { seq: 1, .. }]));
    assert!(out.gate.is_none());
}

#[test]
fn pubrel_of_a_stored_message_waits_for_its_released_state() {
    let mut h = Harness::new();
    h.connect_live("s");
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::ExactlyOnce,
        Some(1),
    )]));
    h.take();
    h.read(vec![Packet::PubRec(pid(1).into())]);
    let out = h.take();
    assert!(matches!(
        out.store[..],
        [StoreOp::MarkReleased { seq: 1, .. }]
    ));
    assert!(out.gate.is_some());
    assert_eq!(
        out.packets().collect::<Vec<_>>(),
        vec![Packet::PubRel(pid(1).into())]
    );
}

#[test]
fn a_resumed_session_sends_again_what_was_unacknowledged_with_its_id_and_dup() {
    // [MQTT-4.4.0-1], [MQTT-3.3.1-1]
    let mut h = Harness::new();
    h.connect_resumed("s", 3);
    let page = vec![
        QueuedMessage {
            seq: 1,
            qos: QoS::ExactlyOnce,
            state: EntryState::PubRelSent(pid(40)),
            message: None,
            retain: false,
            subscription_ids: Vec::new(),
        },
        QueuedMessage {
            seq: 2,
            qos: QoS::AtLeastOnce,
            state: EntryState::PublishSent(pid(41)),
            message: Some(message("a", QoS::AtLeastOnce, b"2")),
            retain: false,
            subscription_ids: Vec::new(),
        },
        QueuedMessage {
            seq: 3,
            qos: QoS::AtLeastOnce,
            state: EntryState::Queued,
            message: Some(message("b", QoS::AtLeastOnce, b"3")),
            retain: false,
            subscription_ids: Vec::new(),
        },
    ];
    h.feed(Input::StorePage(Ok(page)));
    let out = h.take();
    assert_eq!(out.packets().next(), Some(Packet::PubRel(pid(40).into())));
    assert_eq!(
        publishes(&out.emits),
        vec![
            ("a".to_owned(), QoS::AtLeastOnce, Some(41), true),
            ("b".to_owned(), QoS::AtLeastOnce, Some(1), false),
        ]
    );
    assert!(matches!(out.store[..], [StoreOp::MarkSent { seq: 3, .. }]));
    h.read(vec![Packet::PubComp(pid(40).into())]);
    assert!(matches!(
        h.take().store[..],
        [StoreOp::Remove { seq: 1, .. }]
    ));
}

#[test]
fn stored_messages_arriving_live_while_catching_up_are_read_from_the_store_instead() {
    let mut h = Harness::new();
    h.connect_resumed("s", 2);
    // The first page is on its way; seq 3 arrives live meanwhile.
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtLeastOnce,
        Some(3),
    )]));
    assert!(publishes(&h.take().emits).is_empty());
    let stored = |seq| QueuedMessage {
        seq,
        qos: QoS::AtLeastOnce,
        state: EntryState::Queued,
        message: Some(message("t", QoS::AtLeastOnce, b"x")),
        retain: false,
        subscription_ids: Vec::new(),
    };
    h.feed(Input::StorePage(Ok(vec![stored(1), stored(2)])));
    let out = h.take();
    assert_eq!(publishes(&out.emits).len(), 2);
    assert!(
        matches!(out.requests[..], [Request::ReadQueue { after_seq: 2, .. }]),
        "seq 3 is read from the store: {:?}",
        out.requests
    );
    h.feed(Input::StorePage(Ok(vec![stored(3)])));
    assert_eq!(publishes(&h.take().emits).len(), 1);
    // Caught up: the next one comes live.
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtLeastOnce,
        Some(4),
    )]));
    assert_eq!(publishes(&h.take().emits).len(), 1);
}

#[test]
fn a_gap_in_live_positions_or_the_router_skipping_sends_the_session_to_the_store() {
    let mut h = Harness::new();
    h.connect_live("s");
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtLeastOnce,
        Some(2),
    )]));
    let out = h.take();
    assert!(publishes(&out.emits).is_empty());
    assert!(matches!(
        out.requests[..],
        [Request::ReadQueue { after_seq: 0, .. }]
    ));
    h.feed(Input::StorePage(Ok(Vec::new())));
    h.take();
    h.feed(Input::Behind { head: 9 });
    assert!(matches!(
        h.requests()[..],
        [Request::ReadQueue { after_seq: 2, .. }]
    ));
}

#[test]
fn the_hooks_hear_of_deliveries_and_acknowledgements() {
    let mut h = Harness::with(hooked());
    h.connect_hooked("s");
    h.feed(Input::Deliveries(vec![delivery(
        "t",
        QoS::AtLeastOnce,
        None,
    )]));
    assert!(
        matches!(&h.requests()[..], [Request::Notify(Notification::Delivered(p))] if p.packet_id == Some(pid(1)))
    );
    h.read(vec![Packet::PubAck(pid(1).into())]);
    assert!(
        matches!(&h.requests()[..], [Request::Notify(Notification::Acked(p))] if p.message.topic.as_str() == "t")
    );
    h.feed(Input::InputClosed);
    assert!(h
        .requests()
        .iter()
        .any(|r| matches!(r, Request::Notify(Notification::Disconnected(_)))));
}

#[test]
fn messages_sent_before_connack_are_delivered_after_it() {
    let mut h = Harness::new();
    h.read(vec![connect("s", false, 0)]);
    h.feed(registered(true, true, 0));
    h.feed(Input::Deliveries(vec![delivery(
        "early",
        QoS::AtMostOnce,
        None,
    )]));
    assert!(h.out.emits.is_empty());
    h.feed(Input::IncomingQos2(Ok(Vec::new())));
    let out = h.take();
    assert_eq!(out.packets().next(), Some(connack(true)));
    assert_eq!(
        publishes(&out.emits),
        vec![("early".to_owned(), QoS::AtMostOnce, None, false)]
    );
}
