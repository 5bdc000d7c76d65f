//! Fan-in: P publishers, each on its own topic, to one subscriber of a wildcard filter covering them all.
//! Owns the shape of that run; the connections do the work.

use super::{
    connect_publishers, publisher_plan, qos_of, run_flow, subscriber_plan, Flow, RunCtx,
    ScenarioError,
};
use crate::loadgen::args::FanInArgs;
use crate::loadgen::report::Report;

/// Runs the fan-in scenario and reports its figures.
pub async fn run(args: &FanInArgs) -> Result<Report, ScenarioError> {
    let ctx = RunCtx::new(&args.common)?;
    let qos = qos_of(args.flow.qos);
    let mut report = ctx.report("fan-in");
    report
        .param("publishers", args.publishers)
        .param("messages", args.messages)
        .param("qos", args.flow.qos)
        .param("payload", args.flow.payload)
        .param("inflight", args.flow.inflight);
    if args.flow.user_properties > 0 {
        report.param("user_properties", args.flow.user_properties);
    }
    let filter = ctx.topic("fanin/#");
    let sub = ctx
        .connect_subscribed(&ctx.client_id("sub", 0), true, &filter, qos)
        .await?;
    let plans = (0..args.publishers)
        .map(|i| {
            let topic = ctx.topic(&format!("fanin/{i}"));
            publisher_plan(&ctx, i, &topic, &args.flow, args.messages, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let flow = Flow {
        label: "fan-in",
        subscribers: vec![(sub, subscriber_plan(&ctx, args.publishers, args.messages))],
        publishers: connect_publishers(&ctx, plans).await?,
    };
    let outcome = run_flow(&ctx, flow).await;
    outcome.fill_report(&mut report, qos);
    Ok(report)
}
