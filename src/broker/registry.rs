//! The router's table of client sessions: which client id owns which slot, who is connected, what they
//! subscribe, and each connection's flow state. Plain data owned by the router; knows nothing of the trie
//! or the store.

use super::flow::SubscriberFlow;
use super::messages::{ConnId, SlotId, SlotMap};
use super::session::Session;
use crate::codec::ClientId;
use crate::message::{Grant, Message};
use crate::topic::TopicFilter;
use actix::Addr;
use std::collections::HashMap;
use std::sync::Arc;

/// The connection currently attached to a slot.
pub struct Online {
    /// Which connection it is.
    pub conn: ConnId,
    /// Its session actor.
    pub addr: Addr<Session>,
    /// Its credit, and its congestion while it has none.
    pub flow: SubscriberFlow,
}

/// One client's session as the router sees it.
pub struct Entry {
    /// The client identifier.
    pub client_id: ClientId,
    /// Clean session 0: state survives disconnects and is stored.
    pub persistent: bool,
    /// The attached connection, if any.
    pub online: Option<Online>,
    /// Next position in the stored queue (persistent sessions only).
    pub next_seq: u64,
    /// Subscriptions with granted QoS, mirrored in the trie.
    pub subscriptions: Subscriptions,
    /// When the last connection ended (milliseconds since the epoch), for session expiry.
    pub offline_since_ms: u64,
    /// The MQTT 5.0 Session Expiry Interval in seconds; `None` for sessions that use the broker's
    /// `session_expiry_secs`.
    pub session_expiry: Option<u32>,
    /// A will waiting for its delay to pass (MQTT 5.0): when (ms since the epoch) and what.
    pub will: Option<Box<(u64, Arc<Message>)>>,
}

impl Entry {
    /// Whether this offline session has expired at `now_ms`, with `default_expiry` for sessions that have no
    /// interval of their own.
    pub fn expired(&self, now_ms: u64, default_expiry: Option<std::time::Duration>) -> bool {
        if !self.persistent || self.online.is_some() {
            return false;
        }
        let expiry_ms = match self.session_expiry {
            Some(crate::protocol::v5::NEVER_EXPIRES) => return false,
            Some(secs) => u64::from(secs) * 1000,
            None => match default_expiry {
                Some(expiry) => expiry.as_millis() as u64,
                None => return false,
            },
        };
        self.offline_since_ms.saturating_add(expiry_ms) <= now_ms
    }
}

impl Entry {
    /// The online connection if `conn` is still the one attached.
    pub fn online_as(&mut self, conn: ConnId) -> Option<&mut Online> {
        self.online.as_mut().filter(|o| o.conn == conn)
    }
}

/// Subscriptions above which a session's filters are kept in a hash map rather than a list.
const FEW_SUBSCRIPTIONS: usize = 16;

/// A session's subscriptions: a short exact-size list for the usual few (an idle device with one filter
/// pays for one), a hash map for many.
#[derive(Debug)]
pub enum Subscriptions {
    /// Up to `FEW_SUBSCRIPTIONS`, searched in order.
    Few(Vec<(TopicFilter, Grant)>),
    /// More.
    Many(Box<HashMap<TopicFilter, Grant>>),
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions::Few(Vec::new())
    }
}

impl Subscriptions {
    /// Adds or replaces the subscription to `filter`.
    pub fn insert(&mut self, filter: TopicFilter, grant: Grant) {
        let few = match self {
            Subscriptions::Many(many) => {
                many.insert(filter, grant);
                return;
            }
            Subscriptions::Few(few) => few,
        };
        if let Some(existing) = few.iter_mut().find(|(f, _)| *f == filter) {
            existing.1 = grant;
            return;
        }
        if few.len() < FEW_SUBSCRIPTIONS {
            few.reserve_exact(1);
            few.push((filter, grant));
            return;
        }
        let mut many: HashMap<_, _> = std::mem::take(few).into_iter().collect();
        many.insert(filter, grant);
        *self = Subscriptions::Many(Box::new(many));
    }

    /// Whether there is a subscription to `filter`.
    pub fn contains(&self, filter: &TopicFilter) -> bool {
        match self {
            Subscriptions::Many(many) => many.contains_key(filter),
            Subscriptions::Few(few) => few.iter().any(|(f, _)| f == filter),
        }
    }

    /// Removes the subscription to `filter`; whether there was one.
    pub fn remove(&mut self, filter: &TopicFilter) -> bool {
        match self {
            Subscriptions::Many(many) => many.remove(filter).is_some(),
            Subscriptions::Few(few) => match few.iter().position(|(f, _)| f == filter) {
                Some(i) => {
                    few.swap_remove(i);
                    few.shrink_to_fit();
                    true
                }
                None => false,
            },
        }
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        match self {
            Subscriptions::Few(few) => few.len(),
            Subscriptions::Many(many) => many.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every filter with its grant.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&TopicFilter, &Grant)> + '_> {
        match self {
            Subscriptions::Many(many) => Box::new(many.iter()),
            Subscriptions::Few(few) => Box::new(few.iter().map(|(f, q)| (f, q))),
        }
    }

    /// Every filter.
    pub fn filters(&self) -> impl Iterator<Item = &TopicFilter> + '_ {
        self.iter().map(|(f, _)| f)
    }

    /// Removes them all.
    pub fn clear(&mut self) {
        *self = Subscriptions::default();
    }
}

/// Slots by id and by client id.
///
/// Entries are boxed: the table then holds a pointer per slot, and its power-of-two spare room costs 8
/// bytes a slot instead of a whole entry.
#[derive(Default)]
pub struct Registry {
    by_client: HashMap<ClientId, SlotId>,
    slots: SlotMap<Box<Entry>>,
    next_slot: u64,
    next_conn: u64,
}

impl Registry {
    /// The slot of a client id.
    pub fn slot_of(&self, client_id: &ClientId) -> Option<SlotId> {
        self.by_client.get(client_id).copied()
    }

    /// An entry by slot.
    pub fn get(&self, slot: SlotId) -> Option<&Entry> {
        self.slots.get(&slot).map(|e| &**e)
    }

    /// An entry by slot, mutable.
    pub fn get_mut(&mut self, slot: SlotId) -> Option<&mut Entry> {
        self.slots.get_mut(&slot).map(|e| &mut **e)
    }

    /// Creates a slot for a client id that has none.
    pub fn insert(&mut self, entry: Entry) -> SlotId {
        self.next_slot += 1;
        let slot = SlotId(self.next_slot);
        self.by_client.insert(entry.client_id.clone(), slot);
        self.slots.insert(slot, Box::new(entry));
        slot
    }

    /// Removes a slot entirely.
    pub fn remove(&mut self, slot: SlotId) -> Option<Entry> {
        let entry = self.slots.remove(&slot)?;
        self.by_client.remove(&entry.client_id);
        Some(*entry)
    }

    /// A fresh connection id.
    pub fn next_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Number of sessions known.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = (&SlotId, &Entry)> {
        self.slots.iter().map(|(slot, entry)| (slot, &**entry))
    }

    /// Every entry, to change.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = (&SlotId, &mut Entry)> {
        self.slots
            .iter_mut()
            .map(|(slot, entry)| (slot, &mut **entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    #[test]
    fn subscriptions_replace_remove_and_grow_into_a_map() {
        let mut subs = Subscriptions::default();
        subs.insert(filter("a"), crate::codec::QoS::AtMostOnce.into());
        subs.insert(filter("a"), crate::codec::QoS::AtLeastOnce.into());
        assert_eq!(subs.len(), 1);
        assert!(
            matches!(&subs, Subscriptions::Few(few) if few.capacity() == 1),
            "one subscription, one slot"
        );
        for i in 0..40 {
            subs.insert(
                filter(&format!("t/{i}")),
                crate::codec::QoS::AtMostOnce.into(),
            );
        }
        assert_eq!(subs.len(), 41);
        assert!(matches!(subs, Subscriptions::Many(_)));
        assert!(subs.remove(&filter("a")));
        assert!(!subs.remove(&filter("a")));
        assert_eq!(subs.iter().count(), 40);
    }
}
