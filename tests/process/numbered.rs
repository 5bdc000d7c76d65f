//! Numbered messages of the durability tests: the number a payload carries in its first four bytes, and the
//! tally of the numbers delivered against those acknowledged and sent. The failure messages stay with the tests.

use std::collections::{BTreeMap, BTreeSet};

/// The message number in the first four bytes (big-endian) of `payload`.
pub fn number_of(payload: &[u8]) -> u32 {
    let head: [u8; 4] = payload
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or_else(|| panic!("payload too short: {payload:?}"));
    u32::from_be_bytes(head)
}

/// How often each message number was delivered.
pub fn tally(delivered: impl IntoIterator<Item = u32>) -> BTreeMap<u32, u32> {
    let mut counts = BTreeMap::new();
    for n in delivered {
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// The acknowledged numbers that were never delivered.
pub fn lost(acked: &BTreeSet<u32>, counts: &BTreeMap<u32, u32>) -> Vec<u32> {
    acked
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect()
}

/// The delivered numbers no message was sent with, every sent number being below `sent`.
pub fn invented(counts: &BTreeMap<u32, u32>, sent: u32) -> Vec<u32> {
    counts.keys().copied().filter(|n| *n >= sent).collect()
}

/// How many deliveries repeated a number delivered before.
pub fn duplicates(counts: &BTreeMap<u32, u32>) -> u32 {
    counts.values().map(|c| c - 1).sum()
}
