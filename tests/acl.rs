//! The ACL file on a real broker with real clients (rumqttc, 3.1.1 and 5.0): publishes a client may not make
//! are dropped (and answered 0x87 in MQTT 5.0), subscriptions to filters it may not read get SUBACK 0x80 /
//! 0x87, a wide subscription never delivers a topic the client may not read, `%c`/`%u` patterns and
//! anonymous rules, will messages checked when published, the refusals counted in `/metrics`, and a reload
//! through the admin API. Every "nothing arrived" is proven by a marker message sent after it on the same
//! path: messages from one publisher to one subscriber keep their order.

mod common;

use common::{Client, TestBroker, WAIT};
use rumqttc::{QoS, SubscribeReasonCode};
use std::path::{Path, PathBuf};

const RULES: &str = "\
# Anonymous clients read the public tree, except its secrets.
topic read public/#
topic deny public/secret

user alice
topic readwrite public/#
topic write private/#
topic read alerts/+
topic deny private/locked

user watcher
topic read #

# Every client owns devices/<client id>/ and inbox/<user name>/.
pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

fn write_rules(dir: &Path, rules: &str) -> PathBuf {
    let path = dir.join("acl");
    std::fs::write(&path, rules).unwrap();
    path
}

fn broker(dir: &Path) -> TestBroker {
    let path = write_rules(dir, RULES);
    TestBroker::start_with(|c| {
        c.acl_file = path;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "acl-token".to_owned();
    })
}

async fn client_as(broker: &TestBroker, client_id: &str, user: Option<&str>) -> Client {
    let mut options = broker.options(client_id);
    if let Some(user) = user {
        options.set_credentials(user, "");
    }
    Client::connect(options).await.0
}

/// A GET of the admin API, off the runtime (the admin client blocks).
async fn admin(broker: &TestBroker, method: &'static str, path: &'static str) -> (u16, String) {
    let url = format!("http://{}", broker.handle().admin_addr().unwrap());
    tokio::task::spawn_blocking(move || {
        let client =
            harbormq::admin::client::AdminClient::new(&url, Some("acl-token".to_owned())).unwrap();
        let response = client.request(method, path).unwrap();
        (response.status, response.text())
    })
    .await
    .unwrap()
}

fn acl_denied(metrics: &str, action: &str) -> u64 {
    let prefix = format!("harbormq_acl_denied_total{{action=\"{action}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_publish_to_a_topic_the_client_may_not_write_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut watcher = client_as(&broker, "watcher", Some("watcher")).await;
    assert_eq!(
        watcher.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut alice = client_as(&broker, "alice-1", Some("alice")).await;
    // 3.1.1 cannot say no: the denied QoS 1 publishes are acknowledged as usual, and not delivered.
    alice
        .publish("private/locked", QoS::AtLeastOnce, false, "no")
        .await;
    alice
        .publish("alerts/fire", QoS::AtLeastOnce, false, "no")
        .await;
    alice
        .publish("elsewhere", QoS::AtMostOnce, false, "no")
        .await;
    alice
        .publish("private/box", QoS::AtLeastOnce, false, "yes")
        .await;
    let first = watcher.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), first.payload.as_ref()),
        ("private/box", b"yes".as_slice())
    );
    // Anonymous clients may write nothing but their own devices/<client id>/ tree.
    let mut anonymous = client_as(&broker, "dev-9", None).await;
    anonymous
        .publish("public/news", QoS::AtLeastOnce, false, "no")
        .await;
    anonymous
        .publish("devices/dev-8/x", QoS::AtLeastOnce, false, "no")
        .await;
    anonymous
        .publish("devices/dev-9/x", QoS::AtLeastOnce, false, "yes")
        .await;
    let next = watcher.next_publish().await;
    assert_eq!(next.topic, "devices/dev-9/x");
    let (_, metrics) = admin(&broker, "GET", "/metrics").await;
    assert_eq!(acl_denied(&metrics, "publish"), 5, "{metrics}");
}

#[tokio::test]
async fn a_subscription_to_a_filter_the_client_may_not_read_is_refused_with_0x80() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut anonymous = client_as(&broker, "anon-1", None).await;
    assert_eq!(
        anonymous.subscribe("public/+", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    for refused in ["private/#", "public/secret", "alerts/+", "$SYS/#"] {
        assert_eq!(
            anonymous.subscribe(refused, QoS::AtMostOnce).await,
            vec![SubscribeReasonCode::Failure],
            "{refused}"
        );
    }
    let mut alice = client_as(&broker, "alice-2", Some("alice")).await;
    // Write-only rights do not make a filter readable; a deny covering the filter refuses it.
    assert_eq!(
        alice.subscribe("private/+", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        alice.subscribe("alerts/+", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // Shared subscriptions are judged by their filter.
    assert_eq!(
        alice
            .subscribe("$share/g/alerts/fire", QoS::AtMostOnce)
            .await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    assert_eq!(
        alice.subscribe("$share/g/private/x", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    // %u: a user reads its own inbox only.
    assert_eq!(
        alice.subscribe("inbox/alice/#", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    assert_eq!(
        alice.subscribe("inbox/bob/#", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    let (_, metrics) = admin(&broker, "GET", "/metrics").await;
    assert_eq!(acl_denied(&metrics, "subscribe"), 7, "{metrics}");
}

#[tokio::test]
async fn a_wide_subscription_never_delivers_what_the_client_may_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    // Granted: the anonymous client may read part of what # matches.
    let mut anonymous = client_as(&broker, "anon-wide", None).await;
    assert_eq!(
        anonymous.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut alice = client_as(&broker, "alice-3", Some("alice")).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        alice.publish("private/box", qos, false, "hidden").await;
        alice.publish("public/secret", qos, false, "hidden").await;
        alice.publish("public/news", qos, false, "shown").await;
    }
    // Retained messages are screened the same way when a subscription brings them.
    alice
        .publish("private/kept", QoS::AtLeastOnce, true, "hidden")
        .await;
    alice
        .publish("public/kept", QoS::AtLeastOnce, true, "shown")
        .await;
    alice
        .publish("public/end", QoS::AtLeastOnce, false, "end")
        .await;
    let got = anonymous.publishes_until("public/end", b"end").await;
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "public/news",
            "public/news",
            "public/news",
            "public/kept",
            "public/end"
        ]
    );
    let mut late = client_as(&broker, "anon-late", None).await;
    late.subscribe("+/kept", QoS::AtLeastOnce).await;
    late.subscribe("public/end", QoS::AtLeastOnce).await;
    let retained = late.next_publish().await;
    assert_eq!(retained.topic, "public/kept");
    alice
        .publish("public/end", QoS::AtLeastOnce, false, "end")
        .await;
    let got = late.publishes_until("public/end", b"end").await;
    assert_eq!(got.len(), 1, "private/kept is not sent: {got:?}");
}

#[tokio::test]
async fn patterns_give_each_client_its_own_tree() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut dev1 = client_as(&broker, "dev1", None).await;
    let mut dev2 = client_as(&broker, "dev2", Some("bob")).await;
    assert_eq!(
        dev1.subscribe("devices/+/cmd", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    dev2.subscribe("devices/+/cmd", QoS::AtLeastOnce).await;
    dev2.subscribe("inbox/bob/+", QoS::AtLeastOnce).await;
    // dev1 may write to its own tree only; each device reads its own.
    dev1.publish("devices/dev2/cmd", QoS::AtLeastOnce, false, "no")
        .await;
    dev1.publish("devices/dev1/cmd", QoS::AtLeastOnce, false, "one")
        .await;
    dev2.publish("devices/dev2/cmd", QoS::AtLeastOnce, false, "two")
        .await;
    let one = dev1.next_publish().await;
    assert_eq!(
        (one.topic.as_str(), one.payload.as_ref()),
        ("devices/dev1/cmd", b"one".as_slice())
    );
    let two = dev2.next_publish().await;
    assert_eq!(
        (two.topic.as_str(), two.payload.as_ref()),
        ("devices/dev2/cmd", b"two".as_slice())
    );
    // dev2's message was routed before this marker (its PUBACK came first), so dev1 would have had it first.
    dev1.publish("devices/dev1/cmd", QoS::AtLeastOnce, false, "marker")
        .await;
    let next = dev1.next_publish().await;
    assert_eq!(
        (next.topic.as_str(), next.payload.as_ref()),
        ("devices/dev1/cmd", b"marker".as_slice()),
        "dev2's message on devices/dev2/cmd never reaches dev1"
    );
}

#[tokio::test]
async fn a_will_is_published_only_to_a_topic_its_client_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut watcher = client_as(&broker, "watcher-w", Some("watcher")).await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;
    let with_will = |client_id: &str, topic: &str| {
        let mut options = broker.options(client_id);
        options.set_credentials("alice", "");
        options.set_last_will(rumqttc::LastWill::new(
            topic,
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        options
    };
    let (denied, _) = Client::connect(with_will("alice-w1", "alerts/gone")).await;
    denied.kill().await;
    // The will's refusal is counted when the connection's end is handled.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = admin(&broker, "GET", "/metrics").await;
        if acl_denied(&metrics, "publish") == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the will was not refused: {metrics}"
        );
        tokio::task::yield_now().await;
    }
    let (allowed, _) = Client::connect(with_will("alice-w2", "private/gone")).await;
    allowed.kill().await;
    let will = watcher.next_publish().await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_ref()),
        ("private/gone", b"gone".as_slice())
    );
}

#[tokio::test]
async fn a_v5_client_is_told_0x87_for_a_denied_publish_and_subscription() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode as Code};
    use rumqttc::v5::mqttbytes::QoS as Qos5;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut options = MqttOptions::new("alice-v5", "127.0.0.1", broker.addr().port());
    options.set_credentials("alice", "");
    let (client, mut events) = AsyncClient::new(options, 10);
    let mut next = async || loop {
        match tokio::time::timeout(WAIT, events.poll())
            .await
            .expect("an event in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {}
            Ok(Event::Incoming(packet)) => return packet,
            Ok(Event::Outgoing(_)) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    };
    client
        .subscribe("private/#", Qos5::AtLeastOnce)
        .await
        .unwrap();
    match next().await {
        Packet::SubAck(ack) => assert_eq!(ack.return_codes, vec![Code::NotAuthorized]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    client
        .publish("alerts/x", Qos5::AtLeastOnce, false, "no")
        .await
        .unwrap();
    match next().await {
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReason::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    client
        .publish("private/x", Qos5::AtLeastOnce, false, "yes")
        .await
        .unwrap();
    match next().await {
        // Allowed, and nobody subscribes: 0x10 No matching subscribers.
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReason::NoMatchingSubscribers),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn the_admin_api_reloads_the_rules_without_dropping_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut anonymous = client_as(&broker, "anon-r", None).await;
    anonymous.subscribe("#", QoS::AtLeastOnce).await;
    let mut alice = client_as(&broker, "alice-r", Some("alice")).await;
    alice
        .publish("public/a", QoS::AtLeastOnce, false, "1")
        .await;
    assert_eq!(anonymous.next_publish().await.topic, "public/a");

    // The new rules take public/ away from anonymous clients and give them news/.
    write_rules(
        dir.path(),
        "topic read news/#
user alice
topic write #
",
    );
    let (status, body) = admin(&broker, "POST", "/api/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"acl_file_rules\":2"), "{body}");
    alice
        .publish("public/a", QoS::AtLeastOnce, false, "2")
        .await;
    alice.publish("news/a", QoS::AtLeastOnce, false, "3").await;
    let next = anonymous.next_publish().await;
    assert_eq!(
        (next.topic.as_str(), next.payload.as_ref()),
        ("news/a", b"3".as_slice())
    );

    // A file that does not parse is reported with its line, and the rules stay.
    write_rules(
        dir.path(),
        "topic read #
topic sideways x
",
    );
    let (status, body) = admin(&broker, "POST", "/api/reload").await;
    assert_eq!(status, 400);
    assert!(body.contains("line 2"), "{body}");
    alice
        .publish("public/a", QoS::AtLeastOnce, false, "4")
        .await;
    alice.publish("news/a", QoS::AtLeastOnce, false, "5").await;
    let next = anonymous.next_publish().await;
    assert_eq!(next.payload.as_ref(), b"5");
}

#[tokio::test]
async fn a_damaged_acl_file_stops_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_rules(
        dir.path(),
        "topic read a
user
",
    );
    let mut config = harbormq::Config {
        data_dir: dir.path().join("data"),
        bind: "127.0.0.1:0".to_owned(),
        ..harbormq::Config::default()
    };
    config.acl_file = path.clone();
    let error = harbormq::BackgroundBroker::start(config)
        .err()
        .expect("start-up fails");
    let message = error.to_string();
    assert!(message.contains("acl_file"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 2"), "{message}");
}
