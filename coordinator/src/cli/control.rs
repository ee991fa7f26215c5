//! `coordinator cancel SWEEP`, `coordinator retry SWEEP --failed`, `coordinator workers`,
//! `coordinator checkpoint JOB --out FILE`.

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

/// Writes to `FILE.partial` and renames once the digest matched, so a damaged download
/// never sits under the requested name.
pub async fn checkpoint(client: &mut Client, job: &str, out: &std::path::Path) -> ClientResult<()> {
    use anyhow::Context;
    let partial = out.with_extension("partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let meta = match client.checkpoint(job, &mut file).await {
        Ok(meta) => meta,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::io::Write::flush(&mut file)?;
    drop(file);
    std::fs::rename(&partial, out).with_context(|| format!("cannot rename to {}", out.display()))?;
    println!(
        "job {job}: checkpoint at epoch {} ({} bytes, sha256 {}) written to {}",
        meta.epoch,
        meta.size,
        meta.sha256,
        out.display()
    );
    Ok(())
}
