//! Packets from a connected client: QoS handshakes, subscriptions, answers in order, hooks, malformed input.

use super::*;
use crate::codec::{DecodeError, SubscribeReturnCode};
use crate::protocol::io::CloseReason;

fn routes(requests: &[Request]) -> Vec<Vec<String>> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { messages, .. } => Some(
                messages
                    .iter()
                    .map(|m| m.topic.as_str().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn qos0_is_routed_and_not_answered() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![publish("a", QoS::AtMostOnce, None, b"1")]);
    let requests = h.requests();
    assert_eq!(routes(&requests), vec![vec!["a".to_owned()]]);
    assert!(matches!(
        requests[..],
        [Request::Route { ticket: None, .. }]
    ));
    assert!(h.packets().is_empty());
}

#[test]
fn puback_waits_for_the_commit_of_the_message() {
    // [MQTT-4.3.2-2]; durability contract, point 1.
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![
        publish("a", QoS::AtLeastOnce, Some(1), b"1"),
        publish("b", QoS::AtLeastOnce, Some(2), b"2"),
    ]);
    let requests = h.requests();
    assert_eq!(
        routes(&requests),
        vec![vec!["a".to_owned(), "b".to_owned()]],
        "one read, one batch"
    );
    assert!(h.packets().is_empty());
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![Packet::PubAck(pid(1).into()), Packet::PubAck(pid(2).into())]
    );
}

#[test]
fn a_failed_commit_closes_without_acknowledging() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![publish("a", QoS::AtLeastOnce, Some(1), b"1")]);
    let ticket = Harness::ticket_of(&h.requests());
    h.feed(Input::Committed {
        ticket,
        result: Err(crate::store::StoreError::WriterGone),
    });
    assert!(h.packets().is_empty());
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn qos2_inbound_is_delivered_once_per_packet_id() {
    // [MQTT-4.3.3-2]
    let mut h = Harness::new();
    h.connect_resumed("p", 0);
    h.read(vec![publish("a", QoS::ExactlyOnce, Some(5), b"1")]);
    let requests = h.requests();
    assert!(
        matches!(&requests[..], [Request::Route { messages, ops, .. }]
        if messages.len() == 1 && matches!(ops[..], [StoreOp::AddIncomingQos2 { .. }]))
    );
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(h.packets(), vec![Packet::PubRec(pid(5).into())]);
    // The same id again before PUBREL: answered, not routed.
    h.read(vec![Packet::Publish(Publish {
        dup: true,
        ..match publish("a", QoS::ExactlyOnce, Some(5), b"1") {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    })]);
    assert!(routes(&h.requests()).is_empty());
    assert_eq!(h.packets(), vec![Packet::PubRec(pid(5).into())]);
    h.read(vec![Packet::PubRel(pid(5).into())]);
    let requests = h.requests();
    assert!(
        matches!(&requests[..], [Request::Route { messages, ops, .. }]
        if messages.is_empty() && matches!(ops[..], [StoreOp::RemoveIncomingQos2 { .. }]))
    );
    assert!(
        h.packets().is_empty(),
        "PUBCOMP waits for the removal to be stored"
    );
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(h.packets(), vec![Packet::PubComp(pid(5).into())]);
    // Released: the id may carry a new message.
    h.read(vec![publish("b", QoS::ExactlyOnce, Some(5), b"2")]);
    assert_eq!(routes(&h.requests()), vec![vec!["b".to_owned()]]);
}

#[test]
fn pubrel_for_an_unknown_id_gets_pubcomp() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![Packet::PubRel(pid(3).into())]);
    assert!(
        h.requests().is_empty(),
        "nothing to store for a clean session"
    );
    assert_eq!(h.packets(), vec![Packet::PubComp(pid(3).into())]);
}

#[test]
fn answers_leave_in_the_order_of_the_packets_they_answer() {
    // [MQTT-4.6.0-2..4]
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![
        publish("a", QoS::AtLeastOnce, Some(1), b"1"),
        Packet::PingReq,
        subscribe(2, &[("x", QoS::AtLeastOnce)]),
        publish("b", QoS::AtLeastOnce, Some(3), b"2"),
    ]);
    let requests = h.requests();
    let tickets: Vec<_> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Route { ticket, .. } => *ticket,
            Request::Subscribe { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .collect();
    assert_eq!(tickets.len(), 3, "batch, subscription, batch: {requests:?}");
    assert!(
        matches!(requests[1], Request::Subscribe { .. }),
        "the router sees them in order"
    );
    h.commit(tickets[2]);
    h.commit(tickets[1]);
    assert!(h.packets().is_empty(), "all wait for the first commit");
    h.commit(tickets[0]);
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(pid(1).into()),
            Packet::PingResp,
            suback(2, vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)]),
            Packet::PubAck(pid(3).into()),
        ]
    );
}

#[test]
fn subscribe_grants_at_most_the_broker_qos_and_retained_messages_follow_suback() {
    // [MQTT-3.9.3-1], [MQTT-3.8.4-3]
    let mut h = Harness::with(Settings {
        max_qos: QoS::AtLeastOnce,
        ..settings()
    });
    h.connect_clean("s", 0);
    h.read(vec![subscribe(
        7,
        &[("a/+", QoS::ExactlyOnce), ("b", QoS::AtMostOnce)],
    )]);
    let requests = h.requests();
    assert!(matches!(&requests[..], [Request::Subscribe { filters, .. }]
        if filters.iter().map(|(_, g)| g.qos()).collect::<Vec<_>>() == vec![QoS::AtLeastOnce, QoS::AtMostOnce]));
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![suback(
            7,
            vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Success(QoS::AtMostOnce)
            ]
        )]
    );
    assert!(matches!(&h.requests()[..], [Request::SendRetained(filters)] if filters.len() == 2));
    h.feed(Input::Retained(vec![Delivery {
        retain: true,
        ..delivery("a/x", QoS::AtLeastOnce, None)
    }]));
    assert!(matches!(&h.out.emits[..], [Emit::Publish(p)] if p.retain && p.packet_id.is_some()));
}

#[test]
fn unsuback_waits_for_the_removal_to_be_stored() {
    // [MQTT-3.10.4-4]
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    h.read(vec![unsubscribe(4, "a")]);
    let requests = h.requests();
    assert!(h.packets().is_empty());
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(h.packets(), vec![Packet::UnsubAck(pid(4).into())]);
}

#[test]
fn a_malformed_packet_closes_after_what_came_before_it_is_routed() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.feed(Input::Read(vec![
        Ok(publish("a", QoS::AtMostOnce, None, b"1")),
        Err(DecodeError::ReservedPacketType(0)),
        Ok(publish("b", QoS::AtMostOnce, None, b"2")),
    ]));
    assert_eq!(routes(&h.requests()), vec![vec!["a".to_owned()]]);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn server_packets_from_a_client_close_the_connection() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    h.read(vec![Packet::PingResp]);
    assert_eq!(h.out.close, Some(CloseReason::Abnormal));
}

#[test]
fn with_hooks_an_unsubscribe_waits_for_the_publishes_before_it() {
    let mut h = Harness::with(hooked());
    h.connect_hooked("p");
    h.read(vec![
        publish("a", QoS::AtLeastOnce, Some(1), b"1"),
        unsubscribe(2, "a"),
        publish("b", QoS::AtMostOnce, None, b"2"),
    ]);
    let requests = h.requests();
    assert!(
        matches!(&requests[..], [Request::ScreenPublishes(m)] if m.len() == 1),
        "{requests:?}"
    );
    assert!(!h.conn.wants_input(), "reading waits for the hooks");
    h.feed(Input::Screened(vec![crate::protocol::io::Screening::Kept(
        message("a", QoS::AtLeastOnce, b"1"),
    )]));
    let requests = h.requests();
    assert!(
        matches!(
            &requests[..],
            [
                Request::Route { .. },
                Request::Unsubscribe { .. },
                Request::ScreenPublishes(_)
            ]
        ),
        "route, then unsubscribe, then the next batch to screen: {requests:?}"
    );
    let route = Harness::ticket_of(&requests[..1]);
    let unsub = Harness::ticket_of(&requests[1..2]);
    h.commit(unsub);
    assert!(
        h.packets().is_empty(),
        "UNSUBACK does not overtake the PUBACK before it"
    );
    h.commit(route);
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(pid(1).into()),
            Packet::UnsubAck(pid(2).into())
        ]
    );
}

#[test]
fn with_hooks_a_denied_publish_is_acknowledged_and_not_routed_and_a_denied_filter_gets_0x80() {
    let mut h = Harness::with(hooked());
    h.connect_hooked("p");
    h.read(vec![publish("secret", QoS::AtLeastOnce, Some(1), b"1")]);
    h.feed(Input::Screened(Vec::new()));
    assert!(h
        .requests()
        .iter()
        .all(|r| !matches!(r, Request::Route { .. })));
    assert_eq!(
        h.packets(),
        vec![Packet::PubAck(pid(1).into())],
        "MQTT 3.1.1 cannot refuse a PUBLISH"
    );
    h.read(vec![subscribe(
        2,
        &[("ok", QoS::AtMostOnce), ("no", QoS::AtMostOnce)],
    )]);
    assert!(matches!(&h.requests()[..], [Request::ScreenSubscribe(f)] if f.len() == 2));
    h.feed(Input::SubscribeScreened(vec![false, true]));
    let requests = h.requests();
    assert!(matches!(&requests[..], [Request::Subscribe { filters, .. }] if filters.len() == 1));
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![suback(
            2,
            vec![
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Failure
            ]
        )]
    );
}

#[test]
fn too_many_unanswered_packets_stop_reading() {
    let mut h = Harness::new();
    h.connect_clean("p", 0);
    let batch: Vec<_> = (1..=1000u16)
        .map(|i| publish("a", QoS::AtLeastOnce, Some(i), b"x"))
        .collect();
    for _ in 0..66 {
        h.read(batch.clone());
    }
    assert!(
        !h.conn.wants_input(),
        "answers waiting for commits bound what is read"
    );
}
