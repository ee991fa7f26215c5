//! `coordinator backup`, `restore` and `verify`: the store's safety net. Backup runs over
//! gRPC against a serving coordinator, or straight on a stopped one's data directory;
//! restore and verify work on a data directory only (no coordinator may hold it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::CliResult;
use crate::backup::{self, Snapshot};
use crate::client::Client;
use crate::error::{Error, human_bytes};
use crate::scheduler::Scheduler;
use crate::store::{JobStore, SledStore};

/// `FILE.partial`, renamed to FILE once the whole file checks out, so a broken backup
/// never sits under the name asked for.
fn partial(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn finish(partial: &Path, out: &Path, started: Instant) -> CliResult<()> {
    let header = match backup::check(partial) {
        Ok(header) => header,
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            return Err(e.into());
        }
    };
    std::fs::rename(partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {}: {} records, {} checkpoint files, {} in {:.1} s (checked)",
        out.display(),
        header.records,
        header.checkpoints,
        human_bytes(size),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A backup from a serving coordinator.
pub async fn backup_online(client: &mut Client, out: &Path) -> CliResult<()> {
    let started = Instant::now();
    let partial = partial(out);
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let written = client.backup(&mut file).await.and_then(|n| Ok(std::io::Write::flush(&mut file).map(|_| n)?));
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context("the backup did not complete; nothing was written under the requested name"));
    }
    finish(&partial, out, started)
}

/// A backup of a stopped coordinator's data directory.
pub fn backup_offline(data_dir: &Path, out: &Path) -> CliResult<()> {
    let started = Instant::now();
    let store = SledStore::open_existing(data_dir)?;
    let snapshot = Snapshot::take(&store, &data_dir.join(backup::CHECKPOINTS), None)?;
    let partial = partial(out);
    let file = std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    if let Err(e) = snapshot.write(file, now_ms()) {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    finish(&partial, out, started)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn restore(file: &Path, data_dir: &Path) -> CliResult<()> {
    let started = Instant::now();
    let restored = backup::restore(file, data_dir)?;
    println!(
        "restored {} records and {} checkpoint files from {} ({}) into {} in {:.1} s",
        restored.header.records,
        restored.header.checkpoints,
        file.display(),
        human_bytes(restored.bytes),
        data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    // A restore is checked like any store before it is trusted.
    verify(data_dir)
}

/// Decodes every record and runs the cross-record audit; an error (exit code 65) when
/// anything is wrong.
pub fn verify(data_dir: &Path) -> CliResult<()> {
    let started = Instant::now();
    let store = SledStore::open_existing(data_dir)?;
    let size = store.size_on_disk();
    let scheduler = Scheduler::inspect(store);
    let records = scheduler.check_records()?;
    let mut problems = records.problems;
    if problems.is_empty() {
        problems.extend(scheduler.audit()?);
    } else {
        problems.push("(the cross-record audit was skipped: it needs every record readable)".into());
    }
    println!("store {} ({} on disk)", data_dir.display(), human_bytes(size));
    for (tree, entries, bytes) in &records.trees {
        if *entries > 0 {
            println!("  {:<11} {entries:>10} entries  {:>10}", tree.name(), human_bytes(*bytes));
        }
    }
    if problems.is_empty() {
        println!(
            "ok: every record decodes; jobs, leases, re-queue and sweep counters agree ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    for p in &problems {
        println!("problem: {p}");
    }
    Err(Error::Damaged { dir: data_dir.display().to_string(), detail: format!("{} problems found", problems.len()) }
        .into())
}
