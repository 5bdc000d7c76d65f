//! The subscription trie checked against a brute-force scan with `topic::matches` over every
//! live subscription, on random filters, topics, inserts and removals from a small alphabet;
//! and a check, through a counting allocator, that matching does not allocate.

use harbormq::topic::{matches, SubscriptionTrie, TopicFilter, TopicName};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_during;

#[test]
fn matching_does_not_allocate() {
    let mut trie = SubscriptionTrie::new();
    let mut model = BTreeMap::new();
    let filters = [
        "#", "+", "a/#", "a/+", "+/b", "+/+", "a/b", "a/b/#", "/+", "+/+/+", "$SYS/#",
    ];
    for (key, f) in filters.iter().enumerate() {
        let filter = TopicFilter::new(*f).unwrap();
        trie.insert(&filter, key as u8, 1);
        model.insert((filter, key as u8), 1);
    }
    // Enough subscribers on one filter for its list to be indexed.
    let shared = TopicFilter::new("a/b").unwrap();
    for key in 100..150 {
        trie.insert(&shared, key, 2);
        model.insert((shared.clone(), key), 2);
    }
    let topics: Vec<TopicName> = ["a/b", "a", "/", "a/b/c", "$SYS/x", "x/y/z"]
        .into_iter()
        .map(|t| TopicName::new(t).unwrap())
        .collect();
    let expected: usize = topics.iter().map(|t| brute_force(&model, t).len()).sum();
    let mut matched = 0;
    let allocations = allocations_during(|| {
        for topic in &topics {
            trie.for_each_match(topic, |_, _| matched += 1);
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(matched, expected);
}

/// Topic levels; "$SYS" exercises [MQTT-4.7.2-1], "" the empty levels of [MQTT-4.7.1-3].
const LEVELS: [&str; 4] = ["", "$SYS", "a", "b"];

fn topic_level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&LEVELS[..])
}

fn topic() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(topic_level(), 1..=4)
        .prop_filter_map("a topic name is not empty", |levels| {
            TopicName::new(levels.join("/")).ok()
        })
}

/// Filters of one to four levels, "+" anywhere, and "#" only as a whole last level.
fn filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![3 => topic_level(), 1 => Just("+")];
    (prop::collection::vec(level, 0..=4), any::<bool>()).prop_filter_map(
        "a topic filter is not empty",
        |(mut levels, multi)| {
            if multi || levels.is_empty() {
                levels.push("#");
            }
            TopicFilter::new(levels.join("/")).ok()
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, u8, u8),
    Remove(usize, u8),
}

/// Operations on filters drawn from a pool, with few keys so that replacements and hits are common.
fn ops(pool: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..pool, 0..4u8, 0..3u8).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        2 => (0..pool, 0..4u8).prop_map(|(f, k)| Op::Remove(f, k)),
    ];
    prop::collection::vec(op, 0..80)
}

fn scenario() -> impl Strategy<Value = (Vec<TopicFilter>, Vec<Op>, Vec<TopicName>)> {
    prop::collection::vec(filter(), 1..12).prop_flat_map(|filters| {
        let pool = filters.len();
        (
            Just(filters),
            ops(pool),
            prop::collection::vec(topic(), 1..10),
        )
    })
}

fn trie_matches(trie: &SubscriptionTrie<u8, u8>, topic: &TopicName) -> Vec<(u8, u8)> {
    let mut found = Vec::new();
    trie.for_each_match(topic, |k, v| found.push((*k, *v)));
    found.sort_unstable();
    found
}

fn brute_force(model: &BTreeMap<(TopicFilter, u8), u8>, topic: &TopicName) -> Vec<(u8, u8)> {
    let mut found: Vec<(u8, u8)> = model
        .iter()
        .filter(|((filter, _), _)| matches(filter, topic))
        .map(|((_, k), v)| (*k, *v))
        .collect();
    found.sort_unstable();
    found
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trie_agrees_with_brute_force((filters, ops, topics) in scenario()) {
        let mut trie = SubscriptionTrie::new();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(f, key, value) => {
                    let filter = &filters[f];
                    let expected = model.insert((filter.clone(), key), value);
                    prop_assert_eq!(trie.insert(filter, key, value), expected);
                }
                Op::Remove(f, key) => {
                    let filter = &filters[f];
                    let expected = model.remove(&(filter.clone(), key));
                    prop_assert_eq!(trie.remove(filter, &key), expected);
                }
            }
            prop_assert_eq!(trie.len(), model.len());
        }
        for topic in &topics {
            prop_assert_eq!(trie_matches(&trie, topic), brute_force(&model, topic), "topic {:?}", topic);
        }
        // Every filter also serves as a topic when it has no wildcard.
        for filter in filters.iter().filter(|f| !f.has_wildcards()) {
            let topic = TopicName::new(filter.as_str().to_owned()).unwrap();
            prop_assert_eq!(trie_matches(&trie, &topic), brute_force(&model, &topic), "topic {:?}", topic);
        }
        let live: Vec<(TopicFilter, u8)> = model.keys().cloned().collect();
        for (filter, key) in live {
            prop_assert!(trie.remove(&filter, &key).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }
}
