//! The running broker: starts the store, the session arbiters (the first also runs the router and the retained
//! actor) and the listeners, and hands out a `BrokerHandle` to stop it. The library's entry point.
//!
//! The actors: a `session::Session` per client (network or in-process) around the protocol core, the
//! `router::Router` (subscriptions, fan-out, credit-based flow control in `flow`), and the
//! `retained::RetainedStore`.

pub mod flow;
pub mod hooks;
pub mod inprocess;
pub mod limits;
pub mod messages;
pub mod registry;
pub mod retained;
pub mod router;
mod router_admin;
mod router_flow;
pub mod session;
pub mod shared;
pub mod sys;

use crate::codec::QoS;
use crate::config::Config;
use crate::error::Error;
use crate::store::{Store, StoreConfig, StoreHandle, StoreWorker};
use crate::transport::tcp;
use actix::prelude::*;
use messages::{DisconnectAll, GetRouterStats, RouterStats};
use retained::RetainedStore;
use router::{Router, RouterSettings};
use session::{SessionPeers, SessionSettings};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long shutdown waits for connected sessions to close before flushing the store anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Builds and starts a broker inside the current actix System.
///
/// ```no_run
/// # async fn run() -> Result<(), harbormq::Error> {
/// use harbormq::{Broker, Config};
/// // No TCP or WebSocket listener: the application talks to the broker in-process (or mounts
/// // `harbormq::web::mqtt_ws` in its own actix-web server).
/// let handle = Broker::builder()
///     .config(Config { data_dir: "./app-data".into(), ..Config::default() })
///     .tcp(None)
///     .websocket(None)
///     .start()
///     .await?;
/// handle.publish("greetings", "hello", harbormq::codec::QoS::AtLeastOnce, false).await?;
/// handle.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Broker {
    config: Config,
    hooks: Option<Arc<dyn hooks::Hooks>>,
}

impl Broker {
    /// A broker with this configuration.
    pub fn new(config: Config) -> Self {
        Broker {
            config,
            hooks: None,
        }
    }

    /// A broker with the default configuration, to adjust with the builder methods.
    pub fn builder() -> Self {
        Broker::new(Config::default())
    }

    /// Replaces the configuration (listener choices made before are overwritten by it).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Registers the application's hooks.
    pub fn hooks(mut self, hooks: impl hooks::Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Sets the MQTT TCP listener address (`"HOST:PORT"`), or turns it off with `None`.
    pub fn tcp(mut self, addr: Option<&str>) -> Self {
        self.config.bind = addr.unwrap_or_default().to_owned();
        self
    }

    /// Sets the MQTT-over-WebSocket listener address (`"HOST:PORT"`, path `/mqtt`), or turns it off with `None`.
    pub fn websocket(mut self, addr: Option<&str>) -> Self {
        self.config.ws_bind = addr.unwrap_or_default().to_owned();
        self
    }

    /// Opens the store, starts every actor and listener, and returns a handle; must run inside an actix System.
    pub async fn start(self) -> Result<BrokerHandle, Error> {
        let config = self.config;
        config.validate()?;
        // The password file is read before anything starts: a damaged one stops start-up, naming its line.
        let password_auth = crate::auth::PasswordAuth::from_config(&config)?;
        // So is the ACL file.
        let acl = match config.acl_file() {
            Some(path) => Some(crate::auth::AclAuth::from_file(path)?),
            None => None,
        };
        // So are the certificate, its key and the CA file: a missing or mismatched one stops start-up.
        let tls = crate::tls::Tls::from_config(&config)?;
        let http = crate::auth::HttpBackendConfig::from_config(&config)?;
        // Asking a service about each publish and subscription needs the asynchronous screening the
        // application's hooks have; only the application's hooks are told what happens.
        let notify = self.hooks.is_some();
        let screen = notify || http.as_ref().is_some_and(|h| h.acl_url.is_some());
        let http = http.map(crate::auth::HttpBackend::new);
        // The built-in checks are hooks too, run before the application's: password file, ACL file, HTTP.
        let builtin: [Option<Arc<dyn hooks::Hooks>>; 3] = [
            password_auth
                .clone()
                .map(|a| Arc::new(a) as Arc<dyn hooks::Hooks>),
            acl.clone().map(|a| Arc::new(a) as Arc<dyn hooks::Hooks>),
            http.clone().map(|h| Arc::new(h) as Arc<dyn hooks::Hooks>),
        ];
        let hooks = builtin
            .into_iter()
            .chain([self.hooks])
            .flatten()
            .reduce(|first, then| Arc::new(hooks::Chain::new(first, then)));
        // Only the application's hooks and the HTTP service screen every publish and subscription
        // asynchronously; the files act at CONNECT and through the synchronous topic rights.
        let authenticate = hooks.is_some();
        let store_config = StoreConfig {
            data_dir: config.data_dir.clone(),
            durability: config.durability()?,
            max_queued_messages: config.max_queued_messages,
            max_queued_bytes: config.max_queued_bytes,
            overflow: config.overflow_policy()?,
            max_batch_ops: config.store_max_batch_ops,
            channel_capacity: config.store_channel_capacity,
            cache_bytes: config.store_cache_bytes,
        };
        let (store, recovered, worker) = Store::open(&store_config)?;
        log::info!(
            "recovered {} persistent session(s) and {} retained message(s) from {}",
            recovered.sessions.len(),
            recovered.retained.len(),
            config.data_dir.display()
        );
        let workers: Vec<Arbiter> = (0..config.session_thread_count())
            .map(|_| Arbiter::new())
            .collect();
        // The router shares the first session thread: a message crosses threads once (publisher or
        // subscriber side) instead of twice, which is what latency at low rates is made of.
        let core = workers
            .first()
            .map(|a| a.handle())
            .unwrap_or_else(Arbiter::current);
        let retained_messages = recovered.retained;
        let retained =
            RetainedStore::start_in_arbiter(&core, move |_| RetainedStore::new(retained_messages));
        let settings = RouterSettings {
            queue_qos0: config.queue_qos0,
            session_expiry: (config.session_expiry_secs > 0)
                .then(|| Duration::from_secs(config.session_expiry_secs)),
        };
        let router = {
            let (store, retained) = (store.clone(), retained.clone());
            let (sessions, next_id) = (recovered.sessions, recovered.next_message_id);
            Router::start_in_arbiter(&core, move |_| {
                Router::new(store, retained, settings, sessions, next_id)
            })
        };
        let peers = Arc::new(SessionPeers {
            router: router.clone(),
            retained: retained.clone(),
            store: store.clone(),
            settings: Arc::new(session_settings(&config, [screen, notify, authenticate])?),
            hooks,
            counters: Arc::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let tcp_addr = match config.bind_addr()? {
            Some(addr) => {
                let handles = workers.iter().map(|a| a.handle()).collect();
                let local =
                    tcp::listen(addr, handles, peers.clone(), stop_rx.clone(), None).await?;
                log::info!("MQTT over TCP on {local}");
                Some(local)
            }
            None => None,
        };
        let handles = workers.iter().map(|a| a.handle()).collect();
        let secure =
            crate::transport::tls::listen(&config, tls.as_ref(), handles, &peers, &stop_rx);
        let secure = secure.await?;
        let inprocess = core.clone();
        let ws = match config.ws_bind_addr()? {
            Some(addr) => {
                let (local, server) =
                    crate::web::serve(addr, peers.clone(), config.session_thread_count(), None)?;
                log::info!(
                    "MQTT over WebSocket on ws://{local}{}",
                    crate::web::MQTT_WS_PATH
                );
                Some((local, server))
            }
            None => None,
        };
        let listening = tcp_addr.iter().chain(ws.iter().map(|(local, _)| local));
        let secured = secure
            .tls_addr
            .iter()
            .chain(secure.wss.iter().map(|(a, _)| a));
        warn_if_open_to_anyone(&config, listening.chain(secured));
        let security = crate::admin::http::SecurityFigures {
            password_auth: password_auth.clone(),
            acl: acl.clone(),
            http,
        };
        let admin = start_admin_and_sys(&config, &core, &peers, security, &tls);
        Ok(BrokerHandle {
            inner: Arc::new(Inner {
                peers,
                tcp_addr,
                stop: stop_tx,
                worker: Mutex::new(Some(worker)),
                arbiters: Mutex::new(workers),
                ws,
                inprocess,
                admin,
                password_auth,
                acl,
                tls,
                secure,
            }),
        })
    }
}

/// Says loudly when clients without a user name may connect on a listener other hosts can reach.
fn warn_if_open_to_anyone<'a>(config: &Config, listening: impl Iterator<Item = &'a SocketAddr>) {
    if !config.anonymous_allowed() {
        return;
    }
    for addr in listening.filter(|a| !a.ip().is_loopback()) {
        log::warn!(
            "ANONYMOUS ACCESS: any client may connect without a user name on {addr}, which other hosts can \
             reach; set `password_file` (anonymous clients are then refused) or `allow_anonymous = false`"
        );
    }
}

/// Starts the `$SYS` publisher and the admin API as the configuration asks.
fn start_admin_and_sys(
    config: &Config,
    core: &ArbiterHandle,
    peers: &SessionPeers,
    security: crate::admin::http::SecurityFigures,
    tls: &Option<Arc<crate::tls::Tls>>,
) -> Option<crate::admin::http::AdminServer> {
    let (router, retained, store) = (&peers.router, &peers.retained, &peers.store);
    if config.sys_interval_secs > 0 {
        let interval = Duration::from_secs(config.sys_interval_secs);
        let (router, retained) = (router.clone(), retained.clone());
        sys::SysPublisher::start_in_arbiter(core, move |_| {
            sys::SysPublisher::new(router, retained, interval)
        });
    }
    let durable = !matches!(config.durability(), Ok(crate::store::Durability::Off));
    let https = tls.as_ref().filter(|_| config.admin_tls);
    crate::admin::start(config, https, |token| crate::admin::http::AdminContext {
        router: router.clone(),
        retained: retained.clone(),
        store: store.clone(),
        token: token.into(),
        db_path: durable.then(|| Store::db_path(&config.data_dir)),
        started: std::time::Instant::now(),
        connections: peers.counters.clone(),
        security: security.clone(),
        tls: tls.clone(),
    })
}

/// The protocol settings of `config`, with the hooks' part as `[screen, notify, authenticate]` (see
/// [`crate::protocol::Settings`]).
fn session_settings(
    config: &Config,
    [hooks, notify, authenticate]: [bool; 3],
) -> Result<SessionSettings, Error> {
    let protocol = crate::protocol::Settings {
        max_qos: QoS::from_u8(config.max_qos).unwrap_or(QoS::ExactlyOnce),
        max_inflight: config.max_inflight,
        max_queued_messages: usize::try_from(config.max_queued_messages).unwrap_or(usize::MAX),
        overflow: config.overflow_policy()?,
        connect_timeout: Duration::from_secs(config.connect_timeout_secs),
        hooks,
        notify,
        authenticate,
        credit: crate::protocol::SESSION_CREDIT,
        v5: crate::protocol::v5::ServerLimits {
            receive_maximum: config.receive_maximum,
            topic_alias_maximum: config.topic_alias_maximum,
            maximum_packet_size: u32::try_from(config.max_packet_size_bytes).unwrap_or(u32::MAX),
            max_keepalive_secs: config.max_keepalive_secs,
            max_session_expiry_secs: config.max_session_expiry_secs,
            shared_subscriptions: config.shared_subscriptions,
        },
        limits: crate::protocol::Limits {
            max_client_id_len_bytes: config.max_client_id_len_bytes,
            max_topic_len_bytes: config.max_topic_len_bytes,
            max_topic_levels: config.max_topic_levels,
            max_subscriptions_per_client: config.max_subscriptions_per_client,
            max_outgoing_buffer_bytes: config.max_outgoing_buffer_bytes,
            max_queued_bytes: usize::try_from(config.max_queued_bytes).unwrap_or(usize::MAX),
        },
    };
    Ok(SessionSettings {
        max_packet_size_bytes: config.max_packet_size_bytes,
        max_connections: config.max_connections,
        max_connections_per_sec_per_ip: config.max_connections_per_sec_per_ip,
        max_publish_rate_msgs_per_sec: config.max_publish_rate_msgs_per_sec,
        max_publish_rate_bytes_per_sec: config.max_publish_rate_bytes_per_sec,
        in_process: Arc::new(crate::protocol::Settings {
            hooks: false,
            notify: false,
            authenticate: false,
            ..protocol.clone()
        }),
        protocol: Arc::new(protocol),
    })
}

struct Inner {
    /// The router, the retained actor and the store, as sessions reach them.
    peers: Arc<SessionPeers>,
    tcp_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    worker: Mutex<Option<StoreWorker>>,
    arbiters: Mutex<Vec<Arbiter>>,
    ws: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
    /// Where in-process subscribers run.
    inprocess: actix_rt::ArbiterHandle,
    admin: Option<crate::admin::http::AdminServer>,
    /// The password file's check, to reload.
    password_auth: Option<crate::auth::PasswordAuth>,
    /// The ACL file's rules, to reload.
    acl: Option<crate::auth::AclAuth>,
    /// The TLS certificate, to reload.
    tls: Option<Arc<crate::tls::Tls>>,
    /// The TLS and secure WebSocket listeners.
    secure: crate::transport::tls::TlsListeners,
}

/// A cloneable handle on a running broker.
#[derive(Clone)]
pub struct BrokerHandle {
    inner: Arc<Inner>,
}

impl BrokerHandle {
    /// Reads the password file again (SIGHUP and `POST /api/reload` do this): later CONNECTs are checked
    /// against it, connected clients stay. A file that does not parse changes nothing; the error names its
    /// line. Returns how many users it lists, `None` when no password file is configured.
    pub fn reload_password_file(&self) -> Result<Option<usize>, Error> {
        match &self.inner.password_auth {
            Some(auth) => Ok(auth.reload()?),
            None => Ok(None),
        }
    }

    /// Reads the ACL file again (SIGHUP and `POST /api/reload` do this): every client's next check uses the
    /// new rules, and nobody is disconnected. A file that does not parse changes nothing; the error names its
    /// line. Returns how many rules it holds, `None` when no ACL file is configured.
    pub fn reload_acl_file(&self) -> Result<Option<usize>, Error> {
        match &self.inner.acl {
            Some(acl) => Ok(acl.reload()?),
            None => Ok(None),
        }
    }

    /// Reads the TLS certificate and key files again (SIGHUP and `POST /api/reload` do this): later TLS
    /// connections get the new certificate, connected clients keep theirs. Files that cannot be used change
    /// nothing; the error names the file and what is wrong. Returns whether TLS is configured.
    pub fn reload_certificate(&self) -> Result<bool, Error> {
        match &self.inner.tls {
            Some(tls) => tls.reload().map(|()| true).map_err(Error::from),
            None => Ok(false),
        }
    }

    /// The address the MQTT-over-TLS listener is bound to, if it runs.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.inner.secure.tls_addr
    }

    /// The address the MQTT-over-secure-WebSocket listener is bound to, if it runs.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.inner.secure.wss.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the TCP listener is bound to, if it runs (the real port when configured with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The address the WebSocket listener is bound to, if it runs.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.inner.ws.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the admin API listens on, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin.as_ref().map(|a| a.addr())
    }

    /// Publishes a message as an in-process client; resolves once it is routed and, for what is stored
    /// (QoS > 0 for persistent subscribers, retained messages), durable as the durability setting promises.
    ///
    /// Hooks do not see these messages: the application is their author.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<bytes::Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        self.publish_with_properties(
            topic,
            payload,
            qos,
            retain,
            crate::codec::Properties::default(),
        )
        .await
    }

    /// Publishes a message with MQTT 5.0 properties (User Properties, Message Expiry Interval, Response
    /// Topic, Correlation Data, Content Type, Payload Format Indicator) as an in-process client; resolves as
    /// [`publish`](Self::publish) does. MQTT 5.0 subscribers get them unchanged; earlier ones get the message
    /// without them, and the expiry applies to every subscriber. Properties that are not message properties
    /// (a Topic Alias, Subscription Identifiers) are left out.
    pub async fn publish_with_properties(
        &self,
        topic: &str,
        payload: impl Into<bytes::Bytes>,
        qos: QoS,
        retain: bool,
        properties: crate::codec::Properties,
    ) -> Result<(), Error> {
        let properties = crate::codec::PublishProperties::message_of(&properties)?;
        inprocess::publish(
            &self.inner.peers.router,
            topic,
            payload.into(),
            qos,
            retain,
            properties,
        )
        .await
    }

    /// Subscribes an in-process client to `filter`; resolves once the subscription is in place (so a message
    /// published after it returns is received), with a bounded stream of the matching messages, retained
    /// ones first. Dropping the stream unsubscribes.
    ///
    /// The stream holds up to [`inprocess::SUBSCRIPTION_CAPACITY`] messages; beyond that messages wait in
    /// the subscription's session and flow control applies as for a network client with a clean session: a
    /// reader that lags holds publishers back; one that takes nothing for 0.8 s holds nobody back: its QoS 0
    /// messages are dropped (and counted) and the others wait in its queue, up to `max_queued_messages`.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
    ) -> Result<inprocess::Subscription, Error> {
        inprocess::subscribe(&self.inner.peers, &self.inner.inprocess, filter, qos).await
    }

    /// Live figures from the router.
    pub async fn router_stats(&self) -> Option<RouterStats> {
        self.inner.peers.router.send(GetRouterStats).await.ok()
    }

    /// Number of retained messages.
    pub async fn retained_count(&self) -> Option<usize> {
        self.inner
            .peers
            .retained
            .send(messages::CountRetained)
            .await
            .ok()
    }

    /// What a transport needs to start sessions (used by the WebSocket route).
    pub fn session_peers(&self) -> Arc<SessionPeers> {
        self.inner.peers.clone()
    }

    /// The store handle.
    pub fn store(&self) -> StoreHandle {
        self.inner.peers.store.clone()
    }

    /// Stops accepting, closes every connection, flushes the store and stops the broker's threads.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        if let Some(admin) = &self.inner.admin {
            admin.stop().await;
        }
        for (_, server) in self.inner.ws.iter().chain(self.inner.secure.wss.iter()) {
            server.pause().await;
        }
        let told = self
            .inner
            .peers
            .router
            .send(DisconnectAll)
            .await
            .unwrap_or(0);
        log::info!("shutting down: closing {told} connection(s)");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while tokio::time::Instant::now() < deadline {
            match self.router_stats().await {
                Some(stats) if stats.connected > 0 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
        for (_, server) in self.inner.ws.iter().chain(self.inner.secure.wss.iter()) {
            server.stop(true).await;
        }
        let worker = self.inner.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            let joined = actix_rt::task::spawn_blocking(move || worker.shutdown()).await;
            match joined {
                Ok(Ok(())) => log::info!("store flushed"),
                Ok(Err(e)) => log::error!("store shutdown failed: {e}"),
                Err(e) => log::error!("store shutdown panicked: {e}"),
            }
        }
        if let Ok(mut arbiters) = self.inner.arbiters.lock() {
            for arbiter in arbiters.drain(..) {
                arbiter.stop();
            }
        }
    }
}

/// A broker running in its own thread with its own actix System, for programs (and tests) that do not run one.
pub struct BackgroundBroker {
    handle: BrokerHandle,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundBroker {
    /// Starts a broker on a new thread and waits until it listens.
    pub fn start(config: Config) -> Result<BackgroundBroker, Error> {
        BackgroundBroker::start_broker(Broker::new(config))
    }

    /// Starts a configured [`Broker`] (with its hooks) on a new thread and waits until it listens.
    pub fn start_broker(broker: Broker) -> Result<BackgroundBroker, Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("harbormq-system".to_owned())
            .spawn(move || {
                let system = actix_rt::System::new();
                let sys = actix_rt::System::current();
                system.block_on(async move {
                    let started = broker.start().await;
                    let failed = started.is_err();
                    let _ = tx.send(started.map(|h| (h, sys)));
                    if failed {
                        actix_rt::System::current().stop();
                    }
                });
                let _ = system.run();
            })
            .map_err(|e| Error::Io {
                context: "cannot start the broker thread".to_owned(),
                source: e,
            })?;
        let (handle, system) = rx.recv().map_err(|_| Error::Stopped)??;
        Ok(BackgroundBroker {
            handle,
            system,
            thread: Some(thread),
        })
    }

    /// The broker's handle.
    pub fn handle(&self) -> &BrokerHandle {
        &self.handle
    }

    /// Shuts the broker down cleanly and waits for its thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let handle = self.handle.clone();
        let system = self.system.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        system.arbiter().spawn(async move {
            handle.shutdown().await;
            actix_rt::System::current().stop();
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        let _ = thread.join();
    }
}

impl Drop for BackgroundBroker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
