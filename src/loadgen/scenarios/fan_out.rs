//! Fan-out: one publisher to N subscribers of the same topic, each of which must get every message.
//! Owns the shape of that run; the connections do the work.

use super::{
    connect_publishers, publisher_plan, qos_of, run_flow, subscriber_plan, Flow, RunCtx,
    ScenarioError,
};
use crate::loadgen::args::FanOutArgs;
use crate::loadgen::report::Report;

/// Runs the fan-out scenario and reports its figures.
pub async fn run(args: &FanOutArgs) -> Result<Report, ScenarioError> {
    let ctx = RunCtx::new(&args.common)?;
    let qos = qos_of(args.flow.qos);
    let mut report = ctx.report("fan-out");
    report
        .param("subscribers", args.subscribers)
        .param("messages", args.messages)
        .param("qos", args.flow.qos)
        .param("payload", args.flow.payload)
        .param("inflight", args.flow.inflight);
    if args.flow.user_properties > 0 {
        report.param("user_properties", args.flow.user_properties);
    }
    let topic = ctx.topic("fanout");
    let mut subscribers = Vec::with_capacity(args.subscribers as usize);
    for i in 0..args.subscribers {
        let conn = ctx
            .connect_subscribed(&ctx.client_id("sub", i), true, &topic, qos)
            .await?;
        subscribers.push((conn, subscriber_plan(&ctx, 1, args.messages)));
    }
    let plan = publisher_plan(&ctx, 0, &topic, &args.flow, args.messages, None)?;
    let flow = Flow {
        label: "fan-out",
        subscribers,
        publishers: connect_publishers(&ctx, vec![plan]).await?,
    };
    let outcome = run_flow(&ctx, flow).await;
    outcome.fill_report(&mut report, qos);
    Ok(report)
}
