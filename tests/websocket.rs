//! MQTT over WebSocket against the `ws_bind` listener: subprotocol negotiation, packets split across frames
//! and packed into one frame, WebSocket ping, non-binary frames, and delivery across transports.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use futures::{SinkExt, StreamExt};
use harbormq::codec::{decode_packet, encode_packet, Packet, QoS, Role, Subscribe};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_broker() -> TestBroker {
    TestBroker::start_with(|c| c.ws_bind = "127.0.0.1:0".to_owned())
}

fn url(broker: &TestBroker) -> String {
    format!("ws://{}/mqtt", broker.handle().ws_addr().unwrap())
}

/// Opens a WebSocket offering `protocols`; returns the stream and the subprotocol the server chose.
async fn open(broker: &TestBroker, protocols: &str) -> (Ws, Option<String>) {
    let mut request = url(broker).into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocols).unwrap(),
    );
    let (ws, response) = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, chosen)
}

fn encode(packets: &[Packet]) -> Bytes {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode_packet(packet, &mut buf).unwrap();
    }
    buf.freeze()
}

/// Reads frames, decoding packets across frame boundaries, until `n` packets arrived.
async fn recv_packets(ws: &mut Ws, buf: &mut BytesMut, n: usize) -> Vec<Packet> {
    let mut packets = Vec::new();
    while packets.len() < n {
        while let Some(p) = decode_packet(buf, Role::Client, usize::MAX).unwrap() {
            packets.push(p);
        }
        if packets.len() >= n {
            break;
        }
        match timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(bytes))) => buf.extend_from_slice(&bytes),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
    packets
}

async fn connect_over(ws: &mut Ws, buf: &mut BytesMut, client_id: &str) {
    let bytes = encode(&[Packet::Connect(Box::new(connect_packet(
        client_id, true, 30,
    )))]);
    ws.send(Message::Binary(bytes)).await.unwrap();
    match recv_packets(ws, buf, 1).await.as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.code.0, 0, "{ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn the_mqtt_subprotocol_is_negotiated() {
    let broker = ws_broker();
    // [MQTT-6.0.0-4]: the server selects "mqtt".
    let (_ws, chosen) = open(&broker, "mqtt").await;
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    let (_ws, chosen) = open(&broker, "mqttv3.1").await;
    assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
    let (_ws, chosen) = open(&broker, "wamp, mqtt").await;
    assert_eq!(chosen.as_deref(), Some("mqtt"));
}

#[tokio::test]
async fn a_foreign_subprotocol_is_refused() {
    let broker = ws_broker();
    let mut request = url(&broker).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("chat"));
    let result = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "handshake with only `chat` offered succeeded"
    );
}

#[tokio::test]
async fn a_connect_split_into_one_byte_frames_is_accepted() {
    let broker = ws_broker();
    let (mut ws, _) = open(&broker, "mqtt").await;
    let bytes = encode(&[Packet::Connect(Box::new(connect_packet("split", true, 30)))]);
    for i in 0..bytes.len() {
        ws.send(Message::Binary(bytes.slice(i..i + 1)))
            .await
            .unwrap();
    }
    let mut buf = BytesMut::new();
    match recv_packets(&mut ws, &mut buf, 1).await.as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.code.0, 0),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn several_packets_in_one_frame_are_all_handled() {
    let broker = ws_broker();
    let (mut ws, _) = open(&broker, "mqtt").await;
    let mut buf = BytesMut::new();
    connect_over(&mut ws, &mut buf, "packed").await;
    let frame = encode(&[
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(topic_filter("ws/packed"), QoS::AtLeastOnce.into())],
            properties: None,
        }),
        Packet::PingReq,
    ]);
    ws.send(Message::Binary(frame)).await.unwrap();
    let packets = recv_packets(&mut ws, &mut buf, 2).await;
    assert!(
        packets.iter().any(|p| matches!(p, Packet::SubAck(_))),
        "{packets:?}"
    );
    assert!(
        packets.iter().any(|p| matches!(p, Packet::PingResp)),
        "{packets:?}"
    );
    // A publish split across two frames, the second also holding a PINGREQ.
    let publish = encode(&[publish_packet(
        "ws/packed",
        QoS::AtLeastOnce,
        Some(2),
        false,
        b"hello",
    )]);
    let ping = encode(&[Packet::PingReq]);
    let mut second = BytesMut::from(&publish[3..]);
    second.extend_from_slice(&ping);
    ws.send(Message::Binary(publish.slice(..3))).await.unwrap();
    ws.send(Message::Binary(second.freeze())).await.unwrap();
    let packets = recv_packets(&mut ws, &mut buf, 3).await;
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, Packet::PubAck(ack) if ack.packet_id.get() == 2)),
        "{packets:?}"
    );
    assert!(
        packets.iter().any(|p| matches!(p, Packet::PingResp)),
        "{packets:?}"
    );
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, Packet::Publish(p) if &p.payload[..] == b"hello")),
        "{packets:?}"
    );
}

#[tokio::test]
async fn a_websocket_ping_is_answered_with_its_payload() {
    let broker = ws_broker();
    let (mut ws, _) = open(&broker, "mqtt").await;
    ws.send(Message::Ping(Bytes::from_static(b"harbor")))
        .await
        .unwrap();
    match timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"harbor"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn a_text_frame_closes_the_connection() {
    let broker = ws_broker();
    let (mut ws, _) = open(&broker, "mqtt").await;
    let mut buf = BytesMut::new();
    connect_over(&mut ws, &mut buf, "texter").await;
    // [MQTT-6.0.0-1]: anything but a binary frame closes the connection.
    ws.send(Message::Text("CONNECT".into())).await.unwrap();
    let end = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection stayed open after a text frame");
}

#[tokio::test]
async fn messages_cross_between_tcp_and_websocket_clients() {
    let broker = ws_broker();
    let (mut ws, _) = open(&broker, "mqtt").await;
    let mut buf = BytesMut::new();
    connect_over(&mut ws, &mut buf, "ws-sub").await;
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(topic_filter("cross/#"), QoS::AtLeastOnce.into())],
        properties: None,
    });
    ws.send(Message::Binary(encode(&[subscribe])))
        .await
        .unwrap();
    assert!(matches!(
        recv_packets(&mut ws, &mut buf, 1).await.as_slice(),
        [Packet::SubAck(_)]
    ));
    let mut tcp = broker.client("tcp-pub").await;
    tcp.subscribe("back/#", rumqttc::QoS::AtLeastOnce).await;
    tcp.publish(
        "cross/a",
        rumqttc::QoS::AtLeastOnce,
        false,
        b"to-ws".to_vec(),
    )
    .await;
    let packets = recv_packets(&mut ws, &mut buf, 1).await;
    let Some(Packet::Publish(p)) = packets.first() else {
        panic!("expected PUBLISH, got {packets:?}");
    };
    assert_eq!(&p.payload[..], b"to-ws");
    assert_eq!(p.topic.as_str(), "cross/a");
    let reply = publish_packet("back/b", QoS::AtMostOnce, None, false, b"to-tcp");
    ws.send(Message::Binary(encode(&[reply]))).await.unwrap();
    let got = timeout(Duration::from_secs(5), tcp.next_publish())
        .await
        .unwrap();
    assert_eq!(&got.payload[..], b"to-tcp");
}
