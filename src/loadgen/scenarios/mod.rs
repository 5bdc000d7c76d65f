//! The scenarios and what they share: naming, connecting many clients, and running publishers against subscribers.
//! Owns the phases of a run and how their results are summed; the socket work is in `client`, `publisher` and `subscriber`.

pub mod connections;
pub mod fan_in;
pub mod fan_out;
pub mod latency;
pub mod persistence;

use crate::codec::{ProtocolLevel, QoS};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::args::{CommonArgs, FlowArgs};
use super::client::{ClientError, Conn, ConnectOptions, Credentials};
use super::progress::{Counters, Ending, Supervisor};
use super::publisher::{run_publisher, PublisherPlan, PublisherReport};
use super::report::{ending_name, Percentiles, Report};
use super::subscriber::{latency_histogram, run_subscriber, SubscriberPlan, SubscriberReport};
use super::tracker::{Delivery, SeqTracker};
use super::wire::{user_properties, PublishTemplate};

/// How long tasks get to hand back their results once told to stop.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// Why a scenario could not produce a report at all.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A connection needed to set the run up failed.
    #[error("setting up {what}: {source}")]
    Setup {
        /// Which connection.
        what: String,
        /// What went wrong.
        source: ClientError,
    },
    /// The run's time bound passed while setting up.
    #[error("the run timed out while {0}")]
    TimedOut(String),
    /// A parameter combination that cannot work.
    #[error("invalid parameters: {0}")]
    Invalid(String),
}

/// What every phase of a run shares: the broker address, names, clocks and the stop signal.
pub struct RunCtx {
    /// `host:port` of the broker.
    pub addr: String,
    /// The shared options.
    pub common: CommonArgs,
    /// Random id that keeps topics and client ids of this run apart from any other.
    pub run_id: String,
    /// Origin of payload timestamps.
    pub epoch: std::time::Instant,
    /// When the whole run must end.
    pub deadline: Instant,
    /// TLS of every connection, with `--tls`.
    pub tls: Option<super::tls::TlsClient>,
}

impl RunCtx {
    /// A context for one run with the given options; fails when `--tls` cannot be set up (its CA file).
    pub fn new(common: &CommonArgs) -> Result<RunCtx, ScenarioError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        let tls = match common.tls {
            true => Some(
                super::tls::TlsClient::new(&common.host, common.cafile.as_deref(), common.insecure)
                    .map_err(ScenarioError::Invalid)?,
            ),
            false => None,
        };
        Ok(RunCtx {
            addr: format!("{}:{}", common.host, common.port),
            common: common.clone(),
            run_id: format!("{:08x}", nanos ^ std::process::id().rotate_left(16)),
            epoch: std::time::Instant::now(),
            deadline: Instant::now() + Duration::from_secs(common.timeout),
            tls,
        })
    }

    /// The protocol level every client of the run speaks.
    pub fn level(&self) -> ProtocolLevel {
        self.common.protocol
    }

    /// An empty report for `scenario` against this run's broker, naming its protocol level.
    pub fn report(&self, scenario: &'static str) -> Report {
        Report::new(scenario, &self.addr, self.level())
    }

    /// CONNECT options at the run's level: keepalive off (the generator never idles long enough mid-run to need
    /// pings) and no Receive Maximum (the generator's subscribers acknowledge whatever they read at once).
    pub fn connect_options(&self, clean: bool) -> ConnectOptions {
        ConnectOptions {
            level: self.level(),
            clean,
            keep_alive_secs: 0,
            receive_maximum: None,
            credentials: self.common.username.clone().map(|username| Credentials {
                username,
                password: self.common.password.clone().unwrap_or_default(),
            }),
            tls: self.tls.clone(),
        }
    }

    /// A client id for the `i`th client playing `role`.
    pub fn client_id(&self, role: &str, i: u32) -> String {
        format!("{}-{}-{role}{i}", self.common.prefix, self.run_id)
    }

    /// A topic under this run's prefix.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}/{}/{suffix}", self.common.prefix, self.run_id)
    }

    /// A supervisor for one phase, labelled for progress lines.
    pub fn supervisor(&self, label: &str) -> Supervisor {
        Supervisor {
            label: label.to_string(),
            names: ["sent", "acked", "received"],
            quiet: self.common.quiet,
            deadline: self.deadline,
            stall: Duration::from_secs(self.common.stall.max(1)),
        }
    }

    /// Runs `fut` unless the run's deadline passes first.
    pub async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, ScenarioError> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| ScenarioError::TimedOut(what.to_string()))
    }

    /// Connects one client with the run's default options, mapping failure to a setup error that names it.
    pub async fn connect(
        &self,
        client_id: &str,
        clean: bool,
    ) -> Result<(Conn, bool), ScenarioError> {
        self.connect_with(client_id, &self.connect_options(clean))
            .await
    }

    /// Connects one client with `options`, mapping failure to a setup error that names it.
    pub async fn connect_with(
        &self,
        client_id: &str,
        options: &ConnectOptions,
    ) -> Result<(Conn, bool), ScenarioError> {
        let r = self
            .bounded(
                &format!("connecting {client_id}"),
                Conn::connect(&self.addr, client_id, options),
            )
            .await?;
        r.map_err(|source| ScenarioError::Setup {
            what: client_id.to_string(),
            source,
        })
    }

    /// Connects a client and subscribes it to `filter`.
    pub async fn connect_subscribed(
        &self,
        client_id: &str,
        clean: bool,
        filter: &str,
        qos: QoS,
    ) -> Result<Conn, ScenarioError> {
        let (mut conn, _) = self.connect(client_id, clean).await?;
        let granted = self
            .bounded("subscribing", conn.subscribe(filter, qos))
            .await?;
        match granted {
            Ok(g) if g == qos => Ok(conn),
            Ok(g) => Err(ScenarioError::Invalid(format!(
                "broker granted QoS {} for {filter}, asked {}",
                g.as_u8(),
                qos.as_u8()
            ))),
            Err(source) => Err(ScenarioError::Setup {
                what: format!("subscription of {client_id}"),
                source,
            }),
        }
    }
}

/// The QoS for a command-line value already range-checked by clap.
pub fn qos_of(value: u8) -> QoS {
    QoS::from_u8(value).unwrap_or(QoS::AtMostOnce)
}

/// Publishers and subscribers of one measured phase.
pub struct Flow {
    /// Label for progress lines.
    pub label: &'static str,
    /// Subscriber connections, already subscribed, with what each expects.
    pub subscribers: Vec<(Conn, SubscriberPlan)>,
    /// Publisher connections with their plans.
    pub publishers: Vec<(Conn, PublisherPlan)>,
}

/// What a phase produced.
pub struct FlowOutcome {
    /// How the phase ended.
    pub ending: Ending,
    /// When the publishers were started.
    pub started: Instant,
    /// One report per publisher.
    pub publishers: Vec<PublisherReport>,
    /// One report per subscriber.
    pub subscribers: Vec<SubscriberReport>,
    /// Tasks that failed to hand back a result.
    pub lost_tasks: Vec<String>,
}

/// Starts the subscribers, then the publishers, and supervises them until done, timeout or stall.
pub async fn run_flow(ctx: &RunCtx, flow: Flow) -> FlowOutcome {
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = (flow.subscribers.len() + flow.publishers.len()) as u32;
    let subs: Vec<JoinHandle<SubscriberReport>> = flow
        .subscribers
        .into_iter()
        .map(|(conn, plan)| {
            tokio::spawn(run_subscriber(
                conn,
                plan,
                counters.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let pubs: Vec<JoinHandle<PublisherReport>> = flow
        .publishers
        .into_iter()
        .map(|(conn, plan)| {
            tokio::spawn(run_publisher(conn, plan, counters.clone(), stop_rx.clone()))
        })
        .collect();
    let ending = ctx
        .supervisor(flow.label)
        .watch(&counters, tasks, &stop_tx)
        .await;
    let _ = stop_tx.send(true);
    let mut lost_tasks = Vec::new();
    let publishers = collect(pubs, "publisher", &mut lost_tasks).await;
    let subscribers = collect(subs, "subscriber", &mut lost_tasks).await;
    FlowOutcome {
        ending,
        started,
        publishers,
        subscribers,
        lost_tasks,
    }
}

async fn collect<T>(handles: Vec<JoinHandle<T>>, role: &str, lost: &mut Vec<String>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for (i, h) in handles.into_iter().enumerate() {
        let abort = h.abort_handle();
        match tokio::time::timeout(WIND_DOWN, h).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => lost.push(format!("{role} {i} failed: {e}")),
            Err(_) => {
                abort.abort();
                lost.push(format!("{role} {i} did not stop within {WIND_DOWN:?}"));
            }
        }
    }
    out
}

/// Subscriber plans expecting `messages` from each of `publishers` publishers.
pub fn subscriber_plan(ctx: &RunCtx, publishers: u32, messages: u32) -> SubscriberPlan {
    SubscriberPlan {
        tracker: SeqTracker::uniform(publishers, messages),
        epoch: ctx.epoch,
        disconnect_when_done: true,
    }
}

/// A publisher plan for publisher `index` sending `messages` to `topic` with the given shape, encoded at the
/// run's protocol level; its PUBLISH properties are built and encoded here, once per publisher.
pub fn publisher_plan(
    ctx: &RunCtx,
    index: u32,
    topic: &str,
    flow: &FlowArgs,
    messages: u32,
    rate: Option<u32>,
) -> Result<PublisherPlan, ScenarioError> {
    let qos = qos_of(flow.qos);
    if flow.user_properties > 0 && !ctx.level().is_v5() {
        return Err(ScenarioError::Invalid(format!(
            "--user-properties needs --protocol 5: protocol level {} has no properties",
            ctx.level().as_u8()
        )));
    }
    let properties = user_properties(flow.user_properties);
    let template =
        PublishTemplate::new(topic, qos, flow.payload as usize, ctx.level(), &properties)
            .map_err(|e| ScenarioError::Invalid(e.to_string()))?;
    Ok(PublisherPlan {
        index,
        template,
        qos,
        messages,
        window: flow.inflight,
        rate,
        epoch: ctx.epoch,
    })
}

/// Seconds between two instants, never zero so rates stay finite.
pub fn secs_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64().max(1e-9)
}

impl FlowOutcome {
    /// Delivery counts summed over subscribers.
    pub fn delivery(&self) -> Delivery {
        let mut total = Delivery::default();
        for s in &self.subscribers {
            total.add(&s.tracker.delivery());
        }
        total
    }

    /// All subscribers' latencies in one histogram.
    pub fn latency(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for s in &self.subscribers {
            let _ = h.add(&s.latency);
        }
        h
    }

    /// When the last subscriber received its last message.
    pub fn last_delivery(&self) -> Option<Instant> {
        self.subscribers.iter().filter_map(|s| s.last_at).max()
    }

    /// When the last publisher finished sending (QoS 0) or was last acknowledged (QoS 1/2).
    pub fn publishers_done(&self) -> Option<Instant> {
        self.publishers.iter().filter_map(|p| p.done_at).max()
    }

    /// Records the lowest Receive Maximum the publishers' MQTT 5.0 CONNACKs stated, which bounds their window.
    pub fn note_broker_receive_maximum(&self, report: &mut Report) {
        let lowest = self
            .publishers
            .iter()
            .filter_map(|p| p.broker_receive_maximum)
            .min();
        if let Some(max) = lowest {
            report.param("broker_receive_maximum", max);
        }
    }

    /// Fills the shared part of a report: ending, delivery, latency, throughput figures and failures.
    pub fn fill_report(&self, report: &mut Report, qos: QoS) {
        let delivery = self.delivery();
        report.ending = ending_name(self.ending);
        let sent: u64 = self.publishers.iter().map(|p| p.sent).sum();
        let acked: u64 = self.publishers.iter().map(|p| p.acked).sum();
        if let Some(done) = self.publishers_done() {
            report.metric(
                "publish_rate",
                acked as f64 / secs_between(self.started, done),
                "msg/s",
            );
        }
        if let Some(last) = self.last_delivery() {
            report.metric(
                "delivered_rate",
                delivery.unique as f64 / secs_between(self.started, last),
                "msg/s",
            );
            report.metric("elapsed", secs_between(self.started, last), "s");
        }
        report.metric("sent", sent as f64, "msgs");
        self.note_broker_receive_maximum(report);
        report.delivery = Some(delivery);
        report.latency_us = Some(Percentiles::from_histogram(&self.latency()));
        self.judge(report, &delivery, qos);
    }

    fn judge(&self, report: &mut Report, delivery: &Delivery, qos: QoS) {
        if self.ending != Ending::Completed {
            report.fail(format!(
                "run {} before every message arrived",
                ending_name(self.ending)
            ));
        }
        if delivery.missing > 0 {
            report.fail(format!(
                "{} of {} messages missing",
                delivery.missing, delivery.expected
            ));
        }
        if qos == QoS::ExactlyOnce && delivery.duplicates > 0 {
            report.fail(format!(
                "{} duplicates at QoS 2 [MQTT-4.3.3]",
                delivery.duplicates
            ));
        }
        for (i, p) in self.publishers.iter().enumerate() {
            if let Some(e) = &p.error {
                report.fail(format!("publisher {i}: {e}"));
            }
            if let Some(reason) = p.first_refusal {
                report.fail(format!(
                    "publisher {i}: the broker refused {} publishes, the first with {reason}",
                    p.refused
                ));
            }
        }
        for (i, s) in self.subscribers.iter().enumerate() {
            if let Some(e) = &s.error {
                report.fail(format!("subscriber {i}: {e}"));
            }
        }
        for e in &self.lost_tasks {
            report.fail(e.clone());
        }
    }
}

/// Connects one clean-session publisher per plan and pairs each connection with its plan.
///
/// In MQTT 5.0 each announces its window as Receive Maximum, and what its broker's CONNACK allows is checked:
/// the Maximum QoS and the Maximum Packet Size (the publisher keeps within the broker's Receive Maximum).
pub async fn connect_publishers(
    ctx: &RunCtx,
    plans: Vec<PublisherPlan>,
) -> Result<Vec<(Conn, PublisherPlan)>, ScenarioError> {
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let client_id = ctx.client_id("pub", plan.index);
        let options = ConnectOptions {
            receive_maximum: Some(plan.window),
            ..ctx.connect_options(true)
        };
        let (conn, _) = ctx.connect_with(&client_id, &options).await?;
        let limits = conn.limits();
        if let Some(max) = limits.maximum_qos.filter(|&q| q < plan.qos.as_u8()) {
            return Err(ScenarioError::Invalid(format!(
                "the broker's Maximum QoS is {max}, below the QoS {} asked for",
                plan.qos.as_u8()
            )));
        }
        if let Some(max) = limits
            .maximum_packet_size
            .filter(|&m| usize::try_from(m).is_ok_and(|m| m < plan.template.len()))
        {
            return Err(ScenarioError::Invalid(format!(
                "the broker's Maximum Packet Size is {max} bytes, a PUBLISH of this run takes {}",
                plan.template.len()
            )));
        }
        out.push((conn, plan));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::args::{BenchArgs, Scenario};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn fan_in(args: &[&str]) -> (RunCtx, FlowArgs) {
        let argv = ["bench", "fan-in"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().bench.scenario {
            Scenario::FanIn(a) => (RunCtx::new(&a.common).unwrap(), a.flow),
            _ => unreachable!(),
        }
    }

    #[test]
    fn user_properties_need_protocol_5() {
        for level in ["3", "4"] {
            let (ctx, flow) = fan_in(&["--protocol", level, "--user-properties", "2"]);
            let err = publisher_plan(&ctx, 0, "t", &flow, 1, None).err().unwrap();
            assert!(err.to_string().contains("--protocol 5"), "{err}");
        }
        let (ctx, flow) = fan_in(&["--protocol", "5", "--user-properties", "2"]);
        let plan = publisher_plan(&ctx, 0, "t", &flow, 1, None).unwrap();
        assert_eq!(plan.template.level(), ProtocolLevel::V5);
    }

    #[test]
    fn the_report_names_the_runs_protocol() {
        let (ctx, _) = fan_in(&["--protocol", "5"]);
        assert_eq!(ctx.report("fan-in").protocol, 5);
        assert_eq!(ctx.connect_options(false).level, ProtocolLevel::V5);
        let (ctx, _) = fan_in(&[]);
        assert_eq!(ctx.report("fan-in").protocol, 4);
    }
}
