//! The command line of `harbormq bench`: one subcommand per scenario, each with its own defaults.
//! Owns flag names, defaults and their validation; runs nothing.

use crate::codec::ProtocolLevel;
use clap::{Args, Subcommand};

/// Drives any MQTT 3.1, 3.1.1 or 5.0 broker over TCP and reports throughput, latency, loss and duplicates.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The load scenarios, each bounded in time.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// P publishers send to one wildcard subscriber.
    FanIn(FanInArgs),
    /// One publisher sends to N subscribers of the same topic.
    FanOut(FanOutArgs),
    /// One publisher at a fixed rate; latency percentiles from timestamps in the payload.
    Latency(LatencyArgs),
    /// C idle connections: connect rate, then hold them (and the broker's memory per connection).
    Connections(ConnectionsArgs),
    /// QoS 1 publishes queued for offline persistent sessions, then the drain when they return.
    Persistence(PersistenceArgs),
}

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker TCP port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Print one JSON object instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Upper bound on the whole run, in seconds; what arrived by then is reported.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Stop early when no message has arrived for this many seconds after the publishers finished.
    #[arg(long, default_value_t = 10)]
    pub stall: u64,
    /// Do not print progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Topic prefix and client id prefix; a random run id is appended so runs never collide.
    #[arg(long, default_value = "hmqbench")]
    pub prefix: String,
    /// MQTT protocol level every client speaks: 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0).
    #[arg(long, default_value = "4", value_parser = parse_protocol)]
    pub protocol: ProtocolLevel,
    /// User name every client sends in CONNECT.
    #[arg(long)]
    pub username: Option<String>,
    /// Password every client sends with `--username`.
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// Connect over TLS (give the broker's TLS port with --port, e.g. 8883).
    #[arg(long)]
    pub tls: bool,
    /// PEM CA certificates to trust with --tls; the broker's certificate must name --host.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cafile: Option<std::path::PathBuf>,
    /// With --tls, take any certificate without checking it (for brokers with a self-signed one).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
}

/// Parses `--protocol`: the protocol level byte of CONNECT.
pub fn parse_protocol(value: &str) -> Result<ProtocolLevel, String> {
    match value.trim() {
        "3" => Ok(ProtocolLevel::V31),
        "4" => Ok(ProtocolLevel::V311),
        "5" => Ok(ProtocolLevel::V5),
        other => Err(format!(
            "{other:?} is not a protocol level: 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0)"
        )),
    }
}

/// Message shape and flow control shared by the publishing scenarios.
#[derive(Debug, Clone, Args)]
pub struct FlowArgs {
    /// QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence number and send time).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=16_000_000))]
    pub payload: u32,
    /// Unacknowledged QoS 1/2 publishes each publisher keeps in flight (fewer if the broker's MQTT 5.0
    /// Receive Maximum is lower).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=65_535))]
    pub inflight: u16,
    /// User properties ("k0", "v0"), ("k1", "v1")... added to every PUBLISH; needs --protocol 5.
    #[arg(long, default_value_t = 0)]
    pub user_properties: u16,
}

/// Options of the fan-in scenario.
#[derive(Debug, Clone, Args)]
pub struct FanInArgs {
    /// Number of publishers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub publishers: u32,
    /// Messages sent by each publisher.
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// Message shape and flow control.
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Connection, output and time bounds.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of the fan-out scenario.
#[derive(Debug, Clone, Args)]
pub struct FanOutArgs {
    /// Number of subscribers.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub subscribers: u32,
    /// Messages sent by the publisher (each reaches every subscriber).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// Message shape and flow control.
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Connection, output and time bounds.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of the latency scenario.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Messages per second sent by the publisher.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate: u32,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Message shape and flow control.
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Connection, output and time bounds.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of the connections scenario.
#[derive(Debug, Clone, Args)]
pub struct ConnectionsArgs {
    /// Number of idle connections to open and hold.
    #[arg(long, default_value_t = 19_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// Connection attempts in progress at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 3)]
    pub hold: u64,
    /// Keepalive each connection announces in CONNECT, in seconds (0 turns it off).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Connect only: do not subscribe each connection to a filter of its own.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Broker process id: its VmRSS is read from /proc/PID/status before and after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connection, output and time bounds.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of the persistence scenario.
#[derive(Debug, Clone, Args)]
pub struct PersistenceArgs {
    /// Persistent (clean session 0) subscribers that are offline while the messages are published.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub subscribers: u32,
    /// QoS 1 messages published while the subscribers are offline.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=16_000_000))]
    pub payload: u32,
    /// Unacknowledged publishes the publisher keeps in flight (fewer if the broker's MQTT 5.0 Receive
    /// Maximum is lower).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=65_535))]
    pub inflight: u16,
    /// User properties ("k0", "v0"), ("k1", "v1")... added to every PUBLISH; needs --protocol 5.
    #[arg(long, default_value_t = 0)]
    pub user_properties: u16,
    /// Keep the subscribers' sessions in the broker after the run instead of removing them.
    #[arg(long)]
    pub keep_sessions: bool,
    /// Connection, output and time bounds.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Scenario {
    /// The options shared by every scenario.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Scenario::FanIn(a) => &a.common,
            Scenario::FanOut(a) => &a.common,
            Scenario::Latency(a) => &a.common,
            Scenario::Connections(a) => &a.common,
            Scenario::Persistence(a) => &a.common,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        scenario: Scenario,
    }

    fn fan_in(args: &[&str]) -> Result<FanInArgs, clap::Error> {
        let argv = ["bench", "fan-in"].iter().chain(args).copied();
        match Cli::try_parse_from(argv)?.scenario {
            Scenario::FanIn(a) => Ok(a),
            other => panic!("expected fan-in, got {other:?}"),
        }
    }

    #[test]
    fn protocol_defaults_to_311_without_user_properties() {
        let a = fan_in(&[]).unwrap();
        assert_eq!(a.common.protocol, ProtocolLevel::V311);
        assert_eq!(a.flow.user_properties, 0);
    }

    #[test]
    fn protocol_levels_3_4_and_5_are_accepted_and_others_refused() {
        for (arg, level) in [
            ("3", ProtocolLevel::V31),
            ("4", ProtocolLevel::V311),
            ("5", ProtocolLevel::V5),
        ] {
            assert_eq!(fan_in(&["--protocol", arg]).unwrap().common.protocol, level);
        }
        for bad in ["2", "6", "v5", ""] {
            assert!(fan_in(&["--protocol", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_properties_are_a_flow_and_persistence_option() {
        let a = fan_in(&["--protocol", "5", "--user-properties", "2"]).unwrap();
        assert_eq!(a.flow.user_properties, 2);
        let p = Cli::try_parse_from(["bench", "persistence", "--user-properties", "3"]).unwrap();
        assert!(matches!(p.scenario, Scenario::Persistence(p) if p.user_properties == 3));
        assert!(Cli::try_parse_from(["bench", "connections", "--user-properties", "1"]).is_err());
    }
}
