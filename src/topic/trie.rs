//! The subscription trie: which subscribers' filters match a topic name, found level by level.
//! Owns only the filter index; it does not merge overlapping subscriptions or know what a value means.

use super::{TopicFilter, TopicName};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// Above this many subscribers on one filter, a hash index keeps insert and remove O(1).
const INDEX_ABOVE: usize = 32;
/// Below this many, the index is dropped again (the gap avoids rebuilding it on every change).
const UNINDEX_BELOW: usize = 16;
/// Pending `+` branches a match keeps on the call stack before spilling to the heap.
const INLINE_BRANCHES: usize = 16;

/// Subscriptions indexed by topic filter, for matching published topic names.
///
/// Each filter level is a node; a node has its exact children in a hash map, a separate
/// `+` child, and the subscribers of the filter ending at it and of the filter ending at it
/// followed by `/#`. Nodes live in an arena and are addressed by index, so neither matching
/// nor dropping recurses, however deep a filter is.
pub struct SubscriptionTrie<K, V> {
    nodes: Vec<Node<K, V>>,
    free: Vec<NodeId>,
    len: usize,
}

/// The position of a node in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeId(usize);

const ROOT: NodeId = NodeId(0);

struct Node<K, V> {
    children: Children,
    plus: Option<NodeId>,
    /// Subscribers whose filter ends at this node.
    exact: Subscribers<K, V>,
    /// Subscribers whose filter ends at this node followed by `#`.
    hash: Subscribers<K, V>,
}

/// A node's children by level; most nodes (the last level of a filter) have none and pay one word.
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is the point: one word for the many nodes without children
struct Children(Option<Box<HashMap<Box<str>, NodeId>>>);

impl Children {
    fn get(&self, level: &str) -> Option<&NodeId> {
        self.0.as_ref()?.get(level)
    }

    fn insert(&mut self, level: Box<str>, child: NodeId) {
        self.0.get_or_insert_with(Box::default).insert(level, child);
    }

    fn remove(&mut self, level: &str) -> Option<NodeId> {
        let map = self.0.as_mut()?;
        let removed = map.remove(level);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// One of the children, if any.
    fn any(&self) -> Option<NodeId> {
        self.0.as_ref()?.values().next().copied()
    }
}

/// Which subscriber list of the final node a filter addresses.
#[derive(Clone, Copy)]
enum Slot {
    Exact,
    Hash,
}

/// The edge from a node to one of its children.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Level(&'a str),
    Plus,
}

impl<'a> Edge<'a> {
    fn of(level: &'a str) -> Self {
        if level == "+" {
            Edge::Plus
        } else {
            Edge::Level(level)
        }
    }
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            plus: None,
            exact: Subscribers::default(),
            hash: Subscribers::default(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn child(&self, edge: Edge<'_>) -> Option<NodeId> {
        match edge {
            Edge::Plus => self.plus,
            Edge::Level(level) => self.children.get(level).copied(),
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Subscribers<K, V> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Hash => &mut self.hash,
        }
    }

    fn child_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn has_subscribers(&self) -> bool {
        !self.exact.entries.is_empty() || !self.hash.entries.is_empty()
    }

    fn is_empty(&self) -> bool {
        !self.has_subscribers() && self.child_count() == 0
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        SubscriptionTrie {
            nodes: vec![Node::default()],
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("subscriptions", &self.len)
            .field("nodes", &self.node_count())
            .finish()
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// Creates an empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of subscriptions, counting each (filter, key) pair once.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of live nodes, the root included; an empty trie has one.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Node ids are only ever produced by this arena and freed ids are never handed out
    /// while free, so indexing cannot fail.
    fn node(&self, id: NodeId) -> &Node<K, V> {
        &self.nodes[id.0]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<K, V> {
        &mut self.nodes[id.0]
    }

    fn alloc(&mut self) -> NodeId {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(Node::default());
                NodeId(self.nodes.len() - 1)
            }
        }
    }

    fn child_or_insert(&mut self, parent: NodeId, edge: Edge<'_>) -> NodeId {
        if let Some(child) = self.node(parent).child(edge) {
            return child;
        }
        let child = self.alloc();
        let node = self.node_mut(parent);
        match edge {
            Edge::Plus => node.plus = Some(child),
            Edge::Level(level) => {
                node.children.insert(level.into(), child);
            }
        }
        child
    }

    /// Detaches the child of `parent` along `edge` and frees the chain of nodes below it.
    ///
    /// Only called on a chain in which every node has at most one child, which is what
    /// `remove` leaves behind after taking the last subscription off a branch.
    fn cut(&mut self, parent: NodeId, edge: Edge<'_>) {
        let parent = self.node_mut(parent);
        let mut next = match edge {
            Edge::Plus => parent.plus.take(),
            Edge::Level(level) => parent.children.remove(level),
        };
        while let Some(id) = next {
            let node = std::mem::take(self.node_mut(id));
            next = node.plus.or_else(|| node.children.any());
            self.free.push(id);
        }
    }

    /// Calls `f` once for every subscription whose filter matches `topic`.
    ///
    /// A key subscribed with several overlapping filters is reported once per filter.
    /// Follows [MQTT-4.7.1-2] (`#` also matches the parent level), [MQTT-4.7.1-3] (`+`
    /// matches exactly one, possibly empty, level) and [MQTT-4.7.2-1] (a wildcard in the
    /// first level does not match a topic starting with `$`). Allocates nothing unless
    /// more than a handful of `+` branches are pending at once.
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(&K, &V)) {
        let topic = topic.as_str();
        let system = topic.starts_with('$');
        let mut pending = Branches::new();
        pending.push(Cursor { node: ROOT, at: 0 });
        while let Some(Cursor { mut node, mut at }) = pending.pop() {
            // Follow the exact path inline; only `+` branches wait on the stack.
            while let Some(current) = self.nodes.get(node.0) {
                let Some(rest) = topic.get(at..) else {
                    // Past the last level: the filter ends here, or ends here with "/#".
                    current.exact.for_each(&mut f);
                    current.hash.for_each(&mut f);
                    break;
                };
                let (level, next) = match rest.find('/') {
                    Some(slash) => (rest.get(..slash).unwrap_or(rest), at + slash + 1),
                    None => (rest, topic.len() + 1),
                };
                if !(at == 0 && system) {
                    current.hash.for_each(&mut f);
                    if let Some(plus) = current.plus {
                        pending.push(Cursor {
                            node: plus,
                            at: next,
                        });
                    }
                }
                match current.children.get(level) {
                    Some(&child) => (node, at) = (child, next),
                    None => break,
                }
            }
        }
    }
}

impl<K: Copy + Eq + Hash, V: Copy> SubscriptionTrie<K, V> {
    /// Subscribes `key` to exactly `filter` with `value`, returning the value it replaced.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let mut id = ROOT;
        let mut slot = Slot::Exact;
        for level in filter.levels() {
            if level == "#" {
                slot = Slot::Hash;
                break;
            }
            id = self.child_or_insert(id, Edge::of(level));
        }
        let old = self.node_mut(id).slot_mut(slot).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the subscription of `key` on exactly `filter`, returning its value.
    ///
    /// Nodes left without subscriptions or children are freed, so the trie does not grow
    /// with subscribe/unsubscribe churn.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let mut id = ROOT;
        let mut slot = Slot::Exact;
        // The deepest node on the path that must survive, and the edge below it that may go.
        let mut keep: Option<(NodeId, Edge<'_>)> = None;
        for level in filter.levels() {
            if level == "#" {
                slot = Slot::Hash;
                break;
            }
            let edge = Edge::of(level);
            let node = self.node(id);
            let child = node.child(edge)?;
            if id == ROOT || node.has_subscribers() || node.child_count() > 1 {
                keep = Some((id, edge));
            }
            id = child;
        }
        let node = self.node_mut(id);
        let old = node.slot_mut(slot).remove(key)?;
        let emptied = node.is_empty();
        self.len -= 1;
        if emptied {
            if let Some((parent, edge)) = keep {
                self.cut(parent, edge);
            }
        }
        Some(old)
    }
}

/// The subscribers of one filter, in a vector for fast fan-out, indexed once there are many.
struct Subscribers<K, V> {
    entries: Vec<(K, V)>,
    /// Position of each key in `entries`, kept only while there are more than a few.
    /// Boxed so that the common unindexed list costs one word, not a whole map, per node.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<K, usize>>>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Subscribers {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K, V> Subscribers<K, V> {
    fn for_each(&self, f: &mut impl FnMut(&K, &V)) {
        for (key, value) in &self.entries {
            f(key, value);
        }
    }
}

impl<K: Copy + Eq + Hash, V: Copy> Subscribers<K, V> {
    fn position(&self, key: &K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(slot) = self.position(&key).and_then(|at| self.entries.get_mut(at)) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        if self.entries.len() < 4 {
            // Most filters have one subscriber or a few: an exact-size list, not a doubling one.
            self.entries.reserve_exact(1);
        }
        self.entries.push((key, value));
        let at = self.entries.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(key, at);
            }
            None if self.entries.len() > INDEX_ABOVE => {
                let index = self.entries.iter().enumerate().map(|(i, (k, _))| (*k, i));
                self.index = Some(Box::new(index.collect()));
            }
            None => {}
        }
        None
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.position(key)?;
        if at >= self.entries.len() {
            return None;
        }
        let (_, old) = self.entries.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(key);
            if let Some((moved, _)) = self.entries.get(at) {
                index.insert(*moved, at);
            }
            if self.entries.len() < UNINDEX_BELOW {
                self.index = None;
            }
        }
        if self.entries.is_empty() {
            // Give back the buffer: a node can outlive its subscribers when it has children.
            self.entries = Vec::new();
        }
        Some(old)
    }
}

/// A place in a match walk: a node, and the byte offset of the topic level to match below it
/// (one past the topic's end once every level is consumed).
#[derive(Clone, Copy)]
struct Cursor {
    node: NodeId,
    at: usize,
}

/// The walk's stack of pending branches: inline for the usual few, on the heap beyond that.
struct Branches {
    inline: [Cursor; INLINE_BRANCHES],
    len: usize,
    spill: Vec<Cursor>,
}

impl Branches {
    fn new() -> Self {
        Branches {
            inline: [Cursor { node: ROOT, at: 0 }; INLINE_BRANCHES],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, cursor: Cursor) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = cursor;
                self.len += 1;
            }
            // The spill only fills while the inline part is full, so popping it first keeps LIFO order.
            None => self.spill.push(cursor),
        }
    }

    fn pop(&mut self) -> Option<Cursor> {
        if let Some(cursor) = self.spill.pop() {
            return Some(cursor);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s.to_owned()).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    /// A trie with key `i` subscribed to `filters[i]` at value `i`.
    fn trie_of(filters: &[&str]) -> SubscriptionTrie<usize, usize> {
        let mut trie = SubscriptionTrie::new();
        for (i, f) in filters.iter().enumerate() {
            assert_eq!(trie.insert(&filter(f), i, i), None);
        }
        trie
    }

    /// The keys matching `topic`, sorted.
    fn matching(trie: &SubscriptionTrie<usize, usize>, topic: &str) -> Vec<usize> {
        let mut keys = Vec::new();
        trie.for_each_match(&name(topic), |k, _| keys.push(*k));
        keys.sort_unstable();
        keys
    }

    /// The filters among `filters` matching `topic`.
    fn matching_filters<'a>(filters: &[&'a str], topic: &str) -> Vec<&'a str> {
        let trie = trie_of(filters);
        matching(&trie, topic)
            .into_iter()
            .map(|i| filters[i])
            .collect()
    }

    #[test]
    fn multi_level_wildcard_matches_parent_and_descendants() {
        // [MQTT-4.7.1-2]
        let filters = ["sport/#"];
        assert_eq!(matching_filters(&filters, "sport"), ["sport/#"]);
        assert_eq!(matching_filters(&filters, "sport/"), ["sport/#"]);
        assert_eq!(matching_filters(&filters, "sport/tennis/p1"), ["sport/#"]);
        assert!(matching_filters(&filters, "sports").is_empty());
        assert!(matching_filters(&filters, "other/sport").is_empty());
    }

    #[test]
    fn lone_multi_level_wildcard_matches_everything_but_system_topics() {
        // [MQTT-4.7.1-2], [MQTT-4.7.2-1]
        let filters = ["#"];
        for topic in ["a", "/", "a/b/c", "/a", "a//b"] {
            assert_eq!(matching_filters(&filters, topic), ["#"], "{topic}");
        }
        assert!(matching_filters(&filters, "$SYS").is_empty());
        assert!(matching_filters(&filters, "$SYS/broker/uptime").is_empty());
    }

    #[test]
    fn single_level_wildcard_matches_exactly_one_level_even_empty() {
        // [MQTT-4.7.1-3]
        let filters = ["sport/+"];
        assert_eq!(matching_filters(&filters, "sport/tennis"), ["sport/+"]);
        assert_eq!(matching_filters(&filters, "sport/"), ["sport/+"]);
        assert!(matching_filters(&filters, "sport").is_empty());
        assert!(matching_filters(&filters, "sport/tennis/p1").is_empty());
        let filters = ["+", "+/+", "/+", "+/"];
        assert_eq!(matching_filters(&filters, "/finance"), ["+/+", "/+"]);
        assert_eq!(matching_filters(&filters, "finance"), ["+"]);
        assert_eq!(matching_filters(&filters, "a/"), ["+/+", "+/"]);
        assert_eq!(matching_filters(&filters, "/"), ["+/+", "/+", "+/"]);
    }

    #[test]
    fn leading_wildcards_skip_system_topics() {
        // [MQTT-4.7.2-1]
        let filters = ["#", "+/uptime", "+", "$SYS/#", "$SYS/+", "$SYS/uptime"];
        assert_eq!(
            matching_filters(&filters, "$SYS/uptime"),
            ["$SYS/#", "$SYS/+", "$SYS/uptime"]
        );
        assert_eq!(matching_filters(&filters, "$SYS"), ["$SYS/#"]);
        assert_eq!(matching_filters(&filters, "a/uptime"), ["#", "+/uptime"]);
        // Only the first level is special: a "$" further down is an ordinary character.
        assert_eq!(matching_filters(&["a/+", "a/#"], "a/$x"), ["a/+", "a/#"]);
    }

    #[test]
    fn empty_levels_are_levels() {
        let filters = ["/a", "a//b", "a/", "a/+/b", "//", "+/+/+"];
        assert_eq!(matching_filters(&filters, "/a"), ["/a"]);
        assert_eq!(
            matching_filters(&filters, "a//b"),
            ["a//b", "a/+/b", "+/+/+"]
        );
        assert_eq!(matching_filters(&filters, "a/"), ["a/"]);
        assert_eq!(matching_filters(&filters, "//"), ["//", "+/+/+"]);
        assert!(matching_filters(&filters, "a").is_empty());
    }

    #[test]
    fn overlapping_filters_report_a_key_once_per_filter() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a/#"), 7u64, 1u8);
        trie.insert(&filter("a/+"), 7, 2);
        trie.insert(&filter("a/b"), 7, 0);
        let mut seen = Vec::new();
        trie.for_each_match(&name("a/b"), |k, v| seen.push((*k, *v)));
        seen.sort_unstable();
        assert_eq!(seen, [(7, 0), (7, 1), (7, 2)]);
        assert_eq!(trie.len(), 3);
    }

    #[test]
    fn insert_replaces_the_value_of_the_same_key_and_filter() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert(&filter("a/b"), 1u64, 0u8), None);
        assert_eq!(trie.insert(&filter("a/b"), 1, 2), Some(0));
        assert_eq!(trie.insert(&filter("a/b"), 2, 1), None);
        assert_eq!(trie.len(), 2);
        let mut seen = Vec::new();
        trie.for_each_match(&name("a/b"), |k, v| seen.push((*k, *v)));
        seen.sort_unstable();
        assert_eq!(seen, [(1, 2), (2, 1)]);
    }

    #[test]
    fn remove_takes_only_the_named_subscription() {
        let mut trie = trie_of(&["a/b", "a/+", "a/#", "#"]);
        assert_eq!(trie.remove(&filter("a/+"), &1), Some(1));
        assert_eq!(trie.remove(&filter("a/+"), &1), None);
        assert_eq!(trie.remove(&filter("a/b"), &3), None);
        assert_eq!(trie.remove(&filter("x/y"), &0), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(matching(&trie, "a/b"), [0, 2, 3]);
        assert_eq!(trie.remove(&filter("#"), &3), Some(3));
        assert_eq!(matching(&trie, "a/b"), [0, 2]);
    }

    #[test]
    fn removing_everything_prunes_back_to_the_root() {
        let filters = [
            "a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "/", "a//b", "$SYS/x", "+/+/+/+", "a/b/c/#",
        ];
        let mut trie = trie_of(&filters);
        assert!(trie.node_count() > 1);
        // Remove in an order that leaves shared prefixes in place for a while.
        for (i, f) in filters.iter().enumerate().rev() {
            assert_eq!(trie.remove(&filter(f), &i), Some(i), "{f}");
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
        assert!(matching(&trie, "a/b/c").is_empty());
    }

    #[test]
    fn pruning_keeps_branches_still_in_use() {
        let mut trie = trie_of(&["a/b/c/d", "a/b", "a/x/y"]);
        let full = trie.node_count();
        assert_eq!(trie.remove(&filter("a/b/c/d"), &0), Some(0));
        // "c" and "d" go; "a", "b", "x", "y" stay.
        assert_eq!(trie.node_count(), full - 2);
        assert_eq!(matching(&trie, "a/b"), [1]);
        assert_eq!(matching(&trie, "a/x/y"), [2]);
        assert_eq!(trie.remove(&filter("a/b"), &1), Some(1));
        assert_eq!(trie.node_count(), full - 3);
        assert_eq!(trie.remove(&filter("a/x/y"), &2), Some(2));
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn churn_reuses_freed_nodes() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("a/b/c/d/e");
        trie.insert(&f, 1u64, 0u8);
        let arena = trie.nodes.len();
        for _ in 0..100 {
            trie.remove(&f, &1);
            assert_eq!(trie.node_count(), 1);
            trie.insert(&f, 1, 0);
        }
        assert_eq!(trie.nodes.len(), arena);
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("fan/out");
        for key in 0..200u64 {
            assert_eq!(trie.insert(&f, key, 1u8), None);
        }
        assert_eq!(trie.insert(&f, 150, 2), Some(1));
        for key in (0..200u64).filter(|k| k % 3 == 0) {
            assert_eq!(trie.remove(&f, &key), Some(if key == 150 { 2 } else { 1 }));
        }
        let mut seen = Vec::new();
        trie.for_each_match(&name("fan/out"), |k, _| seen.push(*k));
        seen.sort_unstable();
        let expected: Vec<u64> = (0..200).filter(|k| k % 3 != 0).collect();
        assert_eq!(seen, expected);
        for key in expected {
            assert_eq!(trie.remove(&f, &key), Some(1));
        }
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn deep_topics_do_not_recurse() {
        let deep_filter = "/".repeat(20_000);
        let deep_plus = vec!["+"; 20_001].join("/");
        let mut trie = trie_of(&[&deep_filter, &deep_plus, "#"]);
        assert_eq!(matching(&trie, &deep_filter), [0, 1, 2]);
        assert_eq!(trie.remove(&filter(&deep_filter), &0), Some(0));
        assert_eq!(trie.remove(&filter(&deep_plus), &1), Some(1));
        assert_eq!(trie.node_count(), 1);
        drop(trie);
    }

    #[test]
    fn many_pending_branches_spill_correctly() {
        // Every level offers an exact and a "+" branch, so the walk keeps many pending at once.
        let levels = 24;
        let exact = vec!["a"; levels].join("/");
        let mut filters = vec![exact.clone()];
        for i in 0..levels {
            let mut parts = vec!["a"; levels];
            parts[i] = "+";
            filters.push(parts.join("/"));
        }
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let trie = trie_of(&refs);
        assert_eq!(matching(&trie, &exact), (0..=levels).collect::<Vec<_>>());
    }
}
