//! MQTT over TCP: the accept loop, which sets TCP_NODELAY and spreads connections over the session arbiters.
//! Owns no protocol logic.

use crate::broker::session::{ClientStream, Session, SessionPeers};
use crate::error::Error;
use crate::protocol::Peer;
use actix_rt::ArbiterHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Binds `addr` and accepts connections until `stop` turns true; returns the bound address.
pub async fn listen(
    addr: SocketAddr,
    arbiters: Vec<ArbiterHandle>,
    peers: Arc<SessionPeers>,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        context: format!("cannot listen on {addr}"),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        context: format!("cannot read the address bound for {addr}"),
        source,
    })?;
    actix_rt::spawn(async move {
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(arbiter) = arbiters.get(next % arbiters.len().max(1)) else {
                        return;
                    };
                    next = next.wrapping_add(1);
                    hand_over(stream, peer, arbiter, peers.clone());
                }
                Err(e) => {
                    // Running out of file descriptors must not end the loop; back off briefly instead.
                    log::warn!("accept failed on {local}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(local)
}

/// Moves an accepted socket to a session arbiter, where its session actor lives.
fn hand_over(
    stream: TcpStream,
    peer: SocketAddr,
    arbiter: &ArbiterHandle,
    peers: Arc<SessionPeers>,
) {
    // Without TCP_NODELAY small packets (PUBACK, QoS 0 fan-out) wait for Nagle's timer.
    if let Err(e) = stream.set_nodelay(true) {
        log::warn!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    let std_stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{peer}: cannot hand the socket over: {e}");
            return;
        }
    };
    arbiter.spawn(async move {
        let stream = match TcpStream::from_std(std_stream) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{peer}: cannot register the socket: {e}");
                return;
            }
        };
        Session::start(
            ClientStream {
                io: Box::new(stream),
                peer: Peer::Tcp(peer),
            },
            peers,
        );
    });
}
