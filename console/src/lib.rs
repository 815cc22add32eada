//! Strata's web console: the runs (with live progress where the scheduler serves it),
//! the pipeline's DAG, table pages, column lineage and the cluster, read-only, behind
//! the Flight SQL server's users. One page of plain HTML, CSS and JavaScript over a
//! small JSON API; served by the scheduler and by `strata console`.

mod error;
mod login;
mod pipelines;
mod runs;
mod tables;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_flightsql::User;
use strata_language::Sources;
use strata_storage::Warehouse;
use strata_storage::audit::{AuditLog, AuditRecord};
use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::login::{COOKIE, Login};

/// A JSON snapshot the host process supplies (the scheduler's cluster, its live runs).
pub type Feed = Arc<dyn Fn() -> Value + Send + Sync>;

/// A pipeline the console draws and works out lineage for.
pub struct Pipeline {
    pub name: String,
    pub sources: Sources,
}

/// What the console shows, and to whom.
pub struct ConsoleOptions {
    pub warehouse: Warehouse,
    pub pipelines: Vec<Pipeline>,
    /// The Flight SQL server's users; none leaves the console open (loopback only).
    pub users: Vec<User>,
    /// Serve an open console on an address others can reach.
    pub insecure: bool,
    /// The cluster's executors and the autoscaler's decisions, when a scheduler serves it.
    pub cluster: Option<Feed>,
    /// Runs under way with each table's progress, when a scheduler serves it.
    pub live: Option<Feed>,
}

/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(8 * 3600);

struct Console {
    warehouse: Warehouse,
    pipelines: Vec<Pipeline>,
    login: Login,
    cluster: Option<Feed>,
    live: Option<Feed>,
    /// Where the table pages' queries are recorded.
    audit: AuditLog,
}

/// How long a stopping console waits for its last audit records to be committed.
const AUDIT_PATIENCE: Duration = Duration::from_secs(10);

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    options: ConsoleOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener.local_addr().map_err(|source| Error::Serve {
        address: "?".to_owned(),
        source,
    })?;
    check_open(address, &options)?;
    let (audit, audit_writer) = AuditLog::start(options.warehouse.clone());
    let console = Arc::new(Console {
        warehouse: options.warehouse,
        pipelines: options.pipelines,
        login: Login::new(options.users, SESSION)?,
        cluster: options.cluster,
        live: options.live,
        audit,
    });
    axum::serve(listener, router(console))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve {
            address: address.to_string(),
            source,
        })?;
    // The console is gone: the pages it recorded are committed before the end.
    if tokio::time::timeout(AUDIT_PATIENCE, audit_writer)
        .await
        .is_err()
    {
        tracing::warn!("the audit trail's last records were not committed in time");
    }
    Ok(())
}

/// An open console (no users) only on loopback, unless told otherwise.
pub fn check_open(address: SocketAddr, options: &ConsoleOptions) -> Result<()> {
    if options.users.is_empty() && !address.ip().is_loopback() && !options.insecure {
        return Err(Error::Unauthenticated(address.to_string()));
    }
    Ok(())
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route("/app.js", get(|| async { page(SCRIPT, "text/javascript") }))
        .route("/style.css", get(|| async { page(STYLE, "text/css") }))
        .route("/api/login", post(log_in))
        .route("/api/logout", post(log_out))
        .route("/api/me", get(me))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(one_run))
        .route("/api/pipelines", get(list_pipelines))
        .route("/api/tables/{name}", get(table_page))
        .route("/api/lineage/{name}", get(table_lineage))
        .route("/api/cluster", get(cluster))
        .with_state(console)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": "log in first" })),
    )
        .into_response()
}

/// The logged-in user, if any (anyone, when the console is open).
fn user(console: &Console, headers: &HeaderMap) -> Option<String> {
    if console.login.is_open() {
        return Some("anonymous".to_owned());
    }
    headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(login::token)
        .and_then(|token| console.login.user(token))
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn log_in(
    State(console): State<Arc<Console>>,
    axum::Json(credentials): axum::Json<Credentials>,
) -> Response {
    match console
        .login
        .log_in(&credentials.user, &credentials.password)
    {
        Some(token) => (
            [(
                header::SET_COOKIE,
                format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
            )],
            axum::Json(json!({ "user": credentials.user })),
        )
            .into_response(),
        None => {
            tracing::warn!("console: a failed login as {:?}", credentials.user);
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "error": "wrong user or password" })),
            )
                .into_response()
        }
    }
}

async fn log_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(token) = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(login::token)
    {
        console.login.log_out(token);
    }
    axum::Json(json!({})).into_response()
}

async fn me(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match user(&console, &headers) {
        Some(user) => axum::Json(json!({
            "user": user,
            "open": console.login.is_open(),
            "warehouse": console.warehouse.to_string(),
            "served_by": if console.cluster.is_some() { "scheduler" } else { "strata console" },
        }))
        .into_response(),
        None => unauthorized(),
    }
}

/// Runs a handler for a logged-in user.
async fn guarded<F, Fut>(console: Arc<Console>, headers: HeaderMap, answer: F) -> Response
where
    F: FnOnce(Arc<Console>) -> Fut,
    Fut: Future<Output = Result<Value>>,
{
    if user(&console, &headers).is_none() {
        return unauthorized();
    }
    match answer(console).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn list_runs(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    guarded(console, headers, |console| async move {
        let live = console.live.as_ref().map(|feed| feed());
        runs::list(&console.warehouse, live).await
    })
    .await
}

async fn one_run(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    guarded(console, headers, |console| async move {
        let live = console.live.as_ref().map(|feed| feed());
        runs::one(&console.warehouse, &id, live).await
    })
    .await
}

async fn list_pipelines(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    guarded(console, headers, |console| async move {
        pipelines::list(&console.warehouse, &console.pipelines).await
    })
    .await
}

/// A table's page, whose sample rows are recorded in the audit trail as a query.
async fn table_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(user) = user(&console, &headers) else {
        return unauthorized();
    };
    let started = Instant::now();
    let viewer = console.login.viewer(&user);
    let mut record = AuditRecord::begin(
        &user,
        viewer.role.clone(),
        "console",
        &tables::sample_sql(&name),
    );
    let page = tables::page(&console.warehouse, &name, &viewer).await;
    match &page {
        Ok(page) => {
            record.tables = vec![name.clone()];
            record.columns = page["schema"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|field| field["name"].as_str())
                .map(|column| format!("{name}.{column}"))
                .collect();
            record.columns.sort();
            record.rows = page["sample"].as_array().map_or(0, Vec::len) as u64;
            record.status = "ok".to_owned();
        }
        Err(error) => {
            record.status = "error".to_owned();
            record.error = Some(error.to_string());
        }
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    console.audit.record(record);
    match page {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn table_lineage(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    guarded(console, headers, |console| async move {
        pipelines::lineage(&console.warehouse, &console.pipelines, &name).await
    })
    .await
}

async fn cluster(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    guarded(console, headers, |console| async move {
        Ok(match &console.cluster {
            Some(feed) => feed(),
            None => json!({ "mode": "embedded" }),
        })
    })
    .await
}
