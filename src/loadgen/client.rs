//! One raw MQTT client connection of the generator: connect, subscribe, buffered reads and batched writes.
//! Owns the socket and its two buffers; knows nothing of scenarios, counting or timing.

use crate::codec::{
    ClientId, Connect, Packet, PacketId, ProtocolLevel, QoS, ReasonCode, Subscribe,
    SubscribeReturnCode,
};
use crate::topic::TopicFilter;
use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// CONNACK refused the connection.
    #[error("connection refused by the broker: {0:?}")]
    Refused(ReasonCode),
    /// The broker answered with a packet that makes no sense at this point.
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    /// SUBACK refused the subscription.
    #[error("subscription to {0} refused")]
    SubscriptionRefused(String),
    /// A topic or filter built from the command line is not valid.
    #[error("invalid topic: {0}")]
    Topic(String),
}

/// A connected MQTT client: the socket, bytes read but not yet decoded, bytes to write.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    /// Packets waiting for the next `flush`.
    pub wbuf: BytesMut,
}

impl Conn {
    /// Opens a TCP connection with `TCP_NODELAY`, sends CONNECT and waits for CONNACK.
    ///
    /// Returns the connection and the CONNACK session-present flag.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        clean_session: bool,
    ) -> Result<(Conn, bool), ClientError> {
        // Keepalive off: the generator never idles long enough mid-run to need pings.
        Conn::connect_with(addr, client_id, clean_session, 0).await
    }

    /// As [`Conn::connect`], with a keepalive of `keep_alive_secs` (0 turns it off).
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        clean_session: bool,
        keep_alive_secs: u16,
    ) -> Result<(Conn, bool), ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::with_capacity(128),
        };
        let connect = Connect {
            level: ProtocolLevel::V311,
            clean_session,
            keep_alive_secs,
            client_id: ClientId::new(client_id),
            will: None,
            username: None,
            password: None,
            properties: None,
        };
        wire::encode(&Packet::Connect(Box::new(connect)), &mut conn.wbuf)?;
        conn.flush().await?;
        match conn.next_packet_blocking().await? {
            Packet::ConnAck(ack) if ack.code == ReasonCode::SUCCESS => {
                Ok((conn, ack.session_present))
            }
            Packet::ConnAck(ack) => Err(ClientError::Refused(ack.code)),
            other => Err(ClientError::Unexpected(other.name())),
        }
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
        wire::encode(&Packet::Subscribe(subscribe), &mut self.wbuf)?;
        self.flush().await?;
        loop {
            match self.next_packet_blocking().await? {
                Packet::SubAck(ack) => {
                    return match ack.return_codes.first() {
                        Some(SubscribeReturnCode::Success(granted)) => Ok(*granted),
                        _ => Err(ClientError::SubscriptionRefused(filter.to_string())),
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

    /// Takes the next complete packet out of the read buffer, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(wire::decode(&mut self.rbuf)?)
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
        Ok(wire::encode(packet, &mut self.wbuf)?)
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
