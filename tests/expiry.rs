//! Session expiry (`session_expiry_secs`): an offline persistent session is removed with its queue once it
//! has been away that long; a connected one never expires.

mod common;

use common::*;
use rumqttc::QoS;
use std::time::Duration;

/// Polls the router's session count (there is no expiry event to wait on) until it is `wanted`, within 10 s.
async fn wait_until_sessions(broker: &TestBroker, wanted: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let stats = broker.handle().router_stats().await.unwrap();
            if stats.sessions == wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("sessions did not expire in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_session_expires_with_its_queue_and_an_online_one_stays() {
    let broker = TestBroker::start_with(|c| c.session_expiry_secs = 1);
    let (mut away, _) = broker.persistent_client("expiry-away", false).await;
    away.subscribe("exp/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let (mut stays, _) = broker.persistent_client("expiry-stays", false).await;
    stays.subscribe("exp/#", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("expiry-pub").await;
    publisher
        .publish("exp/1", QoS::AtLeastOnce, false, "queued")
        .await;

    // Two persistent sessions plus the clean publisher; the offline one goes.
    wait_until_sessions(&broker, 2).await;

    let (mut back, session_present) = broker.persistent_client("expiry-away", false).await;
    assert!(!session_present, "an expired session is not resumed");
    back.expect_no_publish(QUIET).await;

    // The connected session outlived the expiry and still receives what is published.
    assert_eq!(stays.next_publish().await.payload.as_ref(), b"queued");
    publisher
        .publish("exp/2", QoS::AtLeastOnce, false, "live")
        .await;
    assert_eq!(stays.next_publish().await.payload.as_ref(), b"live");
}
