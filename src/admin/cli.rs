//! The `sessions`, `retained` and `stats` commands: ask the broker's admin API when it answers, otherwise read
//! the database file; a change while the broker runs goes through the API or fails, never by a second writer.

use super::client::{encode, AdminClient, ClientError};
use super::model::*;
use super::{offline, render, token_path};
use crate::config::Config;
use crate::topic::{TopicFilter, TopicName};
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Flags every admin command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct AdminArgs {
    /// TOML configuration file (for data_dir, admin_bind and admin_token).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory of the database (default: the config's data_dir, ./harbormq-data).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Admin API of the running broker (default: http:// + the config's admin_bind).
    #[arg(long, value_name = "URL", global = true)]
    admin: Option<String>,
    /// Admin API token (default: the config's admin_token, else DATA_DIR/admin.token).
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    /// CA certificates to trust for an https admin API (default: exactly the config's certfile).
    #[arg(long, value_name = "FILE", global = true)]
    admin_cafile: Option<PathBuf>,
}

/// `harbormq sessions ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum SessionsCommand {
    /// One row per persistent session.
    List {
        /// Only client ids starting with this prefix.
        #[arg(long, value_name = "PREFIX")]
        filter: Option<String>,
        /// Order of the rows (queued and last_seen: largest or latest first).
        #[arg(long, value_enum, default_value_t = SortKey::ClientId)]
        sort: SortKey,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A session's subscriptions, inflight and queued messages.
    Show {
        /// The client id.
        client_id: String,
        /// Show a preview of each payload.
        #[arg(long)]
        payload: bool,
        /// Queue entries per page.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE)]
        limit: usize,
        /// Show queue entries after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Removes a session and its queue (disconnecting it if online).
    Delete {
        /// The client id.
        #[arg(required_unless_present = "expired", conflicts_with = "expired")]
        client_id: Option<String>,
        /// Remove every offline session last seen longer ago than the session expiry.
        #[arg(long)]
        expired: bool,
        /// With --expired: the age in seconds beyond which a session counts as expired
        /// (default: the config's session_expiry_secs).
        #[arg(long, value_name = "SECS", requires = "expired")]
        older_than: Option<u64>,
    },
}

/// Orders of `sessions list`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By client id.
    ClientId,
    /// Most queued messages first.
    Queued,
    /// Most recently seen first.
    LastSeen,
}

/// `harbormq retained ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum RetainedCommand {
    /// Retained messages, optionally those matching a topic filter.
    List {
        /// Topic filter, e.g. sensors/+/temp or #.
        filter: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes the retained message of a topic.
    Delete {
        /// The topic.
        topic: String,
    },
}

/// Where the command gets its answers.
struct Target {
    config: Config,
    client: Option<AdminClient>,
    explicit_url: bool,
}

impl Target {
    fn resolve(args: &AdminArgs) -> anyhow::Result<Target> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        let url = args
            .admin
            .clone()
            .or_else(|| default_url(&config.admin_bind, config.admin_tls));
        let token = args
            .token
            .clone()
            .or_else(|| (!config.admin_token.is_empty()).then(|| config.admin_token.clone()))
            .or_else(|| {
                std::fs::read_to_string(token_path(&config.data_dir))
                    .ok()
                    .map(|t| t.trim().to_owned())
            });
        let client = match url {
            Some(url) if url.starts_with("https://") => {
                let tls = super::https::client_config(&config, args.admin_cafile.as_deref())?;
                Some(AdminClient::with_tls(&url, token, Some(tls))?)
            }
            Some(url) => Some(AdminClient::new(&url, token)?),
            None => None,
        };
        Ok(Target {
            config,
            client,
            explicit_url: args.admin.is_some(),
        })
    }

    /// The admin client if the API answers `/health`.
    fn live(&self) -> Option<&AdminClient> {
        let client = self.client.as_ref()?;
        match client.request("GET", "/health") {
            Ok(response) if response.status == 200 => Some(client),
            Ok(_) | Err(_) => {
                if self.explicit_url {
                    eprintln!(
                        "note: the admin API at {} does not answer; reading the database file",
                        client.url()
                    );
                }
                None
            }
        }
    }

    fn reader(&self) -> anyhow::Result<crate::store::StoreReader> {
        offline::open(&self.config.data_dir).map_err(|e| self.offline_error(e))
    }

    fn offline_error(&self, e: offline::OfflineError) -> anyhow::Error {
        match (&e, &self.client) {
            (offline::OfflineError::NoDatabase(_), Some(client)) => anyhow!(
                "{e}; and no broker answers at {} (is it running? check --admin)",
                client.url()
            ),
            (offline::OfflineError::BrokerRunning(_), Some(client)) => {
                anyhow!("{e}; tried {}", client.url())
            }
            _ => anyhow!(e),
        }
    }
}

/// `http://` (`https://` with `admin_tls`) + the bind address, with an any-address replaced by loopback.
fn default_url(bind: &str, tls: bool) -> Option<String> {
    if bind.is_empty() {
        return None;
    }
    let host = bind
        .replacen("0.0.0.0:", "127.0.0.1:", 1)
        .replacen("[::]:", "[::1]:", 1);
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// Sends a request and decodes a JSON answer; 401 and other failures become clear errors.
fn call<T: DeserializeOwned>(client: &AdminClient, method: &str, path: &str) -> anyhow::Result<T> {
    let response = client.request(method, path).map_err(|e| match e {
        ClientError::Unreachable { .. } => anyhow!("broker not reachable: {e}"),
        other => anyhow!(other),
    })?;
    match response.status {
        200 => serde_json::from_slice(&response.body)
            .with_context(|| format!("unexpected answer from {}{path}", client.url())),
        401 => bail!(
            "the admin API at {} refused the token (wrong --token? the broker writes a generated one to DATA_DIR/admin.token)",
            client.url()
        ),
        status => {
            let message = serde_json::from_slice::<ErrorBody>(&response.body)
                .map(|b| b.error)
                .unwrap_or_else(|_| response.text());
            bail!("{message} (HTTP {status} from {}{path})", client.url())
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a `sessions` command.
pub fn sessions(args: &AdminArgs, command: SessionsCommand) -> anyhow::Result<()> {
    let target = Target::resolve(args)?;
    match command {
        SessionsCommand::List { filter, sort, json } => {
            let live = target.live();
            let mut rows: Vec<SessionRow> = match live {
                Some(client) => call(client, "GET", "/api/sessions")?,
                None => offline::sessions(&target.reader()?)?,
            };
            if let Some(prefix) = &filter {
                rows.retain(|r| r.client_id.starts_with(prefix.as_str()));
            }
            match sort {
                SortKey::ClientId => rows.sort_by(|a, b| a.client_id.cmp(&b.client_id)),
                SortKey::Queued => rows.sort_by_key(|r| std::cmp::Reverse(r.queued_messages)),
                SortKey::LastSeen => rows.sort_by_key(|r| std::cmp::Reverse(r.last_seen.clone())),
            }
            if json {
                return print_json(&rows);
            }
            print!("{}", render::sessions(&rows, live.is_some()));
            Ok(())
        }
        SessionsCommand::Show {
            client_id,
            payload,
            limit,
            after,
            json,
        } => show(
            &target,
            &client_id,
            Page {
                after,
                limit,
                payload,
            },
            json,
        ),
        SessionsCommand::Delete {
            client_id,
            expired,
            older_than,
        } => delete(&target, client_id, expired, older_than),
    }
}

fn show(target: &Target, client_id: &str, page: Page, json: bool) -> anyhow::Result<()> {
    let live = target.live();
    let detail = match live {
        Some(client) => {
            let path = format!(
                "/api/sessions/{}?after={}&limit={}&payload={}",
                encode(client_id, false),
                page.after,
                page.limit,
                page.payload
            );
            call::<SessionDetail>(client, "GET", &path)?
        }
        None => offline::session(&target.reader()?, client_id, page)?
            .ok_or_else(|| anyhow!("unknown client id {client_id:?}: no stored session"))?,
    };
    if json {
        return print_json(&detail);
    }
    print!("{}", render::session(&detail, live.is_some(), page.payload));
    Ok(())
}

fn delete(
    target: &Target,
    client_id: Option<String>,
    expired: bool,
    older_than: Option<u64>,
) -> anyhow::Result<()> {
    let live = target.live();
    if expired {
        let deleted: Vec<String> = match live {
            Some(client) => {
                let mut path = "/api/sessions?expired=true".to_owned();
                if let Some(secs) = older_than {
                    path.push_str(&format!("&older_than_secs={secs}"));
                }
                call::<DeletedSessions>(client, "DELETE", &path)?.deleted
            }
            None => {
                let secs = older_than.unwrap_or(target.config.session_expiry_secs);
                if secs == 0 && older_than.is_none() {
                    bail!(
                        "session_expiry_secs is 0 (sessions never expire); pass --older-than SECS"
                    );
                }
                offline::delete_expired(&target.config.data_dir, secs.saturating_mul(1000))
                    .map_err(|e| target.offline_error(e))?
            }
        };
        println!("deleted {} expired session(s)", deleted.len());
        for id in deleted {
            println!("  {id}");
        }
        return Ok(());
    }
    let client_id = client_id.ok_or_else(|| anyhow!("name a client id or pass --expired"))?;
    match live {
        Some(client) => {
            let path = format!("/api/sessions/{}", encode(&client_id, false));
            call::<serde_json::Value>(client, "DELETE", &path)?;
        }
        None => {
            let known = offline::delete_session(&target.config.data_dir, &client_id)
                .map_err(|e| target.offline_error(e))?;
            if !known {
                bail!("unknown client id {client_id:?}: no stored session");
            }
        }
    }
    println!("deleted session {client_id}");
    Ok(())
}

/// Runs a `retained` command.
pub fn retained(args: &AdminArgs, command: RetainedCommand) -> anyhow::Result<()> {
    let target = Target::resolve(args)?;
    match command {
        RetainedCommand::List { filter, json } => {
            let parsed = match &filter {
                Some(text) => Some(
                    TopicFilter::new(text.clone())
                        .map_err(|e| anyhow!("topic filter {text:?}: {e}"))?,
                ),
                None => None,
            };
            let rows: Vec<RetainedRow> = match target.live() {
                Some(client) => {
                    let query = filter
                        .map(|f| format!("?filter={}", encode(&f, false)))
                        .unwrap_or_default();
                    call(client, "GET", &format!("/api/retained{query}"))?
                }
                None => offline::retained(&target.reader()?, parsed.as_ref())?,
            };
            if json {
                return print_json(&rows);
            }
            print!("{}", render::retained(&rows));
            Ok(())
        }
        RetainedCommand::Delete { topic } => {
            let parsed =
                TopicName::new(topic.clone()).map_err(|e| anyhow!("topic {topic:?}: {e}"))?;
            match target.live() {
                Some(client) => {
                    let path = format!("/api/retained/{}", encode(&topic, true));
                    call::<serde_json::Value>(client, "DELETE", &path)?;
                }
                None => {
                    let known = offline::delete_retained(&target.config.data_dir, &parsed)
                        .map_err(|e| target.offline_error(e))?;
                    if !known {
                        bail!("no retained message on topic {topic:?}");
                    }
                }
            }
            println!("deleted the retained message of {topic}");
            Ok(())
        }
    }
}

/// Runs `stats`.
pub fn stats(args: &AdminArgs, json: bool) -> anyhow::Result<()> {
    let target = Target::resolve(args)?;
    let view: StatsView = match target.live() {
        Some(client) => call(client, "GET", "/api/stats")?,
        None => offline::stats(&target.reader()?)?,
    };
    if json {
        return print_json(&view);
    }
    print!("{}", render::stats(&view));
    Ok(())
}
