//! The harness shared by the behaviour tests: a broker on 127.0.0.1:0 with its own data directory, a rumqttc
//! client whose events arrive on a channel, and a raw-socket client that speaks the crate's own codec.
//! Every wait here is bounded by a timeout; nothing sleeps in the hope that the broker has caught up.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use harbormq::codec::{
    decode_packet, encode_packet, ClientId, ConnAck, Connect, LastWill, Packet, PacketId,
    ProtocolLevel, Publish, QoS, Role, SubAck, Subscribe,
};
use harbormq::topic::{TopicFilter, TopicName};
use harbormq::{BackgroundBroker, Config};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

/// Bound on anything a test expects to happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// Window in which something a test expects not to happen must stay absent.
pub const QUIET: Duration = Duration::from_millis(300);

/// A broker running in the test process, listening on an ephemeral port, with a data directory of its own.
pub struct TestBroker {
    // Declared before `dir` so that the broker stops before its directory is removed.
    broker: Option<BackgroundBroker>,
    config: Config,
    addr: SocketAddr,
    dir: TempDir,
}

impl TestBroker {
    /// A broker with the default configuration (durability "sync").
    pub fn start() -> TestBroker {
        TestBroker::start_with(|_| {})
    }

    /// A broker whose default test configuration is adjusted by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        let _ = env_logger_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            bind: "127.0.0.1:0".to_owned(),
            data_dir: dir.path().to_owned(),
            ws_bind: String::new(),
            admin_bind: String::new(),
            sys_interval_secs: 0,
            ..Config::default()
        };
        tweak(&mut config);
        let broker = BackgroundBroker::start(config.clone()).unwrap();
        let addr = broker.handle().tcp_addr().unwrap();
        TestBroker {
            broker: Some(broker),
            config,
            addr,
            dir,
        }
    }

    /// The running broker's handle.
    pub fn handle(&self) -> &harbormq::BrokerHandle {
        self.broker.as_ref().unwrap().handle()
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the broker cleanly and starts a new one on the same data directory (on a new port).
    pub fn restart(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.stop();
        }
        let broker = BackgroundBroker::start(self.config.clone()).unwrap();
        self.addr = broker.handle().tcp_addr().unwrap();
        self.broker = Some(broker);
    }

    /// rumqttc options for this broker: clean session, 30 s keepalive, room for large packets.
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        options
    }

    /// Connects a rumqttc client with clean session on and default options.
    pub async fn client(&self, client_id: &str) -> Client {
        Client::connect(self.options(client_id)).await.0
    }

    /// Connects a rumqttc client with clean session off, returning the session present flag.
    pub async fn persistent_client(&self, client_id: &str, manual_acks: bool) -> (Client, bool) {
        let mut options = self.options(client_id);
        options.set_clean_session(false);
        options.set_manual_acks(manual_acks);
        let (client, ack) = Client::connect(options).await;
        (client, ack.session_present)
    }

    /// Opens a raw TCP connection to the broker.
    pub async fn raw(&self) -> RawClient {
        RawClient::open(self.addr).await
    }

    /// Opens a raw connection and completes CONNECT/CONNACK with the given client id and flags.
    pub async fn raw_connected(
        &self,
        client_id: &str,
        clean_session: bool,
        keep_alive_secs: u16,
    ) -> (RawClient, ConnAck) {
        let mut raw = self.raw().await;
        let ack = raw
            .connect(connect_packet(client_id, clean_session, keep_alive_secs))
            .await;
        (raw, ack)
    }
}

fn env_logger_init() -> Result<(), log::SetLoggerError> {
    env_logger::builder().is_test(true).try_init()
}

/// A rumqttc client whose event loop runs in a task until the first connection error.
///
/// The task never reconnects: a closed connection stays closed, so a test sees exactly what the broker did.
/// Incoming PUBLISH packets passed over while waiting for something else are kept for `next_publish`.
pub struct Client {
    /// The rumqttc request handle.
    pub handle: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
    stash: VecDeque<rumqttc::Publish>,
}

impl Client {
    /// Connects and waits for CONNACK; panics if the broker refuses or does not answer in time.
    pub async fn connect(options: MqttOptions) -> (Client, rumqttc::ConnAck) {
        let (handle, mut event_loop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let mut client = Client {
            handle,
            events,
            task,
            stash: VecDeque::new(),
        };
        let ack = client
            .wait_incoming("CONNACK", |p| match p {
                rumqttc::Packet::ConnAck(ack) => Some(ack.clone()),
                _ => None,
            })
            .await;
        (client, ack)
    }

    /// Waits for an event that `pick` accepts; incoming publishes passed over are kept for later.
    pub async fn wait_event<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
                Ok(None) => panic!("event loop ended while waiting for {what}"),
                Ok(Some(Err(e))) => panic!("connection closed while waiting for {what}: {e}"),
                Ok(Some(Ok(event))) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                    if let Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                        self.stash.push_back(p);
                    }
                }
            }
        }
    }

    /// Waits for an incoming packet that `pick` accepts.
    pub async fn wait_incoming<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
    ) -> T {
        self.wait_event(what, |e| match e {
            Event::Incoming(p) => pick(p),
            Event::Outgoing(_) => None,
        })
        .await
    }

    /// Subscribes to one filter and returns the SUBACK's return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.handle.subscribe(filter, qos).await.unwrap();
        self.wait_suback().await
    }

    /// Waits for the next SUBACK and returns its return codes.
    pub async fn wait_suback(&mut self) -> Vec<rumqttc::SubscribeReasonCode> {
        self.wait_incoming("SUBACK", |p| match p {
            rumqttc::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Unsubscribes from one filter and waits for UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.handle.unsubscribe(filter).await.unwrap();
        self.wait_incoming("UNSUBACK", |p| {
            matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(())
        })
        .await
    }

    /// Publishes and waits until the exchange is complete: written (QoS 0), PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: rumqttc::QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.handle
            .publish(topic, qos, retain, payload)
            .await
            .unwrap();
        self.wait_published(1, qos).await;
    }

    /// Waits until `count` publishes of this QoS made earlier are complete.
    pub async fn wait_published(&mut self, count: usize, qos: rumqttc::QoS) {
        for _ in 0..count {
            self.wait_event("the end of a PUBLISH exchange", |e| match (qos, e) {
                (rumqttc::QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
                (rumqttc::QoS::AtLeastOnce, Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    Some(())
                }
                (rumqttc::QoS::ExactlyOnce, Event::Incoming(rumqttc::Packet::PubComp(_))) => {
                    Some(())
                }
                _ => None,
            })
            .await;
        }
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        self.wait_incoming("PUBLISH", |p| match p {
            rumqttc::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// The next `n` incoming PUBLISH packets, in arrival order.
    pub async fn publishes(&mut self, n: usize) -> Vec<rumqttc::Publish> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_publish().await);
        }
        out
    }

    /// Incoming PUBLISH packets up to and including the first one on `topic` with payload `marker`.
    pub async fn publishes_until(&mut self, topic: &str, marker: &[u8]) -> Vec<rumqttc::Publish> {
        let mut out = Vec::new();
        loop {
            let p = self.next_publish().await;
            let done = p.topic == topic && p.payload.as_ref() == marker;
            out.push(p);
            if done {
                return out;
            }
        }
    }

    /// Asserts that no PUBLISH arrives (and the connection stays up) for `window`.
    pub async fn expect_no_publish(&mut self, window: Duration) {
        if let Some(p) = self.stash.pop_front() {
            panic!("unexpected PUBLISH {p:?}");
        }
        let deadline = Instant::now() + window;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(None) => panic!("event loop ended during a quiet window"),
                Ok(Some(Err(e))) => panic!("connection closed during a quiet window: {e}"),
                Ok(Some(Ok(Event::Incoming(rumqttc::Packet::Publish(p))))) => {
                    panic!("unexpected PUBLISH {p:?}")
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Waits until the broker closes the connection; returns the error rumqttc reported.
    pub async fn wait_closed(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("connection still open after {WAIT:?}"),
                Ok(None) => return "event loop ended".to_owned(),
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(Event::Incoming(rumqttc::Packet::Publish(p))))) => {
                    self.stash.push_back(p)
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends DISCONNECT, waits until it is written, then closes the socket.
    pub async fn disconnect(mut self) {
        self.handle.disconnect().await.unwrap();
        self.wait_event("DISCONNECT written", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        self.kill().await;
    }

    /// Drops the connection without DISCONNECT, as a network failure would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = timeout(WAIT, self.task).await;
    }
}

/// A TCP connection driven packet by packet with the crate's codec, for what a well-behaved client never sends.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// Opens a connection.
    pub async fn open(addr: SocketAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        RawClient::open_socket(socket, addr).await
    }

    async fn open_socket(socket: tokio::net::TcpSocket, addr: SocketAddr) -> RawClient {
        let stream = timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Opens a connection with a 64 KiB receive buffer (the kernel would grow it to megabytes), so that a
    /// client that stops reading holds little of what the broker sends it. Not smaller: below the loopback
    /// segment size the kernel holds back window updates and the connection crawls on zero-window probes.
    pub async fn open_with_small_receive_buffer(addr: SocketAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        RawClient::open_socket(socket, addr).await
    }

    /// Sends several packets in one write, so the broker reads them together.
    pub async fn send_together(&mut self, packets: &[Packet]) {
        let mut out = BytesMut::new();
        for packet in packets {
            encode_packet(packet, &mut out).unwrap();
        }
        self.send_bytes(&out).await;
    }

    /// Sends CONNECT and returns the CONNACK.
    pub async fn connect(&mut self, connect: Connect) -> ConnAck {
        self.send(&Packet::Connect(Box::new(connect))).await;
        match self.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Encodes and sends one packet.
    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode_packet(packet, &mut out).unwrap();
        self.send_bytes(&out).await;
    }

    /// Sends bytes as they are; panics if the write fails.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).await.unwrap();
    }

    /// Sends bytes as they are; the write may fail when the broker has already closed the connection.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        timeout(WAIT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write timed out")
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe(&mut self, packet_id: u16, filter: &str, qos: QoS) -> SubAck {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(packet_id),
            filters: vec![(topic_filter(filter), qos.into())],
            properties: None,
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(ack) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// The next packet from the broker; panics on timeout or when the connection closes.
    pub async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("connection closed while a packet was expected"),
            Err(()) => panic!("no packet within {WAIT:?}"),
        }
    }

    /// The next PUBLISH from the broker; any other packet fails the test.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next packet, `Ok(None)` if the broker closed the connection, `Err(())` if nothing came within `window`.
    pub async fn recv_within(&mut self, window: Duration) -> Result<Option<Packet>, ()> {
        let deadline = Instant::now() + window;
        loop {
            if let Some(packet) = decode_packet(&mut self.buf, Role::Client, usize::MAX).unwrap() {
                return Ok(Some(packet));
            }
            let mut chunk = [0u8; 4096];
            match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(()),
                // A reset counts as closed: the broker may close with unread bytes in its buffer.
                Ok(Ok(0)) | Ok(Err(_)) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed in the middle of a packet"
                    );
                    return Ok(None);
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Asserts that nothing arrives and the connection stays open for `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        match self.recv_within(window).await {
            Err(()) => {}
            Ok(Some(packet)) => panic!("unexpected packet {packet:?}"),
            Ok(None) => panic!("connection closed during a quiet window"),
        }
    }

    /// Waits until the broker closes the connection and returns the packets it sent before closing.
    pub async fn wait_closed(&mut self) -> Vec<Packet> {
        self.wait_closed_within(WAIT).await
    }

    /// Like `wait_closed`, with a bound of its own.
    pub async fn wait_closed_within(&mut self, within: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Ok(Some(packet)) => seen.push(packet),
                Ok(None) => return seen,
                Err(()) => panic!("connection still open after {within:?} (received {seen:?})"),
            }
        }
    }
}

/// A valid topic name.
pub fn topic(name: &str) -> TopicName {
    TopicName::new(name.to_owned()).unwrap()
}

/// A valid topic filter.
pub fn topic_filter(filter: &str) -> TopicFilter {
    TopicFilter::new(filter.to_owned()).unwrap()
}

/// A non-zero packet identifier.
pub fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// An MQTT 3.1.1 CONNECT without will or credentials.
pub fn connect_packet(client_id: &str, clean_session: bool, keep_alive_secs: u16) -> Connect {
    Connect {
        level: ProtocolLevel::V311,
        clean_session,
        keep_alive_secs,
        client_id: ClientId::new(client_id.to_owned()),
        will: None,
        username: None,
        password: None,
        properties: None,
    }
}

/// A will message for a raw CONNECT.
pub fn will(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: None,
    }
}

/// A PUBLISH for a raw client.
pub fn publish_packet(
    topic_name: &str,
    qos: QoS,
    packet_id: Option<u16>,
    dup: bool,
    payload: &'static [u8],
) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos,
        retain: false,
        topic: topic(topic_name),
        packet_id: packet_id.map(pid),
        payload: Bytes::from_static(payload),
        properties: None,
    })
}

/// The packet id of a PUBLISH that must carry one.
pub fn id_of(p: &Publish) -> u16 {
    p.packet_id
        .expect("QoS > 0 PUBLISH without packet id")
        .get()
}

/// Payloads of rumqttc publishes as strings, for readable assertions.
pub fn payloads(publishes: &[rumqttc::Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}
