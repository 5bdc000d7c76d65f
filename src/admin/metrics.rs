//! The Prometheus text exposition of the broker's figures, served at `/metrics`.
//! Pure formatting: the figures are gathered by the HTTP handler from the router, the retained actor and the store.

use crate::broker::messages::RouterStats;
use crate::store::{QueueTotals, StoreStats};
use std::fmt::Write as _;

/// Everything `/metrics` reports, gathered at one moment.
#[derive(Debug, Clone, Default)]
pub struct MetricFigures {
    /// The router's counters.
    pub router: RouterStats,
    /// Retained messages held.
    pub retained: usize,
    /// The store's counters.
    pub store: StoreStats,
    /// Queue figures of all sessions.
    pub queues: QueueTotals,
    /// Seconds since the broker started.
    pub uptime_secs: u64,
    /// CONNECTs refused by the password file or an authenticate hook.
    pub refused_connects: u64,
    /// Connections closed at once because `max_connections` were open.
    pub over_limit: u64,
    /// What the ACL file refused (publishes, subscriptions, messages not sent), when there is one.
    pub acl_denied: Option<[u64; 3]>,
    /// What the HTTP service answered (allow, deny, unreachable) and the answers taken from the cache, when
    /// there is one.
    pub http_answers: Option<[u64; 4]>,
    /// TLS connections closed because their handshake failed, timed out or found too many under way.
    pub tls_handshakes_failed: u64,
    /// Hits of every limit, by limit.
    pub limit_hits: Vec<(crate::protocol::Limit, u64)>,
}

struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        self.sample(name, "", value);
    }

    fn by_qos(&mut self, name: &str, help: &str, values: [u64; 3]) {
        self.header(name, "counter", help);
        for (qos, value) in values.iter().enumerate() {
            self.sample(name, &format!("qos=\"{qos}\""), value);
        }
    }
}

/// The figures in the Prometheus text format (version 0.0.4).
pub fn render(f: &MetricFigures) -> String {
    let mut out = Exposition(String::with_capacity(4096));
    let r = &f.router;
    out.single(
        "harbormq_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        f.uptime_secs,
    );
    out.single(
        "harbormq_connections",
        "gauge",
        "Connected clients.",
        r.connected,
    );
    out.single(
        "harbormq_connects_refused_total",
        "counter",
        "CONNECTs refused by the password file (bad user name or password, anonymous) or an authenticate hook.",
        f.refused_connects,
    );
    out.single(
        "harbormq_connections_over_limit_total",
        "counter",
        "Connections closed at once because max_connections were open.",
        f.over_limit,
    );
    if let Some(denied) = f.acl_denied {
        let name = "harbormq_acl_denied_total";
        out.header(
            name,
            "counter",
            "What the ACL file refused: publishes dropped, subscriptions refused, messages not sent to a subscriber.",
        );
        for (action, value) in ["publish", "subscribe", "read"].iter().zip(denied) {
            out.sample(name, &format!("action=\"{action}\""), value);
        }
    }
    if let Some(answers) = f.http_answers {
        let name = "harbormq_http_auth_answers_total";
        out.header(
            name,
            "counter",
            "Questions to the HTTP authentication service, by answer: allow, deny, unreachable, or cached.",
        );
        for (result, value) in ["allow", "deny", "unreachable", "cached"]
            .iter()
            .zip(answers)
        {
            out.sample(name, &format!("result=\"{result}\""), value);
        }
    }
    out.single(
        "harbormq_tls_handshakes_failed_total",
        "counter",
        "Connections to the MQTT-over-TLS listener closed before MQTT: handshake failed (untrusted or missing client certificate, no common version), timed out, or too many under way.",
        f.tls_handshakes_failed,
    );
    out.single(
        "harbormq_sessions",
        "gauge",
        "Sessions known to the router (connected, and offline persistent ones).",
        r.sessions,
    );
    out.single(
        "harbormq_subscriptions",
        "gauge",
        "Subscriptions of all sessions.",
        r.subscriptions,
    );
    out.single(
        "harbormq_retained_messages",
        "gauge",
        "Retained messages held.",
        f.retained,
    );
    out.by_qos(
        "harbormq_messages_received_total",
        "Messages received from publishers, by QoS.",
        r.messages_in_by_qos,
    );
    out.by_qos(
        "harbormq_messages_sent_total",
        "Deliveries to subscribers (sent or queued for them), by delivery QoS.",
        r.messages_out_by_qos,
    );
    render_flow(&mut out, r, f.store.messages_dropped);
    render_limits(&mut out, &f.limit_hits);
    render_queues_and_store(&mut out, f);
    out.0
}

/// Drops and flow control; `store_dropped` counts what the store's queue limits dropped.
fn render_flow(out: &mut Exposition, r: &RouterStats, store_dropped: u64) {
    out.header(
        "harbormq_messages_dropped_total",
        "counter",
        "Messages dropped: for a session whose client stopped reading, or by a full queue's overflow policy.",
    );
    out.sample(
        "harbormq_messages_dropped_total",
        "reason=\"session_stuck\"",
        r.dropped.saturating_sub(r.dropped_queue_full),
    );
    out.sample(
        "harbormq_messages_dropped_total",
        "reason=\"queue_full\"",
        r.dropped_queue_full + store_dropped,
    );
    out.single(
        "harbormq_stuck_sessions_total",
        "counter",
        "Times a session counted as stuck: out of credit with its client taking nothing for 0.8 s.",
        r.stuck_sessions,
    );
    out.single(
        "harbormq_routing_credits_kept_total",
        "counter",
        "Publish batches whose routing credit a session out of credit kept, holding the publisher back.",
        r.routing_credits_kept,
    );
    out.single(
        "harbormq_publisher_waits_total",
        "counter",
        "Times a publisher stopped reading its client for lack of routing credit.",
        r.publisher_waits,
    );
    out.single(
        "harbormq_publisher_wait_seconds_total",
        "counter",
        "Time publishers spent waiting for routing credit.",
        r.publisher_wait_ms as f64 / 1000.0,
    );
}

/// One counter per limit, labelled with its setting, and the QoS 0 messages the outgoing buffer bound dropped.
fn render_limits(out: &mut Exposition, hits: &[(crate::protocol::Limit, u64)]) {
    use crate::protocol::Limit;
    out.header(
        "harbormq_limit_hits_total",
        "counter",
        "Times a client limit bit, by setting: a connection, CONNECT, PUBLISH or filter refused, a publisher read more slowly, a QoS 0 message dropped.",
    );
    for (limit, n) in hits {
        out.sample(
            "harbormq_limit_hits_total",
            &format!("limit=\"{}\"", limit.name()),
            n,
        );
    }
    let dropped = hits
        .iter()
        .find(|(l, _)| *l == Limit::OutgoingBuffer)
        .map_or(0, |(_, n)| *n);
    out.single(
        "harbormq_qos0_dropped_total",
        "counter",
        "QoS 0 messages dropped because their client's unwritten output was above max_outgoing_buffer_bytes.",
        dropped,
    );
}

fn render_queues_and_store(out: &mut Exposition, f: &MetricFigures) {
    out.single(
        "harbormq_queued_messages",
        "gauge",
        "Queue entries of persistent sessions holding a message (waiting or awaiting acknowledgement).",
        f.queues.messages,
    );
    out.single(
        "harbormq_queued_bytes",
        "gauge",
        "Topic plus payload bytes of those entries.",
        f.queues.bytes,
    );
    out.single(
        "harbormq_queued_sessions",
        "gauge",
        "Persistent sessions with a non-empty queue.",
        f.queues.sessions,
    );
    let s = &f.store;
    out.header(
        "harbormq_store_commit_duration_seconds",
        "summary",
        "Time spent committing write transactions.",
    );
    out.sample(
        "harbormq_store_commit_duration_seconds_sum",
        "",
        s.commit_micros as f64 / 1e6,
    );
    out.sample(
        "harbormq_store_commit_duration_seconds_count",
        "",
        s.commits,
    );
    out.header(
        "harbormq_store_batch_operations",
        "summary",
        "Operations per committed transaction (group commit batch size).",
    );
    out.sample(
        "harbormq_store_batch_operations_sum",
        "",
        s.ops_applied + s.ops_coalesced,
    );
    out.sample("harbormq_store_batch_operations_count", "", s.commits);
    out.single(
        "harbormq_store_write_requests_total",
        "counter",
        "Write requests taken by the store.",
        s.write_requests,
    );
    out.single(
        "harbormq_store_failed_batches_total",
        "counter",
        "Batches whose apply or commit failed.",
        s.failed_batches,
    );
    out.single(
        "harbormq_store_refused_requests_total",
        "counter",
        "Write requests refused alone (a queue entry naming a message body nobody stored); their batch went on.",
        s.refused_requests,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_follows_its_type_line() {
        let figures = MetricFigures {
            router: RouterStats {
                connected: 3,
                messages_in_by_qos: [1, 2, 3],
                ..RouterStats::default()
            },
            store: StoreStats {
                commits: 4,
                commit_micros: 2_000_000,
                ..StoreStats::default()
            },
            ..MetricFigures::default()
        };
        let figures = MetricFigures {
            limit_hits: vec![(crate::protocol::Limit::TopicLength, 2)],
            ..figures
        };
        let text = render(&figures);
        assert!(text.contains("harbormq_connections 3\n"), "{text}");
        assert!(text.contains("harbormq_limit_hits_total{limit=\"max_topic_len_bytes\"} 2\n"));
        assert!(text.contains("harbormq_messages_received_total{qos=\"2\"} 3\n"));
        assert!(text.contains("harbormq_store_commit_duration_seconds_sum 2\n"));
        assert!(text.contains("harbormq_store_commit_duration_seconds_count 4\n"));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .strip_suffix("_sum")
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|b| typed.contains(*b))
                    .unwrap_or(name);
                assert!(typed.contains(base), "{line} has no TYPE line");
            }
        }
    }
}
