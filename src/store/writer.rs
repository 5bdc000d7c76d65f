//! The writer thread: opens the database, then takes requests in batches, one write transaction per batch (group commit);
//! a request refused by its check is answered alone and the rest of its batch goes on.
//! Owns the `Database` and the durability mode; the meaning of each operation lives in `apply`, reads in `read`.

use super::apply::apply_batch;
use super::limits::{Limits, Queues};
use super::read::{Bytes, QueueKey};
use super::snapshot::Snapshot;
use super::{migrate, read, tables};
use super::{
    Command, Counters, Durability, Inspection, Recovered, Reply, StoreConfig, StoreError, StoreOp,
    StoreRequest, DB_FILE_NAME,
};
use redb::backends::InMemoryBackend;
use redb::{
    Builder, CommitError, ConcurrencyMode, Database, DatabaseError, ReadOnlyTable,
    ReadableDatabase, ReadableTable, StorageError, Table, TableError, TransactionError,
    WriteTransaction,
};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// The database after migration, with what it holds.
pub(crate) struct Opened {
    pub db: Database,
    pub recovered: Recovered,
    pub queues: Queues,
}

/// Refuses a non-empty file that does not start like a redb file, before redb sees it.
pub(crate) fn check_magic(path: &Path) -> Result<(), StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
    if head.is_empty() || head == REDB_MAGIC {
        return Ok(());
    }
    Err(StoreError::NotADatabase {
        path: path.to_owned(),
        reason: "the file is not a redb database (wrong magic number)".to_string(),
    })
}

/// Names the file in a redb open error, telling damage apart from other failures.
pub(crate) fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::Storage(StorageError::Corrupted(reason)) => StoreError::NotADatabase {
            path: path.to_owned(),
            reason: format!("the database is damaged: {reason}"),
        },
        DatabaseError::UpgradeRequired(version) => StoreError::NotADatabase {
            path: path.to_owned(),
            reason: format!("redb file format {version} is not supported by this build"),
        },
        source => StoreError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// Runs a redb open, turning a panic on a damaged file into an error naming it.
pub(crate) fn guarded_open<T>(
    path: &Path,
    open: impl FnOnce() -> Result<T, DatabaseError>,
) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(StoreError::NotADatabase {
            path: path.to_owned(),
            reason: "the database is damaged (redb could not read it)".to_string(),
        }),
    }
}

/// Runs the reads of the open, turning a panic on a damaged page into an error naming the file.
fn guarded_read<T>(
    path: &Path,
    read: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|_| {
        Err(StoreError::NotADatabase {
            path: path.to_owned(),
            reason: "the database is damaged (redb could not read its tables)".to_string(),
        })
    })
}

fn open_file(data_dir: &Path, cache_bytes: usize) -> Result<(Database, PathBuf), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir.join(DB_FILE_NAME);
    check_magic(&path)?;
    let mut builder = Builder::new();
    // Lets read-only handles in other processes (the admin command) open the file while the broker writes.
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    // redb's default cache is 1 GiB; offline queues are meant to wait on disk, not in the cache.
    builder.set_cache_size(cache_bytes);
    let db = guarded_open(&path, || builder.create(&path))?;
    Ok((db, path))
}

/// Opens the database of `config` (creating or migrating it) and recovers its state.
pub(crate) fn open_database(config: &StoreConfig) -> Result<Opened, StoreError> {
    let (db, path) = match config.durability {
        Durability::Off => {
            let path = PathBuf::from("<memory>");
            let db = guarded_open(&path, || {
                Builder::new().create_with_backend(InMemoryBackend::new())
            })?;
            (db, path)
        }
        _ => open_file(&config.data_dir, config.cache_bytes)?,
    };
    let (recovered, tallies) = guarded_read(&path, || {
        migrate::migrate(&db, &path)?;
        read::recover(&db)
    })?;
    let limits = Limits {
        max_messages: config.max_queued_messages,
        max_bytes: config.max_queued_bytes,
        overflow: config.overflow,
    };
    log_choice(config.durability, &path, &recovered);
    Ok(Opened {
        db,
        recovered,
        queues: Queues::new(limits, tallies),
    })
}

fn log_choice(durability: Durability, path: &Path, recovered: &Recovered) {
    let what = match durability {
        Durability::Sync => "sync: every acknowledgement waits for an fsync'd commit".to_string(),
        Durability::Periodic { interval_ms } => format!(
            "periodic: acknowledgements do not wait; commits at least every {interval_ms} ms, a crash loses at most that window"
        ),
        Durability::Off => "off: in memory only, nothing survives a restart".to_string(),
    };
    log::info!(
        "store: durability {what} ({}); {} persistent sessions, {} retained messages",
        path.display(),
        recovered.sessions.len(),
        recovered.retained.len()
    );
}

/// Starts the writer thread named `harbormq-store`.
pub(crate) fn spawn(
    db: Database,
    queues: Queues,
    config: &StoreConfig,
    rx: Receiver<Command>,
    counters: Arc<Counters>,
) -> Result<JoinHandle<()>, StoreError> {
    let writer = Writer {
        db: Some(db),
        data_dir: config.data_dir.clone(),
        cache_bytes: config.cache_bytes,
        rx,
        mode: config.durability,
        max_batch_ops: config.max_batch_ops.max(1),
        queues,
        counters,
        txn: None,
        window_start: None,
    };
    std::thread::Builder::new()
        .name("harbormq-store".to_string())
        .spawn(move || writer.run())
        .map_err(|source| StoreError::Io {
            path: PathBuf::from("harbormq-store thread"),
            source,
        })
}

/// The requests taken together into one transaction.
#[derive(Default)]
struct Batch {
    writes: Vec<(Vec<StoreOp>, Option<Reply<()>>)>,
    reads: Vec<StoreRequest>,
    flushes: Vec<Reply<()>>,
    inspections: Vec<Inspection>,
    ops: usize,
    shutdown: bool,
}

impl Batch {
    fn push(&mut self, command: Command) {
        match command {
            Command::Request(StoreRequest::Write { ops, done }) => {
                self.ops += ops.len().max(1);
                self.writes.push((ops, done));
            }
            Command::Request(StoreRequest::Flush { reply }) => self.flushes.push(reply),
            Command::Request(StoreRequest::Inspect(inspection)) => {
                self.ops += 1;
                self.inspections.push(inspection);
            }
            Command::Request(read) => {
                self.ops += 1;
                self.reads.push(read);
            }
            Command::Shutdown => self.shutdown = true,
            #[cfg(test)]
            Command::Pause(release) => {
                let _ = release.recv();
            }
        }
    }
}

struct Writer {
    /// The database; `None` after a storage failure closed it, until the next batch opens it again.
    db: Option<Database>,
    data_dir: PathBuf,
    cache_bytes: usize,
    rx: Receiver<Command>,
    mode: Durability,
    max_batch_ops: usize,
    queues: Queues,
    counters: Arc<Counters>,
    /// The open transaction: within one batch, or across the batches of a periodic window.
    txn: Option<WriteTransaction>,
    window_start: Option<Instant>,
}

type Shared = Result<(), Arc<StoreError>>;

fn failed<T>(result: &Shared, value: T) -> Result<T, StoreError> {
    match result {
        Ok(()) => Ok(value),
        Err(e) => Err(StoreError::BatchFailed(Arc::clone(e))),
    }
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.next_command() {
            let mut batch = Batch::default();
            batch.push(first);
            while !batch.shutdown && batch.ops < self.max_batch_ops {
                match self.rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let stop = batch.shutdown;
            self.process(batch);
            if stop {
                break;
            }
        }
        if let Err(e) = self.commit() {
            log::error!("store: final commit failed: {e}");
        }
        // Requests that raced with the shutdown get a clear answer rather than a dropped reply.
        while let Ok(command) = self.rx.try_recv() {
            if let Command::Request(request) = command {
                request.fail_writer_gone();
            }
        }
        log::debug!("store: writer stopped");
    }

    fn window_deadline(&self) -> Option<Instant> {
        match self.mode {
            Durability::Periodic { interval_ms } => self
                .window_start
                .map(|start| start + Duration::from_millis(interval_ms)),
            _ => None,
        }
    }

    /// Waits for the next command, committing a periodic window when its time is up; `None` once every sender is gone.
    fn next_command(&mut self) -> Option<Command> {
        loop {
            let received = match self.window_deadline() {
                Some(deadline) => self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now())),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(command) => return Some(command),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.commit() {
                        log::error!("store: periodic commit failed: {e}");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn process(&mut self, batch: Batch) {
        self.reopen_if_closed();
        let applied = if batch.writes.is_empty() {
            Ok(Vec::new())
        } else {
            self.apply(&batch.writes)
        };
        let commit_now = self.txn.is_some()
            && match self.mode {
                Durability::Periodic { .. } => {
                    batch.shutdown
                        || !batch.flushes.is_empty()
                        || !batch.inspections.is_empty()
                        || self.window_deadline().is_some_and(|d| Instant::now() >= d)
                }
                _ => true,
            };
        let (result, mut refused) = match applied {
            Ok(refused) if commit_now => (self.commit(), refused),
            Ok(refused) => (Ok(()), refused),
            Err(e) => (Err(e), Vec::new()),
        };
        refused.resize_with(batch.writes.len(), || None);
        for ((_, done), refused) in batch.writes.into_iter().zip(refused) {
            if let Some(done) = done {
                let answer = match refused {
                    Some(error) => Err(error),
                    None => failed(&result, ()),
                };
                let _ = done.send(answer);
            }
        }
        for reply in batch.flushes {
            let _ = reply.send(failed(&result, ()));
        }
        self.answer_reads(batch.reads);
        self.run_inspections(batch.inspections);
    }

    /// Runs admin reads on a snapshot of what is committed, with the writer's queue figures.
    fn run_inspections(&self, inspections: Vec<Inspection>) {
        if inspections.is_empty() {
            return;
        }
        match self.database().and_then(|db| Ok(db.begin_read()?)) {
            Ok(txn) => {
                let snapshot = Snapshot::new(txn, Some(self.queues.totals()));
                for inspection in inspections {
                    inspection.run(Ok(&snapshot));
                }
            }
            Err(e) => {
                let shared = Arc::new(e);
                for inspection in inspections {
                    inspection.run(Err(StoreError::BatchFailed(Arc::clone(&shared))));
                }
            }
        }
    }

    /// Applies the batch's writes to the open window; what each request that was refused alone failed with
    /// (the batch's other requests go on), or the error that failed the whole batch.
    fn apply(
        &mut self,
        writes: &[(Vec<StoreOp>, Option<Reply<()>>)],
    ) -> Result<Vec<Option<StoreError>>, Arc<StoreError>> {
        let requests: Vec<&[StoreOp]> = writes.iter().map(|(ops, _)| ops.as_slice()).collect();
        Counters::add(&self.counters.write_requests, writes.len() as u64);
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => match self.database().and_then(|db| Ok(db.begin_write()?)) {
                Ok(txn) => {
                    self.window_start = Some(Instant::now());
                    txn
                }
                Err(e) => return Err(self.fail(e, "begin")),
            },
        };
        match apply_batch(&txn, &requests, &mut self.queues) {
            Ok((outcome, refused)) => {
                self.txn = Some(txn);
                Counters::add(&self.counters.ops_applied, outcome.applied);
                Counters::add(&self.counters.ops_coalesced, outcome.coalesced);
                Counters::add(&self.counters.messages_dropped, outcome.dropped);
                for error in refused.iter().flatten() {
                    Counters::add(&self.counters.refused_requests, 1);
                    log::error!(
                        "store: a write request is refused, the rest of its batch goes on: {error}"
                    );
                }
                Ok(refused)
            }
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    log::error!("store: abort failed: {abort}");
                }
                Err(self.fail(e, "apply"))
            }
        }
    }

    /// Abandons the open window after an error: figures roll back, the error is logged and shared by the batch.
    fn fail(&mut self, error: StoreError, stage: &str) -> Arc<StoreError> {
        self.queues.rollback();
        // After an I/O error redb refuses every later operation until the file is closed and opened again.
        if is_storage_failure(&error) && self.mode != Durability::Off {
            self.db = None;
        }
        self.window_start = None;
        Counters::add(&self.counters.failed_batches, 1);
        if let Durability::Periodic { .. } = self.mode {
            log::error!(
                "store: {stage} failed, the writes since the last commit are lost: {error}"
            );
        } else {
            log::error!(
                "store: {stage} failed, the batch is not stored and not acknowledged: {error}"
            );
        }
        Arc::new(error)
    }

    /// The open database; while a failure keeps it closed, the error redb itself gives in that state.
    fn database(&self) -> Result<&Database, StoreError> {
        self.db
            .as_ref()
            .ok_or(StoreError::Storage(StorageError::PreviousIo))
    }

    /// Opens the file again after a storage failure closed it (a full disk may have room again by now).
    fn reopen_if_closed(&mut self) {
        if self.db.is_some() {
            return;
        }
        match open_file(&self.data_dir, self.cache_bytes) {
            Ok((db, path)) => {
                log::warn!("store: {} reopened after a storage failure", path.display());
                self.db = Some(db);
            }
            Err(e) => log::error!("store: reopening the database failed: {e}"),
        }
    }

    fn commit(&mut self) -> Shared {
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        self.window_start = None;
        let started = Instant::now();
        match txn.commit() {
            Ok(()) => {
                self.queues.commit();
                Counters::add(&self.counters.commits, 1);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.counters
                    .commit_micros
                    .fetch_add(micros, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.fail(e.into(), "commit")),
        }
    }

    /// Answers reads from the state just committed, or from the open periodic window.
    fn answer_reads(&self, reads: Vec<StoreRequest>) {
        if reads.is_empty() {
            return;
        }
        match &self.txn {
            Some(txn) => match open_write_tables(txn) {
                Ok((queue, messages, qos2)) => {
                    answer_all(&queue, &messages, &qos2, &self.queues, reads)
                }
                Err(e) => fail_reads(reads, e),
            },
            None => match self.database().and_then(open_read_tables) {
                Ok((queue, messages, qos2)) => {
                    answer_all(&queue, &messages, &qos2, &self.queues, reads)
                }
                Err(e) => fail_reads(reads, e),
            },
        }
    }
}

type WriteTables<'t> = (
    Table<'t, QueueKey, Bytes>,
    Table<'t, u64, Bytes>,
    Table<'t, (&'static str, u16), ()>,
);

type ReadTables = (
    ReadOnlyTable<QueueKey, Bytes>,
    ReadOnlyTable<u64, Bytes>,
    ReadOnlyTable<(&'static str, u16), ()>,
);

fn open_write_tables(txn: &WriteTransaction) -> Result<WriteTables<'_>, StoreError> {
    Ok((
        txn.open_table(tables::QUEUE)?,
        txn.open_table(tables::MESSAGES)?,
        txn.open_table(tables::INCOMING_QOS2)?,
    ))
}

fn open_read_tables(db: &Database) -> Result<ReadTables, StoreError> {
    let txn = db.begin_read()?;
    Ok((
        txn.open_table(tables::QUEUE)?,
        txn.open_table(tables::MESSAGES)?,
        txn.open_table(tables::INCOMING_QOS2)?,
    ))
}

/// Whether `error` came from the storage below redb, after which redb's handle stays failed.
fn is_storage_failure(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Storage(_)
            | StoreError::Commit(CommitError::Storage(_))
            | StoreError::Transaction(TransactionError::Storage(_))
            | StoreError::Table(TableError::Storage(_))
    )
}

fn answer_all<Q, M, I>(queue: &Q, messages: &M, qos2: &I, queues: &Queues, reads: Vec<StoreRequest>)
where
    Q: ReadableTable<QueueKey, Bytes>,
    M: ReadableTable<u64, Bytes>,
    I: ReadableTable<(&'static str, u16), ()>,
{
    for request in reads {
        match request {
            StoreRequest::ReadQueue {
                client_id,
                after_seq,
                limit,
                reply,
            } => {
                let _ = reply.send(read::queue_page(
                    queue,
                    messages,
                    client_id.as_str(),
                    after_seq,
                    limit,
                ));
            }
            StoreRequest::ReadIncomingQos2 { client_id, reply } => {
                let _ = reply.send(read::incoming_qos2(qos2, client_id.as_str()));
            }
            StoreRequest::ReadSessionStats { client_id, reply } => {
                let _ = reply.send(Ok(queues.stats(&client_id)));
            }
            other => other.fail_writer_gone(),
        }
    }
}

fn fail_reads(reads: Vec<StoreRequest>, error: StoreError) {
    log::error!("store: read failed: {error}");
    let shared = Arc::new(error);
    for request in reads {
        match request {
            StoreRequest::ReadQueue { reply, .. } => {
                let _ = reply.send(Err(StoreError::BatchFailed(Arc::clone(&shared))));
            }
            StoreRequest::ReadIncomingQos2 { reply, .. } => {
                let _ = reply.send(Err(StoreError::BatchFailed(Arc::clone(&shared))));
            }
            StoreRequest::ReadSessionStats { reply, .. } => {
                let _ = reply.send(Err(StoreError::BatchFailed(Arc::clone(&shared))));
            }
            other => other.fail_writer_gone(),
        }
    }
}
