//! The outgoing half of a connection: packets are encoded into a buffer by the session, sealed into chunks,
//! and handed through a bounded channel to a small task that writes them. A chunk that announces stored state
//! (a PUBLISH under a recorded packet id, a PUBREL) waits until that state is committed, and every later chunk
//! waits behind it, so a client never sees what a crash could take back. A full channel is how a slow client
//! pushes back.

use crate::codec::encode::encode_packet;
use crate::codec::Packet;
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Chunks that may wait for the socket before the session stops reading its mailbox.
const CHUNKS_IN_FLIGHT: usize = 32;

/// A store commit that sealed chunks wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gate(u64);

/// What became of a flush.
pub enum Flushed {
    /// Everything releasable was handed over (gated chunks may still wait).
    Done,
    /// The writer is behind; the chunk must be sent with `send().await` while the session waits, then
    /// `flush` called again.
    Congested(mpsc::Sender<Bytes>, Bytes),
    /// The connection is gone.
    Closed,
}

/// Encodes packets for one connection and feeds its writer task.
pub struct Outgoing {
    buf: BytesMut,
    tx: Option<mpsc::Sender<Bytes>>,
    held: VecDeque<(Option<Gate>, Bytes)>,
    open_gates: HashSet<Gate>,
    next_gate: u64,
}

impl Outgoing {
    /// Starts the writer task for `io` on the current runtime.
    pub fn start<W: AsyncWrite + Unpin + 'static>(io: W) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        actix_rt::spawn(write_loop(io, rx));
        Outgoing {
            buf: BytesMut::new(),
            tx: Some(tx),
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

    /// The commit a gate waited for is done (or failed and the connection is closing).
    pub fn open(&mut self, gate: Gate) {
        self.open_gates.remove(&gate);
    }

    /// Hands every chunk that may leave to the writer task, in order.
    pub fn flush(&mut self) -> Flushed {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.held.push_back((None, chunk));
        }
        let Some(tx) = &self.tx else {
            self.held.clear();
            return Flushed::Closed;
        };
        while let Some((gate, _)) = self.held.front() {
            if gate.is_some_and(|g| self.open_gates.contains(&g)) {
                break;
            }
            let Some((_, chunk)) = self.held.pop_front() else {
                break;
            };
            match tx.try_send(chunk) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(chunk)) => {
                    return Flushed::Congested(tx.clone(), chunk)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Flushed::Closed,
            }
        }
        Flushed::Done
    }

    /// Stops writing after what may leave now; the writer task then shuts the socket down. Chunks still
    /// waiting for a commit are not sent: the client gets them again after it reconnects.
    pub fn close(&mut self) {
        if let Flushed::Congested(tx, chunk) = self.flush() {
            // The session is going away: hand the chunk over without waiting on the actor.
            actix_rt::spawn(async move {
                let _ = tx.send(chunk).await;
            });
        }
        self.tx = None;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(chunk) = rx.recv().await {
        if io.write_all(&chunk).await.is_err() {
            return;
        }
        // Everything already waiting goes out before the flush, so bursts need few system calls.
        while let Ok(more) = rx.try_recv() {
            if io.write_all(&more).await.is_err() {
                return;
            }
        }
        if io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}
