//! Topic names and topic filters, validated on construction, and the subscription trie.
//! Owns the MQTT topic rules (section 4.7 of the 3.1.1 specification); knows nothing of packets or sessions.

pub mod relate;
pub mod trie;

use bytestring::ByteString;
use std::fmt;

pub use trie::SubscriptionTrie;

/// The longest topic string an MQTT UTF-8 string can carry.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long.
    #[error("[MQTT-4.7.3-1] topic is empty")]
    Empty,
    /// Topic strings are limited to 65,535 bytes.
    #[error("[MQTT-4.7.3-3] topic is longer than 65535 bytes")]
    TooLong,
    /// Topic names must not contain `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name contains a wildcard")]
    WildcardInName,
    /// `#` must be the last character and stand alone in its level.
    #[error("[MQTT-4.7.1-2] multi-level wildcard '#' is not alone in the last level")]
    MisplacedMultiLevelWildcard,
    /// `+` must stand alone in its level.
    #[error("[MQTT-4.7.1-3] single-level wildcard '+' is not alone in its level")]
    MisplacedSingleLevelWildcard,
    /// Topics must not contain U+0000.
    #[error("[MQTT-4.7.3-2] topic contains the null character U+0000")]
    NullCharacter,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name a message is published to: non-empty, no wildcards.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `s` as a topic name ([MQTT-4.7.3-1], [MQTT-3.3.2-2]).
    pub fn new(s: impl Into<ByteString>) -> Result<Self, TopicError> {
        let s = s.into();
        check_common(&s)?;
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(s))
    }

    /// The empty topic of an MQTT 5.0 PUBLISH that names its topic by a Topic Alias alone (section 3.3.2.3.4);
    /// the receiver replaces it with the aliased topic before the message goes anywhere.
    pub fn aliased() -> TopicName {
        TopicName(ByteString::new())
    }

    /// Whether this is the empty topic of an aliased PUBLISH.
    pub fn is_aliased(&self) -> bool {
        self.0.is_empty()
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same topic in an allocation of its own: a decoded topic is a slice of the connection's read
    /// buffer, and a value kept for long must not keep that whole buffer alive.
    pub fn detached(&self) -> TopicName {
        TopicName(ByteString::from(self.as_str()))
    }

    /// The levels of the topic, split at `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether this is a system topic (starts with `$`), which wildcards at the first level do not match [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A topic filter a client subscribes with: non-empty, `+` and `#` alone in their level, `#` last.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `s` as a topic filter ([MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1]).
    pub fn new(s: impl Into<ByteString>) -> Result<Self, TopicError> {
        let s = s.into();
        check_common(&s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::MisplacedSingleLevelWildcard);
            }
        }
        Ok(TopicFilter(s))
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same filter in an allocation of its own, so that a subscription kept for the session's life
    /// does not keep the read buffer it was decoded from alive.
    pub fn detached(&self) -> TopicFilter {
        TopicFilter(ByteString::from(self.as_str()))
    }

    /// The levels of the filter, split at `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Whether `topic` matches this filter, following [MQTT-4.7.1-1] to [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self, topic)
    }
}

/// Whether `topic` matches `filter`: a direct level-by-level comparison, used where a trie would be overkill.
pub fn matches(filter: &TopicFilter, topic: &TopicName) -> bool {
    relate::filter_matches(filter.as_str(), topic.as_str())
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s.to_owned()).expect("valid topic name")
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).expect("valid topic filter")
    }

    #[test]
    fn names_reject_wildcards_and_empty() {
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert!(TopicName::new("/").is_ok());
    }

    #[test]
    fn filters_place_wildcards_by_the_rules() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "a/+/b",
            "/+",
            "+/#",
            "sport/tennis/#",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok} should be valid");
        }
        assert_eq!(
            TopicFilter::new("a/#/b"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::new("a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::new("a+/b"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn matching_follows_section_4_7() {
        assert!(matches(&filter("sport/#"), &name("sport")));
        assert!(matches(&filter("sport/#"), &name("sport/tennis/player1")));
        assert!(matches(&filter("sport/+"), &name("sport/")));
        assert!(!matches(&filter("sport/+"), &name("sport")));
        assert!(matches(&filter("+/+"), &name("/finance")));
        assert!(matches(&filter("/+"), &name("/finance")));
        assert!(!matches(&filter("+"), &name("/finance")));
        assert!(!matches(&filter("#"), &name("$SYS/uptime")));
        assert!(!matches(&filter("+/uptime"), &name("$SYS/uptime")));
        assert!(matches(&filter("$SYS/#"), &name("$SYS/uptime")));
        assert!(matches(&filter("a/b"), &name("a/b")));
        assert!(!matches(&filter("a/b"), &name("a/b/c")));
    }
}
