//! The `harbormq` command line: `serve` (the default), `config default`, `bench`, `passwd` and the admin
//! commands `sessions`, `retained` and `stats`.
//! Parses flags, overlays them on the config file, sets up logging and runs the chosen command.

use crate::config::Config;
use crate::Broker;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A durable MQTT broker.
#[derive(Parser, Debug)]
#[command(
    name = "harbormq",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once per run, so the size of the `serve` flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Drive any MQTT broker with load and report rates, latency, loss and duplicates.
    Bench(crate::loadgen::BenchArgs),
    /// Inspect and manage persistent sessions (live through the admin API, or from the database file).
    Sessions {
        #[command(flatten)]
        admin: crate::admin::cli::AdminArgs,
        #[command(subcommand)]
        command: crate::admin::cli::SessionsCommand,
    },
    /// Inspect and remove retained messages.
    Retained {
        #[command(flatten)]
        admin: crate::admin::cli::AdminArgs,
        #[command(subcommand)]
        command: crate::admin::cli::RetainedCommand,
    },
    /// Add, update or delete a user of a password file (Mosquitto 2.x format, `$7$` PBKDF2-SHA512 lines).
    Passwd(crate::auth::passwd::PasswdArgs),
    /// Broker-wide figures: clients, sessions, subscriptions, messages, queues, database size.
    Stats {
        #[command(flatten)]
        admin: crate::admin::cli::AdminArgs,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the default configuration file.
    Default,
}

/// Flags of `harbormq serve`; each overrides the key of the same name in the config file.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// MQTT TCP listener address (key `bind`; default 0.0.0.0:1883).
    #[arg(long, value_name = "HOST:PORT")]
    bind: Option<String>,
    /// Directory of the database (key `data_dir`; default ./harbormq-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sync | periodic:MS | off (key `durability`; default sync).
    #[arg(long, value_name = "MODE")]
    durability: Option<String>,
    /// Largest accepted packet in bytes (key `max_packet_size_bytes`).
    #[arg(long, value_name = "BYTES")]
    max_packet_size_bytes: Option<usize>,
    /// Seconds to wait for CONNECT (key `connect_timeout_secs`).
    #[arg(long, value_name = "SECS")]
    connect_timeout_secs: Option<u64>,
    /// Highest granted QoS, 0-2 (key `max_qos`).
    #[arg(long, value_name = "QOS")]
    max_qos: Option<u8>,
    /// Unacknowledged outbound QoS 1/2 messages per session (key `max_inflight`).
    #[arg(long, value_name = "N")]
    max_inflight: Option<usize>,
    /// Queued messages per session (key `max_queued_messages`).
    #[arg(long, value_name = "N")]
    max_queued_messages: Option<u64>,
    /// Queued payload bytes per persistent session (key `max_queued_bytes`).
    #[arg(long, value_name = "BYTES")]
    max_queued_bytes: Option<u64>,
    /// drop_new | drop_oldest (key `queue_overflow`).
    #[arg(long, value_name = "POLICY")]
    queue_overflow: Option<String>,
    /// Queue QoS 0 messages for offline persistent sessions (key `queue_qos0`).
    #[arg(long, value_name = "BOOL")]
    queue_qos0: Option<bool>,
    /// Remove offline persistent sessions after this many seconds; 0 = never (key `session_expiry_secs`).
    #[arg(long, value_name = "SECS")]
    session_expiry_secs: Option<u64>,
    /// Session threads; 0 = one less than the CPU cores, at least 1 (key `session_threads`).
    #[arg(long, value_name = "N")]
    session_threads: Option<usize>,
    /// Most store operations per commit (key `store_max_batch_ops`).
    #[arg(long, value_name = "N")]
    store_max_batch_ops: Option<usize>,
    /// Store requests that may wait before senders are held back (key `store_channel_capacity`).
    #[arg(long, value_name = "N")]
    store_channel_capacity: Option<usize>,
    /// Memory for the database page cache in bytes (key `store_cache_bytes`).
    #[arg(long, value_name = "BYTES")]
    store_cache_bytes: Option<usize>,
    /// MQTT over WebSocket listener, served at /mqtt; "" turns it off (key `ws_bind`; default 0.0.0.0:8083).
    #[arg(long, value_name = "HOST:PORT")]
    ws_bind: Option<String>,
    /// HTTP admin API address; "" turns it off (key `admin_bind`; default 127.0.0.1:8081).
    #[arg(long, value_name = "HOST:PORT")]
    admin_bind: Option<String>,
    /// Bearer token of the admin API; empty generates one into DATA_DIR/admin.token (key `admin_token`).
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Seconds between $SYS/broker/... publications; 0 turns them off (key `sys_interval_secs`; default 10).
    #[arg(long, value_name = "SECS")]
    sys_interval_secs: Option<u64>,
    /// Highest keepalive granted; more is Server Keep Alive in 5.0, CONNACK 0x02 before (key `max_keepalive_secs`).
    #[arg(long, value_name = "SECS")]
    max_keepalive_secs: Option<u16>,
    /// Highest topic alias an MQTT 5.0 client may use; 0 turns them off (key `topic_alias_maximum`; default 64).
    #[arg(long, value_name = "N")]
    topic_alias_maximum: Option<u16>,
    /// Unacknowledged QoS 1/2 PUBLISHes an MQTT 5.0 client may send (key `receive_maximum`; default 1024).
    #[arg(long, value_name = "N")]
    receive_maximum: Option<u16>,
    /// Serve $share/ subscriptions; false refuses them with 0x9E (key `shared_subscriptions`; default true).
    #[arg(long, value_name = "BOOL")]
    shared_subscriptions: Option<bool>,
    /// Highest MQTT 5.0 Session Expiry Interval granted (key `max_session_expiry_secs`; default 4294967295).
    #[arg(long, value_name = "SECS")]
    max_session_expiry_secs: Option<u32>,
    /// Most network connections open at once, 0 for no limit (key `max_connections`; default 0).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Password file in Mosquitto's format (key `password_file`; default none).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// ACL file in Mosquitto's format (key `acl_file`; default none).
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// HTTP service asked about each CONNECT (key `http_auth_url`; default none).
    #[arg(long, value_name = "URL")]
    http_auth_url: Option<String>,
    /// HTTP service asked about publish and subscribe rights (key `http_acl_url`; default none).
    #[arg(long, value_name = "URL")]
    http_acl_url: Option<String>,
    /// Bound on one request to the HTTP services (key `http_timeout_ms`; default 2000).
    #[arg(long, value_name = "MS")]
    http_timeout_ms: Option<u64>,
    /// Answers of the HTTP services cached (key `http_cache_entries`; default 10000).
    #[arg(long, value_name = "N")]
    http_cache_entries: Option<usize>,
    /// Seconds an answer of the HTTP services is used (key `http_cache_ttl_secs`; default 60).
    #[arg(long, value_name = "SECS")]
    http_cache_ttl_secs: Option<u64>,
    /// What to answer while an HTTP service is unreachable (key `http_when_unreachable`; default deny).
    #[arg(long, value_name = "POLICY")]
    http_when_unreachable: Option<crate::auth::http_backend::WhenUnreachable>,
    /// Let clients without a user name connect (key `allow_anonymous`; default true only without a password
    /// file).
    #[arg(long, value_name = "BOOL")]
    allow_anonymous: Option<bool>,
    /// MQTT over TLS listener, on once certfile and keyfile are set; "" turns it off (key `tls_bind`; default
    /// 0.0.0.0:8883).
    #[arg(long, value_name = "HOST:PORT")]
    tls_bind: Option<String>,
    /// PEM certificate chain of the TLS listeners (key `certfile`; default none: no TLS).
    #[arg(long, value_name = "FILE")]
    certfile: Option<PathBuf>,
    /// PEM private key of the certificate (key `keyfile`).
    #[arg(long, value_name = "FILE")]
    keyfile: Option<PathBuf>,
    /// PEM CA certificates client certificates are verified against (key `cafile`; default none).
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// TLS clients must present a certificate the CA file verifies (key `require_certificate`; default false).
    #[arg(long, value_name = "BOOL")]
    require_certificate: Option<bool>,
    /// The client certificate's CN (else first DNS/email name) is the user name; no password check (key
    /// `use_identity_as_username`; default false).
    #[arg(long, value_name = "BOOL")]
    use_identity_as_username: Option<bool>,
    /// MQTT over secure WebSocket listener at /mqtt, on once certfile and keyfile are set; "" turns it off (key
    /// `wss_bind`; default 0.0.0.0:8084).
    #[arg(long, value_name = "HOST:PORT")]
    wss_bind: Option<String>,
    /// Serve the admin API over https with the TLS certificate (key `admin_tls`; default false).
    #[arg(long, value_name = "BOOL")]
    admin_tls: Option<bool>,
    /// New connections per second from one IP address, 0 for no limit (key `max_connections_per_sec_per_ip`).
    #[arg(long, value_name = "N")]
    max_connections_per_sec_per_ip: Option<u32>,
    /// Longest client identifier in bytes (key `max_client_id_len_bytes`; default 256).
    #[arg(long, value_name = "BYTES")]
    max_client_id_len_bytes: Option<usize>,
    /// Longest topic name or filter in bytes (key `max_topic_len_bytes`; default 65535).
    #[arg(long, value_name = "BYTES")]
    max_topic_len_bytes: Option<usize>,
    /// Most levels of a topic name or filter (key `max_topic_levels`; default 128).
    #[arg(long, value_name = "N")]
    max_topic_levels: Option<usize>,
    /// Most subscriptions per session, 0 for no limit (key `max_subscriptions_per_client`; default 0).
    #[arg(long, value_name = "N")]
    max_subscriptions_per_client: Option<usize>,
    /// PUBLISHes read per second per client, 0 for no limit (key `max_publish_rate_msgs_per_sec`).
    #[arg(long, value_name = "N")]
    max_publish_rate_msgs_per_sec: Option<u64>,
    /// PUBLISH bytes read per second per client, 0 for no limit (key `max_publish_rate_bytes_per_sec`).
    #[arg(long, value_name = "BYTES")]
    max_publish_rate_bytes_per_sec: Option<u64>,
    /// Unwritten bytes per client above which its QoS 0 messages are dropped (key `max_outgoing_buffer_bytes`).
    #[arg(long, value_name = "BYTES")]
    max_outgoing_buffer_bytes: Option<usize>,
}

impl ServeArgs {
    /// The config file (or the defaults) with every given flag applied, validated.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => {
                $(if let Some(value) = &self.$field { config.$field = value.clone(); })*
            };
        }
        overlay!(
            bind,
            data_dir,
            durability,
            max_packet_size_bytes,
            connect_timeout_secs,
            max_qos,
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
            queue_overflow,
            queue_qos0,
            session_expiry_secs,
            session_threads,
            store_max_batch_ops,
            store_channel_capacity,
            store_cache_bytes,
            ws_bind,
            admin_bind,
            admin_token,
            sys_interval_secs,
            max_keepalive_secs,
            topic_alias_maximum,
            receive_maximum,
            shared_subscriptions,
            max_session_expiry_secs,
            max_connections,
            password_file,
            acl_file,
            http_auth_url,
            http_acl_url,
            http_timeout_ms,
            http_cache_entries,
            http_cache_ttl_secs,
            http_when_unreachable,
            tls_bind,
            certfile,
            keyfile,
            cafile,
            require_certificate,
            use_identity_as_username,
            wss_bind,
            admin_tls,
            max_connections_per_sec_per_ip,
            max_client_id_len_bytes,
            max_topic_len_bytes,
            max_topic_levels,
            max_subscriptions_per_client,
            max_publish_rate_msgs_per_sec,
            max_publish_rate_bytes_per_sec,
            max_outgoing_buffer_bytes
        );
        if self.allow_anonymous.is_some() {
            config.allow_anonymous = self.allow_anonymous;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the command line and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
        Some(Command::Config {
            command: ConfigCommand::Default,
        }) => {
            print!("{}", Config::default_toml());
            Ok(())
        }
        Some(Command::Bench(args)) => crate::loadgen::run(args),
        Some(Command::Sessions { admin, command }) => crate::admin::cli::sessions(&admin, command),
        Some(Command::Retained { admin, command }) => crate::admin::cli::retained(&admin, command),
        Some(Command::Stats { admin, json }) => crate::admin::cli::stats(&admin, json),
        Some(Command::Passwd(args)) => crate::auth::passwd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harbormq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    log::info!(
        "harbormq {} starting: data dir {}, durability {}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display(),
        config.durability
    );
    let system = actix_rt::System::new();
    system.block_on(async move {
        let handle = Broker::new(config)
            .start()
            .await
            .context("cannot start the broker")?;
        wait_for_signal(&handle).await;
        log::info!("signal received, shutting down");
        handle.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    log::info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM; SIGHUP meanwhile reads the password file and the TLS certificate again.
async fn wait_for_signal(handle: &crate::BrokerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return,
                    _ = term.recv() => return,
                    _ = hangup.recv() => reload(handle),
                }
            }
        }
    }
    let _ = handle;
    let _ = tokio::signal::ctrl_c().await;
}

/// SIGHUP: the password and ACL files and the TLS certificate read again, or why not (what was there then
/// stays).
fn reload(handle: &crate::BrokerHandle) {
    match handle.reload_password_file() {
        Ok(Some(users)) => log::info!("SIGHUP: password file reloaded, {users} user(s)"),
        Ok(None) => log::info!("SIGHUP: no password file to reload"),
        Err(e) => log::error!("SIGHUP: password file not reloaded, the previous users stay: {e}"),
    }
    match handle.reload_acl_file() {
        Ok(Some(rules)) => log::info!("SIGHUP: ACL file reloaded, {rules} rule(s)"),
        Ok(None) => log::info!("SIGHUP: no ACL file to reload"),
        Err(e) => log::error!("SIGHUP: ACL file not reloaded, the previous rules stay: {e}"),
    }
    match handle.reload_certificate() {
        Ok(true) => log::info!("SIGHUP: TLS certificate reloaded, new connections get it"),
        Ok(false) => {}
        Err(e) => log::error!("SIGHUP: TLS certificate not reloaded, the previous one stays: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:1999\"\nmax_inflight = 5\n").unwrap();
        let cli = Cli::parse_from([
            "harbormq",
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--max-inflight",
            "7",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("expected serve");
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.bind, "127.0.0.1:1999");
        assert_eq!(config.max_inflight, 7);
    }

    #[test]
    fn tls_flags_set_their_keys() {
        let cli = Cli::parse_from([
            "harbormq",
            "--certfile",
            "s.crt",
            "--keyfile",
            "s.key",
            "--cafile",
            "ca.crt",
            "--require-certificate",
            "true",
            "--use-identity-as-username",
            "true",
            "--tls-bind",
            "127.0.0.1:8884",
            "--wss-bind",
            "",
            "--admin-tls",
            "true",
        ]);
        let config = cli.serve.resolve().unwrap();
        assert_eq!(config.certfile, PathBuf::from("s.crt"));
        assert_eq!(config.keyfile, PathBuf::from("s.key"));
        assert_eq!(config.cafile, PathBuf::from("ca.crt"));
        assert!(config.require_certificate && config.use_identity_as_username && config.admin_tls);
        assert_eq!(config.tls_bind, "127.0.0.1:8884");
        assert_eq!(config.wss_bind, "");
    }

    #[test]
    fn serve_is_the_default_command() {
        let cli = Cli::parse_from(["harbormq", "--bind", "127.0.0.1:2000"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.resolve().unwrap().bind, "127.0.0.1:2000");
    }
}
