//! The outcome of one scenario run: figures, delivery counts and latency percentiles, as a table or as JSON.
//! Owns presentation only; every number is computed by the scenarios.

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;

use super::progress::Ending;
use super::tracker::Delivery;
use crate::codec::ProtocolLevel;

/// One named figure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Key in the JSON `results` object.
    pub key: &'static str,
    /// Numeric value.
    pub value: f64,
    /// Unit shown in the table.
    pub unit: &'static str,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest sample.
    pub max: u64,
    /// Arithmetic mean, rounded.
    pub mean: u64,
}

impl Percentiles {
    /// Reads the percentiles out of a histogram; all zero when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean().round() as u64,
        }
    }
}

/// Everything a scenario reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name as on the command line.
    pub scenario: &'static str,
    /// `host:port` of the broker driven.
    pub broker: String,
    /// The MQTT protocol level the clients spoke: 3 (3.1), 4 (3.1.1) or 5 (5.0).
    pub protocol: u8,
    /// Whether the run completed with nothing missing.
    pub ok: bool,
    /// How the run ended: completed, timed out or stalled.
    pub ending: &'static str,
    /// The parameters the run used.
    pub params: Map<String, Value>,
    /// Figures keyed by name.
    #[serde(serialize_with = "metrics_as_map")]
    pub results: Vec<Metric>,
    /// Delivery counts summed over subscribers, where messages were tracked.
    pub delivery: Option<Delivery>,
    /// Latency percentiles in microseconds, where measured.
    pub latency_us: Option<Percentiles>,
    /// What the latency measures.
    pub latency_of: &'static str,
    /// Errors met by connections, and why the run is not ok.
    pub errors: Vec<String>,
}

fn metrics_as_map<S: serde::Serializer>(metrics: &[Metric], s: S) -> Result<S::Ok, S::Error> {
    let map: Map<String, Value> = metrics
        .iter()
        .map(|m| (m.key.to_string(), round3(m.value)))
        .collect();
    map.serialize(s)
}

fn round3(v: f64) -> Value {
    serde_json::Number::from_f64((v * 1000.0).round() / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Name of an ending as reports spell it.
pub fn ending_name(ending: Ending) -> &'static str {
    match ending {
        Ending::Completed => "completed",
        Ending::TimedOut => "timed out",
        Ending::Stalled => "stalled",
    }
}

impl Report {
    /// An empty report for `scenario` against `broker`, driven by clients speaking `protocol`.
    pub fn new(scenario: &'static str, broker: &str, protocol: ProtocolLevel) -> Report {
        Report {
            scenario,
            broker: broker.to_string(),
            protocol: protocol.as_u8(),
            ok: true,
            ending: "completed",
            params: Map::new(),
            results: Vec::new(),
            delivery: None,
            latency_us: None,
            latency_of: "send to receive",
            errors: Vec::new(),
        }
    }

    /// Records a parameter of the run.
    pub fn param(&mut self, key: &str, value: impl Into<Value>) -> &mut Report {
        self.params.insert(key.to_string(), value.into());
        self
    }

    /// Records a figure.
    pub fn metric(&mut self, key: &'static str, value: f64, unit: &'static str) -> &mut Report {
        self.results.push(Metric { key, value, unit });
        self
    }

    /// Marks the run as failed for `reason`.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.ok = false;
        self.errors.push(reason.into());
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as a human-readable table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let status = if self.ok { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "harbormq bench {} against {} over {}: {} ({})",
            self.scenario,
            self.broker,
            protocol_name(self.protocol),
            self.ending,
            status
        );
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "  {}", params.join(" "));
        let mut rows: Vec<(String, String)> = self
            .results
            .iter()
            .map(|m| {
                (
                    m.key.replace('_', " "),
                    format!("{} {}", fmt_num(m.value), m.unit),
                )
            })
            .collect();
        if let Some(d) = &self.delivery {
            rows.push((
                "delivered".into(),
                format!("{} of {} expected", d.unique, d.expected),
            ));
            rows.push(("missing".into(), d.missing.to_string()));
            rows.push(("duplicates".into(), d.duplicates.to_string()));
            rows.push(("out of order".into(), d.out_of_order.to_string()));
            if d.unexpected > 0 {
                rows.push(("unexpected".into(), d.unexpected.to_string()));
            }
        }
        if let Some(p) = &self.latency_us {
            rows.push(("latency of".into(), self.latency_of.to_string()));
            for (name, v) in [
                ("p50", p.p50),
                ("p90", p.p90),
                ("p99", p.p99),
                ("p99.9", p.p99_9),
                ("max", p.max),
            ] {
                rows.push((
                    format!("latency {name}"),
                    format!("{:.3} ms", v as f64 / 1000.0),
                ));
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "  error: {e}");
        }
        out
    }
}

/// The name of protocol level `level` as the specifications spell it.
pub fn protocol_name(level: u8) -> String {
    match level {
        3 => "MQTT 3.1".to_string(),
        4 => "MQTT 3.1.1".to_string(),
        5 => "MQTT 5.0".to_string(),
        other => format!("MQTT protocol level {other}"),
    }
}

/// Formats a figure with thousands separators, keeping decimals only for small values.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() < 100.0 && v.fract() != 0.0 {
        return format!("{v:.2}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if v < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.count, 10_000);
        let close = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(close(p.p50, 5_000), "p50 {}", p.p50);
        assert!(close(p.p90, 9_000), "p90 {}", p.p90);
        assert!(close(p.p99, 9_900), "p99 {}", p.p99);
        assert!(close(p.p99_9, 9_990), "p99.9 {}", p.p99_9);
        assert!(close(p.max, 10_000), "max {}", p.max);
        assert!(close(p.mean, 5_000), "mean {}", p.mean);
    }

    #[test]
    fn a_single_outlier_shows_only_in_the_tail() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for _ in 0..999 {
            h.record(100).unwrap();
        }
        h.record(50_000).unwrap();
        let p = Percentiles::from_histogram(&h);
        assert_eq!((p.p50, p.p99), (100, 100));
        assert!(p.max >= 49_950 && p.max <= 50_050, "max {}", p.max);
    }

    #[test]
    fn empty_histogram_gives_zeroes() {
        let h = Histogram::<u64>::new(3).unwrap();
        assert_eq!(Percentiles::from_histogram(&h), Percentiles::default());
    }

    #[test]
    fn json_holds_results_as_an_object() {
        let mut r = Report::new("fan-in", "127.0.0.1:1883", ProtocolLevel::V311);
        r.param("qos", 1)
            .metric("delivered_rate", 1234.5678, "msg/s");
        r.fail("2 messages missing");
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["results"]["delivered_rate"], 1234.568);
        assert_eq!(v["params"]["qos"], 1);
        assert_eq!(v["ok"], false);
        assert_eq!(v["protocol"], 4);
        assert!(r.to_table().contains("delivered rate  1,235 msg/s"));
    }

    #[test]
    fn the_protocol_is_named_in_json_and_table() {
        let r = Report::new("fan-in", "127.0.0.1:1883", ProtocolLevel::V5);
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["protocol"], 5);
        assert!(r.to_table().starts_with(
            "harbormq bench fan-in against 127.0.0.1:1883 over MQTT 5.0: completed (ok)"
        ));
        let r = Report::new("latency", "h:1", ProtocolLevel::V31);
        assert!(r.to_table().contains(" over MQTT 3.1: "));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(999.0), "999");
        assert_eq!(fmt_num(2.5), "2.50");
        assert_eq!(fmt_num(-1000.0), "-1,000");
    }
}
