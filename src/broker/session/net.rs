//! The socket side of a network session, as one future inside the session actor: it reads packets while the
//! connection core wants input, writes what may leave without ever making the actor wait, and runs the one
//! timer of the connection (the core's deadline, a stalled write, the last flush on close). No MQTT rule here.

use super::{Session, Sink};
use crate::codec::{MqttCodec, Packet};
use crate::protocol::limits::PublishPace;
use crate::protocol::Input;
use crate::transport::reader::PacketReader;
use actix::prelude::*;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

/// The byte stream of a client connection, read and written by one session.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// How long the socket may take nothing while bytes wait before the client counts as gone.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long a closing connection may take to write its last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(10);
/// Reads handled in one go before other work of the thread gets its turn.
const READS_PER_TURN: usize = 8;

pin_project! {
    /// Reading, writing and the timer of one connection.
    #[project = NetIoProj]
    pub struct NetIo {
        io: Box<dyn ClientIo>,
        reader: PacketReader,
        #[pin]
        sleep: Sleep,
        // The deadline `sleep` is set to, if it is armed.
        armed: Option<Instant>,
        // Bytes the socket may take wait, and it has taken none since.
        stalled_since: Option<Instant>,
        // When the session started closing.
        closing_since: Option<Instant>,
        // The client's publish rate limits, when there are any (boxed: most connections have none).
        pace: Option<Box<Paced>>,
    }
}

/// A paced client's rate, and until when its socket is left unread (it published faster than its rate).
struct Paced {
    pace: PublishPace,
    until: Option<Instant>,
}

impl NetIo {
    /// The byte stream of a new connection, decoding with `codec`, its PUBLISHes read at `pace`.
    pub fn new(io: Box<dyn ClientIo>, codec: MqttCodec, pace: Option<PublishPace>) -> Self {
        NetIo {
            io,
            reader: PacketReader::new(codec),
            sleep: tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)),
            armed: None,
            stalled_since: None,
            closing_since: None,
            pace: pace.map(|pace| Box::new(Paced { pace, until: None })),
        }
    }
}

/// What writing achieved.
enum Wrote {
    Progress,
    Nothing,
    Failed,
}

/// What one step of the I/O loop leads to.
enum Step {
    /// Something happened: go round again.
    Again,
    /// Nothing more to do in this step.
    Idle,
    /// The connection is over.
    Finished,
}

impl ActorFuture<Session> for NetIo {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Session,
        ctx: &mut Context<Session>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let mut this = self.project();
        let mut reads = 0;
        loop {
            let step = match write_step(&mut this, act, ctx, task) {
                Step::Idle if act.core.is_closed() => close_step(&mut this, act, task),
                Step::Idle => read_step(&mut this, act, ctx, task, &mut reads),
                step => step,
            };
            match step {
                Step::Again => continue,
                Step::Finished => {
                    ctx.stop();
                    return Poll::Ready(());
                }
                Step::Idle => {}
            }
            if fire_timer(&mut this, act, ctx, task) {
                continue;
            }
            if !act
                .io_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(task.waker()))
            {
                act.io_waker = Some(task.waker().clone());
            }
            return Poll::Pending;
        }
    }
}

/// Writes what may leave, and keeps track of how long the socket has taken nothing.
fn write_step(
    this: &mut NetIoProj<'_>,
    act: &mut Session,
    ctx: &mut Context<Session>,
    task: &mut TaskContext<'_>,
) -> Step {
    match write(this.io, act, task) {
        Wrote::Progress => {
            *this.stalled_since = None;
            if !act.core.is_closed() && act.core.wants_written() {
                act.feed(Input::Written, ctx);
            }
        }
        Wrote::Failed if act.core.is_closed() => return Step::Finished,
        Wrote::Failed => {
            act.feed(Input::InputClosed, ctx);
            return Step::Again;
        }
        Wrote::Nothing => {}
    }
    // Only bytes the socket could take count: those waiting for a commit are not the client's doing.
    if act.ready_to_write() {
        this.stalled_since.get_or_insert_with(Instant::now);
    } else {
        *this.stalled_since = None;
    }
    Step::Idle
}

/// A closing session writes what may leave (not what waits for a commit), for a bounded time, then ends.
fn close_step(this: &mut NetIoProj<'_>, act: &mut Session, task: &mut TaskContext<'_>) -> Step {
    let since = *this.closing_since.get_or_insert_with(Instant::now);
    if let Sink::Wire(out) = &mut act.sink {
        out.drop_gated();
    }
    if act.unwritten_bytes() == 0 || since.elapsed() >= CLOSE_LINGER {
        let _ = Pin::new(&mut **this.io).poll_shutdown(task);
        return Step::Finished;
    }
    Step::Idle
}

/// Reads a batch of packets for the core, while it wants them and this turn has not read too many.
fn read_step(
    this: &mut NetIoProj<'_>,
    act: &mut Session,
    ctx: &mut Context<Session>,
    task: &mut TaskContext<'_>,
    reads: &mut usize,
) -> Step {
    if *reads >= READS_PER_TURN {
        // More may be waiting: come back after the thread's other work.
        task.waker().wake_by_ref();
        return Step::Idle;
    }
    if !act.core.wants_input() || this.pace.as_ref().is_some_and(|p| p.until.is_some()) {
        // A paced client's bytes wait in its socket, and TCP holds it back; the timer resumes reading.
        return Step::Idle;
    }
    let polled = match this.pace.as_deref_mut() {
        None => this.reader.poll_batch(&mut **this.io, task),
        Some(paced) => {
            let now = Instant::now();
            let pace = &mut paced.pace;
            let polled = this
                .reader
                .poll_batch_while(&mut **this.io, task, &mut |p| charge(pace, p, now));
            paced.until = paced_until(&paced.pace, act);
            polled
        }
    };
    match polled {
        Poll::Ready(Some(batch)) => {
            *reads += 1;
            act.feed(Input::Read(batch), ctx);
            Step::Again
        }
        Poll::Ready(None) => {
            act.feed(Input::InputClosed, ctx);
            Step::Again
        }
        Poll::Pending => Step::Idle,
    }
}

/// Charges one PUBLISH (one message, its topic plus payload bytes) to the client's pace; whether the batch
/// may go on, which it may not once the client is over its rate.
fn charge(pace: &mut PublishPace, packet: &Packet, now: Instant) -> bool {
    let Packet::Publish(p) = packet else {
        return true;
    };
    let bytes = (p.topic.as_str().len() + p.payload.len()) as u64;
    pace.charge(1, bytes, now);
    pace.hold(now).is_none()
}

/// Until when reading must wait, if the client is over its rate (counted and logged, once per pause).
fn paced_until(pace: &PublishPace, act: &Session) -> Option<Instant> {
    let (until, limit) = pace.hold(Instant::now())?;
    let who = format_args!("client {} from {}", act.core.label(), act.core.peer());
    act.peers.counters.limits.record(limit, 1, &who);
    Some(until)
}

/// Writes what may leave until the socket is full.
fn write(writer: &mut Box<dyn ClientIo>, act: &mut Session, task: &mut TaskContext<'_>) -> Wrote {
    let Sink::Wire(out) = &mut act.sink else {
        return Wrote::Nothing;
    };
    let mut wrote = false;
    loop {
        let ready = out.ready();
        if ready.is_empty() {
            break;
        }
        match Pin::new(&mut **writer).poll_write(task, ready) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Wrote::Failed,
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                wrote = true;
            }
            Poll::Pending => break,
        }
    }
    if !wrote {
        return Wrote::Nothing;
    }
    // TCP needs no flush; the WebSocket bridge's buffer does.
    if let Poll::Ready(Err(_)) = Pin::new(&mut **writer).poll_flush(task) {
        return Wrote::Failed;
    }
    Wrote::Progress
}

/// Arms the timer for the earliest deadline (the core's, a stalled write's, the close's) and handles it when
/// it has come; true when it fired.
fn fire_timer(
    this: &mut NetIoProj<'_>,
    act: &mut Session,
    ctx: &mut Context<Session>,
    task: &mut TaskContext<'_>,
) -> bool {
    let stall = this.stalled_since.map(|s| s + WRITE_STALL_LIMIT);
    let linger = this.closing_since.map(|s| s + CLOSE_LINGER);
    let paced = this.pace.as_ref().and_then(|p| p.until);
    let want = [act.timer_at, stall, linger, paced]
        .into_iter()
        .flatten()
        .min();
    if want != *this.armed {
        if let Some(deadline) = want {
            this.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        *this.armed = want;
    }
    if this.armed.is_none() || this.sleep.as_mut().poll(task).is_pending() {
        return false;
    }
    *this.armed = None;
    let now = Instant::now();
    if paced.is_some_and(|p| now >= p) {
        // The client's rate allows reading again.
        if let Some(p) = this.pace.as_mut() {
            p.until = None;
        }
    }
    if act.core.is_closed() {
        return true;
    }
    if stall.is_some_and(|s| now >= s) {
        log::warn!(
            "client {} from {}: the socket accepted nothing for {}s; closing",
            act.core.label(),
            act.core.peer(),
            WRITE_STALL_LIMIT.as_secs()
        );
        *this.stalled_since = None;
        act.feed(Input::InputClosed, ctx);
        return true;
    }
    if act.timer_at.is_some_and(|t| now >= t) {
        act.timer_at = None;
        act.feed(Input::Timer, ctx);
    }
    true
}
