//! `coordinator cancel SWEEP`, `coordinator retry SWEEP --failed`, `coordinator workers`.

use super::output;
use crate::client::{Client, ClientResult};

pub async fn cancel(client: &mut Client, sweep: &str) -> ClientResult<()> {
    let cancelled = client.cancel(sweep).await?;
    println!("sweep {sweep}: {cancelled} jobs cancelled (running ones stop at their next heartbeat)");
    Ok(())
}

pub async fn retry(client: &mut Client, sweep: &str) -> ClientResult<()> {
    let requeued = client.retry_failed(sweep).await?;
    println!("sweep {sweep}: {requeued} failed jobs re-queued");
    Ok(())
}

pub async fn workers(client: &mut Client, url: &str, json: bool) -> ClientResult<()> {
    let r = client.workers().await?;
    if json {
        for w in &r.workers {
            println!("{}", output::worker_json(w));
        }
    } else if r.workers.is_empty() {
        println!("no workers have registered; start one with `worker --coordinator {url}`");
    } else {
        for w in &r.workers {
            println!("{}", output::worker_line(w, r.now_ms));
        }
    }
    Ok(())
}
