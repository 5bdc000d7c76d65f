//! rumqttc steps the process tests share: connect and wait for CONNACK, subscribe and wait for SUBACK, disconnect
//! and wait for the close. Every wait is bounded by `within`; what a test then expects of the broker stays in the test.

use super::within;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::time::Duration;

/// Requests a client may queue before its calls wait: room for a whole pipelined publishing run.
const REQUEST_CAPACITY: usize = 1_000;

/// Client options for the broker on `port` with a 60 s keep-alive; tests add their own limits.
pub fn options(client_id: &str, port: u16, clean_session: bool) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(clean_session);
    options
}

/// Connects and waits for CONNACK; returns the client, its event loop and the session-present flag.
pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop, bool) {
    let id = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    loop {
        match within(&format!("CONNACK for {id}"), eventloop.poll()).await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{id}");
                return (client, eventloop, ack.session_present);
            }
            Ok(_) => {}
            Err(e) => panic!("{id} could not connect: {e}"),
        }
    }
}

/// Subscribes and waits for a SUBACK that grants `qos`.
pub async fn subscribe(client: &AsyncClient, eventloop: &mut EventLoop, filter: &str, qos: QoS) {
    client.subscribe(filter, qos).await.unwrap();
    loop {
        match within("SUBACK", eventloop.poll()).await {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = rumqttc::SubscribeReasonCode::Success(qos);
                assert_eq!(ack.return_codes, vec![granted], "SUBACK for {filter}");
                return;
            }
            Ok(_) => {}
            Err(e) => panic!("connection lost before SUBACK: {e}"),
        }
    }
}

/// Sends DISCONNECT and polls until the broker has closed the connection.
pub async fn disconnect(client: AsyncClient, mut eventloop: EventLoop) {
    client.disconnect().await.unwrap();
    within("the broker closing after DISCONNECT", async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

/// A session with `options` (persistent ones go offline holding the subscription) subscribes to `filter`
/// and disconnects.
pub async fn subscribe_offline(options: MqttOptions, filter: &str, qos: QoS) {
    let (client, mut eventloop, _) = connect(options).await;
    subscribe(&client, &mut eventloop, filter, qos).await;
    disconnect(client, eventloop).await;
}
