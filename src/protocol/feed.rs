//! Where a persistent session's stored messages come from: live from the router, in queue order, or read
//! back from its stored queue in pages while it catches up. Owns the queue positions that decide which.
//!
//! Every stored message has a position (`seq`) in the session's queue. The router hands stored messages to
//! a connected session while it has credit and skips them (they stay in the store) when it has none. The
//! session takes them strictly in order: a gap means it missed some, and it reads them from the store.

/// How stored messages reach the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// From the router, as they are queued: the next live one is `cursor + 1`.
    Live,
    /// From the store, a page at a time; stored messages arriving live meanwhile are dropped (the store
    /// has them).
    CatchingUp {
        /// A page read is on its way; the highest position known to exist when it was asked for.
        reading: Option<u64>,
    },
}

/// What to do with a stored message that arrived live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveVerdict {
    /// The next one in order: take it.
    Take,
    /// Already taken (or read from the store): drop it.
    Duplicate,
    /// The session is catching up or missed some: drop it; it is read from the store later.
    Later,
}

/// The stored-queue positions of one persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFeed {
    feed: Feed,
    /// Every position up to here was taken by the session (or no longer exists).
    cursor: u64,
    /// The highest position the session knows to have been queued.
    known_head: u64,
}

impl StoredFeed {
    /// A session resuming with `head` as the highest position queued so far: it starts by reading the store.
    pub fn resume(head: u64) -> Self {
        StoredFeed {
            feed: Feed::CatchingUp { reading: None },
            cursor: 0,
            known_head: head,
        }
    }

    /// The current state.
    #[cfg(test)]
    pub fn feed(&self) -> Feed {
        self.feed
    }

    /// Every position up to this one was taken.
    #[cfg(test)]
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// A stored message at `seq` arrived live; `has_room` says whether the session can take it now.
    pub fn on_live(&mut self, seq: u64, has_room: bool) -> LiveVerdict {
        self.known_head = self.known_head.max(seq);
        if seq <= self.cursor {
            return LiveVerdict::Duplicate;
        }
        if self.feed == Feed::Live && seq == self.cursor + 1 && has_room {
            self.cursor = seq;
            return LiveVerdict::Take;
        }
        if self.feed == Feed::Live {
            self.feed = Feed::CatchingUp { reading: None };
        }
        LiveVerdict::Later
    }

    /// The router skipped stored messages up to `head` (the session had no credit): they are read from the store.
    pub fn on_behind(&mut self, head: u64) {
        self.known_head = self.known_head.max(head);
        if self.feed == Feed::Live && self.known_head > self.cursor {
            self.feed = Feed::CatchingUp { reading: None };
        }
    }

    /// The position to read after, when a page should be read now (catching up, none in flight, room for it);
    /// marks the read as in flight.
    pub fn next_read(&mut self, has_room: bool) -> Option<u64> {
        match self.feed {
            Feed::CatchingUp { reading: None } if has_room => {
                self.feed = Feed::CatchingUp {
                    reading: Some(self.known_head),
                };
                Some(self.cursor)
            }
            _ => None,
        }
    }

    /// Whether a page entry at `seq` is new to the session; advances the cursor past it.
    pub fn take_page_entry(&mut self, seq: u64) -> bool {
        if seq <= self.cursor {
            return false;
        }
        self.cursor = seq;
        self.known_head = self.known_head.max(seq);
        true
    }

    /// A page read finished; `complete` when it returned fewer entries than asked, so the store held nothing
    /// more at the time. Goes live once every known position is taken.
    pub fn page_done(&mut self, complete: bool) {
        let Feed::CatchingUp {
            reading: Some(head_at_request),
        } = self.feed
        else {
            return;
        };
        if complete {
            // Everything queued before the read was asked for is in the page or was removed since (acknowledged
            // earlier, or dropped by the queue limit): none of it can come later.
            self.cursor = self.cursor.max(head_at_request);
        }
        self.feed = if complete && self.cursor >= self.known_head {
            Feed::Live
        } else {
            Feed::CatchingUp { reading: None }
        };
    }

    /// A page read failed: the next read starts again from the cursor.
    pub fn read_failed(&mut self) {
        if let Feed::CatchingUp { reading: Some(_) } = self.feed {
            self.feed = Feed::CatchingUp { reading: None };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_session_reads_until_it_has_everything_then_goes_live() {
        let mut feed = StoredFeed::resume(3);
        assert_eq!(feed.next_read(true), Some(0));
        assert_eq!(feed.next_read(true), None, "one read at a time");
        for seq in 1..=3 {
            assert!(feed.take_page_entry(seq));
        }
        feed.page_done(true);
        assert_eq!(feed.feed(), Feed::Live);
        assert_eq!(feed.on_live(4, true), LiveVerdict::Take);
        assert_eq!(feed.on_live(4, true), LiveVerdict::Duplicate);
    }

    #[test]
    fn a_gap_sends_the_session_to_the_store_for_what_it_missed() {
        let mut feed = StoredFeed::resume(0);
        assert_eq!(feed.next_read(true), Some(0));
        feed.page_done(true);
        assert_eq!(feed.feed(), Feed::Live);
        assert_eq!(feed.on_live(1, true), LiveVerdict::Take);
        assert_eq!(feed.on_live(3, true), LiveVerdict::Later);
        assert_eq!(feed.next_read(true), Some(1));
        assert!(feed.take_page_entry(2));
        assert!(feed.take_page_entry(3));
        feed.page_done(true);
        assert_eq!(feed.feed(), Feed::Live);
        assert_eq!(feed.on_live(4, true), LiveVerdict::Take);
    }

    #[test]
    fn live_messages_dropped_during_a_read_are_read_again() {
        let mut feed = StoredFeed::resume(2);
        assert_eq!(feed.next_read(true), Some(0));
        // Seq 3 arrives live while the read (asked for when 2 was the head) is on its way: dropped.
        assert_eq!(feed.on_live(3, true), LiveVerdict::Later);
        assert!(feed.take_page_entry(1));
        assert!(feed.take_page_entry(2));
        feed.page_done(true);
        assert_eq!(feed.feed(), Feed::CatchingUp { reading: None });
        assert_eq!(feed.next_read(true), Some(2));
        assert!(feed.take_page_entry(3));
        feed.page_done(true);
        assert_eq!(feed.feed(), Feed::Live);
    }

    #[test]
    fn positions_removed_from_the_store_do_not_stall_the_catch_up() {
        // Positions 1..=5 were queued, then 4 and 5 were dropped by the queue limit before the read ran.
        let mut feed = StoredFeed::resume(5);
        assert_eq!(feed.next_read(true), Some(0));
        for seq in 1..=3 {
            assert!(feed.take_page_entry(seq));
        }
        feed.page_done(true);
        assert_eq!(feed.cursor(), 5);
        assert_eq!(feed.feed(), Feed::Live);
    }

    #[test]
    fn a_full_page_is_followed_by_the_next_one() {
        let mut feed = StoredFeed::resume(10);
        assert_eq!(feed.next_read(true), Some(0));
        for seq in 1..=4 {
            feed.take_page_entry(seq);
        }
        feed.page_done(false);
        assert_eq!(feed.next_read(false), None, "no room, no read");
        assert_eq!(feed.next_read(true), Some(4));
    }

    #[test]
    fn the_router_skipping_messages_sends_a_live_session_to_the_store() {
        let mut feed = StoredFeed::resume(0);
        feed.next_read(true);
        feed.page_done(true);
        feed.on_behind(0);
        assert_eq!(feed.feed(), Feed::Live, "nothing was skipped");
        feed.on_behind(7);
        assert_eq!(feed.next_read(true), Some(0));
    }

    #[test]
    fn no_room_for_the_next_live_message_means_reading_it_later() {
        let mut feed = StoredFeed::resume(0);
        feed.next_read(true);
        feed.page_done(true);
        assert_eq!(feed.on_live(1, false), LiveVerdict::Later);
        assert_eq!(feed.next_read(true), Some(0));
        feed.read_failed();
        assert_eq!(
            feed.next_read(true),
            Some(0),
            "a failed read is tried again"
        );
    }
}
