//! Loss, duplicate and ordering accounting for one subscriber, from the stamps it receives.
//! Owns the per-publisher bitsets of seen sequence numbers; does no I/O and no timing.

use serde::Serialize;

/// How one received message relates to what was already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy of an expected message.
    New,
    /// A message already seen.
    Duplicate,
    /// A stamp naming a publisher or sequence number outside the plan.
    Unexpected,
}

/// Which sequence numbers of each publisher one subscriber has seen.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    seen: Vec<Vec<u64>>,
    expected: Vec<u32>,
    next_seq: Vec<u32>,
    counts: Delivery,
}

/// Delivery counts of one subscriber, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Messages the plan says should arrive.
    pub expected: u64,
    /// Messages that arrived, duplicates included.
    pub received: u64,
    /// Distinct expected messages that arrived.
    pub unique: u64,
    /// Copies of messages that had already arrived.
    pub duplicates: u64,
    /// Expected messages that never arrived.
    pub missing: u64,
    /// New messages with a lower sequence number than one already seen from the same publisher.
    pub out_of_order: u64,
    /// Messages whose stamp was outside the plan (foreign traffic or a corrupted payload).
    pub unexpected: u64,
}

impl Delivery {
    /// Adds another subscriber's counts to these.
    pub fn add(&mut self, other: &Delivery) {
        self.expected += other.expected;
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.missing += other.missing;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
    }
}

impl SeqTracker {
    /// A tracker expecting `expected[p]` messages (sequence numbers `0..expected[p]`) from publisher `p`.
    pub fn new(expected: &[u32]) -> SeqTracker {
        let seen = expected
            .iter()
            .map(|&n| vec![0u64; (n as usize).div_ceil(64)])
            .collect();
        SeqTracker {
            seen,
            expected: expected.to_vec(),
            next_seq: vec![0; expected.len()],
            counts: Delivery {
                expected: expected.iter().map(|&n| u64::from(n)).sum(),
                ..Delivery::default()
            },
        }
    }

    /// A tracker expecting `messages` from each of `publishers` publishers.
    pub fn uniform(publishers: u32, messages: u32) -> SeqTracker {
        SeqTracker::new(&vec![messages; publishers as usize])
    }

    /// Records one received message.
    pub fn record(&mut self, publisher: u32, seq: u32) -> Arrival {
        self.counts.received += 1;
        let p = publisher as usize;
        let in_plan = self.expected.get(p).is_some_and(|&n| seq < n);
        let Some(words) = self.seen.get_mut(p).filter(|_| in_plan) else {
            self.counts.unexpected += 1;
            return Arrival::Unexpected;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let Some(w) = words.get_mut(word) else {
            self.counts.unexpected += 1;
            return Arrival::Unexpected;
        };
        if *w & bit != 0 {
            self.counts.duplicates += 1;
            return Arrival::Duplicate;
        }
        *w |= bit;
        self.counts.unique += 1;
        if let Some(next) = self.next_seq.get_mut(p) {
            if seq < *next {
                self.counts.out_of_order += 1;
            } else {
                *next = seq + 1;
            }
        }
        Arrival::New
    }

    /// Whether every expected message has arrived.
    pub fn is_complete(&self) -> bool {
        self.counts.unique == self.counts.expected
    }

    /// The counts so far, with `missing` computed against the plan.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            missing: self.counts.expected - self.counts.unique,
            ..self.counts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_new_duplicate_and_missing() {
        let mut t = SeqTracker::uniform(2, 100);
        assert_eq!(t.record(0, 0), Arrival::New);
        assert_eq!(t.record(0, 99), Arrival::New);
        assert_eq!(t.record(1, 64), Arrival::New);
        assert_eq!(t.record(0, 0), Arrival::Duplicate);
        let d = t.delivery();
        assert_eq!(d.expected, 200);
        assert_eq!(d.received, 4);
        assert_eq!(d.unique, 3);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.missing, 197);
        assert!(!t.is_complete());
    }

    #[test]
    fn complete_when_every_sequence_number_arrived_once_or_more() {
        let mut t = SeqTracker::new(&[3, 1]);
        for seq in [2, 0, 1, 1] {
            t.record(0, seq);
        }
        assert!(!t.is_complete());
        t.record(1, 0);
        assert!(t.is_complete());
        assert_eq!(t.delivery().missing, 0);
        assert_eq!(t.delivery().duplicates, 1);
    }

    #[test]
    fn stamps_outside_the_plan_are_unexpected_not_counted_as_delivered() {
        let mut t = SeqTracker::uniform(1, 10);
        assert_eq!(t.record(1, 0), Arrival::Unexpected);
        assert_eq!(t.record(0, 10), Arrival::Unexpected);
        assert_eq!(t.record(u32::MAX, u32::MAX), Arrival::Unexpected);
        let d = t.delivery();
        assert_eq!((d.unique, d.unexpected, d.missing), (0, 3, 10));
    }

    #[test]
    fn out_of_order_is_counted_per_publisher() {
        let mut t = SeqTracker::uniform(2, 10);
        t.record(0, 0);
        t.record(1, 5);
        t.record(0, 1);
        t.record(1, 3);
        t.record(0, 2);
        assert_eq!(t.delivery().out_of_order, 1);
    }

    #[test]
    fn deliveries_sum() {
        let mut a = SeqTracker::uniform(1, 4);
        let mut b = SeqTracker::uniform(1, 4);
        a.record(0, 0);
        b.record(0, 0);
        b.record(0, 0);
        let mut total = a.delivery();
        total.add(&b.delivery());
        assert_eq!(total.expected, 8);
        assert_eq!(total.unique, 2);
        assert_eq!(total.duplicates, 1);
        assert_eq!(total.missing, 6);
    }
}
