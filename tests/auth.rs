//! Password files on a real broker: CONNACK 0x04 / 0x05 for MQTT 3.1.1 and 0x86 / 0x87 for MQTT 5.0 clients
//! (rumqttc, raw packets and `mosquitto_pub -u -P` with a file `mosquitto_passwd` wrote), `allow_anonymous`,
//! and a damaged file stopping start-up with its line named. Mosquitto's programs missing fail the test that
//! needs them under HARBORMQ_CI and skip it elsewhere.

mod common;
mod needs;

use common::{connect_packet, TestBroker, WAIT};
use harbormq::auth::PasswordFile;
use harbormq::codec::ReasonCode;
use harbormq::{BackgroundBroker, Config};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A password file with alice / wonderland and bob / builder, written into `dir`.
fn password_file(dir: &Path) -> PathBuf {
    let mut file = PasswordFile::default();
    // Few iterations: the tests check the logic, not the cost.
    file.set("alice", "wonderland", 100);
    file.set("bob", "builder", 100);
    let path = dir.join("passwords");
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// A broker checking the password file in `dir`, with `allow_anonymous` as given.
fn broker_with(dir: &Path, allow_anonymous: Option<bool>) -> TestBroker {
    let path = password_file(dir);
    TestBroker::start_with(|c| {
        c.password_file = path;
        c.allow_anonymous = allow_anonymous;
    })
}

/// The CONNACK code a raw MQTT 3.1.1 CONNECT with these credentials gets.
async fn v311(broker: &TestBroker, user: Option<&str>, password: Option<&str>) -> ReasonCode {
    let mut connect = connect_packet("raw", true, 30);
    connect.username = user.map(Into::into);
    connect.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    broker.raw().await.connect(connect).await.code
}

#[tokio::test]
async fn a_v311_client_needs_the_password_of_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), None);
    assert_eq!(
        v311(&broker, Some("alice"), Some("wonderland")).await,
        ReasonCode::SUCCESS
    );
    // On the wire these are the 3.1.1 return codes 4 (bad user name or password) and 5 (not authorised).
    let bad = ReasonCode::BAD_USERNAME_OR_PASSWORD;
    assert_eq!(bad.to_v3_connack(), 4);
    assert_eq!(v311(&broker, Some("alice"), Some("builder")).await, bad);
    assert_eq!(v311(&broker, Some("alice"), None).await, bad);
    assert_eq!(
        v311(&broker, Some("mallory"), Some("wonderland")).await,
        bad
    );
    let anonymous = v311(&broker, None, None).await;
    assert_eq!(anonymous, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(anonymous.to_v3_connack(), 5);

    // rumqttc, with and without the right password.
    let mut options = broker.options("rumqttc-bob");
    options.set_credentials("bob", "builder");
    let (client, ack) = common::Client::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    client.disconnect().await;
    let mut options = broker.options("rumqttc-bob-wrong");
    options.set_credentials("bob", "wonderland");
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let refused = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("an answer in time");
    match refused {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn allow_anonymous_lets_clients_without_a_user_name_in_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), Some(true));
    assert_eq!(v311(&broker, None, None).await, ReasonCode::SUCCESS);
    assert_eq!(
        v311(&broker, Some("alice"), Some("nope")).await,
        ReasonCode::BAD_USERNAME_OR_PASSWORD
    );
    assert_eq!(
        v311(&broker, Some("alice"), Some("wonderland")).await,
        ReasonCode::SUCCESS
    );
}

#[tokio::test]
async fn allow_anonymous_false_without_a_file_refuses_everyone() {
    let broker = TestBroker::start_with(|c| c.allow_anonymous = Some(false));
    assert_eq!(v311(&broker, None, None).await, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        v311(&broker, Some("alice"), Some("wonderland")).await,
        ReasonCode::NOT_AUTHORIZED
    );
}

/// What a rumqttc MQTT 5.0 client with these credentials gets: `Ok` when accepted, else the refusal.
async fn v5(
    broker: &TestBroker,
    user: Option<&str>,
    password: &str,
) -> Result<(), rumqttc::v5::mqttbytes::v5::ConnectReturnCode> {
    let mut options = rumqttc::v5::MqttOptions::new("v5", "127.0.0.1", broker.addr().port());
    if let Some(user) = user {
        options.set_credentials(user, password);
    }
    let (_client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    let first = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("an answer in time");
    match first {
        Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))) => Ok(()),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_v5_client_is_refused_with_0x86_or_0x87() {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), None);
    assert_eq!(v5(&broker, Some("alice"), "wonderland").await, Ok(()));
    assert_eq!(
        v5(&broker, Some("alice"), "builder").await,
        Err(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        v5(&broker, None, "").await,
        Err(ConnectReturnCode::NotAuthorized)
    );
}

#[tokio::test]
async fn mosquitto_pub_gets_in_with_a_file_mosquitto_passwd_wrote() {
    for program in ["mosquitto_passwd", "mosquitto_pub"] {
        if let Err(e) = Command::new(program).arg("--help").output() {
            needs::missing(&format!(
                "cannot run {program} ({e}); install it with `apt-get install mosquitto mosquitto-clients`"
            ));
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosquitto-made");
    let made = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&path)
        .args(["carol", "c4rol"])
        .status()
        .unwrap();
    assert!(made.success());
    let broker = TestBroker::start_with(|c| c.password_file = path);
    let publish = |password: &str| {
        let port = broker.addr().port().to_string();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-u",
                    "carol",
                    "-P",
                    &password,
                ])
                .args(["-t", "auth/t", "-m", "x", "-q", "1"])
                .output()
                .unwrap()
        })
    };
    let accepted = publish("c4rol").await.unwrap();
    assert!(accepted.status.success(), "{accepted:?}");
    let refused = publish("carol").await.unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(said.contains("bad user name or password"), "{said}");
}

#[test]
fn a_damaged_password_file_stops_start_up_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwords");
    std::fs::write(&path, "# users\nalice:wonderland\n").unwrap();
    let config = Config {
        bind: "127.0.0.1:0".to_owned(),
        data_dir: dir.path().join("data"),
        ws_bind: String::new(),
        admin_bind: String::new(),
        password_file: path.clone(),
        ..Config::default()
    };
    let error = match BackgroundBroker::start(config.clone()) {
        Ok(_) => panic!("started with a damaged password file"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("password_file") && error.contains(&*path.to_string_lossy()),
        "{error}"
    );
    assert!(error.contains("line 2"), "{error}");
    let missing = Config {
        password_file: dir.path().join("absent"),
        ..config
    };
    let error = match BackgroundBroker::start(missing) {
        Ok(_) => panic!("started without its password file"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("absent"), "{error}");
}

/// An application hook that refuses the client id "banned" with 0x8A Banned.
struct BanList;

impl harbormq::broker::hooks::Hooks for BanList {
    fn authenticate<'a>(
        &'a self,
        connect: &'a harbormq::broker::hooks::ConnectInfo,
    ) -> harbormq::broker::hooks::HookFuture<'a, harbormq::broker::hooks::AuthDecision> {
        use harbormq::broker::hooks::{ready, AuthDecision};
        ready(match connect.client_id.as_str() {
            "banned" => AuthDecision::Refuse(ReasonCode(0x8A)),
            _ => AuthDecision::Allow,
        })
    }
}

#[tokio::test]
async fn the_password_file_and_the_applications_hooks_must_both_let_a_client_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        password_file: password_file(dir.path()),
        ..Config::default()
    };
    let builder = harbormq::Broker::builder()
        .config(config)
        .tcp(Some("127.0.0.1:0"))
        .websocket(None)
        .hooks(BanList);
    let broker = BackgroundBroker::start_broker(builder).unwrap();
    let addr = broker.handle().tcp_addr().unwrap();
    let code = |client_id: &'static str, password: &'static str| async move {
        let mut connect = connect_packet(client_id, true, 30);
        connect.username = Some("alice".into());
        connect.password = Some(bytes::Bytes::from_static(password.as_bytes()));
        common::RawClient::open(addr)
            .await
            .connect(connect)
            .await
            .code
    };
    assert_eq!(code("ok", "wonderland").await, ReasonCode::SUCCESS);
    // The file says yes, the application no: 0x8A reaches a 3.1.1 client as 5, not authorised.
    assert_eq!(
        code("banned", "wonderland").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        code("ok", "wrong").await,
        ReasonCode::BAD_USERNAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn refused_connects_are_counted_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = password_file(dir.path());
    let broker = TestBroker::start_with(|c| {
        c.password_file = path;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "metrics-token".to_owned();
    });
    assert_eq!(
        v311(&broker, Some("alice"), Some("nope")).await,
        ReasonCode::BAD_USERNAME_OR_PASSWORD
    );
    assert_eq!(v311(&broker, None, None).await, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        v311(&broker, Some("bob"), Some("builder")).await,
        ReasonCode::SUCCESS
    );
    let url = format!("http://{}", broker.handle().admin_addr().unwrap());
    let text = tokio::task::spawn_blocking(move || {
        let client =
            harbormq::admin::client::AdminClient::new(&url, Some("metrics-token".to_owned()))
                .unwrap();
        client.request("GET", "/metrics").unwrap().text()
    })
    .await
    .unwrap();
    assert!(
        text.lines()
            .any(|l| l == "harbormq_connects_refused_total 2"),
        "{text}"
    );
}

#[tokio::test]
async fn the_admin_api_reads_the_password_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = password_file(dir.path());
    let config_path = path.clone();
    let broker = TestBroker::start_with(|c| {
        c.password_file = config_path;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "reload-token".to_owned();
    });
    let url = format!("http://{}", broker.handle().admin_addr().unwrap());
    let reload = move || {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let client =
                harbormq::admin::client::AdminClient::new(&url, Some("reload-token".to_owned()))
                    .unwrap();
            let response = client.request("POST", "/api/reload").unwrap();
            (response.status, response.text())
        })
    };

    let mut file = PasswordFile::default();
    file.set("carol", "c4rol", 100);
    std::fs::write(&path, file.to_string()).unwrap();
    let (status, body) = reload().await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"acl_file_rules":null,"certificate_reloaded":false,"password_file_users":1}"#
        )
    );
    assert_eq!(
        v311(&broker, Some("carol"), Some("c4rol")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        v311(&broker, Some("alice"), Some("wonderland")).await,
        ReasonCode::BAD_USERNAME_OR_PASSWORD
    );

    std::fs::write(&path, "carol\n").unwrap();
    let (status, body) = reload().await.unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("line 1"), "{body}");
    assert_eq!(
        v311(&broker, Some("carol"), Some("c4rol")).await,
        ReasonCode::SUCCESS,
        "the previous users stay"
    );
}

#[derive(clap::Parser)]
struct BenchCli {
    #[command(flatten)]
    bench: harbormq::loadgen::BenchArgs,
}

/// A 2 × 200 QoS 1 fan-in with these credentials against the broker.
fn bench_with(
    broker: &TestBroker,
    credentials: &[&str],
) -> anyhow::Result<harbormq::loadgen::Report> {
    use clap::Parser as _;
    let port = broker.addr().port().to_string();
    let mut argv = vec![
        "bench",
        "fan-in",
        "--port",
        &port,
        "--publishers",
        "2",
        "--messages",
        "200",
        "--qos",
        "1",
        "--timeout",
        "30",
        "--quiet",
    ];
    argv.extend_from_slice(credentials);
    let cli = BenchCli::try_parse_from(argv).unwrap();
    harbormq::loadgen::run_report(cli.bench)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_logs_in_with_username_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), None);
    let accepted = tokio::task::block_in_place(|| {
        bench_with(
            &broker,
            &["--username", "alice", "--password", "wonderland"],
        )
    })
    .unwrap();
    assert!(accepted.ok, "errors: {:?}", accepted.errors);
    assert_eq!(accepted.delivery.unwrap().unique, 400);
    let refused = tokio::task::block_in_place(|| {
        bench_with(&broker, &["--username", "alice", "--password", "nope"])
    });
    let error = format!("{:#}", refused.expect_err("a wrong password must not pass"));
    assert!(error.contains("Bad User Name or Password"), "{error}");
}
