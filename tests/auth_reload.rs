//! The password and ACL files read again while the broker runs: after SIGHUP a removed user's next CONNECT is
//! refused and a new user's accepted, and connected clients follow the new ACL rules, while staying connected;
//! a damaged file changes nothing and is reported with its line. Runs the real binary.

#[allow(dead_code)]
mod process;

use harbormq::auth::PasswordFile;
use process::{within, BrokerProcess};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, QoS};
use std::path::Path;
use std::time::Duration;

fn write_users(path: &Path, users: &[(&str, &str)]) {
    let mut file = PasswordFile::default();
    for (user, password) in users {
        file.set(user, password, 10);
    }
    std::fs::write(path, file.to_string()).unwrap();
}

/// Connects with these credentials: the client and its event loop once accepted, else the refusal.
async fn connect(
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10);
    match within("CONNACK", events.poll()).await {
        Ok(Event::Incoming(Incoming::ConnAck(_))) => Ok((client, events)),
        Err(ConnectionError::ConnectionRefused(code)) => Err(code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn sighup_reads_the_password_file_again_and_keeps_connected_clients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwords");
    write_users(&path, &[("alice", "one")]);
    let broker = BrokerProcess::start_with(
        &dir.path().join("data"),
        "",
        &["--password-file", path.to_str().unwrap()],
    );
    let port = broker.port();
    let (alice, mut alice_events) = connect(port, "alice-1", "alice", "one").await.unwrap();

    write_users(&path, &[("bob", "two")]);
    broker.signal("HUP");
    let seen = broker.wait_for_log("password file reloaded, 1 user(s)", 0);
    assert_eq!(
        connect(port, "alice-2", "alice", "one").await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "a removed user's next CONNECT is refused"
    );
    assert!(connect(port, "bob", "bob", "two").await.is_ok());

    // Alice's first connection is still there: its QoS 1 publish is acknowledged.
    alice
        .publish("reload/t", QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    within("alice's PUBACK", async {
        loop {
            match alice_events.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("alice's connection ended: {e}"),
            }
        }
    })
    .await;

    std::fs::write(&path, "# users\nbob:two\n").unwrap();
    broker.signal("HUP");
    broker.wait_for_log("password file not reloaded", seen);
    broker.wait_for_log("line 2", seen);
    assert!(
        connect(port, "bob-2", "bob", "two").await.is_ok(),
        "the previous users stay"
    );
}

/// Waits for the next PUBLISH on `events`, passing over everything else.
async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    within("a PUBLISH", async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => return p,
                Ok(_) => {}
                Err(e) => panic!("the connection ended: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn sighup_reads_the_acl_file_again_without_dropping_clients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, "topic read a/#\nuser writer\ntopic write #\n").unwrap();
    let broker = BrokerProcess::start_with(
        &dir.path().join("data"),
        "",
        &["--acl-file", path.to_str().unwrap()],
    );
    let port = broker.port();
    let (reader, mut reader_events) = connect(port, "reader", "", "").await.unwrap();
    let (writer, mut writer_events) = connect(port, "writer", "writer", "").await.unwrap();
    reader.subscribe("#", QoS::AtMostOnce).await.unwrap();
    within("SUBACK", async {
        loop {
            if let Ok(Event::Incoming(Incoming::SubAck(_))) = reader_events.poll().await {
                break;
            }
        }
    })
    .await;
    let publish = |topic: &'static str, payload: &'static str| {
        let writer = writer.clone();
        async move {
            writer
                .publish(topic, QoS::AtMostOnce, false, payload)
                .await
                .unwrap()
        }
    };
    let pump = tokio::spawn(async move {
        loop {
            if writer_events.poll().await.is_err() {
                break;
            }
        }
    });
    publish("b/1", "hidden").await;
    publish("a/1", "shown").await;
    assert_eq!(next_publish(&mut reader_events).await.topic, "a/1");

    std::fs::write(&path, "topic read b/#\nuser writer\ntopic write #\n").unwrap();
    broker.signal("HUP");
    let seen = broker.wait_for_log("ACL file reloaded, 2 rule(s)", 0);
    publish("a/2", "hidden now").await;
    publish("b/2", "shown now").await;
    assert_eq!(
        next_publish(&mut reader_events).await.topic,
        "b/2",
        "the connected reader follows the new rules"
    );

    std::fs::write(&path, "topic read #\ntopic maybe x\n").unwrap();
    broker.signal("HUP");
    broker.wait_for_log("ACL file not reloaded", seen);
    broker.wait_for_log("line 2", seen);
    publish("a/3", "hidden still").await;
    publish("b/3", "shown still").await;
    assert_eq!(
        next_publish(&mut reader_events).await.topic,
        "b/3",
        "the previous rules stay"
    );
    pump.abort();
}
