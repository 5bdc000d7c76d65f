//! The library API: a broker embedded in the caller's actix System, in-process publish and subscribe against
//! TCP clients in both directions, and the decisions and notifications of registered hooks.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use harbormq::broker::hooks::{
    ready, AuthDecision, ClientInfo, ConnectInfo, DisconnectReason, HookFuture, Hooks,
};
use harbormq::codec::{
    ConnectReturnCode, Packet, Publish, QoS, SubAck, Subscribe, SubscribeReturnCode,
};
use harbormq::message::Message;
use harbormq::topic::{TopicFilter, TopicName};
use harbormq::{BackgroundBroker, Broker, Config};
use rumqttc::MqttOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;

/// A broker with hooks on its own thread, listening on an ephemeral TCP port, WebSocket off.
struct HookedBroker {
    broker: BackgroundBroker,
    addr: SocketAddr,
    _dir: TempDir,
}

impl HookedBroker {
    fn start(hooks: Option<TestHooks>) -> HookedBroker {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let mut builder = Broker::builder()
            .config(config)
            .tcp(Some("127.0.0.1:0"))
            .websocket(None);
        if let Some(hooks) = hooks {
            builder = builder.hooks(hooks);
        }
        let broker = BackgroundBroker::start_broker(builder).unwrap();
        let addr = broker.handle().tcp_addr().unwrap();
        HookedBroker {
            broker,
            addr,
            _dir: dir,
        }
    }

    fn handle(&self) -> &harbormq::BrokerHandle {
        self.broker.handle()
    }

    fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    async fn client(&self, client_id: &str) -> Client {
        Client::connect(self.options(client_id)).await.0
    }
}

/// Hooks whose decisions depend on names, and which report every notification on a channel.
struct TestHooks {
    events: mpsc::UnboundedSender<String>,
    /// The authenticate hook of client "slow" waits for this.
    release_slow: Arc<Notify>,
}

impl TestHooks {
    fn new() -> (TestHooks, mpsc::UnboundedReceiver<String>, Arc<Notify>) {
        let (events, rx) = mpsc::unbounded_channel();
        let release_slow = Arc::new(Notify::new());
        let hooks = TestHooks {
            events,
            release_slow: release_slow.clone(),
        };
        (hooks, rx, release_slow)
    }

    fn note(&self, event: String) -> HookFuture<'_, ()> {
        let _ = self.events.send(event);
        ready(())
    }
}

impl Hooks for TestHooks {
    fn authenticate<'a>(&'a self, connect: &'a ConnectInfo) -> HookFuture<'a, AuthDecision> {
        Box::pin(async move {
            if connect.client_id.as_str() == "slow" {
                self.release_slow.notified().await;
            }
            match connect.username.as_deref() {
                Some("mallory") => AuthDecision::Deny(ConnectReturnCode::BadUsernameOrPassword),
                _ => AuthDecision::Allow,
            }
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        _: &'a ClientInfo,
        message: &'a Message,
    ) -> HookFuture<'a, bool> {
        Box::pin(async move {
            // A hook that takes its time, as one asking another service would.
            if message.topic.as_str().starts_with("slow/") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            !message.topic.as_str().starts_with("forbidden/")
        })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        _: &'a ClientInfo,
        filter: &'a TopicFilter,
        _: QoS,
    ) -> HookFuture<'a, bool> {
        ready(!filter.as_str().starts_with("secret/"))
    }

    fn on_message_publish<'a>(
        &'a self,
        _: &'a ClientInfo,
        message: Message,
    ) -> HookFuture<'a, Option<Message>> {
        let topic = message.topic.as_str();
        ready(if topic.starts_with("drop/") {
            None
        } else if let Some(rest) = topic.strip_prefix("rewrite/") {
            Some(Message {
                topic: TopicName::new(format!("rewritten/{rest}")).unwrap(),
                payload: Bytes::from(message.payload.to_ascii_uppercase()),
                ..message
            })
        } else {
            Some(message)
        })
    }

    fn on_connected<'a>(&'a self, client: &'a ClientInfo, _: bool) -> HookFuture<'a, ()> {
        self.note(format!("connected {}", client.client_id.as_str()))
    }

    fn on_disconnected<'a>(
        &'a self,
        client: &'a ClientInfo,
        reason: DisconnectReason,
    ) -> HookFuture<'a, ()> {
        self.note(format!(
            "disconnected {} {reason:?}",
            client.client_id.as_str()
        ))
    }

    fn on_message_delivered<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        self.note(format!(
            "delivered {} {}",
            client.client_id.as_str(),
            publish.topic
        ))
    }

    fn on_message_acked<'a>(
        &'a self,
        client: &'a ClientInfo,
        publish: &'a Publish,
    ) -> HookFuture<'a, ()> {
        self.note(format!(
            "acked {} {}",
            client.client_id.as_str(),
            publish.topic
        ))
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<String>, wanted: &str) {
    timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if event == wanted {
                return;
            }
        }
        panic!("hook events ended before `{wanted}`");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{wanted}` hook event"));
}

async fn next_message(
    subscription: &mut harbormq::broker::inprocess::Subscription,
) -> harbormq::broker::inprocess::ReceivedMessage {
    timeout(WAIT, subscription.next())
        .await
        .expect("no message within the wait")
        .expect("subscription ended")
}

#[actix_rt::test]
async fn a_broker_runs_in_the_callers_system_without_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let handle = Broker::builder()
        .config(Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        })
        .tcp(None)
        .websocket(None)
        .start()
        .await
        .unwrap();
    assert_eq!(handle.tcp_addr(), None);
    assert_eq!(handle.ws_addr(), None);
    let mut sub = handle.subscribe("local/#", QoS::AtLeastOnce).await.unwrap();
    handle
        .publish("local/x", "one", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let got = next_message(&mut sub).await;
    assert_eq!(got.topic().as_str(), "local/x");
    assert_eq!(&got.payload()[..], b"one");
    assert_eq!(got.qos(), QoS::AtLeastOnce);
    assert!(handle
        .publish("bad/#", "x", QoS::AtMostOnce, false)
        .await
        .is_err());
    handle.shutdown().await;
}

#[tokio::test]
async fn an_in_process_publish_reaches_a_tcp_subscriber() {
    let broker = HookedBroker::start(None);
    let mut tcp = broker.client("tcp-sub").await;
    tcp.subscribe("app/#", rumqttc::QoS::AtLeastOnce).await;
    broker
        .handle()
        .publish("app/status", "ready", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let got = tcp.next_publish().await;
    assert_eq!(got.topic, "app/status");
    assert_eq!(&got.payload[..], b"ready");
    assert_eq!(got.qos, rumqttc::QoS::AtLeastOnce);
}

#[tokio::test]
async fn a_tcp_publish_reaches_an_in_process_subscription() {
    let broker = HookedBroker::start(None);
    let mut sub = broker
        .handle()
        .subscribe("devices/+/temp", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut tcp = broker.client("device-7").await;
    tcp.publish("devices/7/temp", rumqttc::QoS::ExactlyOnce, false, "21.5")
        .await;
    let got = next_message(&mut sub).await;
    assert_eq!(got.topic().as_str(), "devices/7/temp");
    assert_eq!(&got.payload()[..], b"21.5");
    // The delivery QoS is the lower of published and subscribed [MQTT-3.8.4-6].
    assert_eq!(got.qos(), QoS::AtLeastOnce);
    assert!(!got.retain());
}

/// An in-process subscription is a session like a network client's: its QoS 2 messages go through the whole
/// handshake (acknowledged as the stream takes them), and a reader that falls behind by more than the
/// stream holds still gets every message, in order, once it reads.
#[tokio::test]
async fn a_lagging_in_process_reader_gets_every_qos2_message_in_order() {
    const COUNT: usize = 3 * harbormq::broker::inprocess::SUBSCRIPTION_CAPACITY;
    let broker = HookedBroker::start(None);
    let mut sub = broker
        .handle()
        .subscribe("lag/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    // Nothing is read while these are published.
    for n in 0..COUNT {
        broker
            .handle()
            .publish("lag/t", n.to_string(), QoS::ExactlyOnce, false)
            .await
            .unwrap();
    }
    for n in 0..COUNT {
        let got = next_message(&mut sub).await;
        assert_eq!(
            got.payload().as_ref(),
            n.to_string().as_bytes(),
            "out of order or lost"
        );
        assert_eq!(got.qos(), QoS::ExactlyOnce);
    }
    let stats = broker.handle().router_stats().await.unwrap();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

#[tokio::test]
async fn a_subscription_gets_the_retained_message_first_and_dropping_it_unsubscribes() {
    let broker = HookedBroker::start(None);
    let handle = broker.handle();
    handle
        .publish("config/mode", "eco", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let mut sub = handle.subscribe("config/#", QoS::AtMostOnce).await.unwrap();
    let got = next_message(&mut sub).await;
    assert_eq!(&got.payload()[..], b"eco");
    assert!(
        got.retain(),
        "[MQTT-3.3.1-8] retained message sent with RETAIN"
    );
    assert_eq!(handle.router_stats().await.unwrap().subscriptions, 1);
    drop(sub);
    let gone = timeout(WAIT, async {
        loop {
            if handle.router_stats().await.unwrap().subscriptions == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the dropped subscription is still in the router"
    );
}

#[tokio::test]
async fn an_in_process_qos1_publish_is_queued_for_an_offline_persistent_session() {
    let broker = HookedBroker::start(None);
    let mut options = broker.options("keeper");
    options.set_clean_session(false);
    let (mut tcp, _) = Client::connect(options.clone()).await;
    tcp.subscribe("jobs/#", rumqttc::QoS::AtLeastOnce).await;
    tcp.disconnect().await;
    // Resolving means the message is stored for the offline session (durability "sync").
    broker
        .handle()
        .publish("jobs/1", "run", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let (mut tcp, ack) = Client::connect(options).await;
    assert!(ack.session_present);
    let got = tcp.next_publish().await;
    assert_eq!(got.topic, "jobs/1");
    assert_eq!(&got.payload[..], b"run");
}

#[tokio::test]
async fn the_authenticate_hook_refuses_with_its_connack_code() {
    let (hooks, _, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut raw = RawClient::open(broker.addr).await;
    let mut connect = connect_packet("intruder", true, 30);
    connect.username = Some("mallory".into());
    let ack = raw.connect(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::BadUsernameOrPassword);
    // [MQTT-3.2.2-5]: the connection is closed after a refusing CONNACK.
    raw.wait_closed().await;
    let mut raw = RawClient::open(broker.addr).await;
    let mut connect = connect_packet("friend", true, 30);
    connect.username = Some("alice".into());
    assert_eq!(raw.connect(connect).await.code, ConnectReturnCode::Accepted);
}

#[tokio::test]
async fn a_denied_filter_gets_0x80_and_the_others_are_granted() {
    let (hooks, _, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut raw = RawClient::open(broker.addr).await;
    raw.connect(connect_packet("curious", true, 30)).await;
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(9),
        filters: vec![
            (topic_filter("public/#"), QoS::AtLeastOnce.into()),
            (topic_filter("secret/#"), QoS::AtLeastOnce.into()),
        ],
        properties: None,
    }))
    .await;
    match raw.recv().await {
        Packet::SubAck(SubAck {
            packet_id,
            return_codes,
            properties: None,
        }) => {
            assert_eq!(packet_id, pid(9));
            assert_eq!(
                return_codes,
                vec![
                    SubscribeReturnCode::Success(QoS::AtLeastOnce),
                    SubscribeReturnCode::Failure
                ]
            );
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert_eq!(
        broker.handle().router_stats().await.unwrap().subscriptions,
        1
    );
}

#[tokio::test]
async fn denied_and_dropped_publishes_are_not_delivered_and_rewrites_are() {
    let (hooks, _, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut sub = broker
        .handle()
        .subscribe("#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut tcp = broker.client("publisher").await;
    // Sent in this order by one client: anything delivered before the rewrite would come first.
    tcp.publish("forbidden/a", rumqttc::QoS::AtLeastOnce, false, "no")
        .await;
    tcp.publish("drop/a", rumqttc::QoS::AtLeastOnce, false, "gone")
        .await;
    tcp.publish("rewrite/a", rumqttc::QoS::AtLeastOnce, false, "loud")
        .await;
    tcp.publish("plain/a", rumqttc::QoS::AtMostOnce, false, "as is")
        .await;
    let first = next_message(&mut sub).await;
    assert_eq!(first.topic().as_str(), "rewritten/a");
    assert_eq!(&first.payload()[..], b"LOUD");
    let second = next_message(&mut sub).await;
    assert_eq!(second.topic().as_str(), "plain/a");
    assert_eq!(&second.payload()[..], b"as is");
}

#[tokio::test]
async fn a_slow_hook_holds_only_its_own_client() {
    let (hooks, _, release_slow) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut slow = RawClient::open(broker.addr).await;
    slow.send(&Packet::Connect(Box::new(connect_packet("slow", true, 30))))
        .await;
    // While "slow" waits in its authenticate hook, another client connects, subscribes and publishes.
    let mut fast = broker.client("fast").await;
    fast.subscribe("busy/#", rumqttc::QoS::AtLeastOnce).await;
    fast.publish("busy/x", rumqttc::QoS::AtLeastOnce, false, "moving")
        .await;
    assert_eq!(&fast.next_publish().await.payload[..], b"moving");
    slow.expect_silence(QUIET).await;
    release_slow.notify_one();
    match slow.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.code, ConnectReturnCode::Accepted),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn notification_hooks_see_connect_delivery_ack_and_disconnect() {
    let (hooks, mut events, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut tcp = broker.client("watched").await;
    next_event(&mut events, "connected watched").await;
    tcp.subscribe("news/#", rumqttc::QoS::AtLeastOnce).await;
    broker
        .handle()
        .publish("news/today", "sunny", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&tcp.next_publish().await.payload[..], b"sunny");
    next_event(&mut events, "delivered watched news/today").await;
    next_event(&mut events, "acked watched news/today").await;
    tcp.disconnect().await;
    next_event(&mut events, "disconnected watched Client").await;
}

/// With hooks that take their time, a client's packets are still answered, and take effect, in the order it
/// sent them: an UNSUBSCRIBE does not overtake the PUBLISH before it (the client gets its own message), and
/// no SUBACK or UNSUBACK leaves before the PUBACK of an earlier PUBLISH.
#[tokio::test]
async fn with_slow_hooks_packets_take_effect_and_are_answered_in_order() {
    let (hooks, _events, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut client = RawClient::open(broker.addr).await;
    client.connect(connect_packet("orderly", true, 30)).await;
    client.subscribe(1, "slow/t", QoS::AtMostOnce).await;
    client
        .send_together(&[
            publish_packet("slow/t", QoS::AtLeastOnce, Some(2), false, b"first"),
            Packet::Unsubscribe(harbormq::codec::Unsubscribe {
                packet_id: pid(3),
                filters: vec![topic_filter("slow/t")],
                properties: None,
            }),
            publish_packet("slow/t", QoS::AtLeastOnce, Some(4), false, b"second"),
            Packet::Subscribe(Subscribe {
                packet_id: pid(5),
                filters: vec![(topic_filter("other/t"), QoS::AtMostOnce.into())],
                properties: None,
            }),
            Packet::PingReq,
        ])
        .await;
    let mut answers = Vec::new();
    let mut delivered = Vec::new();
    while answers.last() != Some(&Packet::PingResp) {
        match client.recv().await {
            Packet::Publish(p) => delivered.push(p.payload),
            other => answers.push(other),
        }
    }
    assert_eq!(
        answers,
        vec![
            Packet::PubAck(pid(2).into()),
            Packet::UnsubAck(pid(3).into()),
            Packet::PubAck(pid(4).into()),
            Packet::SubAck(SubAck {
                packet_id: pid(5),
                return_codes: vec![SubscribeReturnCode::Success(QoS::AtMostOnce)],
                properties: None,
            }),
            Packet::PingResp,
        ]
    );
    assert_eq!(
        delivered,
        vec![Bytes::from_static(b"first")],
        "the publish before UNSUBSCRIBE reaches the client, the one after does not"
    );
}

/// Polls a rumqttc v5 event loop until `wanted` returns something from an incoming packet, within the wait.
async fn v5_next<T>(
    events: &mut rumqttc::v5::EventLoop,
    mut wanted: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(packet)) => {
                    if let Some(found) = wanted(&packet) {
                        return found;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("v5 client failed: {e}"),
            }
        }
    };
    timeout(WAIT, wait).await.expect("the awaited packet")
}

/// `BrokerHandle::publish_with_properties` reaches an MQTT 5.0 subscriber with its properties (user
/// properties in order) and an in-process subscription, which sees them too.
#[tokio::test]
async fn an_in_process_publish_with_properties_reaches_a_v5_subscriber_unchanged() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    let broker = HookedBroker::start(None);
    let mut inproc = broker
        .handle()
        .subscribe("props/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let options = rumqttc::v5::MqttOptions::new("v5-sub", "127.0.0.1", broker.addr.port());
    let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    client
        .subscribe("props/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    v5_next(&mut events, |p| matches!(p, P5::SubAck(_)).then_some(())).await;
    let properties = harbormq::codec::Properties {
        user_properties: harbormq::codec::UserProperties::from_pairs([("b", "2"), ("a", "1")])
            .unwrap(),
        content_type: Some("application/json".into()),
        response_topic: Some("props/reply".into()),
        correlation_data: Some(Bytes::from_static(b"id-7")),
        message_expiry_interval: Some(600),
        // Not a message property: left out.
        session_expiry_interval: Some(5),
        ..Default::default()
    };
    broker
        .handle()
        .publish_with_properties("props/a", "{}", QoS::AtLeastOnce, false, properties)
        .await
        .unwrap();
    let got = v5_next(&mut events, |p| match p {
        P5::Publish(publish) => Some(publish.clone()),
        _ => None,
    })
    .await;
    let p = got.properties.expect("properties");
    assert_eq!(
        p.user_properties,
        vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned())
        ]
    );
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("props/reply"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"id-7"[..]));
    let expiry = p.message_expiry_interval.expect("the expiry left");
    assert!((599..=600).contains(&expiry), "{expiry}");
    let received = next_message(&mut inproc).await;
    assert_eq!(received.properties().user_properties.len(), 2);
    assert_eq!(received.properties().session_expiry_interval, None);
}

/// The publish hooks see an MQTT 5.0 client's message with its properties, and a publish they deny is
/// answered with PUBACK 0x87 Not authorized (section 3.4.2.1).
#[tokio::test]
async fn hooks_see_v5_properties_and_a_denied_v5_publish_gets_0x87() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason, PublishProperties};
    let (hooks, _, _) = TestHooks::new();
    let broker = HookedBroker::start(Some(hooks));
    let mut inproc = broker
        .handle()
        .subscribe("#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let options = rumqttc::v5::MqttOptions::new("v5-pub", "127.0.0.1", broker.addr.port());
    let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    let properties = PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    client
        .publish_with_properties(
            "forbidden/x",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "no",
            properties.clone(),
        )
        .await
        .unwrap();
    let reason = v5_next(&mut events, |p| match p {
        P5::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);
    client
        .publish_with_properties(
            "plain/x",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "yes",
            properties,
        )
        .await
        .unwrap();
    let reason = v5_next(&mut events, |p| match p {
        P5::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::Success);
    let received = next_message(&mut inproc).await;
    assert_eq!(received.topic().as_str(), "plain/x");
    assert_eq!(
        received.properties().user_properties.to_vec(),
        [("k".to_owned(), "v".to_owned())]
    );
}
