//! The admin commands' answers read straight from the database file, for when the broker's API does not answer,
//! and offline changes through a writer of its own, which redb refuses while a broker holds the file.

use super::model::*;
use crate::codec::ClientId;
use crate::message::now_ms;
use crate::store::{Store, StoreConfig, StoreError, StoreOp, StoreReader};
use crate::topic::{TopicFilter, TopicName};
use std::path::{Path, PathBuf};

/// Why the database file cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// There is no database file at the path.
    #[error("no database at {} (is --data-dir right?)", .0.display())]
    NoDatabase(PathBuf),
    /// The file was not closed cleanly and a read-only handle cannot repair it.
    #[error(
        "the database {} needs crash recovery, which a read-only reader cannot do; \
         start the broker on it once (or run a delete command) to repair it",
        .0.display()
    )]
    NeedsRecovery(PathBuf),
    /// A running broker holds the file, so changes must go through its admin API.
    #[error(
        "the broker is running (the database {} is locked by it) but its admin API is not reachable; \
         changes while the broker runs must go through the API (check --admin and admin_bind)",
        .0.display()
    )]
    BrokerRunning(PathBuf),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn existing_db(data_dir: &Path) -> Result<PathBuf, OfflineError> {
    let path = Store::db_path(data_dir);
    if path.is_file() {
        Ok(path)
    } else {
        Err(OfflineError::NoDatabase(path))
    }
}

/// Opens the database of `data_dir` read-only.
pub fn open(data_dir: &Path) -> Result<StoreReader, OfflineError> {
    let path = existing_db(data_dir)?;
    Store::open_read_only(data_dir).map_err(|e| match e {
        StoreError::Open {
            source: redb::DatabaseError::RepairAborted,
            ..
        } => OfflineError::NeedsRecovery(path),
        other => OfflineError::Store(other),
    })
}

/// Every stored session, all offline.
pub fn sessions(reader: &StoreReader) -> Result<Vec<SessionRow>, OfflineError> {
    Ok(reader
        .sessions()?
        .iter()
        .map(|s| session_row(s, false))
        .collect())
}

/// One stored session, `None` if there is none.
pub fn session(
    reader: &StoreReader,
    client_id: &str,
    page: Page,
) -> Result<Option<SessionDetail>, OfflineError> {
    Ok(session_detail(&reader.snapshot()?, client_id, page)?)
}

/// The stored retained messages matching `filter` (all when `None`).
pub fn retained(
    reader: &StoreReader,
    filter: Option<&TopicFilter>,
) -> Result<Vec<RetainedRow>, OfflineError> {
    Ok(reader
        .retained()?
        .iter()
        .filter(|m| filter.is_none_or(|f| f.matches(&m.topic)))
        .map(|m| retained_row(m))
        .collect())
}

/// The figures the file holds; the live ones are absent.
pub fn stats(reader: &StoreReader) -> Result<StatsView, OfflineError> {
    let snapshot = reader.snapshot()?;
    let queues = snapshot.queue_totals()?;
    Ok(StatsView {
        source: "offline".to_owned(),
        persistent_sessions: snapshot.session_count()?,
        subscriptions: snapshot.subscription_count()?,
        retained_messages: snapshot.retained()?.len() as u64,
        queued_messages: queues.messages,
        queued_bytes: queues.bytes,
        stored_messages: snapshot.message_count()?,
        database_bytes: reader.file_size()?,
        ..StatsView::default()
    })
}

/// What an offline change sees of the file when it opens it as the writer.
struct Opened {
    store: crate::store::StoreHandle,
    recovered: crate::store::Recovered,
    worker: crate::store::StoreWorker,
}

fn open_writer(data_dir: &Path) -> Result<Opened, OfflineError> {
    let path = existing_db(data_dir)?;
    let config = StoreConfig {
        data_dir: data_dir.to_owned(),
        ..StoreConfig::default()
    };
    match Store::open(&config) {
        Ok((store, recovered, worker)) => Ok(Opened {
            store,
            recovered,
            worker,
        }),
        Err(StoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        }) => Err(OfflineError::BrokerRunning(path)),
        Err(e) => Err(e.into()),
    }
}

fn commit(opened: Opened, ops: Vec<StoreOp>) -> Result<(), OfflineError> {
    if !ops.is_empty() {
        opened
            .store
            .write(ops)
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)??;
    }
    opened.worker.shutdown()?;
    Ok(())
}

/// Deletes a stored session with its queue; false when there is no such session.
pub fn delete_session(data_dir: &Path, client_id: &str) -> Result<bool, OfflineError> {
    let opened = open_writer(data_dir)?;
    let known = opened
        .recovered
        .sessions
        .iter()
        .any(|s| s.client_id.as_str() == client_id);
    let ops = if known {
        vec![StoreOp::DeleteSession {
            client_id: ClientId::new(client_id.to_owned()),
        }]
    } else {
        Vec::new()
    };
    commit(opened, ops)?;
    Ok(known)
}

/// Deletes the sessions last seen more than `older_than_ms` ago; returns their client ids.
pub fn delete_expired(data_dir: &Path, older_than_ms: u64) -> Result<Vec<String>, OfflineError> {
    let opened = open_writer(data_dir)?;
    let cutoff = now_ms().saturating_sub(older_than_ms);
    let expired: Vec<ClientId> = opened
        .recovered
        .sessions
        .iter()
        .filter(|s| s.last_seen_ms <= cutoff)
        .map(|s| s.client_id.clone())
        .collect();
    let ops = expired
        .iter()
        .map(|client_id| StoreOp::DeleteSession {
            client_id: client_id.clone(),
        })
        .collect();
    commit(opened, ops)?;
    Ok(expired.iter().map(|c| c.to_string()).collect())
}

/// Deletes the retained message of `topic`; false when there is none.
pub fn delete_retained(data_dir: &Path, topic: &TopicName) -> Result<bool, OfflineError> {
    let opened = open_writer(data_dir)?;
    let known = opened.recovered.retained.iter().any(|m| &m.topic == topic);
    let ops = if known {
        vec![StoreOp::DeleteRetained {
            topic: topic.clone(),
        }]
    } else {
        Vec::new()
    };
    commit(opened, ops)?;
    Ok(known)
}
