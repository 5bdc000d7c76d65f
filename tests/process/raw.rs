//! A raw-socket MQTT client over harbormq's codec, for exchanges a client library does not let a test cut short.
//! Sends and reads single packets with bounded waits; it keeps no protocol state of its own.

use bytes::BytesMut;
use harbormq::codec::{
    decode::decode_packet, encode::encode_packet, ClientId, ConnAck, Connect, ConnectReturnCode,
    Packet as RawPacket, ProtocolLevel, Role,
};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Upper bound of any single network wait.
const STEP: Duration = Duration::from_secs(15);

/// Awaits `fut`, failing the test with `what` if it takes longer than `STEP`.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(STEP, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// A client on a raw socket, for exchanges a client library does not let a test interrupt.
pub struct RawClient {
    stream: TcpStream,
    buffer: BytesMut,
}

impl RawClient {
    /// Connects with `client_id` and clean session 0, returning the client and its CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> (RawClient, ConnAck) {
        let stream = within("raw TCP connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        let mut client = RawClient {
            stream,
            buffer: BytesMut::new(),
        };
        let connect = Connect {
            level: ProtocolLevel::V311,
            clean_session: false,
            keep_alive_secs: 60,
            client_id: ClientId::new(client_id),
            will: None,
            username: None,
            password: None,
        };
        client.send(&RawPacket::Connect(Box::new(connect))).await;
        match client.recv().await {
            RawPacket::ConnAck(ack) => {
                assert_eq!(ack.code, ConnectReturnCode::Accepted);
                (client, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Writes one packet.
    pub async fn send(&mut self, packet: &RawPacket) {
        let mut bytes = BytesMut::new();
        encode_packet(packet, &mut bytes).unwrap();
        within("a raw write", self.stream.write_all(&bytes))
            .await
            .unwrap();
    }

    /// Reads the next packet from the broker.
    pub async fn recv(&mut self) -> RawPacket {
        loop {
            if let Some(packet) = decode_packet(&mut self.buffer, Role::Client, 1 << 20).unwrap() {
                return packet;
            }
            let read = within("a raw read", self.stream.read_buf(&mut self.buffer))
                .await
                .unwrap();
            assert!(read > 0, "the broker closed the raw connection");
        }
    }
}
