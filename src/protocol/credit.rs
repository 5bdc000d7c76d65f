//! Flow control towards one subscriber: the credit the router holds for it. The router hands a session at
//! most as many deliveries as it has credit for; the session gives credit back as it takes them, and holds it
//! back while its queue or its unwritten output is over their bounds. Owns that accounting, nothing else.
//!
//! What the router does without credit is the other half (in `broker::router`): a stored message stays in the
//! store (the session reads it later), a publisher feeding the session is held back, and a session that
//! takes nothing for too long counts as stuck: its QoS 0 messages are then dropped and counted. A session
//! that holds credit back while its client still takes something says so (a grant of 0), now and then.

use std::time::{Duration, Instant};

/// Deliveries the router may hand a session before it hears back.
pub const SESSION_CREDIT: u32 = 1024;

/// Unwritten output above which a session holds its credit back: the client is not reading fast enough.
pub const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;

/// How often a session holding credit back tells the router that its client still takes what it is sent
/// (so the router does not count it as stuck).
pub const PROGRESS_REPORT_EVERY: Duration = Duration::from_millis(250);

/// The credit a session owes the router, and whether it is holding it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    window: u32,
    /// Deliveries taken since credit was last given back.
    owed: u32,
    /// Credit is held back because the session is congested.
    withholding: bool,
    /// When the router last heard that the client takes what it is sent, while credit is held back.
    reported_progress_at: Option<Instant>,
}

impl Credit {
    /// The accounting for a session that granted `window` deliveries when it registered.
    pub fn new(window: u32) -> Self {
        Credit {
            window: window.max(1),
            owed: 0,
            withholding: false,
            reported_progress_at: None,
        }
    }

    /// `n` deliveries from the router were taken (sent, queued or dropped as duplicates).
    pub fn consumed(&mut self, n: usize) {
        self.owed = self
            .owed
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Whether the session is congested, with `queued` messages waiting against a bound of `queue_bound`
    /// and `unwritten` bytes its client has not taken. Once credit is held back it stays back until the queue
    /// is half empty and the client has taken most of its output, so a lagging client does not flip between
    /// the two on every message.
    pub fn congested(&self, queued: usize, queue_bound: usize, unwritten: usize) -> bool {
        let (queue_limit, output_limit) = if self.withholding {
            (queue_bound / 2, OUTPUT_HIGH_WATER_BYTES / 4)
        } else {
            (queue_bound, OUTPUT_HIGH_WATER_BYTES)
        };
        queued >= queue_limit.max(1) || unwritten > output_limit
    }

    /// Whether credit is being held back.
    pub fn is_withholding(&self) -> bool {
        self.withholding
    }

    /// The credit to give back now, if any: nothing while `congested`; otherwise what is owed, once it is a
    /// quarter of the window (so a busy session sends one grant per quarter, not one per delivery) or when the
    /// session stops holding back (the router may have none left).
    pub fn to_grant(&mut self, congested: bool) -> Option<u32> {
        if congested {
            self.withholding = self.owed > 0 || self.withholding;
            return None;
        }
        let resuming = std::mem::take(&mut self.withholding);
        if self.owed == 0 || (!resuming && self.owed < self.window / 4) {
            return None;
        }
        self.reported_progress_at = None;
        Some(std::mem::take(&mut self.owed))
    }

    /// Whether to tell the router now that the client, though it still lags, took something (`progressed`):
    /// at most every `PROGRESS_REPORT_EVERY` while credit is held back. A client that takes nothing is never
    /// reported, and the router counts it as stuck.
    pub fn report_progress(&mut self, progressed: bool, now: Instant) -> bool {
        if !self.withholding || !progressed {
            return false;
        }
        let due = self
            .reported_progress_at
            .is_none_or(|at| now.saturating_duration_since(at) >= PROGRESS_REPORT_EVERY);
        if due {
            self.reported_progress_at = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_goes_back_a_quarter_at_a_time() {
        let mut credit = Credit::new(8);
        credit.consumed(1);
        assert_eq!(credit.to_grant(false), None);
        credit.consumed(1);
        assert_eq!(credit.to_grant(false), Some(2));
        assert_eq!(credit.to_grant(false), None);
    }

    #[test]
    fn a_congested_session_holds_credit_back_and_returns_all_of_it_when_it_drains() {
        let mut credit = Credit::new(1024);
        credit.consumed(1000);
        assert_eq!(credit.to_grant(true), None);
        assert!(credit.is_withholding());
        credit.consumed(24);
        assert_eq!(credit.to_grant(true), None);
        assert_eq!(credit.to_grant(false), Some(1024));
        assert!(!credit.is_withholding());
    }

    #[test]
    fn congestion_ends_well_below_where_it_began() {
        let mut credit = Credit::new(8);
        assert!(!credit.congested(7, 8, 0));
        assert!(credit.congested(8, 8, 0));
        assert!(credit.congested(0, 8, OUTPUT_HIGH_WATER_BYTES + 1));
        credit.consumed(1);
        assert_eq!(credit.to_grant(true), None);
        assert!(credit.congested(4, 8, 0), "half the bound: still held back");
        assert!(credit.congested(0, 8, OUTPUT_HIGH_WATER_BYTES / 2));
        assert!(!credit.congested(3, 8, OUTPUT_HIGH_WATER_BYTES / 4));
    }

    #[test]
    fn progress_is_reported_only_while_holding_back_and_not_too_often() {
        let t0 = Instant::now();
        let mut credit = Credit::new(8);
        assert!(!credit.report_progress(true, t0), "nothing held back");
        credit.consumed(8);
        assert_eq!(credit.to_grant(true), None);
        assert!(
            !credit.report_progress(false, t0),
            "the client took nothing"
        );
        assert!(credit.report_progress(true, t0));
        assert!(!credit.report_progress(true, t0 + PROGRESS_REPORT_EVERY / 2));
        assert!(credit.report_progress(true, t0 + PROGRESS_REPORT_EVERY));
    }

    #[test]
    fn after_holding_back_even_a_little_owed_credit_goes_back() {
        let mut credit = Credit::new(1024);
        credit.consumed(3);
        assert_eq!(credit.to_grant(true), None);
        assert_eq!(credit.to_grant(false), Some(3));
    }
}
