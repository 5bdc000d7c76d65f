//! The router's side of flow control, the one mechanism there is: credit. Each connected session grants the
//! router credit for deliveries; each publisher holds a few routing credits, one per batch on its way. With
//! credit, a delivery goes to the session. Without, a stored message stays in the store (the session reads it
//! later), and any other message still goes but the router keeps the batch's routing credit until the session
//! grants credit again, so a publisher feeding lagging sessions stops reading once all of its credits are
//! kept. A session whose client takes nothing for `STUCK_AFTER` (it neither grants credit nor reports
//! progress) is stuck: the credits it kept go back, its QoS 0 messages are dropped and counted, and its other
//! messages go on to its queue, whose limit and overflow policy apply, holding nobody back. Plain data owned
//! by the router; the session's half is `protocol::credit`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Routing batches a publisher may have on their way before it stops reading its client.
pub const ROUTE_CREDITS: usize = 4;

/// One routing credit of a publisher; the publisher may read again once it is dropped.
pub type RouteCredit = Arc<OwnedSemaphorePermit>;

/// A publisher's routing credits.
pub fn route_credits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(ROUTE_CREDITS))
}

/// How long a session may stay out of credit, with messages waiting and its client taking nothing, before it
/// counts as stuck. A client that takes anything at all (its socket accepts bytes, it acknowledges) is never
/// stuck, so this only has to outlast a still connection, not a slow one.
pub const STUCK_AFTER: Duration = Duration::from_millis(800);

/// How often the router looks for stuck sessions.
pub const STUCK_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Where a message for a session waits when the session cannot take it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// In the session's stored queue (a persistent session's QoS 1/2, or offline QoS 0).
    Store,
    /// In the session's queue in memory (a clean session's QoS 1/2), which has a limit of its own.
    Queue,
    /// Nowhere: QoS 0 that is not stored.
    Nothing,
}

/// What happens to one delivery for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Hand it over.
    Deliver,
    /// Hand it over beyond the credit, and hold the publisher back until the session grants more.
    Overshoot,
    /// Hand it over beyond the credit of a stuck session without holding anyone back: the session's queue
    /// limit decides what happens to it.
    Push,
    /// A stored message the session has no credit for: it stays in the store.
    Skip,
    /// The session is stuck: the message is dropped and counted.
    Drop,
}

/// A session that ran out of credit, for as long as it stays out.
#[derive(Debug, Default)]
pub struct Congestion {
    /// When the first message beyond the credit had to be handed over anyway.
    since: Option<Instant>,
    stuck: bool,
    /// Stored messages were skipped: the session is told when it grants credit again.
    skipped: bool,
    /// Routing credits kept back because of this session.
    holding: Vec<RouteCredit>,
}

impl Congestion {
    /// Stored messages were skipped while the session was out of credit.
    pub fn skipped(&self) -> bool {
        self.skipped
    }
}

/// One connected session's credit, and its congestion while it has none.
#[derive(Debug)]
pub struct SubscriberFlow {
    credit: u32,
    /// What the session granted when it registered: credit never exceeds it.
    window: u32,
    congestion: Option<Box<Congestion>>,
    /// The session is on the router's list of sessions to look at for being stuck (once, however many
    /// times it runs out of credit before it is looked at).
    listed: bool,
    /// The batch being routed went beyond the credit: the session keeps the batch's routing credit.
    overshot: bool,
}

impl SubscriberFlow {
    /// A session that granted `credit` deliveries when it registered.
    pub fn new(credit: u32) -> Self {
        SubscriberFlow {
            credit,
            window: credit,
            congestion: None,
            listed: false,
            overshot: false,
        }
    }

    /// Decides about one delivery, by where it waits if the session cannot take it now.
    pub fn admit(&mut self, backing: Backing, now: Instant) -> Admit {
        if self.credit > 0 {
            self.credit -= 1;
            return Admit::Deliver;
        }
        let congestion = self.congestion.get_or_insert_with(Box::default);
        match (backing, congestion.stuck) {
            (Backing::Store, _) => {
                congestion.skipped = true;
                Admit::Skip
            }
            (Backing::Nothing, true) => Admit::Drop,
            (Backing::Queue, true) => Admit::Push,
            (_, false) => {
                congestion.since.get_or_insert(now);
                self.overshot = true;
                Admit::Overshoot
            }
        }
    }

    /// Spends one credit if there is any, for a message that is simply not sent without (broker status).
    pub fn try_spend(&mut self) -> bool {
        if self.credit == 0 {
            return false;
        }
        self.credit -= 1;
        true
    }

    /// Whether the batch being routed went beyond the credit (once per batch: the flag is cleared).
    pub fn take_overshot(&mut self) -> bool {
        std::mem::take(&mut self.overshot)
    }

    /// Keeps a routing credit back until this session grants credit again or counts as stuck.
    pub fn hold(&mut self, credit: RouteCredit) {
        let congestion = self.congestion.get_or_insert_with(Box::default);
        congestion.holding.push(credit);
    }

    /// The session, still out of credit, says its client takes what it is sent: not stuck (any more).
    pub fn progress(&mut self, now: Instant) {
        if let Some(congestion) = &mut self.congestion {
            congestion.stuck = false;
            if congestion.since.is_some() {
                congestion.since = Some(now);
            }
        }
    }

    /// The session grants `credit`: its congestion, if any, is over and handed back (its routing credits
    /// go back when it is dropped; skipped messages are to be told to the session).
    ///
    /// The session gives back every delivery it took, those handed over beyond its credit too; the credit is
    /// capped at the registered window so that these do not add up, cycle after cycle, beyond it.
    pub fn grant(&mut self, credit: u32) -> Option<Box<Congestion>> {
        self.credit = self.credit.saturating_add(credit).min(self.window);
        self.congestion.take()
    }

    /// Whether the session is out of credit with a message waiting since before `now - STUCK_AFTER`; if so it
    /// becomes stuck and the routing credits it kept go back.
    pub fn check_stuck(&mut self, now: Instant) -> bool {
        let Some(congestion) = self.congestion.as_mut() else {
            return false;
        };
        let Some(since) = congestion.since else {
            return false;
        };
        if congestion.stuck || now.saturating_duration_since(since) < STUCK_AFTER {
            return false;
        }
        congestion.stuck = true;
        congestion.holding = Vec::new();
        true
    }

    /// Puts the session on the list of those to look at for being stuck; false if it is on it already.
    pub fn list(&mut self) -> bool {
        !std::mem::replace(&mut self.listed, true)
    }

    /// Takes the session off that list.
    pub fn unlist(&mut self) {
        self.listed = false;
    }

    /// Whether the session is out of credit with messages waiting (it may be about to be stuck).
    pub fn is_starving(&self) -> bool {
        self.congestion
            .as_ref()
            .is_some_and(|c| c.since.is_some() && !c.stuck)
    }

    /// Whether the session counts as stuck.
    #[cfg(test)]
    pub fn is_stuck(&self) -> bool {
        self.congestion.as_ref().is_some_and(|c| c.stuck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_spent_then_unstored_messages_overshoot_and_stored_ones_stay_in_the_store() {
        let t0 = Instant::now();
        let mut flow = SubscriberFlow::new(2);
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
        assert_eq!(flow.admit(Backing::Store, t0), Admit::Deliver);
        assert_eq!(flow.admit(Backing::Store, t0), Admit::Skip);
        assert!(!flow.take_overshot(), "a skipped message holds nobody back");
        assert!(
            !flow.is_starving(),
            "a skipped stored message holds nobody back"
        );
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Overshoot);
        assert!(flow.is_starving());
        let congestion = flow.grant(10).unwrap();
        assert!(congestion.skipped());
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
    }

    #[test]
    fn deliveries_beyond_the_credit_do_not_inflate_it_when_given_back() {
        let t0 = Instant::now();
        let mut flow = SubscriberFlow::new(2);
        for _ in 0..2 {
            assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
        }
        for _ in 0..5 {
            assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Overshoot);
        }
        // The session took all 7 and gives them back.
        assert!(flow.grant(7).is_some());
        for _ in 0..2 {
            assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
        }
        assert_eq!(
            flow.admit(Backing::Nothing, t0),
            Admit::Overshoot,
            "still a window of 2"
        );
    }

    #[test]
    fn kept_routing_credits_go_back_when_the_session_grants_credit() {
        let credits = route_credits();
        let mut flow = SubscriberFlow::new(0);
        assert_eq!(
            flow.admit(Backing::Nothing, Instant::now()),
            Admit::Overshoot
        );
        assert!(flow.take_overshot(), "the batch keeps its routing credit");
        assert!(!flow.take_overshot(), "once per batch");
        flow.hold(Arc::new(credits.clone().try_acquire_owned().unwrap()));
        assert_eq!(credits.available_permits(), ROUTE_CREDITS - 1);
        drop(flow.grant(5));
        assert_eq!(credits.available_permits(), ROUTE_CREDITS);
    }

    #[test]
    fn a_session_that_grants_nothing_becomes_stuck_and_gives_back_what_it_kept() {
        let t0 = Instant::now();
        let credits = route_credits();
        let mut flow = SubscriberFlow::new(1);
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Overshoot);
        flow.hold(Arc::new(credits.clone().try_acquire_owned().unwrap()));
        assert!(!flow.check_stuck(t0 + STUCK_AFTER / 2));
        assert!(flow.check_stuck(t0 + STUCK_AFTER));
        assert_eq!(
            credits.available_permits(),
            ROUTE_CREDITS,
            "the publisher goes on"
        );
        assert!(flow.is_stuck());
        assert!(!flow.check_stuck(t0 + STUCK_AFTER * 2), "stuck once");
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Drop);
        assert_eq!(flow.admit(Backing::Store, t0), Admit::Skip);
        assert_eq!(
            flow.admit(Backing::Queue, t0),
            Admit::Push,
            "a clean session's QoS 1/2 go to its queue, holding nobody back"
        );
        assert!(!flow.is_starving());
        // Credit granted again: no longer stuck.
        assert!(flow.grant(1).is_some());
        assert!(!flow.is_stuck());
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Deliver);
    }

    #[test]
    fn a_session_is_listed_for_the_stuck_check_once() {
        let mut flow = SubscriberFlow::new(1);
        assert!(flow.list());
        assert!(!flow.list(), "already on the list");
        flow.unlist();
        assert!(flow.list());
    }

    #[test]
    fn a_session_that_reports_progress_is_not_stuck_however_long_it_lags() {
        let t0 = Instant::now();
        let mut flow = SubscriberFlow::new(0);
        assert_eq!(flow.admit(Backing::Nothing, t0), Admit::Overshoot);
        flow.progress(t0 + STUCK_AFTER / 2);
        assert!(!flow.check_stuck(t0 + STUCK_AFTER));
        assert!(
            flow.is_starving(),
            "still out of credit: its publishers stay held"
        );
        assert!(flow.check_stuck(t0 + STUCK_AFTER / 2 + STUCK_AFTER));
        flow.progress(t0 + STUCK_AFTER * 3);
        assert!(!flow.is_stuck(), "it took something again");
    }
}
