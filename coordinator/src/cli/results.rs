//! `coordinator results SWEEP` and `coordinator plot SWEEP`: rows out as a table, CSV,
//! JSON lines or figures.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Format, output};
use crate::client::{Client, ClientResult};
use crate::plot::{self, ImageFormat};

pub async fn results(
    client: &mut Client,
    sweep: &str,
    format: Format,
    filters: &[String],
    out: Option<&Path>,
) -> ClientResult<()> {
    let rows = client.results(sweep, filters).await?;
    let (format, sink): (Format, Box<dyn Write>) = match out {
        Some(path) => {
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("csv") => Format::Csv,
                Some("json" | "jsonl" | "ndjson") => Format::Json,
                _ => anyhow::bail!("--out {}: use a .csv or .jsonl file name", path.display()),
            };
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

pub async fn plot(
    client: &mut Client,
    sweep: &str,
    out: PathBuf,
    filters: &[String],
    format: ImageFormat,
) -> ClientResult<()> {
    let rows = client.results(sweep, filters).await?;
    if rows.is_empty() {
        anyhow::bail!(
            "sweep {sweep} has no results yet (matching the filters); `coordinator status {sweep}` shows its progress"
        );
    }
    let written = tokio::task::spawn_blocking(move || plot::plot_all(&rows, &out, format)).await??;
    for path in &written {
        println!("{}", path.display());
    }
    eprintln!("wrote {} figures", written.len());
    Ok(())
}
