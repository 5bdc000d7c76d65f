//! What a connected client may do with topics, as the connection core asks it: synchronously, for each
//! message the client publishes or is about to be sent and each filter it subscribes to. Implementations
//! (the ACL file's) answer from memory, so the core can ask once per message without waiting.

/// One client's rights over topics; the core holds one per connection, given by the hooks once the client
/// is authenticated. Methods take `&mut self` so that an implementation can cache its answers per topic
/// without a lock.
pub trait TopicRights: Send + std::fmt::Debug {
    /// Whether the client may publish to `topic` (its will message included).
    fn may_publish(&mut self, topic: &str) -> bool;
    /// Whether a message on `topic` may be sent to the client.
    fn may_read(&mut self, topic: &str) -> bool;

    /// Whether a message on `topic` that the router matched against the filters the session holds (see
    /// `subscribed`) may be sent; rights that know all of them to be wholly readable need not look. The
    /// default asks `may_read`.
    fn may_read_matched(&mut self, topic: &str) -> bool {
        self.may_read(topic)
    }
    /// Whether the client may subscribe to `filter` (the filter of a shared subscription, without its
    /// `$share/{group}/`); messages of a granted filter are still screened one by one by `may_read`.
    fn may_subscribe(&mut self, filter: &str) -> bool;

    /// The session now holds subscriptions matching these filters (a shared subscription's without its
    /// `$share/{group}/`): granted now, or found when it was resumed. Rights that can tell that every topic all of a session's filters match is readable
    /// may answer `may_read_matched` without looking the topic up. The default keeps no account.
    fn subscribed(&mut self, filters: &[&str]) {
        let _ = filters;
    }

    /// The session no longer holds a subscription matching `filter` (as in `subscribed`).
    fn unsubscribed(&mut self, filter: &str) {
        let _ = filter;
    }
}

/// Two sets of rights that must both allow.
#[derive(Debug)]
pub struct BothRights(pub Box<dyn TopicRights>, pub Box<dyn TopicRights>);

impl TopicRights for BothRights {
    fn may_publish(&mut self, topic: &str) -> bool {
        self.0.may_publish(topic) && self.1.may_publish(topic)
    }

    fn may_read(&mut self, topic: &str) -> bool {
        self.0.may_read(topic) && self.1.may_read(topic)
    }

    fn may_read_matched(&mut self, topic: &str) -> bool {
        self.0.may_read_matched(topic) && self.1.may_read_matched(topic)
    }

    fn may_subscribe(&mut self, filter: &str) -> bool {
        self.0.may_subscribe(filter) && self.1.may_subscribe(filter)
    }

    fn subscribed(&mut self, filters: &[&str]) {
        self.0.subscribed(filters);
        self.1.subscribed(filters);
    }

    fn unsubscribed(&mut self, filter: &str) {
        self.0.unsubscribed(filter);
        self.1.unsubscribed(filter);
    }
}
