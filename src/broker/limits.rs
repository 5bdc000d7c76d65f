//! What the broker keeps across sessions for the client limits: a counter per limit for `/metrics`, the
//! warnings that say a limit bit (at most one line a second per limit, with how many hits it stands for), and
//! the per-address connection rate, a fixed-size table so that a flood from many addresses cannot grow it.

use super::session::SessionPeers;
use crate::protocol::limits::TokenBucket;
use crate::protocol::{Limit, LimitHits};
use std::collections::hash_map::RandomState;
use std::fmt::Display;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Slots of the per-address table: about 48 bytes each, allocated when the limit is first used.
const RATE_SLOTS: usize = 8192;

/// Least time between two warnings about the same limit, in milliseconds.
const LOG_INTERVAL_MS: u64 = 1000;

/// Hits of every limit since start-up, and when each was last logged.
#[derive(Debug, Default)]
pub struct LimitCounters {
    hits: [AtomicU64; Limit::ALL.len()],
    /// Milliseconds since `started` of the last warning, per limit (0: never).
    logged_ms: [AtomicU64; Limit::ALL.len()],
    /// Hits since the last warning, per limit.
    unlogged: [AtomicU64; Limit::ALL.len()],
    started: OnceInstant,
    /// The per-address connection rate table.
    per_ip: PerIpRate,
}

/// An `Instant` fixed on first use, so `LimitCounters` can be `Default`.
#[derive(Debug, Default)]
struct OnceInstant(std::sync::OnceLock<Instant>);

impl OnceInstant {
    fn elapsed_ms(&self) -> u64 {
        let at = self.0.get_or_init(Instant::now);
        // Starts at 1, so that 0 can mean "never logged".
        u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }
}

impl LimitCounters {
    /// Counts `n` hits of `limit` by `who` (client and peer, or the peer alone) and warns about it, at most
    /// once a second per limit.
    pub fn record(&self, limit: Limit, n: u32, who: &dyn Display) {
        let i = limit.index();
        self.hits[i].fetch_add(u64::from(n), Relaxed);
        let unlogged = self.unlogged[i].fetch_add(u64::from(n), Relaxed) + u64::from(n);
        let now = self.started.elapsed_ms();
        let last = self.logged_ms[i].load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_INTERVAL_MS;
        if due
            && self.logged_ms[i]
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.unlogged[i].fetch_sub(unlogged, Relaxed);
            log::warn!(
                "{who}: {} reached, {} ({} hit(s) of this limit since its last line)",
                limit.name(),
                limit.action(),
                unlogged
            );
        }
    }

    /// Counts and logs every hit of one input.
    pub fn record_all(&self, hits: &LimitHits, who: &dyn Display) {
        for (limit, n) in hits.iter() {
            self.record(limit, n, who);
        }
    }

    /// Hits of `limit` since start-up.
    pub fn hits(&self, limit: Limit) -> u64 {
        self.hits[limit.index()].load(Relaxed)
    }

    /// Every limit with its hits, in `Limit::ALL` order, for `/metrics`.
    pub fn snapshot(&self) -> Vec<(Limit, u64)> {
        Limit::ALL.iter().map(|l| (*l, self.hits(*l))).collect()
    }
}

/// One slot of the per-address table: the address it holds, and that address's bucket.
type Slot = Option<(IpAddr, TokenBucket)>;

/// Connection rate per source address: a token bucket per address in a direct-mapped table of `RATE_SLOTS`.
/// An address whose slot another one holds takes it over once that one's bucket is full again (it has been
/// idle); while the holder is busy, the newcomer is let through untracked. Memory stays fixed, a busy
/// address keeps its debt whatever else hashes to its slot (so two colliding addresses cannot reset each
/// other's buckets), and a flood from more addresses than slots is at worst let through (`max_connections`
/// still bounds it) rather than refusing addresses that did nothing.
#[derive(Debug, Default)]
struct PerIpRate {
    table: Mutex<Option<Vec<Slot>>>,
    hasher: RandomState,
}

impl PerIpRate {
    /// Whether one more connection from `ip` fits in `rate` a second.
    fn admit(&self, ip: IpAddr, rate: u32, now: Instant) -> bool {
        let slot = (self.hasher.hash_one(ip) as usize) % RATE_SLOTS;
        // A poisoned lock only means another accept panicked mid-update; the table is still usable.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let slots = table.get_or_insert_with(|| vec![None; RATE_SLOTS]);
        let bucket = match &mut slots[slot] {
            Some((held, bucket)) if *held == ip => bucket,
            Some((_, bucket)) if !bucket.is_full(now) => return true,
            other => {
                *other = Some((ip, TokenBucket::new(u64::from(rate), now)));
                match other {
                    Some((_, bucket)) => bucket,
                    None => return true,
                }
            }
        };
        bucket.try_take(now)
    }
}

impl SessionPeers {
    /// Whether a new connection from `ip` is within `max_connections_per_sec_per_ip`; one that is not is
    /// counted and logged, and its transport closes it before anything else is done for it.
    pub fn admits_from(&self, ip: IpAddr) -> bool {
        let rate = self.settings.max_connections_per_sec_per_ip;
        if rate == 0 {
            return true;
        }
        let counters = &self.counters.limits;
        if counters.per_ip.admit(ip, rate, Instant::now()) {
            return true;
        }
        counters.record(
            Limit::ConnectionRate,
            1,
            &format_args!("connection from {ip}"),
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_address_gets_its_own_rate() {
        let rate = PerIpRate::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(rate.admit(a, 2, t0));
        assert!(rate.admit(a, 2, t0));
        assert!(!rate.admit(a, 2, t0), "a third in the same second");
        assert!(rate.admit(b, 2, t0), "another address is not held back");
        assert!(rate.admit(a, 2, t0 + Duration::from_millis(600)));
    }

    #[test]
    fn an_address_sharing_a_busy_slot_cannot_reset_its_holder() {
        let rate = PerIpRate::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slot_of = |ip: IpAddr| (rate.hasher.hash_one(ip) as usize) % RATE_SLOTS;
        let b = (2..u32::MAX)
            .map(|n| IpAddr::from(n.to_be_bytes()))
            .find(|ip| *ip != a && slot_of(*ip) == slot_of(a))
            .expect("some address shares a's slot");
        assert!(rate.admit(a, 1, t0));
        assert!(!rate.admit(a, 1, t0), "a is over its rate");
        // b hashes to a's slot while a is busy: let through untracked, and a keeps its debt.
        assert!(rate.admit(b, 1, t0));
        assert!(rate.admit(b, 1, t0));
        assert!(!rate.admit(a, 1, t0), "a is still over its rate");
        // Once a has been idle for a second its slot is free for b.
        let later = t0 + Duration::from_secs(2);
        assert!(rate.admit(b, 1, later));
        assert!(!rate.admit(b, 1, later), "b is tracked now");
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_table_at_its_size() {
        let rate = PerIpRate::default();
        let t0 = Instant::now();
        for n in 0..100_000u32 {
            let ip = IpAddr::from(n.to_be_bytes());
            assert!(rate.admit(ip, 1, t0), "a first connection is let in");
        }
        let table = rate.table.lock().unwrap();
        assert_eq!(table.as_ref().unwrap().len(), RATE_SLOTS);
    }

    #[test]
    fn hits_are_counted_and_warnings_limited() {
        let counters = LimitCounters::default();
        for _ in 0..1000 {
            counters.record(Limit::TopicLength, 1, &"client x from 127.0.0.1:1");
        }
        assert_eq!(counters.hits(Limit::TopicLength), 1000);
        // The first hit was logged at once; the 999 after it within the second wait for the next line.
        assert_eq!(
            counters.unlogged[Limit::TopicLength.index()].load(Relaxed),
            999
        );
        assert_eq!(counters.hits(Limit::Subscriptions), 0);
    }
}
