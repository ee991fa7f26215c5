//! The data routes: sweep status, the job table, one job, result rows in three formats,
//! workers. Each reads through the scheduler's own queries on a blocking thread, as the
//! gRPC handlers do.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ibsweep_shared::results::MiRow;

use super::{Api, answer, json};
use crate::cli::output;
use crate::ids::{JobId, SweepId};
use crate::parquet::ParquetRows;
use crate::service::sweeps::status_snapshot;
use crate::service::{convert, lanes::blocking};
use crate::store::JobStore;

/// Result rows read per page while a response streams.
const PAGE: usize = 2_000;

/// Jobs per page of `/api/v1/sweeps/{id}/jobs` (the default, and the most).
const JOBS_PAGE: u64 = 1_000;
const JOBS_PAGE_MAX: u64 = 10_000;

pub(super) async fn sweeps<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
    match blocking(&api.scheduler, |s| status_snapshot(s, None)).await {
        Ok(snapshot) => json(output::status_json(&snapshot)),
        Err(status) => answer(status),
    }
}

pub(super) async fn sweep<S: JobStore>(State(api): State<Arc<Api<S>>>, Path(id): Path<String>) -> Response {
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

pub(super) async fn workers<S: JobStore>(State(api): State<Arc<Api<S>>>) -> Response {
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
    Parquet,
}

impl RowFormat {
    fn of(file: &str) -> Option<RowFormat> {
        match file {
            "results.csv" => Some(RowFormat::Csv),
            "results.jsonl" => Some(RowFormat::Jsonl),
            "results.parquet" => Some(RowFormat::Parquet),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            RowFormat::Csv => "text/csv; charset=utf-8",
            RowFormat::Jsonl => "application/x-ndjson",
            RowFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn encoder(self) -> std::io::Result<Encoder> {
        Ok(match self {
            RowFormat::Csv => Encoder::Csv { header: true },
            RowFormat::Jsonl => Encoder::Jsonl,
            RowFormat::Parquet => {
                Encoder::Parquet(Box::new(ParquetRows::new(Vec::new()).map_err(std::io::Error::other)?))
            }
        })
    }
}

/// A response body being encoded page by page: what each page adds, then what ends it
/// (Parquet's footer).
#[derive(Debug)]
enum Encoder {
    Csv { header: bool },
    Jsonl,
    Parquet(Box<ParquetRows<Vec<u8>>>),
}

impl Encoder {
    fn page(&mut self, rows: &[MiRow]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Encoder::Csv { header } => {
                let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out);
                if std::mem::take(header) {
                    writer.write_record(ibsweep_shared::results::CSV_HEADER.split(','))?;
                }
                for row in rows {
                    writer.serialize(row).map_err(std::io::Error::other)?;
                }
                writer.flush()?;
            }
            Encoder::Jsonl => {
                for row in rows {
                    serde_json::to_writer(&mut out, row)?;
                    out.push(b'\n');
                }
            }
            Encoder::Parquet(file) => {
                file.write(rows).map_err(std::io::Error::other)?;
                out = file.take_written().map_err(std::io::Error::other)?;
            }
        }
        Ok(out)
    }

    fn end(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Parquet(file) => file.finish().map_err(std::io::Error::other),
            Encoder::Csv { .. } | Encoder::Jsonl => Ok(Vec::new()),
        }
    }
}

/// Encodes one page off the runtime (a Parquet row group is compressed here), handing the
/// encoder back for the next unless this was the last.
async fn encode(mut encoder: Encoder, rows: Vec<MiRow>, last: bool) -> std::io::Result<(Option<Encoder>, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = encoder.page(&rows)?;
        if last {
            bytes.extend(encoder.end()?);
            return Ok((None, bytes));
        }
        Ok((Some(encoder), bytes))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The format a rows route asks for and the sweep or job it names; or the answer saying
/// which of the two is wrong.
fn rows_request<T: std::str::FromStr<Err = crate::ids::BadId>>(id: &str, file: &str) -> Result<(RowFormat, T), Response> {
    let Some(format) = RowFormat::of(file) else {
        return Err(answer(tonic::Status::not_found(format!(
            "no {file} here: ask for results.csv, results.jsonl or results.parquet"
        ))));
    };
    let id = convert::parse::<T>(id).map_err(answer)?;
    Ok((format, id))
}

pub(super) async fn results<S: JobStore>(
    State(api): State<Arc<Api<S>>>,
    Path((id, file)): Path<(String, String)>,
    Query(filters): Query<Vec<(String, String)>>,
) -> Response {
    let (format, sweep) = match rows_request::<SweepId>(&id, &file) {
        Ok(asked) => asked,
        Err(refused) => return refused,
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
    let mut encoder = match format.encoder() {
        Ok(encoder) => Some(encoder),
        Err(e) => return answer(tonic::Status::internal(format!("cannot start the {file} encoder: {e}"))),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let scheduler = Arc::clone(&api.scheduler);
    tokio::spawn(async move {
        let (mut rows, mut next) = (first.rows, first.next);
        while let Some(current) = encoder.take() {
            let bytes;
            (encoder, bytes) = match encode(current, rows, next.is_none()).await {
                Ok(done) => done,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(bytes)).await.is_err() {
                return; // the client went away
            }
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

/// `?from=N&limit=M` of the jobs route.
#[derive(Debug, serde::Deserialize)]
pub(super) struct JobsQuery {
    #[serde(default)]
    from: u64,
    limit: Option<u64>,
}

/// A job as the API shows it: `status --jobs --json`'s object, its grid columns, and how far
/// a running attempt is.
fn job_json(job: crate::lifecycle::Job, spec: &ibsweep_shared::job::JobSpec) -> serde_json::Value {
    let epoch = match &job.state {
        crate::lifecycle::JobState::Running { epoch_reached, .. } => Some(*epoch_reached),
        _ => None,
    };
    let info = convert::job_info(job, spec);
    let mut value = output::jobs_json(std::slice::from_ref(&info))[0].take();
    let fc: Vec<String> = spec.fc.iter().map(u32::to_string).collect();
    value["spec"] = serde_json::json!({
        "dataset": spec.dataset.as_str(), "width": spec.width, "depth": spec.depth, "kernel": spec.kernel,
        "pooling": spec.pooling.as_str(), "fc": fc.join("-"), "activation": spec.activation.as_str(),
        "seed": spec.seed, "epochs": spec.epochs,
    });
    value["epoch_reached"] = serde_json::json!(epoch);
    value
}

pub(super) async fn jobs<S: JobStore>(
    State(api): State<Arc<Api<S>>>,
    Path(id): Path<String>,
    Query(page): Query<JobsQuery>,
) -> Response {
    let sweep = match convert::parse::<SweepId>(&id) {
        Ok(sweep) => sweep,
        Err(status) => return answer(status),
    };
    let limit = page.limit.unwrap_or(JOBS_PAGE).clamp(1, JOBS_PAGE_MAX) as usize;
    match blocking(&api.scheduler, move |s| s.jobs_page(sweep, page.from, limit)).await {
        Ok((jobs, next)) => json(serde_json::json!({
            "jobs": jobs.into_iter().map(|(job, spec)| job_json(job, &spec)).collect::<Vec<_>>(),
            "next": next,
        })),
        Err(status) => answer(status),
    }
}

pub(super) async fn job<S: JobStore>(State(api): State<Arc<Api<S>>>, Path(id): Path<String>) -> Response {
    let job_id = match convert::parse::<JobId>(&id) {
        Ok(job) => job,
        Err(status) => return answer(status),
    };
    match blocking(&api.scheduler, move |s| s.job_with_spec(job_id)).await {
        Ok((sweep_id, job, spec)) => {
            let mut value = job_json(job, &spec);
            value["sweep_id"] = serde_json::json!(sweep_id.to_string());
            json(value)
        }
        Err(status) => answer(status),
    }
}

/// One job's rows: a finished job's results, or what a running one has measured so far,
/// marked `X-Ibsweep-Provisional: true` (and never part of the sweep's exports).
pub(super) async fn job_results<S: JobStore>(
    State(api): State<Arc<Api<S>>>,
    Path((id, file)): Path<(String, String)>,
    Query(filters): Query<Vec<(String, String)>>,
) -> Response {
    let (format, job_id) = match rows_request::<JobId>(&id, &file) {
        Ok(asked) => asked,
        Err(refused) => return refused,
    };
    let read = blocking(&api.scheduler, move |s| {
        let mut found = s.job_rows(job_id)?;
        let mut kept = Vec::with_capacity(found.rows.len());
        for row in found.rows.drain(..) {
            if crate::scheduler::matches(&row, &filters)? {
                kept.push(row);
            }
        }
        found.rows = kept;
        Ok(found)
    });
    let found = match read.await {
        Ok(found) => found,
        Err(status) => return answer(status),
    };
    let encoded = match format.encoder() {
        Ok(encoder) => encode(encoder, found.rows, true).await,
        Err(e) => Err(e),
    };
    match encoded {
        Ok((_, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
                (
                    header::HeaderName::from_static("x-ibsweep-provisional"),
                    HeaderValue::from_static(if found.provisional { "true" } else { "false" }),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => answer(tonic::Status::internal(format!("cannot encode {file}: {e}"))),
    }
}
