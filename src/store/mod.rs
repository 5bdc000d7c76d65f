//! Durable broker state in one redb file: sessions, subscriptions, message bodies, per-session queues, QoS 2 ids, retained messages.
//! Owns the `Database`, which only the writer thread touches (read-only readers aside); never imports actix or networking.

mod apply;
mod error;
mod limits;
mod migrate;
mod read;
mod reader;
mod records;
mod snapshot;
mod tables;
mod writer;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use reader::{SessionSummary, StoreReader};
pub use snapshot::{QueueTotals, Snapshot};

use crate::codec::{ClientId, PacketId, ProtocolLevel, QoS};
use crate::message::{Message, MessageId};
use crate::topic::{TopicFilter, TopicName};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The file name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "harbormq.redb";

/// How hard the store works to keep what it acknowledged across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every reply waits for an fsync'd commit (group commit shares one fsync among everything that arrived meanwhile).
    Sync,
    /// Replies do not wait; everything is committed durably at least every `interval_ms`, so a crash loses at most that window.
    Periodic {
        /// The longest time between durable commits.
        interval_ms: u64,
    },
    /// An in-memory database: nothing touches the disk and nothing survives a restart.
    Off,
}

/// What happens to a message for a session whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// The new message is not queued.
    DropNew,
    /// The session's oldest message that is waiting (not inflight) is dropped to make room.
    DropOldest,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding the database file; created if missing (not used with `Durability::Off`).
    pub data_dir: PathBuf,
    /// Durability mode.
    pub durability: Durability,
    /// Most messages a persistent session's queue holds before the overflow policy applies.
    pub max_queued_messages: u64,
    /// Most topic plus payload bytes a persistent session's queue holds before the overflow policy applies.
    pub max_queued_bytes: u64,
    /// What to drop when a queue is full (QoS 2 messages are never dropped).
    pub overflow: OverflowPolicy,
    /// Most operations the writer puts into one transaction.
    pub max_batch_ops: usize,
    /// Requests that may wait for the writer before `submit` blocks.
    pub channel_capacity: usize,
    /// Memory redb may use to cache pages; queues beyond it stay on disk.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./harbormq-data"),
            durability: Durability::Sync,
            max_queued_messages: 100_000,
            max_queued_bytes: 100 * 1024 * 1024,
            overflow: OverflowPolicy::DropNew,
            max_batch_ops: 4096,
            channel_capacity: 1024,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One change to the stored state; a `Write` applies a list of them atomically, in order.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Creates the session, or updates its level and last-seen time keeping its creation time.
    CreateSession {
        /// The session's client id.
        client_id: ClientId,
        /// Protocol level of the CONNECT.
        level: ProtocolLevel,
        /// Current time in ms since the epoch.
        now_ms: u64,
    },
    /// Keeps (or with `None` forgets) a session's will waiting for its MQTT 5.0 Will Delay Interval.
    SetWill {
        /// The session's client id.
        client_id: ClientId,
        /// When it is due (ms since the epoch) and the message.
        will: Option<(u64, Arc<Message>)>,
    },
    /// Sets a session's MQTT 5.0 Session Expiry Interval (seconds; `None` for the broker's default).
    SetSessionExpiry {
        /// The session's client id.
        client_id: ClientId,
        /// The interval in seconds.
        session_expiry: Option<u32>,
    },
    /// Records that the client was seen now (connect or disconnect).
    TouchSession {
        /// The session's client id.
        client_id: ClientId,
        /// Current time in ms since the epoch.
        now_ms: u64,
    },
    /// Removes the session with its subscriptions, queue entries (releasing bodies) and inbound QoS 2 ids.
    DeleteSession {
        /// The session's client id.
        client_id: ClientId,
    },
    /// Adds or replaces a subscription.
    Subscribe {
        /// The session's client id.
        client_id: ClientId,
        /// The topic filter.
        filter: TopicFilter,
        /// What is granted.
        grant: crate::message::Grant,
    },
    /// Removes a subscription.
    Unsubscribe {
        /// The session's client id.
        client_id: ClientId,
        /// The topic filter.
        filter: TopicFilter,
    },
    /// Stores a message body with no references; the `Enqueue`s of the same write add them.
    ///
    /// A body whose references are 0 at the end of a batch is not kept, so the body and its enqueues must travel in one write.
    StoreMessage {
        /// The broker-wide id of the body.
        id: MessageId,
        /// The message.
        message: Arc<Message>,
    },
    /// Appends a queue entry referencing a stored body; the queue limits apply here.
    Enqueue {
        /// The session's client id.
        client_id: ClientId,
        /// The entry's sequence number (from `RecoveredSession::next_seq` upwards; 0 is never used).
        seq: u64,
        /// The body.
        message: MessageId,
        /// Delivery QoS.
        qos: QoS,
        /// RETAIN to send (Retain As Published).
        retain: bool,
        /// The Subscription Identifiers the delivery carries (MQTT 5.0).
        subscription_ids: Vec<u32>,
    },
    /// PUBLISH sent for the entry with this packet id.
    MarkSent {
        /// The session's client id.
        client_id: ClientId,
        /// The entry.
        seq: u64,
        /// Packet id of the PUBLISH.
        packet_id: PacketId,
    },
    /// PUBREC received: the entry keeps only its PUBREL state and releases its body.
    MarkReleased {
        /// The session's client id.
        client_id: ClientId,
        /// The entry.
        seq: u64,
        /// Packet id of the exchange.
        packet_id: PacketId,
    },
    /// PUBACK or PUBCOMP received: the entry is gone and its body released if it still held it.
    Remove {
        /// The session's client id.
        client_id: ClientId,
        /// The entry.
        seq: u64,
    },
    /// An inbound QoS 2 PUBLISH was accepted: its packet id awaits PUBREL.
    AddIncomingQos2 {
        /// The session's client id.
        client_id: ClientId,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// PUBREL received for an inbound QoS 2 packet id.
    RemoveIncomingQos2 {
        /// The session's client id.
        client_id: ClientId,
        /// The publisher's packet id.
        packet_id: PacketId,
    },
    /// Sets the retained message of the message's topic.
    SetRetained {
        /// The message.
        message: Arc<Message>,
    },
    /// Removes the retained message of a topic.
    DeleteRetained {
        /// The topic.
        topic: TopicName,
    },
}

/// Where an outbound queue entry stands in its QoS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting to be sent.
    Queued,
    /// PUBLISH sent with this packet id, awaiting PUBACK or PUBREC.
    PublishSent(PacketId),
    /// PUBREL sent with this packet id, awaiting PUBCOMP.
    PubRelSent(PacketId),
}

/// One entry of a session's queue as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The entry's sequence number.
    pub seq: u64,
    /// Delivery QoS.
    pub qos: QoS,
    /// Handshake state.
    pub state: EntryState,
    /// The message; `None` once released (PUBREL state).
    pub message: Option<Arc<Message>>,
    /// RETAIN to send (Retain As Published).
    pub retain: bool,
    /// The Subscription Identifiers the delivery carries (MQTT 5.0).
    pub subscription_ids: Vec<u32>,
}

/// A persistent session found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// The session's client id.
    pub client_id: ClientId,
    /// Protocol level of its last CONNECT.
    pub level: ProtocolLevel,
    /// Its subscriptions with what is granted.
    pub subscriptions: Vec<(TopicFilter, crate::message::Grant)>,
    /// Its MQTT 5.0 Session Expiry Interval in seconds; `None` for earlier levels.
    pub session_expiry: Option<u32>,
    /// A will waiting for its delay: when it is due (ms since the epoch) and the message.
    pub will: Option<(u64, Arc<Message>)>,
    /// The sequence number for its next queue entry (1 for an empty queue).
    pub next_seq: u64,
    /// When the client was last seen, in ms since the epoch.
    pub last_seen_ms: u64,
}

/// What the store holds at open, for the router and the retained actor.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Every persistent session, in client id order.
    pub sessions: Vec<RecoveredSession>,
    /// Every retained message, in topic order.
    pub retained: Vec<Arc<Message>>,
    /// The next free message id (1 when no body is stored).
    pub next_message_id: u64,
}

/// Queue figures of one session as the writer keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionQueueStats {
    /// Entries still holding a body (waiting or PUBLISH sent).
    pub messages: u64,
    /// Topic plus payload bytes of those entries.
    pub bytes: u64,
    /// Messages dropped by the overflow policy since the store opened.
    pub dropped: u64,
}

/// Store-wide counters, readable at any time without asking the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Committed write transactions.
    pub commits: u64,
    /// Failed batches (apply or commit errors).
    pub failed_batches: u64,
    /// Write requests refused alone (naming a message body nobody stored) while the rest of their batch went on.
    pub refused_requests: u64,
    /// Write requests processed.
    pub write_requests: u64,
    /// Operations applied to the tables.
    pub ops_applied: u64,
    /// Operations that never reached the tables because a later operation of the same batch undid them.
    pub ops_coalesced: u64,
    /// Messages dropped by the overflow policy, all sessions together.
    pub messages_dropped: u64,
    /// Total time spent in commits, in microseconds.
    pub commit_micros: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    failed_batches: AtomicU64,
    refused_requests: AtomicU64,
    write_requests: AtomicU64,
    ops_applied: AtomicU64,
    ops_coalesced: AtomicU64,
    messages_dropped: AtomicU64,
    commit_micros: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            commits: get(&self.commits),
            failed_batches: get(&self.failed_batches),
            refused_requests: get(&self.refused_requests),
            write_requests: get(&self.write_requests),
            ops_applied: get(&self.ops_applied),
            ops_coalesced: get(&self.ops_coalesced),
            messages_dropped: get(&self.messages_dropped),
            commit_micros: get(&self.commit_micros),
        }
    }
}

/// Where the writer sends a request's outcome.
pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the receiver of a request's outcome gets.
pub type ReplyReceiver<T> = oneshot::Receiver<Result<T, StoreError>>;

/// A request to the writer thread.
#[derive(Debug)]
pub enum StoreRequest {
    /// Applies `ops` atomically; `done` is answered once they are committed (per the durability mode).
    Write {
        /// The operations, in order.
        ops: Vec<StoreOp>,
        /// Completion, if wanted.
        done: Option<Reply<()>>,
    },
    /// Reads up to `limit` queue entries with `seq > after_seq`, in order, inflight states included.
    ReadQueue {
        /// The session's client id.
        client_id: ClientId,
        /// Entries after this sequence number (0 reads from the start).
        after_seq: u64,
        /// Most entries to return.
        limit: usize,
        /// Where the entries go.
        reply: Reply<Vec<QueuedMessage>>,
    },
    /// Reads the inbound QoS 2 packet ids awaiting PUBREL.
    ReadIncomingQos2 {
        /// The session's client id.
        client_id: ClientId,
        /// Where the ids go.
        reply: Reply<Vec<PacketId>>,
    },
    /// Reads the writer's queue figures for one session.
    ReadSessionStats {
        /// The session's client id.
        client_id: ClientId,
        /// Where the figures go.
        reply: Reply<SessionQueueStats>,
    },
    /// Answered once everything submitted before it is durably committed.
    Flush {
        /// Where the outcome goes.
        reply: Reply<()>,
    },
    /// Runs a read for the admin API on the writer thread, against a snapshot taken after the batch's commit.
    Inspect(Inspection),
}

/// A read of a [`Snapshot`] run on the writer thread, so redb is never touched by other threads of the broker.
pub struct Inspection(InspectFn);

type InspectFn = Box<dyn FnOnce(Result<&Snapshot, StoreError>) + Send>;

impl Inspection {
    /// Runs the read with the snapshot, or tells it why there is none.
    pub(crate) fn run(self, snapshot: Result<&Snapshot, StoreError>) {
        (self.0)(snapshot)
    }
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspection")
    }
}

impl StoreRequest {
    /// Answers the request with `WriterGone`, when it could not be delivered.
    fn fail_writer_gone(self) {
        match self {
            StoreRequest::Write { done, .. } => {
                if let Some(done) = done {
                    let _ = done.send(Err(StoreError::WriterGone));
                }
            }
            StoreRequest::ReadQueue { reply, .. } => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
            StoreRequest::ReadIncomingQos2 { reply, .. } => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
            StoreRequest::ReadSessionStats { reply, .. } => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
            StoreRequest::Flush { reply } => {
                let _ = reply.send(Err(StoreError::WriterGone));
            }
            StoreRequest::Inspect(inspection) => inspection.run(Err(StoreError::WriterGone)),
        }
    }
}

/// What travels on the writer's channel.
enum Command {
    Request(StoreRequest),
    Shutdown,
    /// Holds the writer until the sender side is dropped or sends, so tests can pile up requests.
    #[cfg(test)]
    Pause(mpsc::Receiver<()>),
}

/// A cheap, cloneable handle to the writer thread; `Send + Sync`.
#[derive(Clone)]
pub struct StoreHandle {
    tx: SyncSender<Command>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Sends a request to the writer, blocking while its channel is full (backpressure).
    ///
    /// When the writer has stopped, the request's reply (if any) is answered with `WriterGone` and `WriterGone` is returned.
    pub fn submit(&self, req: StoreRequest) -> Result<(), StoreError> {
        match self.tx.send(Command::Request(req)) {
            Ok(()) => Ok(()),
            Err(mpsc::SendError(command)) => {
                if let Command::Request(req) = command {
                    req.fail_writer_gone();
                }
                Err(StoreError::WriterGone)
            }
        }
    }

    /// Applies `ops` atomically; the receiver resolves once they are committed.
    pub fn write(&self, ops: Vec<StoreOp>) -> ReplyReceiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.submit(StoreRequest::Write {
            ops,
            done: Some(done),
        });
        rx
    }

    /// Applies `ops` without waiting for the commit; logs if the writer has stopped.
    pub fn write_and_forget(&self, ops: Vec<StoreOp>) {
        let count = ops.len();
        if self
            .submit(StoreRequest::Write { ops, done: None })
            .is_err()
        {
            log::error!("store: the writer has stopped; {count} operations are lost");
        }
    }

    /// Reads up to `limit` queue entries of `client_id` with `seq > after_seq`, in order.
    pub fn read_queue(
        &self,
        client_id: ClientId,
        after_seq: u64,
        limit: usize,
    ) -> ReplyReceiver<Vec<QueuedMessage>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.submit(StoreRequest::ReadQueue {
            client_id,
            after_seq,
            limit,
            reply,
        });
        rx
    }

    /// Reads the inbound QoS 2 packet ids of `client_id` awaiting PUBREL.
    pub fn read_incoming_qos2(&self, client_id: ClientId) -> ReplyReceiver<Vec<PacketId>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.submit(StoreRequest::ReadIncomingQos2 { client_id, reply });
        rx
    }

    /// Reads the writer's queue figures of `client_id`.
    pub fn read_session_stats(&self, client_id: ClientId) -> ReplyReceiver<SessionQueueStats> {
        let (reply, rx) = oneshot::channel();
        let _ = self.submit(StoreRequest::ReadSessionStats { client_id, reply });
        rx
    }

    /// Resolves once everything submitted so far is durably committed.
    pub fn flush(&self) -> ReplyReceiver<()> {
        let (reply, rx) = oneshot::channel();
        let _ = self.submit(StoreRequest::Flush { reply });
        rx
    }

    /// Runs `read` on the writer thread against the state committed so far (an open periodic window is
    /// committed first), and resolves with its result.
    pub fn inspect<T, F>(&self, read: F) -> ReplyReceiver<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let inspection = Inspection(Box::new(move |snapshot| {
            let _ = reply.send(snapshot.and_then(read));
        }));
        let _ = self.submit(StoreRequest::Inspect(inspection));
        rx
    }

    /// The store-wide counters.
    pub fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }
}

/// Owns the writer thread: `shutdown` commits what is pending and joins it (dropping does the same).
#[derive(Debug)]
pub struct StoreWorker {
    tx: SyncSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWorker {
    /// Asks the writer to commit everything received so far durably, then waits for the thread to end.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.tx.send(Command::Shutdown);
        thread.join().map_err(|_| StoreError::WriterGone)
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::error!("store: writer thread ended abnormally: {e}");
        }
    }
}

/// Opens the store: the entry point of this module.
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Opens (creating or migrating) the database, recovers its state and starts the writer thread.
    pub fn open(config: &StoreConfig) -> Result<(StoreHandle, Recovered, StoreWorker), StoreError> {
        let opened = writer::open_database(config)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::sync_channel(config.channel_capacity.max(1));
        let thread = writer::spawn(opened.db, opened.queues, config, rx, Arc::clone(&counters))?;
        let handle = StoreHandle {
            tx: tx.clone(),
            counters,
        };
        let worker = StoreWorker {
            tx,
            thread: Some(thread),
        };
        Ok((handle, opened.recovered, worker))
    }

    /// Opens the database of `data_dir` read-only, beside a running broker or without one.
    pub fn open_read_only(data_dir: &Path) -> Result<StoreReader, StoreError> {
        StoreReader::open(&data_dir.join(DB_FILE_NAME))
    }

    /// The database file inside `data_dir`.
    pub fn db_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE_NAME)
    }
}
