//! Everything the commands print, in one place: status text and JSON, result tables and
//! files, worker lines. Pure functions of the responses, so they are tested without a server.

use std::io::Write;

use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::grid::canonical_job;
use ibsweep_shared::job::JobSpec;
use ibsweep_shared::results::{Axis, CsvWriter, MiRow};

use super::Format;
use crate::lifecycle::AttemptRecord;

/// Rows whose workers were silent this long are not shown by `--watch`.
pub const GONE_MS: u64 = 300_000;

pub fn threads(n: u32) -> String {
    if n == 1 { "1 thread".into() } else { format!("{n} threads") }
}

pub fn age(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    if s < 120 { format!("{s}s ago") } else { format!("{}m ago", s / 60) }
}

/// ", ETA N s" from the mean duration of finished jobs and the workers busy now; empty
/// before the first job finishes or once nothing is left.
pub fn eta(s: &pb::SweepStatus, status: &pb::StatusResponse) -> String {
    let c = s.counts.unwrap_or_default();
    if s.mean_job_seconds <= 0.0 || c.pending + c.running == 0 {
        return String::new();
    }
    let busy = status.workers.iter().filter(|w| !w.job_id.is_empty()).count().max(1) as f64;
    format!(", ETA {:.0} s", s.mean_job_seconds * (c.pending + c.running) as f64 / busy)
}

/// Human-readable status (the same text `status --watch` repeats).
pub fn render_status(status: &pb::StatusResponse) -> String {
    let mut out = String::new();
    if !status.store_problem.is_empty() {
        out += &format!("STORE: writes refused: {}\n", status.store_problem);
    }
    if status.sweeps.is_empty() {
        out += "no sweeps; submit one with `coordinator submit GRID.yaml`\n";
    }
    for s in &status.sweeps {
        let c = s.counts.unwrap_or_default();
        let finished = c.done + c.failed + c.cancelled;
        let eta = eta(s, status);
        out += &format!(
            "sweep {} ({}){}: {}/{} finished: {} done, {} running, {} pending, {} failed, {} cancelled{eta}\n",
            s.sweep_id,
            s.name,
            if s.cancelled { " [cancelled]" } else { "" },
            finished,
            s.total,
            c.done,
            c.running,
            c.pending,
            c.failed,
            c.cancelled,
        );
        for r in &s.running {
            out += &format!("  {}\n", running_line(r, status.now_ms));
            for h in &r.history {
                out += &format!("    {h}\n");
            }
        }
        for f in &s.failures {
            out += &format!("  failed job {} {}\n", f.job_id, params(f.spec.as_ref()));
            for r in &f.reasons {
                out += &format!("    {r}\n");
            }
        }
    }
    if !status.workers.is_empty() {
        out += "workers:\n";
        for w in &status.workers {
            let job =
                if w.job_id.is_empty() { "idle".to_string() } else { format!("job {} epoch {}", w.job_id, w.epoch) };
            out += &format!(
                "  {} ({}): {job}, last seen {}\n",
                w.name,
                threads(w.threads),
                age(status.now_ms, w.last_seen_ms)
            );
        }
    }
    out
}

/// A job's parameters as one line (the grid's canonical JSON); empty when unknown.
fn params(spec: Option<&pb::JobSpec>) -> String {
    spec.and_then(|s| JobSpec::try_from(s.clone()).ok()).map(|s| canonical_job(&s)).unwrap_or_default()
}

fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state).unwrap_or(pb::JobState::Unspecified) {
        pb::JobState::Pending => "pending",
        pb::JobState::Running => "running",
        pb::JobState::Done => "done",
        pb::JobState::Failed => "failed",
        pb::JobState::Cancelled => "cancelled",
        pb::JobState::Unspecified => "unknown",
    }
}

/// One attempt as a person reads it, in the words of the job's history.
pub fn attempt_line(a: &pb::Attempt) -> String {
    AttemptRecord {
        number: a.number,
        worker: a.worker.clone(),
        start_epoch: a.start_epoch,
        end_epoch: a.end_epoch,
        ended: a.ended.clone(),
        counted: a.counted,
        ended_ms: a.ended_ms,
    }
    .to_string()
}

/// `status SWEEP --jobs`: every job, its state and parameters, then one line per attempt.
pub fn render_jobs(jobs: &[pb::JobInfo]) -> String {
    let mut out = String::new();
    for j in jobs {
        let checkpoint = j.checkpoint_epoch.map(|e| format!(", checkpoint at epoch {e}")).unwrap_or_default();
        out += &format!(
            "job {} #{} {}{checkpoint}: {}\n",
            j.job_id,
            j.index,
            state_name(j.state),
            params(j.spec.as_ref())
        );
        for a in &j.attempts {
            out += &format!("  {}\n", attempt_line(a));
        }
    }
    out
}

/// `status SWEEP --jobs --json`: one object per job.
pub fn jobs_json(jobs: &[pb::JobInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        jobs.iter()
            .map(|j| {
                serde_json::json!({
                    "job_id": j.job_id, "index": j.index, "state": state_name(j.state),
                    "params": params(j.spec.as_ref()), "checkpoint_epoch": j.checkpoint_epoch,
                    "attempts": j.attempts.iter().map(|a| serde_json::json!({
                        "attempt": a.number, "worker": a.worker, "start_epoch": a.start_epoch,
                        "end_epoch": a.end_epoch, "ended": a.ended, "counted": a.counted, "ended_ms": a.ended_ms,
                    })).collect::<Vec<_>>(),
                    "history": j.history,
                })
            })
            .collect(),
    )
}

/// One running job: who, which attempt, where it started, how far it is, its checkpoint.
pub fn running_line(r: &pb::RunningJob, now_ms: u64) -> String {
    let started =
        if r.start_epoch == 0 { "from scratch".to_string() } else { format!("resumed at epoch {}", r.start_epoch) };
    let checkpoint = match r.checkpoint_epoch {
        Some(epoch) => format!("checkpoint at epoch {epoch} ({})", age(now_ms, r.checkpoint_ms)),
        None => "no checkpoint yet".to_string(),
    };
    format!(
        "running job {} on {}: attempt {} {started}, at epoch {}, {checkpoint}",
        r.job_id, r.worker, r.attempt, r.epoch
    )
}

fn running_json(r: &pb::RunningJob, now_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "job_id": r.job_id, "worker": r.worker, "attempt": r.attempt, "start_epoch": r.start_epoch,
        "epoch": r.epoch, "checkpoint_epoch": r.checkpoint_epoch,
        "checkpoint_age_s": r.checkpoint_epoch.map(|_| now_ms.saturating_sub(r.checkpoint_ms) / 1000),
        "history": r.history,
    })
}

/// One column of the `--format table` view.
struct Column {
    name: &'static str,
    width: usize,
    left: bool,
    cell: Box<dyn Fn(&MiRow) -> String>,
}

impl Column {
    fn new(name: &'static str, width: usize, left: bool, cell: impl Fn(&MiRow) -> String + 'static) -> Column {
        Column { name, width, left, cell: Box::new(cell) }
    }

    fn pad(&self, text: &str) -> String {
        let width = self.width;
        if self.left { format!("{text:<width$}") } else { format!("{text:>width$}") }
    }
}

/// The `--format table` view: the architecture axes (named by [`Axis`], as in plots), then
/// where the row was measured and its numbers.
pub fn table(rows: &[MiRow]) -> String {
    let mut columns = vec![Column::new("job", 8, true, |r| r.job_id.chars().take(8).collect())];
    for (axis, width) in
        [(Axis::Dataset, 13), (Axis::Width, 5), (Axis::Depth, 5), (Axis::Kernel, 6), (Axis::Pooling, 7), (Axis::Fc, 12)]
    {
        let left = matches!(axis, Axis::Dataset | Axis::Pooling | Axis::Fc);
        columns.push(Column::new(axis.name(), width, left, move |r| axis.value(r)));
    }
    columns.extend([
        Column::new("seed", 4, false, |r| r.seed.to_string()),
        Column::new("epoch", 5, false, |r| r.epoch.to_string()),
        Column::new("split", 5, true, |r| r.split.as_str().to_string()),
        Column::new("layer", 8, true, |r| r.layer_name.clone()),
        Column::new("estimator", 9, true, |r| r.estimator.as_str().to_string()),
        Column::new("bin", 5, false, |r| r.bin_size.map_or_else(String::new, |b| b.to_string())),
        Column::new("n", 7, false, |r| r.n.to_string()),
        Column::new("I(X;T)", 9, false, |r| r.i_xt.map_or_else(String::new, |v| format!("{v:.4}"))),
        Column::new("I(Y;T)", 9, false, |r| format!("{:.4}", r.i_yt)),
        Column::new("loss", 8, false, |r| format!("{:.4}", r.loss)),
        Column::new("acc", 6, false, |r| format!("{:.3}", r.accuracy)),
    ]);
    let line =
        |text: &dyn Fn(&Column) -> String| columns.iter().map(|c| c.pad(&text(c))).collect::<Vec<_>>().join(" ") + "\n";
    let mut out = line(&|c| c.name.to_string());
    for r in rows {
        out += &line(&|c| (c.cell)(r));
    }
    out + "(bits)\n"
}

pub fn write_rows(rows: &[MiRow], format: Format, mut out: Box<dyn Write>) -> anyhow::Result<()> {
    match format {
        Format::Table => write!(out, "{}", table(rows))?,
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        Format::Csv if rows.is_empty() => writeln!(out, "{}", ibsweep_shared::results::CSV_HEADER)?,
        Format::Csv => {
            let mut csv = CsvWriter::new(&mut out);
            for row in rows {
                csv.write(row)?;
            }
            csv.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn status_json(r: &pb::StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "sweeps": r.sweeps.iter().map(|s| {
            let c = s.counts.unwrap_or_default();
            serde_json::json!({
                "sweep_id": s.sweep_id, "name": s.name, "total": s.total, "cancelled": s.cancelled,
                "pending": c.pending, "running": c.running, "done": c.done, "failed": c.failed, "cancelled_jobs": c.cancelled,
                "mean_job_seconds": s.mean_job_seconds,
                "failures": s.failures.iter().map(|f| serde_json::json!({"job_id": f.job_id, "params": params(f.spec.as_ref()), "reasons": f.reasons})).collect::<Vec<_>>(),
                "running_jobs": s.running.iter().map(|j| running_json(j, r.now_ms)).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
        "workers": r.workers.iter().map(|w| serde_json::json!({"worker_id": w.worker_id, "name": w.name, "job_id": w.job_id, "epoch": w.epoch, "last_seen_ms": w.last_seen_ms})).collect::<Vec<_>>(),
        "store_problem": (!r.store_problem.is_empty()).then_some(&r.store_problem),
    })
}

/// One line of `workers` for a person.
pub fn worker_line(w: &pb::WorkerInfo, now_ms: u64) -> String {
    let job = if w.job_id.is_empty() { "idle".into() } else { format!("job {} epoch {}", w.job_id, w.epoch) };
    format!(
        "{} {} ({}): {job}, last heartbeat {}",
        w.worker_id,
        w.name,
        threads(w.threads),
        age(now_ms, w.last_seen_ms)
    )
}

/// One JSON line of `workers --json`.
pub fn worker_json(w: &pb::WorkerInfo) -> serde_json::Value {
    serde_json::json!({"worker_id": w.worker_id, "name": w.name, "job_id": w.job_id, "epoch": w.epoch, "threads": w.threads, "last_seen_ms": w.last_seen_ms})
}

/// The plain (no terminal) form of a `--watch` snapshot: one line per sweep with its workers.
pub fn watch_lines(snapshot: &pb::StatusResponse) -> Vec<String> {
    let live: Vec<&pb::WorkerInfo> =
        snapshot.workers.iter().filter(|w| snapshot.now_ms.saturating_sub(w.last_seen_ms) < GONE_MS).collect();
    // Each sweep's line names the workers on its jobs; idle workers get a line of their own.
    let mut lines: Vec<String> = render_status(&pb::StatusResponse { workers: vec![], ..snapshot.clone() })
        .lines()
        .filter(|l| l.starts_with("sweep "))
        .zip(&snapshot.sweeps)
        .map(|(line, sweep)| {
            let on_it: Vec<String> = live
                .iter()
                .filter(|w| !w.job_id.is_empty() && sweep.running.iter().any(|r| r.job_id == w.job_id))
                .map(|w| format!("{} epoch {}", w.name, w.epoch))
                .collect();
            if on_it.is_empty() { line.to_string() } else { format!("{line} | {}", on_it.join(", ")) }
        })
        .collect();
    let idle: Vec<&str> = live.iter().filter(|w| w.job_id.is_empty()).map(|w| w.name.as_str()).collect();
    if !idle.is_empty() {
        lines.push(format!("idle workers: {}", idle.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_under_its_header() {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "dataset": "fashion-mnist", "width": 3, "depth": 5, "kernel": 3, "fc": [500, 1024, 500], "epochs": 1,
        }))
        .unwrap();
        let e = ibsweep_shared::measure::Estimate {
            n: 10000,
            distinct: 9000,
            h_t: 13.0,
            i_xt: 13.0,
            h_t_given_y: 10.5,
            i_yt: 2.5,
            h_y: 3.3,
        };
        let key = ibsweep_shared::results::Measurement {
            epoch: 20,
            split: ibsweep_shared::job::Split::Test,
            layer: 2,
            layer_name: "conv2".into(),
            bin_size: 0.67,
            loss: 0.3,
            accuracy: 0.9,
        };
        let text = table(&[MiRow::new("s", "0123456789ab", &spec, &key, &e)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "job      dataset       width depth kernel pooling fc           seed epoch split layer    estimator   bin       n    I(X;T)    I(Y;T)     loss    acc"
        );
        assert_eq!(
            lines[1],
            "01234567 fashion-mnist     3     5      3 none    500-1024-500    0    20 test  conv2    binning    0.67   10000   13.0000    2.5000   0.3000  0.900"
        );
        assert_eq!(lines[2], "(bits)");
    }

    fn snapshot() -> pb::StatusResponse {
        pb::StatusResponse {
            sweeps: vec![pb::SweepStatus {
                sweep_id: "s1".into(),
                name: "demo".into(),
                total: 4,
                counts: Some(pb::StateCounts { pending: 1, running: 1, done: 2, failed: 0, cancelled: 0 }),
                mean_job_seconds: 10.0,
                failures: vec![pb::Failure { job_id: "j".into(), spec: None, reasons: vec!["boom".into()] }],
                created_ms: 0,
                cancelled: false,
                running: vec![pb::RunningJob {
                    job_id: "abcdef0123".into(),
                    worker: "node1".into(),
                    attempt: 2,
                    start_epoch: 24,
                    epoch: 30,
                    checkpoint_epoch: Some(24),
                    checkpoint_ms: 4_000,
                    history: vec!["attempt 1 on node0: started at epoch 0, reached epoch 26: lease expired".into()],
                }],
            }],
            workers: vec![pb::WorkerInfo {
                worker_id: "w".into(),
                name: "node1".into(),
                job_id: "abcdef0123".into(),
                last_seen_ms: 9_000,
                threads: 1,
                epoch: 3,
            }],
            store_problem: String::new(),
            now_ms: 10_000,
        }
    }

    #[test]
    fn status_text_json_and_watch_lines() {
        let s = snapshot();
        let text = render_status(&s);
        assert!(
            text.contains(
                "sweep s1 (demo): 2/4 finished: 2 done, 1 running, 1 pending, 0 failed, 0 cancelled, ETA 20 s"
            ),
            "{text}"
        );
        assert!(
            text.contains("    boom") && text.contains("node1 (1 thread): job abcdef0123 epoch 3, last seen 1s ago"),
            "{text}"
        );
        let json = status_json(&s);
        assert_eq!(json["sweeps"][0]["pending"], 1);
        assert_eq!(json["workers"][0]["epoch"], 3);
        assert_eq!(watch_lines(&s), vec![format!("{} | node1 epoch 3", text.lines().next().unwrap())]);
        // A sweep nobody works on names no worker; idle workers get their own line.
        let mut two = s.clone();
        two.sweeps.push(pb::SweepStatus {
            sweep_id: "s2".into(),
            name: "other".into(),
            total: 1,
            ..Default::default()
        });
        two.workers.push(pb::WorkerInfo { name: "node2".into(), last_seen_ms: s.now_ms, ..Default::default() });
        let lines = watch_lines(&two);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].ends_with("| node1 epoch 3") && !lines[1].contains('|'), "{lines:?}");
        assert_eq!(lines[2], "idle workers: node2");
        assert!(worker_line(&s.workers[0], s.now_ms).contains("job abcdef0123 epoch 3, last heartbeat 1s ago"));
        assert_eq!(worker_json(&s.workers[0])["name"], "node1");
        assert!(render_status(&pb::StatusResponse::default()).contains("no sweeps"));
        assert!(
            text.contains(
                "running job abcdef0123 on node1: attempt 2 resumed at epoch 24, at epoch 30, checkpoint at epoch 24 (6s ago)"
            ) && text.contains("    attempt 1 on node0: started at epoch 0, reached epoch 26"),
            "{text}"
        );
        let running = &json["sweeps"][0]["running_jobs"][0];
        assert_eq!((running["start_epoch"].as_u64(), running["checkpoint_age_s"].as_u64()), (Some(24), Some(6)));
    }

    #[test]
    fn jobs_list_every_attempt_in_text_and_json() {
        let attempt = |number, worker: &str, ended: &str, counted| pb::Attempt {
            number,
            worker: worker.into(),
            start_epoch: if number == 1 { 0 } else { 24 },
            end_epoch: 26 + number,
            ended: ended.into(),
            counted,
            ended_ms: 0,
        };
        let jobs = vec![pb::JobInfo {
            job_id: "j1".into(),
            index: 0,
            spec: None,
            state: pb::JobState::Done as i32,
            attempts: vec![attempt(1, "node0", "lease expired", true), attempt(2, "node1", "done", true)],
            history: vec![],
            checkpoint_epoch: Some(24),
        }];
        let text = render_jobs(&jobs);
        assert_eq!(
            text,
            "job j1 #0 done, checkpoint at epoch 24: \n  attempt 1 on node0: started at epoch 0, reached epoch 27: lease expired\n  attempt 2 on node1: resumed at epoch 24, reached epoch 28: done\n"
        );
        let json = jobs_json(&jobs);
        assert_eq!(json[0]["state"], "done");
        assert_eq!(json[0]["attempts"][1]["worker"], "node1");
        assert_eq!(json[0]["attempts"][0]["ended"], "lease expired");
    }
}
