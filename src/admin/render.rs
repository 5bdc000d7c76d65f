//! Human-readable tables for the admin commands; `--json` output is the model serialised as it is.
//! Pure formatting: no I/O, no knowledge of where the figures came from beyond a live flag.

use super::model::*;
use std::fmt::Write as _;

/// Left-aligned columns separated by two spaces, with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn online_cell(online: bool, live: bool) -> String {
    match (live, online) {
        (false, _) => "-".to_owned(),
        (true, true) => "yes".to_owned(),
        (true, false) => "no".to_owned(),
    }
}

/// `sessions list` as a table; ONLINE is `-` when read from the file.
pub fn sessions(rows: &[SessionRow], live: bool) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.client_id.clone(),
                online_cell(r.online, live),
                r.subscriptions.to_string(),
                r.queued_messages.to_string(),
                r.queued_bytes.to_string(),
                r.inflight.to_string(),
                r.last_seen.clone(),
            ]
        })
        .collect();
    table(
        &[
            "CLIENT ID",
            "ONLINE",
            "SUBS",
            "QUEUED",
            "QUEUED BYTES",
            "INFLIGHT",
            "LAST SEEN",
        ],
        &cells,
    )
}

fn queue_cells(rows: &[QueueRow], payload: bool) -> Vec<Vec<String>> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    rows.iter()
        .map(|r| {
            let mut cells = vec![
                r.seq.to_string(),
                r.state.clone(),
                opt(r.packet_id.map(|p| p.to_string())),
                r.qos.to_string(),
                opt(r.topic.clone()),
                opt(r.size.map(|s| s.to_string())),
                opt(r.age_secs.map(|a| format!("{a}s"))),
            ];
            if payload {
                cells.push(opt(r.payload.clone()));
            }
            cells
        })
        .collect()
}

/// `sessions show` as text: the summary, subscriptions, inflight and queued messages.
pub fn session(d: &SessionDetail, live: bool, payload: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "client id:      {}", d.client_id);
    let _ = writeln!(out, "online:         {}", online_cell(d.online, live));
    let _ = writeln!(out, "created:        {}", d.created_at);
    let _ = writeln!(out, "last seen:      {}", d.last_seen);
    let _ = writeln!(
        out,
        "queued:         {} message(s), {} byte(s)",
        d.queued_messages, d.queued_bytes
    );
    if !d.incoming_qos2.is_empty() {
        let ids: Vec<String> = d.incoming_qos2.iter().map(|i| i.to_string()).collect();
        let _ = writeln!(out, "awaiting PUBREL: {}", ids.join(", "));
    }
    let _ = writeln!(out, "\nsubscriptions ({}):", d.subscriptions.len());
    let subs: Vec<Vec<String>> = d
        .subscriptions
        .iter()
        .map(|s| vec![s.filter.clone(), s.qos.to_string()])
        .collect();
    out.push_str(&table(&["FILTER", "QOS"], &subs));
    let mut headers = vec!["SEQ", "STATE", "PACKET ID", "QOS", "TOPIC", "SIZE", "AGE"];
    if payload {
        headers.push("PAYLOAD");
    }
    let _ = writeln!(out, "\ninflight ({}):", d.inflight.len());
    out.push_str(&table(&headers, &queue_cells(&d.inflight, payload)));
    let _ = writeln!(out, "\nqueued, this page ({}):", d.queued.len());
    out.push_str(&table(&headers, &queue_cells(&d.queued, payload)));
    if let Some(next) = d.next_after {
        let _ = writeln!(out, "\nmore: --after {next}");
    }
    out
}

/// `retained list` as a table.
pub fn retained(rows: &[RetainedRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.topic.clone(),
                r.qos.to_string(),
                r.size.to_string(),
                r.stored_at.clone(),
            ]
        })
        .collect();
    table(&["TOPIC", "QOS", "SIZE", "STORED AT"], &cells)
}

/// `stats` as aligned lines; figures absent offline show `-`.
pub fn stats(s: &StatsView) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let lines = [
        ("source", s.source.clone()),
        ("connected clients", opt(s.connected_clients)),
        ("persistent sessions", s.persistent_sessions.to_string()),
        ("subscriptions", s.subscriptions.to_string()),
        ("retained messages", s.retained_messages.to_string()),
        ("messages in", opt(s.messages_in)),
        ("messages out", opt(s.messages_out)),
        ("messages dropped", opt(s.messages_dropped)),
        ("queued messages", s.queued_messages.to_string()),
        ("queued bytes", s.queued_bytes.to_string()),
        ("stored messages", s.stored_messages.to_string()),
        ("database bytes", s.database_bytes.to_string()),
        ("uptime seconds", opt(s.uptime_secs)),
    ];
    let mut out = String::new();
    for (name, value) in lines {
        let _ = writeln!(out, "{name:<20} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let text = table(
            &["A", "LONG HEADER"],
            &[vec!["wide cell".into(), "x".into()]],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A          LONG HEADER");
        assert_eq!(lines[1], "wide cell  x");
    }
}
