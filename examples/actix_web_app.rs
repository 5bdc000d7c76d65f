//! An actix-web application that embeds harbormq: `POST /publish/{topic}` publishes the request body into
//! the broker, `GET /` is a page that connects back with MQTT.js over WebSocket (`/mqtt`) and shows the
//! messages it receives, live.
//!
//! Run it with `cargo run --example actix_web_app -- 127.0.0.1:8080`, open http://127.0.0.1:8080/ and
//! publish with `curl -d 'hello' http://127.0.0.1:8080/publish/greetings`. The data lives in
//! `./example-data`; `HARBORMQ_DATA_DIR` moves it.

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use harbormq::codec::QoS;
use harbormq::{Broker, BrokerHandle, Config};
use std::net::SocketAddr;
use std::path::PathBuf;

const INDEX_HTML: &str = include_str!("static/index.html");
/// MQTT.js, vendored from the npm package `mqtt` (dist/mqtt.min.js, MIT licence: static/mqtt.LICENSE.md).
const MQTT_JS: &str = include_str!("static/mqtt.min.js");

/// The running application: its web server, the address it listens on and the embedded broker.
pub struct RunningApp {
    /// The web server; await it to run until it stops.
    pub server: Server,
    /// Where the server listens (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The embedded broker.
    pub broker: BrokerHandle,
}

impl RunningApp {
    /// A handle to stop the web server.
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }
}

/// Starts the broker (no TCP, WebSocket or admin listener of its own) and the web server on `listen`.
pub async fn start(listen: &str, data_dir: PathBuf) -> std::io::Result<RunningApp> {
    let config = Config {
        data_dir,
        // The app serves everything itself; the broker's admin API would be a second, unexpected port.
        admin_bind: String::new(),
        ..Config::default()
    };
    let broker = Broker::builder()
        .config(config)
        .tcp(None)
        .websocket(None)
        .start()
        .await
        .map_err(std::io::Error::other)?;
    let handle = broker.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .route("/", web::get().to(index))
            .route("/mqtt.min.js", web::get().to(mqtt_js))
            .route("/publish/{topic:.*}", web::post().to(publish))
            .route("/mqtt", harbormq::web::mqtt_ws(handle.clone()))
    })
    .workers(2)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
    Ok(RunningApp {
        server: server.run(),
        addr,
        broker,
    })
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(INDEX_HTML)
}

async fn mqtt_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript")
        .body(MQTT_JS)
}

/// Publishes the body to the topic at QoS 1; answers once the broker has routed (and stored) it.
async fn publish(
    broker: web::Data<BrokerHandle>,
    topic: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    match broker.publish(&topic, body, QoS::AtLeastOnce, false).await {
        Ok(()) => HttpResponse::Ok().body(format!("published to {topic}\n")),
        Err(e) => HttpResponse::BadRequest().body(format!("{e}\n")),
    }
}

#[allow(dead_code)]
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let data_dir = std::env::var_os("HARBORMQ_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./example-data"));
    let app = start(&listen, data_dir).await?;
    println!("open http://{}/", app.addr);
    // actix-web stops the server on SIGINT/SIGTERM; the broker then flushes its store.
    let result = app.server.await;
    app.broker.shutdown().await;
    result
}
