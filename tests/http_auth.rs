//! The HTTP authentication and authorisation service on a real broker: a small actix-web service, started by
//! each test, answers the broker's questions about CONNECTs, publishes and subscriptions; rumqttc clients see
//! the answers (CONNACK 5 / 3, SUBACK 0x80, dropped publishes). Also: what the service is told, the cache
//! (a repeated question is not asked again), the timeout, and "deny" against "last_known" while the service
//! is down.

mod common;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::{TestBroker, WAIT};
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the test service behaves, changed by the test while it runs.
#[derive(Default)]
struct Behaviour {
    /// Users allowed to connect, by user name and password.
    users: Vec<(String, String)>,
    /// Topics (and filters) nobody may use.
    forbidden_prefix: Option<String>,
    /// Answer 503 to everything.
    down: bool,
    /// Wait this long before answering.
    delay: Duration,
    /// Every question received, in order.
    asked: Vec<Value>,
}

/// The service on its own thread and actix System.
struct Service {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Service {
    fn drop(&mut self) {
        let server = self.server.clone();
        std::thread::spawn(move || actix_rt::System::new().block_on(server.stop(false)));
    }
}

impl Service {
    fn start(behaviour: Behaviour) -> Service {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let shared = behaviour.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let state = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/auth", web::post().to(auth))
                        .route("/acl", web::post().to(acl))
                })
                .workers(1)
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            })
        });
        let (addr, server) = rx.recv_timeout(WAIT).expect("the service starts");
        Service {
            addr,
            behaviour,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn asked(&self) -> Vec<Value> {
        self.behaviour.lock().unwrap().asked.clone()
    }

    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }
}

/// Records the question; `None` when the service is down, else after the configured delay.
async fn take(state: &web::Data<Mutex<Behaviour>>, question: &Value) -> Option<()> {
    let (down, delay) = {
        let mut b = state.lock().unwrap();
        b.asked.push(question.clone());
        (b.down, b.delay)
    };
    actix_rt::time::sleep(delay).await;
    (!down).then_some(())
}

fn result(allowed: bool) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "result": if allowed { "allow" } else { "deny" } }))
}

async fn auth(state: web::Data<Mutex<Behaviour>>, question: web::Json<Value>) -> HttpResponse {
    if take(&state, &question).await.is_none() {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let user = question["username"].as_str().unwrap_or_default();
    let password = question["password"].as_str().unwrap_or_default();
    let known = state
        .lock()
        .unwrap()
        .users
        .iter()
        .any(|(u, p)| u == user && p == password);
    result(known)
}

async fn acl(state: web::Data<Mutex<Behaviour>>, question: web::Json<Value>) -> HttpResponse {
    if take(&state, &question).await.is_none() {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let topic = question["topic"].as_str().unwrap_or_default();
    let forbidden = state
        .lock()
        .unwrap()
        .forbidden_prefix
        .as_ref()
        .is_some_and(|prefix| topic.starts_with(prefix.as_str()));
    result(!forbidden)
}

fn alice() -> Behaviour {
    Behaviour {
        users: vec![("alice".to_owned(), "secret".to_owned())],
        ..Behaviour::default()
    }
}

/// The CONNACK code a client with these credentials gets.
async fn connack(
    broker: &TestBroker,
    client_id: &str,
    user: &str,
    password: &str,
) -> ConnectReturnCode {
    let mut options = broker.options(client_id);
    options.set_credentials(user, password);
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    match tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("an answer in time")
    {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => ack.code,
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn the_service_decides_who_connects_and_is_told_who_asks() {
    let service = Service::start(alice());
    let url = service.url("/auth");
    let broker = TestBroker::start_with(|c| c.http_auth_url = url);
    assert_eq!(
        connack(&broker, "c1", "alice", "secret").await,
        ConnectReturnCode::Success
    );
    assert_eq!(
        connack(&broker, "c2", "alice", "wrong").await,
        ConnectReturnCode::NotAuthorized
    );
    let asked = service.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0]["clientid"], "c1");
    assert_eq!(asked[0]["username"], "alice");
    assert_eq!(asked[0]["password"], "secret");
    assert_eq!(asked[0]["protocol"], 4);
    assert!(
        asked[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{asked:?}"
    );
}

#[tokio::test]
async fn answers_are_cached_until_their_time_to_live() {
    let service = Service::start(alice());
    let url = service.url("/auth");
    let broker = TestBroker::start_with(|c| {
        c.http_auth_url = url;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "http-token".to_owned();
    });
    for _ in 0..3 {
        assert_eq!(
            connack(&broker, "c", "alice", "secret").await,
            ConnectReturnCode::Success
        );
    }
    assert_eq!(
        service.asked().len(),
        1,
        "asked once, then answered from the cache"
    );
    // A different password is a different question.
    assert_eq!(
        connack(&broker, "c", "alice", "other").await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(service.asked().len(), 2);
    let url = format!("http://{}", broker.handle().admin_addr().unwrap());
    let metrics = tokio::task::spawn_blocking(move || {
        let client =
            harbormq::admin::client::AdminClient::new(&url, Some("http-token".to_owned())).unwrap();
        client.request("GET", "/metrics").unwrap().text()
    })
    .await
    .unwrap();
    for line in [
        "harbormq_http_auth_answers_total{result=\"allow\"} 1",
        "harbormq_http_auth_answers_total{result=\"deny\"} 1",
        "harbormq_http_auth_answers_total{result=\"cached\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn the_service_decides_publish_and_subscribe_rights() {
    let service = Service::start(Behaviour {
        forbidden_prefix: Some("forbidden/".to_owned()),
        ..Behaviour::default()
    });
    let url = service.url("/acl");
    let broker = TestBroker::start_with(|c| c.http_acl_url = url);
    let mut watcher = broker.client("watcher").await;
    assert_eq!(
        watcher.subscribe("forbidden/x", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        watcher.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut publisher = broker.client("publisher").await;
    publisher
        .publish("forbidden/y", QoS::AtLeastOnce, false, "no")
        .await;
    publisher
        .publish("allowed/y", QoS::AtLeastOnce, false, "yes")
        .await;
    let first = watcher.next_publish().await;
    assert_eq!(first.topic, "allowed/y");
    let asked = service.asked();
    let publishes: Vec<&Value> = asked.iter().filter(|q| q["action"] == "publish").collect();
    assert_eq!(publishes.len(), 2, "{asked:?}");
    assert_eq!(publishes[0]["clientid"], "publisher");
    assert_eq!(publishes[0]["topic"], "forbidden/y");
}

#[tokio::test]
async fn a_service_that_does_not_answer_in_time_refuses_with_server_unavailable() {
    let service = Service::start(Behaviour {
        delay: Duration::from_secs(5),
        ..alice()
    });
    let url = service.url("/auth");
    let broker = TestBroker::start_with(|c| {
        c.http_auth_url = url;
        c.http_timeout_ms = 200;
    });
    let started = std::time::Instant::now();
    assert_eq!(
        connack(&broker, "c", "alice", "secret").await,
        ConnectReturnCode::ServiceUnavailable
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout bounds the wait: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn while_the_service_is_down_last_known_answers_stand_and_deny_refuses() {
    use harbormq::auth::http_backend::WhenUnreachable;
    for policy in [WhenUnreachable::LastKnown, WhenUnreachable::Deny] {
        let service = Service::start(alice());
        let url = service.url("/auth");
        let broker = TestBroker::start_with(|c| {
            c.http_auth_url = url;
            // Every answer is stale at once, so each CONNECT asks the service.
            c.http_cache_ttl_secs = 0;
            c.http_when_unreachable = policy;
        });
        assert_eq!(
            connack(&broker, "c", "alice", "secret").await,
            ConnectReturnCode::Success
        );
        assert_eq!(
            connack(&broker, "c", "alice", "bad").await,
            ConnectReturnCode::NotAuthorized
        );
        service.set(|b| b.down = true);
        let expected = match policy {
            WhenUnreachable::LastKnown => {
                [ConnectReturnCode::Success, ConnectReturnCode::NotAuthorized]
            }
            WhenUnreachable::Deny => [ConnectReturnCode::ServiceUnavailable; 2],
        };
        assert_eq!(
            connack(&broker, "c", "alice", "secret").await,
            expected[0],
            "{policy:?}"
        );
        assert_eq!(
            connack(&broker, "c", "alice", "bad").await,
            expected[1],
            "{policy:?}"
        );
        // A question never answered has nothing to fall back on.
        assert_eq!(
            connack(&broker, "c", "bob", "x").await,
            ConnectReturnCode::ServiceUnavailable,
            "{policy:?}"
        );
        assert_eq!(service.asked().len(), 5, "each CONNECT asked: {policy:?}");
    }
}

#[tokio::test]
async fn a_url_that_is_not_http_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = harbormq::Config {
        data_dir: dir.path().join("data"),
        bind: "127.0.0.1:0".to_owned(),
        http_auth_url: "ftp://auth.example".to_owned(),
        ..harbormq::Config::default()
    };
    let error = harbormq::BackgroundBroker::start(config)
        .err()
        .expect("start-up fails");
    assert!(error.to_string().contains("http_auth_url"), "{error}");
}
