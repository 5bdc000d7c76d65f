//! The load generator against a real broker: a small fan-in run must deliver every message exactly as counted.
//! Uses Mosquitto from PATH on a free port (that test is skipped, with the reason printed, when it is missing)
//! and the harbormq binary, driven with MQTT 5.0 clients.

mod mosquitto;
mod needs;
// Only the broker process of the shared helper is used here, not its clients.
#[allow(dead_code)]
mod process;

use clap::Parser;
use harbormq::loadgen::{run_report, BenchArgs, Report};
use std::net::TcpListener;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto with room for the whole run in its queues, or `None` when it is not installed.
fn start_mosquitto() -> Option<mosquitto::Mosquitto> {
    mosquitto::start("allow_anonymous true\nmax_queued_messages 1000000\n")
}

fn bench(args: &[&str]) -> Report {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    run_report(cli.bench).unwrap()
}

/// Runs a 2 × 1,000 QoS 1 fan-in against the broker on `port`, with `extra` options, and checks the accounting.
fn small_fan_in(port: u16, extra: &[&str]) -> Report {
    let port = port.to_string();
    let mut args = vec![
        "fan-in",
        "--port",
        &port,
        "--publishers",
        "2",
        "--messages",
        "1000",
        "--qos",
        "1",
        "--timeout",
        "30",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let report = bench(&args);
    let delivery = report.delivery.unwrap();
    assert!(report.ok, "errors: {:?}", report.errors);
    assert_eq!(report.ending, "completed");
    assert_eq!(delivery.expected, 2_000);
    assert_eq!(delivery.unique, 2_000);
    assert_eq!(delivery.missing, 0);
    assert_eq!(delivery.unexpected, 0);
    // Per publisher and topic, QoS 1 order is kept [MQTT-4.6.0-2].
    assert_eq!(delivery.out_of_order, 0);
    report
}

#[test]
fn fan_in_qos1_against_mosquitto_delivers_every_message() {
    let Some(broker) = start_mosquitto() else {
        return;
    };
    let report = small_fan_in(broker.port, &[]);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["delivery"]["unique"], 2_000);
    assert_eq!(json["protocol"], 4);
    assert!(json["results"]["delivered_rate"].as_f64().unwrap() > 0.0);
    assert!(json["latency_us"]["count"].as_u64().unwrap() >= 2_000);
}

#[test]
fn v5_fan_in_with_user_properties_against_harbormq_delivers_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = process::BrokerProcess::start(dir.path(), "off");
    let report = small_fan_in(
        broker.port(),
        &["--protocol", "5", "--user-properties", "2"],
    );
    assert_eq!(report.protocol, 5);
    assert_eq!(report.params["user_properties"], 2);
    assert!(
        report.to_table().contains(" over MQTT 5.0: completed (ok)"),
        "{}",
        report.to_table()
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["protocol"], 5);
    assert_eq!(json["delivery"]["unique"], 2_000);
}

#[test]
fn unreachable_broker_is_an_error_not_a_hang() {
    let port = free_port().to_string();
    let cli = Cli::try_parse_from([
        "bench",
        "fan-in",
        "--port",
        &port,
        "--messages",
        "10",
        "--timeout",
        "10",
        "--quiet",
    ])
    .unwrap();
    let err = run_report(cli.bench).unwrap_err();
    assert!(err.to_string().contains("setting up"), "{err}");
}
