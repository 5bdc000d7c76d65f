//! The subscription trie (being written).

/// Subscriptions indexed by topic filter.
pub struct SubscriptionTrie<K, V> {
    _entries: Vec<(K, V)>,
}
