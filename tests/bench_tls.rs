//! `harbormq bench --tls` against a broker's TLS listener: a small fan-in and fan-out over TLS deliver every
//! message, trusting the broker's CA (`--cafile`) or with `--insecure`; `--tls` without either is refused.

mod common;
mod tls_support;

use clap::Parser;
use common::TestBroker;
use harbormq::loadgen::{run_report, BenchArgs, Report};
use tls_support::Ca;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn bench(args: &[&str]) -> anyhow::Result<Report> {
    let argv = ["bench"].iter().chain(args).copied();
    run_report(Cli::try_parse_from(argv).unwrap().bench)
}

/// Checks that a run delivered all `expected` messages.
fn delivered_all(report: Report, expected: u64) {
    assert!(report.ok, "errors: {:?}", report.errors);
    let delivery = report.delivery.unwrap();
    assert_eq!(delivery.expected, expected);
    assert_eq!(delivery.unique, expected);
    assert_eq!(delivery.missing, 0);
}

#[test]
fn bench_runs_fan_in_and_fan_out_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("bench CA");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let ca_file = ca.write(dir.path(), "ca");
    let broker = TestBroker::start_with(|c| {
        c.certfile = cert;
        c.keyfile = key;
        c.tls_bind = "127.0.0.1:0".to_owned();
        c.wss_bind = String::new();
    });
    let port = broker.handle().tls_addr().unwrap().port().to_string();
    let ca_file = ca_file.to_str().unwrap();
    let common = [
        "--host",
        "localhost",
        "--port",
        &port,
        "--quiet",
        "--timeout",
        "30",
        "--tls",
    ];
    let run = |scenario: &[&str], trust: &[&str]| {
        let args: Vec<&str> = scenario
            .iter()
            .chain(&common)
            .chain(trust)
            .copied()
            .collect();
        bench(&args)
    };
    let fan_in = [
        "fan-in",
        "--publishers",
        "2",
        "--messages",
        "500",
        "--qos",
        "1",
    ];
    delivered_all(run(&fan_in, &["--cafile", ca_file]).unwrap(), 1_000);
    let fan_out = [
        "fan-out",
        "--subscribers",
        "3",
        "--messages",
        "300",
        "--qos",
        "1",
    ];
    delivered_all(run(&fan_out, &["--insecure"]).unwrap(), 900);
    let error = run(&fan_in, &[]).unwrap_err().to_string();
    assert!(error.contains("--cafile"), "{error}");
}
