//! Latency: one publisher at a fixed rate to one subscriber; percentiles of send-to-receive time.
//! Owns the shape of that run; the timestamps travel in the payload.

use super::{
    connect_publishers, publisher_plan, qos_of, run_flow, subscriber_plan, Flow, RunCtx,
    ScenarioError,
};
use crate::loadgen::args::LatencyArgs;
use crate::loadgen::report::Report;

/// Runs the latency scenario and reports its percentiles.
pub async fn run(args: &LatencyArgs) -> Result<Report, ScenarioError> {
    let ctx = RunCtx::new(&args.common)?;
    let qos = qos_of(args.flow.qos);
    let messages = u32::try_from(u64::from(args.rate) * args.duration).map_err(|_| {
        ScenarioError::Invalid("rate × duration exceeds 4,294,967,295 messages".into())
    })?;
    let mut report = ctx.report("latency");
    report
        .param("rate", args.rate)
        .param("duration", args.duration)
        .param("qos", args.flow.qos)
        .param("payload", args.flow.payload)
        .param("inflight", args.flow.inflight);
    if args.flow.user_properties > 0 {
        report.param("user_properties", args.flow.user_properties);
    }
    let topic = ctx.topic("latency");
    let sub = ctx
        .connect_subscribed(&ctx.client_id("sub", 0), true, &topic, qos)
        .await?;
    let plan = publisher_plan(&ctx, 0, &topic, &args.flow, messages, Some(args.rate))?;
    let flow = Flow {
        label: "latency",
        subscribers: vec![(sub, subscriber_plan(&ctx, 1, messages))],
        publishers: connect_publishers(&ctx, vec![plan]).await?,
    };
    let outcome = run_flow(&ctx, flow).await;
    outcome.fill_report(&mut report, qos);
    Ok(report)
}
