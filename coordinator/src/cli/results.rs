//! `coordinator results SWEEP` and `coordinator plot SWEEP`: rows out as a table, CSV,
//! JSON lines or figures.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Format, output};
use ibsweep_shared::results::{Estimator, MiRow, read_csv_file};

use crate::client::{Client, ClientResult, parse_filters};
use crate::report::plot::{self, ImageFormat};
use crate::scheduler::matches;

pub async fn results(
    client: &mut Client,
    sweep: &str,
    format: Format,
    filters: &[String],
    out: Option<&Path>,
) -> ClientResult<()> {
    let parquet = out.is_some_and(|p| p.extension().is_some_and(|e| e == "parquet"));
    if let Some(path) = out.filter(|_| !parquet) {
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("csv" | "json" | "jsonl" | "ndjson")) {
            anyhow::bail!("--out {}: use a .csv, .jsonl or .parquet file name", path.display());
        }
    }
    let rows = client.results(sweep, filters).await?;
    if let (Some(path), true) = (out, parquet) {
        let (target, count) = (path.to_path_buf(), rows.len());
        tokio::task::spawn_blocking(move || crate::parquet::write_file(&target, &rows))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {count} rows to {}", path.display());
        return Ok(());
    }
    let (format, sink): (Format, Box<dyn Write>) = match out {
        Some(path) => {
            let format = if path.extension().is_some_and(|e| e == "csv") { Format::Csv } else { Format::Json };
            let file =
                std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            (format, Box::new(std::io::BufWriter::new(file)))
        }
        None => (format, Box::new(std::io::stdout().lock())),
    };
    output::write_rows(&rows, format, sink)?;
    if let Some(path) = out {
        eprintln!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

/// What `coordinator plot` draws and where.
#[derive(Debug)]
pub struct Figures {
    pub out: PathBuf,
    pub format: ImageFormat,
    pub kinds: Vec<plot::Kind>,
    /// Only these estimators' rows; empty for all.
    pub estimators: Vec<Estimator>,
}

pub async fn plot(client: &mut Client, sweep: &str, filters: &[String], figures: Figures) -> ClientResult<()> {
    let rows = client.results(sweep, filters).await?;
    if rows.is_empty() {
        anyhow::bail!(
            "sweep {sweep} has no results yet (matching the filters); `coordinator status {sweep}` shows its progress"
        );
    }
    draw(rows, figures).await
}

/// `plot --from-csv`: the same figures from an exported CSV, no coordinator needed.
pub async fn plot_csv(csv: &Path, filters: &[String], figures: Figures) -> ClientResult<()> {
    let filters: Vec<(String, String)> = parse_filters(filters)?.into_iter().map(|f| (f.key, f.value)).collect();
    let rows = read_csv_file(csv).map_err(anyhow::Error::msg)?;
    let mut keep = Vec::with_capacity(rows.len());
    for row in rows {
        if matches(&row, &filters)? {
            keep.push(row);
        }
    }
    if keep.is_empty() {
        anyhow::bail!("{}: no rows (matching the filters)", csv.display());
    }
    draw(keep, figures).await
}

async fn draw(mut rows: Vec<MiRow>, figures: Figures) -> ClientResult<()> {
    if !figures.estimators.is_empty() {
        let present: BTreeSet<Estimator> = rows.iter().map(|r| r.estimator).collect();
        rows.retain(|r| figures.estimators.contains(&r.estimator));
        if rows.is_empty() {
            let names: Vec<&str> = present.iter().map(|e| e.as_str()).collect();
            anyhow::bail!("no rows of the estimators asked for; these rows have {}", names.join(", "));
        }
    }
    let Figures { out, format, kinds, .. } = figures;
    let written = tokio::task::spawn_blocking(move || plot::plot(&rows, &out, format, &kinds)).await??;
    for path in &written {
        println!("{}", path.display());
    }
    eprintln!("wrote {} figures", written.len());
    Ok(())
}
