//! The names of shared subscriptions, `$share/{group}/{filter}` (section 4.8.2): recognising one and taking it
//! apart. Pure rules; which member gets a message is the router's business.

use crate::topic::TopicFilter;

/// The prefix of a shared subscription's filter.
pub const SHARE_PREFIX: &str = "$share/";

/// A `$share/{group}/{filter}` filter taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareName {
    /// The share name.
    pub group: String,
    /// The filter the group subscribes to.
    pub filter: TopicFilter,
}

/// Whether a filter asks for a shared subscription.
pub fn is_shared(filter: &TopicFilter) -> bool {
    filter.as_str().starts_with(SHARE_PREFIX)
}

/// The filter topics are matched against for a subscription to `filter`: a shared subscription's part after
/// `$share/{group}/`, any other whole.
pub fn matched_filter(filter: &str) -> &str {
    filter
        .strip_prefix(SHARE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// Parses a shared subscription's filter; `None` when it is not a valid one: the share name must be at least
/// one character without `/`, `+` or `#`, and a filter must follow [MQTT-4.8.2-1] [MQTT-4.8.2-2].
pub fn parse(filter: &TopicFilter) -> Option<ShareName> {
    let rest = filter.as_str().strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) {
        return None;
    }
    let filter = TopicFilter::new(inner.to_owned()).ok()?;
    Some(ShareName {
        group: group.to_owned(),
        filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    #[test]
    fn a_shared_subscription_matches_by_its_filter() {
        assert_eq!(matched_filter("$share/g/a/+"), "a/+");
        assert_eq!(matched_filter("a/+"), "a/+");
        assert_eq!(matched_filter("$shared/a"), "$shared/a");
    }

    #[test]
    fn share_names_are_parsed_and_bad_ones_refused() {
        // [MQTT-4.8.2-1], [MQTT-4.8.2-2]
        let parsed = parse(&filter("$share/g1/a/+")).unwrap();
        assert_eq!(parsed.group, "g1");
        assert_eq!(parsed.filter, filter("a/+"));
        assert_eq!(parse(&filter("$share//a")), None);
        assert_eq!(parse(&filter("$share/g")), None);
        assert_eq!(parse(&filter("$share/+/a")), None);
        assert_eq!(parse(&filter("a/b")), None);
    }
}
