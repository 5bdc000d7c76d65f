//! Subscription trie benchmarks: matching one topic against 100,000 subscriptions (exact
//! filters only, with `+` filters, with `#` filters, and a 50-subscriber fan-out), plus churn.

use criterion::{criterion_group, criterion_main, Criterion};
use harbormq::topic::{SubscriptionTrie, TopicFilter, TopicName};
use std::hint::black_box;

const SUBSCRIPTIONS: u64 = 100_000;
const SITES: u64 = 100;

fn filter(s: String) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_owned()).unwrap()
}

/// Subscription `i` on `site{i % 100}/dev{i / 100}/temp`, one per device.
fn exact(i: u64) -> TopicFilter {
    filter(format!("site{}/dev{}/temp", i % SITES, i / SITES))
}

/// A trie of `SUBSCRIPTIONS` subscriptions; one in ten is the `wildcard(j)` filter numbered
/// `j = i / 10` instead of an exact one.
fn build(wildcard: impl Fn(u64) -> TopicFilter) -> SubscriptionTrie<u64, u8> {
    let mut trie = SubscriptionTrie::new();
    for i in 0..SUBSCRIPTIONS {
        let f = if i % 10 == 0 {
            wildcard(i / 10)
        } else {
            exact(i)
        };
        trie.insert(&f, i, 1);
    }
    assert_eq!(trie.len() as u64, SUBSCRIPTIONS);
    trie
}

fn bench_match(
    c: &mut Criterion,
    name: &str,
    trie: &SubscriptionTrie<u64, u8>,
    topic: &TopicName,
    expected: usize,
) {
    let mut matched = 0;
    trie.for_each_match(topic, |_, _| matched += 1);
    assert_eq!(matched, expected, "{name}: matches of {topic}");
    c.bench_function(name, |b| {
        b.iter(|| {
            let mut sum = 0u64;
            trie.for_each_match(black_box(topic), |k, v| sum += k + u64::from(*v));
            black_box(sum)
        })
    });
}

fn matching(c: &mut Criterion) {
    let trie = build(|j| exact(SUBSCRIPTIONS + j));
    let t = topic("site42/dev420/temp");
    bench_match(c, "match/exact_100k", &trie, &t, 1);

    // Distinct "site{n}/+/m{m}" and "+/dev{n}/temp" filters: the topic's walk takes the
    // root's "+" branch and a dead-end "+" branch under "site42".
    let trie = build(|j| match j % 2 {
        0 => filter(format!("site{}/+/m{}", j % SITES, j / SITES)),
        _ => filter(format!("+/dev{j}/temp")),
    });
    let t = topic("site42/dev431/temp");
    bench_match(c, "match/plus_100k", &trie, &t, 2);

    // Distinct "site{n}/dev{j}/#" and "site{n}/dev{j}/temp/#" filters; the latter also
    // matches its parent level [MQTT-4.7.1-2].
    let trie = build(|j| match j % 2 {
        0 => filter(format!("site{}/dev{j}/#", j % SITES)),
        _ => filter(format!("site{}/dev{j}/temp/#", j % SITES)),
    });
    let t = topic("site43/dev443/temp");
    bench_match(c, "match/hash_100k", &trie, &t, 2);

    let mut trie = build(|j| exact(SUBSCRIPTIONS + j));
    let shared = filter("broadcast/news".to_owned());
    for key in 0..50 {
        trie.insert(&shared, SUBSCRIPTIONS + key, 1);
    }
    let t = topic("broadcast/news");
    bench_match(c, "match/fanout_50_of_100k", &trie, &t, 50);
}

fn churn(c: &mut Criterion) {
    let mut trie = build(|j| exact(SUBSCRIPTIONS + j));
    // New filters share the first level with existing ones and need two fresh nodes each.
    let filters: Vec<TopicFilter> = (0..1024)
        .map(|i| filter(format!("site{}/new{i}/temp", i % SITES)))
        .collect();
    let mut next = 0;
    c.bench_function("churn/insert_remove_100k", |b| {
        b.iter(|| {
            let f = &filters[next % filters.len()];
            next += 1;
            trie.insert(f, 7, 1);
            black_box(trie.remove(f, &7))
        })
    });
    assert_eq!(trie.len() as u64, SUBSCRIPTIONS);
}

criterion_group!(benches, matching, churn);
criterion_main!(benches);
