//! The outgoing half of a connection: packets are encoded into a buffer by the session and sealed into
//! chunks. A chunk that announces stored state (a PUBLISH under a recorded packet id, a PUBREL) waits until
//! that state is committed, and every later chunk waits behind it, so a client never sees what a crash could
//! take back. The session writes released chunks itself and waits while the socket is full: that pause is how
//! a slow client pushes back on the router.

use crate::codec::encode::encode_packet;
use crate::codec::Packet;
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The socket's write half.
pub type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

/// A store commit that sealed chunks wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gate(u64);

/// Chunks ready to be written, with the socket to write them to.
pub struct WriteJob {
    io: WriteHalf,
    chunks: Vec<Bytes>,
}

impl WriteJob {
    /// Writes every chunk and flushes; gives the socket back.
    pub async fn run(mut self) -> std::io::Result<WriteHalf> {
        for chunk in &self.chunks {
            self.io.write_all(chunk).await?;
        }
        self.io.flush().await?;
        Ok(self.io)
    }
}

/// Encodes packets for one connection and releases them in order.
pub struct Outgoing {
    buf: BytesMut,
    io: Option<WriteHalf>,
    held: VecDeque<(Option<Gate>, Bytes)>,
    open_gates: HashSet<Gate>,
    next_gate: u64,
}

impl Outgoing {
    /// Writes to `io`.
    pub fn new(io: WriteHalf) -> Self {
        Outgoing {
            buf: BytesMut::new(),
            io: Some(io),
            held: VecDeque::new(),
            open_gates: HashSet::new(),
            next_gate: 0,
        }
    }

    /// Encodes one packet into the pending chunk.
    pub fn write(&mut self, packet: &Packet) {
        if let Err(e) = encode_packet(packet, &mut self.buf) {
            log::error!("cannot encode {}: {e}", packet.name());
        }
    }

    /// Seals what was encoded so far behind a new gate, to be opened once its store commit is done.
    pub fn seal_gated(&mut self) -> Gate {
        self.next_gate += 1;
        let gate = Gate(self.next_gate);
        self.open_gates.insert(gate);
        let chunk = self.buf.split().freeze();
        self.held.push_back((Some(gate), chunk));
        gate
    }

    /// The commit a gate waited for is done.
    pub fn open(&mut self, gate: Gate) {
        self.open_gates.remove(&gate);
    }

    /// The chunks that may leave now, in order, with the socket; `None` when there are none or a write is
    /// already running.
    pub fn take_job(&mut self) -> Option<WriteJob> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.held.push_back((None, chunk));
        }
        let ready = self
            .held
            .iter()
            .take_while(|(gate, _)| !gate.is_some_and(|g| self.open_gates.contains(&g)))
            .count();
        if ready == 0 {
            return None;
        }
        let io = self.io.take()?;
        let chunks = self.held.drain(..ready).map(|(_, chunk)| chunk).collect();
        Some(WriteJob { io, chunks })
    }

    /// The socket is back from a finished write.
    pub fn restore(&mut self, io: WriteHalf) {
        self.io = Some(io);
    }

    /// Writes what may leave now in the background and shuts the socket down; chunks still waiting for a
    /// commit are not sent (the client gets them again after it reconnects).
    pub fn close(&mut self) {
        let job = self.take_job();
        let idle = self.io.take();
        actix_rt::spawn(async move {
            let io = match job {
                Some(job) => job.run().await.ok(),
                None => idle,
            };
            if let Some(mut io) = io {
                let _ = io.shutdown().await;
            }
        });
    }
}
