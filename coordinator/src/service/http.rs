//! The read-only HTTP data API (`serve --http-listen ADDR`), for curl, pandas and
//! notebooks: sweep status as JSON, result rows streamed as CSV or JSON lines with the
//! same filters as `coordinator results --where`, and the workers. It reads through the
//! same scheduler queries as the gRPC sweep service (no second path to the store) and is
//! guarded by the same user token, as `Authorization: Bearer TOKEN`.
//!
//! Routes (docs/usage.md, "The HTTP data API"):
//! - `GET /healthz`: open, `ok`, or 503 with the reason while the store refuses writes;
//! - `GET /api/v1/sweeps`, `GET /api/v1/sweeps/{id}`: status JSON (`status --json`'s);
//! - `GET /api/v1/sweeps/{id}/results.csv` and `.jsonl`, filters as query parameters
//!   (`?estimator=binning&layer_name=conv1`); streamed page by page;
//! - `GET /api/v1/workers`: one object per worker.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ibsweep_shared::results::MiRow;
use tokio::net::TcpListener;

use super::sweeps::status_snapshot;
use super::{convert, lanes::blocking};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::ids::SweepId;
use crate::scheduler::Scheduler;
use crate::security::Gate;
use crate::store::JobStore;

/// Result rows read per page while a response streams.
const PAGE: usize = 2_000;

struct Api<S: JobStore> {
    scheduler: Arc<Scheduler<S>>,
}

/// A gRPC status as an HTTP answer: the code's HTTP meaning, the message as text.
fn answer(status: tonic::Status) -> Response {
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

fn json(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], format!("{value}\n")).into_response()
}

/// Every `/api` request shows the user token; a worker token is refused (403).
async fn authorize(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let bearer = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown peer".to_string(), |c| c.0.to_string());
    match gate.check_bearer(bearer.as_deref(), &peer) {
        Ok(()) => next.run(request).await,
        Err(status) => answer(status),
    }
}

async fn healthz<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
    match api.scheduler.write_refusal() {
        None => "ok\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn sweeps<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
    match blocking(&api.scheduler, |s| status_snapshot(s, None)).await {
        Ok(snapshot) => json(output::status_json(&snapshot)),
        Err(status) => answer(status),
    }
}

async fn sweep<S: JobStore>(State(api): State<Arc<Api<S>>>, Path(id): Path<String>) -> Response {
    let sweep = match convert::parse::<SweepId>(&id) {
        Ok(sweep) => sweep,
        Err(status) => return answer(status),
    };
    match blocking(&api.scheduler, move |s| status_snapshot(s, Some(sweep))).await {
        Ok(snapshot) => {
            let mut value = output::status_json(&snapshot);
            json(value["sweeps"][0].take())
        }
        Err(status) => answer(status),
    }
}

async fn workers<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
    match blocking(&api.scheduler, |s| status_snapshot(s, None)).await {
        Ok(snapshot) => json(serde_json::Value::Array(snapshot.workers.iter().map(output::worker_json).collect())),
        Err(status) => answer(status),
    }
}

/// The formats results stream in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowFormat {
    Csv,
    Jsonl,
}

impl RowFormat {
    fn of(file: &str) -> Option<RowFormat> {
        match file {
            "results.csv" => Some(RowFormat::Csv),
            "results.jsonl" => Some(RowFormat::Jsonl),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            RowFormat::Csv => "text/csv; charset=utf-8",
            RowFormat::Jsonl => "application/x-ndjson",
        }
    }

    /// One page's bytes; the CSV header goes with the first.
    fn encode(self, rows: &[MiRow], first: bool) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            RowFormat::Csv => {
                let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out);
                if first {
                    writer.write_record(ibsweep_shared::results::CSV_HEADER.split(','))?;
                }
                for row in rows {
                    writer.serialize(row).map_err(std::io::Error::other)?;
                }
                writer.flush()?;
            }
            RowFormat::Jsonl => {
                for row in rows {
                    serde_json::to_writer(&mut out, row)?;
                    out.push(b'\n');
                }
            }
        }
        Ok(out)
    }
}

async fn results<S: JobStore>(
    State(api): State<Arc<Api<S>>>,
    Path((id, file)): Path<(String, String)>,
    Query(filters): Query<Vec<(String, String)>>,
) -> Response {
    let Some(format) = RowFormat::of(&file) else {
        return answer(tonic::Status::not_found(format!("no {file} here: ask for results.csv or results.jsonl")));
    };
    let sweep = match convert::parse::<SweepId>(&id) {
        Ok(sweep) => sweep,
        Err(status) => return answer(status),
    };
    let filters = Arc::new(filters);
    // The first page is read before answering, so an unknown sweep or column is a 4xx.
    let first = {
        let filters = Arc::clone(&filters);
        blocking(&api.scheduler, move |s| s.results_page(sweep, &filters, None, PAGE)).await
    };
    let first = match first {
        Ok(page) => page,
        Err(status) => return answer(status),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let scheduler = Arc::clone(&api.scheduler);
    tokio::spawn(async move {
        let (mut rows, mut next, mut first_page) = (first.rows, first.next, true);
        loop {
            if tx.send(format.encode(&rows, first_page)).await.is_err() {
                return; // the client went away
            }
            first_page = false;
            let Some(after) = next else { return };
            let filters = Arc::clone(&filters);
            match blocking(&scheduler, move |s| s.results_page(sweep, &filters, Some(&after), PAGE)).await {
                Ok(page) => (rows, next) = (page.rows, page.next),
                Err(status) => {
                    let _ = tx.send(Err(std::io::Error::other(status.message().to_string()))).await;
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Serves the data API on `listener` until `shutdown` completes.
pub async fn serve_http<S: JobStore>(
    listener: TcpListener,
    scheduler: Arc<Scheduler<S>>,
    gate: Gate,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let api = Arc::new(Api { scheduler });
    let routes = axum::Router::new()
        .route("/api/v1/sweeps", get(sweeps::<S>))
        .route("/api/v1/sweeps/{id}", get(sweep::<S>))
        .route("/api/v1/sweeps/{id}/{file}", get(results::<S>))
        .route("/api/v1/workers", get(workers::<S>))
        .route_layer(middleware::from_fn_with_state(gate, authorize))
        .route("/healthz", get(healthz::<S>))
        .with_state(api);
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("HTTP data API on http://{addr}/api/v1/");
    axum::serve(listener, routes.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Store(format!("HTTP server: {e}")))
}
