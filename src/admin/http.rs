//! The HTTP admin API on actix-web: health, Prometheus metrics, sessions, retained messages and figures.
//! Reads the store only through `StoreHandle::inspect` (on the store thread) and changes state only through
//! the router; every route but `/health` requires the bearer token.

use super::metrics::{self, MetricFigures};
use super::model::*;
use crate::broker::messages::{
    ClearRetained, CountRetained, DeleteExpiredSessions, DeleteSession, GetRouterStats,
    ListRetained, ListSessions, RouterStats, SessionPresence,
};
use crate::broker::retained::RetainedStore;
use crate::broker::router::Router;
use crate::codec::ClientId;
use crate::store::{Snapshot, StoreError, StoreHandle};
use crate::topic::{TopicFilter, TopicName};
use actix::Addr;
use actix_web::dev::{Payload, ServerHandle};
use actix_web::http::{header, StatusCode};
use actix_web::{delete, get, post, web, App, FromRequest, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The built-in checks, to reload their files and report what they refused.
#[derive(Debug, Clone, Default)]
pub struct SecurityFigures {
    /// The password file's check.
    pub password_auth: Option<crate::auth::PasswordAuth>,
    /// The ACL file's rules.
    pub acl: Option<crate::auth::AclAuth>,
    /// The HTTP authentication and authorisation service.
    pub http: Option<crate::auth::HttpBackend>,
}

/// What the admin API reaches of the running broker.
#[derive(Clone)]
pub struct AdminContext {
    /// The router.
    pub router: Addr<Router>,
    /// The retained-message actor.
    pub retained: Addr<RetainedStore>,
    /// The store.
    pub store: StoreHandle,
    /// The bearer token every route but `/health` requires.
    pub token: Arc<str>,
    /// The database file, `None` when the store is in memory.
    pub db_path: Option<PathBuf>,
    /// When the broker started.
    pub started: Instant,
    /// Open connections, CONNECTs refused by the hooks, connections over `max_connections`.
    pub connections: Arc<crate::broker::session::ConnectionCounters>,
    /// The password file's check, which `POST /api/reload` reads again.
    pub security: SecurityFigures,
    /// The TLS certificate, which `POST /api/reload` reads again.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The running admin server.
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server, letting requests in progress finish.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Binds `addr` and serves the admin API on one worker thread.
pub fn serve(
    addr: SocketAddr,
    context: AdminContext,
    https: Option<rustls::ServerConfig>,
) -> std::io::Result<AdminServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(context.clone()))
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    let server = match https {
        None => server.listen(listener)?,
        Some(config) => server.listen_rustls_0_23(listener, config)?,
    }
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(AdminServer {
        addr: local,
        handle,
    })
}

/// Mounts every admin route on an actix-web app (for embedding the API in another app).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(health)
        .service(metrics_route)
        .service(list_sessions)
        .service(delete_expired)
        .service(show_session)
        .service(delete_session)
        .service(list_retained)
        .service(delete_retained)
        .service(reload)
        .service(stats);
}

/// Why an admin request failed, as an HTTP status with a JSON `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The broker could not answer (store failure, actor stopped).
    #[error("{0}")]
    Unavailable(String),
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(format!("store: {e}"))
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Unavailable(format!("broker actor unavailable: {e}"))
    }
}

/// Proof that a request carried the right bearer token.
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let expected = req
            .app_data::<web::Data<AdminContext>>()
            .map(|c| c.token.clone());
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        ready(match (expected, given) {
            (Some(expected), Some(given)) if same_token(&expected, given) => Ok(Authorized),
            _ => Err(ApiError::Unauthorized),
        })
    }
}

/// Compares in time independent of where the first difference lies (`subtle`).
fn same_token(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

type Ctx = web::Data<AdminContext>;

impl AdminContext {
    async fn inspect<T, F>(&self, read: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T, StoreError> + Send + 'static,
    {
        self.store
            .inspect(read)
            .await
            .map_err(|_| ApiError::from(StoreError::WriterGone))?
            .map_err(ApiError::from)
    }

    async fn presence(&self) -> Result<HashMap<String, SessionPresence>, ApiError> {
        let list = self.router.send(ListSessions).await?;
        Ok(list
            .into_iter()
            .map(|p| (p.client_id.to_string(), p))
            .collect())
    }

    async fn router_stats(&self) -> Result<RouterStats, ApiError> {
        Ok(self.router.send(GetRouterStats).await?)
    }
}

#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[get("/metrics")]
async fn metrics_route(_: Authorized, ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let router = ctx.router_stats().await?;
    let retained = ctx.retained.send(CountRetained).await?;
    let queues = ctx.inspect(|s| s.queue_totals()).await?;
    let text = metrics::render(&MetricFigures {
        router,
        retained,
        store: ctx.store.stats(),
        queues,
        uptime_secs: ctx.started.elapsed().as_secs(),
        refused_connects: ctx
            .connections
            .refused_connects
            .load(std::sync::atomic::Ordering::Relaxed),
        over_limit: ctx
            .connections
            .over_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        acl_denied: ctx
            .security
            .acl
            .as_ref()
            .map(|acl| acl.counters().snapshot()),
        http_answers: ctx
            .security
            .http
            .as_ref()
            .map(|http| http.counters().snapshot()),
        tls_handshakes_failed: ctx
            .connections
            .tls_handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        limit_hits: ctx.connections.limits.snapshot(),
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

#[get("/api/sessions")]
async fn list_sessions(_: Authorized, ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let presence = ctx.presence().await?;
    let stored = ctx.inspect(|s| s.sessions()).await?;
    let mut rows: Vec<SessionRow> = stored
        .iter()
        .map(|summary| {
            let online = presence
                .get(summary.client_id.as_str())
                .is_some_and(|p| p.online);
            session_row(summary, online)
        })
        .collect();
    // A persistent session whose first CONNECT is not committed yet is already known to the router.
    let listed: HashSet<&str> = stored.iter().map(|s| s.client_id.as_str()).collect();
    for p in presence.values() {
        if p.persistent && !listed.contains(p.client_id.as_str()) {
            rows.push(SessionRow {
                client_id: p.client_id.to_string(),
                online: p.online,
                subscriptions: p.subscriptions as u64,
                queued_messages: 0,
                queued_bytes: 0,
                inflight: 0,
                last_seen: rfc3339(crate::message::now_ms()),
                protocol: String::new(),
                session_expiry_secs: None,
            });
        }
    }
    rows.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Ok(HttpResponse::Ok().json(rows))
}

/// Query of `GET /api/sessions/{id}`.
#[derive(Debug, Deserialize)]
struct ShowQuery {
    after: Option<u64>,
    limit: Option<usize>,
    payload: Option<bool>,
}

#[get("/api/sessions/{id}")]
async fn show_session(
    _: Authorized,
    ctx: Ctx,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let page = Page {
        after: query.after.unwrap_or(0),
        limit: query.limit.unwrap_or(DEFAULT_PAGE),
        payload: query.payload.unwrap_or(false),
    };
    let online = ctx.presence().await?.get(&id).is_some_and(|p| p.online);
    let wanted = id.clone();
    let detail = ctx
        .inspect(move |s| session_detail(s, &wanted, page))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no stored session for client id {id:?}")))?;
    Ok(HttpResponse::Ok().json(SessionDetail { online, ..detail }))
}

#[delete("/api/sessions/{id}")]
async fn delete_session(
    _: Authorized,
    ctx: Ctx,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let wanted = id.clone();
    let stored = ctx
        .inspect(move |s| Ok(s.session(&wanted)?.is_some()))
        .await?;
    let known = ctx
        .router
        .send(DeleteSession {
            client_id: ClientId::new(id.clone()),
        })
        .await??;
    if !(stored || known) {
        return Err(ApiError::NotFound(format!(
            "no session for client id {id:?}"
        )));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": id })))
}

/// Query of `DELETE /api/sessions`.
#[derive(Debug, Deserialize)]
struct ExpiredQuery {
    expired: Option<bool>,
    older_than_secs: Option<u64>,
}

#[delete("/api/sessions")]
async fn delete_expired(
    _: Authorized,
    ctx: Ctx,
    query: web::Query<ExpiredQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.expired != Some(true) {
        return Err(ApiError::BadRequest(
            "only expired sessions can be deleted in bulk: pass expired=true".to_owned(),
        ));
    }
    let deleted = ctx
        .router
        .send(DeleteExpiredSessions {
            older_than_ms: query.older_than_secs.map(|s| s.saturating_mul(1000)),
        })
        .await??;
    Ok(HttpResponse::Ok().json(DeletedSessions {
        deleted: deleted.into_iter().map(|c| c.to_string()).collect(),
    }))
}

/// Query of `GET /api/retained`.
#[derive(Debug, Deserialize)]
struct RetainedQuery {
    filter: Option<String>,
}

#[get("/api/retained")]
async fn list_retained(
    _: Authorized,
    ctx: Ctx,
    query: web::Query<RetainedQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = match query.into_inner().filter.filter(|f| !f.is_empty()) {
        Some(text) => Some(
            TopicFilter::new(text.clone())
                .map_err(|e| ApiError::BadRequest(format!("filter {text:?}: {e}")))?,
        ),
        None => None,
    };
    let messages = ctx.retained.send(ListRetained { filter }).await?;
    let rows: Vec<RetainedRow> = messages.iter().map(|m| retained_row(m)).collect();
    Ok(HttpResponse::Ok().json(rows))
}

/// Reads the password and ACL files and the TLS certificate again, as SIGHUP does:
/// `{"password_file_users": N, "acl_file_rules": M, "certificate_reloaded": B}` (null for a file not
/// configured, false without TLS), or 400 naming the file (and line) of one that cannot be used (that one then
/// stays as it was; the others are still reloaded).
#[post("/api/reload")]
async fn reload(_: Authorized, ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let security = &ctx.security;
    let users = security.password_auth.as_ref().map(|auth| auth.reload());
    let rules = security.acl.as_ref().map(|acl| acl.reload());
    let certificate = ctx.tls.as_ref().map(|tls| tls.reload());
    let failed: Vec<String> = [&users, &rules]
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .chain(
            certificate
                .iter()
                .filter_map(|r| r.as_ref().err().map(ToString::to_string)),
        )
        .collect();
    if !failed.is_empty() {
        return Err(ApiError::BadRequest(failed.join("; ")));
    }
    let count = |r: Option<Result<Option<usize>, _>>| r.and_then(Result::ok).flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "password_file_users": count(users),
        "acl_file_rules": count(rules),
        "certificate_reloaded": certificate.is_some(),
    })))
}

#[delete("/api/retained/{topic:.*}")]
async fn delete_retained(
    _: Authorized,
    ctx: Ctx,
    topic: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let text = topic.into_inner();
    let topic = TopicName::new(text.clone())
        .map_err(|e| ApiError::BadRequest(format!("topic {text:?}: {e}")))?;
    let filter = TopicFilter::new(text.clone()).ok();
    let held = ctx.retained.send(ListRetained { filter }).await?;
    if !held.iter().any(|m| m.topic == topic) {
        return Err(ApiError::NotFound(format!(
            "no retained message on topic {text:?}"
        )));
    }
    ctx.router.send(ClearRetained { topic }).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": text })))
}

#[get("/api/stats")]
async fn stats(_: Authorized, ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let router = ctx.router_stats().await?;
    let retained = ctx.retained.send(CountRetained).await?;
    let (sessions, queues, stored) = ctx
        .inspect(|s| Ok((s.session_count()?, s.queue_totals()?, s.message_count()?)))
        .await?;
    let database_bytes = ctx
        .db_path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let store = ctx.store.stats();
    Ok(HttpResponse::Ok().json(StatsView {
        source: "live".to_owned(),
        connected_clients: Some(router.connected as u64),
        persistent_sessions: sessions,
        subscriptions: router.subscriptions as u64,
        retained_messages: retained as u64,
        messages_in: Some(router.messages_in),
        messages_out: Some(router.messages_out),
        messages_dropped: Some(router.dropped + store.messages_dropped),
        queued_messages: queues.messages,
        queued_bytes: queues.bytes,
        stored_messages: stored,
        database_bytes,
        uptime_secs: Some(ctx.started.elapsed().as_secs()),
    }))
}

#[cfg(test)]
mod token_tests {
    use super::same_token;

    #[test]
    fn only_the_same_token_passes() {
        assert!(same_token("s3cret-token", "s3cret-token"));
        for wrong in ["s3cret-tokem", "s3cret-toke", "s3cret-token!", ""] {
            assert!(!same_token("s3cret-token", wrong), "{wrong:?}");
        }
    }
}
