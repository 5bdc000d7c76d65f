//! The benchmark payload: who sent a message, its sequence number and when it was sent.
//! Owns the byte layout of that stamp; knows nothing of MQTT framing.

/// Bytes at the start of every payload taken by the stamp; the rest is filler.
pub const STAMP_LEN: usize = 16;

/// What a benchmark message carries so a receiver can count loss, duplicates and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher that sent the message.
    pub publisher: u32,
    /// Sequence number of the message within its publisher, from 0.
    pub seq: u32,
    /// Send time in nanoseconds since the run's clock origin.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the first `STAMP_LEN` bytes of `payload`; a shorter payload is left untouched.
    pub fn write(&self, payload: &mut [u8]) {
        if let Some(head) = payload.get_mut(..STAMP_LEN) {
            head[0..4].copy_from_slice(&self.publisher.to_be_bytes());
            head[4..8].copy_from_slice(&self.seq.to_be_bytes());
            head[8..16].copy_from_slice(&self.sent_ns.to_be_bytes());
        }
    }

    /// Reads the stamp from the start of `payload`, or `None` when the payload is too short to hold one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head = payload.get(..STAMP_LEN)?;
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&head[at..at + 4]);
            u32::from_be_bytes(b)
        };
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&head[8..16]);
        Some(Stamp {
            publisher: u32_at(0),
            seq: u32_at(4),
            sent_ns: u64::from_be_bytes(ts),
        })
    }
}

/// Fills a payload of `len` bytes with a recognisable pattern behind a zeroed stamp.
pub fn filler(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i < STAMP_LEN {
                0
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_a_payload() {
        let mut payload = filler(64);
        let stamp = Stamp {
            publisher: 7,
            seq: 0xdead_beef,
            sent_ns: 0x0102_0304_0506_0708,
        };
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert_eq!(&payload[STAMP_LEN..STAMP_LEN + 3], b"qrs");
    }

    #[test]
    fn stamp_is_big_endian_at_fixed_offsets() {
        let mut payload = [0u8; STAMP_LEN];
        Stamp {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        }
        .write(&mut payload);
        assert_eq!(payload, [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn short_payload_has_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; STAMP_LEN - 1]), None);
        let mut short = [9u8; 4];
        Stamp {
            publisher: 1,
            seq: 1,
            sent_ns: 1,
        }
        .write(&mut short);
        assert_eq!(short, [9u8; 4]);
    }
}
