//! One raw MQTT client connection of the generator: connect, subscribe, buffered reads and batched writes.
//! Owns the socket and its two buffers; knows nothing of scenarios, counting or timing.

use super::tls::Stream;
use crate::codec::properties::boxed;
use crate::codec::{
    props, ClientId, ConnAck, Connect, MaybeProperties, Packet, PacketId, Properties,
    ProtocolLevel, QoS, ReasonCode, Subscribe, SubscribeReturnCode,
};
use crate::topic::TopicFilter;
use bytes::BytesMut;
use std::io;

use super::wire::{self, WireError};

/// Free space kept in the read buffer before each read, so one read can take many packets.
const READ_CHUNK: usize = 64 * 1024;

/// Why a benchmark connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The broker sent something that is not MQTT, or a packet could not be encoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The broker closed the connection.
    #[error("connection closed by the broker")]
    Closed,
    /// CONNACK refused the connection: the reason code and any MQTT 5.0 Reason String.
    #[error("connection refused by the broker: {0}{1}")]
    Refused(ReasonCode, ReasonText),
    /// The broker sent DISCONNECT (MQTT 5.0): the reason code and any Reason String.
    #[error("the broker sent DISCONNECT with reason code {0}{1}")]
    Disconnected(ReasonCode, ReasonText),
    /// The broker answered with a packet that makes no sense at this point.
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    /// SUBACK refused the subscription.
    #[error("subscription to {0} refused: {1}")]
    SubscriptionRefused(String, ReasonCode),
    /// A topic or filter built from the command line is not valid.
    #[error("invalid topic: {0}")]
    Topic(String),
}

/// The Reason String of an MQTT 5.0 packet, shown after its reason code; empty when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonText(pub Option<String>);

impl ReasonText {
    /// The Reason String of `properties`, if any.
    pub fn of(properties: &MaybeProperties) -> ReasonText {
        ReasonText(
            props(properties)
                .reason_string
                .as_deref()
                .map(str::to_string),
        )
    }
}

impl std::fmt::Display for ReasonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(text) => write!(f, " ({text:?})"),
            None => Ok(()),
        }
    }
}

/// What a client asks for in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The protocol level spoken on the connection.
    pub level: ProtocolLevel,
    /// A clean session keeps nothing after the connection: clean session 1 (3.1, 3.1.1), or Clean Start 1 with
    /// no Session Expiry Interval, which means 0 (5.0). Otherwise the stored session is resumed and kept: clean
    /// session 0, or Clean Start 0 with Session Expiry Interval 0xFFFFFFFF (never expires).
    pub clean: bool,
    /// Keepalive in seconds; 0 turns it off.
    pub keep_alive_secs: u16,
    /// MQTT 5.0 Receive Maximum: QoS 1/2 publishes the broker may leave unacknowledged towards this client;
    /// `None` leaves it out (unlimited, that is 65,535). Ignored below 5.0.
    pub receive_maximum: Option<u16>,
    /// User name and password sent in CONNECT, if any.
    pub credentials: Option<Credentials>,
    /// TLS, if the connection uses it.
    pub tls: Option<super::tls::TlsClient>,
}

/// A user name and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl ConnectOptions {
    /// The CONNECT these options and `client_id` make.
    pub fn connect_packet(&self, client_id: &str) -> Connect {
        let properties = if self.level.is_v5() {
            boxed(Properties {
                session_expiry_interval: (!self.clean).then_some(u32::MAX),
                receive_maximum: self.receive_maximum.filter(|&n| n > 0),
                ..Properties::default()
            })
        } else {
            None
        };
        Connect {
            level: self.level,
            clean_session: self.clean,
            keep_alive_secs: self.keep_alive_secs,
            client_id: ClientId::new(client_id),
            will: None,
            username: self
                .credentials
                .as_ref()
                .map(|c| c.username.as_str().into()),
            password: self
                .credentials
                .as_ref()
                .map(|c| bytes::Bytes::copy_from_slice(c.password.as_bytes())),
            properties,
        }
    }
}

/// What the broker's MQTT 5.0 CONNACK limits; all `None` below 5.0 or when it states nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Receive Maximum: QoS 1/2 publishes the client may leave unacknowledged.
    pub receive_maximum: Option<u16>,
    /// Maximum QoS the broker accepts in PUBLISH.
    pub maximum_qos: Option<u8>,
    /// Maximum Packet Size the broker accepts.
    pub maximum_packet_size: Option<u32>,
}

impl BrokerLimits {
    /// The limits a CONNACK states.
    pub fn of(ack: &ConnAck) -> BrokerLimits {
        let p = props(&ack.properties);
        BrokerLimits {
            receive_maximum: p.receive_maximum,
            maximum_qos: p.maximum_qos,
            maximum_packet_size: p.maximum_packet_size,
        }
    }
}

/// A connected MQTT client: the socket, bytes read but not yet decoded, bytes to write.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    rbuf: BytesMut,
    /// Packets waiting for the next `flush`.
    pub wbuf: BytesMut,
    level: ProtocolLevel,
    limits: BrokerLimits,
}

impl Conn {
    /// Opens a TCP connection with `TCP_NODELAY` (and TLS when `options` say so), sends CONNECT and waits
    /// for CONNACK.
    ///
    /// Returns the connection and the CONNACK session-present flag.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        options: &ConnectOptions,
    ) -> Result<(Conn, bool), ClientError> {
        let stream = Stream::connect(addr, options.tls.as_ref()).await?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::with_capacity(128),
            level: options.level,
            limits: BrokerLimits::default(),
        };
        let connect = options.connect_packet(client_id);
        conn.queue(&Packet::Connect(Box::new(connect)))?;
        conn.flush().await?;
        match conn.next_packet_blocking().await? {
            Packet::ConnAck(ack) if ack.code == ReasonCode::SUCCESS => {
                conn.limits = BrokerLimits::of(&ack);
                Ok((conn, ack.session_present))
            }
            Packet::ConnAck(ack) => Err(ClientError::Refused(
                ack.code,
                ReasonText::of(&ack.properties),
            )),
            other => Err(ClientError::Unexpected(other.name())),
        }
    }

    /// The protocol level the connection speaks.
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }

    /// What the broker's CONNACK limits.
    pub fn limits(&self) -> BrokerLimits {
        self.limits
    }

    /// Subscribes to one filter and waits for SUBACK, skipping any PUBLISH that arrives first.
    ///
    /// Returns the granted QoS.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<QoS, ClientError> {
        let packet_id = PacketId::new(1).ok_or(ClientError::Unexpected("packet id"))?;
        let topic = TopicFilter::new(filter).map_err(|e| ClientError::Topic(e.to_string()))?;
        let subscribe = Subscribe {
            packet_id,
            filters: vec![(topic, qos.into())],
            properties: None,
        };
        self.queue(&Packet::Subscribe(subscribe))?;
        self.flush().await?;
        loop {
            match self.next_packet_blocking().await? {
                Packet::SubAck(ack) => {
                    return match ack.return_codes.first() {
                        Some(SubscribeReturnCode::Success(granted)) => Ok(*granted),
                        other => Err(ClientError::SubscriptionRefused(
                            filter.to_string(),
                            other.map_or(ReasonCode::UNSPECIFIED_ERROR, |c| c.reason()),
                        )),
                    }
                }
                Packet::Publish(_) => continue,
                other => return Err(ClientError::Unexpected(other.name())),
            }
        }
    }

    /// Waits for bytes from the broker and appends them to the read buffer.
    pub async fn read_more(&mut self) -> Result<usize, ClientError> {
        self.make_room();
        match self.stream.read_buf(&mut self.rbuf).await? {
            0 => Err(ClientError::Closed),
            n => Ok(n),
        }
    }

    /// Appends whatever the broker has already sent, without waiting; 0 when nothing is ready.
    pub fn try_read_more(&mut self) -> Result<usize, ClientError> {
        self.make_room();
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps at least half a chunk free in the read buffer, so one read can take many packets.
    fn make_room(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
    }

    /// Takes the next complete packet out of the read buffer, if there is one; a DISCONNECT from the broker
    /// (MQTT 5.0) is an error naming its reason code.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        match wire::decode(&mut self.rbuf, self.level)? {
            Some(Packet::Disconnect(d)) => Err(ClientError::Disconnected(
                d.reason,
                ReasonText::of(&d.properties),
            )),
            packet => Ok(packet),
        }
    }

    /// Reads until one complete packet is available and returns it.
    pub async fn next_packet_blocking(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            self.read_more().await?;
        }
    }

    /// Appends one packet to the write buffer.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        Ok(wire::encode(packet, self.level, &mut self.wbuf)?)
    }

    /// Writes the whole write buffer in one call and empties it (its capacity is kept).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends DISCONNECT (after anything still buffered) and closes the socket.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        self.queue(&Packet::Disconnect(Default::default()))?;
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Drops both buffers so an idle connection costs only its socket.
    pub fn shrink(&mut self) {
        self.rbuf = BytesMut::new();
        self.wbuf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_packet_at, encode_packet_at, ConnAck, ReasonOnly, Role};
    use crate::loadgen::test_broker::{accepted, FakeBroker};

    fn options(level: ProtocolLevel, clean: bool, receive_maximum: Option<u16>) -> ConnectOptions {
        ConnectOptions {
            level,
            clean,
            keep_alive_secs: 0,
            receive_maximum,
            credentials: None,
            tls: None,
        }
    }

    /// The CONNECT `options` make, as bytes and as a broker decodes them.
    fn sent(options: &ConnectOptions) -> (Vec<u8>, Connect) {
        let mut out = BytesMut::new();
        let packet = Packet::Connect(Box::new(options.connect_packet("c1")));
        encode_packet_at(&packet, options.level, &mut out).unwrap();
        let bytes = out.to_vec();
        match decode_packet_at(&mut out, Role::Server, ProtocolLevel::V311, 1024).unwrap() {
            Some(Packet::Connect(c)) => (bytes, *c),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    #[test]
    fn v5_clean_session_is_clean_start_without_expiry() {
        let (_, c) = sent(&options(ProtocolLevel::V5, true, None));
        assert_eq!(c.level, ProtocolLevel::V5);
        assert!(c.clean_session);
        assert_eq!(
            props(&c.properties).session_expiry_interval,
            None,
            "absent means 0"
        );
        assert_eq!(c.properties, None, "nothing else to say");
    }

    #[test]
    fn v5_persistent_session_never_expires_and_resumes() {
        let (_, c) = sent(&options(ProtocolLevel::V5, false, Some(64)));
        assert!(!c.clean_session, "Clean Start 0 resumes the stored session");
        let p = props(&c.properties);
        assert_eq!(p.session_expiry_interval, Some(0xFFFF_FFFF));
        assert_eq!(p.receive_maximum, Some(64));
    }

    #[test]
    fn receive_maximum_is_sent_only_at_level_5() {
        let (_, c) = sent(&options(ProtocolLevel::V5, true, Some(100)));
        assert_eq!(props(&c.properties).receive_maximum, Some(100));
        let (_, c) = sent(&options(ProtocolLevel::V311, false, Some(100)));
        assert_eq!((c.properties, c.clean_session), (None, false));
    }

    #[test]
    fn v31_connect_names_mqisdp_level_3() {
        let (bytes, c) = sent(&options(ProtocolLevel::V31, true, None));
        assert_eq!(c.level, ProtocolLevel::V31);
        assert_eq!(&bytes[2..11], b"\x00\x06MQIsdp\x03");
        let (bytes, _) = sent(&options(ProtocolLevel::V311, true, None));
        assert_eq!(&bytes[2..9], b"\x00\x04MQTT\x04");
        let (bytes, _) = sent(&options(ProtocolLevel::V5, true, None));
        assert_eq!(&bytes[2..9], b"\x00\x04MQTT\x05");
    }

    #[tokio::test]
    async fn v5_connack_limits_are_kept_and_subscribe_speaks_level_5() {
        let broker = FakeBroker::start().await;
        let addr = broker.addr.clone();
        let client = tokio::spawn(async move {
            let (mut conn, present) =
                Conn::connect(&addr, "c1", &options(ProtocolLevel::V5, false, None))
                    .await
                    .unwrap();
            let granted = conn.subscribe("a/#", QoS::AtLeastOnce).await.unwrap();
            (conn.limits(), present, granted)
        });
        let connack = ConnAck {
            session_present: true,
            code: ReasonCode::SUCCESS,
            properties: boxed(Properties {
                receive_maximum: Some(7),
                maximum_qos: Some(1),
                maximum_packet_size: Some(4096),
                ..Properties::default()
            }),
        };
        let (mut peer, connect) = broker.accept(connack).await;
        assert_eq!(connect.level, ProtocolLevel::V5);
        let sub = match peer.recv().await {
            Packet::Subscribe(s) => s,
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        };
        peer.send(&Packet::SubAck(crate::codec::SubAck {
            packet_id: sub.packet_id,
            return_codes: vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)],
            properties: None,
        }))
        .await;
        let (limits, present, granted) = client.await.unwrap();
        assert!(present);
        assert_eq!(granted, QoS::AtLeastOnce);
        assert_eq!(
            limits,
            BrokerLimits {
                receive_maximum: Some(7),
                maximum_qos: Some(1),
                maximum_packet_size: Some(4096),
            }
        );
    }

    #[tokio::test]
    async fn v5_refusal_names_the_reason_code_and_string() {
        let broker = FakeBroker::start().await;
        let addr = broker.addr.clone();
        let client = tokio::spawn(async move {
            Conn::connect(&addr, "c1", &options(ProtocolLevel::V5, true, None)).await
        });
        let refusal = ConnAck {
            session_present: false,
            code: ReasonCode::NOT_AUTHORIZED,
            properties: boxed(Properties {
                reason_string: Some("no bench today".into()),
                ..Properties::default()
            }),
        };
        let _peer = broker.accept(refusal).await;
        let err = client.await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "connection refused by the broker: 0x87 Not authorized (\"no bench today\")"
        );
    }

    #[tokio::test]
    async fn a_v5_disconnect_from_the_broker_is_an_error_naming_its_reason() {
        let broker = FakeBroker::start().await;
        let addr = broker.addr.clone();
        let client = tokio::spawn(async move {
            let (mut conn, _) = Conn::connect(&addr, "c1", &options(ProtocolLevel::V5, true, None))
                .await
                .unwrap();
            conn.next_packet_blocking().await
        });
        let (mut peer, _) = broker.accept(accepted()).await;
        peer.send(&Packet::Disconnect(ReasonOnly::new(
            ReasonCode::SERVER_SHUTTING_DOWN,
        )))
        .await;
        let err = client.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            ClientError::Disconnected(ReasonCode::SERVER_SHUTTING_DOWN, _)
        ));
        assert_eq!(
            err.to_string(),
            "the broker sent DISCONNECT with reason code 0x8b Server shutting down"
        );
    }

    #[tokio::test]
    async fn a_v5_suback_refusal_names_the_reason_code() {
        let broker = FakeBroker::start().await;
        let addr = broker.addr.clone();
        let client = tokio::spawn(async move {
            let (mut conn, _) = Conn::connect(&addr, "c1", &options(ProtocolLevel::V5, true, None))
                .await
                .unwrap();
            conn.subscribe("a/#", QoS::AtMostOnce).await
        });
        let (mut peer, _) = broker.accept(accepted()).await;
        let Packet::Subscribe(sub) = peer.recv().await else {
            panic!("expected SUBSCRIBE")
        };
        peer.send(&Packet::SubAck(crate::codec::SubAck {
            packet_id: sub.packet_id,
            return_codes: vec![SubscribeReturnCode::Refused(
                ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            )],
            properties: None,
        }))
        .await;
        let err = client.await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "subscription to a/# refused: 0xa2 Wildcard Subscriptions not supported"
        );
    }
}
