//! `coordinator submit GRID.yaml [--json]`.

use std::path::Path;

use crate::client::{Client, ClientResult};

pub async fn run(client: &mut Client, grid: &Path, json: bool) -> ClientResult<()> {
    let text = std::fs::read_to_string(grid).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", grid.display()))?;
    let r = client.submit(grid.display().to_string(), text).await?;
    if json {
        // Key order is part of the interface: sweep_id, jobs, created.
        println!(
            "{{\"sweep_id\": {}, \"jobs\": {}, \"created\": {}}}",
            serde_json::Value::from(r.sweep_id),
            r.jobs,
            r.created
        );
    } else if r.created {
        println!("sweep {} ({}): {} jobs submitted", r.sweep_id, r.name, r.jobs);
    } else {
        println!("sweep {} ({}): already submitted, {} jobs, nothing created", r.sweep_id, r.name, r.jobs);
    }
    Ok(())
}
