//! MQTT over WebSocket: negotiates the `mqtt` subprotocol, then bridges binary frames to the byte streams a
//! session reads and writes. Owns frame handling (ping, close, fragmentation); no MQTT logic.

use crate::broker::session::{ClientStream, Session, SessionPeers};
use crate::protocol::Peer;
use actix_web::http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream};
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// Subprotocols served, in order of preference: MQTT 3.1.1 names `mqtt` [MQTT-6.0.0-3], MQTT 3.1 clients
/// offer `mqttv3.1`.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Bytes buffered in each direction between the WebSocket and the session.
const BRIDGE_BYTES: usize = 64 * 1024;

/// Room for framing on top of the largest packet, so one frame can carry a whole packet and a few acks.
const FRAME_SLACK_BYTES: usize = 64 * 1024;

/// Spare room below which the outgoing buffer takes a fresh block; above it reads share the current one.
const MIN_READ_BYTES: usize = 4 * 1024;

/// Picks the subprotocol from a request's `Sec-WebSocket-Protocol` headers.
///
/// `Ok(None)` when the client offered none (it is served anyway); `Err` with the offer when it offered only
/// others, since a browser fails a connection whose offer the server ignores.
pub fn negotiate(headers: &HeaderMap) -> Result<Option<&'static str>, String> {
    let mut offered = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let Ok(text) = value.to_str() else { continue };
        offered.extend(text.split(',').map(str::trim).filter(|p| !p.is_empty()));
    }
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|p| SUBPROTOCOLS.iter().find(|s| s.eq_ignore_ascii_case(p)))
        .map(|s| Some(*s))
        .ok_or_else(|| offered.join(", "))
}

/// Completes the WebSocket handshake and starts a session on the current arbiter for the connection.
pub fn accept(
    req: &HttpRequest,
    body: web::Payload,
    peers: Arc<SessionPeers>,
) -> Result<HttpResponse, actix_web::Error> {
    if !req
        .peer_addr()
        .is_none_or(|addr| peers.admits_from(addr.ip()))
    {
        // Over max_connections_per_sec_per_ip: refused before the handshake and any session state.
        return Ok(HttpResponse::TooManyRequests().finish());
    }
    let protocol = match negotiate(req.headers()) {
        Ok(protocol) => protocol,
        Err(offered) => {
            return Ok(HttpResponse::BadRequest().body(format!(
                "no supported WebSocket subprotocol in `{offered}`; use mqtt"
            )));
        }
    };
    let (mut response, ws, frames) = actix_ws::handle(req, body)?;
    if let Some(protocol) = protocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    let peer = Peer::WebSocket(req.peer_addr());
    let max_frame = peers
        .settings
        .max_packet_size_bytes
        .saturating_add(FRAME_SLACK_BYTES);
    let frames = frames.max_frame_size(max_frame);
    let (session_end, bridge_end) = tokio::io::duplex(BRIDGE_BYTES);
    Session::start(
        ClientStream {
            io: Box::new(session_end),
            peer,
            // On a secure WebSocket listener with `use_identity_as_username`, the TLS layer put it there.
            identity: req.conn_data::<crate::protocol::CertificateName>().cloned(),
        },
        peers,
    );
    let (from_session, to_session) = tokio::io::split(bridge_end);
    actix_rt::spawn(frames_to_session(frames, ws.clone(), to_session, peer));
    actix_rt::spawn(session_to_frames(from_session, ws));
    Ok(response)
}

/// Feeds the payload of every binary frame to the session, in order, whatever packet boundaries it holds;
/// answers pings, and ends the session's input on close, error or a non-binary frame.
async fn frames_to_session(
    mut frames: MessageStream,
    mut ws: actix_ws::Session,
    mut to_session: WriteHalf<DuplexStream>,
    peer: Peer,
) {
    while let Some(frame) = frames.recv().await {
        let bytes = match frame {
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Continuation(
                Item::FirstBinary(bytes) | Item::Continue(bytes) | Item::Last(bytes),
            )) => bytes,
            Ok(Message::Ping(payload)) => {
                if ws.pong(&payload).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(Message::Pong(_) | Message::Nop) => continue,
            Ok(Message::Close(_)) => {
                let _ = ws.close(None).await;
                break;
            }
            Ok(Message::Text(_) | Message::Continuation(Item::FirstText(_))) => {
                log::warn!("{peer}: [MQTT-6.0.0-1] text frame received; closing the connection");
                let reason = CloseReason {
                    code: CloseCode::Unsupported,
                    description: Some("MQTT packets travel in binary frames".to_owned()),
                };
                let _ = ws.close(Some(reason)).await;
                break;
            }
            Err(e) => {
                log::warn!("{peer}: WebSocket protocol error: {e}; closing the connection");
                let _ = ws.close(Some(CloseCode::Protocol.into())).await;
                break;
            }
        };
        if to_session.write_all(&bytes).await.is_err() {
            break;
        }
    }
    // The session sees the end of its input and closes as it would for a TCP connection.
    let _ = to_session.shutdown().await;
}

/// Sends what the session writes as binary frames, one frame per read, and closes when the session is done.
///
/// Each frame is a slice of a shared block: a fresh block is taken only when the spare room runs low, not per
/// read, since a block still held by an unsent frame cannot be reclaimed.
async fn session_to_frames(mut from_session: ReadHalf<DuplexStream>, mut ws: actix_ws::Session) {
    let mut buf = BytesMut::new();
    loop {
        if buf.capacity() < MIN_READ_BYTES {
            buf.reserve(BRIDGE_BYTES);
        }
        match from_session.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if ws.binary(buf.split().freeze()).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = ws.close(Some(CloseCode::Normal.into())).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                HeaderName::from_static("sec-websocket-protocol"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn mqtt_is_chosen_from_the_offer() {
        assert_eq!(negotiate(&headers(&["mqtt"])), Ok(Some("mqtt")));
        assert_eq!(
            negotiate(&headers(&["wamp, mqttv3.1"])),
            Ok(Some("mqttv3.1"))
        );
        assert_eq!(
            negotiate(&headers(&["chat", "MQTT, mqttv3.1"])),
            Ok(Some("mqtt"))
        );
    }

    #[test]
    fn no_offer_is_served_and_a_foreign_offer_is_refused() {
        assert_eq!(negotiate(&headers(&[])), Ok(None));
        assert_eq!(
            negotiate(&headers(&["chat, wamp"])),
            Err("chat, wamp".to_owned())
        );
    }
}
