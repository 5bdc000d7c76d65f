//! MQTT over secure WebSocket from a real browser: headless Chromium, trusting the test certificate by its
//! public key hash (`--ignore-certificate-errors-spki-list`), loads a page where MQTT.js connects to
//! `wss://localhost:PORT/mqtt` and subscribes; a message published by rumqttc over TLS shows up on the page.
//! Skips only when no Chromium is installed (`.ci/run` installs Debian's `chromium`).

mod chromium;
mod common;
mod needs;
mod tls_support;

use chromium::{evaluate, find_chromium, subscribed_page, wait_for_text, Browser, BROWSER_WAIT};
use common::{Client, TestBroker};
use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use tls_support::{client_config, spki_hash, Ca};
use tokio::time::timeout;

/// A page that connects MQTT.js to the URL in its query string, subscribes to browser/wss and lists what
/// arrives; `status` says `subscribed` or the error.
const PAGE: &str = r#"<!doctype html>
<html><body>
<div id="status">connecting</div>
<pre id="messages"></pre>
<script src="mqtt.min.js"></script>
<script>
  const status = document.getElementById('status');
  const url = new URLSearchParams(location.search).get('url');
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10000 });
  client.on('connect', () => client.subscribe('browser/wss', { qos: 1 }, (err) => {
    status.textContent = err ? 'error: ' + err.message : 'subscribed';
  }));
  client.on('error', (e) => { status.textContent = 'error: ' + e.message; });
  client.on('close', () => { if (status.textContent !== 'subscribed') status.textContent = 'error: closed'; });
  client.on('message', (topic, payload) => {
    document.getElementById('messages').textContent += topic + ': ' + payload.toString() + '\n';
  });
</script>
</body></html>
"#;

#[tokio::test]
async fn mqtt_js_in_chromium_subscribes_over_wss() {
    let Some(chromium) = find_chromium() else {
        needs::missing("no chromium on PATH (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("browser test CA");
    let server = ca.server();
    let (cert, key) = server.write(dir.path(), "server");
    let broker = TestBroker::start_with(|c| {
        c.certfile = cert;
        c.keyfile = key;
        c.tls_bind = "127.0.0.1:0".to_owned();
        c.wss_bind = "127.0.0.1:0".to_owned();
    });
    let wss = broker.handle().wss_addr().unwrap();
    let page_dir = dir.path().join("page");
    std::fs::create_dir(&page_dir).unwrap();
    std::fs::write(page_dir.join("index.html"), PAGE).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static/mqtt.min.js"),
        page_dir.join("mqtt.min.js"),
    )
    .unwrap();
    let page_url = format!(
        "file://{}/index.html?url=wss://localhost:{}/mqtt",
        page_dir.display(),
        wss.port()
    );
    // Trusts this certificate only, by its key: any other certificate errors still fail the connection.
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_hash(&server.cert_pem)
    );
    let browser = Browser::launch_with(
        &chromium,
        &page_url,
        &[&trust, "--allow-file-access-from-files"],
    );
    let mut devtools = subscribed_page(browser.devtools_port, "file://").await;

    let tls = broker.handle().tls_addr().unwrap();
    let mut options = MqttOptions::new("publisher", "localhost", tls.port());
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_config(&ca.pem(), None),
    )));
    let (publisher, _) = Client::connect(options).await;
    publisher
        .handle
        .publish("browser/wss", QoS::AtLeastOnce, false, "hello over wss")
        .await
        .unwrap();
    let messages = timeout(
        BROWSER_WAIT,
        evaluate(
            &mut devtools,
            &wait_for_text("messages", "text.includes('hello over wss')"),
        ),
    )
    .await
    .expect("the message did not reach the page");
    assert!(
        messages
            .as_str()
            .unwrap_or("")
            .contains("browser/wss: hello over wss"),
        "{messages}"
    );
    drop(devtools);
    drop(browser);
}
