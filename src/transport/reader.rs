//! Turns a byte stream into batches of decoded packets: everything that one read made decodable is handed
//! over at once, so the session routes it as one batch. The read buffer starts small (most connections are
//! idle) and grows while reads fill it, so a busy connection needs few system calls.

use crate::codec::{DecodeError, MqttCodec, Packet};
use bytes::BytesMut;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;
use tokio_util::codec::Decoder;
use tokio_util::io::poll_read_buf;

/// Smallest read: enough for a CONNECT or a few acknowledgements.
const MIN_READ_BYTES: usize = 256;
/// Largest read: a busy publisher's pipeline.
const MAX_READ_BYTES: usize = 64 * 1024;
/// Most packets handed over at once, so one client cannot hold its session for too long.
const MAX_BATCH: usize = 512;

/// Decodes packet batches from whatever it is handed to read from; a decode error ends the input after the
/// packets before it. It does not own the byte stream, so one object can be read and written by its owner.
pub struct PacketReader {
    codec: MqttCodec,
    buf: BytesMut,
    read_size: usize,
    finished: bool,
}

impl PacketReader {
    /// A reader decoding with `codec`.
    pub fn new(codec: MqttCodec) -> Self {
        PacketReader {
            codec,
            buf: BytesMut::new(),
            read_size: MIN_READ_BYTES,
            finished: false,
        }
    }

    fn decode_buffered(
        &mut self,
        more: &mut dyn FnMut(&Packet) -> bool,
    ) -> Vec<Result<Packet, DecodeError>> {
        // Sized once for what the buffer can hold (the smallest packets acknowledgements are, four bytes), so
        // a busy connection's batch is not grown and copied packet by packet.
        let mut batch = Vec::with_capacity((self.buf.len() / 4).clamp(1, MAX_BATCH));
        while batch.len() < MAX_BATCH && !self.finished {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(packet)) => {
                    let go_on = more(&packet);
                    batch.push(Ok(packet));
                    if !go_on {
                        // The rest stays in the buffer, undecoded, for a later batch.
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.finished = true;
                    batch.push(Err(e));
                }
            }
        }
        batch
    }

    /// Grows the next read while reads fill the buffer, shrinks it again when they come in small.
    fn adapt(&mut self, filled: bool, n: usize) {
        if filled {
            self.read_size = (self.read_size * 2).min(MAX_READ_BYTES);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN_READ_BYTES);
        }
    }

    /// The next batch of packets read from `io`; `None` once the input ended (closed, failed, or malformed).
    pub fn poll_batch<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Vec<Result<Packet, DecodeError>>>> {
        self.poll_batch_while(io, cx, &mut |_| true)
    }

    /// Like `poll_batch`, ending the batch after the first packet for which `more` says no (a paced client
    /// over its rate); what follows it waits in the buffer.
    pub fn poll_batch_while<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        more: &mut dyn FnMut(&Packet) -> bool,
    ) -> Poll<Option<Vec<Result<Packet, DecodeError>>>> {
        loop {
            let batch = self.decode_buffered(more);
            if !batch.is_empty() {
                return Poll::Ready(Some(batch));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            self.buf.reserve(self.read_size);
            let room = self.buf.capacity() - self.buf.len();
            match poll_read_buf(Pin::new(io), cx, &mut self.buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(n)) => self.adapt(n == room, n),
                Poll::Pending => {
                    // An idle connection keeps no buffer at all; the next read allocates one.
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::encode_packet;
    use crate::codec::PacketId;

    /// Reads `bytes` with a fresh reader to the end, batch by batch.
    async fn batches(mut bytes: &[u8]) -> Vec<Vec<Result<Packet, DecodeError>>> {
        let mut reader = PacketReader::new(MqttCodec::server(1024));
        let mut batches = Vec::new();
        while let Some(batch) =
            futures::future::poll_fn(|cx| reader.poll_batch(&mut bytes, cx)).await
        {
            batches.push(batch);
        }
        batches
    }

    #[tokio::test]
    async fn pipelined_packets_arrive_in_batches_and_in_order() {
        let mut bytes = BytesMut::new();
        for id in 1..=1000u16 {
            encode_packet(
                &Packet::PubAck(PacketId::new(id).unwrap().into()),
                &mut bytes,
            )
            .unwrap();
        }
        let read = batches(&bytes).await;
        let mut seen = Vec::new();
        let batches = read.len();
        for batch in read {
            for packet in batch {
                match packet.unwrap() {
                    Packet::PubAck(ack) => seen.push(ack.packet_id.get()),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
        assert!(batches < 100, "{batches} batches for 4000 bytes");
    }

    #[tokio::test]
    async fn a_batch_ends_where_its_owner_says_and_the_rest_waits() {
        let mut bytes = BytesMut::new();
        for _ in 0..5 {
            encode_packet(&Packet::PingReq, &mut bytes).unwrap();
        }
        let mut reader = PacketReader::new(MqttCodec::server(1024));
        let mut input: &[u8] = &bytes;
        let mut seen = 0;
        let first = futures::future::poll_fn(|cx| {
            reader.poll_batch_while(&mut input, cx, &mut |_| {
                seen += 1;
                seen < 2
            })
        })
        .await
        .unwrap();
        assert_eq!(
            first.len(),
            2,
            "the packet that said no is the last of its batch"
        );
        let rest = futures::future::poll_fn(|cx| reader.poll_batch(&mut input, cx))
            .await
            .unwrap();
        assert_eq!(rest.len(), 3, "what followed waited in the buffer");
    }

    #[tokio::test]
    async fn a_decode_error_ends_the_stream_after_the_good_packets() {
        let mut bytes = BytesMut::new();
        encode_packet(&Packet::PingReq, &mut bytes).unwrap();
        bytes.extend_from_slice(&[0x00, 0x00]);
        let read = batches(&bytes).await;
        assert_eq!(read.len(), 1, "nothing is read after the error");
        let batch = &read[0];
        assert_eq!(batch.len(), 2);
        assert!(batch[0].is_ok());
        assert!(batch[1].is_err());
    }
}
