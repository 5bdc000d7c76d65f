//! Rights over topics (the ACL file's): a publish the client may not make is dropped, a filter it may not
//! read is refused in SUBACK, and a message it may not read is not sent (a stored one leaves the queue).

use super::*;
use crate::codec::SubscribeReturnCode;

/// Rights that allow topics and filters starting with "ok", counting the questions.
#[derive(Debug, Default)]
struct OkOnly {
    asked: usize,
}

impl crate::protocol::TopicRights for OkOnly {
    fn may_publish(&mut self, topic: &str) -> bool {
        self.asked += 1;
        topic.starts_with("ok")
    }

    fn may_read(&mut self, topic: &str) -> bool {
        self.may_publish(topic)
    }

    fn may_subscribe(&mut self, filter: &str) -> bool {
        self.may_publish(filter)
    }
}

fn limited(client_id: &str) -> Harness {
    let mut h = Harness::new();
    h.conn.grant_rights(Some(Box::<OkOnly>::default()));
    h.connect_clean(client_id, 0);
    h
}

#[test]
fn a_denied_publish_is_acknowledged_before_5_0_but_not_routed() {
    let mut h = limited("p");
    h.read(vec![
        publish("no", QoS::AtLeastOnce, Some(1), b"1"),
        publish("ok/a", QoS::AtLeastOnce, Some(2), b"2"),
        publish("no", QoS::ExactlyOnce, Some(3), b"3"),
    ]);
    let requests = h.requests();
    let routed: Vec<String> = requests
        .iter()
        .flat_map(|r| match r {
            Request::Route { messages, .. } => {
                messages.iter().map(|m| m.topic.to_string()).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(routed, vec!["ok/a".to_owned()]);
    // A 3.1.1 client cannot be told no: PUBACK and PUBREC as usual, in order.
    h.commit(Harness::ticket_of(&requests));
    assert_eq!(
        h.packets(),
        vec![
            Packet::PubAck(pid(1).into()),
            Packet::PubAck(pid(2).into()),
            Packet::PubRec(pid(3).into()),
        ]
    );
    // The QoS 2 exchange completes [MQTT-4.3.3-2].
    h.read(vec![Packet::PubRel(pid(3).into())]);
    assert_eq!(h.packets(), vec![Packet::PubComp(pid(3).into())]);
}

#[test]
fn a_filter_the_client_may_not_read_gets_0x80() {
    let mut h = limited("s");
    h.read(vec![subscribe(
        1,
        &[("no/#", QoS::AtLeastOnce), ("ok/#", QoS::AtLeastOnce)],
    )]);
    let ticket = Harness::ticket_of(&h.requests());
    h.commit(ticket);
    assert_eq!(
        h.packets(),
        vec![suback(
            1,
            vec![
                SubscribeReturnCode::Failure,
                SubscribeReturnCode::Success(QoS::AtLeastOnce)
            ]
        )]
    );
}

#[test]
fn a_message_the_client_may_not_read_is_not_sent_and_leaves_the_store() {
    let mut h = Harness::new();
    h.conn.grant_rights(Some(Box::<OkOnly>::default()));
    h.connect_live("r");
    h.feed(Input::Deliveries(vec![
        delivery("no", QoS::AtLeastOnce, Some(1)),
        delivery("ok", QoS::AtLeastOnce, Some(2)),
        delivery("no", QoS::AtMostOnce, None),
    ]));
    let out = h.take();
    assert_eq!(
        publishes(&out.emits),
        vec![("ok".to_owned(), QoS::AtLeastOnce, Some(1), false)]
    );
    assert!(
        out.store
            .iter()
            .any(|op| matches!(op, StoreOp::Remove { seq: 1, .. })),
        "{:?}",
        out.store
    );
}

/// Rights that record which filters the core says the session holds, and answer reads of matched messages
/// from that record alone.
#[derive(Debug, Default)]
struct Recording {
    held: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl crate::protocol::TopicRights for Recording {
    fn may_publish(&mut self, _: &str) -> bool {
        true
    }

    fn may_read(&mut self, _: &str) -> bool {
        false
    }

    fn may_read_matched(&mut self, _: &str) -> bool {
        true
    }

    fn may_subscribe(&mut self, _: &str) -> bool {
        true
    }

    fn subscribed(&mut self, filters: &[&str]) {
        let mut held = self.held.lock().unwrap();
        held.extend(filters.iter().map(|f| (*f).to_owned()));
    }

    fn unsubscribed(&mut self, filter: &str) {
        self.held.lock().unwrap().retain(|f| f != filter);
    }
}

#[test]
fn the_rights_hear_of_every_filter_the_session_holds_and_screen_stored_pages_fully() {
    let held = std::sync::Arc::default();
    let mut h = Harness::new();
    h.conn.grant_rights(Some(Box::new(Recording {
        held: std::sync::Arc::clone(&held),
    })));
    h.read(vec![connect("r", false, 0)]);
    h.feed(Input::Registered(Ok(Registration {
        session_present: true,
        had_persistent: true,
        queue_head: 1,
        subscriptions: vec![TopicFilter::new("old/#".to_owned()).unwrap()],
    })));
    h.feed(Input::IncomingQos2(Ok(Vec::new())));
    h.take();
    assert_eq!(
        *held.lock().unwrap(),
        ["old/#"],
        "a resumed session's filters"
    );
    h.read(vec![subscribe(1, &[("new/+", QoS::AtMostOnce)])]);
    let ticket = Harness::ticket_of(&h.requests());
    h.commit(ticket);
    assert_eq!(*held.lock().unwrap(), ["old/#", "new/+"]);
    h.read(vec![unsubscribe(2, "old/#")]);
    assert_eq!(*held.lock().unwrap(), ["new/+"]);
    h.take();
    // A live delivery was matched by the router against the filters held now: may_read_matched. A stored
    // queue entry may come from a filter since dropped: may_read, which these rights refuse.
    h.feed(Input::Deliveries(vec![delivery(
        "new/a",
        QoS::AtMostOnce,
        None,
    )]));
    assert_eq!(publishes(&h.take().emits).len(), 1);
    let entry = crate::store::QueuedMessage {
        seq: 1,
        message: Some(message("old/a", QoS::AtLeastOnce, b"m")),
        qos: QoS::AtLeastOnce,
        state: crate::store::EntryState::Queued,
        retain: false,
        subscription_ids: Vec::new(),
    };
    h.feed(Input::StorePage(Ok(vec![entry])));
    let out = h.take();
    assert!(
        publishes(&out.emits).is_empty(),
        "the stored entry is screened fully"
    );
    assert!(out
        .store
        .iter()
        .any(|op| matches!(op, StoreOp::Remove { seq: 1, .. })));
}
