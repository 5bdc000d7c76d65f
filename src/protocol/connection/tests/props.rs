//! Property tests: any sequence of inputs, in any order, however a client, the router or the store behave.
//! The core must never panic, must never answer a packet it was not sent, must never reuse a packet id
//! still in use towards the client [MQTT-2.3.1-2], and must act on nothing once closed.

use super::*;
use crate::codec::{DecodeError, SubscribeReturnCode};
use crate::protocol::io::EndCause;
use crate::store::{EntryState, QueuedMessage, StoreError};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// What the test can do next.
#[derive(Debug, Clone)]
enum Step {
    Packets(Vec<Packet>),
    Malformed,
    InputClosed,
    Registered {
        present: bool,
        had: bool,
        fail: bool,
    },
    Commit {
        pick: usize,
        fail: bool,
    },
    IncomingQos2,
    Deliveries(Vec<(u8, Option<u64>)>),
    Retained(u8),
    Behind(u64),
    Page(Vec<(u64, u8)>),
    Written(usize),
    Pace(bool),
    Timer(u64),
    End,
    Screened,
    SubscribeScreened,
    Authenticated(bool),
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n % 3).unwrap_or(QoS::AtMostOnce)
}

fn packet() -> impl Strategy<Value = Packet> {
    let id = 1u16..6;
    prop_oneof![
        (any::<bool>(), 0u16..3).prop_map(|(clean, ka)| connect("c", clean, ka)),
        (0u8..3, id.clone()).prop_map(|(q, id)| {
            let q = qos(q);
            publish("t/x", q, (q != QoS::AtMostOnce).then_some(id), b"p")
        }),
        id.clone().prop_map(|id| Packet::PubAck(pid(id).into())),
        id.clone().prop_map(|id| Packet::PubRec(pid(id).into())),
        id.clone().prop_map(|id| Packet::PubRel(pid(id).into())),
        id.clone().prop_map(|id| Packet::PubComp(pid(id).into())),
        id.clone()
            .prop_map(|id| subscribe(id, &[("t/#", QoS::ExactlyOnce), ("u", QoS::AtMostOnce)])),
        id.prop_map(|id| unsubscribe(id, "t/#")),
        Just(Packet::PingReq),
        Just(Packet::Disconnect(Default::default())),
        Just(Packet::PingResp),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::vec(packet(), 1..5).prop_map(Step::Packets),
        1 => Just(Step::Malformed),
        1 => Just(Step::InputClosed),
        2 => (any::<bool>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(present, had, fail)| Step::Registered { present, had, fail }),
        4 => (any::<usize>(), prop::bool::weighted(0.05)).prop_map(|(pick, fail)| Step::Commit { pick, fail }),
        1 => Just(Step::IncomingQos2),
        3 => prop::collection::vec((0u8..3, prop::option::of(1u64..20)), 1..6).prop_map(Step::Deliveries),
        1 => (0u8..3).prop_map(Step::Retained),
        1 => (0u64..20).prop_map(Step::Behind),
        2 => prop::collection::vec((1u64..20, 0u8..4), 0..6).prop_map(Step::Page),
        1 => (0usize..2_000_000).prop_map(Step::Written),
        1 => any::<bool>().prop_map(Step::Pace),
        1 => (0u64..100).prop_map(Step::Timer),
        1 => Just(Step::End),
        1 => Just(Step::Screened),
        1 => Just(Step::SubscribeScreened),
        1 => any::<bool>().prop_map(Step::Authenticated),
    ]
}

/// What the client was sent and sent, to check the core's answers against.
#[derive(Default)]
struct Ledger {
    publishes_qos1: usize,
    publishes_qos2: usize,
    pubrels: usize,
    subscribes: usize,
    unsubscribes: usize,
    pings: usize,
    pubacks: usize,
    pubrecs: usize,
    pubcomps: usize,
    subacks: usize,
    unsubacks: usize,
    pongs: usize,
    /// Ids of PUBLISHes (QoS 1/2) sent to the client and not yet acknowledged to the end.
    in_use: BTreeSet<u16>,
    tickets: Vec<Ticket>,
}

impl Ledger {
    fn client_sent(&mut self, packets: &[Packet]) {
        for p in packets {
            match p {
                Packet::Publish(p) if p.qos == QoS::AtLeastOnce => self.publishes_qos1 += 1,
                Packet::Publish(p) if p.qos == QoS::ExactlyOnce => self.publishes_qos2 += 1,
                Packet::PubRel(_) => self.pubrels += 1,
                Packet::Subscribe(_) => self.subscribes += 1,
                Packet::Unsubscribe(_) => self.unsubscribes += 1,
                Packet::PingReq => self.pings += 1,
                Packet::PubAck(ack) | Packet::PubComp(ack) => {
                    self.in_use.remove(&ack.packet_id.get());
                }
                _ => {}
            }
        }
    }

    fn core_wrote(&mut self, out: &Outputs) {
        for emit in &out.emits {
            match emit {
                Emit::Publish(p) => {
                    if let (Some(id), false) = (p.packet_id, p.dup) {
                        // [MQTT-2.3.1-2]: a new PUBLISH never takes an id still in use.
                        assert!(
                            self.in_use.insert(id.get()),
                            "packet id {id} reused while in use"
                        );
                    }
                    if let (Some(id), true) = (p.packet_id, p.dup) {
                        self.in_use.insert(id.get());
                    }
                }
                Emit::Control(Packet::PubAck(_)) => self.pubacks += 1,
                Emit::Control(Packet::PubRec(_)) => self.pubrecs += 1,
                Emit::Control(Packet::PubComp(_)) => self.pubcomps += 1,
                Emit::Control(Packet::SubAck(_)) => self.subacks += 1,
                Emit::Control(Packet::UnsubAck(_)) => self.unsubacks += 1,
                Emit::Control(Packet::PingResp) => self.pongs += 1,
                Emit::Control(_) => {}
            }
        }
        for request in &out.requests {
            if let Request::Store { ticket, .. }
            | Request::Subscribe { ticket, .. }
            | Request::Unsubscribe { ticket, .. }
            | Request::Route {
                ticket: Some(ticket),
                ..
            } = request
            {
                self.tickets.push(*ticket);
            }
        }
        if let Some(gate) = out.gate {
            self.tickets.push(gate);
        }
        // Nothing is answered that the client did not ask for.
        assert!(
            self.pubacks <= self.publishes_qos1,
            "PUBACK without a QoS 1 PUBLISH"
        );
        assert!(
            self.pubrecs <= self.publishes_qos2,
            "PUBREC without a QoS 2 PUBLISH"
        );
        assert!(self.pubcomps <= self.pubrels, "PUBCOMP without a PUBREL");
        assert!(
            self.subacks <= self.subscribes,
            "SUBACK without a SUBSCRIBE"
        );
        assert!(
            self.unsubacks <= self.unsubscribes,
            "UNSUBACK without an UNSUBSCRIBE"
        );
        assert!(self.pongs <= self.pings, "PINGRESP without a PINGREQ");
    }
}

fn input_of(step: Step, ledger: &mut Ledger) -> Input {
    match step {
        Step::Packets(packets) => {
            ledger.client_sent(&packets);
            Input::Read(packets.into_iter().map(Ok).collect())
        }
        Step::Malformed => Input::Read(vec![Err(DecodeError::ReservedPacketType(15))]),
        Step::InputClosed => Input::InputClosed,
        Step::Registered { present, had, fail } => Input::Registered(if fail {
            Err(())
        } else {
            Ok(Registration {
                session_present: present,
                had_persistent: had || present,
                queue_head: 0,
                subscriptions: Vec::new(),
            })
        }),
        Step::Commit { pick, fail } => {
            let ticket = match ledger.tickets.len() {
                0 => Ticket(1),
                n => ledger.tickets.remove(pick % n),
            };
            let result = if fail {
                Err(StoreError::WriterGone)
            } else {
                Ok(())
            };
            Input::Committed { ticket, result }
        }
        Step::IncomingQos2 => Input::IncomingQos2(Ok(vec![pid(1)])),
        Step::Deliveries(list) => Input::Deliveries(
            list.into_iter()
                .map(|(q, seq)| delivery("t/x", qos(q), seq))
                .collect(),
        ),
        Step::Retained(q) => Input::Retained(vec![Delivery {
            retain: true,
            ..delivery("t/r", qos(q), None)
        }]),
        Step::Behind(head) => Input::Behind { head },
        Step::Page(entries) => Input::StorePage(Ok(entries
            .into_iter()
            .map(|(seq, state)| QueuedMessage {
                seq,
                qos: QoS::AtLeastOnce,
                state: match state {
                    0 | 1 => EntryState::Queued,
                    2 => EntryState::PublishSent(pid((seq % 5 + 1) as u16)),
                    _ => EntryState::PubRelSent(pid((seq % 5 + 1) as u16)),
                },
                message: (state != 3).then(|| message("t/x", QoS::AtLeastOnce, b"s")),
                retain: false,
                subscription_ids: Vec::new(),
            })
            .collect())),
        Step::Written(_) => Input::Written,
        Step::Pace(hold) => Input::Pace { hold },
        Step::Timer(_) => Input::Timer,
        Step::End => Input::End(EndCause::TakenOver),
        Step::Screened => Input::Screened(vec![crate::protocol::io::Screening::Kept(message(
            "t/x",
            QoS::AtLeastOnce,
            b"k",
        ))]),
        Step::SubscribeScreened => Input::SubscribeScreened(vec![false, true]),
        Step::Authenticated(ok) => Input::Authenticated(if ok {
            Ok(())
        } else {
            Err(ConnectReturnCode::NotAuthorized.into())
        }),
    }
}

fn run(steps: Vec<Step>, hooks: bool) {
    let mut h = Harness::with(Settings {
        hooks,
        notify: hooks,
        max_inflight: 2,
        max_queued_messages: 3,
        ..settings()
    });
    let mut ledger = Ledger::default();
    let mut closed = false;
    for step in steps {
        if let Step::Written(bytes) = step {
            h.unwritten = bytes;
        }
        if let Step::Timer(secs) = step {
            h.advance(Duration::from_secs(secs));
        }
        let input = input_of(step, &mut ledger);
        let registered = matches!(input, Input::Registered(Ok(_)));
        h.take();
        h.feed(input);
        let out = h.take();
        ledger.core_wrote(&out);
        if closed {
            // Nothing is acted on after the close; a registration that raced with it is undone.
            let detach_only = out.requests.iter().all(|r| matches!(r, Request::Detach));
            assert!(
                out.emits.is_empty() && out.store.is_empty() && detach_only,
                "{out:?}"
            );
            assert!(registered || out.requests.is_empty());
        }
        closed = closed || out.close.is_some();
        assert_eq!(closed, h.conn.is_closed());
    }
}

/// Random steps, most often after a CONNECT that the router accepts (so the connected rules are exercised).
fn steps() -> impl Strategy<Value = Vec<Step>> {
    (
        prop::bool::weighted(0.8),
        any::<bool>(),
        prop::collection::vec(step(), 1..60),
    )
        .prop_map(|(handshake, authenticated, mut steps)| {
            if handshake {
                let mut start = vec![Step::Packets(vec![connect("c", true, 1)])];
                if authenticated {
                    start.push(Step::Authenticated(true));
                }
                start.push(Step::Registered {
                    present: false,
                    had: false,
                    fail: false,
                });
                start.append(&mut steps);
                steps = start;
            }
            steps
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_sequence_of_inputs_keeps_the_rules(steps in steps()) {
        run(steps, false);
    }

    #[test]
    fn any_sequence_of_inputs_keeps_the_rules_with_hooks(steps in steps()) {
        run(steps, true);
    }
}

#[test]
fn a_suback_return_code_is_one_per_filter() {
    // [MQTT-3.9.3-1], also checked here as the properties above do not look inside a SUBACK.
    let mut h = Harness::new();
    h.connect_clean("s", 0);
    h.read(vec![subscribe(
        1,
        &[("a", QoS::AtMostOnce), ("b", QoS::AtLeastOnce)],
    )]);
    let ticket = Harness::ticket_of(&h.requests());
    h.commit(ticket);
    match h.packets().as_slice() {
        [Packet::SubAck(ack)] => assert_eq!(
            ack.return_codes,
            vec![
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Success(QoS::AtLeastOnce)
            ]
        ),
        other => panic!("expected one SUBACK, got {other:?}"),
    }
}
