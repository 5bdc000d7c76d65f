//! `max_connections` (issue 10) closes one connection too many at once, counts it in `/metrics`, and lets a new
//! connection in once another has ended; a packet over `max_packet_size_bytes` is counted as a limit hit too.
//! The other limits have their own files: `limits_rules.rs`, `limits_floods.rs`, `limits_memory.rs`.

mod common;

use common::{connect_packet, TestBroker, WAIT};
use harbormq::codec::{Packet, ReasonCode};
use tokio::time::Instant;

/// The figure of `name` in the broker's `/metrics`.
async fn metric(broker: &TestBroker, name: &'static str) -> String {
    let url = format!("http://{}", broker.handle().admin_addr().unwrap());
    tokio::task::spawn_blocking(move || {
        let client =
            harbormq::admin::client::AdminClient::new(&url, Some("limits-token".to_owned()))
                .unwrap();
        let text = client.request("GET", "/metrics").unwrap().text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn max_connections_closes_one_too_many_and_lets_one_in_once_another_ends() {
    let broker = TestBroker::start_with(|c| {
        c.max_connections = 2;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "limits-token".to_owned();
    });
    let (mut first, ack) = broker.raw_connected("first", true, 30).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    let (second, ack) = broker.raw_connected("second", true, 30).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);

    // The third is closed before it can say anything: no CONNACK, just the end of the stream.
    let mut third = broker.raw().await;
    third
        .send(&Packet::Connect(Box::new(connect_packet(
            "third", true, 30,
        ))))
        .await;
    assert_eq!(third.wait_closed().await, Vec::<Packet>::new());
    assert_eq!(
        metric(&broker, "harbormq_connections_over_limit_total").await,
        "1"
    );
    assert_eq!(
        metric(
            &broker,
            "harbormq_limit_hits_total{limit=\"max_connections\"}"
        )
        .await,
        "1"
    );

    // The connections that were in are unaffected.
    drop(second);
    first.send(&Packet::PingReq).await;
    assert_eq!(first.recv().await, Packet::PingResp);

    // Once the second has ended, a new connection gets in (the end is seen by the broker when it reads the
    // closed socket, so a refused attempt or two may come first).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = broker.raw().await;
        again
            .send(&Packet::Connect(Box::new(connect_packet(
                "again", true, 30,
            ))))
            .await;
        match again.recv_within(WAIT).await {
            Ok(Some(Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, ReasonCode::SUCCESS);
                break;
            }
            Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
            Err(()) => panic!("neither CONNACK nor a close within {WAIT:?}"),
            // Each refused attempt is itself a round trip, which gives the broker time to see the end.
            Ok(None) => assert!(Instant::now() < deadline, "never let in after one ended"),
        }
    }
}

#[tokio::test]
async fn a_packet_over_the_size_limit_closes_the_connection_and_is_counted() {
    let broker = TestBroker::start_with(|c| {
        c.max_packet_size_bytes = 1024;
        c.admin_bind = "127.0.0.1:0".to_owned();
        c.admin_token = "limits-token".to_owned();
    });
    let (mut client, ack) = broker.raw_connected("big", true, 30).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    client
        .send(&common::publish_packet(
            "big/t",
            harbormq::codec::QoS::AtMostOnce,
            None,
            false,
            &[b'x'; 2048],
        ))
        .await;
    assert_eq!(client.wait_closed().await, Vec::<Packet>::new());
    assert_eq!(
        metric(
            &broker,
            "harbormq_limit_hits_total{limit=\"max_packet_size_bytes\"}"
        )
        .await,
        "1"
    );
}
