//! Asking the application's hooks what the connection core asks them, and handing their answers back as
//! inputs: authentication, screening of publishes and subscriptions, and notifications that nobody waits for.
//! Ordering and what to do with the answers are the core's; this only runs the futures.

use super::*;
use crate::broker::hooks::{AuthDecision, ConnectInfo, DisconnectReason};
use crate::codec::QoS;
use crate::message::Message;
use crate::protocol::io::Screening;
use crate::protocol::{CloseReason, Notification};
use crate::topic::TopicFilter;

impl Session {
    /// Asks the authenticate hook about a CONNECT.
    pub(super) fn authenticate(&mut self, info: ConnectInfo, ctx: &mut Context<Self>) {
        let Some(hooks) = self.peers.hooks.clone() else {
            follow_up(Input::Authenticated(Ok(())));
            return;
        };
        let asked = hooks.clone();
        let decide = async move {
            let decision = asked.authenticate(&info).await;
            (decision, info)
        };
        ctx.spawn(
            decide
                .into_actor(self)
                .map(move |(decision, info), act, ctx| {
                    let verdict = match decision {
                        AuthDecision::Allow => {
                            let client = Arc::new(info.client());
                            act.core.grant_rights(hooks.topic_rights(&client));
                            act.rare().client_info = Some(client);
                            Ok(())
                        }
                        AuthDecision::Deny(code) => Err(code.into()),
                        AuthDecision::Refuse(code) => Err(code),
                    };
                    if verdict.is_err() {
                        act.peers
                            .counters
                            .refused_connects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    act.feed(Input::Authenticated(verdict), ctx);
                    act.wake_io();
                }),
        );
    }

    /// Asks the enhanced authentication hook for one step of an MQTT 5.0 exchange.
    pub(super) fn authenticate_step(
        &mut self,
        connect: ConnectInfo,
        method: bytestring::ByteString,
        data: Option<bytes::Bytes>,
        ctx: &mut Context<Self>,
    ) {
        let Some(hooks) = self.peers.hooks.clone() else {
            follow_up(Input::AuthStepped(
                crate::protocol::io::AuthStep::Unsupported,
            ));
            return;
        };
        let step = async move {
            hooks
                .authenticate_step(&connect, &method, data.as_deref())
                .await
        };
        self.answer_with(ctx, step, Input::AuthStepped);
    }

    /// Runs authorize_publish and on_message_publish over a batch, keeping the messages allowed, in order.
    pub(super) fn screen_publishes(
        &mut self,
        messages: Vec<Arc<Message>>,
        ctx: &mut Context<Self>,
    ) {
        let Some((hooks, client)) = self.hooks_and_client() else {
            follow_up(Input::Screened(
                messages.into_iter().map(Screening::Kept).collect(),
            ));
            return;
        };
        let screen = async move {
            let mut verdicts = Vec::with_capacity(messages.len());
            for message in messages {
                if !hooks.authorize_publish(&client, &message).await {
                    log::warn!(
                        "client {} from {}: publish to {} denied by the authorize_publish hook; dropped",
                        client.client_id,
                        client.peer,
                        message.topic
                    );
                    verdicts.push(Screening::Denied);
                    continue;
                }
                let owned = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
                verdicts.push(match hooks.on_message_publish(&client, owned).await {
                    Some(rewritten) => Screening::Kept(Arc::new(rewritten)),
                    None => Screening::Dropped,
                });
            }
            verdicts
        };
        self.answer_with(ctx, screen, Input::Screened);
    }

    /// Runs authorize_subscribe over a SUBSCRIBE's filters: one verdict per filter (true is denied).
    pub(super) fn screen_subscribe(
        &mut self,
        filters: Vec<(TopicFilter, QoS)>,
        ctx: &mut Context<Self>,
    ) {
        let Some((hooks, client)) = self.hooks_and_client() else {
            let none = vec![false; filters.len()];
            follow_up(Input::SubscribeScreened(none));
            return;
        };
        let screen = async move {
            let mut denied = Vec::with_capacity(filters.len());
            for (filter, qos) in &filters {
                let allowed = hooks.authorize_subscribe(&client, filter, *qos).await;
                if !allowed {
                    log::warn!(
                        "client {} from {}: subscription to {} denied by the authorize_subscribe hook",
                        client.client_id,
                        client.peer,
                        filter.as_str()
                    );
                }
                denied.push(!allowed);
            }
            denied
        };
        self.answer_with(ctx, screen, Input::SubscribeScreened);
    }

    /// Tells the hooks, detached: nothing waits for them.
    pub(super) fn notify(&mut self, notification: Notification) {
        let Some((hooks, client)) = self.hooks_and_client() else {
            return;
        };
        actix_rt::spawn(async move {
            match notification {
                Notification::Connected { session_present } => {
                    hooks.on_connected(&client, session_present).await
                }
                Notification::Delivered(publish) => {
                    hooks
                        .on_message_delivered(&client, &publish.to_publish())
                        .await
                }
                Notification::Acked(publish) => {
                    hooks.on_message_acked(&client, &publish.to_publish()).await
                }
                Notification::Disconnected(reason) => {
                    let reason = match reason {
                        CloseReason::Disconnect => DisconnectReason::Client,
                        CloseReason::Shutdown => DisconnectReason::Shutdown,
                        CloseReason::Abnormal => DisconnectReason::Abnormal,
                    };
                    hooks.on_disconnected(&client, reason).await
                }
            }
        });
    }

    /// The registered hooks with the identity they are told about, once the client has authenticated.
    fn hooks_and_client(&self) -> Option<(Arc<dyn Hooks>, Arc<ClientInfo>)> {
        let client = self.rare.as_ref()?.client_info.clone()?;
        Some((self.peers.hooks.clone()?, client))
    }
}
