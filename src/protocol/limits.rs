//! The limits that keep one client from taking more than its share (so that the broker is safe to expose): what
//! each limit is called, the checks on client identifiers and topics, the token bucket that paces connections
//! and publishers, and the tally of hits a connection reports in its outputs. Plain values and virtual time:
//! the owner counts, logs and carries out what the checks decide.

use std::time::{Duration, Instant};

/// The per-client limits the connection core applies; 0 turns a limit off where the setting says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest client identifier accepted in CONNECT, in bytes.
    pub max_client_id_len_bytes: usize,
    /// Longest topic name of a PUBLISH or topic filter of a SUBSCRIBE, in bytes.
    pub max_topic_len_bytes: usize,
    /// Most levels (`/`-separated parts) of a topic name or filter.
    pub max_topic_levels: usize,
    /// Most subscriptions a session holds (0: no limit).
    pub max_subscriptions_per_client: usize,
    /// Unwritten bytes for a client above which its QoS 0 messages are dropped; also the most bytes of its
    /// queue a persistent session keeps in memory (the rest is read from the store when there is room).
    pub max_outgoing_buffer_bytes: usize,
    /// Topic plus payload bytes a clean session queues in memory behind its inflight window; beyond them the
    /// overflow policy applies, as beyond `max_queued_messages`.
    pub max_queued_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_id_len_bytes: 256,
            max_topic_len_bytes: 65_535,
            max_topic_levels: 128,
            max_subscriptions_per_client: 0,
            max_outgoing_buffer_bytes: 8 * 1024 * 1024,
            max_queued_bytes: 100 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Whether a topic name or filter is within the length and level limits; the limit it breaks if not.
    pub fn check_topic(&self, topic: &str) -> Result<(), Limit> {
        if topic.len() > self.max_topic_len_bytes {
            return Err(Limit::TopicLength);
        }
        // Levels are separators plus one; counting bytes avoids building the split.
        let levels = topic.bytes().filter(|b| *b == b'/').count() + 1;
        if levels > self.max_topic_levels {
            return Err(Limit::TopicLevels);
        }
        Ok(())
    }

    /// Whether a client identifier is short enough.
    pub fn client_id_ok(&self, client_id: &str) -> bool {
        client_id.len() <= self.max_client_id_len_bytes
    }

    /// Whether one more subscription fits beside `held` (always, without a limit).
    pub fn subscription_fits(&self, held: usize) -> bool {
        self.max_subscriptions_per_client == 0 || held < self.max_subscriptions_per_client
    }
}

/// Every limit that can bite, named as its setting is, for `/metrics` and logs. Declared in the order of
/// `Limit::ALL`, so that a limit's discriminant is its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `max_connections`: one network connection too many.
    Connections,
    /// `max_connections_per_sec_per_ip`: a source address opened connections too fast.
    ConnectionRate,
    /// `connect_timeout_secs`: no complete CONNECT in time.
    ConnectTimeout,
    /// `max_client_id_len_bytes`: CONNECT refused.
    ClientIdLength,
    /// `max_keepalive_secs`: an MQTT 3.1/3.1.1 CONNECT asking for a longer keepalive refused.
    Keepalive,
    /// `max_topic_len_bytes`: a PUBLISH dropped or refused, or a SUBSCRIBE filter refused.
    TopicLength,
    /// `max_topic_levels`: likewise.
    TopicLevels,
    /// `max_subscriptions_per_client`: a SUBSCRIBE filter refused.
    Subscriptions,
    /// `max_publish_rate_msgs_per_sec`: a publisher's socket read more slowly.
    PublishRateMessages,
    /// `max_publish_rate_bytes_per_sec`: likewise.
    PublishRateBytes,
    /// `max_packet_size_bytes`: a packet too large closed the connection.
    PacketSize,
    /// `receive_maximum`: an MQTT 5.0 client had too many QoS 1/2 PUBLISHes unanswered.
    ReceiveMaximum,
    /// `max_outgoing_buffer_bytes`: a QoS 0 message for a client that reads too slowly dropped.
    OutgoingBuffer,
}

impl Limit {
    /// Every limit, in the order `/metrics` lists them.
    pub const ALL: [Limit; 13] = [
        Limit::Connections,
        Limit::ConnectionRate,
        Limit::ConnectTimeout,
        Limit::ClientIdLength,
        Limit::Keepalive,
        Limit::TopicLength,
        Limit::TopicLevels,
        Limit::Subscriptions,
        Limit::PublishRateMessages,
        Limit::PublishRateBytes,
        Limit::PacketSize,
        Limit::ReceiveMaximum,
        Limit::OutgoingBuffer,
    ];

    /// The setting's name, the `limit` label of `harbormq_limit_hits_total`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::ConnectionRate => "max_connections_per_sec_per_ip",
            Limit::ConnectTimeout => "connect_timeout_secs",
            Limit::ClientIdLength => "max_client_id_len_bytes",
            Limit::Keepalive => "max_keepalive_secs",
            Limit::TopicLength => "max_topic_len_bytes",
            Limit::TopicLevels => "max_topic_levels",
            Limit::Subscriptions => "max_subscriptions_per_client",
            Limit::PublishRateMessages => "max_publish_rate_msgs_per_sec",
            Limit::PublishRateBytes => "max_publish_rate_bytes_per_sec",
            Limit::PacketSize => "max_packet_size_bytes",
            Limit::ReceiveMaximum => "receive_maximum",
            Limit::OutgoingBuffer => "max_outgoing_buffer_bytes",
        }
    }

    /// What the broker did when it bit, for the log line.
    pub fn action(self) -> &'static str {
        match self {
            Limit::Connections | Limit::ConnectionRate => "connection closed before CONNECT",
            Limit::ConnectTimeout => "connection closed without a complete CONNECT",
            Limit::ClientIdLength | Limit::Keepalive => "CONNECT refused",
            Limit::TopicLength | Limit::TopicLevels => {
                "PUBLISH dropped or refused, or filter refused"
            }
            Limit::Subscriptions => "SUBSCRIBE filter refused (quota exceeded)",
            Limit::PublishRateMessages | Limit::PublishRateBytes => "socket read more slowly",
            Limit::PacketSize | Limit::ReceiveMaximum => "connection closed",
            Limit::OutgoingBuffer => "QoS 0 message dropped",
        }
    }

    /// Its place in `Limit::ALL` and in a `LimitHits`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How often each limit bit while one input was handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitHits([u32; Limit::ALL.len()]);

impl LimitHits {
    /// Counts one hit of `limit`.
    pub fn hit(&mut self, limit: Limit) {
        self.add(limit, 1);
    }

    /// Counts `n` hits of `limit`.
    pub fn add(&mut self, limit: Limit, n: u32) {
        let slot = &mut self.0[limit.index()];
        *slot = slot.saturating_add(n);
    }

    /// Hits of `limit`.
    pub fn of(&self, limit: Limit) -> u32 {
        self.0[limit.index()]
    }

    /// Whether nothing bit.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// Every limit that bit, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Limit, u32)> + '_ {
        Limit::ALL
            .iter()
            .zip(self.0.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(l, n)| (*l, *n))
    }

    /// Forgets every hit.
    pub fn clear(&mut self) {
        self.0 = Default::default();
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved up (a burst of one second's worth). Taking
/// more than there is leaves a debt that time pays back, so an average rate holds whatever the batch sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens a second (at least one).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        TokenBucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt if there are fewer.
    pub fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// When the bucket is out of debt again; `None` when it is not in debt.
    pub fn ready_at(&self) -> Option<Instant> {
        (self.tokens < 0.0).then(|| self.at + Duration::from_secs_f64(-self.tokens / self.rate))
    }

    /// Whether the bucket is full at `now`: it then remembers nothing a fresh one would not.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.rate
    }
}

/// A publisher's pace: a bucket for messages and one for bytes, each present when its limit is on.
#[derive(Debug, Clone, Default)]
pub struct PublishPace {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl PublishPace {
    /// A pace for `msgs_per_sec` and `bytes_per_sec` (0 turns each off); `None` when both are off.
    pub fn new(msgs_per_sec: u64, bytes_per_sec: u64, now: Instant) -> Option<Self> {
        let messages = (msgs_per_sec > 0).then(|| TokenBucket::new(msgs_per_sec, now));
        let bytes = (bytes_per_sec > 0).then(|| TokenBucket::new(bytes_per_sec, now));
        (messages.is_some() || bytes.is_some()).then_some(PublishPace { messages, bytes })
    }

    /// Charges what one read brought (PUBLISH packets and their topic plus payload bytes).
    pub fn charge(&mut self, messages: u64, bytes: u64, now: Instant) {
        if let Some(b) = &mut self.messages {
            b.charge(messages, now);
        }
        if let Some(b) = &mut self.bytes {
            b.charge(bytes, now);
        }
    }

    /// Until when the client's socket is left unread, and which limit holds it; `None` when reading may go on
    /// at `now`.
    pub fn hold(&self, now: Instant) -> Option<(Instant, Limit)> {
        let m = self
            .messages
            .and_then(|b| b.ready_at())
            .map(|t| (t, Limit::PublishRateMessages));
        let b = self
            .bytes
            .and_then(|b| b.ready_at())
            .map(|t| (t, Limit::PublishRateBytes));
        [m, b]
            .into_iter()
            .flatten()
            .max_by_key(|(t, _)| *t)
            .filter(|(t, _)| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked_for_length_and_levels() {
        let limits = Limits {
            max_topic_len_bytes: 8,
            max_topic_levels: 3,
            ..Limits::default()
        };
        assert_eq!(limits.check_topic("a/b/c"), Ok(()));
        assert_eq!(limits.check_topic("a/b/c/d"), Err(Limit::TopicLevels));
        assert_eq!(limits.check_topic("abcdefghi"), Err(Limit::TopicLength));
        assert_eq!(limits.check_topic("12345678"), Ok(()));
        // Empty levels count: "a//" has three.
        assert_eq!(limits.check_topic("a//"), Ok(()));
        assert_eq!(limits.check_topic("///"), Err(Limit::TopicLevels));
    }

    #[test]
    fn a_subscription_quota_of_zero_is_no_limit() {
        let mut limits = Limits::default();
        assert!(limits.subscription_fits(1_000_000));
        limits.max_subscriptions_per_client = 2;
        assert!(limits.subscription_fits(1));
        assert!(!limits.subscription_fits(2));
    }

    #[test]
    fn a_bucket_allows_a_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0), "the burst is one second's worth");
        assert!(!bucket.try_take(t0 + Duration::from_millis(300)));
        assert!(bucket.try_take(t0 + Duration::from_millis(340)));
        // Saving up stops at one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert!(bucket.is_full(later));
        for _ in 0..3 {
            assert!(bucket.try_take(later));
        }
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn a_debt_is_paid_back_at_the_rate() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(10, 0, t0).unwrap();
        assert_eq!(pace.hold(t0), None);
        // 10 saved up, 30 taken: 20 owed, two seconds at 10 a second.
        pace.charge(30, 1_000_000, t0);
        let (until, limit) = pace.hold(t0).unwrap();
        assert_eq!(limit, Limit::PublishRateMessages);
        assert_eq!(until, t0 + Duration::from_secs(2));
        assert_eq!(pace.hold(until), None, "paid back by then");
    }

    #[test]
    fn the_slower_of_two_paces_holds() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(100, 1000, t0).unwrap();
        pace.charge(1, 5000, t0);
        assert_eq!(
            pace.hold(t0),
            Some((t0 + Duration::from_secs(4), Limit::PublishRateBytes))
        );
        assert!(PublishPace::new(0, 0, t0).is_none());
    }

    #[test]
    fn hits_are_tallied_by_limit() {
        let mut hits = LimitHits::default();
        assert!(hits.is_empty());
        hits.hit(Limit::TopicLength);
        hits.add(Limit::OutgoingBuffer, 5);
        assert_eq!(hits.of(Limit::TopicLength), 1);
        assert_eq!(
            hits.iter().collect::<Vec<_>>(),
            vec![(Limit::TopicLength, 1), (Limit::OutgoingBuffer, 5)]
        );
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
        hits.clear();
        assert!(hits.is_empty());
    }
}
