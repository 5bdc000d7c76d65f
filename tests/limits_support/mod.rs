//! What the limit tests share: a broker with its admin API for `/metrics`, the figure of one metric, and a
//! bystander, an already connected client that measures publish-to-receive round trips while another client
//! abuses the broker. Every wait is bounded; nothing sleeps in the hope that the broker has caught up.
#![allow(dead_code)]

use crate::common::{Client, TestBroker, WAIT};
use harbormq::Config;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The admin token of the limit tests' brokers.
pub const TOKEN: &str = "limits-token";

/// The bound a bystander's round trip must stay under while the broker is abused.
pub const RTT_BOUND: Duration = Duration::from_secs(1);

/// A broker on 127.0.0.1:0 with its admin API, adjusted by `tweak`.
pub fn broker(tweak: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::start_with(|c| {
        c.durability = "off".to_owned();
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = TOKEN.to_owned();
        tweak(c);
    })
}

/// The figure of the sample `name` (with its labels, as `/metrics` writes them) at `admin`.
pub async fn metric_at(admin: std::net::SocketAddr, name: &str) -> f64 {
    let url = format!("http://{admin}");
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let client =
            harbormq::admin::client::AdminClient::new(&url, Some(TOKEN.to_owned())).unwrap();
        let text = client.request("GET", "/metrics").unwrap().text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name.as_str())?
                    .strip_prefix(' ')?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    })
    .await
    .unwrap()
}

/// The hits of one limit, `harbormq_limit_hits_total{limit="KEY"}`, in the broker's `/metrics`.
pub async fn hits(broker: &TestBroker, key: &str) -> f64 {
    let admin = broker.handle().admin_addr().unwrap();
    metric_at(
        admin,
        &format!("harbormq_limit_hits_total{{limit=\"{key}\"}}"),
    )
    .await
}

/// Round trips a bystander measured while something else ran.
#[derive(Debug)]
pub struct RoundTrips {
    /// How many were measured.
    pub count: usize,
    /// The longest.
    pub max: Duration,
}

impl RoundTrips {
    /// Asserts that at least one round trip was measured and none took `RTT_BOUND` or more.
    pub fn assert_bounded(&self) {
        assert!(self.count > 0, "no round trip was measured");
        assert!(
            self.max < RTT_BOUND,
            "a connected client's round trip took {:?} during the abuse ({} measured)",
            self.max,
            self.count
        );
    }
}

/// Runs `abuse` while an already connected client (connected before `abuse` starts) publishes to itself in a
/// loop and times each publish-to-receive round trip; returns what `abuse` returned and the round trips.
pub async fn with_bystander<T>(
    broker: &TestBroker,
    abuse: impl std::future::Future<Output = T>,
) -> (T, RoundTrips) {
    with_bystander_at(broker.addr().port(), abuse).await
}

/// `with_bystander` for a broker on 127.0.0.1:`port` (a broker process).
pub async fn with_bystander_at<T>(
    port: u16,
    abuse: impl std::future::Future<Output = T>,
) -> (T, RoundTrips) {
    let mut options = rumqttc::MqttOptions::new("bystander", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (mut bystander, _) = Client::connect(options).await;
    bystander
        .subscribe("bystander/rtt", rumqttc::QoS::AtMostOnce)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = tokio::spawn(measure(bystander, stop.clone()));
    let out = abuse.await;
    stop.store(true, Ordering::Relaxed);
    let trips = tokio::time::timeout(WAIT, measuring)
        .await
        .expect("the bystander's last round trip ends in time")
        .unwrap();
    (out, trips)
}

/// Times round trips until `stop`, at least one; each wait is bounded by the client helpers' `WAIT`.
async fn measure(mut client: Client, stop: Arc<AtomicBool>) -> RoundTrips {
    let mut trips = RoundTrips {
        count: 0,
        max: Duration::ZERO,
    };
    // Paced, not synchronised: one round trip every 20 ms leaves the cores to the abuse being measured.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    while trips.count == 0 || !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let started = Instant::now();
        client
            .publish(
                "bystander/rtt",
                rumqttc::QoS::AtMostOnce,
                false,
                trips.count.to_string(),
            )
            .await;
        let got = client.next_publish().await;
        assert_eq!(got.payload, trips.count.to_string().as_bytes());
        trips.max = trips.max.max(started.elapsed());
        trips.count += 1;
    }
    trips
}
