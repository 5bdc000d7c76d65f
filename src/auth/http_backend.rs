//! An HTTP service as the judge of CONNECTs and of publish/subscribe rights (`http_auth_url`,
//! `http_acl_url`), for fleets whose users live elsewhere: the broker POSTs a JSON question and reads
//! `{"result": "allow"}` or `{"result": "deny"}`, as EMQX's HTTP authentication does. Answers are cached
//! (bounded, with a time to live); while the service cannot be reached the broker denies or uses the last
//! answer it had, as configured. Implements [`Hooks`], so it chains with the other checks.

use crate::broker::hooks::{AuthDecision, ClientInfo, ConnectInfo, HookFuture, Hooks};
use crate::codec::{QoS, ReasonCode};
use crate::config::{Config, ConfigError};
use crate::message::Message;
use crate::topic::TopicFilter;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to answer while the service cannot be reached (a connection error, a timeout or a 5xx answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum WhenUnreachable {
    /// Refuse: CONNECT gets 0x03 / 0x88 Server unavailable, publishes and subscriptions are denied.
    Deny,
    /// The last answer the service gave to the same question, however old; refuse when there is none.
    LastKnown,
}

/// How to reach the service.
#[derive(Debug, Clone)]
pub struct HttpBackendConfig {
    /// POSTed for each CONNECT; `None`: CONNECTs are not asked about.
    pub auth_url: Option<String>,
    /// POSTed for each publish and subscription not answered from the cache; `None`: not asked.
    pub acl_url: Option<String>,
    /// Bound on one request, connection included.
    pub timeout: Duration,
    /// Answers kept, the least recently used dropped first.
    pub cache_entries: usize,
    /// How long an answer is used before the service is asked again.
    pub cache_ttl: Duration,
    /// What to answer while the service cannot be reached.
    pub when_unreachable: WhenUnreachable,
}

impl HttpBackendConfig {
    /// The backend `config` asks for, or `None` when neither URL is set.
    pub fn from_config(config: &Config) -> Result<Option<HttpBackendConfig>, ConfigError> {
        let url = |key: &'static str, value: &str| -> Result<Option<String>, ConfigError> {
            if value.is_empty() {
                return Ok(None);
            }
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{value:?} is not an http:// or https:// URL"),
                });
            }
            Ok(Some(value.to_owned()))
        };
        let auth_url = url("http_auth_url", &config.http_auth_url)?;
        let acl_url = url("http_acl_url", &config.http_acl_url)?;
        if auth_url.is_none() && acl_url.is_none() {
            return Ok(None);
        }
        Ok(Some(HttpBackendConfig {
            auth_url,
            acl_url,
            timeout: Duration::from_millis(config.http_timeout_ms),
            cache_entries: config.http_cache_entries,
            cache_ttl: Duration::from_secs(config.http_cache_ttl_secs),
            when_unreachable: config.http_when_unreachable,
        }))
    }
}

/// What the service was asked and how it answered, since start-up (for `/metrics`).
#[derive(Debug, Default)]
pub struct HttpBackendCounters {
    /// Questions the service answered "allow".
    pub allowed: AtomicU64,
    /// Questions the service answered "deny" (or with a 4xx status).
    pub denied: AtomicU64,
    /// Questions the service could not answer.
    pub unreachable: AtomicU64,
    /// Questions answered from the cache.
    pub cache_hits: AtomicU64,
}

impl HttpBackendCounters {
    /// Allowed, denied, unreachable and cached answers, in that order.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            &self.allowed,
            &self.denied,
            &self.unreachable,
            &self.cache_hits,
        ]
        .map(|n| n.load(Relaxed))
    }
}

/// A question as the cache compares it, borrowed from the connection: the kind of question, who asks, and
/// the topic (or, for a CONNECT, the SHA-256 of the password; a password is never kept). A lookup allocates
/// nothing; only an answer that goes into the cache owns a copy ([`StoredQuestion`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Question<'a> {
    kind: Kind,
    client_id: &'a str,
    username: Option<&'a str>,
    detail: &'a [u8],
}

/// What a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Connect,
    Acl(Action),
}

impl Question<'_> {
    /// The cache's key: a hash of the question; the stored copy beside the answer tells a collision apart.
    fn key(&self) -> u64 {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(self)
    }

    fn stored(&self) -> StoredQuestion {
        StoredQuestion {
            kind: self.kind,
            client_id: self.client_id.into(),
            username: self.username.map(Into::into),
            detail: self.detail.into(),
        }
    }
}

/// A question kept in the cache beside its answer.
#[derive(Debug, PartialEq, Eq)]
struct StoredQuestion {
    kind: Kind,
    client_id: Box<str>,
    username: Option<Box<str>>,
    detail: Box<[u8]>,
}

impl StoredQuestion {
    fn is(&self, question: &Question<'_>) -> bool {
        self.kind == question.kind
            && *self.client_id == *question.client_id
            && self.username.as_deref() == question.username
            && *self.detail == *question.detail
    }
}

/// A cached answer: the question it answers, whether it allowed, and when the service gave it.
#[derive(Debug)]
struct CachedAnswer {
    question: StoredQuestion,
    allowed: bool,
    at: Instant,
}

/// The right an ACL question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Publish,
    Subscribe,
}

/// What the service said, or that it said nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
    Unreachable,
}

/// The body of an answer.
#[derive(Debug, Deserialize)]
struct Answer {
    result: String,
}

/// The HTTP service as hooks. Clones share the cache and the connection pool.
#[derive(Clone)]
pub struct HttpBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpBackendConfig,
    agent: ureq::Agent,
    cache: Mutex<LruCache<u64, CachedAnswer>>,
    counters: HttpBackendCounters,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HttpBackend {
    /// A backend asking the service `config` names.
    pub fn new(config: HttpBackendConfig) -> HttpBackend {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let entries = NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN);
        HttpBackend {
            inner: Arc::new(Inner {
                config,
                agent,
                cache: Mutex::new(LruCache::new(entries)),
                counters: HttpBackendCounters::default(),
            }),
        }
    }

    /// What the service answered so far.
    pub fn counters(&self) -> &HttpBackendCounters {
        &self.inner.counters
    }

    /// Whether `question` is allowed: from the cache while fresh, else from the service (on the blocking
    /// pool: the request blocks), else as configured for an unreachable service. `None`: unreachable and
    /// nothing to fall back on.
    async fn ask(
        &self,
        url: &str,
        question: Question<'_>,
        body: impl FnOnce() -> serde_json::Value,
    ) -> Option<bool> {
        let inner = &self.inner;
        let cached = self.cached(&question);
        if let Some((allowed, at)) = cached {
            if at.elapsed() < inner.config.cache_ttl {
                inner.counters.cache_hits.fetch_add(1, Relaxed);
                return Some(allowed);
            }
        }
        // The question's body is built only when the service is asked.
        let (agent, url_owned, body) = (inner.agent.clone(), url.to_owned(), body());
        let verdict = tokio::task::spawn_blocking(move || post(&agent, &url_owned, &body))
            .await
            .unwrap_or(Verdict::Unreachable);
        let allowed = match verdict {
            Verdict::Allow => true,
            Verdict::Deny => false,
            Verdict::Unreachable => {
                inner.counters.unreachable.fetch_add(1, Relaxed);
                let fallback = match inner.config.when_unreachable {
                    WhenUnreachable::LastKnown => cached.map(|(allowed, _)| allowed),
                    WhenUnreachable::Deny => None,
                };
                log::warn!(
                    "HTTP authentication service {url} unreachable; {}",
                    match fallback {
                        Some(true) => "the last answer, allow, is used",
                        Some(false) => "the last answer, deny, is used",
                        None => "denied",
                    }
                );
                return fallback;
            }
        };
        let counter = match allowed {
            true => &inner.counters.allowed,
            false => &inner.counters.denied,
        };
        counter.fetch_add(1, Relaxed);
        if let Ok(mut cache) = inner.cache.lock() {
            let answer = CachedAnswer {
                question: question.stored(),
                allowed,
                at: Instant::now(),
            };
            cache.put(question.key(), answer);
        }
        Some(allowed)
    }

    fn cached(&self, question: &Question<'_>) -> Option<(bool, Instant)> {
        let mut cache = self.inner.cache.lock().ok()?;
        let answer = cache.get(&question.key())?;
        answer
            .question
            .is(question)
            .then_some((answer.allowed, answer.at))
    }

    /// Asks the ACL URL whether `client` may `action` on `topic`; allowed when there is no ACL URL.
    async fn may(&self, client: &ClientInfo, action: Action, topic: &str) -> bool {
        let Some(url) = &self.inner.config.acl_url else {
            return true;
        };
        let body = || {
            serde_json::json!({
                "clientid": client.client_id.as_str(),
                "username": client.username.as_deref(),
                "peer": client.peer,
                "action": action,
                "topic": topic,
            })
        };
        let question = Question {
            kind: Kind::Acl(action),
            client_id: client.client_id.as_str(),
            username: client.username.as_deref(),
            detail: topic.as_bytes(),
        };
        let allowed = self.ask(url, question, body).await.unwrap_or(false);
        if !allowed {
            log::warn!(
                "client {} from {}: {} {topic} denied by the HTTP authorisation service",
                client.client_id,
                client.peer,
                match action {
                    Action::Publish => "publish to",
                    Action::Subscribe => "subscription to",
                }
            );
        }
        allowed
    }
}

/// One POST of `body` to `url`: 200 `{"result": "allow"}` or 204 allow, 200 `{"result": "deny"}` or a 4xx
/// status deny; anything else (no answer in time, a 5xx status, an unreadable body) is unreachable.
fn post(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Verdict {
    let mut response = match agent.post(url).send_json(body) {
        Ok(response) => response,
        Err(e) => {
            log::debug!("HTTP authentication service {url}: {e}");
            return Verdict::Unreachable;
        }
    };
    match response.status().as_u16() {
        204 => Verdict::Allow,
        200 => match response.body_mut().read_json::<Answer>() {
            Ok(answer) if answer.result == "allow" => Verdict::Allow,
            Ok(answer) if answer.result == "deny" => Verdict::Deny,
            Ok(answer) => {
                log::warn!(
                    "HTTP authentication service {url}: unknown result {:?}",
                    answer.result
                );
                Verdict::Unreachable
            }
            Err(e) => {
                log::warn!("HTTP authentication service {url}: unreadable answer: {e}");
                Verdict::Unreachable
            }
        },
        400..=499 => Verdict::Deny,
        status => {
            log::warn!("HTTP authentication service {url}: status {status}");
            Verdict::Unreachable
        }
    }
}

impl Hooks for HttpBackend {
    /// Asks the auth URL about the CONNECT: allowed goes ahead; denied gets 0x05 / 0x87 Not authorized; no
    /// answer (and nothing to fall back on) gets 0x03 / 0x88 Server unavailable.
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        Box::pin(async move {
            let Some(url) = &self.inner.config.auth_url else {
                return AuthDecision::Allow;
            };
            let password = connect.password.as_deref();
            let body = || {
                serde_json::json!({
                    "clientid": connect.client_id.as_str(),
                    "username": connect.username.as_deref(),
                    "password": password.map(String::from_utf8_lossy),
                    "peer": connect.peer,
                    "protocol": connect.level.as_u8(),
                })
            };
            // A password is kept only as its SHA-256; no password and an empty one differ.
            let digest: Option<[u8; 32]> = password.map(|p| Sha256::digest(p).into());
            let question = Question {
                kind: Kind::Connect,
                client_id: connect.client_id.as_str(),
                username: connect.username.as_deref(),
                detail: digest.as_ref().map_or(&[][..], |d| &d[..]),
            };
            match self.ask(url, question, body).await {
                Some(true) => AuthDecision::Allow,
                Some(false) => {
                    log::warn!(
                        "client {} from {}: CONNECT refused by the HTTP authentication service",
                        connect.client_id,
                        connect.peer
                    );
                    AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED)
                }
                None => AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE),
            }
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        message: &'a Message,
    ) -> HookFuture<'a, bool> {
        Box::pin(self.may(client, Action::Publish, message.topic.as_str()))
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        filter: &'a TopicFilter,
        _qos: QoS,
    ) -> HookFuture<'a, bool> {
        Box::pin(self.may(client, Action::Subscribe, filter.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question<'a>(kind: Kind, user: Option<&'a str>, detail: &'a [u8]) -> Question<'a> {
        Question {
            kind,
            client_id: "c",
            username: user,
            detail,
        }
    }

    #[test]
    fn a_stored_question_answers_only_the_same_question() {
        let asked = question(Kind::Acl(Action::Publish), Some("u"), b"a/b");
        let stored = asked.stored();
        assert!(stored.is(&asked));
        assert_eq!(
            asked.key(),
            question(Kind::Acl(Action::Publish), Some("u"), b"a/b").key()
        );
        for other in [
            question(Kind::Acl(Action::Subscribe), Some("u"), b"a/b"),
            question(Kind::Acl(Action::Publish), None, b"a/b"),
            question(Kind::Acl(Action::Publish), Some("v"), b"a/b"),
            question(Kind::Acl(Action::Publish), Some("u"), b"a/c"),
            question(Kind::Connect, Some("u"), b"a/b"),
        ] {
            assert!(!stored.is(&other), "{other:?}");
        }
        // No password and an empty one are different questions.
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert!(!question(Kind::Connect, Some("u"), b"")
            .stored()
            .is(&question(Kind::Connect, Some("u"), &empty)));
    }
}
