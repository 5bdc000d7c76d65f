//! The filter relations the ACL file decides subscriptions with, checked against brute force: over every
//! topic of up to four levels from a small alphabet (a "$" level included), two filters overlap exactly when
//! some topic matches both, and one covers another exactly when every topic the second matches the first
//! matches too. And the ACL parser, given any text, answers without panicking.

use harbormq::auth::AclFile;
use harbormq::topic::relate::{filter_covers, filter_matches, filters_overlap};
use proptest::prelude::*;

const LEVELS: [&str; 4] = ["a", "b", "", "$s"];

/// Every topic of one to four levels over `LEVELS` (with "$s" first only, as a system topic).
fn topics() -> Vec<String> {
    let mut all: Vec<Vec<&str>> = LEVELS.iter().map(|l| vec![*l]).collect();
    let mut out = Vec::new();
    for _ in 0..4 {
        let mut next = Vec::new();
        for topic in &all {
            out.push(topic.join("/"));
            for level in LEVELS.iter().filter(|l| **l != "$s") {
                let mut longer = topic.clone();
                longer.push(level);
                next.push(longer);
            }
        }
        all = next;
    }
    out
}

/// A valid filter: levels of the alphabet or "+", maybe ending in "#".
fn filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "+", "$s"]);
    (prop::collection::vec(level, 0..4), any::<bool>()).prop_filter_map(
        "a filter has a level",
        |(levels, hash)| {
            let mut levels: Vec<&str> = levels
                .into_iter()
                .enumerate()
                .filter(|(i, l)| *i == 0 || *l != "$s")
                .map(|(_, l)| l)
                .collect();
            if hash {
                levels.push("#");
            }
            (!levels.is_empty()).then(|| levels.join("/"))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn overlap_and_cover_agree_with_every_topic(a in filter(), b in filter()) {
        let topics = topics();
        let both = topics.iter().any(|t| filter_matches(&a, t) && filter_matches(&b, t));
        // Topics deeper than four levels are not enumerated: "#" reaches them, but then it also reaches
        // a shorter one the filters share, so overlap is decided by the enumerated ones.
        prop_assert_eq!(filters_overlap(&a, &b), both, "overlap of {} and {}", a, b);
        let covered = topics.iter().filter(|t| filter_matches(&b, t)).all(|t| filter_matches(&a, t));
        if filter_covers(&a, &b) {
            prop_assert!(covered, "{} claims to cover {}", a, b);
        } else if covered {
            // Within four levels every topic of b is a's; b must then reach deeper topics that a does not.
            prop_assert!(b.ends_with('#') && !a.ends_with('#'), "{} covers {} but says not", a, b);
        }
    }

    #[test]
    fn any_text_is_parsed_or_refused_with_a_line(text in "(topic|pattern|user|read|write|deny|#|\\+|%c|%u|a|/| |\\n){0,40}") {
        if let Err(e) = AclFile::parse(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}");
        }
    }
}
