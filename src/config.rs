//! Broker configuration: every setting with a default that works on a laptop, read from TOML and validated.
//! Owns parsing and validation only; the command line overlays its flags in `cli`.

use crate::store::{Durability, OverflowPolicy};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file named.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// Why the value is refused.
        reason: String,
    },
}

/// Every setting of the broker. Keys carry their units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the MQTT TCP listener ("HOST:PORT"); an empty string turns it off.
    pub bind: String,
    /// Directory that holds the database file.
    pub data_dir: PathBuf,
    /// "sync" (fsync before every acknowledgement), "periodic:MS" (commit at least every MS milliseconds) or "off" (memory only).
    pub durability: String,
    /// Largest packet accepted from a client, in bytes; larger packets close the connection.
    pub max_packet_size_bytes: usize,
    /// Seconds a new connection has to send CONNECT before it is closed.
    pub connect_timeout_secs: u64,
    /// Highest QoS granted to a subscription (0, 1 or 2).
    pub max_qos: u8,
    /// Outbound QoS 1/2 messages awaiting acknowledgement per session before further ones wait in the queue.
    pub max_inflight: usize,
    /// Messages queued per session beyond the inflight window.
    pub max_queued_messages: u64,
    /// Payload bytes queued per persistent session (and topic plus payload bytes per clean session, in memory).
    pub max_queued_bytes: u64,
    /// What a full queue does with a new message: "drop_new" or "drop_oldest".
    pub queue_overflow: String,
    /// Whether QoS 0 messages are queued for offline persistent sessions.
    pub queue_qos0: bool,
    /// Seconds after which an offline persistent session and its queue are removed; 0 keeps them forever.
    pub session_expiry_secs: u64,
    /// Threads that run client sessions (the first also runs the router); 0 uses one less than the number of
    /// CPU cores, at least one.
    pub session_threads: usize,
    /// Most store operations committed in one write transaction.
    pub store_max_batch_ops: usize,
    /// Requests that may wait for the store thread before senders are held back.
    pub store_channel_capacity: usize,
    /// Memory the database may use to cache pages, in bytes.
    pub store_cache_bytes: usize,
    /// Address of the MQTT-over-WebSocket listener ("HOST:PORT", path /mqtt); an empty string turns it off.
    pub ws_bind: String,
    /// Address of the HTTP admin API ("HOST:PORT"); an empty string turns it off.
    pub admin_bind: String,
    /// Bearer token the admin API requires; empty generates one at start-up into `<data_dir>/admin.token`.
    pub admin_token: String,
    /// Seconds between `$SYS/broker/...` publications; 0 turns them off.
    pub sys_interval_secs: u64,
    /// Highest keepalive granted, in seconds: an MQTT 5.0 client asking for more (or for none) is told this value
    /// in CONNACK's Server Keep Alive; an earlier client asking for more is refused with CONNACK 0x02.
    pub max_keepalive_secs: u16,
    /// Highest topic alias an MQTT 5.0 client may use towards the broker (0 turns client aliases off).
    pub topic_alias_maximum: u16,
    /// QoS 1/2 PUBLISHes an MQTT 5.0 client may have unacknowledged towards the broker; one more is
    /// DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Whether `$share/{group}/{filter}` shared subscriptions are served (refused with 0x9E when off).
    pub shared_subscriptions: bool,
    /// Highest Session Expiry Interval granted to an MQTT 5.0 client, in seconds (4294967295: no limit).
    pub max_session_expiry_secs: u32,
    /// Most network connections open at once; one more is closed at once (and counted). 0: no limit.
    pub max_connections: usize,
    /// Password file in Mosquitto's format (`harbormq passwd` or `mosquitto_passwd` writes it); clients that
    /// give a user name must give its password. Empty: no password file.
    pub password_file: PathBuf,
    /// ACL file in Mosquitto's format: what each client may publish, subscribe to and receive. Empty: no ACL
    /// file, every client may do anything.
    pub acl_file: PathBuf,
    /// URL of an HTTP service POSTed each CONNECT (client id, user name, password, peer) that answers
    /// `{"result": "allow"}` or `{"result": "deny"}`. Empty: no such service.
    pub http_auth_url: String,
    /// URL of an HTTP service POSTed each publish and subscription (client id, user name, action, topic) not
    /// answered from the cache. Empty: no such service.
    pub http_acl_url: String,
    /// Bound on one request to the HTTP services, in milliseconds.
    pub http_timeout_ms: u64,
    /// Answers of the HTTP services kept, the least recently used dropped first.
    pub http_cache_entries: usize,
    /// Seconds an answer of the HTTP services is used before they are asked again.
    pub http_cache_ttl_secs: u64,
    /// What to answer while an HTTP service cannot be reached: "deny" or "last_known" (its last answer to
    /// the same question, denying when there is none).
    pub http_when_unreachable: crate::auth::http_backend::WhenUnreachable,
    /// Whether clients without a user name may connect; unset means yes while no password file is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Address of the MQTT-over-TLS listener ("HOST:PORT"), on only while `certfile` and `keyfile` are set; an
    /// empty string turns it off.
    pub tls_bind: String,
    /// PEM certificate chain (server certificate first) of the TLS listeners; empty: no TLS.
    pub certfile: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of `certfile`'s certificate.
    pub keyfile: PathBuf,
    /// PEM CA certificates that client certificates are verified against; empty: clients are not asked for one.
    pub cafile: PathBuf,
    /// Whether a TLS client must present a certificate that `cafile` verifies (needs `cafile`).
    pub require_certificate: bool,
    /// Whether a TLS client's certificate (subject CN, else its first DNS or email SAN) is its user name; the
    /// CONNECT's user name and password are then ignored and the password file is not consulted (needs
    /// `require_certificate`).
    pub use_identity_as_username: bool,
    /// Address of the MQTT-over-WebSocket-over-TLS listener ("HOST:PORT", path /mqtt, `certfile`'s
    /// certificate), on only while `certfile` and `keyfile` are set; an empty string turns it off.
    pub wss_bind: String,
    /// Whether the admin API is served over TLS (https) with `certfile`'s certificate.
    pub admin_tls: bool,
    /// New network connections accepted per second from one IP address (a burst of one second's worth); more
    /// are closed at once, before CONNECT. 0: no limit.
    pub max_connections_per_sec_per_ip: u32,
    /// Longest client identifier accepted, in bytes; a longer one is refused (0x02 / 0x85).
    pub max_client_id_len_bytes: usize,
    /// Longest topic name (PUBLISH) or filter (SUBSCRIBE) accepted, in bytes.
    pub max_topic_len_bytes: usize,
    /// Most `/`-separated levels of a topic name or filter.
    pub max_topic_levels: usize,
    /// Most subscriptions per session; one more is refused in SUBACK (0x80 / 0x97). 0: no limit.
    pub max_subscriptions_per_client: usize,
    /// PUBLISH packets read per second from one client; a faster client's socket is read more slowly. 0: off.
    pub max_publish_rate_msgs_per_sec: u64,
    /// Topic plus payload bytes of PUBLISHes read per second from one client, paced likewise. 0: off.
    pub max_publish_rate_bytes_per_sec: u64,
    /// Bytes written for one client and not yet taken by its socket above which its QoS 0 messages are dropped.
    pub max_outgoing_buffer_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0:1883".to_owned(),
            data_dir: PathBuf::from("./harbormq-data"),
            durability: "sync".to_owned(),
            max_packet_size_bytes: 1024 * 1024,
            connect_timeout_secs: 10,
            max_qos: 2,
            max_inflight: 32,
            max_queued_messages: 100_000,
            max_queued_bytes: 100 * 1024 * 1024,
            queue_overflow: "drop_new".to_owned(),
            queue_qos0: false,
            session_expiry_secs: 0,
            session_threads: 0,
            store_max_batch_ops: 65_536,
            store_channel_capacity: 4_096,
            store_cache_bytes: 64 * 1024 * 1024,
            ws_bind: "0.0.0.0:8083".to_owned(),
            admin_bind: "127.0.0.1:8081".to_owned(),
            admin_token: String::new(),
            sys_interval_secs: 10,
            max_keepalive_secs: 65_535,
            topic_alias_maximum: 64,
            receive_maximum: 1024,
            shared_subscriptions: true,
            max_session_expiry_secs: u32::MAX,
            max_connections: 0,
            password_file: PathBuf::new(),
            acl_file: PathBuf::new(),
            http_auth_url: String::new(),
            http_acl_url: String::new(),
            http_timeout_ms: 2_000,
            http_cache_entries: 10_000,
            http_cache_ttl_secs: 60,
            http_when_unreachable: crate::auth::http_backend::WhenUnreachable::Deny,
            allow_anonymous: None,
            tls_bind: "0.0.0.0:8883".to_owned(),
            certfile: PathBuf::new(),
            keyfile: PathBuf::new(),
            cafile: PathBuf::new(),
            require_certificate: false,
            use_identity_as_username: false,
            wss_bind: "0.0.0.0:8084".to_owned(),
            admin_tls: false,
            max_connections_per_sec_per_ip: 0,
            max_client_id_len_bytes: 256,
            max_topic_len_bytes: 65_535,
            max_topic_levels: 128,
            max_subscriptions_per_client: 0,
            max_publish_rate_msgs_per_sec: 0,
            max_publish_rate_bytes_per_sec: 0,
            max_outgoing_buffer_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file; missing keys take their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The default configuration as a commented TOML file.
    pub fn default_toml() -> String {
        let body = toml::to_string(&Config::default()).unwrap_or_default();
        format!(
            "# harbormq configuration. Every key is optional; these are the defaults.\n\
             # Each key also has a command-line flag of `harbormq serve` that overrides it.\n\n{body}"
        )
    }

    /// Checks every value; returns the first one that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        self.ws_bind_addr()?;
        self.admin_addr()?;
        self.durability()?;
        self.overflow_policy()?;
        if self.max_qos > 2 {
            return Err(invalid("max_qos", "must be 0, 1 or 2"));
        }
        if self.max_inflight == 0 || self.max_inflight > 65_535 {
            return Err(invalid("max_inflight", "must be between 1 and 65535"));
        }
        // The codec cannot express more than the four-byte remaining length plus the fixed header.
        if !(16..=268_435_460).contains(&self.max_packet_size_bytes) {
            return Err(invalid(
                "max_packet_size_bytes",
                "must be between 16 and 268435460",
            ));
        }
        if self.connect_timeout_secs == 0 {
            return Err(invalid("connect_timeout_secs", "must be at least 1"));
        }
        if self.store_max_batch_ops == 0 {
            return Err(invalid("store_max_batch_ops", "must be at least 1"));
        }
        if self.store_channel_capacity == 0 {
            return Err(invalid("store_channel_capacity", "must be at least 1"));
        }
        if self.max_keepalive_secs == 0 {
            return Err(invalid("max_keepalive_secs", "must be at least 1"));
        }
        if self.receive_maximum == 0 {
            return Err(invalid("receive_maximum", "must be at least 1"));
        }
        if self.http_timeout_ms == 0 {
            return Err(invalid("http_timeout_ms", "must be at least 1"));
        }
        if self.http_cache_entries == 0 {
            return Err(invalid("http_cache_entries", "must be at least 1"));
        }
        crate::tls::validate_config(self)?;
        self.validate_limits()
    }

    /// The client limits: what a client may send and hold.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        // [MQTT-3.1.3-5]: the server must allow client identifiers of 1 to 23 bytes.
        if self.max_client_id_len_bytes < 23 {
            return Err(invalid("max_client_id_len_bytes", "must be at least 23"));
        }
        if self.max_topic_len_bytes == 0 {
            return Err(invalid("max_topic_len_bytes", "must be at least 1"));
        }
        if self.max_topic_levels == 0 {
            return Err(invalid("max_topic_levels", "must be at least 1"));
        }
        if self.max_outgoing_buffer_bytes < 65_536 {
            return Err(invalid(
                "max_outgoing_buffer_bytes",
                "must be at least 65536",
            ));
        }
        Ok(())
    }

    /// The password file, or `None` when there is none.
    pub fn password_file(&self) -> Option<&Path> {
        (!self.password_file.as_os_str().is_empty()).then_some(self.password_file.as_path())
    }

    /// The ACL file, or `None` when there is none.
    pub fn acl_file(&self) -> Option<&Path> {
        (!self.acl_file.as_os_str().is_empty()).then_some(self.acl_file.as_path())
    }

    /// Whether clients without a user name are let in: as configured, else only while there is no password
    /// file.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous
            .unwrap_or(self.password_file().is_none())
    }

    /// The TCP listener address, or `None` when the listener is off.
    pub fn bind_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("bind", &self.bind)
    }

    /// The WebSocket listener address, or `None` when it is off.
    pub fn ws_bind_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("ws_bind", &self.ws_bind)
    }

    /// The admin API address, or `None` when the admin API is off.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr("admin_bind", &self.admin_bind)
    }

    /// The durability setting parsed.
    pub fn durability(&self) -> Result<Durability, ConfigError> {
        parse_durability(&self.durability).map_err(|reason| invalid("durability", reason))
    }

    /// The queue overflow policy parsed.
    pub fn overflow_policy(&self) -> Result<OverflowPolicy, ConfigError> {
        match self.queue_overflow.as_str() {
            "drop_new" => Ok(OverflowPolicy::DropNew),
            "drop_oldest" => Ok(OverflowPolicy::DropOldest),
            other => Err(invalid(
                "queue_overflow",
                format!("`{other}` is neither drop_new nor drop_oldest"),
            )),
        }
    }

    /// Number of session threads, resolving 0 to one less than the number of CPU cores (at least one).
    ///
    /// The spare core serves the store thread and the kernel's network stack; fewer session threads also
    /// means fewer messages crossing threads, which is what latency at low rates is made of.
    pub fn session_thread_count(&self) -> usize {
        if self.session_threads > 0 {
            return self.session_threads;
        }
        default_session_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    }
}

/// A listener address: `None` when `text` is empty (the listener is off), else `text` parsed as HOST:PORT.
pub(crate) fn optional_addr(
    key: &'static str,
    text: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| invalid(key, format!("`{text}` is not HOST:PORT ({e})")))
}

fn default_session_threads(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// Parses "sync", "off" or "periodic:MS".
pub fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "sync" => Ok(Durability::Sync),
        "off" => Ok(Durability::Off),
        other => {
            let ms = other
                .strip_prefix("periodic:")
                .ok_or_else(|| format!("`{other}` is not sync, periodic:MS or off"))?;
            let interval_ms: u64 = ms
                .parse()
                .map_err(|_| format!("`{ms}` in `{other}` is not a number of milliseconds"))?;
            if interval_ms == 0 {
                return Err("the periodic interval must be at least 1 ms".to_owned());
            }
            Ok(Durability::Periodic { interval_ms })
        }
    }
}

pub(crate) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        let text = Config::default_toml();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:1\"\nmax_inflite = 3\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("max_inflite"), "{err}");
    }

    #[test]
    fn default_session_threads_leave_a_core_spare() {
        assert_eq!(default_session_threads(1), 1);
        assert_eq!(default_session_threads(2), 1);
        assert_eq!(default_session_threads(8), 7);
        let explicit = Config {
            session_threads: 3,
            ..Config::default()
        };
        assert_eq!(explicit.session_thread_count(), 3);
    }

    #[test]
    fn durability_forms_parse() {
        assert_eq!(parse_durability("sync"), Ok(Durability::Sync));
        assert_eq!(parse_durability("off"), Ok(Durability::Off));
        assert_eq!(
            parse_durability("periodic:250"),
            Ok(Durability::Periodic { interval_ms: 250 })
        );
        assert!(parse_durability("periodic:").is_err());
        assert!(parse_durability("fast").is_err());
    }

    #[test]
    fn limits_out_of_range_name_their_key() {
        for (config, key) in [
            (
                Config {
                    max_client_id_len_bytes: 22,
                    ..Config::default()
                },
                "max_client_id_len_bytes",
            ),
            (
                Config {
                    max_topic_levels: 0,
                    ..Config::default()
                },
                "max_topic_levels",
            ),
            (
                Config {
                    max_outgoing_buffer_bytes: 1024,
                    ..Config::default()
                },
                "max_outgoing_buffer_bytes",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let config = Config {
            max_qos: 3,
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_qos"));
        let config = Config {
            bind: "nowhere".to_owned(),
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("bind"));
        let config = Config {
            store_channel_capacity: 0,
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("store_channel_capacity"));
        let config = Config {
            ws_bind: String::new(),
            admin_bind: "localhost".to_owned(),
            ..Config::default()
        };
        assert_eq!(config.ws_bind_addr().unwrap(), None);
        assert!(config
            .admin_addr()
            .unwrap_err()
            .to_string()
            .contains("admin_bind"));
    }
}
