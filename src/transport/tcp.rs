//! MQTT over TCP: one accept loop on each session thread, each with its own listener on the same address
//! (SO_REUSEPORT, so the kernel spreads new connections over them), starting sessions where they are
//! accepted (after the TLS handshake, on a TLS listener). Owns no protocol logic.

use crate::broker::session::{ClientStream, Session, SessionPeers};
use crate::error::Error;
use crate::protocol::Peer;
use actix_rt::ArbiterHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Connections waiting to be accepted, per listener.
const BACKLOG: u32 = 4096;

/// Binds `addr` once per session thread and accepts connections on each until `stop` turns true; returns
/// the bound address (the real port when `addr` has port 0).
pub async fn listen(
    addr: SocketAddr,
    arbiters: Vec<ArbiterHandle>,
    peers: Arc<SessionPeers>,
    stop: watch::Receiver<bool>,
    tls: Option<Arc<super::tls::TlsAcceptor>>,
) -> Result<SocketAddr, Error> {
    let shared = arbiters.len() > 1;
    let first = bind(addr, shared)?;
    let local = first.local_addr().map_err(|source| Error::Io {
        context: format!("cannot read the address bound for {addr}"),
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..arbiters.len() {
        listeners.push(bind(local, true)?);
    }
    for (arbiter, listener) in arbiters.iter().zip(listeners) {
        // A listener moves to its thread as a plain socket and registers with that thread's reactor there.
        let listener = listener.into_std().map_err(|source| Error::Io {
            context: format!("cannot hand the listener on {local} to a session thread"),
            source,
        })?;
        let (peers, stop, tls) = (peers.clone(), stop.clone(), tls.clone());
        arbiter.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, peers, stop, tls).await,
                Err(e) => log::error!("cannot listen on {local} on a session thread: {e}"),
            }
        });
    }
    Ok(local)
}

/// A listening socket on `addr`, shared with the other session threads' listeners when `shared`.
fn bind(addr: SocketAddr, shared: bool) -> Result<TcpListener, Error> {
    let failed = |source| Error::Io {
        context: format!("cannot listen on {addr}"),
        source,
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(failed)?;
    socket.set_reuseaddr(true).map_err(failed)?;
    if shared {
        socket.set_reuseport(true).map_err(failed)?;
    }
    socket.bind(addr).map_err(failed)?;
    socket.listen(BACKLOG).map_err(failed)
}

/// Accepts until `stop` turns true; each connection's session runs on this thread.
async fn accept_loop(
    listener: TcpListener,
    peers: Arc<SessionPeers>,
    mut stop: watch::Receiver<bool>,
    tls: Option<Arc<super::tls::TlsAcceptor>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            // Over max_connections_per_sec_per_ip: dropping the stream closes it, before any session state or
            // TLS handshake.
            Ok((stream, peer)) if !peers.admits_from(peer.ip()) => drop(stream),
            Ok((stream, peer)) => match &tls {
                None => start_session(stream, peer, peers.clone()),
                Some(tls) => tls.start(stream, peer, peers.clone()),
            },
            Err(e) => {
                // Running out of file descriptors must not end the loop; back off briefly instead.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn start_session(stream: TcpStream, peer: SocketAddr, peers: Arc<SessionPeers>) {
    set_nodelay(&stream, peer);
    Session::start(
        ClientStream {
            io: Box::new(stream),
            peer: Peer::Tcp(peer),
            identity: None,
        },
        peers,
    );
}

/// Without TCP_NODELAY small packets (PUBACK, QoS 0 fan-out) wait for Nagle's timer.
pub(crate) fn set_nodelay(stream: &TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_nodelay(true) {
        log::warn!("{peer}: cannot set TCP_NODELAY: {e}");
    }
}
