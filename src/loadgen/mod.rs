//! `harbormq bench`: a load generator that drives any MQTT 3.1, 3.1.1 or 5.0 broker over TCP or TLS, like redis-benchmark.
//! Owns its own raw pipelined clients and runtime; never imports the broker, so it measures brokers alike.

mod args;
mod client;
mod payload;
mod progress;
mod publisher;
mod report;
mod scenarios;
mod subscriber;
#[cfg(test)]
mod test_broker;
mod tls;
mod tracker;
mod wire;

pub use args::{
    BenchArgs, CommonArgs, ConnectionsArgs, FanInArgs, FanOutArgs, FlowArgs, LatencyArgs,
    PersistenceArgs, Scenario,
};
pub use report::{Metric, Percentiles, Report};
pub use tracker::Delivery;

/// Worker threads of the generator's runtime: enough to keep up, few enough to leave the broker its cores.
const WORKER_THREADS: usize = 2;

/// Runs one scenario, prints its report (table or JSON) on stdout, and fails when messages are missing.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let json = args.scenario.common().json;
    let report = run_report(args)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if report.ok {
        Ok(())
    } else {
        anyhow::bail!(
            "{} run failed: {}",
            report.scenario,
            report.errors.join("; ")
        )
    }
}

/// Runs one scenario on a runtime of its own and returns its report without printing it.
pub fn run_report(args: BenchArgs) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async move {
        match &args.scenario {
            Scenario::FanIn(a) => scenarios::fan_in::run(a).await,
            Scenario::FanOut(a) => scenarios::fan_out::run(a).await,
            Scenario::Latency(a) => scenarios::latency::run(a).await,
            Scenario::Connections(a) => scenarios::connections::run(a).await,
            Scenario::Persistence(a) => scenarios::persistence::run(a).await,
        }
    })?;
    // Dropping the runtime closes whatever sockets a stopped task still held, without waiting on them.
    runtime.shutdown_background();
    Ok(report)
}
