//! What an actix-web application mounts to reach the broker: the MQTT-over-WebSocket route, and the small
//! server `harbormq serve` runs for it. Owns only the wiring; frames and sessions live in `transport::ws`.

use crate::broker::session::SessionPeers;
use crate::broker::BrokerHandle;
use crate::error::Error;
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

/// Serves MQTT over WebSocket on `addr` at [`MQTT_WS_PATH`]; returns the bound address and the server handle.
pub(crate) fn serve(
    addr: SocketAddr,
    peers: Arc<SessionPeers>,
    workers: usize,
) -> Result<(SocketAddr, ServerHandle), Error> {
    let server =
        HttpServer::new(move || App::new().route(MQTT_WS_PATH, mqtt_ws_route(peers.clone())))
            .workers(workers.max(1))
            // The broker's owner decides when to stop; SIGINT must not stop this server behind its back.
            .disable_signals()
            .shutdown_timeout(2)
            .bind(addr)
            .map_err(|source| Error::Io {
                context: format!("cannot listen for WebSocket on {addr}"),
                source,
            })?;
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
