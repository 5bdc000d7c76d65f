//! Connections: open C idle MQTT connections as fast as the broker accepts them, hold them, check they live.
//! Owns the connect workers and the reading of the broker's resident memory from /proc.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{secs_between, RunCtx, ScenarioError};
use crate::codec::{Packet, QoS};
use crate::loadgen::args::ConnectionsArgs;
use crate::loadgen::client::{ClientError, Conn, ConnectOptions};
use crate::loadgen::progress::{stopped, Counters, StopRx};
use crate::loadgen::report::{ending_name, Percentiles, Report};
use crate::loadgen::subscriber::latency_histogram;

/// Connections one worker opened, with its connect latencies and the first error it met.
struct WorkerResult {
    conns: Vec<Conn>,
    latency: Histogram<u64>,
    last_connect: Option<Instant>,
    error: Option<String>,
}

/// Runs the connections scenario and reports connect rate, liveness and broker memory.
pub async fn run(args: &ConnectionsArgs) -> Result<Report, ScenarioError> {
    let ctx = Arc::new(RunCtx::new(&args.common)?);
    let mut report = ctx.report("connections");
    report
        .param("connections", args.connections)
        .param("concurrency", args.concurrency)
        .param("hold", args.hold)
        .param("keepalive", args.keepalive)
        .param("subscribed", !args.no_subscribe);
    let rss_before = args.pid.and_then(read_rss_kib);
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let next = Arc::new(AtomicU32::new(0));
    let workers = args.concurrency.min(args.connections);
    let started = Instant::now();
    let plan = ConnectPlan {
        total: args.connections,
        keep_alive_secs: args.keepalive,
        subscribe: !args.no_subscribe,
    };
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (ctx, next, counters, stop) =
                (ctx.clone(), next.clone(), counters.clone(), stop_rx.clone());
            tokio::spawn(async move { connect_worker(&ctx, plan, &next, &counters, stop).await })
        })
        .collect();
    let mut supervisor = ctx.supervisor("connections");
    supervisor.names = ["failed", "pinged", "connected"];
    let ending = supervisor.watch(&counters, workers, &stop_tx).await;
    report.ending = ending_name(ending);
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => report.fail(format!("connect worker failed: {e}")),
        }
    }
    let connected = connect_figures(&mut report, &results, started, args.no_subscribe);
    let hold_until = (Instant::now() + Duration::from_secs(args.hold)).min(ctx.deadline);
    tokio::time::sleep_until(hold_until).await;
    let rss_after = args.pid.and_then(read_rss_kib);
    memory_figures(&mut report, args.pid, rss_before, rss_after, connected);
    let alive = ping_all(
        &ctx,
        results
            .iter_mut()
            .map(|r| std::mem::take(&mut r.conns))
            .collect(),
        &counters,
    )
    .await;
    report.metric("alive", alive as f64, "conns");
    judge(
        &mut report,
        args.connections as usize,
        connected,
        alive,
        &results,
    );
    Ok(report)
}

/// The connect rate, time and latency of a run into `report`; returns how many connected.
fn connect_figures(
    report: &mut Report,
    results: &[WorkerResult],
    started: Instant,
    no_subscribe: bool,
) -> usize {
    let connected: usize = results.iter().map(|r| r.conns.len()).sum();
    let mut latency = latency_histogram();
    for r in results {
        let _ = latency.add(&r.latency);
    }
    if let Some(last) = results.iter().filter_map(|r| r.last_connect).max() {
        report.metric(
            "connect_rate",
            connected as f64 / secs_between(started, last),
            "conn/s",
        );
        report.metric("connect_time", secs_between(started, last), "s");
    }
    report.metric("connected", connected as f64, "conns");
    report.latency_us = Some(Percentiles::from_histogram(&latency));
    report.latency_of = if no_subscribe {
        "connect to CONNACK"
    } else {
        "connect to SUBACK"
    };
    connected
}

fn judge(
    report: &mut Report,
    wanted: usize,
    connected: usize,
    alive: usize,
    results: &[WorkerResult],
) {
    if connected < wanted {
        report.fail(format!("only {connected} of {wanted} connections opened"));
    }
    if alive < connected {
        report.fail(format!(
            "only {alive} of {connected} connections answered PINGREQ after the hold"
        ));
    }
    if let Some(e) = results.iter().find_map(|r| r.error.as_ref()) {
        report.fail(format!("first connect error: {e}"));
    }
}

fn memory_figures(
    report: &mut Report,
    pid: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
    connected: usize,
) {
    match (before, after) {
        (Some(before), Some(after)) => {
            report.metric("broker_rss_before", before as f64, "KiB");
            report.metric("broker_rss_after", after as f64, "KiB");
            // Signed: a broker that returns memory freed by earlier runs can shrink while connections are added.
            let per_conn = (after as f64 - before as f64) / connected.max(1) as f64;
            report.metric("broker_rss_per_conn", per_conn, "KiB");
        }
        _ => {
            if let Some(pid) = pid {
                report.fail(format!("could not read VmRSS of process {pid}"));
            }
        }
    }
}

/// What each connection does: how many to open, the keepalive they announce, whether each subscribes.
#[derive(Clone, Copy)]
struct ConnectPlan {
    total: u32,
    keep_alive_secs: u16,
    subscribe: bool,
}

/// Connects, and subscribes to a filter of the connection's own when the plan says so.
async fn open_idle(ctx: &RunCtx, plan: ConnectPlan, i: u32) -> Result<Conn, ClientError> {
    let client_id = ctx.client_id("idle", i);
    let options = ConnectOptions {
        keep_alive_secs: plan.keep_alive_secs,
        ..ctx.connect_options(true)
    };
    let (mut conn, _) = Conn::connect(&ctx.addr, &client_id, &options).await?;
    if plan.subscribe {
        conn.subscribe(&ctx.topic(&format!("idle/{i}")), QoS::AtMostOnce)
            .await?;
    }
    Ok(conn)
}

async fn connect_worker(
    ctx: &RunCtx,
    plan: ConnectPlan,
    next: &AtomicU32,
    counters: &Counters,
    mut stop: StopRx,
) -> WorkerResult {
    let mut result = WorkerResult {
        conns: Vec::new(),
        latency: latency_histogram(),
        last_connect: None,
        error: None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.total {
            break;
        }
        let t0 = Instant::now();
        let attempt = tokio::select! {
            r = open_idle(ctx, plan, i) => r,
            _ = stopped(&mut stop) => break,
        };
        match attempt {
            Ok(mut conn) => {
                let now = Instant::now();
                let _ = result
                    .latency
                    .record(now.duration_since(t0).as_micros() as u64);
                result.last_connect = Some(now);
                conn.shrink();
                result.conns.push(conn);
                Counters::add(&counters.received, 1);
            }
            Err(e) => {
                Counters::add(&counters.sent, 1);
                result.error.get_or_insert_with(|| e.to_string());
                break;
            }
        }
    }
    counters.finished.fetch_add(1, Ordering::AcqRel);
    result
}

/// Sends PINGREQ on every connection, counts PINGRESP answers, then disconnects them all.
async fn ping_all(ctx: &RunCtx, groups: Vec<Vec<Conn>>, counters: &Arc<Counters>) -> usize {
    let handles: Vec<_> = groups
        .into_iter()
        .map(|conns| {
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut alive = 0;
                for mut conn in conns {
                    if ping(&mut conn).await.is_ok() {
                        alive += 1;
                        Counters::add(&counters.acked, 1);
                    }
                    let _ = conn.disconnect().await;
                }
                alive
            })
        })
        .collect();
    let mut alive = 0;
    for h in handles {
        if let Ok(Ok(n)) =
            tokio::time::timeout_at(ctx.deadline.max(Instant::now() + Duration::from_secs(5)), h)
                .await
        {
            alive += n;
        }
    }
    alive
}

async fn ping(conn: &mut Conn) -> Result<(), ClientError> {
    conn.queue(&Packet::PingReq)?;
    conn.flush().await?;
    let answer = tokio::time::timeout(Duration::from_secs(5), conn.next_packet_blocking())
        .await
        .map_err(|_| ClientError::Unexpected("silence instead of PINGRESP"))??;
    match answer {
        Packet::PingResp => Ok(()),
        other => Err(ClientError::Unexpected(other.name())),
    }
}

/// The resident set size of process `pid` in KiB, from /proc/PID/status.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS` line of a /proc status file, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tmosquitto\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
    }

    #[test]
    fn missing_or_garbled_vm_rss_is_none() {
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        let rss = read_rss_kib(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
