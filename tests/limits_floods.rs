//! Connection floods against a real broker with raw tokio sockets: connections faster than
//! `max_connections_per_sec_per_ip` are closed at once (over TCP and before a WebSocket upgrade), and a
//! thousand connections that never complete CONNECT (silent, or sending a byte at a time) are all cut off by
//! `connect_timeout_secs`, a deadline from the accept. An already connected client keeps a bounded round trip
//! meanwhile, and every cut is counted in `/metrics`.

mod common;
mod limits_support;

use bytes::BytesMut;
use common::{connect_packet, WAIT};
use harbormq::codec::{encode_packet, Packet};
use limits_support::{broker, hits, with_bystander};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How a flood connection ended, as its client saw it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The broker answered CONNECT with CONNACK.
    Accepted,
    /// The broker closed it without a byte.
    Closed,
}

/// Opens a connection, sends CONNECT, and reports whether CONNACK or the end of the stream came.
async fn try_connect(addr: std::net::SocketAddr, n: usize) -> (Outcome, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet(&format!("rate-{n}"), true, 30))),
        &mut out,
    )
    .unwrap();
    // The broker may have closed it already: a failed write shows in the read.
    let _ = stream.write_all(&out).await;
    let mut first = [0u8; 1];
    let outcome = match timeout(WAIT, stream.read(&mut first)).await {
        Ok(Ok(1)) => {
            assert_eq!(first[0], 0x20, "CONNACK");
            Outcome::Accepted
        }
        Ok(Ok(_)) | Ok(Err(_)) => Outcome::Closed,
        Err(_) => panic!("connection {n}: neither CONNACK nor a close within {WAIT:?}"),
    };
    (outcome, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_faster_than_the_rate_from_one_address_are_closed_at_once() {
    let broker = broker(|c| c.max_connections_per_sec_per_ip = 20);
    let addr = broker.addr();
    let ((outcomes, took), trips) = with_bystander(&broker, async {
        let started = Instant::now();
        let mut outcomes = Vec::new();
        let mut kept = Vec::new();
        for n in 0..60 {
            let (outcome, stream) = try_connect(addr, n).await;
            outcomes.push(outcome);
            kept.push(stream);
        }
        (outcomes, started.elapsed())
    })
    .await;
    trips.assert_bounded();
    let accepted = outcomes.iter().filter(|o| **o == Outcome::Accepted).count();
    let closed = outcomes.len() - accepted;
    // The bystander took one of the burst of 20; the rest of it, and what the rate refilled while the 60
    // attempts ran, got in, and no more.
    let refilled = (took.as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        (19..=20 + refilled).contains(&accepted),
        "{accepted} accepted in {took:?}"
    );
    assert!(closed > 0, "none closed in {took:?}");
    assert_eq!(
        hits(&broker, "max_connections_per_sec_per_ip").await,
        closed as f64,
        "every connection closed at once is counted"
    );
    // Another address is not held back: 127.0.0.2 is loopback too, and a source of its own.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet("other-address", true, 30))),
        &mut out,
    )
    .unwrap();
    other.write_all(&out).await.unwrap();
    let mut ack = [0u8; 4];
    timeout(WAIT, other.read_exact(&mut ack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_over_the_rate_is_refused_with_429() {
    let broker = broker(|c| {
        c.max_connections_per_sec_per_ip = 2;
        c.ws_bind = "127.0.0.1:0".to_owned();
    });
    let ws = broker
        .handle()
        .ws_addr()
        .expect("the WebSocket listener runs");
    let url = format!("ws://{ws}/mqtt");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        match timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("an answer in time")
        {
            Ok((socket, response)) => {
                statuses.push(response.status().as_u16());
                drop(socket);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                statuses.push(response.status().as_u16())
            }
            Err(e) => panic!("unexpected WebSocket error {e}"),
        }
    }
    assert_eq!(statuses, vec![101, 101, 429, 429]);
    assert_eq!(hits(&broker, "max_connections_per_sec_per_ip").await, 2.0);
}

/// A connection that never completes CONNECT: silent, or sending the start of one a byte at a time. Returns
/// how long after it was opened the broker closed it.
async fn stalled_connection(addr: std::net::SocketAddr, trickle: bool) -> Duration {
    let opened = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut connect = BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet(&"s".repeat(100), true, 30))),
        &mut connect,
    )
    .unwrap();
    let mut bytes = connect.iter().copied();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut buf = [0u8; 16];
    let bound = Duration::from_secs(2) + WAIT;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => return opened.elapsed(),
                    Ok(n) => panic!("the broker sent {n} bytes to a connection without CONNECT"),
                }
            }
            _ = tick.tick(), if trickle => {
                let byte = bytes.next().expect("the CONNECT is longer than the deadline lets through");
                // A failed write means the broker closed it; the read says so next.
                let _ = stream.write_all(&[byte]).await;
            }
            _ = tokio::time::sleep_until(opened + bound) => {
                panic!("a connection without CONNECT was still open after {bound:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_without_connect_are_cut_off_at_the_deadline() {
    const FLOOD: usize = 1000;
    let broker = broker(|c| c.connect_timeout_secs = 2);
    let addr = broker.addr();
    let (lifetimes, trips) = with_bystander(&broker, async {
        let tasks: Vec<_> = (0..FLOOD)
            .map(|n| tokio::spawn(stalled_connection(addr, n % 2 == 1)))
            .collect();
        let mut lifetimes = Vec::with_capacity(FLOOD);
        for task in tasks {
            lifetimes.push(task.await.unwrap());
        }
        lifetimes
    })
    .await;
    trips.assert_bounded();
    // Cut at the deadline set at the accept, not moved by the bytes that trickled in: none lived much less
    // (the deadline holds) or much more (the timer is not starved by the flood).
    let shortest = lifetimes.iter().min().unwrap();
    let longest = lifetimes.iter().max().unwrap();
    assert!(*shortest >= Duration::from_millis(1900), "{shortest:?}");
    assert!(*longest < Duration::from_secs(5), "{longest:?}");
    assert_eq!(hits(&broker, "connect_timeout_secs").await, FLOOD as f64);
}
