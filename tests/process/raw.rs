//! A raw-socket MQTT client over harbormq's codec, for exchanges a client library does not let a test cut short.
//! Sends and reads single packets with bounded waits; it keeps no protocol state of its own.

use super::within;
use bytes::BytesMut;
use harbormq::codec::{
    decode::decode_packet, encode::encode_packet, ClientId, ConnAck, Connect, ConnectReturnCode,
    Packet as RawPacket, ProtocolLevel, Role,
};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client on a raw socket, for exchanges a client library does not let a test interrupt.
pub struct RawClient {
    stream: TcpStream,
    buffer: BytesMut,
}

impl RawClient {
    /// Connects with `client_id` and clean session 0, returning the client and its CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> (RawClient, ConnAck) {
        RawClient::open(port, client_id, false).await
    }

    /// Connects with `client_id` and `clean_session`, returning the client and its CONNACK, which must accept.
    pub async fn open(port: u16, client_id: &str, clean_session: bool) -> (RawClient, ConnAck) {
        let stream = within("raw TCP connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let mut client = RawClient {
            stream,
            buffer: BytesMut::new(),
        };
        let connect = Connect {
            level: ProtocolLevel::V311,
            clean_session,
            keep_alive_secs: 60,
            client_id: ClientId::new(client_id),
            will: None,
            username: None,
            password: None,
            properties: None,
        };
        client.send(&RawPacket::Connect(Box::new(connect))).await;
        match client.recv().await {
            RawPacket::ConnAck(ack) => {
                assert_eq!(ack.code, ConnectReturnCode::Accepted, "{client_id}");
                (client, ack)
            }
            other => panic!("{client_id}: expected CONNACK, got {other:?}"),
        }
    }

    /// Writes one packet.
    pub async fn send(&mut self, packet: &RawPacket) {
        self.write(packet).await.unwrap();
    }

    /// Writes one packet; false if the broker has closed the connection.
    pub async fn try_send(&mut self, packet: &RawPacket) -> bool {
        self.write(packet).await.is_ok()
    }

    /// Reads the next packet from the broker.
    pub async fn recv(&mut self) -> RawPacket {
        let packet = self.read().await.unwrap();
        packet.expect("the broker closed the raw connection")
    }

    /// Reads the next packet; `None` once the broker has closed the connection.
    pub async fn try_recv(&mut self) -> Option<RawPacket> {
        self.read().await.ok().flatten()
    }

    async fn write(&mut self, packet: &RawPacket) -> io::Result<()> {
        let mut bytes = BytesMut::new();
        encode_packet(packet, &mut bytes).unwrap();
        within("a raw write", self.stream.write_all(&bytes)).await
    }

    async fn read(&mut self) -> io::Result<Option<RawPacket>> {
        loop {
            if let Some(packet) = decode_packet(&mut self.buffer, Role::Client, 1 << 20).unwrap() {
                return Ok(Some(packet));
            }
            if within("a raw read", self.stream.read_buf(&mut self.buffer)).await? == 0 {
                return Ok(None);
            }
        }
    }
}
