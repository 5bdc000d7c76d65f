//! Where a session consults the application's hooks: authentication before attaching, screening of published
//! messages and subscriptions (the session waits, in order), and detached notifications.

use super::*;
use crate::broker::hooks::{AuthDecision, ClientInfo, ConnectInfo, DisconnectReason, Hooks};
use crate::codec::{Connect, ConnectReturnCode, Publish, Subscribe};
use crate::message::Message;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// The publish hooks at work on a read's messages.
pub(super) type Screening = Pin<Box<dyn Future<Output = Vec<Arc<Message>>> + Send>>;

/// A connected session's hooks and identity, with the QoS 1/2 messages sent and not yet acknowledged (only
/// kept when hooks are registered, to tell `on_message_acked` what was acknowledged).
pub(super) struct SessionHooks {
    hooks: Arc<dyn Hooks>,
    client: Arc<ClientInfo>,
    unacked: HashMap<PacketId, Publish>,
}

impl SessionHooks {
    /// A PUBLISH is being written to the client.
    pub(super) fn delivered(&mut self, publish: &Publish) {
        if let Some(id) = publish.packet_id {
            self.unacked.insert(id, publish.clone());
        }
        let (hooks, client, publish) = (self.hooks.clone(), self.client.clone(), publish.clone());
        actix_rt::spawn(async move { hooks.on_message_delivered(&client, &publish).await });
    }

    /// The client acknowledged the message sent with `id` (PUBACK or PUBREC).
    pub(super) fn acked(&mut self, id: PacketId) {
        let Some(publish) = self.unacked.remove(&id) else {
            return;
        };
        let (hooks, client) = (self.hooks.clone(), self.client.clone());
        actix_rt::spawn(async move { hooks.on_message_acked(&client, &publish).await });
    }

    fn disconnected(&self, reason: CloseReason) {
        let reason = match reason {
            CloseReason::Disconnect => DisconnectReason::Client,
            CloseReason::Shutdown => DisconnectReason::Shutdown,
            CloseReason::Abnormal => DisconnectReason::Abnormal,
        };
        let (hooks, client) = (self.hooks.clone(), self.client.clone());
        actix_rt::spawn(async move { hooks.on_disconnected(&client, reason).await });
    }
}

impl Session {
    /// Asks the authenticate hook about a CONNECT, then attaches or refuses with the hook's code.
    pub(super) fn authenticate(
        &mut self,
        hooks: Arc<dyn Hooks>,
        connect: Connect,
        client_id: ClientId,
        ctx: &mut Context<Self>,
    ) {
        let info = ConnectInfo {
            client_id: client_id.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            peer: self.peer.clone(),
            clean_session: connect.clean_session,
            keep_alive_secs: connect.keep_alive_secs,
            level: connect.level,
        };
        let decide = async move {
            let decision = hooks.authenticate(&info).await;
            (decision, info)
        };
        ctx.wait(decide.into_actor(self).map(move |(decision, info), act, ctx| {
            match decision {
                AuthDecision::Allow => {
                    act.client_info = Some(Arc::new(info.client()));
                    act.attach(connect, client_id, ctx);
                }
                AuthDecision::Deny(code) => {
                    let code = match code {
                        ConnectReturnCode::Accepted => ConnectReturnCode::NotAuthorized,
                        code => code,
                    };
                    log::warn!(
                        "client {client_id} from {}: refused by the authenticate hook with {code:?}",
                        act.peer
                    );
                    act.refuse(code, ctx);
                }
            }
        }));
    }

    /// The hook state of a session being attached, when hooks are registered.
    pub(super) fn session_hooks(&self) -> Option<Box<SessionHooks>> {
        let (hooks, client) = self.hooks_and_client()?;
        Some(Box::new(SessionHooks {
            hooks,
            client,
            unacked: HashMap::new(),
        }))
    }

    /// Tells the on_connected hook, without waiting for it.
    pub(super) fn hook_connected(&self, session_present: bool) {
        if let Some((hooks, client)) = self.hooks_and_client() {
            actix_rt::spawn(async move { hooks.on_connected(&client, session_present).await });
        }
    }

    /// The registered hooks with the identity they are told about, once the client has authenticated.
    fn hooks_and_client(&self) -> Option<(Arc<dyn Hooks>, Arc<ClientInfo>)> {
        Some((self.peers.hooks.clone()?, self.client_info.clone()?))
    }

    /// Screens a read's messages with authorize_publish and on_message_publish: `Ok` with the messages as they
    /// are when no hooks are registered, else `Err` with the future of the messages kept, in order, which the
    /// session waits for.
    pub(super) fn screen_publishes(
        &self,
        messages: Vec<Arc<Message>>,
    ) -> Result<Vec<Arc<Message>>, Screening> {
        let Some((hooks, client)) = self.hooks_and_client() else {
            return Ok(messages);
        };
        Err(Box::pin(async move {
            let mut kept = Vec::with_capacity(messages.len());
            for message in messages {
                if !hooks.authorize_publish(&client, &message).await {
                    log::warn!(
                        "client {} from {}: publish to {} denied by the authorize_publish hook; dropped",
                        client.client_id,
                        client.peer,
                        message.topic
                    );
                    continue;
                }
                let owned = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
                if let Some(rewritten) = hooks.on_message_publish(&client, owned).await {
                    kept.push(Arc::new(rewritten));
                }
            }
            kept
        }))
    }

    /// Runs authorize_subscribe over a SUBSCRIBE's filters while the session waits, then hands the packet on
    /// with one flag per filter (true = denied). Returns the packet when no hooks are registered.
    pub(super) fn screen_subscribe(
        &mut self,
        subscribe: Subscribe,
        ctx: &mut Context<Self>,
    ) -> Option<Subscribe> {
        let Some((hooks, client)) = self.hooks_and_client() else {
            return Some(subscribe);
        };
        let screen = async move {
            let mut denied = Vec::with_capacity(subscribe.filters.len());
            for (filter, qos) in &subscribe.filters {
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
            (subscribe, denied)
        };
        ctx.wait(
            screen
                .into_actor(self)
                .map(|(subscribe, denied), act, ctx| {
                    act.subscribe_screened(subscribe, denied, ctx);
                    act.flush(ctx);
                }),
        );
        None
    }
}

/// Tells the on_disconnected hook of a session that had attached, without waiting for it.
pub(super) fn disconnected(hooks: Option<&SessionHooks>, reason: CloseReason) {
    if let Some(hooks) = hooks {
        hooks.disconnected(reason);
    }
}
