//! The `$SYS/broker/...` publisher: every interval it reads the router's counters and publishes them, as
//! Mosquitto names them, as retained QoS 0 messages through the router. Owns only the load averages.

use super::messages::{CountRetained, GetRouterStats, PublishStatus, RouterStats};
use super::retained::RetainedStore;
use super::router::Router;
use crate::codec::QoS;
use crate::message::{now_ms, Message};
use crate::topic::TopicName;
use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The averaging windows of the load figures, in seconds, with their topic suffixes.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// Exponentially decaying averages of a rate, in events per minute, over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAverage {
    values: [f64; 3],
}

impl LoadAverage {
    /// Folds in `events` counted over `elapsed`.
    pub fn update(&mut self, events: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let per_minute = events as f64 * 60.0 / secs;
        for (value, (window, _)) in self.values.iter_mut().zip(WINDOWS) {
            let keep = (-secs / window).exp();
            *value = *value * keep + per_minute * (1.0 - keep);
        }
    }

    /// The three averages with their topic suffixes.
    pub fn figures(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        WINDOWS
            .iter()
            .zip(self.values)
            .map(|((_, name), value)| (*name, value))
    }
}

/// What one publication reports.
#[derive(Debug, Clone, Default)]
pub struct StatusFigures {
    /// The router's counters.
    pub router: RouterStats,
    /// Retained messages held.
    pub retained: usize,
    /// Seconds since the broker started.
    pub uptime_secs: u64,
    /// Messages received per minute.
    pub load_received: LoadAverage,
    /// Messages sent per minute.
    pub load_sent: LoadAverage,
}

/// The `$SYS` messages for `figures`, retained, QoS 0.
pub fn status_messages(figures: &StatusFigures) -> Vec<Arc<Message>> {
    let r = &figures.router;
    let mut pairs: Vec<(String, String)> = vec![
        (
            "version".into(),
            format!("harbormq version {}", env!("CARGO_PKG_VERSION")),
        ),
        ("uptime".into(), format!("{} seconds", figures.uptime_secs)),
        ("clients/connected".into(), r.connected.to_string()),
        ("clients/total".into(), r.sessions.to_string()),
        (
            "clients/disconnected".into(),
            r.sessions.saturating_sub(r.connected).to_string(),
        ),
        ("messages/received".into(), r.messages_in.to_string()),
        ("messages/sent".into(), r.messages_out.to_string()),
        ("publish/messages/dropped".into(), r.dropped.to_string()),
        ("subscriptions/count".into(), r.subscriptions.to_string()),
        (
            "retained messages/count".into(),
            figures.retained.to_string(),
        ),
    ];
    for (name, value) in figures.load_received.figures() {
        pairs.push((
            format!("load/messages/received/{name}"),
            format!("{value:.2}"),
        ));
    }
    for (name, value) in figures.load_sent.figures() {
        pairs.push((format!("load/messages/sent/{name}"), format!("{value:.2}")));
    }
    let now = now_ms();
    pairs
        .into_iter()
        .filter_map(|(suffix, value)| {
            let topic = TopicName::new(format!("$SYS/broker/{suffix}")).ok()?;
            Some(Arc::new(Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                arrived_at_ms: now,
                properties: None,
            }))
        })
        .collect()
}

/// The actor that publishes the `$SYS` topics.
pub struct SysPublisher {
    router: Addr<Router>,
    retained: Addr<RetainedStore>,
    interval: Duration,
    started: Instant,
    last: Option<(Instant, u64, u64)>,
    load_received: LoadAverage,
    load_sent: LoadAverage,
}

impl SysPublisher {
    /// A publisher reporting every `interval`.
    pub fn new(router: Addr<Router>, retained: Addr<RetainedStore>, interval: Duration) -> Self {
        SysPublisher {
            router,
            retained,
            interval,
            started: Instant::now(),
            last: None,
            load_received: LoadAverage::default(),
            load_sent: LoadAverage::default(),
        }
    }

    fn figures(&mut self, router: RouterStats, retained: usize) -> StatusFigures {
        let now = Instant::now();
        if let Some((at, received, sent)) = self.last {
            let elapsed = now.saturating_duration_since(at);
            self.load_received
                .update(router.messages_in.saturating_sub(received), elapsed);
            self.load_sent
                .update(router.messages_out.saturating_sub(sent), elapsed);
        }
        self.last = Some((now, router.messages_in, router.messages_out));
        StatusFigures {
            uptime_secs: self.started.elapsed().as_secs(),
            router,
            retained,
            load_received: self.load_received,
            load_sent: self.load_sent,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let (router, retained) = (self.router.clone(), self.retained.clone());
        let read = async move {
            let stats = router.send(GetRouterStats).await.ok()?;
            let count = retained.send(CountRetained).await.ok()?;
            Some((stats, count))
        };
        ctx.spawn(read.into_actor(self).map(|read, act, _| {
            if let Some((stats, count)) = read {
                let messages = status_messages(&act.figures(stats, count));
                act.router.do_send(PublishStatus(messages));
            }
        }));
    }
}

impl Actor for SysPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_converges_on_its_per_minute_value() {
        let mut load = LoadAverage::default();
        for _ in 0..2000 {
            load.update(10, Duration::from_secs(10));
        }
        for (_, value) in load.figures() {
            assert!((value - 60.0).abs() < 0.01, "{value}");
        }
    }

    #[test]
    fn the_one_minute_figure_reacts_fastest() {
        let mut load = LoadAverage::default();
        load.update(60, Duration::from_secs(10));
        let values: Vec<f64> = load.figures().map(|(_, v)| v).collect();
        assert!(values[0] > values[1] && values[1] > values[2], "{values:?}");
    }

    #[test]
    fn status_topics_follow_mosquitto_names() {
        let figures = StatusFigures {
            router: RouterStats {
                connected: 2,
                sessions: 5,
                messages_in: 7,
                ..RouterStats::default()
            },
            retained: 3,
            ..StatusFigures::default()
        };
        let messages = status_messages(&figures);
        let get = |topic: &str| {
            messages
                .iter()
                .find(|m| m.topic.as_str() == topic)
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        };
        assert_eq!(get("$SYS/broker/clients/connected").as_deref(), Some("2"));
        assert_eq!(get("$SYS/broker/clients/total").as_deref(), Some("5"));
        assert_eq!(
            get("$SYS/broker/clients/disconnected").as_deref(),
            Some("3")
        );
        assert_eq!(get("$SYS/broker/messages/received").as_deref(), Some("7"));
        assert_eq!(
            get("$SYS/broker/retained messages/count").as_deref(),
            Some("3")
        );
        assert!(get("$SYS/broker/load/messages/received/15min").is_some());
        assert!(messages
            .iter()
            .all(|m| m.retain && m.qos == QoS::AtMostOnce));
    }
}
