//! `worker run job.yaml --out DIR`: one job on this machine, no coordinator.
//!
//! Writes into DIR:
//! - `job.json`: the job spec as run, with the data subset hashes;
//! - `mi.csv`, `mi.jsonl`: one row per epoch x split x layer x bin size (the coordinator's
//!   `results` columns, with empty sweep and job IDs);
//! - `epochs.jsonl`: train/test loss and accuracy of every epoch;
//! - `histograms/e{epoch}-{split}-{layer}-b{bin}.ibh`: each histogram in the byte format the
//!   worker streams to the coordinator.
//!
//! Files are flushed after every measured epoch, so a stopped run keeps what it measured.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use ibsweep_shared::job::JobSpec;
use ibsweep_shared::results::{CsvWriter, MiRow};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result, Stop};
use crate::train::{self, Event, JobData, RunConfig};

/// Reads and validates a job file; errors name the file, line and column.
pub fn read_job(path: &Path) -> Result<JobSpec> {
    let text = fs::read_to_string(path).map_err(Error::io(path))?;
    let spec: JobSpec =
        serde_saphyr::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    spec.validate().map_err(|e| Error::InvalidInput(format!("{}: invalid job: {e}", path.display())))?;
    Ok(spec)
}

/// Output files of a local run.
struct Outputs {
    dir: PathBuf,
    csv: CsvWriter<BufWriter<File>>,
    jsonl: BufWriter<File>,
    epochs: BufWriter<File>,
    /// `estimates.jsonl`, when the job has `measure.estimators`.
    estimates: Option<BufWriter<File>>,
}

impl Outputs {
    fn create(dir: &Path, spec: &JobSpec, data: &JobData) -> Result<Outputs> {
        fs::create_dir_all(dir.join("histograms")).map_err(Error::io(dir))?;
        let job = serde_json::json!({
            "spec": spec,
            "train_indices_hash": data.train_hash,
            "test_indices_hash": data.test_hash,
            "layers": spec.layers()?.iter().map(|l| serde_json::json!({"index": l.index, "name": l.name, "features": l.features})).collect::<Vec<_>>(),
        });
        let job_path = dir.join("job.json");
        fs::write(&job_path, serde_json::to_string_pretty(&job).expect("json")).map_err(Error::io(&job_path))?;
        let create = |name: &str| -> Result<BufWriter<File>> {
            let path = dir.join(name);
            Ok(BufWriter::new(File::create(&path).map_err(Error::io(path))?))
        };
        Ok(Outputs {
            dir: dir.to_path_buf(),
            csv: CsvWriter::new(create("mi.csv")?),
            jsonl: create("mi.jsonl")?,
            epochs: create("epochs.jsonl")?,
            estimates: if spec.measure.estimators.is_empty() { None } else { Some(create("estimates.jsonl")?) },
        })
    }

    fn measured(&mut self, spec: &JobSpec, m: &train::SplitMeasurement) -> Result<()> {
        for layer in &m.layers {
            for (bin, histogram) in &layer.histograms {
                let key = m.key(&layer.layer, *bin);
                let row = MiRow::new("", "", spec, &key, &histogram.estimate()?);
                self.csv.write(&row).map_err(Error::io(self.dir.join("mi.csv")))?;
                writeln!(self.jsonl, "{}", serde_json::to_string(&row).expect("json"))
                    .map_err(Error::io(self.dir.join("mi.jsonl")))?;
                let path = self.dir.join("histograms").join(format!(
                    "e{}-{}-{}-b{}.ibh",
                    m.epoch,
                    m.split.as_str(),
                    layer.layer.name,
                    bin
                ));
                fs::write(&path, histogram.to_bytes()).map_err(Error::io(path))?;
            }
        }
        if let Some(out) = &mut self.estimates {
            let path = self.dir.join("estimates.jsonl");
            for e in &m.estimates {
                writeln!(out, "{}", serde_json::to_string(e).expect("json")).map_err(Error::io(&path))?;
            }
            out.flush().map_err(Error::io(&path))?;
        }
        self.csv.flush().map_err(Error::io(self.dir.join("mi.csv")))?;
        self.jsonl.flush().map_err(Error::io(self.dir.join("mi.jsonl")))
    }

    fn epoch(&mut self, metrics: &train::EpochMetrics) -> Result<()> {
        writeln!(self.epochs, "{}", serde_json::to_string(metrics).expect("json"))
            .map_err(Error::io(self.dir.join("epochs.jsonl")))?;
        self.epochs.flush().map_err(Error::io(self.dir.join("epochs.jsonl")))
    }
}

fn progress(spec: &JobSpec) -> ProgressBar {
    let bar = ProgressBar::new(u64::from(spec.epochs));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} epoch {pos}/{len} {msg} (ETA {eta})")
            .expect("valid template"),
    );
    bar
}

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |a| format!("{:.1}%", 100.0 * a))
}

fn loss(x: Option<f64>) -> String {
    x.map_or("-".into(), |l| format!("{l:.4}"))
}

/// Runs `spec` and writes its outputs to `out`. Ctrl-C (`interrupted`) stops it after the
/// current mini-batch; what was measured until then stays on disk.
pub fn run_local(
    spec: &JobSpec,
    out: &Path,
    datasets: &Path,
    config: RunConfig,
    interrupted: Arc<AtomicBool>,
) -> Result<()> {
    let data = JobData::load(spec, datasets)?;
    let mut outputs = Outputs::create(out, spec, &data)?;
    let bar = progress(spec);
    let (tx, rx) = mpsc::channel::<Event>();
    let trainer = {
        let spec = spec.clone();
        let stop_flag = Arc::clone(&interrupted);
        std::thread::Builder::new()
            .name("train".into())
            .spawn(move || {
                let stop = move || stop_flag.load(Ordering::Relaxed);
                train::run_job(&spec, &data, &config, &stop, &mut |event| {
                    tx.send(event).map_err(|_| Error::Stopped(Stop::Abandoned))
                })
            })
            .map_err(|e| Error::Setup(format!("cannot start the training thread: {e}")))?
    };
    let mut write_result = Ok(());
    for event in rx {
        let result = match &event {
            Event::Measured(m) => outputs.measured(spec, m),
            Event::Epoch(metrics) => {
                bar.set_position(u64::from(metrics.epoch));
                let msg = format!(
                    "train loss {} acc {} | test loss {} acc {}",
                    loss(metrics.train_loss),
                    percent(metrics.train_accuracy),
                    loss(metrics.test_loss),
                    percent(metrics.test_accuracy)
                );
                if bar.is_hidden() {
                    tracing::info!(epoch = metrics.epoch, seconds = format!("{:.1}", metrics.seconds), "{msg}");
                }
                bar.set_message(msg);
                outputs.epoch(metrics)
            }
            // A local run never asks for checkpoints.
            Event::Checkpoint { .. } => Ok(()),
        };
        if let Err(e) = result {
            // Stop training: nothing more can be written.
            interrupted.store(true, Ordering::Relaxed);
            write_result = Err(e);
            break;
        }
    }
    let trained = trainer.join().map_err(|_| Error::Panicked("see the message above".into()))?;
    if trained.is_ok() && write_result.is_ok() {
        bar.finish();
    } else {
        // Leave the bar where training stopped, not at the end.
        bar.abandon();
    }
    write_result?;
    trained.map_err(|e| match e {
        Error::Stopped(_) => Error::Interrupted { measured_in: out.to_path_buf() },
        other => other,
    })
}
