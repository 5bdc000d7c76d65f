//! Persistence: QoS 1 publishes queued by the broker for offline persistent sessions, then their drain.
//! Owns the session set-up, the two measured phases and the removal of the sessions afterwards.

use tokio::time::Instant;

use super::{
    connect_publishers, publisher_plan, run_flow, secs_between, subscriber_plan, Flow, FlowOutcome,
    RunCtx, ScenarioError,
};
use crate::codec::QoS;
use crate::loadgen::args::{FlowArgs, PersistenceArgs};
use crate::loadgen::client::Conn;
use crate::loadgen::progress::Ending;
use crate::loadgen::report::{ending_name, Report};

/// Runs the persistence scenario and reports publish rate, drained count and drain rate.
pub async fn run(args: &PersistenceArgs) -> Result<Report, ScenarioError> {
    let ctx = RunCtx::new(&args.common)?;
    let mut report = ctx.report("persistence");
    report
        .param("subscribers", args.subscribers)
        .param("messages", args.messages)
        .param("qos", 1)
        .param("payload", args.payload)
        .param("inflight", args.inflight);
    if args.user_properties > 0 {
        report.param("user_properties", args.user_properties);
    }
    let topic = ctx.topic("persist");
    let ids: Vec<String> = (0..args.subscribers)
        .map(|i| ctx.client_id("durable", i))
        .collect();
    for id in &ids {
        remove_session(&ctx, id).await?;
        let conn = ctx
            .connect_subscribed(id, false, &topic, QoS::AtLeastOnce)
            .await?;
        disconnect(&ctx, conn, id).await?;
    }
    let publish = publish_phase(&ctx, args, &topic).await?;
    publish_figures(&mut report, &publish);
    let published_ok = publish.ending == Ending::Completed;
    let drain_started = Instant::now();
    let mut subscribers = Vec::with_capacity(ids.len());
    let mut resumed = 0;
    for id in &ids {
        let (conn, session_present) = ctx.connect(id, false).await?;
        resumed += u32::from(session_present);
        subscribers.push((conn, subscriber_plan(&ctx, 1, args.messages)));
    }
    let drain = run_flow(
        &ctx,
        Flow {
            label: "drain",
            subscribers,
            publishers: Vec::new(),
        },
    )
    .await;
    drain_figures(
        &ctx,
        &mut report,
        &drain,
        drain_started,
        args.subscribers,
        resumed,
    );
    if !published_ok {
        report.fail(format!("publishing {}", ending_name(publish.ending)));
    }
    if !args.keep_sessions {
        for id in &ids {
            if let Err(e) = remove_session(&ctx, id).await {
                report.fail(format!("removing session {id}: {e}"));
            }
        }
    }
    Ok(report)
}

async fn publish_phase(
    ctx: &RunCtx,
    args: &PersistenceArgs,
    topic: &str,
) -> Result<FlowOutcome, ScenarioError> {
    let shape = FlowArgs {
        qos: 1,
        payload: args.payload,
        inflight: args.inflight,
        user_properties: args.user_properties,
    };
    let plan = publisher_plan(ctx, 0, topic, &shape, args.messages, None)?;
    let flow = Flow {
        label: "publish",
        subscribers: Vec::new(),
        publishers: connect_publishers(ctx, vec![plan]).await?,
    };
    Ok(run_flow(ctx, flow).await)
}

fn drain_figures(
    ctx: &RunCtx,
    report: &mut Report,
    drain: &FlowOutcome,
    started: Instant,
    subscribers: u32,
    resumed: u32,
) {
    let delivery = drain.delivery();
    if let Some(last) = drain.last_delivery() {
        report.metric(
            "drain_rate",
            delivery.unique as f64 / secs_between(started, last),
            "msg/s",
        );
        report.metric("drain_time", secs_between(started, last), "s");
    }
    report.metric("drained", delivery.unique as f64, "msgs");
    report.metric("sessions_resumed", f64::from(resumed), "sessions");
    report.delivery = Some(delivery);
    if resumed < subscribers {
        report.fail(format!(
            "only {resumed} of {subscribers} sessions were present on reconnect"
        ));
    }
    let mut drain_report = ctx.report("drain");
    drain.fill_report(&mut drain_report, QoS::AtLeastOnce);
    report.ending = drain_report.ending;
    for e in drain_report.errors {
        report.fail(e);
    }
}

/// Records the publish phase's figures ahead of the drain's.
fn publish_figures(report: &mut Report, publish: &FlowOutcome) {
    let acked: u64 = publish.publishers.iter().map(|p| p.acked).sum();
    if let Some(done) = publish.publishers_done() {
        report.metric(
            "publish_rate",
            acked as f64 / secs_between(publish.started, done),
            "msg/s",
        );
        report.metric("publish_time", secs_between(publish.started, done), "s");
    }
    report.metric("published", acked as f64, "msgs");
    publish.note_broker_receive_maximum(report);
    for p in &publish.publishers {
        if let Some(e) = &p.error {
            report.fail(format!("publisher: {e}"));
        }
        if let Some(reason) = p.first_refusal {
            report.fail(format!(
                "publisher: the broker refused {} publishes, the first with {reason}",
                p.refused
            ));
        }
    }
}

/// Removes any stored session of `client_id` by connecting with clean session 1 [MQTT-3.1.2-6].
async fn remove_session(ctx: &RunCtx, client_id: &str) -> Result<(), ScenarioError> {
    let (conn, _) = ctx.connect(client_id, true).await?;
    disconnect(ctx, conn, client_id).await
}

async fn disconnect(ctx: &RunCtx, conn: Conn, client_id: &str) -> Result<(), ScenarioError> {
    ctx.bounded("disconnecting", conn.disconnect())
        .await?
        .map_err(|source| ScenarioError::Setup {
            what: format!("disconnect of {client_id}"),
            source,
        })
}
