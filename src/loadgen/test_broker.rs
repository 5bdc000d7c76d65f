//! A scripted broker for the generator's unit tests: accepts one connection on 127.0.0.1, decodes what the
//! generator's client writes at the level of its CONNECT, and sends whatever the test says. Test-only.

use crate::codec::{
    decode_packet_at, encode_packet_at, ConnAck, Connect, Packet, ProtocolLevel, ReasonCode, Role,
};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on every wait of a test.
pub const WAIT: Duration = Duration::from_secs(5);

/// A listening socket the generator's client connects to.
pub struct FakeBroker {
    listener: TcpListener,
    /// `host:port` to connect to.
    pub addr: String,
}

/// The broker's side of one accepted connection.
pub struct Peer {
    stream: TcpStream,
    rbuf: BytesMut,
    /// The level of the CONNECT received; everything after it is read and written at that level.
    pub level: ProtocolLevel,
}

impl FakeBroker {
    /// Listens on an ephemeral port.
    pub async fn start() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        FakeBroker { listener, addr }
    }

    /// Accepts one connection, reads its CONNECT and answers with `connack`.
    pub async fn accept(&self, connack: ConnAck) -> (Peer, Connect) {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("a client connects")
            .unwrap();
        let mut peer = Peer {
            stream,
            rbuf: BytesMut::new(),
            level: ProtocolLevel::V311,
        };
        let connect = match peer.recv().await {
            Packet::Connect(c) => *c,
            other => panic!("expected CONNECT, got {other:?}"),
        };
        peer.level = connect.level;
        peer.send(&Packet::ConnAck(connack)).await;
        (peer, connect)
    }
}

/// A CONNACK accepting the connection, with no session and no properties.
pub fn accepted() -> ConnAck {
    ConnAck {
        session_present: false,
        code: ReasonCode::SUCCESS,
        properties: None,
    }
}

impl Peer {
    /// The next packet from the client, waiting at most `WAIT`.
    pub async fn recv(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = self.try_decode() {
                    return p;
                }
                let n = self.stream.read_buf(&mut self.rbuf).await.unwrap();
                assert!(n > 0, "the client closed the connection");
            }
        })
        .await
        .expect("a packet from the client")
    }

    /// A packet already read and complete, if there is one.
    pub fn try_decode(&mut self) -> Option<Packet> {
        decode_packet_at(&mut self.rbuf, Role::Server, self.level, 1 << 24).unwrap()
    }

    /// Reads whatever arrives within `window` and decodes every complete packet of it.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Ok(n)) =
            tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await
        {
            if n == 0 {
                break;
            }
        }
        std::iter::from_fn(|| self.try_decode()).collect()
    }

    /// Writes one packet at the connection's level.
    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode_packet_at(packet, self.level, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }
}
