//! What an actix-web application mounts to reach the broker: the MQTT-over-WebSocket route, and the small
//! server `harbormq serve` runs for it (over TLS too). Owns only the wiring; frames and sessions live in `transport::ws`.

use crate::broker::session::SessionPeers;
use crate::broker::BrokerHandle;
use crate::error::Error;
use crate::tls::Tls;
use crate::transport::ws;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpServer, Route};
use std::net::SocketAddr;
use std::sync::Arc;

/// The path `harbormq serve` serves MQTT over WebSocket on.
pub const MQTT_WS_PATH: &str = "/mqtt";

/// A route that speaks MQTT over WebSocket to the broker behind `handle`; mount it on any path.
///
/// Every connection becomes a session like a TCP one, with the same limits. The `mqtt` subprotocol (and
/// MQTT 3.1's `mqttv3.1`) is negotiated.
///
/// ```no_run
/// # async fn run(handle: harbormq::BrokerHandle) -> std::io::Result<()> {
/// use actix_web::{App, HttpServer};
/// HttpServer::new(move || App::new().route("/mqtt", harbormq::web::mqtt_ws(handle.clone())))
///     .bind(("127.0.0.1", 8083))?
///     .run()
///     .await
/// # }
/// ```
pub fn mqtt_ws(handle: BrokerHandle) -> Route {
    mqtt_ws_route(handle.session_peers())
}

pub(crate) fn mqtt_ws_route(peers: Arc<SessionPeers>) -> Route {
    web::get().to(move |req: HttpRequest, body: web::Payload| {
        let peers = peers.clone();
        async move { ws::accept(&req, body, peers) }
    })
}

/// Serves MQTT over WebSocket on `addr` at [`MQTT_WS_PATH`], over TLS with `tls`'s certificate when given
/// (wss); returns the bound address and the server handle.
pub(crate) fn serve(
    addr: SocketAddr,
    peers: Arc<SessionPeers>,
    workers: usize,
    tls: Option<&Arc<Tls>>,
) -> Result<(SocketAddr, ServerHandle), Error> {
    let server =
        HttpServer::new(move || App::new().route(MQTT_WS_PATH, mqtt_ws_route(peers.clone())))
            .workers(workers.max(1))
            // The broker's owner decides when to stop; SIGINT must not stop this server behind its back.
            .disable_signals()
            .shutdown_timeout(2);
    let failed = |source| Error::Io {
        context: format!("cannot listen for WebSocket on {addr}"),
        source,
    };
    let server = match tls {
        None => server.bind(addr).map_err(failed)?,
        Some(tls) => {
            let identities = tls.clone();
            server
                .on_connect(move |conn, data| note_identity(&identities, conn, data))
                .bind_rustls_0_23(addr, tls.mqtt_config())
                .map_err(failed)?
        }
    };
    let local = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            log::error!("WebSocket listener on {local} failed: {e}");
        }
    });
    Ok((local, handle))
}

/// Puts the user name a secure WebSocket connection's client certificate gives (`use_identity_as_username`)
/// where its route finds it (`HttpRequest::conn_data`).
fn note_identity(tls: &Tls, conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    type Stream = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(stream) = conn.downcast_ref::<Stream>() {
        if let Some(identity) = tls.identity(stream.get_ref().1) {
            data.insert(identity);
        }
    }
}
