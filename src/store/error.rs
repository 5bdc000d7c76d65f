//! The storage layer's error type.
//! Owns how storage failures are named and reported; every variant names the file, table or key involved.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file exists but is not a harbormq database, or is damaged beyond what redb can repair.
    #[error("{} is not a usable harbormq database: {reason}", path.display())]
    NotADatabase {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer harbormq whose schema this build does not know.
    #[error(
        "the database {} has schema version {found}, but this harbormq supports schema versions up to {supported}; \
         use a newer harbormq or another data directory",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build supports.
        supported: u64,
    },
    /// The database is at an older schema version and must be opened by the broker (which migrates it) first.
    #[error(
        "the database {} has schema version {found}, older than version {supported}; \
         start the broker once on it to migrate it",
        path.display()
    )]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// A file-system operation outside redb failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A transaction could not be started.
    #[error("storage transaction failed: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A commit failed; nothing of that transaction is stored.
    #[error("storage commit failed: {0}")]
    Commit(#[from] redb::CommitError),
    /// A table could not be opened.
    #[error("storage table error: {0}")]
    Table(#[from] redb::TableError),
    /// redb reported an I/O or corruption error.
    #[error("storage error: {0}")]
    Storage(#[from] redb::StorageError),
    /// A record could not be encoded.
    #[error("cannot encode a record for table {table}: {reason}")]
    Encode {
        /// The table the record was meant for.
        table: &'static str,
        /// What bincode reported.
        reason: String,
    },
    /// A stored record could not be decoded: the database holds a corrupt value.
    #[error("corrupt record in table {table} at key {key}: {reason}")]
    Decode {
        /// The table holding the record.
        table: &'static str,
        /// The record's key, printed.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A queue entry referred to a message body that was never stored.
    #[error("message {0} is not stored: StoreMessage must precede Enqueue in the same write")]
    MissingMessage(u64),
    /// The batch this request belonged to failed; nothing of it was stored.
    #[error("storage write failed: {0}")]
    BatchFailed(Arc<StoreError>),
    /// The storage writer thread has stopped.
    #[error("the storage writer has stopped")]
    WriterGone,
}

impl StoreError {
    /// Whether the write failed for lack of room on the disk (the broker can go on once there is room).
    pub fn is_out_of_space(&self) -> bool {
        fn full(e: &std::io::Error) -> bool {
            // ENOSPC and EDQUOT on Linux.
            e.kind() == std::io::ErrorKind::StorageFull
                || matches!(e.raw_os_error(), Some(28 | 122))
        }
        fn storage(e: &redb::StorageError) -> bool {
            matches!(e, redb::StorageError::Io(io) if full(io))
        }
        match self {
            StoreError::BatchFailed(inner) => inner.is_out_of_space(),
            StoreError::Storage(e) => storage(e),
            StoreError::Commit(redb::CommitError::Storage(e)) => storage(e),
            StoreError::Transaction(redb::TransactionError::Storage(e)) => storage(e),
            StoreError::Table(redb::TableError::Storage(e)) => storage(e),
            _ => false,
        }
    }
}
