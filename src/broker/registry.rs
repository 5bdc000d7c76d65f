//! The router's table of client sessions: which client id owns which slot, who is connected, what they subscribe.
//! Plain data owned by the router actor; knows nothing of the trie or the store.

use super::link::SessionLink;
use super::messages::{ConnId, SlotId};
use crate::codec::{ClientId, QoS};
use crate::topic::TopicFilter;
use std::collections::HashMap;

/// The connection currently attached to a slot.
pub struct Online {
    /// Which connection it is.
    pub conn: ConnId,
    /// Its session actor (or in-process subscriber).
    pub addr: SessionLink,
    /// Whether new messages are handed to it directly; a persistent session catching up reads them from the store.
    pub live: bool,
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
    pub subscriptions: HashMap<TopicFilter, QoS>,
    /// When the last connection ended (milliseconds since the epoch), for session expiry.
    pub offline_since_ms: u64,
}

impl Entry {
    /// The online connection if `conn` is still the one attached.
    pub fn online_as(&mut self, conn: ConnId) -> Option<&mut Online> {
        self.online.as_mut().filter(|o| o.conn == conn)
    }
}

/// Slots by id and by client id.
#[derive(Default)]
pub struct Registry {
    by_client: HashMap<ClientId, SlotId>,
    slots: HashMap<SlotId, Entry>,
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
        self.slots.get(&slot)
    }

    /// An entry by slot, mutable.
    pub fn get_mut(&mut self, slot: SlotId) -> Option<&mut Entry> {
        self.slots.get_mut(&slot)
    }

    /// Creates a slot for a client id that has none.
    pub fn insert(&mut self, entry: Entry) -> SlotId {
        self.next_slot += 1;
        let slot = SlotId(self.next_slot);
        self.by_client.insert(entry.client_id.clone(), slot);
        self.slots.insert(slot, entry);
        slot
    }

    /// Removes a slot entirely.
    pub fn remove(&mut self, slot: SlotId) -> Option<Entry> {
        let entry = self.slots.remove(&slot)?;
        self.by_client.remove(&entry.client_id);
        Some(entry)
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
        self.slots.iter()
    }
}
