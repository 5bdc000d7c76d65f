//! MQTT over TLS: the handshake of each connection a TLS listener accepts (bounded in time and in number),
//! then a session over the encrypted stream, told the client certificate's identity when the listener takes
//! it as the user name. The listening itself is `tcp`'s; owns no protocol logic.

use crate::broker::session::{ClientStream, Session, SessionPeers};
use crate::protocol::Peer;
use crate::tls::Tls;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Handshakes under way at once per listener; beyond it a new connection is closed at once (and counted), so
/// a flood of connections that never finish their handshake holds bounded memory.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// What a TLS listener does with each accepted connection.
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    tls: Arc<Tls>,
    pending: AtomicUsize,
}

impl TlsAcceptor {
    /// Handshakes with the MQTT server configuration of `tls`.
    pub fn new(tls: Arc<Tls>) -> Self {
        TlsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls.mqtt_config())),
            tls,
            pending: AtomicUsize::new(0),
        }
    }

    /// Runs the handshake of `stream` on this thread, then starts its session here. A handshake that fails
    /// or takes longer than `connect_timeout_secs` closes the connection, counted in /metrics.
    pub(crate) fn start(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        peers: Arc<SessionPeers>,
    ) {
        super::tcp::set_nodelay(&stream, peer);
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            failed(
                &peers,
                peer,
                &format_args!("{MAX_PENDING_HANDSHAKES} TLS handshakes are under way already"),
            );
            return;
        }
        let this = Arc::clone(self);
        actix_rt::spawn(async move {
            let timeout = peers.settings.protocol.connect_timeout;
            let accepted = tokio::time::timeout(timeout, this.acceptor.accept(stream)).await;
            this.pending.fetch_sub(1, Ordering::Relaxed);
            match accepted {
                Ok(Ok(stream)) => {
                    let identity = this.tls.identity(stream.get_ref().1);
                    Session::start(
                        ClientStream {
                            io: Box::new(stream),
                            peer: Peer::Tls(peer),
                            identity,
                        },
                        peers,
                    );
                }
                Ok(Err(e)) => failed(&peers, peer, &format_args!("TLS handshake failed: {e}")),
                Err(_) => failed(
                    &peers,
                    peer,
                    &format_args!("no TLS handshake within {timeout:?}"),
                ),
            }
        });
    }
}

/// A connection closed before MQTT: counted, and logged at info (a client's mistake, not the broker's).
fn failed(peers: &SessionPeers, peer: SocketAddr, why: &dyn std::fmt::Display) {
    peers
        .counters
        .tls_handshakes_failed
        .fetch_add(1, Ordering::Relaxed);
    log::info!("{peer} (tls): {why}; connection closed");
}

/// The TLS listeners of a broker as they run.
#[derive(Default)]
pub(crate) struct TlsListeners {
    /// MQTT over TLS, if on.
    pub tls_addr: Option<SocketAddr>,
    /// MQTT over secure WebSocket, if on, with its server to stop.
    pub wss: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
}

/// Starts the MQTT-over-TLS listener (on every session thread) and the secure WebSocket listener that
/// `config` turns on, both with `tls`'s certificate; none without TLS.
pub(crate) async fn listen(
    config: &crate::config::Config,
    tls: Option<&Arc<Tls>>,
    arbiters: Vec<actix_rt::ArbiterHandle>,
    peers: &Arc<SessionPeers>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<TlsListeners, crate::error::Error> {
    let mut listeners = TlsListeners::default();
    let Some(tls) = tls else {
        return Ok(listeners);
    };
    let (tls_bind, wss_bind) = crate::tls::listener_addrs(config)?;
    if let Some(addr) = tls_bind {
        let acceptor = Some(Arc::new(TlsAcceptor::new(tls.clone())));
        let local =
            super::tcp::listen(addr, arbiters, peers.clone(), stop.clone(), acceptor).await?;
        log::info!("TLS certificate from {}", tls.certfile().display());
        log::info!("MQTT over TLS on {local}");
        listeners.tls_addr = Some(local);
    }
    if let Some(addr) = wss_bind {
        let threads = config.session_thread_count();
        let (local, server) = crate::web::serve(addr, peers.clone(), threads, Some(tls))?;
        log::info!(
            "MQTT over secure WebSocket on wss://{local}{}",
            crate::web::MQTT_WS_PATH
        );
        listeners.wss = Some((local, server));
    }
    Ok(listeners)
}
