//! The live feed, `GET /api/v1/events`: server-sent events from the scheduler's
//! [`EventBus`](crate::scheduler::EventBus), coalesced, bounded in number, and ended when
//! the server stops.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::{Api, answer};
use crate::ids::SweepId;
use crate::scheduler::Event;
use crate::service::convert;
use crate::store::JobStore;

/// Open event streams at once; more are answered 503. Timeouts and concurrency limits
/// wrap only a response's future, never its body, so a stream that outlives them is
/// bounded here.
pub const MAX_EVENT_STREAMS: usize = 256;

/// Events gathered before a stream sends them, each once: a running job stages a layer's
/// histogram per split and bin size, and a page needs to hear about its epoch only once.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(250);

/// `?sweep=ID` of the event stream.
#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    sweep: Option<String>,
}

/// The live feed: server-sent events naming what changed (`measured`, `job`, `sweep`; a
/// `lagged` event when this stream fell behind and should read everything again), at
/// most one of each every [`COALESCE`], optionally for one sweep.
pub(super) async fn events<S: JobStore>(State(api): State<Arc<Api<S>>>, Query(query): Query<EventsQuery>) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let only = match query.sweep.as_deref().map(convert::parse::<SweepId>).transpose() {
        Ok(only) => only,
        Err(status) => return answer(status),
    };
    let Ok(permit) = Arc::clone(&api.streams).try_acquire_owned() else {
        return answer(tonic::Status::unavailable(format!(
            "{MAX_EVENT_STREAMS} event streams are open already; close one, or poll instead"
        )));
    };
    let mut heard = api.scheduler.events().subscribe();
    let mut stopping = api.stopping.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Sse, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let wanted = |e: &Event| only.is_none_or(|sweep| e.sweep_id() == sweep);
        loop {
            let mut batch = std::collections::BTreeSet::new();
            let mut missed = 0;
            let mut gather = |heard: Result<Event, RecvError>| match heard {
                Ok(event) if wanted(&event) => {
                    batch.insert(event);
                    true
                }
                Ok(_) => true,
                Err(RecvError::Lagged(n)) => {
                    missed += n;
                    true
                }
                Err(RecvError::Closed) => false,
            };
            let first = tokio::select! {
                _ = tx.closed() => return,
                _ = stopping.changed() => return,
                heard = heard.recv() => heard,
            };
            if !gather(first) {
                return;
            }
            let window = tokio::time::sleep(COALESCE);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    heard = heard.recv() => if !gather(heard) { return },
                }
            }
            let mut out: Vec<Sse> = Vec::with_capacity(batch.len() + 1);
            if missed > 0 {
                out.push(Sse::default().event("lagged").data(format!("{{\"kind\":\"lagged\",\"missed\":{missed}}}")));
            }
            for event in &batch {
                match serde_json::to_string(event) {
                    Ok(data) => out.push(Sse::default().event(event.name()).data(data)),
                    Err(e) => tracing::warn!("an event did not serialize: {e}"),
                }
            }
            for sse in out {
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
            }
        }
    });
    axum::response::sse::Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
