//! The TLS certificate read again by the real binary on SIGHUP: a new connection gets the new certificate
//! (it trusts only the new CA) while a client connected before stays connected; files that cannot be used
//! are reported naming the file and the previous certificate stays; a bad certificate stops start-up.

#[allow(dead_code)]
mod process;
mod tls_support;

use process::{within, BrokerProcess};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, QoS, TlsConfiguration, Transport};
use std::time::Duration;
use tls_support::{client_config, Ca};

/// Connects over TLS trusting `ca`: the client and its event loop once CONNACK arrived, else the error.
async fn connect(port: u16, id: &str, ca: &Ca) -> Result<(AsyncClient, EventLoop), String> {
    let mut options = rumqttc::MqttOptions::new(id, "localhost", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_config(&ca.pem(), None),
    )));
    let (client, mut events) = AsyncClient::new(options, 10);
    loop {
        match within("CONNACK or a TLS error", events.poll()).await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok((client, events)),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[tokio::test]
async fn sighup_serves_a_renewed_certificate_to_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let (cert, key) = old_ca.server().write(dir.path(), "server");
    let mut broker = BrokerProcess::start_with(
        &dir.path().join("data"),
        "",
        &[
            "--certfile",
            cert.to_str().unwrap(),
            "--keyfile",
            key.to_str().unwrap(),
            "--tls-bind",
            "127.0.0.1:0",
            "--wss-bind",
            "",
        ],
    );
    let port = broker.wait_for_addr("MQTT over TLS on ").port();
    let (staying, mut staying_events) = connect(port, "staying", &old_ca).await.unwrap();

    let new_ca = Ca::new("new CA");
    new_ca.server().write(dir.path(), "server");
    broker.signal("HUP");
    let seen = broker.wait_for_log("TLS certificate reloaded", 0);
    assert!(connect(port, "new", &new_ca).await.is_ok());
    let refused = connect(port, "old", &old_ca).await;
    assert!(refused.is_err(), "the old certificate is still served");

    // The client connected before the reload still has its connection: its QoS 1 publish is acknowledged.
    staying
        .publish("reload/t", QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    within("the PUBACK of the client connected before", async {
        loop {
            match staying_events.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("the connection made before the reload ended: {e}"),
            }
        }
    })
    .await;

    // A key that is not PEM: reported with the file, and the new certificate stays.
    std::fs::write(&key, "not a key\n").unwrap();
    broker.signal("HUP");
    broker.wait_for_line("the reload failure naming the key file", seen, |line| {
        line.contains("TLS certificate not reloaded") && line.contains("server.key")
    });
    assert!(connect(port, "after-failure", &new_ca).await.is_ok());
}

#[test]
fn a_certificate_that_is_not_pem_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = Ca::new("CA").server().write(dir.path(), "server");
    let cert = dir.path().join("broken.crt");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harbormq"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--ws-bind",
            "",
            "--admin-bind",
            "",
        ])
        .args(["--tls-bind", "127.0.0.1:0", "--wss-bind", ""])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--certfile")
        .arg(&cert)
        .arg("--keyfile")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("certfile") && said.contains("broken.crt"),
        "{said}"
    );
}
