//! The JSON shapes of the admin API and of `--json` output, and how they are built from a store snapshot.
//! Owns no I/O: the HTTP server builds them on the store thread, the offline reader from a read-only file.

use crate::message::{now_ms, Message};
use crate::store::{EntryState, QueuedMessage, SessionSummary, Snapshot, StoreError};
use serde::{Deserialize, Serialize};

/// Bytes of a payload shown as a preview.
pub const PREVIEW_BYTES: usize = 64;

/// Queue entries returned per page when no limit is asked for.
pub const DEFAULT_PAGE: usize = 50;

/// Most queue entries returned per page.
pub const MAX_PAGE: usize = 10_000;

/// One persistent session: a row of `sessions list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection is attached (always false when read from the file).
    pub online: bool,
    /// Subscriptions held.
    pub subscriptions: u64,
    /// Messages waiting to be sent.
    pub queued_messages: u64,
    /// Topic plus payload bytes of the waiting messages.
    pub queued_bytes: u64,
    /// Outbound messages in a QoS 1/2 handshake.
    pub inflight: u64,
    /// When the client was last seen (connect or disconnect), RFC 3339 in UTC.
    pub last_seen: String,
    /// The MQTT version of its last CONNECT: "3.1", "3.1.1" or "5.0".
    pub protocol: String,
    /// Its MQTT 5.0 Session Expiry Interval in seconds (4294967295: never); absent for earlier versions,
    /// which the broker's `session_expiry_secs` applies to.
    pub session_expiry_secs: Option<u32>,
}

/// The MQTT version named as users know it.
pub fn protocol_name(level: crate::codec::ProtocolLevel) -> &'static str {
    match level {
        crate::codec::ProtocolLevel::V31 => "3.1",
        crate::codec::ProtocolLevel::V311 => "3.1.1",
        crate::codec::ProtocolLevel::V5 => "5.0",
    }
}

/// A stored expiry in milliseconds as the seconds a client asked for.
fn expiry_secs(expiry_interval_ms: Option<u64>) -> Option<u32> {
    expiry_interval_ms.map(|ms| u32::try_from(ms / 1000).unwrap_or(u32::MAX))
}

/// A subscription with its granted QoS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    /// The topic filter.
    pub filter: String,
    /// The granted QoS.
    pub qos: u8,
}

/// One entry of a session's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    /// Position in the session's queue.
    pub seq: u64,
    /// "queued", "publish_sent" (awaiting PUBACK/PUBREC) or "pubrel_sent" (awaiting PUBCOMP).
    pub state: String,
    /// Packet id of the handshake, once sent.
    pub packet_id: Option<u16>,
    /// Delivery QoS.
    pub qos: u8,
    /// Topic; absent once the message was released (PUBREL state).
    pub topic: Option<String>,
    /// Payload bytes; absent once released.
    pub size: Option<u64>,
    /// Seconds since the broker received the message; absent once released.
    pub age_secs: Option<u64>,
    /// The first bytes of the payload as text, when asked for.
    pub payload: Option<String>,
    /// The MQTT 5.0 message properties, when the payload is asked for and the message has some.
    pub properties: Option<crate::codec::Properties>,
}

/// Everything about one session: `sessions show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection is attached.
    pub online: bool,
    /// When the session was created, RFC 3339.
    pub created_at: String,
    /// When the client was last seen, RFC 3339.
    pub last_seen: String,
    /// Messages waiting to be sent (whole queue).
    pub queued_messages: u64,
    /// Their topic plus payload bytes.
    pub queued_bytes: u64,
    /// The MQTT version of its last CONNECT.
    pub protocol: String,
    /// Its MQTT 5.0 Session Expiry Interval in seconds; absent for earlier versions.
    pub session_expiry_secs: Option<u32>,
    /// Subscriptions with granted QoS.
    pub subscriptions: Vec<SubscriptionRow>,
    /// Entries of this page still waiting to be sent.
    pub queued: Vec<QueueRow>,
    /// Entries of this page in a QoS handshake (they come first in a queue).
    pub inflight: Vec<QueueRow>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// One retained message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedRow {
    /// The topic.
    pub topic: String,
    /// Its QoS.
    pub qos: u8,
    /// Payload bytes.
    pub size: u64,
    /// When the broker received it, RFC 3339.
    pub stored_at: String,
}

/// Broker-wide figures: `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// "live" (from the admin API) or "offline" (from the database file).
    pub source: String,
    /// Connected clients; absent offline.
    pub connected_clients: Option<u64>,
    /// Persistent sessions stored.
    pub persistent_sessions: u64,
    /// Subscriptions (live: of every connected or stored session; offline: stored ones).
    pub subscriptions: u64,
    /// Retained messages.
    pub retained_messages: u64,
    /// Messages received since start; absent offline.
    pub messages_in: Option<u64>,
    /// Deliveries since start; absent offline.
    pub messages_out: Option<u64>,
    /// Messages dropped since start (for stuck sessions and by full queues); absent offline.
    pub messages_dropped: Option<u64>,
    /// Queue entries holding a message, all sessions.
    pub queued_messages: u64,
    /// Their topic plus payload bytes.
    pub queued_bytes: u64,
    /// Message bodies stored (each shared by the queue entries naming it).
    pub stored_messages: u64,
    /// Size of the database file in bytes.
    pub database_bytes: u64,
    /// Seconds since the broker started; absent offline.
    pub uptime_secs: Option<u64>,
}

/// The answer to a deletion of expired sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSessions {
    /// The client ids removed.
    pub deleted: Vec<String>,
}

/// The body of every error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Which page of a queue to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries after this sequence number.
    pub after: u64,
    /// Most entries.
    pub limit: usize,
    /// Whether to include payload previews.
    pub payload: bool,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            after: 0,
            limit: DEFAULT_PAGE,
            payload: false,
        }
    }
}

/// A session row from its stored summary.
pub fn session_row(summary: &SessionSummary, online: bool) -> SessionRow {
    SessionRow {
        client_id: summary.client_id.to_string(),
        online,
        subscriptions: summary.subscriptions,
        queued_messages: summary.queued_messages,
        queued_bytes: summary.queued_bytes,
        inflight: summary.inflight,
        last_seen: rfc3339(summary.last_seen_ms),
        protocol: protocol_name(summary.level).to_owned(),
        session_expiry_secs: expiry_secs(summary.expiry_interval_ms),
    }
}

/// One session in full, `None` when there is no such stored session.
pub fn session_detail(
    snapshot: &Snapshot,
    client_id: &str,
    page: Page,
) -> Result<Option<SessionDetail>, StoreError> {
    let Some(summary) = snapshot.session(client_id)? else {
        return Ok(None);
    };
    let limit = page.limit.clamp(1, MAX_PAGE);
    let entries = snapshot.queue(client_id, page.after, limit)?;
    let next_after = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let now = now_ms();
    let (inflight, queued): (Vec<QueueRow>, Vec<QueueRow>) = entries
        .iter()
        .map(|e| queue_row(e, now, page.payload))
        .partition(|row| row.state != "queued");
    Ok(Some(SessionDetail {
        client_id: client_id.to_owned(),
        protocol: protocol_name(summary.level).to_owned(),
        session_expiry_secs: expiry_secs(summary.expiry_interval_ms),
        online: false,
        created_at: rfc3339(summary.created_at_ms),
        last_seen: rfc3339(summary.last_seen_ms),
        queued_messages: summary.queued_messages,
        queued_bytes: summary.queued_bytes,
        subscriptions: snapshot
            .subscriptions(client_id)?
            .into_iter()
            .map(|(filter, grant)| SubscriptionRow {
                filter: filter.as_str().to_owned(),
                qos: grant.qos().as_u8(),
            })
            .collect(),
        queued,
        inflight,
        incoming_qos2: snapshot
            .incoming_qos2(client_id)?
            .into_iter()
            .map(|id| id.get())
            .collect(),
        next_after,
    }))
}

fn queue_row(entry: &QueuedMessage, now: u64, payload: bool) -> QueueRow {
    let (state, packet_id) = match entry.state {
        EntryState::Queued => ("queued", None),
        EntryState::PublishSent(id) => ("publish_sent", Some(id.get())),
        EntryState::PubRelSent(id) => ("pubrel_sent", Some(id.get())),
    };
    let message = entry.message.as_deref();
    QueueRow {
        seq: entry.seq,
        state: state.to_owned(),
        packet_id,
        qos: entry.qos.as_u8(),
        topic: message.map(|m| m.topic.as_str().to_owned()),
        size: message.map(|m| m.payload.len() as u64),
        age_secs: message.map(|m| now.saturating_sub(m.arrived_at_ms) / 1000),
        payload: message.filter(|_| payload).map(|m| preview(&m.payload)),
        properties: message
            .filter(|_| payload)
            .and_then(|m| m.properties.as_deref().map(|p| p.to_properties())),
    }
}

/// A retained message's row.
pub fn retained_row(message: &Message) -> RetainedRow {
    RetainedRow {
        topic: message.topic.as_str().to_owned(),
        qos: message.qos.as_u8(),
        size: message.payload.len() as u64,
        stored_at: rfc3339(message.arrived_at_ms),
    }
}

/// The first [`PREVIEW_BYTES`] of a payload as text: invalid UTF-8 and control characters become `.`.
pub fn preview(payload: &[u8]) -> String {
    let cut = payload.len().min(PREVIEW_BYTES);
    let mut text: String = String::from_utf8_lossy(payload.get(..cut).unwrap_or_default())
        .chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '.'
            } else {
                c
            }
        })
        .collect();
    if payload.len() > cut {
        text.push_str("...");
    }
    text
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC timestamp with second precision.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn previews_are_short_printable_text() {
        assert_eq!(preview(b"hello"), "hello");
        assert_eq!(preview(b"a\nb\xff"), "a.b.");
        let long = vec![b'x'; PREVIEW_BYTES + 1];
        assert_eq!(preview(&long), format!("{}...", "x".repeat(PREVIEW_BYTES)));
    }
}
