//! Shared subscriptions, `$share/{group}/{filter}` (section 4.8.2): which groups match a topic, who belongs to
//! each, and which member gets the next message. Owned by the router; knows nothing of sessions beyond their
//! slots and whether they can take a message now.

use super::messages::SlotId;
use crate::message::{Grant, ShareGroup};
pub use crate::protocol::share::{is_shared, parse, ShareName};
use crate::topic::{SubscriptionTrie, TopicName};
use std::collections::HashMap;

/// Whether a member can take a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Connected.
    Online,
    /// Not connected, but its session keeps a queue.
    Stored,
    /// Neither: not a candidate.
    Gone,
}

#[derive(Debug)]
struct Group {
    members: Vec<(SlotId, Grant)>,
    /// Where the next round-robin search starts.
    next: usize,
}

/// Every shared subscription group.
#[derive(Default)]
pub struct SharedGroups {
    trie: SubscriptionTrie<ShareGroup, ()>,
    groups: HashMap<ShareGroup, Group>,
    by_name: HashMap<ShareName, ShareGroup>,
    next_id: u64,
}

impl SharedGroups {
    /// Adds (or updates) `slot` as a member of the group of `name`.
    pub fn join(&mut self, name: ShareName, slot: SlotId, grant: Grant) {
        let id = match self.by_name.get(&name) {
            Some(id) => *id,
            None => {
                self.next_id += 1;
                let id = ShareGroup(self.next_id);
                self.trie.insert(&name.filter, id, ());
                self.by_name.insert(name, id);
                self.groups.insert(
                    id,
                    Group {
                        members: Vec::new(),
                        next: 0,
                    },
                );
                id
            }
        };
        if let Some(group) = self.groups.get_mut(&id) {
            match group.members.iter_mut().find(|(s, _)| *s == slot) {
                Some(member) => member.1 = grant,
                None => group.members.push((slot, grant)),
            }
        }
    }

    /// Removes `slot` from the group of `name`; a group left empty is gone. Whether it was a member.
    pub fn leave(&mut self, name: &ShareName, slot: SlotId) -> bool {
        let Some(id) = self.by_name.get(name).copied() else {
            return false;
        };
        let Some(group) = self.groups.get_mut(&id) else {
            return false;
        };
        let before = group.members.len();
        group.members.retain(|(s, _)| *s != slot);
        let left = group.members.len() < before;
        if group.members.is_empty() {
            self.trie.remove(&name.filter, &id);
            self.groups.remove(&id);
            self.by_name.remove(name);
        }
        left
    }

    /// Calls `f` with every group whose filter matches `topic`.
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(ShareGroup)) {
        if self.groups.is_empty() {
            return;
        }
        self.trie.for_each_match(topic, |id, _| f(*id));
    }

    /// The member of `group` to get the next message, round robin: the next connected one, or when none is
    /// connected the next whose session keeps a queue (its queue keeps the group's messages); `except` is
    /// never chosen (a member handing messages back).
    pub fn pick(
        &mut self,
        group: ShareGroup,
        except: Option<SlotId>,
        availability: impl Fn(SlotId) -> Availability,
    ) -> Option<(SlotId, Grant)> {
        let group = self.groups.get_mut(&group)?;
        let n = group.members.len();
        let start = group.next % n.max(1);
        let candidates = (0..n).map(|i| (start + i) % n);
        let choose = |wanted: Availability| {
            candidates.clone().find(|&i| {
                let slot = group.members[i].0;
                Some(slot) != except && availability(slot) == wanted
            })
        };
        let index = choose(Availability::Online).or_else(|| choose(Availability::Stored))?;
        group.next = index + 1;
        Some(group.members[index])
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::topic::TopicFilter;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    fn topic(s: &str) -> TopicName {
        TopicName::new(s.to_owned()).unwrap()
    }

    #[test]
    fn messages_go_round_robin_to_online_members_then_to_stored_ones() {
        let mut groups = SharedGroups::default();
        let name = parse(&filter("$share/g/s/#")).unwrap();
        for slot in [1, 2, 3] {
            groups.join(name.clone(), SlotId(slot), QoS::AtLeastOnce.into());
        }
        let mut matched = Vec::new();
        groups.for_each_match(&topic("s/x"), |g| matched.push(g));
        assert_eq!(matched.len(), 1);
        let g = matched[0];
        let online = |s: SlotId| match s.0 {
            2 => Availability::Stored,
            _ => Availability::Online,
        };
        let picks: Vec<u64> = (0..4)
            .map(|_| groups.pick(g, None, online).unwrap().0 .0)
            .collect();
        assert_eq!(picks, vec![1, 3, 1, 3], "online members in turn");
        assert_eq!(
            groups.pick(g, None, |_| Availability::Stored).map(|m| m.0),
            Some(SlotId(1)),
            "with nobody online, a stored member"
        );
        assert_eq!(groups.pick(g, None, |_| Availability::Gone), None);
        assert_eq!(
            groups.pick(g, Some(SlotId(3)), online).map(|m| m.0),
            Some(SlotId(1)),
            "never the member handing back"
        );
    }

    #[test]
    fn the_last_member_leaving_ends_the_group() {
        let mut groups = SharedGroups::default();
        let name = parse(&filter("$share/g/t")).unwrap();
        groups.join(name.clone(), SlotId(1), QoS::AtMostOnce.into());
        groups.join(name.clone(), SlotId(2), QoS::AtMostOnce.into());
        assert!(groups.leave(&name, SlotId(1)));
        assert!(!groups.leave(&name, SlotId(1)));
        assert_eq!(groups.len(), 1);
        assert!(groups.leave(&name, SlotId(2)));
        assert!(groups.is_empty());
        let mut matched = 0;
        groups.for_each_match(&topic("t"), |_| matched += 1);
        assert_eq!(matched, 0);
    }
}
