//! The outgoing half of a connection: packets are encoded into a buffer by the session, handed over in
//! chunks through a bounded channel, and written by a small task. A full channel is how a slow client pushes back.

use crate::codec::encode::encode_packet;
use crate::codec::Packet;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Chunks that may wait for the socket before the session stops reading its mailbox.
const CHUNKS_IN_FLIGHT: usize = 32;

/// What became of a flush.
pub enum Flushed {
    /// Nothing to write, or the chunk was handed over.
    Done,
    /// The writer is behind; the chunk must be sent with `send().await` while the session waits.
    Congested(mpsc::Sender<Bytes>, Bytes),
    /// The connection is gone.
    Closed,
}

/// Encodes packets for one connection and feeds its writer task.
pub struct Outgoing {
    buf: BytesMut,
    tx: Option<mpsc::Sender<Bytes>>,
}

impl Outgoing {
    /// Starts the writer task for `io` on the current runtime.
    pub fn start<W: AsyncWrite + Unpin + 'static>(io: W) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        actix_rt::spawn(write_loop(io, rx));
        Outgoing {
            buf: BytesMut::new(),
            tx: Some(tx),
        }
    }

    /// Encodes one packet into the pending chunk.
    pub fn write(&mut self, packet: &Packet) {
        if let Err(e) = encode_packet(packet, &mut self.buf) {
            log::error!("cannot encode {}: {e}", packet.name());
        }
    }

    /// Hands the pending chunk to the writer task.
    pub fn flush(&mut self) -> Flushed {
        if self.buf.is_empty() {
            return Flushed::Done;
        }
        let Some(tx) = &self.tx else {
            self.buf.clear();
            return Flushed::Closed;
        };
        let chunk = self.buf.split().freeze();
        match tx.try_send(chunk) {
            Ok(()) => Flushed::Done,
            Err(mpsc::error::TrySendError::Full(chunk)) => Flushed::Congested(tx.clone(), chunk),
            Err(mpsc::error::TrySendError::Closed(_)) => Flushed::Closed,
        }
    }

    /// Stops writing after what was handed over so far; the writer task then shuts the socket down.
    pub fn close(&mut self) {
        let _ = self.flush();
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
