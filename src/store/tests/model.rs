//! Property test of the store against an in-memory model: random operations in random writes, some sharing one commit,
//! with every read the store offers compared to the model after each group of writes and after each reopen; now and
//! then a write the store must refuse alone, without failing the others of its batch.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Client ids where one is a prefix of another, so per-client key ranges must not leak into each other.
const CLIENTS: [&str; 3] = ["a", "a/b", "ab"];
const TOPICS: [&str; 3] = ["a", "a/b", "x/y/z"];
const FILTERS: [&str; 4] = ["#", "a", "a/+", "x/+/z"];
/// Packet ids come from 1..=this, so the same id meets itself often.
const MAX_PACKET_ID: u16 = 4;

/// One operation as generated: clients, topics and queue entries are small indices, resolved against the model when run.
#[derive(Debug, Clone)]
enum Step {
    Create {
        client: usize,
        v31: bool,
    },
    Touch {
        client: usize,
    },
    Delete {
        client: usize,
    },
    Subscribe {
        client: usize,
        filter: usize,
        qos: QoS,
    },
    Unsubscribe {
        client: usize,
        filter: usize,
    },
    /// A `StoreMessage` and its `Enqueue`s for every target, as the router writes them.
    Publish {
        topic: usize,
        payload: Vec<u8>,
        qos: QoS,
        targets: Vec<(usize, QoS)>,
    },
    /// An `Enqueue` of a body stored by an earlier write.
    Share {
        body: usize,
        client: usize,
        qos: QoS,
    },
    MarkSent {
        client: usize,
        entry: usize,
        packet_id: u16,
    },
    MarkReleased {
        client: usize,
        entry: usize,
        packet_id: u16,
    },
    Remove {
        client: usize,
        entry: usize,
    },
    AddQos2 {
        client: usize,
        packet_id: u16,
    },
    RemoveQos2 {
        client: usize,
        packet_id: u16,
    },
    SetRetained {
        topic: usize,
        payload: Vec<u8>,
    },
    DeleteRetained {
        topic: usize,
    },
}

/// How the writes of a group reach the writer.
#[derive(Debug, Clone, Copy)]
enum Submit {
    /// Each write waits for its reply before the next is sent.
    OneByOne,
    /// All writes are sent, then all replies awaited; the writer may batch them or not.
    BackToBack,
    /// The writer is held while all writes are sent, so they share one batch and one commit.
    Held,
}

#[derive(Debug, Clone)]
struct Group {
    submit: Submit,
    writes: Vec<Vec<Step>>,
    /// Where a write the store must refuse alone goes among the others, if anywhere: it creates a session
    /// and enqueues a body nobody stored, and nothing of it may be stored.
    refused_at: Option<usize>,
}

/// A write whose queue entry names a body nobody stored: the store refuses it, and nothing of it.
fn refused_write() -> Vec<StoreOp> {
    vec![
        StoreOp::CreateSession {
            client_id: cid("refused"),
            level: ProtocolLevel::V311,
            now_ms: 1,
        },
        StoreOp::Enqueue {
            client_id: cid(CLIENTS[0]),
            seq: 1 << 40,
            message: MessageId(1 << 50),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionModel {
    level: ProtocolLevel,
    created_at_ms: u64,
    last_seen_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct EntryModel {
    qos: QoS,
    state: EntryState,
    body: u64,
}

fn holds_body(state: EntryState) -> bool {
    !matches!(state, EntryState::PubRelSent(_))
}

/// What the store should hold, plus the counters the router keeps (next sequence numbers, next body id).
#[derive(Debug)]
struct Model {
    sessions: BTreeMap<&'static str, SessionModel>,
    subs: BTreeMap<(&'static str, &'static str), QoS>,
    queues: BTreeMap<(&'static str, u64), EntryModel>,
    qos2: BTreeSet<(&'static str, u16)>,
    retained: BTreeMap<&'static str, Arc<Message>>,
    /// Live bodies with their reference counts; a body at 0 is not here.
    bodies: BTreeMap<u64, (Arc<Message>, u32)>,
    next_seq: BTreeMap<&'static str, u64>,
    next_id: u64,
    clock: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            sessions: BTreeMap::new(),
            subs: BTreeMap::new(),
            queues: BTreeMap::new(),
            qos2: BTreeSet::new(),
            retained: BTreeMap::new(),
            bodies: BTreeMap::new(),
            next_seq: BTreeMap::new(),
            next_id: 1,
            clock: 1_700_000_000_000,
        }
    }

    fn entries(&self, client: &'static str) -> impl Iterator<Item = (u64, &EntryModel)> + '_ {
        self.queues
            .range((client, 0)..=(client, u64::MAX))
            .map(|(&(_, seq), e)| (seq, e))
    }

    fn next_seq(&self, client: &'static str) -> u64 {
        self.next_seq.get(client).copied().unwrap_or(1)
    }

    fn take_seq(&mut self, client: &'static str) -> u64 {
        let seq = self.next_seq(client);
        self.next_seq.insert(client, seq + 1);
        seq
    }

    /// An entry of the queue counted from the oldest (even `entry`) or the newest (odd, so entries enqueued in the
    /// same batch are hit often), or past the end a sequence number that may name nothing (a late acknowledgement).
    fn pick_seq(&self, client: &'static str, entry: usize) -> u64 {
        let mut seqs: Vec<u64> = self.entries(client).map(|(seq, _)| seq).collect();
        if entry % 2 == 1 {
            seqs.reverse();
        }
        seqs.get(entry / 2)
            .copied()
            .unwrap_or_else(|| 1 + entry as u64 % self.next_seq(client))
    }

    fn message(&self, topic: usize, payload: &[u8], qos: QoS, retain: bool) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(TOPICS[topic]).unwrap(),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain,
            arrived_at_ms: self.clock,
            properties: None,
        })
    }

    fn release(&mut self, body: u64) {
        let (_, refs) = self.bodies.get_mut(&body).unwrap();
        *refs -= 1;
        if *refs == 0 {
            self.bodies.remove(&body);
        }
    }

    fn enqueue(&mut self, client: &'static str, body: u64, qos: QoS, ops: &mut Vec<StoreOp>) {
        let seq = self.take_seq(client);
        let state = EntryState::Queued;
        let old = self
            .queues
            .insert((client, seq), EntryModel { qos, state, body });
        assert!(
            old.is_none(),
            "the router never reuses a live sequence number"
        );
        self.bodies.get_mut(&body).unwrap().1 += 1;
        ops.push(StoreOp::Enqueue {
            retain: false,
            subscription_ids: Vec::new(),
            client_id: cid(client),
            seq,
            message: MessageId(body),
            qos,
        });
    }

    fn delete_session(&mut self, client: &'static str) {
        self.sessions.remove(client);
        self.subs.retain(|&(c, _), _| c != client);
        self.qos2.retain(|&(c, _)| c != client);
        let seqs: Vec<u64> = self.entries(client).map(|(seq, _)| seq).collect();
        for seq in seqs {
            let entry = self.queues.remove(&(client, seq)).unwrap();
            if holds_body(entry.state) {
                self.release(entry.body);
            }
        }
        // A new session of the same client starts its queue afresh.
        self.next_seq.remove(client);
    }

    /// Applies `step` to the model and appends the operations that make the store do the same.
    fn run(&mut self, step: &Step, ops: &mut Vec<StoreOp>) {
        self.clock += 1;
        let now_ms = self.clock;
        match step {
            Step::Create { client, v31 } => {
                let c = CLIENTS[*client];
                let level = if *v31 {
                    ProtocolLevel::V31
                } else {
                    ProtocolLevel::V311
                };
                let session = self.sessions.entry(c).or_insert(SessionModel {
                    level,
                    created_at_ms: now_ms,
                    last_seen_ms: now_ms,
                });
                session.level = level;
                session.last_seen_ms = now_ms;
                ops.push(StoreOp::CreateSession {
                    client_id: cid(c),
                    level,
                    now_ms,
                });
            }
            Step::Touch { client } => {
                let c = CLIENTS[*client];
                if let Some(session) = self.sessions.get_mut(c) {
                    session.last_seen_ms = now_ms;
                }
                ops.push(StoreOp::TouchSession {
                    client_id: cid(c),
                    now_ms,
                });
            }
            Step::Delete { client } => {
                let c = CLIENTS[*client];
                self.delete_session(c);
                ops.push(StoreOp::DeleteSession { client_id: cid(c) });
            }
            Step::Subscribe {
                client,
                filter,
                qos,
            } => {
                let (c, f) = (CLIENTS[*client], FILTERS[*filter]);
                self.subs.insert((c, f), *qos);
                ops.push(StoreOp::Subscribe {
                    client_id: cid(c),
                    filter: TopicFilter::new(f).unwrap(),
                    grant: (*qos).into(),
                });
            }
            Step::Unsubscribe { client, filter } => {
                let (c, f) = (CLIENTS[*client], FILTERS[*filter]);
                self.subs.remove(&(c, f));
                ops.push(StoreOp::Unsubscribe {
                    client_id: cid(c),
                    filter: TopicFilter::new(f).unwrap(),
                });
            }
            _ => self.run_message_step(step, ops),
        }
    }

    fn run_message_step(&mut self, step: &Step, ops: &mut Vec<StoreOp>) {
        match step {
            Step::Publish {
                topic,
                payload,
                qos,
                targets,
            } => {
                let message = self.message(*topic, payload, *qos, false);
                let id = self.next_id;
                self.next_id += 1;
                ops.push(store_message(id, &message));
                // A body no Enqueue references is not kept, so the model holds it only once referenced.
                self.bodies.insert(id, (message, 0));
                for &(client, qos) in targets {
                    self.enqueue(CLIENTS[client], id, qos, ops);
                }
                if targets.is_empty() {
                    self.bodies.remove(&id);
                }
            }
            Step::Share { body, client, qos } => {
                let ids: Vec<u64> = self.bodies.keys().copied().collect();
                if !ids.is_empty() {
                    self.enqueue(CLIENTS[*client], ids[body % ids.len()], *qos, ops);
                }
            }
            _ => self.run_handshake_step(step, ops),
        }
    }

    fn run_handshake_step(&mut self, step: &Step, ops: &mut Vec<StoreOp>) {
        match step {
            Step::MarkSent {
                client,
                entry,
                packet_id,
            } => {
                let c = CLIENTS[*client];
                let seq = self.pick_seq(c, *entry);
                let packet_id = pid(*packet_id);
                // An entry whose body is released cannot go back to PUBLISH.
                if let Some(e) = self.queues.get_mut(&(c, seq)) {
                    if holds_body(e.state) {
                        e.state = EntryState::PublishSent(packet_id);
                    }
                }
                ops.push(StoreOp::MarkSent {
                    client_id: cid(c),
                    seq,
                    packet_id,
                });
            }
            Step::MarkReleased {
                client,
                entry,
                packet_id,
            } => {
                let c = CLIENTS[*client];
                let seq = self.pick_seq(c, *entry);
                let packet_id = pid(*packet_id);
                if let Some(e) = self.queues.get_mut(&(c, seq)) {
                    let (held, body) = (holds_body(e.state), e.body);
                    e.state = EntryState::PubRelSent(packet_id);
                    if held {
                        self.release(body);
                    }
                }
                ops.push(StoreOp::MarkReleased {
                    client_id: cid(c),
                    seq,
                    packet_id,
                });
            }
            Step::Remove { client, entry } => {
                let c = CLIENTS[*client];
                let seq = self.pick_seq(c, *entry);
                if let Some(e) = self.queues.remove(&(c, seq)) {
                    if holds_body(e.state) {
                        self.release(e.body);
                    }
                }
                ops.push(StoreOp::Remove {
                    client_id: cid(c),
                    seq,
                });
            }
            _ => self.run_other_step(step, ops),
        }
    }

    fn run_other_step(&mut self, step: &Step, ops: &mut Vec<StoreOp>) {
        match step {
            Step::AddQos2 { client, packet_id } => {
                let c = CLIENTS[*client];
                self.qos2.insert((c, *packet_id));
                ops.push(StoreOp::AddIncomingQos2 {
                    client_id: cid(c),
                    packet_id: pid(*packet_id),
                });
            }
            Step::RemoveQos2 { client, packet_id } => {
                let c = CLIENTS[*client];
                self.qos2.remove(&(c, *packet_id));
                ops.push(StoreOp::RemoveIncomingQos2 {
                    client_id: cid(c),
                    packet_id: pid(*packet_id),
                });
            }
            Step::SetRetained { topic, payload } => {
                let message = self.message(*topic, payload, QoS::AtLeastOnce, true);
                self.retained.insert(TOPICS[*topic], Arc::clone(&message));
                ops.push(StoreOp::SetRetained { message });
            }
            Step::DeleteRetained { topic } => {
                self.retained.remove(TOPICS[*topic]);
                ops.push(StoreOp::DeleteRetained {
                    topic: TopicName::new(TOPICS[*topic]).unwrap(),
                });
            }
            _ => unreachable!("every other step is run above"),
        }
    }

    /// What the router does after a restart: sequence numbers and body ids continue from what was recovered.
    fn restart(&mut self, recovered: &Recovered) {
        self.next_seq = CLIENTS
            .iter()
            .map(|&c| (c, self.entries(c).last().map_or(1, |(seq, _)| seq + 1)))
            .collect();
        self.next_id = recovered.next_message_id;
    }

    fn queue(&self, client: &'static str) -> Vec<QueuedMessage> {
        self.entries(client)
            .map(|(seq, e)| QueuedMessage {
                seq,
                qos: e.qos,
                state: e.state,
                message: holds_body(e.state).then(|| Arc::clone(&self.bodies[&e.body].0)),
                retain: false,
                subscription_ids: Vec::new(),
            })
            .collect()
    }

    fn body_bytes(&self, body: u64) -> u64 {
        let message = &self.bodies[&body].0;
        (message.topic.as_str().len() + message.payload.len()) as u64
    }

    fn stats(&self, client: &'static str) -> SessionQueueStats {
        let held: Vec<u64> = self
            .entries(client)
            .filter(|(_, e)| holds_body(e.state))
            .map(|(_, e)| self.body_bytes(e.body))
            .collect();
        SessionQueueStats {
            messages: held.len() as u64,
            bytes: held.iter().sum(),
            dropped: 0,
        }
    }

    fn totals(&self) -> QueueTotals {
        CLIENTS
            .iter()
            .map(|c| self.stats(c))
            .fold(QueueTotals::default(), |acc, s| QueueTotals {
                sessions: acc.sessions + u64::from(s.messages > 0),
                messages: acc.messages + s.messages,
                bytes: acc.bytes + s.bytes,
            })
    }

    fn subscriptions(&self, client: &'static str) -> Vec<(TopicFilter, crate::message::Grant)> {
        self.subs
            .range((client, "")..=(client, "\u{10FFFF}"))
            .map(|(&(_, f), &qos)| (TopicFilter::new(f).unwrap(), qos.into()))
            .collect()
    }

    fn incoming_qos2(&self, client: &'static str) -> Vec<PacketId> {
        self.qos2
            .range((client, 0)..=(client, u16::MAX))
            .map(|&(_, v)| pid(v))
            .collect()
    }

    fn summaries(&self) -> Vec<SessionSummary> {
        self.sessions
            .iter()
            .map(|(&c, s)| {
                let queued: Vec<u64> = self
                    .entries(c)
                    .filter(|(_, e)| e.state == EntryState::Queued)
                    .map(|(_, e)| self.body_bytes(e.body))
                    .collect();
                SessionSummary {
                    client_id: cid(c),
                    level: s.level,
                    created_at_ms: s.created_at_ms,
                    last_seen_ms: s.last_seen_ms,
                    expiry_interval_ms: None,
                    subscriptions: self.subscriptions(c).len() as u64,
                    queued_messages: queued.len() as u64,
                    queued_bytes: queued.iter().sum(),
                    inflight: (self.entries(c).count() - queued.len()) as u64,
                    incoming_qos2: self.incoming_qos2(c).len() as u64,
                }
            })
            .collect()
    }

    fn recovered_sessions(&self) -> Vec<RecoveredSession> {
        self.sessions
            .iter()
            .map(|(&c, s)| RecoveredSession {
                client_id: cid(c),
                level: s.level,
                subscriptions: self.subscriptions(c),
                next_seq: self.entries(c).last().map_or(1, |(seq, _)| seq + 1),
                last_seen_ms: s.last_seen_ms,
                session_expiry: None,
                will: None,
            })
            .collect()
    }
}

fn recv<T: std::fmt::Debug>(rx: ReplyReceiver<T>) -> T {
    rx.blocking_recv().unwrap().unwrap()
}

/// Runs the writes of `group` through the store and the model alike; every write must succeed but the one
/// that must be refused alone, whose batch goes on.
fn run_group(h: &StoreHandle, model: &mut Model, group: &Group) {
    let mut writes: Vec<Vec<StoreOp>> = group
        .writes
        .iter()
        .map(|steps| {
            let mut ops = Vec::new();
            for step in steps {
                model.run(step, &mut ops);
            }
            ops
        })
        .collect();
    let refused = group.refused_at.map(|at| at.min(writes.len()));
    if let Some(at) = refused {
        writes.insert(at, refused_write());
    }
    let answer = |i: usize, rx: ReplyReceiver<()>| {
        let reply = rx.blocking_recv().unwrap();
        if Some(i) == refused {
            assert!(
                matches!(reply, Err(StoreError::MissingMessage(_))),
                "{reply:?}"
            );
        } else {
            reply.unwrap();
        }
    };
    match group.submit {
        Submit::OneByOne => {
            for (i, ops) in writes.into_iter().enumerate() {
                answer(i, h.write(ops));
            }
        }
        Submit::BackToBack => {
            let pending: Vec<_> = writes.into_iter().map(|ops| h.write(ops)).collect();
            for (i, rx) in pending.into_iter().enumerate() {
                answer(i, rx);
            }
        }
        Submit::Held => {
            let release = pause(h);
            let pending: Vec<_> = writes.into_iter().map(|ops| h.write(ops)).collect();
            drop(release);
            for (i, rx) in pending.into_iter().enumerate() {
                answer(i, rx);
            }
        }
    }
}

/// Compares every read of the running store with the model.
fn check(h: &StoreHandle, model: &Model) -> Result<(), TestCaseError> {
    for c in CLIENTS {
        let expected = model.queue(c);
        prop_assert_eq!(&recv(h.read_queue(cid(c), 0, usize::MAX)), &expected);
        if let Some(first) = expected.first() {
            let page = recv(h.read_queue(cid(c), first.seq, 1));
            prop_assert_eq!(page.as_slice(), &expected[1..expected.len().min(2)]);
        }
        prop_assert_eq!(recv(h.read_incoming_qos2(cid(c))), model.incoming_qos2(c));
        prop_assert_eq!(recv(h.read_session_stats(cid(c))), model.stats(c));
    }
    let (sessions, subscriptions, retained, bodies, totals) = recv(h.inspect(|s| {
        let subscriptions = CLIENTS
            .iter()
            .map(|c| s.subscriptions(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            s.sessions()?,
            subscriptions,
            s.retained()?,
            s.message_count()?,
            s.queue_totals()?,
        ))
    }));
    prop_assert_eq!(sessions, model.summaries());
    let expected: Vec<_> = CLIENTS.iter().map(|c| model.subscriptions(c)).collect();
    prop_assert_eq!(subscriptions, expected);
    prop_assert_eq!(
        retained,
        model.retained.values().cloned().collect::<Vec<_>>()
    );
    prop_assert_eq!(
        bodies,
        model.bodies.len() as u64,
        "bodies are kept exactly while referenced"
    );
    prop_assert_eq!(totals, model.totals());
    Ok(())
}

fn check_recovered(recovered: &Recovered, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(&recovered.sessions, &model.recovered_sessions());
    let retained: Vec<_> = model.retained.values().cloned().collect();
    prop_assert_eq!(&recovered.retained, &retained);
    let next_id = model.bodies.keys().last().map_or(1, |id| id + 1);
    prop_assert_eq!(recovered.next_message_id, next_id);
    Ok(())
}

/// Closes the store, opens it again and checks what it recovered and serves; `Off` keeps nothing, so it stays open.
fn reopen(
    cfg: &StoreConfig,
    h: StoreHandle,
    w: StoreWorker,
    model: &mut Model,
) -> Result<(StoreHandle, StoreWorker), TestCaseError> {
    if cfg.durability == Durability::Off {
        return Ok((h, w));
    }
    w.shutdown().unwrap();
    let (h, recovered, w) = open(cfg);
    check_recovered(&recovered, model)?;
    model.restart(&recovered);
    check(&h, model)?;
    Ok((h, w))
}

fn run_case(durability: Durability, halves: [&[Group]; 2]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        durability,
        ..config(dir.path())
    };
    let mut model = Model::new();
    let (mut h, recovered, mut w) = open(&cfg);
    prop_assert!(recovered.sessions.is_empty());
    for groups in halves {
        for group in groups {
            run_group(&h, &mut model, group);
            check(&h, &model)?;
        }
        (h, w) = reopen(&cfg, h, w, &mut model)?;
    }
    w.shutdown().unwrap();
    Ok(())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let client = 0..CLIENTS.len();
    let topic = 0..TOPICS.len();
    let filter = 0..FILTERS.len();
    let entry = 0..8usize;
    let packet_id = 1..=MAX_PACKET_ID;
    let payload = vec(any::<u8>(), 0..4);
    prop_oneof![
        2 => (client.clone(), any::<bool>()).prop_map(|(client, v31)| Step::Create { client, v31 }),
        1 => client.clone().prop_map(|client| Step::Touch { client }),
        1 => client.clone().prop_map(|client| Step::Delete { client }),
        2 => (client.clone(), filter.clone(), qos())
            .prop_map(|(client, filter, qos)| Step::Subscribe { client, filter, qos }),
        1 => (client.clone(), filter).prop_map(|(client, filter)| Step::Unsubscribe { client, filter }),
        5 => (topic.clone(), payload.clone(), qos(), vec((client.clone(), qos()), 0..4))
            .prop_map(|(topic, payload, qos, targets)| Step::Publish { topic, payload, qos, targets }),
        1 => (0..8usize, client.clone(), qos()).prop_map(|(body, client, qos)| Step::Share { body, client, qos }),
        3 => (client.clone(), entry.clone(), packet_id.clone())
            .prop_map(|(client, entry, packet_id)| Step::MarkSent { client, entry, packet_id }),
        2 => (client.clone(), entry.clone(), packet_id.clone())
            .prop_map(|(client, entry, packet_id)| Step::MarkReleased { client, entry, packet_id }),
        5 => (client.clone(), entry).prop_map(|(client, entry)| Step::Remove { client, entry }),
        1 => (client.clone(), packet_id.clone())
            .prop_map(|(client, packet_id)| Step::AddQos2 { client, packet_id }),
        1 => (client, packet_id).prop_map(|(client, packet_id)| Step::RemoveQos2 { client, packet_id }),
        1 => (topic.clone(), payload).prop_map(|(topic, payload)| Step::SetRetained { topic, payload }),
        1 => topic.prop_map(|topic| Step::DeleteRetained { topic }),
    ]
}

fn group() -> impl Strategy<Value = Group> {
    let submit = prop_oneof![
        1 => Just(Submit::OneByOne),
        1 => Just(Submit::BackToBack),
        2 => Just(Submit::Held),
    ];
    let refused_at = prop_oneof![3 => Just(None), 1 => (0..5usize).prop_map(Some)];
    (submit, vec(vec(step(), 0..5), 1..5), refused_at).prop_map(|(submit, writes, refused_at)| {
        Group {
            submit,
            writes,
            refused_at,
        }
    })
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        2 => Just(Durability::Sync),
        1 => Just(Durability::Periodic { interval_ms: 3_600_000 }),
        1 => Just(Durability::Off),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the operations and however the writes are batched, the store reads back what the model holds,
    /// drops bodies with their last reference, and recovers the same state after a reopen.
    #[test]
    fn the_store_matches_its_model(
        durability in durability(),
        before in vec(group(), 1..8),
        after in vec(group(), 0..6),
    ) {
        run_case(durability, [&before, &after])?;
    }
}
