//! The same ACL file on Mosquitto and on harbormq, with the same clients doing the same things: what reaches a
//! subscriber of `#` must be the same on both, for writers and readers under user sections, anonymous rules,
//! deny rules and `%c`/`%u` patterns. Mosquitto 2.0 refuses no subscription, so the readers here subscribe
//! to `#`, which both brokers grant and then screen message by message. Mosquitto missing fails the test
//! under HARBORMQ_CI and skips it elsewhere.

mod common;
mod mosquitto;
mod needs;

use common::{Client, TestBroker};
use rumqttc::{MqttOptions, QoS};
use std::collections::BTreeSet;

const RULES: &str = "\
# Mosquitto's own example, first.
topic read $SYS/#
topic read public/#
topic deny public/secret

user roger
topic foo/bar

user alice
topic readwrite public/#
topic write private/#
topic read alerts/+
topic deny private/locked
topic write inbox/#

user watcher
topic read #

pattern write $SYS/broker/connection/%c/state
pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

/// Who publishes, as (client id, user name).
const WRITERS: [(&str, Option<&str>); 4] = [
    ("anon-w", None),
    ("roger-w", Some("roger")),
    ("alice-w", Some("alice")),
    ("dev1", Some("bob")),
];

/// Who reads with a subscription to `#`.
const READERS: [(&str, Option<&str>); 4] = [
    ("watcher-r", Some("watcher")),
    ("anon-r", None),
    ("alice-r", Some("alice")),
    ("dev1-r", Some("dev1")),
];

const TOPICS: [&str; 11] = [
    "public/news",
    "public/secret",
    "private/box",
    "private/locked",
    "alerts/fire",
    "foo/bar",
    "devices/dev1/status",
    "devices/alice-w/status",
    "inbox/dev1/x",
    "inbox/alice/x",
    "other",
];

fn options(port: u16, (client_id, user): (&str, Option<&str>)) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(std::time::Duration::from_secs(30));
    if let Some(user) = user {
        options.set_credentials(user, "x");
    }
    options
}

/// Each reader's received (topic, writer) pairs after every writer published to every topic (and had each
/// publish acknowledged). Each reader then publishes a marker to its own `devices/<client id>/` tree, which the
/// patterns let it write and read: once it has its marker back, it has everything sent before.
async fn run(port: u16) -> Vec<BTreeSet<(String, String)>> {
    let mut readers = Vec::new();
    for reader in READERS {
        let (mut client, _) = Client::connect(options(port, reader)).await;
        client.subscribe("#", QoS::AtLeastOnce).await;
        readers.push(client);
    }
    for writer in WRITERS {
        let (mut client, _) = Client::connect(options(port, writer)).await;
        for topic in TOPICS {
            client
                .publish(topic, QoS::AtLeastOnce, false, writer.0)
                .await;
        }
        client.disconnect().await;
    }
    let mut seen = Vec::new();
    for (reader, mut client) in READERS.iter().zip(readers) {
        let marker = format!("devices/{}/done", reader.0);
        client
            .publish(&marker, QoS::AtLeastOnce, false, "done")
            .await;
        let got = client.publishes_until(&marker, b"done").await;
        seen.push(
            got.into_iter()
                .filter(|p| !p.topic.ends_with("/done"))
                .map(|p| (p.topic, String::from_utf8_lossy(&p.payload).into_owned()))
                .collect(),
        );
        client.disconnect().await;
    }
    seen
}

#[tokio::test]
async fn harbormq_and_mosquitto_deliver_the_same_under_the_same_acl_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, RULES).unwrap();
    let Some(reference) = mosquitto::start(&format!(
        "allow_anonymous true\nacl_file {}\n",
        path.display()
    )) else {
        return;
    };
    let expected = run(reference.port).await;
    let broker = TestBroker::start_with(|c| c.acl_file = path.clone());
    let got = run(broker.addr().port()).await;
    for ((reader, expected), got) in READERS.iter().zip(&expected).zip(&got) {
        assert_eq!(got, expected, "what {} received", reader.0);
    }
    // The comparison means something only if the rules let some through and held some back.
    let total = TOPICS.len() * WRITERS.len();
    assert!(expected.iter().all(|s| s.len() < total), "{expected:?}");
    assert!(expected.iter().all(|s| !s.is_empty()), "{expected:?}");
}
