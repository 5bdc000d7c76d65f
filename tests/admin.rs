//! The admin commands and the admin API against the real binary: sessions holding queued messages inspected
//! live and offline, deletion both ways, retained messages, /metrics, and every failure with exit code 1.

mod admin_support;
mod common;
// The admin tests use only the broker process of the shared helper, not its clients.
#[allow(dead_code)]
mod process;

use admin_support::{harbormq, AdminBroker};
use common::Client;
use harbormq::admin::client::AdminClient;
use rumqttc::{MqttOptions, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const TOKEN: &str = "test-token";

/// An address where nothing listens, so the commands read the file.
const NOWHERE: &str = "http://127.0.0.1:1";

fn options(broker: &AdminBroker, client_id: &str, clean: bool) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.mqtt.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(clean);
    options
}

/// Connects a persistent session, subscribes to `filters` and disconnects cleanly.
async fn park_session(broker: &AdminBroker, client_id: &str, filters: &[(&str, QoS)]) {
    let (mut client, _) = Client::connect(options(broker, client_id, false)).await;
    for (filter, qos) in filters {
        client.subscribe(filter, *qos).await;
    }
    client.handle.disconnect().await.unwrap();
    client.wait_closed().await;
}

fn by_id(rows: &Value) -> HashMap<String, Value> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["client_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

/// Two parked sessions get 4 and 2 QoS 1 messages; a third stays online.
async fn populate(broker: &AdminBroker) -> Client {
    park_session(
        broker,
        "dev-a",
        &[("t/a", QoS::AtLeastOnce), ("t/all", QoS::AtLeastOnce)],
    )
    .await;
    park_session(broker, "dev-b", &[("t/b", QoS::ExactlyOnce)]).await;
    let (mut watcher, _) = Client::connect(options(broker, "watcher", false)).await;
    watcher.subscribe("w/#", QoS::AtMostOnce).await;
    let (mut publisher, _) = Client::connect(options(broker, "publisher", true)).await;
    for i in 0..3 {
        publisher
            .publish("t/a", QoS::AtLeastOnce, false, format!("hello-{i}"))
            .await;
    }
    publisher
        .publish("t/all", QoS::AtLeastOnce, false, "all")
        .await;
    publisher
        .publish("t/b", QoS::AtLeastOnce, false, "b-one")
        .await;
    publisher
        .publish("t/b", QoS::AtLeastOnce, false, "b-two")
        .await;
    publisher.handle.disconnect().await.unwrap();
    publisher.wait_closed().await;
    watcher
}

/// Topic plus payload bytes, as the queue counts them.
fn bytes(messages: &[(&str, &str)]) -> u64 {
    messages
        .iter()
        .map(|(t, p)| (t.len() + p.len()) as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_inspected_and_deleted_live_then_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut broker = AdminBroker::start(dir.path(), true, &["--admin-token", TOKEN]);
    let url = broker.url();
    let _watcher = populate(&broker).await;
    let live = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data, "--admin", &url, "--token", TOKEN]);
        harbormq(&all)
    };

    let rows = by_id(&live(&["sessions", "list", "--json"]).json());
    assert_eq!(rows.len(), 3, "persistent sessions only: {rows:?}");
    let a = &rows["dev-a"];
    assert_eq!(a["online"], false);
    assert_eq!(a["subscriptions"], 2);
    assert_eq!(a["queued_messages"], 4);
    let a_bytes = bytes(&[
        ("t/a", "hello-0"),
        ("t/a", "hello-1"),
        ("t/a", "hello-2"),
        ("t/all", "all"),
    ]);
    assert_eq!(a["queued_bytes"], a_bytes);
    assert_eq!(a["inflight"], 0);
    assert!(a["last_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows["dev-b"]["queued_messages"], 2);
    assert_eq!(rows["watcher"]["online"], true);
    assert_eq!(rows["watcher"]["queued_messages"], 0);

    let table = live(&["sessions", "list", "--sort", "queued"])
        .ok()
        .to_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CLIENT ID"), "{table}");
    assert!(
        lines[1].starts_with("dev-a") && lines[1].contains(" no "),
        "{table}"
    );
    assert!(
        lines[3].starts_with("watcher") && lines[3].contains(" yes "),
        "{table}"
    );
    let filtered = by_id(&live(&["sessions", "list", "--json", "--filter", "dev-"]).json());
    assert_eq!(filtered.len(), 2);

    let page = live(&[
        "sessions",
        "show",
        "dev-a",
        "--json",
        "--payload",
        "--limit",
        "3",
    ])
    .json();
    assert_eq!(page["subscriptions"].as_array().unwrap().len(), 2);
    let queued = page["queued"].as_array().unwrap();
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[0]["topic"], "t/a");
    assert_eq!(queued[0]["payload"], "hello-0");
    assert_eq!(queued[0]["qos"], 1);
    assert_eq!(queued[0]["state"], "queued");
    let next = page["next_after"].as_u64().expect("a second page");
    let rest = live(&[
        "sessions",
        "show",
        "dev-a",
        "--json",
        "--after",
        &next.to_string(),
    ])
    .json();
    let rest = rest["queued"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["topic"], "t/all");
    assert!(rest[0]["payload"].is_null(), "no payload unless asked");
    let text = live(&["sessions", "show", "dev-b"]).ok().to_owned();
    assert!(
        text.contains("t/b") && text.contains("queued, this page (2)"),
        "{text}"
    );

    let stats = live(&["stats", "--json"]).json();
    assert_eq!(stats["source"], "live");
    assert_eq!(stats["connected_clients"], 1);
    assert_eq!(stats["persistent_sessions"], 3);
    assert_eq!(stats["messages_in"], 6);
    assert_eq!(stats["queued_messages"], 6);

    let client = AdminClient::new(&url, Some(TOKEN.to_owned())).unwrap();
    let response = client.request("GET", "/metrics").unwrap();
    assert_eq!(response.status, 200);
    let m = metrics(&response.text());
    assert_eq!(m["harbormq_connections"], 1.0);
    assert_eq!(m["harbormq_messages_received_total{qos=\"1\"}"], 6.0);
    assert_eq!(m["harbormq_messages_received_total{qos=\"0\"}"], 0.0);
    assert_eq!(m["harbormq_messages_sent_total{qos=\"1\"}"], 6.0);
    assert_eq!(m["harbormq_queued_messages"], 6.0);
    assert_eq!(m["harbormq_queued_sessions"], 2.0);
    assert!(m["harbormq_store_commit_duration_seconds_count"] >= 1.0);
    assert!(m["harbormq_store_batch_operations_sum"] >= 6.0);
    let anonymous = AdminClient::new(&url, None).unwrap();
    assert_eq!(anonymous.request("GET", "/metrics").unwrap().status, 401);
    assert_eq!(anonymous.request("GET", "/health").unwrap().status, 200);

    harbormq(&[
        "sessions",
        "list",
        "--data-dir",
        &data,
        "--admin",
        &url,
        "--token",
        "wrong",
    ])
    .fails_with("refused the token");
    live(&["sessions", "show", "nobody"]).fails_with("no stored session");
    live(&["sessions", "delete", "nobody"]).fails_with("no session");

    live(&["sessions", "delete", "dev-b"]).ok();
    live(&["sessions", "delete", "watcher"]).ok();
    let rows = by_id(&live(&["sessions", "list", "--json"]).json());
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["dev-a"]);
    assert_eq!(live(&["stats", "--json"]).json()["connected_clients"], 0);
    broker.stop();

    let offline = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data, "--admin", NOWHERE]);
        harbormq(&all)
    };
    let rows = offline(&["sessions", "list", "--json"]).json();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["client_id"], "dev-a");
    assert_eq!(rows[0]["online"], false);
    assert_eq!(rows[0]["queued_messages"], 4);
    assert_eq!(rows[0]["queued_bytes"], a_bytes);
    let table = offline(&["sessions", "list"]).ok().to_owned();
    assert!(table.lines().nth(1).unwrap().contains(" - "), "{table}");
    let page = offline(&["sessions", "show", "dev-a", "--json"]).json();
    assert_eq!(page["queued"].as_array().unwrap().len(), 4);
    let stats = offline(&["stats", "--json"]).json();
    assert_eq!(stats["source"], "offline");
    assert_eq!(stats["persistent_sessions"], 1);
    assert_eq!(stats["queued_messages"], 4);
    assert_eq!(stats["queued_bytes"], a_bytes);
    assert!(stats["database_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["connected_clients"].is_null(),
        "no live figures offline: {stats}"
    );
    offline(&["sessions", "show", "nobody"]).fails_with("unknown client id");
    offline(&["sessions", "delete", "nobody"]).fails_with("unknown client id");
    offline(&["sessions", "delete", "dev-a"]).ok();
    assert_eq!(
        offline(&["sessions", "list", "--json"]).json(),
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_deleted_live_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut broker = AdminBroker::start(dir.path(), true, &["--admin-token", TOKEN]);
    let url = broker.url();
    park_session(&broker, "old-1", &[("x", QoS::AtLeastOnce)]).await;
    park_session(&broker, "old-2", &[("x", QoS::AtLeastOnce)]).await;
    let (_online, _) = Client::connect(options(&broker, "online", false)).await;
    let run = |args: &[&str], admin: &str| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data, "--admin", admin, "--token", TOKEN]);
        harbormq(&all)
    };
    let out = run(
        &["sessions", "delete", "--expired", "--older-than", "3600"],
        &url,
    );
    assert!(out.ok().contains("deleted 0 expired"), "{}", out.stdout);
    let out = run(
        &["sessions", "delete", "--expired", "--older-than", "0"],
        &url,
    );
    assert!(out.ok().contains("deleted 2 expired"), "{}", out.stdout);
    let rows = by_id(&run(&["sessions", "list", "--json"], &url).json());
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        vec!["online"],
        "the online session stays"
    );
    broker.stop();
    let out = run(
        &["sessions", "delete", "--expired", "--older-than", "0"],
        NOWHERE,
    );
    assert!(out.ok().contains("deleted 1 expired"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_listed_and_deleted_live_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut broker = AdminBroker::start(dir.path(), true, &["--admin-token", TOKEN]);
    let url = broker.url();
    let (mut publisher, _) = Client::connect(options(&broker, "pub", true)).await;
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, "one")
        .await;
    publisher
        .publish("r/with space", QoS::AtLeastOnce, true, "two!")
        .await;
    publisher
        .publish("s/3", QoS::AtMostOnce, true, "three")
        .await;
    publisher.publish("r/1", QoS::AtLeastOnce, true, "").await;
    publisher
        .publish("r/1", QoS::AtLeastOnce, true, "uno")
        .await;
    let run = |args: &[&str], admin: &str| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data, "--admin", admin, "--token", TOKEN]);
        harbormq(&all)
    };
    let rows = run(&["retained", "list", "r/#", "--json"], &url).json();
    let topics: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, vec!["r/1", "r/with space"]);
    assert_eq!(rows[1]["size"], 4);
    run(&["retained", "delete", "r/with space"], &url).ok();
    run(&["retained", "delete", "r/nothing"], &url).fails_with("no retained message");
    let table = run(&["retained", "list"], &url).ok().to_owned();
    assert!(
        table.contains("r/1") && table.contains("s/3") && !table.contains("with space"),
        "{table}"
    );
    publisher.handle.disconnect().await.unwrap();
    publisher.wait_closed().await;
    broker.stop();
    let rows = run(&["retained", "list", "--json"], NOWHERE).json();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    run(&["retained", "delete", "s/3"], NOWHERE).ok();
    let rows = run(&["retained", "list", "--json"], NOWHERE).json();
    assert_eq!(rows[0]["topic"], "r/1");
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(
        run(&["stats", "--json"], NOWHERE).json()["retained_messages"],
        1
    );
}

#[test]
fn failures_exit_with_1_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let missing = missing.to_str().unwrap();
    harbormq(&[
        "sessions",
        "list",
        "--data-dir",
        missing,
        "--admin",
        NOWHERE,
    ])
    .fails_with("no database at");
    harbormq(&["stats", "--data-dir", missing, "--admin", NOWHERE]).fails_with("no database at");
    harbormq(&[
        "sessions",
        "delete",
        "x",
        "--data-dir",
        missing,
        "--admin",
        NOWHERE,
    ])
    .fails_with("no database at");

    // A broker without its admin API holds the database: a change cannot go around it.
    let data = dir.path().join("data");
    let broker = AdminBroker::start(&data, false, &[]);
    let data = data.to_str().unwrap();
    harbormq(&[
        "sessions",
        "delete",
        "x",
        "--data-dir",
        data,
        "--admin",
        NOWHERE,
    ])
    .fails_with("broker is running");
    harbormq(&[
        "retained",
        "delete",
        "t",
        "--data-dir",
        data,
        "--admin",
        NOWHERE,
    ])
    .fails_with("not reachable");
    // Reading beside the running writer works.
    let rows = harbormq(&[
        "sessions",
        "list",
        "--json",
        "--data-dir",
        data,
        "--admin",
        NOWHERE,
    ])
    .json();
    assert_eq!(rows, serde_json::json!([]));
    drop(broker);
}

#[test]
fn a_generated_token_is_written_privately_and_found_by_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut broker = AdminBroker::start(dir.path(), true, &[]);
    let path = dir.path().join("admin.token");
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(token.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stats = harbormq(&[
        "stats",
        "--json",
        "--data-dir",
        &data,
        "--admin",
        &broker.url(),
    ])
    .json();
    assert_eq!(stats["source"], "live");
    broker.stop();
}

/// Polls a rumqttc v5 event loop until `wanted` accepts an incoming packet, within ten seconds.
async fn v5_until(
    events: &mut rumqttc::v5::EventLoop,
    mut wanted: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> bool,
) {
    let wait = async {
        loop {
            match events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(packet)) if wanted(&packet) => return,
                Ok(_) => {}
                Err(e) => panic!("v5 client failed: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the awaited packet within 10 s");
}

/// An MQTT 5.0 session is listed with its protocol version and expiry, and `--payload` shows the properties
/// of what it has queued (user properties in order), read from the file with the broker stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_sessions_show_protocol_expiry_and_message_properties() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::{AsyncClient, MqttOptions as Options5};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut broker = AdminBroker::start(dir.path(), false, &[]);
    let mut options = Options5::new("dev5", "127.0.0.1", broker.mqtt.port());
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(3600));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe("v5/#", QoS5::AtLeastOnce).await.unwrap();
    v5_until(&mut events, |p| matches!(p, Packet::SubAck(_))).await;
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while events.poll().await.is_ok() {}
    })
    .await;

    let (publisher, mut pub_events) =
        AsyncClient::new(Options5::new("pub5", "127.0.0.1", broker.mqtt.port()), 10);
    let properties = PublishProperties {
        content_type: Some("text/plain".to_owned()),
        user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        ..Default::default()
    };
    publisher
        .publish_with_properties("v5/t", QoS5::AtLeastOnce, false, "hi", properties)
        .await
        .unwrap();
    v5_until(&mut pub_events, |p| matches!(p, Packet::PubAck(_))).await;
    broker.stop();

    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data, "--admin", NOWHERE, "--token", TOKEN]);
        harbormq(&all)
    };
    let rows = by_id(&run(&["sessions", "list", "--json"]).json());
    assert_eq!(rows["dev5"]["protocol"], "5.0");
    assert_eq!(rows["dev5"]["session_expiry_secs"], 3600);
    let detail = run(&["sessions", "show", "dev5", "--payload", "--json"]).json();
    assert_eq!(detail["protocol"], "5.0");
    let queued = &detail["queued"][0];
    assert_eq!(queued["topic"], "v5/t");
    assert_eq!(queued["properties"]["content_type"], "text/plain");
    assert_eq!(
        queued["properties"]["user_properties"],
        serde_json::json!([["a", "1"], ["a", "2"]])
    );
}
