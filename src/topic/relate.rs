//! Relations between topic strings as plain `&str`s: whether a filter matches a topic, whether two filters
//! can match a common topic, and whether one filter matches every topic another does. Access rules (the ACL
//! file) need them for filters they build at run time; the rules of section 4.7 are the same as the trie's.

/// Whether `topic` matches `filter` [MQTT-4.7.1-1] to [MQTT-4.7.2-1]: `#` also matches its parent level, and
/// a filter starting with a wildcard does not match a topic starting with `$`.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let system = topic.starts_with('$');
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    let mut first = true;
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return !(first && system),
            (Some("+"), Some(_)) if first && system => return false,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f != t => return false,
            (Some(_), Some(_)) => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// Whether some topic matches both filters.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    let mut first = true;
    loop {
        match (a_levels.next(), b_levels.next()) {
            // A leading wildcard never reaches a "$" topic, which a literal "$" level names [MQTT-4.7.2-1].
            (Some(w), Some(l)) | (Some(l), Some(w))
                if first && is_wildcard(w) && !is_wildcard(l) && l.starts_with('$') =>
            {
                return false
            }
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x != y => return false,
            (Some(_), Some(_)) => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// Whether every topic `inner` matches is also matched by `outer`.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    // "+/#" matches every topic "#" does: one level or more, none starting with "$". Deeper down a "#" also
    // matches its parent level, which "+" does not, so this holds at the first level only.
    if inner == "#" && outer == "+/#" {
        return true;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    let mut first = true;
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            // A leading wildcard of `outer` leaves out the "$" topics that a literal "$" level of `inner` names.
            (Some(o), Some(i)) if first && is_wildcard(o) && i.starts_with('$') => return false,
            (Some("#"), _) => return true,
            (Some("+"), Some(i)) if i != "#" => {}
            (Some(o), Some(i)) if o == i => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

fn is_wildcard(level: &str) -> bool {
    level == "+" || level == "#"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_matches_topics_as_section_4_7_says() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(filter_matches("a/+", "a/b"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(
            filter_matches("a/#", "a"),
            "[MQTT-4.7.1-2] # matches the parent level"
        );
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("#", "a/b"));
        assert!(!filter_matches("#", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(!filter_matches("+/x", "$SYS/x"), "[MQTT-4.7.2-1]");
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(!filter_matches("a/b", "a/c"));
        assert!(!filter_matches("a/b/c", "a/b"));
    }

    #[test]
    fn filters_overlap_when_one_topic_can_match_both() {
        assert!(filters_overlap("#", "a/b"));
        assert!(filters_overlap("a/+", "+/b"));
        assert!(filters_overlap("a/#", "a"));
        assert!(filters_overlap("a/+/c", "a/b/#"));
        assert!(!filters_overlap("a/+", "b/+"));
        assert!(!filters_overlap("a/+", "a/b/c"));
        assert!(!filters_overlap("#", "$SYS/#"));
        assert!(!filters_overlap("+/x", "$SYS/x"));
        assert!(filters_overlap("$SYS/#", "$SYS/+"));
    }

    #[test]
    fn a_filter_covers_another_when_it_matches_all_its_topics() {
        assert!(filter_covers("#", "a/b/#"));
        assert!(filter_covers("a/#", "a"));
        assert!(filter_covers("a/#", "a/+/c"));
        assert!(filter_covers("a/+", "a/b"));
        assert!(filter_covers("a/+", "a/+"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("a/b", "a/+"));
        assert!(!filter_covers("a/+", "a/b/c"));
        assert!(!filter_covers("#", "$SYS/#"));
        assert!(filter_covers("$SYS/#", "$SYS/broker/+"));
        assert!(
            filter_covers("+/#", "#"),
            "both match every topic not starting with $"
        );
        assert!(
            !filter_covers("a/+/#", "a/#"),
            "a/# matches a, a/+/# does not"
        );
    }
}
