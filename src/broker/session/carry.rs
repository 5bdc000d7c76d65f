//! Carrying out what the connection core returned, in its order: packets to the client (behind the commit
//! that gates them), store writes, then requests to the router, the store and the hooks, whose answers come
//! back as inputs. Mechanics only: every decision was the core's.

use super::*;
use crate::protocol::{Request, Ticket};
use crate::store::StoreError;
use std::future::Future;

/// How long a new connection waits for the one it takes over to finish writing its state.
const TAKEOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    pub(super) fn carry_out(&mut self, out: &mut Outputs, ctx: &mut Context<Self>) {
        if !out.emits.is_empty() {
            self.write_emits(out, ctx);
        }
        let ops = std::mem::take(&mut out.store);
        match out.gate {
            Some(gate) => {
                if let Sink::Wire(outgoing) = &mut self.sink {
                    outgoing.seal(gate);
                }
                let committed = self.peers.store.write(ops);
                self.answer_committed(gate, committed, ctx);
            }
            None if !ops.is_empty() => self.peers.store.write_and_forget(ops),
            None => {}
        }
        for request in out.requests.drain(..) {
            self.carry_out_request(request, ctx);
        }
        if let Some(timer) = out.timer {
            self.timer_at = Some(timer);
            self.wake_io();
        }
        if out.close.is_some() {
            match &self.sink {
                Sink::Wire(_) => self.wake_io(),
                Sink::App(_) => ctx.stop(),
            }
        }
    }

    fn write_emits(&mut self, out: &mut Outputs, ctx: &mut Context<Self>) {
        match &mut self.sink {
            Sink::Wire(outgoing) => {
                let level = self.core.level();
                for emit in &out.emits {
                    outgoing.write(emit, level);
                }
                self.wake_io();
            }
            Sink::App(app) => {
                let answers = app.take(out.emits.drain(..));
                answers.into_iter().for_each(follow_up);
                if app.needs_room() {
                    self.wait_for_room(ctx);
                }
            }
        }
    }

    fn carry_out_request(&mut self, request: Request, ctx: &mut Context<Self>) {
        match request {
            Request::Authenticate(auth) => self.authenticate(auth, ctx),
            Request::AuthStep {
                connect,
                method,
                data,
            } => self.authenticate_step(connect, method, data, ctx),
            Request::Register {
                client_id,
                clean_session,
                session_expiry,
                credit,
            } => self.register(client_id, clean_session, session_expiry, credit, ctx),
            Request::Store { ops, ticket } => {
                let committed = self.peers.store.write(ops);
                self.answer_committed(ticket, committed, ctx);
            }
            Request::ReadIncomingQos2 => self.read_incoming_qos2(ctx),
            Request::Route {
                messages,
                ops,
                ticket,
                report_unmatched,
            } => self.route(messages, ops, ticket, report_unmatched, ctx),
            Request::ScreenPublishes(messages) => self.screen_publishes(messages, ctx),
            Request::ScreenSubscribe(filters) => self.screen_subscribe(filters, ctx),
            Request::Subscribe {
                filters,
                ticket,
                report_existing,
            } => self.ask_router(ticket, report_existing, ctx, |link, done, existed| {
                AddSubscriptions {
                    link,
                    filters,
                    done,
                    existed,
                }
            }),
            Request::Unsubscribe {
                filters,
                ticket,
                report_existing,
            } => self.ask_router(ticket, report_existing, ctx, |link, done, existed| {
                RemoveSubscriptions {
                    link,
                    filters,
                    done,
                    existed,
                }
            }),
            Request::SendRetained(filters) => self.peers.retained.do_send(SendRetained {
                filters,
                to: ctx.address(),
            }),
            Request::ReadQueue { after_seq, limit } => self.read_queue(after_seq, limit, ctx),
            Request::GrantCredit(credit) => {
                if let Some(link) = self.link {
                    self.peers.router.do_send(GrantCredit { link, credit });
                }
            }
            Request::CountDropped(n) => self.peers.router.do_send(CountDropped(n)),
            Request::Notify(notification) => self.notify(notification),
            Request::PublishWill {
                message,
                delay_secs: 0,
            } => self.peers.router.do_send(RoutePublish::from_broker(
                vec![message],
                Vec::new(),
                None,
            )),
            Request::PublishWill {
                message,
                delay_secs,
            } => {
                if let Some(link) = self.link {
                    self.peers.router.do_send(DelayWill {
                        link,
                        message,
                        due_ms: crate::message::now_ms() + u64::from(delay_secs) * 1000,
                    });
                }
            }
            Request::HandBack(messages) => {
                if let Some(link) = self.link {
                    self.peers.router.do_send(HandBack {
                        from: link.slot,
                        messages,
                    });
                }
            }
            Request::SessionExpiry(secs) => {
                if let Some(link) = self.link {
                    self.peers.router.do_send(SetSessionExpiry { link, secs });
                }
            }
            Request::Detach => self.detach(),
        }
    }

    fn read_incoming_qos2(&mut self, ctx: &mut Context<Self>) {
        let Some(client_id) = self.core.client_id().cloned() else {
            return;
        };
        let read = self.peers.store.read_incoming_qos2(client_id);
        self.answer_with(ctx, read, |result| Input::IncomingQos2(flatten(result)));
    }

    /// Asks the router for a change whose commit an answer waits for (a subscription or its removal).
    fn ask_router<M>(
        &mut self,
        ticket: Ticket,
        report_existing: bool,
        ctx: &mut Context<Self>,
        message: impl FnOnce(RouterLink, Completion, Option<oneshot::Sender<Vec<bool>>>) -> M,
    ) where
        M: actix::Message<Result = ()> + Send + 'static,
        Router: Handler<M>,
    {
        let Some(link) = self.link else { return };
        let (done, committed) = oneshot::channel();
        if !report_existing {
            self.peers.router.do_send(message(link, done, None));
            self.answer_committed(ticket, committed, ctx);
            return;
        }
        // Which filters existed comes first, so the answers are right when the commit releases them.
        let (report, reported) = oneshot::channel();
        self.peers.router.do_send(message(link, done, Some(report)));
        self.answer_committed_after(ticket, reported, committed, ctx, move |existed| {
            Some(Input::Existing { ticket, existed })
        });
    }

    /// Feeds what the router reported about a request (`report`, as `to_input` makes it) and then the request's
    /// commit, in that order, so that the answers the commit releases already say what the report tells.
    fn answer_committed_after<T: Default + 'static>(
        &mut self,
        ticket: Ticket,
        reported: oneshot::Receiver<T>,
        committed: oneshot::Receiver<Result<(), StoreError>>,
        ctx: &mut Context<Self>,
        to_input: impl FnOnce(T) -> Option<Input> + 'static,
    ) {
        let both = async move { (reported.await.unwrap_or_default(), committed.await) };
        ctx.spawn(
            both.into_actor(self)
                .map(move |(report, result), act, ctx| {
                    if let Some(input) = to_input(report) {
                        act.feed(input, ctx);
                    }
                    let result = flatten(result);
                    act.feed_answer(Input::Committed { ticket, result }, ctx);
                }),
        );
    }

    /// Feeds an answer that came back; a commit opens its gate first, so what it releases may leave at once.
    fn feed_answer(&mut self, input: Input, ctx: &mut Context<Self>) {
        if let (Input::Committed { ticket, .. }, Sink::Wire(outgoing)) = (&input, &mut self.sink) {
            outgoing.open(*ticket);
        }
        self.feed(input, ctx);
        self.wake_io();
    }

    /// Leaves the router; a connection that took this one over may go on once this point is reached.
    fn detach(&mut self) {
        if let Some(link) = self.link.take() {
            self.peers.router.do_send(SessionClosed { link });
        }
        // Everything this session had to store was submitted before this point.
        if let Some(done) = self.rare.as_mut().and_then(|r| r.takeover_done.take()) {
            let _ = done.send(());
        }
    }

    /// Registers with the router; a connection taken over gets a bounded time to write its last state first.
    fn register(
        &mut self,
        client_id: crate::codec::ClientId,
        clean_session: bool,
        session_expiry: Option<u32>,
        credit: u32,
        ctx: &mut Context<Self>,
    ) {
        let register = self.peers.router.send(RegisterSession {
            client_id,
            clean_session,
            session_expiry,
            session: ctx.address(),
            credit,
        });
        let registered = async move {
            let reply = register.await.ok()?;
            if let Some(previous) = reply.previous_closed {
                let _ = tokio::time::timeout(TAKEOVER_WAIT, previous).await;
            }
            Some((
                reply.link,
                protocol::Registration {
                    session_present: reply.session_present,
                    had_persistent: reply.had_persistent,
                    queue_head: reply.queue_head,
                    subscriptions: reply.subscriptions,
                },
            ))
        };
        ctx.spawn(registered.into_actor(self).map(|reply, act, ctx| {
            let registration = reply.map(|(link, registration)| {
                act.link = Some(link);
                registration
            });
            act.feed(Input::Registered(registration.ok_or(())), ctx);
        }));
    }

    /// Sends a batch to the router with one of the session's routing credits; with none left, the core stops
    /// reading this client until one comes back. While the router's mailbox is full it stops reading too.
    fn route(
        &mut self,
        messages: Vec<Arc<crate::message::Message>>,
        ops: Vec<crate::store::StoreOp>,
        ticket: Option<Ticket>,
        report_unmatched: Vec<Option<crate::codec::PacketId>>,
        ctx: &mut Context<Self>,
    ) {
        let mut unmatched = None;
        let done = ticket.map(|ticket| {
            let (done, committed) = oneshot::channel();
            if report_unmatched.is_empty() {
                self.answer_committed(ticket, committed, ctx);
            } else {
                // The router says which messages matched nobody before the commit is fed, so their answers
                // carry 0x10 when they leave.
                let (report, reported) = oneshot::channel();
                unmatched = Some((report_unmatched, report));
                self.answer_committed_after(ticket, reported, committed, ctx, |ids: Vec<_>| {
                    (!ids.is_empty()).then_some(Input::Unmatched(ids))
                });
            }
            done
        });
        let credits = self
            .route_credits
            .get_or_insert_with(crate::broker::flow::route_credits)
            .clone();
        let credit = credits.clone().try_acquire_owned().ok().map(Arc::new);
        let route = RoutePublish {
            messages,
            ops,
            done,
            credit,
            from: self.link.map(|link| link.slot),
            unmatched,
        };
        let waiting = self.rare.as_ref().is_some_and(|r| r.held_since.is_some());
        if credits.available_permits() == 0 && !waiting {
            self.wait_for_route_credit(credits, ctx);
        }
        match self.peers.router.try_send(route) {
            Ok(()) => {}
            Err(SendError::Full(route)) => {
                follow_up(Input::RouterBusy(true));
                let sent = self.peers.router.send(route);
                ctx.spawn(sent.into_actor(self).map(|result, act, ctx| {
                    let input = match result {
                        Ok(()) => Input::RouterBusy(false),
                        Err(_) => Input::InputClosed,
                    };
                    act.feed(input, ctx);
                    act.wake_io();
                }));
            }
            Err(SendError::Closed(_)) => follow_up(Input::InputClosed),
        }
    }

    /// Every routing credit is out (on its way to the router, or kept by lagging subscribers): the core stops
    /// reading until one comes back.
    fn wait_for_route_credit(
        &mut self,
        credits: Arc<tokio::sync::Semaphore>,
        ctx: &mut Context<Self>,
    ) {
        self.rare().held_since = Some(Instant::now());
        follow_up(Input::Pace { hold: true });
        ctx.spawn(
            credits
                .acquire_owned()
                .into_actor(self)
                .map(|credit, act, ctx| {
                    // Only waited for: the next batch takes it.
                    drop(credit);
                    if let Some(since) = act.rare.as_mut().and_then(|r| r.held_since.take()) {
                        let waited_ms = since.elapsed().as_millis() as u64;
                        act.peers.router.do_send(PublisherWaited { waited_ms });
                    }
                    act.feed(Input::Pace { hold: false }, ctx);
                    act.wake_io();
                }),
        );
    }

    fn read_queue(&mut self, after_seq: u64, limit: usize, ctx: &mut Context<Self>) {
        let Some(client_id) = self.core.client_id().cloned() else {
            return;
        };
        let page = self.peers.store.read_queue(client_id, after_seq, limit);
        self.answer_with(ctx, page, |result| Input::StorePage(flatten(result)));
    }

    /// Feeds `Input::Committed` for `ticket` once `committed` resolves.
    fn answer_committed(
        &mut self,
        ticket: Ticket,
        committed: oneshot::Receiver<Result<(), StoreError>>,
        ctx: &mut Context<Self>,
    ) {
        self.answer_with(ctx, committed, move |result| Input::Committed {
            ticket,
            result: flatten(result),
        });
    }

    /// Feeds the input `to_input` makes of `answer` once it resolves; opens a gate it names first.
    pub(super) fn answer_with<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        answer: impl Future<Output = T> + 'static,
        to_input: impl FnOnce(T) -> Input + 'static,
    ) {
        ctx.spawn(
            answer
                .into_actor(self)
                .map(move |value, act, ctx| act.feed_answer(to_input(value), ctx)),
        );
    }
}

/// A reply that never came (the store or router stopped) reads as the writer being gone.
fn flatten<T>(
    result: Result<Result<T, StoreError>, oneshot::error::RecvError>,
) -> Result<T, StoreError> {
    result.unwrap_or(Err(StoreError::WriterGone))
}
