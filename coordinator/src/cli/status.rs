//! `coordinator status [SWEEP] [--json | --watch | --jobs]`.

use std::io::Write;

use super::output;
use crate::client::{Client, ClientResult};

pub async fn run(
    client: &mut Client,
    sweep: Option<String>,
    json: bool,
    watch_flag: bool,
    jobs: bool,
) -> ClientResult<()> {
    if watch_flag {
        return watch(client, sweep).await;
    }
    if jobs {
        let sweep = sweep.ok_or_else(|| anyhow::anyhow!("--jobs lists one sweep's jobs: give the sweep ID"))?;
        let jobs = client.jobs(&sweep).await?;
        if json {
            println!("{}", output::jobs_json(&jobs));
        } else {
            print!("{}", output::render_jobs(&jobs));
        }
        return Ok(());
    }
    let r = client.status(sweep).await?;
    if json {
        println!("{}", output::status_json(&r));
    } else {
        print!("{}", output::render_status(&r));
    }
    Ok(())
}

/// `status --watch`: a bar per sweep (finished jobs of all, ETA from finished job durations)
/// and a line per worker; plain periodic lines when stderr is not a terminal. Returns when
/// every watched sweep has nothing pending or running.
async fn watch(client: &mut Client, sweep: Option<String>) -> ClientResult<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let mut stream = client.watch(sweep, 1000).await?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi =
        MultiProgress::with_draw_target(if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
        .expect("template")
        .progress_chars("=> ");
    let worker_style = ProgressStyle::with_template("  {spinner} {prefix}: {msg}").expect("template");
    let mut bars: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let mut workers: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let mut last_plain = String::new();
    let mut last_print = std::time::Instant::now();
    while let Some(snapshot) = stream.next().await? {
        for s in &snapshot.sweeps {
            let c = s.counts.unwrap_or_default();
            let bar = bars.entry(s.sweep_id.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(s.total));
                bar.set_style(style.clone());
                bar.set_prefix(s.name.clone());
                bar
            });
            bar.set_position(c.done + c.failed + c.cancelled);
            let eta = output::eta(s, &snapshot);
            bar.set_message(format!(
                "{} done, {} failed, {} running, {} pending{eta}",
                c.done, c.failed, c.running, c.pending
            ));
        }
        for w in &snapshot.workers {
            if snapshot.now_ms.saturating_sub(w.last_seen_ms) > output::GONE_MS {
                continue; // long gone
            }
            let line = workers.entry(w.worker_id.clone()).or_insert_with(|| {
                let line = multi.add(ProgressBar::new_spinner());
                line.set_style(worker_style.clone());
                line.set_prefix(w.name.clone());
                line
            });
            line.set_message(if w.job_id.is_empty() {
                "idle".into()
            } else {
                format!("job {} epoch {}", &w.job_id[..8.min(w.job_id.len())], w.epoch)
            });
            line.tick();
        }
        if !tty {
            // One line per sweep when its counts change, and at least every 10 s.
            let key: String = snapshot.sweeps.iter().map(|s| format!("{:?}", s.counts)).collect();
            if key != last_plain || last_print.elapsed() >= std::time::Duration::from_secs(10) {
                for line in output::watch_lines(&snapshot) {
                    println!("{line}");
                }
                std::io::stdout().flush()?;
                last_plain = key;
                last_print = std::time::Instant::now();
            }
        }
        let finished = snapshot.sweeps.iter().all(|s| s.counts.as_ref().is_some_and(|c| c.pending + c.running == 0));
        if finished && !snapshot.sweeps.is_empty() {
            for bar in bars.values().chain(workers.values()) {
                bar.finish();
            }
            return Ok(());
        }
    }
    Ok(())
}
