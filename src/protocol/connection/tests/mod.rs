//! Unit tests of the connection core, driven with plain values and virtual time: no socket, no actor system.
//! The harness plays the owner (actor, router, store) and lets each test look at what the core asked for.

mod connect;
mod deliver;
mod flow;
mod inbound;
mod limits;
mod props;
mod rights;
mod v5;

use super::*;
use crate::codec::{ConnAck, Connect, ConnectReturnCode, Publish, SubAck, Subscribe, Unsubscribe};
use crate::protocol::io::{Emit, Request};
use crate::topic::TopicName;
use bytes::Bytes;

/// A connection core with a clock the test moves, and the outputs of every input fed so far.
pub(super) struct Harness {
    pub conn: Connection,
    pub now: Instant,
    pub wall_ms: u64,
    pub unwritten: usize,
    /// Outputs since the test last looked.
    pub out: Outputs,
}

pub(super) fn settings() -> Settings {
    Settings {
        max_qos: QoS::ExactlyOnce,
        max_inflight: 4,
        max_queued_messages: 100,
        overflow: crate::store::OverflowPolicy::DropNew,
        connect_timeout: Duration::from_secs(10),
        hooks: false,
        notify: false,
        authenticate: false,
        credit: 16,
        v5: crate::protocol::v5::ServerLimits {
            receive_maximum: 3,
            topic_alias_maximum: 4,
            ..Default::default()
        },
        limits: crate::protocol::Limits::default(),
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(settings())
    }

    pub fn with(settings: Settings) -> Harness {
        let now = Instant::now();
        let mut out = Outputs::default();
        let conn = Connection::new(
            Arc::new(settings),
            Peer::InProcess,
            Now {
                instant: now,
                wall_ms: 1_000,
                unwritten_bytes: 0,
            },
            &mut out,
        );
        Harness {
            conn,
            now,
            wall_ms: 1_000,
            unwritten: 0,
            out,
        }
    }

    /// Feeds one input; its outputs join `out`.
    pub fn feed(&mut self, input: Input) {
        let mut step = Outputs::default();
        let now = Now {
            instant: self.now,
            wall_ms: self.wall_ms,
            unwritten_bytes: self.unwritten,
        };
        self.conn.handle(input, now, &mut step);
        self.out.store.append(&mut step.store);
        self.out.gate = self.out.gate.or(step.gate);
        self.out.requests.append(&mut step.requests);
        self.out.emits.append(&mut step.emits);
        self.out.timer = step.timer.or(self.out.timer);
        self.out.close = step.close.or(self.out.close);
        for (limit, n) in step.limits.iter() {
            self.out.limits.add(limit, n);
        }
    }

    /// Feeds one read of these packets.
    pub fn read(&mut self, packets: Vec<Packet>) {
        self.feed(Input::Read(packets.into_iter().map(Ok).collect()));
    }

    /// Moves the clock.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.wall_ms += by.as_millis() as u64;
    }

    /// Takes what was output so far.
    pub fn take(&mut self) -> Outputs {
        std::mem::take(&mut self.out)
    }

    /// Takes the packets written so far.
    pub fn packets(&mut self) -> Vec<Packet> {
        let packets = self.out.packets().collect();
        self.out.emits.clear();
        packets
    }

    /// Takes the requests made so far.
    pub fn requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.out.requests)
    }

    /// Connects a client with a clean session (no stored session before) and takes every output.
    pub fn connect_clean(&mut self, client_id: &str, keep_alive_secs: u16) {
        self.read(vec![connect(client_id, true, keep_alive_secs)]);
        self.feed(registered(false, false, 0));
        let packets = self.packets();
        assert_eq!(packets, vec![connack(false)], "CONNACK at once");
        self.take();
    }

    /// Connects a persistent client whose stored session is resumed, with `head` as the highest queue
    /// position; answers the store reads; takes every output.
    pub fn connect_resumed(&mut self, client_id: &str, head: u64) {
        self.read(vec![connect(client_id, false, 0)]);
        self.feed(registered(true, true, head));
        self.feed(Input::IncomingQos2(Ok(Vec::new())));
        assert_eq!(self.packets(), vec![connack(true)]);
        self.take();
    }

    /// Connects a persistent client whose stored queue is empty, so that stored messages come live; takes
    /// every output.
    pub fn connect_live(&mut self, client_id: &str) {
        self.connect_resumed(client_id, 0);
        self.feed(Input::StorePage(Ok(Vec::new())));
        self.take();
    }

    /// Connects a clean client past the authenticate hook (the harness's settings must have hooks on); takes
    /// every output.
    pub fn connect_hooked(&mut self, client_id: &str) {
        self.read(vec![connect(client_id, true, 0)]);
        self.feed(Input::Authenticated(Ok(())));
        self.feed(registered(false, false, 0));
        self.take();
    }

    /// The ticket of the `Store`, `Route`, `Subscribe` or `Unsubscribe` request among `requests`.
    pub fn ticket_of(requests: &[Request]) -> Ticket {
        requests
            .iter()
            .find_map(|r| match r {
                Request::Store { ticket, .. }
                | Request::Subscribe { ticket, .. }
                | Request::Unsubscribe { ticket, .. } => Some(*ticket),
                Request::Route {
                    ticket: Some(ticket),
                    ..
                } => Some(*ticket),
                _ => None,
            })
            .expect("a request with a ticket")
    }

    pub fn commit(&mut self, ticket: Ticket) {
        self.feed(Input::Committed {
            ticket,
            result: Ok(()),
        });
    }
}

/// The router's answer to a registration: session present, a persistent session existed, highest queue
/// position.
pub(super) fn registered(present: bool, had: bool, head: u64) -> Input {
    Input::Registered(Ok(Registration {
        session_present: present,
        had_persistent: had,
        queue_head: head,
        subscriptions: Vec::new(),
    }))
}

pub(super) fn connect(client_id: &str, clean_session: bool, keep_alive_secs: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        level: ProtocolLevel::V311,
        clean_session,
        keep_alive_secs,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: None,
    }))
}

/// Settings with hooks registered.
pub(super) fn hooked() -> Settings {
    Settings {
        hooks: true,
        notify: true,
        authenticate: true,
        ..settings()
    }
}

/// A CONNACK refusing with `code`.
pub(super) fn refused(code: ConnectReturnCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        code: code.into(),
        properties: None,
    })
}

pub(super) fn connack(session_present: bool) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code: ConnectReturnCode::Accepted.into(),
        properties: None,
    })
}

pub(super) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub(super) fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(topic.to_owned()).expect("valid topic"),
        packet_id: id.map(pid),
        payload: Bytes::from_static(payload),
        properties: None,
    })
}

pub(super) fn subscribe(id: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        filters: filters
            .iter()
            .map(|(f, q)| {
                (
                    TopicFilter::new((*f).to_owned()).expect("valid filter"),
                    (*q).into(),
                )
            })
            .collect(),
        properties: None,
    })
}

pub(super) fn unsubscribe(id: u16, filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        filters: vec![TopicFilter::new(filter.to_owned()).expect("valid filter")],
        properties: None,
    })
}

pub(super) fn suback(id: u16, codes: Vec<crate::codec::SubscribeReturnCode>) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(id),
        return_codes: codes,
        properties: None,
    })
}

pub(super) fn message(topic: &str, qos: QoS, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic.to_owned()).expect("valid topic"),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        arrived_at_ms: 0,
        properties: None,
    })
}

pub(super) fn delivery(topic: &str, qos: QoS, seq: Option<u64>) -> Delivery {
    Delivery {
        message: message(topic, qos, b"m"),
        qos,
        seq,
        retain: false,
        extras: None,
        expiring: false,
    }
}

/// The PUBLISH packets among `emits`, as (topic, qos, packet id, dup).
pub(super) fn publishes(emits: &[Emit]) -> Vec<(String, QoS, Option<u16>, bool)> {
    emits
        .iter()
        .filter_map(|e| match e {
            Emit::Publish(p) => Some((
                p.message.topic.as_str().to_owned(),
                p.qos,
                p.packet_id.map(PacketId::get),
                p.dup,
            )),
            Emit::Control(_) => None,
        })
        .collect()
}
