//! Shared subscriptions `$share/{group}/{filter}` seen by MQTT 3.1.1 clients (which have them in Mosquitto
//! and EMQX too): a member that leaves hands its unacknowledged messages to another member, a group whose
//! members are all offline keeps its messages in a persistent member's queue, and retained messages are
//! not sent on a shared subscription. The MQTT 5.0 side is covered in `v5_clients.rs` and `v5_mqttjs.rs`.

mod common;

use common::*;
use harbormq::codec::{QoS, SubscribeReturnCode};
use rumqttc::QoS as RQoS;

/// Payloads `{prefix}0` .. `{prefix}{n-1}`, in order.
fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

// Section 4.8.2 (MQTT 5.0): "If the Server is in the process of sending a QoS 1 message to its chosen
// subscribing Client and the connection to that Client breaks before the Server has received an
// acknowledgement from the Client, the Server MAY wait for the Client to reconnect and retransmit the
// message to that Client. If the Client's Session terminates before the Client reconnects, the Server
// SHOULD send the Application Message to another Client that is subscribed to the same Shared
// Subscription." Member A (a raw 3.1.1 client with clean session, which never acknowledges) and member B
// (rumqttc, 3.1.1) share $share/g/sh/left; ten QoS 1 messages are published. A gets some of them (the
// group spreads over its online members), then its connection drops, which ends its clean session. B must
// end up with every one of the ten exactly once: its own share and those A never acknowledged.
#[tokio::test]
async fn a_leaving_member_hands_its_unacknowledged_messages_to_another_member() {
    let broker = TestBroker::start();
    let (mut member_a, _) = broker.raw_connected("member-a", true, 30).await;
    let suback = member_a
        .subscribe(1, "$share/g/sh/left", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        suback.return_codes,
        vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)]
    );
    let mut member_b = broker.client("member-b").await;
    assert_eq!(
        member_b
            .subscribe("$share/g/sh/left", RQoS::AtLeastOnce)
            .await,
        vec![rumqttc::SubscribeReasonCode::Success(RQoS::AtLeastOnce)]
    );

    let mut publisher = broker.client("publisher").await;
    let sent = numbered("left-", 10);
    for payload in &sent {
        publisher
            .publish("sh/left", RQoS::AtLeastOnce, false, payload.as_bytes())
            .await;
    }

    let first_of_a = member_a.recv_publish().await;
    assert_eq!(first_of_a.topic.as_str(), "sh/left");
    assert!(
        sent.contains(&String::from_utf8_lossy(&first_of_a.payload).into_owned()),
        "member A got {first_of_a:?}"
    );
    drop(member_a);

    let mut got = payloads(&member_b.publishes(sent.len()).await);
    member_b.expect_no_publish(QUIET).await;
    got.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(got, expected, "member B must get every message once");
}

// Section 4.8.2: a message to a shared subscription goes to one of its Sessions, whether or not the client
// of that session is connected. With the only member offline, its persistent session's queue keeps the
// group's QoS 1 messages, through a broker restart ([MQTT-3.1.2-5]: a stored session keeps the QoS 1 and 2
// messages for its subscriptions), and hands them over in order when the member comes back.
#[tokio::test]
async fn an_offline_persistent_member_keeps_the_group_messages() {
    let mut broker = TestBroker::start();
    let (mut member, _) = broker.persistent_client("member-p", false).await;
    assert_eq!(
        member.subscribe("$share/g/sh/off", RQoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Success(RQoS::AtLeastOnce)]
    );
    member.disconnect().await;

    let mut publisher = broker.client("publisher").await;
    let sent = numbered("off-", 5);
    for payload in &sent {
        publisher
            .publish("sh/off", RQoS::AtLeastOnce, false, payload.as_bytes())
            .await;
    }
    publisher.disconnect().await;
    broker.restart();

    let (mut member, session_present) = broker.persistent_client("member-p", false).await;
    assert!(session_present, "the member's session must have been kept");
    let got = member.publishes(sent.len()).await;
    assert_eq!(payloads(&got), sent);
    assert!(got.iter().all(|p| p.topic == "sh/off"));
}

// Section 4.8.2 of MQTT 5.0 ("Retained messages are not sent to the Session when it first subscribes" to a
// shared subscription) and 3.8.4: a retained message on sh/ret is sent to a plain subscriber of sh/ret but
// not to a member of $share/g/sh/ret, whose first message is the next live one, with RETAIN 0.
#[tokio::test]
async fn retained_messages_are_not_sent_on_a_shared_subscription() {
    let broker = TestBroker::start();
    let mut publisher = broker.client("publisher").await;
    publisher
        .publish("sh/ret", RQoS::AtLeastOnce, true, "kept")
        .await;

    let mut plain = broker.client("plain").await;
    plain.subscribe("sh/ret", RQoS::AtLeastOnce).await;
    let retained = plain.next_publish().await;
    assert_eq!(
        (retained.payload.as_ref(), retained.retain),
        (&b"kept"[..], true)
    );

    let (mut member, _) = broker.raw_connected("member", true, 30).await;
    member
        .subscribe(1, "$share/g/sh/ret", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("sh/ret", RQoS::AtLeastOnce, false, "live")
        .await;
    let first = member.recv_publish().await;
    assert_eq!(first.payload.as_ref(), b"live", "got {first:?}");
    assert!(!first.retain);
}
