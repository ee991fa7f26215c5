//! Checkpoint files beside the store.
//!
//! A checkpoint is tens of megabytes, too big for a sled value, so each one is a file in
//! `<data-dir>.checkpoints/` (beside the sled directory) referenced from the job's record.
//! An upload is written to `<name>.partial` while its SHA-256 is computed, checked against
//! the size and digest the worker announced, fsynced, renamed to its final name and the
//! directory fsynced, all before the record points at it; the file it replaces is removed
//! only after the new reference is durable. A crash anywhere leaves either the old or the
//! new checkpoint referenced, plus at worst an unreferenced file that
//! [`crate::scheduler::Scheduler::collect_checkpoints`] removes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Default largest checkpoint accepted (`serve --max-checkpoint-bytes`): the largest
/// network the job bounds allow is 10^8 weights, 1.2 GB with both Adam moments.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: u64 = 2 << 30;

const PARTIAL: &str = ".partial";

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Store(format!("checkpoint file {}: {e}", path.display()))
}

/// SHA-256 as lowercase hex.
pub fn hex_digest(hasher: Sha256) -> String {
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory of checkpoint files, and what to keep.
#[derive(Debug)]
pub struct CheckpointDir {
    root: PathBuf,
    /// Keep a finished job's last checkpoint (its trained weights) for export.
    pub keep_final: bool,
    pub max_bytes: u64,
    /// Files being written now: never collected as orphans.
    in_flight: Mutex<HashSet<String>>,
    /// Removals wait while a backup reads the directory.
    pins: Arc<Mutex<Pins>>,
}

#[derive(Debug, Default)]
struct Pins {
    active: u32,
    deferred: Vec<PathBuf>,
}

/// Keeps every checkpoint file in place while it lives (a backup reading them): a file
/// replaced meanwhile is removed when the last pin goes.
#[derive(Debug)]
pub struct Pin {
    pins: Arc<Mutex<Pins>>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.active -= 1;
        if pins.active == 0 {
            for path in pins.deferred.drain(..) {
                remove_file(&path);
            }
        }
    }
}

fn remove_file(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

impl CheckpointDir {
    /// Opens (creating) `root` and removes uploads a crash left half-written.
    pub fn open(root: impl Into<PathBuf>, keep_final: bool, max_bytes: u64) -> Result<CheckpointDir> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        for entry in fs::read_dir(&root).map_err(|e| io_error(&root, e))? {
            let path = entry.map_err(|e| io_error(&root, e))?.path();
            if path.to_string_lossy().ends_with(PARTIAL) {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(CheckpointDir { root, keep_final, max_bytes, in_flight: Mutex::new(HashSet::new()), pins: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts writing the checkpoint `name`, announced as `size` bytes with digest `sha256`.
    pub fn begin(&self, name: String, size: u64, sha256: &str) -> Result<Incoming<'_>> {
        if size > self.max_bytes {
            return Err(Error::InvalidArgument(format!(
                "checkpoint of {size} bytes is larger than this coordinator accepts ({} bytes, --max-checkpoint-bytes)",
                self.max_bytes
            )));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(Error::InvalidArgument("checkpoint sha256 must be 64 lowercase hex digits".into()));
        }
        let tmp = self.root.join(format!("{name}{PARTIAL}"));
        let file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        self.flight().insert(name.clone());
        Ok(Incoming {
            dir: self,
            name,
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            size,
            sha256: sha256.to_string(),
        })
    }

    /// The file's digest and size, read from disk.
    pub fn digest(&self, name: &str) -> Result<(String, u64)> {
        let path = self.path(name);
        let mut file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| io_error(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((hex_digest(hasher), size))
    }

    /// Checks the file against what its record says; the reason it fails, if it does.
    pub fn verify(&self, name: &str, size: u64, sha256: &str) -> std::result::Result<(), String> {
        match self.digest(name) {
            Ok((digest, got)) if got == size && digest == sha256 => Ok(()),
            Ok((digest, got)) => Err(format!(
                "checkpoint file {name} fails verification: {got} bytes with sha256 {digest}, \
                 the record says {size} bytes with sha256 {sha256}"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes a checkpoint file (after the last [`Pin`], if any); one already gone is fine.
    pub fn remove(&self, name: &str) {
        let path = self.path(name);
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if pins.active > 0 {
            pins.deferred.push(path);
        } else {
            drop(pins);
            remove_file(&path);
        }
    }

    /// Holds every file in place until the pin is dropped.
    pub fn pin(&self) -> Pin {
        self.pins.lock().unwrap_or_else(|e| e.into_inner()).active += 1;
        Pin { pins: Arc::clone(&self.pins) }
    }

    /// Finished checkpoint files not being written now.
    pub fn settled_files(&self) -> Result<Vec<String>> {
        let flight = self.flight().clone();
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))? {
            let name = entry.map_err(|e| io_error(&self.root, e))?.file_name().to_string_lossy().into_owned();
            if !name.ends_with(PARTIAL) && !flight.contains(&name) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Bytes used by checkpoint files (for metrics and the benchmarks).
    pub fn bytes_used(&self) -> u64 {
        fs::read_dir(&self.root)
            .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}

/// A checkpoint being received. Dropped unfinished, its partial file is removed.
#[derive(Debug)]
pub struct Incoming<'a> {
    dir: &'a CheckpointDir,
    pub name: String,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    pub size: u64,
    pub sha256: String,
}

impl Incoming<'_> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let written = self.written + bytes.len() as u64;
        if written > self.size {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {}: more than the announced {} bytes arrived",
                self.name, self.size
            )));
        }
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(bytes).map_err(|e| io_error(&self.tmp, e))?;
        self.hasher.update(bytes);
        self.written = written;
        Ok(())
    }

    /// Verifies size and digest, then makes the file durable under its final name.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.size {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {}: {} of the announced {} bytes arrived",
                self.name, self.written, self.size
            )));
        }
        let digest = hex_digest(std::mem::take(&mut self.hasher));
        if digest != self.sha256 {
            return Err(Error::DataLoss(format!(
                "checkpoint {}: the bytes have sha256 {digest}, the worker announced {}; not kept",
                self.name, self.sha256
            )));
        }
        let file = self.file.take().expect("open until finished");
        file.sync_all().map_err(|e| io_error(&self.tmp, e))?;
        drop(file);
        let dest = self.dir.path(&self.name);
        fs::rename(&self.tmp, &dest).map_err(|e| io_error(&dest, e))?;
        File::open(self.dir.root()).and_then(|d| d.sync_all()).map_err(|e| io_error(self.dir.root(), e))?;
        Ok(())
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
        self.dir.flight().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(bytes);
        hex_digest(h)
    }

    #[test]
    fn an_upload_is_kept_only_when_size_and_digest_match() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::open(tmp.path().join("c"), false, 1 << 20).unwrap();
        let data = b"weights and moments".to_vec();
        let mut ok = dir.begin("a.ckpt".into(), data.len() as u64, &sha(&data)).unwrap();
        ok.write(&data[..5]).unwrap();
        ok.write(&data[5..]).unwrap();
        ok.finish().unwrap();
        assert_eq!(fs::read(dir.path("a.ckpt")).unwrap(), data);
        dir.verify("a.ckpt", data.len() as u64, &sha(&data)).unwrap();

        let mut bad = dir.begin("b.ckpt".into(), data.len() as u64, &sha(b"other")).unwrap();
        bad.write(&data).unwrap();
        assert!(matches!(bad.finish(), Err(Error::DataLoss(_))));
        let mut short = dir.begin("c.ckpt".into(), 100, &sha(&data)).unwrap();
        short.write(&data).unwrap();
        assert!(short.finish().unwrap_err().to_string().contains("of the announced 100 bytes"));
        let mut long = dir.begin("d.ckpt".into(), 3, &sha(&data)).unwrap();
        assert!(long.write(&data).is_err());
        drop(long);
        assert_eq!(dir.settled_files().unwrap(), ["a.ckpt"], "failed uploads leave nothing behind");
        assert!(dir.begin("e.ckpt".into(), 2 << 20, &sha(&data)).is_err(), "over the size limit");

        fs::write(dir.path("a.ckpt"), b"weights and mOments").unwrap();
        let why = dir.verify("a.ckpt", data.len() as u64, &sha(&data)).unwrap_err();
        assert!(why.contains("fails verification"), "{why}");
    }
}
