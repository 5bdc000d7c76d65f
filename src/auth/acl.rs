//! The ACL file (`acl_file`) as hooks: an implementation of the same [`Hooks`] trait an embedding application
//! implements, giving each connected client its [`TopicRights`]. Each client caches its decisions per topic,
//! so a file of a thousand rules is matched once per topic, not once per message; a reload (SIGHUP, the
//! admin API) swaps the rules for every client at its next check, without dropping anyone.

use super::acl_file::{AclFile, Subject, Want};
use crate::broker::hooks::{ClientInfo, Hooks};
use crate::config::ConfigError;
use crate::protocol::TopicRights;
use crate::reload::{read_setting_file, Current};
use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Topics a client's cache remembers before it starts again from empty: a bound on its memory that a
/// client publishing to ever new topics cannot push.
const CACHE_TOPICS: usize = 1024;

/// What an ACL refused, since start-up (for `/metrics`).
#[derive(Debug, Default)]
pub struct AclCounters {
    /// Publishes dropped (will messages included).
    pub publish_denied: AtomicU64,
    /// Subscriptions refused in SUBACK.
    pub subscribe_denied: AtomicU64,
    /// Messages not sent to a subscriber whose filter matched a topic it may not read.
    pub read_denied: AtomicU64,
}

impl AclCounters {
    /// Publishes, subscriptions and messages denied, in that order.
    pub fn snapshot(&self) -> [u64; 3] {
        [
            &self.publish_denied,
            &self.subscribe_denied,
            &self.read_denied,
        ]
        .map(|n| n.load(Relaxed))
    }
}

/// The rules of an ACL file, shared by every connection. Clones share the rules, so a reload through any of
/// them applies to all.
#[derive(Debug, Clone)]
pub struct AclAuth {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `None` for rules given in memory, which cannot be read again.
    path: Option<PathBuf>,
    current: Current<AclFile>,
    /// Bumped by each reload: a client whose rules are older drops its cache.
    generation: AtomicU64,
    counters: AclCounters,
}

impl AclAuth {
    /// The rules of the file at `path`; an error names the file and the line.
    pub fn from_file(path: &Path) -> Result<AclAuth, ConfigError> {
        let mut auth = AclAuth::new(load(path)?);
        if let Some(shared) = Arc::get_mut(&mut auth.shared) {
            shared.path = Some(path.to_owned());
        }
        Ok(auth)
    }

    /// Rules given in memory.
    pub fn new(file: AclFile) -> AclAuth {
        AclAuth {
            shared: Arc::new(Shared {
                path: None,
                current: Current::new(file),
                generation: AtomicU64::new(0),
                counters: AclCounters::default(),
            }),
        }
    }

    /// Reads the file again; every client's next check uses the new rules. A file that cannot be read or
    /// parsed changes nothing, and the error names it and the line. Returns how many rules it holds, `None`
    /// for rules given in memory.
    pub fn reload(&self) -> Result<Option<usize>, ConfigError> {
        let Some(path) = &self.shared.path else {
            return Ok(None);
        };
        let fresh = load(path)?;
        let rules = fresh.len();
        self.shared.current.replace(fresh);
        self.shared.generation.fetch_add(1, Relaxed);
        Ok(Some(rules))
    }

    /// What the rules refused so far.
    pub fn counters(&self) -> &AclCounters {
        &self.shared.counters
    }
}

/// Reads an ACL file; the error names the file, and the line when one is wrong.
pub fn load(path: &Path) -> Result<AclFile, ConfigError> {
    read_setting_file("acl_file", path, AclFile::parse)
}

impl Hooks for AclAuth {
    /// The client's rights under the file's rules, with its own cache.
    fn topic_rights(&self, client: &ClientInfo) -> Option<Box<dyn TopicRights>> {
        Some(Box::new(ClientRights {
            rules: self.shared.current.get(),
            generation: self.shared.generation.load(Relaxed),
            shared: Arc::clone(&self.shared),
            client_id: client.client_id.as_str().into(),
            username: client.username.as_deref().map(Into::into),
            peer: client.peer.as_str().into(),
            cache: FxHashMap::default(),
            reads_free: true,
            denials: 0,
        }))
    }
}

/// One client's rights, with the decisions taken so far by topic.
#[derive(Debug)]
struct ClientRights {
    shared: Arc<Shared>,
    rules: Arc<AclFile>,
    /// The reload the rules and the cache come from.
    generation: u64,
    client_id: Box<str>,
    username: Option<Box<str>>,
    peer: Box<str>,
    cache: FxHashMap<Box<str>, Decisions>,
    /// Every filter the session held during this connection, under the rules it connected with, matches only
    /// topics it may read, so `may_read_matched` need not look. Once false it stays false: a message matched
    /// by a filter since dropped may still be on its way. A reload turns it off.
    reads_free: bool,
    /// Denials logged so far: one line per power of two keeps a client that insists from flooding the log.
    denials: u64,
}

/// What is known about one topic: each right, once decided.
#[derive(Debug, Clone, Copy, Default)]
struct Decisions {
    read: Option<bool>,
    write: Option<bool>,
}

impl Decisions {
    fn slot(&mut self, want: Want) -> &mut Option<bool> {
        match want {
            Want::Read => &mut self.read,
            Want::Write => &mut self.write,
        }
    }
}

impl ClientRights {
    fn subject(&self) -> Subject<'_> {
        Subject {
            client_id: &self.client_id,
            username: self.username.as_deref(),
        }
    }

    /// Takes the rules of the latest reload, forgetting what the old ones decided.
    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Relaxed);
        if generation != self.generation {
            self.rules = self.shared.current.get();
            self.generation = generation;
            self.cache.clear();
            self.reads_free = false;
        }
    }

    fn decide(&mut self, topic: &str, want: Want) -> bool {
        self.refresh();
        if let Some(known) = self.cache.get_mut(topic).and_then(|d| *d.slot(want)) {
            return known;
        }
        let allowed = self.rules.allows(self.subject(), topic, want);
        if self.cache.len() >= CACHE_TOPICS && !self.cache.contains_key(topic) {
            self.cache.clear();
        }
        *self.cache.entry(topic.into()).or_default().slot(want) = Some(allowed);
        allowed
    }

    fn denied(&mut self, what: &str, topic: &str, counter: fn(&AclCounters) -> &AtomicU64) {
        counter(&self.shared.counters).fetch_add(1, Relaxed);
        self.denials += 1;
        if self.denials.is_power_of_two() {
            log::warn!(
                "client {} ({}) from {}: {what} {topic} denied by the ACL file ({} denial(s) for this client)",
                self.client_id,
                self.username.as_deref().unwrap_or("anonymous"),
                self.peer,
                self.denials
            );
        }
    }
}

impl TopicRights for ClientRights {
    fn may_publish(&mut self, topic: &str) -> bool {
        let allowed = self.decide(topic, Want::Write);
        if !allowed {
            self.denied("publish to", topic, |c| &c.publish_denied);
        }
        allowed
    }

    fn may_read_matched(&mut self, topic: &str) -> bool {
        self.refresh();
        self.reads_free || self.may_read(topic)
    }

    fn may_read(&mut self, topic: &str) -> bool {
        let allowed = self.decide(topic, Want::Read);
        if !allowed {
            // Not logged: a wide subscription meets such topics all the time, by design.
            self.shared.counters.read_denied.fetch_add(1, Relaxed);
        }
        allowed
    }

    fn subscribed(&mut self, filters: &[&str]) {
        self.refresh();
        let subject = self.subject();
        self.reads_free = self.reads_free
            && filters
                .iter()
                .all(|filter| self.rules.reads_all_of(subject, filter));
    }

    fn may_subscribe(&mut self, filter: &str) -> bool {
        self.refresh();
        let allowed = self.rules.allows_subscription(self.subject(), filter);
        if !allowed {
            self.denied("subscription to", filter, |c| &c.subscribe_denied);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ClientId;

    fn client(id: &str, user: Option<&str>) -> ClientInfo {
        ClientInfo {
            client_id: ClientId::new(id.to_owned()),
            username: user.map(Into::into),
            peer: "127.0.0.1:1".to_owned(),
        }
    }

    #[test]
    fn a_reload_reaches_connected_clients_and_a_bad_file_keeps_the_old_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl");
        std::fs::write(&path, "topic read a/#\n").unwrap();
        let acl = AclAuth::from_file(&path).unwrap();
        let mut rights = acl.topic_rights(&client("c", None)).unwrap();
        assert!(rights.may_read("a/1"));
        assert!(!rights.may_read("b/1"));
        rights.subscribed(&["a/1"]);
        assert!(
            rights.may_read_matched("a/1"),
            "wholly readable: not looked up"
        );
        std::fs::write(&path, "topic read b/#\n").unwrap();
        assert_eq!(acl.reload().unwrap(), Some(1));
        assert!(!rights.may_read("a/1"), "the cached decision is dropped");
        assert!(
            !rights.may_read_matched("a/1"),
            "after a reload every message is looked up"
        );
        assert!(rights.may_read("b/1"));
        std::fs::write(&path, "topic read b/#\nbogus\n").unwrap();
        let err = acl.reload().unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(rights.may_read("b/1"), "the previous rules stay");
        assert_eq!(acl.counters().read_denied.load(Relaxed), 3);
    }

    #[test]
    fn reads_are_free_while_every_filter_is_wholly_readable() {
        let acl = AclAuth::new(AclFile::parse("topic read a/#\ntopic deny a/secret\n").unwrap());
        let mut rights = acl.topic_rights(&client("c", None)).unwrap();
        rights.subscribed(&["a/+/x", "a/b"]);
        assert!(
            rights.may_read_matched("a/secret"),
            "no filter of the session matches it: not looked up"
        );
        assert!(!rights.may_read("a/secret"), "a full check still looks");
        rights.subscribed(&["a/#"]);
        assert!(
            !rights.may_read_matched("a/secret"),
            "a/# reaches a denied topic: screened"
        );
        assert!(rights.may_read_matched("a/ok"));
        rights.unsubscribed("a/#");
        assert!(
            !rights.may_read_matched("a/secret"),
            "still screened: a message a/# matched may be on its way"
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_right() {
        let acl = AclAuth::new(AclFile::parse("pattern write d/%c/#\n").unwrap());
        let mut rights = acl.topic_rights(&client("me", None)).unwrap();
        for i in 0..3 * CACHE_TOPICS {
            assert!(rights.may_publish(&format!("d/me/{i}")));
            assert!(!rights.may_publish(&format!("d/other/{i}")));
        }
        assert_eq!(
            acl.counters().publish_denied.load(Relaxed),
            3 * CACHE_TOPICS as u64
        );
    }
}
