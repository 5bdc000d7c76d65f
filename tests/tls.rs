//! MQTT over TLS on a real broker, with certificates made by rcgen in each test: rumqttc (rustls) and
//! Mosquitto's clients (`--cafile`) publish and subscribe, TLS 1.2 and 1.3 with ECDSA and Ed25519 keys,
//! client certificates (`require_certificate`, `use_identity_as_username`), the certificate reloaded while a
//! client stays connected, secure WebSocket, the admin API over https, and start-up errors naming the file.

mod common;
mod needs;
mod tls_support;

use bytes::BytesMut;
use common::{connect_packet, Client, TestBroker, WAIT};
use harbormq::broker::hooks::{ready, AuthDecision, ConnectInfo, HookFuture, Hooks};
use harbormq::codec::{decode_packet, encode_packet, ConnAck, Packet, ReasonCode, Role};
use harbormq::{BackgroundBroker, Broker, Config};
use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tls_support::{client_config, client_config_with, Ca, Issued};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Writes the server certificate and key `ca` issues into `dir` and points `config` at them, with the TLS
/// listener on an ephemeral port and no secure WebSocket listener.
fn use_certificate(config: &mut Config, dir: &Path, server: &Issued) {
    let (cert, key) = server.write(dir, "server");
    config.certfile = cert;
    config.keyfile = key;
    config.tls_bind = "127.0.0.1:0".to_owned();
    config.wss_bind = String::new();
}

/// A broker serving MQTT over TLS with a certificate from `ca`, adjusted by `tweak`.
fn tls_broker(ca: &Ca, dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestBroker {
    let server = ca.server();
    TestBroker::start_with(|c| {
        use_certificate(c, dir, &server);
        tweak(c);
    })
}

/// rumqttc options for the broker's TLS listener, trusting `ca`, presenting `client` if given.
fn tls_options(broker: &TestBroker, id: &str, ca: &Ca, client: Option<&Issued>) -> MqttOptions {
    let addr = broker.handle().tls_addr().expect("the TLS listener runs");
    let mut options = MqttOptions::new(id, "localhost", addr.port());
    options.set_keep_alive(std::time::Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_config(&ca.pem(), client),
    )));
    options
}

/// Sends a 3.1.1 CONNECT (with `user`/`password` if given) over `stream`; the CONNACK, or why none came.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    credentials: Option<(&str, &str)>,
) -> Result<ConnAck, String> {
    let mut connect = connect_packet("tls-raw", true, 30);
    if let Some((user, password)) = credentials {
        connect.username = Some(user.into());
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    }
    let mut out = BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(connect)), &mut out).unwrap();
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    loop {
        if let Some(packet) =
            decode_packet(&mut buf, Role::Client, usize::MAX).map_err(|e| e.to_string())?
        {
            return match packet {
                Packet::ConnAck(ack) => Ok(ack),
                other => Err(format!("{other:?} instead of CONNACK")),
            };
        }
        let mut chunk = [0u8; 1024];
        match timeout(WAIT, stream.read(&mut chunk)).await {
            Err(_) => return Err(format!("no CONNACK within {WAIT:?}")),
            Ok(Ok(0)) => return Err("closed".to_owned()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Connects over TLS with `config` and sends CONNECT: the CONNACK, or why the handshake or CONNECT failed.
async fn tls_connack(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<ConnAck, String> {
    let mut stream = timeout(WAIT, tls_support::connect(addr, config))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake failed: {e}"))?;
    mqtt_connect(&mut stream, None).await
}

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let broker = tls_broker(&ca, dir.path(), |_| {});
    let (mut subscriber, _) = Client::connect(tls_options(&broker, "tls-sub", &ca, None)).await;
    subscriber.subscribe("tls/#", QoS::AtLeastOnce).await;
    let (publisher, _) = Client::connect(tls_options(&broker, "tls-pub", &ca, None)).await;
    publisher
        .handle
        .publish("tls/a", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    let got = subscriber.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("tls/a", &b"over tls"[..])
    );
    // TLS and plain TCP clients share one broker.
    let plain = broker.client("plain").await;
    plain
        .handle
        .publish("tls/b", QoS::AtMostOnce, false, "from tcp")
        .await
        .unwrap();
    assert_eq!(&subscriber.next_publish().await.payload[..], b"from tcp");
    plain.disconnect().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_with_ecdsa_and_ed25519_keys() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let server = ca.server_with(alg);
        let broker = TestBroker::start_with(|c| use_certificate(c, dir.path(), &server));
        let addr = broker.handle().tls_addr().unwrap();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let config = client_config_with(&ca.pem(), None, &[version]);
            let mut stream = tls_support::connect(addr, config).await.unwrap();
            let negotiated = stream.get_ref().1.protocol_version();
            assert_eq!(negotiated, Some(version.version), "{alg:?}");
            let ack = mqtt_connect(&mut stream, None).await.unwrap();
            assert_eq!(ack.code, ReasonCode::SUCCESS);
        }
    }
}

/// Runs openssl with `args` in `dir`; false (after `needs::missing`) when it cannot be run.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    match std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(e) => {
            needs::missing(&format!(
                "cannot run openssl ({e}); install it with `apt-get install openssl`"
            ));
            false
        }
    }
}

/// An RSA 2048 CA and server certificate made with the openssl commands of the README's TLS section: the
/// certificates users make are the ones served (rcgen cannot make RSA keys with the ring provider).
#[tokio::test]
async fn an_rsa_certificate_made_by_openssl_as_the_readme_says_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=readme CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    ];
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap();
    for step in steps {
        if !openssl(d, step) {
            return;
        }
    }
    let broker = TestBroker::start_with(|c| {
        c.certfile = d.join("server.crt");
        c.keyfile = d.join("server.key");
        c.tls_bind = "127.0.0.1:0".to_owned();
        c.wss_bind = String::new();
    });
    let ca_pem = std::fs::read_to_string(d.join("ca.crt")).unwrap();
    let addr = broker.handle().tls_addr().unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_with(&ca_pem, None, &[version]);
        let mut stream = tls_support::connect(addr, config).await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
        let ack = mqtt_connect(&mut stream, None).await.unwrap();
        assert_eq!(ack.code, ReasonCode::SUCCESS);
    }
}

#[tokio::test]
async fn mosquitto_clients_connect_with_cafile() {
    for program in ["mosquitto_pub", "mosquitto_sub"] {
        if let Err(e) = Command::new(program).arg("--help").output() {
            needs::missing(&format!(
                "cannot run {program} ({e}); install it with `apt-get install mosquitto-clients`"
            ));
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let broker = tls_broker(&ca, dir.path(), |_| {});
    let port = broker.handle().tls_addr().unwrap().port().to_string();
    let mosquitto = |program: &str, args: &[&str]| {
        let mut command = Command::new(program);
        command
            .arg("--cafile")
            .arg(&ca_file)
            .args(["-h", "localhost", "-p", &port])
            .args(args);
        command
    };
    // A retained message, so the subscriber gets it whenever it subscribes: no race with the publish.
    let published = mosquitto(
        "mosquitto_pub",
        &["-t", "tls/m", "-m", "hi over tls", "-q", "1", "-r"],
    )
    .output()
    .unwrap();
    assert!(published.status.success(), "{published:?}");
    let received = mosquitto("mosquitto_sub", &["-t", "tls/m", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert!(received.status.success(), "{received:?}");
    assert_eq!(
        String::from_utf8_lossy(&received.stdout).trim(),
        "hi over tls"
    );
    // A client that does not trust the broker's CA does not get in.
    let other = Ca::new("other CA").write(dir.path(), "other");
    let refused = Command::new("mosquitto_pub")
        .arg("--cafile")
        .arg(&other)
        .args(["-h", "localhost", "-p", &port, "-t", "t", "-m", "x"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
}

#[tokio::test]
async fn require_certificate_admits_only_clients_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let ca_file = clients.write(dir.path(), "clients");
    let broker = tls_broker(&ca, dir.path(), |c| {
        c.cafile = ca_file;
        c.require_certificate = true;
    });
    let addr = broker.handle().tls_addr().unwrap();
    let trusted = clients.client(Some("device-1"));
    let ack = tls_connack(addr, client_config(&ca.pem(), Some(&trusted))).await;
    assert_eq!(ack.map(|a| a.code), Ok(ReasonCode::SUCCESS));
    // Signed by a CA the broker does not know: the handshake fails, no MQTT gets through.
    let stranger = Ca::new("client CA").client(Some("device-1"));
    let refused = tls_connack(addr, client_config(&ca.pem(), Some(&stranger))).await;
    assert!(refused.is_err(), "{refused:?}");
    // No certificate at all.
    let refused = tls_connack(addr, client_config(&ca.pem(), None)).await;
    assert!(refused.is_err(), "{refused:?}");
    // rumqttc with the right certificate publishes and subscribes.
    let (mut client, _) = Client::connect(tls_options(&broker, "dev", &ca, Some(&trusted))).await;
    client.subscribe("certs/t", QoS::AtMostOnce).await;
    client
        .handle
        .publish("certs/t", QoS::AtMostOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(&client.next_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn without_require_certificate_a_client_may_present_none() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let ca_file = clients.write(dir.path(), "clients");
    let broker = tls_broker(&ca, dir.path(), |c| c.cafile = ca_file);
    let addr = broker.handle().tls_addr().unwrap();
    let none = tls_connack(addr, client_config(&ca.pem(), None)).await;
    assert_eq!(none.map(|a| a.code), Ok(ReasonCode::SUCCESS));
    let trusted = clients.client(Some("d"));
    let ok = tls_connack(addr, client_config(&ca.pem(), Some(&trusted))).await;
    assert_eq!(ok.map(|a| a.code), Ok(ReasonCode::SUCCESS));
    // One that is presented must still verify.
    let stranger = Ca::new("client CA").client(Some("d"));
    let refused = tls_connack(addr, client_config(&ca.pem(), Some(&stranger))).await;
    assert!(refused.is_err(), "{refused:?}");
}

/// Remembers the user name and password of every CONNECT the authenticate hook sees, and lets all in.
#[derive(Clone, Default)]
struct SeenConnects(Arc<Mutex<Vec<Seen>>>);

/// A CONNECT's user name, password and whether the user name is a certificate's.
type Seen = (Option<String>, Option<Vec<u8>>, bool);

impl Hooks for SeenConnects {
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        self.0.lock().unwrap().push((
            connect.username.as_ref().map(|u| u.to_string()),
            connect.password.as_ref().map(|p| p.to_vec()),
            connect.certificate_identity,
        ));
        ready(AuthDecision::Allow)
    }
}

#[tokio::test]
async fn use_identity_as_username_makes_the_certificate_name_the_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let mut config = Config {
        bind: String::new(),
        data_dir: dir.path().join("data"),
        ws_bind: String::new(),
        admin_bind: String::new(),
        sys_interval_secs: 0,
        cafile: clients.write(dir.path(), "clients"),
        require_certificate: true,
        use_identity_as_username: true,
        // A password file that knows nobody: a certificate's user is let in without it, as in Mosquitto.
        password_file: dir.path().join("passwords"),
        ..Config::default()
    };
    std::fs::write(&config.password_file, "").unwrap();
    use_certificate(&mut config, dir.path(), &ca.server());
    config.wss_bind = "127.0.0.1:0".to_owned();
    let seen = SeenConnects::default();
    let broker = BackgroundBroker::start_broker(Broker::new(config).hooks(seen.clone())).unwrap();
    let addr = broker.handle().tls_addr().unwrap();

    let named = clients.client(Some("sensor-7"));
    let mut stream = tls_support::connect(addr, client_config(&ca.pem(), Some(&named)))
        .await
        .unwrap();
    let ack = mqtt_connect(&mut stream, Some(("mallory", "guess")))
        .await
        .unwrap();
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert_eq!(
        seen.0.lock().unwrap().as_slice(),
        [(Some("sensor-7".to_owned()), None, true)],
        "the CONNECT's own user name and password are set aside"
    );

    // A certificate that names nobody gives no user name: refused as a bad user name or password (0x04).
    let nameless = clients.client(None);
    let mut stream = tls_support::connect(addr, client_config(&ca.pem(), Some(&nameless)))
        .await
        .unwrap();
    let ack = mqtt_connect(&mut stream, Some(("alice", "x")))
        .await
        .unwrap();
    assert_eq!(ack.code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    assert_eq!(seen.0.lock().unwrap().len(), 1, "the hook is not asked");

    // The secure WebSocket listener takes the certificate's name the same way.
    let wss = broker.handle().wss_addr().unwrap();
    let ack = wss_connack(
        wss,
        client_config(&ca.pem(), Some(&clients.client(Some("browser-3")))),
        Some(("mallory", "guess")),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert_eq!(
        seen.0.lock().unwrap().last(),
        Some(&(Some("browser-3".to_owned()), None, true))
    );
    broker.stop();
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_connections_while_old_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let broker = tls_broker(&old_ca, dir.path(), |_| {});
    let addr = broker.handle().tls_addr().unwrap();
    let (mut staying, _) = Client::connect(tls_options(&broker, "staying", &old_ca, None)).await;
    staying.subscribe("reload/t", QoS::AtMostOnce).await;

    let new_ca = Ca::new("new CA");
    new_ca.server().write(dir.path(), "server");
    assert!(
        broker.handle().reload_certificate().unwrap(),
        "TLS is configured"
    );
    let new = tls_connack(addr, client_config(&new_ca.pem(), None)).await;
    assert_eq!(new.map(|a| a.code), Ok(ReasonCode::SUCCESS));
    let old = tls_connack(addr, client_config(&old_ca.pem(), None)).await;
    assert!(
        old.is_err(),
        "the old certificate is no longer served: {old:?}"
    );

    // A key that does not match its certificate changes nothing, and the error names the key file.
    std::fs::write(dir.path().join("server.key"), old_ca.server().key_pem).unwrap();
    let error = broker
        .handle()
        .reload_certificate()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("server.key") && error.contains("does not match"),
        "{error}"
    );
    let still = tls_connack(addr, client_config(&new_ca.pem(), None)).await;
    assert_eq!(still.map(|a| a.code), Ok(ReasonCode::SUCCESS));

    // The client connected before the reload is still there.
    let (publisher, _) = Client::connect(tls_options(&broker, "pub", &new_ca, None)).await;
    publisher
        .handle
        .publish("reload/t", QoS::AtMostOnce, false, "still here")
        .await
        .unwrap();
    assert_eq!(&staying.next_publish().await.payload[..], b"still here");
}

/// The error starting a broker with `tweak`'s TLS settings gives.
fn start_error(dir: &Path, tweak: impl FnOnce(&mut Config)) -> String {
    let mut config = Config {
        bind: "127.0.0.1:0".to_owned(),
        data_dir: dir.join("data"),
        ws_bind: String::new(),
        admin_bind: String::new(),
        tls_bind: "127.0.0.1:0".to_owned(),
        wss_bind: String::new(),
        ..Config::default()
    };
    tweak(&mut config);
    match BackgroundBroker::start(config) {
        Ok(_) => panic!("the broker started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_certificates_and_keys_stop_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let (_, other_key) = ca.server().write(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let missing = dir.path().join("missing.crt");
    let expect = |error: String, file: &Path, what: &str| {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(error.contains(name) && error.contains(what), "{error}");
    };
    let with = |c: &mut Config, certfile: &Path, keyfile: &Path| {
        c.certfile = certfile.to_owned();
        c.keyfile = keyfile.to_owned();
    };
    expect(
        start_error(dir.path(), |c| with(c, &missing, &key)),
        &missing,
        "cannot read",
    );
    expect(
        start_error(dir.path(), |c| with(c, &cert, &missing)),
        &missing,
        "cannot read",
    );
    expect(
        start_error(dir.path(), |c| with(c, &garbage, &key)),
        &garbage,
        "no PEM",
    );
    expect(
        start_error(dir.path(), |c| with(c, &cert, &garbage)),
        &garbage,
        "no PEM",
    );
    expect(
        start_error(dir.path(), |c| with(c, &cert, &other_key)),
        &other_key,
        "does not match",
    );
    let error = start_error(dir.path(), |c| {
        with(c, &cert, &key);
        c.cafile = garbage.clone();
    });
    expect(error, &garbage, "cafile");
    let error = start_error(dir.path(), |c| {
        with(c, &cert, &key);
        c.require_certificate = true;
    });
    assert!(
        error.contains("require_certificate") && error.contains("cafile"),
        "{error}"
    );
    let error = start_error(dir.path(), |c| c.keyfile = key.clone());
    assert!(error.contains("certfile"), "{error}");
}

/// Opens a secure WebSocket to `addr` with `config` and sends a 3.1.1 CONNECT with `credentials`: the
/// CONNACK.
async fn wss_connack(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    credentials: Option<(&str, &str)>,
) -> ConnAck {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let url = format!("wss://localhost:{}/mqtt", addr.port());
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(config);
    let connecting =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector));
    let (mut ws, _) = timeout(WAIT, connecting).await.unwrap().unwrap();
    let mut connect = connect_packet("wss-client", true, 30);
    if let Some((user, password)) = credentials {
        connect.username = Some(user.into());
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    }
    let mut out = BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(connect)), &mut out).unwrap();
    ws.send(Message::Binary(out.freeze())).await.unwrap();
    let frame = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let mut bytes = BytesMut::from(&frame.into_data()[..]);
    match decode_packet(&mut bytes, Role::Client, usize::MAX).unwrap() {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn secure_websocket_carries_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let broker = tls_broker(&ca, dir.path(), |c| c.wss_bind = "127.0.0.1:0".to_owned());
    let addr = broker.handle().wss_addr().expect("the wss listener runs");
    let ack = wss_connack(addr, client_config(&ca.pem(), None), None).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn the_admin_api_is_served_over_https_and_counts_failed_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let broker = tls_broker(&ca, dir.path(), |c| {
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_tls = true;
        c.admin_token = "secret".to_owned();
    });
    // A client that does not trust the certificate fails its handshake on the MQTT listener.
    let tls_addr = broker.handle().tls_addr().unwrap();
    let refused = tls_connack(tls_addr, client_config(&Ca::new("other").pem(), None)).await;
    assert!(refused.is_err());
    let admin = broker.handle().admin_addr().unwrap();
    let get = |path: &'static str| {
        let config = client_config(&ca.pem(), None);
        async move {
            let mut stream = tls_support::connect(admin, config).await.unwrap();
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer secret\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            timeout(WAIT, stream.read_to_string(&mut answer))
                .await
                .unwrap()
                .ok();
            answer
        }
    };
    let health = get("/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The broker counts the failure once it reads the client's alert, which may be after the client gave
    // up: each look is a round trip of its own, bounded by WAIT.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = get("/metrics").await;
        if metrics.contains("harbormq_tls_handshakes_failed_total 1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
    }
    // The admin commands speak https: trusting the CA, or (with the broker's configuration) exactly the
    // certificate of its certfile.
    let stats = |args: Vec<std::ffi::OsString>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_harbormq"))
                .args(["stats", "--json", "--token", "secret"])
                .args(args)
                .output()
                .unwrap()
        })
    };
    let url = format!("https://127.0.0.1:{}", admin.port());
    let ca_file = ca.write(dir.path(), "ca");
    let other = Ca::new("other").write(dir.path(), "other");
    let trusting = |cafile: &Path| {
        vec![
            "--admin".into(),
            url.clone().into(),
            "--admin-cafile".into(),
            cafile.into(),
            // Where no database is: a broker that does not answer is not read from its file instead.
            "--data-dir".into(),
            dir.path().join("no-data").into(),
        ]
    };
    let live = |out: &std::process::Output| {
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        out.status.success() && json["source"] == "live"
    };
    let out = stats(trusting(&ca_file)).await.unwrap();
    assert!(live(&out), "{out:?}");
    let refused = stats(trusting(&other)).await.unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let config_file = dir.path().join("admin.toml");
    std::fs::write(
        &config_file,
        format!(
            "admin_bind = \"{admin}\"\nadmin_tls = true\ncertfile = {:?}\nkeyfile = {:?}\ndata_dir = {:?}\n",
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
            dir.path().join("no-data"),
        ),
    )
    .unwrap();
    let out = stats(vec!["--config".into(), config_file.into()])
        .await
        .unwrap();
    assert!(live(&out), "{out:?}");

    // Plain http is not served.
    let mut plain = tokio::net::TcpStream::connect(admin).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}
