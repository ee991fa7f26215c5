//! The read-only HTTP data API (`serve --http-listen ADDR`), for curl, pandas and
//! notebooks: sweep status as JSON, result rows streamed as CSV or JSON lines with the
//! same filters as `coordinator results --where`, and the workers. It reads through the
//! same scheduler queries as the gRPC sweep service (no second path to the store) and is
//! guarded by the same user token, as `Authorization: Bearer TOKEN`.
//!
//! Routes (docs/usage.md, "The HTTP data API"):
//! - `GET /healthz`: open, `ok`, or 503 with the reason while the store refuses writes;
//! - `GET /api/v1/sweeps`, `GET /api/v1/sweeps/{id}`: status JSON (`status --json`'s);
//! - `GET /api/v1/sweeps/{id}/results.csv`, `.jsonl` and `.parquet`, filters as query
//!   parameters (`?estimator=binning&layer_name=conv1`); streamed page by page (Parquet in
//!   row groups of `parquet::ROW_GROUP` rows);
//! - `GET /api/v1/sweeps/{id}/jobs?from=N&limit=M`: the job table, a page at a time;
//! - `GET /api/v1/jobs/{id}` and `/api/v1/jobs/{id}/results.csv|jsonl|parquet`: one job,
//!   and its rows (provisional while it runs: `X-Ibsweep-Provisional: true`);
//! - `GET /api/v1/workers`: one object per worker;
//! - `GET /api/v1/events[?sweep=ID]`: server-sent events naming what changed.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::scheduler::Scheduler;
use crate::security::Gate;
use crate::store::JobStore;

mod aggregate;
mod api;
mod dashboard;
mod live;

pub use live::MAX_EVENT_STREAMS;

/// What every handler reads through.
struct Api<S: JobStore> {
    scheduler: Arc<Scheduler<S>>,
    streams: Arc<tokio::sync::Semaphore>,
    /// Ends every event stream when the server shuts down (the sender is dropped then).
    stopping: tokio::sync::watch::Receiver<()>,
    aggregates: aggregate::Cache,
}

/// A gRPC status as an HTTP answer: the code's HTTP meaning, the message as text.
pub(super) fn answer(status: tonic::Status) -> Response {
    use tonic::Code;
    let code = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::FailedPrecondition => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (code, format!("{}\n", status.message())).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub(super) fn json(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], format!("{value}\n")).into_response()
}

/// The credentials a request shows: its `Authorization` header, else the dashboard's
/// login cookie as that header.
fn presented(request: &Request) -> Option<String> {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    header.map(str::to_string).or_else(|| dashboard::cookie_token(request.headers()).map(|t| format!("Bearer {t}")))
}

/// Every API route and page needs the user token; a worker token is refused (403). An API
/// call without it gets the reason as text; a page gets the login form (a browser shows an
/// empty 401 as its own error page, on which no cookie can be set).
async fn authorize(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown peer".to_string(), |c| c.0.to_string());
    match gate.check_bearer(presented(&request).as_deref(), &peer) {
        Ok(()) => next.run(request).await,
        Err(status) if request.uri().path().starts_with("/api/") => answer(status),
        Err(status) => dashboard::login_page(status.code(), status.message(), request.uri()),
    }
}

async fn healthz<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
    match api.scheduler.write_refusal() {
        None => "ok\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Serves the data API on `listener` until `shutdown` completes.
pub async fn serve_http<S: JobStore>(
    listener: TcpListener,
    scheduler: Arc<Scheduler<S>>,
    gate: Gate,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(());
    let state = Arc::new(Api {
        scheduler,
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
        stopping,
        aggregates: aggregate::Cache::default(),
    });
    let shutdown = async move {
        shutdown.await;
        drop(stop); // every event stream ends, so the graceful shutdown can finish
    };
    let routes = axum::Router::new()
        .route("/api/v1/sweeps", get(api::sweeps::<S>))
        .route("/api/v1/sweeps/{id}", get(api::sweep::<S>))
        .route("/api/v1/sweeps/{id}/jobs", get(api::jobs::<S>))
        .route("/api/v1/sweeps/{id}/{file}", get(api::results::<S>))
        .route("/api/v1/jobs/{id}", get(api::job::<S>))
        .route("/api/v1/jobs/{id}/{file}", get(api::job_results::<S>))
        .route("/api/v1/workers", get(api::workers::<S>))
        .route("/api/v1/sweeps/{id}/aggregate", get(aggregate::route::<S>))
        .route("/api/v1/events", get(live::events::<S>))
        .route("/", get(dashboard::page))
        .route("/sweeps/{id}", get(dashboard::page))
        .route("/jobs/{id}", get(dashboard::page))
        .route("/workers", get(dashboard::page))
        .route_layer(middleware::from_fn_with_state(gate.clone(), authorize))
        .route("/login", get(dashboard::login_form).post(dashboard::login).with_state(gate))
        .route("/logout", axum::routing::post(dashboard::logout))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/healthz", get(healthz::<S>))
        .with_state(state);
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("dashboard on http://{addr}/, HTTP data API on http://{addr}/api/v1/");
    axum::serve(listener, routes.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Store(format!("HTTP server: {e}")))
}
